// icmp4_local / icmp6_local: traffic addressed to the dataplane or the node.
// Reads: IPv4/IPv6 header at meta.l3_off, ICMP at meta.l4_off, PortState of
//        meta.in_port, node addresses (NodeAddrs::host_punt).
// Punts (Worker::punt, frame unchanged but for the VLAN tag and Ethernet
// padding removed before; no TTL / hop limit decrement):
//   kHost, only with host_punt (a host tap carries the node's addresses):
//     IPv4: everything to the node's IPv4 address, from any port (echo,
//           TCP, UDP, fragments...).
//     IPv6: everything to the node's IPv6 address, from any port; on the
//           uplink, everything to a link-local address other than
//           fe80::ecee:eeff:feee:eeee and to ff02::1, ff02::2 or the node's
//           solicited-node group — except the ND below, which the dataplane
//           handles: Neighbor Solicitations (answered when for our
//           addresses; punted kHost when for another target), and Neighbor
//           Advertisements on the uplink.
//   kNeighbor, whatever host_punt: Neighbor Advertisements arriving on the
//     uplink, to the node's address, to a link-local address (the gateway's
//     included) or to ff02::1, that pass RFC 4861 7.1.2 (no extension
//     headers, hop limit 255, code 0, length >= 24, valid checksum, target
//     not multicast, Solicited clear when sent to a group).
// Answers, built in place and sent back out of meta.in_port:
//   IPv4: echo requests to 169.254.1.1, or to the node's address without
//         host_punt, get an echo reply (RFC 792).
//   IPv6: Neighbor Solicitations for fe80::ecee:eeff:feee:eeee (or the node's
//         address) get a Neighbor Advertisement with the port's MAC, router
//         and solicited flags set (RFC 4861 7.2.4); echo requests to the
//         gateway, or to the node's address without host_punt, get an echo
//         reply (RFC 4443 4.2).
// Drops: icmp_truncated, icmp_bad_checksum, icmp_unhandled (other ICMP),
//        local_unhandled (not ICMP), nd_invalid (RFC 4861 7.1.1 / 7.1.2
//        checks), nd_target_unknown, nd_unhandled (RS, RA, NA not punted,
//        redirect, MLD), ip6_link_local_dest (ICMPv6 other than an NA to a
//        foreign link-local address on the uplink, without host_punt), and
//        the punt drops (punt_rate_limited, punt_ring_full).
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr uint8_t kIcmp6EchoRequest = 128;
constexpr uint8_t kIcmp6EchoReply = 129;
constexpr uint8_t kNdNs = 135;
constexpr uint8_t kNdNa = 136;
constexpr uint8_t kNdOptTgtLl = 2;
constexpr uint32_t kNaSolicited = 0x40000000;
constexpr uint8_t kAllNodes[16] = {0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

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
    const NodeAddrs &node = w.tables().node();
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        const PktMeta &md = meta(m);
        if (node.host_punt && node.has_ip4 &&
            at<rte_ipv4_hdr>(m, md.l3_off)->dst_addr == node.ip4.be().raw()) {
            w.punt(m, PuntReason::kHost);  // the kernel behind the host tap answers
            continue;
        }
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
        auto *ip = at<rte_ipv6_hdr>(m, md.l3_off);
        const uint8_t *dst = ip->dst_addr;
        bool uplink =
            w.tables().port(md.in_port).role.load(std::memory_order_acquire) == PortRole::kUplink;
        bool to_gw = std::memcmp(dst, node.gw6.data(), 16) == 0;
        bool to_node = node.has_ip6 && std::memcmp(dst, node.ip6.data(), 16) == 0;
        bool to_ll = !to_gw && is_link_local6(dst);
        // What the kernel behind the host tap gets, unless it is ND handled here.
        bool host = node.host_punt &&
                    (to_node || (uplink && (to_ll || (dst[0] == 0xff && host_group6(dst, node)))));
        bool icmp6 = md.l4_proto == IPPROTO_ICMPV6;
        uint32_t len = m->pkt_len - md.l4_off;
        uint8_t type = icmp6 && len >= 1 && m->nb_segs == 1 ? *at<uint8_t>(m, md.l4_off) : 0;
        bool na_uplink = type == kNdNa && uplink;
        if (host && type != kNdNs && !na_uplink) {
            w.punt(m, PuntReason::kHost);
            continue;
        }
        if (to_ll && !host && !na_uplink) {
            w.drop(m, DropReason::kIp6LinkLocalDest);  // as ip6_input does off the uplink
            continue;
        }
        if (!icmp6) {
            w.drop(m, DropReason::kLocalUnhandled);
            continue;
        }
        if (len < 4 || m->nb_segs != 1) {
            w.drop(m, DropReason::kIcmpTruncated);
            continue;
        }
        auto *h = at<uint8_t>(m, md.l4_off);
        bool plain = md.l4_off == md.l3_off + sizeof(rte_ipv6_hdr);
        if (na_uplink) {
            // RFC 4861 7.1.2, then to the control thread's neighbor table.
            auto *na = at<NsMsg>(m, md.l4_off);
            bool valid = plain && ip->hop_limits == 255 && h[1] == 0 && len >= sizeof(NsMsg) &&
                         icmp6_cksum(m, ip, md.l4_off) == 0 && na->target[0] != 0xff &&
                         !(dst[0] == 0xff && (na->reserved & RTE_BE32(kNaSolicited)) != 0);
            if (!valid) {
                w.drop(m, DropReason::kNdInvalid);
                continue;
            }
            if (to_node || to_gw || to_ll || std::memcmp(dst, kAllNodes, 16) == 0) {
                w.punt(m, PuntReason::kNeighbor);
            } else if (host) {
                w.punt(m, PuntReason::kHost);
            } else {
                w.drop(m, DropReason::kNdUnhandled);
            }
            continue;
        }
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
                if (host) {
                    w.punt(m, PuntReason::kHost);  // perhaps for the kernel's own addresses
                } else {
                    w.drop(m, DropReason::kNdTargetUnknown);
                }
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
                std::memcpy(ip->dst_addr, kAllNodes, 16);
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
