#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "ipam_fixture.hpp"

namespace fwd::ipam::test {
namespace {

using net::Family;

TEST_F(AllocatorTest, FirstAllocationClaimsAndConfirmsABlockV4) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    auto a = alloc_.assign(request("c1", "n1", 1, 0));
    ASSERT_EQ(a.v4.size(), 1u);
    EXPECT_TRUE(a.v6.empty());
    EXPECT_EQ(a.v4[0].str(), "10.0.0.0");
    EXPECT_EQ(alloc_.confirmed_blocks("n1"), std::vector<Cidr>{cidr("10.0.0.0/26")});
    auto bs = alloc_.blocks();
    ASSERT_EQ(bs.size(), 1u);
    EXPECT_EQ(bs[0].pool, "p4");
    EXPECT_EQ(bs[0].node, "n1");
    EXPECT_EQ(bs[0].state, AffinityState::kConfirmed);
    EXPECT_EQ(bs[0].used, 1);
    EXPECT_EQ(bs[0].free, 63);
    EXPECT_EQ(alloc_.addresses("k8s-pod-network.c1"), a.v4);
    // Keys laid out under the prefix.
    EXPECT_TRUE(store_.get("/dpdk-fwd/ipam/v1/pools/p4"));
    EXPECT_TRUE(store_.get("/dpdk-fwd/ipam/v1/blocks/10.0.0.0-26"));
    EXPECT_TRUE(store_.get("/dpdk-fwd/ipam/v1/affinity/n1/10.0.0.0-26"));
    EXPECT_TRUE(store_.get("/dpdk-fwd/ipam/v1/handles/k8s-pod-network.c1"));
    expect_clean();
}

TEST_F(AllocatorTest, FirstAllocationClaimsAndConfirmsABlockV6) {
    alloc_.add_pool(make_pool("p6", "fd00:10::/64"));
    auto a = alloc_.assign(request("c1", "n1", 0, 2));
    ASSERT_EQ(a.v6.size(), 2u);
    EXPECT_EQ(a.v6[0].str(), "fd00:10::");
    EXPECT_EQ(a.v6[1].str(), "fd00:10::1");
    EXPECT_EQ(alloc_.confirmed_blocks("n1"), std::vector<Cidr>{cidr("fd00:10::/122")});
    EXPECT_TRUE(store_.get("/dpdk-fwd/ipam/v1/blocks/fd00:10::-122"));
    expect_clean();
}

TEST_F(AllocatorTest, AttributesAreStored) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.assign(request("abc", "n1", 1, 0));
    auto all = alloc_.allocations();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].attrs.handle, "k8s-pod-network.abc");
    EXPECT_EQ(all[0].attrs.ns, "default");
    EXPECT_EQ(all[0].attrs.pod, "pod-abc");
    EXPECT_EQ(all[0].attrs.node, "n1");
    EXPECT_EQ(all[0].attrs.container_id, "abc");
    EXPECT_FALSE(all[0].borrowed);
}

TEST_F(AllocatorTest, OwnBlocksFirstThenANewBlock) {
    for (auto [name, c, bs] : {std::tuple{"p4", "10.0.0.0/28", 30}, {"p6", "fd00::/124", 126}}) {
        alloc_.add_pool(make_pool(name, c, bs));
    }
    for (int i = 0; i < 6; ++i) {
        alloc_.assign(request("c" + std::to_string(i), "n1", 1, 1));
    }
    EXPECT_EQ(alloc_.confirmed_blocks("n1").size(), 4u);  // 2 IPv4 + 2 IPv6 blocks of 4
    alloc_.assign(request("other", "n2", 1, 1));
    auto r2 = alloc_.node_routes("n2");
    EXPECT_EQ(r2.blocks.size(), 2u);
    EXPECT_TRUE(r2.borrowed.empty());
    expect_clean();
}

TEST_F(AllocatorTest, BorrowWhenMaxBlocksReachedAndRouteAsHost) {
    alloc_.set_config({false, 1});
    alloc_.add_pool(make_pool("p4", "10.0.0.0/29", 30));
    alloc_.add_pool(make_pool("p6", "fd00::/125", 126));
    alloc_.assign(request("b", "n2", 1, 1));  // n2 holds the first blocks
    for (int i = 0; i < 4; ++i) {
        alloc_.assign(request("a" + std::to_string(i), "n1", 1, 1));
    }
    auto a = alloc_.assign(request("borrower", "n1", 1, 1));
    EXPECT_TRUE(cidr("10.0.0.0/30").contains(a.v4[0]));
    EXPECT_TRUE(cidr("fd00::/126").contains(a.v6[0]));
    auto r1 = alloc_.node_routes("n1");
    EXPECT_EQ(r1.blocks, (std::vector<Cidr>{cidr("10.0.0.4/30"), cidr("fd00::4/126")}));
    std::vector<net::IpAddr> want{a.v4[0], a.v6[0]};
    EXPECT_EQ(r1.borrowed, want);
    auto r2 = alloc_.node_routes("n2");
    EXPECT_TRUE(r2.borrowed.empty());
    expect_clean();
}

TEST_F(AllocatorTest, StrictAffinityForbidsBorrowing) {
    alloc_.set_config({true, 1});
    alloc_.add_pool(make_pool("p4", "10.0.0.0/29", 30));
    alloc_.assign(request("b", "n2", 1, 0));
    for (int i = 0; i < 4; ++i) {
        alloc_.assign(request("a" + std::to_string(i), "n1", 1, 0));
    }
    size_t before = allocated();
    try {
        alloc_.assign(request("x", "n1", 1, 0));
        FAIL();
    } catch (const ExhaustedError &e) {
        EXPECT_EQ(e.family(), Family::kIp4);
        EXPECT_NE(std::string(e.what()).find("strict"), std::string::npos) << e.what();
    }
    EXPECT_EQ(allocated(), before);
    EXPECT_TRUE(alloc_.addresses(pod_handle("x")).empty());
    expect_clean();
}

TEST_F(AllocatorTest, MaxBlocksPerHostZeroMeansTwenty) {
    alloc_.set_config({true, 0});
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24", 32));
    for (int i = 0; i < 20; ++i) {
        alloc_.assign(request("a" + std::to_string(i), "n1", 1, 0));
    }
    EXPECT_EQ(alloc_.confirmed_blocks("n1").size(), 20u);
    EXPECT_THROW(alloc_.assign(request("x", "n1", 1, 0)), ExhaustedError);
    alloc_.set_config({true, 21});
    EXPECT_NO_THROW(alloc_.assign(request("x", "n1", 1, 0)));
}

TEST_F(AllocatorTest, ExhaustionNamesPoolAndFamilyAndAllocatesNothing) {
    alloc_.add_pool(make_pool("small4", "10.0.0.0/30", 30));
    alloc_.add_pool(make_pool("small6", "fd00::/126", 126));
    alloc_.assign(request("a", "n1", 3, 3));
    size_t before = allocated();
    for (auto [n4, n6, fam, pool] :
         {std::tuple{2, 0, "IPv4", "small4"}, {0, 2, "IPv6", "small6"}}) {
        try {
            alloc_.assign(request("x", "n1", n4, n6));
            FAIL();
        } catch (const ExhaustedError &e) {
            std::string w = e.what();
            EXPECT_NE(w.find(fam), std::string::npos) << w;
            EXPECT_NE(w.find(pool), std::string::npos) << w;
            ASSERT_EQ(e.pools().size(), 1u);
        }
        EXPECT_EQ(allocated(), before);
        EXPECT_FALSE(store_.get("/dpdk-fwd/ipam/v1/handles/" + pod_handle("x")));
    }
    expect_clean();
}

TEST_F(AllocatorTest, DualStackHalfFailureTakesNothing) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.add_pool(make_pool("p6", "fd00::/126", 126));
    alloc_.assign(request("fill", "n1", 0, 4));
    size_t before = allocated();
    EXPECT_THROW(alloc_.assign(request("dual", "n1", 1, 1)), ExhaustedError);
    EXPECT_EQ(allocated(), before);
    EXPECT_TRUE(alloc_.addresses(pod_handle("dual")).empty());
    alloc_.release_handle(pod_handle("fill"));
    auto a = alloc_.assign(request("dual", "n1", 1, 1));
    EXPECT_EQ(a.v4.size(), 1u);
    EXPECT_EQ(a.v6.size(), 1u);
    expect_clean();
}

TEST_F(AllocatorTest, NoPoolForFamilyIsAnError) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    try {
        alloc_.assign(request("x", "n1", 1, 1));
        FAIL();
    } catch (const ExhaustedError &e) {
        EXPECT_EQ(e.family(), Family::kIp6);
        EXPECT_NE(std::string(e.what()).find("IPv6"), std::string::npos);
    }
    EXPECT_EQ(allocated(), 0u);
}

TEST_F(AllocatorTest, PerRequestPoolChoiceByNameOrCidr) {
    alloc_.add_pool(make_pool("a4", "10.0.0.0/24"));
    alloc_.add_pool(make_pool("b4", "10.1.0.0/24"));
    alloc_.add_pool(make_pool("a6", "fd00:a::/64"));
    alloc_.add_pool(make_pool("b6", "fd00:b::/64"));
    auto r = request("c", "n1", 1, 1);
    r.pools4 = {"b4"};
    r.pools6 = {"fd00:b::/64"};
    auto a = alloc_.assign(r);
    EXPECT_TRUE(cidr("10.1.0.0/24").contains(a.v4[0]));
    EXPECT_TRUE(cidr("fd00:b::/64").contains(a.v6[0]));
    r = request("d", "n1", 1, 0);
    r.pools4 = {"nope"};
    EXPECT_THROW(alloc_.assign(r), IpamError);
    r.pools4 = {"a6"};
    EXPECT_THROW(alloc_.assign(r), IpamError);
    auto dis = make_pool("b4", "10.1.0.0/24");
    dis.disabled = true;
    alloc_.update_pool(dis);
    r.pools4 = {"b4"};
    EXPECT_THROW(alloc_.assign(r), IpamError);
    // Without a choice: only enabled pools.
    for (int i = 0; i < 5; ++i) {
        auto x = alloc_.assign(request("e" + std::to_string(i), "n1", 1, 0));
        EXPECT_TRUE(cidr("10.0.0.0/24").contains(x.v4[0]));
    }
    expect_clean();
}

TEST_F(AllocatorTest, NodeSelectorAndAllowedUses) {
    auto za = make_pool("zone-a", "10.0.0.0/24");
    za.node_selector = "zone == 'a'";
    alloc_.add_pool(za);
    auto tun = make_pool("tunnels", "10.9.0.0/24");
    tun.allowed_uses = {AllowedUse::kTunnel};
    alloc_.add_pool(tun);
    auto r = request("c", "n1", 1, 0);
    r.node_labels = {{"zone", "a"}};
    EXPECT_TRUE(cidr("10.0.0.0/24").contains(alloc_.assign(r).v4[0]));
    r = request("d", "n2", 1, 0);
    r.node_labels = {{"zone", "b"}};
    EXPECT_THROW(alloc_.assign(r), ExhaustedError);
    // A requested pool that does not select the node is not used either.
    r.pools4 = {"zone-a"};
    EXPECT_THROW(alloc_.assign(r), ExhaustedError);
    // Tunnel addresses come from pools allowing Tunnel use.
    auto t = alloc_.assign_tunnel_address("n2", {{"zone", "b"}}, Family::kIp4);
    EXPECT_TRUE(cidr("10.9.0.0/24").contains(t));
    expect_clean();
}

TEST_F(AllocatorTest, TunnelAddressesPerNodeBothFamilies) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.add_pool(make_pool("p6", "fd00::/64"));
    auto t4 = alloc_.assign_tunnel_address("n1", {}, Family::kIp4);
    auto t6 = alloc_.assign_tunnel_address("n1", {}, Family::kIp6);
    EXPECT_EQ(t4.family(), Family::kIp4);
    EXPECT_EQ(t6.family(), Family::kIp6);
    // Idempotent.
    EXPECT_EQ(alloc_.assign_tunnel_address("n1", {}, Family::kIp4), t4);
    EXPECT_EQ(alloc_.assign_tunnel_address("n1", {}, Family::kIp6), t6);
    EXPECT_EQ(alloc_.addresses("vxlan-tunnel-addr-n1"), std::vector<net::IpAddr>{t4});
    EXPECT_EQ(alloc_.addresses("vxlan-v6-tunnel-addr-n1"), std::vector<net::IpAddr>{t6});
    EXPECT_NE(alloc_.assign_tunnel_address("n2", {}, Family::kIp4), t4);
    expect_clean();
}

TEST_F(AllocatorTest, FixedAddresses) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.add_pool(make_pool("p6", "fd00::/64"));
    alloc_.add_reservation({"r", {cidr("10.0.0.200/32")}});
    auto r = request("c", "n1", 0, 0);
    r.fixed = {ip("10.0.0.77"), ip("fd00::77")};
    auto a = alloc_.assign(r);
    EXPECT_EQ(a.v4, std::vector<net::IpAddr>{ip("10.0.0.77")});
    EXPECT_EQ(a.v6, std::vector<net::IpAddr>{ip("fd00::77")});
    EXPECT_EQ(alloc_.confirmed_blocks("n1").size(), 2u);
    size_t before = allocated();
    auto again = request("d", "n2", 0, 0);
    again.fixed = {ip("10.0.0.78"), ip("10.0.0.77")};
    try {
        alloc_.assign(again);
        FAIL();
    } catch (const IpamError &e) {
        EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
    }
    EXPECT_EQ(allocated(), before);  // 10.0.0.78 was given back
    again.fixed = {ip("10.0.0.200")};
    EXPECT_THROW(alloc_.assign(again), IpamError);
    again.fixed = {ip("192.168.0.1")};
    EXPECT_THROW(alloc_.assign(again), IpamError);
    EXPECT_EQ(allocated(), before);
    // n2 borrows inside n1's block.
    again.fixed = {ip("10.0.0.78")};
    alloc_.assign(again);
    EXPECT_EQ(alloc_.node_routes("n2").borrowed, std::vector<net::IpAddr>{ip("10.0.0.78")});
    expect_clean();
}

TEST_F(AllocatorTest, FixedAddressInOtherNodesBlockRefusedUnderStrictAffinity) {
    alloc_.set_config({true, 0});
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.assign(request("c", "n1", 1, 0));
    auto r = request("d", "n2", 0, 0);
    r.fixed = {ip("10.0.0.5")};
    EXPECT_THROW(alloc_.assign(r), IpamError);
}

TEST_F(AllocatorTest, ReservedRangesNeverHandedOut) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/28", 28));
    alloc_.add_pool(make_pool("p6", "fd00::/124", 124));
    alloc_.add_reservation({"low", {cidr("10.0.0.0/30"), cidr("fd00::/126")}});
    std::set<net::IpAddr> got;
    for (int i = 0; i < 12; ++i) {
        auto a = alloc_.assign(request("c" + std::to_string(i), "n1", 1, 1));
        got.insert(a.v4[0]);
        got.insert(a.v6[0]);
    }
    for (const auto &a : got) {
        EXPECT_FALSE(cidr("10.0.0.0/30").contains(a) || cidr("fd00::/126").contains(a)) << a.str();
    }
    EXPECT_EQ(got.size(), 24u);
    EXPECT_THROW(alloc_.assign(request("x", "n1", 1, 0)), ExhaustedError);
    EXPECT_THROW(alloc_.assign(request("x", "n1", 0, 1)), ExhaustedError);
    alloc_.delete_reservation("low");
    EXPECT_NO_THROW(alloc_.assign(request("x", "n1", 1, 1)));
    expect_clean();
}

TEST_F(AllocatorTest, ReleaseByHandleAndByAddress) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.add_pool(make_pool("p6", "fd00::/64"));
    auto a = alloc_.assign(request("c", "n1", 2, 2));
    auto b = alloc_.assign(request("d", "n1", 1, 1));
    EXPECT_TRUE(alloc_.release_address(a.v4[0]));
    EXPECT_FALSE(alloc_.release_address(a.v4[0]));
    EXPECT_EQ(alloc_.addresses(pod_handle("c")).size(), 3u);
    expect_clean();
    EXPECT_EQ(alloc_.release_handle(pod_handle("c")), 3);
    EXPECT_EQ(alloc_.release_handle(pod_handle("c")), 0);
    EXPECT_FALSE(store_.get("/dpdk-fwd/ipam/v1/handles/" + pod_handle("c")));
    EXPECT_EQ(allocated(), 2u);
    EXPECT_TRUE(alloc_.release_address(b.v6[0]));
    EXPECT_TRUE(alloc_.release_address(b.v4[0]));
    EXPECT_FALSE(store_.get("/dpdk-fwd/ipam/v1/handles/" + pod_handle("d")));
    EXPECT_EQ(allocated(), 0u);
    // Released addresses go to the back of the free list.
    auto c = alloc_.assign(request("e", "n1", 1, 0));
    EXPECT_NE(c.v4[0], a.v4[0]);
    expect_clean();
}

TEST_F(AllocatorTest, EmptyBlocksGivenBackAfterGracePeriod) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.add_pool(make_pool("p6", "fd00::/64"));
    alloc_.assign(request("c", "n1", 1, 1));
    advance(120'000);
    EXPECT_EQ(alloc_.release_empty_blocks("n1"), 0);  // in use
    alloc_.release_handle(pod_handle("c"));
    advance(30'000);
    EXPECT_EQ(alloc_.release_empty_blocks("n1"), 0);  // grace period
    advance(30'000);
    EXPECT_EQ(alloc_.release_empty_blocks("n1"), 2);
    EXPECT_TRUE(alloc_.blocks().empty());
    EXPECT_TRUE(alloc_.confirmed_blocks("n1").empty());
    EXPECT_TRUE(store_.list("/dpdk-fwd/ipam/v1/affinity/").empty());
    expect_clean();
}

// Records every transaction, to see the order of the writes.
class RecordingStore : public Store {
  public:
    explicit RecordingStore(Store &s) : s_(s) {}
    std::optional<KeyValue> get(const std::string &k) override {
        ++gets[k];
        return s_.get(k);
    }
    std::vector<KeyValue> list(const std::string &p) override {
        ++lists[p];
        return s_.list(p);
    }
    std::vector<KeyValue> list_keys(const std::string &p) override { return s_.list_keys(p); }
    int64_t revision() override { return s_.revision(); }
    bool txn(const std::vector<Compare> &c, const std::vector<Operation> &ops) override {
        ++txns;
        if (auto f = std::exchange(before_next_txn, nullptr)) {
            f();
        }
        if (fail_next > 0) {
            --fail_next;
            return false;
        }
        bool ok = s_.txn(c, ops);
        if (ok) {
            for (const auto &op : ops) {
                log.push_back(
                    (op.kind == Operation::Kind::kPut ? "put " : "del ") + op.key +
                    (op.kind == Operation::Kind::kPut &&
                             op.key.find("affinity/") != std::string::npos
                         ? " " + nlohmann::json::parse(op.value)["state"].get<std::string>()
                         : ""));
            }
        }
        return ok;
    }
    std::string describe() const override { return "recording"; }
    // Reads of block values (what a scan must not repeat).
    int block_reads() const {
        int n = 0;
        for (const auto &[k, c] : gets) {
            n += k.find("/blocks/") != std::string::npos ? c : 0;
        }
        for (const auto &[p, c] : lists) {
            n += p.find("/blocks/") != std::string::npos ? 1000 * c : 0;
        }
        return n;
    }
    void clear() {
        log.clear();
        gets.clear();
        lists.clear();
        txns = 0;
    }
    std::vector<std::string> log;
    std::map<std::string, int> gets, lists;
    int txns = 0;
    int fail_next = 0;
    std::function<void()> before_next_txn;  // once, e.g. another writer

  private:
    Store &s_;
};

TEST_F(AllocatorTest, ClaimIsTwoPhaseAndReleaseMarksPendingDeletionFirst) {
    RecordingStore rec(store_);
    Allocator a(rec, opts());
    a.add_pool(make_pool("p6", "fd00::/64"));
    rec.log.clear();
    ASSERT_TRUE(a.claim_block("n1", cidr("fd00::40/122")));
    const std::string aff = "/dpdk-fwd/ipam/v1/affinity/n1/fd00::40-122";
    const std::string blk = "/dpdk-fwd/ipam/v1/blocks/fd00::40-122";
    EXPECT_EQ(rec.log, (std::vector<std::string>{"put " + aff + " pending", "put " + blk,
                                                 "put " + aff + " confirmed"}));
    rec.log.clear();
    ASSERT_TRUE(a.release_block_affinity("n1", cidr("fd00::40/122")));
    EXPECT_EQ(rec.log, (std::vector<std::string>{"put " + aff + " pendingDeletion", "del " + aff,
                                                 "del " + blk}));
    // A block of no pool cannot be claimed.
    EXPECT_THROW(a.claim_block("n1", cidr("fd01::/122")), IpamError);
    EXPECT_THROW(a.claim_block("n1", cidr("fd00::/120")), IpamError);
}

TEST_F(AllocatorTest, ConflictsAreRetriedThenAnError) {
    RecordingStore rec(store_);
    AllocatorOptions o = opts();
    o.max_retries = 5;
    Allocator a(rec, o);
    a.add_pool(make_pool("p4", "10.0.0.0/24"));
    a.assign(request("c", "n1", 1, 0));
    rec.fail_next = 3;
    EXPECT_EQ(a.assign(request("d", "n1", 1, 0)).v4.size(), 1u);
    rec.fail_next = 1000;
    EXPECT_THROW(a.assign(request("e", "n1", 1, 0)), ConflictError);
    rec.fail_next = 0;
    EXPECT_TRUE(a.addresses(pod_handle("e")).empty());
    expect_clean();
}

TEST_F(AllocatorTest, DualStackAssignIsOneTransaction) {
    RecordingStore rec(store_);
    Allocator a(rec, opts());
    a.add_pool(make_pool("p4", "10.0.0.0/24"));
    a.add_pool(make_pool("p6", "fd00::/64"));
    a.assign(request("c0", "n1", 1, 1));  // claims a block per family
    rec.clear();
    auto got = a.assign(request("c1", "n1", 2, 1));
    EXPECT_EQ(rec.txns, 1);
    const std::string p = "/dpdk-fwd/ipam/v1/";
    EXPECT_EQ(rec.log, (std::vector<std::string>{"put " + p + "handles/" + pod_handle("c1"),
                                                 "put " + p + "blocks/10.0.0.0-26",
                                                 "put " + p + "blocks/fd00::-122"}));
    EXPECT_EQ(alloc_.addresses(pod_handle("c1")).size(), 3u);
    // To a handle that exists: its counts are read and added to.
    rec.clear();
    a.assign(request("c1", "n1", 0, 1));
    EXPECT_EQ(rec.txns, 2);  // "absent" failed, then on the handle as read
    EXPECT_EQ(alloc_.addresses(pod_handle("c1")).size(), 4u);
    expect_clean();
    EXPECT_EQ(alloc_.release_handle(pod_handle("c1")), 4);
}

TEST_F(AllocatorTest, FullBlocksAreNotReadAgain) {
    RecordingStore rec(store_);
    Allocator a(rec, opts());
    a.set_config({false, 100});
    a.add_pool(make_pool("p4", "10.0.0.0/24", 30));  // 64 blocks of 4
    for (int i = 0; i < 40; ++i) {
        a.assign(request("c" + std::to_string(i), "n1", 1, 0));
    }
    ASSERT_EQ(a.confirmed_blocks("n1").size(), 10u);
    // The block last used has room: the only block read.
    a.release_handle(pod_handle("c39"));
    rec.clear();
    a.assign(request("x", "n1", 1, 0));
    EXPECT_EQ(rec.block_reads(), 1);
    // Full: the scan skips the nine full blocks it saw at the same revision,
    // claims a new one and reads only that.
    rec.clear();
    a.assign(request("y", "n1", 1, 0));
    EXPECT_LE(rec.block_reads(), 3) << "reads of full blocks";
    EXPECT_EQ(a.confirmed_blocks("n1").size(), 11u);
    // A freed slot in an old block changes its revision: found again.
    alloc_.release_handle(pod_handle("c0"));
    for (int i = 0; i < 3; ++i) {
        a.assign(request("z" + std::to_string(i), "n1", 1, 0));  // fills the new block
    }
    auto z = a.assign(request("z3", "n1", 1, 0));
    EXPECT_TRUE(cidr("10.0.0.0/30").contains(z.v4[0])) << z.v4[0].str();
    EXPECT_EQ(a.confirmed_blocks("n1").size(), 11u);
    expect_clean();
}

TEST_F(AllocatorTest, TwoAllocatorsOfANodeDriftApartAfterARace) {
    RecordingStore rec(store_);
    Allocator a(rec, opts()), b(store_, opts());
    a.add_pool(make_pool("p4", "10.0.0.0/24"));
    a.assign(request("a0", "n1", 1, 0));
    b.assign(request("b0", "n1", 1, 0));  // both on 10.0.0.0/26
    // b takes a slot between a's read and a's write: a loses the race, and
    // rather than race b again it claims a block of its own.
    rec.clear();
    rec.before_next_txn = [&] { b.assign(request("b1", "n1", 1, 0)); };
    auto a1 = a.assign(request("a1", "n1", 1, 0));
    EXPECT_TRUE(cidr("10.0.0.64/26").contains(a1.v4[0])) << a1.v4[0].str();
    EXPECT_EQ(a.confirmed_blocks("n1").size(), 2u);
    // From then on each keeps to its block: one transaction per assign.
    for (int i = 2; i < 10; ++i) {
        rec.clear();
        auto x = a.assign(request("a" + std::to_string(i), "n1", 1, 0));
        EXPECT_EQ(rec.txns, 1);
        EXPECT_TRUE(cidr("10.0.0.64/26").contains(x.v4[0])) << x.v4[0].str();
        auto y = b.assign(request("b" + std::to_string(i), "n1", 1, 0));
        EXPECT_TRUE(cidr("10.0.0.0/26").contains(y.v4[0])) << y.v4[0].str();
    }
    expect_clean();
}

TEST_F(AllocatorTest, NothingLandsInABlockBeingGivenUp) {
    Allocator a(store_, opts());
    a.add_pool(make_pool("p4", "10.0.0.0/24"));
    a.assign(request("c0", "n1", 1, 0));  // a's next try: 10.0.0.0/26
    // Another instance starts giving the block up (phase 1 of a release).
    const std::string akey = "/dpdk-fwd/ipam/v1/affinity/n1/10.0.0.0-26";
    auto kv = *store_.get(akey);
    auto aff = nlohmann::json::parse(kv.value).get<Affinity>();
    aff.state = AffinityState::kPendingDeletion;
    ASSERT_TRUE(store_.txn({{akey, kv.mod_revision}},
                           {{Operation::Kind::kPut, akey, nlohmann::json(aff).dump()}}));
    auto got = a.assign(request("c1", "n1", 1, 0));
    EXPECT_FALSE(cidr("10.0.0.0/26").contains(got.v4[0])) << got.v4[0].str();
    EXPECT_EQ(a.confirmed_blocks("n1"), std::vector<Cidr>{cidr("10.0.0.64/26")});
}

TEST_F(AllocatorTest, ReleasedNodeBlockIsClaimedAgainBeforeAnyOther) {
    Allocator a(store_, opts());
    a.add_pool(make_pool("p6", "fd00::/64"));
    auto first = a.assign(request("c0", "n1", 0, 1));
    alloc_.release_node("n1");  // the block stays, unaffine, with c0 in it
    auto again = a.assign(request("c1", "n1", 0, 1));
    EXPECT_TRUE(cidr("fd00::/122").contains(again.v6[0]));
    EXPECT_EQ(a.confirmed_blocks("n1"), std::vector<Cidr>{cidr("fd00::/122")});
    expect_clean();
}

TEST_F(AllocatorTest, NonEmptyBlockReleaseKeepsAllocationsAndDropsAffinity) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    auto a = alloc_.assign(request("c", "n1", 1, 0));
    EXPECT_FALSE(alloc_.release_block_affinity("n1", cidr("10.0.0.0/26"), true));
    EXPECT_EQ(alloc_.confirmed_blocks("n1").size(), 1u);
    alloc_.release_node("n1");
    EXPECT_TRUE(alloc_.confirmed_blocks("n1").empty());
    auto bs = alloc_.blocks();
    ASSERT_EQ(bs.size(), 1u);
    EXPECT_FALSE(bs[0].node);
    EXPECT_EQ(bs[0].used, 1);
    expect_clean();
    // Another node may claim the unaffine block.
    auto b = alloc_.assign(request("d", "n2", 1, 0));
    EXPECT_TRUE(cidr("10.0.0.0/26").contains(b.v4[0]));
    EXPECT_EQ(alloc_.confirmed_blocks("n2"), std::vector<Cidr>{cidr("10.0.0.0/26")});
    alloc_.release_address(a.v4[0]);
    expect_clean();
}

TEST_F(AllocatorTest, UnaffineBlockDeletedWhenItsLastAddressGoes) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    auto a = alloc_.assign(request("c", "n1", 1, 0));
    alloc_.release_node("n1");
    alloc_.release_handle(pod_handle("c"));
    EXPECT_TRUE(alloc_.blocks().empty());
    expect_clean();
}

TEST_F(AllocatorTest, PendingClaimCountsAsAbsentAndStaleOnesAreTakenOver) {
    alloc_.set_config({true, 0});
    alloc_.add_pool(make_pool("p4", "10.0.0.0/26"));  // one block
    // n2 crashed between writing the block and confirming its claim.
    Affinity pend{"n2", cidr("10.0.0.0/26"), AffinityState::kPending, now_.load()};
    ASSERT_TRUE(
        store_.txn({}, {{Operation::Kind::kPut, "/dpdk-fwd/ipam/v1/affinity/n2/10.0.0.0-26",
                         nlohmann::json(pend).dump()},
                        {Operation::Kind::kPut, "/dpdk-fwd/ipam/v1/blocks/10.0.0.0-26",
                         nlohmann::json(Block::make(cidr("10.0.0.0/26"), "n2", 0)).dump()}}));
    EXPECT_TRUE(alloc_.confirmed_blocks("n2").empty());
    EXPECT_TRUE(alloc_.node_routes("n2").blocks.empty());
    // Not stale yet: n1 may not take it.
    EXPECT_THROW(alloc_.assign(request("c", "n1", 1, 0)), ExhaustedError);
    advance(60'000);
    EXPECT_EQ(alloc_.check().size(), 1u);  // stale pending claim
    auto a = alloc_.assign(request("c", "n1", 1, 0));
    EXPECT_TRUE(cidr("10.0.0.0/26").contains(a.v4[0]));
    EXPECT_EQ(alloc_.confirmed_blocks("n1"), std::vector<Cidr>{cidr("10.0.0.0/26")});
    EXPECT_FALSE(store_.get("/dpdk-fwd/ipam/v1/affinity/n2/10.0.0.0-26"));
    expect_clean();
}

TEST_F(AllocatorTest, ANodeResumesItsOwnPendingClaim) {
    alloc_.add_pool(make_pool("p6", "fd00::/122", 122));
    Affinity pend{"n2", cidr("fd00::/122"), AffinityState::kPending, now_.load()};
    ASSERT_TRUE(store_.txn({}, {{Operation::Kind::kPut, "/dpdk-fwd/ipam/v1/affinity/n2/fd00::-122",
                                 nlohmann::json(pend).dump()}}));
    auto a = alloc_.assign(request("c", "n2", 0, 1));
    EXPECT_EQ(a.v6[0].str(), "fd00::");
    EXPECT_EQ(alloc_.confirmed_blocks("n2"), std::vector<Cidr>{cidr("fd00::/122")});
    expect_clean();
}

TEST_F(AllocatorTest, PoolsThroughTheAllocator) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/16"));
    EXPECT_THROW(alloc_.add_pool(make_pool("q4", "10.0.1.0/24")), PoolError);
    EXPECT_THROW(alloc_.add_pool(make_pool("p4", "10.1.0.0/16")), PoolError);
    EXPECT_THROW(alloc_.update_pool(make_pool("p4", "10.0.0.0/16", 28)), PoolError);
    EXPECT_THROW(alloc_.update_pool(make_pool("p4", "10.0.0.0/15")), PoolError);
    auto p = make_pool("p4", "10.0.0.0/16");
    p.nat_outgoing = true;
    alloc_.update_pool(p);
    EXPECT_TRUE(alloc_.pool("p4")->nat_outgoing);
    alloc_.assign(request("c", "n1", 1, 0));
    EXPECT_THROW(alloc_.delete_pool("p4"), PoolError);
    alloc_.release_handle(pod_handle("c"));
    alloc_.delete_pool("p4");
    EXPECT_TRUE(alloc_.pools().empty());
    EXPECT_TRUE(store_.list("/dpdk-fwd/ipam/v1/").size() == 0);
}

TEST_F(AllocatorTest, QueryUsage) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.add_pool(make_pool("p6", "fd00::/64"));
    alloc_.assign(request("c", "n1", 3, 1));
    alloc_.assign(request("d", "n2", 1, 0));
    auto u = alloc_.pool_usage();
    ASSERT_EQ(u.size(), 2u);
    EXPECT_EQ(u[0].pool.name, "p4");
    EXPECT_EQ(u[0].blocks, 2);
    EXPECT_EQ(u[0].used, 4u);
    EXPECT_EQ(u[0].free_in_blocks, 124u);
    EXPECT_EQ(u[1].used, 1u);
}

TEST_F(AllocatorTest, CheckFindsEveryKindOfProblem) {
    alloc_.add_pool(make_pool("p4", "10.0.0.0/24"));
    alloc_.assign(request("c", "n1", 1, 0));
    expect_clean();
    auto put = [&](const std::string &k, const nlohmann::json &j) {
        ASSERT_TRUE(store_.txn({}, {{Operation::Kind::kPut, "/dpdk-fwd/ipam/v1/" + k, j.dump()}}));
    };
    // A handle counting an address no block holds.
    put("handles/leaked", Handle{"leaked", {{"10.0.0.0/26", 1}}});
    // An allocation outside every pool, with its handle.
    auto out = Block::make(cidr("192.168.0.0/30"), std::nullopt, 0);
    out.allocations[0] = Attributes{"h-out", "", "", "n1", ""};
    out.unallocated.erase(out.unallocated.begin());
    put("blocks/192.168.0.0-30", out);
    put("handles/h-out", Handle{"h-out", {{"192.168.0.0/30", 1}}});
    // A block overlapping another, its address doubled, with no handle record.
    auto dbl = Block::make(cidr("10.0.0.0/28"), std::nullopt, 0);
    dbl.allocations[0] = Attributes{"h-dbl", "", "", "n1", ""};
    dbl.unallocated.erase(dbl.unallocated.begin());
    put("blocks/10.0.0.0-28", dbl);
    // A confirmed affinity with no block; a block affine to a node with no claim.
    put("affinity/n3/10.0.0.64-26",
        Affinity{"n3", cidr("10.0.0.64/26"), AffinityState::kConfirmed, 0});
    put("blocks/10.0.0.128-26", Block::make(cidr("10.0.0.128/26"), "n4", 0));
    std::multiset<Finding::Kind> kinds;
    for (const auto &f : alloc_.check()) {
        kinds.insert(f.kind);
    }
    EXPECT_EQ(kinds.count(Finding::Kind::kLeakedHandle), 1u);
    EXPECT_EQ(kinds.count(Finding::Kind::kOutsidePool), 1u);
    EXPECT_EQ(kinds.count(Finding::Kind::kMissingHandle), 1u);
    EXPECT_EQ(kinds.count(Finding::Kind::kDoubledAddress), 2u);  // the address, the overlap
    EXPECT_EQ(kinds.count(Finding::Kind::kAffinityMismatch), 2u);
}

}  // namespace
}  // namespace fwd::ipam::test

namespace fwd::ipam::test {
namespace {

std::vector<std::string> pool_names(Allocator &a) {
    std::vector<std::string> v;
    for (const auto &p : a.pools()) {
        v.push_back(p.name + "=" + p.cidr.str() + (p.nat_outgoing ? "+nat" : ""));
    }
    return v;
}

// fwdctl apply / delete -f: one transaction, all or nothing.
TEST_F(AllocatorTest, ApplyWritesPoolsAndConfigInOneTransaction) {
    Allocator::PoolChanges c;
    c.put = {make_pool("a4", "10.1.0.0/16"), make_pool("a6", "fd00:1::/64")};
    IpamConfig cfg;
    cfg.strict_affinity = true;
    c.config = cfg;
    int64_t rev0 = store_.revision();
    alloc_.apply(c);
    EXPECT_EQ(store_.revision(), rev0 + 1) << "one transaction";
    EXPECT_EQ(pool_names(alloc_), (std::vector<std::string>{"a4=10.1.0.0/16", "a6=fd00:1::/64"}));
    EXPECT_TRUE(alloc_.config().strict_affinity);

    // An update and a new pool; the unchanged one stays.
    IpPool upd = make_pool("a4", "10.1.0.0/16");
    upd.nat_outgoing = true;
    alloc_.apply({{upd, make_pool("b4", "10.2.0.0/16")}, {}, std::nullopt});
    EXPECT_EQ(pool_names(alloc_),
              (std::vector<std::string>{"a4=10.1.0.0/16+nat", "a6=fd00:1::/64", "b4=10.2.0.0/16"}));
}

TEST_F(AllocatorTest, ApplyWithOneBadChangeWritesNothing) {
    alloc_.add_pool(make_pool("a4", "10.1.0.0/16"));
    const auto before = pool_names(alloc_);
    int64_t rev0 = store_.revision();
    IpamConfig cfg;
    cfg.max_blocks_per_host = 3;
    // Two new pools overlapping each other.
    EXPECT_THROW(
        alloc_.apply({{make_pool("x", "10.9.0.0/16"), make_pool("y", "10.9.128.0/17")}, {}, cfg}),
        PoolError);
    // A good new pool with an update that moves a cidr.
    EXPECT_THROW(
        alloc_.apply({{make_pool("z", "10.8.0.0/16"), make_pool("a4", "10.3.0.0/16")}, {}, cfg}),
        PoolError);
    // A new pool overlapping an existing one.
    EXPECT_THROW(alloc_.apply({{make_pool("w", "10.1.128.0/17")}, {}, cfg}), PoolError);
    // Removing a pool that does not exist.
    EXPECT_THROW(alloc_.apply({{make_pool("v", "10.7.0.0/16")}, {"nope"}, cfg}), PoolError);
    EXPECT_EQ(store_.revision(), rev0);
    EXPECT_EQ(pool_names(alloc_), before);
    EXPECT_EQ(alloc_.config().max_blocks_per_host, IpamConfig{}.max_blocks_per_host);
}

TEST_F(AllocatorTest, ApplyRemovesAndReplacesInOneGo) {
    alloc_.add_pool(make_pool("old", "10.1.0.0/16"));
    alloc_.add_pool(make_pool("busy", "fd00:2::/64"));
    alloc_.assign(request("c1", "n1", 0, 1));
    ASSERT_TRUE(alloc_.claim_block("n1", cidr("10.1.0.64/26")));
    // A pool with addresses cannot go, and then nothing else happens either.
    EXPECT_THROW(alloc_.apply({{make_pool("new", "10.5.0.0/16")}, {"busy"}, std::nullopt}),
                 PoolError);
    EXPECT_FALSE(alloc_.pool("new"));
    // The old pool (its empty block and affinity too) replaced by one overlapping it.
    alloc_.apply({{make_pool("new", "10.1.0.0/17")}, {"old"}, std::nullopt});
    EXPECT_FALSE(alloc_.pool("old"));
    ASSERT_TRUE(alloc_.pool("new"));
    for (const auto &b : alloc_.blocks()) {
        EXPECT_FALSE(b.cidr.is_v4()) << b.cidr.str() << " of the removed pool is left";
    }
    expect_clean();
}

}  // namespace
}  // namespace fwd::ipam::test
