// fwdctl bgp status | node, and the BGP kinds of `apply -f` / `delete -f` (BGPConfiguration,
// BGPPeer, Secret): issue 19, fwd/control/bgp.hpp.
//
//   fwdctl bgp status          the daemon's sessions as generated from the store, each with
//                              BIRD's state and the routes received and sent (birdc)
//   fwdctl bgp node NAME ...   a node's labels, asNumber and routeReflectorClusterID in the
//                              registry (kubectl label node / calicoctl patch node)
#include <iostream>

#include "fwd/control/bgp.hpp"
#include "fwd/ipam/open_store.hpp"
#include "fwd/policy/store.hpp"
#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

FileKinds::Write stage_bgp(const std::vector<ipam::RawResource> &raw, ipam::Store &store,
                           bool del) {
    auto rs = bgp::decode_bgp_resources(raw);
    for (const auto &r : rs) {
        for (const auto &w : r.warnings) {
            std::cerr << "fwdctl: warning: " << w.str() << '\n';
        }
    }
    auto registry = std::make_shared<bgp::BgpRegistry>(store);
    auto plan = std::make_shared<bgp::BgpRegistry::Plan>(del ? registry->plan_delete(rs)
                                                             : registry->plan_apply(rs));
    return [rs, registry, plan](json &results) {
        if (!registry->commit(*plan)) {
            std::cerr << "fwdctl: the BGP resources were not written: another writer changed "
                         "them since they were read; apply again\n";
            return kExitError;
        }
        for (size_t i = 0; i < plan->changes.size(); ++i) {
            results.push_back({{"kind", rs[i].origin.kind},
                               {"name", plan->changes[i].name},
                               {"action", bgp::to_string(plan->changes[i].action)},
                               {"document", rs[i].origin.document}});
        }
        return kExitOk;
    };
}

void print_status(const json &r, std::ostream &out) {
    out << "node " << cell(r, "node") << "  AS " << cell(r, "as_number") << "  router id "
        << cell(r, "router_id") << '\n';
    Table t({{"protocol"},
             {"peer"},
             {"AS", true},
             {"node / resource"},
             {"role"},
             {"state"},
             {"since"},
             {"received", true},
             {"sent", true}});
    for (const auto &s : array_field(r, "sessions")) {
        std::string peer = cell(s, "address");
        if (s.value("port", 179) != 179) {
            peer = (peer.find(':') != std::string::npos ? "[" + peer + "]" : peer) + ":" +
                   cell(s, "port");
        }
        std::string role = s.value("rr_client", false) ? "rr client" : "-";
        if (s.value("passive", false)) {
            role += role == "-" ? "" : ",";
            role = role == "-" ? "passive" : role + "passive";
        }
        const std::string who =
            s.value("node", "").empty() ? cell(s, "source") : "node " + cell(s, "node");
        t.add_row({cell(s, "protocol"), peer, cell(s, "as_number"), who, role, cell(s, "state"),
                   cell(s, "since"), cell(s, "received"), cell(s, "sent")});
    }
    t.print(out);
    for (const auto &p : array_field(r, "problems")) {
        out << "problem: " << p.get<std::string>() << '\n';
    }
    for (const auto &p : array_field(r, "refused")) {
        out << "refused: " << cell(p, "key") << ": " << cell(p, "error") << '\n';
    }
    if (!r.value("bird_error", "").empty()) {
        out << "BIRD: " << cell(r, "bird_error") << '\n';
    }
}

struct NodeOptions {
    std::string store;
    std::string node;
    std::vector<std::string> labels;
    bool overwrite = false;
    std::optional<std::string> as_number;
    std::optional<std::string> cluster_id;
    const CLI::Option *json_flag = nullptr;
};

int patch_node(const NodeOptions &o) {
    auto store = ipam::open_store(o.store);
    ipam::NodeRegistry registry(*store);
    std::vector<std::string> lines;
    const auto edit = policy::parse_label_args(o.labels, o.overwrite);
    const ipam::NodeRecord n = registry.update(o.node, [&](ipam::NodeRecord &r) {
        lines = policy::apply_label_edit(r.labels, edit, "node '" + r.name + "'");
        if (o.as_number) {
            if (o.as_number->empty()) {
                r.as_number.reset();
            } else {
                r.as_number = static_cast<uint32_t>(std::stoul(*o.as_number));
            }
            lines.push_back("asNumber " + (o.as_number->empty() ? "removed" : *o.as_number));
        }
        if (o.cluster_id) {
            r.rr_cluster_id = *o.cluster_id;
            lines.push_back("routeReflectorClusterID " +
                            (o.cluster_id->empty() ? "removed" : *o.cluster_id));
        }
    });
    if (o.json_flag != nullptr && o.json_flag->count() > 0) {
        print_json({{"node", json(n)}, {"changes", lines}});
        return kExitOk;
    }
    for (const auto &l : lines) {
        std::cout << "node/" << n.name << ": " << l << '\n';
    }
    return kExitOk;
}

void add_bgp_commands(CLI::App &app, Command &command) {
    CLI::App *group = app.add_subcommand(
        "bgp", "BGP from the cluster store: the daemon's sessions; a node's BGP labels and fields");
    group->require_subcommand(1);
    group
        ->add_subcommand("status",
                         "each BGP session of the node: peer, AS, BIRD's state, routes received "
                         "and sent")
        ->callback([&command] {
            command.request = Request{"bgp.status", json::object(), print_status};
        });
    auto o = std::make_shared<NodeOptions>();
    o->json_flag = app.get_option_no_throw("--json");
    CLI::App *node = group->add_subcommand(
        "node",
        "set a node's labels (k=v, k-), asNumber and routeReflectorClusterID in the registry");
    auto store = add_store_option(node);
    node->add_option("NODE", o->node, "the node's name")->required();
    node->add_option("LABELS", o->labels, "k=v to set a label, k- to remove it");
    node->add_flag("--overwrite", o->overwrite, "allow changing a label's value");
    node->add_option("--as-number", o->as_number, "the node's AS (empty: the cluster's)")
        ->check([](const std::string &s) {
            if (s.empty()) {
                return std::string();
            }
            try {
                const auto n = std::stoull(s);
                return n >= 1 && n <= 0xffffffffULL &&
                               s.find_first_not_of("0123456789") == std::string::npos
                           ? std::string()
                           : std::string("an AS number is 1 to 4294967295");
            } catch (const std::exception &) {
                return std::string("an AS number is 1 to 4294967295");
            }
        });
    node->add_option("--route-reflector-cluster-id", o->cluster_id,
                     "make the node a route reflector of this cluster ID (an IPv4 address; "
                     "empty: no longer one)");
    std::function<int()> &local = command.local;
    node->callback([o, store, &local] {
        o->store = *store;
        local = [o] { return run_guarded([o] { return patch_node(*o); }); };
    });
}

}  // namespace

FWD_ON_LOAD(register_file_kinds({"BGP", "BGPConfiguration, BGPPeer, Secret, FelixConfiguration", 40,
                                 bgp::is_bgp_kind, stage_bgp}));
FWD_ON_LOAD(register_group("bgp", 58, add_bgp_commands));

}  // namespace fwd::control::fwdctl
