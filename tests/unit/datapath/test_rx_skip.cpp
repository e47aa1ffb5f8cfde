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

}  // namespace
}  // namespace fwd::dp::test
