// route4 / route6: longest-prefix match and the egress MTU check.
// Reads: destination address; rte_lpm (IPv4) / the active rte_fib6 copy (IPv6);
//        the NextHop the route points at; PortState of its port.
// Sets:  meta.nh.
// Next:  out (-> l2_rewrite) for pod and via next hops.
// Drops: no_route (ICMP net unreachable / no route), route_unreachable (ICMP
//        host unreachable / address unreachable), route_blackhole, port_down,
//        ip4_frag_needed (ICMP fragmentation needed with the next-hop MTU,
//        RFC 1191), ip4_mtu_exceeded (no DF: fragmentation is not done),
//        ip6_too_big (ICMPv6 packet too big, RFC 8201).
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr uint8_t kIcmp4DestUnreach = 3;
constexpr uint8_t kIcmp6DestUnreach = 1;
constexpr uint8_t kIcmp6TooBig = 2;

// Common to both families: what the next hop says about the packet.
// Returns the next hop when the packet may go on, nullptr when it was handled.
template <bool kV6>
const NextHop *check_nh(Worker &w, rte_mbuf *m, uint32_t nh_id, uint32_t l3_len, bool df) {
    const Tables &t = w.tables();
    const NextHop &nh = t.nh(nh_id);
    auto err = [&](uint8_t type4, uint8_t code4, uint8_t type6, uint8_t code6, uint32_t extra,
                   DropReason r) {
        if constexpr (kV6) {
            icmp6_error(w, m, type6, code6, extra, r);
        } else {
            icmp4_error(w, m, type4, code4, extra, r);
        }
    };
    switch (nh.kind) {
        case NhKind::kPod:
        case NhKind::kVia:
            break;
        case NhKind::kBlackhole:
            w.drop(m, DropReason::kRouteBlackhole);
            return nullptr;
        case NhKind::kUnreachable:
            err(kIcmp4DestUnreach, 1, kIcmp6DestUnreach, 3, 0, DropReason::kRouteUnreachable);
            return nullptr;
        case NhKind::kNone:
        default:
            err(kIcmp4DestUnreach, 0, kIcmp6DestUnreach, 0, 0, DropReason::kNoRoute);
            return nullptr;
    }
    if (t.port(nh.port).role.load(std::memory_order_acquire) == PortRole::kNone) {
        w.drop(m, DropReason::kPortDown);
        return nullptr;
    }
    if (l3_len > nh.mtu) {
        if constexpr (kV6) {
            err(0, 0, kIcmp6TooBig, 0, nh.mtu, DropReason::kIp6TooBig);
        } else if (df) {
            err(kIcmp4DestUnreach, 4, 0, 0, nh.mtu, DropReason::kIp4FragNeeded);
        } else {
            w.drop(m, DropReason::kIp4MtuExceeded);
        }
        return nullptr;
    }
    return &nh;
}

}  // namespace

void route4(Worker &w, Burst &in, Burst &out) {
    if (in.n == 0) {
        return;  // rte_lpm_lookup_bulk declares an array of n entries
    }
    uint32_t dst[kBurst];
    uint32_t hop[kBurst];
    for (uint16_t i = 0; i < in.n; i++) {
        auto *ip = at<rte_ipv4_hdr>(in.pkts[i], meta(in.pkts[i]).l3_off);
        dst[i] = rte_be_to_cpu_32(ip->dst_addr);
    }
    rte_lpm_lookup_bulk(w.tables().lpm4(), dst, hop, in.n);
    const uint32_t dflt = w.tables().default4();
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        PktMeta &md = meta(m);
        uint32_t id = (hop[i] & RTE_LPM_LOOKUP_SUCCESS) ? (hop[i] & 0x00ffffff) : dflt;
        auto *ip = at<rte_ipv4_hdr>(m, md.l3_off);
        bool df = (ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_DF_FLAG)) != 0;
        if (check_nh<false>(w, m, id, rte_be_to_cpu_16(ip->total_length), df) != nullptr) {
            md.nh = id;
            out.push(m);
        }
    }
}

void route6(Worker &w, Burst &in, Burst &out) {
    uint8_t dst[kBurst][16];
    uint64_t hop[kBurst];
    for (uint16_t i = 0; i < in.n; i++) {
        auto *ip = at<rte_ipv6_hdr>(in.pkts[i], meta(in.pkts[i]).l3_off);
        std::memcpy(dst[i], ip->dst_addr, 16);
    }
    rte_fib6_lookup_bulk(w.tables().fib6(), dst, hop, in.n);
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        PktMeta &md = meta(m);
        auto id = static_cast<uint32_t>(hop[i]);
        uint32_t l3_len = m->pkt_len - md.l3_off;
        if (check_nh<true>(w, m, id, l3_len, true) != nullptr) {
            md.nh = id;
            out.push(m);
        }
    }
}

}  // namespace fwd::dp
