// The uplink's flow rules without DPDK (control/nic_flows.hpp): the plan (RSS, VXLAN steering and
// its fallback), the exact policy drops (by hand, then on random policies where every packet a
// drop rule matches must be denied by the same policy rule in the reference evaluator), and the
// installer against a recording fake Device.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <map>
#include <set>

#include "../policy/compile_check.hpp"
#include "fwd/control/nic_flows.hpp"
#include "fwd/policy/compile.hpp"

namespace fwd::control::flows {
namespace {

using policy::test::ip;
using policy::test::pod;

// ---- the plan ----

TEST(FlowPlan, OneQueueNeedsNoRule) {
    PlanInput in;
    in.queues = {0};
    in.vtep4 = net::Ip4Addr::parse("10.10.10.10");
    EXPECT_TRUE(plan(in).empty());
}

TEST(FlowPlan, RssPerFamilyAndVxlanByInnerFlowWithItsFallback) {
    PlanInput in;
    in.queues = {0, 1};
    in.vlan = 100;
    in.vtep4 = net::Ip4Addr::parse("10.10.10.10");
    in.vtep6 = net::Ip6Addr::parse("fd00:10:10::10");
    in.vxlan_port = 4789;
    const auto groups = plan(in);
    ASSERT_EQ(groups.size(), 4u);
    EXPECT_EQ(groups[0].kind, "rss");
    EXPECT_EQ(groups[0].options.size(), 1u);
    EXPECT_EQ(groups[0].options[0][0].match.str(), "vlan 100 ipv4");
    EXPECT_EQ(groups[0].options[0][0].action.str(), "rss level 0 queues 0,1");
    EXPECT_EQ(groups[1].options[0][0].match.str(), "vlan 100 ipv6");
    const Group &v4 = groups[2];
    EXPECT_EQ(v4.kind, "vxlan");
    EXPECT_EQ(v4.what, "to 10.10.10.10 port 4789");
    ASSERT_EQ(v4.options.size(), 2u);
    EXPECT_EQ(v4.options[0][0].match.str(), "vlan 100 ipv4 dst 10.10.10.10/32 udp dport 4789");
    EXPECT_EQ(v4.options[0][0].action.str(), "rss level 2 queues 0,1");
    // The fallback: one QUEUE rule per value of the source port's low bit.
    ASSERT_EQ(v4.options[1].size(), 2u);
    EXPECT_EQ(v4.options[1][0].match.str(),
              "vlan 100 ipv4 dst 10.10.10.10/32 udp sport 0/0x0001 dport 4789");
    EXPECT_EQ(v4.options[1][0].action.str(), "queue 0");
    EXPECT_EQ(v4.options[1][1].match.str(),
              "vlan 100 ipv4 dst 10.10.10.10/32 udp sport 1/0x0001 dport 4789");
    EXPECT_EQ(v4.options[1][1].action.str(), "queue 1");
    EXPECT_EQ(groups[3].options[0][0].match.str(),
              "vlan 100 ipv6 dst fd00:10:10::10/128 udp dport 4789");
    for (const auto &g : groups) {
        for (const auto &o : g.options) {
            for (const auto &r : o) {
                EXPECT_EQ(r.priority, g.kind == "rss" ? 2u : 1u) << r.match.str();
            }
        }
    }
}

TEST(FlowPlan, VxlanFallbackSharesStayEvenForThreeQueues) {
    PlanInput in;
    in.queues = {0, 1, 2};
    in.vtep4 = net::Ip4Addr::parse("10.10.10.10");
    const auto groups = plan(in);
    ASSERT_EQ(groups.size(), 3u);
    const auto &fallback = groups[2].options[1];
    ASSERT_EQ(fallback.size(), 16u);  // 16 buckets of the low 4 bits: 6, 5 and 5
    std::map<uint16_t, int> share;
    std::set<uint16_t> values;
    for (const auto &r : fallback) {
        ASSERT_TRUE(r.match.sport);
        EXPECT_EQ(r.match.sport->mask, 0x000f);
        values.insert(r.match.sport->value);
        share[r.action.queues.at(0)]++;
    }
    EXPECT_EQ(values.size(), 16u);
    EXPECT_EQ(share[0], 6);
    EXPECT_EQ(share[1], 5);
    EXPECT_EQ(share[2], 5);
}

// ---- exact policy drops, by hand ----

// prod/web 10.0.0.2 fd00::2, prod/db 10.0.0.3 fd00::3.
struct Node {
    std::vector<policy::Namespace> namespaces{{"prod", {{"env", "prod"}}, {}}};
    std::vector<policy::Pod> pods{pod("prod", "web", {{"app", "web"}}, {"10.0.0.2", "fd00::2"}),
                                  pod("prod", "db", {{"app", "db"}}, {"10.0.0.3", "fd00::3"})};
    LocalAddrs local{{"prod/web", {ip("10.0.0.2"), ip("fd00::2")}},
                     {"prod/db", {ip("10.0.0.3"), ip("fd00::3")}}};
    PolicyDrops drops(const std::string &yaml, size_t max_rules = 1000) const {
        policy::PolicySet set(
            yaml.empty() ? std::vector<policy::Policy>{} : policy::test::policies(yaml), namespaces,
            pods);
        std::vector<std::string> keys{"prod/web", "prod/db"};
        return policy_drops(policy::compile(set, keys), local, 0, max_rules);
    }
};

std::string gnp(const std::string &name, int order, const std::string &spec) {
    return "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: " + name +
           "}\nspec:\n  order: " + std::to_string(order) + "\n" + spec + "\n---\n";
}

std::vector<std::string> lines(const PolicyDrops &d) {
    std::vector<std::string> out;
    for (const auto &g : d.groups) {
        for (const auto &r : g.options.at(0)) {
            out.push_back(g.what + ": " + r.match.str() + " -> " + r.action.str());
        }
    }
    return out;
}

TEST(FlowPolicyDrops, FirstDenyBecomesSynAndEchoDropsPerPodAddress) {
    const Node n;
    const auto d = n.drops(gnp("deny-ext", 10, R"(  selector: app == 'web'
  ingress:
  - action: Deny
    source: {nets: [192.168.0.0/16]}
  - action: Allow)"));
    EXPECT_EQ(lines(d), (std::vector<std::string>{
                            "deny-ext ingress rule 0 (Deny) for prod/web 10.0.0.2: ipv4 src "
                            "192.168.0.0/16 dst 10.0.0.2/32 tcp syn !ack -> drop, count",
                            "deny-ext ingress rule 0 (Deny) for prod/web 10.0.0.2: ipv4 src "
                            "192.168.0.0/16 dst 10.0.0.2/32 icmp type 8 -> drop, count"}));
    EXPECT_EQ(d.left, 0u);
}

TEST(FlowPolicyDrops, PortRangesAreCutIntoMasks) {
    const Node n;
    const auto d = n.drops(gnp("ports", 10, R"(  ingress:
  - action: Deny
    protocol: TCP
    source: {nets: ["fd01::/64"]}
    destination: {ports: ["80:90"]})"));
    std::vector<std::string> want;
    for (const char *pod : {"prod/web fd00::2", "prod/db fd00::3"}) {
        const std::string addr = std::string(pod).substr(std::string(pod).find(' ') + 1);
        for (const char *port : {"80/0xfff8", "88/0xfffe", "90"}) {
            want.push_back(std::string("ports ingress rule 0 (Deny) for ") + pod +
                           ": ipv6 src fd01::/64 dst " + addr + "/128 tcp dport " + port +
                           " syn !ack -> drop, count");
        }
    }
    EXPECT_EQ(lines(d), want);
}

TEST(FlowPolicyDrops, AnEarlierRuleThatSeesThePacketsMakesTheDropInexact) {
    const Node n;
    // An Allow, a Log or a Pass before the Deny, overlapping it: no drop (the packets are
    // allowed, logged or passed first). An earlier Deny too: the counts would go to the wrong rule.
    for (const char *first : {"Allow", "Log", "Pass", "Deny"}) {
        const auto d = n.drops(gnp("p", 10, std::string(R"(  ingress:
  - action: )") + first + R"(
    source: {nets: [192.168.1.0/24]}
  - action: Deny
    source: {nets: [192.168.0.0/16]})"));
        std::vector<std::string> rule1;
        for (const auto &l : lines(d)) {
            if (l.find("rule 1") != std::string::npos) {
                rule1.push_back(l);
            }
        }
        EXPECT_TRUE(rule1.empty()) << first << ": " << rule1.front();
    }
    // An earlier rule that cannot see them (other sources, or UDP only) leaves the drop exact.
    const auto d = n.drops(gnp("p", 10, R"(  ingress:
  - action: Allow
    source: {nets: [172.16.0.0/12]}
  - action: Allow
    protocol: UDP
    source: {nets: [192.168.1.0/24]}
  - action: Deny
    source: {nets: [192.168.0.0/16]})"));
    EXPECT_EQ(lines(d).size(), 4u);  // TCP and ICMP for both pods
    // An earlier policy counts too: a lower order that allows the source first.
    const auto d2 = n.drops(gnp("a-allow", 5, R"(  ingress:
  - action: Allow
    source: {nets: [192.168.0.0/16]})") +
                            gnp("b-deny", 10, R"(  ingress:
  - action: Deny
    source: {nets: [192.168.0.0/16]})"));
    EXPECT_TRUE(lines(d2).empty());
}

TEST(FlowPolicyDrops, OnlyWhatCanNeverBeAReply) {
    const Node n;
    // UDP: a reply to a pod's own request may match; no drop. ICMP other than echo request: none.
    EXPECT_TRUE(n.drops(gnp("u", 10, R"(  ingress:
  - action: Deny
    protocol: UDP
    source: {nets: [192.168.0.0/16]})"))
                    .groups.empty());
    EXPECT_TRUE(n.drops(gnp("i", 10, R"(  ingress:
  - action: Deny
    protocol: ICMP
    icmp: {type: 0}
    source: {nets: [192.168.0.0/16]})"))
                    .groups.empty());
    // Egress denies never reach the NIC's ingress.
    EXPECT_TRUE(n.drops(gnp("e", 10, R"(  types: [Egress]
  egress:
  - action: Deny
    destination: {nets: [192.168.0.0/16]})"))
                    .groups.empty());
    // No policy at all: nothing denies.
    EXPECT_TRUE(n.drops("").groups.empty());
}

TEST(FlowPolicyDrops, TheLimitKeepsWholeGroupsAndCountsTheRest) {
    const Node n;
    const std::string y = gnp("deny", 10, R"(  ingress:
  - action: Deny
    source: {nets: [192.168.0.0/16]}
  - action: Deny
    source: {nets: ["fd01::/64"]})");
    const auto all = n.drops(y);
    ASSERT_EQ(all.groups.size(), 4u);  // two pods, two families, TCP and ICMP in each group
    const auto some = n.drops(y, 5);
    EXPECT_EQ(some.groups.size(), 2u);
    EXPECT_EQ(some.left, 4u);
}

// ---- exact policy drops on random policies ----

// Packets inside a drop rule's match, for the reference evaluator: addresses of the world that
// fall in its source prefix and the prefix's ends, ports at the mask's ends and the world's
// usual ones.
std::vector<policy::Packet> inside(const Rule &r, const policy::test::World &w,
                                   policy::test::Random &rnd) {
    std::vector<net::IpAddr> srcs;
    const bool v4 = *r.match.family == net::Family::kIp4;
    auto in_src = [&](const net::IpAddr &a) {
        if ((a.family() == net::Family::kIp4) != v4) {
            return false;
        }
        return v4 ? std::get<net::Prefix4>(*r.match.src).contains(a.v4())
                  : std::get<net::Prefix6>(*r.match.src).contains(a.v6());
    };
    for (const auto &p : w.pods) {
        for (const auto &a : p.ips) {
            if (in_src(a)) {
                srcs.push_back(a);
            }
        }
    }
    for (const auto &a : w.outsiders) {
        if (in_src(a)) {
            srcs.push_back(a);
        }
    }
    if (v4) {
        const auto &p = std::get<net::Prefix4>(*r.match.src);
        srcs.emplace_back(p.addr);
        const uint32_t span = p.len == 0 ? 0xffffffffu : (1u << (32 - p.len)) - 1;
        srcs.emplace_back(net::Ip4Addr::from_host(p.addr.host() | span));
        srcs.emplace_back(net::Ip4Addr::from_host(
            p.addr.host() | (static_cast<uint32_t>(rnd.below(1 << 30)) & span)));
    } else {
        srcs.emplace_back(std::get<net::Prefix6>(*r.match.src).addr);
    }
    const net::IpAddr dst = v4 ? net::IpAddr(std::get<net::Prefix4>(*r.match.dst).addr)
                               : net::IpAddr(std::get<net::Prefix6>(*r.match.dst).addr);
    auto port_values = [&](const std::optional<Masked16> &m) {
        std::vector<uint16_t> v;
        for (uint16_t p : {uint16_t{0}, uint16_t{53}, uint16_t{80}, uint16_t{443}, uint16_t{1500},
                           uint16_t{8080}, uint16_t{40000}, uint16_t{65535},
                           static_cast<uint16_t>(rnd.below(65536))}) {
            if (!m || (p & m->mask) == m->value) {
                v.push_back(p);
            }
        }
        if (m) {
            v.push_back(m->value);
            v.push_back(static_cast<uint16_t>(m->value | ~m->mask));
        }
        return v;
    };
    std::vector<policy::Packet> out;
    for (const auto &s : srcs) {
        policy::Packet p;
        p.src = s;
        p.dst = dst;
        p.protocol = *r.match.proto;
        if (r.match.icmp_type) {
            p.icmp_type = *r.match.icmp_type;
            for (uint8_t code : {0, 1, 255}) {
                p.icmp_code = code;
                out.push_back(p);
            }
            continue;
        }
        for (uint16_t sp : port_values(r.match.sport)) {
            for (uint16_t dp : port_values(r.match.dport)) {
                p.src_port = sp;
                p.dst_port = dp;
                out.push_back(p);
            }
        }
    }
    return out;
}

TEST(FlowPolicyDrops, RandomPoliciesEveryDroppedPacketIsDeniedByThatRule) {
    uint64_t s = policy::test::seed("FlowPolicyDrops.Random");
    size_t rules = 0, packets = 0;
    for (int round = 0; round < 150; round++, s++) {
        policy::test::Random rnd(s);
        const auto w = rnd.world(1 + rnd.below(6));
        policy::PolicySet set(w.policies, w.namespaces, w.pods);
        std::vector<std::string> keys;
        LocalAddrs local;
        for (const auto &p : w.pods) {
            keys.push_back(p.key());
            local.emplace_back(p.key(), p.ips);
        }
        const auto compiled = policy::compile(set, keys);
        const auto d = policy_drops(compiled, local, 0, 100000);
        for (const auto &g : d.groups) {
            for (const auto &r : g.options.at(0)) {
                rules++;
                for (const auto &pkt : inside(r, w, rnd)) {
                    packets++;
                    const policy::Endpoint *ep = set.endpoint_at(pkt.dst);
                    ASSERT_NE(ep, nullptr) << g.what;
                    const auto v = set.evaluate(pkt, policy::Direction::kIngress, *ep);
                    const std::string want =
                        v.policy + " ingress rule " + std::to_string(v.rule) + " ";
                    ASSERT_FALSE(v.allowed)
                        << "seed " << s << ": " << g.what << ": " << r.match.str() << " drops "
                        << pkt.str() << ", allowed: " << v.why;
                    ASSERT_EQ(v.reason, policy::Verdict::Reason::kRule)
                        << "seed " << s << ": " << pkt.str() << ": " << v.why;
                    ASSERT_EQ(g.what.rfind(want, 0), 0u)
                        << "seed " << s << ": " << g.what << " drops " << pkt.str() << ", which "
                        << v.why;
                    ASSERT_TRUE(v.logged.empty()) << "seed " << s << ": " << pkt.str()
                                                  << " is logged first: " << v.logged.front();
                }
            }
        }
    }
    std::printf("%zu drop rules, %zu packets checked\n", rules, packets);
    EXPECT_GT(rules, 50u);  // the worlds do make drops; a test that finds none checks nothing
}

// ---- the installer ----

struct Fake final : Device {
    std::function<std::string(const Rule &)> refuse = [](const Rule &) { return std::string(); };
    std::function<bool(const Rule &)> fail_create = [](const Rule &) { return false; };
    std::vector<std::string> calls;
    std::map<uint64_t, Rule> live;
    std::map<uint64_t, uint64_t> counts;
    uint64_t next = 1;
    // what the installer left behind, seen when it ends and takes its device with it
    std::function<void(const Fake &)> on_end = [](const Fake &) {};
    ~Fake() override { on_end(*this); }

    std::string validate(const Rule &r) override {
        calls.push_back("validate " + r.match.str());
        return refuse(r);
    }
    uint64_t create(const Rule &r, std::string *error) override {
        calls.push_back("create " + r.match.str());
        if (fail_create(r)) {
            *error = "no room";
            return 0;
        }
        live[next] = r;
        return next++;
    }
    std::string destroy(uint64_t h) override {
        calls.push_back("destroy " + live.at(h).match.str());
        live.erase(h);
        return "";
    }
    std::optional<uint64_t> hits(uint64_t h) override {
        auto it = counts.find(h);
        return it == counts.end() ? std::nullopt : std::optional<uint64_t>(it->second);
    }
};

std::vector<Group> two_queue_plan() {
    PlanInput in;
    in.queues = {0, 1};
    in.vtep4 = net::Ip4Addr::parse("10.10.10.10");
    return plan(in);  // rss ipv4, rss ipv6, vxlan (inner RSS, else 2 queue rules)
}

TEST(FlowInstaller, RefusedOptionsFallBackAndStayListedWithTheirReasons) {
    auto dev = std::make_unique<Fake>();
    Fake &f = *dev;
    f.refuse = [](const Rule &r) {
        if (r.action.kind == Action::Kind::kRss && r.action.level == 2) {
            return std::string("no inner RSS");
        }
        if (r.match.family == net::Family::kIp6) {
            return std::string("no ipv6");
        }
        return std::string();
    };
    Installer inst(std::move(dev), Mode::kInstall);
    inst.apply(two_queue_plan());
    const auto &e = inst.entries();
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0].state, Installer::State::kInstalled);
    EXPECT_EQ(e[1].state, Installer::State::kRefused);
    EXPECT_EQ(e[1].errors, std::vector<std::string>{"ipv6 -> rss level 0 queues 0,1: no ipv6"});
    EXPECT_EQ(e[2].state, Installer::State::kInstalled);
    EXPECT_EQ(e[2].option, 1);
    ASSERT_EQ(e[2].errors.size(), 1u);  // the inner RSS it tried first
    EXPECT_NE(e[2].errors[0].find("no inner RSS"), std::string::npos);
    EXPECT_EQ(f.live.size(), 3u);  // rss ipv4 and the two queue rules
    const auto j = inst.to_json();
    EXPECT_EQ(j["groups"][2]["state"], "installed");
    EXPECT_EQ(j["groups"][2]["rules"].size(), 2u);
    EXPECT_EQ(j["groups"][1]["state"], "refused");
}

TEST(FlowInstaller, UnchangedGroupsKeepTheirRulesGoneOnesAreDestroyed) {
    auto dev = std::make_unique<Fake>();
    Fake &f = *dev;
    size_t live_at_end = 99, calls_at_end = 0;
    f.on_end = [&](const Fake &d) {
        live_at_end = d.live.size();
        calls_at_end = d.calls.size();
    };
    {
        Installer inst(std::move(dev), Mode::kInstall);
        auto groups = two_queue_plan();
        inst.apply(groups);
        ASSERT_EQ(f.live.size(), 3u);
        f.calls.clear();
        inst.apply(groups);
        EXPECT_TRUE(f.calls.empty()) << f.calls.front();
        groups.erase(groups.begin() + 1);  // the ipv6 RSS group goes
        inst.apply(groups);
        EXPECT_EQ(f.calls, std::vector<std::string>{"destroy ipv6"});
        EXPECT_EQ(f.live.size(), 2u);
        f.calls.clear();
    }
    EXPECT_EQ(live_at_end, 0u);  // the installer's end takes its rules off the port
    EXPECT_EQ(calls_at_end, 2u);
}

TEST(FlowInstaller, AFailedCreateUndoesItsOptionAndTriesTheNext) {
    auto dev = std::make_unique<Fake>();
    Fake &f = *dev;
    // The inner RSS validates but is not made; of the fallback, the second rule is not made.
    f.fail_create = [](const Rule &r) {
        return (r.action.kind == Action::Kind::kRss && r.action.level == 2) ||
               (r.action.kind == Action::Kind::kQueue && r.action.queues[0] == 1);
    };
    Installer inst(std::move(dev), Mode::kInstall);
    auto groups = two_queue_plan();
    groups.erase(groups.begin(), groups.begin() + 2);
    inst.apply(groups);
    const auto &e = inst.entries().at(0);
    EXPECT_EQ(e.state, Installer::State::kRefused);
    ASSERT_EQ(e.errors.size(), 2u);
    EXPECT_NE(e.errors[0].find("validated, not created"), std::string::npos);
    EXPECT_NE(e.errors[1].find("no room"), std::string::npos);
    EXPECT_TRUE(f.live.empty());  // the first queue rule was undone
}

TEST(FlowInstaller, ValidateModeCreatesNothingOffModeAsksNothing) {
    for (Mode m : {Mode::kValidate, Mode::kOff}) {
        auto dev = std::make_unique<Fake>();
        Fake &f = *dev;
        Installer inst(std::move(dev), m);
        inst.apply(two_queue_plan());
        EXPECT_TRUE(f.live.empty());
        for (const auto &c : f.calls) {
            EXPECT_EQ(c.rfind("validate", 0), 0u) << c;
        }
        for (const auto &e : inst.entries()) {
            EXPECT_EQ(e.state, m == Mode::kValidate ? Installer::State::kValidated
                                                    : Installer::State::kRefused);
        }
        if (m == Mode::kOff) {
            EXPECT_TRUE(f.calls.empty());
        }
    }
}

TEST(FlowInstaller, HitsSumTheCountedRulesOfAGroup) {
    auto dev = std::make_unique<Fake>();
    Fake &f = *dev;
    Installer inst(std::move(dev), Mode::kInstall);
    const Node n;
    const auto d = n.drops(gnp("deny", 10, R"(  selector: app == 'web'
  ingress:
  - action: Deny
    source: {nets: [192.168.0.0/16]})"));
    ASSERT_EQ(d.groups.size(), 1u);
    inst.apply(d.groups);
    ASSERT_EQ(f.live.size(), 2u);
    EXPECT_EQ(inst.hits(inst.entries()[0]), std::nullopt);  // the device has no count yet
    f.counts[1] = 5;
    f.counts[2] = 7;
    EXPECT_EQ(inst.hits(inst.entries()[0]), std::optional<uint64_t>(12));
    EXPECT_EQ(inst.to_json()["groups"][0]["hits"], 12);
}

}  // namespace
}  // namespace fwd::control::flows

namespace fwd::control::flows {
namespace {

// What `fwdctl policy stats` adds to a rule's packets: the hits of every installed group of
// that rule (over pods and addresses), keyed by the rule, not by the group's name.
TEST(FlowInstaller, PolicyHitsAreSummedPerRuleAcrossPodsAndAddresses) {
    auto dev = std::make_unique<Fake>();
    Fake &f = *dev;
    Installer inst(std::move(dev), Mode::kInstall);
    const Node n;
    const auto d = n.drops(gnp("deny", 10, R"(  selector: has(app)
  ingress:
  - action: Allow
    protocol: UDP
  - action: Deny)"));
    // rule 1, for prod/web and prod/db, each with an IPv4 and an IPv6 address
    ASSERT_EQ(d.groups.size(), 4u);
    for (const auto &g : d.groups) {
        EXPECT_EQ(g.policy, "deny");
        EXPECT_EQ(g.rule, 1);
    }
    inst.apply(d.groups);
    EXPECT_TRUE(inst.policy_hits().empty());  // nothing counted yet
    uint64_t want = 0;
    for (const auto &[h, rule] : f.live) {
        f.counts[h] = h * 10;
        want += h * 10;
    }
    EXPECT_EQ(inst.policy_hits(), (RuleHits{{{"deny", 1}, want}}));
    // the RSS and VXLAN groups count nothing and are not policy's
    PlanInput in;
    in.queues = {0, 1};
    auto all = d.groups;
    for (auto &g : plan(in)) {
        all.push_back(g);
    }
    inst.apply(all);
    EXPECT_EQ(inst.policy_hits(), (RuleHits{{{"deny", 1}, want}}));
}

}  // namespace
}  // namespace fwd::control::flows
