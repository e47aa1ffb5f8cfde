// The hash of a packet's flow: one value for every packet of a flow, spread
// over the word. ECMP picks a member with it (route.cpp); the overlays derive
// the outer UDP source port from the inner flow's (vxlan_encap.cpp, RFC 7348
// section 5), each with a seed of its own so the two choices do not follow
// each other.
// IPv4: source, destination, protocol, and TCP / UDP ports;
// IPv6: source, destination, upper-layer protocol (meta.l4_proto, after the
//       extension headers), and TCP / UDP ports.
// Ports are left out for fragments (first or later), so every fragment of a
// datagram hashes as the datagram does. Reads meta.l3_off / l4_off /
// l4_proto / flags as ip4_input / ip6_input set them.
#pragma once

#include <rte_hash_crc.h>

#include <cstring>

#include "fwd/dp/pkt.hpp"

namespace fwd::dp {

// The TCP / UDP port pair of a packet that carries it whole, else 0.
inline uint32_t flow_ports(const rte_mbuf *m, const PktMeta &md, uint8_t proto) {
    if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || (md.flags & kMetaFragment) ||
        md.l4_off == 0) {
        return 0;
    }
    uint32_t buf;
    const void *p = rte_pktmbuf_read(m, md.l4_off, sizeof(buf), &buf);
    if (p == nullptr) {
        return 0;
    }
    uint32_t ports;
    std::memcpy(&ports, p, sizeof(ports));
    return ports;
}

// CRC32 is linear: flows differing in a few bits could all land on one
// member. A multiply-xorshift finish spreads every input bit over the word.
inline uint32_t flow_mix(uint32_t h) {
    h ^= h >> 16;
    h *= 0x7feb352d;
    h ^= h >> 15;
    h *= 0x846ca68b;
    h ^= h >> 16;
    return h;
}

inline uint32_t flow_hash4(rte_mbuf *m, const PktMeta &md, uint32_t seed) {
    const auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
    uint8_t proto = ip->next_proto_id;
    uint32_t h = rte_hash_crc_4byte(ip->src_addr, seed);
    h = rte_hash_crc_4byte(ip->dst_addr, h);
    h = rte_hash_crc_4byte(proto, h);
    return flow_mix(rte_hash_crc_4byte(flow_ports(m, md, proto), h));
}

inline uint32_t flow_hash6(rte_mbuf *m, const PktMeta &md, uint32_t seed) {
    const auto *ip = at<rte_ipv6_hdr>(m, md.l3_off);
    uint8_t proto = md.l4_off != 0 ? md.l4_proto : ip->proto;
    uint64_t addrs[4];  // copied: the header is not 8-byte aligned
    std::memcpy(addrs, ip->src_addr, 16);
    std::memcpy(addrs + 2, ip->dst_addr, 16);
    uint32_t h = seed;
    for (uint64_t a : addrs) {
        h = rte_hash_crc_8byte(a, h);
    }
    h = rte_hash_crc_4byte(proto, h);
    return flow_mix(rte_hash_crc_4byte(flow_ports(m, md, proto), h));
}

}  // namespace fwd::dp
