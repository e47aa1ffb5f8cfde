// Connection tracking: the table, the TCP state machine and window checks,
// ICMP error matching, ageing and introspection (conntrack.hpp).
#include "fwd/dp/conntrack.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>
#if defined(RTE_ARCH_X86_64)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <stdexcept>

namespace fwd::dp::ct {

namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kUrg = 0x20,
                  kEce = 0x40, kCwr = 0x80;
constexpr uint32_t kMaxAckWindow = 66000;  // the least window an ACK may lag behind (Linux's)

// Serial number arithmetic (RFC 1982) on 32 bits.
bool before(uint32_t a, uint32_t b) {
    return static_cast<int32_t>(a - b) < 0;
}
bool after(uint32_t a, uint32_t b) {
    return static_cast<int32_t>(a - b) > 0;
}

bool is_icmp(uint8_t proto) {
    return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}
bool has_ports(uint8_t proto) {
    return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}
bool echo_request(uint8_t proto, uint8_t type) {
    return proto == IPPROTO_ICMP ? type == kIcmpEchoRequest : type == kIcmp6EchoRequest;
}
bool echo_type(uint8_t proto, uint8_t type) {
    return proto == IPPROTO_ICMP ? (type == kIcmpEchoRequest || type == kIcmpEchoReply)
                                 : (type == kIcmp6EchoRequest || type == kIcmp6EchoReply);
}
// Destination unreachable, time exceeded, parameter problem (ICMP);
// the same and packet too big (ICMPv6).
bool error_type(uint8_t proto, uint8_t type) {
    if (proto == IPPROTO_ICMP) {
        return type == 3 || type == 11 || type == 12;
    }
    return type >= 1 && type <= 4;
}

// The segment classes the state machine knows; flag combinations outside
// these are never valid (PSH, URG, ECE and CWR do not count).
enum class Seg : uint8_t { kSyn, kSynAck, kFin, kAck, kRst, kBad };

Seg classify(uint8_t flags) {
    switch (flags & ~(kPsh | kUrg | kEce | kCwr)) {
        case kSyn:
            return Seg::kSyn;
        case kSyn | kAck:
            return Seg::kSynAck;
        case kFin | kAck:
            return Seg::kFin;
        case kAck:
            return Seg::kAck;
        case kRst:
        case kRst | kAck:
            return Seg::kRst;
        default:
            return Seg::kBad;
    }
}

// What a segment does to a connection (Linux's TCP conntrack model: one
// state for both ends; CLOSE_WAIT is "a FIN was acknowledged", LAST_ACK "a
// FIN each way"). kIgnore: passed without a change; kInvalid: refused.
enum class Move : uint8_t { kTo, kIgnore, kInvalid };
struct Step {
    Move move;
    TcpState to = TcpState::kNone;
};
constexpr Step to(TcpState s) {
    return {Move::kTo, s};
}
constexpr Step kIgnore{Move::kIgnore};
constexpr Step kInvalid{Move::kInvalid};

Step tcp_step(TcpState s, Dir d, Seg g) {
    using S = TcpState;
    const bool orig = d == Dir::kOrig;
    switch (g) {
        case Seg::kSyn:
            // The initiator's SYN (re)starts a connection that is new,
            // retransmitted or over; the responder's SYN while ours is
            // unanswered is a simultaneous open.
            if (orig) {
                switch (s) {
                    case S::kNone:
                    case S::kSynSent:
                    case S::kTimeWait:
                    case S::kClose:
                        return to(S::kSynSent);
                    case S::kSynSent2:
                        return to(S::kSynSent2);
                    default:
                        return kIgnore;
                }
            }
            if (s == S::kSynSent || s == S::kSynSent2) {
                return to(S::kSynSent2);
            }
            return s == S::kTimeWait ? to(S::kSynSent) : kInvalid;
        case Seg::kSynAck:
            if (s == S::kSynSent2 || (orig && s == S::kSynRecv) || (!orig && s == S::kSynSent)) {
                return to(S::kSynRecv);
            }
            if (orig || s == S::kNone) {
                return kInvalid;
            }
            return kIgnore;  // a retransmitted SYN/ACK
        case Seg::kFin:
            switch (s) {
                case S::kSynRecv:
                case S::kEstablished:
                    return to(S::kFinWait);
                case S::kFinWait:
                case S::kCloseWait:
                case S::kLastAck:
                    return to(S::kLastAck);
                case S::kTimeWait:
                case S::kClose:
                    return to(s);
                default:
                    return kInvalid;
            }
        case Seg::kAck:
            switch (s) {
                case S::kNone:
                    return orig ? to(S::kEstablished) : kInvalid;  // loose pickup
                case S::kSynSent:
                case S::kSynSent2:
                    return orig ? kInvalid : kIgnore;
                case S::kSynRecv:
                    return orig ? to(S::kEstablished) : to(S::kSynRecv);
                case S::kEstablished:
                    return to(S::kEstablished);
                case S::kFinWait:
                case S::kCloseWait:
                    return to(S::kCloseWait);
                case S::kLastAck:
                case S::kTimeWait:
                    return to(S::kTimeWait);
                case S::kClose:
                    return to(S::kClose);
                default:
                    return kInvalid;
            }
        case Seg::kRst:
            return s == S::kNone ? kInvalid : to(S::kClose);
        case Seg::kBad:
            break;
    }
    return kInvalid;
}

// Reads n bytes at off into buf (or points into the segment); nullptr when
// the packet is shorter. Inlined with its callers below, as parse() runs for
// every packet looked up.
[[gnu::always_inline]] inline const uint8_t *read(const rte_mbuf *m, uint32_t off, uint32_t n,
                                                  void *buf) {
    if (off + n > m->pkt_len) {
        return nullptr;
    }
    return static_cast<const uint8_t *>(rte_pktmbuf_read(m, off, n, buf));
}

uint16_t rd16(const uint8_t *p) {
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t rd32(const uint8_t *p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
net::Be16 be16_at(const uint8_t *p) {
    uint16_t raw;
    std::memcpy(&raw, p, 2);
    return net::Be16::from_raw(raw);
}

uint32_t slot_ref(uint32_t flow, Dir d) {
    return ((flow << 1) | static_cast<uint32_t>(d)) + 1;
}

// Where the IP packet ends (its length field, bounded by the frame).
[[gnu::always_inline]] inline uint32_t ip_end(const rte_mbuf *m, const PktMeta &md, bool v6) {
    uint8_t buf[4];
    const uint8_t *p = read(m, md.l3_off + (v6 ? 4u : 2u), 2, buf);
    if (p == nullptr) {
        return md.l3_off;
    }
    const uint32_t len = rd16(p) + (v6 ? 40u : 0u);
    return std::min<uint32_t>(md.l3_off + len, m->pkt_len);
}

// The key's port word of an L4 header at l4 (bounded by end): the 4 bytes of
// FlowKey::sport and dport as they lie in memory (TCP / UDP / SCTP: the ports
// as in the header; echo: the identifier, then the type as from_host(type)).
// kOk, kTruncated, kNotTracked, kIcmpError.
[[gnu::always_inline]] inline Result l4_ports(const rte_mbuf *m, uint32_t l4, uint32_t end,
                                              uint8_t proto, uint32_t &ports) {
    uint8_t buf[8];
    ports = 0;
    if (has_ports(proto)) {
        const uint8_t *p = l4 + 4 <= end ? read(m, l4, 4, buf) : nullptr;
        if (p == nullptr) {
            return Result::kTruncated;
        }
        std::memcpy(&ports, p, 4);
        return Result::kOk;
    }
    if (is_icmp(proto)) {
        const uint8_t *p = l4 + 8 <= end ? read(m, l4, 8, buf) : nullptr;
        if (p == nullptr) {
            return Result::kTruncated;
        }
        if (error_type(proto, p[0])) {
            return Result::kIcmpError;
        }
        if (!echo_type(proto, p[0])) {
            return Result::kNotTracked;
        }
        const uint16_t id = be16_at(p + 4).raw(), type = net::Be16::from_host(p[0]).raw();
        ports = id | uint32_t{type} << 16;
        return Result::kOk;
    }
    return Result::kOk;
}

// The key as the five words it is hashed and compared by, each written whole
// (prepare() and key_eq() read it back word by word at once: a word put
// together from smaller stores would wait for them to reach the cache).
void put_key(FlowKey &k, uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3, uint64_t w4) {
    auto *d = reinterpret_cast<uint8_t *>(&k);
    std::memcpy(d, &w0, 8);
    std::memcpy(d + 8, &w1, 8);
    std::memcpy(d + 16, &w2, 8);
    std::memcpy(d + 24, &w3, 8);
    std::memcpy(d + 32, &w4, 8);
}
using detail::key_word;
bool key_eq(const FlowKey &a, const FlowKey &b) {
    return ((key_word(a, 0) ^ key_word(b, 0)) | (key_word(a, 1) ^ key_word(b, 1)) |
            (key_word(a, 2) ^ key_word(b, 2)) | (key_word(a, 3) ^ key_word(b, 3)) |
            (key_word(a, 4) ^ key_word(b, 4))) == 0;
}
static_assert(offsetof(FlowKey, sport) == 32 && offsetof(FlowKey, proto) == 36 &&
              offsetof(FlowKey, family) == 37);

}  // namespace

// --- keys ---

FlowKey FlowKey::v4(uint32_t src_be, uint32_t dst_be, uint8_t proto, net::Be16 sport,
                    net::Be16 dport) {
    FlowKey k;
    std::memcpy(k.src.data(), &src_be, 4);
    std::memcpy(k.dst.data(), &dst_be, 4);
    k.proto = proto;
    k.family = 4;
    k.sport = sport;
    k.dport = dport;
    return k;
}

FlowKey FlowKey::v6(const uint8_t *src, const uint8_t *dst, uint8_t proto, net::Be16 sport,
                    net::Be16 dport) {
    FlowKey k;
    std::memcpy(k.src.data(), src, 16);
    std::memcpy(k.dst.data(), dst, 16);
    k.proto = proto;
    k.family = 6;
    k.sport = sport;
    k.dport = dport;
    return k;
}

// In words (put_key): the key is often hashed right after.
FlowKey FlowKey::inverted() const {
    uint64_t w4 = key_word(*this, 4);
    if (is_icmp(proto)) {
        const uint16_t t = dport.host();
        uint16_t r = t;
        if (proto == IPPROTO_ICMP) {
            r = t == kIcmpEchoRequest ? kIcmpEchoReply : t == kIcmpEchoReply ? kIcmpEchoRequest : t;
        } else {
            r = t == kIcmp6EchoRequest ? kIcmp6EchoReply
                : t == kIcmp6EchoReply ? kIcmp6EchoRequest
                                       : t;
        }
        w4 = (w4 & ~uint64_t{0xffff0000}) | uint64_t{net::Be16::from_host(r).raw()} << 16;
    } else {
        w4 = (w4 & ~uint64_t{0xffffffff}) | ((w4 >> 16) & 0xffff) | ((w4 & 0xffff) << 16);
    }
    FlowKey k;
    put_key(k, key_word(*this, 2), key_word(*this, 3), key_word(*this, 0), key_word(*this, 1), w4);
    return k;
}

std::string FlowKey::str() const {
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    const int af = v6() ? AF_INET6 : AF_INET;
    inet_ntop(af, src.data(), a, sizeof(a));
    inet_ntop(af, dst.data(), b, sizeof(b));
    std::string p = proto == IPPROTO_TCP    ? "tcp"
                    : proto == IPPROTO_UDP  ? "udp"
                    : proto == IPPROTO_SCTP ? "sctp"
                    : is_icmp(proto)        ? (v6() ? "icmp6" : "icmp")
                                            : "proto " + std::to_string(proto);
    const bool br = v6() && has_ports(proto);
    auto addr = [&](const char *s, uint16_t port) {
        std::string r = br ? std::string("[") + s + "]" : std::string(s);
        return has_ports(proto) ? r + ":" + std::to_string(port) : r;
    };
    std::string r = p + " " + addr(a, sport.host()) + " -> " + addr(b, dport.host());
    if (is_icmp(proto)) {
        r += " id " + std::to_string(sport.host()) + " type " + std::to_string(dport.host());
    }
    return r;
}

std::string_view kind_name(L4Kind k) {
    switch (k) {
        case L4Kind::kTcp:
            return "tcp";
        case L4Kind::kUdp:
            return "udp";
        case L4Kind::kIcmp:
            return "icmp";
        case L4Kind::kGeneric:
            break;
    }
    return "generic";
}

// --- parsing ---

namespace {

// A SYN's window scale option (p.wscale) from its n bytes of options at off.
// Out of line: a SYN's only, it would make every packet's parse() costlier.
[[gnu::noinline]] Result tcp_wscale(const rte_mbuf *m, uint32_t off, uint32_t n, Packet &p) {
    uint8_t buf[40];
    const uint8_t *o = read(m, off, n, buf);
    if (o == nullptr) {
        return Result::kTruncated;
    }
    for (uint32_t i = 0; i < n;) {
        const uint8_t kind = o[i];
        if (kind == 0) {
            break;
        }
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= n || o[i + 1] < 2 || i + o[i + 1] > n) {
            break;  // a malformed option list ends the scan, as Linux's
        }
        if (kind == 3 && o[i + 1] == 3) {
            p.wscale = std::min<uint8_t>(o[i + 2], 14);
        }
        i += o[i + 1];
    }
    return Result::kOk;
}

// parse() for one family: every test of the family folds away (parse()
// runs for every packet looked up).
template <bool v6>
Result parse_family(const rte_mbuf *m, const PktMeta &md, Packet &p) {
    if (md.flags & kMetaLaterFragment) {
        return Result::kFragment;
    }
    uint8_t buf[32];
    const uint32_t end = ip_end(m, md, v6);
    const uint8_t proto = md.l4_proto;
    // The key as FlowKey::v4 / v6 build it, in words (put_key).
    const uint8_t *ip = read(m, md.l3_off + (v6 ? 8 : 12), v6 ? 32 : 8, buf);
    if (ip == nullptr) {
        return Result::kTruncated;
    }
    uint64_t w0, w1 = 0, w2, w3 = 0;
    if (v6) {
        std::memcpy(&w0, ip, 8);
        std::memcpy(&w1, ip + 8, 8);
        std::memcpy(&w2, ip + 16, 8);
        std::memcpy(&w3, ip + 24, 8);
    } else {
        uint32_t s, d;
        std::memcpy(&s, ip, 4);
        std::memcpy(&d, ip + 4, 4);
        w0 = s;
        w2 = d;
    }
    const uint32_t l4 = md.l4_off;
    if (l4 == 0) {
        return Result::kTruncated;
    }
    uint32_t ports;
    const Result r = l4_ports(m, l4, end, proto, ports);
    put_key(p.key, w0, w1, w2, w3, ports | uint64_t{proto} << 32 | uint64_t{v6 ? 6u : 4u} << 40);
    p.tcp_flags = 0;
    p.wscale = 0xff;
    p.win = 0;
    p.seq = p.ack = p.payload = 0;
    if (r != Result::kOk || proto != IPPROTO_TCP) {
        return r;
    }
    const uint8_t *t = l4 + 20 <= end ? read(m, l4, 20, buf) : nullptr;
    if (t == nullptr) {
        return Result::kTruncated;
    }
    const uint32_t hlen = (t[12] >> 4) * 4u;
    if (hlen < 20 || l4 + hlen > end) {
        return Result::kTruncated;
    }
    p.seq = rd32(t + 4);
    p.ack = rd32(t + 8);
    p.tcp_flags = t[13];
    p.win = rd16(t + 14);
    p.payload = end - l4 - hlen;
    p.wscale = 0xff;
    if ((p.tcp_flags & kSyn) && hlen > 20) {
        return tcp_wscale(m, l4 + 20, hlen - 20, p);
    }
    return Result::kOk;
}

}  // namespace

Result parse(const rte_mbuf *m, const PktMeta &md, bool v6, Packet &p) {
    return v6 ? parse_family<true>(m, md, p) : parse_family<false>(m, md, p);
}

// --- configuration ---

std::string Config::validate() const {
    if (capacity == 0 || capacity > kMaxCapacity) {
        return "capacity must be 1.." + std::to_string(kMaxCapacity);
    }
    const std::pair<const char *, uint32_t> t[] = {
        {"tcp_syn_sent", timeouts.tcp_syn_sent},
        {"tcp_syn_recv", timeouts.tcp_syn_recv},
        {"tcp_established", timeouts.tcp_established},
        {"tcp_fin_wait", timeouts.tcp_fin_wait},
        {"tcp_close_wait", timeouts.tcp_close_wait},
        {"tcp_last_ack", timeouts.tcp_last_ack},
        {"tcp_time_wait", timeouts.tcp_time_wait},
        {"tcp_close", timeouts.tcp_close},
        {"udp_unreplied", timeouts.udp_unreplied},
        {"udp_replied", timeouts.udp_replied},
        {"icmp", timeouts.icmp},
        {"generic", timeouts.generic},
    };
    for (const auto &[name, v] : t) {
        if (v == 0 || v > kMaxTimeout) {
            return std::string("timeouts.") + name + " must be 1.." + std::to_string(kMaxTimeout) +
                   " seconds";
        }
    }
    return {};
}

// --- the table ---

namespace {

uint32_t tick_shift(uint64_t hz) {
    // A tick of 1 to 2 ms: 2^31 ticks (serial arithmetic) cover 24 days.
    return static_cast<uint32_t>(std::bit_width(std::max<uint64_t>(hz / 1000, 1)));
}

template <typename T>
T *zalloc(const char *name, size_t n, unsigned align = RTE_CACHE_LINE_SIZE) {
    void *p = rte_zmalloc(name, n * sizeof(T), align);
    if (p == nullptr) {
        throw std::runtime_error(std::string("conntrack: no memory for ") + name);
    }
    return static_cast<T *>(p);
}

}  // namespace

ConnTable::ConnTable(const Config &cfg, uint64_t tsc_hz, rte_rcu_qsbr *qsbr)
    : cfg_(cfg), capacity_(cfg.capacity), tsc_hz_(tsc_hz), shift_(tick_shift(tsc_hz)), qsbr_(qsbr) {
    if (std::string e = cfg.validate(); !e.empty()) {
        throw std::invalid_argument("conntrack: " + e);
    }
    if (qsbr == nullptr || tsc_hz == 0) {
        throw std::invalid_argument("conntrack: needs the workers' RCU and the TSC rate");
    }
    auto t = [&](uint32_t secs) {
        const uint64_t v = (uint64_t{secs} * tsc_hz + (uint64_t{1} << shift_) - 1) >> shift_;
        return static_cast<uint32_t>(std::min<uint64_t>(v, INT32_MAX));
    };
    const Timeouts &to = cfg.timeouts;
    using S = TcpState;
    tcp_ticks_[static_cast<size_t>(S::kNone)] = t(to.tcp_close);
    tcp_ticks_[static_cast<size_t>(S::kSynSent)] = t(to.tcp_syn_sent);
    tcp_ticks_[static_cast<size_t>(S::kSynRecv)] = t(to.tcp_syn_recv);
    tcp_ticks_[static_cast<size_t>(S::kEstablished)] = t(to.tcp_established);
    tcp_ticks_[static_cast<size_t>(S::kFinWait)] = t(to.tcp_fin_wait);
    tcp_ticks_[static_cast<size_t>(S::kCloseWait)] = t(to.tcp_close_wait);
    tcp_ticks_[static_cast<size_t>(S::kLastAck)] = t(to.tcp_last_ack);
    tcp_ticks_[static_cast<size_t>(S::kTimeWait)] = t(to.tcp_time_wait);
    tcp_ticks_[static_cast<size_t>(S::kClose)] = t(to.tcp_close);
    tcp_ticks_[static_cast<size_t>(S::kSynSent2)] = t(to.tcp_syn_sent);
    udp_unreplied_t_ = t(to.udp_unreplied);
    udp_replied_t_ = t(to.udp_replied);
    icmp_t_ = t(to.icmp);
    generic_t_ = t(to.generic);

    // Four slots a flow (two keys at half load), whole buckets, whole groups
    // (a group: a power of two buckets, kGroupBuckets or all of them).
    const auto need = static_cast<uint32_t>(
        (uint64_t{capacity_} * kSlotsPerFlow + kSlotsPerBucket - 1) / kSlotsPerBucket);
    n_buckets_ = need >= kGroupBuckets ? (need + kGroupBuckets - 1) / kGroupBuckets * kGroupBuckets
                                       : std::bit_ceil(std::max<uint32_t>(need, 2));
    group_mask_ = std::min(n_buckets_, kGroupBuckets) - 1;
    try {
        flows_ = zalloc<Flow>("ct_flows", capacity_);
        slots_ = zalloc<std::atomic<uint64_t>>("ct_index", size_t{n_buckets_} * kSlotsPerBucket,
                                               kGroupBuckets * kSlotsPerBucket * 8);
        free_ = zalloc<std::atomic<uint32_t>>("ct_free", capacity_);
        dead_ = zalloc<uint32_t>("ct_dead", capacity_);
    } catch (...) {
        rte_free(flows_);
        rte_free(slots_);
        rte_free(free_);
        throw;
    }
    for (uint32_t i = 0; i < capacity_; i++) {
        free_[i].store(capacity_ - 1 - i, std::memory_order_relaxed);  // entry 0 first
    }
    n_free_.store(capacity_, std::memory_order_relaxed);
}

ConnTable::~ConnTable() {
    rte_free(flows_);
    rte_free(slots_);
    rte_free(free_);
    rte_free(dead_);
}

void ConnTable::prefetch_new(uint32_t k) const noexcept {
    const uint32_t n = n_free_.load(std::memory_order_relaxed);
    if (k < n) {
        const auto *f = reinterpret_cast<const char *>(
            &flows_[free_[n - 1 - k].load(std::memory_order_relaxed)]);
        __builtin_prefetch(f, 1);
        __builtin_prefetch(f + RTE_CACHE_LINE_SIZE, 1);
    }
}

uint32_t ConnTable::find(const FlowKey &k, const Lookup &l) const noexcept {
    for (const uint32_t b : {l.b1, l.b2}) {
        const std::atomic<uint64_t> *s = slots_ + size_t{b} * kSlotsPerBucket;
        for (uint32_t i = 0; i < kSlotsPerBucket; i++) {
            const uint64_t v = s[i].load(std::memory_order_acquire);
            if (static_cast<uint32_t>(v >> 32) != l.sig) {
                continue;
            }
            const uint32_t ref = static_cast<uint32_t>(v) - 1;
            if (key_eq(flows_[ref >> 1].tuple[ref & 1], k)) {
                return ref + 1;
            }
        }
    }
    return 0;
}

namespace detail {

SlotMasks slot_masks_scalar(const std::atomic<uint64_t> *s, uint32_t sig) noexcept {
    SlotMasks m{0, 0};
    for (uint32_t i = 0; i < 8; i++) {
        const uint64_t v = s[i].load(std::memory_order_relaxed);
        m.empty |= uint32_t{v == 0} << i;
        m.match |= uint32_t{static_cast<uint32_t>(v >> 32) == sig} << i;
    }
    return m;
}

// slot_masks(), inlined into scan_locked().
[[gnu::always_inline]] inline SlotMasks masks(const std::atomic<uint64_t> *s,
                                              uint32_t sig) noexcept {
#if defined(RTE_ARCH_X86_64) && defined(__AVX2__)
    // Two 32-byte loads for the 8 slots (a bucket is a cache line, aligned).
    const auto *p = reinterpret_cast<const __m256i *>(s);
    const __m256i a = _mm256_load_si256(p), b = _mm256_load_si256(p + 1);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i hi = _mm256_set1_epi64x(static_cast<int64_t>(0xffffffff00000000ull));
    const __m256i want = _mm256_set1_epi64x(static_cast<int64_t>(uint64_t{sig} << 32));
    auto bits = [](__m256i x, __m256i y) {
        return static_cast<uint32_t>(_mm256_movemask_pd(_mm256_castsi256_pd(x)) |
                                     (_mm256_movemask_pd(_mm256_castsi256_pd(y)) << 4));
    };
    return {bits(_mm256_cmpeq_epi64(a, zero), _mm256_cmpeq_epi64(b, zero)),
            bits(_mm256_cmpeq_epi64(_mm256_and_si256(a, hi), want),
                 _mm256_cmpeq_epi64(_mm256_and_si256(b, hi), want))};
#else
    return slot_masks_scalar(s, sig);
#endif
}

SlotMasks slot_masks(const std::atomic<uint64_t> *s, uint32_t sig) noexcept {
    return masks(s, sig);
}

}  // namespace detail

// One pass (detail::slot_masks: no branch per slot, half the slots are
// empty at random) per bucket.
uint32_t ConnTable::scan_locked(const FlowKey &k, const Lookup &l,
                                const std::atomic<uint64_t> *taken,
                                std::atomic<uint64_t> *&free) noexcept {
    free = nullptr;
    uint32_t found = 0, best_free = 0;
    for (const uint32_t b : {l.b1, l.b2}) {
        std::atomic<uint64_t> *s = slots_ + size_t{b} * kSlotsPerBucket;
        auto [empty, match] = detail::masks(s, l.sig);
        if (taken >= s && taken < s + kSlotsPerBucket) {
            empty &= ~(1u << (taken - s));
        }
        for (; match != 0 && found == 0; match &= match - 1) {
            const uint32_t ref =
                static_cast<uint32_t>(s[std::countr_zero(match)].load(std::memory_order_relaxed)) -
                1;
            found = key_eq(flows_[ref >> 1].tuple[ref & 1], k) ? ref + 1 : 0;
        }
        const auto n = static_cast<uint32_t>(std::popcount(empty));
        if (n > best_free) {  // the less loaded bucket; the first on a tie
            free = s + std::countr_zero(empty);
            best_free = n;
        }
    }
    return found;
}

void ConnTable::remove_locked(const FlowKey &k, uint32_t ref) noexcept {
    Lookup l;
    prepare(k, l);
    const uint64_t want = (uint64_t{l.sig} << 32) | ref;
    for (const uint32_t b : {l.b1, l.b2}) {
        std::atomic<uint64_t> *s = slots_ + size_t{b} * kSlotsPerBucket;
        for (uint32_t i = 0; i < kSlotsPerBucket; i++) {
            if (s[i].load(std::memory_order_relaxed) == want) {
                s[i].store(0, std::memory_order_release);
                return;
            }
        }
    }
}

void ConnTable::unlink_locked(uint32_t i) noexcept {
    Flow &f = flows_[i];
    remove_locked(f.tuple[0], slot_ref(i, Dir::kOrig));
    remove_locked(f.tuple[1], slot_ref(i, Dir::kReply));
    f.status.fetch_and(static_cast<uint8_t>(~kStatusLive), std::memory_order_relaxed);
    const uint32_t n = dead_n_.load(std::memory_order_relaxed);
    uint32_t tail = dead_head_ + n;
    tail = tail >= capacity_ ? tail - capacity_ : tail;
    dead_[tail] = i;
    dead_n_.store(n + 1, std::memory_order_relaxed);
    in_use_.store(in_use_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

inline bool ConnTable::usable(const Flow &f, uint32_t now_t) const noexcept {
    const uint8_t st = f.status.load(std::memory_order_relaxed);
    return (st & (kStatusLive | kStatusDying)) == kStatusLive &&
           static_cast<int32_t>(now_t - f.expires.load(std::memory_order_relaxed)) < 0;
}

bool ConnTable::lookup(const FlowKey &key, const Lookup &l, uint64_t now, Hit &hit) const noexcept {
    uint32_t v = l.slot;
    if (v != 0 && !key_eq(flows_[(v - 1) >> 1].tuple[(v - 1) & 1], key)) {
        v = find(key, l);  // another key of the same signature first
    }
    if (v == 0) {
        return false;
    }
    const uint32_t ref = v - 1;
    if (!usable(flows_[ref >> 1], ticks(now))) {
        return false;
    }
    hit = {ref >> 1, static_cast<Dir>(ref & 1)};
    return true;
}

namespace {

void set_expiry(Flow &f, uint32_t at) {
    if (f.expires.load(std::memory_order_relaxed) != at) {
        f.expires.store(at, std::memory_order_relaxed);
    }
}

void mark_replied(Flow &f) {
    if (!(f.status.load(std::memory_order_relaxed) & kStatusReplied)) {
        f.status.fetch_or(kStatusReplied, std::memory_order_relaxed);
    }
}

// The sending side's first segment: its sequence space starts here.
void peer_init(Flow &f, Dir d, const Packet &p, uint32_t end) {
    const auto s = static_cast<size_t>(d);
    f.peer[s] = {end, end, std::max<uint32_t>(p.win, 1)};
    f.pflags[s] = static_cast<uint8_t>((f.pflags[s] & kPeerLiberal) | kPeerSeen);
    f.scale[s] = 0;
    if ((p.tcp_flags & kSyn) && p.wscale != 0xff) {
        f.pflags[s] |= kPeerWscale;
        f.scale[s] = p.wscale;
    }
}

// Linux's tcp_in_window, simplified (no SACK, no retransmission counts):
// the segment must lie within what the receiver allowed and not before one
// of its windows, its ACK within what the receiver sent. On success the
// sender's and receiver's edges move.
bool tcp_window(Flow &f, Dir d, const Packet &p, bool liberal) {
    const auto si = static_cast<size_t>(d), ri = static_cast<size_t>(other(d));
    TcpPeer &s = f.peer[si];
    TcpPeer &r = f.peer[ri];
    const bool syn = p.tcp_flags & kSyn;
    const uint32_t end = p.seq + p.payload + (syn ? 1 : 0) + ((p.tcp_flags & kFin) ? 1 : 0);
    if (!(f.pflags[si] & kPeerSeen)) {
        peer_init(f, d, p, end);
        if (syn && (p.tcp_flags & kAck) &&
            !((f.pflags[0] & kPeerWscale) && (f.pflags[1] & kPeerWscale))) {
            f.scale = {0, 0};  // scaling only when both ends offered it (RFC 7323)
        }
    }
    const bool ack_set = p.tcp_flags & kAck;
    const bool r_seen = f.pflags[ri] & kPeerSeen;
    const uint32_t ack = ack_set ? p.ack : r.end;
    const uint32_t win = syn ? p.win : uint32_t{p.win} << f.scale[si];
    liberal = liberal || ((f.pflags[si] | f.pflags[ri]) & kPeerLiberal);
    const bool ok =
        !before(s.maxend, p.seq) &&                           // not past the window
        (r.maxwin == 0 || !before(end, s.end - r.maxwin)) &&  // not a window behind
        (!r_seen || !after(ack, r.end)) &&                    // acks what was sent
        (!r_seen || !before(ack, r.end - std::max(s.maxwin, kMaxAckWindow)));  // not too old
    if (!ok && !liberal) {
        return false;
    }
    s.maxwin = std::max(s.maxwin, win);
    if (after(end, s.end)) {
        s.end = end;
    }
    if (r.maxwin != 0 && after(end, s.maxend)) {
        r.maxwin += end - s.maxend;
    }
    if (ack_set && r_seen && after(ack + win + (win == 0 ? 1 : 0), r.maxend)) {
        r.maxend = ack + win + (win == 0 ? 1 : 0);
    }
    return true;
}

}  // namespace

void ConnTable::tcp_init(Flow &f, const Packet &p) noexcept {
    f.peer = {};
    f.scale = {0, 0};
    f.pflags = {0, 0};
    const uint32_t end = p.seq + p.payload + ((p.tcp_flags & kSyn) ? 1 : 0);
    peer_init(f, Dir::kOrig, p, end);
}

// Out of line: track() of any other flow stays short.
[[gnu::noinline]] Result ConnTable::tcp_update(Flow &f, Dir d, const Packet &p,
                                               uint32_t now_t) noexcept {
    const Seg g = classify(p.tcp_flags);
    if (g == Seg::kBad) {
        return Result::kTcpBadFlags;
    }
    const auto old = static_cast<TcpState>(f.state.load(std::memory_order_relaxed));
    const Step st = tcp_step(old, d, g);
    if (st.move == Move::kInvalid) {
        return Result::kTcpInvalid;
    }
    if (st.move == Move::kIgnore) {
        return Result::kTcpIgnored;
    }
    const size_t oi = static_cast<size_t>(Dir::kOrig);
    // A new SYN after the connection is over starts it again in place.
    if (g == Seg::kSyn && d == Dir::kOrig &&
        (old == TcpState::kTimeWait || old == TcpState::kClose)) {
        tcp_init(f, p);
        f.state.store(static_cast<uint8_t>(TcpState::kSynSent), std::memory_order_relaxed);
        set_expiry(f, now_t + tcp_ticks_[static_cast<size_t>(TcpState::kSynSent)]);
        return Result::kOk;
    }
    // The responder's SYN/ACK and RST must answer the initiator's SYN.
    const bool answers_syn = (p.tcp_flags & kAck) && p.ack == f.peer[oi].end;
    if (d == Dir::kReply && old == TcpState::kSynSent) {
        if (g == Seg::kSynAck && !answers_syn) {
            return Result::kTcpInvalid;
        }
        if (g == Seg::kRst && !answers_syn) {
            return Result::kTcpRstOutOfWindow;
        }
    }
    const bool liberal = cfg_.tcp_liberal;
    if (g == Seg::kRst && !(d == Dir::kReply && old == TcpState::kSynSent)) {
        if (!tcp_window(f, d, p, liberal)) {
            return Result::kTcpRstOutOfWindow;
        }
    } else if (g != Seg::kRst && !tcp_window(f, d, p, liberal)) {
        return Result::kTcpOutOfWindow;
    }
    f.state.store(static_cast<uint8_t>(st.to), std::memory_order_relaxed);
    set_expiry(f, now_t + tcp_ticks_[static_cast<size_t>(st.to)]);
    return Result::kOk;
}

inline uint32_t ConnTable::timeout(const Flow &f) const noexcept {
    switch (f.kind()) {
        case L4Kind::kTcp:
            return tcp_ticks_[f.state.load(std::memory_order_relaxed)];
        case L4Kind::kUdp:
            return (f.status.load(std::memory_order_relaxed) & kStatusReplied) ? udp_replied_t_
                                                                               : udp_unreplied_t_;
        case L4Kind::kIcmp:
            return icmp_t_;
        case L4Kind::kGeneric:
            break;
    }
    return generic_t_;
}

Result ConnTable::track(const Packet &p, const Lookup &l, uint64_t now, Hit &hit, Counters &c,
                        bool recheck) noexcept {
    uint32_t v = l.slot;
    if (v != 0 && !key_eq(flows_[(v - 1) >> 1].tuple[(v - 1) & 1], p.key)) {
        v = find(p.key, l);  // another key of the same signature first
    }
    const uint32_t now_t = ticks(now);
    if (recheck && (v == 0 || !usable(flows_[(v - 1) >> 1], now_t))) {
        v = find(p.key, l);
    }
    if (v == 0 || !usable(flows_[(v - 1) >> 1], now_t)) {
        c.count(Result::kNew);
        return Result::kNew;
    }
    const uint32_t ref = v - 1;
    Flow &f = flows_[ref >> 1];
    hit = {ref >> 1, static_cast<Dir>(ref & 1)};
    if (hit.dir == Dir::kReply) {
        mark_replied(f);
    }
    Result r = Result::kOk;
    if (f.kind() == L4Kind::kTcp) {
        f.lock.lock();
        r = tcp_update(f, hit.dir, p, now_t);
        f.lock.unlock();
    } else {
        set_expiry(f, now_t + timeout(f));
    }
    c.count(r);
    return r;
}

Result ConnTable::create(const Packet &p, const Lookup &lo, const FlowKey &reply, const Lookup &lr,
                         uint64_t now, const NatInfo &nat, Hit &hit, Counters &c) noexcept {
    const FlowKey &orig = p.key;
    Result r = Result::kCreated;
    TcpState state = TcpState::kNone;
    bool pickup = false;
    if (orig.proto == IPPROTO_TCP) {
        const Seg g = classify(p.tcp_flags);
        if (g == Seg::kBad) {
            r = Result::kTcpBadFlags;
        } else if (g == Seg::kSyn) {
            state = TcpState::kSynSent;
        } else if (g == Seg::kAck && cfg_.tcp_loose) {
            state = TcpState::kEstablished;
            pickup = true;
        } else {
            r = Result::kTcpNotSyn;
        }
    } else if (is_icmp(orig.proto) && !echo_request(orig.proto, orig.dport.host() & 0xff)) {
        r = Result::kIcmpNoRequest;
    }
    if (r != Result::kCreated) {
        c.count(r);
        return r;
    }
    const uint32_t now_t = ticks(now);
    wlock_.lock();
    // One pass over each key's buckets: whether the key is there and where
    // it would go. A live flow on either refuses (the original's first); an
    // expired or flushed one makes way, unlinked, and both are scanned again.
    std::atomic<uint64_t> *so = nullptr, *sr = nullptr;
    while (true) {
        const uint32_t vo = scan_locked(orig, lo, nullptr, so);
        const uint32_t vr = scan_locked(reply, lr, so, sr);
        const uint32_t v = vo != 0 ? vo : vr;
        if (v == 0) {
            break;
        }
        if (usable(flows_[(v - 1) >> 1], now_t)) {
            r = vo != 0 ? Result::kExists : Result::kReplyExists;
            break;
        }
        unlink_locked((v - 1) >> 1);
    }
    const uint32_t n_free = n_free_.load(std::memory_order_relaxed);
    if (r == Result::kCreated && n_free == 0) {
        r = Result::kTableFull;
    }
    if (r == Result::kCreated && (so == nullptr || sr == nullptr)) {
        r = Result::kIndexFull;
    }
    if (r != Result::kCreated) {
        wlock_.unlock();
        c.count(r);
        return r;
    }
    const uint32_t i = free_[n_free - 1].load(std::memory_order_relaxed);
    n_free_.store(n_free - 1, std::memory_order_relaxed);
    Flow &f = flows_[i];
    // Free for a grace period: no reader holds it.
    f.tuple = {orig, reply};
    f.nat_service = nat.service;
    f.nat_backend = nat.backend;
    f.nat_flags = nat.flags;
    f.policy_flags.store(nat.policy_flags, std::memory_order_relaxed);
    f.policy_gen.store(nat.policy_gen, std::memory_order_relaxed);
    auto diff = [](const FlowKey &in, const FlowKey &out) {
        auto ne = [&](uint32_t i) { return key_word(in, i) != key_word(out, i); };
        const uint64_t ports = key_word(in, 4) ^ key_word(out, 4);
        uint8_t ch = 0;
        ch |= ne(0) || ne(1) ? kChangeSrcAddr : 0;
        ch |= ne(2) || ne(3) ? kChangeDstAddr : 0;
        ch |= (ports & 0xffff) != 0 ? kChangeSrcPort : 0;
        ch |= !is_icmp(in.proto) && (ports & 0xffff0000) != 0 ? kChangeDstPort : 0;
        return ch;
    };
    const FlowKey out0 = reply.inverted(), out1 = orig.inverted();
    f.changes = static_cast<uint8_t>(diff(orig, out0) | (diff(reply, out1) << 4));
    f.peer = {};
    f.scale = {0, 0};
    f.pflags = {0, 0};
    if (orig.proto == IPPROTO_TCP) {
        tcp_init(f, p);
        if (pickup) {
            f.pflags = {kPeerLiberal | kPeerSeen, kPeerLiberal};
        }
    }
    f.state.store(static_cast<uint8_t>(state), std::memory_order_relaxed);
    f.status.store(kStatusLive, std::memory_order_relaxed);
    f.expires.store(now_t + timeout(f), std::memory_order_relaxed);
    // Published: the entry before its slots (release), the original first.
    so->store((uint64_t{lo.sig} << 32) | slot_ref(i, Dir::kOrig), std::memory_order_release);
    sr->store((uint64_t{lr.sig} << 32) | slot_ref(i, Dir::kReply), std::memory_order_release);
    in_use_.store(in_use_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    hit = {i, Dir::kOrig};
    wlock_.unlock();
    c.count(r);
    return r;
}

// --- ICMP errors ---

Result ConnTable::match_icmp_error(const rte_mbuf *m, const PktMeta &md, bool v6, uint64_t now,
                                   Hit &hit, Counters &c) const noexcept {
    auto done = [&](Result r) {
        c.count(r);
        return r;
    };
    const uint32_t end = ip_end(m, md, v6);
    uint8_t buf[40];
    const uint8_t outer_proto = v6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP};
    const uint8_t *icmp =
        md.l4_off != 0 && md.l4_off + 8u <= end ? read(m, md.l4_off, 8, buf) : nullptr;
    if (icmp == nullptr) {
        return done(Result::kIcmpErrorTruncated);
    }
    if (md.l4_proto != outer_proto || !error_type(outer_proto, icmp[0])) {
        return done(Result::kIcmpErrorBadQuote);
    }
    // The quoted packet: an IP header of the outer family, then at least the
    // first 8 bytes of its L4 header (RFC 792; RFC 4443 quotes more).
    const uint32_t q = md.l4_off + 8;
    FlowKey k;
    uint32_t l4 = 0;
    uint8_t proto = 0;
    if (v6) {
        const uint8_t *ip = q + 40 <= end ? read(m, q, 40, buf) : nullptr;
        if (ip == nullptr) {
            return done(Result::kIcmpErrorTruncated);
        }
        if ((ip[0] >> 4) != 6) {
            return done(Result::kIcmpErrorBadQuote);
        }
        k = FlowKey::v6(ip + 8, ip + 24, 0, {}, {});
        proto = ip[6];
        l4 = q + 40;
        // Extension headers (bounded): hop-by-hop, routing, destination
        // options, fragment (a first one only).
        for (int n = 0;; n++) {
            if (proto != 0 && proto != 43 && proto != 60 && proto != 44) {
                break;
            }
            if (n == 8) {
                return done(Result::kIcmpErrorBadQuote);
            }
            uint8_t eb[8];
            const uint8_t *e = l4 + 8 <= end ? read(m, l4, 8, eb) : nullptr;
            if (e == nullptr) {
                return done(Result::kIcmpErrorTruncated);
            }
            if (proto == 44) {
                if ((rd16(e + 2) & 0xfff8) != 0) {
                    return done(Result::kIcmpErrorBadQuote);  // a later fragment: no ports
                }
                proto = e[0];
                l4 += 8;
            } else {
                proto = e[0];
                l4 += (e[1] + 1u) * 8;
            }
        }
    } else {
        const uint8_t *ip = q + 20 <= end ? read(m, q, 20, buf) : nullptr;
        if (ip == nullptr) {
            return done(Result::kIcmpErrorTruncated);
        }
        const uint32_t ihl = (ip[0] & 0xf) * 4u;
        if ((ip[0] >> 4) != 4 || ihl < 20) {
            return done(Result::kIcmpErrorBadQuote);
        }
        if ((rd16(ip + 6) & 0x1fff) != 0) {
            return done(Result::kIcmpErrorBadQuote);  // a later fragment: no ports
        }
        uint32_t s, d;
        std::memcpy(&s, ip + 12, 4);
        std::memcpy(&d, ip + 16, 4);
        k = FlowKey::v4(s, d, 0, {}, {});
        proto = ip[9];
        l4 = q + ihl;
    }
    uint32_t ports;
    const Result r = l4_ports(m, l4, end, proto, ports);
    k.proto = proto;
    k.sport = net::Be16::from_raw(static_cast<uint16_t>(ports));
    k.dport = net::Be16::from_raw(static_cast<uint16_t>(ports >> 16));
    if (r == Result::kTruncated) {
        return done(Result::kIcmpErrorTruncated);
    }
    if (r != Result::kOk || (is_icmp(proto) && proto != outer_proto)) {
        return done(Result::kIcmpErrorBadQuote);  // an error about an error, or not echo
    }
    // The quoted packet went the other way: its inverse is the tuple of the
    // error's own direction (after a NAT too: the quote is as translated).
    if (!lookup(k.inverted(), now, hit)) {
        return done(Result::kIcmpErrorNoFlow);
    }
    return done(Result::kOk);
}

// --- ageing ---

void ConnTable::reclaim() noexcept {
    wlock_.lock();
    while (batch_n_ > 0) {
        const Batch &b = batches_[batch_head_];
        if (rte_rcu_qsbr_check(qsbr_, b.token, false) != 1) {
            break;
        }
        for (uint32_t j = 0; j < b.n; j++) {
            const uint32_t n = n_free_.load(std::memory_order_relaxed);
            free_[n].store(dead_[dead_head_], std::memory_order_relaxed);
            n_free_.store(n + 1, std::memory_order_relaxed);
            dead_head_ = dead_head_ + 1 == capacity_ ? 0 : dead_head_ + 1;
        }
        dead_n_.store(dead_n_.load(std::memory_order_relaxed) - b.n, std::memory_order_relaxed);
        dead_batched_ -= b.n;
        batch_head_ = (batch_head_ + 1) % kMaxBatches;
        batch_n_--;
    }
    wlock_.unlock();
}

uint32_t ConnTable::age(uint64_t now, uint32_t max_slots) noexcept {
    if (ageing_.exchange(true, std::memory_order_acquire)) {
        return 0;
    }
    reclaim();
    const uint32_t now_t = ticks(now);
    uint32_t unlinked = 0;
    for (uint32_t k = 0; k < max_slots && k < capacity_; k++) {
        const uint32_t i = age_cursor_;
        age_cursor_ = i + 1 == capacity_ ? 0 : i + 1;
        const Flow &f = flows_[i];
        const uint8_t st = f.status.load(std::memory_order_relaxed);
        if (!(st & kStatusLive) || usable(f, now_t)) {
            continue;
        }
        wlock_.lock();
        // Checked again under the lock: create() may have replaced it.
        if ((f.status.load(std::memory_order_relaxed) & kStatusLive) && !usable(f, now_t)) {
            unlink_locked(i);
            unlinked++;
        }
        wlock_.unlock();
    }
    // Everything unlinked so far (here or by create) waits for the grace
    // period that starts now.
    wlock_.lock();
    const uint32_t n = dead_n_.load(std::memory_order_relaxed);
    if (n > dead_batched_ && batch_n_ < kMaxBatches) {
        batches_[(batch_head_ + batch_n_) % kMaxBatches] = {rte_rcu_qsbr_start(qsbr_),
                                                            n - dead_batched_};
        batch_n_++;
        dead_batched_ = n;
    }
    wlock_.unlock();
    ageing_.store(false, std::memory_order_release);
    return unlinked;
}

// --- introspection ---

bool Filter::matches(const FlowKey &orig, const FlowKey &reply, TcpState st, L4Kind k) const {
    if (family != 0 && orig.family != family) {
        return false;
    }
    if (proto && orig.proto != *proto) {
        return false;
    }
    if (state && (k != L4Kind::kTcp || st != *state)) {
        return false;
    }
    if (addr) {
        const size_t n = addr->family == 6 ? 16 : 4;
        auto eq = [&](const std::array<uint8_t, 16> &a) {
            return std::memcmp(a.data(), addr->bytes.data(), n) == 0;
        };
        if (orig.family != addr->family ||
            !(eq(orig.src) || eq(orig.dst) || eq(reply.src) || eq(reply.dst))) {
            return false;
        }
    }
    auto same = [&](const std::optional<Addr> &a, const std::array<uint8_t, 16> &b) {
        return !a || (orig.family == a->family &&
                      std::memcmp(b.data(), a->bytes.data(), a->family == 6 ? 16 : 4) == 0);
    };
    if (!same(src, orig.src) || !same(dst, orig.dst)) {
        return false;
    }
    if (port) {
        if (!has_ports(orig.proto)) {
            return false;
        }
        const uint16_t p = *port;
        if (orig.sport.host() != p && orig.dport.host() != p && reply.sport.host() != p &&
            reply.dport.host() != p) {
            return false;
        }
    }
    return true;
}

size_t ConnTable::snapshot(uint32_t *cursor, const Filter &f, uint64_t now, FlowInfo *out,
                           size_t max) {
    constexpr uint32_t kChunk = 256;
    const uint32_t now_t = ticks(now);
    const uint64_t tsc_per_ms = std::max<uint64_t>(tsc_hz_ / 1000, 1);
    size_t n = 0;
    while (*cursor < capacity_ && n < max) {
        wlock_.lock();  // no entry is reused or created meanwhile
        const uint32_t stop = std::min(capacity_, *cursor + kChunk);
        for (; *cursor < stop && n < max; ++*cursor) {
            const Flow &fl = flows_[*cursor];
            if (!(fl.status.load(std::memory_order_relaxed) & kStatusLive)) {
                continue;
            }
            const auto st = static_cast<TcpState>(fl.state.load(std::memory_order_relaxed));
            if (!f.matches(fl.tuple[0], fl.tuple[1], st, fl.kind())) {
                continue;
            }
            FlowInfo &o = out[n++];
            o.id = *cursor;
            o.orig = fl.tuple[0];
            o.reply = fl.tuple[1];
            o.kind = fl.kind();
            o.state = st;
            o.status = fl.status.load(std::memory_order_relaxed);
            o.changes = fl.changes;
            o.nat = {fl.nat_service, fl.nat_backend, fl.nat_flags};
            const auto left =
                static_cast<int32_t>(fl.expires.load(std::memory_order_relaxed) - now_t);
            o.expires_in_ms =
                usable(fl, now_t) && left > 0 ? (uint64_t(left) << shift_) / tsc_per_ms : 0;
        }
        wlock_.unlock();
    }
    return n;
}

size_t ConnTable::count(const Filter &f, uint64_t now) {
    const uint32_t now_t = ticks(now);
    size_t n = 0;
    for (uint32_t i = 0; i < capacity_; i++) {
        const Flow &fl = flows_[i];
        // Entries are never unmapped: a racy read counts a flow or not.
        if (usable(fl, now_t) &&
            f.matches(fl.tuple[0], fl.tuple[1],
                      static_cast<TcpState>(fl.state.load(std::memory_order_relaxed)), fl.kind())) {
            n++;
        }
    }
    return n;
}

size_t ConnTable::flush(const Filter &f) {
    constexpr uint32_t kChunk = 256;
    size_t n = 0;
    for (uint32_t c = 0; c < capacity_; c += kChunk) {
        wlock_.lock();
        for (uint32_t i = c; i < std::min(capacity_, c + kChunk); i++) {
            Flow &fl = flows_[i];
            const uint8_t st = fl.status.load(std::memory_order_relaxed);
            if ((st & (kStatusLive | kStatusDying)) != kStatusLive ||
                !f.matches(fl.tuple[0], fl.tuple[1],
                           static_cast<TcpState>(fl.state.load(std::memory_order_relaxed)),
                           fl.kind())) {
                continue;
            }
            fl.status.fetch_or(kStatusDying, std::memory_order_relaxed);
            n++;
        }
        wlock_.unlock();
    }
    return n;
}

}  // namespace fwd::dp::ct
