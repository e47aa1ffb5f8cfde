// ct_bench: where a connection-tracking flow should live (conntrack.hpp's
// design comment has the numbers). TSC cycles per operation, per thread, for
//   per-worker  rte_hash without concurrency flags, one table per thread
//               (flows split between the threads, as RSS would split them)
//   shared      rte_hash with RW_CONCURRENCY_LF | MULTI_WRITER_ADD, one table
//   ours        ct::ConnTable, one shared table (lock-free readers, a writer
//               lock for inserts): what the dataplane ships
// at 1 and 2 threads (the main lcore and lcore 1), 10k and 1M flows.
//   lookup: established flows, keys of both directions at random (a precomputed
//           list read in order), one lookup at a time as a stage does
//   insert: new flows into an empty table until it holds them all, both
//           tuples of each (the 2-thread runs insert disjoint halves at once)
// Every flow has two keys (original and reply), as conntrack needs; keys are
// ct::FlowKey (40 bytes), half IPv4, half IPv6. Runs are interleaved across
// variants and the median of kRuns is printed with the spread.
//
//   ninja -C build perf/ct_bench && build/perf/ct_bench [EAL args]
extern "C" {
#include <rte_vect.h>
}

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_main.hpp"
#include "fwd/dp/conntrack.hpp"

namespace fwd::perf {

namespace {

using dp::ct::FlowKey;

constexpr int kRuns = 5;
constexpr uint32_t kLookups = 1 << 19;  // per thread per run

struct Workload {
    std::vector<FlowKey> keys;     // 2 per flow: [2i] original, [2i + 1] reply
    std::vector<FlowKey> lookups;  // random established keys
};

Workload make_workload(uint32_t flows, std::mt19937_64 &rng) {
    Workload w;
    w.keys.reserve(size_t{flows} * 2);
    for (uint32_t i = 0; i < flows; i++) {
        const auto sport = net::Be16::from_host(static_cast<uint16_t>(1024 + i % 60000));
        const auto dport = net::Be16::from_host(i % 3 == 0 ? 443 : 80);
        const uint8_t proto = i % 4 == 0 ? 17 : 6;
        FlowKey k;
        if (i % 2 == 0) {
            const uint32_t src = __builtin_bswap32(0x0a000000u | (i / 60000) << 8 | (i & 0xff));
            const uint32_t dst = __builtin_bswap32(0xcb007100u | (i % 251));
            k = FlowKey::v4(src, dst, proto, sport, dport);
        } else {
            uint8_t s[16] = {0xfd, 0, 0, 0x65}, d[16] = {0x20, 0x01, 0x0d, 0xb8};
            std::memcpy(s + 8, &i, 4);
            d[15] = static_cast<uint8_t>(i % 251);
            k = FlowKey::v6(s, d, proto, sport, dport);
        }
        w.keys.push_back(k);
        w.keys.push_back(k.inverted());
    }
    std::uniform_int_distribution<size_t> pick(0, w.keys.size() - 1);
    w.lookups.resize(kLookups);
    for (FlowKey &k : w.lookups) {
        k = w.keys[pick(rng)];
    }
    return w;
}

// One variant: built empty per run, filled, looked up.
class Variant {
  public:
    virtual ~Variant() = default;
    virtual std::string name() const = 0;
    virtual bool per_worker() const { return false; }
    // Fresh tables for `threads` threads and `flows` flows in all.
    virtual void reset(unsigned threads, uint32_t flows) = 0;
    // Inserts flows [first, first + n) (both keys); returns failures.
    virtual uint32_t insert(unsigned thread, const Workload &w, uint32_t first, uint32_t n) = 0;
    // Looks up n keys from w.lookups; returns the misses.
    virtual uint32_t lookup(unsigned thread, const FlowKey *keys, uint32_t n) = 0;
    // Frees the tables (the next variant gets the memory).
    virtual void release() = 0;
};

unsigned table_gen = 0;  // rte_hash names must be unique

class RteHashVariant : public Variant {
  public:
    explicit RteHashVariant(bool shared) : shared_(shared) {}
    ~RteHashVariant() override { free_all(); }
    std::string name() const override {
        return shared_ ? "shared rte_hash LF" : "per-worker rte_hash";
    }
    bool per_worker() const override { return !shared_; }
    void reset(unsigned threads, uint32_t flows) override {
        free_all();
        const unsigned tables = shared_ ? 1 : threads;
        for (unsigned t = 0; t < tables; t++) {
            const std::string n = "ctb" + std::to_string(table_gen++);
            rte_hash_parameters p{};
            p.name = n.c_str();
            // Both keys of every flow at a 80% load (rte_hash rounds up).
            p.entries = static_cast<uint32_t>(uint64_t{flows} * 2 * 5 / 4 / tables + 64);
            p.key_len = sizeof(FlowKey);
            p.hash_func = rte_hash_crc;
            p.hash_func_init_val = 0x6374;
            p.socket_id = static_cast<int>(rte_socket_id());
            p.extra_flag = shared_ ? (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF |
                                      RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD)
                                   : 0;
            rte_hash *h = rte_hash_create(&p);
            if (h == nullptr) {
                throw std::runtime_error("rte_hash_create: " +
                                         std::string(rte_strerror(rte_errno)));
            }
            h_.push_back(h);
        }
    }
    uint32_t insert(unsigned thread, const Workload &w, uint32_t first, uint32_t n) override {
        rte_hash *h = h_[shared_ ? 0 : thread];
        uint32_t fail = 0;
        for (uint32_t i = first; i < first + n; i++) {
            fail += rte_hash_add_key_data(h, &w.keys[2 * i],
                                          reinterpret_cast<void *>(uintptr_t{2} * i)) != 0;
            fail += rte_hash_add_key_data(h, &w.keys[2 * i + 1],
                                          reinterpret_cast<void *>(uintptr_t{2} * i + 1)) != 0;
        }
        return fail;
    }
    uint32_t lookup(unsigned thread, const FlowKey *keys, uint32_t n) override {
        const rte_hash *h = h_[shared_ ? 0 : thread];
        uint32_t miss = 0;
        uintptr_t sum = 0;
        for (uint32_t i = 0; i < n; i++) {
            void *d;
            if (rte_hash_lookup_data(h, &keys[i], &d) < 0) {
                miss++;
            } else {
                sum += reinterpret_cast<uintptr_t>(d);
            }
        }
        sink_.fetch_add(sum, std::memory_order_relaxed);
        return miss;
    }

    void release() override { free_all(); }

  private:
    void free_all() {
        for (rte_hash *h : h_) {
            rte_hash_free(h);
        }
        h_.clear();
    }
    bool shared_;
    std::vector<rte_hash *> h_;
    std::atomic<uintptr_t> sink_{0};
};

class OursVariant : public Variant {
  public:
    explicit OursVariant(rte_rcu_qsbr *q) : q_(q) {}
    std::string name() const override { return "ours (ConnTable, shared)"; }
    void reset(unsigned, uint32_t flows) override {
        t_.reset();
        dp::ct::Config c;
        c.capacity = flows;
        t_ = std::make_unique<dp::ct::ConnTable>(c, rte_get_tsc_hz(), q_);
        now_ = rte_get_tsc_cycles();
    }
    uint32_t insert(unsigned thread, const Workload &w, uint32_t first, uint32_t n) override {
        uint32_t fail = 0;
        dp::ct::Hit h;
        for (uint32_t i = first; i < first + n; i++) {
            fail +=
                refused(t_->create(syn(w.keys[2 * i]), w.keys[2 * i + 1], now_, {}, h, c_[thread]));
        }
        return fail;
    }
    uint32_t lookup(unsigned, const FlowKey *keys, uint32_t n) override {
        uint32_t miss = 0, sum = 0;
        for (uint32_t i = 0; i < n; i++) {
            dp::ct::Hit h;
            if (!t_->lookup(keys[i], now_, h)) {
                miss++;
            } else {
                sum += h.flow;
            }
        }
        sink_.fetch_add(sum, std::memory_order_relaxed);
        return miss;
    }
    void release() override { t_.reset(); }
    uint64_t index_full() const { return index_full_.load(); }

  protected:
    // A TCP flow's first packet: a SYN.
    static dp::ct::Packet syn(const FlowKey &k) {
        dp::ct::Packet p;
        p.key = k;
        p.tcp_flags = 0x02;
        return p;
    }
    // 1 when create() refused the flow (index_full counted).
    uint32_t refused(dp::ct::Result r) {
        index_full_ += r == dp::ct::Result::kIndexFull;
        return r != dp::ct::Result::kCreated;
    }
    rte_rcu_qsbr *q_;
    std::unique_ptr<dp::ct::ConnTable> t_;
    uint64_t now_ = 0;
    dp::ct::Counters c_[2];
    std::atomic<uint64_t> index_full_{0};
    std::atomic<uint32_t> sink_{0};
};

// ConnTable as the NAT stages use it: bursts of kBurst keys in phases
// (conntrack.hpp, Lookup): lookups prepare() every key, probe_first() every
// key and probe_second() those not in their first bucket, then look each
// up; inserts do what a burst of new flows does, prepare() and probe the
// original, prepare() the reply and prefetch_new(), then
// create() each flow with both lookups.
class OursBurstVariant : public OursVariant {
  public:
    static constexpr uint32_t kBurst = 32;
    using OursVariant::OursVariant;
    std::string name() const override { return "ours, bursts of 32"; }
    // As the stages probe a burst: every first bucket, then the second ones
    // where the key was not in the first.
    void probe_burst(dp::ct::Lookup *l, uint32_t m) const {
        uint32_t second[kBurst], n2 = 0;
        for (uint32_t j = 0; j < m; j++) {
            if (!t_->probe_first(l[j])) {
                second[n2++] = j;
            }
        }
        for (uint32_t j = 0; j < n2; j++) {
            t_->probe_second(l[second[j]]);
        }
    }
    uint32_t insert(unsigned thread, const Workload &w, uint32_t first, uint32_t n) override {
        uint32_t fail = 0;
        dp::ct::Hit h;
        dp::ct::Lookup lo[kBurst], lr[kBurst];
        for (uint32_t b = first; b < first + n; b += kBurst) {
            const uint32_t m = std::min(kBurst, first + n - b);
            for (uint32_t j = 0; j < m; j++) {
                t_->prepare(w.keys[2 * (b + j)], lo[j]);
            }
            probe_burst(lo, m);
            for (uint32_t j = 0; j < m; j++) {
                t_->prepare(w.keys[2 * (b + j) + 1], lr[j]);
                t_->prefetch_new(j);
            }
            for (uint32_t j = 0; j < m; j++) {
                const uint32_t f = 2 * (b + j);
                fail += refused(t_->create(syn(w.keys[f]), lo[j], w.keys[f + 1], lr[j], now_, {}, h,
                                           c_[thread]));
            }
        }
        return fail;
    }
    uint32_t lookup(unsigned, const FlowKey *keys, uint32_t n) override {
        uint32_t miss = 0, sum = 0;
        dp::ct::Lookup l[kBurst];
        for (uint32_t b = 0; b < n; b += kBurst) {
            const uint32_t m = std::min(kBurst, n - b);
            for (uint32_t j = 0; j < m; j++) {
                t_->prepare(keys[b + j], l[j]);
            }
            probe_burst(l, m);
            for (uint32_t j = 0; j < m; j++) {
                dp::ct::Hit h;
                if (!t_->lookup(keys[b + j], l[j], now_, h)) {
                    miss++;
                } else {
                    sum += h.flow;
                }
            }
        }
        sink_.fetch_add(sum, std::memory_order_relaxed);
        return miss;
    }
};

// Runs fn(thread) on `threads` lcores at once (the main one and lcore 1);
// returns each thread's cycles.
struct Job {
    std::function<void(unsigned)> fn;
    std::atomic<unsigned> ready{0};
    uint64_t cycles[2] = {0, 0};
    unsigned threads = 1;
};

int job_main(void *arg) {
    auto *j = static_cast<Job *>(arg);
    const unsigned t = rte_lcore_id() == rte_get_main_lcore() ? 0 : 1;
    j->ready.fetch_add(1);
    while (j->ready.load() < j->threads) {
        rte_pause();
    }
    const uint64_t t0 = rte_rdtsc_precise();
    j->fn(t);
    j->cycles[t] = rte_rdtsc_precise() - t0;
    return 0;
}

std::vector<uint64_t> run_on(unsigned threads, std::function<void(unsigned)> fn) {
    Job j;
    j.fn = std::move(fn);
    j.threads = threads;
    unsigned second = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);
    if (threads == 2) {
        if (second >= RTE_MAX_LCORE || rte_eal_remote_launch(job_main, &j, second) != 0) {
            throw std::runtime_error("a second lcore is needed (-l 0,1)");
        }
    }
    job_main(&j);
    if (threads == 2) {
        rte_eal_wait_lcore(second);
    }
    return {j.cycles, j.cycles + threads};
}

struct Sample {
    std::vector<double> lookup, insert;
    uint64_t failures = 0, misses = 0;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

int bench() {
    const size_t qsz = rte_rcu_qsbr_get_memsize(2);
    auto *q = static_cast<rte_rcu_qsbr *>(rte_zmalloc("ctb_qsbr", qsz, RTE_CACHE_LINE_SIZE));
    rte_rcu_qsbr_init(q, 2);
    std::vector<std::unique_ptr<Variant>> vars;
    vars.push_back(std::make_unique<RteHashVariant>(false));
    vars.push_back(std::make_unique<RteHashVariant>(true));
    auto ours = std::make_unique<OursVariant>(q);
    OursVariant *ours_p = ours.get();
    vars.push_back(std::move(ours));
    auto burst = std::make_unique<OursBurstVariant>(q);
    OursVariant *burst_p = burst.get();
    vars.push_back(std::move(burst));
    // CT_BENCH_ONLY=<substring>: only the variants whose name holds it;
    // CT_BENCH_THREADS=1: one thread only (quick comparisons).
    if (const char *only = std::getenv("CT_BENCH_ONLY"); only != nullptr) {
        std::erase_if(vars,
                      [&](const auto &v) { return v->name().find(only) == std::string::npos; });
        for (OursVariant **o : {&ours_p, &burst_p}) {
            if (std::none_of(vars.begin(), vars.end(),
                             [&](const auto &v) { return v.get() == *o; })) {
                *o = nullptr;
            }
        }
    }
    const bool one_thread = std::getenv("CT_BENCH_THREADS") != nullptr &&
                            std::string(std::getenv("CT_BENCH_THREADS")) == "1";

    std::mt19937_64 rng(15);
    std::printf(
        "ct_bench: TSC %.2f GHz, %d runs, %u lookups per thread per run, %zu bytes per "
        "flow in ConnTable\n\n",
        static_cast<double>(rte_get_tsc_hz()) / 1e9, kRuns, kLookups,
        dp::ct::ConnTable::bytes_per_flow());
    std::printf("| variant | threads | flows | lookup (cycles) | insert (cycles) |\n");
    std::printf("|---|---:|---:|---|---|\n");
    for (uint32_t flows : {10000u, 1000000u}) {
        const Workload w = make_workload(flows, rng);
        for (unsigned threads : {1u, 2u}) {
            if (one_thread && threads == 2) {
                continue;
            }
            std::vector<Sample> s(vars.size());
            for (int run = 0; run < kRuns; run++) {
                for (size_t v = 0; v < vars.size(); v++) {
                    Variant &var = *vars[v];
                    var.reset(threads, flows);
                    // Per-worker: each thread inserts its half into its own
                    // table; shared: disjoint halves into the one table.
                    const uint32_t half = flows / threads;
                    std::atomic<uint64_t> fail{0};
                    auto ins = run_on(threads, [&](unsigned t) {
                        fail +=
                            var.insert(t, w, t * half, t + 1 == threads ? flows - t * half : half);
                    });
                    s[v].failures += fail;
                    for (size_t t = 0; t < ins.size(); t++) {
                        const uint32_t n = t + 1 == threads ? flows - t * half : half;
                        s[v].insert.push_back(static_cast<double>(ins[t]) / n);
                    }
                    // Lookups: per-worker threads look up the keys of their own
                    // table; shared ones any key.
                    std::vector<FlowKey> own[2];
                    if (var.per_worker() && threads == 2) {
                        std::uniform_int_distribution<uint32_t> pick(0, half - 1);
                        for (unsigned t = 0; t < 2; t++) {
                            own[t].resize(kLookups);
                            for (FlowKey &k : own[t]) {
                                const uint32_t f = t * half + pick(rng);
                                k = w.keys[2 * f + (rng() & 1)];
                            }
                        }
                    }
                    std::atomic<uint64_t> miss{0};
                    auto lk = run_on(threads, [&](unsigned t) {
                        const FlowKey *keys = own[t].empty() ? w.lookups.data() : own[t].data();
                        miss += var.lookup(t, keys, kLookups);
                    });
                    s[v].misses += miss;
                    for (uint64_t c : lk) {
                        s[v].lookup.push_back(static_cast<double>(c) / kLookups);
                    }
                    var.release();
                }
            }
            for (size_t v = 0; v < vars.size(); v++) {
                auto range = [](const std::vector<double> &x) {
                    const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
                    char b[64];
                    std::snprintf(b, sizeof(b), "%.0f (%.0f-%.0f)", median(x), *lo, *hi);
                    return std::string(b);
                };
                std::printf("| %s | %u | %u | %s | %s |%s\n", vars[v]->name().c_str(), threads,
                            flows, range(s[v].lookup).c_str(), range(s[v].insert).c_str(),
                            s[v].failures || s[v].misses
                                ? (" failed inserts " + std::to_string(s[v].failures) +
                                   ", misses " + std::to_string(s[v].misses))
                                      .c_str()
                                : "");
                std::fflush(stdout);
            }
        }
    }
    for (OursVariant *o : {ours_p, burst_p}) {
        if (o != nullptr) {
            std::printf("\n%s: inserts refused as index_full: %lu", o->name().c_str(),
                        static_cast<unsigned long>(o->index_full()));
        }
    }
    std::printf("\n");
    vars.clear();
    rte_free(q);
    return 0;
}

}  // namespace

}  // namespace fwd::perf

int main(int argc, char **argv) {
    return fwd::perf::bench_main(
        argc, argv, "ct_bench",
        {"-l", "0,1", "--in-memory", "--no-pci", "--no-telemetry", "--log-level=*:warning"},
        &fwd::perf::bench);
}
