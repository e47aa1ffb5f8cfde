// The one list of reasons a packet leaves the pipeline without being sent.
// Every drop names one of these; each worker counts them; the CLI and the
// metrics print the names. Add a reason here, never a silent free.
#pragma once

#include <cstdint>
#include <string_view>

namespace fwd::dp {

#define FWD_DROP_REASONS(X)                                                                      \
    X(kEthRunt, "eth_runt", "frame shorter than an Ethernet header")                             \
    X(kEthNotForUs, "eth_not_for_us", "unicast destination MAC is not ours")                     \
    X(kEthMulticast, "eth_multicast", "multicast destination we do not listen to")               \
    X(kEthUnknownType, "eth_unknown_type", "ethertype is not IPv4, IPv6 or ARP")                 \
    X(kEthVlanTagged, "eth_vlan_tagged", "VLAN tag not configured on this port")                 \
    X(kArpTruncated, "arp_truncated", "ARP packet shorter than its header")                      \
    X(kArpUnsupported, "arp_unsupported", "ARP not Ethernet/IPv4 or unknown opcode")             \
    X(kArpGratuitous, "arp_gratuitous", "gratuitous ARP or probe, nothing to answer")            \
    X(kArpNotForUs, "arp_not_for_us", "ARP request for an address we do not answer")             \
    X(kArpReply, "arp_reply", "ARP reply other than for the node on the uplink")                 \
    X(kIp4Truncated, "ip4_truncated", "IPv4 header longer than the frame")                       \
    X(kIp4BadVersion, "ip4_bad_version", "IPv4 version field is not 4")                          \
    X(kIp4BadIhl, "ip4_bad_ihl", "IPv4 header length below 20 bytes")                            \
    X(kIp4BadChecksum, "ip4_bad_checksum", "IPv4 header checksum is wrong")                      \
    X(kIp4BadLength, "ip4_bad_length", "IPv4 total length below the header length")              \
    X(kIp4LengthExceedsFrame, "ip4_length_exceeds_frame",                                        \
      "IPv4 total length longer than the frame")                                                 \
    X(kIp4BadSource, "ip4_bad_source", "IPv4 source is multicast, broadcast or loopback")        \
    X(kIp4MartianDest, "ip4_martian_dest", "IPv4 destination is loopback or 0/8")                \
    X(kIp4Multicast, "ip4_multicast", "IPv4 multicast or broadcast destination")                 \
    X(kIp4TtlExceeded, "ip4_ttl_exceeded", "IPv4 TTL would reach 0 (time exceeded sent)")        \
    X(kIp4FragNeeded, "ip4_frag_needed", "IPv4 larger than the egress MTU with DF set")          \
    X(kIp4MtuExceeded, "ip4_mtu_exceeded",                                                       \
      "IPv4 larger than the egress MTU without DF (fragmentation not supported)")                \
    X(kIp6Truncated, "ip6_truncated", "IPv6 header or extension header beyond the frame")        \
    X(kIp6BadVersion, "ip6_bad_version", "IPv6 version field is not 6")                          \
    X(kIp6LengthExceedsFrame, "ip6_length_exceeds_frame",                                        \
      "IPv6 payload length longer than the frame")                                               \
    X(kIp6BadExtHeader, "ip6_bad_ext_header", "hop-by-hop options not first")                    \
    X(kIp6TooManyExtHeaders, "ip6_too_many_ext_headers", "extension header chain too long")      \
    X(kIp6BadSource, "ip6_bad_source", "IPv6 source is multicast or loopback")                   \
    X(kIp6MartianDest, "ip6_martian_dest", "IPv6 destination is loopback or unspecified")        \
    X(kIp6LinkLocalDest, "ip6_link_local_dest", "link-local destination not ours")               \
    X(kIp6Multicast, "ip6_multicast", "IPv6 multicast we do not handle")                         \
    X(kIp6HopLimitExceeded, "ip6_hop_limit_exceeded",                                            \
      "IPv6 hop limit would reach 0 (time exceeded sent)")                                       \
    X(kIp6TooBig, "ip6_too_big", "IPv6 larger than the egress MTU (packet too big sent)")        \
    X(kIcmpTruncated, "icmp_truncated", "ICMP message shorter than its header")                  \
    X(kIcmpBadChecksum, "icmp_bad_checksum", "ICMP or ICMPv6 checksum is wrong")                 \
    X(kIcmpUnhandled, "icmp_unhandled", "ICMP to us that is not an echo request")                \
    X(kNdInvalid, "nd_invalid", "Neighbor Discovery message failing RFC 4861 checks")            \
    X(kNdTargetUnknown, "nd_target_unknown", "Neighbor Solicitation for a foreign target")       \
    X(kNdUnhandled, "nd_unhandled", "RS, RA, NA or redirect: nothing to do")                     \
    X(kPuntRateLimited, "punt_rate_limited", "punt over the rate limit")                         \
    X(kPuntRingFull, "punt_ring_full", "punt ring to the control thread full")                   \
    X(kLocalUnhandled, "local_unhandled", "non-ICMP traffic to a dataplane address")             \
    X(kNoRoute, "no_route", "no route (destination unreachable sent)")                           \
    X(kRouteUnreachable, "route_unreachable", "unreachable route (unreachable sent)")            \
    X(kRouteBlackhole, "route_blackhole", "blackhole route")                                     \
    X(kEcmpBadGroup, "ecmp_bad_group", "ECMP next hop with a bad group (unreachable sent)")      \
    X(kEcmpBadMember, "ecmp_bad_member", "ECMP member that is a group (unreachable sent)")       \
    X(kPortDown, "port_down", "egress port is not ready or its link is down")                    \
    X(kTxQueueFull, "tx_queue_full", "egress queue full")                                        \
    X(kIcmpRateLimited, "icmp_rate_limited", "ICMP error suppressed by the rate limit")          \
    X(kIcmpErrorNoBuffer, "icmp_error_no_buffer", "no mbuf to build an ICMP error")              \
    X(kIcmpErrorSuppressed, "icmp_error_suppressed",                                             \
      "no ICMP error allowed for this packet (RFC 1812 4.3.2.7 / RFC 4443 2.4)")                 \
    X(kNhKindUnhandled, "nh_kind_unhandled",                                                     \
      "next hop of a feature's kind that no output stage took")                                  \
    X(kReentryFull, "reentry_full", "too many packets re-entering the path in one burst")        \
    X(kReentryLoop, "reentry_loop", "re-entered the path more than Worker::kMaxReentries")       \
    X(kReentryBadOffset, "reentry_bad_offset",                                                   \
      "re-entering packet whose IP header is not 14 bytes or more into its first segment")       \
    X(kVxlanFromPod, "vxlan_from_pod", "VXLAN sent by a pod (Felix drops it)")                   \
    X(kVxlanFragment, "vxlan_fragment", "VXLAN in an outer IP fragment")                         \
    X(kVxlanTruncated, "vxlan_truncated", "VXLAN, inner Ethernet or IP header cut")              \
    X(kVxlanDisabled, "vxlan_disabled", "VXLAN to us, overlay off here, no host tap")            \
    X(kVxlanUnknownPeer, "vxlan_unknown_peer", "VXLAN from no known node address")               \
    X(kVxlanBadFlags, "vxlan_bad_flags", "VXLAN header without the I flag")                      \
    X(kVxlanBadVni, "vxlan_bad_vni", "VXLAN VNI not ours (no host tap)")                         \
    X(kVxlanBadInnerMac, "vxlan_bad_inner_mac", "inner destination MAC not our VTEP")            \
    X(kVxlanBadInnerType, "vxlan_bad_inner_type", "inner ethertype not IPv4 / IPv6")             \
    X(kVxlanInnerSource, "vxlan_inner_source", "inner source in no pool, not the sender")        \
    X(kVxlanZeroChecksum6, "vxlan_zero_checksum6", "VXLAN over IPv6, UDP checksum 0")            \
    X(kVxlanBadChecksum, "vxlan_bad_checksum", "VXLAN outer UDP checksum wrong")                 \
    X(kIpipFromPod, "ipip_from_pod", "IP-in-IP sent by a pod (Felix drops it)")                  \
    X(kIpipFragment, "ipip_fragment", "IP-in-IP in an outer IP fragment")                        \
    X(kIpipTruncated, "ipip_truncated", "IP-in-IP inner IPv4 header cut")                        \
    X(kIpipDisabled, "ipip_disabled", "IP-in-IP to us, not enabled here, no host tap")           \
    X(kIpipUnknownPeer, "ipip_unknown_peer", "IP-in-IP from no known node address")              \
    X(kIpipInnerSource, "ipip_inner_source", "IP-in-IP inner source in no pool, not the sender") \
    X(kEncapNoOverlay, "encap_no_overlay", "tunnel next hop, worker has no overlay")             \
    X(kEncapBadTunnel, "encap_bad_tunnel", "tunnel next hop names a bad tunnel")                 \
    X(kEncapNoHeadroom, "encap_no_headroom", "no mbuf headroom for outer headers")               \
    X(kEncapBadUnderlay, "encap_bad_underlay", "underlay next hop not via / resolve")            \
    X(kEncapMtuExceeded, "encap_mtu_exceeded", "outer packet above the underlay MTU")            \
    X(kCtTruncated, "ct_truncated", "tracked packet with its L4 header cut")                     \
    X(kCtNotTracked, "ct_not_tracked", "ICMP to NAT that is neither echo nor error")             \
    X(kCtTcpNotSyn, "ct_tcp_not_syn", "new TCP flow without SYN (tcp_loose off)")                \
    X(kCtTcpBadFlags, "ct_tcp_bad_flags", "TCP flag combination never valid")                    \
    X(kCtIcmpNoRequest, "ct_icmp_no_request", "ICMP echo reply of no known request")             \
    X(kCtTcpInvalid, "ct_tcp_invalid", "TCP segment invalid in its flow's state")                \
    X(kCtTcpOutOfWindow, "ct_tcp_out_of_window", "TCP segment outside the window")               \
    X(kCtTcpRstOutOfWindow, "ct_tcp_rst_out_of_window", "TCP RST outside the window")            \
    X(kCtTableFull, "ct_table_full", "connection table full: new flow refused")                  \
    X(kCtIndexFull, "ct_index_full", "connection index buckets full: new flow refused")          \
    X(kCtBusy, "ct_busy", "flow created by another worker at the same instant, then gone")       \
    X(kCtIcmpErrorTruncated, "ct_icmp_error_truncated", "ICMP error quoting too little")         \
    X(kCtIcmpErrorBadQuote, "ct_icmp_error_bad_quote", "ICMP error quoting garbage")             \
    X(kCtIcmpErrorNoFlow, "ct_icmp_error_no_flow", "ICMP error to NAT about no flow")            \
    X(kNatFragment, "nat_fragment", "IP fragment of a flow to translate (no reassembly)")        \
    X(kNatNoNodeAddr, "nat_no_node_addr", "natOutgoing, node has no address of the family")      \
    X(kNatPortsExhausted, "nat_ports_exhausted", "natOutgoing found no free source port")        \
    X(kSvcNoEndpoint, "svc_no_endpoint",                                                         \
      "new flow to a service with no ready endpoint (port unreachable sent)")                    \
    X(kSvcNoLocalEndpoint, "svc_no_local_endpoint",                                              \
      "new flow to a service whose traffic policy allows no endpoint here")                      \
    X(kNatHeadersSplit, "nat_headers_split", "headers to translate not in the first segment")    \
    X(kSpoofedSource, "spoofed_source", "pod packet from a source not the pod's")                \
    X(kPolicyDenyIngress, "policy_deny_ingress", "Deny rule of the receiver's ingress")          \
    X(kPolicyDenyEgress, "policy_deny_egress", "Deny rule of the sender's egress")               \
    X(kPolicyDefaultDenyIngress, "policy_default_deny_ingress",                                  \
      "no ingress rule of the receiver's policies allowed it")                                   \
    X(kPolicyDefaultDenyEgress, "policy_default_deny_egress",                                    \
      "no egress rule of the sender's policies allowed it")                                      \
    X(kEndpointToHostDrop, "endpoint_to_host_drop",                                              \
      "pod traffic to the node (defaultEndpointToHostAction Drop)")                              \
    X(kPolicyFragment, "policy_fragment", "later fragment where policy applies")                 \
    X(kPolicyIcmpErrorNoFlow, "policy_icmp_error_no_flow",                                       \
      "ICMP error where policy applies, about no allowed flow")                                  \
    X(kGsoBadFrame, "gso_bad_frame",                                                             \
      "offload frame (TSO / partial checksum) whose headers do not match its flags")             \
    X(kGsoNoMbuf, "gso_no_mbuf", "no mbuf for a software segment")                               \
    X(kTunBadVnetHdr, "tun_bad_vnet_hdr", "tun frame with a virtio-net header we cannot honour") \
    X(kTunRxTooBig, "tun_rx_too_big", "tun frame longer than a 64 KB GSO frame")                 \
    X(kTunTxError, "tun_tx_error", "tun device refused a frame (write failed)")

enum class DropReason : uint16_t {
#define FWD_DROP_ENUM(name, str, desc) name,
    FWD_DROP_REASONS(FWD_DROP_ENUM)
#undef FWD_DROP_ENUM
        kCount
};

inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kCount);

struct DropReasonInfo {
    std::string_view name;
    std::string_view description;
};

inline constexpr DropReasonInfo kDropReasonInfo[kDropReasonCount] = {
#define FWD_DROP_INFO(name, str, desc) {str, desc},
    FWD_DROP_REASONS(FWD_DROP_INFO)
#undef FWD_DROP_INFO
};

constexpr std::string_view drop_reason_name(DropReason r) {
    return kDropReasonInfo[static_cast<size_t>(r)].name;
}

}  // namespace fwd::dp
