// arp_input: answers ARP the way Calico's host side does.
// Reads: the ARP packet after meta.l3_off; PortState of meta.in_port; node IPv4.
// On pod ports: proxy ARP. Any request from the pod (169.254.1.1 or any
//   other address) is answered with the port's MAC (ee:ee:ee:ee:ee:ee),
//   except gratuitous ARP and probes (sender == target, or sender 0.0.0.0).
// On the uplink (role kUplink): requests for the node's IPv4 address are
//   answered. Replies whose target IP is the node's IPv4 address, and
//   gratuitous ARP (sender IP == target IP, not 0.0.0.0; request or reply),
//   are punted to the control thread (PuntReason::kNeighbor, frame unchanged
//   but for the VLAN tag eth_input removed), whatever NodeAddrs::host_punt.
// The reply is built in place and sent back out of meta.in_port.
// Drops: arp_truncated, arp_unsupported (not Ethernet/IPv4, unknown opcode),
//        arp_gratuitous (on pod ports; probes with sender 0.0.0.0 anywhere),
//        arp_not_for_us, arp_reply (any other reply), and the punt drops
//        (punt_rate_limited, punt_ring_full).
// RFC 826, RFC 5227 (gratuitous ARP, probes).
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

void arp_input(Worker &w, Burst &in) {
    const Tables &t = w.tables();
    for (uint16_t i = 0; i < in.n; i++) {
        rte_mbuf *m = in.pkts[i];
        const PktMeta &md = meta(m);
        if (seg_avail(m, md.l3_off) < sizeof(rte_arp_hdr)) {
            w.drop(m, DropReason::kArpTruncated);
            continue;
        }
        auto *arp = at<rte_arp_hdr>(m, md.l3_off);
        if (arp->arp_hardware != RTE_BE16(RTE_ARP_HRD_ETHER) ||
            arp->arp_protocol != RTE_BE16(RTE_ETHER_TYPE_IPV4) || arp->arp_hlen != 6 ||
            arp->arp_plen != 4) {
            w.drop(m, DropReason::kArpUnsupported);
            continue;
        }
        bool reply = arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REPLY);
        if (!reply && arp->arp_opcode != RTE_BE16(RTE_ARP_OP_REQUEST)) {
            w.drop(m, DropReason::kArpUnsupported);
            continue;
        }
        uint32_t sip = arp->arp_data.arp_sip;
        uint32_t tip = arp->arp_data.arp_tip;
        const PortState &ps = t.port(md.in_port);
        PortRole role = ps.role.load(std::memory_order_acquire);
        const NodeAddrs &node = t.node();
        bool for_node = node.has_ip4 && tip == node.ip4.be().raw();
        if (role == PortRole::kUplink && ((sip == tip && sip != 0) || (reply && for_node))) {
            w.punt(m, PuntReason::kNeighbor);  // the control thread's neighbor table
            continue;
        }
        if (reply) {
            w.drop(m, DropReason::kArpReply);
            continue;
        }
        if (sip == tip || sip == 0) {
            w.drop(m, DropReason::kArpGratuitous);
            continue;
        }
        if (role != PortRole::kPod) {
            if (!for_node) {
                w.drop(m, DropReason::kArpNotForUs);
                continue;
            }
        }
        // Turn the request into the reply in place.
        arp->arp_opcode = RTE_BE16(RTE_ARP_OP_REPLY);
        arp->arp_data.arp_tha = arp->arp_data.arp_sha;
        std::memcpy(arp->arp_data.arp_sha.addr_bytes, ps.mac.data(), 6);
        arp->arp_data.arp_tip = sip;
        arp->arp_data.arp_sip = tip;
        auto *eth = at<rte_ether_hdr>(m, 0);
        write_eth(eth, arp->arp_data.arp_tha.addr_bytes, ps.mac.data(), eth->ether_type);
        w.tx(md.in_port, m);
    }
}

}  // namespace fwd::dp
