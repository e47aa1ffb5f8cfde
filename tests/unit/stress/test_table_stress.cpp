// Stress test of the publication rules in tables.hpp: two reader lcores look
// routes up the way route4 / route6 do while this thread, the single writer,
// replaces routes and next hops and frees the old next hops after an RCU grace
// period (the controller's order: new next hop, route change, synchronize(),
// nh_free()).
//
// The invariant: every next hop the writer installs carries a marker naming
// the one prefix it serves (magic bytes, prefix index, fields derived from the
// index). nh_free() zeroes an entry and the next nh_alloc() reuses the id it
// freed last, so a reader that reaches a freed entry sees a zero marker and
// one that reaches a recycled entry sees another prefix's marker. Readers
// count what they see; the checks run after the lcores are joined.
//
// The negative control frees next hops before the grace period and must see
// violations: it proves the invariant can fail.
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

#include "fwd/dp/tables.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint32_t kSlots = 64;        // prefix pairs per family
constexpr uint16_t kLookupBurst = 32;  // destinations per family per burst
constexpr uint32_t kReaders = 2;
// Readers go offline and yield this often, as an idle worker does when it
// sleeps: a reader sharing a CPU with the writer then lets the writer run
// without holding up its grace period.
constexpr uint64_t kBurstsPerRest = 256;
constexpr std::array<uint8_t, 4> kMagic = {0xf5, 0x7d, 0x3a, 0xc1};
constexpr uint16_t kV6Bit = 0x8000;
constexpr uint16_t kDefaultIndex = 0x7fff;  // the IPv4 default route

// A prefix index: family bit, slot, and which of the slot's two prefixes
// (wide: /26 or /122; host: /32 or /128).
constexpr uint16_t prefix_index(bool v6, uint32_t slot, bool wide) {
    return static_cast<uint16_t>((v6 ? kV6Bit : 0) | (slot << 1) | (wide ? 1 : 0));
}

NextHop marked_nh(uint16_t index, uint32_t gen) {
    NextHop nh{};
    nh.dst_mac = {kMagic[0],
                  kMagic[1],
                  kMagic[2],
                  kMagic[3],
                  static_cast<uint8_t>(index >> 8),
                  static_cast<uint8_t>(index)};
    nh.src_mac = {0x02,
                  0,
                  static_cast<uint8_t>(gen >> 24),
                  static_cast<uint8_t>(gen >> 16),
                  static_cast<uint8_t>(gen >> 8),
                  static_cast<uint8_t>(gen)};
    nh.port = index;
    nh.mtu = index ^ 0xa5a5;
    nh.vlan = static_cast<uint16_t>(~index);
    nh.kind = NhKind::kVia;
    return nh;
}

// True when nh is a whole entry written by marked_nh(); sets its index.
bool read_marker(const NextHop &nh, uint16_t &index) {
    if (nh.dst_mac[0] != kMagic[0] || nh.dst_mac[1] != kMagic[1] || nh.dst_mac[2] != kMagic[2] ||
        nh.dst_mac[3] != kMagic[3] || nh.kind != NhKind::kVia) {
        return false;
    }
    index = static_cast<uint16_t>(nh.dst_mac[4] << 8 | nh.dst_mac[5]);
    return nh.port == index && nh.mtu == (index ^ 0xa5a5) &&
           nh.vlan == static_cast<uint16_t>(~index);
}

// What a destination may resolve to: kHost is covered by the slot's host
// route and its wide route, kNet only by the wide route, kNone by no route
// (only the IPv4 default).
enum class DstKind : uint8_t { kHost, kNet, kNone };

struct Dst4 {
    uint32_t addr;  // host order
    uint32_t slot;
    DstKind kind;
};

struct Dst6 {
    std::array<uint8_t, 16> addr;
    uint32_t slot;
    DstKind kind;
};

uint32_t addr4(uint32_t net, uint32_t slot, uint32_t host) {
    return net | slot << 8 | host;
}

// fd00::<slot>00:<host> (the slot in byte 13, the host in byte 15); kNone
// destinations live in fd01::/16, which has no route.
std::array<uint8_t, 16> addr6(uint8_t net, uint32_t slot, uint8_t host) {
    std::array<uint8_t, 16> a{};
    a[0] = 0xfd;
    a[1] = net;
    a[13] = static_cast<uint8_t>(slot);
    a[15] = host;
    return a;
}

net::Prefix4 prefix4(uint32_t slot, bool wide) {
    return wide ? net::Prefix4{net::Ip4Addr::from_host(addr4(0x0a000000, slot, 0)), 26}
                : net::Prefix4{net::Ip4Addr::from_host(addr4(0x0a000000, slot, 1)), 32};
}

net::Prefix6 prefix6(uint32_t slot, bool wide) {
    auto a = addr6(0x00, slot, wide ? 0 : 1);
    return net::Prefix6{net::Ip6Addr::from_bytes(a.data()), static_cast<uint8_t>(wide ? 122 : 128)};
}

std::vector<Dst4> destinations4() {
    std::vector<Dst4> d;
    for (uint32_t s = 0; s < kSlots; s++) {
        d.push_back({addr4(0x0a000000, s, 1), s, DstKind::kHost});
        d.push_back({addr4(0x0a000000, s, 2), s, DstKind::kNet});
        d.push_back({addr4(0x0a010000, s, 1), s, DstKind::kNone});
    }
    return d;
}

std::vector<Dst6> destinations6() {
    std::vector<Dst6> d;
    for (uint32_t s = 0; s < kSlots; s++) {
        d.push_back({addr6(0x00, s, 1), s, DstKind::kHost});
        d.push_back({addr6(0x00, s, 2), s, DstKind::kNet});
        d.push_back({addr6(0x01, s, 1), s, DstKind::kNone});
    }
    return d;
}

// Whether a route lookup (not the default) for a destination may return the
// entry of prefix index.
bool route_allowed(bool v6, uint32_t slot, DstKind kind, uint16_t index) {
    if (index == kDefaultIndex || ((index & kV6Bit) != 0) != v6 ||
        static_cast<uint32_t>((index & ~kV6Bit) >> 1) != slot) {
        return false;
    }
    switch (kind) {
        case DstKind::kHost:
            return true;
        case DstKind::kNet:
            return (index & 1) != 0;
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
    uint64_t bad_id = 0;        // out of range or never published
    uint64_t bad_marker = 0;    // zeroed (freed) or torn entry
    uint64_t wrong_prefix = 0;  // a whole entry, but for another prefix
    uint64_t violations() const { return bad_id + bad_marker + wrong_prefix; }
    void add(const ReaderStats &o) {
        lookups += o.lookups;
        hits += o.hits;
        misses += o.misses;
        bad_id += o.bad_id;
        bad_marker += o.bad_marker;
        wrong_prefix += o.wrong_prefix;
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
};

struct ReaderArg {
    Shared *shared = nullptr;
    unsigned thread_id = 0;
    ReaderStats stats;
};

void check(const Shared &sh, ReaderStats &st, uint32_t id, bool from_route, bool v6, uint32_t slot,
           DstKind kind) {
    if (id == kNhInvalid) {
        st.misses++;
        return;
    }
    st.hits++;
    if (id >= kMaxNextHops || sh.published[id].load(std::memory_order_acquire) == 0) {
        st.bad_id++;
        return;
    }
    const NextHop nh = sh.tables->nh(id);
    uint16_t index = 0;
    if (!read_marker(nh, index)) {
        st.bad_marker++;
        return;
    }
    bool ok = from_route ? route_allowed(v6, slot, kind, index) : index == kDefaultIndex;
    if (!ok) {
        st.wrong_prefix++;
    }
}

int reader_main(void *p) {
    auto &arg = *static_cast<ReaderArg *>(p);
    const Shared &sh = *arg.shared;
    const Tables &t = *sh.tables;
    ReaderStats st;
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
            check(sh, st, id, hit, false, d.slot, d.kind);
        }
        // IPv6 as route6: the active copy loaded once per burst.
        for (uint16_t i = 0; i < kLookupBurst; i++) {
            pick[i] = static_cast<uint32_t>(xorshift(rng) % sh.dst6.size());
            std::memcpy(ip6[i], sh.dst6[pick[i]].addr.data(), 16);
        }
        rte_fib6 *fib = t.fib6();
        rte_fib6_lookup_bulk(fib, ip6, hop6, kLookupBurst);
        for (uint16_t i = 0; i < kLookupBurst; i++) {
            const Dst6 &d = sh.dst6[pick[i]];
            check(sh, st, static_cast<uint32_t>(hop6[i]), true, true, d.slot, d.kind);
        }
        st.lookups += 2 * kLookupBurst;
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

// The single writer and its model of what the tables hold.
class Writer {
  public:
    Writer(Tables &t, Shared &sh, bool free_early) : t_(t), sh_(sh), free_early_(free_early) {}

    // One batch: both prefixes of one slot in each family replaced or
    // removed, sometimes the IPv4 default, then the grace period and the frees.
    void step() {
        uint32_t s = next_slot_++ % kSlots;
        for (int wide = 0; wide < 2; wide++) {
            change(false, s, wide != 0);
            change(true, s, wide != 0);
        }
        if (s % 8 == 0) {
            change_default();
        }
        t_.synchronize();
        syncs_++;
        for (uint32_t id : pending_) {
            t_.nh_free(id);
        }
        pending_.clear();
    }

    // Removes every route and frees every next hop.
    void clear() {
        for (uint32_t s = 0; s < kSlots; s++) {
            for (int w = 0; w < 2; w++) {
                if (cur4_[s][w] != kNhInvalid) {
                    count(t_.del4(prefix4(s, w != 0)));
                    retire(cur4_[s][w]);
                    cur4_[s][w] = kNhInvalid;
                }
                if (cur6_[s][w] != kNhInvalid) {
                    count(t_.del6(prefix6(s, w != 0)));
                    retire(cur6_[s][w]);
                    cur6_[s][w] = kNhInvalid;
                }
            }
        }
        if (default_ != kNhInvalid) {
            count(t_.del4({net::Ip4Addr{}, 0}));
            retire(default_);
            default_ = kNhInvalid;
        }
        t_.synchronize();
        for (uint32_t id : pending_) {
            t_.nh_free(id);
        }
        pending_.clear();
    }

    // Looks every destination up from this thread (readers stopped) and
    // counts answers that differ from the model.
    uint64_t mismatches() const {
        uint64_t bad = 0;
        for (const Dst4 &d : sh_.dst4) {
            uint32_t hop = 0;
            uint32_t got = rte_lpm_lookup(t_.lpm4(), d.addr, &hop) == 0 ? hop : t_.default4();
            bad += got != expected(cur4_[d.slot], d.kind, default_) ? 1 : 0;
        }
        for (const Dst6 &d : sh_.dst6) {
            uint8_t ip[1][RTE_FIB6_IPV6_ADDR_SIZE];
            uint64_t hop = 0;
            std::memcpy(ip[0], d.addr.data(), 16);
            rte_fib6_lookup_bulk(t_.fib6(), ip, &hop, 1);
            bad += hop != expected(cur6_[d.slot], d.kind, kNhInvalid) ? 1 : 0;
        }
        return bad;
    }

    uint64_t route_ops() const { return route_ops_; }
    uint64_t syncs() const { return syncs_; }
    uint64_t failures() const { return failures_; }

  private:
    static uint32_t expected(const std::array<uint32_t, 2> &cur, DstKind kind, uint32_t dflt) {
        if (kind == DstKind::kHost && cur[0] != kNhInvalid) {
            return cur[0];
        }
        if (kind != DstKind::kNone && cur[1] != kNhInvalid) {
            return cur[1];
        }
        return dflt;
    }

    uint32_t install(uint16_t index) {
        uint32_t id = t_.nh_alloc(marked_nh(index, gen_++));
        if (id == kNhInvalid) {
            failures_++;
            return id;
        }
        sh_.published[id].store(1, std::memory_order_relaxed);
        // The marker and the published flag before the route that points at them.
        std::atomic_thread_fence(std::memory_order_release);
        return id;
    }

    // The controller's order frees after synchronize(); the negative control
    // frees at once, before any grace period.
    void retire(uint32_t id) {
        if (free_early_) {
            t_.nh_free(id);
        } else {
            pending_.push_back(id);
        }
    }

    void count(int rc) {
        route_ops_++;
        if (rc != 0) {
            failures_++;
        }
    }

    // Three times in four the route is replaced (or added), else removed.
    void change(bool v6, uint32_t s, bool wide) {
        uint32_t &cur = v6 ? cur6_[s][wide] : cur4_[s][wide];
        uint32_t old = cur;
        if (old != kNhInvalid && xorshift(rng_) % 4 == 0) {
            count(v6 ? t_.del6(prefix6(s, wide)) : t_.del4(prefix4(s, wide)));
            cur = kNhInvalid;
        } else {
            uint32_t id = install(prefix_index(v6, s, wide));
            if (id == kNhInvalid) {
                return;
            }
            count(v6 ? t_.add6(prefix6(s, wide), id) : t_.add4(prefix4(s, wide), id));
            cur = id;
        }
        if (old != kNhInvalid) {
            retire(old);
        }
    }

    void change_default() {
        uint32_t old = default_;
        if (old != kNhInvalid && xorshift(rng_) % 2 == 0) {
            count(t_.del4({net::Ip4Addr{}, 0}));
            default_ = kNhInvalid;
        } else {
            uint32_t id = install(kDefaultIndex);
            if (id == kNhInvalid) {
                return;
            }
            count(t_.add4({net::Ip4Addr{}, 0}, id));
            default_ = id;
        }
        if (old != kNhInvalid) {
            retire(old);
        }
    }

    Tables &t_;
    Shared &sh_;
    bool free_early_;
    uint64_t rng_ = 0x2545f4914f6cdd1dull;
    uint32_t gen_ = 1;
    uint32_t next_slot_ = 0;
    std::array<std::array<uint32_t, 2>, kSlots> cur4_{};  // [slot][wide]
    std::array<std::array<uint32_t, 2>, kSlots> cur6_{};
    uint32_t default_ = kNhInvalid;
    std::vector<uint32_t> pending_;
    uint64_t route_ops_ = 0;
    uint64_t syncs_ = 0;
    uint64_t failures_ = 0;
};

struct RunResult {
    ReaderStats readers;
    uint64_t route_ops = 0;
    uint64_t syncs = 0;
    uint64_t failures = 0;
    uint64_t mismatches = 0;
    double seconds = 0;
    unsigned reader_lcores = 0;
};

RunResult run_stress(double seconds, bool free_early) {
    RunResult r;
    size_t qsz = rte_rcu_qsbr_get_memsize(kReaders);
    auto *qsbr = static_cast<rte_rcu_qsbr *>(rte_zmalloc("stress_qsbr", qsz, RTE_CACHE_LINE_SIZE));
    if (qsbr == nullptr || rte_rcu_qsbr_init(qsbr, kReaders) != 0) {
        rte_free(qsbr);
        return r;
    }
    {
        Tables tables(1024, 1024, qsbr, static_cast<int>(rte_socket_id()));
        auto sh = std::make_unique<Shared>();
        sh->tables = &tables;
        sh->qsbr = qsbr;
        Writer w(tables, *sh, free_early);
        // Routes in place before the readers start.
        for (uint32_t s = 0; s < kSlots; s++) {
            w.step();
        }

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
        uint64_t ops0 = w.route_ops();
        uint64_t syncs0 = w.syncs();
        while (std::chrono::steady_clock::now() < until) {
            for (int i = 0; i < 16; i++) {
                w.step();
            }
        }
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        sh->running.store(false, std::memory_order_release);
        for (size_t i = 0; i < lcores.size(); i++) {
            rte_eal_wait_lcore(lcores[i]);
            r.readers.add(args[i].stats);
        }
        r.route_ops = w.route_ops() - ops0;
        r.syncs = w.syncs() - syncs0;
        r.mismatches = w.mismatches();
        w.clear();
        r.failures = w.failures();
    }
    rte_free(qsbr);

    const ReaderStats &st = r.readers;
    std::printf(
        "[stress%s] %.1f s, %u readers: %.0f route updates/s, %.0f grace periods/s, "
        "%.2f M lookups/s (%llu lookups, %llu hits, %llu misses); violations %llu "
        "(bad id %llu, freed/torn entry %llu, wrong prefix %llu)\n",
        free_early ? " negative control" : "", r.seconds, r.reader_lcores,
        static_cast<double>(r.route_ops) / r.seconds, static_cast<double>(r.syncs) / r.seconds,
        static_cast<double>(st.lookups) / r.seconds / 1e6,
        static_cast<unsigned long long>(st.lookups), static_cast<unsigned long long>(st.hits),
        static_cast<unsigned long long>(st.misses),
        static_cast<unsigned long long>(st.violations()),
        static_cast<unsigned long long>(st.bad_id), static_cast<unsigned long long>(st.bad_marker),
        static_cast<unsigned long long>(st.wrong_prefix));
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
    EXPECT_EQ(r.readers.violations(), 0u)
        << "bad id " << r.readers.bad_id << ", freed/torn " << r.readers.bad_marker
        << ", wrong prefix " << r.readers.wrong_prefix;
    EXPECT_EQ(r.failures, 0u) << "route changes or next-hop allocations failed";
    EXPECT_EQ(r.mismatches, 0u) << "the tables differ from the writer's model after the run";
    EXPECT_GT(r.readers.hits, 0u);
    EXPECT_GT(r.readers.misses, 0u);
    EXPECT_GE(static_cast<double>(r.readers.lookups), 100000.0 * seconds);
    EXPECT_GE(static_cast<double>(r.route_ops), 100.0 * seconds);
}

// Not a test of the tables: proves the invariant above can fail. Freeing a
// next hop before the grace period must be seen by the readers.
TEST(TableStress, NegativeControlFreeBeforeSynchronizeIsCaught) {
    RunResult r = run_stress(2.0, true);
    ASSERT_EQ(r.reader_lcores, kReaders) << "EAL must give two worker lcores";
    EXPECT_GT(r.readers.violations(), 0u)
        << "freeing before synchronize() went unseen: the invariant is vacuous";
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
    std::string prefix = "--file-prefix=fwdstress" + std::to_string(getpid());
    // DPDK 22.11 refuses --in-memory with --no-huge; --no-shconf leaves no files.
    std::vector<std::string> args = {
        argv[0],
        "--no-huge",
        "-m",
        "512",
        "--no-shconf",
        "--no-pci",
        "--no-telemetry",
        "--log-level=*:error",
        prefix,
        fwd::dp::test::lcores_arg(),
    };
    std::vector<char *> eal_argv;
    for (auto &a : args) {
        eal_argv.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "rte_eal_init failed\n");
        return 1;
    }
    int rc = RUN_ALL_TESTS();
    rte_eal_cleanup();
    return rc;
}
