// Overlay routes: Calico's VXLAN / IPIP / CrossSubnet rules per family, borrowed addresses,
// the problems reported, and the whole path through a real Allocator and NodeRegistry on a
// MemStore (claims, releases, nodes joining and leaving). Also that cluster_routes() agrees
// with node_routes() for every node.
#include <algorithm>
#include <random>

#include "fwd/ipam/overlay_routes.hpp"
#include "ipam_fixture.hpp"

namespace fwd::ipam {
inline void PrintTo(const OverlayRoute &r, std::ostream *os) {
    *os << str(r);
}
}  // namespace fwd::ipam

namespace fwd::ipam::test {
namespace {

using net::Family;
using Via = OverlayRoute::Via;

IpPool pool(const std::string &name, const char *c, EncapMode vxlan,
            EncapMode ipip = EncapMode::kNever) {
    IpPool p = make_pool(name, c);
    p.vxlan_mode = vxlan;
    p.ipip_mode = ipip;
    return p;
}

OverlayRoute vxlan(const char *prefix, const std::string &n, const char *next_hop) {
    const auto f = cidr(prefix).family();
    return {cidr(prefix), Via::kVxlan, n, ip(next_hop), derived_vtep_mac(n, f), false};
}
OverlayRoute ipip(const char *prefix, const std::string &n, const char *next_hop) {
    return {cidr(prefix), Via::kIpip, n, ip(next_hop), std::nullopt, false};
}
OverlayRoute native(const char *prefix, const std::string &n, const char *next_hop) {
    return {cidr(prefix), Via::kNative, n, ip(next_hop), std::nullopt, false};
}
OverlayRoute local_borrow(OverlayRoute r) {
    r.in_local_block = true;
    return r;
}

using Routes = std::vector<OverlayRoute>;

// Three nodes, dual stack. n2 shares n1's IPv4 subnet but not its IPv6 one; n3 shares none.
class OverlayRoutesTest : public ::testing::Test {
  protected:
    Routes routes(const std::string &self = "n1") {
        problems_.clear();
        return compute_overlay_routes(self, nodes_, pools_, cr_, &problems_);
    }
    void blocks(const std::string &n, std::vector<const char *> cs) {
        for (const char *c : cs) {
            cr_[n].blocks.push_back(cidr(c));
        }
    }

    std::vector<NodeRecord> nodes_{
        node("n1", "10.10.10.1/24", "fd00:10:1::1/64"),
        node("n2", "10.10.10.2/24", "fd00:10:2::2/64"),
        node("n3", "10.10.20.3/24", "fd00:10:3::3/64"),
    };
    std::vector<IpPool> pools_;
    ClusterRoutes cr_;
    std::vector<std::string> problems_;
};

TEST_F(OverlayRoutesTest, VxlanAlwaysEncapsulatesToEveryOtherNode) {
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kAlways),
              pool("v6", "fd00:244::/48", EncapMode::kAlways)};
    blocks("n1", {"10.244.0.0/26", "fd00:244::/122"});
    blocks("n2", {"10.244.0.64/26", "fd00:244::40/122"});
    blocks("n3", {"10.244.0.128/26", "10.244.1.0/26", "fd00:244::80/122"});
    EXPECT_EQ(routes(), (Routes{
                            vxlan("10.244.0.64/26", "n2", "10.10.10.2"),
                            vxlan("10.244.0.128/26", "n3", "10.10.20.3"),
                            vxlan("10.244.1.0/26", "n3", "10.10.20.3"),
                            vxlan("fd00:244::40/122", "n2", "fd00:10:2::2"),
                            vxlan("fd00:244::80/122", "n3", "fd00:10:3::3"),
                        }));
    EXPECT_TRUE(problems_.empty());
    // The IPv6 VTEP MAC is the "-v6" one, and a configured MAC wins over the derived one.
    EXPECT_EQ(routes()[3].vtep_mac, derived_vtep_mac("n2", Family::kIp6));
    nodes_[1].vtep_mac4 = *net::MacAddr::parse("02:00:00:00:00:02");
    EXPECT_EQ(routes()[0].vtep_mac, nodes_[1].vtep_mac4);
}

TEST_F(OverlayRoutesTest, CrossSubnetIsNativeInOurSubnetEachFamilyOnItsOwn) {
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kCrossSubnet),
              pool("v6", "fd00:244::/48", EncapMode::kCrossSubnet)};
    blocks("n2", {"10.244.0.64/26", "fd00:244::40/122"});
    blocks("n3", {"10.244.0.128/26", "fd00:244::80/122"});
    // n2: same IPv4 subnet (native), another IPv6 subnet (VXLAN); n3: VXLAN both.
    EXPECT_EQ(routes(), (Routes{
                            native("10.244.0.64/26", "n2", "10.10.10.2"),
                            vxlan("10.244.0.128/26", "n3", "10.10.20.3"),
                            vxlan("fd00:244::40/122", "n2", "fd00:10:2::2"),
                            vxlan("fd00:244::80/122", "n3", "fd00:10:3::3"),
                        }));
    // Seen from n2: n1 is in its IPv4 subnet too; the subnet compared is the local one.
    blocks("n1", {"10.244.0.0/26"});
    EXPECT_EQ(routes("n2")[0], native("10.244.0.0/26", "n1", "10.10.10.1"));
    // Our subnet decides: a /16 on n1 takes n3 in as well.
    nodes_[0].ipv4 = IfAddr::parse("10.10.10.1/16");
    EXPECT_EQ(routes()[1], native("10.244.0.128/26", "n3", "10.10.20.3"));
}

TEST_F(OverlayRoutesTest, NeverIsLeftToBgp) {
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kNever),
              pool("v6", "fd00:244::/48", EncapMode::kNever)};
    blocks("n2", {"10.244.0.64/26", "fd00:244::40/122"});
    cr_["n2"].borrowed.push_back(ip("10.244.0.5"));
    EXPECT_TRUE(routes().empty());
    // Not even a missing address is a problem there: BGP carries those routes.
    nodes_[1].ipv4.reset();
    EXPECT_TRUE(routes().empty());
    EXPECT_TRUE(problems_.empty());
}

TEST_F(OverlayRoutesTest, IpipAndItsPrecedenceBelowVxlan) {
    pools_ = {pool("ipip", "10.244.0.0/16", EncapMode::kNever, EncapMode::kAlways),
              pool("ipipx", "10.245.0.0/16", EncapMode::kNever, EncapMode::kCrossSubnet)};
    blocks("n2", {"10.244.0.64/26", "10.245.0.64/26"});
    blocks("n3", {"10.244.0.128/26", "10.245.0.128/26"});
    EXPECT_EQ(routes(), (Routes{
                            ipip("10.244.0.64/26", "n2", "10.10.10.2"),
                            ipip("10.244.0.128/26", "n3", "10.10.20.3"),
                            native("10.245.0.64/26", "n2", "10.10.10.2"),
                            ipip("10.245.0.128/26", "n3", "10.10.20.3"),
                        }));
    // A pool with both (validate_pool refuses it; one written behind its back): VXLAN wins,
    // as Calico's pool type does, with VXLAN's own mode.
    pools_ = {pool("both", "10.244.0.0/16", EncapMode::kAlways, EncapMode::kCrossSubnet)};
    cr_.erase("n3");
    cr_["n2"].blocks = {cidr("10.244.0.64/26")};
    EXPECT_EQ(routes(), (Routes{vxlan("10.244.0.64/26", "n2", "10.10.10.2")}));
    // IPIP is IPv4 only: an IPv6 pool with an ipipMode gets no IPIP route.
    pools_ = {pool("v6", "fd00:244::/48", EncapMode::kNever, EncapMode::kAlways)};
    cr_["n2"].blocks = {cidr("fd00:244::40/122")};
    EXPECT_TRUE(routes().empty());
}

TEST_F(OverlayRoutesTest, BorrowedAddressesAreHostRoutes) {
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kAlways),
              pool("v6", "fd00:244::/48", EncapMode::kCrossSubnet)};
    blocks("n1", {"10.244.0.0/26", "fd00:244::/122"});
    blocks("n2", {"10.244.0.64/26", "fd00:244::40/122"});
    blocks("n3", {"10.244.0.128/26"});
    // n2 borrowed from our blocks and from n3's; we borrowed from n2's (local: no route).
    cr_["n2"].borrowed = {ip("10.244.0.5"), ip("fd00:244::7"), ip("10.244.0.130")};
    cr_["n1"].borrowed = {ip("10.244.0.70"), ip("fd00:244::41")};
    nodes_[1].ipv6 = IfAddr::parse("fd00:10:1::2/64");  // n2 in our IPv6 subnet: native
    EXPECT_EQ(routes(), (Routes{
                            local_borrow(vxlan("10.244.0.5/32", "n2", "10.10.10.2")),
                            vxlan("10.244.0.64/26", "n2", "10.10.10.2"),
                            vxlan("10.244.0.128/26", "n3", "10.10.20.3"),
                            vxlan("10.244.0.130/32", "n2", "10.10.10.2"),
                            local_borrow(native("fd00:244::7/128", "n2", "fd00:10:1::2")),
                            native("fd00:244::40/122", "n2", "fd00:10:1::2"),
                        }));
    EXPECT_TRUE(problems_.empty());
}

TEST_F(OverlayRoutesTest, MissingPiecesAreProblemsAndTheRestKeepsItsRoutes) {
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kAlways),
              pool("v6", "fd00:244::/48", EncapMode::kAlways)};
    blocks("n2", {"10.244.0.64/26", "fd00:244::40/122"});
    blocks("n3", {"10.244.0.128/26", "fd00:244::80/122"});
    blocks("n4", {"10.244.0.192/26"});  // not registered
    blocks("n5", {"10.99.0.0/26"});     // a block in no pool
    nodes_.push_back(node("n5", "10.10.10.5/24"));
    nodes_[2].ipv6.reset();  // n3 has no IPv6 address
    EXPECT_EQ(routes(), (Routes{
                            vxlan("10.244.0.64/26", "n2", "10.10.10.2"),
                            vxlan("10.244.0.128/26", "n3", "10.10.20.3"),
                            vxlan("fd00:244::40/122", "n2", "fd00:10:2::2"),
                        }));
    EXPECT_EQ(problems_,
              (std::vector<std::string>{
                  "10.244.0.192/26 of node 'n4': the node is not in the node registry: no route",
                  "10.99.0.0/26 of node 'n5': in no IP pool: no route",
                  "fd00:244::80/122 of node 'n3': the node has no IPv6 address "
                  "(spec.bgp.ipv6Address): no route",
              }));
    // This node without an IPv6 address: no IPv6 route at all, one line per prefix.
    nodes_[0].ipv6.reset();
    auto r = routes();
    EXPECT_TRUE(
        std::none_of(r.begin(), r.end(), [](const OverlayRoute &x) { return !x.prefix.is_v4(); }));
    EXPECT_NE(std::find(problems_.begin(), problems_.end(),
                        "fd00:244::40/122 of node 'n2': this node ('n1') has no IPv6 address "
                        "(spec.bgp.ipv6Address): no route"),
              problems_.end());
    // Not registered ourselves: nothing.
    EXPECT_TRUE(routes("n9").empty());
    EXPECT_FALSE(problems_.empty());
}

TEST_F(OverlayRoutesTest, APrefixTwoNodesHoldGetsNoRoute) {
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kAlways)};
    blocks("n2", {"10.244.0.64/26"});
    blocks("n3", {"10.244.0.128/26"});
    cr_["n3"].borrowed = {ip("10.244.0.64")};  // a block and a /32 are different prefixes
    cr_["n2"].borrowed = {ip("10.244.0.200")};
    cr_["n3"].borrowed.push_back(ip("10.244.0.200"));
    auto r = routes();
    EXPECT_EQ(r.size(), 3u);
    EXPECT_EQ(problems_,
              (std::vector<std::string>{"10.244.0.200/32 is held by nodes 'n2', 'n3': no route"}));
}

TEST_F(OverlayRoutesTest, BgpPoolBesideAVxlanPool) {
    pools_ = {pool("bgp", "10.244.0.0/16", EncapMode::kNever),
              pool("vx", "10.250.0.0/16", EncapMode::kAlways)};
    blocks("n2", {"10.244.0.64/26", "10.250.0.64/26"});
    blocks("n3", {"10.244.0.128/26", "10.250.0.128/26"});
    EXPECT_EQ(routes(), (Routes{
                            vxlan("10.250.0.64/26", "n2", "10.10.10.2"),
                            vxlan("10.250.0.128/26", "n3", "10.10.20.3"),
                        }));
}

TEST_F(OverlayRoutesTest, SingleFamilyClusters) {
    // IPv4 only: no IPv6 anywhere, and nothing to complain about.
    nodes_ = {node("n1", "10.10.10.1/24"), node("n2", "10.10.20.2/24")};
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kCrossSubnet)};
    blocks("n2", {"10.244.0.64/26"});
    EXPECT_EQ(routes(), (Routes{vxlan("10.244.0.64/26", "n2", "10.10.20.2")}));
    EXPECT_TRUE(problems_.empty());
    // IPv6 only.
    nodes_ = {node("n1", nullptr, "fd00:10::1/64"), node("n2", nullptr, "fd00:10::2/64")};
    pools_ = {pool("v6", "fd00:244::/48", EncapMode::kCrossSubnet)};
    cr_.clear();
    blocks("n2", {"fd00:244::40/122"});
    EXPECT_EQ(routes(), (Routes{native("fd00:244::40/122", "n2", "fd00:10::2")}));
    EXPECT_TRUE(problems_.empty());
}

TEST_F(OverlayRoutesTest, OrderDoesNotDependOnTheInputs) {
    pools_ = {pool("v4", "10.244.0.0/16", EncapMode::kAlways),
              pool("v6", "fd00:244::/48", EncapMode::kAlways)};
    blocks("n3", {"fd00:244::80/122", "10.244.1.0/26", "10.244.0.128/26"});
    blocks("n2", {"10.244.0.64/26", "fd00:244::40/122"});
    cr_["n3"].borrowed = {ip("10.244.0.70"), ip("10.244.0.1")};
    const Routes want = routes();
    EXPECT_TRUE(std::is_sorted(want.begin(), want.end()));
    std::mt19937 rng(7);
    for (int i = 0; i < 5; ++i) {
        std::shuffle(nodes_.begin(), nodes_.end(), rng);
        std::shuffle(pools_.begin(), pools_.end(), rng);
        EXPECT_EQ(routes(), want);
    }
}

// ---- through a real Allocator and NodeRegistry ----

class OverlayClusterTest : public AllocatorTest {
  protected:
    void SetUp() override {
        IpPool v4 = make_pool("v4", "10.244.0.0/16");
        v4.vxlan_mode = EncapMode::kCrossSubnet;
        IpPool v6 = make_pool("v6", "fd00:244::/48");
        v6.vxlan_mode = EncapMode::kAlways;
        alloc_.add_pool(v4);
        alloc_.add_pool(v6);
        reg_.put(node("n1", "10.10.10.1/24", "fd00:10::1/64"));
        reg_.put(node("n2", "10.10.10.2/24", "fd00:10::2/64"));
    }
    // What a node's control module computes each time the cluster changes.
    Routes routes(const std::string &self = "n1") {
        return compute_overlay_routes(self, reg_.list().nodes, alloc_.pools(),
                                      alloc_.cluster_routes());
    }
    std::vector<std::string> prefixes(const Routes &r) {
        std::vector<std::string> out;
        for (const auto &x : r) {
            out.push_back(x.prefix.str() + " " + x.node + " " + std::string(to_string(x.via)));
        }
        return out;
    }

    NodeRegistry reg_{store_};
};

TEST_F(OverlayClusterTest, NodesJoinAndLeave) {
    alloc_.assign(request("a", "n1", 1, 1));
    alloc_.assign(request("b", "n2", 1, 1));
    EXPECT_EQ(prefixes(routes()),
              (std::vector<std::string>{"10.244.0.64/26 n2 native", "fd00:244::40/122 n2 vxlan"}));
    // n3 joins in another subnet and starts a pod.
    reg_.put(node("n3", "10.10.20.3/24", "fd00:20::3/64"));
    alloc_.assign(request("c", "n3", 1, 1));
    EXPECT_EQ(prefixes(routes()),
              (std::vector<std::string>{"10.244.0.64/26 n2 native", "10.244.0.128/26 n3 vxlan",
                                        "fd00:244::40/122 n2 vxlan", "fd00:244::80/122 n3 vxlan"}));
    EXPECT_EQ(prefixes(routes("n3")),
              (std::vector<std::string>{"10.244.0.0/26 n1 vxlan", "10.244.0.64/26 n2 vxlan",
                                        "fd00:244::/122 n1 vxlan", "fd00:244::40/122 n2 vxlan"}));
    // n3 leaves: its pod goes, its blocks are released, its record removed.
    alloc_.release_handle(pod_handle("c"));
    alloc_.release_node("n3");
    reg_.remove("n3");
    EXPECT_EQ(prefixes(routes()),
              (std::vector<std::string>{"10.244.0.64/26 n2 native", "fd00:244::40/122 n2 vxlan"}));
    // A node whose record is gone while its blocks remain keeps no route (and says why).
    reg_.remove("n2");
    std::vector<std::string> problems;
    auto r = compute_overlay_routes("n1", reg_.list().nodes, alloc_.pools(),
                                    alloc_.cluster_routes(), &problems);
    EXPECT_TRUE(r.empty());
    EXPECT_EQ(problems.size(), 2u);
}

TEST_F(OverlayClusterTest, BlockClaimAndRelease) {
    EXPECT_TRUE(routes().empty());
    ASSERT_TRUE(alloc_.claim_block("n2", cidr("10.244.3.0/26")));
    EXPECT_EQ(prefixes(routes()), std::vector<std::string>{"10.244.3.0/26 n2 native"});
    ASSERT_TRUE(alloc_.claim_block("n2", cidr("fd00:244::1:0/122")));
    EXPECT_EQ(prefixes(routes()),
              (std::vector<std::string>{"10.244.3.0/26 n2 native", "fd00:244::1:0/122 n2 vxlan"}));
    ASSERT_TRUE(alloc_.release_block_affinity("n2", cidr("10.244.3.0/26")));
    EXPECT_EQ(prefixes(routes()), std::vector<std::string>{"fd00:244::1:0/122 n2 vxlan"});
    // Our own claim routes nothing here.
    ASSERT_TRUE(alloc_.claim_block("n1", cidr("10.244.4.0/26")));
    EXPECT_EQ(prefixes(routes()), std::vector<std::string>{"fd00:244::1:0/122 n2 vxlan"});
}

TEST_F(OverlayClusterTest, BorrowedFromOurBlockGetsAHostRoute) {
    alloc_.set_config({false, 1});
    IpPool small = make_pool("small", "10.99.0.0/29", 30);
    small.vxlan_mode = EncapMode::kAlways;
    alloc_.add_pool(small);
    // n1 holds 10.99.0.0/30; n2 fills 10.99.0.4/30 and borrows from n1's block.
    AssignRequest r1 = request("a", "n1", 1, 0);
    r1.pools4 = {"small"};
    alloc_.assign(r1);
    for (int i = 0; i < 5; ++i) {
        AssignRequest r = request("b" + std::to_string(i), "n2", 1, 0);
        r.pools4 = {"small"};
        alloc_.assign(r);
    }
    const auto borrowed = alloc_.node_routes("n2").borrowed;
    ASSERT_EQ(borrowed.size(), 1u);
    EXPECT_TRUE(cidr("10.99.0.0/30").contains(borrowed[0]));
    auto r = routes();
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0], local_borrow(vxlan((borrowed[0].str() + "/32").c_str(), "n2", "10.10.10.2")));
    EXPECT_EQ(r[1], vxlan("10.99.0.4/30", "n2", "10.10.10.2"));
    // Seen from n2, the borrowed address is its own: no route; n1's block is routed.
    EXPECT_EQ(prefixes(routes("n2")), std::vector<std::string>{"10.99.0.0/30 n1 vxlan"});
}

// cluster_routes() reads everything once; it must say what node_routes() says per node.
TEST_F(AllocatorTest, ClusterRoutesAgreeWithNodeRoutes) {
    alloc_.set_config({false, 1});
    alloc_.add_pool(make_pool("p4", "10.0.0.0/28", 30));
    alloc_.add_pool(make_pool("p6", "fd00::/124", 126));
    // Four blocks per family for five nodes: n5 borrows everything it has.
    const std::vector<std::string> nodes{"n1", "n2", "n3", "node-4.example", "n5"};
    for (int i = 0; i < 15; ++i) {
        alloc_.assign(request("c" + std::to_string(i), nodes[i % nodes.size()], 1, 1));
    }
    // An affinity released with allocations left: n1's addresses in it count as borrowed.
    ASSERT_TRUE(alloc_.release_block_affinity("n1", alloc_.confirmed_blocks("n1").at(0), false));
    auto all = alloc_.cluster_routes();
    size_t borrowed = 0;
    for (const auto &n : nodes) {
        const NodeRoutes one = alloc_.node_routes(n);
        const NodeRoutes none;
        const NodeRoutes &got = all.contains(n) ? all.at(n) : none;
        EXPECT_EQ(got.blocks, one.blocks) << n;
        EXPECT_EQ(got.borrowed, one.borrowed) << n;
        borrowed += one.borrowed.size();
    }
    EXPECT_GT(borrowed, 0u);
    for (const auto &[n, r] : all) {
        EXPECT_NE(std::find(nodes.begin(), nodes.end(), n), nodes.end()) << n;
    }
}

}  // namespace
}  // namespace fwd::ipam::test
