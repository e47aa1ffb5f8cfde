// Header access and checksum helpers for the stages. All inline, noexcept,
// no allocation.
#pragma once

#include <rte_arp.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>

#include "fwd/dp/meta.hpp"

namespace fwd::dp {

template <typename T>
inline T *at(rte_mbuf *m, uint32_t off) {
    return rte_pktmbuf_mtod_offset(m, T *, off);
}

// Bytes available in the first segment from offset off.
inline uint32_t seg_avail(const rte_mbuf *m, uint32_t off) {
    return m->data_len > off ? m->data_len - off : 0;
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit word changing from
// old_w to new_w (all in network byte order).
inline uint16_t csum_update16(uint16_t cksum, uint16_t old_w, uint16_t new_w) {
    uint32_t sum = static_cast<uint16_t>(~cksum) + static_cast<uint16_t>(~old_w) + new_w;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

// True when an IPv4 header of hlen bytes (in the first segment) carries a
// right checksum: its one's complement sum is 0xffff. The usual 20-byte
// header is summed as five 32-bit words (rte_raw_cksum's byte loop took
// about 10 cycles a packet); the sum in host order is the byte-swapped
// network-order one, and 0xffff swaps to itself.
inline bool ip4_hdr_cksum_ok(const rte_ipv4_hdr *ip, uint32_t hlen) {
    if (likely(hlen == sizeof(rte_ipv4_hdr))) {
        uint32_t w[5];
        std::memcpy(w, ip, sizeof(w));
        uint64_t s = uint64_t{w[0]} + w[1] + w[2] + w[3] + w[4];
        s = (s >> 32) + (s & 0xffffffffu);
        s = (s >> 32) + (s & 0xffffffffu);
        auto t = static_cast<uint32_t>(s);
        t = (t >> 16) + (t & 0xffffu);
        t = (t >> 16) + (t & 0xffffu);
        return t == 0xffff;
    }
    return rte_raw_cksum(ip, hlen) == 0xffff;
}

// Decrements the IPv4 TTL, updating the header checksum incrementally. TTL
// and protocol share one 16-bit word, TTL its high byte in network order:
// the word is read once and written once (a byte store followed by a word
// load of the same bytes stalls store forwarding, about 10 cycles a packet).
inline void ip4_dec_ttl(rte_ipv4_hdr *ip) {
    uint16_t old_w;
    std::memcpy(&old_w, &ip->time_to_live, 2);
    auto new_w = rte_cpu_to_be_16(static_cast<uint16_t>(rte_be_to_cpu_16(old_w) - 0x0100));
    std::memcpy(&ip->time_to_live, &new_w, 2);
    ip->hdr_checksum = csum_update16(ip->hdr_checksum, old_w, new_w);
}

inline void write_eth(rte_ether_hdr *eth, const uint8_t *dst, const uint8_t *src,
                      uint16_t type_be) {
    std::memcpy(eth->dst_addr.addr_bytes, dst, 6);
    std::memcpy(eth->src_addr.addr_bytes, src, 6);
    eth->ether_type = type_be;
}

}  // namespace fwd::dp
