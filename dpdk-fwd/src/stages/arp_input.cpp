// arp_input: answers ARP the way Calico's host side does.
// Reads: the ARP packet after meta.l3_off; PortState of meta.in_port; node IPv4.
// On pod ports: proxy ARP. Any request from the pod (169.254.1.1 or any
//   other address) is answered with the port's MAC (ee:ee:ee:ee:ee:ee),
//   except gratuitous ARP and probes (sender == target, or sender 0.0.0.0).
// On the uplink: requests for the node's IPv4 address are answered.
// The reply is built in place and sent back out of meta.in_port.
// Drops: arp_truncated, arp_unsupported (not Ethernet/IPv4, unknown opcode),
//        arp_gratuitous, arp_not_for_us, arp_reply (no resolver here yet).
// RFC 826.
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
        if (arp->arp_opcode == RTE_BE16(RTE_ARP_OP_REPLY)) {
            w.drop(m, DropReason::kArpReply);
            continue;
        }
        if (arp->arp_opcode != RTE_BE16(RTE_ARP_OP_REQUEST)) {
            w.drop(m, DropReason::kArpUnsupported);
            continue;
        }
        uint32_t sip = arp->arp_data.arp_sip;
        uint32_t tip = arp->arp_data.arp_tip;
        if (sip == tip || sip == 0) {
            w.drop(m, DropReason::kArpGratuitous);
            continue;
        }
        const PortState &ps = t.port(md.in_port);
        if (ps.role.load(std::memory_order_acquire) != PortRole::kPod) {
            const NodeAddrs &node = t.node();
            if (!node.has_ip4 || tip != node.ip4.be().raw()) {
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
