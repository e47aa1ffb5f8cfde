// The control thread's slow path: packets the workers punted, the node's own
// kernel behind the host tap, and next-hop resolution on the uplink.
//
//   worker punt ring --kNeighbor--> NeighborTable::on_frame, then the host tap
//                    --kHost------> the host tap (the kernel answers)
//                    --kResolve---> parked in the NeighborTable for meta.nh's neighbor
//   host tap (kernel) ------------> a worker's command ring (kTx) -> the uplink
//   NeighborTable actions: solicitations out of the uplink (kTx), next hops
//     resolved / unresolved in place, parked packets sent (kTxRouted) or freed.
//
// The control thread never touches a TX queue itself: frames leave through a
// worker (round robin), which owns the queues.
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <chrono>

#include "fwd/control/controller.hpp"
#include "fwd/dp/meta.hpp"

namespace fwd::control {

namespace {
constexpr size_t kMaxFrame = 9216 + 18;
constexpr unsigned kPuntBudget = 256;  // per worker per pass
constexpr unsigned kHostBudget = 64;   // frames from the kernel per pass
}  // namespace

uint64_t Controller::now_ms() const {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

int Controller::on_port_event(uint16_t port, rte_eth_event_type type, void *self, void *) {
    auto *c = static_cast<Controller *>(self);
    // The interrupt thread waits while the ring is full (back-pressure, counted).
    c->port_ring_.push_wait(
        PortEvent{port, static_cast<uint8_t>(type)},
        [c] {
            uint64_t one = 1;
            [[maybe_unused]] auto n = write(c->wake_fd_, &one, sizeof(one));
        },
        [c] { return !c->running_.load(std::memory_order_acquire); });
    return 0;
}

void Controller::drain_port_events() {
    PortEvent ev;
    while (port_ring_.pop(ev)) {
        PortLink &l = links_[ev.port];
        l.events++;
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(ev.port, &link) == 0) {
            l.up = link.link_status == RTE_ETH_LINK_UP;
            l.speed_mbps = link.link_speed;
        }
    }
}

void Controller::start_slow_path() {
    // Link changes of every port (uplink, pods) come in as events.
    for (auto type : {RTE_ETH_EVENT_INTR_LSC, RTE_ETH_EVENT_QUEUE_STATE}) {
        rte_eth_dev_callback_register(RTE_ETH_ALL, type, on_port_event, this);
    }
    if (!uplink_port_) {
        return;
    }
    NeighborParams np;
    np.retrans_ms = cfg_.neighbor.retrans_ms;
    np.max_probes = cfg_.neighbor.max_probes;
    np.reachable_ms = cfg_.neighbor.reachable_ms;
    np.queue_len = cfg_.neighbor.queue_len;
    std::optional<net::Ip4Addr> ip4;
    std::optional<net::Ip6Addr> ip6;
    if (cfg_.node_ip4) {
        ip4 = cfg_.node_ip4->addr;
    }
    if (cfg_.node_ip6) {
        ip6 = cfg_.node_ip6->addr;
    }
    neigh_ = std::make_unique<NeighborTable>(np, uplink_mac_, ip4, ip6);
    if (cfg_.host) {
        vhost::HostTapConfig hc;
        hc.name = cfg_.host->tap;
        hc.mac = uplink_mac_;
        hc.mtu = cfg_.mtu;
        hc.ip4 = cfg_.node_ip4;
        hc.ip6 = cfg_.node_ip6;
        host_ = std::make_unique<vhost::HostTap>(hc);
    }
    if (cfg_.bgp) {
        NetlinkWatcherConfig wc;
        wc.netns = cfg_.bgp->netns;
        wc.table = cfg_.bgp->table;
        wc.protocols = cfg_.bgp->protocols;
        watcher_ = std::make_unique<NetlinkWatcher>(wc, [this] {
            uint64_t one = 1;
            [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof(one));
        });
        watcher_->start();
    }
}

bool Controller::send_on_worker(dp::WorkerCommand::Kind kind, uint16_t port, rte_mbuf *m) {
    dp::WorkerCommand c{kind, port, 0, 0, m};
    for (size_t tries = 0; tries < workers_.size(); tries++) {
        unsigned w = tx_rr_++ % static_cast<unsigned>(workers_.size());
        if (workers_[w]->post(c) != 0) {
            return true;
        }
        cnt_.worker_ring_full++;
    }
    return false;
}

void Controller::send_frame(const uint8_t *frame, size_t len) {
    if (!uplink_port_) {
        return;
    }
    rte_mbuf *m = rte_pktmbuf_alloc(pool_);
    if (m == nullptr) {
        cnt_.host_tx_dropped++;
        return;
    }
    char *p = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
    if (p == nullptr) {
        rte_pktmbuf_free(m);
        cnt_.host_tx_dropped++;
        return;
    }
    std::memcpy(p, frame, len);
    if (!send_on_worker(dp::WorkerCommand::Kind::kTx, *uplink_port_, m)) {
        rte_pktmbuf_free(m);
        cnt_.host_tx_dropped++;
    }
}

void Controller::handle_punt(rte_mbuf *m) {
    auto reason = dp::Worker::punt_reason(m);
    if (reason == dp::PuntReason::kResolve) {
        auto it = via_by_nh_.find(dp::meta(m).nh);
        if (it == via_by_nh_.end() || !neigh_) {
            cnt_.resolve_no_neighbor++;
            rte_pktmbuf_free(m);
            return;
        }
        cnt_.neigh_queued++;
        neigh_->queue(it->second, m);
        return;
    }
    // Contiguous copy for the parser and the tap (frames are small; jumbo
    // frames arrive chained).
    uint8_t buf[kMaxFrame];
    uint32_t len = rte_pktmbuf_pkt_len(m);
    const uint8_t *data = nullptr;
    if (len <= sizeof(buf)) {
        data = static_cast<const uint8_t *>(rte_pktmbuf_read(m, 0, len, buf));
    }
    if (data != nullptr && reason == dp::PuntReason::kNeighbor && neigh_) {
        cnt_.neigh_frames++;
        if (neigh_->on_frame(data, len, now_ms())) {
            cnt_.neigh_learned++;
        }
    }
    if (data != nullptr && host_) {
        if (host_->write_frame(data, len)) {
            cnt_.host_to_kernel++;
        } else {
            cnt_.host_write_errors++;
        }
    } else if (reason == dp::PuntReason::kHost) {
        cnt_.host_no_tap++;
    }
    rte_pktmbuf_free(m);
}

void Controller::host_read() {
    if (!host_) {
        return;
    }
    uint8_t buf[kMaxFrame];
    for (unsigned i = 0; i < kHostBudget; i++) {
        ssize_t n = host_->read_frame(buf, sizeof(buf));
        if (n <= 0) {
            return;
        }
        if (!uplink_port_ || n < 14 || static_cast<size_t>(n) > RTE_MBUF_DEFAULT_DATAROOM) {
            cnt_.host_tx_dropped++;
            continue;
        }
        send_frame(buf, static_cast<size_t>(n));
        cnt_.host_from_kernel++;
    }
}

void Controller::neighbor_actions() {
    if (!neigh_) {
        return;
    }
    for (auto &a : neigh_->take_actions(now_ms())) {
        switch (a.kind) {
            case NeighAction::kSend:
                cnt_.neigh_solicits++;
                send_frame(a.frame.data(), a.frame.size());
                break;
            case NeighAction::kResolved: {
                auto it = via_.find(a.ip);
                if (it == via_.end()) {
                    break;
                }
                if (it->second.mac && *it->second.mac != a.mac) {
                    // A new MAC: no worker may read the old one half-written.
                    tables_.nh_set_unresolved(it->second.nh);
                    tables_.synchronize();
                }
                tables_.nh_set_resolved(it->second.nh, a.mac);
                it->second.mac = a.mac;
                break;
            }
            case NeighAction::kUnresolved: {
                auto it = via_.find(a.ip);
                if (it != via_.end() && it->second.mac) {
                    tables_.nh_set_unresolved(it->second.nh);
                    it->second.mac.reset();
                }
                break;
            }
            case NeighAction::kFlush: {
                auto *m = static_cast<rte_mbuf *>(a.pkt);
                auto it = via_.find(a.ip);
                // The packet was routed to this neighbor's next hop; it now has a MAC.
                if (it != via_.end() && it->second.mac && uplink_port_) {
                    dp::meta(m).nh = it->second.nh;
                    if (send_on_worker(dp::WorkerCommand::Kind::kTxRouted, *uplink_port_, m)) {
                        cnt_.neigh_flushed++;
                        break;
                    }
                }
                cnt_.neigh_dropped++;
                rte_pktmbuf_free(m);
                break;
            }
            case NeighAction::kDrop:
                cnt_.neigh_dropped++;
                rte_pktmbuf_free(static_cast<rte_mbuf *>(a.pkt));
                break;
        }
    }
}

bool Controller::slow_path_work() {
    bool did = false;
    drain_port_events();
    for (auto *w : workers_) {
        rte_mbuf *m;
        for (unsigned i = 0; i < kPuntBudget && w->pop_punt(m); i++) {
            handle_punt(m);
            did = true;
        }
    }
    host_read();
    neighbor_actions();
    return did;
}

}  // namespace fwd::control
