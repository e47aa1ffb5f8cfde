// The "vhost-user" port driver (vhost_io.hpp): a pod's vrings through
// librte_vhost.
#include "fwd/dp/vhost_io.hpp"

#include <rte_vhost.h>

#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::vhost_user {

namespace {

uint64_t bytes_of(rte_mbuf *const *pkts, uint16_t n) {
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; i++) {
        bytes += pkts[i]->pkt_len;
    }
    return bytes;
}

// queue: the RX queue this worker owns; the peer's TX ring of pair queue.
uint16_t vhost_rx(Worker &w, uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n) {
    auto *p = static_cast<VhostPort *>(w.tables().port(port).driver_ctx);
    if (unlikely(p == nullptr || queue >= p->queues)) {
        return 0;
    }
    const int vid = p->vid.load(std::memory_order_acquire);
    if (vid < 0) {
        return 0;
    }
    const uint16_t got =
        rte_vhost_dequeue_burst(vid, static_cast<uint16_t>(2 * queue + 1), w.pool(), pkts, n);
    if (got != 0) {
        VhostPort::QueueCounters &c = p->q[queue];
        c.rx_packets.fetch_add(got, std::memory_order_relaxed);
        c.rx_bytes.fetch_add(bytes_of(pkts, got), std::memory_order_relaxed);
    }
    return got;
}

// queue: the sending worker's index; its frames go on the (index mod
// count)-th enabled queue. The library copies them into the peer's buffers:
// what it took is freed here, the rest the worker drops (tx_queue_full).
uint16_t vhost_tx(Worker &w, uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n) {
    auto *p = static_cast<VhostPort *>(w.tables().port(port).driver_ctx);
    const int vid = p != nullptr ? p->vid.load(std::memory_order_acquire) : -1;
    const unsigned count = p != nullptr ? p->txq_count.load(std::memory_order_acquire) : 0;
    if (unlikely(vid < 0 || count == 0)) {
        for (uint16_t i = 0; i < n; i++) {
            w.drop(pkts[i], DropReason::kPortDown);
        }
        return n;
    }
    const uint8_t q = p->txq[queue % count].load(std::memory_order_relaxed);
    const uint16_t sent = rte_vhost_enqueue_burst(vid, static_cast<uint16_t>(2 * q), pkts, n);
    if (sent != 0) {
        VhostPort::QueueCounters &c = p->q[q];
        c.tx_packets.fetch_add(sent, std::memory_order_relaxed);
        c.tx_bytes.fetch_add(bytes_of(pkts, sent), std::memory_order_relaxed);
        rte_pktmbuf_free_bulk(pkts, sent);
    }
    return sent;
}

}  // namespace

void publish_tx_queues(VhostPort &p, uint32_t enabled) {
    uint8_t n = 0;
    for (uint16_t q = 0; q < p.queues && q < kMaxQueues; q++) {
        if ((enabled & (1u << q)) != 0) {
            p.txq[n++].store(static_cast<uint8_t>(q), std::memory_order_relaxed);
        }
    }
    p.txq_count.store(n, std::memory_order_release);
}

uint8_t driver() {
    static const uint8_t id =
        PipelineRegistry::global().add_port_driver({"vhost_user", &vhost_rx, &vhost_tx, nullptr});
    return id;
}

FWD_ON_LOAD(driver());

}  // namespace fwd::dp::vhost_user
