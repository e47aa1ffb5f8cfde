// BGP configured the Calico way (issue 19): the resources (../shared/examples/bgp-*.yaml and
// every refusal, in Calico's words, naming the document and field), their registry, and the
// BIRD configuration generated for a node: mesh, route reflectors, selectors, external peers,
// IPv4 and IPv6, service advertisement, communities, passwords. Every generated file is parsed
// by BIRD itself (`bird -p -c FILE`).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "fwd/control/bgp.hpp"
#include "fwd/ipam/document.hpp"
#include "fwd/ipam/mem_store.hpp"
#include "fwd/ipam/node.hpp"
#include "resources.hpp"
#include "temp_dir.hpp"

namespace fwd::bgp {
namespace {

using ipam::NodeRecord;

using test_util::decode;
using test_util::read;
using test_util::refusal;

NodeRecord node(const std::string &name, const std::string &v4, const std::string &v6,
                std::map<std::string, std::string> labels = {}, std::string rr = "") {
    NodeRecord n;
    n.name = name;
    if (!v4.empty()) {
        n.ipv4 = ipam::IfAddr::parse(v4);
    }
    if (!v6.empty()) {
        n.ipv6 = ipam::IfAddr::parse(v6);
    }
    n.labels = std::move(labels);
    n.rr_cluster_id = std::move(rr);
    return n;
}

// Three dual-stack nodes on one subnet, as the lab's BGP profile.
std::vector<NodeRecord> three_nodes() {
    return {node("node1", "10.10.10.10/24", "fd00:10:10::10/64"),
            node("node2", "10.10.10.11/24", "fd00:10:10::11/64"),
            node("node3", "10.10.10.12/24", "fd00:10:10::12/64")};
}

template <typename T>
std::vector<T> all_of(const std::vector<Decoded> &ds) {
    std::vector<T> out;
    for (const auto &d : ds) {
        if (const auto *x = std::get_if<T>(&d.value)) {
            out.push_back(*x);
        }
    }
    return out;
}

Cluster cluster(std::vector<NodeRecord> nodes, const std::string &yaml = "") {
    Cluster c;
    c.nodes = std::move(nodes);
    c.pools = {*ipam::Cidr::parse("192.168.0.0/16"), *ipam::Cidr::parse("fd00:10:244::/48")};
    if (!yaml.empty()) {
        auto ds = decode(yaml);
        c.configs = all_of<BgpConfiguration>(ds);
        c.peers = all_of<BgpPeer>(ds);
        for (const auto &s : all_of<Secret>(ds)) {
            c.secrets[s.ns + "/" + s.name] = s;
        }
    }
    return c;
}

class BirdParse : public ::testing::Test {
  protected:
    void SetUp() override {
        include_ = dir_.path() + "/ipam.conf";
        std::ofstream(include_) << "protocol static fwd_ipam4 {\n  ipv4;\n  route 192.168.0.0/26 "
                                   "blackhole;\n}\nprotocol static fwd_ipam6 {\n  ipv6;\n  route "
                                   "fd00:10:244::/122 blackhole;\n}\n";
    }

    // Generates node's config and has BIRD parse it; fails the test when BIRD refuses it.
    BirdConfig gen(const Cluster &c, const std::string &node_name) {
        BirdOptions o;
        o.node = node_name;
        o.ipam_include = include_;
        BirdConfig out = generate_bird_config(c, o);
        const std::string file =
            dir_.path() + "/" + node_name + "-" + std::to_string(n_++) + ".conf";
        std::ofstream(file) << out.text;
        const std::string cmd = "/usr/sbin/bird -p -c " + file + " > " + file + ".out 2>&1";
        EXPECT_EQ(std::system(cmd.c_str()), 0) << "bird -p refused " << file << ":\n"
                                               << read(file + ".out") << "\n"
                                               << out.text;
        return out;
    }

    static std::map<std::string, Session> by_protocol(const BirdConfig &c) {
        std::map<std::string, Session> m;
        for (const auto &s : c.sessions) {
            m[s.protocol] = s;
        }
        return m;
    }

    test::TempDir dir_{"fwd-bgp"};
    std::string include_;
    int n_ = 0;
};

// ---- the resources ----

TEST(BgpResources, ExampleConfigurationRefusedAsCalicoDoes) {
    // The guide's file has communities and no prefixAdvertisements: Calico's validator
    // refuses exactly that.
    const std::string e = refusal(read(FWD_EXAMPLES_DIR "/bgp-configuration.yaml"));
    EXPECT_NE(e.find("BGPConfiguration 'default'"), std::string::npos) << e;
    EXPECT_NE(e.find("spec.communities: communities are defined but not used in "
                     "Spec.PrefixAdvertisement[]."),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("document 1"), std::string::npos) << e;
}

TEST(BgpResources, ExampleConfigurationWithAdvertisement) {
    std::string text = read(FWD_EXAMPLES_DIR "/bgp-configuration.yaml");
    text +=
        "  prefixAdvertisements:\n    - cidr: fd00:10:96::/112\n      communities: [internal, "
        "\"64512:200\"]\n";
    const auto ds = decode(text);
    ASSERT_EQ(ds.size(), 1u);
    const auto &c = std::get<BgpConfiguration>(ds[0].value);
    EXPECT_EQ(c.as_number, 64512u);
    EXPECT_EQ(c.node_to_node_mesh, true);
    EXPECT_EQ(c.listen_port, 179);
    EXPECT_EQ(c.log_severity, "Info");
    ASSERT_EQ(c.service_cluster_ips.size(), 1u);
    EXPECT_EQ(c.service_cluster_ips[0].str(), "fd00:10:96::/112");
    EXPECT_EQ(c.service_external_ips[0].str(), "2001:db8:ff::/48");
    ASSERT_EQ(c.prefix_advertisements.size(), 1u);
    EXPECT_EQ(c.prefix_advertisements[0].communities,
              (std::vector<std::string>{"64512:100", "64512:200"}));
}

TEST(BgpResources, ExamplePeersBothFiles) {
    const auto ext = decode(read(FWD_EXAMPLES_DIR "/bgp-peer-external.yaml"));
    ASSERT_EQ(ext.size(), 1u);
    const auto &p = std::get<BgpPeer>(ext[0].value);
    EXPECT_EQ(p.peer_ip->str(), "2001:db8:dc::1");
    EXPECT_EQ(p.as_number, 64513u);
    EXPECT_EQ(p.node_selector.text, "border-router == \"true\"");
    EXPECT_EQ(p.keepalive_s, 30u);
    EXPECT_EQ(p.hold_s, 90u);
    const auto rr = decode(read(FWD_EXAMPLES_DIR "/bgp-route-reflectors.yaml"));
    ASSERT_EQ(rr.size(), 3u);
    EXPECT_EQ(std::get<BgpConfiguration>(rr[0].value).node_to_node_mesh, false);
    EXPECT_EQ(std::get<BgpPeer>(rr[1].value).peer_selector.text, "route-reflector == \"true\"");
    EXPECT_EQ(rr[2].origin.document, 3);
}

TEST(BgpResources, BothApiVersions) {
    for (const char *api : {"projectcalico.org/v3", "crd.projectcalico.org/v1"}) {
        EXPECT_EQ(refusal(std::string("apiVersion: ") + api +
                          "\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, "
                          "asNumber: 65000}\n"),
                  "");
    }
    const std::string e =
        refusal("apiVersion: projectcalico.org/v2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {}\n");
    EXPECT_NE(e.find("apiVersion: unknown apiVersion 'projectcalico.org/v2' for BGPPeer (want "
                     "projectcalico.org/v3 or crd.projectcalico.org/v1)"),
              std::string::npos)
        << e;
}

TEST(BgpResources, RefusalsNameDocumentAndField) {
    const std::string head =
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\n";
    struct Case {
        std::string spec, want;
    };
    const std::vector<Case> cases = {
        {"{peerIP: 10.0.0.1, peerSelector: all()}",
         "spec.peerIP: PeerIP field must be empty when PeerSelector is specified"},
        {"{asNumber: 65000, peerSelector: all()}",
         "spec.asNumber: ASNumber field must be empty when PeerSelector is specified"},
        {"{node: n1, nodeSelector: all(), peerIP: 10.0.0.1, asNumber: 1}",
         "spec.node: Node field must be empty when NodeSelector is specified"},
        {"{peerSelector: \"a ==\"}",
         "spec.peerSelector: Invalid value: \"a ==\": invalid selector"},
        {"{peerIP: 10.0.0.300, asNumber: 1}", "spec.peerIP: Invalid value: \"10.0.0.300\""},
        {"{peerIP: \"[fd00::1]:1790\"}", "spec.asNumber: Required value"},
        {"{peerIP: 10.0.0.1, asNumber: 0}", "spec.asNumber: Invalid value: 0"},
        {"{peerIP: 10.0.0.1, asNumber: 1, keepaliveTime: 40s, holdTime: 90s}",
         "spec.keepaliveTime: keepaliveTime 40s must be <= holdTime/3 (30s)"},
        {"{peerIP: 10.0.0.1, asNumber: 1, holdTime: 2s}", "spec.holdTime: Invalid value: \"2s\""},
        {"{peerIP: 10.0.0.1, asNumber: 1, holdTime: soon}",
         "spec.holdTime: Invalid value: \"soon\""},
        {"{peerIP: 10.0.0.1, asNumber: 1, bogus: 1}", "spec.bogus: unknown field"},
        {"{peerIP: 10.0.0.1, asNumber: 1, sourceAddress: Any}",
         "spec.sourceAddress: Unsupported value: \"Any\""},
        {"{peerIP: 10.0.0.1, asNumber: 1, password: {secretKeyRef: {name: s}}}",
         "spec.password.secretKeyRef.key: Required value"},
        {"{}", "spec.peerIP: Required value"},
    };
    for (const auto &c : cases) {
        const std::string e = refusal("---\n" + head + "spec: " + c.spec + "\n");
        EXPECT_NE(e.find(c.want), std::string::npos) << c.spec << " -> " << e;
        EXPECT_NE(e.find("BGPPeer 'p'"), std::string::npos) << e;
    }
    const std::string cfg = "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\n";
    const std::vector<Case> configs = {
        {"metadata: {name: default}\nspec: {listenPort: 0}",
         "spec.listenPort: Invalid value: 0: must be between 1 and 65535"},
        {"metadata: {name: default}\nspec: {logSeverityScreen: Loud}",
         "spec.logSeverityScreen: Unsupported value: \"Loud\""},
        {"metadata: {name: default}\nspec: {serviceClusterIPs: [{cidr: 10.96.0.1/12}]}",
         "spec.serviceClusterIPs[0].cidr: Invalid value: \"10.96.0.1/12\""},
        {"metadata: {name: default}\nspec: {communities: [{name: a, value: \"70000:1\"}], "
         "prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [a]}]}",
         "spec.communities[0].value: Invalid value: \"70000:1\""},
        {"metadata: {name: default}\nspec: {prefixAdvertisements: [{cidr: 10.0.0.0/8, "
         "communities: [nope]}]}",
         "spec.prefixAdvertisements[0].communities[0]: Invalid value: \"nope\": community used "
         "is invalid or not defined."},
        {"metadata: {name: node.node1}\nspec: {asNumber: 65000}",
         "spec.asNumber: Forbidden: can only be set on the default BGPConfiguration"},
        {"metadata: {name: default}\nspec: {nodeToNodeMeshEnabled: false, nodeMeshPassword: "
         "{secretKeyRef: {name: s, key: k}}}",
         "spec.nodeMeshPassword: Forbidden: requires nodeToNodeMeshEnabled"},
        {"metadata: {name: default}\nspec: {asNumber: \"1.70000\"}",
         "spec.asNumber: Invalid value: \"1.70000\""},
    };
    for (const auto &c : configs) {
        const std::string e = refusal(cfg + c.spec + "\n");
        EXPECT_NE(e.find(c.want), std::string::npos) << c.spec << " -> " << e;
    }
    // The document number of the bad one in a file of three.
    const std::string e = refusal(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: calico-system}\n"
        "stringData: {k: pw}\n---\n" +
        head + "spec: {peerIP: 10.0.0.1, asNumber: 1}\n---\n" + head +
        "spec: {peerIP: 10.0.0.2, asNumber: 1}\n");
    EXPECT_NE(e.find("document 3"), std::string::npos) << e;
    EXPECT_NE(e.find("defined twice"), std::string::npos) << e;
}

TEST(BgpResources, SecretDataAndStringData) {
    const auto ds = decode(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp-secrets, namespace: calico-system}\n"
        "data: {router-password: c2VjcmV0, other: YQ==}\nstringData: {plain: text}\n");
    const auto &s = std::get<Secret>(ds[0].value);
    EXPECT_EQ(s.data.at("router-password"), "secret");
    EXPECT_EQ(s.data.at("other"), "a");
    EXPECT_EQ(s.data.at("plain"), "text");
    const std::string e =
        refusal("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: \"not base64!\"}\n");
    EXPECT_NE(e.find("data[k]: Invalid value"), std::string::npos) << e;
}

TEST(BgpResources, RegistryAppliesWholeAndKeepsUnchanged) {
    ipam::MemStore store;
    BgpRegistry reg(store);
    const auto ds = decode(read(FWD_EXAMPLES_DIR "/bgp-route-reflectors.yaml"));
    auto plan = reg.plan_apply(ds);
    ASSERT_EQ(plan.changes.size(), 3u);
    EXPECT_EQ(plan.changes[0].action, BgpRegistry::Action::kCreate);
    ASSERT_TRUE(reg.commit(plan));
    auto again = reg.plan_apply(ds);
    for (const auto &c : again.changes) {
        EXPECT_EQ(c.action, BgpRegistry::Action::kUnchanged);
    }
    // A plan made before another writer's change of the same resource writes nothing.
    auto config = [](const std::string &spec) {
        return decode(
            "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: "
            "{name: default}\nspec: " +
            spec + "\n");
    };
    auto stale = reg.plan_apply(config("{nodeToNodeMeshEnabled: true}"));
    ASSERT_TRUE(
        reg.commit(reg.plan_apply(config("{nodeToNodeMeshEnabled: false, asNumber: 65000}"))));
    EXPECT_FALSE(reg.commit(stale));
    ASSERT_TRUE(reg.commit(reg.plan_delete({ds[1]})));
    const auto l = reg.list();
    ASSERT_EQ(l.configs.size(), 1u);
    EXPECT_EQ(l.configs[0].node_to_node_mesh, false);
    EXPECT_EQ(l.configs[0].as_number, 65000u);
    EXPECT_EQ(l.peers.size(), 1u);
    EXPECT_TRUE(l.refused.empty());
    // Deleting what is not there names it.
    try {
        reg.plan_delete({ds[1]});
        FAIL() << "deleted a missing peer";
    } catch (const ipam::ResourceError &e) {
        EXPECT_NE(std::string(e.what()).find("BGPPeer 'peer-with-route-reflectors' not found"),
                  std::string::npos)
            << e.what();
    }
}

TEST(BgpResources, NodeRecordCarriesAsAndClusterId) {
    ipam::MemStore store;
    ipam::NodeRegistry reg(store);
    NodeRecord n = node("node1", "10.10.10.10/24", "fd00:10:10::10/64", {{"zone", "a"}});
    reg.put(n);
    reg.update("node1", [](NodeRecord &r) {
        r.labels["route-reflector"] = "true";
        r.rr_cluster_id = "244.0.0.1";
        r.as_number = 64512;
        r.ipv4 = ipam::IfAddr::parse("10.9.9.9/24");  // not the user's: kept as stored
    });
    // The node registering itself again keeps what the user set.
    reg.put(n, ipam::NodeRegistry::Merge::kKeepUserFields);
    const auto got = reg.get("node1");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->rr_cluster_id, "244.0.0.1");
    EXPECT_EQ(got->as_number, 64512u);
    EXPECT_EQ(got->labels.at("route-reflector"), "true");
    EXPECT_EQ(got->labels.at("zone"), "a");
    EXPECT_EQ(got->ipv4->str(), "10.10.10.10/24");
    EXPECT_THROW(reg.update("node1", [](NodeRecord &r) { r.rr_cluster_id = "fd00::1"; }),
                 ipam::NodeError);
    EXPECT_THROW(reg.update("nobody", [](NodeRecord &) {}), ipam::NodeError);
    // Calico's JSON both ways.
    const nlohmann::json j = *got;
    EXPECT_EQ(j["spec"]["bgp"]["routeReflectorClusterID"], "244.0.0.1");
    EXPECT_EQ(j["spec"]["bgp"]["asNumber"], 64512);
    EXPECT_EQ(j.get<NodeRecord>(), *got);
}

// ---- the generated BIRD configuration ----

TEST_F(BirdParse, FullMeshDualStack) {
    const auto c = cluster(three_nodes());
    const auto out = gen(c, "node2");
    const auto s = by_protocol(out);
    ASSERT_EQ(out.sessions.size(), 4u);
    ASSERT_TRUE(s.contains("Peer_10_10_10_10"));
    ASSERT_TRUE(s.contains("Peer_fd00_10_10__12"));
    EXPECT_FALSE(s.at("Peer_10_10_10_10").passive);  // node2 connects to the lower one
    EXPECT_TRUE(s.at("Peer_10_10_10_12").passive);
    EXPECT_EQ(s.at("Peer_10_10_10_12").as_number, 64512u);
    EXPECT_EQ(out.router_id, "10.10.10.11");
    EXPECT_NE(out.text.find("local 10.10.10.11 as 64512;"), std::string::npos);
    EXPECT_NE(out.text.find("neighbor fd00:10:10::10 as 64512;"), std::string::npos);
    EXPECT_NE(out.text.find("direct;"), std::string::npos);
    EXPECT_EQ(out.text.find("rr client"), std::string::npos);
    EXPECT_EQ(out.text.find("fwd_svc"), std::string::npos);  // no services unless configured
    EXPECT_NE(out.text.find("include \"" + include_ + "\";"), std::string::npos);
    EXPECT_NE(out.text.find("protocol kernel fwd_kernel6"), std::string::npos);
}

TEST_F(BirdParse, RouteReflectorsMeshOff) {
    auto nodes = three_nodes();
    nodes.push_back(node("node4", "10.10.10.13/24", "fd00:10:10::13/64"));
    for (int i : {0, 1}) {
        nodes[i].labels["route-reflector"] = "true";
        nodes[i].rr_cluster_id = "244.0.0.1";
    }
    const auto c = cluster(nodes, read(FWD_EXAMPLES_DIR "/bgp-route-reflectors.yaml"));
    // A client: the two reflectors only, IPv4 and IPv6, no mesh, not a reflector itself.
    const auto client = gen(c, "node3");
    auto s = by_protocol(client);
    EXPECT_EQ(s.size(), 4u);
    EXPECT_TRUE(s.contains("Peer_10_10_10_10") && s.contains("Peer_fd00_10_10__11"));
    EXPECT_FALSE(s.contains("Peer_10_10_10_13"));
    for (const auto &[p, x] : s) {
        EXPECT_FALSE(x.rr_client) << p;
    }
    EXPECT_NE(client.text.find("Node-to-node mesh disabled"), std::string::npos);
    // A reflector: every client (the reverse of peer-with-route-reflectors) as rr client, the
    // other reflector (same cluster) not.
    const auto rr = gen(c, "node1");
    s = by_protocol(rr);
    EXPECT_EQ(s.size(), 6u);
    EXPECT_TRUE(s.at("Peer_10_10_10_12").rr_client);
    EXPECT_TRUE(s.at("Peer_fd00_10_10__13").rr_client);
    EXPECT_FALSE(s.at("Peer_10_10_10_11").rr_client);
    EXPECT_NE(rr.text.find("rr cluster id 244.0.0.1;"), std::string::npos);
}

TEST_F(BirdParse, ReflectorsLeaveTheMeshWhileItIsOn) {
    auto nodes = three_nodes();
    nodes[0].rr_cluster_id = "244.0.0.1";
    nodes[0].labels["route-reflector"] = "true";
    const auto c = cluster(nodes,
                           "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: "
                           "to-rr}\nspec: {nodeSelector: all(), peerSelector: "
                           "route-reflector == 'true'}\n");
    const auto s = by_protocol(gen(c, "node2"));
    // Mesh with node3, the reflector by the BGPPeer.
    EXPECT_EQ(s.at("Peer_10_10_10_12").source, "mesh");
    EXPECT_EQ(s.at("Peer_10_10_10_10").source, "bgppeer/to-rr");
    const auto r = gen(c, "node1");
    EXPECT_NE(r.text.find("out of the node-to-node mesh"), std::string::npos);
    EXPECT_EQ(r.sessions.size(), 4u);
}

TEST_F(BirdParse, ExternalPeerByNodeSelectorWithOwnAs) {
    auto nodes = three_nodes();
    nodes[2].labels["border-router"] = "true";
    const std::string peers = read(FWD_EXAMPLES_DIR "/bgp-peer-external.yaml") +
                              "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\n"
                              "metadata: {name: tor}\nspec: {peerIP: 10.10.10.1, asNumber: "
                              "64513, keepOriginalNextHop: true}\n";
    const auto c = cluster(nodes, peers);
    const auto border = gen(c, "node3");
    auto s = by_protocol(border);
    ASSERT_TRUE(s.contains("Peer_2001_db8_dc__1"));
    EXPECT_EQ(s.at("Peer_2001_db8_dc__1").as_number, 64513u);
    EXPECT_FALSE(s.at("Peer_2001_db8_dc__1").passive);
    EXPECT_NE(border.text.find("keepalive time 30;"), std::string::npos);
    EXPECT_NE(border.text.find("hold time 90;"), std::string::npos);
    EXPECT_NE(border.text.find("multihop;"), std::string::npos);  // 2001:db8:dc::1 is off-subnet
    ASSERT_TRUE(s.contains("Peer_10_10_10_1"));
    EXPECT_NE(border.text.find("next hop keep;"), std::string::npos);
    const auto other = by_protocol(gen(c, "node1"));
    EXPECT_FALSE(other.contains("Peer_2001_db8_dc__1"));  // not a border router
    EXPECT_TRUE(other.contains("Peer_10_10_10_1"));       // no selector: every node
    EXPECT_EQ(other.size(), 5u);                          // + the mesh
}

TEST_F(BirdParse, PeerSelectorBothEndsAndFamilies) {
    // node3 is IPv4-only: its peering with node1 is IPv4 only, and both ends have it.
    auto nodes = three_nodes();
    nodes[2].ipv6.reset();
    nodes[2].labels["rack"] = "b";
    nodes[0].labels["rack"] = "a";
    const auto c =
        cluster(nodes,
                "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: "
                "{name: default}\nspec: {nodeToNodeMeshEnabled: false}\n---\n"
                "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: "
                "a-to-b}\nspec: {nodeSelector: rack == 'a', peerSelector: rack == 'b'}\n");
    const auto a = by_protocol(gen(c, "node1"));
    EXPECT_EQ(a.size(), 1u);
    EXPECT_TRUE(a.contains("Peer_10_10_10_12"));
    const auto b = by_protocol(gen(c, "node3"));
    EXPECT_EQ(b.size(), 1u);
    EXPECT_TRUE(b.contains("Peer_10_10_10_10"));
    EXPECT_TRUE(by_protocol(gen(c, "node2")).empty());
    // An IPv6 peer for a node without IPv6: left out, said why.
    auto c2 = cluster(nodes, read(FWD_EXAMPLES_DIR "/bgp-peer-external.yaml"));
    c2.nodes[2].labels["border-router"] = "true";
    const auto v4only = gen(c2, "node3");
    ASSERT_EQ(v4only.problems.size(), 1u);
    EXPECT_NE(v4only.problems[0].find("has no IPv6 address"), std::string::npos);
    EXPECT_EQ(v4only.text.find("fwd_kernel6"), std::string::npos);
}

TEST_F(BirdParse, ServicesOnlyWhenConfiguredWithCommunities) {
    std::string text = read(FWD_EXAMPLES_DIR "/bgp-configuration.yaml");
    text +=
        "  prefixAdvertisements:\n    - cidr: fd00:10:96::/112\n      communities: [internal]\n"
        "    - cidr: 10.96.0.0/12\n      communities: [\"64512:300:7\"]\n";
    text.replace(text.find("  serviceExternalIPs:"), 0,
                 "    - cidr: 10.96.0.0/12\n");  // an IPv4 cluster range too
    const auto out = gen(cluster(three_nodes(), text), "node1");
    EXPECT_NE(out.text.find("protocol static fwd_svc4 {\n  ipv4;\n  route 10.96.0.0/12 blackhole;"),
              std::string::npos)
        << out.text;
    EXPECT_NE(out.text.find("route fd00:10:96::/112 blackhole;"), std::string::npos);
    EXPECT_NE(out.text.find("route 2001:db8:ff::/48 blackhole;"), std::string::npos);
    EXPECT_NE(out.text.find("bgp_community.add((64512,100));"), std::string::npos);
    EXPECT_NE(out.text.find("bgp_large_community.add((64512,300,7));"), std::string::npos);
    EXPECT_NE(out.text.find("if proto = \"fwd_svc6\" then"), std::string::npos);
    EXPECT_NE(out.text.find("log stderr { info, remote"), std::string::npos);
}

TEST_F(BirdParse, PasswordsFromSecretsListenPortAndTimers) {
    const std::string yaml =
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: default}\n"
        "spec: {listenPort: 1790, nodeMeshPassword: {secretKeyRef: {name: bgp-secrets, key: "
        "mesh}}, logSeverityScreen: Debug}\n---\n"
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {name: node.node3}\n"
        "spec: {listenPort: 1791}\n---\n"
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
        "spec: {peerIP: \"10.10.10.1:1179\", asNumber: 64513, password: {secretKeyRef: {name: "
        "bgp-secrets, key: router-password}}, maxRestartTime: 2m, numAllowedLocalASNumbers: 1}\n"
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: bgp-secrets, namespace: "
        "calico-system}\nstringData: {mesh: m-pw, router-password: tor-pw, bad: \"a\\\"b\"}\n";
    const auto out = gen(cluster(three_nodes(), yaml), "node1");
    EXPECT_NE(out.text.find("password \"m-pw\";"), std::string::npos);
    EXPECT_NE(out.text.find("password \"tor-pw\";"), std::string::npos);
    EXPECT_NE(out.text.find("local 10.10.10.10 port 1790 as 64512;"), std::string::npos);
    EXPECT_NE(out.text.find("neighbor 10.10.10.12 port 1791 as 64512;"), std::string::npos);
    EXPECT_NE(out.text.find("neighbor 10.10.10.1 port 1179 as 64513;"), std::string::npos);
    EXPECT_NE(out.text.find("graceful restart time 120;"), std::string::npos);
    EXPECT_NE(out.text.find("allow local as 1;"), std::string::npos);
    EXPECT_NE(out.text.find("log stderr all;"), std::string::npos);
    EXPECT_TRUE(by_protocol(out).contains("Peer_10_10_10_1_port_1179"));
    // A password BIRD cannot quote is left out, said why.
    auto quoted = cluster(three_nodes(), yaml);
    quoted.peers[0].password->key = "bad";
    const auto q = gen(quoted, "node1");
    EXPECT_FALSE(by_protocol(q).contains("Peer_10_10_10_1_port_1179"));
    ASSERT_EQ(q.problems.size(), 1u);
    EXPECT_NE(q.problems[0].find("holds a quote, backslash or line break"), std::string::npos);
    // Without the secret the sessions needing it are left out, said why.
    auto c = cluster(three_nodes(), yaml);
    c.secrets.clear();
    const auto none = gen(c, "node1");
    EXPECT_TRUE(none.sessions.empty());
    ASSERT_EQ(none.problems.size(), 5u);
    EXPECT_NE(none.problems[0].find("calico-system/bgp-secrets (key 'mesh') is not in the store"),
              std::string::npos)
        << none.problems[0];
}

TEST_F(BirdParse, Ipv6OnlyNodeAndPerNodeAs) {
    std::vector<NodeRecord> nodes = {node("v6a", "", "fd00:10:10::10/64"),
                                     node("v6b", "", "fd00:10:10::11/64")};
    nodes[1].as_number = 65001;
    const auto out = gen(cluster(nodes), "v6a");
    ASSERT_EQ(out.sessions.size(), 1u);
    EXPECT_EQ(out.sessions[0].as_number, 65001u);
    EXPECT_EQ(out.router_id.find(':'), std::string::npos);  // hashed into IPv4 shape
    EXPECT_EQ(out.text.find("fwd_kernel4"), std::string::npos);
    // No record: refused, said why.
    BirdOptions o;
    o.node = "ghost";
    EXPECT_THROW(generate_bird_config(cluster(nodes), o), std::runtime_error);
}

TEST_F(BirdParse, SessionsARestartWouldDrop) {
    auto nodes = three_nodes();
    const auto mesh = gen(cluster(nodes), "node1");
    // node1 becomes a reflector: its sessions gain `rr client`, BIRD would restart them.
    nodes[0].rr_cluster_id = "244.0.0.1";
    nodes[0].labels["route-reflector"] = "true";
    const std::string peers =
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: "
        "to-rr}\nspec: {nodeSelector: all(), peerSelector: "
        "route-reflector == 'true'}\n";
    const auto rr = gen(cluster(nodes, peers), "node1");
    EXPECT_EQ(restarted_sessions(mesh.text, rr.text),
              (std::vector<std::string>{"Peer_10_10_10_11", "Peer_10_10_10_12",
                                        "Peer_fd00_10_10__11", "Peer_fd00_10_10__12"}));
    // node2's session to node1 moves from the mesh to the BGPPeer unchanged: no restart.
    const auto before = gen(cluster(three_nodes()), "node2");
    const auto after = gen(cluster(nodes, peers), "node2");
    EXPECT_TRUE(restarted_sessions(before.text, after.text).empty());
    EXPECT_NE(before.text, after.text);  // the comment says where it comes from
    EXPECT_TRUE(restarted_sessions(rr.text, rr.text).empty());
}

TEST_F(BirdParse, DeterministicText) {
    auto c = cluster(three_nodes(), read(FWD_EXAMPLES_DIR "/bgp-route-reflectors.yaml"));
    const auto a = gen(c, "node1");
    std::reverse(c.nodes.begin(), c.nodes.end());
    std::reverse(c.peers.begin(), c.peers.end());
    const auto b = gen(c, "node1");
    EXPECT_EQ(a.text, b.text);  // reloads happen only on real changes
}

}  // namespace
}  // namespace fwd::bgp
