// The CNI protocol layer of dpdk-fwd-cni (CNI spec 1.1.0; 0.3.x, 0.4.0 and 1.0.0 configs too):
// the environment each verb requires, CNI_ARGS, network configs, results per version, error
// JSON and VERSION, then the whole run() against a fake handler. The last group runs Debian's
// reference plugins (host-local) and reads what they print with our parser, so our idea of the
// protocol is checked against libcni's, not only against our own reading of the spec.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "fwd/cni/error.hpp"
#include "fwd/cni/invocation.hpp"
#include "fwd/cni/netconf.hpp"
#include "fwd/cni/plugin.hpp"
#include "fwd/cni/result.hpp"
#include "fwd/cni/version.hpp"

namespace fwd::cni {
namespace {

using Json = nlohmann::json;

// The error f throws; a test failure if it throws none.
template <typename F>
Error error_of(F &&f) {
    try {
        f();
    } catch (const Error &e) {
        return e;
    }
    ADD_FAILURE() << "no cni::Error thrown";
    return Error(ErrorCode::kInternal, "no error");
}

bool contains(const std::string &s, const std::string &part) {
    return s.find(part) != std::string::npos;
}

// Everything a container verb may need, all valid.
Env full_env(const std::string &cmd) {
    return {{"CNI_COMMAND", cmd},
            {"CNI_CONTAINERID", "0b3a9e1f5c7d"},
            {"CNI_NETNS", "/var/run/netns/cni-1234"},
            {"CNI_IFNAME", "eth0"},
            {"CNI_PATH", "/opt/cni/bin:/usr/lib/cni"}};
}

Env without(Env env, const std::string &name) {
    env.erase(name);
    return env;
}

Env with(Env env, const std::string &name, const std::string &value) {
    env[name] = value;
    return env;
}

// Calico's conflist entry as operators write it.
Json calico_config(const std::string &version = "1.0.0") {
    auto conf = Json::parse(R"({
        "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "dpdk-fwd-cni",
        "log_level": "info", "datastore_type": "kubernetes", "nodename": "node-1",
        "mtu": 1450,
        "ipam": {"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true",
                 "ipv4_pools": ["192.168.0.0/16", "default-ipv4-ippool"],
                 "ipv6_pools": ["fd00:10:244::/48"]},
        "policy": {"type": "k8s"},
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}
    })");
    conf["cniVersion"] = version;
    return conf;
}

Json minimal_config(const std::string &version = "1.0.0") {
    return {{"cniVersion", version}, {"name", "k8s-pod-network"}, {"type", "dpdk-fwd-cni"}};
}

Error config_error(const Json &conf, Command cmd = Command::kAdd) {
    return error_of([&] { parse_netconf(conf.dump(), cmd); });
}

// ---------------------------------------------------------------------------------------------
// The invocation: CNI_* variables per verb.

TEST(CniCommand, NamesRoundTripAndOnlyUpperCase) {
    for (auto cmd : {Command::kAdd, Command::kDel, Command::kCheck, Command::kStatus, Command::kGc,
                     Command::kVersion}) {
        EXPECT_EQ(parse_command(command_name(cmd)), cmd);
    }
    EXPECT_EQ(command_name(Command::kGc), "GC");
    EXPECT_FALSE(parse_command("add"));
    EXPECT_FALSE(parse_command("INIT"));
    EXPECT_FALSE(parse_command(""));
}

TEST(CniInvocation, AddReadsEveryVariable) {
    auto env = full_env("ADD");
    env["CNI_ARGS"] = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";
    auto inv = parse_invocation(env);
    EXPECT_EQ(inv.command, Command::kAdd);
    EXPECT_EQ(inv.container_id, "0b3a9e1f5c7d");
    EXPECT_EQ(inv.netns, "/var/run/netns/cni-1234");
    EXPECT_EQ(inv.ifname, "eth0");
    EXPECT_EQ(inv.path, (std::vector<std::string>{"/opt/cni/bin", "/usr/lib/cni"}));
    EXPECT_EQ(inv.args.pod_namespace, "default");
    EXPECT_EQ(inv.args.pod_name, "web-0");
}

// ADD and CHECK need the container, its namespace and the interface name; each one missing is
// code 4 and named.
TEST(CniInvocation, AddAndCheckRequireContainerNetnsIfname) {
    for (const char *cmd : {"ADD", "CHECK"}) {
        for (const char *var : {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"}) {
            auto e = error_of([&] { parse_invocation(without(full_env(cmd), var)); });
            EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment) << cmd << " " << var;
            EXPECT_TRUE(contains(e.msg(), var)) << e.what();
        }
        // CNI_PATH and CNI_ARGS are optional.
        EXPECT_NO_THROW(parse_invocation(without(full_env(cmd), "CNI_PATH")));
    }
}

TEST(CniInvocation, MissingVariablesAreListedTogether) {
    auto e = error_of([] { parse_invocation({{"CNI_COMMAND", "ADD"}}); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
    EXPECT_EQ(e.msg(),
              "required environment variables missing: CNI_CONTAINERID, CNI_NETNS, "
              "CNI_IFNAME");
    EXPECT_TRUE(contains(e.details(), "ADD"));
}

TEST(CniInvocation, EmptyCountsAsMissing) {
    auto e = error_of([] { parse_invocation(with(full_env("ADD"), "CNI_NETNS", "")); });
    EXPECT_EQ(e.msg(), "required environment variables missing: CNI_NETNS");
}

// DEL runs when the namespace may already be gone: no CNI_NETNS needed, but taken when given.
TEST(CniInvocation, DelNeedsNoNetns) {
    auto inv = parse_invocation(without(full_env("DEL"), "CNI_NETNS"));
    EXPECT_EQ(inv.command, Command::kDel);
    EXPECT_EQ(inv.netns, "");
    EXPECT_EQ(parse_invocation(full_env("DEL")).netns, "/var/run/netns/cni-1234");
    for (const char *var : {"CNI_CONTAINERID", "CNI_IFNAME"}) {
        auto e = error_of([&] { parse_invocation(without(full_env("DEL"), var)); });
        EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
        EXPECT_TRUE(contains(e.msg(), var));
    }
}

// STATUS and VERSION concern the plugin, not a container: nothing but CNI_COMMAND, and
// container variables (even malformed ones) are not looked at.
TEST(CniInvocation, StatusAndVersionNeedOnlyTheCommand) {
    for (const char *cmd : {"STATUS", "VERSION"}) {
        auto inv = parse_invocation({{"CNI_COMMAND", cmd}});
        EXPECT_EQ(command_name(inv.command), cmd);
        Env odd = {{"CNI_COMMAND", cmd}, {"CNI_CONTAINERID", "-bad"}, {"CNI_IFNAME", "a/b"}};
        EXPECT_NO_THROW(parse_invocation(odd));
        EXPECT_EQ(parse_invocation(odd).container_id, "");
    }
}

// GC works on the whole network: CNI_PATH only.
TEST(CniInvocation, GcNeedsOnlyThePath) {
    auto inv = parse_invocation({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}});
    EXPECT_EQ(inv.command, Command::kGc);
    EXPECT_EQ(inv.path, std::vector<std::string>{"/opt/cni/bin"});
    auto e = error_of([] { parse_invocation({{"CNI_COMMAND", "GC"}}); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
    EXPECT_EQ(e.msg(), "required environment variables missing: CNI_PATH");
}

TEST(CniInvocation, CommandMissingOrUnknown) {
    auto e = error_of([] { parse_invocation({}); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
    EXPECT_TRUE(contains(e.msg(), "CNI_COMMAND"));
    e = error_of([] { parse_invocation({{"CNI_COMMAND", "FINALIZE"}}); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
    EXPECT_EQ(e.msg(), "invalid CNI_COMMAND \"FINALIZE\"");
}

TEST(CniInvocation, PathSplitsOnColonsAndDropsEmpties) {
    auto env = with(full_env("ADD"), "CNI_PATH", ":/opt/cni/bin::/usr/lib/cni:");
    EXPECT_EQ(parse_invocation(env).path,
              (std::vector<std::string>{"/opt/cni/bin", "/usr/lib/cni"}));
}

TEST(CniInvocation, ContainerIdFormat) {
    for (const char *ok :
         {"a", "0", "3f6940ab5ab43bc522569d15b23f8c1bbde1d7678b080398506924fc01d72755",
          "pod_1.net-2", "Z.9"}) {
        EXPECT_TRUE(is_valid_id(ok)) << ok;
        EXPECT_EQ(parse_invocation(with(full_env("ADD"), "CNI_CONTAINERID", ok)).container_id, ok);
    }
    for (const char *bad : {"-a", "_a", ".a", "a/b", "a b", "a:b", "a\n", "caf\xc3\xa9"}) {
        EXPECT_FALSE(is_valid_id(bad)) << bad;
        auto e = error_of([&] { parse_invocation(with(full_env("ADD"), "CNI_CONTAINERID", bad)); });
        EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment) << bad;
        EXPECT_TRUE(contains(e.msg(), "CNI_CONTAINERID")) << e.what();
    }
}

TEST(CniInvocation, IfnameFollowsLinuxRules) {
    for (const char *ok : {"eth0", "e", "net1", "a.b-c_d", "123456789012345", "..."}) {
        EXPECT_EQ(ifname_problem(ok), nullptr) << ok;
        EXPECT_NO_THROW(validate_ifname(ok));
    }
    const std::pair<std::string, const char *> bad[] = {
        {"", "empty"},
        {"1234567890123456", "15 bytes"},
        {".", "\".\""},
        {"..", "\".\""},
        {"a/b", "'/'"},
        {"a:b", "':'"},
        {"a b", "whitespace"},
        {"a\tb", "whitespace"},
        {std::string("a\0b", 3), "'/'"},
    };
    for (const auto &[name, why] : bad) {
        ASSERT_NE(ifname_problem(name), nullptr) << name;
        EXPECT_TRUE(contains(ifname_problem(name), why)) << ifname_problem(name);
        auto e = error_of(
            [&, &name = name] { parse_invocation(with(full_env("ADD"), "CNI_IFNAME", name)); });
        EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
        EXPECT_TRUE(contains(e.msg(), "CNI_IFNAME"));
    }
}

TEST(CniInvocation, EnvFromEnvp) {
    char a[] = "CNI_COMMAND=ADD";
    char b[] = "CNI_ARGS=A=1;B=2";
    char c[] = "EMPTY=";
    char *envp[] = {a, b, c, nullptr};
    Env env = env_from(envp);
    EXPECT_EQ(env.size(), 3u);
    EXPECT_EQ(env["CNI_COMMAND"], "ADD");
    EXPECT_EQ(env["CNI_ARGS"], "A=1;B=2");
    EXPECT_EQ(env["EMPTY"], "");
    EXPECT_TRUE(env_from(nullptr).empty());
}

// ---------------------------------------------------------------------------------------------
// CNI_ARGS.

// What containerd and CRI-O pass for a pod.
TEST(CniArgsParse, KubernetesPodIdentity) {
    auto a = parse_cni_args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-5d78c9869d-x7x2p;"
        "K8S_POD_INFRA_CONTAINER_ID=3f6940ab5ab4;K8S_POD_UID=1b4d2c7e-8f9a-4b3c-9d2e-0f1a2b3c4d5e");
    EXPECT_TRUE(a.ignore_unknown);
    EXPECT_EQ(a.pod_namespace, "kube-system");
    EXPECT_EQ(a.pod_name, "coredns-5d78c9869d-x7x2p");
    EXPECT_EQ(a.infra_container_id, "3f6940ab5ab4");
    EXPECT_EQ(a.pod_uid, "1b4d2c7e-8f9a-4b3c-9d2e-0f1a2b3c4d5e");
    EXPECT_FALSE(a.ip);
    ASSERT_EQ(a.pairs.size(), 5u);
    EXPECT_EQ(a.pairs[1],
              (std::pair<std::string, std::string>{"K8S_POD_NAMESPACE", "kube-system"}));
}

TEST(CniArgsParse, EmptyAndTrailingSeparators) {
    EXPECT_TRUE(parse_cni_args("").pairs.empty());
    auto a = parse_cni_args(";K8S_POD_NAME=x;;");
    EXPECT_EQ(a.pairs.size(), 1u);
    EXPECT_EQ(a.pod_name, "x");
    // The value is everything after the first '=', and may be empty.
    a = parse_cni_args("IgnoreUnknown=true;TOKEN=YWJj==;K8S_POD_NAME=");
    EXPECT_EQ(a.pairs[1].second, "YWJj==");
    EXPECT_EQ(a.pod_name, "");
}

TEST(CniArgsParse, UnknownKeysNeedIgnoreUnknown) {
    auto e = error_of([] { parse_cni_args("FOO=bar;K8S_POD_NAME=x"); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
    EXPECT_EQ(e.msg(), "unknown key \"FOO\" in CNI_ARGS");
    // IgnoreUnknown anywhere in the list counts, in any case libcni accepts.
    EXPECT_NO_THROW(parse_cni_args("FOO=bar;IgnoreUnknown=1"));
    EXPECT_NO_THROW(parse_cni_args("IgnoreUnknown=TRUE;FOO=bar"));
    EXPECT_EQ(error_of([] { parse_cni_args("IgnoreUnknown=0;FOO=bar"); }).code(),
              ErrorCode::kInvalidEnvironment);
    e = error_of([] { parse_cni_args("IgnoreUnknown=yes"); });
    EXPECT_EQ(e.msg(), "invalid IgnoreUnknown in CNI_ARGS");
}

TEST(CniArgsParse, MalformedPairs) {
    for (const char *bad : {"FOO", "K8S_POD_NAME=x;BAR", "=value"}) {
        auto e = error_of([&] { parse_cni_args(bad); });
        EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment) << bad;
        EXPECT_EQ(e.msg(), "invalid CNI_ARGS") << bad;
    }
}

TEST(CniArgsParse, FixedIp) {
    EXPECT_EQ(parse_cni_args("IP=192.168.10.4").ip, net::IpAddr::parse("192.168.10.4"));
    EXPECT_EQ(parse_cni_args("IP=fd00::4").ip, net::IpAddr::parse("fd00::4"));
    auto e = error_of([] { parse_cni_args("IP=192.168.10.400"); });
    EXPECT_EQ(e.code(), ErrorCode::kInvalidEnvironment);
    EXPECT_EQ(e.msg(), "invalid IP in CNI_ARGS");
}

TEST(CniArgsParse, BadArgsFailTheInvocation) {
    auto env = with(full_env("DEL"), "CNI_ARGS", "NOPE");
    EXPECT_EQ(error_of([&] { parse_invocation(env); }).code(), ErrorCode::kInvalidEnvironment);
}

// ---------------------------------------------------------------------------------------------
// Versions.

TEST(CniVersion, ParseAndCompare) {
    auto v = SpecVersion::parse("1.1.0");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->str(), "1.1.0");
    EXPECT_LT(*SpecVersion::parse("0.4.0"), *SpecVersion::parse("1.0.0"));
    EXPECT_LT(*SpecVersion::parse("0.10.0"), *SpecVersion::parse("1.0.0"));
    EXPECT_GT(*SpecVersion::parse("0.10.0"), *SpecVersion::parse("0.4.0"));
    for (const char *bad :
         {"", "1", "1.0", "1.0.0.0", "1.0.x", "v1.0.0", "-1.0.0", "1..0", "1.0.0 "}) {
        EXPECT_FALSE(SpecVersion::parse(bad)) << bad;
    }
}

TEST(CniVersion, SupportedList) {
    for (const char *v : {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
        EXPECT_TRUE(is_supported(v)) << v;
        EXPECT_NO_THROW(require_supported(v));
    }
    for (const char *v : {"0.1.0", "0.2.0", "1.2.0", "2.0.0", "1.0", ""}) {
        EXPECT_FALSE(is_supported(v)) << v;
        auto e = error_of([&] { require_supported(v); });
        EXPECT_EQ(e.code(), ErrorCode::kIncompatibleVersion);
        EXPECT_EQ(e.msg(), "CNI version \"" + std::string(v) + "\" is not supported");
        EXPECT_EQ(e.details(), "dpdk-fwd-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
    }
    EXPECT_EQ(kLatestVersion, kSupportedVersions.back());
}

// CHECK came in 0.4.0, STATUS and GC in 1.1.0.
TEST(CniVersion, VerbsNeedTheirVersion) {
    EXPECT_NO_THROW(require_allowed(Command::kCheck, "0.4.0"));
    EXPECT_NO_THROW(require_allowed(Command::kAdd, "0.3.0"));
    auto e = error_of([] { require_allowed(Command::kCheck, "0.3.1"); });
    EXPECT_EQ(e.code(), ErrorCode::kIncompatibleVersion);
    EXPECT_EQ(e.msg(), "CHECK is not in CNI 0.3.1");
    EXPECT_EQ(e.details(), "CHECK needs cniVersion 0.4.0 or later");
    for (auto cmd : {Command::kStatus, Command::kGc}) {
        EXPECT_NO_THROW(require_allowed(cmd, "1.1.0"));
        EXPECT_EQ(error_of([&] { require_allowed(cmd, "1.0.0"); }).code(),
                  ErrorCode::kIncompatibleVersion);
    }
}

TEST(CniVersion, VersionReply) {
    auto j = version_json("0.4.0");
    EXPECT_EQ(j.size(), 2u);
    EXPECT_EQ(j["cniVersion"], "0.4.0");
    EXPECT_EQ(j["supportedVersions"], Json::parse(R"(["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"])"));
    // Never claims a version it does not speak.
    EXPECT_EQ(version_json("9.9.9")["cniVersion"], "1.1.0");
    EXPECT_EQ(version_json("")["cniVersion"], "1.1.0");
}

// ---------------------------------------------------------------------------------------------
// Network configs.

TEST(CniConfig, CalicoShapedConfig) {
    auto c = parse_netconf(calico_config().dump(), Command::kAdd);
    EXPECT_EQ(c.cni_version, "1.0.0");
    EXPECT_EQ(c.name, "k8s-pod-network");
    EXPECT_EQ(c.type, "dpdk-fwd-cni");
    EXPECT_EQ(c.mtu, 1450u);
    EXPECT_EQ(c.ipam.type, "calico-ipam");
    EXPECT_TRUE(c.ipam.assign_ipv4);
    EXPECT_TRUE(c.ipam.assign_ipv6);
    EXPECT_EQ(c.ipam.ipv4_pools,
              (std::vector<std::string>{"192.168.0.0/16", "default-ipv4-ippool"}));
    EXPECT_EQ(c.ipam.ipv6_pools, std::vector<std::string>{"fd00:10:244::/48"});
    EXPECT_EQ(c.daemon_socket, "/run/dpdk-fwd/api.sock");
    EXPECT_FALSE(c.vhost_user.enabled);
    EXPECT_FALSE(c.prev_result);
    EXPECT_FALSE(c.valid_attachments);
    // Calico's own keys are not ours, and are kept as received.
    EXPECT_EQ(c.raw["nodename"], "node-1");
    EXPECT_EQ(c.raw["kubernetes"]["kubeconfig"], "/etc/cni/net.d/calico-kubeconfig");
}

TEST(CniConfig, Defaults) {
    auto c = parse_netconf(minimal_config().dump(), Command::kAdd);
    EXPECT_FALSE(c.mtu);
    EXPECT_EQ(c.ipam.type, "calico-ipam");
    EXPECT_TRUE(c.ipam.assign_ipv4);
    EXPECT_FALSE(c.ipam.assign_ipv6);
    EXPECT_TRUE(c.ipam.ipv4_pools.empty());
    EXPECT_EQ(c.daemon_socket, kDefaultDaemonSocket);
    EXPECT_FALSE(c.vhost_user.enabled);
    EXPECT_TRUE(c.dns.empty());
    EXPECT_FALSE(c.runtime_config.mac);
    EXPECT_TRUE(c.cni_args.ips.empty());
}

class CniConfigVersions : public ::testing::TestWithParam<const char *> {};

// Every supported version's config is taken for ADD and DEL, the same fields read the same way.
TEST_P(CniConfigVersions, AcceptedForAddAndDel) {
    for (auto cmd : {Command::kAdd, Command::kDel}) {
        auto c = parse_netconf(calico_config(GetParam()).dump(), cmd);
        EXPECT_EQ(c.cni_version, GetParam());
        EXPECT_EQ(c.name, "k8s-pod-network");
        EXPECT_EQ(c.mtu, 1450u);
        EXPECT_EQ(c.ipam.ipv6_pools.size(), 1u);
    }
}

INSTANTIATE_TEST_SUITE_P(Supported, CniConfigVersions,
                         ::testing::Values("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"));

TEST(CniConfig, NotJsonIsCode6) {
    for (const char *bad : {"{", "{\"cniVersion\": \"1.0.0\",}", "cniVersion=1.0.0", "\xff"}) {
        auto e = error_of([&] { parse_netconf(std::string_view(bad), Command::kAdd); });
        EXPECT_EQ(e.code(), ErrorCode::kDecodeFailure) << bad;
        EXPECT_EQ(e.msg(), "the network config is not valid JSON");
        EXPECT_TRUE(contains(e.details(), "parse error")) << e.details();
    }
    auto e = error_of([] { parse_netconf(std::string_view(" \n"), Command::kDel); });
    EXPECT_EQ(e.code(), ErrorCode::kDecodeFailure);
    EXPECT_EQ(e.msg(), "no network config on stdin");
    e = error_of([] { parse_netconf(std::string_view("[1, 2]"), Command::kAdd); });
    EXPECT_EQ(e.code(), ErrorCode::kDecodeFailure);
    EXPECT_EQ(e.details(), "the network config must be an object, not array");
}

TEST(CniConfig, UnknownOrMissingVersionIsCode1) {
    for (const char *v : {"9.9.9", "0.2.0", "0.1.0", "1.0", ""}) {
        auto e = config_error(minimal_config(v));
        EXPECT_EQ(e.code(), ErrorCode::kIncompatibleVersion) << v;
        EXPECT_TRUE(contains(e.msg(), v)) << e.what();
    }
    auto conf = minimal_config();
    conf.erase("cniVersion");
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kIncompatibleVersion);
    EXPECT_EQ(e.msg(), "the network config has no cniVersion");
    conf["cniVersion"] = 1.0;
    EXPECT_EQ(config_error(conf).code(), ErrorCode::kDecodeFailure);
}

TEST(CniConfig, VerbsBeforeTheirVersionAreCode1) {
    EXPECT_EQ(config_error(calico_config("0.3.1"), Command::kCheck).code(),
              ErrorCode::kIncompatibleVersion);
    for (auto cmd : {Command::kStatus, Command::kGc}) {
        auto e = config_error(calico_config("1.0.0"), cmd);
        EXPECT_EQ(e.code(), ErrorCode::kIncompatibleVersion);
        EXPECT_EQ(e.msg(), std::string(command_name(cmd)) + " is not in CNI 1.0.0");
    }
}

TEST(CniConfig, NameAndTypeAreRequired) {
    auto conf = minimal_config();
    conf.erase("name");
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "missing name");
    for (const char *bad : {"", "-net", "my net", "net/1"}) {
        conf["name"] = bad;
        e = config_error(conf);
        EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << bad;
        EXPECT_EQ(e.msg(), "invalid name");
    }
    conf = minimal_config();
    conf.erase("type");
    EXPECT_EQ(config_error(conf).msg(), "missing type");
    conf = minimal_config();
    conf["name"] = 7;
    e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kDecodeFailure);
    EXPECT_EQ(e.details(), "name must be a string, not number");
}

TEST(CniConfig, UnknownFieldsAreAllowed) {
    auto conf = minimal_config();
    conf["capabilities"] = {{"portMappings", true}};
    conf["someone_elses"] = {{"deep", {1, 2, {{"x", nullptr}}}}};
    conf["cniVersions"] = {"1.0.0", "1.1.0"};
    conf["ipam"] = {{"type", "calico-ipam"}, {"subnet", "usePodCidr"}};
    auto c = parse_netconf(conf.dump(), Command::kAdd);
    EXPECT_EQ(c.raw, conf);
    // A JSON null reads as absent.
    conf["mtu"] = nullptr;
    conf["ipam"] = nullptr;
    EXPECT_FALSE(parse_netconf(conf.dump(), Command::kAdd).mtu);
}

TEST(CniConfig, IpamAssignFlags) {
    auto conf = minimal_config();
    conf["ipam"] = {{"assign_ipv4", "false"}, {"assign_ipv6", "true"}};
    auto c = parse_netconf(conf.dump(), Command::kAdd);
    EXPECT_FALSE(c.ipam.assign_ipv4);
    EXPECT_TRUE(c.ipam.assign_ipv6);
    // JSON booleans are read too.
    conf["ipam"] = {{"assign_ipv4", true}, {"assign_ipv6", true}};
    c = parse_netconf(conf.dump(), Command::kAdd);
    EXPECT_TRUE(c.ipam.assign_ipv4 && c.ipam.assign_ipv6);

    conf["ipam"] = {{"assign_ipv4", "yes"}};
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "invalid ipam.assign_ipv4");
    EXPECT_EQ(e.details(), "must be \"true\" or \"false\", not \"yes\"");
    conf["ipam"] = {{"assign_ipv6", 1}};
    e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kDecodeFailure);
    EXPECT_EQ(e.msg(), "cannot decode ipam.assign_ipv6");
    conf["ipam"] = {{"assign_ipv4", "false"}};
    e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_TRUE(contains(e.details(), "nothing to assign"));
    conf["ipam"] = "calico-ipam";
    EXPECT_EQ(config_error(conf).code(), ErrorCode::kDecodeFailure);
}

// We do not delegate to an IPAM plugin: another ipam.type is a field we cannot honour (2).
TEST(CniConfig, OtherIpamTypeIsCode2) {
    auto conf = minimal_config();
    conf["ipam"] = {{"type", "host-local"}, {"subnet", "10.1.0.0/16"}};
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kUnsupportedField);
    EXPECT_EQ(e.msg(), "unsupported ipam.type \"host-local\"");
}

TEST(CniConfig, IpamPools) {
    auto conf = minimal_config();
    conf["ipam"] = {{"ipv4_pools", {"192.168.0.0/16", "10.0.0.0/8", "blue-pool"}},
                    {"ipv6_pools", {"fd00::/48"}}};
    EXPECT_EQ(parse_netconf(conf.dump(), Command::kAdd).ipam.ipv4_pools.size(), 3u);

    conf["ipam"] = {{"ipv4_pools", {"192.168.0.0/16", "fd00::/48"}}};
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "invalid ipam.ipv4_pools[1]");
    EXPECT_EQ(e.details(), "\"fd00::/48\" is an IPv6 CIDR in an IPv4 pool list");
    conf["ipam"] = {{"ipv6_pools", {"10.0.0.0/8"}}};
    EXPECT_EQ(config_error(conf).details(), "\"10.0.0.0/8\" is an IPv4 CIDR in an IPv6 pool list");
    conf["ipam"] = {{"ipv4_pools", {"10.0.0.0/33"}}};
    EXPECT_EQ(config_error(conf).details(), "\"10.0.0.0/33\" is not a CIDR");
    conf["ipam"] = {{"ipv4_pools", {""}}};
    EXPECT_EQ(config_error(conf).code(), ErrorCode::kInvalidConfig);
    conf["ipam"] = {{"ipv4_pools", "192.168.0.0/16"}};
    EXPECT_EQ(config_error(conf).details(), "ipam.ipv4_pools must be an array, not string");
    conf["ipam"] = {{"ipv4_pools", {1}}};
    EXPECT_EQ(config_error(conf).details(), "ipam.ipv4_pools[0] must be a string, not number");
}

TEST(CniConfig, Mtu) {
    auto conf = minimal_config();
    conf["mtu"] = 0;  // Calico's "auto"
    EXPECT_FALSE(parse_netconf(conf.dump(), Command::kAdd).mtu);
    conf["mtu"] = 9000;
    EXPECT_EQ(parse_netconf(conf.dump(), Command::kAdd).mtu, 9000u);
    conf["mtu"] = 1000;  // fine for IPv4 alone
    EXPECT_EQ(parse_netconf(conf.dump(), Command::kAdd).mtu, 1000u);

    conf["ipam"] = {{"assign_ipv6", "true"}};
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "invalid mtu");
    EXPECT_EQ(e.details(), "1000 is below IPv6's minimum of 1280");
    conf.erase("ipam");
    conf["mtu"] = 67;
    EXPECT_EQ(config_error(conf).details(), "67 is below IPv4's minimum of 68");
    for (const Json &bad : {Json(70000), Json(-1)}) {
        conf["mtu"] = bad;
        e = config_error(conf);
        EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << bad;
        EXPECT_EQ(e.details(), "must be between 0 and 65535, not " + bad.dump());
    }
    for (const Json &bad : {Json("1500"), Json(1500.5)}) {
        conf["mtu"] = bad;
        EXPECT_EQ(config_error(conf).code(), ErrorCode::kDecodeFailure) << bad;
    }
}

TEST(CniConfig, DaemonSocket) {
    auto conf = minimal_config();
    conf["dpdk_fwd_socket"] = "/tmp/fwd/api.sock";
    EXPECT_EQ(parse_netconf(conf.dump(), Command::kAdd).daemon_socket, "/tmp/fwd/api.sock");
    for (const std::string &bad :
         {std::string("run/api.sock"), std::string(""), "/" + std::string(107, 'a')}) {
        conf["dpdk_fwd_socket"] = bad;
        auto e = config_error(conf);
        EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig) << bad;
        EXPECT_EQ(e.msg(), "invalid dpdk_fwd_socket");
    }
}

TEST(CniConfig, VhostUser) {
    auto conf = minimal_config();
    conf["vhost_user"] = true;
    auto c = parse_netconf(conf.dump(), Command::kAdd);
    EXPECT_TRUE(c.vhost_user.enabled);
    EXPECT_FALSE(c.vhost_user.client);
    conf["vhost_user"] = {{"mode", "client"}, {"socket_dir", "/run/vhost"}};
    c = parse_netconf(conf.dump(), Command::kAdd);
    EXPECT_TRUE(c.vhost_user.enabled);
    EXPECT_TRUE(c.vhost_user.client);
    EXPECT_EQ(c.vhost_user.socket_dir, "/run/vhost");
    EXPECT_EQ(c.vhost_user.queues, 0u);  // the daemon's default
    conf["vhost_user"] = {{"queues", 4}};
    EXPECT_EQ(parse_netconf(conf.dump(), Command::kAdd).vhost_user.queues, 4u);
    conf["vhost_user"] = {{"enabled", false}, {"mode", "server"}};
    EXPECT_FALSE(parse_netconf(conf.dump(), Command::kAdd).vhost_user.enabled);
    for (int q : {0, 9}) {
        conf["vhost_user"] = {{"queues", q}};
        EXPECT_EQ(config_error(conf).msg(), "invalid vhost_user.queues") << q;
    }

    conf["vhost_user"] = {{"mode", "proxy"}};
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "invalid vhost_user.mode");
    conf["vhost_user"] = {{"socket_dir", "vhost"}};
    EXPECT_EQ(config_error(conf).msg(), "invalid vhost_user.socket_dir");
    conf["vhost_user"] = "yes";
    e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kDecodeFailure);
    EXPECT_EQ(e.details(), "vhost_user must be true, false or an object, not string");
}

TEST(CniConfig, RuntimeConfigAndArgs) {
    auto conf = minimal_config();
    conf["runtimeConfig"] = {{"mac", "c2:11:22:33:44:55"},
                             {"ips", {"10.10.0.1/24", "3ffe:ffff:0:1ff::1/64"}},
                             {"portMappings", Json::array()}};
    conf["args"] = {{"cni", {{"ips", {"10.2.2.42"}}, {"vhost_user", true}}},
                    {"labels", {{"app", "web"}}}};
    auto c = parse_netconf(conf.dump(), Command::kAdd);
    EXPECT_EQ(c.runtime_config.mac, net::MacAddr::parse("c2:11:22:33:44:55"));
    ASSERT_EQ(c.runtime_config.ips.size(), 2u);
    EXPECT_EQ(str(c.runtime_config.ips[0]), "10.10.0.1/24");
    EXPECT_EQ(str(c.runtime_config.ips[1]), "3ffe:ffff:0:1ff::1/64");
    ASSERT_EQ(c.cni_args.ips.size(), 1u);
    EXPECT_EQ(str(c.cni_args.ips[0]), "10.2.2.42/32");  // a bare address is a host address
    EXPECT_EQ(c.cni_args.vhost_user, true);
    EXPECT_FALSE(c.runtime_config.vhost_user);

    conf["runtimeConfig"] = {{"mac", "c2:11:22:33:44"}};
    auto e = config_error(conf);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "invalid runtimeConfig.mac");
    EXPECT_EQ(e.details(), "\"c2:11:22:33:44\" is not a MAC address");
    conf["runtimeConfig"] = {{"mac", "01:00:5e:00:00:01"}};
    EXPECT_EQ(config_error(conf).details(), "01:00:5e:00:00:01 is not a unicast address");
    conf["runtimeConfig"] = {{"ips", {"10.0.0.1", "10.0.0.300"}}};
    e = config_error(conf);
    EXPECT_EQ(e.msg(), "invalid runtimeConfig.ips[1]");
    conf.erase("runtimeConfig");
    conf["args"] = {{"cni", {{"vhost_user", "yes"}}}};
    EXPECT_EQ(config_error(conf).msg(), "cannot decode args.cni.vhost_user");
}

Request request_with(const Json &conf, const std::string &cni_args = "") {
    return parse_request(with(full_env("ADD"), "CNI_ARGS", cni_args), conf.dump());
}

// runtimeConfig (the runtime's capability args) wins over args.cni, which wins over CNI_ARGS IP
// and the network's own setting.
TEST(CniConfig, RequestResolvesPerAttachmentWishes) {
    auto conf = minimal_config();
    auto r = request_with(conf);
    EXPECT_EQ(r.handle(), "k8s-pod-network.0b3a9e1f5c7d");
    EXPECT_FALSE(r.wants_vhost_user());
    EXPECT_FALSE(r.requested_mac());
    EXPECT_TRUE(r.requested_ips().empty());

    r = request_with(conf, "IP=fd00::7");
    ASSERT_EQ(r.requested_ips().size(), 1u);
    EXPECT_EQ(str(r.requested_ips()[0]), "fd00::7/128");

    conf["vhost_user"] = true;
    conf["args"] = {{"cni", {{"ips", {"10.2.2.42"}}, {"mac", "02:00:00:00:00:02"}}}};
    r = request_with(conf, "IP=10.9.9.9");
    EXPECT_TRUE(r.wants_vhost_user());
    EXPECT_EQ(str(r.requested_ips().at(0)), "10.2.2.42/32");
    EXPECT_EQ(r.requested_mac(), net::MacAddr::parse("02:00:00:00:00:02"));

    conf["args"]["cni"]["vhost_user"] = false;
    conf["runtimeConfig"] = {{"ips", {"10.1.1.1/32"}}, {"mac", "02:00:00:00:00:01"}};
    r = request_with(conf);
    EXPECT_FALSE(r.wants_vhost_user());
    EXPECT_EQ(str(r.requested_ips().at(0)), "10.1.1.1/32");
    EXPECT_EQ(r.requested_mac(), net::MacAddr::parse("02:00:00:00:00:01"));
    conf["runtimeConfig"]["vhost_user"] = true;
    EXPECT_TRUE(request_with(conf).wants_vhost_user());
}

TEST(CniConfig, CheckNeedsPrevResult) {
    auto e = config_error(minimal_config(), Command::kCheck);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "missing prevResult");
}

TEST(CniConfig, GcValidAttachments) {
    auto conf = minimal_config("1.1.0");
    conf["cni.dev/valid-attachments"] = {{{"containerID", "3f6940ab5ab4"}, {"ifname", "eth0"}},
                                         {{"containerID", "3f6940ab5ab4"}, {"ifname", "net1"}}};
    auto c = parse_netconf(conf.dump(), Command::kGc);
    ASSERT_TRUE(c.valid_attachments);
    EXPECT_EQ(*c.valid_attachments,
              (std::vector<Attachment>{{"3f6940ab5ab4", "eth0"}, {"3f6940ab5ab4", "net1"}}));
    // libcni also sends the earlier draft's key; either is read.
    conf.erase("cni.dev/valid-attachments");
    conf["cni.dev/attachments"] = {{{"containerID", "c1"}, {"ifname", "eth0"}}};
    EXPECT_EQ(parse_netconf(conf.dump(), Command::kGc).valid_attachments->size(), 1u);
    // An empty list is a real answer: nothing is kept.
    conf["cni.dev/attachments"] = Json::array();
    EXPECT_TRUE(parse_netconf(conf.dump(), Command::kGc).valid_attachments->empty());

    // Without the list GC must not guess.
    conf.erase("cni.dev/attachments");
    auto e = config_error(conf, Command::kGc);
    EXPECT_EQ(e.code(), ErrorCode::kInvalidConfig);
    EXPECT_EQ(e.msg(), "missing cni.dev/valid-attachments");

    conf["cni.dev/valid-attachments"] = {{{"containerID", "-x"}, {"ifname", "eth0"}}};
    EXPECT_EQ(config_error(conf, Command::kGc).msg(),
              "invalid cni.dev/valid-attachments[0].containerID");
    conf["cni.dev/valid-attachments"] = {{{"containerID", "c1"}, {"ifname", "a:b"}}};
    EXPECT_EQ(config_error(conf, Command::kGc).msg(),
              "invalid cni.dev/valid-attachments[0].ifname");
    conf["cni.dev/valid-attachments"] = {{{"containerID", "c1"}}};
    EXPECT_EQ(config_error(conf, Command::kGc).msg(),
              "missing cni.dev/valid-attachments[0].ifname");
}

TEST(CniConfig, Dns) {
    auto conf = minimal_config();
    conf["dns"] = {{"nameservers", {"10.96.0.10"}},
                   {"domain", "cluster.local"},
                   {"search", {"default.svc.cluster.local", "svc.cluster.local"}},
                   {"options", {"ndots:5"}}};
    auto c = parse_netconf(conf.dump(), Command::kAdd);
    EXPECT_EQ(c.dns.nameservers, std::vector<std::string>{"10.96.0.10"});
    EXPECT_EQ(c.dns.domain, "cluster.local");
    EXPECT_EQ(c.dns.search.size(), 2u);
    EXPECT_EQ(c.dns.options, std::vector<std::string>{"ndots:5"});
    conf["dns"] = {{"nameservers", "10.96.0.10"}};
    EXPECT_EQ(config_error(conf).msg(), "cannot decode dns.nameservers");
}

// ---------------------------------------------------------------------------------------------
// Results.

// What CALICO.md says an ADD returns: the host side and the pod interface (name, mac, mtu,
// sandbox); each IP points at the pod interface (index 1) with /32 or /128.
Result calico_result() {
    Result r;
    r.interfaces.push_back({"cali0b3a9e1f5c7", "ee:ee:ee:ee:ee:ee", "", 1450, "", ""});
    r.interfaces.push_back({"eth0", "0a:58:c0:a8:00:05", "/var/run/netns/cni-1234", 1450, "", ""});
    r.ips.push_back({*parse_ifaddr("192.168.0.5/32"), std::nullopt, 1});
    r.ips.push_back({*parse_ifaddr("fd00:10:244::5/128"), std::nullopt, 1});
    Route v4{*parse_prefix("0.0.0.0/0"), net::IpAddr(net::kCalicoGateway4)};
    Route v6{*parse_prefix("::/0"), net::IpAddr(net::calico_gateway6())};
    r.routes = {v4, v6};
    return r;
}

TEST(CniResult, Render1xCalicoAdd) {
    for (const char *v : {"1.0.0", "1.1.0"}) {
        auto j = render_result(calico_result(), v);
        EXPECT_EQ(j["cniVersion"], v);
        ASSERT_EQ(j["interfaces"].size(), 2u);
        EXPECT_EQ(j["interfaces"][0], Json::parse(R"({"name": "cali0b3a9e1f5c7",
                                                      "mac": "ee:ee:ee:ee:ee:ee", "mtu": 1450})"));
        EXPECT_EQ(j["interfaces"][1],
                  Json::parse(R"({"name": "eth0", "mac": "0a:58:c0:a8:00:05", "mtu": 1450,
                                  "sandbox": "/var/run/netns/cni-1234"})"));
        // No "version" in 1.x ips.
        EXPECT_EQ(j["ips"], Json::parse(R"([{"address": "192.168.0.5/32", "interface": 1},
                                            {"address": "fd00:10:244::5/128", "interface": 1}])"));
        EXPECT_EQ(j["routes"], Json::parse(R"([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
                                               {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}])"));
        EXPECT_FALSE(j.contains("dns"));
        EXPECT_EQ(j.size(), 4u);
    }
}

TEST(CniResult, Render1xNewerFields) {
    Result r;
    r.interfaces.push_back(
        {"vhu0", "02:00:00:00:00:01", "", 9000, "/run/dpdk-fwd/p1.sock", "0000:00:04.0"});
    Route rt{*parse_prefix("10.0.0.0/8"), net::IpAddr::parse("10.0.0.1")};
    rt.mtu = 1400;
    rt.advmss = 1360;
    rt.priority = 100;
    rt.table = 254;
    rt.scope = 0;  // RT_SCOPE_UNIVERSE: a set zero is rendered
    r.routes.push_back(rt);
    r.routes.push_back({*parse_prefix("169.254.1.1/32")});
    r.routes.back().scope = 253;  // RT_SCOPE_LINK
    auto j = render_result(r, "1.1.0");
    EXPECT_EQ(j["interfaces"][0], Json::parse(R"({"name": "vhu0", "mac": "02:00:00:00:00:01",
        "mtu": 9000, "socketPath": "/run/dpdk-fwd/p1.sock", "pciID": "0000:00:04.0"})"));
    EXPECT_EQ(j["routes"][0], Json::parse(R"({"dst": "10.0.0.0/8", "gw": "10.0.0.1", "mtu": 1400,
        "advmss": 1360, "priority": 100, "table": 254, "scope": 0})"));
    EXPECT_EQ(j["routes"][1], Json::parse(R"({"dst": "169.254.1.1/32", "scope": 253})"));
    EXPECT_FALSE(j.contains("ips"));
    EXPECT_EQ(render_result(r, "1.0.0")["routes"], j["routes"]);
}

// 0.x: every ip says its family; the 1.x-only fields are left out.
TEST(CniResult, Render0x) {
    auto r = calico_result();
    r.interfaces[1].socket_path = "/run/x.sock";
    r.routes[0].mtu = 1400;
    r.ips[0].gateway = net::IpAddr::parse("169.254.1.1");
    for (const char *v : {"0.3.0", "0.3.1", "0.4.0"}) {
        auto j = render_result(r, v);
        EXPECT_EQ(j["cniVersion"], v);
        EXPECT_EQ(j["interfaces"][0], Json::parse(R"({"name": "cali0b3a9e1f5c7",
                                                      "mac": "ee:ee:ee:ee:ee:ee"})"));
        EXPECT_EQ(j["interfaces"][1], Json::parse(R"({"name": "eth0", "mac": "0a:58:c0:a8:00:05",
                                                      "sandbox": "/var/run/netns/cni-1234"})"));
        EXPECT_EQ(j["ips"], Json::parse(R"([
            {"version": "4", "address": "192.168.0.5/32", "gateway": "169.254.1.1", "interface": 1},
            {"version": "6", "address": "fd00:10:244::5/128", "interface": 1}])"));
        EXPECT_EQ(j["routes"][0], Json::parse(R"({"dst": "0.0.0.0/0", "gw": "169.254.1.1"})"));
    }
}

TEST(CniResult, RenderDnsAndEmptyLists) {
    Result r;
    auto j = render_result(r, "1.0.0");
    EXPECT_EQ(j, Json::parse(R"({"cniVersion": "1.0.0"})"));
    r.dns.nameservers = {"10.96.0.10"};
    r.dns.search = {"svc.cluster.local"};
    j = render_result(r, "0.4.0");
    EXPECT_EQ(j["dns"], Json::parse(R"({"nameservers": ["10.96.0.10"],
                                        "search": ["svc.cluster.local"]})"));
}

TEST(CniResult, RenderRefusesWhatItCannotSay) {
    auto e = error_of([] { render_result(calico_result(), "0.2.0"); });
    EXPECT_EQ(e.code(), ErrorCode::kIncompatibleVersion);
    auto r = calico_result();
    r.ips[1].interface = 2;
    e = error_of([&] { render_result(r, "1.0.0"); });
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_EQ(e.details(), "ip fd00:10:244::5/128 points at interface 2 of 2");
}

// A result we print comes back as the next plugin's or the next verb's prevResult.
TEST(CniResult, PrevResultRoundTrip) {
    Result r = calico_result();
    r.interfaces[1].socket_path = "/run/dpdk-fwd/p.sock";
    r.routes[0].table = 100;
    r.routes[1].scope = 0;
    r.dns.domain = "cluster.local";
    r.dns.options = {"ndots:5"};
    for (const char *v : {"1.0.0", "1.1.0"}) {
        EXPECT_EQ(parse_result(render_result(r, v)), r) << v;
    }
    // 0.x keeps what 0.x can say.
    Result r0 = parse_result(render_result(r, "0.4.0"));
    Result want = r;
    for (auto &i : want.interfaces) {
        i.mtu.reset();
        i.socket_path.clear();
    }
    want.routes[0].table.reset();
    want.routes[1].scope.reset();
    EXPECT_EQ(r0, want);
}

TEST(CniResult, PrevResultInConfig) {
    auto conf = calico_config("0.4.0");
    conf["prevResult"] = render_result(calico_result(), "0.4.0");
    auto c = parse_netconf(conf.dump(), Command::kCheck);
    ASSERT_TRUE(c.prev_result);
    auto want = calico_result();
    for (auto &i : want.interfaces) {
        i.mtu.reset();
    }
    EXPECT_EQ(*c.prev_result, want);
}

// The spec's own example: the bridge plugin's 1.0.0 result.
TEST(CniResult, ParseSpecExample) {
    auto r = parse_result(Json::parse(R"({
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}],
        "dns": {"nameservers": ["10.1.0.1"]}
    })"));
    ASSERT_EQ(r.interfaces.size(), 3u);
    EXPECT_EQ(r.interfaces[2].sandbox, "/var/run/netns/blue");
    EXPECT_EQ(r.interfaces[0].sandbox, "");
    ASSERT_EQ(r.ips.size(), 1u);
    EXPECT_EQ(str(r.ips[0].address), "10.1.0.5/16");  // host bits kept: it is an address
    EXPECT_EQ(r.ips[0].gateway, net::IpAddr::parse("10.1.0.1"));
    EXPECT_EQ(r.ips[0].interface, 2u);
    EXPECT_EQ(net::str(r.routes[0].dst), "0.0.0.0/0");
    EXPECT_FALSE(r.routes[0].gw);
    EXPECT_EQ(r.dns.nameservers, std::vector<std::string>{"10.1.0.1"});
}

TEST(CniResult, ParseErrorsNameTheField) {
    struct Case {
        const char *json;
        ErrorCode code;
        const char *msg;
    };
    const Case cases[] = {
        {R"({"ips": [{"address": "10.1.0.5/16", "version": "6"}]})", ErrorCode::kInvalidConfig,
         "invalid prevResult.ips[0].version"},
        {R"({"ips": [{"address": "10.1.0.500/16"}]})", ErrorCode::kInvalidConfig,
         "invalid prevResult.ips[0].address"},
        {R"({"ips": [{"gateway": "10.1.0.1"}]})", ErrorCode::kInvalidConfig,
         "missing prevResult.ips[0].address"},
        {R"({"ips": {"address": "10.1.0.5/16"}})", ErrorCode::kDecodeFailure,
         "cannot decode prevResult.ips"},
        {R"({"ips": [{"address": "10.1.0.5/16", "interface": -1}]})", ErrorCode::kInvalidConfig,
         "invalid prevResult.ips[0].interface"},
        {R"({"ips": [{"address": "10.1.0.5/16", "gateway": "x"}]})", ErrorCode::kInvalidConfig,
         "invalid prevResult.ips[0].gateway"},
        {R"({"routes": [{"dst": "0.0.0.0/0", "scope": 256}]})", ErrorCode::kInvalidConfig,
         "invalid prevResult.routes[0].scope"},
        {R"({"routes": [{"gw": "10.0.0.1"}]})", ErrorCode::kInvalidConfig,
         "missing prevResult.routes[0].dst"},
        {R"({"interfaces": [{"mac": "00:11:22:33:44:55"}]})", ErrorCode::kInvalidConfig,
         "missing prevResult.interfaces[0].name"},
        {R"({"interfaces": [{"name": "eth0", "mtu": "1500"}]})", ErrorCode::kDecodeFailure,
         "cannot decode prevResult.interfaces[0].mtu"},
        {R"("10.1.0.5/16")", ErrorCode::kDecodeFailure, "cannot decode prevResult"},
    };
    for (const auto &c : cases) {
        auto e = error_of([&] { parse_result(Json::parse(c.json)); });
        EXPECT_EQ(e.code(), c.code) << c.json;
        EXPECT_EQ(e.msg(), c.msg) << c.json;
    }
    auto conf = minimal_config();
    conf["prevResult"] = Json::parse(R"({"ips": [{"address": "nope"}]})");
    EXPECT_EQ(config_error(conf, Command::kDel).msg(), "invalid prevResult.ips[0].address");
}

TEST(CniResult, AddressHelpers) {
    EXPECT_EQ(str(*parse_ifaddr("fd00::5")), "fd00::5/128");
    EXPECT_EQ(family(*parse_ifaddr("fd00::5/64")), net::Family::kIp6);
    EXPECT_EQ(addr_of(*parse_ifaddr("10.1.2.3/8")), net::IpAddr::parse("10.1.2.3"));
    EXPECT_EQ(net::str(*parse_prefix("10.1.2.3/8")), "10.0.0.0/8");
    for (const char *bad : {"", "10.1.2.3/", "10.1.2.3/33", "fd00::/129", "10.1.2/8", "x"}) {
        EXPECT_FALSE(parse_ifaddr(bad)) << bad;
        EXPECT_FALSE(parse_prefix(bad)) << bad;
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(CniError, WellKnownCodes) {
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kIncompatibleVersion), 1u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kUnsupportedField), 2u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kUnknownContainer), 3u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kInvalidEnvironment), 4u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kIoFailure), 5u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kDecodeFailure), 6u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kInvalidConfig), 7u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kTryAgainLater), 11u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kNotAvailable), 50u);
    EXPECT_EQ(static_cast<unsigned>(ErrorCode::kLimitedConnectivity), 51u);
}

TEST(CniError, JsonShape) {
    Error e(ErrorCode::kTryAgainLater, "dpdk-fwd daemon unreachable",
            "connect /run/dpdk-fwd/api.sock: connection refused");
    EXPECT_EQ(std::string(e.what()),
              "dpdk-fwd daemon unreachable: connect /run/dpdk-fwd/api.sock: connection refused");
    auto j = error_json(e, "1.0.0");
    EXPECT_EQ(j, Json::parse(R"({"cniVersion": "1.0.0", "code": 11,
        "msg": "dpdk-fwd daemon unreachable",
        "details": "connect /run/dpdk-fwd/api.sock: connection refused"})"));
    EXPECT_TRUE(j["code"].is_number_unsigned());
    Error bare(ErrorCode::kInvalidConfig, "missing name");
    EXPECT_EQ(std::string(bare.what()), "missing name");
    EXPECT_EQ(error_json(bare, "0.4.0")["details"], "");
}

// ---------------------------------------------------------------------------------------------
// A whole run, against a fake handler.

class FakeHandler : public Handler {
  public:
    Result add(const Request &req) override {
        seen_.push_back("ADD " + req.handle());
        maybe_throw();
        return calico_result();
    }
    void del(const Request &req) override {
        seen_.push_back("DEL " + req.handle() + " netns=" + req.inv.netns);
        maybe_throw();
    }
    void check(const Request &req) override {
        seen_.push_back("CHECK prev ips=" + std::to_string(req.conf.prev_result->ips.size()));
        maybe_throw();
    }
    void status(const Request &req) override {
        seen_.push_back("STATUS " + req.conf.name);
        maybe_throw();
    }
    void gc(const Request &req) override {
        seen_.push_back("GC keep=" + std::to_string(req.conf.valid_attachments->size()));
        maybe_throw();
    }
    std::vector<std::string> seen_;
    std::function<void()> fail_;

  private:
    void maybe_throw() {
        if (fail_) {
            fail_();
        }
    }
};

TEST(CniRun, AddPrintsTheResultForTheConfigVersion) {
    for (const char *v : {"0.4.0", "1.0.0", "1.1.0"}) {
        FakeHandler h;
        auto reply = run(full_env("ADD"), calico_config(v).dump(), h);
        EXPECT_EQ(reply.exit_code, 0) << reply.out;
        EXPECT_EQ(h.seen_, std::vector<std::string>{"ADD k8s-pod-network.0b3a9e1f5c7d"});
        auto j = Json::parse(reply.out);
        EXPECT_EQ(j, render_result(calico_result(), v));
        EXPECT_EQ(reply.err, "");
    }
}

TEST(CniRun, OtherVerbsPrintNothing) {
    FakeHandler h;
    auto conf = calico_config("1.1.0");
    auto reply = run(without(full_env("DEL"), "CNI_NETNS"), conf.dump(), h);
    EXPECT_EQ(reply.exit_code, 0);
    EXPECT_EQ(reply.out, "");

    conf["prevResult"] = render_result(calico_result(), "1.1.0");
    reply = run(full_env("CHECK"), conf.dump(), h);
    EXPECT_EQ(reply.exit_code, 0) << reply.out;
    EXPECT_EQ(reply.out, "");

    reply = run({{"CNI_COMMAND", "STATUS"}}, conf.dump(), h);
    EXPECT_EQ(reply.exit_code, 0) << reply.out;

    conf["cni.dev/valid-attachments"] = {{{"containerID", "c1"}, {"ifname", "eth0"}}};
    reply = run({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}, conf.dump(), h);
    EXPECT_EQ(reply.exit_code, 0) << reply.out;
    EXPECT_EQ(reply.out, "");
    EXPECT_EQ(h.seen_, (std::vector<std::string>{
                           "DEL k8s-pod-network.0b3a9e1f5c7d netns=", "CHECK prev ips=2",
                           "STATUS k8s-pod-network", "GC keep=1"}));
}

TEST(CniRun, Version) {
    FakeHandler h;
    Env env = {{"CNI_COMMAND", "VERSION"}};
    for (const char *in : {"", "{\"cniVersion\": \"0.4.0\"}", "{}"}) {
        auto reply = run(env, in, h);
        EXPECT_EQ(reply.exit_code, 0);
        auto j = Json::parse(reply.out);
        EXPECT_EQ(j["cniVersion"],
                  std::string(in).empty() || std::string(in) == "{}" ? "1.1.0" : "0.4.0");
        EXPECT_EQ(j["supportedVersions"].size(), kSupportedVersions.size());
    }
    auto reply = run(env, "{cniVersion", h);
    EXPECT_EQ(reply.exit_code, 1);
    EXPECT_EQ(Json::parse(reply.out)["code"], 6);
    EXPECT_EQ(Json::parse(run(env, "{\"cniVersion\": 1}", h).out)["code"], 6);
    EXPECT_TRUE(h.seen_.empty());
}

TEST(CniRun, HandlerErrorsBecomeErrorJson) {
    FakeHandler h;
    h.fail_ = [] { throw Error(ErrorCode::kTryAgainLater, "dpdk-fwd daemon unreachable"); };
    auto reply = run(full_env("ADD"), calico_config("0.4.0").dump(), h);
    EXPECT_EQ(reply.exit_code, 1);
    EXPECT_EQ(Json::parse(reply.out), Json::parse(R"({"cniVersion": "0.4.0", "code": 11,
        "msg": "dpdk-fwd daemon unreachable", "details": ""})"));

    h.fail_ = [] { throw Error(ErrorCode::kNotAvailable, "no pool can serve IPv4"); };
    reply = run({{"CNI_COMMAND", "STATUS"}}, calico_config("1.1.0").dump(), h);
    EXPECT_EQ(reply.exit_code, 1);
    EXPECT_EQ(Json::parse(reply.out)["code"], 50);

    h.fail_ = [] { throw std::runtime_error("netlink: EPERM"); };
    reply = run(full_env("DEL"), calico_config("1.0.0").dump(), h);
    auto j = Json::parse(reply.out);
    EXPECT_EQ(reply.exit_code, 1);
    EXPECT_EQ(j["code"], 999);
    EXPECT_EQ(j["details"], "netlink: EPERM");
    EXPECT_EQ(j["cniVersion"], "1.0.0");
}

// The environment is judged before stdin, and the error carries the config's cniVersion even
// when we do not speak it (the spec: "the same value as provided by the configuration").
TEST(CniRun, ProtocolErrors) {
    FakeHandler h;
    auto reply = run(without(full_env("ADD"), "CNI_NETNS"), "{not json", h);
    EXPECT_EQ(reply.exit_code, 1);
    auto j = Json::parse(reply.out);
    EXPECT_EQ(j["code"], 4);
    EXPECT_EQ(j["cniVersion"], "1.1.0");
    EXPECT_EQ(j.size(), 4u);

    reply = run(full_env("ADD"), "{not json", h);
    EXPECT_EQ(Json::parse(reply.out)["code"], 6);
    reply = run(full_env("ADD"), minimal_config("9.9.9").dump(), h);
    j = Json::parse(reply.out);
    EXPECT_EQ(j["code"], 1);
    EXPECT_EQ(j["cniVersion"], "9.9.9");
    auto conf = minimal_config("0.4.0");
    conf.erase("name");
    j = Json::parse(run(full_env("ADD"), conf.dump(), h).out);
    EXPECT_EQ(j["code"], 7);
    EXPECT_EQ(j["msg"], "missing name");
    EXPECT_EQ(j["cniVersion"], "0.4.0");
    EXPECT_TRUE(h.seen_.empty());
}

TEST(CniRun, NoCommandIsAPersonAtAShell) {
    FakeHandler h;
    auto reply = run({}, "", h);
    EXPECT_EQ(reply.exit_code, 0);
    EXPECT_EQ(reply.out, "");
    EXPECT_TRUE(contains(reply.err, "dpdk-fwd-cni"));
    EXPECT_TRUE(contains(reply.err,
                         "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, "
                         "1.1.0"));
}

TEST(CniRun, ErrorVersion) {
    EXPECT_EQ(error_version("{\"cniVersion\": \"0.3.1\"}"), "0.3.1");
    EXPECT_EQ(error_version("{\"cniVersion\": 3}"), "1.1.0");
    EXPECT_EQ(error_version("]"), "1.1.0");
    EXPECT_EQ(error_version(""), "1.1.0");
}

// ---------------------------------------------------------------------------------------------
// Cross-check with Debian's reference plugins (containernetworking-plugins, libcni 1.x).

struct PluginRun {
    int exit_code = -1;
    std::string out;
};

class ReferencePlugins : public ::testing::Test {
  protected:
    void SetUp() override {
        plugin_dir_ = FWD_REFERENCE_CNI_DIR;
        if (access((plugin_dir_ + "/host-local").c_str(), X_OK) != 0) {
            GTEST_SKIP() << plugin_dir_ << "/host-local is missing: apt-get install "
                         << "containernetworking-plugins";
        }
        char tmpl[] = "/tmp/fwd-cni-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        if (!dir_.empty()) {
            std::filesystem::remove_all(dir_);
        }
    }

    // Runs a plugin with exactly `env` and `in` on stdin, no shell in between.
    PluginRun exec(const std::string &plugin, const Env &env, const std::string &in) {
        std::string in_path = dir_ + "/stdin.json";
        std::string out_path = dir_ + "/stdout.json";
        std::ofstream(in_path) << in;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, in_path.c_str(), O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0600);
        std::vector<std::string> vars;
        for (const auto &[k, v] : env) {
            vars.push_back(k + "=" + v);
        }
        std::vector<char *> envp;
        for (auto &s : vars) {
            envp.push_back(s.data());
        }
        envp.push_back(nullptr);
        std::string path = plugin_dir_ + "/" + plugin;
        char *argv[] = {path.data(), nullptr};
        pid_t pid = 0;
        PluginRun r;
        int rc = posix_spawn(&pid, path.c_str(), &fa, nullptr, argv, envp.data());
        posix_spawn_file_actions_destroy(&fa);
        EXPECT_EQ(rc, 0) << path;
        int status = 0;
        if (rc == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
            r.exit_code = WEXITSTATUS(status);
        }
        std::stringstream ss;
        ss << std::ifstream(out_path).rdbuf();
        r.out = ss.str();
        return r;
    }

    // A dual-stack host-local network in our temp dir.
    Json host_local_config(const std::string &version) {
        return {{"cniVersion", version},
                {"name", "xcheck"},
                {"type", "dpdk-fwd-cni"},
                {"ipam",
                 {{"type", "host-local"},
                  {"dataDir", dir_ + "/ipam"},
                  {"ranges",
                   {{{{"subnet", "10.22.0.0/24"}, {"gateway", "10.22.0.1"}}},
                    {{{"subnet", "fd00:22::/64"}}}}},
                  {"routes", {{{"dst", "0.0.0.0/0"}}, {{"dst", "::/0"}}}}}}};
    }

    std::string plugin_dir_;
    std::string dir_;
};

// host-local's ADD output, for each version it shares with us, reads with our parser; and our
// rendering of what we read is byte for byte its output (less its empty "dns": {}).
TEST_F(ReferencePlugins, HostLocalAddResultsParse) {
    int n = 0;
    for (const char *v : {"0.3.1", "0.4.0", "1.0.0"}) {
        auto env = full_env("ADD");
        env["CNI_CONTAINERID"] = "xcheck" + std::to_string(n++);
        env["CNI_NETNS"] = dir_;  // host-local never enters the namespace
        env["CNI_PATH"] = plugin_dir_;
        auto run = exec("host-local", env, host_local_config(v).dump());
        ASSERT_EQ(run.exit_code, 0) << v << ": " << run.out;
        auto theirs = Json::parse(run.out);
        EXPECT_EQ(theirs["cniVersion"], v);
        EXPECT_EQ(theirs["ips"][0].contains("version"), std::string(v) < "1") << run.out;

        Result r = parse_result(theirs, "host-local result");
        ASSERT_EQ(r.ips.size(), 2u) << run.out;
        EXPECT_EQ(family(r.ips[0].address), net::Family::kIp4);
        EXPECT_TRUE(net::Prefix4::parse("10.22.0.0/24")
                        ->contains(std::get<net::IfAddr4>(r.ips[0].address).addr));
        EXPECT_EQ(std::get<net::IfAddr6>(r.ips[1].address).len, 64);
        EXPECT_EQ(r.ips[0].gateway, net::IpAddr::parse("10.22.0.1"));
        EXPECT_FALSE(r.ips[0].interface);  // an IPAM result: no interfaces
        EXPECT_TRUE(r.interfaces.empty());
        ASSERT_EQ(r.routes.size(), 2u);
        EXPECT_EQ(net::str(r.routes[1].dst), "::/0");

        if (theirs.contains("dns") && theirs["dns"].empty()) {
            theirs.erase("dns");
        }
        EXPECT_EQ(render_result(r, v), theirs) << v;

        // It comes back as a prevResult in CHECK and DEL configs.
        auto conf = host_local_config(v);
        conf["ipam"] = {{"type", "calico-ipam"}};
        conf["prevResult"] = Json::parse(run.out);
        if (std::string(v) >= "0.4.0") {
            EXPECT_EQ(parse_netconf(conf.dump(), Command::kCheck).prev_result, r);
        }
        EXPECT_EQ(parse_netconf(conf.dump(), Command::kDel).prev_result, r);
    }
}

TEST_F(ReferencePlugins, VersionReplyHasTheSameShape) {
    auto run = exec("host-local", {{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion": "1.0.0"})");
    ASSERT_EQ(run.exit_code, 0) << run.out;
    auto theirs = Json::parse(run.out);
    auto ours = version_json("1.0.0");
    ASSERT_EQ(theirs.size(), ours.size()) << run.out;
    for (const auto &[key, value] : ours.items()) {
        ASSERT_TRUE(theirs.contains(key)) << key;
        EXPECT_EQ(theirs[key].type(), value.type()) << key;
    }
    EXPECT_EQ(theirs["cniVersion"], "1.0.0");
    // Every version both speak is on both lists.
    for (const auto &v : theirs["supportedVersions"]) {
        auto s = v.get<std::string>();
        EXPECT_EQ(is_supported(s), s >= "0.3.0") << s;
    }
}

// The same broken input gets the same error code from libcni's plugin and from us.
TEST_F(ReferencePlugins, SameErrorCodesForTheSameMistakes) {
    auto good = host_local_config("1.0.0");
    auto no_name = good;
    no_name.erase("name");
    auto bad_version = good;
    bad_version["cniVersion"] = "9.9.9";
    auto env = full_env("ADD");
    env["CNI_PATH"] = plugin_dir_;
    struct Case {
        const char *what;
        Env env;
        std::string in;
    };
    const Case cases[] = {
        {"not JSON", env, "{\"cniVersion\": \"1.0.0\","},
        {"no name", env, no_name.dump()},
        {"unknown version", env, bad_version.dump()},
        {"no CNI_CONTAINERID", without(env, "CNI_CONTAINERID"), good.dump()},
        {"bad CNI_IFNAME", with(env, "CNI_IFNAME", "eth0:1"), good.dump()},
        {"unknown CNI_COMMAND", with(env, "CNI_COMMAND", "FROB"), good.dump()},
    };
    for (const auto &c : cases) {
        auto run = exec("host-local", c.env, c.in);
        ASSERT_NE(run.exit_code, 0) << c.what;
        auto theirs = Json::parse(run.out);
        auto ours = error_of([&] { parse_request(c.env, c.in); });
        EXPECT_EQ(static_cast<unsigned>(ours.code()), theirs["code"].get<unsigned>())
            << c.what << ": theirs " << run.out << ", ours " << ours.what();
    }
}

// DEL without CNI_NETNS is fine for both.
TEST_F(ReferencePlugins, DelWithoutNetns) {
    auto env = without(full_env("DEL"), "CNI_NETNS");
    env["CNI_PATH"] = plugin_dir_;
    auto conf = host_local_config("1.0.0");
    auto run = exec("host-local", env, conf.dump());
    EXPECT_EQ(run.exit_code, 0) << run.out;
    EXPECT_EQ(run.out, "");
    conf["ipam"] = {{"type", "calico-ipam"}};
    EXPECT_NO_THROW(parse_request(env, conf.dump()));
}

}  // namespace
}  // namespace fwd::cni
