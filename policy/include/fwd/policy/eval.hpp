// The policy model evaluated straight from its definition (../shared/CALICO.md, "Policy
// (Calico model)"), for `fwdctl policy trace` and as the reference the compiled rule sets are
// tested against. No DPDK, no speed: a packet is checked rule by rule.
//
// For one packet, one direction and one pod endpoint (ingress: the pod receives it; egress:
// the pod sends it):
//   - the policies that apply are those whose selector (and namespace, or a
//     GlobalNetworkPolicy's namespaceSelector) matches the pod and whose types include the
//     direction, in order (lower first, no order last; ties by name, "ns/name" for a
//     namespaced policy, as Felix sorts them);
//   - none applies: the namespace profile (kns.<ns>) allows;
//   - else rule by rule: Log records and goes on; Allow and Deny decide; Pass leaves the
//     tier (the default tier is the only one, so the profile decides: it allows);
//   - no rule decided: denied at the end of the tier (default deny).
// A rule matches when every criterion it has holds (Felix's semantics):
//   ipVersion, or the family of its nets / notNets (a rule with IPv4 CIDRs does not exist
//   for IPv6); protocol / notProtocol; icmp / notICMP (type, and code when given; notICMP
//   holds for a packet that is not that ICMP message); nets / notNets;
//   selector: the address is a pod's whose labels match, in the policy's namespace (a
//   namespaced policy), or in a namespace namespaceSelector matches; notSelector: the address
//   is no pod's that matches (in any namespace); namespaceSelector global() selects
//   non-namespaced entities only, of which there are none here;
//   ports / notPorts: numbers, ranges, and named ports resolved on the pod owning the address
//   (its port of that name and the packet's protocol).
// Stateful behaviour (replies of an allowed flow), failsafe ports and anti-spoofing are the
// datapath's, outside this model.
//
// Control code only: allocates and may throw.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fwd/net/addr.hpp"
#include "fwd/policy/model.hpp"

namespace fwd::policy {

struct Packet {
    net::IpAddr src, dst;
    uint8_t protocol = Protocol::kTcp;
    uint16_t src_port = 0, dst_port = 0;   // TCP, UDP, SCTP
    uint8_t icmp_type = 0, icmp_code = 0;  // ICMP, ICMPv6
    net::Family family() const { return src.family(); }
    std::string str() const;  // "10.0.0.1:3456 -> 10.0.0.2:80 TCP", "... ICMP type 8 code 0"
};

// A pod as policy sees it.
struct Endpoint {
    std::string ns, name;
    Labels labels;     // effective: its own and Calico's (Pod::effective_labels)
    Labels ns_labels;  // its namespace's, effective (Namespace::effective_labels)
    std::vector<net::IpAddr> ips;
    std::vector<NamedPort> ports;
    std::string key() const { return ns + "/" + name; }
};

struct Verdict {
    enum class Reason {
        kRule,       // a rule's Allow or Deny
        kEndOfTier,  // policies applied, none of their rules decided: denied
        kNoPolicy,   // no policy applies: the namespace profile allows
        kPass,       // a rule's Pass: past the last tier, the namespace profile allows
    };
    bool allowed = false;
    Reason reason = Reason::kNoPolicy;
    Direction direction = Direction::kIngress;
    std::string endpoint;              // "ns/pod"
    std::string policy;                // the deciding policy's key (kRule, kPass)
    int rule = -1;                     // its rule's index in the direction's list
    std::vector<std::string> applied;  // keys of the policies that applied, in order
    std::vector<std::string> logged;   // "policy rule N" of each Log rule that matched
    std::string why;                   // one sentence
};

class PolicySet {
  public:
    // Pods without addresses are endpoints too (they can be named), unreachable by address.
    PolicySet(std::vector<Policy> policies, const std::vector<Namespace> &namespaces,
              const std::vector<Pod> &pods);

    const std::vector<Policy> &policies() const { return policies_; }  // in evaluation order
    const std::vector<Endpoint> &endpoints() const { return endpoints_; }
    const Endpoint *endpoint(const std::string &key) const;  // "ns/name"
    const Endpoint *endpoint_at(const net::IpAddr &a) const;

    // The policies that apply to ep in direction d, in order.
    std::vector<const Policy *> applying(const Endpoint &ep, Direction d) const;
    // The endpoints a policy applies to (either direction of its types).
    std::vector<const Endpoint *> selected_by(const Policy &p) const;
    // "" when the rule matches the packet, else the first criterion that fails, in words.
    std::string mismatch(const Policy &p, const Rule &r, const Packet &pkt) const;

    Verdict evaluate(const Packet &pkt, Direction d, const Endpoint &ep) const;

    // Both ends: the sending pod's egress and the receiving pod's ingress, each when the
    // address is a pod's. allowed: every verdict allows (none: not pod traffic here).
    struct Trace {
        std::optional<Verdict> egress, ingress;
        bool allowed() const {
            return (!egress || egress->allowed) && (!ingress || ingress->allowed);
        }
    };
    Trace trace(const Packet &pkt) const;

  private:
    bool policy_selects(const Policy &p, const Endpoint &ep) const;
    // The side of a rule: its address, its port and its entity rule.
    std::string entity_mismatch(const Policy &p, const EntityRule &e, const net::IpAddr &addr,
                                uint16_t port, const Packet &pkt, const char *side) const;

    std::vector<Policy> policies_;
    std::vector<Endpoint> endpoints_;
    std::map<net::IpAddr, size_t> by_ip_;
    std::map<std::string, size_t> by_key_;
};

}  // namespace fwd::policy
