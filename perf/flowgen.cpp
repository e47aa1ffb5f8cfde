// flowgen: a generator of new UDP flows for the NAT connection-rate
// scenarios (perf/harness/nat.py). Every packet it sends is the first packet
// of a flow never sent before:
//   packet i: source  = --src + (i mod --src-count)       (pods of a pool)
//             dest    = --dst + (i mod 2^--dst-bits)       (outside the pools)
//             sport   = 1024 + (i >> --dst-bits) mod 64512
//             dport   = --dport
// so no two packets share a 5-tuple for 2^dst-bits x 64512 packets, and no two
// flows share a reply tuple behind a source NAT to one address (their
// destinations differ or their ports do): a NAT keeps every source port, as
// Linux masquerade does when it can.
//
// One port (the only --vdev: a memif towards dpdk-fwd, an af_packet on a
// veth towards Linux), one RX and one TX queue, the main lcore only. The loop
// fills a burst, sends it, and sends what the device did not take again (no
// flow is skipped: the sender runs at the receiver's pace when that is the
// slower), and frees what comes back on RX (dpdk-fwd forwards out of its
// only port). Stops after --count packets (0: never) or on SIGINT / SIGTERM.
//
// The harness reads its counters over telemetry: /flowgen/stats ->
//   sent        packets the device took
//   polls       TX calls
//   short_polls TX calls that took less than was offered (the device's ring
//               was full: the receiver, not this loop, set the pace)
//   received    packets freed from RX
//   done        1 once --count packets went out
//
//   flowgen [EAL args] -- --family 4 --src 192.168.0.0 --src-count 55
//       --dst 198.18.0.0 --dst-bits 16 --src-mac M --dst-mac M [--frame 60]
#include <arpa/inet.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_telemetry.h>
#include <rte_udp.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint16_t kSportBase = 1024;
constexpr uint32_t kSportSpan = 65536 - kSportBase;

std::atomic<bool> g_stop{false};

// Written by the loop, read by the telemetry thread.
struct Stats {
    std::atomic<uint64_t> sent{0}, polls{0}, short_polls{0}, received{0};
    std::atomic<bool> done{false};
};
Stats g_stats;

int stats_cmd(const char *, const char *, rte_tel_data *d) {
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_u64(d, "sent", g_stats.sent.load(std::memory_order_relaxed));
    rte_tel_data_add_dict_u64(d, "polls", g_stats.polls.load(std::memory_order_relaxed));
    rte_tel_data_add_dict_u64(d, "short_polls",
                              g_stats.short_polls.load(std::memory_order_relaxed));
    rte_tel_data_add_dict_u64(d, "received", g_stats.received.load(std::memory_order_relaxed));
    rte_tel_data_add_dict_u64(d, "done", g_stats.done.load(std::memory_order_relaxed) ? 1 : 0);
    return 0;
}

struct Options {
    int family = 4;
    std::string src, dst, src_mac, dst_mac;
    uint32_t src_count = 1;
    unsigned dst_bits = 16;
    uint16_t dport = 5201;
    unsigned frame = 60;  // bytes without the FCS
    uint64_t count = 0;
};

// An address plus n (IPv6: added to the low 64 bits).
void add_to(uint8_t *addr, size_t len, uint64_t n) {
    for (size_t i = len; i-- > 0 && n != 0;) {
        const uint64_t s = addr[i] + (n & 0xff);
        addr[i] = static_cast<uint8_t>(s);
        n = (n >> 8) + (s >> 8);
    }
}

class Generator {
  public:
    explicit Generator(const Options &o) : o_(o), v6_(o.family == 6) {
        const int af = v6_ ? AF_INET6 : AF_INET;
        if (inet_pton(af, o.src.c_str(), src_) != 1 || inet_pton(af, o.dst.c_str(), dst_) != 1) {
            throw std::invalid_argument("--src / --dst: not IPv" + std::to_string(o.family));
        }
        rte_ether_addr s{}, d{};
        if (rte_ether_unformat_addr(o.src_mac.c_str(), &s) != 0 ||
            rte_ether_unformat_addr(o.dst_mac.c_str(), &d) != 0) {
            throw std::invalid_argument("--src-mac / --dst-mac");
        }
        l3_len_ = v6_ ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
        const unsigned min = sizeof(rte_ether_hdr) + l3_len_ + sizeof(rte_udp_hdr);
        if (o.frame < min || o.frame > sizeof(tmpl_)) {
            throw std::invalid_argument("--frame: " + std::to_string(min) + " to " +
                                        std::to_string(sizeof(tmpl_)));
        }
        auto *eth = reinterpret_cast<rte_ether_hdr *>(tmpl_);
        eth->dst_addr = d;
        eth->src_addr = s;
        const uint16_t l4_len = static_cast<uint16_t>(o.frame - sizeof(rte_ether_hdr) - l3_len_);
        if (v6_) {
            eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6);
            auto *ip = reinterpret_cast<rte_ipv6_hdr *>(eth + 1);
            ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
            ip->payload_len = rte_cpu_to_be_16(l4_len);
            ip->proto = IPPROTO_UDP;
            ip->hop_limits = 64;
        } else {
            eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
            auto *ip = reinterpret_cast<rte_ipv4_hdr *>(eth + 1);
            ip->version_ihl = 0x45;
            ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(l3_len_ + l4_len));
            ip->time_to_live = 64;
            ip->next_proto_id = IPPROTO_UDP;
        }
        auto *udp = reinterpret_cast<rte_udp_hdr *>(tmpl_ + sizeof(rte_ether_hdr) + l3_len_);
        udp->dst_port = rte_cpu_to_be_16(o.dport);
        udp->dgram_len = rte_cpu_to_be_16(l4_len);
    }

    // Packet i of the sequence into m.
    void fill(rte_mbuf *m, uint64_t i) const {
        auto *p = rte_pktmbuf_mtod(m, uint8_t *);
        std::memcpy(p, tmpl_, o_.frame);
        m->data_len = m->pkt_len = o_.frame;
        const uint64_t dmask = (uint64_t{1} << o_.dst_bits) - 1;
        uint8_t *l3 = p + sizeof(rte_ether_hdr);
        auto *udp = reinterpret_cast<rte_udp_hdr *>(l3 + l3_len_);
        udp->src_port =
            rte_cpu_to_be_16(static_cast<uint16_t>(kSportBase + (i >> o_.dst_bits) % kSportSpan));
        if (v6_) {
            auto *ip = reinterpret_cast<rte_ipv6_hdr *>(l3);
            std::memcpy(ip->src_addr, src_, 16);
            std::memcpy(ip->dst_addr, dst_, 16);
            add_to(ip->src_addr, 16, i % o_.src_count);
            add_to(ip->dst_addr, 16, i & dmask);
            udp->dgram_cksum = rte_ipv6_udptcp_cksum(ip, udp);
        } else {
            auto *ip = reinterpret_cast<rte_ipv4_hdr *>(l3);
            std::memcpy(&ip->src_addr, src_, 4);
            std::memcpy(&ip->dst_addr, dst_, 4);
            add_to(reinterpret_cast<uint8_t *>(&ip->src_addr), 4, i % o_.src_count);
            add_to(reinterpret_cast<uint8_t *>(&ip->dst_addr), 4, i & dmask);
            ip->hdr_checksum = rte_ipv4_cksum(ip);
            udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
        }
    }

  private:
    const Options o_;
    const bool v6_;
    uint8_t src_[16] = {}, dst_[16] = {};
    uint32_t l3_len_ = 0;
    alignas(64) uint8_t tmpl_[256] = {};
};

int run(const Options &o) {
    if (rte_eth_dev_count_avail() != 1) {
        std::fprintf(stderr, "flowgen: expected one port (--vdev), found %u\n",
                     rte_eth_dev_count_avail());
        return 1;
    }
    const Generator gen(o);
    const uint16_t port = 0;
    rte_mempool *pool = rte_pktmbuf_pool_create("flowgen", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                rte_socket_id());
    if (pool == nullptr) {
        std::fprintf(stderr, "flowgen: mbuf pool: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    rte_eth_conf conf{};
    if (rte_eth_dev_configure(port, 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(port, 0, 1024, rte_eth_dev_socket_id(port), nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(port, 0, 1024, rte_eth_dev_socket_id(port), nullptr) != 0 ||
        rte_eth_dev_start(port) != 0) {
        std::fprintf(stderr, "flowgen: port setup failed\n");
        return 1;
    }
    rte_telemetry_register_cmd("/flowgen/stats", stats_cmd,
                               "Packets sent, TX calls, TX calls the device cut short");
    // Wait for the link (a memif's peer), at most 60 s.
    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t until = rte_get_tsc_cycles() + 60 * hz;
    rte_eth_link link{};
    while (!g_stop.load() && rte_get_tsc_cycles() < until) {
        rte_eth_link_get_nowait(port, &link);
        if (link.link_status == RTE_ETH_LINK_UP) {
            break;
        }
        rte_delay_ms(10);
    }
    if (link.link_status != RTE_ETH_LINK_UP) {
        std::fprintf(stderr, "flowgen: the link did not come up\n");
        return 1;
    }
    std::printf("flowgen: link up, sending\n");
    std::fflush(stdout);

    rte_mbuf *tx[kBurst];
    rte_mbuf *rx[kBurst];
    uint16_t pending = 0, off = 0;  // tx[off, pending) built but not taken yet
    uint64_t next = 0;
    while (!g_stop.load(std::memory_order_relaxed)) {
        const uint16_t nrx = rte_eth_rx_burst(port, 0, rx, kBurst);
        if (nrx > 0) {
            rte_pktmbuf_free_bulk(rx, nrx);
            g_stats.received.fetch_add(nrx, std::memory_order_relaxed);
        }
        if (off == pending) {
            uint16_t n = kBurst;
            if (o.count != 0) {
                n = static_cast<uint16_t>(std::min<uint64_t>(kBurst, o.count - next));
            }
            if (n == 0) {
                g_stats.done.store(true, std::memory_order_relaxed);
                rte_delay_us_sleep(1000);
                continue;
            }
            if (rte_pktmbuf_alloc_bulk(pool, tx, n) != 0) {
                continue;
            }
            for (uint16_t k = 0; k < n; k++) {
                gen.fill(tx[k], next + k);
            }
            next += n;
            off = 0;
            pending = n;
        }
        const uint16_t want = pending - off;
        const uint16_t sent = rte_eth_tx_burst(port, 0, tx + off, want);
        off += sent;
        g_stats.sent.fetch_add(sent, std::memory_order_relaxed);
        g_stats.polls.fetch_add(1, std::memory_order_relaxed);
        if (sent < want) {
            g_stats.short_polls.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if (off < pending) {
        rte_pktmbuf_free_bulk(tx + off, pending - off);
    }
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
    std::printf("flowgen: sent %lu\n", static_cast<unsigned long>(g_stats.sent.load()));
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const int used = rte_eal_init(argc, argv);
    if (used < 0) {
        std::fprintf(stderr, "flowgen: rte_eal_init: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    std::signal(SIGINT, [](int) { g_stop.store(true); });
    std::signal(SIGTERM, [](int) { g_stop.store(true); });
    Options o;
    CLI::App app{"flowgen: new UDP flows, one a packet"};
    app.add_option("--family", o.family)->check(CLI::IsMember({4, 6}));
    app.add_option("--src", o.src, "first source address")->required();
    app.add_option("--src-count", o.src_count, "source addresses")->check(CLI::Range(1u, 1u << 24));
    app.add_option("--dst", o.dst, "first destination address")->required();
    app.add_option("--dst-bits", o.dst_bits, "destinations: 2^bits")->check(CLI::Range(0u, 32u));
    app.add_option("--dport", o.dport);
    app.add_option("--src-mac", o.src_mac)->required();
    app.add_option("--dst-mac", o.dst_mac)->required();
    app.add_option("--frame", o.frame, "frame bytes without the FCS");
    app.add_option("--count", o.count, "packets (0: until stopped)");
    int rc = 1;
    try {
        app.parse(argc - used, argv + used);
        rc = run(o);
    } catch (const CLI::ParseError &e) {
        rc = app.exit(e);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "flowgen: %s\n", e.what());
    }
    rte_eal_cleanup();
    return rc;
}
