// The metrics' names and labels from a snapshot of the stats, tables and
// node ops, as Prometheus' text format prints them; the listen addresses and
// the metrics / health config sections.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "fwd/control/config.hpp"
#include "fwd/control/observe.hpp"
#include "minimal_config.hpp"
#include "prometheus/check_names.h"
#include "prometheus/text_serializer.h"

namespace fwd::control {
namespace {

using nlohmann::json;

// A snapshot shaped as the daemon's ops answer (two workers, one uplink).
json snapshot() {
    LatencyHistogram h;
    h.observe(2'000'000);       // 2 ms
    h.observe(30'000'000);      // 30 ms
    h.observe(20'000'000'000);  // 20 s: past the largest bound
    return json{
        {"version", "0.1.0"},
        {"dpdk", "DPDK 22.11.4"},
        {"stats",
         {{"ports",
           {{{"port_id", 0},
             {"name", "net_tap_up"},
             {"kind", "uplink"},
             {"rx_packets", 10},
             {"rx_bytes", 1000},
             {"tx_packets", 11},
             {"tx_bytes", 1100},
             {"rx_missed", 1},
             {"tx_errors", 0},
             {"link", {{"up", true}, {"events", 2}}}}}},
          {"workers",
           {{{"worker", 0},
             {"core", 1},
             {"rx_packets", 5},
             {"tx_packets", 4},
             {"busy_polls", 3},
             {"idle_polls", 7},
             {"sleeps", 2},
             {"punted", {{"host", 1}, {"neighbor", 0}}},
             {"drops", {{"no_route", 2}}},
             {"host_tx", 0},
             {"rx_queues", 1},
             {"busy_loops", 3},
             {"busy_cycles", 3000},
             {"stages", {{"rx", {{"calls", 3}, {"packets", 5}, {"cycles", 1000}}}}}},
            {{"worker", 1},
             {"core", 2},
             {"rx_packets", 1},
             {"tx_packets", 1},
             {"drops", {{"no_route", 1}}}}}},
          {"drops", {{"no_route", 3}, {"ttl_exceeded", 0}}},
          {"icmp_errors_sent", 2},
          {"control",
           {{"worker_ring_full", 0},
            {"neigh_frames", 4},
            {"something_new", 9},
            {"flows",
             {{"mode", "install"},
              {"installed", 2},
              {"validated", 0},
              {"refused", 1},
              {"policy_left", 0},
              {"nic_policy_drops", 17},
              {"applies", 3}}},
            {"balance", {{"enabled", true}, {"rounds", 6}, {"rebalances", 1}, {"moves", 2}}},
            {"conntrack",
             {{"capacity", 1024},
              {"in_use", 3},
              {"pending_free", 0},
              {"results", {{"hit", 5}, {"miss", 2}}}}},
            {"cni",
             {{"calls",
               {{"add",
                 {{"results", {{"ok", 2}, {"unavailable", 1}}}, {"latency", h.to_json()}}}}}}},
            {"policy", {{"builds", 1}, {"build_errors", 0}}}}},
          {"tsc_hz", 1000},
          {"stage_stats", true}}},
        {"tables",
         {{"version", 7},
          {"ipv4_routes", 5},
          {"ipv6_routes", 4},
          {"ipv4_capacity", 1024},
          {"ipv6_capacity", 1024},
          {"routes_by_source", {{"bgp", 12}, {"static", 2}}},
          {"endpoints", 2},
          {"mbufs", {{"fwd_pkts", {{"in_use", 1536}, {"capacity", 8191}}}}},
          {"new_table", 1}}},
        {"node", {{"ipam", {{"ok", true}, {"blocks", 2}, {"errors", 1}, {"store", "etcd:x"}}}}},
        {"neighbors", {{"reachable", 1}, {"stale", 0}}}};
}

std::string text(const json &snap) {
    return prometheus::TextSerializer().Serialize(metric_families(snap));
}

// name{labels} -> value, from the text format; HELP and TYPE of every name.
struct Page {
    std::map<std::string, double> samples;
    std::map<std::string, std::string> type;
    std::set<std::string> help;
};

Page parse(const std::string &page) {
    Page p;
    std::istringstream in(page);
    std::string line;
    static const std::regex kSample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?) (\S+)$)");
    while (std::getline(in, line)) {
        std::smatch m;
        if (line.rfind("# HELP ", 0) == 0) {
            p.help.insert(line.substr(7, line.find(' ', 7) - 7));
        } else if (line.rfind("# TYPE ", 0) == 0) {
            auto sp = line.find(' ', 7);
            p.type[line.substr(7, sp - 7)] = line.substr(sp + 1);
        } else if (std::regex_match(line, m, kSample)) {
            p.samples[m[1]] = std::stod(m[3]);
        } else if (!line.empty()) {
            ADD_FAILURE() << "not a text format line: " << line;
        }
    }
    return p;
}

TEST(Metrics, NamesLabelsAndValues) {
    const Page p = parse(text(snapshot()));
    const std::map<std::string, double> want{
        {R"(dpdk_fwd_build_info{version="0.1.0",dpdk="DPDK 22.11.4"})", 1},
        {R"(dpdk_fwd_port_rx_packets_total{port="0",name="net_tap_up",kind="uplink"})", 10},
        {R"(dpdk_fwd_port_tx_bytes_total{port="0",name="net_tap_up",kind="uplink"})", 1100},
        {R"(dpdk_fwd_port_rx_missed_packets_total{port="0",name="net_tap_up",kind="uplink"})", 1},
        {R"(dpdk_fwd_port_up{port="0",name="net_tap_up",kind="uplink"})", 1},
        {R"(dpdk_fwd_worker_tx_packets_total{worker="0",core="1"})", 4},
        {R"(dpdk_fwd_worker_tx_packets_total{worker="1",core="2"})", 1},
        {R"(dpdk_fwd_worker_punted_packets_total{worker="0",core="1",reason="host"})", 1},
        // cycles become seconds (tsc_hz 1000)
        {R"(dpdk_fwd_worker_busy_seconds_total{worker="0",core="1"})", 3},
        {R"(dpdk_fwd_stage_seconds_total{worker="0",core="1",stage="rx"})", 1},
        {R"(dpdk_fwd_stage_packets_total{worker="0",core="1",stage="rx"})", 5},
        // per worker, every reason, also 0
        {R"(dpdk_fwd_drops_total{worker="0",reason="no_route"})", 2},
        {R"(dpdk_fwd_drops_total{worker="1",reason="no_route"})", 1},
        {R"(dpdk_fwd_drops_total{worker="0",reason="ttl_exceeded"})", 0},
        {R"(dpdk_fwd_drops_total{worker="1",reason="ttl_exceeded"})", 0},
        {R"(dpdk_fwd_icmp_errors_sent_total)", 2},
        {R"(dpdk_fwd_neighbor_frames_total)", 4},
        {R"(dpdk_fwd_control_value{key="something_new"})", 9},
        {R"(dpdk_fwd_nic_flow_groups_installed)", 2},
        {R"(dpdk_fwd_nic_flow_groups_refused)", 1},
        {R"(dpdk_fwd_nic_policy_drops_total)", 17},
        {R"(dpdk_fwd_balance_enabled)", 1},
        {R"(dpdk_fwd_balance_queue_moves_total)", 2},
        {R"(dpdk_fwd_conntrack_flows)", 3},
        {R"(dpdk_fwd_conntrack_lookups_total{result="hit"})", 5},
        {R"(dpdk_fwd_policy_builds_total)", 1},
        {R"(dpdk_fwd_cni_calls_total{op="add",result="ok"})", 2},
        {R"(dpdk_fwd_cni_calls_total{op="add",result="unavailable"})", 1},
        {R"(dpdk_fwd_cni_call_duration_seconds_bucket{op="add",le="0.001"})", 0},
        {R"(dpdk_fwd_cni_call_duration_seconds_bucket{op="add",le="0.0025"})", 1},
        {R"(dpdk_fwd_cni_call_duration_seconds_bucket{op="add",le="0.05"})", 2},
        {R"(dpdk_fwd_cni_call_duration_seconds_bucket{op="add",le="10"})", 2},
        {R"(dpdk_fwd_cni_call_duration_seconds_bucket{op="add",le="+Inf"})", 3},
        {R"(dpdk_fwd_cni_call_duration_seconds_count{op="add"})", 3},
        {R"(dpdk_fwd_route_table_version)", 7},
        {R"(dpdk_fwd_routes{family="ipv4"})", 5},
        {R"(dpdk_fwd_routes{family="ipv6"})", 4},
        {R"(dpdk_fwd_routes_capacity{family="ipv6"})", 1024},
        {R"(dpdk_fwd_rib_routes{source="bgp"})", 12},
        {R"(dpdk_fwd_endpoints)", 2},
        {R"(dpdk_fwd_table_value{key="new_table"})", 1},
        {R"(dpdk_fwd_mbufs_in_use{pool="fwd_pkts"})", 1536},
        {R"(dpdk_fwd_mbufs_capacity{pool="fwd_pkts"})", 8191},
        {R"(dpdk_fwd_ipam_sync_ok)", 1},
        {R"(dpdk_fwd_ipam_blocks)", 2},
        {R"(dpdk_fwd_ipam_sync_errors_total)", 1},
        {R"(dpdk_fwd_neighbors{state="reachable"})", 1},
        {R"(dpdk_fwd_neighbors{state="stale"})", 0},
    };
    for (const auto &[series, value] : want) {
        auto it = p.samples.find(series);
        ASSERT_NE(it, p.samples.end()) << series << " missing";
        EXPECT_DOUBLE_EQ(it->second, value) << series;
    }
    EXPECT_NEAR(p.samples.at(R"(dpdk_fwd_cni_call_duration_seconds_sum{op="add"})"), 20.032, 1e-9);
    // shown by other metrics, or not numbers: no series of their own
    for (const auto &[series, value] : p.samples) {
        EXPECT_EQ(series.find("key=\"ipv4_routes\""), std::string::npos) << series;
        EXPECT_EQ(series.find("key=\"conntrack/"), std::string::npos) << series;
        EXPECT_EQ(series.find("key=\"cni"), std::string::npos) << series;
        EXPECT_EQ(series.find("key=\"mbufs"), std::string::npos) << series;
        EXPECT_EQ(series.find("store"), std::string::npos) << series;
    }
}

TEST(Metrics, EveryFamilyHasHelpTypeAndAValidName) {
    const auto families = metric_families(snapshot());
    const Page p = parse(text(snapshot()));
    std::set<std::string> names;
    for (const auto &f : families) {
        EXPECT_TRUE(names.insert(f.name).second) << f.name << " twice";
        EXPECT_TRUE(prometheus::CheckMetricName(f.name)) << f.name;
        EXPECT_EQ(f.name.rfind("dpdk_fwd_", 0), 0u) << f.name;
        EXPECT_FALSE(f.help.empty()) << f.name;
        EXPECT_TRUE(p.help.count(f.name)) << f.name;
        ASSERT_TRUE(p.type.count(f.name)) << f.name;
        // counters and only counters end in _total
        const bool total = f.name.size() > 6 && f.name.substr(f.name.size() - 6) == "_total";
        EXPECT_EQ(total, p.type.at(f.name) == "counter") << f.name << " " << p.type.at(f.name);
        for (const auto &m : f.metric) {
            for (const auto &l : m.label) {
                EXPECT_TRUE(prometheus::CheckLabelName(l.name)) << f.name << " " << l.name;
            }
        }
    }
    EXPECT_EQ(p.type.at("dpdk_fwd_cni_call_duration_seconds"), "histogram");
    EXPECT_EQ(p.type.at("dpdk_fwd_control_value"), "untyped");
}

TEST(Metrics, StageCountersOnlyWhileOn) {
    json snap = snapshot();
    snap["stats"]["stage_stats"] = false;
    const Page p = parse(text(snap));
    EXPECT_EQ(p.samples.at("dpdk_fwd_stage_stats_enabled"), 0);
    for (const auto &[series, value] : p.samples) {
        EXPECT_EQ(series.find("dpdk_fwd_stage_seconds"), std::string::npos) << series;
        EXPECT_EQ(series.find("busy_seconds"), std::string::npos) << series;
    }
}

TEST(Metrics, EmptySnapshotHasNoFamilies) {
    EXPECT_TRUE(metric_families(json::object()).empty());
}

TEST(Metrics, LabelValuesAreEscaped) {
    const json odd{{"odd \"reason\"\\", 1}};
    json snap;
    snap["stats"]["drops"] = odd;
    snap["stats"]["workers"] = json::array({json{{"worker", 0}, {"drops", odd}}});
    const std::string page = text(snap);
    EXPECT_NE(page.find(R"(dpdk_fwd_drops_total{worker="0",reason="odd \"reason\"\\"} 1)"),
              std::string::npos)
        << page;
}

TEST(Listen, Addresses) {
    auto spec = [](const std::string &host, uint16_t port) {
        ListenConfig c;
        c.enabled = true;
        c.host = host;
        c.port = port;
        return listening_ports(c);
    };
    EXPECT_EQ(spec("", 9091), "+9091");
    EXPECT_EQ(spec("localhost", 9099), "127.0.0.1:9099,[::1]:9099");
    EXPECT_EQ(spec("10.0.0.1", 9091), "10.0.0.1:9091");
    EXPECT_EQ(spec("fd00::1", 9091), "[fd00::1]:9091");
}

TEST(Listen, DefaultsAreFelixsAndOff) {
    NodeConfig c = parse_with(json::object());
    const auto &m = c.section<MetricsConfig>("metrics");
    const auto &h = c.section<HealthConfig>("health");
    EXPECT_FALSE(m.enabled);
    EXPECT_EQ(m.host, "");
    EXPECT_EQ(m.port, 9091);
    EXPECT_FALSE(h.enabled);
    EXPECT_EQ(h.host, "localhost");
    EXPECT_EQ(h.port, 9099);
}

TEST(Listen, ConfigSections) {
    NodeConfig c = parse_with({{"metrics", {{"enabled", true}, {"host", "::1"}, {"port", 19091}}},
                               {"health", {{"enabled", true}, {"host", "127.0.0.1"}}}});
    const auto &m = c.section<MetricsConfig>("metrics");
    EXPECT_TRUE(m.enabled);
    EXPECT_EQ(listening_ports(m), "[::1]:19091");
    EXPECT_EQ(listening_ports(c.section<HealthConfig>("health")), "127.0.0.1:9099");
}

std::string error_of(const json &extra) {
    try {
        parse_with(extra);
    } catch (const ConfigError &e) {
        return e.what();
    }
    return "(accepted)";
}

TEST(Listen, BadConfigNamesTheProblem) {
    EXPECT_NE(error_of({{"metrics", {{"host", "node1.example"}}}}).find("not an IPv4 or IPv6"),
              std::string::npos);
    EXPECT_NE(error_of({{"metrics", {{"port", 0}}}}).find("metrics.port"), std::string::npos);
    EXPECT_NE(error_of({{"health", {{"enabled", "yes"}}}}).find("health.enabled"),
              std::string::npos);
    EXPECT_NE(error_of({{"health", {{"bind", "x"}}}}).find("bind"), std::string::npos);
}

}  // namespace
}  // namespace fwd::control
