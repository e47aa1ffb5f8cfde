// The fast path (fast_input, Worker::set_fast_path) against the stages
// alone: two workers take the same random bursts, one fused, one stage by
// stage, and must send the same frames out of the same ports in the same
// order, punt the same packets for the same reasons and count the same
// drops, ICMP errors and TX. The mix is mostly ordinary forwarded IPv4 and
// IPv6 with the unusual sprinkled in: IPv4 options, IPv6 extension headers,
// TTL / hop limit 1 and 0, fragments, broadcast and multicast, another
// host's MAC, VLAN tags, short and padded frames, bad versions, checksums
// and lengths, local and link-local addresses, ARP and ND, frames above an
// MTU. The seed is printed; FWD_FAST_PATH_SEED=<seed> runs one again.
#include <cstdio>
#include <cstdlib>
#include <random>

#include "lab.hpp"

namespace fwd::dp::test {
namespace {

// A worker of our own per mode: plenty of ICMP and punt tokens, so the rate
// limits (whose order of use differs between the two when they run dry)
// never decide.
std::unique_ptr<Worker> make(bool fast) {
    auto w = std::make_unique<Worker>(0, Lab::get().tables(), Lab::get().pool(), IdleParams{},
                                      10'000'000, nullptr, 10'000'000);
    w->set_fast_path(fast);
    return w;
}

struct Out {
    std::vector<std::pair<Side, Bytes>> sent;
    std::vector<std::pair<uint8_t, Bytes>> punted;  // reason, frame
};

Bytes bytes_of(rte_mbuf *m) {
    Bytes b(m->pkt_len);
    const void *p = rte_pktmbuf_read(m, 0, m->pkt_len, b.data());
    if (p != b.data() && !b.empty()) {
        std::memcpy(b.data(), p, m->pkt_len);
    }
    return b;
}

// One burst through w: what left, in order, and what was punted.
void run_burst(Worker &w, const std::vector<std::pair<Side, PacketBuilder>> &in, Out &out) {
    std::vector<rte_mbuf *> mbufs;
    for (const auto &[side, b] : in) {
        rte_mbuf *m = b.mbuf(Lab::get().pool(), Lab::get().port(side));
        ASSERT_NE(m, nullptr);
        mbufs.push_back(m);
    }
    w.process(mbufs.data(), static_cast<uint16_t>(mbufs.size()));
    w.flush_tx();
    for (const Frame &f : drain_tx()) {
        out.sent.emplace_back(f.side, f.pkt.frame);
    }
    rte_mbuf *m;
    while (w.pop_punt(m)) {
        out.punted.emplace_back(meta(m).punt, bytes_of(m));
        rte_pktmbuf_free(m);
    }
}

class Gen {
  public:
    explicit Gen(uint64_t seed) : rng_(seed) {}

    std::pair<Side, PacketBuilder> frame() {
        const Side side = kSides[below(3)];
        const bool v6 = coin();
        PacketBuilder b = from(side);
        const int odd = below(100) < 35 ? static_cast<int>(below(32)) : -1;  // an unusual change
        if (odd == 0) {
            return {side, arp(side)};
        }
        if (odd == 1 && v6) {
            return {side, ns(side)};
        }
        if (v6) {
            b.ip6(src6(side), dst6());
        } else {
            b.ip4(src4(side), dst4());
        }
        // before L4: the IP-layer changes
        switch (odd) {
            case 2:
                v6 ? b.hop_limit(1) : b.ttl(1);
                break;
            case 3:
                v6 ? b.hop_limit(0) : b.ttl(0);
                break;
            case 4:
                v6 ? b.hop_by_hop(8 * (1 + below(2))) : b.ip4_options(Bytes(4 * (1 + below(3)), 1));
                break;
            case 5:
                v6 ? b.fragment(0, true) : b.mf();
                break;
            case 6:
                v6 ? b.fragment(static_cast<uint16_t>(1 + below(100)), coin())
                   : b.frag_offset(static_cast<uint16_t>(1 + below(100)));
                break;
            case 7:
                v6 ? b.dest_opts() : b.bad_ip_checksum();
                break;
            case 8:
                v6 ? b.routing(static_cast<uint8_t>(below(3))) : b.ihl(4);
                break;
            case 9:
                b.ip_version(static_cast<uint8_t>(v6 ? 4 : 6));
                break;
            case 10:
                if (v6) {
                    b.payload_length(static_cast<uint16_t>(below(200)));
                } else {
                    b.total_length(static_cast<uint16_t>(below(200)));
                }
                break;
            case 11:
                v6 ? b.ip6(ip6("::1"), dst6()) : b.ip4(ip4("127.0.0.1"), dst4());
                break;
            case 12:
                v6 ? b.ip6(src6(side), ip6("ff02::1")) : b.ip4(src4(side), ip4("224.0.0.5"));
                break;
            case 13:
                v6 ? b.ip6(ip6("fe80::1"), dst6()) : b.ip4(src4(side), ip4("0.1.2.3"));
                break;
            case 14:
                v6 ? b.ip6(src6(side), ip6("fe80::99")) : b.ip4(ip4("240.0.0.1"), dst4());
                break;
            case 15:  // ours, with any TTL
                v6 ? b.ip6(src6(side), kNode6) : b.ip4(src4(side), coin() ? kNode4 : kGw4);
                v6 ? b.hop_limit(static_cast<uint8_t>(below(3)))
                   : b.ttl(static_cast<uint8_t>(below(3)));
                break;
            case 26:
                v6 ? b.ip6(ip6("fe80::1"), kNode6) : b.ip4(src4(side), kNode4).mf();
                break;
            case 27:
                v6 ? b.ip6(src6(side), kGw6) : b.ip4(src4(side), kGw4).ip4_options(Bytes(4, 1));
                break;
            case 16:
                v6 ? b.ip6(src6(side), ip6("::")) : b.ip4(src4(side), ip4("255.255.255.255"));
                break;
            case 17:
                v6 ? b.hop_by_hop().fragment(0, false) : b.df();
                break;
            default:
                break;
        }
        l4(b);
        // frame-level changes
        switch (odd) {
            case 18:
                b.eth(from_mac(side), kBroadcastMac);
                break;
            case 19:
                b.eth(from_mac(side), kOtherMac);
                break;
            case 20:
                b.eth(from_mac(side), v6 ? kAllNodesMac : Mac{0x01, 0x00, 0x5e, 0, 0, 5});
                break;
            case 21:
                b.vlan(static_cast<uint16_t>(coin() ? kUplinkVlan : 7));
                break;
            case 22:
                b.truncate(below(v6 ? 70 : 50));
                break;
            case 23:
                b.pad_to(60 + below(80));
                break;
            case 24:
                b.payload(1400 + below(200));  // above pod B's MTU, or anyone's
                break;
            case 25:
                b.ethertype(static_cast<uint16_t>(v6 ? kTypeIp4 : kTypeIp6));
                break;
            default:
                break;
        }
        return {side, std::move(b)};
    }

    uint32_t below(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(rng_); }
    bool coin() { return below(2) == 1; }

  private:
    static Mac from_mac(Side s) {
        return s == Side::kPodA ? kPodAMac : s == Side::kPodB ? kPodBMac : kRouterMac;
    }
    uint32_t src4(Side s) {
        return s == Side::kPodA   ? kPodA4
               : s == Side::kPodB ? kPodB4
                                  : (coin() ? kElsewhere4 : kVia4);
    }
    Ip6 src6(Side s) {
        return s == Side::kPodA   ? kPodA6
               : s == Side::kPodB ? kPodB6
                                  : (coin() ? kElsewhere6 : kVia6);
    }
    uint32_t dst4() {
        static const uint32_t k[] = {kPodA4,      kPodB4,        kVia4,       kBeyondVia4,
                                     kBlackhole4, kUnreachable4, kElsewhere4, kPodB4};
        return k[below(std::size(k))];
    }
    Ip6 dst6() {
        static const Ip6 k[] = {kPodA6,      kPodB6,        kVia6,       kBeyondVia6,
                                kBlackhole6, kUnreachable6, kElsewhere6, kPodA6};
        return k[below(std::size(k))];
    }
    void l4(PacketBuilder &b) {
        switch (below(3)) {
            case 0:
                b.udp(static_cast<uint16_t>(below(65536)), static_cast<uint16_t>(below(65536)));
                break;
            case 1:
                b.tcp(static_cast<uint16_t>(below(65536)), static_cast<uint16_t>(below(65536)));
                break;
            default:
                b.echo_request(static_cast<uint16_t>(below(65536)), 1);
                break;
        }
        b.payload(below(4) == 0 ? below(600) : below(40));
    }
    PacketBuilder arp(Side s) {
        const Mac zero{};
        const uint32_t tip = s == Side::kUplink ? kNode4 : kGw4;
        return std::move(PacketBuilder()
                             .eth(from_mac(s), kBroadcastMac)
                             .arp(1, from_mac(s), src4(s), zero, coin() ? tip : kPodA4));
    }
    PacketBuilder ns(Side s) {
        return std::move(PacketBuilder()
                             .eth(from_mac(s), kGwSnmMac)
                             .ip6(kPodALl6, kGwSnm6)
                             .hop_limit(255)
                             .ns(kGw6)
                             .nd_option_ll(1, from_mac(s)));
    }

    std::mt19937_64 rng_;
};

void expect_same_counters(const Worker &fast, const Worker &stages) {
    const WorkerStats &a = fast.stats();
    const WorkerStats &b = stages.stats();
    for (size_t i = 0; i < kDropReasonCount; i++) {
        EXPECT_EQ(a.drops[i].get(), b.drops[i].get()) << kDropReasonInfo[i].name;
    }
    for (size_t i = 0; i < kPuntReasonCount; i++) {
        EXPECT_EQ(a.punted[i].get(), b.punted[i].get()) << kPuntReasonNames[i];
    }
    EXPECT_EQ(a.tx_packets.get(), b.tx_packets.get());
    EXPECT_EQ(a.icmp_errors_sent.get(), b.icmp_errors_sent.get());
    EXPECT_EQ(a.host_tx.get(), b.host_tx.get());
}

class FastPath : public DatapathTest {};

TEST_F(FastPath, SameResultsAndCountersAsTheStagesOnRandomMixes) {
    uint64_t seed = std::random_device{}();
    if (const char *s = std::getenv("FWD_FAST_PATH_SEED")) {
        seed = std::strtoull(s, nullptr, 0);
    }
    std::printf("FastPath seed: %llu (FWD_FAST_PATH_SEED=%llu repeats it)\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    SCOPED_TRACE("seed " + std::to_string(seed));
    Gen gen(seed);
    auto fast = make(true);
    auto stages = make(false);
    size_t frames = 0, forwarded = 0, total_drops = 0;
    for (int round = 0; round < 300; round++) {
        std::vector<std::pair<Side, PacketBuilder>> in;
        const uint32_t n = 1 + gen.below(kBurst);
        for (uint32_t i = 0; i < n; i++) {
            in.push_back(gen.frame());
        }
        Out a, b;
        run_burst(*fast, in, a);
        run_burst(*stages, in, b);
        ASSERT_EQ(a.sent.size(), b.sent.size()) << "round " << round;
        for (size_t i = 0; i < a.sent.size(); i++) {
            EXPECT_EQ(a.sent[i].first, b.sent[i].first) << "round " << round << " frame " << i;
            EXPECT_EQ(a.sent[i].second, b.sent[i].second) << "round " << round << " frame " << i;
        }
        EXPECT_EQ(a.punted, b.punted) << "round " << round;
        frames += n;
        forwarded += a.sent.size();
        if (HasFailure()) {
            break;
        }
    }
    expect_same_counters(*fast, *stages);
    for (size_t i = 0; i < kDropReasonCount; i++) {
        total_drops += fast->stats().drops[i].get();
    }
    // The mix must hold both kinds in bulk, or the comparison says little.
    EXPECT_GT(forwarded, frames / 3);
    EXPECT_GT(total_drops, frames / 10);
    std::printf("FastPath: %zu frames, %zu sent, %zu dropped\n", frames, forwarded, total_drops);
    fast.reset();
    stages.reset();
}

}  // namespace
}  // namespace fwd::dp::test
