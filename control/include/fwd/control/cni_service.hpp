// The daemon's side of the CNI plugin: the API ops cni.add, cni.del, cni.check, cni.status and
// cni.gc, which the dpdk-fwd-cni binary calls (one op per CNI verb). They run on the API thread,
// not the control thread: IPAM talks to its store (fsync, etcd) and may take milliseconds, and
// the control thread must keep serving the workers meanwhile. Endpoints are made and removed
// through the control thread's own ops (endpoint.add / endpoint.del), so that thread stays the
// only writer of the tables.
//
// One attachment is (network, container id, ifname). Its IPAM handle is Calico's
// "<network>.<container id>"; its endpoint id is "<network>.<container id>.<ifname>", and the
// endpoint's owner object names the attachment, so DEL, CHECK and GC find it again.
//
//   cni.add    {network, container_id, netns, ifname, k8s: {namespace, pod}, assign_ipv4,
//               assign_ipv6, ipv4_pools, ipv6_pools, ips: ["a[/len]"], mtu, mac,
//               vhost_user: {client, socket_dir}}
//              -> {endpoint: <endpoint.get>, handle, mtu}
//              All or nothing: the addresses are assigned in one IPAM transaction, the
//              endpoint made; if that fails the addresses go back and the error is returned.
//              A vhost-user pod's socket is <socket_dir>/<short container id>-<hash>.sock.
//              A Kubernetes pod (k8s.pod given): the pod's record in the cluster store
//              (fwd/policy/store.hpp, applied with `fwdctl apply -f`) and its namespace's may
//              choose its pools, families and fixed addresses by Calico's annotations
//              (fwd/policy/pod_network.hpp; a bad one is invalid_argument naming it); once the
//              endpoint exists the record gets the attachment (node, addresses, container
//              id), made bare when the pod has no record, so policy finds the pod's labels.
//   cni.del    {network, container_id, ifname, k8s} -> {endpoint_removed, released}
//              Idempotent: a missing endpoint or handle is not an error. The attachment
//              leaves the pod's record when the record names this container (a bare record
//              ADD made goes with it).
//   cni.check  {network, container_id, netns, ifname, ips: ["a/len"], mac, mtu}
//              -> {differences: ["..."]}: empty when the endpoint, the IPAM allocation and the
//              pod interface (addresses, routes, MAC, MTU, link) all agree with the request.
//   cni.status {assign_ipv4, assign_ipv6, ipv4_pools, ipv6_pools}
//              -> {ready, reason, pools: [...]}: ready when the store answers and, for every
//              family asked for, an enabled pool for workloads has a free address.
//   cni.gc     {network, valid: [{container_id, ifname}]} -> {endpoints_removed,
//              handles_released}: the network's endpoints on this node and its IPAM handles
//              held by this node that no valid attachment names.
//   reconcile  {release: [owner], keep: [handle], sweep} -> {pods_released, handles_released}
//              Not a plugin op: the endpoints module's restore after a restart (cni.reconcile,
//              internal). Each owner (an endpoint's owner object) names a pod that went while
//              the daemon was down: DEL of it without an endpoint (its handle released, it
//              leaves its pod record). sweep: also every handle of CNI's shape held by this
//              node that no recorded endpoint keeps (an ADD the crash cut between IPAM and the
//              endpoint); false when a damaged record may own one.
// Errors are ApiError: invalid_argument (bad request, unknown pool, bad netns), not_found
// (CHECK of an unknown attachment), exhausted (no free address), unavailable (the IPAM store
// cannot be reached; try again), already_exists (the container is attached on another ifname).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fwd/control/config.hpp"
#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/store.hpp"

namespace fwd::control {

struct CniDeps {
    // Runs one of the control thread's ops (endpoint.add / del / get / list): Controller::call.
    std::function<nlohmann::json(const std::string &op, const nlohmann::json &args)> call;
    // CHECK of a kernel pod's interface: what differs between the interface in `netns` and the
    // endpoint (its JSON from endpoint.get), one line each; empty when it matches.
    std::function<std::vector<std::string>(const nlohmann::json &endpoint)> inspect;
};

class CniService {
  public:
    // cfg.ipam must be set: its store is opened here (throws ipam::StoreError / std::exception).
    CniService(const NodeConfig &cfg, std::shared_ptr<ipam::Store> store, CniDeps deps);

    static bool handles(const std::string &op);  // "cni.*"
    static const std::vector<std::string> &ops();
    // Each op: its name, the fields its args may have (call() rejects any
    // other) and its handler. The daemon registers its API ops from this.
    struct Op {
        std::string name;
        std::vector<std::string> args;
        nlohmann::json (CniService::*fn)(const nlohmann::json &);
    };
    static const std::vector<Op> &op_table();

    nlohmann::json call(const std::string &op, const nlohmann::json &args);

    // "<network>.<container id>.<ifname>"; throws ApiError when it is not a valid endpoint id.
    static std::string endpoint_id(const std::string &network, const std::string &container_id,
                                   const std::string &ifname);

    nlohmann::json reconcile(const nlohmann::json &args);

  private:
    nlohmann::json add(const nlohmann::json &args);
    nlohmann::json del(const nlohmann::json &args);
    nlohmann::json check(const nlohmann::json &args);
    nlohmann::json status(const nlohmann::json &args);
    nlohmann::json gc(const nlohmann::json &args);

    // The pod MTU: the node MTU less the largest overhead of the pools the addresses came from.
    uint16_t pod_mtu(const ipam::Assignment &a);
    nlohmann::json endpoint_or_null(const std::string &id);
    // DEL of container cid: its attachment leaves the pod's record (fwd/policy/pod_network.hpp).
    void detach(const std::string &ns, const std::string &pod, const std::string &cid);
    std::vector<nlohmann::json> endpoints_of(const std::string &network);

    std::string node_;
    uint16_t node_mtu_;
    std::string run_dir_;
    std::shared_ptr<ipam::Store> store_;
    ipam::Allocator alloc_;
    CniDeps deps_;
};

}  // namespace fwd::control
