#include "lab.hpp"

#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "fwd/dp/meta.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::dp::test {

namespace {

Lab *g_lab = nullptr;

constexpr unsigned kPoolSize = 8191;
constexpr unsigned kRingSize = 1024;

net::Ip6Addr to_addr6(const Ip6 &a) {
    return net::Ip6Addr::from_bytes(a.data());
}

net::Prefix4 prefix4(uint32_t a, uint8_t len) {
    return net::Prefix4{net::Ip4Addr::from_host(a), len};
}

net::Prefix6 prefix6(const Ip6 &a, uint8_t len) {
    return net::Prefix6{to_addr6(a), len};
}

[[noreturn]] void fatal(const std::string &what) {
    std::fprintf(stderr, "datapath lab: %s\n", what.c_str());
    std::abort();
}

void check_rc(int rc, const char *what) {
    if (rc != 0) {
        fatal(std::string(what) + ": " + rte_strerror(-rc));
    }
}

}  // namespace

NextHop make_nh(NhKind kind, uint16_t port, const Mac &dst, const Mac &src, uint16_t mtu) {
    NextHop nh{};
    nh.kind = kind;
    nh.port = port;
    nh.dst_mac = dst;
    nh.src_mac = src;
    nh.mtu = mtu;
    return nh;
}

const char *side_name(Side s) {
    switch (s) {
        case Side::kPodA:
            return "pod A";
        case Side::kPodB:
            return "pod B";
        case Side::kUplink:
            return "uplink";
    }
    return "?";
}

PacketBuilder from_pod_a() {
    return std::move(PacketBuilder().eth(kPodAMac, kGwMac));
}
PacketBuilder from_pod_b() {
    return std::move(PacketBuilder().eth(kPodBMac, kGwMac));
}
PacketBuilder from_uplink() {
    return std::move(PacketBuilder().eth(kRouterMac, kUplinkMac));
}
PacketBuilder from(Side s) {
    switch (s) {
        case Side::kPodA:
            return from_pod_a();
        case Side::kPodB:
            return from_pod_b();
        case Side::kUplink:
            break;
    }
    return from_uplink();
}

bool Lab::init() {
    g_lab = new Lab();
    return g_lab->setup();
}

void Lab::fini() {
    if (g_lab == nullptr) {
        return;
    }
    drain_tx();
    for (uint16_t p : g_lab->ports_) {
        rte_eth_dev_stop(p);
        rte_eth_dev_close(p);
    }
    g_lab->tables_.reset();
    for (int i = 0; i < 3; i++) {
        rte_ring_free(g_lab->rx_[i]);
        rte_ring_free(g_lab->tx_[i]);
    }
    rte_mempool_free(g_lab->pool_);
    delete g_lab;
    g_lab = nullptr;
}

Lab &Lab::get() {
    return *g_lab;
}

bool Lab::add_port(Side s) {
    int i = static_cast<int>(s);
    std::string base = "dpt" + std::to_string(i);
    rx_[i] = rte_ring_create((base + "rx").c_str(), kRingSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    tx_[i] = rte_ring_create((base + "tx").c_str(), kRingSize, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (rx_[i] == nullptr || tx_[i] == nullptr) {
        std::fprintf(stderr, "rte_ring_create: %s\n", rte_strerror(rte_errno));
        return false;
    }
    int port = rte_eth_from_rings(base.c_str(), &rx_[i], 1, &tx_[i], 1, 0);
    if (port < 0) {
        std::fprintf(stderr, "rte_eth_from_rings: %s\n", rte_strerror(rte_errno));
        return false;
    }
    ports_[i] = static_cast<uint16_t>(port);
    rte_eth_conf conf{};
    // TX queue index == worker index: worker 0 sends on queue 0.
    if (rte_eth_dev_configure(ports_[i], 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(ports_[i], 0, kRingSize, 0, nullptr, pool_) != 0 ||
        rte_eth_tx_queue_setup(ports_[i], 0, kRingSize, 0, nullptr) != 0 ||
        rte_eth_dev_start(ports_[i]) != 0) {
        std::fprintf(stderr, "cannot start ring port %u\n", ports_[i]);
        return false;
    }
    return true;
}

bool Lab::setup() {
    pool_ = rte_pktmbuf_pool_create("dpt_pool", kPoolSize, 0 /* no cache: exact counts */,
                                    kMetaSize, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    if (pool_ == nullptr) {
        std::fprintf(stderr, "rte_pktmbuf_pool_create: %s\n", rte_strerror(rte_errno));
        return false;
    }
    for (Side s : kSides) {
        if (!add_port(s)) {
            return false;
        }
    }
    try {
        tables_ = std::make_unique<Tables>(1024, 1024, nullptr, 0);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "Tables: %s\n", e.what());
        return false;
    }
    NodeAddrs node;
    node.has_ip4 = true;
    node.ip4 = net::Ip4Addr::from_host(kNode4);
    node.has_ip6 = true;
    node.ip6 = to_addr6(kNode6);
    node.gw6 = net::calico_gateway6();
    node.gw6_snm = kGwSnm6;
    tables_->set_node(node);
    reset_ports();
    add_routes();
    return true;
}

void Lab::reset_ports() {
    for (Side s : kSides) {
        PortState &ps = tables_->port_mut(port(s));
        ps.mac = s == Side::kUplink ? kUplinkMac : kGwMac;
        ps.vlan = 0;
        ps.role.store(s == Side::kUplink ? PortRole::kUplink : PortRole::kPod,
                      std::memory_order_release);
    }
}

// As the control thread does it: the next hop first, then the routes that
// publish it.
void Lab::add_routes() {
    Tables &t = *tables_;
    uint32_t a = t.nh_alloc(make_nh(NhKind::kPod, port(Side::kPodA), kPodAMac, kGwMac, kPodAMtu));
    uint32_t b = t.nh_alloc(make_nh(NhKind::kPod, port(Side::kPodB), kPodBMac, kGwMac, kPodBMtu));
    nh_via_ =
        t.nh_alloc(make_nh(NhKind::kVia, port(Side::kUplink), kRouterMac, kUplinkMac, kUplinkMtu));
    NextHop bh{};
    bh.kind = NhKind::kBlackhole;
    uint32_t blackhole = t.nh_alloc(bh);
    NextHop un{};
    un.kind = NhKind::kUnreachable;
    uint32_t unreachable = t.nh_alloc(un);
    check_rc(t.add4(prefix4(kPodA4, 32), a), "add4 pod A");
    check_rc(t.add6(prefix6(kPodA6, 128), a), "add6 pod A");
    check_rc(t.add4(prefix4(kPodB4, 32), b), "add4 pod B");
    check_rc(t.add6(prefix6(kPodB6, 128), b), "add6 pod B");
    check_rc(t.add4(prefix4(ip4("10.65.1.0"), 26), nh_via_), "add4 /26");
    check_rc(t.add6(prefix6(ip6("fd00:65:1::"), 122), nh_via_), "add6 /122");
    check_rc(t.add4(prefix4(ip4("10.66.0.0"), 16), blackhole), "add4 blackhole");
    check_rc(t.add6(prefix6(ip6("fd00:66::"), 32), blackhole), "add6 blackhole");
    check_rc(t.add4(prefix4(ip4("10.67.0.0"), 16), unreachable), "add4 unreachable");
    check_rc(t.add6(prefix6(ip6("fd00:67::"), 32), unreachable), "add6 unreachable");
    // Not fatal here: Forward.DefaultRoutes reports it.
    defaults_rc_ = add_defaults();
}

int Lab::add_defaults() {
    int rc = tables_->add4(prefix4(0, 0), nh_via_);
    return rc != 0 ? rc : tables_->add6(prefix6(Ip6{}, 0), nh_via_);
}

int Lab::del_defaults() {
    int rc = tables_->del4(prefix4(0, 0));
    return rc != 0 ? rc : tables_->del6(prefix6(Ip6{}, 0));
}

std::vector<const Frame *> Sent::on(Side s) const {
    std::vector<const Frame *> v;
    for (const Frame &f : frames) {
        if (f.side == s) {
            v.push_back(&f);
        }
    }
    return v;
}

WithoutDefaultRoutes::WithoutDefaultRoutes() {
    if (Lab::get().defaults_rc() == 0) {
        check_rc(Lab::get().del_defaults(), "removing the default routes");
    }
}

WithoutDefaultRoutes::~WithoutDefaultRoutes() {
    if (Lab::get().defaults_rc() == 0) {
        check_rc(Lab::get().add_defaults(), "restoring the default routes");
    }
}

std::vector<Frame> drain_tx() {
    std::vector<Frame> out;
    for (Side s : kSides) {
        void *objs[64];
        unsigned n;
        while ((n = rte_ring_dequeue_burst(Lab::get().tx_ring(s), objs, 64, nullptr)) > 0) {
            for (unsigned i = 0; i < n; i++) {
                auto *m = static_cast<rte_mbuf *>(objs[i]);
                Bytes b(m->pkt_len);
                const void *p = rte_pktmbuf_read(m, 0, m->pkt_len, b.data());
                if (p != b.data() && !b.empty()) {
                    std::memcpy(b.data(), p, m->pkt_len);
                }
                out.push_back(Frame{s, parse(b)});
                rte_pktmbuf_free(m);
            }
        }
    }
    return out;
}

// --- what tests add to the tables ---

uint32_t TestRoutes::nh(const NextHop &n) {
    uint32_t id = Lab::get().tables().nh_alloc(n);
    EXPECT_NE(id, kNhInvalid) << "next-hop table full";
    if (id != kNhInvalid) {
        nhs_.push_back(id);
    }
    return id;
}

uint32_t TestRoutes::group(const std::vector<uint32_t> &members) {
    uint32_t g =
        Lab::get().tables().group_alloc(members.data(), static_cast<uint8_t>(members.size()));
    EXPECT_NE(g, kGroupInvalid);
    if (g != kGroupInvalid) {
        groups_.push_back(g);
    }
    return g;
}

void TestRoutes::add4(const net::Prefix4 &p, uint32_t nh) {
    int rc = Lab::get().tables().add4(p, nh);
    EXPECT_EQ(rc, 0) << "add4 " << p.str();
    if (rc == 0) {
        routes4_.push_back(p);
    }
}

void TestRoutes::add6(const net::Prefix6 &p, uint32_t nh) {
    int rc = Lab::get().tables().add6(p, nh);
    EXPECT_EQ(rc, 0) << "add6 " << p.str();
    if (rc == 0) {
        routes6_.push_back(p);
    }
}

void TestRoutes::release() {
    Tables &t = Lab::get().tables();
    for (const auto &p : routes4_) {
        EXPECT_EQ(t.del4(p), 0);
    }
    for (const auto &p : routes6_) {
        EXPECT_EQ(t.del6(p), 0);
    }
    for (uint32_t id : nhs_) {
        t.nh_free(id);
    }
    for (uint32_t g : groups_) {
        t.group_free(g);
    }
    *this = TestRoutes{};
}

// --- fixture ---

void DatapathTest::SetUp() {
    Lab &l = lab();
    l.reset_ports();
    ASSERT_TRUE(drain_tx().empty()) << "frames left over from an earlier test";
    pool_avail_ = rte_mempool_avail_count(l.pool());
    worker_ = make_worker(nullptr);
}

std::unique_ptr<Worker> DatapathTest::make_worker(const Pipeline *p) {
    return std::make_unique<Worker>(0, lab().tables(), lab().pool(), idle_params(), icmp_per_sec(),
                                    nullptr, punt_per_sec(), p);
}

void DatapathTest::use_pipeline(const Pipeline *p) {
    worker_.reset();
    worker_ = make_worker(p);
}

void DatapathTest::TearDown() {
    drain_tx();
    worker_->flush_tx();
    EXPECT_EQ(worker_->gen4_.n, 0) << "ICMPv4 errors left queued after process()";
    EXPECT_EQ(worker_->gen6_.n, 0) << "ICMPv6 errors left queued after process()";
    rte_pktmbuf_free_bulk(worker_->gen4_.pkts, worker_->gen4_.n);
    rte_pktmbuf_free_bulk(worker_->gen6_.pkts, worker_->gen6_.n);
    worker_->gen4_.n = worker_->gen6_.n = 0;
    drain_tx();
    rte_mbuf *punted;
    unsigned left = 0;
    while (worker_->pop_punt(punted)) {
        rte_pktmbuf_free(punted);
        left++;
    }
    EXPECT_EQ(left, 0u) << "punted packets the test did not look at";
    worker_.reset();
    EXPECT_EQ(rte_mempool_avail_count(lab().pool()), pool_avail_) << "mbufs leaked";
    lab().reset_ports();
}

Sent DatapathTest::run(const std::vector<std::pair<Side, PacketBuilder>> &pkts) {
    std::vector<rte_mbuf *> mbufs;
    for (const auto &[side, b] : pkts) {
        rte_mbuf *m = b.mbuf(lab().pool(), lab().port(side));
        if (m == nullptr) {
            ADD_FAILURE() << "cannot build an mbuf";
            rte_pktmbuf_free_bulk(mbufs.data(), static_cast<unsigned>(mbufs.size()));
            return {};
        }
        mbufs.push_back(m);
    }
    worker_->process(mbufs.data(), static_cast<uint16_t>(mbufs.size()));
    worker_->flush_tx();
    return Sent{drain_tx()};
}

std::map<std::string, uint64_t> DatapathTest::drops() const {
    std::map<std::string, uint64_t> m;
    for (size_t i = 0; i < kDropReasonCount; i++) {
        uint64_t v = worker_->stats().drops[i].get();
        if (v != 0) {
            m[std::string(kDropReasonInfo[i].name)] = v;
        }
    }
    return m;
}

std::map<std::string, uint64_t> DatapathTest::want(
    std::initializer_list<std::pair<DropReason, uint64_t>> reasons) {
    std::map<std::string, uint64_t> m;
    for (const auto &[r, n] : reasons) {
        m[std::string(drop_reason_name(r))] += n;
    }
    return m;
}

// --- shared checks ---

Bytes l3_of(const PacketBuilder &b) {
    Parsed p = parse(b.build());
    auto l3 = p.l3();
    return Bytes(l3.begin(), l3.end());
}

void check_eth_to(const Frame &f, Side s, uint16_t ethertype) {
    const Mac &dst = s == Side::kPodA ? kPodAMac : s == Side::kPodB ? kPodBMac : kRouterMac;
    const Mac &src = s == Side::kUplink ? kUplinkMac : kGwMac;
    EXPECT_EQ(f.side, s) << "left by " << side_name(f.side) << ", not " << side_name(s);
    EXPECT_EQ(f.pkt.eth.dst, dst);
    EXPECT_EQ(f.pkt.eth.src, src);
    EXPECT_EQ(f.pkt.eth.type, ethertype);
}

void check_icmp4_error(const Frame &f, uint8_t type, uint8_t code, uint16_t mtu,
                       const Bytes &original_l3) {
    const Parsed &p = f.pkt;
    ASSERT_TRUE(p.ip4.has_value()) << "not IPv4";
    const ParsedIp4 &ip = *p.ip4;
    ASSERT_GE(original_l3.size(), 20u);
    uint32_t orig_src = (uint32_t{original_l3[12]} << 24) | (original_l3[13] << 16) |
                        (original_l3[14] << 8) | original_l3[15];
    EXPECT_EQ(ip.version, 4);
    EXPECT_EQ(ip.ihl, 5);
    EXPECT_TRUE(ip.header_checksum_ok) << "IPv4 header checksum";
    EXPECT_EQ(ip.proto, kProtoIcmp);
    EXPECT_EQ(ip.ttl, 64);
    EXPECT_EQ(ip.frag & 0x3fff, 0) << "errors are never fragments";
    EXPECT_EQ(ip.src, kNode4) << "source must be the node address";
    EXPECT_EQ(ip.dst, orig_src) << "destination must be the original source";
    EXPECT_EQ(ip.total_length, p.frame.size() - p.eth.l3_off) << "IP length vs frame";
    EXPECT_LE(ip.total_length, 576u) << "RFC 1812 4.3.2.3";
    auto icmp = p.l4();
    ASSERT_GE(icmp.size(), 8u);
    EXPECT_EQ(icmp[0], type);
    EXPECT_EQ(icmp[1], code);
    EXPECT_TRUE(p.l4_checksum_ok()) << "ICMP checksum";
    EXPECT_EQ(icmp[4], 0);
    EXPECT_EQ(icmp[5], 0);
    EXPECT_EQ((icmp[6] << 8) | icmp[7], mtu) << "next-hop MTU (RFC 1191) or unused";
    // As much of the original as fits, byte for byte (TTL not yet decremented).
    size_t want_len = std::min<size_t>(original_l3.size(), 576 - 28);
    Bytes quote(icmp.begin() + 8, icmp.end());
    EXPECT_EQ(quote.size(), want_len);
    EXPECT_TRUE(std::equal(quote.begin(), quote.end(), original_l3.begin()))
        << "quoted packet differs from the original";
}

void check_icmp6_error(const Frame &f, uint8_t type, uint8_t code, uint32_t mtu,
                       const Bytes &original_l3) {
    const Parsed &p = f.pkt;
    ASSERT_TRUE(p.ip6.has_value()) << "not IPv6";
    const ParsedIp6 &ip = *p.ip6;
    ASSERT_GE(original_l3.size(), 40u);
    Ip6 orig_src;
    std::copy_n(original_l3.begin() + 8, 16, orig_src.begin());
    EXPECT_EQ(ip.version, 6);
    EXPECT_EQ(ip.next, kProtoIcmp6);
    EXPECT_EQ(ip.hop_limit, 64);
    EXPECT_EQ(ip.src, kNode6) << "source must be the node address";
    EXPECT_EQ(ip.dst, orig_src) << "destination must be the original source";
    EXPECT_EQ(40u + ip.payload_length, p.frame.size() - p.eth.l3_off) << "IP length vs frame";
    EXPECT_LE(40u + ip.payload_length, 1280u) << "RFC 4443 2.4 (c)";
    auto icmp = p.l4();
    ASSERT_GE(icmp.size(), 8u);
    EXPECT_EQ(icmp[0], type);
    EXPECT_EQ(icmp[1], code);
    EXPECT_TRUE(p.l4_checksum_ok()) << "ICMPv6 checksum";
    uint32_t word = (uint32_t{icmp[4]} << 24) | (icmp[5] << 16) | (icmp[6] << 8) | icmp[7];
    EXPECT_EQ(word, mtu) << "MTU (packet too big) or unused";
    size_t want_len = std::min<size_t>(original_l3.size(), 1280 - 48);
    Bytes quote(icmp.begin() + 8, icmp.end());
    EXPECT_EQ(quote.size(), want_len);
    EXPECT_TRUE(std::equal(quote.begin(), quote.end(), original_l3.begin()))
        << "quoted packet differs from the original";
}

}  // namespace fwd::dp::test
