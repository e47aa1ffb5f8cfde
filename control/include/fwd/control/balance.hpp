// Worker load balancing (issue 21): pod queues moved between workers by their measured load,
// as OVS's PMD auto load balancing does. The plan is pure (no DPDK, unit tested); the
// "balance" module (balance_module.cpp) measures and moves.
//
// Load. Each worker times one poll in 8 of each queue it owns (reading the burst and running it
// through the pipeline, dp::QueueLoad) and reports the totals on request; the module takes the
// difference over an interval, so a queue's load is the share of a core its packets took, and
// a worker's the sum of its queues'.
//
// Decision (each interval):
//   - only when some worker's load reaches load_threshold (a core busy enough to be the
//     bottleneck; OVS: 95 %);
//   - the proposal: queues that may move (pod ports: tun and vhost-user; the config's uplink
//     and the shared pod tap are pinned to the workers the config or the setup gave them) are
//     given, heaviest first, to the worker with the least load so far, pinned queues counted
//     first (OVS's "cycles" assignment); a queue stays where it is when that worker ties;
//   - it is taken only when it lowers the busiest worker's load by at least improvement of
//     it (OVS compares the variance; the busiest worker is what caps throughput), and only the
//     queues whose worker changes move.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fwd::control::balance {

struct QueueLoad {
    uint16_t port = 0, queue = 0;
    unsigned worker = 0;
    double load = 0;  // share of a core, 0..1 (may pass 1 a little: sampling)
    bool movable = false;
    bool operator==(const QueueLoad &) const = default;
};

struct Params {
    double load_threshold = 0.7;
    double improvement = 0.25;
};

struct Move {
    uint16_t port = 0, queue = 0;
    unsigned from = 0, to = 0;
    bool operator==(const Move &) const = default;
};

struct Decision {
    std::vector<double> before, after;  // each worker's load now and as proposed
    std::vector<Move> moves;            // empty: no change
    std::string why;                    // "no worker at 70 %", "improves 90 % -> 50 %", ...
};

Decision plan(const std::vector<QueueLoad> &queues, unsigned workers, const Params &p);

}  // namespace fwd::control::balance
