// icmp4_local / icmp6_local: what the dataplane answers itself.
// Reads: IPv4/IPv6 header at meta.l3_off, ICMP at meta.l4_off, PortState of
//        meta.in_port, node addresses.
// IPv4: echo requests to 169.254.1.1 or the node's address get an echo reply
//       (RFC 792), built in place and sent back out of meta.in_port.
// IPv6: Neighbor Solicitations for fe80::ecee:eeff:feee:eeee (or the node's
//       address) get a Neighbor Advertisement with the port's MAC, router
//       and solicited flags set (RFC 4861 7.2.4); echo requests get an echo
//       reply (RFC 4443 4.2). Both go back out of meta.in_port.
// Drops: icmp_truncated, icmp_bad_checksum, icmp_unhandled (other ICMP),
//        local_unhandled (not ICMP), nd_invalid (RFC 4861 7.1.1 checks),
//        nd_target_unknown, nd_unhandled (RS, RA, NA, redirect, MLD).
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr uint8_t kIcmp6EchoRequest = 128;
constexpr uint8_t kIcmp6EchoReply = 129;
constexpr uint8_t kNdNs = 135;
constexpr uint8_t kNdNa = 136;
constexpr uint8_t kNdOptTgtLl = 2;

// Packed: it sits at offset 54 of the frame, not on a 4-byte boundary.
struct NsMsg {
    uint8_t type, code;
    uint16_t cksum;
    uint32_t reserved;
    uint8_t target[16];
} __rte_packed;

// Sends m back to the sender on the port it came from, from our MAC.
void bounce(Worker &w, rte_mbuf *m) {
    const PktMeta &md = meta(m);
    auto *eth = at<rte_ether_hdr>(m, 0);
    const PortState &ps = w.tables().port(md.in_port);
    write_eth(eth, eth->src_addr.addr_bytes, ps.mac.data(), eth->ether_type);
    w.tx(md.in_port, m);
}

uint16_t icmp6_cksum(rte_mbuf *m, const rte_ipv6_hdr *ip, uint32_t l4_off) {
    // Pseudo-header (RFC 8200 8.1) plus the message, which is in the first segment here.
    uint32_t len = m->pkt_len - l4_off;
    uint32_t sum = rte_ipv6_phdr_cksum(ip, 0);
    // rte_ipv6_phdr_cksum uses ip->proto and payload_len; the ND/echo we
    // answer carry no extension headers (checked by the caller).
    sum = __rte_raw_cksum(at<uint8_t>(m, l4_off), len, sum);
    return static_cast<uint16_t>(~__rte_raw_cksum_reduce(sum));
}

}  // namespace

void icmp4_local(Worker &w, Burst &in) {
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        const PktMeta &md = meta(m);
        if (md.l4_proto != IPPROTO_ICMP) {
            w.drop(m, DropReason::kLocalUnhandled);
            continue;
        }
        if (md.flags & kMetaFragment) {
            w.drop(m, DropReason::kIcmpUnhandled);  // no reassembly for our own address
            continue;
        }
        uint32_t len = m->pkt_len - md.l4_off;
        if (len < sizeof(rte_icmp_hdr) || m->nb_segs != 1) {
            w.drop(m, DropReason::kIcmpTruncated);
            continue;
        }
        auto *icmp = at<rte_icmp_hdr>(m, md.l4_off);
        if (rte_raw_cksum(icmp, len) != 0xffff) {
            w.drop(m, DropReason::kIcmpBadChecksum);
            continue;
        }
        if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || icmp->icmp_code != 0) {
            w.drop(m, DropReason::kIcmpUnhandled);
            continue;
        }
        uint16_t old_w = RTE_BE16(RTE_IP_ICMP_ECHO_REQUEST << 8);
        icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
        icmp->icmp_cksum =
            csum_update16(icmp->icmp_cksum, old_w, RTE_BE16(RTE_IP_ICMP_ECHO_REPLY << 8));
        auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
        uint32_t peer = ip->src_addr;
        ip->src_addr = ip->dst_addr;
        ip->dst_addr = peer;
        ip->time_to_live = 64;
        ip->hdr_checksum = 0;
        ip->hdr_checksum = rte_ipv4_cksum(ip);
        bounce(w, m);
    }
}

void icmp6_local(Worker &w, Burst &in) {
    const NodeAddrs &node = w.tables().node();
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        const PktMeta &md = meta(m);
        if (md.l4_proto != IPPROTO_ICMPV6) {
            w.drop(m, DropReason::kLocalUnhandled);
            continue;
        }
        uint32_t len = m->pkt_len - md.l4_off;
        if (len < 4 || m->nb_segs != 1) {
            w.drop(m, DropReason::kIcmpTruncated);
            continue;
        }
        auto *ip = at<rte_ipv6_hdr>(m, md.l3_off);
        auto *h = at<uint8_t>(m, md.l4_off);
        uint8_t type = h[0];
        bool plain = md.l4_off == md.l3_off + sizeof(rte_ipv6_hdr);
        if (type == kNdNs) {
            // RFC 4861 7.1.1: hop limit 255, code 0, length >= 24, valid checksum.
            if (!plain || ip->hop_limits != 255 || h[1] != 0 || len < sizeof(NsMsg) ||
                icmp6_cksum(m, ip, md.l4_off) != 0) {
                w.drop(m, DropReason::kNdInvalid);
                continue;
            }
            auto *ns = at<NsMsg>(m, md.l4_off);
            bool ours = std::memcmp(ns->target, node.gw6.data(), 16) == 0 ||
                        (node.has_ip6 && std::memcmp(ns->target, node.ip6.data(), 16) == 0);
            if (!ours) {
                w.drop(m, DropReason::kNdTargetUnknown);
                continue;
            }
            const PortState &ps = w.tables().port(md.in_port);
            auto *eth = at<rte_ether_hdr>(m, 0);
            bool from_unspecified = true;
            for (uint8_t b : ip->src_addr) {
                from_unspecified = from_unspecified && b == 0;
            }
            // The advertisement: NS header + one target link-layer option (32 bytes).
            uint32_t na_len = sizeof(NsMsg) + 8;
            rte_pktmbuf_trim(m, len - std::min(len, na_len));
            if (len < na_len && rte_pktmbuf_append(m, na_len - len) == nullptr) {
                w.drop(m, DropReason::kIcmpTruncated);
                continue;
            }
            ns = at<NsMsg>(m, md.l4_off);
            uint8_t target[16];
            std::memcpy(target, ns->target, 16);
            ns->type = kNdNa;
            ns->code = 0;
            // Router, Solicited (unless the solicitation came from ::), Override.
            ns->reserved = rte_cpu_to_be_32(from_unspecified ? 0xa0000000 : 0xe0000000);
            auto *opt = reinterpret_cast<uint8_t *>(ns + 1);
            opt[0] = kNdOptTgtLl;
            opt[1] = 1;
            std::memcpy(opt + 2, ps.mac.data(), 6);
            if (from_unspecified) {
                static const uint8_t all_nodes[16] = {0xff, 2, 0, 0, 0, 0, 0, 0,
                                                      0,    0, 0, 0, 0, 0, 0, 1};
                std::memcpy(ip->dst_addr, all_nodes, 16);
                static const uint8_t all_nodes_mac[6] = {0x33, 0x33, 0, 0, 0, 1};
                std::memcpy(eth->src_addr.addr_bytes, all_nodes_mac, 6);  // bounce() swaps it in
            } else {
                std::memcpy(ip->dst_addr, ip->src_addr, 16);
            }
            std::memcpy(ip->src_addr, target, 16);
            ip->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(na_len));
            ip->hop_limits = 255;
            ns->cksum = 0;
            ns->cksum = icmp6_cksum(m, ip, md.l4_off);
            bounce(w, m);
            continue;
        }
        if (type == kIcmp6EchoRequest && plain && ip->dst_addr[0] != 0xff) {
            if (len < 8) {
                w.drop(m, DropReason::kIcmpTruncated);
                continue;
            }
            if (icmp6_cksum(m, ip, md.l4_off) != 0) {
                w.drop(m, DropReason::kIcmpBadChecksum);
                continue;
            }
            uint8_t tmp[16];
            std::memcpy(tmp, ip->src_addr, 16);
            std::memcpy(ip->src_addr, ip->dst_addr, 16);
            std::memcpy(ip->dst_addr, tmp, 16);
            ip->hop_limits = 64;
            h[0] = kIcmp6EchoReply;
            auto *ck = reinterpret_cast<uint16_t *>(h + 2);
            *ck = csum_update16(*ck, RTE_BE16(kIcmp6EchoRequest << 8),
                                RTE_BE16(kIcmp6EchoReply << 8));
            bounce(w, m);
            continue;
        }
        // NA, RS, RA, redirect and MLD (130-132, 143): nothing to do for us.
        if (type == kNdNa || type == 133 || type == 134 || type == 137 || type == 143 ||
            (type >= 130 && type <= 132)) {
            w.drop(m, DropReason::kNdUnhandled);
            continue;
        }
        w.drop(m, DropReason::kIcmpUnhandled);
    }
}

}  // namespace fwd::dp
