// ip6_input and route6: every IPv6 input that is dropped without an answer
// (RFC 8200 header and extension header checks, RFC 4291 address scopes),
// one reason each. Drops that answer with ICMPv6 are in test_icmp_error.cpp.
#include "drop_case.hpp"

namespace fwd::dp::test {
namespace {

PacketBuilder pod_a_udp6(const Ip6 &dst = kPodB6, size_t payload = 18) {
    return std::move(from_pod_a().ip6(kPodA6, dst).udp(40000, 53).payload(payload));
}

PacketBuilder pod_a_udp6_from(const Ip6 &src) {
    return std::move(from_pod_a().ip6(src, kPodB6).udp(40000, 53).payload(18));
}

PacketBuilder with_dest_opts(PacketBuilder b, int n) {
    for (int i = 0; i < n; i++) {
        b.dest_opts();
    }
    return b;
}

const DropCase kIp6Drops[] = {
    {"HeaderTruncated", Side::kPodA, [] { return pod_a_udp6().truncate(14 + 39); },
     DropReason::kIp6Truncated},
    {"BadVersion", Side::kPodA, [] { return std::move(pod_a_udp6().ip_version(4)); },
     DropReason::kIp6BadVersion},
    {"PayloadLengthBeyondTheFrame", Side::kPodA,
     [] { return std::move(pod_a_udp6().payload_length(8 + 18 + 1)); },
     DropReason::kIp6LengthExceedsFrame},
    {"FrameCutShort", Side::kPodA, [] { return pod_a_udp6(kPodB6, 100).truncate(14 + 40 + 50); },
     DropReason::kIp6LengthExceedsFrame},
    {"HopByHopNotFirst", Side::kPodA,
     [] { return std::move(pod_a_udp6().dest_opts().hop_by_hop()); }, DropReason::kIp6BadExtHeader},
    {"HopByHopTwice", Side::kPodA, [] { return std::move(pod_a_udp6().hop_by_hop().hop_by_hop()); },
     DropReason::kIp6BadExtHeader},
    {"NineExtensionHeaders", Side::kPodA, [] { return with_dest_opts(pod_a_udp6(), 9); },
     DropReason::kIp6TooManyExtHeaders},
    // A hop-by-hop header that says 16 bytes where the packet has 8.
    {"ExtHeaderLongerThanThePacket", Side::kPodA,
     [] {
         return std::move(
             from_pod_a().ip6(kPodA6, kPodB6).ext_raw(kExtHopByHop, {0, 1, 1, 4, 0, 0, 0, 0}));
     },
     DropReason::kIp6Truncated},
    // The header announces a hop-by-hop header; the packet ends there.
    {"ExtHeaderMissing", Side::kPodA,
     [] {
         return std::move(
             from_pod_a().ip6(kPodA6, kPodB6).next_proto(kExtHopByHop).payload_length(0));
     },
     DropReason::kIp6Truncated},
    {"FragmentHeaderCutShort", Side::kPodA,
     [] {
         return std::move(from_pod_a().ip6(kPodA6, kPodB6).ext_raw(kExtFragment, {0, 0, 0, 0}));
     },
     DropReason::kIp6Truncated},
    {"SourceMulticast", Side::kPodA, [] { return pod_a_udp6_from(ip6("ff02::1")); },
     DropReason::kIp6BadSource},
    {"SourceLoopback", Side::kPodA, [] { return pod_a_udp6_from(ip6("::1")); },
     DropReason::kIp6BadSource},
    // RFC 4291 2.5.6: a link-local source never leaves the link.
    {"SourceLinkLocalToBeForwarded", Side::kPodA, [] { return pod_a_udp6_from(kPodALl6); },
     DropReason::kIp6BadSource},
    {"DestUnspecified", Side::kPodA, [] { return pod_a_udp6(ip6("::")); },
     DropReason::kIp6MartianDest},
    {"DestLoopback", Side::kPodA, [] { return pod_a_udp6(ip6("::1")); },
     DropReason::kIp6MartianDest},
    {"DestLinkLocalNotOurs", Side::kPodA, [] { return pod_a_udp6(ip6("fe80::1234")); },
     DropReason::kIp6LinkLocalDest},
    {"DestLinkLocalNotOursFromLinkLocal", Side::kPodA,
     [] { return std::move(from_pod_a().ip6(kPodALl6, ip6("fe80::1234")).echo_request()); },
     DropReason::kIp6LinkLocalDest},
    {"UdpToAllNodes", Side::kPodA,
     [] {
         return std::move(PacketBuilder()
                              .eth(kPodAMac, kAllNodesMac)
                              .ip6(kPodALl6, kAllNodes6)
                              .udp(5353, 5353)
                              .payload(20));
     },
     DropReason::kIp6Multicast},
    {"IcmpToSiteScopeMulticast", Side::kPodA,
     [] {
         return std::move(PacketBuilder()
                              .eth(kPodAMac, mac("33:33:00:00:00:02"))
                              .ip6(kPodA6, ip6("ff05::2"))
                              .echo_request());
     },
     DropReason::kIp6Multicast},
    {"BlackholeRoute", Side::kPodA, [] { return pod_a_udp6(kBlackhole6); },
     DropReason::kRouteBlackhole},
    {"BlackholeRouteFromUplink", Side::kUplink,
     [] { return std::move(from_uplink().ip6(kVia6, kBlackhole6).tcp(1234, 80)); },
     DropReason::kRouteBlackhole},
};
INSTANTIATE_TEST_SUITE_P(Ip6, DropTest, ::testing::ValuesIn(kIp6Drops), drop_case_name);

}  // namespace
}  // namespace fwd::dp::test
