// The header helpers of the fast path against DPDK's reference checksum:
// ip4_hdr_cksum_ok (five 32-bit words for a 20-byte header) and ip4_dec_ttl
// (one word read and written) on many random headers.
#include <gtest/gtest.h>
#include <rte_ip.h>

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
