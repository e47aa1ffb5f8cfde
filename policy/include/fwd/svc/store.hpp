// Services and EndpointSlices in the cluster store (ipam::Store: the embedded store or etcd),
// with what the Kubernetes API server allocates for them: ClusterIPs from the service CIDR of
// each family and NodePorts from the NodePort range, each unique cluster-wide.
//
// Keys under the registry's prefix (default "/dpdk-fwd/services/v1/"):
//   services/<ns>/<name>        the Service as Kubernetes JSON, allocations filled in
//   endpointslices/<ns>/<name>  the EndpointSlice as Kubernetes JSON
//   clusterips/<address>        "<ns>/<name>" of the Service holding the address
//   nodeports/<port>            "<ns>/<name>" of the Service holding the port (all protocols)
//   config                      ServiceConfig as JSON; absent: the defaults
// A write puts a Service with the allocation keys it takes and deletes the ones it gives back
// in one transaction that requires each new allocation key to be absent: two writers can
// never take one address or port, the loser plans again.
//
// Control code only: everything here allocates and may throw.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fwd/ipam/model.hpp"
#include "fwd/ipam/store.hpp"
#include "fwd/svc/service.hpp"

namespace fwd::svc {

// The API server's --service-cluster-ip-range and --service-node-port-range.
struct ServiceConfig {
    // At most one per family; the first is the cluster's primary family (the family a
    // SingleStack service without ipFamilies gets). The cluster is dual-stack with two.
    std::vector<ipam::Cidr> cluster_ip_ranges;
    uint16_t node_port_min = 30000;
    uint16_t node_port_max = 32767;

    // Kubernetes' IPv4 default 10.96.0.0/12, then fd00:10:96::/112 (a unique local /112,
    // 65536 addresses, the size kubeadm's IPv6 examples use).
    static ServiceConfig defaults();
    const ipam::Cidr *range(net::Family f) const;
    bool dual_stack() const { return cluster_ip_ranges.size() == 2; }
    std::string node_port_range() const;  // "30000-32767"
    bool operator==(const ServiceConfig &) const = default;
};

// Throws std::invalid_argument naming what is wrong: no range, two of one family, a range
// with fewer than 8 addresses (an IPv6 range longer than /124... as the API server refuses
// ranges it cannot use), a NodePort range upside down or containing 0.
void validate_config(const ServiceConfig &c);
// JSON: {"serviceClusterIPRanges": ["10.96.0.0/12", ...], "serviceNodePortRange": "a-b"}.
void to_json(nlohmann::json &j, const ServiceConfig &c);
void from_json(const nlohmann::json &j, ServiceConfig &c);
// "30000-32767" to the two ends; nullopt when malformed.
std::optional<std::pair<uint16_t, uint16_t>> parse_port_range(std::string_view s);

// What other services hold: address or port to "ns/name".
struct InUse {
    std::map<net::IpAddr, std::string> ips;
    std::map<uint16_t, std::string> node_ports;
};

// The Service as the API server would store it, requested as `wanted` (a decoded, validated
// resource), `stored` its current record if any: ipFamilyPolicy and ipFamilies resolved
// against the cluster's ranges (SingleStack: the first family asked for, else the cluster's
// primary; PreferDualStack: both when the cluster has both; RequireDualStack: both or
// refused; the order asked for kept, primary first), ClusterIPs kept from `stored` or taken
// as asked (inside the range and free) or allocated (the lowest free address of the range,
// network and IPv4 broadcast addresses excepted), NodePorts likewise for NodePort and
// LoadBalancer services (a port keeps its NodePort across re-applies when it is matched by
// port and protocol). Immutable fields (a ClusterIP, the primary family, headless or not)
// changed against `stored` are refused. Pure; throws ServiceError naming the field.
Service plan_service(const Service &wanted, const std::optional<Service> &stored,
                     const ServiceConfig &config, const InUse &in_use);

// The registry of services in a Store. Not thread-safe itself (one per thread); any number
// of registries, in any processes, may share one store.
class ServiceRegistry {
  public:
    explicit ServiceRegistry(ipam::Store &s, std::string prefix = "/dpdk-fwd/services/v1/");

    // The stored configuration, or the defaults. Throws std::invalid_argument when the stored
    // record is malformed.
    ServiceConfig config();
    // Replaces the configuration; refused (ipam::ConflictError) while a Service holds an
    // address or port the new one leaves out of its ranges (std::invalid_argument: malformed).
    void set_config(const ServiceConfig &c);

    enum class Action { kCreate, kUpdate, kUnchanged, kDelete };

    struct Change {
        Action action = Action::kCreate;
        std::variant<Service, EndpointSlice> value;  // as it will be stored (or as removed)
    };

    // What apply() would write for these resources, planned against the store as it is now:
    // every service through plan_service() (each seeing the allocations of the ones before
    // it), every slice created, updated or unchanged. Writes nothing; throws ServiceError
    // (the first problem found). Errors name the object; the caller adds the file.
    struct Plan {
        std::vector<Change> changes;  // in the order given: services, then slices
        std::vector<ipam::Compare> compares;
        std::vector<ipam::Operation> ops;
    };
    Plan plan_apply(const std::vector<Service> &services, const std::vector<EndpointSlice> &slices);
    // Every named object must exist; services give their addresses and ports back.
    Plan plan_delete(const std::vector<std::string> &service_keys,
                     const std::vector<std::string> &slice_keys);
    // Writes a plan in one transaction; false when the store moved meanwhile (nothing was
    // written: plan again).
    bool commit(const Plan &p);

    // plan_apply + commit, planning again while other writers win the race. Throws
    // ServiceError, ipam::ConflictError after too many lost races.
    std::vector<Change> apply(const std::vector<Service> &services,
                              const std::vector<EndpointSlice> &slices);
    std::vector<Change> remove(const std::vector<std::string> &service_keys,
                               const std::vector<std::string> &slice_keys);

    std::optional<Service> get_service(const std::string &key);  // "ns/name"
    std::optional<EndpointSlice> get_slice(const std::string &key);

    struct Listing {
        std::vector<Service> services;      // valid records, by namespace and name
        std::vector<EndpointSlice> slices;  // valid records, by namespace and name
        // (key, why) of every record left out: malformed JSON, a record that fails
        // validation, or one stored under another object's key. Sorted by key.
        std::vector<std::pair<std::string, std::string>> refused;
        // The store's revision the listing was read at (read before and after, and read
        // again when something changed in between): a poller lists again once
        // Store::revision() has moved past it.
        int64_t revision = 0;
    };
    Listing list();

    const std::string &prefix() const { return prefix_; }

  private:
    std::string service_key(const std::string &k) const { return prefix_ + "services/" + k; }
    std::string slice_key(const std::string &k) const { return prefix_ + "endpointslices/" + k; }
    std::string ip_key(const net::IpAddr &a) const { return prefix_ + "clusterips/" + a.str(); }
    std::string port_key(uint16_t p) const { return prefix_ + "nodeports/" + std::to_string(p); }
    InUse in_use();

    ipam::Store &store_;
    std::string prefix_;
    int max_retries_ = 200;
};

std::string_view to_string(ServiceRegistry::Action a);  // "created", "updated", ...

}  // namespace fwd::svc
