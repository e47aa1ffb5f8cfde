// The compiled policy (fwd/policy/compile.hpp) as rte_acl contexts: one per family and
// direction, each with two categories (0: the Allow / Deny / Pass rules, 1: the Log rules),
// so one trie walk gives both the deciding rule and the Log rule.
//
// Fields (rte_acl reads the input in network order, one 4-byte word per input index; the
// first field must be one byte):
//   IPv4: proto (1 byte, range) | set (4, mask) | src (4, mask) | dst (4, mask) |
//         sport, dport (2 + 2, range)                                    20-byte input
//   IPv6: proto | set | src as 4 x 32-bit (mask) | dst as 4 x 32-bit | sport, dport
//                                                                        44-byte input
// The set is the class's rule set of the direction (compile.hpp), which classify() looks up
// from the class id: endpoints whose policies differ in one direction only share the other
// direction's rules.
//
// Lifetime: built by the control thread off the packet path (build() allocates from the DPDK
// heap and takes rte_acl's tailq lock), immutable afterwards, read by any number of workers,
// freed by its owner after an RCU grace period. Contexts have unique names ("pol<N>-<4|6><i|e>")
// so several rule sets can exist during a swap.
//
// classify() is packet-path code: no heap, no exceptions, no logging.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fwd/net/endian.hpp"
#include "fwd/policy/compile.hpp"

struct rte_acl_ctx;

namespace fwd::dp {

// One packet as policy classifies it (see compile.hpp for what goes in the port fields:
// TCP / UDP / SCTP ports, ICMP of the family: source 0, destination type and code as in the
// message's first two bytes, else 0 and 0). Addresses and ports in network order, as in the
// headers.
struct PolicyKey4 {
    policy::ClassId cls = policy::kNoPolicyClass;  // the local endpoint's class
    uint8_t proto = 0;
    net::Be32 src, dst;
    net::Be16 sport, dport;
};

struct PolicyKey6 {
    policy::ClassId cls = policy::kNoPolicyClass;
    uint8_t proto = 0;
    std::array<uint8_t, 16> src{}, dst{};
    net::Be16 sport, dport;
};

class PolicyRules {
  public:
    // Classified at most this many at a time (the stack buffers of classify()); larger
    // bursts are taken in chunks.
    static constexpr uint32_t kChunk = 64;

    // Builds the four contexts on socket_id (SOCKET_ID_ANY: any). Throws std::runtime_error
    // naming the context and rte_acl's error (the caller keeps its last good rule set).
    static std::unique_ptr<PolicyRules> build(const policy::Compiled &c, int socket_id = -1);
    ~PolicyRules();
    PolicyRules(const PolicyRules &) = delete;
    PolicyRules &operator=(const PolicyRules &) = delete;

    // For each of the n keys, the verdict of its class's policies in direction d (allowed, the
    // deciding rule ref, the first Log rule ref before the decision; compile.hpp resolve()).
    // A class with no policy in d, or a class id this rule set does not know, is allowed
    // without a lookup.
    void classify(policy::Direction d, const PolicyKey4 *keys, uint32_t n,
                  policy::CompiledVerdict *out) const noexcept;
    void classify(policy::Direction d, const PolicyKey6 *keys, uint32_t n,
                  policy::CompiledVerdict *out) const noexcept;

    bool applies(policy::ClassId c, policy::Direction d) const noexcept {
        return set_of(c, d) != 0;
    }
    // Whether any class has policy in either direction: a node whose pods no policy selects
    // still has a rule set (its classes), and its packets need no policy work at all.
    bool any() const noexcept { return any_; }
    size_t classes() const noexcept { return ingress_set_.size(); }
    // 1 + the highest rule ref: size of a per-rule counter array.
    size_t refs() const noexcept { return actions_.size(); }
    policy::Action action(policy::RuleRef r) const noexcept { return actions_[r]; }

    // Bytes of DPDK heap the four contexts hold (rules and tries), measured around the build.
    size_t memory_bytes() const noexcept { return memory_bytes_; }
    // Rules added to each context: [family 0 IPv4, 1 IPv6][direction].
    size_t rule_count(net::Family f, policy::Direction d) const noexcept {
        return rule_count_[f == net::Family::kIp4 ? 0 : 1][static_cast<int>(d)];
    }
    double build_seconds() const noexcept { return build_seconds_; }
    const std::string &name() const noexcept { return name_; }  // "pol<N>"

  private:
    PolicyRules() = default;
    uint16_t set_of(policy::ClassId c, policy::Direction d) const noexcept {
        const auto &v = d == policy::Direction::kIngress ? ingress_set_ : egress_set_;
        return c < v.size() ? v[c] : 0;
    }
    template <typename Key, typename Input>
    void classify_impl(int family, policy::Direction d, const Key *keys, uint32_t n,
                       policy::CompiledVerdict *out) const noexcept;

    // [family][direction]; nullptr when that list has no rules (nothing to match).
    std::array<std::array<rte_acl_ctx *, 2>, 2> ctx_{};
    std::vector<uint16_t> ingress_set_, egress_set_;  // per class
    std::vector<policy::Action> actions_;             // per rule ref
    bool any_ = false;
    std::array<std::array<size_t, 2>, 2> rule_count_{};
    size_t memory_bytes_ = 0;
    double build_seconds_ = 0;
    std::string name_;
};

}  // namespace fwd::dp
