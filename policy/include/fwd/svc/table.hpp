// The per-node service table: what the NAT stage of one node does with a new flow to a
// service address, compiled from the Services and EndpointSlices of the store and the node's
// own name and addresses, the way kube-proxy programs a node (../shared/CALICO.md, "NAT").
//
// One Frontend per (address, protocol, port) the node answers for:
//   kClusterIp     every ClusterIP of the service (one per family), each service port
//   kNodePort      each of this node's addresses of a family the service has, the nodePort
//   kExternalIp    spec.externalIPs of a family the service has
//   kLoadBalancer  status.loadBalancer.ingress[].ip and spec.loadBalancerIP (LoadBalancer only)
// Each frontend lists every endpoint of its family the slices give for its port (for existing
// flows, which keep their backend until it is gone from the list), each flagged with its
// conditions; new flows pick among the backends with for_new_flows set. When there is none,
// no_backend says what a new flow gets: kReject (ICMP / ICMPv6 port unreachable, as
// kube-proxy's REJECT) when the service has no ready endpoint at all, kDrop when it has ready
// endpoints but the traffic policy allows none of them on this node (kube-proxy drops there).
//
// Pure: plain structs, no store, no DPDK. Deterministic: frontends sorted by (address,
// protocol, port), backends by (address, port), notes by subject.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fwd/net/addr.hpp"
#include "fwd/svc/service.hpp"

namespace fwd::svc {

// This node, as the table needs it.
struct NodeInfo {
    std::string name;                    // matches EndpointSlice endpoints[].nodeName
    std::vector<net::IpAddr> addresses;  // where NodePorts are answered
};

enum class FrontendKind : uint8_t { kClusterIp, kNodePort, kExternalIp, kLoadBalancer };
std::string_view to_string(
    FrontendKind k);  // "ClusterIP", "NodePort", "ExternalIP", "LoadBalancer"

enum class NoBackend : uint8_t {
    kNone,    // there are backends for new flows
    kReject,  // no ready endpoint anywhere: ICMP / ICMPv6 port unreachable
    kDrop,    // ready endpoints, none allowed here by the traffic policy: dropped
};
std::string_view to_string(NoBackend n);  // "-", "reject", "drop"

struct Backend {
    net::IpAddr addr;
    uint16_t port = 0;
    std::string node;  // endpoints[].nodeName; empty when the slice does not say
    bool local = false;
    Conditions conditions;
    // ready, and allowed by the frontend's traffic policy (local_only: local ones only).
    bool for_new_flows = false;
    bool operator==(const Backend &) const = default;
};

struct Frontend {
    FrontendKind kind = FrontendKind::kClusterIp;
    net::IpAddr addr;
    Protocol protocol = Protocol::kTcp;
    uint16_t port = 0;
    std::string service;            // "ns/name"
    std::string port_name;          // the Service port's name
    bool affinity = false;          // sessionAffinity ClientIP: a client keeps its backend
    uint32_t affinity_timeout = 0;  // seconds since the client's last packet
    // Only local backends. ClusterIP: internalTrafficPolicy Local. Other kinds:
    // externalTrafficPolicy Local, for traffic from outside the cluster (kube-proxy gives
    // pods Cluster semantics when they reach an external address of a service).
    bool local_only = false;
    // External kinds only. keep_source: externalTrafficPolicy Local, the client's address
    // reaches the backend (never SNAT). Otherwise (Cluster) traffic to a remote backend may
    // be SNATed to this node so that replies come back through it.
    bool keep_source = false;
    NoBackend no_backend = NoBackend::kNone;
    std::vector<Backend> backends;
};

// Something the table leaves out, or a resource waiting for another.
struct Note {
    std::string subject;  // "Service 'ns/x'", "EndpointSlice 'ns/y'"
    std::string what;
    auto operator<=>(const Note &) const = default;
};

struct ServiceTable {
    std::vector<Frontend> frontends;
    std::vector<Note> notes;
    // The frontend for a packet's destination; nullptr when none.
    const Frontend *find(const net::IpAddr &addr, Protocol p, uint16_t port) const;
};

// The table of `node`. Services the dataplane does not serve (ExternalName, headless) and
// slices without their service (kept in the store: they take effect when the service comes)
// are notes; so are frontends two services claim (the first by service key wins) and
// ports that no slice port resolves.
ServiceTable compile(const std::vector<Service> &services, const std::vector<EndpointSlice> &slices,
                     const NodeInfo &node);

}  // namespace fwd::svc
