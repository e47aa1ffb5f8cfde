// CRC-32 (IEEE 802.3, reflected 0xEDB88320), as zlib computes it; guards
// journal records and snapshots against torn or corrupted bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace fwd::ipam::detail {

inline uint32_t crc32(const void *data, std::size_t len, uint32_t crc = 0) {
    static const std::array<uint32_t, 256> kTable = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    const auto *p = static_cast<const unsigned char *>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < len; ++i)
        crc = kTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

}  // namespace fwd::ipam::detail
