// The "cni" module: the CNI plugin's ops (cni.add, cni.del, cni.check,
// cni.status, cni.gc; cni_service.hpp) on the API thread. They reach the
// IPAM store (fsync, etcd: milliseconds) and must not hold the control
// thread; endpoints are made through the control thread's endpoint.* ops.
// Without an ipam section in the config every cni op is "unavailable".
// Every call is counted by op and result and timed (stats.control.cni, the
// metrics' dpdk_fwd_cni_calls_total and dpdk_fwd_cni_call_duration_seconds).
#include <chrono>
#include <map>
#include <mutex>

#include "fwd/control/cni_service.hpp"
#include "fwd/control/module.hpp"
#include "fwd/control/observe.hpp"
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
            // The map is fixed from here on: calls find their op without a lock.
            OpStats &st = stats_[op.name];
            ctx.add_op(
                {.name = op.name,
                 .args = op.args,
                 .fn = [this, name = op.name, &st](const json &a) { return timed(st, name, a); },
                 .thread = OpDef::Thread::kApi});
        }
        ctx.add_op({.name = "cni.reconcile",
                    .args = {"release", "keep", "sweep"},
                    .fn =
                        [this](const json &a) {
                            if (!svc_) {
                                throw ApiError("unavailable", "no ipam section in the config");
                            }
                            return svc_->reconcile(a);
                        },
                    .thread = OpDef::Thread::kApi,
                    .internal = true});
    }

    // Control thread; the calls run on the API thread.
    void counters(json &out) const override {
        json calls = json::object();
        for (const auto &[name, st] : stats_) {
            std::string op = name.rfind("cni.", 0) == 0 ? name.substr(4) : name;
            json results;
            {
                std::lock_guard g(st.mu);
                results = json(st.results);
            }
            calls[op] = json{{"results", results}, {"latency", st.latency.to_json()}};
        }
        out["cni"] = json{{"calls", calls}};
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
    struct OpStats {
        mutable std::mutex mu;                    // results: API thread writes, control reads
        std::map<std::string, uint64_t> results;  // "ok" or the error code: a few names
        LatencyHistogram latency;
    };

    json timed(OpStats &st, const std::string &op, const json &args) {
        const auto t0 = std::chrono::steady_clock::now();
        try {
            json r = call(op, args);
            record(st, "ok", t0);
            return r;
        } catch (const ApiError &e) {
            record(st, e.code(), t0);
            throw;
        } catch (...) {
            record(st, "internal", t0);
            throw;
        }
    }

    static void record(OpStats &st, const std::string &result,
                       std::chrono::steady_clock::time_point t0) {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - t0)
                            .count();
        st.latency.observe(static_cast<uint64_t>(ns));
        std::lock_guard g(st.mu);
        st.results[result]++;
    }

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
    std::map<std::string, OpStats> stats_;  // by op name, made in the constructor
};

}  // namespace

FWD_ON_LOAD(register_module<CniModule>({}));

}  // namespace fwd::control
