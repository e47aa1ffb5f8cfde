// A worker lcore: polls the RX queues it owns, runs each burst through the
// pipeline, buffers output per port and sends it on its own TX queue of that
// port (TX queue index == worker index on every port).
//
// Ownership of each field is marked: [W] written by the worker only,
// [C] written by the control thread only, [R] read by the other side.
#pragma once

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <array>
#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "fwd/dp/counter.hpp"
#include "fwd/dp/drop.hpp"
#include "fwd/dp/meta.hpp"
#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/tables.hpp"

namespace fwd::dp {

inline constexpr uint16_t kBurst = 32;
// RX queues one worker polls: a thousand kernel pods with a queue on every
// worker, and room for more queues each. The control thread refuses a pod
// whose queues would not fit (ControlContext::spread_rx_queues); a command
// past it is ignored by the worker.
inline constexpr uint16_t kMaxRxQueues = 4096;

// A bit per feature next-hop kind (kinds past the 32nd share the last bit).
constexpr uint32_t feature_nh_bit(NhKind k) {
    const unsigned i = static_cast<uint8_t>(k) - static_cast<uint8_t>(NhKind::kFirstFeature);
    return uint32_t{1} << (i < 31 ? i : 31);
}

struct Burst {
    uint16_t n = 0;
    // route4 / route6 set feature_nh_bit(kind) for each feature's next-hop
    // kind that went in: only then does l2_rewrite look at each next hop's
    // kind, and a feature's output stage at the burst.
    uint32_t feature_nh = 0;
    rte_mbuf *pkts[kBurst];
    void push(rte_mbuf *m) { pkts[n++] = m; }
};

// Why a packet went to the control thread (kept in PktMeta::punt).
//   host:     for the node's own stack (the kernel behind the host tap)
//   neighbor: ARP / Neighbor Advertisement the control thread learns from
//   resolve:  routed to a kResolve next hop (meta.nh): waits for the neighbor
// The control side registers a handler per reason (ControlContext::on_punt).
#define FWD_PUNT_REASONS(X)  \
    X(kHost, "host")         \
    X(kNeighbor, "neighbor") \
    X(kResolve, "resolve")

enum class PuntReason : uint8_t {
#define FWD_PUNT_ENUM(name, str) name,
    FWD_PUNT_REASONS(FWD_PUNT_ENUM)
#undef FWD_PUNT_ENUM
        kCount
};
inline constexpr size_t kPuntReasonCount = static_cast<size_t>(PuntReason::kCount);
inline constexpr std::string_view kPuntReasonNames[kPuntReasonCount] = {
#define FWD_PUNT_NAME(name, str) str,
    FWD_PUNT_REASONS(FWD_PUNT_NAME)
#undef FWD_PUNT_NAME
};
constexpr std::string_view punt_reason_name(PuntReason r) {
    return kPuntReasonNames[static_cast<size_t>(r)];
}

// Where a worker's cycles go, counted only while stage_stats is on (see
// Worker::set_stage_stats). The built-in stages, one list (enum and names);
// the stages and taps features register (pipeline.hpp) get the ids after
// these. Besides the pipeline stages of stages.hpp:
//   rx:          rte_eth_rx_burst calls that returned packets
//   rx_empty:    rte_eth_rx_burst calls that returned none, in busy loops only
//                (a loop that received nothing is not busy); packets stays 0
//   icmp_errors: the route + output pass over the packets a burst built
//                (ICMP errors, and what stages hand to Worker::reroute4 / 6)
//   tx:          rte_eth_tx_burst of a port's buffer (Worker::send), wherever
//                it runs from: inside l2_rewrite when a buffer fills, or at
//                the end of the loop
//   drop_free:   freeing dropped packets (Worker::free_dropped)
//   fast_input:  eth_input, ip4_input and ip6_input fused (fast path on);
//                those three then count only the packets re-entering
// A stage's cycles leave out the tx and drop_free work nested in it, which
// counts for itself: the stages add up without counting a cycle twice.
#define FWD_CORE_STAGES(X)        \
    X(kRx, "rx")                  \
    X(kRxEmpty, "rx_empty")       \
    X(kEthInput, "eth_input")     \
    X(kArpInput, "arp_input")     \
    X(kIp4Input, "ip4_input")     \
    X(kIcmp4Local, "icmp4_local") \
    X(kRoute4, "route4")          \
    X(kL2Rewrite4, "l2_rewrite4") \
    X(kIp6Input, "ip6_input")     \
    X(kIcmp6Local, "icmp6_local") \
    X(kRoute6, "route6")          \
    X(kL2Rewrite6, "l2_rewrite6") \
    X(kIcmpErrors, "icmp_errors") \
    X(kTx, "tx")                  \
    X(kDropFree, "drop_free")     \
    X(kFastInput, "fast_input")

enum class Stage : uint8_t {
#define FWD_STAGE_ENUM(name, str) name,
    FWD_CORE_STAGES(FWD_STAGE_ENUM)
#undef FWD_STAGE_ENUM
        kCount
};
inline constexpr size_t kStageCount = static_cast<size_t>(Stage::kCount);
inline constexpr std::string_view kStageNames[kStageCount] = {
#define FWD_STAGE_NAME(name, str) str,
    FWD_CORE_STAGES(FWD_STAGE_NAME)
#undef FWD_STAGE_NAME
};
constexpr std::string_view stage_name(Stage s) {
    return kStageNames[static_cast<size_t>(s)];
}
// Built-in stages and the most features may add.
inline constexpr size_t kMaxStages = kStageCount + kMaxFeatureStages;

struct WorkerCommand {
    // kTx: send m (a complete Ethernet frame, untagged; the port's VLAN is
    // inserted) out of port; dropped with port_down when the port has role
    // kNone.
    // kTxRouted: finish a packet the worker punted with PuntReason::kResolve
    // (metadata intact) once its neighbor is known: meta(m).nh names the next
    // hop to use (port is not used). A kVia / kPod next hop sends it the way
    // l2_rewrite does (TTL / hop limit - 1 unless built here, Ethernet header
    // from the next hop, out of the next hop's port); a kResolve one punts it
    // again; any other kind drops it (no_route), a port with role kNone too
    // (port_down).
    // kSync: nothing; once acknowledged, every later loop of the worker sees
    // what the control thread stored before posting it (stage_stats).
    // The worker owns m from the moment it takes kTx or kTxRouted. port and
    // m are unused by the other kinds.
    // kReportLoad: copy each owned queue's load (QueueLoad) into the
    // worker's load report (Worker::load_report), read once acknowledged.
    enum class Kind : uint8_t {
        kAddRxQueue,
        kDelRxQueue,
        kDropPort,
        kTx,
        kTxRouted,
        kSync,
        kReportLoad
    };
    Kind kind;
    uint16_t port;
    uint16_t queue;
    uint64_t seq;  // acknowledged through Worker::acked_seq once done
    rte_mbuf *m = nullptr;
};
static_assert(std::is_trivially_copyable_v<WorkerCommand>, "WorkerCommand crosses a ring");

// After spin_polls empty polls and pause_polls rte_pause()s, an idle worker
// waits. Where every RX queue it owns can wake it (a tun pod's fd, an
// ethdev queue with an RX interrupt fd: net_tap), it blocks in epoll_wait
// on them and on its command eventfd for up to max_block_ms (0: never
// blocks), so a packet or a command wakes it at once and a quiet node costs
// next to nothing. Otherwise it sleeps, doubling from 1 us up to
// max_sleep_us, and polls again.
struct IdleParams {
    bool enabled = true;
    uint32_t spin_polls = 100;
    uint32_t pause_polls = 1000;
    uint32_t max_sleep_us = 1000;
    uint32_t max_block_ms = 100;
};

struct alignas(RTE_CACHE_LINE_SIZE) WorkerStats {
    Counter rx_packets;
    Counter tx_packets;
    Counter busy_polls;
    Counter idle_polls;
    Counter sleeps;
    Counter blocks;   // idle waits in epoll_wait (IdleParams), a subset of sleeps
    Counter wakeups;  // blocks that ended on an RX queue or a command, not the timeout
    Counter icmp_errors_sent;
    Counter punted[kPuntReasonCount];  // handed to the control thread, by reason
    Counter host_tx;                   // kTx / kTxRouted frames handed to their port
    // Frames segmented in software (offload.hpp) and the segments made.
    Counter gso_frames;
    Counter gso_segments;
    Counter drops[kDropReasonCount];
    // stage_stats only (zero while it was never on). Busy loops are loops
    // that received packets; busy_cycles is their whole time (TSC cycles):
    // RX, the pipeline, the TX flush, housekeeping. cycles / packet is
    // busy_cycles / stages[kRx].packets; what the stages leave of
    // busy_cycles went to the loop itself (RCU report, commands, ...).
    Counter busy_loops;
    Counter busy_cycles;
    struct StageCounters {
        Counter calls;    // bursts the stage ran on
        Counter packets;  // packets entering it
        Counter cycles;   // TSC cycles in it, nested kTx / kDropFree excluded
    };
    StageCounters stages[kMaxStages];  // by stage id (Pipeline::stage_names)
};

// A token bucket: `per_sec` tokens a second, up to a tenth of that (at least
// 10) saved up. per_sec 0: never a token. [W] only.
class TokenBucket {
  public:
    void init(uint32_t per_sec, uint64_t tsc_hz);
    bool take();

  private:
    uint64_t tokens_ = 0;
    uint64_t max_ = 0;
    uint64_t last_tsc_ = 0;
    uint64_t tsc_per_token_ = UINT64_MAX;
};

// While a worker is busy, an RX queue that came back empty is skipped for
// the next 1, 2, 4 ... kMaxRxSkip loops, and polled every loop again as soon
// as it has packets or the worker runs out of work. An empty poll is not free:
// the tap PMD's is a readv() syscall (about 1300 cycles here), which cost a
// busy uplink a quarter of its throughput. Worst case a quiet queue waits
// kMaxRxSkip busy loops (about 2 us each at 32 packets) for its first packet.
inline constexpr uint16_t kMaxRxSkip = 32;

// An owned queue's load since the worker took it: packets, and TSC cycles of
// its bursts (reading them and running them through the pipeline), sampled:
// every 8th poll of the queue is timed and counts 8 times (kLoadSampleShift).
// The count is the queue's own: one counter for all queues, polled in a
// fixed order, would time the same queue every time.
struct QueueLoad {
    uint64_t packets = 0;
    uint64_t cycles = 0;
    uint32_t polls = 0;
};
inline constexpr unsigned kLoadSampleShift = 3;

// One row of a worker's load report (WorkerCommand::kReportLoad).
struct QueueLoadRow {
    uint16_t port = 0, queue = 0;
    QueueLoad load;
};

struct RxQueueRef {
    uint16_t port;
    uint16_t queue;
    uint16_t slot = 0;     // its QueueLoad (Worker::load_), kept while it is owned
    uint16_t skip = 0;     // busy loops left before the next poll
    uint16_t backoff = 0;  // the last skip given (0: had packets last time)
    int wake_fd = -1;      // in the worker's epoll set; -1: the queue cannot wake it
    bool armable = false;  // it can once armed (PortArmFn): only for a block
};

struct IpNext;  // stages.hpp

class Worker {
  public:
    // punt_per_sec: packets a second this worker may punt to the control
    // thread (0: none; every punt is dropped as punt_rate_limited).
    // pipeline: the feature stages to run (pipeline.hpp); nullptr:
    // default_pipeline(), every stage built into the binary. Must outlive
    // the worker.
    Worker(unsigned index, const Tables &tables, rte_mempool *pool, const IdleParams &idle,
           uint32_t icmp_per_sec, rte_rcu_qsbr *qsbr, uint32_t punt_per_sec = 10000,
           const Pipeline *pipeline = nullptr);
    // Frees what nobody took: punted packets and kTx frames still queued.
    ~Worker();
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    // Runs until stop() on the worker's lcore.
    void run();
    void stop() {
        running_.store(false, std::memory_order_release);
        wake();
    }
    // One pass of run()'s loop: poll, count, housekeeping every
    // kHousekeepLoops busy loops and on idle ones, idle back-off. Returns
    // packets received. Used by run() and tests.
    uint16_t run_once();

    // --- control thread ---
    // Queues a command (and wakes the worker if it blocks idle); returns its
    // sequence number, or 0 when the ring is full.
    uint64_t post(WorkerCommand c);
    // Ends the worker's idle block, if it is in one (any thread; cheap when
    // it is not: one fence and a load).
    void wake();
    // Whether the worker may block idle now: every RX queue it owns can wake
    // it (tests).
    bool can_block() const { return epoll_fd_ >= 0 && n_unwakeable_ == 0; }
    // Free places in the command ring, as the producer sees them.
    size_t command_space() const { return cmds_.write_available(); }
    uint64_t acked() const { return acked_seq_.load(std::memory_order_acquire); }
    // Liveness (any thread): the TSC when the worker last reached its
    // housekeeping point, which it does on every idle loop (so at least
    // every idle max_sleep_us while it backs off) and every kHousekeepLoops
    // busy ones. 0 until its first loop. A stale heartbeat is a stuck worker.
    uint64_t heartbeat_tsc() const { return heartbeat_tsc_.load(std::memory_order_relaxed); }
    const WorkerStats &stats() const { return stats_; }
    unsigned index() const { return index_; }
    uint16_t rx_queue_count() const { return n_rxq_.load(std::memory_order_relaxed); }
    // The rows the last kReportLoad wrote (valid once it is acknowledged, until the next).
    const QueueLoadRow *load_report(uint16_t &n) const {
        n = n_report_;
        return report_;
    }
    // Per-stage counters (WorkerStats::stages, busy_*) on or off. The worker
    // reads it once per loop: a kSync acknowledged after the store means the
    // change is live. Off, the loop runs code without a single rdtsc; only
    // send() and free_dropped(), reached from inside the stages, test a bool.
    void set_stage_stats(bool on) { stage_stats_.store(on, std::memory_order_release); }
    bool stage_stats() const { return stage_stats_.load(std::memory_order_acquire); }
    // The fused first stage (fast_input) instead of eth_input, ip4_input
    // and ip6_input one after the other: the same results and counters,
    // fewer passes over the burst. On by default (config key fast_path;
    // tests run both ways and compare). The worker reads it once a burst.
    void set_fast_path(bool on) { fast_path_.store(on, std::memory_order_relaxed); }
    // Takes one punted packet (the control thread owns it then); false when none.
    bool pop_punt(rte_mbuf *&m) { return punt_.pop(m); }
    static PuntReason punt_reason(const rte_mbuf *m) {
        return static_cast<PuntReason>(meta(m).punt);
    }

    // --- the pipeline (worker thread); public for the stages and tests ---
    void drop(rte_mbuf *m, DropReason r) {
        stats_.drops[static_cast<size_t>(r)].inc();
        n_drops_++;
        dropped_.push(m);
        if (dropped_.n == kBurst) {
            free_dropped();
        }
    }
    // Queues m on the port's TX buffer (a burst goes out when full).
    void tx(uint16_t port, rte_mbuf *m) {
        if (unlikely(tables_.port(port).vlan != 0)) {
            tx_tagged(port, m);
            return;
        }
        enqueue(port, m);
    }
    void flush_tx();
    void free_dropped();  // out of line: runs once per kBurst drops at most
    // Takes one ICMP error token; false when over the rate.
    bool icmp_token() { return icmp_bucket_.take(); }
    // Hands m to the control thread, unchanged, with r in meta(m).punt:
    // true when queued (counted in punted[r]); false when dropped as
    // punt_rate_limited (over punt_per_sec) or punt_ring_full. TCP to the
    // node (kHost) has its own punt_per_sec and a reserve of the ring.
    bool punt(rte_mbuf *m, PuntReason r);
    void count_icmp_sent() { stats_.icmp_errors_sent.inc(); }
    const Tables &tables() const { return tables_; }
    rte_mempool *pool() const { return pool_; }
    WorkerStats &stats_mut() { return stats_; }
    const Pipeline &pipeline() const { return pipeline_; }
    // A tap runs only while armed ([C] writes, [W] reads once per burst): a
    // tap registered with armed = false (capture) costs nothing until its
    // feature arms it. index: its place at its tap point (Pipeline::tap_index).
    void set_tap_armed(TapPoint p, uint8_t index, bool on) {
        auto &mask = taps_armed_[static_cast<size_t>(p)];
        uint8_t bit = static_cast<uint8_t>(1u << index);
        if (on) {
            mask.fetch_or(bit, std::memory_order_release);
        } else {
            mask.fetch_and(static_cast<uint8_t>(~bit), std::memory_order_release);
        }
    }
    // A feature's per-worker pointer (PipelineRegistry::add_worker_slot):
    // [C] set before the worker runs, [W] read by the feature's stages.
    void *slot(uint16_t i) const { return slots_[i]; }
    void set_slot(uint16_t i, void *p) { slots_[i] = p; }
    // Re-entry, for stages: m goes through ip4_input / ip6_input again
    // (meta.l3_off at its IP header, at least 14 bytes in: what is before
    // the 14 bytes before it is cut off; meta.in_port kept) once this burst
    // is done, at most kMaxReentries passes in a row (then dropped as
    // reentry_loop); a full re-entry burst drops it as reentry_full, an
    // l3_off below 14 or past the first segment's data as reentry_bad_offset.
    // The 14 bytes before the IP header are its Ethernet header from then on
    // (icmp*_local answers to its source MAC): a stage that decapsulates a
    // tunnel without an inner Ethernet header writes one there.
    void reenter4(rte_mbuf *m) { reenter(again4_, m, true); }
    void reenter6(rte_mbuf *m) { reenter(again6_, m, true); }
    // A packet built or rebuilt here (meta.l3_off set; kMetaLocalOrigin
    // when no TTL / hop limit may be taken off) goes to route4 / route6,
    // the output hook and l2_rewrite once the burst is done (icmp_errors).
    void reroute4(rte_mbuf *m) { reenter(gen4_, m, false); }
    void reroute6(rte_mbuf *m) { reenter(gen6_, m, false); }
    static constexpr unsigned kMaxReentries = 4;
    // Packets waiting for reroute4 / reroute6 (ICMP errors, ...).
    Burst gen4_;
    Burst gen6_;

    // RX from every owned queue, the pipeline, the TX flush; returns packets
    // received. Used by run_once() and tests.
    uint16_t poll_once();
    // The pipeline on one burst (exposed for tests).
    void process(rte_mbuf **pkts, uint16_t n);
    // Runs every queued command and acknowledges them (run() calls it every
    // kHousekeepLoops busy loops and on idle ones; exposed for tests).
    void drain_commands();

  private:
    bool tx_routed(rte_mbuf *m);                 // kTxRouted; true when handed to a port
    void tx_tagged(uint16_t port, rte_mbuf *m);  // tx() on a port with a VLAN
    // Appends m to the port's TX buffer; a full buffer goes out. A buffer
    // that gets its first packet is listed for flush_tx().
    void enqueue(uint16_t port, rte_mbuf *m) {
        TxBuf &b = txb_[port];
        const uint16_t n = b.n;
        if (n == 0 && !b.listed) {  // listed stays set when a full buffer went out
            b.listed = true;
            pending_[n_pending_++] = port;
        }
        b.pkts[n] = m;
        b.n = n + 1;
        b.ol |= m->ol_flags;
        if (n + 1 == kBurst) {
            send(port);
        }
    }
    // rte_eth_rx_burst, or the port driver's rx for a soft port.
    uint16_t rx_burst(uint16_t port, uint16_t queue, rte_mbuf **pkts) {
        if (likely(port < kFirstSoftPort)) {
            return rte_eth_rx_burst(port, queue, pkts, kBurst);
        }
        uint16_t n = soft_io(port, queue, pkts, kBurst, true);
        for (uint16_t i = 0; i < n; i++) {
            pkts[i]->port = port;  // eth_input reads it; a driver's mbufs need not say
        }
        return n;
    }
    uint16_t soft_io(uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n, bool rx);
    void send(uint16_t port);  // tx_burst of the port's buffer
    void send_now(uint16_t port);
    // rte_eth_tx_burst or the soft port's tx; returns the packets taken
    // (pkts[0 .. taken)) and adds those sent to tx_packets: a soft port's
    // driver may drop some it took (w.drop: a frame it cannot write), and
    // those are not sent.
    uint16_t xmit(uint16_t port, rte_mbuf **pkts, uint16_t n);
    // xmit, and what it did not take dropped (refused()).
    void xmit_all(uint16_t port, rte_mbuf **pkts, uint16_t n);
    // The reason for packets xmit did not take: port_down while the port's
    // link is down, else tx_queue_full.
    DropReason refused(uint16_t port) const;
    // The burst with the offloads the port lacks done here (offload.hpp):
    // TCP frames segmented, L4 checksums filled. Takes every packet.
    void send_soft_offload(uint16_t port, rte_mbuf **pkts, uint16_t n);
    void idle_backoff(bool got_packets);

    // Profile: with stage_stats on (true) or off (false, no rdtsc at all).
    template <bool Profile>
    uint16_t run_once_impl();
    template <bool Profile>
    uint16_t poll_once_impl();
    // Polls only the queues epoll says have frames (one epoll_wait instead of
    // a read per queue): where every queue can wake the worker and there are
    // more than kReadyPollQueues of them (a node of many kernel pods).
    template <bool Profile>
    uint16_t poll_ready_impl();
    // One queue's burst through the pipeline: RX counters, taps, process.
    template <bool Profile>
    uint16_t rx_queue(uint16_t port, uint16_t queue, QueueLoad &ld, uint64_t &empty_calls,
                      uint64_t &empty_cycles);
    template <bool Profile>
    void process_impl(rte_mbuf **pkts, uint16_t n);
    // One family's path from ip*_input to the TX buffers.
    template <bool Profile, bool kV6>
    void ip_path(Burst &in);
    // The rest of it once ip*_input (or fast_input) sorted the packets.
    template <bool Profile, bool kV6>
    void ip_rest(IpNext &ip);
    // Packets reroute4 / reroute6 queued: route, output hook, l2_rewrite
    // (gen is emptied first: the output hook may queue more).
    template <bool kV6>
    void route_built(Burst &gen);
    // The stages of one hook, in order, on b.
    template <bool Profile>
    void run_hook(Hook h, Burst &b);
    // A local hook: L4-port stages take their packets, then the others run.
    template <bool Profile>
    void run_local_hook(Hook h, Burst &b);
    template <bool Profile>
    void run_taps(TapPoint p, uint8_t armed, uint16_t port, rte_mbuf *const *pkts, uint16_t n);
    uint8_t taps_armed(TapPoint p) const {
        return taps_armed_[static_cast<size_t>(p)].load(std::memory_order_acquire);
    }
    // fresh: a packet that goes through ip*_input again starts with no flags
    // (the outer packet's fragment flags are not the inner one's).
    void reenter(Burst &b, rte_mbuf *m, bool fresh) {
        if (unlikely(b.n == kBurst)) {
            drop(m, DropReason::kReentryFull);
            return;
        }
        // The path keeps the IP header right after a 14-byte Ethernet
        // header (l2_rewrite writes one there): what lies before it (outer
        // headers a stage took off) is cut.
        PktMeta &md = meta(m);
        if (md.l3_off != RTE_ETHER_HDR_LEN) {
            // The IP header must start in the first segment, 14 bytes in or more.
            if (md.l3_off < RTE_ETHER_HDR_LEN || md.l3_off >= m->data_len) {
                drop(m, DropReason::kReentryBadOffset);
                return;
            }
            const uint16_t cut = md.l3_off - RTE_ETHER_HDR_LEN;
            rte_pktmbuf_adj(m, cut);
            md.l3_off = RTE_ETHER_HDR_LEN;
            md.l4_off = md.l4_off > cut ? md.l4_off - cut : 0;
        }
        if (fresh) {
            md.flags = 0;
        }
        b.push(m);
    }
    // Runs f as stage s on `packets` packets, timed when Profile.
    template <bool Profile, typename F>
    void timed(size_t stage, uint16_t packets, F &&f);
    struct StageMark {
        uint64_t start;         // TSC when the stage began
        uint64_t outer_nested;  // nested_cycles_ of the enclosing stage
    };
    StageMark stage_begin();
    void stage_end(size_t stage, const StageMark &mark, uint64_t packets);

    const unsigned index_;
    const Pipeline &pipeline_;
    const Tables &tables_;
    rte_mempool *const pool_;
    const IdleParams idle_;
    rte_rcu_qsbr *const qsbr_;
    std::atomic<bool> running_{true};
    std::atomic<bool> stage_stats_{false};  // [C] release, [W] acquire once per loop
    std::atomic<bool> fast_path_{true};     // [C] writes, [W] reads once a burst

    // [W] stage_stats_ as read at the top of the current loop (send() and
    // free_dropped() test it), and the cycles of stages run nested inside
    // the stage being timed (subtracted from it).
    bool profile_ = false;
    uint64_t nested_cycles_ = 0;

    // [W] owned queues; n_rxq_ [R] for stats
    RxQueueRef rxq_[kMaxRxQueues];
    std::atomic<uint16_t> n_rxq_{0};
    // [W] each owned queue's load, by slot (RxQueueRef::slot; the epoll tag
    // carries it too); a slot is taken when a queue is added and given back
    // when it goes. The load report is written by kReportLoad, read by the
    // control thread after the acknowledgement.
    QueueLoad load_[kMaxRxQueues];
    bool slot_used_[kMaxRxQueues] = {};
    QueueLoadRow report_[kMaxRxQueues];
    uint16_t n_report_ = 0;
    // [W] output buffers, one per port; flushed every loop before the quiescent
    // report. pending_ lists the ports whose buffer got packets since the
    // last flush (each once: TxBuf::listed), so a flush visits only those.
    struct TxBuf {
        uint16_t n = 0;
        bool listed = false;
        uint64_t ol = 0;  // the packets' ol_flags or-ed: offload work (offload.hpp) to do?
        rte_mbuf *pkts[kBurst];
    };
    TxBuf txb_[kMaxPorts];
    uint16_t pending_[kMaxPorts];
    uint16_t n_pending_ = 0;
    Burst dropped_;
    uint64_t n_drops_ = 0;  // [W] drop() calls: xmit tells a driver's drops from its sends
    // [W] packets re-entering ip4_input / ip6_input (reenter4 / reenter6)
    Burst again4_;
    Burst again6_;
    // [C] before run(), [W] after: the features' per-worker pointers
    std::array<void *, kMaxWorkerSlots> slots_{};
    // [C] writes (set_tap_armed), [W] reads: the taps that run, a bit each
    std::array<std::atomic<uint8_t>, kTapPointCount> taps_armed_{};

    // [W] idle state. epoll_fd_ holds wake_fd_ (an eventfd: commands, stop)
    // and every owned RX queue's wake fd; n_unwakeable_ counts the queues
    // without one. blocked_: [W] writes around its epoll_wait, [C] reads in
    // wake() (both behind a seq_cst fence).
    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    uint16_t n_unwakeable_ = 0;
    // [W] owned queues that wake the worker once armed (PortArmFn); during a
    // block, armed_[0 .. ) are the ones armed: rxq_ index, the dup of the
    // driver's fd in the epoll set (tag kArmedTag | its index), readable.
    uint16_t n_armable_ = 0;
    struct Armed {
        uint16_t rxq;
        int fd;
        bool fired;
    };
    Armed armed_[kMaxRxQueues];
    static constexpr uint64_t kArmedTag = uint64_t{1} << 62;
    // block(): kYes it waited; kBusy an armable queue had frames (poll at
    // once); kUnable one could not be armed (sleep and poll instead).
    enum class Blocked : uint8_t { kYes, kBusy, kUnable };
    Blocked block();
    Blocked arm_queues(uint16_t &n_armed);
    void disarm_queues(uint16_t n_armed);
    std::atomic<bool> blocked_{false};
    static constexpr uint64_t kWakeTag = UINT64_MAX;  // wake_fd_'s epoll data
    // Above this many owned queues, all wakeable, poll_ready_impl polls. At
    // or below, reading each queue costs no more than asking epoll first.
    static constexpr uint16_t kReadyPollQueues = 4;
    static constexpr int kReadyEvents = 64;  // queues served per poll (epoll rotates the rest)
    void clear_wake();
    void close_idle_fds();
    void watch_rx(RxQueueRef &r);
    void unwatch_rx(const RxQueueRef &r);
    uint32_t empty_polls_ = 0;
    uint32_t sleep_us_ = 1;
    bool online_ = true;
    uint32_t loops_ = 0;
    bool last_busy_ = false;  // the last poll_once received packets (RX skips apply)

    // [W] rate limits: ICMP errors built, packets punted
    TokenBucket icmp_bucket_;
    TokenBucket punt_bucket_;
    TokenBucket session_bucket_;  // punts of the node's TCP sessions, see punt()
    static constexpr size_t kPuntSessionReserve = 256;

    // [W] producer, [C] consumer: packets for the control thread
    boost::lockfree::spsc_queue<rte_mbuf *, boost::lockfree::capacity<1024>> punt_;

    // [C] producer, [W] consumer
    boost::lockfree::spsc_queue<WorkerCommand, boost::lockfree::capacity<256>> cmds_;
    uint64_t next_seq_ = 1;               // [C]
    std::atomic<uint64_t> acked_seq_{0};  // [W] release, [C] acquire
    // [W] writes at housekeeping, [any] reads (health)
    alignas(RTE_CACHE_LINE_SIZE) std::atomic<uint64_t> heartbeat_tsc_{0};

    WorkerStats stats_;  // [W], [R] by control
};

}  // namespace fwd::dp
