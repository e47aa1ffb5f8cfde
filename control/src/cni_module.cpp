// The "cni" module: the CNI plugin's ops (cni.add, cni.del, cni.check,
// cni.status, cni.gc; cni_service.hpp) on the API thread. They reach the
// IPAM store (fsync, etcd: milliseconds) and must not hold the control
// thread; endpoints are made through the control thread's endpoint.* ops.
// Without an ipam section in the config every cni op is "unavailable".
#include "fwd/control/cni_service.hpp"
#include "fwd/control/module.hpp"
#include "fwd/control/pod_check.hpp"
#include "fwd/ipam/open_store.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

class CniModule final : public Module {
  public:
    static constexpr const char *kName = "cni";

    explicit CniModule(ControlContext &ctx) : ctx_(ctx) {
        for (const auto &op : CniService::op_table()) {
            ctx.add_op({.name = op.name,
                        .args = op.args,
                        .fn = [this, name = op.name](const json &a) { return call(name, a); },
                        .thread = OpDef::Thread::kApi});
        }
    }

    // Before the API serves (no dependency): its own connection to the store.
    void start() override {
        const NodeConfig &cfg = ctx_.cfg();
        if (!cfg.ipam) {
            return;
        }
        try {
            svc_ = std::make_unique<CniService>(
                cfg, ipam::open_store(cfg.ipam->store),
                CniDeps{[this](const std::string &op, const json &a) { return ctx_.call(op, a); },
                        pod_interface_differences});
        } catch (const std::exception &e) {
            throw std::runtime_error("IPAM store " + cfg.ipam->store + ": " + e.what());
        }
    }

  private:
    json call(const std::string &op, const json &args) {
        if (!svc_) {
            throw ApiError("unavailable", "node " + ctx_.cfg().node_name +
                                              " has no ipam section in its config: pods "
                                              "cannot get addresses");
        }
        return svc_->call(op, args);
    }

    ControlContext &ctx_;
    // Set by start() on the main thread before the API serves; the API thread uses it.
    std::unique_ptr<CniService> svc_;
};

}  // namespace

FWD_ON_LOAD(register_module<CniModule>({}));

}  // namespace fwd::control
