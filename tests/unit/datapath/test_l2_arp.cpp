// eth_input and arp_input: what is dropped with which reason, VLAN handling
// on the uplink, and proxy ARP on pod ports (CALICO.md "Pod side of the
// wire"; RFC 826).
#include "drop_case.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint16_t kArpRequest = 1;
constexpr uint16_t kArpReply = 2;
const Mac kZeroMac{};

// A request as a pod sends it: broadcast, asking who has tip.
PacketBuilder pod_a_arp(uint16_t op, uint32_t sip, uint32_t tip) {
    return std::move(
        PacketBuilder().eth(kPodAMac, kBroadcastMac).arp(op, kPodAMac, sip, kZeroMac, tip));
}

PacketBuilder udp4(PacketBuilder b, uint32_t src, uint32_t dst) {
    return std::move(b.ip4(src, dst).udp(40000, 53).payload(18));
}

}  // namespace

// The body shared by every table of drop cases (see drop_case.hpp).
TEST_P(DropTest, Check) {
    const DropCase &c = GetParam();
    // setup
    port_state(Side::kUplink).vlan = c.uplink_vlan;
    // packet-build
    PacketBuilder b = c.build();
    Sent out = run(c.side, b);
    // check
    EXPECT_EQ(drops(), want({{c.reason, 1}}));
    EXPECT_TRUE(out.frames.empty()) << out.frames.size() << " frame(s) sent";
    EXPECT_EQ(icmp_sent(), 0u);
    EXPECT_EQ(tx_packets(), 0u);
}

namespace {

const DropCase kL2Drops[] = {
    {"RuntFrame", Side::kPodA, [] { return udp4(from_pod_a(), kPodA4, kPodB4).truncate(13); },
     DropReason::kEthRunt},
    {"EmptyFrame", Side::kPodA, [] { return udp4(from_pod_a(), kPodA4, kPodB4).truncate(0); },
     DropReason::kEthRunt},
    {"UnicastToAnotherMac", Side::kPodA,
     [] { return udp4(PacketBuilder().eth(kPodAMac, kOtherMac), kPodA4, kPodB4); },
     DropReason::kEthNotForUs},
    {"UnicastToTheUplinkMacOnAPodPort", Side::kPodA,
     [] { return udp4(PacketBuilder().eth(kPodAMac, kUplinkMac), kPodA4, kPodB4); },
     DropReason::kEthNotForUs},
    {"UnknownEthertype", Side::kPodA,
     [] { return std::move(from_pod_a().ethertype(0x88cc).payload(46)); },
     DropReason::kEthUnknownType},
    {"Ip4MulticastMac", Side::kPodA,
     [] {
         return udp4(PacketBuilder().eth(kPodAMac, mac("01:00:5e:00:00:fb")), kPodA4,
                     ip4("224.0.0.251"));
     },
     DropReason::kEthMulticast},
    {"VlanTaggedOnPodPort", Side::kPodA,
     [] { return udp4(from_pod_a().vlan(kUplinkVlan), kPodA4, kPodB4); },
     DropReason::kEthVlanTagged},
    {"VlanTaggedOnUplinkWithoutVlan", Side::kUplink,
     [] { return udp4(from_uplink().vlan(kUplinkVlan), kVia4, kPodA4); },
     DropReason::kEthVlanTagged},
    {"OtherVlanOnUplink", Side::kUplink,
     [] { return udp4(from_uplink().vlan(kUplinkVlan + 1), kVia4, kPodA4); },
     DropReason::kEthVlanTagged, kUplinkVlan},
    {"QinQOnUplink", Side::kUplink,
     [] { return udp4(from_uplink().ethertype(0x88a8), kVia4, kPodA4); },
     DropReason::kEthVlanTagged, kUplinkVlan},
    {"VlanTagCutShort", Side::kUplink,
     [] { return udp4(from_uplink().vlan(kUplinkVlan), kVia4, kPodA4).truncate(16); },
     DropReason::kEthVlanTagged, kUplinkVlan},
};
INSTANTIATE_TEST_SUITE_P(L2, DropTest, ::testing::ValuesIn(kL2Drops), drop_case_name);

const DropCase kArpDrops[] = {
    {"Truncated", Side::kPodA,
     [] { return pod_a_arp(kArpRequest, kPodA4, kGw4).truncate(14 + 27); },
     DropReason::kArpTruncated},
    {"NotEthernetHardware", Side::kPodA,
     [] { return std::move(pod_a_arp(kArpRequest, kPodA4, kGw4).arp_hw_type(6)); },
     DropReason::kArpUnsupported},
    {"RarpOpcode", Side::kPodA, [] { return pod_a_arp(3, kPodA4, kGw4); },
     DropReason::kArpUnsupported},
    {"Gratuitous", Side::kPodA, [] { return pod_a_arp(kArpRequest, kPodA4, kPodA4); },
     DropReason::kArpGratuitous},
    {"Probe", Side::kPodA, [] { return pod_a_arp(kArpRequest, 0, kPodA4); },
     DropReason::kArpGratuitous},
    {"Reply", Side::kPodA, [] { return pod_a_arp(kArpReply, kPodA4, kGw4); },
     DropReason::kArpReply},
    {"UplinkRequestForAnotherAddress", Side::kUplink,
     [] {
         return std::move(PacketBuilder()
                              .eth(kRouterMac, kBroadcastMac)
                              .arp(kArpRequest, kRouterMac, ip4("192.168.50.1"), kZeroMac,
                                   ip4("192.168.50.99")));
     },
     DropReason::kArpNotForUs},
    {"UplinkRequestForThePodGateway", Side::kUplink,
     [] {
         return std::move(PacketBuilder()
                              .eth(kRouterMac, kBroadcastMac)
                              .arp(kArpRequest, kRouterMac, ip4("192.168.50.1"), kZeroMac, kGw4));
     },
     DropReason::kArpNotForUs},
};
INSTANTIATE_TEST_SUITE_P(Arp, DropTest, ::testing::ValuesIn(kArpDrops), drop_case_name);

// --- answers ---

class ArpAnswer : public DatapathTest {
  protected:
    // The reply to a request from sender (sha, sip) for tip, sent by port
    // MAC our_mac out of side s.
    void check_reply(const Sent &out, Side s, const Mac &our_mac, const Mac &sha, uint32_t sip,
                     uint32_t tip) {
        ASSERT_EQ(out.frames.size(), 1u);
        const Frame &f = out.frames[0];
        EXPECT_EQ(f.side, s);
        EXPECT_EQ(f.pkt.eth.dst, sha);
        EXPECT_EQ(f.pkt.eth.src, our_mac);
        EXPECT_EQ(f.pkt.eth.type, kTypeArp);
        ASSERT_TRUE(f.pkt.arp.has_value());
        const ParsedArp &a = *f.pkt.arp;
        EXPECT_EQ(a.hw, 1);
        EXPECT_EQ(a.proto, kTypeIp4);
        EXPECT_EQ(a.hlen, 6);
        EXPECT_EQ(a.plen, 4);
        EXPECT_EQ(a.op, kArpReply);
        EXPECT_EQ(a.sha, our_mac) << "answered MAC";
        EXPECT_EQ(a.sip, tip) << "the address asked for";
        EXPECT_EQ(a.tha, sha);
        EXPECT_EQ(a.tip, sip);
        EXPECT_EQ(drops(), want({}));
        EXPECT_EQ(tx_packets(), 1u);
    }
};

TEST_F(ArpAnswer, PodAsksForTheGateway) {
    // packet-build
    auto req = pod_a_arp(kArpRequest, kPodA4, kGw4);
    // setup: default pod port (role pod, MAC ee:ee:ee:ee:ee:ee)
    Sent out = run(Side::kPodA, req);
    // check
    check_reply(out, Side::kPodA, kGwMac, kPodAMac, kPodA4, kGw4);
}

TEST_F(ArpAnswer, PodAsksForAnyAddressProxyArp) {
    // packet-build: the pod asks for its neighbour and for an off-node address
    auto req1 = pod_a_arp(kArpRequest, kPodA4, kPodB4);
    auto req2 = pod_a_arp(kArpRequest, kPodA4, kElsewhere4);
    // check
    check_reply(run(Side::kPodA, req1), Side::kPodA, kGwMac, kPodAMac, kPodA4, kPodB4);
    Sent out = run(Side::kPodA, req2);
    ASSERT_EQ(out.frames.size(), 1u);
    EXPECT_EQ(out.frames[0].pkt.arp->sha, kGwMac);
    EXPECT_EQ(out.frames[0].pkt.arp->sip, kElsewhere4);
}

TEST_F(ArpAnswer, UnicastRequestFromPodB) {
    // packet-build: a refresh, sent unicast to the gateway MAC, on the other pod port
    auto req = PacketBuilder()
                   .eth(kPodBMac, kGwMac)
                   .arp(kArpRequest, kPodBMac, kPodB4, kGwMac, kGw4)
                   .pad_to(60);
    Sent out = run(Side::kPodB, req);
    // check
    check_reply(out, Side::kPodB, kGwMac, kPodBMac, kPodB4, kGw4);
}

TEST_F(ArpAnswer, UplinkAsksForTheNodeAddress) {
    // packet-build
    auto req = PacketBuilder()
                   .eth(kRouterMac, kBroadcastMac)
                   .arp(kArpRequest, kRouterMac, ip4("192.168.50.1"), kZeroMac, kNode4);
    Sent out = run(Side::kUplink, req);
    // check: answered with the uplink's own MAC
    check_reply(out, Side::kUplink, kUplinkMac, kRouterMac, ip4("192.168.50.1"), kNode4);
}

TEST_F(ArpAnswer, UplinkVlanRequestIsAnsweredTagged) {
    // setup
    port_state(Side::kUplink).vlan = kUplinkVlan;
    // packet-build
    auto req = PacketBuilder()
                   .eth(kRouterMac, kBroadcastMac)
                   .vlan(kUplinkVlan)
                   .arp(kArpRequest, kRouterMac, ip4("192.168.50.1"), kZeroMac, kNode4);
    Sent out = run(Side::kUplink, req);
    // check
    check_reply(out, Side::kUplink, kUplinkMac, kRouterMac, ip4("192.168.50.1"), kNode4);
    ASSERT_EQ(out.frames.size(), 1u);
    ASSERT_TRUE(out.frames[0].pkt.eth.vlan_tci.has_value());
    EXPECT_EQ(*out.frames[0].pkt.eth.vlan_tci & 0xfff, kUplinkVlan);
}

// --- VLAN on the uplink ---

class UplinkVlan : public DatapathTest {};

TEST_F(UplinkVlan, MatchingTagIsStrippedAndForwarded) {
    // setup
    port_state(Side::kUplink).vlan = kUplinkVlan;
    // packet-build: priority 3 in the tag; the VLAN id is what must match
    auto in = from_uplink()
                  .vlan(static_cast<uint16_t>((3 << 13) | kUplinkVlan))
                  .ip4(kVia4, kPodA4)
                  .ttl(20)
                  .udp(5000, 6000)
                  .payload(100);
    Sent out = run(Side::kUplink, in);
    // check
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 1u);
    const Frame &f = out.frames[0];
    check_eth_to(f, Side::kPodA, kTypeIp4);
    EXPECT_FALSE(f.pkt.eth.vlan_tci.has_value()) << "the tag must not reach the pod";
    ASSERT_TRUE(f.pkt.ip4.has_value());
    EXPECT_EQ(f.pkt.ip4->ttl, 19);
    EXPECT_TRUE(f.pkt.ip4->header_checksum_ok);
    EXPECT_EQ(f.pkt.frame.size(), 14u + 20 + 8 + 100);
}

TEST_F(UplinkVlan, TagIsAddedTowardsTheUplink) {
    // setup
    port_state(Side::kUplink).vlan = kUplinkVlan;
    // packet-build
    auto in = from_pod_a().ip4(kPodA4, kVia4).udp(5000, 6000).payload(64);
    Sent out = run(Side::kPodA, in);
    // check
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 1u);
    const Frame &f = out.frames[0];
    check_eth_to(f, Side::kUplink, kTypeIp4);
    ASSERT_TRUE(f.pkt.eth.vlan_tci.has_value());
    EXPECT_EQ(*f.pkt.eth.vlan_tci, kUplinkVlan);
    ASSERT_TRUE(f.pkt.ip4.has_value());
    EXPECT_EQ(f.pkt.ip4->dst, kVia4);
}

TEST_F(UplinkVlan, Ip6MatchingTagIsStrippedAndForwarded) {
    // setup
    port_state(Side::kUplink).vlan = kUplinkVlan;
    // packet-build
    auto in = from_uplink().vlan(kUplinkVlan).ip6(kVia6, kPodB6).udp(5000, 6000).payload(100);
    Sent out = run(Side::kUplink, in);
    // check
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 1u);
    check_eth_to(out.frames[0], Side::kPodB, kTypeIp6);
    EXPECT_FALSE(out.frames[0].pkt.eth.vlan_tci.has_value());
    EXPECT_EQ(out.frames[0].pkt.ip6->hop_limit, 63);
}

}  // namespace
}  // namespace fwd::dp::test
