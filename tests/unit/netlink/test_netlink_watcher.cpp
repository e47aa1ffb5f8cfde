// NetlinkWatcher against the real kernel. Every test builds its own network namespace with a
// tap interface (this kernel has no dummy links), installs routes with `ip`, and checks the
// events a consumer sees. Needs root.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fwd/control/netlink_watcher.hpp"

namespace fwd::control {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Kind = RouteEvent::Kind;

constexpr auto kFollowTimeout = 1s;

int run(const std::string &cmd) {
    const int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string capture(const std::string &cmd) {
    std::string out;
    FILE *f = popen(cmd.c_str(), "r");
    if (f == nullptr) {
        return out;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        out.append(buf, n);
    }
    pclose(f);
    return out;
}

// A namespace named fwdnl-<pid>-<n> with tap t0 up, 10.10.10.10/24 and fd00:10:10::10/64.
class NetnsGuard {
  public:
    NetnsGuard() {
        static int counter = 0;
        name_ = "fwdnl-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
        run("ip netns del " + name_);
        ok_ = run("ip netns add " + name_) == 0 && ip("link set lo up") &&
              ip("tuntap add name t0 mode tap") && ip("link set t0 up") &&
              ip("addr add 10.10.10.10/24 dev t0") && ip("addr add fd00:10:10::10/64 dev t0 nodad");
        if (ok_) {
            ifindex_ = static_cast<uint32_t>(
                std::stoul(capture("ip netns exec " + name_ + " cat /sys/class/net/t0/ifindex")));
        }
    }
    ~NetnsGuard() { run("ip netns del " + name_); }
    NetnsGuard(const NetnsGuard &) = delete;
    NetnsGuard &operator=(const NetnsGuard &) = delete;

    bool ok() const { return ok_; }
    const std::string &name() const { return name_; }
    uint32_t ifindex() const { return ifindex_; }
    // `ip -n <ns> <args>`; true on success.
    bool ip(const std::string &args) const { return run("ip -n " + name_ + " " + args) == 0; }

  private:
    std::string name_;
    bool ok_ = false;
    uint32_t ifindex_ = 0;
};

// The consumer: the test thread pops, woken by the watcher's sink.
class Consumer {
  public:
    explicit Consumer(NetlinkWatcherConfig config)
        : watcher_(std::move(config), [this] {
              std::lock_guard lock(mutex_);
              woken_ = true;
              cv_.notify_one();
          }) {}

    NetlinkWatcher &watcher() { return watcher_; }

    std::optional<RouteEvent> next(std::chrono::milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            RouteEvent e;
            if (watcher_.pop(e)) {
                return e;
            }
            std::unique_lock lock(mutex_);
            // The wake may have come between the failed pop and this lock: retry briefly.
            if (!cv_.wait_until(lock, std::min(deadline, Clock::now() + 10ms),
                                [this] { return woken_; }) &&
                Clock::now() >= deadline) {
                return std::nullopt;
            }
            woken_ = false;
        }
    }

    // The events of the first resync, kResyncBegin and kResyncEnd excluded.
    std::vector<RouteEvent> initial_dump() {
        std::vector<RouteEvent> out;
        auto first = next(2000ms);
        EXPECT_TRUE(first && first->kind == Kind::kResyncBegin);
        while (auto e = next(2000ms)) {
            if (e->kind == Kind::kResyncEnd) {
                return out;
            }
            out.push_back(*e);
        }
        ADD_FAILURE() << "no kResyncEnd";
        return out;
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool woken_ = false;
    NetlinkWatcher watcher_;
};

NetlinkWatcherConfig config_for(const NetnsGuard &ns) {
    NetlinkWatcherConfig c;
    c.netns = ns.name();
    return c;
}

std::string prefix_str(const RouteEvent &e) {
    return std::visit([](const auto &p) { return p.str(); }, e.prefix);
}

std::set<std::string> vias(const RouteEvent &e) {
    std::set<std::string> out;
    for (const auto &nh : e.nexthops) {
        out.insert(nh.has_via ? nh.via.str() : "-");
    }
    return out;
}

// Reads events up to `timeout` until one for `prefix` arrives.
std::optional<RouteEvent> next_for(Consumer &c, const std::string &prefix,
                                   std::chrono::milliseconds timeout = kFollowTimeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        auto e =
            c.next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
        if (!e) {
            break;
        }
        if ((e->kind == Kind::kAdd || e->kind == Kind::kDel) && prefix_str(*e) == prefix) {
            return e;
        }
    }
    return std::nullopt;
}

class NetlinkWatcherTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) {
            GTEST_SKIP() << "needs root (netns, tap)";
        }
        ASSERT_TRUE(ns_.ok()) << "cannot set up netns " << ns_.name();
    }
    NetnsGuard ns_;
};

TEST_F(NetlinkWatcherTest, InitialDumpHoldsOnlyBirdRoutesOfTheMainTable) {
    ASSERT_TRUE(ns_.ip("route add 192.168.1.0/26 via 10.10.10.11 proto bird"));
    ASSERT_TRUE(ns_.ip("-6 route add fd00:10:244::40/122 via fd00:10:10::11 proto bird"));
    ASSERT_TRUE(ns_.ip("route add 192.168.9.0/26 via 10.10.10.11 proto static"));
    ASSERT_TRUE(ns_.ip("-6 route add fd00:10:244::80/122 via fd00:10:10::11 proto static"));
    ASSERT_TRUE(ns_.ip("route add 192.168.8.0/26 via 10.10.10.11 proto bird table 100"));
    ASSERT_TRUE(ns_.ip("-6 route add fd00:10:244::c0/122 via fd00:10:10::11 proto bird table 100"));

    Consumer c(config_for(ns_));
    c.watcher().start();
    auto routes = c.initial_dump();

    std::map<std::string, RouteEvent> by_prefix;
    for (const auto &e : routes) {
        EXPECT_EQ(e.kind, Kind::kAdd);
        by_prefix[prefix_str(e)] = e;
    }
    ASSERT_EQ(by_prefix.size(), 2u);
    ASSERT_EQ(routes.size(), 2u);
    for (const auto &[prefix, via] :
         {std::pair{"192.168.1.0/26", "10.10.10.11"}, {"fd00:10:244::40/122", "fd00:10:10::11"}}) {
        ASSERT_TRUE(by_prefix.count(prefix)) << prefix;
        const RouteEvent &e = by_prefix[prefix];
        EXPECT_EQ(e.protocol, kRouteProtoBird);
        EXPECT_EQ(e.table, kRouteTableMain);
        EXPECT_FALSE(e.blackhole);
        ASSERT_EQ(e.nexthops.size(), 1u);
        EXPECT_EQ(e.nexthops[0].via.str(), via);
        EXPECT_EQ(e.nexthops[0].ifindex, ns_.ifindex());
        EXPECT_EQ(e.nexthops[0].weight, 1);
    }
    EXPECT_EQ(c.watcher().resyncs(), 0u);
    EXPECT_EQ(c.watcher().error(), "");
}

TEST_F(NetlinkWatcherTest, FollowsAddsAndDeletesOfBothFamilies) {
    Consumer c(config_for(ns_));
    c.watcher().start();
    EXPECT_TRUE(c.initial_dump().empty());

    ASSERT_TRUE(ns_.ip("route add 192.168.1.0/26 via 10.10.10.11 proto bird"));
    auto e = next_for(c, "192.168.1.0/26");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kAdd);
    EXPECT_EQ(vias(*e), std::set<std::string>{"10.10.10.11"});

    ASSERT_TRUE(ns_.ip("-6 route add fd00:10:244::40/122 via fd00:10:10::11 proto bird"));
    e = next_for(c, "fd00:10:244::40/122");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kAdd);
    EXPECT_EQ(vias(*e), std::set<std::string>{"fd00:10:10::11"});

    ASSERT_TRUE(ns_.ip("route del 192.168.1.0/26"));
    e = next_for(c, "192.168.1.0/26");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kDel);
    ASSERT_TRUE(ns_.ip("-6 route del fd00:10:244::40/122"));
    e = next_for(c, "fd00:10:244::40/122");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kDel);

    ASSERT_TRUE(ns_.ip("route add blackhole 192.168.2.0/26 proto bird"));
    e = next_for(c, "192.168.2.0/26");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kAdd);
    EXPECT_TRUE(e->blackhole);
    EXPECT_TRUE(e->nexthops.empty());
    ASSERT_TRUE(ns_.ip("-6 route add blackhole fd00:10:244::/122 proto bird"));
    e = next_for(c, "fd00:10:244::/122");
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->blackhole);
    ASSERT_TRUE(ns_.ip("route add unreachable 192.168.4.0/26 proto bird"));
    e = next_for(c, "192.168.4.0/26");
    ASSERT_TRUE(e);
    EXPECT_TRUE(e->unreachable);
    EXPECT_FALSE(e->blackhole);

    // Filtered out: the next event is the sentinel's.
    ASSERT_TRUE(ns_.ip("route add 192.168.9.0/26 via 10.10.10.11 proto static"));
    ASSERT_TRUE(ns_.ip("-6 route add fd00:10:244::80/122 via fd00:10:10::11 table 100 proto bird"));
    ASSERT_TRUE(ns_.ip("route add 192.168.5.0/26 via 10.10.10.11 proto bird"));
    e = c.next(kFollowTimeout);
    ASSERT_TRUE(e);
    EXPECT_EQ(prefix_str(*e), "192.168.5.0/26");
}

TEST_F(NetlinkWatcherTest, EcmpRouteIsOneEventWithAllPaths) {
    Consumer c(config_for(ns_));
    c.watcher().start();
    c.initial_dump();

    ASSERT_TRUE(ns_.ip(
        "route add 192.168.3.0/26 proto bird nexthop via 10.10.10.11 nexthop via 10.10.10.12"));
    auto e = next_for(c, "192.168.3.0/26");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kAdd);
    EXPECT_EQ(vias(*e), (std::set<std::string>{"10.10.10.11", "10.10.10.12"}));
    for (const auto &nh : e->nexthops) {
        EXPECT_EQ(nh.ifindex, ns_.ifindex());
    }

    ASSERT_TRUE(
        ns_.ip("-6 route add fd00:10:244::40/122 proto bird nexthop via fd00:10:10::11 "
               "nexthop via fd00:10:10::12 weight 3"));
    e = next_for(c, "fd00:10:244::40/122");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kAdd);
    EXPECT_EQ(vias(*e), (std::set<std::string>{"fd00:10:10::11", "fd00:10:10::12"}));
    for (const auto &nh : e->nexthops) {
        EXPECT_EQ(nh.weight, nh.via.str() == "fd00:10:10::12" ? 3 : 1);
    }

    // IPv6 paths come and go one at a time; the route stays whole.
    ASSERT_TRUE(ns_.ip("-6 route append fd00:10:244::40/122 via fd00:10:10::13 proto bird"));
    e = next_for(c, "fd00:10:244::40/122");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kAdd);
    EXPECT_EQ(vias(*e),
              (std::set<std::string>{"fd00:10:10::11", "fd00:10:10::12", "fd00:10:10::13"}));
    ASSERT_TRUE(ns_.ip("-6 route del fd00:10:244::40/122 via fd00:10:10::12 proto bird"));
    e = next_for(c, "fd00:10:244::40/122");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kAdd);
    EXPECT_EQ(vias(*e), (std::set<std::string>{"fd00:10:10::11", "fd00:10:10::13"}));
    ASSERT_TRUE(ns_.ip("-6 route del fd00:10:244::40/122 proto bird"));
    e = next_for(c, "fd00:10:244::40/122");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->kind, Kind::kDel);

    // A dump of an ECMP route is one event too, in both families.
    ASSERT_TRUE(
        ns_.ip("-6 route add fd00:10:244::40/122 proto bird nexthop via fd00:10:10::11 "
               "nexthop via fd00:10:10::12"));
    Consumer again(config_for(ns_));
    again.watcher().start();
    std::map<std::string, RouteEvent> dumped;
    for (const auto &r : again.initial_dump()) {
        dumped[prefix_str(r)] = r;
    }
    ASSERT_EQ(dumped.size(), 2u);
    EXPECT_EQ(vias(dumped["192.168.3.0/26"]),
              (std::set<std::string>{"10.10.10.11", "10.10.10.12"}));
    EXPECT_EQ(vias(dumped["fd00:10:244::40/122"]),
              (std::set<std::string>{"fd00:10:10::11", "fd00:10:10::12"}));
}

TEST_F(NetlinkWatcherTest, ReplaceIsAnAddWithTheNewNextHop) {
    Consumer c(config_for(ns_));
    c.watcher().start();
    c.initial_dump();

    for (const auto &[prefix, old_via, new_via, family] :
         {std::tuple{"192.168.1.0/26", "10.10.10.11", "10.10.10.12", ""},
          {"fd00:10:244::40/122", "fd00:10:10::11", "fd00:10:10::12", "-6 "}}) {
        ASSERT_TRUE(ns_.ip(std::string(family) + "route add " + prefix + " via " + old_via +
                           " proto bird"));
        auto e = next_for(c, prefix);
        ASSERT_TRUE(e);
        ASSERT_TRUE(ns_.ip(std::string(family) + "route replace " + prefix + " via " + new_via +
                           " proto bird"));
        e = next_for(c, prefix);
        ASSERT_TRUE(e);
        EXPECT_EQ(e->kind, Kind::kAdd);
        EXPECT_EQ(vias(*e), std::set<std::string>{new_via});

        // Taken over by another protocol: no longer BIRD's route.
        ASSERT_TRUE(ns_.ip(std::string(family) + "route replace " + prefix + " via " + new_via +
                           " proto static"));
        e = next_for(c, prefix);
        ASSERT_TRUE(e);
        EXPECT_EQ(e->kind, Kind::kDel);
    }
}

// What a consumer holds: the routes by (prefix, metric), replaced wholesale by a resync.
struct RouteSet {
    std::map<std::string, RouteEvent> routes;
    std::map<std::string, RouteEvent> pending;
    bool in_resync = false;
    std::map<std::string, int> adds;

    void apply(const RouteEvent &e) {
        switch (e.kind) {
            case Kind::kResyncBegin:
                in_resync = true;
                pending.clear();
                break;
            case Kind::kResyncEnd:
                in_resync = false;
                routes = std::move(pending);
                pending.clear();
                break;
            case Kind::kAdd:
                adds[prefix_str(e)]++;
                (in_resync ? pending : routes)[prefix_str(e)] = e;
                break;
            case Kind::kDel:
                (in_resync ? pending : routes).erase(prefix_str(e));
                break;
        }
    }
};

std::set<std::string> kernel_bird_prefixes(const NetnsGuard &ns) {
    std::set<std::string> out;
    for (const char *family : {"-4", "-6"}) {
        std::istringstream in(
            capture("ip -n " + ns.name() + " " + family + " route show proto bird"));
        std::string line;
        while (std::getline(in, line)) {
            if (!line.empty() && line[0] != ' ' && line[0] != '\t') {
                out.insert(line.substr(0, line.find(' ')));
            }
        }
    }
    return out;
}

struct BurstResult {
    RouteSet set;
    double seconds = 0;      // from the first `ip` to the consumer holding every route
    double add_seconds = 0;  // what `ip -batch` alone took: the kernel side of the rate
};

// How long the consumer leaves the ring alone when the burst starts.
enum class Stall { kNone, kBriefly, kUntilAdded };

// Adds `count` routes (half IPv4, half IPv6) in one `ip -batch` per family while the
// consumer stalls and then pops slowly, and applies the events until it holds them all.
BurstResult burst(const NetnsGuard &ns, Consumer &c, int count, std::chrono::microseconds per_pop,
                  Stall stall) {
    const std::string file4 = "/tmp/" + ns.name() + "-4.batch";
    const std::string file6 = "/tmp/" + ns.name() + "-6.batch";
    {
        std::ofstream f4(file4), f6(file6);
        for (int i = 0; i < count / 2; i++) {
            const uint32_t a = (172u << 24) | (16u << 16) | (static_cast<uint32_t>(i) << 6);
            f4 << "route add " << (a >> 24) << "." << ((a >> 16) & 255) << "." << ((a >> 8) & 255)
               << "." << (a & 255) << "/26 via 10.10.10.11 proto bird\n";
            char p6[64];
            std::snprintf(p6, sizeof(p6), "fd00:20:0:%x::/64", i);
            f6 << "route add " << p6 << " via fd00:10:10::11 proto bird\n";
        }
    }
    BurstResult r;
    const auto start = Clock::now();
    std::thread adder([&] {
        EXPECT_EQ(run("ip -n " + ns.name() + " -batch " + file4), 0);
        EXPECT_EQ(run("ip -n " + ns.name() + " -6 -batch " + file6), 0);
        r.add_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    });
    if (stall == Stall::kUntilAdded) {
        adder.join();
    } else if (stall == Stall::kBriefly) {
        // However fast `ip` is, a small ring fills in this time.
        std::this_thread::sleep_for(200ms);
    }
    const auto deadline = start + 60s;
    while (Clock::now() < deadline &&
           !(r.set.routes.size() == static_cast<size_t>(count) && !r.set.in_resync)) {
        auto e = c.next(1000ms);
        if (!e) {
            continue;
        }
        r.set.apply(*e);
        if (per_pop.count() > 0) {
            std::this_thread::sleep_for(per_pop);
        }
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (adder.joinable()) {
        adder.join();
    }
    std::remove(file4.c_str());
    std::remove(file6.c_str());
    return r;
}

TEST_F(NetlinkWatcherTest, BurstWithSlowConsumerLosesNothing) {
    constexpr int kRoutes = 10000;
    auto cfg = config_for(ns_);
    cfg.ring_capacity = 64;
    Consumer c(cfg);
    c.watcher().start();
    c.initial_dump();

    auto r = burst(ns_, c, kRoutes, 5us, Stall::kBriefly);
    ASSERT_EQ(r.set.routes.size(), static_cast<size_t>(kRoutes));
    std::set<std::string> held;
    for (const auto &[prefix, e] : r.set.routes) {
        held.insert(prefix);
    }
    EXPECT_EQ(held, kernel_bird_prefixes(ns_));
    if (c.watcher().resyncs() == 0) {
        for (const auto &[prefix, n] : r.set.adds) {
            ASSERT_EQ(n, 1) << prefix;
        }
    }
    EXPECT_GT(c.watcher().backpressure_waits(), 0u);
    std::printf(
        "burst: %d routes reached the consumer in %.3f s (%.0f routes/s; ip -batch took %.3f s), "
        "ring 64, 200 ms stall then 5 us per pop, back-pressure waits %lu, resyncs %lu\n",
        kRoutes, r.seconds, kRoutes / r.seconds, r.add_seconds,
        static_cast<unsigned long>(c.watcher().backpressure_waits()),
        static_cast<unsigned long>(c.watcher().resyncs()));
}

TEST_F(NetlinkWatcherTest, BurstAtFullSpeed) {
    constexpr int kRoutes = 10000;
    Consumer c(config_for(ns_));
    c.watcher().start();
    c.initial_dump();

    auto r = burst(ns_, c, kRoutes, 0us, Stall::kNone);
    ASSERT_EQ(r.set.routes.size(), static_cast<size_t>(kRoutes));
    EXPECT_EQ(c.watcher().resyncs(), 0u);
    std::printf(
        "burst: %d routes reached the consumer in %.3f s (%.0f routes/s; ip -batch took "
        "%.3f s), default ring, consumer at full speed\n",
        kRoutes, r.seconds, kRoutes / r.seconds, r.add_seconds);
}

TEST_F(NetlinkWatcherTest, OverrunLeadsToResyncWithTheKernelsSet) {
    constexpr int kRoutes = 2000;
    auto cfg = config_for(ns_);
    cfg.ring_capacity = 16;
    cfg.socket_buffer_bytes = 4096;  // overflows while the consumer stalls
    Consumer c(cfg);
    c.watcher().start();
    c.initial_dump();

    auto r = burst(ns_, c, kRoutes, 0us, Stall::kUntilAdded);
    EXPECT_GE(c.watcher().resyncs(), 1u);
    std::printf("overrun: %lu resyncs\n", static_cast<unsigned long>(c.watcher().resyncs()));
    std::set<std::string> held;
    for (const auto &[prefix, e] : r.set.routes) {
        held.insert(prefix);
    }
    EXPECT_EQ(held.size(), static_cast<size_t>(kRoutes));
    EXPECT_EQ(held, kernel_bird_prefixes(ns_));
}

TEST(NetlinkWatcherErrors, MissingNetnsIsNamed) {
    const std::string name = "fwdnl-" + std::to_string(getpid()) + "-missing";
    NetlinkWatcherConfig cfg;
    cfg.netns = name;
    NetlinkWatcher w(cfg, {});
    try {
        w.start();
        FAIL() << "start() did not throw";
    } catch (const NetlinkWatcherError &e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(name), std::string::npos) << what;
        EXPECT_NE(what.find("open"), std::string::npos) << what;
    }
}

}  // namespace
}  // namespace fwd::control
