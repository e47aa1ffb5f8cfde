// The DPDK telemetry commands' replies from the stats and tables ops'
// results, and telemetry's limits (keys, strings, sizes, types) kept.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>

#include "fwd/control/telemetry.hpp"
#include "minimal_config.hpp"

namespace fwd::control {
namespace {

using nlohmann::json;
namespace tel = telemetry;

// The stats op's result, shaped as the daemon answers (two workers, two ports).
json stats() {
    return json{{"ports",
                 {{{"port_id", 0},
                   {"name", "net_tap_up"},
                   {"kind", "uplink"},
                   {"rx_packets", 10},
                   {"tx_packets", 11},
                   {"link", {{"up", true}, {"events", 2}}}},
                  {{"port_id", 3}, {"name", "vhost-user.pod-a"}, {"kind", "pod"}}}},
                {"workers",
                 {{{"worker", 0},
                   {"core", 1},
                   {"rx_packets", 5},
                   {"tx_packets", 4},
                   {"punted", {{"host", 1}, {"neighbor", 2}}},
                   {"host_tx", 1},
                   {"busy_cycles", 3000},
                   {"stages", {{"eth_input", {{"calls", 3}, {"packets", 5}}}}}},
                  {{"worker", 1}, {"core", 2}, {"rx_packets", 7}, {"tx_packets", 6}}}},
                {"drops", {{"no_route", 3}, {"ip4_ttl_exceeded", 0}, {"eth_runt", 1}}},
                {"icmp_errors_sent", 2},
                {"stage_stats", false}};
}

TEST(Telemetry, CommandsAreUnderOurPrefixWithHelp) {
    std::set<std::string> names;
    for (const auto &c : tel::commands()) {
        EXPECT_EQ(std::string(c.name).rfind("/dpdk_fwd/", 0), 0u) << c.name;
        EXPECT_TRUE(std::string(c.op) == "stats" || std::string(c.op) == "tables") << c.op;
        EXPECT_LT(std::string(c.help).size(), tel::kMaxString + 1) << c.name;
        names.insert(c.name);
    }
    EXPECT_EQ(names, (std::set<std::string>{"/dpdk_fwd/stats", "/dpdk_fwd/drops", "/dpdk_fwd/ports",
                                            "/dpdk_fwd/workers", "/dpdk_fwd/tables"}));
}

TEST(Telemetry, StatsAreTotalsOverWorkers) {
    const json r = tel::reply("/dpdk_fwd/stats", "", stats(), "node-1");
    EXPECT_EQ(r["node"], "node-1");
    EXPECT_EQ(r["version"], FWD_VERSION);
    EXPECT_EQ(r["workers"], 2);
    EXPECT_EQ(r["ports"], 2);
    EXPECT_EQ(r["rx_packets"], 12);
    EXPECT_EQ(r["tx_packets"], 10);
    EXPECT_EQ(r["dropped"], 4);
    EXPECT_EQ(r["punted"], 3);
    EXPECT_EQ(r["host_tx"], 1);
    EXPECT_EQ(r["icmp_errors_sent"], 2);
    EXPECT_EQ(r["stage_stats"], 0);  // booleans as 0 / 1
}

TEST(Telemetry, DropsByReasonZerosToo) {
    EXPECT_EQ(tel::reply("/dpdk_fwd/drops", "", stats(), "n"),
              (json{{"no_route", 3}, {"ip4_ttl_exceeded", 0}, {"eth_runt", 1}}));
}

TEST(Telemetry, PortsListThenOnePort) {
    EXPECT_EQ(tel::reply("/dpdk_fwd/ports", "", stats(), "n"), json::array({0, 3}));
    const json p = tel::reply("/dpdk_fwd/ports", "3", stats(), "n");
    EXPECT_EQ(p["name"], "vhost-user.pod-a");  // a value keeps its characters
    EXPECT_EQ(p["kind"], "pod");
    const json up = tel::reply("/dpdk_fwd/ports", "0", stats(), "n");
    EXPECT_EQ(up["link"], (json{{"up", 1}, {"events", 2}}));
    EXPECT_EQ(up["tx_packets"], 11);
}

TEST(Telemetry, WorkersTotalsThenOneWorkerWhole) {
    const json all = tel::reply("/dpdk_fwd/workers", "", stats(), "n");
    EXPECT_EQ(all["0"], (json{{"core", 1}, {"rx_packets", 5}, {"tx_packets", 4}, {"host_tx", 1}}));
    EXPECT_EQ(all["1"]["tx_packets"], 6);
    const json w = tel::reply("/dpdk_fwd/workers", "0", stats(), "n");
    EXPECT_EQ(w["punted"]["neighbor"], 2);
    EXPECT_EQ(w["stages"]["eth_input"]["packets"], 5);
    EXPECT_EQ(w["busy_cycles"], 3000);
}

TEST(Telemetry, BadParametersAreNamed) {
    auto msg = [](std::string_view cmd, std::string_view params) {
        try {
            tel::reply(cmd, params, stats(), "n");
        } catch (const std::invalid_argument &e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_EQ(msg("/dpdk_fwd/ports", "x1"), "/dpdk_fwd/ports takes a port id (a number), got 'x1'");
    EXPECT_EQ(msg("/dpdk_fwd/ports", "7"), "/dpdk_fwd/ports: no port 7");
    EXPECT_EQ(msg("/dpdk_fwd/workers", "-1"),
              "/dpdk_fwd/workers takes a worker id (a number), got '-1'");
    EXPECT_EQ(msg("/dpdk_fwd/workers", "2"), "/dpdk_fwd/workers: no worker 2");
    EXPECT_EQ(msg("/dpdk_fwd/stats", "0"), "/dpdk_fwd/stats takes no parameter, got '0'");
    EXPECT_EQ(msg("/dpdk_fwd/tables", "all"), "/dpdk_fwd/tables takes no parameter, got 'all'");
    EXPECT_EQ(msg("/dpdk_fwd/nope", ""), "unknown telemetry command '/dpdk_fwd/nope'");
}

TEST(Telemetry, TablesNestedAndMadeToFit) {
    const json tables{{"version", 7},
                      {"routes_by_source", {{"bgp", 12}, {"ipam-sync", 2}}},
                      {"load", 0.25},
                      {"delta", -3},
                      {"huge_negative", -5000000000LL},
                      {"owner", nullptr},
                      {"blocks", {"10.0.0.0/26", "fd00::/122"}},
                      {"peers", {{{"name", "a"}}, {{"name", "b"}}}}};
    const json r = tel::reply("/dpdk_fwd/tables", "", tables, "n");
    EXPECT_EQ(r["version"], 7);
    // keys take [A-Za-z0-9_/] only
    EXPECT_EQ(r["routes_by_source"], (json{{"bgp", 12}, {"ipam_sync", 2}}));
    EXPECT_EQ(r["load"], "0.25");  // no floating point in telemetry 22.11
    EXPECT_EQ(r["delta"], -3);
    EXPECT_EQ(r["huge_negative"], "-5000000000");  // past a 32-bit int
    EXPECT_EQ(r["owner"], "");
    EXPECT_EQ(r["blocks"], json::array({"10.0.0.0/26", "fd00::/122"}));
    // an array of objects: a dict by index (telemetry arrays hold one scalar type)
    EXPECT_EQ(r["peers"], (json{{"0", {{"name", "a"}}}, {"1", {{"name", "b"}}}}));
}

TEST(Telemetry, LimitsAreKept) {
    json big = json::object();
    for (int i = 0; i < 300; i++) {
        big["reason_" + std::to_string(i)] = i;
    }
    json arr = json::array();
    for (int i = 0; i < 600; i++) {
        arr.push_back(i);
    }
    const json r = tel::fit(json{{"big", big},
                                 {"arr", arr},
                                 {"mixed", {1, "a", true}},
                                 {std::string(200, 'k'), std::string(300, 'v')}});
    EXPECT_EQ(r["big"].size(), tel::kMaxDict);
    EXPECT_EQ(r["big"]["truncated"], 300 - (tel::kMaxDict - 1));  // says what was left out
    EXPECT_EQ(r["arr"].size(), tel::kMaxArray);
    EXPECT_EQ(r["mixed"], json::array({"1", "a", "true"}));  // one type per array
    const json &cut = r[std::string(tel::kMaxString, 'k')];
    EXPECT_EQ(cut, std::string(tel::kMaxString, 'v'));
    // a scalar reply becomes an array of one (telemetry replies are dicts or arrays)
    EXPECT_EQ(tel::fit(json(5)), json::array({5}));
}

TEST(Telemetry, ConfigTurnsTheSocketOff) {
    auto enabled = [](const json &extra) {
        return parse_with(extra).section<tel::TelemetryConfig>("telemetry").enabled;
    };
    EXPECT_TRUE(enabled(json::object()));
    EXPECT_FALSE(enabled(json{{"telemetry", {{"enabled", false}}}}));
    try {
        enabled(json{{"telemetry", {{"enabled", "yes"}}}});
        ADD_FAILURE() << "accepted a string";
    } catch (const ConfigError &e) {
        EXPECT_EQ(e.path(), "telemetry.enabled");
    }
    try {
        enabled(json{{"telemetry", {{"socket", "/tmp/x"}}}});
        ADD_FAILURE() << "accepted an unknown field";
    } catch (const ConfigError &e) {
        EXPECT_EQ(e.path(), "telemetry.socket");
    }
}

}  // namespace
}  // namespace fwd::control
