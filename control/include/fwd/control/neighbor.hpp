// The dataplane's own neighbor table for the uplink: ARP (RFC 826) and IPv6
// Neighbor Discovery (RFC 4861) resolution of next hops, like a small kernel
// neighbor table.
//
// Control thread only: one owner, no locking, no DPDK. Time is passed in as
// milliseconds from any monotonic clock, so tests drive it with a fake one.
// The table never sends or frees anything itself: every call records what
// the caller must do, and take_actions() hands those actions over in order.
//
// States (RFC 4861 section 7.3.2, without DELAY):
//   incomplete  ref() made it; broadcast / multicast solicitation every
//               retrans_ms; max_probes unanswered -> failed.
//   reachable   confirmed by a solicited reply; after reachable_ms -> stale.
//   stale       usable; after stale_probe_ms -> probe.
//   probe       usable; unicast solicitation every retrans_ms; a solicited
//               reply -> reachable, max_probes unanswered -> failed.
//   failed      not usable; packets are dropped. A packet queued (or a new
//               ref()) while failed asks for a retry, which starts (as
//               incomplete) once failed_retry_ms have passed since the
//               failure. Without demand a failed entry stays failed.
//
// Actions:
//   kResolved(ip, mac)  the next hop may use mac from now on. Emitted when an
//                       entry becomes usable, when its MAC changes (a MAC
//                       change is announced by kResolved with the new MAC
//                       only, the next hop is never unresolved for it), and
//                       again on every ref() of an already usable entry so a
//                       new route learns the MAC.
//   kUnresolved(ip)     stop using the next hop: emitted on every entry of
//                       the failed state (also when it had never resolved).
//                       unref() of the last reference emits none: the caller
//                       removed the route itself.
//   kFlush(ip, pkt)     a queued packet may be sent now (always after the
//                       kResolved of its ip).
//   kDrop(ip, pkt)      a packet handle must be freed: evicted from a full
//                       queue, given to a failed or unknown neighbor, or
//                       released by the failure or last unref() of its entry.
//   kSend(ip, frame)    transmit frame (a complete untagged Ethernet frame)
//                       on the uplink.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::control {

struct NeighborParams {
    uint32_t retrans_ms = 1000;       // between solicitations; at least 1
    uint32_t max_probes = 3;          // solicitations before failing; at least 1
    uint32_t reachable_ms = 30000;    // reachable -> stale
    uint32_t stale_probe_ms = 5000;   // delay before probing a stale entry
    uint32_t failed_retry_ms = 1000;  // hold-off before a failed entry is retried
    uint32_t queue_len = 3;           // packets parked per unresolved neighbor
};

enum class NeighState : uint8_t { kIncomplete, kReachable, kStale, kProbe, kFailed };

// "incomplete", "reachable", "stale", "probe", "failed".
const char *neigh_state_name(NeighState s);

struct NeighAction {
    enum Kind { kSend, kResolved, kUnresolved, kDrop, kFlush } kind;
    net::IpAddr ip;
    net::MacAddr mac;            // kResolved
    std::vector<uint8_t> frame;  // kSend: a complete Ethernet frame, no VLAN tag
    void *pkt = nullptr;         // kDrop, kFlush: one handle each
};

struct NeighborInfo {
    net::IpAddr ip;
    std::optional<net::MacAddr> mac;  // none while incomplete or failed
    std::string state;                // neigh_state_name()
    uint32_t refs = 0;
    size_t queued = 0;
    uint32_t probes = 0;  // solicitations sent in the current incomplete / probe round
    uint64_t age_ms = 0;  // since the last state change or confirmation
};

// Invalid arguments: bad parameters, a ref() the table cannot serve, an
// unref() without ref(). The message names the address and the problem.
class NeighborError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

class NeighborTable {
  public:
    // Throws NeighborError for retrans_ms or max_probes of 0 and for a zero
    // or multicast our_mac. our_ip4 / our_ip6 are the solicitation sources;
    // a family without one cannot be ref()'d.
    NeighborTable(NeighborParams p, net::MacAddr our_mac, std::optional<net::Ip4Addr> our_ip4,
                  std::optional<net::Ip6Addr> our_ip6);

    // A route needs this neighbor. The first ref creates an incomplete entry
    // and queues an immediate solicitation. Throws NeighborError for an
    // unspecified, multicast or broadcast address, one of our own, or a
    // family we have no source address for.
    void ref(const net::IpAddr &ip, uint64_t now_ms);
    // Drops one reference; the last one removes the entry and gives back its
    // queued packets (kDrop). Throws NeighborError if ip is not referenced.
    void unref(const net::IpAddr &ip);

    // A reply (or gratuitous announcement) says ip is at mac. Only existing
    // entries change. Solicited: -> reachable with mac. Unsolicited: a
    // different MAC -> stale with it, the same MAC changes nothing (on an
    // incomplete or failed entry it makes the entry stale and usable).
    // Zero or multicast MACs are ignored.
    void learn(const net::IpAddr &ip, const net::MacAddr &mac, bool solicited, uint64_t now_ms);

    // Parses an Ethernet frame (at most one 802.1Q tag) and learns from it:
    //  - ARP reply or request, Ethernet/IPv4. A reply whose target is our
    //    IPv4 is solicited; a gratuitous one (sender == target IP), or a
    //    request for our IPv4, is unsolicited. Other requests are ignored.
    //  - ICMPv6 Neighbor Advertisement directly after the IPv6 header (no
    //    extension headers), validated as RFC 4861 7.1.2: hop limit 255,
    //    code 0, ICMPv6 length >= 24, correct checksum, target not
    //    multicast, S clear when sent to multicast, no zero-length option.
    //    The target link-layer address option is required (an NA without it
    //    carries no MAC to learn; the Ethernet source is not trusted). The S
    //    flag is `solicited`; the O flag is treated as set.
    // Returns true when an entry was created, changed or confirmed. Reads
    // nothing beyond len; anything malformed returns false.
    bool on_frame(const uint8_t *frame, size_t len, uint64_t now_ms);

    // Parks an opaque packet handle until ip resolves (at most queue_len,
    // the oldest evicted as kDrop). For a usable entry the packet is given
    // back at once as kFlush; for a failed or unknown ip as kDrop (failed:
    // this also asks for a retry, see the state list above).
    void queue(const net::IpAddr &ip, void *pkt);

    // Advances timers to now_ms and returns every pending action, in order:
    // first those recorded by calls since the last take_actions(), then
    // timer actions entry by entry in address order. A call never sends
    // more than one solicitation per entry, however late it comes.
    std::vector<NeighAction> take_actions(uint64_t now_ms);

    // The MAC to use for ip, if its entry is usable (reachable, stale, probe).
    std::optional<net::MacAddr> resolved_mac(const net::IpAddr &ip) const;

    std::vector<NeighborInfo> list(uint64_t now_ms) const;

    const NeighborParams &params() const { return p_; }

  private:
    struct Entry {
        NeighState state = NeighState::kIncomplete;
        net::MacAddr mac;  // valid while usable
        uint32_t refs = 0;
        std::deque<void *> queue;
        uint32_t probes = 0;
        uint64_t timer_ms = 0;      // when the state's timer fires
        uint64_t updated_ms = 0;    // last state change or confirmation
        bool retry_wanted = false;  // failed: a packet or ref asked for a retry
    };

    static bool usable(NeighState s) {
        return s == NeighState::kReachable || s == NeighState::kStale || s == NeighState::kProbe;
    }
    bool learn_entry(const net::IpAddr &ip, const net::MacAddr &mac, bool solicited,
                     uint64_t now_ms);
    void start_resolving(const net::IpAddr &ip, Entry &e, uint64_t now_ms);
    void become_usable(const net::IpAddr &ip, Entry &e, const net::MacAddr &mac, NeighState state,
                       uint64_t now_ms);
    void fail(const net::IpAddr &ip, Entry &e, uint64_t now_ms);
    void advance(const net::IpAddr &ip, Entry &e, uint64_t now_ms);
    void solicit(const net::IpAddr &ip, const std::optional<net::MacAddr> &unicast);
    bool on_arp(const uint8_t *p, size_t len, uint64_t now_ms);
    bool on_ip6(const uint8_t *p, size_t len, uint64_t now_ms);

    NeighborParams p_;
    net::MacAddr our_mac_;
    std::optional<net::Ip4Addr> our_ip4_;
    std::optional<net::Ip6Addr> our_ip6_;
    std::map<net::IpAddr, Entry> entries_;
    std::vector<NeighAction> pending_;
};

// Frame builders, public so tests and tools can reuse them. The ARP request
// is padded to the 60-byte Ethernet minimum. dst_mac empty: broadcast (ARP)
// or the solicited-node multicast group (NS); else unicast to it.
std::vector<uint8_t> build_arp_request(const net::MacAddr &src_mac, net::Ip4Addr src_ip,
                                       net::Ip4Addr target,
                                       const std::optional<net::MacAddr> &dst_mac);
std::vector<uint8_t> build_neighbor_solicitation(const net::MacAddr &src_mac,
                                                 const net::Ip6Addr &src_ip,
                                                 const net::Ip6Addr &target,
                                                 const std::optional<net::MacAddr> &dst_mac);
// ff02::1:ffXX:XXXX for target (RFC 4291 2.7.1).
net::Ip6Addr solicited_node_addr(const net::Ip6Addr &target);
// 33:33 followed by the low 32 bits of a multicast IPv6 address (RFC 2464 7).
net::MacAddr ip6_multicast_mac(const net::Ip6Addr &group);
// The ICMPv6 checksum (RFC 4443 2.3) of icmp[0..len) with the IPv6
// pseudo-header; the checksum field itself is summed as it is, so a correct
// message sums to 0.
uint16_t icmp6_checksum(const net::Ip6Addr &src, const net::Ip6Addr &dst, const uint8_t *icmp,
                        size_t len);

}  // namespace fwd::control
