// The balancing plan (control/balance.hpp) without DPDK: when it moves nothing (below the
// threshold, too small a gain, nothing movable), what it moves (heaviest first to the least
// loaded worker, pinned queues counted, ties kept in place), and random cases against the
// invariants (every queue once, pinned ones never moved, the busiest worker lower by the
// improvement when anything moves).
#include <gtest/gtest.h>

#include <random>

#include "fwd/control/balance.hpp"

namespace fwd::control::balance {
namespace {

QueueLoad q(uint16_t port, unsigned worker, double load, bool movable = true) {
    return QueueLoad{port, 0, worker, load, movable};
}

TEST(Balance, NothingMovesBelowTheThreshold) {
    const auto d = plan({q(1024, 0, 0.5), q(1025, 0, 0.15)}, 2, Params{});
    EXPECT_TRUE(d.moves.empty());
    EXPECT_EQ(d.why, "no worker at 70 % (busiest 65 %)");
    EXPECT_EQ(d.before, (std::vector<double>{0.65, 0}));
}

TEST(Balance, TwoBusyPodQueuesOnOneWorkerAreSplit) {
    const auto d = plan({q(1024, 0, 0.5), q(1025, 0, 0.45), q(1026, 1, 0.01)}, 2, Params{});
    ASSERT_EQ(d.moves.size(), 1u);
    EXPECT_EQ(d.moves[0], (Move{1025, 0, 0, 1}));  // the heavier one stays (placed first)
    EXPECT_NEAR(d.after[0], 0.5, 1e-9);
    EXPECT_NEAR(d.after[1], 0.46, 1e-9);
    EXPECT_EQ(d.why, "busiest worker 95 % -> 50 %");
}

TEST(Balance, PinnedQueuesStayAndCountFirst) {
    // The uplink's queue 0 (pinned) keeps worker 0 at 60 %: both pod queues go to worker 1.
    const auto d = plan({q(0, 0, 0.6, false), q(1024, 0, 0.2), q(1025, 0, 0.15)}, 2, Params{});
    ASSERT_EQ(d.moves.size(), 2u);
    for (const auto &m : d.moves) {
        EXPECT_NE(m.port, 0);
        EXPECT_EQ(m.to, 1u);
    }
    // Only pinned queues: nothing to move.
    EXPECT_TRUE(plan({q(0, 0, 0.9, false), q(1, 1, 0.1, false)}, 2, Params{}).moves.empty());
}

TEST(Balance, ASmallGainIsNotWorthAMove) {
    // 0.8 + 0.1 on worker 0, 0.7 on worker 1: the best move leaves 0.8 (11 % lower < 25 %).
    const auto d = plan({q(1024, 0, 0.8), q(1025, 0, 0.1), q(1026, 1, 0.7)}, 2, Params{});
    EXPECT_TRUE(d.moves.empty());
    EXPECT_EQ(d.why, "no assignment lowers the busiest worker by 25 % (90 % -> 80 %)");
    Params loose;
    loose.improvement = 0.1;
    EXPECT_EQ(plan({q(1024, 0, 0.8), q(1025, 0, 0.1), q(1026, 1, 0.7)}, 2, loose).moves.size(), 1u);
}

TEST(Balance, OneWorkerNeverMoves) {
    EXPECT_TRUE(plan({q(1024, 0, 1.0), q(1025, 0, 1.0)}, 1, Params{}).moves.empty());
}

TEST(Balance, RandomCasesKeepTheInvariants) {
    std::mt19937_64 rng(12345);
    std::uniform_real_distribution<double> load(0, 0.6);
    int moved = 0;
    for (int round = 0; round < 2000; round++) {
        const unsigned workers = 2 + rng() % 3;
        std::vector<QueueLoad> qs;
        const int n = 1 + static_cast<int>(rng() % 12);
        for (int i = 0; i < n; i++) {
            qs.push_back(QueueLoad{static_cast<uint16_t>(1000 + i), static_cast<uint16_t>(i % 2),
                                   static_cast<unsigned>(rng() % workers), load(rng),
                                   rng() % 4 != 0});
        }
        const auto d = plan(qs, workers, Params{});
        std::vector<double> after = d.before;
        for (const auto &m : d.moves) {
            const auto it = std::find_if(qs.begin(), qs.end(), [&](const QueueLoad &x) {
                return x.port == m.port && x.queue == m.queue;
            });
            ASSERT_NE(it, qs.end());
            ASSERT_TRUE(it->movable) << "a pinned queue moved";
            ASSERT_EQ(it->worker, m.from);
            ASSERT_NE(m.from, m.to);
            after[m.from] -= it->load;
            after[m.to] += it->load;
        }
        for (unsigned w = 0; w < workers; w++) {
            ASSERT_NEAR(after[w], d.after[w], 1e-9);  // the moves make the loads it says
        }
        const double before = *std::max_element(d.before.begin(), d.before.end());
        const double now = *std::max_element(after.begin(), after.end());
        if (!d.moves.empty()) {
            moved++;
            ASSERT_GE(before, 0.7);
            ASSERT_LE(now, before * 0.75 + 1e-9);
        }
    }
    EXPECT_GT(moved, 100);
}

}  // namespace
}  // namespace fwd::control::balance
