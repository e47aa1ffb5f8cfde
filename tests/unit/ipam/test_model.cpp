#include <gtest/gtest.h>

#include "fwd/ipam/model.hpp"

namespace fwd::ipam {
namespace {

IpPool pool(const std::string &name, const std::string &cidr, int bs = 0) {
    IpPool p;
    p.name = name;
    p.cidr = *Cidr::parse(cidr);
    p.block_size = bs;
    return p.normalized();
}

// The field a validation error names, or "" when valid.
std::string bad_field(const IpPool &p, const std::vector<IpPool> &others = {}) {
    try {
        validate_pool(p, others);
    } catch (const PoolError &e) {
        EXPECT_NE(std::string(e.what()).find(p.name), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(e.field()), std::string::npos) << e.what();
        return e.field();
    }
    return "";
}

TEST(Cidr, ArithmeticBothFamilies) {
    auto c4 = *Cidr::parse("10.1.0.0/16");
    EXPECT_EQ(c4.size(), 65536u);
    EXPECT_EQ(c4.nth(257).str(), "10.1.1.1");
    EXPECT_EQ(static_cast<uint64_t>(c4.index_of(*net::IpAddr::parse("10.1.1.1"))), 257u);
    EXPECT_EQ(c4.subnet(26, 3).str(), "10.1.0.192/26");
    EXPECT_EQ(c4.key(), "10.1.0.0-16");
    auto c6 = *Cidr::parse("fd00:1::/64");
    EXPECT_EQ(c6.size(), UINT64_MAX);
    EXPECT_EQ(c6.nth(0x101).str(), "fd00:1::101");
    EXPECT_EQ(c6.subnet(122, 2).str(), "fd00:1::80/122");
    EXPECT_TRUE(c6.contains(*Cidr::parse("fd00:1::80/122")));
    EXPECT_FALSE(c6.contains(*net::IpAddr::parse("10.1.0.1")));
    EXPECT_TRUE(c4.overlaps(*Cidr::parse("10.0.0.0/8")));
    EXPECT_FALSE(c4.overlaps(*Cidr::parse("10.2.0.0/16")));
    EXPECT_FALSE(Cidr::parse("10.1.0.1/16"));
    EXPECT_EQ(Cidr::containing(*net::IpAddr::parse("fd00::1:2"), 122).str(), "fd00::1:0/122");
}

TEST(PoolValidation, DefaultsPerFamily) {
    EXPECT_EQ(pool("a", "10.0.0.0/16").block_size, 26);
    EXPECT_EQ(pool("b", "fd00::/64").block_size, 122);
    EXPECT_EQ(pool("a", "10.0.0.0/16").node_selector, "all()");
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/16")), "");
    EXPECT_EQ(bad_field(pool("b", "fd00::/64")), "");
}

TEST(PoolValidation, BlockSizeRanges) {
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/8", 19)), "blockSize");
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/8", 20)), "");
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/8", 32)), "");
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/8", 33)), "blockSize");
    EXPECT_EQ(bad_field(pool("b", "fd00::/48", 115)), "blockSize");
    EXPECT_EQ(bad_field(pool("b", "fd00::/48", 116)), "");
    EXPECT_EQ(bad_field(pool("b", "fd00::/48", 128)), "");
    EXPECT_EQ(bad_field(pool("b", "fd00::/48", 129)), "blockSize");
    // IPv4 sizes on IPv6 and back.
    EXPECT_EQ(bad_field(pool("b", "fd00::/48", 26)), "blockSize");
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/8", 122)), "blockSize");
}

TEST(PoolValidation, BlockSizeNotShorterThanPool) {
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/28")), "blockSize");
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/28", 28)), "");
    EXPECT_EQ(bad_field(pool("b", "fd00::/124")), "blockSize");
    EXPECT_EQ(bad_field(pool("b", "fd00::/124", 126)), "");
}

TEST(PoolValidation, LinkLocalRefused) {
    EXPECT_EQ(bad_field(pool("a", "169.254.0.0/16")), "cidr");
    EXPECT_EQ(bad_field(pool("a", "169.254.10.0/24")), "cidr");
    EXPECT_EQ(bad_field(pool("a", "169.0.0.0/8")), "cidr");
    EXPECT_EQ(bad_field(pool("b", "fe80::/64")), "cidr");
    EXPECT_EQ(bad_field(pool("b", "fe00::/7")), "cidr");
    EXPECT_EQ(bad_field(pool("b", "fec0::/64")), "");
}

TEST(PoolValidation, HostBitsRefusedOnDecode) {
    nlohmann::json j{{"name", "a"}, {"cidr", "10.0.0.1/16"}};
    try {
        j.get<IpPool>();
        FAIL();
    } catch (const PoolError &e) {
        EXPECT_EQ(e.pool(), "a");
        EXPECT_EQ(e.field(), "cidr");
    }
}

TEST(PoolValidation, OverlapWithOtherPools) {
    std::vector<IpPool> others{pool("x", "10.0.0.0/16"), pool("y", "fd00::/64")};
    EXPECT_EQ(bad_field(pool("a", "10.0.128.0/24"), others), "cidr");
    EXPECT_EQ(bad_field(pool("a", "10.0.0.0/8"), others), "cidr");
    EXPECT_EQ(bad_field(pool("a", "10.1.0.0/16"), others), "");
    EXPECT_EQ(bad_field(pool("b", "fd00::/56"), others), "cidr");
    EXPECT_EQ(bad_field(pool("b", "fd01::/64"), others), "");
    // The same name is the pool itself (an update).
    EXPECT_EQ(bad_field(pool("x", "10.0.0.0/16"), others), "");
}

TEST(PoolValidation, ModesSelectorUses) {
    auto p = pool("b", "fd00::/64");
    p.ipip_mode = EncapMode::kAlways;
    EXPECT_EQ(bad_field(p), "ipipMode");
    auto q = pool("a", "10.0.0.0/16");
    q.ipip_mode = EncapMode::kAlways;
    EXPECT_EQ(bad_field(q), "");
    q.vxlan_mode = EncapMode::kAlways;
    EXPECT_EQ(bad_field(q), "vxlanMode");
    q = pool("a", "10.0.0.0/16");
    q.node_selector = "zone == ";
    EXPECT_EQ(bad_field(q), "nodeSelector");
    q.node_selector = "zone == 'a'";
    EXPECT_EQ(bad_field(q), "");
    q.allowed_uses = {AllowedUse::kLoadBalancer, AllowedUse::kWorkload};
    EXPECT_EQ(bad_field(q), "allowedUses");
    q.allowed_uses = {AllowedUse::kLoadBalancer};
    EXPECT_EQ(bad_field(q), "");
    q.name = "Bad_Name";
    EXPECT_EQ(bad_field(q), "name");
}

TEST(PoolValidation, CidrAndBlockSizeImmutable) {
    auto old = pool("a", "10.0.0.0/16");
    auto nu = old;
    nu.nat_outgoing = true;
    nu.disabled = true;
    EXPECT_NO_THROW(validate_pool_update(old, nu));
    nu.cidr = *Cidr::parse("10.0.0.0/15");
    try {
        validate_pool_update(old, nu);
        FAIL();
    } catch (const PoolError &e) {
        EXPECT_EQ(e.field(), "cidr");
    }
    nu = old;
    nu.block_size = 27;
    try {
        validate_pool_update(old, nu);
        FAIL();
    } catch (const PoolError &e) {
        EXPECT_EQ(e.field(), "blockSize");
    }
}

TEST(PoolJson, RoundTripEveryField) {
    auto p = pool("a", "10.0.0.0/16", 28);
    p.vxlan_mode = EncapMode::kCrossSubnet;
    p.nat_outgoing = true;
    p.node_selector = "zone == 'a'";
    p.disabled = true;
    p.allowed_uses = {AllowedUse::kTunnel};
    nlohmann::json j = p;
    EXPECT_EQ(j["vxlanMode"], "CrossSubnet");
    EXPECT_EQ(j.get<IpPool>(), p);
    auto q = pool("b", "fd00::/64");
    q.vxlan_mode = EncapMode::kAlways;
    EXPECT_EQ(nlohmann::json(q).get<IpPool>(), q);
}

TEST(PoolJson, OperatorEncapsulationNames) {
    auto dec = [](const char *enc) {
        return nlohmann::json{{"name", "a"}, {"cidr", "10.0.0.0/16"}, {"encapsulation", enc}}
            .get<IpPool>();
    };
    EXPECT_EQ(dec("None").vxlan_mode, EncapMode::kNever);
    EXPECT_EQ(dec("VXLAN").vxlan_mode, EncapMode::kAlways);
    EXPECT_EQ(dec("VXLANCrossSubnet").vxlan_mode, EncapMode::kCrossSubnet);
    EXPECT_EQ(dec("IPIP").ipip_mode, EncapMode::kAlways);
    EXPECT_EQ(dec("IPIPCrossSubnet").ipip_mode, EncapMode::kCrossSubnet);
    EXPECT_THROW(dec("GRE"), PoolError);
    EXPECT_THROW((nlohmann::json{{"name", "a"}, {"cidr", "10.0.0.0/16"}, {"vxlanMode", "Sometimes"}}
                      .get<IpPool>()),
                 PoolError);
    EXPECT_THROW((nlohmann::json{{"name", "a"}, {"cidr", "10.0.0.0/16"}, {"allowedUses", {"Pets"}}}
                      .get<IpPool>()),
                 PoolError);
    auto d = nlohmann::json{{"name", "a"}, {"cidr", "10.0.0.0/16"}}.get<IpPool>();
    EXPECT_EQ(d.block_size, 26);
    EXPECT_EQ(d.allowed_uses,
              (std::vector<AllowedUse>{AllowedUse::kWorkload, AllowedUse::kTunnel}));
}

TEST(StoredJson, BlockAffinityHandleConfigReservation) {
    auto b = Block::make(*Cidr::parse("fd00::/122"), "n1", 5);
    b.allocations[3] = Attributes{"k8s-pod-network.c1", "ns", "pod", "n1", "c1"};
    b.unallocated.erase(b.unallocated.begin() + 3);
    auto b2 = nlohmann::json(b).get<Block>();
    EXPECT_EQ(b2.cidr, b.cidr);
    EXPECT_EQ(b2.affinity, b.affinity);
    EXPECT_EQ(b2.allocations, b.allocations);
    EXPECT_EQ(b2.unallocated, b.unallocated);
    EXPECT_EQ(b2.empty_since_ms, 5);
    EXPECT_EQ(b2.used(), 1);
    EXPECT_EQ(b2.free(), 63);
    EXPECT_EQ(nlohmann::json(b)["affinity"], "host:n1");

    Affinity a{"n1", *Cidr::parse("10.0.0.0/26"), AffinityState::kPendingDeletion, 42};
    auto a2 = nlohmann::json(a).get<Affinity>();
    EXPECT_EQ(a2.node, "n1");
    EXPECT_EQ(a2.cidr, a.cidr);
    EXPECT_EQ(a2.state, AffinityState::kPendingDeletion);
    EXPECT_EQ(a2.claimed_at_ms, 42);

    Handle h{"h", {{"10.0.0.0/26", 2}}};
    EXPECT_EQ(nlohmann::json(h).get<Handle>().blocks, h.blocks);

    IpamConfig c{true, 7};
    auto c2 = nlohmann::json(c).get<IpamConfig>();
    EXPECT_TRUE(c2.strict_affinity);
    EXPECT_EQ(c2.max_blocks_per_host, 7);
    EXPECT_EQ(IpamConfig{}.effective_max_blocks(), 20);

    auto r = nlohmann::json{{"name", "r"}, {"reservedCIDRs", {"10.0.0.5", "fd00::/126"}}}
                 .get<Reservation>();
    ASSERT_EQ(r.cidrs.size(), 2u);
    EXPECT_EQ(r.cidrs[0].str(), "10.0.0.5/32");
    EXPECT_EQ(nlohmann::json(r).get<Reservation>().cidrs, r.cidrs);
}

TEST(Handles, Names) {
    EXPECT_EQ(pod_handle("abc"), "k8s-pod-network.abc");
    EXPECT_EQ(tunnel_handle("n1", net::Family::kIp4), "vxlan-tunnel-addr-n1");
    EXPECT_EQ(tunnel_handle("n1", net::Family::kIp6), "vxlan-v6-tunnel-addr-n1");
}

}  // namespace
}  // namespace fwd::ipam
