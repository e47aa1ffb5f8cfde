#include "fwd/dp/worker.hpp"

#include <fcntl.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_pause.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "fwd/dp/offload.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/stages.hpp"

namespace fwd::dp {

namespace {
// Commands, the quiescent report and housekeeping run every kHousekeepLoops
// busy loops, and on every idle one.
constexpr uint32_t kHousekeepLoops = 64;

constexpr size_t idx(Stage s) {
    return static_cast<size_t>(s);
}
}  // namespace

Worker::Worker(unsigned index, const Tables &tables, rte_mempool *pool, const IdleParams &idle,
               uint32_t icmp_per_sec, rte_rcu_qsbr *qsbr, uint32_t punt_per_sec,
               const Pipeline *pipeline)
    : index_(index),
      pipeline_(pipeline != nullptr ? *pipeline : default_pipeline()),
      tables_(tables),
      pool_(pool),
      idle_(idle),
      qsbr_(qsbr) {
    for (size_t p = 0; p < kTapPointCount; p++) {
        taps_armed_[p].store(pipeline_.taps[p].armed, std::memory_order_relaxed);
    }
    uint64_t hz = rte_get_tsc_hz();
    icmp_bucket_.init(icmp_per_sec, hz);
    punt_bucket_.init(punt_per_sec, hz);
    session_bucket_.init(punt_per_sec, hz);
    if (idle_.enabled && idle_.max_block_ms != 0) {
        // Without them the worker sleeps and polls as before: blocking is a
        // saving, not a need.
        epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
        wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kWakeTag;
        if (epoll_fd_ < 0 || wake_fd_ < 0 ||
            epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
            close_idle_fds();
        }
    }
}

// Resets wake_fd_ (the eventfd post() and stop() write). EAGAIN: another
// read took it; the wake happened either way.
void Worker::clear_wake() {
    uint64_t v = 0;
    ssize_t r = ::read(wake_fd_, &v, sizeof(v));
    (void)r;
}

void Worker::close_idle_fds() {
    for (int *fd : {&epoll_fd_, &wake_fd_}) {
        if (*fd >= 0) {
            ::close(*fd);
            *fd = -1;
        }
    }
}

Worker::~Worker() {
    close_idle_fds();
    rte_mbuf *m;
    while (punt_.pop(m)) {
        rte_pktmbuf_free(m);
    }
    for (Burst *b : {&gen4_, &gen6_, &again4_, &again6_}) {
        rte_pktmbuf_free_bulk(b->pkts, b->n);
        b->n = 0;
    }
    WorkerCommand c;
    while (cmds_.pop(c)) {
        if (c.kind == WorkerCommand::Kind::kTx || c.kind == WorkerCommand::Kind::kTxRouted) {
            rte_pktmbuf_free(c.m);
        }
    }
}

void TokenBucket::init(uint32_t per_sec, uint64_t tsc_hz) {
    max_ = per_sec == 0 ? 0 : std::max<uint64_t>(per_sec / 10, 10);
    tokens_ = max_;
    tsc_per_token_ = per_sec == 0 ? UINT64_MAX : std::max<uint64_t>(tsc_hz / per_sec, 1);
}

bool TokenBucket::take() {
    if (max_ == 0) {
        return false;
    }
    uint64_t now = rte_rdtsc();
    if (tokens_ < max_) {
        uint64_t add = (now - last_tsc_) / tsc_per_token_;
        if (add > 0) {
            tokens_ = std::min(max_, tokens_ + add);
            last_tsc_ = now;
        }
    } else {
        last_tsc_ = now;
    }
    if (tokens_ == 0) {
        return false;
    }
    tokens_--;
    return true;
}

bool Worker::punt(rte_mbuf *m, PuntReason r) {
    meta(m).punt = static_cast<uint8_t>(r);
    // The node's TCP sessions (BGP, the kubelet, ssh) have a bucket of their
    // own and the last kPuntSessionReserve places of the ring: a flood of ARP,
    // ND, ICMP or UDP uses up the shared bucket and the rest of the ring, and
    // BGP keepalives still reach the kernel (control-plane policing; measured
    // in tests/system/test_floods.py). Host punts come from the local stages,
    // after ip4/ip6_input set l4_proto.
    const bool session = r == PuntReason::kHost && meta(m).l4_proto == IPPROTO_TCP;
    if (!(session ? session_bucket_ : punt_bucket_).take()) {
        drop(m, DropReason::kPuntRateLimited);
        return false;
    }
    if ((!session && punt_.write_available() <= kPuntSessionReserve) || !punt_.push(m)) {
        drop(m, DropReason::kPuntRingFull);
        return false;
    }
    stats_.punted[static_cast<size_t>(r)].inc();
    return true;
}

bool Worker::tx_routed(rte_mbuf *m) {
    const PktMeta &md = meta(m);
    if (md.nh == kNhInvalid || md.nh >= kMaxNextHops || seg_avail(m, md.l3_off) == 0) {
        drop(m, DropReason::kNoRoute);
        return false;
    }
    const NextHop &nh = tables_.nh(md.nh);
    switch (load_kind(nh)) {
        case NhKind::kPod:
        case NhKind::kVia:
            break;
        case NhKind::kResolve:
            punt(m, PuntReason::kResolve);  // lost again meanwhile
            return false;
        default:
            drop(m, DropReason::kNoRoute);
            return false;
    }
    if (tables_.port(nh.port).role.load(std::memory_order_acquire) == PortRole::kNone) {
        drop(m, DropReason::kPortDown);
        return false;
    }
    Burst b;
    b.push(m);
    uint8_t version = *at<uint8_t>(m, md.l3_off) >> 4;
    if (version == 4) {
        l2_rewrite4(*this, b);
    } else if (version == 6) {
        l2_rewrite6(*this, b);
    } else {
        drop(m, DropReason::kEthUnknownType);
        return false;
    }
    return true;
}

uint64_t Worker::post(WorkerCommand c) {
    c.seq = next_seq_;
    if (!cmds_.push(c)) {
        return 0;
    }
    wake();
    return next_seq_++;
}

void Worker::wake() {
    // Pairs with the fence in block(): either the worker sees what was
    // published before this call (a command, running_) before it waits, or
    // this sees blocked_ and ends the wait.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (wake_fd_ >= 0 && blocked_.load(std::memory_order_relaxed)) {
        const uint64_t one = 1;
        ssize_t n = ::write(wake_fd_, &one, sizeof(one));
        (void)n;  // only fails when the counter would overflow: it is set anyway
    }
}

// The fd that says the queue has frames: a soft port's from its driver, an
// ethdev queue's RX interrupt fd when the port was configured with RX
// interrupts (vhost::setup turns them on for net_tap, whose fd is the
// queue's tap fd). Put in the epoll set; a queue without one keeps the
// worker from blocking.
void Worker::watch_rx(RxQueueRef &r) {
    int fd = -1;
    if (r.port < kFirstSoftPort) {
        rte_eth_conf conf{};
        if (rte_eth_dev_conf_get(r.port, &conf) == 0 && conf.intr_conf.rxq != 0) {
            fd = rte_eth_dev_rx_intr_ctl_q_get_fd(r.port, r.queue);
        }
    } else {
        const PortState &ps = tables_.port(r.port);
        const Pipeline::Driver &d =
            pipeline_.drivers[ps.driver < pipeline_.drivers.size() ? ps.driver : 0];
        if (d.wake_fd != nullptr) {
            fd = d.wake_fd(ps.driver_ctx, r.queue);
        } else if (d.arm != nullptr) {
            r.armable = true;  // armed for each block (block())
            n_armable_++;
            return;
        }
    }
    r.wake_fd = -1;
    if (fd >= 0 && epoll_fd_ >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = (uint64_t{r.slot} << 32) | (uint64_t{r.port} << 16) | r.queue;
        // EEXIST: the queue is listed twice; the fd is watched either way.
        if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0 || errno == EEXIST) {
            r.wake_fd = fd;
            return;
        }
    }
    n_unwakeable_++;
}

void Worker::unwatch_rx(const RxQueueRef &r) {
    if (r.armable) {
        n_armable_--;
        return;
    }
    if (r.wake_fd < 0) {
        n_unwakeable_--;
        return;
    }
    // ENOENT: a second listing of the queue already took it out.
    (void)epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, r.wake_fd, nullptr);
}

void Worker::drain_commands() {
    WorkerCommand c;
    uint64_t last = 0;
    bool sent = false;
    while (cmds_.pop(c)) {
        uint16_t n = n_rxq_.load(std::memory_order_relaxed);
        switch (c.kind) {
            case WorkerCommand::Kind::kAddRxQueue:
                if (n < kMaxRxQueues) {
                    uint16_t slot = 0;
                    while (slot_used_[slot]) {
                        slot++;  // fewer owned queues than slots: one is free
                    }
                    slot_used_[slot] = true;
                    load_[slot] = QueueLoad{};
                    rxq_[n] = RxQueueRef{c.port, c.queue, slot};
                    watch_rx(rxq_[n]);
                    n_rxq_.store(n + 1, std::memory_order_relaxed);
                }
                break;
            case WorkerCommand::Kind::kDelRxQueue:
            case WorkerCommand::Kind::kDropPort: {
                uint16_t k = 0;
                for (uint16_t i = 0; i < n; i++) {
                    bool match =
                        rxq_[i].port == c.port &&
                        (c.kind == WorkerCommand::Kind::kDropPort || rxq_[i].queue == c.queue);
                    if (!match) {
                        rxq_[k++] = rxq_[i];
                    } else {
                        unwatch_rx(rxq_[i]);
                        slot_used_[rxq_[i].slot] = false;
                    }
                }
                n_rxq_.store(k, std::memory_order_relaxed);
                if (c.kind == WorkerCommand::Kind::kDropPort) {
                    TxBuf &b = txb_[c.port];
                    for (uint16_t i = 0; i < b.n; i++) {
                        drop(b.pkts[i], DropReason::kPortDown);
                    }
                    b.n = 0;
                }
                break;
            }
            case WorkerCommand::Kind::kReportLoad:
                for (uint16_t i = 0; i < n; i++) {
                    report_[i] = QueueLoadRow{rxq_[i].port, rxq_[i].queue, load_[rxq_[i].slot]};
                }
                n_report_ = n;
                break;
            case WorkerCommand::Kind::kTx:
                if (c.m == nullptr) {
                    break;
                }
                if (c.port >= kMaxPorts ||
                    tables_.port(c.port).role.load(std::memory_order_acquire) == PortRole::kNone) {
                    drop(c.m, DropReason::kPortDown);
                    break;
                }
                stats_.host_tx.inc();
                tx(c.port, c.m);
                sent = true;
                break;
            case WorkerCommand::Kind::kTxRouted:
                if (c.m != nullptr && tx_routed(c.m)) {
                    stats_.host_tx.inc();
                    sent = true;
                }
                break;
            case WorkerCommand::Kind::kSync:
                break;
        }
        last = c.seq;
    }
    if (sent) {
        flush_tx();  // an idle worker may sleep before its next flush
    }
    if (last != 0) {
        acked_seq_.store(last, std::memory_order_release);
    }
}

void Worker::tx_tagged(uint16_t port, rte_mbuf *m) {
    m->vlan_tci = tables_.port(port).vlan;
    if (rte_vlan_insert(&m) != 0) {
        drop(m, DropReason::kTxQueueFull);
        return;
    }
    enqueue(port, m);
}

// Stage timing. A stage's own cycles are its elapsed time less what the
// stages nested in it took (nested_cycles_, which each stage_end adds its
// elapsed time to on behalf of its enclosing stage). Outside any stage the
// sum is never read.
Worker::StageMark Worker::stage_begin() {
    StageMark mark{rte_rdtsc(), nested_cycles_};
    nested_cycles_ = 0;
    return mark;
}

void Worker::stage_end(size_t stage, const StageMark &mark, uint64_t packets) {
    uint64_t elapsed = rte_rdtsc() - mark.start;
    WorkerStats::StageCounters &c = stats_.stages[stage];
    c.calls.inc();
    c.packets.add(packets);
    c.cycles.add(elapsed > nested_cycles_ ? elapsed - nested_cycles_ : 0);
    nested_cycles_ = mark.outer_nested + elapsed;
}

template <bool Profile, typename F>
void Worker::timed(size_t stage, uint16_t packets, F &&f) {
    if constexpr (Profile) {
        StageMark mark = stage_begin();
        f();
        stage_end(stage, mark, packets);
    } else {
        f();
    }
}

void Worker::free_dropped() {
    uint16_t n = dropped_.n;
    if (n == 0) {
        return;
    }
    if (unlikely(profile_)) {
        StageMark mark = stage_begin();
        rte_pktmbuf_free_bulk(dropped_.pkts, n);
        dropped_.n = 0;
        stage_end(idx(Stage::kDropFree), mark, n);
        return;
    }
    rte_pktmbuf_free_bulk(dropped_.pkts, n);
    dropped_.n = 0;
}

void Worker::send(uint16_t port) {
    if (unlikely(profile_)) {
        uint16_t n = txb_[port].n;
        StageMark mark = stage_begin();
        send_now(port);
        stage_end(idx(Stage::kTx), mark, n);
        return;
    }
    send_now(port);
}

DropReason Worker::refused(uint16_t port) const {
    return tables_.port(port).link_down.load(std::memory_order_relaxed) ? DropReason::kPortDown
                                                                        : DropReason::kTxQueueFull;
}

void Worker::send_now(uint16_t port) {
    TxBuf &b = txb_[port];
    const PortState &ps = tables_.port(port);
    if (uint8_t armed = taps_armed(TapPoint::kTx); unlikely(armed != 0)) {
        if (profile_) {
            run_taps<true>(TapPoint::kTx, armed, port, b.pkts, b.n);
        } else {
            run_taps<false>(TapPoint::kTx, armed, port, b.pkts, b.n);
        }
    }
    constexpr uint8_t kAll = kPortTxCsum | kPortTxTso;
    if (unlikely((b.ol & kOffloadFlags) != 0) && (ps.tx_offloads & kAll) != kAll) {
        b.ol = 0;
        send_soft_offload(port, b.pkts, b.n);
        b.n = 0;
        return;
    }
    b.ol = 0;
    xmit_all(port, b.pkts, b.n);
    b.n = 0;
}

void Worker::xmit_all(uint16_t port, rte_mbuf **pkts, uint16_t n) {
    const uint16_t sent = xmit(port, pkts, n);
    if (unlikely(sent < n)) {
        const DropReason why = refused(port);
        for (uint16_t i = sent; i < n; i++) {
            drop(pkts[i], why);
        }
    }
}

uint16_t Worker::xmit(uint16_t port, rte_mbuf **pkts, uint16_t n) {
    if (unlikely(port >= kFirstSoftPort)) {
        const uint64_t drops = n_drops_;
        const uint16_t sent = soft_io(port, static_cast<uint16_t>(index_), pkts, n, false);
        stats_.tx_packets.add(sent - (n_drops_ - drops));
        return sent;
    }
    const uint16_t sent = rte_eth_tx_burst(port, static_cast<uint16_t>(index_), pkts, n);
    stats_.tx_packets.add(sent);
    return sent;
}

void Worker::send_soft_offload(uint16_t port, rte_mbuf **pkts, uint16_t n) {
    const uint8_t offloads = tables_.port(port).tx_offloads;
    rte_mbuf *out[kBurst];
    uint16_t n_out = 0;
    auto flush = [&] {
        xmit_all(port, out, n_out);
        n_out = 0;
    };
    auto push = [&](rte_mbuf *m) {
        out[n_out++] = m;
        if (n_out == kBurst) {
            flush();
        }
    };
    for (uint16_t i = 0; i < n; i++) {
        rte_mbuf *m = pkts[i];
        const uint64_t ol = m->ol_flags;
        if ((ol & RTE_MBUF_F_TX_TCP_SEG) != 0 && (offloads & kPortTxTso) == 0) {
            rte_mbuf *segs[kMaxGsoSegments];
            bool bad = false;
            uint16_t k = tcp_segment(m, pool_, segs, kMaxGsoSegments, bad);
            if (k == 0) {
                drop(m, bad ? DropReason::kGsoBadFrame : DropReason::kGsoNoMbuf);
                continue;
            }
            stats_.gso_frames.inc();
            stats_.gso_segments.add(k);
            rte_pktmbuf_free(m);
            for (uint16_t j = 0; j < k; j++) {
                push(segs[j]);
            }
            continue;
        }
        if ((ol & RTE_MBUF_F_TX_L4_MASK) != 0 && (offloads & kPortTxCsum) == 0 &&
            !fill_l4_checksum(m)) {
            drop(m, DropReason::kGsoBadFrame);
            continue;
        }
        push(m);
    }
    if (n_out != 0) {
        flush();
    }
}

uint16_t Worker::soft_io(uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n, bool rx) {
    const PortState &ps = tables_.port(port);
    const Pipeline::Driver &d =
        pipeline_.drivers[ps.driver < pipeline_.drivers.size() ? ps.driver : 0];
    PortIoFn fn = rx ? d.rx : d.tx;
    return fn != nullptr ? fn(*this, port, queue, pkts, n) : 0;
}

void Worker::flush_tx() {
    for (uint16_t i = 0; i < n_pending_; i++) {
        uint16_t p = pending_[i];
        txb_[p].listed = false;
        if (txb_[p].n != 0) {
            send(p);
        }
    }
    n_pending_ = 0;
    free_dropped();
}

template <bool Profile>
void Worker::run_hook(Hook h, Burst &b) {
    const Pipeline::List &l = pipeline_.hooks[static_cast<size_t>(h)];
    for (uint8_t i = 0; i < l.n && b.n != 0; i++) {
        timed<Profile>(l.e[i].stage, b.n, [&] { l.e[i].fn(*this, b); });
    }
}

template <bool Profile>
void Worker::run_local_hook(Hook h, Burst &b) {
    const Pipeline::List &l = pipeline_.hooks[static_cast<size_t>(h)];
    if (l.n_l4 != 0) {
        // Each L4-port stage takes the packets of its protocol and port,
        // whole datagrams only (no fragment: a first one would decapsulate
        // to a cut inner packet, a later one has no L4 header); each
        // protocol stage every packet of its protocol, fragments included
        // (it drops them); the rest stay. A run-time port is read once per
        // burst (a change reaches the next burst; the stage checks it
        // against what it reads itself).
        std::array<uint16_t, kMaxHookStages> ports;
        for (uint8_t j = 0; j < l.n_l4; j++) {
            ports[j] = l.e[j].l4_port_fn != nullptr ? l.e[j].l4_port_fn(*this) : l.e[j].l4_port;
        }
        Burst taken[kMaxHookStages];
        uint16_t k = 0;
        for (uint16_t i = 0; i < b.n; i++) {
            rte_mbuf *m = b.pkts[i];
            const PktMeta &md = meta(m);
            uint8_t owner = l.n_l4;
            if (md.l4_proto == IPPROTO_UDP || md.l4_proto == IPPROTO_TCP) {
                if (md.l4_off != 0 && !(md.flags & kMetaFragment) && seg_avail(m, md.l4_off) >= 4) {
                    uint16_t dport = rte_be_to_cpu_16(*at<rte_be16_t>(m, md.l4_off + 2));
                    // port 0: no stage's (a run-time port of 0 means none)
                    for (uint8_t j = 0; j < l.n_l4 && dport != 0; j++) {
                        if (l.e[j].l4_proto == md.l4_proto && ports[j] == dport) {
                            owner = j;
                            break;
                        }
                    }
                }
            } else if (l.n_proto != 0 && md.l4_off != 0) {
                for (uint8_t j = 0; j < l.n_l4; j++) {
                    if (l.e[j].l4_proto == md.l4_proto && l.e[j].l4_port == 0) {
                        owner = j;
                        break;
                    }
                }
            }
            if (owner == l.n_l4) {
                b.pkts[k++] = m;
            } else {
                taken[owner].push(m);
            }
        }
        b.n = k;
        for (uint8_t j = 0; j < l.n_l4; j++) {
            if (taken[j].n != 0) {
                timed<Profile>(l.e[j].stage, taken[j].n, [&] { l.e[j].fn(*this, taken[j]); });
                // What an L4-port stage leaves goes on to icmp*_local.
                for (uint16_t i = 0; i < taken[j].n; i++) {
                    b.push(taken[j].pkts[i]);
                }
            }
        }
    }
    for (uint8_t i = l.n_l4; i < l.n && b.n != 0; i++) {
        timed<Profile>(l.e[i].stage, b.n, [&] { l.e[i].fn(*this, b); });
    }
}

template <bool Profile>
void Worker::run_taps(TapPoint p, uint8_t armed, uint16_t port, rte_mbuf *const *pkts, uint16_t n) {
    const Pipeline::TapList &l = pipeline_.taps[static_cast<size_t>(p)];
    for (uint8_t i = 0; i < l.n; i++) {
        if (armed & (1u << i)) {
            timed<Profile>(l.e[i].stage, n, [&] { l.e[i].fn(*this, port, pkts, n); });
        }
    }
}

template <bool Profile, bool kV6>
void Worker::ip_path(Burst &in) {
    constexpr Stage kInput = kV6 ? Stage::kIp6Input : Stage::kIp4Input;
    IpNext ip;
    timed<Profile>(idx(kInput), in.n, [&] {
        if constexpr (kV6) {
            ip6_input(*this, in, ip);
        } else {
            ip4_input(*this, in, ip);
        }
    });
    ip_rest<Profile, kV6>(ip);
}

template <bool Profile, bool kV6>
void Worker::ip_rest(IpNext &ip) {
    constexpr Stage kLocal = kV6 ? Stage::kIcmp6Local : Stage::kIcmp4Local;
    constexpr Stage kRoute = kV6 ? Stage::kRoute6 : Stage::kRoute4;
    constexpr Stage kRewrite = kV6 ? Stage::kL2Rewrite6 : Stage::kL2Rewrite4;
    constexpr Hook kLocalHook = kV6 ? Hook::kIp6Local : Hook::kIp4Local;
    constexpr Hook kInputHook = kV6 ? Hook::kIp6Input : Hook::kIp4Input;
    constexpr Hook kOutputHook = kV6 ? Hook::kIp6Output : Hook::kIp4Output;
    if (ip.local.n) {
        if (pipeline_.hooks[static_cast<size_t>(kLocalHook)].n != 0) {
            run_local_hook<Profile>(kLocalHook, ip.local);
        }
        if (ip.local.n) {
            timed<Profile>(idx(kLocal), ip.local.n, [&] {
                if constexpr (kV6) {
                    icmp6_local(*this, ip.local);
                } else {
                    icmp4_local(*this, ip.local);
                }
            });
        }
    }
    if (pipeline_.hooks[static_cast<size_t>(kInputHook)].n != 0) {
        run_hook<Profile>(kInputHook, ip.fwd);
    }
    Burst routed;
    timed<Profile>(idx(kRoute), ip.fwd.n, [&] {
        if constexpr (kV6) {
            route6(*this, ip.fwd, routed);
        } else {
            route4(*this, ip.fwd, routed);
        }
    });
    if (pipeline_.hooks[static_cast<size_t>(kOutputHook)].n != 0) {
        run_hook<Profile>(kOutputHook, routed);
    }
    timed<Profile>(idx(kRewrite), routed.n, [&] {
        if constexpr (kV6) {
            l2_rewrite6(*this, routed);
        } else {
            l2_rewrite4(*this, routed);
        }
    });
}

template <bool kV6>
void Worker::route_built(Burst &gen) {
    if (gen.n == 0) {
        return;
    }
    Burst in = gen, routed;
    gen.n = 0;
    if constexpr (kV6) {
        route6(*this, in, routed);
        run_hook<false>(Hook::kIp6Output, routed);
        l2_rewrite6(*this, routed);
    } else {
        route4(*this, in, routed);
        run_hook<false>(Hook::kIp4Output, routed);
        l2_rewrite4(*this, routed);
    }
}

template <bool Profile>
void Worker::process_impl(rte_mbuf **pkts, uint16_t n) {
    if (likely(fast_path_.load(std::memory_order_relaxed))) {
        // The same order of work as below: ARP, then IPv4, then IPv6.
        FastNext f;
        timed<Profile>(idx(Stage::kFastInput), n, [&] { fast_input(*this, pkts, n, f); });
        if (f.arp.n) {
            timed<Profile>(idx(Stage::kArpInput), f.arp.n, [&] { arp_input(*this, f.arp); });
        }
        if (f.ip4.fwd.n | f.ip4.local.n) {
            ip_rest<Profile, false>(f.ip4);
        }
        if (f.ip6.fwd.n | f.ip6.local.n) {
            ip_rest<Profile, true>(f.ip6);
        }
    } else {
        EthNext eth;
        timed<Profile>(idx(Stage::kEthInput), n, [&] { eth_input(*this, pkts, n, eth); });
        if (eth.arp.n) {
            timed<Profile>(idx(Stage::kArpInput), eth.arp.n, [&] { arp_input(*this, eth.arp); });
        }
        if (eth.ip4.n) {
            ip_path<Profile, false>(eth.ip4);
        }
        if (eth.ip6.n) {
            ip_path<Profile, true>(eth.ip6);
        }
    }
    // Packets stages handed back: decapsulated ones (reenter4 / reenter6) go
    // the whole path again; built ones (ICMP errors, reroute4 / reroute6)
    // the route path, where errors about them are suppressed. A pass may
    // hand back more; a few passes at most.
    for (unsigned pass = 0; (again4_.n | again6_.n | gen4_.n | gen6_.n) != 0; pass++) {
        if (pass == kMaxReentries) {
            for (Burst *b : {&again4_, &again6_, &gen4_, &gen6_}) {
                for (uint16_t i = 0; i < b->n; i++) {
                    drop(b->pkts[i], DropReason::kReentryLoop);
                }
                b->n = 0;
            }
            break;
        }
        Burst b4 = again4_, b6 = again6_;
        again4_.n = again6_.n = 0;
        if (b4.n) {
            ip_path<Profile, false>(b4);
        }
        if (b6.n) {
            ip_path<Profile, true>(b6);
        }
        if (gen4_.n || gen6_.n) {
            timed<Profile>(idx(Stage::kIcmpErrors), gen4_.n + gen6_.n, [&] {
                route_built<false>(gen4_);
                route_built<true>(gen6_);
            });
        }
    }
}

void Worker::process(rte_mbuf **pkts, uint16_t n) {
    profile_ = stage_stats_.load(std::memory_order_acquire);
    if (profile_) {
        process_impl<true>(pkts, n);
    } else {
        process_impl<false>(pkts, n);
    }
}

template <bool Profile>
uint16_t Worker::rx_queue(uint16_t port, uint16_t queue, QueueLoad &ld, uint64_t &empty_calls,
                          uint64_t &empty_cycles) {
    rte_mbuf *pkts[kBurst];
    uint64_t start = 0;
    // One poll in 8 is timed for the queue's load (by count: two rdtsc of
    // about 25 cycles each would be 1.5 cycles a packet of a 32-packet burst
    // if every poll were timed; sampled, about 0.2).
    const bool sample = ((++ld.polls) & ((1u << kLoadSampleShift) - 1)) == 0;
    if (Profile || sample) {
        start = rte_rdtsc();
    }
    uint16_t n = rx_burst(port, queue, pkts);
    if constexpr (Profile) {
        uint64_t cycles = rte_rdtsc() - start;
        if (n != 0) {
            WorkerStats::StageCounters &c = stats_.stages[idx(Stage::kRx)];
            c.calls.inc();
            c.packets.add(n);
            c.cycles.add(cycles);
        } else {
            empty_calls++;
            empty_cycles += cycles;
        }
    }
    if (n == 0) {
        return 0;
    }
    stats_.rx_packets.add(n);
    ld.packets += n;
    if (uint8_t armed = taps_armed(TapPoint::kRx); unlikely(armed != 0)) {
        run_taps<Profile>(TapPoint::kRx, armed, port, pkts, n);
    }
    process_impl<Profile>(pkts, n);
    if (sample) {
        ld.cycles += (rte_rdtsc() - start) << kLoadSampleShift;
    }
    return n;
}

template <bool Profile>
uint16_t Worker::poll_once_impl() {
    uint16_t nq = n_rxq_.load(std::memory_order_relaxed);
    if (nq > kReadyPollQueues && can_block() && n_armable_ == 0) {
        return poll_ready_impl<Profile>();
    }
    uint16_t total = 0;
    // Empty RX calls count (as kRxEmpty) only if the loop turns out busy.
    uint64_t empty_calls = 0;
    uint64_t empty_cycles = 0;
    const bool busy = last_busy_;
    for (uint16_t q = 0; q < nq; q++) {
        RxQueueRef &r = rxq_[q];
        if (busy && r.skip != 0) {
            r.skip--;
            continue;
        }
        const uint16_t n =
            rx_queue<Profile>(r.port, r.queue, load_[r.slot], empty_calls, empty_cycles);
        if (n == 0) {
            r.backoff = static_cast<uint16_t>(
                std::min<uint32_t>(std::max<uint32_t>(r.backoff * 2u, 1u), kMaxRxSkip));
            r.skip = r.backoff;
            continue;
        }
        r.backoff = 0;
        r.skip = 0;  // an empty poll in an idle loop left one: it has packets now
        total += n;
    }
    if constexpr (Profile) {
        // Only busy loops are profiled: what an idle loop sends or frees (left
        // by a command) is not in busy_cycles, so in no stage either. Stays
        // so for the rest of the loop (housekeeping).
        profile_ = total != 0;
    }
    flush_tx();
    if constexpr (Profile) {
        if (total != 0 && empty_calls != 0) {
            WorkerStats::StageCounters &c = stats_.stages[idx(Stage::kRxEmpty)];
            c.calls.add(empty_calls);
            c.cycles.add(empty_cycles);
        }
    }
    last_busy_ = total != 0;
    return total;
}

// The fds are level-triggered: a queue with frames left after its burst is
// listed again next time, and epoll hands out the ready ones in turn, so
// none waits for ever behind kReadyEvents others. Only owned queues are
// listed: the worker itself takes a queue's fd out when a command takes the
// queue (unwatch_rx), never between this epoll_wait and the reads.
template <bool Profile>
uint16_t Worker::poll_ready_impl() {
    epoll_event ev[kReadyEvents];
    const int got = epoll_wait(epoll_fd_, ev, kReadyEvents, 0);
    uint16_t total = 0;
    uint64_t empty_calls = 0;
    uint64_t empty_cycles = 0;
    for (int i = 0; i < got; i++) {
        const uint64_t tag = ev[i].data.u64;
        if (tag == kWakeTag) {
            clear_wake();  // a stale wake: the commands are drained in housekeeping
            continue;
        }
        total +=
            rx_queue<Profile>(static_cast<uint16_t>(tag >> 16), static_cast<uint16_t>(tag & 0xffff),
                              load_[(tag >> 32) % kMaxRxQueues], empty_calls, empty_cycles);
    }
    if constexpr (Profile) {
        profile_ = total != 0;
    }
    flush_tx();
    last_busy_ = total != 0;
    return total;
}

uint16_t Worker::poll_once() {
    profile_ = stage_stats_.load(std::memory_order_acquire);
    return profile_ ? poll_once_impl<true>() : poll_once_impl<false>();
}

void Worker::idle_backoff(bool got_packets) {
    if (got_packets || !idle_.enabled) {
        empty_polls_ = 0;
        sleep_us_ = 1;
        return;
    }
    empty_polls_++;
    if (empty_polls_ <= idle_.spin_polls) {
        return;
    }
    if (empty_polls_ <= idle_.spin_polls + idle_.pause_polls) {
        rte_pause();
        return;
    }
    // Blocked as soon as the spinning is over, as l3fwd-power turns to RX
    // interrupts. Measured against waiting first for the sleeps to reach
    // max_sleep_us, or for 20 sleeps (about 10 ms) without a packet: no
    // difference in one TCP stream between two tun pods beyond this
    // machine's noise (alternating runs, 7 to 12 Gbit/s either way), and an
    // idle node with 10 tun pods at 0.6-0.8% of a core against 1.4%.
    if (can_block()) {
        const Blocked b = block();
        if (b != Blocked::kUnable) {
            return;  // waited, or frames wait on an armable queue: poll again
        }
    }
    // Sleep, going offline for RCU so the control thread never waits on a
    // sleeping worker.
    stats_.sleeps.inc();
    if (qsbr_ != nullptr) {
        rte_rcu_qsbr_thread_offline(qsbr_, index_);
        online_ = false;
    }
    timespec ts{0, static_cast<long>(sleep_us_) * 1000};
    nanosleep(&ts, nullptr);
    sleep_us_ = std::min(sleep_us_ * 2, std::max(idle_.max_sleep_us, 1u));
    if (qsbr_ != nullptr) {
        rte_rcu_qsbr_thread_online(qsbr_, index_);
        online_ = true;
    }
}

// Waits in epoll_wait for an RX queue to have frames, a command (post) or
// stop, at most max_block_ms; offline for RCU meanwhile, as a sleep is.
// Everything was flushed (poll_once's flush_tx) and every queue came back
// empty just before: the fds are level-triggered, so frames that came in
// since end the wait at once.
//
// Armable queues (PortArmFn: vhost-user) are armed first, online, and a dup
// of each one's fd joins the epoll set for this block only; a queue with
// frames waiting cancels the block (kBusy), one that cannot be armed turns it
// into a sleep (kUnable). After the wait, online again, each is disarmed
// (its fd drained if it fired) and its dup closed. The dup, not the
// driver's fd, is what the set holds: the driver's may be closed meanwhile
// (the peer left) and its number reused, while the dup keeps the file that
// was armed until the worker itself takes it out.
Worker::Blocked Worker::arm_queues(uint16_t &n_armed) {
    n_armed = 0;
    const uint16_t n = n_rxq_.load(std::memory_order_relaxed);
    for (uint16_t i = 0; i < n; i++) {
        const RxQueueRef &r = rxq_[i];
        if (!r.armable) {
            continue;
        }
        const PortState &ps = tables_.port(r.port);
        const Pipeline::Driver &d =
            pipeline_.drivers[ps.driver < pipeline_.drivers.size() ? ps.driver : 0];
        if (d.arm == nullptr) {
            continue;  // the port's driver was taken off (retired): nothing comes
        }
        const int fd = d.arm(ps.driver_ctx, r.queue);
        if (fd == kArmNone) {
            continue;
        }
        if (fd < 0) {
            return fd == kArmBusy ? Blocked::kBusy : Blocked::kUnable;
        }
        const int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kArmedTag | n_armed;
        if (dup < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, dup, &ev) != 0) {
            if (dup >= 0) {
                ::close(dup);
            }
            d.disarm(ps.driver_ctx, r.queue, -1, false);
            return Blocked::kUnable;
        }
        armed_[n_armed++] = Armed{i, dup, false};
    }
    return Blocked::kYes;
}

void Worker::disarm_queues(uint16_t n_armed) {
    for (uint16_t k = 0; k < n_armed; k++) {
        const Armed &a = armed_[k];
        const RxQueueRef &r = rxq_[a.rxq];
        (void)epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, a.fd, nullptr);
        const PortState &ps = tables_.port(r.port);
        const Pipeline::Driver &d =
            pipeline_.drivers[ps.driver < pipeline_.drivers.size() ? ps.driver : 0];
        if (d.disarm != nullptr) {
            d.disarm(ps.driver_ctx, r.queue, a.fd, a.fired);
        }
        ::close(a.fd);
    }
}

Worker::Blocked Worker::block() {
    uint16_t n_armed = 0;
    if (n_armable_ != 0) {
        const Blocked b = arm_queues(n_armed);
        if (b != Blocked::kYes) {
            disarm_queues(n_armed);
            return b;
        }
    }
    stats_.sleeps.inc();
    stats_.blocks.inc();
    if (qsbr_ != nullptr) {
        rte_rcu_qsbr_thread_offline(qsbr_, index_);
        online_ = false;
    }
    // No rte_eth_dev_rx_intr_enable / _disable around the wait: the only
    // ethdevs with RX interrupts are net_tap's (vhost::setup), whose fd is
    // always readable while frames wait (the calls are -ENOTSUP there). A
    // PMD whose interrupt must be armed would need them.
    blocked_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);  // pairs with wake()'s
    if (cmds_.read_available() == 0 && running_.load(std::memory_order_relaxed)) {
        epoll_event ev[8];
        const int got = epoll_wait(epoll_fd_, ev, 8, static_cast<int>(idle_.max_block_ms));
        // More armed fds may be readable than the 8 events list: each is
        // then checked at disarm (a drain tests before it reads).
        const bool many = got == 8;
        for (int i = 0; i < got; i++) {
            const uint64_t tag = ev[i].data.u64;
            if (tag == kWakeTag) {
                clear_wake();
            } else if ((tag & kArmedTag) != 0 && (tag & 0xffff) < n_armed) {
                armed_[tag & 0xffff].fired = true;
            }
        }
        if (got > 0) {
            stats_.wakeups.inc();
        }
        for (uint16_t k = 0; many && k < n_armed; k++) {
            armed_[k].fired = true;
        }
    }
    blocked_.store(false, std::memory_order_relaxed);
    if (qsbr_ != nullptr) {
        rte_rcu_qsbr_thread_online(qsbr_, index_);
        online_ = true;
    }
    disarm_queues(n_armed);
    return Blocked::kYes;
}

template <bool Profile>
uint16_t Worker::run_once_impl() {
    uint64_t start = 0;
    if constexpr (Profile) {
        start = rte_rdtsc();
    }
    uint16_t n = poll_once_impl<Profile>();
    if (n) {
        stats_.busy_polls.inc();
    } else {
        stats_.idle_polls.inc();
    }
    if (n == 0 || ++loops_ >= kHousekeepLoops) {
        loops_ = 0;
        heartbeat_tsc_.store(rte_rdtsc(), std::memory_order_relaxed);
        drain_commands();
        for (uint8_t i = 0; i < pipeline_.n_housekeeping; i++) {
            pipeline_.housekeeping[i](*this);
        }
        if (qsbr_ != nullptr) {
            rte_rcu_qsbr_quiescent(qsbr_, index_);
        }
    }
    idle_backoff(n != 0);
    if constexpr (Profile) {
        if (n != 0) {
            stats_.busy_loops.inc();
            stats_.busy_cycles.add(rte_rdtsc() - start);
        }
    }
    return n;
}

uint16_t Worker::run_once() {
    profile_ = stage_stats_.load(std::memory_order_acquire);
    return profile_ ? run_once_impl<true>() : run_once_impl<false>();
}

void Worker::run() {
    if (qsbr_ != nullptr) {
        rte_rcu_qsbr_thread_register(qsbr_, index_);
        rte_rcu_qsbr_thread_online(qsbr_, index_);
    }
    while (running_.load(std::memory_order_acquire)) {
        run_once();
    }
    // Leave nothing behind for the control thread to wait on.
    profile_ = false;
    drain_commands();
    flush_tx();
    if (qsbr_ != nullptr) {
        rte_rcu_qsbr_thread_offline(qsbr_, index_);
        rte_rcu_qsbr_thread_unregister(qsbr_, index_);
    }
}

}  // namespace fwd::dp
