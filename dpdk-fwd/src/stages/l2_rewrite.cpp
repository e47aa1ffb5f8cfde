// l2_rewrite4 / l2_rewrite6: the last stage before the port.
// Reads: meta.nh (NextHop: port, MACs), meta.flags.
// Sets:  TTL - 1 with an incremental checksum update (RFC 1624) / hop limit
//        - 1, unless the packet was built here (kMetaLocalOrigin); the
//        Ethernet header (next hop's MAC, our MAC on that port).
// Next:  the TX buffer of the next hop's port (Worker::tx).
// Drops: nh_kind_unhandled (a next hop of a feature's kind that no output
//        stage took: the feature is missing or broken; looked for only in a
//        burst route marked feature_nh).
#include <cstddef>
#include <cstring>

#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

// The next hop's two MACs lie side by side in the order of an Ethernet
// header: one 12-byte copy (8 + 4) writes both.
static_assert(offsetof(NextHop, src_mac) == offsetof(NextHop, dst_mac) + 6);
static_assert(offsetof(rte_ether_hdr, src_addr) == offsetof(rte_ether_hdr, dst_addr) + 6);

// Decrements the TTL / hop limit unless the packet was built here, writes the
// Ethernet header from the next hop and queues the packet on its port.
template <bool kV6>
void rewrite(Worker &w, Burst &in) {
    const Tables &t = w.tables();
    const bool feature_nh = in.feature_nh != 0;  // route let a feature's next hop in
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        const PktMeta &md = meta(m);
        const NextHop &nh = t.nh(md.nh);
        if (unlikely(feature_nh) &&
            static_cast<uint8_t>(load_kind(nh)) >= static_cast<uint8_t>(NhKind::kFirstFeature)) {
            w.drop(m, DropReason::kNhKindUnhandled);
            continue;
        }
        if (!(md.flags & kMetaLocalOrigin)) {
            if constexpr (kV6) {
                at<rte_ipv6_hdr>(m, md.l3_off)->hop_limits--;
            } else {
                ip4_dec_ttl(at<rte_ipv4_hdr>(m, md.l3_off));
            }
        }
        auto *eth = at<rte_ether_hdr>(m, 0);
        std::memcpy(eth, nh.dst_mac.data(), 2 * RTE_ETHER_ADDR_LEN);
        eth->ether_type = kV6 ? RTE_BE16(RTE_ETHER_TYPE_IPV6) : RTE_BE16(RTE_ETHER_TYPE_IPV4);
        w.tx(nh.port, m);
    }
}

}  // namespace

void l2_rewrite4(Worker &w, Burst &in) {
    rewrite<false>(w, in);
}
void l2_rewrite6(Worker &w, Burst &in) {
    rewrite<true>(w, in);
}

}  // namespace fwd::dp
