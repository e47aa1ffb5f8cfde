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
//  - IPv6 routes live in two copies, each an rte_fib6 trie with a Front6
//    beside it holding the /128 and /122 routes again (front6.hpp; rte_fib6
//    has no RCU support in DPDK 22.11): the writer changes the idle copy,
//    publishes it with a release store, waits for a grace period, then
//    replays the change on the other copy. Readers load the active copy once
//    per burst (lookup6_bulk). An idle trie whose adds fail with -ENOSPC is
//    rebuilt from its own routes (see rebuild6 in tables.cpp).
//  - NextHop.kind is the one field changed in place on a live entry (a via
//    next hop going between kResolve and kVia as its neighbor is learnt or
//    lost). Workers read it with an acquire load (load_kind()); the control
//    thread writes dst_mac first, then stores kind with release
//    (nh_set_resolved). dst_mac is rewritten only while kind is kResolve and
//    a grace period has passed since it became so (nh_set_unresolved, then
//    synchronize()), so no worker still forwards with the old address.
//  - ECMP groups: an array of member next-hop ids per group, written
//    completely by group_alloc before the kGroup NextHop pointing at it is
//    allocated (and that before the route). Members never change in place: a
//    new member set is a new group; the old one is freed after a grace period.
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
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fwd/dp/front6.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::dp {

inline constexpr uint32_t kMaxNextHops = 1 << 16;
inline constexpr uint32_t kNhInvalid = 0;       // never allocated: a miss
inline constexpr uint32_t kMaxGroupPaths = 16;  // members of one ECMP group
inline constexpr uint32_t kMaxGroups = 4096;
inline constexpr uint32_t kGroupInvalid = UINT32_MAX;  // group_alloc failed

enum class NhKind : uint8_t {
    kNone = 0,
    kPod,          // a local pod: out of its port, to its MAC, from the gateway MAC
    kVia,          // a neighbor behind the uplink
    kBlackhole,    // dropped silently (counted)
    kUnreachable,  // dropped with ICMP destination unreachable
    kResolve,      // a via next hop whose neighbor MAC is not known yet: punted
    kGroup,        // ECMP: group_n members in group `group`, one picked per flow
    // From here up: kinds features own (PipelineRegistry::add_nh_kind).
    // route hands them on like kVia; the feature's output stage takes them.
    kFirstFeature = 16,
};

struct alignas(32) NextHop {
    std::array<uint8_t, 6> dst_mac;
    std::array<uint8_t, 6> src_mac;
    uint16_t port;
    uint16_t mtu;
    uint16_t vlan;  // 0: untagged
    // [C] writes, workers read with load_kind(): changed in place (see above).
    NhKind kind;
    uint8_t group_n;  // kGroup: members, 1..kMaxGroupPaths
    uint32_t group;   // kGroup: index of the group (group_alloc)
                      // vxlan / ipip kinds: index of the Tunnel (overlay.hpp)
    uint8_t pad_[8];
};
static_assert(sizeof(NextHop) == 32);

// The kind of a next hop as a worker must read it: the control thread may
// change it under the worker's feet, and what it wrote before (the MAC) must
// be visible once the new kind is. std::atomic_ref, not GCC's __atomic
// builtins: clang takes those on integers only, not on an enum (the fuzz build).
// atomic_ref<const T> is C++26: the cast only lets it load.
inline NhKind load_kind(const NextHop &nh) {
    return std::atomic_ref<NhKind>(const_cast<NhKind &>(nh.kind)).load(std::memory_order_acquire);
}

enum class PortRole : uint8_t { kNone = 0, kUplink, kPod };

// Port ids: ethdevs take 0 .. RTE_MAX_ETHPORTS - 1; ports a feature drives
// itself ("soft ports": a tun device per pod, say; pipeline.hpp's
// PortDriverDef) take kFirstSoftPort and up, so they are not bounded by the
// ethdev count Debian's DPDK is built with (32).
inline constexpr uint16_t kFirstSoftPort = RTE_MAX_ETHPORTS;
inline constexpr uint16_t kMaxSoftPorts = 1024;
inline constexpr uint16_t kMaxPorts = kFirstSoftPort + kMaxSoftPorts;

struct alignas(64) PortState {
    // control writes (release), workers read (acquire)
    std::atomic<PortRole> role{PortRole::kNone};
    // The port's link as the control thread last polled it (relaxed both ways:
    // a hint, never a gate). Workers read it only to name what the driver
    // refused: port_down, not tx_queue_full, when the link is down (a net_tap
    // whose kernel side is down fails every write). Packets are still offered
    // to the driver: a link state read from the wrong namespace (a net_tap
    // moved elsewhere reads as down) must not stop traffic.
    std::atomic<bool> link_down{false};
    std::array<uint8_t, 6> mac{};  // our MAC on this port; frames to it are ours
    uint16_t vlan = 0;             // uplink VLAN to strip/insert, 0: none
    // A soft port: its driver (Pipeline::drivers index, 0 for an ethdev)
    // and the driver's state for it. Written before the port's role.
    uint8_t driver = 0;
    void *driver_ctx = nullptr;
    // What the port's transmit takes as it is (offload.hpp kPortTxCsum,
    // kPortTxTso); the worker does the rest in software before sending.
    // Written before the port's role.
    uint8_t tx_offloads = 0;
};

// Addresses the dataplane itself answers on; fixed at start (from config).
struct NodeAddrs {
    bool has_ip4 = false;
    bool has_ip6 = false;
    net::Ip4Addr ip4;
    net::Ip6Addr ip6;
    net::Ip6Addr gw6;                   // fe80::ecee:eeff:feee:eeee
    std::array<uint8_t, 16> gw6_snm{};  // its solicited-node multicast address
    // A host tap carries the node's addresses: traffic to them (and, on the
    // uplink, to the kernel's link-local and multicast groups) is punted with
    // PuntReason::kHost instead of being answered or dropped here.
    bool host_punt = false;
};

class Tables {
  public:
    // Creates the route tables; max routes per family, tbl8 groups of the
    // IPv4 lpm (one per /24 holding longer routes) and of each IPv6 trie copy
    // (see create_fib6); 1 KiB each. Throws on failure.
    Tables(uint32_t max_routes4, uint32_t max_routes6, rte_rcu_qsbr *qsbr, int socket,
           uint32_t tbl8s4 = 1 << 14, uint32_t tbl8s6 = 1 << 15);
    ~Tables();
    Tables(const Tables &) = delete;
    Tables &operator=(const Tables &) = delete;

    // --- workers ---
    const NextHop &nh(uint32_t id) const { return nh_[id]; }
    const PortState &port(uint16_t id) const { return ports_[id]; }
    const rte_lpm *lpm4() const { return lpm4_; }
    // The IPv4 default route's next hop (rte_lpm has no depth 0), kNhInvalid when none.
    uint32_t default4() const { return default4_.load(std::memory_order_acquire); }
    // The active IPv6 trie alone (tests; workers use lookup6_bulk).
    rte_fib6 *fib6() const { return fib6_[active6_.load(std::memory_order_acquire)]; }
    // The longest-match next hop of each of n (<= Front6::kMaxBulk)
    // destinations, kNhInvalid for none: the front for /128 and /122
    // routes, the trie for the rest, both of the one copy active now.
    void lookup6_bulk(const uint8_t (*dst)[16], uint64_t *hop, uint16_t n) const;
    const NodeAddrs &node() const { return node_; }
    // Member i (< group_n of the kGroup next hop) of group g.
    uint32_t group_member(uint32_t g, uint32_t i) const { return groups_[g * kMaxGroupPaths + i]; }

    // --- control thread only ---
    void set_node(const NodeAddrs &n) { node_ = n; }
    uint32_t nh_alloc(const NextHop &nh);  // returns kNhInvalid when full
    void nh_free(uint32_t id);             // caller ensured a grace period since last use
    // A kResolve or kVia next hop learns its neighbor's MAC: writes dst_mac,
    // then release-stores kind = kVia. Only call on an entry that is kResolve,
    // or kVia with this same MAC.
    void nh_set_resolved(uint32_t id, const net::MacAddr &mac);
    // The neighbor is lost: release-stores kind = kResolve; packets are punted
    // from then on. Run synchronize() before nh_set_resolved with another MAC.
    void nh_set_unresolved(uint32_t id);
    // ECMP groups. Writes the n members (1..kMaxGroupPaths, each a next-hop
    // id) and returns the group index, or kGroupInvalid when n or a member id
    // is out of range or every group is in use. Then nh_alloc a NextHop with
    // kind = kGroup, group = g, group_n = n.
    uint32_t group_alloc(const uint32_t *members, uint8_t n);
    void group_free(uint32_t g);  // caller ensured a grace period since last use
    PortState &port_mut(uint16_t id) { return ports_[id]; }
    // Route changes return 0 or a negative errno.
    int add4(const net::Prefix4 &p, uint32_t nh);
    int del4(const net::Prefix4 &p);
    int add6(const net::Prefix6 &p, uint32_t nh);
    int del6(const net::Prefix6 &p);
    // Many IPv6 changes for one grace period: all applied to the idle copy,
    // published, then replayed on the other. rc[i] gets each change's result
    // (0 or a negative errno); a failed change is left out of both copies.
    struct Change6 {
        net::Prefix6 prefix;
        uint32_t nh;  // kNhInvalid: delete
    };
    void apply6_batch(const std::vector<Change6> &changes, std::vector<int> &rc);
    // Bytes of hugepage memory the route tables take (both IPv6 copies).
    size_t memory_bytes() const;
    // Waits until every online worker passed a quiescent point.
    void synchronize();
    // The workers' RCU (other tables that free after a grace period: conntrack).
    rte_rcu_qsbr *qsbr() const { return qsbr_; }

  private:
    rte_fib6 *create_fib6() const;
    int change6(unsigned copy, const uint8_t *ip, uint8_t len, uint32_t nh, bool add);
    int add_trie6(unsigned copy, const uint8_t *ip, uint8_t len, uint32_t nh);
    int rebuild6(unsigned copy);

    NextHop *nh_ = nullptr;  // kMaxNextHops entries on hugepage memory
    std::vector<uint32_t> nh_free_;
    uint32_t *groups_ = nullptr;  // kMaxGroups * kMaxGroupPaths next-hop ids, hugepage memory
    std::vector<uint32_t> group_free_;
    std::array<PortState, kMaxPorts> ports_;
    rte_lpm *lpm4_ = nullptr;
    std::atomic<uint32_t> default4_{kNhInvalid};
    rte_fib6 *fib6_[2] = {nullptr, nullptr};
    std::unique_ptr<Front6> front6_[2];
    // Per copy: routes of length 123..127 (and any the front could not take):
    // while there is one, a /122 hit in the front may not be the longest.
    uint32_t mid6_[2] = {0, 0};
    std::atomic<uint32_t> active6_{0};
    uint32_t max_routes6_;
    uint32_t tbl8s4_;
    uint32_t tbl8s6_;
    // Deletes on each IPv6 copy since it was built: only then can a rebuild
    // give back trie reservations (see rebuild6).
    uint64_t deletes6_[2] = {0, 0};
    uint64_t rebuild_after6_[2] = {1, 1};  // deletes needed before the next rebuild
    int socket_;
    rte_rcu_qsbr *qsbr_;
    NodeAddrs node_;
};

inline void Tables::lookup6_bulk(const uint8_t (*dst)[16], uint64_t *hop, uint16_t n) const {
    const unsigned c = active6_.load(std::memory_order_acquire);
    front6_[c]->lookup_bulk(dst, hop, n, mid6_[c] == 0);
    uint8_t miss[Front6::kMaxBulk][16];
    uint16_t at[Front6::kMaxBulk];
    uint16_t m = 0;
    for (uint16_t i = 0; i < n; i++) {  // without a branch: which ones miss is data
        std::memcpy(miss[m], dst[i], 16);
        at[m] = i;
        m += hop[i] == kNhInvalid ? 1 : 0;
    }
    if (m != 0) {
        uint64_t got[Front6::kMaxBulk];
        rte_fib6_lookup_bulk(fib6_[c], miss, got, m);
        for (uint16_t k = 0; k < m; k++) {
            hop[at[k]] = got[k];
        }
    }
}

}  // namespace fwd::dp
