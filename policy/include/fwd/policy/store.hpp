// Policies, namespaces and pod endpoint records in the cluster store (ipam::Store: the
// embedded store or etcd), where every node's daemon watches them.
//
// Keys under the registry's prefix (default "/dpdk-fwd/policy/v1/"), each value the resource
// JSON of fwd/policy/model.hpp:
//   networkpolicies/<ns>/<name>       Calico NetworkPolicy
//   globalnetworkpolicies/<name>      Calico GlobalNetworkPolicy
//   k8snetworkpolicies/<ns>/<name>    Kubernetes NetworkPolicy, as written
//   namespaces/<name>                 Namespace (its labels)
//   pods/<ns>/<name>                  Pod endpoint record
// A write is one transaction over every key it touches, each compared with the revision it
// was planned against: a file is applied whole or not at all, and a writer that lost a race
// plans again.
//
// Control code only: everything here allocates and may throw.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/store.hpp"
#include "fwd/policy/model.hpp"

namespace fwd::policy {

// `fwdctl label`: set holds k=v, remove the keys of k-.
struct LabelEdit {
    std::map<std::string, std::string> set;
    std::vector<std::string> remove;
    bool overwrite = false;  // set may change a label's value (else that is refused)
};

// Parses "k=v" / "k-" arguments; throws PolicyError (field "labels") on a malformed one.
LabelEdit parse_label_args(const std::vector<std::string> &args, bool overwrite);

// Applies an edit to labels: the keys and values checked as Kubernetes checks labels, a value
// changed only with overwrite. Returns what it did, one line per key ("app=web (was api)",
// "tier removed", "gone not present"). Throws PolicyError naming the label.
std::vector<std::string> apply_label_edit(Labels &labels, const LabelEdit &edit,
                                          const std::string &object);

class PolicyRegistry {
  public:
    explicit PolicyRegistry(ipam::Store &s, std::string prefix = "/dpdk-fwd/policy/v1/");

    enum class Action { kCreate, kUpdate, kUnchanged, kDelete };
    struct Change {
        Action action = Action::kCreate;
        Object value;  // as it will be stored (or as removed)
    };
    struct Plan {
        std::vector<Change> changes;  // in the order given
        std::vector<ipam::Compare> compares;
        std::vector<ipam::Operation> ops;
    };

    // What apply() would write, against the store as it is now. A Pod applied without
    // addresses keeps the ones its record holds (status is the cluster's, as kubectl apply
    // leaves it). Writes nothing.
    Plan plan_apply(const std::vector<Object> &objects);
    // Every object must be stored (PolicyError naming it otherwise).
    Plan plan_delete(const std::vector<Object> &objects);
    // One transaction; false when the store moved since the plan (nothing written).
    bool commit(const Plan &p);
    // plan + commit, planning again while other writers win (ipam::ConflictError after too
    // many lost races).
    std::vector<Change> apply(const std::vector<Object> &objects);
    std::vector<Change> remove(const std::vector<Object> &objects);

    // `fwdctl label pod NS/NAME ...` / `fwdctl label namespace NS ...`: the record is read,
    // edited and written back under a compare of its revision (again on a race). A pod or
    // namespace with no record yet gets one (a pod the CNI attached before any manifest).
    // Returns the record written and the edit's lines.
    std::pair<Pod, std::vector<std::string>> label_pod(const std::string &ns,
                                                       const std::string &name,
                                                       const LabelEdit &edit);
    std::pair<Namespace, std::vector<std::string>> label_namespace(const std::string &name,
                                                                   const LabelEdit &edit);

    // One record each; nullopt when there is none. Throws PolicyError on a malformed record.
    std::optional<Pod> get_pod(const std::string &ns, const std::string &name);
    std::optional<Namespace> get_namespace(const std::string &name);

    // The CNI plugin's writes (fwd/policy/pod_network.hpp), each under a compare of the
    // record's revision (again on a race): ADD records the attachment in the pod's record,
    // making a bare one when the pod has none; DEL of that container removes it again, and
    // the record with it when ADD made it and no one wrote anything else into it. detach
    // returns false when the record names another container or does not exist.
    Pod attach_pod(const std::string &ns, const std::string &name, const std::string &node,
                   const std::vector<net::IpAddr> &ips, const std::string &container_id);
    bool detach_pod(const std::string &ns, const std::string &name,
                    const std::string &container_id);

    struct Listing {
        std::vector<Policy> policies;  // every kind, by key
        std::vector<Namespace> namespaces;
        std::vector<Pod> pods;
        // (key, why) of each record left out: malformed, failing validation, or stored
        // under another object's key.
        std::vector<std::pair<std::string, std::string>> refused;
        int64_t revision = 0;  // the store's revision the listing was read at
    };
    // What a list() decoded, by key with the record's mod revision: the object, or why it was
    // refused. A reader that lists again after each change (the node's policy builder) keeps
    // one, and decodes only the records written since (a 10,000-rule policy costs a tenth of
    // a second to decode); keys no longer stored are dropped from it.
    struct ListCache {
        std::map<std::string, std::pair<int64_t, std::variant<Object, std::string>>> records;
    };
    Listing list(ListCache *cache = nullptr);

    std::string key_of(const Object &o) const;
    const std::string &prefix() const { return prefix_; }

  private:
    template <typename T>
    std::pair<T, std::vector<std::string>> edit_labels(const std::string &key, T fresh,
                                                       const LabelEdit &edit);

    ipam::Store &store_;
    std::string prefix_;
    int max_retries_ = 200;
};

std::string_view to_string(PolicyRegistry::Action a);  // "created", "updated", ...

// Pods as policy sees them: each record with the addresses IPAM allocated to it (by the
// namespace and pod of each allocation) when the record has none, and a bare record (no
// labels) for each pod IPAM knows that has no record yet.
std::vector<Pod> with_allocations(std::vector<Pod> pods,
                                  const std::vector<ipam::AllocationInfo> &allocations);

}  // namespace fwd::policy
