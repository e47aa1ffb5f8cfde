// The "node" module: the node-wide views, assembled from every module, and
// the worker-wide switches.
// Ops: node.get (describe_node of every module), tables (describe_tables of
// every module, and the mbuf pools' use), stats (ports, workers, drops, and counters of every
// module), stats.stages (per-stage counters on / off), version.
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mempool.h>

#include "api_args.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/dp/drop.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

const char *role_name(dp::PortRole r) {
    return r == dp::PortRole::kUplink ? "uplink" : r == dp::PortRole::kPod ? "pod" : "none";
}

// Every mempool of the process (the packet pool, and any a driver made):
// {"<name>": {"in_use": n, "capacity": n}}. in_use is what is out of the
// pool (RX rings, queues, packets in flight; the per-lcore caches count as
// free); read from the control side while the workers keep allocating: a
// moment's view.
json mempools_json() {
    json out = json::object();
    rte_mempool_walk(
        [](rte_mempool *mp, void *arg) {
            (*static_cast<json *>(arg))[mp->name] =
                json{{"in_use", rte_mempool_in_use_count(mp)}, {"capacity", mp->size}};
        },
        &out);
    return out;
}

json stage_json(const dp::WorkerStats::StageCounters &c) {
    return json{{"calls", c.calls.get()}, {"packets", c.packets.get()}, {"cycles", c.cycles.get()}};
}

class NodeModule final : public Module {
  public:
    static constexpr const char *kName = "node";

    explicit NodeModule(ControlContext &ctx) : ctx_(ctx), ports_(ctx.need<PortsModule>()) {
        for (dp::Worker *w : ctx.workers()) {
            w->set_stage_stats(ctx.cfg().stage_stats);
            w->set_fast_path(ctx.cfg().fast_path);
        }
        ctx.add_op({.name = "node.get", .args = {}, .fn = [this](const json &) { return node(); }});
        ctx.add_op({.name = "tables", .args = {}, .fn = [this](const json &) { return tables(); }});
        ctx.add_op({.name = "stats", .args = {}, .fn = [this](const json &) { return stats(); }});
        ctx.add_op({.name = "stats.stages", .args = {"enabled"}, .fn = [this](const json &a) {
                        return stage_stats(a);
                    }});
        ctx.add_op({.name = "version", .args = {}, .fn = [](const json &) {
                        return json{{"version", FWD_VERSION}};
                    }});
    }

  private:
    json node() const {
        const NodeConfig &cfg = ctx_.cfg();
        json j{{"node_name", cfg.node_name}, {"mtu", cfg.mtu}};
        j["ipv4"] = cfg.node_ip4 ? json(cfg.node_ip4->str()) : json();
        j["ipv6"] = cfg.node_ip6 ? json(cfg.node_ip6->str()) : json();
        for (const Module *m : ctx_.modules()) {
            m->describe_node(j);
        }
        return j;
    }

    json tables() const {
        json j = json::object();
        for (const Module *m : ctx_.modules()) {
            m->describe_tables(j);
        }
        json core;
        ctx_.core_counters(core);
        j["api_ring_full_waits"] = core["api_ring_full_waits"];
        j["mbufs"] = mempools_json();
        return j;
    }

    // {"enabled": true|false}: per-stage counters on or off in every worker.
    json stage_stats(const json &args) {
        auto it = args.find("enabled");
        if (it == args.end() || it->is_null()) {
            bad("missing field 'enabled'");
        }
        if (!it->is_boolean()) {
            bad(std::string("field 'enabled' must be true or false, got ") + it->type_name());
        }
        bool on = it->get<bool>();
        const auto &workers = ctx_.workers();
        for (dp::Worker *w : workers) {
            w->set_stage_stats(on);
        }
        // Live once each worker acknowledged a command posted after the store.
        for (unsigned w = 0; w < workers.size(); w++) {
            ctx_.worker_do(w, {dp::WorkerCommand::Kind::kSync, 0, 0, 0});
        }
        return json{{"stage_stats", on}};
    }

    json stats() const {
        const NodeConfig &cfg = ctx_.cfg();
        json ports = json::array();
        uint16_t pid;
        RTE_ETH_FOREACH_DEV(pid) {
            rte_eth_stats st{};
            rte_eth_stats_get(pid, &st);
            char name[RTE_ETH_NAME_MAX_LEN] = {};
            rte_eth_dev_get_name_by_port(pid, name);
            auto role = ctx_.tables().port(pid).role.load(std::memory_order_acquire);
            ports.push_back(json{{"port_id", pid},
                                 {"name", name},
                                 {"kind", role_name(role)},
                                 {"rx_packets", st.ipackets},
                                 {"rx_bytes", st.ibytes},
                                 {"tx_packets", st.opackets},
                                 {"tx_bytes", st.obytes},
                                 {"rx_missed", st.imissed},
                                 {"tx_errors", st.oerrors},
                                 {"link", ports_.link_json(pid)}});
        }
        for (const auto &[pid, sp] : ports_.soft_ports()) {
            auto role = ctx_.tables().port(pid).role.load(std::memory_order_acquire);
            json row{{"port_id", pid},
                     {"name", sp.name},
                     {"kind", role_name(role)},
                     // no ethdev link: up while attached, unless its driver says more
                     {"link", json{{"up", role != dp::PortRole::kNone}, {"events", 0}}}};
            if (sp.stats) {
                row.update(sp.stats());
            }
            ports.push_back(std::move(row));
        }
        const auto &wk = ctx_.workers();
        json workers = json::array();
        uint64_t icmp = 0;
        std::vector<uint64_t> total(dp::kDropReasonCount, 0);
        bool stage_stats = wk.empty() ? cfg.stage_stats : true;
        for (unsigned w = 0; w < wk.size(); w++) {
            const dp::WorkerStats &s = wk[w]->stats();
            stage_stats = stage_stats && wk[w]->stage_stats();
            const auto &names = wk[w]->pipeline().stage_names;
            json stages = json::object();
            for (size_t i = 0; i < names.size(); i++) {
                stages[names[i]] = stage_json(s.stages[i]);
            }
            // this worker's drops: only the reasons it has counted (the
            // totals below list every reason)
            json drops = json::object();
            for (size_t r = 0; r < dp::kDropReasonCount; r++) {
                const uint64_t n = s.drops[r].get();
                total[r] += n;
                if (n != 0) {
                    drops[std::string(dp::kDropReasonInfo[r].name)] = n;
                }
            }
            json punted = json::object();
            for (size_t r = 0; r < dp::kPuntReasonCount; r++) {
                punted[std::string(dp::kPuntReasonNames[r])] = s.punted[r].get();
            }
            workers.push_back(json{{"worker", w},
                                   {"core", cfg.workers[w].core},
                                   {"rx_packets", s.rx_packets.get()},
                                   {"tx_packets", s.tx_packets.get()},
                                   {"busy_polls", s.busy_polls.get()},
                                   {"idle_polls", s.idle_polls.get()},
                                   {"sleeps", s.sleeps.get()},
                                   {"blocks", s.blocks.get()},
                                   {"wakeups", s.wakeups.get()},
                                   {"punted", punted},
                                   {"drops", drops},
                                   {"host_tx", s.host_tx.get()},
                                   {"gso_frames", s.gso_frames.get()},
                                   {"gso_segments", s.gso_segments.get()},
                                   {"rx_queues", wk[w]->rx_queue_count()},
                                   {"busy_loops", s.busy_loops.get()},
                                   {"busy_cycles", s.busy_cycles.get()},
                                   {"stages", stages}});
            icmp += s.icmp_errors_sent.get();
        }
        json drops = json::object();
        for (size_t r = 0; r < dp::kDropReasonCount; r++) {
            drops[std::string(dp::kDropReasonInfo[r].name)] = total[r];
        }
        json control = json::object();
        ctx_.core_counters(control);
        for (const Module *m : ctx_.modules()) {
            m->counters(control);
        }
        return json{{"ports", ports},
                    {"workers", workers},
                    {"drops", drops},
                    {"icmp_errors_sent", icmp},
                    {"control", control},
                    {"tsc_hz", rte_get_tsc_hz()},
                    {"stage_stats", stage_stats}};
    }

    ControlContext &ctx_;
    PortsModule &ports_;
};

}  // namespace

FWD_ON_LOAD(register_module<NodeModule>({PortsModule::kName}));

}  // namespace fwd::control
