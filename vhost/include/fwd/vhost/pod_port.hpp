// DPDK side of a pod link: a net_tap port (the pod gets the kernel tap
// interface), any ethdev from devargs (the uplink), and the socket file of a
// vhost-user pod (control/port_vhost.cpp drives the device through
// librte_vhost, no ethdev).
//
// Control-plane only, and from the thread that owns ethdev configuration:
// create_port() and destroy_port() probe and remove EAL devices.
//
// A tap port after configure_pod_interface() moved its interface: RX and TX
// bursts work (they use the queue fds), but the PMD still reaches the
// interface by its old name in our namespace. So once moved, do not
// reconfigure it: MTU, MAC, promiscuous and link up/down fail with -ENODEV,
// a queue set up again makes a new interface of the old name here, and
// rte_eth_link_get() reports the link down. Only rx/tx bursts, stats and
// destroy_port().
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "fwd/net/addr.hpp"

struct rte_mempool;

namespace fwd::vhost {

struct PortSpec {
    // Unique short token ([A-Za-z0-9_-], at most kMaxTokenLen) that names the
    // EAL device: net_tap_<token>.
    std::string token;
    uint16_t rx_queues = 1;
    uint16_t tx_queues = 1;
    rte_mempool *pool = nullptr;  // RX buffers; must outlive the port
    // A tap RX queue holds rx_desc mbufs from pool for as long as it exists.
    // With rx_scatter a tap reads one frame into at most rx_desc of them, so
    // there it bounds the frame size, not the queue length (the kernel
    // queues the frames).
    uint16_t rx_desc = 1024;
    uint16_t tx_desc = 1024;
    // Receive frames larger than one mbuf as a chain (and send chains);
    // PortError if the PMD cannot. The ethdev MTU stays the PMD's default:
    // DPDK 22.11's tap caps it at 1500 and its TX drops larger frames, but
    // with scatter its RX takes whatever the kernel interface's MTU lets in.
    bool rx_scatter = false;

    // kTap: kernel interface name (at most 15 characters), created in the
    // caller's network namespace. It must not exist yet, and cannot be reused
    // while this port exists, even after the interface left the namespace
    // (the PMD keeps addressing it by this name); create_port() checks both.
    std::string tap_ifname;
    // kTap: an interface of that name may exist if it is a persistent
    // multi-queue tap (set_tap_persist, netns.hpp): the one a daemon that
    // died left, with the pods' macvlans on it. The PMD attaches to it.
    bool tap_take_over = false;
};

struct PortInfo {
    uint16_t port_id = 0;
    std::string devname;  // EAL device name, net_tap_<token>
    // The PMD's own address. For a tap it is the kernel interface's MAC at
    // creation, not the pod MAC set later by configure_pod_interface(), and
    // not what the host side answers with (kCalicoGatewayMac).
    net::MacAddr mac;
};

// The message names the step and the device, e.g.
// "configure net_tap_p17 (port 3): Invalid argument".
class PortError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

inline constexpr size_t kMaxTokenLen = 32;

// EAL device names and devargs for rte_dev_probe(). Pure; they throw
// PortError for a token, interface name or path the kernel or the devargs
// parser would reject.
std::string tap_devname(const std::string &token);
std::string tap_devargs(const std::string &token, const std::string &ifname);
// A vhost-user socket path: under sizeof(sun_path) characters, no control
// characters; PortError naming the problem otherwise.
void check_socket_path(const std::string &path);
// For a server socket at path: its parent directory made if missing, a stale
// socket nobody listens on removed (a crashed daemon's). PortError when the
// path is not a socket or somebody listens on it (not ours to take); who
// names the socket's user in the message.
void prepare_server_socket(const std::string &path, const std::string &who);

// Probes, configures, sets up every queue and starts the port. On failure
// everything done so far is undone and PortError thrown.
PortInfo create_port(const PortSpec &spec);

// Any DPDK device (the uplink): probes devargs unless the port exists
// already (a PCI device allowed at EAL init), then configures and starts it
// like create_port. The tap fields are ignored.
PortInfo create_port_from_devargs(const std::string &devargs, const PortSpec &spec);

// Stops, closes and removes the EAL device; for a vhost-user server also the
// socket file. Works when a tap's interface has been moved to another
// namespace or deleted. Every step is attempted; PortError afterwards lists
// the steps that failed.
void destroy_port(uint16_t port_id);

}  // namespace fwd::vhost
