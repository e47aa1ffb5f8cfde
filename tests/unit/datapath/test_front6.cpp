// The IPv6 route front (front6.hpp) and Tables::lookup6_bulk: the front
// alone against a map under churn that makes long probe runs, and the
// front-and-trie lookup against a longest-match reference on randomised
// tables where /128, /122, 123..127 and shorter routes nest in one another.
#include <gtest/gtest.h>
#include <rte_fib6.h>
#include <rte_lcore.h>

#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "fwd/dp/front6.hpp"
#include "fwd/dp/tables.hpp"

namespace fwd::dp {
namespace {

using Addr = std::array<uint8_t, 16>;

Addr masked(Addr a, uint8_t len) {
    for (int bit = len; bit < 128; bit++) {
        a[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    }
    return a;
}

// Addresses in a small space so prefixes collide and nest: fd00:10:244::/48,
// then a few values for the bytes that separate blocks and pods.
Addr random_addr(std::mt19937_64 &rng) {
    Addr a{0xfd, 0x00, 0x00, 0x10, 0x02, 0x44};
    a[13] = static_cast<uint8_t>(rng() % 3);
    a[14] = static_cast<uint8_t>(rng() % 4);
    a[15] = static_cast<uint8_t>(rng() % 256);
    if (rng() % 8 == 0) {
        a[7] = static_cast<uint8_t>(1 + rng() % 3);  // elsewhere in the /48
    }
    if (rng() % 16 == 0) {
        a[0] = 0x20;  // outside the pool: only short routes and the default reach it
    }
    return a;
}

TEST(Front6, FindsWhatItHoldsThroughChurnWhileItGrowsAndShrinks) {
    Front6 f(static_cast<int>(rte_socket_id()));
    std::map<std::pair<Addr, uint8_t>, uint32_t> ref;
    std::mt19937_64 rng(7);
    size_t most = 0, n128 = 0;
    const size_t first_bytes = f.memory_bytes();
    auto wide = [&rng]() {  // 4096 blocks: enough to make the slots and pod arrays grow
        Addr a = random_addr(rng);
        a[13] = static_cast<uint8_t>(rng() % 256);
        a[12] = static_cast<uint8_t>(rng() % 4);
        return a;
    };
    for (int op = 0; op < 40000; op++) {
        uint8_t len = rng() % 2 ? 128 : 122;
        Addr a = masked(wide(), len);
        // phases: grow to a few thousand routes (slots and pod arrays double),
        // then churn down (blocks leave, their slots shift back), and again
        const bool adding = (op / 10000) % 2 == 0 ? rng() % 4 != 0 : rng() % 4 == 0;
        if (!adding) {
            bool had = ref.erase({a, len}) == 1;
            ASSERT_EQ(f.erase(a.data(), len), had) << "op " << op;
            n128 -= had && len == 128 ? 1 : 0;
        } else {
            auto nh = static_cast<uint32_t>(1 + rng() % 1000);
            ASSERT_TRUE(f.set(a.data(), len, nh)) << "op " << op;
            n128 += len == 128 && ref.count({a, len}) == 0 ? 1 : 0;
            ref[{a, len}] = nh;
        }
        most = std::max(most, ref.size());
        ASSERT_EQ(f.size(128), n128);
        ASSERT_EQ(f.size(122), ref.size() - n128);
        // every route still reachable from its home slot, nothing that is gone found
        if (op % 1999 == 0) {
            for (const auto &[k, nh] : ref) {
                ASSERT_EQ(f.find(k.first.data(), k.second), nh) << "op " << op;
            }
        }
        Addr probe = wide();
        auto it = ref.find({masked(probe, len), len});
        ASSERT_EQ(f.find(probe.data(), len), it == ref.end() ? Front6::kMiss : it->second);
    }
    std::printf("at most %zu routes; %zu bytes at the start, %zu at the end\n", most, first_bytes,
                f.memory_bytes());
    // past the first 1024 slots (half of them usable) and 16 pod arrays
    EXPECT_GT(most, 2000u);
    EXPECT_GT(f.memory_bytes(), 8 * first_bytes);
    EXPECT_FALSE(f.set(Addr{}.data(), 64, 1));  // not a length it holds
    EXPECT_FALSE(f.set(Addr{}.data(), 128, Front6::kMiss));
    EXPECT_EQ(f.find(Addr{}.data(), 64), Front6::kMiss);
}

// The longest match over every route, by brute force.
uint32_t reference(const std::map<std::pair<Addr, uint8_t>, uint32_t> &routes, const Addr &d) {
    int best = -1;
    uint32_t nh = kNhInvalid;
    for (const auto &[k, v] : routes) {
        if (k.second > best && masked(d, k.second) == k.first) {
            best = k.second;
            nh = v;
        }
    }
    return nh;
}

TEST(Front6, TablesLookupIsTheLongestMatchOnNestedRandomTables) {
    Tables t(1024, 2048, nullptr, static_cast<int>(rte_socket_id()));
    std::map<std::pair<Addr, uint8_t>, uint32_t> routes;
    std::mt19937_64 rng(20261207);
    const uint8_t lens[] = {0,   32,  48,  64,  112, 120, 121, 122, 122,
                            122, 123, 125, 127, 128, 128, 128, 128};
    uint64_t checked = 0, front_hits = 0, mid_rounds = 0;
    for (int round = 0; round < 300; round++) {
        std::vector<Tables::Change6> batch;
        // rounds 4k and 4k + 1 add no mid route (123..127) and start without one
        const bool no_mid = round % 4 < 2;
        for (int c = 0, n = 1 + static_cast<int>(rng() % 12); c < n; c++) {
            uint8_t len = lens[rng() % std::size(lens)];
            if (no_mid && len > 122 && len < 128) {
                len = 122;
            }
            Addr a = masked(random_addr(rng), len);
            net::Prefix6 p{net::Ip6Addr::from_bytes(a.data()), len};
            bool del = routes.count({a, len}) != 0 && rng() % 2 == 0;
            batch.push_back({p, del ? kNhInvalid : static_cast<uint32_t>(1 + rng() % 60000)});
        }
        std::vector<int> rc;
        t.apply6_batch(batch, rc);
        for (size_t i = 0; i < batch.size(); i++) {
            Addr a = batch[i].prefix.addr.bytes();
            uint8_t len = batch[i].prefix.len;
            if (batch[i].nh == kNhInvalid) {
                ASSERT_EQ(rc[i], routes.erase({a, len}) == 1 ? 0 : -ENOENT);
            } else {
                ASSERT_EQ(rc[i], 0);
                routes[{a, len}] = batch[i].nh;
            }
        }
        bool mid = false;
        for (const auto &r : routes) {
            mid = mid || (r.first.second > 122 && r.first.second < 128);
        }
        mid_rounds += mid ? 1 : 0;
        // destinations: the routes' own addresses and random ones near them
        std::vector<Addr> dst;
        for (const auto &r : routes) {
            dst.push_back(r.first.first);
        }
        for (int i = 0; i < 64; i++) {
            dst.push_back(random_addr(rng));
        }
        for (size_t off = 0; off < dst.size(); off += Front6::kMaxBulk) {
            auto n = static_cast<uint16_t>(std::min<size_t>(Front6::kMaxBulk, dst.size() - off));
            uint8_t ip[Front6::kMaxBulk][16];
            uint64_t hop[Front6::kMaxBulk], trie[Front6::kMaxBulk];
            for (uint16_t i = 0; i < n; i++) {
                std::memcpy(ip[i], dst[off + i].data(), 16);
            }
            t.lookup6_bulk(ip, hop, n);
            rte_fib6_lookup_bulk(t.fib6(), ip, trie, n);
            for (uint16_t i = 0; i < n; i++) {
                const Addr &d = dst[off + i];
                uint32_t want = reference(routes, d);
                ASSERT_EQ(hop[i], want) << "round " << round << " destination " << i;
                ASSERT_EQ(trie[i], want) << "round " << round << ": the trie itself";
                auto p128 = routes.find({d, 128});
                front_hits += p128 != routes.end() && p128->second == want ? 1 : 0;
                checked++;
            }
        }
        if (round % 4 == 3) {  // the next two rounds: a table with no mid route
            std::vector<Tables::Change6> gone;
            for (const auto &r : routes) {
                if (r.first.second > 122 && r.first.second < 128) {
                    gone.push_back(
                        {{net::Ip6Addr::from_bytes(r.first.first.data()), r.first.second},
                         kNhInvalid});
                }
            }
            t.apply6_batch(gone, rc);
            for (const auto &g : gone) {
                routes.erase({g.prefix.addr.bytes(), g.prefix.len});
            }
        }
    }
    std::printf("%lu destinations checked, %lu by a /128, %lu of 300 rounds with a mid route\n",
                checked, front_hits, mid_rounds);
    // the mix did what it is for: both table shapes, and /128s answering
    EXPECT_GT(mid_rounds, 100u);
    EXPECT_LE(mid_rounds, 150u);
    EXPECT_GT(front_hits, 1000u);
}

}  // namespace
}  // namespace fwd::dp
