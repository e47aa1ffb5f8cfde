// Kubernetes Services as data: the v1 Service and discovery.k8s.io/v1 EndpointSlice resources
// that `fwdctl apply -f` reads (and a Kubernetes watch would deliver), decoded and validated
// the way the Kubernetes API server does it (../shared/CALICO.md, "NAT").
//
// Decoding is strict like `kubectl apply` with server-side field validation: an unknown field
// is an error. A Kubernetes field that dpdk-fwd does not implement is accepted and reported
// as a Warning (the CLI prints it), never silently dropped. Fields set by the API server
// (uid, resourceVersion, managedFields, ...) are accepted and dropped.
//
// What needs the cluster (the service CIDRs, the NodePort range, the addresses and ports
// already allocated) is checked by plan_service() in fwd/svc/store.hpp; what is checked here
// needs only the resource itself.
//
// Control code only: everything here allocates and may throw.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fwd/ipam/document.hpp"
#include "fwd/ipam/resource.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::svc {

enum class Protocol : uint8_t { kTcp, kUdp, kSctp };
enum class ServiceType : uint8_t { kClusterIp, kNodePort, kLoadBalancer, kExternalName };
enum class FamilyPolicy : uint8_t { kSingleStack, kPreferDualStack, kRequireDualStack };
enum class TrafficPolicy : uint8_t { kCluster, kLocal };
enum class AddressType : uint8_t { kIpv4, kIpv6, kFqdn };

std::string_view to_string(Protocol p);       // "TCP", "UDP", "SCTP"
std::string_view to_string(ServiceType t);    // "ClusterIP", ...
std::string_view to_string(FamilyPolicy p);   // "SingleStack", ...
std::string_view to_string(TrafficPolicy p);  // "Cluster", "Local"
std::string_view to_string(AddressType t);    // "IPv4", "IPv6", "FQDN"
std::string family_name(net::Family f);       // "IPv4", "IPv6" (Kubernetes' ipFamilies values)

inline constexpr uint32_t kDefaultAffinityTimeout = 10800;  // seconds, Kubernetes' default
inline constexpr uint32_t kMaxAffinityTimeout = 86400;
inline constexpr const char *kServiceNameLabel = "kubernetes.io/service-name";

// A Service or EndpointSlice that breaks a rule. field() is the Kubernetes path
// ("spec.ports[1].targetPort"), why() the reason in the API server's words
// ("Invalid value: \"x\": must contain at least one letter"). what():
// "Service 'ns/name': <field>: <why>".
class ServiceError : public std::runtime_error {
  public:
    ServiceError(std::string object, std::string field, std::string why);
    const std::string &object() const { return object_; }
    const std::string &field() const { return field_; }
    const std::string &why() const { return why_; }

  private:
    std::string object_, field_, why_;
};

struct ServicePort {
    std::string name;  // a DNS-1123 label; required when a service has several ports
    Protocol protocol = Protocol::kTcp;
    uint16_t port = 0;
    // targetPort: a number, or the name of a port (resolved through the EndpointSlice's
    // ports). Absent: the same number as port (filled by the decoder).
    uint16_t target_port = 0;
    std::string target_port_name;
    uint16_t node_port = 0;  // 0: none yet (allocated for NodePort / LoadBalancer services)
    bool operator==(const ServicePort &) const = default;
};

struct Service {
    std::string ns = "default";  // metadata.namespace
    std::string name;
    std::map<std::string, std::string> labels, annotations;
    ServiceType type = ServiceType::kClusterIp;
    bool headless = false;                 // clusterIP "None": no virtual address at all
    std::vector<net::IpAddr> cluster_ips;  // spec.clusterIPs, primary first; empty: allocate
    std::vector<net::Family> ip_families;  // spec.ipFamilies as written, or as resolved
    std::optional<FamilyPolicy> family_policy;
    std::vector<ServicePort> ports;
    std::map<std::string, std::string> selector;
    std::vector<net::IpAddr> external_ips;
    bool client_ip_affinity = false;  // sessionAffinity ClientIP
    uint32_t affinity_timeout = kDefaultAffinityTimeout;
    std::optional<TrafficPolicy> external_policy;  // Cluster when absent on an external service
    TrafficPolicy internal_policy = TrafficPolicy::kCluster;
    std::optional<net::IpAddr> load_balancer_ip;  // spec.loadBalancerIP (deprecated upstream)
    bool allocate_lb_node_ports = true;           // spec.allocateLoadBalancerNodePorts
    std::string external_name;                    // type ExternalName only
    std::vector<net::IpAddr> lb_ingress;          // status.loadBalancer.ingress[].ip

    std::string key() const { return ns + "/" + name; }  // "ns/name"
    // A service the dataplane answers for: not ExternalName, not headless.
    bool served() const { return type != ServiceType::kExternalName && !headless; }
    bool wants_node_ports() const {
        return type == ServiceType::kNodePort ||
               (type == ServiceType::kLoadBalancer && allocate_lb_node_ports);
    }
    TrafficPolicy effective_external_policy() const {
        return external_policy.value_or(TrafficPolicy::kCluster);
    }
    bool operator==(const Service &) const = default;
};

// Endpoint conditions with Kubernetes' defaults when absent: ready absent means ready
// ("unknown" is read as ready by every consumer), serving absent means the same as ready,
// terminating absent means false.
struct Conditions {
    bool ready = true;
    bool serving = true;
    bool terminating = false;
    bool operator==(const Conditions &) const = default;
};

struct Endpoint {
    std::vector<std::string> addresses;  // IPs in canonical form (or FQDNs), 1..100
    Conditions conditions;
    std::string node_name;  // empty: unknown (never local)
    std::string hostname, zone;
    bool operator==(const Endpoint &) const = default;
};

struct EndpointPort {
    std::string name;  // the Service port's name (how kube-proxy matches them); may be empty
    Protocol protocol = Protocol::kTcp;
    std::optional<uint16_t> port;  // absent: no port (the slice serves no port of that name)
    bool operator==(const EndpointPort &) const = default;
};

struct EndpointSlice {
    std::string ns = "default";
    std::string name;
    std::map<std::string, std::string> labels;  // kubernetes.io/service-name links the service
    AddressType address_type = AddressType::kIpv4;
    std::vector<Endpoint> endpoints;
    std::vector<EndpointPort> ports;

    std::string key() const { return ns + "/" + name; }
    // The Service it belongs to, "ns/name"; empty when the label is missing.
    std::string service_key() const;
    bool operator==(const EndpointSlice &) const = default;
};

// Something accepted but not (fully) done by dpdk-fwd: the CLI prints it.
// str(): "<origin>: <field>: <what>".
struct Warning {
    ipam::ResourceOrigin origin;
    std::string field;
    std::string what;
    std::string str() const;
};

struct ServiceResource {
    std::variant<Service, EndpointSlice> value;
    ipam::ResourceOrigin origin;
    std::vector<Warning> warnings;
    bool is_service() const { return std::holds_alternative<Service>(value); }
    const Service &service() const { return std::get<Service>(value); }
    const EndpointSlice &slice() const { return std::get<EndpointSlice>(value); }
};

// Service, EndpointSlice (what decode_service_resources reads).
bool is_service_kind(std::string_view kind);

// Decodes and validates each resource on its own (validate_service / validate_endpoint_slice),
// then checks that no Service or EndpointSlice is defined twice. Throws ipam::ResourceError
// naming the file, document, resource and field.
std::vector<ServiceResource> decode_service_resources(const std::vector<ipam::RawResource> &raw);
// split_resources + decode_service_resources.
std::vector<ServiceResource> parse_service_resources(std::string_view text,
                                                     const std::string &source_name);

// The rules that need no cluster (names, ports, protocols, policies' values, fields allowed
// only for some types, ...). Throws ServiceError.
void validate_service(const Service &s);
void validate_endpoint_slice(const EndpointSlice &s);

// The Kubernetes JSON (apiVersion v1 / discovery.k8s.io/v1) the store keeps. Decoding is the
// same strict decoder as for files (warnings dropped) and throws ServiceError.
void to_json(nlohmann::json &j, const Service &s);
void from_json(const nlohmann::json &j, Service &s);
void to_json(nlohmann::json &j, const EndpointSlice &s);
void from_json(const nlohmann::json &j, EndpointSlice &s);

}  // namespace fwd::svc
