// nat4 / nat6 (Hook::kIp4Input / kIp6Input) and nat4_local / nat6_local
// (Hook::kIp4Local / kIp6Local): connection tracking and natOutgoing
// (nat.hpp), one stage per family and place.
//
// One stage does both the tracking and the translation: today conntrack
// serves NAT only, and only flows that NAT translates are tracked, so the
// NAT decision comes first (a pool check) and the lookup only for the
// packets it selects. When stateful policy comes, the lookup moves to a ct
// stage before it, handing the flow in the packet's metadata.
//
// nat4 / nat6, packets to be routed:
// Reads: meta (l3_off, l4_off, l4_proto, flags); the worker's NatWorker
//        (slot "nat") and its published NatConfig, once per burst; the node
//        addresses (NodeAddrs); the IP addresses, L4 ports, TCP header.
// Takes: packets natOutgoing selects (PoolTable::snat4 / snat6; others stay
//        as they are, not tracked). A packet of a known flow is tracked
//        (TCP states and windows) and translated as its flow says for its
//        direction; a new flow gets the node's address as its source and a
//        source port (echo identifier) by choose_port: the original when
//        the reply tuple is free, else the next free one of the range.
//        ICMP errors a pod sends about a flow (the quote of a packet it
//        got) are translated with it (error_translate).
// Sets:  addresses, ports / identifier, IPv4 header checksum, L4 checksum
//        (RFC 1624 incremental; IPv6 and ICMPv6 through the pseudo-header;
//        an IPv4 UDP checksum of 0 stays 0).
// Next:  the same burst (route4 / route6).
// Drops: ct_* for each refusal of the tracker (truncated, not tracked, TCP
//        not SYN / bad flags / invalid / out of window / RST out of window,
//        echo reply with no request, table or index full, busy, ICMP error
//        truncated / bad quote / no flow); nat_fragment (no reassembly: a
//        fragment of a flow to translate), nat_no_node_addr,
//        nat_ports_exhausted, nat_headers_split (headers beyond the first
//        segment).
//
// nat4_local / nat6_local, packets to the node's address (the replies of
// source-NATed flows):
// Takes: a packet of a known flow (tracked, then translated back: the
//        destination becomes the pod), and an ICMP error quoting one (outer
//        destination and quoted header translated, both checksums).
//        Anything else stays for icmp*_local (the node's own traffic).
// Next:  Worker::reroute4 / reroute6 (route, output hook, l2_rewrite: the
//        TTL / hop limit loses one, as through Linux's NAT).
// Drops: the tracker's refusals of a known flow's packet (ct_tcp_*),
//        nat_headers_split, ip4_ttl_exceeded / ip6_hop_limit_exceeded (a
//        reply that arrives with nothing left to forward with).
#include <rte_cycles.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <algorithm>

#include "fwd/dp/nat.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::nat {

namespace {

using ct::Dir;
using ct::FlowKey;
using ct::Result;

constexpr DropReason kPass = DropReason::kCount;  // no drop: the packet goes on
constexpr uint8_t kNatSnat = 1;                   // NatInfo::flags

DropReason drop_for(Result r) {
    switch (r) {
        case Result::kTruncated:
            return DropReason::kCtTruncated;
        case Result::kFragment:
            return DropReason::kNatFragment;
        case Result::kNotTracked:
            return DropReason::kCtNotTracked;
        case Result::kTcpNotSyn:
            return DropReason::kCtTcpNotSyn;
        case Result::kTcpBadFlags:
            return DropReason::kCtTcpBadFlags;
        case Result::kIcmpNoRequest:
            return DropReason::kCtIcmpNoRequest;
        case Result::kTcpInvalid:
            return DropReason::kCtTcpInvalid;
        case Result::kTcpOutOfWindow:
            return DropReason::kCtTcpOutOfWindow;
        case Result::kTcpRstOutOfWindow:
            return DropReason::kCtTcpRstOutOfWindow;
        case Result::kTableFull:
            return DropReason::kCtTableFull;
        case Result::kIndexFull:
            return DropReason::kCtIndexFull;
        case Result::kIcmpErrorTruncated:
            return DropReason::kCtIcmpErrorTruncated;
        case Result::kIcmpErrorBadQuote:
            return DropReason::kCtIcmpErrorBadQuote;
        case Result::kIcmpErrorNoFlow:
            return DropReason::kCtIcmpErrorNoFlow;
        case Result::kOk:
        case Result::kCreated:
        case Result::kTcpIgnored:
            return kPass;
        default:  // kNew, kExists, kReplyExists, kIcmpError: handled by the callers
            return DropReason::kCtBusy;
    }
}

// RFC 1624 eqn. 3 for len bytes (even) changing from o to n.
uint16_t csum_replace(uint16_t ck, const void *o, const void *n, uint32_t len) {
    const uint16_t so = __rte_raw_cksum_reduce(raw_sum(o, len, 0));
    const uint16_t sn = __rte_raw_cksum_reduce(raw_sum(n, len, 0));
    uint32_t s = static_cast<uint16_t>(~ck) + static_cast<uint16_t>(~so) + uint32_t{sn};
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(~s);
}

bool is_icmp(uint8_t proto) {
    return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

// Writes the addresses and ports of `out` that differ from the packet's
// (IP header at l3, L4 header of proto at l4, the packet ending at end),
// keeping the checksums right. The L4 checksum is updated only when it lies
// before end (a quoted header may be cut). False when the headers are not in
// the first segment.
template <bool kV6>
bool rewrite(rte_mbuf *m, uint32_t l3, uint32_t l4, uint8_t proto, uint32_t end,
             const FlowKey &out) {
    const uint32_t hdr = proto == IPPROTO_TCP ? 20 : 8;
    if (seg_avail(m, 0) < std::min(l4 + hdr, end) || l4 + 4 > end) {
        return false;
    }
    const uint32_t ck_off = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2;
    uint16_t *ck = l4 + ck_off + 2 <= end ? at<uint16_t>(m, l4 + ck_off) : nullptr;
    if (ck != nullptr && !kV6 && proto == IPPROTO_UDP && *ck == 0) {
        ck = nullptr;  // IPv4 UDP without a checksum stays without
    }
    const bool pseudo = kV6 || proto != IPPROTO_ICMP;
    auto change = [&](void *field, const void *value, uint32_t len, rte_ipv4_hdr *ip4,
                      bool in_pseudo) {
        if (std::memcmp(field, value, len) == 0) {
            return;
        }
        if (ip4 != nullptr) {
            ip4->hdr_checksum = csum_replace(ip4->hdr_checksum, field, value, len);
        }
        if (ck != nullptr && in_pseudo) {
            *ck = csum_replace(*ck, field, value, len);
        }
        std::memcpy(field, value, len);
    };
    if constexpr (kV6) {
        auto *ip = at<rte_ipv6_hdr>(m, l3);
        change(ip->src_addr, out.src.data(), 16, nullptr, true);
        change(ip->dst_addr, out.dst.data(), 16, nullptr, true);
    } else {
        auto *ip = at<rte_ipv4_hdr>(m, l3);
        change(at<uint8_t>(m, l3 + 12), out.src.data(), 4, ip, pseudo);
        change(at<uint8_t>(m, l3 + 16), out.dst.data(), 4, ip, pseudo);
    }
    if (is_icmp(proto)) {
        if (l4 + 6 <= end) {
            const uint16_t id = out.sport.raw();
            change(at<uint8_t>(m, l4 + 4), &id, 2, nullptr, true);
        }
    } else if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
        const uint16_t sp = out.sport.raw(), dp = out.dport.raw();
        change(at<uint8_t>(m, l4), &sp, 2, nullptr, true);
        change(at<uint8_t>(m, l4 + 2), &dp, 2, nullptr, true);
    }
    if (ck != nullptr && proto == IPPROTO_UDP && *ck == 0) {
        *ck = 0xffff;  // RFC 768: a computed 0 goes out as all ones
    }
    return true;
}

// Where the IP packet at l3 ends (its length field, bounded by the frame).
template <bool kV6>
uint32_t ip_end(const rte_mbuf *m, uint32_t l3) {
    uint32_t len;
    if constexpr (kV6) {
        len = rte_be_to_cpu_16(rte_pktmbuf_mtod_offset(m, const rte_ipv6_hdr *, l3)->payload_len) +
              40u;
    } else {
        len = rte_be_to_cpu_16(rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr *, l3)->total_length);
    }
    return std::min<uint32_t>(l3 + len, m->pkt_len);
}

// An ICMP error about flow f, of direction d (match_icmp_error's hit): the
// quoted packet (which went the other way, translated) becomes what its
// sender sent (tuple[other(d)]); the outer addresses the flow changes in
// direction d change; the ICMP checksum is summed again over the message.
template <bool kV6>
DropReason error_translate(rte_mbuf *m, const ct::Flow &f, Dir d) {
    const PktMeta &md = meta(m);
    const uint32_t l3 = md.l3_off, l4 = md.l4_off, end = ip_end<kV6>(m, l3);
    if (seg_avail(m, 0) < end) {
        return DropReason::kNatHeadersSplit;
    }
    // The quoted header (match_icmp_error checked it is there and sound).
    const uint32_t q = l4 + 8;
    uint32_t ql4;
    uint8_t qproto;
    if constexpr (kV6) {
        qproto = *at<uint8_t>(m, q + 6);
        ql4 = q + 40;
        while (qproto == 0 || qproto == 43 || qproto == 60 || qproto == 44) {
            if (ql4 + 8 > end) {
                return DropReason::kCtIcmpErrorTruncated;
            }
            const uint8_t *e = at<uint8_t>(m, ql4);
            ql4 += qproto == 44 ? 8u : (e[1] + 1u) * 8;
            qproto = e[0];
        }
    } else {
        qproto = *at<uint8_t>(m, q + 9);
        ql4 = q + (*at<uint8_t>(m, q) & 0xfu) * 4;
    }
    if (!rewrite<kV6>(m, q, ql4, qproto, end, f.tuple[static_cast<size_t>(other(d))])) {
        return DropReason::kNatHeadersSplit;
    }
    // The outer header: only the addresses the flow changes in direction d
    // (the error's source is whoever sent it, not the flow's peer).
    const uint8_t ch = f.changes_for(d);
    const FlowKey out = f.translated(d);
    if constexpr (kV6) {
        auto *ip = at<rte_ipv6_hdr>(m, l3);
        if (ch & ct::kChangeSrcAddr) {
            std::memcpy(ip->src_addr, out.src.data(), 16);
        }
        if (ch & ct::kChangeDstAddr) {
            std::memcpy(ip->dst_addr, out.dst.data(), 16);
        }
    } else {
        auto *ip = at<rte_ipv4_hdr>(m, l3);
        if (ch & ct::kChangeSrcAddr) {
            ip->hdr_checksum = csum_replace(ip->hdr_checksum, &ip->src_addr, out.src.data(), 4);
            std::memcpy(&ip->src_addr, out.src.data(), 4);
        }
        if (ch & ct::kChangeDstAddr) {
            ip->hdr_checksum = csum_replace(ip->hdr_checksum, &ip->dst_addr, out.dst.data(), 4);
            std::memcpy(&ip->dst_addr, out.dst.data(), 4);
        }
    }
    auto *ck = at<uint16_t>(m, l4 + 2);
    *ck = 0;
    uint32_t sum = raw_sum(at<uint8_t>(m, l4), end - l4, 0);
    if constexpr (kV6) {
        sum = raw_sum(at<rte_ipv6_hdr>(m, l3)->src_addr, 32, sum);
        sum += rte_cpu_to_be_16(static_cast<uint16_t>(end - l4));
        sum += rte_cpu_to_be_16(IPPROTO_ICMPV6);
    }
    *ck = static_cast<uint16_t>(~__rte_raw_cksum_reduce(sum));
    return kPass;
}

// A flow's packet of direction hit.dir: translated as the flow says.
template <bool kV6>
DropReason translate(ct::ConnTable &ct, rte_mbuf *m, const ct::Hit &hit) {
    const ct::Flow &f = ct.flow(hit.flow);
    if (f.changes_for(hit.dir) == 0) {
        return kPass;
    }
    const PktMeta &md = meta(m);
    return rewrite<kV6>(m, md.l3_off, md.l4_off, md.l4_proto, ip_end<kV6>(m, md.l3_off),
                        f.translated(hit.dir))
               ? kPass
               : DropReason::kNatHeadersSplit;
}

uint32_t flow_mix(const FlowKey &k) {
    uint64_t w[5];
    std::memcpy(w, &k, sizeof(w));
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (uint64_t x : w) {
        h = (h ^ x) * 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    return static_cast<uint32_t>(h);
}

// A new natOutgoing flow: reply tuple to the node's address, the source
// port (echo: identifier) kept when free, else the range searched.
template <bool kV6>
DropReason snat_create(NatWorker &nw, const NatConfig &cfg, const NodeAddrs &node,
                       const ct::Packet &p, uint64_t now, ct::Hit &hit) {
    ct::ConnTable &ct = *nw.tables->ct;
    if (!(kV6 ? node.has_ip6 : node.has_ip4)) {
        return DropReason::kNatNoNodeAddr;
    }
    FlowKey reply = p.key.inverted();
    if constexpr (kV6) {
        std::memcpy(reply.dst.data(), node.ip6.data(), 16);
    } else {
        const uint32_t a = node.ip4.be().raw();
        std::memcpy(reply.dst.data(), &a, 4);
    }
    const ct::NatInfo info{.flags = kNatSnat};
    const uint8_t proto = p.key.proto;
    const bool icmp = is_icmp(proto);
    const bool ports =
        icmp || proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
    // The field the reply tuple keeps our port in: a reply's destination
    // port; an echo's identifier (sport of both tuples).
    net::Be16 &field = icmp ? reply.sport : reply.dport;
    const uint16_t orig = field.host();
    const PortRange range = port_range_for(cfg.ports, proto, orig);
    auto attempt = [&]() {
        Result r = ct.create(p, reply, now, info, hit, *nw.counters);
        if (r == Result::kExists) {
            // Another worker created it since our lookup: it is ours to use.
            r = ct.track(p, now, hit, *nw.counters);
            if (r == Result::kNew) {
                return DropReason::kCtBusy;
            }
        }
        return r == Result::kReplyExists ? DropReason::kNatPortsExhausted : drop_for(r);
    };
    if (!ports || (orig >= range.lo && orig <= range.hi)) {
        const DropReason r = attempt();
        if (r != DropReason::kNatPortsExhausted || !ports) {
            return r;
        }
    }
    const uint32_t h = flow_mix(p.key);
    for (uint32_t n = 0;; n++) {
        const int cand = port_candidate(range, h, n);
        if (cand < 0) {
            return DropReason::kNatPortsExhausted;
        }
        field = net::Be16::from_host(static_cast<uint16_t>(cand));
        const DropReason r = attempt();
        if (r != DropReason::kNatPortsExhausted) {
            return r;
        }
    }
}

template <bool kV6>
DropReason snat_one(Worker &w, NatWorker &nw, const NatConfig &cfg, rte_mbuf *m, uint64_t now) {
    const PktMeta &md = meta(m);
    ct::ConnTable &ct = *nw.tables->ct;
    if (md.flags & kMetaFragment) {
        return DropReason::kNatFragment;
    }
    ct::Packet p;
    Result r = ct::parse(m, md, kV6, p);
    ct::Hit hit;
    if (r == Result::kIcmpError) {
        r = ct.match_icmp_error(m, md, kV6, now, hit, *nw.counters);
        return r == Result::kOk ? error_translate<kV6>(m, ct.flow(hit.flow), hit.dir) : drop_for(r);
    }
    if (r != Result::kOk) {
        return drop_for(r);
    }
    r = ct.track(p, now, hit, *nw.counters);
    if (r == Result::kNew) {
        const DropReason d = snat_create<kV6>(nw, cfg, w.tables().node(), p, now, hit);
        if (d != kPass) {
            return d;
        }
    } else if (drop_for(r) != kPass) {
        return drop_for(r);
    }
    return translate<kV6>(ct, m, hit);
}

template <bool kV6>
void nat_input(Worker &w, Burst &b) {
    auto *nw = static_cast<NatWorker *>(w.slot(worker_slot()));
    if (nw == nullptr) {
        return;
    }
    const NatConfig *cfg = nw->tables->config();
    // Service DNAT adds its frontend check here: then this test is "no
    // natOutgoing pool and no service of the family".
    if (cfg == nullptr || !(kV6 ? cfg->pools.nat6() : cfg->pools.nat4())) {
        return;
    }
    const uint64_t now = rte_rdtsc();
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        const uint32_t l3 = meta(m).l3_off;
        bool snat;
        if constexpr (kV6) {
            const auto *ip = at<rte_ipv6_hdr>(m, l3);
            snat = cfg->pools.snat6(ip->src_addr, ip->dst_addr);
        } else {
            const auto *ip = at<rte_ipv4_hdr>(m, l3);
            snat = cfg->pools.snat4(ip->src_addr, ip->dst_addr);
        }
        const DropReason d = snat ? snat_one<kV6>(w, *nw, *cfg, m, now) : kPass;
        if (d == kPass) {
            b.pkts[k++] = m;
        } else {
            w.drop(m, d);
        }
    }
    b.n = k;
}

enum class Local : uint8_t { kKeep, kReroute, kDrop };

template <bool kV6>
Local local_one(ct::ConnTable &ct, NatWorker &nw, const NodeAddrs &node, rte_mbuf *m, uint64_t now,
                DropReason &why) {
    const PktMeta &md = meta(m);
    const uint32_t l3 = md.l3_off;
    if constexpr (kV6) {
        const auto *ip = at<rte_ipv6_hdr>(m, l3);
        if (!node.has_ip6 || !eq16(ip->dst_addr, node.ip6.data())) {
            return Local::kKeep;
        }
    } else {
        const auto *ip = at<rte_ipv4_hdr>(m, l3);
        if (!node.has_ip4 || ip->dst_addr != node.ip4.be().raw()) {
            return Local::kKeep;
        }
    }
    const uint8_t proto = md.l4_proto;
    if ((md.flags & kMetaLaterFragment) ||
        !(proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP ||
          proto == (kV6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP}))) {
        return Local::kKeep;
    }
    ct::Packet p;
    Result r = ct::parse(m, md, kV6, p);
    ct::Hit hit;
    if (r == Result::kIcmpError) {
        if (ct.match_icmp_error(m, md, kV6, now, hit, *nw.counters) != Result::kOk ||
            ct.flow(hit.flow).changes_for(hit.dir) == 0) {
            return Local::kKeep;  // about none of our flows: the node's own
        }
        why = error_translate<kV6>(m, ct.flow(hit.flow), hit.dir);
    } else {
        if (r != Result::kOk) {
            return Local::kKeep;
        }
        r = ct.track(p, now, hit, *nw.counters);
        if (r == Result::kNew || ct.flow(hit.flow).changes_for(hit.dir) == 0) {
            return Local::kKeep;
        }
        why = drop_for(r);
        if (why == kPass) {
            why = translate<kV6>(ct, m, hit);
        }
    }
    if (why != kPass) {
        return Local::kDrop;
    }
    // Forwarded from here: it must have a hop left (ip*_input checks only
    // packets it routes).
    if constexpr (kV6) {
        if (at<rte_ipv6_hdr>(m, l3)->hop_limits <= 1) {
            why = DropReason::kIp6HopLimitExceeded;
            return Local::kDrop;
        }
    } else {
        if (at<rte_ipv4_hdr>(m, l3)->time_to_live <= 1) {
            why = DropReason::kIp4TtlExceeded;
            return Local::kDrop;
        }
    }
    return Local::kReroute;
}

template <bool kV6>
void nat_local(Worker &w, Burst &b) {
    auto *nw = static_cast<NatWorker *>(w.slot(worker_slot()));
    if (nw == nullptr || nw->tables->ct == nullptr) {
        return;
    }
    ct::ConnTable &ct = *nw->tables->ct;
    const NodeAddrs &node = w.tables().node();
    const uint64_t now = rte_rdtsc();
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        DropReason why = kPass;
        switch (local_one<kV6>(ct, *nw, node, m, now, why)) {
            case Local::kKeep:
                b.pkts[k++] = m;
                break;
            case Local::kDrop:
                w.drop(m, why);
                break;
            case Local::kReroute:
                if constexpr (kV6) {
                    w.reroute6(m);
                } else {
                    w.reroute4(m);
                }
                break;
        }
    }
    b.n = k;
}

}  // namespace

FWD_ON_LOAD(auto &r = PipelineRegistry::global();
            r.add_stage({.name = "nat4", .hook = Hook::kIp4Input, .fn = &nat_input<false>});
            r.add_stage({.name = "nat6", .hook = Hook::kIp6Input, .fn = &nat_input<true>});
            r.add_stage({.name = "nat4_local", .hook = Hook::kIp4Local, .fn = &nat_local<false>});
            r.add_stage({.name = "nat6_local", .hook = Hook::kIp6Local, .fn = &nat_local<true>}));

}  // namespace fwd::dp::nat
