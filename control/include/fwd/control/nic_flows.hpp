// rte_flow on the uplink (issue 21): the rules a NIC gets, planned from what the node knows,
// put on the port through a Device (rte_flow on an ethdev: nic_flows_rte.cpp; a recording fake
// in the tests) and shown by `fwdctl flow list`.
//
// What the rules do, each a Group the NIC takes whole or not at all:
//   rss       every IPv4 and every IPv6 frame spread over the uplink's RX queues (the workers'
//             queues, in the config's order) by addresses and TCP / UDP ports. The port is
//             also configured for RSS at start (vhost/pod_port.cpp); the rules say it to NICs
//             that steer by flow rules first.
//   vxlan     frames to this node's VTEP address on the VXLAN port, spread by their INNER flow
//             (RSS level 2), so one pair of nodes' tunnel is not one queue. A NIC without inner
//             RSS gets the second option: one QUEUE rule per bucket of the outer UDP source
//             port's low bits, which RFC 7348 senders (Linux, Calico, us) derive from the inner
//             flow. Only with two queues or more.
//   policy    early drop at the NIC of traffic a policy denies, where that is EXACT: the rule
//             drops only packets the dataplane would drop for the same policy rule, and counts
//             them (COUNT: a NIC that cannot count gets no drop rule, every drop is counted).
//             Policy is stateful (a reply of a connection the pod opened passes whatever the
//             ingress rules say), so only packets that can never be a reply are dropped:
//             TCP SYN without ACK (a connection's first segment) and ICMP / ICMPv6 echo
//             requests. The software path checks every flow's original tuple against the rule
//             set in force (a flow allowed under an older one is checked again on its next
//             packet: stages/policy.cpp), so such a packet from a denied source is denied
//             there too, new flow or not. The one exception is a TCP simultaneous open (the
//             pod's own SYN out, the peer's SYN in before any SYN/ACK): the NIC drops the
//             peer's SYN, the software would pass it as the flow's reply; the connection
//             then completes through the pod's SYN/ACK path or not at all, as the peer's
//             stack retries. For each local endpoint address and each ingress Deny rule of its
//             policies that no earlier rule (Allow, Deny, Pass or Log) of the same rule set
//             overlaps for those packets, one rule per source prefix and port value/mask
//             (port ranges cut into masks, as NICs match ports): destination = the pod's
//             address (never the node's: host traffic is not pod policy's). Traffic to a
//             pod over VXLAN or through a service DNAT does not match (the NIC sees the outer
//             or the service address) and stays with the software path.
// Priorities (rte_flow: lower first): policy 0, vxlan 1 (its fallback too), rss 2.
//
// Modes (uplink.flows in the config): "install" (validate, then create; what the NIC refuses
// stays with the software path, which does the same work), "validate" (validate only: what a
// NIC would get, created nowhere) and "off".
//
// Control code only: allocates and may throw.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::policy {
struct Compiled;
}

namespace fwd::control::flows {

// A 16-bit field matched as value under mask (a port range is several of them).
struct Masked16 {
    uint16_t value = 0, mask = 0xffff;
    bool operator==(const Masked16 &) const = default;
};

struct Match {
    uint16_t vlan = 0;                  // 0: no VLAN item
    std::optional<net::Family> family;  // absent: any frame (no L3 item)
    std::optional<net::AnyPrefix> src, dst;
    std::optional<uint8_t> proto;          // TCP, UDP, ICMP, ICMPv6 (with an L4 item)
    std::optional<Masked16> sport, dport;  // TCP / UDP
    bool tcp_syn_only = false;             // TCP: SYN set, ACK clear
    std::optional<uint8_t> icmp_type;      // ICMP / ICMPv6
    bool operator==(const Match &) const = default;
    std::string str() const;  // "ipv4 dst 10.0.0.2/32 tcp dport 80 syn", as fwdctl shows it
};

struct Action {
    enum class Kind : uint8_t { kRss, kQueue, kDrop };
    Kind kind = Kind::kDrop;
    std::vector<uint16_t> queues;  // kRss: the set; kQueue: one
    uint8_t level = 0;             // kRss: 0 the outermost headers, 2 the inner ones
    bool count = false;            // with a COUNT action
    bool operator==(const Action &) const = default;
    std::string str() const;  // "rss level 2 queues 0,1", "drop, count"
};

struct Rule {
    uint32_t priority = 0;
    Match match;
    Action action;
    bool operator==(const Rule &) const = default;
};

// What one purpose needs, in the NIC's terms: the first option whose every rule the NIC
// validates is the one it gets.
struct Group {
    std::string kind;  // "rss", "vxlan", "policy"
    std::string what;  // "ipv4", "to 10.10.10.10 port 4789", "prod/web ingress rule 0 (Deny)"
    std::vector<std::vector<Rule>> options;
    // kind "policy": the ingress rule whose drops these are (its policy's key, its index)
    std::string policy;
    int rule = -1;
    bool operator==(const Group &) const = default;
};

// What the node knows that the plan reads.
struct PlanInput {
    std::vector<uint16_t> queues;  // the uplink's RX queues
    uint16_t vlan = 0;             // the uplink's VLAN (0: untagged)
    // VXLAN: this node's VTEP addresses (its node addresses) and port; absent: no overlay.
    std::optional<net::Ip4Addr> vtep4;
    std::optional<net::Ip6Addr> vtep6;
    uint16_t vxlan_port = 4789;
    bool operator==(const PlanInput &) const = default;
};
std::vector<Group> plan(const PlanInput &in);

// Packets the NIC dropped per policy rule: (policy key, ingress rule index) -> hits.
using RuleHits = std::map<std::pair<std::string, int>, uint64_t>;

// A module that can tell policy_hits() (the flows module), found by the policy module.
struct PolicyHitsSource {
    virtual ~PolicyHitsSource() = default;
    virtual RuleHits nic_policy_hits() const = 0;
};

// The local endpoints as policy knows them: "ns/pod" and its addresses.
using LocalAddrs = std::vector<std::pair<std::string, std::vector<net::IpAddr>>>;

struct PolicyDrops {
    std::vector<Group> groups;
    size_t left = 0;  // exact drops past max_rules (left to the software path)
};
// The exact early drops of c (see the top) for the endpoints in local, at most max_rules
// rules in all (whole groups). Groups are named "<policy> ingress rule <i> (Deny) for <pod>".
PolicyDrops policy_drops(const policy::Compiled &c, const LocalAddrs &local, uint16_t vlan,
                         size_t max_rules);

// What the policy module offers the flows module (control thread): its generation (a new one
// for each publication), the compiled rules in force and the local endpoints' addresses.
class PolicySource {
  public:
    virtual ~PolicySource() = default;
    virtual uint64_t policy_generation() const = 0;
    virtual std::shared_ptr<const policy::Compiled> policy_compiled() const = 0;
    virtual LocalAddrs policy_endpoints() const = 0;
};

// A port's flow rules: rte_flow on an ethdev, or a fake.
class Device {
  public:
    virtual ~Device() = default;
    // "" when the NIC would take the rule, else its reason.
    virtual std::string validate(const Rule &r) = 0;
    // A handle (not 0), or 0 and the reason in *error.
    virtual uint64_t create(const Rule &r, std::string *error) = 0;
    // "" or the reason (the rule is forgotten either way).
    virtual std::string destroy(uint64_t handle) = 0;
    // Packets the rule's COUNT counted; absent when it cannot tell.
    virtual std::optional<uint64_t> hits(uint64_t handle) = 0;
};

// rte_flow on ethdev port_id (nic_flows_rte.cpp, with DPDK). Every rule is ingress. Rules with
// an RSS action are refused without asking net_tap: DPDK 22.11's tap PMD crashes validating
// them where the kernel lacks the qdisc its flow support needs (seen on this machine's kernel).
std::unique_ptr<Device> rte_flow_device(uint16_t port_id);

enum class Mode : uint8_t { kOff, kValidate, kInstall };
std::optional<Mode> parse_mode(std::string_view s);  // "off", "validate", "install"
std::string_view to_string(Mode m);

// The groups a port carries. apply() makes the port carry exactly the wanted groups: an
// unchanged group keeps its rules, a new one is validated option by option and (kInstall)
// created, a gone one destroyed. A group the NIC takes in no option is kept as refused, with
// each option's reason, so fwdctl shows what stays in software and why.
class Installer {
  public:
    Installer(std::unique_ptr<Device> dev, Mode mode) : dev_(std::move(dev)), mode_(mode) {}
    ~Installer();  // destroys what it created
    Installer(const Installer &) = delete;
    Installer &operator=(const Installer &) = delete;

    enum class State : uint8_t { kInstalled, kValidated, kRefused };
    struct Entry {
        Group group;
        State state = State::kRefused;
        int option = -1;                  // the option taken (kInstalled, kValidated)
        std::vector<uint64_t> handles;    // kInstalled: one per rule of the option
        std::vector<std::string> errors;  // kRefused: one per option tried
    };
    void apply(const std::vector<Group> &wanted);
    const std::vector<Entry> &entries() const { return entries_; }
    Mode mode() const { return mode_; }
    // Hits of an installed group's counted rules, summed; absent when none counts.
    std::optional<uint64_t> hits(const Entry &e) const;
    // {"mode", "groups": [{kind, what, state, option, rules: [{priority, match, action}],
    //  errors, hits}]}
    nlohmann::json to_json() const;
    // Packets the NIC dropped for each policy rule, (policy key, ingress rule index) -> the
    // hits of its installed, counting groups summed (over pods and addresses): what the
    // policy's per-rule counters add, since those packets never reach the software path.
    RuleHits policy_hits() const;

  private:
    void remove(Entry &e);
    std::unique_ptr<Device> dev_;
    Mode mode_;
    std::vector<Entry> entries_;
};

}  // namespace fwd::control::flows
