// The overlay tables (overlay.hpp) and the registrations the overlay stages
// share: the worker slot and the two next-hop kinds.
#include "fwd/dp/overlay.hpp"

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_udp.h>
#include <rte_vxlan.h>

#include <algorithm>
#include <cstring>

#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::overlay {

namespace {

// True when the first len bits of a and p are equal.
bool prefix_match6(const uint8_t *a, const uint8_t *p, uint8_t len) {
    const uint8_t whole = len / 8;
    if (std::memcmp(a, p, whole) != 0) {
        return false;
    }
    const uint8_t rest = len % 8;
    if (rest == 0) {
        return true;
    }
    const auto mask = static_cast<uint8_t>(0xff00u >> rest);
    return ((a[whole] ^ p[whole]) & mask) == 0;
}

// Slot counts: a power of two at least twice the entries.
uint32_t slots_for(size_t n) {
    uint32_t s = 1;
    while (s < 2 * n) {
        s <<= 1;
    }
    return s;
}

uint32_t hash4(uint32_t a) {
    return static_cast<uint32_t>((uint64_t{a} * 0x9E3779B97F4A7C15ull) >> 32);
}

uint32_t hash6(uint64_t hi, uint64_t lo) {
    return hash4(static_cast<uint32_t>((hi ^ (lo * 0x9E3779B97F4A7C15ull)) >> 32) ^
                 static_cast<uint32_t>(lo));
}

// Tunnel::udp_sum: the fields in the order and at the (even) offsets the
// packet has them, so the 16-bit words pair up as they do there.
uint32_t vxlan_fixed_sum(const Tunnel &t) {
    uint8_t b[32 + 2 + 2 + 8 + RTE_ETHER_HDR_LEN];
    size_t n = 0;
    auto put = [&](const void *p, size_t len) {
        std::memcpy(b + n, p, len);
        n += len;
    };
    if (t.v6) {
        put(t.src6.data(), 16);
        put(t.dst6.data(), 16);
    } else {
        put(&t.src4, 4);
        put(&t.dst4, 4);
    }
    const uint16_t proto = rte_cpu_to_be_16(IPPROTO_UDP), port = rte_cpu_to_be_16(t.dst_port);
    put(&proto, 2);
    put(&port, 2);
    const uint32_t flags = rte_cpu_to_be_32(kVxlanFlagI), vni = rte_cpu_to_be_32(t.vni << 8);
    put(&flags, 4);
    put(&vni, 4);
    put(t.inner_dst_mac.data(), 6);
    put(t.inner_src_mac.data(), 6);
    const uint16_t type = rte_cpu_to_be_16(t.v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
    put(&type, 2);
    return __rte_raw_cksum_reduce(raw_sum(b, static_cast<uint32_t>(n), 0));
}

// Tunnel::hdr and ip4_sum (VXLAN).
void vxlan_template(Tunnel &t) {
    uint8_t *h = t.hdr.data();
    size_t ip_len;
    if (t.v6) {
        auto *ip = reinterpret_cast<rte_ipv6_hdr *>(h);
        ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
        ip->proto = IPPROTO_UDP;
        ip->hop_limits = kOuterTtl;
        std::memcpy(ip->src_addr, t.src6.data(), 16);
        std::memcpy(ip->dst_addr, t.dst6.data(), 16);
        ip_len = sizeof(rte_ipv6_hdr);
    } else {
        auto *ip = reinterpret_cast<rte_ipv4_hdr *>(h);
        ip->version_ihl = RTE_IPV4_VHL_DEF;
        ip->time_to_live = kOuterTtl;
        ip->next_proto_id = IPPROTO_UDP;
        ip->src_addr = t.src4;
        ip->dst_addr = t.dst4;
        ip_len = sizeof(rte_ipv4_hdr);
        t.ip4_sum = __rte_raw_cksum_reduce(raw_sum(h, sizeof(rte_ipv4_hdr), 0));
    }
    auto *udp = reinterpret_cast<rte_udp_hdr *>(h + ip_len);
    udp->dst_port = rte_cpu_to_be_16(t.dst_port);
    auto *vx = reinterpret_cast<rte_vxlan_hdr *>(udp + 1);
    vx->vx_flags = rte_cpu_to_be_32(kVxlanFlagI);
    vx->vx_vni = rte_cpu_to_be_32(t.vni << 8);
    auto *eth = reinterpret_cast<rte_ether_hdr *>(vx + 1);
    std::memcpy(eth->dst_addr.addr_bytes, t.inner_dst_mac.data(), 6);
    std::memcpy(eth->src_addr.addr_bytes, t.inner_src_mac.data(), 6);
    eth->ether_type = rte_cpu_to_be_16(t.v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
}

}  // namespace

void AddrSet4::assign(const std::vector<uint32_t> &addrs_be) {
    slots_.assign(slots_for(addrs_be.size()), 0);
    mask_ = static_cast<uint32_t>(slots_.size() - 1);
    n_ = 0;
    for (uint32_t a : addrs_be) {
        if (a == 0 || contains(a)) {
            continue;
        }
        uint32_t i = hash4(a) & mask_;
        while (slots_[i] != 0) {
            i = (i + 1) & mask_;
        }
        slots_[i] = a;
        n_++;
    }
}

bool AddrSet4::contains(uint32_t a) const noexcept {
    if (a == 0) {
        return false;
    }
    for (uint32_t i = hash4(a) & mask_;; i = (i + 1) & mask_) {
        if (slots_[i] == a) {
            return true;
        }
        if (slots_[i] == 0) {
            return false;
        }
    }
}

void AddrSet6::assign(const std::vector<std::array<uint8_t, 16>> &addrs) {
    slots_.assign(slots_for(addrs.size()), {0, 0});
    mask_ = static_cast<uint32_t>(slots_.size() - 1);
    n_ = 0;
    for (const auto &a : addrs) {
        std::array<uint64_t, 2> v;
        std::memcpy(v.data(), a.data(), 16);
        if ((v[0] | v[1]) == 0 || contains(a.data())) {
            continue;
        }
        uint32_t i = hash6(v[0], v[1]) & mask_;
        while ((slots_[i][0] | slots_[i][1]) != 0) {
            i = (i + 1) & mask_;
        }
        slots_[i] = v;
        n_++;
    }
}

bool AddrSet6::contains(const uint8_t *addr) const noexcept {
    uint64_t hi, lo;
    std::memcpy(&hi, addr, 8);
    std::memcpy(&lo, addr + 8, 8);
    if ((hi | lo) == 0) {
        return false;
    }
    for (uint32_t i = hash6(hi, lo) & mask_;; i = (i + 1) & mask_) {
        const auto &s = slots_[i];
        if (s[0] == hi && s[1] == lo) {
            return true;
        }
        if ((s[0] | s[1]) == 0) {
            return false;
        }
    }
}

bool DecapConfig::is_peer4(uint32_t addr_be) const {
    return peers4.contains(addr_be);
}

bool DecapConfig::is_peer6(const uint8_t *addr) const {
    return peers6.contains(addr);
}

bool DecapConfig::in_pool4(uint32_t addr_be) const {
    const uint32_t a = rte_be_to_cpu_32(addr_be);
    for (const net::Prefix4 &p : pools4) {
        const uint32_t mask = p.len == 0 ? 0 : ~uint32_t{0} << (32 - std::min<uint8_t>(p.len, 32));
        if ((a & mask) == p.addr.host()) {
            return true;
        }
    }
    return false;
}

bool DecapConfig::in_pool6(const uint8_t *addr) const {
    for (const net::Prefix6 &p : pools6) {
        if (prefix_match6(addr, p.addr.data(), std::min<uint8_t>(p.len, 128))) {
            return true;
        }
    }
    return false;
}

OverlayTables::OverlayTables() : tunnels_(kMaxTunnels, Tunnel{}), used_(kMaxTunnels, false) {
    free_.reserve(kMaxTunnels);
    for (uint32_t i = kMaxTunnels; i-- > 0;) {
        free_.push_back(i);  // 0 is handed out first
    }
}

uint32_t OverlayTables::tunnel_alloc(const Tunnel &t) {
    const bool bad = (t.type == TunnelType::kIpip && t.v6) ||
                     (t.type != TunnelType::kVxlan && t.type != TunnelType::kIpip) ||
                     t.vni > kMaxVni || (t.type == TunnelType::kVxlan && t.dst_port == 0) ||
                     t.underlay_nh == kNhInvalid || t.underlay_nh >= kMaxNextHops;
    if (bad || free_.empty()) {
        return UINT32_MAX;
    }
    const uint32_t i = free_.back();
    free_.pop_back();
    tunnels_[i] = t;
    Tunnel &n = tunnels_[i];
    n.udp_sum = 0;
    n.hdr = {};
    n.ip4_sum = 0;
    if (t.type == TunnelType::kVxlan) {
        n.udp_sum = vxlan_fixed_sum(t);
        vxlan_template(n);
    }
    used_[i] = true;
    // The next hop naming this entry is published after this store.
    std::atomic_thread_fence(std::memory_order_release);
    return i;
}

void OverlayTables::tunnel_free(uint32_t i) {
    if (!in_use(i)) {
        return;
    }
    tunnels_[i] = Tunnel{};
    used_[i] = false;
    free_.push_back(i);
}

const DecapConfig *OverlayTables::swap_decap(const DecapConfig *next) {
    return decap_.exchange(next, std::memory_order_acq_rel);
}

uint16_t worker_slot() {
    static const uint16_t slot = PipelineRegistry::global().add_worker_slot("overlay");
    return slot;
}

NhKind vxlan_nh_kind() {
    static const NhKind kind = PipelineRegistry::global().add_nh_kind("vxlan");
    return kind;
}

NhKind ipip_nh_kind() {
    static const NhKind kind = PipelineRegistry::global().add_nh_kind("ipip");
    return kind;
}

// Registered at load, whether or not a stage asks first.
FWD_ON_LOAD(worker_slot(); vxlan_nh_kind(); ipip_nh_kind());

}  // namespace fwd::dp::overlay
