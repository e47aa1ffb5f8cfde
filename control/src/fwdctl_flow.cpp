// fwdctl flow list: the uplink's rte_flow rules (the flows module, nic_flows.hpp): each group
// (RSS, VXLAN steering, exact policy drops), whether the NIC took it (installed, validated only,
// or refused with the NIC's reason per option), its rules and, for counted rules, the packets
// they matched.
#include <iostream>
#include <ostream>
#include <sstream>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

void print_flows(const json &r, std::ostream &out) {
    const json &up = r.contains("uplink") ? r["uplink"] : json();
    if (!up.is_object()) {
        out << "no uplink: no flow rules (mode " << cell(r, "mode") << ")\n";
        return;
    }
    out << "uplink port " << cell(up, "port") << " (" << cell(up, "driver") << "), mode "
        << cell(r, "mode") << '\n';
    if (r.value("policy_left", 0) > 0) {
        out << cell(r, "policy_left")
            << " exact policy drop rule(s) past flows.max_policy_rules stay in software\n";
    }
    for (const json &g : array_field(r, "groups")) {
        out << '\n' << cell(g, "kind") << "  " << cell(g, "what") << "  " << cell(g, "state");
        if (g.value("state", "") != "refused" && g.value("options", 0) > 1) {
            out << " (option " << g.value("option", 0) + 1 << " of " << cell(g, "options") << ")";
        }
        if (g.contains("hits") && !g["hits"].is_null()) {
            out << "  hits " << cell(g, "hits");
        }
        out << '\n';
        Table t({{"prio", true}, {"match"}, {"action"}});
        for (const json &rule : array_field(g, "rules")) {
            t.add_row({cell(rule, "priority"), cell(rule, "match"), cell(rule, "action")});
        }
        std::ostringstream rows;
        t.print(rows, false);
        std::istringstream lines(rows.str());
        for (std::string line; std::getline(lines, line);) {
            out << "  " << line << '\n';
        }
        for (const json &e : array_field(g, "errors")) {
            out << "  refused: " << e.get<std::string>() << '\n';
        }
    }
}

void add_flow_commands(CLI::App &app, Command &command) {
    CLI::App *group = app.add_subcommand("flow", "the uplink NIC's flow rules (rte_flow)");
    group->require_subcommand(1);
    CLI::App *list = group->add_subcommand(
        "list", "each rule group (RSS, VXLAN steering, policy drops), its state and hits");
    list->callback([&command] {
        command.request = Request{"flow.list", json::object(), print_flows};
    });
}

}  // namespace

FWD_ON_LOAD(register_group("flow", 36, add_flow_commands));

}  // namespace fwd::control::fwdctl
