// BGP configured the Calico way (issue 19): the resources a Calico user applies
// (BGPConfiguration, BGPPeer, the v1 Secret holding a peer's password), kept in the cluster
// store, and the BIRD 2 configuration a node derives from them and from the node registry, as
// Calico's confd derives bird.cfg / bird6.cfg (here IPv4 and IPv6 in one file).
//
// Store keys under the registry's prefix (default "/dpdk-fwd/bgp/v1/"), each value the
// resource's JSON as applied (validated again when read):
//   bgpconfigurations/<name>   "default" (cluster-wide) or "node.<node>" (one node's)
//   bgppeers/<name>
//   secrets/<namespace>/<name> only secrets a BGPPeer or the mesh names are read by nodes
//   felixconfigurations/<name> "default" or "node.<node>" (felix.hpp)
// A file is written in one transaction over every key it touches, each compared with the
// revision it was planned against (a file is applied whole or not at all).
//
// Control code only: everything here allocates and may throw.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fwd/control/felix.hpp"
#include "fwd/ipam/model.hpp"
#include "fwd/ipam/node.hpp"
#include "fwd/ipam/resource.hpp"
#include "fwd/ipam/store.hpp"
#include "fwd/label/selector.hpp"
#include "fwd/net/addr.hpp"
#include "fwd/svc/service.hpp"

namespace fwd::bgp {

constexpr uint32_t kDefaultAsNumber = 64512;  // Calico's default AS
constexpr uint16_t kDefaultPort = 179;
// Where calico-node runs (the operator's namespace): a password's secretKeyRef names a Secret
// of the node pod's namespace, as in Calico.
constexpr const char *kSecretNamespace = "calico-system";

struct Selector {
    std::string text;  // as written; empty: not given
    label::Selector sel;
};

struct SecretKeyRef {
    std::string name;
    std::string key;
};

struct Community {
    std::string name;
    std::string value;  // "aa:nn" (standard) or "aa:nn:mm" (large)
};

struct PrefixAdvertisement {
    ipam::Cidr cidr;
    std::vector<std::string> communities;  // values ("aa:nn"), names already resolved
};

// BGPConfiguration: "default", or "node.<node>" for one node's settings.
struct BgpConfiguration {
    std::string name;
    std::string log_severity;  // Debug, Info, Warning, Error, Fatal; "" = Info
    std::optional<bool> node_to_node_mesh;
    std::optional<uint32_t> as_number;
    std::vector<ipam::Cidr> service_cluster_ips;
    std::vector<ipam::Cidr> service_external_ips;
    std::vector<ipam::Cidr> service_load_balancer_ips;
    std::vector<Community> communities;
    std::vector<PrefixAdvertisement> prefix_advertisements;
    std::optional<uint16_t> listen_port;
    std::optional<SecretKeyRef> node_mesh_password;
    std::optional<uint32_t> node_mesh_max_restart_s;
};

struct BgpPeer {
    std::string name;
    std::string node;        // spec.node: only this node
    Selector node_selector;  // which local nodes have the peering (empty, no node: all)
    std::optional<net::IpAddr> peer_ip;
    std::optional<uint16_t> peer_port;  // from "a:port" / "[a]:port"
    uint32_t as_number = 0;             // 0: not given
    Selector peer_selector;             // remote cluster nodes (instead of peerIP)
    bool keep_original_next_hop = false;
    std::optional<SecretKeyRef> password;
    bool source_node_ip = true;  // sourceAddress UseNodeIP (default) | None
    std::optional<uint32_t> max_restart_s;
    std::optional<int32_t> num_allowed_local_as;
    std::optional<uint32_t> keepalive_s;
    std::optional<uint32_t> hold_s;
};

// A v1 Secret: data (base64, decoded here) and stringData merged, as the API server does.
struct Secret {
    std::string ns;
    std::string name;
    std::map<std::string, std::string> data;
};

// FelixConfiguration (felix.hpp) shares the registry: Calico's cluster configuration kinds.
using Object = std::variant<BgpConfiguration, BgpPeer, Secret, felix::FelixConfiguration>;

struct Decoded {
    Object value;
    ipam::ResourceOrigin origin;
    std::vector<svc::Warning> warnings;
    nlohmann::json json;  // the document as stored (server-set metadata dropped)
};

// BGPConfiguration, BGPPeer, Secret, FelixConfiguration (their List kinds are split by the file
// reader).
bool is_bgp_kind(std::string_view kind);

// Decodes and validates every resource as calicoctl / the API server would, in their words;
// apiVersion projectcalico.org/v3 or crd.projectcalico.org/v1 for the Calico kinds, v1 for
// Secret. Throws ipam::ResourceError naming the file, document, resource and field. No name
// twice per kind.
std::vector<Decoded> decode_bgp_resources(const std::vector<ipam::RawResource> &raw);
// One stored document (from the registry); throws ipam::ResourceError.
Object decode_stored(const nlohmann::json &j, const std::string &key);

std::string kind_of(const Object &o);
std::string name_of(const Object &o);  // "ns/name" for a Secret

class BgpRegistry {
  public:
    explicit BgpRegistry(ipam::Store &s, std::string prefix = "/dpdk-fwd/bgp/v1/");

    enum class Action { kCreate, kUpdate, kUnchanged, kDelete };
    struct Change {
        Action action = Action::kCreate;
        std::string kind, name, key;
    };
    struct Plan {
        std::vector<Change> changes;
        std::vector<ipam::Compare> compares;
        std::vector<ipam::Operation> ops;
    };
    Plan plan_apply(const std::vector<Decoded> &objects);
    // Every object must be stored (ResourceError naming it otherwise).
    Plan plan_delete(const std::vector<Decoded> &objects);
    // One transaction; false when the store moved since the plan.
    bool commit(const Plan &p);

    struct Listing {
        std::vector<BgpConfiguration> configs;
        std::vector<BgpPeer> peers;
        std::map<std::string, Secret> secrets;  // "ns/name"
        std::vector<felix::FelixConfiguration> felix;
        std::vector<std::pair<std::string, std::string>> refused;  // (key, why)
        int64_t revision = 0;
    };
    Listing list();
    std::string key_of(const Object &o) const;

  private:
    ipam::Store &store_;
    std::string prefix_;
};

std::string_view to_string(BgpRegistry::Action a);

// ---- the BIRD configuration of one node ----

struct BirdOptions {
    std::string node;          // this node's name (its record must be in the registry)
    std::string ipam_include;  // the IPAM sync's file (static fwd_ipam4 / fwd_ipam6), or ""
    int kernel_table = 254;
    // Session timers of every peering (BIRD's names, seconds): how fast a session comes back
    // after a reconfiguration restarts it.
    int connect_delay_s = 1;
    int connect_retry_s = 3;
    int error_wait_min_s = 1;
    int error_wait_max_s = 60;
    int graceful_restart_s = 120;
};

// One BGP session of the node, as generated.
struct Session {
    std::string protocol;   // BIRD protocol name: Peer_<address>[_port_<port>]
    std::string source;     // "mesh", or "bgppeer/<name>"
    std::string peer_node;  // the cluster node at the other end, "" for an external peer
    net::Family family = net::Family::kIp4;
    net::IpAddr address;
    uint16_t port = kDefaultPort;
    uint32_t as_number = 0;
    bool rr_client = false;
    bool passive = false;
};

struct BirdConfig {
    std::string text;
    std::vector<Session> sessions;
    std::vector<std::string> problems;  // what was left out and why (a secret not found, ...)
    std::string router_id;
    uint32_t as_number = 0;
};

struct Cluster {
    std::vector<ipam::Cidr> pools;  // enabled IP pools: BGP-learned routes inside are passed on
    std::vector<BgpConfiguration> configs;
    std::vector<BgpPeer> peers;
    std::map<std::string, Secret> secrets;
    std::vector<ipam::NodeRecord> nodes;
};

// Throws std::runtime_error when the node has no record with an address (nothing to peer from).
BirdConfig generate_bird_config(const Cluster &c, const BirdOptions &o);

// The BGP sessions of old_text that new_text changes (both generated): the ones BIRD restarts
// on `birdc configure`, sending its peers a Cease, which makes them drop the session's routes
// until it is back (about 1.5 s measured with BIRD 2.0.12). Sessions added or removed are not
// listed (they restart nothing).
std::vector<std::string> restarted_sessions(const std::string &old_text,
                                            const std::string &new_text);

}  // namespace fwd::bgp
