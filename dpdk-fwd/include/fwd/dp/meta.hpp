// Per-packet metadata, kept in the mbuf private area (set up by the packet
// pool with kMetaSize bytes of private space). Stages document which fields
// they read and set.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>

namespace fwd::dp {

enum MetaFlags : uint8_t {
    kMetaLocalOrigin = 1 << 0,    // built by the dataplane (ICMP error): no TTL decrement
    kMetaFragment = 1 << 1,       // an IP fragment
    kMetaLaterFragment = 1 << 2,  // a non-first fragment: no L4 header present
};

struct PktMeta {
    uint16_t in_port;  // set by eth_input
    uint16_t l3_off;   // offset of the IP/ARP header; set by eth_input
    uint16_t l4_off;   // offset of the upper-layer header; set by ip4/ip6_input
    uint8_t l4_proto;  // upper-layer protocol (after IPv6 extension headers)
    uint8_t flags;     // MetaFlags
    uint32_t nh;       // next hop id; set by route (for ECMP, the member's id)
    uint8_t punt;      // PuntReason (worker.hpp); set by Worker::punt
    // The packet's connection (conntrack.hpp): 1 + the flow's entry and the
    // packet's ct::Dir in it, set by the NAT stages when they tracked or
    // created its flow; 0: none known. The policy stages read it (the
    // flow's tuples give the pre-SNAT source and the post-DNAT destination).
    uint8_t flow_dir;
    // The sending endpoint's policy class (policy.hpp), set by antispoof4 /
    // antispoof6 for a packet of an endpoint's port (the matching allowed
    // source tells which endpoint on a port several pods share); read only
    // for such packets.
    uint16_t src_cls;
    uint32_t flow;
};
static_assert(sizeof(PktMeta) == 20, "PktMeta must stay small: it shares a cache line");

inline constexpr uint16_t kMetaSize = RTE_CACHE_LINE_SIZE;  // private area per mbuf
static_assert(sizeof(PktMeta) <= kMetaSize);

inline PktMeta &meta(rte_mbuf *m) {
    return *static_cast<PktMeta *>(rte_mbuf_to_priv(m));
}
inline const PktMeta &meta(const rte_mbuf *m) {
    // rte_mbuf_to_priv takes no const mbuf; the private area follows the mbuf.
    return *reinterpret_cast<const PktMeta *>(reinterpret_cast<const uint8_t *>(m) +
                                              sizeof(rte_mbuf));
}

}  // namespace fwd::dp
