#include "fwd/vhost/netns.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/macvlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

namespace fwd::vhost {
namespace {

constexpr const char *kNetnsDir = "/var/run/netns/";
constexpr const char *kIpv6ConfDir = "/proc/sys/net/ipv6/conf/";

template <typename T, void (*Free)(T *)>
struct NlFree {
    void operator()(T *p) const { Free(p); }
};
using NlSock = std::unique_ptr<nl_sock, NlFree<nl_sock, nl_socket_free>>;
using NlAddr = std::unique_ptr<nl_addr, NlFree<nl_addr, nl_addr_put>>;
using NlCache = std::unique_ptr<nl_cache, NlFree<nl_cache, nl_cache_free>>;
using Link = std::unique_ptr<rtnl_link, NlFree<rtnl_link, rtnl_link_put>>;
using Addr = std::unique_ptr<rtnl_addr, NlFree<rtnl_addr, rtnl_addr_put>>;
using Route = std::unique_ptr<rtnl_route, NlFree<rtnl_route, rtnl_route_put>>;
using Neigh = std::unique_ptr<rtnl_neigh, NlFree<rtnl_neigh, rtnl_neigh_put>>;

class UniqueFd {
  public:
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    UniqueFd(UniqueFd &&o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    ~UniqueFd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    UniqueFd &operator=(UniqueFd &&o) noexcept {
        std::swap(fd_, o.fd_);
        return *this;
    }
    int get() const { return fd_; }
    int release() {
        int fd = fd_;
        fd_ = -1;
        return fd;
    }

  private:
    int fd_;
};

[[noreturn]] void fail(const std::string &step, const std::string &why) {
    throw NetnsError(step + ": " + why);
}

[[noreturn]] void fail_nl(const std::string &step, int nl_err) {
    fail(step, nl_geterror(nl_err));
}

[[noreturn]] void fail_errno(const std::string &step, int err) {
    fail(step, std::strerror(err));
}

// The network namespace at ns_path, opened for setns(); fails naming `step`.
UniqueFd open_netns(const std::string &ns_path, const std::string &step) {
    UniqueFd fd(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        fail_errno(step, errno);
    }
    return fd;
}

NlSock open_route_socket(const std::string &step) {
    NlSock sk(nl_socket_alloc());
    if (!sk) {
        fail(step, "cannot allocate a netlink socket");
    }
    if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0) {
        fail_nl(step, err);
    }
    return sk;
}

// The link named `name` in the socket's namespace, or null if there is none.
Link find_link(nl_sock *sk, const std::string &name, const std::string &step) {
    rtnl_link *link = nullptr;
    int err = rtnl_link_get_kernel(sk, 0, name.c_str(), &link);
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) {
        return nullptr;
    }
    if (err < 0) {
        fail_nl(step, err);
    }
    return Link(link);
}

// Applies `fill` to an empty change and sends it for the link `ifindex`.
// The original is a bare index so that no stale attribute (the old name
// after a rename) is sent along.
// Returns the netlink error (0: done).
template <typename Fill>
int try_change_link(nl_sock *sk, int ifindex, const std::string &step, Fill &&fill) {
    Link orig(rtnl_link_alloc());
    Link change(rtnl_link_alloc());
    if (!orig || !change) {
        fail(step, "out of memory");
    }
    rtnl_link_set_ifindex(orig.get(), ifindex);
    fill(change.get());
    return rtnl_link_change(sk, orig.get(), change.get(), 0);
}

template <typename Fill>
void change_link(nl_sock *sk, int ifindex, const std::string &step, Fill &&fill) {
    if (int err = try_change_link(sk, ifindex, step, std::forward<Fill>(fill)); err < 0) {
        fail_nl(step, err);
    }
}

NlAddr build_addr(int family, const void *bytes, size_t len, int prefixlen) {
    NlAddr a(nl_addr_build(family, bytes, len));
    if (!a) {
        throw NetnsError("build netlink address: out of memory");
    }
    nl_addr_set_prefixlen(a.get(), prefixlen);
    return a;
}

NlAddr build_ip4(net::Ip4Addr ip, int prefixlen) {
    uint32_t raw = ip.be().raw();
    return build_addr(AF_INET, &raw, sizeof(raw), prefixlen);
}

NlAddr build_ip6(const net::Ip6Addr &ip, int prefixlen) {
    return build_addr(AF_INET6, ip.data(), ip.bytes().size(), prefixlen);
}

// Address text in our canonical spelling, or "" for a family we do not use.
std::string addr_text(nl_addr *a) {
    if (a == nullptr) {
        return "";
    }
    const auto *b = static_cast<const uint8_t *>(nl_addr_get_binary_addr(a));
    switch (nl_addr_get_family(a)) {
        case AF_INET: {
            if (nl_addr_get_len(a) != 4) {
                // A zero-length address is how a default route's dst comes back.
                return net::Ip4Addr().str();
            }
            uint32_t raw;
            std::memcpy(&raw, b, sizeof(raw));
            return net::Ip4Addr::from_be(net::Be32::from_raw(raw)).str();
        }
        case AF_INET6:
            if (nl_addr_get_len(a) != 16) {
                return net::Ip6Addr().str();
            }
            return net::Ip6Addr::from_bytes(b).str();
        default:
            return "";
    }
}

std::string prefix_text(nl_addr *a) {
    if (nl_addr_get_prefixlen(a) == 0) {
        return "default";
    }
    return addr_text(a) + "/" + std::to_string(nl_addr_get_prefixlen(a));
}

// Runs fn on a fresh thread that has joined the network namespace ns_fd;
// setns() changes only that thread, so the caller's namespace never moves.
// Exceptions from fn come back to the caller.
template <typename Fn>
void run_in_netns(int ns_fd, const std::string &ns_path, Fn &&fn) {
    std::exception_ptr error;
    std::thread worker([&] {
        try {
            if (setns(ns_fd, CLONE_NEWNET) != 0) {
                fail_errno("enter netns " + ns_path, errno);
            }
            fn();
        } catch (...) {
            error = std::current_exception();
        }
    });
    worker.join();
    if (error) {
        std::rethrow_exception(error);
    }
}

bool path_exists(const std::string &path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

// Calico turns DAD off on the pod side: the /128 is unique by IPAM and the
// host side never claims it, so DAD would only delay the address.
void disable_dad(const std::string &ifname, const std::string &where, bool need_ipv6) {
    if (!path_exists(kIpv6ConfDir)) {
        if (need_ipv6) {
            fail("disable DAD on " + ifname + where, "IPv6 is disabled in the kernel");
        }
        return;
    }
    for (const std::string &dev : {std::string("default"), ifname}) {
        const std::string path = std::string(kIpv6ConfDir) + dev + "/accept_dad";
        const std::string step = "disable DAD on " + dev + where + " (" + path + ")";
        UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
        if (fd.get() < 0) {
            fail_errno(step, errno);
        }
        if (::write(fd.get(), "0\n", 2) < 0) {
            fail_errno(step, errno);
        }
    }
}

void add_address(nl_sock *sk, int ifindex, NlAddr local, unsigned flags, const std::string &step) {
    Addr addr(rtnl_addr_alloc());
    if (!addr) {
        fail(step, "out of memory");
    }
    int prefixlen = nl_addr_get_prefixlen(local.get());
    rtnl_addr_set_ifindex(addr.get(), ifindex);
    if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0) {
        fail_nl(step, err);
    }
    rtnl_addr_set_prefixlen(addr.get(), prefixlen);
    rtnl_addr_set_flags(addr.get(), flags);
    if (int err = rtnl_addr_add(sk, addr.get(), NLM_F_EXCL); err < 0) {
        fail_nl(step, err);
    }
}

void add_route(nl_sock *sk, int ifindex, NlAddr dst, NlAddr gateway, uint8_t scope,
               const std::string &step, int flags = NLM_F_EXCL) {
    Route route(rtnl_route_alloc());
    rtnl_nexthop *nh = rtnl_route_nh_alloc();
    if (!route || !nh) {
        if (nh) {
            rtnl_route_nh_free(nh);
        }
        fail(step, "out of memory");
    }
    rtnl_route_set_family(route.get(), static_cast<uint8_t>(nl_addr_get_family(dst.get())));
    rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
    rtnl_route_set_protocol(route.get(), RTPROT_BOOT);
    rtnl_route_set_type(route.get(), RTN_UNICAST);
    rtnl_route_set_scope(route.get(), scope);
    if (int err = rtnl_route_set_dst(route.get(), dst.get()); err < 0) {
        rtnl_route_nh_free(nh);
        fail_nl(step, err);
    }
    rtnl_route_nh_set_ifindex(nh, ifindex);
    if (gateway) {
        rtnl_route_nh_set_gateway(nh, gateway.get());
    }
    rtnl_route_add_nexthop(route.get(), nh);  // the route owns nh from here
    if (int err = rtnl_route_add(sk, route.get(), flags); err < 0) {
        fail_nl(step, err);
    }
}

NlAddr build_mac(const net::MacAddr &mac) {
    return build_addr(AF_LLC, mac.data(), mac.bytes().size(), 48);
}

// The pod's routes (expected_pod_routes, in that order) on ifindex, in the
// socket's namespace.
void add_routes_inside(nl_sock *sk, int ifindex, const PodIfConfig &cfg, const std::string &where,
                       int flags) {
    const auto routes = expected_pod_routes(cfg);
    size_t next_route = 0;
    auto route_step = [&] { return "add route " + routes.at(next_route++) + where; };
    if (cfg.ipv4) {
        // The gateway is reachable only through the first, on-link route.
        add_route(sk, ifindex, build_ip4(net::kCalicoGateway4, 32), nullptr, RT_SCOPE_LINK,
                  route_step(), flags);
        add_route(sk, ifindex, build_ip4(net::Ip4Addr(), 0), build_ip4(net::kCalicoGateway4, 32),
                  RT_SCOPE_UNIVERSE, route_step(), flags);
    }
    if (cfg.ipv6) {
        add_route(sk, ifindex, build_ip6(net::Ip6Addr(), 0), build_ip6(net::calico_gateway6(), 128),
                  RT_SCOPE_UNIVERSE, route_step(), flags);
    }
}

// Everything done inside the pod namespace, on the namespace thread, to the
// interface now called `current` there: renamed to cfg.ifname, MAC and MTU
// set (unless set_l2 is false: it was made with them), then the rest.
// Returns its ifindex.
int configure_inside(const PodIfConfig &cfg, const std::string &ns_path, const std::string &current,
                     bool set_l2) {
    const std::string where = " in netns " + ns_path;
    NlSock sk = open_route_socket("open netlink socket" + where);

    Link moved = find_link(sk.get(), current, "find " + current + where);
    if (!moved) {
        fail("find " + current + where, "not there after the move");
    }
    const int ifindex = rtnl_link_get_ifindex(moved.get());

    if (cfg.ifname != current) {
        if (find_link(sk.get(), cfg.ifname, "look up " + cfg.ifname + where)) {
            throw NetnsError("rename " + current + " to " + cfg.ifname + where + ": " + cfg.ifname +
                             " already exists in the pod");
        }
        change_link(sk.get(), ifindex, "rename " + current + " to " + cfg.ifname + where,
                    [&](rtnl_link *c) { rtnl_link_set_name(c, cfg.ifname.c_str()); });
    }

    const std::string &dev = cfg.ifname;
    if (set_l2) {
        NlAddr mac = build_mac(cfg.mac);
        change_link(sk.get(), ifindex, "set MAC " + cfg.mac.str() + " on " + dev + where,
                    [&](rtnl_link *c) { rtnl_link_set_addr(c, mac.get()); });
        change_link(sk.get(), ifindex, "set MTU " + std::to_string(cfg.mtu) + " on " + dev + where,
                    [&](rtnl_link *c) { rtnl_link_set_mtu(c, cfg.mtu); });
    }

    // Before link up: IPv6 starts DAD for the link-local address when the
    // link comes up.
    disable_dad(dev, where, cfg.ipv6.has_value());

    Link lo = find_link(sk.get(), "lo", "find lo" + where);
    if (!lo) {
        fail("find lo" + where, "no loopback interface");
    }
    change_link(sk.get(), rtnl_link_get_ifindex(lo.get()), "bring up lo" + where,
                [](rtnl_link *c) { rtnl_link_set_flags(c, IFF_UP); });
    const std::string up_step = "bring up " + dev + where;
    if (int err = try_change_link(sk.get(), ifindex, up_step,
                                  [](rtnl_link *c) { rtnl_link_set_flags(c, IFF_UP); });
        err < 0) {
        if (err == -NLE_EXIST) {
            // A macvlan checks its MAC against its siblings when it opens.
            fail(up_step,
                 "MAC " + cfg.mac.str() + " is taken by another interface on the same lower link");
        }
        fail_nl(up_step, err);
    }

    if (cfg.ipv4) {
        add_address(sk.get(), ifindex, build_ip4(*cfg.ipv4, 32), 0,
                    "add " + cfg.ipv4->str() + "/32 to " + dev + where);
    }
    if (cfg.ipv6) {
        add_address(sk.get(), ifindex, build_ip6(*cfg.ipv6, 128), IFA_F_NODAD,
                    "add " + cfg.ipv6->str() + "/128 to " + dev + where);
    }

    if (cfg.routes) {
        add_routes_inside(sk.get(), ifindex, cfg, where, NLM_F_EXCL);
    }
    return ifindex;
}

// The link of index ifindex in the socket's namespace, or null.
Link find_link_by_index(nl_sock *sk, int ifindex, const std::string &step) {
    rtnl_link *link = nullptr;
    int err = rtnl_link_get_kernel(sk, ifindex, nullptr, &link);
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) {
        return nullptr;
    }
    if (err < 0) {
        fail_nl(step, err);
    }
    return Link(link);
}

std::string link_kind(rtnl_link *link) {
    const char *type = rtnl_link_get_type(link);
    return type == nullptr ? "" : type;
}

std::optional<net::MacAddr> link_mac(rtnl_link *link) {
    nl_addr *a = rtnl_link_get_addr(link);
    if (a == nullptr || nl_addr_get_len(a) != 6) {
        return std::nullopt;
    }
    return net::MacAddr::from_bytes(static_cast<uint8_t *>(nl_addr_get_binary_addr(a)));
}

// Deletes the link of index ifindex in the socket's namespace if it is a
// macvlan with MAC mac.
PodLinkDelete delete_macvlan_here(nl_sock *sk, int ifindex, const net::MacAddr &mac,
                                  const std::string &where) {
    const std::string step =
        "delete macvlan " + std::to_string(ifindex) + " (" + mac.str() + ")" + where;
    Link link = find_link_by_index(sk, ifindex, step);
    if (!link) {
        return PodLinkDelete::kLinkGone;
    }
    if (link_kind(link.get()) != "macvlan" || link_mac(link.get()) != mac) {
        return PodLinkDelete::kNotOurs;
    }
    Link target(rtnl_link_alloc());
    if (!target) {
        fail(step, "out of memory");
    }
    rtnl_link_set_ifindex(target.get(), ifindex);
    int err = rtnl_link_delete(sk, target.get());
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV) {
        return PodLinkDelete::kLinkGone;  // deleted meanwhile (its lower went away)
    }
    if (err < 0) {
        fail_nl(step, err);
    }
    return PodLinkDelete::kDeleted;
}

void write_sysctl(const std::string &path, const char *value, const std::string &step) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        fail_errno(step + " (" + path + ")", errno);
    }
    if (::write(fd.get(), value, std::strlen(value)) < 0) {
        fail_errno(step + " (" + path + ")", errno);
    }
}

PodIfState inspect_inside(const std::string &ifname, const std::string &where) {
    PodIfState state;
    NlSock sk = open_route_socket("open netlink socket" + where);
    Link link = find_link(sk.get(), ifname, "find " + ifname + where);
    if (!link) {
        return state;
    }
    state.exists = true;
    state.kind = link_kind(link.get());
    const int ifindex = rtnl_link_get_ifindex(link.get());
    state.ifindex = ifindex;
    if (auto mac = link_mac(link.get())) {
        state.mac = *mac;
    }
    state.mtu = static_cast<uint16_t>(rtnl_link_get_mtu(link.get()));
    state.up = (rtnl_link_get_flags(link.get()) & IFF_UP) != 0;

    nl_cache *raw_cache = nullptr;
    if (int err = rtnl_addr_alloc_cache(sk.get(), &raw_cache); err < 0) {
        fail_nl("list addresses of " + ifname + where, err);
    }
    NlCache addrs(raw_cache);
    for (nl_object *o = nl_cache_get_first(addrs.get()); o; o = nl_cache_get_next(o)) {
        auto *a = reinterpret_cast<rtnl_addr *>(o);
        if (rtnl_addr_get_ifindex(a) != ifindex) {
            continue;
        }
        std::string text = addr_text(rtnl_addr_get_local(a));
        if (!text.empty()) {
            state.addresses.push_back(text + "/" + std::to_string(rtnl_addr_get_prefixlen(a)));
        }
    }

    raw_cache = nullptr;
    if (int err = rtnl_route_alloc_cache(sk.get(), AF_UNSPEC, 0, &raw_cache); err < 0) {
        fail_nl("list routes of " + ifname + where, err);
    }
    NlCache routes(raw_cache);
    for (nl_object *o = nl_cache_get_first(routes.get()); o; o = nl_cache_get_next(o)) {
        auto *r = reinterpret_cast<rtnl_route *>(o);
        if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST) {
            continue;
        }
        for (int i = 0; i < rtnl_route_get_nnexthops(r); i++) {
            rtnl_nexthop *nh = rtnl_route_nexthop_n(r, i);
            if (rtnl_route_nh_get_ifindex(nh) == ifindex) {
                state.routes.push_back(format_route(prefix_text(rtnl_route_get_dst(r)),
                                                    addr_text(rtnl_route_nh_get_gateway(nh)),
                                                    ifname));
            }
        }
    }
    return state;
}

}  // namespace

std::string resolve_netns_path(const std::string &netns_or_name) {
    if (netns_or_name.empty() || netns_or_name == "." || netns_or_name == "..") {
        throw NetnsError("resolve netns '" + netns_or_name + "': not a namespace name or path");
    }
    if (netns_or_name.find('/') != std::string::npos) {
        return netns_or_name;
    }
    return kNetnsDir + netns_or_name;
}

std::string format_route(const std::string &dst, const std::string &gateway,
                         const std::string &ifname) {
    std::string text = dst;
    if (!gateway.empty()) {
        text += " via " + gateway;
    }
    return text + " dev " + ifname;
}

std::vector<std::string> expected_pod_addresses(const PodIfConfig &cfg) {
    std::vector<std::string> out;
    if (cfg.ipv4) {
        out.push_back(cfg.ipv4->str() + "/32");
    }
    if (cfg.ipv6) {
        out.push_back(cfg.ipv6->str() + "/128");
    }
    return out;
}

std::vector<std::string> expected_pod_routes(const PodIfConfig &cfg) {
    std::vector<std::string> out;
    if (cfg.ipv4) {
        out.push_back(format_route(net::kCalicoGateway4.str() + "/32", "", cfg.ifname));
        out.push_back(format_route("default", net::kCalicoGateway4.str(), cfg.ifname));
    }
    if (cfg.ipv6) {
        out.push_back(format_route("default", net::calico_gateway6().str(), cfg.ifname));
    }
    return out;
}

void configure_pod_interface(const PodIfConfig &cfg) {
    const std::string ns_path = resolve_netns_path(cfg.netns);
    const std::string move_step = "move " + cfg.host_ifname + " into netns " + ns_path;
    if (cfg.host_ifname.empty() || cfg.ifname.empty() || cfg.ifname.size() >= IFNAMSIZ) {
        fail(move_step, "bad interface name '" + cfg.ifname + "'");
    }

    UniqueFd ns_fd = open_netns(ns_path, move_step);

    // The move is done from the caller's namespace, where the link lives.
    {
        NlSock sk = open_route_socket(move_step);
        Link link = find_link(sk.get(), cfg.host_ifname, move_step);
        if (!link) {
            fail(move_step, "no such interface");
        }
        change_link(sk.get(), rtnl_link_get_ifindex(link.get()), move_step,
                    [&](rtnl_link *c) { rtnl_link_set_ns_fd(c, ns_fd.get()); });
    }

    run_in_netns(ns_fd.get(), ns_path,
                 [&] { configure_inside(cfg, ns_path, cfg.host_ifname, true); });
}

int add_pod_macvlan(const std::string &lower_ifname, const PodIfConfig &cfg) {
    const std::string ns_path = resolve_netns_path(cfg.netns);
    const std::string where = " in netns " + ns_path;
    const std::string step =
        "create macvlan " + cfg.ifname + " on " + lower_ifname + where + " (" + cfg.mac.str() + ")";
    if (cfg.ifname.empty() || cfg.ifname.size() >= IFNAMSIZ || cfg.ifname == "." ||
        cfg.ifname == ".." || cfg.ifname.find('/') != std::string::npos) {
        fail(step, "bad interface name '" + cfg.ifname + "'");
    }
    UniqueFd ns_fd = open_netns(ns_path, step);

    // One request from our namespace, where the lower interface is: the
    // kernel makes the macvlan in the pod namespace (IFLA_NET_NS_FD), down.
    {
        NlSock sk = open_route_socket(step);
        Link lower = find_link(sk.get(), lower_ifname, step);
        if (!lower) {
            fail(step, "no interface " + lower_ifname);
        }
        Link link(rtnl_link_macvlan_alloc());
        if (!link) {
            fail(step, "out of memory");
        }
        NlAddr mac = build_mac(cfg.mac);
        rtnl_link_set_name(link.get(), cfg.ifname.c_str());
        rtnl_link_set_link(link.get(), rtnl_link_get_ifindex(lower.get()));
        rtnl_link_set_addr(link.get(), mac.get());
        rtnl_link_set_mtu(link.get(), cfg.mtu);
        rtnl_link_set_ns_fd(link.get(), ns_fd.get());
        if (int err = rtnl_link_macvlan_set_mode(link.get(), MACVLAN_MODE_PRIVATE); err < 0) {
            fail_nl(step, err);
        }
        if (int err = rtnl_link_add(sk.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0) {
            if (err == -NLE_EXIST) {
                // EEXIST (the name) and EADDRINUSE (the MAC) both come back as
                // NLE_EXIST: tell them apart by looking.
                bool name_taken = true;
                try {
                    name_taken = inspect_pod_interface(cfg.netns, cfg.ifname).exists;
                } catch (const NetnsError &) {
                    // Report the creation error below.
                }
                fail(step, name_taken ? cfg.ifname + " already exists in the pod"
                                      : "MAC " + cfg.mac.str() + " is taken on " + lower_ifname);
            }
            if (err == -NLE_INVAL || err == -NLE_RANGE) {
                fail(step, std::string(nl_geterror(err)) + " (MTU " + std::to_string(cfg.mtu) +
                               " above " + lower_ifname + "'s?)");
            }
            fail_nl(step, err);
        }
    }

    int ifindex = 0;
    run_in_netns(ns_fd.get(), ns_path, [&] {
        try {
            ifindex = configure_inside(cfg, ns_path, cfg.ifname, false);
        } catch (...) {
            // Undo in the same namespace; the configuration error is the one to report.
            try {
                NlSock sk = open_route_socket("undo" + where);
                if (Link l = find_link(sk.get(), cfg.ifname, "undo" + where)) {
                    delete_macvlan_here(sk.get(), rtnl_link_get_ifindex(l.get()), cfg.mac, where);
                }
            } catch (const std::exception &) {
                // The namespace went away under us: so did the macvlan.
            }
            throw;
        }
    });
    return ifindex;
}

void add_pod_routes(const PodIfConfig &cfg, int ifindex) {
    const std::string ns_path = resolve_netns_path(cfg.netns);
    const std::string where = " in netns " + ns_path;
    UniqueFd ns_fd = open_netns(ns_path, "add the routes of " + cfg.ifname + where);
    run_in_netns(ns_fd.get(), ns_path, [&] {
        NlSock sk = open_route_socket("open netlink socket" + where);
        add_routes_inside(sk.get(), ifindex, cfg, where, NLM_F_REPLACE);
    });
}

namespace {

// Opens /dev/net/tun in the calling thread's namespace on the tap `ifname`
// (made, or attached to if it exists and is persistent; multi_queue: as one
// more queue of a multi-queue tap), with the virtio-net header and what it
// accepts of `offloads`. Fails naming `step`; *mode_err (when given) is set
// instead of failing when TUNSETIFF refuses the queue mode (EINVAL: the tap
// exists in the other mode).
UniqueFd open_tap_here(const std::string &ifname, int vnet_hdr_len, unsigned offloads,
                       const std::string &step, unsigned &took, bool multi_queue = false,
                       bool *mode_err = nullptr) {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (fd.get() < 0) {
        fail_errno(step + ": open /dev/net/tun", errno);
    }
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname.c_str(), ifname.size());
    ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR |
                                       (multi_queue ? IFF_MULTI_QUEUE : 0));
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
        if (mode_err != nullptr && errno == EINVAL) {
            *mode_err = true;
            return UniqueFd(-1);
        }
        fail_errno(step + ": TUNSETIFF", errno);
    }
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &vnet_hdr_len) != 0) {
        fail_errno(step + ": TUNSETVNETHDRSZ " + std::to_string(vnet_hdr_len), errno);
    }
    // Each offload depends on the ones before it (TSO needs the
    // checksum); a kernel that refuses one gets the ones it took.
    took = 0;
    for (unsigned bit = 1; bit != 0 && bit <= offloads; bit <<= 1) {
        if ((offloads & bit) == 0) {
            continue;
        }
        if (::ioctl(fd.get(), TUNSETOFFLOAD, took | bit) == 0) {
            took |= bit;
        }
    }
    if (::ioctl(fd.get(), TUNSETOFFLOAD, took) != 0) {
        fail_errno(step + ": TUNSETOFFLOAD", errno);
    }
    return fd;
}

}  // namespace

namespace {

void check_queues(unsigned queues, const std::string &step) {
    if (queues < 1 || queues > kMaxPodTunQueues) {
        fail(step, std::to_string(queues) + " queues: 1 to " + std::to_string(kMaxPodTunQueues));
    }
}

// Queues 1 .. queues - 1 of the multi-queue tap ifname (queue 0 open).
void open_more_queues(const std::string &ifname, int vnet_hdr_len, unsigned offloads,
                      const std::string &step, unsigned queues, std::vector<UniqueFd> &fds) {
    for (unsigned q = 1; q < queues; q++) {
        unsigned took = 0;
        fds.push_back(open_tap_here(ifname, vnet_hdr_len, offloads,
                                    step + ": queue " + std::to_string(q), took, true));
    }
}

std::vector<int> release_all(std::vector<UniqueFd> &fds) {
    std::vector<int> out;
    for (UniqueFd &f : fds) {
        out.push_back(f.release());
    }
    return out;
}

}  // namespace

PodTun add_pod_tun(const PodIfConfig &cfg, int vnet_hdr_len, unsigned offloads, bool persist,
                   unsigned queues) {
    const std::string ns_path = resolve_netns_path(cfg.netns);
    const std::string where = " in netns " + ns_path;
    const std::string step = "create tap " + cfg.ifname + where;
    if (cfg.ifname.empty() || cfg.ifname.size() >= IFNAMSIZ || cfg.ifname == "." ||
        cfg.ifname == ".." || cfg.ifname.find('/') != std::string::npos) {
        fail(step, "bad interface name '" + cfg.ifname + "'");
    }
    check_queues(queues, step);
    UniqueFd ns_fd = open_netns(ns_path, step);
    PodTun out;
    std::vector<UniqueFd> tun;
    run_in_netns(ns_fd.get(), ns_path, [&] {
        {
            // TUNSETIFF on the name of an existing tap of ours would attach to it.
            NlSock sk = open_route_socket(step);
            if (find_link(sk.get(), cfg.ifname, step)) {
                fail(step, cfg.ifname + " already exists in the pod");
            }
        }
        // The device belongs to the namespace of the thread that creates it.
        std::vector<UniqueFd> fds;
        fds.push_back(
            open_tap_here(cfg.ifname, vnet_hdr_len, offloads, step, out.offloads, queues > 1));
        // Closing the fds on a failure below deletes the device again.
        open_more_queues(cfg.ifname, vnet_hdr_len, offloads, step, queues, fds);
        out.ifindex = configure_inside(cfg, ns_path, cfg.ifname, true);
        // Last: a failure before it leaves nothing behind.
        if (persist && ::ioctl(fds[0].get(), TUNSETPERSIST, 1) != 0) {
            fail_errno(step + ": TUNSETPERSIST", errno);
        }
        tun = std::move(fds);
    });
    out.fds = release_all(tun);
    return out;
}

PodTun attach_pod_tun(const PodIfConfig &cfg, int vnet_hdr_len, unsigned offloads,
                      unsigned queues) {
    const std::string ns_path = resolve_netns_path(cfg.netns);
    const std::string step = "take over tap " + cfg.ifname + " in netns " + ns_path;
    check_queues(queues, step);
    UniqueFd ns_fd = open_netns(ns_path, step);
    PodTun out;
    std::vector<UniqueFd> tun;
    run_in_netns(ns_fd.get(), ns_path, [&] {
        {
            // Only the pod's own tap: TUNSETIFF on a name that is not there
            // would make a new, unconfigured one.
            NlSock sk = open_route_socket(step);
            Link link = find_link(sk.get(), cfg.ifname, step);
            if (!link) {
                fail(step, "no " + cfg.ifname + " in the pod");
            }
            if (link_kind(link.get()) != "tun" || link_mac(link.get()) != cfg.mac) {
                fail(step, cfg.ifname + " is not the pod's tap (kind " + link_kind(link.get()) +
                               ", not MAC " + cfg.mac.str() + ")");
            }
            out.ifindex = rtnl_link_get_ifindex(link.get());
        }
        // In the mode the tap was made with: TUNSETIFF refuses the other.
        bool multi = queues > 1, wrong_mode = false;
        UniqueFd first = open_tap_here(cfg.ifname, vnet_hdr_len, offloads, step, out.offloads,
                                       multi, &wrong_mode);
        if (wrong_mode) {
            multi = !multi;
            first = open_tap_here(cfg.ifname, vnet_hdr_len, offloads, step, out.offloads, multi);
        }
        tun.push_back(std::move(first));
        // A single-queue tap: one queue, whatever was asked.
        open_more_queues(cfg.ifname, vnet_hdr_len, offloads, step, multi ? queues : 1, tun);
    });
    out.fds = release_all(tun);
    return out;
}

void set_pod_gateway_neighbors(const PodIfConfig &cfg) {
    const std::string ns_path = resolve_netns_path(cfg.netns);
    const std::string step =
        "set the gateway's neighbor entries of " + cfg.ifname + " in netns " + ns_path;
    UniqueFd ns_fd = open_netns(ns_path, step);
    run_in_netns(ns_fd.get(), ns_path, [&] {
        NlSock sk = open_route_socket(step);
        Link link = find_link(sk.get(), cfg.ifname, step);
        if (!link) {
            fail(step, "no " + cfg.ifname + " in the pod");
        }
        const int ifindex = rtnl_link_get_ifindex(link.get());
        auto set = [&](NlAddr dst) {
            Neigh n(rtnl_neigh_alloc());
            if (!n) {
                fail(step, "out of memory");
            }
            rtnl_neigh_set_ifindex(n.get(), ifindex);
            rtnl_neigh_set_dst(n.get(), dst.get());
            rtnl_neigh_set_lladdr(n.get(), build_mac(net::kCalicoGatewayMac).get());
            rtnl_neigh_set_state(n.get(), NUD_REACHABLE);
            if (int err = rtnl_neigh_add(sk.get(), n.get(), NLM_F_CREATE | NLM_F_REPLACE);
                err < 0) {
                fail_nl(step, err);
            }
        };
        if (cfg.ipv4) {
            set(build_ip4(net::kCalicoGateway4, 32));
        }
        if (cfg.ipv6) {
            set(build_ip6(net::calico_gateway6(), 128));
        }
    });
}

void close_pod_tun(const std::vector<int> &fds, bool keep) {
    if (fds.empty() || fds[0] < 0) {
        return;
    }
    if (!keep) {
        // Not persistent any more: the device goes with its last fd.
        ::ioctl(fds[0], TUNSETPERSIST, 0);
    }
    for (int fd : fds) {
        if (fd >= 0) {
            ::close(fd);
        }
    }
}

void set_tap_persist(const std::string &ifname, bool persist) {
    const std::string step = std::string(persist ? "keep" : "release") + " tap " + ifname;
    if (ifname.empty() || ifname.size() >= IFNAMSIZ) {
        fail(step, "bad interface name '" + ifname + "'");
    }
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (fd.get() < 0) {
        fail_errno(step + ": open /dev/net/tun", errno);
    }
    {
        NlSock sk = open_route_socket(step);
        if (!find_link(sk.get(), ifname, step)) {
            fail(step, "no such interface");  // TUNSETIFF would make one
        }
    }
    // The flags must match the device's (the kernel refuses a queue of
    // another kind); our queue is attached only for the two calls.
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, ifname.c_str(), ifname.size());
    ifr.ifr_flags = IFF_TAP | IFF_MULTI_QUEUE;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
        fail_errno(step + ": TUNSETIFF", errno);
    }
    if (::ioctl(fd.get(), TUNSETPERSIST, persist ? 1 : 0) != 0) {
        fail_errno(step + ": TUNSETPERSIST", errno);
    }
}

PodLinkDelete delete_pod_macvlan(const std::string &netns, int ifindex, const net::MacAddr &mac) {
    const std::string ns_path = resolve_netns_path(netns);
    UniqueFd ns_fd(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns_fd.get() < 0) {
        if (errno == ENOENT) {
            return PodLinkDelete::kNetnsGone;
        }
        fail_errno("delete macvlan " + std::to_string(ifindex) + " in netns " + ns_path, errno);
    }
    PodLinkDelete result = PodLinkDelete::kLinkGone;
    run_in_netns(ns_fd.get(), ns_path, [&] {
        const std::string where = " in netns " + ns_path;
        NlSock sk = open_route_socket("open netlink socket" + where);
        result = delete_macvlan_here(sk.get(), ifindex, mac, where);
    });
    return result;
}

void configure_pod_lower(const std::string &ifname, uint16_t mtu, uint32_t txqueuelen) {
    const std::string step = "configure pod tap " + ifname;
    NlSock sk = open_route_socket(step);
    Link link = find_link(sk.get(), ifname, step);
    if (!link) {
        fail(step, "no such interface");
    }
    if (path_exists(kIpv6ConfDir)) {
        write_sysctl(std::string(kIpv6ConfDir) + ifname + "/disable_ipv6", "1\n",
                     step + ": disable IPv6");
    }
    change_link(sk.get(), rtnl_link_get_ifindex(link.get()),
                step + ": set txqueuelen " + std::to_string(txqueuelen),
                [&](rtnl_link *c) { rtnl_link_set_txqlen(c, txqueuelen); });
    change_link(sk.get(), rtnl_link_get_ifindex(link.get()),
                step + ": set MTU " + std::to_string(mtu),
                [&](rtnl_link *c) { rtnl_link_set_mtu(c, mtu); });
}

PodIfState inspect_pod_interface(const std::string &netns, const std::string &ifname) {
    const std::string ns_path = resolve_netns_path(netns);
    UniqueFd ns_fd = open_netns(ns_path, "inspect " + ifname + " in netns " + ns_path);
    PodIfState state;
    run_in_netns(ns_fd.get(), ns_path,
                 [&] { state = inspect_inside(ifname, " in netns " + ns_path); });
    return state;
}

}  // namespace fwd::vhost
