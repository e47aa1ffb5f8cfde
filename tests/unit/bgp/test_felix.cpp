// FelixConfiguration (issue 18, fwd/control/felix.hpp): ../shared/examples/felix-configuration.yaml
// decoded with a warning per field that does not apply here; every refusal names the document,
// the resource and the field; the default and a node's resource merged field by field; the
// registry it shares with the BGP kinds.
#include <gtest/gtest.h>

#include <algorithm>

#include "fwd/control/bgp.hpp"
#include "fwd/control/felix.hpp"
#include "fwd/ipam/mem_store.hpp"
#include "resources.hpp"

namespace fwd::felix {
namespace {

using bgp::Decoded;

using bgp::test_util::decode;
using bgp::test_util::read;
using bgp::test_util::refusal;

std::string doc(const std::string &name, const std::string &spec) {
    return "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: " + name +
           "}\nspec: " + spec + "\n";
}

TEST(FelixConfiguration, ExampleAppliesWithAWarningPerUnsupportedField) {
    const auto ds = decode(read(FWD_EXAMPLES_DIR "/felix-configuration.yaml"));
    ASSERT_EQ(ds.size(), 1u);
    const auto &c = std::get<FelixConfiguration>(ds[0].value);
    EXPECT_EQ(c.name, "default");
    EXPECT_EQ(c.log_severity, "Info");
    EXPECT_EQ(c.health_enabled, true);
    EXPECT_EQ(c.health_host, "");  // "::": every address, IPv4 and IPv6
    EXPECT_EQ(c.health_port, 9099);
    EXPECT_EQ(c.metrics_enabled, true);
    EXPECT_EQ(c.metrics_port, 9091);
    ASSERT_TRUE(c.failsafe_in.has_value());
    EXPECT_EQ(*c.failsafe_in,
              (std::vector<ProtoPort>{{"TCP", 22, ""}, {"TCP", 179, ""}, {"TCP", 6443, ""}}));
    EXPECT_EQ(c.failsafe_out->size(), 3u);
    EXPECT_EQ((*c.failsafe_out)[1], (ProtoPort{"UDP", 53, ""}));
    // flowLogsFlushInterval, mtu, iptablesBackend: named, with what to do instead
    std::vector<std::string> fields;
    for (const auto &w : ds[0].warnings) {
        fields.push_back(w.field);
        EXPECT_NE(w.str().find("FelixConfiguration 'default'"), std::string::npos) << w.str();
        EXPECT_NE(w.str().find("not supported by dpdk-fwd"), std::string::npos) << w.str();
    }
    std::sort(fields.begin(), fields.end());
    EXPECT_EQ(fields, (std::vector<std::string>{"spec.flowLogsFlushInterval",
                                                "spec.iptablesBackend", "spec.mtu"}));
}

TEST(FelixConfiguration, RefusalsNameDocumentResourceAndField) {
    struct Case {
        std::string spec, want;
    };
    const std::vector<Case> cases = {
        {"{healthPort: 0}", "spec.healthPort: Invalid value: 0: must be between 1 and 65535"},
        {"{prometheusMetricsPort: 70000}", "spec.prometheusMetricsPort: Invalid value: 70000"},
        {"{prometheusMetricsPort: \"9091\"}", "spec.prometheusMetricsPort: want an integer"},
        {"{healthEnabled: yes-please}", "spec.healthEnabled: want true or false"},
        {"{healthHost: node1.example}",
         "spec.healthHost: Invalid value: \"node1.example\": not an IP address"},
        {"{logSeverityScreen: Loud}", "spec.logSeverityScreen: Unsupported value: \"Loud\""},
        {"{natPortRange: \"2000:1000\"}", "spec.natPortRange: Invalid value: \"2000:1000\""},
        {"{natPortRange: \"1000-2000\"}", "spec.natPortRange: Invalid value: \"1000-2000\""},
        {"{vxlanPort: 0}", "spec.vxlanPort: Invalid value: 0: must be between 1 and 65535"},
        {"{vxlanPort: 65536}", "spec.vxlanPort: Invalid value: 65536: must be between 1 and 65535"},
        {"{vxlanPort: -4789}", "spec.vxlanPort: Invalid value: -4789"},
        {"{vxlanPort: \"4790\"}", "spec.vxlanPort: want an integer"},
        {"{vxlanVNI: 16777216}", "spec.vxlanVNI: Invalid value: 16777216"},
        {"{vxlanMTU: 100}", "spec.vxlanMTU: Invalid value: 100"},
        {"{vxlanMTUV6: 1200}", "spec.vxlanMTUV6: Invalid value: 1200: must be between 1280"},
        {"{ipv6Support: false}", "spec.ipv6Support: Forbidden: IPv6 is always on"},
        {"{failsafeInboundHostPorts: [{protocol: icmp, port: 1}]}",
         "spec.failsafeInboundHostPorts[0].protocol: Unsupported value: \"icmp\""},
        {"{failsafeInboundHostPorts: [{protocol: tcp}]}",
         "spec.failsafeInboundHostPorts[0].port: Required value"},
        {"{failsafeOutboundHostPorts: [{port: 53, net: 10.0.0.0/33}]}",
         "spec.failsafeOutboundHostPorts[0].net: Invalid value: \"10.0.0.0/33\""},
        {"{failsafeOutboundHostPorts: [{port: 53, bogus: 1}]}",
         "spec.failsafeOutboundHostPorts[0].bogus: unknown field"},
        {"{prometheusMetricPort: 9091}", "spec.prometheusMetricPort: unknown field"},
    };
    for (const auto &c : cases) {
        const std::string e = refusal("---\n" + doc("default", c.spec));
        EXPECT_NE(e.find(c.want), std::string::npos) << c.spec << " -> " << e;
        EXPECT_NE(e.find("FelixConfiguration 'default'"), std::string::npos) << e;
        EXPECT_NE(e.find("document 1"), std::string::npos) << e;
    }
    EXPECT_NE(refusal(doc("Bad_Name", "{}")).find("metadata.name"), std::string::npos);
    EXPECT_NE(refusal(doc("default", "{}") + "---\n" + doc("default", "{}"))
                  .find("FelixConfiguration 'default' is defined twice"),
              std::string::npos);
}

TEST(FelixConfiguration, AcceptedForms) {
    const auto ds = decode(doc("node.n1",
                               "{natPortRange: \"32768:65535\", logSeverityScreen: "
                               "debug, vxlanPort: 8472, vxlanVNI: 5000, vxlanMTU: "
                               "1400, vxlanMTUV6: 1380, prometheusMetricsHost: "
                               "\"fd00::1\", healthHost: localhost, ipv6Support: true, "
                               "failsafeInboundHostPorts: [{port: 22, net: "
                               "\"fd00::/64\"}]}") +
                           "---\n" + doc("x", "{natPortRange: 1024}"));
    const auto &c = std::get<FelixConfiguration>(ds[0].value);
    EXPECT_EQ(c.nat_port_range, (PortRange{32768, 65535}));
    EXPECT_EQ(c.log_severity, "Debug");  // Calico's pattern is case-insensitive
    EXPECT_EQ(log_level_of(*c.log_severity), "debug");
    EXPECT_EQ(c.vxlan_vni, 5000u);
    EXPECT_EQ(c.vxlan_port, 8472);  // any UDP port (Linux's own VXLAN default here)
    for (const char *port : {"1", "4789", "65535"}) {
        const auto one = decode(doc("default", std::string("{vxlanPort: ") + port + "}"));
        EXPECT_EQ(std::get<FelixConfiguration>(one[0].value).vxlan_port, std::stoi(port));
        EXPECT_TRUE(one[0].warnings.empty());
    }
    EXPECT_EQ(c.metrics_host, "fd00::1");
    EXPECT_EQ(c.health_host, "localhost");
    EXPECT_EQ((*c.failsafe_in)[0], (ProtoPort{"TCP", 22, "fd00::/64"}));  // TCP by default
    EXPECT_TRUE(ds[0].warnings.empty());
    EXPECT_EQ(std::get<FelixConfiguration>(ds[1].value).nat_port_range, (PortRange{1024, 1024}));
    // a name no node reads is said
    ASSERT_EQ(ds[1].warnings.size(), 1u);
    EXPECT_EQ(ds[1].warnings[0].field, "metadata.name");
    EXPECT_EQ(log_level_of("Warning"), "warn");
    EXPECT_EQ(log_level_of("Fatal"), "critical");
}

TEST(FelixConfiguration, NodeResourceWinsFieldByField) {
    std::vector<FelixConfiguration> cs;
    for (const auto &d : decode(doc("default",
                                    "{logSeverityScreen: Warning, healthPort: 9099, "
                                    "natPortRange: \"1000:2000\", vxlanPort: 4790}") +
                                "---\n" + doc("node.n1", "{healthPort: 9199, vxlanPort: 4791}") +
                                "---\n" + doc("node.n2", "{logSeverityScreen: Debug}"))) {
        cs.push_back(std::get<FelixConfiguration>(d.value));
    }
    const FelixConfiguration n1 = effective(cs, "n1");
    EXPECT_EQ(n1.log_severity, "Warning");
    EXPECT_EQ(n1.health_port, 9199);
    EXPECT_EQ(n1.nat_port_range, (PortRange{1000, 2000}));
    EXPECT_EQ(n1.vxlan_port, 4791);
    EXPECT_EQ(effective(cs, "n2").vxlan_port, 4790);
    EXPECT_EQ(effective(cs, "n2").log_severity, "Debug");
    EXPECT_EQ(effective(cs, "n2").health_port, 9099);
    EXPECT_EQ(to_json(effective(cs, "n3")), (nlohmann::json{{"logSeverityScreen", "Warning"},
                                                            {"healthPort", 9099},
                                                            {"natPortRange", "1000:2000"},
                                                            {"vxlanPort", 4790}}));
    EXPECT_FALSE(effective({}, "n1").log_severity.has_value());
}

TEST(FelixConfiguration, StoredBesideTheBgpKinds) {
    ipam::MemStore store;
    bgp::BgpRegistry reg(store);
    const auto ds = decode(read(FWD_EXAMPLES_DIR "/felix-configuration.yaml"));
    auto plan = reg.plan_apply(ds);
    ASSERT_EQ(plan.changes.size(), 1u);
    EXPECT_EQ(plan.changes[0].key, "/dpdk-fwd/bgp/v1/felixconfigurations/default");
    EXPECT_EQ(plan.changes[0].kind, "FelixConfiguration");
    ASSERT_TRUE(reg.commit(plan));
    EXPECT_EQ(reg.plan_apply(ds).changes[0].action, bgp::BgpRegistry::Action::kUnchanged);
    auto l = reg.list();
    ASSERT_EQ(l.felix.size(), 1u);
    EXPECT_EQ(l.felix[0], std::get<FelixConfiguration>(ds[0].value));
    EXPECT_TRUE(l.configs.empty());
    EXPECT_TRUE(l.refused.empty());
    ASSERT_TRUE(reg.commit(reg.plan_delete(ds)));
    EXPECT_TRUE(reg.list().felix.empty());
}

}  // namespace
}  // namespace fwd::felix
