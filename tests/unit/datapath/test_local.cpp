// icmp4_local / icmp6_local: what the dataplane answers itself (echo to
// 169.254.1.1, fe80::ecee:eeff:feee:eeee and the node addresses; Neighbor
// Solicitations for the gateway, RFC 4861 7.2.4) and the local traffic it
// drops, one reason each.
#include "drop_case.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint8_t kEchoReply4 = 0;
constexpr uint8_t kEchoReply6 = 129;
constexpr uint8_t kNdNs = 135;
constexpr uint8_t kNdNa = 136;
constexpr uint8_t kOptSourceLl = 1;
constexpr uint8_t kOptTargetLl = 2;
constexpr uint32_t kNaRouter = 0x80000000;
constexpr uint32_t kNaSolicited = 0x40000000;
constexpr uint32_t kNaOverride = 0x20000000;

// A Neighbor Solicitation for target as pod A sends it: to the target's
// solicited-node group, hop limit 255, with its link-layer address.
PacketBuilder pod_a_ns(const Ip6 &target, uint8_t hop_limit = 255) {
    Ip6 snm = ip6("ff02::1:ff00:0");
    std::copy(target.begin() + 13, target.end(), snm.begin() + 13);
    Mac snm_mac = {0x33, 0x33, 0xff, target[13], target[14], target[15]};
    return std::move(PacketBuilder()
                         .eth(kPodAMac, snm_mac)
                         .ip6(kPodALl6, snm)
                         .hop_limit(hop_limit)
                         .ns(target)
                         .nd_option_ll(kOptSourceLl, kPodAMac));
}

const DropCase kLocalDrops[] = {
    // An echo request cut to its first 4 bytes (the IP length says so too).
    {"Icmp4TruncatedEcho", Side::kPodA,
     [] {
         return std::move(
             from_pod_a().ip4(kPodA4, kGw4).next_proto(kProtoIcmp).payload({8, 0, 0xf7, 0xff}));
     },
     DropReason::kIcmpTruncated},
    {"Icmp6TruncatedMessage", Side::kPodA,
     [] {
         return std::move(from_pod_a().ip6(kPodA6, kGw6).next_proto(kProtoIcmp6).payload({128, 0}));
     },
     DropReason::kIcmpTruncated},
    {"Icmp6TruncatedEcho", Side::kPodA,
     [] {
         return std::move(
             from_pod_a().ip6(kPodA6, kGw6).next_proto(kProtoIcmp6).payload({128, 0, 0, 0, 0, 1}));
     },
     DropReason::kIcmpTruncated},
    {"Icmp4BadChecksum", Side::kPodA,
     [] {
         return std::move(
             from_pod_a().ip4(kPodA4, kGw4).echo_request().payload(56).bad_l4_checksum());
     },
     DropReason::kIcmpBadChecksum},
    {"Icmp6BadChecksum", Side::kPodA,
     [] {
         return std::move(
             from_pod_a().ip6(kPodA6, kGw6).echo_request().payload(56).bad_l4_checksum());
     },
     DropReason::kIcmpBadChecksum},
    {"Icmp4Timestamp", Side::kPodA,
     [] { return std::move(from_pod_a().ip4(kPodA4, kGw4).icmp(13, 0).payload(12)); },
     DropReason::kIcmpUnhandled},
    {"Icmp4EchoWithNonZeroCode", Side::kPodA,
     [] { return std::move(from_pod_a().ip4(kPodA4, kGw4).icmp(8, 1, 0x10001).payload(8)); },
     DropReason::kIcmpUnhandled},
    {"Icmp4FragmentToGateway", Side::kPodA,
     [] { return std::move(from_pod_a().ip4(kPodA4, kGw4).mf().echo_request().payload(56)); },
     DropReason::kIcmpUnhandled},
    {"Icmp6NodeInformationQuery", Side::kPodA,
     [] { return std::move(from_pod_a().ip6(kPodA6, kGw6).icmp(139, 0).payload(16)); },
     DropReason::kIcmpUnhandled},
    {"NsWithHopLimit64", Side::kPodA, [] { return pod_a_ns(kGw6, 64); }, DropReason::kNdInvalid},
    {"NsWithNonZeroCode", Side::kPodA,
     [] {
         auto b = pod_a_ns(kGw6);
         b.icmp(kNdNs, 1).payload(Bytes(kGw6.begin(), kGw6.end()));
         return b;
     },
     DropReason::kNdInvalid},
    {"NsWithBadChecksum", Side::kPodA, [] { return std::move(pod_a_ns(kGw6).bad_l4_checksum()); },
     DropReason::kNdInvalid},
    {"NsWithoutTarget", Side::kPodA,
     [] {
         return std::move(PacketBuilder()
                              .eth(kPodAMac, kGwSnmMac)
                              .ip6(kPodALl6, kGwSnm6)
                              .hop_limit(255)
                              .icmp(kNdNs, 0)
                              .payload(8));
     },
     DropReason::kNdInvalid},
    {"NsForAForeignTarget", Side::kPodA, [] { return pod_a_ns(ip6("fe80::99")); },
     DropReason::kNdTargetUnknown},
    {"NsForAnotherPod", Side::kPodA, [] { return pod_a_ns(kPodB6); }, DropReason::kNdTargetUnknown},
    {"RouterSolicitation", Side::kPodA,
     [] {
         return std::move(PacketBuilder()
                              .eth(kPodAMac, mac("33:33:00:00:00:02"))
                              .ip6(kPodALl6, ip6("ff02::2"))
                              .hop_limit(255)
                              .rs()
                              .nd_option_ll(kOptSourceLl, kPodAMac));
     },
     DropReason::kNdUnhandled},
    {"UnsolicitedNeighborAdvertisement", Side::kPodA,
     [] {
         return std::move(PacketBuilder()
                              .eth(kPodAMac, kAllNodesMac)
                              .ip6(kPodALl6, kAllNodes6)
                              .hop_limit(255)
                              .na(kPodALl6, kNaOverride)
                              .nd_option_ll(kOptTargetLl, kPodAMac));
     },
     DropReason::kNdUnhandled},
    {"Udp4ToGateway", Side::kPodA,
     [] { return std::move(from_pod_a().ip4(kPodA4, kGw4).udp(40000, 53).payload(20)); },
     DropReason::kLocalUnhandled},
    {"Tcp4ToNode", Side::kUplink,
     [] { return std::move(from_uplink().ip4(kVia4, kNode4).tcp(40000, 22)); },
     DropReason::kLocalUnhandled},
    {"Udp6ToGateway", Side::kPodA,
     [] { return std::move(from_pod_a().ip6(kPodA6, kGw6).udp(40000, 53).payload(20)); },
     DropReason::kLocalUnhandled},
    {"Tcp6ToNode", Side::kUplink,
     [] { return std::move(from_uplink().ip6(kVia6, kNode6).tcp(40000, 22)); },
     DropReason::kLocalUnhandled},
};
INSTANTIATE_TEST_SUITE_P(Local, DropTest, ::testing::ValuesIn(kLocalDrops), drop_case_name);

// --- echo ---

class Echo : public DatapathTest {
  protected:
    // The reply to req (sent from side s to local address `to`).
    void check_reply4(const Sent &out, Side s, const PacketBuilder &req, uint32_t to,
                      uint32_t peer) {
        ASSERT_EQ(out.frames.size(), 1u);
        const Frame &f = out.frames[0];
        Parsed in = parse(req.build());
        EXPECT_EQ(f.side, s);
        EXPECT_EQ(f.pkt.eth.dst, in.eth.src);
        EXPECT_EQ(f.pkt.eth.src, in.eth.dst);
        ASSERT_TRUE(f.pkt.ip4.has_value());
        EXPECT_EQ(f.pkt.ip4->src, to);
        EXPECT_EQ(f.pkt.ip4->dst, peer);
        EXPECT_EQ(f.pkt.ip4->ttl, 64);
        EXPECT_TRUE(f.pkt.ip4->header_checksum_ok);
        auto icmp = f.pkt.l4();
        auto orig = in.l4();
        ASSERT_EQ(icmp.size(), orig.size());
        EXPECT_EQ(icmp[0], kEchoReply4);
        EXPECT_EQ(icmp[1], 0);
        EXPECT_TRUE(f.pkt.l4_checksum_ok()) << "ICMP checksum";
        EXPECT_TRUE(std::equal(icmp.begin() + 4, icmp.end(), orig.begin() + 4))
            << "identifier, sequence and data must come back unchanged";
        EXPECT_EQ(drops(), want({}));
        EXPECT_EQ(icmp_sent(), 0u) << "a reply is not an error";
    }

    void check_reply6(const Sent &out, Side s, const PacketBuilder &req, const Ip6 &to,
                      const Ip6 &peer) {
        ASSERT_EQ(out.frames.size(), 1u);
        const Frame &f = out.frames[0];
        Parsed in = parse(req.build());
        EXPECT_EQ(f.side, s);
        EXPECT_EQ(f.pkt.eth.dst, in.eth.src);
        EXPECT_EQ(f.pkt.eth.src, in.eth.dst);
        ASSERT_TRUE(f.pkt.ip6.has_value());
        EXPECT_EQ(f.pkt.ip6->src, to);
        EXPECT_EQ(f.pkt.ip6->dst, peer);
        EXPECT_EQ(f.pkt.ip6->hop_limit, 64);
        auto icmp = f.pkt.l4();
        auto orig = in.l4();
        ASSERT_EQ(icmp.size(), orig.size());
        EXPECT_EQ(icmp[0], kEchoReply6);
        EXPECT_EQ(icmp[1], 0);
        EXPECT_TRUE(f.pkt.l4_checksum_ok()) << "ICMPv6 checksum";
        EXPECT_TRUE(std::equal(icmp.begin() + 4, icmp.end(), orig.begin() + 4));
        EXPECT_EQ(drops(), want({}));
    }
};

TEST_F(Echo, Ip4ToTheGateway) {
    // packet-build
    auto req = from_pod_a().ip4(kPodA4, kGw4).ttl(1).echo_request(0x1234, 7).payload(56);
    Sent out = run(Side::kPodA, req);
    // check: answered even with TTL 1 (it is for us)
    check_reply4(out, Side::kPodA, req, kGw4, kPodA4);
}

TEST_F(Echo, Ip4ToTheNodeFromTheUplink) {
    auto req = from_uplink().ip4(kVia4, kNode4).echo_request(0xbeef, 1).payload(1000);
    Sent out = run(Side::kUplink, req);
    check_reply4(out, Side::kUplink, req, kNode4, kVia4);
}

TEST_F(Echo, Ip4OddLengthPayload) {
    auto req = from_pod_b().ip4(kPodB4, kGw4).echo_request(0xffff, 0xffff).payload(33);
    Sent out = run(Side::kPodB, req);
    check_reply4(out, Side::kPodB, req, kGw4, kPodB4);
}

TEST_F(Echo, Ip6ToTheGatewayFromLinkLocal) {
    auto req = from_pod_a().ip6(kPodALl6, kGw6).echo_request(0x1234, 7).payload(56);
    Sent out = run(Side::kPodA, req);
    check_reply6(out, Side::kPodA, req, kGw6, kPodALl6);
}

TEST_F(Echo, Ip6ToTheGatewayFromGlobal) {
    auto req = from_pod_a().ip6(kPodA6, kGw6).hop_limit(1).echo_request(0x4321, 9).payload(57);
    Sent out = run(Side::kPodA, req);
    check_reply6(out, Side::kPodA, req, kGw6, kPodA6);
}

TEST_F(Echo, Ip6ToTheNodeFromTheUplink) {
    auto req = from_uplink().ip6(kVia6, kNode6).echo_request(1, 1).payload(1200);
    Sent out = run(Side::kUplink, req);
    check_reply6(out, Side::kUplink, req, kNode6, kVia6);
}

// --- Neighbor Discovery ---

class NeighborAdvert : public DatapathTest {
  protected:
    // The NA for the gateway: RFC 4861 4.4 / 7.2.4.
    void check_na(const Sent &out, Side s, const Mac &eth_dst, const Ip6 &ip_dst, uint32_t flags) {
        ASSERT_EQ(out.frames.size(), 1u);
        const Frame &f = out.frames[0];
        EXPECT_EQ(f.side, s);
        EXPECT_EQ(f.pkt.eth.dst, eth_dst);
        EXPECT_EQ(f.pkt.eth.src, kGwMac);
        EXPECT_EQ(f.pkt.eth.type, kTypeIp6);
        ASSERT_TRUE(f.pkt.ip6.has_value());
        const ParsedIp6 &ip = *f.pkt.ip6;
        EXPECT_EQ(ip.src, kGw6) << "sent from the target address";
        EXPECT_EQ(ip.dst, ip_dst);
        EXPECT_EQ(ip.hop_limit, 255) << "RFC 4861 7.1.2";
        EXPECT_EQ(ip.next, kProtoIcmp6);
        EXPECT_TRUE(ip.ext_types.empty());
        auto na = f.pkt.l4();
        ASSERT_EQ(na.size(), 32u) << "header, target and one target link-layer option";
        EXPECT_EQ(ip.payload_length, 32);
        EXPECT_EQ(na[0], kNdNa);
        EXPECT_EQ(na[1], 0);
        EXPECT_TRUE(f.pkt.l4_checksum_ok()) << "ICMPv6 checksum";
        uint32_t got = (uint32_t{na[4]} << 24) | (na[5] << 16) | (na[6] << 8) | na[7];
        EXPECT_EQ(got, flags) << std::hex << "R/S/O flags and reserved bits";
        EXPECT_TRUE(std::equal(kGw6.begin(), kGw6.end(), na.begin() + 8)) << "target";
        EXPECT_EQ(na[24], kOptTargetLl);
        EXPECT_EQ(na[25], 1);
        EXPECT_TRUE(std::equal(kGwMac.begin(), kGwMac.end(), na.begin() + 26))
            << "target link-layer address";
        EXPECT_EQ(drops(), want({}));
    }
};

TEST_F(NeighborAdvert, SolicitedFromLinkLocal) {
    // packet-build
    auto ns = pod_a_ns(kGw6);
    Sent out = run(Side::kPodA, ns);
    // check: unicast back, router + solicited + override
    check_na(out, Side::kPodA, kPodAMac, kPodALl6, kNaRouter | kNaSolicited | kNaOverride);
}

TEST_F(NeighborAdvert, SolicitedUnicastWithoutSourceOption) {
    // packet-build: a unicast probe (NUD) from pod B, no source link-layer option
    auto ns =
        PacketBuilder().eth(kPodBMac, kGwMac).ip6(ip6("fe80::b:3"), kGw6).hop_limit(255).ns(kGw6);
    Sent out = run(Side::kPodB, ns);
    // check
    check_na(out, Side::kPodB, kPodBMac, ip6("fe80::b:3"), kNaRouter | kNaSolicited | kNaOverride);
}

TEST_F(NeighborAdvert, SolicitedFromGlobalAddressWithPadding) {
    auto ns = pod_a_ns(kGw6);
    ns.ip6(kPodA6, kGwSnm6).pad_to(100);
    Sent out = run(Side::kPodA, ns);
    check_na(out, Side::kPodA, kPodAMac, kPodA6, kNaRouter | kNaSolicited | kNaOverride);
}

TEST_F(NeighborAdvert, DuplicateAddressDetectionFromUnspecified) {
    // packet-build: DAD has no source option (RFC 4861 7.1.1)
    auto ns = PacketBuilder().eth(kPodAMac, kGwSnmMac).ip6(Ip6{}, kGwSnm6).hop_limit(255).ns(kGw6);
    Sent out = run(Side::kPodA, ns);
    // check: RFC 4861 7.2.4, to all-nodes, Solicited clear
    check_na(out, Side::kPodA, kAllNodesMac, kAllNodes6, kNaRouter | kNaOverride);
}

TEST_F(NeighborAdvert, NodeAddressOnTheUplink) {
    // packet-build
    Ip6 snm = ip6("ff02::1:ff00:10");
    auto ns = PacketBuilder()
                  .eth(kRouterMac, mac("33:33:ff:00:00:10"))
                  .ip6(ip6("fe80::1"), snm)
                  .hop_limit(255)
                  .ns(kNode6)
                  .nd_option_ll(kOptSourceLl, kRouterMac);
    Sent out = run(Side::kUplink, ns);
    // check
    ASSERT_EQ(out.frames.size(), 1u);
    const Frame &f = out.frames[0];
    EXPECT_EQ(f.side, Side::kUplink);
    EXPECT_EQ(f.pkt.eth.dst, kRouterMac);
    EXPECT_EQ(f.pkt.eth.src, kUplinkMac);
    ASSERT_TRUE(f.pkt.ip6.has_value());
    EXPECT_EQ(f.pkt.ip6->src, kNode6);
    EXPECT_EQ(f.pkt.ip6->dst, ip6("fe80::1"));
    EXPECT_TRUE(f.pkt.l4_checksum_ok());
    auto na = f.pkt.l4();
    ASSERT_EQ(na.size(), 32u);
    EXPECT_TRUE(std::equal(kUplinkMac.begin(), kUplinkMac.end(), na.begin() + 26));
    EXPECT_EQ(drops(), want({}));
}

}  // namespace
}  // namespace fwd::dp::test
