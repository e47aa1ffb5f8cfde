// Services and EndpointSlices as files: every field read, Kubernetes' defaults, every refusal
// with the file, document, resource and field it names, warnings for what is not
// implemented, JSON and lists, the store's JSON round trip.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "fwd/svc/service.hpp"

namespace fwd::svc {
namespace {

const char *kFull = R"(apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels:
    app: web
  annotations:
    example.com/owner: team-a
  uid: 0000-1111
  resourceVersion: "42"
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:10:96::a"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  selector:
    app: web
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 8080
    nodePort: 30080
  - name: dns
    protocol: UDP
    port: 53
    targetPort: dns-port
  - name: sig
    protocol: SCTP
    port: 9000
  externalIPs: [192.0.2.10, "2001:db8::10"]
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 600
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  loadBalancerIP: 198.51.100.7
  allocateLoadBalancerNodePorts: true
status:
  loadBalancer:
    ingress:
    - ip: 198.51.100.8
    - ip: "2001:db8::8"
)";

const char *kSlice = R"(apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
  hostname: web-0
  zone: z1
  targetRef: {kind: Pod, name: web-0, namespace: shop}
- addresses: [10.244.2.6]
  nodeName: node-b
- addresses: [10.244.2.7]
  conditions: {ready: false}
- addresses: [10.244.2.8]
  conditions: {ready: false, serving: true, terminating: true}
ports:
- name: http
  port: 8080
  protocol: TCP
- name: dns
  port: 5353
  protocol: UDP
)";

net::IpAddr ip(const char *s) {
    return *net::IpAddr::parse(s);
}

std::vector<ServiceResource> parse(const std::string &text, const std::string &src = "svc.yaml") {
    return parse_service_resources(text, src);
}

// The message of the error parsing text gives; fails the test when there is none.
std::string error_of(const std::string &text) {
    try {
        parse(text);
    } catch (const ipam::ResourceError &e) {
        return e.what();
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return "";
}

// kFull-like service with one line of spec replaced: `spec_lines` is the spec, indented.
std::string service(const std::string &spec_lines, const std::string &name = "s",
                    const std::string &type = "") {
    return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n" +
           (type.empty() ? "" : "  type: " + type + "\n") + spec_lines;
}

const std::string kPort80 = "  ports:\n  - port: 80\n";

std::string read_example(const std::string &name) {
    std::ifstream in(std::string(FWD_EXAMPLES_DIR) + "/" + name);
    EXPECT_TRUE(in) << "cannot read " << FWD_EXAMPLES_DIR << "/" << name;
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(ServiceParse, EveryField) {
    auto rs = parse(kFull);
    ASSERT_EQ(rs.size(), 1u);
    ASSERT_TRUE(rs[0].is_service());
    const Service &s = rs[0].service();
    EXPECT_EQ(s.name, "web");
    EXPECT_EQ(s.ns, "shop");
    EXPECT_EQ(s.key(), "shop/web");
    EXPECT_EQ(s.labels.at("app"), "web");
    EXPECT_EQ(s.annotations.at("example.com/owner"), "team-a");
    EXPECT_EQ(s.type, ServiceType::kLoadBalancer);
    EXPECT_FALSE(s.headless);
    EXPECT_EQ(s.cluster_ips, (std::vector<net::IpAddr>{ip("10.96.0.10"), ip("fd00:10:96::a")}));
    EXPECT_EQ(s.ip_families, (std::vector<net::Family>{net::Family::kIp4, net::Family::kIp6}));
    EXPECT_EQ(s.family_policy, FamilyPolicy::kRequireDualStack);
    ASSERT_EQ(s.ports.size(), 3u);
    EXPECT_EQ(s.ports[0], (ServicePort{"http", Protocol::kTcp, 80, 8080, "", 30080}));
    EXPECT_EQ(s.ports[1], (ServicePort{"dns", Protocol::kUdp, 53, 0, "dns-port", 0}));
    EXPECT_EQ(s.ports[2], (ServicePort{"sig", Protocol::kSctp, 9000, 9000, "", 0}));
    EXPECT_EQ(s.selector.at("app"), "web");
    EXPECT_EQ(s.external_ips, (std::vector<net::IpAddr>{ip("192.0.2.10"), ip("2001:db8::10")}));
    EXPECT_TRUE(s.client_ip_affinity);
    EXPECT_EQ(s.affinity_timeout, 600u);
    EXPECT_EQ(s.external_policy, TrafficPolicy::kLocal);
    EXPECT_EQ(s.internal_policy, TrafficPolicy::kLocal);
    EXPECT_EQ(s.load_balancer_ip, ip("198.51.100.7"));
    EXPECT_TRUE(s.allocate_lb_node_ports);
    EXPECT_EQ(s.lb_ingress, (std::vector<net::IpAddr>{ip("198.51.100.8"), ip("2001:db8::8")}));
    EXPECT_EQ(rs[0].origin.str(), "svc.yaml:1: document 1, Service 'web'");
    // The selector is kept but nothing here selects pods: said once.
    ASSERT_EQ(rs[0].warnings.size(), 1u);
    EXPECT_EQ(rs[0].warnings[0].field, "spec.selector");
}

TEST(ServiceParse, KubernetesDefaults) {
    auto rs = parse(service("  ports:\n  - port: 80\n    targetPort: 8080\n"));
    const Service &s = rs[0].service();
    EXPECT_EQ(s.ns, "default");
    EXPECT_EQ(s.type, ServiceType::kClusterIp);
    EXPECT_TRUE(s.cluster_ips.empty());
    EXPECT_TRUE(s.ip_families.empty());
    EXPECT_FALSE(s.family_policy);
    EXPECT_EQ(s.ports[0].protocol, Protocol::kTcp);
    EXPECT_FALSE(s.client_ip_affinity);
    EXPECT_EQ(s.affinity_timeout, kDefaultAffinityTimeout);
    EXPECT_EQ(s.affinity_timeout, 10800u);
    EXPECT_FALSE(s.external_policy);
    EXPECT_EQ(s.internal_policy, TrafficPolicy::kCluster);
    EXPECT_TRUE(rs[0].warnings.empty());
    // targetPort absent: the port itself.
    EXPECT_EQ(parse(service(kPort80))[0].service().ports[0].target_port, 80);
    // ClientIP without a config: the default timeout.
    auto a = parse(service(kPort80 + "  sessionAffinity: ClientIP\n"));
    EXPECT_TRUE(a[0].service().client_ip_affinity);
    EXPECT_EQ(a[0].service().affinity_timeout, 10800u);
}

TEST(ServiceParse, HeadlessAndExternalName) {
    auto h = parse(service("  clusterIP: None\n  selector: {app: x}\n"));
    EXPECT_TRUE(h[0].service().headless);
    EXPECT_FALSE(h[0].service().served());
    auto e = parse(service("  externalName: db.example.com\n", "db", "ExternalName"));
    EXPECT_EQ(e[0].service().type, ServiceType::kExternalName);
    EXPECT_FALSE(e[0].service().served());
    ASSERT_EQ(e[0].warnings.size(), 1u);
    EXPECT_EQ(e[0].warnings[0].str(),
              "svc.yaml:1: document 1, Service 'db': spec.type: ExternalName is a DNS name: "
              "accepted and stored, not served by the dataplane");
}

TEST(ServiceParse, OldSpellingOfExternalTrafficPolicy) {
    auto rs = parse(service(kPort80 + "  externalTrafficPolicy: OnlyLocal\n", "s", "NodePort"));
    EXPECT_EQ(rs[0].service().external_policy, TrafficPolicy::kLocal);
    ASSERT_EQ(rs[0].warnings.size(), 1u);
    EXPECT_NE(rs[0].warnings[0].what.find("old spelling of 'Local'"), std::string::npos);
    rs = parse(service(kPort80 + "  externalTrafficPolicy: Global\n", "s", "NodePort"));
    EXPECT_EQ(rs[0].service().external_policy, TrafficPolicy::kCluster);
}

TEST(ServiceParse, NotImplementedFieldsAreWarnings) {
    auto rs = parse(service(kPort80 + "  loadBalancerSourceRanges: [10.0.0.0/8]\n"
                                      "  loadBalancerClass: example.com/lb\n"
                                      "  publishNotReadyAddresses: true\n"
                                      "  healthCheckNodePort: 31000\n",
                            "s", "LoadBalancer"));
    std::vector<std::string> fields;
    for (const auto &w : rs[0].warnings) {
        fields.push_back(w.field);
        EXPECT_NE(w.what.find("not implemented"), std::string::npos) << w.str();
    }
    EXPECT_EQ(fields, (std::vector<std::string>{
                          "spec.healthCheckNodePort", "spec.loadBalancerClass",
                          "spec.loadBalancerSourceRanges", "spec.publishNotReadyAddresses"}));
    auto p = parse(service("  ports:\n  - port: 80\n    appProtocol: http\n"));
    ASSERT_EQ(p[0].warnings.size(), 1u);
    EXPECT_EQ(p[0].warnings[0].field, "spec.ports[0].appProtocol");
}

// Every refusal: the whole message, file, document, resource, field and reason.
TEST(ServiceParse, EveryRefusalNamesTheField) {
    const std::string pre = "svc.yaml:1: document 1, Service 's': ";
    struct Case {
        std::string text, want;
    };
    const std::vector<Case> cases = {
        {service(kPort80 + "  bogus: 1\n"), "spec.bogus: unknown field"},
        {service(kPort80, "s", "Magic"),
         "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", "
         "\"ExternalName\", \"LoadBalancer\", \"NodePort\""},
        {service(""), "spec.ports: Required value"},
        {service("  ports:\n  - port: 0\n"),
         "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"},
        {service("  ports:\n  - port: 70000\n"),
         "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"},
        {service("  ports:\n  - port: \"80\"\n"),
         "spec.ports[0].port: want an integer, got \"80\""},
        {service("  ports:\n  - targetPort: 80\n"), "spec.ports[0].port: Required value"},
        {service("  ports:\n  - port: 80\n    protocol: ICMP\n"),
         "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", "
         "\"TCP\", \"UDP\""},
        {service("  ports:\n  - port: 80\n  - port: 81\n"),
         "spec.ports[0].name: Required value: a name is required when a service has several "
         "ports"},
        {service("  ports:\n  - {name: a, port: 80}\n  - {name: a, port: 81}\n"),
         "spec.ports[1].name: Duplicate value: \"a\""},
        {service("  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 80}\n"),
         "spec.ports[1]: Duplicate value: \"80/TCP\" (also spec.ports[0])"},
        {service("  ports:\n  - {name: Web, port: 80}\n"),
         "spec.ports[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of "
         "lower case alphanumeric characters or '-', and must start and end with an "
         "alphanumeric character"},
        {service("  ports:\n  - port: 80\n    targetPort: \"8080\"\n"),
         "spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter "
         "(a-z)"},
        {service("  ports:\n  - port: 80\n    targetPort: a-very-long-port-name\n"),
         "spec.ports[0].targetPort: Invalid value: \"a-very-long-port-name\": must be no more "
         "than 15 characters"},
        {service("  ports:\n  - port: 80\n    targetPort: web--x\n"),
         "spec.ports[0].targetPort: Invalid value: \"web--x\": must not contain consecutive "
         "hyphens"},
        {service("  ports:\n  - port: 80\n    targetPort: 0\n"),
         "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"},
        {service("  ports:\n  - port: 80\n    targetPort: [1]\n"),
         "spec.ports[0].targetPort: want a port number or name, got [1]"},
        {service("  ports:\n  - port: 80\n    nodePort: 30001\n"),
         "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"},
        {service("  ports:\n  - {name: a, port: 80, nodePort: 30001}\n  - {name: b, port: 81, "
                 "nodePort: 30001}\n",
                 "s", "NodePort"),
         "spec.ports[1].nodePort: Duplicate value: 30001 (also spec.ports[0])"},
        {service(kPort80 + "  clusterIP: 10.96.0.1\n  clusterIPs: [10.96.0.2]\n"),
         "spec.clusterIPs[0]: Invalid value: \"10.96.0.2\": must be equal to clusterIP "
         "\"10.96.0.1\""},
        {service(kPort80 + "  clusterIP: 10.96.0.300\n"),
         "spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address"},
        {service(kPort80 + "  clusterIPs: [10.96.0.1, 10.96.0.2]\n  ipFamilyPolicy: "
                           "RequireDualStack\n"),
         "spec.clusterIPs[1]: Invalid value: \"10.96.0.2\": must be of a different IP family "
         "than clusterIPs[0]"},
        {service(kPort80 + "  clusterIPs: [10.96.0.1, \"fd00::1\", 10.96.0.3]\n"),
         "spec.clusterIPs: Too many: 3: must have at most 2 items"},
        {service(kPort80 + "  clusterIPs: [10.96.0.1, None]\n"),
         "spec.clusterIPs[1]: Invalid value: \"None\": 'None' must be the only value of "
         "clusterIPs"},
        {service(kPort80 + "  clusterIP: None\n", "s", "NodePort"),
         "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort "
         "services"},
        {service(kPort80 + "  ipFamilies: [IPv5]\n"),
         "spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\""},
        {service(kPort80 + "  ipFamilies: [IPv4, IPv4]\n  ipFamilyPolicy: PreferDualStack\n"),
         "spec.ipFamilies[1]: Duplicate value: \"IPv4\""},
        {service(kPort80 + "  ipFamilies: [IPv4, IPv6, IPv4]\n"),
         "spec.ipFamilies: Too many: 3: must have at most 2 items"},
        {service(kPort80 + "  ipFamilyPolicy: DualStack\n"),
         "spec.ipFamilyPolicy: Unsupported value: \"DualStack\": supported values: "
         "\"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""},
        {service(kPort80 + "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4, IPv6]\n"),
         "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be RequireDualStack or "
         "PreferDualStack when multiple 'ipFamilies' are specified"},
        {service(kPort80 + "  clusterIP: \"fd00:10:96::5\"\n  ipFamilies: [IPv4]\n"),
         "spec.clusterIPs[0]: Invalid value: \"fd00:10:96::5\": expected an IPv4 value as "
         "indicated by `ipFamilies[0]`"},
        {service(kPort80 + "  sessionAffinity: Sticky\n"),
         "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", "
         "\"None\""},
        {service(kPort80 + "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    "
                           "clientIP:\n      timeoutSeconds: 0\n"),
         "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater "
         "than 0 and less than 86400"},
        {service(kPort80 + "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    "
                           "clientIP:\n      timeoutSeconds: 86401\n"),
         "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be "
         "greater than 0 and less than 86400"},
        {service(kPort80 + "  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 5\n"),
         "spec.sessionAffinityConfig: Invalid value: {\"clientIP\":{\"timeoutSeconds\":5}}: "
         "must not be set when sessionAffinity is None"},
        {service(kPort80 + "  externalTrafficPolicy: Local\n"),
         "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for "
         "externally-accessible services"},
        {service(kPort80 + "  externalTrafficPolicy: Nearby\n", "s", "NodePort"),
         "spec.externalTrafficPolicy: Unsupported value: \"Nearby\": supported values: "
         "\"Cluster\", \"Local\""},
        {service(kPort80 + "  internalTrafficPolicy: Global\n"),
         "spec.internalTrafficPolicy: Unsupported value: \"Global\": supported values: "
         "\"Cluster\", \"Local\""},
        {service(kPort80 + "  externalIPs: [127.0.0.1]\n"),
         "spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range "
         "(127.0.0.0/8, ::1/128)"},
        {service(kPort80 + "  externalIPs: [\"fe80::1\"]\n"),
         "spec.externalIPs[0]: Invalid value: \"fe80::1\": may not be in the link-local range "
         "(169.254.0.0/16, fe80::/10)"},
        {service(kPort80 + "  externalIPs: [0.0.0.0]\n"),
         "spec.externalIPs[0]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0, ::)"},
        {service(kPort80 + "  externalIPs: [not-an-ip]\n"),
         "spec.externalIPs[0]: Invalid value: \"not-an-ip\": must be a valid IP address"},
        {service(kPort80 + "  allocateLoadBalancerNodePorts: false\n"),
         "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is "
         "'LoadBalancer'"},
        {service(kPort80, "s", "ExternalName"), "spec.externalName: Required value"},
        {service(kPort80 + "  externalName: db.example.com\n  clusterIP: 10.96.0.9\n", "s",
                 "ExternalName"),
         "spec.clusterIPs: Forbidden: may not be set for ExternalName services"},
        {service(kPort80 + "  externalName: db.example.com\n  ipFamilyPolicy: SingleStack\n", "s",
                 "ExternalName"),
         "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"},
        {service(kPort80 + "  externalName: db.example.com\n"),
         "spec.externalName: Forbidden: may only be set when `type` is 'ExternalName'"},
        {service(kPort80 + "  selector: {\"bad key!\": x}\n"),
         "spec.selector: Invalid value: \"bad key!\": name part must consist of alphanumeric "
         "characters, '-', '_' or '.', and must start and end with an alphanumeric character "
         "(at most 63 characters)"},
    };
    for (const auto &c : cases) {
        EXPECT_EQ(error_of(c.text), pre + c.want) << c.text;
    }
    // Metadata: name and namespace.
    EXPECT_EQ(error_of(service(kPort80, "1s")),
              "svc.yaml:1: document 1, Service '1s': metadata.name: Invalid value: \"1s\": a "
              "DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
              "with an alphabetic character, and end with an alphanumeric character");
    EXPECT_EQ(error_of("apiVersion: v1\nkind: Service\nspec: {}\n"),
              "svc.yaml:1: document 1, Service: metadata: Required value");
    EXPECT_EQ(error_of("apiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\n"),
              "svc.yaml:1: document 1, Service: metadata.name: Required value: name or "
              "generateName is required");
    EXPECT_EQ(error_of("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: "
                       "Prod\nspec:\n" +
                       kPort80),
              pre +
                  "metadata.namespace: Invalid value: \"Prod\": a lowercase RFC 1123 label "
                  "must consist of lower case alphanumeric characters or '-', and must start "
                  "and end with an alphanumeric character");
    EXPECT_EQ(error_of("apiVersion: v2\nkind: Service\nmetadata:\n  name: s\n"),
              "svc.yaml:1: document 1, Service: apiVersion: unknown apiVersion 'v2' for Service "
              "(want v1)");
    EXPECT_EQ(error_of("apiVersion: v1\nkind: Pod\nmetadata:\n  name: s\n"),
              "svc.yaml:1: document 1, Pod: kind: unknown kind 'Pod' (want Service or "
              "EndpointSlice)");
}

TEST(ServiceParse, ErrorsNameTheDocumentOfAMultiDocumentFile) {
    const std::string text =
        service(kPort80, "a") + "---\n" + service(kPort80 + "  ipFamilies: [IPv7]\n", "b");
    EXPECT_EQ(error_of(text),
              "svc.yaml:9: document 2, Service 'b': spec.ipFamilies[0]: "
              "Unsupported value: \"IPv7\": supported values: \"IPv4\", \"IPv6\"");
    EXPECT_EQ(error_of(service(kPort80, "a") + "---\n" + service(kPort80, "a")),
              "svc.yaml:9: document 2, Service 'a': metadata.name: 'default/a' is defined twice "
              "(also in svc.yaml:1: document 1, Service 'a')");
}

TEST(EndpointSliceParse, EveryFieldAndTheConditionDefaults) {
    auto rs = parse(kSlice);
    ASSERT_EQ(rs.size(), 1u);
    ASSERT_FALSE(rs[0].is_service());
    const EndpointSlice &s = rs[0].slice();
    EXPECT_EQ(s.key(), "shop/web-abc12");
    EXPECT_EQ(s.service_key(), "shop/web");
    EXPECT_EQ(s.address_type, AddressType::kIpv4);
    ASSERT_EQ(s.endpoints.size(), 4u);
    EXPECT_EQ(s.endpoints[0].addresses, std::vector<std::string>{"10.244.1.5"});
    EXPECT_EQ(s.endpoints[0].node_name, "node-a");
    EXPECT_EQ(s.endpoints[0].hostname, "web-0");
    EXPECT_EQ(s.endpoints[0].zone, "z1");
    EXPECT_EQ(s.endpoints[0].conditions, (Conditions{true, true, false}));
    // Absent: ready (unknown is read as ready), serving like ready, not terminating.
    EXPECT_EQ(s.endpoints[1].conditions, (Conditions{true, true, false}));
    EXPECT_EQ(s.endpoints[2].conditions, (Conditions{false, false, false}));
    EXPECT_EQ(s.endpoints[3].conditions, (Conditions{false, true, true}));
    ASSERT_EQ(s.ports.size(), 2u);
    EXPECT_EQ(s.ports[0], (EndpointPort{"http", Protocol::kTcp, 8080}));
    EXPECT_EQ(s.ports[1], (EndpointPort{"dns", Protocol::kUdp, 5353}));
    EXPECT_TRUE(rs[0].warnings.empty());
    // IPv6 addresses in canonical form.
    auto v6 = parse(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: "
        "x\naddressType: IPv6\nendpoints:\n- addresses: [\"FD00:0::0001\"]\n");
    EXPECT_EQ(v6[0].slice().endpoints[0].addresses[0], "fd00::1");
    // No service label: accepted, said.
    ASSERT_EQ(v6[0].warnings.size(), 1u);
    EXPECT_EQ(v6[0].warnings[0].field, "metadata.labels");
}

TEST(EndpointSliceParse, EveryRefusalNamesTheField) {
    auto slice = [](const std::string &body) {
        return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: e\n  "
               "labels: {kubernetes.io/service-name: s}\n" +
               body;
    };
    const std::string pre = "svc.yaml:1: document 1, EndpointSlice 'e': ";
    EXPECT_EQ(error_of(slice("endpoints: []\n")), pre + "addressType: Required value");
    EXPECT_EQ(error_of(slice("addressType: IPv5\n")),
              pre +
                  "addressType: Unsupported value: \"IPv5\": supported values: \"FQDN\", "
                  "\"IPv4\", \"IPv6\"");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nendpoints:\n- addresses: []\n")),
              pre + "endpoints[0].addresses: Required value: must contain at least 1 address");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nendpoints:\n- addresses: [\"fd00::1\"]\n")),
              pre +
                  "endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 "
                  "address");
    EXPECT_EQ(error_of(slice("addressType: IPv6\nendpoints:\n- addresses: [10.0.0.1]\n")),
              pre +
                  "endpoints[0].addresses[0]: Invalid value: \"10.0.0.1\": must be a valid "
                  "IPv6 address");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  "
                             "conditions: {ready: maybe}\n")),
              pre + "endpoints[0].conditions.ready: want true or false, got \"maybe\"");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  "
                             "nodeName: Node_A\n")),
              pre +
                  "endpoints[0].nodeName: Invalid value: \"Node_A\": a lowercase RFC 1123 "
                  "subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nports:\n- {name: a, port: 1}\n- {name: a, "
                             "port: 2}\n")),
              pre + "ports[1].name: Duplicate value: \"a\"");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nports:\n- {name: a, port: 0}\n")),
              pre + "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nports:\n- {name: a, port: 1, protocol: "
                             "ICMP}\n")),
              pre +
                  "ports[0].protocol: Unsupported value: \"ICMP\": supported values: "
                  "\"SCTP\", \"TCP\", \"UDP\"");
    EXPECT_EQ(error_of(slice("addressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  "
                             "color: red\n")),
              pre + "endpoints[0].color: unknown field");
    EXPECT_EQ(error_of("apiVersion: v1\nkind: EndpointSlice\nmetadata:\n  name: e\n"),
              "svc.yaml:1: document 1, EndpointSlice: apiVersion: unknown apiVersion 'v1' for "
              "EndpointSlice (want discovery.k8s.io/v1)");
}

TEST(ServiceParse, JsonAndListsAndMixedKinds) {
    auto j = parse(R"({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j"},
        "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}})",
                   "svc.json");
    EXPECT_EQ(j[0].service().ports[0].protocol, Protocol::kUdp);
    EXPECT_EQ(j[0].origin.str(), "svc.json:1: document 1, Service 'j'");
    // kubectl's List, and a typed list lending kind and apiVersion.
    auto l = parse("apiVersion: v1\nkind: List\nitems:\n- " +
                   std::string("{apiVersion: v1, kind: Service, metadata: {name: a}, spec: "
                               "{ports: [{port: 1}]}}\n") +
                   "- {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: "
                   "a-1}, addressType: IPv4}\n");
    ASSERT_EQ(l.size(), 2u);
    EXPECT_TRUE(l[0].is_service());
    EXPECT_FALSE(l[1].is_service());
    EXPECT_EQ(l[1].origin.str(), "svc.yaml:1: document 1, item 2, EndpointSlice 'a-1'");
    auto typed = parse(
        "apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: a}\n  "
        "spec: {ports: [{port: 1}]}\n");
    EXPECT_EQ(typed[0].service().name, "a");
    EXPECT_EQ(error_of("apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: a}\n  "
                       "spec: {ports: [{port: 0}]}\n"),
              "svc.yaml:1: document 1, item 1, Service 'a': spec.ports[0].port: Invalid value: "
              "0: must be between 1 and 65535, inclusive");
}

// Each example file applies as it is (parse and validate; allocation: test_allocation.cpp).
TEST(ServiceParse, TheExampleFilesParse) {
    auto dual = parse(read_example("service-dual-stack.yaml"), "service-dual-stack.yaml");
    ASSERT_EQ(dual.size(), 1u);
    const Service &d = dual[0].service();
    EXPECT_EQ(d.key(), "production/my-app");
    EXPECT_EQ(d.family_policy, FamilyPolicy::kPreferDualStack);
    EXPECT_EQ(d.ip_families, (std::vector<net::Family>{net::Family::kIp6, net::Family::kIp4}));
    EXPECT_EQ(d.ports[1], (ServicePort{"https", Protocol::kTcp, 443, 8443, "", 0}));

    auto lb = parse(read_example("service-loadbalancer-ipv6.yaml"));
    const Service &l = lb[0].service();
    EXPECT_EQ(l.type, ServiceType::kLoadBalancer);
    EXPECT_EQ(l.annotations.at("metallb.universe.tf/address-pool"), "ipv6-pool");
    EXPECT_EQ(l.ports[0].protocol, Protocol::kTcp);  // defaulted

    auto fam = parse(read_example("services-ip-family-policies.yaml"));
    ASSERT_EQ(fam.size(), 2u);
    EXPECT_EQ(fam[0].service().key(), "default/ipv6-only-service");
    EXPECT_EQ(fam[0].origin.document, 1);
    EXPECT_EQ(fam[1].service().family_policy, FamilyPolicy::kRequireDualStack);
    EXPECT_EQ(fam[1].origin.document, 2);
}

TEST(ServiceJson, StoreRoundTrip) {
    for (const char *text : {kFull, kSlice}) {
        auto rs = parse(text);
        nlohmann::json j;
        if (rs[0].is_service()) {
            j = rs[0].service();
            EXPECT_EQ(j.get<Service>(), rs[0].service());
        } else {
            j = rs[0].slice();
            EXPECT_EQ(j.get<EndpointSlice>(), rs[0].slice());
        }
    }
    // A broken record names the object and field.
    nlohmann::json bad = parse(kFull)[0].service();
    bad["spec"]["ports"][0]["port"] = 0;
    try {
        (void)bad.get<Service>();
        FAIL() << "no error";
    } catch (const ServiceError &e) {
        EXPECT_EQ(std::string(e.what()),
                  "Service 'shop/web': spec.ports[0].port: Invalid value: "
                  "0: must be between 1 and 65535, inclusive");
        EXPECT_EQ(e.field(), "spec.ports[0].port");
    }
}

}  // namespace
}  // namespace fwd::svc
