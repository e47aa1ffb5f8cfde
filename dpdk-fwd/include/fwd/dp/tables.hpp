// Tables the workers read and the control thread writes.
//
// Ownership: the control thread is the only writer of everything here.
// Workers read. Publication rules:
//  - NextHop entries are written completely before a route points at them;
//    the route insert is the publication. An entry is reused only after an
//    RCU grace period (rte_rcu_qsbr) following the removal of its last route.
//  - IPv4 routes live in one rte_lpm, updated in place (rte_lpm supports one
//    writer with concurrent readers; tbl8 groups are reclaimed through the
//    LPM's RCU defer queue).
//  - IPv6 routes live in two rte_fib6 copies (rte_fib6 has no RCU support in
//    DPDK 22.11): the writer changes the idle copy, publishes it with a
//    release store, waits for a grace period, then replays the change on the
//    other copy. Readers load the active pointer once per burst. An idle
//    copy whose adds fail with -ENOSPC is rebuilt from its own routes (see
//    rebuild6 in tables.cpp).
//  - PortState is written before the port's queues are handed to a worker
//    and cleared only after the worker acknowledged dropping them.
#pragma once

#include <rte_fib6.h>
#include <rte_lpm.h>
#include <rte_rcu_qsbr.h>
#include <rte_spinlock.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::dp {

inline constexpr uint32_t kMaxNextHops = 1 << 16;
inline constexpr uint32_t kNhInvalid = 0;  // never allocated: a miss

enum class NhKind : uint8_t {
    kNone = 0,
    kPod,          // a local pod: out of its port, to its MAC, from the gateway MAC
    kVia,          // a neighbor behind the uplink
    kBlackhole,    // dropped silently (counted)
    kUnreachable,  // dropped with ICMP destination unreachable
};

struct alignas(32) NextHop {
    std::array<uint8_t, 6> dst_mac;
    std::array<uint8_t, 6> src_mac;
    uint16_t port;
    uint16_t mtu;
    uint16_t vlan;  // 0: untagged
    NhKind kind;
    uint8_t pad_[9];
};
static_assert(sizeof(NextHop) == 32);

enum class PortRole : uint8_t { kNone = 0, kUplink, kPod };

struct alignas(64) PortState {
    // control writes (release), workers read (acquire)
    std::atomic<PortRole> role{PortRole::kNone};
    std::array<uint8_t, 6> mac{};  // our MAC on this port; frames to it are ours
    uint16_t vlan = 0;             // uplink VLAN to strip/insert, 0: none
    // A port with fewer TX queues than workers (a vhost-user peer that
    // enables one queue pair): every worker sends on queue 0 under tx_lock.
    // Ports with a queue per worker never touch the lock.
    bool tx_shared = false;
    mutable rte_spinlock_t tx_lock = RTE_SPINLOCK_INITIALIZER;
};

// Addresses the dataplane itself answers on; fixed at start (from config).
struct NodeAddrs {
    bool has_ip4 = false;
    bool has_ip6 = false;
    net::Ip4Addr ip4;
    net::Ip6Addr ip6;
    net::Ip6Addr gw6;                   // fe80::ecee:eeff:feee:eeee
    std::array<uint8_t, 16> gw6_snm{};  // its solicited-node multicast address
};

class Tables {
  public:
    // Creates the route tables; max routes per family. Throws on failure.
    Tables(uint32_t max_routes4, uint32_t max_routes6, rte_rcu_qsbr *qsbr, int socket);
    ~Tables();
    Tables(const Tables &) = delete;
    Tables &operator=(const Tables &) = delete;

    // --- workers ---
    const NextHop &nh(uint32_t id) const { return nh_[id]; }
    const PortState &port(uint16_t id) const { return ports_[id]; }
    const rte_lpm *lpm4() const { return lpm4_; }
    // The IPv4 default route's next hop (rte_lpm has no depth 0), kNhInvalid when none.
    uint32_t default4() const { return default4_.load(std::memory_order_acquire); }
    rte_fib6 *fib6() const { return fib6_[active6_.load(std::memory_order_acquire)]; }
    const NodeAddrs &node() const { return node_; }

    // --- control thread only ---
    void set_node(const NodeAddrs &n) { node_ = n; }
    uint32_t nh_alloc(const NextHop &nh);  // returns kNhInvalid when full
    void nh_free(uint32_t id);             // caller ensured a grace period since last use
    PortState &port_mut(uint16_t id) { return ports_[id]; }
    // Route changes return 0 or a negative errno.
    int add4(const net::Prefix4 &p, uint32_t nh);
    int del4(const net::Prefix4 &p);
    int add6(const net::Prefix6 &p, uint32_t nh);
    int del6(const net::Prefix6 &p);
    // Waits until every online worker passed a quiescent point.
    void synchronize();

  private:
    int apply6(const net::Prefix6 &p, uint32_t nh, bool add);
    rte_fib6 *create_fib6() const;
    int change6(unsigned copy, const uint8_t *ip, uint8_t len, uint32_t nh, bool add);
    int rebuild6(unsigned copy);

    NextHop *nh_ = nullptr;  // kMaxNextHops entries on hugepage memory
    std::vector<uint32_t> nh_free_;
    std::array<PortState, RTE_MAX_ETHPORTS> ports_;
    rte_lpm *lpm4_ = nullptr;
    std::atomic<uint32_t> default4_{kNhInvalid};
    rte_fib6 *fib6_[2] = {nullptr, nullptr};
    std::atomic<uint32_t> active6_{0};
    uint32_t max_routes6_;
    int socket_;
    rte_rcu_qsbr *qsbr_;
    NodeAddrs node_;
};

}  // namespace fwd::dp
