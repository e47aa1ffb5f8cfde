// The pipeline stages, in packet order. Each works on a burst and sorts its
// packets onward or drops them with a reason. Contracts are on top of each
// stage's source file (dpdk-fwd/src/stages/<stage>.cpp).
//
//   eth_input -> arp_input                      (answers, back out of in_port)
//             -> ip4_input -> icmp4_local       (echo to our addresses)
//                          -> [vxlan_decap4] [ipip_decap]    (overlay.hpp)
//                          -> [antispoof4] [nat4]            (policy.hpp, nat.hpp)
//                          -> route4 -> [policy4] [vxlan_encap4] [ipip_encap] -> l2_rewrite4
//                          -> port tx
//             (local: [antispoof4_local] [nat4_local] [policy4_local] -> icmp4_local;
//              IPv6 alike)
//             -> ip6_input -> icmp6_local       (ND, echo)
//                          -> [vxlan_decap6] [antispoof6] [nat6]
//                          -> route6 -> [policy6] [vxlan_encap6] -> l2_rewrite6 -> port tx
//   With the worker's fast path on (the default), fast_input does the work
//   of eth_input, ip4_input and ip6_input in one pass over a received burst;
//   re-entering packets still take ip4_input / ip6_input.
//   ICMP errors built on the way (icmp_error) re-enter at route4 / route6.
//   Packets for the control thread leave through Worker::punt (arp_input,
//   icmp4_local / icmp6_local: PuntReason kNeighbor / kHost; route4 /
//   route6: kResolve).
#pragma once

#include <cstring>

#include "fwd/dp/worker.hpp"

namespace fwd::dp {

// The link-scope groups the node's own stack listens to on the uplink:
// ff02::1 (all nodes), ff02::2 (all routers) and the solicited-node group
// of the node's IPv6 address (RFC 4291 2.7.1). Used by ip6_input and
// icmp6_local when NodeAddrs::host_punt is set.
inline bool host_group6(const uint8_t *dst, const NodeAddrs &node) {
    static const uint8_t kLinkScope[15] = {0xff, 0x02};  // ff02::, all but the last byte
    static const uint8_t kSnm[13] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff};
    if (std::memcmp(dst, kLinkScope, 15) == 0 && (dst[15] == 1 || dst[15] == 2)) {
        return true;
    }
    return node.has_ip6 && std::memcmp(dst, kSnm, 13) == 0 &&
           std::memcmp(dst + 13, node.ip6.data() + 13, 3) == 0;
}

inline bool is_link_local6(const uint8_t *a) {
    return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

inline constexpr uint32_t kGateway4 = 0xa9fe0101;  // 169.254.1.1, host order

struct EthNext {
    Burst arp;
    Burst ip4;
    Burst ip6;
};
void eth_input(Worker &w, rte_mbuf **pkts, uint16_t n, EthNext &out);
void arp_input(Worker &w, Burst &in);

struct IpNext {
    Burst fwd;
    Burst local;
};
void ip4_input(Worker &w, Burst &in, IpNext &out);
void ip6_input(Worker &w, Burst &in, IpNext &out);

// The same decisions a packet at a time, for fast_input's fallback: what
// eth_input / ip4_input / ip6_input do to the one packet (drops, ICMP
// errors, metadata), and where it would go. kDropped: the stage took it.
enum class EthClass : uint8_t { kDropped, kArp, kIp4, kIp6 };
enum class IpClass : uint8_t { kDropped, kFwd, kLocal };
EthClass eth_input_one(Worker &w, rte_mbuf *m);
// Puts m where ip*_input_one said it goes.
inline void ip_sort(IpNext &out, rte_mbuf *m, IpClass c) {
    if (c == IpClass::kFwd) {
        out.fwd.push(m);
    } else if (c == IpClass::kLocal) {
        out.local.push(m);
    }
}
// node4: ip4_local_addr(node), once per burst.
IpClass ip4_input_one(Worker &w, rte_mbuf *m, uint32_t node4);
IpClass ip6_input_one(Worker &w, rte_mbuf *m, const NodeAddrs &node);
// The node's IPv4 address in host order, or kGateway4 when it has none (one
// compare then stands for both local tests).
uint32_t ip4_local_addr(const NodeAddrs &node);

// eth_input, ip4_input and ip6_input fused into one pass over the burst
// (src/stages/fast_input.cpp): the common packet is checked and sorted
// inline, every other one goes through the stages' own per-packet code
// above, in burst order, so results, drops and counters are the stages'.
struct FastNext {
    Burst arp;
    IpNext ip4;
    IpNext ip6;
};
void fast_input(Worker &w, rte_mbuf **pkts, uint16_t n, FastNext &out);
void icmp4_local(Worker &w, Burst &in);
void icmp6_local(Worker &w, Burst &in);

// Route lookup; packets that can leave are appended to out with meta.nh set.
void route4(Worker &w, Burst &in, Burst &out);
void route6(Worker &w, Burst &in, Burst &out);

// TTL / hop limit decrement (unless locally built), Ethernet header from the
// next hop, hand to the port's TX buffer.
void l2_rewrite4(Worker &w, Burst &in);
void l2_rewrite6(Worker &w, Burst &in);

// Drops m with reason and, when RFC 1812 / RFC 4443 allow it and the rate
// limit has a token, queues an ICMP error about it on w.gen4_ / w.gen6_.
// extra: next-hop MTU for "fragmentation needed" / "packet too big", else 0.
void icmp4_error(Worker &w, rte_mbuf *m, uint8_t type, uint8_t code, uint32_t extra,
                 DropReason reason);
void icmp6_error(Worker &w, rte_mbuf *m, uint8_t type, uint8_t code, uint32_t extra,
                 DropReason reason);

}  // namespace fwd::dp
