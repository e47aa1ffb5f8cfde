// The header helpers of the fast path against DPDK's reference checksum:
// ip4_hdr_cksum_ok (five 32-bit words for a 20-byte header) and ip4_dec_ttl
// (one word read and written) on many random headers.
#include <gtest/gtest.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include <random>

#include "fwd/dp/pkt.hpp"

namespace fwd::dp::test {
namespace {

// A random IPv4 header of ihl words with a right checksum (options random too).
std::vector<uint8_t> random_header(std::mt19937 &rng, uint8_t ihl) {
    std::vector<uint8_t> h(ihl * 4u);
    for (auto &b : h) {
        b = static_cast<uint8_t>(rng());
    }
    auto *ip = reinterpret_cast<rte_ipv4_hdr *>(h.data());
    ip->version_ihl = static_cast<uint8_t>(0x40 | ihl);
    ip->time_to_live = static_cast<uint8_t>(2 + rng() % 254);
    ip->hdr_checksum = 0;
    ip->hdr_checksum = static_cast<uint16_t>(~rte_raw_cksum(h.data(), h.size()));
    return h;
}

TEST(PktHelpers, HeaderChecksumAgreesWithRteRawCksum) {
    std::mt19937 rng(7);
    for (int i = 0; i < 20000; i++) {
        uint8_t ihl = i % 4 == 0 ? static_cast<uint8_t>(5 + rng() % 11) : 5;
        auto h = random_header(rng, ihl);
        auto *ip = reinterpret_cast<rte_ipv4_hdr *>(h.data());
        ASSERT_TRUE(ip4_hdr_cksum_ok(ip, h.size())) << "header " << i;
        // any one bit flipped is caught, as rte_raw_cksum catches it
        size_t bit = rng() % (h.size() * 8);
        h[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        EXPECT_EQ(ip4_hdr_cksum_ok(ip, h.size()), rte_raw_cksum(h.data(), h.size()) == 0xffff)
            << "header " << i << " bit " << bit;
        EXPECT_FALSE(ip4_hdr_cksum_ok(ip, h.size())) << "header " << i << " bit " << bit;
    }
}

// raw_sum (8 bytes a step) against __rte_raw_cksum (2 a step): every length
// to 300, every alignment, a starting sum, all reduced the same.
TEST(PktHelpers, RawSumAgreesWithRteRawCksum) {
    std::mt19937 rng(3);
    std::vector<uint8_t> buf(320);
    for (int round = 0; round < 20; round++) {
        for (auto &b : buf) {
            b = static_cast<uint8_t>(round == 0 ? 0xff : rng());  // all ones: the most carries
        }
        for (uint32_t off = 0; off < 8; off++) {
            for (uint32_t len = 0; len <= 300; len++) {
                // below 2^20: __rte_raw_cksum's 32-bit sum would wrap above (raw_sum's does not)
                const uint32_t start = round == 0 ? 0xfffffu : static_cast<uint32_t>(rng() >> 12);
                EXPECT_EQ(__rte_raw_cksum_reduce(raw_sum(buf.data() + off, len, start)),
                          __rte_raw_cksum_reduce(__rte_raw_cksum(buf.data() + off, len, start)))
                    << "offset " << off << " length " << len;
            }
        }
    }
}

// udp_cksum against rte_ipv4_udptcp_cksum / rte_ipv6_udptcp_cksum.
TEST(PktHelpers, UdpChecksumAgreesWithRte) {
    std::mt19937 rng(5);
    for (int round = 0; round < 200; round++) {
        const uint16_t len = static_cast<uint16_t>(8 + rng() % 200);
        std::vector<uint8_t> p(sizeof(rte_ipv6_hdr) + len);
        for (auto &b : p) {
            b = static_cast<uint8_t>(rng());
        }
        auto *ip6 = reinterpret_cast<rte_ipv6_hdr *>(p.data());
        ip6->proto = IPPROTO_UDP;
        ip6->payload_len = rte_cpu_to_be_16(len);
        auto *udp = reinterpret_cast<rte_udp_hdr *>(ip6 + 1);
        udp->dgram_len = rte_cpu_to_be_16(len);
        udp->dgram_cksum = 0;
        EXPECT_EQ(udp_cksum(ip6->src_addr, 32, udp, len), rte_ipv6_udptcp_cksum(ip6, udp));
        std::vector<uint8_t> q(sizeof(rte_ipv4_hdr) + len);
        for (auto &b : q) {
            b = static_cast<uint8_t>(rng());
        }
        auto *ip4 = reinterpret_cast<rte_ipv4_hdr *>(q.data());
        ip4->version_ihl = RTE_IPV4_VHL_DEF;
        ip4->next_proto_id = IPPROTO_UDP;
        ip4->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(sizeof(rte_ipv4_hdr) + len));
        auto *udp4 = reinterpret_cast<rte_udp_hdr *>(ip4 + 1);
        udp4->dgram_len = rte_cpu_to_be_16(len);
        udp4->dgram_cksum = 0;
        EXPECT_EQ(udp_cksum(&ip4->src_addr, 8, udp4, len), rte_ipv4_udptcp_cksum(ip4, udp4));
    }
}

TEST(PktHelpers, TtlDecrementKeepsTheChecksumRight) {
    std::mt19937 rng(11);
    for (int i = 0; i < 20000; i++) {
        auto h = random_header(rng, 5);
        auto *ip = reinterpret_cast<rte_ipv4_hdr *>(h.data());
        const uint8_t ttl = ip->time_to_live;
        const uint8_t proto = ip->next_proto_id;
        ip4_dec_ttl(ip);
        ASSERT_EQ(ip->time_to_live, ttl - 1) << "header " << i;
        ASSERT_EQ(ip->next_proto_id, proto) << "header " << i;
        ASSERT_EQ(rte_raw_cksum(h.data(), h.size()), 0xffff) << "header " << i;
    }
}

}  // namespace
}  // namespace fwd::dp::test
