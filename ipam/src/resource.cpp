// Calico resource texts (YAML or JSON) to pools, the IPAM configuration and node records; see
// the header.
//
// Both syntaxes become one nlohmann::json value per document first (YAML scalars typed the
// way Go's YAML decoder, and so calicoctl, types them), so one strict decoder reads both.
#include "fwd/ipam/resource.hpp"

#include <algorithm>
#include <climits>
#include <map>
#include <set>

#include "fwd/ipam/document.hpp"

namespace fwd::ipam {

using nlohmann::json;

namespace {

constexpr std::string_view kApiV3 = "projectcalico.org/v3";
constexpr std::string_view kApiCrd = "crd.projectcalico.org/v1";
constexpr std::string_view kConfigName = "default";

// ---- JSON values to resources ----

enum class Type { kString, kInteger, kBool, kStringList };

std::string type_name(Type t) {
    switch (t) {
        case Type::kString:
            return "a string";
        case Type::kInteger:
            return "an integer";
        case Type::kBool:
            return "true or false";
        case Type::kStringList:
            break;
    }
    return "a list of strings";
}

bool has_type(const json &v, Type t) {
    switch (t) {
        case Type::kString:
            return v.is_string();
        case Type::kInteger:
            return v.is_number_integer() && v.get<long long>() >= INT_MIN &&
                   v.get<long long>() <= INT_MAX;
        case Type::kBool:
            return v.is_boolean();
        case Type::kStringList:
            break;
    }
    return v.is_array() &&
           std::all_of(v.begin(), v.end(), [](const json &e) { return e.is_string(); });
}

// The fields a mapping may hold and their types. A null value counts as absent, as in Go.
json typed_fields(const json &obj, const std::map<std::string, Type> &fields,
                  const ResourceOrigin &o, const std::string &path) {
    if (obj.is_null()) {
        return json::object();
    }
    if (!obj.is_object()) {
        throw ResourceError(o, path, "want a mapping, got " + obj.dump());
    }
    json out = json::object();
    for (const auto &[key, v] : obj.items()) {
        const std::string field = path + "." + key;
        auto it = fields.find(key);
        if (it == fields.end()) {
            throw ResourceError(o, field, "unknown field");
        }
        if (v.is_null()) {
            continue;
        }
        if (!has_type(v, it->second)) {
            throw ResourceError(o, field, "want " + type_name(it->second) + ", got " + v.dump());
        }
        out[key] = v;
    }
    return out;
}

// The reason of a FieldError without its "<kind> 'x': field: " prefix (the origin says that):
// kind "IP pool" for a PoolError, "node" for a NodeError.
std::string reason(const FieldError &e, std::string_view kind) {
    const std::string prefix =
        std::string(kind) + " '" + e.name() + "': " + (e.field().empty() ? "" : e.field() + ": ");
    const std::string what = e.what();
    return what.starts_with(prefix) ? what.substr(prefix.size()) : what;
}

ResourceError pool_error(const ResourceOrigin &o, const PoolError &e) {
    return ResourceError(o, e.field() == "name" ? "metadata.name" : "spec." + e.field(),
                         reason(e, "IP pool"));
}

// A Calico field dpdk-fwd does not implement: only its default is accepted.
void only_default(const json &spec, const char *field, const json &dflt, const ResourceOrigin &o,
                  const std::string &why) {
    if (spec.contains(field) && spec[field] != dflt) {
        throw ResourceError(o, std::string("spec.") + field,
                            spec[field].dump() + " is not supported: " + why);
    }
}

IpPool decode_pool(const json &spec_in, const ResourceOrigin &o) {
    static const std::map<std::string, Type> kFields{
        {"cidr", Type::kString},           {"blockSize", Type::kInteger},
        {"ipipMode", Type::kString},       {"vxlanMode", Type::kString},
        {"natOutgoing", Type::kBool},      {"disabled", Type::kBool},
        {"nodeSelector", Type::kString},   {"allowedUses", Type::kStringList},
        {"disableBGPExport", Type::kBool}, {"assignmentMode", Type::kString},
    };
    if (spec_in.is_object()) {
        for (const char *old : {"ipip", "nat-outgoing"}) {
            if (spec_in.contains(old)) {
                throw ResourceError(o, std::string("spec.") + old,
                                    "a Calico v1 field, not allowed; use ipipMode / natOutgoing");
            }
        }
    }
    json spec = typed_fields(spec_in, kFields, o, "spec");
    only_default(spec, "disableBGPExport", false, o,
                 "dpdk-fwd advertises every pool's blocks; leave it false");
    if (spec.contains("assignmentMode") && spec["assignmentMode"] != "Automatic" &&
        spec["assignmentMode"] != "Manual") {
        throw ResourceError(o, "spec.assignmentMode",
                            spec["assignmentMode"].dump() + " is not one of Automatic, Manual");
    }
    only_default(spec, "assignmentMode", "Automatic", o,
                 "dpdk-fwd assigns from every enabled pool automatically");
    spec.erase("disableBGPExport");
    spec.erase("assignmentMode");
    // The model's decoder knows Calico's spec names; the name rides along.
    spec["name"] = o.name;
    IpPool p;
    try {
        p = spec.get<IpPool>();
        validate_pool(p);
    } catch (const PoolError &e) {
        throw pool_error(o, e);
    }
    return p;
}

IpamConfig decode_config(const json &spec_in, const ResourceOrigin &o) {
    if (o.name != kConfigName) {
        throw ResourceError(o, "metadata.name",
                            "the IPAM configuration is a single resource named 'default'");
    }
    static const std::map<std::string, Type> kFields{
        {"strictAffinity", Type::kBool},
        {"maxBlocksPerHost", Type::kInteger},
        {"autoAllocateBlocks", Type::kBool},
    };
    json spec = typed_fields(spec_in, kFields, o, "spec");
    only_default(spec, "autoAllocateBlocks", true, o,
                 "dpdk-fwd nodes always claim blocks as they need them");
    IpamConfig c;
    c.strict_affinity = spec.value("strictAffinity", false);
    c.max_blocks_per_host = spec.value("maxBlocksPerHost", 0);
    if (c.max_blocks_per_host < 0) {
        throw ResourceError(o, "spec.maxBlocksPerHost",
                            std::to_string(c.max_blocks_per_host) + " is negative (0 means 20)");
    }
    return c;
}

// A Node as the registry reads it (node.hpp's from_json: the same fields, the same checks).
NodeRecord decode_node(const json &obj, ResourceOrigin &o) {
    const json &meta = obj.contains("metadata") ? obj["metadata"] : json();
    if (meta.is_object() && meta.contains("name") && meta["name"].is_string()) {
        o.name = meta["name"].get<std::string>();
    }
    try {
        return obj.get<NodeRecord>();
    } catch (const NodeError &e) {
        throw ResourceError(o, e.field(), reason(e, "node"));
    }
}

bool is_config_kind(const std::string &kind) {
    return kind == "IPAMConfiguration" || kind == "IPAMConfig";
}

std::string string_field(const json &obj, const char *key, const ResourceOrigin &o,
                         const std::string &path) {
    const std::string field = path.empty() ? key : path + "." + key;
    if (!obj.contains(key) || obj[key].is_null()) {
        throw ResourceError(o, field, "missing");
    }
    if (!obj[key].is_string()) {
        throw ResourceError(o, field, "want a string, got " + obj[key].dump());
    }
    return obj[key].get<std::string>();
}

// Kubernetes object metadata: only the name matters; the server-set fields a
// `kubectl get -o yaml` carries are allowed and ignored.
std::string decode_name(const json &meta, const ResourceOrigin &o) {
    static const std::set<std::string> kKnown{"name",
                                              "namespace",
                                              "uid",
                                              "resourceVersion",
                                              "generation",
                                              "creationTimestamp",
                                              "deletionTimestamp",
                                              "labels",
                                              "annotations",
                                              "managedFields",
                                              "ownerReferences",
                                              "finalizers",
                                              "selfLink",
                                              "generateName",
                                              "deletionGracePeriodSeconds"};
    if (!meta.is_object()) {
        throw ResourceError(o, "metadata", meta.is_null() ? "missing" : "want a mapping");
    }
    for (const auto &[key, v] : meta.items()) {
        if (!kKnown.contains(key)) {
            throw ResourceError(o, "metadata." + key, "unknown field");
        }
    }
    std::string name = string_field(meta, "name", o, "metadata");
    if (name.empty()) {
        throw ResourceError(o, "metadata.name", "empty");
    }
    return name;
}

Resource decode_resource(const json &obj, ResourceOrigin o) {
    if (!obj.is_object()) {
        throw ResourceError(o, "", "not a resource (want a mapping with apiVersion and kind)");
    }
    o.kind = string_field(obj, "kind", o, "");
    if (o.kind != "IPPool" && o.kind != "Node" && !is_config_kind(o.kind)) {
        throw ResourceError(o, "kind",
                            "unknown kind '" + o.kind +
                                "' (want IPPool, IPAMConfiguration / IPAMConfig, Node, or a List)");
    }
    const std::string api = string_field(obj, "apiVersion", o, "");
    if (o.kind == "Node" && api != kApiV3) {
        // The registry keeps Calico's v3 Node; Kubernetes' own Node (v1) is another resource.
        throw ResourceError(
            o, "apiVersion",
            "unknown apiVersion '" + api + "' for Node (want " + std::string(kApiV3) + ")");
    }
    if (api != kApiV3 && api != kApiCrd) {
        throw ResourceError(o, "apiVersion",
                            "unknown apiVersion '" + api + "' for " + o.kind + " (want " +
                                std::string(kApiV3) + " or " + std::string(kApiCrd) + ")");
    }
    for (const auto &[key, v] : obj.items()) {
        if (key != "apiVersion" && key != "kind" && key != "metadata" && key != "spec" &&
            key != "status") {
            throw ResourceError(o, key, "unknown field");
        }
    }
    if (o.kind == "Node") {
        NodeRecord n = decode_node(obj, o);
        return Resource{std::move(n), o};
    }
    o.name = decode_name(obj.contains("metadata") ? obj["metadata"] : json(), o);
    const json spec = obj.contains("spec") ? obj["spec"] : json();
    if (o.kind == "IPPool") {
        return Resource{decode_pool(spec, o), o};
    }
    return Resource{decode_config(spec, o), o};
}

void check_unique(const std::vector<Resource> &rs) {
    std::map<std::string, const Resource *> seen;
    for (const auto &r : rs) {
        const std::string key = r.is_pool()   ? "IPPool/" + r.pool().name
                                : r.is_node() ? "Node/" + r.node().name
                                              : "IPAMConfig";
        auto [it, fresh] = seen.emplace(key, &r);
        if (!fresh) {
            throw ResourceError(r.origin, "metadata.name",
                                "'" + r.origin.name + "' is defined twice (also in " +
                                    it->second->origin.str() + ")");
        }
    }
}

}  // namespace

std::string ResourceOrigin::str() const {
    std::string s = source.empty() ? "<input>" : source;
    if (line > 0) {
        s += ":" + std::to_string(line);
    }
    std::vector<std::string> parts;
    if (document > 0) {
        parts.push_back("document " + std::to_string(document));
    }
    if (item > 0) {
        parts.push_back("item " + std::to_string(item));
    }
    if (!kind.empty()) {
        parts.push_back(name.empty() ? kind : kind + " '" + name + "'");
    }
    for (size_t i = 0; i < parts.size(); ++i) {
        s += (i == 0 ? ": " : ", ") + parts[i];
    }
    return s;
}

ResourceError::ResourceError(ResourceOrigin origin, std::string field, const std::string &why)
    : IpamError(origin.str() + ": " + (field.empty() ? "" : field + ": ") + why),
      origin_(std::move(origin)),
      field_(std::move(field)) {}

bool is_ipam_kind(std::string_view kind) {
    return kind == "IPPool" || kind == "Node" || is_config_kind(std::string(kind));
}

std::vector<Resource> decode_resources(const std::vector<RawResource> &raw) {
    std::vector<Resource> out;
    for (const RawResource &r : raw) {
        // The decoder names the resource itself, once it has read kind and name.
        ResourceOrigin o = r.origin;
        o.kind.clear();
        o.name.clear();
        out.push_back(decode_resource(r.value, o));
    }
    check_unique(out);
    return out;
}

std::vector<Resource> parse_resources(std::string_view text, const std::string &source_name) {
    return decode_resources(split_resources(text, source_name));
}

std::string_view to_string(PlannedChange::Action a) {
    switch (a) {
        case PlannedChange::Action::kUpdate:
            return "updated";
        case PlannedChange::Action::kUnchanged:
            return "unchanged";
        case PlannedChange::Action::kDelete:
            return "deleted";
        case PlannedChange::Action::kCreate:
            break;
    }
    return "created";
}

namespace {

std::optional<IpPool> find_pool(const std::vector<IpPool> &pools, const std::string &name) {
    for (const auto &p : pools) {
        if (p.name == name) {
            return p;
        }
    }
    return std::nullopt;
}

std::optional<NodeRecord> find_node(const std::vector<NodeRecord> &nodes, const std::string &name) {
    for (const auto &n : nodes) {
        if (n.name == name) {
            return n;
        }
    }
    return std::nullopt;
}

}  // namespace

std::vector<PlannedChange> plan_apply(const std::vector<Resource> &resources,
                                      const std::vector<IpPool> &existing,
                                      const IpamConfig &current_config,
                                      const std::vector<NodeRecord> &existing_nodes) {
    // The pools as they will be once everything is applied: what each one must not overlap.
    std::map<std::string, IpPool> after;
    for (const auto &p : existing) {
        after[p.name] = p;
    }
    for (const auto &r : resources) {
        if (r.is_pool()) {
            after[r.pool().name] = r.pool();
        }
    }
    std::vector<IpPool> all;
    for (const auto &[name, p] : after) {
        all.push_back(p);
    }
    std::vector<PlannedChange> plan;
    for (const auto &r : resources) {
        PlannedChange c{PlannedChange::Action::kUpdate, r, std::nullopt, std::nullopt};
        if (r.is_node()) {
            c.old_node = find_node(existing_nodes, r.node().name);
            c.action = !c.old_node               ? PlannedChange::Action::kCreate
                       : *c.old_node == r.node() ? PlannedChange::Action::kUnchanged
                                                 : PlannedChange::Action::kUpdate;
        } else if (r.is_pool()) {
            c.old_pool = find_pool(existing, r.pool().name);
            try {
                if (c.old_pool) {
                    validate_pool_update(*c.old_pool, r.pool(), all);
                } else {
                    validate_pool(r.pool(), all);
                }
            } catch (const PoolError &e) {
                throw pool_error(r.origin, e);
            }
            c.action = !c.old_pool               ? PlannedChange::Action::kCreate
                       : *c.old_pool == r.pool() ? PlannedChange::Action::kUnchanged
                                                 : PlannedChange::Action::kUpdate;
        } else if (r.config().strict_affinity == current_config.strict_affinity &&
                   r.config().max_blocks_per_host == current_config.max_blocks_per_host) {
            c.action = PlannedChange::Action::kUnchanged;
        }
        plan.push_back(std::move(c));
    }
    return plan;
}

std::vector<PlannedChange> plan_delete(const std::vector<Resource> &resources,
                                       const std::vector<IpPool> &existing,
                                       const std::vector<std::string> &existing_nodes) {
    std::vector<PlannedChange> plan;
    for (const auto &r : resources) {
        PlannedChange c{PlannedChange::Action::kDelete, r, std::nullopt, std::nullopt};
        if (r.is_node()) {
            if (std::find(existing_nodes.begin(), existing_nodes.end(), r.node().name) ==
                existing_nodes.end()) {
                throw ResourceError(r.origin, "metadata.name",
                                    "no node named '" + r.node().name + "' in the registry");
            }
        } else if (r.is_pool()) {
            c.old_pool = find_pool(existing, r.pool().name);
            if (!c.old_pool) {
                throw ResourceError(r.origin, "metadata.name",
                                    "no IP pool named '" + r.pool().name + "'");
            }
        }
        plan.push_back(std::move(c));
    }
    return plan;
}

}  // namespace fwd::ipam
