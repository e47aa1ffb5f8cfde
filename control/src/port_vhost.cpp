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
    uint16_t queues = 1;  // queue pairs
};

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

    void check(Endpoint &e, const json &args, const Endpoints &) override {
        auto mode = get_str(args, "vhost_mode", false, "server");
        if (mode != "server" && mode != "client") {
            bad("vhost_mode must be 'server' or 'client', got '" + mode + "'");
        }
        VhostState st;
        st.client = mode == "client";
        st.socket = get_str(args, "vhost_socket", false, ctx_.cfg().run_dir + "/" + e.id + ".sock");
        if (auto it = args.find("vhost_queues"); it != args.end() && !it->is_null()) {
            if (!it->is_number_integer() || *it < 1 || *it > dp::kMaxPortTxQueues) {
                bad("vhost_queues must be an integer from 1 to " +
                    std::to_string(dp::kMaxPortTxQueues) + ", got " + it->dump());
            }
            st.queues = it->get<uint16_t>();
        }
        e.state = st;
    }

    void attach(Endpoint &e) override {
        auto &st = std::any_cast<VhostState &>(e.state);
        vhost::PortSpec spec;
        spec.token = "p" + std::to_string(next_token_++);
        spec.kind = vhost::PortKind::kVhostUser;
        // vhost_queues queue pairs (default one: what every virtio peer
        // enables). The peer may enable fewer: the workers send on the ones it
        // did (PortsModule::share_tx_queues), each under its lock.
        spec.rx_queues = st.queues;
        spec.tx_queues = st.queues;
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
        e.rx_queues = st.queues;
        ctx_.need<PortsModule>().share_tx_queues(e.port_id, st.queues);
        dp::PortState &ps = ctx_.tables().port_mut(e.port_id);
        ps.mac = net::kCalicoGatewayMac.bytes();
        ps.vlan = 0;
        ps.role.store(dp::PortRole::kPod, std::memory_order_release);
    }

    // Each queue on its own worker while there are enough. e.worker: queue 0's.
    void activate(Endpoint &e) override {
        e.worker = ctx_.spread_rx_queues(e.port_id, e.rx_queues);
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
        json rxq = json::array(), txq = json::array();
        for (uint16_t q = 0; q < e.rx_queues && q < RTE_ETHDEV_QUEUE_STAT_CNTRS; q++) {
            rxq.push_back(st.q_ipackets[q]);
            txq.push_back(st.q_opackets[q]);
        }
        return json{{"rx_packets", st.ipackets}, {"rx_bytes", st.ibytes},
                    {"tx_packets", st.opackets}, {"tx_bytes", st.obytes},
                    {"rx_missed", st.imissed},   {"tx_errors", st.oerrors},
                    {"rx_queue_packets", rxq},   {"tx_queue_packets", txq}};
    }

    void describe(const Endpoint &e, json &j) const override {
        if (const auto *st = std::any_cast<VhostState>(&e.state)) {
            j["vhost_socket"] = st->socket;
            j["vhost_queues"] = st->queues;
            j["vhost_tx_queues_enabled"] = ctx_.need<PortsModule>().enabled_tx_queues(e.port_id);
        }
    }

  private:
    ControlContext &ctx_;
    uint64_t next_token_ = 1;
};

}  // namespace

FWD_ON_LOAD(register_port_kind<VhostKind>("vhost-user"));

}  // namespace fwd::control
