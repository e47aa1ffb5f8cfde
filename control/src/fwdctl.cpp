// fwdctl: the command line front end of the dpdk-fwd control API.
//
// Each command group registers its subcommands in one add_*_commands function. A subcommand's
// callback only records the Request to send and how to print its result; main() sends it and
// turns failures into messages and exit codes in one place. New groups (routes, ipam, apply)
// add a function and a line in main().
//
// Exit codes: 0 success, 1 the daemon answered with an error, 2 usage error, 3 the daemon
// cannot be reached.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fwd/control/api.hpp"

namespace fwd::control {

void add_ipam_commands(CLI::App &app, std::function<int()> &local);

namespace {

using nlohmann::json;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;
constexpr const char *kSocketEnv = "FWD_API_SOCKET";

// What the command line asks the daemon for, and how to show the answer to a human.
struct Request {
    std::string op;
    json args = json::object();
    std::function<void(const json &result, std::ostream &out)> print;
};

// ---------------------------------------------------------------------------------------------
// Output helpers shared by every command.

// Aligned columns separated by two spaces. Numbers read best right-aligned, text left-aligned.
class Table {
  public:
    struct Column {
        std::string title;
        bool right = false;
    };

    explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

    void add_row(std::vector<std::string> cells) {
        cells.resize(columns_.size());
        rows_.push_back(std::move(cells));
    }

    void print(std::ostream &out, bool header = true) const {
        std::vector<size_t> width(columns_.size(), 0);
        for (size_t i = 0; i < columns_.size(); i++) {
            width[i] = header ? columns_[i].title.size() : 0;
            for (const auto &row : rows_) {
                width[i] = std::max(width[i], row[i].size());
            }
        }
        const auto print_row = [&](const std::vector<std::string> &cells) {
            std::string line;
            for (size_t i = 0; i < cells.size(); i++) {
                const std::string pad(width[i] - cells[i].size(), ' ');
                if (i > 0) {
                    line += "  ";
                }
                line += columns_[i].right ? pad + cells[i] : cells[i] + pad;
            }
            line.erase(line.find_last_not_of(' ') + 1);
            out << line << '\n';
        };
        if (header) {
            std::vector<std::string> titles;
            for (const auto &c : columns_) {
                titles.push_back(c.title);
            }
            print_row(titles);
        }
        for (const auto &row : rows_) {
            print_row(row);
        }
    }

  private:
    std::vector<Column> columns_;
    std::vector<std::vector<std::string>> rows_;
};

// One member of a result as table text; "-" when absent or null. Never throws, so a daemon
// newer than fwdctl cannot make it fail on a changed field.
std::string cell(const json &obj, const char *key) {
    if (!obj.is_object()) {
        return "-";
    }
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        return "-";
    }
    if (it->is_string()) {
        return it->get<std::string>();
    }
    return it->dump(-1, ' ', false, json::error_handler_t::replace);
}

// The array member key of a result, or an empty array.
const json &array_field(const json &obj, const char *key) {
    static const json kEmpty = json::array();
    if (!obj.is_object()) {
        return kEmpty;
    }
    const auto it = obj.find(key);
    return it != obj.end() && it->is_array() ? *it : kEmpty;
}

// "name  value" lines for a single object, in the given order.
void print_fields(const json &obj, const std::vector<const char *> &keys, std::ostream &out) {
    Table table({{"FIELD"}, {"VALUE"}});
    for (const char *key : keys) {
        table.add_row({key, cell(obj, key)});
    }
    table.print(out, false);
}

// ---------------------------------------------------------------------------------------------
// Options that map one to one onto request args. Only options given on the command line are
// sent, so every default lives in one place: the daemon.
class ArgOptions {
  public:
    CLI::Option *text(CLI::App *cmd, const std::string &flag, std::string key,
                      const std::string &help) {
        auto &arg = add(std::move(key), false);
        arg.option = cmd->add_option(flag, arg.text, help);
        return arg.option;
    }

    CLI::Option *integer(CLI::App *cmd, const std::string &flag, std::string key,
                         const std::string &help) {
        auto &arg = add(std::move(key), true);
        arg.option = cmd->add_option(flag, arg.number, help);
        return arg.option;
    }

    json args() const {
        json out = json::object();
        for (const auto &arg : args_) {
            if (arg->option->count() > 0) {
                out[arg->key] = arg->is_integer ? json(arg->number) : json(arg->text);
            }
        }
        return out;
    }

  private:
    struct Arg {
        std::string key;
        bool is_integer = false;
        std::string text;
        long long number = 0;
        CLI::Option *option = nullptr;
    };

    Arg &add(std::string key, bool is_integer) {
        // unique_ptr: CLI11 keeps pointers to the bound variables.
        args_.push_back(std::make_unique<Arg>());
        args_.back()->key = std::move(key);
        args_.back()->is_integer = is_integer;
        return *args_.back();
    }

    std::vector<std::unique_ptr<Arg>> args_;
};

// Registers a subcommand whose request is built from ArgOptions; setup adds the options.
CLI::App *add_request_command(CLI::App &parent, const std::string &name, const std::string &help,
                              const std::string &op, std::optional<Request> &request,
                              std::function<void(const json &, std::ostream &)> print,
                              const std::function<void(CLI::App *, ArgOptions &)> &setup = {}) {
    CLI::App *cmd = parent.add_subcommand(name, help);
    auto options = std::make_shared<ArgOptions>();
    if (setup) {
        setup(cmd, *options);
    }
    cmd->callback([&request, op, options, print = std::move(print)] {
        request = Request{op, options->args(), print};
    });
    return cmd;
}

// ---------------------------------------------------------------------------------------------
// endpoint add | del | get | list

const std::vector<const char *> kEndpointFields = {
    "id",  "kind", "netns",   "ifname", "ipv4",        "ipv6",
    "mac", "mtu",  "port_id", "worker", "host_ifname", "vhost_socket",
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

void add_endpoint_commands(CLI::App &app, std::optional<Request> &request) {
    CLI::App *group = app.add_subcommand("endpoint", "manage pod endpoints");
    group->require_subcommand(1);

    add_request_command(
        *group, "add", "attach a pod: create its port and routes", "endpoint.add", request,
        print_endpoint, [](CLI::App *cmd, ArgOptions &o) {
            o.text(cmd, "--id", "id", "endpoint id, unique on the node")->required();
            o.text(cmd, "--netns", "netns",
                   "pod network namespace: a path, or a name under /var/run/netns "
                   "(required for tap pods)");
            o.text(cmd, "--ifname", "ifname", "interface name inside the pod (default eth0)");
            o.text(cmd, "--ipv4", "ipv4", "pod IPv4 address");
            o.text(cmd, "--ipv6", "ipv6", "pod IPv6 address");
            o.text(cmd, "--kind", "kind", "port kind (default tap)")
                ->check(CLI::IsMember({"tap", "vhost-user"}));
            o.integer(cmd, "--mtu", "mtu", "MTU of the pod interface");
            o.text(cmd, "--mac", "mac", "pod MAC address (required for vhost-user)");
            o.text(cmd, "--vhost-socket", "vhost_socket", "vhost-user socket path");
            o.text(cmd, "--vhost-mode", "vhost_mode", "vhost-user socket role (default server)")
                ->check(CLI::IsMember({"server", "client"}));
        });

    add_request_command(
        *group, "del", "detach a pod: remove its routes and port", "endpoint.del", request,
        [](const json &result, std::ostream &out) {
            out << "endpoint " << cell(result, "id") << " deleted\n";
        },
        [](CLI::App *cmd, ArgOptions &o) { o.text(cmd, "--id", "id", "endpoint id")->required(); });

    add_request_command(
        *group, "get", "show one endpoint", "endpoint.get", request, print_endpoint,
        [](CLI::App *cmd, ArgOptions &o) { o.text(cmd, "--id", "id", "endpoint id")->required(); });

    add_request_command(*group, "list", "list all endpoints", "endpoint.list", request,
                        print_endpoint_list);
}

// ---------------------------------------------------------------------------------------------
// route add | del | list, node, neighbor list, tables

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
        table.add_row({cell(r, "prefix"), cell(r, "source"), cell(r, "kind"),
                       via.empty() ? "-" : via, cell(r, "active") == "true" ? "yes" : "no"});
    }
    table.print(out);
    out << cell(result, "total") << " route(s)\n";
}

void add_route_commands(CLI::App &app, std::optional<Request> &request) {
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
    add->callback([o, &request] {
        request = route_change(
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
    del->callback(
        [o, &request] { request = route_change("route.del", "deleted", route_args(*o, {})); });

    CLI::App *list = group->add_subcommand("list", "list routes of every source");
    list->add_option("--source", o->source, "only this source")
        ->check(CLI::IsMember({"endpoint", "static", "ipam", "bgp"}));
    list->add_option("--family", o->family, "ipv4 or ipv6")->check(CLI::IsMember({"ipv4", "ipv6"}));
    list->add_option("--prefix", o->prefix, "only this prefix");
    list->add_option("--limit", o->limit, "at most this many");
    list->callback([o, &request] {
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
        request = Request{"route.list", args, print_route_list};
    });
}

void print_neighbors(const json &result, std::ostream &out) {
    Table table({{"IP"}, {"MAC"}, {"STATE"}, {"REFS", true}, {"QUEUED", true}, {"AGE-MS", true}});
    for (const auto &n : array_field(result, "neighbors")) {
        table.add_row({cell(n, "ip"), cell(n, "mac"), cell(n, "state"), cell(n, "refs"),
                       cell(n, "queued"), cell(n, "age_ms")});
    }
    table.print(out);
}

void add_node_commands(CLI::App &app, std::optional<Request> &request) {
    add_request_command(
        app, "node", "show the node: addresses, MTU, uplink, host tap, neighbors", "node.get",
        request, [](const json &r, std::ostream &out) {
            print_fields(r, {"node_name", "ipv4", "ipv6", "mtu"}, out);
            const json &up = r.contains("uplink") ? r["uplink"] : json();
            out << "uplink    "
                << (up.is_object() ? cell(up, "devargs") + "  mac " + cell(up, "mac")
                                   : std::string("-"))
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
            out << '\n' << '\n';
            print_neighbors(r, out);
        });
    CLI::App *group = app.add_subcommand("neighbor", "next-hop neighbors on the uplink");
    group->require_subcommand(1);
    add_request_command(*group, "list", "list neighbors and their states", "neighbor.list", request,
                        print_neighbors);
    add_request_command(app, "tables", "table versions and sizes", "tables", request,
                        [](const json &r, std::ostream &out) {
                            print_fields(
                                r,
                                {"version", "ipv4_routes", "ipv6_routes", "ipv4_capacity",
                                 "ipv6_capacity", "neighbor_next_hops", "ecmp_groups", "endpoints",
                                 "route_changes", "route_errors", "routes_by_source", "bgp"},
                                out);
                        });
}

// ---------------------------------------------------------------------------------------------
// stats

void print_stats(const json &result, std::ostream &out) {
    Table ports({{"PORT", true},
                 {"NAME"},
                 {"KIND"},
                 {"RX-PACKETS", true},
                 {"RX-BYTES", true},
                 {"TX-PACKETS", true},
                 {"TX-BYTES", true},
                 {"RX-MISSED", true},
                 {"TX-ERRORS", true},
                 {"LINK"}});
    for (const auto &p : array_field(result, "ports")) {
        const json &link = p.contains("link") ? p["link"] : json();
        ports.add_row({cell(p, "port_id"), cell(p, "name"), cell(p, "kind"), cell(p, "rx_packets"),
                       cell(p, "rx_bytes"), cell(p, "tx_packets"), cell(p, "tx_bytes"),
                       cell(p, "rx_missed"), cell(p, "tx_errors"),
                       cell(link, "up") == "true"    ? "up"
                       : cell(link, "up") == "false" ? "down"
                                                     : "-"});
    }
    ports.print(out);
    out << '\n';

    Table workers({{"WORKER", true},
                   {"CORE", true},
                   {"RX-PACKETS", true},
                   {"TX-PACKETS", true},
                   {"BUSY-POLLS", true},
                   {"IDLE-POLLS", true},
                   {"SLEEPS", true},
                   {"RX-QUEUES", true}});
    for (const auto &w : array_field(result, "workers")) {
        workers.add_row({cell(w, "worker"), cell(w, "core"), cell(w, "rx_packets"),
                         cell(w, "tx_packets"), cell(w, "busy_polls"), cell(w, "idle_polls"),
                         cell(w, "sleeps"), cell(w, "rx_queues")});
    }
    workers.print(out);
    out << '\n';

    // Only the reasons that happened, most frequent first: the list of reasons is long.
    std::vector<std::pair<std::string, uint64_t>> drops;
    if (const auto it = result.find("drops"); it != result.end() && it->is_object()) {
        for (const auto &[reason, count] : it->items()) {
            if (count.is_number_unsigned() && count.get<uint64_t>() > 0) {
                drops.emplace_back(reason, count.get<uint64_t>());
            }
        }
    }
    std::sort(drops.begin(), drops.end(), [](const auto &a, const auto &b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (drops.empty()) {
        out << "no drops\n";
    } else {
        Table table({{"DROP-REASON"}, {"PACKETS", true}});
        for (const auto &[reason, count] : drops) {
            table.add_row({reason, std::to_string(count)});
        }
        table.print(out);
    }
    out << "\nICMP errors sent: " << cell(result, "icmp_errors_sent") << '\n';
    if (const auto it = result.find("control"); it != result.end() && it->is_object()) {
        out << '\n';
        Table table({{"CONTROL"}, {"COUNT", true}});
        for (const auto &[k, v] : it->items()) {
            table.add_row({k, v.dump()});
        }
        table.print(out);
    }
}

// A counter of a result; 0 when absent or not a count. Never throws (as cell()).
uint64_t count_of(const json &obj, const char *key) {
    if (!obj.is_object()) {
        return 0;
    }
    const auto it = obj.find(key);
    return it != obj.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// num / den with one decimal and unit; "-" when den is 0.
std::string ratio(double num, uint64_t den, const char *unit = "") {
    if (den == 0) {
        return "-";
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f%s", num / static_cast<double>(den), unit);
    return buf;
}

// Where each worker's busy cycles went, from the stage counters: the stages
// that ran, most cycles first, then what no stage accounts for (the loop
// itself). Per-packet figures divide by the packets received while the
// counters were on (stage rx), not by rx_packets, which counts from the start.
void print_stage_stats(const json &result, std::ostream &out) {
    const bool on = result.value("stage_stats", false);
    const uint64_t hz = count_of(result, "tsc_hz");
    out << "stage stats " << (on ? "on" : "off (fwdctl stats stages on)") << ", TSC "
        << ratio(static_cast<double>(hz), 1000000, " MHz") << '\n';
    for (const auto &w : array_field(result, "workers")) {
        const json &stages = w.contains("stages") ? w["stages"] : json();
        const uint64_t busy = count_of(w, "busy_cycles");
        const uint64_t rx = stages.contains("rx") ? count_of(stages["rx"], "packets") : 0;
        out << "\nworker " << cell(w, "worker") << ": " << rx << " packets in "
            << count_of(w, "busy_loops") << " busy loops, " << busy << " cycles, "
            << ratio(static_cast<double>(busy), rx) << " cycles/packet\n";
        std::vector<std::pair<std::string, const json *>> rows;
        if (stages.is_object()) {
            for (const auto &[name, c] : stages.items()) {
                if (count_of(c, "calls") > 0) {
                    rows.emplace_back(name, &c);
                }
            }
        }
        std::sort(rows.begin(), rows.end(), [](const auto &a, const auto &b) {
            const uint64_t ca = count_of(*a.second, "cycles");
            const uint64_t cb = count_of(*b.second, "cycles");
            return ca != cb ? ca > cb : a.first < b.first;
        });
        Table table({{"STAGE"},
                     {"CALLS", true},
                     {"PACKETS", true},
                     {"CYCLES/PKT", true},
                     {"CYCLES/RX-PKT", true},
                     {"SHARE", true}});
        // Negative only if stages ran outside busy loops (never in the daemon).
        double rest = static_cast<double>(busy);
        for (const auto &[name, c] : rows) {
            const auto cycles = static_cast<double>(count_of(*c, "cycles"));
            rest -= cycles;
            table.add_row({name, std::to_string(count_of(*c, "calls")),
                           std::to_string(count_of(*c, "packets")),
                           ratio(cycles, count_of(*c, "packets")), ratio(cycles, rx),
                           ratio(100 * cycles, busy, "%")});
        }
        table.add_row({"unattributed", "", "", "", ratio(rest, rx), ratio(100 * rest, busy, "%")});
        table.print(out);
    }
}

void add_stats_commands(CLI::App &app, std::optional<Request> &request) {
    CLI::App *stats = app.add_subcommand("stats", "show port, worker and drop counters");
    auto stages = std::make_shared<bool>(false);
    stats->add_flag("--stages", *stages,
                    "show where each worker's cycles go, by pipeline stage (needs stage stats on)");
    stats->callback([stats, stages, &request] {
        if (!stats->get_subcommands().empty()) {
            return;  // stats stages on|off: its own request
        }
        request = Request{"stats", json::object(), *stages ? print_stage_stats : print_stats};
    });

    auto state = std::make_shared<std::string>();
    CLI::App *toggle = stats->add_subcommand(
        "stages", "turn the per-stage packet and cycle counters of the workers on or off");
    toggle->add_option("state", *state, "on or off")
        ->required()
        ->check(CLI::IsMember({"on", "off"}));
    toggle->callback([state, &request] {
        request = Request{"stats.stages", json{{"enabled", *state == "on"}},
                          [](const json &r, std::ostream &out) {
                              out << "stage stats "
                                  << (r.value("stage_stats", false) ? "on" : "off") << '\n';
                          }};
    });
}

// ---------------------------------------------------------------------------------------------
// version

void add_version_commands(CLI::App &app, std::optional<Request> &request) {
    add_request_command(app, "version", "show the daemon's version", "version", request,
                        [](const json &result, std::ostream &out) {
                            out << "dpdk-fwd " << cell(result, "version") << '\n';
                        });
}

// ---------------------------------------------------------------------------------------------

int run(int argc, char **argv) {
    CLI::App app{"Control a running dpdk-fwd daemon, and the IPAM store.", "fwdctl"};
#ifdef FWD_VERSION
    app.set_version_flag("--version", std::string("fwdctl ") + FWD_VERSION);
#endif
    // Global options are also accepted after the subcommand ("fwdctl endpoint list --json").
    app.fallthrough();
    app.require_subcommand(1);

    std::string socket_path = kDefaultApiSocket;
    bool as_json = false;
    app.add_option("-s,--api-socket", socket_path, "daemon API socket")
        ->envname(kSocketEnv)
        ->capture_default_str();
    app.add_flag("--json", as_json, "print the result as JSON");

    std::optional<Request> request;
    add_endpoint_commands(app, request);
    add_route_commands(app, request);
    add_node_commands(app, request);
    add_stats_commands(app, request);
    add_version_commands(app, request);
    std::function<int()> local;     // a command that runs here, not in the daemon
    add_ipam_commands(app, local);  // fwdctl_ipam.cpp: the IPAM store itself, not the daemon

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : kExitUsage;
    }
    if (local) {
        return local();
    }
    if (!request) {
        std::cerr << app.help();
        return kExitUsage;
    }

    try {
        ApiClient client(socket_path);
        const json result = client.call(request->op, request->args);
        if (as_json) {
            std::cout << result.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
        } else {
            request->print(result, std::cout);
        }
        return 0;
    } catch (const ApiConnectionError &e) {
        std::cerr << "fwdctl: " << e.code() << ": " << e.what() << '\n'
                  << "fwdctl: is dpdk-fwd running? (API socket " << socket_path
                  << "; choose another with -s or " << kSocketEnv << ")\n";
        return kExitUnavailable;
    } catch (const ApiError &e) {
        std::cerr << "fwdctl: " << e.code() << ": " << e.what() << '\n';
        return kExitError;
    } catch (const std::exception &e) {
        std::cerr << "fwdctl: internal: " << e.what() << '\n';
        return kExitError;
    }
}

}  // namespace

}  // namespace fwd::control

int main(int argc, char **argv) {
    return fwd::control::run(argc, argv);
}
