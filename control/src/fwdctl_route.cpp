// fwdctl route add | del | list, node, neighbor list, tables: the daemon's routing state.
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "fwd/control/rib.hpp"
#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

struct RouteOptions {
    std::string prefix;
    std::vector<std::string> via;
    std::string mac;
    std::string source;
    bool blackhole = false;
    bool unreachable = false;
    std::string file;
    std::string family;
    long long limit = -1;
};

json read_routes_file(const std::string &path) {
    std::ifstream in(path);
    if (!in) {
        throw CLI::ValidationError("--file", "cannot read " + path);
    }
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_array()) {
        throw CLI::ValidationError("--file", path + " must hold a JSON array of routes");
    }
    return j;
}

// The args of route add / del: the routes of --file, or the prefix (with what
// fill adds) and the source.
json route_args(const RouteOptions &o, const std::function<void(json &)> &fill) {
    json args;
    if (!o.file.empty()) {
        args["routes"] = read_routes_file(o.file);
        return args;
    }
    if (o.prefix.empty()) {
        throw CLI::ValidationError("prefix", "give a prefix or --file");
    }
    args["prefix"] = o.prefix;
    if (fill) {
        fill(args);
    }
    if (!o.source.empty()) {
        args["source"] = o.source;
    }
    return args;
}

Request route_change(const char *op, const std::string &done, json args) {
    return Request{op, std::move(args), [done](const json &r, std::ostream &out) {
                       out << cell(r, done.c_str()) << " route(s) " << done << ", table version "
                           << cell(r, "version") << '\n';
                   }};
}

void print_route_list(const json &result, std::ostream &out) {
    Table table({{"PREFIX"}, {"SOURCE"}, {"KIND"}, {"VIA"}, {"ACTIVE"}});
    for (const auto &r : array_field(result, "routes")) {
        std::string via;
        for (const auto &v : array_field(r, "via")) {
            via += (via.empty() ? "" : ",") + v.get<std::string>();
        }
        if (r.contains("endpoint")) {
            via = "endpoint " + cell(r, "endpoint");
        }
        if (r.contains(
                "node")) {  // an overlay tunnel: the node and its address (outer destination)
            via = "node " + cell(r, "node");
        }
        table.add_row({cell(r, "prefix"), cell(r, "source"), cell(r, "kind"),
                       via.empty() ? "-" : via, cell(r, "active") == "true" ? "yes" : "no"});
    }
    table.print(out);
    out << cell(result, "total") << " route(s)\n";
}

void add_route_commands(CLI::App &app, Command &command) {
    CLI::App *group =
        app.add_subcommand("route", "manage routes (static and ipam; bgp is read-only)");
    group->require_subcommand(1);
    auto o = std::make_shared<RouteOptions>();

    CLI::App *add = group->add_subcommand("add", "add or replace routes; live when this returns");
    add->add_option("prefix", o->prefix, "destination prefix, e.g. 10.244.2.0/26 or fd00::/64");
    add->add_option("--via", o->via, "next hop address (repeat for ECMP)");
    add->add_option("--mac", o->mac, "pin the next hop's MAC instead of resolving it");
    add->add_flag("--blackhole", o->blackhole, "drop silently");
    add->add_flag("--unreachable", o->unreachable, "drop with ICMP unreachable");
    add->add_option("--source", o->source, "static (default) or ipam")
        ->check(CLI::IsMember({"static", "ipam"}));
    add->add_option("--file", o->file, "a JSON array of routes to add in one request");
    add->callback([o, &command] {
        command.request = route_change(
            "route.add", "added", route_args(*o, [&o](json &args) {
                if ((o->blackhole ? 1 : 0) + (o->unreachable ? 1 : 0) + (o->via.empty() ? 0 : 1) !=
                    1) {
                    throw CLI::ValidationError(
                        "route", "give exactly one of --via, --blackhole, --unreachable");
                }
                if (o->blackhole) {
                    args["type"] = "blackhole";
                } else if (o->unreachable) {
                    args["type"] = "unreachable";
                } else {
                    args["via"] = o->via.size() == 1 ? json(o->via[0]) : json(o->via);
                }
                if (!o->mac.empty()) {
                    args["mac"] = o->mac;
                }
            }));
    });

    CLI::App *del = group->add_subcommand("del", "remove a route");
    del->add_option("prefix", o->prefix, "destination prefix");
    del->add_option("--source", o->source, "static (default) or ipam")
        ->check(CLI::IsMember({"static", "ipam"}));
    del->add_option("--file", o->file, "a JSON array of {prefix[, source]} to remove");
    del->callback([o, &command] {
        command.request = route_change("route.del", "deleted", route_args(*o, {}));
    });

    CLI::App *list = group->add_subcommand("list", "list routes of every source");
    list->add_option("--source", o->source, "only this source")
        ->check(CLI::IsMember(
            std::vector<std::string>(std::begin(kRouteSourceNames), std::end(kRouteSourceNames))));
    list->add_option("--family", o->family, "ipv4 or ipv6")->check(CLI::IsMember({"ipv4", "ipv6"}));
    list->add_option("--prefix", o->prefix, "only this prefix");
    list->add_option("--limit", o->limit, "at most this many");
    list->callback([o, &command] {
        json args = json::object();
        if (!o->source.empty()) {
            args["source"] = o->source;
        }
        if (!o->family.empty()) {
            args["family"] = o->family;
        }
        if (!o->prefix.empty()) {
            args["prefix"] = o->prefix;
        }
        if (o->limit >= 0) {
            args["limit"] = o->limit;
        }
        command.request = Request{"route.list", args, print_route_list};
    });
}

void add_neighbor_commands(CLI::App &app, Command &command) {
    CLI::App *group = app.add_subcommand("neighbor", "next-hop neighbors on the uplink");
    group->require_subcommand(1);
    add_request_command(*group, "list", "list neighbors and their states", "neighbor.list", command,
                        print_neighbors);
    add_request_command(
        app, "tables", "table versions and sizes", "tables", command,
        [](const json &r, std::ostream &out) {
            print_fields(r,
                         {"version", "ipv4_routes", "ipv6_routes", "ipv4_capacity", "ipv6_capacity",
                          "neighbor_next_hops", "ecmp_groups", "endpoints", "route_changes",
                          "route_errors", "routes_by_source", "bgp", "mbufs"},
                         out);
        });
}

// route, then neighbor and tables, in this --help order.
void add_routing_commands(CLI::App &app, Command &command) {
    add_route_commands(app, command);
    add_neighbor_commands(app, command);
}

}  // namespace

FWD_ON_LOAD(register_group("route", 20, add_routing_commands));

}  // namespace fwd::control::fwdctl
