// vxlan_encap4 / vxlan_encap6 (Hook::kIp4Output / kIp6Output) and
// ipip_encap (kIp4Output): the overlays' output stages (overlay.hpp).
// Each takes the packets whose next hop has its kind (vxlan_nh_kind(),
// ipip_nh_kind()) and leaves the others as they are; a burst route did not
// mark with the kind's feature_nh_bit holds none and costs one test.
// Reads: meta.nh's NextHop (kind with an acquire load; group: the tunnel
//        index); the worker's OverlayTables (slot "overlay") and the Tunnel;
//        the inner header (TTL / hop limit, TOS / traffic class, DF; the
//        flow's addresses, protocol and ports for the UDP source port); the
//        underlay NextHop (kind with an acquire load, port, MTU) and its
//        port's role.
// Sets:  the inner TTL / hop limit - 1 (RFC 1624 checksum update), unless
//        the packet was built here (kMetaLocalOrigin): route4 / route6 took
//        the forwarding decision, ip4_input / ip6_input already answered a
//        TTL / hop limit <= 1 with time exceeded. Then the outer headers, as
//        Linux's devices in Calico's setup write them (test_overlay.cpp
//        compares with frames a kernel sent, linux_vxlan.py):
//   VXLAN (RFC 7348): outer Ethernet (14 bytes, written by l2_rewrite) +
//        IPv4 (20) / IPv6 (40) + UDP (8) + VXLAN (8); the frame's own
//        Ethernet header becomes the inner one (the tunnel's VTEP MACs, the
//        inner family's ethertype).
//        IPv4: TOS = the inner ECN field with CE sent as ECT(0), DSCP 0
//              (Linux's INET_ECN_encapsulate with the device's TOS 0); ID
//              from a per-worker counter; DF clear; TTL 64; header checksum.
//        IPv6: traffic class as that TOS, flow label 0, hop limit 64.
//        UDP:  source port 49152-65535 from the inner flow's hash
//              (flow_hash.hpp; RFC 7348 section 5), destination the
//              tunnel's (vxlanPort, 4789 by default; in Tunnel::udp_sum),
//              checksum computed for both families (Linux's vxlan device
//              made without IFLA_VXLAN_UDP_CSUM, as Felix makes it, computes
//              it over IPv4 too; IPv6 requires it).
//        VXLAN: flags I (0x08), the tunnel's VNI.
//   IP-in-IP (IPv4 only; Linux's tunl0 as Felix sets it up: TTL 0, TOS 0,
//        no PMTU discovery): an outer IPv4 header of protocol 4 before the
//        inner one; TTL copied from the inner (after the decrement), DF
//        copied from the inner, TOS as for VXLAN, ID from the counter.
//        meta.l3_off / l4_off / l4_proto then describe the outer packet,
//        flags = kMetaLocalOrigin (neither l2_rewrite nor a later kTxRouted
//        takes a hop off the outer TTL), meta.nh = the tunnel's underlay
//        next hop.
// Next:  a kVia underlay: the burst (l2_rewrite writes the outer Ethernet
//        header from it); kResolve: punted (PuntReason::kResolve) after the
//        port and MTU checks, finished by kTxRouted once the neighbour is
//        known.
// Drops: encap_no_overlay (no OverlayTables in the worker's slot),
//        encap_bad_tunnel (group out of range, a freed entry, another type
//        or family), encap_no_headroom, encap_bad_underlay (an underlay next
//        hop neither kVia nor kResolve), port_down, encap_mtu_exceeded (the
//        outer packet above the underlay's MTU: the tunnel next hop's MTU
//        was set too high), and the punt drops (punt_rate_limited,
//        punt_ring_full).
#include <rte_prefetch.h>
#include <rte_udp.h>
#include <rte_vxlan.h>

#include "fwd/dp/flow_hash.hpp"
#include "fwd/dp/offload.hpp"
#include "fwd/dp/overlay.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::overlay {

namespace {

constexpr uint16_t kEthLen = RTE_ETHER_HDR_LEN;
constexpr uint32_t kPortSeed = 0x0ddba115;  // not ECMP's: the two choices stay apart
constexpr uint16_t kSrcPortMin = 49152;     // RFC 7348 section 5: 49152-65535

// [W] the outer IPv4 IDs this worker's thread hands out (a worker has a
// thread of its own; the interface gives the feature no per-worker state).
// Linux counts per destination; a counter per worker keeps IDs apart for
// one destination as long as the workers do not wrap into each other's
// (each starts 2048 * its index further on).
thread_local uint16_t t_ip_id = 0;

uint16_t next_ip_id(const Worker &w) {
    return static_cast<uint16_t>(t_ip_id++ + (w.index() << 11));
}

// RFC 6040 as Linux applies it: the outer ECN field is the inner one, but
// CE leaves as ECT(0); no DSCP.
uint8_t outer_tos(uint8_t inner_tos) {
    const uint8_t ecn = inner_tos & 0x3;
    return ecn == 0x3 ? 0x2 : ecn;
}

// The header checksum is summed from the values, not read back from the
// header just written (loads over fresh narrower stores stall store
// forwarding: a fifth of the IPv4 encapsulation's cycles).
void write_outer4(rte_ipv4_hdr *o, uint8_t tos, uint16_t len, uint16_t id, rte_be16_t df,
                  uint8_t ttl, uint8_t proto, const Tunnel &tn) {
    const uint32_t s = rte_be_to_cpu_32(tn.src4), d = rte_be_to_cpu_32(tn.dst4);
    uint32_t sum = ((uint32_t{RTE_IPV4_VHL_DEF} << 8) | tos) + len + id + rte_be_to_cpu_16(df) +
                   ((uint32_t{ttl} << 8) | proto) + (s >> 16) + (s & 0xffff) + (d >> 16) +
                   (d & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    o->version_ihl = RTE_IPV4_VHL_DEF;
    o->type_of_service = tos;
    o->total_length = rte_cpu_to_be_16(len);
    o->packet_id = rte_cpu_to_be_16(id);
    o->fragment_offset = df;
    o->time_to_live = ttl;
    o->next_proto_id = proto;
    o->src_addr = tn.src4;
    o->dst_addr = tn.dst4;
    o->hdr_checksum = rte_cpu_to_be_16(static_cast<uint16_t>(~sum));
}

// meta describes the outer packet from now on; built here, it loses no hop.
void outer_meta(PktMeta &md, uint16_t l4_off, uint8_t proto) {
    md.l3_off = kEthLen;
    md.l4_off = l4_off;
    md.l4_proto = proto;
    md.flags = kMetaLocalOrigin;
}

// Cuts `cut` bytes off the front, then makes room for `add` more. false
// when the headroom is short.
bool make_room(rte_mbuf *m, uint16_t cut, uint16_t add) {
    if (cut != 0) {
        rte_pktmbuf_adj(m, cut);
    }
    return rte_pktmbuf_prepend(m, add) != nullptr;
}

template <bool kV6>
bool vxlan_one(Worker &w, rte_mbuf *m, const Tunnel &tn) {
    PktMeta &md = meta(m);
    const uint32_t hash = kV6 ? flow_hash6(m, md, kPortSeed) : flow_hash4(m, md, kPortSeed);
    // What the inner packet adds to the outer UDP checksum (one segment),
    // summed before this stage writes into it: an IPv4 header's own sum is
    // 0xffff (its checksum is right, and stays right through the TTL
    // update), so only what follows it counts; an IPv6 header is summed
    // whole, the hop limit's decrement taken off after.
    const bool flat = m->nb_segs == 1;
    uint32_t inner_sum = 0;
    uint8_t tos;
    if constexpr (kV6) {
        auto *ip = at<rte_ipv6_hdr>(m, md.l3_off);
        if (flat) {
            inner_sum = __rte_raw_cksum_reduce(raw_sum(ip, m->pkt_len - md.l3_off, 0));
        }
        if (!(md.flags & kMetaLocalOrigin)) {
            ip->hop_limits--;
            // one less in the hop limit byte: the word (next header, hop
            // limit) in native order loses 0x0100 (on a little-endian CPU)
            inner_sum += static_cast<uint16_t>(~rte_cpu_to_be_16(1));
        }
        tos = static_cast<uint8_t>(rte_be_to_cpu_32(ip->vtc_flow) >> 20);
    } else {
        auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
        if (flat) {
            const uint32_t ihl = (ip->version_ihl & 0xfu) * 4u;
            inner_sum = __rte_raw_cksum_reduce(raw_sum(reinterpret_cast<const uint8_t *>(ip) + ihl,
                                                       m->pkt_len - md.l3_off - ihl, 0));
        }
        if (!(md.flags & kMetaLocalOrigin)) {
            ip4_dec_ttl(ip);
        }
        tos = ip->type_of_service;
    }
    constexpr uint16_t kIpLen = kV6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    constexpr uint16_t kL4 = kEthLen + kIpLen;
    // Before the frame's own Ethernet header (the inner one from now on).
    constexpr uint16_t kAdd = kL4 + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr);
    if (!make_room(m, static_cast<uint16_t>(md.l3_off - kEthLen), kAdd)) {
        w.drop(m, DropReason::kEncapNoHeadroom);
        return false;
    }
    // The tunnel's template (Tunnel::hdr: outer IP, UDP, VXLAN, the frame's
    // own Ethernet header becoming the inner one), then this packet's fields.
    uint8_t *outer = at<uint8_t>(m, kEthLen);
    static_assert(kAdd <= sizeof(Tunnel::hdr));
    std::memcpy(outer, tn.hdr.data(), kAdd);
    const auto udp_len = static_cast<uint16_t>(m->pkt_len - kL4);
    auto *udp = reinterpret_cast<rte_udp_hdr *>(outer + kIpLen);
    const rte_be16_t sport = rte_cpu_to_be_16(static_cast<uint16_t>(kSrcPortMin | (hash >> 18)));
    const rte_be16_t len_be = rte_cpu_to_be_16(udp_len);
    udp->src_port = sport;
    udp->dgram_len = len_be;
    // the tunnel's fixed part, the source port, the length twice (pseudo-
    // header and UDP header), the inner packet
    uint32_t udp_sum = 0;
    if (flat) {
        udp_sum = tn.udp_sum + sport + 2u * len_be + inner_sum;  // each at most 17 bits
        const auto ck = static_cast<uint16_t>(~__rte_raw_cksum_reduce(udp_sum));
        udp_sum = ck == 0 ? 0xffff : ck;
    }
    if constexpr (kV6) {
        auto *o = reinterpret_cast<rte_ipv6_hdr *>(outer);
        o->vtc_flow = rte_cpu_to_be_32((6u << 28) | (uint32_t{outer_tos(tos)} << 20));
        o->payload_len = len_be;
        udp->dgram_cksum =
            flat ? static_cast<uint16_t>(udp_sum) : rte_ipv6_udptcp_cksum_mbuf(m, o, kL4);
    } else {
        auto *o = reinterpret_cast<rte_ipv4_hdr *>(outer);
        const uint8_t otos = outer_tos(tos);
        const rte_be16_t tlen = rte_cpu_to_be_16(static_cast<uint16_t>(m->pkt_len - kEthLen));
        const rte_be16_t id = rte_cpu_to_be_16(next_ip_id(w));
        o->type_of_service = otos;
        o->total_length = tlen;
        o->packet_id = id;
        // the template's sum, and the TOS (the second byte of the first
        // word), length and ID as the header holds them
        o->hdr_checksum = static_cast<uint16_t>(
            ~__rte_raw_cksum_reduce(tn.ip4_sum + (uint32_t{otos} << 8) + tlen + id));
        udp->dgram_cksum =
            flat ? static_cast<uint16_t>(udp_sum) : rte_ipv4_udptcp_cksum_mbuf(m, o, kL4);
    }
    outer_meta(md, kL4, IPPROTO_UDP);
    return true;
}

bool ipip_one(Worker &w, rte_mbuf *m, const Tunnel &tn) {
    PktMeta &md = meta(m);
    auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
    if (!(md.flags & kMetaLocalOrigin)) {
        ip4_dec_ttl(ip);
    }
    const uint8_t ttl = ip->time_to_live;
    const uint8_t tos = ip->type_of_service;
    const rte_be16_t df = ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_DF_FLAG);
    constexpr uint16_t kAdd = kEthLen + sizeof(rte_ipv4_hdr);  // before the inner header
    if (!make_room(m, md.l3_off, kAdd)) {
        w.drop(m, DropReason::kEncapNoHeadroom);
        return false;
    }
    write_outer4(at<rte_ipv4_hdr>(m, kEthLen), outer_tos(tos),
                 static_cast<uint16_t>(m->pkt_len - kEthLen), next_ip_id(w), df, ttl, IPPROTO_IPIP,
                 tn);
    outer_meta(md, kAdd, IPPROTO_IPIP);
    return true;
}

// A tun pod's offload packet (offload.hpp) about to be encapsulated: a
// partial checksum is filled now, so the outer UDP checksum covers the
// final inner packet; a GSO frame is encapsulated whole and cut at the
// egress, where each segment's inner and outer checksums are computed.
// False when dropped.
bool before_encap(Worker &w, rte_mbuf *m) {
    if ((m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) != 0) {
        return true;
    }
    if (!fill_l4_checksum(m)) {
        w.drop(m, DropReason::kGsoBadFrame);
        return false;
    }
    return true;
}

// The encapsulated packet goes out through the tunnel's underlay next hop:
// true when it stays in the burst (kVia), false when punted or dropped.
bool to_underlay(Worker &w, rte_mbuf *m, const Tunnel &tn, uint32_t inner_off) {
    const Tables &t = w.tables();
    PktMeta &md = meta(m);
    md.nh = tn.underlay_nh;
    const NextHop &u = t.nh(tn.underlay_nh);
    const NhKind kind = load_kind(u);
    if (kind != NhKind::kVia && kind != NhKind::kResolve) {
        w.drop(m, DropReason::kEncapBadUnderlay);
        return false;
    }
    if (t.port(u.port).role.load(std::memory_order_acquire) == PortRole::kNone) {
        w.drop(m, DropReason::kPortDown);
        return false;
    }
    // A GSO frame by its largest segment (offload.hpp).
    if (mtu_outer_len(m, inner_off, m->pkt_len - md.l3_off) > u.mtu) {
        w.drop(m, DropReason::kEncapMtuExceeded);
        return false;
    }
    if (kind == NhKind::kResolve) {
        w.punt(m, PuntReason::kResolve);
        return false;
    }
    return true;
}

template <TunnelType kType, bool kV6>
void encap(Worker &w, Burst &b) {
    const NhKind kind = kType == TunnelType::kVxlan ? vxlan_nh_kind() : ipip_nh_kind();
    // The inner IP header's offset from the outer one's.
    constexpr uint32_t kInnerOff =
        (kV6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr)) +
        (kType == TunnelType::kVxlan ? sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr) + kEthLen : 0);
    if (!(b.feature_nh & feature_nh_bit(kind))) {
        return;
    }
    const Tables &t = w.tables();
    const auto *ov = static_cast<const OverlayTables *>(w.slot(worker_slot()));
    // The outer headers go into the headroom, a cache line RX did not touch:
    // ask for every packet's line first, so the misses overlap.
    for (uint16_t i = 0; i < b.n; i++) {
        rte_prefetch0_write(rte_pktmbuf_mtod(b.pkts[i], uint8_t *) - RTE_CACHE_LINE_SIZE);
    }
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        const NextHop &nh = t.nh(meta(m).nh);
        if (load_kind(nh) != kind) {
            b.pkts[k++] = m;
            continue;
        }
        if (ov == nullptr) {
            w.drop(m, DropReason::kEncapNoOverlay);
            continue;
        }
        const Tunnel *tn = nh.group < kMaxTunnels ? &ov->tunnel(nh.group) : nullptr;
        if (tn == nullptr || tn->type != kType || tn->v6 != kV6 || tn->underlay_nh == kNhInvalid ||
            tn->underlay_nh >= kMaxNextHops) {
            w.drop(m, DropReason::kEncapBadTunnel);
            continue;
        }
        const uint64_t offload = m->ol_flags & kOffloadFlags;
        if (unlikely(offload != 0) && !before_encap(w, m)) {
            continue;
        }
        const bool built =
            kType == TunnelType::kVxlan ? vxlan_one<kV6>(w, m, *tn) : ipip_one(w, m, *tn);
        if (unlikely((offload & RTE_MBUF_F_TX_TCP_SEG) != 0) && built) {
            // Cut at the egress (offload.hpp), outer headers and all.
            m->ol_flags |= (kType == TunnelType::kVxlan ? RTE_MBUF_F_TX_TUNNEL_VXLAN
                                                        : RTE_MBUF_F_TX_TUNNEL_IPIP) |
                           (kV6 ? RTE_MBUF_F_TX_OUTER_IPV6 : RTE_MBUF_F_TX_OUTER_IPV4);
        }
        if (built && to_underlay(w, m, *tn, kInnerOff)) {
            b.pkts[k++] = m;
        }
    }
    b.n = k;
}

}  // namespace

FWD_ON_LOAD(auto &r = PipelineRegistry::global(); r.add_stage(
    {.name = "vxlan_encap4", .hook = Hook::kIp4Output, .fn = &encap<TunnelType::kVxlan, false>});
            r.add_stage({.name = "vxlan_encap6",
                         .hook = Hook::kIp6Output,
                         .fn = &encap<TunnelType::kVxlan, true>});
            r.add_stage({.name = "ipip_encap",
                         .hook = Hook::kIp4Output,
                         .fn = &encap<TunnelType::kIpip, false>}));

}  // namespace fwd::dp::overlay
