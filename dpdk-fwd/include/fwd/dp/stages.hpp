// The pipeline stages, in packet order. Each works on a burst and sorts its
// packets onward or drops them with a reason. Contracts are on top of each
// stage's source file (dpdk-fwd/src/stages/<stage>.cpp).
//
//   eth_input -> arp_input                      (answers, back out of in_port)
//             -> ip4_input -> icmp4_local       (echo to our addresses)
//                          -> [vxlan_decap] [policy] [nat]   (later issues)
//                          -> route4 -> [vxlan_encap] -> l2_rewrite4 -> port tx
//             -> ip6_input -> icmp6_local       (ND, echo)
//                          -> route6 -> l2_rewrite6 -> port tx
//   ICMP errors built on the way (icmp_error) re-enter at route4 / route6.
#pragma once

#include "fwd/dp/worker.hpp"

namespace fwd::dp {

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
