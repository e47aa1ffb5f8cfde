#include "fwd/control/ports.hpp"

#include <cstring>

#include "fwd/util/registry.hpp"
#include "fwd/vhost/pod_port.hpp"

namespace fwd::control {

using nlohmann::json;

FWD_ON_LOAD(register_module<PortsModule>({}));

void PortsModule::start() {
    // Link changes of every port (uplink, pods) come in as events.
    accepting_.store(true, std::memory_order_release);
    rte_eth_dev_callback_register(RTE_ETH_ALL, RTE_ETH_EVENT_INTR_LSC, on_port_event, this);
    callbacks_ = true;
    const NodeConfig &cfg = ctx_.cfg();
    if (!cfg.uplink) {
        return;
    }
    const UplinkConfig &u = *cfg.uplink;
    vhost::PortSpec spec;
    spec.rx_queues = u.rx_queues;
    spec.tx_queues = static_cast<uint16_t>(ctx_.workers().size());
    spec.pool = ctx_.pool();
    auto info = vhost::create_port_from_devargs(u.devargs, spec);
    Uplink up{info.port_id, u.mac ? *u.mac : info.mac, u.vlan.value_or(0), cfg.mtu};
    if (u.mac) {
        rte_ether_addr a;
        std::memcpy(a.addr_bytes, u.mac->data(), 6);
        rte_eth_dev_default_mac_addr_set(info.port_id, &a);
    }
    dp::PortState &ps = ctx_.tables().port_mut(info.port_id);
    ps.mac = up.mac.bytes();
    ps.vlan = up.vlan;
    ps.role.store(dp::PortRole::kUplink, std::memory_order_release);
    uplink_ = up;
    // The workers do not run yet: their rings take the commands for later.
    for (size_t w = 0; w < cfg.workers.size(); w++) {
        for (const auto &q : cfg.workers[w].rx) {
            ctx_.workers()[w]->post(
                {dp::WorkerCommand::Kind::kAddRxQueue, info.port_id, q.queue, 0});
        }
    }
}

void PortsModule::stop() {
    if (callbacks_) {
        accepting_.store(false, std::memory_order_release);
        rte_eth_dev_callback_unregister(RTE_ETH_ALL, RTE_ETH_EVENT_INTR_LSC, on_port_event, this);
        callbacks_ = false;
    }
    if (uplink_) {
        retire(uplink_->port);
        try {
            vhost::destroy_port(uplink_->port);
        } catch (const std::exception &) {
            // Shutting down: the EAL cleans up the rest.
        }
        uplink_.reset();
    }
}

bool PortsModule::retire(uint16_t port) {
    ctx_.tables().port_mut(port).role.store(dp::PortRole::kNone, std::memory_order_release);
    // Every worker: no lookup still sends to it, no TX buffer holds it.
    ctx_.tables().synchronize();
    bool all = true;
    for (unsigned w = 0; w < ctx_.workers().size(); w++) {
        try {
            ctx_.worker_do(w, {dp::WorkerCommand::Kind::kDropPort, port, 0, 0});
        } catch (const std::exception &) {
            all = false;  // a stuck worker is reported by its own stats; keep tearing down
        }
    }
    ctx_.tables().synchronize();
    return all;
}

uint16_t PortsModule::add_soft_port(SoftPort p) {
    uint16_t id = dp::kFirstSoftPort;
    while (id < dp::kMaxPorts && soft_.count(id) != 0) {
        id++;
    }
    if (id == dp::kMaxPorts) {
        throw ApiError("unavailable",
                       "all " + std::to_string(dp::kMaxSoftPorts) + " soft ports are taken");
    }
    dp::PortState &ps = ctx_.tables().port_mut(id);
    ps.driver = p.driver;
    ps.driver_ctx = p.ctx;
    ps.mac = p.mac.bytes();
    ps.vlan = 0;
    ps.tx_offloads = p.tx_offloads;
    ps.role.store(p.role, std::memory_order_release);
    soft_.emplace(id, std::move(p));
    return id;
}

bool PortsModule::remove_soft_port(uint16_t port) {
    auto it = soft_.find(port);
    if (it == soft_.end()) {
        return true;
    }
    bool all = retire(port);
    dp::PortState &ps = ctx_.tables().port_mut(port);
    if (all) {
        ps.driver = 0;
        ps.driver_ctx = nullptr;
        ps.tx_offloads = 0;
    }
    soft_.erase(it);
    return all;
}

bool PortsModule::send_frame(const uint8_t *frame, size_t len) {
    if (!uplink_) {
        return false;
    }
    rte_mbuf *m = rte_pktmbuf_alloc(ctx_.pool());
    if (m == nullptr) {
        return false;
    }
    char *p = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
    if (p == nullptr) {
        rte_pktmbuf_free(m);
        return false;
    }
    std::memcpy(p, frame, len);
    if (!ctx_.post_any({dp::WorkerCommand::Kind::kTx, uplink_->port, 0, 0, m})) {
        rte_pktmbuf_free(m);
        return false;
    }
    return true;
}

int PortsModule::on_port_event(uint16_t port, rte_eth_event_type, void *self, void *) {
    auto *p = static_cast<PortsModule *>(self);
    // The interrupt thread waits while the ring is full (back-pressure, counted).
    p->port_ring_.push_wait(
        PortEvent{port}, [p] { p->ctx_.wake(); },
        [p] { return !p->accepting_.load(std::memory_order_acquire); });
    return 0;
}

bool PortsModule::poll_uplink_link() {
    const uint64_t now = ControlContext::now_ms();
    if (!uplink_ || now - link_polled_ms_ < kLinkPollMs) {
        return false;
    }
    link_polled_ms_ = now;
    rte_eth_link link{};
    const bool down =
        rte_eth_link_get_nowait(uplink_->port, &link) != 0 || link.link_status != RTE_ETH_LINK_UP;
    dp::PortState &ps = ctx_.tables().port_mut(uplink_->port);
    if (ps.link_down.load(std::memory_order_relaxed) == down) {
        return false;
    }
    ps.link_down.store(down, std::memory_order_relaxed);
    return true;
}

bool PortsModule::poll() {
    PortEvent ev;
    bool did = poll_uplink_link();
    while (port_ring_.pop(ev)) {
        did = true;
        PortLink &l = links_[ev.port];
        l.events++;
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(ev.port, &link) == 0) {
            l.up = link.link_status == RTE_ETH_LINK_UP;
            l.speed_mbps = link.link_speed;
        }
    }
    return did;
}

json PortsModule::link_json(uint16_t port) const {
    rte_eth_link link{};
    bool up = rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
    auto it = links_.find(port);
    return json{{"up", up}, {"events", it == links_.end() ? 0 : it->second.events}};
}

void PortsModule::counters(json &out) const {
    out["port_ring_full_waits"] = port_ring_.full_waits();
}

void PortsModule::describe_node(json &out) const {
    const NodeConfig &cfg = ctx_.cfg();
    if (!uplink_) {
        out["uplink"] = json();
        return;
    }
    out["uplink"] = json{{"port_id", uplink_->port},
                         {"devargs", cfg.uplink->devargs},
                         {"mac", uplink_->mac.str()},
                         {"link", link_json(uplink_->port)},
                         {"vlan", cfg.uplink->vlan ? json(*cfg.uplink->vlan) : json()}};
}

}  // namespace fwd::control
