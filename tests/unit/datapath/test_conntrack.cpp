// Connection tracking (conntrack.hpp): the TCP state machine and window
// checks, UDP / ICMP / generic flows, every timeout on an injected clock,
// capacity, reply-tuple collisions, ageing across RCU grace periods, ICMP
// error matching, packet parsing, listings, and a reader thread looking up
// while the writer churns. IPv4 and IPv6 alike (TEST_P over the family).
#include <gtest/gtest.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "fwd/dp/conntrack.hpp"
#include "fwd/dp/pkt.hpp"
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

using ct::ConnTable;
using ct::Dir;
using ct::FlowKey;
using ct::Hit;
using ct::Packet;
using ct::Result;
using ct::TcpState;
using net::Be16;

constexpr uint64_t kHz = 1'000'000'000;  // the injected TSC runs at 1 GHz
constexpr uint64_t kT0 = 5000 * kHz;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
constexpr uint8_t kProtoSctp = 132, kProtoGre = 47;

uint64_t at(double secs) {
    return kT0 + static_cast<uint64_t>(secs * kHz);
}

// The ends of the flows under test, per family.
struct Ends {
    FlowKey base(uint8_t proto, uint16_t sport, uint16_t dport, bool from_b = false) const {
        const auto &s = from_b ? b : a;
        const auto &d = from_b ? a : b;
        FlowKey k = v6 ? FlowKey::v6(s.data(), d.data(), proto, {}, {})
                       : FlowKey::v4(raw4(s), raw4(d), proto, {}, {});
        k.sport = Be16::from_host(sport);
        k.dport = Be16::from_host(dport);
        return k;
    }
    static uint32_t raw4(const std::array<uint8_t, 16> &x) {
        uint32_t r;
        std::memcpy(&r, x.data(), 4);
        return r;
    }
    bool v6;
    std::array<uint8_t, 16> a{}, b{}, nat{};
};

Ends ends(bool v6) {
    Ends e{v6};
    if (v6) {
        e.a = ip6("fd00:65::2");
        e.b = ip6("2001:db8::80");
        e.nat = ip6("2001:db8:1::1");
    } else {
        auto put = [](std::array<uint8_t, 16> &x, uint32_t host) {
            const uint32_t be = __builtin_bswap32(host);
            std::memcpy(x.data(), &be, 4);
        };
        put(e.a, ip4("10.65.0.2"));
        put(e.b, ip4("203.0.113.80"));
        put(e.nat, ip4("192.168.50.10"));
    }
    return e;
}

struct Rcu {
    static constexpr uint32_t kThreads = 4;
    Rcu() {
        const size_t sz = rte_rcu_qsbr_get_memsize(kThreads);
        q = static_cast<rte_rcu_qsbr *>(rte_zmalloc("ct_test_qsbr", sz, RTE_CACHE_LINE_SIZE));
        rte_rcu_qsbr_init(q, kThreads);
    }
    ~Rcu() { rte_free(q); }
    rte_rcu_qsbr *q;
};

class Conntrack : public ::testing::TestWithParam<bool> {
  protected:
    void make(ct::Config cfg = {}) {
        if (cfg.capacity == ct::Config{}.capacity) {
            cfg.capacity = 1024;
        }
        t_ = std::make_unique<ConnTable>(cfg, kHz, rcu_.q);
    }
    void SetUp() override {
        e_ = ends(GetParam());
        make();
    }
    // A TCP segment from a (orig) or b (reply) on the connection a:1234 -> b:80.
    Packet tcp(bool from_b, uint8_t flags, uint32_t seq, uint32_t ack, uint16_t win = 65535,
               uint32_t payload = 0, uint8_t wscale = 0xff) const {
        Packet p;
        p.key = from_b ? e_.base(6, 80, 1234, true) : e_.base(6, 1234, 80);
        p.tcp_flags = flags;
        p.seq = seq;
        p.ack = ack;
        p.win = win;
        p.payload = payload;
        p.wscale = wscale;
        return p;
    }
    Packet udp(bool from_b, uint16_t aport = 5353, uint16_t bport = 53) const {
        Packet p;
        p.key = from_b ? e_.base(17, bport, aport, true) : e_.base(17, aport, bport);
        return p;
    }
    Packet echo(bool from_b, bool request, uint16_t id) const {
        Packet p;
        const uint8_t proto = e_.v6 ? 58 : 1;
        const uint8_t type = e_.v6 ? (request ? 128 : 129) : (request ? 8 : 0);
        p.key = e_.base(proto, id, type, from_b);
        return p;
    }
    Result track(const Packet &p, double secs, Hit *hit = nullptr) {
        Hit h;
        const Result r = t_->track(p, at(secs), h, c_);
        if (hit != nullptr) {
            *hit = h;
        }
        return r;
    }
    Result create(const Packet &p, double secs, Hit *hit = nullptr) {
        Hit h;
        const Result r = t_->create(p, at(secs), h, c_);
        if (hit != nullptr) {
            *hit = h;
        }
        return r;
    }
    bool alive(const FlowKey &k, double secs) const {
        Hit h;
        return t_->lookup(k, at(secs), h);
    }
    TcpState state(uint32_t flow) const {
        return static_cast<TcpState>(t_->flow(flow).state.load());
    }
    // The flow of key lives until exactly `timeout` seconds after `last`.
    void expect_timeout(const FlowKey &k, double last, uint32_t timeout) const {
        EXPECT_TRUE(alive(k, last + timeout - 0.01)) << "gone before " << timeout << " s";
        EXPECT_FALSE(alive(k, last + timeout + 0.01)) << "alive after " << timeout << " s";
    }
    // The three-way handshake a -> b (ISNs 1000 and 5000) at times 0, 1, 2.
    uint32_t handshake(uint8_t wscale_a = 0xff, uint8_t wscale_b = 0xff) {
        Hit h;
        EXPECT_EQ(create(tcp(false, kSyn, 1000, 0, 64240, 0, wscale_a), 0, &h), Result::kCreated);
        EXPECT_EQ(state(h.flow), TcpState::kSynSent);
        Hit r;
        EXPECT_EQ(track(tcp(true, kSyn | kAck, 5000, 1001, 65160, 0, wscale_b), 1, &r),
                  Result::kOk);
        EXPECT_EQ(r.flow, h.flow);
        EXPECT_EQ(r.dir, Dir::kReply);
        EXPECT_EQ(state(h.flow), TcpState::kSynRecv);
        EXPECT_EQ(track(tcp(false, kAck, 1001, 5001, 502), 2), Result::kOk);
        EXPECT_EQ(state(h.flow), TcpState::kEstablished);
        return h.flow;
    }

    Rcu rcu_;
    Ends e_;
    std::unique_ptr<ConnTable> t_;
    ct::Counters c_;
};

INSTANTIATE_TEST_SUITE_P(Family, Conntrack, ::testing::Values(false, true),
                         [](const auto &i) { return i.param ? "ip6" : "ip4"; });

// --- TCP ---

TEST_P(Conntrack, TcpHandshakeDataAndFinCloseWithEachTimeout) {
    const ct::Timeouts to;
    const FlowKey k = tcp(false, kAck, 0, 0).key;
    Hit h;
    ASSERT_EQ(create(tcp(false, kSyn, 1000, 0), 0, &h), Result::kCreated);
    expect_timeout(k, 0, to.tcp_syn_sent);
    ASSERT_EQ(track(tcp(true, kSyn | kAck, 5000, 1001), 1), Result::kOk);
    expect_timeout(k, 1, to.tcp_syn_recv);
    ASSERT_EQ(track(tcp(false, kAck, 1001, 5001), 2), Result::kOk);
    EXPECT_EQ(state(h.flow), TcpState::kEstablished);
    expect_timeout(k, 2, to.tcp_established);
    // Data both ways.
    EXPECT_EQ(track(tcp(false, kAck, 1001, 5001, 65535, 1000), 3), Result::kOk);
    EXPECT_EQ(track(tcp(true, kAck, 5001, 2001, 65535, 1400), 3), Result::kOk);
    EXPECT_EQ(track(tcp(false, kAck, 2001, 6401), 3), Result::kOk);
    // a closes: FIN, b acks it, b's FIN, a acks it; each state lives its timeout.
    struct Step {
        Packet p;
        double at;
        TcpState want;
        uint32_t timeout;
    };
    const Step close[] = {
        {tcp(false, kFin | kAck, 2001, 6401), 4, TcpState::kFinWait, to.tcp_fin_wait},
        {tcp(true, kAck, 6401, 2002), 5, TcpState::kCloseWait, to.tcp_close_wait},
        {tcp(true, kFin | kAck, 6401, 2002), 6, TcpState::kLastAck, to.tcp_last_ack},
        {tcp(false, kAck, 2002, 6402), 7, TcpState::kTimeWait, to.tcp_time_wait},
    };
    for (const Step &s : close) {
        EXPECT_EQ(track(s.p, s.at), Result::kOk);
        EXPECT_EQ(state(h.flow), s.want);
        expect_timeout(k, s.at, s.timeout);
    }
    // Both tuples reach the flow until then, and not after.
    EXPECT_TRUE(alive(tcp(true, kAck, 0, 0).key, 7 + to.tcp_time_wait - 1));
    EXPECT_EQ(track(tcp(true, kAck, 6402, 2002), 7 + to.tcp_time_wait + 1), Result::kNew);
    // A new SYN in TIME_WAIT starts the connection again.
    EXPECT_EQ(track(tcp(false, kSyn, 90000, 0), 8), Result::kOk);
    EXPECT_EQ(state(h.flow), TcpState::kSynSent);
    EXPECT_EQ(track(tcp(true, kSyn | kAck, 777, 90001), 9), Result::kOk);
    EXPECT_EQ(state(h.flow), TcpState::kSynRecv);
}

TEST_P(Conntrack, TcpTimeoutsComeFromTheConfig) {
    ct::Config cfg;
    cfg.timeouts.tcp_syn_sent = 7;
    cfg.timeouts.tcp_established = 100;
    make(cfg);
    const FlowKey k = tcp(false, kAck, 0, 0).key;
    ASSERT_EQ(create(tcp(false, kSyn, 1000, 0), 0), Result::kCreated);
    expect_timeout(k, 0, 7);
    EXPECT_EQ(track(tcp(true, kSyn | kAck, 5000, 1001), 1), Result::kOk);
    EXPECT_EQ(track(tcp(false, kAck, 1001, 5001), 2), Result::kOk);
    expect_timeout(k, 2, 100);
}

TEST_P(Conntrack, TcpRstClosesInWindowOnly) {
    const uint32_t f = handshake();
    // Far outside b's window: refused, nothing changes.
    EXPECT_EQ(track(tcp(true, kRst, 5001 + 50'000'000, 0), 3), Result::kTcpRstOutOfWindow);
    EXPECT_EQ(state(f), TcpState::kEstablished);
    EXPECT_EQ(c_.get(Result::kTcpRstOutOfWindow), 1u);
    EXPECT_EQ(track(tcp(true, kRst | kAck, 5001, 1001), 3), Result::kOk);
    EXPECT_EQ(state(f), TcpState::kClose);
    expect_timeout(tcp(false, kAck, 0, 0).key, 3, ct::Timeouts{}.tcp_close);
}

TEST_P(Conntrack, TcpRstToSynMustAckIt) {
    Hit h;
    ASSERT_EQ(create(tcp(false, kSyn, 1000, 0), 0, &h), Result::kCreated);
    EXPECT_EQ(track(tcp(true, kRst | kAck, 0, 4242), 1), Result::kTcpRstOutOfWindow);
    EXPECT_EQ(track(tcp(true, kRst, 0, 0), 1), Result::kTcpRstOutOfWindow);
    EXPECT_EQ(state(h.flow), TcpState::kSynSent);
    EXPECT_EQ(track(tcp(true, kRst | kAck, 0, 1001), 1), Result::kOk);  // connection refused
    EXPECT_EQ(state(h.flow), TcpState::kClose);
}

TEST_P(Conntrack, TcpSynAckMustAckTheSyn) {
    Hit h;
    ASSERT_EQ(create(tcp(false, kSyn, 1000, 0), 0, &h), Result::kCreated);
    EXPECT_EQ(track(tcp(true, kSyn | kAck, 5000, 1000), 1), Result::kTcpInvalid);
    EXPECT_EQ(track(tcp(true, kSyn | kAck, 5000, 9999), 1), Result::kTcpInvalid);
    EXPECT_EQ(state(h.flow), TcpState::kSynSent);
    // The initiator cannot answer its own SYN, nor ACK before the SYN/ACK.
    EXPECT_EQ(track(tcp(false, kSyn | kAck, 1000, 1), 1), Result::kTcpInvalid);
    EXPECT_EQ(track(tcp(false, kAck, 1001, 5001), 1), Result::kTcpInvalid);
    EXPECT_EQ(track(tcp(true, kSyn | kAck, 5000, 1001), 1), Result::kOk);
    EXPECT_EQ(state(h.flow), TcpState::kSynRecv);
    // A retransmitted SYN/ACK passes without a change.
    EXPECT_EQ(track(tcp(true, kSyn | kAck, 5000, 1001), 1), Result::kTcpIgnored);
}

TEST_P(Conntrack, TcpSimultaneousOpen) {
    Hit h;
    ASSERT_EQ(create(tcp(false, kSyn, 1000, 0), 0, &h), Result::kCreated);
    EXPECT_EQ(track(tcp(true, kSyn, 5000, 0), 1), Result::kOk);
    EXPECT_EQ(state(h.flow), TcpState::kSynSent2);
    EXPECT_EQ(track(tcp(false, kSyn | kAck, 1000, 5001), 2), Result::kOk);
    EXPECT_EQ(state(h.flow), TcpState::kSynRecv);
    EXPECT_EQ(track(tcp(true, kSyn | kAck, 5000, 1001), 2), Result::kTcpIgnored);
    EXPECT_EQ(track(tcp(false, kAck, 1001, 5001), 3), Result::kOk);
    EXPECT_EQ(state(h.flow), TcpState::kEstablished);
}

TEST_P(Conntrack, TcpWindowRefusals) {
    const uint32_t f = handshake();
    // b advertised 65160 at its SYN/ACK: a may send up to 1001 + 65160.
    EXPECT_EQ(track(tcp(false, kAck, 1001 + 60000, 5001, 502, 100), 3), Result::kOk);
    EXPECT_EQ(track(tcp(false, kAck, 1001 + 70000, 5001, 502, 100), 3), Result::kTcpOutOfWindow);
    EXPECT_EQ(track(tcp(false, kAck, 1001 + 2'000'000'000u, 5001), 3), Result::kTcpOutOfWindow);
    // Far behind: more than a window before what a sent.
    EXPECT_EQ(track(tcp(false, kAck, 1001 - 1'000'000, 5001), 3), Result::kTcpOutOfWindow);
    // b acknowledges what a never sent.
    EXPECT_EQ(track(tcp(true, kAck, 5001, 1001 + 90000), 3), Result::kTcpOutOfWindow);
    // b acknowledges what a sent.
    EXPECT_EQ(track(tcp(true, kAck, 5001, 61101), 3), Result::kOk);
    EXPECT_EQ(state(f), TcpState::kEstablished);
    EXPECT_EQ(c_.get(Result::kTcpOutOfWindow), 4u);
    // A refused segment does not refresh the flow.
    const FlowKey k = tcp(false, kAck, 0, 0).key;
    EXPECT_EQ(track(tcp(false, kAck, 1001 + 2'000'000'000u, 5001), 1000), Result::kTcpOutOfWindow);
    expect_timeout(k, 3, ct::Timeouts{}.tcp_established);
}

TEST_P(Conntrack, TcpWindowScaling) {
    handshake(7, 7);  // both offer: windows count in units of 128
    // b's window of 65160 at the SYN/ACK is not scaled; its ACK of 1000 is.
    EXPECT_EQ(track(tcp(true, kAck, 5001, 1001, 1000), 3), Result::kOk);
    EXPECT_EQ(track(tcp(false, kAck, 1001 + 100000, 5001, 502, 1000), 3), Result::kOk);
}

TEST_P(Conntrack, TcpNoScalingUnlessBothOffer) {
    handshake(7, 0xff);
    EXPECT_EQ(track(tcp(true, kAck, 5001, 1001, 1000), 3), Result::kOk);
    EXPECT_EQ(track(tcp(false, kAck, 1001 + 100000, 5001, 502, 1000), 3), Result::kTcpOutOfWindow);
}

TEST_P(Conntrack, TcpLiberalConfigTurnsWindowChecksOff) {
    ct::Config cfg;
    cfg.tcp_liberal = true;
    make(cfg);
    handshake();
    EXPECT_EQ(track(tcp(false, kAck, 1001 + 2'000'000'000u, 5001), 3), Result::kOk);
}

TEST_P(Conntrack, TcpFirstPacketWithoutSyn) {
    ct::Config strict;
    strict.tcp_loose = false;
    make(strict);
    EXPECT_EQ(create(tcp(false, kAck, 1000, 1), 0), Result::kTcpNotSyn);
    EXPECT_EQ(c_.get(Result::kTcpNotSyn), 1u);
    make();  // the default picks it up, as Linux's nf_conntrack_tcp_loose=1
    ASSERT_TRUE(ct::Config{}.tcp_loose);
    Hit h;
    EXPECT_EQ(create(tcp(false, kAck, 1000, 1), 0, &h), Result::kCreated);
    EXPECT_EQ(state(h.flow), TcpState::kEstablished);
    // Its window is unknown: no window checks for it.
    EXPECT_EQ(track(tcp(true, kAck, 123456, 1000), 1), Result::kOk);
    EXPECT_EQ(track(tcp(false, kAck, 1000 + 500'000'000, 123456), 1), Result::kOk);
    // SYN/ACK, FIN, RST never start a flow.
    EXPECT_EQ(create(tcp(false, kSyn | kAck, 1, 1), 0), Result::kTcpNotSyn);
    EXPECT_EQ(create(tcp(false, kRst, 1, 1), 0), Result::kTcpNotSyn);
    Packet fin = tcp(false, kFin | kAck, 1, 1);
    fin.key.sport = Be16::from_host(999);
    EXPECT_EQ(create(fin, 0), Result::kTcpNotSyn);
}

TEST_P(Conntrack, TcpBadFlags) {
    EXPECT_EQ(create(tcp(false, kSyn | kFin, 1000, 0), 0), Result::kTcpBadFlags);
    EXPECT_EQ(create(tcp(false, 0, 1000, 0), 0), Result::kTcpBadFlags);
    EXPECT_EQ(create(tcp(false, kFin, 1000, 0), 0), Result::kTcpBadFlags);
    const uint32_t f = handshake();
    EXPECT_EQ(track(tcp(true, kSyn | kRst, 5001, 1001), 3), Result::kTcpBadFlags);
    EXPECT_EQ(state(f), TcpState::kEstablished);
}

// --- UDP, ICMP, other protocols ---

TEST_P(Conntrack, UdpUnrepliedThenStream) {
    const ct::Timeouts to;
    Hit h;
    ASSERT_EQ(create(udp(false), 0, &h), Result::kCreated);
    expect_timeout(udp(false).key, 0, to.udp_unreplied);
    EXPECT_EQ(track(udp(false), 10), Result::kOk);
    expect_timeout(udp(false).key, 10, to.udp_unreplied);
    Hit r;
    EXPECT_EQ(track(udp(true), 11, &r), Result::kOk);
    EXPECT_EQ(r.dir, Dir::kReply);
    EXPECT_EQ(r.flow, h.flow);
    EXPECT_TRUE(t_->flow(h.flow).status.load() & ct::kStatusReplied);
    expect_timeout(udp(false).key, 11, to.udp_replied);
    // Another port pair is another flow.
    EXPECT_EQ(track(udp(false, 5354), 12), Result::kNew);
}

TEST_P(Conntrack, SctpIsKeyedByPorts) {
    Packet p;
    p.key = e_.base(kProtoSctp, 3868, 3868);
    ASSERT_EQ(create(p, 0), Result::kCreated);
    Packet back;
    back.key = e_.base(kProtoSctp, 3868, 3868, true);
    Hit h;
    EXPECT_EQ(track(back, 1, &h), Result::kOk);
    EXPECT_EQ(h.dir, Dir::kReply);
    back.key.sport = Be16::from_host(3869);
    EXPECT_EQ(track(back, 1), Result::kNew);
    expect_timeout(p.key, 1, ct::Timeouts{}.generic);
}

TEST_P(Conntrack, IcmpEchoByIdentifier) {
    Hit h;
    ASSERT_EQ(create(echo(false, true, 0x4242), 0, &h), Result::kCreated);
    Hit r;
    EXPECT_EQ(track(echo(true, false, 0x4242), 1, &r), Result::kOk);
    EXPECT_EQ(r.flow, h.flow);
    EXPECT_EQ(r.dir, Dir::kReply);
    EXPECT_EQ(track(echo(false, true, 0x4242), 2, &r), Result::kOk);
    EXPECT_EQ(r.dir, Dir::kOrig);
    // Another identifier, or a request the other way with the same one: no flow.
    EXPECT_EQ(track(echo(true, false, 0x4243), 2), Result::kNew);
    EXPECT_EQ(track(echo(true, true, 0x4242), 2), Result::kNew);
    // A reply never starts a flow.
    EXPECT_EQ(create(echo(true, false, 0x9999), 2), Result::kIcmpNoRequest);
    expect_timeout(echo(false, true, 0x4242).key, 2, ct::Timeouts{}.icmp);
}

TEST_P(Conntrack, GenericProtocolByAddressesAndProtocol) {
    Packet gre;
    gre.key = e_.base(kProtoGre, 0, 0);
    Hit h;
    ASSERT_EQ(create(gre, 0, &h), Result::kCreated);
    Packet back;
    back.key = e_.base(kProtoGre, 0, 0, true);
    Hit r;
    EXPECT_EQ(track(back, 1, &r), Result::kOk);
    EXPECT_EQ(r.dir, Dir::kReply);
    Packet other = gre;
    other.key.proto = 50;  // ESP between the same ends: another flow
    EXPECT_EQ(track(other, 1), Result::kNew);
    expect_timeout(gre.key, 1, ct::Timeouts{}.generic);
}

// --- capacity, collisions, ageing ---

TEST_P(Conntrack, FullTableRefusesNewFlowsKeepsEstablished) {
    ct::Config cfg;
    cfg.capacity = 16;
    make(cfg);
    const uint32_t f = handshake();  // one TCP flow
    for (uint16_t i = 0; i < 15; i++) {
        ASSERT_EQ(create(udp(false, static_cast<uint16_t>(1000 + i)), 0), Result::kCreated) << i;
    }
    EXPECT_EQ(t_->in_use(), 16u);
    EXPECT_EQ(create(udp(false, 2000), 3), Result::kTableFull);
    Packet syn = tcp(false, kSyn, 1, 0);
    syn.key.sport = Be16::from_host(4321);
    EXPECT_EQ(create(syn, 3), Result::kTableFull);
    EXPECT_EQ(c_.get(Result::kTableFull), 2u);
    // The established flow goes on, both ways.
    EXPECT_EQ(track(tcp(false, kAck, 1001, 5001, 502, 100), 3), Result::kOk);
    EXPECT_EQ(track(tcp(true, kAck, 5001, 1101), 3), Result::kOk);
    EXPECT_EQ(state(f), TcpState::kEstablished);
    // Once the UDP flows expired and ageing freed them, new flows fit again.
    EXPECT_EQ(t_->age(at(100), 16), 15u);
    EXPECT_EQ(t_->pending_free(), 15u);
    t_->age(at(100), 0);  // frees what passed its grace period (no reader registered)
    EXPECT_EQ(t_->pending_free(), 0u);
    EXPECT_EQ(create(udp(false, 2000), 100), Result::kCreated);
    EXPECT_EQ(track(tcp(false, kAck, 1101, 5001), 100), Result::kOk);
}

TEST_P(Conntrack, EveryFlowIsFoundBothWaysInAFullTable) {
    // 4096 flows at the index's design load: keys sit in every slot of both
    // their buckets, so probe() picks a slot at every position. Each key is
    // looked up through the burst phases (prepare, probe, track) and alone.
    ct::Config cfg;
    cfg.capacity = 4096;
    make(cfg);
    std::vector<uint32_t> flows;
    for (uint32_t i = 0; i < cfg.capacity; i++) {
        Hit h;
        const auto aport = static_cast<uint16_t>(1024 + i % 60000);
        const auto bport = static_cast<uint16_t>(1 + i / 60000);
        ASSERT_EQ(create(udp(false, aport, bport), 0, &h), Result::kCreated) << i;
        flows.push_back(h.flow);
    }
    for (uint32_t i = 0; i < cfg.capacity; i++) {
        const auto aport = static_cast<uint16_t>(1024 + i % 60000);
        const auto bport = static_cast<uint16_t>(1 + i / 60000);
        for (const bool from_b : {false, true}) {
            const Packet p = udp(from_b, aport, bport);
            ct::Lookup l;
            t_->prepare(p.key, l);
            t_->probe(l);
            ASSERT_NE(l.slot, 0u) << i;
            Hit h;
            ASSERT_EQ(t_->track(p, l, at(1), h, c_), Result::kOk) << i;
            EXPECT_EQ(h.flow, flows[i]) << i;
            EXPECT_EQ(h.dir, from_b ? Dir::kReply : Dir::kOrig) << i;
            EXPECT_TRUE(alive(p.key, 1)) << i;
        }
    }
    // A key of no flow probes to nothing.
    ct::Lookup l;
    t_->prepare(udp(false, 9, 9).key, l);
    t_->probe(l);
    Hit h;
    EXPECT_EQ(t_->track(udp(false, 9, 9), l, at(1), h, c_), Result::kNew);
}

TEST_P(Conntrack, ReplyTupleCollisionIsRefused) {
    // SNAT: a:1234 -> b:80 leaves as nat:40000 -> b:80, its reply comes back
    // to nat:40000.
    auto snat_reply = [&](uint16_t src_port, uint16_t nat_port) {
        FlowKey r = e_.base(6, 80, src_port, true);
        r.dst = e_.nat;
        r.dport = Be16::from_host(nat_port);
        return r;
    };
    Hit h1;
    Packet p1 = tcp(false, kSyn, 1000, 0);
    ASSERT_EQ(t_->create(p1, snat_reply(1234, 40000), at(0), {7, 8, 1}, h1, c_), Result::kCreated);
    const ct::Flow &f = t_->flow(h1.flow);
    EXPECT_EQ(f.changes_for(Dir::kOrig), ct::kChangeSrcAddr | ct::kChangeSrcPort);
    EXPECT_EQ(f.changes_for(Dir::kReply), ct::kChangeDstAddr | ct::kChangeDstPort);
    EXPECT_EQ(f.translated(Dir::kOrig).src, e_.nat);
    EXPECT_EQ(f.translated(Dir::kOrig).sport.host(), 40000);
    EXPECT_EQ(f.translated(Dir::kReply).dst, e_.a);
    EXPECT_EQ(f.translated(Dir::kReply).dport.host(), 1234);
    EXPECT_EQ(f.nat_service, 7u);
    // Another pod port wanting the same translated port: refused, then another port.
    Packet p2 = tcp(false, kSyn, 1000, 0);
    p2.key.sport = Be16::from_host(1235);
    Hit h2;
    EXPECT_EQ(t_->create(p2, snat_reply(1235, 40000), at(0), {}, h2, c_), Result::kReplyExists);
    EXPECT_EQ(t_->in_use(), 1u);
    EXPECT_EQ(t_->create(p2, snat_reply(1235, 40001), at(0), {}, h2, c_), Result::kCreated);
    // The original tuple twice: exists.
    EXPECT_EQ(t_->create(p1, snat_reply(1234, 40002), at(0), {}, h2, c_), Result::kExists);
    // The reply arrives at the translated tuple.
    Packet back;
    back.key = snat_reply(1234, 40000);
    back.tcp_flags = kSyn | kAck;
    back.seq = 5000;
    back.ack = 1001;
    back.win = 1000;
    Hit r;
    EXPECT_EQ(t_->track(back, at(1), r, c_), Result::kOk);
    EXPECT_EQ(r.flow, h1.flow);
    EXPECT_EQ(r.dir, Dir::kReply);
    // Once the first flow is gone (flushed), its reply tuple is free again.
    ct::Filter fl;
    fl.port = 1234;
    EXPECT_EQ(t_->flush(fl), 1u);
    Packet p3 = p2;
    p3.key.sport = Be16::from_host(1236);
    EXPECT_EQ(t_->create(p3, snat_reply(1236, 40000), at(2), {}, h2, c_), Result::kCreated);
}

TEST_P(Conntrack, AgeingRemovesExactlyTheExpired) {
    // Flows with 30 s (unreplied UDP), 120 s (replied UDP), 30 s (ICMP),
    // 600 s (generic) timeouts.
    std::vector<std::pair<FlowKey, double>> flows;  // key, expiry
    for (uint16_t i = 0; i < 20; i++) {
        ASSERT_EQ(create(udp(false, static_cast<uint16_t>(3000 + i)), i), Result::kCreated);
        flows.push_back({udp(false, static_cast<uint16_t>(3000 + i)).key, i + 30.0});
    }
    for (uint16_t i = 0; i < 5; i++) {
        ASSERT_EQ(track(udp(true, static_cast<uint16_t>(3000 + i)), 20), Result::kOk);
        flows[i].second = 20 + 120.0;
    }
    ASSERT_EQ(create(echo(false, true, 77), 5), Result::kCreated);
    flows.push_back({echo(false, true, 77).key, 35});
    Packet gre;
    gre.key = e_.base(kProtoGre, 0, 0);
    ASSERT_EQ(create(gre, 0), Result::kCreated);
    flows.push_back({gre.key, 600});
    for (double now : {10.0, 37.5, 100.0, 200.0, 700.0}) {
        const uint32_t before = t_->in_use();
        // Ageing in small steps: 8 entries a call, around the whole table.
        uint32_t removed = 0;
        for (uint32_t i = 0; i < t_->capacity(); i += 8) {
            removed += t_->age(at(now), 8);
        }
        const auto still = static_cast<uint32_t>(std::count_if(
            flows.begin(), flows.end(), [&](const auto &f) { return f.second > now; }));
        EXPECT_EQ(t_->in_use(), still) << "at " << now;
        EXPECT_EQ(before - t_->in_use(), removed) << "at " << now;
        for (const auto &[k, exp] : flows) {
            EXPECT_EQ(alive(k, now), exp > now) << k.str() << " at " << now;
        }
    }
    EXPECT_EQ(t_->in_use(), 0u);
}

TEST_P(Conntrack, FreedOnlyAfterTheGracePeriod) {
    ct::Config cfg;
    cfg.capacity = 4;
    make(cfg);
    // A reader that has not reported since: nothing is freed.
    ASSERT_EQ(rte_rcu_qsbr_thread_register(rcu_.q, 1), 0);
    rte_rcu_qsbr_thread_online(rcu_.q, 1);
    for (uint16_t i = 0; i < 4; i++) {
        ASSERT_EQ(create(udp(false, static_cast<uint16_t>(100 + i)), 0), Result::kCreated);
    }
    EXPECT_EQ(t_->age(at(31), 4), 4u);
    EXPECT_EQ(t_->in_use(), 0u);
    EXPECT_EQ(create(udp(false, 200), 31), Result::kTableFull);  // unlinked, not free
    t_->age(at(32), 4);
    EXPECT_EQ(t_->pending_free(), 4u);
    EXPECT_EQ(create(udp(false, 200), 32), Result::kTableFull);
    rte_rcu_qsbr_quiescent(rcu_.q, 1);
    t_->age(at(33), 0);
    EXPECT_EQ(t_->pending_free(), 0u);
    EXPECT_EQ(create(udp(false, 200), 33), Result::kCreated);
    rte_rcu_qsbr_thread_offline(rcu_.q, 1);
    rte_rcu_qsbr_thread_unregister(rcu_.q, 1);
}

TEST_P(Conntrack, ExpiredFlowIsReplacedByANewOne) {
    ASSERT_EQ(create(udp(false), 0), Result::kCreated);
    EXPECT_EQ(track(udp(false), 31), Result::kNew);  // expired, not aged yet
    Hit h;
    EXPECT_EQ(create(udp(false), 31, &h), Result::kCreated);
    EXPECT_EQ(t_->in_use(), 1u);
    EXPECT_EQ(t_->pending_free(), 1u);
    EXPECT_EQ(track(udp(true), 32), Result::kOk);
}

// --- listings ---

TEST_P(Conntrack, SnapshotCountFlushWithFilters) {
    handshake();
    ASSERT_EQ(create(udp(false), 0), Result::kCreated);
    ASSERT_EQ(create(echo(false, true, 5), 0), Result::kCreated);
    ct::Filter all;
    EXPECT_EQ(t_->count(all, at(3)), 3u);
    ct::Filter tcp_only;
    tcp_only.proto = 6;
    EXPECT_EQ(t_->count(tcp_only, at(3)), 1u);
    ct::Filter est;
    est.state = TcpState::kEstablished;
    EXPECT_EQ(t_->count(est, at(3)), 1u);
    ct::Filter port53;
    port53.port = 53;
    EXPECT_EQ(t_->count(port53, at(3)), 1u);
    ct::Filter by_b;
    by_b.addr = ct::Filter::Addr{static_cast<uint8_t>(e_.v6 ? 6 : 4), e_.b};
    EXPECT_EQ(t_->count(by_b, at(3)), 3u);
    ct::Filter by_nat;
    by_nat.addr = ct::Filter::Addr{static_cast<uint8_t>(e_.v6 ? 6 : 4), e_.nat};
    EXPECT_EQ(t_->count(by_nat, at(3)), 0u);
    ct::Filter other_family;
    other_family.family = e_.v6 ? 4 : 6;
    EXPECT_EQ(t_->count(other_family, at(3)), 0u);

    std::vector<ct::FlowInfo> out(8);
    uint32_t cursor = 0;
    size_t n = t_->snapshot(&cursor, all, at(3), out.data(), 2);
    EXPECT_EQ(n, 2u);
    n += t_->snapshot(&cursor, all, at(3), out.data() + n, out.size() - n);
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(cursor, t_->capacity());
    EXPECT_EQ(out[0].state, TcpState::kEstablished);
    EXPECT_EQ(out[0].orig, tcp(false, kAck, 0, 0).key);
    EXPECT_NEAR(static_cast<double>(out[0].expires_in_ms), (432000.0 - 1) * 1000, 5);
    EXPECT_EQ(out[1].kind, ct::L4Kind::kUdp);
    EXPECT_NE(out[1].orig.str().find(e_.v6 ? "[fd00:65::2]:5353" : "10.65.0.2:5353"),
              std::string::npos)
        << out[1].orig.str();

    EXPECT_EQ(t_->flush(tcp_only), 1u);
    EXPECT_FALSE(alive(tcp(false, kAck, 0, 0).key, 3));
    EXPECT_EQ(t_->count(all, at(3)), 2u);
    EXPECT_EQ(t_->age(at(3), t_->capacity()), 1u);
    EXPECT_EQ(t_->flush(all), 2u);
    EXPECT_EQ(t_->age(at(3), t_->capacity()), 2u);
    EXPECT_EQ(t_->in_use(), 0u);
}

TEST(ConntrackConfig, ValidateNamesTheField) {
    ct::Config c;
    EXPECT_EQ(c.validate(), "");
    c.timeouts.udp_replied = 0;
    EXPECT_NE(c.validate().find("timeouts.udp_replied"), std::string::npos);
    c = {};
    c.timeouts.tcp_established = ct::kMaxTimeout + 1;
    EXPECT_NE(c.validate().find("timeouts.tcp_established"), std::string::npos);
    c = {};
    c.capacity = 0;
    EXPECT_NE(c.validate().find("capacity"), std::string::npos);
    Rcu rcu;
    EXPECT_THROW(ConnTable(c, kHz, rcu.q), std::invalid_argument);
}

TEST(ConntrackIndex, SlotMasksAgreeWithTheScalarReference) {
    // Buckets of empty slots, slots of the signature looked for, of another
    // one, and of values whose low half (the entry) equals it.
    std::mt19937_64 rng(7);
    alignas(64) std::atomic<uint64_t> bucket[8];
    for (int round = 0; round < 20000; round++) {
        const auto sig = static_cast<uint32_t>(rng()) | 1;
        for (auto &slot : bucket) {
            const uint64_t ref = rng() & 0xffffff;
            switch (rng() % 4) {
                case 0:
                    slot.store(0);
                    break;
                case 1:
                    slot.store(uint64_t{sig} << 32 | ref);
                    break;
                case 2:
                    slot.store(uint64_t{sig ^ (1u << (rng() % 32))} << 32 | ref);
                    break;
                default:
                    slot.store((rng() << 32) | sig);
                    break;
            }
        }
        const auto fast = ct::detail::slot_masks(bucket, sig);
        const auto ref = ct::detail::slot_masks_scalar(bucket, sig);
        ASSERT_EQ(fast.empty, ref.empty) << round;
        ASSERT_EQ(fast.match, ref.match) << round;
    }
}

TEST(ConntrackConfig, BytesPerFlow) {
    // The cost of a million flows, for the config's capacity.
    const size_t b = ConnTable::bytes_per_flow();
    std::printf("conntrack: %zu bytes per flow, %zu MiB for 1M flows\n", b, b);
    ::testing::Test::RecordProperty("bytes_per_flow", static_cast<int>(b));
    EXPECT_EQ(sizeof(ct::Flow), 128u);
    EXPECT_LE(b, 200u);
}

// --- packets: parsing and ICMP errors ---

// A frame from the builder as ip4_input / ip6_input leave it: meta with the
// offsets (no options, no extension headers unless ext_len) and protocol.
class ConntrackPackets : public Conntrack {
  protected:
    rte_mbuf *mk(const PacketBuilder &b, uint8_t proto, uint16_t ext_len = 0, uint8_t flags = 0) {
        rte_mbuf *m = b.mbuf(Lab::get().pool(), 0);
        PktMeta &md = meta(m);
        md = {};
        md.l3_off = 14;
        md.l4_off = static_cast<uint16_t>(14 + (e_.v6 ? 40 + ext_len : 20));
        md.l4_proto = proto;
        md.flags = flags;
        held_.push_back(m);
        return m;
    }
    void TearDown() override {
        for (rte_mbuf *m : held_) {
            rte_pktmbuf_free(m);
        }
    }
    PacketBuilder ip(bool from_b) const {
        PacketBuilder b;
        b.eth(kPodMac, kRouterMac);
        const auto &s = from_b ? e_.b : e_.a;
        const auto &d = from_b ? e_.a : e_.b;
        if (e_.v6) {
            b.ip6(s, d);
        } else {
            b.ip4(be_host(s), be_host(d));
        }
        return b;
    }
    static uint32_t be_host(const std::array<uint8_t, 16> &x) {
        return (uint32_t{x[0]} << 24) | (x[1] << 16) | (x[2] << 8) | x[3];
    }
    // An ICMP error from a router to `to` quoting `quoted` (an IP packet,
    // without Ethernet), cut to `quote_len` bytes.
    rte_mbuf *error_to(bool to_a, const Bytes &quoted, size_t quote_len, uint8_t type4 = 3,
                       uint8_t type6 = 1) {
        PacketBuilder b;
        b.eth(kRouterMac, kPodMac);
        const auto &d = to_a ? e_.a : e_.b;
        if (e_.v6) {
            b.ip6(ip6("2001:db8:ffff::1"), d).icmp(type6, 0, 0);
        } else {
            b.ip4(ip4("198.51.100.1"), be_host(d)).icmp(type4, 1, 0);
        }
        b.payload(Bytes(quoted.begin(),
                        quoted.begin() + static_cast<long>(std::min(quote_len, quoted.size()))));
        return mk(b, e_.v6 ? 58 : 1);
    }
    static Bytes no_eth(const Bytes &f) { return Bytes(f.begin() + 14, f.end()); }
    Result match(rte_mbuf *m, Hit *hit = nullptr) {
        Hit h;
        const Result r = t_->match_icmp_error(m, meta(m), e_.v6, at(1), h, c_);
        if (hit != nullptr) {
            *hit = h;
        }
        return r;
    }
    Result parse(rte_mbuf *m, Packet &p) const { return ct::parse(m, meta(m), e_.v6, p); }
    std::vector<rte_mbuf *> held_;
    static inline const Mac kPodMac = {0x02, 0, 0, 0, 0, 1};
    static inline const Mac kRouterMac = {0x02, 0, 0, 0, 0, 2};
};

INSTANTIATE_TEST_SUITE_P(Family, ConntrackPackets, ::testing::Values(false, true),
                         [](const auto &i) { return i.param ? "ip6" : "ip4"; });

TEST_P(ConntrackPackets, ParsesTcpWithWindowScale) {
    // A SYN with MSS, NOP, window scale 9 (capped at 14 when larger).
    Bytes tcp = {0x04, 0xd2, 0x00, 0x50, 0,    0,    0x03, 0xe8, 0, 0,    0,
                 0,    0x80, 0x02, 0xfa, 0xf0, 0,    0,    0,    0, 0x02, 0x04,
                 0x05, 0xb4, 0x01, 0x03, 0x03, 0x09, 0,    0,    0, 0};
    Packet p;
    ASSERT_EQ(parse(mk(ip(false).next_proto(6).payload(tcp), 6), p), Result::kOk);
    EXPECT_EQ(p.key, e_.base(6, 1234, 80));
    EXPECT_EQ(p.tcp_flags, kSyn);
    EXPECT_EQ(p.seq, 1000u);
    EXPECT_EQ(p.win, 0xfaf0);
    EXPECT_EQ(p.wscale, 9);
    EXPECT_EQ(p.payload, 0u);
    tcp[27] = 20;
    tcp.insert(tcp.end(), {1, 2, 3});  // and 3 payload bytes
    ASSERT_EQ(parse(mk(ip(false).next_proto(6).payload(tcp), 6), p), Result::kOk);
    EXPECT_EQ(p.wscale, 14);
    EXPECT_EQ(p.payload, 3u);
    // The data offset points beyond the segment.
    Bytes cut(tcp.begin(), tcp.begin() + 24);
    EXPECT_EQ(parse(mk(ip(false).next_proto(6).payload(cut), 6), p), Result::kTruncated);
}

TEST_P(ConntrackPackets, ParsesUdpEchoGenericAndRefusesTheRest) {
    Packet p;
    ASSERT_EQ(parse(mk(ip(true).udp(53, 5353), 17), p), Result::kOk);
    EXPECT_EQ(p.key, udp(true).key);
    ASSERT_EQ(parse(mk(ip(false).echo_request(0x4242, 3), e_.v6 ? 58 : 1), p), Result::kOk);
    EXPECT_EQ(p.key, echo(false, true, 0x4242).key);
    ASSERT_EQ(parse(mk(ip(false).next_proto(kProtoGre).payload(8), kProtoGre), p), Result::kOk);
    EXPECT_EQ(p.key, e_.base(kProtoGre, 0, 0));
    // A later fragment has no ports; a cut UDP header; ICMP that is no echo.
    EXPECT_EQ(parse(mk(ip(false).udp(1, 2), 17, 0, kMetaFragment | kMetaLaterFragment), p),
              Result::kFragment);
    EXPECT_EQ(parse(mk(ip(false).next_proto(17).payload(3), 17), p), Result::kTruncated);
    EXPECT_EQ(parse(mk(ip(false).icmp(e_.v6 ? 135 : 13, 0), e_.v6 ? 58 : 1), p),
              Result::kNotTracked);
    EXPECT_EQ(parse(mk(ip(false).icmp(e_.v6 ? 1 : 3, 0).payload(28), e_.v6 ? 58 : 1), p),
              Result::kIcmpError);
}

TEST_P(ConntrackPackets, IcmpErrorFindsTheFlowAndItsDirection) {
    Hit h;
    ASSERT_EQ(create(tcp(false, kSyn, 1000, 0), 0, &h), Result::kCreated);
    ASSERT_EQ(create(udp(false), 0), Result::kCreated);
    ASSERT_EQ(create(echo(false, true, 0x77), 0), Result::kCreated);
    // A router answers a's packet to b: the error travels b's way (reply).
    const Bytes q_tcp = no_eth(ip(false).tcp(1234, 80).build());
    Hit e;
    EXPECT_EQ(match(error_to(true, q_tcp, q_tcp.size()), &e), Result::kOk);
    EXPECT_EQ(e.flow, h.flow);
    EXPECT_EQ(e.dir, Dir::kReply);
    // RFC 792's minimum: the IP header and 8 bytes.
    EXPECT_EQ(match(error_to(true, q_tcp, (e_.v6 ? 40 : 20) + 8)), Result::kOk);
    // Time exceeded, packet too big (v6) / parameter problem (v4) too.
    EXPECT_EQ(match(error_to(true, q_tcp, q_tcp.size(), 11, 2)), Result::kOk);
    EXPECT_EQ(match(error_to(true, q_tcp, q_tcp.size(), 12, 4)), Result::kOk);
    const Bytes q_udp = no_eth(ip(false).udp(5353, 53).build());
    EXPECT_EQ(match(error_to(true, q_udp, q_udp.size())), Result::kOk);
    const Bytes q_echo = no_eth(ip(false).echo_request(0x77, 1).build());
    EXPECT_EQ(match(error_to(true, q_echo, q_echo.size())), Result::kOk);
    // b's packet to a answered by a router: the error goes a's way (orig).
    const Bytes q_back = no_eth(ip(true).tcp(80, 1234).build());
    EXPECT_EQ(match(error_to(false, q_back, q_back.size()), &e), Result::kOk);
    EXPECT_EQ(e.dir, Dir::kOrig);
    // No such flow.
    const Bytes q_other = no_eth(ip(false).tcp(1234, 81).build());
    EXPECT_EQ(match(error_to(true, q_other, q_other.size())), Result::kIcmpErrorNoFlow);
    EXPECT_EQ(c_.get(Result::kIcmpErrorNoFlow), 1u);
}

TEST_P(ConntrackPackets, IcmpErrorQuotingTheTranslatedTuple) {
    // SNAT a:1234 -> nat:40000: a router beyond quotes nat:40000 -> b:80.
    FlowKey reply = e_.base(6, 80, 1234, true);
    reply.dst = e_.nat;
    reply.dport = Be16::from_host(40000);
    Hit h;
    ASSERT_EQ(t_->create(tcp(false, kSyn, 1000, 0), reply, at(0), {}, h, c_), Result::kCreated);
    PacketBuilder q;
    q.eth(kPodMac, kRouterMac);
    if (e_.v6) {
        q.ip6(e_.nat, e_.b);
    } else {
        q.ip4(be_host(e_.nat), be_host(e_.b));
    }
    const Bytes quoted = no_eth(q.tcp(40000, 80).build());
    Hit e;
    EXPECT_EQ(match(error_to(true, quoted, quoted.size()), &e), Result::kOk);
    EXPECT_EQ(e.flow, h.flow);
    EXPECT_EQ(e.dir, Dir::kReply);
    // The untranslated quote is not this flow's.
    const Bytes raw = no_eth(ip(false).tcp(1234, 80).build());
    EXPECT_EQ(match(error_to(true, raw, raw.size())), Result::kIcmpErrorNoFlow);
}

TEST_P(ConntrackPackets, IcmpErrorWithTruncatedOrGarbageQuote) {
    ASSERT_EQ(create(tcp(false, kSyn, 1000, 0), 0), Result::kCreated);
    const size_t ip_len = e_.v6 ? 40 : 20;
    const Bytes q = no_eth(ip(false).tcp(1234, 80).build());
    // Cut inside the IP header, and inside the ports.
    EXPECT_EQ(match(error_to(true, q, ip_len - 1)), Result::kIcmpErrorTruncated);
    EXPECT_EQ(match(error_to(true, q, ip_len + 3)), Result::kIcmpErrorTruncated);
    EXPECT_EQ(match(error_to(true, q, 0)), Result::kIcmpErrorTruncated);
    // An echo quote needs its identifier (8 bytes).
    const Bytes qe = no_eth(ip(false).echo_request(9, 1).build());
    EXPECT_EQ(match(error_to(true, qe, ip_len + 5)), Result::kIcmpErrorTruncated);
    // A wrong IP version in the quote.
    Bytes bad = q;
    bad[0] = static_cast<uint8_t>((e_.v6 ? 4 : 6) << 4 | (bad[0] & 0xf));
    EXPECT_EQ(match(error_to(true, bad, bad.size())), Result::kIcmpErrorBadQuote);
    // An error quoting an error.
    const Bytes qerr = no_eth(ip(false).icmp(e_.v6 ? 1 : 3, 0).payload(8).build());
    EXPECT_EQ(match(error_to(true, qerr, qerr.size())), Result::kIcmpErrorBadQuote);
    // A later fragment quoted (no ports in it).
    const Bytes qfrag = no_eth(e_.v6 ? ip(false).fragment(2, false).tcp(1234, 80).build()
                                     : ip(false).frag_offset(2).tcp(1234, 80).build());
    EXPECT_EQ(match(error_to(true, qfrag, qfrag.size())), Result::kIcmpErrorBadQuote);
    if (!e_.v6) {
        Bytes ihl = q;
        ihl[0] = 0x43;  // IHL 3: shorter than an IPv4 header
        EXPECT_EQ(match(error_to(true, ihl, ihl.size())), Result::kIcmpErrorBadQuote);
    } else {
        // A first fragment's header is walked over to the ports.
        const Bytes first = no_eth(ip(false).fragment(0, true).tcp(1234, 80).build());
        EXPECT_EQ(match(error_to(true, first, first.size())), Result::kOk);
    }
    // Garbage bytes of every length never read out of bounds (ASan) and never match.
    Bytes junk(64);
    for (size_t i = 0; i < junk.size(); i++) {
        junk[i] = static_cast<uint8_t>(i * 37 + 11);
    }
    for (size_t n = 0; n <= junk.size(); n += 3) {
        EXPECT_NE(match(error_to(true, junk, n)), Result::kOk) << n;
    }
}

// --- concurrency ---

// A reader thread looks up a stable set of flows (always found, always its
// own key) and churning ones (found or not, but never another's) while this
// thread creates and ages the churning ones. Freed entries are reused only
// after the reader's grace period: a reuse under the reader would show as a
// key mismatch (and under ASan nothing is touched out of place).
TEST_P(Conntrack, ReaderWhileWriterInsertsAndAges) {
    ct::Config cfg;
    cfg.capacity = 4096;
    make(cfg);
    constexpr uint16_t kStable = 512, kChurn = 2048;
    for (uint16_t i = 0; i < kStable; i++) {
        ASSERT_EQ(create(udp(false, static_cast<uint16_t>(10000 + i)), 0), Result::kCreated);
        ASSERT_EQ(track(udp(true, static_cast<uint16_t>(10000 + i)), 0), Result::kOk);
    }
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> lookups{0}, missing{0}, wrong{0};
    std::atomic<uint64_t> clock{at(1)};
    ConnTable *t = t_.get();
    ASSERT_EQ(rte_rcu_qsbr_thread_register(rcu_.q, 2), 0);
    std::thread reader([&] {
        rte_rcu_qsbr_thread_online(rcu_.q, 2);
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            const uint64_t now = clock.load(std::memory_order_relaxed);
            for (uint16_t i = 0; i < 64; i++, n++) {
                const bool stable = n % 2 == 0;
                const auto port = static_cast<uint16_t>(stable ? 10000 + (n / 2) % kStable
                                                               : 20000 + (n / 2) % kChurn);
                const bool back = (n / 2) % 3 == 0;
                const FlowKey k = udp(back, port).key;
                Hit h;
                if (t->lookup(k, now, h)) {
                    const ct::Flow &f = t->flow(h.flow);
                    if (f.tuple[static_cast<size_t>(h.dir)] != k) {
                        wrong.fetch_add(1, std::memory_order_relaxed);
                    }
                } else if (stable) {
                    missing.fetch_add(1, std::memory_order_relaxed);
                }
            }
            lookups.fetch_add(64, std::memory_order_relaxed);
            rte_rcu_qsbr_quiescent(rcu_.q, 2);
        }
        rte_rcu_qsbr_thread_offline(rcu_.q, 2);
    });
    // Rounds: create the churning flows, let them expire (the stable ones are
    // refreshed), age them out in small steps.
    double now = 1;
    uint64_t created = 0, aged = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
    while (std::chrono::steady_clock::now() < deadline) {
        for (uint16_t i = 0; i < kChurn; i++) {
            const Result r = create(udp(false, static_cast<uint16_t>(20000 + i)), now);
            created += r == Result::kCreated ? 1 : 0;
            ASSERT_TRUE(r == Result::kCreated || r == Result::kTableFull) << ct::result_name(r);
        }
        now += 20;
        for (uint16_t i = 0; i < kStable; i++) {
            ASSERT_EQ(track(udp(false, static_cast<uint16_t>(10000 + i)), now), Result::kOk);
        }
        now += 20;  // the churning flows (30 s) expired, the stable (120 s) not
        clock.store(at(now), std::memory_order_relaxed);
        for (uint32_t i = 0; i < t_->capacity(); i += 64) {
            aged += t_->age(at(now), 64);
        }
    }
    stop = true;
    reader.join();
    rte_rcu_qsbr_thread_unregister(rcu_.q, 2);
    std::printf("conntrack: %lu lookups, %lu created, %lu aged\n",
                static_cast<unsigned long>(lookups.load()), static_cast<unsigned long>(created),
                static_cast<unsigned long>(aged));
    EXPECT_GT(lookups.load(), 10000u);
    EXPECT_GT(aged, 2u * kChurn);
    EXPECT_EQ(missing.load(), 0u);
    EXPECT_EQ(wrong.load(), 0u);
}

}  // namespace
}  // namespace fwd::dp::test
