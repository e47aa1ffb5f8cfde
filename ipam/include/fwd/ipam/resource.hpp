// Calico resources as `fwdctl apply -f` and `fwdctl delete -f` read them, the way calicoctl
// does (../shared/CALICO.md, "Address pools and IPAM"):
//   kind IPPool                 apiVersion projectcalico.org/v3 or crd.projectcalico.org/v1
//   kind IPAMConfiguration      (v3) or IPAMConfig (CRD), metadata.name "default"
//   kind Node                   projectcalico.org/v3: a record of the node registry
//                               (fwd/ipam/node.hpp), decoded and validated as the registry
//                               decodes it
//   kind List / IPPoolList / NodeList   with items; a top-level YAML sequence of resources too
// in YAML (several documents separated by `---`) or JSON. Decoding is strict like calicoctl's:
// an unknown field is an error, not ignored. Calico fields dpdk-fwd does not implement are
// accepted only with their default value (disableBGPExport false, assignmentMode Automatic,
// autoAllocateBlocks true).
//
// Pure functions: no I/O, no store. Every error is a ResourceError naming the source, the
// document (and list item), the resource and the field.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fwd/ipam/model.hpp"
#include "fwd/ipam/node.hpp"

namespace fwd::ipam {

// Where a resource came from: "pools.yaml: document 2, item 1 (IPPool 'v4')".
struct ResourceOrigin {
    std::string source;  // file name, "-" or "<stdin>"
    int document = 0;    // 1-based YAML document; 0: none (the text as a whole)
    int item = 0;        // 1-based item of a list; 0: not in a list
    int line = 0;        // 1-based line where the document or item starts; 0: unknown
    std::string kind;    // as written, e.g. "IPPool", "IPAMConfig", "Node"
    std::string name;    // metadata.name, once known
    std::string str() const;
};

// A bad resource text. what(): "<origin>: <field>: <why>" (field omitted when not one).
class ResourceError : public IpamError {
  public:
    ResourceError(ResourceOrigin origin, std::string field, const std::string &why);
    const ResourceOrigin &origin() const { return origin_; }
    const std::string &field() const { return field_; }  // e.g. "spec.blockSize"; may be ""

  private:
    ResourceOrigin origin_;
    std::string field_;
};

// One resource of a file before decoding (fwd/ipam/document.hpp).
struct RawResource;

// True for the kinds decode_resources() reads: what `fwdctl apply -f` hands to IPAM.
bool is_ipam_kind(std::string_view kind);

struct Resource {
    // Pools normalized and validated on their own; nodes validated (validate_node).
    std::variant<IpPool, IpamConfig, NodeRecord> value;
    ResourceOrigin origin;
    bool is_pool() const { return std::holds_alternative<IpPool>(value); }
    bool is_node() const { return std::holds_alternative<NodeRecord>(value); }
    const IpPool &pool() const { return std::get<IpPool>(value); }
    const IpamConfig &config() const { return std::get<IpamConfig>(value); }
    const NodeRecord &node() const { return std::get<NodeRecord>(value); }
};

// Every resource of `text` in order. Each pool passes validate_pool() on its own, each node
// validate_node(); names are unique per kind within the text (one IPAM configuration at most).
// Throws ResourceError; an empty text (no resource) is an error too. Whether a node clashes
// with another one (an address or VTEP MAC held twice) is the registry's to say
// (NodeRegistry::check), as it needs the store.
std::vector<Resource> parse_resources(std::string_view text, const std::string &source_name);
// The same for resources already split from a file (split_resources), e.g. the IPAM kinds of
// a file that holds other kinds too.
std::vector<Resource> decode_resources(const std::vector<RawResource> &raw);

struct PlannedChange {
    enum class Action { kCreate, kUpdate, kUnchanged, kDelete };
    Action action = Action::kCreate;
    Resource resource;
    std::optional<IpPool> old_pool;      // kUpdate / kUnchanged / kDelete of a pool
    std::optional<NodeRecord> old_node;  // kUpdate / kUnchanged of a node
};
std::string_view to_string(PlannedChange::Action a);

// What `apply` writes: every pool checked against the existing pools and the other resources
// (validate_pool / validate_pool_update: no overlap, cidr and blockSize immutable); a node is
// created, updated or unchanged by its record in existing_nodes (the registry's records of
// the nodes named). Nothing is written by this; a ResourceError means the whole apply must not
// happen.
std::vector<PlannedChange> plan_apply(const std::vector<Resource> &resources,
                                      const std::vector<IpPool> &existing,
                                      const IpamConfig &current_config,
                                      const std::vector<NodeRecord> &existing_nodes = {});

// What `delete` removes: every pool must exist (by name), every node must be one of
// existing_nodes (the names the registry holds); the IPAM configuration goes back to its
// defaults. Whether a pool still has allocations is for the caller (the allocator) to say.
std::vector<PlannedChange> plan_delete(const std::vector<Resource> &resources,
                                       const std::vector<IpPool> &existing,
                                       const std::vector<std::string> &existing_nodes = {});

}  // namespace fwd::ipam
