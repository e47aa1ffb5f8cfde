// The "vhost-user" port driver: a DPDK or VM pod's vhost-user device,
// driven through librte_vhost's own API (rte_vhost_dequeue_burst /
// rte_vhost_enqueue_burst) as a soft port (tables.hpp kFirstSoftPort,
// pipeline.hpp PortDriverDef): no net_vhost ethdev per pod, so no 32-port
// cap (RTE_MAX_ETHPORTS of Debian's DPDK). control/port_vhost.cpp owns the
// socket, the device callbacks and the VhostPort.
//
// The device comes and goes with its peer: the library's new_device
// callback stores its vid, destroy_device stores -1 and returns only after
// an RCU grace period of the workers (Tables::qsbr), so no worker is still
// inside a burst on the departed vid when the library frees it. A worker
// reads the vid once per burst.
//
// Queues: queue pair q is vrings 2q (the peer's RX: our TX) and 2q + 1 (the
// peer's TX: our RX). RX queue q is polled by the one worker that owns it.
// TX: the peer may enable fewer pairs than the port has and change its mind
// at any time (a VM's guest starts with one until `ethtool -L`); the
// vring_state_changed callback publishes the enabled ones (txq, entries
// before the count, release) and worker w sends on the (w mod count)-th.
// Two workers may send on one queue: librte_vhost serialises a vring's
// users with its own lock (vq->access_lock) and refuses a vring the peer
// disabled (the burst is then counted tx_queue_full).
//
// Offloads: none negotiated (the control side disables the checksum and
// segmentation features): the peer sends complete frames, the worker fills
// checksums and cuts GSO frames before they reach this driver
// (tx_offloads 0).
//
// Packet path rules: no heap, no exceptions, no logging. Drops: port_down
// (nothing connected, or no TX queue enabled), tx_queue_full (the peer's
// ring is full: the worker's refused()).
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <atomic>
#include <cstdint>

namespace fwd::dp::vhost_user {

// Queue pairs of one port (endpoint.add vhost_queues).
inline constexpr uint16_t kMaxQueues = 8;

// One vhost-user pod port (PortState::driver_ctx). [C] the control thread
// makes it before the port's role is set and frees it after
// remove_soft_port and rte_vhost_driver_unregister; [V] the library's
// callbacks (its event thread, or the control thread inside unregister)
// write vid and the TX map; [W] workers read them once per burst.
struct alignas(64) VhostPort {
    uint16_t queues = 1;  // queue pairs; [C] before the role
    std::atomic<int> vid{-1};
    std::atomic<uint8_t> txq_count{0};
    std::array<std::atomic<uint8_t>, kMaxQueues> txq{};
    // Per queue pair: RX by its one polling worker, TX by any sender
    // (relaxed adds, one per burst).
    struct alignas(64) QueueCounters {
        std::atomic<uint64_t> rx_packets{0};
        std::atomic<uint64_t> rx_bytes{0};
        std::atomic<uint64_t> tx_packets{0};
        std::atomic<uint64_t> tx_bytes{0};
    };
    std::array<QueueCounters, kMaxQueues> q{};
};

uint8_t driver();  // PortState::driver of a vhost-user port

// The TX map from a bitmask of enabled queues (bit q: pair q's guest RX
// ring). [V] only.
void publish_tx_queues(VhostPort &p, uint32_t enabled);

}  // namespace fwd::dp::vhost_user
