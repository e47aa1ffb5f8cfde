// Calico network policy as data (../shared/CALICO.md, "Policy (Calico model)"): the resources
// `fwdctl apply -f` reads and the records the cluster store keeps, decoded and validated as
// calicoctl (Calico's validator, libcalico-go/lib/validator/v3) and the Kubernetes API server
// do it.
//
//   NetworkPolicy        projectcalico.org/v3 or crd.projectcalico.org/v1, namespaced
//   GlobalNetworkPolicy  projectcalico.org/v3 or crd.projectcalico.org/v1, cluster-wide
//   NetworkPolicy        networking.k8s.io/v1: kept as written, converted to the same model the
//                        way Calico converts it (name knp.default.<name>, order 1000, one rule
//                        per protocol and peer)
//   Namespace            v1: its labels (what a rule's namespaceSelector reads: Calico's
//                        namespace profile kns.<name>)
//   Pod                  v1: a pod endpoint record: labels, annotations, node, service
//                        account, named ports, addresses (status.podIPs, or the IPAM
//                        allocations made for it)
//
// Decoding is strict: an unknown field is an error. What is Calico's but not built here
// (tiers other than "default", serviceAccountSelector, service and service-account matches,
// HTTP matches, preDNAT / doNotTrack) is refused naming the field, never silently dropped.
//
// Control code only: everything here allocates and may throw.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fwd/ipam/document.hpp"
#include "fwd/ipam/model.hpp"
#include "fwd/ipam/resource.hpp"
#include "fwd/label/selector.hpp"
#include "fwd/net/addr.hpp"
#include "fwd/svc/service.hpp"

namespace fwd::policy {

using Labels = label::Labels;
using Warning = svc::Warning;

enum class Action : uint8_t { kAllow, kDeny, kLog, kPass };
enum class Direction : uint8_t { kIngress, kEgress };
enum class PolicyKind : uint8_t { kCalico, kGlobal, kKubernetes };

std::string_view to_string(Action a);      // "Allow", ...
std::string_view to_string(Direction d);   // "Ingress", "Egress"
std::string_view to_string(PolicyKind k);  // "NetworkPolicy", "GlobalNetworkPolicy",
                                           // "NetworkPolicy (networking.k8s.io/v1)"

// The labels Calico gives every pod endpoint and namespace profile beside their own.
inline constexpr const char *kNamespaceLabel = "projectcalico.org/namespace";
inline constexpr const char *kOrchestratorLabel = "projectcalico.org/orchestrator";
inline constexpr const char *kServiceAccountLabel = "projectcalico.org/serviceaccount";
inline constexpr const char *kNameLabel = "projectcalico.org/name";
inline constexpr const char *kK8sNameLabel = "kubernetes.io/metadata.name";
inline constexpr const char *kNamespaceLabelPrefix = "pcns.";  // namespace labels on a pod
inline constexpr const char *kK8sPolicyPrefix = "knp.default.";
inline constexpr double kK8sPolicyOrder = 1000;  // where Calico puts converted policies

// A rule's protocol: 1..255, with the name Calico knows it by when it has one.
struct Protocol {
    static constexpr uint8_t kIcmp = 1, kTcp = 6, kUdp = 17, kIcmp6 = 58, kSctp = 132,
                             kUdpLite = 136;
    uint8_t number = kTcp;
    // As written: "TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite", or a number.
    std::string str() const;
    // TCP, UDP and SCTP: the protocols a rule may give ports for (Calico's SupportsPorts).
    bool has_ports() const { return number == kTcp || number == kUdp || number == kSctp; }
    bool is_icmp() const { return number == kIcmp || number == kIcmp6; }
    // "TCP" ... "UDPLite" or "1".."255"; nullopt otherwise (names are case-sensitive).
    static std::optional<Protocol> parse(std::string_view s);
    bool operator==(const Protocol &) const = default;
};

// One entry of ports / notPorts: a number, a range "a:b", or a named port (resolved per
// endpoint: the port of that name and the rule's protocol).
struct Port {
    uint16_t min = 0, max = 0;  // both 0 for a named port
    std::string name;
    bool named() const { return !name.empty(); }
    bool contains(uint16_t p) const { return !named() && p >= min && p <= max; }
    std::string str() const;  // "80", "8080:8090", "http"
    bool operator==(const Port &) const = default;
};

struct Icmp {
    std::optional<uint8_t> type;  // 0..254
    std::optional<uint8_t> code;  // 0..255, only with a type
    bool operator==(const Icmp &) const = default;
};

// A selector as written (what the store keeps and the CLI shows) and parsed.
struct Sel {
    std::string text;  // "" when absent
    label::Selector parsed;
    bool present() const { return !text.empty(); }
    bool operator==(const Sel &o) const { return text == o.text; }
};

struct EntityRule {
    std::vector<ipam::Cidr> nets, not_nets;  // normalized (masked)
    Sel selector, not_selector, namespace_selector;
    std::vector<Port> ports, not_ports;
    bool operator==(const EntityRule &) const = default;
};

struct Rule {
    Action action = Action::kAllow;
    std::optional<int> ip_version;  // 4 or 6
    std::optional<Protocol> protocol, not_protocol;
    std::optional<Icmp> icmp, not_icmp;
    EntityRule source, destination;
    std::map<std::string, std::string> annotations;  // metadata.annotations
    // The family this rule can match, from ipVersion or its nets (Felix renders a rule only
    // for the family of its CIDRs); nullopt: both.
    std::optional<net::Family> family() const;
    bool operator==(const Rule &) const = default;
};

// A policy of any of the three kinds, in Calico's model.
struct Policy {
    PolicyKind kind = PolicyKind::kCalico;
    std::string ns;    // empty for a GlobalNetworkPolicy
    std::string name;  // as written (a Kubernetes policy's, without knp.default.)
    std::map<std::string, std::string> labels, annotations;
    std::optional<double> order;  // absent: after every ordered policy
    Sel selector;                 // which endpoints it applies to; absent: all()
    Sel namespace_selector;       // GlobalNetworkPolicy only
    // spec.types, with Calico's default when not written: Ingress when there are no egress
    // rules, Egress when there are egress rules and no ingress rules, else both (a Kubernetes
    // policy: policyTypes with the API server's default, Ingress plus Egress with egress rules).
    bool ingress = true, egress = false;
    std::vector<Rule> ingress_rules, egress_rules;
    bool apply_on_forward = false;  // GlobalNetworkPolicy; host endpoints only (none here)
    std::vector<std::string> performance_hints;
    // A Kubernetes policy: its spec as written (normalized), which the store keeps; the
    // Calico rules above are converted from it.
    nlohmann::json k8s_spec;

    // "ns/name", "name" (global), "ns/knp.default.name" (Kubernetes): unique across kinds.
    std::string key() const;
    // The name Calico shows: knp.default.<name> for a Kubernetes policy.
    std::string calico_name() const;
    const std::vector<Rule> &rules(Direction d) const {
        return d == Direction::kIngress ? ingress_rules : egress_rules;
    }
    bool applies_to(Direction d) const { return d == Direction::kIngress ? ingress : egress; }
    bool operator==(const Policy &) const = default;
};

struct Namespace {
    std::string name;
    Labels labels;
    std::map<std::string, std::string> annotations;
    // Its labels with Calico's own (projectcalico.org/name, kubernetes.io/metadata.name).
    Labels effective_labels() const;
    bool operator==(const Namespace &) const = default;
};

// A pod's port that has a name: what a rule's named port resolves to on this pod.
struct NamedPort {
    std::string name;
    Protocol protocol;  // TCP, UDP or SCTP
    uint16_t port = 0;
    bool operator==(const NamedPort &) const = default;
};

// A pod endpoint record.
struct Pod {
    std::string ns = "default";
    std::string name;
    Labels labels;
    std::map<std::string, std::string> annotations;
    std::string node;             // spec.nodeName; "" unknown
    std::string service_account;  // spec.serviceAccountName; "" none given
    std::vector<NamedPort> ports;
    std::vector<net::IpAddr> ips;  // status.podIPs: at most one per family
    std::string key() const { return ns + "/" + name; }
    // Its labels with Calico's (namespace, orchestrator, service account) and its
    // namespace's labels prefixed pcns. (ns_labels: that namespace's own, may be empty).
    Labels effective_labels(const Labels &ns_labels) const;
    bool operator==(const Pod &) const = default;
};

// A policy or a record that breaks a rule. field() is the path in the resource
// ("spec.ingress[0].source.nets[1]"), why() the reason. what(): "<object>: <field>: <why>".
class PolicyError : public std::runtime_error {
  public:
    PolicyError(std::string object, std::string field, std::string why);
    const std::string &object() const { return object_; }
    const std::string &field() const { return field_; }
    const std::string &why() const { return why_; }

  private:
    std::string object_, field_, why_;
};

using Object = std::variant<Policy, Namespace, Pod>;

struct PolicyResource {
    Object value;
    ipam::ResourceOrigin origin;
    std::vector<Warning> warnings;
};

// NetworkPolicy (either group), GlobalNetworkPolicy, Namespace, Pod.
bool is_policy_kind(std::string_view kind);

// Decodes and validates each resource, then checks that none is defined twice. Throws
// ipam::ResourceError naming the file, document, resource and field (a selector's error adds
// its position in the selector).
std::vector<PolicyResource> decode_policy_resources(const std::vector<ipam::RawResource> &raw);
std::vector<PolicyResource> parse_policy_resources(std::string_view text,
                                                   const std::string &source_name);

// The checks that need no store (names, labels, the rules' consistency). Throws PolicyError.
void validate(const Policy &p);
void validate(const Namespace &n);
void validate(const Pod &p);

// The resource JSON the store keeps (Calico v3 for Calico kinds, networking.k8s.io/v1 for a
// Kubernetes policy, v1 for Namespace and Pod). Decoding is the decoder of files (warnings
// dropped); throws PolicyError.
nlohmann::json to_json(const Object &o);
Object object_from_json(const nlohmann::json &j);

// "NetworkPolicy 'ns/name'", "GlobalNetworkPolicy 'name'", "Namespace 'ns'", "Pod 'ns/name'".
std::string describe(const Object &o);

}  // namespace fwd::policy
