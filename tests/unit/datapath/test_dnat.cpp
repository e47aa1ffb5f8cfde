// Kubernetes Service DNAT (src/stages/nat.cpp, service_table.hpp) through
// the worker's whole path, IPv4 and IPv6 together: new flows to a frontend
// go to a backend and the replies come back from the frontend (every
// checksum summed again from scratch by the parser and compared); NodePorts
// on the local hook; SNAT where kube-proxy does it (external frontend with
// externalTrafficPolicy Cluster and a remote backend, hairpin, natOutgoing
// toward a backend outside the pools) and never with Local; reject and drop
// without endpoints; a flow whose backend is gone ended; ICMP errors about a
// DNAT flow translated both ways; new flows spread over the backends.
//
//   client pod A 10.65.0.2 / fd00:65::2 (also a backend, for the hairpin)
//   local backend pod B 10.65.0.3 / fd00:65::3, port 8080
//   remote backend 10.65.1.9 / fd00:65:1::9 (a pod on another node, via
//     the uplink), port 8080
//   outside client 203.0.113.5 / 2001:db8:99::5 (the ToR side)
//   node 192.168.50.10 / fd00:50::10 (NodePorts 30080, 30081, 30099)
#include <netinet/in.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "nat_lab.hpp"

namespace fwd::dp::test {
namespace {

struct Addr {
    uint32_t v4;
    Ip6 v6;
};

const Addr kA{kPodA4, kPodA6};
const Addr kB{kPodB4, kPodB6};
const Addr kRemote{kVia4, kVia6};
const Addr kNode{kNode4, kNode6};
const Addr kOut{kOut4, kOut6};
const Addr kRouter{kRouter4, kRouter6};
const Addr kVip{ip4("10.96.0.10"), ip6("fd00:96::a")};         // -> B
const Addr kVipSpread{ip4("10.96.0.40"), ip6("fd00:96::28")};  // -> B, remote
const Addr kVipRemote{ip4("10.96.0.60"), ip6("fd00:96::3c")};  // -> remote
const Addr kVipReject{ip4("10.96.0.20"), ip6("fd00:96::14")};  // no endpoint
const Addr kVipDrop{ip4("10.96.0.21"), ip6("fd00:96::15")};    // none allowed here
const Addr kVipHair{ip4("10.96.0.30"), ip6("fd00:96::1e")};    // -> A itself
const Addr kVipHost{ip4("10.96.0.50"), ip6("fd00:96::32")};    // -> a host outside the pools
const Addr kVipSticky{ip4("10.96.0.70"), ip6("fd00:96::46")};  // ClientIP: B, remote
const Addr kHostEp{ip4("203.0.113.77"), ip6("2001:db8:99::77")};
const Addr kExt{ip4("203.0.113.100"), ip6("2001:db8:99::100")};       // Cluster -> remote
const Addr kExtLocal{ip4("203.0.113.101"), ip6("2001:db8:99::101")};  // Local -> remote

constexpr uint16_t kBePort = 8080;
constexpr uint8_t kSctp = IPPROTO_SCTP;

std::array<uint8_t, 16> bytes(bool v6, const Addr &a) {
    std::array<uint8_t, 16> b{};
    if (v6) {
        std::copy(a.v6.begin(), a.v6.end(), b.begin());
    } else {
        const uint32_t be = rte_cpu_to_be_32(a.v4);
        std::memcpy(b.data(), &be, 4);
    }
    return b;
}

svc::Backend be(bool v6, const Addr &a, bool local) {
    return svc::Backend{bytes(v6, a), rte_cpu_to_be_16(kBePort),
                        static_cast<uint8_t>(svc::kBeReady | (local ? svc::kBeLocal : 0))};
}

struct BackendSpec {
    Addr addr;
    bool local;
    bool for_new = true;
};

svc::FrontendSpec fe(bool v6, const Addr &a, uint8_t proto, uint16_t port, uint8_t flags,
                     const std::vector<BackendSpec> &bs) {
    svc::FrontendSpec s;
    s.v6 = v6;
    s.addr = bytes(v6, a);
    s.proto = proto;
    s.port = port;
    s.flags = flags;
    for (const auto &b : bs) {
        s.backends.push_back(be(v6, b.addr, b.local));
        s.for_new.push_back(b.for_new);
    }
    return s;
}

// The lab's services, both families. vip_backends: those of kVip.
// sticky_backends: those of kVipSticky (sessionAffinity ClientIP, 60 s).
std::vector<svc::FrontendSpec> services(const std::vector<BackendSpec> &vip_backends = {{kB, true}},
                                        const std::vector<BackendSpec> &sticky_backends = {
                                            {kB, true}, {kRemote, false}}) {
    std::vector<svc::FrontendSpec> out;
    for (bool v6 : {false, true}) {
        for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}, kSctp}) {
            out.push_back(fe(v6, kVip, proto, 80, 0, vip_backends));
            out.push_back(fe(v6, kVipHair, proto, 80, 0, {{kA, true}}));
            out.push_back(fe(v6, kVipReject, proto, 80, svc::kFeReject, {}));
            out.push_back(fe(v6, kNode, proto, 30080, svc::kFeExternal, {{kB, true}}));
            out.push_back(fe(v6, kNode, proto, 30081, svc::kFeExternal, {{kRemote, false}}));
            out.push_back(fe(v6, kNode, proto, 30099, svc::kFeExternal | svc::kFeReject, {}));
            out.push_back(fe(v6, kExt, proto, 80, svc::kFeExternal, {{kRemote, false}}));
            out.push_back(fe(v6, kExtLocal, proto, 80, svc::kFeExternal | svc::kFeKeepSource,
                             {{kRemote, false}}));
        }
        out.push_back(fe(v6, kVipSpread, IPPROTO_UDP, 80, 0, {{kB, true}, {kRemote, false}}));
        out.push_back(fe(v6, kVipRemote, IPPROTO_UDP, 80, 0, {{kRemote, false}}));
        out.push_back(fe(v6, kVipDrop, IPPROTO_UDP, 80, svc::kFeDrop, {}));
        out.push_back(fe(v6, kVipHost, IPPROTO_TCP, 443, 0, {{kHostEp, false}}));
        auto sticky = fe(v6, kVipSticky, IPPROTO_UDP, 80, svc::kFeAffinity, sticky_backends);
        sticky.affinity_timeout_s = 60;
        out.push_back(sticky);
    }
    return out;
}

PacketBuilder ip(PacketBuilder b, bool v6, const Addr &src, const Addr &dst) {
    return v6 ? b.ip6(src.v6, dst.v6) : b.ip4(src.v4, dst.v4);
}

// Source and destination of a parsed packet are these.
::testing::AssertionResult addrs(const Parsed &p, bool v6, const Addr &src, const Addr &dst) {
    if (v6 ? !p.ip6 : !p.ip4) {
        return ::testing::AssertionFailure() << "not IPv" << (v6 ? 6 : 4);
    }
    const bool ok = v6 ? p.ip6->src == src.v6 && p.ip6->dst == dst.v6
                       : p.ip4->src == src.v4 && p.ip4->dst == dst.v4;
    return ok ? ::testing::AssertionSuccess() : ::testing::AssertionFailure() << "addresses";
}

// Every checksum of a packet, summed from scratch (the parser's).
::testing::AssertionResult sums(const Parsed &p) {
    if (p.ip4 && !p.ip4->header_checksum_ok) {
        return ::testing::AssertionFailure() << "IPv4 header checksum";
    }
    if (!p.l4_checksum_ok()) {
        return ::testing::AssertionFailure() << "L4 checksum";
    }
    return ::testing::AssertionSuccess();
}

// CRC32c, bit by bit (RFC 4960 appendix B), independent of the datapath's.
uint32_t crc32c(std::span<const uint8_t> d) {
    uint32_t c = 0xffffffffu;
    for (uint8_t x : d) {
        c ^= x;
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
        }
    }
    return ~c;
}

// An SCTP packet (common header and one DATA chunk) with its CRC32c.
Bytes sctp(uint16_t sport, uint16_t dport) {
    Bytes b = {static_cast<uint8_t>(sport >> 8),
               static_cast<uint8_t>(sport),
               0,
               0,
               0,
               0,
               0,
               0,
               0,
               0,
               0,
               0};
    b[2] = static_cast<uint8_t>(dport >> 8);
    b[3] = static_cast<uint8_t>(dport);
    b[4] = 0x11;  // verification tag
    const Bytes chunk = {0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 'd', 'a', 't', 'a'};
    b.insert(b.end(), chunk.begin(), chunk.end());
    const uint32_t c = crc32c(b);
    std::memcpy(&b[8], &c, 4);  // little-endian, as Linux stores it
    return b;
}

bool sctp_crc_ok(std::span<const uint8_t> l4) {
    Bytes b(l4.begin(), l4.end());
    uint32_t got;
    std::memcpy(&got, &b[8], 4);
    std::memset(&b[8], 0, 4);
    return got == crc32c(b);
}

class Dnat : public Nat {
  protected:
    void SetUp() override {
        Nat::SetUp();
        set_services(services());
    }
    // A TCP handshake from pod A's port sport to kVip:80, backend B.
    void handshake(bool v6, uint16_t sport) {
        one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).tcp(sport, 80, 0x02).tcp_seq(0, 0),
            Side::kPodB);
        one(Side::kPodB, ip(from_pod_b(), v6, kB, kA).tcp(kBePort, sport, 0x12).tcp_seq(500, 1),
            Side::kPodA);
        one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).tcp(sport, 80, 0x10).tcp_seq(1, 501),
            Side::kPodB);
    }
    // The only live flow of the table whose original source port is sport
    // (flushed and ended ones wait for ageing).
    ct::FlowInfo flow_of(uint16_t sport) {
        std::vector<ct::FlowInfo> fi(64);
        uint32_t cur = 0;
        fi.resize(ct().snapshot(&cur, {}, rte_rdtsc(), fi.data(), fi.size()));
        ct::FlowInfo out{};
        int n = 0;
        for (const auto &f : fi) {
            if (f.orig.sport.host() == sport && !(f.status & ct::kStatusDying)) {
                out = f;
                n++;
            }
        }
        EXPECT_EQ(n, 1) << "flows from port " << sport;
        return out;
    }
};

// --- ClusterIP ---

// A TCP handshake to a ClusterIP: to the backend, back from the frontend;
// not natOutgoing's although the ClusterIP is in no pool (the flow is the
// service's: the client's address reaches the pod backend).
TEST_F(Dnat, ClusterIpTcpBothWays) {
    for (bool v6 : {false, true}) {
        Parsed syn =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).tcp(33000, 80, 0x02).tcp_seq(0, 0),
                Side::kPodB);
        EXPECT_TRUE(addrs(syn, v6, kA, kB));
        EXPECT_TRUE(sums(syn));
        EXPECT_EQ(get16(syn.l4(), 0), 33000);
        EXPECT_EQ(get16(syn.l4(), 2), kBePort);
        Parsed sa =
            one(Side::kPodB, ip(from_pod_b(), v6, kB, kA).tcp(kBePort, 33000, 0x12).tcp_seq(500, 1),
                Side::kPodA);
        EXPECT_TRUE(addrs(sa, v6, kVip, kA));
        EXPECT_TRUE(sums(sa));
        EXPECT_EQ(get16(sa.l4(), 0), 80);
        EXPECT_EQ(get16(sa.l4(), 2), 33000);
        Parsed ack =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).tcp(33000, 80, 0x10).tcp_seq(1, 501),
                Side::kPodB);
        EXPECT_TRUE(addrs(ack, v6, kA, kB));
        const ct::FlowInfo f = flow_of(33000);
        EXPECT_EQ(f.nat.flags, nat::kNatDnat);
        EXPECT_EQ(f.state, ct::TcpState::kEstablished);
        ct().flush({});
    }
    EXPECT_EQ(drops(), want({}));
}

TEST_F(Dnat, ClusterIpUdpBothWays) {
    for (bool v6 : {false, true}) {
        Parsed o = one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).udp(40000, 80).payload(21),
                       Side::kPodB);
        EXPECT_TRUE(addrs(o, v6, kA, kB));
        EXPECT_TRUE(sums(o));
        EXPECT_EQ(get16(o.l4(), 2), kBePort);
        if (!v6) {
            EXPECT_EQ(o.ip4->ttl, 63);
        }
        Parsed r = one(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(kBePort, 40000).payload(33),
                       Side::kPodA);
        EXPECT_TRUE(addrs(r, v6, kVip, kA));
        EXPECT_TRUE(sums(r));
        EXPECT_EQ(get16(r.l4(), 0), 80);
    }
    EXPECT_EQ(ct().in_use(), 2u);
    EXPECT_EQ(drops(), want({}));
}

// SCTP: ports translated, the CRC32c summed again (no pseudo-header).
TEST_F(Dnat, ClusterIpSctpBothWays) {
    for (bool v6 : {false, true}) {
        Parsed o = one(Side::kPodA,
                       ip(from_pod_a(), v6, kA, kVip).next_proto(kSctp).payload(sctp(5000, 80)),
                       Side::kPodB);
        EXPECT_TRUE(addrs(o, v6, kA, kB));
        EXPECT_EQ(get16(o.l4(), 2), kBePort);
        EXPECT_TRUE(sctp_crc_ok(o.l4()));
        if (!v6) {
            EXPECT_TRUE(o.ip4->header_checksum_ok);
        }
        Parsed r = one(Side::kPodB,
                       ip(from_pod_b(), v6, kB, kA).next_proto(kSctp).payload(sctp(kBePort, 5000)),
                       Side::kPodA);
        EXPECT_TRUE(addrs(r, v6, kVip, kA));
        EXPECT_EQ(get16(r.l4(), 0), 80);
        EXPECT_TRUE(sctp_crc_ok(r.l4()));
    }
    EXPECT_EQ(drops(), want({}));
}

// Many client ports: more than one backend takes them, and each reply finds
// its flow.
TEST_F(Dnat, NewFlowsSpreadOverBackends) {
    for (bool v6 : {false, true}) {
        std::map<Side, int> by_side;
        for (uint16_t port = 20000; port < 20064; port++) {
            Sent s = run(Side::kPodA, ip(from_pod_a(), v6, kA, kVipSpread).udp(port, 80));
            ASSERT_EQ(s.frames.size(), 1u);
            const Frame &f = s.frames[0];
            by_side[f.side]++;
            EXPECT_TRUE(addrs(f.pkt, v6, kA, f.side == Side::kPodB ? kB : kRemote));
            EXPECT_TRUE(sums(f.pkt));
        }
        EXPECT_GT(by_side[Side::kPodB], 8);
        EXPECT_GT(by_side[Side::kUplink], 8);
        EXPECT_EQ(by_side[Side::kPodB] + by_side[Side::kUplink], 64);
    }
    EXPECT_EQ(drops(), want({}));
}

// sessionAffinity ClientIP: every new flow of one client lands on the
// backend its first flow took, while that backend takes new flows and the
// client was seen within the timeout; another client is free to go
// elsewhere; a backend that stops taking new flows loses its clients.
TEST_F(Dnat, ClientIpAffinityKeepsOneBackend) {
    for (bool v6 : {false, true}) {
        std::map<Side, int> by_side;
        for (uint16_t port = 21000; port < 21032; port++) {
            Sent s = run(Side::kPodA, ip(from_pod_a(), v6, kA, kVipSticky).udp(port, 80));
            ASSERT_EQ(s.frames.size(), 1u);
            by_side[s.frames[0].side]++;
            EXPECT_TRUE(sums(s.frames[0].pkt));
        }
        ASSERT_EQ(by_side.size(), 1u) << "one client, 32 flows, one backend";
        const Side kept = by_side.begin()->first;
        // Without affinity the same 32 flows spread (NewFlowsSpreadOverBackends).
        // The kept backend stops taking new flows: the client moves, for good.
        const bool b_kept = kept == Side::kPodB;
        set_services(services({{kB, true}}, {{kB, true, !b_kept}, {kRemote, false, b_kept}}));
        const Side other = b_kept ? Side::kUplink : Side::kPodB;
        for (uint16_t port = 21100; port < 21108; port++) {
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVipSticky).udp(port, 80), other);
        }
        set_services(services());
        for (uint16_t port = 21200; port < 21208; port++) {
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVipSticky).udp(port, 80), other);
        }
        ct().flush({});
        affinity().flush();
    }
    EXPECT_EQ(affinity_result(svc::AffinityResult::kStored), 2u);    // each family's first flow
    EXPECT_EQ(affinity_result(svc::AffinityResult::kReplaced), 2u);  // and its move
    EXPECT_GE(affinity_result(svc::AffinityResult::kHit), 2u * (31 + 7 + 8));
    EXPECT_EQ(drops(), want({}));
}

// --- NodePort (the local hook) ---

// From outside to the node's address and a nodePort: to the local backend
// with the client's address kept; the reply leaves from the node's address
// and the nodePort.
TEST_F(Dnat, NodePortLocalBackend) {
    for (bool v6 : {false, true}) {
        Parsed o = one(Side::kUplink,
                       ip(from_uplink(), v6, kOut, kNode).tcp(41000, 30080, 0x02).tcp_seq(0, 0),
                       Side::kPodB);
        EXPECT_TRUE(addrs(o, v6, kOut, kB));
        EXPECT_TRUE(sums(o));
        EXPECT_EQ(get16(o.l4(), 2), kBePort);
        Parsed r =
            one(Side::kPodB, ip(from_pod_b(), v6, kB, kOut).tcp(kBePort, 41000, 0x12).tcp_seq(9, 1),
                Side::kUplink);
        EXPECT_TRUE(addrs(r, v6, kNode, kOut));
        EXPECT_TRUE(sums(r));
        EXPECT_EQ(get16(r.l4(), 0), 30080);
        EXPECT_EQ(flow_of(41000).nat.flags, nat::kNatDnat);
        ct().flush({});
    }
    EXPECT_EQ(drops(), want({}));
}

// externalTrafficPolicy Cluster, backend on another node: the client is
// SNATed to the node so that the reply comes back through it.
TEST_F(Dnat, NodePortRemoteBackendSnat) {
    for (bool v6 : {false, true}) {
        Parsed o =
            one(Side::kUplink, ip(from_uplink(), v6, kOut, kNode).udp(41001, 30081), Side::kUplink);
        EXPECT_TRUE(addrs(o, v6, kNode, kRemote));
        EXPECT_TRUE(sums(o));
        EXPECT_EQ(get16(o.l4(), 2), kBePort);
        const uint16_t sport = get16(o.l4(), 0);
        Parsed r = one(Side::kUplink, ip(from_uplink(), v6, kRemote, kNode).udp(kBePort, sport),
                       Side::kUplink);
        EXPECT_TRUE(addrs(r, v6, kNode, kOut));
        EXPECT_TRUE(sums(r));
        EXPECT_EQ(get16(r.l4(), 0), 30081);
        EXPECT_EQ(get16(r.l4(), 2), 41001);
        EXPECT_EQ(flow_of(41001).nat.flags, nat::kNatDnat | nat::kNatSnat);
        ct().flush({});
    }
    EXPECT_EQ(drops(), want({}));
}

// A NodePort with no endpoint: port unreachable from the node.
TEST_F(Dnat, NodePortNoEndpointRejected) {
    Sent s = run(Side::kUplink, from_uplink().ip4(kOut4, kNode4).udp(41002, 30099).payload(4));
    ASSERT_EQ(s.on(Side::kUplink).size(), 1u);
    check_icmp4_error(*s.on(Side::kUplink)[0], 3, 3, 0,
                      l3_of(from_uplink().ip4(kOut4, kNode4).udp(41002, 30099).payload(4)));
    s = run(Side::kUplink, from_uplink().ip6(kOut6, kNode6).udp(41002, 30099).payload(4));
    ASSERT_EQ(s.on(Side::kUplink).size(), 1u);
    check_icmp6_error(*s.on(Side::kUplink)[0], 1, 4, 0,
                      l3_of(from_uplink().ip6(kOut6, kNode6).udp(41002, 30099).payload(4)));
    EXPECT_EQ(drops(), want({{DropReason::kSvcNoEndpoint, 2}}));
    EXPECT_EQ(ct().in_use(), 0u);
}

// --- external addresses ---

TEST_F(Dnat, ExternalClusterPolicyRemoteBackendSnat) {
    for (bool v6 : {false, true}) {
        Parsed o =
            one(Side::kUplink, ip(from_uplink(), v6, kOut, kExt).tcp(42000, 80, 0x02).tcp_seq(0, 0),
                Side::kUplink);
        EXPECT_TRUE(addrs(o, v6, kNode, kRemote));
        EXPECT_TRUE(sums(o));
        const uint16_t sport = get16(o.l4(), 0);
        Parsed r =
            one(Side::kUplink,
                ip(from_uplink(), v6, kRemote, kNode).tcp(kBePort, sport, 0x12).tcp_seq(7, 1),
                Side::kUplink);
        EXPECT_TRUE(addrs(r, v6, kExt, kOut));
        EXPECT_TRUE(sums(r));
        EXPECT_EQ(get16(r.l4(), 0), 80);
        EXPECT_EQ(get16(r.l4(), 2), 42000);
        ct().flush({});
    }
    EXPECT_EQ(drops(), want({}));
}

// externalTrafficPolicy Local (keep source): never SNAT, even to a remote
// backend; the reply (from a backend address) is reversed on the way out.
TEST_F(Dnat, ExternalKeepSourceNeverSnats) {
    for (bool v6 : {false, true}) {
        Parsed o = one(Side::kUplink, ip(from_uplink(), v6, kOut, kExtLocal).udp(42001, 80),
                       Side::kUplink);
        EXPECT_TRUE(addrs(o, v6, kOut, kRemote));
        EXPECT_TRUE(sums(o));
        EXPECT_EQ(get16(o.l4(), 0), 42001);
        Parsed r = one(Side::kUplink, ip(from_uplink(), v6, kRemote, kOut).udp(kBePort, 42001),
                       Side::kUplink);
        EXPECT_TRUE(addrs(r, v6, kExtLocal, kOut));
        EXPECT_TRUE(sums(r));
        EXPECT_EQ(flow_of(42001).nat.flags, nat::kNatDnat);
        ct().flush({});
    }
    EXPECT_EQ(drops(), want({}));
}

// A backend outside every pool (a host-network endpoint) reached from a pod
// in a natOutgoing pool: natOutgoing applies toward it, after the DNAT.
TEST_F(Dnat, BackendOutsidePoolsGetsNatOutgoing) {
    for (bool v6 : {false, true}) {
        Parsed o =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVipHost).tcp(43000, 443, 0x02).tcp_seq(0, 0),
                Side::kUplink);
        EXPECT_TRUE(addrs(o, v6, kNode, kHostEp));
        EXPECT_TRUE(sums(o));
        EXPECT_EQ(get16(o.l4(), 2), kBePort);
        const uint16_t sport = get16(o.l4(), 0);
        Parsed r =
            one(Side::kUplink,
                ip(from_uplink(), v6, kHostEp, kNode).tcp(kBePort, sport, 0x12).tcp_seq(3, 1),
                Side::kPodA);
        EXPECT_TRUE(addrs(r, v6, kVipHost, kA));
        EXPECT_EQ(get16(r.l4(), 0), 443);
        EXPECT_TRUE(sums(r));
        ct().flush({});
    }
    EXPECT_EQ(drops(), want({}));
}

// --- hairpin ---

// A pod reaching itself through its service: SNATed to the node (else it
// would get a packet from its own address); the reply, to the node's
// address, is reversed on the local hook.
TEST_F(Dnat, Hairpin) {
    for (bool v6 : {false, true}) {
        Parsed o =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVipHair).tcp(44000, 80, 0x02).tcp_seq(0, 0),
                Side::kPodA);
        EXPECT_TRUE(addrs(o, v6, kNode, kA));
        EXPECT_TRUE(sums(o));
        EXPECT_EQ(get16(o.l4(), 2), kBePort);
        const uint16_t sport = get16(o.l4(), 0);
        Parsed r = one(Side::kPodA,
                       ip(from_pod_a(), v6, kA, kNode).tcp(kBePort, sport, 0x12).tcp_seq(3, 1),
                       Side::kPodA);
        EXPECT_TRUE(addrs(r, v6, kVipHair, kA));
        EXPECT_TRUE(sums(r));
        EXPECT_EQ(get16(r.l4(), 0), 80);
        EXPECT_EQ(get16(r.l4(), 2), 44000);
        EXPECT_EQ(flow_of(44000).nat.flags, nat::kNatDnat | nat::kNatSnat);
        ct().flush({});
    }
    EXPECT_EQ(drops(), want({}));
}

// --- no endpoint ---

// kFeReject: ICMP / ICMPv6 port unreachable quoting the packet as sent.
TEST_F(Dnat, NoEndpointRejected) {
    const PacketBuilder u4 = from_pod_a().ip4(kPodA4, kVipReject.v4).udp(45000, 80).payload(8);
    const PacketBuilder t6 =
        from_pod_a().ip6(kPodA6, kVipReject.v6).tcp(45001, 80, 0x02).tcp_seq(0, 0);
    Sent s = run(Side::kPodA, u4);
    ASSERT_EQ(s.frames.size(), 1u);
    ASSERT_EQ(s.on(Side::kPodA).size(), 1u);
    check_icmp4_error(*s.on(Side::kPodA)[0], 3, 3, 0, l3_of(u4));
    s = run(Side::kPodA, t6);
    ASSERT_EQ(s.on(Side::kPodA).size(), 1u);
    check_icmp6_error(*s.on(Side::kPodA)[0], 1, 4, 0, l3_of(t6));
    EXPECT_EQ(drops(), want({{DropReason::kSvcNoEndpoint, 2}}));
    EXPECT_EQ(icmp_sent(), 2u);
    EXPECT_EQ(ct().in_use(), 0u);
}

// kFeDrop: dropped by name, nothing sent.
TEST_F(Dnat, NoLocalEndpointDropped) {
    Sent s = run(Side::kPodA, from_pod_a().ip4(kPodA4, kVipDrop.v4).udp(45002, 80));
    EXPECT_TRUE(s.frames.empty());
    s = run(Side::kPodA, from_pod_a().ip6(kPodA6, kVipDrop.v6).udp(45002, 80));
    EXPECT_TRUE(s.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kSvcNoLocalEndpoint, 2}}));
    EXPECT_EQ(icmp_sent(), 0u);
}

// --- backends coming and going ---

// A flow keeps its backend while the table lists it (even when it takes no
// new flow: not ready, terminating); once gone, the client's next packet
// ends the flow and is a new flow's, to a backend still there.
TEST_F(Dnat, BackendRemovedEndsFlow) {
    for (bool v6 : {false, true}) {
        one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).udp(46000, 80), Side::kPodB);
        set_services(services({{kB, true, false}, {kRemote, false}}));  // B: no new flows
        one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).udp(46000, 80), Side::kPodB);
        Parsed fresh = one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).udp(46001, 80),
                           Side::kUplink);  // a new flow: the remote one
        EXPECT_TRUE(addrs(fresh, v6, kA, kRemote));
        set_services(services({{kRemote, false}}));  // B gone
        Parsed moved =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).udp(46000, 80), Side::kUplink);
        EXPECT_TRUE(addrs(moved, v6, kA, kRemote));
        EXPECT_TRUE(sums(moved));
        const ct::FlowInfo f = flow_of(46000);
        EXPECT_EQ(f.reply.src, bytes(v6, kRemote));
        Parsed r =
            one(Side::kUplink, ip(from_uplink(), v6, kRemote, kA).udp(kBePort, 46000), Side::kPodA);
        EXPECT_TRUE(addrs(r, v6, kVip, kA));
        // The service gone whole: the client's next packet ends the flow; a
        // ClusterIP is in no pool, so natOutgoing takes it then.
        set_services({});
        Parsed gone =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).udp(46000, 80), Side::kUplink);
        EXPECT_TRUE(addrs(gone, v6, kNode, kVip));
        EXPECT_EQ(flow_of(46000).nat.flags, nat::kNatSnat);
        ct().flush({});
        set_services(services());
    }
    EXPECT_EQ(drops(), want({}));
}

// TCP, tcp_loose on (the default): the next segment of a connection whose
// backend went is picked up towards the new backend (which answers with a
// RST the client gets from the service address).
TEST_F(Dnat, BackendRemovedTcpMovesWithLoosePickup) {
    handshake(false, 47000);
    set_services(services({{kRemote, false}}));
    Parsed o =
        one(Side::kPodA,
            from_pod_a().ip4(kPodA4, kVip.v4).tcp(47000, 80, 0x18).tcp_seq(1, 501).payload(5),
            Side::kUplink);
    EXPECT_TRUE(addrs(o, false, kA, kRemote));
    EXPECT_TRUE(sums(o));
    Parsed rst = one(Side::kUplink,
                     from_uplink().ip4(kVia4, kPodA4).tcp(kBePort, 47000, 0x14).tcp_seq(501, 6),
                     Side::kPodA);
    EXPECT_TRUE(addrs(rst, false, kVip, kA));
    EXPECT_TRUE(sums(rst));
    EXPECT_EQ(drops(), want({}));
}

class DnatStrict : public Dnat {
  protected:
    ct::Config ct_config() const override {
        ct::Config c;
        c.capacity = 1024;
        c.tcp_loose = false;
        return c;
    }
};

// tcp_loose off: that segment is dropped as ct_tcp_not_syn (the client's
// retransmissions time out; its next connection takes a live backend).
TEST_F(DnatStrict, BackendRemovedTcpNotSynDropped) {
    handshake(true, 47001);
    set_services(services({{kRemote, false}}));
    Sent s = run(Side::kPodA,
                 from_pod_a().ip6(kPodA6, kVip.v6).tcp(47001, 80, 0x18).tcp_seq(1, 501).payload(5));
    EXPECT_TRUE(s.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kCtTcpNotSyn, 1}}));
    one(Side::kPodA, from_pod_a().ip6(kPodA6, kVip.v6).tcp(47002, 80, 0x02).tcp_seq(0, 0),
        Side::kUplink);
}

// --- related ICMP ---

// The backend's port unreachable about what it got: the client gets it from
// the frontend, quoting its own packet (to the frontend), every checksum
// right; and the client's error about a reply reaches the backend quoting
// the reply as the backend sent it.
TEST_F(Dnat, IcmpErrorsBothWays) {
    for (bool v6 : {false, true}) {
        Parsed got =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).udp(48000, 80).payload(8), Side::kPodB);
        PacketBuilder err = ip(from_pod_b(), v6, kB, kA);
        v6 ? err.icmp(1, 4) : err.icmp(3, 3);
        err.payload(Bytes(got.l3().begin(), got.l3().end()));
        Parsed e = one(Side::kPodB, err, Side::kPodA);
        EXPECT_TRUE(addrs(e, v6, kVip, kA));
        EXPECT_TRUE(sums(e));
        auto q = e.l4().subspan(8);
        EXPECT_TRUE(quoted_ok(q, v6));
        const size_t qip = v6 ? 40 : 20;
        EXPECT_EQ(get16(q, qip + 0), 48000);
        EXPECT_EQ(get16(q, qip + 2), 80);
        if (v6) {
            EXPECT_EQ(ip6_at(q, 24), kVip.v6);  // quoted destination
        } else {
            EXPECT_EQ(ip4_at(q, 16), kVip.v4);
        }

        Parsed reply = one(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(kBePort, 48000).payload(4),
                           Side::kPodA);
        PacketBuilder err2 = ip(from_pod_a(), v6, kA, kVip);
        v6 ? err2.icmp(1, 4) : err2.icmp(3, 3);
        err2.payload(Bytes(reply.l3().begin(), reply.l3().end()));
        Parsed e2 = one(Side::kPodA, err2, Side::kPodB);
        EXPECT_TRUE(addrs(e2, v6, kA, kB));
        EXPECT_TRUE(sums(e2));
        auto q2 = e2.l4().subspan(8);
        EXPECT_TRUE(quoted_ok(q2, v6));
        EXPECT_EQ(get16(q2, qip + 0), kBePort);
        if (v6) {
            EXPECT_EQ(ip6_at(q2, 8), kB.v6);  // quoted source
        } else {
            EXPECT_EQ(ip4_at(q2, 12), kB.v4);
        }
    }
    EXPECT_EQ(drops(), want({}));
}

// A router's error about the packet on its way to a remote backend, sent to
// the client: translated with the flow (the quote is what the client sent).
TEST_F(Dnat, IcmpErrorFromRouterToClient) {
    for (bool v6 : {false, true}) {
        Parsed sent =
            one(Side::kPodA, ip(from_pod_a(), v6, kA, kVipRemote).udp(48100, 80).payload(8),
                Side::kUplink);
        EXPECT_TRUE(addrs(sent, v6, kA, kRemote));
        PacketBuilder err = ip(from_uplink(), v6, kRouter, kA);
        v6 ? err.icmp(2, 0, 1280) : err.icmp(3, 4, 1400);
        err.payload(Bytes(sent.l3().begin(), sent.l3().end()));
        Parsed e = one(Side::kUplink, err, Side::kPodA);
        ASSERT_TRUE(v6 ? e.ip6.has_value() : e.ip4.has_value());
        EXPECT_EQ(v6 ? e.ip6->dst == kA.v6 : e.ip4->dst == kA.v4, true);
        EXPECT_TRUE(sums(e));
        auto q = e.l4().subspan(8);
        EXPECT_TRUE(quoted_ok(q, v6));
        if (v6) {
            EXPECT_EQ(ip6_at(q, 24), kVipRemote.v6);
        } else {
            EXPECT_EQ(ip4_at(q, 16), kVipRemote.v4);
        }
        EXPECT_EQ(get16(q, (v6 ? 40 : 20) + 2), 80);
    }
    EXPECT_EQ(drops(), want({}));
}

// --- what is not the services' ---

// A backend's own traffic: natOutgoing as before; to another pool not
// tracked. Route-only traffic (pod to pod) is not even looked up.
TEST_F(Dnat, OtherTrafficAsBefore) {
    Parsed o = one(Side::kPodB, from_pod_b().ip4(kPodB4, kOut4).udp(49000, 53), Side::kUplink);
    EXPECT_EQ(o.ip4->src, kNode4);
    EXPECT_EQ(flow_of(49000).nat.flags, nat::kNatSnat);
    const uint64_t looked = result(ct::Result::kNew);
    Parsed v = one(Side::kPodB, from_pod_b().ip4(kPodB4, kVia4).udp(49001, 53), Side::kUplink);
    EXPECT_EQ(v.ip4->src, kPodB4);  // a backend's packet: looked up, not a flow, untouched
    EXPECT_EQ(result(ct::Result::kNew), looked + 1);
    one(Side::kPodB, from_pod_b().ip6(kPodB6, kVia6).udp(49001, 53), Side::kUplink);
    EXPECT_EQ(result(ct::Result::kNew), looked + 2);
    // From another pool (not a backend, not inbound: its source is a pool's)
    one(Side::kUplink, from_uplink().ip4(kElsewhere4, kPodA4).udp(1, 2), Side::kPodA);
    one(Side::kUplink, from_uplink().ip6(kElsewhere6, kPodB6).udp(1, 2), Side::kPodB);
    EXPECT_EQ(result(ct::Result::kNew), looked + 2);  // not looked up
    EXPECT_EQ(ct().in_use(), 1u);
    EXPECT_EQ(drops(), want({}));
}

// The backend address set of the table.
TEST(DnatTable, BackendAddresses) {
    const svc::ServiceTable t(services());
    EXPECT_TRUE(t.is_backend4(rte_cpu_to_be_32(kPodB4)));
    EXPECT_TRUE(t.is_backend4(rte_cpu_to_be_32(kVia4)));
    EXPECT_TRUE(t.is_backend4(rte_cpu_to_be_32(kHostEp.v4)));
    EXPECT_FALSE(t.is_backend4(rte_cpu_to_be_32(kOut4)));
    EXPECT_FALSE(t.is_backend4(0));
    EXPECT_TRUE(t.is_backend6(kPodB6.data()));
    EXPECT_TRUE(t.is_backend6(kPodA6.data()));
    EXPECT_FALSE(t.is_backend6(kOut6.data()));
    EXPECT_TRUE(t.has_family(false));
    EXPECT_TRUE(t.has_family(true));
    const svc::ServiceTable empty({});
    EXPECT_FALSE(empty.has_family(false));
    EXPECT_FALSE(empty.is_backend4(rte_cpu_to_be_32(kPodB4)));
    EXPECT_FALSE(empty.is_backend6(kPodB6.data()));
}

}  // namespace
}  // namespace fwd::dp::test
