// Packet capture, the datapath side: port taps (pipeline.hpp) that copy the
// frames a port receives or sends into a per-worker ring, for the control
// side (control/src/capture.cpp) to write as pcap. The example of a feature
// that adds itself: this header, dpdk-fwd/src/stages/capture.cpp, the control
// module, the fwdctl group, and a line per file in meson.build.
//
// What the taps read, per worker (the worker slot "capture"):
//   sessions  [C] publishes an immutable Sessions with a release store and
//             frees the old one after a grace period; [W] loads it once per
//             burst. nullptr: nothing is captured (one load per burst).
//   ring      [W] produces copies, [C] consumes them (writes, frees).
//   counters  [W] writes, [C] reads: by session slot.
// A copy is an mbuf chain from the worker's pool (rte_pktmbuf_copy, cut at
// the session's snaplen) whose private area holds a CaptureMeta instead of
// PktMeta. No heap, no syscall: a copy that finds no mbuf or a full ring is
// counted and skipped, as is one over the session's rate (a token bucket per
// worker and session).
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>

#include "fwd/dp/counter.hpp"
#include "fwd/dp/meta.hpp"
#include "fwd/dp/worker.hpp"

namespace fwd::dp::capture {

inline constexpr size_t kMaxSessions = 4;
inline constexpr size_t kRingSize = 1024;

struct Session {
    uint32_t id = 0;         // unique for the daemon's life; stamps every copy
    uint8_t slot = 0;        // index of its counters, 0..kMaxSessions-1
    uint16_t port = 0;       // ethdev port id
    bool rx = true;          // frames the port receives
    bool tx = true;          // frames the port sends (as handed to rte_eth_tx_burst)
    bool match_mac = false;  // only frames from (rx) or to (tx) mac: a pod on a shared port
    std::array<uint8_t, 6> mac{};
    uint32_t snaplen = 0;          // bytes kept of each frame
    uint32_t rate_per_worker = 0;  // copies a second per worker
};

// Immutable once published.
struct Sessions {
    uint64_t generation = 0;  // new for every published set
    uint8_t n = 0;
    std::array<Session, kMaxSessions> s{};
};

struct alignas(RTE_CACHE_LINE_SIZE) WorkerState {
    std::atomic<const Sessions *> sessions{nullptr};
    boost::lockfree::spsc_queue<rte_mbuf *, boost::lockfree::capacity<kRingSize>> ring;
    // [W] the set the buckets were made for, and the buckets
    uint64_t seen_generation = 0;
    std::array<TokenBucket, kMaxSessions> bucket;
    struct alignas(RTE_CACHE_LINE_SIZE) SlotCounters {
        Counter copied;     // queued for the control side
        Counter over_rate;  // skipped: over the session's rate
        Counter ring_full;  // skipped: the ring was full
        Counter no_mbuf;    // skipped: the pool was empty
    };
    std::array<SlotCounters, kMaxSessions> counters;
};

enum Direction : uint8_t { kRx = 0, kTx = 1 };

// In a copy's private area (the copy never enters the pipeline).
struct CaptureMeta {
    uint64_t tsc;       // when the tap saw it
    uint32_t wire_len;  // the frame's length before snaplen
    uint32_t session;   // Session::id
    uint8_t slot;
    uint8_t direction;  // Direction
};
static_assert(sizeof(CaptureMeta) <= kMetaSize);

inline CaptureMeta &capture_meta(rte_mbuf *m) {
    return *static_cast<CaptureMeta *>(rte_mbuf_to_priv(m));
}

// The worker slot the taps find their WorkerState in (registered at load).
uint16_t worker_slot();

}  // namespace fwd::dp::capture
