// fwdctl endpoint add | del | get | list: pod endpoints in the daemon.
//
// --kind is passed through unchecked: port kinds are the daemon's (a new kind must not need a
// new fwdctl), and its error for an unknown kind names the known ones.
#include <ostream>
#include <string>
#include <vector>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

const std::vector<const char *> kEndpointFields = {
    "id",  "kind",    "netns",  "ifname",      "ipv4",         "ipv6",       "mac",
    "mtu", "port_id", "worker", "host_ifname", "vhost_socket", "tun_queues", "vhost_queues",
};

void print_endpoint(const json &endpoint, std::ostream &out) {
    print_fields(endpoint, kEndpointFields, out);
}

void print_endpoint_list(const json &result, std::ostream &out) {
    Table table({{"ID"},
                 {"KIND"},
                 {"NETNS"},
                 {"IFNAME"},
                 {"IPV4"},
                 {"IPV6"},
                 {"MAC"},
                 {"MTU", true},
                 {"PORT", true},
                 {"WORKER", true}});
    for (const auto &e : array_field(result, "endpoints")) {
        table.add_row({cell(e, "id"), cell(e, "kind"), cell(e, "netns"), cell(e, "ifname"),
                       cell(e, "ipv4"), cell(e, "ipv6"), cell(e, "mac"), cell(e, "mtu"),
                       cell(e, "port_id"), cell(e, "worker")});
    }
    table.print(out);
}

// What applies to one pod on this node, in order, per direction (policy.endpoint).
void print_endpoint_policy(const json &r, std::ostream &out) {
    out << "pod " << cell(r, "pod")
        << (r.value("local", false) ? " (on this node, class " + cell(r, "class") + ")"
                                    : " (not on this node)")
        << "\n";
    std::string ips;
    for (const auto &ip : array_field(r, "ips")) {
        ips += (ips.empty() ? "" : ", ") + ip.get<std::string>();
    }
    out << "addresses " << (ips.empty() ? "-" : ips) << "\n";
    std::string labels;
    const json all = r.value("labels", json::object());
    for (const auto &[k, v] : all.items()) {
        labels += (labels.empty() ? "" : ", ") + k + "=" + v.get<std::string>();
    }
    out << "labels " << (labels.empty() ? "-" : labels) << "\n";
    for (const char *dir : {"ingress", "egress"}) {
        const json d = r.value(dir, json::object());
        out << "\n" << dir << ":\n";
        int i = 0;
        for (const auto &p : array_field(d, "policies")) {
            out << "  " << ++i << ". " << cell(p, "policy") << " (" << cell(p, "kind") << ", order "
                << cell(p, "order") << "): ";
            std::string rules;
            for (const auto &x : array_field(p, "rules")) {
                rules += (rules.empty() ? "" : ", ") + cell(x, "action");
            }
            out << (rules.empty() ? "no rules" : rules) << "\n";
        }
        out << "  then " << cell(d, "default") << "\n";
    }
}

void add_endpoint_commands(CLI::App &app, Command &command) {
    CLI::App *group = app.add_subcommand("endpoint", "manage pod endpoints");
    group->require_subcommand(1);

    add_request_command(
        *group, "add", "attach a pod: create its port and routes", "endpoint.add", command,
        print_endpoint, [](CLI::App *cmd, ArgOptions &o) {
            o.text(cmd, "--id", "id", "endpoint id, unique on the node")->required();
            o.text(cmd, "--netns", "netns",
                   "pod network namespace: a path, or a name under /var/run/netns "
                   "(required for tap pods)");
            o.text(cmd, "--ifname", "ifname", "interface name inside the pod (default eth0)");
            o.text(cmd, "--ipv4", "ipv4", "pod IPv4 address");
            o.text(cmd, "--ipv6", "ipv6", "pod IPv6 address");
            o.text(cmd, "--kind", "kind",
                   "port kind: tap (default), tun, vhost-user, or another the daemon knows");
            o.integer(cmd, "--mtu", "mtu", "MTU of the pod interface");
            o.text(cmd, "--mac", "mac", "pod MAC address (required for vhost-user)");
            o.text(cmd, "--vhost-socket", "vhost_socket", "vhost-user socket path");
            o.text(cmd, "--vhost-mode", "vhost_mode", "vhost-user socket role (default server)")
                ->check(CLI::IsMember({"server", "client"}));
            o.integer(cmd, "--tun-queues", "tun_queues",
                      "queues of a tun pod's tap (default one per worker, at most 8)");
            o.integer(cmd, "--vhost-queues", "vhost_queues",
                      "queue pairs of a vhost-user pod's port (default 1, at most 8)");
        });

    add_request_command(
        *group, "del", "detach a pod: remove its routes and port", "endpoint.del", command,
        [](const json &result, std::ostream &out) {
            out << "endpoint " << cell(result, "id") << " deleted\n";
        },
        [](CLI::App *cmd, ArgOptions &o) { o.text(cmd, "--id", "id", "endpoint id")->required(); });

    add_request_command(
        *group, "get", "show one endpoint", "endpoint.get", command, print_endpoint,
        [](CLI::App *cmd, ArgOptions &o) { o.text(cmd, "--id", "id", "endpoint id")->required(); });

    add_request_command(*group, "list", "list all endpoints", "endpoint.list", command,
                        print_endpoint_list);

    add_request_command(
        *group, "policy",
        "the policies that apply to a pod on this node, in order, per direction, as enforced",
        "policy.endpoint", command, print_endpoint_policy, [](CLI::App *cmd, ArgOptions &o) {
            o.text(cmd, "POD", "pod", "namespace/name (default namespace: default)")->required();
        });
}

}  // namespace

FWD_ON_LOAD(register_group("endpoint", 10, add_endpoint_commands));

}  // namespace fwd::control::fwdctl
