// The fixture of the NAT component tests (test_nat.cpp: natOutgoing;
// test_dnat.cpp: service DNAT): a connection table, the NAT worker slot with
// the lab's pools, the services worker slot with a table a test publishes,
// and the checks both files use.
//
//   pools: 10.65.0.0/16, fd00:65::/32 natOutgoing; 198.51.100.0/24,
//          2001:db8:77::/48 disabled (kElsewhere4 / 6: "a pool" all the same)
//   outside: 203.0.113.5, 2001:db8:99::5 (the default route, via the uplink)
//   node: 192.168.50.10 / fd00:50::10
#pragma once

#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fwd/dp/nat.hpp"
#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/service_table.hpp"
#include "lab.hpp"

namespace fwd::dp::test {

using nat::NatConfig;
using nat::NatTables;
using nat::NatWorker;

inline const uint32_t kOut4 = ip4("203.0.113.5");
inline const Ip6 kOut6 = ip6("2001:db8:99::5");
inline const uint32_t kRouter4 = ip4("192.168.50.1");
inline const Ip6 kRouter6 = ip6("fd00:50::1");
inline constexpr uint16_t kEth = 14;

inline uint16_t get16(std::span<const uint8_t> b, size_t off) {
    return static_cast<uint16_t>((b[off] << 8) | b[off + 1]);
}
inline Ip6 ip6_at(std::span<const uint8_t> b, size_t off) {
    Ip6 a;
    std::copy_n(b.begin() + static_cast<long>(off), 16, a.begin());
    return a;
}
inline uint32_t ip4_at(std::span<const uint8_t> b, size_t off) {
    return (uint32_t{b[off]} << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3];
}

// The checksum of the IP packet quoted in an ICMP error holds (IPv4 header)
// and its L4 checksum too (the whole datagram is quoted in these tests).
inline bool quoted_ok(std::span<const uint8_t> q, bool v6) {
    Bytes f(kEth, 0);
    f[12] = v6 ? 0x86 : 0x08;
    f[13] = v6 ? 0xdd : 0x00;
    f.insert(f.end(), q.begin(), q.end());
    Parsed p = parse(f);
    return (v6 || (p.ip4 && p.ip4->header_checksum_ok)) && p.l4_checksum_ok();
}

class Nat : public DatapathTest {
  protected:
    void SetUp() override {
        DatapathTest::SetUp();
        const size_t sz = rte_rcu_qsbr_get_memsize(1);
        qsbr_ = static_cast<rte_rcu_qsbr *>(rte_zmalloc("nat_test_qsbr", sz, 64));
        ASSERT_NE(qsbr_, nullptr);
        rte_rcu_qsbr_init(qsbr_, 1);
        ct_ = std::make_unique<ct::ConnTable>(ct_config(), rte_get_tsc_hz(), qsbr_);
        tables_.ct = ct_.get();
        affinity_ = std::make_unique<svc::AffinityTable>(256);
        tables_.affinity = affinity_.get();
        set_ports({});
        nw_.tables = &tables_;
        nw_.counters = &counters_;
        worker().set_slot(nat::worker_slot(), &nw_);
        worker().set_slot(svc::worker_slot(), &services_);
    }
    void TearDown() override {
        worker().set_slot(nat::worker_slot(), nullptr);
        worker().set_slot(svc::worker_slot(), nullptr);
        services_.swap(nullptr);
        tables_.swap_config(nullptr);
        DatapathTest::TearDown();
        ct_.reset();
        rte_free(qsbr_);
        if (node_changed_) {
            lab().tables().set_node(saved_node_);
        }
    }
    virtual ct::Config ct_config() const {
        ct::Config c;
        c.capacity = 1024;
        return c;
    }
    void set_ports(nat::PortRange r) {
        auto c = std::make_unique<NatConfig>();
        c->pools.add(net::Prefix4{net::Ip4Addr::from_host(ip4("10.65.0.0")), 16},
                     nat::kPoolNatOutgoing);
        c->pools.add(net::Prefix6{net::Ip6Addr::from_bytes(ip6("fd00:65::").data()), 32},
                     nat::kPoolNatOutgoing);
        c->pools.add(net::Prefix4{net::Ip4Addr::from_host(ip4("198.51.100.0")), 24},
                     nat::kPoolDisabled | nat::kPoolNatOutgoing);
        c->pools.add(net::Prefix6{net::Ip6Addr::from_bytes(ip6("2001:db8:77::").data()), 48},
                     nat::kPoolDisabled);
        c->ports = r;
        tables_.swap_config(c.get());
        cfg_ = std::move(c);  // the old one: no worker runs meanwhile
    }
    void no_node_addrs() {
        saved_node_ = lab().tables().node();
        node_changed_ = true;
        NodeAddrs n = saved_node_;
        n.has_ip4 = n.has_ip6 = false;
        lab().tables().set_node(n);
    }
    // Publishes a service table as the services module does (the old one
    // stays alive to the end of the test: no worker runs meanwhile anyway).
    void set_services(const std::vector<svc::FrontendSpec> &specs) {
        svc_tables_.push_back(std::make_unique<svc::ServiceTable>(specs));
        services_.swap(svc_tables_.back().get());
    }
    uint64_t result(ct::Result r) const { return counters_.get(r); }
    uint64_t affinity_result(svc::AffinityResult r) const { return nw_.affinity.get(r); }
    ct::ConnTable &ct() { return *ct_; }
    svc::AffinityTable &affinity() { return *affinity_; }

  public:
    Sent send(Side s, const PacketBuilder &b) { return run(s, b); }

  protected:
    // One packet in, the one frame that came out (on side s).
    Parsed one(Side in, const PacketBuilder &b, Side out) {
        Sent sent = run(in, b);
        auto on = sent.on(out);
        EXPECT_EQ(sent.frames.size(), 1u);
        EXPECT_EQ(on.size(), 1u) << "nothing left by " << side_name(out);
        return on.empty() ? Parsed{} : on[0]->pkt;
    }

  private:
    rte_rcu_qsbr *qsbr_ = nullptr;
    std::unique_ptr<ct::ConnTable> ct_;
    std::unique_ptr<svc::AffinityTable> affinity_;
    std::unique_ptr<NatConfig> cfg_;
    NatTables tables_;
    NatWorker nw_;
    ct::Counters counters_{};
    svc::ServiceTables services_;
    std::vector<std::unique_ptr<svc::ServiceTable>> svc_tables_;
    NodeAddrs saved_node_;
    bool node_changed_ = false;
};

}  // namespace fwd::dp::test
