// fwdctl stats [--stages], stats stages on|off: the counters of ports, workers, drops and
// pipeline stages.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

// The CNI plugin's calls the daemon served: by op, the results and the mean
// time (the histogram itself is for the metrics).
void print_cni_calls(const json &calls, std::ostream &out) {
    Table table({{"CNI-OP"}, {"CALLS", true}, {"ERRORS", true}, {"MEAN-MS", true}});
    bool any = false;
    for (const auto &[op, c] : calls.items()) {
        uint64_t n = 0, errors = 0;
        const json results = c.value("results", json::object());
        for (const auto &[result, count] : results.items()) {
            n += count.get<uint64_t>();
            errors += result == "ok" ? 0 : count.get<uint64_t>();
        }
        if (n == 0) {
            continue;
        }
        any = true;
        const double sum_s = c.contains("latency") ? c["latency"].value("sum_seconds", 0.0) : 0.0;
        table.add_row({op, std::to_string(n), std::to_string(errors), ratio(1000 * sum_s, n)});
    }
    if (any) {
        out << '\n';
        table.print(out);
    }
}

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
            if (k != "cni") {  // its own table below
                table.add_row({k, v.dump()});
            }
        }
        table.print(out);
        if (const auto cni = it->find("cni"); cni != it->end() && cni->contains("calls")) {
            print_cni_calls((*cni)["calls"], out);
        }
    }
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

void add_stats_commands(CLI::App &app, Command &command) {
    CLI::App *stats = app.add_subcommand("stats", "show port, worker and drop counters");
    auto stages = std::make_shared<bool>(false);
    stats->add_flag("--stages", *stages,
                    "show where each worker's cycles go, by pipeline stage (needs stage stats on)");
    stats->callback([stats, stages, &command] {
        if (!stats->get_subcommands().empty()) {
            return;  // stats stages on|off: its own request
        }
        command.request =
            Request{"stats", json::object(), *stages ? print_stage_stats : print_stats};
    });

    auto state = std::make_shared<std::string>();
    CLI::App *toggle = stats->add_subcommand(
        "stages", "turn the per-stage packet and cycle counters of the workers on or off");
    toggle->add_option("state", *state, "on or off")
        ->required()
        ->check(CLI::IsMember({"on", "off"}));
    toggle->callback([state, &command] {
        command.request = Request{"stats.stages", json{{"enabled", *state == "on"}},
                                  [](const json &r, std::ostream &out) {
                                      out << "stage stats "
                                          << (r.value("stage_stats", false) ? "on" : "off") << '\n';
                                  }};
    });
}

}  // namespace

FWD_ON_LOAD(register_group("stats", 30, add_stats_commands));

}  // namespace fwd::control::fwdctl
