// lookup_bench: TSC cycles per route lookup on Calico-shaped tables.
//
// Measures the lookups the dataplane uses (rte_lpm_lookup_bulk for IPv4,
// Tables::lookup6_bulk for IPv6: Front6's exact /128 and /122 routes in front
// of the rte_fib6 trie; bursts of 32) against the
// other DPDK structures that could replace them, on the same routes and the
// same destinations. Tables are configured as in dpdk-fwd/src/tables.cpp.
//
// Every variant is first checked to return the expected next hop for all
// destinations, so a faster number can not come from a wrong answer.
//
// Runs are interleaved (run 1 of every variant, then run 2, ...) so slow drift
// of the machine (other jobs, frequency changes) spreads over all variants
// instead of landing on one.

// DPDK 22.11's generic/rte_vect.h declares rte_vect_get_max_simd_bitwidth()
// outside any extern "C" block, so C++ callers would look for a mangled name.
// Included first so every later inclusion sees the C declaration.
extern "C" {
#include <rte_vect.h>
}

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_fib.h>
#include <rte_fib6.h>
#include <rte_lcore.h>
#include <rte_lpm.h>
#include <rte_lpm6.h>
#include <rte_version.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench_main.hpp"
#include "fwd/dp/tables.hpp"

namespace fwd::perf {

namespace {

constexpr uint32_t kBurst = 32;       // the dataplane's burst size
constexpr uint32_t kDests = 1 << 16;  // precomputed destinations, cycled through
constexpr uint32_t kLookupsPerRun = 1 << 22;
constexpr int kRuns = 7;
constexpr uint32_t kBlocks = 1024;    // /26 (IPv4) and /122 (IPv6) blocks
constexpr uint32_t kLocalBlocks = 2;  // this node's blocks: 110 pods need two of 64
constexpr uint32_t kPods = 110;       // kubelet's default max pods per node
constexpr uint32_t kBlockSize = 64;   // addresses in a /26 or a /122
constexpr uint32_t kBlocksPerNode = 2;

// Next-hop ids, all below the dataplane's kMaxNextHops (1 << 16) and below the
// smallest next-hop width of the structures compared (21 bits in rte_lpm6).
constexpr uint32_t kNhMiss = 0;  // the dataplane's kNhInvalid
constexpr uint32_t kNhDefault = 1;
constexpr uint32_t kNhBlackhole = 2;  // Calico blackholes its own blocks
constexpr uint32_t kNhRemoteBase = 16;
constexpr uint32_t kNhPodBase = 4096;

// Same sizing as Tables (dpdk-fwd/src/tables.cpp).
constexpr uint32_t kLpmTbl8s = 1 << 14;
constexpr uint32_t kFib6Tbl8s = 1 << 15;
constexpr uint32_t kMaxRoutes = 1 << 16;
// rte_lpm6 needs about as many tbl8 groups as the fib6 trie for these routes;
// twice the fib6 sizing so running out of groups can not be the difference.
constexpr uint32_t kLpm6Tbl8s = 1 << 16;

using Addr6 = std::array<uint8_t, 16>;

struct Route4 {
    uint32_t addr;  // host order
    uint8_t len;
    uint32_t nh;
};

struct Route6 {
    Addr6 addr;
    uint8_t len;
    uint32_t nh;
};

struct Workload4 {
    std::vector<Route4> routes;
    std::vector<uint32_t> dst;  // host order, what rte_lpm and rte_fib take
    std::vector<uint32_t> want;
};

struct Workload6 {
    std::vector<Route6> routes;
    std::unique_ptr<uint8_t[][16]> dst;  // the layout rte_fib6 and rte_lpm6 take
    std::vector<uint32_t> want;
};

Addr6 make_addr6(uint64_t hi, uint64_t lo) {
    Addr6 a;
    for (int i = 0; i < 8; i++) {
        a[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
        a[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
    }
    return a;
}

// Pool 192.168.0.0/16 cut in /26 blocks holds exactly 1024 blocks: the pool of
// a cluster that has used all of them. Two blocks belong to this node
// (blackhole /26 plus a /32 per pod, as Calico programs them); the others are
// reached through the node that owns them.
Workload4 make_workload4(std::mt19937_64 &rng) {
    constexpr uint32_t kPool = 0xc0a80000;  // 192.168.0.0
    Workload4 w;
    std::vector<uint32_t> blocks(kBlocks);
    for (uint32_t b = 0; b < kBlocks; b++) {
        blocks[b] = b;
    }
    std::shuffle(blocks.begin(), blocks.end(), rng);
    std::vector<uint32_t> local(blocks.begin(), blocks.begin() + kLocalBlocks);
    std::vector<uint32_t> remote(blocks.begin() + kLocalBlocks, blocks.end());

    w.routes.push_back({0, 0, kNhDefault});
    for (uint32_t b : local) {
        w.routes.push_back({kPool + b * kBlockSize, 26, kNhBlackhole});
    }
    for (uint32_t b : remote) {
        w.routes.push_back({kPool + b * kBlockSize, 26, kNhRemoteBase + b / kBlocksPerNode});
    }
    std::vector<uint32_t> slots(kLocalBlocks * kBlockSize);
    for (uint32_t i = 0; i < slots.size(); i++) {
        slots[i] = kPool + local[i / kBlockSize] * kBlockSize + i % kBlockSize;
    }
    std::shuffle(slots.begin(), slots.end(), rng);
    std::vector<uint32_t> pods(slots.begin(), slots.begin() + kPods);
    for (uint32_t p = 0; p < kPods; p++) {
        w.routes.push_back({pods[p], 32, kNhPodBase + p});
    }

    // 45% local pods, 45% remote blocks, 10% outside the pool (default route).
    w.dst.resize(kDests);
    w.want.resize(kDests);
    for (uint32_t i = 0; i < kDests; i++) {
        uint64_t r = rng() % 100;
        if (r < 45) {
            uint32_t p = rng() % kPods;
            w.dst[i] = pods[p];
            w.want[i] = kNhPodBase + p;
        } else if (r < 90) {
            uint32_t b = remote[rng() % remote.size()];
            w.dst[i] = kPool + b * kBlockSize + static_cast<uint32_t>(rng() % kBlockSize);
            w.want[i] = kNhRemoteBase + b / kBlocksPerNode;
        } else {
            uint32_t a;
            do {
                a = static_cast<uint32_t>(rng());
            } while ((a >> 16) == (kPool >> 16));
            w.dst[i] = a;
            w.want[i] = kNhDefault;
        }
    }
    return w;
}

// Pool fd00:10:244::/48 in /122 blocks: 2^74 possible blocks, 1024 in use at
// random places, so lookups walk the trie to full depth with little sharing
// below /48. Local blocks and pods as for IPv4.
Workload6 make_workload6(std::mt19937_64 &rng) {
    constexpr uint64_t kPoolHi = 0xfd00'0010'0244'0000;
    Workload6 w;
    // A block index is 74 bits: 16 in the high word, 58 in the low word above
    // the 6 host bits.
    std::set<std::pair<uint64_t, uint64_t>> seen;
    std::vector<std::pair<uint64_t, uint64_t>> blocks;  // (hi, lo) of the block start
    while (blocks.size() < kBlocks) {
        uint64_t hi = kPoolHi | (rng() & 0xffff);
        uint64_t lo = rng() & ~uint64_t{kBlockSize - 1};
        if (seen.insert({hi, lo}).second) {
            blocks.push_back({hi, lo});
        }
    }
    w.routes.push_back({Addr6{}, 0, kNhDefault});
    for (uint32_t b = 0; b < kBlocks; b++) {
        uint32_t nh = b < kLocalBlocks ? kNhBlackhole : kNhRemoteBase + b / kBlocksPerNode;
        w.routes.push_back({make_addr6(blocks[b].first, blocks[b].second), 122, nh});
    }
    std::vector<std::pair<uint64_t, uint64_t>> slots;
    for (uint32_t b = 0; b < kLocalBlocks; b++) {
        for (uint32_t h = 0; h < kBlockSize; h++) {
            slots.push_back({blocks[b].first, blocks[b].second | h});
        }
    }
    std::shuffle(slots.begin(), slots.end(), rng);
    for (uint32_t p = 0; p < kPods; p++) {
        w.routes.push_back({make_addr6(slots[p].first, slots[p].second), 128, kNhPodBase + p});
    }

    w.dst = std::make_unique<uint8_t[][16]>(kDests);
    w.want.resize(kDests);
    for (uint32_t i = 0; i < kDests; i++) {
        uint64_t r = rng() % 100;
        Addr6 a;
        if (r < 45) {
            uint32_t p = rng() % kPods;
            a = make_addr6(slots[p].first, slots[p].second);
            w.want[i] = kNhPodBase + p;
        } else if (r < 90) {
            uint32_t b = kLocalBlocks + rng() % (kBlocks - kLocalBlocks);
            a = make_addr6(blocks[b].first, blocks[b].second | (rng() % kBlockSize));
            w.want[i] = kNhRemoteBase + b / kBlocksPerNode;
        } else {
            // Global unicast 2000::/3: never inside fd00::/8.
            a = make_addr6((rng() >> 3) | 0x2000'0000'0000'0000, rng());
            w.want[i] = kNhDefault;
        }
        std::memcpy(w.dst[i], a.data(), 16);
    }
    return w;
}

std::string dpdk_error(const char *what) {
    return std::string(what) + ": " + rte_strerror(rte_errno);
}

void check_rc(int rc, const char *what) {
    if (rc != 0) {
        throw std::runtime_error(std::string(what) + ": " + std::strerror(-rc));
    }
}

// rte_lpm and rte_lpm6 refuse depth 0. The default route then goes in as the
// two halves of the address space, which matches the same addresses.
bool add_default_as_halves(int rc_depth0, const char *what) {
    if (rc_depth0 == 0) {
        return false;
    }
    if (rc_depth0 != -EINVAL) {
        check_rc(rc_depth0, what);
    }
    std::printf("note: %s with depth 0 returned -EINVAL; default route installed as two /1\n",
                what);
    return true;
}

rte_lpm *make_lpm(const Workload4 &w) {
    rte_lpm_config c{};
    c.max_rules = kMaxRoutes;
    c.number_tbl8s = kLpmTbl8s;
    rte_lpm *lpm = rte_lpm_create("bench_lpm", SOCKET_ID_ANY, &c);
    if (lpm == nullptr) {
        throw std::runtime_error(dpdk_error("rte_lpm_create"));
    }
    for (const auto &r : w.routes) {
        int rc = rte_lpm_add(lpm, r.addr, r.len, r.nh);
        if (r.len == 0 && add_default_as_halves(rc, "rte_lpm_add")) {
            check_rc(rte_lpm_add(lpm, 0x00000000, 1, r.nh), "rte_lpm_add 0.0.0.0/1");
            check_rc(rte_lpm_add(lpm, 0x80000000, 1, r.nh), "rte_lpm_add 128.0.0.0/1");
        } else {
            check_rc(rc, "rte_lpm_add");
        }
    }
    return lpm;
}

rte_fib *make_fib(const Workload4 &w, const char *name) {
    rte_fib_conf c{};
    c.type = RTE_FIB_DIR24_8;
    c.default_nh = kNhMiss;
    c.max_routes = kMaxRoutes;
    c.dir24_8.nh_sz = RTE_FIB_DIR24_8_4B;
    c.dir24_8.num_tbl8 = kLpmTbl8s;
    rte_fib *fib = rte_fib_create(name, SOCKET_ID_ANY, &c);
    if (fib == nullptr) {
        throw std::runtime_error(dpdk_error("rte_fib_create"));
    }
    for (const auto &r : w.routes) {
        check_rc(rte_fib_add(fib, r.addr, r.len, r.nh), "rte_fib_add");
    }
    return fib;
}

rte_fib6 *make_fib6(const Workload6 &w, const char *name) {
    rte_fib6_conf c{};
    c.type = RTE_FIB6_TRIE;
    c.default_nh = kNhMiss;
    c.max_routes = kMaxRoutes;
    c.trie.nh_sz = RTE_FIB6_TRIE_4B;
    c.trie.num_tbl8 = kFib6Tbl8s;
    rte_fib6 *fib = rte_fib6_create(name, SOCKET_ID_ANY, &c);
    if (fib == nullptr) {
        throw std::runtime_error(dpdk_error("rte_fib6_create"));
    }
    for (const auto &r : w.routes) {
        check_rc(rte_fib6_add(fib, r.addr.data(), r.len, r.nh), "rte_fib6_add");
    }
    return fib;
}

rte_lpm6 *make_lpm6(const Workload6 &w) {
    rte_lpm6_config c{};
    c.max_rules = kMaxRoutes;
    c.number_tbl8s = kLpm6Tbl8s;
    rte_lpm6 *lpm = rte_lpm6_create("bench_lpm6", SOCKET_ID_ANY, &c);
    if (lpm == nullptr) {
        throw std::runtime_error(dpdk_error("rte_lpm6_create"));
    }
    for (const auto &r : w.routes) {
        int rc = rte_lpm6_add(lpm, r.addr.data(), r.len, r.nh);
        if (r.len == 0 && add_default_as_halves(rc, "rte_lpm6_add")) {
            Addr6 half = make_addr6(0x8000'0000'0000'0000, 0);
            check_rc(rte_lpm6_add(lpm, Addr6{}.data(), 1, r.nh), "rte_lpm6_add ::/1");
            check_rc(rte_lpm6_add(lpm, half.data(), 1, r.nh), "rte_lpm6_add 8000::/1");
        } else {
            check_rc(rc, "rte_lpm6_add");
        }
    }
    return lpm;
}

// Keeps the compiler from dropping lookups whose results are never read,
// without adding work to the timed loop.
inline void clobber(const void *p) {
    asm volatile("" : : "r"(p) : "memory");
}

struct Variant {
    std::string family;
    std::string name;
    bool ours;                        // the lookup the dataplane uses
    std::function<uint64_t()> run;    // cycles for kLookupsPerRun lookups
    std::function<uint32_t()> check;  // wrong answers over all destinations
    std::vector<double> cycles;       // per lookup, one per run
};

// lookup(off, hop) resolves dst[off .. off + kBurst) into hop; norm turns the
// structure's raw result into a next-hop id (kNhMiss on a miss).
template <class Raw, class Lookup, class Norm>
Variant make_variant(std::string family, std::string name, bool ours,
                     const std::vector<uint32_t> &want, Lookup lookup, Norm norm) {
    Variant v{std::move(family), std::move(name), ours, {}, {}, {}};
    v.run = [lookup]() {
        alignas(64) Raw hop[kBurst];
        uint64_t t0 = rte_rdtsc_precise();
        uint32_t off = 0;
        for (uint32_t done = 0; done < kLookupsPerRun; done += kBurst) {
            lookup(off, hop);
            clobber(hop);
            off = (off + kBurst) & (kDests - 1);
        }
        return rte_rdtsc_precise() - t0;
    };
    v.check = [lookup, norm, &want]() {
        alignas(64) Raw hop[kBurst];
        uint32_t wrong = 0;
        for (uint32_t off = 0; off < kDests; off += kBurst) {
            lookup(off, hop);
            for (uint32_t i = 0; i < kBurst; i++) {
                wrong += norm(hop[i]) != want[off + i];
            }
        }
        return wrong;
    };
    return v;
}

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(colon + 2);
        }
    }
    return "unknown";
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int bench() {
    std::mt19937_64 rng(20221122);  // fixed: the same tables and destinations every run
    Workload4 w4 = make_workload4(rng);
    Workload6 w6 = make_workload6(rng);

    rte_lpm *lpm = make_lpm(w4);
    rte_fib *fib = make_fib(w4, "bench_fib");
    rte_fib *fib_scalar = make_fib(w4, "bench_fib_s");
    check_rc(rte_fib_select_lookup(fib_scalar, RTE_FIB_LOOKUP_DIR24_8_SCALAR_INLINE),
             "rte_fib_select_lookup scalar");
    // Created exactly as Tables does: the lookup function is picked at create
    // time from the max SIMD bitwidth, which the EAL flag forces to 512.
    rte_fib6 *fib6 = make_fib6(w6, "bench_fib6");
    rte_fib6 *fib6_scalar = make_fib6(w6, "bench_fib6_s");
    check_rc(rte_fib6_select_lookup(fib6_scalar, RTE_FIB6_LOOKUP_TRIE_SCALAR),
             "rte_fib6_select_lookup scalar");
    // The default selection takes the AVX-512 lookup when, and only when, it
    // can be selected explicitly; this probe tells which one fib6 got.
    rte_fib6 *fib6_avx = make_fib6(w6, "bench_fib6_v");
    bool fib6_has_avx = rte_fib6_select_lookup(fib6_avx, RTE_FIB6_LOOKUP_TRIE_VECTOR_AVX512) == 0;
    rte_fib *fib_probe = make_fib(w4, "bench_fib_p");
    bool fib_has_avx = rte_fib_select_lookup(fib_probe, RTE_FIB_LOOKUP_DIR24_8_VECTOR_AVX512) == 0;
    rte_fib_free(fib_probe);
    rte_lpm6 *lpm6 = make_lpm6(w6);
    // The dataplane's own IPv6 lookup: Tables as the daemon creates it (no
    // RCU: nothing changes while the bench runs), the routes in one batch.
    dp::Tables tables(1024, kMaxRoutes, nullptr, SOCKET_ID_ANY, 1024, kFib6Tbl8s);
    {
        std::vector<dp::Tables::Change6> batch;
        for (const Route6 &r : w6.routes) {
            batch.push_back({{net::Ip6Addr::from_bytes(r.addr.data()), r.len}, r.nh});
        }
        std::vector<int> rc;
        tables.apply6_batch(batch, rc);
        for (int r : rc) {
            check_rc(r, "Tables::apply6_batch");
        }
    }

    const uint32_t *d4 = w4.dst.data();
    uint8_t(*d6)[16] = w6.dst.get();
    auto lpm_norm = [](uint32_t h) {
        return (h & RTE_LPM_LOOKUP_SUCCESS) ? (h & 0x00ffffff) : kNhMiss;
    };
    auto nh64_norm = [](uint64_t h) { return static_cast<uint32_t>(h); };
    auto lpm6_norm = [](int32_t h) { return h < 0 ? kNhMiss : static_cast<uint32_t>(h); };
    auto id_norm = [](uint32_t h) { return h; };

    std::vector<Variant> vs;
    vs.push_back(make_variant<uint32_t>(
        "IPv4", "rte_lpm_lookup_bulk", true, w4.want,
        [lpm, d4](uint32_t off, uint32_t *hop) { rte_lpm_lookup_bulk(lpm, d4 + off, hop, kBurst); },
        lpm_norm));
    vs.push_back(make_variant<uint32_t>(
        "IPv4", "rte_lpm_lookupx4 loop", false, w4.want,
        [lpm, d4](uint32_t off, uint32_t *hop) {
            for (uint32_t i = 0; i < kBurst; i += 4) {
                xmm_t ip = _mm_loadu_si128(reinterpret_cast<const __m128i *>(d4 + off + i));
                rte_lpm_lookupx4(lpm, ip, hop + i, kNhMiss);
            }
        },
        id_norm));
    std::string fib_name =
        std::string("rte_fib DIR24_8 bulk, default (") + (fib_has_avx ? "AVX-512" : "scalar") + ")";
    vs.push_back(make_variant<uint64_t>(
        "IPv4", fib_name, false, w4.want,
        [fib, d4](uint32_t off, uint64_t *hop) {
            rte_fib_lookup_bulk(fib, const_cast<uint32_t *>(d4 + off), hop, kBurst);
        },
        nh64_norm));
    vs.push_back(make_variant<uint64_t>(
        "IPv4", "rte_fib DIR24_8 bulk, scalar", false, w4.want,
        [fib_scalar, d4](uint32_t off, uint64_t *hop) {
            rte_fib_lookup_bulk(fib_scalar, const_cast<uint32_t *>(d4 + off), hop, kBurst);
        },
        nh64_norm));
    std::string fib6_name =
        std::string("rte_fib6 trie bulk, default (") + (fib6_has_avx ? "AVX-512" : "scalar") + ")";
    vs.push_back(make_variant<uint64_t>(
        "IPv6", "Tables::lookup6_bulk: Front6 (/128, /122), then the trie", true, w6.want,
        [&tables, d6](uint32_t off, uint64_t *hop) { tables.lookup6_bulk(d6 + off, hop, kBurst); },
        nh64_norm));
    vs.push_back(make_variant<uint64_t>(
        "IPv6", fib6_name, false, w6.want,
        [fib6, d6](uint32_t off, uint64_t *hop) {
            rte_fib6_lookup_bulk(fib6, d6 + off, hop, kBurst);
        },
        nh64_norm));
    if (fib6_has_avx) {
        vs.push_back(make_variant<uint64_t>(
            "IPv6", "rte_fib6 trie bulk, AVX-512 selected", false, w6.want,
            [fib6_avx, d6](uint32_t off, uint64_t *hop) {
                rte_fib6_lookup_bulk(fib6_avx, d6 + off, hop, kBurst);
            },
            nh64_norm));
    }
    vs.push_back(make_variant<uint64_t>(
        "IPv6", "rte_fib6 trie bulk, scalar selected", false, w6.want,
        [fib6_scalar, d6](uint32_t off, uint64_t *hop) {
            rte_fib6_lookup_bulk(fib6_scalar, d6 + off, hop, kBurst);
        },
        nh64_norm));
    vs.push_back(make_variant<int32_t>(
        "IPv6", "rte_lpm6_lookup_bulk_func", false, w6.want,
        [lpm6, d6](uint32_t off, int32_t *hop) {
            rte_lpm6_lookup_bulk_func(lpm6, d6 + off, hop, kBurst);
        },
        lpm6_norm));

    bool ok = true;
    for (auto &v : vs) {
        if (uint32_t wrong = v.check(); wrong != 0) {
            std::fprintf(stderr, "%s %s: %u of %u next hops wrong\n", v.family.c_str(),
                         v.name.c_str(), wrong, kDests);
            ok = false;
        }
    }
    if (ok) {
        for (auto &v : vs) {
            v.run();  // warm caches and TLBs before the first timed run
        }
        for (int r = 0; r < kRuns; r++) {
            for (auto &v : vs) {
                v.cycles.push_back(static_cast<double>(v.run()) / kLookupsPerRun);
            }
        }

        std::printf("\nCPU: %s; TSC %.3f GHz; %s; max SIMD bitwidth %u; lcore %u\n",
                    cpu_model().c_str(), static_cast<double>(rte_get_tsc_hz()) / 1e9, rte_version(),
                    rte_vect_get_max_simd_bitwidth(), rte_lcore_id());
        std::printf(
            "IPv4: %zu routes (1 default, %u /26, %u /32); IPv6: %zu routes (1 default, "
            "%u /122, %u /128); %u destinations, 90%% in blocks or pods, 10%% default\n",
            w4.routes.size(), kBlocks, kPods, w6.routes.size(), kBlocks, kPods, kDests);
        std::printf("%d runs of %u lookups in bursts of %u; TSC cycles per lookup\n\n", kRuns,
                    kLookupsPerRun, kBurst);
        std::printf("| family | variant | median | min | max | ratio to ours |\n");
        std::printf("|---|---|---:|---:|---:|---:|\n");
        for (const auto &v : vs) {
            double ours = 0;
            for (const auto &o : vs) {
                if (o.ours && o.family == v.family) {
                    ours = median(o.cycles);
                }
            }
            auto [lo, hi] = std::minmax_element(v.cycles.begin(), v.cycles.end());
            std::printf("| %s | %s%s | %.2f | %.2f | %.2f | %.2f |\n", v.family.c_str(),
                        v.name.c_str(), v.ours ? " **(ours)**" : "", median(v.cycles), *lo, *hi,
                        median(v.cycles) / ours);
        }
    }

    rte_lpm6_free(lpm6);
    rte_fib6_free(fib6_avx);
    rte_fib6_free(fib6_scalar);
    rte_fib6_free(fib6);
    rte_fib_free(fib_scalar);
    rte_fib_free(fib);
    rte_lpm_free(lpm);
    return ok ? 0 : 1;
}

}  // namespace

}  // namespace fwd::perf

int main(int argc, char **argv) {
    // Fixed EAL arguments; anything given on the command line is appended.
    return fwd::perf::bench_main(argc, argv, "lookup_bench",
                                 {"-l", "1", "--in-memory", "--no-pci", "--no-telemetry",
                                  "--log-level=*:warning", "--force-max-simd-bitwidth=512"},
                                 &fwd::perf::bench);
}
