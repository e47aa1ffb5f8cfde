// Feature sections of the node config (config_sections.hpp): a registered key
// is parsed with the same path-named errors as a built-in one, a file without
// it gives the section's defaults, reads are type checked, and registration
// refuses clashes. Most tests use a registry of their own, so what they
// register is seen by no other test; one section is registered in the global
// registry at load time, as a feature would.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>
#include "fwd/control/config_sections.hpp"

namespace fwd::control {
namespace {

using Json = nlohmann::json;

struct ConntrackConfig {
    uint32_t capacity = 262144;
    uint32_t tcp_established_s = 7440;
    bool ipv6 = false;
};

// Counts calls, to show a missing section does not reach the parser.
int conntrack_parses = 0;

ConntrackConfig parse_conntrack(const config::Object &o, const NodeConfig &cfg) {
    conntrack_parses++;
    ConntrackConfig c;
    if (auto f = o.get("capacity")) {
        c.capacity = f->integer<uint32_t>(1024, 1 << 26);
    }
    if (auto f = o.get("tcp_established_s")) {
        c.tcp_established_s = f->integer<uint32_t>(1, 5 * 86400);
    }
    // The built-in keys are parsed first, so the node's addresses are known.
    if (auto f = o.get("ipv6")) {
        c.ipv6 = f->boolean();
        if (c.ipv6 && !cfg.node_ip6) {
            f->fail("IPv6 connections are tracked on a node with node.ipv6 only");
        }
    }
    return c;
}

struct NatConfig {
    uint32_t ports = 64512;
};

ConfigSections conntrack_and_nat() {
    ConfigSections s;
    s.add<ConntrackConfig>("conntrack", {"capacity", "tcp_established_s", "ipv6"}, parse_conntrack);
    s.add<NatConfig>("nat", {"ports"}, [](const config::Object &o, const NodeConfig &) {
        NatConfig n;
        if (auto f = o.get("ports")) {
            n.ports = f->integer<uint32_t>(1, 64512);
        }
        return n;
    });
    return s;
}

Json minimal() {
    return Json::parse(R"({
        "node_name": "node1",
        "cores": {"workers": [{"core": 1}]},
        "node": {"ipv4": "10.10.10.10/24"}
    })");
}

NodeConfig parse(const Json &j, const ConfigSections &sections) {
    return parse_config(j.dump(), ConfigEnv{{0, 1}}, sections);
}

// The whole message, "<path>: <reason>", of a rejected config.
std::string error_of(const Json &j, const ConfigSections &sections) {
    try {
        parse(j, sections);
    } catch (const ConfigError &e) {
        return e.what();
    }
    return "(accepted)";
}

TEST(ConfigSection, ParsedAfterTheBuiltinKeys) {
    Json j = minimal();
    j["node"]["ipv6"] = "fd00:10:10::10/64";
    j["conntrack"] = {{"capacity", 4096}, {"tcp_established_s", 600}, {"ipv6", true}};
    j["nat"] = {{"ports", 1000}};
    NodeConfig c = parse(j, conntrack_and_nat());
    const ConntrackConfig &ct = c.section<ConntrackConfig>("conntrack");
    EXPECT_EQ(ct.capacity, 4096u);
    EXPECT_EQ(ct.tcp_established_s, 600u);
    EXPECT_TRUE(ct.ipv6);
    EXPECT_EQ(c.section<NatConfig>("nat").ports, 1000u);
}

TEST(ConfigSection, MissingSectionGivesTheDefaultsWithoutParsing) {
    int before = conntrack_parses;
    NodeConfig c = parse(minimal(), conntrack_and_nat());
    EXPECT_EQ(conntrack_parses, before);
    EXPECT_EQ(c.section<ConntrackConfig>("conntrack").capacity, 262144u);
    EXPECT_EQ(c.section<ConntrackConfig>("conntrack").tcp_established_s, 7440u);
    EXPECT_EQ(c.section<NatConfig>("nat").ports, 64512u);
}

TEST(ConfigSection, ValueErrorNamesThePath) {
    Json j = minimal();
    j["conntrack"] = {{"capacity", 10}};
    EXPECT_EQ(error_of(j, conntrack_and_nat()),
              "conntrack.capacity: expected an integer from 1024 to 67108864, got 10");
    j["conntrack"] = {{"capacity", "4096"}};
    EXPECT_EQ(error_of(j, conntrack_and_nat()),
              "conntrack.capacity: expected an integer from 1024 to 67108864, got \"4096\"");
}

TEST(ConfigSection, UnknownFieldNamesTheKnownOnes) {
    Json j = minimal();
    j["conntrack"] = {{"capcity", 4096}};
    EXPECT_EQ(error_of(j, conntrack_and_nat()),
              "conntrack.capcity: unknown field \"capcity\"; known fields: capacity, "
              "tcp_established_s, ipv6");
}

TEST(ConfigSection, NotAnObject) {
    Json j = minimal();
    j["nat"] = 5;
    EXPECT_EQ(error_of(j, conntrack_and_nat()), "nat: expected an object with fields ports, got 5");
}

TEST(ConfigSection, ParserChecksAgainstTheBuiltinFields) {
    Json j = minimal();
    j["conntrack"] = {{"ipv6", true}};
    EXPECT_EQ(error_of(j, conntrack_and_nat()),
              "conntrack.ipv6: IPv6 connections are tracked on a node with node.ipv6 only");
}

TEST(ConfigSection, RepeatedFieldIsReported) {
    std::string text = minimal().dump();
    text.insert(text.size() - 1, R"(,"nat": {"ports": 1, "ports": 2})");
    try {
        parse_config(text, ConfigEnv{{0, 1}}, conntrack_and_nat());
        ADD_FAILURE() << "accepted: " << text;
    } catch (const ConfigError &e) {
        EXPECT_EQ(e.path(), "nat.ports") << e.what();
    }
}

TEST(ConfigSection, RootUnknownFieldListsTheRegisteredKeys) {
    Json j = minimal();
    j["conntrak"] = Json::object();
    EXPECT_EQ(
        error_of(j, conntrack_and_nat()),
        "conntrak: unknown field \"conntrak\"; known fields: node_name, eal, cores, uplink, "
        "node, idle, api_socket, api_socket_group, run_dir, state_dir, mbufs, icmp_errors_per_sec, "
        "max_endpoints, "
        "pod_tap, routes, host, bgp, neighbor, tables, ipam, fast_path, stage_stats, conntrack, "
        "nat");
}

TEST(ConfigSection, ReadAsAnotherTypeThrows) {
    NodeConfig c = parse(minimal(), conntrack_and_nat());
    EXPECT_THROW(c.section<NatConfig>("conntrack"), std::logic_error);
    try {
        c.section<NatConfig>("conntrack");
    } catch (const std::logic_error &e) {
        EXPECT_NE(std::string(e.what()).find("ConntrackConfig"), std::string::npos) << e.what();
    }
    EXPECT_THROW(c.sections.set("conntrack", NatConfig{}), std::logic_error);
}

TEST(ConfigSection, UnregisteredKeyThrows) {
    NodeConfig c = parse(minimal(), conntrack_and_nat());
    EXPECT_THROW(c.section<ConntrackConfig>("conntrak"), std::logic_error);
    EXPECT_THROW(NodeConfig().section<ConntrackConfig>("conntrack"), std::logic_error);
}

TEST(ConfigSection, ReadingAnUndeclaredFieldIsABug) {
    ConfigSections s;
    s.add<NatConfig>("nat", {"ports"}, [](const config::Object &o, const NodeConfig &) {
        o.get("port");
        return NatConfig{};
    });
    Json j = minimal();
    j["nat"] = Json::object();
    EXPECT_THROW(parse(j, s), std::logic_error);
}

TEST(ConfigSection, CopiesKeepTheirOwnValues) {
    Json j = minimal();
    j["conntrack"] = {{"capacity", 4096}};
    NodeConfig a = parse(j, conntrack_and_nat());
    NodeConfig b = a;
    a.sections.set("conntrack", ConntrackConfig{8192});
    EXPECT_EQ(a.section<ConntrackConfig>("conntrack").capacity, 8192u);
    EXPECT_EQ(b.section<ConntrackConfig>("conntrack").capacity, 4096u);
}

TEST(ConfigSectionRegistration, KeyTakenTwiceOrBuiltinOrMalformed) {
    ConfigSections s = conntrack_and_nat();
    auto parse_nat = [](const config::Object &, const NodeConfig &) { return NatConfig{}; };
    EXPECT_THROW(s.add<NatConfig>("nat", {"ports"}, parse_nat), std::logic_error);
    EXPECT_THROW(s.add<NatConfig>("conntrack", {"ports"}, parse_nat), std::logic_error);
    EXPECT_THROW(s.add<NatConfig>("node", {"ports"}, parse_nat), std::logic_error);
    EXPECT_THROW(s.add<NatConfig>("stage_stats", {"ports"}, parse_nat), std::logic_error);
    EXPECT_THROW(s.add<NatConfig>("Nat", {"ports"}, parse_nat), std::logic_error);
    EXPECT_THROW(s.add<NatConfig>("", {"ports"}, parse_nat), std::logic_error);
    EXPECT_THROW(s.add<NatConfig>("nat2", {"ports", "ports"}, parse_nat), std::logic_error);
    EXPECT_EQ(s.sections().size(), 2u);
}

// Registered the way a feature does it, in the registry parse_config and
// NodeConfig::section read by default.
struct TestSectionConfig {
    uint32_t level = 3;
};

TestSectionConfig parse_test_section(const config::Object &o, const NodeConfig &) {
    TestSectionConfig t;
    if (auto f = o.get("level")) {
        t.level = f->integer<uint32_t>(0, 9);
    }
    return t;
}

FWD_ON_LOAD(register_config_section<TestSectionConfig>("test_section", {"level"},
                                                       parse_test_section));

TEST(ConfigSectionGlobal, RegisteredAtLoadTime) {
    Json j = minimal();
    j["test_section"] = {{"level", 7}};
    NodeConfig c = parse_config(j.dump(), ConfigEnv{{0, 1}});
    EXPECT_EQ(c.section<TestSectionConfig>("test_section").level, 7u);
    j["test_section"] = {{"level", 10}};
    EXPECT_EQ(error_of(j, ConfigSections::global()),
              "test_section.level: expected an integer from 0 to 9, got 10");
    j.erase("test_section");
    j["test_sektion"] = Json::object();
    // after the built-in keys, among the registered ones (in key order)
    const std::string e = error_of(j, ConfigSections::global());
    EXPECT_LT(e.find("stage_stats, "), e.find("test_section")) << e;
    EXPECT_NE(e.find("test_section"), std::string::npos) << e;
    ASSERT_NE(ConfigSections::global().find("test_section"), nullptr);
    EXPECT_THROW(
        register_config_section<TestSectionConfig>("test_section", {"level"}, parse_test_section),
        std::logic_error);
}

TEST(ConfigSectionGlobal, HandBuiltConfigGivesTheDefaults) {
    NodeConfig c;
    EXPECT_EQ(c.section<TestSectionConfig>("test_section").level, 3u);
    EXPECT_THROW(c.section<ConntrackConfig>("test_section"), std::logic_error);
    c.sections.set("test_section", TestSectionConfig{5});
    EXPECT_EQ(c.section<TestSectionConfig>("test_section").level, 5u);
}

}  // namespace
}  // namespace fwd::control
