// fwdctl conntrack list | count | flush: the connection table (ops conntrack.*, the conntrack
// module, control/src/conntrack.cpp), with filters: --proto, --src and --dst (the original
// tuple's), --addr (either end of either tuple), --port (any port of either tuple), --state
// (TCP), --family; list takes --limit too.
#include <ostream>
#include <string>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

void print_flows(const json &r, std::ostream &out) {
    if (!r.value("enabled", false)) {
        out << "connection tracking is off on this node (no feature needs it)\n";
        return;
    }
    Table table({{"ID", true}, {"ORIGINAL"}, {"REPLY"}, {"STATE"}, {"NAT"}, {"EXPIRES-S", true}});
    for (const auto &f : array_field(r, "flows")) {
        const uint64_t ms = count_of(f, "expires_in_ms");
        table.add_row({cell(f, "id"), cell(f, "orig"), cell(f, "reply"),
                       f.contains("state") && f["state"].is_string() ? cell(f, "state") : "-",
                       f.contains("nat") && f["nat"].is_string() ? cell(f, "nat") : "-",
                       std::to_string(ms / 1000)});
    }
    table.print(out);
    if (r.value("truncated", false)) {
        out << "(more flows: --limit)\n";
    }
}

void filters(CLI::App *cmd, ArgOptions &o) {
    o.text(cmd, "--proto", "proto", "tcp, udp, icmp, icmp6, sctp or a protocol number");
    o.text(cmd, "--src", "src", "the original source address");
    o.text(cmd, "--dst", "dst", "the original destination address");
    o.text(cmd, "--addr", "addr", "an address at either end of either direction");
    o.integer(cmd, "--port", "port", "a port at either end of either direction");
    o.text(cmd, "--state", "state", "a TCP state (syn_sent, established, time_wait, ...)");
    o.integer(cmd, "--family", "family", "4 or 6");
}

void add_conntrack_commands(CLI::App &app, Command &command) {
    CLI::App *group = app.add_subcommand("conntrack", "the connection tracking table");
    group->require_subcommand(1);
    add_request_command(*group, "list", "list tracked flows", "conntrack.list", command,
                        print_flows, [](CLI::App *cmd, ArgOptions &o) {
                            filters(cmd, o);
                            o.integer(cmd, "--limit", "limit", "at most this many (1000)");
                        });
    add_request_command(
        *group, "count", "count tracked flows", "conntrack.count", command,
        [](const json &r, std::ostream &out) {
            if (!r.value("enabled", false)) {
                out << "connection tracking is off on this node (no feature needs it)\n";
                return;
            }
            print_fields(r, {"count", "in_use", "capacity"}, out);
        },
        filters);
    add_request_command(
        *group, "flush", "remove tracked flows (all, or those the filters take)", "conntrack.flush",
        command,
        [](const json &r, std::ostream &out) { out << "flushed " << cell(r, "flushed") << '\n'; },
        filters);
}

}  // namespace

FWD_ON_LOAD(register_group("conntrack", 45, add_conntrack_commands));

}  // namespace fwd::control::fwdctl
