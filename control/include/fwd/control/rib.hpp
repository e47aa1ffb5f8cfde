// The control thread's routing information base: every route the node knows,
// by prefix and by source, and the one that wins for each prefix.
//
// No DPDK here. The control thread stages changes (from the API, the netlink
// watcher, endpoints) with set() / remove() / resync, then flush() returns the
// net effect on the forwarding table since the last flush, coalesced: one
// change per prefix whose winner changed, in the order prefixes were first
// touched. A route added and withdrawn inside one batch, or replaced by an
// identical one, produces nothing. The control thread applies the changes to
// the dataplane tables and publishes them as one new table version.
//
// Precedence when several sources hold the same prefix (lower wins):
// endpoint (a local pod's /32, /128) < static (config, API) < ipam < bgp.
//
// Ownership: the control thread only; not thread safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::control {

using net::AnyPrefix;
inline std::string prefix_str(const AnyPrefix &p) {
    return net::str(p);
}
std::optional<AnyPrefix> parse_any_prefix(const std::string &s);

// Where routes come from, in precedence order: for one prefix the first
// source that has a route wins. endpoint: a pod's /32, /128; static: the
// config and the API; ipam: the node's own blocks (blackholes); overlay:
// other nodes' blocks from the cluster store (VXLAN, IP-in-IP, or native in
// one subnet); bgp: what BIRD learned.
#define FWD_ROUTE_SOURCES(X) \
    X(kEndpoint, "endpoint") \
    X(kStatic, "static")     \
    X(kIpam, "ipam")         \
    X(kOverlay, "overlay")   \
    X(kBgp, "bgp")

enum class RouteSource : uint8_t {
#define FWD_ROUTE_SOURCE_ENUM(name, str) name,
    FWD_ROUTE_SOURCES(FWD_ROUTE_SOURCE_ENUM)
#undef FWD_ROUTE_SOURCE_ENUM
};
inline constexpr const char *kRouteSourceNames[] = {
#define FWD_ROUTE_SOURCE_NAME(name, str) str,
    FWD_ROUTE_SOURCES(FWD_ROUTE_SOURCE_NAME)
#undef FWD_ROUTE_SOURCE_NAME
};
inline constexpr size_t kRouteSourceCount = std::size(kRouteSourceNames);
const char *route_source_name(RouteSource s);
std::optional<RouteSource> parse_route_source(const std::string &s);

// Where a route sends packets.
struct RouteTarget {
    // kOwned: a next hop its owner made and frees (a pod's endpoint, a
    // feature's tunnel); the routes only point at it.
    enum class Kind : uint8_t { kOwned, kVia, kBlackhole, kUnreachable };
    Kind kind = Kind::kUnreachable;
    uint32_t nh = 0;                  // kOwned: the next hop id
    std::string owner;                // kOwned: the kind route listings show ("pod")
    std::string ref_key;              // kOwned: ... and which of the owner's objects
    std::string ref;                  //   as ref_key: ref ("endpoint": "<id>"); may be empty
    std::vector<net::IpAddr> vias;    // kVia: sorted, unique, 1..kMaxPaths (ECMP when > 1)
    std::optional<net::MacAddr> mac;  // kVia with one via: a fixed MAC, no resolution
    bool operator==(const RouteTarget &) const = default;

    static constexpr size_t kMaxPaths = 16;
    static RouteTarget owned(uint32_t nh, std::string owner, std::string ref_key = {},
                             std::string ref = {});
    // A local pod's next hop: owned(nh, "pod", "endpoint", endpoint).
    static RouteTarget pod(uint32_t nh, std::string endpoint = {});
    static RouteTarget via(std::vector<net::IpAddr> vias,
                           std::optional<net::MacAddr> mac = std::nullopt);
    static RouteTarget blackhole();
    static RouteTarget unreachable();
    const char *kind_name() const;
};

struct RibChange {
    AnyPrefix prefix;
    std::optional<RouteTarget> target;          // nullopt: remove the prefix from the FIB
    std::optional<RouteTarget> previous;        // what the FIB had (nullopt: nothing)
    RouteSource source = RouteSource::kStatic;  // the new winner's source (if target)
};

class Rib {
  public:
    // Stages an upsert of (prefix, source). Returns false when it changed nothing.
    bool set(const AnyPrefix &p, RouteSource s, RouteTarget t);
    // Stages the removal of (prefix, source). Returns false when there was none.
    bool remove(const AnyPrefix &p, RouteSource s);
    // Resync of one source (after a netlink overrun or at start): every route of
    // the source is marked stale; set() clears the mark; end_resync() removes what
    // is still stale. Without begin, end does nothing.
    void begin_resync(RouteSource s);
    size_t end_resync(RouteSource s);  // returns routes removed

    // The coalesced net change to the forwarding table since the last flush.
    std::vector<RibChange> flush();
    // A change the caller could not apply (the table refused it): forget that it
    // was installed so a later flush does not assume it.
    void mark_not_installed(const AnyPrefix &p);

    struct Route {
        AnyPrefix prefix;
        RouteSource source;
        RouteTarget target;
        bool active;  // the winner for its prefix (what the FIB has after flush)
    };
    // Every route, ordered by prefix then source; filtered when given.
    std::vector<Route> list(std::optional<RouteSource> source = std::nullopt,
                            std::optional<net::Family> family = std::nullopt) const;
    const RouteTarget *get(const AnyPrefix &p, RouteSource s) const;
    size_t size(RouteSource s) const { return counts_[static_cast<size_t>(s)]; }
    size_t installed(net::Family f) const {
        return f == net::Family::kIp4 ? installed4_ : installed6_;
    }
    size_t pending() const { return dirty_.size(); }

  private:
    struct Slot {
        std::array<std::optional<RouteTarget>, kRouteSourceCount> by_source;
        std::optional<RouteTarget> installed;  // what the FIB has (as of the last flush)
        std::optional<RouteSource> installed_source;
        bool dirty = false;
    };
    void touch(const AnyPrefix &p, Slot &slot);

    std::map<AnyPrefix, Slot> slots_;
    std::vector<AnyPrefix> dirty_;  // first-touch order
    std::array<size_t, kRouteSourceCount> counts_{};
    std::array<std::optional<std::set<AnyPrefix>>, kRouteSourceCount> stale_;
    size_t installed4_ = 0;
    size_t installed6_ = 0;
};

}  // namespace fwd::control
