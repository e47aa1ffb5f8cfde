// The uplink's flow rules through rte_flow on a real net_tap port (EAL without hugepages; root,
// for the tap): what this machine's tap validates of the plan, the exact policy drops and the
// fallbacks, and that asking it never crashes the process (net_tap's RSS validation does, here:
// those rules are refused before the PMD sees them). No device here creates rules (net_tap's
// kernel side lacks the qdisc), so install mode must report every group as refused with the
// NIC's reason, and leave nothing behind.
#include <gtest/gtest.h>
#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "../policy/compile_check.hpp"
#include "fwd/control/nic_flows.hpp"
#include "fwd/dp/eal.hpp"
#include "fwd/policy/compile.hpp"

namespace fwd::control::flows {
namespace {

uint16_t g_port = 0;

std::vector<Group> node_groups() {
    PlanInput in;
    in.queues = {0, 1};
    in.vtep4 = net::Ip4Addr::parse("10.10.10.10");
    in.vtep6 = net::Ip6Addr::parse("fd00:10:10::10");
    auto groups = plan(in);
    std::vector<policy::Namespace> nss{{"prod", {}, {}}};
    std::vector<policy::Pod> pods{
        policy::test::pod("prod", "web", {{"app", "web"}}, {"10.0.0.2", "fd00::2"})};
    policy::PolicySet set(policy::test::policies(R"(apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-ext}
spec:
  ingress:
  - action: Deny
    protocol: TCP
    source: {nets: [192.168.0.0/16]}
    destination: {ports: [80]}
)"),
                          nss, pods);
    const auto drops = policy_drops(
        policy::compile(set, {"prod/web"}),
        {{"prod/web", {policy::test::ip("10.0.0.2"), policy::test::ip("fd00::2")}}}, 0, 100);
    EXPECT_EQ(drops.groups.size(), 1u);
    groups.insert(groups.end(), drops.groups.begin(), drops.groups.end());
    return groups;  // rss ipv4, rss ipv6, vxlan v4, vxlan v6, the drop
}

TEST(FlowsOnTap, ValidateTakesTheVxlanFallbackAndRefusesTheRestWithReasons) {
    Installer inst(rte_flow_device(g_port), Mode::kValidate);
    inst.apply(node_groups());
    const auto &e = inst.entries();
    ASSERT_EQ(e.size(), 5u);
    for (int i : {0, 1}) {  // RSS: not asked of net_tap
        EXPECT_EQ(e[i].state, Installer::State::kRefused);
        ASSERT_EQ(e[i].errors.size(), 1u);
        EXPECT_NE(e[i].errors[0].find("not asked of net_tap"), std::string::npos) << e[i].errors[0];
    }
    for (int i : {2, 3}) {  // VXLAN: inner RSS refused, the source-port queue rules validated
        EXPECT_EQ(e[i].state, Installer::State::kValidated) << e[i].group.what;
        EXPECT_EQ(e[i].option, 1);
    }
    // The drop: tap matches no TCP flags, so the exact drop is refused, named by the PMD.
    EXPECT_EQ(e[4].state, Installer::State::kRefused);
    ASSERT_EQ(e[4].errors.size(), 1u);
    EXPECT_NE(e[4].errors[0].find("syn !ack"), std::string::npos) << e[4].errors[0];
    EXPECT_NE(e[4].errors[0].find("not supported"), std::string::npos) << e[4].errors[0];
}

TEST(FlowsOnTap, ItsItemsAndMasksAreWhatTheTapTakes) {
    auto dev = rte_flow_device(g_port);
    // Each item our translation makes, alone or together, without the TCP flags tap lacks.
    Rule r;
    r.match.family = net::Family::kIp4;
    r.match.src = net::Prefix4{*net::Ip4Addr::parse("192.168.0.0"), 16};
    r.match.dst = net::Prefix4{*net::Ip4Addr::parse("10.0.0.2"), 32};
    r.match.proto = 6;
    r.match.dport = Masked16{80, 0xfff8};
    r.action.kind = Action::Kind::kDrop;
    EXPECT_EQ(dev->validate(r), "");
    r.match.vlan = 100;
    EXPECT_EQ(dev->validate(r), "");
    Rule v6;
    v6.match.family = net::Family::kIp6;
    v6.match.src = net::Prefix6{*net::Ip6Addr::parse("fd01::"), 64};
    v6.match.dst = net::Prefix6{*net::Ip6Addr::parse("fd00::2"), 128};
    v6.match.proto = 17;
    v6.match.sport = Masked16{1, 0x0001};
    v6.action = Action{Action::Kind::kQueue, {1}, 0, false};
    EXPECT_EQ(dev->validate(v6), "");
    // What it refuses, it names: a COUNT action, an ICMP item.
    r.action.count = true;
    EXPECT_NE(dev->validate(r), "");
    Rule icmp;
    icmp.match.family = net::Family::kIp4;
    icmp.match.proto = 1;
    icmp.match.icmp_type = 8;
    EXPECT_NE(dev->validate(icmp), "");
}

TEST(FlowsOnTap, InstallReportsWhatTheKernelRefusedAndLeavesNothing) {
    Installer inst(rte_flow_device(g_port), Mode::kInstall);
    inst.apply(node_groups());
    for (const auto &e : inst.entries()) {
        EXPECT_EQ(e.state, Installer::State::kRefused) << e.group.what;
        EXPECT_TRUE(e.handles.empty());
        if (e.group.kind == "vxlan") {
            ASSERT_EQ(e.errors.size(), 2u);
            EXPECT_NE(e.errors[1].find("validated, not created"), std::string::npos) << e.errors[1];
        }
    }
    rte_flow_error err{};
    EXPECT_EQ(rte_flow_flush(g_port, &err), 0);
}

}  // namespace
}  // namespace fwd::control::flows

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (geteuid() != 0) {
        std::fprintf(stderr, "test_nic_flows_tap: needs root for its net_tap port\n");
        return 1;
    }
    if (!fwd::dp::eal_init_for_test(argv[0], "fwdflow", 256)) {
        return 1;
    }
    const std::string name = "net_tap_flows" + std::to_string(getpid() % 100000);
    const std::string devargs = name + ",iface=fwdfl" + std::to_string(getpid() % 100000);
    rte_mempool *pool = rte_pktmbuf_pool_create("flows", 2047, 0, 0, 2176, SOCKET_ID_ANY);
    rte_eth_conf conf{};
    if (pool == nullptr || rte_dev_probe(devargs.c_str()) != 0 ||
        rte_eth_dev_get_port_by_name(name.c_str(), &fwd::control::flows::g_port) != 0 ||
        rte_eth_dev_configure(fwd::control::flows::g_port, 2, 2, &conf) != 0) {
        std::fprintf(stderr, "test_nic_flows_tap: cannot make the net_tap port %s\n",
                     devargs.c_str());
        return 1;
    }
    const uint16_t port = fwd::control::flows::g_port;
    for (uint16_t q = 0; q < 2; q++) {
        if (rte_eth_rx_queue_setup(port, q, 64, SOCKET_ID_ANY, nullptr, pool) != 0 ||
            rte_eth_tx_queue_setup(port, q, 64, SOCKET_ID_ANY, nullptr) != 0) {
            std::fprintf(stderr, "test_nic_flows_tap: queue setup failed\n");
            return 1;
        }
    }
    if (rte_eth_dev_start(port) != 0) {
        std::fprintf(stderr, "test_nic_flows_tap: start failed\n");
        return 1;
    }
    const int rc = RUN_ALL_TESTS();
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
    rte_eal_hotplug_remove("vdev", name.c_str());
    fwd::dp::eal_cleanup_all();
    return rc;
}
