// route4 / route6 and l2_rewrite4 / l2_rewrite6: what is forwarded, where
// to, and that only the TTL / hop limit, its checksum and the Ethernet
// header change on the way (RFC 1812 5.3.1, RFC 1624, RFC 8200 3).
#include <random>

#include "fwd/net/addr.hpp"
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

constexpr size_t kIp4TtlOff = 8;
constexpr size_t kIp4CsumOff = 10;
constexpr size_t kIp6HopLimitOff = 7;

// The IPv4 header checksum of a header, computed from scratch.
uint16_t full_ip4_checksum(std::span<const uint8_t> l3) {
    size_t hlen = (l3[0] & 0xf) * 4u;
    Bytes h(l3.begin(), l3.begin() + static_cast<long>(hlen));
    h[kIp4CsumOff] = h[kIp4CsumOff + 1] = 0;
    return inet_checksum(h);
}

// Every byte of the IP packet is the same except at the given offsets.
::testing::AssertionResult same_except(const Bytes &in, std::span<const uint8_t> out,
                                       std::initializer_list<size_t> skip) {
    if (in.size() != out.size()) {
        return ::testing::AssertionFailure() << "length " << out.size() << ", sent " << in.size();
    }
    for (size_t i = 0; i < in.size(); i++) {
        if (std::find(skip.begin(), skip.end(), i) != skip.end()) {
            continue;
        }
        if (in[i] != out[i]) {
            return ::testing::AssertionFailure()
                   << "byte " << i << " changed: " << int{in[i]} << " -> " << int{out[i]};
        }
    }
    return ::testing::AssertionSuccess();
}

class Forward : public DatapathTest {
  protected:
    // in went out of side s as a forwarded IPv4 packet: TTL - 1, checksum
    // equal to a full recompute, everything else untouched.
    void check_forwarded4(const Frame &f, Side s, const PacketBuilder &in) {
        check_eth_to(f, s, kTypeIp4);
        EXPECT_FALSE(f.pkt.eth.vlan_tci.has_value());
        Bytes l3 = l3_of(in);
        auto out = f.pkt.l3();
        ASSERT_TRUE(f.pkt.ip4.has_value());
        EXPECT_EQ(f.pkt.frame.size(), 14 + l3.size()) << "frame length (padding trimmed)";
        EXPECT_EQ(out[kIp4TtlOff], l3[kIp4TtlOff] - 1) << "TTL";
        EXPECT_EQ(f.pkt.ip4->checksum, full_ip4_checksum(out)) << "incremental checksum update";
        EXPECT_TRUE(f.pkt.ip4->header_checksum_ok);
        EXPECT_TRUE(same_except(l3, out, {kIp4TtlOff, kIp4CsumOff, kIp4CsumOff + 1}));
    }

    void check_forwarded6(const Frame &f, Side s, const PacketBuilder &in) {
        check_eth_to(f, s, kTypeIp6);
        EXPECT_FALSE(f.pkt.eth.vlan_tci.has_value());
        Bytes l3 = l3_of(in);
        auto out = f.pkt.l3();
        ASSERT_TRUE(f.pkt.ip6.has_value());
        EXPECT_EQ(f.pkt.frame.size(), 14 + l3.size()) << "frame length (padding trimmed)";
        EXPECT_EQ(out[kIp6HopLimitOff], l3[kIp6HopLimitOff] - 1) << "hop limit";
        EXPECT_TRUE(same_except(l3, out, {kIp6HopLimitOff}));
    }

    // Runs one packet and expects it forwarded out of side s, nothing dropped.
    void expect_forwarded(Side from, const PacketBuilder &in, Side s, bool v6) {
        Sent out = run(from, in);
        EXPECT_EQ(drops(), want({}));
        ASSERT_EQ(out.frames.size(), 1u);
        if (v6) {
            check_forwarded6(out.frames[0], s, in);
        } else {
            check_forwarded4(out.frames[0], s, in);
        }
    }
};

TEST_F(Forward, Ip4PodToPod) {
    // packet-build
    auto in = from_pod_a()
                  .ip4(kPodA4, kPodB4)
                  .tos(0x10)
                  .ip_id(0x5555)
                  .df()
                  .ttl(64)
                  .udp(40000, 8080)
                  .payload(200);
    // check: out of B's port, to B's MAC, from ee:ee:ee:ee:ee:ee, TTL 63,
    // UDP checksum still right (payload untouched)
    Sent out = run(Side::kPodA, in);
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 1u);
    check_forwarded4(out.frames[0], Side::kPodB, in);
    EXPECT_EQ(out.frames[0].pkt.ip4->ttl, 63);
    EXPECT_TRUE(out.frames[0].pkt.l4_checksum_ok());
    EXPECT_EQ(tx_packets(), 1u);
}

TEST_F(Forward, Ip6PodToPod) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).hop_limit(64).tcp(40000, 443, 0x18).payload(300);
    Sent out = run(Side::kPodA, in);
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 1u);
    check_forwarded6(out.frames[0], Side::kPodB, in);
    EXPECT_EQ(out.frames[0].pkt.ip6->hop_limit, 63);
    EXPECT_TRUE(out.frames[0].pkt.l4_checksum_ok());
}

TEST_F(Forward, TtlTwoIsStillForwarded) {
    expect_forwarded(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).ttl(2).udp(1, 2), Side::kPodB,
                     false);
    expect_forwarded(Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).hop_limit(2).udp(1, 2),
                     Side::kPodB, true);
}

// Property: for any header, the incremental TTL update (RFC 1624) gives the
// checksum a full recompute gives. Seeded, so a failure replays.
TEST_F(Forward, Ip4IncrementalChecksumMatchesFullRecomputeForRandomHeaders) {
    constexpr unsigned kSeed = 20240611;
    constexpr int kBursts = 80;
    std::mt19937 rng(kSeed);
    auto rnd = [&](uint32_t lo, uint32_t hi) {
        return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
    };
    SCOPED_TRACE("seed " + std::to_string(kSeed));
    for (int burst = 0; burst < kBursts; burst++) {
        // packet-build: 32 random headers towards pod B
        std::vector<std::pair<Side, PacketBuilder>> in;
        for (int i = 0; i < kBurst; i++) {
            // Any valid source: 1-126 or 128-223 in the first octet.
            uint32_t top = rnd(1, 222);
            uint32_t src = ((top >= 127 ? top + 1 : top) << 24) | rnd(0, 0xffffff);
            auto b = from_pod_a().ip4(src, kPodB4);
            b.ttl(static_cast<uint8_t>(rnd(2, 255)))
                .tos(static_cast<uint8_t>(rnd(0, 255)))
                .ip_id(static_cast<uint16_t>(rnd(0, 0xffff)))
                .next_proto(static_cast<uint8_t>(rnd(0, 255)));
            if (rnd(0, 1)) {
                b.df();
            }
            Bytes opts(rnd(0, 10) * 4);
            for (auto &o : opts) {
                o = static_cast<uint8_t>(rnd(0, 255));
            }
            b.ip4_options(opts).payload(rnd(0, 64));
            in.emplace_back(Side::kPodA, b);
        }
        Sent out = run(in);
        // check
        ASSERT_EQ(out.frames.size(), in.size());
        for (size_t i = 0; i < in.size(); i++) {
            SCOPED_TRACE("burst " + std::to_string(burst) + " packet " + std::to_string(i));
            check_forwarded4(out.frames[i], Side::kPodB, in[i].second);
        }
    }
    EXPECT_EQ(drops(), want({}));
}

TEST_F(Forward, Ip6HopLimitForRandomHeaders) {
    constexpr unsigned kSeed = 8200;
    std::mt19937 rng(kSeed);
    auto rnd = [&](uint32_t lo, uint32_t hi) {
        return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
    };
    SCOPED_TRACE("seed " + std::to_string(kSeed));
    for (int burst = 0; burst < 20; burst++) {
        std::vector<std::pair<Side, PacketBuilder>> in;
        for (int i = 0; i < kBurst; i++) {
            Ip6 src = kVia6;
            src[15] = static_cast<uint8_t>(rnd(0, 255));
            auto b = from_uplink().ip6(src, kPodA6).hop_limit(static_cast<uint8_t>(rnd(2, 255)));
            b.udp(static_cast<uint16_t>(rnd(1, 65535)), 53).payload(rnd(0, 200));
            in.emplace_back(Side::kUplink, b);
        }
        Sent out = run(in);
        ASSERT_EQ(out.frames.size(), in.size());
        for (size_t i = 0; i < in.size(); i++) {
            SCOPED_TRACE("burst " + std::to_string(burst) + " packet " + std::to_string(i));
            check_forwarded6(out.frames[i], Side::kPodA, in[i].second);
        }
    }
    EXPECT_EQ(drops(), want({}));
}

TEST_F(Forward, Ip4EthernetPaddingIsTrimmed) {
    // packet-build: 32 bytes of IP in a minimum-size (60 byte) frame
    auto in = from_pod_a().ip4(kPodA4, kPodB4).udp(1000, 2000).payload(4).pad_to(60);
    Sent out = run(Side::kPodA, in);
    // check
    ASSERT_EQ(out.frames.size(), 1u);
    EXPECT_EQ(out.frames[0].pkt.frame.size(), 14u + 32);
    check_forwarded4(out.frames[0], Side::kPodB, in);
}

TEST_F(Forward, Ip6EthernetPaddingIsTrimmed) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).udp(1000, 2000).payload(2).pad_to(128);
    Sent out = run(Side::kPodA, in);
    ASSERT_EQ(out.frames.size(), 1u);
    EXPECT_EQ(out.frames[0].pkt.frame.size(), 14u + 40 + 10);
    check_forwarded6(out.frames[0], Side::kPodB, in);
}

TEST_F(Forward, Ip4OptionsPassIntact) {
    // packet-build: router alert, NOP, record route with one free slot
    Bytes opts = {0x94, 0x04, 0x00, 0x00, 0x01, 0x07, 0x07, 0x04, 0, 0, 0, 0};
    auto in = from_pod_a().ip4(kPodA4, kPodB4).ip4_options(opts).udp(1, 2).payload(40);
    Sent out = run(Side::kPodA, in);
    // check
    ASSERT_EQ(out.frames.size(), 1u);
    EXPECT_EQ(out.frames[0].pkt.ip4->ihl, 8);
    check_forwarded4(out.frames[0], Side::kPodB, in);
    EXPECT_TRUE(out.frames[0].pkt.l4_checksum_ok());
}

TEST_F(Forward, Ip6ExtensionHeadersPassIntact) {
    // packet-build: hop-by-hop, destination options, routing (nothing left
    // to do), fragment (first), destination options, then UDP
    auto in = from_pod_a()
                  .ip6(kPodA6, kPodB6)
                  .hop_by_hop(16)
                  .dest_opts()
                  .routing(0)
                  .fragment(0, true)
                  .dest_opts(24)
                  .udp(1, 2)
                  .payload(64);
    Sent out = run(Side::kPodA, in);
    // check
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 1u);
    check_forwarded6(out.frames[0], Side::kPodB, in);
    std::vector<uint8_t> chain = {kExtHopByHop, kExtDestOpts, kExtRouting, kExtFragment,
                                  kExtDestOpts};
    EXPECT_EQ(out.frames[0].pkt.ip6->ext_types, chain);
}

TEST_F(Forward, Ip6EightExtensionHeadersAreTheLimit) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6);
    for (int i = 0; i < 8; i++) {
        in.dest_opts();
    }
    in.udp(1, 2).payload(8);
    expect_forwarded(Side::kPodA, in, Side::kPodB, true);
}

TEST_F(Forward, Ip4FragmentsFirstAndLater) {
    // packet-build: the first fragment carries UDP and 1376 bytes of data
    // (172 units), the next one starts at offset 172 with data only
    auto first = from_pod_a().ip4(kPodA4, kPodB4).ip_id(77).mf().udp(1000, 2000).payload(1368);
    auto later = from_pod_a()
                     .ip4(kPodA4, kPodB4)
                     .ip_id(77)
                     .frag_offset(172)
                     .next_proto(kProtoUdp)
                     .payload(500);
    Sent out = run({{Side::kPodA, first}, {Side::kPodA, later}});
    // check: both forwarded as they are, in order
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 2u);
    check_forwarded4(out.frames[0], Side::kPodB, first);
    check_forwarded4(out.frames[1], Side::kPodB, later);
}

TEST_F(Forward, Ip6FragmentsFirstAndLater) {
    auto first =
        from_pod_a().ip6(kPodA6, kPodB6).fragment(0, true, 9).udp(1000, 2000).payload(1000);
    auto later =
        from_pod_a().ip6(kPodA6, kPodB6).fragment(126, false, 9).next_proto(kProtoUdp).payload(300);
    Sent out = run({{Side::kPodA, first}, {Side::kPodA, later}});
    EXPECT_EQ(drops(), want({}));
    ASSERT_EQ(out.frames.size(), 2u);
    check_forwarded6(out.frames[0], Side::kPodB, first);
    check_forwarded6(out.frames[1], Side::kPodB, later);
}

TEST_F(Forward, ExactlyTheMtuWithDfIsForwarded) {
    expect_forwarded(Side::kPodA,
                     from_pod_a().ip4(kPodA4, kPodB4).df().udp(1, 2).payload(kPodBMtu - 28),
                     Side::kPodB, false);
    expect_forwarded(Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2).payload(kPodBMtu - 48),
                     Side::kPodB, true);
}

TEST_F(Forward, Ip4ViaTheUplinkSlash26) {
    expect_forwarded(Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).udp(1, 2).payload(30),
                     Side::kUplink, false);
}

TEST_F(Forward, Ip6ViaTheUplinkSlash122) {
    expect_forwarded(Side::kPodA, from_pod_a().ip6(kPodA6, kVia6).udp(1, 2).payload(30),
                     Side::kUplink, true);
}

// The control thread installs 0.0.0.0/0 and ::/0 from the configuration
// (configs/node-2workers.json) like any other prefix.
TEST_F(Forward, DefaultRoutesAreAcceptedByTheTables) {
    EXPECT_EQ(lab().defaults_rc(), 0) << "Tables::add4 / add6 of 0.0.0.0/0 and ::/0";
    Tables &t = lab().tables();
    EXPECT_EQ(t.add4(net::Prefix4{net::Ip4Addr::from_host(0), 0}, 1), 0) << "add4 0.0.0.0/0";
    EXPECT_EQ(t.del4(net::Prefix4{net::Ip4Addr::from_host(0), 0}), 0) << "del4 0.0.0.0/0";
    EXPECT_EQ(t.add6(net::Prefix6{net::Ip6Addr{}, 0}, 1), 0) << "add6 ::/0";
    EXPECT_EQ(t.del6(net::Prefix6{net::Ip6Addr{}, 0}), 0) << "del6 ::/0";
    // Back to the lab's defaults.
    if (lab().defaults_rc() == 0) {
        EXPECT_EQ(lab().add_defaults(), 0);
    }
}

TEST_F(Forward, Ip4DefaultRoute) {
    expect_forwarded(Side::kPodB, from_pod_b().ip4(kPodB4, kBeyondVia4).udp(1, 2), Side::kUplink,
                     false);
    expect_forwarded(Side::kPodB, from_pod_b().ip4(kPodB4, kElsewhere4).tcp(1, 2), Side::kUplink,
                     false);
}

TEST_F(Forward, Ip6DefaultRoute) {
    expect_forwarded(Side::kPodB, from_pod_b().ip6(kPodB6, kBeyondVia6).udp(1, 2), Side::kUplink,
                     true);
    expect_forwarded(Side::kPodB, from_pod_b().ip6(kPodB6, kElsewhere6).tcp(1, 2), Side::kUplink,
                     true);
}

TEST_F(Forward, UplinkToPods) {
    expect_forwarded(Side::kUplink, from_uplink().ip4(kElsewhere4, kPodA4).tcp(443, 40000),
                     Side::kPodA, false);
    expect_forwarded(Side::kUplink, from_uplink().ip6(kElsewhere6, kPodB6).tcp(443, 40000),
                     Side::kPodB, true);
}

TEST_F(Forward, FullBurstKeepsOrder) {
    // packet-build: 32 datagrams numbered by IP id
    std::vector<std::pair<Side, PacketBuilder>> in;
    for (uint16_t i = 0; i < kBurst; i++) {
        in.emplace_back(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).ip_id(i).udp(1, 2));
    }
    Sent out = run(in);
    // check
    ASSERT_EQ(out.frames.size(), in.size());
    for (uint16_t i = 0; i < kBurst; i++) {
        EXPECT_EQ(out.frames[i].side, Side::kPodB);
        EXPECT_EQ(out.frames[i].pkt.ip4->id, i);
    }
    EXPECT_EQ(tx_packets(), kBurst);
    EXPECT_EQ(drops(), want({}));
}

}  // namespace
}  // namespace fwd::dp::test
