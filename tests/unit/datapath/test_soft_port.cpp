// Soft ports (tables.hpp kFirstSoftPort; pipeline.hpp PortDriverDef): ports
// whose I/O a feature's driver does instead of an ethdev. A test driver,
// registered in the test's own PipelineRegistry, reads and writes rte_rings
// (PortState::driver_ctx points at a SoftIo holding them) and records its
// calls. Two soft pods, one at kFirstSoftPort and one at the last id
// (kMaxPorts - 1), each with a kPod next hop and /32 + /128 routes, beside
// the lab's pods and uplink.
//
// What is checked: packets routed to a soft port leave through its driver's
// tx; what its driver's rx returns (the worker owning the queue) is forwarded
// and answered like any port's; a short tx; one flush for every port with
// packets (the pending list), a buffer filled mid-burst flushed once more,
// each packet once; kDropPort; role kNone; no driver; taps; the registry's
// checks; an idle worker blocking on its queues' wake fds (PortDriverDef
// wake_fd) and woken by a frame, a command and stop.
#include <rte_errno.h>
#include <rte_ring.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/vhost_io.hpp"
#include "fwd/net/addr.hpp"
#include "lab.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint16_t kArpRequest = 1;
constexpr uint16_t kArpReply = 2;
constexpr uint8_t kEchoReply4 = 0;
constexpr uint8_t kEchoReply6 = 129;
constexpr uint8_t kNdNa = 136;
constexpr uint8_t kOptSourceLl = 1;
constexpr uint8_t kOptTargetLl = 2;
constexpr uint16_t kSoftMtu = 1500;
constexpr unsigned kSoftRingSize = 256;

// The two soft ports: the first id and the last one.
constexpr uint16_t kSoftA = kFirstSoftPort;
constexpr uint16_t kSoftB = kMaxPorts - 1;

inline const Mac kSoftAMac = {0x02, 0x00, 0x0a, 0x41, 0x00, 0x20};
inline const Mac kSoftBMac = {0x02, 0x00, 0x0a, 0x41, 0x00, 0x21};
inline const uint32_t kSoftA4 = ip4("10.65.0.20");
inline const uint32_t kSoftB4 = ip4("10.65.0.21");
inline const Ip6 kSoftA6 = ip6("fd00:65::20");
inline const Ip6 kSoftB6 = ip6("fd00:65::21");
inline const Ip6 kSoftALl6 = ip6("fe80::20");

// One call of the test driver.
struct IoCall {
    uint16_t port;
    uint16_t queue;
    uint16_t n;     // packets offered (tx) or room given (rx)
    uint16_t done;  // packets returned
};

// The test driver's state for one soft port (its PortState::driver_ctx).
struct SoftIo {
    rte_ring *rx = nullptr;          // what the "device" received, for the driver's rx
    rte_ring *tx = nullptr;          // what the driver's tx sent
    uint16_t tx_limit = UINT16_MAX;  // the most one tx call takes
    uint16_t tx_self_drop = 0;       // packets tx takes and drops itself (as tun's write error)
    int wake = -1;  // an eventfd the "device" sets while rx has frames (wake_fd); -1: none
    std::vector<IoCall> rx_calls;
    std::vector<IoCall> tx_calls;
};

SoftIo *io_of(Worker &w, uint16_t port) {
    auto *io = static_cast<SoftIo *>(w.tables().port(port).driver_ctx);
    if (io == nullptr) {
        ADD_FAILURE() << "driver called for port " << port << " without a driver_ctx";
    }
    return io;
}

uint16_t ring_rx(Worker &w, uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n) {
    SoftIo *io = io_of(w, port);
    if (io == nullptr) {
        return 0;
    }
    auto got = static_cast<uint16_t>(
        rte_ring_dequeue_burst(io->rx, reinterpret_cast<void **>(pkts), n, nullptr));
    io->rx_calls.push_back(IoCall{port, queue, n, got});
    if (io->wake >= 0 && rte_ring_empty(io->rx) != 0) {
        uint64_t v = 0;
        EXPECT_TRUE(read(io->wake, &v, sizeof(v)) == sizeof(v) || errno == EAGAIN);
    }
    return got;
}

int ring_wake_fd(void *ctx, uint16_t) {
    return ctx != nullptr ? static_cast<SoftIo *>(ctx)->wake : -1;
}

uint16_t ring_tx(Worker &w, uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n) {
    SoftIo *io = io_of(w, port);
    if (io == nullptr) {
        return 0;
    }
    auto take = std::min(n, io->tx_limit);
    uint16_t own = 0;
    for (; own < take && io->tx_self_drop != 0; own++, io->tx_self_drop--) {
        w.drop(pkts[own], DropReason::kTunTxError);
    }
    auto sent = static_cast<uint16_t>(rte_ring_enqueue_burst(
        io->tx, reinterpret_cast<void *const *>(pkts + own), take - own, nullptr));
    io->tx_calls.push_back(IoCall{port, queue, n, sent});
    return static_cast<uint16_t>(own + sent);
}

// A second driver, for the registry checks: never called.
uint16_t other_io(Worker &, uint16_t, uint16_t, rte_mbuf **, uint16_t) {
    ADD_FAILURE() << "other_io called";
    return 0;
}

// One burst a tap saw.
struct TapSeen {
    TapPoint point;
    uint16_t port;
    uint16_t n;
    std::vector<Mac> dst;  // destination MAC of each frame
};
std::vector<TapSeen> g_taps;

template <TapPoint P>
void tap(Worker &, uint16_t port, rte_mbuf *const *pkts, uint16_t n) {
    TapSeen t{P, port, n, {}};
    for (uint16_t i = 0; i < n; i++) {
        Mac d;
        std::memcpy(d.data(), rte_pktmbuf_mtod(pkts[i], const uint8_t *), 6);
        t.dst.push_back(d);
    }
    g_taps.push_back(std::move(t));
}

PortDriverDef ring_driver(std::string name = "ring") {
    return PortDriverDef{std::move(name), &ring_rx, &ring_tx, &ring_wake_fd};
}

// A device whose queue wakes a blocked worker only once armed, as a
// vhost-user queue does (PortArmFn): SoftIo::wake is then its "kick" eventfd.
struct ArmLog {
    int arms = 0;
    int given = 0;  // arms that gave the fd (each must be disarmed)
    int disarms = 0;
    int fired = 0;         // disarms told the fd was readable
    bool armed = false;    // between an arm that gave the fd and its disarm
    int answer = 0;        // what arm gives instead of the fd (0: the fd)
    bool drained = false;  // the last fired disarm read the eventfd
};
ArmLog g_arm;

int ring_arm(void *ctx, uint16_t) {
    g_arm.arms++;
    auto *io = static_cast<SoftIo *>(ctx);
    if (g_arm.answer != 0) {
        return g_arm.answer;
    }
    if (rte_ring_count(io->rx) != 0) {
        return kArmBusy;
    }
    g_arm.armed = true;
    g_arm.given++;
    return io->wake;
}

void ring_disarm(void *, uint16_t, int fd, bool fired) {
    g_arm.disarms++;
    g_arm.armed = false;
    if (fired) {
        g_arm.fired++;
        uint64_t v = 0;
        g_arm.drained = read(fd, &v, sizeof(v)) == sizeof(v);
    }
}

PortDriverDef armed_ring_driver() {
    return PortDriverDef{"armed_ring", &ring_rx, &ring_tx, nullptr, &ring_arm, &ring_disarm};
}

// The message of the std::invalid_argument f throws; "" (and a failure) when none.
template <typename F>
std::string invalid(F &&f) {
    try {
        f();
    } catch (const std::invalid_argument &e) {
        return e.what();
    } catch (const std::exception &e) {
        ADD_FAILURE() << "not std::invalid_argument: " << e.what();
        return "";
    }
    ADD_FAILURE() << "accepted";
    return "";
}

// The frames in a ring, parsed (the mbufs freed).
std::vector<Parsed> drain_ring(rte_ring *r) {
    std::vector<Parsed> out;
    void *objs[64];
    unsigned n;
    while ((n = rte_ring_dequeue_burst(r, objs, 64, nullptr)) > 0) {
        for (unsigned i = 0; i < n; i++) {
            auto *m = static_cast<rte_mbuf *>(objs[i]);
            Bytes b(m->pkt_len);
            const void *p = rte_pktmbuf_read(m, 0, m->pkt_len, b.data());
            if (p != nullptr && p != b.data() && !b.empty()) {
                std::memcpy(b.data(), p, m->pkt_len);
            }
            out.push_back(parse(b));
            rte_pktmbuf_free(m);
        }
    }
    return out;
}

uint16_t sport_of(const Parsed &p) {
    auto l4 = p.l4();
    return l4.size() >= 2 ? static_cast<uint16_t>((l4[0] << 8) | l4[1]) : 0;
}

// A frame forwarded to a soft pod: its Ethernet header, the packet with one
// TTL / hop limit less.
void check_to_soft(const Parsed &p, const Mac &pod_mac, const PacketBuilder &sent) {
    EXPECT_EQ(p.eth.dst, pod_mac);
    EXPECT_EQ(p.eth.src, kGwMac);
    Bytes want = l3_of(sent);
    bool v6 = (want[0] >> 4) == 6;
    EXPECT_EQ(p.eth.type, v6 ? kTypeIp6 : kTypeIp4);
    if (v6) {
        ASSERT_TRUE(p.ip6.has_value());
        EXPECT_EQ(p.ip6->hop_limit, 63);
        want[7]--;
    } else {
        ASSERT_TRUE(p.ip4.has_value());
        EXPECT_EQ(p.ip4->ttl, 63);
        EXPECT_TRUE(p.ip4->header_checksum_ok);
        want[8]--;
        want[10] = p.frame[14 + 10];  // checksum: checked above
        want[11] = p.frame[14 + 11];
    }
    auto l3 = p.l3();
    EXPECT_TRUE(std::equal(l3.begin(), l3.end(), want.begin(), want.end()))
        << "not the packet sent with TTL / hop limit - 1";
}

class SoftPorts : public DatapathTest {
  protected:
    void SetUp() override {
        g_taps.clear();
        DatapathTest::SetUp();
        for (int i = 0; i < 2; i++) {
            SoftIo &io = i == 0 ? io_a_ : io_b_;
            std::string base = "dpts" + std::to_string(i);
            io.rx = rte_ring_create((base + "rx").c_str(), kSoftRingSize, 0,
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
            io.tx = rte_ring_create((base + "tx").c_str(), kSoftRingSize, 0,
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
            ASSERT_NE(io.rx, nullptr) << rte_strerror(rte_errno);
            ASSERT_NE(io.tx, nullptr) << rte_strerror(rte_errno);
        }
        PipelineRegistry r;
        driver_ = r.add_port_driver(ring_driver());
        use(r);
        add_soft_pod(kSoftA, kSoftAMac, &io_a_, kSoftA4, kSoftA6);
        add_soft_pod(kSoftB, kSoftBMac, &io_b_, kSoftB4, kSoftB6);
    }

    void TearDown() override {
        // Out of the worker's buffers first, then out of the rings, so the
        // fixture's leak check counts every mbuf.
        worker().flush_tx();
        Tables &t = lab().tables();
        for (const auto &p : p4_) {
            EXPECT_EQ(t.del4(p), 0);
        }
        for (const auto &p : p6_) {
            EXPECT_EQ(t.del6(p), 0);
        }
        for (uint32_t id : nhs_) {
            t.nh_free(id);
        }
        for (uint16_t port : {kSoftA, kSoftB}) {
            PortState &ps = t.port_mut(port);
            ps.role.store(PortRole::kNone, std::memory_order_release);
            ps.driver = 0;
            ps.driver_ctx = nullptr;
            ps.mac = {};
        }
        for (SoftIo *io : {&io_a_, &io_b_}) {
            for (rte_ring *r : {io->rx, io->tx}) {
                if (r != nullptr) {
                    drain_ring(r);
                }
            }
        }
        DatapathTest::TearDown();
        for (SoftIo *io : {&io_a_, &io_b_}) {
            rte_ring_free(io->rx);
            rte_ring_free(io->tx);
        }
    }

    // Freezes r and hands the result to a fresh worker.
    void use(const PipelineRegistry &r) {
        frozen_.push_back(r.freeze());
        use_pipeline(&frozen_.back());
    }

    // As the control side does it (ports.cpp add_soft_port, then the routes):
    // PortState with the role last, the next hop, the routes publishing it.
    void add_soft_pod(uint16_t port, const Mac &mac, SoftIo *io, uint32_t a4, const Ip6 &a6) {
        Tables &t = lab().tables();
        PortState &ps = t.port_mut(port);
        ps.driver = driver_;
        ps.driver_ctx = io;
        ps.mac = kGwMac;
        ps.vlan = 0;
        ps.role.store(PortRole::kPod, std::memory_order_release);
        NextHop nh{};
        nh.kind = NhKind::kPod;
        nh.port = port;
        nh.dst_mac = mac;
        nh.src_mac = kGwMac;
        nh.mtu = kSoftMtu;
        uint32_t id = t.nh_alloc(nh);
        ASSERT_NE(id, kNhInvalid);
        nhs_.push_back(id);
        net::Prefix4 p4{net::Ip4Addr::from_host(a4), 32};
        net::Prefix6 p6{net::Ip6Addr::from_bytes(a6.data()), 128};
        ASSERT_EQ(t.add4(p4, id), 0);
        p4_.push_back(p4);
        ASSERT_EQ(t.add6(p6, id), 0);
        p6_.push_back(p6);
    }

    // Gives the worker the soft port's RX queue (as the control side would).
    void own_rx(uint16_t port, uint16_t queue) {
        ASSERT_NE(worker().post({WorkerCommand::Kind::kAddRxQueue, port, queue, 0}), 0u);
        worker().drain_commands();
    }
    // A frame the soft pod sends: on its "device" ring, for the driver's rx.
    void put_rx(SoftIo &io, uint16_t port, const PacketBuilder &b) {
        rte_mbuf *m = b.mbuf(lab().pool(), port);
        ASSERT_NE(m, nullptr);
        ASSERT_EQ(rte_ring_enqueue(io.rx, m), 0);
    }
    // Runs the packets (each with the port it came in on) through one
    // process() call, without a flush.
    void feed(const std::vector<std::pair<uint16_t, PacketBuilder>> &pkts) {
        std::vector<rte_mbuf *> mbufs;
        for (const auto &[port, b] : pkts) {
            rte_mbuf *m = b.mbuf(lab().pool(), port);
            ASSERT_NE(m, nullptr);
            mbufs.push_back(m);
        }
        worker().process(mbufs.data(), static_cast<uint16_t>(mbufs.size()));
    }

    SoftIo io_a_;
    SoftIo io_b_;
    uint8_t driver_ = 0;

  private:
    std::deque<Pipeline> frozen_;  // outlive the worker: destroyed after TearDown
    std::vector<uint32_t> nhs_;
    std::vector<net::Prefix4> p4_;
    std::vector<net::Prefix6> p6_;
};

PacketBuilder from_soft_a() {
    return std::move(PacketBuilder().eth(kSoftAMac, kGwMac));
}

// ---------------------------------------------------------------------------------------------
// Packets to a soft port.

// Guards: send() dispatching a port >= kFirstSoftPort to its driver's tx
// (with the worker's index as the queue), TX buffers sized for every soft id
// (the last one included), l2_rewrite's header for a soft pod.
TEST_F(SoftPorts, RoutedPacketsLeaveThroughTheDriversTx) {
    EXPECT_EQ(driver_, 1) << "the first driver is 1: 0 means an ethdev";
    auto a4 = from_pod_a().ip4(kPodA4, kSoftA4).udp(1, 2).payload(20);
    auto a6 = from_pod_a().ip6(kPodA6, kSoftA6).udp(3, 4).payload(20);
    auto b4 = from_pod_a().ip4(kPodA4, kSoftB4).tcp(5, 6).payload(7);
    auto b6 = from_pod_a().ip6(kPodA6, kSoftB6).tcp(7, 8).payload(7);
    Sent out = run({{Side::kPodA, a4}, {Side::kPodA, a6}, {Side::kPodA, b4}, {Side::kPodA, b6}});
    EXPECT_EQ(drops(), want({}));
    EXPECT_TRUE(out.frames.empty()) << "nothing out of an ethdev";
    EXPECT_EQ(tx_packets(), 4u);

    std::vector<Parsed> to_a = drain_ring(io_a_.tx);
    ASSERT_EQ(to_a.size(), 2u);
    check_to_soft(to_a[0], kSoftAMac, a4);
    check_to_soft(to_a[1], kSoftAMac, a6);
    std::vector<Parsed> to_b = drain_ring(io_b_.tx);
    ASSERT_EQ(to_b.size(), 2u);
    check_to_soft(to_b[0], kSoftBMac, b4);
    check_to_soft(to_b[1], kSoftBMac, b6);

    ASSERT_EQ(io_a_.tx_calls.size(), 1u) << "one burst per port per flush";
    EXPECT_EQ(io_a_.tx_calls[0].port, kSoftA);
    EXPECT_EQ(io_a_.tx_calls[0].queue, worker().index()) << "TX queue == worker index";
    EXPECT_EQ(io_a_.tx_calls[0].n, 2);
    ASSERT_EQ(io_b_.tx_calls.size(), 1u);
    EXPECT_EQ(io_b_.tx_calls[0].port, kSoftB);
    EXPECT_TRUE(io_a_.rx_calls.empty() && io_b_.rx_calls.empty()) << "no RX queue was given";
}

// Guards: WorkerCommand::kTx accepting soft ids (c.port < kMaxPorts) and
// sending through the driver; still refusing a soft id without a role and
// one beyond kMaxPorts.
TEST_F(SoftPorts, ControlFramesGoOutThroughTheDriver) {
    auto frame = PacketBuilder().eth(kGwMac, kSoftAMac).ip4(kGw4, kSoftA4).udp(1, 2);
    for (uint16_t port : {kSoftA, static_cast<uint16_t>(kSoftA + 1), kMaxPorts}) {
        rte_mbuf *m = frame.mbuf(lab().pool(), 0);
        ASSERT_NE(m, nullptr);
        ASSERT_NE(worker().post({WorkerCommand::Kind::kTx, port, 0, 0, m}), 0u);
    }
    worker().drain_commands();
    std::vector<Parsed> sent = drain_ring(io_a_.tx);
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].frame, frame.build()) << "the frame as given";
    EXPECT_EQ(worker().stats().host_tx.get(), 1u);
    EXPECT_EQ(drops(), want({{DropReason::kPortDown, 2}}));
}

// ---------------------------------------------------------------------------------------------
// Packets from a soft port.

// Guards: poll_once reading a soft port's queue through the driver's rx
// (with the queue the worker was given), and the path treating what it
// returns like an ethdev's: to pod B, the uplink, another soft port.
TEST_F(SoftPorts, ReceivedPacketsAreForwarded) {
    own_rx(kSoftA, 3);
    EXPECT_EQ(worker().rx_queue_count(), 1);
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kPodB4).udp(1, 2).payload(10));
    put_rx(io_a_, kSoftA, from_soft_a().ip6(kSoftA6, kPodB6).udp(3, 4).payload(10));
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kVia4).udp(5, 6));
    put_rx(io_a_, kSoftA, from_soft_a().ip6(kSoftA6, kVia6).udp(7, 8));
    auto to_b = from_soft_a().ip4(kSoftA4, kSoftB4).udp(9, 10);
    put_rx(io_a_, kSoftA, to_b);
    EXPECT_EQ(worker().poll_once(), 5);
    Sent out{drain_tx()};
    EXPECT_EQ(drops(), want({}));
    EXPECT_EQ(worker().stats().rx_packets.get(), 5u);

    auto pod_b = out.on(Side::kPodB);
    ASSERT_EQ(pod_b.size(), 2u);
    check_eth_to(*pod_b[0], Side::kPodB, kTypeIp4);
    ASSERT_TRUE(pod_b[0]->pkt.ip4.has_value());
    EXPECT_EQ(pod_b[0]->pkt.ip4->src, kSoftA4);
    EXPECT_EQ(pod_b[0]->pkt.ip4->ttl, 63);
    check_eth_to(*pod_b[1], Side::kPodB, kTypeIp6);
    ASSERT_TRUE(pod_b[1]->pkt.ip6.has_value());
    EXPECT_EQ(pod_b[1]->pkt.ip6->src, kSoftA6);
    EXPECT_EQ(pod_b[1]->pkt.ip6->hop_limit, 63);
    auto uplink = out.on(Side::kUplink);
    ASSERT_EQ(uplink.size(), 2u);
    check_eth_to(*uplink[0], Side::kUplink, kTypeIp4);
    check_eth_to(*uplink[1], Side::kUplink, kTypeIp6);
    EXPECT_TRUE(out.on(Side::kPodA).empty());
    std::vector<Parsed> soft_b = drain_ring(io_b_.tx);
    ASSERT_EQ(soft_b.size(), 1u);
    check_to_soft(soft_b[0], kSoftBMac, to_b);
    EXPECT_TRUE(drain_ring(io_a_.tx).empty()) << "nothing back to the sender";

    ASSERT_FALSE(io_a_.rx_calls.empty());
    for (const IoCall &c : io_a_.rx_calls) {
        EXPECT_EQ(c.port, kSoftA);
        EXPECT_EQ(c.queue, 3) << "the queue of kAddRxQueue";
        EXPECT_EQ(c.n, kBurst);
    }
    EXPECT_EQ(io_a_.rx_calls[0].done, 5);
    EXPECT_TRUE(io_b_.rx_calls.empty()) << "a queue the worker does not own is not polled";
}

// Guards: the answers the dataplane builds itself (arp_input, icmp4_local,
// icmp6_local) go back out of the soft port they came in on, from its MAC.
TEST_F(SoftPorts, GatewayAnswersGoBackOutOfTheSoftPort) {
    own_rx(kSoftA, 0);
    Ip6 snm = ip6("ff02::1:ff00:0");
    std::copy(kGw6.begin() + 13, kGw6.end(), snm.begin() + 13);
    Mac snm_mac = {0x33, 0x33, 0xff, kGw6[13], kGw6[14], kGw6[15]};
    put_rx(io_a_, kSoftA,
           PacketBuilder()
               .eth(kSoftAMac, kBroadcastMac)
               .arp(kArpRequest, kSoftAMac, kSoftA4, {}, kGw4));
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kGw4).echo_request(0x11, 1).payload(24));
    put_rx(io_a_, kSoftA,
           PacketBuilder()
               .eth(kSoftAMac, snm_mac)
               .ip6(kSoftALl6, snm)
               .hop_limit(255)
               .ns(kGw6)
               .nd_option_ll(kOptSourceLl, kSoftAMac));
    put_rx(io_a_, kSoftA, from_soft_a().ip6(kSoftA6, kGw6).echo_request(0x22, 2).payload(24));
    EXPECT_EQ(worker().poll_once(), 4);
    EXPECT_EQ(drops(), want({}));
    EXPECT_TRUE(drain_tx().empty()) << "nothing out of an ethdev";

    std::vector<Parsed> back = drain_ring(io_a_.tx);
    ASSERT_EQ(back.size(), 4u);
    std::map<std::string, const Parsed *> by_kind;
    for (const Parsed &p : back) {
        EXPECT_EQ(p.eth.dst, kSoftAMac);
        EXPECT_EQ(p.eth.src, kGwMac);
        if (p.arp) {
            by_kind["arp"] = &p;
        } else if (p.ip4 && !p.l4().empty()) {
            by_kind["echo4"] = &p;
        } else if (p.ip6 && !p.l4().empty()) {
            by_kind[p.l4()[0] == kNdNa ? "na" : "echo6"] = &p;
        }
    }
    ASSERT_EQ(by_kind.size(), 4u) << "an ARP reply, an NA and two echo replies";

    const ParsedArp &arp = *by_kind["arp"]->arp;
    EXPECT_EQ(arp.op, kArpReply);
    EXPECT_EQ(arp.sha, kGwMac);
    EXPECT_EQ(arp.sip, kGw4);
    EXPECT_EQ(arp.tha, kSoftAMac);
    EXPECT_EQ(arp.tip, kSoftA4);

    const Parsed &e4 = *by_kind["echo4"];
    EXPECT_EQ(e4.ip4->src, kGw4);
    EXPECT_EQ(e4.ip4->dst, kSoftA4);
    EXPECT_EQ(e4.l4()[0], kEchoReply4);
    EXPECT_TRUE(e4.l4_checksum_ok());

    const Parsed &na = *by_kind["na"];
    EXPECT_EQ(na.ip6->src, kGw6);
    EXPECT_EQ(na.ip6->dst, kSoftALl6);
    auto nal4 = na.l4();
    ASSERT_EQ(nal4.size(), 32u);
    EXPECT_TRUE(na.l4_checksum_ok());
    EXPECT_TRUE(std::equal(kGw6.begin(), kGw6.end(), nal4.begin() + 8)) << "target";
    EXPECT_EQ(nal4[24], kOptTargetLl);
    EXPECT_TRUE(std::equal(kGwMac.begin(), kGwMac.end(), nal4.begin() + 26))
        << "the soft port's MAC";

    const Parsed &e6 = *by_kind["echo6"];
    EXPECT_EQ(e6.ip6->src, kGw6);
    EXPECT_EQ(e6.ip6->dst, kSoftA6);
    EXPECT_EQ(e6.l4()[0], kEchoReply6);
    EXPECT_TRUE(e6.l4_checksum_ok());
}

// ---------------------------------------------------------------------------------------------
// TX buffers and the flush.

// Guards: send_now dropping what a soft port's tx did not take as
// tx_queue_full (counted, freed: the fixture checks no mbuf leaks), and
// counting only what it took as sent.
TEST_F(SoftPorts, WhatTheTxDoesNotTakeIsDroppedAsTxQueueFull) {
    io_a_.tx_limit = 2;
    std::vector<std::pair<Side, PacketBuilder>> in;
    for (uint16_t i = 0; i < 5; i++) {
        in.emplace_back(Side::kPodA, from_pod_a().ip4(kPodA4, kSoftA4).udp(100 + i, 2));
    }
    run(in);
    EXPECT_EQ(drops(), want({{DropReason::kTxQueueFull, 3}}));
    EXPECT_EQ(tx_packets(), 2u);
    std::vector<Parsed> sent = drain_ring(io_a_.tx);
    ASSERT_EQ(sent.size(), 2u);
    EXPECT_EQ(sport_of(sent[0]), 100);
    EXPECT_EQ(sport_of(sent[1]), 101);
    ASSERT_EQ(io_a_.tx_calls.size(), 1u);
    EXPECT_EQ(io_a_.tx_calls[0].n, 5);
}

// Guards the count of what a soft port sent: packets its driver took but
// dropped itself (a frame the kernel refused) are drops, not sends (they
// were counted as both).
TEST_F(SoftPorts, WhatTheDriverTakesAndDropsIsNotCountedAsSent) {
    io_a_.tx_self_drop = 2;
    std::vector<std::pair<Side, PacketBuilder>> in;
    for (uint16_t i = 0; i < 5; i++) {
        in.emplace_back(Side::kPodA, from_pod_a().ip4(kPodA4, kSoftA4).udp(100 + i, 2));
    }
    run(in);
    EXPECT_EQ(drops(), want({{DropReason::kTunTxError, 2}}));
    EXPECT_EQ(tx_packets(), 3u);
    std::vector<Parsed> sent = drain_ring(io_a_.tx);
    ASSERT_EQ(sent.size(), 3u);
    EXPECT_EQ(sport_of(sent[0]), 102);
}

// Guards the pending list: every port that got packets in a burst, soft
// ports and ethdevs alike, is flushed by the one flush_tx; a port whose
// buffer filled (and went out) mid-burst stays listed and its rest goes at
// the flush; each packet leaves exactly once; a flush with nothing pending
// sends nothing.
TEST_F(SoftPorts, OneFlushSendsEveryPortThatGotPacketsEachPacketOnce) {
    const uint16_t pod_a = lab().port(Side::kPodA);
    const uint16_t pod_b = lab().port(Side::kPodB);
    // One burst to five ports.
    Sent out = run({{Side::kPodA, from_pod_a().ip4(kPodA4, kSoftA4).udp(1, 1)},
                    {Side::kPodA, from_pod_a().ip6(kPodA6, kSoftB6).udp(1, 2)},
                    {Side::kPodA, from_pod_a().ip4(kPodA4, kPodB4).udp(1, 3)},
                    {Side::kPodA, from_pod_a().ip4(kPodA4, kVia4).udp(1, 4)},
                    {Side::kPodB, from_pod_b().ip6(kPodB6, kPodA6).udp(1, 5)}});
    EXPECT_EQ(drops(), want({}));
    EXPECT_EQ(out.on(Side::kPodA).size(), 1u);
    EXPECT_EQ(out.on(Side::kPodB).size(), 1u);
    EXPECT_EQ(out.on(Side::kUplink).size(), 1u);
    EXPECT_EQ(drain_ring(io_a_.tx).size(), 1u);
    EXPECT_EQ(drain_ring(io_b_.tx).size(), 1u);
    EXPECT_EQ(tx_packets(), 5u);

    // Two bursts before one flush: soft A gets 20 + 20, its buffer fills
    // (kBurst) in the second and goes out there; 8 wait for the flush.
    io_a_.tx_calls.clear();
    io_b_.tx_calls.clear();
    std::vector<std::pair<uint16_t, PacketBuilder>> first, second;
    for (uint16_t i = 0; i < 20; i++) {
        first.emplace_back(pod_a, from_pod_a().ip4(kPodA4, kSoftA4).udp(1000 + i, 9));
        second.emplace_back(pod_a, from_pod_a().ip4(kPodA4, kSoftA4).udp(1020 + i, 9));
    }
    first.emplace_back(pod_a, from_pod_a().ip4(kPodA4, kPodB4).udp(2000, 9));
    first.emplace_back(pod_a, from_pod_a().ip4(kPodA4, kPodB4).udp(2001, 9));
    second.emplace_back(pod_b, from_pod_b().ip4(kPodB4, kSoftB4).udp(3000, 9));
    feed(first);
    EXPECT_TRUE(io_a_.tx_calls.empty()) << "sent before its buffer was full or flushed";
    feed(second);
    ASSERT_EQ(io_a_.tx_calls.size(), 1u) << "the full buffer goes out mid-burst";
    EXPECT_EQ(io_a_.tx_calls[0].n, kBurst);
    EXPECT_TRUE(io_b_.tx_calls.empty());
    EXPECT_TRUE(drain_tx().empty()) << "pod B's buffer waits for the flush";

    worker().flush_tx();
    ASSERT_EQ(io_a_.tx_calls.size(), 2u) << "the rest of soft A's buffer at the flush";
    EXPECT_EQ(io_a_.tx_calls[1].n, 40 - kBurst);
    ASSERT_EQ(io_b_.tx_calls.size(), 1u);
    EXPECT_EQ(io_b_.tx_calls[0].n, 1);
    std::vector<uint16_t> sports;
    for (const Parsed &p : drain_ring(io_a_.tx)) {
        sports.push_back(sport_of(p));
    }
    std::vector<uint16_t> want_sports;
    for (uint16_t i = 0; i < 40; i++) {
        want_sports.push_back(1000 + i);
    }
    EXPECT_EQ(sports, want_sports) << "each packet once, in order";
    std::vector<Parsed> to_b = drain_ring(io_b_.tx);
    ASSERT_EQ(to_b.size(), 1u);
    EXPECT_EQ(sport_of(to_b[0]), 3000);
    std::vector<Frame> lab_out = drain_tx();
    ASSERT_EQ(lab_out.size(), 2u);
    EXPECT_EQ(sport_of(lab_out[0].pkt), 2000);
    EXPECT_EQ(sport_of(lab_out[1].pkt), 2001);
    EXPECT_EQ(drops(), want({}));

    // Nothing pending: a flush sends nothing more.
    worker().flush_tx();
    EXPECT_EQ(io_a_.tx_calls.size(), 2u);
    EXPECT_EQ(io_b_.tx_calls.size(), 1u);
    EXPECT_TRUE(drain_tx().empty());
    // And a later burst to one port sends to that one only.
    feed({{pod_b, from_pod_b().ip6(kPodB6, kSoftB6).udp(4000, 9)}});
    worker().flush_tx();
    EXPECT_EQ(io_a_.tx_calls.size(), 2u);
    ASSERT_EQ(io_b_.tx_calls.size(), 2u);
    EXPECT_EQ(drain_ring(io_b_.tx).size(), 1u);
    EXPECT_EQ(tx_packets(), 5u + 40 + 1 + 2 + 1);
}

// ---------------------------------------------------------------------------------------------
// Taking a soft port away, and broken ones.

// Guards: kDropPort on a soft id drops its buffered packets (port_down) and
// removes its RX queue (its rx is not called again); another soft port goes
// on.
TEST_F(SoftPorts, DropPortDropsItsBufferAndStopsPollingIt) {
    own_rx(kSoftA, 0);
    own_rx(kSoftB, 0);
    ASSERT_EQ(worker().rx_queue_count(), 2);
    feed({{lab().port(Side::kPodA), from_pod_a().ip4(kPodA4, kSoftA4).udp(1, 2)},
          {lab().port(Side::kPodA), from_pod_a().ip6(kPodA6, kSoftA6).udp(1, 2)},
          {lab().port(Side::kPodA), from_pod_a().ip4(kPodA4, kSoftA4).udp(1, 2)},
          {lab().port(Side::kPodA), from_pod_a().ip4(kPodA4, kSoftB4).udp(1, 2)}});
    ASSERT_NE(worker().post({WorkerCommand::Kind::kDropPort, kSoftA, 0, 0}), 0u);
    worker().drain_commands();
    EXPECT_EQ(drops(), want({{DropReason::kPortDown, 3}}));
    EXPECT_EQ(worker().rx_queue_count(), 1);
    worker().flush_tx();
    EXPECT_TRUE(drain_ring(io_a_.tx).empty());
    EXPECT_TRUE(io_a_.tx_calls.empty()) << "the dropped buffer reached the driver";
    EXPECT_EQ(drain_ring(io_b_.tx).size(), 1u) << "the other soft port's packet";

    size_t a_polls = io_a_.rx_calls.size();
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kPodB4).udp(1, 2));
    put_rx(io_b_, kSoftB, PacketBuilder().eth(kSoftBMac, kGwMac).ip4(kSoftB4, kPodB4).udp(3, 4));
    EXPECT_EQ(worker().poll_once(), 1) << "only soft B's packet";
    EXPECT_EQ(io_a_.rx_calls.size(), a_polls) << "soft A's rx called after kDropPort";
    EXPECT_EQ(drain_tx().size(), 1u);
    EXPECT_EQ(rte_ring_count(io_a_.rx), 1u) << "left on the device";
}

// Guards: route4 / route6 refusing a soft port with role kNone (port_down)
// before its buffer: its driver is never called.
TEST_F(SoftPorts, RoleNoneDropsRoutedPacketsAsPortDown) {
    lab().tables().port_mut(kSoftA).role.store(PortRole::kNone, std::memory_order_release);
    Sent out = run({{Side::kPodA, from_pod_a().ip4(kPodA4, kSoftA4).udp(1, 2)},
                    {Side::kPodA, from_pod_a().ip6(kPodA6, kSoftA6).udp(1, 2)},
                    {Side::kPodA, from_pod_a().ip4(kPodA4, kSoftB4).udp(1, 2)}});
    EXPECT_EQ(drops(), want({{DropReason::kPortDown, 2}}));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_TRUE(io_a_.tx_calls.empty());
    EXPECT_TRUE(drain_ring(io_a_.tx).empty());
    EXPECT_EQ(drain_ring(io_b_.tx).size(), 1u);
    EXPECT_EQ(icmp_sent(), 0u);
}

// Guards soft_io with no driver behind PortState::driver: 0 (an ethdev's
// value on a soft id), slots no driver was registered in (2, the last one)
// and a value beyond the table: rx gives nothing, tx takes nothing
// (tx_queue_full), no driver is called, nothing crashes.
TEST_F(SoftPorts, PortWithoutADriverReceivesNothingAndDropsWhatItSends) {
    own_rx(kSoftA, 0);
    const uint8_t values[] = {0, 2, static_cast<uint8_t>(kMaxPortDrivers), 255};
    uint64_t n = 0;
    for (uint8_t v : values) {
        SCOPED_TRACE(static_cast<int>(v));
        lab().tables().port_mut(kSoftA).driver = v;
        put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kPodB4).udp(1, 2));
        EXPECT_EQ(worker().poll_once(), 0);
        run(Side::kPodA, from_pod_a().ip4(kPodA4, kSoftA4).udp(1, 2));
        n++;
        EXPECT_EQ(drops(), want({{DropReason::kTxQueueFull, n}}));
    }
    EXPECT_TRUE(io_a_.rx_calls.empty());
    EXPECT_TRUE(io_a_.tx_calls.empty());
    EXPECT_EQ(rte_ring_count(io_a_.rx), std::size(values)) << "left on the device";
    EXPECT_EQ(tx_packets(), 0u);
    EXPECT_EQ(worker().stats().rx_packets.get(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Taps.

// Guards: the RX and TX taps run for soft ports too, with the soft id: the
// RX burst as the driver returned it, each TX buffer as it goes to the driver.
TEST_F(SoftPorts, TapsSeeTheSoftPortsBurstsWithItsId) {
    PipelineRegistry r;
    ASSERT_EQ(r.add_port_driver(ring_driver()), driver_);
    r.add_tap(TapDef{"rx_tap", TapPoint::kRx, &tap<TapPoint::kRx>});
    r.add_tap(TapDef{"tx_tap", TapPoint::kTx, &tap<TapPoint::kTx>});
    use(r);
    own_rx(kSoftA, 0);
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kPodB4).udp(1, 2));
    put_rx(io_a_, kSoftA, from_soft_a().ip6(kSoftA6, kSoftB6).udp(1, 2));
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kSoftA4).udp(1, 2));  // back to itself
    EXPECT_EQ(worker().poll_once(), 3);
    EXPECT_EQ(drops(), want({}));
    EXPECT_EQ(drain_tx().size(), 1u);
    EXPECT_EQ(drain_ring(io_a_.tx).size(), 1u);
    EXPECT_EQ(drain_ring(io_b_.tx).size(), 1u);

    std::map<uint16_t, uint64_t> rx, tx;
    for (const TapSeen &t : g_taps) {
        ASSERT_EQ(t.dst.size(), t.n);
        (t.point == TapPoint::kRx ? rx : tx)[t.port] += t.n;
        for (const Mac &d : t.dst) {
            if (t.point == TapPoint::kRx) {
                EXPECT_EQ(d, kGwMac) << "as received";
            } else {
                EXPECT_EQ(d, t.port == kSoftA   ? kSoftAMac
                             : t.port == kSoftB ? kSoftBMac
                                                : kPodBMac)
                    << "as sent";
            }
        }
    }
    EXPECT_EQ(rx, (std::map<uint16_t, uint64_t>{{kSoftA, 3}}));
    EXPECT_EQ(
        tx, (std::map<uint16_t, uint64_t>{{kSoftA, 1}, {kSoftB, 1}, {lab().port(Side::kPodB), 1}}));
}

// ---------------------------------------------------------------------------------------------
// The registry.

// Guards add_port_driver's checks (rx and tx both, a name once, at most
// kMaxPortDrivers, a valid name), the ids it gives (1 up, in order) and
// freeze() putting each driver at its id, with nothing of a refused one.
TEST(PortDrivers, RegistryChecksAndIds) {
    PipelineRegistry r;
    invalid([&] { r.add_port_driver(PortDriverDef{"no_rx", nullptr, &ring_tx}); });
    invalid([&] { r.add_port_driver(PortDriverDef{"no_tx", &ring_rx, nullptr}); });
    invalid([&] { r.add_port_driver(PortDriverDef{"neither", nullptr, nullptr}); });
    invalid([&] {
        r.add_port_driver(PortDriverDef{"arm_only", &ring_rx, &ring_tx, nullptr, &ring_arm});
    });
    invalid([&] {
        r.add_port_driver(
            PortDriverDef{"disarm_only", &ring_rx, &ring_tx, nullptr, nullptr, &ring_disarm});
    });
    invalid([&] {
        r.add_port_driver(PortDriverDef{"arm_and_wake", &ring_rx, &ring_tx, &ring_wake_fd,
                                        &ring_arm, &ring_disarm});
    });
    for (const std::string &bad :
         std::vector<std::string>{"", "Upper", "dash-name", std::string(33, 'a')}) {
        invalid([&] { r.add_port_driver(ring_driver(bad)); });
    }
    EXPECT_EQ(r.add_port_driver(ring_driver("d1")), 1);
    std::string e = invalid([&] { r.add_port_driver(ring_driver("d1")); });
    EXPECT_NE(e.find("'d1'"), std::string::npos) << e;
    EXPECT_EQ(r.add_port_driver(PortDriverDef{"other", &other_io, &other_io}), 2);
    for (size_t i = 3; i <= kMaxPortDrivers; i++) {
        EXPECT_EQ(r.add_port_driver(ring_driver("d" + std::to_string(i))), i);
    }
    e = invalid([&] { r.add_port_driver(ring_driver("one_too_many")); });
    EXPECT_NE(e.find("one_too_many"), std::string::npos) << e;

    Pipeline p = r.freeze();
    ASSERT_EQ(p.drivers.size(), kMaxPortDrivers + 1);
    EXPECT_EQ(p.drivers[0].rx, nullptr) << "0 is an ethdev";
    EXPECT_EQ(p.drivers[0].tx, nullptr);
    EXPECT_EQ(p.drivers[1].rx, &ring_rx);
    EXPECT_EQ(p.drivers[1].tx, &ring_tx);
    EXPECT_EQ(p.drivers[2].rx, &other_io);
    EXPECT_EQ(p.drivers[2].tx, &other_io);
    for (size_t i = 3; i <= kMaxPortDrivers; i++) {
        EXPECT_EQ(p.drivers[i].rx, &ring_rx) << i;
    }
    // A registry without drivers has none; the default pipeline the core's one
    // (vhost-user pods, vhost_io.hpp) at its id and nothing else.
    for (const auto &d : PipelineRegistry{}.freeze().drivers) {
        EXPECT_EQ(d.rx, nullptr);
        EXPECT_EQ(d.tx, nullptr);
    }
    const auto &dd = default_pipeline().drivers;
    ASSERT_GE(vhost_user::driver(), 1);
    for (size_t i = 0; i < dd.size(); i++) {
        EXPECT_EQ(dd[i].rx != nullptr, i == vhost_user::driver()) << i;
        EXPECT_EQ(dd[i].tx != nullptr, i == vhost_user::driver()) << i;
        EXPECT_EQ(dd[i].wake_fd, nullptr) << i << ": vhost-user queues have no fixed wake fd";
        EXPECT_EQ(dd[i].arm != nullptr && dd[i].disarm != nullptr, i == vhost_user::driver())
            << i << ": vhost-user queues wake a worker once armed";
    }
}

// ---------------------------------------------------------------------------------------------
// An idle worker blocks (IdleParams::max_block_ms) where every queue it owns has a wake fd.

class SoftPortsBlocking : public SoftPorts {
  protected:
    // Straight to the wait, which only a wake can end within the test: a
    // 5 s block that a frame, a command or stop ends in well under 1 s.
    IdleParams idle_params() const override {
        return IdleParams{.enabled = true,
                          .spin_polls = 0,
                          .pause_polls = 0,
                          .max_sleep_us = 1000,
                          .max_block_ms = 5000};
    }
    void SetUp() override {
        SoftPorts::SetUp();
        for (SoftIo *io : {&io_a_, &io_b_}) {
            io->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            ASSERT_GE(io->wake, 0);
        }
    }
    void TearDown() override {
        if (thread_.joinable()) {
            worker().stop();
            thread_.join();
        }
        SoftPorts::TearDown();
        for (SoftIo *io : {&io_a_, &io_b_}) {
            close(io->wake);
        }
    }
    // Waits up to `limit` for cond (polled every ms); returns the time it took, or
    // limit + 1 s when it never held.
    template <typename F>
    static std::chrono::milliseconds within(F cond, std::chrono::milliseconds limit) {
        const auto t0 = std::chrono::steady_clock::now();
        for (;;) {
            const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0);
            if (cond()) {
                return took;
            }
            if (took > limit) {
                return limit + std::chrono::seconds(1);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    uint64_t blocks() { return worker().stats().blocks.get(); }
    // More soft pods on the fixture's driver (ports first, first + 1, ...), each
    // with a wake eventfd and an RX ring named by tag; not owned by the worker.
    template <size_t N>
    void add_extra(std::array<SoftIo, N> &extra, uint16_t first, const std::string &tag) {
        for (size_t i = 0; i < N; i++) {
            extra[i].wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            ASSERT_GE(extra[i].wake, 0);
            extra[i].rx = rte_ring_create((tag + std::to_string(i)).c_str(), kSoftRingSize, 0,
                                          RING_F_SP_ENQ | RING_F_SC_DEQ);
            ASSERT_NE(extra[i].rx, nullptr);
            PortState &ps = lab().tables().port_mut(static_cast<uint16_t>(first + i));
            ps.driver = driver_;
            ps.driver_ctx = &extra[i];
            ps.mac = kGwMac;
            ps.role.store(PortRole::kPod, std::memory_order_release);
        }
    }
    // Takes them from the worker and frees them.
    template <size_t N>
    void remove_extra(std::array<SoftIo, N> &extra, uint16_t first) {
        for (size_t i = 0; i < N; i++) {
            ASSERT_NE(worker().post(
                          {WorkerCommand::Kind::kDropPort, static_cast<uint16_t>(first + i), 0, 0}),
                      0u);
        }
        worker().drain_commands();
        for (size_t i = 0; i < N; i++) {
            PortState &ps = lab().tables().port_mut(static_cast<uint16_t>(first + i));
            ps.role.store(PortRole::kNone, std::memory_order_release);
            ps.driver = 0;
            ps.driver_ctx = nullptr;
            ps.mac = {};
            close(extra[i].wake);
            rte_ring_free(extra[i].rx);
        }
    }
    std::thread thread_;
};

// Guards: the worker blocking only where every owned queue can wake it (a
// driver's wake fd; an ethdev queue without RX interrupts cannot), and
// watch_rx / unwatch_rx keeping that count as queues come and go.
TEST_F(SoftPortsBlocking, BlocksOnlyWhenEveryQueueCanWakeIt) {
    EXPECT_TRUE(worker().can_block()) << "no queue: commands alone wake it";
    own_rx(kSoftA, 0);
    EXPECT_TRUE(worker().can_block());
    io_b_.wake = -1;  // a device without a wake fd
    own_rx(kSoftB, 0);
    EXPECT_FALSE(worker().can_block());
    ASSERT_NE(worker().post({WorkerCommand::Kind::kDelRxQueue, kSoftB, 0, 0}), 0u);
    worker().drain_commands();
    EXPECT_TRUE(worker().can_block());
    const uint16_t ring_port = lab().port(Side::kPodB);  // net_ring: no RX interrupt
    ASSERT_NE(worker().post({WorkerCommand::Kind::kAddRxQueue, ring_port, 0, 0}), 0u);
    worker().drain_commands();
    EXPECT_FALSE(worker().can_block());
    ASSERT_NE(worker().post({WorkerCommand::Kind::kDropPort, ring_port, 0, 0}), 0u);
    worker().drain_commands();
    EXPECT_TRUE(worker().can_block());
    io_b_.wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);  // TearDown closes it
}

// Guards: a blocked worker woken at once by its queue's fd (the frame is
// forwarded, not left for the 5 s timeout), by a command (post) and by
// stop(); its blocks and wakeups counted.
TEST_F(SoftPortsBlocking, AFrameACommandAndStopEachEndTheBlock) {
    using std::chrono::milliseconds;
    const milliseconds limit(1000);
    own_rx(kSoftA, 0);
    ASSERT_TRUE(worker().can_block());
    thread_ = std::thread([this] { worker().run(); });
    ASSERT_LE(within([&] { return blocks() >= 1; }, limit), limit) << "never blocked";

    // A frame: on the device, then its fd set (as tun's becomes readable).
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kSoftB4).udp(9, 10).payload(8));
    const uint64_t one = 1;
    ASSERT_EQ(write(io_a_.wake, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    EXPECT_LE(within([&] { return rte_ring_count(io_b_.tx) == 1; }, limit), limit)
        << "the frame waited for the block's timeout";
    EXPECT_GE(worker().stats().wakeups.get(), 1u);

    // A command, once the worker blocks again (with nothing to do, at once:
    // spin_polls and pause_polls are 0).
    std::this_thread::sleep_for(milliseconds(200));
    const uint64_t seq = worker().post({WorkerCommand::Kind::kSync, 0, 0, 0});
    ASSERT_NE(seq, 0u);
    EXPECT_LE(within([&] { return worker().acked() >= seq; }, limit), limit)
        << "the command waited for the block's timeout";

    // stop(), blocked again.
    std::this_thread::sleep_for(milliseconds(200));
    EXPECT_GE(blocks(), 3u);
    const auto t0 = std::chrono::steady_clock::now();
    worker().stop();
    thread_.join();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, limit) << "stop waited for the timeout";
    EXPECT_EQ(worker().stats().rx_packets.get(), 1u);
    drain_ring(io_b_.tx);
}

// Guards: with more than four owned queues, all wakeable, a poll reads only
// the queues whose fd is ready (one epoll_wait, not a read per queue): a
// frame on a queue whose fd is not set is not read, and is forwarded as soon
// as its fd is; with four queues or fewer every queue is read each poll.
TEST_F(SoftPortsBlocking, ManyWakeableQueuesArePolledByReadiness) {
    std::array<SoftIo, 4> extra;
    auto extra_port = [](size_t i) { return static_cast<uint16_t>(kSoftA + 1 + i); };
    add_extra(extra, extra_port(0), "soft_x");
    own_rx(kSoftA, 0);
    own_rx(kSoftB, 0);
    for (size_t i = 0; i < extra.size(); i++) {
        own_rx(extra_port(i), 0);
    }
    ASSERT_TRUE(worker().can_block());
    auto reads = [&] {
        size_t n = io_a_.rx_calls.size() + io_b_.rx_calls.size();
        for (const SoftIo &io : extra) {
            n += io.rx_calls.size();
        }
        return n;
    };

    // Six queues: the frame waits for its fd.
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kSoftB4).udp(9, 10).payload(8));
    EXPECT_EQ(worker().poll_once(), 0u);
    EXPECT_EQ(reads(), 0u) << "a queue was read without its fd ready";
    const uint64_t one = 1;
    ASSERT_EQ(write(io_a_.wake, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    EXPECT_EQ(worker().poll_once(), 1u);
    EXPECT_EQ(io_a_.rx_calls.size(), 1u);
    EXPECT_EQ(reads(), 1u) << "only the ready queue is read";
    EXPECT_EQ(rte_ring_count(io_b_.tx), 1u);

    // Four queues: each read every poll, ready or not.
    for (size_t i = 0; i < 2; i++) {
        ASSERT_NE(worker().post({WorkerCommand::Kind::kDropPort, extra_port(i), 0, 0}), 0u);
    }
    worker().drain_commands();
    ASSERT_EQ(worker().rx_queue_count(), 4u);
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kSoftB4).udp(9, 11).payload(8));
    const size_t before = reads();
    EXPECT_EQ(worker().poll_once(), 1u);
    EXPECT_EQ(reads() - before, 4u);
    EXPECT_EQ(rte_ring_count(io_b_.tx), 2u);
    EXPECT_EQ(worker().stats().rx_packets.get(), 2u);

    remove_extra(extra, extra_port(0));  // the first two were dropped already: no-ops
    drain_ring(io_b_.tx);
}

// Guards: a queue that wakes the worker only once armed (a vhost-user queue:
// PortArmFn). The worker blocks with it, armed for the block only (a dup of
// its fd watched), and a kick ends the block at once (the frame forwarded, not
// left for the 5 s timeout), the fd then drained and the queue disarmed; frames
// already waiting at arm time cancel the block (no block, no sleep: polled at
// once); a queue that cannot be armed makes the worker sleep and poll as
// before; with more than four queues the armable one is still read every poll
// (its fd says nothing while disarmed: no polling by readiness).
TEST_F(SoftPortsBlocking, ArmableQueuesAreArmedForEachBlock) {
    using std::chrono::milliseconds;
    const milliseconds limit(1000);
    g_arm = ArmLog{};
    PipelineRegistry r;
    ASSERT_EQ(r.add_port_driver(ring_driver()), driver_);
    const uint8_t armed_driver = r.add_port_driver(armed_ring_driver());
    use(r);
    lab().tables().port_mut(kSoftA).driver = armed_driver;
    own_rx(kSoftA, 0);
    ASSERT_TRUE(worker().can_block()) << "an armable queue can wake the worker";

    thread_ = std::thread([this] { worker().run(); });
    ASSERT_LE(within([&] { return blocks() >= 1 && g_arm.armed; }, limit), limit)
        << "never blocked armed";
    EXPECT_GE(g_arm.arms, 1);

    // The kick: a frame on the device, then its eventfd written (as a peer does
    // once notified).
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kSoftB4).udp(9, 10).payload(8));
    const uint64_t one = 1;
    ASSERT_EQ(write(io_a_.wake, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    EXPECT_LE(within([&] { return rte_ring_count(io_b_.tx) == 1; }, limit), limit)
        << "the frame waited for the block's timeout";
    EXPECT_LE(within([&] { return g_arm.fired >= 1; }, limit), limit);
    EXPECT_TRUE(g_arm.drained) << "the kick was not drained";
    EXPECT_GE(g_arm.disarms, 1);

    // The next answers of arm, each taken once a command ends the current block.
    auto answer = [&](int a) {
        g_arm.answer = a;
        const uint64_t seq = worker().post({WorkerCommand::Kind::kSync, 0, 0, 0});
        ASSERT_NE(seq, 0u);
        ASSERT_LE(within([&] { return worker().acked() >= seq; }, limit), limit);
        std::this_thread::sleep_for(milliseconds(20));
    };
    // Frames waiting when it arms: no block, no sleep, polled (and armed) again at once.
    answer(kArmBusy);
    uint64_t b0 = blocks(), s0 = worker().stats().sleeps.get();
    int a0 = g_arm.arms;
    std::this_thread::sleep_for(milliseconds(200));
    EXPECT_EQ(blocks(), b0) << "blocked over a busy queue";
    EXPECT_EQ(worker().stats().sleeps.get(), s0);
    EXPECT_GT(g_arm.arms, a0 + 10) << "not polled again at once";

    // A queue that cannot be armed: sleeps (polling), no block.
    answer(kArmUnable);
    b0 = blocks();
    s0 = worker().stats().sleeps.get();
    std::this_thread::sleep_for(milliseconds(200));
    EXPECT_EQ(blocks(), b0) << "blocked over a queue that cannot be armed";
    EXPECT_GT(worker().stats().sleeps.get(), s0 + 10) << "neither blocked nor slept";
    worker().stop();
    thread_.join();
    EXPECT_EQ(g_arm.given, g_arm.disarms) << "a queue left armed (its dup open)";
    EXPECT_FALSE(g_arm.armed);
    g_arm.answer = 0;

    // Five queues, the armable one among them: each poll reads it, fd or not.
    std::array<SoftIo, 3> extra;
    const auto first = static_cast<uint16_t>(kSoftA + 2);
    add_extra(extra, first, "soft_y");
    for (size_t i = 0; i < extra.size(); i++) {
        own_rx(static_cast<uint16_t>(first + i), 0);
    }
    own_rx(kSoftB, 0);
    ASSERT_EQ(worker().rx_queue_count(), 5u);
    put_rx(io_a_, kSoftA, from_soft_a().ip4(kSoftA4, kSoftB4).udp(9, 11).payload(8));
    EXPECT_EQ(worker().poll_once(), 1u) << "the armable queue was not read";
    EXPECT_EQ(rte_ring_count(io_b_.tx), 2u);
    remove_extra(extra, first);
    lab().tables().port_mut(kSoftA).driver = driver_;
    drain_ring(io_b_.tx);
}

}  // namespace
}  // namespace fwd::dp::test
