// Pod side of a pod link, Calico style: the pod's kernel interface in its
// network namespace, with the pod's name, MAC, MTU, /32 and /128 addresses
// and the link-local gateway routes (see shared/CALICO.md, "Pod side of the
// wire"). Either a macvlan on the shared pod tap, made inside the pod
// (add_pod_macvlan), or any interface of ours moved there
// (configure_pod_interface).
//
// Control-plane only: this talks netlink and runs a short-lived thread per
// call. The calling thread never changes network namespace.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::vhost {

struct PodIfConfig {
    // A path (/var/run/netns/x, /proc/<pid>/ns/net) or a bare name, which
    // means /var/run/netns/<name>.
    std::string netns;
    // configure_pod_interface: the interface's current name in the caller's
    // network namespace. add_pod_macvlan does not use it.
    std::string host_ifname;
    // Name inside the pod.
    std::string ifname = "eth0";
    net::MacAddr mac;
    uint16_t mtu = 1500;
    std::optional<net::Ip4Addr> ipv4;  // added as /32
    std::optional<net::Ip6Addr> ipv6;  // added as /128, without DAD
    // false: add_pod_macvlan leaves out the routes (add_pod_routes adds them
    // later): until then the pod can send nothing but link-local.
    bool routes = true;
};

// The message names the step, the interface and the namespace, e.g.
// "move fwd3a2b into netns /var/run/netns/pod1: No such file or directory".
class NetnsError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Moves cfg.host_ifname into the pod namespace and configures it there. On
// failure throws NetnsError and leaves whatever was done: the caller destroys
// the port, which deletes the interface in whichever namespace it is.
void configure_pod_interface(const PodIfConfig &cfg);

// Kernel pods share one tap of the dataplane (the lower interface, in the
// caller's namespace): each gets a macvlan on it, in private mode, so that
// everything a pod sends goes down to the tap and so to the dataplane (the
// kernel never bridges one pod to another, not even broadcasts), while the
// kernel hands each frame the dataplane writes to the macvlan of its
// destination MAC.
//
// add_pod_macvlan creates the macvlan directly inside the pod namespace
// (IFLA_NET_NS_FD in the creating request) under its final name cfg.ifname,
// with cfg.mac and cfg.mtu (at most the lower interface's MTU), then
// configures it there as configure_pod_interface does. The name never
// appears in our namespace, so pods cannot clash with each other or with
// our interfaces, and there is no half-moved state. Returns the macvlan's
// ifindex in the pod namespace (for delete_pod_macvlan). On failure the
// macvlan is deleted and NetnsError thrown; errors name the step, e.g. "eth0
// already exists in the pod" or "MAC ... is taken on fwdpods".
int add_pod_macvlan(const std::string &lower_ifname, const PodIfConfig &cfg);

// The pod's routes (expected_pod_routes) on its interface of index ifindex
// in its namespace, as configure_pod_interface adds them; one already there
// is replaced. Throws NetnsError.
void add_pod_routes(const PodIfConfig &cfg, int ifindex);

enum class PodLinkDelete {
    kDeleted,    // it was there and is gone now
    kNetnsGone,  // the namespace does not exist any more (the macvlan went with it)
    kLinkGone,   // no interface of that index in the namespace
    kNotOurs,    // the index is another interface now (not a macvlan of that MAC): left alone
};

// Deletes the macvlan add_pod_macvlan made, found by its ifindex inside the
// pod namespace and checked to still be a macvlan with the pod's MAC (a
// renamed one is found all the same). Never touches another interface.
// Throws NetnsError when netlink fails.
PodLinkDelete delete_pod_macvlan(const std::string &netns, int ifindex, const net::MacAddr &mac);

// A kernel pod's own tap device (port kind "tun"): made inside the pod
// namespace under its final name cfg.ifname by opening /dev/net/tun there
// with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (vnet_hdr_len bytes of header per
// frame), non-blocking and close-on-exec, the offloads of `offloads`
// (TUN_F_* bits) it accepts turned on, then configured as
// configure_pod_interface does (MAC, MTU, /32, /128, gateway routes). The
// device is not persistent: closing the fd deletes it, in whichever
// namespace it is (and the namespace's deletion leaves the fd readable but
// dead). On failure nothing is left and NetnsError names the step, e.g.
// "eth0 already exists in the pod".
//
// persist: the device is made persistent (TUNSETPERSIST, as the last step):
// it outlives the fd, so a daemon killed with -9 leaves the pod its eth0,
// addresses and routes, and the next one takes it over (attach_pod_tun).
// Such a device goes with close_pod_tun(fds, false) or with its namespace.
//
// queues: more than 1 makes a multi-queue tap (IFF_MULTI_QUEUE) with that
// many queues, one fd each: the pod's kernel spreads its flows over them
// (by flow hash), and each may be read by another worker. 1: a single-queue
// tap, as before multi-queue.
inline constexpr unsigned kMaxPodTunQueues = 8;
struct PodTun {
    std::vector<int> fds;   // one per queue; the caller owns them
    int ifindex = 0;        // in the pod namespace
    unsigned offloads = 0;  // the TUN_F_* bits the kernel took
};
PodTun add_pod_tun(const PodIfConfig &cfg, int vnet_hdr_len, unsigned offloads,
                   bool persist = false, unsigned queues = 1);

// Takes over the persistent tap add_pod_tun(..., true) made for a daemon
// that died: cfg.ifname in the pod must exist and be a tun device with
// cfg.mac (else NetnsError: it is not the pod's tap); opened as add_pod_tun
// opens it, with `queues` queues where the device is multi-queue and one
// where it is not (a tap keeps the mode it was made with). The pod's
// addresses and routes are left as they are.
PodTun attach_pod_tun(const PodIfConfig &cfg, int vnet_hdr_len, unsigned offloads,
                      unsigned queues = 1);

// The pod's neighbor entries for the gateway (169.254.1.1 and
// fe80::ecee:eeff:feee:eeee on cfg.ifname) set to ee:ee:ee:ee:ee:ee,
// reachable. After a restart a macvlan whose lower tap lost its queues lost
// its carrier and with it those entries: its kernel would only ask again
// on its next ARP / ND retransmission, up to a second later, holding the
// pod's packets meanwhile. Throws NetnsError.
void set_pod_gateway_neighbors(const PodIfConfig &cfg);

// Closes a pod tap's fds; keep false also clears its persistence first, so
// the device goes with them.
void close_pod_tun(const std::vector<int> &fds, bool keep);

// The shared pod tap (a net_tap PMD's multi-queue tap, in the caller's
// namespace) made persistent or not: persistent, it and the pods' macvlans
// on it outlive the daemon's process, and the PMD of the next one attaches
// its queues to it. Throws NetnsError.
void set_tap_persist(const std::string &ifname, bool persist);

// The shared pod tap's kernel side stays in our namespace and is nobody's
// host: IPv6 off on it (no link-local address, router solicitations, MLD or
// DAD sent into the dataplane), its MTU the largest a pod may have (a
// macvlan's MTU cannot exceed its lower's), and its transmit queue (shared by
// every pod's macvlan, so longer than one pod's) txqueuelen. Throws
// NetnsError.
void configure_pod_lower(const std::string &ifname, uint16_t mtu, uint32_t txqueuelen);

// What the pod interface looks like now, for CNI CHECK. addresses are "a/len"
// (including kernel-made link-local ones); routes are the main-table unicast
// routes through the interface in the form of format_route().
struct PodIfState {
    bool exists = false;
    int ifindex = 0;
    std::string kind;  // "macvlan", "tun", ...; empty for a device without a kind
    net::MacAddr mac;
    uint16_t mtu = 0;
    bool up = false;
    std::vector<std::string> addresses;
    std::vector<std::string> routes;
};

// Throws NetnsError if the namespace cannot be entered; a missing interface
// is reported as exists == false.
PodIfState inspect_pod_interface(const std::string &netns, const std::string &ifname);

// A bare name becomes /var/run/netns/<name>; anything with a '/' is taken as
// a path. Throws NetnsError for an empty name or "." / "..".
std::string resolve_netns_path(const std::string &netns_or_name);

// Canonical text of a route: "<dst> [via <gw>] dev <ifname>", where dst is
// "default" for a zero-length prefix and "addr/len" otherwise.
std::string format_route(const std::string &dst, const std::string &gateway,
                         const std::string &ifname);

// What configure_pod_interface() installs, in the form PodIfState reports,
// so CNI CHECK can compare: addresses first IPv4 then IPv6, routes in the
// order they are added.
std::vector<std::string> expected_pod_addresses(const PodIfConfig &cfg);
std::vector<std::string> expected_pod_routes(const PodIfConfig &cfg);

}  // namespace fwd::vhost
