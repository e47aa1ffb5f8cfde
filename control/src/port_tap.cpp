// Port kind "tap": kernel pods. One net_tap for every kernel pod; its kernel
// interface stays in the daemon's namespace and each pod gets a macvlan on
// it in the pod's namespace (vhost::add_pod_macvlan): Calico's eth0 with the
// pod's /32 and /128 and the gateway routes. One ethdev instead of one per
// pod (Debian's DPDK has 32 ports in all); the tap tells pods apart by MAC.
//
// Restarts: the tap is made persistent (vhost::set_tap_persist) once the PMD
// made it, so when the daemon dies, even by kill -9, the tap and every pod's
// macvlan on it stay (DPDK 22.11's net_tap has no devarg for it: the kernel
// keeps a persistent tap whose queues all closed). The next daemon's PMD
// attaches its queues to the same tap and reattach() takes each recorded
// pod's macvlan back as it is. A stop (SIGTERM) leaves it the same way; only
// a stop that removes the pods (node.shutdown remove_pods) clears the
// persistence first, so the tap and its macvlans go.
#include <net/if.h>
#include <rte_mbuf.h>

#include "api_args.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/util/registry.hpp"
#include "fwd/vhost/netns.hpp"
#include "fwd/vhost/pod_port.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

// Every pod's macvlan sends through the shared tap's queues: longer than the
// 1000 packets one pod's tap had.
constexpr uint32_t kPodTapTxQueueLen = 10000;

struct TapState {
    int pod_ifindex = 0;  // the macvlan's ifindex in netns; 0: none made
    bool routes = false;  // the pod's routes are there (activate adds them)
};

class TapKind final : public PortKind {
  public:
    static constexpr const char *kName = "tap";
    explicit TapKind(ControlContext &ctx) : ctx_(ctx) {}

    std::vector<std::string> fields() const override { return {"host_ifname"}; }
    bool needs_netns() const override { return true; }
    bool needs_mac() const override { return false; }
    bool shared_port() const override { return true; }
    bool pod_interface() const override { return true; }

    void start() override;
    void stop(bool keep_pods) override;
    void restored() override { found_ = false; }

    void check(Endpoint &e, const json &, const Endpoints &others) override {
        // The shared tap tells kernel pods apart by MAC alone.
        for (const auto &[id, o] : others) {
            if (o.kind == e.kind && o.mac == e.mac) {
                throw ApiError("already_exists",
                               "mac " + e.mac.str() + " already used by endpoint '" + id + "'");
            }
        }
    }

    void attach(Endpoint &e) override {
        if (!pod_port_) {
            throw ApiError("unavailable", "no pod tap: the daemon has not started");
        }
        e.port_id = *pod_port_;
        e.rx_queues = static_cast<uint16_t>(ctx_.workers().size());
        e.worker = 0;
        // Without routes until activate(): the pod sends nothing but link-local before its
        // addresses are in the tap's anti-spoofing state (kAttached), or a reply it sent at once
        // would be a spoofed source.
        vhost::PodIfConfig pc = pod_if_config(e);
        pc.routes = false;
        TapState st;
        try {
            st.pod_ifindex = vhost::add_pod_macvlan(ctx_.cfg().pod_tap, pc);
        } catch (const std::exception &ex) {
            throw ApiError("invalid_argument", ex.what());
        }
        e.state = st;
    }

    // The pod's macvlan left by the daemon before, if it is there (the
    // shared tap outlived it), else a new one as attach makes it.
    void reattach(Endpoint &e) override {
        if (!pod_port_) {
            throw ApiError("unavailable", "no pod tap: the daemon has not started");
        }
        vhost::PodIfState now;
        try {
            now = vhost::inspect_pod_interface(e.netns, e.ifname);
        } catch (const std::exception &ex) {
            throw ApiError("invalid_argument", ex.what());
        }
        if (!now.exists) {
            attach(e);
            return;
        }
        if (now.kind != "macvlan" || now.mac != e.mac) {
            throw ApiError("already_exists", e.ifname + " in netns " + e.netns +
                                                 " is not the pod's macvlan (kind " + now.kind +
                                                 ", MAC " + now.mac.str() + ")");
        }
        e.port_id = *pod_port_;
        e.rx_queues = static_cast<uint16_t>(ctx_.workers().size());
        e.worker = 0;
        // A daemon that died between attach and activate left it without them.
        bool routed = true;
        for (const auto &r : vhost::expected_pod_routes(pod_if_config(e))) {
            routed =
                routed && std::find(now.routes.begin(), now.routes.end(), r) != now.routes.end();
        }
        e.state = TapState{now.ifindex, routed};
        try {
            vhost::set_pod_gateway_neighbors(pod_if_config(e));
        } catch (const std::exception &ex) {
            // The pod resolves the gateway itself, a second later at most.
            log::warn("endpoint {}: {}", e.id, ex.what());
        }
    }

    // The pod's routes are live in the dataplane and its anti-spoofing state holds its
    // addresses: now it may send.
    void activate(Endpoint &e) override {
        auto *st = std::any_cast<TapState>(&e.state);
        if (st == nullptr || st->pod_ifindex == 0 || st->routes) {
            return;
        }
        try {
            vhost::add_pod_routes(pod_if_config(e), st->pod_ifindex);
        } catch (const std::exception &ex) {
            throw ApiError("invalid_argument", ex.what());
        }
        st->routes = true;
    }

    // endpoint.del: the macvlan goes first, before the pod's addresses leave
    // the tap's anti-spoofing state and its routes go (what the pod sent
    // until then, a reply, a FIN, was read by the workers while the state
    // still held its addresses). The shared tap stays; frames to the pod's
    // MAC still in a TX buffer reach no macvlan and the kernel drops them.
    void silence(Endpoint &e) override {
        auto *st = std::any_cast<TapState>(&e.state);
        if (st == nullptr || st->pod_ifindex == 0) {
            return;
        }
        try {
            vhost::delete_pod_macvlan(e.netns, st->pod_ifindex, e.mac);
        } catch (const std::exception &) {
            // The namespace is unreachable: the macvlan goes with it, or
            // with the shared tap at shutdown.
        }
        st->pod_ifindex = 0;
    }

    void detach(Endpoint &e, Detach how) override {
        auto *st = std::any_cast<TapState>(&e.state);
        if (how == Detach::kAll) {
            silence(e);  // done already unless the removal skipped it
            return;
        }
        // At a stop the tap stays with every macvlan on it, or its
        // destruction takes them all (stop(false)).
        kept_ += st != nullptr && st->pod_ifindex != 0 && how == Detach::kKeepPod ? 1 : 0;
    }

    void describe(const Endpoint &, json &j) const override {
        j["host_ifname"] = ctx_.cfg().pod_tap;
    }

    void describe_node(json &out, const Endpoints &eps) const override {
        if (!pod_port_) {
            out["pod_tap"] = json();
            return;
        }
        size_t pods = 0;
        for (const auto &[id, e] : eps) {
            pods += e.kind == kName ? 1 : 0;
        }
        out["pod_tap"] = json{{"name", ctx_.cfg().pod_tap},
                              {"port_id", *pod_port_},
                              {"mtu", kMaxPodMtu},
                              {"endpoints", pods}};
    }

  private:
    ControlContext &ctx_;
    std::optional<uint16_t> pod_port_;
    // A stop that keeps the pods keeps the tap only where it may carry one:
    // a pod was on it, or a daemon before left it and the restore did not
    // run (this one's start failed: the recorded pods are still on it). A
    // tap no pod uses goes.
    bool found_ = false;  // the tap existed at start() and no restore ran yet
    size_t kept_ = 0;     // pods detached with Detach::kKeepPod
};

void TapKind::start() {
    vhost::PortSpec spec;
    spec.token = "pods";
    spec.tap_ifname = ctx_.cfg().pod_tap;
    spec.tap_take_over = true;  // the tap a daemon that died left, with its pods
    found_ = if_nametoindex(spec.tap_ifname.c_str()) != 0;
    kept_ = 0;
    const auto n_workers = static_cast<uint16_t>(ctx_.workers().size());
    // One queue pair per worker, worker w polls RX queue w: the kernel
    // spreads the pods' flows over the queues by hash, so every queue must be
    // polled, and the tap PMD wants as many RX as TX queues.
    spec.rx_queues = n_workers;
    spec.tx_queues = n_workers;
    spec.pool = ctx_.pool();
    spec.rx_scatter = true;
    // With RX scatter a tap's rx_desc is the most mbufs one frame may take
    // (the kernel queues the frames, not the PMD): enough for the largest
    // frame, and no more pinned per queue.
    const uint32_t room = rte_pktmbuf_data_room_size(ctx_.pool()) - RTE_PKTMBUF_HEADROOM;
    const uint32_t frame = kMaxPodMtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + RTE_ETHER_CRC_LEN;
    spec.rx_desc = static_cast<uint16_t>(std::max<uint32_t>(4, (frame + room - 1) / room + 1));
    spec.tx_desc = 512;
    vhost::PortInfo info;
    try {
        info = vhost::create_port(spec);
    } catch (const std::exception &ex) {
        throw std::runtime_error(std::string("pod tap: ") + ex.what());
    }
    try {
        // A macvlan's MTU cannot exceed its lower interface's: the tap carries the largest.
        vhost::configure_pod_lower(ctx_.cfg().pod_tap, kMaxPodMtu, kPodTapTxQueueLen);
        vhost::set_tap_persist(ctx_.cfg().pod_tap, true);
    } catch (const std::exception &ex) {
        vhost::destroy_port(info.port_id);
        throw std::runtime_error(std::string("pod tap: ") + ex.what());
    }
    pod_port_ = info.port_id;
    dp::PortState &ps = ctx_.tables().port_mut(info.port_id);
    ps.mac = net::kCalicoGatewayMac.bytes();
    ps.vlan = 0;
    ps.role.store(dp::PortRole::kPod, std::memory_order_release);
    // The workers do not run yet: their rings take the commands for later.
    for (uint16_t w = 0; w < n_workers; w++) {
        ctx_.workers()[w]->post({dp::WorkerCommand::Kind::kAddRxQueue, info.port_id, w, 0});
    }
}

// After every endpoint is gone. Destroying a tap that is not persistent
// deletes the macvlans still on it, in whichever namespace they are; a
// persistent one stays with them, for the next daemon.
void TapKind::stop(bool keep_pods) {
    if (!pod_port_) {
        return;
    }
    ctx_.need<PortsModule>().retire(*pod_port_);
    try {
        if (!keep_pods || (kept_ == 0 && !found_)) {
            vhost::set_tap_persist(ctx_.cfg().pod_tap, false);
        }
    } catch (const std::exception &ex) {
        log::warn("pod tap {} stays after the daemon: {}", ctx_.cfg().pod_tap, ex.what());
    }
    try {
        vhost::destroy_port(*pod_port_);
    } catch (const std::exception &) {
        // Shutting down: the EAL cleans up the rest.
    }
    pod_port_.reset();
}

}  // namespace

FWD_ON_LOAD(register_port_kind<TapKind>(TapKind::kName));

}  // namespace fwd::control
