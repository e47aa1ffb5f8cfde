// fwdctl balance: the workers' load balancing (the balance module, balance.hpp): whether it is
// on, its counts, the last decision (each worker's load before and after, why, the moves) and
// each queue's load as last measured.
#include <cstdio>
#include <iostream>
#include <ostream>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

std::string pct(const json &x) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%.1f %%", x.is_number() ? x.get<double>() * 100 : 0.0);
    return buf;
}

void print_balance(const json &r, std::ostream &out) {
    out << "balance " << (r.value("enabled", false) ? "on" : "off (config section \"balance\")")
        << ": every " << cell(r, "interval_ms") << " ms, a worker at " << cell(r, "load_threshold")
        << " %, a gain of " << cell(r, "improvement") << " %\n";
    out << "rounds " << cell(r, "rounds") << ", rebalances " << cell(r, "rebalances")
        << ", queues moved " << cell(r, "moves") << '\n';
    const json &last = r.contains("last") ? r["last"] : json::object();
    out << "last: " << cell(last, "why") << '\n';
    const json &before = array_field(last, "before");
    const json &after = array_field(last, "after");
    for (size_t w = 0; w < before.size(); w++) {
        out << "  worker " << w << "  " << pct(before[w]);
        if (w < after.size() && after[w] != before[w]) {
            out << " -> " << pct(after[w]);
        }
        out << '\n';
    }
    for (const json &m : array_field(last, "moves")) {
        out << "  moved port " << cell(m, "port") << " queue " << cell(m, "queue") << ": worker "
            << cell(m, "from") << " -> " << cell(m, "to") << '\n';
    }
    Table t({{"port", true}, {"queue", true}, {"worker", true}, {"load", true}, {"movable"}});
    for (const json &q : array_field(r, "queues")) {
        t.add_row({cell(q, "port"), cell(q, "queue"), cell(q, "worker"), pct(q["load"]),
                   q.value("movable", false) ? "yes" : "no (pinned)"});
    }
    out << '\n';
    t.print(out);
}

void add_balance_commands(CLI::App &app, Command &command) {
    CLI::App *balance = app.add_subcommand(
        "balance", "the workers' load balancing: loads, the last decision, the queues moved");
    balance->callback([&command] {
        command.request = Request{"balance.status", json::object(), print_balance};
    });
}

}  // namespace

FWD_ON_LOAD(register_group("balance", 31, add_balance_commands));

}  // namespace fwd::control::fwdctl
