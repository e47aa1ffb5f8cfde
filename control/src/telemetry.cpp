// The telemetry commands' replies (telemetry.hpp): from the result of an op
// the control thread ran, on DPDK's telemetry thread. Reads nothing of the
// daemon's state itself.
#include "fwd/control/telemetry.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "fwd/control/config_sections.hpp"

namespace fwd::control::telemetry {

using nlohmann::json;

namespace {

constexpr Command kCommands[] = {
    {"/dpdk_fwd/stats", "stats",
     "dpdk-fwd totals: packets received, forwarded (tx_packets), dropped, punted. No parameters"},
    {"/dpdk_fwd/drops", "stats", "dpdk-fwd packets dropped, by reason. No parameters"},
    {"/dpdk_fwd/ports", "stats",
     "dpdk-fwd port ids; with a port id (/dpdk_fwd/ports,0): that port's counters"},
    {"/dpdk_fwd/workers", "stats",
     "dpdk-fwd per worker totals; with a worker id (/dpdk_fwd/workers,0): that worker's "
     "counters, punts and stages"},
    {"/dpdk_fwd/tables", "tables", "dpdk-fwd table sizes and versions. No parameters"},
};

// The worker counters /dpdk_fwd/workers shows for each worker (the rest,
// per worker, takes its id: 16 KB is all a reply may hold).
constexpr const char *kWorkerTotals[] = {"core",       "rx_packets", "tx_packets", "busy_polls",
                                         "idle_polls", "sleeps",     "host_tx",    "rx_queues"};

// A counter: a whole number not below 0 (0 for anything else).
uint64_t count_of(const json &v) {
    return v.is_number_integer() && v.get<int64_t>() >= 0 ? v.get<uint64_t>() : 0;
}

uint64_t sum_of(const json &rows, const char *key) {
    uint64_t n = 0;
    for (const json &r : rows) {
        if (auto it = r.find(key); it != r.end()) {
            n += count_of(*it);
        }
    }
    return n;
}

uint64_t sum_values(const json &obj) {
    uint64_t n = 0;
    for (const auto &[_, v] : obj.items()) {
        n += count_of(v);
    }
    return n;
}

const json &array_of(const json &j, const char *key) {
    static const json kEmpty = json::array();
    auto it = j.find(key);
    return it != j.end() && it->is_array() ? *it : kEmpty;
}

void no_params(std::string_view name, std::string_view params) {
    if (!params.empty()) {
        throw std::invalid_argument(std::string(name) + " takes no parameter, got '" +
                                    std::string(params) + "'");
    }
}

// The row of `rows` whose `key` is the id in params.
const json &row_by_id(std::string_view name, std::string_view params, const json &rows,
                      const char *key, const char *what) {
    uint64_t id = 0;
    const char *end = params.data() + params.size();
    auto [p, ec] = std::from_chars(params.data(), end, id);
    if (ec != std::errc() || p != end) {
        throw std::invalid_argument(std::string(name) + " takes a " + what +
                                    " id (a number), got '" + std::string(params) + "'");
    }
    for (const json &r : rows) {
        if (auto it = r.find(key); it != r.end() && it->is_number_integer() &&
                                   it->get<int64_t>() >= 0 && it->get<uint64_t>() == id) {
            return r;
        }
    }
    throw std::invalid_argument(std::string(name) + ": no " + what + " " + std::to_string(id));
}

std::string fit_key(std::string_view k) {
    std::string out(k.substr(0, kMaxString));
    for (char &c : out) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '/';
        c = ok ? c : '_';
    }
    return out.empty() ? "_" : out;
}

std::string scalar_text(const json &v) {
    if (v.is_string()) {
        return v.get<std::string>().substr(0, kMaxString);
    }
    return v.is_null() ? std::string() : v.dump().substr(0, kMaxString);
}

json fit_value(const json &v) {
    if (v.is_object()) {
        json out = json::object();
        size_t n = 0;
        for (const auto &[k, x] : v.items()) {
            if (n == kMaxDict - 1 && v.size() > kMaxDict) {
                out["truncated"] = v.size() - n;  // entries left out
                break;
            }
            out[fit_key(k)] = fit_value(x);
            n++;
        }
        return out;
    }
    if (v.is_array()) {
        bool nested = false;
        for (const json &x : v) {
            nested |= x.is_structured();
        }
        if (nested) {  // telemetry's arrays hold one scalar type: a dict by index
            json out = json::object();
            for (size_t i = 0; i < v.size() && i < kMaxDict; i++) {
                out[std::to_string(i)] = fit_value(v[i]);
            }
            return out;
        }
        json out = json::array();
        bool unsigned_only = true;
        for (size_t i = 0; i < v.size() && i < kMaxArray; i++) {
            out.push_back(fit_value(v[i]));
            unsigned_only &= out.back().is_number_unsigned();
        }
        if (!unsigned_only) {
            for (size_t i = 0; i < out.size(); i++) {
                out[i] = scalar_text(v[i]);
            }
        }
        return out;
    }
    if (v.is_boolean()) {
        return v.get<bool>() ? 1u : 0u;
    }
    if (v.is_number_unsigned()) {
        return v;
    }
    if (v.is_number_integer()) {
        const int64_t i = v.get<int64_t>();
        if (i >= 0) {
            return static_cast<uint64_t>(i);
        }
        // telemetry's signed values are 32-bit
        if (i >= std::numeric_limits<int32_t>::min() && i <= std::numeric_limits<int32_t>::max()) {
            return v;
        }
        return std::to_string(i);
    }
    if (v.is_number_float()) {
        const double d = v.get<double>();
        if (d >= 0 && d < 1.8e19 && std::floor(d) == d) {
            return static_cast<uint64_t>(d);
        }
        return scalar_text(v);
    }
    return scalar_text(v);
}

}  // namespace

FWD_ON_LOAD(register_config_section<TelemetryConfig>("telemetry", {"enabled"},
                                                     [](const config::Object &o,
                                                        const NodeConfig &) {
                                                         TelemetryConfig c;
                                                         if (auto f = o.get("enabled")) {
                                                             c.enabled = f->boolean();
                                                         }
                                                         return c;
                                                     }));

std::span<const Command> commands() {
    return kCommands;
}

json fit(const json &j) {
    json out = fit_value(j);
    return out.is_structured() ? out : json::array({out});
}

json reply(std::string_view name, std::string_view params, const json &result,
           const std::string &node_name) {
    if (name == "/dpdk_fwd/stats") {
        no_params(name, params);
        const json &workers = array_of(result, "workers");
        uint64_t punted = 0;
        for (const json &w : workers) {
            punted += sum_values(w.value("punted", json::object()));
        }
        return fit(json{{"node", node_name},
                        {"version", FWD_VERSION},
                        {"workers", workers.size()},
                        {"ports", array_of(result, "ports").size()},
                        {"rx_packets", sum_of(workers, "rx_packets")},
                        {"tx_packets", sum_of(workers, "tx_packets")},
                        {"dropped", sum_values(result.value("drops", json::object()))},
                        {"punted", punted},
                        {"host_tx", sum_of(workers, "host_tx")},
                        {"icmp_errors_sent", result.value("icmp_errors_sent", 0u)},
                        {"stage_stats", result.value("stage_stats", false)}});
    }
    if (name == "/dpdk_fwd/drops") {
        no_params(name, params);
        return fit(result.value("drops", json::object()));
    }
    if (name == "/dpdk_fwd/ports") {
        const json &ports = array_of(result, "ports");
        if (params.empty()) {
            json ids = json::array();
            for (const json &p : ports) {
                ids.push_back(p.value("port_id", 0u));
            }
            return fit(ids);
        }
        return fit(row_by_id(name, params, ports, "port_id", "port"));
    }
    if (name == "/dpdk_fwd/workers") {
        const json &workers = array_of(result, "workers");
        if (!params.empty()) {
            return fit(row_by_id(name, params, workers, "worker", "worker"));
        }
        json out = json::object();
        for (const json &w : workers) {
            json row = json::object();
            for (const char *k : kWorkerTotals) {
                if (auto it = w.find(k); it != w.end()) {
                    row[k] = *it;
                }
            }
            out[std::to_string(w.value("worker", 0u))] = row;
        }
        return fit(out);
    }
    if (name == "/dpdk_fwd/tables") {
        no_params(name, params);
        return fit(result);
    }
    throw std::invalid_argument("unknown telemetry command '" + std::string(name) + "'");
}

}  // namespace fwd::control::telemetry
