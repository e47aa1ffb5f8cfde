// The "vhost-user" port driver (vhost_io.hpp): a pod's vrings through
// librte_vhost.
#include "fwd/dp/vhost_io.hpp"

#include <poll.h>
#include <rte_vhost.h>
#include <unistd.h>

#include <atomic>

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

// An idle worker's block (pipeline.hpp PortArmFn): the peer's TX ring of
// pair `queue` gets notifications on (the peer kicks its eventfd for the
// next frame it posts), then is looked at once more, so a frame posted
// before the peer saw the change is not left waiting: then the worker does
// not block.
int vhost_arm(void *ctx, uint16_t queue) {
    auto *p = static_cast<VhostPort *>(ctx);
    const int vid = p != nullptr ? p->vid.load(std::memory_order_acquire) : -1;
    if (vid < 0 || queue >= p->queues) {
        return kArmNone;  // no peer: its connection comes back through new_device
    }
    const auto ring = static_cast<uint16_t>(2 * queue + 1);
    rte_vhost_vring vr{};
    if (rte_vhost_get_vhost_vring(vid, ring, &vr) != 0) {
        return kArmNone;  // the peer has no such ring: nothing comes on it
    }
    if (vr.kickfd < 0 || rte_vhost_enable_guest_notification(vid, ring, 1) != 0) {
        return kArmUnable;
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the flag before the ring's index
    if (rte_vhost_rx_queue_count(vid, ring) != 0) {
        rte_vhost_enable_guest_notification(vid, ring, 0);
        return kArmBusy;
    }
    return vr.kickfd;
}

// After the block: notifications off again (the worker polls), the kick
// drained. fd is the worker's dup of the kick eventfd: the same file even if
// the peer left meanwhile; it is read only when readable (a peer's eventfd
// may be blocking).
void vhost_disarm(void *ctx, uint16_t queue, int fd, bool fired) {
    if (fd >= 0 && fired) {
        pollfd pf{fd, POLLIN, 0};
        uint64_t count = 0;
        if (::poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN) != 0) {
            (void)::read(fd, &count, sizeof(count));
        }
    }
    auto *p = static_cast<VhostPort *>(ctx);
    const int vid = p != nullptr ? p->vid.load(std::memory_order_acquire) : -1;
    if (vid >= 0 && queue < p->queues) {
        rte_vhost_enable_guest_notification(vid, static_cast<uint16_t>(2 * queue + 1), 0);
    }
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
    static const uint8_t id = PipelineRegistry::global().add_port_driver(
        {"vhost_user", &vhost_rx, &vhost_tx, nullptr, &vhost_arm, &vhost_disarm});
    return id;
}

FWD_ON_LOAD(driver());

}  // namespace fwd::dp::vhost_user
