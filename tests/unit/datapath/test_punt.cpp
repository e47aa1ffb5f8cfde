// The way to the control thread and the next hops it changes under the
// workers:
//  - Worker::punt: the reason in the packet's metadata, the per-worker rate
//    limit, the ring's capacity;
//  - what is punted: ARP replies / gratuitous ARP and Neighbor
//    Advertisements on the uplink (kNeighbor), traffic for the node's own
//    stack with NodeAddrs::host_punt (kHost), packets routed to a next hop
//    whose neighbor is not resolved yet (kResolve);
//  - next hops: nh_set_resolved / nh_set_unresolved on a live route, ECMP
//    groups (spread, stability, groups of one, bad members);
//  - WorkerCommand::kTx: frames the control thread sends through a worker.
// Each test: packet-build, setup, check; every mbuf back in the pool at the end.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "fwd/dp/meta.hpp"
#include "fwd/net/addr.hpp"
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint16_t kArpRequest = 1;
constexpr uint16_t kArpReply = 2;
constexpr uint8_t kNdNa = 136;
constexpr uint8_t kOptSourceLl = 1;
constexpr uint8_t kOptTargetLl = 2;
constexpr uint32_t kNaRouter = 0x80000000;
constexpr uint32_t kNaSolicited = 0x40000000;
constexpr uint32_t kNaOverride = 0x20000000;

const Mac kZeroMac{};
const uint32_t kRouter4 = ip4("192.168.50.1");
const Ip6 kRouter6 = ip6("fd00:50::1");
const Ip6 kRouterLl6 = ip6("fe80::1");
// A link-local address on the uplink that is not the gateway's: the kernel's.
const Ip6 kKernelLl6 = ip6("fe80::200:ff:fe00:fe");
const Ip6 kAllRouters6 = ip6("ff02::2");
const Mac kAllRoutersMac = {0x33, 0x33, 0x00, 0x00, 0x00, 0x02};
const Ip6 kNodeSnm6 = ip6("ff02::1:ff00:10");  // solicited-node group of fd00:50::10
const Mac kNodeSnmMac = {0x33, 0x33, 0xff, 0x00, 0x00, 0x10};
const Ip6 kMdns6 = ip6("ff02::fb");
const Mac kMdnsMac = {0x33, 0x33, 0x00, 0x00, 0x00, 0xfb};

// Prefixes the tests route through next hops they make themselves.
const uint32_t kTestNet4 = ip4("10.68.0.0");  // /16
const uint32_t kTestDst4 = ip4("10.68.0.5");
const Ip6 kTestNet6 = ip6("fd00:68::");  // /32
const Ip6 kTestDst6 = ip6("fd00:68::5");

Mac member_mac(unsigned i) {
    return {0x02, 0x00, 0x00, 0x00, 0x01, static_cast<uint8_t>(i)};
}

// A punted packet as the control thread sees it.
struct Punted {
    PuntReason reason;
    uint32_t nh;
    Bytes frame;
};

// Drops the VLAN tag of a built frame (what eth_input does).
Bytes untagged(const Bytes &tagged) {
    Bytes b(tagged);
    b.erase(b.begin() + 12, b.begin() + 16);
    return b;
}

class Punt : public DatapathTest {
  protected:
    void TearDown() override {
        added_.release();
        set_host_punt(false);
        DatapathTest::TearDown();
    }

    void set_host_punt(bool on) {
        NodeAddrs n = lab().tables().node();
        n.host_punt = on;
        lab().tables().set_node(n);
    }

    // A next hop out of side s (our MAC on that side as source).
    uint32_t add_nh(NhKind kind, Side s, const Mac &dst, uint16_t mtu = kUplinkMtu) {
        NextHop nh{};
        nh.kind = kind;
        nh.port = lab().port(s);
        nh.dst_mac = dst;
        nh.src_mac = s == Side::kUplink ? kUplinkMac : kGwMac;
        nh.mtu = mtu;
        return added_.nh(nh);
    }

    // An ECMP next hop over members, as the control thread makes one.
    uint32_t add_group(const std::vector<uint32_t> &members) {
        uint32_t g = added_.group(members);
        NextHop nh{};
        nh.kind = NhKind::kGroup;
        nh.group = g;
        nh.group_n = static_cast<uint8_t>(members.size());
        return added_.nh(nh);
    }

    // 10.68.0.0/16 and fd00:68::/32 through next hop id.
    void route_test_nets(uint32_t id) {
        net::Prefix4 p4{net::Ip4Addr::from_host(kTestNet4), 16};
        net::Prefix6 p6{net::Ip6Addr::from_bytes(kTestNet6.data()), 32};
        added_.add4(p4, id);
        added_.add6(p6, id);
    }

    // Everything the worker punted, in order; the mbufs go back to the pool.
    std::vector<Punted> take_punted() {
        std::vector<Punted> v;
        rte_mbuf *m;
        while (worker().pop_punt(m)) {
            Bytes b(m->pkt_len);
            const void *p = rte_pktmbuf_read(m, 0, m->pkt_len, b.data());
            if (p != b.data() && !b.empty()) {
                std::memcpy(b.data(), p, m->pkt_len);
            }
            v.push_back(Punted{Worker::punt_reason(m), meta(m).nh, std::move(b)});
            rte_pktmbuf_free(m);
        }
        return v;
    }

    uint64_t punted(PuntReason r) { return worker().stats().punted[static_cast<size_t>(r)].get(); }

    // More packets than one burst: process() in bursts of kBurst, as the poll loop does.
    Sent run_many(Side s, const std::vector<PacketBuilder> &pkts) {
        std::vector<rte_mbuf *> mbufs;
        for (const auto &b : pkts) {
            rte_mbuf *m = b.mbuf(lab().pool(), lab().port(s));
            if (m == nullptr) {
                ADD_FAILURE() << "cannot build an mbuf";
                rte_pktmbuf_free_bulk(mbufs.data(), static_cast<unsigned>(mbufs.size()));
                return {};
            }
            mbufs.push_back(m);
        }
        for (size_t i = 0; i < mbufs.size(); i += kBurst) {
            auto n = static_cast<uint16_t>(std::min<size_t>(kBurst, mbufs.size() - i));
            worker().process(mbufs.data() + i, n);
            worker().flush_tx();
        }
        return Sent{drain_tx()};
    }

    // One packet, expected punted unchanged with reason r and nothing else.
    void expect_punted(Side s, const PacketBuilder &in, PuntReason r) {
        Sent out = run(s, in);
        EXPECT_TRUE(out.frames.empty()) << out.frames.size() << " frame(s) sent";
        EXPECT_EQ(drops(), want({}));
        auto p = take_punted();
        ASSERT_EQ(p.size(), 1u);
        EXPECT_EQ(p[0].reason, r) << punt_reason_name(p[0].reason);
        EXPECT_EQ(p[0].frame, in.build()) << "a punted packet is not changed";
        EXPECT_EQ(punted(r), 1u);
    }

    // One packet, expected dropped with reason, nothing sent or punted.
    void expect_dropped(Side s, const PacketBuilder &in, DropReason reason) {
        Sent out = run(s, in);
        EXPECT_TRUE(out.frames.empty()) << out.frames.size() << " frame(s) sent";
        EXPECT_EQ(drops(), want({{reason, 1}}));
        EXPECT_TRUE(take_punted().empty());
    }

    // Runs one packet and returns the single frame sent, checking nothing
    // was dropped or punted.
    Frame expect_answered(Side s, const PacketBuilder &in) {
        Sent out = run(s, in);
        EXPECT_EQ(drops(), want({}));
        EXPECT_TRUE(take_punted().empty());
        EXPECT_EQ(out.frames.size(), 1u);
        return out.frames.empty() ? Frame{} : out.frames[0];
    }

  private:
    TestRoutes added_;
};

// --- the punt reasons ---

TEST(PuntReasonNames, AreStable) {
    EXPECT_EQ(punt_reason_name(PuntReason::kHost), "host");
    EXPECT_EQ(punt_reason_name(PuntReason::kNeighbor), "neighbor");
    EXPECT_EQ(punt_reason_name(PuntReason::kResolve), "resolve");
    EXPECT_EQ(kPuntReasonCount, 3u);
}

// --- ARP on the uplink: kNeighbor, whatever host_punt ---

class PuntNeighbor : public Punt, public ::testing::WithParamInterface<bool> {
  protected:
    void SetUp() override {
        Punt::SetUp();
        set_host_punt(GetParam());
    }
};

TEST_P(PuntNeighbor, ArpReplyForTheNodeAddress) {
    // packet-build: the router answers the control thread's request
    auto in = PacketBuilder()
                  .eth(kRouterMac, kUplinkMac)
                  .arp(kArpReply, kRouterMac, kRouter4, kUplinkMac, kNode4);
    // check
    expect_punted(Side::kUplink, in, PuntReason::kNeighbor);
}

TEST_P(PuntNeighbor, GratuitousArpRequestAndReply) {
    auto req = PacketBuilder()
                   .eth(kRouterMac, kBroadcastMac)
                   .arp(kArpRequest, kRouterMac, kRouter4, kZeroMac, kRouter4);
    expect_punted(Side::kUplink, req, PuntReason::kNeighbor);
    auto rep = PacketBuilder()
                   .eth(kRouterMac, kBroadcastMac)
                   .arp(kArpReply, kRouterMac, kRouter4, kBroadcastMac, kRouter4);
    Sent out = run(Side::kUplink, rep);
    EXPECT_TRUE(out.frames.empty());
    auto p = take_punted();
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].reason, PuntReason::kNeighbor);
    EXPECT_EQ(p[0].frame, rep.build());
    EXPECT_EQ(punted(PuntReason::kNeighbor), 2u);
}

TEST_P(PuntNeighbor, VlanTaggedArpReplyArrivesUntagged) {
    // setup
    port_state(Side::kUplink).vlan = kUplinkVlan;
    // packet-build
    auto in = PacketBuilder()
                  .eth(kRouterMac, kUplinkMac)
                  .vlan(kUplinkVlan)
                  .arp(kArpReply, kRouterMac, kRouter4, kUplinkMac, kNode4);
    Sent out = run(Side::kUplink, in);
    // check: the tag was stripped by eth_input, nothing else changed
    EXPECT_TRUE(out.frames.empty());
    auto p = take_punted();
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].reason, PuntReason::kNeighbor);
    EXPECT_EQ(p[0].frame, untagged(in.build()));
}

TEST_P(PuntNeighbor, ArpReplyForAnotherAddressIsDropped) {
    auto in = PacketBuilder()
                  .eth(kRouterMac, kUplinkMac)
                  .arp(kArpReply, kRouterMac, kRouter4, kUplinkMac, ip4("192.168.50.99"));
    expect_dropped(Side::kUplink, in, DropReason::kArpReply);
}

TEST_P(PuntNeighbor, ArpProbeIsDropped) {
    auto in = PacketBuilder()
                  .eth(kRouterMac, kBroadcastMac)
                  .arp(kArpRequest, kRouterMac, 0, kZeroMac, kNode4);
    expect_dropped(Side::kUplink, in, DropReason::kArpGratuitous);
}

TEST_P(PuntNeighbor, ArpOnPodPortsIsNotPunted) {
    // A pod's gratuitous ARP and a pod's reply naming the node address.
    auto grat = PacketBuilder()
                    .eth(kPodAMac, kBroadcastMac)
                    .arp(kArpRequest, kPodAMac, kPodA4, kZeroMac, kPodA4);
    expect_dropped(Side::kPodA, grat, DropReason::kArpGratuitous);
    auto rep =
        PacketBuilder().eth(kPodAMac, kGwMac).arp(kArpReply, kPodAMac, kPodA4, kGwMac, kNode4);
    Sent out = run(Side::kPodA, rep);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kArpGratuitous, 1}, {DropReason::kArpReply, 1}}));
    EXPECT_TRUE(take_punted().empty());
}

TEST_P(PuntNeighbor, ArpRequestForTheNodeIsStillAnswered) {
    auto req = PacketBuilder()
                   .eth(kRouterMac, kBroadcastMac)
                   .arp(kArpRequest, kRouterMac, kRouter4, kZeroMac, kNode4);
    Frame f = expect_answered(Side::kUplink, req);
    EXPECT_EQ(f.side, Side::kUplink);
    ASSERT_TRUE(f.pkt.arp.has_value());
    EXPECT_EQ(f.pkt.arp->op, kArpReply);
    EXPECT_EQ(f.pkt.arp->sha, kUplinkMac);
    EXPECT_EQ(f.pkt.arp->sip, kNode4);
}

// --- Neighbor Advertisements on the uplink: kNeighbor, whatever host_punt ---

PacketBuilder uplink_na(const Mac &eth_dst, const Ip6 &dst, uint32_t flags,
                        uint8_t hop_limit = 255) {
    return std::move(PacketBuilder()
                         .eth(kRouterMac, eth_dst)
                         .ip6(kRouterLl6, dst)
                         .hop_limit(hop_limit)
                         .na(kRouter6, flags)
                         .nd_option_ll(kOptTargetLl, kRouterMac));
}

TEST_P(PuntNeighbor, NaToTheNodeAddress) {
    expect_punted(Side::kUplink,
                  uplink_na(kUplinkMac, kNode6, kNaRouter | kNaSolicited | kNaOverride),
                  PuntReason::kNeighbor);
}

TEST_P(PuntNeighbor, NaToTheGatewayLinkLocal) {
    expect_punted(Side::kUplink, uplink_na(kUplinkMac, kGw6, kNaSolicited | kNaOverride),
                  PuntReason::kNeighbor);
}

TEST_P(PuntNeighbor, NaToAnotherLinkLocal) {
    expect_punted(Side::kUplink, uplink_na(kUplinkMac, kKernelLl6, kNaSolicited),
                  PuntReason::kNeighbor);
}

TEST_P(PuntNeighbor, UnsolicitedNaToAllNodes) {
    expect_punted(Side::kUplink, uplink_na(kAllNodesMac, kAllNodes6, kNaOverride),
                  PuntReason::kNeighbor);
}

TEST_P(PuntNeighbor, InvalidNasAreDropped) {
    // RFC 4861 7.1.2: hop limit 255; Solicited never set towards a group;
    // checksum; code 0; at least 24 bytes.
    expect_dropped(Side::kUplink, uplink_na(kUplinkMac, kNode6, kNaSolicited, 64),
                   DropReason::kNdInvalid);
    auto to_group_solicited = uplink_na(kAllNodesMac, kAllNodes6, kNaSolicited);
    auto bad_sum = uplink_na(kUplinkMac, kNode6, kNaSolicited).bad_l4_checksum();
    auto bad_code = PacketBuilder()
                        .eth(kRouterMac, kUplinkMac)
                        .ip6(kRouterLl6, kNode6)
                        .hop_limit(255)
                        .icmp(kNdNa, 1, kNaSolicited)
                        .payload(Bytes(kRouter6.begin(), kRouter6.end()));
    auto short_na = PacketBuilder()
                        .eth(kRouterMac, kUplinkMac)
                        .ip6(kRouterLl6, kNode6)
                        .hop_limit(255)
                        .icmp(kNdNa, 0, kNaSolicited)
                        .payload(8);
    Sent out = run({{Side::kUplink, to_group_solicited},
                    {Side::kUplink, bad_sum},
                    {Side::kUplink, bad_code},
                    {Side::kUplink, short_na}});
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kNdInvalid, 5}}));
    EXPECT_TRUE(take_punted().empty());
}

TEST_P(PuntNeighbor, NsForTheNodeIsStillAnswered) {
    auto ns = PacketBuilder()
                  .eth(kRouterMac, kNodeSnmMac)
                  .ip6(kRouterLl6, kNodeSnm6)
                  .hop_limit(255)
                  .ns(kNode6)
                  .nd_option_ll(kOptSourceLl, kRouterMac);
    Frame f = expect_answered(Side::kUplink, ns);
    EXPECT_EQ(f.side, Side::kUplink);
    ASSERT_TRUE(f.pkt.ip6.has_value());
    EXPECT_EQ(f.pkt.ip6->src, kNode6);
    EXPECT_EQ(f.pkt.ip6->dst, kRouterLl6);
    ASSERT_GE(f.pkt.l4().size(), 1u);
    EXPECT_EQ(f.pkt.l4()[0], kNdNa);
}

TEST_P(PuntNeighbor, NaFromAPodIsNotPunted) {
    auto na = PacketBuilder()
                  .eth(kPodAMac, kAllNodesMac)
                  .ip6(kPodALl6, kAllNodes6)
                  .hop_limit(255)
                  .na(kPodALl6, kNaOverride)
                  .nd_option_ll(kOptTargetLl, kPodAMac);
    expect_dropped(Side::kPodA, na, DropReason::kNdUnhandled);
}

INSTANTIATE_TEST_SUITE_P(HostPunt, PuntNeighbor, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool> &i) {
                             return i.param ? std::string("On") : std::string("Off");
                         });

// --- the node's own traffic: kHost with host_punt ---

class PuntHost : public Punt {
  protected:
    void SetUp() override {
        Punt::SetUp();
        set_host_punt(true);
    }
};

TEST_F(PuntHost, EchoToTheNodeAddresses) {
    // From the uplink and from a pod; TTL / hop limit untouched (checked by
    // comparing the frames).
    expect_punted(Side::kUplink, from_uplink().ip4(kVia4, kNode4).ttl(1).echo_request().payload(56),
                  PuntReason::kHost);
}

TEST_F(PuntHost, Echo6ToTheNodeAddress) {
    expect_punted(Side::kUplink,
                  from_uplink().ip6(kVia6, kNode6).hop_limit(1).echo_request().payload(56),
                  PuntReason::kHost);
}

TEST_F(PuntHost, EchoFromAPodToTheNode) {
    auto e4 = from_pod_a().ip4(kPodA4, kNode4).echo_request().payload(20);
    auto e6 = from_pod_a().ip6(kPodA6, kNode6).echo_request().payload(20);
    Sent out = run({{Side::kPodA, e4}, {Side::kPodA, e6}});
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({}));
    auto p = take_punted();
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].reason, PuntReason::kHost);
    EXPECT_EQ(p[0].frame, e4.build());
    EXPECT_EQ(p[1].reason, PuntReason::kHost);
    EXPECT_EQ(p[1].frame, e6.build());
    EXPECT_EQ(punted(PuntReason::kHost), 2u);
}

TEST_F(PuntHost, TcpSynToTheNode) {
    expect_punted(Side::kUplink, from_uplink().ip4(kRouter4, kNode4).tcp(40000, 179),
                  PuntReason::kHost);
}

TEST_F(PuntHost, Tcp6SynToTheNode) {
    expect_punted(Side::kUplink, from_uplink().ip6(kRouter6, kNode6).tcp(40000, 179),
                  PuntReason::kHost);
}

TEST_F(PuntHost, UdpAndFragmentsToTheNode) {
    auto udp = from_pod_b().ip4(kPodB4, kNode4).udp(5353, 10250).payload(30);
    auto frag = from_uplink().ip4(kVia4, kNode4).frag_offset(100).next_proto(kProtoUdp).payload(64);
    auto udp6 = from_pod_b().ip6(kPodB6, kNode6).udp(5353, 10250).payload(30);
    auto frag6 =
        from_uplink().ip6(kVia6, kNode6).fragment(100, false).next_proto(kProtoUdp).payload(64);
    Sent out = run(
        {{Side::kPodB, udp}, {Side::kUplink, frag}, {Side::kPodB, udp6}, {Side::kUplink, frag6}});
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({}));
    EXPECT_EQ(take_punted().size(), 4u);
    EXPECT_EQ(punted(PuntReason::kHost), 4u);
}

TEST_F(PuntHost, TheGatewaysAreStillAnswered) {
    // Echo to 169.254.1.1 and fe80::ecee:eeff:feee:eeee, ARP and NS for them.
    Frame f4 =
        expect_answered(Side::kPodA, from_pod_a().ip4(kPodA4, kGw4).echo_request(1, 1).payload(20));
    ASSERT_TRUE(f4.pkt.ip4.has_value());
    EXPECT_EQ(f4.pkt.ip4->src, kGw4);
    ASSERT_FALSE(f4.pkt.l4().empty());
    EXPECT_EQ(f4.pkt.l4()[0], 0) << "echo reply";
    Frame f6 =
        expect_answered(Side::kPodA, from_pod_a().ip6(kPodA6, kGw6).echo_request(1, 1).payload(20));
    ASSERT_TRUE(f6.pkt.ip6.has_value());
    EXPECT_EQ(f6.pkt.ip6->src, kGw6);
    ASSERT_FALSE(f6.pkt.l4().empty());
    EXPECT_EQ(f6.pkt.l4()[0], 129) << "echo reply";
    Frame a = expect_answered(Side::kPodA, PacketBuilder()
                                               .eth(kPodAMac, kBroadcastMac)
                                               .arp(kArpRequest, kPodAMac, kPodA4, kZeroMac, kGw4));
    ASSERT_TRUE(a.pkt.arp.has_value());
    EXPECT_EQ(a.pkt.arp->op, kArpReply);
    Frame n = expect_answered(Side::kPodA, PacketBuilder()
                                               .eth(kPodAMac, kGwSnmMac)
                                               .ip6(kPodALl6, kGwSnm6)
                                               .hop_limit(255)
                                               .ns(kGw6)
                                               .nd_option_ll(kOptSourceLl, kPodAMac));
    ASSERT_TRUE(n.pkt.ip6.has_value());
    ASSERT_FALSE(n.pkt.l4().empty());
    EXPECT_EQ(n.pkt.l4()[0], kNdNa);
}

TEST_F(PuntHost, ForwardedTrafficIsNotPunted) {
    Frame f = expect_answered(Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).udp(1, 2));
    check_eth_to(f, Side::kUplink, kTypeIp4);
}

TEST_F(PuntHost, UplinkLinkLocalOtherThanTheGateway) {
    expect_punted(Side::kUplink, from_uplink().ip6(kRouterLl6, kKernelLl6).tcp(40000, 179),
                  PuntReason::kHost);
}

TEST_F(PuntHost, LinkLocalFromAPodIsNotPunted) {
    expect_dropped(Side::kPodA, from_pod_a().ip6(kPodALl6, kKernelLl6).tcp(40000, 179),
                   DropReason::kIp6LinkLocalDest);
}

TEST_F(PuntHost, UplinkHostGroups) {
    // UDP to ff02::1, ff02::2 and the node's solicited-node group; an RA
    // and an MLD query to ff02::1; an NS to the node's group for a target the
    // dataplane does not answer.
    std::vector<std::pair<Side, PacketBuilder>> in = {
        {Side::kUplink,
         PacketBuilder().eth(kRouterMac, kAllNodesMac).ip6(kRouterLl6, kAllNodes6).udp(1, 2)},
        {Side::kUplink,
         PacketBuilder().eth(kRouterMac, kAllRoutersMac).ip6(kRouterLl6, kAllRouters6).udp(1, 2)},
        {Side::kUplink,
         PacketBuilder().eth(kRouterMac, kNodeSnmMac).ip6(kRouterLl6, kNodeSnm6).udp(1, 2)},
        {Side::kUplink, PacketBuilder()
                            .eth(kRouterMac, kAllNodesMac)
                            .ip6(kRouterLl6, kAllNodes6)
                            .hop_limit(255)
                            .icmp(134, 0, 0x40000708)
                            .payload(8)},
        {Side::kUplink, PacketBuilder()
                            .eth(kRouterMac, kAllNodesMac)
                            .ip6(kRouterLl6, kAllNodes6)
                            .hop_limit(1)
                            .icmp(130, 0, 0x03e80000)
                            .payload(16)},
        {Side::kUplink, PacketBuilder()
                            .eth(kRouterMac, kNodeSnmMac)
                            .ip6(kRouterLl6, kNodeSnm6)
                            .hop_limit(255)
                            .ns(ip6("fe80::1:ff00:10"))
                            .nd_option_ll(kOptSourceLl, kRouterMac)},
    };
    Sent out = run(in);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({}));
    auto p = take_punted();
    ASSERT_EQ(p.size(), in.size());
    for (size_t i = 0; i < p.size(); i++) {
        EXPECT_EQ(p[i].reason, PuntReason::kHost) << i;
        EXPECT_EQ(p[i].frame, in[i].second.build()) << i;
    }
}

TEST_F(PuntHost, OtherGroupsAndPodsAreNotPunted) {
    // mDNS (ff02::fb) on the uplink; ff02::1 from a pod; an RS from a pod.
    auto mdns = PacketBuilder().eth(kRouterMac, kMdnsMac).ip6(kRouterLl6, kMdns6).udp(5353, 5353);
    auto pod = PacketBuilder().eth(kPodAMac, kAllNodesMac).ip6(kPodALl6, kAllNodes6).udp(1, 2);
    auto rs = PacketBuilder()
                  .eth(kPodAMac, kAllRoutersMac)
                  .ip6(kPodALl6, kAllRouters6)
                  .hop_limit(255)
                  .rs()
                  .nd_option_ll(kOptSourceLl, kPodAMac);
    Sent out = run({{Side::kUplink, mdns}, {Side::kPodA, pod}, {Side::kPodA, rs}});
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kIp6Multicast, 2}, {DropReason::kNdUnhandled, 1}}));
    EXPECT_TRUE(take_punted().empty());
}

// Without host_punt, today's answers and drops stay.
class NoHostPunt : public Punt {};

TEST_F(NoHostPunt, EchoToTheNodeIsAnswered) {
    Frame f4 = expect_answered(Side::kUplink,
                               from_uplink().ip4(kVia4, kNode4).echo_request(2, 2).payload(20));
    ASSERT_TRUE(f4.pkt.ip4.has_value());
    EXPECT_EQ(f4.pkt.ip4->src, kNode4);
    Frame f6 = expect_answered(Side::kUplink,
                               from_uplink().ip6(kVia6, kNode6).echo_request(2, 2).payload(20));
    ASSERT_TRUE(f6.pkt.ip6.has_value());
    EXPECT_EQ(f6.pkt.ip6->src, kNode6);
}

TEST_F(NoHostPunt, HostTrafficIsDropped) {
    std::vector<std::pair<Side, PacketBuilder>> in = {
        {Side::kUplink, from_uplink().ip4(kRouter4, kNode4).tcp(40000, 179)},
        {Side::kUplink, from_uplink().ip6(kRouter6, kNode6).tcp(40000, 179)},
        {Side::kUplink, from_uplink().ip6(kRouterLl6, kKernelLl6).tcp(40000, 179)},
        {Side::kUplink, from_uplink().ip6(kRouterLl6, kKernelLl6).echo_request()},
        {Side::kUplink,
         PacketBuilder().eth(kRouterMac, kAllNodesMac).ip6(kRouterLl6, kAllNodes6).udp(1, 2)},
        {Side::kUplink, PacketBuilder()
                            .eth(kRouterMac, kNodeSnmMac)
                            .ip6(kRouterLl6, kNodeSnm6)
                            .hop_limit(255)
                            .ns(ip6("fe80::1:ff00:10"))
                            .nd_option_ll(kOptSourceLl, kRouterMac)},
    };
    Sent out = run(in);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kLocalUnhandled, 2},
                             {DropReason::kIp6LinkLocalDest, 2},
                             {DropReason::kIp6Multicast, 1},
                             {DropReason::kNdTargetUnknown, 1}}));
    EXPECT_TRUE(take_punted().empty());
}

// --- next hops waiting for their neighbor: kResolve ---

TEST_F(Punt, ResolvePuntsWithTheNextHop) {
    // setup: the control thread knows the next hop's port, not its MAC yet
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    route_test_nets(nh);
    // packet-build
    auto in4 = from_pod_a().ip4(kPodA4, kTestDst4).ttl(64).udp(1, 2).payload(100);
    auto in6 = from_pod_a().ip6(kPodA6, kTestDst6).hop_limit(64).udp(1, 2).payload(100);
    Sent out = run({{Side::kPodA, in4}, {Side::kPodA, in6}});
    // check: both punted unchanged (no TTL / hop limit decrement), meta.nh set
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({}));
    auto p = take_punted();
    ASSERT_EQ(p.size(), 2u);
    for (size_t i = 0; i < 2; i++) {
        EXPECT_EQ(p[i].reason, PuntReason::kResolve);
        EXPECT_EQ(p[i].nh, nh);
    }
    EXPECT_EQ(p[0].frame, in4.build());
    EXPECT_EQ(p[1].frame, in6.build());
    EXPECT_EQ(punted(PuntReason::kResolve), 2u);
}

TEST_F(Punt, ResolveChecksTheMtuFirst) {
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac, 1280);
    route_test_nets(nh);
    auto df = from_pod_a().ip4(kPodA4, kTestDst4).df().udp(1, 2).payload(1300);
    auto nodf = from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2).payload(1300);
    auto big6 = from_pod_a().ip6(kPodA6, kTestDst6).udp(1, 2).payload(1300);
    Sent out = run({{Side::kPodA, df}, {Side::kPodA, nodf}, {Side::kPodA, big6}});
    EXPECT_EQ(drops(), want({{DropReason::kIp4FragNeeded, 1},
                             {DropReason::kIp4MtuExceeded, 1},
                             {DropReason::kIp6TooBig, 1}}));
    EXPECT_TRUE(take_punted().empty());
    auto back = out.on(Side::kPodA);
    ASSERT_EQ(back.size(), 2u);
    check_icmp4_error(*back[0], 3, 4, 1280, l3_of(df));
    check_icmp6_error(*back[1], 2, 0, 1280, l3_of(big6));
}

TEST_F(Punt, ResolveOnAPortThatIsDown) {
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    route_test_nets(nh);
    port_state(Side::kUplink).role.store(PortRole::kNone, std::memory_order_release);
    expect_dropped(Side::kPodA, from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2),
                   DropReason::kPortDown);
}

TEST_F(Punt, ResolvedAndUnresolvedFlipAnInstalledRoute) {
    // setup: a route through a next hop that is not resolved yet
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    route_test_nets(nh);
    auto in4 = from_pod_a().ip4(kPodA4, kTestDst4).ttl(10).udp(1, 2);
    auto in6 = from_pod_a().ip6(kPodA6, kTestDst6).hop_limit(10).udp(1, 2);
    auto both = std::vector<std::pair<Side, PacketBuilder>>{{Side::kPodA, in4}, {Side::kPodA, in6}};
    Tables &t = lab().tables();
    // check: punted
    EXPECT_TRUE(run(both).frames.empty());
    EXPECT_EQ(take_punted().size(), 2u);
    // the neighbor answers: forwarded to its MAC
    t.nh_set_resolved(nh, net::MacAddr(kRouterMac));
    EXPECT_EQ(load_kind(t.nh(nh)), NhKind::kVia);
    Sent out = run(both);
    ASSERT_EQ(out.frames.size(), 2u);
    check_eth_to(out.frames[0], Side::kUplink, kTypeIp4);
    EXPECT_EQ(out.frames[0].pkt.ip4->ttl, 9);
    check_eth_to(out.frames[1], Side::kUplink, kTypeIp6);
    EXPECT_EQ(out.frames[1].pkt.ip6->hop_limit, 9);
    EXPECT_TRUE(take_punted().empty());
    // the neighbor is lost: punted again
    t.nh_set_unresolved(nh);
    t.synchronize();
    EXPECT_EQ(load_kind(t.nh(nh)), NhKind::kResolve);
    EXPECT_TRUE(run(both).frames.empty());
    auto p = take_punted();
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].nh, nh);
    // it comes back with another MAC
    const Mac moved = mac("02:00:00:00:00:77");
    t.nh_set_resolved(nh, net::MacAddr(moved));
    out = run(both);
    ASSERT_EQ(out.frames.size(), 2u);
    EXPECT_EQ(out.frames[0].pkt.eth.dst, moved);
    EXPECT_EQ(out.frames[1].pkt.eth.dst, moved);
    EXPECT_EQ(drops(), want({}));
    EXPECT_EQ(punted(PuntReason::kResolve), 4u);
}

// --- ECMP ---

class Ecmp : public Punt {
  protected:
    // Four via members on the uplink, each with its own router MAC.
    std::vector<uint32_t> four_members() {
        std::vector<uint32_t> v;
        for (unsigned i = 0; i < 4; i++) {
            v.push_back(add_nh(NhKind::kVia, Side::kUplink, member_mac(i)));
        }
        return v;
    }

    // 256 flows (source ports) each way; how many went to each MAC.
    std::map<Mac, unsigned> spread(bool v6) {
        std::vector<PacketBuilder> in;
        for (uint16_t i = 0; i < 256; i++) {
            auto b = from_pod_a();
            if (v6) {
                b.ip6(kPodA6, kTestDst6).tcp(static_cast<uint16_t>(20000 + i), 443);
            } else {
                b.ip4(kPodA4, kTestDst4).udp(static_cast<uint16_t>(20000 + i), 53);
            }
            in.push_back(std::move(b));
        }
        Sent out = run_many(Side::kPodA, in);
        EXPECT_EQ(out.frames.size(), 256u);
        std::map<Mac, unsigned> by_mac;
        for (const Frame &f : out.frames) {
            EXPECT_EQ(f.side, Side::kUplink);
            EXPECT_EQ(f.pkt.eth.src, kUplinkMac);
            by_mac[f.pkt.eth.dst]++;
        }
        return by_mac;
    }

    // The MAC one packet left to.
    Mac sent_to(const PacketBuilder &b) {
        Sent out = run(Side::kPodA, b);
        EXPECT_EQ(out.frames.size(), 1u);
        return out.frames.empty() ? Mac{} : out.frames[0].pkt.eth.dst;
    }
};

TEST_F(Ecmp, SpreadsFlowsOverEveryMember) {
    route_test_nets(add_group(four_members()));
    for (bool v6 : {false, true}) {
        auto by_mac = spread(v6);
        EXPECT_EQ(by_mac.size(), 4u) << (v6 ? "IPv6" : "IPv4");
        for (unsigned i = 0; i < 4; i++) {
            EXPECT_GT(by_mac[member_mac(i)], 0u) << "member " << i << (v6 ? " IPv6" : " IPv4");
        }
    }
    EXPECT_EQ(drops(), want({}));
}

TEST_F(Ecmp, AFlowAlwaysTakesTheSameMember) {
    route_test_nets(add_group(four_members()));
    for (uint16_t port = 30000; port < 30016; port++) {
        auto b4 = from_pod_a().ip4(kPodA4, kTestDst4).tcp(port, 80).payload(10);
        auto b6 = from_pod_a().ip6(kPodA6, kTestDst6).udp(port, 80).payload(10);
        Mac first4 = sent_to(b4), first6 = sent_to(b6);
        for (int k = 0; k < 3; k++) {
            // Same flow, other payload and TTL: same member.
            EXPECT_EQ(sent_to(from_pod_a()
                                  .ip4(kPodA4, kTestDst4)
                                  .ttl(9)
                                  .tcp(port, 80, 0x10)
                                  .payload(static_cast<size_t>(100 + k))),
                      first4);
            EXPECT_EQ(sent_to(from_pod_a()
                                  .ip6(kPodA6, kTestDst6)
                                  .hop_limit(9)
                                  .udp(port, 80)
                                  .payload(static_cast<size_t>(100 + k))),
                      first6);
        }
    }
}

TEST_F(Ecmp, FragmentsOfADatagramTakeOneMember) {
    route_test_nets(add_group(four_members()));
    for (uint16_t id = 1; id <= 8; id++) {
        auto first = from_pod_a().ip4(kPodA4, kTestDst4).ip_id(id).mf().udp(id, 53).payload(64);
        auto later = from_pod_a()
                         .ip4(kPodA4, kTestDst4)
                         .ip_id(id)
                         .frag_offset(9)
                         .next_proto(kProtoUdp)
                         .payload(32);
        EXPECT_EQ(sent_to(first), sent_to(later)) << "datagram " << id;
        auto first6 =
            from_pod_a().ip6(kPodA6, kTestDst6).fragment(0, true, id).udp(id, 53).payload(64);
        auto later6 = from_pod_a()
                          .ip6(kPodA6, kTestDst6)
                          .fragment(9, false, id)
                          .next_proto(kProtoUdp)
                          .payload(32);
        EXPECT_EQ(sent_to(first6), sent_to(later6)) << "IPv6 datagram " << id;
    }
    EXPECT_EQ(drops(), want({}));
}

TEST_F(Ecmp, GroupOfOne) {
    uint32_t only = add_nh(NhKind::kVia, Side::kUplink, member_mac(7));
    route_test_nets(add_group({only}));
    for (bool v6 : {false, true}) {
        auto by_mac = spread(v6);
        EXPECT_EQ(by_mac.size(), 1u);
        EXPECT_EQ(by_mac[member_mac(7)], 256u);
    }
}

TEST_F(Ecmp, MembersOfEveryKind) {
    // A pod member forwards to the pod; a blackhole member drops.
    uint32_t pod = add_nh(NhKind::kPod, Side::kPodB, kPodBMac, kPodBMtu);
    route_test_nets(add_group({pod}));
    Frame f = expect_answered(Side::kPodA, from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2));
    check_eth_to(f, Side::kPodB, kTypeIp4);
    NextHop bh{};
    bh.kind = NhKind::kBlackhole;
    uint32_t hole = lab().tables().nh_alloc(bh);
    uint32_t g2 = add_group({hole});
    net::Prefix4 p4{net::Ip4Addr::from_host(ip4("10.70.0.0")), 16};
    ASSERT_EQ(lab().tables().add4(p4, g2), 0);
    Sent out = run(Side::kPodA, from_pod_a().ip4(kPodA4, ip4("10.70.0.1")).udp(1, 2));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kRouteBlackhole, 1}}));
    EXPECT_EQ(lab().tables().del4(p4), 0);
    lab().tables().nh_free(hole);
}

TEST_F(Ecmp, UnresolvedMemberIsPuntedWithTheMemberId) {
    uint32_t waiting = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    uint32_t group = add_group({waiting});
    route_test_nets(group);
    Sent out = run({{Side::kPodA, from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2)},
                    {Side::kPodA, from_pod_a().ip6(kPodA6, kTestDst6).udp(1, 2)}});
    EXPECT_TRUE(out.frames.empty());
    auto p = take_punted();
    ASSERT_EQ(p.size(), 2u);
    for (const auto &x : p) {
        EXPECT_EQ(x.reason, PuntReason::kResolve);
        EXPECT_EQ(x.nh, waiting) << "meta.nh must be the member, not the group " << group;
    }
}

TEST_F(Ecmp, MemberThatIsAGroupIsDropped) {
    uint32_t inner = add_group(four_members());
    route_test_nets(add_group({inner}));
    auto in4 = from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2).payload(10);
    auto in6 = from_pod_a().ip6(kPodA6, kTestDst6).udp(1, 2).payload(10);
    Sent out = run({{Side::kPodA, in4}, {Side::kPodA, in6}});
    EXPECT_EQ(drops(), want({{DropReason::kEcmpBadMember, 2}}));
    EXPECT_TRUE(take_punted().empty());
    auto back = out.on(Side::kPodA);
    ASSERT_EQ(back.size(), 2u);
    check_icmp4_error(*back[0], 3, 0, 0, l3_of(in4));
    check_icmp6_error(*back[1], 1, 0, 0, l3_of(in6));
}

TEST_F(Ecmp, GroupWithoutMembersIsDropped) {
    NextHop nh{};
    nh.kind = NhKind::kGroup;
    nh.group = 0;
    nh.group_n = 0;
    uint32_t id = lab().tables().nh_alloc(nh);
    route_test_nets(id);
    auto in4 = from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2);
    auto in6 = from_pod_a().ip6(kPodA6, kTestDst6).udp(1, 2);
    Sent out = run({{Side::kPodA, in4}, {Side::kPodA, in6}});
    EXPECT_EQ(drops(), want({{DropReason::kEcmpBadGroup, 2}}));
    EXPECT_EQ(out.on(Side::kPodA).size(), 2u) << "unreachable sent back";
    lab().tables().nh_free(id);
}

TEST_F(Ecmp, GroupAllocation) {
    Tables &t = lab().tables();
    uint32_t ids[kMaxGroupPaths + 1] = {};
    for (uint32_t i = 0; i <= kMaxGroupPaths; i++) {
        ids[i] = i + 1;
    }
    EXPECT_EQ(t.group_alloc(ids, 0), kGroupInvalid);
    EXPECT_EQ(t.group_alloc(ids, kMaxGroupPaths + 1), kGroupInvalid);
    uint32_t bad[1] = {kMaxNextHops};
    EXPECT_EQ(t.group_alloc(bad, 1), kGroupInvalid);
    // Full: every group in use, then one more.
    std::vector<uint32_t> all;
    for (uint32_t g = t.group_alloc(ids, kMaxGroupPaths); g != kGroupInvalid;
         g = t.group_alloc(ids, kMaxGroupPaths)) {
        all.push_back(g);
    }
    EXPECT_EQ(all.size(), kMaxGroups);
    EXPECT_EQ(std::set<uint32_t>(all.begin(), all.end()).size(), kMaxGroups);
    for (uint32_t i = 0; i < kMaxGroupPaths; i++) {
        EXPECT_EQ(t.group_member(all.back(), i), ids[i]);
    }
    for (uint32_t g : all) {
        t.group_free(g);
    }
    uint32_t again = t.group_alloc(ids, 2);
    EXPECT_NE(again, kGroupInvalid);
    t.group_free(again);
}

// --- the rate limit and the ring ---

PacketBuilder gratuitous(uint16_t n) {
    uint32_t a = kRouter4 + n;
    return std::move(PacketBuilder()
                         .eth(kRouterMac, kBroadcastMac)
                         .arp(kArpRequest, kRouterMac, a, kZeroMac, a));
}

class PuntRate : public Punt {
  protected:
    uint32_t punt_per_sec() const override { return 1; }  // a bucket of 10, one more a second
};

TEST_F(PuntRate, BucketExhausted) {
    std::vector<PacketBuilder> in;
    for (uint16_t i = 0; i < 15; i++) {
        in.push_back(gratuitous(i));
    }
    Sent out = run_many(Side::kUplink, in);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kPuntRateLimited, 5}}));
    EXPECT_EQ(punted(PuntReason::kNeighbor), 10u);
    auto p = take_punted();
    ASSERT_EQ(p.size(), 10u);
    EXPECT_EQ(p.front().frame, in.front().build()) << "the first ones go through";
}

TEST_F(PuntRate, ResolveCountsAgainstTheSameBucket) {
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    route_test_nets(nh);
    std::vector<PacketBuilder> in;
    for (uint16_t i = 0; i < 12; i++) {
        in.push_back(from_pod_a().ip6(kPodA6, kTestDst6).udp(i, 9));
    }
    run_many(Side::kPodA, in);
    EXPECT_EQ(drops(), want({{DropReason::kPuntRateLimited, 2}}));
    EXPECT_EQ(take_punted().size(), 10u);
}

class PuntOff : public Punt {
  protected:
    uint32_t punt_per_sec() const override { return 0; }
};

TEST_F(PuntOff, NothingIsPunted) {
    set_host_punt(true);
    Sent out = run({{Side::kUplink, gratuitous(1)},
                    {Side::kUplink, from_uplink().ip4(kRouter4, kNode4).tcp(1, 179)},
                    {Side::kUplink, from_uplink().ip6(kRouter6, kNode6).tcp(1, 179)}});
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kPuntRateLimited, 3}}));
    EXPECT_TRUE(take_punted().empty());
    for (size_t r = 0; r < kPuntReasonCount; r++) {
        EXPECT_EQ(punted(static_cast<PuntReason>(r)), 0u);
    }
}

class PuntRing : public Punt {
  protected:
    uint32_t punt_per_sec() const override { return 1000000; }  // the bucket never runs dry here
};

TEST_F(PuntRing, FullRingDrops) {
    // packet-build: more ARP than the ring holds, and nobody reading it
    constexpr uint16_t kRing = 1024;
    constexpr uint16_t kReserve = 256;  // Worker::kPuntSessionReserve: the node's TCP only
    std::vector<PacketBuilder> in;
    for (uint16_t i = 0; i < kRing + 40; i++) {
        in.push_back(gratuitous(i));
    }
    Sent out = run_many(Side::kUplink, in);
    // check: the ring took all but the reserve
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kPuntRingFull, kReserve + 40}}));
    EXPECT_EQ(punted(PuntReason::kNeighbor), kRing - kReserve);

    // packet-build: the node's TCP (BGP) on the full ring: the reserve takes it, in order
    set_host_punt(true);
    std::vector<PacketBuilder> tcp;
    for (uint16_t i = 0; i < kReserve + 10; i++) {
        tcp.push_back(
            from_uplink().ip4(kRouter4, kNode4).tcp(static_cast<uint16_t>(40000 + i), 179));
    }
    out = run_many(Side::kUplink, tcp);
    // check
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kPuntRingFull, kReserve + 50}}));
    EXPECT_EQ(punted(PuntReason::kHost), kReserve);
    auto p = take_punted();
    ASSERT_EQ(p.size(), kRing);
    EXPECT_EQ(p[kRing - kReserve - 1].frame, in[kRing - kReserve - 1].build())
        << "in order, the last ones dropped";
    EXPECT_EQ(p.back().frame, tcp[kReserve - 1].build());
    // The ring has room again once the control thread read it.
    run(Side::kUplink, gratuitous(9));
    EXPECT_EQ(take_punted().size(), 1u);
}

// --- frames the control thread sends: WorkerCommand::kTx ---

class HostTx : public Punt {
  protected:
    // Posts a kTx of b out of side s and lets the worker run its commands.
    uint64_t send(Side s, const PacketBuilder &b) {
        rte_mbuf *m = b.mbuf(lab().pool(), 0);
        EXPECT_NE(m, nullptr);
        WorkerCommand c{WorkerCommand::Kind::kTx, lab().port(s), 0, 0, m};
        uint64_t seq = worker().post(c);
        EXPECT_NE(seq, 0u);
        return seq;
    }
    Sent drain() {
        worker().drain_commands();
        worker().flush_tx();
        return Sent{drain_tx()};
    }
};

TEST_F(HostTx, SendsTheFrame) {
    // packet-build: what the host stack sends to the router
    auto b = PacketBuilder().eth(kUplinkMac, kRouterMac).ip4(kNode4, kRouter4).tcp(179, 40000);
    auto b6 = PacketBuilder().eth(kUplinkMac, kRouterMac).ip6(kNode6, kRouter6).tcp(179, 40000);
    uint64_t s1 = send(Side::kUplink, b);
    uint64_t s2 = send(Side::kUplink, b6);
    EXPECT_LT(worker().acked(), s1) << "not before the worker ran it";
    Sent out = drain();
    // check: sent as given, acknowledged, counted
    EXPECT_EQ(worker().acked(), s2);
    ASSERT_EQ(out.frames.size(), 2u);
    EXPECT_EQ(out.frames[0].side, Side::kUplink);
    EXPECT_EQ(out.frames[0].pkt.frame, b.build());
    EXPECT_EQ(out.frames[1].pkt.frame, b6.build());
    EXPECT_EQ(worker().stats().host_tx.get(), 2u);
    EXPECT_EQ(tx_packets(), 2u);
    EXPECT_EQ(drops(), want({}));
}

TEST_F(HostTx, VlanUplinkTagsTheFrame) {
    port_state(Side::kUplink).vlan = kUplinkVlan;
    auto b = PacketBuilder()
                 .eth(kUplinkMac, kBroadcastMac)
                 .arp(kArpRequest, kUplinkMac, kNode4, kZeroMac, kRouter4);
    send(Side::kUplink, b);
    Sent out = drain();
    ASSERT_EQ(out.frames.size(), 1u);
    ASSERT_TRUE(out.frames[0].pkt.eth.vlan_tci.has_value());
    EXPECT_EQ(*out.frames[0].pkt.eth.vlan_tci, kUplinkVlan);
    EXPECT_EQ(untagged(out.frames[0].pkt.frame), b.build());
    EXPECT_EQ(worker().stats().host_tx.get(), 1u);
}

TEST_F(HostTx, PortWithoutRoleDrops) {
    port_state(Side::kPodB).role.store(PortRole::kNone, std::memory_order_release);
    uint64_t seq = send(Side::kPodB, from_pod_a().ip4(kGw4, kPodB4).udp(1, 2));
    Sent out = drain();
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(worker().acked(), seq) << "acknowledged all the same";
    EXPECT_EQ(drops(), want({{DropReason::kPortDown, 1}}));
    EXPECT_EQ(worker().stats().host_tx.get(), 0u);
}

// kTxRouted: a packet parked by the control thread until its neighbor
// answered goes on as route + l2_rewrite would have sent it.
class HostTxRouted : public HostTx {
  protected:
    // Routes in4 / in6 to a next hop that is not resolved and returns the
    // punted mbufs, as the control thread holds them.
    std::vector<rte_mbuf *> park(uint32_t nh, const std::vector<PacketBuilder> &in) {
        route_test_nets(nh);
        run_many(Side::kPodA, in);
        std::vector<rte_mbuf *> v;
        rte_mbuf *m;
        while (worker().pop_punt(m)) {
            v.push_back(m);
        }
        EXPECT_EQ(v.size(), in.size());
        return v;
    }
    void post_routed(rte_mbuf *m) {
        WorkerCommand c{WorkerCommand::Kind::kTxRouted, 0, 0, 0, m};
        EXPECT_NE(worker().post(c), 0u);
    }
};

TEST_F(HostTxRouted, SentOnceResolved) {
    // setup: two packets parked on an unresolved next hop, which then resolves
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    auto in4 = from_pod_a().ip4(kPodA4, kTestDst4).ttl(30).udp(1, 2).payload(20);
    auto in6 = from_pod_a().ip6(kPodA6, kTestDst6).hop_limit(30).udp(1, 2).payload(20);
    auto parked = park(nh, {in4, in6});
    ASSERT_EQ(parked.size(), 2u);
    lab().tables().nh_set_resolved(nh, net::MacAddr(kRouterMac));
    for (rte_mbuf *m : parked) {
        post_routed(m);
    }
    Sent out = drain();
    // check: out of the uplink to the router, TTL / hop limit - 1
    ASSERT_EQ(out.frames.size(), 2u);
    check_eth_to(out.frames[0], Side::kUplink, kTypeIp4);
    ASSERT_TRUE(out.frames[0].pkt.ip4.has_value());
    EXPECT_EQ(out.frames[0].pkt.ip4->ttl, 29);
    EXPECT_TRUE(out.frames[0].pkt.ip4->header_checksum_ok);
    check_eth_to(out.frames[1], Side::kUplink, kTypeIp6);
    ASSERT_TRUE(out.frames[1].pkt.ip6.has_value());
    EXPECT_EQ(out.frames[1].pkt.ip6->hop_limit, 29);
    EXPECT_EQ(worker().stats().host_tx.get(), 2u);
    EXPECT_EQ(drops(), want({}));
}

TEST_F(HostTxRouted, StillUnresolvedIsPuntedAgain) {
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    auto in = from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2);
    auto parked = park(nh, {in});
    ASSERT_EQ(parked.size(), 1u);
    post_routed(parked[0]);
    Sent out = drain();
    EXPECT_TRUE(out.frames.empty());
    auto p = take_punted();
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].reason, PuntReason::kResolve);
    EXPECT_EQ(p[0].nh, nh);
    EXPECT_EQ(p[0].frame, in.build());
    EXPECT_EQ(worker().stats().host_tx.get(), 0u);
}

TEST_F(HostTxRouted, NoUsableNextHopDrops) {
    uint32_t nh = add_nh(NhKind::kResolve, Side::kUplink, kZeroMac);
    auto parked = park(nh, {from_pod_a().ip4(kPodA4, kTestDst4).udp(1, 2),
                            from_pod_a().ip6(kPodA6, kTestDst6).udp(1, 2)});
    ASSERT_EQ(parked.size(), 2u);
    meta(parked[0]).nh = kNhInvalid;  // the next hop is gone
    lab().tables().nh_set_resolved(nh, net::MacAddr(kRouterMac));
    port_state(Side::kUplink).role.store(PortRole::kNone, std::memory_order_release);
    post_routed(parked[0]);
    post_routed(parked[1]);
    Sent out = drain();
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kNoRoute, 1}, {DropReason::kPortDown, 1}}));
    EXPECT_EQ(worker().stats().host_tx.get(), 0u);
}

TEST_F(HostTx, UntakenCommandsAreFreedWithTheWorker) {
    // A kTx the worker never ran: the Worker's destructor frees it (the
    // fixture's leak check at the end).
    send(Side::kUplink, from_uplink().ip4(kRouter4, kNode4).udp(1, 2));
}

}  // namespace
}  // namespace fwd::dp::test
