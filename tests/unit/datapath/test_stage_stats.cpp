// Per-stage counters (stage_stats): with them on, each stage counts the
// bursts and packets entering it and the cycles it took, nested TX and frees
// apart; with them off nothing moves. Then the control side: the config key
// and the stats.stages op reach the worker, and stats shows the counters.
#include <rte_cycles.h>
#include <rte_ring.h>

#include <chrono>
#include <future>
#include <thread>

#include "fwd/control/api.hpp"
#include "fwd/control/controller.hpp"
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

using nlohmann::json;

constexpr Stage kAllStages[] = {
    Stage::kRx,         Stage::kRxEmpty,    Stage::kEthInput, Stage::kArpInput,
    Stage::kIp4Input,   Stage::kIcmp4Local, Stage::kRoute4,   Stage::kL2Rewrite4,
    Stage::kIp6Input,   Stage::kIcmp6Local, Stage::kRoute6,   Stage::kL2Rewrite6,
    Stage::kIcmpErrors, Stage::kTx,         Stage::kDropFree, Stage::kFastInput,
};
static_assert(std::size(kAllStages) == kStageCount);

// n4 IPv4 and n6 IPv6 packets from pod A to pod B.
std::vector<std::pair<Side, PacketBuilder>> pod_a_to_b(int n4, int n6) {
    std::vector<std::pair<Side, PacketBuilder>> in;
    for (int i = 0; i < n4; i++) {
        in.emplace_back(Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2).payload(10));
    }
    for (int i = 0; i < n6; i++) {
        in.emplace_back(Side::kPodA, from_pod_a().ip6(kPodA6, kPodB6).udp(3, 4).payload(10));
    }
    return in;
}

class StageStats : public DatapathTest {
  protected:
    const WorkerStats::StageCounters &stage(Stage s) {
        return worker().stats().stages[static_cast<size_t>(s)];
    }
    uint64_t stage_cycle_sum() {
        uint64_t sum = 0;
        for (Stage s : kAllStages) {
            sum += stage(s).cycles.get();
        }
        return sum;
    }
    // calls, packets, cycles > 0
    void expect_stage(Stage s, uint64_t calls, uint64_t packets) {
        SCOPED_TRACE(std::string(stage_name(s)));
        EXPECT_EQ(stage(s).calls.get(), calls);
        EXPECT_EQ(stage(s).packets.get(), packets);
        EXPECT_GT(stage(s).cycles.get(), 0u);
    }
    void expect_untouched(Stage s) {
        SCOPED_TRACE(std::string(stage_name(s)));
        EXPECT_EQ(stage(s).calls.get(), 0u);
        EXPECT_EQ(stage(s).packets.get(), 0u);
        EXPECT_EQ(stage(s).cycles.get(), 0u);
    }

    // Puts the packets on pod A's RX ring and gives its queue to the worker.
    void receive_on_pod_a(const std::vector<std::pair<Side, PacketBuilder>> &pkts) {
        worker().post({WorkerCommand::Kind::kAddRxQueue, lab().port(Side::kPodA), 0, 0});
        worker().drain_commands();
        rte_ring *rx = rte_ring_lookup("dpt0rx");  // Lab::add_port's name for pod A
        ASSERT_NE(rx, nullptr);
        for (const auto &[side, b] : pkts) {
            rte_mbuf *m = b.mbuf(lab().pool(), lab().port(side));
            ASSERT_NE(m, nullptr);
            ASSERT_EQ(rte_ring_enqueue(rx, m), 0);
        }
    }
};

// The fast path (on by default): fast_input stands for eth_input, ip4_input
// and ip6_input.
TEST_F(StageStats, ForwardedPacketsCountInEveryStageTheyCross) {
    worker().set_stage_stats(true);
    Sent out = run(pod_a_to_b(3, 2));
    EXPECT_EQ(out.on(Side::kPodB).size(), 5u);
    EXPECT_EQ(drops(), want({}));

    expect_stage(Stage::kFastInput, 1, 5);
    expect_stage(Stage::kRoute4, 1, 3);
    expect_stage(Stage::kL2Rewrite4, 1, 3);
    expect_stage(Stage::kRoute6, 1, 2);
    expect_stage(Stage::kL2Rewrite6, 1, 2);
    expect_stage(Stage::kTx, 1, 5);
    for (Stage s : {Stage::kRx, Stage::kRxEmpty, Stage::kEthInput, Stage::kArpInput,
                    Stage::kIp4Input, Stage::kIp6Input, Stage::kIcmp4Local, Stage::kIcmp6Local,
                    Stage::kIcmpErrors, Stage::kDropFree}) {
        expect_untouched(s);
    }
}

TEST_F(StageStats, WithoutFastPathEachInputStageCounts) {
    worker().set_fast_path(false);
    worker().set_stage_stats(true);
    Sent out = run(pod_a_to_b(3, 2));
    EXPECT_EQ(out.on(Side::kPodB).size(), 5u);
    EXPECT_EQ(drops(), want({}));

    expect_untouched(Stage::kFastInput);
    expect_stage(Stage::kEthInput, 1, 5);
    expect_stage(Stage::kIp4Input, 1, 3);
    expect_stage(Stage::kRoute4, 1, 3);
    expect_stage(Stage::kL2Rewrite4, 1, 3);
    expect_stage(Stage::kIp6Input, 1, 2);
    expect_stage(Stage::kRoute6, 1, 2);
    expect_stage(Stage::kL2Rewrite6, 1, 2);
    expect_stage(Stage::kTx, 1, 5);  // one buffer, pod B's, sent by flush_tx()
    for (Stage s : {Stage::kRx, Stage::kRxEmpty, Stage::kArpInput, Stage::kIcmp4Local,
                    Stage::kIcmp6Local, Stage::kIcmpErrors, Stage::kDropFree}) {
        expect_untouched(s);
    }
    // process() is no loop: no busy loop counted.
    EXPECT_EQ(worker().stats().busy_loops.get(), 0u);
    EXPECT_EQ(worker().stats().busy_cycles.get(), 0u);
}

TEST_F(StageStats, OffCountsNothing) {
    run(pod_a_to_b(3, 2));
    receive_on_pod_a(pod_a_to_b(2, 2));
    EXPECT_EQ(worker().run_once(), 4);
    EXPECT_EQ(drain_tx().size(), 4u);
    EXPECT_FALSE(worker().stage_stats());
    for (Stage s : kAllStages) {
        expect_untouched(s);
    }
    EXPECT_EQ(worker().stats().busy_loops.get(), 0u);
    EXPECT_EQ(worker().stats().busy_cycles.get(), 0u);
    EXPECT_EQ(worker().stats().rx_packets.get(), 4u);
}

TEST_F(StageStats, IcmpErrorsAndFreesAreStagesOfTheirOwn) {
    worker().set_stage_stats(true);
    Sent out = run(Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).ttl(1).udp(1, 2));
    ASSERT_EQ(out.on(Side::kPodA).size(), 1u);  // time exceeded
    EXPECT_EQ(drops(), want({{DropReason::kIp4TtlExceeded, 1}}));
    expect_stage(Stage::kIcmpErrors, 1, 1);
    expect_stage(Stage::kDropFree, 1, 1);  // the expired packet, freed by flush_tx()
    expect_stage(Stage::kTx, 1, 1);
}

// A full TX buffer is sent from inside l2_rewrite4: counted as tx, and the
// stages of a busy loop never add up to more than the loop.
TEST_F(StageStats, BusyLoopHoldsEveryStage) {
    worker().set_stage_stats(true);
    receive_on_pod_a(pod_a_to_b(kBurst, 0));
    EXPECT_EQ(worker().run_once(), kBurst);
    EXPECT_EQ(drain_tx().size(), kBurst);

    const WorkerStats &st = worker().stats();
    EXPECT_EQ(st.busy_loops.get(), 1u);
    EXPECT_GT(st.busy_cycles.get(), 0u);
    expect_stage(Stage::kRx, 1, kBurst);
    expect_stage(Stage::kL2Rewrite4, 1, kBurst);
    expect_stage(Stage::kTx, 1, kBurst);  // nested in l2_rewrite4; flush_tx() found nothing
    EXPECT_LE(stage_cycle_sum(), st.busy_cycles.get());

    // An idle loop is not profiled, and its empty RX call is no stage.
    EXPECT_EQ(worker().run_once(), 0);
    EXPECT_EQ(st.busy_loops.get(), 1u);
    expect_untouched(Stage::kRxEmpty);
    EXPECT_EQ(stage(Stage::kRx).calls.get(), 1u);
}

TEST_F(StageStats, SyncIsAcknowledged) {
    uint64_t seq = worker().post({WorkerCommand::Kind::kSync, 0, 0, 0});
    ASSERT_NE(seq, 0u);
    worker().drain_commands();
    EXPECT_EQ(worker().acked(), seq);
}

// --- the control side ---

class StageStatsControl : public DatapathTest {
  protected:
    void SetUp() override {
        DatapathTest::SetUp();
        control::NodeConfig cfg;
        cfg.workers.resize(1);
        cfg.stage_stats = true;
        ctl_ = std::make_unique<control::Controller>(
            cfg, lab().tables(), std::vector<Worker *>{&worker()}, lab().pool());
        thread_ = std::thread([this] { ctl_->run(); });
    }
    void TearDown() override {
        ctl_->stop();
        thread_.join();
        ctl_.reset();
        DatapathTest::TearDown();
    }

    // Calls op on the control thread while this thread plays the worker
    // (the op waits for the worker to acknowledge).
    json call(const std::string &op, const json &args) {
        auto reply = std::async(std::launch::async, [&] { return ctl_->call(op, args); });
        while (reply.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
            worker().drain_commands();
        }
        return reply.get();
    }
    control::ApiError error_of(const json &args) {
        try {
            call("stats.stages", args);
        } catch (const control::ApiError &e) {
            return e;
        }
        ADD_FAILURE() << "accepted: " << args.dump();
        return control::ApiError("none", "");
    }

    std::unique_ptr<control::Controller> ctl_;
    std::thread thread_;
};

TEST_F(StageStatsControl, ConfigTurnsThemOnAndTheOpOff) {
    EXPECT_TRUE(worker().stage_stats());
    EXPECT_EQ(call("stats.stages", {{"enabled", false}}), (json{{"stage_stats", false}}));
    EXPECT_FALSE(worker().stage_stats());
    EXPECT_EQ(call("stats.stages", {{"enabled", true}}), (json{{"stage_stats", true}}));
    EXPECT_TRUE(worker().stage_stats());
}

TEST_F(StageStatsControl, OpArgumentsAreChecked) {
    control::ApiError e = error_of({{"enabled", "yes"}});
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "field 'enabled' must be true or false, got string");
    e = error_of(json::object());
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "missing field 'enabled'");
    e = error_of({{"enabled", true}, {"enable", true}});
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "unknown field 'enable'; known fields: enabled");
    EXPECT_TRUE(worker().stage_stats());  // unchanged by the failures
}

TEST_F(StageStatsControl, StatsShowEveryStageOfEveryWorker) {
    run(pod_a_to_b(2, 1));
    json st = call("stats", json::object());
    EXPECT_EQ(st["tsc_hz"], rte_get_tsc_hz());
    EXPECT_EQ(st["stage_stats"], true);
    ASSERT_EQ(st["workers"].size(), 1u);
    const json &w = st["workers"][0];
    EXPECT_EQ(w.at("busy_loops"), 0u);
    EXPECT_EQ(w.at("busy_cycles"), 0u);
    ASSERT_EQ(w.at("stages").size(), kStageCount);
    for (Stage s : kAllStages) {
        const json &c = w.at("stages").at(std::string(stage_name(s)));
        SCOPED_TRACE(std::string(stage_name(s)));
        ASSERT_TRUE(c.is_object());
        EXPECT_EQ(c.size(), 3u);
        const auto &counters = worker().stats().stages[static_cast<size_t>(s)];
        EXPECT_EQ(c.at("calls"), counters.calls.get());
        EXPECT_EQ(c.at("packets"), counters.packets.get());
        EXPECT_EQ(c.at("cycles"), counters.cycles.get());
    }
    EXPECT_EQ(w.at("stages").at("fast_input").at("packets"), 3u);
    EXPECT_EQ(w.at("stages").at("l2_rewrite6").at("packets"), 1u);

    call("stats.stages", {{"enabled", false}});
    EXPECT_EQ(call("stats", json::object())["stage_stats"], false);
}

}  // namespace
}  // namespace fwd::dp::test
