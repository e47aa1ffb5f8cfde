// fast_input: eth_input, ip4_input and ip6_input fused into one pass, the
// worker's first stage while its fast path is on (Worker::set_fast_path).
// Reads: the Ethernet and IP headers, PortState of the RX port (our MAC),
//        node addresses.
// The common packet, checked inline and sorted straight to its family's
// forward or local burst: unicast to the port's MAC, untagged, in the first
// segment;
// IPv4 with no options, a right header checksum, no fragment, a length the
//   frame holds, a source and destination ip4_input accepts; to the node's
//   or the gateway's address: local; else, with TTL > 1: forward;
// IPv6 with TCP, UDP or ICMPv6 right after the fixed header (no extension
//   header), a payload length the frame holds, addresses neither multicast
//   nor in ::/64; to the node's address: local; else, with neither address
//   link-local, not to the gateway, hop limit > 1: forward.
// Sets:  for those, what eth_input and ip4_input / ip6_input set
//        (meta.in_port, l3_off 14, l4_off, l4_proto, flags 0; padding trimmed).
// Every other packet goes through eth_input_one and ip4_input_one /
// ip6_input_one, the stages' own per-packet code, in burst order: drops,
// their reasons, ICMP errors and metadata are the stages'. The fused test
// only picks which packets may skip that code, never decides anything the
// stages would decide otherwise (test_fast_path.cpp runs random mixes both
// ways and compares).
// Next:  arp -> arp_input; ip4 / ip6 fwd -> the input hook, route; local ->
//        the local hook (VXLAN decapsulation, NAT replies), icmp*_local.
// Prefetch: each packet's data and metadata kAhead packets in advance (a
// NIC's DMA leaves them out of the cache; the mbuf header RX just wrote is
// in it).
#include <rte_prefetch.h>

#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr uint16_t kAhead = 4;
constexpr uint32_t kEthLen = RTE_ETHER_HDR_LEN;
constexpr uint16_t kTypeIp4 = RTE_BE16(RTE_ETHER_TYPE_IPV4);
constexpr uint16_t kTypeIp6 = RTE_BE16(RTE_ETHER_TYPE_IPV6);

inline void prefetch(rte_mbuf *m) {
    rte_prefetch0(rte_pktmbuf_mtod(m, void *));
    rte_prefetch0(rte_mbuf_to_priv(m));
}

// The metadata eth_input and ip*_input leave on a packet they pass on.
inline void set_meta(rte_mbuf *m, uint16_t l4_off, uint8_t l4_proto) {
    PktMeta &md = meta(m);
    md = PktMeta{};
    md.in_port = m->port;
    md.l3_off = kEthLen;
    md.l4_off = l4_off;
    md.l4_proto = l4_proto;
}

// What the fused test found: the stages' code must decide (kSlow), or
// ip*_input would pass the packet on unchanged but for trimming.
enum class Fast : uint8_t { kSlow, kFwd, kLocal };

// ip4_input's decision for the plain packet. Nothing is written for kSlow.
inline Fast fast4(rte_mbuf *m, const uint8_t *p, uint32_t node4) {
    const auto *ip = reinterpret_cast<const rte_ipv4_hdr *>(p + kEthLen);
    if (ip->version_ihl != 0x45) {
        return Fast::kSlow;
    }
    const uint32_t avail = m->pkt_len - kEthLen;
    const uint32_t tlen = rte_be_to_cpu_16(ip->total_length);
    const uint32_t src = rte_be_to_cpu_32(ip->src_addr);
    const uint32_t dst = rte_be_to_cpu_32(ip->dst_addr);
    const uint8_t stop = src >> 24, dtop = dst >> 24;
    // ip4_input's tests, each passing: length, source (not 127/8, not 224
    // and up), destination (1..223, not 127/8), no fragment.
    if (tlen < sizeof(rte_ipv4_hdr) || tlen > avail || stop == 127 || stop >= 224 ||
        static_cast<uint8_t>(dtop - 1) >= 223 || dtop == 127 ||
        (ip->fragment_offset & RTE_BE16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))) {
        return Fast::kSlow;
    }
    // ip4_input answers to our addresses whatever the TTL.
    const bool local = dst == kGateway4 || dst == node4;
    if ((!local && ip->time_to_live <= 1) ||
        ((m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) != RTE_MBUF_F_RX_IP_CKSUM_GOOD &&
         !ip4_hdr_cksum_ok(ip, sizeof(rte_ipv4_hdr)))) {
        return Fast::kSlow;
    }
    if (tlen < avail) {
        rte_pktmbuf_trim(m, static_cast<uint16_t>(avail - tlen));
    }
    set_meta(m, kEthLen + sizeof(rte_ipv4_hdr), ip->next_proto_id);
    return local ? Fast::kLocal : Fast::kFwd;
}

// ip6_input's decision for the plain packet, the same way.
inline Fast fast6(rte_mbuf *m, const uint8_t *p, const NodeAddrs &node) {
    const auto *ip = reinterpret_cast<const rte_ipv6_hdr *>(p + kEthLen);
    const uint8_t proto = ip->proto;
    const uint32_t avail = m->pkt_len - kEthLen;
    const uint32_t tlen = sizeof(rte_ipv6_hdr) + rte_be_to_cpu_16(ip->payload_len);
    const uint8_t *src = ip->src_addr;
    const uint8_t *dst = ip->dst_addr;
    uint64_t src_hi, dst_hi;
    std::memcpy(&src_hi, src, 8);
    std::memcpy(&dst_hi, dst, 8);
    // ::/64 holds the unspecified and loopback addresses ip6_input tests
    // for; nothing we route or answer lives there.
    if ((p[kEthLen] >> 4) != 6 || tlen > avail ||
        !(proto == IPPROTO_UDP || proto == IPPROTO_TCP || proto == IPPROTO_ICMPV6) || src_hi == 0 ||
        dst_hi == 0 || src[0] == 0xff || dst[0] == 0xff) {
        return Fast::kSlow;
    }
    // ip6_input takes the node's address as local before its link-local and
    // hop limit tests.
    const bool local = node.has_ip6 && eq16(dst, node.ip6.data());
    if (!local && (is_link_local6(src) || is_link_local6(dst) || ip->hop_limits <= 1 ||
                   eq16(dst, node.gw6.data()))) {
        return Fast::kSlow;
    }
    if (tlen < avail) {
        rte_pktmbuf_trim(m, static_cast<uint16_t>(avail - tlen));
    }
    set_meta(m, kEthLen + sizeof(rte_ipv6_hdr), proto);
    return local ? Fast::kLocal : Fast::kFwd;
}

// The stages' own code on one packet the fused test left.
inline void slow(Worker &w, rte_mbuf *m, uint32_t node4, const NodeAddrs &node, FastNext &out) {
    switch (eth_input_one(w, m)) {
        case EthClass::kArp:
            out.arp.push(m);
            break;
        case EthClass::kIp4:
            ip_sort(out.ip4, m, ip4_input_one(w, m, node4));
            break;
        case EthClass::kIp6:
            ip_sort(out.ip6, m, ip6_input_one(w, m, node));
            break;
        case EthClass::kDropped:
            break;
    }
}

}  // namespace

void fast_input(Worker &w, rte_mbuf **pkts, uint16_t n, FastNext &out) {
    const Tables &t = w.tables();
    const NodeAddrs &node = t.node();
    const uint32_t node4 = ip4_local_addr(node);
    for (uint16_t i = 0; i < n && i < kAhead; i++) {
        prefetch(pkts[i]);
    }
    // A burst comes from one queue of one port: its MAC is looked up again
    // only when the port changes.
    uint16_t port = UINT16_MAX;
    const uint8_t *mac = nullptr;
    for (uint16_t i = 0; i < n; i++) {
        rte_mbuf *m = pkts[i];
        if (i + kAhead < n) {
            prefetch(pkts[i + kAhead]);
        }
        if (unlikely(m->port != port)) {
            port = m->port;
            mac = t.port(port).mac.data();
        }
        const auto *p = rte_pktmbuf_mtod(m, const uint8_t *);
        const uint32_t len = m->data_len;
        uint16_t type;
        std::memcpy(&type, p + 2 * RTE_ETHER_ADDR_LEN, 2);
        // Unicast to the port's own MAC (a multicast port MAC would take
        // eth_input's multicast tests: slow).
        Fast f = Fast::kSlow;
        IpNext *ip = nullptr;
        if (likely((p[0] & 1) == 0 && eq6(p, mac))) {
            if (type == kTypeIp4 && len >= kEthLen + sizeof(rte_ipv4_hdr)) {
                f = fast4(m, p, node4);
                ip = &out.ip4;
            } else if (type == kTypeIp6 && len >= kEthLen + sizeof(rte_ipv6_hdr)) {
                f = fast6(m, p, node);
                ip = &out.ip6;
            }
        }
        if (likely(f == Fast::kFwd)) {
            ip->fwd.push(m);
        } else if (f == Fast::kLocal) {
            ip->local.push(m);
        } else {
            slow(w, m, node4, node, out);
        }
    }
}

}  // namespace fwd::dp
