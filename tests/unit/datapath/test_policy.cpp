// Policy enforcement (policy.hpp, src/stages/policy.cpp) through the
// worker's whole path, IPv4 and IPv6, with NAT on (nat_lab.hpp's pools):
// allowed and denied both directions, default deny, Pass, no policy = no
// tracking, stateful replies and related ICMP, a generation change ending a
// denied flow, anti-spoofing, DNAT'd and SNAT'd flows checked on the tuple
// Calico's filter sees, pod -> node (defaultEndpointToHostAction, ND,
// failsafe ports), per-rule counters, Log records, the table full.
//
// The rules are flat rules written here as the compiler would emit them
// (a test-only filler of PolicyState): class 1 is pod A, class 2 pod B;
// a rule's ref is its position + 1 (the first that matches decides).
#include <rte_lpm.h>

#include <optional>
#include <random>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "fwd/dp/acl.hpp"
#include "fwd/dp/policy.hpp"
#include "nat_lab.hpp"

namespace fwd::dp::test {
namespace {

using fwd::policy::Action;
using fwd::policy::ClassId;
using fwd::policy::Direction;
using policy::HostAction;
using policy::PolicyState;

struct Addr {
    uint32_t v4;
    Ip6 v6;
};
const Addr kA{kPodA4, kPodA6}, kB{kPodB4, kPodB6}, kO{kOut4, kOut6}, kN{kNode4, kNode6};
const Addr kVip{ip4("10.96.0.10"), ip6("fd00:96::10")};
constexpr ClassId kClassA = 1, kClassB = 2;
constexpr uint16_t kBePort = 8080;

// A TCP frontend at addr:port whose one backend is pod B's kBePort.
svc::FrontendSpec to_b(bool v6, const Addr &addr, uint16_t port, uint8_t flags = 0) {
    auto bytes = [v6](const Addr &a) {
        std::array<uint8_t, 16> b{};
        if (v6) {
            std::copy(a.v6.begin(), a.v6.end(), b.begin());
        } else {
            const uint32_t be = htonl(a.v4);
            std::memcpy(b.data(), &be, 4);
        }
        return b;
    };
    svc::FrontendSpec f;
    f.v6 = v6;
    f.addr = bytes(addr);
    f.proto = IPPROTO_TCP;
    f.port = port;
    f.flags = flags;
    f.backends = {{bytes(kB), htons(kBePort), svc::kBeLocal}};
    f.for_new = {true};
    return f;
}

PacketBuilder ip(PacketBuilder b, bool v6, const Addr &src, const Addr &dst) {
    return v6 ? std::move(b.ip6(src.v6, dst.v6)) : std::move(b.ip4(src.v4, dst.v4));
}

// A rule of the test's policies: the endpoint class it applies to, its
// direction, what it matches (host addresses, one protocol, a destination
// port range) and its action.
struct TRule {
    ClassId cls;
    Direction dir;
    Action action;
    uint8_t proto = 0;  // 0: any
    std::optional<Addr> src, dst;
    uint16_t dport_lo = 0, dport_hi = 65535;
};

fwd::policy::AclAddr acl4(uint32_t a) {
    fwd::policy::AclAddr x;
    x.w[0] = a;
    x.len = 32;
    return x;
}
fwd::policy::AclAddr acl6(const Ip6 &a) {
    fwd::policy::AclAddr x;
    for (int i = 0; i < 4; i++) {
        x.w[i] = get16(a, 4 * i) << 16 | get16(a, 4 * i + 2);
    }
    x.len = 128;
    return x;
}

class PolicyTest : public Nat {
  protected:
    void SetUp() override {
        Nat::SetUp();
        ptables_.ct = &ct();
        pw_.tables = &ptables_;
        pw_.counters = &pcounters_;
        pw_.index = 0;
        worker().set_slot(policy::worker_slot(), &pw_);
        uint32_t nh = 0;
        ASSERT_EQ(rte_lpm_lookup(lab().tables().lpm4(), kPodA4, &nh), 0);
        nh_a_ = nh;
        ASSERT_EQ(rte_lpm_lookup(lab().tables().lpm4(), kPodB4, &nh), 0);
        nh_b_ = nh;
    }
    void TearDown() override {
        worker().set_slot(policy::worker_slot(), nullptr);
        ptables_.swap_state(nullptr);
        Nat::TearDown();
    }

    // Publishes a state with these rules; applies: (class, direction) pairs
    // selected by some policy without rules (default deny). Old states stay
    // alive to the end of the test (no worker runs meanwhile).
    void publish(const std::vector<TRule> &rules,
                 std::set<std::pair<ClassId, Direction>> applies = {},
                 HostAction to_host = HostAction::kAccept, std::optional<Addr> extra_a = {},
                 bool shared = false) {
        fwd::policy::Compiled c;
        for (const TRule &r : rules) {
            applies.insert({r.cls, r.dir});
        }
        c.classes.resize(3);
        c.sets[0].resize(3);
        c.sets[1].resize(3);
        for (const auto &[cls, dir] : applies) {
            auto &ci = c.classes[cls];
            (dir == Direction::kIngress ? ci.ingress_set : ci.egress_set) = cls;
            c.sets[static_cast<int>(dir)][cls].policies = {cls == kClassA ? "pod-a" : "pod-b"};
        }
        c.refs.resize(1);
        for (const TRule &r : rules) {
            const auto ref = static_cast<fwd::policy::RuleRef>(c.refs.size());
            c.refs.push_back({"test/p", r.dir, static_cast<int>(ref), r.action, "rule"});
            for (int fam = 0; fam < 2; fam++) {
                fwd::policy::FlatRule f;
                f.set = r.cls;
                if (r.proto != 0) {
                    f.proto_lo = f.proto_hi = r.proto;
                }
                if (r.src) {
                    f.src = fam == 0 ? acl4(r.src->v4) : acl6(r.src->v6);
                }
                if (r.dst) {
                    f.dst = fam == 0 ? acl4(r.dst->v4) : acl6(r.dst->v6);
                }
                f.dport_lo = r.dport_lo;
                f.dport_hi = r.dport_hi;
                f.ref = ref;
                auto &fr = c.rules[fam][static_cast<int>(r.dir)];
                (r.action == Action::kLog ? fr.log : fr.decide).push_back(f);
            }
        }
        rules_.push_back(PolicyRules::build(c));
        auto st = std::make_unique<PolicyState>();
        st->rules = rules_.back().get();
        st->generation = ++gen_;
        st->ports.resize(kMaxPorts);
        st->nh_class.resize(kMaxNextHops);
        // shared: as the control side fills a port several pods share: class 0 on the port,
        // each source tagged with its endpoint's class.
        auto endpoint = [&](Side s, ClassId cls, const Addr &a, uint32_t nh) {
            policy::PortPolicy &pp = st->ports[lab().port(s)];
            pp.cls = shared ? 0 : cls;
            if (shared) {
                st->src4_cls.resize(st->src4.size());
                st->src6_cls.resize(st->src6.size());
                st->src4_cls.push_back(cls);
                st->src6_cls.push_back(cls);
            }
            pp.flags = policy::kPortEndpoint;
            pp.src4_off = static_cast<uint32_t>(st->src4.size());
            pp.src6_off = static_cast<uint32_t>(st->src6.size());
            st->src4.push_back(policy::src4({net::Ip4Addr::from_host(a.v4), 32}));
            st->src6.push_back(policy::src6({net::Ip6Addr::from_bytes(a.v6.data()), 128}));
            pp.src4_n = pp.src6_n = 1;
            if (cls == kClassA && extra_a) {
                st->src4.push_back(policy::src4({net::Ip4Addr::from_host(extra_a->v4), 16}));
                st->src6.push_back(
                    policy::src6({net::Ip6Addr::from_bytes(extra_a->v6.data()), 64}));
                pp.src4_n = pp.src6_n = 2;
            }
            st->nh_class[nh] = cls;
        };
        endpoint(Side::kPodA, kClassA, kA, nh_a_);
        endpoint(Side::kPodB, kClassB, kB, nh_b_);
        st->to_host = to_host;
        st->counts.emplace_back(st->rules->refs());
        ptables_.swap_state(st.get());
        states_.push_back(std::move(st));
    }
    const PolicyState &state() const { return *states_.back(); }
    policy::PolicyTables &ptables_view() { return ptables_; }
    uint64_t rule_packets(fwd::policy::RuleRef r) const {
        return state().counts[0][r].packets.get();
    }
    uint64_t rule_bytes(fwd::policy::RuleRef r) const { return state().counts[0][r].bytes.get(); }
    std::vector<policy::LogRecord> logs() {
        std::vector<policy::LogRecord> v;
        policy::LogRecord r;
        while (pw_.log.pop(r)) {
            v.push_back(r);
        }
        return v;
    }
    // Whether the frame left on side `out` (one frame in, at most one out).
    bool passes(Side in, const PacketBuilder &b, Side out) {
        Sent s = run(in, b);
        return s.frames.size() == 1 && s.on(out).size() == 1;
    }
    bool dropped(Side in, const PacketBuilder &b) { return run(in, b).frames.empty(); }

    uint32_t nh_a_ = 0, nh_b_ = 0;

  private:
    policy::PolicyTables ptables_;
    policy::PolicyWorker pw_;
    ct::Counters pcounters_{};
    std::vector<std::unique_ptr<PolicyRules>> rules_;
    std::vector<std::unique_ptr<PolicyState>> states_;
    uint32_t gen_ = 0;
};

// --- no policy ---

// A state with no policy for either end: every packet passes, nothing is
// tracked (pod to pod is no NAT's either).
TEST_F(PolicyTest, NoPolicyNoTracking) {
    publish({});
    for (bool v6 : {false, true}) {
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80), Side::kPodB));
        EXPECT_TRUE(
            passes(Side::kPodB, ip(from_pod_b(), v6, kB, kA).tcp(80, 1000, 0x02), Side::kPodA));
    }
    EXPECT_EQ(ct().in_use(), 0u);
    EXPECT_EQ(drops(), want({}));
}

// --- ingress, egress, both directions ---

TEST_F(PolicyTest, IngressAllowedAndDefaultDeny) {
    // B accepts UDP 80 from A, nothing else.
    publish({{kClassB, Direction::kIngress, Action::kAllow, IPPROTO_UDP, kA, {}, 80, 80}});
    for (bool v6 : {false, true}) {
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80), Side::kPodB));
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 81)));
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kB).tcp(1000, 80, 0x02)));
        // The reply of the allowed flow passes; B opening to A is not B's
        // ingress (A has no policy): passes too.
        EXPECT_TRUE(passes(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(80, 1000), Side::kPodA));
        EXPECT_TRUE(passes(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(5, 6), Side::kPodA));
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyIngress, 4}}));
}

TEST_F(PolicyTest, EgressDenyRuleThenAllow) {
    publish({{kClassA, Direction::kEgress, Action::kDeny, IPPROTO_TCP, {}, kB, 22, 22},
             {kClassA, Direction::kEgress, Action::kAllow}});
    for (bool v6 : {false, true}) {
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kB).tcp(1000, 22, 0x02)));
        EXPECT_TRUE(
            passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).tcp(1000, 23, 0x02), Side::kPodB));
        // Toward outside too (SNAT'd: checked before it).
        EXPECT_TRUE(
            passes(Side::kPodA, ip(from_pod_a(), v6, kA, kO).tcp(1000, 22, 0x02), Side::kUplink));
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDenyEgress, 2}}));
}

// A port several pods share has class 0 and its sources tagged with their
// pods' classes: the sender's class comes from the matching source, so A's
// egress policy applies, in both families, to the flow and on the way to the
// node.
TEST_F(PolicyTest, SharedPortTellsTheSenderBySource) {
    publish({{kClassA, Direction::kEgress, Action::kDeny, IPPROTO_UDP, {}, kB, 80, 80},
             {kClassA, Direction::kEgress, Action::kAllow}},
            {}, HostAction::kAccept, {}, true);
    for (bool v6 : {false, true}) {
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80)));
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 81), Side::kPodB));
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDenyEgress, 2}}));
}

// An egress-only policy on A with no rules: everything A sends is denied,
// what A receives is not A's egress.
TEST_F(PolicyTest, EgressDefaultDeny) {
    publish({}, {{kClassA, Direction::kEgress}});
    for (bool v6 : {false, true}) {
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80)));
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kO).udp(1000, 80)));
        EXPECT_TRUE(passes(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(80, 1000), Side::kPodA));
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyEgress, 4}}));
}

// Pass with nothing after it (no further tier, the profiles allow): the
// packet goes on; counted on the Pass rule.
TEST_F(PolicyTest, PassGoesOn) {
    publish({{kClassB, Direction::kIngress, Action::kPass, IPPROTO_UDP}});
    for (bool v6 : {false, true}) {
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80), Side::kPodB));
    }
    EXPECT_EQ(rule_packets(1), 2u);
    EXPECT_EQ(drops(), want({}));
}

// --- stateful ---

TEST_F(PolicyTest, RepliesAndRelatedIcmpPass) {
    // A: may send anything, receives nothing it did not ask for.
    publish({{kClassA, Direction::kEgress, Action::kAllow}}, {{kClassA, Direction::kIngress}});
    for (bool v6 : {false, true}) {
        const PacketBuilder out = ip(from_pod_a(), v6, kA, kB).udp(2000, 53).payload(8);
        EXPECT_TRUE(passes(Side::kPodA, out, Side::kPodB));
        EXPECT_TRUE(passes(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(53, 2000), Side::kPodA));
        // B's port unreachable about A's datagram: related.
        PacketBuilder err = ip(from_pod_b(), v6, kB, kA);
        v6 ? err.icmp(1, 4) : err.icmp(3, 3);
        err.payload(l3_of(out));
        EXPECT_TRUE(passes(Side::kPodB, err, Side::kPodA));
        // A new flow from B: denied; an error about no flow: dropped.
        EXPECT_TRUE(dropped(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(53, 2001)));
        PacketBuilder stray = ip(from_pod_b(), v6, kB, kA);
        v6 ? stray.icmp(1, 4) : stray.icmp(3, 3);
        stray.payload(l3_of(ip(from_pod_a(), v6, kA, kB).udp(3000, 53).payload(8)));
        EXPECT_TRUE(dropped(Side::kPodB, stray));
        // TCP: the handshake's reply passes.
        EXPECT_TRUE(passes(Side::kPodA,
                           ip(from_pod_a(), v6, kA, kB).tcp(4000, 80, 0x02).tcp_seq(0, 0),
                           Side::kPodB));
        EXPECT_TRUE(passes(Side::kPodB,
                           ip(from_pod_b(), v6, kB, kA).tcp(80, 4000, 0x12).tcp_seq(500, 1),
                           Side::kPodA));
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyIngress, 2},
                             {DropReason::kPolicyIcmpErrorNoFlow, 2}}));
}

// One burst: a new flow's first packet, its second, a denied one and the
// reply, in that order. The burst is looked up in phases (every packet
// before any create): the packets behind the first find the flow it made,
// as one at a time would; one flow, one create.
TEST_F(PolicyTest, NewFlowAndItsReplyInOneBurst) {
    publish({{kClassB, Direction::kIngress, Action::kAllow, IPPROTO_UDP, {}, {}, 80, 80}});
    for (bool v6 : {false, true}) {
        Sent s = run({{Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80)},
                      {Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80)},
                      {Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 81)},
                      {Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(80, 1000)}});
        EXPECT_EQ(s.on(Side::kPodB).size(), 2u);
        EXPECT_EQ(s.on(Side::kPodA).size(), 1u);
    }
    EXPECT_EQ(ct().in_use(), 2u);
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyIngress, 2}}));
}

// An endpoint with ingress policy only: what it opens is checked by no
// policy on the way out, yet tracked, so that the replies pass its ingress.
TEST_F(PolicyTest, IngressOnlyEndpointGetsItsReplies) {
    publish({}, {{kClassA, Direction::kIngress}});
    for (bool v6 : {false, true}) {
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(7000, 53), Side::kPodB));
        EXPECT_TRUE(passes(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(53, 7000), Side::kPodA));
        EXPECT_TRUE(dropped(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(53, 7001)));
    }
    EXPECT_EQ(ct().in_use(), 2u);
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyIngress, 2}}));
}

// A flow allowed under one generation is checked again on its next packet
// after a change: denied now, the flow ends (its reply no longer passes);
// allowed again, a new flow is made.
TEST_F(PolicyTest, GenerationChangeEndsDeniedFlow) {
    const std::vector<TRule> allow = {{kClassB, Direction::kIngress, Action::kAllow}};
    for (bool v6 : {false, true}) {
        publish(allow, {{kClassA, Direction::kIngress}});
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80), Side::kPodB));
        ct::Hit hit;
        ct::FlowKey key =
            v6 ? ct::FlowKey::v6(kA.v6.data(), kB.v6.data(), IPPROTO_UDP,
                                 net::Be16::from_host(1000), net::Be16::from_host(80))
               : ct::FlowKey::v4(htonl(kA.v4), htonl(kB.v4), IPPROTO_UDP,
                                 net::Be16::from_host(1000), net::Be16::from_host(80));
        ASSERT_TRUE(ct().lookup(key, rte_rdtsc(), hit));
        publish({}, {{kClassB, Direction::kIngress}, {kClassA, Direction::kIngress}});
        // The reply comes first: checked on the flow's original tuple, denied.
        EXPECT_TRUE(dropped(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(80, 1000)));
        EXPECT_FALSE(ct().lookup(key, rte_rdtsc(), hit));
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80)));
        publish(allow, {{kClassA, Direction::kIngress}});
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 80), Side::kPodB));
        EXPECT_TRUE(ct().lookup(key, rte_rdtsc(), hit));
        // A change that still allows it: the flow goes on (re-stamped).
        publish(allow, {{kClassA, Direction::kIngress}});
        EXPECT_TRUE(passes(Side::kPodB, ip(from_pod_b(), v6, kB, kA).udp(80, 1000), Side::kPodA));
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyIngress, 4}}));
}

// No reassembly: a first fragment carries the ports and is checked and
// tracked; a later one has none to match where policy applies (dropped);
// where none applies it passes.
TEST_F(PolicyTest, Fragments) {
    publish({{kClassB, Direction::kIngress, Action::kAllow, IPPROTO_UDP, {}, {}, 80, 80}});
    EXPECT_TRUE(passes(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).mf().udp(1000, 80).payload(16),
                       Side::kPodB));
    EXPECT_TRUE(passes(Side::kPodA,
                       from_pod_a().ip6(kPodA6, kPodB6).fragment(0, true).udp(1000, 80).payload(16),
                       Side::kPodB));
    EXPECT_TRUE(dropped(
        Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).frag_offset(3).next_proto(17).payload(16)));
    EXPECT_TRUE(
        dropped(Side::kPodA,
                from_pod_a().ip6(kPodA6, kPodB6).fragment(3, false).next_proto(17).payload(16)));
    // From B to the uplink: B's ingress policy does not check it (tracked
    // only, for its replies' sake).
    EXPECT_TRUE(passes(Side::kPodB,
                       from_pod_b().ip4(kPodB4, kVia4).frag_offset(3).next_proto(17).payload(16),
                       Side::kUplink));
    EXPECT_EQ(drops(), want({{DropReason::kPolicyFragment, 2}}));
}

// --- NAT: the tuple Calico's filter sees ---

// natOutgoing: the egress rule names the pod's own source; the packet leaves
// with the node's, the check was on the pod's (pre-SNAT) address.
TEST_F(PolicyTest, SnatFlowCheckedOnPodSource) {
    publish({{kClassA, Direction::kEgress, Action::kAllow, IPPROTO_UDP, kA, kO, 53, 53}},
            {{kClassA, Direction::kIngress}});
    for (bool v6 : {false, true}) {
        Sent s = run(Side::kPodA, ip(from_pod_a(), v6, kA, kO).udp(40000, 53));
        ASSERT_EQ(s.on(Side::kUplink).size(), 1u);
        const Parsed &o = s.on(Side::kUplink)[0]->pkt;
        EXPECT_TRUE(v6 ? o.ip6->src == kN.v6 : o.ip4->src == kN.v4);
        // The reply, to the node, is translated back and passes A's ingress
        // default deny: it is the flow's.
        EXPECT_TRUE(
            passes(Side::kUplink, ip(from_uplink(), v6, kO, kN).udp(53, 40000), Side::kPodA));
        // Another port: denied, and NAT's new flow ended with it.
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kO).udp(40001, 54)));
        EXPECT_TRUE(dropped(Side::kUplink, ip(from_uplink(), v6, kO, kN).udp(54, 40001)));
    }
    // The denied flow's replies find no flow: the node's own, unhandled.
    EXPECT_EQ(drops(),
              want({{DropReason::kPolicyDefaultDenyEgress, 2}, {DropReason::kLocalUnhandled, 2}}));
}

// A burst whose every packet is an established NAT flow's, stamped with the
// current generation, passes on the stamps alone (the stage's first loop):
// nothing counted again. After a new generation the first burst is checked
// again (each flow once: rule counts move by one a flow), the next passes
// on the new stamps; a generation that denies them drops and ends them.
TEST_F(PolicyTest, StampedBurstPassesOnItsStamps) {
    const TRule allow{kClassA, Direction::kEgress, Action::kAllow, IPPROTO_UDP, kA, kO, 53, 53};
    constexpr fwd::policy::RuleRef kAllowRef = 1;
    for (bool v6 : {false, true}) {
        publish({allow});
        std::vector<std::pair<Side, PacketBuilder>> burst;
        for (uint16_t i = 0; i < kBurst; i++) {
            burst.emplace_back(
                Side::kPodA,
                ip(from_pod_a(), v6, kA, kO).udp(static_cast<uint16_t>(30000 + i), 53));
        }
        EXPECT_EQ(run(burst).on(Side::kUplink).size(), kBurst);  // new flows: checked, stamped
        EXPECT_EQ(rule_packets(kAllowRef), kBurst);
        EXPECT_EQ(run(burst).on(Side::kUplink).size(), kBurst);  // on the stamps
        EXPECT_EQ(rule_packets(kAllowRef), kBurst);
        publish({allow});  // the same rules, a new generation: checked once more
        EXPECT_EQ(run(burst).on(Side::kUplink).size(), kBurst);
        EXPECT_EQ(rule_packets(kAllowRef), kBurst);
        EXPECT_EQ(run(burst).on(Side::kUplink).size(), kBurst);
        EXPECT_EQ(rule_packets(kAllowRef), kBurst);
        publish({{kClassA, Direction::kEgress, Action::kAllow, IPPROTO_UDP, kA, kO, 54, 54}});
        EXPECT_TRUE(run(burst).frames.empty());  // stale stamps: denied, the flows ended
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyEgress, 2 * kBurst}}));
}

// Service DNAT: B's ingress is checked on the backend's address and port
// (post-DNAT), not the frontend's.
TEST_F(PolicyTest, DnatFlowCheckedOnBackend) {
    set_services({to_b(false, kVip, 80), to_b(true, kVip, 80)});
    for (bool v6 : {false, true}) {
        publish({{kClassB, Direction::kIngress, Action::kAllow, IPPROTO_TCP, kA, kB, kBePort,
                  kBePort}});
        EXPECT_TRUE(passes(Side::kPodA,
                           ip(from_pod_a(), v6, kA, kVip).tcp(5000, 80, 0x02).tcp_seq(0, 0),
                           Side::kPodB));
        EXPECT_TRUE(passes(Side::kPodB,
                           ip(from_pod_b(), v6, kB, kA).tcp(kBePort, 5000, 0x12).tcp_seq(500, 1),
                           Side::kPodA));
        // Allowing the frontend's port only: denied (that is not what B gets).
        publish({{kClassB, Direction::kIngress, Action::kAllow, IPPROTO_TCP, {}, kVip, 80, 80}});
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kVip).tcp(5001, 80, 0x02)));
    }
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyIngress, 2}}));
}

// --- anti-spoofing ---

TEST_F(PolicyTest, AntiSpoofing) {
    const Addr extra{ip4("10.99.0.0"), ip6("fd00:99::")};
    publish({}, {}, HostAction::kAccept, extra);
    set_services(
        {to_b(false, kN, 30080, svc::kFeExternal), to_b(true, kN, 30080, svc::kFeExternal)});
    for (bool v6 : {false, true}) {
        const Addr forged{ip4("10.65.0.9"), ip6("fd00:65::9")};
        const Addr in_extra{ip4("10.99.3.4"), ip6("fd00:99::3:4")};
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, forged, kB).udp(1, 2)));
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kB, kO).udp(1, 2)));  // B's address
        EXPECT_TRUE(dropped(Side::kPodB, ip(from_pod_b(), v6, in_extra, kA).udp(1, 2)));
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, in_extra, kB).udp(1, 2), Side::kPodB));
        // To the node as well, a NodePort of the node too (NAT would send
        // it on); the uplink is no endpoint.
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, forged, kN).echo_request()));
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, forged, kN).tcp(1, 30080, 0x02)));
        EXPECT_TRUE(passes(Side::kPodA,
                           ip(from_pod_a(), v6, kA, kN).tcp(2, 30080, 0x02).tcp_seq(0, 0),
                           Side::kPodB));
        EXPECT_TRUE(
            passes(Side::kUplink, ip(from_uplink(), v6, forged, kB).udp(1, 2), Side::kPodB));
    }
    EXPECT_EQ(drops(), want({{DropReason::kSpoofedSource, 10}}));
}

// --- pod -> node ---

TEST_F(PolicyTest, EndpointToHostActions) {
    for (bool v6 : {false, true}) {
        publish({}, {}, HostAction::kDrop);
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kN).echo_request()));
        // Failsafe ports do not open it (Felix: host endpoint rules).
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kN).tcp(1000, 22, 0x02)));
        publish({}, {}, HostAction::kReturn);
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kN).echo_request(), Side::kPodA));
        publish({}, {}, HostAction::kAccept);
        EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), v6, kA, kN).echo_request(), Side::kPodA));
        // The pod's egress policy comes first.
        publish({{kClassA, Direction::kEgress, Action::kDeny,
                  v6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP}}},
                {}, HostAction::kAccept);
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kN).echo_request()));
    }
    EXPECT_EQ(drops(),
              want({{DropReason::kEndpointToHostDrop, 4}, {DropReason::kPolicyDenyEgress, 2}}));
}

// ND to the gateway passes under Drop and an egress default deny (Felix's
// ICMPv6 exceptions).
TEST_F(PolicyTest, NeighborDiscoveryToNodeAlwaysPasses) {
    publish({}, {{kClassA, Direction::kEgress}}, HostAction::kDrop);
    Sent s = run(Side::kPodA,
                 PacketBuilder().eth(kPodAMac, kGwMac).ip6(kPodALl6, kGw6).hop_limit(255).ns(kGw6));
    EXPECT_EQ(s.on(Side::kPodA).size(), 1u);  // the advertisement
    EXPECT_EQ(drops(), want({}));
}

// --- counters, Log ---

TEST_F(PolicyTest, RuleCountersAndLogRecords) {
    publish({{kClassB, Direction::kIngress, Action::kLog, IPPROTO_UDP},
             {kClassB, Direction::kIngress, Action::kAllow, IPPROTO_UDP, {}, {}, 80, 80}});
    for (bool v6 : {false, true}) {
        const PacketBuilder b = ip(from_pod_a(), v6, kA, kB).udp(1000, 80).payload(12);
        EXPECT_TRUE(passes(Side::kPodA, b, Side::kPodB));
        EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), v6, kA, kB).udp(1000, 81)));
    }
    EXPECT_EQ(rule_packets(2), 2u);
    EXPECT_EQ(rule_bytes(2), (20u + 8 + 12) + (40u + 8 + 12));
    EXPECT_EQ(rule_packets(1), 4u);  // logged: the allowed and the denied
    const auto recs = logs();
    ASSERT_EQ(recs.size(), 4u);
    EXPECT_EQ(recs[0].rule, 1u);
    EXPECT_EQ(recs[0].family, 4);
    EXPECT_EQ(recs[0].proto, IPPROTO_UDP);
    EXPECT_EQ(recs[0].sport, 1000);
    EXPECT_EQ(recs[0].dport, 80);
    EXPECT_EQ(recs[0].verdict, 1);
    EXPECT_EQ(recs[1].verdict, 0);
    EXPECT_EQ(recs[2].family, 6);
    EXPECT_EQ(std::memcmp(recs[2].src.data(), kA.v6.data(), 16), 0);
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyIngress, 2}}));
}

// The fixture with a table of kCapacity flows.
template <uint32_t kCapacity>
class PolicyCapacity : public PolicyTest {
  protected:
    ct::Config ct_config() const override {
        ct::Config c;
        c.capacity = kCapacity;
        return c;
    }
};
// --- cost: a benchmark, not a test, so only in the policy_bench binary
// (ninja tests/unit/datapath/policy_bench; run with
// --gtest_filter=PolicyBench.*) ---

// TSC cycles per packet of the worker's process() for pod A -> pod B UDP,
// bursts of 32: without a PolicyState; with B's ingress under 1,000 rules
// (the allowing one last), established flows; the same, every packet a new
// flow (classified and created). The machine's load makes these rough.

#ifdef FWD_POLICY_BENCH
class PolicyBench : public PolicyCapacity<1 << 17> {  // every new flow of both runs
  protected:
    // TSC cycles of one process() of a burst of pod A's UDP packets to
    // dst:dport, the i-th from source port sport(i).
    template <class SportOf>
    uint64_t timed_burst(bool v6, const Addr &dst, uint16_t dport, SportOf sport) {
        rte_mbuf *ms[kBurst];
        for (uint16_t i = 0; i < kBurst; i++) {
            ms[i] = ip(from_pod_a(), v6, kA, dst)
                        .udp(sport(i), dport)
                        .payload(18)
                        .mbuf(lab().pool(), lab().port(Side::kPodA));
        }
        const uint64_t t0 = rte_rdtsc();
        worker().process(ms, kBurst);
        const uint64_t t = rte_rdtsc() - t0;
        worker().flush_tx();
        drain_tx();
        return t;
    }
};

TEST_F(PolicyBench, CostPerPacket) {
    auto measure = [&](bool v6, bool fresh, uint16_t &base) {
        constexpr int kIters = 2000;
        uint64_t cycles = 0;
        for (int it = 0; it < kIters; it++) {
            cycles += timed_burst(v6, kB, 80, [&](uint16_t i) {
                return static_cast<uint16_t>(fresh ? base++ : 20000 + i);
            });
        }
        return static_cast<double>(cycles) / (kIters * kBurst);
    };
    uint16_t base = 1024;
    for (bool v6 : {false, true}) {
        const double none = measure(v6, false, base);
        std::vector<TRule> rules;
        for (uint16_t i = 0; i < 999; i++) {
            const Addr src{ip4("10.70.0.0") + i, ip6("fd00:70::")};
            Addr s6 = src;
            s6.v6[14] = static_cast<uint8_t>(i >> 8);
            s6.v6[15] = static_cast<uint8_t>(i);
            rules.push_back({kClassB,
                             Direction::kIngress,
                             Action::kAllow,
                             IPPROTO_TCP,
                             s6,
                             {},
                             static_cast<uint16_t>(10000 + i),
                             static_cast<uint16_t>(10000 + i)});
        }
        rules.push_back(
            {kClassB, Direction::kIngress, Action::kAllow, IPPROTO_UDP, {}, {}, 80, 80});
        publish(rules);
        measure(v6, false, base);  // the flows made
        const double est = measure(v6, false, base);
        const double fresh = measure(v6, true, base);
        EXPECT_EQ(drops(), want({}));
        ptables_view().swap_state(nullptr);
        std::printf(
            "IPv%d: no policy %.0f, 1,000 rules established %.0f, new flows %.0f "
            "cycles/packet\n",
            v6 ? 6 : 4, none, est, fresh);
        base = 1024;
    }
}
// The full path's shape (perf's full4 / full6): pod A's established
// natOutgoing flows to the outside under A's 1,000 egress rules (the
// allowing one last): TSC cycles per packet of process(), the least of 20
// rounds of 500 bursts (the least: the machine is shared).
TEST_F(PolicyBench, EstablishedNatFlows) {
    std::vector<TRule> rules;
    for (uint16_t i = 0; i < 999; i++) {
        rules.push_back({kClassA,
                         Direction::kEgress,
                         Action::kAllow,
                         IPPROTO_TCP,
                         {},
                         {},
                         static_cast<uint16_t>(10000 + i),
                         static_cast<uint16_t>(10000 + i)});
    }
    rules.push_back({kClassA, Direction::kEgress, Action::kAllow, IPPROTO_UDP, {}, {}, 53, 53});
    publish(rules);
    for (bool v6 : {false, true}) {
        double best = 1e18;
        for (int round = 0; round < 21; round++) {
            uint64_t cycles = 0;
            for (int it = 0; it < 500; it++) {
                cycles += timed_burst(v6, kO, 53, [&](uint16_t i) {
                    return static_cast<uint16_t>(20000 + (it % 4) * kBurst + i);
                });
            }
            if (round > 0) {  // the first makes the flows
                best = std::min(best, static_cast<double>(cycles) / (500.0 * kBurst));
            }
        }
        EXPECT_EQ(drops(), want({}));
        std::printf(
            "IPv%d: established natOutgoing flows, 1,000 egress rules: %.1f cycles/packet\n",
            v6 ? 6 : 4, best);
    }
}
#endif  // FWD_POLICY_BENCH

// --- the table full ---

using PolicyFull = PolicyCapacity<1>;

TEST_F(PolicyFull, NewFlowRefusedWhenFull) {
    publish({{kClassB, Direction::kIngress, Action::kAllow}});
    EXPECT_TRUE(passes(Side::kPodA, ip(from_pod_a(), false, kA, kB).udp(1000, 80), Side::kPodB));
    EXPECT_TRUE(dropped(Side::kPodA, ip(from_pod_a(), true, kA, kB).udp(1000, 80)));
    // The flow in the table still passes.
    EXPECT_TRUE(passes(Side::kPodB, ip(from_pod_b(), false, kB, kA).udp(80, 1000), Side::kPodA));
    EXPECT_EQ(drops(), want({{DropReason::kCtTableFull, 1}}));
}

// Bursts of a random mix (both families; established flows, new ones,
// allowed and denied ones; bursts of 1 to 32; the rule set published again
// now and then, the same or narrower) give each packet what it gets alone:
// out (SNATed) when its port is allowed by the current rules, else dropped
// as policy_default_deny_egress; the stamped-burst pass never lets a packet
// through that a check would drop.
// (Each denied packet's NAT flow is ended and made again: the table holds
// them all, no ageing runs here.)
using PolicyMixed = PolicyCapacity<1 << 14>;

TEST_F(PolicyMixed, BurstsAsOneAtATime) {
    std::mt19937 rng(15);
    uint16_t hi = 1100;  // allowed: UDP to ports 1000 .. hi
    auto rules = [&] {
        publish({{kClassA, Direction::kEgress, Action::kAllow, IPPROTO_UDP, kA, kO, 1000, hi}});
    };
    rules();
    uint64_t denied = 0;
    for (int round = 0; round < 300; round++) {
        if (rng() % 8 == 0) {
            hi = static_cast<uint16_t>(1000 + rng() % 101);
            rules();
        }
        const size_t n = 1 + rng() % kBurst;
        std::vector<std::pair<Side, PacketBuilder>> burst;
        std::multiset<std::tuple<bool, uint16_t, uint16_t>> want_out;
        for (size_t i = 0; i < n; i++) {
            const bool v6 = rng() % 2;
            // 40 flows a family: most packets are an established flow's
            const auto sport = static_cast<uint16_t>(20000 + rng() % 40);
            const auto dport = static_cast<uint16_t>(1000 + (sport % 20) * 6);
            burst.emplace_back(Side::kPodA, ip(from_pod_a(), v6, kA, kO).udp(sport, dport));
            if (dport <= hi) {
                want_out.insert({v6, sport, dport});
            } else {
                denied++;
            }
        }
        Sent s = run(burst);
        std::multiset<std::tuple<bool, uint16_t, uint16_t>> out;
        for (const Frame *f : s.on(Side::kUplink)) {
            const bool v6 = f->pkt.ip6.has_value();
            ASSERT_TRUE(v6 ? f->pkt.ip6->src == kN.v6 : f->pkt.ip4->src == kN.v4);
            out.insert({v6, get16(f->pkt.l4(), 0), get16(f->pkt.l4(), 2)});
        }
        ASSERT_EQ(s.frames.size(), out.size());
        ASSERT_EQ(out, want_out) << "round " << round
                                 << ", drops: " << ::testing::PrintToString(drops());
    }
    EXPECT_GT(denied, 0u);
    EXPECT_EQ(drops(), want({{DropReason::kPolicyDefaultDenyEgress, denied}}));
}

}  // namespace
}  // namespace fwd::dp::test
