// The "tun" port driver: a kernel pod's tap device, opened by the daemon
// with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (vhost/ makes it, control/
// port_tun.cpp owns it), read and written by the workers as a soft port
// (tables.hpp kFirstSoftPort, pipeline.hpp PortDriverDef). No ethdev.
//
// Every frame on the fd is preceded by a virtio-net header of kVnetHdrLen
// bytes, which says what the kernel left undone or may leave undone:
//   rx (pod -> us)  NEEDS_CSUM: the L4 checksum is partial -> the offload
//                   flags of offload.hpp (TX_TCP_CKSUM / TX_UDP_CKSUM with
//                   l2/l3/l4_len), GSO_TCPV4 / GSO_TCPV6: a frame of up to
//                   64 KB -> RTE_MBUF_F_TX_TCP_SEG, tso_segsz = gso_size.
//                   One packet for every stage; it is cut only where it
//                   leaves on a port without TSO (Worker::send_soft_offload).
//                   Any other partial checksum (neither TCP's nor UDP's
//                   offset) is filled here.
//   tx (us -> pod)  the header built from the mbuf's offload flags: a GSO
//                   frame goes whole, a partial checksum stays partial (the
//                   pod's kernel takes both as if its own stack had made
//                   them); other frames go with flags 0.
// A frame takes a chain of mbufs from the daemon's pool (2 KB data rooms;
// a 64 KB frame 33 of them): no second pool of 64 KB buffers pinned per
// port. Each worker keeps a stash of enough mbufs for the largest frame
// (RxStash, its slot "tun"), reads into it with one readv and refills it
// with what the frame took.
//
// Packet path rules: no heap, no exceptions, no logging; readv / writev are
// the port's I/O as rte_eth_rx_burst is an ethdev's. Drops: tun_bad_vnet_hdr,
// tun_rx_too_big, tun_tx_error, gso_bad_frame (drop.hpp).
#pragma once

#include <rte_mbuf.h>

#include <array>
#include <atomic>
#include <cstdint>

#include "fwd/dp/counter.hpp"

namespace fwd::dp::tun {

// The virtio-net header as tun reads and writes it with TUNSETVNETHDRSZ 12:
// virtio 1.0's virtio_net_hdr_v1 (struct virtio_net_hdr and num_buffers),
// the header vhost-user ports and QEMU use, so one translation serves both;
// tun ignores num_buffers. Host byte order (legacy virtio on a little-endian
// host, TUNSETVNETLE not needed). Our own definition: <linux/virtio_net.h>
// is not valid C++ (a member named `class`). The header has an iovec of its
// own, so its size costs no copy.
struct VnetHdr {
    uint8_t flags = 0;
    uint8_t gso_type = 0;
    uint16_t hdr_len = 0;      // Ethernet + IP + TCP headers of a GSO frame
    uint16_t gso_size = 0;     // payload bytes per segment
    uint16_t csum_start = 0;   // where the partial checksum's coverage starts
    uint16_t csum_offset = 0;  // where the checksum goes, from csum_start
    uint16_t num_buffers = 0;
};
inline constexpr uint8_t kVnetFlagNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
inline constexpr uint8_t kVnetFlagDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
inline constexpr uint8_t kVnetGsoNone = 0;
inline constexpr uint8_t kVnetGsoTcp4 = 1;
inline constexpr uint8_t kVnetGsoUdp = 3;
inline constexpr uint8_t kVnetGsoTcp6 = 4;
inline constexpr uint8_t kVnetGsoUdpL4 = 5;
inline constexpr uint8_t kVnetGsoEcn = 0x80;
inline constexpr int kVnetHdrLen = sizeof(VnetHdr);
static_assert(kVnetHdrLen == 12);

// The largest frame a tun pod sends: a 64 KB IP packet (GSO frames are
// bounded by the IPv4 total length; BIG TCP is not turned on for the
// device) and its Ethernet header with a VLAN tag.
inline constexpr uint32_t kMaxFrame = 65535 + 18;
// Mbufs in a stash: kMaxFrame and one byte more at the smallest data room
// we accept (1 KB), so a longer frame shows as too long, not cut.
inline constexpr uint16_t kStashMbufs = kMaxFrame / 1024 + 2;
inline constexpr uint16_t kMinDataRoom = 1024;
// The most segments a frame we write may have (the iovec array).
inline constexpr uint16_t kMaxTxSegs = 128;

// Queues of a multi-queue tun pod (vhost::kMaxPodTunQueues).
inline constexpr uint16_t kMaxQueues = 8;

// One tun pod port (PortState::driver_ctx). The control thread fills it
// before the port's role is set and frees it after remove_soft_port.
// Queue q's fd is read by the worker that owns RX queue q of the port
// (each queue one worker); a worker sends through queue index % queues.
struct alignas(64) TunPort {
    // Non-blocking, IFF_VNET_HDR with kVnetHdrLen; [C] owns them.
    std::array<int, kMaxQueues> fds = {-1, -1, -1, -1, -1, -1, -1, -1};
    uint16_t queues = 1;
    int fd(uint16_t q) const { return fds[q < queues ? q : 0]; }
    // [W] the workers polling the port's queues add (one relaxed atomic add
    // per rx call: queues may be polled by different workers), [C] reads.
    struct RxCounter {
        std::atomic<uint64_t> v{0};
        void add(uint64_t n) { v.fetch_add(n, std::memory_order_relaxed); }
        uint64_t get() const { return v.load(std::memory_order_relaxed); }
    };
    RxCounter rx_packets;
    RxCounter rx_bytes;
    RxCounter rx_gso;  // frames with a GSO type
    // Any worker sending to the port: one relaxed add per tx call.
    alignas(64) std::atomic<uint64_t> tx_packets{0};
    std::atomic<uint64_t> tx_bytes{0};
    std::atomic<uint64_t> tx_gso{0};
    std::atomic<uint64_t> tx_errors{0};
};

// A worker's mbufs for the next read (its slot "tun"). [C] sets it up
// before the workers run, [W] uses it.
struct RxStash {
    rte_mempool *pool = nullptr;
    uint16_t room = 0;  // data room of one mbuf
    uint16_t want = 0;  // mbufs one read offers: more than kMaxFrame bytes
    uint16_t n = 0;     // mbufs held, m[0 .. n)
    rte_mbuf *m[kStashMbufs] = {};
};

// False for a pool whose mbufs are smaller than kMinDataRoom.
bool stash_init(RxStash &s, rte_mempool *pool);
void stash_free(RxStash &s);  // returns its mbufs

uint8_t driver();        // PortState::driver of a tun port
uint16_t worker_slot();  // the worker slot holding the RxStash

// The header's requests as offload flags on m (a whole frame in m's chain).
// False when the header cannot be honoured (kTunBadVnetHdr).
bool vnet_to_mbuf(const VnetHdr &h, rte_mbuf *m);
// The header for m. False when m's offload flags do not match its headers.
bool mbuf_to_vnet(rte_mbuf *m, VnetHdr &h);

}  // namespace fwd::dp::tun
