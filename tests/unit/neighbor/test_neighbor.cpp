// NeighborTable on a fake clock: every state transition, the solicitation
// frames byte by byte, and on_frame() with good, truncated and mangled ARP
// and Neighbor Advertisement frames (run under ASan: every truncated frame
// lives in a heap buffer of exactly its length).
#include "fwd/control/neighbor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace fwd::control {
namespace {

using net::Ip4Addr;
using net::Ip6Addr;
using net::IpAddr;
using net::MacAddr;
using Kind = NeighAction::Kind;
using Bytes = std::vector<uint8_t>;

const MacAddr kOurMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
const MacAddr kPeerMac{{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}};
const MacAddr kNewMac{{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
const Ip4Addr kOur4 = *Ip4Addr::parse("10.0.0.1");
const Ip4Addr kGw4 = *Ip4Addr::parse("10.0.0.254");
const Ip6Addr kOur6 = *Ip6Addr::parse("2001:db8::1");
const Ip6Addr kGw6 = *Ip6Addr::parse("2001:db8::ab:cdef");

// Packet handles are only compared, never dereferenced.
void *pkt(uintptr_t n) {
    return reinterpret_cast<void *>(n * 16);
}

std::vector<Kind> kinds(const std::vector<NeighAction> &a) {
    std::vector<Kind> k;
    for (const auto &x : a) {
        k.push_back(x.kind);
    }
    return k;
}

std::vector<void *> handles(const std::vector<NeighAction> &a, Kind kind) {
    std::vector<void *> h;
    for (const auto &x : a) {
        if (x.kind == kind) {
            h.push_back(x.pkt);
        }
    }
    return h;
}

// ---- frame construction (independent of the code under test) ----

void put16(Bytes &f, uint16_t v) {
    f.push_back(static_cast<uint8_t>(v >> 8));
    f.push_back(static_cast<uint8_t>(v));
}

void put(Bytes &f, const uint8_t *p, size_t n) {
    f.insert(f.end(), p, p + n);
}

void put_ip4(Bytes &f, Ip4Addr a) {
    put16(f, static_cast<uint16_t>(a.host() >> 16));
    put16(f, static_cast<uint16_t>(a.host()));
}

void put_eth(Bytes &f, const MacAddr &dst, const MacAddr &src, uint16_t type,
             std::optional<uint16_t> vlan) {
    put(f, dst.data(), 6);
    put(f, src.data(), 6);
    if (vlan) {
        put16(f, 0x8100);
        put16(f, *vlan);
    }
    put16(f, type);
}

Bytes arp(uint16_t op, const MacAddr &sha, Ip4Addr spa, const MacAddr &tha, Ip4Addr tpa,
          std::optional<uint16_t> vlan = std::nullopt) {
    Bytes f;
    const MacAddr dst = op == 1 ? MacAddr({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) : tha;
    put_eth(f, dst, sha, 0x0806, vlan);
    put16(f, 1);
    put16(f, 0x0800);
    f.push_back(6);
    f.push_back(4);
    put16(f, op);
    put(f, sha.data(), 6);
    put_ip4(f, spa);
    put(f, tha.data(), 6);
    put_ip4(f, tpa);
    return f;
}

Bytes arp_reply(const MacAddr &sha = kPeerMac, Ip4Addr spa = kGw4,
                std::optional<uint16_t> vlan = std::nullopt) {
    return arp(2, sha, spa, kOurMac, kOur4, vlan);
}

// Written out longhand (RFC 1071 over pseudo-header and message), not with
// the icmp6_checksum() under test.
uint16_t reference_icmp6_sum(const uint8_t *src, const uint8_t *dst, const uint8_t *msg,
                             size_t len) {
    Bytes pseudo(src, src + 16);
    pseudo.insert(pseudo.end(), dst, dst + 16);
    pseudo.push_back(static_cast<uint8_t>(len >> 24));
    pseudo.push_back(static_cast<uint8_t>(len >> 16));
    pseudo.push_back(static_cast<uint8_t>(len >> 8));
    pseudo.push_back(static_cast<uint8_t>(len));
    pseudo.insert(pseudo.end(), {0, 0, 0, 58});
    pseudo.insert(pseudo.end(), msg, msg + len);
    if (pseudo.size() % 2) {
        pseudo.push_back(0);
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < pseudo.size(); i += 2) {
        sum += (pseudo[i] << 8) | pseudo[i + 1];
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<uint16_t>(~sum);
}

struct NaSpec {
    Ip6Addr src = kGw6;
    Ip6Addr dst = kOur6;
    Ip6Addr target = kGw6;
    uint8_t flags = 0x60;  // S and O
    uint8_t hop_limit = 255;
    uint8_t code = 0;
    bool tlla = true;
    MacAddr mac = kPeerMac;
    bool good_checksum = true;
    std::optional<uint16_t> vlan;
    Bytes extra_option;  // appended after the TLLA option
};

Bytes na(const NaSpec &s) {
    Bytes icmp{136, s.code, 0, 0, s.flags, 0, 0, 0};
    put(icmp, s.target.data(), 16);
    if (s.tlla) {
        icmp.push_back(2);
        icmp.push_back(1);
        put(icmp, s.mac.data(), 6);
    }
    icmp.insert(icmp.end(), s.extra_option.begin(), s.extra_option.end());
    uint16_t ck = reference_icmp6_sum(s.src.data(), s.dst.data(), icmp.data(), icmp.size());
    if (!s.good_checksum) {
        ck ^= 0x0101;
    }
    icmp[2] = static_cast<uint8_t>(ck >> 8);
    icmp[3] = static_cast<uint8_t>(ck);

    Bytes f;
    put_eth(f, kOurMac, s.mac, 0x86dd, s.vlan);
    f.insert(f.end(), {0x60, 0, 0, 0});
    put16(f, static_cast<uint16_t>(icmp.size()));
    f.push_back(58);
    f.push_back(s.hop_limit);
    put(f, s.src.data(), 16);
    put(f, s.dst.data(), 16);
    f.insert(f.end(), icmp.begin(), icmp.end());
    return f;
}

class NeighborTest : public ::testing::Test {
  protected:
    NeighborTable table_{NeighborParams{}, kOurMac, kOur4, kOur6};

    // Feeds frame through a heap buffer of exactly its size.
    bool feed(const Bytes &f, uint64_t now) {
        auto buf = std::make_unique<uint8_t[]>(std::max<size_t>(f.size(), 1));
        std::memcpy(buf.get(), f.data(), f.size());
        return table_.on_frame(buf.get(), f.size(), now);
    }

    NeighborInfo info(const IpAddr &ip, uint64_t now = 0) const {
        for (const auto &i : table_.list(now)) {
            if (i.ip == ip) {
                return i;
            }
        }
        ADD_FAILURE() << "no entry for " << ip.str();
        return {};
    }

    std::string state(const IpAddr &ip) const { return info(ip).state; }

    // ref() at t=0, answered at t=10 by a solicited reply.
    void resolve(const IpAddr &ip, const MacAddr &mac = kPeerMac) {
        table_.ref(ip, 0);
        table_.take_actions(0);
        table_.learn(ip, mac, true, 10);
        auto a = table_.take_actions(10);
        ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kResolved});
        ASSERT_EQ(state(ip), "reachable");
    }
};

// ---- frames we send ----

TEST_F(NeighborTest, ArpRequestIsBroadcastWhileIncomplete) {
    table_.ref(kGw4, 0);
    auto a = table_.take_actions(0);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(a[0].ip, IpAddr(kGw4));
    const Bytes want = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // broadcast
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  // our MAC
        0x08, 0x06,                          // ARP
        0x00, 0x01, 0x08, 0x00, 6,    4,     // Ethernet / IPv4
        0x00, 0x01,                          // request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01,  // sender MAC
        10,   0,    0,    1,                 // sender IP
        0,    0,    0,    0,    0,    0,     // target MAC unknown
        10,   0,    0,    254,               // target IP
    };
    ASSERT_EQ(a[0].frame.size(), 60u) << "padded to the Ethernet minimum";
    EXPECT_EQ(Bytes(a[0].frame.begin(), a[0].frame.begin() + 42), want);
    EXPECT_TRUE(
        std::all_of(a[0].frame.begin() + 42, a[0].frame.end(), [](uint8_t b) { return b == 0; }));
    EXPECT_EQ(state(kGw4), "incomplete");
    EXPECT_EQ(info(kGw4).probes, 1u);
}

TEST_F(NeighborTest, SolicitedNodeAddress) {
    EXPECT_EQ(solicited_node_addr(kGw6).str(), "ff02::1:ffab:cdef");
    EXPECT_EQ(solicited_node_addr(*Ip6Addr::parse("fe80::1")).str(), "ff02::1:ff00:1");
    EXPECT_EQ(ip6_multicast_mac(solicited_node_addr(kGw6)).str(), "33:33:ff:ab:cd:ef");
}

void check_ns(const Bytes &f, const MacAddr &eth_dst, const Ip6Addr &ip_dst) {
    ASSERT_EQ(f.size(), 14u + 40 + 32);
    EXPECT_EQ(MacAddr::from_bytes(f.data()), eth_dst);
    EXPECT_EQ(MacAddr::from_bytes(f.data() + 6), kOurMac);
    EXPECT_EQ(f[12], 0x86);
    EXPECT_EQ(f[13], 0xdd);
    const uint8_t *ip = f.data() + 14;
    EXPECT_EQ(Bytes(ip, ip + 4), (Bytes{0x60, 0, 0, 0}));
    EXPECT_EQ((ip[4] << 8) | ip[5], 32) << "payload length";
    EXPECT_EQ(ip[6], 58) << "next header ICMPv6";
    EXPECT_EQ(ip[7], 255) << "hop limit";
    EXPECT_EQ(Ip6Addr::from_bytes(ip + 8), kOur6);
    EXPECT_EQ(Ip6Addr::from_bytes(ip + 24), ip_dst);
    const uint8_t *icmp = ip + 40;
    EXPECT_EQ(icmp[0], 135) << "neighbor solicitation";
    EXPECT_EQ(icmp[1], 0);
    EXPECT_EQ(Bytes(icmp + 4, icmp + 8), (Bytes{0, 0, 0, 0})) << "reserved";
    EXPECT_EQ(Ip6Addr::from_bytes(icmp + 8), kGw6);
    EXPECT_EQ(icmp[24], 1) << "source link-layer address option";
    EXPECT_EQ(icmp[25], 1);
    EXPECT_EQ(MacAddr::from_bytes(icmp + 26), kOurMac);
    // Recompute with the checksum field zeroed and compare.
    Bytes msg(icmp, icmp + 32);
    const uint16_t sent = static_cast<uint16_t>((msg[2] << 8) | msg[3]);
    msg[2] = msg[3] = 0;
    EXPECT_EQ(sent, reference_icmp6_sum(ip + 8, ip + 24, msg.data(), msg.size()));
    EXPECT_EQ(icmp6_checksum(kOur6, ip_dst, icmp, 32), 0) << "a correct message sums to 0";
}

TEST_F(NeighborTest, NeighborSolicitationIsMulticastWhileIncomplete) {
    table_.ref(kGw6, 0);
    auto a = table_.take_actions(0);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kSend});
    check_ns(a[0].frame, *MacAddr::parse("33:33:ff:ab:cd:ef"),
             *Ip6Addr::parse("ff02::1:ffab:cdef"));
}

TEST_F(NeighborTest, ProbesAreUnicastToTheKnownMac) {
    resolve(kGw4);
    resolve(kGw6);
    table_.take_actions(30010);  // both stale
    EXPECT_EQ(state(kGw4), "stale");
    auto a = table_.take_actions(35010);
    ASSERT_EQ(kinds(a), (std::vector<Kind>{Kind::kSend, Kind::kSend}));
    EXPECT_EQ(a[0].ip, IpAddr(kGw4));
    EXPECT_EQ(MacAddr::from_bytes(a[0].frame.data()), kPeerMac);
    EXPECT_EQ(a[0].frame[21], 1) << "still a request";
    check_ns(a[1].frame, kPeerMac, kGw6);
    EXPECT_EQ(state(kGw4), "probe");
    EXPECT_EQ(state(kGw6), "probe");
}

// ---- timers ----

TEST_F(NeighborTest, IncompleteRetransmitsThenFails) {
    table_.ref(kGw4, 0);
    table_.queue(kGw4, pkt(1));
    table_.queue(kGw4, pkt(2));
    EXPECT_EQ(kinds(table_.take_actions(0)), std::vector<Kind>{Kind::kSend});
    EXPECT_TRUE(table_.take_actions(999).empty());
    EXPECT_EQ(kinds(table_.take_actions(1000)), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(info(kGw4).probes, 2u);
    EXPECT_TRUE(table_.take_actions(1999).empty());
    auto third = table_.take_actions(2000);
    ASSERT_EQ(kinds(third), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(third[0].frame[0], 0xff) << "still broadcast";
    auto a = table_.take_actions(3000);
    EXPECT_EQ(kinds(a), (std::vector<Kind>{Kind::kUnresolved, Kind::kDrop, Kind::kDrop}));
    EXPECT_EQ(handles(a, Kind::kDrop), (std::vector<void *>{pkt(1), pkt(2)}));
    EXPECT_EQ(state(kGw4), "failed");
    EXPECT_EQ(info(kGw4).queued, 0u);
    EXPECT_FALSE(info(kGw4).mac);
    EXPECT_TRUE(table_.take_actions(100000).empty()) << "no retry without demand";
    EXPECT_EQ(state(kGw4), "failed");
}

TEST_F(NeighborTest, LateCallSendsOneSolicitation) {
    table_.ref(kGw6, 0);
    table_.take_actions(0);
    EXPECT_EQ(kinds(table_.take_actions(10000)), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(kinds(table_.take_actions(10999)), std::vector<Kind>{});
    EXPECT_EQ(kinds(table_.take_actions(11000)), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(kinds(table_.take_actions(12000)), std::vector<Kind>{Kind::kUnresolved});
}

TEST_F(NeighborTest, ReachableStaleProbeFailed) {
    resolve(kGw4);
    EXPECT_TRUE(table_.take_actions(30009).empty());
    EXPECT_EQ(state(kGw4), "reachable");
    EXPECT_TRUE(table_.take_actions(30010).empty()) << "going stale is silent";
    EXPECT_EQ(state(kGw4), "stale");
    EXPECT_EQ(table_.resolved_mac(kGw4), kPeerMac) << "stale stays usable";
    EXPECT_TRUE(table_.take_actions(35009).empty());
    EXPECT_EQ(kinds(table_.take_actions(35010)), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(state(kGw4), "probe");
    EXPECT_EQ(table_.resolved_mac(kGw4), kPeerMac) << "probe stays usable";
    EXPECT_EQ(kinds(table_.take_actions(36010)), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(kinds(table_.take_actions(37010)), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(info(kGw4).probes, 3u);
    EXPECT_EQ(kinds(table_.take_actions(38010)), std::vector<Kind>{Kind::kUnresolved});
    EXPECT_EQ(state(kGw4), "failed");
    EXPECT_FALSE(table_.resolved_mac(kGw4));
}

TEST_F(NeighborTest, LateCallWalksReachableToProbe) {
    resolve(kGw4);
    auto a = table_.take_actions(100000);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(MacAddr::from_bytes(a[0].frame.data()), kPeerMac);
    EXPECT_EQ(state(kGw4), "probe");
    EXPECT_EQ(info(kGw4, 100000).age_ms, 100000u - 35010u) << "probe began when it was due";
}

TEST_F(NeighborTest, AnsweredProbeIsReachableAgainWithoutAnnouncement) {
    resolve(kGw6);
    table_.take_actions(35010);
    EXPECT_EQ(state(kGw6), "probe");
    EXPECT_TRUE(feed(na({}), 35100));
    EXPECT_TRUE(table_.take_actions(35100).empty()) << "same MAC: nothing to announce";
    EXPECT_EQ(state(kGw6), "reachable");
    EXPECT_EQ(info(kGw6).probes, 0u);
    EXPECT_TRUE(table_.take_actions(65099).empty());
    EXPECT_EQ(state(kGw6), "reachable");
    table_.take_actions(65100);
    EXPECT_EQ(state(kGw6), "stale");
}

TEST_F(NeighborTest, FailedRetriesAfterHoldOffWhenAPacketAsks) {
    table_.ref(kGw4, 0);
    table_.take_actions(0);
    table_.take_actions(1000);
    table_.take_actions(2000);
    ASSERT_EQ(kinds(table_.take_actions(3000)), std::vector<Kind>{Kind::kUnresolved});
    table_.queue(kGw4, pkt(7));
    auto a = table_.take_actions(3100);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kDrop}) << "failed: dropped at once";
    EXPECT_EQ(a[0].pkt, pkt(7));
    EXPECT_TRUE(table_.take_actions(3999).empty()) << "hold-off";
    EXPECT_EQ(state(kGw4), "failed");
    auto retry = table_.take_actions(4000);
    ASSERT_EQ(kinds(retry), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(retry[0].frame[0], 0xff) << "resolution starts over, broadcast";
    EXPECT_EQ(state(kGw4), "incomplete");
    EXPECT_EQ(info(kGw4).probes, 1u);
}

TEST_F(NeighborTest, RefOnFailedEntryAlsoRetries) {
    table_.ref(kGw6, 0);
    for (uint64_t t : {0, 1000, 2000, 3000}) {
        table_.take_actions(t);
    }
    ASSERT_EQ(state(kGw6), "failed");
    table_.ref(kGw6, 3500);
    EXPECT_TRUE(table_.take_actions(3500).empty());
    EXPECT_EQ(kinds(table_.take_actions(4000)), std::vector<Kind>{Kind::kSend});
    EXPECT_EQ(info(kGw6).refs, 2u);
}

TEST_F(NeighborTest, LateAnswerRevivesFailedEntry) {
    table_.ref(kGw4, 0);
    for (uint64_t t : {0, 1000, 2000, 3000}) {
        table_.take_actions(t);
    }
    ASSERT_EQ(state(kGw4), "failed");
    EXPECT_TRUE(feed(arp_reply(), 5000));
    auto a = table_.take_actions(5000);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kResolved});
    EXPECT_EQ(state(kGw4), "reachable");
}

// ---- learning ----

TEST_F(NeighborTest, SolicitedReplyResolvesAndFlushesInOrder) {
    table_.ref(kGw4, 0);
    table_.queue(kGw4, pkt(1));
    table_.queue(kGw4, pkt(2));
    table_.take_actions(0);
    EXPECT_TRUE(feed(arp_reply(), 40));
    auto a = table_.take_actions(40);
    ASSERT_EQ(kinds(a), (std::vector<Kind>{Kind::kResolved, Kind::kFlush, Kind::kFlush}));
    EXPECT_EQ(a[0].ip, IpAddr(kGw4));
    EXPECT_EQ(a[0].mac, kPeerMac);
    EXPECT_EQ(handles(a, Kind::kFlush), (std::vector<void *>{pkt(1), pkt(2)}));
    const NeighborInfo i = info(kGw4, 140);
    EXPECT_EQ(i.state, "reachable");
    EXPECT_EQ(i.mac, kPeerMac);
    EXPECT_EQ(i.refs, 1u);
    EXPECT_EQ(i.queued, 0u);
    EXPECT_EQ(i.probes, 0u);
    EXPECT_EQ(i.age_ms, 100u);
}

TEST_F(NeighborTest, SolicitedNaResolves) {
    table_.ref(kGw6, 0);
    table_.queue(kGw6, pkt(3));
    table_.take_actions(0);
    EXPECT_TRUE(feed(na({}), 5));
    auto a = table_.take_actions(5);
    ASSERT_EQ(kinds(a), (std::vector<Kind>{Kind::kResolved, Kind::kFlush}));
    EXPECT_EQ(a[0].mac, kPeerMac);
    EXPECT_EQ(a[1].pkt, pkt(3));
    EXPECT_EQ(state(kGw6), "reachable");
}

TEST_F(NeighborTest, UnsolicitedAnnouncementMakesIncompleteStale) {
    table_.ref(kGw4, 0);
    table_.queue(kGw4, pkt(1));
    table_.take_actions(0);
    EXPECT_TRUE(
        feed(arp(2, kPeerMac, kGw4, MacAddr({0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), kGw4), 50))
        << "gratuitous ARP reply";
    EXPECT_EQ(kinds(table_.take_actions(50)), (std::vector<Kind>{Kind::kResolved, Kind::kFlush}));
    EXPECT_EQ(state(kGw4), "stale");
    EXPECT_EQ(kinds(table_.take_actions(5050)), std::vector<Kind>{Kind::kSend}) << "probe";
}

TEST_F(NeighborTest, GratuitousArpWithNewMacGoesStale) {
    resolve(kGw4);
    EXPECT_TRUE(feed(arp(1, kNewMac, kGw4, MacAddr(), kGw4), 100)) << "gratuitous request";
    auto a = table_.take_actions(100);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kResolved}) << "no kUnresolved on a MAC change";
    EXPECT_EQ(a[0].mac, kNewMac);
    EXPECT_EQ(state(kGw4), "stale");
    EXPECT_EQ(table_.resolved_mac(kGw4), kNewMac);
}

TEST_F(NeighborTest, GratuitousArpWithSameMacChangesNothing) {
    resolve(kGw4);
    EXPECT_FALSE(feed(arp(1, kPeerMac, kGw4, MacAddr(), kGw4), 100));
    EXPECT_TRUE(table_.take_actions(100).empty());
    EXPECT_EQ(state(kGw4), "reachable");
    EXPECT_EQ(info(kGw4, 100).age_ms, 90u) << "not a confirmation";
    table_.take_actions(30010);
    EXPECT_EQ(state(kGw4), "stale") << "timer not reset by it";
    EXPECT_FALSE(feed(arp(1, kPeerMac, kGw4, MacAddr(), kGw4), 30100));
    EXPECT_EQ(state(kGw4), "stale");
}

TEST_F(NeighborTest, ArpRequestForUsFromNeighborLearnsItsMac) {
    resolve(kGw4);
    EXPECT_TRUE(feed(arp(1, kNewMac, kGw4, MacAddr(), kOur4), 100));
    EXPECT_EQ(state(kGw4), "stale");
    EXPECT_EQ(table_.resolved_mac(kGw4), kNewMac);
    EXPECT_FALSE(feed(arp(1, kPeerMac, kGw4, MacAddr(), *Ip4Addr::parse("10.0.0.9")), 200))
        << "a question for someone else is ignored";
    EXPECT_EQ(table_.resolved_mac(kGw4), kNewMac);
}

TEST_F(NeighborTest, ReplyToSomeoneElseIsUnsolicited) {
    table_.ref(kGw4, 0);
    table_.take_actions(0);
    EXPECT_TRUE(feed(arp(2, kPeerMac, kGw4, kNewMac, *Ip4Addr::parse("10.0.0.9")), 10));
    EXPECT_EQ(state(kGw4), "stale");
}

TEST_F(NeighborTest, SolicitedReplyWithNewMacIsAnnounced) {
    resolve(kGw6);
    NaSpec s;
    s.mac = kNewMac;
    EXPECT_TRUE(feed(na(s), 100));
    auto a = table_.take_actions(100);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kResolved});
    EXPECT_EQ(a[0].mac, kNewMac);
    EXPECT_EQ(state(kGw6), "reachable");
}

TEST_F(NeighborTest, UnsolicitedNaWithNewMacGoesStale) {
    resolve(kGw6);
    NaSpec s;
    s.flags = 0x20;  // O only
    s.dst = *Ip6Addr::parse("ff02::1");
    s.mac = kNewMac;
    EXPECT_TRUE(feed(na(s), 100));
    EXPECT_EQ(state(kGw6), "stale");
    EXPECT_EQ(table_.resolved_mac(kGw6), kNewMac);
}

TEST_F(NeighborTest, StrangersAreNotLearned) {
    EXPECT_FALSE(feed(arp_reply(), 0));
    EXPECT_FALSE(feed(na({}), 0));
    table_.learn(kGw4, kPeerMac, true, 0);
    EXPECT_TRUE(table_.list(0).empty());
    EXPECT_TRUE(table_.take_actions(0).empty());
}

TEST_F(NeighborTest, ZeroAndMulticastMacsAreIgnored) {
    table_.ref(kGw4, 0);
    table_.take_actions(0);
    table_.learn(kGw4, MacAddr(), true, 1);
    table_.learn(kGw4, *MacAddr::parse("01:00:5e:00:00:01"), true, 1);
    EXPECT_EQ(state(kGw4), "incomplete");
    EXPECT_TRUE(table_.take_actions(1).empty());
}

TEST_F(NeighborTest, VlanTaggedFramesAreLearned) {
    table_.ref(kGw4, 0);
    table_.ref(kGw6, 0);
    EXPECT_TRUE(feed(arp_reply(kPeerMac, kGw4, 0x0064), 1));
    NaSpec s;
    s.vlan = 0x2064;
    EXPECT_TRUE(feed(na(s), 1));
    EXPECT_EQ(state(kGw4), "reachable");
    EXPECT_EQ(state(kGw6), "reachable");
}

// ---- malformed input ----

TEST_F(NeighborTest, SolicitedNaWithoutTheOptionConfirmsTheKnownMac) {
    resolve(kGw6);
    table_.take_actions(35010);
    EXPECT_EQ(state(kGw6), "probe");
    NaSpec s;
    s.tlla = false;  // how Linux answers our unicast probe
    s.flags = 0x20;  // O only: an unsolicited advertisement
    EXPECT_FALSE(feed(na(s), 35050)) << "unsolicited without the option changes nothing";
    EXPECT_EQ(state(kGw6), "probe");
    s.flags = 0x40;  // S, O clear: the answer to the unicast probe
    EXPECT_TRUE(feed(na(s), 35100));
    EXPECT_TRUE(table_.take_actions(35100).empty()) << "same MAC: nothing to announce";
    EXPECT_EQ(state(kGw6), "reachable");
    EXPECT_EQ(table_.resolved_mac(kGw6), kPeerMac);
}

TEST_F(NeighborTest, InvalidNeighborAdvertisementsAreRejected) {
    table_.ref(kGw6, 0);
    auto rejected = [&](NaSpec s, const char *why) {
        EXPECT_FALSE(feed(na(s), 1)) << why;
        EXPECT_EQ(state(kGw6), "incomplete") << why;
    };
    NaSpec s;
    s.hop_limit = 254;
    rejected(s, "hop limit 254");
    s = {};
    s.code = 1;
    rejected(s, "code 1");
    s = {};
    s.tlla = false;
    rejected(s, "no target link-layer address option");
    s = {};
    s.good_checksum = false;
    rejected(s, "bad checksum");
    s = {};
    s.dst = *Ip6Addr::parse("ff02::1");
    rejected(s, "solicited to a multicast address");
    s = {};
    s.target = *Ip6Addr::parse("ff02::1");
    rejected(s, "multicast target");
    s = {};
    s.extra_option = {3, 0, 0, 0, 0, 0, 0, 0};
    rejected(s, "zero-length option");
    s = {};
    s.extra_option = {3, 2, 0, 0, 0, 0, 0, 0};
    rejected(s, "option longer than the message");

    Bytes ns = na({});
    ns[14 + 40] = 135;
    EXPECT_FALSE(feed(ns, 1)) << "a solicitation is not an advertisement";

    Bytes short_payload = na({});
    short_payload[14 + 5] = 20;  // payload length below 24
    EXPECT_FALSE(feed(short_payload, 1));
    Bytes long_payload = na({});
    long_payload[14 + 5] = 40;  // longer than the frame
    EXPECT_FALSE(feed(long_payload, 1));
    Bytes ext_header = na({});
    ext_header[14 + 6] = 0;  // hop-by-hop options
    EXPECT_FALSE(feed(ext_header, 1));
    EXPECT_EQ(state(kGw6), "incomplete");
    // Unknown options are skipped.
    s = {};
    s.extra_option = {14, 1, 0, 0, 0, 0, 0, 0};
    EXPECT_TRUE(feed(na(s), 2));
}

TEST_F(NeighborTest, InvalidArpIsRejected) {
    table_.ref(kGw4, 0);
    Bytes f = arp_reply();
    for (size_t byte : {14u, 15u, 16u, 17u, 18u, 19u, 21u}) {
        Bytes bad = f;
        bad[byte] ^= 0x10;
        EXPECT_FALSE(feed(bad, 1)) << "byte " << byte;
    }
    EXPECT_FALSE(feed(arp(2, kPeerMac, Ip4Addr(), kOurMac, kOur4), 1)) << "sender 0.0.0.0";
    Bytes other_type = f;
    other_type[12] = 0x08;
    other_type[13] = 0x00;
    EXPECT_FALSE(feed(other_type, 1));
    Bytes double_tag = arp_reply(kPeerMac, kGw4, 5);
    double_tag.insert(double_tag.begin() + 12, {0x81, 0x00, 0x00, 0x06});
    EXPECT_FALSE(feed(double_tag, 1)) << "only one 802.1Q tag";
    EXPECT_FALSE(table_.on_frame(nullptr, 0, 1));
    EXPECT_EQ(state(kGw4), "incomplete");
}

TEST_F(NeighborTest, EveryTruncationIsRejected) {
    NaSpec tagged;
    tagged.vlan = 7;
    const std::vector<Bytes> good = {arp_reply(), arp_reply(kPeerMac, kGw4, 7), na({}), na(tagged)};
    for (const Bytes &f : good) {
        for (size_t len = 0; len <= f.size(); len++) {
            NeighborTable t{NeighborParams{}, kOurMac, kOur4, kOur6};
            t.ref(kGw4, 0);
            t.ref(kGw6, 0);
            auto buf = std::make_unique<uint8_t[]>(std::max<size_t>(len, 1));
            std::memcpy(buf.get(), f.data(), len);
            EXPECT_EQ(t.on_frame(buf.get(), len, 1), len == f.size())
                << "length " << len << " of " << f.size();
        }
    }
}

TEST_F(NeighborTest, RandomMutationsNeverCrash) {
    table_.ref(kGw4, 0);
    table_.ref(kGw6, 0);
    std::mt19937 rng(1234);
    const std::vector<Bytes> seeds = {arp_reply(), na({}), arp_reply(kPeerMac, kGw4, 9)};
    for (int i = 0; i < 20000; i++) {
        Bytes f = seeds[static_cast<size_t>(i) % seeds.size()];
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; k++) {
            f[rng() % f.size()] = static_cast<uint8_t>(rng());
        }
        f.resize(rng() % (f.size() + 8), 0xa5);
        feed(f, 1);
    }
    table_.take_actions(2);
    SUCCEED();
}

// ---- queue and references ----

TEST_F(NeighborTest, QueueEvictsOldestFirst) {
    table_.ref(kGw4, 0);
    table_.take_actions(0);
    for (uintptr_t i = 1; i <= 5; i++) {
        table_.queue(kGw4, pkt(i));
    }
    EXPECT_EQ(info(kGw4).queued, 3u);
    auto a = table_.take_actions(1);
    EXPECT_EQ(kinds(a), (std::vector<Kind>{Kind::kDrop, Kind::kDrop}));
    EXPECT_EQ(handles(a, Kind::kDrop), (std::vector<void *>{pkt(1), pkt(2)}));
    table_.learn(kGw4, kPeerMac, true, 2);
    a = table_.take_actions(2);
    EXPECT_EQ(handles(a, Kind::kFlush), (std::vector<void *>{pkt(3), pkt(4), pkt(5)}));
}

TEST_F(NeighborTest, ZeroQueueLengthDropsAtOnce) {
    NeighborParams p;
    p.queue_len = 0;
    NeighborTable t(p, kOurMac, kOur4, kOur6);
    t.ref(kGw4, 0);
    t.queue(kGw4, pkt(1));
    auto a = t.take_actions(0);
    EXPECT_EQ(kinds(a), (std::vector<Kind>{Kind::kSend, Kind::kDrop}));
}

TEST_F(NeighborTest, QueueForUnknownDropsAndForUsableFlushes) {
    table_.queue(kGw4, pkt(1));
    auto a = table_.take_actions(0);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kDrop});
    EXPECT_EQ(a[0].pkt, pkt(1));
    EXPECT_TRUE(table_.list(0).empty()) << "no entry made for it";
    resolve(kGw6);
    table_.queue(kGw6, pkt(2));
    a = table_.take_actions(20);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kFlush});
    EXPECT_EQ(a[0].pkt, pkt(2));
}

TEST_F(NeighborTest, LastUnrefReleasesQueuedHandles) {
    table_.ref(kGw6, 0);
    table_.ref(kGw6, 0);
    table_.take_actions(0);
    EXPECT_EQ(info(kGw6).refs, 2u);
    table_.queue(kGw6, pkt(1));
    table_.queue(kGw6, pkt(2));
    table_.unref(kGw6);
    EXPECT_TRUE(table_.take_actions(1).empty());
    EXPECT_EQ(info(kGw6).queued, 2u);
    table_.unref(kGw6);
    auto a = table_.take_actions(1);
    EXPECT_EQ(kinds(a), (std::vector<Kind>{Kind::kDrop, Kind::kDrop})) << "no kUnresolved";
    EXPECT_EQ(handles(a, Kind::kDrop), (std::vector<void *>{pkt(1), pkt(2)}));
    EXPECT_TRUE(table_.list(1).empty());
    EXPECT_TRUE(table_.take_actions(5000).empty()) << "its timers are gone too";
    EXPECT_FALSE(feed(na({}), 5000)) << "no entry to learn into";
}

TEST_F(NeighborTest, RefOfResolvedEntryAnnouncesItAgain) {
    resolve(kGw4);
    table_.ref(kGw4, 50);
    auto a = table_.take_actions(50);
    ASSERT_EQ(kinds(a), std::vector<Kind>{Kind::kResolved});
    EXPECT_EQ(a[0].mac, kPeerMac);
    EXPECT_EQ(info(kGw4).refs, 2u);
    table_.ref(kGw6, 50);
    table_.ref(kGw6, 60);
    EXPECT_EQ(kinds(table_.take_actions(60)), std::vector<Kind>{Kind::kSend})
        << "one solicitation for two refs of an incomplete entry";
}

TEST_F(NeighborTest, ListIsOrderedAndComplete) {
    resolve(kGw4);
    table_.ref(kGw6, 100);
    table_.queue(kGw6, pkt(1));
    auto l = table_.list(600);
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[0].ip, IpAddr(kGw4));
    EXPECT_EQ(l[0].state, "reachable");
    EXPECT_EQ(l[0].age_ms, 590u);
    EXPECT_EQ(l[1].ip, IpAddr(kGw6));
    EXPECT_EQ(l[1].state, "incomplete");
    EXPECT_FALSE(l[1].mac);
    EXPECT_EQ(l[1].queued, 1u);
    EXPECT_EQ(l[1].probes, 1u);
    EXPECT_EQ(l[1].age_ms, 500u);
}

TEST(NeighborStateName, AllStates) {
    EXPECT_STREQ(neigh_state_name(NeighState::kIncomplete), "incomplete");
    EXPECT_STREQ(neigh_state_name(NeighState::kReachable), "reachable");
    EXPECT_STREQ(neigh_state_name(NeighState::kStale), "stale");
    EXPECT_STREQ(neigh_state_name(NeighState::kProbe), "probe");
    EXPECT_STREQ(neigh_state_name(NeighState::kFailed), "failed");
}

// ---- bad input ----

template <typename Fn>
std::string error_of(Fn &&fn) {
    try {
        fn();
    } catch (const NeighborError &e) {
        return e.what();
    }
    return "";
}

TEST(NeighborErrors, BadParamsAndAddresses) {
    NeighborParams p;
    p.max_probes = 0;
    EXPECT_NE(error_of([&] { NeighborTable(p, kOurMac, kOur4, kOur6); }).find("max_probes"),
              std::string::npos);
    p = {};
    p.retrans_ms = 0;
    EXPECT_NE(error_of([&] { NeighborTable(p, kOurMac, kOur4, kOur6); }).find("retrans_ms"),
              std::string::npos);
    EXPECT_NE(error_of([&] { NeighborTable({}, MacAddr(), kOur4, kOur6); }).find("our MAC"),
              std::string::npos);

    NeighborTable only4({}, kOurMac, kOur4, std::nullopt);
    EXPECT_EQ(error_of([&] { only4.ref(kGw6, 0); }),
              "neighbor ref 2001:db8::ab:cdef: no IPv6 address of ours to send NS from");
    NeighborTable only6({}, kOurMac, std::nullopt, kOur6);
    EXPECT_EQ(error_of([&] { only6.ref(kGw4, 0); }),
              "neighbor ref 10.0.0.254: no IPv4 address of ours to send ARP from");

    NeighborTable t({}, kOurMac, kOur4, kOur6);
    EXPECT_EQ(error_of([&] { t.ref(*Ip4Addr::parse("224.0.0.1"), 0); }),
              "neighbor ref 224.0.0.1: not a unicast address");
    EXPECT_EQ(error_of([&] { t.ref(*Ip4Addr::parse("255.255.255.255"), 0); }),
              "neighbor ref 255.255.255.255: not a unicast address");
    EXPECT_EQ(error_of([&] { t.ref(*Ip6Addr::parse("::"), 0); }),
              "neighbor ref ::: not a unicast address");
    EXPECT_EQ(error_of([&] { t.ref(kOur4, 0); }), "neighbor ref 10.0.0.1: that is our own address");
    EXPECT_EQ(error_of([&] { t.unref(kGw4); }), "neighbor unref 10.0.0.254: not referenced");
    EXPECT_TRUE(t.list(0).empty());
    EXPECT_TRUE(t.take_actions(0).empty()) << "a refused ref leaves nothing behind";
}

}  // namespace
}  // namespace fwd::control
