// Big-endian integer types with no implicit conversion to or from host order.
// A value read from a packet header stays a Be16/Be32 until code asks for
// host order explicitly, so a missing byte swap is a compile error.
#pragma once

#include <bit>
#include <cstdint>

namespace fwd::net {

template <typename T>
class BigEndian {
  public:
    constexpr BigEndian() = default;
    static constexpr BigEndian from_host(T v) { return BigEndian(swap(v)); }
    static constexpr BigEndian from_raw(T raw) { return BigEndian(raw); }
    constexpr T host() const { return swap(raw_); }
    constexpr T raw() const { return raw_; }
    constexpr bool operator==(const BigEndian &) const = default;

  private:
    constexpr explicit BigEndian(T raw) : raw_(raw) {}
    static constexpr T swap(T v) {
        if constexpr (std::endian::native == std::endian::big) {
            return v;
        } else if constexpr (sizeof(T) == 2) {
            return static_cast<T>(__builtin_bswap16(v));
        } else if constexpr (sizeof(T) == 4) {
            return static_cast<T>(__builtin_bswap32(v));
        } else {
            return static_cast<T>(__builtin_bswap64(v));
        }
    }
    T raw_ = 0;
};

using Be16 = BigEndian<uint16_t>;
using Be32 = BigEndian<uint32_t>;
using Be64 = BigEndian<uint64_t>;

static_assert(sizeof(Be16) == 2 && sizeof(Be32) == 4 && sizeof(Be64) == 8);

}  // namespace fwd::net
