// The node registry: what every node publishes so that the others can route to its pods, like
// Calico's Node resource (../shared/CALICO.md, "Overlay and routing"): its underlay address of
// each family with the subnet length (CrossSubnet compares subnets), its VXLAN tunnel
// addresses and VTEP MACs, and its labels. Kept in the cluster store beside the IPAM data, so
// it works on the embedded store and on etcd alike.
//
// Keys under the registry's prefix (default "/dpdk-fwd/nodes/v1/"):
//   nodes/<name>  the record as Calico's Node JSON (apiVersion projectcalico.org/v3, kind Node)
//   serial        rewritten by every put() and compared by the next one: puts are serialized,
//                 so two nodes claiming one address at the same time cannot both pass the check
//
// Control code only: everything here allocates and may throw.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/model.hpp"
#include "fwd/ipam/store.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::ipam {

// An address on an interface with its subnet length, host bits kept: "10.10.10.2/24".
struct IfAddr {
    net::IpAddr addr;
    int len = 0;

    // "a/len", or a bare address (a /32 or /128), as Calico's Node accepts; nullopt when
    // malformed or the length is out of range for the family.
    static std::optional<IfAddr> parse(std::string_view s);
    net::Family family() const { return addr.family(); }
    // The subnet: "10.10.10.0/24".
    Cidr subnet() const { return Cidr::containing(addr, len); }
    // True when a is on this subnet (same family, same network bits).
    bool contains(const net::IpAddr &a) const { return subnet().contains(a); }
    std::string str() const { return addr.str() + "/" + std::to_string(len); }
    auto operator<=>(const IfAddr &) const = default;
};

// One node's record. Every field but the name is optional: a node of one family publishes
// that family only; a VTEP MAC left out is derived from the name (derived_vtep_mac).
struct NodeRecord {
    std::string name;                                  // metadata.name, a DNS-1123 subdomain
    std::optional<IfAddr> ipv4, ipv6;                  // spec.bgp.ipv4Address / ipv6Address
    std::optional<net::MacAddr> vtep_mac4, vtep_mac6;  // spec.vxlanTunnelMACAddr / ...V6
    std::optional<net::IpAddr> tunnel4, tunnel6;       // spec.ipv4VXLANTunnelAddr / ipv6...
    std::map<std::string, std::string> labels;         // metadata.labels
    // spec.bgp.asNumber (absent: the cluster's, from BGPConfiguration) and
    // routeReflectorClusterID (an IPv4 address: the node reflects routes): set by the user,
    // kept by the node's own registration (NodeRegistry::put with kKeepUserFields).
    std::optional<uint32_t> as_number;
    std::string rr_cluster_id;

    const std::optional<IfAddr> &address(net::Family f) const {
        return f == net::Family::kIp4 ? ipv4 : ipv6;
    }
    const std::optional<net::IpAddr> &tunnel(net::Family f) const {
        return f == net::Family::kIp4 ? tunnel4 : tunnel6;
    }
    // The VTEP MAC of family f that other nodes must put in the inner frame: the configured
    // one, else derived_vtep_mac(name, f).
    net::MacAddr vtep_mac(net::Family f) const;
    bool operator==(const NodeRecord &) const = default;
};

// A node record that breaks a rule, or a put() refused for a conflict. what():
// "node '<node>': <field>: <why>", the field as Calico's Node JSON names it
// ("spec.bgp.ipv4Address", "metadata.labels.<key>").
class NodeError : public FieldError {
  public:
    NodeError(std::string node, std::string field, const std::string &why)
        : FieldError("node", std::move(node), std::move(field), why) {}
    const std::string &node() const { return name(); }
};

// Calico's VTEP MAC for a node that has none configured (felix derives it the same way, so a
// Linux Calico node and dpdk-fwd agree): 0x66, then the first five bytes of the SHA-1 of the
// node name, of "<node>-v6" for the IPv6 VTEP. A unicast, locally administered address.
net::MacAddr derived_vtep_mac(std::string_view node, net::Family f);

// Throws NodeError unless n is valid: the name a DNS-1123 subdomain; each address of its
// field's family with a prefix length in range; VTEP MACs unicast and not zero; label keys
// and values as Kubernetes allows them.
void validate_node(const NodeRecord &n);

// Calico's Node JSON. Decoding validates every field (validate_node) and refuses unknown
// ones, except the Node fields Calico has and dpdk-fwd does not use (ipv4IPIPTunnelAddr,
// spec.orchRefs, addresses, wireguard, status, and server-set metadata), which are accepted and
// dropped. Throws NodeError.
void to_json(nlohmann::json &j, const NodeRecord &n);
void from_json(const nlohmann::json &j, NodeRecord &n);

// The registry of nodes in a Store. Not thread-safe itself (one per thread); any number of
// registries, in any processes, may share one store.
class NodeRegistry {
  public:
    explicit NodeRegistry(Store &s, std::string prefix = "/dpdk-fwd/nodes/v1/");

    // What put() does with a stored record's user-set fields: kReplace writes n as it is
    // (fwdctl apply -f); kKeepUserFields (a node registering itself) keeps the stored
    // asNumber, routeReflectorClusterID and labels, n's labels added over them, so a label or
    // cluster ID the user set is not undone by the node's next round.
    enum class Merge { kReplace, kKeepUserFields };
    // Creates or updates n's record (compare-and-swap; an unchanged record is not rewritten).
    // Throws NodeError when n is invalid, or when another record holds one of n's node or
    // tunnel addresses or VTEP MACs (configured or derived, for each family n has an address
    // of): the error names the other node and the address. Throws ConflictError after too
    // many conflicting writes in a row, StoreError when the store fails.
    void put(const NodeRecord &n, Merge merge = Merge::kReplace);
    // Reads, edits and writes back one record under a compare of its revision (again on a
    // race); the edit may change labels, asNumber and routeReflectorClusterID (the user's
    // fields). Returns the record written; throws NodeError when there is no record or the
    // result is invalid.
    NodeRecord update(const std::string &name, const std::function<void(NodeRecord &)> &edit);
    // Checks a batch of records as put() would check each when they are put in order, writing
    // nothing (fwdctl apply -f checks every Node of a file before it writes any): each valid,
    // no name twice, and nothing of batch[i] (address, tunnel address, VTEP MAC) held by a
    // record batch[i] would meet: batch[0..i-1], and the stored records of every other node
    // except those batch[0..i-1] replaced. Throws NodeError naming the node, the field and
    // the holder; StoreError when the store fails.
    void check(const std::vector<NodeRecord> &batch);
    // False when there was no record of that name.
    bool remove(const std::string &name);
    // The record, or nullopt; throws NodeError when the stored record is malformed.
    std::optional<NodeRecord> get(const std::string &name);
    // True when a record of that name is stored, readable or not.
    bool exists(const std::string &name) { return store_.get(key(name)).has_value(); }

    struct Listing {
        std::vector<NodeRecord> nodes;  // the valid, unconflicted records, sorted by name
        // (key, why) of every record left out: a malformed one, or one holding an address or
        // MAC that another record holds too (every such record is left out, each naming the
        // others and the address; the rest of the cluster keeps its routes). Sorted by key.
        std::vector<std::pair<std::string, std::string>> refused;
        // The store's revision read before the listing: a poller lists again once
        // Store::revision() has moved past it.
        int64_t revision = 0;
    };
    Listing list();

    const std::string &prefix() const { return prefix_; }

  private:
    std::string key(const std::string &name) const { return prefix_ + "nodes/" + name; }

    Store &store_;
    std::string prefix_;
    int max_retries_ = 1000;
};

}  // namespace fwd::ipam
