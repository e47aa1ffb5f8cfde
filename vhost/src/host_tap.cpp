#include "fwd/vhost/host_tap.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_tun.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
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
#include <thread>
#include <utility>

#include "fwd/vhost/netns.hpp"

namespace fwd::vhost {
namespace {

constexpr const char *kTunDevice = "/dev/net/tun";
constexpr const char *kIpv6ConfDir = "/proc/sys/net/ipv6/conf/";
constexpr uint16_t kMinMtu4 = 68;    // RFC 791
constexpr uint16_t kMinMtu6 = 1280;  // RFC 8200; below it the kernel drops IPv6
constexpr int kMacPrefixLen = 48;

template <typename T, void (*Free)(T *)>
struct NlFree {
    void operator()(T *p) const { Free(p); }
};
using NlSock = std::unique_ptr<nl_sock, NlFree<nl_sock, nl_socket_free>>;
using NlAddr = std::unique_ptr<nl_addr, NlFree<nl_addr, nl_addr_put>>;
using Link = std::unique_ptr<rtnl_link, NlFree<rtnl_link, rtnl_link_put>>;
using Addr = std::unique_ptr<rtnl_addr, NlFree<rtnl_addr, rtnl_addr_put>>;

class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    int get() const { return fd_; }
    void reset(int fd) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }
    int release() { return std::exchange(fd_, -1); }

  private:
    int fd_ = -1;
};

// Builds messages "host tap <name>[ in netns <path>]: <step>: <why>".
class Steps {
  public:
    Steps(const std::string &name, const std::string &ns_path)
        : prefix_("host tap " + name + (ns_path.empty() ? "" : " in netns " + ns_path) + ": ") {}
    [[noreturn]] void fail(const std::string &step, const std::string &why) const {
        throw HostTapError(prefix_ + step + ": " + why);
    }
    [[noreturn]] void fail_errno(const std::string &step, int err) const {
        fail(step, std::strerror(err));
    }
    [[noreturn]] void fail_nl(const std::string &step, int nl_err) const {
        fail(step, nl_geterror(nl_err));
    }

  private:
    std::string prefix_;
};

// The kernel's rule (dev_valid_name) plus a length check we can word.
std::string name_problem(const std::string &name) {
    if (name.empty()) {
        return "the name is empty";
    }
    if (name.size() >= IFNAMSIZ) {
        return "the name is " + std::to_string(name.size()) + " characters, at most " +
               std::to_string(IFNAMSIZ - 1) + " are allowed";
    }
    if (name == "." || name == "..") {
        return "'" + name + "' is not an interface name";
    }
    for (char c : name) {
        if (c == '/' || c == ':' || c == ' ' || (c >= '\t' && c <= '\r')) {
            return "the name contains '/', ':' or white space";
        }
    }
    return "";
}

void write_sysctl(const Steps &steps, const std::string &path, const char *value) {
    const std::string step = "set " + path + " to " + value;
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        steps.fail_errno(step, errno);
    }
    const size_t len = std::strlen(value);
    if (::write(fd.get(), value, len) != static_cast<ssize_t>(len)) {
        steps.fail_errno(step, errno);
    }
}

NlAddr build_addr(const Steps &steps, int family, const void *bytes, size_t len, int prefixlen) {
    NlAddr a(nl_addr_build(family, bytes, len));
    if (!a) {
        steps.fail("build netlink address", "out of memory");
    }
    nl_addr_set_prefixlen(a.get(), prefixlen);
    return a;
}

template <typename Fill>
void change_link(const Steps &steps, nl_sock *sk, int ifindex, const std::string &step,
                 Fill &&fill) {
    Link orig(rtnl_link_alloc());
    Link change(rtnl_link_alloc());
    if (!orig || !change) {
        steps.fail(step, "out of memory");
    }
    rtnl_link_set_ifindex(orig.get(), ifindex);
    fill(change.get());
    if (int err = rtnl_link_change(sk, orig.get(), change.get(), 0); err < 0) {
        steps.fail_nl(step, err);
    }
}

void add_address(const Steps &steps, nl_sock *sk, int ifindex, NlAddr local, unsigned flags,
                 const std::string &step) {
    Addr addr(rtnl_addr_alloc());
    if (!addr) {
        steps.fail(step, "out of memory");
    }
    rtnl_addr_set_ifindex(addr.get(), ifindex);
    if (int err = rtnl_addr_set_local(addr.get(), local.get()); err < 0) {
        steps.fail_nl(step, err);
    }
    rtnl_addr_set_prefixlen(addr.get(), nl_addr_get_prefixlen(local.get()));
    rtnl_addr_set_flags(addr.get(), flags);
    if (int err = rtnl_addr_add(sk, addr.get(), NLM_F_EXCL); err < 0) {
        steps.fail_nl(step, err);
    }
}

// Creates and configures the tap in the calling thread's namespace; returns
// its fd (closing it removes the tap).
int create_here(const HostTapConfig &cfg, const Steps &steps) {
    Fd fd(::open(kTunDevice, O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (fd.get() < 0) {
        steps.fail_errno(std::string("open ") + kTunDevice, errno);
    }
    struct ifreq ifr;
    std::memset(&ifr, 0, sizeof(ifr));
    // IFF_TUN_EXCL: fail instead of attaching to an existing device.
    ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL);
    std::memcpy(ifr.ifr_name, cfg.name.data(), cfg.name.size());
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
        if (errno == EBUSY || errno == EEXIST) {
            steps.fail("create tap", "an interface with that name already exists");
        }
        steps.fail_errno("create tap", errno);
    }

    NlSock sk(nl_socket_alloc());
    if (!sk) {
        steps.fail("open netlink socket", "out of memory");
    }
    if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0) {
        steps.fail_nl("open netlink socket", err);
    }
    rtnl_link *raw = nullptr;
    if (int err = rtnl_link_get_kernel(sk.get(), 0, cfg.name.c_str(), &raw); err < 0) {
        steps.fail_nl("find the new tap", err);
    }
    Link link(raw);
    const int ifindex = rtnl_link_get_ifindex(link.get());

    NlAddr mac = build_addr(steps, AF_LLC, cfg.mac.data(), cfg.mac.bytes().size(), kMacPrefixLen);
    change_link(steps, sk.get(), ifindex, "set MAC " + cfg.mac.str(),
                [&](rtnl_link *c) { rtnl_link_set_addr(c, mac.get()); });
    change_link(steps, sk.get(), ifindex, "set MTU " + std::to_string(cfg.mtu),
                [&](rtnl_link *c) { rtnl_link_set_mtu(c, cfg.mtu); });

    // Before link up, so the link-local address is not probed and no router
    // solicitation leaves: the dataplane, not the kernel, owns the uplink's
    // routers and the host's addresses are fixed by config.
    const std::string conf = std::string(kIpv6ConfDir) + cfg.name + "/";
    struct stat st;
    if (::stat(conf.c_str(), &st) == 0) {
        for (const char *key : {"accept_dad", "accept_ra", "autoconf", "router_solicitations"}) {
            write_sysctl(steps, conf + key, "0");
        }
    } else if (cfg.ip6) {
        steps.fail("configure IPv6 (" + conf + ")", "IPv6 is disabled on this interface");
    }

    change_link(steps, sk.get(), ifindex, "bring up",
                [](rtnl_link *c) { rtnl_link_set_flags(c, IFF_UP); });

    if (cfg.ip4) {
        uint32_t raw4 = cfg.ip4->addr.be().raw();
        add_address(steps, sk.get(), ifindex,
                    build_addr(steps, AF_INET, &raw4, sizeof(raw4), cfg.ip4->len), 0,
                    "add " + cfg.ip4->str());
    }
    if (cfg.ip6) {
        add_address(steps, sk.get(), ifindex,
                    build_addr(steps, AF_INET6, cfg.ip6->addr.data(), 16, cfg.ip6->len),
                    IFA_F_NODAD, "add " + cfg.ip6->str());
    }
    return fd.release();
}

}  // namespace

HostTap::HostTap(const HostTapConfig &cfg) : name_(cfg.name) {
    std::string ns_path;
    if (!cfg.netns.empty()) {
        try {
            ns_path = resolve_netns_path(cfg.netns);
        } catch (const NetnsError &e) {
            throw HostTapError("host tap " + cfg.name + ": " + e.what());
        }
    }
    const Steps steps(cfg.name, ns_path);
    if (std::string why = name_problem(cfg.name); !why.empty()) {
        steps.fail("check config", "bad interface name '" + cfg.name + "': " + why);
    }
    if (cfg.mac.is_zero() || cfg.mac.is_multicast()) {
        steps.fail("check config", "MAC " + cfg.mac.str() + " is zero or multicast");
    }
    if (cfg.mtu < kMinMtu4) {
        steps.fail("check config",
                   "MTU " + std::to_string(cfg.mtu) + " is below " + std::to_string(kMinMtu4));
    }
    if (cfg.ip6 && cfg.mtu < kMinMtu6) {
        steps.fail("check config", "MTU " + std::to_string(cfg.mtu) +
                                       " is below the IPv6 minimum of " + std::to_string(kMinMtu6));
    }
    if (cfg.ip4 && cfg.ip4->len > net::Ip4Addr::kBits) {
        steps.fail("check config", "bad IPv4 prefix length in " + cfg.ip4->str());
    }
    if (cfg.ip6 && cfg.ip6->len > net::Ip6Addr::kBits) {
        steps.fail("check config", "bad IPv6 prefix length in " + cfg.ip6->str());
    }

    if (ns_path.empty()) {
        fd_ = create_here(cfg, steps);
        return;
    }

    Fd ns_fd(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns_fd.get() < 0) {
        steps.fail_errno("open netns", errno);
    }
    // setns() moves only this helper thread; the fd it opens stays valid for
    // the whole process and the tap stays in the namespace it was born in.
    Fd tap;
    std::exception_ptr error;
    std::thread worker([&] {
        try {
            if (::setns(ns_fd.get(), CLONE_NEWNET) != 0) {
                steps.fail_errno("enter netns", errno);
            }
            tap.reset(create_here(cfg, steps));
        } catch (...) {
            error = std::current_exception();
        }
    });
    worker.join();
    if (error) {
        std::rethrow_exception(error);
    }
    fd_ = tap.release();
}

HostTap::~HostTap() {
    if (fd_ >= 0) {
        ::close(fd_);
    }
}

HostTap::HostTap(HostTap &&other) noexcept
    : name_(std::move(other.name_)), fd_(std::exchange(other.fd_, -1)) {}

HostTap &HostTap::operator=(HostTap &&other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        name_ = std::move(other.name_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

ssize_t HostTap::read_frame(uint8_t *buf, size_t cap) {
    return ::read(fd_, buf, cap);
}

bool HostTap::write_frame(const uint8_t *buf, size_t len) {
    return ::write(fd_, buf, len) == static_cast<ssize_t>(len);
}

bool HostTap::write_frame(const struct iovec *iov, int iovcnt) {
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    return ::writev(fd_, iov, iovcnt) == static_cast<ssize_t>(len);
}

}  // namespace fwd::vhost
