// The packet builder checked on its own, so the datapath tests rest on a
// builder that is right: a published checksum example, lengths, the
// extension header chain, truncation, and the parser reading it all back.
#include <gtest/gtest.h>

#include "packet_builder.hpp"

#include <arpa/inet.h>

#include <string>

namespace fwd::dp::test {
namespace {

// The literals are parsed at compile time (lab.hpp's constants are constant-initialized);
// they read what inet_pton reads and refuse what it refuses.
static_assert(ip4("10.65.0.2") == 0x0a410002);
static_assert(ip6("fd00::1")[0] == 0xfd && ip6("fd00::1")[15] == 1);
static_assert(mac("ee:ee:ee:ee:ee:ee")[5] == 0xee);

TEST(PacketBuilder, LiteralsReadAsInetPtonReads) {
    for (const char *s : {"0.0.0.0", "10.65.0.2", "255.255.255.255", "192.168.050.1", "1.2.3",
                          "1.2.3.4.5", "256.1.1.1", "1..2.3", "1.2.3.4 ", "", "01.2.3.4"}) {
        in_addr a{};
        uint32_t v = 0;
        const bool want = inet_pton(AF_INET, s, &a) == 1;
        EXPECT_EQ(literal::parse_ip4(s, v), want) << s;
        if (want) {
            EXPECT_EQ(v, ntohl(a.s_addr)) << s;
        }
    }
    for (const char *s : {"::",
                          "::1",
                          "fd00::1",
                          "fe80::ecee:eeff:feee:eeee",
                          "1:2:3:4:5:6:7:8",
                          "1::8",
                          "1:2:3:4:5:6:7::",
                          "::ffff:10.0.0.1",
                          "64:ff9b::192.0.2.33",
                          "fd00:10:244::/48",
                          "1:2:3:4:5:6:7:8:9",
                          "1:::2",
                          "1::2::3",
                          ":1::",
                          "1:2:3:4:5:6:7",
                          "12345::",
                          "g::",
                          "1:",
                          "::1.2.3",
                          "1::2:3:4:5:6:7:8",
                          "FD00:ABCD::"}) {
        std::array<uint8_t, 16> a{}, got{};
        const bool want = inet_pton(AF_INET6, s, a.data()) == 1;
        EXPECT_EQ(literal::parse_ip6(s, got), want) << s;
        if (want) {
            EXPECT_EQ(got, a) << s;
        }
    }
    std::array<uint8_t, 6> m{};
    EXPECT_TRUE(literal::parse_mac("02:00:0a:41:0:2", m));
    EXPECT_EQ(m, (Mac{2, 0, 0x0a, 0x41, 0, 2}));
    for (const char *s :
         {"02:00:0a:41:00", "02:00:0a:41:00:02:03", "02:00:0a:41:00:xx", "020:0:0:0:0:0"}) {
        EXPECT_FALSE(literal::parse_mac(s, m)) << s;
    }
}

TEST(PacketBuilder, Ip4HeaderChecksumMatchesAWorkedExample) {
    // The textbook header 4500 0073 0000 4000 4011 xxxx c0a8 0001 c0a8 00c7
    // has the checksum b861.
    auto b = PacketBuilder()
                 .eth({}, {})
                 .ip4(ip4("192.168.0.1"), ip4("192.168.0.199"))
                 .ip_id(0)
                 .df()
                 .ttl(64)
                 .udp(1, 2)
                 .total_length(0x73);
    Parsed p = parse(b.build());
    ASSERT_TRUE(p.ip4.has_value());
    EXPECT_EQ(p.ip4->checksum, 0xb861);
    EXPECT_TRUE(p.ip4->header_checksum_ok);
}

TEST(PacketBuilder, Rfc1071ExampleSum) {
    // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
    Bytes b = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    EXPECT_EQ(fold16(sum16(b)), 0xddf2);
    EXPECT_EQ(inet_checksum(b), 0x220d);
}

TEST(PacketBuilder, ChecksumsAreValidByDefaultAndBrokenOnDemand) {
    auto u4 = PacketBuilder().ip4(ip4("10.0.0.1"), ip4("10.0.0.2")).udp(1, 2).payload(33);
    auto i4 = PacketBuilder().ip4(ip4("10.0.0.1"), ip4("10.0.0.2")).echo_request().payload(7);
    auto t6 = PacketBuilder().ip6(ip6("fd00::1"), ip6("fd00::2")).tcp(1, 2).payload(5);
    auto i6 = PacketBuilder().ip6(ip6("fd00::1"), ip6("fd00::2")).echo_request().payload(9);
    for (auto *b : {&u4, &i4, &t6, &i6}) {
        Parsed good = parse(b->build());
        EXPECT_TRUE(good.l4_checksum_ok());
        if (good.ip4) {
            EXPECT_TRUE(good.ip4->header_checksum_ok);
        }
        Parsed bad = parse(b->bad_l4_checksum().build());
        EXPECT_FALSE(bad.l4_checksum_ok());
    }
    Parsed bad_ip = parse(u4.bad_ip_checksum().build());
    EXPECT_FALSE(bad_ip.ip4->header_checksum_ok);
}

TEST(PacketBuilder, Ip4LengthsOptionsAndFlags) {
    auto b = PacketBuilder()
                 .eth(mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02"))
                 .ip4(ip4("10.0.0.1"), ip4("10.0.0.2"))
                 .ip4_options({1, 1, 1})
                 .mf()
                 .frag_offset(3)
                 .ttl(9)
                 .udp(7, 8)
                 .payload(10);
    Bytes f = b.build();
    ASSERT_EQ(f.size(), 14u + 24 + 8 + 10);
    Parsed p = parse(f);
    ASSERT_TRUE(p.ip4.has_value());
    EXPECT_EQ(p.ip4->ihl, 6);
    EXPECT_EQ(p.ip4->total_length, 24 + 8 + 10);
    EXPECT_EQ(p.ip4->frag, 0x2003);
    EXPECT_EQ(p.ip4->ttl, 9);
    EXPECT_EQ(p.l4_proto, kProtoUdp);
    EXPECT_EQ(p.l4().size(), 18u);
    EXPECT_EQ((p.l4()[4] << 8) | p.l4()[5], 18) << "UDP length";
}

TEST(PacketBuilder, Ip6ExtensionChain) {
    auto b = PacketBuilder()
                 .ip6(ip6("fd00::1"), ip6("fd00::2"))
                 .hop_by_hop(16)
                 .routing(0)
                 .fragment(5, true, 0xabcd)
                 .dest_opts()
                 .udp(1, 2)
                 .payload(3);
    Parsed p = parse(b.build());
    ASSERT_TRUE(p.ip6.has_value());
    std::vector<uint8_t> chain = {kExtHopByHop, kExtRouting, kExtFragment, kExtDestOpts};
    EXPECT_EQ(p.ip6->ext_types, chain);
    EXPECT_EQ(p.ip6->payload_length, 16 + 8 + 8 + 8 + 8 + 3);
    EXPECT_EQ(p.l4_proto, kProtoUdp);
    EXPECT_EQ(p.l4_off, 14u + 40 + 40);
    EXPECT_TRUE(p.l4_checksum_ok());
    // The fragment header: offset 5, M set, identification.
    auto l3 = p.l3();
    EXPECT_EQ((l3[40 + 24 + 2] << 8) | l3[40 + 24 + 3], (5 << 3) | 1);
    EXPECT_EQ(l3[40 + 24 + 7], 0xcd);
}

TEST(PacketBuilder, VlanPaddingAndTruncation) {
    auto b = PacketBuilder().eth({}, {}).vlan(0x2064).ip4(1, 2).udp(1, 2);
    Parsed p = parse(b.build());
    ASSERT_TRUE(p.eth.vlan_tci.has_value());
    EXPECT_EQ(*p.eth.vlan_tci, 0x2064);
    EXPECT_EQ(p.eth.type, kTypeIp4);
    EXPECT_EQ(p.eth.l3_off, 18u);
    EXPECT_EQ(b.pad_to(64).build().size(), 64u);
    EXPECT_EQ(b.truncate(17).build().size(), 17u);
}

TEST(PacketBuilder, NeighborSolicitation) {
    Ip6 target = ip6("fe80::ecee:eeff:feee:eeee");
    auto b = PacketBuilder()
                 .ip6(ip6("fe80::1"), ip6("ff02::1:ffee:eeee"))
                 .hop_limit(255)
                 .ns(target)
                 .nd_option_ll(1, mac("02:00:00:00:00:01"));
    Parsed p = parse(b.build());
    ASSERT_TRUE(p.ip6.has_value());
    auto l4 = p.l4();
    ASSERT_EQ(l4.size(), 32u);
    EXPECT_EQ(l4[0], 135);
    EXPECT_TRUE(std::equal(target.begin(), target.end(), l4.begin() + 8));
    EXPECT_EQ(l4[24], 1);
    EXPECT_EQ(l4[25], 1);
    EXPECT_TRUE(p.l4_checksum_ok());
}

}  // namespace
}  // namespace fwd::dp::test
