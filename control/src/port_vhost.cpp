// Port kind "vhost-user": DPDK and VM pods. Each pod has a net_vhost port of
// its own on a vhost-user socket; the pod (a VM, or a container running
// virtio-user) connects to it, as client or server.
#include <rte_ethdev.h>

#include "api_args.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/util/registry.hpp"
#include "fwd/vhost/pod_port.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

struct VhostState {
    std::string socket;
    bool client = false;
};

class VhostKind final : public PortKind {
  public:
    explicit VhostKind(ControlContext &ctx) : ctx_(ctx) {}

    std::vector<std::string> args() const override { return {"vhost_socket", "vhost_mode"}; }
    std::vector<std::string> fields() const override { return {"vhost_socket"}; }
    bool needs_netns() const override { return false; }
    bool needs_mac() const override { return true; }
    bool shared_port() const override { return false; }
    bool pod_interface() const override { return false; }

    void check(Endpoint &e, const json &args, const Endpoints &) override {
        auto mode = get_str(args, "vhost_mode", false, "server");
        if (mode != "server" && mode != "client") {
            bad("vhost_mode must be 'server' or 'client', got '" + mode + "'");
        }
        VhostState st;
        st.client = mode == "client";
        st.socket = get_str(args, "vhost_socket", false, ctx_.cfg().run_dir + "/" + e.id + ".sock");
        e.state = st;
    }

    void attach(Endpoint &e) override {
        auto &st = std::any_cast<VhostState &>(e.state);
        vhost::PortSpec spec;
        spec.token = "p" + std::to_string(next_token_++);
        spec.kind = vhost::PortKind::kVhostUser;
        // One queue pair: what every virtio peer enables; workers share its TX queue.
        spec.rx_queues = 1;
        spec.tx_queues = 1;
        spec.pool = ctx_.pool();
        spec.rx_desc = 256;
        spec.tx_desc = 512;
        spec.vhost_socket = st.socket;
        spec.vhost_client = st.client;
        try {
            e.port_id = vhost::create_port(spec).port_id;
        } catch (const std::exception &ex) {
            throw ApiError("invalid_argument",
                           std::string("cannot create the pod port: ") + ex.what());
        }
        e.rx_queues = 1;
        dp::PortState &ps = ctx_.tables().port_mut(e.port_id);
        ps.mac = net::kCalicoGatewayMac.bytes();
        ps.vlan = 0;
        ps.tx_shared = spec.tx_queues < ctx_.workers().size();
        ps.role.store(dp::PortRole::kPod, std::memory_order_release);
    }

    void activate(Endpoint &e) override {
        e.worker = ctx_.least_loaded_worker();
        ctx_.worker_do(e.worker, {dp::WorkerCommand::Kind::kAddRxQueue, e.port_id, 0, 0});
    }

    // No lookup returns the routes any more: take the port from the workers.
    void deactivate(Endpoint &e) override { ctx_.need<PortsModule>().retire(e.port_id); }

    void detach(Endpoint &e, Detach) override {
        try {
            vhost::destroy_port(e.port_id);
        } catch (const std::exception &) {
            // destroy_port attempted every step; what is left is the EAL's.
        }
    }

    json stats(const Endpoint &e) const override {
        rte_eth_stats st{};
        if (rte_eth_stats_get(e.port_id, &st) != 0) {
            return nullptr;
        }
        return json{{"rx_packets", st.ipackets}, {"rx_bytes", st.ibytes},
                    {"tx_packets", st.opackets}, {"tx_bytes", st.obytes},
                    {"rx_missed", st.imissed},   {"tx_errors", st.oerrors}};
    }

    void describe(const Endpoint &e, json &j) const override {
        if (const auto *st = std::any_cast<VhostState>(&e.state)) {
            j["vhost_socket"] = st->socket;
        }
    }

  private:
    ControlContext &ctx_;
    uint64_t next_token_ = 1;
};

}  // namespace

FWD_ON_LOAD(register_port_kind<VhostKind>("vhost-user"));

}  // namespace fwd::control
