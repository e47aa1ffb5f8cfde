// ClusterIPs and NodePorts as the API server allocates them (plan_service), the family
// policies, the example files applied to a dual-stack and a single-stack cluster, and the
// registry in the store: writes, re-applies, listing, deletes, two writers at once on the
// in-memory, the embedded store and a real etcd.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

#include "etcd_server.hpp"
#include "fwd/ipam/embedded_store.hpp"
#include "fwd/ipam/etcd_store.hpp"
#include "fwd/ipam/mem_store.hpp"
#include "fwd/svc/store.hpp"
#include "temp_dir.hpp"

namespace fwd::svc {
namespace {

using net::Family;

net::IpAddr ip(const char *s) {
    return *net::IpAddr::parse(s);
}

ipam::Cidr cidr(const char *s) {
    return *ipam::Cidr::parse(s);
}

Service one(const std::string &text) {
    auto rs = parse_service_resources(text, "t.yaml");
    EXPECT_EQ(rs.size(), 1u);
    return rs.at(0).service();
}

std::string svc(const std::string &spec, const std::string &name = "s") {
    return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n" + spec;
}

const std::string kPort = "  ports:\n  - port: 80\n";

ServiceConfig single4() {
    ServiceConfig c;
    c.cluster_ip_ranges = {cidr("10.96.0.0/12")};
    return c;
}

ServiceConfig single6() {
    ServiceConfig c;
    c.cluster_ip_ranges = {cidr("fd00:10:96::/112")};
    return c;
}

// The error plan_service gives; fails when there is none.
std::string plan_error(const Service &s, const ServiceConfig &c, const InUse &u = {},
                       const std::optional<Service> &stored = std::nullopt) {
    try {
        plan_service(s, stored, c, u);
    } catch (const ServiceError &e) {
        return e.what();
    }
    ADD_FAILURE() << "no error planning " << s.key();
    return "";
}

std::string read_example(const std::string &name) {
    std::ifstream in(std::string(FWD_EXAMPLES_DIR) + "/" + name);
    EXPECT_TRUE(in) << name;
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(ServiceConfig, DefaultsAndJson) {
    const ServiceConfig d = ServiceConfig::defaults();
    ASSERT_EQ(d.cluster_ip_ranges.size(), 2u);
    EXPECT_EQ(d.cluster_ip_ranges[0].str(), "10.96.0.0/12");
    EXPECT_EQ(d.cluster_ip_ranges[1].str(), "fd00:10:96::/112");
    EXPECT_EQ(d.node_port_range(), "30000-32767");
    EXPECT_TRUE(d.dual_stack());
    nlohmann::json j = d;
    EXPECT_EQ(j.dump(), R"({"serviceClusterIPRanges":["10.96.0.0/12","fd00:10:96::/112"],)"
                        R"("serviceNodePortRange":"30000-32767"})");
    EXPECT_EQ(j.get<ServiceConfig>(), d);
    ServiceConfig bad = d;
    bad.cluster_ip_ranges = {cidr("10.96.0.0/12"), cidr("10.128.0.0/16")};
    EXPECT_THROW(validate_config(bad), std::invalid_argument);
    bad = d;
    bad.cluster_ip_ranges = {cidr("10.96.0.0/30")};
    EXPECT_THROW(validate_config(bad), std::invalid_argument);
    bad = d;
    bad.node_port_min = 40000;
    bad.node_port_max = 30000;
    EXPECT_THROW(validate_config(bad), std::invalid_argument);
    EXPECT_EQ(parse_port_range("30000-32767"), std::make_pair(uint16_t{30000}, uint16_t{32767}));
    EXPECT_FALSE(parse_port_range("30000"));
    EXPECT_FALSE(parse_port_range("1-70000"));
}

TEST(FamilyPolicy, SingleStackTakesTheFirstFamilyOrTheClustersPrimary) {
    const auto d = ServiceConfig::defaults();
    auto s = plan_service(one(svc(kPort)), {}, d, {});
    EXPECT_EQ(s.family_policy, FamilyPolicy::kSingleStack);
    EXPECT_EQ(s.ip_families, std::vector<Family>{Family::kIp4});
    EXPECT_EQ(s.cluster_ips, std::vector<net::IpAddr>{ip("10.96.0.1")});
    // A cluster whose primary is IPv6.
    ServiceConfig v6first = d;
    std::swap(v6first.cluster_ip_ranges[0], v6first.cluster_ip_ranges[1]);
    s = plan_service(one(svc(kPort)), {}, v6first, {});
    EXPECT_EQ(s.cluster_ips, std::vector<net::IpAddr>{ip("fd00:10:96::1")});
    // ipFamilies says which; a clusterIP says it too.
    s = plan_service(one(svc(kPort + "  ipFamilies: [IPv6]\n")), {}, d, {});
    EXPECT_EQ(s.ip_families, std::vector<Family>{Family::kIp6});
    s = plan_service(one(svc(kPort + "  clusterIP: \"fd00:10:96::77\"\n")), {}, d, {});
    EXPECT_EQ(s.ip_families, std::vector<Family>{Family::kIp6});
    EXPECT_EQ(s.cluster_ips, std::vector<net::IpAddr>{ip("fd00:10:96::77")});
    // A family the cluster lacks.
    EXPECT_EQ(plan_error(one(svc(kPort + "  ipFamilies: [IPv6]\n")), single4()),
              "Service 'default/s': spec.ipFamilies[0]: Invalid value: \"IPv6\": IPv6 is not "
              "configured on this cluster");
    EXPECT_EQ(plan_error(one(svc(kPort + "  clusterIP: \"fd00:10:96::5\"\n")), single4()),
              "Service 'default/s': spec.clusterIPs[0]: Invalid value: \"fd00:10:96::5\": an IPv6 "
              "address, and IPv6 is not configured on this cluster");
}

TEST(FamilyPolicy, PreferDualStackTakesBothWhereThereAreBoth) {
    const std::string spec = kPort + "  ipFamilyPolicy: PreferDualStack\n";
    auto s = plan_service(one(svc(spec)), {}, ServiceConfig::defaults(), {});
    EXPECT_EQ(s.ip_families, (std::vector<Family>{Family::kIp4, Family::kIp6}));
    EXPECT_EQ(s.cluster_ips, (std::vector<net::IpAddr>{ip("10.96.0.1"), ip("fd00:10:96::1")}));
    // Order asked for kept: IPv6 primary.
    s = plan_service(one(svc(spec + "  ipFamilies: [IPv6, IPv4]\n")), {}, ServiceConfig::defaults(),
                     {});
    EXPECT_EQ(s.cluster_ips, (std::vector<net::IpAddr>{ip("fd00:10:96::1"), ip("10.96.0.1")}));
    // Single-stack cluster: one family, the secondary asked for dropped.
    s = plan_service(one(svc(spec + "  ipFamilies: [IPv4, IPv6]\n")), {}, single4(), {});
    EXPECT_EQ(s.ip_families, std::vector<Family>{Family::kIp4});
    EXPECT_EQ(s.cluster_ips.size(), 1u);
    s = plan_service(one(svc(spec)), {}, single6(), {});
    EXPECT_EQ(s.ip_families, std::vector<Family>{Family::kIp6});
}

TEST(FamilyPolicy, RequireDualStackTakesBothOrIsRefused) {
    const std::string spec = kPort + "  ipFamilyPolicy: RequireDualStack\n";
    auto s = plan_service(one(svc(spec)), {}, ServiceConfig::defaults(), {});
    EXPECT_EQ(s.ip_families, (std::vector<Family>{Family::kIp4, Family::kIp6}));
    EXPECT_EQ(plan_error(one(svc(spec)), single4()),
              "Service 'default/s': spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": "
              "this cluster is not configured for dual-stack services (service cluster IP "
              "ranges: 10.96.0.0/12)");
    // Two families or two addresses without a policy: RequireDualStack, as the API server.
    s = plan_service(one(svc(kPort + "  ipFamilies: [IPv6, IPv4]\n")), {},
                     ServiceConfig::defaults(), {});
    EXPECT_EQ(s.family_policy, FamilyPolicy::kRequireDualStack);
    EXPECT_EQ(s.ip_families, (std::vector<Family>{Family::kIp6, Family::kIp4}));
}

// The three example files, applied as Kubernetes would to a dual-stack cluster (the default
// configuration) and to IPv4-only and IPv6-only ones.
TEST(Examples, ApplyAsKubernetesDoes) {
    std::vector<Service> all;
    for (const char *f : {"services-ip-family-policies.yaml", "service-dual-stack.yaml",
                          "service-loadbalancer-ipv6.yaml"}) {
        for (const auto &r : parse_service_resources(read_example(f), f)) {
            all.push_back(r.service());
        }
    }
    ASSERT_EQ(all.size(), 4u);
    InUse used;
    std::vector<Service> planned;
    for (const auto &s : all) {
        planned.push_back(plan_service(s, {}, ServiceConfig::defaults(), used));
        for (const auto &a : planned.back().cluster_ips) {
            used.ips[a] = s.key();
        }
        for (const auto &p : planned.back().ports) {
            if (p.node_port) {
                used.node_ports[p.node_port] = s.key();
            }
        }
    }
    // ipv6-only-service: SingleStack IPv6.
    EXPECT_EQ(planned[0].cluster_ips, std::vector<net::IpAddr>{ip("fd00:10:96::1")});
    // require-dual-stack-service: IPv6 primary, then IPv4.
    EXPECT_EQ(planned[1].cluster_ips,
              (std::vector<net::IpAddr>{ip("fd00:10:96::2"), ip("10.96.0.1")}));
    // my-app: PreferDualStack, IPv6 primary.
    EXPECT_EQ(planned[2].key(), "production/my-app");
    EXPECT_EQ(planned[2].cluster_ips,
              (std::vector<net::IpAddr>{ip("fd00:10:96::3"), ip("10.96.0.2")}));
    EXPECT_EQ(planned[2].ports[0].node_port, 0);
    // public-app: LoadBalancer, both families, a NodePort per port.
    EXPECT_EQ(planned[3].ip_families, (std::vector<Family>{Family::kIp6, Family::kIp4}));
    EXPECT_EQ(planned[3].ports[0].node_port, 30000);
    EXPECT_EQ(planned[3].ports[1].node_port, 30001);

    // IPv4-only cluster: the IPv6-only service and RequireDualStack are refused, the
    // PreferDualStack ones get IPv4 alone.
    EXPECT_EQ(plan_error(all[0], single4()),
              "Service 'default/ipv6-only-service': spec.ipFamilies[0]: Invalid value: "
              "\"IPv6\": IPv6 is not configured on this cluster");
    EXPECT_NE(plan_error(all[1], single4()).find("not configured for dual-stack"),
              std::string::npos);
    // On an IPv4-only cluster, a PreferDualStack service asking IPv6 first: the primary
    // family must be there (the API server refuses it too).
    EXPECT_NE(plan_error(all[2], single4()).find("spec.ipFamilies[0]"), std::string::npos);
    // IPv6-only cluster: every one but RequireDualStack.
    EXPECT_EQ(plan_service(all[2], {}, single6(), {}).ip_families,
              std::vector<Family>{Family::kIp6});
    EXPECT_EQ(plan_service(all[0], {}, single6(), {}).cluster_ips.size(), 1u);
}

TEST(Allocation, RequestedClusterIpHonouredWhenFreeAndInRange) {
    const auto d = ServiceConfig::defaults();
    auto s = plan_service(one(svc(kPort + "  clusterIP: 10.96.5.5\n")), {}, d, {});
    EXPECT_EQ(s.cluster_ips, std::vector<net::IpAddr>{ip("10.96.5.5")});
    EXPECT_EQ(plan_error(one(svc(kPort + "  clusterIP: 10.200.0.1\n")), d),
              "Service 'default/s': spec.clusterIPs[0]: Invalid value: \"10.200.0.1\": provided "
              "IP is not in the valid range. The range of valid IPs is 10.96.0.0/12");
    // The network and broadcast addresses are not handed out.
    EXPECT_NE(plan_error(one(svc(kPort + "  clusterIP: 10.96.0.0\n")), d).find("not in the valid"),
              std::string::npos);
    EXPECT_NE(
        plan_error(one(svc(kPort + "  clusterIP: 10.111.255.255\n")), d).find("not in the valid"),
        std::string::npos);
    InUse u;
    u.ips[ip("10.96.5.5")] = "other/x";
    EXPECT_EQ(plan_error(one(svc(kPort + "  clusterIP: 10.96.5.5\n")), d, u),
              "Service 'default/s': spec.clusterIPs[0]: Invalid value: \"10.96.5.5\": provided IP "
              "is already allocated (to Service 'other/x')");
    // Allocation skips what others hold.
    u.ips[ip("10.96.0.1")] = "other/y";
    EXPECT_EQ(plan_service(one(svc(kPort)), {}, d, u).cluster_ips[0], ip("10.96.0.2"));
}

TEST(Allocation, ExhaustedRangesAreRefused) {
    ServiceConfig c;
    c.cluster_ip_ranges = {cidr("10.0.0.0/29")};  // .1 to .6
    c.node_port_min = 30000;
    c.node_port_max = 30001;
    InUse u;
    for (int i = 1; i <= 6; ++i) {
        auto s = plan_service(one(svc(kPort, "s" + std::to_string(i))), {}, c, u);
        EXPECT_EQ(s.cluster_ips[0].str(), "10.0.0." + std::to_string(i));
        u.ips[s.cluster_ips[0]] = s.key();
    }
    EXPECT_EQ(plan_error(one(svc(kPort, "s7")), c, u),
              "Service 'default/s7': spec.clusterIPs[0]: Internal error: failed to allocate a "
              "service IP: the range 10.0.0.0/29 is full");
    u.ips.clear();
    const std::string np =
        "  type: NodePort\n  ports:\n  - {name: a, port: 80}\n  - {name: b, "
        "port: 81}\n  - {name: c, port: 82}\n";
    EXPECT_EQ(plan_error(one(svc(np)), c, u),
              "Service 'default/s': spec.ports[2].nodePort: Internal error: failed to allocate a "
              "nodePort: the range 30000-30001 is full");
}

TEST(Allocation, NodePortsRequestedAllocatedAndRefused) {
    const auto d = ServiceConfig::defaults();
    const std::string np =
        "  type: NodePort\n  ports:\n  - {name: a, port: 80, nodePort: 30500}\n"
        "  - {name: b, port: 81}\n  - {name: c, port: 81, protocol: UDP}\n";
    auto s = plan_service(one(svc(np)), {}, d, {});
    EXPECT_EQ(s.ports[0].node_port, 30500);
    EXPECT_EQ(s.ports[1].node_port, 30000);
    EXPECT_EQ(s.ports[2].node_port, 30001);
    EXPECT_EQ(plan_error(one(svc("  type: NodePort\n  ports:\n  - {port: 80, nodePort: 80}\n")), d),
              "Service 'default/s': spec.ports[0].nodePort: Invalid value: 80: provided port is "
              "not in the valid range. The range of valid ports is 30000-32767");
    InUse u;
    u.node_ports[30500] = "other/x";
    EXPECT_EQ(plan_error(one(svc(np)), d, u),
              "Service 'default/s': spec.ports[0].nodePort: Invalid value: 30500: provided port "
              "is already allocated (to Service 'other/x')");
    // LoadBalancer: NodePorts unless allocateLoadBalancerNodePorts is false.
    auto lb = plan_service(one(svc(kPort + "  type: LoadBalancer\n")), {}, d, {});
    EXPECT_EQ(lb.ports[0].node_port, 30000);
    lb = plan_service(
        one(svc(kPort + "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n")), {}, d,
        {});
    EXPECT_EQ(lb.ports[0].node_port, 0);
    // ClusterIP: none.
    EXPECT_EQ(plan_service(one(svc(kPort)), {}, d, {}).ports[0].node_port, 0);
}

TEST(Allocation, ReapplyKeepsAddressesAndPortsImmutableFieldsRefused) {
    const auto d = ServiceConfig::defaults();
    const Service wanted =
        one(svc(kPort + "  type: NodePort\n  ipFamilyPolicy: PreferDualStack\n"));
    const Service first = plan_service(wanted, {}, d, {});
    InUse u;
    for (const auto &a : first.cluster_ips) {
        u.ips[a] = first.key();
    }
    u.node_ports[first.ports[0].node_port] = first.key();
    u.ips[ip("10.96.0.9")] = "other/x";
    // Unchanged: the same record, whatever else is free now.
    EXPECT_EQ(plan_service(wanted, first, d, u), first);
    // The file gives the address it has: fine; another one: refused.
    EXPECT_EQ(plan_service(one(svc(kPort + "  type: NodePort\n  clusterIP: 10.96.0.1\n  "
                                           "ipFamilyPolicy: PreferDualStack\n")),
                           first, d, u),
              first);
    EXPECT_EQ(plan_error(one(svc(kPort + "  clusterIP: 10.96.0.7\n")), d, u, first),
              "Service 'default/s': spec.clusterIPs[0]: Invalid value: \"10.96.0.7\": field is "
              "immutable (it is \"10.96.0.1\")");
    EXPECT_EQ(plan_error(one(svc(kPort + "  clusterIP: None\n")), d, u, first),
              "Service 'default/s': spec.clusterIPs[0]: Invalid value: \"None\": field is "
              "immutable (it is \"10.96.0.1\"; delete the service to change it)");
    EXPECT_EQ(plan_error(one(svc(kPort + "  ipFamilies: [IPv6]\n  ipFamilyPolicy: "
                                         "PreferDualStack\n")),
                         d, u, first),
              "Service 'default/s': spec.ipFamilies[0]: Invalid value: \"IPv6\": the primary IP "
              "family may not change (it is \"IPv4\")");
    // Down to SingleStack: the secondary goes; NodePort to ClusterIP: the port goes.
    auto down = plan_service(one(svc(kPort + "  ipFamilyPolicy: SingleStack\n")), first, d, u);
    EXPECT_EQ(down.cluster_ips, std::vector<net::IpAddr>{ip("10.96.0.1")});
    EXPECT_EQ(down.ports[0].node_port, 0);
    // Back up to dual stack with the primary kept.
    auto up = plan_service(one(svc(kPort + "  ipFamilyPolicy: RequireDualStack\n")), down, d, u);
    EXPECT_EQ(up.cluster_ips[0], ip("10.96.0.1"));
    EXPECT_EQ(up.cluster_ips.size(), 2u);
    // Headless stays headless when the file leaves clusterIP out.
    const Service h = plan_service(one(svc("  clusterIP: None\n  selector: {a: b}\n")), {}, d, {});
    EXPECT_TRUE(h.headless);
    EXPECT_TRUE(h.cluster_ips.empty());
    EXPECT_TRUE(plan_service(one(svc("  selector: {a: b}\n" + kPort)), h, d, {}).headless);
}

// ---- the registry ----

struct MemBackend {
    ipam::MemStore store;
};

struct EmbeddedBackend {
    fwd::test::TempDir dir{"fwd-svc-registry"};
    ipam::EmbeddedStore store{dir.path() + "/state", ipam::EmbeddedStore::Options{4u << 20, false}};
};

template <class Backend>
class RegistryTest : public ::testing::Test {
  protected:
    Backend b_;
    ServiceRegistry reg_{b_.store};
};
using Backends = ::testing::Types<MemBackend, EmbeddedBackend>;
class BackendNames {
  public:
    template <class T>
    static std::string GetName(int) {
        return std::is_same_v<T, MemBackend> ? "Memory" : "Embedded";
    }
};
TYPED_TEST_SUITE(RegistryTest, Backends, BackendNames);

EndpointSlice slice_of(const std::string &text) {
    return parse_service_resources(text, "t.yaml").at(0).slice();
}

const char *kSliceText = R"(apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s-1
  labels: {kubernetes.io/service-name: s}
addressType: IPv4
endpoints:
- addresses: [10.244.0.5]
  nodeName: n1
ports:
- port: 8080
)";

TYPED_TEST(RegistryTest, ApplyGetListRemove) {
    auto &reg = this->reg_;
    auto changes = reg.apply({one(svc(kPort + "  type: NodePort\n"))}, {slice_of(kSliceText)});
    ASSERT_EQ(changes.size(), 2u);
    EXPECT_EQ(changes[0].action, ServiceRegistry::Action::kCreate);
    const Service stored = std::get<Service>(changes[0].value);
    EXPECT_EQ(stored.cluster_ips, std::vector<net::IpAddr>{ip("10.96.0.1")});
    EXPECT_EQ(stored.ports[0].node_port, 30000);
    EXPECT_EQ(reg.get_service("default/s"), stored);
    EXPECT_EQ(reg.get_slice("default/s-1"), slice_of(kSliceText));
    EXPECT_TRUE(this->b_.store.get("/dpdk-fwd/services/v1/services/default/s"));
    EXPECT_EQ(this->b_.store.get("/dpdk-fwd/services/v1/clusterips/10.96.0.1")->value, "default/s");
    EXPECT_EQ(this->b_.store.get("/dpdk-fwd/services/v1/nodeports/30000")->value, "default/s");
    // Re-applied unchanged: nothing written.
    const int64_t rev = this->b_.store.revision();
    changes = reg.apply({one(svc(kPort + "  type: NodePort\n"))}, {slice_of(kSliceText)});
    EXPECT_EQ(changes[0].action, ServiceRegistry::Action::kUnchanged);
    EXPECT_EQ(changes[1].action, ServiceRegistry::Action::kUnchanged);
    EXPECT_EQ(this->b_.store.revision(), rev);
    // To ClusterIP: the NodePort is given back.
    changes = reg.apply({one(svc(kPort))}, {});
    EXPECT_EQ(changes[0].action, ServiceRegistry::Action::kUpdate);
    EXPECT_FALSE(this->b_.store.get("/dpdk-fwd/services/v1/nodeports/30000"));
    auto l = reg.list();
    EXPECT_EQ(l.services.size(), 1u);
    EXPECT_EQ(l.slices.size(), 1u);
    EXPECT_TRUE(l.refused.empty());
    EXPECT_EQ(l.revision, this->b_.store.revision());
    // A refused apply writes nothing.
    EXPECT_THROW(
        reg.apply({one(svc(kPort, "t")), one(svc(kPort + "  clusterIP: 10.96.0.1\n", "u"))}, {}),
        ServiceError);
    EXPECT_FALSE(reg.get_service("default/t"));
    // Delete: the addresses go with the service; an unknown one is refused.
    EXPECT_THROW(reg.remove({"default/nope"}, {}), ServiceError);
    changes = reg.remove({"default/s"}, {"default/s-1"});
    EXPECT_EQ(changes.size(), 2u);
    EXPECT_TRUE(this->b_.store.list("/dpdk-fwd/services/v1/clusterips/").empty());
    EXPECT_TRUE(reg.list().services.empty());
}

TYPED_TEST(RegistryTest, MalformedRecordsAreListedAsRefused) {
    auto &reg = this->reg_;
    reg.apply({one(svc(kPort, "good"))}, {});
    auto put = [&](const std::string &k, const std::string &v) {
        ASSERT_TRUE(this->b_.store.txn({}, {{ipam::Operation::Kind::kPut, k, v}}));
    };
    put("/dpdk-fwd/services/v1/services/default/junk", "{not json");
    put("/dpdk-fwd/services/v1/services/default/wrong",
        nlohmann::json(*reg.get_service("default/good")).dump());
    nlohmann::json bad = *reg.get_service("default/good");
    bad["metadata"]["name"] = "bad";
    bad["spec"]["ports"][0]["protocol"] = "ICMP";
    put("/dpdk-fwd/services/v1/services/default/bad", bad.dump());
    put("/dpdk-fwd/services/v1/endpointslices/default/e", "[]");
    auto l = reg.list();
    ASSERT_EQ(l.services.size(), 1u);
    EXPECT_EQ(l.services[0].name, "good");
    ASSERT_EQ(l.refused.size(), 4u);
    EXPECT_EQ(l.refused[0].first, "/dpdk-fwd/services/v1/endpointslices/default/e");
    EXPECT_EQ(l.refused[1].second,
              "Service 'default/bad': spec.ports[0].protocol: Unsupported value: \"ICMP\": "
              "supported values: \"SCTP\", \"TCP\", \"UDP\"");
    EXPECT_NE(l.refused[2].second.find("not JSON"), std::string::npos);
    EXPECT_EQ(l.refused[3].second,
              "Service 'default/wrong': metadata: the record under this key "
              "is Service 'default/good'");
}

TYPED_TEST(RegistryTest, ConfigIsSettableAndGuardsAllocations) {
    auto &reg = this->reg_;
    EXPECT_EQ(reg.config(), ServiceConfig::defaults());
    ServiceConfig c;
    c.cluster_ip_ranges = {cidr("10.0.0.0/24")};
    c.node_port_min = 31000;
    c.node_port_max = 31010;
    reg.set_config(c);
    EXPECT_EQ(reg.config(), c);
    auto ch = reg.apply({one(svc(kPort + "  type: NodePort\n"))}, {});
    const Service &s = std::get<Service>(ch[0].value);
    EXPECT_EQ(s.cluster_ips[0], ip("10.0.0.1"));
    EXPECT_EQ(s.ports[0].node_port, 31000);
    // A range that leaves an allocation out is refused.
    ServiceConfig narrower = c;
    narrower.cluster_ip_ranges = {cidr("10.0.1.0/24")};
    // (a conflict with what the store holds, not a malformed value: fwdctl exits 1, not 2)
    EXPECT_THROW(reg.set_config(narrower), ipam::ConflictError);
    narrower = c;
    narrower.node_port_min = 31001;
    EXPECT_THROW(reg.set_config(narrower), ipam::ConflictError);
    EXPECT_EQ(reg.config(), c);
}

// Two writers, each with its own registry (and its own store handle where the store has
// them), applying services at once: no address and no port handed out twice.
void race(const std::function<std::unique_ptr<ipam::Store>()> &open, ipam::Store &check) {
    constexpr int kPerWriter = 40;
    std::atomic<int> failures{0}, ready{0};
    auto writer = [&](int w) {
        auto own = open();  // null: share `check` (the in-memory store)
        ServiceRegistry reg(own ? *own : check);
        // Both start at once, so that their plans overlap.
        ++ready;
        while (ready.load() < 2) {
        }
        for (int i = 0; i < kPerWriter; ++i) {
            try {
                reg.apply({one(svc("  type: NodePort\n  ipFamilyPolicy: PreferDualStack\n" + kPort,
                                   "w" + std::to_string(w) + "-" + std::to_string(i)))},
                          {});
            } catch (const std::exception &e) {
                ADD_FAILURE() << e.what();
                ++failures;
            }
        }
    };
    std::thread t1(writer, 1), t2(writer, 2);
    t1.join();
    t2.join();
    EXPECT_EQ(failures.load(), 0);
    ServiceRegistry reg(check);
    auto l = reg.list();
    ASSERT_EQ(l.services.size(), 2u * kPerWriter);
    std::set<net::IpAddr> ips;
    std::set<uint16_t> ports;
    for (const auto &s : l.services) {
        ASSERT_EQ(s.cluster_ips.size(), 2u);
        for (const auto &a : s.cluster_ips) {
            EXPECT_TRUE(ips.insert(a).second) << a.str() << " handed out twice";
            EXPECT_EQ(check.get("/dpdk-fwd/services/v1/clusterips/" + a.str())->value, s.key());
        }
        EXPECT_TRUE(ports.insert(s.ports[0].node_port).second);
    }
    EXPECT_EQ(check.list("/dpdk-fwd/services/v1/clusterips/").size(), ips.size());
    EXPECT_EQ(check.list("/dpdk-fwd/services/v1/nodeports/").size(), ports.size());
}

TEST(RegistryRace, TwoWritersMemory) {
    ipam::MemStore s;
    race([&] { return std::unique_ptr<ipam::Store>(); }, s);
}

TEST(RegistryRace, TwoWritersEmbedded) {
    fwd::test::TempDir dir("fwd-svc-race");
    const std::string path = dir.path() + "/state";
    ipam::EmbeddedStore check(path, ipam::EmbeddedStore::Options{4u << 20, false});
    race(
        [&] {
            return std::make_unique<ipam::EmbeddedStore>(
                path, ipam::EmbeddedStore::Options{4u << 20, false});
        },
        check);
}

TEST(RegistryRace, TwoWritersEtcd) {
    std::unique_ptr<ipam::test::EtcdServer> etcd;
    try {
        etcd = std::make_unique<ipam::test::EtcdServer>();
    } catch (const std::exception &e) {
        FAIL() << "etcd is required for this test: " << e.what();
    }
    auto open = [&] {
        ipam::EtcdStore::Options o;
        o.endpoints = {etcd->endpoint()};
        return std::make_unique<ipam::EtcdStore>(o);
    };
    auto check = open();
    race([&] { return std::unique_ptr<ipam::Store>(open()); }, *check);
}

}  // namespace
}  // namespace fwd::svc
