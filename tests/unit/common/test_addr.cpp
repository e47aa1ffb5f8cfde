#include <gtest/gtest.h>

#include "fwd/net/addr.hpp"

using namespace fwd::net;

TEST(Addr, Ip4ParseFormat) {
    auto a = Ip4Addr::parse("10.1.2.3");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->host(), 0x0a010203u);
    EXPECT_EQ(a->str(), "10.1.2.3");
    EXPECT_EQ(a->be().raw(), 0x0302010au);
    EXPECT_FALSE(Ip4Addr::parse("10.1.2"));
    EXPECT_FALSE(Ip4Addr::parse("10.1.2.256"));
    EXPECT_FALSE(Ip4Addr::parse("::1"));
}

TEST(Addr, Ip6ParseFormat) {
    auto a = Ip6Addr::parse("fd00:10:244::1");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->str(), "fd00:10:244::1");
    EXPECT_EQ(a->bytes()[15], 1);
    EXPECT_FALSE(Ip6Addr::parse("fd00::g"));
    EXPECT_EQ(calico_gateway6().str(), "fe80::ecee:eeff:feee:eeee");
    EXPECT_TRUE(calico_gateway6().is_link_local());
}

TEST(Addr, Prefixes) {
    auto p = Prefix4::parse("192.168.0.64/26");
    ASSERT_TRUE(p);
    EXPECT_TRUE(p->contains(*Ip4Addr::parse("192.168.0.127")));
    EXPECT_FALSE(p->contains(*Ip4Addr::parse("192.168.0.128")));
    EXPECT_FALSE(Prefix4::parse("192.168.0.65/26"));  // host bits set
    EXPECT_TRUE(Prefix4::parse("192.168.0.65/26", true));
    EXPECT_FALSE(Prefix4::parse("1.2.3.4/33"));
    EXPECT_FALSE(Prefix4::parse("1.2.3.4/"));
    auto p6 = Prefix6::parse("fd00:10:244::40/122");
    ASSERT_TRUE(p6);
    EXPECT_TRUE(p6->contains(*Ip6Addr::parse("fd00:10:244::7f")));
    EXPECT_FALSE(p6->contains(*Ip6Addr::parse("fd00:10:244::80")));
    EXPECT_EQ(p6->str(), "fd00:10:244::40/122");
    auto ia = IfAddr4::parse("10.10.10.10/24");
    ASSERT_TRUE(ia);
    EXPECT_EQ(ia->subnet().str(), "10.10.10.0/24");
}

TEST(Addr, Mac) {
    auto m = MacAddr::parse("ee:ee:ee:ee:ee:ee");
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, kCalicoGatewayMac);
    EXPECT_EQ(m->str(), "ee:ee:ee:ee:ee:ee");
    EXPECT_FALSE(MacAddr::parse("ee:ee:ee:ee:ee"));
    EXPECT_FALSE(MacAddr::parse("ee-ee-ee-ee-ee-ee"));
}

TEST(Addr, BigEndian) {
    auto v = Be16::from_host(0x0800);
    EXPECT_EQ(v.raw(), 0x0008);
    EXPECT_EQ(v.host(), 0x0800);
}
