// Addresses and prefixes for IPv4 and IPv6, and MAC addresses.
// Parsing and formatting are for control code only (they allocate); the
// packet path uses the raw accessors.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "fwd/net/endian.hpp"

namespace fwd::net {

enum class Family : uint8_t { kIp4 = 4, kIp6 = 6 };

class Ip4Addr {
  public:
    static constexpr int kBits = 32;
    constexpr Ip4Addr() = default;
    static constexpr Ip4Addr from_host(uint32_t v) { return Ip4Addr(v); }
    static constexpr Ip4Addr from_be(Be32 v) { return Ip4Addr(v.host()); }
    static std::optional<Ip4Addr> parse(std::string_view s);
    constexpr uint32_t host() const { return v_; }
    constexpr Be32 be() const { return Be32::from_host(v_); }
    std::string str() const;
    constexpr auto operator<=>(const Ip4Addr &) const = default;
    // Address with the low (32 - len) bits cleared.
    constexpr Ip4Addr masked(int len) const {
        return Ip4Addr(len <= 0 ? 0 : len >= 32 ? v_ : v_ & ~((1u << (32 - len)) - 1));
    }

  private:
    constexpr explicit Ip4Addr(uint32_t v) : v_(v) {}
    uint32_t v_ = 0;  // host byte order
};

class Ip6Addr {
  public:
    static constexpr int kBits = 128;
    constexpr Ip6Addr() = default;
    static Ip6Addr from_bytes(const uint8_t *b) {
        Ip6Addr a;
        std::memcpy(a.b_.data(), b, 16);
        return a;
    }
    static std::optional<Ip6Addr> parse(std::string_view s);
    const std::array<uint8_t, 16> &bytes() const { return b_; }
    const uint8_t *data() const { return b_.data(); }
    std::string str() const;
    auto operator<=>(const Ip6Addr &) const = default;
    Ip6Addr masked(int len) const;
    bool is_link_local() const { return b_[0] == 0xfe && (b_[1] & 0xc0) == 0x80; }
    bool is_multicast() const { return b_[0] == 0xff; }

  private:
    std::array<uint8_t, 16> b_{};  // network byte order
};

// Either family; what control-plane APIs pass around.
class IpAddr {
  public:
    IpAddr() = default;
    IpAddr(Ip4Addr a) : v_(a) {}
    IpAddr(Ip6Addr a) : v_(a) {}
    static std::optional<IpAddr> parse(std::string_view s);
    Family family() const {
        return std::holds_alternative<Ip4Addr>(v_) ? Family::kIp4 : Family::kIp6;
    }
    const Ip4Addr &v4() const { return std::get<Ip4Addr>(v_); }
    const Ip6Addr &v6() const { return std::get<Ip6Addr>(v_); }
    std::string str() const;
    auto operator<=>(const IpAddr &) const = default;

  private:
    std::variant<Ip4Addr, Ip6Addr> v_;
};

template <typename A>
struct Prefix {
    A addr{};
    uint8_t len = 0;
    // Accepts "a/len" or a bare address (full length). The address must have
    // no bits set beyond len unless allow_host_bits.
    static std::optional<Prefix> parse(std::string_view s, bool allow_host_bits = false);
    std::string str() const;
    bool contains(const A &a) const { return a.masked(len) == addr; }
    bool contains(const Prefix &p) const { return p.len >= len && contains(p.addr); }
    auto operator<=>(const Prefix &) const = default;
};
using Prefix4 = Prefix<Ip4Addr>;
using Prefix6 = Prefix<Ip6Addr>;
// Either family (routes, pools).
using AnyPrefix = std::variant<Prefix4, Prefix6>;
inline std::string str(const AnyPrefix &p) {
    return std::visit([](const auto &x) { return x.str(); }, p);
}

class MacAddr {
  public:
    constexpr MacAddr() = default;
    constexpr explicit MacAddr(std::array<uint8_t, 6> b) : b_(b) {}
    static MacAddr from_bytes(const uint8_t *b) {
        MacAddr m;
        std::memcpy(m.b_.data(), b, 6);
        return m;
    }
    static std::optional<MacAddr> parse(std::string_view s);
    const std::array<uint8_t, 6> &bytes() const { return b_; }
    const uint8_t *data() const { return b_.data(); }
    std::string str() const;
    bool is_zero() const { return b_ == std::array<uint8_t, 6>{}; }
    bool is_multicast() const { return (b_[0] & 1) != 0; }
    auto operator<=>(const MacAddr &) const = default;

  private:
    std::array<uint8_t, 6> b_{};
};

// Calico's host side of every pod link.
inline constexpr MacAddr kCalicoGatewayMac{{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}};
inline constexpr Ip4Addr kCalicoGateway4 = Ip4Addr::from_host(0xa9fe0101);  // 169.254.1.1
// fe80::ecee:eeff:feee:eeee, the EUI-64 link-local address of kCalicoGatewayMac.
Ip6Addr calico_gateway6();

}  // namespace fwd::net

template <>
struct std::hash<fwd::net::Ip4Addr> {
    size_t operator()(const fwd::net::Ip4Addr &a) const noexcept { return a.host(); }
};
template <>
struct std::hash<fwd::net::Ip6Addr> {
    size_t operator()(const fwd::net::Ip6Addr &a) const noexcept {
        uint64_t x, y;
        std::memcpy(&x, a.data(), 8);
        std::memcpy(&y, a.data() + 8, 8);
        return std::hash<uint64_t>()(x ^ (y * 0x9e3779b97f4a7c15ull));
    }
};

namespace fwd::net {
// An address on an interface with its subnet length (10.10.10.10/24).
template <typename A>
struct IfAddr {
    A addr{};
    uint8_t len = A::kBits;
    static std::optional<IfAddr> parse(std::string_view s) {
        auto p = Prefix<A>::parse(s, true);
        auto slash = s.find('/');
        auto a = A::parse(s.substr(0, slash));
        if (!p || !a) {
            return std::nullopt;
        }
        return IfAddr{*a, p->len};
    }
    Prefix<A> subnet() const { return Prefix<A>{addr.masked(len), len}; }
    std::string str() const { return addr.str() + "/" + std::to_string(len); }
    auto operator<=>(const IfAddr &) const = default;
};
using IfAddr4 = IfAddr<Ip4Addr>;
using IfAddr6 = IfAddr<Ip6Addr>;
}  // namespace fwd::net
