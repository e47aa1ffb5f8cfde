// ip4_input and route4: every IPv4 input that is dropped without an answer
// (RFC 1812 5.2.2 header checks, 5.3.7 martian addresses), one reason each.
// Drops that answer with ICMP are in test_icmp_error.cpp.
#include "drop_case.hpp"

namespace fwd::dp::test {
namespace {

// A UDP datagram from pod A; tests break one thing in it.
PacketBuilder pod_a_udp(uint32_t dst = kPodB4, size_t payload = 18) {
    return std::move(from_pod_a().ip4(kPodA4, dst).udp(40000, 53).payload(payload));
}

PacketBuilder pod_a_udp_from(uint32_t src) {
    return std::move(from_pod_a().ip4(src, kPodB4).udp(40000, 53).payload(18));
}

const DropCase kIp4Drops[] = {
    {"HeaderTruncated", Side::kPodA, [] { return pod_a_udp().truncate(14 + 19); },
     DropReason::kIp4Truncated},
    {"BadVersion", Side::kPodA, [] { return std::move(pod_a_udp().ip_version(5)); },
     DropReason::kIp4BadVersion},
    {"Ip6VersionUnderIp4Ethertype", Side::kPodA,
     [] { return std::move(pod_a_udp().ip_version(6)); }, DropReason::kIp4BadVersion},
    {"IhlBelowFive", Side::kPodA, [] { return std::move(pod_a_udp().ihl(4)); },
     DropReason::kIp4BadIhl},
    {"IhlZero", Side::kPodA, [] { return std::move(pod_a_udp().ihl(0)); }, DropReason::kIp4BadIhl},
    // 60 bytes of header announced, 20 + 8 + 4 in the frame.
    {"IhlBeyondTheFrame", Side::kPodA, [] { return std::move(pod_a_udp(kPodB4, 4).ihl(15)); },
     DropReason::kIp4Truncated},
    {"BadChecksum", Side::kPodA, [] { return std::move(pod_a_udp().bad_ip_checksum()); },
     DropReason::kIp4BadChecksum},
    {"BadChecksumWithOptions", Side::kPodA,
     [] {
         return std::move(pod_a_udp().ip4_options({0x01, 0x01, 0x01, 0x01}).bad_ip_checksum());
     },
     DropReason::kIp4BadChecksum},
    {"TotalLengthBelowIhl", Side::kPodA, [] { return std::move(pod_a_udp().total_length(19)); },
     DropReason::kIp4BadLength},
    {"TotalLengthBelowIhlWithOptions", Side::kPodA,
     [] {
         return std::move(pod_a_udp().ip4_options({0x01, 0x01, 0x01, 0x01}).total_length(20));
     },
     DropReason::kIp4BadLength},
    {"TotalLengthBeyondTheFrame", Side::kPodA,
     [] { return std::move(pod_a_udp().total_length(20 + 8 + 18 + 1)); },
     DropReason::kIp4LengthExceedsFrame},
    {"FrameCutShort", Side::kPodA, [] { return pod_a_udp(kPodB4, 100).truncate(14 + 60); },
     DropReason::kIp4LengthExceedsFrame},
    {"SourceLoopback", Side::kPodA, [] { return pod_a_udp_from(ip4("127.0.0.1")); },
     DropReason::kIp4BadSource},
    {"SourceMulticast", Side::kPodA, [] { return pod_a_udp_from(ip4("224.1.2.3")); },
     DropReason::kIp4BadSource},
    {"SourceBroadcast", Side::kPodA, [] { return pod_a_udp_from(ip4("255.255.255.255")); },
     DropReason::kIp4BadSource},
    {"SourceClassE", Side::kPodA, [] { return pod_a_udp_from(ip4("240.0.0.1")); },
     DropReason::kIp4BadSource},
    {"DestLoopback", Side::kPodA, [] { return pod_a_udp(ip4("127.0.0.1")); },
     DropReason::kIp4MartianDest},
    {"DestZeroNet", Side::kPodA, [] { return pod_a_udp(ip4("0.1.2.3")); },
     DropReason::kIp4MartianDest},
    {"DestMulticast", Side::kPodA, [] { return pod_a_udp(ip4("224.0.0.251")); },
     DropReason::kIp4Multicast},
    {"DestBroadcast", Side::kPodA,
     [] {
         return std::move(PacketBuilder()
                              .eth(kPodAMac, kBroadcastMac)
                              .ip4(kPodA4, ip4("255.255.255.255"))
                              .udp(68, 67)
                              .payload(30));
     },
     DropReason::kIp4Multicast},
    // Pod B's MTU is 1450: one byte more, no DF, and we do not fragment.
    {"TooBigWithoutDf", Side::kPodA, [] { return pod_a_udp(kPodB4, kPodBMtu - 28 + 1); },
     DropReason::kIp4MtuExceeded},
    {"BlackholeRoute", Side::kPodA, [] { return pod_a_udp(kBlackhole4); },
     DropReason::kRouteBlackhole},
    {"BlackholeRouteFromUplink", Side::kUplink,
     [] { return std::move(from_uplink().ip4(kVia4, kBlackhole4).tcp(1234, 80)); },
     DropReason::kRouteBlackhole},
};
INSTANTIATE_TEST_SUITE_P(Ip4, DropTest, ::testing::ValuesIn(kIp4Drops), drop_case_name);

}  // namespace
}  // namespace fwd::dp::test
