// The metric families of a snapshot and the listen addresses (observe.hpp).
// Runs on the exposer's thread, on a snapshot the control thread made: it
// reads nothing of the daemon's state itself.
#include "fwd/control/observe.hpp"

#include <cmath>
#include <limits>
#include <map>
#include <span>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "fwd/control/config_sections.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::control {

using nlohmann::json;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

std::string listening_ports(const ListenConfig &c) {
    const std::string port = std::to_string(c.port);
    if (c.host.empty()) {
        return "+" + port;  // civetweb: every address, IPv4 and IPv6
    }
    if (c.host == "localhost") {
        return "127.0.0.1:" + port + ",[::1]:" + port;
    }
    if (c.host.find(':') != std::string::npos) {
        return "[" + c.host + "]:" + port;
    }
    return c.host + ":" + port;
}

ListenConfig listen_of(const json &j) {
    ListenConfig c;
    auto field = [&j](const char *k) -> const json & {
        auto it = j.find(k);
        if (it == j.end()) {
            throw std::invalid_argument(std::string("missing field '") + k + "'");
        }
        return *it;
    };
    const json &enabled = field("enabled");
    const json &host = field("host");
    const json &port = field("port");
    if (!enabled.is_boolean()) {
        throw std::invalid_argument("field 'enabled' must be true or false");
    }
    if (!host.is_string() || (!host.get<std::string>().empty() && host != "localhost" &&
                              !net::IpAddr::parse(host.get<std::string>()))) {
        throw std::invalid_argument(
            "field 'host' must be \"\", \"localhost\" or an IP address, got " + host.dump());
    }
    if (!port.is_number_unsigned() || port.get<uint64_t>() < 1 || port.get<uint64_t>() > 65535) {
        throw std::invalid_argument("field 'port' must be 1 to 65535, got " + port.dump());
    }
    c.enabled = enabled.get<bool>();
    c.host = host.get<std::string>();
    c.port = port.get<uint16_t>();
    return c;
}

json to_json(const ListenConfig &c) {
    return json{{"enabled", c.enabled}, {"host", c.host}, {"port", c.port}};
}

void Listener::online() {
    std::lock_guard g(mu_);
    online_ = true;
    listen();
}

void Listener::offline() {
    std::lock_guard g(mu_);
    online_ = false;
    stop_();
}

json Listener::relisten(const ListenConfig &c) {
    std::lock_guard g(mu_);
    bool changed;
    {
        std::lock_guard cg(cfg_mu_);
        changed = c.enabled != cfg_.enabled || c.host != cfg_.host || c.port != cfg_.port;
        cfg_ = c;
    }
    if (changed && online_) {
        listen();
    }
    return json{{"listen", cfg_.enabled ? json(listening_ports(cfg_)) : json()},
                {"changed", changed}};
}

ListenConfig Listener::config() const {
    std::lock_guard g(cfg_mu_);
    return cfg_;
}

void Listener::listen() {
    stop_();
    if (!cfg_.enabled) {
        return;
    }
    const std::string where = listening_ports(cfg_);
    try {
        start_(where);
    } catch (const std::exception &e) {
        throw std::runtime_error(what_ + ": cannot listen on " + where + ": " + e.what());
    }
}

void LatencyHistogram::observe(uint64_t ns) {
    const double s = static_cast<double>(ns) / 1e9;
    size_t i = 0;
    while (i < kBuckets && s > kBounds[i]) {
        i++;
    }
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
}

json LatencyHistogram::to_json() const {
    json le = json::array();
    json counts = json::array();
    for (size_t i = 0; i <= kBuckets; i++) {
        if (i < kBuckets) {
            le.push_back(kBounds[i]);
        }
        counts.push_back(counts_[i].load(std::memory_order_relaxed));
    }
    return json{
        {"le", le},
        {"counts", counts},
        {"sum_seconds", static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9}};
}

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// The families being built, by name, in the order they were first used.
class Families {
  public:
    void add(const std::string &name, const char *help, MetricType type, const Labels &labels,
             double value) {
        ClientMetric m = metric(labels);
        switch (type) {
            case MetricType::Counter:
                m.counter.value = value;
                break;
            case MetricType::Gauge:
                m.gauge.value = value;
                break;
            default:
                m.untyped.value = value;
                break;
        }
        family(name, help, type).metric.push_back(std::move(m));
    }

    // A histogram from LatencyHistogram::to_json().
    void histogram(const std::string &name, const char *help, const Labels &labels, const json &h) {
        ClientMetric m = metric(labels);
        const json &le = h.at("le");
        const json &counts = h.at("counts");
        uint64_t cumulative = 0;
        for (size_t i = 0; i < counts.size(); i++) {
            cumulative += counts[i].get<uint64_t>();
            double bound =
                i < le.size() ? le[i].get<double>() : std::numeric_limits<double>::infinity();
            m.histogram.bucket.push_back({cumulative, bound});
        }
        m.histogram.sample_count = cumulative;
        m.histogram.sample_sum = h.value("sum_seconds", 0.0);
        family(name, help, MetricType::Histogram).metric.push_back(std::move(m));
    }

    std::vector<MetricFamily> take() { return std::move(out_); }

  private:
    static ClientMetric metric(const Labels &labels) {
        ClientMetric m;
        for (const auto &[k, v] : labels) {
            m.label.push_back({k, v});
        }
        return m;
    }
    MetricFamily &family(const std::string &name, const char *help, MetricType type) {
        auto [it, added] = index_.emplace(name, out_.size());
        if (added) {
            out_.push_back(MetricFamily{name, help, type, {}});
        }
        return out_[it->second];
    }

    std::map<std::string, size_t, std::less<>> index_;
    std::vector<MetricFamily> out_;
};

// A number (or a boolean, as 0 / 1) from j[key]; false when it is neither.
bool number_of(const json &j, std::string_view key, double &v) {
    auto it = j.find(key);
    if (it == j.end()) {
        return false;
    }
    if (it->is_boolean()) {
        v = it->get<bool>() ? 1 : 0;
        return true;
    }
    if (it->is_number()) {
        v = it->get<double>();
        return true;
    }
    return false;
}

// j[key] when it is an object or an array, else an empty one: a reference
// that outlives the loop over it (value() would return a temporary).
const json &member(const json &j, std::string_view key) {
    static const json kEmpty = json::object();
    auto it = j.find(key);
    return it != j.end() && (it->is_object() || it->is_array()) ? *it : kEmpty;
}

std::string text_of(const json &j, std::string_view key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        return "";
    }
    return it->is_string() ? it->get<std::string>() : it->dump();
}

// A field of a row exported as one family: fields[i] of the row becomes
// name{labels} if the row has it.
struct Field {
    const char *key;
    const char *name;
    MetricType type;
    const char *help;
};

void add_fields(Families &f, const json &row, const Labels &labels,
                std::initializer_list<Field> fields) {
    for (const Field &x : fields) {
        double v;
        if (number_of(row, x.key, v)) {
            f.add(x.name, x.help, x.type, labels, v);
        }
    }
}

constexpr auto kC = MetricType::Counter;
constexpr auto kG = MetricType::Gauge;

void add_ports(Families &f, const json &ports) {
    for (const json &p : ports) {
        const Labels l{{"port", text_of(p, "port_id")},
                       {"name", text_of(p, "name")},
                       {"kind", text_of(p, "kind")}};
        add_fields(f, p, l,
                   {{"rx_packets", "dpdk_fwd_port_rx_packets_total", kC, "Packets received"},
                    {"rx_bytes", "dpdk_fwd_port_rx_bytes_total", kC, "Bytes received"},
                    {"tx_packets", "dpdk_fwd_port_tx_packets_total", kC, "Packets sent"},
                    {"tx_bytes", "dpdk_fwd_port_tx_bytes_total", kC, "Bytes sent"},
                    {"rx_missed", "dpdk_fwd_port_rx_missed_packets_total", kC,
                     "Packets the port dropped on receive: no room in its RX queue"},
                    {"rx_errors", "dpdk_fwd_port_rx_errors_total", kC, "Receive errors"},
                    {"tx_errors", "dpdk_fwd_port_tx_errors_total", kC, "Transmit errors"}});
        if (auto link = p.find("link"); link != p.end() && link->is_object()) {
            add_fields(f, *link, l,
                       {{"up", "dpdk_fwd_port_up", kG, "1 while the port's link is up"},
                        {"events", "dpdk_fwd_port_link_events_total", kC,
                         "Link state changes reported by the port"}});
        }
    }
}

void add_workers(Families &f, const json &stats) {
    double hz = 0;
    number_of(stats, "tsc_hz", hz);
    const bool stages_on = stats.value("stage_stats", false);
    f.add("dpdk_fwd_stage_stats_enabled",
          "1 while the per-stage counters are on (fwdctl stats stages on)", kG, {},
          stages_on ? 1 : 0);
    for (const json &w : member(stats, "workers")) {
        const Labels l{{"worker", text_of(w, "worker")}, {"core", text_of(w, "core")}};
        add_fields(
            f, w, l,
            {{"rx_packets", "dpdk_fwd_worker_rx_packets_total", kC,
              "Packets the worker received from its RX queues"},
             {"tx_packets", "dpdk_fwd_worker_tx_packets_total", kC,
              "Packets the worker forwarded (handed to a port for transmission)"},
             {"busy_polls", "dpdk_fwd_worker_busy_polls_total", kC, "Loops that received packets"},
             {"idle_polls", "dpdk_fwd_worker_idle_polls_total", kC, "Loops that received nothing"},
             {"sleeps", "dpdk_fwd_worker_sleeps_total", kC, "Idle back-off sleeps"},
             {"blocks", "dpdk_fwd_worker_blocks_total", kC,
              "Idle waits blocked on the worker's queues and commands (a kind of sleep)"},
             {"wakeups", "dpdk_fwd_worker_wakeups_total", kC,
              "Blocked waits ended by a packet or a command, not the timeout"},
             {"host_tx", "dpdk_fwd_worker_host_tx_packets_total", kC,
              "Frames the control side handed the worker to send"},
             {"rx_queues", "dpdk_fwd_worker_rx_queues", kG, "RX queues the worker polls"}});
        for (const auto &[reason, n] : member(w, "punted").items()) {
            Labels lr = l;
            lr.emplace_back("reason", reason);
            f.add("dpdk_fwd_worker_punted_packets_total",
                  "Packets the worker handed to the control thread, by reason", kC, lr,
                  n.get<double>());
        }
        if (!stages_on || hz <= 0) {
            continue;  // cycle counters are zero while off; no time to export
        }
        add_fields(f, w, l,
                   {{"busy_loops", "dpdk_fwd_worker_busy_loops_total", kC,
                     "Loops that received packets while the stage counters were on"}});
        double busy;
        if (number_of(w, "busy_cycles", busy)) {
            f.add("dpdk_fwd_worker_busy_seconds_total",
                  "Time in loops that received packets, while the stage counters were on", kC, l,
                  busy / hz);
        }
        for (const auto &[stage, c] : member(w, "stages").items()) {
            Labels ls = l;
            ls.emplace_back("stage", stage);
            add_fields(
                f, c, ls,
                {{"calls", "dpdk_fwd_stage_calls_total", kC, "Bursts a stage ran on"},
                 {"packets", "dpdk_fwd_stage_packets_total", kC, "Packets entering a stage"}});
            double cycles;
            if (number_of(c, "cycles", cycles)) {
                f.add("dpdk_fwd_stage_seconds_total", "Time spent in a stage", kC, ls, cycles / hz);
            }
        }
    }
}

// A counter of a module (stats.control, tables, node.ipam) under its own
// name. A "*" key names a nested object of counters by some label: every
// member of it is one series, the member's name in `label`.
struct Rule {
    const char *path;  // "conntrack/in_use", "conntrack/results/*"
    const char *name;
    MetricType type;
    const char *help;
    const char *label = nullptr;
    double scale = 1;  // to base units (microseconds to seconds: 1e-6)
};

// stats.control: the core's and every module's counters.
const Rule kControlRules[] = {
    {"worker_ring_full", "dpdk_fwd_worker_ring_full_total", kC,
     "Commands to a worker that waited for room in its ring"},
    {"punt_unhandled", "dpdk_fwd_punt_unhandled_packets_total", kC,
     "Punted packets no module takes (freed)"},
    {"api_ring_full_waits", "dpdk_fwd_api_ring_full_waits_total", kC,
     "API calls that waited for room in the control thread's ring"},
    {"port_ring_full_waits", "dpdk_fwd_port_event_ring_full_waits_total", kC,
     "Port events that waited for room in their ring"},
    {"host_to_kernel", "dpdk_fwd_host_to_kernel_packets_total", kC,
     "Packets for the node itself written to the host tap"},
    {"host_from_kernel", "dpdk_fwd_host_from_kernel_packets_total", kC,
     "Packets the node's kernel sent through the host tap"},
    {"host_write_errors", "dpdk_fwd_host_write_errors_total", kC, "Host tap write failures"},
    {"host_no_tap", "dpdk_fwd_host_no_tap_packets_total", kC,
     "Packets for the node dropped: no host tap"},
    {"host_tx_dropped", "dpdk_fwd_host_tx_dropped_packets_total", kC,
     "Host tap frames no worker could take"},
    {"neigh_frames", "dpdk_fwd_neighbor_frames_total", kC, "ARP and ND frames handled"},
    {"neigh_learned", "dpdk_fwd_neighbor_learned_total", kC, "Neighbors learned"},
    {"neigh_solicits", "dpdk_fwd_neighbor_solicits_total", kC,
     "ARP requests and neighbor solicitations sent"},
    {"neigh_queued", "dpdk_fwd_neighbor_queued_packets_total", kC,
     "Packets held while their next hop resolved"},
    {"neigh_flushed", "dpdk_fwd_neighbor_flushed_packets_total", kC,
     "Held packets sent once their next hop resolved"},
    {"neigh_dropped", "dpdk_fwd_neighbor_dropped_packets_total", kC,
     "Held packets dropped (queue full or resolution failed)"},
    {"resolve_no_neighbor", "dpdk_fwd_resolve_no_neighbor_packets_total", kC,
     "Packets for a next hop the neighbor table does not know"},
    {"versions", "dpdk_fwd_route_versions_total", kC, "Route table versions published"},
    {"route_changes", "dpdk_fwd_route_changes_total", kC, "Route changes applied"},
    {"route_errors", "dpdk_fwd_route_errors_total", kC, "Route changes refused"},
    {"bgp_events", "dpdk_fwd_bgp_route_events_total", kC,
     "Routes BIRD added or withdrew (kernel table events)"},
    {"bgp_ignored", "dpdk_fwd_bgp_route_events_ignored_total", kC,
     "BGP route events that were not usable"},
    {"capture_sessions", "dpdk_fwd_capture_sessions", kG, "Packet captures running"},
    {"capture_packets", "dpdk_fwd_capture_packets_total", kC, "Packets captured"},
    {"conntrack/capacity", "dpdk_fwd_conntrack_capacity_flows", kG, "Connection table size"},
    {"conntrack/in_use", "dpdk_fwd_conntrack_flows", kG, "Connections tracked"},
    {"conntrack/pending_free", "dpdk_fwd_conntrack_pending_free_flows", kG,
     "Expired connections waiting for a grace period"},
    {"conntrack/results/*", "dpdk_fwd_conntrack_lookups_total", kC,
     "Connection table lookups, by result", "result"},
    {"nat/applies", "dpdk_fwd_nat_applies_total", kC, "NAT configurations applied"},
    {"nat/pools", "dpdk_fwd_nat_pools", kG, "NAT outgoing pools"},
    {"nat/affinity/*", "dpdk_fwd_nat_affinity_lookups_total", kC,
     "Service session affinity lookups, by result", "result"},
    {"overlay/applies", "dpdk_fwd_overlay_applies_total", kC, "Overlay route sets applied"},
    {"overlay/apply_errors", "dpdk_fwd_overlay_apply_errors_total", kC,
     "Overlay route sets refused"},
    {"overlay/tunnels", "dpdk_fwd_overlay_tunnels", kG, "Tunnels to other nodes"},
    {"overlay/routes", "dpdk_fwd_overlay_routes", kG, "Routes to other nodes' blocks"},
    {"policy/builds", "dpdk_fwd_policy_builds_total", kC, "Policy rule sets built"},
    {"policy/build_errors", "dpdk_fwd_policy_build_errors_total", kC,
     "Policy rule set builds that failed"},
    {"policy/publishes", "dpdk_fwd_policy_publishes_total", kC,
     "Policy versions published to the workers"},
    {"policy/log_lines", "dpdk_fwd_policy_log_lines_total", kC, "Policy Log rule lines written"},
    {"policy/log_suppressed", "dpdk_fwd_policy_log_suppressed_total", kC,
     "Policy Log rule lines over the rate limit"},
    {"policy/log_lost", "dpdk_fwd_policy_log_lost_total", kC,
     "Policy Log rule records the workers could not queue"},
    {"flows/installed", "dpdk_fwd_nic_flow_groups_installed", kG,
     "Uplink NIC flow rule groups the NIC carries"},
    {"flows/validated", "dpdk_fwd_nic_flow_groups_validated", kG,
     "Uplink NIC flow rule groups validated only (flows.mode validate)"},
    {"flows/refused", "dpdk_fwd_nic_flow_groups_refused", kG,
     "Uplink NIC flow rule groups the NIC refused (left to the software path)"},
    {"flows/policy_left", "dpdk_fwd_nic_flow_policy_rules_left", kG,
     "Exact policy drop rules past flows.max_policy_rules (left to the software path)"},
    {"flows/nic_policy_drops", "dpdk_fwd_nic_policy_drops_total", kC,
     "Packets the uplink NIC dropped for a policy Deny rule (its counted drop rules)"},
    {"flows/applies", "dpdk_fwd_nic_flow_plans_total", kC, "Uplink NIC flow rule plans applied"},
    {"balance/enabled", "dpdk_fwd_balance_enabled", kG, "1 when workers are balanced by load"},
    {"balance/rounds", "dpdk_fwd_balance_rounds_total", kC, "Worker load measurements"},
    {"balance/rebalances", "dpdk_fwd_balance_rebalances_total", kC,
     "Measurements that moved queues between workers"},
    {"balance/moves", "dpdk_fwd_balance_queue_moves_total", kC,
     "RX queues moved between workers by load"},
};

// The tables op.
const Rule kTableRules[] = {
    {"version", "dpdk_fwd_route_table_version", kG, "Version of the route table the workers use"},
    {"routes_by_source/*", "dpdk_fwd_rib_routes", kG,
     "Routes in the RIB by source (bgp: learned from BIRD)", "source"},
    {"ecmp_groups", "dpdk_fwd_route_ecmp_groups", kG, "Multipath next hop groups"},
    {"endpoints", "dpdk_fwd_endpoints", kG, "Pod endpoints"},
    {"neighbor_next_hops", "dpdk_fwd_neighbor_next_hops", kG, "Next hops on the uplink"},
    {"conntrack/bytes", "dpdk_fwd_conntrack_table_bytes", kG, "Memory of the connection table"},
    {"table_memory_bytes", "dpdk_fwd_table_memory_bytes", kG,
     "Hugepage memory of the dataplane's tables"},
    {"heap_allocated_bytes", "dpdk_fwd_dpdk_heap_allocated_bytes", kG,
     "DPDK heap memory allocated (tables, rings, pools)"},
    {"bgp/enabled", "dpdk_fwd_bgp_watcher_enabled", kG,
     "1 while the kernel route watcher (BGP routes from BIRD) runs"},
    {"bgp/events", "dpdk_fwd_bgp_watcher_events_total", kC, "Kernel route events read"},
    {"bgp/ignored", "dpdk_fwd_bgp_watcher_ignored_total", kC, "Kernel route events ignored"},
    {"bgp/resyncs", "dpdk_fwd_bgp_watcher_resyncs_total", kC,
     "Full re-reads of the kernel table (after a lost event)"},
    {"bgp/backpressure_waits", "dpdk_fwd_bgp_watcher_backpressure_waits_total", kC,
     "Route batches that waited for the control thread"},
    {"bgp/last_batch_routes", "dpdk_fwd_bgp_watcher_last_batch_routes", kG,
     "Routes in the last batch applied"},
    {"bgp/last_batch_us", "dpdk_fwd_bgp_watcher_last_batch_seconds", kG,
     "Time the last route batch took to apply", nullptr, 1e-6},
    {"bgp/max_batch_us", "dpdk_fwd_bgp_watcher_max_batch_seconds", kG,
     "Longest time a route batch took to apply", nullptr, 1e-6},
    {"route_errors", nullptr, kC, nullptr},
    {"mbufs/*", nullptr, kG, nullptr},  // add_tables, by pool
    // counters the stats op has already (stats.control)
    {"route_changes", nullptr, kC, nullptr},
    {"api_ring_full_waits", nullptr, kC, nullptr},
    {"conntrack/capacity", nullptr, kC, nullptr},
    {"conntrack/in_use", nullptr, kC, nullptr},
    {"conntrack/bytes_per_flow", nullptr, kC, nullptr},
    // families of two members, by address family (add_tables)
    {"ipv4_routes", nullptr, kC, nullptr},
    {"ipv6_routes", nullptr, kC, nullptr},
    {"ipv4_capacity", nullptr, kC, nullptr},
    {"ipv6_capacity", nullptr, kC, nullptr},
};

// node.ipam: the IPAM sync.
const Rule kIpamRules[] = {
    {"ok", "dpdk_fwd_ipam_sync_ok", kG,
     "1 while the last IPAM sync round succeeded (the store is reachable)"},
    {"revision", "dpdk_fwd_ipam_store_revision", kG, "IPAM store revision last seen"},
    {"blocks", "dpdk_fwd_ipam_blocks", kG, "IPAM blocks affine to this node"},
    {"borrowed", "dpdk_fwd_ipam_borrowed_addresses", kG,
     "Addresses this node uses from other nodes' blocks"},
    {"polls", "dpdk_fwd_ipam_sync_polls_total", kC, "IPAM store revision polls"},
    {"rounds", "dpdk_fwd_ipam_sync_rounds_total", kC, "IPAM sync rounds that read the routes"},
    {"applies", "dpdk_fwd_ipam_sync_applies_total", kC, "IPAM route sets installed"},
    {"bird_reloads", "dpdk_fwd_ipam_bird_reloads_total", kC, "BIRD reconfigurations"},
    {"blocks_released", "dpdk_fwd_ipam_blocks_released_total", kC, "Empty blocks given back"},
    {"errors", "dpdk_fwd_ipam_sync_errors_total", kC, "IPAM sync rounds that failed"},
    {"followers/*", nullptr, kC, nullptr},  // add_ipam
};

const Rule *find_rule(std::span<const Rule> rules, const std::string &path) {
    for (const Rule &r : rules) {
        if (path == r.path) {
            return &r;
        }
    }
    return nullptr;
}

// Every number or boolean under j, by its rule; a leaf no rule names goes
// to `fallback`{key="<path>"} (untyped), unless fallback is null.
void add_by_rules(Families &f, const json &j, std::span<const Rule> rules, const char *fallback,
                  const char *fallback_help, const std::string &prefix = "") {
    for (const auto &[key, v] : j.items()) {
        const std::string path = prefix.empty() ? key : prefix + "/" + key;
        if (v.is_object()) {
            if (const Rule *r = find_rule(rules, path + "/*")) {
                if (r->name == nullptr) {
                    continue;
                }
                for (const auto &[member, n] : v.items()) {
                    if (n.is_number()) {
                        f.add(r->name, r->help, r->type, {{r->label, member}}, n.get<double>());
                    }
                }
                continue;
            }
            add_by_rules(f, v, rules, fallback, fallback_help, path);
            continue;
        }
        if (!v.is_number() && !v.is_boolean()) {
            continue;  // names, errors: in fwdctl's views, not metrics
        }
        const double value = v.is_boolean() ? (v.get<bool>() ? 1 : 0) : v.get<double>();
        if (const Rule *r = find_rule(rules, path)) {
            if (r->name != nullptr) {
                f.add(r->name, r->help, r->type, {}, value * r->scale);
            }
        } else if (fallback != nullptr) {
            f.add(fallback, fallback_help, MetricType::Untyped, {{"key", path}}, value);
        }
    }
}

void add_tables(Families &f, const json &t) {
    for (const char *fam : {"ipv4", "ipv6"}) {
        const Labels l{{"family", fam}};
        double v;
        if (number_of(t, std::string(fam) + "_routes", v)) {
            f.add("dpdk_fwd_routes", "Routes installed in the dataplane's table", kG, l, v);
        }
        if (number_of(t, std::string(fam) + "_capacity", v)) {
            f.add("dpdk_fwd_routes_capacity", "Size of the dataplane's route table", kG, l, v);
        }
    }
    for (const auto &[pool, m] : member(t, "mbufs").items()) {
        add_fields(f, m, {{"pool", pool}},
                   {{"in_use", "dpdk_fwd_mbufs_in_use", kG,
                     "Packet buffers taken from the pool: in RX rings, queues, in flight (what the "
                     "per-core caches hold counts as free)"},
                    {"capacity", "dpdk_fwd_mbufs_capacity", kG, "Packet buffers in the pool"}});
    }
    add_by_rules(f, t, kTableRules, "dpdk_fwd_table_value",
                 "A table size of the tables op that has no name of its own yet (key: its path)");
}

void add_ipam(Families &f, const json &ipam) {
    add_by_rules(f, ipam, kIpamRules, nullptr, nullptr);
    for (const auto &[name, fo] : member(ipam, "followers").items()) {
        add_fields(f, fo, {{"follower", name}},
                   {{"ok", "dpdk_fwd_ipam_follower_ok", kG,
                     "1 while the follower's last run of the IPAM sync succeeded"},
                    {"runs", "dpdk_fwd_ipam_follower_runs_total", kC,
                     "Runs of a follower of the IPAM sync"},
                    {"errors", "dpdk_fwd_ipam_follower_errors_total", kC,
                     "Failed runs of a follower of the IPAM sync"}});
    }
}

// control.cni: {"calls": {"<op>": {"results": {"ok": n, "<code>": n}, "latency": histogram}}}
void add_cni(Families &f, const json &cni) {
    for (const auto &[op, c] : member(cni, "calls").items()) {
        for (const auto &[result, n] : member(c, "results").items()) {
            f.add("dpdk_fwd_cni_calls_total",
                  "CNI plugin calls the daemon served, by op and result (ok or the error code)", kC,
                  {{"op", op}, {"result", result}}, n.get<double>());
        }
        if (auto h = c.find("latency"); h != c.end() && h->is_object()) {
            f.histogram("dpdk_fwd_cni_call_duration_seconds",
                        "Time the daemon took to serve a CNI plugin call", {{"op", op}}, *h);
        }
    }
}

// "metrics" and "health": {"enabled", "host", "port"}.
template <typename T>
T parse_listen(const config::Object &o, const NodeConfig &) {
    T c;
    if (auto f = o.get("enabled")) {
        c.enabled = f->boolean();
    }
    if (auto f = o.get("host")) {
        c.host = f->string("\"\" (every address), \"localhost\" or an IPv4 or IPv6 address");
        if (!c.host.empty() && c.host != "localhost" && !net::IpAddr::parse(c.host)) {
            f->fail("\"" + c.host +
                    "\" is not an IPv4 or IPv6 address (names are not resolved); use \"\" for "
                    "every address or \"localhost\" for 127.0.0.1 and ::1");
        }
    }
    if (auto f = o.get("port")) {
        c.port = f->integer<uint16_t>(1, 65535);
    }
    return c;
}

}  // namespace

FWD_ON_LOAD(register_config_section<MetricsConfig>("metrics", {"enabled", "host", "port"},
                                                   parse_listen<MetricsConfig>));
FWD_ON_LOAD(register_config_section<HealthConfig>("health", {"enabled", "host", "port"},
                                                  parse_listen<HealthConfig>));

// Every reason for every worker (a series exists before its first drop):
// the stats op lists each worker's non-zero reasons and the totals of all.
void add_drops(Families &f, const json &stats) {
    const json &all = member(stats, "drops");
    for (const json &w : member(stats, "workers")) {
        const json &mine = member(w, "drops");
        const std::string worker = text_of(w, "worker");
        for (const auto &[reason, n] : all.items()) {
            const auto it = mine.find(reason);
            f.add("dpdk_fwd_drops_total", "Packets the dataplane dropped, by worker and reason", kC,
                  {{"worker", worker}, {"reason", reason}},
                  it != mine.end() ? it->get<double>() : 0.0);
        }
    }
}

std::vector<MetricFamily> metric_families(const json &snapshot) {
    Families f;
    if (auto v = snapshot.find("version"); v != snapshot.end()) {
        f.add("dpdk_fwd_build_info", "The daemon's version and the DPDK it was built with", kG,
              {{"version", v->get<std::string>()}, {"dpdk", text_of(snapshot, "dpdk")}}, 1);
    }
    if (auto s = snapshot.find("stats"); s != snapshot.end() && s->is_object()) {
        add_ports(f, member(*s, "ports"));
        add_workers(f, *s);
        add_drops(f, *s);
        add_fields(f, *s, {},
                   {{"icmp_errors_sent", "dpdk_fwd_icmp_errors_sent_total", kC,
                     "ICMP and ICMPv6 errors the dataplane sent"}});
        if (auto c = s->find("control"); c != s->end() && c->is_object()) {
            json rest = *c;
            if (auto cni = rest.find("cni"); cni != rest.end()) {
                add_cni(f, *cni);
                rest.erase("cni");
            }
            add_by_rules(f, rest, kControlRules, "dpdk_fwd_control_value",
                         "A counter of the stats op's control section that has no name of its "
                         "own yet (key: its path)");
        }
    }
    if (auto t = snapshot.find("tables"); t != snapshot.end() && t->is_object()) {
        add_tables(f, *t);
    }
    if (auto n = snapshot.find("node"); n != snapshot.end() && n->is_object()) {
        if (auto ipam = n->find("ipam"); ipam != n->end() && ipam->is_object()) {
            add_ipam(f, *ipam);
        }
    }
    if (auto n = snapshot.find("neighbors"); n != snapshot.end() && n->is_object()) {
        for (const auto &[state, count] : n->items()) {
            f.add("dpdk_fwd_neighbors", "Uplink neighbors (ARP / ND entries), by state", kG,
                  {{"state", state}}, count.get<double>());
        }
    }
    return f.take();
}

}  // namespace fwd::control
