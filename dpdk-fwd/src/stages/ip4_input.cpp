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

constexpr uint32_t kGateway4 = 0xa9fe0101;  // 169.254.1.1

bool bad_source(uint32_t s) {
    uint8_t top = s >> 24;
    return top == 127 || top >= 224 || s == 0xffffffff;  // loopback, multicast, class E, broadcast
}

}  // namespace

void ip4_input(Worker &w, Burst &in, IpNext &out) {
    const NodeAddrs &node = w.tables().node();
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        PktMeta &md = meta(m);
        uint32_t avail = m->pkt_len - md.l3_off;
        if (avail < sizeof(rte_ipv4_hdr) || seg_avail(m, md.l3_off) < sizeof(rte_ipv4_hdr)) {
            w.drop(m, DropReason::kIp4Truncated);
            continue;
        }
        auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
        if ((ip->version_ihl >> 4) != 4) {
            w.drop(m, DropReason::kIp4BadVersion);
            continue;
        }
        uint32_t hlen = (ip->version_ihl & 0xf) * 4u;
        if (hlen < sizeof(rte_ipv4_hdr)) {
            w.drop(m, DropReason::kIp4BadIhl);
            continue;
        }
        if (hlen > seg_avail(m, md.l3_off)) {
            w.drop(m, DropReason::kIp4Truncated);
            continue;
        }
        if ((m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) != RTE_MBUF_F_RX_IP_CKSUM_GOOD &&
            !ip4_hdr_cksum_ok(ip, hlen)) {
            w.drop(m, DropReason::kIp4BadChecksum);
            continue;
        }
        uint32_t tlen = rte_be_to_cpu_16(ip->total_length);
        if (tlen < hlen) {
            w.drop(m, DropReason::kIp4BadLength);
            continue;
        }
        if (tlen > avail) {
            w.drop(m, DropReason::kIp4LengthExceedsFrame);
            continue;
        }
        if (tlen < avail) {
            rte_pktmbuf_trim(m, avail - tlen);
        }
        uint32_t src = rte_be_to_cpu_32(ip->src_addr);
        uint32_t dst = rte_be_to_cpu_32(ip->dst_addr);
        if (bad_source(src)) {
            w.drop(m, DropReason::kIp4BadSource);
            continue;
        }
        uint8_t dtop = dst >> 24;
        if (dtop == 127 || dtop == 0) {
            w.drop(m, DropReason::kIp4MartianDest);
            continue;
        }
        if (dtop >= 224) {
            w.drop(m, DropReason::kIp4Multicast);
            continue;
        }
        uint16_t frag = rte_be_to_cpu_16(ip->fragment_offset);
        if (frag & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) {
            md.flags |= kMetaFragment;
            if (frag & RTE_IPV4_HDR_OFFSET_MASK) {
                md.flags |= kMetaLaterFragment;
            }
        }
        md.l4_off = md.l3_off + hlen;
        md.l4_proto = ip->next_proto_id;
        if (dst == kGateway4 || (node.has_ip4 && dst == node.ip4.host())) {
            out.local.push(m);
            continue;
        }
        if (ip->time_to_live <= 1) {
            icmp4_error(w, m, 11 /* time exceeded */, 0, 0, DropReason::kIp4TtlExceeded);
            continue;
        }
        out.fwd.push(m);
    }
}

}  // namespace fwd::dp
