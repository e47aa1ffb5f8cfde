// fwdctl node: this node (node.get: addresses, MTU, uplink, host tap, IPAM, overlay,
// FelixConfiguration, neighbors).
// fwdctl node list: the cluster's nodes as this node last read them from the store (the node.list
// op, control/src/overlay.cpp): addresses, VTEP MACs, tunnel addresses, and how this node reaches
// each one's blocks (vxlan, ipip, native) with the number of routes.
#include <memory>
#include <ostream>
#include <string>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

std::string spec_cell(const json &node, const char *key) {
    const json &spec = node.contains("spec") ? node["spec"] : json::object();
    return cell(spec, key);
}

std::string bgp_cell(const json &node, const char *key) {
    const json &spec = node.contains("spec") ? node["spec"] : json::object();
    const json &bgp = spec.contains("bgp") ? spec["bgp"] : json::object();
    return cell(bgp, key);
}

void print_nodes(const json &result, std::ostream &out) {
    Table table({{"NAME"},
                 {"IPV4"},
                 {"IPV6"},
                 {"VTEP-MAC"},
                 {"VTEP-MAC-V6"},
                 {"TUNNEL4"},
                 {"TUNNEL6"},
                 {"REACHED-BY"},
                 {"ROUTES", true}});
    for (const auto &n : array_field(result, "nodes")) {
        std::string name = cell(n.contains("metadata") ? n["metadata"] : json::object(), "name");
        std::string via;
        if (n.value("self", false)) {
            via = "(this node)";
        } else if (n.contains("via") && n["via"].is_object()) {
            for (const auto &[k, v] : n["via"].items()) {
                via += (via.empty() ? "" : ",") + k;
            }
        }
        table.add_row({name, bgp_cell(n, "ipv4Address"), bgp_cell(n, "ipv6Address"),
                       spec_cell(n, "vxlanTunnelMACAddr"), spec_cell(n, "vxlanTunnelMACAddrV6"),
                       spec_cell(n, "ipv4VXLANTunnelAddr"), spec_cell(n, "ipv6VXLANTunnelAddr"),
                       via.empty() ? "-" : via, cell(n, "routes")});
    }
    table.print(out);
    for (const auto &r : array_field(result, "refused")) {
        out << "refused " << cell(r, "key") << ": " << cell(r, "error") << '\n';
    }
}

void print_node(const json &r, std::ostream &out) {
    print_fields(r, {"node_name", "ipv4", "ipv6", "mtu"}, out);
    const json &up = r.contains("uplink") ? r["uplink"] : json();
    out << "uplink    "
        << (up.is_object() ? cell(up, "devargs") + "  mac " + cell(up, "mac") : std::string("-"))
        << '\n';
    const json &ht = r.contains("host_tap") ? r["host_tap"] : json();
    out << "host tap  " << cell(ht, "name") << '\n';
    const json &ip = r.contains("ipam") ? r["ipam"] : json();
    out << "ipam      ";
    if (ip.is_object()) {
        out << cell(ip, "store") << "  blocks " << cell(ip, "blocks") << "  borrowed "
            << cell(ip, "borrowed") << "  "
            << (ip.value("ok", false) ? "in sync" : "ERROR " + cell(ip, "last_error"));
    } else {
        out << "-";
    }
    out << '\n';
    const json &ov = r.contains("overlay") ? r["overlay"] : json();
    out << "overlay   ";
    if (ov.is_object() && ov.value("enabled", false)) {
        out << "vni " << cell(ov, "vni") << "  port " << cell(ov, "vxlan_port") << "  vtep "
            << cell(ov, "vtep_mac4") << " / " << cell(ov, "vtep_mac6") << "  tunnels "
            << cell(ov, "tunnels") << "  routes " << cell(ov, "routes");
    } else {
        out << "-";
    }
    out << '\n';
    // FelixConfiguration (felix_module.cpp): the settings the cluster's resources give this node
    const json &fx = r.contains("felix") ? r["felix"] : json();
    out << "felix     ";
    if (fx.is_object()) {
        std::string names;
        for (const auto &n : array_field(fx, "resources")) {
            names += (names.empty() ? "" : ", ") + n.get<std::string>();
        }
        out << (names.empty() ? "no FelixConfiguration" : names) << "  "
            << (fx.contains("settings") ? fx["settings"].dump() : "{}");
        for (const auto &p : array_field(fx, "problems")) {
            out << "\n  problem: " << p.get<std::string>();
        }
    } else {
        out << "-";
    }
    out << '\n' << '\n';
    print_neighbors(r, out);
}

void add_node_commands(CLI::App &app, Command &command) {
    CLI::App *node = app.add_subcommand(
        "node", "show the node: addresses, MTU, uplink, IPAM, overlay, neighbors");
    node->add_subcommand("list", "the cluster's nodes and how this node reaches each")
        ->callback([&command] {
            command.request = Request{"node.list", json::object(), print_nodes};
        });
    auto remove_pods = std::make_shared<bool>(false);
    CLI::App *down = node->add_subcommand(
        "shutdown", "stop the daemon; the pods keep their interfaces for the next one");
    down->add_flag("--remove-pods", *remove_pods,
                   "remove every pod's interface and record too (uninstall)");
    down->callback([&command, remove_pods] {
        command.request = Request{"node.shutdown", json{{"remove_pods", *remove_pods}},
                                  [](const json &r, std::ostream &out) {
                                      out << "stopping"
                                          << (r.value("remove_pods", false)
                                                  ? ", removing the pods\n"
                                                  : ", the pods keep their interfaces\n");
                                  }};
    });
    // A subcommand's callback runs before its parent's: `node list` has set its request.
    node->callback([node, &command] {
        if (node->get_subcommands().empty()) {
            command.request = Request{"node.get", json::object(), print_node};
        }
    });
}

}  // namespace

FWD_ON_LOAD(register_group("node", 25, add_node_commands));

}  // namespace fwd::control::fwdctl
