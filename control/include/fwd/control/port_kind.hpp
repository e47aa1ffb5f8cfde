// Kinds of pod port (grout's struct iface_type): how a pod's packets reach
// the dataplane. Each kind is one file that registers itself:
//
//   FWD_ON_LOAD(fwd::control::register_port_kind<TapKind>("tap"));
//
// and the endpoints module (endpoints.hpp) drives it through endpoint.add /
// endpoint.del; it never names a kind. Built in: "tap" (kernel pods: a
// macvlan on the shared pod tap, port_tap.cpp) and "vhost-user" (DPDK and VM
// pods: a vhost-user socket each, driven through librte_vhost as a soft
// port, port_vhost.cpp).
//
// Endpoint life, on the control thread (start / stop on the main thread):
//   check      the kind's own arguments, clashes with the other endpoints;
//              makes nothing
//   attach     the port or link: sets port_id, rx_queues and the kind's
//              state; all or nothing (throws ApiError)
//   (the endpoints module allocates the pod's next hop and routes)
//   activate   its routes are live: RX to a worker
//   silence    first in endpoint.del (Detach::kAll), before any subscriber
//              hears kRemoving: nothing the pod sends from now on reaches a
//              worker (on a port pods share, anti-spoofing would call what a
//              pod sends once its addresses are gone spoofed). Never throws.
//   deactivate before the next hop is freed: no worker sends to or polls
//              the port any more
//   detach     removes what attach made, as much as Detach says (endpoint.del:
//              everything; a stop: what the kind's stop() does not take, or,
//              when the stop keeps the pods, nothing the pod sees). Never
//              throws.
//   reattach   instead of attach when a restarted daemon takes the endpoint
//              back from its record (endpoint_record.hpp): take over what
//              the dead process left (the pod's interface, its addresses and
//              routes untouched), or make it anew where nothing is left.
// And: describe (its fields of the endpoint's JSON), stats (its port
// counters), describe_node (node.get). No op changes a live endpoint's MTU
// yet; set_mtu comes with the op that needs it.
// Every step after attach tolerates the ones before it having failed.
#pragma once

#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fwd/control/module.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/net/addr.hpp"
#include "fwd/vhost/netns.hpp"

namespace fwd::control {

// One pod's attachment to the dataplane.
struct Endpoint {
    std::string id;
    std::string kind;  // a registered PortKind
    std::string netns;
    std::string ifname;
    std::optional<net::Ip4Addr> ipv4;
    std::optional<net::Ip6Addr> ipv6;
    net::MacAddr mac;
    uint16_t mtu = 0;
    uint16_t port_id = 0;    // valid once attached
    unsigned worker = 0;     // polls the only RX queue; with one queue per worker, queue 0
    uint16_t rx_queues = 1;  // the shared tap has one per worker (worker w polls queue w)
    uint32_t nh = dp::kNhInvalid;
    bool attached = false;  // attach() returned
    bool active = false;    // activate() returned
    size_t announced = 0;   // subscribers told of it (EndpointsModule::Event), in order
    // Who asked for the endpoint (the CNI attachment: network, container_id, ifname, handle,
    // k8s namespace and pod): an object of strings, kept and shown, never interpreted here.
    nlohmann::json owner = nlohmann::json::object();
    std::any state;  // the kind's own (its attach sets it)
};

using Endpoints = std::map<std::string, Endpoint>;

// The pod side of a kernel pod's interface as the endpoint asks for it
// (name, MAC, MTU, addresses in its namespace): what the kinds with a pod
// interface hand to vhost/netns.hpp.
inline vhost::PodIfConfig pod_if_config(const Endpoint &e) {
    vhost::PodIfConfig pc;
    pc.netns = e.netns;
    pc.ifname = e.ifname;
    pc.mac = e.mac;
    pc.mtu = e.mtu;
    pc.ipv4 = e.ipv4;
    pc.ipv6 = e.ipv6;
    return pc;
}

// How much of a pod detach takes away.
enum class Detach : uint8_t {
    kAll,       // endpoint.del: the pod's interface too
    kShutdown,  // a stop that removes the pods (node.shutdown remove_pods): the
                // kind's stop(false) takes what detach leaves
    kKeepPod,   // a stop that keeps the pods (SIGTERM, the default): the pod's
                // interface, addresses and routes stay for the next daemon's reattach
};

class PortKind {
  public:
    virtual ~PortKind() = default;

    // endpoint.add fields the kind reads besides the common ones.
    virtual std::vector<std::string> args() const { return {}; }
    // Fields describe() sets: every endpoint's JSON has them (null for the
    // other kinds), so endpoint listings keep one shape.
    virtual std::vector<std::string> fields() const { return {}; }
    virtual bool needs_netns() const = 0;  // endpoint.add requires netns
    virtual bool needs_mac() const = 0;    // endpoint.add requires mac (else a random one)
    virtual bool shared_port() const = 0;  // many pods on one ethdev ("port": "shared")
    // The pod has a kernel interface in its netns (CNI CHECK inspects it).
    virtual bool pod_interface() const = 0;

    virtual void start() {}
    // keep_pods: the pods' interfaces stay for the next daemon (Detach::kKeepPod).
    virtual void stop(bool keep_pods) { (void)keep_pods; }
    // The restore at start is over: every recorded pod was taken back or let go.
    virtual void restored() {}
    virtual void check(Endpoint &, const nlohmann::json &args, const Endpoints &others) {
        (void)args;
        (void)others;
    }
    virtual void attach(Endpoint &e) = 0;
    // A kind with nothing that outlives the process makes it anew.
    virtual void reattach(Endpoint &e) { attach(e); }
    virtual void activate(Endpoint &) {}
    virtual void silence(Endpoint &) {}
    virtual void deactivate(Endpoint &) {}
    virtual void detach(Endpoint &e, Detach how) = 0;
    virtual void describe(const Endpoint &, nlohmann::json &) const {}
    // The endpoint's port counters (endpoint.get's "port_stats": rx_packets,
    // tx_packets, ...); null when the kind cannot count one pod's packets
    // (pods sharing a port).
    virtual nlohmann::json stats(const Endpoint &) const { return nullptr; }
    virtual void describe_node(nlohmann::json &, const Endpoints &) const {}
};

using PortKindFactory = std::function<std::unique_ptr<PortKind>(ControlContext &)>;
// At load time (FWD_ON_LOAD). Throws std::invalid_argument for a name used twice.
void register_port_kind(std::string name, PortKindFactory make);
const std::map<std::string, PortKindFactory> &registered_port_kinds();
// The usual case: a kind class T with a T(ControlContext &).
template <typename T>
void register_port_kind(std::string name) {
    register_port_kind(std::move(name), [](ControlContext &ctx) -> std::unique_ptr<PortKind> {
        return std::make_unique<T>(ctx);
    });
}

}  // namespace fwd::control
