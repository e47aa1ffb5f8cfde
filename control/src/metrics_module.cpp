// The "metrics" module: Prometheus metrics on /metrics (config "metrics",
// observe.hpp), served by prometheus-cpp's exposer (civetweb) on threads of
// its own.
//
// A scrape never reads the daemon's state from the exposer's thread: it
// calls the internal op metrics.snapshot, which the control thread runs
// like any API call (the stats, tables, node.get and neighbor.list ops, the
// same counters `fwdctl stats` shows: per-worker counters read relaxed,
// control-thread state read where it lives). The exposer's thread then turns
// that JSON into metric families (metric_families, no shared state). Nothing
// is added to the packet path: a scrape costs the control thread what one
// `fwdctl stats` and `fwdctl tables` cost.
//
// The listener runs while the control thread does (online() to offline()),
// so a scrape always has a control thread to answer it.
#include <rte_version.h>

#include <memory>

#include "fwd/control/log.hpp"
#include "fwd/control/neighbors.hpp"
#include "fwd/control/observe.hpp"
#include "fwd/util/registry.hpp"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"

namespace fwd::control {

using nlohmann::json;

namespace {

// One scrape: a snapshot from the control thread, then the families.
class Scrape final : public prometheus::Collectable {
  public:
    explicit Scrape(ControlContext &ctx) : ctx_(ctx) {}

    std::vector<prometheus::MetricFamily> Collect() const override {
        // civetweb's thread must not unwind into C: a failed snapshot is
        // a scrape with dpdk_fwd_scrape_ok 0 (and nothing else).
        std::vector<prometheus::MetricFamily> out;
        bool ok = true;
        try {
            out = metric_families(ctx_.call("metrics.snapshot", json::object()));
        } catch (const std::exception &e) {
            // one line a scrape at most (Prometheus scrapes every few seconds)
            log::error("metrics: scrape failed: {}", e.what());
            ok = false;
        }
        prometheus::ClientMetric m;
        m.gauge.value = ok ? 1 : 0;
        out.push_back({"dpdk_fwd_scrape_ok",
                       "1 when the control thread answered this scrape's snapshot",
                       prometheus::MetricType::Gauge,
                       {m}});
        return out;
    }

  private:
    ControlContext &ctx_;
};

class MetricsModule final : public Module {
  public:
    static constexpr const char *kName = "metrics";

    explicit MetricsModule(ControlContext &ctx)
        : ctx_(ctx), cfg_(ctx.cfg().section<MetricsConfig>("metrics")) {
        ctx.add_op({.name = "metrics.snapshot",
                    .args = {},
                    .fn = [this](const json &) { return snapshot(); },
                    .internal = true});
    }

    void online() override {
        if (!cfg_.enabled) {
            return;
        }
        const std::string where = listening_ports(cfg_);
        try {
            exposer_ = std::make_unique<prometheus::Exposer>(where, 2);
        } catch (const std::exception &e) {
            throw std::runtime_error("metrics: cannot listen on " + where + ": " + e.what());
        }
        scrape_ = std::make_shared<Scrape>(ctx_);
        exposer_->RegisterCollectable(scrape_, "/metrics");
        log::info("metrics: /metrics on {}", where);
    }

    // Joins the exposer's threads; a scrape in progress still gets its answer.
    void offline() override { exposer_.reset(); }
    void stop() override { exposer_.reset(); }

    void describe_node(json &out) const override {
        out["metrics"] = cfg_.enabled ? json{{"listen", listening_ports(cfg_)}} : json();
    }

  private:
    // Control thread (the ops it calls run inline).
    json snapshot() {
        json neighbors = json::object();
        for (auto s : {NeighState::kIncomplete, NeighState::kReachable, NeighState::kStale,
                       NeighState::kProbe, NeighState::kFailed}) {
            neighbors[neigh_state_name(s)] = 0;
        }
        const json list = ctx_.call("neighbor.list", json::object());
        for (const json &n : list.value("neighbors", json::array())) {
            auto &count = neighbors[n.value("state", "unknown")];
            count = count.is_number() ? count.get<uint64_t>() + 1 : 1;
        }
        return json{{"version", FWD_VERSION},
                    {"dpdk", rte_version()},
                    {"stats", ctx_.call("stats", json::object())},
                    {"tables", ctx_.call("tables", json::object())},
                    {"node", ctx_.call("node.get", json::object())},
                    {"neighbors", neighbors}};
    }

    ControlContext &ctx_;
    const MetricsConfig cfg_;
    std::unique_ptr<prometheus::Exposer> exposer_;  // main thread
    std::shared_ptr<Scrape> scrape_;
};

}  // namespace

FWD_ON_LOAD(register_module<MetricsModule>({"node", NeighborsModule::kName}));

}  // namespace fwd::control
