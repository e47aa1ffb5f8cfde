// Pod side of a pod link, Calico style: move the kernel interface of a pod
// port into the pod's network namespace and give it the pod's name, MAC, MTU,
// /32 and /128 addresses and the link-local gateway routes (see
// shared/CALICO.md, "Pod side of the wire").
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
    // The interface's current name in the caller's network namespace.
    std::string host_ifname;
    // Name inside the pod.
    std::string ifname = "eth0";
    net::MacAddr mac;
    uint16_t mtu = 1500;
    std::optional<net::Ip4Addr> ipv4;  // added as /32
    std::optional<net::Ip6Addr> ipv6;  // added as /128, without DAD
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

// What the pod interface looks like now, for CNI CHECK. addresses are "a/len"
// (including kernel-made link-local ones); routes are the main-table unicast
// routes through the interface in the form of format_route().
struct PodIfState {
    bool exists = false;
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
