// ip6_input: IPv6 header checks (RFC 8200), extension header walk and the
// local / forward decision.
// Reads: the IPv6 header and extension headers at meta.l3_off; node addresses.
// Sets:  meta.l4_off / meta.l4_proto (the upper layer after hop-by-hop,
//        routing, fragment, destination options and AH headers),
//        kMetaFragment / kMetaLaterFragment; trims Ethernet padding.
// Next:  local -> icmp6_local: fe80::ecee:eeff:feee:eeee, the node's
//        address, ICMPv6 to ff02::/16; on the uplink, ICMPv6 to any other
//        link-local address (Neighbor Advertisements for the control
//        thread), and with NodeAddrs::host_punt anything to another
//        link-local address or to a host group (ff02::1, ff02::2, the node's
//        solicited-node group; host_group6());
//        fwd -> route6 (hop limit > 1 checked here).
// Drops: ip6_truncated, ip6_bad_version, ip6_length_exceeds_frame,
//        ip6_bad_ext_header (hop-by-hop not first), ip6_too_many_ext_headers,
//        ip6_bad_source (also link-local
//        sources to be forwarded), ip6_martian_dest, ip6_link_local_dest, ip6_multicast,
//        ip6_hop_limit_exceeded (ICMPv6 sent).
// Routers do not process hop-by-hop options (RFC 8200 4.3 allows it) nor
// routing headers of packets not addressed to them; fragments are forwarded.
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr int kMaxExtHeaders = 8;

enum : uint8_t {
    kHopByHop = 0,
    kRouting = 43,
    kFragment = 44,
    kEsp = 50,
    kAh = 51,
    kNoNext = 59,
    kDestOpts = 60,
    kIcmp6 = 58,
};

bool is_unspecified(const uint8_t *a) {
    static const uint8_t zero[16] = {};
    return std::memcmp(a, zero, 16) == 0;
}

bool is_loopback(const uint8_t *a) {
    static const uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::memcmp(a, lo, 16) == 0;
}

enum class Walk { kOk, kTruncated, kBadOrder, kTooMany };

// Walks the extension header chain; on kOk sets l4_off / l4_proto / flags.
Walk walk_ext(rte_mbuf *m, PktMeta &md, uint8_t first) {
    uint8_t nh = first;
    uint32_t off = md.l3_off + sizeof(rte_ipv6_hdr);
    for (int i = 0; i <= kMaxExtHeaders; i++) {
        switch (nh) {
            case kHopByHop:
            case kRouting:
            case kDestOpts:
            case kAh:
            case kFragment: {
                if (nh == kHopByHop && i != 0) {
                    return Walk::kBadOrder;
                }
                if (i == kMaxExtHeaders) {
                    return Walk::kTooMany;
                }
                uint8_t buf[8];
                auto *h = static_cast<const uint8_t *>(rte_pktmbuf_read(m, off, 8, buf));
                if (h == nullptr) {
                    return Walk::kTruncated;
                }
                uint32_t len;
                if (nh == kFragment) {
                    len = 8;
                    md.flags |= kMetaFragment;
                    uint16_t offlg = static_cast<uint16_t>((h[2] << 8) | h[3]);
                    if ((offlg & 0xfff8) != 0) {
                        md.flags |= kMetaLaterFragment;
                    }
                } else if (nh == kAh) {
                    len = (h[1] + 2u) * 4;
                } else {
                    len = (h[1] + 1u) * 8;
                }
                if (off + len > m->pkt_len) {
                    return Walk::kTruncated;
                }
                nh = h[0];
                off += len;
                break;
            }
            default:
                // Upper layer, ESP or no-next-header: the walk ends here.
                md.l4_proto = nh;
                md.l4_off = static_cast<uint16_t>(off);
                return Walk::kOk;
        }
    }
    return Walk::kTooMany;
}

// One packet: local, forward, or kDropped (dropped with its reason, or
// taken by icmp6_error). Shared by the stage's loop and the fused input's
// fallback (ip6_input_one), so the two decide alike.
inline IpClass check(Worker &w, rte_mbuf *m, const NodeAddrs &node) {
    PktMeta &md = meta(m);
    uint32_t avail = m->pkt_len - md.l3_off;
    if (avail < sizeof(rte_ipv6_hdr) || seg_avail(m, md.l3_off) < sizeof(rte_ipv6_hdr)) {
        w.drop(m, DropReason::kIp6Truncated);
        return IpClass::kDropped;
    }
    auto *ip = at<rte_ipv6_hdr>(m, md.l3_off);
    if ((rte_be_to_cpu_32(ip->vtc_flow) >> 28) != 6) {
        w.drop(m, DropReason::kIp6BadVersion);
        return IpClass::kDropped;
    }
    uint32_t tlen = sizeof(rte_ipv6_hdr) + rte_be_to_cpu_16(ip->payload_len);
    if (tlen > avail) {
        w.drop(m, DropReason::kIp6LengthExceedsFrame);
        return IpClass::kDropped;
    }
    if (tlen < avail) {
        rte_pktmbuf_trim(m, avail - tlen);
    }
    if (ip->src_addr[0] == 0xff || is_loopback(ip->src_addr)) {
        w.drop(m, DropReason::kIp6BadSource);
        return IpClass::kDropped;
    }
    if (is_unspecified(ip->dst_addr) || is_loopback(ip->dst_addr)) {
        w.drop(m, DropReason::kIp6MartianDest);
        return IpClass::kDropped;
    }
    switch (walk_ext(m, md, ip->proto)) {
        case Walk::kOk:
            break;
        case Walk::kTruncated:
            w.drop(m, DropReason::kIp6Truncated);
            return IpClass::kDropped;
        case Walk::kBadOrder:
            w.drop(m, DropReason::kIp6BadExtHeader);
            return IpClass::kDropped;
        case Walk::kTooMany:
            w.drop(m, DropReason::kIp6TooManyExtHeaders);
            return IpClass::kDropped;
    }
    const uint8_t *dst = ip->dst_addr;
    auto on_uplink = [&] {
        return w.tables().port(md.in_port).role.load(std::memory_order_acquire) ==
               PortRole::kUplink;
    };
    if (dst[0] == 0xff) {
        // Link-scope ICMPv6 (ND, MLD) is ours, and what the host stack
        // listens to on the uplink; nothing else multicast is routed.
        if (dst[1] == 0x02 &&
            (md.l4_proto == kIcmp6 || (node.host_punt && host_group6(dst, node) && on_uplink()))) {
            return IpClass::kLocal;
        }
        w.drop(m, DropReason::kIp6Multicast);
        return IpClass::kDropped;
    }
    if (std::memcmp(dst, node.gw6.data(), 16) == 0 ||
        (node.has_ip6 && std::memcmp(dst, node.ip6.data(), 16) == 0)) {
        return IpClass::kLocal;
    }
    if (is_link_local6(dst)) {
        // Another link-local address on the uplink: the host stack's, or a
        // Neighbor Advertisement answering the control thread.
        if ((node.host_punt || md.l4_proto == kIcmp6) && on_uplink()) {
            return IpClass::kLocal;
        }
        w.drop(m, DropReason::kIp6LinkLocalDest);
        return IpClass::kDropped;
    }
    if (is_link_local6(ip->src_addr)) {
        w.drop(m, DropReason::kIp6BadSource);  // RFC 4291 2.5.6: never forwarded
        return IpClass::kDropped;
    }
    if (ip->hop_limits <= 1) {
        icmp6_error(w, m, 3 /* time exceeded */, 0, 0, DropReason::kIp6HopLimitExceeded);
        return IpClass::kDropped;
    }
    return IpClass::kFwd;
}

}  // namespace

void ip6_input(Worker &w, Burst &in, IpNext &out) {
    const NodeAddrs &node = w.tables().node();
    for (uint16_t i = 0; i < in.n; i++) {
        ip_sort(out, in.pkts[i], check(w, in.pkts[i], node));
    }
}

IpClass ip6_input_one(Worker &w, rte_mbuf *m, const NodeAddrs &node) {
    return check(w, m, node);
}

}  // namespace fwd::dp
