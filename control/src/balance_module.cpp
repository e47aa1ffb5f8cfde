// The "balance" module: pod queues moved between workers by load (balance.hpp).
//
//   control thread, poll(): every interval, each worker reports its queues' loads
//     (WorkerCommand::kReportLoad); the differences since the last report, over the interval's
//     TSC cycles, are the loads the plan reads. A move is kDelRxQueue on the old worker, then
//     kAddRxQueue on the new one, each acknowledged: no two workers poll a queue at once, and
//     frames that arrive in between wait in the queue.
//   op balance.status: the config, the counts, the last decision (loads before and after,
//     why, the moves) and the queues' loads as last measured; fwdctl balance prints it.
//
// The config's "balance" section: {"enabled": false (OVS's auto load balancing is off by
// default too), "interval_ms": 10000 (100 to 3600000), "load_threshold": 70 (percent of a
// core, 1 to 100), "improvement": 25 (percent, 1 to 100)}.
#include <rte_cycles.h>

#include <map>
#include <tuple>

#include "fwd/control/balance.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/module.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

struct BalanceConfig {
    bool enabled = false;
    uint32_t interval_ms = 10000;
    uint32_t load_threshold = 70;
    uint32_t improvement = 25;
};

class BalanceModule final : public Module {
  public:
    static constexpr const char *kName = "balance";

    explicit BalanceModule(ControlContext &ctx)
        : ctx_(ctx), cfg_(ctx.cfg().section<BalanceConfig>("balance")) {
        ctx.add_op(OpDef{"balance.status", {}, [this](const json &) { return status(); }});
    }

    bool poll() override {
        if (!cfg_.enabled) {
            return false;
        }
        const uint64_t now = ControlContext::now_ms();
        if (now - last_ms_ < cfg_.interval_ms) {
            return false;
        }
        last_ms_ = now;
        round();
        return true;
    }

    void counters(json &out) const override {
        out["balance"] = json{{"enabled", cfg_.enabled},
                              {"rounds", rounds_},
                              {"rebalances", rebalances_},
                              {"moves", moves_}};
    }

  private:
    using Key = std::tuple<unsigned, uint16_t, uint16_t>;  // worker, port, queue

    void round() {
        const auto &workers = ctx_.workers();
        const uint64_t tsc = rte_get_tsc_cycles();
        std::map<Key, dp::QueueLoad> now;
        for (unsigned w = 0; w < workers.size(); w++) {
            ctx_.worker_do(w, {dp::WorkerCommand::Kind::kReportLoad, 0, 0, 0});
            uint16_t n = 0;
            const dp::QueueLoadRow *rows = workers[w]->load_report(n);
            for (uint16_t i = 0; i < n; i++) {
                now[Key{w, rows[i].port, rows[i].queue}] = rows[i].load;
            }
        }
        rounds_++;
        const uint64_t span = tsc - last_tsc_;
        const bool have_base = last_tsc_ != 0 && span != 0;
        std::vector<balance::QueueLoad> loads;
        for (const auto &[key, ld] : now) {
            const auto &[w, port, queue] = key;
            balance::QueueLoad q{port, queue, w, 0, port >= dp::kFirstSoftPort};
            // A queue new on its worker (added or moved since): no load known yet.
            if (auto it = base_.find(key);
                have_base && it != base_.end() && ld.cycles >= it->second.cycles) {
                q.load =
                    static_cast<double>(ld.cycles - it->second.cycles) / static_cast<double>(span);
            }
            loads.push_back(q);
        }
        base_ = std::move(now);
        last_tsc_ = tsc;
        last_loads_ = loads;
        if (!have_base) {
            last_ = balance::Decision{};
            last_.why = "first measurement";
            return;
        }
        const balance::Params p{cfg_.load_threshold / 100.0, cfg_.improvement / 100.0};
        last_ = balance::plan(loads, static_cast<unsigned>(workers.size()), p);
        if (last_.moves.empty()) {
            return;
        }
        for (const auto &m : last_.moves) {
            ctx_.worker_do(m.from, {dp::WorkerCommand::Kind::kDelRxQueue, m.port, m.queue, 0});
            ctx_.worker_do(m.to, {dp::WorkerCommand::Kind::kAddRxQueue, m.port, m.queue, 0});
            moves_++;
            if (auto *eps = ctx_.find<EndpointsModule>(); eps != nullptr && m.queue == 0) {
                eps->queue_moved(m.port, m.to);  // an endpoint's "worker" is its queue 0's
            }
        }
        rebalances_++;
        // The moved queues start again from zero on their new worker: the next interval
        // measures everything afresh.
        last_tsc_ = 0;
    }

    json status() const {
        json moves = json::array();
        for (const auto &m : last_.moves) {
            moves.push_back({{"port", m.port}, {"queue", m.queue}, {"from", m.from}, {"to", m.to}});
        }
        json queues = json::array();
        for (const auto &q : last_loads_) {
            queues.push_back({{"port", q.port},
                              {"queue", q.queue},
                              {"worker", q.worker},
                              {"load", q.load},
                              {"movable", q.movable}});
        }
        return json{{"enabled", cfg_.enabled},
                    {"interval_ms", cfg_.interval_ms},
                    {"load_threshold", cfg_.load_threshold},
                    {"improvement", cfg_.improvement},
                    {"rounds", rounds_},
                    {"rebalances", rebalances_},
                    {"moves", moves_},
                    {"last",
                     {{"before", last_.before},
                      {"after", last_.after},
                      {"why", last_.why},
                      {"moves", moves}}},
                    {"queues", queues}};
    }

    ControlContext &ctx_;
    BalanceConfig cfg_;
    uint64_t last_ms_ = 0;
    uint64_t last_tsc_ = 0;
    std::map<Key, dp::QueueLoad> base_;
    std::vector<balance::QueueLoad> last_loads_;
    balance::Decision last_;
    uint64_t rounds_ = 0, rebalances_ = 0, moves_ = 0;
};

BalanceConfig parse_balance(const config::Object &o, const NodeConfig &) {
    BalanceConfig c;
    if (auto f = o.get("enabled")) {
        c.enabled = f->boolean();
    }
    if (auto f = o.get("interval_ms")) {
        c.interval_ms = f->integer<uint32_t>(100, 3600000);
    }
    if (auto f = o.get("load_threshold")) {
        c.load_threshold = f->integer<uint32_t>(1, 100);
    }
    if (auto f = o.get("improvement")) {
        c.improvement = f->integer<uint32_t>(1, 100);
    }
    return c;
}

}  // namespace

FWD_ON_LOAD(register_module<BalanceModule>({}));
FWD_ON_LOAD(register_config_section<BalanceConfig>(
    "balance", {"enabled", "interval_ms", "load_threshold", "improvement"}, parse_balance));

}  // namespace fwd::control
