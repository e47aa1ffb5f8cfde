// The "ipam" module: the node's IPAM sync (ipam_sync.hpp) inside the daemon.
// With an ipam section in the config, it opens the store at start and runs
// the sync's thread while the control thread runs; the sync installs the
// node's blocks through the internal op ipam.routes (the routes module's).
// node.get shows its state under "ipam" (null without an ipam section).
#include "fwd/control/ipam_sync.hpp"
#include "fwd/control/module.hpp"
#include "fwd/ipam/open_store.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

class IpamModule final : public Module {
  public:
    static constexpr const char *kName = "ipam";
    explicit IpamModule(ControlContext &ctx) : ctx_(ctx) {}

    // Before the ports (no dependency): an unreachable store stops the
    // daemon before it made anything.
    void start() override {
        const NodeConfig &cfg = ctx_.cfg();
        if (!cfg.ipam) {
            return;
        }
        try {
            sync_ = std::make_unique<IpamSync>(*cfg.ipam, cfg.node_name,
                                               ipam::open_store(cfg.ipam->store),
                                               [this](const std::vector<ipam::Cidr> &prefixes) {
                                                   json p = json::array();
                                                   for (const auto &c : prefixes) {
                                                       p.push_back(c.str());
                                                   }
                                                   ctx_.call("ipam.routes", {{"prefixes", p}});
                                               });
        } catch (const std::exception &e) {
            throw std::runtime_error("IPAM store " + cfg.ipam->store + ": " + e.what());
        }
    }
    // Its thread hands routes to the control thread, which must run.
    void online() override {
        if (sync_) {
            try {
                sync_->start();
            } catch (const std::exception &e) {
                throw std::runtime_error(std::string("IPAM sync: ") + e.what());
            }
        }
    }
    void offline() override { sync_.reset(); }
    void stop() override { sync_.reset(); }

    // The sync locks what it shares with its thread.
    void describe_node(json &out) const override { out["ipam"] = sync_ ? sync_->status() : json(); }

  private:
    ControlContext &ctx_;
    std::unique_ptr<IpamSync> sync_;
};

}  // namespace

FWD_ON_LOAD(register_module<IpamModule>({}));

}  // namespace fwd::control
