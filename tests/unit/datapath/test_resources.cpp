// The drops that come from the state of the node rather than from the
// packet: an egress port that is down, a full TX queue, no mbuf left for
// an ICMP error. With these, every DropReason has a test.
#include <rte_ring.h>

#include "lab.hpp"

namespace fwd::dp::test {
namespace {

class Resources : public DatapathTest {};

TEST_F(Resources, Ip4EgressPortDown) {
    // setup: pod B's port is being removed
    port_state(Side::kPodB).role.store(PortRole::kNone, std::memory_order_release);
    // packet-build
    auto in = from_pod_a().ip4(kPodA4, kPodB4).udp(1, 2).payload(10);
    Sent out = run(Side::kPodA, in);
    // check
    EXPECT_EQ(drops(), want({{DropReason::kPortDown, 1}}));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(icmp_sent(), 0u);
}

TEST_F(Resources, Ip6EgressPortDown) {
    port_state(Side::kPodB).role.store(PortRole::kNone, std::memory_order_release);
    auto in = from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2).payload(10);
    Sent out = run(Side::kPodA, in);
    EXPECT_EQ(drops(), want({{DropReason::kPortDown, 1}}));
    EXPECT_TRUE(out.frames.empty());
}

TEST_F(Resources, TxQueueFull) {
    // setup: pod B's TX ring has room for one more packet
    rte_ring *ring = lab().tx_ring(Side::kPodB);
    unsigned room = rte_ring_free_count(ring);
    ASSERT_GT(room, 1u);
    std::vector<rte_mbuf *> filler(room - 1);
    ASSERT_EQ(rte_pktmbuf_alloc_bulk(lab().pool(), filler.data(), room - 1), 0);
    ASSERT_EQ(
        rte_ring_enqueue_bulk(ring, reinterpret_cast<void **>(filler.data()), room - 1, nullptr),
        room - 1);
    // packet-build: two datagrams for pod B
    auto p1 = from_pod_a().ip4(kPodA4, kPodB4).ip_id(1).udp(1, 2);
    auto p2 = from_pod_a().ip6(kPodA6, kPodB6).udp(1, 2);
    Sent out = run({{Side::kPodA, p1}, {Side::kPodA, p2}});
    // check: the first fits, the second is dropped
    EXPECT_EQ(drops(), want({{DropReason::kTxQueueFull, 1}}));
    EXPECT_EQ(tx_packets(), 1u);
    auto b = out.on(Side::kPodB);
    ASSERT_EQ(b.size(), room);
    ASSERT_TRUE(b.back()->pkt.ip4.has_value());
    EXPECT_EQ(b.back()->pkt.ip4->id, 1);
}

// The pool runs dry between receiving the packet and building its error.
class NoBuffer : public DatapathTest {
  protected:
    Sent run_with_empty_pool(Side s, const PacketBuilder &b) {
        rte_mbuf *m = b.mbuf(lab().pool(), lab().port(s));
        EXPECT_NE(m, nullptr);
        if (m == nullptr) {
            return {};
        }
        std::vector<rte_mbuf *> hoard;
        while (rte_mbuf *x = rte_pktmbuf_alloc(lab().pool())) {
            hoard.push_back(x);
        }
        worker().process(&m, 1);
        worker().flush_tx();
        rte_pktmbuf_free_bulk(hoard.data(), static_cast<unsigned>(hoard.size()));
        return Sent{drain_tx()};
    }
};

TEST_F(NoBuffer, Ip4ErrorWithoutAnMbuf) {
    auto in = from_pod_a().ip4(kPodA4, kPodB4).ttl(1).udp(1, 2);
    Sent out = run_with_empty_pool(Side::kPodA, in);
    EXPECT_EQ(drops(),
              want({{DropReason::kIp4TtlExceeded, 1}, {DropReason::kIcmpErrorNoBuffer, 1}}));
    EXPECT_TRUE(out.frames.empty());
    EXPECT_EQ(icmp_sent(), 0u);
}

TEST_F(NoBuffer, Ip6ErrorWithoutAnMbuf) {
    auto in = from_pod_a().ip6(kPodA6, kPodB6).hop_limit(1).udp(1, 2);
    Sent out = run_with_empty_pool(Side::kPodA, in);
    EXPECT_EQ(drops(),
              want({{DropReason::kIp6HopLimitExceeded, 1}, {DropReason::kIcmpErrorNoBuffer, 1}}));
    EXPECT_TRUE(out.frames.empty());
}

}  // namespace
}  // namespace fwd::dp::test
