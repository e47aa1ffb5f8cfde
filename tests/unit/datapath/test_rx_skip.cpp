// RX queue back-off: while a worker is busy, a queue that came back empty is
// polled again only after 1, 2, 4 ... kMaxRxSkip busy loops; it is polled
// every loop again once it has packets, or once the worker had nothing to do.
#include <rte_ring.h>

#include "lab.hpp"

namespace fwd::dp::test {
namespace {

class RxSkip : public DatapathTest {
  protected:
    void SetUp() override {
        DatapathTest::SetUp();
        for (Side s : {Side::kPodA, Side::kPodB}) {
            worker().post({WorkerCommand::Kind::kAddRxQueue, lab().port(s), 0, 0});
        }
        worker().drain_commands();
    }
    // Lab::add_port names pod A's RX ring dpt0rx and pod B's dpt1rx.
    void put(Side s, const PacketBuilder &b) {
        rte_ring *rx = rte_ring_lookup(s == Side::kPodA ? "dpt0rx" : "dpt1rx");
        ASSERT_NE(rx, nullptr);
        rte_mbuf *m = b.mbuf(lab().pool(), lab().port(s));
        ASSERT_NE(m, nullptr);
        ASSERT_EQ(rte_ring_enqueue(rx, m), 0);
    }
    void a_to_b() { put(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2).payload(10)); }
    void b_to_a() { put(Side::kPodB, from_pod_b().ip4(kPodB4, kPodA4).udp(3, 4).payload(10)); }
    uint64_t empty_polls() {
        return worker().stats().stages[static_cast<size_t>(Stage::kRxEmpty)].calls.get();
    }
};

TEST_F(RxSkip, AnEmptyQueueIsSkippedWhileTheWorkerIsBusy) {
    worker().set_stage_stats(true);  // counts the empty polls of busy loops
    constexpr int kLoops = 200;
    for (int i = 0; i < kLoops; i++) {
        a_to_b();
        ASSERT_EQ(worker().poll_once(), 1);
    }
    EXPECT_EQ(drain_tx().size(), size_t{kLoops});
    // Polled every loop B would be polled 200 times; backing off 1, 2, 4 ...
    // 32 loops it is polled 6 times to reach the cap, then every 33rd loop.
    EXPECT_GT(empty_polls(), 0u);
    EXPECT_LE(empty_polls(), 6u + kLoops / (kMaxRxSkip + 1) + 1);
}

TEST_F(RxSkip, ASkippedQueueWaitsAtMostTheCapInBusyLoops) {
    for (int i = 0; i < 100; i++) {
        a_to_b();
        ASSERT_EQ(worker().poll_once(), 1);
    }
    b_to_a();
    int loops = 0;
    uint16_t got = 0;
    while (got < 2 && loops <= kMaxRxSkip + 1) {
        a_to_b();
        got = worker().poll_once();
        loops++;
    }
    EXPECT_EQ(got, 2) << "pod B's packet not received within " << loops << " busy loops";
    EXPECT_LE(loops, kMaxRxSkip + 1);
    drain_tx();
}

TEST_F(RxSkip, AfterAnIdleLoopEveryQueueIsPolled) {
    for (int i = 0; i < 100; i++) {
        a_to_b();
        ASSERT_EQ(worker().poll_once(), 1);
    }
    EXPECT_EQ(worker().poll_once(), 0);  // nothing anywhere: the worker is idle
    b_to_a();
    EXPECT_EQ(worker().poll_once(), 1);  // B polled at once, back-off or not
    EXPECT_EQ(drain_tx().size(), 101u);
}

TEST_F(RxSkip, AQueueWithPacketsIsPolledEveryLoop) {
    for (int i = 0; i < 50; i++) {
        a_to_b();
        b_to_a();
        ASSERT_EQ(worker().poll_once(), 2) << "loop " << i;
    }
    EXPECT_EQ(drain_tx().size(), 100u);
}

// The load each queue's packets took (WorkerCommand::kReportLoad), for the balance module: by
// queue, sampled cycles, and from zero again for a queue taken and given back.
TEST_F(RxSkip, EachQueueReportsItsOwnLoad) {
    auto report = [&] {
        worker().post({WorkerCommand::Kind::kReportLoad, 0, 0, 0});
        worker().drain_commands();
        uint16_t n = 0;
        const QueueLoadRow *rows = worker().load_report(n);
        return std::vector<QueueLoadRow>(rows, rows + n);
    };
    for (int i = 0; i < 200; i++) {
        a_to_b();
        ASSERT_EQ(worker().poll_once(), 1);
    }
    auto rows = report();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].port, lab().port(Side::kPodA));
    EXPECT_EQ(rows[0].load.packets, 200u);
    EXPECT_GT(rows[0].load.cycles, 0u);  // about 1 poll in 8 timed, each counted 8 times
    EXPECT_EQ(rows[1].port, lab().port(Side::kPodB));
    EXPECT_EQ(rows[1].load.packets, 0u);
    EXPECT_EQ(rows[1].load.cycles, 0u);  // its polls were empty: nothing processed
    EXPECT_EQ(drain_tx().size(), 200u);
    // A queue taken away and given back starts from zero (its slot is handed out again).
    worker().post({WorkerCommand::Kind::kDelRxQueue, lab().port(Side::kPodA), 0, 0});
    worker().post({WorkerCommand::Kind::kAddRxQueue, lab().port(Side::kPodA), 0, 0});
    worker().drain_commands();
    b_to_a();
    uint16_t got = 0;
    for (int i = 0; i < 2 * kMaxRxSkip && got == 0; i++) {
        got = worker().poll_once();  // B may be in its back-off still
    }
    ASSERT_EQ(got, 1);
    rows = report();
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].port, lab().port(Side::kPodB));
    EXPECT_EQ(rows[0].load.packets, 1u);
    EXPECT_EQ(rows[1].port, lab().port(Side::kPodA));
    EXPECT_EQ(rows[1].load.packets, 0u);
    EXPECT_EQ(drain_tx().size(), 1u);
    // Both queues busy, polled in turn every loop: each is timed (its own 1 in 8), not
    // always the same one (a count shared by the queues would time only every other queue).
    EXPECT_EQ(worker().poll_once(), 0);  // an idle loop: no queue is skipped after it
    for (int i = 0; i < 64; i++) {
        a_to_b();
        b_to_a();
        ASSERT_EQ(worker().poll_once(), 2);
    }
    rows = report();
    ASSERT_EQ(rows.size(), 2u);
    for (const auto &r : rows) {
        EXPECT_GE(r.load.packets, 64u);
        EXPECT_GT(r.load.cycles, 0u) << "port " << r.port << " never timed";
    }
    EXPECT_EQ(drain_tx().size(), 128u);
}

}  // namespace
}  // namespace fwd::dp::test
