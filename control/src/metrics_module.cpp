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
// so a scrape always has a control thread to answer it. FelixConfiguration
// moves it (metrics.listen, from the IPAM sync's thread).
#include <rte_version.h>

#include <memory>

#include "fwd/control/log.hpp"
#include "fwd/control/neighbors.hpp"
#include "fwd/control/observe.hpp"
#include "fwd/util/registry.hpp"
#include "listen_op.hpp"
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
        : ctx_(ctx),
          listener_(
              "metrics", ctx.cfg().section<MetricsConfig>("metrics"),
              [this](const std::string &where) {
                  exposer_ = std::make_unique<prometheus::Exposer>(where, 2);
                  scrape_ = std::make_shared<Scrape>(ctx_);
                  exposer_->RegisterCollectable(scrape_, "/metrics");
                  log::info("metrics: /metrics on {}", where);
              },
              [this] { exposer_.reset(); }) {
        ctx.add_op({.name = "metrics.snapshot",
                    .args = {},
                    .fn = [this](const json &) { return snapshot(); },
                    .internal = true});
        add_listen_op(ctx, "metrics.listen", listener_);
    }

    void online() override { listener_.online(); }
    // Joins the exposer's threads; a scrape in progress still gets its answer.
    void offline() override { listener_.offline(); }
    void stop() override { listener_.offline(); }

    void describe_node(json &out) const override {
        const ListenConfig c = listener_.config();
        out["metrics"] = c.enabled ? json{{"listen", listening_ports(c)}} : json();
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
    std::unique_ptr<prometheus::Exposer> exposer_;  // the listener's (under its lock)
    std::shared_ptr<Scrape> scrape_;
    Listener listener_;
};

}  // namespace

FWD_ON_LOAD(register_module<MetricsModule>({"node", NeighborsModule::kName}));

}  // namespace fwd::control
