// Port kind "vhost-user": DPDK and VM pods. Each pod has a vhost-user socket
// of its own; the pod (a VM, or a container running virtio-user) connects to
// it, as client or server. The device is driven through librte_vhost's own
// API as a soft port (dpdk-fwd/src/vhost_io.cpp): no net_vhost ethdev per
// pod, so no 32-port cap; vhost-user pods share dp::kMaxSoftPorts with the
// `tun` pods.
//
// The library calls back from its event thread (and from the control thread
// inside rte_vhost_driver_unregister):
//   new_connection     a peer connected: no TX queue is enabled yet;
//   vring_state_changed the peer enabled or disabled a ring: the TX map the
//                      workers read follows (vhost_io.hpp);
//   new_device         every ring is ready: notifications from the peer
//                      off (the workers poll), the vid published: traffic
//                      flows; the link is up;
//   destroy_device     the vid withdrawn, then a grace period of the workers
//                      before the library frees the device; the link is down;
//   destroy_connection the peer is gone: no TX queue enabled.
// They find the port by the socket path (rte_vhost_get_ifname) in a registry
// under one mutex; the control thread holds it only to add and remove
// entries, never while it calls into the library. A socket serves one peer:
// while a connection is adopted, another one (a second VM, a process probing
// the socket) is refused at new_connection, so it can neither take the
// device nor clear the pod's queues.
//
// Reconnect: with our port as server the socket keeps listening, the pod
// connects again; as client (RTE_VHOST_USER_CLIENT) the library retries the
// pod's socket by itself. Either way no API call is needed.
//
// Features: the checksum and segmentation offloads are not offered
// (kNoOffloads): the peer sends complete frames and takes complete ones,
// so every stage sees a frame as it is on a wire.
#include <rte_vhost.h>

#include <climits>
#include <map>
#include <mutex>

#include "api_args.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/dp/vhost_io.hpp"
#include "fwd/util/registry.hpp"
#include "fwd/vhost/pod_port.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

namespace vu = dp::vhost_user;

// Virtio-net feature bits (virtio 1.1, 5.1.3): the offloads, both ways.
constexpr uint64_t kNoOffloads =
    (1ULL << 0) |                                 // VIRTIO_NET_F_CSUM
    (1ULL << 1) |                                 // VIRTIO_NET_F_GUEST_CSUM
    (1ULL << 7) | (1ULL << 8) | (1ULL << 9) |     // GUEST_TSO4, GUEST_TSO6, GUEST_ECN
    (1ULL << 10) |                                // GUEST_UFO
    (1ULL << 11) | (1ULL << 12) | (1ULL << 13) |  // HOST_TSO4, HOST_TSO6, HOST_ECN
    (1ULL << 14);                                 // HOST_UFO

// A registered socket, as the callbacks see it.
struct Device {
    vu::VhostPort *port = nullptr;
    int conn = -1;         // the adopted connection's vid (-1: none)
    uint32_t enabled = 0;  // bit q: its peer enabled ring 2q (our TX queue q)
    bool up = false;       // new_device .. destroy_device
    uint64_t link_events = 0;
};

struct Registry {
    std::mutex mu;
    std::map<std::string, Device> by_path;
    rte_rcu_qsbr *qsbr = nullptr;  // the workers' (Tables::qsbr), set at start
};

Registry &registry() {
    static Registry r;
    return r;
}

// The device of vid's socket; nullptr when none (unregistered meanwhile).
// adopted: only when vid is its adopted connection.
Device *find(int vid, bool adopted = true) {
    char path[PATH_MAX] = {};
    if (rte_vhost_get_ifname(vid, path, sizeof(path)) != 0) {
        return nullptr;
    }
    auto &m = registry().by_path;
    auto it = m.find(path);
    if (it == m.end() || (adopted && it->second.conn != vid)) {
        return nullptr;
    }
    return &it->second;
}

// A peer connected: adopted when the socket has none, with no TX queue
// enabled yet; refused (the library closes it) when it has one.
int on_new_connection(int vid) {
    std::lock_guard lk(registry().mu);
    Device *d = find(vid, false);
    if (d == nullptr || d->conn >= 0) {
        return -1;
    }
    d->conn = vid;
    d->enabled = 0;
    vu::publish_tx_queues(*d->port, 0);
    return 0;
}

void on_destroy_connection(int vid) {
    std::lock_guard lk(registry().mu);
    if (Device *d = find(vid)) {
        d->conn = -1;
        d->enabled = 0;
        vu::publish_tx_queues(*d->port, 0);
    }
}

int on_vring_state_changed(int vid, uint16_t ring, int enable) {
    std::lock_guard lk(registry().mu);
    Device *d = find(vid);
    if (d == nullptr || ring % 2 != 0 || ring / 2 >= d->port->queues) {
        return 0;  // an RX ring of the peer (ours to read: always polled), or one we lack
    }
    const uint32_t bit = 1u << (ring / 2);
    d->enabled = enable != 0 ? d->enabled | bit : d->enabled & ~bit;
    vu::publish_tx_queues(*d->port, d->enabled);
    return 0;
}

int on_new_device(int vid) {
    std::lock_guard lk(registry().mu);
    Device *d = find(vid);
    if (d == nullptr) {
        return -1;
    }
    // The workers poll: no kick from the peer for each burst it sends.
    const uint16_t rings = rte_vhost_get_vring_num(vid);
    for (uint16_t r = 0; r < rings; r++) {
        rte_vhost_enable_guest_notification(vid, r, 0);
    }
    d->up = true;
    d->link_events++;
    d->port->vid.store(vid, std::memory_order_release);
    return 0;
}

void on_destroy_device(int vid) {
    std::lock_guard lk(registry().mu);
    Device *d = find(vid);
    if (d == nullptr) {
        return;
    }
    d->port->vid.store(-1, std::memory_order_seq_cst);
    // No worker is inside a burst on vid once every one has passed a
    // quiescent state (or is offline): then the library may free it.
    if (registry().qsbr != nullptr) {
        rte_rcu_qsbr_synchronize(registry().qsbr, RTE_QSBR_THRID_INVALID);
    }
    d->up = false;
    d->link_events++;
}

const rte_vhost_device_ops kOps = [] {
    rte_vhost_device_ops o{};
    o.new_device = on_new_device;
    o.destroy_device = on_destroy_device;
    o.vring_state_changed = on_vring_state_changed;
    o.new_connection = on_new_connection;
    o.destroy_connection = on_destroy_connection;
    return o;
}();

struct VhostState {
    std::string socket;
    bool client = false;
    uint16_t queues = 1;            // queue pairs
    vu::VhostPort *port = nullptr;  // the driver's ctx; freed by detach
    bool registered = false;        // with the library (driver_register .. unregister)
    bool soft = false;              // add_soft_port returned, remove_soft_port not yet
    bool leaked = false;            // a stuck worker may still use port: never freed
};

json queue_list(uint32_t enabled, uint16_t queues) {
    json out = json::array();
    for (uint16_t q = 0; q < queues; q++) {
        if ((enabled & (1u << q)) != 0) {
            out.push_back(q);
        }
    }
    return out;
}

class VhostKind final : public PortKind {
  public:
    explicit VhostKind(ControlContext &ctx) : ctx_(ctx) {}

    std::vector<std::string> args() const override {
        return {"vhost_socket", "vhost_mode", "vhost_queues"};
    }
    std::vector<std::string> fields() const override {
        return {"vhost_socket", "vhost_queues", "vhost_tx_queues_enabled"};
    }
    bool needs_netns() const override { return false; }
    bool needs_mac() const override { return true; }
    bool shared_port() const override { return false; }
    bool pod_interface() const override { return false; }

    void start() override { registry().qsbr = ctx_.tables().qsbr(); }

    void check(Endpoint &e, const json &args, const Endpoints &) override {
        auto mode = get_str(args, "vhost_mode", false, "server");
        if (mode != "server" && mode != "client") {
            bad("vhost_mode must be 'server' or 'client', got '" + mode + "'");
        }
        VhostState st;
        st.client = mode == "client";
        st.socket = get_str(args, "vhost_socket", false, ctx_.cfg().run_dir + "/" + e.id + ".sock");
        if (auto it = args.find("vhost_queues"); it != args.end() && !it->is_null()) {
            if (!it->is_number_integer() || *it < 1 || *it > vu::kMaxQueues) {
                bad("vhost_queues must be an integer from 1 to " + std::to_string(vu::kMaxQueues) +
                    ", got " + it->dump());
            }
            st.queues = it->get<uint16_t>();
        }
        try {
            vhost::check_socket_path(st.socket);
        } catch (const std::exception &ex) {
            bad(ex.what());
        }
        e.state = st;
    }

    void attach(Endpoint &e) override {
        auto &st = std::any_cast<VhostState &>(e.state);
        auto port = std::make_unique<vu::VhostPort>();
        port->queues = st.queues;
        try {
            register_socket(st, port.get());
        } catch (const std::exception &ex) {
            throw ApiError("invalid_argument",
                           std::string("cannot create the pod port: ") + ex.what());
        }
        PortsModule::SoftPort sp;
        sp.name = "vhost-user:" + e.id;
        sp.driver = vu::driver();
        sp.ctx = port.get();
        sp.mac = net::kCalicoGatewayMac;
        sp.role = dp::PortRole::kPod;
        sp.tx_offloads = 0;  // no offload negotiated: complete frames to the peer
        const std::string path = st.socket;
        const vu::VhostPort *counters = port.get();
        sp.stats = [path, counters] { return port_json(path, *counters); };
        try {
            e.port_id = ctx_.need<PortsModule>().add_soft_port(std::move(sp));
        } catch (...) {
            unregister_socket(st);
            throw;
        }
        st.port = port.release();
        st.soft = true;
        e.rx_queues = st.queues;
    }

    // Each queue on its own worker while there are enough. e.worker: queue 0's.
    void activate(Endpoint &e) override {
        e.worker = ctx_.spread_rx_queues(e.port_id, e.rx_queues);
    }

    // No lookup returns the routes any more: no worker polls or sends to the
    // port once this returns (or the port is kept for ever).
    void deactivate(Endpoint &e) override {
        if (auto *st = std::any_cast<VhostState>(&e.state)) {
            release(e, *st);
        }
    }

    void detach(Endpoint &e, Detach) override {
        auto *st = std::any_cast<VhostState>(&e.state);
        if (st == nullptr || st->port == nullptr) {
            return;
        }
        release(e, *st);
        // The library lets go of the peer (destroy_device on the control
        // thread) and, for a server, removes the socket file.
        unregister_socket(*st);
        if (st->leaked) {
            st->port = nullptr;  // a stuck worker may still read it
            return;
        }
        delete st->port;
        st->port = nullptr;
    }

    json stats(const Endpoint &e) const override {
        const auto *st = std::any_cast<VhostState>(&e.state);
        if (st == nullptr || st->port == nullptr) {
            return nullptr;
        }
        return port_json(st->socket, *st->port);
    }

    void describe(const Endpoint &e, json &j) const override {
        if (const auto *st = std::any_cast<VhostState>(&e.state)) {
            j["vhost_socket"] = st->socket;
            j["vhost_queues"] = st->queues;
            std::lock_guard lk(registry().mu);
            auto it = registry().by_path.find(st->socket);
            j["vhost_tx_queues_enabled"] =
                queue_list(it == registry().by_path.end() ? 0 : it->second.enabled, st->queues);
        }
    }

  private:
    // Registers the socket with the library, its callbacks and features, and
    // starts it (a server listens, a client connects or keeps trying).
    // Throws with the step that failed; nothing is left registered then.
    static void register_socket(VhostState &st, vu::VhostPort *port) {
        const char *path = st.socket.c_str();
        if (!st.client) {
            vhost::prepare_server_socket(st.socket, "vhost-user pod");
        }
        {
            std::lock_guard lk(registry().mu);
            if (!registry().by_path.emplace(st.socket, Device{port}).second) {
                throw std::runtime_error("socket " + st.socket + " is another pod's");
            }
        }
        const uint64_t flags = st.client ? RTE_VHOST_USER_CLIENT : 0;
        std::string step;
        if (rte_vhost_driver_register(path, flags) != 0) {
            step = "register";
        } else {
            st.registered = true;
            if (rte_vhost_driver_disable_features(path, kNoOffloads) != 0) {
                step = "disable the offload features";
            } else if (rte_vhost_driver_callback_register(path, &kOps) != 0) {
                step = "register the callbacks";
            } else if (rte_vhost_driver_start(path) != 0) {
                step = st.client ? "start (client)" : "listen";
            }
        }
        if (!step.empty()) {
            unregister_socket(st);
            throw std::runtime_error("vhost-user socket " + st.socket + ": " + step + " failed");
        }
    }

    static void unregister_socket(VhostState &st) {
        if (st.registered) {
            rte_vhost_driver_unregister(st.socket.c_str());
            st.registered = false;
        }
        std::lock_guard lk(registry().mu);
        registry().by_path.erase(st.socket);
    }

    static json port_json(const std::string &path, const vu::VhostPort &p) {
        bool up = false;
        uint64_t events = 0;
        {
            std::lock_guard lk(registry().mu);
            auto it = registry().by_path.find(path);
            if (it != registry().by_path.end()) {
                up = it->second.up;
                events = it->second.link_events;
            }
        }
        uint64_t rx = 0, rx_bytes = 0, tx = 0, tx_bytes = 0;
        json rxq = json::array(), txq = json::array();
        for (uint16_t q = 0; q < p.queues; q++) {
            const auto &c = p.q[q];
            const uint64_t r = c.rx_packets.load(std::memory_order_relaxed);
            const uint64_t t = c.tx_packets.load(std::memory_order_relaxed);
            rx += r;
            tx += t;
            rx_bytes += c.rx_bytes.load(std::memory_order_relaxed);
            tx_bytes += c.tx_bytes.load(std::memory_order_relaxed);
            rxq.push_back(r);
            txq.push_back(t);
        }
        return json{{"rx_packets", rx},
                    {"rx_bytes", rx_bytes},
                    {"tx_packets", tx},
                    {"tx_bytes", tx_bytes},
                    {"rx_queue_packets", rxq},
                    {"tx_queue_packets", txq},
                    {"link", json{{"up", up}, {"events", events}}}};
    }

    void release(Endpoint &e, VhostState &st) {
        if (!st.soft) {
            return;
        }
        st.leaked = !ctx_.need<PortsModule>().remove_soft_port(e.port_id);
        st.soft = false;
    }

    ControlContext &ctx_;
};

}  // namespace

FWD_ON_LOAD(register_port_kind<VhostKind>("vhost-user"));

}  // namespace fwd::control
