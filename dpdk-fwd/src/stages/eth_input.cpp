// eth_input: the first stage.
// Reads: the Ethernet header, PortState of the RX port (our MAC, VLAN).
// Sets:  meta.in_port, meta.l3_off, meta.flags = 0.
// Next:  arp -> arp_input, IPv4 -> ip4_input, IPv6 -> ip6_input.
// Drops: eth_runt (< 14 bytes), eth_not_for_us (unicast to another MAC),
//        eth_multicast (multicast other than IPv6 33:33:*), eth_vlan_tagged
//        (a tag where the port has no VLAN, or another VLAN id),
//        eth_unknown_type.
// A tagged frame on a port with a matching VLAN has its tag removed here.
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {

constexpr uint16_t kTypeIp4 = RTE_BE16(RTE_ETHER_TYPE_IPV4);
constexpr uint16_t kTypeIp6 = RTE_BE16(RTE_ETHER_TYPE_IPV6);
constexpr uint16_t kTypeArp = RTE_BE16(RTE_ETHER_TYPE_ARP);
constexpr uint16_t kTypeVlan = RTE_BE16(RTE_ETHER_TYPE_VLAN);
constexpr uint16_t kTypeQinQ = RTE_BE16(RTE_ETHER_TYPE_QINQ);

bool dst_accepted(const rte_ether_hdr *eth, const PortState &ps) {
    const uint8_t *d = eth->dst_addr.addr_bytes;
    if ((d[0] & 1) == 0) {
        return std::memcmp(d, ps.mac.data(), 6) == 0;
    }
    return true;  // broadcast / multicast: filtered below
}

bool multicast_accepted(const rte_ether_hdr *eth) {
    const uint8_t *d = eth->dst_addr.addr_bytes;
    if (rte_is_broadcast_ether_addr(&eth->dst_addr)) {
        return true;
    }
    return d[0] == 0x33 && d[1] == 0x33;  // IPv6 multicast (ND, MLD)
}

// One frame: where it goes, or kDropped (dropped with its reason). Shared
// by the stage's loop and the fused input's fallback (eth_input_one), so
// the two decide alike.
inline EthClass classify(Worker &w, rte_mbuf *m) {
    PktMeta &md = meta(m);
    md = PktMeta{};
    md.in_port = m->port;
    if (m->data_len < sizeof(rte_ether_hdr)) {
        w.drop(m, DropReason::kEthRunt);
        return EthClass::kDropped;
    }
    auto *eth = at<rte_ether_hdr>(m, 0);
    const PortState &ps = w.tables().port(m->port);
    if (!dst_accepted(eth, ps)) {
        w.drop(m, DropReason::kEthNotForUs);
        return EthClass::kDropped;
    }
    if (rte_is_multicast_ether_addr(&eth->dst_addr) && !multicast_accepted(eth)) {
        w.drop(m, DropReason::kEthMulticast);
        return EthClass::kDropped;
    }
    uint16_t type = eth->ether_type;
    if (type == kTypeVlan || type == kTypeQinQ) {
        if (type == kTypeQinQ || ps.vlan == 0 ||
            m->data_len < sizeof(rte_ether_hdr) + sizeof(rte_vlan_hdr)) {
            w.drop(m, DropReason::kEthVlanTagged);
            return EthClass::kDropped;
        }
        auto *vh = at<rte_vlan_hdr>(m, sizeof(rte_ether_hdr));
        if ((rte_be_to_cpu_16(vh->vlan_tci) & 0xfff) != ps.vlan) {
            w.drop(m, DropReason::kEthVlanTagged);
            return EthClass::kDropped;
        }
        type = vh->eth_proto;
        // Move the MAC addresses over the tag: the rest of the pipeline sees untagged frames.
        std::memmove(rte_pktmbuf_mtod_offset(m, uint8_t *, sizeof(rte_vlan_hdr)), eth,
                     2 * RTE_ETHER_ADDR_LEN);
        rte_pktmbuf_adj(m, sizeof(rte_vlan_hdr));
        eth = at<rte_ether_hdr>(m, 0);
        eth->ether_type = type;
    }
    md.l3_off = sizeof(rte_ether_hdr);
    if (type == kTypeIp4) {
        return EthClass::kIp4;
    }
    if (type == kTypeIp6) {
        return EthClass::kIp6;
    }
    if (type == kTypeArp) {
        return EthClass::kArp;
    }
    w.drop(m, DropReason::kEthUnknownType);
    return EthClass::kDropped;
}

}  // namespace

void eth_input(Worker &w, rte_mbuf **pkts, uint16_t n, EthNext &out) {
    for (uint16_t i = 0; i < n; i++) {
        rte_mbuf *m = pkts[i];
        switch (classify(w, m)) {
            case EthClass::kIp4:
                out.ip4.push(m);
                break;
            case EthClass::kIp6:
                out.ip6.push(m);
                break;
            case EthClass::kArp:
                out.arp.push(m);
                break;
            case EthClass::kDropped:
                break;
        }
    }
}

EthClass eth_input_one(Worker &w, rte_mbuf *m) {
    return classify(w, m);
}

}  // namespace fwd::dp
