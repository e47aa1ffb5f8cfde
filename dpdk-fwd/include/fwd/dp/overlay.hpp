// The overlays between nodes, the datapath side: VXLAN in Calico's wire
// format (UDP 4789 and VNI 4096 unless configured otherwise, an inner
// Ethernet header between the VTEP MACs)
// and IP-in-IP (Calico's tunl0). What the stages read
// (src/stages/vxlan_encap.cpp, vxlan_decap.cpp), written by the control
// thread only.
//
// Encapsulation. A route to a remote node's block points at a NextHop with
//   kind  = vxlan_nh_kind() or ipip_nh_kind(),
//   port  = the uplink,
//   mtu   = the uplink's MTU less the overhead (kVxlanOverhead4 / 6,
//           kIpipOverhead): route4 / route6 then answer a larger inner packet
//           with ICMP fragmentation needed / packet too big for that MTU,
//   group = the index of its Tunnel here (tunnel_alloc).
// The output stages put the outer headers on and send the packet on through
// the tunnel's underlay next hop.
//
// Publication:
//   tunnels  [C] tunnel_alloc writes the entry completely, then a release
//            fence: the next hop naming it (nh_alloc, then the route insert)
//            is published after. [W] read through the next hop's group.
//            Never changed in place: a new address or MAC is a new tunnel
//            (and next hop); the old one is freed after a grace period.
//   decap    [C] publishes an immutable DecapConfig with a release store
//            (swap_decap) and deletes the old one after a grace period
//            (ctx.defer). [W] loads it once per burst: the local hook's
//            dispatcher for the UDP port vxlan_decap takes (current_port),
//            the stage for the rest.
// The VXLAN UDP port (FelixConfiguration vxlanPort) travels as the VNI does:
// a change makes every tunnel again with the new Tunnel::dst_port (encap)
// and publishes a DecapConfig with the new port (decap); from then on UDP to
// the old port is not VXLAN here (icmp*_local: the host tap or
// local_unhandled, as any UDP to the node).
// Ownership: the control side owns every DecapConfig it publishes; the
// tables never delete one (swap_decap(nullptr) hands back the last).
//
// Per worker: the worker slot "overlay" (worker_slot()) holds the
// OverlayTables*; the control side sets it in every worker before they run.
// A worker whose slot is empty drops tunnel next hops (encap_no_overlay) and
// hands tunnel packets to the host tap (without one: vxlan_disabled,
// ipip_disabled).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "fwd/dp/tables.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::dp {
class Worker;
}

namespace fwd::dp::overlay {

inline constexpr uint16_t kDefaultVxlanPort = 4789;  // Calico / FelixConfiguration default
inline constexpr uint32_t kVxlanFlagI = 0x08000000;  // RFC 7348: a valid VNI
inline constexpr uint32_t kDefaultVni = 4096;
inline constexpr uint32_t kMaxTunnels = 4096;
// Outer Ethernet, IP, UDP and VXLAN headers / inner Ethernet header, as
// Calico counts them: 14 + 20 + 8 + 8 = 50 (IPv4 outer), 70 (IPv6 outer);
// IP-in-IP adds a 20-byte IPv4 header.
inline constexpr uint16_t kVxlanOverhead4 = 50, kVxlanOverhead6 = 70, kIpipOverhead = 20;
inline constexpr uint32_t kMaxVni = (1u << 24) - 1;
inline constexpr uint8_t kOuterTtl = 64;  // Linux: the route's hop limit, ip_default_ttl

enum class TunnelType : uint8_t { kVxlan, kIpip };

struct Tunnel {  // one remote node's tunnel end for one outer family
    TunnelType type;
    // Outer family; equals the inner family (IPv4 pools: IPv4 outer, IPv6
    // pools: IPv6 outer); IP-in-IP is IPv4 only.
    bool v6;
    uint32_t src4, dst4;  // network order: our node address, the remote node's
    std::array<uint8_t, 16> src6, dst6;
    std::array<uint8_t, 6> inner_src_mac;   // our VTEP MAC for this family (VXLAN)
    std::array<uint8_t, 6> inner_dst_mac;   // the remote node's VTEP MAC (VXLAN)
    uint32_t vni;                           // VXLAN, up to kMaxVni
    uint16_t dst_port = kDefaultVxlanPort;  // VXLAN: the outer UDP destination port, not 0
    // A next hop (kVia, or kResolve while its neighbour is unknown) to dst
    // out of the uplink.
    uint32_t underlay_nh;
    // Set by tunnel_alloc (what a caller gives is replaced): VXLAN, the one's
    // complement sum (pkt.hpp raw_sum) of what the tunnel fixes in the outer
    // UDP checksum: the pseudo-header's addresses and protocol, the UDP
    // destination port, the VXLAN header, the inner Ethernet header. The
    // stage adds the rest instead of reading back headers it just wrote
    // (loads over fresh narrower stores stall store forwarding).
    uint32_t udp_sum = 0;
    // Set by tunnel_alloc too (VXLAN): the outer headers after the outer
    // Ethernet one as the tunnel fixes them (IPv4 / IPv6, UDP, VXLAN, the
    // inner Ethernet header; 50 / 70 bytes), the fields each packet sets
    // (IPv4 TOS, total length, ID and checksum; IPv6 traffic class and
    // payload length; UDP source port, length and checksum) zero. The stage
    // copies it whole and fills those in. ip4_sum: the raw sum of the IPv4
    // template (its checksum is that plus the packet's fields).
    std::array<uint8_t, 72> hdr{};
    uint32_t ip4_sum = 0;
};

// Node addresses the workers look up once per tunnel packet: open
// addressing (a power of two of slots, at most half full, linear probing),
// one or two loads whatever the number of nodes. A binary search over 16
// nodes mispredicted on most packets of a mixed burst (a quarter of the
// cycles of IPv6 decapsulation, perf/run.py vxlan6-decap). The all-zero
// address marks an empty slot: 0.0.0.0 and :: are never a node's. Built on
// the control side; contains() is noexcept and allocates nothing.
class AddrSet4 {
  public:
    void assign(const std::vector<uint32_t> &addrs_be);  // network order
    bool contains(uint32_t addr_be) const noexcept;
    size_t size() const { return n_; }

  private:
    std::vector<uint32_t> slots_ = {0};
    uint32_t mask_ = 0;
    size_t n_ = 0;
};

class AddrSet6 {
  public:
    void assign(const std::vector<std::array<uint8_t, 16>> &addrs);
    bool contains(const uint8_t *addr) const noexcept;  // 16 bytes
    size_t size() const { return n_; }

  private:
    std::vector<std::array<uint64_t, 2>> slots_ = {{0, 0}};
    uint32_t mask_ = 0;
    size_t n_ = 0;
};

struct DecapConfig {  // immutable once published
    uint32_t vni = kDefaultVni;
    uint16_t port = kDefaultVxlanPort;  // the UDP destination port VXLAN arrives on, not 0
    bool vxlan4 = false, vxlan6 = false, ipip = false;  // what this node accepts
    // Ours: the inner destination MAC must be the one of the outer family.
    std::array<uint8_t, 6> vtep_mac4{}, vtep_mac6{};
    // Known node addresses (IPv4 in network order).
    AddrSet4 peers4;
    AddrSet6 peers6;
    // The inner source must be inside one.
    std::vector<net::Prefix4> pools4;
    std::vector<net::Prefix6> pools6;

    // Worker side (noexcept, no allocation).
    bool is_peer4(uint32_t addr_be) const;
    bool is_peer6(const uint8_t *addr) const;
    bool in_pool4(uint32_t addr_be) const;
    bool in_pool6(const uint8_t *addr) const;
};

class OverlayTables {
  public:
    OverlayTables();  // kMaxTunnels entries
    OverlayTables(const OverlayTables &) = delete;
    OverlayTables &operator=(const OverlayTables &) = delete;

    // --- workers ---
    const Tunnel &tunnel(uint32_t i) const { return tunnels_[i]; }
    // Acquire load; nullptr: overlay off (no decapsulation).
    const DecapConfig *decap() const { return decap_.load(std::memory_order_acquire); }

    // --- control thread only ---
    // Written completely before return. UINT32_MAX when every entry is in
    // use or t is invalid: IP-in-IP with an IPv6 outer family, a VNI above
    // kMaxVni, VXLAN to UDP port 0, an underlay next hop id out of range or
    // kNhInvalid.
    uint32_t tunnel_alloc(const Tunnel &t);
    // The caller ensured a grace period since the last next hop using it went.
    void tunnel_free(uint32_t i);
    // Release store; returns the old one, to delete after a grace period.
    const DecapConfig *swap_decap(const DecapConfig *next);
    uint32_t tunnels_in_use() const { return kMaxTunnels - static_cast<uint32_t>(free_.size()); }
    // Whether entry i is allocated (a freed one reads as all zero).
    bool in_use(uint32_t i) const { return i < kMaxTunnels && used_[i]; }

  private:
    std::vector<Tunnel> tunnels_;  // kMaxTunnels, never resized: workers index it
    std::vector<bool> used_;       // [C]
    std::vector<uint32_t> free_;   // [C]
    std::atomic<const DecapConfig *> decap_{nullptr};
};

// The worker slot (PipelineRegistry::add_worker_slot("overlay")): control
// sets every worker's slot to the OverlayTables*.
uint16_t worker_slot();
NhKind vxlan_nh_kind();  // registered with add_nh_kind("vxlan") at load
NhKind ipip_nh_kind();   // add_nh_kind("ipip")
// The UDP port vxlan_decap4 / vxlan_decap6 take now (their l4_port_fn): the
// published DecapConfig's, kDefaultVxlanPort while there is none (the port
// then goes to the host tap, or is dropped as vxlan_disabled).
uint16_t current_port(const Worker &w);

}  // namespace fwd::dp::overlay
