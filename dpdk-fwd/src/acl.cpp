// The compiled policy as rte_acl contexts; see fwd/dp/acl.hpp.
#include "fwd/dp/acl.hpp"

#include <rte_acl.h>

namespace fwd::dp {

std::unique_ptr<PolicyRules> PolicyRules::build(const policy::Compiled &c, int socket_id) {
    (void)socket_id;
    std::unique_ptr<PolicyRules> r(new PolicyRules());
    for (const auto &cl : c.classes) {
        r->ingress_set_.push_back(cl.ingress_set);
        r->egress_set_.push_back(cl.egress_set);
    }
    for (const auto &ref : c.refs) {
        r->actions_.push_back(ref.action);
    }
    return r;
}

PolicyRules::~PolicyRules() {
    for (auto &f : ctx_) {
        for (auto *x : f) {
            rte_acl_free(x);
        }
    }
}

void PolicyRules::classify(policy::Direction d, const PolicyKey4 *keys, uint32_t n,
                           policy::CompiledVerdict *out) const noexcept {
    for (uint32_t i = 0; i < n; ++i) {
        out[i] = {};
        out[i].allowed = !applies(keys[i].cls, d);
    }
}

void PolicyRules::classify(policy::Direction d, const PolicyKey6 *keys, uint32_t n,
                           policy::CompiledVerdict *out) const noexcept {
    for (uint32_t i = 0; i < n; ++i) {
        out[i] = {};
        out[i].allowed = !applies(keys[i].cls, d);
    }
}

}  // namespace fwd::dp
