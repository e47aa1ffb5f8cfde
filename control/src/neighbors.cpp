#include "fwd/control/neighbors.hpp"

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "fwd/control/ports.hpp"
#include "fwd/dp/meta.hpp"
#include "fwd/dp/offload.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

FWD_ON_LOAD(register_module<NeighborsModule>({PortsModule::kName}));

namespace {
constexpr size_t kMaxFrame = 9216 + 18;
constexpr unsigned kHostBudget = 64;  // frames from the kernel per pass
// Places of every worker's command ring kept for the kernel's TCP (BGP, the
// kubelet): when a flood at the node has the kernel answer echo, ND and port
// unreachable faster than the workers send, the rest is dropped first.
constexpr size_t kSessionReserve = 64;

// A frame (Ethernet, untagged, as the host tap gives it) carrying TCP over
// IPv4 or IPv6 (no IPv6 extension header: the kernel's TCP has none).
bool is_tcp(const uint8_t *f, size_t len) {
    if (len < 14 + 40) {
        return false;
    }
    const uint16_t type = static_cast<uint16_t>(f[12] << 8 | f[13]);
    return (type == RTE_ETHER_TYPE_IPV4 && f[14 + 9] == IPPROTO_TCP) ||
           (type == RTE_ETHER_TYPE_IPV6 && f[14 + 6] == IPPROTO_TCP);
}
}  // namespace

NeighborsModule::NeighborsModule(ControlContext &ctx) : ctx_(ctx), ports_(ctx.need<PortsModule>()) {
    ctx.add_op(
        {.name = "neighbor.list", .args = {}, .fn = [this](const json &) { return list(); }});
    for (auto r : {dp::PuntReason::kHost, dp::PuntReason::kNeighbor, dp::PuntReason::kResolve}) {
        ctx.on_punt(r, [this](rte_mbuf *m) { on_punt(m); });
    }
}

void NeighborsModule::start() {
    const auto &up = ports_.uplink();
    if (!up) {
        return;
    }
    const NodeConfig &cfg = ctx_.cfg();
    NeighborParams np;
    np.retrans_ms = cfg.neighbor.retrans_ms;
    np.max_probes = cfg.neighbor.max_probes;
    np.reachable_ms = cfg.neighbor.reachable_ms;
    np.queue_len = cfg.neighbor.queue_len;
    std::optional<net::Ip4Addr> ip4;
    std::optional<net::Ip6Addr> ip6;
    if (cfg.node_ip4) {
        ip4 = cfg.node_ip4->addr;
    }
    if (cfg.node_ip6) {
        ip6 = cfg.node_ip6->addr;
    }
    neigh_ = std::make_unique<NeighborTable>(np, up->mac, ip4, ip6);
    if (cfg.host) {
        vhost::HostTapConfig hc;
        hc.name = cfg.host->tap;
        hc.mac = up->mac;
        hc.mtu = cfg.mtu;
        hc.ip4 = cfg.node_ip4;
        hc.ip6 = cfg.node_ip6;
        host_ = std::make_unique<vhost::HostTap>(hc);
    }
}

void NeighborsModule::stop() {
    // The routes went before (their module stops first): the neighbors give
    // back the packets they parked.
    neighbor_actions();
    host_.reset();
}

uint32_t NeighborsModule::via_ref(const net::IpAddr &ip) {
    auto it = via_.find(ip);
    if (it != via_.end()) {
        it->second.refs++;
        return it->second.nh;
    }
    const auto &up = ports_.uplink();
    if (!up || !neigh_) {
        throw std::runtime_error("a route via " + ip.str() + " needs an uplink");
    }
    neigh_->ref(ip, ControlContext::now_ms());  // throws for our own, multicast or unsourced
    // The neighbor may be known already (a route that just went away shared it).
    auto mac = neigh_->resolved_mac(ip);
    dp::NextHop n{};
    n.kind = mac ? dp::NhKind::kVia : dp::NhKind::kResolve;
    n.port = up->port;
    n.src_mac = up->mac.bytes();
    n.mtu = up->mtu;
    n.vlan = up->vlan;
    if (mac) {
        n.dst_mac = mac->bytes();
    }
    uint32_t nh = ctx_.tables().nh_alloc(n);
    if (nh == dp::kNhInvalid) {
        neigh_->unref(ip);
        throw std::runtime_error("next-hop table full");
    }
    via_.emplace(ip, ViaNh{nh, 1, mac});
    via_by_nh_.emplace(nh, ip);
    return nh;
}

void NeighborsModule::via_unref(const net::IpAddr &ip) {
    auto it = via_.find(ip);
    if (it == via_.end() || --it->second.refs > 0) {
        return;
    }
    uint32_t nh = it->second.nh;
    via_by_nh_.erase(nh);
    via_.erase(it);
    ctx_.defer([this, nh, ip] {
        ctx_.tables().nh_free(nh);
        if (neigh_) {
            neigh_->unref(ip);
        }
    });
}

void NeighborsModule::send_frame(const uint8_t *frame, size_t len) {
    if (ports_.uplink() && !ports_.send_frame(frame, len)) {
        cnt_.host_tx_dropped++;
    }
}

// A tun pod's offload packet (dp/offload.hpp) to the node itself: the host
// tap takes whole frames with their checksums, so a GSO frame goes in
// segments and a partial checksum is filled first.
void NeighborsModule::host_offload(rte_mbuf *m) {
    if (!host_) {
        cnt_.host_no_tap++;
        rte_pktmbuf_free(m);
        return;
    }
    rte_mbuf *segs[dp::kMaxGsoSegments];
    uint16_t n = 1;
    segs[0] = m;
    bool ok = true;
    if ((m->ol_flags & RTE_MBUF_F_TX_TCP_SEG) != 0) {
        bool bad = false;
        n = dp::tcp_segment(m, ctx_.pool(), segs, dp::kMaxGsoSegments, bad);
        rte_pktmbuf_free(m);
        ok = n != 0;
    } else {
        ok = dp::fill_l4_checksum(m);
    }
    if (!ok) {
        cnt_.host_write_errors++;
        if (n == 1) {
            rte_pktmbuf_free(m);  // the checksum could not be filled
        }
        return;
    }
    uint8_t buf[kMaxFrame];
    for (uint16_t i = 0; i < n; i++) {
        const uint32_t len = rte_pktmbuf_pkt_len(segs[i]);
        const void *data = len <= sizeof(buf) ? rte_pktmbuf_read(segs[i], 0, len, buf) : nullptr;
        if (data != nullptr && host_->write_frame(static_cast<const uint8_t *>(data), len)) {
            cnt_.host_to_kernel++;
        } else {
            cnt_.host_write_errors++;
        }
        rte_pktmbuf_free(segs[i]);
    }
}

void NeighborsModule::on_punt(rte_mbuf *m) {
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
    if ((m->ol_flags & dp::kOffloadFlags) != 0) {
        host_offload(m);
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
        if (neigh_->on_frame(data, len, ControlContext::now_ms())) {
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

bool NeighborsModule::workers_have_room(size_t places) const {
    for (const dp::Worker *w : ctx_.workers()) {
        if (w->command_space() > places) {
            return true;
        }
    }
    return false;
}

void NeighborsModule::host_read() {
    if (!host_) {
        return;
    }
    uint8_t buf[kMaxFrame];
    for (unsigned i = 0; i < kHostBudget; i++) {
        ssize_t n = host_->read_frame(buf, sizeof(buf));
        if (n <= 0) {
            return;
        }
        if (!ports_.uplink() || n < 14 || static_cast<size_t>(n) > RTE_MBUF_DEFAULT_DATAROOM) {
            cnt_.host_tx_dropped++;
            continue;
        }
        if (!is_tcp(buf, static_cast<size_t>(n)) && !workers_have_room(kSessionReserve)) {
            cnt_.host_tx_dropped++;
            continue;
        }
        send_frame(buf, static_cast<size_t>(n));
        cnt_.host_from_kernel++;
    }
}

bool NeighborsModule::neighbor_actions() {
    if (!neigh_) {
        return false;
    }
    auto actions = neigh_->take_actions(ControlContext::now_ms());
    dp::Tables &t = ctx_.tables();
    for (auto &a : actions) {
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
                    t.nh_set_unresolved(it->second.nh);
                    t.synchronize();
                }
                t.nh_set_resolved(it->second.nh, a.mac);
                it->second.mac = a.mac;
                break;
            }
            case NeighAction::kUnresolved: {
                auto it = via_.find(a.ip);
                if (it != via_.end() && it->second.mac) {
                    t.nh_set_unresolved(it->second.nh);
                    it->second.mac.reset();
                }
                break;
            }
            case NeighAction::kFlush: {
                auto *m = static_cast<rte_mbuf *>(a.pkt);
                auto it = via_.find(a.ip);
                const auto &up = ports_.uplink();
                // The packet was routed to this neighbor's next hop; it now has a MAC.
                if (it != via_.end() && it->second.mac && up) {
                    dp::meta(m).nh = it->second.nh;
                    if (ctx_.post_any({dp::WorkerCommand::Kind::kTxRouted, up->port, 0, 0, m})) {
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
    return !actions.empty();
}

bool NeighborsModule::poll() {
    host_read();
    return neighbor_actions();
}

json NeighborsModule::list() const {
    json list = json::array();
    if (neigh_) {
        for (const auto &n : neigh_->list(ControlContext::now_ms())) {
            list.push_back(json{{"ip", n.ip.str()},
                                {"mac", n.mac ? json(n.mac->str()) : json()},
                                {"state", n.state},
                                {"refs", n.refs},
                                {"queued", n.queued},
                                {"probes", n.probes},
                                {"age_ms", n.age_ms}});
        }
    }
    return json{{"neighbors", list}};
}

void NeighborsModule::counters(json &out) const {
    out["host_to_kernel"] = cnt_.host_to_kernel;
    out["host_write_errors"] = cnt_.host_write_errors;
    out["host_no_tap"] = cnt_.host_no_tap;
    out["host_from_kernel"] = cnt_.host_from_kernel;
    out["host_tx_dropped"] = cnt_.host_tx_dropped;
    out["neigh_frames"] = cnt_.neigh_frames;
    out["neigh_learned"] = cnt_.neigh_learned;
    out["neigh_solicits"] = cnt_.neigh_solicits;
    out["neigh_queued"] = cnt_.neigh_queued;
    out["neigh_flushed"] = cnt_.neigh_flushed;
    out["neigh_dropped"] = cnt_.neigh_dropped;
    out["resolve_no_neighbor"] = cnt_.resolve_no_neighbor;
}

void NeighborsModule::describe_node(json &out) const {
    out["host_tap"] =
        host_ ? json{{"name", host_->name()}, {"punt_rate_pps", ctx_.cfg().host->punt_rate_pps}}
              : json();
    out["neighbors"] = list()["neighbors"];
}

void NeighborsModule::describe_tables(json &out) const {
    out["neighbor_next_hops"] = via_.size();
}

}  // namespace fwd::control
