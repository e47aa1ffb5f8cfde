#include "fwd/control/controller.hpp"

#include <poll.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "api_args.hpp"
#include "fwd/dp/drop.hpp"
#include "fwd/vhost/netns.hpp"
#include "fwd/vhost/pod_port.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

constexpr auto kAckTimeout = std::chrono::seconds(5);

// The largest pod MTU the API allows: the shared pod tap carries it, since a
// macvlan's MTU cannot exceed its lower interface's.
constexpr uint16_t kMaxPodMtu = 9000;
// Every pod's macvlan sends through the shared tap's queues: longer than the
// 1000 packets one pod's tap had.
constexpr uint32_t kPodTapTxQueueLen = 10000;

bool valid_id(const std::string &id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    for (char c : id) {
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

net::MacAddr random_pod_mac() {
    static std::mt19937_64 rng{std::random_device{}()};
    uint64_t r = rng();
    std::array<uint8_t, 6> b;
    for (int i = 0; i < 6; i++) {
        b[i] = static_cast<uint8_t>(r >> (i * 8));
    }
    b[0] = (b[0] & 0xfe) | 0x02;  // unicast, locally administered
    return net::MacAddr(b);
}

dp::NextHop make_nh(dp::NhKind kind, uint16_t port, const net::MacAddr &dst,
                    const net::MacAddr &src, uint16_t mtu, uint16_t vlan) {
    dp::NextHop nh{};
    nh.kind = kind;
    nh.port = port;
    nh.dst_mac = dst.bytes();
    nh.src_mac = src.bytes();
    nh.mtu = mtu;
    nh.vlan = vlan;
    return nh;
}

// The args of stats.stages: {"enabled": true|false}.
bool stage_stats_arg(const json &args) {
    check_known(args, {"enabled"});
    auto it = args.find("enabled");
    if (it == args.end() || it->is_null()) {
        bad("missing field 'enabled'");
    }
    if (!it->is_boolean()) {
        bad(std::string("field 'enabled' must be true or false, got ") + it->type_name());
    }
    return it->get<bool>();
}

json stage_json(const dp::WorkerStats::StageCounters &c) {
    return json{{"calls", c.calls.get()}, {"packets", c.packets.get()}, {"cycles", c.cycles.get()}};
}

}  // namespace

const std::vector<std::string> &Controller::ops() {
    static const std::vector<std::string> kOps = {
        "endpoint.add", "endpoint.del", "endpoint.get", "endpoint.list", "route.add",
        "route.del",    "route.list",   "node.get",     "neighbor.list", "tables",
        "stats",        "stats.stages", "version"};
    return kOps;
}

Controller::Controller(const NodeConfig &cfg, dp::Tables &tables, std::vector<dp::Worker *> workers,
                       rte_mempool *pool)
    : cfg_(cfg), tables_(tables), workers_(std::move(workers)), pool_(pool) {
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
        throw std::system_error(errno, std::generic_category(), "eventfd");
    }
    for (dp::Worker *w : workers_) {
        w->set_stage_stats(cfg_.stage_stats);
    }
}

Controller::~Controller() {
    if (wake_fd_ >= 0) {
        close(wake_fd_);
    }
}

void Controller::start() {
    if (cfg_.uplink) {
        const UplinkConfig &u = *cfg_.uplink;
        vhost::PortSpec spec;
        spec.rx_queues = u.rx_queues;
        spec.tx_queues = static_cast<uint16_t>(workers_.size());
        spec.pool = pool_;
        auto info = vhost::create_port_from_devargs(u.devargs, spec);
        uplink_port_ = info.port_id;
        uplink_mac_ = u.mac ? *u.mac : info.mac;
        if (u.mac) {
            rte_ether_addr a;
            std::memcpy(a.addr_bytes, u.mac->data(), 6);
            rte_eth_dev_default_mac_addr_set(info.port_id, &a);
        }
        dp::PortState &ps = tables_.port_mut(info.port_id);
        ps.mac = uplink_mac_.bytes();
        ps.vlan = u.vlan.value_or(0);
        ps.role.store(dp::PortRole::kUplink, std::memory_order_release);
        for (size_t w = 0; w < cfg_.workers.size(); w++) {
            for (const auto &q : cfg_.workers[w].rx) {
                dp::WorkerCommand c{dp::WorkerCommand::Kind::kAddRxQueue, info.port_id, q.queue, 0};
                workers_[w]->post(c);
            }
        }
    }
    start_pod_tap();
    dp::NextHop bh{};
    bh.kind = dp::NhKind::kBlackhole;
    blackhole_nh_ = tables_.nh_alloc(bh);
    dp::NextHop un{};
    un.kind = dp::NhKind::kUnreachable;
    unreachable_nh_ = tables_.nh_alloc(un);
    start_slow_path();
    add_static_routes();
}

// One net_tap for every kernel pod; its kernel interface stays here and each
// pod gets a macvlan on it (vhost::add_pod_macvlan). One ethdev instead of
// one per pod: Debian's DPDK has 32 ports in all.
void Controller::start_pod_tap() {
    vhost::PortSpec spec;
    spec.kind = vhost::PortKind::kTap;
    spec.token = "pods";
    spec.tap_ifname = cfg_.pod_tap;
    // One queue pair per worker, worker w polls RX queue w: the kernel
    // spreads the pods' flows over the queues by hash, so every queue must be
    // polled, and the tap PMD wants as many RX as TX queues.
    spec.rx_queues = static_cast<uint16_t>(workers_.size());
    spec.tx_queues = static_cast<uint16_t>(workers_.size());
    spec.pool = pool_;
    spec.rx_scatter = true;
    // With RX scatter a tap's rx_desc is the most mbufs one frame may take
    // (the kernel queues the frames, not the PMD): enough for the largest
    // frame, and no more pinned per queue.
    const uint32_t room = rte_pktmbuf_data_room_size(pool_) - RTE_PKTMBUF_HEADROOM;
    const uint32_t frame = kMaxPodMtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN + RTE_ETHER_CRC_LEN;
    spec.rx_desc = static_cast<uint16_t>(std::max<uint32_t>(4, (frame + room - 1) / room + 1));
    spec.tx_desc = 512;
    vhost::PortInfo info;
    try {
        info = vhost::create_port(spec);
    } catch (const std::exception &ex) {
        throw std::runtime_error(std::string("pod tap: ") + ex.what());
    }
    pod_port_ = info.port_id;
    try {
        vhost::configure_pod_lower(cfg_.pod_tap, kMaxPodMtu, kPodTapTxQueueLen);
    } catch (const std::exception &ex) {
        vhost::destroy_port(info.port_id);
        pod_port_.reset();
        throw std::runtime_error(std::string("pod tap: ") + ex.what());
    }
    dp::PortState &ps = tables_.port_mut(info.port_id);
    ps.mac = net::kCalicoGatewayMac.bytes();
    ps.vlan = 0;
    ps.tx_shared = false;
    ps.role.store(dp::PortRole::kPod, std::memory_order_release);
    // The workers do not run yet: their rings take the commands for later.
    for (unsigned w = 0; w < workers_.size(); w++) {
        workers_[w]->post(
            {dp::WorkerCommand::Kind::kAddRxQueue, info.port_id, static_cast<uint16_t>(w), 0});
    }
}

// After every endpoint is gone. Destroying the tap deletes the macvlans still
// on it, in whichever namespace they are.
void Controller::stop_pod_tap() {
    if (!pod_port_) {
        return;
    }
    tables_.port_mut(*pod_port_).role.store(dp::PortRole::kNone, std::memory_order_release);
    tables_.synchronize();
    for (unsigned w = 0; w < workers_.size(); w++) {
        try {
            worker_do(w, {dp::WorkerCommand::Kind::kDropPort, *pod_port_, 0, 0});
        } catch (const std::exception &) {
            // A stuck worker is reported by its own stats; keep tearing down.
        }
    }
    tables_.synchronize();
    try {
        vhost::destroy_port(*pod_port_);
    } catch (const std::exception &) {
        // Shutting down: the EAL cleans up the rest.
    }
    pod_port_.reset();
}

void Controller::add_static_routes() {
    for (const auto &r : cfg_.routes) {
        RouteTarget t = r.kind == RouteKind::kBlackhole     ? RouteTarget::blackhole()
                        : r.kind == RouteKind::kUnreachable ? RouteTarget::unreachable()
                                                            : RouteTarget::via({*r.via}, r.mac);
        rib_.set(r.prefix, RouteSource::kStatic, t);
    }
    auto failed = publish();
    if (!failed.empty()) {
        throw std::runtime_error("cannot add static route " + prefix_str(failed[0].first) + ": " +
                                 failed[0].second);
    }
}

void Controller::shutdown() {
    if (watcher_) {
        watcher_->stop();
    }
    for (auto type : {RTE_ETH_EVENT_INTR_LSC, RTE_ETH_EVENT_QUEUE_STATE}) {
        rte_eth_dev_callback_unregister(RTE_ETH_ALL, type, on_port_event, this);
    }
    while (!endpoints_.empty()) {
        remove_endpoint(endpoints_.begin()->second, false);
        endpoints_.erase(endpoints_.begin());
    }
    stop_pod_tap();
    if (uplink_port_) {
        tables_.port_mut(*uplink_port_).role.store(dp::PortRole::kNone, std::memory_order_release);
        for (unsigned w = 0; w < workers_.size(); w++) {
            worker_do(w, {dp::WorkerCommand::Kind::kDropPort, *uplink_port_, 0, 0});
        }
        tables_.synchronize();
        try {
            vhost::destroy_port(*uplink_port_);
        } catch (const std::exception &) {
            // Shutting down: the EAL cleans up the rest.
        }
        uplink_port_.reset();
    }
    // Every route out: neighbors give back the packets they parked.
    for (const auto &r : rib_.list()) {
        rib_.remove(r.prefix, r.source);
    }
    publish();
    neighbor_actions();
    for (auto *w : workers_) {
        rte_mbuf *m;
        while (w->pop_punt(m)) {
            rte_pktmbuf_free(m);
        }
    }
}

void Controller::stop() {
    running_.store(false, std::memory_order_release);
    uint64_t one = 1;
    [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof(one));
}

void Controller::run() {
    while (running_.load(std::memory_order_acquire)) {
        // Workers hand packets over without a wake-up (no syscalls on the packet
        // path): poll every millisecond right after punts, backing off to 10 ms
        // while none come (1, 2, 4, 8, 10 ms).
        int timeout = std::min(10, 1 << std::min(quiet_passes_, 4u));
        pollfd p[2] = {{wake_fd_, POLLIN, 0}, {host_ ? host_->fd() : -1, POLLIN, 0}};
        poll(p, 2, timeout);
        if (p[0].revents & POLLIN) {
            uint64_t v;
            [[maybe_unused]] auto n = read(wake_fd_, &v, sizeof(v));
        }
        Call *c;
        while (api_ring_.pop(c)) {
            try {
                c->reply.set_value(execute(c->op, c->args));
            } catch (...) {
                c->reply.set_exception(std::current_exception());
            }
        }
        drain_netlink();
        quiet_passes_ = slow_path_work() ? 0 : quiet_passes_ + 1;
    }
}

json Controller::call(const std::string &op, const json &args) {
    Call c{op, args, {}};
    auto fut = c.reply.get_future();
    // A full ring is back-pressure (counted): wait for the control thread to catch up.
    std::unique_lock producer(call_mu_);
    api_ring_.push_wait(
        &c,
        [this] {
            uint64_t one = 1;
            [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof(one));
        },
        [] { return false; });
    producer.unlock();
    return fut.get();
}

json Controller::execute(const std::string &op, const json &args) {
    if (op == "endpoint.add") {
        return endpoint_add(args);
    }
    if (op == "endpoint.del") {
        return endpoint_del(args);
    }
    if (op == "endpoint.get") {
        return endpoint_get(args);
    }
    if (op == "endpoint.list") {
        return endpoint_list();
    }
    if (op == "route.add") {
        return route_add(args);
    }
    if (op == "route.del") {
        return route_del(args);
    }
    if (op == "ipam.routes") {
        return ipam_routes(args);
    }
    if (op == "route.list") {
        return route_list(args);
    }
    if (op == "node.get") {
        check_known(args, {});
        return node_get();
    }
    if (op == "neighbor.list") {
        check_known(args, {});
        return neighbor_list();
    }
    if (op == "tables") {
        check_known(args, {});
        return tables_get();
    }
    if (op == "stats") {
        return stats();
    }
    if (op == "stats.stages") {
        bool on = stage_stats_arg(args);
        for (dp::Worker *w : workers_) {
            w->set_stage_stats(on);
        }
        // Live once each worker acknowledged a command posted after the store.
        for (unsigned w = 0; w < workers_.size(); w++) {
            worker_do(w, {dp::WorkerCommand::Kind::kSync, 0, 0, 0});
        }
        return json{{"stage_stats", on}};
    }
    if (op == "version") {
        return json{{"version", FWD_VERSION}};
    }
    throw ApiError("unknown_op", "unknown op '" + op + "'");
}

void Controller::worker_do(unsigned w, dp::WorkerCommand c) {
    auto deadline = std::chrono::steady_clock::now() + kAckTimeout;
    uint64_t seq;
    while ((seq = workers_[w]->post(c)) == 0) {
        cnt_.worker_ring_full++;  // back-pressure: wait for the worker to drain it
        if (std::chrono::steady_clock::now() > deadline) {
            throw ApiError("unavailable", "worker " + std::to_string(w) + " command ring is full");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    while (workers_[w]->acked() < seq) {
        if (std::chrono::steady_clock::now() > deadline) {
            throw ApiError("unavailable",
                           "worker " + std::to_string(w) + " did not acknowledge a queue change");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
}

unsigned Controller::least_loaded_worker() const {
    unsigned best = 0;
    for (unsigned w = 1; w < workers_.size(); w++) {
        if (workers_[w]->rx_queue_count() < workers_[best]->rx_queue_count()) {
            best = w;
        }
    }
    return best;
}

json Controller::endpoint_add(const json &args) {
    check_known(args, {"id", "netns", "ifname", "ipv4", "ipv6", "kind", "mtu", "mac",
                       "vhost_socket", "vhost_mode", "owner"});
    Endpoint e;
    e.id = get_str(args, "id", true);
    if (!valid_id(e.id)) {
        bad("id '" + e.id + "' must be 1-128 characters of [A-Za-z0-9._-]");
    }
    if (endpoints_.count(e.id)) {
        throw ApiError("already_exists", "endpoint '" + e.id + "' already exists");
    }
    if (endpoints_.size() >= cfg_.max_endpoints) {
        throw ApiError("unavailable", "endpoint limit reached (max_endpoints " +
                                          std::to_string(cfg_.max_endpoints) + ")");
    }
    e.kind = get_str(args, "kind", false, "tap");
    if (e.kind != "tap" && e.kind != "vhost-user") {
        bad("kind must be 'tap' or 'vhost-user', got '" + e.kind + "'");
    }
    bool tap = e.kind == "tap";
    e.netns = get_str(args, "netns", tap);
    e.ifname = get_str(args, "ifname", false, "eth0");
    if (e.ifname.empty() || e.ifname.size() > 15 || e.ifname.find('/') != std::string::npos) {
        bad("ifname '" + e.ifname + "' is not a valid interface name (1-15 characters, no '/')");
    }
    auto v4 = get_str(args, "ipv4", false);
    auto v6 = get_str(args, "ipv6", false);
    if (v4.empty() && v6.empty()) {
        bad("an endpoint needs ipv4, ipv6 or both");
    }
    if (!v4.empty()) {
        e.ipv4 = net::Ip4Addr::parse(v4);
        if (!e.ipv4) {
            bad("ipv4 '" + v4 + "' is not an IPv4 address");
        }
    }
    if (!v6.empty()) {
        e.ipv6 = net::Ip6Addr::parse(v6);
        if (!e.ipv6 || e.ipv6->is_link_local() || e.ipv6->is_multicast()) {
            bad("ipv6 '" + v6 + "' is not a global unicast IPv6 address");
        }
    }
    for (const auto &[id, o] : endpoints_) {
        if ((e.ipv4 && o.ipv4 == e.ipv4) || (e.ipv6 && o.ipv6 == e.ipv6)) {
            throw ApiError("already_exists", "address already used by endpoint '" + id + "'");
        }
    }
    e.mtu = cfg_.mtu;
    if (auto it = args.find("mtu"); it != args.end() && !it->is_null()) {
        if (!it->is_number_integer() || *it < 576 || *it > kMaxPodMtu) {
            bad("mtu must be an integer from 576 to " + std::to_string(kMaxPodMtu) + ", got " +
                it->dump());
        }
        e.mtu = it->get<uint16_t>();
        if (e.ipv6 && e.mtu < 1280) {
            bad("mtu must be at least 1280 with IPv6, got " + it->dump());
        }
    }
    auto mac = get_str(args, "mac", !tap);
    if (!mac.empty()) {
        auto m = net::MacAddr::parse(mac);
        if (!m || m->is_multicast() || m->is_zero()) {
            bad("mac '" + mac + "' is not a unicast MAC address");
        }
        e.mac = *m;
    } else {
        e.mac = random_pod_mac();
    }
    if (tap) {
        // The shared tap tells kernel pods apart by MAC alone.
        for (const auto &[id, o] : endpoints_) {
            if (o.kind == "tap" && o.mac == e.mac) {
                throw ApiError("already_exists",
                               "mac " + e.mac.str() + " already used by endpoint '" + id + "'");
            }
        }
    }
    auto mode = get_str(args, "vhost_mode", false, "server");
    if (mode != "server" && mode != "client") {
        bad("vhost_mode must be 'server' or 'client', got '" + mode + "'");
    }
    e.vhost_client = mode == "client";
    if (auto it = args.find("owner"); it != args.end() && !it->is_null()) {
        if (!it->is_object() || it->size() > 16) {
            bad("owner must be an object of at most 16 strings");
        }
        for (const auto &[k, v] : it->items()) {
            if (!v.is_string() || k.size() > 64 || v.get_ref<const std::string &>().size() > 256) {
                bad("owner." + k + " must be a string of at most 256 characters");
            }
        }
        e.owner = *it;
    }

    e.rx_queues = 1;
    e.worker = 0;
    uint16_t tx_queues = static_cast<uint16_t>(workers_.size());
    if (tap) {
        if (!pod_port_) {
            throw ApiError("unavailable", "no pod tap: the daemon has not started");
        }
        e.port_id = *pod_port_;
        e.host_ifname = cfg_.pod_tap;
        e.rx_queues = static_cast<uint16_t>(workers_.size());
    } else {
        vhost::PortSpec spec;
        spec.token = "p" + std::to_string(next_token_++);
        spec.kind = vhost::PortKind::kVhostUser;
        // One queue pair: what every virtio peer enables; workers share its TX queue.
        spec.rx_queues = 1;
        spec.tx_queues = 1;
        tx_queues = 1;
        spec.pool = pool_;
        spec.rx_desc = 256;
        spec.tx_desc = 512;
        e.vhost_socket = get_str(args, "vhost_socket", false, cfg_.run_dir + "/" + e.id + ".sock");
        spec.vhost_socket = e.vhost_socket;
        spec.vhost_client = e.vhost_client;
        try {
            e.port_id = vhost::create_port(spec).port_id;
        } catch (const std::exception &ex) {
            throw ApiError("invalid_argument",
                           std::string("cannot create the pod port: ") + ex.what());
        }
        e.own_port = true;
    }
    // From here on, every failure undoes what was done before it.
    try {
        if (tap) {
            vhost::PodIfConfig pc;
            pc.netns = e.netns;
            pc.ifname = e.ifname;
            pc.mac = e.mac;
            pc.mtu = e.mtu;
            pc.ipv4 = e.ipv4;
            pc.ipv6 = e.ipv6;
            try {
                e.pod_ifindex = vhost::add_pod_macvlan(cfg_.pod_tap, pc);
            } catch (const std::exception &ex) {
                throw ApiError("invalid_argument", ex.what());
            }
        } else {
            dp::PortState &ps = tables_.port_mut(e.port_id);
            ps.mac = net::kCalicoGatewayMac.bytes();
            ps.vlan = 0;
            ps.tx_shared = tx_queues < workers_.size();
            ps.role.store(dp::PortRole::kPod, std::memory_order_release);
        }
        e.nh = tables_.nh_alloc(
            make_nh(dp::NhKind::kPod, e.port_id, e.mac, net::kCalicoGatewayMac, e.mtu, 0));
        if (e.nh == dp::kNhInvalid) {
            throw ApiError("unavailable", "next-hop table full");
        }
        if (e.ipv4) {
            rib_.set(net::Prefix4{*e.ipv4, 32}, RouteSource::kEndpoint, RouteTarget::pod(e.nh));
        }
        if (e.ipv6) {
            rib_.set(net::Prefix6{*e.ipv6, 128}, RouteSource::kEndpoint, RouteTarget::pod(e.nh));
        }
        if (auto failed = publish(); !failed.empty()) {
            throw ApiError("unavailable", "cannot add route " + prefix_str(failed[0].first) + ": " +
                                              failed[0].second);
        }
        if (e.own_port) {
            e.worker = least_loaded_worker();
            worker_do(e.worker, {dp::WorkerCommand::Kind::kAddRxQueue, e.port_id, 0, 0});
        }
    } catch (...) {
        remove_endpoint(e);
        throw;
    }
    auto [it, ok] = endpoints_.emplace(e.id, e);
    return endpoint_json(it->second);
}

// Undoes an endpoint in reverse order; every step tolerates "was never done".
void Controller::remove_endpoint(Endpoint &e, bool with_link) {
    if (e.ipv4) {
        rib_.remove(net::Prefix4{*e.ipv4, 32}, RouteSource::kEndpoint);
    }
    if (e.ipv6) {
        rib_.remove(net::Prefix6{*e.ipv6, 128}, RouteSource::kEndpoint);
    }
    publish();
    if (!e.own_port) {
        // The shared tap stays. Once no lookup returns the next hop it can go;
        // frames to the pod's MAC still in a TX buffer reach no macvlan and
        // the kernel drops them.
        tables_.synchronize();
        tables_.nh_free(e.nh);
        e.nh = dp::kNhInvalid;
        if (with_link && e.pod_ifindex != 0) {
            try {
                vhost::delete_pod_macvlan(e.netns, e.pod_ifindex, e.mac);
            } catch (const std::exception &) {
                // The namespace is unreachable: the macvlan goes with it, or
                // with the shared tap at shutdown.
            }
            e.pod_ifindex = 0;
        }
        return;
    }
    tables_.port_mut(e.port_id).role.store(dp::PortRole::kNone, std::memory_order_release);
    // Every worker: no lookup still returns the routes, no TX buffer holds the port.
    tables_.synchronize();
    for (unsigned w = 0; w < workers_.size(); w++) {
        try {
            worker_do(w, {dp::WorkerCommand::Kind::kDropPort, e.port_id, 0, 0});
        } catch (const std::exception &) {
            // A stuck worker is reported by its own stats; keep tearing down.
        }
    }
    tables_.synchronize();
    tables_.nh_free(e.nh);
    e.nh = dp::kNhInvalid;
    try {
        vhost::destroy_port(e.port_id);
    } catch (const std::exception &) {
        // destroy_port attempted every step; what is left is the EAL's.
    }
}

json Controller::endpoint_del(const json &args) {
    check_known(args, {"id"});
    auto id = get_str(args, "id", true);
    auto it = endpoints_.find(id);
    if (it == endpoints_.end()) {
        throw ApiError("not_found", "no endpoint '" + id + "'");
    }
    remove_endpoint(it->second);
    endpoints_.erase(it);
    return json{{"id", id}, {"deleted", true}};
}

json Controller::endpoint_get(const json &args) {
    check_known(args, {"id"});
    auto id = get_str(args, "id", true);
    auto it = endpoints_.find(id);
    if (it == endpoints_.end()) {
        throw ApiError("not_found", "no endpoint '" + id + "'");
    }
    return endpoint_json(it->second);
}

json Controller::endpoint_list() {
    json list = json::array();
    for (const auto &[id, e] : endpoints_) {
        list.push_back(endpoint_json(e));
    }
    return json{{"endpoints", list}};
}

json Controller::endpoint_json(const Endpoint &e) const {
    json j{
        {"id", e.id},   {"kind", e.kind},       {"ifname", e.ifname}, {"mac", e.mac.str()},
        {"mtu", e.mtu}, {"port_id", e.port_id}, {"worker", e.worker}, {"rx_queues", e.rx_queues}};
    j["netns"] = e.netns.empty() ? json() : json(e.netns);
    j["ipv4"] = e.ipv4 ? json(e.ipv4->str()) : json();
    j["ipv6"] = e.ipv6 ? json(e.ipv6->str()) : json();
    j["host_ifname"] = e.host_ifname.empty() ? json() : json(e.host_ifname);
    j["vhost_socket"] = e.vhost_socket.empty() ? json() : json(e.vhost_socket);
    // "shared": a macvlan on the shared pod tap (host_ifname); "own": a port of its own.
    j["port"] = e.own_port ? "own" : "shared";
    j["owner"] = e.owner;
    return j;
}

json Controller::stats() {
    json ports = json::array();
    uint16_t pid;
    RTE_ETH_FOREACH_DEV(pid) {
        rte_eth_stats st{};
        rte_eth_stats_get(pid, &st);
        char name[RTE_ETH_NAME_MAX_LEN] = {};
        rte_eth_dev_get_name_by_port(pid, name);
        auto role = tables_.port(pid).role.load(std::memory_order_acquire);
        ports.push_back(json{{"port_id", pid},
                             {"name", name},
                             {"kind", role == dp::PortRole::kUplink ? "uplink"
                                      : role == dp::PortRole::kPod  ? "pod"
                                                                    : "none"},
                             {"rx_packets", st.ipackets},
                             {"rx_bytes", st.ibytes},
                             {"tx_packets", st.opackets},
                             {"tx_bytes", st.obytes},
                             {"rx_missed", st.imissed},
                             {"tx_errors", st.oerrors},
                             {"link", link_json(pid)}});
    }
    json workers = json::array();
    json drops = json::object();
    uint64_t icmp = 0;
    std::vector<uint64_t> total(dp::kDropReasonCount, 0);
    bool stage_stats = workers_.empty() ? cfg_.stage_stats : true;
    for (unsigned w = 0; w < workers_.size(); w++) {
        const dp::WorkerStats &s = workers_[w]->stats();
        stage_stats = stage_stats && workers_[w]->stage_stats();
        json stages = json::object();
        for (size_t i = 0; i < dp::kStageCount; i++) {
            stages[std::string(dp::kStageNames[i])] = stage_json(s.stages[i]);
        }
        workers.push_back(json{{"worker", w},
                               {"core", cfg_.workers[w].core},
                               {"rx_packets", s.rx_packets.get()},
                               {"tx_packets", s.tx_packets.get()},
                               {"busy_polls", s.busy_polls.get()},
                               {"idle_polls", s.idle_polls.get()},
                               {"sleeps", s.sleeps.get()},
                               {"punted", json{{"host", s.punted[0].get()},
                                               {"neighbor", s.punted[1].get()},
                                               {"resolve", s.punted[2].get()}}},
                               {"host_tx", s.host_tx.get()},
                               {"rx_queues", workers_[w]->rx_queue_count()},
                               {"busy_loops", s.busy_loops.get()},
                               {"busy_cycles", s.busy_cycles.get()},
                               {"stages", stages}});
        for (size_t r = 0; r < dp::kDropReasonCount; r++) {
            total[r] += s.drops[r].get();
        }
        icmp += s.icmp_errors_sent.get();
    }
    for (size_t r = 0; r < dp::kDropReasonCount; r++) {
        drops[std::string(dp::kDropReasonInfo[r].name)] = total[r];
    }
    json control{{"versions", cnt_.versions},
                 {"route_changes", cnt_.route_changes},
                 {"route_errors", cnt_.route_errors},
                 {"bgp_events", cnt_.bgp_events},
                 {"bgp_ignored", cnt_.bgp_ignored},
                 {"host_to_kernel", cnt_.host_to_kernel},
                 {"host_write_errors", cnt_.host_write_errors},
                 {"host_no_tap", cnt_.host_no_tap},
                 {"host_from_kernel", cnt_.host_from_kernel},
                 {"host_tx_dropped", cnt_.host_tx_dropped},
                 {"neigh_frames", cnt_.neigh_frames},
                 {"neigh_learned", cnt_.neigh_learned},
                 {"neigh_solicits", cnt_.neigh_solicits},
                 {"neigh_queued", cnt_.neigh_queued},
                 {"neigh_flushed", cnt_.neigh_flushed},
                 {"neigh_dropped", cnt_.neigh_dropped},
                 {"resolve_no_neighbor", cnt_.resolve_no_neighbor},
                 {"worker_ring_full", cnt_.worker_ring_full},
                 {"api_ring_full_waits", api_ring_.full_waits()},
                 {"port_ring_full_waits", port_ring_.full_waits()}};
    return json{{"ports", ports},
                {"workers", workers},
                {"drops", drops},
                {"icmp_errors_sent", icmp},
                {"control", control},
                {"tsc_hz", rte_get_tsc_hz()},
                {"stage_stats", stage_stats}};
}

json Controller::link_json(uint16_t port) {
    rte_eth_link link{};
    bool up = rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
    auto it = links_.find(port);
    return json{{"up", up}, {"events", it == links_.end() ? 0 : it->second.events}};
}

json Controller::node_get() {
    json j{{"node_name", cfg_.node_name}, {"mtu", cfg_.mtu}};
    j["ipv4"] = cfg_.node_ip4 ? json(cfg_.node_ip4->str()) : json();
    j["ipv6"] = cfg_.node_ip6 ? json(cfg_.node_ip6->str()) : json();
    if (uplink_port_) {
        j["uplink"] = json{{"port_id", *uplink_port_},
                           {"devargs", cfg_.uplink->devargs},
                           {"mac", uplink_mac_.str()},
                           {"link", link_json(*uplink_port_)},
                           {"vlan", cfg_.uplink->vlan ? json(*cfg_.uplink->vlan) : json()}};
    } else {
        j["uplink"] = json();
    }
    j["host_tap"] =
        host_ ? json{{"name", host_->name()}, {"punt_rate_pps", cfg_.host->punt_rate_pps}} : json();
    if (pod_port_) {
        size_t pods = 0;
        for (const auto &[id, e] : endpoints_) {
            pods += e.own_port ? 0 : 1;
        }
        j["pod_tap"] = json{{"name", cfg_.pod_tap},
                            {"port_id", *pod_port_},
                            {"mtu", kMaxPodMtu},
                            {"endpoints", pods}};
    } else {
        j["pod_tap"] = json();
    }
    j["bgp"] =
        cfg_.bgp ? json{{"table", cfg_.bgp->table}, {"protocols", cfg_.bgp->protocols}} : json();
    j["neighbors"] = neighbor_list()["neighbors"];
    j["ipam"] = ipam_status_ ? ipam_status_() : json();
    return j;
}

json Controller::neighbor_list() {
    json list = json::array();
    if (neigh_) {
        for (const auto &n : neigh_->list(now_ms())) {
            list.push_back(json{{"ip", n.ip.str()},
                                {"mac", n.mac ? json(n.mac->str()) : json()},
                                {"state", n.state},
                                {"refs", n.refs},
                                {"queued", n.queued},
                                {"probes", n.probes},
                                {"age_ms", n.age_ms}});
        }
    }
    return json{{"neighbors", list}};
}

}  // namespace fwd::control
