// The test network for the datapath component tests, and the fixture.
//
//   pod A (ring port) --+                    +-- uplink (ring port) -- router
//   10.65.0.2           |   Worker 0         |   node 192.168.50.10 / fd00:50::10
//   fd00:65::2          +-- process() -------+   10.65.1.0/26, fd00:65:1::/122,
//   pod B (ring port) --+   flush_tx()           default via the router
//   10.65.0.3, MTU 1450
//   fd00:65::3
//
// Every port is an rte_eth_from_rings() port: what the worker sends lands in
// a ring the test dequeues. One Lab lives for the whole run (EAL, pool,
// ports, Tables with their routes); each test gets a fresh Worker, so its
// counters start at zero, and fresh port settings.
#pragma once

#include <gtest/gtest.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fwd/dp/drop.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/net/addr.hpp"
#include "packet_builder.hpp"

namespace fwd::dp::test {

// --- addresses of the test network ---
inline const Mac kGwMac = {0xee, 0xee, 0xee, 0xee, 0xee, 0xee};
inline const Mac kPodAMac = {0x02, 0x00, 0x0a, 0x41, 0x00, 0x02};
inline const Mac kPodBMac = {0x02, 0x00, 0x0a, 0x41, 0x00, 0x03};
inline const Mac kUplinkMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0xfe};
inline const Mac kRouterMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
inline const Mac kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline const Mac kOtherMac = {0x02, 0x99, 0x99, 0x99, 0x99, 0x99};

inline const uint32_t kGw4 = ip4("169.254.1.1");
inline const uint32_t kNode4 = ip4("192.168.50.10");
inline const uint32_t kPodA4 = ip4("10.65.0.2");
inline const uint32_t kPodB4 = ip4("10.65.0.3");
inline const uint32_t kVia4 = ip4("10.65.1.9");           // in 10.65.1.0/26 via the uplink
inline const uint32_t kBeyondVia4 = ip4("10.65.1.70");    // just outside the /26
inline const uint32_t kBlackhole4 = ip4("10.66.0.1");     // 10.66.0.0/16 blackhole
inline const uint32_t kUnreachable4 = ip4("10.67.0.1");   // 10.67.0.0/16 unreachable
inline const uint32_t kElsewhere4 = ip4("198.51.100.7");  // only the default route

inline const Ip6 kGw6 = ip6("fe80::ecee:eeff:feee:eeee");
inline const Ip6 kGwSnm6 = ip6("ff02::1:ffee:eeee");
inline const Mac kGwSnmMac = {0x33, 0x33, 0xff, 0xee, 0xee, 0xee};
inline const Ip6 kAllNodes6 = ip6("ff02::1");
inline const Mac kAllNodesMac = {0x33, 0x33, 0x00, 0x00, 0x00, 0x01};
inline const Ip6 kNode6 = ip6("fd00:50::10");
inline const Ip6 kPodA6 = ip6("fd00:65::2");
inline const Ip6 kPodALl6 = ip6("fe80::a:2");
inline const Ip6 kPodB6 = ip6("fd00:65::3");
inline const Ip6 kVia6 = ip6("fd00:65:1::9");          // in fd00:65:1::/122 via the uplink
inline const Ip6 kBeyondVia6 = ip6("fd00:65:1::80");   // just outside the /122
inline const Ip6 kBlackhole6 = ip6("fd00:66::1");      // fd00:66::/32 blackhole
inline const Ip6 kUnreachable6 = ip6("fd00:67::1");    // fd00:67::/32 unreachable
inline const Ip6 kElsewhere6 = ip6("2001:db8:77::7");  // only the default route

inline constexpr uint16_t kPodAMtu = 1500;
inline constexpr uint16_t kPodBMtu = 1450;
inline constexpr uint16_t kUplinkMtu = 1500;
inline constexpr uint16_t kUplinkVlan = 100;

enum class Side : uint8_t { kPodA, kPodB, kUplink };
inline constexpr Side kSides[] = {Side::kPodA, Side::kPodB, Side::kUplink};
const char *side_name(Side s);

// Frames as a sender on each side writes them (Ethernet addressed to us).
PacketBuilder from_pod_a();
PacketBuilder from_pod_b();
PacketBuilder from_uplink();
PacketBuilder from(Side s);

class Lab {
  public:
    // Brings up the pool, the ring ports and the tables with their routes.
    // Call once, after rte_eal_init. Returns false (with a message) on failure.
    static bool init();
    static void fini();
    static Lab &get();

    rte_mempool *pool() const { return pool_; }
    Tables &tables() { return *tables_; }
    uint16_t port(Side s) const { return ports_[static_cast<int>(s)]; }
    rte_ring *tx_ring(Side s) const { return tx_[static_cast<int>(s)]; }

    // Port roles, MACs and VLANs back to the defaults above.
    void reset_ports();
    // Default routes (0.0.0.0/0, ::/0) via the router; present unless removed.
    // defaults_rc(): what adding them at setup returned.
    int add_defaults();
    int del_defaults();
    int defaults_rc() const { return defaults_rc_; }

  private:
    bool setup();
    bool add_port(Side s);
    void add_routes();

    rte_mempool *pool_ = nullptr;
    std::unique_ptr<Tables> tables_;
    uint16_t ports_[3] = {};
    rte_ring *rx_[3] = {};
    rte_ring *tx_[3] = {};
    uint32_t nh_via_ = 0;
    int defaults_rc_ = 0;
};

// A frame the worker sent, with the side it left by.
struct Frame {
    Side side;
    Parsed pkt;
};

struct Sent {
    std::vector<Frame> frames;
    std::vector<const Frame *> on(Side s) const;
};

// Removes the default routes for the lifetime of the guard.
class WithoutDefaultRoutes {
  public:
    WithoutDefaultRoutes();
    ~WithoutDefaultRoutes();
    WithoutDefaultRoutes(const WithoutDefaultRoutes &) = delete;
    WithoutDefaultRoutes &operator=(const WithoutDefaultRoutes &) = delete;
};

// A next hop as the control thread writes one.
NextHop make_nh(NhKind kind, uint16_t port, const Mac &dst, const Mac &src, uint16_t mtu);

// Next hops, ECMP groups and routes a test adds to the lab's tables, as the
// control thread would: taken out again by release() (routes first, then
// the next hops and groups they pointed at).
class TestRoutes {
  public:
    uint32_t nh(const NextHop &n);  // a failure when the table is full
    uint32_t group(const std::vector<uint32_t> &members);
    void add4(const net::Prefix4 &p, uint32_t nh);
    void add6(const net::Prefix6 &p, uint32_t nh);
    void release();

  private:
    std::vector<net::Prefix4> routes4_;
    std::vector<net::Prefix6> routes6_;
    std::vector<uint32_t> nhs_;
    std::vector<uint32_t> groups_;
};

// The fixture: a fresh Worker per test; checks that every mbuf is back in
// the pool at the end (nothing leaked, nothing left queued).
class DatapathTest : public ::testing::Test {
  protected:
    void SetUp() override;
    void TearDown() override;
    // ICMP errors per second for the worker under test.
    virtual uint32_t icmp_per_sec() const { return 1000; }
    // Packets punted per second for the worker under test.
    virtual uint32_t punt_per_sec() const { return 10000; }
    // The worker's idle back-off.
    virtual IdleParams idle_params() const { return IdleParams{}; }

    // Runs the packets through one process() call, then flush_tx(); returns
    // everything sent.
    Sent run(const std::vector<std::pair<Side, PacketBuilder>> &pkts);
    Sent run(Side s, const PacketBuilder &b) { return run({{s, b}}); }

    Worker &worker() { return *worker_; }
    // Replaces the worker with a fresh one (counters at zero) that runs p
    // instead of default_pipeline(); p must outlive the test. Call before
    // the test's first packet.
    void use_pipeline(const Pipeline *p);
    Lab &lab() { return Lab::get(); }
    PortState &port_state(Side s) { return lab().tables().port_mut(lab().port(s)); }

    // Counter changes since SetUp, by drop reason name (only those that moved).
    std::map<std::string, uint64_t> drops() const;
    uint64_t icmp_sent() const { return worker_->stats().icmp_errors_sent.get(); }
    uint64_t tx_packets() const { return worker_->stats().tx_packets.get(); }

    // The check most tests end with: exactly these drops, all other reasons
    // unchanged.
    static std::map<std::string, uint64_t> want(
        std::initializer_list<std::pair<DropReason, uint64_t>> reasons);

  private:
    std::unique_ptr<Worker> make_worker(const Pipeline *p);

    std::unique_ptr<Worker> worker_;
    unsigned pool_avail_ = 0;
};

// Drains every TX ring (frees the mbufs).
std::vector<Frame> drain_tx();

// --- checks shared by the test files ---

// The IP packet of a built frame, as the datapath must quote it.
Bytes l3_of(const PacketBuilder &b);

// An ICMPv4 error: well formed (checksums, lengths <= 576), from the node
// address to the original source, TTL 64, quoting the original IP packet.
void check_icmp4_error(const Frame &f, uint8_t type, uint8_t code, uint16_t mtu,
                       const Bytes &original_l3);
// An ICMPv6 error: well formed (checksum, lengths <= 1280), from the node
// address to the original source, quoting the original IP packet.
void check_icmp6_error(const Frame &f, uint8_t type, uint8_t code, uint32_t mtu,
                       const Bytes &original_l3);
// The Ethernet header of a frame going to side s (its peer's MAC, our MAC).
void check_eth_to(const Frame &f, Side s, uint16_t ethertype);

}  // namespace fwd::dp::test
