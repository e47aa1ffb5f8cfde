// Component test of HostTap in real network namespaces: the tap is checked
// with iproute2, then the kernel behind it answers ARP, NS and pings written
// to the fd. The solicitations come from NeighborTable, so its frames are
// also checked against a real kernel. Needs root; every namespace is made
// per run and deleted by a guard, and traffic stays inside it.
#include "fwd/vhost/host_tap.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fwd/control/neighbor.hpp"

namespace fwd::vhost {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Bytes = std::vector<uint8_t>;

// Interface names must stay within 15 characters.
std::string uniq(const std::string &tag) {
    return tag + std::to_string(getpid() % 1000000);
}

std::string capture(const std::string &cmd, int *status = nullptr) {
    std::string out;
    FILE *p = popen((cmd + " 2>/dev/null").c_str(), "r");
    if (p == nullptr) {
        return out;
    }
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) {
        out.append(buf.data(), n);
    }
    const int st = pclose(p);
    if (status != nullptr) {
        *status = st;
    }
    return out;
}

int run(const std::string &cmd) {
    return std::system((cmd + " >/dev/null 2>&1").c_str());
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

const net::MacAddr kTapMac{{0x02, 0x42, 0x0a, 0x4d, 0x00, 0x01}};
const net::MacAddr kPeerMac{{0x02, 0x42, 0x0a, 0x4d, 0x00, 0x02}};
const net::Ip4Addr kTap4 = *net::Ip4Addr::parse("10.77.0.1");
const net::Ip4Addr kPeer4 = *net::Ip4Addr::parse("10.77.0.2");
const net::Ip6Addr kTap6 = *net::Ip6Addr::parse("fd00:77::1");
const net::Ip6Addr kPeer6 = *net::Ip6Addr::parse("fd00:77::2");

uint16_t rd16(const uint8_t *p) {
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

void put16(Bytes &f, uint16_t v) {
    f.push_back(static_cast<uint8_t>(v >> 8));
    f.push_back(static_cast<uint8_t>(v));
}

void put(Bytes &f, const uint8_t *p, size_t n) {
    f.insert(f.end(), p, p + n);
}

void put_ip4(Bytes &f, net::Ip4Addr a) {
    put16(f, static_cast<uint16_t>(a.host() >> 16));
    put16(f, static_cast<uint16_t>(a.host()));
}

uint16_t inet_sum(const uint8_t *p, size_t len) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        s += rd16(p + i);
    }
    if (len % 2) {
        s += uint32_t{p[len - 1]} << 8;
    }
    while (s >> 16) {
        s = (s & 0xffff) + (s >> 16);
    }
    return static_cast<uint16_t>(~s);
}

void set16(Bytes &f, size_t off, uint16_t v) {
    f[off] = static_cast<uint8_t>(v >> 8);
    f[off + 1] = static_cast<uint8_t>(v);
}

const Bytes kPingData = {'f', 'w', 'd', '-', 'h', 'o', 's', 't', '-', 't', 'a', 'p'};

Bytes echo4(uint16_t id) {
    Bytes f;
    put(f, kTapMac.data(), 6);
    put(f, kPeerMac.data(), 6);
    put16(f, 0x0800);
    const size_t ip = f.size();
    f.insert(f.end(), {0x45, 0});
    put16(f, static_cast<uint16_t>(20 + 8 + kPingData.size()));
    f.insert(f.end(), {0, 1, 0x40, 0, 64, 1, 0, 0});  // id, DF, TTL, ICMP, checksum
    put_ip4(f, kPeer4);
    put_ip4(f, kTap4);
    set16(f, ip + 10, inet_sum(f.data() + ip, 20));
    const size_t icmp = f.size();
    f.insert(f.end(), {8, 0, 0, 0});
    put16(f, id);
    put16(f, 1);
    f.insert(f.end(), kPingData.begin(), kPingData.end());
    set16(f, icmp + 2, inet_sum(f.data() + icmp, f.size() - icmp));
    return f;
}

Bytes echo6(uint16_t id) {
    Bytes icmp{128, 0, 0, 0};
    put16(icmp, id);
    put16(icmp, 1);
    icmp.insert(icmp.end(), kPingData.begin(), kPingData.end());
    set16(icmp, 2, control::icmp6_checksum(kPeer6, kTap6, icmp.data(), icmp.size()));
    Bytes f;
    put(f, kTapMac.data(), 6);
    put(f, kPeerMac.data(), 6);
    put16(f, 0x86dd);
    f.insert(f.end(), {0x60, 0, 0, 0});
    put16(f, static_cast<uint16_t>(icmp.size()));
    f.push_back(58);
    f.push_back(64);
    put(f, kPeer6.data(), 16);
    put(f, kTap6.data(), 16);
    f.insert(f.end(), icmp.begin(), icmp.end());
    return f;
}

// Reads frames until one matches or the time is up; others (MLD reports,
// the kernel's own solicitations) are skipped.
std::optional<Bytes> read_until(HostTap &tap, const std::function<bool(const Bytes &)> &want,
                                std::chrono::milliseconds limit = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::array<uint8_t, 2048> buf;
    while (true) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return std::nullopt;
        }
        pollfd pfd{tap.fd(), POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
            continue;
        }
        const ssize_t n = tap.read_frame(buf.data(), buf.size());
        if (n < 0) {
            continue;
        }
        Bytes f(buf.begin(), buf.begin() + n);
        if (want(f)) {
            return f;
        }
    }
}

bool is_type(const Bytes &f, uint16_t type) {
    return f.size() >= 14 && rd16(f.data() + 12) == type;
}

class HostTapTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0 || run("ip netns list") != 0) {
            GTEST_SKIP() << "needs root and iproute2 (network namespaces)";
        }
        ns_.emplace(uniq("fwdht"));
        ASSERT_TRUE(ns_->ok()) << "ip netns add " << ns_->name();
    }

    HostTapConfig config() const {
        HostTapConfig c;
        c.name = uniq("ht");
        c.netns = ns_->name();
        c.mac = kTapMac;
        c.mtu = 1400;
        c.ip4 = net::IfAddr4::parse("10.77.0.1/24");
        c.ip6 = net::IfAddr6::parse("fd00:77::1/64");
        return c;
    }

    std::string sysctl(const std::string &path) const {
        std::string v = capture("ip netns exec " + ns_->name() + " cat " + path);
        while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) {
            v.pop_back();
        }
        return v;
    }

    bool eventually_gone(const std::string &ifname) const {
        for (int i = 0; i < 100; i++) {
            if (!ns_->has_link(ifname)) {
                return true;
            }
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }

    std::optional<NetnsGuard> ns_;
};

void expect_configured(const std::string &ns, const HostTapConfig &c) {
    const json links = json::parse(capture("ip -j -n " + ns + " addr show dev " + c.name));
    ASSERT_EQ(links.size(), 1u);
    const json &l = links[0];
    EXPECT_EQ(l.value("ifname", ""), c.name);
    EXPECT_EQ(l.value("address", ""), c.mac.str());
    EXPECT_EQ(l.value("mtu", 0), c.mtu);
    const auto flags = l.value("flags", json::array());
    EXPECT_NE(std::find(flags.begin(), flags.end(), "UP"), flags.end()) << l.dump();
    EXPECT_NE(std::find(flags.begin(), flags.end(), "LOWER_UP"), flags.end()) << l.dump();
    bool v4 = false;
    bool v6 = false;
    for (const auto &a : l.value("addr_info", json::array())) {
        const std::string local = a.value("local", "");
        const int len = a.value("prefixlen", -1);
        if (c.ip4 && local == c.ip4->addr.str() && len == c.ip4->len) {
            v4 = true;
        }
        if (c.ip6 && local == c.ip6->addr.str() && len == c.ip6->len) {
            v6 = true;
            EXPECT_FALSE(a.value("tentative", false)) << "added without DAD";
        }
    }
    EXPECT_EQ(v4, c.ip4.has_value()) << l.dump();
    EXPECT_EQ(v6, c.ip6.has_value()) << l.dump();
}

TEST_F(HostTapTest, CreatesConfiguredTapAndRemovesItOnClose) {
    const HostTapConfig c = config();
    {
        HostTap tap(c);
        EXPECT_EQ(tap.name(), c.name);
        EXPECT_GE(tap.fd(), 0);
        EXPECT_NE(::fcntl(tap.fd(), F_GETFL) & O_NONBLOCK, 0);
        EXPECT_NE(::fcntl(tap.fd(), F_GETFD) & FD_CLOEXEC, 0);
        expect_configured(ns_->name(), c);
        EXPECT_NE(run("ip link show dev " + c.name), 0) << "never in our namespace";
        const std::string conf = "/proc/sys/net/ipv6/conf/" + c.name + "/";
        for (const char *key : {"accept_ra", "accept_dad", "autoconf", "router_solicitations"}) {
            EXPECT_EQ(sysctl(conf + key), "0") << key;
        }
        std::array<uint8_t, 64> buf;
        errno = 0;
        while (tap.read_frame(buf.data(), buf.size()) >= 0) {
        }
        EXPECT_EQ(errno, EAGAIN) << "non-blocking read of an empty tap";

        HostTap moved(std::move(tap));
        EXPECT_EQ(tap.fd(), -1);
        EXPECT_TRUE(ns_->has_link(c.name)) << "the move keeps the tap";
    }
    EXPECT_TRUE(eventually_gone(c.name)) << "closing the fd removes the tap";
}

TEST_F(HostTapTest, EmptyNetnsMeansTheCallersNamespace) {
    // Runs on a thread inside the test namespace, so "this process's
    // namespace" is one we own.
    HostTapConfig c = config();
    c.netns.clear();
    c.ip6.reset();
    std::string error;
    std::thread t([&] {
        const std::string path = "/var/run/netns/" + ns_->name();
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
            error = "enter " + path;
        } else {
            try {
                HostTap tap(c);
                expect_configured(ns_->name(), c);
            } catch (const std::exception &e) {
                error = e.what();
            }
        }
        if (fd >= 0) {
            ::close(fd);
        }
    });
    t.join();
    EXPECT_EQ(error, "");
    EXPECT_TRUE(eventually_gone(c.name));
}

TEST_F(HostTapTest, KernelAnswersArpAndPing) {
    const HostTapConfig c = config();
    HostTap tap(c);
    control::NeighborTable neigh({}, kPeerMac, kPeer4, kPeer6);
    neigh.ref(kTap4, 0);
    auto actions = neigh.take_actions(0);
    ASSERT_EQ(actions.size(), 1u);
    ASSERT_TRUE(tap.write_frame(actions[0].frame.data(), actions[0].frame.size()));

    auto reply = read_until(tap, [](const Bytes &f) {
        return is_type(f, 0x0806) && f.size() >= 42 && rd16(f.data() + 20) == 2;
    });
    ASSERT_TRUE(reply) << "no ARP reply from the kernel";
    const Bytes &r = *reply;
    EXPECT_EQ(net::MacAddr::from_bytes(r.data()), kPeerMac);
    EXPECT_EQ(net::MacAddr::from_bytes(r.data() + 6), kTapMac);
    EXPECT_EQ(net::MacAddr::from_bytes(r.data() + 22), kTapMac) << "sender MAC";
    EXPECT_EQ(Bytes(r.begin() + 28, r.begin() + 32), (Bytes{10, 77, 0, 1})) << "sender IP";
    EXPECT_EQ(net::MacAddr::from_bytes(r.data() + 32), kPeerMac) << "target MAC";
    EXPECT_EQ(Bytes(r.begin() + 38, r.begin() + 42), (Bytes{10, 77, 0, 2})) << "target IP";

    ASSERT_TRUE(neigh.on_frame(r.data(), r.size(), 5));
    EXPECT_EQ(neigh.resolved_mac(kTap4), kTapMac);
    EXPECT_EQ(neigh.list(5).at(0).state, "reachable");

    ASSERT_EQ(run("ip -n " + ns_->name() + " neigh replace " + kPeer4.str() + " lladdr " +
                  kPeerMac.str() + " dev " + c.name),
              0);
    const Bytes ping = echo4(0x4242);
    // The iovec path, split inside the IP header.
    iovec iov[2] = {{const_cast<uint8_t *>(ping.data()), 20},
                    {const_cast<uint8_t *>(ping.data() + 20), ping.size() - 20}};
    ASSERT_TRUE(tap.write_frame(iov, 2));
    auto pong = read_until(tap, [](const Bytes &f) {
        return is_type(f, 0x0800) && f.size() >= 42 && f[23] == 1 && f[34] == 0 &&
               rd16(f.data() + 38) == 0x4242;
    });
    ASSERT_TRUE(pong) << "no ICMP echo reply";
    EXPECT_EQ(net::MacAddr::from_bytes(pong->data()), kPeerMac);
    EXPECT_EQ(Bytes(pong->begin() + 26, pong->begin() + 30), (Bytes{10, 77, 0, 1}));
    EXPECT_EQ(Bytes(pong->begin() + 30, pong->begin() + 34), (Bytes{10, 77, 0, 2}));
    EXPECT_EQ(Bytes(pong->end() - static_cast<long>(kPingData.size()), pong->end()), kPingData);
}

TEST_F(HostTapTest, KernelAnswersNeighborSolicitationAndPing6) {
    const HostTapConfig c = config();
    HostTap tap(c);
    control::NeighborTable neigh({}, kPeerMac, kPeer4, kPeer6);
    neigh.ref(kTap6, 0);
    auto actions = neigh.take_actions(0);
    ASSERT_EQ(actions.size(), 1u);
    ASSERT_TRUE(tap.write_frame(actions[0].frame.data(), actions[0].frame.size()));

    // A Neighbor Advertisement for our target (checksum and all validated by
    // on_frame; the kernel only answers an NS whose checksum is right). The
    // kernel joins the solicited-node group from a work queue after the
    // address is added, so a first NS can go unanswered: retransmit on the
    // table's own timer, as the dataplane would.
    auto is_na = [&](const Bytes &f) {
        return is_type(f, 0x86dd) && f.size() >= 78 && f[20] == 58 && f[54] == 136 &&
               net::Ip6Addr::from_bytes(f.data() + 62) == kTap6;
    };
    std::optional<Bytes> na = read_until(tap, is_na, 1000ms);
    for (uint64_t now = 1000; !na && now <= 2000; now += 1000) {
        actions = neigh.take_actions(now);
        ASSERT_EQ(actions.size(), 1u);
        ASSERT_EQ(actions[0].kind, control::NeighAction::kSend);
        ASSERT_TRUE(tap.write_frame(actions[0].frame.data(), actions[0].frame.size()));
        na = read_until(tap, is_na, 1000ms);
    }
    ASSERT_TRUE(na) << "no Neighbor Advertisement from the kernel";
    EXPECT_EQ(net::MacAddr::from_bytes(na->data()), kPeerMac) << "unicast to the NS source";
    EXPECT_NE((*na)[58] & 0x40, 0) << "solicited flag";
    ASSERT_TRUE(neigh.on_frame(na->data(), na->size(), 5));
    EXPECT_EQ(neigh.resolved_mac(kTap6), kTapMac);
    EXPECT_EQ(neigh.list(5).at(0).state, "reachable");

    ASSERT_EQ(run("ip -n " + ns_->name() + " neigh replace " + kPeer6.str() + " lladdr " +
                  kPeerMac.str() + " dev " + c.name),
              0);
    const Bytes ping = echo6(0x6666);
    ASSERT_TRUE(tap.write_frame(ping.data(), ping.size()));
    auto pong = read_until(tap, [](const Bytes &f) {
        return is_type(f, 0x86dd) && f.size() >= 62 && f[20] == 58 && f[54] == 129 &&
               rd16(f.data() + 58) == 0x6666;
    });
    ASSERT_TRUE(pong) << "no ICMPv6 echo reply";
    EXPECT_EQ(net::MacAddr::from_bytes(pong->data()), kPeerMac);
    EXPECT_EQ(net::Ip6Addr::from_bytes(pong->data() + 22), kTap6);
    EXPECT_EQ(net::Ip6Addr::from_bytes(pong->data() + 38), kPeer6);
    EXPECT_EQ(control::icmp6_checksum(kTap6, kPeer6, pong->data() + 54, pong->size() - 54), 0);
}

std::string error_of(const HostTapConfig &c) {
    try {
        HostTap tap(c);
    } catch (const HostTapError &e) {
        return e.what();
    }
    return "";
}

bool has(const std::string &text, const std::string &part) {
    return text.find(part) != std::string::npos;
}

TEST_F(HostTapTest, BadConfigThrowsAndLeavesNothing) {
    HostTapConfig c = config();
    c.name = "fwd0123456789abc";  // 16 characters
    std::string e = error_of(c);
    EXPECT_TRUE(has(e, "bad interface name 'fwd0123456789abc'") && has(e, "at most 15")) << e;

    c = config();
    c.name = "a/b";
    EXPECT_TRUE(has(error_of(c), "bad interface name 'a/b'")) << error_of(c);

    c = config();
    c.netns = uniq("fwd-missing-ns");
    e = error_of(c);
    EXPECT_TRUE(has(e, "/var/run/netns/" + c.netns) && has(e, "open netns") &&
                has(e, "No such file or directory"))
        << e;

    c = config();
    c.mac = *net::MacAddr::parse("01:00:5e:00:00:01");
    EXPECT_TRUE(has(error_of(c), "is zero or multicast")) << error_of(c);

    c = config();
    c.mtu = 1000;
    EXPECT_TRUE(has(error_of(c), "IPv6 minimum")) << error_of(c);

    // Refused by the kernel after the tap exists: it must disappear.
    c = config();
    c.mtu = 65535;
    e = error_of(c);
    EXPECT_TRUE(has(
        e, "host tap " + c.name + " in netns /var/run/netns/" + ns_->name() + ": set MTU 65535: "))
        << e;
    EXPECT_TRUE(eventually_gone(c.name));

    // A taken name is refused, and the existing tap is untouched.
    c = config();
    HostTap first(c);
    HostTapConfig again = c;
    again.mac = kPeerMac;
    e = error_of(again);
    EXPECT_TRUE(has(e, "create tap: an interface with that name already exists")) << e;
    expect_configured(ns_->name(), c);
    again.name = "lo";
    EXPECT_TRUE(has(error_of(again), "already exists")) << "not only taps";
}

}  // namespace
}  // namespace fwd::vhost
