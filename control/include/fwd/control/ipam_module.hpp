// The "ipam" module: the node's IPAM sync (ipam_sync.hpp) inside the daemon.
// With an ipam section in the config, it opens the store at start and runs
// the sync's thread while the control thread runs; the sync installs the
// node's blocks through the internal op ipam.routes (the routes module's).
// node.get shows its state under "ipam" (null without an ipam section).
// Features whose state comes from the store follow the sync's rounds
// (sync()->follow() in their start(), after this module's).
#pragma once

#include <memory>

#include "fwd/control/ipam_sync.hpp"
#include "fwd/control/module.hpp"

namespace fwd::control {

class IpamModule final : public Module {
  public:
    static constexpr const char *kName = "ipam";
    explicit IpamModule(ControlContext &ctx) : ctx_(ctx) {}

    // Before the ports (no dependency): an unreachable store stops the
    // daemon before it made anything.
    void start() override;
    // Its thread hands routes to the control thread, which must run.
    void online() override;
    void offline() override { sync_.reset(); }
    void stop() override { sync_.reset(); }
    // The sync locks what it shares with its thread.
    void describe_node(nlohmann::json &out) const override {
        out["ipam"] = sync_ ? sync_->status() : nlohmann::json();
    }

    // nullptr without an ipam section in the config (or before start()).
    IpamSync *sync() { return sync_.get(); }

  private:
    ControlContext &ctx_;
    std::unique_ptr<IpamSync> sync_;
};

}  // namespace fwd::control
