// Watching the daemon from outside (issue 18): Prometheus metrics on
// /metrics and Felix-style /liveness and /readiness, each on a listener of
// its own. No DPDK here: the config sections, the listen addresses and the
// mapping of the daemon's counters (the stats, tables and node ops, as the
// metrics module snapshots them on the control thread) to metric families,
// so all of it is tested without EAL.
//
// Config (both off by default, as Felix's; a port serves only once the
// operator turned it on):
//   "metrics": {"enabled": false, "host": "",          "port": 9091}
//   "health":  {"enabled": false, "host": "localhost", "port": 9099}
// host "" listens on every IPv4 and IPv6 address (Felix's
// prometheusMetricsHost default), "localhost" on 127.0.0.1 and ::1 (Felix's
// healthHost default), anything else must be one IPv4 or IPv6 address: no
// name is resolved, so the daemon listens exactly where the config says.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "prometheus/metric_family.h"

namespace fwd::control {

struct ListenConfig {
    bool enabled = false;
    std::string host;
    uint16_t port = 0;
};
struct MetricsConfig : ListenConfig {
    MetricsConfig() : ListenConfig{false, "", 9091} {}
};
struct HealthConfig : ListenConfig {
    HealthConfig() : ListenConfig{false, "localhost", 9099} {}
};

// {"enabled": bool, "host": "...", "port": n}, the metrics.listen and
// health.listen ops' arguments (FelixConfiguration moves the listeners),
// checked as the config's sections are; throws std::invalid_argument naming
// the field.
ListenConfig listen_of(const nlohmann::json &j);
nlohmann::json to_json(const ListenConfig &c);

// A listener the config starts and FelixConfiguration moves (the metrics
// and health modules' servers). start(listening_ports) makes the server and
// throws when it cannot listen; stop() ends it. online() / offline() on the
// main thread, relisten() from another (felix_module.cpp's follower, never
// the control thread: stopping the metrics exposer waits for a scrape in
// progress, which waits for the control thread); config() from any, never
// waiting for a server to stop.
class Listener {
  public:
    using Start = std::function<void(const std::string &where)>;
    Listener(std::string what, ListenConfig c, Start start, std::function<void()> stop)
        : what_(std::move(what)),
          cfg_(std::move(c)),
          start_(std::move(start)),
          stop_(std::move(stop)) {}

    void online();   // throws "<what>: cannot listen on <where>: <why>"
    void offline();  // waits for the server's threads
    // The server on c from now on (made again when it changed and online).
    // {"listen": "<where>" or null, "changed": bool}; throws as online().
    nlohmann::json relisten(const ListenConfig &c);
    ListenConfig config() const;

  private:
    void listen();  // mu_ held

    const std::string what_;
    std::mutex mu_;              // online_ and the server (start_ / stop_)
    mutable std::mutex cfg_mu_;  // cfg_ (written under mu_ too)
    ListenConfig cfg_;
    bool online_ = false;
    Start start_;
    std::function<void()> stop_;
};

// civetweb's listening_ports for host and port: "+9091" (every IPv4 and IPv6
// address), "127.0.0.1:9099,[::1]:9099", "10.0.0.1:9091", "[fd00::1]:9091".
// host must have passed the config's check.
std::string listening_ports(const ListenConfig &c);

// A latency histogram written by one thread at a time and read by any
// (relaxed atomics: a reader may see an observation in the count before its
// sum, never a torn value). Buckets as Prometheus' client defaults, in
// seconds, up to 10 s (a CNI ADD waits on the IPAM store).
class LatencyHistogram {
  public:
    static constexpr double kBounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
    static constexpr size_t kBuckets = std::size(kBounds);

    void observe(uint64_t ns);
    // {"le": [bounds], "counts": [per bucket, not cumulative, the last one
    // past the largest bound], "sum_seconds": s}
    nlohmann::json to_json() const;

  private:
    std::atomic<uint64_t> counts_[kBuckets + 1] = {};
    std::atomic<uint64_t> sum_ns_{0};
};

// The metric families of one snapshot:
//   {"stats": <stats op>, "tables": <tables op>, "node": <node.get op>,
//    "neighbors": {"<state>": count}, "version": "0.1.0", "dpdk": "DPDK 22.11.1"}
// Every field optional (an absent part gives no families). Names follow the
// Prometheus conventions: dpdk_fwd_ prefix, _total on counters, base units
// (seconds from TSC cycles, bytes). Counters of stats.control that no rule
// names are exported as dpdk_fwd_control_value{key="<path>"} (untyped), so
// a module's new counter is never missing, only waiting for a proper name.
std::vector<prometheus::MetricFamily> metric_families(const nlohmann::json &snapshot);

}  // namespace fwd::control
