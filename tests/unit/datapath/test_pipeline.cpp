// The feature hooks of the packet path (pipeline.hpp): stages a test
// registers in a PipelineRegistry of its own (never the global one), frozen
// and given to the fixture's worker. Order and the checks of the registry;
// what each hook sees and what its stages may do with a packet (keep it,
// drop it, re-enter it, reroute it); L4-port stages on the local hooks;
// feature next-hop kinds; port taps; per-stage counters; worker slots;
// housekeeping functions (when run_once() calls them).
// The test stages record what they saw in g_seen (cleared before each test),
// the housekeeping functions in g_hk.
#include <rte_ip.h>
#include <rte_ring.h>
#include <rte_udp.h>

#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "fwd/control/controller.hpp"
#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/net/addr.hpp"
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint16_t kTunnelPort = 4789;  // the L4 port the test stages take (VXLAN's)
constexpr uint16_t kDeniedPort = 666;   // the pretend policy drops UDP to it
constexpr uint16_t kEthLen = 14;
constexpr uint16_t kOuter4 = sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr);

inline const uint32_t kInnerSrc4 = ip4("10.65.1.20");
inline const Ip6 kInnerSrc6 = ip6("fd00:65:1::20");
inline const uint32_t kTunnel4 = ip4("10.68.0.5");  // routed to a feature next-hop kind
inline const Ip6 kTunnel6 = ip6("fd00:68::5");

// One packet an output stage saw.
struct NhSeen {
    uint32_t nh;
    uint16_t port;
    NhKind kind;
    uint8_t ttl;  // TTL / hop limit as the stage found it
};

// One burst a tap saw.
struct TapSeen {
    TapPoint point;
    uint16_t port;
    uint16_t n;
    std::vector<Mac> dst;  // destination MAC of each frame
};

// What the test stages saw, and the knobs some of them read.
struct Seen {
    std::string order;                        // one letter per call of the ordered stages
    std::map<std::string, uint64_t> calls;    // bursts, by stage
    std::map<std::string, uint64_t> packets;  // packets entering, by stage
    std::map<std::string, std::vector<uint16_t>> sports;  // L4 stages: source port of each
    std::vector<NhSeen> nh;
    std::vector<TapSeen> taps;
    bool take = false;         // L4 stages drop what they get instead of leaving it
    bool decap_adjust = true;  // decap: strip the outer headers off the mbuf too
    NhKind tunnel = NhKind::kNone;
    uint32_t underlay = kNhInvalid;  // the next hop the tunnel stage points packets at
    uint16_t slot = 0;
    // shift_errors: where the ICMP errors to pod A go instead, and the
    // (meta.l4_off, byte there) of each error it saw, every pass.
    uint32_t reroute_to4 = 0;
    Ip6 reroute_to6{};
    std::vector<std::pair<uint16_t, uint8_t>> l4_seen;
};
Seen g_seen;

void count(const char *stage, const Burst &b) {
    g_seen.calls[stage]++;
    g_seen.packets[stage] += b.n;
}

// Keeps the packets keep() is true for, in order; drops the others with r.
template <typename Keep>
void filter(Worker &w, Burst &b, DropReason r, Keep keep) {
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        if (keep(b.pkts[i])) {
            b.pkts[k++] = b.pkts[i];
        } else {
            w.drop(b.pkts[i], r);
        }
    }
    b.n = k;
}

uint16_t l4_port(rte_mbuf *m, uint16_t off) {
    const PktMeta &md = meta(m);
    if ((md.l4_proto != IPPROTO_UDP && md.l4_proto != IPPROTO_TCP) || md.l4_off == 0) {
        return 0;
    }
    return rte_be_to_cpu_16(*at<rte_be16_t>(m, md.l4_off + off));
}
uint16_t dport(rte_mbuf *m) {
    return l4_port(m, 2);
}
uint16_t sport(rte_mbuf *m) {
    return l4_port(m, 0);
}

// --- the test stages ---

template <char C>
void letter(Worker &, Burst &) {
    g_seen.order += C;
}

template <Hook H>
void keep_all(Worker &, Burst &b) {
    count(kHookNames[static_cast<size_t>(H)].data(), b);
}

template <bool kV6>
void deny(Worker &w, Burst &b) {
    count(kV6 ? "deny6" : "deny4", b);
    filter(w, b, DropReason::kRouteBlackhole,
           [](rte_mbuf *m) { return meta(m).l4_proto != IPPROTO_UDP || dport(m) != kDeniedPort; });
}

template <bool kV6>
void see_nh(Worker &w, Burst &b) {
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        const PktMeta &md = meta(m);
        const NextHop &nh = w.tables().nh(md.nh);
        uint8_t ttl = kV6 ? at<rte_ipv6_hdr>(m, md.l3_off)->hop_limits
                          : at<rte_ipv4_hdr>(m, md.l3_off)->time_to_live;
        g_seen.nh.push_back(NhSeen{md.nh, nh.port, load_kind(nh), ttl});
    }
}

// An L4-port stage: records the source ports; leaves the packets, or drops
// them with g_seen.take.
template <int kId>
void l4_stage(Worker &w, Burst &b) {
    static const char *const kNames[] = {"udp4", "tcp4", "udp6", "tcp6", "fixed4", "fixed6"};
    count(kNames[kId], b);
    for (uint16_t i = 0; i < b.n; i++) {
        g_seen.sports[kNames[kId]].push_back(sport(b.pkts[i]));
    }
    if (g_seen.take) {
        filter(w, b, DropReason::kRouteBlackhole, [](rte_mbuf *) { return false; });
    }
}

// A pretend decapsulation: the packet after the outer IP + UDP header goes
// through ip4_input / ip6_input again. With g_seen.decap_adjust the outer
// headers leave the mbuf (room for an Ethernet header kept before the inner
// one); without, only meta.l3_off moves to the inner header.
rte_mbuf *decap_one(rte_mbuf *m) {
    PktMeta &md = meta(m);
    auto inner = static_cast<uint16_t>(md.l4_off + sizeof(rte_udp_hdr));
    if (g_seen.decap_adjust) {
        rte_pktmbuf_adj(m, static_cast<uint16_t>(inner - kEthLen));
        md.l3_off = kEthLen;
    } else {
        md.l3_off = inner;
    }
    return m;
}
void reenter_by_version(Worker &w, rte_mbuf *m) {
    if ((*at<uint8_t>(m, meta(m).l3_off) >> 4) == 6) {
        w.reenter6(m);
    } else {
        w.reenter4(m);
    }
}
void decap(Worker &w, Burst &b) {
    count("decap", b);
    for (uint16_t i = 0; i < b.n; i++) {
        reenter_by_version(w, decap_one(b.pkts[i]));
    }
    b.n = 0;
}

// Decapsulates and re-enters every packet twice (itself and a copy).
void decap_twice(Worker &w, Burst &b) {
    count("decap_twice", b);
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = decap_one(b.pkts[i]);
        rte_mbuf *c = rte_pktmbuf_copy(m, w.pool(), 0, UINT32_MAX);
        reenter_by_version(w, m);
        if (c == nullptr) {
            ADD_FAILURE() << "rte_pktmbuf_copy";
            continue;
        }
        meta(c) = meta(m);
        reenter_by_version(w, c);
    }
    b.n = 0;
}

// Re-enters every packet as it is: a loop.
void reenter_same(Worker &w, Burst &b) {
    count("reenter_same", b);
    for (uint16_t i = 0; i < b.n; i++) {
        reenter_by_version(w, b.pkts[i]);
    }
    b.n = 0;
}

// A pretend encapsulation on kIp4Output: a packet not from the node gets an
// outer IPv4 + UDP/4789 header from the node to pod B (the pretend tunnel
// end) and is routed again; the encapsulated one passes.
void encap4(Worker &w, Burst &b) {
    count("encap4", b);
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        PktMeta &md = meta(m);
        auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
        if (ip->src_addr == rte_cpu_to_be_32(kNode4)) {
            b.pkts[k++] = m;
            continue;
        }
        uint16_t inner_len = rte_be_to_cpu_16(ip->total_length);
        if (md.l3_off != kEthLen || m->pkt_len != uint32_t{kEthLen} + inner_len ||
            rte_pktmbuf_prepend(m, kOuter4) == nullptr) {
            ADD_FAILURE() << "encap4: unexpected packet";
            w.drop(m, DropReason::kNoRoute);
            continue;
        }
        // The old Ethernet header is now at kOuter4: outer IP and UDP go
        // before the inner packet, over and before it.
        auto *o = at<rte_ipv4_hdr>(m, kEthLen);
        *o = rte_ipv4_hdr{};
        o->version_ihl = RTE_IPV4_VHL_DEF;
        o->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(kOuter4 + inner_len));
        o->time_to_live = 64;
        o->next_proto_id = IPPROTO_UDP;
        o->src_addr = rte_cpu_to_be_32(kNode4);
        o->dst_addr = rte_cpu_to_be_32(kPodB4);
        o->hdr_checksum = rte_ipv4_cksum(o);
        auto *u = at<rte_udp_hdr>(m, kEthLen + sizeof(rte_ipv4_hdr));
        u->src_port = rte_cpu_to_be_16(49152);
        u->dst_port = rte_cpu_to_be_16(kTunnelPort);
        u->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(rte_udp_hdr) + inner_len));
        u->dgram_cksum = 0;
        md.l3_off = kEthLen;
        md.l4_off = kEthLen + sizeof(rte_ipv4_hdr);
        md.l4_proto = IPPROTO_UDP;
        md.flags = kMetaLocalOrigin;
        w.reroute4(m);
    }
    b.n = k;
}

// A pretend destination NAT on kIp6Output: kElsewhere6 becomes pod B, routed again.
void nat6(Worker &w, Burst &b) {
    count("nat6", b);
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        auto *ip = at<rte_ipv6_hdr>(m, meta(m).l3_off);
        if (std::memcmp(ip->dst_addr, kElsewhere6.data(), 16) != 0) {
            b.pkts[k++] = m;
            continue;
        }
        std::memcpy(ip->dst_addr, kPodB6.data(), 16);
        w.reroute6(m);
    }
    b.n = k;
}

// On kIp4Output: kElsewhere4 becomes an address of an unreachable route,
// routed again (the second route lookup fails).
void misroute4(Worker &w, Burst &b) {
    count("misroute4", b);
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        auto *ip = at<rte_ipv4_hdr>(m, meta(m).l3_off);
        if (ip->dst_addr != rte_cpu_to_be_32(kElsewhere4)) {
            b.pkts[k++] = m;
            continue;
        }
        ip->dst_addr = rte_cpu_to_be_32(kUnreachable4);
        ip->hdr_checksum = 0;
        ip->hdr_checksum = rte_ipv4_cksum(ip);
        w.reroute4(m);
    }
    b.n = k;
}

// Routes every packet again: a loop.
void reroute_always(Worker &w, Burst &b) {
    count("reroute_always", b);
    for (uint16_t i = 0; i < b.n; i++) {
        w.reroute4(b.pkts[i]);
    }
    b.n = 0;
}

// The feature of the kind g_seen.tunnel: its packets go to g_seen.underlay.
void take_tunnel(Worker &w, Burst &b) {
    count("take_tunnel", b);
    for (uint16_t i = 0; i < b.n; i++) {
        PktMeta &md = meta(b.pkts[i]);
        if (load_kind(w.tables().nh(md.nh)) == g_seen.tunnel) {
            md.nh = g_seen.underlay;
        }
    }
}

template <TapPoint P>
void tap(Worker &, uint16_t port, rte_mbuf *const *pkts, uint16_t n) {
    TapSeen t{P, port, n, {}};
    for (uint16_t i = 0; i < n; i++) {
        Mac d;
        std::memcpy(d.data(), rte_pktmbuf_mtod(pkts[i], const uint8_t *), 6);
        t.dst.push_back(d);
    }
    g_seen.taps.push_back(std::move(t));
}

// Adds the burst's packets to the uint64_t the worker's slot g_seen.slot points at.
void slot_user(Worker &w, Burst &b) {
    if (auto *c = static_cast<uint64_t *>(w.slot(g_seen.slot)); c != nullptr) {
        *c += b.n;
    }
}

// --- registry helpers ---

StageDef stage(std::string name, Hook h, StageFn fn, std::vector<std::string> before = {},
               std::vector<std::string> after = {}) {
    StageDef d;
    d.name = std::move(name);
    d.hook = h;
    d.fn = fn;
    d.runs_before = std::move(before);
    d.runs_after = std::move(after);
    return d;
}

StageDef l4(std::string name, Hook h, StageFn fn, uint8_t proto, uint16_t port) {
    StageDef d = stage(std::move(name), h, fn);
    d.l4_proto = proto;
    d.l4_port = port;
    return d;
}

TapDef tap_def(std::string name, TapPoint p, TapFn fn) {
    TapDef t;
    t.name = std::move(name);
    t.point = p;
    t.fn = fn;
    return t;
}

// The message of the std::invalid_argument f throws; "" (and a failure) when none.
template <typename F>
std::string invalid(F &&f) {
    try {
        f();
    } catch (const std::invalid_argument &e) {
        return e.what();
    } catch (const std::exception &e) {
        ADD_FAILURE() << "not std::invalid_argument: " << e.what();
        return "";
    }
    ADD_FAILURE() << "accepted";
    return "";
}

// --- traffic ---

// Forwarded, answered, expired, blackholed, unreachable and unhandled local
// packets of both families.
std::vector<std::pair<Side, PacketBuilder>> mixed_traffic() {
    return {
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2).payload(10)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).tcp(3, 4).payload(20)},
        {Side::kPodB, from_pod_b().ip4(kPodB4, kGw4).echo_request()},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).ttl(1).udp(5, 6)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kBlackhole4).udp(7, 8)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kUnreachable4).udp(9, 10)},
        {Side::kUplink, from_uplink().ip4(kVia4, kNode4).udp(11, kTunnelPort)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2).payload(10)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kVia6).tcp(3, 4).payload(20)},
        {Side::kPodB, from_pod_b().ip6(kPodB6, kGw6).echo_request()},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kVia6).hop_limit(1).udp(5, 6)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kBlackhole6).udp(7, 8)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kUnreachable6).udp(9, 10)},
        {Side::kUplink, from_uplink().ip6(kVia6, kNode6).udp(11, kTunnelPort)},
    };
}

std::vector<std::pair<Side, Bytes>> frames_of(const Sent &s) {
    std::vector<std::pair<Side, Bytes>> v;
    for (const Frame &f : s.frames) {
        v.emplace_back(f.side, f.pkt.frame);
    }
    return v;
}

// The Ethernet frame f carries inner (an IP packet) forwarded once: to pod
// B, TTL / hop limit one less, all else as it was.
void expect_inner_forwarded(const Frame &f, const Bytes &inner) {
    bool v6 = (inner[0] >> 4) == 6;
    check_eth_to(f, Side::kPodB, v6 ? kTypeIp6 : kTypeIp4);
    ASSERT_EQ(f.pkt.frame.size(), kEthLen + inner.size()) << "the inner packet alone";
    Bytes want = inner;
    if (v6) {
        want[7]--;
        ASSERT_TRUE(f.pkt.ip6.has_value());
    } else {
        want[8]--;
        ASSERT_TRUE(f.pkt.ip4.has_value());
        EXPECT_TRUE(f.pkt.ip4->header_checksum_ok);
        want[10] = f.pkt.frame[kEthLen + 10];  // checksum: checked above
        want[11] = f.pkt.frame[kEthLen + 11];
    }
    auto l3 = f.pkt.l3();
    EXPECT_TRUE(std::equal(l3.begin(), l3.end(), want.begin(), want.end()))
        << "not the inner packet with TTL / hop limit - 1";
}

// --- fixture ---

class Pipelines : public DatapathTest {
  protected:
    void SetUp() override {
        g_seen = Seen{};
        DatapathTest::SetUp();
    }
    // Freezes r and hands the result to a fresh worker.
    const Pipeline &use(const PipelineRegistry &r) {
        frozen_.push_back(r.freeze());
        use_pipeline(&frozen_.back());
        return frozen_.back();
    }
    const WorkerStats::StageCounters &stage_counters(const std::string &name) {
        size_t id = worker().pipeline().stage_id(name);
        EXPECT_NE(id, SIZE_MAX) << name;
        return worker().stats().stages[id == SIZE_MAX ? 0 : id];
    }

  private:
    std::deque<Pipeline> frozen_;  // outlive the worker: destroyed after TearDown
};

// ---------------------------------------------------------------------------------------------
// The default pipeline and an empty registry.

// Every other test file expects the built-in stages only.
TEST_F(Pipelines, DefaultPipelineOfThisBinaryHasNoRegisteredStage) {
    const Pipeline &p = default_pipeline();
    EXPECT_EQ(&worker().pipeline(), &p) << "the fixture's worker runs the default pipeline";
    EXPECT_EQ(p.stage_count(), kStageCount);
    for (size_t i = 0; i < kStageCount; i++) {
        EXPECT_EQ(p.stage_names[i], kStageNames[i]);
    }
    for (size_t h = 0; h < kHookCount; h++) {
        EXPECT_EQ(p.hooks[h].n, 0) << kHookNames[h];
    }
    for (size_t t = 0; t < kTapPointCount; t++) {
        EXPECT_EQ(p.taps[t].n, 0);
    }
    EXPECT_TRUE(p.slot_names.empty());
    EXPECT_TRUE(PipelineRegistry::global().nh_kind_names().empty());
}

TEST_F(Pipelines, EmptyRegistryBehavesAsTheDefault) {
    Sent base = run(mixed_traffic());
    auto base_drops = drops();
    uint64_t base_icmp = icmp_sent();
    ASSERT_FALSE(base.frames.empty());

    const Pipeline &p = use(PipelineRegistry{});
    EXPECT_EQ(p.stage_names, default_pipeline().stage_names);
    Sent out = run(mixed_traffic());
    EXPECT_EQ(frames_of(out), frames_of(base));
    EXPECT_EQ(drops(), base_drops);
    EXPECT_EQ(icmp_sent(), base_icmp);
}

// ---------------------------------------------------------------------------------------------
// Order and the registry's checks.

TEST_F(Pipelines, StagesOfAHookRunInTheResolvedOrder) {
    PipelineRegistry r;
    // Without constraints the order would be by name: a, b, c.
    r.add_stage(stage("c", Hook::kIp4Input, &letter<'c'>, {}, {"a"}));
    r.add_stage(stage("b", Hook::kIp4Input, &letter<'b'>, {}, {"c", "not_built_in"}));
    r.add_stage(stage("a", Hook::kIp4Input, &letter<'a'>, {"b", "missing"}));
    const Pipeline &p = use(r);
    ASSERT_EQ(p.hook(Hook::kIp4Input).n, 3);
    EXPECT_EQ(p.hook(Hook::kIp4Input).n_l4, 0);
    std::string names;
    for (uint8_t i = 0; i < 3; i++) {
        names += p.stage_names[p.hook(Hook::kIp4Input).e[i].stage];
    }
    EXPECT_EQ(names, "acb");

    Sent out = run(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2));
    EXPECT_EQ(g_seen.order, "acb");
    EXPECT_EQ(out.on(Side::kPodB).size(), 1u);
    EXPECT_EQ(drops(), want({}));

    // Only the hook they are on: IPv6 and local packets meet none of them.
    g_seen.order.clear();
    run({{Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2)},
         {Side::kPodA, from_pod_a().ip4(kPodA4, kGw4).echo_request()}});
    EXPECT_EQ(g_seen.order, "");
}

TEST_F(Pipelines, OrderTiesGoByName) {
    PipelineRegistry r;
    r.add_stage(stage("c", Hook::kIp6Output, &letter<'c'>));
    r.add_stage(stage("a", Hook::kIp6Output, &letter<'a'>));
    r.add_stage(stage("b", Hook::kIp6Output, &letter<'b'>));
    use(r);
    run(Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2));
    EXPECT_EQ(g_seen.order, "abc");
}

TEST_F(Pipelines, CycleIsRejectedNamingItsStages) {
    PipelineRegistry r;
    // x before y, y before z (said by z), z before x (said by x).
    r.add_stage(stage("x", Hook::kIp4Output, &letter<'x'>, {"y"}, {"z"}));
    r.add_stage(stage("y", Hook::kIp4Output, &letter<'y'>));
    r.add_stage(stage("z", Hook::kIp4Output, &letter<'z'>, {}, {"y"}));
    r.add_stage(stage("free", Hook::kIp4Output, &letter<'f'>));
    std::string e = invalid([&] { r.freeze(); });
    EXPECT_NE(e.find("ip4_output"), std::string::npos) << e;
    EXPECT_NE(e.find("cycle"), std::string::npos) << e;
    for (const char *n : {"'x'", "'y'", "'z'"}) {
        EXPECT_NE(e.find(n), std::string::npos) << n << " not named: " << e;
    }
    EXPECT_EQ(e.find("'free'"), std::string::npos) << e;
}

TEST_F(Pipelines, NameUsedTwiceIsRejected) {
    {
        PipelineRegistry r;  // on one hook
        r.add_stage(stage("dup", Hook::kIp4Input, &letter<'a'>));
        r.add_stage(stage("dup", Hook::kIp4Input, &letter<'b'>));
        std::string e = invalid([&] { r.freeze(); });
        EXPECT_NE(e.find("'dup'"), std::string::npos) << e;
    }
    {
        PipelineRegistry r;  // on two hooks
        r.add_stage(stage("dup", Hook::kIp4Input, &letter<'a'>));
        r.add_stage(stage("dup", Hook::kIp6Local, &letter<'b'>));
        std::string e = invalid([&] { r.freeze(); });
        EXPECT_NE(e.find("'dup'"), std::string::npos) << e;
    }
    {
        PipelineRegistry r;  // a stage and a tap
        r.add_stage(stage("dup", Hook::kIp4Input, &letter<'a'>));
        r.add_tap(tap_def("dup", TapPoint::kRx, &tap<TapPoint::kRx>));
        std::string e = invalid([&] { r.freeze(); });
        EXPECT_NE(e.find("'dup'"), std::string::npos) << e;
    }
    {
        PipelineRegistry r;  // a built-in stage's name
        r.add_stage(stage("route4", Hook::kIp4Output, &letter<'a'>));
        std::string e = invalid([&] { r.freeze(); });
        EXPECT_NE(e.find("'route4'"), std::string::npos) << e;
    }
}

TEST_F(Pipelines, BadDefinitionsAreRejected) {
    PipelineRegistry r;
    auto fn = &letter<'a'>;
    // L4 ports on the local hooks only, UDP or TCP, protocol and port together.
    for (Hook h : {Hook::kIp4Input, Hook::kIp6Input, Hook::kIp4Output, Hook::kIp6Output}) {
        std::string e = invalid([&] { r.add_stage(l4("l4", h, fn, IPPROTO_UDP, 4789)); });
        EXPECT_NE(e.find("ip4_local"), std::string::npos) << e;
    }
    invalid([&] { r.add_stage(l4("l4", Hook::kIp4Local, fn, IPPROTO_ICMP, 1)); });
    invalid([&] { r.add_stage(l4("l4", Hook::kIp4Local, fn, IPPROTO_UDP, 0)); });
    invalid([&] { r.add_stage(l4("l4", Hook::kIp4Local, fn, 0, 4789)); });
    // One stage per protocol and port on a hook.
    r.add_stage(l4("vx4", Hook::kIp4Local, fn, IPPROTO_UDP, 4789));
    std::string e =
        invalid([&] { r.add_stage(l4("vx4b", Hook::kIp4Local, fn, IPPROTO_UDP, 4789)); });
    EXPECT_NE(e.find("vx4"), std::string::npos) << e;
    r.add_stage(l4("vx4tcp", Hook::kIp4Local, fn, IPPROTO_TCP, 4789));
    r.add_stage(l4("vx6", Hook::kIp6Local, fn, IPPROTO_UDP, 4789));
    // Names: 1 to 32 of [a-z0-9_].
    for (const std::string &bad : std::vector<std::string>{"", "Upper", "dash-name", "dot.name",
                                                           "space name", std::string(33, 'a')}) {
        invalid([&] { r.add_stage(stage(bad, Hook::kIp4Input, fn)); });
        invalid([&] { r.add_tap(tap_def(bad, TapPoint::kRx, &tap<TapPoint::kRx>)); });
        invalid([&] { r.add_nh_kind(bad); });
        invalid([&] { r.add_worker_slot(bad); });
    }
    r.add_stage(stage(std::string(32, 'z'), Hook::kIp6Input, fn));
    // A function and a hook.
    invalid([&] { r.add_stage(stage("nofn", Hook::kIp4Input, nullptr)); });
    invalid([&] { r.add_stage(stage("nohook", static_cast<Hook>(kHookCount), fn)); });
    invalid([&] { r.add_tap(tap_def("nofn", TapPoint::kTx, nullptr)); });
    // At most kMaxHookStages on a hook (L4 ones count), kMaxTaps at a point.
    for (size_t i = 0; i + 2 < kMaxHookStages; i++) {
        r.add_stage(stage("local" + std::to_string(i), Hook::kIp4Local, fn));
    }
    e = invalid([&] { r.add_stage(stage("ninth", Hook::kIp4Local, fn)); });
    EXPECT_NE(e.find("ip4_local"), std::string::npos) << e;
    for (size_t i = 0; i < kMaxTaps; i++) {
        r.add_tap(tap_def("rx" + std::to_string(i), TapPoint::kRx, &tap<TapPoint::kRx>));
    }
    invalid([&] { r.add_tap(tap_def("rx_extra", TapPoint::kRx, &tap<TapPoint::kRx>)); });
    r.add_tap(tap_def("tx0", TapPoint::kTx, &tap<TapPoint::kTx>));
    // A kind's name once.
    r.add_nh_kind("tunnel");
    invalid([&] { r.add_nh_kind("tunnel"); });

    // What was refused left no trace.
    Pipeline p = r.freeze();
    EXPECT_EQ(p.hook(Hook::kIp4Local).n, kMaxHookStages);
    EXPECT_EQ(p.hook(Hook::kIp4Local).n_l4, 2);
    EXPECT_EQ(p.hook(Hook::kIp6Local).n, 1);
    EXPECT_EQ(p.hook(Hook::kIp6Input).n, 1);
    EXPECT_EQ(p.hook(Hook::kIp4Input).n, 0);
    EXPECT_EQ(p.taps[static_cast<size_t>(TapPoint::kRx)].n, kMaxTaps);
    EXPECT_EQ(p.taps[static_cast<size_t>(TapPoint::kTx)].n, 1);
    EXPECT_EQ(p.stage_count(), kStageCount + kMaxHookStages + 2 + kMaxTaps + 1);
    EXPECT_EQ(r.nh_kind_names(), std::vector<std::string>{"tunnel"});
    EXPECT_TRUE(p.slot_names.empty());
}

// ---------------------------------------------------------------------------------------------
// What the hooks see and what their stages do.

TEST_F(Pipelines, InputStageDropsWithAReason) {
    PipelineRegistry r;
    r.add_stage(stage("deny4", Hook::kIp4Input, &deny<false>));
    r.add_stage(stage("deny6", Hook::kIp6Input, &deny<true>));
    use(r);
    Sent out = run({
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(101, 1)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(102, kDeniedPort)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(103, 2)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(104, kDeniedPort)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).tcp(105, kDeniedPort)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(106, kDeniedPort)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(107, 3)},
    });
    EXPECT_EQ(drops(), want({{DropReason::kRouteBlackhole, 3}}));
    EXPECT_EQ(icmp_sent(), 0u);
    // The rest leave as they came, in order.
    std::vector<uint16_t> sports;
    for (const Frame *f : out.on(Side::kPodB)) {
        auto l4 = f->pkt.l4();
        ASSERT_GE(l4.size(), 2u);
        sports.push_back(static_cast<uint16_t>((l4[0] << 8) | l4[1]));
    }
    EXPECT_EQ(sports, (std::vector<uint16_t>{101, 103, 105, 107}));
    EXPECT_EQ(out.frames.size(), 4u);
    EXPECT_EQ(g_seen.packets["deny4"], 5u);
    EXPECT_EQ(g_seen.packets["deny6"], 2u);
    EXPECT_EQ(g_seen.calls["deny4"], 1u);
}

// A stage on every hook (and an L4 one on each local hook) that keeps every
// packet: what leaves is byte for byte what leaves without them.
TEST_F(Pipelines, StagesKeepingEveryPacketChangeNothing) {
    Sent base = run(mixed_traffic());
    auto base_drops = drops();
    uint64_t base_icmp = icmp_sent();

    PipelineRegistry r;
    r.add_stage(stage("in4", Hook::kIp4Input, &keep_all<Hook::kIp4Input>));
    r.add_stage(stage("in6", Hook::kIp6Input, &keep_all<Hook::kIp6Input>));
    r.add_stage(stage("out4", Hook::kIp4Output, &keep_all<Hook::kIp4Output>));
    r.add_stage(stage("out6", Hook::kIp6Output, &keep_all<Hook::kIp6Output>));
    r.add_stage(stage("local4", Hook::kIp4Local, &keep_all<Hook::kIp4Local>));
    r.add_stage(stage("local6", Hook::kIp6Local, &keep_all<Hook::kIp6Local>));
    r.add_stage(l4("udp4", Hook::kIp4Local, &l4_stage<0>, IPPROTO_UDP, kTunnelPort));
    r.add_stage(l4("udp6", Hook::kIp6Local, &l4_stage<2>, IPPROTO_UDP, kTunnelPort));
    use(r);
    Sent out = run(mixed_traffic());
    EXPECT_EQ(frames_of(out), frames_of(base));
    EXPECT_EQ(drops(), base_drops);
    EXPECT_EQ(icmp_sent(), base_icmp);

    // Where each hook is: input after the TTL check (4 of 5 to be routed),
    // output after the route (2 sent, and the 2 ICMP errors in a pass of
    // their own), local before icmp*_local (the echo and the UDP to the
    // node, the latter first through its L4 stage).
    for (Hook h : {Hook::kIp4Input, Hook::kIp6Input}) {
        std::string n(kHookNames[static_cast<size_t>(h)]);
        EXPECT_EQ(g_seen.calls[n], 1u) << n;
        EXPECT_EQ(g_seen.packets[n], 4u) << n;
    }
    for (Hook h : {Hook::kIp4Output, Hook::kIp6Output}) {
        std::string n(kHookNames[static_cast<size_t>(h)]);
        EXPECT_EQ(g_seen.calls[n], 2u) << n;
        EXPECT_EQ(g_seen.packets[n], 4u) << n;
    }
    for (Hook h : {Hook::kIp4Local, Hook::kIp6Local}) {
        std::string n(kHookNames[static_cast<size_t>(h)]);
        EXPECT_EQ(g_seen.calls[n], 1u) << n;
        EXPECT_EQ(g_seen.packets[n], 2u) << n;
    }
    EXPECT_EQ(g_seen.sports["udp4"], std::vector<uint16_t>{11});
    EXPECT_EQ(g_seen.sports["udp6"], std::vector<uint16_t>{11});
}

TEST_F(Pipelines, OutputStagesSeeTheNextHop) {
    PipelineRegistry r;
    r.add_stage(stage("nh4", Hook::kIp4Output, &see_nh<false>));
    r.add_stage(stage("nh6", Hook::kIp6Output, &see_nh<true>));
    use(r);
    Sent out = run({
        {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2)},
        {Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).udp(1, 2)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2)},
        {Side::kPodA, from_pod_a().ip6(kPodA6, kVia6).udp(1, 2)},
    });
    EXPECT_EQ(drops(), want({}));
    EXPECT_EQ(out.frames.size(), 4u);
    ASSERT_EQ(g_seen.nh.size(), 4u);
    struct Want {
        Side side;
        NhKind kind;
    };
    const Want wants[] = {{Side::kPodB, NhKind::kPod},
                          {Side::kUplink, NhKind::kVia},
                          {Side::kPodB, NhKind::kPod},
                          {Side::kUplink, NhKind::kVia}};
    for (size_t i = 0; i < 4; i++) {
        SCOPED_TRACE(i);
        EXPECT_NE(g_seen.nh[i].nh, kNhInvalid);
        EXPECT_EQ(g_seen.nh[i].port, lab().port(wants[i].side));
        EXPECT_EQ(g_seen.nh[i].kind, wants[i].kind);
        EXPECT_EQ(g_seen.nh[i].ttl, 64) << "before l2_rewrite takes one off";
    }
}

// ---------------------------------------------------------------------------------------------
// L4-port stages on the local hooks.

class LocalL4 : public Pipelines {
  protected:
    // UDP and TCP port 4789 stages and one for every local packet, on the
    // family's local hook; packets to the node's address from the uplink.
    void run_l4(bool v6) {
        PipelineRegistry r;
        Hook h = v6 ? Hook::kIp6Local : Hook::kIp4Local;
        // Registered first and named last: L4 stages run first all the same.
        r.add_stage(stage("any", h, v6 ? &keep_all<Hook::kIp6Local> : &keep_all<Hook::kIp4Local>));
        r.add_stage(l4(v6 ? "udp6" : "udp4", h, v6 ? &l4_stage<2> : &l4_stage<0>, IPPROTO_UDP,
                       kTunnelPort));
        r.add_stage(l4(v6 ? "tcp6" : "tcp4", h, v6 ? &l4_stage<3> : &l4_stage<1>, IPPROTO_TCP,
                       kTunnelPort));
        const Pipeline &p = use(r);
        ASSERT_EQ(p.hook(h).n, 3);
        ASSERT_EQ(p.hook(h).n_l4, 2);
        auto to_node = [&] {
            return v6 ? from_uplink().ip6(kVia6, kNode6) : from_uplink().ip4(kVia4, kNode4);
        };
        auto later_fragment = [&] {
            return v6 ? from_uplink().ip6(kVia6, kNode6).fragment(100, false)
                      : from_uplink().ip4(kVia4, kNode4).frag_offset(100);
        };
        auto elsewhere = [&] {
            return v6 ? from_uplink().ip6(kVia6, kPodB6) : from_uplink().ip4(kVia4, kPodB4);
        };
        out_ = run({
            {Side::kUplink, to_node().udp(1000, kTunnelPort).payload(8)},
            {Side::kUplink, to_node().tcp(1001, kTunnelPort)},
            {Side::kUplink, to_node().udp(1002, kTunnelPort + 1).payload(8)},
            {Side::kUplink, later_fragment().udp(1003, kTunnelPort).payload(8)},
            {Side::kUplink, to_node().echo_request()},
            {Side::kUplink, elsewhere().udp(1005, kTunnelPort)},
        });
    }
    Sent out_;
};

TEST_F(LocalL4, StageGetsOnlyItsProtocolAndPort4) {
    run_l4(false);
    EXPECT_EQ(g_seen.sports["udp4"], std::vector<uint16_t>{1000});
    EXPECT_EQ(g_seen.sports["tcp4"], std::vector<uint16_t>{1001});
    // What the L4 stages leave goes on: to the stage for every local packet
    // and to icmp4_local, which answers the echo and drops the rest.
    EXPECT_EQ(g_seen.calls["ip4_local"], 1u);
    EXPECT_EQ(g_seen.packets["ip4_local"], 5u);
    EXPECT_EQ(drops(), want({{DropReason::kLocalUnhandled, 4}}));
    EXPECT_EQ(out_.on(Side::kUplink).size(), 1u) << "the echo reply";
    EXPECT_EQ(out_.on(Side::kPodB).size(), 1u) << "UDP/4789 not to the node is forwarded";
}

TEST_F(LocalL4, StageGetsOnlyItsProtocolAndPort6) {
    run_l4(true);
    EXPECT_EQ(g_seen.sports["udp6"], std::vector<uint16_t>{1000});
    EXPECT_EQ(g_seen.sports["tcp6"], std::vector<uint16_t>{1001});
    EXPECT_EQ(g_seen.calls["ip6_local"], 1u);
    EXPECT_EQ(g_seen.packets["ip6_local"], 5u);
    EXPECT_EQ(drops(), want({{DropReason::kLocalUnhandled, 4}}));
    EXPECT_EQ(out_.on(Side::kUplink).size(), 1u) << "the echo reply";
    EXPECT_EQ(out_.on(Side::kPodB).size(), 1u) << "UDP/4789 not to the node is forwarded";
}

TEST_F(LocalL4, WhatAnL4StageTakesGoesNoFurther) {
    g_seen.take = true;
    run_l4(false);
    EXPECT_EQ(g_seen.packets["ip4_local"], 3u);
    EXPECT_EQ(drops(), want({{DropReason::kRouteBlackhole, 2}, {DropReason::kLocalUnhandled, 2}}));
    EXPECT_EQ(out_.on(Side::kUplink).size(), 1u) << "the echo reply";
}

TEST_F(LocalL4, WhatAnL4StageTakesGoesNoFurther6) {
    g_seen.take = true;
    run_l4(true);
    EXPECT_EQ(g_seen.packets["ip6_local"], 3u);
    EXPECT_EQ(drops(), want({{DropReason::kRouteBlackhole, 2}, {DropReason::kLocalUnhandled, 2}}));
    EXPECT_EQ(out_.on(Side::kUplink).size(), 1u) << "the echo reply";
}

// A first fragment (more fragments set, offset 0) carries the L4 header but
// not the whole datagram: an L4-port stage would decapsulate a cut inner
// packet. Guards run_local_hook taking whole datagrams only (kMetaFragment,
// not just kMetaLaterFragment): the first fragment goes on to the other
// local stages and icmp4_local / icmp6_local as before.
class LocalL4Fragments : public Pipelines {
  protected:
    void run_first_fragment(bool v6) {
        PipelineRegistry r;
        Hook h = v6 ? Hook::kIp6Local : Hook::kIp4Local;
        r.add_stage(stage("any", h, v6 ? &keep_all<Hook::kIp6Local> : &keep_all<Hook::kIp4Local>));
        r.add_stage(l4(v6 ? "udp6" : "udp4", h, v6 ? &l4_stage<2> : &l4_stage<0>, IPPROTO_UDP,
                       kTunnelPort));
        use(r);
        g_seen.take = true;  // what the L4 stage gets goes no further
        auto to_node = [&] {
            return v6 ? from_uplink().ip6(kVia6, kNode6) : from_uplink().ip4(kVia4, kNode4);
        };
        auto first_fragment = [&] {
            return v6 ? from_uplink().ip6(kVia6, kNode6).fragment(0, true)
                      : from_uplink().ip4(kVia4, kNode4).mf();
        };
        Sent out = run({
            {Side::kUplink, to_node().udp(2000, kTunnelPort).payload(16)},
            {Side::kUplink, first_fragment().udp(2001, kTunnelPort).payload(16)},
        });
        const char *l4_name = v6 ? "udp6" : "udp4";
        EXPECT_EQ(g_seen.sports[l4_name], std::vector<uint16_t>{2000}) << "the whole one only";
        const char *hook = v6 ? "ip6_local" : "ip4_local";
        EXPECT_EQ(g_seen.packets[hook], 1u) << "the first fragment went on";
        EXPECT_EQ(drops(),
                  want({{DropReason::kRouteBlackhole, 1}, {DropReason::kLocalUnhandled, 1}}));
        EXPECT_TRUE(out.frames.empty());
    }
};

TEST_F(LocalL4Fragments, FirstFragmentIsNotTaken4) {
    run_first_fragment(false);
}

TEST_F(LocalL4Fragments, FirstFragmentIsNotTaken6) {
    run_first_fragment(true);
}

// A local stage may take a whole protocol other than UDP and TCP (l4_proto
// set, l4_port 0: IP-in-IP takes protocol 4). It gets every packet of that
// protocol to a local address, fragments included (the protocol is known for
// every one, so the stage can drop them with its reason); other protocols go
// on to the other stages as before, UDP / TCP to their port stages.
template <int kId>
void proto_stage(Worker &w, Burst &b) {
    static const char *const kNames[] = {"ipip4", "ipv6in6"};
    count(kNames[kId], b);
    if (g_seen.take) {
        filter(w, b, DropReason::kRouteBlackhole, [](rte_mbuf *) { return false; });
    }
}

TEST_F(Pipelines, LocalProtocolStageTakesEveryPacketOfItsProtocol) {
    constexpr uint8_t kIpip = 4, kIpv6 = 41, kGre = 47;
    PipelineRegistry r;
    r.add_stage(l4("ipip4", Hook::kIp4Local, &proto_stage<0>, kIpip, 0));
    r.add_stage(l4("ipv6in6", Hook::kIp6Local, &proto_stage<1>, kIpv6, 0));
    r.add_stage(l4("udp4", Hook::kIp4Local, &l4_stage<0>, IPPROTO_UDP, kTunnelPort));
    r.add_stage(stage("local4", Hook::kIp4Local, &keep_all<Hook::kIp4Local>));
    r.add_stage(stage("local6", Hook::kIp6Local, &keep_all<Hook::kIp6Local>));
    const Pipeline &p = use(r);
    EXPECT_EQ(p.hook(Hook::kIp4Local).n_l4, 2);
    EXPECT_EQ(p.hook(Hook::kIp4Local).n_proto, 1);
    EXPECT_EQ(p.hook(Hook::kIp6Local).n_l4, 1);
    EXPECT_EQ(p.hook(Hook::kIp6Local).n_proto, 1);
    EXPECT_EQ(p.hook(Hook::kIp4Input).n_proto, 0);
    g_seen.take = true;
    auto to_node4 = [] { return from_uplink().ip4(kVia4, kNode4); };
    auto to_node6 = [] { return from_uplink().ip6(kVia6, kNode6); };
    Sent out = run({
        {Side::kUplink, to_node4().next_proto(kIpip).payload(20)},
        {Side::kUplink, to_node4().next_proto(kIpip).mf().payload(16)},
        {Side::kUplink, to_node4().next_proto(kIpip).frag_offset(2).payload(8)},
        {Side::kUplink, to_node4().next_proto(kGre).payload(20)},
        {Side::kUplink, to_node4().udp(3000, kTunnelPort).payload(8)},
        {Side::kPodB, from_pod_b().ip4(kPodB4, kGw4).echo_request()},
        {Side::kUplink, to_node6().next_proto(kIpv6).payload(40)},
        {Side::kUplink, to_node6().fragment(0, true).next_proto(kIpv6).payload(40)},
        {Side::kUplink, to_node6().fragment(8, false).next_proto(kIpv6).payload(16)},
        {Side::kUplink, to_node6().next_proto(kIpip).payload(20)},
        {Side::kPodB, from_pod_b().ip6(kPodB6, kGw6).echo_request()},
    });
    EXPECT_EQ(g_seen.packets["ipip4"], 3u) << "whole, first and later fragment";
    EXPECT_EQ(g_seen.calls["ipip4"], 1u);
    EXPECT_EQ(g_seen.packets["ipv6in6"], 3u);
    EXPECT_EQ(g_seen.sports["udp4"], std::vector<uint16_t>{3000});
    EXPECT_EQ(g_seen.packets["ip4_local"], 2u) << "GRE and the echo went on";
    EXPECT_EQ(g_seen.packets["ip6_local"], 2u) << "protocol 4 over IPv6 and the echo went on";
    EXPECT_EQ(drops(), want({{DropReason::kRouteBlackhole, 7}, {DropReason::kLocalUnhandled, 2}}));
    EXPECT_EQ(out.on(Side::kPodB).size(), 2u) << "the echo replies";
    EXPECT_EQ(out.frames.size(), 2u);
}

TEST_F(Pipelines, LocalProtocolStagesAreChecked) {
    PipelineRegistry r;
    auto fn = &letter<'a'>;
    r.add_stage(l4("p4", Hook::kIp4Local, fn, 4, 0));
    std::string e = invalid([&] { r.add_stage(l4("p4b", Hook::kIp4Local, fn, 4, 0)); });
    EXPECT_NE(e.find("protocol 4"), std::string::npos) << e;
    r.add_stage(l4("p4v6", Hook::kIp6Local, fn, 4, 0));  // another hook
    invalid([&] { r.add_stage(l4("p4in", Hook::kIp4Input, fn, 4, 0)); });
    e = invalid([&] { r.add_stage(l4("tcp0", Hook::kIp4Local, fn, IPPROTO_TCP, 0)); });
    EXPECT_NE(e.find("port"), std::string::npos) << e;
    invalid([&] { r.add_stage(l4("gre1", Hook::kIp4Local, fn, 47, 1)); });
    Pipeline p = r.freeze();
    EXPECT_EQ(p.hook(Hook::kIp4Local).n_l4, 1);
    EXPECT_EQ(p.hook(Hook::kIp4Local).n_proto, 1);
    EXPECT_EQ(p.hook(Hook::kIp6Local).n_proto, 1);
}

// A UDP / TCP stage whose port is set at run time (l4_port_fn: VXLAN's
// vxlanPort). The dispatcher reads it once per burst: a change reaches the
// next burst with the pipeline frozen as it was; 0 takes nothing; a fixed
// port wins when the run-time one meets it.
uint16_t g_runtime_port = 0;  // what runtime_port gives: the pretend configuration
unsigned g_port_reads = 0;
uint16_t runtime_port(const Worker &) {
    g_port_reads++;
    return g_runtime_port;
}

StageDef l4_runtime(std::string name, Hook h, StageFn fn, uint8_t proto) {
    StageDef d = stage(std::move(name), h, fn);
    d.l4_proto = proto;
    d.l4_port_fn = &runtime_port;
    return d;
}

class RuntimeL4Port : public Pipelines {
  protected:
    void run_ports(bool v6) {
        PipelineRegistry r;
        const Hook h = v6 ? Hook::kIp6Local : Hook::kIp4Local;
        const char *rt = v6 ? "udp6" : "udp4";
        const char *fixed = v6 ? "fixed6" : "fixed4";
        // Registered first: the fixed port comes before it all the same.
        r.add_stage(l4_runtime(rt, h, v6 ? &l4_stage<2> : &l4_stage<0>, IPPROTO_UDP));
        r.add_stage(l4(fixed, h, v6 ? &l4_stage<5> : &l4_stage<4>, IPPROTO_UDP, 5555));
        const Pipeline &p = use(r);
        ASSERT_EQ(p.hook(h).n_l4, 2);
        EXPECT_EQ(p.hook(h).n_proto, 0);
        EXPECT_EQ(p.stage_names[p.hook(h).e[0].stage], fixed);
        EXPECT_EQ(p.hook(h).e[1].l4_port_fn, &runtime_port);
        auto to_node = [&] {
            return v6 ? from_uplink().ip6(kVia6, kNode6) : from_uplink().ip4(kVia4, kNode4);
        };
        auto burst = [&](uint16_t port) {
            g_runtime_port = port;
            const unsigned reads = g_port_reads;
            run({
                {Side::kUplink, to_node().udp(1000, 4789).payload(8)},
                {Side::kUplink, to_node().udp(1001, 4790).payload(8)},
                {Side::kUplink, to_node().udp(1002, 5555).payload(8)},
                {Side::kUplink, to_node().udp(1003, 0).payload(8)},
                {Side::kUplink, to_node().tcp(1004, 4790)},
            });
            EXPECT_EQ(g_port_reads - reads, 1u) << "read once for the burst";
            std::vector<uint16_t> got = g_seen.sports[rt];
            g_seen.sports[rt].clear();
            return got;
        };
        EXPECT_EQ(burst(4789), std::vector<uint16_t>{1000});
        EXPECT_EQ(burst(4790), std::vector<uint16_t>{1001}) << "the new port, not the old";
        EXPECT_EQ(burst(0), std::vector<uint16_t>{}) << "0: none (not UDP to port 0)";
        EXPECT_EQ(burst(5555), std::vector<uint16_t>{}) << "the fixed port's stage takes it";
        EXPECT_EQ(g_seen.sports[fixed], (std::vector<uint16_t>{1002, 1002, 1002, 1002}));
        EXPECT_EQ(burst(4789), std::vector<uint16_t>{1000}) << "and back";
    }
};

TEST_F(RuntimeL4Port, StageTakesThePortItsFunctionGivesNow4) {
    run_ports(false);
}

TEST_F(RuntimeL4Port, StageTakesThePortItsFunctionGivesNow6) {
    run_ports(true);
}

TEST_F(Pipelines, RuntimeL4PortStagesAreChecked) {
    PipelineRegistry r;
    auto fn = &letter<'a'>;
    StageDef both = l4_runtime("both", Hook::kIp4Local, fn, IPPROTO_UDP);
    both.l4_port = 4789;
    std::string e = invalid([&] { r.add_stage(both); });
    EXPECT_NE(e.find("l4_port_fn"), std::string::npos) << e;
    e = invalid([&] { r.add_stage(l4_runtime("icmp", Hook::kIp4Local, fn, IPPROTO_ICMP)); });
    EXPECT_NE(e.find("UDP or TCP"), std::string::npos) << e;
    invalid([&] { r.add_stage(l4_runtime("noproto", Hook::kIp4Local, fn, 0)); });
    e = invalid([&] { r.add_stage(l4_runtime("out", Hook::kIp4Output, fn, IPPROTO_UDP)); });
    EXPECT_NE(e.find("ip4_local"), std::string::npos) << e;
    // Run-time ports may meet only at run time: two are accepted, beside a
    // fixed port and a protocol.
    r.add_stage(l4_runtime("rt1", Hook::kIp4Local, fn, IPPROTO_UDP));
    r.add_stage(l4_runtime("rt2", Hook::kIp4Local, fn, IPPROTO_UDP));
    r.add_stage(l4("fixed", Hook::kIp4Local, fn, IPPROTO_UDP, 4789));
    r.add_stage(l4("proto", Hook::kIp4Local, fn, 4, 0));
    Pipeline p = r.freeze();
    EXPECT_EQ(p.hook(Hook::kIp4Local).n_l4, 4);
    EXPECT_EQ(p.hook(Hook::kIp4Local).n_proto, 1);
}

// ---------------------------------------------------------------------------------------------
// Re-entry.

class Reentry : public Pipelines {
  protected:
    // Inner packets to pod B, and outer UDP/4789 packets to the node carrying them.
    static Bytes inner4() {
        return l3_of(from_uplink().ip4(kInnerSrc4, kPodB4).udp(5, 6).payload(16));
    }
    static Bytes inner6() {
        return l3_of(from_uplink().ip6(kInnerSrc6, kPodB6).udp(7, 8).payload(16));
    }
    static PacketBuilder outer4(const Bytes &inner) {
        return from_uplink().ip4(kVia4, kNode4).udp(40000, kTunnelPort).payload(inner);
    }
    static PacketBuilder outer6(const Bytes &inner) {
        return from_uplink().ip6(kVia6, kNode6).udp(40000, kTunnelPort).payload(inner);
    }
    void use_decap(StageFn fn) {
        PipelineRegistry r;
        r.add_stage(l4("decap4", Hook::kIp4Local, fn, IPPROTO_UDP, kTunnelPort));
        r.add_stage(l4("decap6", Hook::kIp6Local, fn, IPPROTO_UDP, kTunnelPort));
        use(r);
    }
    // Every combination of outer and inner family: each inner packet leaves to pod B.
    void expect_decapsulated() {
        use_decap(&decap);
        Bytes i4 = inner4(), i6 = inner6();
        Sent out = run({{Side::kUplink, outer4(i4)},
                        {Side::kUplink, outer4(i6)},
                        {Side::kUplink, outer6(i6)},
                        {Side::kUplink, outer6(i4)}});
        EXPECT_EQ(drops(), want({}));
        EXPECT_EQ(g_seen.packets["decap"], 4u);
        auto to_b = out.on(Side::kPodB);
        ASSERT_EQ(to_b.size(), 4u);
        EXPECT_EQ(out.frames.size(), 4u);
        // Pod B's buffer in the order of the re-entry passes: IPv4 first.
        expect_inner_forwarded(*to_b[0], i4);
        expect_inner_forwarded(*to_b[1], i4);
        expect_inner_forwarded(*to_b[2], i6);
        expect_inner_forwarded(*to_b[3], i6);
    }
};

// A decapsulation that strips the outer headers off the mbuf.
TEST_F(Reentry, DecapsulatedPacketIsRoutedAgain) {
    g_seen.decap_adjust = true;
    expect_decapsulated();
}

// A decapsulation that only points meta.l3_off at the inner header, as
// Worker::reenter4 / reenter6 allow ("meta.l3_off at its IP header"): the
// Ethernet header must still go right before the inner packet.
TEST_F(Reentry, DecapsulatedPacketIsRoutedAgainFromItsL3Offset) {
    g_seen.decap_adjust = false;
    expect_decapsulated();
}

TEST_F(Reentry, EndlessReentryIsCut) {
    use_decap(&reenter_same);
    Sent out = run({{Side::kUplink, outer4(inner4())}, {Side::kUplink, outer6(inner6())}});
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kReentryLoop, 2}}));
    // The first pass and kMaxReentries more, for each packet.
    EXPECT_EQ(g_seen.packets["reenter_same"], 2u * (1 + Worker::kMaxReentries));
}

TEST_F(Reentry, OverfullReentryBurstIsDropped) {
    use_decap(&decap_twice);
    constexpr uint16_t kPackets = 20;  // 40 re-entries, room for kBurst
    std::vector<std::pair<Side, PacketBuilder>> in;
    Bytes i4 = inner4();
    for (uint16_t i = 0; i < kPackets; i++) {
        in.emplace_back(Side::kUplink, outer4(i4));
    }
    Sent out = run(in);
    EXPECT_EQ(drops(), want({{DropReason::kReentryFull, 2 * kPackets - kBurst}}));
    ASSERT_EQ(out.on(Side::kPodB).size(), kBurst);
    expect_inner_forwarded(*out.on(Side::kPodB)[0], i4);
    EXPECT_EQ(out.frames.size(), kBurst);
}

// Re-enters every packet with a meta.l3_off the worker must refuse, by the
// outer source port: 1 / 4 at 0, 2 / 5 just below the 14 bytes an Ethernet
// header needs, 3 / 6 past the end of the first segment (so far that not
// even the Ethernet header before it is in it). Ports 1-3 as IPv4, 4-6 as IPv6.
void bad_offset(Worker &w, Burst &b) {
    count("bad_offset", b);
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        PktMeta &md = meta(m);
        uint16_t s = sport(m);
        switch ((s - 1) % 3) {
            case 0:
                md.l3_off = 0;
                break;
            case 1:
                md.l3_off = kEthLen - 1;
                break;
            default:
                md.l3_off = static_cast<uint16_t>(m->data_len + kEthLen + 1);
                break;
        }
        if (s <= 3) {
            w.reenter4(m);
        } else {
            w.reenter6(m);
        }
    }
    b.n = 0;
}

// Guards Worker::reenter's offset check: an l3_off below 14 (no room for
// the Ethernet header l2_rewrite writes) or past the first segment is
// dropped as reentry_bad_offset, not cut into nonsense or read past the
// data.
TEST_F(Reentry, BadOffsetIsDropped) {
    use_decap(&bad_offset);
    std::vector<std::pair<Side, PacketBuilder>> in;
    for (uint16_t s = 1; s <= 6; s++) {
        PacketBuilder b =
            s <= 3 ? from_uplink().ip4(kVia4, kNode4) : from_uplink().ip6(kVia6, kNode6);
        in.emplace_back(Side::kUplink, std::move(b.udp(s, kTunnelPort).payload(inner4())));
    }
    Sent out = run(in);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kReentryBadOffset, 6}}));
    EXPECT_EQ(g_seen.packets["bad_offset"], 6u) << "one pass each";
}

// On a local hook (every local packet, fragments included): a pretend
// decapsulation of fragments. The inner packet after the outer IP + UDP
// header re-enters with an Ethernet header copied in front of it and
// meta.l3_off at it (the worker cuts what is before), and a stale
// kMetaLocalOrigin on top of the outer's fragment flags.
void decap_fragments(Worker &w, Burst &b) {
    count("decap_fragments", b);
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        PktMeta &md = meta(m);
        if (!(md.flags & kMetaFragment)) {
            b.pkts[k++] = m;
            continue;
        }
        auto inner = static_cast<uint16_t>(md.l4_off + sizeof(rte_udp_hdr));
        std::memmove(at<uint8_t>(m, inner - kEthLen), at<uint8_t>(m, 0), kEthLen);
        bool v6 = (*at<uint8_t>(m, inner) >> 4) == 6;
        at<rte_ether_hdr>(m, inner - kEthLen)->ether_type =
            rte_cpu_to_be_16(v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
        md.l3_off = inner;
        md.flags |= kMetaLocalOrigin;
        reenter_by_version(w, m);
    }
    b.n = k;
}

// Guards reenter4 / reenter6 clearing meta.flags: outer later fragments
// (kMetaFragment | kMetaLaterFragment, plus the stale kMetaLocalOrigin)
// carrying whole inner packets. Carried over, kMetaLaterFragment would
// suppress the time exceeded about the inner packet with TTL 1,
// kMetaLocalOrigin would keep the forwarded one's TTL, and kMetaFragment
// would make icmp4_local drop the echo request.
TEST_F(Reentry, OuterFlagsDoNotCarryOverToTheInnerPacket4) {
    PipelineRegistry r;
    r.add_stage(stage("decap_fragments4", Hook::kIp4Local, &decap_fragments));
    use(r);
    Bytes expiring = l3_of(from_uplink().ip4(kInnerSrc4, kPodB4).ttl(1).udp(5, 6).payload(16));
    Bytes passing = l3_of(from_uplink().ip4(kInnerSrc4, kPodB4).udp(7, 8).payload(16));
    Bytes echo = l3_of(from_uplink().ip4(kInnerSrc4, kGw4).echo_request(0x77, 1).payload(16));
    auto later = [](const Bytes &inner) {
        return from_uplink()
            .ip4(kVia4, kNode4)
            .frag_offset(100)
            .udp(40000, kTunnelPort)
            .payload(inner);
    };
    Sent out = run({{Side::kUplink, later(expiring)},
                    {Side::kUplink, later(passing)},
                    {Side::kUplink, later(echo)}});
    // The three outer packets, then the inner echo (local too, not a fragment: kept).
    EXPECT_EQ(g_seen.packets["decap_fragments"], 4u);
    EXPECT_EQ(drops(), want({{DropReason::kIp4TtlExceeded, 1}}));
    EXPECT_EQ(icmp_sent(), 1u);
    auto to_b = out.on(Side::kPodB);
    ASSERT_EQ(to_b.size(), 1u);
    expect_inner_forwarded(*to_b[0], passing);
    auto up = out.on(Side::kUplink);
    ASSERT_EQ(up.size(), 2u) << "the time exceeded and the echo reply";
    const Frame *err = nullptr, *reply = nullptr;
    for (const Frame *f : up) {
        ASSERT_TRUE(f->pkt.ip4.has_value());
        (f->pkt.ip4->src == kGw4 ? reply : err) = f;
    }
    ASSERT_NE(err, nullptr);
    ASSERT_NE(reply, nullptr);
    check_icmp4_error(*err, 11, 0, 0, expiring);
    EXPECT_EQ(reply->pkt.ip4->dst, kInnerSrc4);
    ASSERT_GE(reply->pkt.l4().size(), 1u);
    EXPECT_EQ(reply->pkt.l4()[0], 0) << "echo reply";
}

TEST_F(Reentry, OuterFlagsDoNotCarryOverToTheInnerPacket6) {
    PipelineRegistry r;
    r.add_stage(stage("decap_fragments6", Hook::kIp6Local, &decap_fragments));
    use(r);
    Bytes expiring =
        l3_of(from_uplink().ip6(kInnerSrc6, kPodB6).hop_limit(1).udp(5, 6).payload(16));
    Bytes passing = l3_of(from_uplink().ip6(kInnerSrc6, kPodB6).udp(7, 8).payload(16));
    auto later = [](const Bytes &inner) {
        return from_uplink()
            .ip6(kVia6, kNode6)
            .fragment(100, false)
            .udp(40000, kTunnelPort)
            .payload(inner);
    };
    Sent out = run({{Side::kUplink, later(expiring)}, {Side::kUplink, later(passing)}});
    EXPECT_EQ(g_seen.packets["decap_fragments"], 2u);
    EXPECT_EQ(drops(), want({{DropReason::kIp6HopLimitExceeded, 1}}));
    EXPECT_EQ(icmp_sent(), 1u);
    auto to_b = out.on(Side::kPodB);
    ASSERT_EQ(to_b.size(), 1u);
    expect_inner_forwarded(*to_b[0], passing);
    auto up = out.on(Side::kUplink);
    ASSERT_EQ(up.size(), 1u) << "the time exceeded";
    check_icmp6_error(*up[0], 3, 0, 0, expiring);
}

// ---------------------------------------------------------------------------------------------
// Reroute.

TEST_F(Pipelines, RerouteSendsAnEncapsulatedPacketTheNewWay) {
    PipelineRegistry r;
    r.add_stage(stage("encap4", Hook::kIp4Output, &encap4));
    use(r);
    PacketBuilder in = from_pod_a().ip4(kPodA4, kElsewhere4).udp(1, 2).payload(30);
    Sent out = run(Side::kPodA, in);
    EXPECT_EQ(drops(), want({}));
    EXPECT_TRUE(out.on(Side::kUplink).empty()) << "the default route was the way before";
    auto to_b = out.on(Side::kPodB);
    ASSERT_EQ(to_b.size(), 1u);
    const Frame &f = *to_b[0];
    check_eth_to(f, Side::kPodB, kTypeIp4);
    ASSERT_TRUE(f.pkt.ip4.has_value());
    EXPECT_EQ(f.pkt.ip4->src, kNode4);
    EXPECT_EQ(f.pkt.ip4->dst, kPodB4);
    EXPECT_EQ(f.pkt.ip4->proto, kProtoUdp);
    EXPECT_EQ(f.pkt.ip4->ttl, 64) << "built here: no TTL taken off";
    EXPECT_TRUE(f.pkt.ip4->header_checksum_ok);
    auto l4 = f.pkt.l4();
    ASSERT_GE(l4.size(), 8u);
    EXPECT_EQ((l4[2] << 8) | l4[3], kTunnelPort);
    Bytes inner = l3_of(in);
    EXPECT_TRUE(std::equal(l4.begin() + 8, l4.end(), inner.begin(), inner.end()))
        << "the inner packet, untouched";
    // The stage saw the packet twice: routed, then encapsulated and routed again.
    EXPECT_EQ(g_seen.calls["encap4"], 2u);
    EXPECT_EQ(g_seen.packets["encap4"], 2u);
}

TEST_F(Pipelines, RerouteSendsARewrittenPacketTheNewWay6) {
    PipelineRegistry r;
    r.add_stage(stage("nat6", Hook::kIp6Output, &nat6));
    use(r);
    Sent out = run({{Side::kPodA, from_pod_a().ip6(kPodA6, kElsewhere6).udp(1, 2).payload(30)},
                    {Side::kPodA, from_pod_a().ip6(kPodA6, kVia6).udp(3, 4)}});
    EXPECT_EQ(drops(), want({}));
    auto to_b = out.on(Side::kPodB);
    ASSERT_EQ(to_b.size(), 1u);
    check_eth_to(*to_b[0], Side::kPodB, kTypeIp6);
    ASSERT_TRUE(to_b[0]->pkt.ip6.has_value());
    EXPECT_EQ(to_b[0]->pkt.ip6->dst, kPodB6);
    EXPECT_EQ(to_b[0]->pkt.ip6->hop_limit, 63) << "taken off once";
    ASSERT_EQ(out.on(Side::kUplink).size(), 1u) << "the other packet goes its way";
    EXPECT_EQ(out.on(Side::kUplink)[0]->pkt.ip6->dst, kVia6);
    EXPECT_EQ(g_seen.calls["nat6"], 2u);
    EXPECT_EQ(g_seen.packets["nat6"], 3u);
}

// A rerouted packet that cannot be routed: dropped with the route's reason
// within the burst, and nothing it caused (an ICMP error) waits for a later
// burst (which, on an idle worker, may never come).
TEST_F(Pipelines, RerouteThatFailsLeavesNothingQueued) {
    PipelineRegistry r;
    r.add_stage(stage("misroute4", Hook::kIp4Output, &misroute4));
    use(r);
    Sent out = run(Side::kPodA, from_pod_a().ip4(kPodA4, kElsewhere4).udp(1, 2));
    EXPECT_EQ(drops()["route_unreachable"], 1u);
    EXPECT_EQ(worker().gen4_.n, 0) << "left for the next burst";
    EXPECT_TRUE(out.on(Side::kUplink).empty());
}

// An output stage that reroutes whatever it sees: cut after kMaxReentries
// passes like a re-entry loop, nothing left for a later burst.
TEST_F(Pipelines, EndlessRerouteIsCut) {
    PipelineRegistry r;
    r.add_stage(stage("reroute_always", Hook::kIp4Output, &reroute_always));
    use(r);
    Sent out = run(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kReentryLoop, 1}}));
    EXPECT_EQ(worker().gen4_.n, 0) << "left for the next burst";
    EXPECT_EQ(g_seen.packets["reroute_always"], 1 + Worker::kMaxReentries);
}

// On kIp4Output / kIp6Output: every packet built here (kMetaLocalOrigin)
// has its (meta.l4_off, byte there) recorded. An ICMP error to pod A, on its
// first pass, is sent to g_seen.reroute_to4 / reroute_to6 instead, with 8
// bytes put in front of the frame (meta.l3_off / l4_off moved along, as a
// stage that builds outer headers might leave them), and routed again.
constexpr uint16_t kShift = 8;

template <bool kV6>
void shift_errors(Worker &w, Burst &b) {
    count(kV6 ? "shift_errors6" : "shift_errors4", b);
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        PktMeta &md = meta(m);
        if (!(md.flags & kMetaLocalOrigin)) {
            b.pkts[k++] = m;
            continue;
        }
        g_seen.l4_seen.emplace_back(md.l4_off, *at<uint8_t>(m, md.l4_off));
        bool to_pod_a;
        if constexpr (kV6) {
            auto *ip = at<rte_ipv6_hdr>(m, md.l3_off);
            to_pod_a = std::memcmp(ip->dst_addr, kPodA6.data(), 16) == 0;
            if (to_pod_a) {
                std::memcpy(ip->dst_addr, g_seen.reroute_to6.data(), 16);
            }
        } else {
            auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
            to_pod_a = ip->dst_addr == rte_cpu_to_be_32(kPodA4);
            if (to_pod_a) {
                ip->dst_addr = rte_cpu_to_be_32(g_seen.reroute_to4);
                ip->hdr_checksum = 0;
                ip->hdr_checksum = rte_ipv4_cksum(ip);
            }
        }
        if (!to_pod_a) {
            b.pkts[k++] = m;
            continue;
        }
        if (rte_pktmbuf_prepend(m, kShift) == nullptr) {
            ADD_FAILURE() << "no headroom";
            w.drop(m, DropReason::kNoRoute);
            continue;
        }
        std::memset(at<uint8_t>(m, 0), 0xab, kShift);
        md.l3_off += kShift;
        md.l4_off += kShift;
        if constexpr (kV6) {
            w.reroute6(m);
        } else {
            w.reroute4(m);
        }
    }
    b.n = k;
}

class RerouteBuilt : public Pipelines {
  protected:
    // A packet from pod A with TTL / hop limit 1 to the uplink: its time
    // exceeded, to pod A, goes through shift_errors.
    Sent run_expiring(bool v6) {
        PipelineRegistry r;
        if (v6) {
            r.add_stage(stage("shift_errors6", Hook::kIp6Output, &shift_errors<true>));
        } else {
            r.add_stage(stage("shift_errors4", Hook::kIp4Output, &shift_errors<false>));
        }
        use(r);
        return run(Side::kPodA, v6 ? from_pod_a().ip6(kPodA6, kVia6).hop_limit(1).udp(1, 2)
                                   : from_pod_a().ip4(kPodA4, kVia4).ttl(1).udp(1, 2));
    }
};

// Guards reroute4 keeping kMetaLocalOrigin (the error is not TTL-decremented
// on its second way out) and the cut taking meta.l4_off along (the output
// stage finds the ICMP type at l4_off on the second pass), and the frame
// leaving without the 8 bytes.
TEST_F(RerouteBuilt, ErrorKeepsLocalOriginAndItsL4Offset4) {
    g_seen.reroute_to4 = kPodB4;
    Sent out = run_expiring(false);
    EXPECT_EQ(drops(), want({{DropReason::kIp4TtlExceeded, 1}}));
    EXPECT_EQ(icmp_sent(), 1u);
    constexpr uint16_t kL4 = kEthLen + sizeof(rte_ipv4_hdr);
    EXPECT_EQ(g_seen.l4_seen, (std::vector<std::pair<uint16_t, uint8_t>>{{kL4, 11}, {kL4, 11}}));
    ASSERT_EQ(out.frames.size(), 1u);
    const Frame &f = out.frames[0];
    check_eth_to(f, Side::kPodB, kTypeIp4);
    ASSERT_TRUE(f.pkt.ip4.has_value());
    EXPECT_EQ(f.pkt.ip4->ttl, 64) << "built here: no TTL taken off";
    EXPECT_TRUE(f.pkt.ip4->header_checksum_ok);
    EXPECT_EQ(f.pkt.ip4->dst, kPodB4);
    EXPECT_EQ(f.pkt.ip4->src, kNode4);
    EXPECT_EQ(f.pkt.frame.size(), kEthLen + f.pkt.ip4->total_length) << "the 8 bytes cut";
    ASSERT_GE(f.pkt.l4().size(), 8u);
    EXPECT_EQ(f.pkt.l4()[0], 11);
    EXPECT_TRUE(f.pkt.l4_checksum_ok());
}

TEST_F(RerouteBuilt, ErrorKeepsLocalOriginAndItsL4Offset6) {
    g_seen.reroute_to6 = kPodB6;
    Sent out = run_expiring(true);
    EXPECT_EQ(drops(), want({{DropReason::kIp6HopLimitExceeded, 1}}));
    EXPECT_EQ(icmp_sent(), 1u);
    constexpr uint16_t kL4 = kEthLen + sizeof(rte_ipv6_hdr);
    EXPECT_EQ(g_seen.l4_seen, (std::vector<std::pair<uint16_t, uint8_t>>{{kL4, 3}, {kL4, 3}}));
    ASSERT_EQ(out.frames.size(), 1u);
    const Frame &f = out.frames[0];
    check_eth_to(f, Side::kPodB, kTypeIp6);
    ASSERT_TRUE(f.pkt.ip6.has_value());
    EXPECT_EQ(f.pkt.ip6->hop_limit, 64) << "built here: no hop limit taken off";
    EXPECT_EQ(f.pkt.ip6->dst, kPodB6);
    EXPECT_EQ(f.pkt.frame.size(), kEthLen + 40u + f.pkt.ip6->payload_length) << "the 8 bytes cut";
    ASSERT_GE(f.pkt.l4().size(), 8u);
    EXPECT_EQ(f.pkt.l4()[0], 3);
}

// Guards the same l4_off through icmp4_error: the rerouted error cannot be
// routed, and icmp4_error must find it an ICMP error (the type at l4_off)
// and send nothing about it. With l4_off still 8 bytes on, it reads the
// quoted packet's first byte and sends an error about an error.
TEST_F(RerouteBuilt, UnroutableErrorCausesNoError4) {
    g_seen.reroute_to4 = kUnreachable4;
    Sent out = run_expiring(false);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kIp4TtlExceeded, 1},
                             {DropReason::kRouteUnreachable, 1},
                             {DropReason::kIcmpErrorSuppressed, 1}}));
    EXPECT_EQ(icmp_sent(), 1u) << "only the time exceeded";
    EXPECT_EQ(g_seen.l4_seen.size(), 1u);
}

TEST_F(RerouteBuilt, UnroutableErrorCausesNoError6) {
    g_seen.reroute_to6 = kUnreachable6;
    Sent out = run_expiring(true);
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kIp6HopLimitExceeded, 1},
                             {DropReason::kRouteUnreachable, 1},
                             {DropReason::kIcmpErrorSuppressed, 1}}));
    EXPECT_EQ(icmp_sent(), 1u) << "only the time exceeded";
}

// ---------------------------------------------------------------------------------------------
// Feature next-hop kinds.

class FeatureKinds : public Pipelines {
  protected:
    void SetUp() override {
        Pipelines::SetUp();
        Tables &t = lab().tables();
        // A tunnel next hop (the feature's kind) and pod B's as the underlay.
        g_seen.tunnel = reg_.add_nh_kind("tunnel");
        NextHop tn{};
        tn.kind = g_seen.tunnel;
        tn.port = lab().port(Side::kUplink);
        tn.mtu = 1400;
        tunnel_nh_ = t.nh_alloc(tn);
        NextHop pb{};
        pb.kind = NhKind::kPod;
        pb.port = lab().port(Side::kPodB);
        pb.dst_mac = kPodBMac;
        pb.src_mac = kGwMac;
        pb.mtu = kPodBMtu;
        g_seen.underlay = t.nh_alloc(pb);
        ASSERT_NE(tunnel_nh_, kNhInvalid);
        ASSERT_NE(g_seen.underlay, kNhInvalid);
        ASSERT_EQ(t.add4(p4_, tunnel_nh_), 0);
        ASSERT_EQ(t.add6(p6_, tunnel_nh_), 0);
        routes_ = true;
    }
    void TearDown() override {
        Tables &t = lab().tables();
        if (routes_) {
            EXPECT_EQ(t.del4(p4_), 0);
            EXPECT_EQ(t.del6(p6_), 0);
        }
        for (uint32_t id : {tunnel_nh_, g_seen.underlay}) {
            if (id != kNhInvalid) {
                t.nh_free(id);
            }
        }
        Pipelines::TearDown();
    }

    PipelineRegistry reg_;
    uint32_t tunnel_nh_ = kNhInvalid;
    bool routes_ = false;
    const net::Prefix4 p4_{net::Ip4Addr::from_host(ip4("10.68.0.0")), 16};
    const net::Prefix6 p6_{net::Ip6Addr::from_bytes(ip6("fd00:68::").data()), 32};
};

TEST_F(FeatureKinds, KindsAreNumberedFromTheFirstFeatureKind) {
    EXPECT_EQ(g_seen.tunnel, NhKind::kFirstFeature);
    EXPECT_EQ(static_cast<uint8_t>(reg_.add_nh_kind("second")),
              static_cast<uint8_t>(NhKind::kFirstFeature) + 1);
    EXPECT_EQ(reg_.nh_kind_names(), (std::vector<std::string>{"tunnel", "second"}));
    EXPECT_EQ(nh_kind_name(NhKind::kPod), "pod");
    EXPECT_EQ(nh_kind_name(NhKind::kBlackhole), "blackhole");
}

TEST_F(FeatureKinds, OutputStageThatTakesTheKindSendsIt) {
    reg_.add_stage(stage("tunnel4", Hook::kIp4Output, &take_tunnel));
    reg_.add_stage(stage("tunnel6", Hook::kIp6Output, &take_tunnel));
    use(reg_);
    Sent out = run({{Side::kPodA, from_pod_a().ip4(kPodA4, kTunnel4).udp(1, 2)},
                    {Side::kPodA, from_pod_a().ip6(kPodA6, kTunnel6).udp(1, 2)}});
    EXPECT_EQ(drops(), want({}));
    EXPECT_EQ(g_seen.packets["take_tunnel"], 2u);
    auto to_b = out.on(Side::kPodB);
    ASSERT_EQ(to_b.size(), 2u);
    EXPECT_EQ(out.frames.size(), 2u);
    check_eth_to(*to_b[0], Side::kPodB, kTypeIp4);
    ASSERT_TRUE(to_b[0]->pkt.ip4.has_value());
    EXPECT_EQ(to_b[0]->pkt.ip4->dst, kTunnel4);
    EXPECT_EQ(to_b[0]->pkt.ip4->ttl, 63);
    check_eth_to(*to_b[1], Side::kPodB, kTypeIp6);
    ASSERT_TRUE(to_b[1]->pkt.ip6.has_value());
    EXPECT_EQ(to_b[1]->pkt.ip6->dst, kTunnel6);
    EXPECT_EQ(to_b[1]->pkt.ip6->hop_limit, 63);
}

TEST_F(FeatureKinds, KindNoStageTakesIsDropped) {
    use(reg_);  // the kind, no stage
    Sent out = run({{Side::kPodA, from_pod_a().ip4(kPodA4, kTunnel4).udp(1, 2)},
                    {Side::kPodA, from_pod_a().ip6(kPodA6, kTunnel6).udp(1, 2)}});
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kNhKindUnhandled, 2}}));
    EXPECT_EQ(icmp_sent(), 0u);
}

TEST_F(FeatureKinds, DefaultPipelineDropsTheKindToo) {
    Sent out = run(Side::kPodA, from_pod_a().ip4(kPodA4, kTunnel4).udp(1, 2));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(drops(), want({{DropReason::kNhKindUnhandled, 1}}));
}

// route4 / route6 check the kind's next hop like kVia: its MTU first.
TEST_F(FeatureKinds, KindIsCheckedLikeVia) {
    reg_.add_stage(stage("tunnel4", Hook::kIp4Output, &take_tunnel));
    use(reg_);
    Sent out = run(Side::kPodA, from_pod_a().ip4(kPodA4, kTunnel4).df().udp(1, 2).payload(1400));
    EXPECT_EQ(drops(), want({{DropReason::kIp4FragNeeded, 1}}));
    ASSERT_EQ(out.on(Side::kPodA).size(), 1u) << "fragmentation needed";
    EXPECT_EQ(g_seen.packets["take_tunnel"], 1u) << "only the ICMP error";
}

// ---------------------------------------------------------------------------------------------
// Port taps.

TEST_F(Pipelines, TapsSeeEveryBurstOfTheirPort) {
    PipelineRegistry r;
    r.add_tap(tap_def("rx_tap", TapPoint::kRx, &tap<TapPoint::kRx>));
    r.add_tap(tap_def("tx_tap", TapPoint::kTx, &tap<TapPoint::kTx>));
    use(r);
    for (Side s : {Side::kPodA, Side::kPodB}) {
        worker().post({WorkerCommand::Kind::kAddRxQueue, lab().port(s), 0, 0});
    }
    worker().drain_commands();
    // Lab::add_port's ring names: pod A's, pod B's.
    rte_ring *rx_a = rte_ring_lookup("dpt0rx");
    rte_ring *rx_b = rte_ring_lookup("dpt1rx");
    ASSERT_NE(rx_a, nullptr);
    ASSERT_NE(rx_b, nullptr);
    auto put = [&](rte_ring *ring, Side s, const PacketBuilder &b) {
        rte_mbuf *m = b.mbuf(lab().pool(), lab().port(s));
        ASSERT_NE(m, nullptr);
        ASSERT_EQ(rte_ring_enqueue(ring, m), 0);
    };
    put(rx_a, Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2));
    put(rx_a, Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2));
    put(rx_a, Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).udp(1, 2));
    put(rx_b, Side::kPodB, from_pod_b().ip4(kPodB4, kPodA4).udp(1, 2));
    put(rx_b, Side::kPodB, from_pod_b().ip4(kPodB4, kBlackhole4).udp(1, 2));
    EXPECT_EQ(worker().poll_once(), 5);
    EXPECT_EQ(worker().poll_once(), 0);  // empty polls are no burst
    std::vector<Frame> sent = drain_tx();
    EXPECT_EQ(sent.size(), 4u);
    EXPECT_EQ(drops(), want({{DropReason::kRouteBlackhole, 1}}));

    std::map<uint16_t, uint64_t> rx, tx;
    for (const TapSeen &t : g_seen.taps) {
        EXPECT_EQ(t.dst.size(), t.n);
        (t.point == TapPoint::kRx ? rx : tx)[t.port] += t.n;
        for (const Mac &d : t.dst) {
            if (t.point == TapPoint::kRx) {
                EXPECT_EQ(d, t.port == lab().port(Side::kUplink) ? kUplinkMac : kGwMac)
                    << "as received";
            } else {
                EXPECT_EQ(d, t.port == lab().port(Side::kPodA)   ? kPodAMac
                             : t.port == lab().port(Side::kPodB) ? kPodBMac
                                                                 : kRouterMac)
                    << "as sent";
            }
        }
    }
    EXPECT_EQ(rx, (std::map<uint16_t, uint64_t>{{lab().port(Side::kPodA), 3},
                                                {lab().port(Side::kPodB), 2}}));
    EXPECT_EQ(tx, (std::map<uint16_t, uint64_t>{{lab().port(Side::kPodA), 1},
                                                {lab().port(Side::kPodB), 2},
                                                {lab().port(Side::kUplink), 1}}));
    uint64_t rx_total = 0, tx_total = 0;
    for (const auto &[p, n] : rx) {
        rx_total += n;
    }
    for (const auto &[p, n] : tx) {
        tx_total += n;
    }
    EXPECT_EQ(rx_total, worker().stats().rx_packets.get());
    EXPECT_EQ(tx_total, worker().stats().tx_packets.get());
}

// Frames the control thread hands a worker (WorkerCommand::kTx) pass the TX tap too.
TEST_F(Pipelines, TxTapSeesFramesFromTheControlThread) {
    PipelineRegistry r;
    r.add_tap(tap_def("tx_tap", TapPoint::kTx, &tap<TapPoint::kTx>));
    use(r);
    rte_mbuf *m = from_uplink().ip4(kNode4, kVia4).udp(1, 2).mbuf(lab().pool(), 0);
    ASSERT_NE(m, nullptr);
    ASSERT_NE(worker().post({WorkerCommand::Kind::kTx, lab().port(Side::kUplink), 0, 0, m}), 0u);
    worker().drain_commands();
    EXPECT_EQ(drain_tx().size(), 1u);
    ASSERT_EQ(g_seen.taps.size(), 1u);
    EXPECT_EQ(g_seen.taps[0].port, lab().port(Side::kUplink));
    EXPECT_EQ(g_seen.taps[0].n, 1);
}

// ---------------------------------------------------------------------------------------------
// Stage counters.

TEST_F(Pipelines, RegisteredStagesHaveCountersOfTheirOwn) {
    PipelineRegistry r;
    r.add_stage(stage("counted", Hook::kIp4Input, &keep_all<Hook::kIp4Input>));
    r.add_tap(tap_def("tx_tap", TapPoint::kTx, &tap<TapPoint::kTx>));
    const Pipeline &p = use(r);
    ASSERT_EQ(p.stage_count(), kStageCount + 2);
    EXPECT_EQ(p.stage_id("counted"), kStageCount);
    EXPECT_EQ(p.stage_id("tx_tap"), kStageCount + 1);
    EXPECT_EQ(p.stage_id("route4"), static_cast<size_t>(Stage::kRoute4));
    EXPECT_EQ(p.stage_id("nothing"), SIZE_MAX);
    EXPECT_EQ(p.hook(Hook::kIp4Input).e[0].stage, kStageCount);

    // Off: nothing counted.
    run({{Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2)}});
    EXPECT_EQ(stage_counters("counted").calls.get(), 0u);
    EXPECT_EQ(stage_counters("tx_tap").calls.get(), 0u);

    worker().set_stage_stats(true);
    run({{Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2)},
         {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2)},
         {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2)},
         {Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2)}});
    const auto &c = stage_counters("counted");
    EXPECT_EQ(c.calls.get(), 1u);
    EXPECT_EQ(c.packets.get(), 3u);
    EXPECT_GT(c.cycles.get(), 0u);
    const auto &t = stage_counters("tx_tap");
    EXPECT_EQ(t.calls.get(), 1u) << "pod B's buffer, sent once";
    EXPECT_EQ(t.packets.get(), 4u);
    EXPECT_GT(t.cycles.get(), 0u);
    // The built-in ones are where they always were.
    EXPECT_EQ(worker().stats().stages[static_cast<size_t>(Stage::kRoute4)].packets.get(), 3u);
}

// The stats op shows a worker's stages by the names of its pipeline.
TEST_F(Pipelines, StatsOpNamesRegisteredStages) {
    PipelineRegistry r;
    r.add_stage(stage("counted", Hook::kIp6Output, &keep_all<Hook::kIp6Output>));
    use(r);
    worker().set_stage_stats(true);
    run(Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2));
    control::NodeConfig cfg;
    cfg.workers.resize(1);
    cfg.stage_stats = true;
    control::Controller ctl(cfg, lab().tables(), {&worker()}, lab().pool());
    std::thread control([&] { ctl.run(); });
    nlohmann::json st;
    try {
        st = ctl.call("stats", nlohmann::json::object());
    } catch (const std::exception &e) {
        ADD_FAILURE() << e.what();
    }
    ctl.stop();
    control.join();
    ASSERT_EQ(st["workers"].size(), 1u);
    const auto &stages = st["workers"][0]["stages"];
    EXPECT_EQ(stages.size(), kStageCount + 1);
    ASSERT_TRUE(stages.contains("counted"));
    EXPECT_EQ(stages["counted"]["packets"], 1u);
    EXPECT_EQ(stages["counted"]["calls"], 1u);
}

// ---------------------------------------------------------------------------------------------
// Worker slots.

TEST_F(Pipelines, WorkerSlotsAreNumberedAndKeptPerWorker) {
    PipelineRegistry r;
    EXPECT_EQ(r.add_worker_slot("alpha"), 0);
    EXPECT_EQ(r.add_worker_slot("beta"), 1);
    EXPECT_EQ(r.add_worker_slot("gamma"), 2);
    g_seen.slot = 1;
    r.add_stage(stage("slot_user", Hook::kIp4Input, &slot_user));
    const Pipeline &p = use(r);
    EXPECT_EQ(p.slot_names, (std::vector<std::string>{"alpha", "beta", "gamma"}));

    for (uint16_t i = 0; i < kMaxWorkerSlots; i++) {
        EXPECT_EQ(worker().slot(i), nullptr) << "slot " << i << " starts empty";
    }
    uint64_t counter = 0;
    int other = 0;
    worker().set_slot(1, &counter);
    worker().set_slot(2, &other);
    EXPECT_EQ(worker().slot(1), &counter);
    EXPECT_EQ(worker().slot(2), &other);
    EXPECT_EQ(worker().slot(0), nullptr);

    run({{Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2)},
         {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2)}});
    EXPECT_EQ(counter, 2u) << "the stage reached its worker's slot";

    PipelineRegistry full;
    for (size_t i = 0; i < kMaxWorkerSlots; i++) {
        EXPECT_EQ(full.add_worker_slot("s" + std::to_string(i)), i);
    }
    invalid([&] { full.add_worker_slot("one_too_many"); });
}

// ---------------------------------------------------------------------------------------------
// Housekeeping functions (PipelineRegistry::add_housekeeping): Worker::run_once()
// calls them once the loop's commands are drained, on every idle loop and on
// every 64th busy loop in a row; never inside a burst.

constexpr uint64_t kHousekeepEvery = 64;  // worker.cpp's kHousekeepLoops

// What the housekeeping functions and the burst markers saw.
struct HkSeen {
    std::string order;            // one letter per housekeeping call
    uint64_t loop = 0;            // the test's count of run_once() calls, the current one
    std::vector<uint64_t> at;     // loop at each call of 'a'
    std::vector<uint64_t> acked;  // the worker's acked() at each call of 'a'
    bool in_burst = false;        // between a burst's ip4_input and ip4_output stages
    uint64_t mid_burst = 0;       // housekeeping calls made while in_burst
};
HkSeen g_hk;

template <char C>
void housekeep(Worker &w) {
    g_hk.order += C;
    g_hk.mid_burst += g_hk.in_burst ? 1 : 0;
    if (C == 'a') {
        g_hk.at.push_back(g_hk.loop);
        g_hk.acked.push_back(w.acked());
    }
}

// Burst markers: forwarded packets pass ip4_input, then ip4_output.
void burst_begins(Worker &, Burst &b) {
    g_hk.in_burst = b.n != 0;
}
void burst_ends(Worker &, Burst &) {
    g_hk.in_burst = false;
}

HousekeepDef housekeep_def(std::string name, HousekeepFn fn) {
    HousekeepDef d;
    d.name = std::move(name);
    d.fn = fn;
    return d;
}

class Housekeeping : public Pipelines {
  protected:
    void SetUp() override {
        g_hk = HkSeen{};
        Pipelines::SetUp();
    }
    // A pipeline with housekeeping functions a then b and the burst markers;
    // the worker polls pod A's RX queue.
    void use_housekeeping() {
        PipelineRegistry r;
        r.add_housekeeping(housekeep_def("hk_a", &housekeep<'a'>));
        r.add_housekeeping(housekeep_def("hk_b", &housekeep<'b'>));
        r.add_stage(stage("burst_begins", Hook::kIp4Input, &burst_begins));
        r.add_stage(stage("burst_ends", Hook::kIp4Output, &burst_ends));
        const Pipeline &p = use(r);
        ASSERT_EQ(p.n_housekeeping, 2);
        worker().post({WorkerCommand::Kind::kAddRxQueue, lab().port(Side::kPodA), 0, 0});
        worker().drain_commands();
    }
    // Lab::add_port names pod A's RX ring dpt0rx.
    void put_a_to_b() {
        rte_ring *rx = rte_ring_lookup("dpt0rx");
        ASSERT_NE(rx, nullptr);
        rte_mbuf *m = from_pod_a()
                          .ip4(kPodA4, kPodB4)
                          .udp(1, 2)
                          .payload(10)
                          .mbuf(lab().pool(), lab().port(Side::kPodA));
        ASSERT_NE(m, nullptr);
        ASSERT_EQ(rte_ring_enqueue(rx, m), 0);
    }
    // One run_once(), with a packet from pod A to pod B offered (busy) or
    // not. Whether the loop received it is up to the worker's RX back-off
    // (a queue may be skipped for a loop or two after an idle one), so the
    // rule is applied to what run_once() returned: housekeeping is due on a
    // loop that received nothing and on the 64th busy loop since the last
    // call. Returns the packets received.
    uint16_t loop(bool busy) {
        g_hk.loop++;
        if (busy) {
            put_a_to_b();
        }
        uint16_t n = worker().run_once();
        if (n == 0 || ++busy_since_ == kHousekeepEvery) {
            due_.push_back(g_hk.loop);
            busy_since_ = 0;
            due_busy_ += n != 0 ? 1 : 0;
        }
        received_ += n;
        EXPECT_EQ(drain_tx().size(), n) << "loop " << g_hk.loop;
        return n;
    }
    void loops(bool busy, uint64_t n) {
        for (uint64_t i = 0; i < n; i++) {
            loop(busy);
        }
    }
    static std::string times(const std::string &s, size_t n) {
        std::string r;
        for (size_t i = 0; i < n; i++) {
            r += s;
        }
        return r;
    }

    std::vector<uint64_t> due_;  // the loops housekeeping was due on
    uint64_t due_busy_ = 0;      // of them, busy loops
    uint64_t busy_since_ = 0;
    uint64_t received_ = 0;
};

// Guards: every idle loop calls every housekeeping function once, in the
// order they were registered; making the worker calls none.
TEST_F(Housekeeping, EveryIdleLoopCallsThemInOrder) {
    use_housekeeping();
    EXPECT_EQ(g_hk.order, "") << "called before the first loop";
    loops(false, 10);
    EXPECT_EQ(g_hk.order, times("ab", 10));
    EXPECT_EQ(g_hk.at, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
    EXPECT_EQ(g_hk.at, due_);
}

// Guards: busy loops call them once every 64 in a row (not every loop, not
// never), with per-stage counters off and on (two builds of the loop); an
// idle loop calls them and starts the count again; no call is made between
// a burst's input and output stages.
TEST_F(Housekeeping, BusyLoopsCallThemOnceEvery64) {
    use_housekeeping();
    // A fresh worker: 64 busy loops in a row before the first call.
    loops(true, kHousekeepEvery - 1);
    EXPECT_EQ(g_hk.order, "") << "called on a busy loop before the 64th";
    loop(true);
    EXPECT_EQ(g_hk.at, std::vector<uint64_t>{kHousekeepEvery});
    EXPECT_EQ(g_hk.order, "ab");
    for (bool profile : {false, true}) {
        SCOPED_TRACE(profile ? "stage stats on" : "stage stats off");
        worker().set_stage_stats(profile);
        const uint64_t before = due_busy_;
        loop(false);  // an idle loop: a call, and the count starts again
        EXPECT_EQ(g_hk.at.back(), g_hk.loop);
        loops(true, 300);
        loop(false);
        loops(true, kHousekeepEvery + 10);
        EXPECT_EQ(g_hk.at, due_);
        EXPECT_GE(due_busy_ - before, 5u) << "too few runs of 64 busy loops to tell";
    }
    EXPECT_EQ(g_hk.order, times("ab", due_.size()));
    EXPECT_LT(due_.size() * 32, g_hk.loop) << "called on (nearly) every loop";
    EXPECT_EQ(g_hk.mid_burst, 0u) << "called inside a burst";
    EXPECT_FALSE(g_hk.in_burst);
    EXPECT_EQ(worker().stats().rx_packets.get(), received_);
    EXPECT_EQ(received_, kHousekeepEvery + 2 * (300 + kHousekeepEvery + 10)) << "packets lost";
    EXPECT_EQ(drops(), want({}));
}

// Guards: the parts of the loop a test or a feature may run on their own
// (process(), poll_once(), drain_commands()) never call housekeeping: only
// run_once() does.
TEST_F(Housekeeping, NothingButRunOnceCallsThem) {
    use_housekeeping();
    std::vector<std::pair<Side, PacketBuilder>> burst;
    for (int i = 0; i < 20; i++) {
        burst.emplace_back(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2));
    }
    EXPECT_EQ(run(burst).on(Side::kPodB).size(), 20u);  // process(), flush_tx()
    for (int i = 0; i < 3; i++) {
        put_a_to_b();
    }
    EXPECT_EQ(worker().poll_once(), 3);
    EXPECT_EQ(worker().poll_once(), 0);
    EXPECT_EQ(drain_tx().size(), 3u);
    ASSERT_NE(worker().post({WorkerCommand::Kind::kSync, 0, 0, 0}), 0u);
    worker().drain_commands();
    EXPECT_EQ(g_hk.order, "");
    EXPECT_FALSE(g_hk.in_burst);
}

// Guards: housekeeping runs after the loop drained the worker's commands
// (a function sees every command posted before its loop acknowledged), on
// idle loops and on the 64th busy loop; the busy loops before that one
// drain no command and call no housekeeping.
TEST_F(Housekeeping, TheyRunAfterTheLoopsCommands) {
    use_housekeeping();
    uint64_t seq = worker().post({WorkerCommand::Kind::kSync, 0, 0, 0});
    ASSERT_NE(seq, 0u);
    EXPECT_LT(worker().acked(), seq);
    loop(false);
    ASSERT_EQ(g_hk.acked.size(), 1u);
    EXPECT_EQ(g_hk.acked[0], seq) << "housekeeping ran before the commands";

    // Busy until a busy loop called them: every later call is due on a busy loop.
    while (due_busy_ == 0 && g_hk.loop < 1000) {
        loop(true);
    }
    ASSERT_EQ(due_busy_, 1u);
    for (uint64_t after : {uint64_t{0}, uint64_t{10}, kHousekeepEvery - 1}) {
        SCOPED_TRACE("posted " + std::to_string(after) + " busy loops after a call");
        loops(true, after);
        const size_t calls = g_hk.acked.size();
        const uint64_t s = worker().post({WorkerCommand::Kind::kSync, 0, 0, 0});
        ASSERT_NE(s, 0u);
        while (g_hk.acked.size() == calls && g_hk.loop < 10000) {
            EXPECT_NE(loop(true), 0) << "an idle loop amid the busy ones";
            if (g_hk.acked.size() == calls) {
                EXPECT_LT(worker().acked(), s) << "drained on a loop without housekeeping";
            }
        }
        ASSERT_EQ(g_hk.acked.size(), calls + 1);
        EXPECT_EQ(g_hk.acked.back(), s) << "housekeeping ran before the commands";
        EXPECT_EQ(g_hk.at.back(), due_.back()) << "not the 64th busy loop";
    }
    EXPECT_EQ(g_hk.at, due_);
}

// Guards add_housekeeping's checks: a function required, a name once, a
// valid name, at most kMaxHousekeeping; what it refused leaves no trace (the
// first of a name used twice is the one called).
TEST_F(Housekeeping, RegistryChecksThem) {
    EXPECT_EQ(default_pipeline().n_housekeeping, 0) << "this binary registers none";
    PipelineRegistry r;
    std::string e = invalid([&] { r.add_housekeeping(housekeep_def("nofn", nullptr)); });
    EXPECT_NE(e.find("'nofn'"), std::string::npos) << e;
    for (const std::string &bad : std::vector<std::string>{"", "Upper", "dash-name", "dot.name",
                                                           "space name", std::string(33, 'a')}) {
        invalid([&] { r.add_housekeeping(housekeep_def(bad, &housekeep<'x'>)); });
    }
    r.add_housekeeping(housekeep_def("hk_a", &housekeep<'a'>));
    e = invalid([&] { r.add_housekeeping(housekeep_def("hk_a", &housekeep<'b'>)); });
    EXPECT_NE(e.find("'hk_a'"), std::string::npos) << e;
    r.add_housekeeping(housekeep_def(std::string(32, 'z'), &housekeep<'c'>));
    for (size_t i = 2; i < kMaxHousekeeping; i++) {
        r.add_housekeeping(housekeep_def("hk" + std::to_string(i), &housekeep<'c'>));
    }
    e = invalid([&] { r.add_housekeeping(housekeep_def("one_too_many", &housekeep<'x'>)); });
    EXPECT_NE(e.find("'one_too_many'"), std::string::npos) << e;

    const Pipeline &p = use(r);
    ASSERT_EQ(p.n_housekeeping, kMaxHousekeeping);
    EXPECT_EQ(p.housekeeping[0], &housekeep<'a'>);
    EXPECT_EQ(p.stage_count(), kStageCount) << "housekeeping functions are no stages";
    worker().run_once();
    EXPECT_EQ(g_hk.order, "a" + times("c", kMaxHousekeeping - 1));
}

}  // namespace
}  // namespace fwd::dp::test
