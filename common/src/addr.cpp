#include "fwd/net/addr.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>

namespace fwd::net {

std::optional<Ip4Addr> Ip4Addr::parse(std::string_view s) {
    if (s.size() >= INET_ADDRSTRLEN) {
        return std::nullopt;
    }
    char buf[INET_ADDRSTRLEN] = {};
    std::memcpy(buf, s.data(), s.size());
    in_addr a{};
    if (inet_pton(AF_INET, buf, &a) != 1) {
        return std::nullopt;
    }
    return Ip4Addr::from_be(Be32::from_raw(a.s_addr));
}

std::string Ip4Addr::str() const {
    char buf[INET_ADDRSTRLEN];
    in_addr a{be().raw()};
    inet_ntop(AF_INET, &a, buf, sizeof(buf));
    return buf;
}

std::optional<Ip6Addr> Ip6Addr::parse(std::string_view s) {
    if (s.size() >= INET6_ADDRSTRLEN) {
        return std::nullopt;
    }
    char buf[INET6_ADDRSTRLEN] = {};
    std::memcpy(buf, s.data(), s.size());
    Ip6Addr r;
    if (inet_pton(AF_INET6, buf, r.b_.data()) != 1) {
        return std::nullopt;
    }
    return r;
}

std::string Ip6Addr::str() const {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, b_.data(), buf, sizeof(buf));
    return buf;
}

Ip6Addr Ip6Addr::masked(int len) const {
    Ip6Addr r = *this;
    for (int i = 0; i < 16; i++) {
        int bits = len - i * 8;
        uint8_t m = bits >= 8 ? 0xff : bits <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
        r.b_[i] &= m;
    }
    return r;
}

std::optional<IpAddr> IpAddr::parse(std::string_view s) {
    if (s.find(':') != std::string_view::npos) {
        if (auto a = Ip6Addr::parse(s)) {
            return IpAddr(*a);
        }
        return std::nullopt;
    }
    if (auto a = Ip4Addr::parse(s)) {
        return IpAddr(*a);
    }
    return std::nullopt;
}

std::string IpAddr::str() const {
    return std::visit([](const auto &a) { return a.str(); }, v_);
}

template <typename A>
std::optional<Prefix<A>> Prefix<A>::parse(std::string_view s, bool allow_host_bits) {
    auto slash = s.find('/');
    auto addr = A::parse(s.substr(0, slash));
    if (!addr) {
        return std::nullopt;
    }
    int len = A::kBits;
    if (slash != std::string_view::npos) {
        auto ls = s.substr(slash + 1);
        auto [p, ec] = std::from_chars(ls.data(), ls.data() + ls.size(), len);
        if (ec != std::errc() || p != ls.data() + ls.size() || ls.empty() || len < 0 ||
            len > A::kBits) {
            return std::nullopt;
        }
    }
    if (!allow_host_bits && addr->masked(len) != *addr) {
        return std::nullopt;
    }
    return Prefix<A>{addr->masked(len), static_cast<uint8_t>(len)};
}

template <typename A>
std::string Prefix<A>::str() const {
    return addr.str() + "/" + std::to_string(len);
}

template struct Prefix<Ip4Addr>;
template struct Prefix<Ip6Addr>;

std::optional<MacAddr> MacAddr::parse(std::string_view s) {
    if (s.size() != 17) {
        return std::nullopt;
    }
    MacAddr m;
    for (int i = 0; i < 6; i++) {
        auto part = s.substr(i * 3, 2);
        if (i < 5 && s[i * 3 + 2] != ':') {
            return std::nullopt;
        }
        auto [p, ec] = std::from_chars(part.data(), part.data() + 2, m.b_[i], 16);
        if (ec != std::errc() || p != part.data() + 2) {
            return std::nullopt;
        }
    }
    return m;
}

std::string MacAddr::str() const {
    char buf[18];
    std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", b_[0], b_[1], b_[2], b_[3],
                  b_[4], b_[5]);
    return buf;
}

Ip6Addr calico_gateway6() {
    static const Ip6Addr a = *Ip6Addr::parse("fe80::ecee:eeff:feee:eeee");
    return a;
}

}  // namespace fwd::net
