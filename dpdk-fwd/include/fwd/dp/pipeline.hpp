// Where features attach to the packet path. A feature adds itself from its
// own file (FWD_ON_LOAD, fwd/util/registry.hpp) to PipelineRegistry::global();
// the worker never names it.
//
// Hooks (VPP's feature arcs): named places in each family's path, between
// the built-in stages of stages.hpp:
//
//   eth_input -> ip4_input -+-> [kIp4Local] -> icmp4_local
//                           +-> [kIp4Input] -> route4 -> [kIp4Output] -> l2_rewrite4 -> tx
//   (the same for IPv6: kIp6Local, kIp6Input, kIp6Output)
//
//   kIp4Input / kIp6Input    packets to be routed, after the RFC 1812 / 8200
//                            checks: anti-spoofing, policy, NAT.
//   kIp4Output / kIp6Output  routed packets (meta.nh set, MTU checked),
//                            before the Ethernet header: encapsulation,
//                            output policy.
//   kIp4Local / kIp6Local    packets to a node or gateway address, before
//                            icmp*_local answers or punts them. A stage
//                            registered with l4_proto / l4_port gets only
//                            that protocol and destination port (grout's
//                            l4_input_register_port), whole datagrams only;
//                            with l4_port_fn instead of l4_port, the port
//                            the function gives when the burst arrives (a
//                            port the configuration changes at run time:
//                            VXLAN takes vxlanPort, 4789 by default; a fixed
//                            port wins over such a port); one with l4_proto and
//                            l4_port 0 (a protocol other than UDP and TCP)
//                            gets every packet of that protocol, fragments
//                            included (IP-in-IP takes protocol 4: the
//                            protocol is known for every fragment, so the
//                            stage drops them with its own reason); one
//                            without gets every local packet.
//
// The stages of a hook run in the order their runs_before / runs_after names
// give (a name that is not registered is ignored: the feature is not built
// in). A stage gets a burst and keeps the packets that go on in it, in order
// (compacting it); it takes the others: Worker::drop with a reason, punt,
// tx, or re-entry (Worker::reenter4 / reenter6: a decapsulated packet goes
// through ip4_input / ip6_input again once the burst is done;
// Worker::reroute4 / reroute6: a packet built here is routed). One indirect
// call per stage per burst; a hook with no stage costs one branch per burst.
//
// Port taps see every burst a port receives (before eth_input) or sends
// (before rte_eth_tx_burst) and must leave it unchanged: capture, mirroring.
//
// Next-hop kinds: a feature owns NhKind values from kFirstFeatureNhKind up
// (add_nh_kind). route4 / route6 hand a packet whose next hop has such a kind
// on like kVia (port and MTU checks first); the feature's output stage must
// take it (encapsulate it and point meta.nh at the underlay next hop, say);
// l2_rewrite drops what is left (nh_kind_unhandled).
//
// Port drivers: a feature that does its own I/O for a port (not an ethdev:
// a tun device per pod) registers rx / tx functions; its control side gives
// such a port an id from kFirstSoftPort up (tables.hpp) with
// PortState::driver naming the driver. The worker calls them where it calls
// rte_eth_rx_burst / rte_eth_tx_burst for an ethdev; queue is the RX queue
// the worker owns, or the worker's index for TX.
//
// Housekeeping: a function the worker calls with its commands, every 64
// busy loops and on every idle one (a connection table's ageing, say),
// never in the middle of a burst. add_housekeeping(). It runs after the
// loop's TX flush: what it sends leaves with the next loop's.
//
// Per-worker state: add_worker_slot() names a pointer every worker keeps
// for the feature (Worker::slot); its control side fills it before the
// workers run.
//
// Every registered stage and tap gets a stage id after the built-in ones:
// per-stage counters (stage_stats) and `fwdctl stats --stages` show it by name.
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fwd/dp/tables.hpp"

namespace fwd::dp {

class Worker;
struct Burst;

enum class Hook : uint8_t { kIp4Input, kIp6Input, kIp4Output, kIp6Output, kIp4Local, kIp6Local };
inline constexpr size_t kHookCount = 6;
inline constexpr std::string_view kHookNames[kHookCount] = {"ip4_input",  "ip6_input", "ip4_output",
                                                            "ip6_output", "ip4_local", "ip6_local"};

enum class TapPoint : uint8_t { kRx, kTx };
inline constexpr size_t kTapPointCount = 2;

using StageFn = void (*)(Worker &w, Burst &pkts);
using TapFn = void (*)(Worker &w, uint16_t port, rte_mbuf *const *pkts, uint16_t n);
// Returns the packets received (rx) or sent (tx; the worker drops the rest
// as tx_queue_full, as for an ethdev).
using PortIoFn = uint16_t (*)(Worker &w, uint16_t port, uint16_t queue, rte_mbuf **pkts,
                              uint16_t n);
// The fd that becomes readable when the port's RX queue has frames (epoll,
// level-triggered): the worker blocks on it when idle. -1: none.
using PortWakeFn = int (*)(void *driver_ctx, uint16_t queue);
// A queue that can wake an idle worker only once armed, through an fd that
// may change while the port lives (a vhost-user queue: its peer kicks an
// eventfd only while notifications are on, and the eventfd is the
// connection's). arm: right before the worker blocks, online for RCU: the fd
// to wait on (the queue is empty and armed; the worker waits on a dup of
// it), kArmBusy when frames wait or the queue cannot be armed (the worker
// does not block), kArmNone when nothing can come (no peer: the block's
// timeout bounds the wait). disarm: after the block, online again, with the
// worker's dup of the fd and whether it was readable (drain it); the worker
// closes the dup afterwards.
// kArmUnable: the queue cannot be armed now (its fd is not set up): the
// worker sleeps and polls instead of blocking.
inline constexpr int kArmNone = -1;
inline constexpr int kArmBusy = -2;
inline constexpr int kArmUnable = -3;
using PortArmFn = int (*)(void *driver_ctx, uint16_t queue);
using PortDisarmFn = void (*)(void *driver_ctx, uint16_t queue, int fd, bool fired);
using HousekeepFn = void (*)(Worker &w);
// The destination port an L4-port stage takes now (StageDef::l4_port_fn),
// read by the local hook's dispatcher once per burst; 0: none for now.
// Worker side: noexcept, no allocation (a load of what its control side
// published).
using L4PortFn = uint16_t (*)(const Worker &w);

struct StageDef {
    std::string name;  // unique among stages and taps; [a-z0-9_]
    Hook hook;
    StageFn fn;
    std::vector<std::string> runs_before;
    std::vector<std::string> runs_after;
    // kIp4Local / kIp6Local only: take just this protocol (IPPROTO_UDP or
    // IPPROTO_TCP) and destination port; or, with l4_port 0, every packet of
    // this protocol (any other than UDP and TCP); 0 and 0: every local packet.
    uint8_t l4_proto = 0;
    uint16_t l4_port = 0;
    // UDP or TCP with l4_port 0: the port this gives, once per burst. Two
    // stages may give the same port: the first in the hook's order takes it.
    L4PortFn l4_port_fn = nullptr;
};

struct TapDef {
    std::string name;  // unique among stages and taps
    TapPoint point;
    TapFn fn;
    // false: it runs only once its feature arms it in each worker
    // (Worker::set_tap_armed): a tap that is idle most of the time (capture)
    // then costs one load per burst.
    bool armed = true;
};

struct PortDriverDef {
    std::string name;
    PortIoFn rx;
    PortIoFn tx;
    PortWakeFn wake_fd = nullptr;  // none: a worker polling the port never blocks
    // Both or neither, and not with wake_fd: the queues wake a blocked
    // worker once armed (PortArmFn).
    PortArmFn arm = nullptr;
    PortDisarmFn disarm = nullptr;
};

struct HousekeepDef {
    std::string name;
    HousekeepFn fn;
};

inline constexpr size_t kMaxHookStages = 8;  // per hook
inline constexpr size_t kMaxHousekeeping = 8;
inline constexpr size_t kMaxPortDrivers = 8;
inline constexpr size_t kMaxTaps = 4;  // per tap point
inline constexpr size_t kMaxFeatureStages = kHookCount * kMaxHookStages + kTapPointCount * kMaxTaps;
inline constexpr size_t kMaxWorkerSlots = 16;

// The frozen result: what each worker copies at construction. Immutable.
struct Pipeline {
    struct Entry {
        StageFn fn = nullptr;
        uint16_t stage = 0;  // stage id (counters)
        uint8_t l4_proto = 0;
        uint16_t l4_port = 0;
        L4PortFn l4_port_fn = nullptr;
    };
    struct List {
        uint8_t n = 0;
        // Local hooks: the first n_l4 entries demultiplex by L4 port, the
        // fixed ports and protocols first, then the run-time ports.
        uint8_t n_l4 = 0;
        // Of those, the ones taking a whole protocol (l4_port 0, no l4_port_fn).
        uint8_t n_proto = 0;
        std::array<Entry, kMaxHookStages> e{};
    };
    struct TapEntry {
        TapFn fn = nullptr;
        uint16_t stage = 0;
    };
    struct TapList {
        uint8_t n = 0;
        uint8_t armed = 0;  // bit i: tap i runs from the worker's start
        std::array<TapEntry, kMaxTaps> e{};
    };
    std::array<List, kHookCount> hooks{};
    std::array<TapList, kTapPointCount> taps{};
    struct Driver {
        PortIoFn rx = nullptr;
        PortIoFn tx = nullptr;
        PortWakeFn wake_fd = nullptr;
        PortArmFn arm = nullptr;
        PortDisarmFn disarm = nullptr;
    };
    // By PortState::driver; entry 0 is "an ethdev" (never called).
    std::array<Driver, kMaxPortDrivers + 1> drivers{};
    uint8_t n_housekeeping = 0;
    std::array<HousekeepFn, kMaxHousekeeping> housekeeping{};
    // Every stage's name by id: the built-in ones (kStageNames), then the
    // registered ones.
    std::vector<std::string> stage_names;
    std::vector<std::string> slot_names;

    size_t stage_count() const { return stage_names.size(); }
    // The index of a tap at its point (Worker::set_tap_armed); -1 when none.
    int tap_index(TapPoint p, std::string_view name) const;
    // The id of a stage by name; SIZE_MAX when none.
    size_t stage_id(std::string_view name) const;
    const List &hook(Hook h) const { return hooks[static_cast<size_t>(h)]; }
};

class PipelineRegistry {
  public:
    // The one the daemon's workers use; features register into it at load time.
    static PipelineRegistry &global();

    // Throw std::invalid_argument for a bad definition (empty name, no fn,
    // l4 on a hook that is not local, a port without UDP or TCP, UDP or TCP
    // without a port, both l4_port and l4_port_fn, a protocol or fixed port
    // taken twice on a hook, too many stages on one hook).
    void add_stage(StageDef d);
    void add_tap(TapDef d);
    // A next-hop kind of the feature's own; name shows in route listings.
    NhKind add_nh_kind(std::string name);
    // A per-worker pointer slot; returns its index (Worker::slot).
    uint16_t add_worker_slot(std::string name);
    // A port driver; returns its PortState::driver value (1 and up).
    uint8_t add_port_driver(PortDriverDef d);
    void add_housekeeping(HousekeepDef d);

    // Resolves the order of every hook. Throws std::invalid_argument for a
    // name used twice and a cycle in runs_before / runs_after.
    Pipeline freeze() const;

    const std::vector<std::string> &nh_kind_names() const { return nh_kinds_; }

  private:
    std::vector<StageDef> stages_;
    std::vector<TapDef> taps_;
    std::vector<std::string> nh_kinds_;  // index 0 is kFirstFeatureNhKind
    std::vector<std::string> slots_;
    std::vector<PortDriverDef> drivers_;
    std::vector<HousekeepDef> housekeeping_;
};

// PipelineRegistry::global().freeze(), once (on first use; the workers'
// constructors call it, so a bad registration stops the daemon at start).
const Pipeline &default_pipeline();

// "pod", "via", ... for the built-in kinds; the registered name for a
// feature's; "unknown" otherwise.
std::string_view nh_kind_name(NhKind k);

}  // namespace fwd::dp
