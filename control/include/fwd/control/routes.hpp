// The "routes" module: the RIB written to the dataplane tables.
//
// Every route the node knows goes through the RIB (rib.hpp), which coalesces
// a burst of changes to its net effect; publish() writes that to the tables
// as one new table version. Sources: endpoints (a pod's /32, /128, from the
// endpoints module), static (config and API), ipam (the IPAM sync), bgp (the
// kernel's routes BIRD learned, through the netlink watcher).
//
// Next hops are shared and reference counted by what they point at: one per
// neighbor (the neighbors module's), one per ECMP set (kGroup over the
// neighbors' next hops), one per pinned (via, MAC), one blackhole and one
// unreachable; owned targets (a pod's, a feature's) belong to their owner. A
// next hop or group whose last route went away is freed only after the grace
// period publish() waits for, so no worker still reads it.
// Ops: route.add, route.del, route.list; ipam.routes (internal: the IPAM sync).
#pragma once

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "fwd/control/module.hpp"
#include "fwd/control/netlink_watcher.hpp"
#include "fwd/control/rib.hpp"

namespace fwd::control {

class NeighborsModule;
class PortsModule;

class RoutesModule final : public Module {
  public:
    static constexpr const char *kName = "routes";
    explicit RoutesModule(ControlContext &ctx);

    void start() override;
    void stop() override;
    bool poll() override;  // the netlink watcher's events
    void counters(nlohmann::json &out) const override;
    void describe_node(nlohmann::json &out) const override;
    void describe_tables(nlohmann::json &out) const override;

    // Changes are staged in the RIB, then published.
    Rib &rib() { return rib_; }
    // Writes the RIB's coalesced changes to the tables: one table version.
    // Returns the prefixes the tables refused (already taken out of the RIB's
    // installed set) with the reason. Live in every worker when it returns.
    std::vector<std::pair<AnyPrefix, std::string>> publish();
    uint64_t version() const { return cnt_.versions; }

  private:
    uint32_t acquire(const RouteTarget &t);  // a next hop for t; throws std::runtime_error
    void release(const RouteTarget &t);      // frees after the next grace period
    void add_static_routes();
    nlohmann::json route_add(const nlohmann::json &args);
    nlohmann::json route_del(const nlohmann::json &args);
    nlohmann::json route_list(const nlohmann::json &args);
    nlohmann::json ipam_routes(const nlohmann::json &args);

    ControlContext &ctx_;
    PortsModule &ports_;
    NeighborsModule &neighbors_;
    Rib rib_;
    struct GroupNh {
        uint32_t nh;
        uint32_t group;
        uint32_t refs;
    };
    std::map<std::vector<net::IpAddr>, GroupNh> groups_;  // ECMP sets
    struct FixedNh {
        uint32_t nh;
        uint32_t refs;
    };
    std::map<std::pair<net::IpAddr, net::MacAddr>, FixedNh> fixed_;  // via with a pinned MAC
    uint32_t blackhole_nh_ = dp::kNhInvalid;
    uint32_t unreachable_nh_ = dp::kNhInvalid;
    // The watcher's thread is the only producer of its ring; control pops.
    std::unique_ptr<NetlinkWatcher> watcher_;

    struct Counters {
        uint64_t versions = 0;           // table versions published
        uint64_t route_changes = 0;      // FIB changes applied
        uint64_t route_errors = 0;       // FIB changes the tables refused
        uint64_t bgp_events = 0;         // netlink events consumed
        uint64_t bgp_ignored = 0;        // learned routes we cannot use (device, v4-via-v6)
        uint64_t last_batch_routes = 0;  // size of the last netlink batch
        uint64_t last_batch_us = 0;      // its pop-to-live time
        uint64_t max_batch_us = 0;
    };
    Counters cnt_;
};

}  // namespace fwd::control
