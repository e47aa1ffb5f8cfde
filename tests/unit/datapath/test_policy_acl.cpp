// The compiled policy in rte_acl (acl.hpp): PolicyRules::classify's verdict against
// PolicySet::evaluate's, on hand-written policies and on random ones (the three kinds, random
// labels, namespaces, pods with IPv4 and IPv6 addresses and named ports, random packets of
// both families and every kind of protocol, both directions); the seed is printed and
// FWD_SEED=<n> replays it. Then the compile and build time and the memory of 1,000 and
// 10,000 rules.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "compile_check.hpp"
#include "fwd/dp/acl.hpp"

namespace fwd::dp {
namespace {

using policy::ClassId;
using policy::Compiled;
using policy::CompiledVerdict;
using policy::Direction;
using policy::Packet;
using policy::PolicySet;
namespace pt = policy::test;

PolicyKey4 key4(const Packet &p, ClassId cls) {
    const auto k = pt::flat_key(p);
    PolicyKey4 out;
    out.cls = cls;
    out.proto = k.proto;
    out.src = net::Be32::from_host(p.src.v4().host());
    out.dst = net::Be32::from_host(p.dst.v4().host());
    out.sport = net::Be16::from_host(k.sport);
    out.dport = net::Be16::from_host(k.dport);
    return out;
}

PolicyKey6 key6(const Packet &p, ClassId cls) {
    const auto k = pt::flat_key(p);
    PolicyKey6 out;
    out.cls = cls;
    out.proto = k.proto;
    out.src = p.src.v6().bytes();
    out.dst = p.dst.v6().bytes();
    out.sport = net::Be16::from_host(k.sport);
    out.dport = net::Be16::from_host(k.dport);
    return out;
}

// One packet through classify() (a burst of one).
CompiledVerdict classify_one(const PolicyRules &r, const Packet &p, Direction d, ClassId cls) {
    CompiledVerdict v;
    if (p.family() == net::Family::kIp4) {
        const PolicyKey4 k = key4(p, cls);
        r.classify(d, &k, 1, &v);
    } else {
        const PolicyKey6 k = key6(p, cls);
        r.classify(d, &k, 1, &v);
    }
    return v;
}

// The verdicts of a whole burst of packets of one family and direction, each at its local end.
void expect_burst(const PolicySet &s, const Compiled &c, const PolicyRules &r,
                  const std::vector<Packet> &pkts, Direction d, const std::string &where) {
    std::vector<PolicyKey4> k4;
    std::vector<PolicyKey6> k6;
    std::vector<const Packet *> p4, p6;
    for (const auto &p : pkts) {
        const auto *ep = s.endpoint_at(d == Direction::kIngress ? p.dst : p.src);
        if (ep == nullptr) {
            continue;
        }
        const ClassId cls = c.class_of.at(ep->key());
        if (p.family() == net::Family::kIp4) {
            k4.push_back(key4(p, cls));
            p4.push_back(&p);
        } else {
            k6.push_back(key6(p, cls));
            p6.push_back(&p);
        }
    }
    std::vector<CompiledVerdict> v4(k4.size()), v6(k6.size());
    r.classify(d, k4.data(), static_cast<uint32_t>(k4.size()), v4.data());
    r.classify(d, k6.data(), static_cast<uint32_t>(k6.size()), v6.data());
    for (const auto &[ps, vs] : {std::pair{&p4, &v4}, std::pair{&p6, &v6}}) {
        for (size_t i = 0; i < ps->size(); ++i) {
            const auto got = [&, vs = vs](const Packet &, Direction, ClassId) { return (*vs)[i]; };
            const auto diff = pt::compare(s, c, *(*ps)[i], d, got);
            ASSERT_TRUE(diff);
            ASSERT_EQ(*diff, "") << where << ": " << (*ps)[i]->str() << " " << policy::to_string(d)
                                 << " (in a burst of " << ps->size() << ")";
        }
    }
}

const std::vector<std::string> kLocal{"prod/web", "prod/client", "dev/tester"};

PolicySet cluster(const std::string &yaml) {
    return PolicySet(pt::policies(yaml),
                     {{"prod", {{"env", "prod"}}, {}}, {"dev", {{"env", "dev"}}, {}}},
                     {pt::pod("prod", "web", {{"app", "web"}}, {"10.0.0.2", "fd00::2"},
                              {{"http", policy::Protocol{policy::Protocol::kTcp}, 8080}}),
                      pt::pod("prod", "client", {{"app", "client"}}, {"10.0.0.3", "fd00::3"}),
                      pt::pod("dev", "tester", {{"app", "client"}}, {"10.0.1.3"})});
}

Packet tcp(const char *src, const char *dst, uint16_t dport) {
    Packet p;
    p.src = pt::ip(src);
    p.dst = pt::ip(dst);
    p.protocol = policy::Protocol::kTcp;
    p.src_port = 40000;
    p.dst_port = dport;
    return p;
}

const char *const kWebPolicy =
    "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web, namespace: "
    "prod}\nspec:\n  selector: app == 'web'\n  ingress:\n"
    "  - {action: Log, protocol: TCP}\n"
    "  - {action: Deny, source: {namespaceSelector: env == 'dev'}}\n"
    "  - {action: Allow, protocol: TCP, destination: {ports: [http]}}\n"
    "  - {action: Pass, protocol: TCP, destination: {ports: [22]}}\n";

TEST(PolicyAcl, AllowDenyPassLogDefaultDenyAndNoPolicy) {
    const auto s = cluster(kWebPolicy);
    const auto c = policy::compile(s, kLocal);
    const auto r = PolicyRules::build(c);
    const ClassId web = c.class_of.at("prod/web"), client = c.class_of.at("prod/client");
    const Direction in = Direction::kIngress;

    auto v = classify_one(*r, tcp("10.0.0.3", "10.0.0.2", 8080), in, web);
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(c.refs[v.rule].text, "prod/web ingress rule 2 (Allow)");
    EXPECT_EQ(c.refs[v.log].text, "prod/web ingress rule 0 (Log)");
    v = classify_one(*r, tcp("fd00::3", "fd00::2", 8080), in, web);
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(c.refs[v.rule].text, "prod/web ingress rule 2 (Allow)");
    v = classify_one(*r, tcp("10.0.1.3", "10.0.0.2", 8080), in, web);
    EXPECT_FALSE(v.allowed);
    EXPECT_EQ(c.refs[v.rule].text, "prod/web ingress rule 1 (Deny)");
    v = classify_one(*r, tcp("10.0.0.3", "10.0.0.2", 22), in, web);
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(c.refs[v.rule].action, policy::Action::kPass);
    // No rule decides: denied at the end of the tier, the Log rule still logged.
    v = classify_one(*r, tcp("10.0.0.3", "10.0.0.2", 80), in, web);
    EXPECT_FALSE(v.allowed);
    EXPECT_EQ(v.rule, policy::kNoRule);
    EXPECT_EQ(c.refs[v.log].text, "prod/web ingress rule 0 (Log)");
    // The client has no policy, and a class this rule set does not know is no policy either.
    v = classify_one(*r, tcp("10.0.0.2", "10.0.0.3", 80), in, client);
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(v.log, policy::kNoRule);
    v = classify_one(*r, tcp("10.0.0.2", "10.0.0.3", 80), in, 999);
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(r->rule_count(net::Family::kIp4, in),
              c.of(net::Family::kIp4, in).decide.size() + c.of(net::Family::kIp4, in).log.size());
    EXPECT_GT(r->memory_bytes(), 0u);
}

TEST(PolicyAcl, APolicyWithNoRuleOfAFamilyDeniesThatFamily) {
    const auto s = cluster(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: v4, "
        "namespace: prod}\nspec:\n  selector: app == 'web'\n  ingress:\n"
        "  - {action: Allow, ipVersion: 4}\n");
    const auto c = policy::compile(s, kLocal);
    const auto r = PolicyRules::build(c);
    EXPECT_EQ(r->rule_count(net::Family::kIp6, Direction::kIngress), 0u);
    const ClassId web = c.class_of.at("prod/web");
    EXPECT_TRUE(classify_one(*r, tcp("10.0.0.3", "10.0.0.2", 1), Direction::kIngress, web).allowed);
    EXPECT_FALSE(classify_one(*r, tcp("fd00::3", "fd00::2", 1), Direction::kIngress, web).allowed);
}

TEST(PolicyAcl, RuleSetsLiveSideBySideUnderUniqueNames) {
    const auto s = cluster(kWebPolicy);
    const auto c = policy::compile(s, kLocal);
    auto a = PolicyRules::build(c);
    auto b = PolicyRules::build(c);
    EXPECT_NE(a->name(), b->name());
    const ClassId web = c.class_of.at("prod/web");
    a.reset();  // the old one freed while the new one is in use
    EXPECT_TRUE(
        classify_one(*b, tcp("10.0.0.3", "10.0.0.2", 8080), Direction::kIngress, web).allowed);
}

// Random worlds, each checked with bursts of both families and directions.
TEST(PolicyAcl, RandomPoliciesEqualTheReference) {
    const uint64_t seed0 = pt::seed("PolicyAcl.RandomPoliciesEqualTheReference");
    size_t packets = 0, rules = 0;
    for (uint64_t round = 0; round < 40; ++round) {
        pt::Random rnd(seed0 + round);
        // Up to 6 policies: more add rte_acl build time (compile_check.hpp keeps negations to
        // one side of a rule for the same reason), not coverage.
        const auto w = rnd.world(1 + rnd.below(6));
        const PolicySet s(w.policies, w.namespaces, w.pods);
        std::vector<std::string> local;
        for (const auto &p : w.pods) {
            if (rnd.chance(80)) {
                local.push_back(p.key());
            }
        }
        const auto c = policy::compile(s, local);
        const auto r = PolicyRules::build(c);
        rules += c.stats.flat_rules;
        std::vector<Packet> pkts;
        for (int i = 0; i < 300; ++i) {
            pkts.push_back(rnd.packet(w));
        }
        for (Direction d : {Direction::kIngress, Direction::kEgress}) {
            // Only the packets whose end in d is local here: the others' end has no class
            // on this node (another node classifies them).
            std::vector<Packet> here;
            for (const auto &p : pkts) {
                const auto *ep = s.endpoint_at(d == Direction::kIngress ? p.dst : p.src);
                if (ep != nullptr && c.class_of.count(ep->key()) != 0) {
                    here.push_back(p);
                }
            }
            packets += here.size();
            expect_burst(s, c, *r, here, d, "seed " + std::to_string(seed0 + round));
            if (HasFatalFailure()) {
                return;
            }
        }
    }
    std::printf("%zu verdicts compared, %zu flat rules built\n", packets, rules);
    EXPECT_GT(packets, 5000u);
}

// A world of 100 pods (IPv4 and IPv6) and n rules: policies of rules_per_policy rules each,
// each rule allowing TCP to a port from a /24 (IPv4) or, every other one when mixed, a /120
// (IPv6).
struct Scale {
    PolicySet set;
    std::vector<std::string> local;
    std::string pod = "prod/pod0";  // the local pod measured, at dst
    const char *dst = "10.0.0.2";
    std::vector<Packet> extra;  // more packets to check against the reference
};

Scale scale(int n, int rules_per_policy, bool mixed) {
    std::vector<policy::Pod> pods;
    std::vector<std::string> local;
    for (int i = 0; i < 100; ++i) {
        policy::Pod p;
        p.ns = "prod";
        p.name = "pod" + std::to_string(i);
        p.labels["app"] = i % 2 == 0 ? "web" : "db";
        p.ips = {pt::ip("10.0.0." + std::to_string(i + 1)),
                 pt::ip("fd00::" + std::to_string(i + 1))};
        pods.push_back(p);
        local.push_back(p.key());
    }
    std::vector<policy::Policy> ps;
    for (int i = 0; i < n; ++i) {
        if (i % rules_per_policy == 0) {
            policy::Policy p;
            p.ns = "prod";
            p.name = "p" + std::to_string(i / rules_per_policy);
            p.order = i / rules_per_policy;
            p.selector = pt::sel(i % 2 == 0 ? "app == 'web'" : "all()");
            ps.push_back(p);
        }
        policy::Rule r;
        r.action = i % 7 == 0 ? policy::Action::kDeny : policy::Action::kAllow;
        r.protocol = policy::Protocol{policy::Protocol::kTcp};
        const bool v6 = mixed && i % 2 == 1;
        const std::string net =
            v6 ? "fd01::" + std::to_string(i) + ":0/120"
               : "10." + std::to_string(1 + i / 256) + "." + std::to_string(i % 256) + ".0/24";
        r.source.nets.push_back(*ipam::Cidr::parse(net));
        r.destination.ports.push_back(
            {static_cast<uint16_t>(1000 + i % 5000), static_cast<uint16_t>(1000 + i % 5000), ""});
        ps.back().ingress_rules.push_back(r);
    }
    return {PolicySet(ps, {{"prod", {}, {}}}, pods), local};
}

// perf/policy_update.py's policy: one GlobalNetworkPolicy of n ingress rules for one local
// pod, each allowing TCP to port 1024 + i from one /32 or (every other rule) one /128, and
// every tenth from the 200 peer pods (IPv4 and IPv6) a selector picks instead.
Scale harness(int n) {
    std::vector<policy::Pod> pods{
        pt::pod("perf", "target", {{"app", "target"}}, {"10.250.0.2", "fd00:250::2"})};
    for (int i = 0; i < 200; ++i) {
        char v4[32], v6[32];
        std::snprintf(v4, sizeof(v4), "10.200.%d.%d", i / 250, i % 250 + 1);
        std::snprintf(v6, sizeof(v6), "fd00:200::%x", i + 1);
        pods.push_back(pt::pod("remote", "peer-" + std::to_string(i), {{"app", "peer"}}, {v4, v6}));
    }
    policy::Policy p;
    p.kind = policy::PolicyKind::kGlobal;
    p.name = "big";
    p.selector = pt::sel("app == 'target'");
    for (int i = 0; i < n; ++i) {
        policy::Rule r;
        r.action = policy::Action::kAllow;
        r.protocol = policy::Protocol{policy::Protocol::kTcp};
        char net[48];
        if (i % 10 == 9) {
            r.source.selector = pt::sel("app == 'peer'");
        } else if (i % 2 == 1) {
            std::snprintf(net, sizeof(net), "fd00:300::%x/128", i);
            r.source.nets.push_back(*ipam::Cidr::parse(net));
        } else {
            std::snprintf(net, sizeof(net), "10.%d.%d.%d/32", 100 + i / 62500, i / 250 % 250,
                          i % 250 + 1);
            r.source.nets.push_back(*ipam::Cidr::parse(net));
        }
        const auto port = static_cast<uint16_t>(1024 + i % 60000);
        r.destination.ports.push_back({port, port, ""});
        p.ingress_rules.push_back(r);
    }
    Scale w{PolicySet({p}, {{"perf", {}, {}}, {"remote", {}, {}}}, pods), {"perf/target"}};
    w.pod = "perf/target";
    w.dst = "10.250.0.2";
    // Allowed and denied: a rule's own source and port, a peer on a selector rule's port, and
    // each on another rule's port; IPv6 likewise.
    for (int i : {0, 2, 9, 19, n - 2, n - 1}) {
        const auto port = static_cast<uint16_t>(1024 + i % 60000);
        char a4[32], a6[40];
        std::snprintf(a4, sizeof(a4), "10.%d.%d.%d", 100 + i / 62500, i / 250 % 250, i % 250 + 1);
        std::snprintf(a6, sizeof(a6), "fd00:300::%x", i + 1);
        for (const char *src : {static_cast<const char *>(a4), "10.200.0.7"}) {
            w.extra.push_back(tcp(src, "10.250.0.2", port));
            w.extra.push_back(tcp(src, "10.250.0.2", static_cast<uint16_t>(port + 1)));
        }
        for (const char *src : {static_cast<const char *>(a6), "fd00:200::7"}) {
            w.extra.push_back(tcp(src, "fd00:250::2", static_cast<uint16_t>(port + 1)));
            w.extra.push_back(tcp(src, "fd00:250::2", static_cast<uint16_t>(port + 2)));
        }
    }
    return w;
}

void measure(const char *what, const Scale &w, double bound) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto c = policy::compile(w.set, w.local);
    const auto r = PolicyRules::build(c);
    const double total =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "%s: %zu rules -> %zu flat rules, %zu classes: compile %.1f ms, rte_acl build "
        "%.1f ms, total %.1f ms, %zu KiB\n",
        what, c.stats.rules, c.stats.flat_rules, c.stats.classes, c.stats.seconds * 1e3,
        r->build_seconds() * 1e3, total * 1e3, r->memory_bytes() / 1024);
    // Issue 16 wants a 10,000-rule policy enforced within a second of its apply; the bounds
    // leave room for a loaded test machine (the numbers are in compile.hpp).
    EXPECT_LT(total, bound) << what;
    // The classify cost, bursts of 64 IPv4 packets of the web pods' class (not a benchmark:
    // a number to compare runs with).
    std::vector<PolicyKey4> keys;
    for (int i = 0; i < 64; ++i) {
        Packet p = tcp("10.1.0.9", w.dst, static_cast<uint16_t>(1000 + i * 77));
        p.src = pt::ip("10." + std::to_string(1 + i * 150 / 256) + "." +
                       std::to_string(i * 150 % 256) + ".9");
        keys.push_back(key4(p, c.class_of.at(w.pod)));
    }
    CompiledVerdict out[64];
    const int bursts = 20000;
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < bursts; ++i) {
        r->classify(Direction::kIngress, keys.data(), 64, out);
    }
    const double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t1).count() /
        (bursts * 64.0);
    std::printf("%s: classify %.1f ns a packet\n", what, ns);
    // A few packets of the set against the reference.
    const auto got = [&](const Packet &q, Direction d, ClassId cls) {
        return classify_one(*r, q, d, cls);
    };
    int allowed = 0;
    for (const auto &p : w.extra) {
        const auto diff = pt::compare(w.set, c, p, Direction::kIngress, got);
        ASSERT_TRUE(diff);
        EXPECT_EQ(*diff, "") << what << ": " << p.str();
        allowed += classify_one(*r, p, Direction::kIngress, c.class_of.at(w.pod)).allowed;
    }
    if (!w.extra.empty()) {
        EXPECT_GT(allowed, 0) << what;
        EXPECT_LT(allowed, static_cast<int>(w.extra.size())) << what;
    }
    for (int i = 0; i < 50; ++i) {
        Packet p = tcp("10.1.0.9", w.dst, static_cast<uint16_t>(1000 + i * 2));
        p.src = pt::ip("10." + std::to_string(1 + i * 40 / 256) + "." +
                       std::to_string(i * 40 % 256) + ".9");
        const auto diff = pt::compare(w.set, c, p, Direction::kIngress, got);
        ASSERT_TRUE(diff);
        EXPECT_EQ(*diff, "") << what << ": " << p.str();
    }
}

// The bounds are for the optimized build; the sanitizer tree (-O0, ASan, UBSan and the fuzz
// coverage) compiles the 10,000 rules in about 1.6 s at a load of 10, so it gets four times as
// long: there the test is for the verdicts, not the speed.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSlack = 4.0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr double kSlack = 4.0;
#else
constexpr double kSlack = 1.0;
#endif
#else
constexpr double kSlack = 1.0;
#endif

TEST(PolicyAcl, ThousandSimpleRulesAndATenThousandRulePolicyBuildFast) {
    measure("1,000 rules in 100 policies", scale(1000, 10, true), 1.0 * kSlack);
    // 0.5-0.65 s on this machine at a load of 10 on 2 cores, 1.03 s once: the bound is a
    // guard against a regression, the goal (1 s from apply to enforcement) is pctl's to show.
    measure("10,000 rules in one policy, half IPv6", scale(10000, 10000, true), 2.0 * kSlack);
    // All in one rte_acl context, whose build time grows faster than its rules.
    measure("10,000 IPv4 rules in one policy", scale(10000, 10000, false), 2.0 * kSlack);
    // perf/policy_update.py's 10,000 rules (29,000 flat rules), as the node builds them, but on
    // one thread (the node builds the two families' contexts side by side): 0.55 s quiet, 2.0 s
    // once at a load of 9 beside a build.
    measure("perf/policy_update.py's 10,000 rules", harness(10000), 4.0 * kSlack);
}

}  // namespace
}  // namespace fwd::dp
