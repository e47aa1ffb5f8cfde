// Node records: the derived VTEP MAC, Calico's Node JSON and its validation, and the node
// registry on the in-memory and the embedded store.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "../temp_dir.hpp"
#include "fwd/ipam/embedded_store.hpp"
#include "ipam_fixture.hpp"

namespace fwd::ipam::test {
namespace {

using net::Family;
using nlohmann::json;

net::MacAddr mac(const char *s) {
    return *net::MacAddr::parse(s);
}

// A complete Node in Calico's JSON, to break one field at a time.
json full_node_json() {
    return json::parse(R"({
      "apiVersion": "projectcalico.org/v3", "kind": "Node",
      "metadata": {"name": "worker-a.example.com",
                   "labels": {"kubernetes.io/hostname": "worker-a", "zone": "a"}},
      "spec": {"bgp": {"ipv4Address": "10.10.10.2/24", "ipv6Address": "fd00:10::2/64"},
               "ipv4VXLANTunnelAddr": "192.168.0.1", "vxlanTunnelMACAddr": "66:00:00:00:00:01",
               "ipv6VXLANTunnelAddr": "fd10::1", "vxlanTunnelMACAddrV6": "66:00:00:00:00:02"}
    })");
}

// The field a decoding error names ("" when the JSON decodes); the message names the node.
std::string bad_field(const json &j) {
    try {
        j.get<NodeRecord>();
    } catch (const NodeError &e) {
        EXPECT_NE(std::string(e.what()).find("node '" + e.node() + "'"), std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find(e.field()), std::string::npos) << e.what();
        return e.field();
    }
    return "";
}

// ---- derived VTEP MAC ----

// Vectors: `printf %s NAME | sha1sum`, first five bytes after 0x66.
TEST(DerivedVtepMac, FirstByte0x66ThenSha1OfTheName) {
    // printf %s node-1 | sha1sum: b36828398e...
    EXPECT_EQ(derived_vtep_mac("node-1", Family::kIp4), mac("66:b3:68:28:39:8e"));
    // printf %s node-1-v6 | sha1sum: 24ac63df6c...
    EXPECT_EQ(derived_vtep_mac("node-1", Family::kIp6), mac("66:24:ac:63:df:6c"));
    // printf %s worker-a.example.com | sha1sum: b86a0e8d37...
    EXPECT_EQ(derived_vtep_mac("worker-a.example.com", Family::kIp4), mac("66:b8:6a:0e:8d:37"));
    // printf %s worker-a.example.com-v6 | sha1sum: 451d697e6f...
    EXPECT_EQ(derived_vtep_mac("worker-a.example.com", Family::kIp6), mac("66:45:1d:69:7e:6f"));
}

TEST(DerivedVtepMac, UnicastLocallyAdministeredAndUsedWhenNoneConfigured) {
    auto m = derived_vtep_mac("n1", Family::kIp4);
    EXPECT_FALSE(m.is_multicast());
    EXPECT_EQ(m.bytes()[0] & 0x02, 0x02);
    NodeRecord n = node("n1", "10.0.0.1/24");
    EXPECT_EQ(n.vtep_mac(Family::kIp4), mac("66:40:b3:ea:b6:3f"));  // sha1("n1") 40b3eab63f
    EXPECT_EQ(n.vtep_mac(Family::kIp6), mac("66:46:32:55:72:28"));  // sha1("n1-v6") 4632557228
    n.vtep_mac4 = mac("02:00:00:00:00:07");
    EXPECT_EQ(n.vtep_mac(Family::kIp4), mac("02:00:00:00:00:07"));
}

// ---- IfAddr ----

TEST(IfAddr, KeepsHostBitsAndComparesSubnets) {
    auto a = *IfAddr::parse("10.10.10.2/24");
    EXPECT_EQ(a.str(), "10.10.10.2/24");
    EXPECT_EQ(a.subnet().str(), "10.10.10.0/24");
    EXPECT_TRUE(a.contains(ip("10.10.10.200")));
    EXPECT_FALSE(a.contains(ip("10.10.11.2")));
    EXPECT_FALSE(a.contains(ip("fd00::1")));
    auto b = *IfAddr::parse("fd00:10::2/64");
    EXPECT_EQ(b.family(), Family::kIp6);
    EXPECT_TRUE(b.contains(ip("fd00:10::ffff")));
    EXPECT_EQ(IfAddr::parse("10.0.0.1")->len, 32);  // a bare address, as Calico takes it
    EXPECT_EQ(IfAddr::parse("fd00::1")->len, 128);
    EXPECT_FALSE(IfAddr::parse("10.0.0.1/33"));
    EXPECT_FALSE(IfAddr::parse("fd00::1/129"));
    EXPECT_FALSE(IfAddr::parse("10.0.0.256/24"));
    EXPECT_FALSE(IfAddr::parse(""));
}

// ---- JSON ----

TEST(NodeJson, RoundTripInCalicosShape) {
    NodeRecord n = full_node_json().get<NodeRecord>();
    EXPECT_EQ(n.name, "worker-a.example.com");
    EXPECT_EQ(n.ipv4->str(), "10.10.10.2/24");
    EXPECT_EQ(n.ipv6->str(), "fd00:10::2/64");
    EXPECT_EQ(n.tunnel4, ip("192.168.0.1"));
    EXPECT_EQ(n.tunnel6, ip("fd10::1"));
    EXPECT_EQ(n.vtep_mac4, mac("66:00:00:00:00:01"));
    EXPECT_EQ(n.vtep_mac6, mac("66:00:00:00:00:02"));
    EXPECT_EQ(n.labels.at("zone"), "a");
    EXPECT_EQ(json(n), full_node_json());
    EXPECT_EQ(json(n).get<NodeRecord>(), n);
    // A node of one family: the other family's fields are left out, not empty.
    NodeRecord v6only = node("v6only", nullptr, "fd00::5/64");
    json j = v6only;
    EXPECT_FALSE(j["spec"]["bgp"].contains("ipv4Address"));
    EXPECT_FALSE(j["spec"].contains("ipv4VXLANTunnelAddr"));
    EXPECT_FALSE(j["metadata"].contains("labels"));
    EXPECT_EQ(j.get<NodeRecord>(), v6only);
    NodeRecord bare;
    bare.name = "bare";
    EXPECT_EQ(json(bare).get<NodeRecord>(), bare);
}

TEST(NodeJson, CalicosOtherFieldsAreAcceptedAndDropped) {
    json j = full_node_json();
    j["metadata"]["resourceVersion"] = "123";
    j["metadata"]["annotations"] = {{"a", "b"}};
    j["spec"]["bgp"]["asNumber"] = 64512;
    j["spec"]["bgp"]["ipv4IPIPTunnelAddr"] = "192.168.0.9";
    j["spec"]["orchRefs"] = json::array({{{"nodeName", "worker-a"}, {"orchestrator", "k8s"}}});
    j["status"] = json::object();
    // Calico writes empty strings for unset addresses (omitempty on decode).
    j["spec"]["ipv6VXLANTunnelAddr"] = "";
    NodeRecord n = j.get<NodeRecord>();
    EXPECT_FALSE(n.tunnel6);
    EXPECT_EQ(n.tunnel4, ip("192.168.0.1"));
    // spec.bgp.asNumber is kept (BGP, issue 19), routeReflectorClusterID too
    EXPECT_EQ(n.as_number, 64512u);
    j["spec"]["bgp"]["routeReflectorClusterID"] = "244.0.0.1";
    EXPECT_EQ(j.get<NodeRecord>().rr_cluster_id, "244.0.0.1");
    j["spec"]["bgp"]["routeReflectorClusterID"] = "not-an-id";
    EXPECT_THROW(j.get<NodeRecord>(), NodeError);
}

TEST(NodeJson, EveryBadFieldIsNamed) {
    struct Case {
        std::vector<std::string> path;  // where to write the value
        json value;
        std::string field;
    };
    const std::vector<Case> cases{
        {{"apiVersion"}, "v1", "apiVersion"},
        {{"kind"}, "IPPool", "kind"},
        {{"metadata", "name"}, "Worker_A", "metadata.name"},
        {{"metadata", "name"}, "a..b", "metadata.name"},
        {{"metadata", "name"}, "-a", "metadata.name"},
        {{"metadata", "name"}, std::string(254, 'a'), "metadata.name"},
        {{"metadata", "name"}, 5, "metadata.name"},
        {{"metadata", "labels"}, "zone=a", "metadata.labels"},
        {{"metadata", "labels", "zone"}, 5, "metadata.labels.zone"},
        {{"metadata", "labels", "zone"}, "-a", "metadata.labels.zone"},
        {{"metadata", "labels", "zone"}, std::string(64, 'a'), "metadata.labels.zone"},
        {{"metadata", "labels", "Bad_Prefix/zone"}, "a", "metadata.labels.Bad_Prefix/zone"},
        {{"metadata", "labels", "bad key"}, "a", "metadata.labels.bad key"},
        {{"metadata", "colour"}, "red", "metadata.colour"},
        {{"spec", "colour"}, "red", "spec.colour"},
        {{"spec", "bgp", "colour"}, "red", "spec.bgp.colour"},
        {{"spec", "bgp"}, "10.0.0.1", "spec.bgp"},
        {{"spec", "bgp", "ipv4Address"}, "10.10.10.300/24", "spec.bgp.ipv4Address"},
        {{"spec", "bgp", "ipv4Address"}, "10.10.10.2/33", "spec.bgp.ipv4Address"},
        {{"spec", "bgp", "ipv4Address"}, "fd00::2/64", "spec.bgp.ipv4Address"},
        {{"spec", "bgp", "ipv4Address"}, 10, "spec.bgp.ipv4Address"},
        {{"spec", "bgp", "ipv6Address"}, "fd00::2/129", "spec.bgp.ipv6Address"},
        {{"spec", "bgp", "ipv6Address"}, "10.0.0.2/24", "spec.bgp.ipv6Address"},
        {{"spec", "bgp", "ipv6Address"}, "fd00::g/64", "spec.bgp.ipv6Address"},
        {{"spec", "ipv4VXLANTunnelAddr"}, "fd10::1", "spec.ipv4VXLANTunnelAddr"},
        {{"spec", "ipv4VXLANTunnelAddr"}, "192.168.0.1/32", "spec.ipv4VXLANTunnelAddr"},
        {{"spec", "ipv6VXLANTunnelAddr"}, "192.168.0.1", "spec.ipv6VXLANTunnelAddr"},
        {{"spec", "vxlanTunnelMACAddr"}, "66:00:00:00:00", "spec.vxlanTunnelMACAddr"},
        {{"spec", "vxlanTunnelMACAddr"}, "66-00-00-00-00-01-02", "spec.vxlanTunnelMACAddr"},
        {{"spec", "vxlanTunnelMACAddr"}, "01:00:5e:00:00:01", "spec.vxlanTunnelMACAddr"},
        {{"spec", "vxlanTunnelMACAddr"}, "00:00:00:00:00:00", "spec.vxlanTunnelMACAddr"},
        {{"spec", "vxlanTunnelMACAddrV6"}, "zz:00:00:00:00:01", "spec.vxlanTunnelMACAddrV6"},
    };
    EXPECT_EQ(bad_field(full_node_json()), "");
    for (const auto &c : cases) {
        json j = full_node_json();
        json *at = &j;
        for (const auto &p : c.path) {
            at = &(*at)[p];
        }
        *at = c.value;
        EXPECT_EQ(bad_field(j), c.field) << j.dump();
    }
    json no_name = full_node_json();
    no_name["metadata"].erase("name");
    EXPECT_EQ(bad_field(no_name), "metadata.name");
    EXPECT_THROW(json::array().get<NodeRecord>(), NodeError);
}

TEST(NodeJson, MessagesSayWhatIsWrong) {
    json j = full_node_json();
    j["spec"]["bgp"]["ipv4Address"] = "10.10.10.2/33";
    try {
        j.get<NodeRecord>();
        FAIL();
    } catch (const NodeError &e) {
        EXPECT_EQ(std::string(e.what()),
                  "node 'worker-a.example.com': spec.bgp.ipv4Address: '10.10.10.2/33': prefix "
                  "length out of range 0..32");
    }
}

TEST(NodeValidation, RecordsBuiltInCodeAreCheckedToo) {
    NodeRecord n = node("n1", "10.0.0.1/24");
    EXPECT_NO_THROW(validate_node(n));
    n.tunnel4 = ip("fd00::1");
    EXPECT_THROW(validate_node(n), NodeError);
    n = node("n1", "fd00::1/64");  // an IPv6 address in the IPv4 field
    EXPECT_THROW(validate_node(n), NodeError);
    n = node("n1", nullptr);
    n.ipv6 = IfAddr{ip("fd00::1"), 130};
    EXPECT_THROW(validate_node(n), NodeError);
    n = node("N1", nullptr);
    EXPECT_THROW(validate_node(n), NodeError);
}

// ---- the registry, on both stores ----

struct MemBackend {
    MemStore store;
};
struct EmbeddedBackend {
    fwd::test::TempDir dir{"fwd-node-registry"};
    EmbeddedStore store{dir.path() + "/state", EmbeddedStore::Options{4u << 20, false}};
};

template <class Backend>
class NodeRegistryTest : public ::testing::Test {
  protected:
    Backend b_;
    Store &store() { return b_.store; }
    NodeRegistry reg_{b_.store};
};
using Backends = ::testing::Types<MemBackend, EmbeddedBackend>;
class BackendNames {
  public:
    template <class T>
    static std::string GetName(int) {
        return std::is_same_v<T, MemBackend> ? "Memory" : "Embedded";
    }
};
TYPED_TEST_SUITE(NodeRegistryTest, Backends, BackendNames);

std::vector<std::string> names(const std::vector<NodeRecord> &v) {
    std::vector<std::string> out;
    for (const auto &n : v) {
        out.push_back(n.name);
    }
    return out;
}

TYPED_TEST(NodeRegistryTest, PutGetUpdateRemove) {
    NodeRecord a = node("a", "10.0.0.1/24", "fd00::1/64");
    a.tunnel4 = ip("192.168.0.1");
    a.labels["zone"] = "z1";
    this->reg_.put(a);
    EXPECT_EQ(this->reg_.get("a"), a);
    EXPECT_FALSE(this->reg_.get("b"));
    auto kv = this->store().get("/dpdk-fwd/nodes/v1/nodes/a");
    ASSERT_TRUE(kv);
    EXPECT_EQ(json::parse(kv->value)["kind"], "Node");
    // Registering the same record again writes nothing.
    const int64_t rev = this->store().revision();
    this->reg_.put(a);
    EXPECT_EQ(this->store().revision(), rev);
    // An update replaces the record (a node moved to another address).
    a.ipv4 = IfAddr::parse("10.0.1.1/24");
    this->reg_.put(a);
    EXPECT_EQ(this->reg_.get("a")->ipv4->str(), "10.0.1.1/24");
    this->reg_.put(node("b", "10.0.0.2/24"));
    auto l = this->reg_.list();
    EXPECT_EQ(names(l.nodes), (std::vector<std::string>{"a", "b"}));
    EXPECT_TRUE(l.refused.empty());
    EXPECT_GE(l.revision, rev);
    EXPECT_TRUE(this->reg_.remove("a"));
    EXPECT_FALSE(this->reg_.remove("a"));
    EXPECT_EQ(names(this->reg_.list().nodes), std::vector<std::string>{"b"});
    // The address a held is free again.
    this->reg_.put(node("c", "10.0.1.1/24"));
}

TYPED_TEST(NodeRegistryTest, InvalidRecordIsRefusedBeforeAnyWrite) {
    const int64_t rev = this->store().revision();
    EXPECT_THROW(this->reg_.put(node("Not_A_Name", "10.0.0.1/24")), NodeError);
    EXPECT_EQ(this->store().revision(), rev);
}

// The message names both nodes, the field and the address.
template <class F>
std::string refusal(F f) {
    try {
        f();
    } catch (const NodeError &e) {
        return e.what();
    }
    return "(not refused)";
}

TYPED_TEST(NodeRegistryTest, ConflictingAddressesAndMacsAreRefused) {
    NodeRecord a = node("a", "10.0.0.1/24", "fd00::1/64");
    a.tunnel4 = ip("192.168.0.1");
    a.vtep_mac6 = mac("02:00:00:00:00:06");
    this->reg_.put(a);
    EXPECT_EQ(refusal([&] { this->reg_.put(node("b", "10.0.0.1/16")); }),
              "node 'b': spec.bgp.ipv4Address: IPv4 address 10.0.0.1 is already held by node "
              "'a' (spec.bgp.ipv4Address)");
    NodeRecord b = node("b", "10.0.0.2/24");
    b.tunnel4 = ip("10.0.0.1");  // b's tunnel address is a's node address
    EXPECT_EQ(refusal([&] { this->reg_.put(b); }),
              "node 'b': spec.ipv4VXLANTunnelAddr: IPv4 tunnel address 10.0.0.1 is already held "
              "by node 'a' (spec.bgp.ipv4Address)");
    b = node("b", "192.168.0.1/24");  // b's node address is a's tunnel address
    EXPECT_NE(refusal([&] { this->reg_.put(b); }).find("node 'a' (spec.ipv4VXLANTunnelAddr)"),
              std::string::npos);
    b = node("b", "10.0.0.2/24", "fd00::2/64");
    b.vtep_mac6 = mac("02:00:00:00:00:06");
    EXPECT_NE(refusal([&] {
                  this->reg_.put(b);
              }).find("IPv6 VTEP MAC 02:00:00:00:00:06 is already held by node 'a'"),
              std::string::npos);
    // A configured MAC equal to another node's derived one clashes too.
    b = node("b", "10.0.0.2/24");
    b.vtep_mac4 = derived_vtep_mac("a", Family::kIp4);
    EXPECT_NE(refusal([&] {
                  this->reg_.put(b);
              }).find("held by node 'a' (spec.vxlanTunnelMACAddr, derived from its name)"),
              std::string::npos);
    // Nothing refused was written.
    EXPECT_EQ(names(this->reg_.list().nodes), std::vector<std::string>{"a"});
    // A node may hold one of its own addresses in two fields.
    b = node("b", "10.0.0.2/24", "fd00::2/64");
    b.tunnel4 = ip("10.0.0.2");
    this->reg_.put(b);
    EXPECT_EQ(names(this->reg_.list().nodes), (std::vector<std::string>{"a", "b"}));
}

// check(): what the puts of a batch would meet, in order, with nothing written.
TYPED_TEST(NodeRegistryTest, CheckRefusesWhatPutWouldAndWritesNothing) {
    NodeRecord a = node("a", "10.0.0.1/24", "fd00::1/64");
    a.vtep_mac4 = mac("02:00:00:00:00:04");
    this->reg_.put(a);
    const int64_t rev = this->store().revision();
    // Against a stored record of another node: named as put() names it.
    EXPECT_EQ(refusal([&] { this->reg_.check({node("b", "10.0.0.1/16")}); }),
              "node 'b': spec.bgp.ipv4Address: IPv4 address 10.0.0.1 is already held by node "
              "'a' (spec.bgp.ipv4Address)");
    // Within the batch: the later record is refused, naming the earlier one.
    NodeRecord c = node("c", "10.0.0.3/24");
    c.vtep_mac4 = mac("02:00:00:00:00:0c");
    NodeRecord d = node("d", "10.0.0.4/24");
    d.vtep_mac4 = mac("02:00:00:00:00:0c");
    EXPECT_EQ(refusal([&] {
                  this->reg_.check({c, d});
              }),
              "node 'd': spec.vxlanTunnelMACAddr: IPv4 VTEP MAC 02:00:00:00:00:0c is already "
              "held by node 'c' (spec.vxlanTunnelMACAddr)");
    // One name twice; an invalid record.
    EXPECT_NE(refusal([&] {
                  this->reg_.check({c, node("c", "10.0.0.5/24")});
              }).find("node 'c': metadata.name: given twice"),
              std::string::npos);
    EXPECT_NE(
        refusal([&] { this->reg_.check({node("Bad_Name", "10.0.0.6/24")}); }).find("metadata.name"),
        std::string::npos);
    EXPECT_EQ(this->store().revision(), rev);
    // A clean batch passes, and so does a's own record again (it replaces itself).
    this->reg_.check({a, c, node("e", "10.0.0.5/24")});
    EXPECT_EQ(this->store().revision(), rev);
    EXPECT_EQ(names(this->reg_.list().nodes), std::vector<std::string>{"a"});
}

TYPED_TEST(NodeRegistryTest, CheckFollowsTheOrderThePutsHappenIn) {
    this->reg_.put(node("a", "10.0.0.1/24"));
    this->reg_.put(node("b", "10.0.0.2/24"));
    // a moves off 10.0.0.1 first, then b takes it: each put finds its way free.
    const std::vector<NodeRecord> moves{node("a", "10.0.0.9/24"), node("b", "10.0.0.1/24")};
    this->reg_.check(moves);
    // The other order meets a's stored record still holding it: refused, as the put would be.
    EXPECT_EQ(refusal([&] {
                  this->reg_.check({node("b", "10.0.0.1/24"), node("a", "10.0.0.9/24")});
              }),
              "node 'b': spec.bgp.ipv4Address: IPv4 address 10.0.0.1 is already held by node "
              "'a' (spec.bgp.ipv4Address)");
    for (const auto &n : moves) {
        this->reg_.put(n);
    }
    EXPECT_EQ(this->reg_.get("b")->ipv4->str(), "10.0.0.1/24");
    EXPECT_TRUE(this->reg_.exists("a"));
    EXPECT_FALSE(this->reg_.exists("z"));
}

TYPED_TEST(NodeRegistryTest, ListRefusesBothRecordsOfAConflictAndKeepsTheRest) {
    this->reg_.put(node("a", "10.0.0.1/24"));
    this->reg_.put(node("c", "10.0.0.3/24"));
    // b written past the registry (another writer, an old version): same address as a.
    json b = node("b", "10.0.0.1/24");
    ASSERT_TRUE(
        this->store().txn({}, {{Operation::Kind::kPut, "/dpdk-fwd/nodes/v1/nodes/b", b.dump()}}));
    auto l = this->reg_.list();
    EXPECT_EQ(names(l.nodes), std::vector<std::string>{"c"});
    ASSERT_EQ(l.refused.size(), 2u);
    EXPECT_EQ(l.refused[0].first, "/dpdk-fwd/nodes/v1/nodes/a");
    EXPECT_NE(l.refused[0].second.find("IPv4 address 10.0.0.1 is also held by node 'b'"),
              std::string::npos)
        << l.refused[0].second;
    EXPECT_EQ(l.refused[1].first, "/dpdk-fwd/nodes/v1/nodes/b");
    EXPECT_NE(l.refused[1].second.find("is also held by node 'a'"), std::string::npos);
}

TYPED_TEST(NodeRegistryTest, MalformedRecordsAreListedAsRefused) {
    this->reg_.put(node("a", "10.0.0.1/24"));
    auto write = [&](const std::string &name, const std::string &value) {
        ASSERT_TRUE(this->store().txn(
            {}, {{Operation::Kind::kPut, "/dpdk-fwd/nodes/v1/nodes/" + name, value}}));
    };
    json bad = node("b", "10.0.0.2/24");
    bad["spec"]["bgp"]["ipv4Address"] = "10.0.0.2/40";
    write("b", bad.dump());
    write("c", "{not json");
    write("d", json(node("e", "10.0.0.4/24")).dump());  // named e under d's key
    auto l = this->reg_.list();
    EXPECT_EQ(names(l.nodes), std::vector<std::string>{"a"});
    ASSERT_EQ(l.refused.size(), 3u);
    EXPECT_NE(l.refused[0].second.find("node 'b': spec.bgp.ipv4Address"), std::string::npos)
        << l.refused[0].second;
    EXPECT_NE(l.refused[1].second.find("node 'c': the stored record is not JSON"),
              std::string::npos)
        << l.refused[1].second;
    EXPECT_NE(l.refused[2].second.find("named 'e'"), std::string::npos) << l.refused[2].second;
    EXPECT_THROW(this->reg_.get("b"), NodeError);
    EXPECT_THROW(this->reg_.get("c"), NodeError);
    // A malformed record blocks nobody, and its node can register over it.
    this->reg_.put(node("b", "10.0.0.2/24"));
    EXPECT_EQ(names(this->reg_.list().nodes), (std::vector<std::string>{"a", "b"}));
}

TYPED_TEST(NodeRegistryTest, PrefixSeparatesRegistries) {
    NodeRegistry other(this->store(), "/other/");
    this->reg_.put(node("a", "10.0.0.1/24"));
    other.put(node("a2", "10.0.0.1/24"));  // no conflict across registries
    EXPECT_EQ(names(other.list().nodes), std::vector<std::string>{"a2"});
    EXPECT_EQ(names(this->reg_.list().nodes), std::vector<std::string>{"a"});
}

// Two registries racing to register one address: exactly one wins, every time.
TEST(NodeRegistryRace, OneAddressTwoNodesAtOnce) {
    for (int round = 0; round < 50; ++round) {
        MemStore s;
        std::atomic<int> won{0}, refused{0};
        auto reg = [&](std::string name) {
            NodeRegistry r(s);
            try {
                r.put(node(name, "10.0.0.1/24"));
                ++won;
            } catch (const NodeError &) {
                ++refused;
            }
        };
        std::thread t1(reg, "a"), t2(reg, "b");
        t1.join();
        t2.join();
        EXPECT_EQ(won.load(), 1);
        EXPECT_EQ(refused.load(), 1);
        EXPECT_EQ(NodeRegistry(s).list().refused.size(), 0u);
    }
}

}  // namespace
}  // namespace fwd::ipam::test
