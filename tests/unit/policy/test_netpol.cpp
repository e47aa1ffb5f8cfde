// The policy resources as files: every kind and field read, Calico's defaults, every refusal
// of Calico's validator (and of the API server for the Kubernetes kinds) with the file,
// document, resource and field it names, the Kubernetes NetworkPolicy conversion, the store's
// JSON round trip.
#include <gtest/gtest.h>

#include "fwd/policy/model.hpp"

namespace fwd::policy {
namespace {

std::vector<PolicyResource> parse(const std::string &text) {
    return parse_policy_resources(text, "p.yaml");
}

Policy one_policy(const std::string &text) {
    auto rs = parse(text);
    EXPECT_EQ(rs.size(), 1u);
    return std::get<Policy>(rs.at(0).value);
}

// The message of the refusal of text ("" when accepted).
std::string refusal(const std::string &text) {
    try {
        parse(text);
    } catch (const ipam::ResourceError &e) {
        return e.what();
    }
    return "";
}

// A Calico NetworkPolicy in namespace prod with one ingress rule given as YAML flow text.
std::string np_with_rule(const std::string &rule, const std::string &api = "projectcalico.org/v3") {
    return "apiVersion: " + api +
           "\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  ingress:\n  - " +
           rule + "\n";
}

TEST(PolicyParse, CalicoNetworkPolicyEveryField) {
    const Policy p = one_policy(R"(apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: prod
  labels: {team: a}
  annotations: {example.com/why: test}
  resourceVersion: "7"
spec:
  tier: default
  order: 100.5
  selector: app == 'web'
  types: [Ingress, Egress]
  performanceHints: [AssumeNeededOnEveryNode]
  ingress:
  - action: Allow
    ipVersion: 4
    protocol: TCP
    notProtocol: 17
    source:
      nets: [10.0.0.0/8, 192.168.1.1]
      notNets: [10.1.0.0/16]
      selector: role == 'client'
      notSelector: banned == 'yes'
      namespaceSelector: env in {'prod', 'staging'}
      ports: [1024, "2000:3000"]
    destination:
      ports: [80, http, "8080:8090"]
      notPorts: [81]
    metadata:
      annotations: {example.com/rule: first}
  egress:
  - action: Deny
    protocol: ICMP
    icmp: {type: 8, code: 0}
    notICMP: {type: 3}
  - action: Log
  - action: Pass
    protocol: ICMPv6
    ipVersion: 6
    destination: {nets: ["fd00::/64"]}
)");
    EXPECT_EQ(p.kind, PolicyKind::kCalico);
    EXPECT_EQ(p.key(), "prod/allow-web");
    EXPECT_EQ(p.labels.at("team"), "a");
    EXPECT_EQ(p.annotations.at("example.com/why"), "test");
    EXPECT_EQ(*p.order, 100.5);
    EXPECT_EQ(p.selector.text, "app == 'web'");
    EXPECT_TRUE(p.ingress && p.egress);
    EXPECT_EQ(p.performance_hints, std::vector<std::string>{"AssumeNeededOnEveryNode"});
    ASSERT_EQ(p.ingress_rules.size(), 1u);
    const Rule &r = p.ingress_rules[0];
    EXPECT_EQ(r.action, Action::kAllow);
    EXPECT_EQ(r.ip_version, 4);
    EXPECT_EQ(r.protocol->number, Protocol::kTcp);
    EXPECT_EQ(r.not_protocol->number, Protocol::kUdp);
    ASSERT_EQ(r.source.nets.size(), 2u);
    EXPECT_EQ(r.source.nets[1].str(), "192.168.1.1/32");  // an address alone is its /32
    EXPECT_EQ(r.source.not_nets[0].str(), "10.1.0.0/16");
    EXPECT_EQ(r.source.selector.text, "role == 'client'");
    EXPECT_EQ(r.source.not_selector.text, "banned == 'yes'");
    EXPECT_EQ(r.source.namespace_selector.text, "env in {'prod', 'staging'}");
    ASSERT_EQ(r.source.ports.size(), 2u);
    EXPECT_EQ(r.source.ports[1].min, 2000);
    EXPECT_EQ(r.source.ports[1].max, 3000);
    ASSERT_EQ(r.destination.ports.size(), 3u);
    EXPECT_EQ(r.destination.ports[1].name, "http");
    EXPECT_EQ(r.destination.not_ports[0].min, 81);
    EXPECT_EQ(r.annotations.at("example.com/rule"), "first");
    ASSERT_EQ(p.egress_rules.size(), 3u);
    EXPECT_EQ(p.egress_rules[0].icmp->type, 8);
    EXPECT_EQ(p.egress_rules[0].icmp->code, 0);
    EXPECT_EQ(p.egress_rules[0].not_icmp->type, 3);
    EXPECT_FALSE(p.egress_rules[0].not_icmp->code);
    EXPECT_EQ(p.egress_rules[1].action, Action::kLog);
    EXPECT_EQ(p.egress_rules[2].action, Action::kPass);
    EXPECT_EQ(p.egress_rules[2].family(), net::Family::kIp6);
}

TEST(PolicyParse, BothApiGroupsAndGlobalPolicy) {
    const Policy crd = one_policy(np_with_rule("action: Allow", "crd.projectcalico.org/v1"));
    EXPECT_EQ(crd.key(), "prod/p");
    const Policy g = one_policy(R"(apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: gp}
spec:
  selector: has(app)
  namespaceSelector: env == 'prod'
  egress: [{action: Deny}]
)");
    EXPECT_EQ(g.kind, PolicyKind::kGlobal);
    EXPECT_EQ(g.key(), "gp");
    EXPECT_EQ(g.ns, "");
    EXPECT_EQ(g.namespace_selector.text, "env == 'prod'");
    EXPECT_FALSE(g.order);
    EXPECT_EQ(refusal(R"(apiVersion: projectcalico.org/v2
kind: GlobalNetworkPolicy
metadata: {name: gp}
)"),
              "p.yaml:1: document 1, GlobalNetworkPolicy: apiVersion: unknown apiVersion "
              "'projectcalico.org/v2' for GlobalNetworkPolicy (want projectcalico.org/v3 or "
              "crd.projectcalico.org/v1)");
}

TEST(PolicyParse, TypesDefaultAsCalico) {
    auto types = [](const std::string &spec) {
        const Policy p = one_policy(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: " +
            spec);
        return std::pair{p.ingress, p.egress};
    };
    EXPECT_EQ(types("{}"), std::pair(true, false));
    EXPECT_EQ(types("{ingress: [{action: Allow}]}"), std::pair(true, false));
    EXPECT_EQ(types("{egress: [{action: Allow}]}"), std::pair(false, true));
    EXPECT_EQ(types("{ingress: [{action: Allow}], egress: [{action: Allow}]}"),
              std::pair(true, true));
    EXPECT_EQ(types("{types: [Egress]}"), std::pair(false, true));
    // No namespace: kubectl's and calicoctl's default.
    EXPECT_EQ(one_policy("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n"
                         "metadata: {name: p}\n")
                  .ns,
              "default");
}

struct Refusal {
    const char *rule;
    const char *message;  // the end of what()
};

TEST(PolicyParse, RuleRefusalsNameTheField) {
    const Refusal cases[] = {
        {"action: Accept",
         "spec.ingress[0].action: Unsupported value: \"Accept\": supported values: \"Allow\", "
         "\"Deny\", \"Log\", \"Pass\""},
        {"{protocol: TCP}", "spec.ingress[0].action: Required value"},
        {"{action: Allow, protocol: tcp}",
         "spec.ingress[0].protocol: Invalid value: \"tcp\": protocol name invalid (TCP, UDP, "
         "ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255)"},
        {"{action: Allow, protocol: 0}",
         "spec.ingress[0].protocol: Invalid value: 0: protocol number invalid (1 to 255)"},
        {"{action: Allow, notProtocol: 256}",
         "spec.ingress[0].notProtocol: Invalid value: 256: protocol number invalid (1 to 255)"},
        {"{action: Allow, ipVersion: 5}",
         "spec.ingress[0].ipVersion: Unsupported value: \"5\": supported values: \"4\", \"6\""},
        {"{action: Allow, destination: {ports: [80]}}",
         "spec.ingress[0].destination.ports: rules that specify ports must set protocol to TCP "
         "or UDP or SCTP"},
        {"{action: Allow, protocol: ICMP, source: {notPorts: [80]}}",
         "spec.ingress[0].source.notPorts: rules that specify ports must set protocol to TCP or "
         "UDP or SCTP"},
        {"{action: Allow, protocol: UDP, icmp: {type: 8}}",
         "spec.ingress[0].icmp: rules that specify ICMP fields must set protocol to ICMP"},
        {"{action: Allow, protocol: ICMP, icmp: {code: 1}}",
         "spec.ingress[0].icmp.code: ICMP code specified without an ICMP type"},
        {"{action: Allow, protocol: ICMP, icmp: {type: 255}}",
         "spec.ingress[0].icmp.type: Invalid value: 255: must be between 0 and 254"},
        {"{action: Allow, protocol: ICMP, icmp: {type: 3, code: 256}}",
         "spec.ingress[0].icmp.code: Invalid value: 256: must be between 0 and 255"},
        {"{action: Allow, protocol: ICMP, ipVersion: 6}",
         "spec.ingress[0].ipVersion: must set ipversion to '4' with protocol icmp"},
        {"{action: Allow, notProtocol: ICMPv6, ipVersion: 4}",
         "spec.ingress[0].ipVersion: must set ipversion to '6' with protocol icmpv6"},
        {"{action: Allow, ipVersion: 6, source: {nets: [10.0.0.0/8]}}",
         "spec.ingress[0].source.nets: rule IP version doesn't match CIDR version"},
        {"{action: Allow, source: {nets: [10.0.0.0/8]}, destination: {notNets: ['fd00::/8']}}",
         "spec.ingress[0].destination.notNets: rule contains both IPv4 and IPv6 CIDRs"},
        {"{action: Allow, source: {nets: [10.0.0.0/33]}}",
         "spec.ingress[0].source.nets[0]: Invalid value: \"10.0.0.0/33\": invalid CIDR"},
        {"{action: Allow, source: {notNets: [10.1.2.3/8]}}",
         "spec.ingress[0].source.notNets[0]: Invalid value: \"10.1.2.3/8\": invalid CIDR: host "
         "bits are set (the network is 10.0.0.0/8)"},
        {"{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}",
         "spec.ingress[0].destination.ports[0]: Invalid value: \"90:80\": port range invalid"},
        {"{action: Allow, protocol: TCP, destination: {ports: [0]}}",
         "spec.ingress[0].destination.ports[0]: Invalid value: \"0\": port range invalid, port "
         "number must be between 1 and 65535"},
        {"{action: Allow, protocol: TCP, destination: {ports: [65536]}}",
         "spec.ingress[0].destination.ports[0]: Invalid value: 65536: port range invalid, port "
         "number must be between 1 and 65535"},
        {"{action: Allow, protocol: TCP, destination: {ports: ['1:x']}}",
         "spec.ingress[0].destination.ports[0]: Invalid value: \"1:x\": port range invalid "
         "(want \"min:max\")"},
        {"{action: Allow, protocol: TCP, destination: {ports: [Http_Port]}}",
         "spec.ingress[0].destination.ports[0]: Invalid value: \"Http_Port\": named port "
         "invalid: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"},
        {"{action: Allow, source: {selector: \"app == 'a' &&\"}}",
         "spec.ingress[0].source.selector: invalid selector \"app == 'a' &&\": expected a label "
         "key, got the end at position 13"},
        {"{action: Allow, source: {notSelector: \"app = 'a'\"}}",
         "spec.ingress[0].source.notSelector: invalid selector \"app = 'a'\": expected an "
         "operator after 'app' at position 4"},
        {"{action: Allow, source: {selector: 'global()'}}",
         "spec.ingress[0].source.selector: global() can only be used in an EntityRule "
         "namespaceSelector"},
        {"{action: Allow, source: {namespaceSelector: 'global() || has(a)'}}",
         "spec.ingress[0].source.namespaceSelector: global() cannot be combined with other "
         "selectors"},
        {"{action: Allow, destination: {services: {name: web}}}",
         "spec.ingress[0].destination.services: not built here: matching Kubernetes Services in "
         "a rule (use selectors or nets)"},
        {"{action: Allow, source: {serviceAccounts: {names: [a]}}}",
         "spec.ingress[0].source.serviceAccounts: not built here: matching service accounts (use "
         "the pods' labels)"},
        {"{action: Allow, http: {methods: [GET]}}",
         "spec.ingress[0].http: not built here: HTTP matches (application layer policy)"},
        {"{action: Allow, sources: {}}", "spec.ingress[0].sources: unknown field"},
        {"{action: Allow, source: {net: [10.0.0.0/8]}}",
         "spec.ingress[0].source.net: unknown field"},
    };
    for (const auto &c : cases) {
        const std::string got = refusal(np_with_rule(c.rule));
        const std::string want =
            std::string("p.yaml:1: document 1, NetworkPolicy 'p': ") + c.message;
        EXPECT_EQ(got, want) << c.rule;
    }
}

TEST(PolicyParse, PolicyRefusalsNameTheField) {
    auto np = [](const std::string &meta, const std::string &spec) {
        return refusal("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: " + meta +
                       "\nspec: " + spec + "\n");
    };
    EXPECT_EQ(np("{name: p}", "{tier: security}"),
              "p.yaml:1: document 1, NetworkPolicy 'p': spec.tier: Invalid value: \"security\": "
              "not built "
              "here: only the default tier exists (omit tier or say \"default\")");
    EXPECT_EQ(
        np("{name: p}", "{serviceAccountSelector: \"role == 'x'\"}"),
        "p.yaml:1: document 1, NetworkPolicy 'p': spec.serviceAccountSelector: not built here: "
        "selecting pods by service account (use spec.selector on the pods' labels)");
    EXPECT_EQ(np("{name: p}", "{types: [Ingress, Ingress]}"),
              "p.yaml:1: document 1, NetworkPolicy 'p': spec.types: 'Ingress' type specified more "
              "than once");
    EXPECT_EQ(
        np("{name: p}", "{types: [Forward]}"),
        "p.yaml:1: document 1, NetworkPolicy 'p': spec.types[0]: Unsupported value: \"Forward\": "
        "supported values: \"Egress\", \"Ingress\"");
    EXPECT_EQ(np("{name: p}", "{order: high}"),
              "p.yaml:1: document 1, NetworkPolicy 'p': spec.order: want a number, got \"high\"");
    EXPECT_EQ(
        np("{name: p}", "{selector: 'global()'}"),
        "p.yaml:1: document 1, NetworkPolicy 'p': spec.selector: global() can only be used in an "
        "EntityRule namespaceSelector");
    EXPECT_EQ(np("{name: p}", "{namespaceSelector: all()}"),
              "p.yaml:1: document 1, NetworkPolicy 'p': spec.namespaceSelector: unknown field");
    EXPECT_EQ(
        np("{name: p}", "{performanceHints: [Fast]}"),
        "p.yaml:1: document 1, NetworkPolicy 'p': spec.performanceHints[0]: Unsupported value: "
        "\"Fast\": supported values: \"AssumeNeededOnEveryNode\"");
    EXPECT_EQ(np("{name: Bad_Name}", "{}"),
              "p.yaml:1: document 1, NetworkPolicy 'Bad_Name': metadata.name: Invalid value: "
              "\"Bad_Name\": "
              "name must consist of lower case alphanumeric characters or '-' (regex: "
              "[a-z0-9]([-a-z0-9]*[a-z0-9])?), with at most one '.'");
    EXPECT_EQ(np("{name: a.b.c}", "{}"),
              "p.yaml:1: document 1, NetworkPolicy 'a.b.c': metadata.name: Invalid value: "
              "\"a.b.c\": name "
              "must consist of lower case alphanumeric characters or '-' (regex: "
              "[a-z0-9]([-a-z0-9]*[a-z0-9])?), with at most one '.'");
    EXPECT_EQ(np("{name: knp.default.a.b.c}", "{}"), "");  // Calico's converted names
    EXPECT_EQ(
        np("{name: p, namespace: Prod}", "{}"),
        "p.yaml:1: document 1, NetworkPolicy 'p': metadata.namespace: Invalid value: \"Prod\": a "
        "lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
        "'-', and must start and end with an alphanumeric character");
    EXPECT_EQ(np("{name: p, labels: {'a b': x}}", "{}"),
              "p.yaml:1: document 1, NetworkPolicy 'p': metadata.labels: Invalid value: \"a b\": "
              "name part "
              "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character (at most 63 characters)");
    EXPECT_EQ(np("{name: p}", "{selector: 'a ==', ingress: []}"),
              "p.yaml:1: document 1, NetworkPolicy 'p': spec.selector: invalid selector \"a ==\": "
              "expected a "
              "quoted string at position 4");
    const std::string gnp =
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
        "metadata: {name: g}\nspec: ";
    EXPECT_EQ(refusal(gnp + "{preDNAT: true}"),
              "p.yaml:1: document 1, GlobalNetworkPolicy 'g': spec.preDNAT: not built here: it "
              "applies to "
              "host endpoints, which dpdk-fwd does not have");
    EXPECT_EQ(refusal(gnp + "{doNotTrack: true}"),
              "p.yaml:1: document 1, GlobalNetworkPolicy 'g': spec.doNotTrack: not built here: it "
              "applies to "
              "host endpoints, which dpdk-fwd does not have");
    EXPECT_EQ(refusal(gnp + "{namespaceSelector: 'global()'}"),
              "p.yaml:1: document 1, GlobalNetworkPolicy 'g': spec.namespaceSelector: global() can "
              "only be "
              "used in an EntityRule namespaceSelector");
    EXPECT_EQ(refusal(gnp + "{selector: all(), flows: 1}"),
              "p.yaml:1: document 1, GlobalNetworkPolicy 'g': spec.flows: unknown field");
    EXPECT_EQ(refusal("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
                      "metadata: {name: a.b.c}\n"),
              "p.yaml:1: document 1, GlobalNetworkPolicy 'a.b.c': metadata.name: Invalid value: "
              "\"a.b.c\": "
              "name must consist of lower case alphanumeric characters or '-' (regex: "
              "[a-z0-9]([-a-z0-9]*[a-z0-9])?), with at most one '.'");
}

TEST(PolicyParse, DocumentsAreNamedInMultiDocumentFiles) {
    const std::string text = np_with_rule("action: Allow") + "---\n" +
                             np_with_rule(
                                 "{action: Allow, protocol: TCP, "
                                 "destination: {ports: [99999]}}");
    EXPECT_EQ(refusal(text),
              "p.yaml:8: document 2, NetworkPolicy 'p': spec.ingress[0].destination.ports[0]: "
              "Invalid value: 99999: port range invalid, port number must be between 1 and "
              "65535");
    EXPECT_EQ(refusal(np_with_rule("action: Allow") + "---\n" + np_with_rule("action: Deny")),
              "p.yaml:8: document 2, NetworkPolicy 'p': metadata.name: NetworkPolicy 'prod/p' "
              "is defined twice (also in p.yaml:1: document 1, NetworkPolicy 'p')");
}

const char *kK8s = R"(apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector:
    matchLabels: {role: db}
    matchExpressions:
    - {key: tier, operator: In, values: [a, b]}
    - {key: legacy, operator: DoesNotExist}
  ingress:
  - from:
    - ipBlock: {cidr: 172.17.1.5/16, except: [172.17.1.0/24]}
    - namespaceSelector: {matchLabels: {project: x}}
    - podSelector: {matchLabels: {role: frontend}}
    - namespaceSelector: {}
      podSelector: {matchExpressions: [{key: app, operator: Exists}]}
    ports:
    - {protocol: TCP, port: 6379}
    - {port: 6380}
    - {protocol: TCP, port: 7000, endPort: 7010}
    - {protocol: UDP, port: metrics}
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/24}}]
    ports: [{protocol: TCP, port: 5978}]
  - {}
)";

TEST(PolicyParse, KubernetesNetworkPolicyConvertedAsCalico) {
    const Policy p = one_policy(kK8s);
    EXPECT_EQ(p.kind, PolicyKind::kKubernetes);
    EXPECT_EQ(p.key(), "prod/knp.default.db");
    EXPECT_EQ(*p.order, 1000);
    EXPECT_EQ(p.selector.text,
              "projectcalico.org/orchestrator == 'k8s' && role == 'db' && tier in { 'a', 'b' } "
              "&& ! has(legacy)");
    // No policyTypes and egress rules: the API server's default, Ingress and Egress.
    EXPECT_TRUE(p.ingress && p.egress);
    // One rule per protocol (sorted) and peer: TCP x 4 peers, then UDP x 4 peers.
    ASSERT_EQ(p.ingress_rules.size(), 8u);
    const Rule &tcp_block = p.ingress_rules[0];
    EXPECT_EQ(tcp_block.protocol->str(), "TCP");
    ASSERT_EQ(tcp_block.destination.ports.size(), 2u);  // 6379:6380 merged, 7000:7010
    EXPECT_EQ(tcp_block.destination.ports[0].str(), "6379:6380");
    EXPECT_EQ(tcp_block.destination.ports[1].str(), "7000:7010");
    EXPECT_EQ(tcp_block.source.nets[0].str(), "172.17.0.0/16");  // masked, as Calico does
    EXPECT_EQ(tcp_block.source.not_nets[0].str(), "172.17.1.0/24");
    EXPECT_FALSE(tcp_block.source.selector.present());
    const Rule &ns_peer = p.ingress_rules[1];
    EXPECT_EQ(ns_peer.source.selector.text, "projectcalico.org/orchestrator == 'k8s'");
    EXPECT_EQ(ns_peer.source.namespace_selector.text, "project == 'x'");
    const Rule &pod_peer = p.ingress_rules[2];
    EXPECT_EQ(pod_peer.source.selector.text,
              "projectcalico.org/orchestrator == 'k8s' && role == 'frontend'");
    EXPECT_FALSE(pod_peer.source.namespace_selector.present());
    const Rule &both = p.ingress_rules[3];
    EXPECT_EQ(both.source.namespace_selector.text, "all()");
    EXPECT_EQ(both.source.selector.text, "projectcalico.org/orchestrator == 'k8s' && has(app)");
    const Rule &udp = p.ingress_rules[4];
    EXPECT_EQ(udp.protocol->str(), "UDP");
    ASSERT_EQ(udp.destination.ports.size(), 1u);
    EXPECT_EQ(udp.destination.ports[0].name, "metrics");
    ASSERT_EQ(p.egress_rules.size(), 2u);
    EXPECT_EQ(p.egress_rules[0].destination.nets[0].str(), "10.0.0.0/24");
    EXPECT_EQ(p.egress_rules[0].destination.ports[0].str(), "5978");
    // `- {}`: every peer, every port, any protocol.
    EXPECT_FALSE(p.egress_rules[1].protocol);
    EXPECT_TRUE(p.egress_rules[1].destination.ports.empty());
    EXPECT_TRUE(p.egress_rules[1].destination.nets.empty());
}

TEST(PolicyParse, KubernetesDefaultsAndRefusals) {
    auto k8s = [](const std::string &spec) {
        return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\n"
               "spec: " +
               spec + "\n";
    };
    const Policy deny = one_policy(k8s("{podSelector: {}}"));
    EXPECT_TRUE(deny.ingress);
    EXPECT_FALSE(deny.egress);
    EXPECT_TRUE(deny.ingress_rules.empty());
    EXPECT_EQ(deny.ns, "default");
    const Policy egress_only = one_policy(k8s("{podSelector: {}, policyTypes: [Egress]}"));
    EXPECT_FALSE(egress_only.ingress);
    EXPECT_TRUE(egress_only.egress);
    const std::string head = "p.yaml:1: document 1, NetworkPolicy 'np': ";
    EXPECT_EQ(refusal(k8s("{}")), head + "spec.podSelector: Required value");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, ingress: [{from: [{}]}]}")),
              head + "spec.ingress[0].from[0]: Required value: must specify a peer");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, "
                          "podSelector: {}}]}]}")),
              head +
                  "spec.ingress[0].from[0]: Forbidden: may not specify more than 1 peer type "
                  "(ipBlock with a podSelector or namespaceSelector)");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: "
                          "[11.0.0.0/16]}}]}]}")),
              head +
                  "spec.egress[0].to[0].ipBlock.except[0]: Invalid value: \"11.0.0.0/16\": "
                  "must be a strict subset of `cidr`");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}]}]}")),
              head +
                  "spec.egress[0].to[0].ipBlock.cidr: Invalid value: \"10.0.0.1\": must be a "
                  "valid CIDR");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}")),
              head +
                  "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported "
                  "values: \"SCTP\", \"TCP\", \"UDP\"");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, ingress: [{ports: [{port: 80, endPort: 79}]}]}")),
              head +
                  "spec.ingress[0].ports[0].endPort: Invalid value: 79: must be greater than "
                  "or equal to `port`");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, ingress: [{ports: [{port: web, endPort: 90}]}]}")),
              head +
                  "spec.ingress[0].ports[0].endPort: Invalid value: 90: may not be specified "
                  "when `port` is non-numeric");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, ingress: [{ports: [{endPort: 90}]}]}")),
              head +
                  "spec.ingress[0].ports[0].endPort: Required value: may not be specified "
                  "when `port` is not");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, ingress: [{ports: [{port: 0}]}]}")),
              head +
                  "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and "
                  "65535, inclusive");
    EXPECT_EQ(refusal(k8s("{podSelector: {matchExpressions: [{key: a, operator: In}]}}")),
              head +
                  "spec.podSelector.matchExpressions[0].values: Required value: must be "
                  "specified when `operator` is 'In' or 'NotIn'");
    EXPECT_EQ(refusal(k8s("{podSelector: {matchExpressions: [{key: a, operator: Exists, values: "
                          "[x]}]}}")),
              head +
                  "spec.podSelector.matchExpressions[0].values: Forbidden: may not be "
                  "specified when `operator` is 'Exists' or 'DoesNotExist'");
    EXPECT_EQ(refusal(k8s("{podSelector: {matchExpressions: [{key: a, operator: Gt, values: "
                          "[x]}]}}")),
              head +
                  "spec.podSelector.matchExpressions[0].operator: Unsupported value: \"Gt\": "
                  "supported values: \"DoesNotExist\", \"Exists\", \"In\", \"NotIn\"");
    EXPECT_EQ(refusal(k8s("{podSelector: {}, policyTypes: [Ingress, Ingress]}")),
              head + "spec.policyTypes[1]: Duplicate value: \"Ingress\"");
    EXPECT_EQ(refusal(k8s("{podSelector: {matchLabels: {app: 'a b'}}}")),
              head +
                  "spec.podSelector.matchLabels.app: Invalid value: \"a b\": a valid label "
                  "must be an empty string or consist of alphanumeric characters, '-', '_' or "
                  "'.', and must start and end with an alphanumeric character (at most 63)");
}

TEST(PolicyParse, NamespaceAndPodRecords) {
    auto rs = parse(R"(apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels: {env: prod}
  namespace: ignored
spec: {finalizers: [kubernetes]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: prod
  labels: {app: web}
  annotations: {cni.projectcalico.org/ipv4pools: '["pool-a"]'}
spec:
  nodeName: node-1
  serviceAccountName: web
  containers:
  - name: web
    image: nginx
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 53, protocol: UDP}
    - {containerPort: 9999}
status:
  phase: Running
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
)");
    ASSERT_EQ(rs.size(), 2u);
    const auto &ns = std::get<Namespace>(rs[0].value);
    EXPECT_EQ(ns.name, "prod");
    EXPECT_EQ(ns.labels.at("env"), "prod");
    ASSERT_EQ(rs[0].warnings.size(), 1u);
    EXPECT_EQ(rs[0].warnings[0].str(),
              "p.yaml:1: document 1, Namespace 'prod': metadata.namespace: ignored: Namespace is "
              "cluster-scoped");
    const auto &pod = std::get<Pod>(rs[1].value);
    EXPECT_EQ(pod.key(), "prod/web-1");
    EXPECT_EQ(pod.node, "node-1");
    EXPECT_EQ(pod.service_account, "web");
    EXPECT_EQ(pod.annotations.at("cni.projectcalico.org/ipv4pools"), "[\"pool-a\"]");
    ASSERT_EQ(pod.ports.size(), 2u);  // the unnamed port is no named port
    EXPECT_EQ(pod.ports[1].name, "dns");
    EXPECT_EQ(pod.ports[1].protocol.number, Protocol::kUdp);
    ASSERT_EQ(pod.ips.size(), 2u);
    EXPECT_EQ(pod.ips[1].str(), "fd00::5");
    const Labels eff = pod.effective_labels(ns.labels);
    EXPECT_EQ(eff.at("projectcalico.org/namespace"), "prod");
    EXPECT_EQ(eff.at("projectcalico.org/orchestrator"), "k8s");
    EXPECT_EQ(eff.at("projectcalico.org/serviceaccount"), "web");
    EXPECT_EQ(eff.at("pcns.env"), "prod");
    EXPECT_EQ(ns.effective_labels().at("kubernetes.io/metadata.name"), "prod");

    const std::string pod_head = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n";
    EXPECT_EQ(refusal(pod_head + "spec: {containers: [{ports: [{name: x, containerPort: 0}]}]}"),
              "p.yaml:1: document 1, Pod 'a': spec.containers[0].ports[0].containerPort: Invalid "
              "value: 0: "
              "must be between 1 and 65535, inclusive");
    EXPECT_EQ(
        refusal(pod_head + "spec: {containers: [{ports: [{name: x, containerPort: 1, "
                           "protocol: ICMP}]}]}"),
        "p.yaml:1: document 1, Pod 'a': spec.containers[0].ports[0].protocol: Unsupported value: "
        "\"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
    EXPECT_EQ(refusal(pod_head + "spec: {containers: [{ports: [{name: x, containerPort: 1}]}, "
                                 "{ports: [{name: x, containerPort: 2}]}]}"),
              "p.yaml:1: document 1, Pod 'a': spec.containers.ports: Duplicate value: \"x\"");
    EXPECT_EQ(refusal(pod_head + "status: {podIPs: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]}"),
              "p.yaml:1: document 1, Pod 'a': status.podIPs: Invalid value: 2 addresses: at most "
              "one address "
              "per family");
    EXPECT_EQ(
        refusal(pod_head + "status: {podIP: 10.0.0.300}"),
        "p.yaml:1: document 1, Pod 'a': status.podIPs[0]: Invalid value: \"10.0.0.300\": must be a "
        "valid IP");
    EXPECT_EQ(refusal("apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n"),
              "p.yaml:1: document 1, Namespace 'a.b': metadata.name: Invalid value: \"a.b\": a "
              "lowercase RFC "
              "1123 label must consist of lower case alphanumeric characters or '-', and must "
              "start and end with an alphanumeric character");
}

TEST(PolicyParse, StoreJsonRoundTrip) {
    for (const std::string &text :
         {std::string(kK8s),
          np_with_rule("{action: Deny, protocol: 132, notProtocol: UDPLite, "
                       "source: {nets: ['fd00::/8'], ports: [1, '2:3', "
                       "name]}, destination: {namespaceSelector: "
                       "'global()'}}"),
          std::string("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: "
                      "{name: g}\nspec: {order: 5, applyOnForward: true, namespaceSelector: "
                      "has(x), egress: [{action: Pass, protocol: ICMP, notICMP: {type: 1, "
                      "code: 2}}]}\n")}) {
        for (const auto &r : parse(text)) {
            const nlohmann::json j = to_json(r.value);
            EXPECT_EQ(object_from_json(j), r.value) << j.dump();
        }
    }
}

}  // namespace
}  // namespace fwd::policy
