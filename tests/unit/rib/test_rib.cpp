// The RIB's coalescing, ordering, precedence and resync, and the event ring's
// back-pressure. Pure control-plane logic: no EAL.
#include <gtest/gtest.h>

#include <thread>

#include "fwd/control/rib.hpp"
#include "fwd/control/ring.hpp"

using namespace fwd;
using namespace fwd::control;

namespace {
AnyPrefix P(const char *s) {
    auto p = parse_any_prefix(s);
    EXPECT_TRUE(p.has_value()) << s;
    return *p;
}
RouteTarget via(const char *a) {
    return RouteTarget::via({*net::IpAddr::parse(a)});
}
}  // namespace

TEST(Rib, AddThenFlushGivesOneChange) {
    Rib r;
    EXPECT_TRUE(r.set(P("10.244.2.0/26"), RouteSource::kBgp, via("10.0.0.2")));
    auto c = r.flush();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(prefix_str(c[0].prefix), "10.244.2.0/26");
    ASSERT_TRUE(c[0].target);
    EXPECT_EQ(*c[0].target, via("10.0.0.2"));
    EXPECT_FALSE(c[0].previous);
    EXPECT_EQ(c[0].source, RouteSource::kBgp);
    EXPECT_TRUE(r.flush().empty());
    EXPECT_EQ(r.installed(net::Family::kIp4), 1u);
}

TEST(Rib, AddAndWithdrawInOneBatchCoalescesToNothing) {
    Rib r;
    r.set(P("fd00:244::2:0/122"), RouteSource::kBgp, via("fd00::2"));
    r.set(P("fd00:244::2:0/122"), RouteSource::kBgp, via("fd00::3"));
    r.remove(P("fd00:244::2:0/122"), RouteSource::kBgp);
    EXPECT_TRUE(r.flush().empty());
    EXPECT_EQ(r.size(RouteSource::kBgp), 0u);
    EXPECT_EQ(r.installed(net::Family::kIp6), 0u);
}

TEST(Rib, BurstOfReplacementsKeepsTheLastInArrivalOrder) {
    Rib r;
    r.set(P("10.1.0.0/16"), RouteSource::kBgp, via("10.0.0.1"));
    r.set(P("10.2.0.0/16"), RouteSource::kBgp, via("10.0.0.1"));
    r.flush();
    // 1000 flaps of 10.1/16 and one change of 10.2/16, then a new 10.3/16
    for (int i = 0; i < 1000; i++) {
        r.set(P("10.1.0.0/16"), RouteSource::kBgp, via(i % 2 ? "10.0.0.1" : "10.0.0.9"));
    }
    r.set(P("10.1.0.0/16"), RouteSource::kBgp, via("10.0.0.7"));
    r.set(P("10.2.0.0/16"), RouteSource::kBgp, RouteTarget::blackhole());
    r.set(P("10.3.0.0/16"), RouteSource::kBgp, via("10.0.0.3"));
    auto c = r.flush();
    ASSERT_EQ(c.size(), 3u);
    // first-touch order, last value wins, previous is what the FIB had
    EXPECT_EQ(prefix_str(c[0].prefix), "10.1.0.0/16");
    EXPECT_EQ(*c[0].target, via("10.0.0.7"));
    EXPECT_EQ(*c[0].previous, via("10.0.0.1"));
    EXPECT_EQ(prefix_str(c[1].prefix), "10.2.0.0/16");
    EXPECT_EQ(c[1].target->kind, RouteTarget::Kind::kBlackhole);
    EXPECT_EQ(prefix_str(c[2].prefix), "10.3.0.0/16");
}

TEST(Rib, FlapBackToTheInstalledValueIsNoChange) {
    Rib r;
    r.set(P("10.1.0.0/16"), RouteSource::kBgp, via("10.0.0.1"));
    r.flush();
    r.set(P("10.1.0.0/16"), RouteSource::kBgp, via("10.0.0.2"));
    r.remove(P("10.1.0.0/16"), RouteSource::kBgp);
    r.set(P("10.1.0.0/16"), RouteSource::kBgp, via("10.0.0.1"));
    EXPECT_TRUE(r.flush().empty());
}

TEST(Rib, PrecedenceEndpointStaticIpamBgp) {
    Rib r;
    auto p = P("10.244.1.5/32");
    r.set(p, RouteSource::kBgp, via("10.0.0.2"));
    r.set(p, RouteSource::kIpam, RouteTarget::blackhole());
    auto c = r.flush();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].source, RouteSource::kIpam);
    r.set(p, RouteSource::kEndpoint, RouteTarget::pod(42));
    c = r.flush();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].target->nh, 42u);
    EXPECT_EQ(c[0].previous->kind, RouteTarget::Kind::kBlackhole);
    // a lower-precedence change under a winner is invisible to the FIB
    r.set(p, RouteSource::kBgp, via("10.0.0.3"));
    EXPECT_TRUE(r.flush().empty());
    // the winner leaves: the next one takes over
    r.remove(p, RouteSource::kEndpoint);
    c = r.flush();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].source, RouteSource::kIpam);
    r.remove(p, RouteSource::kIpam);
    c = r.flush();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(*c[0].target, via("10.0.0.3"));
    auto l = r.list();
    ASSERT_EQ(l.size(), 1u);
    EXPECT_TRUE(l[0].active);
    r.remove(p, RouteSource::kBgp);
    c = r.flush();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_FALSE(c[0].target);
    EXPECT_TRUE(r.list().empty());
}

TEST(Rib, ResyncRemovesOnlyWhatTheSourceNoLongerHas) {
    Rib r;
    for (int i = 0; i < 10; i++) {
        r.set(P(("10.244." + std::to_string(i) + ".0/26").c_str()), RouteSource::kBgp,
              via("10.0.0.2"));
    }
    r.set(P("10.99.0.0/16"), RouteSource::kStatic, via("10.0.0.1"));
    r.flush();
    r.begin_resync(RouteSource::kBgp);
    for (int i = 0; i < 10; i += 2) {  // the kernel still has the even ones
        r.set(P(("10.244." + std::to_string(i) + ".0/26").c_str()), RouteSource::kBgp,
              via("10.0.0.2"));
    }
    EXPECT_EQ(r.end_resync(RouteSource::kBgp), 5u);
    auto c = r.flush();
    ASSERT_EQ(c.size(), 5u);
    for (const auto &ch : c) {
        EXPECT_FALSE(ch.target);
    }
    EXPECT_EQ(r.size(RouteSource::kBgp), 5u);
    EXPECT_EQ(r.size(RouteSource::kStatic), 1u);
    EXPECT_EQ(r.end_resync(RouteSource::kBgp), 0u);  // no resync open
}

TEST(Rib, ViaTargetsAreNormalisedSoPathOrderIsNoChange) {
    Rib r;
    auto a = *net::IpAddr::parse("10.0.0.2"), b = *net::IpAddr::parse("10.0.0.3");
    r.set(P("10.5.0.0/16"), RouteSource::kBgp, RouteTarget::via({a, b}));
    r.flush();
    r.set(P("10.5.0.0/16"), RouteSource::kBgp, RouteTarget::via({b, a, b}));
    EXPECT_TRUE(r.flush().empty());
    EXPECT_EQ(r.get(P("10.5.0.0/16"), RouteSource::kBgp)->vias.size(), 2u);
}

TEST(Rib, MarkNotInstalledMakesTheNextFlushRetry) {
    Rib r;
    r.set(P("10.5.0.0/16"), RouteSource::kStatic, RouteTarget::blackhole());
    auto c = r.flush();
    ASSERT_EQ(c.size(), 1u);
    r.mark_not_installed(c[0].prefix);
    EXPECT_EQ(r.installed(net::Family::kIp4), 0u);
    r.remove(P("10.5.0.0/16"), RouteSource::kStatic);
    EXPECT_TRUE(r.flush().empty());  // nothing installed, nothing to delete
}

TEST(Rib, ManyRoutesBothFamilies) {
    Rib r;
    for (uint32_t i = 0; i < 100000; i++) {
        net::Prefix4 p4{net::Ip4Addr::from_host((10u << 24) | (i << 6)), 26};
        r.set(p4, RouteSource::kBgp, via("10.0.0.2"));
    }
    for (uint32_t i = 0; i < 100000; i++) {
        auto a = *net::Ip6Addr::parse("fd00:244::");
        auto b = a.bytes();
        b[12] = static_cast<uint8_t>(i >> 10);
        b[13] = static_cast<uint8_t>(i >> 2);
        b[14] = static_cast<uint8_t>((i & 3) << 6);
        r.set(net::Prefix6{net::Ip6Addr::from_bytes(b.data()), 122}, RouteSource::kBgp,
              via("fd00::2"));
    }
    EXPECT_EQ(r.flush().size(), 200000u);
    EXPECT_EQ(r.installed(net::Family::kIp4), 100000u);
    EXPECT_EQ(r.installed(net::Family::kIp6), 100000u);
}

TEST(EventRing, FullRingIsBackPressureNotLossAndOrderHolds) {
    EventRing<uint64_t, 64> ring;
    constexpr uint64_t kN = 20000;
    std::atomic<uint64_t> wakes{0};
    std::thread producer([&] {
        for (uint64_t i = 1; i <= kN; i++) {
            ASSERT_TRUE(ring.push_wait(
                i, [&] { wakes.fetch_add(1); }, [] { return false; }));
        }
    });
    uint64_t expect = 1;
    while (expect <= kN) {
        uint64_t v;
        if (ring.pop(v)) {
            ASSERT_EQ(v, expect);
            expect++;
            if (expect % 1000 == 0) {  // a slow consumer now and then
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
        }
    }
    producer.join();
    EXPECT_GT(ring.full_waits(), 0u);
    EXPECT_GE(wakes.load(), kN);
    uint64_t v;
    EXPECT_FALSE(ring.pop(v));
}

TEST(EventRing, AProducerWaitingOnAFullRingGivesUpOnlyOnStop) {
    EventRing<int, 4> ring;
    for (int i = 0; i < 4; i++) {
        ASSERT_TRUE(ring.try_push(i));
    }
    EXPECT_FALSE(ring.try_push(9));
    std::atomic<bool> stop{false};
    std::thread t([&] { stop = true; });
    bool pushed = ring.push_wait(
        9, [] {}, [&] { return stop.load(); });
    t.join();
    EXPECT_FALSE(pushed);
    EXPECT_GE(ring.full_waits(), 1u);
    int v;
    for (int i = 0; i < 4; i++) {
        ASSERT_TRUE(ring.pop(v));
        EXPECT_EQ(v, i);
    }
}
