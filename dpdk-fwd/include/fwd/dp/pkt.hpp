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

// The one's complement sum of len bytes (any alignment) added to sum, in
// native byte order like __rte_raw_cksum and reduced the same way
// (__rte_raw_cksum_reduce), but 8 bytes a step where that adds 2: a VXLAN
// datagram around a 64-byte frame was 50 dependent adds, a third of the
// encapsulation's cycles. Two 32-bit halves per step into 64 bits cannot
// overflow; 2^32 and 2^16 are both 1 modulo 0xffff, so the folds keep the
// sum.
inline uint32_t raw_sum(const void *buf, uint32_t len, uint32_t sum) {
    const auto *p = static_cast<const uint8_t *>(buf);
    uint64_t acc = sum;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        acc += (w & 0xffffffffu) + (w >> 32);
    }
    if (len >= 4) {
        uint32_t w;
        std::memcpy(&w, p, 4);
        acc += w;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t w;
        std::memcpy(&w, p, 2);
        acc += w;
        p += 2;
        len -= 2;
    }
    if (len != 0) {
        uint16_t w = 0;
        std::memcpy(&w, p, 1);
        acc += w;
    }
    acc = (acc >> 32) + (acc & 0xffffffffu);
    acc = (acc >> 32) + (acc & 0xffffffffu);
    return static_cast<uint32_t>(acc);
}

// The checksum of a UDP datagram of udp_len bytes in the first segment (its
// checksum field zero while summing), from a pseudo-header's addresses
// (8 bytes for IPv4, 32 for IPv6, contiguous as in the IP headers); 0 goes
// out as 0xffff (RFC 768).
inline uint16_t udp_cksum(const void *addrs, uint32_t addrs_len, const void *udp,
                          uint16_t udp_len) {
    uint32_t sum = raw_sum(addrs, addrs_len, 0);
    sum += rte_cpu_to_be_16(IPPROTO_UDP);
    sum += rte_cpu_to_be_16(udp_len);
    sum = raw_sum(udp, udp_len, sum);
    const auto ck = static_cast<uint16_t>(~__rte_raw_cksum_reduce(sum));
    return ck == 0 ? 0xffff : ck;
}

// True when an IPv4 header of hlen bytes (in the first segment) carries a
// right checksum: its one's complement sum is 0xffff. The usual 20-byte
// header is three loads (8 + 8 + 4 bytes) summed with end-around carry
// (add / adc), then folded 64 -> 32 -> 16 bits by adding each value to
// itself rotated by half its width: the upper half is then hi + lo + the
// carry out of the lower half, the one's complement fold in three
// instructions (rte_raw_cksum's byte loop took about 10 cycles a packet; the
// sum in host order is the byte-swapped network-order one, and 0xffff swaps
// to itself).
inline bool ip4_hdr_cksum_ok(const rte_ipv4_hdr *ip, uint32_t hlen) {
    if (likely(hlen == sizeof(rte_ipv4_hdr))) {
        const auto *p = reinterpret_cast<const uint8_t *>(ip);
        uint64_t a, b;
        uint32_t c;
        std::memcpy(&a, p, 8);
        std::memcpy(&b, p + 8, 8);
        std::memcpy(&c, p + 16, 4);
        uint64_t s;
        s = a + b;
        s += s < a;  // end-around carry: 2^64 is 1 modulo 0xffff
        s += c;
        s += s < c;
        s = (s + ((s << 32) | (s >> 32))) >> 32;
        auto t = static_cast<uint32_t>(s);
        t = (t + ((t << 16) | (t >> 16))) >> 16;
        return t == 0xffff;
    }
    return rte_raw_cksum(ip, hlen) == 0xffff;
}

// Decrements the IPv4 TTL (at least 1), updating the header checksum
// incrementally: RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), where m is the
// TTL / protocol word before and m' after. Loaded in host order the word's
// TTL is its low byte, so m' = m - 1 and ~m + m' is the constant 0xfffe:
// the word itself is never read (a byte store followed by a word load of
// the same bytes stalls store forwarding, about 10 cycles a packet), and
// ~HC + 0xfffe is below 0x20000, so one fold carries it all.
inline void ip4_dec_ttl(rte_ipv4_hdr *ip) {
    ip->time_to_live--;
    uint32_t sum = static_cast<uint16_t>(~ip->hdr_checksum) + uint32_t{0xfffe};
    sum = (sum & 0xffff) + (sum >> 16);
    ip->hdr_checksum = static_cast<uint16_t>(~sum);
}

// Equality of 6 and 16 bytes as two loads a side (std::memcmp of a length
// the compiler does not inline is a libc call on the packet path).
inline bool eq6(const void *a, const void *b) {
    uint32_t a0, b0;
    uint16_t a1, b1;
    std::memcpy(&a0, a, 4);
    std::memcpy(&b0, b, 4);
    std::memcpy(&a1, static_cast<const uint8_t *>(a) + 4, 2);
    std::memcpy(&b1, static_cast<const uint8_t *>(b) + 4, 2);
    return ((a0 ^ b0) | static_cast<uint32_t>(a1 ^ b1)) == 0;
}

inline bool eq16(const void *a, const void *b) {
    uint64_t a0, a1, b0, b1;
    std::memcpy(&a0, a, 8);
    std::memcpy(&a1, static_cast<const uint8_t *>(a) + 8, 8);
    std::memcpy(&b0, b, 8);
    std::memcpy(&b1, static_cast<const uint8_t *>(b) + 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

inline void write_eth(rte_ether_hdr *eth, const uint8_t *dst, const uint8_t *src,
                      uint16_t type_be) {
    std::memcpy(eth->dst_addr.addr_bytes, dst, 6);
    std::memcpy(eth->src_addr.addr_bytes, src, 6);
    eth->ether_type = type_be;
}

}  // namespace fwd::dp
