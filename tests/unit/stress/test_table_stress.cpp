// Stress test of the publication rules in tables.hpp: two reader lcores look
// routes up the way route4 / route6 do while this thread, the single writer,
// changes every kind of table the controller changes, for at least 10 s:
//  - "slot" routes (a /26 and a /32, a /122 and a /128 per slot) and the IPv4
//    default, to via next hops that are replaced or removed;
//  - endpoint tables: pod next hops (kPod, a port and the pod's MAC) with a
//    /32 and a /128 to each, replaced (the pod came back with a new MAC) or
//    removed;
//  - ECMP: kGroup next hops over 2-8 members (group_alloc), routes to them
//    replaced by new groups or removed;
//  - neighbors: the via next hops that are the ECMP members go between
//    kResolve and kVia with a new MAC each time, by the controller's
//    MAC-change protocol (nh_set_unresolved, synchronize(), nh_set_resolved);
//  - every IPv6 change goes through apply6_batch, in bursts of 1-500.
// A next hop (or group) whose last route went away is freed after a grace
// period: the controller's order is route change, synchronize(), nh_free() /
// group_free().
//
// The invariant: every next hop the writer installs carries a marker naming
// the one prefix (or neighbor) it serves: magic bytes and an index in
// src_mac, port / mtu / vlan derived from the index, and a dst_mac its role
// fixes (a pod's MAC names the pod; a neighbor's MAC names the next-hop id
// and the MAC generation, which the writer publishes beside it; a group's
// marker carries a hash of its members). nh_free() zeroes an entry,
// group_free() zeroes a group row, and the allocators reuse what was freed
// last, so a reader that reaches a freed entry sees a zero marker and one that
// reaches a recycled entry sees another prefix's marker. Readers also look at
// every entry they used once more at the end of the burst, before their
// quiescent state: an entry freed, recycled or given another MAC while a
// reader could still use it shows there. A "published" flag per id, set by the
// writer before the route that first points at it, catches ids that were never
// installed. Readers count what they see; the checks run after the lcores are
// joined.
//
// The negative control frees next hops and groups before the grace period
// and rewrites neighbor MACs in place (no nh_set_unresolved / synchronize()):
// readers must see violations of both kinds, which proves the checks can fail.
//
// Own main: EAL without hugepages on three lcores (the writer and two readers
// on at most two CPUs), then gtest. FWD_STRESS_SECONDS sets the duration of the
// main case (default 10).
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_fib6.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_lpm.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fwd/dp/eal.hpp"
#include "fwd/dp/tables.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint32_t kSlots = 64;      // slot prefix pairs per family
constexpr uint32_t kPods = 1024;     // endpoints, each with a /32 and a /128
constexpr uint32_t kEcmpSlots = 32;  // ECMP prefixes per family
constexpr uint32_t kEcmpHosts = 8;   // destinations looked up per ECMP prefix
constexpr uint32_t kNeighbors = 64;  // via next hops that are ECMP members
constexpr uint32_t kMinPaths = 2;
constexpr uint32_t kMaxPaths = 8;
constexpr uint32_t kMaxBatch6 = 500;   // IPv6 changes per apply6_batch
constexpr uint32_t kPodChurn = 8;      // pods changed per writer step, at most
constexpr uint16_t kLookupBurst = 32;  // destinations per family per burst
constexpr uint32_t kReaders = 2;
// Readers go offline and yield this often, as an idle worker does when it
// sleeps: a reader sharing a CPU with the writer then lets the writer run
// without holding up its grace period.
constexpr uint64_t kBurstsPerRest = 256;
constexpr std::array<uint8_t, 2> kMagic = {0xf5, 0x7d};

// The index a marker carries. Slot prefixes: family bit, slot, and which of
// the slot's two prefixes (wide: /26 or /122; host: /32 or /128).
constexpr uint16_t kV6Bit = 0x8000;
constexpr uint16_t kDefaultIndex = 0x7fff;  // the IPv4 default route
constexpr uint16_t kPodBase = 0x1000;       // + pod: one next hop for both families
constexpr uint16_t kNbrBase = 0x2000;       // + neighbor
constexpr uint16_t kGroupBase = 0x3000;     // + 0x100 for IPv6 + ECMP slot

constexpr uint16_t prefix_index(bool v6, uint32_t slot, bool wide) {
    return static_cast<uint16_t>((v6 ? kV6Bit : 0) | (slot << 1) | (wide ? 1 : 0));
}
constexpr uint16_t pod_index(uint32_t pod) {
    return static_cast<uint16_t>(kPodBase + pod);
}
constexpr uint16_t nbr_index(uint32_t n) {
    return static_cast<uint16_t>(kNbrBase + n);
}
constexpr uint16_t group_index(bool v6, uint32_t slot) {
    return static_cast<uint16_t>(kGroupBase + (v6 ? 0x100 : 0) + slot);
}

enum class Role : uint8_t { kUnknown, kStatic, kPod, kNbr, kGroup };

Role role_of(uint16_t index) {
    if (index == kDefaultIndex || (index & ~kV6Bit) < (kSlots << 1)) {
        return Role::kStatic;
    }
    if (index >= kPodBase && index < kPodBase + kPods) {
        return Role::kPod;
    }
    if (index >= kNbrBase && index < kNbrBase + kNeighbors) {
        return Role::kNbr;
    }
    if (index >= kGroupBase && index < kGroupBase + 0x200 && (index & 0xff) < kEcmpSlots) {
        return Role::kGroup;
    }
    return Role::kUnknown;
}

using Mac = std::array<uint8_t, 6>;

// The via next hop of a slot prefix or the default.
Mac static_mac(uint16_t index) {
    return {0x02, 0x5a, static_cast<uint8_t>(index >> 8), static_cast<uint8_t>(index), 0x00, 0x01};
}

// A pod's MAC: the pod and a generation (a new one each time the pod comes
// back), with a check byte.
Mac pod_mac(uint32_t pod, uint8_t gen) {
    return {0x0a,
            0x58,
            static_cast<uint8_t>(pod >> 8),
            static_cast<uint8_t>(pod),
            gen,
            static_cast<uint8_t>(gen ^ static_cast<uint8_t>(pod) ^ 0x3c)};
}

bool pod_mac_ok(const Mac &m, uint32_t pod) {
    return m == pod_mac(pod, m[4]);
}

// A neighbor's MAC: the next-hop id and the MAC generation.
Mac nbr_mac(uint32_t id, uint32_t gen) {
    return {0x02,
            static_cast<uint8_t>(id >> 8),
            static_cast<uint8_t>(id),
            static_cast<uint8_t>(gen >> 8),
            static_cast<uint8_t>(gen),
            static_cast<uint8_t>(id ^ gen ^ 0x77)};
}

// aux: constant for the life of the entry (a group's member hash, a pod's
// generation).
NextHop marked_nh(uint16_t index, uint16_t aux, NhKind kind, const Mac &dst) {
    NextHop nh{};
    nh.dst_mac = dst;
    nh.src_mac = {kMagic[0],
                  kMagic[1],
                  static_cast<uint8_t>(index >> 8),
                  static_cast<uint8_t>(index),
                  static_cast<uint8_t>(aux >> 8),
                  static_cast<uint8_t>(aux)};
    nh.port = index;
    nh.mtu = index ^ 0xa5a5;
    nh.vlan = static_cast<uint16_t>(~index);
    nh.kind = kind;
    return nh;
}

// True when nh carries a whole marker written by marked_nh(); sets index and aux.
bool read_marker(const NextHop &nh, uint16_t &index, uint16_t &aux) {
    if (nh.src_mac[0] != kMagic[0] || nh.src_mac[1] != kMagic[1]) {
        return false;
    }
    index = static_cast<uint16_t>(nh.src_mac[2] << 8 | nh.src_mac[3]);
    aux = static_cast<uint16_t>(nh.src_mac[4] << 8 | nh.src_mac[5]);
    return nh.port == index && nh.mtu == (index ^ 0xa5a5) &&
           nh.vlan == static_cast<uint16_t>(~index);
}

uint16_t members_hash(const uint32_t *m, uint32_t n) {
    uint32_t h = 0x811c9dc5u ^ n;
    for (uint32_t i = 0; i < n; i++) {
        h = (h ^ m[i]) * 0x01000193u;
    }
    return static_cast<uint16_t>(h ^ h >> 16);
}

// What a destination may resolve to: kHost is covered by the slot's host
// route and its wide route, kNet only by the wide route, kNone by no route
// (only the IPv4 default), kPod by its pod's /32 or /128, kEcmp by its ECMP
// prefix.
enum class DstKind : uint8_t { kHost, kNet, kNone, kPod, kEcmp };

struct Dst4 {
    uint32_t addr;  // host order
    uint32_t key;   // slot, pod or ECMP slot
    DstKind kind;
};

struct Dst6 {
    std::array<uint8_t, 16> addr;
    uint32_t key;
    DstKind kind;
};

uint32_t addr4(uint32_t net, uint32_t slot, uint32_t host) {
    return net | slot << 8 | host;
}

// fd<net>::<b13><b14>:<b15>; kNone destinations live in fd01::/16, which has
// no route.
std::array<uint8_t, 16> addr6(uint8_t net, uint8_t b13, uint8_t b14, uint8_t b15) {
    std::array<uint8_t, 16> a{};
    a[0] = 0xfd;
    a[1] = net;
    a[13] = b13;
    a[14] = b14;
    a[15] = b15;
    return a;
}

std::array<uint8_t, 16> slot6(uint8_t net, uint32_t slot, uint8_t host) {
    return addr6(net, static_cast<uint8_t>(slot), 0, host);
}
std::array<uint8_t, 16> pod6(uint32_t pod) {
    return addr6(0x02, 0, static_cast<uint8_t>(pod >> 8), static_cast<uint8_t>(pod));
}
uint32_t pod4(uint32_t pod) {
    return 0x0a020000 | pod;
}

net::Prefix4 prefix4(uint32_t slot, bool wide) {
    return wide ? net::Prefix4{net::Ip4Addr::from_host(addr4(0x0a000000, slot, 0)), 26}
                : net::Prefix4{net::Ip4Addr::from_host(addr4(0x0a000000, slot, 1)), 32};
}

net::Prefix6 prefix6(uint32_t slot, bool wide) {
    auto a = slot6(0x00, slot, wide ? 0 : 1);
    return net::Prefix6{net::Ip6Addr::from_bytes(a.data()), static_cast<uint8_t>(wide ? 122 : 128)};
}

net::Prefix4 pod_prefix4(uint32_t pod) {
    return {net::Ip4Addr::from_host(pod4(pod)), 32};
}
net::Prefix6 pod_prefix6(uint32_t pod) {
    auto a = pod6(pod);
    return {net::Ip6Addr::from_bytes(a.data()), 128};
}

// 10.3.<slot>.0/24 and fd03::<slot>00:0/112.
net::Prefix4 ecmp_prefix4(uint32_t slot) {
    return {net::Ip4Addr::from_host(addr4(0x0a030000, slot, 0)), 24};
}
net::Prefix6 ecmp_prefix6(uint32_t slot) {
    auto a = addr6(0x03, static_cast<uint8_t>(slot), 0, 0);
    return {net::Ip6Addr::from_bytes(a.data()), 112};
}

std::vector<Dst4> destinations4() {
    std::vector<Dst4> d;
    for (uint32_t s = 0; s < kSlots; s++) {
        d.push_back({addr4(0x0a000000, s, 1), s, DstKind::kHost});
        d.push_back({addr4(0x0a000000, s, 2), s, DstKind::kNet});
        d.push_back({addr4(0x0a010000, s, 1), s, DstKind::kNone});
    }
    for (uint32_t p = 0; p < kPods; p++) {
        d.push_back({pod4(p), p, DstKind::kPod});
    }
    for (uint32_t s = 0; s < kEcmpSlots; s++) {
        for (uint32_t h = 1; h <= kEcmpHosts; h++) {
            d.push_back({addr4(0x0a030000, s, h * 29), s, DstKind::kEcmp});
        }
    }
    return d;
}

std::vector<Dst6> destinations6() {
    std::vector<Dst6> d;
    for (uint32_t s = 0; s < kSlots; s++) {
        d.push_back({slot6(0x00, s, 1), s, DstKind::kHost});
        d.push_back({slot6(0x00, s, 2), s, DstKind::kNet});
        d.push_back({slot6(0x01, s, 1), s, DstKind::kNone});
    }
    for (uint32_t p = 0; p < kPods; p++) {
        d.push_back({pod6(p), p, DstKind::kPod});
    }
    for (uint32_t s = 0; s < kEcmpSlots; s++) {
        for (uint32_t h = 1; h <= kEcmpHosts; h++) {
            d.push_back({addr6(0x03, static_cast<uint8_t>(s), static_cast<uint8_t>(h), 0x42), s,
                         DstKind::kEcmp});
        }
    }
    return d;
}

// Whether a route lookup (not the default) for a destination may return the
// entry of index.
bool route_allowed(bool v6, uint32_t key, DstKind kind, uint16_t index) {
    switch (kind) {
        case DstKind::kHost:
            return index == prefix_index(v6, key, false) || index == prefix_index(v6, key, true);
        case DstKind::kNet:
            return index == prefix_index(v6, key, true);
        case DstKind::kPod:
            return index == pod_index(key);
        case DstKind::kEcmp:
            return index == group_index(v6, key);
        case DstKind::kNone:
        default:
            return false;
    }
}

uint64_t xorshift(uint64_t &s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

// Written only by its reader; read by the test thread after the join.
struct alignas(64) ReaderStats {
    uint64_t lookups = 0;
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t groups = 0;        // kGroup next hops resolved to their members
    uint64_t via_used = 0;      // neighbors seen kVia (their MAC checked)
    uint64_t unresolved = 0;    // neighbors seen kResolve
    uint64_t bad_id = 0;        // out of range or never published
    uint64_t bad_marker = 0;    // zeroed (freed) or torn entry, or a wrong kind
    uint64_t wrong_prefix = 0;  // a whole entry, but for another prefix
    uint64_t bad_mac = 0;       // kVia with a MAC not the one published with it
    uint64_t bad_group = 0;     // group index or size out of range, members not its own
    uint64_t freed_in_use = 0;  // entry freed, recycled or changed before the quiescent state
    uint64_t mac_in_use = 0;    // a kVia neighbor's MAC changed before the quiescent state
    uint64_t violations() const {
        return bad_id + bad_marker + wrong_prefix + bad_mac + bad_group + freed_in_use + mac_in_use;
    }
    void add(const ReaderStats &o) {
        lookups += o.lookups;
        hits += o.hits;
        misses += o.misses;
        groups += o.groups;
        via_used += o.via_used;
        unresolved += o.unresolved;
        bad_id += o.bad_id;
        bad_marker += o.bad_marker;
        wrong_prefix += o.wrong_prefix;
        bad_mac += o.bad_mac;
        bad_group += o.bad_group;
        freed_in_use += o.freed_in_use;
        mac_in_use += o.mac_in_use;
    }
};

// What the writer shares with the readers.
struct Shared {
    const Tables *tables = nullptr;
    rte_rcu_qsbr *qsbr = nullptr;
    std::vector<Dst4> dst4 = destinations4();
    std::vector<Dst6> dst6 = destinations6();
    // writer stores (release), readers load (acquire)
    std::atomic<bool> running{true};
    // Ids the writer ever published; writer sets before the route, readers read.
    std::array<std::atomic<uint8_t>, kMaxNextHops> published{};
    // The MAC generation of each neighbor; the writer stores it before
    // nh_set_resolved publishes the MAC, readers load it after load_kind().
    std::array<std::atomic<uint32_t>, kNeighbors> nbr_gen{};
};

// An entry a reader used in this burst, as it saw it.
struct Obs {
    uint32_t id;
    uint16_t index;
    uint16_t aux;
    NhKind kind;
    uint8_t group_n;
    uint32_t group;
    Mac mac;
};

constexpr size_t kMaxObs = 2 * kLookupBurst * (1 + kMaxPaths);

class Checker {
  public:
    Checker(const Shared &sh, ReaderStats &st) : sh_(sh), t_(*sh.tables), st_(st) {}

    // A lookup answer: the entry must be valid and serve the destination.
    void route(uint32_t id, bool from_route, bool v6, uint32_t key, DstKind kind) {
        if (id == kNhInvalid) {
            st_.misses++;
            return;
        }
        st_.hits++;
        Obs o{};
        if (!entry(id, o)) {
            return;
        }
        Role r = role_of(o.index);
        bool ok = from_route ? (r == Role::kStatic || r == Role::kPod || r == Role::kGroup) &&
                                   route_allowed(v6, key, kind, o.index)
                             : o.index == kDefaultIndex;
        if (!ok) {
            st_.wrong_prefix++;
        }
    }

    // Every entry used in this burst once more: under the publication rules
    // none can have been freed, recycled or given another MAC before this
    // reader's next quiescent state.
    void recheck() {
        for (size_t i = 0; i < n_obs_; i++) {
            recheck(obs_[i]);
        }
        n_obs_ = 0;
    }

  private:
    // Checks the entry behind id (and a group's members): published, whole,
    // live and self-consistent for its role. Records it for recheck().
    bool entry(uint32_t id, Obs &o, bool member = false) {
        if (id == kNhInvalid || id >= kMaxNextHops ||
            sh_.published[id].load(std::memory_order_acquire) == 0) {
            st_.bad_id++;
            return false;
        }
        const NextHop &ref = t_.nh(id);
        // The kind first (acquire), as a worker reads it: what the writer
        // published with it (the MAC) is visible after.
        const NhKind k = load_kind(ref);
        const NextHop nh = ref;
        uint16_t index = 0;
        uint16_t aux = 0;
        if (!read_marker(nh, index, aux)) {
            st_.bad_marker++;
            return false;
        }
        o = Obs{id, index, aux, k, nh.group_n, nh.group, nh.dst_mac};
        const Role role = role_of(index);
        if (member && role != Role::kNbr) {
            st_.bad_group++;
            return false;
        }
        switch (role) {
            case Role::kStatic:
                if (k != NhKind::kVia || nh.dst_mac != static_mac(index)) {
                    st_.bad_marker++;
                    return false;
                }
                break;
            case Role::kPod:
                if (k != NhKind::kPod || !pod_mac_ok(nh.dst_mac, index - kPodBase)) {
                    st_.bad_marker++;
                    return false;
                }
                break;
            case Role::kNbr:
                if (k == NhKind::kVia) {
                    st_.via_used++;
                    uint32_t gen = sh_.nbr_gen[index - kNbrBase].load(std::memory_order_acquire);
                    if (gen == 0 || nh.dst_mac != nbr_mac(id, gen)) {
                        st_.bad_mac++;
                        return false;
                    }
                } else if (k == NhKind::kResolve) {
                    st_.unresolved++;
                } else {
                    st_.bad_marker++;
                    return false;
                }
                break;
            case Role::kGroup:
                if (k != NhKind::kGroup || !group(nh, aux)) {
                    return false;
                }
                break;
            case Role::kUnknown:
            default:
                st_.bad_marker++;
                return false;
        }
        if (n_obs_ < kMaxObs) {
            obs_[n_obs_++] = o;
        }
        return true;
    }

    // A kGroup entry: its row holds group_n valid neighbors, the ones it
    // was made with (the hash in its marker).
    bool group(const NextHop &nh, uint16_t aux) {
        st_.groups++;
        if (nh.group >= kMaxGroups || nh.group_n < kMinPaths || nh.group_n > kMaxPaths) {
            st_.bad_group++;
            return false;
        }
        uint32_t m[kMaxGroupPaths];
        for (uint32_t i = 0; i < nh.group_n; i++) {
            m[i] = t_.group_member(nh.group, i);
        }
        if (members_hash(m, nh.group_n) != aux) {
            st_.bad_group++;
            return false;
        }
        for (uint32_t i = 0; i < nh.group_n; i++) {
            Obs mo{};
            if (!entry(m[i], mo, true)) {
                return false;
            }
        }
        return true;
    }

    void recheck(const Obs &o) {
        const NextHop &ref = t_.nh(o.id);
        const NhKind k = load_kind(ref);
        const NextHop nh = ref;
        uint16_t index = 0;
        uint16_t aux = 0;
        if (!read_marker(nh, index, aux) || index != o.index || aux != o.aux) {
            st_.freed_in_use++;
            return;
        }
        Role r = role_of(index);
        if (r == Role::kNbr) {
            // May go kVia -> kResolve at any time (and kResolve -> kVia), but
            // a MAC seen with kVia stays until this reader is quiescent.
            if (o.kind == NhKind::kVia && nh.dst_mac != o.mac) {
                st_.mac_in_use++;
            }
            return;
        }
        if (k != o.kind || nh.dst_mac != o.mac || nh.group != o.group || nh.group_n != o.group_n) {
            st_.freed_in_use++;
            return;
        }
        if (r == Role::kGroup) {
            uint32_t m[kMaxGroupPaths];
            for (uint32_t i = 0; i < o.group_n; i++) {
                m[i] = t_.group_member(o.group, i);
            }
            if (members_hash(m, o.group_n) != o.aux) {
                st_.freed_in_use++;
            }
        }
    }

    const Shared &sh_;
    const Tables &t_;
    ReaderStats &st_;
    std::array<Obs, kMaxObs> obs_;
    size_t n_obs_ = 0;
};

struct ReaderArg {
    Shared *shared = nullptr;
    unsigned thread_id = 0;
    ReaderStats stats;
};

int reader_main(void *p) {
    auto &arg = *static_cast<ReaderArg *>(p);
    const Shared &sh = *arg.shared;
    const Tables &t = *sh.tables;
    ReaderStats st;
    auto checker = std::make_unique<Checker>(sh, st);
    uint64_t rng = 0x9e3779b97f4a7c15ull * (arg.thread_id + 1);
    rte_rcu_qsbr_thread_register(sh.qsbr, arg.thread_id);
    rte_rcu_qsbr_thread_online(sh.qsbr, arg.thread_id);
    uint32_t pick[kLookupBurst];
    uint32_t ip4[kLookupBurst];
    uint32_t hop4[kLookupBurst];
    uint8_t ip6[kLookupBurst][RTE_FIB6_IPV6_ADDR_SIZE];
    uint64_t hop6[kLookupBurst];
    uint64_t bursts = 0;
    while (sh.running.load(std::memory_order_acquire)) {
        // IPv4 as route4: bulk LPM lookup, then the default route on a miss.
        for (uint16_t i = 0; i < kLookupBurst; i++) {
            pick[i] = static_cast<uint32_t>(xorshift(rng) % sh.dst4.size());
            ip4[i] = sh.dst4[pick[i]].addr;
        }
        rte_lpm_lookup_bulk(t.lpm4(), ip4, hop4, kLookupBurst);
        const uint32_t dflt = t.default4();
        for (uint16_t i = 0; i < kLookupBurst; i++) {
            const Dst4 &d = sh.dst4[pick[i]];
            bool hit = (hop4[i] & RTE_LPM_LOOKUP_SUCCESS) != 0;
            uint32_t id = hit ? (hop4[i] & 0x00ffffff) : dflt;
            checker->route(id, hit, false, d.key, d.kind);
        }
        // IPv6 as route6: the active copy (its front and trie) loaded once per burst.
        for (uint16_t i = 0; i < kLookupBurst; i++) {
            pick[i] = static_cast<uint32_t>(xorshift(rng) % sh.dst6.size());
            std::memcpy(ip6[i], sh.dst6[pick[i]].addr.data(), 16);
        }
        t.lookup6_bulk(ip6, hop6, kLookupBurst);  // the front, then the trie
        for (uint16_t i = 0; i < kLookupBurst; i++) {
            const Dst6 &d = sh.dst6[pick[i]];
            checker->route(static_cast<uint32_t>(hop6[i]), true, true, d.key, d.kind);
        }
        st.lookups += 2 * kLookupBurst;
        checker->recheck();
        rte_rcu_qsbr_quiescent(sh.qsbr, arg.thread_id);
        if (++bursts % kBurstsPerRest == 0) {
            rte_rcu_qsbr_thread_offline(sh.qsbr, arg.thread_id);
            sched_yield();
            rte_rcu_qsbr_thread_online(sh.qsbr, arg.thread_id);
        }
    }
    rte_rcu_qsbr_thread_offline(sh.qsbr, arg.thread_id);
    rte_rcu_qsbr_thread_unregister(sh.qsbr, arg.thread_id);
    arg.stats = st;
    return 0;
}

struct WriterCounts {
    uint64_t route_ops = 0;  // route changes, both families
    uint64_t v6_changes = 0;
    uint64_t batches6 = 0;
    uint64_t batch_min = UINT64_MAX;
    uint64_t batch_max = 0;
    uint64_t pods = 0;       // pod next hops installed
    uint64_t groups = 0;     // ECMP groups installed
    uint64_t mac_flips = 0;  // neighbor MAC changes
    uint64_t syncs = 0;
    uint64_t rebuilds6 = 0;  // IPv6 copies rebuilt (seen as a new active pointer)
    WriterCounts since(const WriterCounts &o) const {
        WriterCounts d = *this;
        d.route_ops -= o.route_ops;
        d.v6_changes -= o.v6_changes;
        d.batches6 -= o.batches6;
        d.pods -= o.pods;
        d.groups -= o.groups;
        d.mac_flips -= o.mac_flips;
        d.syncs -= o.syncs;
        d.rebuilds6 -= o.rebuilds6;
        return d;
    }
};

// The single writer and its model of what the tables hold.
class Writer {
  public:
    Writer(Tables &t, Shared &sh, bool early) : t_(t), sh_(sh), early_(early) {
        for (uint32_t n = 0; n < kNeighbors; n++) {
            nbr_[n] = install(marked_nh(nbr_index(n), 0, NhKind::kResolve, Mac{}));
            unresolved_.push_back(n);
        }
        t_.synchronize();
        resolve(true);
    }

    // One batch: both prefixes of one slot in each family replaced or
    // removed, sometimes the IPv4 default, some pods, an ECMP prefix per
    // family, a neighbor MAC; IPv6 changes are queued for apply6_batch.
    // Then the grace period, the frees, and neighbors given their new MAC.
    void step() {
        uint32_t s = next_slot_++ % kSlots;
        for (int wide = 0; wide < 2; wide++) {
            change_slot(false, s, wide != 0);
            change_slot(true, s, wide != 0);
        }
        if (s % 8 == 0) {
            change_default();
        }
        for (uint64_t i = xorshift(rng_) % (kPodChurn + 1); i > 0; i--) {
            change_pod(static_cast<uint32_t>(xorshift(rng_) % kPods));
        }
        change_group(false, static_cast<uint32_t>(xorshift(rng_) % kEcmpSlots));
        change_group(true, static_cast<uint32_t>(xorshift(rng_) % kEcmpSlots));
        flip_neighbor();
        sync_and_free();
        resolve(false);
    }

    // Applies the queued IPv6 changes.
    void flush6() {
        if (batch6_.empty()) {
            return;
        }
        t_.apply6_batch(batch6_, rc6_);
        // The active copy alternates; one that is not the pointer this copy
        // had before was rebuilt (rebuild6).
        const rte_fib6 *active = t_.fib6();
        if (active != fib6_seen_[1]) {
            c_.rebuilds6 += fib6_seen_[0] != nullptr && active != fib6_seen_[0] ? 1 : 0;
            fib6_seen_[0] = fib6_seen_[1];
            fib6_seen_[1] = active;
        }
        for (int rc : rc6_) {
            count(rc);
        }
        c_.v6_changes += batch6_.size();
        c_.batches6++;
        c_.batch_min = std::min<uint64_t>(c_.batch_min, batch6_.size());
        c_.batch_max = std::max<uint64_t>(c_.batch_max, batch6_.size());
        batch6_.clear();
        batch_target_ = 1 + static_cast<uint32_t>(xorshift(rng_) % kMaxBatch6);
        // Their IPv6 routes are gone now: freed after the next grace period.
        pending_.insert(pending_.end(), after6_.begin(), after6_.end());
        after6_.clear();
        pending_groups_.insert(pending_groups_.end(), after6_groups_.begin(), after6_groups_.end());
        after6_groups_.clear();
    }

    // Removes every route and frees every next hop and group.
    void clear() {
        for (uint32_t s = 0; s < kSlots; s++) {
            for (int w = 0; w < 2; w++) {
                if (cur4_[s][w] != kNhInvalid) {
                    count(t_.del4(prefix4(s, w != 0)));
                    retire(cur4_[s][w], false);
                    cur4_[s][w] = kNhInvalid;
                }
                if (cur6_[s][w] != kNhInvalid) {
                    queue6(prefix6(s, w != 0), kNhInvalid);
                    retire(cur6_[s][w], true);
                    cur6_[s][w] = kNhInvalid;
                }
            }
        }
        if (default_ != kNhInvalid) {
            count(t_.del4({net::Ip4Addr{}, 0}));
            retire(default_, false);
            default_ = kNhInvalid;
        }
        for (uint32_t p = 0; p < kPods; p++) {
            if (pod_[p] != kNhInvalid) {
                count(t_.del4(pod_prefix4(p)));
                queue6(pod_prefix6(p), kNhInvalid);
                retire(pod_[p], true);
                pod_[p] = kNhInvalid;
            }
        }
        for (uint32_t s = 0; s < kEcmpSlots; s++) {
            if (grp4_[s].nh != kNhInvalid) {
                count(t_.del4(ecmp_prefix4(s)));
                retire_group(grp4_[s], false);
                grp4_[s] = {};
            }
            if (grp6_[s].nh != kNhInvalid) {
                queue6(ecmp_prefix6(s), kNhInvalid);
                retire_group(grp6_[s], true);
                grp6_[s] = {};
            }
        }
        flush6();
        sync_and_free();
        // No group holds the neighbors any more.
        for (uint32_t n = 0; n < kNeighbors; n++) {
            t_.nh_free(nbr_[n]);
            nbr_[n] = kNhInvalid;
        }
    }

    // Looks every destination up from this thread (readers stopped) and
    // counts answers that differ from the model; also the neighbors and the
    // group rows.
    uint64_t mismatches() const {
        uint64_t bad = 0;
        for (const Dst4 &d : sh_.dst4) {
            uint32_t hop = 0;
            uint32_t got = rte_lpm_lookup(t_.lpm4(), d.addr, &hop) == 0 ? hop : t_.default4();
            bad += got != expected(false, d.key, d.kind) ? 1 : 0;
        }
        for (const Dst6 &d : sh_.dst6) {
            uint8_t ip[1][RTE_FIB6_IPV6_ADDR_SIZE];
            uint64_t hop = 0;
            std::memcpy(ip[0], d.addr.data(), 16);
            t_.lookup6_bulk(ip, &hop, 1);
            bad += hop != expected(true, d.key, d.kind) ? 1 : 0;
        }
        for (uint32_t n = 0; n < kNeighbors; n++) {
            const NextHop &nh = t_.nh(nbr_[n]);
            NhKind k = load_kind(nh);
            if (resolved_[n] ? k != NhKind::kVia || nh.dst_mac != nbr_mac(nbr_[n], gen_[n])
                             : k != NhKind::kResolve) {
                bad++;
            }
        }
        for (const auto *grp : {&grp4_, &grp6_}) {
            for (const Group &g : *grp) {
                if (g.nh == kNhInvalid) {
                    continue;
                }
                const NextHop &nh = t_.nh(g.nh);
                if (nh.kind != NhKind::kGroup || nh.group != g.g || nh.group_n != g.n) {
                    bad++;
                    continue;
                }
                for (uint32_t i = 0; i < g.n; i++) {
                    bad += t_.group_member(g.g, i) != g.members[i] ? 1 : 0;
                }
            }
        }
        return bad;
    }

    const WriterCounts &counts() const { return c_; }
    uint64_t failures() const { return failures_; }
    int first_error() const { return first_error_; }

  private:
    struct Group {
        uint32_t nh = kNhInvalid;
        uint32_t g = kGroupInvalid;
        uint32_t n = 0;
        std::array<uint32_t, kMaxPaths> members{};
    };

    uint32_t expected(bool v6, uint32_t key, DstKind kind) const {
        uint32_t dflt = v6 ? kNhInvalid : default_;
        uint32_t id = kNhInvalid;
        switch (kind) {
            case DstKind::kHost:
            case DstKind::kNet: {
                const auto &cur = v6 ? cur6_[key] : cur4_[key];
                id = kind == DstKind::kHost && cur[0] != kNhInvalid ? cur[0] : cur[1];
                break;
            }
            case DstKind::kPod:
                id = pod_[key];
                break;
            case DstKind::kEcmp:
                id = v6 ? grp6_[key].nh : grp4_[key].nh;
                break;
            case DstKind::kNone:
            default:
                break;
        }
        return id != kNhInvalid ? id : dflt;
    }

    // The marker and the published flag before the route that points at them.
    uint32_t install(const NextHop &nh) {
        uint32_t id = t_.nh_alloc(nh);
        if (id == kNhInvalid) {
            failures_++;
            return id;
        }
        sh_.published[id].store(1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
        return id;
    }

    void queue6(const net::Prefix6 &p, uint32_t nh) {
        batch6_.push_back({p, nh});
        if (batch6_.size() >= batch_target_) {
            flush6();
        }
    }

    // The controller's order frees after the route change and synchronize()
    // (for IPv6, after the batch holding the change); the negative control
    // frees at once, before any grace period.
    void retire(uint32_t id, bool v6) {
        if (early_) {
            t_.nh_free(id);
        } else {
            (v6 ? after6_ : pending_).push_back(id);
        }
    }

    void retire_group(const Group &g, bool v6) {
        retire(g.nh, v6);
        if (early_) {
            t_.group_free(g.g);
        } else {
            (v6 ? after6_groups_ : pending_groups_).push_back(g.g);
        }
    }

    void sync_and_free() {
        t_.synchronize();
        c_.syncs++;
        for (uint32_t id : pending_) {
            t_.nh_free(id);
        }
        pending_.clear();
        for (uint32_t g : pending_groups_) {
            t_.group_free(g);
        }
        pending_groups_.clear();
    }

    void count(int rc) {
        c_.route_ops++;
        if (rc != 0) {
            first_error_ = first_error_ != 0 ? first_error_ : rc;
            failures_++;
        }
    }

    // Three times in four the route is replaced (or added), else removed.
    void change_slot(bool v6, uint32_t s, bool wide) {
        uint32_t &cur = v6 ? cur6_[s][wide] : cur4_[s][wide];
        uint32_t old = cur;
        if (old != kNhInvalid && xorshift(rng_) % 4 == 0) {
            if (v6) {
                queue6(prefix6(s, wide), kNhInvalid);
            } else {
                count(t_.del4(prefix4(s, wide)));
            }
            cur = kNhInvalid;
        } else {
            uint16_t index = prefix_index(v6, s, wide);
            uint32_t id = install(marked_nh(index, 0, NhKind::kVia, static_mac(index)));
            if (id == kNhInvalid) {
                return;
            }
            if (v6) {
                queue6(prefix6(s, wide), id);
            } else {
                count(t_.add4(prefix4(s, wide), id));
            }
            cur = id;
        }
        if (old != kNhInvalid) {
            retire(old, v6);
        }
    }

    void change_default() {
        uint32_t old = default_;
        if (old != kNhInvalid && xorshift(rng_) % 2 == 0) {
            count(t_.del4({net::Ip4Addr{}, 0}));
            default_ = kNhInvalid;
        } else {
            uint32_t id =
                install(marked_nh(kDefaultIndex, 0, NhKind::kVia, static_mac(kDefaultIndex)));
            if (id == kNhInvalid) {
                return;
            }
            count(t_.add4({net::Ip4Addr{}, 0}, id));
            default_ = id;
        }
        if (old != kNhInvalid) {
            retire(old, false);
        }
    }

    // Endpoint tables: a pod goes away (both routes removed) or comes (back)
    // with a new next hop and MAC. Its next hop serves both families, so it
    // is freed only once its /128 is gone too.
    void change_pod(uint32_t p) {
        uint32_t old = pod_[p];
        if (old != kNhInvalid && xorshift(rng_) % 2 == 0) {
            count(t_.del4(pod_prefix4(p)));
            queue6(pod_prefix6(p), kNhInvalid);
            pod_[p] = kNhInvalid;
        } else {
            uint8_t gen = static_cast<uint8_t>(pod_gen_++);
            uint32_t id = install(marked_nh(pod_index(p), gen, NhKind::kPod, pod_mac(p, gen)));
            if (id == kNhInvalid) {
                return;
            }
            c_.pods++;
            count(t_.add4(pod_prefix4(p), id));
            queue6(pod_prefix6(p), id);
            pod_[p] = id;
        }
        if (old != kNhInvalid) {
            retire(old, true);
        }
    }

    // ECMP: a new group over 2-8 distinct neighbors replaces the prefix's
    // group, or the prefix is removed.
    void change_group(bool v6, uint32_t s) {
        Group &cur = v6 ? grp6_[s] : grp4_[s];
        Group old = cur;
        if (old.nh != kNhInvalid && xorshift(rng_) % 4 == 0) {
            if (v6) {
                queue6(ecmp_prefix6(s), kNhInvalid);
            } else {
                count(t_.del4(ecmp_prefix4(s)));
            }
            cur = {};
        } else {
            Group g;
            g.n = kMinPaths + static_cast<uint32_t>(xorshift(rng_) % (kMaxPaths - kMinPaths + 1));
            std::array<uint32_t, kNeighbors> order;
            for (uint32_t i = 0; i < kNeighbors; i++) {
                order[i] = i;
            }
            for (uint32_t i = 0; i < g.n; i++) {
                uint32_t j = i + static_cast<uint32_t>(xorshift(rng_) % (kNeighbors - i));
                std::swap(order[i], order[j]);
                g.members[i] = nbr_[order[i]];
            }
            g.g = t_.group_alloc(g.members.data(), static_cast<uint8_t>(g.n));
            if (g.g == kGroupInvalid) {
                failures_++;
                return;
            }
            NextHop nh = marked_nh(group_index(v6, s), members_hash(g.members.data(), g.n),
                                   NhKind::kGroup, Mac{});
            nh.group = g.g;
            nh.group_n = static_cast<uint8_t>(g.n);
            g.nh = install(nh);
            if (g.nh == kNhInvalid) {
                t_.group_free(g.g);
                return;
            }
            c_.groups++;
            if (v6) {
                queue6(ecmp_prefix6(s), g.nh);
            } else {
                count(t_.add4(ecmp_prefix4(s), g.nh));
            }
            cur = g;
        }
        if (old.nh != kNhInvalid) {
            retire_group(old, v6);
        }
    }

    // The controller's MAC change: the neighbor is lost (kResolve) now and
    // learnt again with a new MAC after the step's grace period (resolve()).
    // The negative control rewrites the MAC of a kVia entry in place.
    void flip_neighbor() {
        uint32_t n = static_cast<uint32_t>(xorshift(rng_) % kNeighbors);
        if (!resolved_[n]) {
            return;
        }
        if (early_) {
            set_mac(n);
            return;
        }
        t_.nh_set_unresolved(nbr_[n]);
        resolved_[n] = false;
        unresolved_.push_back(n);
    }

    // After a grace period: three in four unresolved neighbors (all when
    // all) learn a new MAC; the rest stay kResolve for another step.
    void resolve(bool all) {
        size_t keep = 0;
        for (uint32_t n : unresolved_) {
            if (!all && xorshift(rng_) % 4 == 0) {
                unresolved_[keep++] = n;
                continue;
            }
            set_mac(n);
        }
        unresolved_.resize(keep);
    }

    void set_mac(uint32_t n) {
        uint32_t gen = ++gen_[n];
        sh_.nbr_gen[n].store(gen, std::memory_order_release);
        auto mac = nbr_mac(nbr_[n], gen);
        t_.nh_set_resolved(nbr_[n], net::MacAddr(mac));
        resolved_[n] = true;
        c_.mac_flips++;
    }

    Tables &t_;
    Shared &sh_;
    bool early_;
    uint64_t rng_ = 0x2545f4914f6cdd1dull;
    uint32_t next_slot_ = 0;
    uint32_t pod_gen_ = 0;
    std::array<std::array<uint32_t, 2>, kSlots> cur4_{};  // [slot][wide]
    std::array<std::array<uint32_t, 2>, kSlots> cur6_{};
    uint32_t default_ = kNhInvalid;
    std::array<uint32_t, kPods> pod_{};
    std::array<Group, kEcmpSlots> grp4_{};
    std::array<Group, kEcmpSlots> grp6_{};
    std::array<uint32_t, kNeighbors> nbr_{};
    std::array<uint32_t, kNeighbors> gen_{};
    std::array<bool, kNeighbors> resolved_{};
    std::vector<uint32_t> unresolved_;
    std::vector<Tables::Change6> batch6_;
    std::vector<int> rc6_;
    uint32_t batch_target_ = 1;
    std::vector<uint32_t> after6_;  // freed after the next batch and grace period
    std::vector<uint32_t> after6_groups_;
    std::vector<uint32_t> pending_;  // freed after the next grace period
    std::vector<uint32_t> pending_groups_;
    WriterCounts c_;
    uint64_t failures_ = 0;
    int first_error_ = 0;
    std::array<const rte_fib6 *, 2> fib6_seen_{};  // the active copies, the older first
};

struct RunResult {
    ReaderStats readers;
    WriterCounts writer;
    uint64_t failures = 0;
    int first_error = 0;
    uint64_t mismatches = 0;
    double seconds = 0;
    unsigned reader_lcores = 0;
};

RunResult run_stress(double seconds, bool early) {
    RunResult r;
    size_t qsz = rte_rcu_qsbr_get_memsize(kReaders);
    auto *qsbr = static_cast<rte_rcu_qsbr *>(rte_zmalloc("stress_qsbr", qsz, RTE_CACHE_LINE_SIZE));
    if (qsbr == nullptr || rte_rcu_qsbr_init(qsbr, kReaders) != 0) {
        rte_free(qsbr);
        return r;
    }
    {
        // Few tbl8s: the LPM reclaims through its RCU defer queue and the
        // IPv6 copies are rebuilt (rebuild6) during the run.
        Tables tables(4096, 4096, qsbr, static_cast<int>(rte_socket_id()), 1024, 1 << 15);
        auto sh = std::make_unique<Shared>();
        sh->tables = &tables;
        sh->qsbr = qsbr;
        auto w = std::make_unique<Writer>(tables, *sh, early);
        // Routes in place before the readers start.
        for (uint32_t s = 0; s < kSlots; s++) {
            w->step();
        }
        w->flush6();

        std::array<ReaderArg, kReaders> args;
        std::vector<unsigned> lcores;
        unsigned lc;
        RTE_LCORE_FOREACH_WORKER(lc) {
            if (lcores.size() == kReaders) {
                break;
            }
            args[lcores.size()].shared = sh.get();
            args[lcores.size()].thread_id = static_cast<unsigned>(lcores.size());
            if (rte_eal_remote_launch(reader_main, &args[lcores.size()], lc) == 0) {
                lcores.push_back(lc);
            }
        }
        r.reader_lcores = static_cast<unsigned>(lcores.size());

        auto start = std::chrono::steady_clock::now();
        auto until = start + std::chrono::duration<double>(seconds);
        WriterCounts c0 = w->counts();
        while (std::chrono::steady_clock::now() < until) {
            for (int i = 0; i < 16; i++) {
                w->step();
            }
        }
        w->flush6();
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        sh->running.store(false, std::memory_order_release);
        for (size_t i = 0; i < lcores.size(); i++) {
            rte_eal_wait_lcore(lcores[i]);
            r.readers.add(args[i].stats);
        }
        r.writer = w->counts().since(c0);
        r.mismatches = w->mismatches();
        w->clear();
        r.failures = w->failures();
        r.first_error = w->first_error();
    }
    rte_free(qsbr);

    const ReaderStats &st = r.readers;
    const WriterCounts &c = r.writer;
    auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
    auto rate = [&](uint64_t v) { return static_cast<double>(v) / r.seconds; };
    std::printf(
        "[stress%s] %.1f s, %u readers\n"
        "  writer: %.0f route updates/s (%.0f IPv6 changes/s in %.0f apply6_batch/s, "
        "%llu-%llu changes each, %llu copies rebuilt), %.0f pod next hops/s, %.0f ECMP groups/s, "
        "%.0f neighbor MAC changes/s, %.0f grace periods/s\n"
        "  readers: %.2f M lookups/s (%llu lookups, %llu hits, %llu misses, %llu groups, "
        "%llu kVia / %llu kResolve neighbors)\n"
        "  violations %llu: bad id %llu, freed/torn entry %llu, wrong prefix %llu, bad MAC %llu, "
        "bad group %llu, freed in use %llu, MAC changed in use %llu\n",
        early ? " negative control" : "", r.seconds, r.reader_lcores, rate(c.route_ops),
        rate(c.v6_changes), rate(c.batches6), u(c.batches6 != 0 ? c.batch_min : 0), u(c.batch_max),
        u(c.rebuilds6), rate(c.pods), rate(c.groups), rate(c.mac_flips), rate(c.syncs),
        rate(st.lookups) / 1e6, u(st.lookups), u(st.hits), u(st.misses), u(st.groups),
        u(st.via_used), u(st.unresolved), u(st.violations()), u(st.bad_id), u(st.bad_marker),
        u(st.wrong_prefix), u(st.bad_mac), u(st.bad_group), u(st.freed_in_use), u(st.mac_in_use));
    return r;
}

double stress_seconds() {
    const char *s = std::getenv("FWD_STRESS_SECONDS");
    double v = s != nullptr ? std::strtod(s, nullptr) : 0;
    return v > 0 ? v : 10.0;
}

TEST(TableStress, ReadersNeverSeeFreedNextHops) {
    double seconds = stress_seconds();
    RunResult r = run_stress(seconds, false);
    ASSERT_EQ(r.reader_lcores, kReaders) << "EAL must give two worker lcores";
    const ReaderStats &st = r.readers;
    EXPECT_EQ(st.violations(), 0u)
        << "bad id " << st.bad_id << ", freed/torn " << st.bad_marker << ", wrong prefix "
        << st.wrong_prefix << ", bad MAC " << st.bad_mac << ", bad group " << st.bad_group
        << ", freed in use " << st.freed_in_use << ", MAC changed in use " << st.mac_in_use;
    EXPECT_EQ(r.failures, 0u) << "route changes, next-hop or group allocations failed (first "
                              << r.first_error << ")";
    EXPECT_EQ(r.mismatches, 0u) << "the tables differ from the writer's model after the run";
    EXPECT_GT(st.hits, 0u);
    EXPECT_GT(st.misses, 0u);
    EXPECT_GT(st.groups, 0u);
    EXPECT_GT(st.via_used, 0u);
    EXPECT_GT(st.unresolved, 0u);
    EXPECT_GE(static_cast<double>(st.lookups), 100000.0 * seconds);
    const WriterCounts &c = r.writer;
    EXPECT_GE(static_cast<double>(c.route_ops), 100.0 * seconds);
    EXPECT_GT(c.pods, 0u);
    EXPECT_GT(c.groups, 0u);
    EXPECT_GT(c.mac_flips, 0u);
    EXPECT_GT(c.batches6, 0u);
    EXPECT_GE(c.batch_min, 1u);
    EXPECT_LE(c.batch_max, kMaxBatch6);
}

// Not a test of the tables: proves the checks above can fail. Freeing next
// hops and groups before the grace period, and changing a neighbor's MAC
// without one, must be seen by the readers.
TEST(TableStress, NegativeControlFreeBeforeSynchronizeIsCaught) {
    RunResult r = run_stress(2.0, true);
    ASSERT_EQ(r.reader_lcores, kReaders) << "EAL must give two worker lcores";
    const ReaderStats &st = r.readers;
    EXPECT_GT(st.violations(), 0u)
        << "freeing before synchronize() went unseen: the invariant is vacuous";
    EXPECT_GT(st.bad_id + st.bad_marker + st.wrong_prefix + st.bad_group + st.freed_in_use, 0u)
        << "next hops and groups freed early went unseen";
    EXPECT_GT(st.bad_mac + st.mac_in_use, 0u) << "MACs rewritten in place went unseen";
}

// Three lcores on at most two CPUs: the main lcore (the writer) and the
// second reader share the first CPU, the first reader has the second.
std::string lcores_arg() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE; c++) {
            if (CPU_ISSET(c, &set)) {
                cpus.push_back(c);
            }
        }
    }
    int a = cpus.empty() ? 0 : cpus[0];
    int b = cpus.size() > 1 ? cpus[1] : a;
    return "--lcores=0@" + std::to_string(a) + ",1@" + std::to_string(b) + ",2@" +
           std::to_string(a);
}

}  // namespace
}  // namespace fwd::dp::test

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (!fwd::dp::eal_init_for_test(argv[0], "fwdstress", 512, {fwd::dp::test::lcores_arg()})) {
        return 1;
    }
    int rc = RUN_ALL_TESTS();
    fwd::dp::eal_cleanup_all();
    return rc;
}
