// The policy model compiled to flat rules a classifier matches field by field (rte_acl in
// dp/acl.hpp): no selectors, no negations, no named ports, no order left, only
//   {set, protocol range, source prefix, destination prefix, source port range,
//    destination port range} -> rule ref, priority = the rule's global position.
// The result must give, for every packet, exactly PolicySet::evaluate's verdict (eval.hpp):
// the deciding policy and rule (Allow, Deny, Pass), default deny at the end of the tier, allow
// when no policy applies, and the first Log rule that matched before the decision.
//
// Classes. Every local endpoint gets a class id: endpoints with the same applying policies in
// both directions share one. Class 0 is "no policy in either direction". A class points, per
// direction, to a rule set (endpoints with the same ingress policies share the ingress set
// even when their egress policies differ), so a rule is expanded once per set, not per class;
// set 0 of a direction is "no policy" (it has no rules). Named ports need no class of their
// own: a named port is expanded to (address of each pod that has the name, its port number),
// which is how Felix renders them (named-port IP sets), so it does not depend on who applies
// the rule.
//
// The packet as the classifier sees it (the stage builds it):
//   protocol  the IP protocol (IPv6: the upper-layer one)
//   ports     TCP, UDP, SCTP: the ports; ICMP of the family (ICMP for IPv4, ICMPv6 for IPv6):
//             source 0, destination type << 8 | code (the message's first two bytes, in
//             network order); anything else: both 0.
// Rules that give ports always give protocol TCP, UDP or SCTP (Calico's validation), so a
// port range of a rule never meets an ICMP code range.
//
// Negations are subtracted (interval sets): notNets -> the prefixes left of the family's
// space; notPorts -> the ranges left of 0..65535 (named notPorts: the pods' address and port
// pairs taken out); notProtocol -> the ranges left of 0..255; notICMP -> any other protocol
// plus the ICMP of the family with the type / code ranges left; notSelector -> the address
// space without the matching pods' addresses. Selectors and namespaceSelectors become the
// addresses of the pods that match, merged into the fewest prefixes.
//
// Bounds. A rule's flat rules are the product of its protocol ranges, source and
// destination prefixes and source and destination port ranges; each factor is bounded by the
// family's width (a complement of one prefix is at most 32 / 128 prefixes, of one range two
// ranges) or by the number of pods selected. compile() refuses (CompileError naming the
// policy and rule) a rule whose expansion exceeds Limits::max_per_rule, and a rule set over
// Limits::max_total; the counts are reported in Compiled::stats.
//
// What expands: an IPv6 notNets or notSelector costs up to 128 prefixes per prefix or pod
// address taken out (IPv4: 32), and negations on both sides of one rule multiply (two
// IPv6 notSelectors of 15 pods each: ~3.4M, refused by the limit). Felix keeps such sets in IP
// sets; rte_acl has only ranges and prefixes per field.
//
// Cost (datapath_policy_acl, this 2-core machine shared with other builds, 5 runs):
//   1,000 TCP rules in 100 policies (a /24 and a port each): compile 2-10 ms, rte_acl build
//   34-58 ms, 412 KiB of DPDK heap, classify 36 ns a packet (bursts of 64);
//   one policy of 10,000 such rules: compile 37-63 ms, build 400-680 ms (total 0.43-0.74 s),
//   3.9 MiB, classify 44 ns a packet. rte_acl's build is the cost (~50 us a rule at 10k):
//   build time grows with the rules' wildcards, so heavily negated rule sets build slower.
// One context with two categories (decide, Log) was chosen over two contexts (not measured
// against them): one trie walk gives both results, a Log rule costs no second lookup.
//
// Control code only: allocates and may throw.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwd/net/addr.hpp"
#include "fwd/policy/eval.hpp"
#include "fwd/policy/model.hpp"

namespace fwd::policy {

using ClassId = uint16_t;
inline constexpr ClassId kNoPolicyClass = 0;

// A rule ref: 1 + the rule's position in the global order (policies in evaluation order,
// then direction, then the rule's index), so the first applying rule is the one with the
// lowest ref. 0: no rule.
using RuleRef = uint32_t;
inline constexpr RuleRef kNoRule = 0;

// What a rule ref stands for: counters, Log lines, fwdctl.
struct RuleInfo {
    std::string policy;  // the policy's key ("ns/name", "name", "ns/knp.default.name")
    Direction direction = Direction::kIngress;
    int rule = -1;  // index in the direction's list
    Action action = Action::kAllow;
    std::string text;  // "ns/name ingress rule 2 (Allow)"
};

// An address as the classifier reads it: IPv4 in word 0 (host order), IPv6 as four 32-bit
// words, most significant first, each in host order.
struct AclAddr {
    std::array<uint32_t, 4> w{};
    uint8_t len = 0;  // prefix length, 0..32 (IPv4) or 0..128 (IPv6)
    bool operator==(const AclAddr &) const = default;
};

struct FlatRule {
    uint16_t set = 0;  // the direction's rule set (ClassInfo::ingress_set / egress_set)
    uint8_t proto_lo = 0, proto_hi = 255;
    AclAddr src, dst;
    uint16_t sport_lo = 0, sport_hi = 65535;
    uint16_t dport_lo = 0, dport_hi = 65535;
    RuleRef ref = kNoRule;  // priority: the lower the ref, the stronger
    bool operator==(const FlatRule &) const = default;
};

// The rules of one family and one direction. decide: Allow, Deny and Pass rules (the first
// that matches decides); log: Log rules (the first that matches, if before the decision, is
// logged).
struct FlatRules {
    std::vector<FlatRule> decide, log;
};

struct ClassInfo {
    uint16_t ingress_set = 0, egress_set = 0;  // 0: no policy applies in that direction
    std::vector<std::string> endpoints;        // "ns/pod", the local endpoints of the class
};

struct SetInfo {
    std::vector<std::string> policies;  // keys of the policies that apply, in order
};

struct CompileStats {
    size_t policies = 0, rules = 0;  // model rules of the policies that apply to a local endpoint
    size_t classes = 0, sets = 0;
    size_t flat_rules = 0;    // in every family, direction and list
    size_t largest_rule = 0;  // the most flat rules one model rule gave in one family
    double seconds = 0;       // compile() wall time
};

struct Compiled {
    // Index 0: class 0 (no policy). Every local endpoint's class is in class_of.
    std::vector<ClassInfo> classes;
    std::map<std::string, ClassId> class_of;  // "ns/pod" -> class
    // Per direction, index 0: the empty set.
    std::array<std::vector<SetInfo>, 2> sets;  // [Direction]
    // refs[0] is unused (kNoRule); refs[r] describes rule ref r.
    std::vector<RuleInfo> refs;
    // [family: 0 IPv4, 1 IPv6][direction: 0 ingress, 1 egress]
    std::array<std::array<FlatRules, 2>, 2> rules;
    CompileStats stats;

    const FlatRules &of(net::Family f, Direction d) const {
        return rules[f == net::Family::kIp4 ? 0 : 1][static_cast<int>(d)];
    }
    uint16_t set_of(ClassId c, Direction d) const {
        return d == Direction::kIngress ? classes[c].ingress_set : classes[c].egress_set;
    }
    bool applies(ClassId c, Direction d) const { return set_of(c, d) != 0; }
};

struct Limits {
    size_t max_per_rule = 100'000;  // flat rules one model rule may become
    size_t max_total = 2'000'000;   // flat rules in all
};

// A rule that would expand past the limits. what(): "<policy> <direction> rule <i>: <why>".
class CompileError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// local: the keys ("ns/pod") of the endpoints on this node (unknown keys are ignored: a pod
// record may arrive after its endpoint). Only policies that apply to one of them are
// compiled; every endpoint of the set is a possible peer (selectors, named ports).
// Assumes validated policies (model.hpp validate()); throws CompileError past the limits.
Compiled compile(const PolicySet &set, const std::vector<std::string> &local,
                 const Limits &limits = {});

// The verdict of the compiled form for one packet, from the refs the classifier returned
// (decide: the highest-priority decide match or kNoRule; log likewise): allowed and the
// deciding ref, or kNoRule with allowed = !applies (default deny / no policy). Shared by the
// datapath (inline, no allocation) and the tests.
struct CompiledVerdict {
    bool allowed = true;
    RuleRef rule = kNoRule;  // the deciding rule (Allow, Deny or Pass)
    RuleRef log = kNoRule;   // the first Log rule before the decision
};
inline CompiledVerdict resolve(bool applies, RuleRef decide, RuleRef log,
                               const std::vector<RuleInfo> &refs) noexcept {
    CompiledVerdict v;
    v.rule = decide;
    v.log = (log != kNoRule && (decide == kNoRule || log < decide)) ? log : kNoRule;
    v.allowed = decide == kNoRule ? !applies : refs[decide].action != Action::kDeny;
    return v;
}

}  // namespace fwd::policy
