// One process() call with everything mixed: IPv4, IPv6, ARP, ND, local
// echo, errors and garbage. Each packet must be sorted on its own merits,
// whatever its neighbours in the burst.
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

class MixedBurst : public DatapathTest {};

TEST_F(MixedBurst, SortsEveryPacketCorrectly) {
    // packet-build
    const Mac zero{};
    std::vector<std::pair<Side, PacketBuilder>> in = {
        // 0: IPv4 pod A -> pod B
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).ip_id(100).udp(1, 2).payload(10)},
        // 1: garbage: a runt
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).truncate(9)},
        // 2: IPv6 pod A -> pod B
        {Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(3, 4).payload(10)},
        // 3: ARP request from pod B for the gateway
        {Side::kPodB,
         PacketBuilder().eth(kPodBMac, kBroadcastMac).arp(1, kPodBMac, kPodB4, zero, kGw4)},
        // 4: garbage: LLDP
        {Side::kUplink, from_uplink().ethertype(0x88cc).payload(50)},
        // 5: NS from pod A for the gateway
        {Side::kPodA, PacketBuilder()
                          .eth(kPodAMac, kGwSnmMac)
                          .ip6(kPodALl6, kGwSnm6)
                          .hop_limit(255)
                          .ns(kGw6)
                          .nd_option_ll(1, kPodAMac)},
        // 6: IPv4 with a bad checksum
        {Side::kPodB, from_pod_b().ip4(kPodB4, kPodA4).bad_ip_checksum().udp(1, 2)},
        // 7: IPv6 expiring: an error back to pod B
        {Side::kPodB, from_pod_b().ip6(kPodB6, kPodA6).hop_limit(1).udp(5, 6).payload(10)},
        // 8: echo to 169.254.1.1 from pod B
        {Side::kPodB, from_pod_b().ip4(kPodB4, kGw4).echo_request(7, 7).payload(20)},
        // 9: IPv6 from the uplink to pod A
        {Side::kUplink, from_uplink().ip6(kElsewhere6, kPodA6).tcp(443, 5555).payload(10)},
        // 10: IPv4 expiring: an error back to pod A
        {Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).ttl(1).udp(1, 2)},
        // 11: IPv4 to a blackhole
        {Side::kPodA, from_pod_a().ip4(kPodA4, kBlackhole4).udp(1, 2)},
        // 12: unicast to someone else
        {Side::kUplink, PacketBuilder().eth(kRouterMac, kOtherMac).ip4(kVia4, kPodA4).udp(1, 2)},
        // 13: IPv4 pod B -> via the uplink
        {Side::kPodB, from_pod_b().ip4(kPodB4, kVia4).ip_id(113).udp(1, 2)},
    };
    Sent out = run(in);
    // check: drops
    EXPECT_EQ(drops(), want({{DropReason::kEthRunt, 1},
                             {DropReason::kEthUnknownType, 1},
                             {DropReason::kIp4BadChecksum, 1},
                             {DropReason::kIp6HopLimitExceeded, 1},
                             {DropReason::kIp4TtlExceeded, 1},
                             {DropReason::kRouteBlackhole, 1},
                             {DropReason::kEthNotForUs, 1}}));
    EXPECT_EQ(icmp_sent(), 2u);
    // check: what left by each port
    auto a = out.on(Side::kPodA);
    auto b = out.on(Side::kPodB);
    auto up = out.on(Side::kUplink);
    EXPECT_EQ(out.frames.size(), 9u);
    EXPECT_EQ(tx_packets(), 9u);

    // Pod A: NA, IPv6 from the uplink, time exceeded for packet 10.
    ASSERT_EQ(a.size(), 3u);
    int na = 0, fwd6 = 0, te4 = 0;
    for (const Frame *f : a) {
        if (f->pkt.ip6 && f->pkt.l4_proto == kProtoIcmp6 && f->pkt.l4()[0] == 136) {
            na++;
            EXPECT_EQ(f->pkt.ip6->src, kGw6);
            EXPECT_TRUE(f->pkt.l4_checksum_ok());
        } else if (f->pkt.ip6 && f->pkt.l4_proto == kProtoTcp) {
            fwd6++;
            EXPECT_EQ(f->pkt.ip6->hop_limit, 63);
        } else if (f->pkt.ip4 && f->pkt.l4_proto == kProtoIcmp) {
            te4++;
            check_icmp4_error(*f, 11, 0, 0, l3_of(in[10].second));
        }
    }
    EXPECT_EQ(na, 1);
    EXPECT_EQ(fwd6, 1);
    EXPECT_EQ(te4, 1);

    // Pod B: IPv4 and IPv6 from pod A, ARP reply, echo reply, time exceeded for packet 7.
    ASSERT_EQ(b.size(), 5u);
    int fwd4 = 0, fwd6b = 0, arp = 0, echo = 0, te6 = 0;
    for (const Frame *f : b) {
        if (f->pkt.arp) {
            arp++;
            EXPECT_EQ(f->pkt.arp->op, 2);
            EXPECT_EQ(f->pkt.arp->sha, kGwMac);
            EXPECT_EQ(f->pkt.arp->tip, kPodB4);
        } else if (f->pkt.ip4 && f->pkt.l4_proto == kProtoUdp) {
            fwd4++;
            EXPECT_EQ(f->pkt.ip4->id, 100);
            EXPECT_EQ(f->pkt.ip4->ttl, 63);
            EXPECT_TRUE(f->pkt.ip4->header_checksum_ok);
        } else if (f->pkt.ip4 && f->pkt.l4_proto == kProtoIcmp) {
            echo++;
            EXPECT_EQ(f->pkt.l4()[0], 0);
            EXPECT_EQ(f->pkt.ip4->src, kGw4);
            EXPECT_TRUE(f->pkt.l4_checksum_ok());
        } else if (f->pkt.ip6 && f->pkt.l4_proto == kProtoUdp) {
            fwd6b++;
            EXPECT_EQ(f->pkt.ip6->src, kPodA6);
        } else if (f->pkt.ip6 && f->pkt.l4_proto == kProtoIcmp6) {
            te6++;
            check_icmp6_error(*f, 3, 0, 0, l3_of(in[7].second));
        }
    }
    EXPECT_EQ(fwd4, 1);
    EXPECT_EQ(fwd6b, 1);
    EXPECT_EQ(arp, 1);
    EXPECT_EQ(echo, 1);
    EXPECT_EQ(te6, 1);

    // Uplink: packet 13.
    ASSERT_EQ(up.size(), 1u);
    check_eth_to(*up[0], Side::kUplink, kTypeIp4);
    EXPECT_EQ(up[0]->pkt.ip4->id, 113);
}

}  // namespace
}  // namespace fwd::dp::test
