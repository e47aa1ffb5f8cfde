// The policy compiler (compile.hpp) without DPDK: its flat rules matched one by one
// (compile_check.hpp's flat_match) must give PolicySet::evaluate's verdict. Each criterion,
// each negation, named ports, Pass, Log, default deny, ipVersion, classes, then random
// policies against the reference, and the compile time of large rule sets.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "compile_check.hpp"
#include "fwd/policy/compile.hpp"

namespace fwd::policy {
namespace {

using test::differs;
using test::flat_match;
using test::ip;

using test::pod;
using test::policies;

// prod: web (10.0.0.2, fd00::2, http 8080/TCP, dns 53/UDP), client (10.0.0.3, fd00::3),
// api (10.0.0.4, fd00::4, http 9090/TCP); dev: tester (10.0.1.3, app=client).
struct Cluster {
    std::vector<Namespace> namespaces{{"prod", {{"env", "prod"}}, {}},
                                      {"dev", {{"env", "dev"}}, {}}};
    std::vector<Pod> pods{
        pod("prod", "web", {{"app", "web"}}, {"10.0.0.2", "fd00::2"},
            {{"http", Protocol{Protocol::kTcp}, 8080}, {"dns", Protocol{Protocol::kUdp}, 53}}),
        pod("prod", "client", {{"app", "client"}}, {"10.0.0.3", "fd00::3"}),
        pod("prod", "api", {{"app", "api"}}, {"10.0.0.4", "fd00::4"},
            {{"http", Protocol{Protocol::kTcp}, 9090}}),
        pod("dev", "tester", {{"app", "client"}}, {"10.0.1.3"})};
    std::vector<std::string> local{"prod/web", "prod/client", "prod/api", "dev/tester"};
    PolicySet with(const std::string &yaml) const {
        return PolicySet(yaml.empty() ? std::vector<Policy>{} : policies(yaml), namespaces, pods);
    }
};

std::string np(const std::string &name, const std::string &spec, const std::string &ns = "prod") {
    return "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: " + name +
           ", namespace: " + ns + "}\nspec:\n" + spec + "\n---\n";
}

const Cluster kCluster;

// Every pair of the cluster's and a few outside addresses, TCP / UDP / SCTP on a few ports,
// ICMP of several types, other protocols, both directions of each local end: the flat rules'
// verdict must be the reference's. Returns how many verdicts were compared.
size_t expect_same(const PolicySet &s, const Compiled &c) {
    const auto flat = [&](const Packet &p, Direction d, ClassId cls) {
        return flat_match(c, p, d, cls);
    };
    std::vector<net::IpAddr> addrs;
    for (const auto &ep : s.endpoints()) {
        addrs.insert(addrs.end(), ep.ips.begin(), ep.ips.end());
    }
    for (const char *a : {"10.0.0.9", "10.9.0.1", "fd00::9", "2001:db8::1"}) {
        addrs.push_back(ip(a));
    }
    std::vector<Packet> shapes;
    for (uint8_t proto : {Protocol::kTcp, Protocol::kUdp, Protocol::kSctp}) {
        for (uint16_t port : {53, 79, 80, 81, 443, 8080, 9090, 65535}) {
            Packet p;
            p.protocol = proto;
            p.src_port = 40000;
            p.dst_port = port;
            shapes.push_back(p);
        }
    }
    for (int type : {0, 3, 8, 128}) {
        for (int code : {0, 1}) {
            Packet p;
            p.protocol = 0;  // the family's ICMP, set below
            p.icmp_type = static_cast<uint8_t>(type);
            p.icmp_code = static_cast<uint8_t>(code);
            shapes.push_back(p);
        }
    }
    for (uint8_t proto : {uint8_t{47}, Protocol::kIcmp, Protocol::kIcmp6}) {
        Packet p;
        p.protocol = proto;
        shapes.push_back(p);
    }
    size_t n = 0;
    for (const auto &src : addrs) {
        for (const auto &dst : addrs) {
            if (src.family() != dst.family()) {
                continue;
            }
            for (Packet p : shapes) {
                p.src = src;
                p.dst = dst;
                if (p.protocol == 0) {
                    p.protocol =
                        src.family() == net::Family::kIp4 ? Protocol::kIcmp : Protocol::kIcmp6;
                }
                for (Direction d : {Direction::kIngress, Direction::kEgress}) {
                    const auto diff = test::compare(s, c, p, d, flat);
                    if (!diff) {
                        continue;
                    }
                    EXPECT_EQ(*diff, "") << p.str() << " " << to_string(d);
                    ++n;
                    if (!diff->empty()) {
                        return n;
                    }
                }
            }
        }
    }
    return n;
}

Compiled compiled(const PolicySet &s) {
    return compile(s, kCluster.local);
}

size_t count(const Compiled &c, net::Family f, Direction d) {
    return c.of(f, d).decide.size() + c.of(f, d).log.size();
}

// ---- cases ----

TEST(PolicyCompile, NoPolicyEveryEndpointInClassZero) {
    const auto s = kCluster.with("");
    const auto c = compiled(s);
    ASSERT_EQ(c.classes.size(), 1u);
    for (const auto &key : kCluster.local) {
        EXPECT_EQ(c.class_of.at(key), kNoPolicyClass);
    }
    EXPECT_EQ(c.stats.flat_rules, 0u);
    EXPECT_GT(expect_same(s, c), 0u);
}

TEST(PolicyCompile, DefaultDenyAndClassesSharedByEndpointsWithTheSamePolicies) {
    const auto s = kCluster.with(np("deny-in", "  selector: app != 'web'\n  types: [Ingress]") +
                                 np("out", "  selector: app == 'api'\n  types: [Egress]"));
    const auto c = compiled(s);
    // client and api have the ingress policy; api the egress one too; web and tester none.
    EXPECT_EQ(c.class_of.at("prod/web"), kNoPolicyClass);
    EXPECT_EQ(c.class_of.at("dev/tester"), kNoPolicyClass);
    const ClassId client = c.class_of.at("prod/client"), api = c.class_of.at("prod/api");
    EXPECT_NE(client, api);
    EXPECT_TRUE(c.applies(client, Direction::kIngress));
    EXPECT_FALSE(c.applies(client, Direction::kEgress));
    EXPECT_TRUE(c.applies(api, Direction::kEgress));
    // Their ingress is the same rule set.
    EXPECT_EQ(c.set_of(client, Direction::kIngress), c.set_of(api, Direction::kIngress));
    EXPECT_EQ(c.sets[0][c.set_of(api, Direction::kIngress)].policies,
              std::vector<std::string>{"prod/deny-in"});
    EXPECT_GT(expect_same(s, c), 0u);
}

TEST(PolicyCompile, OrderPassAndLog) {
    const auto s =
        kCluster.with(np("first",
                         "  order: 10\n  selector: all()\n  ingress:\n  - {action: Log}\n"
                         "  - {action: Pass, protocol: UDP}\n  - {action: Deny, protocol: TCP, "
                         "destination: {ports: [22]}}") +
                      np("second",
                         "  order: 20\n  selector: all()\n  ingress:\n  - {action: Log, protocol: "
                         "TCP}\n  - {action: Allow, protocol: TCP}"));
    const auto c = compiled(s);
    EXPECT_EQ(c.of(net::Family::kIp4, Direction::kIngress).log.size(), 2u);
    // Rule refs follow the global order.
    EXPECT_EQ(c.refs[1].text, "prod/first ingress rule 0 (Log)");
    EXPECT_EQ(c.refs[5].text, "prod/second ingress rule 1 (Allow)");
    EXPECT_GT(expect_same(s, c), 0u);
}

TEST(PolicyCompile, NotNetsBecomeTheComplementaryPrefixesOfTheFamily) {
    const auto s =
        kCluster.with(np("nn",
                         "  selector: app == 'web'\n  ingress:\n  - action: Allow\n    source:\n"
                         "      notNets: [10.0.0.0/24]"));
    const auto c = compiled(s);
    // 0.0.0.0/0 without a /24: 24 prefixes; IPv6 untouched (the rule is IPv4 only).
    EXPECT_EQ(count(c, net::Family::kIp4, Direction::kIngress), 24u);
    EXPECT_EQ(count(c, net::Family::kIp6, Direction::kIngress), 0u);
    EXPECT_GT(expect_same(s, c), 0u);
}

TEST(PolicyCompile, NetsAndNotNetsTogetherBothFamiliesSeparately) {
    const auto s =
        kCluster.with(np("n4",
                         "  selector: all()\n  ingress:\n  - action: Allow\n    source:\n"
                         "      nets: [10.0.0.0/24]\n      notNets: [10.0.0.2/31]") +
                      np("n6",
                         "  selector: all()\n  egress:\n  - action: Deny\n    destination:\n"
                         "      nets: ['fd00::/64']\n      notNets: ['fd00::4/126']\n"
                         "  - action: Allow"));
    const auto c = compiled(s);
    EXPECT_EQ(count(c, net::Family::kIp4, Direction::kIngress), 7u);  // /24 minus a /31
    EXPECT_EQ(count(c, net::Family::kIp6, Direction::kEgress), 62u + 1u);
    EXPECT_GT(expect_same(s, c), 0u);
}

TEST(PolicyCompile, PortsNotPortsAndNamedPortsPerEndpoint) {
    const auto s = kCluster.with(
        np("p",
           "  selector: all()\n  ingress:\n  - action: Allow\n    protocol: TCP\n"
           "    destination:\n      ports: [http, 80, '440:450']\n      notPorts: [445]\n"
           "  - action: Deny\n    protocol: UDP\n    destination: {notPorts: [dns]}\n"
           "  - action: Allow\n    protocol: UDP"));
    const auto c = compiled(s);
    // http: 8080 on web, 9090 on api, each its own address and port.
    const auto &rules = c.of(net::Family::kIp4, Direction::kIngress).decide;
    size_t on_web = 0;
    for (const auto &r : rules) {
        on_web += r.ref == 1 && r.dport_lo == 8080 && r.dst.len == 32 &&
                  r.dst.w[0] == ip("10.0.0.2").v4().host();
    }
    EXPECT_EQ(on_web, 1u);
    EXPECT_GT(expect_same(s, c), 0u);
}

TEST(PolicyCompile, ProtocolNotProtocolIcmpNotIcmp) {
    const auto s = kCluster.with(np("l4",
                                    "  selector: all()\n  ingress:\n"
                                    "  - {action: Deny, protocol: ICMP, icmp: {type: 8, code: 1}}\n"
                                    "  - {action: Allow, protocol: ICMP, icmp: {type: 8}}\n"
                                    "  - {action: Deny, notProtocol: TCP, notICMP: {type: 128}}\n"
                                    "  - {action: Allow, protocol: ICMPv6}\n"
                                    "  - {action: Allow, notProtocol: UDP}"));
    EXPECT_GT(expect_same(s, compiled(s)), 0u);
}

TEST(PolicyCompile, SelectorsNamespaceSelectorsAndNotSelector) {
    const auto s = kCluster.with(
        np("sel",
           "  selector: app == 'web'\n  ingress:\n"
           "  - {action: Deny, source: {selector: app == 'client', namespaceSelector: "
           "env == 'dev'}}\n"
           "  - {action: Allow, source: {selector: app == 'client'}}\n"
           "  - {action: Log, source: {notSelector: app == 'api'}}\n"
           "  - {action: Allow, source: {namespaceSelector: all(), notSelector: app == "
           "'api'}}") +
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\n"
        "spec:\n  order: 5\n  namespaceSelector: env == 'dev'\n  egress:\n"
        "  - {action: Deny, destination: {notSelector: app == 'web'}}\n"
        "  - {action: Allow, destination: {namespaceSelector: global()}}\n---\n");
    EXPECT_GT(expect_same(s, compiled(s)), 0u);
}

TEST(PolicyCompile, IpVersionKeepsARuleToItsFamily) {
    const auto s =
        kCluster.with(np("v",
                         "  selector: all()\n  ingress:\n  - {action: Allow, ipVersion: 6}\n"
                         "  egress:\n  - {action: Deny, ipVersion: 4, protocol: UDP}\n"
                         "  - {action: Allow}"));
    const auto c = compiled(s);
    EXPECT_EQ(count(c, net::Family::kIp4, Direction::kIngress), 0u);
    EXPECT_EQ(count(c, net::Family::kIp6, Direction::kIngress), 1u);
    EXPECT_EQ(count(c, net::Family::kIp6, Direction::kEgress), 1u);
    EXPECT_GT(expect_same(s, c), 0u);
}

TEST(PolicyCompile, KubernetesNetworkPolicy) {
    const auto s = kCluster.with(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, "
        "namespace: prod}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
        "  - from:\n    - podSelector: {matchLabels: {app: client}}\n"
        "    - ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.3/32]}\n"
        "    ports:\n    - {protocol: TCP, port: http}\n    - {protocol: UDP, port: 50, "
        "endPort: 60}\n---\n");
    EXPECT_GT(expect_same(s, compiled(s)), 0u);
}

TEST(PolicyCompile, ExpansionPastTheLimitIsRefusedNamingTheRule) {
    const auto s =
        kCluster.with(np("big",
                         "  selector: all()\n  ingress:\n  - action: Allow\n    protocol: TCP\n"
                         "    source: {notNets: ['fd00::/64'], notPorts: ['2:3', '5:6', '8:9']}\n"
                         "    destination: {notNets: ['fd00::/120'], notPorts: ['2:3', '5:6']}"));
    Limits limits;
    limits.max_per_rule = 10'000;  // 64 x 120 prefixes x 4 x 3 port ranges
    try {
        compile(s, kCluster.local, limits);
        FAIL() << "no error";
    } catch (const CompileError &e) {
        EXPECT_STREQ(e.what(),
                     "prod/big ingress rule 0 (Allow): expands to more than 10000 classifier "
                     "rules (addresses x ports x protocols)");
    }
}

// Random policies of the three kinds on random clusters: the flat rules against the
// reference on every packet. The seed is printed; FWD_SEED=<n> replays one.
TEST(PolicyCompile, RandomPoliciesEqualTheReference) {
    const uint64_t seed0 = test::seed("PolicyCompile.RandomPoliciesEqualTheReference");
    size_t compared = 0;
    for (uint64_t round = 0; round < 20; ++round) {
        test::Random rnd(seed0 + round);
        const auto w = rnd.world(1 + rnd.below(8));
        const PolicySet s(w.policies, w.namespaces, w.pods);
        std::vector<std::string> local;
        for (const auto &p : w.pods) {
            local.push_back(p.key());
        }
        const auto c = compile(s, local);
        const auto flat = [&](const Packet &p, Direction d, ClassId cls) {
            return flat_match(c, p, d, cls);
        };
        for (int i = 0; i < 300; ++i) {
            const Packet p = rnd.packet(w);
            for (Direction d : {Direction::kIngress, Direction::kEgress}) {
                const auto diff = test::compare(s, c, p, d, flat);
                if (!diff) {
                    continue;
                }
                ASSERT_EQ(*diff, "")
                    << "seed " << seed0 + round << ": " << p.str() << " " << to_string(d);
                ++compared;
            }
        }
    }
    std::printf("%zu verdicts compared\n", compared);
}

}  // namespace
}  // namespace fwd::policy
