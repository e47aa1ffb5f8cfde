#include "fwd/vhost/netns.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
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

class UniqueFd {
  public:
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    ~UniqueFd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    int get() const { return fd_; }

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
template <typename Fill>
void change_link(nl_sock *sk, int ifindex, const std::string &step, Fill &&fill) {
    Link orig(rtnl_link_alloc());
    Link change(rtnl_link_alloc());
    if (!orig || !change) {
        fail(step, "out of memory");
    }
    rtnl_link_set_ifindex(orig.get(), ifindex);
    fill(change.get());
    if (int err = rtnl_link_change(sk, orig.get(), change.get(), 0); err < 0) {
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
               const std::string &step) {
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
    if (int err = rtnl_route_add(sk, route.get(), NLM_F_EXCL); err < 0) {
        fail_nl(step, err);
    }
}

// Everything done inside the pod namespace, on the namespace thread.
void configure_inside(const PodIfConfig &cfg, const std::string &ns_path) {
    const std::string where = " in netns " + ns_path;
    NlSock sk = open_route_socket("open netlink socket" + where);

    Link moved = find_link(sk.get(), cfg.host_ifname, "find " + cfg.host_ifname + where);
    if (!moved) {
        fail("find " + cfg.host_ifname + where, "not there after the move");
    }
    const int ifindex = rtnl_link_get_ifindex(moved.get());

    if (cfg.ifname != cfg.host_ifname) {
        if (find_link(sk.get(), cfg.ifname, "look up " + cfg.ifname + where)) {
            throw NetnsError("rename " + cfg.host_ifname + " to " + cfg.ifname + where + ": " +
                             cfg.ifname + " already exists in the pod");
        }
        change_link(sk.get(), ifindex, "rename " + cfg.host_ifname + " to " + cfg.ifname + where,
                    [&](rtnl_link *c) { rtnl_link_set_name(c, cfg.ifname.c_str()); });
    }

    const std::string &dev = cfg.ifname;
    NlAddr mac = build_addr(AF_LLC, cfg.mac.data(), cfg.mac.bytes().size(), 48);
    change_link(sk.get(), ifindex, "set MAC " + cfg.mac.str() + " on " + dev + where,
                [&](rtnl_link *c) { rtnl_link_set_addr(c, mac.get()); });
    change_link(sk.get(), ifindex, "set MTU " + std::to_string(cfg.mtu) + " on " + dev + where,
                [&](rtnl_link *c) { rtnl_link_set_mtu(c, cfg.mtu); });

    // Before link up: IPv6 starts DAD for the link-local address when the
    // link comes up.
    disable_dad(dev, where, cfg.ipv6.has_value());

    Link lo = find_link(sk.get(), "lo", "find lo" + where);
    if (!lo) {
        fail("find lo" + where, "no loopback interface");
    }
    change_link(sk.get(), rtnl_link_get_ifindex(lo.get()), "bring up lo" + where,
                [](rtnl_link *c) { rtnl_link_set_flags(c, IFF_UP); });
    change_link(sk.get(), ifindex, "bring up " + dev + where,
                [](rtnl_link *c) { rtnl_link_set_flags(c, IFF_UP); });

    if (cfg.ipv4) {
        add_address(sk.get(), ifindex, build_ip4(*cfg.ipv4, 32), 0,
                    "add " + cfg.ipv4->str() + "/32 to " + dev + where);
    }
    if (cfg.ipv6) {
        add_address(sk.get(), ifindex, build_ip6(*cfg.ipv6, 128), IFA_F_NODAD,
                    "add " + cfg.ipv6->str() + "/128 to " + dev + where);
    }

    const auto routes = expected_pod_routes(cfg);
    size_t next_route = 0;
    auto route_step = [&] { return "add route " + routes.at(next_route++) + where; };
    if (cfg.ipv4) {
        // The gateway is reachable only through the first, on-link route.
        add_route(sk.get(), ifindex, build_ip4(net::kCalicoGateway4, 32), nullptr, RT_SCOPE_LINK,
                  route_step());
        add_route(sk.get(), ifindex, build_ip4(net::Ip4Addr(), 0),
                  build_ip4(net::kCalicoGateway4, 32), RT_SCOPE_UNIVERSE, route_step());
    }
    if (cfg.ipv6) {
        add_route(sk.get(), ifindex, build_ip6(net::Ip6Addr(), 0),
                  build_ip6(net::calico_gateway6(), 128), RT_SCOPE_UNIVERSE, route_step());
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
    const int ifindex = rtnl_link_get_ifindex(link.get());
    if (nl_addr *mac = rtnl_link_get_addr(link.get()); mac && nl_addr_get_len(mac) == 6) {
        state.mac = net::MacAddr::from_bytes(static_cast<uint8_t *>(nl_addr_get_binary_addr(mac)));
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

    UniqueFd ns_fd(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns_fd.get() < 0) {
        fail_errno(move_step, errno);
    }

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

    run_in_netns(ns_fd.get(), ns_path, [&] { configure_inside(cfg, ns_path); });
}

PodIfState inspect_pod_interface(const std::string &netns, const std::string &ifname) {
    const std::string ns_path = resolve_netns_path(netns);
    UniqueFd ns_fd(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns_fd.get() < 0) {
        fail_errno("inspect " + ifname + " in netns " + ns_path, errno);
    }
    PodIfState state;
    run_in_netns(ns_fd.get(), ns_path,
                 [&] { state = inspect_inside(ifname, " in netns " + ns_path); });
    return state;
}

}  // namespace fwd::vhost
