// Routes from this node to the other nodes' pods without BGP, as Calico's felix computes them
// for VXLAN (and IPIP) pools (../shared/CALICO.md, "Overlay and routing"): every other node's
// confirmed blocks and the single addresses it borrowed, each reached the way the pool holding
// it says. Pure: the caller reads the inputs (NodeRegistry::list(), Allocator::pools(),
// Allocator::cluster_routes()) and hands the result to the dataplane.
//
// Rules, per prefix P of another node N (a block, or a borrowed /32 or /128), with pool Q the
// pool holding P:
//   - Q's encapsulation is VXLAN when Q.vxlan_mode is not Never, else (IPv4 only) IPIP when
//     Q.ipip_mode is not Never, else none: no route (BGP carries those pools' routes).
//   - Always: encapsulated to N's address of P's family.
//   - CrossSubnet: encapsulated when N's address is outside this node's subnet of that
//     family (this node's prefix does not contain it), else native: routed unencapsulated
//     via N's address.
//   - No route, and a line in `problems`, when N or this node has no address of P's family,
//     N is not in the registry, or P is in no pool. Each family is judged on its own: a node
//     in our IPv4 subnet may be in another IPv6 subnet.
//   - Our own blocks and the addresses we borrowed get no route here (they are local). An
//     address another node borrowed from one of our blocks gets its /32 or /128 route, which
//     wins over our block's local blackhole by longest prefix match.
//   - Two nodes with the same prefix: neither gets a route (a line in `problems`).
#pragma once

#include <compare>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/model.hpp"
#include "fwd/ipam/node.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::ipam {

struct OverlayRoute {
    enum class Via { kVxlan, kIpip, kNative };

    Cidr prefix;  // a block, or a borrowed /32 or /128
    Via via = Via::kNative;
    std::string node;  // the node that holds the prefix
    // The remote node's address of the prefix's family: the outer destination (VXLAN, IPIP)
    // or the next hop (native).
    net::IpAddr next_hop;
    // kVxlan: the inner destination MAC, the remote node's VTEP MAC of that family
    // (configured, else derived); nullopt otherwise.
    std::optional<net::MacAddr> vtep_mac;
    // A /32 or /128 borrowed by `node` from one of this node's blocks.
    bool in_local_block = false;

    auto operator<=>(const OverlayRoute &) const = default;
};
std::string_view to_string(OverlayRoute::Via v);  // "vxlan", "ipip", "native"
std::string str(const OverlayRoute &r);           // "10.0.1.0/26 via vxlan to n2 (10.10.20.3)"

// Every node's confirmed blocks and borrowed addresses (Allocator::cluster_routes()).
using ClusterRoutes = std::map<std::string, NodeRoutes>;

// The routes from node `self` to every other node's prefixes, sorted by prefix (IPv4 first),
// then node. `problems`, when given, gets a line for every prefix left without a route for a
// reason other than its pool's mode (see above), sorted.
std::vector<OverlayRoute> compute_overlay_routes(const std::string &self,
                                                 const std::vector<NodeRecord> &nodes,
                                                 const std::vector<IpPool> &pools,
                                                 const ClusterRoutes &cr,
                                                 std::vector<std::string> *problems = nullptr);

}  // namespace fwd::ipam
