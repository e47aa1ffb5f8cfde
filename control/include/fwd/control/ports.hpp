// The "ports" module: the uplink port and the link state of every port.
//
// The uplink (any DPDK device, from the config) is made at start, its RX
// queues handed to the workers the config names, and destroyed at stop. Link
// changes of every port arrive as ethdev events on a ring (the interrupt
// thread is its one producer) and are counted per port. Pod ports belong to
// their port kind (port_kind.hpp); retire() is how any port is taken out of
// the workers' hands.
#pragma once

#include <rte_ethdev.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fwd/control/module.hpp"
#include "fwd/control/ring.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::control {

class PortsModule final : public Module {
  public:
    static constexpr const char *kName = "ports";
    explicit PortsModule(ControlContext &ctx) : ctx_(ctx) {}

    void start() override;
    // The control thread stops: the interrupt thread no longer waits for room.
    void offline() override { accepting_.store(false, std::memory_order_release); }
    void stop() override;
    bool poll() override;
    void counters(nlohmann::json &out) const override;
    void describe_node(nlohmann::json &out) const override;

    struct Uplink {
        uint16_t port = 0;
        net::MacAddr mac;
        uint16_t vlan = 0;  // 0: untagged
        uint16_t mtu = 0;
    };
    // Set once start() made it.
    const std::optional<Uplink> &uplink() const { return uplink_; }
    // {"up", "events"} of a port.
    nlohmann::json link_json(uint16_t port) const;
    // Takes a port from the workers: role kNone, a grace period, every worker
    // drops its queues and TX buffer of the port, another grace period. Then
    // nothing reads the port and it may be destroyed. Never throws; false
    // when a worker did not acknowledge (it is stuck: reported by its own
    // stats), so it may still touch the port.
    bool retire(uint16_t port);
    // A complete Ethernet frame out of the uplink, through a worker (the
    // workers own the TX queues). False when there is no uplink, no mbuf,
    // or every worker's ring is full.
    bool send_frame(const uint8_t *frame, size_t len);

    // Soft ports (tables.hpp): a port a feature's driver does the I/O of.
    // add_soft_port gives it an id and writes its PortState (driver, ctx,
    // our MAC, the role last, with release); throws ApiError "unavailable"
    // when all kMaxSoftPorts are taken. Its stats callback fills its row of
    // the stats op (rx_packets, tx_packets, ...). remove_soft_port retires
    // it (retire()) and gives the id back; the caller frees ctx afterwards,
    // unless it returns false: a stuck worker may still call the driver with
    // ctx, which then must stay (leaked rather than used after free).
    struct SoftPort {
        std::string name;
        uint8_t driver = 0;
        void *ctx = nullptr;
        net::MacAddr mac;
        dp::PortRole role = dp::PortRole::kPod;
        uint8_t tx_offloads = 0;  // PortState::tx_offloads
        std::function<nlohmann::json()> stats;
    };
    uint16_t add_soft_port(SoftPort p);
    bool remove_soft_port(uint16_t port);
    // Soft ports by id, for the stats op.
    const std::map<uint16_t, SoftPort> &soft_ports() const { return soft_; }

  private:
    // A link change (RTE_ETH_EVENT_INTR_LSC, the one event registered).
    struct PortEvent {
        uint16_t port;
    };
    static int on_port_event(uint16_t port, rte_eth_event_type, void *self, void *ret);

    ControlContext &ctx_;
    std::optional<Uplink> uplink_;
    bool callbacks_ = false;
    struct PortLink {
        bool up = false;
        uint32_t speed_mbps = 0;
        uint64_t events = 0;
    };
    std::map<uint16_t, PortLink> links_;  // control thread
    // The uplink's link state polled every kLinkPollMs into PortState::link_down:
    // not every driver raises link events (net_tap does not).
    static constexpr uint64_t kLinkPollMs = 100;
    uint64_t link_polled_ms_ = 0;  // control thread
    bool poll_uplink_link();
    std::map<uint16_t, SoftPort> soft_;    // control thread
    EventRing<PortEvent, 256> port_ring_;  // ethdev interrupt thread -> control
    std::atomic<bool> accepting_{false};   // main writes; the interrupt thread reads
};

}  // namespace fwd::control
