#include "packet_builder.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace fwd::dp::test {

void literal::bad(std::string_view what, std::string_view s) {
    std::fprintf(stderr, "packet_builder: bad %.*s literal '%.*s'\n", static_cast<int>(what.size()),
                 what.data(), static_cast<int>(s.size()), s.data());
    std::abort();
}

namespace {

void put16(Bytes &b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}

void put32(Bytes &b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v >> 16));
    put16(b, static_cast<uint16_t>(v));
}

void set16(Bytes &b, size_t off, uint16_t v) {
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
}

uint16_t get16(std::span<const uint8_t> b, size_t off) {
    return static_cast<uint16_t>((b[off] << 8) | b[off + 1]);
}

uint32_t get32(std::span<const uint8_t> b, size_t off) {
    return (uint32_t{get16(b, off)} << 16) | get16(b, off + 2);
}

void append(Bytes &b, std::span<const uint8_t> s) {
    b.insert(b.end(), s.begin(), s.end());
}

// An options header (hop-by-hop, destination) of len bytes, padded with
// Pad1 / PadN (RFC 8200 4.2).
Bytes options_header(uint16_t len) {
    if (len < 8 || len % 8 != 0) {
        std::fprintf(stderr, "packet_builder: extension header length %u\n", len);
        std::abort();
    }
    Bytes h(len, 0);
    h[1] = static_cast<uint8_t>(len / 8 - 1);
    size_t left = len - 2u;
    if (left == 1) {
        h[2] = 0;  // Pad1
    } else {
        h[2] = 1;  // PadN
        h[3] = static_cast<uint8_t>(left - 2);
    }
    return h;
}

uint32_t ip4_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint32_t len) {
    Bytes p;
    put32(p, src);
    put32(p, dst);
    p.push_back(0);
    p.push_back(proto);
    put16(p, static_cast<uint16_t>(len));
    return sum16(p);
}

}  // namespace

uint32_t sum16(std::span<const uint8_t> b, uint32_t acc) {
    size_t i = 0;
    for (; i + 1 < b.size(); i += 2) {
        acc += static_cast<uint32_t>((b[i] << 8) | b[i + 1]);
        acc = (acc & 0xffff) + (acc >> 16);  // keep the carry from overflowing
    }
    if (i < b.size()) {
        acc += static_cast<uint32_t>(b[i] << 8);
    }
    return acc;
}

uint16_t fold16(uint32_t acc) {
    while (acc >> 16) {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    return static_cast<uint16_t>(acc);
}

uint16_t inet_checksum(std::span<const uint8_t> b, uint32_t acc) {
    return static_cast<uint16_t>(~fold16(sum16(b, acc)));
}

uint32_t ip6_pseudo_sum(const Ip6 &src, const Ip6 &dst, uint32_t len, uint8_t next) {
    Bytes p;
    append(p, src);
    append(p, dst);
    put32(p, len);
    put32(p, next);
    return sum16(p);
}

// --- builder setters ---

PacketBuilder &PacketBuilder::eth(const Mac &src, const Mac &dst) {
    eth_src_ = src;
    eth_dst_ = dst;
    return *this;
}
PacketBuilder &PacketBuilder::vlan(uint16_t tci) {
    vlan_ = tci;
    return *this;
}
PacketBuilder &PacketBuilder::ethertype(uint16_t type) {
    ethertype_ = type;
    return *this;
}

PacketBuilder &PacketBuilder::arp(uint16_t op, const Mac &sha, uint32_t sip, const Mac &tha,
                                  uint32_t tip) {
    l3_ = L3::kArp;
    arp_op_ = op;
    arp_sha_ = sha;
    arp_sip_ = sip;
    arp_tha_ = tha;
    arp_tip_ = tip;
    return *this;
}
PacketBuilder &PacketBuilder::arp_hw_type(uint16_t t) {
    arp_hw_ = t;
    return *this;
}

PacketBuilder &PacketBuilder::ip4(uint32_t src, uint32_t dst) {
    l3_ = L3::kIp4;
    src4_ = src;
    dst4_ = dst;
    return *this;
}
PacketBuilder &PacketBuilder::ttl(uint8_t v) {
    ttl_ = v;
    return *this;
}
PacketBuilder &PacketBuilder::tos(uint8_t v) {
    tos_ = v;
    return *this;
}
PacketBuilder &PacketBuilder::ip_id(uint16_t v) {
    id_ = v;
    return *this;
}
PacketBuilder &PacketBuilder::df() {
    df_ = true;
    return *this;
}
PacketBuilder &PacketBuilder::mf() {
    mf_ = true;
    return *this;
}
PacketBuilder &PacketBuilder::frag_offset(uint16_t units8) {
    frag_off_ = units8;
    return *this;
}
PacketBuilder &PacketBuilder::ip4_options(const Bytes &opts) {
    opts4_ = opts;
    while (opts4_.size() % 4 != 0) {
        opts4_.push_back(0);  // end of option list
    }
    return *this;
}
PacketBuilder &PacketBuilder::ihl(uint8_t words) {
    ihl_ = words;
    return *this;
}
PacketBuilder &PacketBuilder::total_length(uint16_t v) {
    total_length_ = v;
    return *this;
}
PacketBuilder &PacketBuilder::bad_ip_checksum() {
    bad_ip_csum_ = true;
    return *this;
}
PacketBuilder &PacketBuilder::next_proto(uint8_t p) {
    proto_ = p;
    return *this;
}

PacketBuilder &PacketBuilder::ip6(const Ip6 &src, const Ip6 &dst) {
    l3_ = L3::kIp6;
    src6_ = src;
    dst6_ = dst;
    return *this;
}
PacketBuilder &PacketBuilder::hop_limit(uint8_t v) {
    hop_limit_ = v;
    return *this;
}
PacketBuilder &PacketBuilder::payload_length(uint16_t v) {
    payload_length_ = v;
    return *this;
}
PacketBuilder &PacketBuilder::hop_by_hop(uint16_t len_bytes) {
    ext_.push_back({kExtHopByHop, options_header(len_bytes)});
    return *this;
}
PacketBuilder &PacketBuilder::dest_opts(uint16_t len_bytes) {
    ext_.push_back({kExtDestOpts, options_header(len_bytes)});
    return *this;
}
PacketBuilder &PacketBuilder::routing(uint8_t segments_left, uint16_t len_bytes) {
    Bytes h(len_bytes, 0);
    h[1] = static_cast<uint8_t>(len_bytes / 8 - 1);
    h[2] = 253;  // routing type reserved for experiments (RFC 4727): never processed
    h[3] = segments_left;
    ext_.push_back({kExtRouting, h});
    return *this;
}
PacketBuilder &PacketBuilder::fragment(uint16_t offset_units8, bool more, uint32_t id) {
    Bytes h(8, 0);
    uint16_t offlg = static_cast<uint16_t>((offset_units8 << 3) | (more ? 1 : 0));
    set16(h, 2, offlg);
    h[4] = static_cast<uint8_t>(id >> 24);
    h[5] = static_cast<uint8_t>(id >> 16);
    h[6] = static_cast<uint8_t>(id >> 8);
    h[7] = static_cast<uint8_t>(id);
    ext_.push_back({kExtFragment, h});
    return *this;
}
PacketBuilder &PacketBuilder::ext_raw(uint8_t type, const Bytes &bytes) {
    ext_.push_back({type, bytes});
    return *this;
}
PacketBuilder &PacketBuilder::ip_version(uint8_t v) {
    version_ = v;
    return *this;
}

PacketBuilder &PacketBuilder::icmp(uint8_t type, uint8_t code, uint32_t rest) {
    l4_ = L4::kIcmp;
    l4_hdr_.clear();
    l4_hdr_.push_back(type);
    l4_hdr_.push_back(code);
    put16(l4_hdr_, 0);
    put32(l4_hdr_, rest);
    return *this;
}
PacketBuilder &PacketBuilder::echo_request(uint16_t id, uint16_t seq) {
    uint8_t type = l3_ == L3::kIp6 ? 128 : 8;
    return icmp(type, 0, (uint32_t{id} << 16) | seq);
}
PacketBuilder &PacketBuilder::ns(const Ip6 &target) {
    icmp(135, 0, 0);
    append(l4_hdr_, target);
    return *this;
}
PacketBuilder &PacketBuilder::na(const Ip6 &target, uint32_t flags) {
    icmp(136, 0, flags);
    append(l4_hdr_, target);
    return *this;
}
PacketBuilder &PacketBuilder::rs() {
    return icmp(133, 0, 0);
}
PacketBuilder &PacketBuilder::nd_option_ll(uint8_t type, const Mac &m) {
    l4_hdr_.push_back(type);
    l4_hdr_.push_back(1);  // in units of 8 bytes
    append(l4_hdr_, m);
    return *this;
}
PacketBuilder &PacketBuilder::udp(uint16_t sport, uint16_t dport) {
    l4_ = L4::kUdp;
    l4_hdr_.clear();
    put16(l4_hdr_, sport);
    put16(l4_hdr_, dport);
    put16(l4_hdr_, 0);  // length, at build
    put16(l4_hdr_, 0);
    return *this;
}
PacketBuilder &PacketBuilder::tcp(uint16_t sport, uint16_t dport, uint8_t flags) {
    l4_ = L4::kTcp;
    l4_hdr_.clear();
    put16(l4_hdr_, sport);
    put16(l4_hdr_, dport);
    put32(l4_hdr_, 0x01020304);  // sequence
    put32(l4_hdr_, 0);           // acknowledgment
    l4_hdr_.push_back(5 << 4);   // data offset
    l4_hdr_.push_back(flags);
    put16(l4_hdr_, 0xffff);  // window
    put16(l4_hdr_, 0);       // checksum
    put16(l4_hdr_, 0);       // urgent pointer
    return *this;
}
PacketBuilder &PacketBuilder::tcp_seq(uint32_t seq, uint32_t ack) {
    for (int i = 0; i < 4; i++) {
        l4_hdr_[4 + i] = static_cast<uint8_t>(seq >> (24 - 8 * i));
        l4_hdr_[8 + i] = static_cast<uint8_t>(ack >> (24 - 8 * i));
    }
    return *this;
}
PacketBuilder &PacketBuilder::bad_l4_checksum() {
    bad_l4_csum_ = true;
    return *this;
}

PacketBuilder &PacketBuilder::payload(size_t n) {
    payload_.resize(n);
    for (size_t i = 0; i < n; i++) {
        payload_[i] = static_cast<uint8_t>(i * 7 + 3);
    }
    return *this;
}
PacketBuilder &PacketBuilder::payload(const Bytes &b) {
    payload_ = b;
    return *this;
}
PacketBuilder &PacketBuilder::pad_to(size_t frame_len) {
    pad_to_ = frame_len;
    return *this;
}
PacketBuilder &PacketBuilder::truncate(size_t frame_len) {
    truncate_ = frame_len;
    return *this;
}

// --- serialisation ---

uint8_t PacketBuilder::l4_proto() const {
    switch (l4_) {
        case L4::kIcmp:
            return l3_ == L3::kIp6 ? kProtoIcmp6 : kProtoIcmp;
        case L4::kUdp:
            return kProtoUdp;
        case L4::kTcp:
            return kProtoTcp;
        case L4::kNone:
            break;
    }
    return 59;  // no next header; an unassigned protocol for IPv4 is just as good here
}

Bytes PacketBuilder::build_l4() const {
    Bytes b = l4_hdr_;
    append(b, payload_);
    size_t csum_off = 0;
    uint32_t pseudo = 0;
    auto len = static_cast<uint32_t>(b.size());
    uint8_t proto = l4_proto();
    switch (l4_) {
        case L4::kNone:
            return b;
        case L4::kIcmp:
            csum_off = 2;
            break;
        case L4::kUdp:
            csum_off = 6;
            set16(b, 4, static_cast<uint16_t>(len));
            break;
        case L4::kTcp:
            csum_off = 16;
            break;
    }
    if (l3_ == L3::kIp6) {
        pseudo = ip6_pseudo_sum(src6_, dst6_, len, proto);
    } else if (l4_ != L4::kIcmp) {
        pseudo = ip4_pseudo_sum(src4_, dst4_, proto, len);
    }
    uint16_t c = inet_checksum(b, pseudo);
    if (l4_ == L4::kUdp && c == 0) {
        c = 0xffff;  // RFC 768: zero means "no checksum"
    }
    if (bad_l4_csum_) {
        c ^= 0x00ff;
    }
    set16(b, csum_off, c);
    return b;
}

Bytes PacketBuilder::build_arp() const {
    Bytes b;
    put16(b, arp_hw_);
    put16(b, kTypeIp4);
    b.push_back(6);
    b.push_back(4);
    put16(b, arp_op_);
    append(b, arp_sha_);
    put32(b, arp_sip_);
    append(b, arp_tha_);
    put32(b, arp_tip_);
    append(b, payload_);
    return b;
}

Bytes PacketBuilder::build_ip4() const {
    Bytes l4 = build_l4();
    size_t hlen = 20 + opts4_.size();
    Bytes b;
    uint8_t ver = version_.value_or(4);
    uint8_t ihl = ihl_.value_or(static_cast<uint8_t>(hlen / 4));
    b.push_back(static_cast<uint8_t>((ver << 4) | (ihl & 0xf)));
    b.push_back(tos_);
    put16(b, total_length_.value_or(static_cast<uint16_t>(hlen + l4.size())));
    put16(b, id_);
    uint16_t frag =
        static_cast<uint16_t>((df_ ? 0x4000 : 0) | (mf_ ? 0x2000 : 0) | (frag_off_ & 0x1fff));
    put16(b, frag);
    b.push_back(ttl_);
    b.push_back(proto_.value_or(l4_proto()));
    put16(b, 0);
    put32(b, src4_);
    put32(b, dst4_);
    append(b, opts4_);
    uint16_t c = inet_checksum(b);
    if (bad_ip_csum_) {
        c ^= 0x00ff;
    }
    set16(b, 10, c);
    append(b, l4);
    return b;
}

Bytes PacketBuilder::build_ip6() const {
    Bytes l4 = build_l4();
    Bytes ext;
    uint8_t upper = proto_.value_or(l4_proto());
    uint8_t first = ext_.empty() ? upper : ext_.front().type;
    for (size_t i = 0; i < ext_.size(); i++) {
        Bytes h = ext_[i].bytes;
        h[0] = i + 1 < ext_.size() ? ext_[i + 1].type : upper;
        append(ext, h);
    }
    Bytes b;
    uint8_t ver = version_.value_or(6);
    put32(b, (uint32_t{ver} << 28) | 0x12345);  // a flow label that must pass untouched
    put16(b, payload_length_.value_or(static_cast<uint16_t>(ext.size() + l4.size())));
    b.push_back(first);
    b.push_back(hop_limit_);
    append(b, src6_);
    append(b, dst6_);
    append(b, ext);
    append(b, l4);
    return b;
}

Bytes PacketBuilder::build() const {
    Bytes f;
    append(f, eth_dst_);
    append(f, eth_src_);
    if (vlan_) {
        put16(f, kTypeVlan);
        put16(f, *vlan_);
    }
    uint16_t type = 0x88b5;  // IEEE local experimental
    Bytes l3;
    switch (l3_) {
        case L3::kArp:
            type = kTypeArp;
            l3 = build_arp();
            break;
        case L3::kIp4:
            type = kTypeIp4;
            l3 = build_ip4();
            break;
        case L3::kIp6:
            type = kTypeIp6;
            l3 = build_ip6();
            break;
        case L3::kNone:
            l3 = payload_;
            break;
    }
    put16(f, ethertype_.value_or(type));
    append(f, l3);
    if (f.size() < pad_to_) {
        f.resize(pad_to_, 0);
    }
    if (truncate_ && *truncate_ < f.size()) {
        f.resize(*truncate_);
    }
    return f;
}

rte_mbuf *PacketBuilder::mbuf(rte_mempool *pool, uint16_t port) const {
    Bytes f = build();
    rte_mbuf *m = rte_pktmbuf_alloc(pool);
    if (m == nullptr) {
        return nullptr;
    }
    auto *p = rte_pktmbuf_append(m, static_cast<uint16_t>(f.size()));
    if (p == nullptr && !f.empty()) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    if (!f.empty()) {
        std::memcpy(p, f.data(), f.size());
    }
    m->port = port;
    return m;
}

// --- parser ---

std::span<const uint8_t> Parsed::l3() const {
    std::span<const uint8_t> f(frame);
    if (eth.l3_off > f.size()) {
        return {};
    }
    size_t len = f.size() - eth.l3_off;
    if (ip4) {
        len = std::min<size_t>(len, ip4->total_length);
    } else if (ip6) {
        len = std::min<size_t>(len, 40u + ip6->payload_length);
    }
    return f.subspan(eth.l3_off, len);
}

std::span<const uint8_t> Parsed::l4() const {
    auto ip = l3();
    size_t off = l4_off - eth.l3_off;
    if (off > ip.size()) {
        return {};
    }
    return ip.subspan(off);
}

bool Parsed::l4_checksum_ok() const {
    auto b = l4();
    auto len = static_cast<uint32_t>(b.size());
    if (ip4) {
        if (l4_proto == kProtoIcmp) {
            return fold16(sum16(b)) == 0xffff;
        }
        return fold16(sum16(b, ip4_pseudo_sum(ip4->src, ip4->dst, l4_proto, len))) == 0xffff;
    }
    if (ip6) {
        return fold16(sum16(b, ip6_pseudo_sum(ip6->src, ip6->dst, len, l4_proto))) == 0xffff;
    }
    return false;
}

Parsed parse(const Bytes &frame) {
    Parsed p;
    p.frame = frame;
    std::span<const uint8_t> f(p.frame);
    if (f.size() < 14) {
        return p;
    }
    std::copy_n(f.begin(), 6, p.eth.dst.begin());
    std::copy_n(f.begin() + 6, 6, p.eth.src.begin());
    p.eth.type = get16(f, 12);
    p.eth.l3_off = 14;
    if (p.eth.type == kTypeVlan && f.size() >= 18) {
        p.eth.vlan_tci = get16(f, 14);
        p.eth.type = get16(f, 16);
        p.eth.l3_off = 18;
    }
    auto l3 = f.subspan(p.eth.l3_off);
    if (p.eth.type == kTypeArp && l3.size() >= 28) {
        ParsedArp a;
        a.hw = get16(l3, 0);
        a.proto = get16(l3, 2);
        a.hlen = l3[4];
        a.plen = l3[5];
        a.op = get16(l3, 6);
        std::copy_n(l3.begin() + 8, 6, a.sha.begin());
        a.sip = get32(l3, 14);
        std::copy_n(l3.begin() + 18, 6, a.tha.begin());
        a.tip = get32(l3, 24);
        p.arp = a;
    } else if (p.eth.type == kTypeIp4 && l3.size() >= 20) {
        ParsedIp4 h;
        h.version = l3[0] >> 4;
        h.ihl = l3[0] & 0xf;
        h.tos = l3[1];
        h.total_length = get16(l3, 2);
        h.id = get16(l3, 4);
        h.frag = get16(l3, 6);
        h.ttl = l3[8];
        h.proto = l3[9];
        h.checksum = get16(l3, 10);
        h.src = get32(l3, 12);
        h.dst = get32(l3, 16);
        size_t hlen = h.ihl * 4u;
        h.header_checksum_ok =
            hlen >= 20 && hlen <= l3.size() && fold16(sum16(l3.subspan(0, hlen))) == 0xffff;
        p.ip4 = h;
        p.l4_off = p.eth.l3_off + hlen;
        p.l4_proto = h.proto;
    } else if (p.eth.type == kTypeIp6 && l3.size() >= 40) {
        ParsedIp6 h;
        h.version = l3[0] >> 4;
        h.payload_length = get16(l3, 4);
        h.next = l3[6];
        h.hop_limit = l3[7];
        std::copy_n(l3.begin() + 8, 16, h.src.begin());
        std::copy_n(l3.begin() + 24, 16, h.dst.begin());
        size_t off = 40;
        uint8_t nh = h.next;
        while (
            (nh == kExtHopByHop || nh == kExtRouting || nh == kExtDestOpts || nh == kExtFragment) &&
            off + 8 <= l3.size()) {
            h.ext_types.push_back(nh);
            size_t len = nh == kExtFragment ? 8 : (l3[off + 1] + 1u) * 8;
            nh = l3[off];
            off += len;
        }
        p.ip6 = h;
        p.l4_off = p.eth.l3_off + off;
        p.l4_proto = nh;
    }
    return p;
}

}  // namespace fwd::dp::test
