// The packet path as a pod, the network and the kernel can reach it: the input is split into
// frames, each with the kind of port it comes in by, and run through one worker's pipeline in
// bursts, with the tables of a small node loaded. After every input, the accounting must close:
//
//   frames in + ICMP errors built + segments made - frames segmented
//     == frames sent (found on the ports) + drops (by reason) + punts
//   (icmp_rate_limited, icmp_error_no_buffer and icmp_error_suppressed say why a packet dropped
//   under another reason got no ICMP error: counted beside that reason, never alone)
//   the worker's tx_packets == the frames found on the ports
//   the mempool holds as many mbufs as before the input (no leak, nothing left queued)
//
// A failed check aborts with the numbers: libFuzzer keeps the input.
//
// The node (the datapath component tests' lab, tests/unit/datapath/lab.hpp and nat_lab.hpp,
// reused as is): pods A and B (ring ethdevs, role pod, pod B's MTU 1450), the uplink (ring
// ethdev, VLAN 100 on some inputs), a "vhost" pod (a ring ethdev taking checksum and TSO
// offloads), a "tun" pod (a soft port driven
// by the real tun driver over a socketpair standing in for the tap fd: the input's first 12
// bytes of such a frame are its virtio-net header); remote blocks over VXLAN (both outer
// families) and IP-in-IP; natOutgoing for the pools; a ClusterIP service (TCP and UDP, both
// families) with backends on pod B; a policy on pods A and B; conntrack on (32 flows, fewer than an
// input may bring).
//
// Input: byte 0 chooses the node's switches (bit 0: the fused fast path; bit 1: the uplink's
// VLAN); then frames, each [port byte][length, 2 bytes big-endian][that many bytes] (the last
// takes what is left when shorter). The port byte's low 3 bits pick the port (modulo 5), bit 3
// marks IP / L4 checksums good as an ethdev's RX offload would, bit 4 bad. Up to kMaxFrames
// frames, in bursts of up to kBurst.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lpm.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_packet.hpp"
#include "fwd/dp/acl.hpp"
#include "fwd/dp/eal.hpp"
#include "fwd/dp/offload.hpp"
#include "fwd/dp/overlay.hpp"
#include "fwd/dp/policy.hpp"
#include "fwd/dp/tun_io.hpp"
#include "nat_lab.hpp"

namespace fwd::dp::test {
namespace {

constexpr size_t kMaxFrames = 64;
constexpr uint32_t kCtCapacity = 32;
constexpr uint16_t kTunPort = kFirstSoftPort;

uint32_t be32(uint32_t host) {
    return rte_cpu_to_be_32(host);
}
net::Prefix4 p4(uint32_t a, uint8_t len) {
    return {net::Ip4Addr::from_host(a), len};
}
net::Prefix6 p6(const Ip6 &a, uint8_t len) {
    return {net::Ip6Addr::from_bytes(a.data()), len};
}

[[noreturn]] void fatal(const std::string &what) {
    std::fprintf(stderr, "fuzz_packet: %s\n", what.c_str());
    std::abort();
}

// The node: the NAT lab's fixture (pools, conntrack, services, a fresh worker with its
// checks), with the overlay, policy and the two extra port kinds added here. Built once.
class Node : public Nat {
  public:
    void TestBody() override {}
    void up();
    void run(const uint8_t *data, size_t size);

  protected:
    uint32_t icmp_per_sec() const override { return 1000000000; }
    uint32_t punt_per_sec() const override { return 1000000000; }
    // Fewer flows than an input has frames: a long input fills the table (ct_table_full; the
    // seed ct_fill does), and the reset after each input walks 32 slots, not the lab's 1024
    // (three walks of those were a quarter of the harness's time per input).
    ct::Config ct_config() const override {
        ct::Config c = Nat::ct_config();
        c.capacity = kCtCapacity;
        return c;
    }

  private:
    void add_vhost_port();
    void add_tun_port();
    void add_pod(uint16_t port, const Mac &mac, uint32_t a4, const Ip6 &a6);
    void add_overlay();
    void add_policy();
    void add_services();
    rte_mbuf *mbuf_of(const uint8_t *p, size_t len, uint16_t port, uint8_t rx_flags);
    rte_mbuf *tun_frame(const uint8_t *p, size_t len);
    uint64_t drain_sent();
    // The drop counters by reason, read once before and once after an input.
    using Drops = std::array<uint64_t, kDropReasonCount>;
    Drops drops_now();
    void reset_state();

    uint16_t vhost_port_ = 0;
    rte_ring *vhost_rx_ = nullptr, *vhost_tx_ = nullptr;
    int tun_fds_[2] = {-1, -1};  // [0]: the driver's "tap fd"; [1]: the pod's end
    tun::TunPort tun_;
    tun::RxStash stash_;
    unsigned pool_base_ = 0;  // free mbufs with the stash empty
    TestRoutes routes_;
    std::unique_ptr<overlay::OverlayTables> ov_;
    std::unique_ptr<overlay::DecapConfig> decap_;
    policy::PolicyTables ptables_;
    policy::PolicyWorker pw_;
    ct::Counters pcounters_{};
    std::unique_ptr<PolicyRules> rules_;
    std::unique_ptr<policy::PolicyState> pstate_;
    std::vector<uint8_t> tun_buf_;
};

void Node::add_vhost_port() {
    vhost_rx_ = rte_ring_create("fzvhrx", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    vhost_tx_ = rte_ring_create("fzvhtx", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (vhost_rx_ == nullptr || vhost_tx_ == nullptr) {
        fatal("rte_ring_create");
    }
    const int port = rte_eth_from_rings("fzvh", &vhost_rx_, 1, &vhost_tx_, 1, 0);
    if (port < 0) {
        fatal("rte_eth_from_rings");
    }
    vhost_port_ = static_cast<uint16_t>(port);
    rte_eth_conf conf{};
    if (rte_eth_dev_configure(vhost_port_, 1, 1, &conf) != 0 ||
        rte_eth_rx_queue_setup(vhost_port_, 0, 1024, 0, nullptr, lab().pool()) != 0 ||
        rte_eth_tx_queue_setup(vhost_port_, 0, 1024, 0, nullptr) != 0 ||
        rte_eth_dev_start(vhost_port_) != 0) {
        fatal("cannot start the vhost stand-in");
    }
    add_pod(vhost_port_, kFuzzVhostMac, kFuzzVhost4, kFuzzVhost6);
}

// A pod on port (its driver or shared queue set already): our MAC, the offloads a virtio
// device takes, the role last (as the control thread publishes a port), its next hop and
// routes.
void Node::add_pod(uint16_t port, const Mac &mac, uint32_t a4, const Ip6 &a6) {
    PortState &ps = lab().tables().port_mut(port);
    ps.mac = kGwMac;
    ps.tx_offloads = kPortTxCsum | kPortTxTso;
    ps.role.store(PortRole::kPod, std::memory_order_release);
    const uint32_t nh = routes_.nh(make_nh(NhKind::kPod, port, mac, kGwMac, 1500));
    routes_.add4(p4(a4, 32), nh);
    routes_.add6(p6(a6, 128), nh);
}

void Node::add_tun_port() {
    // A datagram socketpair keeps frame boundaries as a tap fd does; non-blocking both ends.
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, tun_fds_) != 0) {
        fatal("socketpair");
    }
    const int big = 4 << 20;
    for (int fd : tun_fds_) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    }
    tun_.fds[0] = tun_fds_[0];
    if (!tun::stash_init(stash_, lab().pool())) {
        fatal("stash_init");
    }
    worker().set_slot(tun::worker_slot(), &stash_);
    PortState &ps = lab().tables().port_mut(kTunPort);
    ps.driver = tun::driver();
    ps.driver_ctx = &tun_;
    add_pod(kTunPort, kFuzzTunMac, kFuzzTun4, kFuzzTun6);
}

void Node::add_overlay() {
    ov_ = std::make_unique<overlay::OverlayTables>();
    worker().set_slot(overlay::worker_slot(), ov_.get());
    const uint32_t underlay = routes_.nh(
        make_nh(NhKind::kVia, lab().port(Side::kUplink), kRouterMac, kUplinkMac, kUplinkMtu));
    overlay::Tunnel t{};
    t.type = overlay::TunnelType::kVxlan;
    t.src4 = be32(kNode4);
    t.dst4 = be32(kFuzzRemote4);
    t.inner_src_mac = kFuzzVtepMac4;
    t.inner_dst_mac = kFuzzRemoteVtepMac;
    t.vni = overlay::kDefaultVni;
    t.underlay_nh = underlay;
    overlay::Tunnel t6 = t;
    t6.v6 = true;
    t6.src4 = t6.dst4 = 0;
    t6.src6 = kNode6;
    t6.dst6 = kFuzzRemote6;
    t6.inner_src_mac = kFuzzVtepMac6;
    overlay::Tunnel ti = t;
    ti.type = overlay::TunnelType::kIpip;
    ti.dst4 = be32(kFuzzIpipPeer4);
    ti.inner_src_mac = ti.inner_dst_mac = {};
    ti.vni = 0;
    auto tunnel_nh = [&](const overlay::Tunnel &tun, NhKind kind, uint16_t mtu) {
        const uint32_t idx = ov_->tunnel_alloc(tun);
        if (idx == UINT32_MAX) {
            fatal("tunnel_alloc");
        }
        NextHop n = make_nh(kind, lab().port(Side::kUplink), {}, {}, mtu);
        n.group = idx;
        return routes_.nh(n);
    };
    routes_.add4(p4(ip4("10.65.2.0"), 26),
                 tunnel_nh(t, overlay::vxlan_nh_kind(), kUplinkMtu - overlay::kVxlanOverhead4));
    routes_.add6(p6(ip6("fd00:65:2::"), 122),
                 tunnel_nh(t6, overlay::vxlan_nh_kind(), kUplinkMtu - overlay::kVxlanOverhead6));
    routes_.add4(p4(ip4("10.65.3.0"), 26),
                 tunnel_nh(ti, overlay::ipip_nh_kind(), kUplinkMtu - overlay::kIpipOverhead));
    decap_ = std::make_unique<overlay::DecapConfig>();
    decap_->vni = overlay::kDefaultVni;
    decap_->vxlan4 = decap_->vxlan6 = decap_->ipip = true;
    decap_->vtep_mac4 = kFuzzVtepMac4;
    decap_->vtep_mac6 = kFuzzVtepMac6;
    decap_->peers4.assign({be32(kFuzzRemote4), be32(kFuzzIpipPeer4)});
    decap_->peers6.assign({kFuzzRemote6});
    decap_->pools4 = {p4(ip4("10.65.0.0"), 16)};
    decap_->pools6 = {p6(ip6("fd00:65::"), 32)};
    ov_->swap_decap(decap_.get());
}

fwd::policy::AclAddr acl4(uint32_t a, uint8_t len) {
    fwd::policy::AclAddr x;
    x.w[0] = a;
    x.len = len;
    return x;
}
fwd::policy::AclAddr acl6(const Ip6 &a, uint8_t len) {
    fwd::policy::AclAddr x;
    for (int i = 0; i < 4; i++) {
        x.w[i] =
            (uint32_t{a[4 * i]} << 24) | (a[4 * i + 1] << 16) | (a[4 * i + 2] << 8) | a[4 * i + 3];
    }
    x.len = len;
    return x;
}

// Pod A (class 1): egress allows TCP to anything but port 22, denies the rest (a Log rule
// first, so the log ring fills too). Pod B (class 2): ingress allows TCP 8080 and UDP from
// pod A's pool, ICMP; default deny. The other pods have no policy. Endpoint-to-host: accept.
void Node::add_policy() {
    using fwd::policy::Action;
    using fwd::policy::Direction;
    fwd::policy::Compiled c;
    c.classes.resize(3);
    c.sets[0].resize(3);
    c.sets[1].resize(3);
    c.classes[1].egress_set = 1;
    c.sets[static_cast<int>(Direction::kEgress)][1].policies = {"pod-a"};
    c.classes[2].ingress_set = 2;
    c.sets[static_cast<int>(Direction::kIngress)][2].policies = {"pod-b"};
    c.refs.resize(1);
    struct R {
        uint16_t set;
        Direction dir;
        Action action;
        uint8_t proto;
        uint16_t lo, hi;
        bool from_pool;
    };
    const R rules[] = {
        {1, Direction::kEgress, Action::kLog, IPPROTO_UDP, 0, 65535, false},
        {1, Direction::kEgress, Action::kDeny, IPPROTO_TCP, 22, 22, false},
        {1, Direction::kEgress, Action::kAllow, IPPROTO_TCP, 0, 65535, false},
        {1, Direction::kEgress, Action::kAllow, IPPROTO_UDP, 53, 53, false},
        {2, Direction::kIngress, Action::kAllow, IPPROTO_TCP, 8080, 8080, false},
        {2, Direction::kIngress, Action::kAllow, IPPROTO_UDP, 0, 65535, true},
        {2, Direction::kIngress, Action::kAllow, IPPROTO_ICMP, 0, 65535, false},
        {2, Direction::kIngress, Action::kAllow, IPPROTO_ICMPV6, 0, 65535, false},
    };
    for (const R &r : rules) {
        const auto ref = static_cast<fwd::policy::RuleRef>(c.refs.size());
        c.refs.push_back({"fuzz/p", r.dir, static_cast<int>(ref), r.action, "rule"});
        for (int fam = 0; fam < 2; fam++) {
            fwd::policy::FlatRule f;
            f.set = r.set;
            f.proto_lo = f.proto_hi = r.proto;
            if (r.from_pool) {
                f.src = fam == 0 ? acl4(ip4("10.65.0.0"), 16) : acl6(ip6("fd00:65::"), 32);
            }
            if (r.proto == IPPROTO_TCP || r.proto == IPPROTO_UDP) {
                f.dport_lo = r.lo;
                f.dport_hi = r.hi;
            }
            f.ref = ref;
            auto &fr = c.rules[fam][static_cast<int>(r.dir)];
            (r.action == Action::kLog ? fr.log : fr.decide).push_back(f);
        }
    }
    rules_ = PolicyRules::build(c);
    pstate_ = std::make_unique<policy::PolicyState>();
    policy::PolicyState &st = *pstate_;
    st.rules = rules_.get();
    st.generation = 1;
    st.ports.resize(kMaxPorts);
    st.nh_class.resize(kMaxNextHops);
    auto endpoint = [&](Side s, uint16_t cls, uint32_t a4, const Ip6 &a6, uint32_t dst) {
        policy::PortPolicy &pp = st.ports[lab().port(s)];
        pp.cls = cls;
        pp.flags = policy::kPortEndpoint;
        pp.src4_off = static_cast<uint32_t>(st.src4.size());
        pp.src6_off = static_cast<uint32_t>(st.src6.size());
        st.src4.push_back(policy::src4(p4(a4, 32)));
        st.src6.push_back(policy::src6(p6(a6, 128)));
        pp.src4_n = pp.src6_n = 1;
        uint32_t nh = 0;
        if (rte_lpm_lookup(lab().tables().lpm4(), dst, &nh) != 0) {
            fatal("no route to a pod");
        }
        st.nh_class[nh] = cls;
    };
    endpoint(Side::kPodA, 1, kPodA4, kPodA6, kPodA4);
    endpoint(Side::kPodB, 2, kPodB4, kPodB6, kPodB4);
    st.to_host = policy::HostAction::kAccept;
    st.counts.emplace_back(st.rules->refs());
    ptables_.ct = &ct();
    pw_.tables = &ptables_;
    pw_.counters = &pcounters_;
    pw_.index = 0;
    worker().set_slot(policy::worker_slot(), &pw_);
    ptables_.swap_state(pstate_.get());
}

void Node::add_services() {
    std::vector<svc::FrontendSpec> specs;
    for (bool v6 : {false, true}) {
        for (uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}}) {
            svc::FrontendSpec f;
            f.v6 = v6;
            std::array<uint8_t, 16> be{};
            if (v6) {
                const Ip6 vip = ip6("fd00:96::10"), b = kPodB6;
                std::copy(vip.begin(), vip.end(), f.addr.begin());
                std::copy(b.begin(), b.end(), be.begin());
            } else {
                const uint32_t vip = be32(ip4("10.96.0.10")), b = be32(kPodB4);
                std::memcpy(f.addr.data(), &vip, 4);
                std::memcpy(be.data(), &b, 4);
            }
            f.proto = proto;
            f.port = 80;
            f.backends = {{be, rte_cpu_to_be_16(8080), svc::kBeLocal}};
            f.for_new = {true};
            specs.push_back(f);
        }
    }
    set_services(specs);
}

void Node::up() {
    SetUp();
    if (::testing::Test::HasFailure()) {
        fatal("the lab's fixture failed to set up");
    }
    add_vhost_port();
    add_tun_port();
    add_overlay();
    add_policy();
    add_services();
    pool_base_ = rte_mempool_avail_count(lab().pool());
}

// As an ethdev's RX hands it over: one mbuf, a chain when longer than a data room.
rte_mbuf *Node::mbuf_of(const uint8_t *p, size_t len, uint16_t port, uint8_t rx_flags) {
    rte_mbuf *head = rte_pktmbuf_alloc(lab().pool());
    if (head == nullptr) {
        fatal("the pool ran out building an input");
    }
    rte_mbuf *last = head;
    size_t off = 0;
    do {
        const uint16_t n =
            static_cast<uint16_t>(std::min<size_t>(len - off, rte_pktmbuf_tailroom(last)));
        char *d = rte_pktmbuf_append(last, n);
        std::memcpy(d, p + off, n);
        off += n;
        if (off < len) {
            rte_mbuf *seg = rte_pktmbuf_alloc(lab().pool());
            if (seg == nullptr) {
                fatal("the pool ran out building an input");
            }
            last->next = seg;
            head->nb_segs++;
            last = seg;
        }
    } while (off < len);
    head->pkt_len = static_cast<uint32_t>(len);
    head->port = port;
    if ((rx_flags & 0x08) != 0) {
        head->ol_flags |= RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD;
    }
    if ((rx_flags & 0x10) != 0) {
        head->ol_flags |= RTE_MBUF_F_RX_IP_CKSUM_BAD | RTE_MBUF_F_RX_L4_CKSUM_BAD;
    }
    return head;
}

// The tun driver's own RX: the frame (virtio-net header first) written to the pod's end of
// the socketpair, read back by the driver as from a tap fd. nullptr: the driver dropped it
// (counted by reason).
rte_mbuf *Node::tun_frame(const uint8_t *p, size_t len) {
    if (::send(tun_fds_[1], p, len, MSG_DONTWAIT) != static_cast<ssize_t>(len)) {
        fatal("socketpair send: " + std::string(std::strerror(errno)));
    }
    rte_mbuf *m = nullptr;
    const auto &d = worker().pipeline().drivers[tun::driver()];
    const uint16_t got = d.rx(worker(), kTunPort, 0, &m, 1);
    if (got == 0) {
        // A frame the driver refused is dropped; a frame still in the socket is a defect.
        char c;
        if (recv(tun_fds_[0], &c, 1, MSG_DONTWAIT | MSG_PEEK) >= 0) {
            fatal("the tun driver left a frame unread");
        }
        return nullptr;
    }
    m->port = kTunPort;  // as Worker::rx_burst sets it: a driver's mbufs need not say
    return m;
}

// Takes every frame the worker sent, wherever it went; returns how many.
uint64_t Node::drain_sent() {
    uint64_t n = drain_tx().size();
    void *objs[64];
    unsigned k;
    while ((k = rte_ring_dequeue_burst(vhost_tx_, objs, 64, nullptr)) > 0) {
        rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf **>(objs), k);
        n += k;
    }
    tun_buf_.resize(tun::kMaxFrame + 64);
    while (recv(tun_fds_[1], tun_buf_.data(), tun_buf_.size(), MSG_DONTWAIT) >= 0) {
        n++;
    }
    return n;
}

// Reasons that say why no ICMP error went back for a packet already dropped under its own
// reason (icmp_error.cpp begin_error counts both): notes on a drop, not packets.
bool is_icmp_note(size_t reason) {
    const auto r = static_cast<DropReason>(reason);
    return r == DropReason::kIcmpRateLimited || r == DropReason::kIcmpErrorNoBuffer ||
           r == DropReason::kIcmpErrorSuppressed;
}

Node::Drops Node::drops_now() {
    Drops d;
    for (size_t i = 0; i < kDropReasonCount; i++) {
        d[i] = worker().stats().drops[i].get();
    }
    return d;
}

// What one input may leave behind for the next: flows (so every input starts from the same
// tables and a finding replays alone), log records, punted packets, the port switches.
void Node::reset_state() {
    if (ct().in_use() != 0) {
        ct().flush(ct::Filter{});
        ct().age(rte_rdtsc(), ct().capacity());
        ct().age(rte_rdtsc(), ct().capacity());
    }
    if (affinity().count() != 0) {
        affinity().flush();
    }
    policy::LogRecord r;
    while (pw_.log.pop(r)) {
    }
}

void Node::run(const uint8_t *data, size_t size) {
    if (size == 0) {
        return;
    }
    Worker &w = worker();
    const WorkerStats &st = w.stats();
    w.set_fast_path((data[0] & 1) != 0);
    lab().tables().port_mut(lab().port(Side::kUplink)).vlan = (data[0] & 2) != 0 ? kUplinkVlan : 0;
    const uint64_t tx0 = st.tx_packets.get();
    const Drops drops0 = drops_now();
    const uint64_t icmp0 = st.icmp_errors_sent.get();
    const uint64_t segs0 = st.gso_segments.get() - st.gso_frames.get();
    uint64_t punt0 = 0;
    for (const Counter &c : st.punted) {
        punt0 += c.get();
    }
    uint64_t in = 0;
    size_t off = 1;
    size_t frames = 0;
    rte_mbuf *burst[kBurst];
    uint16_t n = 0;
    while (off < size && frames < kMaxFrames) {
        const uint8_t port_byte = data[off++];
        size_t len = 0;
        if (off + 2 <= size) {
            len = (size_t{data[off]} << 8) | data[off + 1];
            off += 2;
        }
        len = std::min(len, size - off);
        const uint8_t *p = data + off;
        off += len;
        frames++;
        const FuzzPort kind = static_cast<FuzzPort>((port_byte & 7) % kFuzzPortKinds);
        if (kind == kFuzzTun && len == 0) {
            continue;  // a tap fd never reads empty (a read of 0 bytes is "nothing more")
        }
        in++;
        rte_mbuf *m = nullptr;
        switch (kind) {
            case kFuzzPodA:
                m = mbuf_of(p, len, lab().port(Side::kPodA), port_byte);
                break;
            case kFuzzPodB:
                m = mbuf_of(p, len, lab().port(Side::kPodB), port_byte);
                break;
            case kFuzzUplink:
                m = mbuf_of(p, len, lab().port(Side::kUplink), port_byte);
                break;
            case kFuzzVhost:
                m = mbuf_of(p, len, vhost_port_, port_byte);
                break;
            case kFuzzTun:
                m = tun_frame(p, len);
                break;
        }
        if (m == nullptr) {
            continue;  // refused by the tun driver: counted as a drop
        }
        burst[n++] = m;
        if (n == kBurst) {
            w.process(burst, n);
            n = 0;
        }
    }
    if (n != 0) {
        w.process(burst, n);
    }
    w.flush_tx();
    if (w.gen4_.n != 0 || w.gen6_.n != 0) {
        fatal("ICMP errors left queued after process()");
    }
    uint64_t punted = 0;
    for (const Counter &c : st.punted) {
        punted += c.get();
    }
    punted -= punt0;
    rte_mbuf *pm;
    uint64_t popped = 0;
    while (w.pop_punt(pm)) {
        rte_pktmbuf_free(pm);
        popped++;
    }
    const uint64_t sent = drain_sent();
    const uint64_t tx = st.tx_packets.get() - tx0;
    const Drops drops1 = drops_now();
    uint64_t drops = 0, notes = 0;
    for (size_t i = 0; i < kDropReasonCount; i++) {
        (is_icmp_note(i) ? notes : drops) += drops1[i] - drops0[i];
    }
    const uint64_t made =
        st.icmp_errors_sent.get() - icmp0 + (st.gso_segments.get() - st.gso_frames.get() - segs0);
    char why[512];
    if (popped != punted) {
        std::snprintf(why, sizeof(why), "%lu punted, %lu in the punt queue", punted, popped);
        fatal(why);
    }
    if (tx != sent) {
        std::snprintf(why, sizeof(why), "tx_packets moved by %lu, %lu frames found on the ports",
                      tx, sent);
        fatal(why);
    }
    if (notes > drops) {
        std::snprintf(why, sizeof(why), "%lu ICMP error notes for %lu drops", notes, drops);
        fatal(why);
    }
    if (in + made != sent + drops + punted) {
        std::string moved;
        for (size_t i = 0; i < kDropReasonCount; i++) {
            if (const uint64_t d = drops1[i] - drops0[i]; d != 0) {
                moved += " " + std::string(kDropReasonInfo[i].name) + "=" + std::to_string(d);
            }
        }
        std::snprintf(why, sizeof(why),
                      "%lu in + %lu made != %lu sent + %lu dropped + %lu punted (%zu frames;"
                      " drops:%s)",
                      in, made, sent, drops, punted, frames, moved.c_str());
        fatal(why);
    }
    const unsigned avail = rte_mempool_avail_count(lab().pool()) + stash_.n;
    if (avail != pool_base_) {
        std::snprintf(why, sizeof(why), "%d mbufs leaked (%u free, the stash holds %u)",
                      static_cast<int>(pool_base_) - static_cast<int>(avail),
                      rte_mempool_avail_count(lab().pool()), stash_.n);
        fatal(why);
    }
    reset_state();
}

Node *g_node = nullptr;

}  // namespace
}  // namespace fwd::dp::test

extern "C" int LLVMFuzzerInitialize(int *, char ***argv) {
    // EAL once per process, as the component tests' main() does (no hugepages, one lcore).
    std::string prefix = "--file-prefix=fwdfuzz" + std::to_string(getpid());
    std::vector<std::string> args = {
        (*argv)[0],       "--no-huge",           "-m",   "512", "--no-shconf", "--no-pci",
        "--no-telemetry", "--log-level=*:error", prefix, "-l",  "0",
    };
    std::vector<char *> eal_argv;
    for (auto &a : args) {
        eal_argv.push_back(a.data());
    }
    if (const char *dir = std::getenv("FWD_FUZZ_PACKET_SEEDS"); dir != nullptr) {
        std::exit(fwd::dp::test::write_seeds(dir));
    }
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        fwd::dp::test::fatal("rte_eal_init failed");
    }
    if (!fwd::dp::test::Lab::init()) {
        fwd::dp::test::fatal("the datapath lab did not come up");
    }
    fwd::dp::test::g_node = new fwd::dp::test::Node();
    fwd::dp::test::g_node->up();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fwd::dp::test::g_node->run(data, size);
    return 0;
}
