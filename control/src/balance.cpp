// The balancing plan (balance.hpp).
#include "fwd/control/balance.hpp"

#include <algorithm>
#include <cstdio>

namespace fwd::control::balance {

namespace {

std::string pct(double x) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%.0f %%", x * 100);
    return buf;
}

}  // namespace

Decision plan(const std::vector<QueueLoad> &queues, unsigned workers, const Params &p) {
    Decision d;
    d.before.assign(workers, 0);
    for (const auto &q : queues) {
        if (q.worker < workers) {
            d.before[q.worker] += q.load;
        }
    }
    d.after = d.before;
    if (workers < 2) {
        d.why = "one worker";
        return d;
    }
    const double busiest = *std::max_element(d.before.begin(), d.before.end());
    if (busiest < p.load_threshold) {
        d.why = "no worker at " + pct(p.load_threshold) + " (busiest " + pct(busiest) + ")";
        return d;
    }
    std::vector<double> load(workers, 0);
    std::vector<const QueueLoad *> movable;
    for (const auto &q : queues) {
        if (q.worker >= workers) {
            continue;
        }
        if (q.movable) {
            movable.push_back(&q);
        } else {
            load[q.worker] += q.load;
        }
    }
    std::stable_sort(movable.begin(), movable.end(),
                     [](const QueueLoad *a, const QueueLoad *b) { return a->load > b->load; });
    std::vector<Move> moves;
    for (const QueueLoad *q : movable) {
        unsigned best = q->worker;
        for (unsigned w = 0; w < workers; w++) {
            if (load[w] < load[best]) {
                best = w;
            }
        }
        load[best] += q->load;
        if (best != q->worker) {
            moves.push_back(Move{q->port, q->queue, q->worker, best});
        }
    }
    const double new_busiest = *std::max_element(load.begin(), load.end());
    if (moves.empty() || busiest - new_busiest < p.improvement * busiest) {
        d.why = "no assignment lowers the busiest worker by " + pct(p.improvement) + " (" +
                pct(busiest) + " -> " + pct(new_busiest) + ")";
        return d;
    }
    d.after = load;
    d.moves = std::move(moves);
    d.why = "busiest worker " + pct(busiest) + " -> " + pct(new_busiest);
    return d;
}

}  // namespace fwd::control::balance
