// The node's own kernel interface behind the dataplane: a plain Linux tap
// (/dev/net/tun, IFF_TAP | IFF_NO_PI), not a DPDK port. The dataplane reads
// the frames the host sends from fd() and writes the frames for the host to
// it.
//
// The tap is created inside the target namespace by a short-lived thread that
// joined it with setns(); the fd keeps working in this process after the
// thread ends. Creating it there (instead of in our namespace and moving it)
// means the name is never visible in our namespace, so it cannot clash with
// an interface of ours and there is no half-moved state to clean up; the
// netlink and sysctl configuration then runs on the same thread. The caller's
// thread never changes namespace.
//
// The tap is not persistent: it lives exactly as long as the fd, so a failed
// constructor and the destructor leave nothing behind.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "fwd/net/addr.hpp"

namespace fwd::vhost {

struct HostTapConfig {
    std::string name;   // 1..15 characters; must not exist yet in the namespace
    std::string netns;  // empty: this process's namespace; else a name or a path
    net::MacAddr mac;   // unicast, not zero
    uint16_t mtu = 1500;
    std::optional<net::IfAddr4> ip4;
    std::optional<net::IfAddr6> ip6;  // added without DAD
};

// The message names the step, the interface, the namespace and the errno
// text, e.g. "host tap fwdhost in netns /var/run/netns/x: open netns: No such
// file or directory".
class HostTapError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class HostTap {
  public:
    // Creates and configures the tap: MAC, MTU, sysctls (IPv6: accept_ra=0,
    // autoconf=0, accept_dad=0, router_solicitations=0 on the tap only),
    // link up, then the addresses (IPv6 with IFA_F_NODAD). Throws
    // HostTapError; on failure the tap is gone.
    explicit HostTap(const HostTapConfig &cfg);
    ~HostTap();
    HostTap(const HostTap &) = delete;
    HostTap &operator=(const HostTap &) = delete;
    HostTap(HostTap &&other) noexcept;
    HostTap &operator=(HostTap &&other) noexcept;

    // Non-blocking, close-on-exec.
    int fd() const { return fd_; }
    // One frame per call; -1 with errno EAGAIN when there is none. A frame
    // longer than cap is truncated to cap by the kernel.
    ssize_t read_frame(uint8_t *buf, size_t cap);
    // One frame; false when the kernel refused it (errno tells why).
    bool write_frame(const uint8_t *buf, size_t len);
    bool write_frame(const struct iovec *iov, int iovcnt);
    const std::string &name() const { return name_; }

  private:
    std::string name_;
    int fd_ = -1;
};

}  // namespace fwd::vhost
