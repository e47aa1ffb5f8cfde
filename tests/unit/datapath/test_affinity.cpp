// sessionAffinity ClientIP (affinity.hpp): lookups that miss and hit, the
// refresh of a hit, expiry on an injected clock, replace and forget, keys of
// both families and of several frontends kept apart, the full table, ageing
// in slices, and two threads remembering, looking up, forgetting and ageing
// the same keys at once (no torn entry, one entry a key, the count right).
// IPv4 and IPv6 alike (TEST_P over the family).
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "fwd/dp/affinity.hpp"

namespace fwd::dp::test {
namespace {

using net::Be16;
using svc::AffinityCounters;
using svc::AffinityKey;
using svc::AffinityResult;
using svc::AffinityTable;
using svc::AffinityTarget;

constexpr uint64_t kHz = 1'000'000'000;  // the injected TSC runs at 1 GHz
constexpr uint64_t kT0 = 5000 * kHz;
constexpr uint32_t kDefaultTimeout = 10800;  // Kubernetes' default timeoutSeconds

uint64_t at(double secs) {
    return kT0 + static_cast<uint64_t>(secs * kHz);
}

// Addresses numbered within a family: a.b.n.n (IPv4), fd00:a:b::n (IPv6).
std::array<uint8_t, 16> addr(bool v6, uint8_t a, uint8_t b, uint16_t n) {
    std::array<uint8_t, 16> x{};
    const auto hi = static_cast<uint8_t>(n >> 8), lo = static_cast<uint8_t>(n);
    if (v6) {
        x = {0xfd, 0x00, 0, a, 0, b, 0, 0, 0, 0, 0, 0, 0, 0, hi, lo};
    } else {
        x = {a, b, hi, lo};
    }
    return x;
}

// Client n (10.65.0.0/16) on frontend f (10.96.0.10 + f), port and protocol.
AffinityKey key(bool v6, uint16_t client, uint8_t frontend = 0, uint16_t port = 80,
                uint8_t proto = IPPROTO_TCP) {
    const auto c = addr(v6, 10, 65, client);
    const auto f = addr(v6, 10, 96, static_cast<uint16_t>(10 + frontend));
    if (v6) {
        return AffinityKey::v6(c.data(), f.data(), proto, Be16::from_host(port));
    }
    uint32_t c4, f4;
    std::memcpy(&c4, c.data(), 4);
    std::memcpy(&f4, f.data(), 4);
    return AffinityKey::v4(c4, f4, proto, Be16::from_host(port));
}

// Backend n (10.66.0.0/16), port 8000 + n: its number in every word.
AffinityTarget backend(bool v6, uint16_t n) {
    AffinityTarget t;
    t.addr = addr(v6, 10, 66, n);
    t.port = Be16::from_host(static_cast<uint16_t>(8000 + n));
    return t;
}

class Affinity : public ::testing::TestWithParam<bool> {
  protected:
    void SetUp() override {
        v6_ = GetParam();
        make(1024);
    }
    void make(uint32_t capacity) { t_ = std::make_unique<AffinityTable>(capacity, kHz); }
    AffinityKey k(uint16_t client, uint8_t frontend = 0) const {
        return key(v6_, client, frontend);
    }
    AffinityTarget b(uint16_t n) const { return backend(v6_, n); }
    bool remember(const AffinityKey &key, const AffinityTarget &t, double secs,
                  uint32_t timeout = kDefaultTimeout) {
        return t_->remember(key, t, at(secs), timeout, c_);
    }
    // The backend found at secs (a refresh), or nothing.
    std::optional<AffinityTarget> lookup(const AffinityKey &key, double secs,
                                         uint32_t timeout = kDefaultTimeout) {
        AffinityTarget out;
        if (!t_->lookup(key, at(secs), timeout, out, c_)) {
            return std::nullopt;
        }
        return out;
    }
    uint64_t counted(AffinityResult r) const { return c_.get(r); }

    bool v6_ = false;
    std::unique_ptr<AffinityTable> t_;
    AffinityCounters c_;
};

INSTANTIATE_TEST_SUITE_P(Family, Affinity, ::testing::Values(false, true),
                         [](const auto &i) { return i.param ? "ip6" : "ip4"; });

TEST_P(Affinity, LookupMissesThenHitsWhatWasRemembered) {
    EXPECT_EQ(lookup(k(1), 0), std::nullopt);
    EXPECT_EQ(counted(AffinityResult::kMiss), 1u);
    EXPECT_TRUE(remember(k(1), b(1), 0));
    EXPECT_EQ(counted(AffinityResult::kStored), 1u);
    EXPECT_EQ(t_->count(), 1u);
    EXPECT_EQ(lookup(k(1), 1), b(1));
    EXPECT_EQ(counted(AffinityResult::kHit), 1u);
    EXPECT_EQ(lookup(k(2), 1), std::nullopt);  // another client
    EXPECT_EQ(counted(AffinityResult::kMiss), 2u);
}

TEST_P(Affinity, ExpiresAfterTheTimeoutWithoutUse) {
    ASSERT_TRUE(remember(k(1), b(1), 0, 60));
    ASSERT_TRUE(remember(k(2), b(2), 0, 60));
    EXPECT_EQ(lookup(k(1), 59.999, 60), b(1));
    EXPECT_EQ(lookup(k(2), 60, 60), std::nullopt);  // idle exactly the timeout
    EXPECT_EQ(counted(AffinityResult::kExpired), 1u);
    EXPECT_EQ(t_->count(), 2u);  // held until aged or replaced
    EXPECT_TRUE(remember(k(2), b(3), 61, 60));
    EXPECT_EQ(counted(AffinityResult::kReplaced), 1u);
    EXPECT_EQ(t_->count(), 2u);
    EXPECT_EQ(lookup(k(2), 62, 60), b(3));
    // The default timeout: three hours.
    ASSERT_TRUE(remember(k(3), b(3), 0));
    ASSERT_TRUE(remember(k(4), b(4), 0));
    EXPECT_EQ(lookup(k(3), kDefaultTimeout - 0.001), b(3));
    EXPECT_EQ(lookup(k(4), kDefaultTimeout), std::nullopt);
}

TEST_P(Affinity, EachHitRefreshesTheLastUse) {
    ASSERT_TRUE(remember(k(1), b(1), 0, 10));
    EXPECT_EQ(lookup(k(1), 9, 10), b(1));   // lives until 19 now
    EXPECT_EQ(lookup(k(1), 18, 10), b(1));  // until 28
    EXPECT_EQ(lookup(k(1), 27.9, 10), b(1));
    EXPECT_EQ(lookup(k(1), 38.5, 10), std::nullopt);  // idle 10.6 s
    EXPECT_EQ(counted(AffinityResult::kHit), 3u);
    EXPECT_EQ(counted(AffinityResult::kExpired), 1u);
    // A lookup that expired refreshed nothing: remember starts it over.
    EXPECT_EQ(lookup(k(1), 39, 10), std::nullopt);
    ASSERT_TRUE(remember(k(1), b(1), 39, 10));
    EXPECT_EQ(lookup(k(1), 48.9, 10), b(1));
}

TEST_P(Affinity, ALookupAppliesAndStoresTheFrontendsCurrentTimeout) {
    ASSERT_TRUE(remember(k(1), b(1), 0, 60));
    ASSERT_TRUE(remember(k(2), b(2), 0, 60));
    // Timeout raised to an hour: the entry lives on, and ageing keeps it.
    EXPECT_EQ(lookup(k(1), 59, 3600), b(1));
    EXPECT_EQ(t_->age(at(600), t_->slots()), 1u);  // k(2), by its stored 60 s
    EXPECT_EQ(lookup(k(1), 600, 3600), b(1));
    // Lowered to 10 s: applies to lookups at once.
    EXPECT_EQ(lookup(k(1), 620, 10), std::nullopt);
    EXPECT_EQ(t_->age(at(620), t_->slots()), 0u);  // stored 3600 s until used again
    EXPECT_EQ(t_->age(at(600 + 3600), t_->slots()), 1u);
    EXPECT_EQ(t_->count(), 0u);
}

TEST_P(Affinity, RememberReplacesTheBackend) {
    ASSERT_TRUE(remember(k(1), b(1), 0));
    ASSERT_TRUE(remember(k(1), b(2), 1));
    EXPECT_EQ(counted(AffinityResult::kStored), 1u);
    EXPECT_EQ(counted(AffinityResult::kReplaced), 1u);
    EXPECT_EQ(t_->count(), 1u);
    EXPECT_EQ(lookup(k(1), 2), b(2));
}

TEST_P(Affinity, ForgetFreesTheEntry) {
    ASSERT_TRUE(remember(k(1), b(1), 0));
    ASSERT_TRUE(remember(k(2), b(2), 0));
    EXPECT_TRUE(t_->forget(k(1)));
    EXPECT_FALSE(t_->forget(k(1)));
    EXPECT_EQ(t_->count(), 1u);
    EXPECT_EQ(lookup(k(1), 1), std::nullopt);
    EXPECT_EQ(lookup(k(2), 1), b(2));
    EXPECT_TRUE(remember(k(1), b(3), 2));
    EXPECT_EQ(lookup(k(1), 3), b(3));
}

TEST_P(Affinity, FrontendsPortsAndProtocolsAreDistinct) {
    const AffinityKey keys[] = {
        key(v6_, 1, 0, 80, IPPROTO_TCP),  key(v6_, 1, 1, 80, IPPROTO_TCP),
        key(v6_, 1, 0, 443, IPPROTO_TCP), key(v6_, 1, 0, 80, IPPROTO_UDP),
        key(v6_, 1, 0, 80, IPPROTO_SCTP),
    };
    for (uint16_t i = 0; i < std::size(keys); i++) {
        ASSERT_TRUE(remember(keys[i], b(i), 0));
    }
    EXPECT_EQ(t_->count(), std::size(keys));
    for (uint16_t i = 0; i < std::size(keys); i++) {
        EXPECT_EQ(lookup(keys[i], 1), b(i)) << i;
    }
}

TEST_P(Affinity, AFullTableRefusesNewKeysAndCountsThem) {
    make(8);
    for (uint16_t i = 0; i < 8; i++) {
        ASSERT_TRUE(remember(k(i), b(i), 0, 60)) << i;
    }
    EXPECT_FALSE(remember(k(8), b(8), 0, 60));
    EXPECT_EQ(counted(AffinityResult::kTableFull), 1u);
    EXPECT_EQ(lookup(k(8), 0, 60), std::nullopt);
    EXPECT_EQ(t_->count(), 8u);
    EXPECT_TRUE(remember(k(3), b(9), 0, 60));  // a key's own entry: replaced
    EXPECT_TRUE(t_->forget(k(0)));
    EXPECT_TRUE(remember(k(8), b(8), 10, 60));
    EXPECT_EQ(counted(AffinityResult::kTableFull), 1u);
    // Full, seven entries idle past their timeout (not aged yet): one makes way.
    EXPECT_TRUE(remember(k(9), b(9), 61, 60));
    EXPECT_EQ(counted(AffinityResult::kTableFull), 1u);
    EXPECT_EQ(t_->count(), 8u);
    EXPECT_EQ(lookup(k(9), 62, 60), b(9));
    EXPECT_EQ(lookup(k(8), 62, 60), b(8));  // stored at 10: alive, kept
}

TEST_P(Affinity, AgeingFreesOnlyExpiredEntriesASliceAtATime) {
    // 90 clients, timeouts 10, 20 and 30 s, all remembered at 0; a fifth
    // of them looked up at 15 (those of 10 s had expired: not refreshed).
    constexpr uint16_t kClients = 90;
    auto timeout = [](uint16_t i) { return 10u * (1 + i % 3); };
    auto used_at_15 = [&](uint16_t i) { return i % 5 == 0 && timeout(i) > 15; };
    auto last_use = [&](uint16_t i) { return used_at_15(i) ? 15.0 : 0.0; };
    for (uint16_t i = 0; i < kClients; i++) {
        ASSERT_TRUE(remember(k(i), b(i), 0, timeout(i)));
    }
    for (uint16_t i = 0; i < kClients; i += 5) {
        EXPECT_EQ(lookup(k(i), 15, timeout(i)), used_at_15(i) ? std::optional(b(i)) : std::nullopt)
            << i;
    }
    EXPECT_EQ(t_->age(at(100), 0), 0u);
    for (const double now : {5.0, 12.0, 21.0, 26.0, 31.0, 46.0}) {
        uint32_t expect_left = 0;
        for (uint16_t i = 0; i < kClients; i++) {
            expect_left += now - last_use(i) < timeout(i) ? 1 : 0;
        }
        const size_t before = t_->count();
        uint32_t freed = 0;
        for (uint32_t s = 0; s < t_->slots(); s += 16) {
            const uint32_t n = t_->age(at(now), 16);
            EXPECT_LE(n, 16u);
            freed += n;
        }
        EXPECT_EQ(t_->count(), expect_left) << "at " << now;
        EXPECT_EQ(before - t_->count(), freed) << "at " << now;
    }
    EXPECT_EQ(t_->count(), 0u);
}

TEST_P(Affinity, FlushFreesEverything) {
    for (uint16_t i = 0; i < 10; i++) {
        ASSERT_TRUE(remember(k(i), b(i), 0));
    }
    EXPECT_EQ(t_->flush(), 10u);
    EXPECT_EQ(t_->count(), 0u);
    EXPECT_EQ(lookup(k(1), 1), std::nullopt);
    EXPECT_TRUE(remember(k(1), b(1), 1));
    EXPECT_EQ(lookup(k(1), 2), b(1));
}

TEST_P(Affinity, KeyOfAFrontendAndTargetOfABackend) {
    svc::Frontend fe{};
    fe.v6 = v6_;
    fe.addr = addr(v6_, 10, 96, 10);
    fe.port_be = Be16::from_host(80).raw();
    fe.proto = IPPROTO_TCP;
    const auto client = addr(v6_, 10, 65, 1);
    EXPECT_EQ(AffinityKey::of(fe, client.data()), k(1));
    svc::Backend be{};
    be.addr = addr(v6_, 10, 66, 5);
    if (!v6_) {
        be.addr[12] = 0xff;  // beyond an IPv4 address: not part of the target
    }
    be.port_be = Be16::from_host(8005).raw();
    EXPECT_EQ(AffinityTarget::of(be, v6_), b(5));
}

TEST(AffinityFamilies, IPv4AndIPv6KeysAreDistinct) {
    // The same bytes where the IPv4 addresses stand; only the family differs.
    AffinityCounters c;
    AffinityTable t(64, kHz);
    const AffinityKey k4 = key(false, 1);
    AffinityKey k6 = k4;
    k6.family = 6;
    ASSERT_TRUE(t.remember(k4, backend(false, 4), at(0), kDefaultTimeout, c));
    ASSERT_TRUE(t.remember(k6, backend(true, 6), at(0), kDefaultTimeout, c));
    EXPECT_EQ(t.count(), 2u);
    AffinityTarget out;
    ASSERT_TRUE(t.lookup(k4, at(1), kDefaultTimeout, out, c));
    EXPECT_EQ(out, backend(false, 4));
    ASSERT_TRUE(t.lookup(k6, at(1), kDefaultTimeout, out, c));
    EXPECT_EQ(out, backend(true, 6));
}

TEST(AffinityConfig, TheConstructorRefusesABadCapacity) {
    EXPECT_THROW(AffinityTable(0, kHz), std::invalid_argument);
    EXPECT_THROW(AffinityTable(svc::kMaxAffinityCapacity + 1, kHz), std::invalid_argument);
    EXPECT_THROW(AffinityTable(16, 0), std::invalid_argument);
    AffinityTable t(1, kHz);
    EXPECT_EQ(t.capacity(), 1u);
    EXPECT_GE(t.slots(), 2u);
}

// --- two threads ---

// Backend j (0..3) of key i in the threaded tests: its address and its port
// both name i and j (in different words of the entry), so a copy torn
// between two writes, or of another key's entry, matches none of them.
AffinityTarget target_of(bool v6, uint16_t i, uint16_t j) {
    return backend(v6, static_cast<uint16_t>(i * 4 + j));
}

struct Hammer {
    Hammer(uint32_t capacity, uint16_t n_keys) : t(capacity, kHz) {
        for (uint16_t i = 0; i < n_keys; i++) {
            keys.push_back(key(i % 2 == 1, i));
        }
    }
    // Whether out is one of the targets any thread may have remembered for key i.
    bool valid(uint16_t i, const AffinityTarget &out) const {
        for (uint16_t j = 0; j < 4; j++) {
            if (out == target_of(keys[i].family == 6, i, j)) {
                return true;
            }
        }
        return false;
    }
    AffinityTable t;
    std::vector<AffinityKey> keys;
    std::atomic<uint64_t> wrong{0};
};

// Both threads remember, look up and forget the same 8 keys (as many as the
// entries, so the table is never full; in two buckets, so freed slots are
// reused by other keys under the readers). Thread n remembers targets 2n
// and 2n+1 of a key.
TEST(AffinityThreads, NoTornEntryAndOneEntryAKey) {
    Hammer h(8, 8);
    const uint64_t now = at(1);  // no expiry here
    std::atomic<bool> go{false};
    std::array<AffinityCounters, 2> counters;
    std::array<uint64_t, 2> ops{};
    auto run = [&](uint16_t n) {
        std::mt19937 rng(n + 1);
        while (!go.load(std::memory_order_acquire)) {
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
        AffinityCounters &c = counters[n];
        for (uint64_t op = 0;; op++) {
            if (op % 256 == 0 && std::chrono::steady_clock::now() > deadline) {
                ops[n] = op;
                return;
            }
            const auto i = static_cast<uint16_t>(rng() % h.keys.size());
            const uint32_t what = rng() % 10;
            const bool v6 = h.keys[i].family == 6;
            if (what < 4) {
                const auto j = static_cast<uint16_t>(2 * n + rng() % 2);
                if (!h.t.remember(h.keys[i], target_of(v6, i, j), now, kDefaultTimeout, c)) {
                    h.wrong.fetch_add(1);  // never full: 8 keys, 8 entries
                }
            } else if (what < 9) {
                AffinityTarget out;
                if (h.t.lookup(h.keys[i], now, kDefaultTimeout, out, c) && !h.valid(i, out)) {
                    h.wrong.fetch_add(1);
                }
            } else {
                h.t.forget(h.keys[i]);
            }
        }
    };
    std::thread a(run, 0), b(run, 1);
    go.store(true, std::memory_order_release);
    a.join();
    b.join();
    std::printf("affinity: %lu + %lu operations, %lu + %lu hits\n",
                static_cast<unsigned long>(ops[0]), static_cast<unsigned long>(ops[1]),
                static_cast<unsigned long>(counters[0].get(AffinityResult::kHit)),
                static_cast<unsigned long>(counters[1].get(AffinityResult::kHit)));
    EXPECT_EQ(h.wrong.load(), 0u);
    EXPECT_GT(ops[0] + ops[1], 10000u);
    for (const AffinityCounters &c : counters) {
        EXPECT_GT(c.get(AffinityResult::kHit), 0u);
        EXPECT_EQ(c.get(AffinityResult::kTableFull) + c.get(AffinityResult::kIndexFull), 0u);
    }
    // One entry a key: the entries held are the keys found.
    AffinityCounters c;
    size_t found = 0;
    for (uint16_t i = 0; i < h.keys.size(); i++) {
        AffinityTarget out;
        if (h.t.lookup(h.keys[i], now, kDefaultTimeout, out, c)) {
            EXPECT_TRUE(h.valid(i, out)) << i;
            found++;
        }
    }
    EXPECT_EQ(h.t.count(), found);
}

// Both threads remember the same 4 keys over and over, one of them
// forgetting each key before every other remember(), so that the two insert
// a new entry for one key at the same time again and again: at the end,
// each key has one entry, holding one of the two threads' targets.
TEST(AffinityThreads, ConcurrentRememberOfOneKeyLeavesOneEntry) {
    Hammer h(64, 4);
    std::atomic<bool> go{false};
    auto run = [&](uint16_t n) {
        AffinityCounters c;
        while (!go.load(std::memory_order_acquire)) {
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
        for (uint64_t op = 0;; op++) {
            const auto i = static_cast<uint16_t>(op % h.keys.size());
            if (n == 1 && op % 2 == 0) {
                h.t.forget(h.keys[i]);
            }
            h.t.remember(h.keys[i], target_of(h.keys[i].family == 6, i, n), at(1), kDefaultTimeout,
                         c);
            // Stop after a whole round, every key remembered last.
            if (i + 1u == h.keys.size() && std::chrono::steady_clock::now() > deadline) {
                break;
            }
        }
        EXPECT_GT(c.get(AffinityResult::kStored), 0u);
        EXPECT_EQ(c.get(AffinityResult::kTableFull) + c.get(AffinityResult::kIndexFull), 0u);
    };
    std::thread a(run, 0), b(run, 1);
    go.store(true, std::memory_order_release);
    a.join();
    b.join();
    EXPECT_EQ(h.t.count(), h.keys.size());
    AffinityCounters c;
    for (uint16_t i = 0; i < h.keys.size(); i++) {
        AffinityTarget out;
        ASSERT_TRUE(h.t.lookup(h.keys[i], at(2), kDefaultTimeout, out, c)) << i;
        const bool v6 = h.keys[i].family == 6;
        EXPECT_TRUE(out == target_of(v6, i, 0) || out == target_of(v6, i, 1)) << i;
    }
}

// With expiry: the clock moves half a second every 16 operations of the
// first thread (a key is touched every 24 operations or so, so some go idle
// past their timeout); entries live 1 or 2 s and lookups take either timeout
// at random (so hits rewrite entries: refreshes race the writers); the first
// thread ages a slice now and then; the table is smaller than the keys, so
// it fills and expired entries make way. No torn entry, and the count stays
// exact: ageing everything at the end leaves 0.
TEST(AffinityThreads, RefreshAndAgeingRaceTheWriters) {
    Hammer h(16, 24);
    std::atomic<uint64_t> clock{at(1)};
    std::atomic<bool> go{false};
    std::array<uint64_t, 2> aged{};
    auto run = [&](uint16_t n) {
        std::mt19937 rng(n + 7);
        AffinityCounters c;
        while (!go.load(std::memory_order_acquire)) {
        }
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
        for (uint64_t op = 0;; op++) {
            if (op % 256 == 0 && std::chrono::steady_clock::now() > deadline) {
                return;
            }
            uint64_t now = clock.load(std::memory_order_relaxed);
            if (n == 0 && op % 16 == 0) {
                now = clock.fetch_add(kHz / 2) + kHz / 2;
                aged[n] += h.t.age(now, 8);
            }
            const auto i = static_cast<uint16_t>(rng() % h.keys.size());
            const bool v6 = h.keys[i].family == 6;
            const uint32_t timeout = 1 + rng() % 2;
            if (rng() % 2 == 0) {
                const auto j = static_cast<uint16_t>(2 * n + rng() % 2);
                h.t.remember(h.keys[i], target_of(v6, i, j), now, timeout, c);
            } else {
                AffinityTarget out;
                if (h.t.lookup(h.keys[i], now, timeout, out, c) && !h.valid(i, out)) {
                    h.wrong.fetch_add(1);
                }
            }
        }
    };
    std::thread a(run, 0), b(run, 1);
    go.store(true, std::memory_order_release);
    a.join();
    b.join();
    EXPECT_EQ(h.wrong.load(), 0u);
    EXPECT_GT(aged[0], 0u);
    EXPECT_LE(h.t.count(), 16u);
    h.t.age(clock.load() + 3 * kHz, h.t.slots());
    EXPECT_EQ(h.t.count(), 0u);
}

}  // namespace
}  // namespace fwd::dp::test
