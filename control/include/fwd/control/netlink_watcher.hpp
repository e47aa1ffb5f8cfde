// Route watcher: learns the routes BIRD (BGP) installs in the kernel of the node's
// network namespace and hands them to the control thread as typed events.
//
// No DPDK and no dataplane table in here: the watcher only produces events; the
// control thread (the single writer of the tables) decides what to do with them.
//
// Threads:
//  - the watcher thread (start() .. stop()) owns both netlink sockets, enters the
//    configured netns (setns on that thread only), and is the only producer of the ring;
//  - one consumer thread (the control thread) calls pop(). Nobody else may.
//
// Event stream contract:
//  - kResyncBegin, then kAdd for every matching route, then kResyncEnd: the consumer
//    replaces its whole learned set with the routes between the two. Sent once after
//    start() and again after every netlink overrun (ENOBUFS), when notifications were lost.
//  - kAdd is an upsert: a new route, a replaced one, or one whose set of paths changed.
//  - kDel: the route (prefix, table, metric) is gone.
//  The kernel deletes IPv4 routes silently when their interface goes down; a consumer that
//  cares must also watch links (not this class's job).
//  No event is ever dropped: when the ring is full the watcher waits for the consumer
//  (back-pressure); if that makes the kernel overrun the socket, a resync follows.
//
// IPv6 multipath: the kernel (6.x) reports an IPv6 ECMP route as one message with
// RTA_MULTIPATH on add, append and dump, but deleting one path (`ip -6 route del P via X`)
// is notified as a RTM_DELROUTE for that path alone. Older kernels also dumped and
// notified each path as its own route. The watcher keeps the current IPv6 paths per
// route so that both cases become whole-route events: a partial delete is a kAdd with
// the remaining paths, and per-path adds and dump entries are merged.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::control {

// Kernel route protocol numbers (rtm_protocol) the watcher is usually asked for.
inline constexpr uint8_t kRouteProtoStatic = 4;
inline constexpr uint8_t kRouteProtoBird = 12;
inline constexpr uint32_t kRouteTableMain = 254;

// One path of a route.
struct RouteNextHop {
    net::IpAddr via;       // gateway (RTA_GATEWAY, or RTA_VIA for IPv4 over IPv6)
    bool has_via = false;  // false for a device route: via is then meaningless
    uint32_t ifindex = 0;  // output interface in the watched netns, 0 if none
    uint16_t weight = 1;   // as `ip route` shows it: rtnh_hops + 1, 1..256
    auto operator<=>(const RouteNextHop &) const = default;
};

struct RouteEvent {
    enum class Kind : uint8_t { kAdd, kDel, kResyncBegin, kResyncEnd };
    Kind kind = Kind::kAdd;
    // Meaningful for kAdd and kDel only.
    std::variant<net::Prefix4, net::Prefix6> prefix;
    uint8_t protocol = 0;
    uint32_t table = 0;
    uint32_t metric = 0;                 // RTA_PRIORITY: routes differing only by it are distinct
    std::vector<RouteNextHop> nexthops;  // several for ECMP; empty for blackhole/unreachable
    bool blackhole = false;
    bool unreachable = false;
};

struct NetlinkWatcherConfig {
    // Empty: the namespace of the thread calling start(). A value containing '/' is a
    // path (/proc/<pid>/ns/net, /var/run/netns/x); otherwise a name under /var/run/netns.
    std::string netns;
    uint32_t table = kRouteTableMain;
    std::vector<uint8_t> protocols = {kRouteProtoBird};
    size_t ring_capacity = 65536;  // events in flight between watcher and consumer
    // Receive buffer of the notification socket: big enough for a BGP burst. Set with
    // SO_RCVBUFFORCE (the watcher needs CAP_NET_ADMIN anyway), so rmem_max does not cap it.
    int socket_buffer_bytes = 8 << 20;
};

// What start() throws: what() names the step and the netns.
class NetlinkWatcherError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class NetlinkWatcher {
  public:
    // Called on the watcher thread after it pushed events, and before it waits on a full
    // ring, to wake the consumer. Must not block and must not call back into the watcher
    // other than reading counters.
    using Sink = std::function<void()>;

    NetlinkWatcher(NetlinkWatcherConfig config, Sink wake);
    ~NetlinkWatcher();  // stops the thread and frees the events nobody popped
    NetlinkWatcher(const NetlinkWatcher &) = delete;
    NetlinkWatcher &operator=(const NetlinkWatcher &) = delete;

    // Opens the netns, starts the thread and returns once it has entered the netns and
    // subscribed to RTNLGRP_IPV4_ROUTE and RTNLGRP_IPV6_ROUTE, so no change made after
    // start() returns can be missed. The initial dump follows on the thread. Throws
    // NetlinkWatcherError. Call once.
    void start();
    // Joins the thread; idempotent. Events already in the ring can still be popped.
    void stop();

    // Consumer side, single consumer. False when the ring is empty.
    bool pop(RouteEvent &out);

    // Times the watcher found the ring full and had to wait for the consumer.
    uint64_t backpressure_waits() const {
        return backpressure_waits_.load(std::memory_order_relaxed);
    }
    // Resyncs after the initial dump (one per netlink overrun).
    uint64_t resyncs() const { return resyncs_.load(std::memory_order_relaxed); }
    // Empty while healthy; the reason if the watcher thread gave up after start().
    std::string error() const;

  private:
    struct Impl;
    friend struct Impl;
    void fail(const std::string &why);

    const NetlinkWatcherConfig config_;
    const Sink wake_;
    // Written by the watcher thread, read by anyone.
    std::atomic<uint64_t> backpressure_waits_{0};
    std::atomic<uint64_t> resyncs_{0};
    mutable std::mutex error_mutex_;
    std::string error_;  // guarded by error_mutex_
    // The ring, the sockets and the thread. The producer side of the ring is the watcher
    // thread's, the consumer side pop()'s.
    std::unique_ptr<Impl> impl_;
};

}  // namespace fwd::control
