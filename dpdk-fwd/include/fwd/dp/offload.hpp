// Checksum and TCP segmentation offloads done in software, for packets that
// carry offload requests (a tun pod's 64 KB GSO frame, a segment whose L4
// checksum the pod left to be filled) toward a port that cannot do the work.
//
// The contract of an offload packet, as the tun driver sets it from the
// virtio-net header (tun_io.hpp) and every stage keeps it:
//   ol_flags  RTE_MBUF_F_TX_IPV4 or RTE_MBUF_F_TX_IPV6, and
//             RTE_MBUF_F_TX_TCP_CKSUM or RTE_MBUF_F_TX_UDP_CKSUM: the L4
//             checksum is still to be computed (the field holds anything:
//             a stage that rewrites addresses or ports need not fix it);
//             RTE_MBUF_F_TX_TCP_SEG as well: a TCP frame to be cut into
//             segments of tso_segsz payload bytes.
//   l3_len    the IP header with its extension headers; l4_len the TCP or
//             UDP header. The Ethernet header is whatever is in front of the
//             IP header when it leaves (14 bytes, 18 with a VLAN tag): it is
//             read from the frame, not from l2_len.
// Every egress computes from the headers as they are then: a port that takes
// offloads (a tun pod) gets the pseudo-header sum (fill_pseudo_checksum);
// any other gets full checksums (fill_l4_checksum) and TCP segments
// (tcp_segment). So NAT, TTL and encapsulation never patch a partial sum.
//
// noexcept, no heap: segments come from the mempool given.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>

namespace fwd::dp {

// The ol_flags that ask for work at egress.
inline constexpr uint64_t kOffloadFlags = RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_L4_MASK;

// The IP length an MTU check compares: a GSO frame's largest segment, not
// the frame (it is cut to fit wherever it leaves).
inline uint32_t mtu_l3_len(const rte_mbuf *m, uint32_t l3_len) {
    if (likely((m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) == 0)) {
        return l3_len;
    }
    const uint32_t seg = m->l3_len + m->l4_len + m->tso_segsz;
    return seg < l3_len ? seg : l3_len;
}

// PortState::tx_offloads bits: what a port's transmit takes as it is.
inline constexpr uint8_t kPortTxCsum = 1;  // L4 checksum left partial
inline constexpr uint8_t kPortTxTso = 2;   // TCP frames longer than the MTU

// Where the offload packet's headers are, read from the frame.
struct OffloadHdrs {
    // An encapsulated frame (RTE_MBUF_F_TX_TUNNEL_VXLAN / _IPIP with
    // RTE_MBUF_F_TX_OUTER_IPV4 / _IPV6, set by the overlays' encap stages on
    // a GSO frame): the outer IP header's offset, its UDP header's (VXLAN;
    // 0 for IP-in-IP). outer 0: not encapsulated.
    uint16_t outer = 0;
    uint16_t outer_udp = 0;
    bool outer_v4 = false;
    uint16_t l2 = 0;    // (inner) IP header offset
    uint16_t l4 = 0;    // L4 header offset
    uint16_t hdrs = 0;  // l4 + the L4 header: the first payload byte
    bool v4 = false;
    bool tcp = false;
};
// False when the frame does not hold what its flags say (no IP header where
// the Ethernet type points, headers beyond the first segment).
bool offload_hdrs(const rte_mbuf *m, OffloadHdrs &h);

// The length an encapsulating stage's MTU check compares: the outer
// packet of the frame's largest segment for a GSO frame whose inner IP
// header is inner_off bytes after the outer one; full_len otherwise.
inline uint32_t mtu_outer_len(const rte_mbuf *m, uint32_t inner_off, uint32_t full_len) {
    if (likely((m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) == 0)) {
        return full_len;
    }
    const uint32_t seg = inner_off + m->l3_len + m->l4_len + m->tso_segsz;
    return seg < full_len ? seg : full_len;
}

// The L4 checksum field set to the pseudo-header sum (with the L4 length),
// what a virtio-net NEEDS_CSUM frame carries. False as offload_hdrs.
bool fill_pseudo_checksum(rte_mbuf *m);

// The L4 checksum computed over the whole packet (any chain) and the L4
// checksum flags cleared. False as offload_hdrs.
bool fill_l4_checksum(rte_mbuf *m);

// Cuts a RTE_MBUF_F_TX_TCP_SEG frame into segments of at most tso_segsz
// payload bytes, each a copy of the headers (IPv4 identification counting
// up, total / payload length, sequence number, FIN and PSH on the last
// segment only, CWR on the first only) with its IPv4 header and TCP
// checksums complete (an encapsulated frame's outer IP lengths, IPv4 id and
// checksum, UDP length and checksum too), no offload flags, chained when a segment is larger
// than one mbuf of pool. Returns the segments written to out (at most max),
// m left untouched for the caller to free; 0 when m is not a TCP frame its
// flags describe (kGsoBadFrame) or pool ran out (kGsoNoMbuf), told by bad.
uint16_t tcp_segment(const rte_mbuf *m, rte_mempool *pool, rte_mbuf **out, uint16_t max, bool &bad);

// The most segments tcp_segment makes of one frame: a 64 KB frame cut at the
// smallest segment size a TCP peer may ask for (RFC 9293 3.7.1: 536 bytes
// over IPv4; we accept down to 88 as Linux's tcp_mss clamp does).
inline constexpr uint16_t kMaxGsoSegments = 65536 / 88 + 1;

}  // namespace fwd::dp
