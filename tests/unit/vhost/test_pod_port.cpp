// Component test of the pod port lifecycle: real DPDK tap ports, vhost-user socket files
// (EAL without hugepages), a real network namespace, checked with iproute2.
// Needs root; every namespace, interface and socket it makes is removed by a
// guard, whatever the outcome.
#include <gtest/gtest.h>
#include <net/if.h>
#include <rte_arp.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fwd/dp/eal.hpp"
#include "fwd/vhost/netns.hpp"
#include "fwd/vhost/pod_port.hpp"

namespace fwd::vhost {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

rte_mempool *g_pool = nullptr;  // set by main once EAL is up

// Short per-process suffix so parallel runs do not collide; interface names
// must stay within 15 characters.
std::string uniq(const std::string &tag) {
    return std::to_string(getpid() % 100000) + tag;
}

struct CmdResult {
    int status;
    std::string out;
};

CmdResult capture(const std::string &cmd) {
    CmdResult r{-1, ""};
    FILE *p = popen((cmd + " 2>/dev/null").c_str(), "r");
    if (p == nullptr) {
        return r;
    }
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) {
        r.out.append(buf.data(), n);
    }
    r.status = pclose(p);
    return r;
}

int run(const std::string &cmd) {
    return std::system((cmd + " >/dev/null 2>&1").c_str());
}

json json_of(const std::string &cmd) {
    CmdResult r = capture(cmd);
    if (r.status != 0 || r.out.empty()) {
        return json::array();
    }
    return json::parse(r.out);
}

bool contains(const std::vector<std::string> &v, const std::string &s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// What CNI CHECK reads of a configured pod interface matches cfg (MTU 1400 in these tests).
void expect_inspected_as(const std::string &netns, const PodIfConfig &cfg) {
    const PodIfState state = inspect_pod_interface(netns, "eth0");
    EXPECT_TRUE(state.exists);
    EXPECT_EQ(state.mac, cfg.mac);
    EXPECT_EQ(state.mtu, 1400);
    EXPECT_TRUE(state.up);
    for (const auto &a : expected_pod_addresses(cfg)) {
        EXPECT_TRUE(contains(state.addresses, a)) << a;
    }
    for (const auto &r : expected_pod_routes(cfg)) {
        EXPECT_TRUE(contains(state.routes, r)) << r;
    }
}

bool has_flag(const json &link, const std::string &flag) {
    for (const auto &f : link.value("flags", json::array())) {
        if (f == flag) {
            return true;
        }
    }
    return false;
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 2000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(20ms);
    }
    return pred();
}

class NetnsGuard {
  public:
    explicit NetnsGuard(std::string name) : name_(std::move(name)) {
        run("ip netns del " + name_);
        ok_ = run("ip netns add " + name_) == 0;
    }
    ~NetnsGuard() { run("ip netns del " + name_); }
    NetnsGuard(const NetnsGuard &) = delete;
    NetnsGuard &operator=(const NetnsGuard &) = delete;
    const std::string &name() const { return name_; }
    bool ok() const { return ok_; }
    bool has_link(const std::string &ifname) const {
        return run("ip -n " + name_ + " link show dev " + ifname) == 0;
    }

  private:
    std::string name_;
    bool ok_ = false;
};

// Destroys the port unless the test already did.
class PortGuard {
  public:
    explicit PortGuard(uint16_t port_id) : port_id_(port_id) {}
    ~PortGuard() {
        if (port_id_) {
            try {
                destroy_port(*port_id_);
            } catch (const std::exception &) {
                // Teardown of a failed test; the assertion already reported.
            }
        }
    }
    PortGuard(const PortGuard &) = delete;
    PortGuard &operator=(const PortGuard &) = delete;
    void destroy() {
        auto id = *port_id_;
        port_id_.reset();
        destroy_port(id);
    }

  private:
    std::optional<uint16_t> port_id_;
};

// A persistent tap in the host namespace, made with iproute2 (the test kernel
// may lack dummy links), deleted at the end.
class HostTapGuard {
  public:
    explicit HostTapGuard(std::string name) : name_(std::move(name)) {
        ok_ = run("ip tuntap add name " + name_ + " mode tap") == 0;
    }
    ~HostTapGuard() { run("ip link del " + name_); }
    bool ok() const { return ok_; }

  private:
    std::string name_;
    bool ok_ = false;
};

class DirGuard {
  public:
    explicit DirGuard(std::filesystem::path p) : path_(std::move(p)) {
        std::filesystem::remove_all(path_);
    }
    ~DirGuard() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::filesystem::path &path() const { return path_; }

  private:
    std::filesystem::path path_;
};

bool is_socket(const std::string &path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

class PodPortTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (g_pool == nullptr) {
            GTEST_SKIP() << "needs root (EAL, netns, tap)";
        }
    }

    PortSpec tap_spec(const std::string &tag) const {
        PortSpec spec;
        spec.token = "t" + uniq(tag);
        spec.tap_ifname = "fwdt" + uniq(tag);
        spec.pool = g_pool;
        spec.rx_desc = 128;
        spec.tx_desc = 128;
        return spec;
    }

    static PodIfConfig pod_config(const std::string &netns, const std::string &host_ifname) {
        PodIfConfig cfg;
        cfg.netns = netns;
        cfg.host_ifname = host_ifname;
        cfg.ifname = "eth0";
        cfg.mac = *net::MacAddr::parse("02:fd:00:00:00:05");
        cfg.mtu = 1400;
        cfg.ipv4 = *net::Ip4Addr::parse("10.65.0.5");
        cfg.ipv6 = *net::Ip6Addr::parse("fd00:10:65::5");
        return cfg;
    }
};

TEST_F(PodPortTest, ConfiguresCalicoPodSide) {
    NetnsGuard ns("fwdt-" + uniq("a"));
    ASSERT_TRUE(ns.ok());
    const PortSpec spec = tap_spec("a");
    const PortInfo info = create_port(spec);
    PortGuard guard(info.port_id);
    EXPECT_EQ(info.devname, "net_tap_" + spec.token);
    ASSERT_NE(if_nametoindex(spec.tap_ifname.c_str()), 0u);

    const PodIfConfig cfg = pod_config(ns.name(), spec.tap_ifname);
    ASSERT_NO_THROW(configure_pod_interface(cfg));
    EXPECT_EQ(if_nametoindex(spec.tap_ifname.c_str()), 0u) << "still in the host namespace";

    const std::string ipn = "ip -n " + ns.name() + " -j ";
    json links = json_of(ipn + "link show dev eth0");
    ASSERT_EQ(links.size(), 1u);
    EXPECT_EQ(links[0]["ifname"], "eth0");
    EXPECT_EQ(links[0]["address"], "02:fd:00:00:00:05");
    EXPECT_EQ(links[0]["mtu"], 1400);
    EXPECT_TRUE(has_flag(links[0], "UP"));
    json lo = json_of(ipn + "link show dev lo");
    ASSERT_EQ(lo.size(), 1u);
    EXPECT_TRUE(has_flag(lo[0], "UP"));

    json addrs = json_of(ipn + "addr show dev eth0");
    ASSERT_EQ(addrs.size(), 1u);
    bool v4 = false, v6 = false;
    for (const auto &a : addrs[0]["addr_info"]) {
        if (a["local"] == "10.65.0.5" && a["prefixlen"] == 32) {
            v4 = true;
        }
        if (a["local"] == "fd00:10:65::5" && a["prefixlen"] == 128) {
            v6 = true;
            EXPECT_TRUE(a.value("nodad", false)) << a.dump();
            EXPECT_FALSE(a.value("tentative", false)) << a.dump();
        }
    }
    EXPECT_TRUE(v4) << addrs.dump();
    EXPECT_TRUE(v6) << addrs.dump();

    json r4 = json_of(ipn + "-4 route show dev eth0");
    bool onlink = false, def4 = false;
    for (const auto &r : r4) {
        if (r["dst"] == "169.254.1.1" && r.value("scope", "") == "link") {
            onlink = true;
        }
        if (r["dst"] == "default" && r.value("gateway", "") == "169.254.1.1") {
            def4 = true;
        }
    }
    EXPECT_TRUE(onlink) << r4.dump();
    EXPECT_TRUE(def4) << r4.dump();
    json r6 = json_of(ipn + "-6 route show dev eth0");
    bool def6 = false;
    for (const auto &r : r6) {
        if (r["dst"] == "default" && r.value("gateway", "") == "fe80::ecee:eeff:feee:eeee") {
            def6 = true;
        }
    }
    EXPECT_TRUE(def6) << r6.dump();

    for (const char *dev : {"eth0", "default"}) {
        CmdResult dad = capture("ip netns exec " + ns.name() + " cat /proc/sys/net/ipv6/conf/" +
                                dev + "/accept_dad");
        EXPECT_EQ(dad.status, 0);
        EXPECT_EQ(dad.out, "0\n") << dev;
    }

    expect_inspected_as(ns.name(), cfg);
    EXPECT_FALSE(inspect_pod_interface(ns.name(), "eth9").exists);
}

// Answers ARP and ICMP echo for the gateway the way the host side will, so a
// ping from the pod proves both directions of the moved tap.
struct Responder {
    net::MacAddr pod_mac;
    bool saw_arp = false;
    bool saw_echo = false;

    // Rewrites m into its reply; false if m is not for us.
    bool reply(rte_mbuf *m) {
        auto *eth = rte_pktmbuf_mtod(m, rte_ether_hdr *);
        const uint32_t gw = rte_cpu_to_be_32(net::kCalicoGateway4.host());
        rte_ether_addr gw_mac;
        std::memcpy(gw_mac.addr_bytes, net::kCalicoGatewayMac.data(), RTE_ETHER_ADDR_LEN);
        if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
            auto *arp = reinterpret_cast<rte_arp_hdr *>(eth + 1);
            if (arp->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) ||
                arp->arp_data.arp_tip != gw) {
                return false;
            }
            saw_arp = net::MacAddr::from_bytes(arp->arp_data.arp_sha.addr_bytes) == pod_mac;
            arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
            arp->arp_data.arp_tha = arp->arp_data.arp_sha;
            arp->arp_data.arp_tip = arp->arp_data.arp_sip;
            arp->arp_data.arp_sha = gw_mac;
            arp->arp_data.arp_sip = gw;
        } else if (eth->ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) {
            auto *ip = reinterpret_cast<rte_ipv4_hdr *>(eth + 1);
            if (ip->next_proto_id != IPPROTO_ICMP || ip->dst_addr != gw) {
                return false;
            }
            auto *icmp = reinterpret_cast<rte_icmp_hdr *>(reinterpret_cast<uint8_t *>(ip) +
                                                          rte_ipv4_hdr_len(ip));
            if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST) {
                return false;
            }
            saw_echo = true;
            const rte_be32_t src = ip->src_addr;  // packed fields: no std::swap
            ip->src_addr = ip->dst_addr;
            ip->dst_addr = src;
            icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
            icmp->icmp_cksum = 0;
            const size_t len = rte_be_to_cpu_16(ip->total_length) - rte_ipv4_hdr_len(ip);
            icmp->icmp_cksum = static_cast<uint16_t>(~rte_raw_cksum(icmp, len));
        } else {
            return false;
        }
        eth->dst_addr = eth->src_addr;
        eth->src_addr = gw_mac;
        return true;
    }
};

TEST_F(PodPortTest, TrafficFlowsAfterMove) {
    NetnsGuard ns("fwdt-" + uniq("b"));
    ASSERT_TRUE(ns.ok());
    const PortSpec spec = tap_spec("b");
    const PortInfo info = create_port(spec);
    PortGuard guard(info.port_id);
    const PodIfConfig cfg = pod_config(ns.name(), spec.tap_ifname);
    ASSERT_NO_THROW(configure_pod_interface(cfg));

    // Drain what the pod kernel sent on link up (IPv6 RS, MLD).
    std::array<rte_mbuf *, 32> bufs;
    while (uint16_t n = rte_eth_rx_burst(info.port_id, 0, bufs.data(), bufs.size())) {
        rte_pktmbuf_free_bulk(bufs.data(), n);
    }

    auto ping = std::async(std::launch::async, [&] {
        return run("ip netns exec " + ns.name() + " ping -c1 -W3 169.254.1.1");
    });
    Responder responder{cfg.mac};
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline &&
           ping.wait_for(0s) != std::future_status::ready) {
        const uint16_t n = rte_eth_rx_burst(info.port_id, 0, bufs.data(), bufs.size());
        for (uint16_t i = 0; i < n; i++) {
            if (responder.reply(bufs[i])) {
                if (rte_eth_tx_burst(info.port_id, 0, &bufs[i], 1) == 1) {
                    continue;
                }
            }
            rte_pktmbuf_free(bufs[i]);
        }
        if (n == 0) {
            std::this_thread::sleep_for(1ms);
        }
    }
    EXPECT_TRUE(responder.saw_arp) << "no ARP request from the pod reached rte_eth_rx_burst";
    EXPECT_TRUE(responder.saw_echo) << "no ICMP echo request reached rte_eth_rx_burst";
    EXPECT_EQ(ping.get(), 0) << "the pod got no echo reply through the tap";

    // The PMD reads link state by name in our namespace, where the
    // interface no longer is: it reports down although traffic flows.
    rte_eth_link link{};
    ASSERT_EQ(rte_eth_link_get_nowait(info.port_id, &link), 0);
    RecordProperty("tap_link_status_after_move", link.link_status);
}

TEST_F(PodPortTest, DestroyRemovesInterfaceFromPod) {
    NetnsGuard ns("fwdt-" + uniq("c"));
    ASSERT_TRUE(ns.ok());
    const PortSpec spec = tap_spec("c");
    const PortInfo info = create_port(spec);
    PortGuard guard(info.port_id);
    ASSERT_NO_THROW(configure_pod_interface(pod_config(ns.name(), spec.tap_ifname)));
    ASSERT_TRUE(ns.has_link("eth0"));

    // The name is free in our namespace now, but the PMD still uses it.
    PortSpec other = tap_spec("c2");
    other.tap_ifname = spec.tap_ifname;
    try {
        create_port(other);
        FAIL() << "reused the tap name of a live port";
    } catch (const PortError &e) {
        EXPECT_NE(std::string(e.what()).find("still belongs to " + info.devname), std::string::npos)
            << e.what();
    }

    EXPECT_NO_THROW(guard.destroy());
    EXPECT_TRUE(eventually([&] { return !ns.has_link("eth0"); }));
    uint16_t unused;
    EXPECT_NE(rte_eth_dev_get_port_by_name(info.devname.c_str(), &unused), 0);
    EXPECT_FALSE(rte_eth_dev_is_valid_port(info.port_id));
    EXPECT_EQ(if_nametoindex(spec.tap_ifname.c_str()), 0u);

    // The token and name are free again.
    const PortInfo again = create_port(spec);
    PortGuard guard2(again.port_id);
    EXPECT_NE(if_nametoindex(spec.tap_ifname.c_str()), 0u);
}

TEST_F(PodPortTest, DestroyAfterInterfaceDeleted) {
    NetnsGuard ns("fwdt-" + uniq("d"));
    ASSERT_TRUE(ns.ok());
    const PortSpec spec = tap_spec("d");
    const PortInfo info = create_port(spec);
    PortGuard guard(info.port_id);
    ASSERT_NO_THROW(configure_pod_interface(pod_config(ns.name(), spec.tap_ifname)));
    // Deleting the namespace deletes the tap with it, as a pod teardown would.
    ASSERT_EQ(run("ip netns del " + ns.name()), 0);
    EXPECT_NO_THROW(guard.destroy());
    EXPECT_FALSE(rte_eth_dev_is_valid_port(info.port_id));
}

TEST_F(PodPortTest, MissingNetnsIsNamed) {
    const PortSpec spec = tap_spec("e");
    const PortInfo info = create_port(spec);
    PortGuard guard(info.port_id);
    const std::string missing = "fwdt-" + uniq("missing");
    try {
        configure_pod_interface(pod_config(missing, spec.tap_ifname));
        FAIL() << "configured into a namespace that does not exist";
    } catch (const NetnsError &e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("/var/run/netns/" + missing), std::string::npos) << msg;
        EXPECT_NE(msg.find(spec.tap_ifname), std::string::npos) << msg;
        EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    }
    EXPECT_NE(if_nametoindex(spec.tap_ifname.c_str()), 0u) << "moved although it failed";
    EXPECT_NO_THROW(guard.destroy());
    EXPECT_TRUE(eventually([&] { return if_nametoindex(spec.tap_ifname.c_str()) == 0; }));
}

TEST_F(PodPortTest, IfnameTakenInPod) {
    NetnsGuard ns("fwdt-" + uniq("f"));
    ASSERT_TRUE(ns.ok());
    ASSERT_EQ(run("ip -n " + ns.name() + " tuntap add name eth0 mode tap"), 0);
    const PortSpec spec = tap_spec("f");
    const PortInfo info = create_port(spec);
    PortGuard guard(info.port_id);
    try {
        configure_pod_interface(pod_config(ns.name(), spec.tap_ifname));
        FAIL() << "took a name that exists in the pod";
    } catch (const NetnsError &e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("eth0 already exists"), std::string::npos) << msg;
        EXPECT_NE(msg.find(ns.name()), std::string::npos) << msg;
    }
    EXPECT_NO_THROW(guard.destroy());
    EXPECT_TRUE(eventually([&] { return !ns.has_link(spec.tap_ifname); }));
    EXPECT_TRUE(ns.has_link("eth0")) << "the pod's own eth0 must survive";
}

TEST_F(PodPortTest, FailedCreateUndoesEverything) {
    PortSpec spec = tap_spec("g");
    spec.rx_queues = 64;  // more than the tap PMD allows
    try {
        create_port(spec);
        FAIL() << "created a tap with 64 RX queues";
    } catch (const PortError &e) {
        EXPECT_NE(std::string(e.what()).find("configure net_tap_" + spec.token), std::string::npos)
            << e.what();
    }
    uint16_t unused;
    EXPECT_NE(rte_eth_dev_get_port_by_name(tap_devname(spec.token).c_str(), &unused), 0);
    EXPECT_TRUE(eventually([&] { return if_nametoindex(spec.tap_ifname.c_str()) == 0; }));

    spec.rx_queues = 1;
    const PortInfo info = create_port(spec);
    PortGuard guard(info.port_id);
}

TEST_F(PodPortTest, ExistingTapNameRefused) {
    const PortSpec spec = tap_spec("h");
    // What a crashed run or a persistent tap would leave behind.
    HostTapGuard leftover(spec.tap_ifname);
    ASSERT_TRUE(leftover.ok());
    EXPECT_THROW(create_port(spec), PortError);
    uint16_t unused;
    EXPECT_NE(rte_eth_dev_get_port_by_name(tap_devname(spec.token).c_str(), &unused), 0);
}

// --- kernel pods as macvlans on one shared tap ---

class SharedTapTest : public PodPortTest {
  protected:
    void SetUp() override {
        PodPortTest::SetUp();
        if (IsSkipped()) {
            return;
        }
        spec_ = tap_spec("m");
        spec_.rx_queues = 2;
        spec_.tx_queues = 2;
        spec_.rx_desc = 8;
        spec_.rx_scatter = true;
        info_ = create_port(spec_);
        guard_.emplace(info_.port_id);
        configure_pod_lower(spec_.tap_ifname, 9000, 10000);
    }
    void TearDown() override { guard_.reset(); }

    static PodIfConfig macvlan_config(const std::string &netns, const std::string &mac,
                                      const std::string &v4, const std::string &v6) {
        PodIfConfig cfg;
        cfg.netns = netns;
        cfg.mac = *net::MacAddr::parse(mac);
        cfg.mtu = 1400;
        cfg.ipv4 = *net::Ip4Addr::parse(v4);
        cfg.ipv6 = *net::Ip6Addr::parse(v6);
        return cfg;
    }

    // Frames of the pods until pred(frame) or the deadline; the rest is freed.
    template <typename Pred>
    bool receive(Pred pred, std::chrono::milliseconds limit = 3000ms) {
        std::array<rte_mbuf *, 32> bufs;
        const auto deadline = std::chrono::steady_clock::now() + limit;
        bool seen = false;
        while (!seen && std::chrono::steady_clock::now() < deadline) {
            for (uint16_t q = 0; q < spec_.rx_queues; q++) {
                const uint16_t n = rte_eth_rx_burst(info_.port_id, q, bufs.data(), bufs.size());
                for (uint16_t i = 0; i < n; i++) {
                    seen = seen || pred(bufs[i]);
                    rte_pktmbuf_free(bufs[i]);
                }
            }
            std::this_thread::sleep_for(1ms);
        }
        return seen;
    }

    PortSpec spec_;
    PortInfo info_;
    std::optional<PortGuard> guard_;
};

TEST_F(SharedTapTest, LowerIsQuietAndLargeEnough) {
    const json link = json_of("ip -d -j link show dev " + spec_.tap_ifname);
    ASSERT_EQ(link.size(), 1u);
    EXPECT_EQ(link[0]["mtu"], 9000);
    EXPECT_EQ(link[0]["txqlen"], 10000);
    EXPECT_TRUE(has_flag(link[0], "UP"));
    EXPECT_EQ(capture("cat /proc/sys/net/ipv6/conf/" + spec_.tap_ifname + "/disable_ipv6").out,
              "1\n");
    EXPECT_EQ(capture("ip -6 -o addr show dev " + spec_.tap_ifname).out, "");
}

TEST_F(SharedTapTest, MacvlanIsMadeInsideThePod) {
    NetnsGuard ns("fwdt-" + uniq("ma"));
    ASSERT_TRUE(ns.ok());
    const PodIfConfig cfg =
        macvlan_config(ns.name(), "02:fd:00:00:01:01", "10.66.0.1", "fd00:66::1");
    int ifindex = 0;
    ASSERT_NO_THROW(ifindex = add_pod_macvlan(spec_.tap_ifname, cfg));
    EXPECT_GT(ifindex, 0);
    EXPECT_EQ(capture("ip -o link show").out.find("02:fd:00:00:01:01"), std::string::npos)
        << "the pod's macvlan showed up in our namespace";

    const std::string ipn = "ip -n " + ns.name() + " -j -d ";
    const json links = json_of(ipn + "link show dev eth0");
    ASSERT_EQ(links.size(), 1u);
    EXPECT_EQ(links[0]["ifindex"], ifindex);
    EXPECT_EQ(links[0]["address"], "02:fd:00:00:01:01");
    EXPECT_EQ(links[0]["mtu"], 1400);
    EXPECT_TRUE(has_flag(links[0], "UP"));
    EXPECT_EQ(links[0]["linkinfo"]["info_kind"], "macvlan");
    EXPECT_EQ(links[0]["linkinfo"]["info_data"]["mode"], "private");
    EXPECT_EQ(
        capture("ip netns exec " + ns.name() + " cat /proc/sys/net/ipv6/conf/eth0/accept_dad").out,
        "0\n");

    // What CNI CHECK reads.
    expect_inspected_as(ns.name(), cfg);
    EXPECT_EQ(inspect_pod_interface(ns.name(), "eth0").kind, "macvlan");
    const json addrs = json_of(ipn + "addr show dev eth0");
    ASSERT_EQ(addrs.size(), 1u);
    for (const auto &a : addrs[0]["addr_info"]) {
        EXPECT_FALSE(a.value("tentative", false)) << a.dump();
    }
}

// The tap kind makes the macvlan without routes (the pod cannot send before its anti-spoofing
// state is published) and adds them once it is: nothing routed leaves the pod until then.
TEST_F(SharedTapTest, RoutesComeLaterWhenAsked) {
    NetnsGuard ns("fwdt-" + uniq("rl"));
    ASSERT_TRUE(ns.ok());
    PodIfConfig cfg = macvlan_config(ns.name(), "02:fd:00:00:07:01", "10.66.7.1", "fd00:66:7::1");
    cfg.routes = false;
    int ifindex = 0;
    ASSERT_NO_THROW(ifindex = add_pod_macvlan(spec_.tap_ifname, cfg));
    PodIfState st = inspect_pod_interface(ns.name(), "eth0");
    for (const auto &a : expected_pod_addresses(cfg)) {
        EXPECT_TRUE(contains(st.addresses, a)) << a;
    }
    for (const auto &r : expected_pod_routes(cfg)) {
        EXPECT_FALSE(contains(st.routes, r)) << r;
    }
    const size_t kernel_routes = st.routes.size();  // the link-local and address prefixes
    const std::string in_pod = "ip netns exec " + ns.name() + " ";
    EXPECT_NE(capture(in_pod + "ip -4 route get 10.77.0.1").status, 0) << "routed before its time";
    EXPECT_NE(capture(in_pod + "ip -6 route get fd00:77::1").status, 0) << "routed before its time";

    ASSERT_NO_THROW(add_pod_routes(cfg, ifindex));
    expect_inspected_as(ns.name(), cfg);
    // Again (a restart that found them missing adds them): the same routes, no error.
    ASSERT_NO_THROW(add_pod_routes(cfg, ifindex));
    st = inspect_pod_interface(ns.name(), "eth0");
    EXPECT_EQ(st.routes.size(), kernel_routes + expected_pod_routes(cfg).size());
}

TEST_F(SharedTapTest, FramesReachThePmdAndRepliesTheRightPod) {
    NetnsGuard a("fwdt-" + uniq("mb"));
    NetnsGuard b("fwdt-" + uniq("mc"));
    ASSERT_TRUE(a.ok() && b.ok());
    const PodIfConfig ca = macvlan_config(a.name(), "02:fd:00:00:02:01", "10.66.0.2", "fd00:66::2");
    const PodIfConfig cb = macvlan_config(b.name(), "02:fd:00:00:02:02", "10.66.0.3", "fd00:66::3");
    ASSERT_NO_THROW(add_pod_macvlan(spec_.tap_ifname, ca));
    ASSERT_NO_THROW(add_pod_macvlan(spec_.tap_ifname, cb));
    receive([](rte_mbuf *) { return false; }, 200ms);  // what link up sent (RS, MLD)

    auto rx_packets = [](const NetnsGuard &ns) {
        return std::stoull(
            capture("ip netns exec " + ns.name() + " cat /sys/class/net/eth0/statistics/rx_packets")
                .out);
    };
    const uint64_t b_rx = rx_packets(b);

    // a pings the gateway: its ARP broadcast and echo come out of the shared
    // tap, the replies go back to a by destination MAC alone.
    auto ping = std::async(std::launch::async, [&] {
        return run("ip netns exec " + a.name() + " ping -c1 -W3 169.254.1.1");
    });
    Responder responder{ca.mac};
    std::array<rte_mbuf *, 32> bufs;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline &&
           ping.wait_for(0s) != std::future_status::ready) {
        for (uint16_t q = 0; q < spec_.rx_queues; q++) {
            const uint16_t n = rte_eth_rx_burst(info_.port_id, q, bufs.data(), bufs.size());
            for (uint16_t i = 0; i < n; i++) {
                if (responder.reply(bufs[i]) &&
                    rte_eth_tx_burst(info_.port_id, q, &bufs[i], 1) == 1) {
                    continue;
                }
                rte_pktmbuf_free(bufs[i]);
            }
        }
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_TRUE(responder.saw_arp);
    EXPECT_TRUE(responder.saw_echo);
    EXPECT_EQ(ping.get(), 0) << "no echo reply reached pod a through its macvlan";
    // Private mode: b saw neither a's broadcast nor anything else.
    EXPECT_EQ(rx_packets(b), b_rx);
}

TEST_F(SharedTapTest, FrameLargerThanOneMbufArrivesChained) {
    NetnsGuard ns("fwdt-" + uniq("md"));
    ASSERT_TRUE(ns.ok());
    PodIfConfig cfg = macvlan_config(ns.name(), "02:fd:00:00:03:01", "10.66.0.4", "fd00:66::4");
    cfg.mtu = 9000;
    ASSERT_NO_THROW(add_pod_macvlan(spec_.tap_ifname, cfg));
    // A static neighbor for the gateway: the pod sends the IPv4 frame at once.
    ASSERT_EQ(run("ip -n " + ns.name() + " neigh replace 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee " +
                  "dev eth0 nud permanent"),
              0);
    receive([](rte_mbuf *) { return false; }, 200ms);
    auto ping = std::async(std::launch::async, [&] {
        return run("ip netns exec " + ns.name() + " ping -c1 -W1 -s 8000 -M do 169.254.1.1");
    });
    uint32_t len = 0;
    uint16_t segs = 0;
    EXPECT_TRUE(receive([&](rte_mbuf *m) {
        if (m->pkt_len < 8000) {
            return false;
        }
        len = m->pkt_len;
        segs = m->nb_segs;
        return true;
    }));
    ping.wait();
    EXPECT_EQ(len, 14u + 20 + 8 + 8000);
    EXPECT_GT(segs, 1);
}

TEST_F(SharedTapTest, DeleteTouchesOnlyItsOwnMacvlan) {
    NetnsGuard ns("fwdt-" + uniq("me"));
    ASSERT_TRUE(ns.ok());
    const PodIfConfig cfg =
        macvlan_config(ns.name(), "02:fd:00:00:04:01", "10.66.0.5", "fd00:66::5");
    const int ifindex = add_pod_macvlan(spec_.tap_ifname, cfg);
    const net::MacAddr other = *net::MacAddr::parse("02:fd:00:00:04:02");
    EXPECT_EQ(delete_pod_macvlan(ns.name(), ifindex, other), PodLinkDelete::kNotOurs);
    EXPECT_TRUE(ns.has_link("eth0"));
    EXPECT_EQ(delete_pod_macvlan(ns.name(), ifindex + 1000, cfg.mac), PodLinkDelete::kLinkGone);
    // Renamed by someone: still found by its index.
    ASSERT_EQ(run("ip -n " + ns.name() + " link set eth0 name eth7"), 0);
    EXPECT_EQ(delete_pod_macvlan(ns.name(), ifindex, cfg.mac), PodLinkDelete::kDeleted);
    EXPECT_FALSE(ns.has_link("eth7"));
    EXPECT_EQ(delete_pod_macvlan(ns.name(), ifindex, cfg.mac), PodLinkDelete::kLinkGone);
    EXPECT_EQ(delete_pod_macvlan("fwdt-" + uniq("gone"), ifindex, cfg.mac),
              PodLinkDelete::kNetnsGone);
}

TEST_F(SharedTapTest, FailuresLeaveNothing) {
    NetnsGuard ns("fwdt-" + uniq("mf"));
    ASSERT_TRUE(ns.ok());
    PodIfConfig cfg = macvlan_config(ns.name(), "02:fd:00:00:05:01", "10.66.0.6", "fd00:66::6");

    // The pod has an eth0 of its own.
    ASSERT_EQ(run("ip -n " + ns.name() + " tuntap add name eth0 mode tap"), 0);
    try {
        add_pod_macvlan(spec_.tap_ifname, cfg);
        FAIL() << "made a second eth0";
    } catch (const NetnsError &e) {
        EXPECT_NE(std::string(e.what()).find("eth0 already exists in the pod"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(inspect_pod_interface(ns.name(), "eth0").kind, "tun") << "the pod's own eth0";
    ASSERT_EQ(run("ip -n " + ns.name() + " link del eth0"), 0);

    // The MAC is another macvlan's on this tap.
    NetnsGuard other("fwdt-" + uniq("mg"));
    ASSERT_TRUE(other.ok());
    PodIfConfig taken = cfg;
    taken.netns = other.name();
    ASSERT_NO_THROW(add_pod_macvlan(spec_.tap_ifname, taken));
    try {
        add_pod_macvlan(spec_.tap_ifname, cfg);
        FAIL() << "a MAC twice on one tap";
    } catch (const NetnsError &e) {
        EXPECT_NE(std::string(e.what()).find("MAC 02:fd:00:00:05:01 is taken"), std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(ns.has_link("eth0"));

    // Above the lower's MTU.
    cfg.mac = *net::MacAddr::parse("02:fd:00:00:05:02");
    cfg.mtu = 9001;
    EXPECT_THROW(add_pod_macvlan(spec_.tap_ifname, cfg), NetnsError);
    EXPECT_FALSE(ns.has_link("eth0"));
    cfg.mtu = 1500;

    // Configuration fails after the creation (the gateway route is taken):
    // the macvlan is deleted again.
    ASSERT_EQ(run("ip -n " + ns.name() + " route add 169.254.1.1/32 dev lo"), 0);
    try {
        add_pod_macvlan(spec_.tap_ifname, cfg);
        FAIL() << "configured over an existing gateway route";
    } catch (const NetnsError &e) {
        EXPECT_NE(std::string(e.what()).find("add route 169.254.1.1/32 dev eth0"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(ns.has_link("eth0"));

    // No namespace.
    cfg.netns = "fwdt-" + uniq("none");
    try {
        add_pod_macvlan(spec_.tap_ifname, cfg);
        FAIL() << "made a macvlan in a namespace that does not exist";
    } catch (const NetnsError &e) {
        EXPECT_NE(std::string(e.what()).find("/var/run/netns/" + cfg.netns), std::string::npos)
            << e.what();
    }
}

TEST_F(SharedTapTest, DestroyingTheTapDeletesEveryMacvlan) {
    NetnsGuard a("fwdt-" + uniq("mh"));
    NetnsGuard b("fwdt-" + uniq("mi"));
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_NO_THROW(add_pod_macvlan(spec_.tap_ifname, macvlan_config(a.name(), "02:fd:00:00:06:01",
                                                                     "10.66.0.7", "fd00:66::7")));
    ASSERT_NO_THROW(add_pod_macvlan(spec_.tap_ifname, macvlan_config(b.name(), "02:fd:00:00:06:02",
                                                                     "10.66.0.8", "fd00:66::8")));
    guard_.reset();
    EXPECT_TRUE(eventually([&] { return !a.has_link("eth0") && !b.has_link("eth0"); }));
    EXPECT_EQ(if_nametoindex(spec_.tap_ifname.c_str()), 0u);
}

// A vhost-user pod's server socket (control/port_vhost.cpp binds it through
// librte_vhost): its directory is made, a stale socket nobody listens on is
// removed, a live listener is somebody else's and refused, anything that is
// not a socket too.
TEST_F(PodPortTest, VhostServerReplacesStaleSocketOnly) {
    DirGuard dir("/tmp/fwdt-vhost-" + uniq("s"));
    const std::string nested = (dir.path() / "nested" / "pod.sock").string();
    EXPECT_NO_THROW(prepare_server_socket(nested, "pod a"));
    EXPECT_TRUE(std::filesystem::is_directory(dir.path() / "nested"));
    EXPECT_FALSE(std::filesystem::exists(nested));

    const std::string sock = (dir.path() / "pod.sock").string();
    // A socket file nobody listens on, as a crashed daemon leaves behind.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, sock.c_str(), sizeof(sa.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
    ::close(fd);
    ASSERT_TRUE(is_socket(sock));
    EXPECT_NO_THROW(prepare_server_socket(sock, "pod a"));
    EXPECT_FALSE(std::filesystem::exists(sock));

    // A live listener is somebody else's: refuse rather than steal it.
    fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
    ASSERT_EQ(::listen(fd, 1), 0);
    try {
        prepare_server_socket(sock, "pod a");
        ADD_FAILURE() << "a live listener's socket was taken";
    } catch (const PortError &e) {
        EXPECT_NE(std::string(e.what()).find("a server is already listening on it"),
                  std::string::npos)
            << e.what();
    }
    ::close(fd);
    EXPECT_TRUE(is_socket(sock));
    ::unlink(sock.c_str());

    // A file of another kind is not ours to remove.
    { std::ofstream(sock) << "x"; }
    EXPECT_THROW(prepare_server_socket(sock, "pod a"), PortError);
    EXPECT_TRUE(std::filesystem::is_regular_file(sock));
}

}  // namespace
}  // namespace fwd::vhost

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (geteuid() != 0) {
        return RUN_ALL_TESTS();  // every test skips
    }
    // DPDK 22.11 refuses --in-memory with --no-huge (which implies legacy
    // memory); --no-shconf keeps the run file-free all the same.
    const std::string prefix = "--file-prefix=fwdt-vhost-" + std::to_string(getpid());
    std::vector<std::string> args = {
        "test_vhost_component",  "--no-huge", "--no-shconf", "-m", "256", "--no-pci",
        "--log-level=*:warning", prefix,
    };
    std::vector<char *> eal_argv;
    for (auto &a : args) {
        eal_argv.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "EAL init failed: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    fwd::vhost::g_pool =
        rte_pktmbuf_pool_create("fwdt_vhost_pool", 4095, 64, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                static_cast<int>(rte_socket_id()));
    if (fwd::vhost::g_pool == nullptr) {
        std::fprintf(stderr, "mempool: %s\n", rte_strerror(rte_errno));
        rte_eal_cleanup();
        return 1;
    }
    const int rc = RUN_ALL_TESTS();
    rte_mempool_free(fwd::vhost::g_pool);
    fwd::dp::eal_cleanup_all();
    return rc;
}
