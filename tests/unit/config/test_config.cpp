// Node config parser: a full config keeps every field, a minimal one gets the
// header's defaults, and each validation rule rejects with the exact JSON path
// of the bad field and a reason that quotes the bad value.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>
#include "fwd/control/config.hpp"

namespace fwd::control {
namespace {

using Json = nlohmann::json;

// Tests never depend on the CPUs of the machine running them.
ConfigEnv two_cpus() {
    return ConfigEnv{{0, 1}};
}

// The smallest config that parses.
Json minimal() {
    return Json::parse(R"({
        "node_name": "node1",
        "cores": {"workers": [{"core": 1}]},
        "node": {"ipv4": "10.10.10.10/24"}
    })");
}

// Every field set, none to its default.
Json full() {
    return Json::parse(R"({
        "node_name": "node-1.example",
        "eal": {"file_prefix": "fwd_node-1", "in_memory": false, "no_huge": true,
                "memory_mb": 1024, "extra_args": ["--log-level=lib.eal:debug", "-d"]},
        "cores": {"main": 1, "control": 0, "workers": [
            {"core": 0, "rx": [{"port": "uplink", "queue": 0}, {"port": "uplink", "queue": 2}]},
            {"core": 1, "rx": [{"port": "uplink", "queue": 1}]}
        ]},
        "uplink": {"devargs": "net_tap0,iface=up0", "rx_queues": 3, "mac": "02:00:00:00:00:01",
                   "vlan": 100},
        "node": {"ipv4": "10.10.10.10/24", "ipv6": "fd00:10:10::10/64", "mtu": 9000},
        "idle": {"enabled": false, "spin_polls": 7, "pause_polls": 8, "max_sleep_us": 9},
        "api_socket": "/tmp/x/api.sock", "run_dir": "/tmp/x", "state_dir": "/tmp/x/state",
        "mbufs": 4095, "icmp_errors_per_sec": 0, "max_endpoints": 65535,
        "routes": [
            {"prefix": "0.0.0.0/0", "via": "10.10.10.1", "mac": "02:00:00:00:00:fe"},
            {"prefix": "::/0", "type": "via", "via": "fd00:10:10::1", "mac": "02:00:00:00:00:fd"},
            {"prefix": "192.168.1.0/26", "type": "blackhole"},
            {"prefix": "fd00:10:244::/122", "type": "unreachable"}
        ]
    })");
}

// A config with an uplink of two queues, one per worker; the base for the
// rx and route rules.
Json with_uplink() {
    Json j = minimal();
    j["uplink"] = {{"devargs", "net_tap0,iface=up0"}, {"rx_queues", 2}};
    j["cores"]["workers"] = Json::parse(R"([
        {"core": 0, "rx": [{"port": "uplink", "queue": 0}]},
        {"core": 1, "rx": [{"port": "uplink", "queue": 1}]}
    ])");
    return j;
}

NodeConfig parse(const Json &j, const ConfigEnv &env = two_cpus()) {
    return parse_config(j.dump(), env);
}

// Parses text expected to be rejected and returns the error.
ConfigError error_of_text(const std::string &text, const ConfigEnv &env = two_cpus()) {
    try {
        parse_config(text, env);
    } catch (const ConfigError &e) {
        return e;
    }
    ADD_FAILURE() << "accepted: " << text;
    return ConfigError("(accepted)", "");
}

ConfigError error_of(const Json &j, const ConfigEnv &env = two_cpus()) {
    return error_of_text(j.dump(), env);
}

bool contains(const std::string &haystack, const std::string &needle) {
    return haystack.find(needle) != std::string::npos;
}

// The rejection names the field and quotes what was wrong with it.
#define EXPECT_CONFIG_ERROR(json, expected_path, needle)                         \
    do {                                                                         \
        ConfigError e_ = error_of(json);                                         \
        EXPECT_EQ(e_.path(), expected_path) << e_.what();                        \
        EXPECT_TRUE(contains(e_.reason(), needle)) << "reason: " << e_.reason(); \
    } while (0)

TEST(ConfigValid, FullConfigKeepsEveryField) {
    NodeConfig c = parse(full());
    EXPECT_EQ(c.node_name, "node-1.example");
    EXPECT_EQ(c.eal.file_prefix, "fwd_node-1");
    EXPECT_FALSE(c.eal.in_memory);
    EXPECT_TRUE(c.eal.no_huge);
    EXPECT_EQ(c.eal.memory_mb, 1024u);
    EXPECT_EQ(c.eal.extra_args, (std::vector<std::string>{"--log-level=lib.eal:debug", "-d"}));
    EXPECT_EQ(c.main_core, 1u);
    EXPECT_EQ(c.control_core, 0u);
    ASSERT_EQ(c.workers.size(), 2u);
    EXPECT_EQ(c.workers[0].core, 0u);
    ASSERT_EQ(c.workers[0].rx.size(), 2u);
    EXPECT_EQ(c.workers[0].rx[0].port, "uplink");
    EXPECT_EQ(c.workers[0].rx[0].queue, 0);
    EXPECT_EQ(c.workers[0].rx[1].queue, 2);
    EXPECT_EQ(c.workers[1].core, 1u);
    ASSERT_EQ(c.workers[1].rx.size(), 1u);
    EXPECT_EQ(c.workers[1].rx[0].queue, 1);
    ASSERT_TRUE(c.uplink);
    EXPECT_EQ(c.uplink->devargs, "net_tap0,iface=up0");
    EXPECT_EQ(c.uplink->rx_queues, 3);
    EXPECT_EQ(c.uplink->mac, net::MacAddr::parse("02:00:00:00:00:01"));
    EXPECT_EQ(c.uplink->vlan, 100);
    EXPECT_EQ(c.node_ip4, net::IfAddr4::parse("10.10.10.10/24"));
    EXPECT_EQ(c.node_ip6, net::IfAddr6::parse("fd00:10:10::10/64"));
    EXPECT_EQ(c.mtu, 9000);
    EXPECT_FALSE(c.idle.enabled);
    EXPECT_EQ(c.idle.spin_polls, 7u);
    EXPECT_EQ(c.idle.pause_polls, 8u);
    EXPECT_EQ(c.idle.max_sleep_us, 9u);
    EXPECT_EQ(c.api_socket, "/tmp/x/api.sock");
    EXPECT_EQ(c.run_dir, "/tmp/x");
    EXPECT_EQ(c.state_dir, "/tmp/x/state");
    EXPECT_EQ(c.mbufs, 4095u);
    EXPECT_EQ(c.icmp_errors_per_sec, 0u);
    EXPECT_EQ(c.max_endpoints, 65535u);

    ASSERT_EQ(c.routes.size(), 4u);
    EXPECT_EQ(std::get<net::Prefix4>(c.routes[0].prefix), net::Prefix4::parse("0.0.0.0/0"));
    EXPECT_EQ(c.routes[0].kind, RouteKind::kVia);
    EXPECT_EQ(c.routes[0].via, net::IpAddr::parse("10.10.10.1"));
    EXPECT_EQ(c.routes[0].mac, net::MacAddr::parse("02:00:00:00:00:fe"));
    EXPECT_EQ(std::get<net::Prefix6>(c.routes[1].prefix), net::Prefix6::parse("::/0"));
    EXPECT_EQ(c.routes[1].kind, RouteKind::kVia);
    EXPECT_EQ(c.routes[1].via, net::IpAddr::parse("fd00:10:10::1"));
    EXPECT_EQ(c.routes[1].mac, net::MacAddr::parse("02:00:00:00:00:fd"));
    EXPECT_EQ(std::get<net::Prefix4>(c.routes[2].prefix), net::Prefix4::parse("192.168.1.0/26"));
    EXPECT_EQ(c.routes[2].kind, RouteKind::kBlackhole);
    EXPECT_FALSE(c.routes[2].via);
    EXPECT_FALSE(c.routes[2].mac);
    EXPECT_EQ(std::get<net::Prefix6>(c.routes[3].prefix), net::Prefix6::parse("fd00:10:244::/122"));
    EXPECT_EQ(c.routes[3].kind, RouteKind::kUnreachable);
}

TEST(ConfigValid, MinimalConfigGetsDefaults) {
    NodeConfig c = parse(minimal());
    const NodeConfig d;
    EXPECT_EQ(c.node_name, "node1");
    EXPECT_EQ(c.eal.file_prefix, d.eal.file_prefix);
    EXPECT_EQ(c.eal.in_memory, d.eal.in_memory);
    EXPECT_EQ(c.eal.no_huge, d.eal.no_huge);
    EXPECT_EQ(c.eal.memory_mb, d.eal.memory_mb);
    EXPECT_TRUE(c.eal.extra_args.empty());
    EXPECT_EQ(c.main_core, 0u);
    EXPECT_EQ(c.control_core, 0u);
    ASSERT_EQ(c.workers.size(), 1u);
    EXPECT_EQ(c.workers[0].core, 1u);
    EXPECT_TRUE(c.workers[0].rx.empty());
    EXPECT_FALSE(c.uplink);
    EXPECT_EQ(c.node_ip4, net::IfAddr4::parse("10.10.10.10/24"));
    EXPECT_FALSE(c.node_ip6);
    EXPECT_EQ(c.mtu, 1500);
    EXPECT_EQ(c.idle.enabled, d.idle.enabled);
    EXPECT_EQ(c.idle.spin_polls, d.idle.spin_polls);
    EXPECT_EQ(c.idle.pause_polls, d.idle.pause_polls);
    EXPECT_EQ(c.idle.max_sleep_us, d.idle.max_sleep_us);
    EXPECT_EQ(c.api_socket, "/run/dpdk-fwd/api.sock");
    EXPECT_EQ(c.run_dir, "/run/dpdk-fwd");
    EXPECT_EQ(c.state_dir, "/var/lib/dpdk-fwd");
    EXPECT_EQ(c.mbufs, 16383u);
    EXPECT_EQ(c.icmp_errors_per_sec, 1000u);
    EXPECT_EQ(c.max_endpoints, 1024u);
    EXPECT_EQ(c.pod_tap, "fwdpods");
    EXPECT_TRUE(c.routes.empty());
}

TEST(ConfigValid, UplinkDefaultsAndQueueDefault) {
    Json j = minimal();
    j["uplink"] = {{"devargs", "net_null0"}};
    j["cores"]["workers"][0]["rx"] = Json::parse(R"([{"port": "uplink"}])");
    NodeConfig c = parse(j);
    ASSERT_TRUE(c.uplink);
    EXPECT_EQ(c.uplink->rx_queues, 1);
    EXPECT_FALSE(c.uplink->mac);
    EXPECT_FALSE(c.uplink->vlan);
    EXPECT_EQ(c.workers[0].rx[0].queue, 0);
}

TEST(ConfigValid, Ipv6OnlyNode) {
    Json j = minimal();
    j["node"] = {{"ipv6", "2001:db8::10/64"}};
    NodeConfig c = parse(j);
    EXPECT_FALSE(c.node_ip4);
    EXPECT_EQ(c.node_ip6, net::IfAddr6::parse("2001:db8::10/64"));
}

TEST(ConfigValid, WorkerMayShareCpuWithMainAndControl) {
    Json j = minimal();
    j["cores"] = Json::parse(R"({"main": 1, "control": 1, "workers": [{"core": 1}]})");
    EXPECT_EQ(parse(j).workers[0].core, 1u);
}

TEST(ConfigValid, InMemoryAndNoHugeTogether) {
    Json j = minimal();
    j["eal"] = {{"in_memory", true}, {"no_huge", true}};
    NodeConfig c = parse(j);
    EXPECT_TRUE(c.eal.in_memory);
    EXPECT_TRUE(c.eal.no_huge);
}

TEST(ConfigValid, SmallMtuWithoutIpv6) {
    Json j = minimal();
    j["node"]["mtu"] = 576;
    EXPECT_EQ(parse(j).mtu, 576);
}

TEST(ConfigValid, SixtyFourWorkers) {
    ConfigEnv env;
    Json j = minimal();
    j["cores"]["workers"] = Json::array();
    for (unsigned i = 0; i < 64; i++) {
        env.cpus.push_back(i);
        j["cores"]["workers"].push_back({{"core", i}});
    }
    EXPECT_EQ(parse(j, env).workers.size(), 64u);
}

TEST(ConfigValid, ThisProcessHasCpus) {
    ConfigEnv env = ConfigEnv::from_this_process();
    EXPECT_FALSE(env.cpus.empty());
}

TEST(ConfigExamples, NodeSingleParses) {
    NodeConfig c = load_config(FWD_CONFIGS_DIR "/node-single.json", two_cpus());
    ASSERT_EQ(c.workers.size(), 1u);
    EXPECT_EQ(c.workers[0].core, 1u);
    EXPECT_FALSE(c.uplink);
    EXPECT_EQ(c.node_ip4, net::IfAddr4::parse("10.10.10.10/24"));
    EXPECT_EQ(c.node_ip6, net::IfAddr6::parse("fd00:10:10::10/64"));
    EXPECT_EQ(c.api_socket, "/run/dpdk-fwd/api.sock");
}

TEST(ConfigExamples, NodeBgpParses) {
    NodeConfig c = load_config(FWD_CONFIGS_DIR "/node-bgp.json", two_cpus());
    ASSERT_TRUE(c.host && c.bgp && c.uplink);
    EXPECT_EQ(c.host->tap, "fwdhost");
    EXPECT_EQ(c.bgp->protocols, std::vector<uint8_t>{12});
    ASSERT_EQ(c.routes.size(), 2u);
    EXPECT_FALSE(c.routes[0].mac.has_value());  // resolved by the dataplane
    ASSERT_TRUE(c.ipam);
    EXPECT_EQ(c.ipam->bird_include, "/etc/bird/dpdk-fwd-ipam.conf");
}

TEST(ConfigExamples, NodeTwoWorkersParses) {
    NodeConfig c = load_config(FWD_CONFIGS_DIR "/node-2workers.json", two_cpus());
    ASSERT_EQ(c.workers.size(), 2u);
    EXPECT_EQ(c.workers[0].core, 0u);
    EXPECT_EQ(c.workers[1].core, 1u);
    ASSERT_TRUE(c.uplink);
    EXPECT_EQ(c.uplink->rx_queues, 2);
    ASSERT_EQ(c.workers[0].rx.size(), 1u);
    ASSERT_EQ(c.workers[1].rx.size(), 1u);
    EXPECT_EQ(c.workers[0].rx[0].queue, 0);
    EXPECT_EQ(c.workers[1].rx[0].queue, 1);
}

// --- The document itself ---

TEST(ConfigDocument, NotJson) {
    ConfigError e = error_of_text("{\n  \"node_name\": \"n1\",\n  oops\n}");
    EXPECT_EQ(e.path(), "(file)");
    EXPECT_TRUE(contains(e.reason(), "line 3, column")) << e.reason();
}

TEST(ConfigDocument, EmptyFile) {
    EXPECT_EQ(error_of_text("").path(), "(file)");
}

TEST(ConfigDocument, MissingFile) {
    const std::string path = "/nonexistent-dir/node.json";
    try {
        load_config(path, two_cpus());
        ADD_FAILURE() << "missing file accepted";
    } catch (const ConfigError &e) {
        EXPECT_EQ(e.path(), path);
        EXPECT_TRUE(contains(e.reason(), std::strerror(ENOENT))) << e.reason();
    }
}

TEST(ConfigDocument, NotAnObject) {
    ConfigError e = error_of_text("[1, 2]");
    EXPECT_EQ(e.path(), "(root)");
    EXPECT_TRUE(contains(e.reason(), "an array")) << e.reason();
}

TEST(ConfigDocument, UnknownTopLevelField) {
    Json j = minimal();
    j["node_nmae"] = "x";
    EXPECT_CONFIG_ERROR(j, "node_nmae", "known fields: node_name");
}

TEST(ConfigDocument, UnknownNestedField) {
    Json j = minimal();
    j["node"]["mtux"] = 1500;
    EXPECT_CONFIG_ERROR(j, "node.mtux", "unknown field \"mtux\"; known fields: ipv4, ipv6, mtu");
}

TEST(ConfigDocument, UnknownFieldInArrayElement) {
    Json j = with_uplink();
    j["cores"]["workers"][1]["rx"][0]["qeue"] = 1;
    EXPECT_CONFIG_ERROR(j, "cores.workers[1].rx[0].qeue", "qeue");
}

TEST(ConfigDocument, UnknownFieldReportedBeforeMissingOne) {
    Json j = minimal();
    j["node"] = {{"ipv4x", "10.0.0.1/24"}};
    EXPECT_CONFIG_ERROR(j, "node.ipv4x", "unknown field");
}

TEST(ConfigDocument, DuplicateField) {
    ConfigError e = error_of_text(R"({"node_name": "n1", "cores": {"workers": [{"core": 1}]},
        "node": {"ipv4": "10.0.0.1/24", "mtu": 1500, "mtu": 9000}})");
    EXPECT_EQ(e.path(), "node.mtu");
    EXPECT_TRUE(contains(e.reason(), "twice")) << e.reason();
}

TEST(ConfigDocument, DuplicateFieldInArrayElement) {
    ConfigError e = error_of_text(R"({"node_name": "n1",
        "cores": {"workers": [{"core": 0}, {"core": 1, "core": 1}]},
        "node": {"ipv4": "10.0.0.1/24"}})");
    EXPECT_EQ(e.path(), "cores.workers[1].core");
}

TEST(ConfigDocument, WrongTypeInteger) {
    Json j = minimal();
    j["node"]["mtu"] = "1500";
    EXPECT_CONFIG_ERROR(j, "node.mtu", "expected an integer from 576 to 9000, got \"1500\"");
}

TEST(ConfigDocument, WrongTypeFraction) {
    Json j = minimal();
    j["max_endpoints"] = 10.5;
    EXPECT_CONFIG_ERROR(j, "max_endpoints", "got 10.5");
}

TEST(ConfigDocument, WrongTypeBoolean) {
    Json j = minimal();
    j["idle"] = {{"enabled", "yes"}};
    EXPECT_CONFIG_ERROR(j, "idle.enabled", "expected true or false, got \"yes\"");
}

TEST(ConfigValid, StageStatsOffUnlessAsked) {
    EXPECT_FALSE(parse(minimal()).stage_stats);
    Json j = minimal();
    j["stage_stats"] = true;
    EXPECT_TRUE(parse(j).stage_stats);
    j["stage_stats"] = false;
    EXPECT_FALSE(parse(j).stage_stats);
}

TEST(ConfigValid, FastPathOnUnlessTurnedOff) {
    EXPECT_TRUE(parse(minimal()).fast_path);
    Json j = minimal();
    j["fast_path"] = false;
    EXPECT_FALSE(parse(j).fast_path);
    j["fast_path"] = true;
    EXPECT_TRUE(parse(j).fast_path);
}

TEST(ConfigDocument, WrongTypeFastPath) {
    Json j = minimal();
    j["fast_path"] = 0;
    EXPECT_CONFIG_ERROR(j, "fast_path", "expected true or false, got 0");
}

TEST(ConfigDocument, WrongTypeStageStats) {
    Json j = minimal();
    j["stage_stats"] = "on";
    EXPECT_CONFIG_ERROR(j, "stage_stats", "expected true or false, got \"on\"");
    j["stage_stats"] = 1;
    EXPECT_CONFIG_ERROR(j, "stage_stats", "expected true or false, got 1");
}

TEST(ConfigDocument, WrongTypeObject) {
    Json j = minimal();
    j["eal"] = Json::array();
    EXPECT_CONFIG_ERROR(j, "eal", "expected an object");
}

TEST(ConfigDocument, WrongTypeString) {
    Json j = minimal();
    j["node_name"] = 7;
    EXPECT_CONFIG_ERROR(j, "node_name", "got 7");
}

// --- node_name ---

TEST(ConfigNodeName, Missing) {
    Json j = minimal();
    j.erase("node_name");
    EXPECT_CONFIG_ERROR(j, "node_name", "required field is missing");
}

TEST(ConfigNodeName, Uppercase) {
    Json j = minimal();
    j["node_name"] = "Node1";
    EXPECT_CONFIG_ERROR(j, "node_name", "\"Node1\"");
}

TEST(ConfigNodeName, Empty) {
    Json j = minimal();
    j["node_name"] = "";
    EXPECT_CONFIG_ERROR(j, "node_name", "[a-z0-9.-]");
}

TEST(ConfigNodeName, TooLong) {
    Json j = minimal();
    j["node_name"] = std::string(63, 'a');
    EXPECT_NO_THROW(parse(j));
    j["node_name"] = std::string(64, 'a');
    EXPECT_CONFIG_ERROR(j, "node_name", "1 to 63 characters");
}

TEST(ConfigNodeName, MustStartAndEndAlphanumeric) {
    Json j = minimal();
    j["node_name"] = "-node";
    EXPECT_CONFIG_ERROR(j, "node_name", "\"-node\"");
    j["node_name"] = "node.";
    EXPECT_CONFIG_ERROR(j, "node_name", "\"node.\"");
}

// --- cores ---

TEST(ConfigCores, MissingCores) {
    Json j = minimal();
    j.erase("cores");
    EXPECT_CONFIG_ERROR(j, "cores", "required field is missing");
}

TEST(ConfigCores, MissingWorkers) {
    Json j = minimal();
    j["cores"] = {{"main", 0}};
    EXPECT_CONFIG_ERROR(j, "cores.workers", "required field is missing");
}

TEST(ConfigCores, MainCoreNotAvailable) {
    Json j = minimal();
    j["cores"]["main"] = 7;
    EXPECT_CONFIG_ERROR(j, "cores.main",
                        "core 7 is not available (this process may run on cores 0-1)");
}

TEST(ConfigCores, ControlCoreNotAvailable) {
    Json j = minimal();
    j["cores"]["control"] = 2;
    EXPECT_CONFIG_ERROR(j, "cores.control", "core 2");
}

TEST(ConfigCores, WorkerCoreNotAvailable) {
    Json j = with_uplink();
    j["cores"]["workers"][1]["core"] = 7;
    EXPECT_CONFIG_ERROR(j, "cores.workers[1].core", "core 7");
}

TEST(ConfigCores, CpuListIsShownAsRanges) {
    Json j = minimal();
    j["cores"]["workers"][0]["core"] = 5;
    ConfigError e = error_of(j, ConfigEnv{{8, 0, 1, 2, 3, 6, 9}});
    EXPECT_EQ(e.path(), "cores.workers[0].core");
    EXPECT_TRUE(contains(e.reason(), "cores 0-3,6,8-9")) << e.reason();
}

TEST(ConfigCores, NegativeCore) {
    Json j = minimal();
    j["cores"]["workers"][0]["core"] = -1;
    EXPECT_CONFIG_ERROR(j, "cores.workers[0].core", "got -1");
}

TEST(ConfigCores, WorkerCoreMissing) {
    Json j = minimal();
    j["cores"]["workers"][0] = Json::object();
    EXPECT_CONFIG_ERROR(j, "cores.workers[0].core", "required field is missing");
}

TEST(ConfigCores, WorkerCoresDistinct) {
    Json j = minimal();
    j["cores"]["workers"] = Json::parse(R"([{"core": 1}, {"core": 0}, {"core": 1}])");
    EXPECT_CONFIG_ERROR(j, "cores.workers[2].core", "core 1 is already used by cores.workers[0]");
}

TEST(ConfigCores, NoWorkers) {
    Json j = minimal();
    j["cores"]["workers"] = Json::array();
    EXPECT_CONFIG_ERROR(j, "cores.workers", "expected an array of 1 to 64 workers, got 0");
}

TEST(ConfigCores, TooManyWorkers) {
    ConfigEnv env;
    Json j = minimal();
    j["cores"]["workers"] = Json::array();
    for (unsigned i = 0; i < 65; i++) {
        env.cpus.push_back(i);
        j["cores"]["workers"].push_back({{"core", i}});
    }
    ConfigError e = error_of(j, env);
    EXPECT_EQ(e.path(), "cores.workers");
    EXPECT_TRUE(contains(e.reason(), "got 65")) << e.reason();
}

// --- rx queues ---

TEST(ConfigRx, PortMustBeUplink) {
    Json j = with_uplink();
    j["cores"]["workers"][0]["rx"][0]["port"] = "eth0";
    EXPECT_CONFIG_ERROR(j, "cores.workers[0].rx[0].port", "expected \"uplink\"");
}

TEST(ConfigRx, PortMissing) {
    Json j = with_uplink();
    j["cores"]["workers"][0]["rx"][0].erase("port");
    EXPECT_CONFIG_ERROR(j, "cores.workers[0].rx[0].port", "required field is missing");
}

TEST(ConfigRx, UplinkPortWithoutUplink) {
    Json j = minimal();
    j["cores"]["workers"][0]["rx"] = Json::parse(R"([{"port": "uplink", "queue": 0}])");
    EXPECT_CONFIG_ERROR(j, "cores.workers[0].rx[0].port", "no uplink is configured");
}

TEST(ConfigRx, QueueBeyondRxQueues) {
    Json j = with_uplink();
    j["cores"]["workers"][1]["rx"][0]["queue"] = 2;
    EXPECT_CONFIG_ERROR(j, "cores.workers[1].rx[0].queue",
                        "expected a queue from 0 to 1 (uplink.rx_queues is 2), got 2");
}

TEST(ConfigRx, QueuePolledTwice) {
    Json j = with_uplink();
    j["uplink"]["rx_queues"] = 1;
    j["cores"]["workers"][1]["rx"][0]["queue"] = 0;
    ConfigError e = error_of(j);
    EXPECT_EQ(e.path(), "cores.workers[1].rx[0].queue");
    EXPECT_TRUE(contains(e.reason(), "uplink queue 0")) << e.reason();
    EXPECT_TRUE(contains(e.reason(), "cores.workers[0]")) << e.reason();
    EXPECT_TRUE(contains(e.reason(), "cores.workers[1]")) << e.reason();
}

TEST(ConfigRx, QueuePolledTwiceBySameWorker) {
    Json j = with_uplink();
    j["cores"]["workers"][0]["rx"].push_back({{"port", "uplink"}, {"queue", 0}});
    EXPECT_CONFIG_ERROR(j, "cores.workers[0].rx[1].queue", "already polled by cores.workers[0]");
}

TEST(ConfigRx, QueueNotPolled) {
    Json j = with_uplink();
    j["cores"]["workers"][1].erase("rx");
    EXPECT_CONFIG_ERROR(j, "cores.workers", "uplink queue 1 is not polled by any worker");
}

// --- uplink ---

TEST(ConfigUplink, DevargsMissing) {
    Json j = with_uplink();
    j["uplink"].erase("devargs");
    EXPECT_CONFIG_ERROR(j, "uplink.devargs", "required field is missing");
}

TEST(ConfigUplink, DevargsEmpty) {
    Json j = with_uplink();
    j["uplink"]["devargs"] = "";
    EXPECT_CONFIG_ERROR(j, "uplink.devargs", "non-empty");
}

TEST(ConfigUplink, RxQueuesRange) {
    Json j = with_uplink();
    j["uplink"]["rx_queues"] = 0;
    EXPECT_CONFIG_ERROR(j, "uplink.rx_queues", "expected an integer from 1 to 16, got 0");
    j["uplink"]["rx_queues"] = 17;
    EXPECT_CONFIG_ERROR(j, "uplink.rx_queues", "got 17");
}

TEST(ConfigUplink, VlanRange) {
    Json j = with_uplink();
    j["uplink"]["vlan"] = 0;
    EXPECT_CONFIG_ERROR(j, "uplink.vlan", "expected an integer from 1 to 4094, got 0");
    j["uplink"]["vlan"] = 4095;
    EXPECT_CONFIG_ERROR(j, "uplink.vlan", "got 4095");
}

TEST(ConfigUplink, MacInvalid) {
    Json j = with_uplink();
    j["uplink"]["mac"] = "02:00:00:00:00";
    EXPECT_CONFIG_ERROR(j, "uplink.mac", "got \"02:00:00:00:00\"");
}

TEST(ConfigUplink, MacMulticast) {
    Json j = with_uplink();
    j["uplink"]["mac"] = "01:00:5e:00:00:01";
    EXPECT_CONFIG_ERROR(j, "uplink.mac", "expected a unicast MAC");
}

TEST(ConfigUplink, MacZero) {
    Json j = with_uplink();
    j["uplink"]["mac"] = "00:00:00:00:00:00";
    EXPECT_CONFIG_ERROR(j, "uplink.mac", "got \"00:00:00:00:00:00\"");
}

// --- node addresses and MTU ---

TEST(ConfigNode, Missing) {
    Json j = minimal();
    j.erase("node");
    EXPECT_CONFIG_ERROR(j, "node", "required field is missing");
}

TEST(ConfigNode, NoAddress) {
    Json j = minimal();
    j["node"] = {{"mtu", 1500}};
    EXPECT_CONFIG_ERROR(j, "node", "at least one of \"ipv4\" and \"ipv6\"");
}

TEST(ConfigNode, Ipv4Invalid) {
    Json j = minimal();
    j["node"]["ipv4"] = "10.10.10.300/24";
    EXPECT_CONFIG_ERROR(j, "node.ipv4", "got \"10.10.10.300/24\"");
}

TEST(ConfigNode, Ipv4NeedsPrefixLength) {
    Json j = minimal();
    j["node"]["ipv4"] = "10.10.10.10";
    EXPECT_CONFIG_ERROR(j, "node.ipv4", "with prefix length");
}

TEST(ConfigNode, Ipv4Multicast) {
    Json j = minimal();
    j["node"]["ipv4"] = "224.0.0.5/24";
    EXPECT_CONFIG_ERROR(j, "node.ipv4", "got \"224.0.0.5/24\"");
}

TEST(ConfigNode, Ipv6Invalid) {
    Json j = minimal();
    j["node"]["ipv6"] = "fd00::10::1/64";
    EXPECT_CONFIG_ERROR(j, "node.ipv6", "got \"fd00::10::1/64\"");
}

TEST(ConfigNode, Ipv6LinkLocal) {
    Json j = minimal();
    j["node"]["ipv6"] = "fe80::1/64";
    EXPECT_CONFIG_ERROR(j, "node.ipv6", "not link-local");
}

TEST(ConfigNode, Ipv6Multicast) {
    Json j = minimal();
    j["node"]["ipv6"] = "ff02::1/64";
    EXPECT_CONFIG_ERROR(j, "node.ipv6", "not multicast");
}

TEST(ConfigNode, MtuRange) {
    Json j = minimal();
    j["node"]["mtu"] = 70000;
    EXPECT_CONFIG_ERROR(j, "node.mtu", "expected an integer from 576 to 9000, got 70000");
    j["node"]["mtu"] = 575;
    EXPECT_CONFIG_ERROR(j, "node.mtu", "got 575");
}

TEST(ConfigNode, MtuWithIpv6) {
    Json j = minimal();
    j["node"]["ipv6"] = "fd00:10:10::10/64";
    j["node"]["mtu"] = 1279;
    EXPECT_CONFIG_ERROR(j, "node.mtu", "expected at least 1280");
    j["node"]["mtu"] = 1280;
    EXPECT_NO_THROW(parse(j));
}

// --- eal ---

TEST(ConfigEal, FilePrefixCharacters) {
    Json j = minimal();
    j["eal"] = {{"file_prefix", "fwd/node1"}};
    EXPECT_CONFIG_ERROR(j, "eal.file_prefix", "got \"fwd/node1\"");
}

TEST(ConfigEal, FilePrefixLength) {
    Json j = minimal();
    j["eal"] = {{"file_prefix", std::string(32, 'f')}};
    EXPECT_NO_THROW(parse(j));
    j["eal"]["file_prefix"] = std::string(33, 'f');
    EXPECT_CONFIG_ERROR(j, "eal.file_prefix", "1 to 32 characters");
    j["eal"]["file_prefix"] = "";
    EXPECT_CONFIG_ERROR(j, "eal.file_prefix", "got \"\"");
}

TEST(ConfigEal, MemoryRange) {
    Json j = minimal();
    j["eal"] = {{"memory_mb", 63}};
    EXPECT_CONFIG_ERROR(j, "eal.memory_mb", "expected an integer from 64 to 65536, got 63");
    j["eal"]["memory_mb"] = 65537;
    EXPECT_CONFIG_ERROR(j, "eal.memory_mb", "got 65537");
}

TEST(ConfigEal, ExtraArgsMustBeStrings) {
    Json j = minimal();
    j["eal"] = {{"extra_args", Json::array({"-d", 5})}};
    EXPECT_CONFIG_ERROR(j, "eal.extra_args[1]", "got 5");
}

// --- idle ---

TEST(ConfigIdle, MaxSleepRange) {
    Json j = minimal();
    j["idle"] = {{"max_sleep_us", 100001}};
    EXPECT_CONFIG_ERROR(j, "idle.max_sleep_us", "expected an integer from 0 to 100000, got 100001");
}

TEST(ConfigIdle, SpinPollsRange) {
    Json j = minimal();
    j["idle"] = {{"spin_polls", 10000001}};
    EXPECT_CONFIG_ERROR(j, "idle.spin_polls", "from 0 to 10000000, got 10000001");
}

TEST(ConfigIdle, PausePollsRange) {
    Json j = minimal();
    j["idle"] = {{"pause_polls", -5}};
    EXPECT_CONFIG_ERROR(j, "idle.pause_polls", "got -5");
}

// --- paths ---

TEST(ConfigPaths, ApiSocketAbsolute) {
    Json j = minimal();
    j["api_socket"] = "run/api.sock";
    EXPECT_CONFIG_ERROR(j, "api_socket",
                        "expected an absolute path (starting with '/'), got \"run/api.sock\"");
}

TEST(ConfigPaths, ApiSocketFitsSunPath) {
    Json j = minimal();
    j["api_socket"] = "/" + std::string(106, 's');
    EXPECT_NO_THROW(parse(j));
    j["api_socket"] = "/" + std::string(107, 's');
    EXPECT_CONFIG_ERROR(j, "api_socket",
                        "expected at most 107 bytes (the size of sun_path), got 108");
}

// The API's group by name or number; a name the machine does not know is refused.
TEST(ConfigPaths, ApiSocketGroup) {
    Json j = minimal();
    EXPECT_FALSE(parse(j).api_socket_group.has_value());
    j["api_socket_group"] = "root";
    EXPECT_EQ(parse(j).api_socket_group, gid_t{0});
    j["api_socket_group"] = 4321;
    EXPECT_EQ(parse(j).api_socket_group, gid_t{4321});
    j["api_socket_group"] = "no-such-group-here";
    EXPECT_CONFIG_ERROR(j, "api_socket_group", "no group 'no-such-group-here' on this machine");
    j["api_socket_group"] = -1;
    EXPECT_CONFIG_ERROR(j, "api_socket_group", "expected an integer from 0 to 2147483647");
}

TEST(ConfigPaths, RunDirAbsolute) {
    Json j = minimal();
    j["run_dir"] = "";
    EXPECT_CONFIG_ERROR(j, "run_dir", "got \"\"");
}

// --- pool and limits ---

TEST(ConfigLimits, MbufsRange) {
    Json j = minimal();
    j["mbufs"] = 1022;
    EXPECT_CONFIG_ERROR(j, "mbufs", "expected an integer from 1023 to 1048575, got 1022");
    j["mbufs"] = 1048576;
    EXPECT_CONFIG_ERROR(j, "mbufs", "got 1048576");
}

TEST(ConfigLimits, IcmpErrorsRange) {
    Json j = minimal();
    j["icmp_errors_per_sec"] = 1000001;
    EXPECT_CONFIG_ERROR(j, "icmp_errors_per_sec", "from 0 to 1000000, got 1000001");
}

TEST(ConfigLimits, MaxEndpointsRange) {
    Json j = minimal();
    j["max_endpoints"] = 0;
    EXPECT_CONFIG_ERROR(j, "max_endpoints", "expected an integer from 1 to 65535, got 0");
    j["max_endpoints"] = 65536;
    EXPECT_CONFIG_ERROR(j, "max_endpoints", "got 65536");
}

// --- routes ---

TEST(ConfigRoutes, PrefixInvalid) {
    Json j = minimal();
    j["routes"] = Json::parse(R"([{"prefix": "10.0.0.0/33", "type": "blackhole"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].prefix", "got \"10.0.0.0/33\"");
}

TEST(ConfigRoutes, PrefixMissing) {
    Json j = minimal();
    j["routes"] = Json::parse(R"([{"type": "blackhole"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].prefix", "required field is missing");
}

TEST(ConfigRoutes, PrefixHostBits4) {
    Json j = minimal();
    j["routes"] = Json::parse(R"([{"prefix": "192.168.1.5/24", "type": "blackhole"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].prefix",
                        "host bits set in \"192.168.1.5/24\"; expected the network address "
                        "\"192.168.1.0/24\"");
}

TEST(ConfigRoutes, PrefixHostBits6) {
    Json j = minimal();
    j["routes"] = Json::parse(R"([{"prefix": "fd00:10:244::1/122", "type": "unreachable"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].prefix", "\"fd00:10:244::/122\"");
}

TEST(ConfigRoutes, TypeUnknown) {
    Json j = minimal();
    j["routes"] = Json::parse(R"([{"prefix": "10.0.0.0/8", "type": "drop"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].type",
                        "expected one of \"blackhole\", \"unreachable\", \"via\", got \"drop\"");
}

TEST(ConfigRoutes, TypeRequiredWithoutVia) {
    Json j = minimal();
    j["routes"] = Json::parse(R"([{"prefix": "10.0.0.0/8"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].type", "required field is missing");
}

TEST(ConfigRoutes, ViaMissingForTypeVia) {
    Json j = with_uplink();
    j["routes"] =
        Json::parse(R"([{"prefix": "10.0.0.0/8", "type": "via", "mac": "02:00:00:00:00:fe"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].via", "required field is missing");
}

TEST(ConfigRoutes, ViaWrongFamily) {
    Json j = with_uplink();
    j["routes"] =
        Json::parse(R"([{"prefix": "0.0.0.0/0", "via": "fd00::1", "mac": "02:00:00:00:00:fe"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].via", "expected an IPv4 next-hop address");
    j["routes"] =
        Json::parse(R"([{"prefix": "::/0", "via": "10.0.0.1", "mac": "02:00:00:00:00:fe"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].via", "got \"10.0.0.1\"");
}

TEST(ConfigRoutes, MacIsOptionalForViaTheDataplaneResolvesIt) {
    Json j = with_uplink();
    j["routes"] = Json::parse(R"([{"prefix": "0.0.0.0/0", "via": "10.10.10.1"}])");
    NodeConfig c = parse(j);
    ASSERT_EQ(c.routes.size(), 1u);
    EXPECT_FALSE(c.routes[0].mac.has_value());
    EXPECT_EQ(c.routes[0].via->str(), "10.10.10.1");
}

TEST(ConfigHostBgpNeighborTables, DefaultsWhenAbsent) {
    NodeConfig c = parse(minimal());
    EXPECT_FALSE(c.host.has_value());
    EXPECT_FALSE(c.bgp.has_value());
    EXPECT_EQ(c.neighbor.retrans_ms, 1000u);
    EXPECT_EQ(c.tables.ipv4_routes, 131072u);
}

TEST(ConfigHostBgpNeighborTables, AllFields) {
    Json j = with_uplink();
    j["host"] = Json::parse(R"({"tap": "fwdhost0", "punt_rate_pps": 500})");
    j["bgp"] = Json::parse(R"({"table": 100, "protocols": [12, 186], "netns": "node1"})");
    j["neighbor"] = Json::parse(
        R"({"retrans_ms": 200, "max_probes": 5, "reachable_ms": 10000, "queue_len": 8})");
    j["tables"] =
        Json::parse(R"({"ipv4_routes": 300000, "ipv6_routes": 200000, "ipv4_tbl8s": 65536})");
    NodeConfig c = parse(j);
    EXPECT_EQ(c.host->tap, "fwdhost0");
    EXPECT_EQ(c.host->punt_rate_pps, 500u);
    EXPECT_EQ(c.bgp->table, 100u);
    EXPECT_EQ(c.bgp->protocols, (std::vector<uint8_t>{12, 186}));
    EXPECT_EQ(c.bgp->netns, "node1");
    EXPECT_EQ(c.neighbor.max_probes, 5u);
    EXPECT_EQ(c.neighbor.queue_len, 8u);
    EXPECT_EQ(c.tables.ipv4_routes, 300000u);
    EXPECT_EQ(c.tables.ipv4_tbl8s, 65536u);
}

TEST(ConfigPodTap, NameIsAnInterfaceNameOfItsOwn) {
    Json j = with_uplink();
    j["pod_tap"] = "pods0";
    EXPECT_EQ(parse(j).pod_tap, "pods0");
    j["pod_tap"] = "a-name-that-is-too-long";
    EXPECT_CONFIG_ERROR(j, "pod_tap", "is not an interface name");
    j["pod_tap"] = "a/b";
    EXPECT_CONFIG_ERROR(j, "pod_tap", "is not an interface name");
    j["pod_tap"] = "fwdhost";
    j["host"] = Json::parse(R"({"punt_rate_pps": 500})");
    EXPECT_CONFIG_ERROR(j, "host.tap", "is also pod_tap");
}

TEST(ConfigHostBgpNeighborTables, BadValuesAreNamed) {
    Json j = with_uplink();
    j["host"] = Json::parse(R"({"tap": "a-name-that-is-too-long"})");
    EXPECT_CONFIG_ERROR(j, "host.tap", "is not an interface name");
    j["host"] = Json::parse(R"({"tap": "ok", "rate": 1})");
    EXPECT_CONFIG_ERROR(j, "host.rate", "unknown field \"rate\"");
    j.erase("host");
    j["bgp"] = Json::parse(R"({"protocols": [300]})");
    EXPECT_CONFIG_ERROR(j, "bgp.protocols[0]", "an integer from 0 to 255");
    j["bgp"] = Json::parse(R"({"protocols": []})");
    EXPECT_CONFIG_ERROR(j, "bgp.protocols", "1 to 16");
    j["bgp"] = Json::parse(R"({"table": 0})");
    EXPECT_CONFIG_ERROR(j, "bgp.table", "an integer from 1");
    j.erase("bgp");
    j["neighbor"] = Json::parse(R"({"retrans_ms": 1})");
    EXPECT_CONFIG_ERROR(j, "neighbor.retrans_ms", "an integer from 10 to 60000");
    j.erase("neighbor");
    j["tables"] = Json::parse(R"({"ipv6_routes": 5})");
    EXPECT_CONFIG_ERROR(j, "tables.ipv6_routes", "an integer from 1024");
}

TEST(ConfigIpam, DefaultsAndAllFields) {
    EXPECT_FALSE(parse(minimal()).ipam.has_value());
    Json j = minimal();
    j["ipam"] = Json::object();
    NodeConfig c = parse(j);
    ASSERT_TRUE(c.ipam);
    EXPECT_EQ(c.ipam->store, "embedded:/var/lib/dpdk-fwd/ipam");
    EXPECT_EQ(c.ipam->sync_ms, 1000u);
    EXPECT_TRUE(c.ipam->bird_include.empty());
    j["ipam"] = Json::parse(R"({"store": "etcd:http://10.0.0.254:2379;http://10.0.0.253:2379,/c1",
        "sync_ms": 250, "release_empty_blocks_s": 0, "bird_include": "/etc/bird/fwd-ipam.conf",
        "bird_socket": "/run/bird/bird.ctl", "birdc": "/usr/local/sbin/birdc"})");
    c = parse(j);
    EXPECT_EQ(c.ipam->store, "etcd:http://10.0.0.254:2379;http://10.0.0.253:2379,/c1");
    EXPECT_EQ(c.ipam->sync_ms, 250u);
    EXPECT_EQ(c.ipam->release_empty_blocks_s, 0u);
    EXPECT_EQ(c.ipam->bird_include, "/etc/bird/fwd-ipam.conf");
    EXPECT_EQ(c.ipam->bird_socket, "/run/bird/bird.ctl");
    EXPECT_EQ(c.ipam->birdc, "/usr/local/sbin/birdc");
}

TEST(ConfigIpam, BadValuesAreNamed) {
    Json j = minimal();
    j["ipam"] = Json::parse(R"({"store": "consul:x"})");
    EXPECT_CONFIG_ERROR(j, "ipam.store", "want embedded:<dir> or etcd:<url>");
    j["ipam"] = Json::parse(R"({"store": "embedded:relative/dir"})");
    EXPECT_CONFIG_ERROR(j, "ipam.store", "absolute directory");
    j["ipam"] = Json::parse(R"({"store": "etcd:10.0.0.1:2379"})");
    EXPECT_CONFIG_ERROR(j, "ipam.store", "is not an http:// or https:// URL");
    j["ipam"] = Json::parse(R"({"sync_ms": 1})");
    EXPECT_CONFIG_ERROR(j, "ipam.sync_ms", "an integer from 10");
    j["ipam"] = Json::parse(R"({"bird_socket": "/run/bird/bird.ctl"})");
    EXPECT_CONFIG_ERROR(j, "ipam.bird_socket", "bird_include, which is not set");
    j["ipam"] = Json::parse(R"({"bird_include": "fwd.conf"})");
    EXPECT_CONFIG_ERROR(j, "ipam.bird_include", "absolute");
    j["ipam"] = Json::parse(R"({"pools": []})");
    EXPECT_CONFIG_ERROR(j, "ipam.pools", "unknown field \"pools\"");
}

TEST(ConfigRoutes, MacInvalidForVia) {
    Json j = with_uplink();
    j["routes"] = Json::parse(
        R"([{"prefix": "0.0.0.0/0", "via": "10.10.10.1", "mac": "ff:ff:ff:ff:ff:ff"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].mac", "got \"ff:ff:ff:ff:ff:ff\"");
}

TEST(ConfigRoutes, ViaNotAllowedForBlackhole) {
    Json j = with_uplink();
    j["routes"] =
        Json::parse(R"([{"prefix": "10.0.0.0/8", "type": "blackhole", "via": "10.10.10.1"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].via", "only allowed for type \"via\"");
}

TEST(ConfigRoutes, ViaNeedsUplink) {
    Json j = minimal();
    j["routes"] = Json::parse(
        R"([{"prefix": "0.0.0.0/0", "via": "10.10.10.1", "mac": "02:00:00:00:00:fe"}])");
    EXPECT_CONFIG_ERROR(j, "routes[0].via", "no uplink is configured");
}

TEST(ConfigRoutes, DuplicatePrefix) {
    Json j = minimal();
    j["routes"] = Json::parse(R"([{"prefix": "10.0.0.0/8", "type": "blackhole"},
                                  {"prefix": "fd00::/8", "type": "blackhole"},
                                  {"prefix": "10.0.0.0/8", "type": "unreachable"}])");
    EXPECT_CONFIG_ERROR(j, "routes[2].prefix", "already routed by routes[0]");
}

}  // namespace
}  // namespace fwd::control
