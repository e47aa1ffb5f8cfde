// Port kind "tun": kernel pods on a tap device of their own, with the
// virtio-net header and offloads (issue 17). The device is made in the
// pod's namespace as its eth0 (Calico's setup: /32, /128, the gateway
// routes; vhost::add_pod_tun) and its fd stays with the daemon; the workers
// read and write it as a soft port (dpdk-fwd/src/tun_io.cpp), so there is
// no ethdev per pod and no 32-port cap: kMaxSoftPorts pods.
//
// Queues: `tun_queues` (endpoint.add; default one per worker, at most
// dp::tun::kMaxQueues): more than one makes a multi-queue tap whose
// queues go to different workers (the least loaded first), so a pod's
// flows, which its kernel spreads over the queues by hash, are read side by
// side, and a ping does not always wait behind a bulk stream's frames.
//
// Offloads asked of the kernel: checksum, TSO4, TSO6. So a pod's TCP
// leaves it in frames of up to 64 KB that cross the dataplane as one packet
// and are cut only where they leave on a port without TSO. Not UFO / USO:
// rte_gso and our segmenter do TCP only, and a UDP GSO frame toward the
// uplink would have nowhere to be cut.
//
// Restarts: the device is persistent, so a daemon killed with -9 leaves the
// pod its eth0 with addresses and routes (frames the pod sends meanwhile are
// dropped by its kernel); the next daemon re-opens it by name (reattach,
// vhost::attach_pod_tun). A stop (SIGTERM) leaves it the same way; detach
// clears the persistence at endpoint.del and at a stop that removes the pods
// (node.shutdown remove_pods).
#include <linux/if_tun.h>
#include <unistd.h>

#include <algorithm>

#include "api_args.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/dp/offload.hpp"
#include "fwd/dp/tun_io.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"
#include "fwd/vhost/netns.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

constexpr unsigned kOffloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
static_assert(dp::tun::kMaxQueues == vhost::kMaxPodTunQueues,
              "a pod's queues: the driver's fds and the taps vhost opens");

struct TunState {
    dp::tun::TunPort *port = nullptr;  // the driver's ctx; freed by detach
    bool registered = false;           // add_soft_port returned, remove_soft_port not yet
    bool leaked = false;               // a stuck worker may still use port: never freed
    unsigned offloads = 0;             // TUN_F_* the kernel took
    unsigned queues = 1;               // asked (check), then opened (a tap keeps its mode)
};

json offload_names(unsigned offloads) {
    json out = json::array();
    const std::pair<unsigned, const char *> names[] = {
        {TUN_F_CSUM, "csum"}, {TUN_F_TSO4, "tso4"}, {TUN_F_TSO6, "tso6"}};
    for (const auto &[bit, name] : names) {
        if ((offloads & bit) != 0) {
            out.push_back(name);
        }
    }
    return out;
}

class TunKind final : public PortKind {
  public:
    static constexpr const char *kName = "tun";
    explicit TunKind(ControlContext &ctx) : ctx_(ctx) {}

    std::vector<std::string> args() const override { return {"tun_queues"}; }
    std::vector<std::string> fields() const override { return {"tun_offloads", "tun_queues"}; }
    bool needs_netns() const override { return true; }
    bool needs_mac() const override { return false; }
    bool shared_port() const override { return false; }
    bool pod_interface() const override { return true; }

    // Each worker's RX stash (tun_io.hpp), in its slot before the workers run.
    void start() override {
        const auto &ws = ctx_.workers();
        stashes_ = std::make_unique<dp::tun::RxStash[]>(ws.size());
        for (size_t i = 0; i < ws.size(); i++) {
            if (!dp::tun::stash_init(stashes_[i], ctx_.pool())) {
                throw std::runtime_error("tun ports: the packet pool's mbufs are under " +
                                         std::to_string(dp::tun::kMinDataRoom) + " bytes");
            }
            ws[i]->set_slot(dp::tun::worker_slot(), &stashes_[i]);
        }
    }

    // After every endpoint is gone: no tun port is polled any more.
    void stop(bool) override {
        if (!stashes_) {
            return;
        }
        const auto &ws = ctx_.workers();
        for (size_t i = 0; i < ws.size(); i++) {
            ws[i]->set_slot(dp::tun::worker_slot(), nullptr);
            dp::tun::stash_free(stashes_[i]);
        }
        stashes_.reset();
    }

    void check(Endpoint &e, const json &args, const Endpoints &) override {
        TunState st;
        st.queues = static_cast<unsigned>(
            std::min<size_t>(std::max<size_t>(ctx_.workers().size(), 1), dp::tun::kMaxQueues));
        if (auto it = args.find("tun_queues"); it != args.end() && !it->is_null()) {
            if (!it->is_number_integer() || *it < 1 || *it > dp::tun::kMaxQueues) {
                bad("tun_queues must be an integer from 1 to " +
                    std::to_string(dp::tun::kMaxQueues) + ", got " + it->dump());
            }
            st.queues = it->get<unsigned>();
        }
        e.state = st;
    }

    void attach(Endpoint &e) override { open_port(e, false); }
    // The pod's tap as the daemon before left it, else a new one.
    void reattach(Endpoint &e) override { open_port(e, true); }

    void open_port(Endpoint &e, bool take_over) {
        TunState st;
        if (const auto *asked = std::any_cast<TunState>(&e.state)) {
            st.queues = asked->queues;
        }
        const vhost::PodIfConfig pc = pod_if_config(e);
        vhost::PodTun dev;
        try {
            if (take_over && vhost::inspect_pod_interface(e.netns, e.ifname).exists) {
                dev = vhost::attach_pod_tun(pc, dp::tun::kVnetHdrLen, kOffloads, st.queues);
                // The device had no carrier while no daemon held it: the pod's
                // entries for the gateway went (or failed) with it. Set again,
                // the pod answers at once instead of after an ARP / ND retry.
                try {
                    vhost::set_pod_gateway_neighbors(pc);
                } catch (const std::exception &ex) {
                    log::warn("endpoint {}: {}", e.id, ex.what());
                }
            } else {
                dev = vhost::add_pod_tun(pc, dp::tun::kVnetHdrLen, kOffloads, true, st.queues);
            }
        } catch (const std::exception &ex) {
            throw ApiError("invalid_argument", ex.what());
        }
        auto port = std::make_unique<dp::tun::TunPort>();
        for (size_t q = 0; q < dev.fds.size(); q++) {
            port->fds[q] = dev.fds[q];
        }
        port->queues = static_cast<uint16_t>(dev.fds.size());
        st.queues = port->queues;
        st.offloads = dev.offloads;
        PortsModule::SoftPort sp;
        sp.name = "tun:" + e.id;
        sp.driver = dp::tun::driver();
        sp.ctx = port.get();
        sp.mac = net::kCalicoGatewayMac;
        sp.role = dp::PortRole::kPod;
        // The pod's kernel takes a partial checksum and a GSO frame whatever
        // offloads it sends with (virtio_net_hdr_to_skb).
        sp.tx_offloads = dp::kPortTxCsum | dp::kPortTxTso;
        const dp::tun::TunPort *counters = port.get();
        sp.stats = [counters] { return port_json(*counters); };
        try {
            e.port_id = ctx_.need<PortsModule>().add_soft_port(std::move(sp));
        } catch (...) {
            vhost::close_pod_tun(dev.fds, take_over);  // a new one goes again
            throw;
        }
        st.port = port.release();
        st.registered = true;
        e.rx_queues = st.queues;
        e.state = st;
    }

    // Each queue on its own worker while there are enough. e.worker: queue 0's.
    void activate(Endpoint &e) override {
        e.worker = ctx_.spread_rx_queues(e.port_id, e.rx_queues);
    }

    // No lookup returns the pod's routes any more: no worker polls or sends
    // to the port once this returns (or the port's ctx is kept for ever).
    void deactivate(Endpoint &e) override {
        if (auto *st = std::any_cast<TunState>(&e.state)) {
            release(e, *st);
        }
    }

    void detach(Endpoint &e, Detach how) override {
        auto *st = std::any_cast<TunState>(&e.state);
        if (st == nullptr || st->port == nullptr) {
            return;
        }
        release(e, *st);
        if (st->leaked) {
            // A stuck worker may still read or write the fd: neither it nor
            // its number is given back (the pod's deletion takes the device).
            st->port = nullptr;
            return;
        }
        // Not kept: the device goes with its last fd.
        vhost::close_pod_tun(
            std::vector<int>(st->port->fds.begin(), st->port->fds.begin() + st->port->queues),
            how == Detach::kKeepPod);
        delete st->port;
        st->port = nullptr;
    }

    json stats(const Endpoint &e) const override {
        const auto *st = std::any_cast<TunState>(&e.state);
        if (st == nullptr || st->port == nullptr) {
            return nullptr;
        }
        return port_json(*st->port);
    }

    void describe(const Endpoint &e, json &j) const override {
        if (const auto *st = std::any_cast<TunState>(&e.state)) {
            j["tun_offloads"] = offload_names(st->offloads);
            j["tun_queues"] = st->queues;
        }
    }

  private:
    static json port_json(const dp::tun::TunPort &p) {
        auto get = [](const std::atomic<uint64_t> &a) { return a.load(std::memory_order_relaxed); };
        return json{{"rx_packets", p.rx_packets.get()}, {"rx_bytes", p.rx_bytes.get()},
                    {"rx_gso", p.rx_gso.get()},         {"tx_packets", get(p.tx_packets)},
                    {"tx_bytes", get(p.tx_bytes)},      {"tx_gso", get(p.tx_gso)},
                    {"tx_errors", get(p.tx_errors)}};
    }

    void release(Endpoint &e, TunState &st) {
        if (!st.registered) {
            return;
        }
        st.leaked = !ctx_.need<PortsModule>().remove_soft_port(e.port_id);
        st.registered = false;
    }

    ControlContext &ctx_;
    std::unique_ptr<dp::tun::RxStash[]> stashes_;
};

}  // namespace

FWD_ON_LOAD(register_port_kind<TunKind>(TunKind::kName));

}  // namespace fwd::control
