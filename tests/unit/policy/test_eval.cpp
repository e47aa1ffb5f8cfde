// The policy model's evaluator on hand-written cases, each the CALICO.md sentence it checks:
// no policy (profile allows), default deny once a policy applies, order, Pass, Log, nets and
// notNets, selectors scoped to the namespace, namespaceSelector, notSelector, named ports,
// ipVersion, ICMP, GlobalNetworkPolicy, Kubernetes NetworkPolicy, IPv4 and IPv6.
#include <gtest/gtest.h>

#include "compile_check.hpp"
#include "fwd/policy/eval.hpp"

namespace fwd::policy {
namespace {

// ---- fixtures ----

using test::ip;
using test::pod;
using test::policies;

// prod: web (10.0.0.2, fd00::2, port http 8080/TCP, dns 53/UDP), client (10.0.0.3, fd00::3);
// dev: tester (10.0.1.3), labelled app=client too.
struct Cluster {
    std::vector<Namespace> namespaces{{"prod", {{"env", "prod"}}, {}},
                                      {"dev", {{"env", "dev"}}, {}}};
    std::vector<Pod> pods{
        pod("prod", "web", {{"app", "web"}}, {"10.0.0.2", "fd00::2"},
            {{"http", Protocol{Protocol::kTcp}, 8080}, {"dns", Protocol{Protocol::kUdp}, 53}}),
        pod("prod", "client", {{"app", "client"}}, {"10.0.0.3", "fd00::3"}),
        pod("dev", "tester", {{"app", "client"}}, {"10.0.1.3"})};
    PolicySet with(const std::string &yaml) const {
        return PolicySet(yaml.empty() ? std::vector<Policy>{} : policies(yaml), namespaces, pods);
    }
};

Packet tcp(const char *src, const char *dst, uint16_t dport, uint16_t sport = 40000) {
    Packet p;
    p.src = ip(src);
    p.dst = ip(dst);
    p.protocol = Protocol::kTcp;
    p.src_port = sport;
    p.dst_port = dport;
    return p;
}

Packet udp(const char *src, const char *dst, uint16_t dport) {
    Packet p = tcp(src, dst, dport);
    p.protocol = Protocol::kUdp;
    return p;
}

Packet icmp(const char *src, const char *dst, uint8_t type, uint8_t code = 0) {
    Packet p = tcp(src, dst, 0, 0);
    p.protocol = p.src.family() == net::Family::kIp4 ? Protocol::kIcmp : Protocol::kIcmp6;
    p.icmp_type = type;
    p.icmp_code = code;
    return p;
}

// The ingress verdict of prod/web.
Verdict to_web(const PolicySet &s, const Packet &p) {
    return s.evaluate(p, Direction::kIngress, *s.endpoint("prod/web"));
}

std::string np(const std::string &name, const std::string &spec, const std::string &ns = "prod") {
    return "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: " + name +
           ", namespace: " + ns + "}\nspec:\n" + spec + "\n---\n";
}

const Cluster kCluster;

// ---- cases ----

TEST(PolicyEval, NoPolicyTheProfileAllows) {
    const auto s = kCluster.with("");
    const Verdict v = to_web(s, tcp("10.0.0.3", "10.0.0.2", 80));
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(v.reason, Verdict::Reason::kNoPolicy);
    EXPECT_EQ(v.why,
              "no policy applies to prod/web for ingress: the namespace profile kns.prod "
              "allows");
}

TEST(PolicyEval, DefaultDenyOnceAPolicyAppliesForThatDirection) {
    // An ingress-only policy with no rules: ingress denied, egress untouched.
    const auto s = kCluster.with(np("deny-in", "  selector: app == 'web'\n  types: [Ingress]"));
    const Verdict in = to_web(s, tcp("10.0.0.3", "10.0.0.2", 80));
    EXPECT_FALSE(in.allowed);
    EXPECT_EQ(in.reason, Verdict::Reason::kEndOfTier);
    EXPECT_EQ(in.applied, std::vector<std::string>{"prod/deny-in"});
    const Verdict out =
        s.evaluate(tcp("10.0.0.2", "10.0.0.3", 80), Direction::kEgress, *s.endpoint("prod/web"));
    EXPECT_TRUE(out.allowed);
    EXPECT_EQ(out.reason, Verdict::Reason::kNoPolicy);
    // The client is selected by nothing: its ingress stays open.
    const auto t = s.trace(tcp("10.0.0.2", "10.0.0.3", 22));
    ASSERT_TRUE(t.egress && t.ingress);
    EXPECT_TRUE(t.allowed());
}

TEST(PolicyEval, OrderLowerFirstUnorderedLastTiesByName) {
    const std::string allow = "  selector: app == 'web'\n  ingress: [{action: Allow}]";
    const std::string deny = "  selector: app == 'web'\n  ingress: [{action: Deny}]";
    // Order 10 Deny beats order 20 Allow.
    auto s = kCluster.with(np("a", "  order: 20\n" + allow) + np("b", "  order: 10\n" + deny));
    Verdict v = to_web(s, tcp("10.0.0.3", "10.0.0.2", 80));
    EXPECT_FALSE(v.allowed);
    EXPECT_EQ(v.policy, "prod/b");
    EXPECT_EQ(v.applied, (std::vector<std::string>{"prod/b", "prod/a"}));
    // No order: after every ordered one.
    s = kCluster.with(np("a", deny) + np("b", "  order: 1000000\n" + allow));
    v = to_web(s, tcp("10.0.0.3", "10.0.0.2", 80));
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(v.policy, "prod/b");
    // Same order: by name.
    s = kCluster.with(np("zz", "  order: 5\n" + allow) + np("aa", "  order: 5\n" + deny));
    EXPECT_EQ(to_web(s, tcp("10.0.0.3", "10.0.0.2", 80)).policy, "prod/aa");
}

TEST(PolicyEval, PassLeavesTheTierAndTheProfileAllows) {
    const auto s = kCluster.with(
        np("pass",
           "  order: 1\n  selector: app == 'web'\n  ingress:\n  - action: Pass\n"
           "    source: {selector: app == 'client'}") +
        np("deny", "  order: 2\n  selector: app == 'web'\n  ingress: [{action: Deny}]"));
    const Verdict passed = to_web(s, tcp("10.0.0.3", "10.0.0.2", 80));
    EXPECT_TRUE(passed.allowed);
    EXPECT_EQ(passed.reason, Verdict::Reason::kPass);
    EXPECT_EQ(passed.policy, "prod/pass");
    // Not from the client: the Pass rule does not match, the Deny decides.
    const Verdict denied = to_web(s, tcp("192.0.2.1", "10.0.0.2", 80));
    EXPECT_FALSE(denied.allowed);
    EXPECT_EQ(denied.reason, Verdict::Reason::kRule);
    EXPECT_EQ(denied.policy, "prod/deny");
}

TEST(PolicyEval, LogRecordsAndGoesOn) {
    const auto s = kCluster.with(np("log",
                                    "  selector: app == 'web'\n  ingress:\n"
                                    "  - action: Log\n  - action: Log\n"
                                    "    protocol: UDP\n  - action: Allow\n"
                                    "    protocol: TCP"));
    Verdict v = to_web(s, tcp("10.0.0.3", "10.0.0.2", 80));
    EXPECT_TRUE(v.allowed);
    EXPECT_EQ(v.rule, 2);
    EXPECT_EQ(v.logged, std::vector<std::string>{"prod/log ingress rule 0"});
    // Logged, then no rule allows: still denied at the end of the tier.
    v = to_web(s, udp("10.0.0.3", "10.0.0.2", 53));
    EXPECT_FALSE(v.allowed);
    EXPECT_EQ(v.logged,
              (std::vector<std::string>{"prod/log ingress rule 0", "prod/log ingress rule 1"}));
}

TEST(PolicyEval, NetsAndNotNets) {
    const auto s = kCluster.with(np("nets",
                                    "  selector: app == 'web'\n  ingress:\n"
                                    "  - action: Allow\n    source:\n"
                                    "      nets: [192.0.2.0/24]\n"
                                    "      notNets: [192.0.2.128/25]"));
    EXPECT_TRUE(to_web(s, tcp("192.0.2.1", "10.0.0.2", 80)).allowed);
    EXPECT_FALSE(to_web(s, tcp("192.0.2.200", "10.0.0.2", 80)).allowed);
    EXPECT_FALSE(to_web(s, tcp("198.51.100.1", "10.0.0.2", 80)).allowed);
    // The rule's CIDRs are IPv4: it does not exist for IPv6 (not even through notNets).
    const auto v6 = kCluster.with(np("v6",
                                     "  selector: app == 'web'\n  ingress:\n"
                                     "  - action: Allow\n    source: {notNets: "
                                     "[192.0.2.0/24]}"));
    EXPECT_TRUE(to_web(v6, tcp("10.0.0.3", "10.0.0.2", 80)).allowed);
    const Verdict v = to_web(v6, tcp("fd00::3", "fd00::2", 80));
    EXPECT_FALSE(v.allowed);
    const auto &pol = v6.policies()[0];
    EXPECT_EQ(v6.mismatch(pol, pol.ingress_rules[0], tcp("fd00::3", "fd00::2", 80)),
              "the rule is IPv4 only");
}

TEST(PolicyEval, SelectorsAreScopedToThePolicyNamespace) {
    const auto s = kCluster.with(np("from-clients",
                                    "  selector: app == 'web'\n  ingress:\n"
                                    "  - action: Allow\n"
                                    "    source: {selector: app == 'client'}"));
    EXPECT_TRUE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 80)).allowed);
    // dev/tester has app=client too, but a namespaced policy selects in its own namespace.
    EXPECT_FALSE(to_web(s, tcp("10.0.1.3", "10.0.0.2", 80)).allowed);
    const auto &pol = s.policies()[0];
    EXPECT_EQ(s.mismatch(pol, pol.ingress_rules[0], tcp("10.0.1.3", "10.0.0.2", 80)),
              "source pod dev/tester is not in the policy's namespace prod");
    // An address that is no pod's never matches a selector.
    EXPECT_FALSE(to_web(s, tcp("192.0.2.1", "10.0.0.2", 80)).allowed);
}

TEST(PolicyEval, NamespaceSelectorAndNotSelector) {
    const auto s =
        kCluster.with(np("dev-clients",
                         "  selector: app == 'web'\n  ingress:\n  - action: Allow\n"
                         "    source: {namespaceSelector: env == 'dev', selector: "
                         "app == 'client'}") +
                      np("not-client",
                         "  selector: app == 'web'\n  ingress:\n  - action: Allow\n"
                         "    protocol: UDP\n    source: {notSelector: app == 'client'}"));
    EXPECT_TRUE(to_web(s, tcp("10.0.1.3", "10.0.0.2", 80)).allowed);
    EXPECT_FALSE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 80)).allowed);
    // notSelector alone in a namespaced policy: a pod of the namespace that does not match.
    EXPECT_FALSE(to_web(s, udp("10.0.0.3", "10.0.0.2", 53)).allowed);   // is a client
    EXPECT_FALSE(to_web(s, udp("192.0.2.1", "10.0.0.2", 53)).allowed);  // no pod
    EXPECT_TRUE(to_web(s, udp("10.0.0.2", "10.0.0.2", 53)).allowed);    // web itself
    // global() selects non-namespaced entities: there are none here.
    const auto g = kCluster.with(np("global",
                                    "  selector: app == 'web'\n  ingress:\n"
                                    "  - action: Allow\n"
                                    "    source: {namespaceSelector: global()}"));
    EXPECT_FALSE(to_web(g, tcp("10.0.0.3", "10.0.0.2", 80)).allowed);
}

TEST(PolicyEval, NamedPortsResolvePerEndpoint) {
    const auto s = kCluster.with(np("http",
                                    "  selector: app == 'web'\n  ingress:\n"
                                    "  - action: Allow\n    protocol: TCP\n"
                                    "    destination: {ports: [http, 9000]}\n"
                                    "  - action: Allow\n    protocol: UDP\n"
                                    "    destination: {ports: [http]}"));
    EXPECT_TRUE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 8080)).allowed);
    EXPECT_TRUE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 9000)).allowed);
    EXPECT_FALSE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 80)).allowed);
    EXPECT_TRUE(to_web(s, tcp("fd00::3", "fd00::2", 8080)).allowed);
    // http is a TCP port of web: UDP 8080 is not it.
    EXPECT_FALSE(to_web(s, udp("10.0.0.3", "10.0.0.2", 8080)).allowed);
    // Egress from the client to a named port: resolved on the destination pod.
    const auto e = kCluster.with(np("out",
                                    "  selector: app == 'client'\n  egress:\n"
                                    "  - action: Allow\n    protocol: UDP\n"
                                    "    destination: {ports: [dns]}"));
    const auto *client = e.endpoint("prod/client");
    EXPECT_TRUE(e.evaluate(udp("10.0.0.3", "10.0.0.2", 53), Direction::kEgress, *client).allowed);
    EXPECT_FALSE(
        e.evaluate(udp("10.0.0.3", "192.0.2.53", 53), Direction::kEgress, *client).allowed);
    // notPorts with a name.
    const auto n = kCluster.with(np("not-http",
                                    "  selector: app == 'web'\n  ingress:\n"
                                    "  - action: Allow\n    protocol: TCP\n"
                                    "    destination: {notPorts: [http]}"));
    EXPECT_FALSE(to_web(n, tcp("10.0.0.3", "10.0.0.2", 8080)).allowed);
    EXPECT_TRUE(to_web(n, tcp("10.0.0.3", "10.0.0.2", 8081)).allowed);
}

TEST(PolicyEval, IpVersionAndSourcePortsRanges) {
    const auto s = kCluster.with(np("v6-only",
                                    "  selector: app == 'web'\n  ingress:\n"
                                    "  - action: Allow\n    ipVersion: 6\n"
                                    "    protocol: TCP\n"
                                    "    source: {ports: ['1024:65535']}"));
    EXPECT_TRUE(to_web(s, tcp("fd00::3", "fd00::2", 80, 5000)).allowed);
    EXPECT_FALSE(to_web(s, tcp("fd00::3", "fd00::2", 80, 1000)).allowed);
    EXPECT_FALSE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 80, 5000)).allowed);
}

TEST(PolicyEval, IcmpTypeCodeAndNotIcmp) {
    const auto s =
        kCluster.with(np("ping",
                         "  selector: app == 'web'\n  ingress:\n"
                         "  - action: Allow\n    protocol: ICMP\n    icmp: {type: 8}\n"
                         "  - action: Allow\n    protocol: ICMP\n    icmp: {type: 3, code: 4}\n"
                         "  - action: Allow\n    protocol: ICMPv6\n    notICMP: {type: 128}"));
    EXPECT_TRUE(to_web(s, icmp("10.0.0.3", "10.0.0.2", 8)).allowed);
    EXPECT_FALSE(to_web(s, icmp("10.0.0.3", "10.0.0.2", 0)).allowed);
    EXPECT_TRUE(to_web(s, icmp("10.0.0.3", "10.0.0.2", 3, 4)).allowed);
    EXPECT_FALSE(to_web(s, icmp("10.0.0.3", "10.0.0.2", 3, 1)).allowed);
    // ICMPv6 other than echo request.
    EXPECT_FALSE(to_web(s, icmp("fd00::3", "fd00::2", 128)).allowed);
    EXPECT_TRUE(to_web(s, icmp("fd00::3", "fd00::2", 129)).allowed);
    // TCP is none of them.
    EXPECT_FALSE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 80)).allowed);
}

TEST(PolicyEval, GlobalNetworkPolicyAndItsNamespaceSelector) {
    const std::string gnp =
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
        "metadata: {name: dev-lockdown}\nspec:\n  namespaceSelector: "
        "env == 'dev'\n  egress: [{action: Deny}]\n";
    const auto s = kCluster.with(gnp);
    const auto *tester = s.endpoint("dev/tester");
    const Verdict v = s.evaluate(tcp("10.0.1.3", "10.0.0.2", 80), Direction::kEgress, *tester);
    EXPECT_FALSE(v.allowed);
    EXPECT_EQ(v.policy, "dev-lockdown");
    EXPECT_EQ(s.selected_by(s.policies()[0]).size(), 1u);
    // prod pods are not selected.
    EXPECT_TRUE(s.trace(tcp("10.0.0.3", "10.0.0.2", 80)).allowed());
    // A GlobalNetworkPolicy's rule selector spans every namespace.
    const auto g = kCluster.with(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\n"
        "spec:\n  selector: app == 'web'\n  ingress: [{action: Allow, source: {selector: "
        "app == 'client'}}]\n");
    EXPECT_TRUE(to_web(g, tcp("10.0.1.3", "10.0.0.2", 80)).allowed);
}

TEST(PolicyEval, KubernetesNetworkPolicy) {
    const auto s = kCluster.with(R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    - namespaceSelector: {matchLabels: {env: dev}}
    ports: [{port: http}, {protocol: UDP, port: 53}]
)");
    EXPECT_TRUE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 8080)).allowed);
    EXPECT_TRUE(to_web(s, tcp("10.0.1.3", "10.0.0.2", 8080)).allowed);  // any pod of dev
    EXPECT_TRUE(to_web(s, udp("10.0.0.3", "10.0.0.2", 53)).allowed);
    EXPECT_FALSE(to_web(s, tcp("10.0.0.3", "10.0.0.2", 80)).allowed);
    EXPECT_FALSE(to_web(s, tcp("192.0.2.1", "10.0.0.2", 8080)).allowed);
    const Verdict v = to_web(s, tcp("10.0.0.3", "10.0.0.2", 8080));
    EXPECT_EQ(v.policy, "prod/knp.default.web");
}

TEST(PolicyEval, PacketText) {
    EXPECT_EQ(tcp("10.0.0.3", "10.0.0.2", 80, 1234).str(), "10.0.0.3:1234 -> 10.0.0.2:80 TCP");
    EXPECT_EQ(icmp("fd00::3", "fd00::2", 128).str(), "fd00::3 -> fd00::2 ICMPv6 type 128 code 0");
    EXPECT_EQ(udp("fd00::3", "fd00::2", 53).str(), "[fd00::3]:40000 -> [fd00::2]:53 UDP");
}

}  // namespace
}  // namespace fwd::policy
