// Policies, namespaces and pods in the cluster store; see fwd/policy/store.hpp.
#include <algorithm>
#include <set>

#include "fwd/policy/pod_network.hpp"
#include "fwd/policy/store.hpp"
#include "k8s_decode.hpp"

namespace fwd::policy {

using nlohmann::json;

namespace {

template <typename F>
auto with_retries(int retries, F &&attempt) {
    for (int i = 0; i < retries; ++i) {
        if (auto done = attempt()) {
            return *done;
        }
    }
    throw ipam::ConflictError("the policy store kept changing under this write (" +
                              std::to_string(retries) + " attempts)");
}

// The record a read of key found, as T (fresh names it in errors); nullopt when there is none.
template <typename T>
std::optional<T> record_of(const std::optional<ipam::KeyValue> &kv, const std::string &key,
                           const T &fresh) {
    if (!kv) {
        return std::nullopt;
    }
    Object o = object_from_json(json::parse(kv->value));
    if (!std::holds_alternative<T>(o)) {
        throw PolicyError(describe(fresh), "", "the record at " + key + " is another kind");
    }
    return std::get<T>(std::move(o));
}

Pod named_pod(const std::string &ns, const std::string &name) {
    Pod p;
    p.ns = ns;
    p.name = name;
    return p;
}

}  // namespace

LabelEdit parse_label_args(const std::vector<std::string> &args, bool overwrite) {
    LabelEdit e;
    e.overwrite = overwrite;
    for (const auto &a : args) {
        if (const auto eq = a.find('='); eq != std::string::npos) {
            e.set[a.substr(0, eq)] = a.substr(eq + 1);
        } else if (a.size() > 1 && a.back() == '-') {
            e.remove.push_back(a.substr(0, a.size() - 1));
        } else {
            throw PolicyError("labels", a, "want key=value to set a label or key- to remove it");
        }
    }
    return e;
}

std::vector<std::string> apply_label_edit(Labels &labels, const LabelEdit &edit,
                                          const std::string &object) {
    std::vector<std::string> out;
    if (auto e = k8s::labels_error(edit.set, "metadata.labels", true)) {
        throw PolicyError(object, e->field, e->why);
    }
    for (const auto &k : edit.remove) {
        if (edit.set.contains(k)) {
            throw PolicyError(object, "metadata.labels." + k, "both set and removed");
        }
    }
    for (const auto &[k, v] : edit.set) {
        auto it = labels.find(k);
        if (it != labels.end() && it->second != v && !edit.overwrite) {
            throw PolicyError(object, "metadata.labels." + k,
                              "already has a value (" + it->second +
                                  "), and overwrite was not asked for (--overwrite)");
        }
        out.push_back(k + "=" + v +
                      (it == labels.end() ? ""
                       : it->second == v  ? " (unchanged)"
                                          : " (was " + it->second + ")"));
        labels[k] = v;
    }
    for (const auto &k : edit.remove) {
        out.push_back(k + (labels.erase(k) ? " removed" : " not present"));
    }
    return out;
}

PolicyRegistry::PolicyRegistry(ipam::Store &s, std::string prefix)
    : store_(s), prefix_(std::move(prefix)) {}

std::string PolicyRegistry::key_of(const Object &o) const {
    if (const auto *p = std::get_if<Policy>(&o)) {
        switch (p->kind) {
            case PolicyKind::kGlobal:
                return prefix_ + "globalnetworkpolicies/" + p->name;
            case PolicyKind::kKubernetes:
                return prefix_ + "k8snetworkpolicies/" + p->ns + "/" + p->name;
            case PolicyKind::kCalico:
                break;
        }
        return prefix_ + "networkpolicies/" + p->ns + "/" + p->name;
    }
    if (const auto *n = std::get_if<Namespace>(&o)) {
        return prefix_ + "namespaces/" + n->name;
    }
    return prefix_ + "pods/" + std::get<Pod>(o).key();
}

PolicyRegistry::Plan PolicyRegistry::plan_apply(const std::vector<Object> &objects) {
    Plan plan;
    for (const auto &o : objects) {
        const std::string key = key_of(o);
        Object want = o;
        const auto kv = store_.get(key);
        plan.compares.push_back({key, kv ? kv->mod_revision : 0});
        Action action = Action::kCreate;
        if (kv) {
            action = Action::kUpdate;
            try {
                const Object stored = object_from_json(json::parse(kv->value));
                auto *pod = std::get_if<Pod>(&want);
                const auto *old = std::get_if<Pod>(&stored);
                if (pod != nullptr && old != nullptr && pod->ips.empty()) {
                    pod->ips = old->ips;
                }
                if (stored == want) {
                    action = Action::kUnchanged;
                }
            } catch (const std::exception &) {
                // A malformed record: the apply writes over it.
            }
        }
        if (action != Action::kUnchanged) {
            plan.ops.push_back({ipam::Operation::Kind::kPut, key, to_json(want).dump()});
        }
        plan.changes.push_back({action, std::move(want)});
    }
    return plan;
}

PolicyRegistry::Plan PolicyRegistry::plan_delete(const std::vector<Object> &objects) {
    Plan plan;
    for (const auto &o : objects) {
        const std::string key = key_of(o);
        const auto kv = store_.get(key);
        if (!kv) {
            throw PolicyError(describe(o), "", "not found");
        }
        plan.compares.push_back({key, kv->mod_revision});
        plan.ops.push_back({ipam::Operation::Kind::kDelete, key, ""});
        plan.changes.push_back({Action::kDelete, o});
    }
    return plan;
}

bool PolicyRegistry::commit(const Plan &p) {
    return p.ops.empty() || store_.txn(p.compares, p.ops);
}

std::vector<PolicyRegistry::Change> PolicyRegistry::apply(const std::vector<Object> &objects) {
    return with_retries(max_retries_, [&]() -> std::optional<std::vector<Change>> {
        Plan p = plan_apply(objects);
        return commit(p) ? std::optional(std::move(p.changes)) : std::nullopt;
    });
}

std::vector<PolicyRegistry::Change> PolicyRegistry::remove(const std::vector<Object> &objects) {
    return with_retries(max_retries_, [&]() -> std::optional<std::vector<Change>> {
        Plan p = plan_delete(objects);
        return commit(p) ? std::optional(std::move(p.changes)) : std::nullopt;
    });
}

template <typename T>
std::pair<T, std::vector<std::string>> PolicyRegistry::edit_labels(const std::string &key, T fresh,
                                                                   const LabelEdit &edit) {
    return with_retries(
        max_retries_, [&]() -> std::optional<std::pair<T, std::vector<std::string>>> {
            const auto kv = store_.get(key);
            T record = kv ? *record_of(kv, key, fresh) : fresh;  // a bad record: refused
            auto lines = apply_label_edit(record.labels, edit, describe(record));
            validate(record);
            if (!store_.txn({{key, kv ? kv->mod_revision : 0}},
                            {{ipam::Operation::Kind::kPut, key, to_json(record).dump()}})) {
                return std::nullopt;
            }
            if (!kv) {
                lines.insert(lines.begin(), "record created");
            }
            return std::pair{std::move(record), std::move(lines)};
        });
}

std::pair<Pod, std::vector<std::string>> PolicyRegistry::label_pod(const std::string &ns,
                                                                   const std::string &name,
                                                                   const LabelEdit &edit) {
    Pod fresh;
    fresh.ns = ns;
    fresh.name = name;
    validate(fresh);
    return edit_labels(key_of(fresh), fresh, edit);
}

std::pair<Namespace, std::vector<std::string>> PolicyRegistry::label_namespace(
    const std::string &name, const LabelEdit &edit) {
    Namespace fresh;
    fresh.name = name;
    validate(fresh);
    return edit_labels(key_of(fresh), fresh, edit);
}

std::optional<Pod> PolicyRegistry::get_pod(const std::string &ns, const std::string &name) {
    const Pod fresh = named_pod(ns, name);
    return record_of(store_.get(key_of(fresh)), key_of(fresh), fresh);
}

std::optional<Namespace> PolicyRegistry::get_namespace(const std::string &name) {
    Namespace fresh;
    fresh.name = name;
    return record_of(store_.get(key_of(fresh)), key_of(fresh), fresh);
}

Pod PolicyRegistry::attach_pod(const std::string &ns, const std::string &name,
                               const std::string &node, const std::vector<net::IpAddr> &ips,
                               const std::string &container_id) {
    const Pod fresh = named_pod(ns, name);
    validate(fresh);
    const std::string key = key_of(fresh);
    return with_retries(max_retries_, [&]() -> std::optional<Pod> {
        const auto kv = store_.get(key);
        Pod record = kv ? *record_of(kv, key, fresh) : fresh;
        set_attachment(record, node, ips, container_id);
        validate(record);
        if (!store_.txn({{key, kv ? kv->mod_revision : 0}},
                        {{ipam::Operation::Kind::kPut, key, to_json(record).dump()}})) {
            return std::nullopt;
        }
        return record;
    });
}

bool PolicyRegistry::detach_pod(const std::string &ns, const std::string &name,
                                const std::string &container_id) {
    const Pod fresh = named_pod(ns, name);
    const std::string key = key_of(fresh);
    return with_retries(max_retries_, [&]() -> std::optional<bool> {
        const auto kv = store_.get(key);
        if (!kv) {
            return false;
        }
        Pod record = *record_of(kv, key, fresh);
        if (!clear_attachment(record, container_id)) {
            return false;
        }
        const bool drop = is_bare(record);
        const ipam::Operation op =
            drop ? ipam::Operation{ipam::Operation::Kind::kDelete, key, ""}
                 : ipam::Operation{ipam::Operation::Kind::kPut, key, to_json(record).dump()};
        if (!store_.txn({{key, kv->mod_revision}}, {op})) {
            return std::nullopt;
        }
        return true;
    });
}

PolicyRegistry::Listing PolicyRegistry::list(ListCache *cache) {
    Listing l;
    std::vector<ipam::KeyValue> kvs;
    // Read the revision before and after, again while something moved in between.
    for (int i = 0; i < max_retries_; ++i) {
        const int64_t before = store_.revision();
        kvs = store_.list(prefix_);
        if (store_.revision() == before) {
            l.revision = before;
            break;
        }
    }
    // A record as an object, or why it is refused.
    auto decode = [&](const ipam::KeyValue &kv) -> std::variant<Object, std::string> {
        try {
            Object o = object_from_json(json::parse(kv.value));
            if (key_of(o) != kv.key) {
                return "holds " + describe(o) + ", whose key is " + key_of(o);
            }
            return o;
        } catch (const std::exception &e) {
            return std::string(e.what());
        }
    };
    ListCache next;
    for (const auto &kv : kvs) {
        std::variant<Object, std::string> got;
        if (cache == nullptr) {
            got = decode(kv);
        } else {
            auto it = cache->records.find(kv.key);
            got = it != cache->records.end() && it->second.first == kv.mod_revision
                      ? std::move(it->second.second)
                      : decode(kv);
        }
        if (const auto *why = std::get_if<std::string>(&got)) {
            l.refused.emplace_back(kv.key, *why);
        } else {
            // A copy when the cache keeps the object.
            Object o = cache != nullptr ? std::get<Object>(got) : std::get<Object>(std::move(got));
            if (auto *p = std::get_if<Policy>(&o)) {
                l.policies.push_back(std::move(*p));
            } else if (auto *n = std::get_if<Namespace>(&o)) {
                l.namespaces.push_back(std::move(*n));
            } else {
                l.pods.push_back(std::get<Pod>(std::move(o)));
            }
        }
        if (cache != nullptr) {
            next.records.emplace(kv.key, std::pair{kv.mod_revision, std::move(got)});
        }
    }
    if (cache != nullptr) {
        *cache = std::move(next);
    }
    std::sort(l.policies.begin(), l.policies.end(),
              [](const Policy &a, const Policy &b) { return a.key() < b.key(); });
    return l;
}

std::string_view to_string(PolicyRegistry::Action a) {
    switch (a) {
        case PolicyRegistry::Action::kUpdate:
            return "updated";
        case PolicyRegistry::Action::kUnchanged:
            return "unchanged";
        case PolicyRegistry::Action::kDelete:
            return "deleted";
        case PolicyRegistry::Action::kCreate:
            break;
    }
    return "created";
}

std::vector<Pod> with_allocations(std::vector<Pod> pods,
                                  const std::vector<ipam::AllocationInfo> &allocations) {
    std::map<std::string, std::vector<net::IpAddr>> by_pod;
    for (const auto &a : allocations) {
        if (!a.attrs.pod.empty()) {
            by_pod[(a.attrs.ns.empty() ? "default" : a.attrs.ns) + "/" + a.attrs.pod].push_back(
                a.addr);
        }
    }
    std::set<std::string> known;
    for (auto &p : pods) {
        known.insert(p.key());
        if (auto it = by_pod.find(p.key()); it != by_pod.end() && p.ips.empty()) {
            p.ips = it->second;
        }
    }
    for (const auto &[key, ips] : by_pod) {
        if (!known.contains(key)) {
            Pod p;
            p.ns = key.substr(0, key.find('/'));
            p.name = key.substr(key.find('/') + 1);
            p.ips = ips;
            pods.push_back(std::move(p));
        }
    }
    return pods;
}

}  // namespace fwd::policy
