// The daemon's counters through DPDK's telemetry socket (issue 18), so
// DPDK's own tooling works on us:
//
//   echo /dpdk_fwd/stats | dpdk-telemetry.py -f <eal.file_prefix>
//
//   /dpdk_fwd/stats         totals: packets received, forwarded, dropped, punted
//   /dpdk_fwd/drops         packets dropped, by reason (every reason, zeros too)
//   /dpdk_fwd/ports         the port ids (as /ethdev/list); ,<id>: that port's counters
//   /dpdk_fwd/workers       per worker totals; ,<id>: that worker with its punts and stages
//   /dpdk_fwd/tables        table sizes and versions (the tables op)
//
// Config: "telemetry": {"enabled": true} (on by default; false: EAL's
// --no-telemetry, no socket). The socket is
// /var/run/dpdk/<eal.file_prefix>/dpdk_telemetry.v2, --in-memory or not.
//
// This file is the DPDK-free half: which op each command reads and how its
// result becomes a reply telemetry can carry (telemetry_module.cpp does the
// rte_tel_data calls and runs them on DPDK's telemetry thread). Tested
// without EAL.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

namespace fwd::control::telemetry {

// rte_telemetry.h's limits in DPDK 22.11: a string or a key holds 127
// characters, a dict 256 entries, an array 512. Keys take [A-Za-z0-9_/] only
// (rte_tel_data_add_dict_* refuses others with -EINVAL).
constexpr size_t kMaxString = 127;
constexpr size_t kMaxDict = 256;
constexpr size_t kMaxArray = 512;

struct TelemetryConfig {
    bool enabled = true;
};

struct Command {
    const char *name;  // "/dpdk_fwd/stats"
    const char *op;    // the control thread's op whose result it shows
    const char *help;  // /help,<name>
};
std::span<const Command> commands();

// The reply of command `name` with `params` (what follows the comma; empty
// without) from `result`, the result of its op. node_name is shown by
// /dpdk_fwd/stats, so a reader knows which daemon answered. The reply is
// made to fit (fit()). Throws std::invalid_argument for an unknown command,
// and for params the command does not take or an id it does not know
// (naming it).
nlohmann::json reply(std::string_view name, std::string_view params, const nlohmann::json &result,
                     const std::string &node_name);

// j as telemetry can carry it: keys with any other character written '_'
// and cut to kMaxString; strings cut; booleans 0 / 1; fractional numbers as
// strings ("0.25"); null as ""; an array of objects or arrays as a dict by
// index; dicts and arrays past their limit cut (the reply says so in a
// "truncated" entry when it is a dict). The top level is an object or an
// array.
nlohmann::json fit(const nlohmann::json &j);

}  // namespace fwd::control::telemetry
