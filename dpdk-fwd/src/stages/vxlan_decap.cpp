// vxlan_decap4 / vxlan_decap6 (Hook::kIp4Local / kIp6Local, the UDP port
// current_port gives: vxlanPort, 4789 by default) and ipip_decap (kIp4Local,
// protocol 4): the overlays' receive stages (overlay.hpp).
// Reads: meta (in_port, l3_off, l4_off, flags); the in_port's role; node
//        addresses (NodeAddrs: ip4 / ip6, host_punt); the worker's
//        OverlayTables (slot "overlay") and its published DecapConfig, once
//        per burst; the outer IP source and destination, UDP header and
//        checksum (the port's RX_L4_CKSUM flags, else summed here), the
//        VXLAN header, the inner Ethernet header and the inner IP source.
// Takes: packets to the node's own address. Others (to 169.254.1.1, the
//        gateway's or a link-local address) stay in the burst for
//        icmp*_local, as without the feature.
//        A UDP destination port other than the DecapConfig's (the port
//        changed between the dispatcher's read and the stage's) stays too:
//        that UDP is no longer VXLAN here.
// Checks, in this order, each failure a drop with its reason (never
//        delivered to a pod):
//        arrived on a pod port (Felix drops VXLAN and IP-in-IP a workload
//          sends) vxlan_from_pod / ipip_from_pod;
//        an outer fragment (run_local_hook hands a UDP port stage whole
//          datagrams only: checked for the contract's sake; a protocol
//          stage gets them all) vxlan_fragment / ipip_fragment;
//        overlay off (no tables, no DecapConfig) or the family / IP-in-IP
//          not enabled: punted to the host unchanged (PuntReason::kHost: the
//          node's own stack may use the port or protocol) with
//          NodeAddrs::host_punt, else vxlan_disabled / ipip_disabled;
//        VXLAN: the UDP length below UDP + VXLAN + inner Ethernet or beyond
//          the frame, the headers not in the first segment: vxlan_truncated;
//        outer source not a known node (DecapConfig::peers4 / peers6):
//          vxlan_unknown_peer / ipip_unknown_peer;
//        VXLAN: IPv6 UDP checksum zero (refused, as Linux does without
//          udp6zerocsumrx): vxlan_zero_checksum6; a UDP checksum the port
//          reports bad (RTE_MBUF_F_RX_L4_CKSUM_BAD), or, when the port did
//          not check it, a non-zero one that does not sum up (Linux checks
//          it before decapsulating): vxlan_bad_checksum;
//        VXLAN: no I flag (RFC 7348): vxlan_bad_flags; another VNI than ours:
//          punted to the host (PuntReason::kHost, unchanged: it is for the
//          node's own stack) with NodeAddrs::host_punt, else vxlan_bad_vni;
//          inner destination MAC not our VTEP MAC of the outer family:
//          vxlan_bad_inner_mac; inner ethertype not IPv4 / IPv6:
//          vxlan_bad_inner_type;
//        the inner IP header cut: vxlan_truncated / ipip_truncated;
//        inner source in no IP pool and not the outer source (the sending
//        node's own traffic, e.g. a NodePort it SNATed to its address):
//        vxlan_inner_source / ipip_inner_source.
// Sets:  for a good packet: UDP padding trimmed (VXLAN); IP-in-IP: an
//        Ethernet header (the outer frame's MACs, IPv4) in the 14 bytes
//        before the inner header; meta.l3_off at the inner IP header, the 14
//        bytes before it being the inner Ethernet header.
// Next:  good packets: Worker::reenter4 / reenter6 by the inner ethertype
//        (ip4_input / ip6_input, route, l2_rewrite: the inner TTL / hop
//        limit loses one here, as it lost one on the sending node: two
//        across two nodes, as Linux Calico does).
// Drops: the reasons above, and the punt drops.
#include <rte_udp.h>
#include <rte_vxlan.h>

#include "fwd/dp/overlay.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::overlay {

namespace {

constexpr uint16_t kEthLen = RTE_ETHER_HDR_LEN;
constexpr uint32_t kVxlanLen = sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr);

enum class Verdict : uint8_t { kDecap, kKeep, kHost, kDrop };

struct Outcome {
    Verdict v;
    DropReason reason = DropReason::kCount;
};

Outcome drop(DropReason r) {
    return {Verdict::kDrop, r};
}

const DecapConfig *decap_config(const Worker &w) {
    const auto *ov = static_cast<const OverlayTables *>(w.slot(worker_slot()));
    return ov != nullptr ? ov->decap() : nullptr;
}

bool from_pod(const Worker &w, const rte_mbuf *m) {
    return w.tables().port(meta(m).in_port).role.load(std::memory_order_acquire) == PortRole::kPod;
}

// Sums the pseudo-header and the datagram: true when the checksum holds.
template <bool kV6>
bool udp_cksum_ok(const rte_mbuf *m, const void *ip, uint32_t l4_off, uint16_t udp_len) {
    uint32_t sum;
    if constexpr (kV6) {
        sum = raw_sum(static_cast<const rte_ipv6_hdr *>(ip)->src_addr, 32, 0);
    } else {
        sum = raw_sum(&static_cast<const rte_ipv4_hdr *>(ip)->src_addr, 8, 0);
    }
    sum += rte_cpu_to_be_16(IPPROTO_UDP);
    sum += rte_cpu_to_be_16(udp_len);
    if (seg_avail(m, l4_off) >= udp_len) {  // in the first segment: the flat sum
        sum = raw_sum(rte_pktmbuf_mtod_offset(m, const uint8_t *, l4_off), udp_len, sum);
    } else {
        uint16_t data;
        if (rte_raw_cksum_mbuf(m, l4_off, udp_len, &data) != 0) {
            return false;
        }
        sum += data;
    }
    return __rte_raw_cksum_reduce(sum) == 0xffff;
}

template <bool kV6>
Outcome vxlan_check(const Worker &w, rte_mbuf *m, const DecapConfig *dc) {
    const PktMeta &md = meta(m);
    // The dispatcher read the port before this burst's DecapConfig: a change
    // in between leaves a packet to the old port here (it is not VXLAN now).
    const uint16_t port = dc != nullptr ? dc->port : kDefaultVxlanPort;
    if (at<rte_udp_hdr>(m, md.l4_off)->dst_port != rte_cpu_to_be_16(port)) {
        return {Verdict::kKeep};
    }
    if (from_pod(w, m)) {
        return drop(DropReason::kVxlanFromPod);
    }
    if (md.flags & kMetaFragment) {
        return drop(DropReason::kVxlanFragment);
    }
    const NodeAddrs &node = w.tables().node();
    const void *ip = at<uint8_t>(m, md.l3_off);
    if constexpr (kV6) {
        const auto *ip6 = static_cast<const rte_ipv6_hdr *>(ip);
        if (!node.has_ip6 || !eq16(ip6->dst_addr, node.ip6.data())) {
            return {Verdict::kKeep};
        }
    } else {
        const auto *ip4 = static_cast<const rte_ipv4_hdr *>(ip);
        if (!node.has_ip4 || rte_be_to_cpu_32(ip4->dst_addr) != node.ip4.host()) {
            return {Verdict::kKeep};
        }
    }
    if (dc == nullptr || !(kV6 ? dc->vxlan6 : dc->vxlan4)) {
        // The VXLAN port is not ours on this node: the node's own stack may use it.
        return node.host_punt ? Outcome{Verdict::kHost} : drop(DropReason::kVxlanDisabled);
    }
    const uint32_t l4 = md.l4_off;
    if (seg_avail(m, l4) < kVxlanLen + kEthLen) {
        return drop(DropReason::kVxlanTruncated);
    }
    const auto *udp = at<rte_udp_hdr>(m, l4);
    const uint16_t udp_len = rte_be_to_cpu_16(udp->dgram_len);
    if (udp_len < kVxlanLen + kEthLen || udp_len > m->pkt_len - l4) {
        return drop(DropReason::kVxlanTruncated);
    }
    if constexpr (kV6) {
        if (!dc->is_peer6(static_cast<const rte_ipv6_hdr *>(ip)->src_addr)) {
            return drop(DropReason::kVxlanUnknownPeer);
        }
        if (udp->dgram_cksum == 0) {
            return drop(DropReason::kVxlanZeroChecksum6);
        }
    } else {
        if (!dc->is_peer4(static_cast<const rte_ipv4_hdr *>(ip)->src_addr)) {
            return drop(DropReason::kVxlanUnknownPeer);
        }
    }
    const uint64_t l4_flags = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
    if (l4_flags == RTE_MBUF_F_RX_L4_CKSUM_BAD ||
        (l4_flags != RTE_MBUF_F_RX_L4_CKSUM_GOOD && udp->dgram_cksum != 0 &&
         !udp_cksum_ok<kV6>(m, ip, l4, udp_len))) {
        return drop(DropReason::kVxlanBadChecksum);
    }
    const auto *vx = at<rte_vxlan_hdr>(m, l4 + sizeof(rte_udp_hdr));
    if ((vx->vx_flags & RTE_BE32(kVxlanFlagI)) == 0) {
        return drop(DropReason::kVxlanBadFlags);
    }
    if ((rte_be_to_cpu_32(vx->vx_vni) >> 8) != dc->vni) {
        return node.host_punt ? Outcome{Verdict::kHost} : drop(DropReason::kVxlanBadVni);
    }
    const auto *eth = at<rte_ether_hdr>(m, l4 + kVxlanLen);
    const auto &vtep = kV6 ? dc->vtep_mac6 : dc->vtep_mac4;
    if (!eq6(eth->dst_addr.addr_bytes, vtep.data())) {
        return drop(DropReason::kVxlanBadInnerMac);
    }
    const bool inner6 = eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV6);
    if (!inner6 && eth->ether_type != RTE_BE16(RTE_ETHER_TYPE_IPV4)) {
        return drop(DropReason::kVxlanBadInnerType);
    }
    const uint32_t inner = l4 + kVxlanLen + kEthLen;
    const uint32_t inner_min = inner6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    if (udp_len < kVxlanLen + kEthLen + inner_min || seg_avail(m, inner) < inner_min) {
        return drop(DropReason::kVxlanTruncated);
    }
    // The inner source: a pool's, or the sending node's own address (its
    // traffic to a pod, such as a NodePort connection it SNATed to itself).
    bool ok;
    if (inner6) {
        const uint8_t *src = at<rte_ipv6_hdr>(m, inner)->src_addr;
        ok = dc->in_pool6(src) ||
             (kV6 && eq16(src, static_cast<const rte_ipv6_hdr *>(ip)->src_addr));
    } else {
        const uint32_t src = at<rte_ipv4_hdr>(m, inner)->src_addr;
        ok = dc->in_pool4(src) || (!kV6 && src == static_cast<const rte_ipv4_hdr *>(ip)->src_addr);
    }
    if (!ok) {
        return drop(DropReason::kVxlanInnerSource);
    }
    return {Verdict::kDecap};
}

// A good VXLAN packet: UDP padding off, on to ip4_input / ip6_input by the
// inner ethertype.
void vxlan_finish(Worker &w, rte_mbuf *m) {
    PktMeta &md = meta(m);
    const uint32_t l4 = md.l4_off;
    const uint16_t udp_len = rte_be_to_cpu_16(at<rte_udp_hdr>(m, l4)->dgram_len);
    if (m->pkt_len - l4 > udp_len) {
        rte_pktmbuf_trim(m, static_cast<uint16_t>(m->pkt_len - l4 - udp_len));
    }
    const auto *eth = at<rte_ether_hdr>(m, l4 + kVxlanLen);
    const bool inner6 = eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV6);
    md.l3_off = static_cast<uint16_t>(l4 + kVxlanLen + kEthLen);
    md.l4_off = 0;  // ip4_input / ip6_input find it again
    if (inner6) {
        w.reenter6(m);
    } else {
        w.reenter4(m);
    }
}

Outcome ipip_check(const Worker &w, rte_mbuf *m, const DecapConfig *dc) {
    const PktMeta &md = meta(m);
    if (from_pod(w, m)) {
        return drop(DropReason::kIpipFromPod);
    }
    if (md.flags & kMetaFragment) {
        return drop(DropReason::kIpipFragment);
    }
    const NodeAddrs &node = w.tables().node();
    const auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
    if (!node.has_ip4 || rte_be_to_cpu_32(ip->dst_addr) != node.ip4.host()) {
        return {Verdict::kKeep};
    }
    if (dc == nullptr || !dc->ipip) {
        return node.host_punt ? Outcome{Verdict::kHost} : drop(DropReason::kIpipDisabled);
    }
    if (!dc->is_peer4(ip->src_addr)) {
        return drop(DropReason::kIpipUnknownPeer);
    }
    if (md.l4_off == 0 || seg_avail(m, md.l4_off) < sizeof(rte_ipv4_hdr)) {
        return drop(DropReason::kIpipTruncated);
    }
    const uint32_t inner_src = at<rte_ipv4_hdr>(m, md.l4_off)->src_addr;
    if (!dc->in_pool4(inner_src) && inner_src != ip->src_addr) {
        return drop(DropReason::kIpipInnerSource);
    }
    return {Verdict::kDecap};
}

// A good IP-in-IP packet: the inner header follows the outer one; the 14
// bytes before it (the end of the outer IPv4 header, at least 20 bytes in)
// become its Ethernet header, with the outer frame's addresses.
void ipip_finish(Worker &w, rte_mbuf *m) {
    PktMeta &md = meta(m);
    const uint16_t inner = md.l4_off;
    const auto *outer_eth = at<rte_ether_hdr>(m, 0);
    write_eth(at<rte_ether_hdr>(m, inner - kEthLen), outer_eth->dst_addr.addr_bytes,
              outer_eth->src_addr.addr_bytes, RTE_BE16(RTE_ETHER_TYPE_IPV4));
    md.l3_off = inner;
    md.l4_off = 0;
    w.reenter4(m);
}

// One burst: each packet checked, then kept, punted, dropped or finished.
template <Outcome (*kCheck)(const Worker &, rte_mbuf *, const DecapConfig *),
          void (*kFinish)(Worker &, rte_mbuf *)>
void decap(Worker &w, Burst &b) {
    const DecapConfig *dc = decap_config(w);
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        const Outcome o = kCheck(w, m, dc);
        switch (o.v) {
            case Verdict::kKeep:
                b.pkts[k++] = m;
                break;
            case Verdict::kHost:
                w.punt(m, PuntReason::kHost);
                break;
            case Verdict::kDrop:
                w.drop(m, o.reason);
                break;
            case Verdict::kDecap:
                kFinish(w, m);
                break;
        }
    }
    b.n = k;
}

}  // namespace

uint16_t current_port(const Worker &w) {
    const DecapConfig *dc = decap_config(w);
    return dc != nullptr ? dc->port : kDefaultVxlanPort;
}

FWD_ON_LOAD(auto &r = PipelineRegistry::global();
            r.add_stage({.name = "vxlan_decap4",
                         .hook = Hook::kIp4Local,
                         .fn = &decap<&vxlan_check<false>, &vxlan_finish>,
                         .l4_proto = IPPROTO_UDP,
                         .l4_port_fn = &current_port});
            r.add_stage({.name = "vxlan_decap6",
                         .hook = Hook::kIp6Local,
                         .fn = &decap<&vxlan_check<true>, &vxlan_finish>,
                         .l4_proto = IPPROTO_UDP,
                         .l4_port_fn = &current_port});
            r.add_stage({.name = "ipip_decap",
                         .hook = Hook::kIp4Local,
                         .fn = &decap<&ipip_check, &ipip_finish>,
                         .l4_proto = IPPROTO_IPIP}));

}  // namespace fwd::dp::overlay
