// capture_rx / capture_tx: port taps for packet capture (capture.hpp).
// Reads: the worker's capture state (slot "capture"): the published
//        sessions, once per burst; each frame's Ethernet header when a
//        session matches one MAC.
// Sets:  nothing in the frames it sees (a tap leaves them as they are);
//        writes copies into the worker's capture ring.
// Next:  the frames go on unchanged (rx: eth_input; tx: rte_eth_tx_burst).
// Drops: none; copies it cannot make are counted per session (over_rate,
//        ring_full, no_mbuf).
#include "fwd/dp/capture.hpp"

#include <rte_cycles.h>
#include <rte_ether.h>

#include <cstring>

#include "fwd/util/registry.hpp"

namespace fwd::dp::capture {

namespace {

uint16_t g_slot = UINT16_MAX;  // written once at load, read-only afterwards

template <Direction kDir>
void tap(Worker &w, uint16_t port, rte_mbuf *const *pkts, uint16_t n) {
    auto *st = static_cast<WorkerState *>(w.slot(g_slot));
    if (st == nullptr) {
        return;  // no control side in this process: nothing to capture into
    }
    const Sessions *ss = st->sessions.load(std::memory_order_acquire);
    if (likely(ss == nullptr)) {
        return;
    }
    if (ss->generation != st->seen_generation) {
        for (uint8_t i = 0; i < ss->n; i++) {
            st->bucket[ss->s[i].slot].init(ss->s[i].rate_per_worker, rte_get_tsc_hz());
        }
        st->seen_generation = ss->generation;
    }
    const uint64_t now = rte_rdtsc();
    for (uint8_t i = 0; i < ss->n; i++) {
        const Session &s = ss->s[i];
        if (s.port != port || !(kDir == kRx ? s.rx : s.tx)) {
            continue;
        }
        WorkerState::SlotCounters &c = st->counters[s.slot];
        for (uint16_t k = 0; k < n; k++) {
            rte_mbuf *m = pkts[k];
            if (s.match_mac) {
                if (m->data_len < RTE_ETHER_HDR_LEN) {
                    continue;
                }
                const auto *eth = rte_pktmbuf_mtod(m, const rte_ether_hdr *);
                const uint8_t *mac =
                    kDir == kRx ? eth->src_addr.addr_bytes : eth->dst_addr.addr_bytes;
                if (std::memcmp(mac, s.mac.data(), 6) != 0) {
                    continue;
                }
            }
            if (!st->bucket[s.slot].take()) {
                c.over_rate.inc();
                continue;
            }
            rte_mbuf *copy = rte_pktmbuf_copy(m, w.pool(), 0, s.snaplen);
            if (copy == nullptr) {
                c.no_mbuf.inc();
                continue;
            }
            CaptureMeta &cm = capture_meta(copy);
            cm.tsc = now;
            cm.wire_len = m->pkt_len;
            cm.session = s.id;
            cm.slot = s.slot;
            cm.direction = kDir;
            if (!st->ring.push(copy)) {
                rte_pktmbuf_free(copy);
                c.ring_full.inc();
                continue;
            }
            c.copied.inc();
        }
    }
}

}  // namespace

uint16_t worker_slot() {
    return g_slot;
}

FWD_ON_LOAD(g_slot = PipelineRegistry::global().add_worker_slot("capture");
            // armed by the control side while a capture runs
            PipelineRegistry::global().add_tap({"capture_rx", TapPoint::kRx, tap<kRx>, false});
            PipelineRegistry::global().add_tap({"capture_tx", TapPoint::kTx, tap<kTx>, false}));

}  // namespace fwd::dp::capture
