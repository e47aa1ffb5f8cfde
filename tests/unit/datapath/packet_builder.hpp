// A packet builder and a small parser for the datapath component tests.
//
// The builder describes a frame layer by layer (Ethernet, optional VLAN tag,
// ARP or IPv4 / IPv6 with options and extension headers, ICMP / ICMPv6 / UDP
// / TCP, payload) and serialises it with correct lengths and checksums,
// unless a test asks for a broken field. Checksums are computed here, with
// a big-endian word sum written for the tests, never with the datapath's or
// DPDK's helpers, so a shared mistake cannot hide.
//
// The parser reads what the datapath sent back, for checks.
#pragma once

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace fwd::dp::test {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;
using Ip6 = std::array<uint8_t, 16>;

// Literals for tests; abort on a malformed literal. constexpr, so the lab's address constants
// (inline variables in lab.hpp) are constant-initialized: a test file's own constants made from
// them are then never read before they are set, whatever order a compiler runs dynamic
// initializers in (clang 14 ran a file's before the inline variables it uses).
namespace literal {
[[noreturn]] void bad(std::string_view what, std::string_view s);

constexpr int hex_digit(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

// Dotted quad, each part 0-255 without a leading zero (as inet_pton).
constexpr bool parse_ip4(std::string_view s, uint32_t &out) {
    uint32_t v = 0;
    int parts = 0;
    size_t i = 0;
    while (parts < 4) {
        size_t j = i;
        uint32_t part = 0;
        while (j < s.size() && s[j] >= '0' && s[j] <= '9' && j - i < 3) {
            part = part * 10 + static_cast<uint32_t>(s[j] - '0');
            ++j;
        }
        if (j == i || part > 255 || (j - i > 1 && s[i] == '0')) {
            return false;
        }
        v = v << 8 | part;
        ++parts;
        if (parts < 4) {
            if (j >= s.size() || s[j] != '.') {
                return false;
            }
            ++j;
        } else if (j != s.size()) {
            return false;
        }
        i = j;
    }
    out = v;
    return true;
}

// RFC 4291 text: up to 8 hex groups, one "::", a dotted quad as the last 32 bits.
constexpr bool parse_ip6(std::string_view s, std::array<uint8_t, 16> &out) {
    uint16_t groups[2][8]{};
    int n[2] = {0, 0};
    int side = 0;  // 1 after the "::"
    auto push = [&](uint16_t g) {
        if (n[0] + n[1] >= 8) {
            return false;
        }
        groups[side][n[side]++] = g;
        return true;
    };
    size_t i = 0;
    if (s.substr(0, 2) == "::") {
        side = 1;
        i = 2;
    } else if (s.empty() || s[0] == ':') {
        return false;
    }
    while (i < s.size()) {
        size_t j = i;
        while (j < s.size() && s[j] != ':') {
            ++j;
        }
        const std::string_view part = s.substr(i, j - i);
        if (part.find('.') != std::string_view::npos) {
            uint32_t v4 = 0;
            if (j != s.size() || !parse_ip4(part, v4) || !push(static_cast<uint16_t>(v4 >> 16)) ||
                !push(static_cast<uint16_t>(v4 & 0xffff))) {
                return false;
            }
            break;
        }
        if (part.empty() || part.size() > 4) {
            return false;
        }
        uint16_t g = 0;
        for (char c : part) {
            const int d = hex_digit(c);
            if (d < 0) {
                return false;
            }
            g = static_cast<uint16_t>(g << 4 | d);
        }
        if (!push(g)) {
            return false;
        }
        if (j == s.size()) {
            break;
        }
        if (j + 1 < s.size() && s[j + 1] == ':') {
            if (side == 1) {
                return false;  // a second "::"
            }
            side = 1;
            i = j + 2;
        } else {
            i = j + 1;
            if (i == s.size()) {
                return false;  // a trailing single ':'
            }
        }
    }
    if (side == 0 ? n[0] != 8 : n[0] + n[1] > 7) {
        return false;
    }
    std::array<uint8_t, 16> a{};
    for (int k = 0; k < n[0]; ++k) {
        a[2 * k] = static_cast<uint8_t>(groups[0][k] >> 8);
        a[2 * k + 1] = static_cast<uint8_t>(groups[0][k]);
    }
    for (int k = 0; k < n[1]; ++k) {
        const int at = 8 - n[1] + k;
        a[2 * at] = static_cast<uint8_t>(groups[1][k] >> 8);
        a[2 * at + 1] = static_cast<uint8_t>(groups[1][k]);
    }
    out = a;
    return true;
}

// Six hex bytes of one or two digits separated by ':'.
constexpr bool parse_mac(std::string_view s, std::array<uint8_t, 6> &out) {
    std::array<uint8_t, 6> m{};
    size_t i = 0;
    for (int k = 0; k < 6; ++k) {
        int v = 0, digits = 0;
        while (i < s.size() && digits < 2 && hex_digit(s[i]) >= 0) {
            v = v * 16 + hex_digit(s[i++]);
            ++digits;
        }
        if (digits == 0 || (k < 5 && (i >= s.size() || s[i++] != ':'))) {
            return false;
        }
        m[k] = static_cast<uint8_t>(v);
    }
    if (i != s.size()) {
        return false;
    }
    out = m;
    return true;
}
}  // namespace literal

constexpr Mac mac(std::string_view s) {
    Mac m{};
    if (!literal::parse_mac(s, m)) {
        literal::bad("MAC", s);
    }
    return m;
}
constexpr uint32_t ip4(std::string_view s) {  // host byte order
    uint32_t v = 0;
    if (!literal::parse_ip4(s, v)) {
        literal::bad("IPv4", s);
    }
    return v;
}
constexpr Ip6 ip6(std::string_view s) {
    Ip6 a{};
    if (!literal::parse_ip6(s, a)) {
        literal::bad("IPv6", s);
    }
    return a;
}

// Ones'-complement sum of big-endian 16-bit words (RFC 1071), not folded.
uint32_t sum16(std::span<const uint8_t> b, uint32_t acc = 0);
uint16_t fold16(uint32_t acc);
// The Internet checksum of b: ~fold(sum).
uint16_t inet_checksum(std::span<const uint8_t> b, uint32_t acc = 0);
// Sum of the IPv6 pseudo-header (RFC 8200 8.1).
uint32_t ip6_pseudo_sum(const Ip6 &src, const Ip6 &dst, uint32_t len, uint8_t next);

inline constexpr uint16_t kTypeIp4 = 0x0800;
inline constexpr uint16_t kTypeArp = 0x0806;
inline constexpr uint16_t kTypeIp6 = 0x86dd;
inline constexpr uint16_t kTypeVlan = 0x8100;

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIcmp6 = 58;
inline constexpr uint8_t kExtHopByHop = 0;
inline constexpr uint8_t kExtRouting = 43;
inline constexpr uint8_t kExtFragment = 44;
inline constexpr uint8_t kExtDestOpts = 60;

class PacketBuilder {
  public:
    // --- Ethernet ---
    PacketBuilder &eth(const Mac &src, const Mac &dst);
    PacketBuilder &vlan(uint16_t tci);
    PacketBuilder &ethertype(uint16_t type);  // overrides the one derived from L3

    // --- ARP (Ethernet / IPv4) ---
    PacketBuilder &arp(uint16_t op, const Mac &sha, uint32_t sip, const Mac &tha, uint32_t tip);
    PacketBuilder &arp_hw_type(uint16_t t);

    // --- IPv4 ---
    PacketBuilder &ip4(uint32_t src, uint32_t dst);
    PacketBuilder &ttl(uint8_t v);
    PacketBuilder &tos(uint8_t v);
    PacketBuilder &ip_id(uint16_t v);
    PacketBuilder &df();
    PacketBuilder &mf();
    PacketBuilder &frag_offset(uint16_t units8);    // in 8-byte units
    PacketBuilder &ip4_options(const Bytes &opts);  // padded to 4 bytes; IHL follows
    PacketBuilder &ihl(uint8_t words);              // overrides the computed IHL
    PacketBuilder &total_length(uint16_t v);        // overrides the computed length
    PacketBuilder &bad_ip_checksum();

    // --- IPv6 ---
    PacketBuilder &ip6(const Ip6 &src, const Ip6 &dst);
    PacketBuilder &hop_limit(uint8_t v);
    PacketBuilder &payload_length(uint16_t v);  // overrides the computed length
    // Extension headers, in the order called. len_bytes: total header length,
    // a multiple of 8 (padded with PadN / zeros).
    PacketBuilder &hop_by_hop(uint16_t len_bytes = 8);
    PacketBuilder &dest_opts(uint16_t len_bytes = 8);
    PacketBuilder &routing(uint8_t segments_left = 0, uint16_t len_bytes = 8);
    PacketBuilder &fragment(uint16_t offset_units8, bool more, uint32_t id = 0x1234);
    // A raw extension header (the next-header byte is filled in).
    PacketBuilder &ext_raw(uint8_t type, const Bytes &bytes);

    // Either family: IP version field override (4 bits), and the IPv4
    // protocol / last IPv6 next header, overriding the one derived from L4.
    PacketBuilder &ip_version(uint8_t v);
    PacketBuilder &next_proto(uint8_t p);

    // --- L4 (follows the IP family chosen above) ---
    PacketBuilder &echo_request(uint16_t id = 0x4242, uint16_t seq = 1);
    PacketBuilder &icmp(uint8_t type, uint8_t code, uint32_t rest = 0);
    // Neighbor Discovery (ICMPv6).
    PacketBuilder &ns(const Ip6 &target);
    PacketBuilder &na(const Ip6 &target, uint32_t flags);
    PacketBuilder &rs();
    PacketBuilder &nd_option_ll(uint8_t type, const Mac &m);  // 1: source, 2: target LL address
    PacketBuilder &udp(uint16_t sport, uint16_t dport);
    PacketBuilder &tcp(uint16_t sport, uint16_t dport, uint8_t flags = 0x02);
    // After tcp(): the sequence and acknowledgment numbers (default 0x01020304, 0).
    PacketBuilder &tcp_seq(uint32_t seq, uint32_t ack);
    PacketBuilder &bad_l4_checksum();

    // --- payload and framing ---
    PacketBuilder &payload(size_t n);  // n pattern bytes
    PacketBuilder &payload(const Bytes &b);
    PacketBuilder &pad_to(size_t frame_len);  // Ethernet padding after the IP packet
    PacketBuilder &truncate(size_t frame_len);

    Bytes build() const;
    // A single-segment mbuf from pool holding build(), with mbuf->port = port.
    rte_mbuf *mbuf(rte_mempool *pool, uint16_t port) const;

  private:
    enum class L3 : uint8_t { kNone, kArp, kIp4, kIp6 };
    enum class L4 : uint8_t { kNone, kIcmp, kUdp, kTcp };
    struct Ext {
        uint8_t type;
        Bytes bytes;  // full header; byte 0 (next header) is filled at build
    };

    Bytes build_l4() const;
    Bytes build_arp() const;
    Bytes build_ip4() const;
    Bytes build_ip6() const;
    uint8_t l4_proto() const;

    Mac eth_src_{}, eth_dst_{};
    std::optional<uint16_t> vlan_;
    std::optional<uint16_t> ethertype_;

    L3 l3_ = L3::kNone;
    // ARP
    uint16_t arp_op_ = 1, arp_hw_ = 1;
    Mac arp_sha_{}, arp_tha_{};
    uint32_t arp_sip_ = 0, arp_tip_ = 0;
    // IPv4
    uint32_t src4_ = 0, dst4_ = 0;
    uint8_t ttl_ = 64, tos_ = 0;
    uint16_t id_ = 0x1000;
    bool df_ = false, mf_ = false;
    uint16_t frag_off_ = 0;
    Bytes opts4_;
    std::optional<uint8_t> ihl_;
    std::optional<uint16_t> total_length_;
    bool bad_ip_csum_ = false;
    std::optional<uint8_t> proto_;
    // IPv6
    Ip6 src6_{}, dst6_{};
    uint8_t hop_limit_ = 64;
    std::optional<uint16_t> payload_length_;
    std::vector<Ext> ext_;
    std::optional<uint8_t> version_;
    // L4
    L4 l4_ = L4::kNone;
    Bytes l4_hdr_;  // header with a zero checksum, plus fixed body (NS target...)
    bool bad_l4_csum_ = false;
    Bytes payload_;
    size_t pad_to_ = 0;
    std::optional<size_t> truncate_;
};

// --- parsing what the datapath sent ---

struct ParsedEth {
    Mac dst{}, src{};
    std::optional<uint16_t> vlan_tci;
    uint16_t type = 0;
    size_t l3_off = 0;
};

struct ParsedArp {
    uint16_t hw = 0, proto = 0, op = 0;
    uint8_t hlen = 0, plen = 0;
    Mac sha{}, tha{};
    uint32_t sip = 0, tip = 0;
};

struct ParsedIp4 {
    uint8_t version = 0, ihl = 0, tos = 0, ttl = 0, proto = 0;
    uint16_t total_length = 0, id = 0, frag = 0, checksum = 0;
    uint32_t src = 0, dst = 0;
    bool header_checksum_ok = false;
};

struct ParsedIp6 {
    uint8_t version = 0, hop_limit = 0, next = 0;
    uint16_t payload_length = 0;
    Ip6 src{}, dst{};
    std::vector<uint8_t> ext_types;  // extension headers in order
};

struct Parsed {
    Bytes frame;
    ParsedEth eth;
    std::optional<ParsedArp> arp;
    std::optional<ParsedIp4> ip4;
    std::optional<ParsedIp6> ip6;
    size_t l4_off = 0;  // valid with ip4 / ip6
    uint8_t l4_proto = 0;
    // The IP packet (header onwards) and the upper layer, within the frame.
    std::span<const uint8_t> l3() const;
    std::span<const uint8_t> l4() const;
    // Checksum of the upper layer is valid (ICMP: plain; ICMPv6 / UDP / TCP:
    // with the pseudo-header).
    bool l4_checksum_ok() const;
};

// Parses an Ethernet frame; fields beyond the frame are left zero.
Parsed parse(const Bytes &frame);

}  // namespace fwd::dp::test
