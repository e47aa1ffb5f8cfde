// The per-node service table: each frontend kind, the traffic policies, session affinity,
// named and numeric target ports, endpoint conditions, no endpoint (reject) and no local
// endpoint (drop), services the dataplane does not serve, slices waiting for their service,
// conflicting frontends, and a deterministic order.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "fwd/svc/store.hpp"
#include "fwd/svc/table.hpp"

namespace fwd::svc {
namespace {

net::IpAddr ip(const char *s) {
    return *net::IpAddr::parse(s);
}

// Decoded, then planned on the default (dual-stack) configuration like an apply would.
struct Cluster {
    std::vector<Service> services;
    std::vector<EndpointSlice> slices;
    InUse used;

    void apply(const std::string &text) {
        for (const auto &r : parse_service_resources(text, "t.yaml")) {
            if (!r.is_service()) {
                slices.push_back(r.slice());
                continue;
            }
            Service s = plan_service(r.service(), {}, ServiceConfig::defaults(), used);
            for (const auto &a : s.cluster_ips) {
                used.ips[a] = s.key();
            }
            for (const auto &p : s.ports) {
                if (p.node_port) {
                    used.node_ports[p.node_port] = s.key();
                }
            }
            services.push_back(std::move(s));
        }
    }
    ServiceTable table(const std::string &node = "n1") const {
        return compile(services, slices,
                       NodeInfo{node, {ip("192.168.1.10"), ip("2001:db8:1::10")}});
    }
};

std::string service(const std::string &name, const std::string &spec) {
    return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n" + spec +
           "---\n";
}

std::string slice(const std::string &name, const std::string &svc, const std::string &type,
                  const std::string &rest) {
    return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " + name +
           "\n  labels: {kubernetes.io/service-name: " + svc + "}\naddressType: " + type + "\n" +
           rest + "---\n";
}

// Four endpoints: ready local, ready remote, terminating (serving) remote, not ready local.
const std::string kEndpoints4 = R"(endpoints:
- addresses: [10.244.1.2]
  nodeName: n1
- addresses: [10.244.2.2]
  nodeName: n2
- addresses: [10.244.2.3]
  nodeName: n2
  conditions: {ready: false, serving: true, terminating: true}
- addresses: [10.244.1.3]
  nodeName: n1
  conditions: {ready: false}
ports:
- name: http
  port: 8080
)";

std::vector<std::string> describe(const std::vector<Backend> &bs) {
    std::vector<std::string> out;
    for (const auto &b : bs) {
        out.push_back(b.addr.str() + ":" + std::to_string(b.port) + (b.local ? " local" : "") +
                      (b.for_new_flows ? " new" : "") +
                      (b.conditions.terminating ? " terminating" : "") +
                      (b.conditions.serving ? " serving" : ""));
    }
    return out;
}

TEST(ServiceTable, ClusterIpFrontendsAndConditions) {
    Cluster c;
    c.apply(service("web", "  ports:\n  - {name: http, port: 80, targetPort: 8080}\n") +
            slice("web-1", "web", "IPv4", kEndpoints4));
    const auto t = c.table();
    ASSERT_EQ(t.frontends.size(), 1u);
    const Frontend &f = t.frontends[0];
    EXPECT_EQ(f.kind, FrontendKind::kClusterIp);
    EXPECT_EQ(f.addr, ip("10.96.0.1"));
    EXPECT_EQ(f.protocol, Protocol::kTcp);
    EXPECT_EQ(f.port, 80);
    EXPECT_EQ(f.service, "default/web");
    EXPECT_EQ(f.port_name, "http");
    EXPECT_FALSE(f.affinity);
    EXPECT_FALSE(f.local_only);
    EXPECT_EQ(f.no_backend, NoBackend::kNone);
    // Every endpoint listed (existing flows keep theirs), sorted; new flows to ready ones.
    EXPECT_EQ(describe(f.backends),
              (std::vector<std::string>{"10.244.1.2:8080 local new serving",
                                        "10.244.1.3:8080 local", "10.244.2.2:8080 new serving",
                                        "10.244.2.3:8080 terminating serving"}));
    EXPECT_EQ(f.backends[1].node, "n1");
    EXPECT_EQ(t.find(ip("10.96.0.1"), Protocol::kTcp, 80), &t.frontends[0]);
    EXPECT_EQ(t.find(ip("10.96.0.1"), Protocol::kUdp, 80), nullptr);
    EXPECT_EQ(t.find(ip("10.96.0.1"), Protocol::kTcp, 81), nullptr);
}

TEST(ServiceTable, NoReadyEndpointRejectsNoneLocalDrops) {
    Cluster c;
    c.apply(service("empty", "  ports:\n  - port: 80\n"));
    c.apply(service("notready", "  ports:\n  - port: 80\n") +
            slice("notready-1", "notready", "IPv4",
                  "endpoints:\n- addresses: [10.244.2.9]\n  conditions: {ready: false, serving: "
                  "true, terminating: true}\n"));
    c.apply(
        service("itp", "  internalTrafficPolicy: Local\n  ports:\n  - port: 80\n") +
        slice("itp-1", "itp", "IPv4", "endpoints:\n- addresses: [10.244.2.9]\n  nodeName: n2\n"));
    const auto t = c.table();
    ASSERT_EQ(t.frontends.size(), 3u);
    auto of = [&](const std::string &svc) {
        return *std::find_if(t.frontends.begin(), t.frontends.end(),
                             [&](const Frontend &f) { return f.service == "default/" + svc; });
    };
    EXPECT_EQ(of("empty").no_backend, NoBackend::kReject);
    EXPECT_TRUE(of("empty").backends.empty());
    EXPECT_EQ(of("notready").no_backend, NoBackend::kReject);
    EXPECT_EQ(of("notready").backends.size(), 1u);  // kept for its existing flows
    EXPECT_TRUE(of("itp").local_only);
    EXPECT_EQ(of("itp").no_backend, NoBackend::kDrop);
    // On n2 the same service has its local endpoint.
    const auto t2 = c.table("n2");
    auto itp2 = std::find_if(t2.frontends.begin(), t2.frontends.end(),
                             [](const Frontend &f) { return f.service == "default/itp"; });
    EXPECT_EQ(itp2->no_backend, NoBackend::kNone);
    EXPECT_TRUE(itp2->backends[0].for_new_flows);
    EXPECT_TRUE(itp2->backends[0].local);
}

TEST(ServiceTable, NodePortExternalIpAndLoadBalancerFrontends) {
    Cluster c;
    c.apply(service("lb",
                    "  type: LoadBalancer\n  ipFamilyPolicy: PreferDualStack\n"
                    "  externalTrafficPolicy: Local\n"
                    "  externalIPs: [192.0.2.10]\n  loadBalancerIP: 198.51.100.7\n"
                    "  sessionAffinity: ClientIP\n"
                    "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}\n"
                    "  ports:\n  - {name: http, port: 80, targetPort: 8080}\n"
                    "status:\n  loadBalancer:\n    ingress:\n    - ip: \"2001:db8:9::1\"\n") +
            slice("lb-4", "lb", "IPv4", kEndpoints4) +
            slice("lb-6", "lb", "IPv6",
                  "endpoints:\n- addresses: [\"fd00:244::2\"]\n  nodeName: n2\nports:\n- name: "
                  "http\n  port: 8080\n"));
    const auto t = c.table();
    std::vector<std::string> got;
    for (const auto &f : t.frontends) {
        got.push_back(std::string(to_string(f.kind)) + " " + f.addr.str() + " " +
                      std::to_string(f.port) + " " + std::string(to_string(f.no_backend)));
        EXPECT_TRUE(f.affinity);
        EXPECT_EQ(f.affinity_timeout, 300u);
    }
    // Sorted by address (IPv4 first), protocol, port.
    EXPECT_EQ(got, (std::vector<std::string>{
                       "ClusterIP 10.96.0.1 80 -",
                       "ExternalIP 192.0.2.10 80 -",
                       "NodePort 192.168.1.10 30000 -",
                       "LoadBalancer 198.51.100.7 80 -",
                       "NodePort 2001:db8:1::10 30000 drop",
                       "LoadBalancer 2001:db8:9::1 80 drop",
                       "ClusterIP fd00:10:96::1 80 -",
                   }));
    // ClusterIP: Cluster semantics; the external kinds: Local, source kept, local only.
    const Frontend *cip = t.find(ip("10.96.0.1"), Protocol::kTcp, 80);
    EXPECT_FALSE(cip->local_only);
    EXPECT_FALSE(cip->keep_source);
    EXPECT_EQ(std::count_if(cip->backends.begin(), cip->backends.end(),
                            [](const Backend &b) { return b.for_new_flows; }),
              2);
    const Frontend *np = t.find(ip("192.168.1.10"), Protocol::kTcp, 30000);
    EXPECT_EQ(np->kind, FrontendKind::kNodePort);
    EXPECT_TRUE(np->local_only);
    EXPECT_TRUE(np->keep_source);
    EXPECT_EQ(describe(np->backends)[0], "10.244.1.2:8080 local new serving");
    EXPECT_EQ(std::count_if(np->backends.begin(), np->backends.end(),
                            [](const Backend &b) { return b.for_new_flows; }),
              1);
    // Cluster policy: no SNAT flag, every ready backend.
    Cluster k;
    k.apply(service("np",
                    "  type: NodePort\n  ports:\n  - {name: http, port: 80, nodePort: "
                    "31000}\n") +
            slice("np-1", "np", "IPv4", kEndpoints4));
    const ServiceTable kt = k.table();  // find() points into it: keep it alive
    const Frontend *knp = kt.find(ip("192.168.1.10"), Protocol::kTcp, 31000);
    ASSERT_NE(knp, nullptr);
    EXPECT_FALSE(knp->keep_source);
    EXPECT_FALSE(knp->local_only);
}

TEST(ServiceTable, TargetPortsByNumberAndByName) {
    Cluster c;
    // Named targetPort: the slice port named after the service port (what the endpoints
    // controller writes) or after the target name; numeric: the number when the slice names
    // no such port.
    c.apply(service("m",
                    "  ports:\n"
                    "  - {name: http, port: 80, targetPort: web}\n"
                    "  - {name: dns, port: 53, protocol: UDP, targetPort: dns-port}\n"
                    "  - {name: admin, port: 9000, targetPort: 9001}\n"
                    "  - {name: grpc, port: 7000, targetPort: grpc-port}\n") +
            slice("m-1", "m", "IPv4",
                  "endpoints:\n- addresses: [10.244.1.2]\nports:\n"
                  "- {name: http, port: 8080}\n- {name: dns-port, port: 5353, protocol: UDP}\n"));
    const auto t = c.table();
    EXPECT_EQ(t.find(ip("10.96.0.1"), Protocol::kTcp, 80)->backends[0].port, 8080);
    EXPECT_EQ(t.find(ip("10.96.0.1"), Protocol::kUdp, 53)->backends[0].port, 5353);
    EXPECT_EQ(t.find(ip("10.96.0.1"), Protocol::kTcp, 9000)->backends[0].port, 9001);
    const Frontend *grpc = t.find(ip("10.96.0.1"), Protocol::kTcp, 7000);
    EXPECT_TRUE(grpc->backends.empty());
    EXPECT_EQ(grpc->no_backend, NoBackend::kReject);
    ASSERT_EQ(t.notes.size(), 1u);
    EXPECT_EQ(t.notes[0].subject, "EndpointSlice 'default/m-1'");
    EXPECT_EQ(t.notes[0].what,
              "has no port for Service 'default/m' port 'grpc' (targetPort "
              "'grpc-port')");
}

TEST(ServiceTable, UnservedServicesAndWaitingSlices) {
    Cluster c;
    c.apply(service("ext", "  type: ExternalName\n  externalName: db.example.com\n") +
            service("head", "  clusterIP: None\n  selector: {app: x}\n") +
            slice("orphan-1", "later", "IPv4", "endpoints:\n- addresses: [10.244.1.2]\n") +
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: nolabel}\n"
            "addressType: IPv4\n");
    const auto t = c.table();
    EXPECT_TRUE(t.frontends.empty());
    std::vector<std::string> notes;
    for (const auto &n : t.notes) {
        notes.push_back(n.subject + ": " + n.what);
    }
    EXPECT_EQ(notes,
              (std::vector<std::string>{
                  "EndpointSlice 'default/nolabel': no label kubernetes.io/service-name: serves "
                  "no Service",
                  "EndpointSlice 'default/orphan-1': waits for Service 'default/later', which "
                  "does not exist (kept; it takes effect when the service comes)",
                  "Service 'default/ext': ExternalName (db.example.com): a DNS name, not served",
                  "Service 'default/head': headless (clusterIP None): no virtual address to "
                  "serve"}));
    // The service comes: the waiting slice takes effect.
    c.apply(service("later", "  ports:\n  - port: 80\n"));
    const auto t2 = c.table();
    ASSERT_EQ(t2.frontends.size(), 1u);
    EXPECT_EQ(t2.frontends[0].backends.size(), 1u);
}

TEST(ServiceTable, ConflictingFrontendsAndFamiliesTheServiceLacks) {
    Cluster c;
    c.apply(service("a", "  clusterIP: 10.96.0.50\n  ports:\n  - port: 80\n"));
    c.apply(service("b", "  externalIPs: [10.96.0.50, \"2001:db8::5\"]\n  ports:\n  - port: 80\n"));
    const auto t = c.table();
    ASSERT_EQ(t.frontends.size(), 2u);
    EXPECT_EQ(t.find(ip("10.96.0.50"), Protocol::kTcp, 80)->service, "default/a");
    std::vector<std::string> notes;
    for (const auto &n : t.notes) {
        notes.push_back(n.subject + ": " + n.what);
    }
    EXPECT_EQ(notes, (std::vector<std::string>{
                         "Service 'default/b': ExternalIP 10.96.0.50 TCP/80 is already ClusterIP "
                         "of Service 'default/a': not served",
                         "Service 'default/b': external IP 2001:db8::5 is IPv6, a family the "
                         "service does not have: not served"}));
}

TEST(ServiceTable, TheExampleFilesCompile) {
    Cluster c;
    for (const char *f : {"services-ip-family-policies.yaml", "service-dual-stack.yaml",
                          "service-loadbalancer-ipv6.yaml"}) {
        std::ifstream in(std::string(FWD_EXAMPLES_DIR) + "/" + f);
        std::ostringstream s;
        s << in.rdbuf();
        c.apply(s.str());
    }
    const auto t = c.table();
    // ipv6-only: 1 frontend; require-dual: 2; my-app: 2 x 2 ports; public-app: 2 ClusterIPs
    // and 2 NodePorts (one per node address) x 2 ports; no endpoints: all reject.
    EXPECT_EQ(t.frontends.size(), 1u + 2u + 4u + 8u);
    for (const auto &f : t.frontends) {
        EXPECT_EQ(f.no_backend, NoBackend::kReject) << f.service;
    }
    // Same input, same table.
    const auto again = c.table();
    ASSERT_EQ(again.frontends.size(), t.frontends.size());
    for (size_t i = 0; i < t.frontends.size(); ++i) {
        EXPECT_EQ(again.frontends[i].addr, t.frontends[i].addr);
        EXPECT_EQ(again.frontends[i].service, t.frontends[i].service);
    }
}

}  // namespace
}  // namespace fwd::svc
