// ip4_input: IPv4 header checks (RFC 1812 section 5.2.2) and the local /
// forward decision.
// Reads: the IPv4 header at meta.l3_off; node addresses.
// Sets:  meta.l4_off, meta.l4_proto, kMetaFragment / kMetaLaterFragment;
//        trims Ethernet padding beyond the IP total length.
// Next:  local (to 169.254.1.1 or the node's address) -> icmp4_local (which
//        punts the node's traffic to the host stack with host_punt);
//        fwd -> route4 (TTL > 1 checked here, so a packet to us with TTL 1
//        is still answered).
// Drops: ip4_truncated, ip4_bad_version, ip4_bad_ihl, ip4_bad_checksum,
//        ip4_bad_length, ip4_length_exceeds_frame, ip4_bad_source,
//        ip4_martian_dest, ip4_multicast, ip4_ttl_exceeded (ICMP sent).
// Fragments are forwarded as they are, never reassembled.
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

// Loopback, multicast, class E; 255.255.255.255 (broadcast) is in class E.
bool bad_source(uint32_t s) {
    uint8_t top = s >> 24;
    return top == 127 || top >= 224;
}

// One packet: local, forward, or kDropped (dropped with its reason, or
// taken by icmp4_error). node4: the node's address, or the gateway's when
// it has none. Shared by the stage's loop and the fused input's fallback
// (ip4_input_one), so the two decide alike.
inline IpClass check(Worker &w, rte_mbuf *m, uint32_t node4) {
    PktMeta &md = meta(m);
    const uint32_t l3_off = md.l3_off;
    uint32_t avail = m->pkt_len - l3_off;
    uint32_t seg = seg_avail(m, l3_off);
    if (avail < sizeof(rte_ipv4_hdr) || seg < sizeof(rte_ipv4_hdr)) {
        w.drop(m, DropReason::kIp4Truncated);
        return IpClass::kDropped;
    }
    auto *ip = at<rte_ipv4_hdr>(m, l3_off);
    uint32_t hlen = sizeof(rte_ipv4_hdr);
    const bool cksum_checked =
        (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_GOOD;
    if (likely(ip->version_ihl == 0x45)) {
        // Version 4, no options: the header is in the first segment
        // (seg >= 20), so only the checksum is left to check.
        if (!cksum_checked && !ip4_hdr_cksum_ok(ip, hlen)) {
            w.drop(m, DropReason::kIp4BadChecksum);
            return IpClass::kDropped;
        }
    } else {
        if ((ip->version_ihl >> 4) != 4) {
            w.drop(m, DropReason::kIp4BadVersion);
            return IpClass::kDropped;
        }
        hlen = (ip->version_ihl & 0xf) * 4u;
        if (hlen < sizeof(rte_ipv4_hdr)) {
            w.drop(m, DropReason::kIp4BadIhl);
            return IpClass::kDropped;
        }
        if (hlen > seg) {
            w.drop(m, DropReason::kIp4Truncated);
            return IpClass::kDropped;
        }
        if (!cksum_checked && !ip4_hdr_cksum_ok(ip, hlen)) {
            w.drop(m, DropReason::kIp4BadChecksum);
            return IpClass::kDropped;
        }
    }
    uint32_t tlen = rte_be_to_cpu_16(ip->total_length);
    if (tlen < hlen) {
        w.drop(m, DropReason::kIp4BadLength);
        return IpClass::kDropped;
    }
    if (tlen > avail) {
        w.drop(m, DropReason::kIp4LengthExceedsFrame);
        return IpClass::kDropped;
    }
    if (tlen < avail) {
        rte_pktmbuf_trim(m, avail - tlen);
    }
    uint32_t src = rte_be_to_cpu_32(ip->src_addr);
    uint32_t dst = rte_be_to_cpu_32(ip->dst_addr);
    uint8_t dtop = dst >> 24;
    // One test for the usual packet: a source below 224 other than
    // 127/8, a destination in 1..223 other than 127/8; the exact reason
    // only when one of them fails.
    if (unlikely(bad_source(src) || static_cast<uint8_t>(dtop - 1) >= 223 || dtop == 127)) {
        if (bad_source(src)) {
            w.drop(m, DropReason::kIp4BadSource);
        } else if (dtop == 127 || dtop == 0) {
            w.drop(m, DropReason::kIp4MartianDest);
        } else {
            w.drop(m, DropReason::kIp4Multicast);
        }
        return IpClass::kDropped;
    }
    if (unlikely(ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))) {
        md.flags |= kMetaFragment;
        if (ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_OFFSET_MASK)) {
            md.flags |= kMetaLaterFragment;
        }
    }
    md.l4_off = static_cast<uint16_t>(l3_off + hlen);
    md.l4_proto = ip->next_proto_id;
    if (dst == kGateway4 || dst == node4) {
        return IpClass::kLocal;
    }
    if (ip->time_to_live <= 1) {
        icmp4_error(w, m, 11 /* time exceeded */, 0, 0, DropReason::kIp4TtlExceeded);
        return IpClass::kDropped;
    }
    return IpClass::kFwd;
}

}  // namespace

uint32_t ip4_local_addr(const NodeAddrs &node) {
    return node.has_ip4 ? node.ip4.host() : kGateway4;
}

void ip4_input(Worker &w, Burst &in, IpNext &out) {
    // Per burst: the node's address (the gateway's again when it has none,
    // so one compare each stands for both tests of the local decision).
    const uint32_t node4 = ip4_local_addr(w.tables().node());
    for (uint16_t i = 0; i < in.n; i++) {
        ip_sort(out, in.pkts[i], check(w, in.pkts[i], node4));
    }
}

IpClass ip4_input_one(Worker &w, rte_mbuf *m, uint32_t node4) {
    return check(w, m, node4);
}

}  // namespace fwd::dp
