// The "neighbors" module: the control thread's slow path on the uplink.
//
//   worker punt ring --neighbor--> NeighborTable::on_frame, then the host tap
//                    --host------> the host tap (the kernel answers)
//                    --resolve---> parked in the NeighborTable for meta.nh's neighbor
//   host tap (kernel) ------------> a worker's command ring (kTx) -> the uplink
//   NeighborTable actions: solicitations out of the uplink (kTx), next hops
//     resolved / unresolved in place, parked packets sent (kTxRouted) or freed.
//
// It owns the next hops of the neighbors routes go via: one per neighbor
// address (kResolve until the table resolves its MAC, then kVia), shared by
// every route through it and reference counted (via_ref / via_unref).
// The control thread never touches a TX queue itself: frames leave through a
// worker (round robin), which owns the queues.
// Ops: neighbor.list.
#pragma once

#include <map>
#include <memory>
#include <optional>

#include "fwd/control/module.hpp"
#include "fwd/control/neighbor.hpp"
#include "fwd/vhost/host_tap.hpp"

namespace fwd::control {

class PortsModule;

class NeighborsModule final : public Module {
  public:
    static constexpr const char *kName = "neighbors";
    explicit NeighborsModule(ControlContext &ctx);

    void start() override;
    void stop() override;
    bool poll() override;
    int wait_fd() const override { return host_ ? host_->fd() : -1; }
    void counters(nlohmann::json &out) const override;
    void describe_node(nlohmann::json &out) const override;
    void describe_tables(nlohmann::json &out) const override;

    // The next hop of a neighbor on the uplink, shared; throws
    // std::runtime_error (no uplink, our own or an unusable address, table
    // full). via_unref gives it back; the last reference frees it after the
    // next grace period.
    uint32_t via_ref(const net::IpAddr &ip);
    void via_unref(const net::IpAddr &ip);
    nlohmann::json list() const;

  private:
    void on_punt(rte_mbuf *m);
    void host_offload(rte_mbuf *m);
    void host_read();
    // True when some worker has more than places free in its command ring.
    bool workers_have_room(size_t places) const;
    bool neighbor_actions();
    void send_frame(const uint8_t *frame, size_t len);

    ControlContext &ctx_;
    PortsModule &ports_;
    std::unique_ptr<NeighborTable> neigh_;
    std::unique_ptr<vhost::HostTap> host_;
    struct ViaNh {
        uint32_t nh;
        uint32_t refs;
        std::optional<net::MacAddr> mac;  // resolved MAC the next hop uses
    };
    std::map<net::IpAddr, ViaNh> via_;  // one kVia/kResolve next hop per neighbor
    std::map<uint32_t, net::IpAddr> via_by_nh_;

    struct Counters {
        uint64_t host_to_kernel = 0;       // punted frames written to the host tap
        uint64_t host_write_errors = 0;    // ... the kernel refused
        uint64_t host_no_tap = 0;          // punted for the host without a host tap
        uint64_t host_from_kernel = 0;     // frames the kernel sent, handed to a worker
        uint64_t host_tx_dropped = 0;      // ... dropped: no mbuf, too big, worker ring full
                                           // (or, but for TCP, nearly full: host_read)
        uint64_t neigh_frames = 0;         // ARP / NA frames seen
        uint64_t neigh_learned = 0;        // ... that updated a neighbor
        uint64_t neigh_solicits = 0;       // ARP requests / NS sent
        uint64_t neigh_queued = 0;         // packets parked for a neighbor
        uint64_t neigh_flushed = 0;        // ... sent once it resolved
        uint64_t neigh_dropped = 0;        // ... dropped (evicted, failed, route gone)
        uint64_t resolve_no_neighbor = 0;  // punted for a next hop that is no neighbor any more
    };
    Counters cnt_;
};

}  // namespace fwd::control
