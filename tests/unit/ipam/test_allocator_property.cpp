// Random allocate / release / claim / borrow sequences against a reference
// model (the set of addresses per handle), and threads racing on one store.
#include <map>
#include <random>
#include <set>
#include <thread>

#include "ipam_fixture.hpp"

namespace fwd::ipam::test {
namespace {

// The store's allocations, per handle.
std::map<std::string, std::set<net::IpAddr>> stored(Allocator &a) {
    std::map<std::string, std::set<net::IpAddr>> m;
    for (const auto &x : a.allocations()) {
        EXPECT_TRUE(m[x.attrs.handle].insert(x.addr).second) << x.addr.str() << " twice";
    }
    return m;
}

class PropertyTest : public AllocatorTest, public ::testing::WithParamInterface<uint32_t> {};

TEST_P(PropertyTest, RandomSequencesMatchTheReferenceModel) {
    std::mt19937 rng(GetParam());
    // Small pools and blocks, so claims, borrowing and exhaustion all happen.
    alloc_.add_pool(make_pool("p4", "10.0.0.0/26", 29));  // 8 blocks of 8
    alloc_.add_pool(make_pool("p6", "fd00::/122", 125));  // 8 blocks of 8
    alloc_.add_pool(make_pool("q4", "10.1.0.0/28", 30));  // 4 blocks of 4
    alloc_.add_reservation({"r", {cidr("10.0.0.13/32"), cidr("fd00::20/126")}});
    alloc_.set_config({false, 3});
    const std::vector<std::string> nodes{"n1", "n2", "n3"};
    std::vector<std::unique_ptr<Allocator>> allocs;
    for (size_t i = 0; i < nodes.size(); ++i) {
        allocs.push_back(std::make_unique<Allocator>(store_, opts()));
    }
    std::map<std::string, std::set<net::IpAddr>> model;
    std::set<net::IpAddr> in_use;
    int next = 0, exhausted = 0, assigned = 0;
    auto pick = [&](auto &m) {
        auto it = m.begin();
        std::advance(it, rng() % m.size());
        return it;
    };
    for (int step = 0; step < 3000; ++step) {
        size_t ni = rng() % nodes.size();
        Allocator &a = *allocs[ni];
        int op = rng() % 100;
        if (op < 45) {
            auto req = request("c" + std::to_string(next++), nodes[ni], 0, 0);
            int kind = rng() % 3;
            req.num4 = kind != 1 ? 1 + (rng() % 4 == 0) : 0;
            req.num6 = kind != 0 ? 1 : 0;
            if (rng() % 5 == 0) {
                req.pools4 = {"q4"};
            }
            try {
                auto got = a.assign(req);
                ++assigned;
                ASSERT_EQ(static_cast<int>(got.v4.size()), req.num4);
                ASSERT_EQ(static_cast<int>(got.v6.size()), req.num6);
                for (const auto *v : {&got.v4, &got.v6}) {
                    for (const auto &x : *v) {
                        ASSERT_TRUE(in_use.insert(x).second) << x.str() << " handed out twice";
                        ASSERT_NE(x, ip("10.0.0.13"));
                        ASSERT_FALSE(cidr("fd00::20/126").contains(x));
                        model[req.handle].insert(x);
                    }
                }
            } catch (const ExhaustedError &) {
                ++exhausted;
            }
        } else if (op < 70 && !model.empty()) {
            auto it = pick(model);
            ASSERT_EQ(a.release_handle(it->first), static_cast<int>(it->second.size()));
            for (const auto &x : it->second) {
                in_use.erase(x);
            }
            model.erase(it);
        } else if (op < 85 && !model.empty()) {
            auto it = pick(model);
            auto x = *pick(it->second);
            ASSERT_TRUE(a.release_address(x));
            in_use.erase(x);
            it->second.erase(x);
            if (it->second.empty()) {
                model.erase(it);
            }
        } else if (op < 92) {
            advance(rng() % 40'000);
            a.release_empty_blocks(nodes[ni]);
        } else if (op < 95) {
            a.release_node(nodes[ni]);
        } else {
            // A fixed address, maybe taken.
            auto req = request("f" + std::to_string(next++), nodes[ni], 0, 0);
            auto x = cidr("10.0.0.0/26").nth(rng() % 64);
            req.fixed = {x};
            try {
                a.assign(req);
                ASSERT_TRUE(in_use.insert(x).second);
                model[req.handle].insert(x);
            } catch (const IpamError &) {
                ASSERT_TRUE(in_use.count(x) || x == ip("10.0.0.13")) << x.str();
            }
        }
        if (step % 50 == 0 || step == 2999) {
            ASSERT_EQ(stored(alloc_), model) << "step " << step;
            auto f = alloc_.check();
            ASSERT_TRUE(f.empty()) << "step " << step << ": " << to_string(f[0].kind) << " "
                                   << f[0].subject << " " << f[0].detail;
            // What a node advertises covers every address it holds in
            // blocks that some node holds.
            auto all = alloc_.allocations();
            for (const auto &n : nodes) {
                auto r = alloc_.node_routes(n);
                for (const auto &x : all) {
                    if (x.attrs.node != n) {
                        continue;
                    }
                    bool in_block = std::any_of(r.blocks.begin(), r.blocks.end(),
                                                [&](const Cidr &c) { return c.contains(x.addr); });
                    bool as_host = std::count(r.borrowed.begin(), r.borrowed.end(), x.addr) == 1;
                    ASSERT_TRUE(in_block != as_host) << n << " " << x.addr.str();
                }
            }
        }
    }
    EXPECT_GT(assigned, 300);
    EXPECT_GT(exhausted, 0);
}

INSTANTIATE_TEST_SUITE_P(Seeds, PropertyTest, ::testing::Values(1u, 2u, 3u, 42u, 1234u));

TEST_F(AllocatorTest, ThreadsOnOneStoreNeverDoubleAnAddress) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/16"));
    alloc_.add_pool(make_pool("p6", "fd00::/112"));
    // Two threads on one node need more than the default 20 blocks.
    alloc_.set_config({false, 100});
    constexpr int kThreads = 4;
    constexpr int kEach = 1000;
    std::vector<std::vector<net::IpAddr>> got(kThreads);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
        ts.emplace_back([&, t] {
            Allocator a(store_, opts());
            // Two threads share a node name, so they race on the same blocks.
            std::string node = "n" + std::to_string(t % 3);
            for (int i = 0; i < kEach; ++i) {
                auto r = a.assign(request(std::to_string(t) + "-" + std::to_string(i), node, 1,
                                          i % 4 == 0 ? 1 : 0));
                got[t].insert(got[t].end(), r.v4.begin(), r.v4.end());
                got[t].insert(got[t].end(), r.v6.begin(), r.v6.end());
            }
        });
    }
    for (auto &t : ts) {
        t.join();
    }
    std::set<net::IpAddr> all;
    size_t total = 0;
    for (const auto &g : got) {
        total += g.size();
        all.insert(g.begin(), g.end());
    }
    EXPECT_EQ(total, static_cast<size_t>(kThreads * (kEach + kEach / 4)));
    EXPECT_EQ(all.size(), total);
    EXPECT_EQ(allocated(), total);
    expect_clean();
}

}  // namespace
}  // namespace fwd::ipam::test
