// The "felix" module: the cluster's FelixConfiguration (fwd/control/felix.hpp) applied to this
// node without a restart.
//
//   IPAM sync thread (a follower of its rounds, ipam_module.hpp): reads the FelixConfigurations
//     ("default" and "node.<this node>") from the cluster store, merges them field by field over
//     the node config file's values and hands each part that changed to its owner:
//       logSeverityScreen            the log's level (an atomic: set here)
//       prometheusMetrics*           metrics.listen (on this thread: the exposer's stop waits
//       health*                      health.listen   for a scrape, which needs the control thread)
//       natPortRange                 nat.ports (control thread)
//       vxlanVNI, vxlanPort,         overlay.vxlan (control thread: the tunnels made again,
//       vxlanMTU, vxlanMTUV6           the decap configuration published with them)
//       failsafe*HostPorts           kept and shown (no host endpoint policy here)
//     A part whose owner refused it (a port in use) is tried again next round and named in
//     node.get's "felix" problems; the sync counts the round as failed.
// Needs an ipam section (the cluster store); without one the file's values stay.
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "fwd/control/bgp.hpp"
#include "fwd/control/felix.hpp"
#include "fwd/control/ipam_module.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/observe.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

json listen_args(ListenConfig c, const std::optional<bool> &enabled,
                 const std::optional<std::string> &host, const std::optional<uint16_t> &port) {
    c.enabled = enabled.value_or(c.enabled);
    c.host = host.value_or(c.host);
    c.port = port.value_or(c.port);
    return to_json(c);
}

class FelixModule final : public Module {
  public:
    static constexpr const char *kName = "felix";

    explicit FelixModule(ControlContext &ctx) : ctx_(ctx), ipam_(ctx.need<IpamModule>()) {}

    void start() override {
        if (IpamSync *sync = ipam_.sync()) {
            sync->follow("felix",
                         [this](ipam::Store &s, ipam::Allocator &, int64_t rev) { round(s, rev); });
        }
    }

    void describe_node(json &out) const override {
        std::lock_guard g(mu_);
        out["felix"] = status_;
    }

  private:
    // [sync thread] The parts of the node's settings, each as its owner takes it.
    std::map<std::string, json> parts(const felix::FelixConfiguration &e) const {
        const NodeConfig &cfg = ctx_.cfg();
        std::map<std::string, json> p;
        p["log"] = e.log_severity ? felix::log_level_of(*e.log_severity)
                                  : cfg.section<LogConfig>("log").level;
        p["metrics.listen"] = listen_args(cfg.section<MetricsConfig>("metrics"), e.metrics_enabled,
                                          e.metrics_host, e.metrics_port);
        p["health.listen"] = listen_args(cfg.section<HealthConfig>("health"), e.health_enabled,
                                         e.health_host, e.health_port);
        p["nat.ports"] = e.nat_port_range
                             ? json{{"lo", e.nat_port_range->lo}, {"hi", e.nat_port_range->hi}}
                             : json{{"lo", nullptr}, {"hi", nullptr}};
        p["overlay.vxlan"] = json{{"vni", e.vxlan_vni ? json(*e.vxlan_vni) : json()},
                                  {"port", e.vxlan_port ? json(*e.vxlan_port) : json()},
                                  {"mtu", e.vxlan_mtu ? json(*e.vxlan_mtu) : json()},
                                  {"mtu6", e.vxlan_mtu_v6 ? json(*e.vxlan_mtu_v6) : json()}};
        return p;
    }

    void apply_part(const std::string &name, const json &value) {
        if (name == "log") {
            log::set_level(value.get<std::string>());
            log::info("felix: log level {}", value.get<std::string>());
            return;
        }
        ctx_.call(name, value);
        log::info("felix: {} {}", name, value.dump());
    }

    void round(ipam::Store &store, int64_t rev) {
        auto listing = bgp::BgpRegistry(store).list();
        const std::string node = ctx_.cfg().node_name;
        const felix::FelixConfiguration e = felix::effective(listing.felix, node);
        json problems = json::array();
        for (const auto &[name, value] : parts(e)) {
            if (applied_[name] == value) {
                continue;
            }
            try {
                apply_part(name, value);
                applied_[name] = value;
            } catch (const std::exception &ex) {
                problems.push_back(name + ": " + ex.what());
            }
        }
        json resources = json::array();
        for (const auto &c : listing.felix) {
            if (c.name == "default" || c.name == "node." + node) {
                resources.push_back(c.name);
            }
        }
        json refused = json::array();
        for (const auto &[key, why] : listing.refused) {
            if (key.find("/felixconfigurations/") != std::string::npos) {
                refused.push_back({{"key", key}, {"error", why}});
            }
        }
        {
            std::lock_guard g(mu_);
            status_ = json{
                {"revision", rev},     {"resources", resources}, {"settings", felix::to_json(e)},
                {"applied", applied_}, {"problems", problems},   {"refused", refused}};
        }
        if (!problems.empty()) {
            // the sync counts it and runs the follower again next round
            throw std::runtime_error("FelixConfiguration: " + problems.dump());
        }
    }

    ControlContext &ctx_;
    IpamModule &ipam_;
    std::map<std::string, json> applied_;  // [sync thread] by part, as last applied
    mutable std::mutex mu_;                // guards status_ (sync thread writes, views read)
    json status_;
};

}  // namespace

FWD_ON_LOAD(register_module<FelixModule>({IpamModule::kName}));

}  // namespace fwd::control
