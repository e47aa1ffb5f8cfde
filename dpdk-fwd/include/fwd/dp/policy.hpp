// Policy enforcement, the datapath side (issue 16 part 2): what the control
// thread publishes for the stages of src/stages/policy.cpp, and the
// per-worker state they keep.
//
// Where it runs (the stages' contract is on top of src/stages/policy.cpp):
//   antispoof4 / antispoof6   kIp4Input / kIp6Input, before nat4 / nat6:
//                             a packet from a pod port must carry one of the
//                             endpoint's sources (spoofed_source)
//   policy4 / policy6         kIp4Output / kIp6Output, before vxlan_encap:
//                             egress of the input pod port's endpoint,
//                             ingress of the pod next hop's; NAT's flow
//                             (PktMeta::flow) gives the pre-SNAT source and
//                             the post-DNAT destination
//   policy4_local / _local6   kIp4Local / kIp6Local, after nat4_local: a
//                             pod's traffic to the node (its egress policy,
//                             then HostAction)
//
// Classes: the compiler (fwd/policy/compile.hpp) gives every local endpoint
// a class id; endpoints with the same policies share one. Class 0 has no
// policy in either direction. The rules (PolicyRules, acl.hpp) are keyed by
// class; this state maps ports and next hops to classes.
//
// Publication (as nat.hpp's NatConfig):
//   PolicyState   [C] builds an immutable one (every field below), then
//                 PolicyTables::swap_state (release); deletes the old one
//                 (and its PolicyRules) after a grace period, summing its
//                 per-worker counts first. [W] loads it once per burst.
//                 nullptr: nothing is enforced, anti-spoofing included.
//   PolicyTables  [C] ct set before the workers run, never changed while
//                 they do (the conntrack module's shared table).
// Per worker: the slot "policy" (worker_slot()) holds a PolicyWorker*;
// empty: the stages pass everything.
//
// Flows: a flow the policy stages create or check keeps the generation it
// was allowed under (ct::Flow::policy_gen, the low 16 bits of
// PolicyState::generation); a packet of a flow stamped with another
// generation is checked again on its original tuple and the flow ends when
// that is denied now.
#pragma once

#include <array>
#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "fwd/dp/conntrack.hpp"
#include "fwd/dp/counter.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::dp {

class PolicyRules;  // acl.hpp: the compiled rules, per family and direction

namespace policy {

// FelixConfiguration defaultEndpointToHostAction: what a pod's traffic to
// the node itself meets once the pod's egress policy let it through.
// kReturn hands it to the node's own filter (Felix: the INPUT chain); this
// dataplane has no host endpoint policy, so kReturn and kAccept both pass.
enum class HostAction : uint8_t { kDrop = 0, kReturn, kAccept };

// An allowed source prefix, in the form the check wants (network order
// words; net masked).
struct Src4 {
    uint32_t net_be = 0;
    uint32_t mask_be = 0;
};
struct Src6 {
    std::array<uint64_t, 2> net{};
    std::array<uint64_t, 2> mask{};
};
Src4 src4(const net::Prefix4 &p);
Src6 src6(const net::Prefix6 &p);

// PortPolicy::flags.
enum PortFlags : uint8_t {
    // A pod endpoint: its packets' sources are checked against
    // [src*_off, src*_off + src*_n) (empty lists: every packet of that
    // family is spoofed). A port without it (uplink, a pod port the control
    // side has no endpoint for yet) is not checked.
    kPortEndpoint = 1 << 0,
};

struct PortPolicy {
    uint16_t cls = 0;  // policy::ClassId of the endpoint on the port; 0: none
    uint8_t flags = 0;
    uint8_t pad_ = 0;
    // Its allowed sources: the endpoint's own addresses (as /32, /128) and
    // the annotation cni.projectcalico.org/allowedSourcePrefixes, indexes
    // into PolicyState::src4 / src6.
    uint32_t src4_off = 0, src6_off = 0;
    uint16_t src4_n = 0, src6_n = 0;
};

// A failsafe port (Felix's failsafeInboundHostPorts /
// failsafeOutboundHostPorts): proto IPPROTO_TCP or IPPROTO_UDP.
struct FailsafePort {
    uint8_t proto = 0;
    uint16_t port = 0;  // host order
};

// Per-rule counts of one worker: index = the rule ref of the rule set
// (PolicyRules / compile's rule-ref table). [W] that worker adds, [C] sums.
struct RuleCount {
    Counter packets;
    Counter bytes;
};

// Everything the stages read; immutable once published. Vectors are sized
// by the control side as said; a stage never reads past them.
struct PolicyState {
    // The compiled rules (acl.hpp); which class has policy in which
    // direction is theirs to say (PolicyRules::applies). nullptr: no policy
    // anywhere (anti-spoofing and the endpoint-to-host action still apply).
    const PolicyRules *rules = nullptr;
    uint32_t generation = 0;  // [C] one more on every publish
    // By port id (kMaxPorts entries, tables.hpp).
    std::vector<PortPolicy> ports;
    // By next-hop id (kMaxNextHops entries): the class of the local
    // endpoint behind a kPod next hop; 0 elsewhere.
    std::vector<uint16_t> nh_class;
    std::vector<Src4> src4;
    std::vector<Src6> src6;
    // The class of the endpoint each src4 / src6 entry is a source of: a
    // port several pods share (the kernel pods' tap) has the sources of all
    // of them and class 0, and the matching source tells the sender. An
    // entry past the end: the port's class.
    std::vector<uint16_t> src4_cls, src6_cls;
    HostAction to_host = HostAction::kDrop;
    // Felix's failsafe ports. They open a host endpoint's policy; traffic
    // from a pod to the node is not a host endpoint's (Felix sends it
    // through the pod's egress policy and defaultEndpointToHostAction only,
    // failsafe ports included), and this dataplane has no host endpoint
    // policy: kept for fwdctl and for host endpoints later.
    std::vector<FailsafePort> failsafe_in;
    std::vector<FailsafePort> failsafe_out;
    // Per worker (by worker index), per rule ref: [C] sizes every vector
    // to rules->refs() before publishing (empty without rules).
    // Mutable: the workers count in a state they otherwise only read.
    mutable std::vector<std::vector<RuleCount>> counts;
};

// A Log rule's record of one packet, for the control thread to write as a
// rate-limited line (no logging on the packet path). Plain data.
struct LogRecord {
    uint32_t generation;                   // of the state whose rule refs `rule` indexes
    uint32_t rule;                         // the Log rule's ref
    std::array<uint8_t, 16> src{}, dst{};  // IPv4: the first 4 bytes
    uint16_t sport, dport;                 // host order; ICMP: type, code
    uint16_t len;                          // IP length
    uint16_t in_port;
    uint8_t family;  // 4 or 6
    uint8_t proto;
    uint8_t verdict;  // 1 allowed, 0 dropped
    uint8_t dir;      // 0 ingress, 1 egress
};
using LogRing = boost::lockfree::spsc_queue<LogRecord, boost::lockfree::capacity<1024>>;

struct PolicyTables {
    ct::ConnTable *ct = nullptr;  // [C] before the workers run
    std::atomic<const PolicyState *> st{nullptr};
    const PolicyState *state() const { return st.load(std::memory_order_acquire); }
    // Release store; returns the old one, to delete after a grace period.
    const PolicyState *swap_state(const PolicyState *next) {
        return st.exchange(next, std::memory_order_acq_rel);
    }
};

// A worker's policy state ([C] creates one per worker and sets the slot
// before the workers run).
struct alignas(64) PolicyWorker {
    PolicyTables *tables = nullptr;
    ct::Counters *counters = nullptr;  // the tracker's results (conntrack module's)
    unsigned index = 0;                // the worker's index (PolicyState::counts)
    LogRing log;                       // [W] pushes, [C] pops
    Counter log_lost;                  // [W] records the full ring refused
};

uint16_t worker_slot();  // add_worker_slot("policy")

}  // namespace policy
}  // namespace fwd::dp
