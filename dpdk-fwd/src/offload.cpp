// Software offloads (offload.hpp): checksums and TCP segmentation for ports
// that cannot do them. Segmentation copies: a segment is a fresh mbuf (a
// chain when it is larger than one), so nothing is shared with the frame
// and the caller frees the frame as usual. The copy costs one pass over the
// payload, which the checksum makes anyway.
#include "fwd/dp/offload.hpp"

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>
#include <rte_vxlan.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace fwd::dp {

namespace {

constexpr uint16_t kMinSegSize = 88;  // Linux's TCP_MIN_MSS
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;

template <typename T>
T *hdr_at(rte_mbuf *m, uint32_t off) {
    return rte_pktmbuf_mtod_offset(m, T *, off);
}
template <typename T>
const T *hdr_at(const rte_mbuf *m, uint32_t off) {
    return rte_pktmbuf_mtod_offset(m, const T *, off);
}

// Copies len bytes of src's chain from offset off to dst.
void copy_out(const rte_mbuf *src, uint32_t off, uint32_t len, uint8_t *dst) {
    while (src != nullptr && off >= src->data_len) {
        off -= src->data_len;
        src = src->next;
    }
    while (src != nullptr && len != 0) {
        uint32_t n = std::min<uint32_t>(len, src->data_len - off);
        std::memcpy(dst, rte_pktmbuf_mtod_offset(src, const uint8_t *, off), n);
        dst += n;
        len -= n;
        off = 0;
        src = src->next;
    }
}

// The L4 checksum field (TCP's or UDP's), by its offset: the headers are
// packed structs.
unaligned_uint16_t *checksum_field(rte_mbuf *m, const OffloadHdrs &h) {
    const uint32_t off =
        h.l4 + (h.tcp ? offsetof(rte_tcp_hdr, cksum) : offsetof(rte_udp_hdr, dgram_cksum));
    return rte_pktmbuf_mtod_offset(m, unaligned_uint16_t *, off);
}

// The L4 checksum over the chain, computed with the field zeroed.
uint16_t l4_checksum(rte_mbuf *m, const OffloadHdrs &h) {
    *checksum_field(m, h) = 0;
    if (h.v4) {
        return rte_ipv4_udptcp_cksum_mbuf(m, hdr_at<rte_ipv4_hdr>(m, h.l2), h.l4);
    }
    return rte_ipv6_udptcp_cksum_mbuf(m, hdr_at<rte_ipv6_hdr>(m, h.l2), h.l4);
}

// A segment's IP header at off: its length (the IP packet's, len), for
// IPv4 the identification counting up by index and the header checksum.
void set_ip_len(rte_mbuf *seg, uint32_t off, bool v4, uint32_t len, uint16_t index) {
    if (!v4) {
        hdr_at<rte_ipv6_hdr>(seg, off)->payload_len =
            rte_cpu_to_be_16(static_cast<uint16_t>(len - sizeof(rte_ipv6_hdr)));
        return;
    }
    auto *ip = hdr_at<rte_ipv4_hdr>(seg, off);
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(len));
    ip->packet_id =
        rte_cpu_to_be_16(static_cast<uint16_t>(rte_be_to_cpu_16(ip->packet_id) + index));
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
}

// An encapsulated segment's outer headers, once its inner packet is final.
void fix_outer(rte_mbuf *seg, const OffloadHdrs &h, uint16_t index) {
    set_ip_len(seg, h.outer, h.outer_v4, seg->pkt_len - h.outer, index);
    if (h.outer_udp == 0) {
        return;
    }
    auto *udp = hdr_at<rte_udp_hdr>(seg, h.outer_udp);
    udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(seg->pkt_len - h.outer_udp));
    udp->dgram_cksum = 0;
    // The encap stage computes the outer UDP checksum for both families (as
    // Linux's vxlan device in Calico's setup): so does each segment.
    udp->dgram_cksum =
        h.outer_v4
            ? rte_ipv4_udptcp_cksum_mbuf(seg, hdr_at<rte_ipv4_hdr>(seg, h.outer), h.outer_udp)
            : rte_ipv6_udptcp_cksum_mbuf(seg, hdr_at<rte_ipv6_hdr>(seg, h.outer), h.outer_udp);
}

// One segment: headers copied from the frame and fixed, then payload bytes
// [pay_off, pay_off + len) of the frame. Null when pool is empty.
rte_mbuf *make_segment(const rte_mbuf *m, const OffloadHdrs &h, rte_mempool *pool, uint32_t pay_off,
                       uint32_t len, uint16_t index, bool last) {
    rte_mbuf *seg = rte_pktmbuf_alloc(pool);
    if (seg == nullptr) {
        return nullptr;
    }
    const uint16_t room = rte_pktmbuf_tailroom(seg);
    auto *hdr = reinterpret_cast<uint8_t *>(rte_pktmbuf_append(seg, h.hdrs));
    std::memcpy(hdr, rte_pktmbuf_mtod(m, const uint8_t *), h.hdrs);
    // Payload, filling each mbuf of the segment's chain.
    rte_mbuf *tail = seg;
    uint32_t copied = 0;
    uint32_t space = room - h.hdrs;
    while (copied < len) {
        if (space == 0) {
            rte_mbuf *next = rte_pktmbuf_alloc(pool);
            if (next == nullptr || rte_pktmbuf_chain(seg, next) != 0) {
                rte_pktmbuf_free(next);
                rte_pktmbuf_free(seg);
                return nullptr;
            }
            tail = next;
            space = rte_pktmbuf_tailroom(tail);
        }
        uint32_t n = std::min(space, len - copied);
        uint8_t *dst = rte_pktmbuf_mtod_offset(tail, uint8_t *, tail->data_len);
        copy_out(m, pay_off + copied, n, dst);
        tail->data_len = static_cast<uint16_t>(tail->data_len + n);
        seg->pkt_len += n;
        copied += n;
        space -= n;
    }

    set_ip_len(seg, h.l2, h.v4, h.hdrs - h.l2 + len, index);
    auto *th = hdr_at<rte_tcp_hdr>(seg, h.l4);
    th->sent_seq = rte_cpu_to_be_32(rte_be_to_cpu_32(th->sent_seq) + (pay_off - h.hdrs));
    if (!last) {
        th->tcp_flags = static_cast<uint8_t>(th->tcp_flags & ~(kTcpFin | kTcpPsh));
    }
    if (index != 0) {
        th->tcp_flags = static_cast<uint8_t>(th->tcp_flags & ~kTcpCwr);
    }
    *checksum_field(seg, h) = l4_checksum(seg, h);
    if (h.outer != 0) {
        fix_outer(seg, h, index);
    }
    return seg;
}

}  // namespace

bool offload_hdrs(const rte_mbuf *m, OffloadHdrs &h) {
    if (m->data_len < sizeof(rte_ether_hdr)) {
        return false;
    }
    const auto *eth = hdr_at<rte_ether_hdr>(m, 0);
    uint16_t type = eth->ether_type;
    h.l2 = sizeof(rte_ether_hdr);
    if (type == RTE_BE16(RTE_ETHER_TYPE_VLAN)) {
        if (m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_vlan_hdr)) {
            return false;
        }
        type = hdr_at<rte_vlan_hdr>(m, h.l2)->eth_proto;
        h.l2 = static_cast<uint16_t>(h.l2 + sizeof(rte_vlan_hdr));
    }
    h.outer = 0;
    h.outer_udp = 0;
    if (const uint64_t tunnel = m->ol_flags & RTE_MBUF_F_TX_TUNNEL_MASK; tunnel != 0) {
        // [outer IP][UDP][VXLAN][inner Ethernet] or [outer IP], then the inner IP.
        h.outer_v4 = (m->ol_flags & RTE_MBUF_F_TX_OUTER_IPV4) != 0;
        if (type != (h.outer_v4 ? RTE_BE16(RTE_ETHER_TYPE_IPV4) : RTE_BE16(RTE_ETHER_TYPE_IPV6)) ||
            m->data_len < h.l2 + sizeof(rte_ipv6_hdr)) {
            return false;
        }
        h.outer = h.l2;
        const uint32_t outer_len = h.outer_v4
                                       ? (hdr_at<rte_ipv4_hdr>(m, h.outer)->version_ihl & 0xfu) * 4u
                                       : sizeof(rte_ipv6_hdr);
        uint32_t inner = h.outer + outer_len;
        if (tunnel == RTE_MBUF_F_TX_TUNNEL_VXLAN) {
            h.outer_udp = static_cast<uint16_t>(inner);
            inner += sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr);
            if (inner + sizeof(rte_ether_hdr) > m->data_len) {
                return false;
            }
            type = hdr_at<rte_ether_hdr>(m, inner)->ether_type;
            inner += sizeof(rte_ether_hdr);
        } else if (tunnel == RTE_MBUF_F_TX_TUNNEL_IPIP) {
            type = RTE_BE16(RTE_ETHER_TYPE_IPV4);
        } else {
            return false;
        }
        h.l2 = static_cast<uint16_t>(inner);
    }
    h.v4 = (m->ol_flags & RTE_MBUF_F_TX_IPV4) != 0;
    if (type != (h.v4 ? RTE_BE16(RTE_ETHER_TYPE_IPV4) : RTE_BE16(RTE_ETHER_TYPE_IPV6))) {
        return false;
    }
    const uint64_t l4 = m->ol_flags & RTE_MBUF_F_TX_L4_MASK;
    h.tcp = l4 == RTE_MBUF_F_TX_TCP_CKSUM || (m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) != 0;
    if (!h.tcp && l4 != RTE_MBUF_F_TX_UDP_CKSUM) {
        return false;
    }
    const uint32_t l4_off = h.l2 + m->l3_len;
    if (m->l3_len < (h.v4 ? sizeof(rte_ipv4_hdr) : sizeof(rte_ipv6_hdr)) ||
        l4_off + (h.tcp ? sizeof(rte_tcp_hdr) : sizeof(rte_udp_hdr)) > m->data_len) {
        return false;
    }
    h.l4 = static_cast<uint16_t>(l4_off);
    uint32_t l4_len = sizeof(rte_udp_hdr);
    if (h.tcp) {
        l4_len = (hdr_at<rte_tcp_hdr>(m, h.l4)->data_off >> 4) * 4u;
        if (l4_len < sizeof(rte_tcp_hdr)) {
            return false;
        }
    }
    if (l4_off + l4_len > m->data_len) {
        return false;
    }
    h.hdrs = static_cast<uint16_t>(l4_off + l4_len);
    return true;
}

bool fill_pseudo_checksum(rte_mbuf *m) {
    OffloadHdrs h;
    if (!offload_hdrs(m, h)) {
        return false;
    }
    // ol_flags 0: the sum with the L4 length, as Linux keeps it for a
    // CHECKSUM_PARTIAL frame (its segmentation adjusts it per segment).
    uint16_t sum = h.v4 ? rte_ipv4_phdr_cksum(hdr_at<rte_ipv4_hdr>(m, h.l2), 0)
                        : rte_ipv6_phdr_cksum(hdr_at<rte_ipv6_hdr>(m, h.l2), 0);
    if (!h.v4 && m->l3_len != sizeof(rte_ipv6_hdr)) {
        // Extension headers: the L4 length is the payload length less them.
        const auto *ip = hdr_at<rte_ipv6_hdr>(m, h.l2);
        uint32_t l4_len = rte_be_to_cpu_16(ip->payload_len) - (m->l3_len - sizeof(rte_ipv6_hdr));
        uint32_t s = rte_raw_cksum(ip->src_addr, 32);
        s += rte_cpu_to_be_32(l4_len) >> 16;
        s += rte_cpu_to_be_32(l4_len) & 0xffff;
        s += rte_cpu_to_be_32(static_cast<uint32_t>(h.tcp ? IPPROTO_TCP : IPPROTO_UDP)) >> 16;
        s += rte_cpu_to_be_32(static_cast<uint32_t>(h.tcp ? IPPROTO_TCP : IPPROTO_UDP)) & 0xffff;
        sum = static_cast<uint16_t>(__rte_raw_cksum_reduce(s));
    }
    *checksum_field(m, h) = sum;
    return true;
}

bool fill_l4_checksum(rte_mbuf *m) {
    OffloadHdrs h;
    if (!offload_hdrs(m, h)) {
        return false;
    }
    // rte_*_udptcp_cksum_mbuf already turns a UDP 0 into 0xffff (RFC 768).
    *checksum_field(m, h) = l4_checksum(m, h);
    m->ol_flags &= ~RTE_MBUF_F_TX_L4_MASK;
    return true;
}

uint16_t tcp_segment(const rte_mbuf *m, rte_mempool *pool, rte_mbuf **out, uint16_t max,
                     bool &bad) {
    bad = true;
    OffloadHdrs h;
    if (!offload_hdrs(m, h) || !h.tcp || m->tso_segsz < kMinSegSize || m->pkt_len <= h.hdrs) {
        return 0;
    }
    const uint32_t payload = m->pkt_len - h.hdrs;
    const uint32_t n = (payload + m->tso_segsz - 1) / m->tso_segsz;
    if (n > max || n > UINT16_MAX) {
        return 0;
    }
    bad = false;
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t off = h.hdrs + i * m->tso_segsz;
        const uint32_t len = std::min<uint32_t>(m->tso_segsz, m->pkt_len - off);
        out[i] = make_segment(m, h, pool, off, len, static_cast<uint16_t>(i), i + 1 == n);
        if (out[i] == nullptr) {
            rte_pktmbuf_free_bulk(out, i);
            return 0;
        }
    }
    return static_cast<uint16_t>(n);
}

}  // namespace fwd::dp
