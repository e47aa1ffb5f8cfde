// nat4 / nat6 (Hook::kIp4Input / kIp6Input) and nat4_local / nat6_local
// (Hook::kIp4Local / kIp6Local): connection tracking, Kubernetes Service
// DNAT and natOutgoing (nat.hpp, service_table.hpp), one stage per family
// and place.
//
// One stage does both the tracking and the translation: today conntrack
// serves NAT only, and only flows that NAT translates are tracked, so the
// NAT decision comes first (cheap checks) and the lookup only for the
// packets it selects. When stateful policy comes, the lookup moves to a ct
// stage before it, handing the flow in the packet's metadata.
//
// A burst goes through the table in phases, so that the memory loads of all
// its packets are in flight together: (1) the NAT decision, parse() and
// prepare() (the key's hash; its index buckets start loading); (2) probe()
// (the flow entry starts loading; for a likely new natOutgoing flow, its
// reply tuple's buckets and the entry create() will take too); (3) packet
// by packet in order: track, create, translate. The results are those of
// one packet at a time: a packet whose key a create() of this burst may have
// inserted after its probe is looked up again.
//
// nat4 / nat6, packets to be routed:
// Reads: meta (l3_off, l4_off, l4_proto, flags); the worker's NatWorker
//        (slot "nat"), its published NatConfig and the published service
//        table (slot "services"), once per burst; the node addresses
//        (NodeAddrs); the IP addresses, L4 ports, TCP header.
// Skips: the whole burst when the family has no natOutgoing pool and no
//        service frontend.
// Looks up (conntrack) only a packet that is
//        - to a frontend (destination address, protocol, port: a ClusterIP,
//          externalIP or LoadBalancer address of the family),
//        - natOutgoing's (PoolTable::snat4 / snat6),
//        - inbound: natOutgoing's rule reversed (from outside every pool to
//          a natOutgoing pool: a NodePort another node forwards with its own
//          address, a client on a network that routes the pools); a new one
//          is tracked untranslated so that its replies are not taken for
//          new natOutgoing flows (Linux masquerades new connections only),
//        - from a backend address (ServiceTable::is_backend*: maybe a reply
//          of a DNAT flow), or
//        - an ICMP error while a service table is published (it may quote a
//          DNAT flow whatever its outer addresses are);
//        route-only traffic pays these checks (two table probes), no lookup.
// Takes: a packet of a known flow (the lookup comes first, whatever else
//        the packet is): tracked (TCP states and windows) and translated as
//        its flow says for its direction (a reply: the source becomes the
//        frontend's address and port). A new flow to a frontend: a backend
//        by choose_backend (the one place where it is chosen; session
//        affinity goes there), reply tuple backend -> client, plus SNAT to
//        the node's address where dnat_create says (hairpin; external
//        frontend, externalTrafficPolicy Cluster, remote backend;
//        natOutgoing toward the backend). Else a new natOutgoing flow: the
//        node's address as its source and a source port (echo identifier)
//        by create_nat: the original when the reply tuple is free, else the
//        next free one of the range. ICMP errors about a flow, either
//        direction, are translated with it (error_translate: outer
//        addresses the flow changes, the quoted header as its sender sent
//        it).
// Ends:  a DNAT flow whose backend the current table no longer lists for
//        its frontend (or whose frontend went), when its client sends
//        again: that packet is a new flow's and takes a new backend. What
//        the client sees: UDP / SCTP go on with the new backend; TCP: with
//        tcp_loose (the default) the segment is picked up towards the new
//        backend, which knows no such connection and answers with a RST
//        that reaches the client from the service address (connection
//        reset at once, as Cilium does); with tcp_loose off the segment is
//        dropped as ct_tcp_not_syn (the client's retransmissions time out).
//        A backend's packets of a flow whose backend went still pass until
//        the client's next packet or the flow's expiry. A frontend gone
//        whole: its packets are no longer looked up (unless natOutgoing's)
//        and go out untranslated; the flows expire.
// Sets:  meta.flow / flow_dir (a packet of a flow, or an ICMP error about
//        one: the policy stages read the flow's tuples);
//        addresses, ports / identifier, IPv4 header checksum, L4 checksum
//        (RFC 1624 incremental; IPv6 and ICMPv6 through the pseudo-header;
//        an IPv4 UDP checksum of 0 stays 0).
// Next:  the same burst (route4 / route6): a backend on another node is
//        routed as any packet (node routes, VXLAN).
// Drops: ct_* for each refusal of the tracker (truncated, not tracked, TCP
//        not SYN / bad flags / invalid / out of window / RST out of window,
//        echo reply with no request, table or index full, busy, ICMP error
//        truncated / bad quote / no flow: the last only for natOutgoing's
//        packets, other ICMP errors about no flow pass); nat_fragment (no
//        reassembly: a fragment of a new flow to translate, or the first
//        fragment of a flow's reply; later fragments of a reply pass
//        untranslated), nat_no_node_addr, nat_ports_exhausted,
//        nat_headers_split (headers beyond the first segment);
//        svc_no_endpoint (a new flow to a frontend with no ready endpoint,
//        kFeReject: ICMP port unreachable, type 3 code 3 / ICMPv6 type 1
//        code 4, queued by icmp4_error / icmp6_error, rate limited);
//        svc_no_local_endpoint (kFeDrop: the traffic policy allows no
//        endpoint here; dropped, as kube-proxy).
//
// nat4_local / nat6_local, packets to the node's address (the replies of
// source-NATed flows, NodePorts):
// Takes: a packet of a known flow (tracked, then translated: a reply goes
//        back to its client, a NodePort flow's packet to its backend), a
//        new flow to a NodePort frontend (the node's address, protocol,
//        nodePort: DNAT as above), and an ICMP error quoting a flow (outer
//        destination and quoted header translated, both checksums).
//        Anything else stays for icmp*_local (the node's own traffic).
// Next:  Worker::reroute4 / reroute6 (route, output hook, l2_rewrite: the
//        TTL / hop limit loses one, as through Linux's NAT).
// Drops: the tracker's refusals of a known flow's packet (ct_tcp_*), those
//        of a new NodePort flow (as nat4 / nat6, svc_* included),
//        nat_headers_split, nat_fragment (a fragment to a NodePort),
//        ip4_ttl_exceeded / ip6_hop_limit_exceeded (a packet that arrives
//        with nothing left to forward with).
#include <rte_cycles.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <algorithm>
#include <new>

#include "fwd/dp/nat.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/service_table.hpp"
#include "fwd/dp/stages.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::nat {

namespace {

using ct::Dir;
using ct::FlowKey;
using ct::Result;

constexpr DropReason kPass = DropReason::kCount;  // no drop: the packet goes on

DropReason drop_for(Result r) {
    return ct::drop_reason(r, kPass, DropReason::kNatFragment);
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

// CRC32c of len bytes at p (SSE4.2 through DPDK's per-width helpers; the
// loads through memcpy: an SCTP header is rarely 8-byte aligned, and
// rte_hash_crc() loads words through casts).
uint32_t crc32c(const uint8_t *p, uint32_t len, uint32_t crc) {
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        std::memcpy(&w, p, 8);
        crc = rte_hash_crc_8byte(w, crc);
    }
    if (len >= 4) {
        uint32_t w;
        std::memcpy(&w, p, 4);
        crc = rte_hash_crc_4byte(w, crc);
        p += 4;
        len -= 4;
    }
    for (; len > 0; p++, len--) {
        crc = rte_hash_crc_1byte(*p, crc);
    }
    return crc;
}

// SCTP's checksum (RFC 4960 appendix B, CRC32c over the SCTP packet with
// the field zero, stored as Linux's sctp_compute_cksum does) summed again
// after a port changed. The packet at l3 must be whole before end (an ICMP
// error's quote often is not: its checksum is left, no one checks it) and in
// the first segment (false otherwise).
template <bool kV6>
bool sctp_crc(rte_mbuf *m, uint32_t l3, uint32_t l4, uint32_t end) {
    uint32_t len;
    if constexpr (kV6) {
        len = rte_be_to_cpu_16(at<rte_ipv6_hdr>(m, l3)->payload_len) + 40u;
    } else {
        len = rte_be_to_cpu_16(at<rte_ipv4_hdr>(m, l3)->total_length);
    }
    const uint32_t pkt_end = l3 + len;
    if (pkt_end > end || pkt_end < l4 + 12) {
        return true;  // a cut quote
    }
    if (seg_avail(m, 0) < pkt_end) {
        return false;
    }
    uint8_t *crc = at<uint8_t>(m, l4 + 8);
    std::memset(crc, 0, 4);
    const uint32_t v = ~crc32c(at<uint8_t>(m, l4), pkt_end - l4, 0xffffffffu);
    std::memcpy(crc, &v, 4);  // little-endian on the wire, as Linux writes it
    return true;
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
    const bool sctp = proto == IPPROTO_SCTP;
    const uint32_t ck_off = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : 2;
    // SCTP's CRC32c covers no pseudo-header: summed again below when a port changed.
    uint16_t *ck = !sctp && l4 + ck_off + 2 <= end ? at<uint16_t>(m, l4 + ck_off) : nullptr;
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
    } else if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || sctp) {
        const uint16_t sp = out.sport.raw(), dp = out.dport.raw();
        const bool ports_change = std::memcmp(at<uint8_t>(m, l4), &sp, 2) != 0 ||
                                  std::memcmp(at<uint8_t>(m, l4 + 2), &dp, 2) != 0;
        change(at<uint8_t>(m, l4), &sp, 2, nullptr, true);
        change(at<uint8_t>(m, l4 + 2), &dp, 2, nullptr, true);
        if (sctp && ports_change && !sctp_crc<kV6>(m, l3, l4, end)) {
            return false;
        }
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

// translate() of what its fast path does not take (rewrite()).
template <bool kV6>
[[gnu::noinline]] DropReason translate_any(rte_mbuf *m, const ct::Flow &f, Dir d) {
    const PktMeta &md = meta(m);
    return rewrite<kV6>(m, md.l3_off, md.l4_off, md.l4_proto, ip_end<kV6>(m, md.l3_off),
                        f.translated(d))
               ? kPass
               : DropReason::kNatHeadersSplit;
}

// One's complement arithmetic on 32-bit words (RFC 1071: the sum of 16-bit
// words is the sum of 32-bit words folded, in either byte order as long as
// all are loaded alike): ~old + new summed over n bytes (n a multiple of 4),
// then a checksum moved by such a sum (RFC 1624 eqn. 3, all fields at once).
uint64_t csum_delta(const void *o, const void *n, uint32_t len) {
    uint64_t d = 0;
    for (uint32_t i = 0; i < len; i += 4) {
        uint32_t a, b;
        std::memcpy(&a, static_cast<const uint8_t *>(o) + i, 4);
        std::memcpy(&b, static_cast<const uint8_t *>(n) + i, 4);
        d += uint64_t{~a} + b;
    }
    return d;
}
uint16_t csum_apply(uint16_t ck, uint64_t d) {
    d += static_cast<uint16_t>(~ck);
    d = (d & 0xffffffffu) + (d >> 32);
    d = (d & 0xffff) + (d >> 16);
    d = (d & 0xffff) + (d >> 16);
    d = (d & 0xffff) + (d >> 16);
    return static_cast<uint16_t>(~d);
}

// A flow's packet of direction hit.dir: translated as the flow says. TCP, UDP
// and echo with their whole header in the first segment and in the packet
// (nearly all) are rewritten here: the new values are those of the flow's
// other tuple (out = tuple[other(d)].inverted(): source <- its destination,
// ports swapped, an echo's identifier its own), each checksum moved once for
// all the fields that change. Anything else goes through rewrite().
template <bool kV6>
[[gnu::always_inline]] inline DropReason translate(ct::ConnTable &ct, rte_mbuf *m,
                                                   const ct::Hit &hit) {
    const ct::Flow &f = ct.flow(hit.flow);
    const uint8_t ch = f.changes_for(hit.dir);
    if (ch == 0) {
        return kPass;
    }
    const PktMeta &md = meta(m);
    const uint32_t l3 = md.l3_off, l4 = md.l4_off, end = ip_end<kV6>(m, l3);
    const uint8_t proto = md.l4_proto;
    constexpr uint8_t kIcmp = kV6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP};
    const uint32_t hdr = proto == IPPROTO_TCP ? 20 : 8;
    if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != kIcmp) || l4 + hdr > end ||
        seg_avail(m, 0) < l4 + hdr) {
        return translate_any<kV6>(m, f, hit.dir);
    }
    const FlowKey &t = f.tuple[static_cast<size_t>(other(hit.dir))];
    constexpr uint32_t kAddr = kV6 ? 16 : 4, kSrc = kV6 ? 8 : 12, kDst = kSrc + kAddr;
    uint8_t *ip = at<uint8_t>(m, l3);
    uint8_t *l4h = at<uint8_t>(m, l4);
    uint64_t d3 = 0;  // the addresses: IPv4 header, pseudo-header
    if (ch & ct::kChangeSrcAddr) {
        d3 += csum_delta(ip + kSrc, t.dst.data(), kAddr);
        std::memcpy(ip + kSrc, t.dst.data(), kAddr);
    }
    if (ch & ct::kChangeDstAddr) {
        d3 += csum_delta(ip + kDst, t.src.data(), kAddr);
        std::memcpy(ip + kDst, t.src.data(), kAddr);
    }
    if constexpr (!kV6) {
        if (d3 != 0) {
            auto *h = reinterpret_cast<rte_ipv4_hdr *>(ip);
            h->hdr_checksum = csum_apply(h->hdr_checksum, d3);
        }
    }
    // ICMP (v4) has no pseudo-header; ICMPv6, TCP and UDP do.
    uint64_t d4 = kV6 || proto != IPPROTO_ICMP ? d3 : 0;
    uint32_t ck_off = 2;
    if (proto == kIcmp) {
        if (ch & ct::kChangeSrcPort) {  // the identifier, at 4 (with the sequence number)
            uint8_t idseq[4];
            const uint16_t id = t.sport.raw();
            std::memcpy(idseq, &id, 2);
            std::memcpy(idseq + 2, l4h + 6, 2);
            d4 += csum_delta(l4h + 4, idseq, 4);
            std::memcpy(l4h + 4, idseq, 2);
        }
    } else {
        ck_off = proto == IPPROTO_TCP ? 16 : 6;
        if (ch & (ct::kChangeSrcPort | ct::kChangeDstPort)) {
            const uint32_t ports = t.dport.raw() | uint32_t{t.sport.raw()} << 16;
            d4 += csum_delta(l4h, &ports, 4);
            std::memcpy(l4h, &ports, 4);
        }
    }
    uint16_t ck;
    std::memcpy(&ck, l4h + ck_off, 2);
    if (!kV6 && proto == IPPROTO_UDP && ck == 0) {
        return kPass;  // IPv4 UDP without a checksum stays without
    }
    ck = csum_apply(ck, d4);
    if (proto == IPPROTO_UDP && ck == 0) {
        ck = 0xffff;  // RFC 768: a computed 0 goes out as all ones
    }
    std::memcpy(l4h + ck_off, &ck, 2);
    return kPass;
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

using ct::Made;

// A new natOutgoing flow: reply tuple to the node's address, the source
// port (echo: identifier) kept when free, else the range searched.
// What a stage reads once per burst.
struct Ctx {
    Worker &w;
    NatWorker &nw;
    ct::ConnTable &ct;
    const NatConfig *cfg;          // nullptr until the pools are published
    bool snat_on;                  // some pool of the family has natOutgoing
    const svc::ServiceTable *svc;  // nullptr: no frontend of the family
    const NodeAddrs &node;
    uint64_t now;
    Made &made;  // the burst's
};

template <bool kV6>
const svc::ServiceTable *services_of(Worker &w) {
    const auto *st = static_cast<const svc::ServiceTables *>(w.slot(svc::worker_slot()));
    const svc::ServiceTable *t = st != nullptr ? st->get() : nullptr;
    return t != nullptr && t->has_family(kV6) ? t : nullptr;
}

bool has_ports(uint8_t proto) {
    return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

// The frontend a packet is addressed to (destination, protocol, port), or
// svc::kNoFrontend.
template <bool kV6>
uint32_t frontend_of(const svc::ServiceTable &t, rte_mbuf *m) {
    const PktMeta &md = meta(m);
    if (!has_ports(md.l4_proto) || (md.flags & kMetaLaterFragment) ||
        seg_avail(m, 0) < md.l4_off + 4u) {
        return svc::kNoFrontend;
    }
    const uint16_t dport = *at<uint16_t>(m, md.l4_off + 2);
    if constexpr (kV6) {
        return t.find6(at<rte_ipv6_hdr>(m, md.l3_off)->dst_addr, md.l4_proto, dport);
    } else {
        return t.find4(at<rte_ipv4_hdr>(m, md.l3_off)->dst_addr, md.l4_proto, dport);
    }
}

// An ICMP / ICMPv6 error (which may quote a DNAT flow whatever its outer
// addresses are: a router's frag-needed to the client, a client's port
// unreachable to the frontend). Rare packets: looked up whenever a service
// table is published.
template <bool kV6>
bool is_icmp_error(rte_mbuf *m) {
    const PktMeta &md = meta(m);
    if (md.l4_proto != (kV6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP}) ||
        (md.flags & kMetaLaterFragment) || seg_avail(m, 0) < md.l4_off + 1u) {
        return false;
    }
    const uint8_t type = *at<uint8_t>(m, md.l4_off);
    return kV6 ? type < 128 : (type == 3 || type == 4 || type == 5 || type == 11 || type == 12);
}

// Sets k.dst to the node's address of the family; false without one. IPv4:
// the whole 8-byte word the address starts (the rest is zero in an IPv4
// key), as the table hashes keys word by word.
template <bool kV6>
bool to_node(const NodeAddrs &node, FlowKey &k) {
    if constexpr (kV6) {
        if (!node.has_ip6) {
            return false;
        }
        std::memcpy(k.dst.data(), node.ip6.data(), 16);
    } else {
        if (!node.has_ip4) {
            return false;
        }
        const uint64_t a = node.ip4.be().raw();
        std::memcpy(k.dst.data(), &a, 8);
    }
    return true;
}

// A new flow with the reply tuple `reply`. The port the reply comes back to
// (reply.dport; echo: the identifier) is kept when the tuple is free, else
// searched as Linux does: natOutgoing within the range (natPortRange or
// masquerade's by the original port); a DNAT-only flow keeps the client's
// port unless two flows would share one reply tuple (a client reaching two
// services with one backend from one port: the second gets another port, as
// Linux's nf_nat_used_tuple). lo: p.key's lookup; rl: reply's, when the
// burst prepared it (nullptr: prepared here).
template <bool kV6>
DropReason create_nat(const Ctx &c, const ct::Packet &p, const ct::Lookup &lo, FlowKey reply,
                      const ct::Lookup *rl, const ct::NatInfo &info, ct::Hit &hit) {
    const uint8_t proto = p.key.proto;
    const bool icmp = is_icmp(proto);
    const bool ports = icmp || has_ports(proto);
    // The field the reply tuple keeps our port in: a reply's destination
    // port; an echo's identifier (sport of both tuples).
    net::Be16 &field = icmp ? reply.sport : reply.dport;
    const uint16_t orig = field.host();
    const PortRange range =
        port_range_for(c.cfg != nullptr ? c.cfg->ports : PortRange{}, proto, orig);
    ct::Lookup lr;
    auto attempt = [&](const ct::Lookup *prepared) {
        if (prepared == nullptr) {
            c.ct.prepare(reply, lr);
            prepared = &lr;
        }
        Result r = c.ct.create(p, lo, reply, *prepared, c.now, info, hit, *c.nw.counters);
        if (r == Result::kCreated) {
            c.made.add(lo.sig);
            c.made.add(prepared->sig);
        } else if (r == Result::kExists) {
            // Another worker created it since our lookup: it is ours to use.
            ct::Lookup l = lo;
            c.ct.probe(l);
            r = c.ct.track(p, l, c.now, hit, *c.nw.counters);
            if (r == Result::kNew) {
                return DropReason::kCtBusy;
            }
        }
        return r == Result::kReplyExists ? DropReason::kNatPortsExhausted : drop_for(r);
    };
    if (!ports || !(info.flags & kNatSnat) || (orig >= range.lo && orig <= range.hi)) {
        const DropReason r = attempt(rl);
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
        const DropReason r = attempt(nullptr);
        if (r != DropReason::kNatPortsExhausted) {
            return r;
        }
    }
}

// A new natOutgoing flow: reply tuple to the node's address (rl: its lookup
// when the burst prepared it, see snat_reply).
template <bool kV6>
DropReason snat_create(const Ctx &c, const ct::Packet &p, const ct::Lookup &lo,
                       const ct::Lookup *rl, ct::Hit &hit) {
    FlowKey reply = p.key.inverted();
    if (!to_node<kV6>(c.node, reply)) {
        return DropReason::kNatNoNodeAddr;
    }
    return create_nat<kV6>(c, p, lo, reply, rl, ct::NatInfo{.flags = kNatSnat}, hit);
}

// ---------------------------------------------------------------------------
// THE place where a new service flow's backend is chosen (issue 15).
// Today: a hash of the client's whole tuple (addresses, ports, protocol) over
// the backends a new flow may take (ServiceTable::pick), so the connections
// of one client spread over them.
// Session affinity (sessionAffinity ClientIP: Frontend::flags & kFeAffinity,
// Frontend::affinity_timeout_s) wires in here and nowhere else: when the
// frontend has kFeAffinity, look up (frontend address, protocol, port,
// client address) in the affinity table (fwd/dp/affinity.hpp); a live entry
// whose backend the frontend still lists for new flows wins; otherwise
// pick() and record the choice with the frontend's timeout. c.now is the
// TSC for the timeout; c.w the worker (its slot for the affinity table).
// Returns a backend index of t, or UINT32_MAX when the frontend has none
// for new flows (its kFeReject / kFeDrop then says what the flow gets).
// ---------------------------------------------------------------------------
uint32_t choose_backend(const Ctx &c, const svc::ServiceTable &t, const svc::Frontend &fe,
                        const FlowKey &client) noexcept {
    svc::AffinityTable *aff = c.nw.tables->affinity;
    if (!(fe.flags & svc::kFeAffinity) || aff == nullptr) {
        return t.pick(fe, flow_mix(client));
    }
    // sessionAffinity ClientIP: the client's backend while it may take new
    // flows and the client was seen within the timeout; else a pick, then
    // remembered (a full table: this flow goes without, counted).
    const svc::AffinityKey key = svc::AffinityKey::of(fe, client.src.data());
    svc::AffinityTarget to;
    if (aff->lookup(key, c.now, fe.affinity_timeout_s, to, c.nw.affinity)) {
        const uint32_t kept = t.new_flow_backend(fe, to.addr.data(), to.port.raw());
        if (kept != UINT32_MAX) {
            return kept;
        }
    }
    const uint32_t bi = t.pick(fe, flow_mix(client));
    if (bi != UINT32_MAX) {
        aff->remember(key, svc::AffinityTarget::of(t.backend(bi), fe.v6), c.now,
                      fe.affinity_timeout_s, c.nw.affinity);
    }
    return bi;
}

// A new flow to frontend fe: DNAT to a backend (reply tuple: backend ->
// client), and SNAT to the node's address too where kube-proxy does it:
//   hairpin: the backend is the client itself (a pod would drop a packet
//     from its own address as martian), whatever the traffic policy;
//   an external frontend (NodePort, externalIP, LoadBalancer) with
//     externalTrafficPolicy Cluster and a backend on another node (so the
//     reply returns through this node); never with Local (kFeKeepSource),
//     and not for a local backend (it replies through us anyway, and sees
//     the client's address);
//   natOutgoing toward the backend (pools: the client in a natOutgoing pool,
//     the backend in none: a host-network endpoint outside the pools), as
//     Calico's masquerade sees the destination after kube-proxy's DNAT.
template <bool kV6>
DropReason dnat_create(const Ctx &c, uint32_t fe_idx, const ct::Packet &p, const ct::Lookup &lo,
                       ct::Hit &hit) {
    const svc::ServiceTable &t = *c.svc;
    const svc::Frontend &fe = t.frontend(fe_idx);
    const uint32_t bi = choose_backend(c, t, fe, p.key);
    if (bi == UINT32_MAX) {
        return (fe.flags & svc::kFeReject) ? DropReason::kSvcNoEndpoint
                                           : DropReason::kSvcNoLocalEndpoint;
    }
    const svc::Backend &b = t.backend(bi);
    constexpr size_t kLen = kV6 ? 16 : 4;
    FlowKey reply = p.key.inverted();
    std::memcpy(reply.src.data(), b.addr.data(), kLen);
    reply.sport = net::Be16::from_raw(b.port_be);
    const bool hairpin = std::memcmp(b.addr.data(), p.key.src.data(), kLen) == 0;
    bool snat = hairpin;
    if (!snat && !(fe.flags & svc::kFeKeepSource)) {
        snat = ((fe.flags & svc::kFeExternal) && !(b.flags & svc::kBeLocal));
        if (!snat && c.snat_on) {
            if constexpr (kV6) {
                snat = c.cfg->pools.snat6(p.key.src.data(), b.addr.data());
            } else {
                uint32_t s, d;
                std::memcpy(&s, p.key.src.data(), 4);
                std::memcpy(&d, b.addr.data(), 4);
                snat = c.cfg->pools.snat4(s, d);
            }
        }
    }
    if (snat && !to_node<kV6>(c.node, reply)) {
        return DropReason::kNatNoNodeAddr;
    }
    const ct::NatInfo info{.service = fe_idx,
                           .backend = bi,
                           .flags = static_cast<uint8_t>(kNatDnat | (snat ? kNatSnat : 0))};
    return create_nat<kV6>(c, p, lo, reply, nullptr, info, hit);
}

// backend_gone() of a DNAT flow's packet from its client.
[[gnu::noinline]] bool dnat_backend_gone(const Ctx &c, const ct::Flow &f, uint32_t fe) {
    if (c.svc == nullptr || fe == svc::kNoFrontend) {
        return true;
    }
    const FlowKey &back = f.tuple[static_cast<size_t>(Dir::kReply)];
    return !c.svc->has_backend(c.svc->frontend(fe), back.src.data(), back.sport.raw());
}

// Whether hit is a DNAT flow's packet from its client (fe: the frontend the
// packet is addressed to, found in the current table) whose backend the
// table no longer lists for that frontend (or the frontend went).
[[gnu::always_inline]] inline bool backend_gone(const Ctx &c, const ct::Hit &hit, uint32_t fe) {
    const ct::Flow &f = c.ct.flow(hit.flow);
    if (!(f.nat_flags & kNatDnat) || hit.dir != Dir::kOrig) {
        return false;
    }
    return dnat_backend_gone(c, f, fe);
}

enum class Step : uint8_t { kTranslated, kUntouched, kDrop };

// The packet's flow for the stages after NAT (PktMeta::flow): the policy
// stages check the flow's tuples, not the translated packet's.
void note_flow(rte_mbuf *m, const ct::Hit &hit) {
    PktMeta &md = meta(m);
    md.flow = hit.flow + 1;
    md.flow_dir = static_cast<uint8_t>(hit.dir);
}

// What nat4 / nat6 do with a packet, decided in the burst's first phase.
enum class Way : uint8_t {
    kPass,  // not NAT's (route-only traffic): its Pending is not even begun
    kDone,  // nothing more: why says
    kSlow,  // a fragment or an ICMP error: input_slow
    kFlow,  // parsed, its key prepared: flow_step
};

// A packet between the phases of a burst. Nothing of it is initialised
// until the packet turns out to be NAT's: begin() sets the decision's part,
// start_flow() the flow part (p, l, rl) for the packets that are parsed.
// Route-only traffic, most of every burst on a node with natOutgoing pools,
// pays for neither (the flow part's default initialisation alone was about
// 25 instructions a packet under callgrind).
struct Pending {
    Pending() {}  // NOLINT: uninitialised on purpose, see begin()
    union {
        ct::Packet p;
    };
    union {
        ct::Lookup l;  // p.key's
    };
    union {
        ct::Lookup rl;  // a new natOutgoing flow's reply tuple's (snat_reply), when has_rl
    };
    void start_flow() {
        new (&p) ct::Packet();
        new (&l) ct::Lookup();
        new (&rl) ct::Lookup();
    }
    void begin() {
        fe = svc::kNoFrontend;
        snat = inbound = has_rl = false;
        way = Way::kDone;
        why = kPass;
    }
    uint32_t fe;
    bool snat;
    bool inbound;  // input_classify's
    bool has_rl;
    Way way;  // nat_local's (nat_input keeps its own array)
    DropReason why;
};

// The packet q.p of m after parse(), its key probe()'d: a known flow's packet
// is tracked and translated; a DNAT flow's packet from the client whose
// backend is gone ends that flow and is a new flow's; a new flow is made to
// frontend fe when there is one (DNAT), else by natOutgoing when snat, else
// the packet is not ours (kUntouched). local: the local hook, where a flow
// whose direction changes nothing is the node's own traffic (kUntouched).
// c.made: the keys this burst created since the probe.
template <bool kV6>
Step flow_step(const Ctx &c, rte_mbuf *m, const Pending &q, uint32_t fe, bool snat, bool local,
               DropReason &why) {
    ct::Hit hit;
    const Result r = c.ct.track(q.p, q.l, c.now, hit, *c.nw.counters, c.made.maybe(q.l.sig));
    if (r != Result::kNew) {
        if (local && c.ct.flow(hit.flow).changes_for(hit.dir) == 0) {
            return Step::kUntouched;
        }
        why = drop_for(r);
        if (why != kPass) {
            return Step::kDrop;
        }
        if (!backend_gone(c, hit, fe)) {
            note_flow(m, hit);
            why = translate<kV6>(c.ct, m, hit);
            return why == kPass ? Step::kTranslated : Step::kDrop;
        }
        c.ct.end(hit.flow);
    }
    if (fe != svc::kNoFrontend) {
        why = dnat_create<kV6>(c, fe, q.p, q.l, hit);
    } else if (snat) {
        why = snat_create<kV6>(c, q.p, q.l, q.has_rl ? &q.rl : nullptr, hit);
    } else if (q.inbound) {
        // Tracked untranslated, so that its replies are known as replies
        // (not new flows natOutgoing would translate).
        const Result cr = c.ct.create(q.p, c.now, hit, *c.nw.counters);
        if (cr == Result::kCreated) {
            note_flow(m, hit);
        }
        why = cr == Result::kExists || cr == Result::kReplyExists ? kPass : drop_for(cr);
        return why == kPass ? Step::kUntouched : Step::kDrop;
    } else {
        return Step::kUntouched;
    }
    if (why == kPass) {
        note_flow(m, hit);
        why = translate<kV6>(c.ct, m, hit);
    }
    return why == kPass ? Step::kTranslated : Step::kDrop;
}

// A packet whose key the probe found nowhere and that natOutgoing would make
// a flow of (no frontend: a DNAT's reply tuple needs the backend's choice):
// its reply tuple (snat_create's) is prepared now, so its buckets load with
// the burst's and create() finds them there.
template <bool kV6>
void snat_reply(const Ctx &c, Pending &q) {
    if (q.fe != svc::kNoFrontend || !q.snat) {
        return;
    }
    FlowKey reply = q.p.key.inverted();
    if (to_node<kV6>(c.node, reply)) {
        c.ct.prepare(reply, q.rl);
        q.has_rl = true;
    }
}

// A first fragment that belongs to a flow (later ones carry no ports: they
// pass untranslated, there is no reassembly).
template <bool kV6>
bool fragment_of_flow(const Ctx &c, rte_mbuf *m) {
    const PktMeta &md = meta(m);
    ct::Packet p;
    ct::Hit hit;
    return !(md.flags & kMetaLaterFragment) && ct::parse(m, md, kV6, p) == Result::kOk &&
           c.ct.lookup(p.key, c.now, hit);
}

// nat4 / nat6, first phase: the NAT decision (cheap checks; kPass, q left
// as it was, for a packet that is not NAT's), then for a packet to look up,
// parse() and prepare() (its buckets start loading).
template <bool kV6>
Way input_classify(const Ctx &c, rte_mbuf *m, Pending &q) {
    const PktMeta &md = meta(m);
    const uint32_t l3 = md.l3_off;
    // inbound: the reverse of natOutgoing's rule (from outside every pool to
    // a natOutgoing pool): a connection opened from outside, such as a
    // NodePort another node forwards with its own address as the source, or
    // a client on a network that routes the pools. Tracked, so its replies
    // leave untranslated, as Linux's masquerade (which NATs new connections
    // only) leaves them.
    nat::PoolTable::Ways ways;
    bool back = false, icmp_err = false;
    if constexpr (kV6) {
        const auto *ip = at<rte_ipv6_hdr>(m, l3);
        if (c.snat_on) {
            ways = c.cfg->pools.ways6(ip->src_addr, ip->dst_addr);
        }
        back = c.svc != nullptr && c.svc->is_backend6(ip->src_addr);
    } else {
        const auto *ip = at<rte_ipv4_hdr>(m, l3);
        if (c.snat_on) {
            ways = c.cfg->pools.ways4(ip->src_addr, ip->dst_addr);
        }
        back = c.svc != nullptr && c.svc->is_backend4(ip->src_addr);
    }
    uint32_t fe = svc::kNoFrontend;
    if (c.svc != nullptr) {
        fe = frontend_of<kV6>(*c.svc, m);
        icmp_err = is_icmp_error<kV6>(m);
    }
    const bool creates = ways.snat || ways.inbound || fe != svc::kNoFrontend;
    if (!creates && !back && !icmp_err) {
        return Way::kPass;  // route-only traffic: not looked up
    }
    q.begin();
    q.snat = ways.snat;
    q.inbound = ways.inbound;
    q.fe = fe;
    if (md.flags & kMetaFragment) {
        return Way::kSlow;
    }
    q.start_flow();
    const Result r = ct::parse(m, md, kV6, q.p);
    if (r == Result::kIcmpError) {
        return Way::kSlow;
    }
    if (r != Result::kOk) {
        q.why = creates ? drop_for(r) : kPass;
        return Way::kDone;
    }
    c.ct.prepare(q.p.key, q.l);
    return Way::kFlow;
}

// nat4 / nat6: a fragment or an ICMP error (input_classify's kSlow).
template <bool kV6>
DropReason input_slow(const Ctx &c, rte_mbuf *m, const Pending &q) {
    const PktMeta &md = meta(m);
    if (md.flags & kMetaFragment) {
        const bool creates = q.snat || q.inbound || q.fe != svc::kNoFrontend;
        return creates || fragment_of_flow<kV6>(c, m) ? DropReason::kNatFragment : kPass;
    }
    ct::Hit hit;
    const Result r = c.ct.match_icmp_error(m, md, kV6, c.now, hit, *c.nw.counters);
    if (r == Result::kOk) {
        note_flow(m, hit);
        return error_translate<kV6>(m, c.ct.flow(hit.flow), hit.dir);
    }
    return q.snat ? drop_for(r) : kPass;  // about no flow: not ours unless natOutgoing's
}

// Drops m with why; a new flow to a service with no endpoint gets an ICMP /
// ICMPv6 port unreachable quoting it (kube-proxy's REJECT).
template <bool kV6>
void drop_or_reject(Worker &w, rte_mbuf *m, DropReason why) {
    if (why != DropReason::kSvcNoEndpoint) {
        w.drop(m, why);
    } else if constexpr (kV6) {
        icmp6_error(w, m, 1, 4, 0, why);
    } else {
        icmp4_error(w, m, 3, 3, 0, why);
    }
}

// The burst in three phases, so that each phase's loads (index buckets,
// then flow entries) are in flight for every packet before the next phase
// needs them: decide, parse and prepare; probe (and prepare a new
// natOutgoing flow's reply tuple); then, packet by packet in order, track,
// create and translate.
template <bool kV6>
void nat_input(Worker &w, Burst &b) {
    auto *nw = static_cast<NatWorker *>(w.slot(worker_slot()));
    if (nw == nullptr || nw->tables->ct == nullptr) {
        return;
    }
    const NatConfig *cfg = nw->tables->config();
    const bool snat_on = cfg != nullptr && (kV6 ? cfg->pools.nat6() : cfg->pools.nat4());
    const svc::ServiceTable *st = services_of<kV6>(w);
    // Nothing to do: no natOutgoing pool and no service of the family.
    if (!snat_on && st == nullptr) {
        return;
    }
    Made made;
    const Ctx c{w, *nw, *nw->tables->ct, cfg, snat_on, st, w.tables().node(), rte_rdtsc(), made};
    Pending q[kBurst];
    Way way[kBurst];
    uint32_t ours = 0;  // packets that are NAT's
    for (uint16_t i = 0; i < b.n; i++) {
        way[i] = input_classify<kV6>(c, b.pkts[i], q[i]);
        ours += way[i] != Way::kPass;
    }
    if (ours == 0) {
        return;  // a burst of route-only traffic: nothing more to do
    }
    // The index: each key's first bucket, then the second of those not
    // found there (ConnTable::probe_first), so both rounds of loads overlap.
    uint8_t second[kBurst];
    uint32_t n2 = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        if (way[i] == Way::kFlow && !c.ct.probe_first(q[i].l)) {
            second[n2++] = static_cast<uint8_t>(i);
        }
    }
    uint32_t news = 0;  // packets that will likely create a flow
    for (uint32_t j = 0; j < n2; j++) {
        Pending &p = q[second[j]];
        c.ct.probe_second(p.l);
        if (p.l.slot == 0 && (p.snat || p.fe != svc::kNoFrontend)) {
            snat_reply<kV6>(c, p);
            c.ct.prefetch_new(news++);
        }
    }
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        DropReason d = kPass;
        if (way[i] == Way::kDone) {
            d = q[i].why;
        } else if (way[i] == Way::kSlow) {
            d = input_slow<kV6>(c, m, q[i]);
        } else if (way[i] == Way::kFlow) {
            flow_step<kV6>(c, m, q[i], q[i].fe, q[i].snat, false, d);
        }
        if (d == kPass) {
            b.pkts[k++] = m;
        } else {
            drop_or_reject<kV6>(w, m, d);
        }
    }
    b.n = k;
}

enum class Local : uint8_t { kKeep, kReroute, kDrop };

// nat4_local / nat6_local, first phase: a packet to the node's address that
// may be a flow's (ports, ICMP) is parsed and prepared (kFlow), an ICMP error
// is left for the last phase (kSlow); anything else stays for icmp*_local
// (kDone with kPass), but a fragment to a NodePort (kDone, nat_fragment).
template <bool kV6>
Way local_classify(const Ctx &c, rte_mbuf *m, Pending &q) {
    q.begin();
    const PktMeta &md = meta(m);
    const uint32_t l3 = md.l3_off;
    if constexpr (kV6) {
        const auto *ip = at<rte_ipv6_hdr>(m, l3);
        if (!c.node.has_ip6 || !eq16(ip->dst_addr, c.node.ip6.data())) {
            return Way::kDone;
        }
    } else {
        const auto *ip = at<rte_ipv4_hdr>(m, l3);
        if (!c.node.has_ip4 || ip->dst_addr != c.node.ip4.be().raw()) {
            return Way::kDone;
        }
    }
    const uint8_t proto = md.l4_proto;
    if ((md.flags & kMetaLaterFragment) ||
        !(has_ports(proto) || proto == (kV6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP}))) {
        return Way::kDone;
    }
    q.start_flow();
    const Result r = ct::parse(m, md, kV6, q.p);
    if (r == Result::kIcmpError) {
        return Way::kSlow;
    }
    if (r != Result::kOk) {
        return Way::kDone;
    }
    // A NodePort: a frontend at the node's own address.
    q.fe = c.svc != nullptr ? frontend_of<kV6>(*c.svc, m) : svc::kNoFrontend;
    if (q.fe != svc::kNoFrontend && (md.flags & kMetaFragment)) {
        q.why = DropReason::kNatFragment;
        return Way::kDone;
    }
    c.ct.prepare(q.p.key, q.l);
    return Way::kFlow;
}

// nat4_local / nat6_local, last phase: a flow's packet tracked and translated
// (or a new NodePort flow made), an ICMP error about a flow translated with
// it; then what becomes of the packet.
template <bool kV6>
Local local_finish(const Ctx &c, rte_mbuf *m, const Pending &q, DropReason &why) {
    why = q.why;
    if (q.way == Way::kDone) {
        return why == kPass ? Local::kKeep : Local::kDrop;
    }
    const PktMeta &md = meta(m);
    if (q.way == Way::kSlow) {
        ct::Hit hit;
        if (c.ct.match_icmp_error(m, md, kV6, c.now, hit, *c.nw.counters) != Result::kOk ||
            c.ct.flow(hit.flow).changes_for(hit.dir) == 0) {
            return Local::kKeep;  // about none of our flows: the node's own
        }
        note_flow(m, hit);
        why = error_translate<kV6>(m, c.ct.flow(hit.flow), hit.dir);
    } else if (flow_step<kV6>(c, m, q, q.fe, false, true, why) == Step::kUntouched) {
        return Local::kKeep;
    }
    if (why != kPass) {
        return Local::kDrop;
    }
    // Forwarded from here: it must have a hop left (ip*_input checks only
    // packets it routes).
    if constexpr (kV6) {
        if (at<rte_ipv6_hdr>(m, md.l3_off)->hop_limits <= 1) {
            why = DropReason::kIp6HopLimitExceeded;
            return Local::kDrop;
        }
    } else {
        if (at<rte_ipv4_hdr>(m, md.l3_off)->time_to_live <= 1) {
            why = DropReason::kIp4TtlExceeded;
            return Local::kDrop;
        }
    }
    return Local::kReroute;
}

// In phases as nat_input.
template <bool kV6>
void nat_local(Worker &w, Burst &b) {
    auto *nw = static_cast<NatWorker *>(w.slot(worker_slot()));
    if (nw == nullptr || nw->tables->ct == nullptr) {
        return;
    }
    const NatConfig *cfg = nw->tables->config();
    const bool snat_on = cfg != nullptr && (kV6 ? cfg->pools.nat6() : cfg->pools.nat4());
    Made made;
    const Ctx c{
        w,           *nw, *nw->tables->ct, cfg, snat_on, services_of<kV6>(w), w.tables().node(),
        rte_rdtsc(), made};
    Pending q[kBurst];
    for (uint16_t i = 0; i < b.n; i++) {
        q[i].way = local_classify<kV6>(c, b.pkts[i], q[i]);
    }
    for (uint16_t i = 0; i < b.n; i++) {
        if (q[i].way == Way::kFlow) {
            c.ct.probe(q[i].l);
        }
    }
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        DropReason why = kPass;
        switch (local_finish<kV6>(c, m, q[i], why)) {
            case Local::kKeep:
                b.pkts[k++] = m;
                break;
            case Local::kDrop:
                drop_or_reject<kV6>(w, m, why);
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
