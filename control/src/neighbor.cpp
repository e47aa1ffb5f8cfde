#include "fwd/control/neighbor.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

namespace fwd::control {
namespace {

constexpr uint16_t kEthIp4 = 0x0800;
constexpr uint16_t kEthArp = 0x0806;
constexpr uint16_t kEthVlan = 0x8100;
constexpr uint16_t kEthIp6 = 0x86dd;
constexpr size_t kEthHdr = 14;
constexpr size_t kVlanHdr = 4;
constexpr size_t kEthMinFrame = 60;  // without FCS

constexpr size_t kArpLen = 28;
constexpr uint16_t kArpHwEther = 1;
constexpr uint16_t kArpOpRequest = 1;
constexpr uint16_t kArpOpReply = 2;

constexpr size_t kIp6Hdr = 40;
constexpr uint8_t kProtoIcmp6 = 58;
constexpr uint8_t kNdHopLimit = 255;
constexpr uint8_t kIcmp6NeighSolicit = 135;
constexpr uint8_t kIcmp6NeighAdvert = 136;
constexpr size_t kNdMsgLen = 24;  // type, code, checksum, flags / reserved, target
constexpr uint8_t kNdOptSourceLl = 1;
constexpr uint8_t kNdOptTargetLl = 2;
constexpr uint8_t kNaFlagSolicited = 0x40;

constexpr std::array<uint8_t, 6> kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

uint16_t rd16(const uint8_t *p) {
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

uint32_t rd32(const uint8_t *p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void put16(std::vector<uint8_t> &f, uint16_t v) {
    f.push_back(static_cast<uint8_t>(v >> 8));
    f.push_back(static_cast<uint8_t>(v));
}

void put32(std::vector<uint8_t> &f, uint32_t v) {
    put16(f, static_cast<uint16_t>(v >> 16));
    put16(f, static_cast<uint16_t>(v));
}

void put(std::vector<uint8_t> &f, const uint8_t *p, size_t n) {
    f.insert(f.end(), p, p + n);
}

void put_eth(std::vector<uint8_t> &f, const uint8_t *dst, const net::MacAddr &src, uint16_t type) {
    put(f, dst, 6);
    put(f, src.data(), 6);
    put16(f, type);
}

// Ones' complement sum of 16-bit big-endian words (RFC 1071), not folded.
uint32_t sum16(const uint8_t *p, size_t len, uint32_t acc) {
    for (size_t i = 0; i + 1 < len; i += 2) {
        acc += rd16(p + i);
    }
    if (len % 2 != 0) {
        acc += uint32_t{p[len - 1]} << 8;
    }
    return acc;
}

bool unusable_mac(const net::MacAddr &m) {
    return m.is_zero() || m.is_multicast();
}

// Limited broadcast, multicast (224/4) and the unspecified address never
// name a neighbor.
bool bad_ip4(net::Ip4Addr a) {
    return a.host() == 0 || a.host() == 0xffffffff || (a.host() >> 28) == 0xe;
}

bool bad_ip6(const net::Ip6Addr &a) {
    return a == net::Ip6Addr() || a.is_multicast();
}

}  // namespace

const char *neigh_state_name(NeighState s) {
    switch (s) {
        case NeighState::kIncomplete:
            return "incomplete";
        case NeighState::kReachable:
            return "reachable";
        case NeighState::kStale:
            return "stale";
        case NeighState::kProbe:
            return "probe";
        case NeighState::kFailed:
            return "failed";
    }
    return "unknown";
}

net::Ip6Addr solicited_node_addr(const net::Ip6Addr &target) {
    std::array<uint8_t, 16> b{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff};
    b[13] = target.bytes()[13];
    b[14] = target.bytes()[14];
    b[15] = target.bytes()[15];
    return net::Ip6Addr::from_bytes(b.data());
}

net::MacAddr ip6_multicast_mac(const net::Ip6Addr &group) {
    const auto &g = group.bytes();
    return net::MacAddr({0x33, 0x33, g[12], g[13], g[14], g[15]});
}

uint16_t icmp6_checksum(const net::Ip6Addr &src, const net::Ip6Addr &dst, const uint8_t *icmp,
                        size_t len) {
    uint32_t acc = sum16(src.data(), 16, 0);
    acc = sum16(dst.data(), 16, acc);
    acc += static_cast<uint32_t>(len >> 16) + static_cast<uint32_t>(len & 0xffff);
    acc += kProtoIcmp6;
    acc = sum16(icmp, len, acc);
    while (acc >> 16) {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    return static_cast<uint16_t>(~acc);
}

std::vector<uint8_t> build_arp_request(const net::MacAddr &src_mac, net::Ip4Addr src_ip,
                                       net::Ip4Addr target,
                                       const std::optional<net::MacAddr> &dst_mac) {
    std::vector<uint8_t> f;
    f.reserve(kEthMinFrame);
    put_eth(f, dst_mac ? dst_mac->data() : kBroadcast.data(), src_mac, kEthArp);
    put16(f, kArpHwEther);
    put16(f, kEthIp4);
    f.push_back(6);  // hardware address length
    f.push_back(4);  // protocol address length
    put16(f, kArpOpRequest);
    put(f, src_mac.data(), 6);
    put32(f, src_ip.host());
    f.insert(f.end(), 6, 0);  // target hardware address: unknown
    put32(f, target.host());
    f.resize(kEthMinFrame, 0);
    return f;
}

std::vector<uint8_t> build_neighbor_solicitation(const net::MacAddr &src_mac,
                                                 const net::Ip6Addr &src_ip,
                                                 const net::Ip6Addr &target,
                                                 const std::optional<net::MacAddr> &dst_mac) {
    const net::Ip6Addr dst_ip = dst_mac ? target : solicited_node_addr(target);
    const net::MacAddr eth_dst = dst_mac ? *dst_mac : ip6_multicast_mac(dst_ip);
    constexpr size_t kIcmpLen = kNdMsgLen + 8;  // plus the source link-layer option

    std::vector<uint8_t> f;
    f.reserve(kEthHdr + kIp6Hdr + kIcmpLen);
    put_eth(f, eth_dst.data(), src_mac, kEthIp6);
    put32(f, 0x60000000);  // version 6, traffic class 0, flow label 0
    put16(f, kIcmpLen);
    f.push_back(kProtoIcmp6);
    f.push_back(kNdHopLimit);
    put(f, src_ip.data(), 16);
    put(f, dst_ip.data(), 16);
    const size_t icmp = f.size();
    f.push_back(kIcmp6NeighSolicit);
    f.push_back(0);  // code
    put16(f, 0);     // checksum, filled below
    put32(f, 0);     // reserved
    put(f, target.data(), 16);
    f.push_back(kNdOptSourceLl);
    f.push_back(1);  // option length in units of 8 bytes
    put(f, src_mac.data(), 6);
    const uint16_t ck = icmp6_checksum(src_ip, dst_ip, f.data() + icmp, kIcmpLen);
    f[icmp + 2] = static_cast<uint8_t>(ck >> 8);
    f[icmp + 3] = static_cast<uint8_t>(ck);
    return f;
}

NeighborTable::NeighborTable(NeighborParams p, net::MacAddr our_mac,
                             std::optional<net::Ip4Addr> our_ip4,
                             std::optional<net::Ip6Addr> our_ip6)
    : p_(p), our_mac_(our_mac), our_ip4_(our_ip4), our_ip6_(our_ip6) {
    if (p_.retrans_ms == 0) {
        throw NeighborError("neighbor params: retrans_ms must be at least 1");
    }
    if (p_.max_probes == 0) {
        throw NeighborError("neighbor params: max_probes must be at least 1");
    }
    if (unusable_mac(our_mac_)) {
        throw NeighborError("neighbor table: our MAC " + our_mac_.str() + " is zero or multicast");
    }
    if (our_ip4_ && bad_ip4(*our_ip4_)) {
        throw NeighborError("neighbor table: our IPv4 " + our_ip4_->str() +
                            " is not a unicast address");
    }
    if (our_ip6_ && bad_ip6(*our_ip6_)) {
        throw NeighborError("neighbor table: our IPv6 " + our_ip6_->str() +
                            " is not a unicast address");
    }
}

void NeighborTable::ref(const net::IpAddr &ip, uint64_t now_ms) {
    const std::string what = "neighbor ref " + ip.str();
    if (ip.family() == net::Family::kIp4) {
        if (bad_ip4(ip.v4())) {
            throw NeighborError(what + ": not a unicast address");
        }
        if (!our_ip4_) {
            throw NeighborError(what + ": no IPv4 address of ours to send ARP from");
        }
        if (ip.v4() == *our_ip4_) {
            throw NeighborError(what + ": that is our own address");
        }
    } else {
        if (bad_ip6(ip.v6())) {
            throw NeighborError(what + ": not a unicast address");
        }
        if (!our_ip6_) {
            throw NeighborError(what + ": no IPv6 address of ours to send NS from");
        }
        if (ip.v6() == *our_ip6_) {
            throw NeighborError(what + ": that is our own address");
        }
    }

    auto [it, created] = entries_.try_emplace(ip);
    Entry &e = it->second;
    e.refs++;
    if (created) {
        start_resolving(ip, e, now_ms);
    } else if (usable(e.state)) {
        pending_.push_back({NeighAction::kResolved, ip, e.mac, {}, nullptr});
    } else if (e.state == NeighState::kFailed) {
        e.retry_wanted = true;
    }
}

void NeighborTable::unref(const net::IpAddr &ip) {
    auto it = entries_.find(ip);
    if (it == entries_.end()) {
        throw NeighborError("neighbor unref " + ip.str() + ": not referenced");
    }
    Entry &e = it->second;
    if (--e.refs > 0) {
        return;
    }
    for (void *pkt : e.queue) {
        pending_.push_back({NeighAction::kDrop, ip, {}, {}, pkt});
    }
    entries_.erase(it);
}

void NeighborTable::solicit(const net::IpAddr &ip, const std::optional<net::MacAddr> &unicast) {
    NeighAction a{NeighAction::kSend, ip, {}, {}, nullptr};
    if (ip.family() == net::Family::kIp4) {
        a.frame = build_arp_request(our_mac_, *our_ip4_, ip.v4(), unicast);
    } else {
        a.frame = build_neighbor_solicitation(our_mac_, *our_ip6_, ip.v6(), unicast);
    }
    pending_.push_back(std::move(a));
}

void NeighborTable::start_resolving(const net::IpAddr &ip, Entry &e, uint64_t now_ms) {
    e.state = NeighState::kIncomplete;
    e.mac = {};
    e.probes = 1;
    e.retry_wanted = false;
    e.updated_ms = now_ms;
    e.timer_ms = now_ms + p_.retrans_ms;
    solicit(ip, std::nullopt);
}

void NeighborTable::become_usable(const net::IpAddr &ip, Entry &e, const net::MacAddr &mac,
                                  NeighState state, uint64_t now_ms) {
    const bool announce = !usable(e.state) || e.mac != mac;
    e.state = state;
    e.mac = mac;
    e.probes = 0;
    e.retry_wanted = false;
    e.updated_ms = now_ms;
    e.timer_ms = now_ms + (state == NeighState::kReachable ? p_.reachable_ms : p_.stale_probe_ms);
    if (announce) {
        pending_.push_back({NeighAction::kResolved, ip, mac, {}, nullptr});
    }
    for (void *pkt : e.queue) {
        pending_.push_back({NeighAction::kFlush, ip, {}, {}, pkt});
    }
    e.queue.clear();
}

void NeighborTable::fail(const net::IpAddr &ip, Entry &e, uint64_t now_ms) {
    e.state = NeighState::kFailed;
    e.mac = {};
    e.probes = 0;
    e.retry_wanted = false;
    e.updated_ms = now_ms;
    e.timer_ms = now_ms + p_.failed_retry_ms;
    pending_.push_back({NeighAction::kUnresolved, ip, {}, {}, nullptr});
    for (void *pkt : e.queue) {
        pending_.push_back({NeighAction::kDrop, ip, {}, {}, pkt});
    }
    e.queue.clear();
}

bool NeighborTable::learn_entry(const net::IpAddr &ip, const net::MacAddr &mac, bool solicited,
                                uint64_t now_ms) {
    auto it = entries_.find(ip);
    if (it == entries_.end() || unusable_mac(mac)) {
        return false;
    }
    Entry &e = it->second;
    if (solicited) {
        become_usable(ip, e, mac, NeighState::kReachable, now_ms);
        return true;
    }
    if (usable(e.state) && e.mac == mac) {
        return false;  // an announcement of what we know: nothing changes
    }
    become_usable(ip, e, mac, NeighState::kStale, now_ms);
    return true;
}

void NeighborTable::learn(const net::IpAddr &ip, const net::MacAddr &mac, bool solicited,
                          uint64_t now_ms) {
    learn_entry(ip, mac, solicited, now_ms);
}

void NeighborTable::queue(const net::IpAddr &ip, void *pkt) {
    auto it = entries_.find(ip);
    if (it == entries_.end()) {
        pending_.push_back({NeighAction::kDrop, ip, {}, {}, pkt});
        return;
    }
    Entry &e = it->second;
    switch (e.state) {
        case NeighState::kReachable:
        case NeighState::kStale:
        case NeighState::kProbe:
            pending_.push_back({NeighAction::kFlush, ip, {}, {}, pkt});
            return;
        case NeighState::kFailed:
            e.retry_wanted = true;
            pending_.push_back({NeighAction::kDrop, ip, {}, {}, pkt});
            return;
        case NeighState::kIncomplete:
            break;
    }
    if (p_.queue_len == 0) {
        pending_.push_back({NeighAction::kDrop, ip, {}, {}, pkt});
        return;
    }
    if (e.queue.size() >= p_.queue_len) {
        pending_.push_back({NeighAction::kDrop, ip, {}, {}, e.queue.front()});
        e.queue.pop_front();
    }
    e.queue.push_back(pkt);
}

// Runs the entry's timers up to now_ms. Silent transitions (reachable ->
// stale -> probe) happen at the time they were due; a solicitation is sent
// at now_ms and re-arms the timer from there, which ends the loop.
void NeighborTable::advance(const net::IpAddr &ip, Entry &e, uint64_t now_ms) {
    while (e.timer_ms <= now_ms) {
        const uint64_t due = e.timer_ms;
        switch (e.state) {
            case NeighState::kReachable:
                e.state = NeighState::kStale;
                e.updated_ms = due;
                e.timer_ms = due + p_.stale_probe_ms;
                break;
            case NeighState::kStale:
                e.state = NeighState::kProbe;
                e.updated_ms = due;
                e.probes = 1;
                e.timer_ms = now_ms + p_.retrans_ms;
                solicit(ip, e.mac);
                break;
            case NeighState::kIncomplete:
            case NeighState::kProbe:
                if (e.probes >= p_.max_probes) {
                    fail(ip, e, now_ms);
                    return;
                }
                e.probes++;
                e.timer_ms = now_ms + p_.retrans_ms;
                solicit(ip, e.state == NeighState::kProbe ? std::optional(e.mac) : std::nullopt);
                break;
            case NeighState::kFailed:
                if (e.retry_wanted) {
                    start_resolving(ip, e, now_ms);
                }
                return;
        }
    }
}

std::vector<NeighAction> NeighborTable::take_actions(uint64_t now_ms) {
    for (auto &[ip, e] : entries_) {
        advance(ip, e, now_ms);
    }
    std::vector<NeighAction> out;
    out.swap(pending_);
    return out;
}

std::optional<net::MacAddr> NeighborTable::resolved_mac(const net::IpAddr &ip) const {
    auto it = entries_.find(ip);
    if (it == entries_.end() || !usable(it->second.state)) {
        return std::nullopt;
    }
    return it->second.mac;
}

std::vector<NeighborInfo> NeighborTable::list(uint64_t now_ms) const {
    std::vector<NeighborInfo> out;
    out.reserve(entries_.size());
    for (const auto &[ip, e] : entries_) {
        NeighborInfo info;
        info.ip = ip;
        if (usable(e.state)) {
            info.mac = e.mac;
        }
        info.state = neigh_state_name(e.state);
        info.refs = e.refs;
        info.queued = e.queue.size();
        info.probes = e.probes;
        info.age_ms = now_ms > e.updated_ms ? now_ms - e.updated_ms : 0;
        out.push_back(std::move(info));
    }
    return out;
}

bool NeighborTable::on_frame(const uint8_t *frame, size_t len, uint64_t now_ms) {
    if (frame == nullptr || len < kEthHdr) {
        return false;
    }
    size_t off = 12;
    uint16_t type = rd16(frame + off);
    off += 2;
    if (type == kEthVlan) {
        if (len < off + kVlanHdr) {
            return false;
        }
        type = rd16(frame + off + 2);
        off += kVlanHdr;
    }
    if (type == kEthArp) {
        return on_arp(frame + off, len - off, now_ms);
    }
    if (type == kEthIp6) {
        return on_ip6(frame + off, len - off, now_ms);
    }
    return false;
}

bool NeighborTable::on_arp(const uint8_t *p, size_t len, uint64_t now_ms) {
    if (len < kArpLen || rd16(p) != kArpHwEther || rd16(p + 2) != kEthIp4 || p[4] != 6 ||
        p[5] != 4) {
        return false;
    }
    const uint16_t op = rd16(p + 6);
    const net::MacAddr sha = net::MacAddr::from_bytes(p + 8);
    const net::Ip4Addr spa = net::Ip4Addr::from_host(rd32(p + 14));
    const net::Ip4Addr tpa = net::Ip4Addr::from_host(rd32(p + 24));
    if (bad_ip4(spa)) {
        return false;
    }
    const bool gratuitous = spa == tpa;
    const bool to_us = our_ip4_ && tpa == *our_ip4_;
    bool solicited;
    if (op == kArpOpReply) {
        solicited = to_us && !gratuitous;
    } else if (op == kArpOpRequest) {
        if (!gratuitous && !to_us) {
            return false;  // someone else's question tells nothing about our entries
        }
        solicited = false;
    } else {
        return false;
    }
    return learn_entry(spa, sha, solicited, now_ms);
}

bool NeighborTable::on_ip6(const uint8_t *p, size_t len, uint64_t now_ms) {
    if (len < kIp6Hdr || (p[0] >> 4) != 6) {
        return false;
    }
    const size_t payload = rd16(p + 4);
    if (p[6] != kProtoIcmp6 || p[7] != kNdHopLimit || payload > len - kIp6Hdr ||
        payload < kNdMsgLen) {
        return false;
    }
    const net::Ip6Addr src = net::Ip6Addr::from_bytes(p + 8);
    const net::Ip6Addr dst = net::Ip6Addr::from_bytes(p + 24);
    const uint8_t *icmp = p + kIp6Hdr;
    if (icmp[0] != kIcmp6NeighAdvert || icmp[1] != 0 ||
        icmp6_checksum(src, dst, icmp, payload) != 0) {
        return false;
    }
    const bool solicited = (icmp[4] & kNaFlagSolicited) != 0;
    const net::Ip6Addr target = net::Ip6Addr::from_bytes(icmp + 8);
    if (target.is_multicast() || (solicited && dst.is_multicast())) {
        return false;
    }
    std::optional<net::MacAddr> tlla;
    for (size_t off = kNdMsgLen; off < payload;) {
        if (payload - off < 2) {
            return false;
        }
        const size_t opt_len = size_t{icmp[off + 1]} * 8;
        if (opt_len == 0 || opt_len > payload - off) {
            return false;
        }
        if (icmp[off] == kNdOptTargetLl && opt_len >= 8) {
            tlla = net::MacAddr::from_bytes(icmp + off + 2);
        }
        off += opt_len;
    }
    if (!tlla) {
        // RFC 4861 7.2.5: an advertisement without the option (Linux answers a unicast
        // solicitation that way) confirms the address we hold when solicited, and changes
        // nothing otherwise; an entry without an address (incomplete, failed) cannot use it.
        auto it = entries_.find(target);
        if (!solicited || it == entries_.end() || it->second.state == NeighState::kIncomplete ||
            it->second.state == NeighState::kFailed) {
            return false;
        }
        tlla = it->second.mac;
    }
    return learn_entry(target, *tlla, solicited, now_ms);
}

}  // namespace fwd::control
