// fuzz_packet's node (fuzz_packet.cpp): the addresses beyond the datapath lab's (lab.hpp) and
// the port numbering of its input, shared with the seed corpus's builder (fuzz_packet_seeds.cpp).
#pragma once

#include <cstdint>

#include "fwd/dp/overlay.hpp"
#include "lab.hpp"

namespace fwd::dp::test {

// The input's port byte, low 3 bits modulo kFuzzPortKinds.
enum FuzzPort : uint8_t { kFuzzPodA, kFuzzPodB, kFuzzUplink, kFuzzVhost, kFuzzTun };
inline constexpr uint8_t kFuzzPortKinds = 5;

inline const uint32_t kFuzzTun4 = ip4("10.65.0.20");
inline const Ip6 kFuzzTun6 = ip6("fd00:65::20");
inline const Mac kFuzzTunMac = {0x02, 0x00, 0x0a, 0x41, 0x00, 0x20};
inline const uint32_t kFuzzVhost4 = ip4("10.65.0.30");
inline const Ip6 kFuzzVhost6 = ip6("fd00:65::30");
inline const Mac kFuzzVhostMac = {0x02, 0x00, 0x0a, 0x41, 0x00, 0x30};
// VXLAN peer (both families), IP-in-IP peer; remote blocks 10.65.2.0/26 and fd00:65:2::/122
// over VXLAN, 10.65.3.0/26 over IP-in-IP.
inline const uint32_t kFuzzRemote4 = ip4("192.168.50.20");
inline const Ip6 kFuzzRemote6 = ip6("fd00:50::20");
inline const uint32_t kFuzzIpipPeer4 = ip4("192.168.50.21");
inline const Mac kFuzzVtepMac4 = {0x66, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e};
inline const Mac kFuzzVtepMac6 = {0x66, 0x0a, 0x0b, 0x0c, 0x0d, 0x0f};
inline const Mac kFuzzRemoteVtepMac = {0x66, 0x01, 0x02, 0x03, 0x04, 0x05};

// Writes the seed corpus into dir; 0 on success.
int write_seeds(const char *dir);

}  // namespace fwd::dp::test
