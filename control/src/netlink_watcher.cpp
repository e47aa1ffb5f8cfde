// The watcher thread: two NETLINK_ROUTE sockets in the watched netns, one subscribed to the
// route groups (notifications), one for dumps. Subscribing before dumping means a change
// made during the dump is both in the dump and queued on the notification socket; replaying
// it afterwards is harmless because kAdd is an upsert and kDel of an absent route a no-op.
#include "fwd/control/netlink_watcher.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netlink/addr.h>
#include <netlink/netlink.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include <algorithm>
#include <boost/lockfree/spsc_queue.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>

namespace fwd::control {
namespace {

// NLMSG_OK with its lengths compared at one signedness (the macro compares the header's
// unsigned length with the int left; clang warns where GCC hides a system macro's warnings).
bool nl_ok(const nlmsghdr *h, int left) {
    return left >= static_cast<int>(sizeof(nlmsghdr)) && h->nlmsg_len >= sizeof(nlmsghdr) &&
           h->nlmsg_len <= static_cast<unsigned>(left);
}

// One recvmsg returns one skb; a dump skb is at most a few pages, a notification much less.
constexpr size_t kRecvBufferBytes = 256 * 1024;
// How long the watcher sleeps between retries while the ring is full.
constexpr auto kBackpressureSleep = std::chrono::microseconds(50);

class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    ~UniqueFd() { reset(); }
    UniqueFd(UniqueFd &&o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd &operator=(UniqueFd &&o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) {
            close(fd_);
        }
        fd_ = -1;
    }

  private:
    int fd_ = -1;
};

struct NlSockDeleter {
    void operator()(nl_sock *s) const { nl_socket_free(s); }
};
using NlSockPtr = std::unique_ptr<nl_sock, NlSockDeleter>;

struct RouteDeleter {
    void operator()(rtnl_route *r) const { rtnl_route_put(r); }
};
using RoutePtr = std::unique_ptr<rtnl_route, RouteDeleter>;

// Unwinds the watcher thread out of a back-pressure wait when stop() is called.
struct Stopping {};

std::string netns_path(const std::string &netns) {
    if (netns.find('/') != std::string::npos) {
        return netns;
    }
    return "/var/run/netns/" + netns;
}

std::string errno_text(int err) {
    return std::strerror(err);
}

std::optional<net::IpAddr> to_ip(nl_addr *a) {
    if (a == nullptr) {
        return std::nullopt;
    }
    const auto *bytes = static_cast<const uint8_t *>(nl_addr_get_binary_addr(a));
    const unsigned len = nl_addr_get_len(a);
    if (nl_addr_get_family(a) == AF_INET && len == 4) {
        uint32_t be;
        std::memcpy(&be, bytes, 4);
        return net::IpAddr(net::Ip4Addr::from_be(net::Be32::from_raw(be)));
    }
    if (nl_addr_get_family(a) == AF_INET6 && len == 16) {
        return net::IpAddr(net::Ip6Addr::from_bytes(bytes));
    }
    return std::nullopt;
}

// A route's identity in the kernel within one table: routes with the same prefix and a
// different metric coexist.
using RouteKey = std::tuple<std::variant<net::Prefix4, net::Prefix6>, uint32_t>;

RouteKey key_of(const RouteEvent &e) {
    return {e.prefix, e.metric};
}

bool same_path(const RouteNextHop &a, const RouteNextHop &b) {
    return a.has_via == b.has_via && (!a.has_via || a.via == b.via) && a.ifindex == b.ifindex;
}

// Adds to `into` the paths of `from` it does not have yet.
void merge_paths(std::vector<RouteNextHop> &into, const std::vector<RouteNextHop> &from) {
    for (const auto &nh : from) {
        if (std::none_of(into.begin(), into.end(),
                         [&](const RouteNextHop &x) { return same_path(x, nh); })) {
            into.push_back(nh);
        }
    }
}

// A route message decoded, before the watcher's filter on protocol is applied.
struct Decoded {
    RouteEvent event;
    bool wanted = false;  // passes the table, type and protocol filter
};

// nullopt: not a route of interest at all (other family or table, cache, local, ...).
std::optional<Decoded> decode(nlmsghdr *nlh, const NetlinkWatcherConfig &config) {
    if (nlh->nlmsg_type != RTM_NEWROUTE && nlh->nlmsg_type != RTM_DELROUTE) {
        return std::nullopt;
    }
    rtnl_route *raw = nullptr;
    if (rtnl_route_parse(nlh, &raw) < 0 || raw == nullptr) {
        return std::nullopt;
    }
    RoutePtr route(raw);
    const int family = rtnl_route_get_family(route.get());
    if (family != AF_INET && family != AF_INET6) {
        return std::nullopt;
    }
    if (rtnl_route_get_table(route.get()) != config.table) {
        return std::nullopt;
    }
    if ((rtnl_route_get_flags(route.get()) & RTM_F_CLONED) != 0) {
        return std::nullopt;
    }
    const uint8_t type = rtnl_route_get_type(route.get());
    if (type != RTN_UNICAST && type != RTN_BLACKHOLE && type != RTN_UNREACHABLE) {
        return std::nullopt;
    }

    Decoded d;
    RouteEvent &e = d.event;
    e.kind = nlh->nlmsg_type == RTM_NEWROUTE ? RouteEvent::Kind::kAdd : RouteEvent::Kind::kDel;
    e.protocol = rtnl_route_get_protocol(route.get());
    e.table = config.table;
    e.metric = rtnl_route_get_priority(route.get());
    e.blackhole = type == RTN_BLACKHOLE;
    e.unreachable = type == RTN_UNREACHABLE;

    nl_addr *dst = rtnl_route_get_dst(route.get());
    const uint8_t len = dst != nullptr ? static_cast<uint8_t>(nl_addr_get_prefixlen(dst)) : 0;
    const auto addr = to_ip(dst);
    if (family == AF_INET) {
        const net::Ip4Addr a =
            addr && addr->family() == net::Family::kIp4 ? addr->v4() : net::Ip4Addr{};
        e.prefix = net::Prefix4{a.masked(len), len};
    } else {
        const net::Ip6Addr a =
            addr && addr->family() == net::Family::kIp6 ? addr->v6() : net::Ip6Addr{};
        e.prefix = net::Prefix6{a.masked(len), len};
    }

    const int n = rtnl_route_get_nnexthops(route.get());
    for (int i = 0; i < n; i++) {
        rtnl_nexthop *nh = rtnl_route_nexthop_n(route.get(), i);
        RouteNextHop hop;
        auto via = to_ip(rtnl_route_nh_get_gateway(nh));
        if (!via) {
            via = to_ip(rtnl_route_nh_get_via(nh));
        }
        if (via) {
            hop.via = *via;
            hop.has_via = true;
        }
        hop.ifindex = static_cast<uint32_t>(std::max(rtnl_route_nh_get_ifindex(nh), 0));
        hop.weight = static_cast<uint16_t>(rtnl_route_nh_get_weight(nh) + 1);
        e.nexthops.push_back(hop);
    }

    d.wanted = std::find(config.protocols.begin(), config.protocols.end(), e.protocol) !=
               config.protocols.end();
    return d;
}

}  // namespace

struct NetlinkWatcher::Impl {
    explicit Impl(NetlinkWatcher &owner)
        : owner(owner), ring(std::max<size_t>(owner.config_.ring_capacity, 2)) {}
    ~Impl() {
        RouteEvent *e = nullptr;
        while (ring.pop(e)) {
            delete e;
        }
    }

    void run(std::promise<void> &started);
    void setup();
    std::map<RouteKey, RouteEvent> dump();
    void publish_snapshot(std::map<RouteKey, RouteEvent> snapshot);
    void resync();
    void read_notifications();
    void handle(nlmsghdr *nlh);
    void push(RouteEvent event);
    void wake() {
        if (owner.wake_) {
            owner.wake_();
        }
    }
    [[noreturn]] void fail_step(const std::string &step, int err) const {
        throw NetlinkWatcherError("netlink watcher: " + step + " in netns '" + netns_label() +
                                  "': " + errno_text(err));
    }
    std::string netns_label() const {
        return owner.config_.netns.empty() ? std::string("(caller's)") : owner.config_.netns;
    }

    NetlinkWatcher &owner;
    // Events are heap-allocated by the watcher and freed by pop(); the ring holds the only
    // reference while in flight, so memory follows the backlog rather than the capacity.
    boost::lockfree::spsc_queue<RouteEvent *> ring;
    std::atomic<bool> stopping{false};
    UniqueFd stop_fd;   // eventfd: stop() wakes the watcher's poll
    UniqueFd netns_fd;  // opened by start(), entered by the thread
    std::thread thread;

    // Watcher thread only from here on.
    NlSockPtr events;  // subscribed to the route groups
    NlSockPtr dumps;   // requests and their replies
    std::vector<uint8_t> buffer = std::vector<uint8_t>(kRecvBufferBytes);
    // The routes the consumer currently holds, with their paths: lets a partial IPv6
    // delete become an upsert of the remaining paths, per-path adds be merged, and a
    // replace by a filtered-out protocol become a delete.
    std::map<RouteKey, std::vector<RouteNextHop>> exported;
    bool pushed = false;  // events pushed since the last wake
};

NetlinkWatcher::NetlinkWatcher(NetlinkWatcherConfig config, Sink wake)
    : config_(std::move(config)), wake_(std::move(wake)), impl_(std::make_unique<Impl>(*this)) {}

NetlinkWatcher::~NetlinkWatcher() {
    stop();
}

void NetlinkWatcher::start() {
    Impl &impl = *impl_;
    if (impl.thread.joinable()) {
        throw NetlinkWatcherError("netlink watcher: start called twice");
    }
    if (!config_.netns.empty()) {
        const std::string path = netns_path(config_.netns);
        impl.netns_fd = UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (impl.netns_fd.get() < 0) {
            impl.fail_step("open " + path, errno);
        }
    }
    impl.stop_fd = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (impl.stop_fd.get() < 0) {
        impl.fail_step("eventfd", errno);
    }
    std::promise<void> started;
    auto ready = started.get_future();
    impl.thread = std::thread([&impl, &started] { impl.run(started); });
    try {
        ready.get();
    } catch (...) {
        impl.thread.join();
        throw;
    }
}

void NetlinkWatcher::stop() {
    Impl &impl = *impl_;
    if (!impl.thread.joinable()) {
        return;
    }
    impl.stopping.store(true, std::memory_order_release);
    const uint64_t one = 1;
    // Cannot fail short of a bad fd; the flag alone would still stop a waiting push.
    [[maybe_unused]] const ssize_t rc = write(impl.stop_fd.get(), &one, sizeof(one));
    impl.thread.join();
}

bool NetlinkWatcher::pop(RouteEvent &out) {
    RouteEvent *e = nullptr;
    if (!impl_->ring.pop(e)) {
        return false;
    }
    std::unique_ptr<RouteEvent> owned(e);
    out = std::move(*owned);
    return true;
}

std::string NetlinkWatcher::error() const {
    std::lock_guard lock(error_mutex_);
    return error_;
}

void NetlinkWatcher::fail(const std::string &why) {
    {
        std::lock_guard lock(error_mutex_);
        error_ = why;
    }
    if (wake_) {
        wake_();
    }
}

void NetlinkWatcher::Impl::run(std::promise<void> &started) {
    std::map<RouteKey, RouteEvent> initial;
    try {
        setup();
        // Read before start() returns so that dump errors reach the caller; published
        // after, because a consumer popping on the start()-calling thread could not make
        // room in the ring before then.
        initial = dump();
    } catch (...) {
        started.set_exception(std::current_exception());
        return;
    }
    started.set_value();

    try {
        publish_snapshot(std::move(initial));
        while (!stopping.load(std::memory_order_acquire)) {
            pollfd fds[2] = {{nl_socket_get_fd(events.get()), POLLIN, 0},
                             {stop_fd.get(), POLLIN, 0}};
            if (poll(fds, 2, -1) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                fail_step("poll", errno);
            }
            if (fds[1].revents != 0) {
                break;
            }
            read_notifications();
        }
    } catch (const Stopping &) {
    } catch (const std::exception &e) {
        owner.fail(e.what());
    }
}

void NetlinkWatcher::Impl::setup() {
    if (netns_fd.get() >= 0 && setns(netns_fd.get(), CLONE_NEWNET) != 0) {
        fail_step("setns", errno);
    }
    events.reset(nl_socket_alloc());
    dumps.reset(nl_socket_alloc());
    if (!events || !dumps) {
        fail_step("nl_socket_alloc", ENOMEM);
    }
    // Notifications carry no sequence number of ours.
    nl_socket_disable_seq_check(events.get());
    for (nl_sock *s : {events.get(), dumps.get()}) {
        if (int rc = nl_connect(s, NETLINK_ROUTE); rc < 0) {
            throw NetlinkWatcherError("netlink watcher: connect NETLINK_ROUTE in netns '" +
                                      netns_label() + "': " + nl_geterror(rc));
        }
    }
    const int fd = nl_socket_get_fd(events.get());
    const int bytes = owner.config_.socket_buffer_bytes;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0 &&
        nl_socket_set_buffer_size(events.get(), bytes, 0) < 0) {
        fail_step("set receive buffer", errno);
    }
    if (int rc = nl_socket_add_memberships(events.get(), RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE, 0);
        rc < 0) {
        throw NetlinkWatcherError("netlink watcher: subscribe to route groups in netns '" +
                                  netns_label() + "': " + nl_geterror(rc));
    }
}

std::map<RouteKey, RouteEvent> NetlinkWatcher::Impl::dump() {
    const int fd = nl_socket_get_fd(dumps.get());
    for (;;) {
        rtmsg req{};
        req.rtm_family = AF_UNSPEC;
        if (int rc = nl_send_simple(dumps.get(), RTM_GETROUTE, NLM_F_DUMP, &req, sizeof(req));
            rc < 0) {
            throw NetlinkWatcherError("netlink watcher: send route dump request in netns '" +
                                      netns_label() + "': " + nl_geterror(rc));
        }
        std::map<RouteKey, RouteEvent> routes;
        bool interrupted = false;
        bool done = false;
        while (!done) {
            const ssize_t n = recv(fd, buffer.data(), buffer.size(), MSG_TRUNC);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                fail_step("read route dump", errno);
            }
            if (static_cast<size_t>(n) > buffer.size()) {
                fail_step("read route dump (message larger than buffer)", EMSGSIZE);
            }
            int left = static_cast<int>(n);
            for (auto *nlh = reinterpret_cast<nlmsghdr *>(buffer.data()); nl_ok(nlh, left);
                 nlh = NLMSG_NEXT(nlh, left)) {
                if ((nlh->nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
                    interrupted = true;
                }
                if (nlh->nlmsg_type == NLMSG_DONE) {
                    done = true;
                    break;
                }
                if (nlh->nlmsg_type == NLMSG_ERROR) {
                    const auto *err = static_cast<const nlmsgerr *>(NLMSG_DATA(nlh));
                    fail_step("route dump", -err->error);
                }
                auto d = decode(nlh, owner.config_);
                if (!d || !d->wanted) {
                    continue;
                }
                // Kernels that dump IPv6 ECMP siblings as separate routes: merge them.
                auto [it, inserted] = routes.try_emplace(key_of(d->event), d->event);
                if (!inserted) {
                    merge_paths(it->second.nexthops, d->event.nexthops);
                }
            }
        }
        // The tables changed while the kernel walked them: the snapshot may be torn.
        if (!interrupted) {
            return routes;
        }
    }
}

void NetlinkWatcher::Impl::publish_snapshot(std::map<RouteKey, RouteEvent> snapshot) {
    RouteEvent begin;
    begin.kind = RouteEvent::Kind::kResyncBegin;
    push(std::move(begin));
    exported.clear();
    for (auto &[key, event] : snapshot) {
        exported[key] = event.nexthops;
        push(std::move(event));
    }
    RouteEvent end;
    end.kind = RouteEvent::Kind::kResyncEnd;
    push(std::move(end));
    wake();
    pushed = false;
}

void NetlinkWatcher::Impl::resync() {
    // Whatever is queued now happened before the dump below and is contained in it.
    const int fd = nl_socket_get_fd(events.get());
    for (;;) {
        const ssize_t n = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n < 0 && errno != EINTR && errno != ENOBUFS) {
            break;
        }
    }
    // Counted before the events are published, so a consumer that saw the
    // resync's events also sees the count.
    owner.resyncs_.fetch_add(1, std::memory_order_relaxed);
    publish_snapshot(dump());
}

void NetlinkWatcher::Impl::read_notifications() {
    const int fd = nl_socket_get_fd(events.get());
    for (;;) {
        const ssize_t n = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            if (errno == ENOBUFS) {
                // The kernel dropped notifications: only a fresh dump tells what we missed.
                resync();
                continue;
            }
            fail_step("read route notifications", errno);
        }
        if (static_cast<size_t>(n) > buffer.size()) {
            resync();
            continue;
        }
        int left = static_cast<int>(n);
        for (auto *nlh = reinterpret_cast<nlmsghdr *>(buffer.data()); nl_ok(nlh, left);
             nlh = NLMSG_NEXT(nlh, left)) {
            handle(nlh);
        }
    }
    if (pushed) {
        wake();
        pushed = false;
    }
}

void NetlinkWatcher::Impl::handle(nlmsghdr *nlh) {
    auto d = decode(nlh, owner.config_);
    if (!d) {
        return;
    }
    RouteEvent &e = d->event;
    const RouteKey key = key_of(e);
    auto it = exported.find(key);
    const bool is_add = e.kind == RouteEvent::Kind::kAdd;

    if (!d->wanted) {
        // Another protocol replaced a route the consumer holds: it is no longer ours.
        if (is_add && it != exported.end()) {
            exported.erase(it);
            e.kind = RouteEvent::Kind::kDel;
            push(std::move(e));
        }
        return;
    }

    const bool ip6 = std::holds_alternative<net::Prefix6>(e.prefix);
    if (is_add) {
        // Per-path IPv6 appends (older kernels) carry only the new path; newer kernels send
        // the whole route, which the merge leaves unchanged.
        if (ip6 && (nlh->nlmsg_flags & NLM_F_APPEND) != 0 && it != exported.end()) {
            std::vector<RouteNextHop> all = it->second;
            merge_paths(all, e.nexthops);
            e.nexthops = std::move(all);
        }
        exported[key] = e.nexthops;
        push(std::move(e));
        return;
    }

    // IPv6 deletes one path at a time when asked to: keep the route if paths remain.
    if (ip6 && it != exported.end() && !e.nexthops.empty()) {
        std::vector<RouteNextHop> left;
        for (const auto &nh : it->second) {
            if (std::none_of(e.nexthops.begin(), e.nexthops.end(),
                             [&](const RouteNextHop &x) { return same_path(x, nh); })) {
                left.push_back(nh);
            }
        }
        if (!left.empty()) {
            it->second = left;
            e.kind = RouteEvent::Kind::kAdd;
            e.nexthops = std::move(left);
            push(std::move(e));
            return;
        }
    }
    if (it != exported.end()) {
        exported.erase(it);
    }
    push(std::move(e));
}

void NetlinkWatcher::Impl::push(RouteEvent event) {
    auto owned = std::make_unique<RouteEvent>(std::move(event));
    if (!ring.push(owned.get())) {
        owner.backpressure_waits_.fetch_add(1, std::memory_order_relaxed);
        wake();
        while (!ring.push(owned.get())) {
            if (stopping.load(std::memory_order_acquire)) {
                throw Stopping{};
            }
            std::this_thread::sleep_for(kBackpressureSleep);
        }
    }
    owned.release();
    pushed = true;
}

}  // namespace fwd::control
