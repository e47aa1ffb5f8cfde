// NAT, the datapath side: natOutgoing (Calico's source NAT of pool traffic
// leaving all pools, ../shared/CALICO.md "NAT") on the connection tracking
// core (conntrack.hpp). What the stages read (src/stages/nat.cpp), written by
// the control thread only.
//
// What is tracked: only flows a NAT translates. A packet that no NAT rule
// wants (its source in no natOutgoing pool, or its destination in a pool)
// is never looked up: route-only traffic pays a pool check, not a table
// lookup. The replies of a source-NATed flow come to the node's address and
// are looked up on the local hook.
//
// The rule, per new flow (PoolTable::snat):
//   source in a pool with natOutgoing (disabled or not)
//   AND destination in no pool at all, enabled or disabled, pools whose only
//   use is LoadBalancer excepted
//   -> source address := the node's address of the family (NodeAddrs), the
//      source port (ICMP echo: the identifier) kept when the translated tuple
//      is free, else the next free one of the range (choose_port).
// Service DNAT (Kubernetes Services, service_table.hpp) comes before this
// decision: a packet to a frontend (address, protocol, port) that no flow
// has is a new DNAT flow, its reply tuple the backend's; the flow lookup
// always comes first, so a packet that is both a flow's and natOutgoing's
// is the flow's. The stages' contract (src/stages/nat.cpp) says the rest.
//
// Publication:
//   NatConfig  [C] builds an immutable one, swap_config (release); deletes
//              the old one after a grace period. [W] loads it once per burst.
//   the table  [C] set (NatTables::ct) before the workers run, never changed
//              while they do; the ConnTable is the conntrack module's.
// Per worker: the slot "nat" (worker_slot()) holds a NatWorker*; empty: the
// stages do nothing (no NAT on this node: no ipam section, hence no cluster
// store, no pools and no services either). The service table comes from the
// worker slot "services" (svc::worker_slot()).
#pragma once

#include <rte_byteorder.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fwd/dp/affinity.hpp"
#include "fwd/dp/conntrack.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::dp::nat {

enum PoolFlags : uint8_t {
    kPoolNatOutgoing = 1 << 0,
    kPoolDisabled = 1 << 1,
    kPoolLoadBalancerOnly = 1 << 2,  // allowedUses [LoadBalancer]: not "a pool" for natOutgoing
};

struct Pool4 {
    uint32_t net;   // host order, masked
    uint32_t mask;  // host order
    uint8_t flags;
};
struct Pool6 {
    std::array<uint64_t, 2> net;  // network order words, masked
    std::array<uint64_t, 2> mask;
    uint8_t flags;
};

// Every IP pool of both families (from the IPAM store). Worker side noexcept.
class PoolTable {
  public:
    void add(const net::Prefix4 &p, uint8_t flags);
    void add(const net::Prefix6 &p, uint8_t flags);
    size_t size4() const { return v4_.size(); }
    size_t size6() const { return v6_.size(); }
    bool any_nat() const { return nat4_ || nat6_; }

    // natOutgoing applies to a packet from src to dst (addresses in network
    // order, as in the header).
    bool snat4(uint32_t src_be, uint32_t dst_be) const noexcept {
        return ways4(src_be, dst_be).snat;
    }
    bool snat6(const uint8_t *src, const uint8_t *dst) const noexcept {
        return ways6(src, dst).snat;
    }
    // natOutgoing's rule both ways for one packet, each address looked up
    // once: snat = snat4(src, dst); inbound = !snat && snat4(dst, src) (a
    // connection from outside every pool into a natOutgoing pool).
    struct Ways {
        bool snat = false;
        bool inbound = false;
    };
    Ways ways4(uint32_t src_be, uint32_t dst_be) const noexcept {
        if (!nat4_) {
            return {};
        }
        return ways(find4(rte_be_to_cpu_32(src_be)), find4(rte_be_to_cpu_32(dst_be)));
    }
    Ways ways6(const uint8_t *src, const uint8_t *dst) const noexcept {
        if (!nat6_) {
            return {};
        }
        return ways(find6(src), find6(dst));
    }
    bool nat4() const { return nat4_; }
    bool nat6() const { return nat6_; }

  private:
    // The flags of the pool holding a, | 0x80 (found: a pool may have no
    // flag); 0 when none (pools do not overlap).
    uint8_t find4(uint32_t a_host) const noexcept {
        for (const Pool4 &p : v4_) {
            if ((a_host & p.mask) == p.net) {
                return p.flags | 0x80;
            }
        }
        return 0;
    }
    uint8_t find6(const uint8_t *a) const noexcept {
        uint64_t w[2];
        std::memcpy(w, a, 16);
        for (const Pool6 &p : v6_) {
            if ((w[0] & p.mask[0]) == p.net[0] && (w[1] & p.mask[1]) == p.net[1]) {
                return p.flags | 0x80;
            }
        }
        return 0;
    }
    // The destination counts as "a pool" unless its pool serves LoadBalancer
    // addresses only (CALICO.md).
    static bool outside(uint8_t f) { return f == 0 || (f & kPoolLoadBalancerOnly); }
    static Ways ways(uint8_t s, uint8_t d) {
        Ways w;
        w.snat = (s & kPoolNatOutgoing) && outside(d);
        w.inbound = !w.snat && (d & kPoolNatOutgoing) && outside(s);
        return w;
    }

    std::vector<Pool4> v4_;
    std::vector<Pool6> v6_;
    bool nat4_ = false, nat6_ = false;  // some pool of the family has natOutgoing
};

// FelixConfiguration natPortRange; lo 0: unset, Linux masquerade's choice
// by the original port (below 512: 1-511, below 1024: 600-1023, else
// 1024-65535).
struct PortRange {
    uint16_t lo = 0, hi = 0;
};

struct NatConfig {  // immutable once published
    PoolTable pools;
    PortRange ports;
};

// The range a source port is taken from (TCP, UDP): natPortRange when set,
// else Linux's by the original port. ICMP identifiers: 0-65535 always.
PortRange port_range_for(const PortRange &cfg, uint8_t proto, uint16_t orig);

// Port choice, Linux's nf_nat_l4proto_unique_tuple in our own words: the
// original when inside the range (the caller tries it first), else from a
// per-flow start (hash) onwards, up to 128 tries, then rounds of half as
// many from other starts down to 16. The n-th candidate (n from 0), or -1
// when the search is over (exhausted).
int port_candidate(const PortRange &r, uint32_t hash, uint32_t n);
inline constexpr uint32_t kMaxPortTries = 128 + 64 + 32 + 16;

struct NatTables {
    ct::ConnTable *ct = nullptr;  // [C] before the workers run
    // sessionAffinity ClientIP: the client's backend per frontend (the nat
    // module's, sized by nat.affinity_capacity); [C] before the workers run.
    svc::AffinityTable *affinity = nullptr;
    std::atomic<const NatConfig *> cfg{nullptr};
    const NatConfig *config() const { return cfg.load(std::memory_order_acquire); }
    // Release store; returns the old one, to delete after a grace period.
    const NatConfig *swap_config(const NatConfig *next) {
        return cfg.exchange(next, std::memory_order_acq_rel);
    }
};

// A worker's NAT state: the shared tables and its own counters of the
// tracker's results (the conntrack module's, one per worker: written by
// this worker only, summed by the control thread).
struct alignas(64) NatWorker {
    NatTables *tables = nullptr;
    ct::Counters *counters = nullptr;
    svc::AffinityCounters affinity;  // [W] this worker's affinity results
    uint64_t next_age_tsc = 0;       // [W] the housekeeping's next ageing slice (ct_age)
};

// NatInfo::flags of the flows the stages create (fwdctl conntrack shows them).
enum NatFlags : uint8_t {
    kNatSnat = 1 << 0,  // source to the node's address (natOutgoing, or a service's SNAT)
    kNatDnat = 1 << 1,  // destination to a service backend (NatInfo::service / backend:
                        // the frontend and backend indexes in the table that made it)
};

uint16_t worker_slot();  // add_worker_slot("nat")

}  // namespace fwd::dp::nat
