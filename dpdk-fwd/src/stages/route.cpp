// route4 / route6: longest-prefix match, ECMP member choice and the egress
// MTU check.
// Reads: destination address; rte_lpm (IPv4) / the active IPv6 copy (its Front6
//        for /128 and /122 routes, its rte_fib6 trie for the rest; tables.hpp);
//        the NextHop the route points at (kind with an acquire load: the
//        control thread flips kVia <-> kResolve in place); for kGroup, the
//        group's members and the flow's addresses, protocol and ports;
//        PortState of the next hop's port.
// ECMP (kGroup): one member per flow, by the flow hash of flow_hash.hpp
//        (addresses, protocol, TCP / UDP ports; no ports for fragments, so
//        every fragment of a datagram takes the member the datagram does).
//        The member is then checked like any next hop below.
// Sets:  meta.nh (the member's id for ECMP); in out.feature_nh the
//        feature_nh_bit of each feature's kind of next hop that went out.
// Next:  out (-> the output hook, then l2_rewrite) for kPod, kVia and the
//        kinds features own (NhKind::kFirstFeature and up, pipeline.hpp);
//        kResolve (neighbor not known yet): after the port and MTU checks,
//        punted to the control thread (PuntReason::kResolve) unchanged (no
//        TTL / hop limit decrement), meta.nh telling which next hop waits.
// Drops: no_route (ICMP net unreachable / no route), route_unreachable (ICMP
//        host unreachable / address unreachable), route_blackhole, port_down,
//        ecmp_bad_group (kGroup with no or too many members, or a group index
//        out of range), ecmp_bad_member (a member that is itself a group),
//        both sending ICMP unreachable as no_route does,
//        ip4_frag_needed (ICMP fragmentation needed with the next-hop MTU,
//        RFC 1191), ip4_mtu_exceeded (no DF: fragmentation is not done),
//        ip6_too_big (ICMPv6 packet too big, RFC 8201), and the punt drops
//        (punt_rate_limited, punt_ring_full). A GSO frame (offload.hpp) is
//        checked by its largest segment: it is cut to fit where it leaves.
#include "fwd/dp/flow_hash.hpp"
#include "fwd/dp/offload.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr uint8_t kIcmp4DestUnreach = 3;
constexpr uint8_t kIcmp6DestUnreach = 1;
constexpr uint8_t kIcmp6TooBig = 2;
constexpr uint32_t kFlowSeed = 0x5eed1e55;

// Where one routed packet goes: forwarded (appended to out), punted or
// dropped. id: what the route points at.
template <bool kV6>
void decide(Worker &w, rte_mbuf *m, uint32_t id, uint32_t l3_len, bool df, Burst &out) {
    const Tables &t = w.tables();
    PktMeta &md = meta(m);
    auto err = [&](uint8_t type4, uint8_t code4, uint8_t type6, uint8_t code6, uint32_t extra,
                   DropReason r) {
        if constexpr (kV6) {
            icmp6_error(w, m, type6, code6, extra, r);
        } else {
            icmp4_error(w, m, type4, code4, extra, r);
        }
    };
    NhKind kind = load_kind(t.nh(id));
    if (kind == NhKind::kGroup) {
        const NextHop &g = t.nh(id);
        if (g.group_n == 0 || g.group_n > kMaxGroupPaths || g.group >= kMaxGroups) {
            err(kIcmp4DestUnreach, 0, kIcmp6DestUnreach, 0, 0, DropReason::kEcmpBadGroup);
            return;
        }
        uint32_t h = kV6 ? flow_hash6(m, md, kFlowSeed) : flow_hash4(m, md, kFlowSeed);
        // Multiply-shift: the hash's high bits pick, no division.
        auto pick = static_cast<uint32_t>((uint64_t{h} * g.group_n) >> 32);
        id = t.group_member(g.group, pick);
        kind = load_kind(t.nh(id));
        if (kind == NhKind::kGroup) {
            err(kIcmp4DestUnreach, 0, kIcmp6DestUnreach, 0, 0, DropReason::kEcmpBadMember);
            return;
        }
    }
    md.nh = id;
    const NextHop &nh = t.nh(id);
    switch (kind) {
        case NhKind::kPod:
        case NhKind::kVia:
        case NhKind::kResolve:
            break;
        case NhKind::kBlackhole:
            w.drop(m, DropReason::kRouteBlackhole);
            return;
        case NhKind::kUnreachable:
            err(kIcmp4DestUnreach, 1, kIcmp6DestUnreach, 3, 0, DropReason::kRouteUnreachable);
            return;
        case NhKind::kNone:
        default:
            if (static_cast<uint8_t>(kind) >= static_cast<uint8_t>(NhKind::kFirstFeature)) {
                break;  // a feature's kind: its output stage takes it
            }
            err(kIcmp4DestUnreach, 0, kIcmp6DestUnreach, 0, 0, DropReason::kNoRoute);
            return;
    }
    if (t.port(nh.port).role.load(std::memory_order_acquire) == PortRole::kNone) {
        w.drop(m, DropReason::kPortDown);
        return;
    }
    if (l3_len > nh.mtu) {
        if constexpr (kV6) {
            err(0, 0, kIcmp6TooBig, 0, nh.mtu, DropReason::kIp6TooBig);
        } else if (df) {
            err(kIcmp4DestUnreach, 4, 0, 0, nh.mtu, DropReason::kIp4FragNeeded);
        } else {
            w.drop(m, DropReason::kIp4MtuExceeded);
        }
        return;
    }
    if (kind == NhKind::kResolve) {
        w.punt(m, PuntReason::kResolve);
        return;
    }
    if (static_cast<uint8_t>(kind) >= static_cast<uint8_t>(NhKind::kFirstFeature)) {
        out.feature_nh |= feature_nh_bit(kind);
    }
    out.push(m);
}

// The usual packet: a pod or via next hop whose port is up and whose MTU it
// fits goes straight to out (true); decide() sorts out everything else with
// the same tests in its own order.
inline bool straight_out(const Tables &t, rte_mbuf *m, uint32_t id, uint32_t l3_len, Burst &out) {
    const NextHop &nh = t.nh(id);
    const NhKind kind = load_kind(nh);
    if ((kind == NhKind::kPod || kind == NhKind::kVia) && l3_len <= nh.mtu &&
        t.port(nh.port).role.load(std::memory_order_acquire) != PortRole::kNone) {
        meta(m).nh = id;
        out.push(m);
        return true;
    }
    return false;
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
    const Tables &t = w.tables();
    rte_lpm_lookup_bulk(t.lpm4(), dst, hop, in.n);
    const uint32_t dflt = t.default4();
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        uint32_t id = (hop[i] & RTE_LPM_LOOKUP_SUCCESS) ? (hop[i] & 0x00ffffff) : dflt;
        auto *ip = at<rte_ipv4_hdr>(m, meta(m).l3_off);
        const uint32_t l3_len = mtu_l3_len(m, rte_be_to_cpu_16(ip->total_length));
        if (likely(straight_out(t, m, id, l3_len, out))) {
            continue;
        }
        bool df = (ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_DF_FLAG)) != 0;
        decide<false>(w, m, id, l3_len, df, out);
    }
}

void route6(Worker &w, Burst &in, Burst &out) {
    static_assert(kBurst <= Front6::kMaxBulk);
    uint8_t dst[kBurst][16];
    uint64_t hop[kBurst];
    for (uint16_t i = 0; i < in.n; i++) {
        auto *ip = at<rte_ipv6_hdr>(in.pkts[i], meta(in.pkts[i]).l3_off);
        std::memcpy(dst[i], ip->dst_addr, 16);
    }
    const Tables &t = w.tables();
    t.lookup6_bulk(dst, hop, in.n);
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        auto id = static_cast<uint32_t>(hop[i]);
        const uint32_t l3_len = mtu_l3_len(m, m->pkt_len - meta(m).l3_off);
        if (likely(straight_out(t, m, id, l3_len, out))) {
            continue;
        }
        decide<true>(w, m, id, l3_len, true, out);
    }
}

}  // namespace fwd::dp
