// fwdctl policy list | show | trace | pod, fwdctl label pod | namespace, and the policy kinds'
// entry of `fwdctl apply -f` / `delete -f` (NetworkPolicy of either group,
// GlobalNetworkPolicy, Namespace, Pod): Calico policy as data in the cluster store
// (fwd/policy/store.hpp), evaluated from the model (fwd/policy/eval.hpp), no daemon involved;
// `policy show` adds what the daemon at -s compiled of the policy, when one answers. policy
// stats | status | sync ask the daemon (control/src/policy_module.cpp).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/open_store.hpp"
#include "fwd/policy/eval.hpp"
#include "fwd/policy/store.hpp"
#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

// ---- the apply -f / delete -f entry ----

// A registry refusal with the file, document and resource it is about.
std::runtime_error located(const std::vector<policy::PolicyResource> &rs,
                           const policy::PolicyError &e) {
    for (const auto &r : rs) {
        if (policy::describe(r.value) == e.object()) {
            return std::runtime_error(r.origin.str() + ": " +
                                      (e.field().empty() ? "" : e.field() + ": ") + e.why());
        }
    }
    return std::runtime_error(e.what());
}

std::string name_of(const policy::Object &o) {
    if (const auto *p = std::get_if<policy::Policy>(&o)) {
        return p->key();
    }
    if (const auto *n = std::get_if<policy::Namespace>(&o)) {
        return n->name;
    }
    return std::get<policy::Pod>(o).key();
}

FileKinds::Write stage_policies(const std::vector<ipam::RawResource> &raw, ipam::Store &store,
                                bool del) {
    auto rs = policy::decode_policy_resources(raw);
    std::vector<policy::Object> objects;
    for (const auto &r : rs) {
        for (const auto &w : r.warnings) {
            std::cerr << "fwdctl: warning: " << w.str() << '\n';
        }
        objects.push_back(r.value);
    }
    auto registry = std::make_shared<policy::PolicyRegistry>(store);
    auto plan = std::make_shared<policy::PolicyRegistry::Plan>();
    try {
        *plan = del ? registry->plan_delete(objects) : registry->plan_apply(objects);
    } catch (const policy::PolicyError &e) {
        throw located(rs, e);
    }
    return [=](json &results) {
        std::vector<policy::PolicyRegistry::Change> changes = plan->changes;
        try {
            // Another writer moved the store since the plan: plan again, all or nothing.
            if (!registry->commit(*plan)) {
                changes = del ? registry->remove(objects) : registry->apply(objects);
            }
        } catch (const policy::PolicyError &e) {
            std::cerr << "fwdctl: " << located(rs, e).what()
                      << "\nfwdctl: the policies, namespaces and pods were not written (another "
                         "writer changed the store meanwhile)\n";
            return kExitError;
        }
        for (size_t i = 0; i < changes.size() && i < rs.size(); ++i) {
            results.push_back({{"kind", rs[i].origin.kind},
                               {"name", name_of(changes[i].value)},
                               {"action", policy::to_string(changes[i].action)},
                               {"document", rs[i].origin.document}});
        }
        return kExitOk;
    };
}

// ---- what the commands read ----

struct Options {
    std::string store;
    const CLI::Option *socket_opt = nullptr;  // the global -s: the daemon policy show asks
    const CLI::Option *json_flag = nullptr;
    std::string name;  // policy show
    // policy trace
    std::string src, dst, protocol = "TCP", direction, endpoint;
    int src_port = 0, dst_port = 0, icmp_type = 0, icmp_code = 0;
    // label
    std::string target;
    std::vector<std::string> labels;
    bool overwrite = false;
    bool as_json() const { return json_flag != nullptr && json_flag->count() > 0; }
};

struct Cluster {
    std::unique_ptr<ipam::Store> store;
    policy::PolicyRegistry::Listing listing;
    std::unique_ptr<policy::PolicySet> set;
};

// The store's policies, namespaces and pods, the pods with the addresses IPAM gave them.
Cluster load(const Options &o) {
    Cluster c;
    c.store = ipam::open_store(o.store);
    policy::PolicyRegistry registry(*c.store);
    c.listing = registry.list();
    ipam::Allocator alloc(*c.store);
    c.set = std::make_unique<policy::PolicySet>(
        c.listing.policies, c.listing.namespaces,
        policy::with_allocations(c.listing.pods, alloc.allocations()));
    return c;
}

std::string types_text(const policy::Policy &p) {
    return std::string(p.ingress ? "Ingress" : "") + (p.ingress && p.egress ? "," : "") +
           (p.egress ? "Egress" : "");
}

std::string order_text(const policy::Policy &p) {
    if (!p.order) {
        return "-";
    }
    const double v = *p.order;
    if (v == static_cast<double>(static_cast<long long>(v))) {
        return std::to_string(static_cast<long long>(v));
    }
    return json(v).dump();
}

std::string selector_text(const policy::Policy &p) {
    std::string s = p.selector.present() ? p.selector.parsed.str() : "all()";
    if (p.namespace_selector.present()) {
        s += " (namespaces: " + p.namespace_selector.text + ")";
    }
    return s;
}

void print_refused(const policy::PolicyRegistry::Listing &l) {
    for (const auto &[k, why] : l.refused) {
        std::cout << "refused " << k << ": " << why << '\n';
    }
}

int list(const Options &o) {
    const Cluster c = load(o);
    if (o.as_json()) {
        json out{{"store", c.store->describe()},
                 {"revision", c.listing.revision},
                 {"policies", json::array()},
                 {"refused", json::array()}};
        for (const auto &p : c.set->policies()) {
            json e = policy::to_json(p);
            e["key"] = p.key();
            e["endpoints"] = json::array();
            for (const auto *ep : c.set->selected_by(p)) {
                e["endpoints"].push_back(ep->key());
            }
            out["policies"].push_back(e);
        }
        for (const auto &[k, why] : c.listing.refused) {
            out["refused"].push_back({{"key", k}, {"why", why}});
        }
        print_json(out);
        return kExitOk;
    }
    std::cout << "policies in " << c.store->describe() << ", in evaluation order\n\n";
    Table t({{"POLICY"},
             {"KIND"},
             {"ORDER", true},
             {"SELECTOR"},
             {"TYPES"},
             {"IN", true},
             {"OUT", true},
             {"ENDPOINTS", true}});
    for (const auto &p : c.set->policies()) {
        t.add_row({p.key(),
                   p.kind == policy::PolicyKind::kKubernetes ? "k8s"
                   : p.kind == policy::PolicyKind::kGlobal   ? "global"
                                                             : "calico",
                   order_text(p), selector_text(p), types_text(p),
                   std::to_string(p.ingress_rules.size()), std::to_string(p.egress_rules.size()),
                   std::to_string(c.set->selected_by(p).size())});
    }
    t.print(std::cout);
    std::cout << '\n'
              << c.listing.namespaces.size() << " namespace record(s), "
              << c.set->endpoints().size() << " pod endpoint(s)\n";
    print_refused(c.listing);
    return kExitOk;
}

int show(const Options &o) {
    const Cluster c = load(o);
    const auto &ps = c.set->policies();
    auto it = std::find_if(ps.begin(), ps.end(), [&](const policy::Policy &p) {
        return p.key() == o.name ||
               (p.kind == policy::PolicyKind::kKubernetes && p.ns + "/" + p.name == o.name);
    });
    if (it == ps.end()) {
        std::cerr << "fwdctl: no policy '" << o.name
                  << "' (names: ns/name, name for a GlobalNetworkPolicy, ns/knp.default.name or "
                     "ns/name for a Kubernetes policy; see fwdctl policy list)\n";
        return kExitError;
    }
    const policy::Policy &p = *it;
    // What the node enforces of it: its compiled rules and the endpoints it selects there.
    json node;
    std::string node_note;
    const std::string socket = o.socket_opt ? o.socket_opt->as<std::string>() : kDefaultApiSocket;
    try {
        ApiClient client(socket);
        node = client.call("policy.show", {{"name", p.key()}});
    } catch (const ApiConnectionError &e) {
        node_note = "no daemon at " + socket + " (" + e.what() + "): compiled rules not shown";
    } catch (const ApiError &e) {
        node_note = "the daemon at " + socket + " says " + e.code() + ": " + e.what();
    }
    json out = policy::to_json(p);
    if (p.kind == policy::PolicyKind::kKubernetes) {
        // What Calico makes of it: the model's rules, as a Calico policy.
        policy::Policy calico = p;
        calico.kind = policy::PolicyKind::kCalico;
        calico.name = p.calico_name();
        out = {{"networking.k8s.io/v1", out}, {"as Calico", policy::to_json(calico)}};
    }
    json endpoints = json::array();
    for (const auto *ep : c.set->selected_by(p)) {
        endpoints.push_back(ep->key());
    }
    if (o.as_json()) {
        print_json({{"policy", out},
                    {"key", p.key()},
                    {"endpoints", endpoints},
                    {"node", node.is_null() ? json{{"note", node_note}} : node}});
        return kExitOk;
    }
    std::cout << "policy " << p.key() << " (" << policy::to_string(p.kind) << "), order "
              << order_text(p) << ", types " << types_text(p) << "\nselects " << endpoints.size()
              << " endpoint(s)";
    for (const auto &e : endpoints) {
        std::cout << ' ' << e.get<std::string>();
    }
    std::cout << "\n\n" << out.dump(2) << '\n';
    if (node.is_null()) {
        std::cout << "\non the node: " << node_note << '\n';
        return kExitOk;
    }
    std::cout << "\non the node (store revision " << cell(node, "revision") << "):\n";
    for (const auto &e : array_field(node, "selected")) {
        std::cout << "  selects " << cell(e, "pod")
                  << (e.value("local", false) ? " here, class " + cell(e, "class") : " elsewhere")
                  << '\n';
    }
    std::cout << "  " << cell(node, "compiled_total") << " compiled rule(s)";
    if (count_of(node, "compiled_shown") < count_of(node, "compiled_total")) {
        std::cout << ", the first " << cell(node, "compiled_shown") << " shown";
    }
    std::cout << '\n';
    for (const auto &r : array_field(node, "compiled")) {
        std::cout << "  IPv" << cell(r, "family") << ' ' << cell(r, "direction") << " rule "
                  << cell(r, "rule") << " (" << cell(r, "action") << "): " << cell(r, "flat")
                  << '\n';
    }
    return kExitOk;
}

void print_stats(const json &r, std::ostream &out) {
    Table t({{"POLICY"},
             {"DIRECTION"},
             {"RULE", true},
             {"ACTION"},
             {"PACKETS", true},
             {"AT NIC", true},
             {"BYTES", true}});
    // PACKETS counts the uplink NIC's early drops too (AT NIC, not in BYTES)
    for (const auto &x : array_field(r, "rules")) {
        t.add_row({cell(x, "policy"), cell(x, "direction"), cell(x, "rule"), cell(x, "action"),
                   cell(x, "packets"), cell(x, "nic_packets"), cell(x, "bytes")});
    }
    t.print(out);
}

void print_status(const json &r, std::ostream &out) {
    print_fields(r,
                 {"enabled", "generation", "revision", "policies", "builds", "build_errors",
                  "last_error", "last_build_ms", "defaultEndpointToHostAction"},
                 out);
    if (r.contains("compiled")) {
        print_fields(r["compiled"], {"classes", "flat_rules"}, out);
        print_fields(r["acl"], {"memory_bytes"}, out);
    }
    for (const auto &n : array_field(r, "notes")) {
        out << "note " << n.get<std::string>() << '\n';
    }
}

json verdict_json(const policy::Verdict &v) {
    static const char *const kReasons[] = {"rule", "end-of-tier", "no-policy", "pass"};
    return {{"direction", policy::to_string(v.direction)},
            {"endpoint", v.endpoint},
            {"allowed", v.allowed},
            {"reason", kReasons[static_cast<int>(v.reason)]},
            {"policy", v.policy.empty() ? json() : json(v.policy)},
            {"rule", v.rule < 0 ? json() : json(v.rule)},
            {"applied", v.applied},
            {"logged", v.logged},
            {"why", v.why}};
}

void print_verdict(const policy::Verdict &v) {
    std::cout << policy::to_string(v.direction) << " of " << v.endpoint << ": "
              << (v.allowed ? "ALLOW" : "DENY") << "\n  " << v.why << '\n';
    for (const auto &l : v.logged) {
        std::cout << "  logged by " << l << '\n';
    }
    if (!v.applied.empty()) {
        std::string s;
        for (const auto &a : v.applied) {
            s += (s.empty() ? "" : ", ") + a;
        }
        std::cout << "  policies applied, in order: " << s << '\n';
    }
}

int trace(const Options &o) {
    policy::Packet pkt;
    auto addr = [](const std::string &s, const char *opt) {
        auto a = net::IpAddr::parse(s);
        if (!a) {
            throw CLI::ValidationError(opt, "'" + s + "' is not an IP address");
        }
        return *a;
    };
    pkt.src = addr(o.src, "--src");
    pkt.dst = addr(o.dst, "--dst");
    if (pkt.src.family() != pkt.dst.family()) {
        throw CLI::ValidationError("--dst", "--src and --dst are of different families");
    }
    auto proto = policy::Protocol::parse(o.protocol);
    if (!proto) {
        throw CLI::ValidationError(
            "--protocol", "'" + o.protocol + "': TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1..255");
    }
    pkt.protocol = proto->number;
    pkt.src_port = static_cast<uint16_t>(o.src_port);
    pkt.dst_port = static_cast<uint16_t>(o.dst_port);
    pkt.icmp_type = static_cast<uint8_t>(o.icmp_type);
    pkt.icmp_code = static_cast<uint8_t>(o.icmp_code);
    const Cluster c = load(o);
    std::vector<policy::Verdict> verdicts;
    if (!o.endpoint.empty()) {
        const auto *ep = c.set->endpoint(o.endpoint);
        if (ep == nullptr) {
            std::cerr << "fwdctl: no pod endpoint '" << o.endpoint << "' (ns/name)\n";
            return kExitError;
        }
        const auto d =
            o.direction == "egress" ? policy::Direction::kEgress : policy::Direction::kIngress;
        verdicts.push_back(c.set->evaluate(pkt, d, *ep));
    } else {
        const auto t = c.set->trace(pkt);
        for (const auto &v : {t.egress, t.ingress}) {
            if (v && (o.direction.empty() ||
                      o.direction ==
                          (v->direction == policy::Direction::kIngress ? "ingress" : "egress"))) {
                verdicts.push_back(*v);
            }
        }
    }
    bool allowed = true;
    for (const auto &v : verdicts) {
        allowed = allowed && v.allowed;
    }
    if (o.as_json()) {
        json out{{"packet", pkt.str()}, {"allowed", allowed}, {"verdicts", json::array()}};
        for (const auto &v : verdicts) {
            out["verdicts"].push_back(verdict_json(v));
        }
        print_json(out);
        return kExitOk;
    }
    std::cout << pkt.str() << '\n';
    if (verdicts.empty()) {
        std::cout << "neither address is a pod's: no pod policy applies\n";
        return kExitOk;
    }
    for (const auto &v : verdicts) {
        print_verdict(v);
    }
    std::cout << (allowed ? "ALLOWED" : "DENIED") << '\n';
    return kExitOk;
}

// `policy pod NS/NAME`: the pod's record as stored (labels, annotations, what the CNI plugin
// wrote: node, addresses, container id).
int pod_record(const Options &o) {
    const auto slash = o.target.find('/');
    if (slash == std::string::npos) {
        throw CLI::ValidationError("POD", "'" + o.target + "': want namespace/name");
    }
    auto store = ipam::open_store(o.store);
    const auto pod = policy::PolicyRegistry(*store).get_pod(o.target.substr(0, slash),
                                                            o.target.substr(slash + 1));
    if (!pod) {
        std::cerr << "fwdctl: no record of pod '" << o.target << "' in " << store->describe()
                  << '\n';
        return kExitError;
    }
    const json rec = policy::to_json(*pod);
    if (o.as_json()) {
        print_json(rec);
    } else {
        std::cout << rec.dump(2) << '\n';
    }
    return kExitOk;
}

int label(const Options &o, bool pod) {
    auto store = ipam::open_store(o.store);
    policy::PolicyRegistry registry(*store);
    const auto edit = policy::parse_label_args(o.labels, o.overwrite);
    std::vector<std::string> lines;
    std::string what;
    json labels;
    if (pod) {
        const auto slash = o.target.find('/');
        if (slash == std::string::npos) {
            throw CLI::ValidationError("POD", "'" + o.target + "': want namespace/name");
        }
        auto [p, l] =
            registry.label_pod(o.target.substr(0, slash), o.target.substr(slash + 1), edit);
        what = "pod " + p.key();
        labels = p.labels;
        lines = std::move(l);
    } else {
        auto [n, l] = registry.label_namespace(o.target, edit);
        what = "namespace " + n.name;
        labels = n.labels;
        lines = std::move(l);
    }
    if (o.as_json()) {
        print_json({{"object", what}, {"labels", labels}, {"changes", lines}});
        return kExitOk;
    }
    std::cout << what << " labelled\n";
    for (const auto &l : lines) {
        std::cout << "  " << l << '\n';
    }
    return kExitOk;
}

int label_pod(const Options &o) {
    return label(o, true);
}

int label_namespace(const Options &o) {
    return label(o, false);
}

// A PolicyError from the store's side (a label refused) reads as the others: exit 1.
int guarded(const std::function<int()> &fn) {
    return run_guarded([&] {
        try {
            return fn();
        } catch (const policy::PolicyError &e) {
            std::cerr << "fwdctl: " << e.what() << '\n';
            return kExitError;
        }
    });
}

void add_policy_commands(CLI::App &app, Command &command) {
    std::function<int()> &local = command.local;
    auto o = std::make_shared<Options>();
    o->json_flag = app.get_option_no_throw("--json");
    auto runner = [o, &local](std::shared_ptr<std::string> store, int (*fn)(const Options &)) {
        return [o, store, fn, &local] {
            o->store = *store;
            local = [o, fn] { return guarded([o, fn] { return fn(*o); }); };
        };
    };

    CLI::App *group = app.add_subcommand(
        "policy", "Calico network policy from the cluster store: list, show, trace a packet");
    group->require_subcommand(1);
    auto store = add_store_option(group);
    o->socket_opt = app.get_option_no_throw("--api-socket");
    add_request_command(*group, "stats",
                        "per-rule packet and byte counts on this node, summed over the workers "
                        "and over the rule sets enforced since the start",
                        "policy.stats", command, print_stats);
    add_request_command(*group, "status",
                        "what this node enforces: the build, its revision, rule counts, memory, "
                        "the host protection settings, the last error",
                        "policy.status", command, print_status);
    add_request_command(
        *group, "sync", "return once the node enforces what the store holds now", "policy.sync",
        command,
        [](const json &r, std::ostream &out) {
            out << "enforced: generation " << cell(r, "generation") << " after " << cell(r, "ms")
                << " ms\n";
        },
        [](CLI::App *cmd, ArgOptions &a) {
            a.integer(cmd, "--timeout-ms", "timeout_ms", "how long to wait (5000)");
        });
    group->add_subcommand("list", "policies in evaluation order, with the endpoints each selects")
        ->callback(runner(store, list));
    CLI::App *show_cmd = group->add_subcommand(
        "show", "one policy as stored (a Kubernetes one also as Calico's rules) and its endpoints");
    show_cmd->add_option("NAME", o->name, "ns/name, or name for a GlobalNetworkPolicy")->required();
    show_cmd->callback(runner(store, show));
    CLI::App *trace_cmd = group->add_subcommand(
        "trace",
        "the verdict on a packet: the egress of the pod sending it and the ingress of the pod "
        "receiving it, with the deciding policy and rule");
    trace_cmd->add_option("--src", o->src, "source address")->required();
    trace_cmd->add_option("--dst", o->dst, "destination address")->required();
    trace_cmd->add_option("-p,--protocol", o->protocol, "TCP (default), UDP, ICMP, ICMPv6, ...");
    trace_cmd->add_option("--sport", o->src_port, "source port")->check(CLI::Range(0, 65535));
    trace_cmd->add_option("--dport", o->dst_port, "destination port")->check(CLI::Range(0, 65535));
    trace_cmd->add_option("--icmp-type", o->icmp_type, "ICMP type")->check(CLI::Range(0, 255));
    trace_cmd->add_option("--icmp-code", o->icmp_code, "ICMP code")->check(CLI::Range(0, 255));
    trace_cmd->add_option("--direction", o->direction, "only this side")
        ->check(CLI::IsMember({"ingress", "egress"}));
    trace_cmd->add_option("--endpoint", o->endpoint,
                          "evaluate for this pod (ns/name) in --direction (default ingress), "
                          "whatever its addresses");
    trace_cmd->callback(runner(store, trace));
    CLI::App *record_cmd = group->add_subcommand(
        "pod", "a pod's record: labels, annotations, and the node and addresses CNI wrote");
    record_cmd->add_option("POD", o->target, "namespace/name")->required();
    record_cmd->callback(runner(store, pod_record));

    CLI::App *label_group = app.add_subcommand(
        "label", "set (k=v) or remove (k-) labels of a pod or namespace record in the store");
    label_group->require_subcommand(1);
    auto label_store = add_store_option(label_group);
    label_group->add_flag("--overwrite", o->overwrite, "allow changing a label's value");
    CLI::App *pod_cmd = label_group->add_subcommand("pod", "a pod's labels");
    pod_cmd->add_option("POD", o->target, "namespace/name")->required();
    pod_cmd->add_option("LABELS", o->labels, "k=v to set, k- to remove")->required();
    pod_cmd->callback(runner(label_store, label_pod));
    CLI::App *ns_cmd = label_group->add_subcommand("namespace", "a namespace's labels");
    ns_cmd->add_option("NAMESPACE", o->target, "name")->required();
    ns_cmd->add_option("LABELS", o->labels, "k=v to set, k- to remove")->required();
    ns_cmd->callback(runner(label_store, label_namespace));
}

}  // namespace

FWD_ON_LOAD(register_file_kinds({"policy", "NetworkPolicy, GlobalNetworkPolicy, Namespace, Pod", 30,
                                 policy::is_policy_kind, stage_policies}));
FWD_ON_LOAD(register_group("policy", 57, add_policy_commands));

}  // namespace fwd::control::fwdctl
