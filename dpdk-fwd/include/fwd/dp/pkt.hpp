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

// Decrements the IPv4 TTL, updating the header checksum incrementally.
inline void ip4_dec_ttl(rte_ipv4_hdr *ip) {
    uint16_t old_w, new_w;
    std::memcpy(&old_w, &ip->time_to_live, 2);  // TTL and protocol share one word
    ip->time_to_live--;
    std::memcpy(&new_w, &ip->time_to_live, 2);
    ip->hdr_checksum = csum_update16(ip->hdr_checksum, old_w, new_w);
}

inline void write_eth(rte_ether_hdr *eth, const uint8_t *dst, const uint8_t *src,
                      uint16_t type_be) {
    std::memcpy(eth->dst_addr.addr_bytes, dst, 6);
    std::memcpy(eth->src_addr.addr_bytes, src, 6);
    eth->ether_type = type_be;
}

}  // namespace fwd::dp
