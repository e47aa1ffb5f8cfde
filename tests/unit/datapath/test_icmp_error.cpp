// icmp4_error / icmp6_error through the whole pipeline: the drops that
// answer with an ICMP error, the error itself (RFC 792, RFC 1191, RFC 1812
// 4.3.2; RFC 4443), where it leaves, when it must not be sent (RFC 1812
// 4.3.2.7, RFC 4443 2.4 (e)) and the rate limit (RFC 4443 2.4 (f)).
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint8_t kDestUnreach4 = 3;
constexpr uint8_t kTimeExceeded4 = 11;
constexpr uint8_t kDestUnreach6 = 1;
constexpr uint8_t kTooBig6 = 2;
constexpr uint8_t kTimeExceeded6 = 3;

class IcmpError : public DatapathTest {
  protected:
    // One packet in, one error out of side s; the original dropped with reason.
    Frame expect_error(Side from, const PacketBuilder &in, DropReason reason, Side s, bool v6) {
        Sent out = run(from, in);
        EXPECT_EQ(drops(), want({{reason, 1}}));
        EXPECT_EQ(icmp_sent(), 1u);
        EXPECT_EQ(out.frames.size(), 1u);
        if (out.frames.empty()) {
            return Frame{s, {}};
        }
        check_eth_to(out.frames[0], s, v6 ? kTypeIp6 : kTypeIp4);
        return out.frames[0];
    }

    // No error may be sent: the original is dropped with reason and the
    // suppression is counted.
    void expect_suppressed(Side from, const PacketBuilder &in, DropReason reason) {
        Sent out = run(from, in);
        EXPECT_EQ(drops(), want({{reason, 1}, {DropReason::kIcmpErrorSuppressed, 1}}));
        EXPECT_TRUE(out.frames.empty()) << out.frames.size() << " frame(s) sent";
        EXPECT_EQ(icmp_sent(), 0u);
    }
};

// --- the errors ---

TEST_F(IcmpError, Ip4TtlOneGetsTimeExceeded) {
    // packet-build
    auto in = from_pod_a().ip4(kPodA4, kPodB4).ttl(1).udp(40000, 53).payload(100);
    // check: back to pod A, quoting the datagram as received
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp4TtlExceeded, Side::kPodA, false);
    check_icmp4_error(f, kTimeExceeded4, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip4TtlZeroGetsTimeExceeded) {
    auto in = from_pod_a().ip4(kPodA4, kVia4).ttl(0).tcp(40000, 80).payload(10);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp4TtlExceeded, Side::kPodA, false);
    check_icmp4_error(f, kTimeExceeded4, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6HopLimitOneGetsTimeExceeded) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).hop_limit(1).udp(40000, 53).payload(100);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp6HopLimitExceeded, Side::kPodA, true);
    check_icmp6_error(f, kTimeExceeded6, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6HopLimitZeroGetsTimeExceeded) {
    auto in = from_pod_a().ip6(kPodA6, kVia6).hop_limit(0).tcp(40000, 80);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp6HopLimitExceeded, Side::kPodA, true);
    check_icmp6_error(f, kTimeExceeded6, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip4DfTooBigGetsFragNeededWithTheNextHopMtu) {
    // packet-build: one byte over pod B's MTU (1450), DF set
    auto in = from_pod_a().ip4(kPodA4, kPodB4).df().udp(40000, 53).payload(kPodBMtu - 28 + 1);
    // check: code 4 with 1450 in the second half of the unused word; the
    // quote stops where the error reaches 576 bytes
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp4FragNeeded, Side::kPodA, false);
    check_icmp4_error(f, kDestUnreach4, 4, kPodBMtu, l3_of(in));
    ASSERT_TRUE(f.pkt.ip4.has_value());
    EXPECT_EQ(f.pkt.ip4->total_length, 576);
}

TEST_F(IcmpError, Ip6TooBigGetsPacketTooBigWithTheMtu) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).udp(40000, 53).payload(kPodBMtu - 48 + 1);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp6TooBig, Side::kPodA, true);
    check_icmp6_error(f, kTooBig6, 0, kPodBMtu, l3_of(in));
    ASSERT_TRUE(f.pkt.ip6.has_value());
    EXPECT_EQ(40u + f.pkt.ip6->payload_length, 1280u);
}

TEST_F(IcmpError, Ip4NoRouteGetsNetUnreachable) {
    // setup
    WithoutDefaultRoutes no_default;
    // packet-build
    auto in = from_pod_a().ip4(kPodA4, kElsewhere4).udp(40000, 53).payload(20);
    // check
    Frame f = expect_error(Side::kPodA, in, DropReason::kNoRoute, Side::kPodA, false);
    check_icmp4_error(f, kDestUnreach4, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6NoRouteGetsNoRouteUnreachable) {
    WithoutDefaultRoutes no_default;
    auto in = from_pod_a().ip6(kPodA6, kElsewhere6).udp(40000, 53).payload(20);
    Frame f = expect_error(Side::kPodA, in, DropReason::kNoRoute, Side::kPodA, true);
    check_icmp6_error(f, kDestUnreach6, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip4UnreachableRouteGetsHostUnreachable) {
    auto in = from_pod_a().ip4(kPodA4, kUnreachable4).tcp(40000, 80);
    Frame f = expect_error(Side::kPodA, in, DropReason::kRouteUnreachable, Side::kPodA, false);
    check_icmp4_error(f, kDestUnreach4, 1, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6UnreachableRouteGetsAddressUnreachable) {
    auto in = from_pod_a().ip6(kPodA6, kUnreachable6).tcp(40000, 80);
    Frame f = expect_error(Side::kPodA, in, DropReason::kRouteUnreachable, Side::kPodA, true);
    check_icmp6_error(f, kDestUnreach6, 3, 0, l3_of(in));
}

// --- where the error goes: the route to the original source ---

TEST_F(IcmpError, Ip4ErrorLeavesByTheRouteToTheSource) {
    // packet-build: from a host behind the uplink (10.65.1.0/26), arriving
    // on the uplink, expiring on its way to pod B
    auto in = from_uplink().ip4(kVia4, kPodB4).ttl(1).udp(40000, 53).payload(8);
    // check: out of the uplink to the router, not out of pod B
    Frame f = expect_error(Side::kUplink, in, DropReason::kIp4TtlExceeded, Side::kUplink, false);
    check_icmp4_error(f, kTimeExceeded4, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip4ErrorAboutAPodPacketArrivingElsewhereGoesToThePod) {
    // A packet from pod B's address arriving on pod A's port: the error
    // follows the route to 10.65.0.3, i.e. pod B's port.
    auto in = from_pod_a().ip4(kPodB4, kUnreachable4).udp(1, 2);
    Frame f = expect_error(Side::kPodA, in, DropReason::kRouteUnreachable, Side::kPodB, false);
    check_icmp4_error(f, kDestUnreach4, 1, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6ErrorLeavesByTheRouteToTheSource) {
    auto in = from_uplink().ip6(kElsewhere6, kPodA6).hop_limit(1).udp(40000, 53).payload(8);
    Frame f =
        expect_error(Side::kUplink, in, DropReason::kIp6HopLimitExceeded, Side::kUplink, true);
    check_icmp6_error(f, kTimeExceeded6, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6ErrorAboutAPodPacketArrivingElsewhereGoesToThePod) {
    auto in = from_pod_a().ip6(kPodB6, kUnreachable6).udp(1, 2);
    Frame f = expect_error(Side::kPodA, in, DropReason::kRouteUnreachable, Side::kPodB, true);
    check_icmp6_error(f, kDestUnreach6, 3, 0, l3_of(in));
}

// --- informational ICMP and first fragments do get errors ---

TEST_F(IcmpError, Ip4EchoRequestWithTtlOneGetsAnError) {
    auto in = from_pod_a().ip4(kPodA4, kPodB4).ttl(1).echo_request().payload(56);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp4TtlExceeded, Side::kPodA, false);
    check_icmp4_error(f, kTimeExceeded4, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6EchoRequestWithHopLimitOneGetsAnError) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).hop_limit(1).echo_request().payload(56);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp6HopLimitExceeded, Side::kPodA, true);
    check_icmp6_error(f, kTimeExceeded6, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip4FirstFragmentGetsAnError) {
    auto in = from_pod_a().ip4(kPodA4, kPodB4).ttl(1).mf().udp(1, 2).payload(64);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp4TtlExceeded, Side::kPodA, false);
    check_icmp4_error(f, kTimeExceeded4, 0, 0, l3_of(in));
}

TEST_F(IcmpError, Ip6FirstFragmentGetsAnError) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).hop_limit(1).fragment(0, true).udp(1, 2).payload(64);
    Frame f = expect_error(Side::kPodA, in, DropReason::kIp6HopLimitExceeded, Side::kPodA, true);
    check_icmp6_error(f, kTimeExceeded6, 0, 0, l3_of(in));
}

// --- no error about an error, a later fragment, or an unspecified source ---

TEST_F(IcmpError, Ip4NoErrorAboutAnIcmpError) {
    // packet-build: a destination unreachable passing through, expiring here
    auto in = from_pod_a().ip4(kPodA4, kPodB4).ttl(1).icmp(kDestUnreach4, 1).payload(28);
    // check
    expect_suppressed(Side::kPodA, in, DropReason::kIp4TtlExceeded);
}

TEST_F(IcmpError, Ip6NoErrorAboutAnIcmpError) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).hop_limit(1).icmp(kDestUnreach6, 3).payload(48);
    expect_suppressed(Side::kPodA, in, DropReason::kIp6HopLimitExceeded);
}

TEST_F(IcmpError, Ip4NoErrorAboutALaterFragment) {
    auto in =
        from_pod_a().ip4(kPodA4, kPodB4).ttl(1).frag_offset(100).next_proto(kProtoUdp).payload(64);
    expect_suppressed(Side::kPodA, in, DropReason::kIp4TtlExceeded);
}

TEST_F(IcmpError, Ip4NoFragNeededAboutALaterFragment) {
    auto in = from_pod_a()
                  .ip4(kPodA4, kPodB4)
                  .df()
                  .frag_offset(100)
                  .next_proto(kProtoUdp)
                  .payload(kPodBMtu);
    expect_suppressed(Side::kPodA, in, DropReason::kIp4FragNeeded);
}

TEST_F(IcmpError, Ip6NoErrorAboutALaterFragment) {
    auto in = from_pod_a()
                  .ip6(kPodA6, kPodB6)
                  .hop_limit(1)
                  .fragment(100, true)
                  .next_proto(kProtoUdp)
                  .payload(64);
    expect_suppressed(Side::kPodA, in, DropReason::kIp6HopLimitExceeded);
}

// Multicast and broadcast sources never get this far (ip4_bad_source,
// ip6_bad_source); the unspecified source is the one that does.
TEST_F(IcmpError, Ip4NoErrorToTheUnspecifiedSource) {
    auto in = from_pod_a().ip4(0, kPodB4).ttl(1).udp(68, 67).payload(20);
    expect_suppressed(Side::kPodA, in, DropReason::kIp4TtlExceeded);
}

TEST_F(IcmpError, Ip6NoErrorToTheUnspecifiedSource) {
    auto in = from_pod_a().ip6(Ip6{}, kPodB6).hop_limit(1).udp(546, 547).payload(20);
    expect_suppressed(Side::kPodA, in, DropReason::kIp6HopLimitExceeded);
}

// An error whose own destination has no route is dropped there; it must not
// breed an error about itself (the process() contract: "errors about them
// are suppressed").
TEST_F(IcmpError, Ip4NoErrorAboutAnUnroutableError) {
    // setup: no default route, so the source below is unreachable
    WithoutDefaultRoutes no_default;
    // packet-build
    auto in = from_uplink().ip4(ip4("203.0.113.5"), kPodA4).ttl(1).udp(40000, 53).payload(8);
    Sent out = run(Side::kUplink, in);
    // check: the original expired, its error found no route, and that is all
    EXPECT_EQ(drops(), want({{DropReason::kIp4TtlExceeded, 1},
                             {DropReason::kNoRoute, 1},
                             {DropReason::kIcmpErrorSuppressed, 1}}));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(worker().gen4_.n, 0) << "an error about the error was queued";
}

TEST_F(IcmpError, Ip6NoErrorAboutAnUnroutableError) {
    WithoutDefaultRoutes no_default;
    auto in =
        from_uplink().ip6(ip6("2001:db8:99::5"), kPodA6).hop_limit(1).udp(40000, 53).payload(8);
    Sent out = run(Side::kUplink, in);
    EXPECT_EQ(drops(), want({{DropReason::kIp6HopLimitExceeded, 1},
                             {DropReason::kNoRoute, 1},
                             {DropReason::kIcmpErrorSuppressed, 1}}));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(worker().gen6_.n, 0) << "an error about the error was queued";
}

// --- rate limit ---

// icmp_per_sec 5: the worker's bucket holds max(5 / 10, 10) = 10 tokens and
// gains one every 200 ms, far longer than one test burst takes.
class IcmpRateLimit : public IcmpError {
  protected:
    uint32_t icmp_per_sec() const override { return 5; }
    static constexpr uint64_t kBucket = 10;
};

TEST_F(IcmpRateLimit, Ip4ErrorsBeyondTheBucketAreSuppressed) {
    // packet-build: 16 expiring datagrams in one burst
    std::vector<std::pair<Side, PacketBuilder>> in;
    for (uint16_t i = 0; i < 16; i++) {
        in.emplace_back(Side::kPodA,
                        from_pod_a().ip4(kPodA4, kPodB4).ttl(1).ip_id(i).udp(1, 2).payload(8));
    }
    Sent out = run(in);
    // check: the first ten get their error, in order
    EXPECT_EQ(drops(), want({{DropReason::kIp4TtlExceeded, 16},
                             {DropReason::kIcmpRateLimited, 16 - kBucket}}));
    EXPECT_EQ(icmp_sent(), kBucket);
    ASSERT_EQ(out.frames.size(), kBucket);
    for (size_t i = 0; i < kBucket; i++) {
        check_icmp4_error(out.frames[i], kTimeExceeded4, 0, 0, l3_of(in[i].second));
    }
}

TEST_F(IcmpRateLimit, Ip6ErrorsBeyondTheBucketAreSuppressed) {
    std::vector<std::pair<Side, PacketBuilder>> in;
    for (uint16_t i = 0; i < 12; i++) {
        in.emplace_back(Side::kPodB,
                        from_pod_b().ip6(kPodB6, kPodA6).hop_limit(1).udp(i, 2).payload(8));
    }
    Sent out = run(in);
    EXPECT_EQ(drops(), want({{DropReason::kIp6HopLimitExceeded, 12},
                             {DropReason::kIcmpRateLimited, 12 - kBucket}}));
    ASSERT_EQ(out.frames.size(), kBucket);
    for (size_t i = 0; i < kBucket; i++) {
        check_eth_to(out.frames[i], Side::kPodB, kTypeIp6);
        check_icmp6_error(out.frames[i], kTimeExceeded6, 0, 0, l3_of(in[i].second));
    }
}

TEST_F(IcmpRateLimit, BothFamiliesShareOneBucketAcrossBursts) {
    std::vector<std::pair<Side, PacketBuilder>> v4, v6;
    for (uint16_t i = 0; i < 6; i++) {
        v4.emplace_back(Side::kPodA, from_pod_a().ip4(kPodA4, kUnreachable4).udp(i, 2));
        v6.emplace_back(Side::kPodA, from_pod_a().ip6(kPodA6, kUnreachable6).udp(i, 2));
    }
    Sent out4 = run(v4);
    Sent out6 = run(v6);
    EXPECT_EQ(out4.frames.size(), 6u);
    EXPECT_EQ(out6.frames.size(), kBucket - 6);
    EXPECT_EQ(drops(), want({{DropReason::kRouteUnreachable, 12},
                             {DropReason::kIcmpRateLimited, 12 - kBucket}}));
}

class IcmpErrorsOff : public IcmpError {
  protected:
    uint32_t icmp_per_sec() const override { return 0; }
};

TEST_F(IcmpErrorsOff, RateZeroSendsNoErrors) {
    auto in = from_pod_a().ip4(kPodA4, kPodB4).ttl(1).udp(1, 2);
    Sent out = run(Side::kPodA, in);
    EXPECT_EQ(drops(), want({{DropReason::kIp4TtlExceeded, 1}, {DropReason::kIcmpRateLimited, 1}}));
    EXPECT_TRUE(out.frames.empty());
}

}  // namespace
}  // namespace fwd::dp::test
