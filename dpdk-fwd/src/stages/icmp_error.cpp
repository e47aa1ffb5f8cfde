// icmp4_error / icmp6_error: ICMP errors about a packet we drop.
// Reads: the offending packet (IP header onwards), node addresses.
// Builds a new packet in a fresh mbuf from the worker's pool:
//   IPv4 (RFC 792, RFC 1812 4.3.2.3): as much of the original as keeps the
//   error within 576 bytes; source is the node's IPv4 address, or
//   169.254.1.1 without one.
//   IPv6 (RFC 4443 2.4): as much as keeps it within 1280 bytes; source is
//   the node's IPv6 address, or fe80::ecee:eeff:feee:eeee without one.
// The error goes to Worker::reroute4 / reroute6 (kMetaLocalOrigin, in_port kept,
// l4_off / l4_proto set) and routed like any packet. The original is always
// dropped with reason.
// No error is sent (icmp_error_suppressed) about ICMP errors, non-first
// fragments, or packets from multicast / unspecified / broadcast sources or to
// multicast destinations (except packet too big); none above the worker's
// rate (icmp_rate_limited) or without an mbuf (icmp_error_no_buffer).
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr uint32_t kIp4ErrMax = 576;
constexpr uint32_t kIp6ErrMax = 1280;
constexpr uint16_t kEthLen = sizeof(rte_ether_hdr);

bool icmp4_is_error(uint8_t type) {
    return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

// Allocates the error packet with room for headers + quoted bytes; copies
// the quote. Returns nullptr (and counts) when no buffer.
rte_mbuf *start_error(Worker &w, rte_mbuf *orig, uint32_t hdr_len, uint32_t max_len,
                      uint32_t *quote_len) {
    const PktMeta &om = meta(orig);
    uint32_t orig_len = orig->pkt_len - om.l3_off;
    uint32_t room = std::min<uint32_t>(max_len - hdr_len, orig_len);
    rte_mbuf *e = rte_pktmbuf_alloc(w.pool());
    if (e == nullptr) {
        return nullptr;
    }
    room = std::min<uint32_t>(room, rte_pktmbuf_tailroom(e) - kEthLen - hdr_len);
    auto *p = rte_pktmbuf_append(e, static_cast<uint16_t>(kEthLen + hdr_len + room));
    if (p == nullptr) {
        rte_pktmbuf_free(e);
        return nullptr;
    }
    // rte_pktmbuf_read copies only when the data is segmented; else it points into orig.
    const void *src = rte_pktmbuf_read(orig, om.l3_off, room, p + kEthLen + hdr_len);
    if (src != p + kEthLen + hdr_len) {
        std::memcpy(p + kEthLen + hdr_len, src, room);
    }
    PktMeta &em = meta(e);
    em = PktMeta{};
    em.in_port = om.in_port;
    em.l3_off = kEthLen;
    em.flags = kMetaLocalOrigin;
    *quote_len = room;
    return e;
}

// The part icmp4_error and icmp6_error share: when no error may be sent
// (suppressed, over the rate) or built (no mbuf), drops m with reason, counts
// why and returns nullptr; otherwise returns the error with the quote copied
// and leaves m to the caller.
rte_mbuf *begin_error(Worker &w, rte_mbuf *m, bool suppressed, DropReason reason, uint32_t hdr_len,
                      uint32_t max_len, uint32_t *quote) {
    DropReason why;
    if (suppressed) {
        why = DropReason::kIcmpErrorSuppressed;
    } else if (!w.icmp_token()) {
        why = DropReason::kIcmpRateLimited;
    } else if (rte_mbuf *e = start_error(w, m, hdr_len, max_len, quote); e != nullptr) {
        return e;
    } else {
        why = DropReason::kIcmpErrorNoBuffer;
    }
    w.drop(m, reason);
    w.stats_mut().drops[static_cast<size_t>(why)].inc();
    return nullptr;
}

}  // namespace

void icmp4_error(Worker &w, rte_mbuf *m, uint8_t type, uint8_t code, uint32_t extra,
                 DropReason reason) {
    const PktMeta &md = meta(m);
    auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
    uint32_t src = rte_be_to_cpu_32(ip->src_addr);
    uint8_t stop = src >> 24;
    bool suppressed = (md.flags & kMetaLaterFragment) || stop == 0 || stop == 127 || stop >= 224;
    if (!suppressed && md.l4_proto == IPPROTO_ICMP && m->pkt_len > md.l4_off) {
        suppressed = icmp4_is_error(*at<uint8_t>(m, md.l4_off));
    }
    uint32_t quote = 0;
    constexpr uint32_t kHdr = sizeof(rte_ipv4_hdr) + sizeof(rte_icmp_hdr);
    rte_mbuf *e = begin_error(w, m, suppressed, reason, kHdr, kIp4ErrMax, &quote);
    if (e == nullptr) {
        return;
    }
    // Upper layer as ip4_input would set it: if the error cannot be routed,
    // icmp4_error sees an ICMP error and sends nothing about it.
    meta(e).l4_off = kEthLen + sizeof(rte_ipv4_hdr);
    meta(e).l4_proto = IPPROTO_ICMP;
    const NodeAddrs &node = w.tables().node();
    auto *eip = at<rte_ipv4_hdr>(e, kEthLen);
    *eip = rte_ipv4_hdr{};
    eip->version_ihl = RTE_IPV4_VHL_DEF;
    eip->type_of_service = 0xc0;  // internetwork control
    eip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(kHdr + quote));
    eip->time_to_live = 64;
    eip->next_proto_id = IPPROTO_ICMP;
    eip->src_addr = node.has_ip4 ? node.ip4.be().raw() : RTE_BE32(0xa9fe0101);
    eip->dst_addr = ip->src_addr;
    eip->hdr_checksum = rte_ipv4_cksum(eip);
    auto *icmp = at<rte_icmp_hdr>(e, kEthLen + sizeof(rte_ipv4_hdr));
    icmp->icmp_type = type;
    icmp->icmp_code = code;
    icmp->icmp_cksum = 0;
    // "unused" word; for fragmentation needed its low half is the next-hop MTU (RFC 1191).
    icmp->icmp_ident = 0;
    icmp->icmp_seq_nb = rte_cpu_to_be_16(static_cast<uint16_t>(extra));
    icmp->icmp_cksum = static_cast<uint16_t>(~rte_raw_cksum(icmp, sizeof(rte_icmp_hdr) + quote));
    w.drop(m, reason);
    w.count_icmp_sent();
    w.reroute4(e);
}

void icmp6_error(Worker &w, rte_mbuf *m, uint8_t type, uint8_t code, uint32_t extra,
                 DropReason reason) {
    const PktMeta &md = meta(m);
    auto *ip = at<rte_ipv6_hdr>(m, md.l3_off);
    bool src_bad = ip->src_addr[0] == 0xff;
    bool src_zero = true;
    for (uint8_t b : ip->src_addr) {
        src_zero = src_zero && b == 0;
    }
    bool suppressed = src_bad || src_zero || (md.flags & kMetaLaterFragment) ||
                      (ip->dst_addr[0] == 0xff && type != 2);
    if (!suppressed && md.l4_proto == IPPROTO_ICMPV6 && m->pkt_len > md.l4_off) {
        uint8_t t;
        suppressed = *static_cast<const uint8_t *>(rte_pktmbuf_read(m, md.l4_off, 1, &t)) < 128;
    }
    uint32_t quote = 0;
    constexpr uint32_t kHdr = sizeof(rte_ipv6_hdr) + 8;
    rte_mbuf *e = begin_error(w, m, suppressed, reason, kHdr, kIp6ErrMax, &quote);
    if (e == nullptr) {
        return;
    }
    meta(e).l4_off = kEthLen + sizeof(rte_ipv6_hdr);  // as in icmp4_error
    meta(e).l4_proto = IPPROTO_ICMPV6;
    const NodeAddrs &node = w.tables().node();
    auto *eip = at<rte_ipv6_hdr>(e, kEthLen);
    eip->vtc_flow = RTE_BE32(6u << 28);
    eip->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(8 + quote));
    eip->proto = IPPROTO_ICMPV6;
    eip->hop_limits = 64;
    std::memcpy(eip->src_addr, node.has_ip6 ? node.ip6.data() : node.gw6.data(), 16);
    std::memcpy(eip->dst_addr, ip->src_addr, 16);
    auto *h = at<uint8_t>(e, kEthLen + sizeof(rte_ipv6_hdr));
    h[0] = type;
    h[1] = code;
    h[2] = h[3] = 0;
    uint32_t word = rte_cpu_to_be_32(extra);  // MTU for packet too big, else unused
    std::memcpy(h + 4, &word, 4);
    uint32_t sum = rte_ipv6_phdr_cksum(eip, 0);
    sum = __rte_raw_cksum(h, 8 + quote, sum);
    uint16_t ck = static_cast<uint16_t>(~__rte_raw_cksum_reduce(sum));
    std::memcpy(h + 2, &ck, 2);
    w.drop(m, reason);
    w.count_icmp_sent();
    w.reroute6(e);
}

}  // namespace fwd::dp
