// The compiled policy as rte_acl contexts; see fwd/dp/acl.hpp.
#include "fwd/dp/acl.hpp"

#include <rte_acl.h>
#include <rte_byteorder.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <future>
#include <stdexcept>

namespace fwd::dp {

namespace {

using policy::Direction;
using policy::FlatRule;
using policy::RuleRef;

// The classifier's input: what rte_acl reads, in network order (see acl.hpp for the layout).
struct alignas(4) Input4 {
    uint8_t proto;
    uint8_t pad[3];
    uint32_t set;
    uint32_t src, dst;
    uint16_t sport, dport;
};
static_assert(sizeof(Input4) == 20);

struct alignas(4) Input6 {
    uint8_t proto;
    uint8_t pad[3];
    uint32_t set;
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
};
static_assert(sizeof(Input6) == 44);

constexpr uint32_t kFields4 = 6, kFields6 = 12;
// rte_acl returns results in groups of RTE_ACL_RESULTS_MULTIPLIER categories; ours are the
// first two (decide, log).
constexpr uint32_t kCategories = RTE_ACL_RESULTS_MULTIPLIER;
constexpr uint32_t kDecide = 0, kLog = 1;
static_assert(kCategories >= 2 && kCategories <= RTE_ACL_MAX_CATEGORIES);

RTE_ACL_RULE_DEF(AclRule4, kFields4);
RTE_ACL_RULE_DEF(AclRule6, kFields6);

rte_acl_field_def field(uint8_t type, uint8_t size, uint8_t index, uint8_t input, uint32_t offset) {
    rte_acl_field_def d{};
    d.type = type;
    d.size = size;
    d.field_index = index;
    d.input_index = input;
    d.offset = offset;
    return d;
}

// proto, set, then the addresses' words, then both ports in one input word.
void define_fields(rte_acl_config &cfg, bool v6) {
    uint8_t i = 0;
    cfg.defs[i] = field(RTE_ACL_FIELD_TYPE_RANGE, 1, i, i, offsetof(Input4, proto));
    ++i;
    cfg.defs[i] = field(RTE_ACL_FIELD_TYPE_BITMASK, 4, i, i, offsetof(Input4, set));
    ++i;
    const int words = v6 ? 4 : 1;
    const uint32_t src = v6 ? offsetof(Input6, src) : offsetof(Input4, src);
    const uint32_t dst = v6 ? offsetof(Input6, dst) : offsetof(Input4, dst);
    for (uint32_t base : {src, dst}) {
        for (int w = 0; w < words; ++w, ++i) {
            cfg.defs[i] = field(RTE_ACL_FIELD_TYPE_MASK, 4, i, i, base + 4 * w);
        }
    }
    const uint32_t sport = v6 ? offsetof(Input6, sport) : offsetof(Input4, sport);
    const uint8_t ports = i;
    cfg.defs[i] = field(RTE_ACL_FIELD_TYPE_RANGE, 2, i, ports, sport);
    ++i;
    cfg.defs[i] = field(RTE_ACL_FIELD_TYPE_RANGE, 2, i, ports, sport + 2);
    ++i;
    cfg.num_fields = i;
}

template <typename R>
void fill(R &out, const FlatRule &fr, uint32_t category, uint32_t nrefs, bool v6) {
    std::memset(&out, 0, sizeof(out));
    out.data.category_mask = 1u << category;
    // The lower the ref, the earlier the rule: rte_acl prefers the higher priority.
    out.data.priority = static_cast<int32_t>(nrefs - fr.ref);
    out.data.userdata = fr.ref;
    uint32_t i = 0;
    out.field[i].value.u8 = fr.proto_lo;
    out.field[i].mask_range.u8 = fr.proto_hi;
    ++i;
    out.field[i].value.u32 = fr.set;
    out.field[i].mask_range.u32 = UINT32_MAX;
    ++i;
    for (const auto *a : {&fr.src, &fr.dst}) {
        for (int w = 0; w < (v6 ? 4 : 1); ++w, ++i) {
            const int len = std::clamp(a->len - 32 * w, 0, 32);
            out.field[i].value.u32 = a->w[w];
            out.field[i].mask_range.u32 = static_cast<uint32_t>(len);
        }
    }
    out.field[i].value.u16 = fr.sport_lo;
    out.field[i].mask_range.u16 = fr.sport_hi;
    ++i;
    out.field[i].value.u16 = fr.dport_lo;
    out.field[i].mask_range.u16 = fr.dport_hi;
}

size_t heap_allocated() {
    size_t total = 0;
    for (unsigned i = 0; i < rte_socket_count(); ++i) {
        rte_malloc_socket_stats s{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &s) == 0) {
            total += s.heap_allocsz_bytes;
        }
    }
    return total;
}

std::atomic<uint32_t> g_next_id{0};

template <typename R>
rte_acl_ctx *make_ctx(const std::string &name, int socket_id, const policy::FlatRules &rules,
                      uint32_t nrefs, bool v6) {
    const size_t n = rules.decide.size() + rules.log.size();
    if (n == 0) {
        return nullptr;
    }
    rte_acl_param prm{};
    prm.name = name.c_str();
    prm.socket_id = socket_id;
    prm.rule_size = RTE_ACL_RULE_SZ(v6 ? kFields6 : kFields4);
    prm.max_rule_num = static_cast<uint32_t>(n);
    rte_acl_ctx *ctx = rte_acl_create(&prm);
    if (ctx == nullptr) {
        throw std::runtime_error("rte_acl context " + name +
                                 ": create: " + rte_strerror(rte_errno));
    }
    try {
        std::vector<R> out(n);
        size_t k = 0;
        for (const auto &fr : rules.decide) {
            fill(out[k++], fr, kDecide, nrefs, v6);
        }
        for (const auto &fr : rules.log) {
            fill(out[k++], fr, kLog, nrefs, v6);
        }
        int rc = rte_acl_add_rules(ctx, reinterpret_cast<const rte_acl_rule *>(out.data()),
                                   static_cast<uint32_t>(n));
        if (rc != 0) {
            throw std::runtime_error("rte_acl context " + name + ": adding " + std::to_string(n) +
                                     " rules: " + rte_strerror(-rc));
        }
        rte_acl_config cfg{};
        cfg.num_categories = kCategories;
        define_fields(cfg, v6);
        rc = rte_acl_build(ctx, &cfg);
        if (rc != 0) {
            throw std::runtime_error("rte_acl context " + name + ": build of " + std::to_string(n) +
                                     " rules: " + rte_strerror(-rc));
        }
        // The rules were copied into the tries; the context need not keep them.
        rte_acl_reset_rules(ctx);
    } catch (...) {
        rte_acl_free(ctx);
        throw;
    }
    return ctx;
}

}  // namespace

std::unique_ptr<PolicyRules> PolicyRules::build(const policy::Compiled &c, int socket_id) {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<PolicyRules> r(new PolicyRules());
    r->name_ = "pol" + std::to_string(g_next_id.fetch_add(1, std::memory_order_relaxed));
    for (const auto &cl : c.classes) {
        r->ingress_set_.push_back(cl.ingress_set);
        r->egress_set_.push_back(cl.egress_set);
        r->any_ = r->any_ || cl.ingress_set != 0 || cl.egress_set != 0;
    }
    for (const auto &ref : c.refs) {
        r->actions_.push_back(ref.action);
    }
    const auto nrefs = static_cast<uint32_t>(c.refs.size());
    if (nrefs > RTE_ACL_MAX_PRIORITY) {
        throw std::runtime_error("policy: " + std::to_string(nrefs) +
                                 " rules, more than rte_acl's priorities");
    }
    const size_t before = heap_allocated();
    // The four contexts build on threads of their own: rte_acl's build is the cost of a rule
    // set update (superlinear in a context's rules), and the contexts share nothing.
    std::array<std::array<std::future<rte_acl_ctx *>, 2>, 2> builds;
    for (int f = 0; f < 2; ++f) {
        for (int d = 0; d < 2; ++d) {
            const std::string name = r->name_ + "-" + (f == 0 ? "4" : "6") + (d == 0 ? "i" : "e");
            const auto &rules = c.rules[f][d];
            builds[f][d] = std::async(std::launch::async, [&rules, name, socket_id, nrefs, f] {
                return f == 0 ? make_ctx<AclRule4>(name, socket_id, rules, nrefs, false)
                              : make_ctx<AclRule6>(name, socket_id, rules, nrefs, true);
            });
            r->rule_count_[f][d] = rules.decide.size() + rules.log.size();
        }
    }
    // Every build is waited for; the built contexts are r's (freed with it) if one failed.
    std::exception_ptr failed;
    for (int f = 0; f < 2; ++f) {
        for (int d = 0; d < 2; ++d) {
            try {
                r->ctx_[f][d] = builds[f][d].get();
            } catch (...) {
                failed = failed ? failed : std::current_exception();
            }
        }
    }
    if (failed) {
        std::rethrow_exception(failed);
    }
    const size_t after = heap_allocated();
    r->memory_bytes_ = after > before ? after - before : 0;
    r->build_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

PolicyRules::~PolicyRules() {
    for (auto &f : ctx_) {
        for (auto *x : f) {
            rte_acl_free(x);
        }
    }
}

namespace {

// The classifier's input of one key, its class's set in place of the class.
inline void set_input(Input4 &in, const PolicyKey4 &k, uint16_t set) {
    in.proto = k.proto;
    in.pad[0] = in.pad[1] = in.pad[2] = 0;
    in.set = rte_cpu_to_be_32(set);
    in.src = k.src.raw();
    in.dst = k.dst.raw();
    in.sport = k.sport.raw();
    in.dport = k.dport.raw();
}

inline void set_input(Input6 &in, const PolicyKey6 &k, uint16_t set) {
    in.proto = k.proto;
    in.pad[0] = in.pad[1] = in.pad[2] = 0;
    in.set = rte_cpu_to_be_32(set);
    std::memcpy(in.src, k.src.data(), 16);
    std::memcpy(in.dst, k.dst.data(), 16);
    in.sport = k.sport.raw();
    in.dport = k.dport.raw();
}

}  // namespace

template <typename Key, typename Input>
void PolicyRules::classify_impl(int family, Direction d, const Key *keys, uint32_t n,
                                policy::CompiledVerdict *out) const noexcept {
    const rte_acl_ctx *ctx = ctx_[family][static_cast<int>(d)];
    Input in[kChunk];
    const uint8_t *data[kChunk];
    uint32_t results[kChunk * kCategories];
    uint32_t which[kChunk];
    for (uint32_t base = 0; base < n; base += kChunk) {
        const uint32_t end = std::min(n, base + kChunk);
        uint32_t m = 0;
        for (uint32_t i = base; i < end; ++i) {
            const uint16_t set = set_of(keys[i].cls, d);
            if (set == 0) {
                out[i] = policy::CompiledVerdict{};  // no policy: allowed, nothing logged
                continue;
            }
            if (ctx == nullptr) {
                out[i] =
                    policy::resolve(true, policy::kNoRule, policy::kNoRule, policy::Action::kDeny);
                continue;
            }
            set_input(in[m], keys[i], set);
            data[m] = reinterpret_cast<const uint8_t *>(&in[m]);
            which[m] = i;
            ++m;
        }
        if (m == 0) {
            continue;
        }
        // Arguments are checked above (a built context, categories a multiple of the
        // results' width): rte_acl_classify cannot fail here.
        rte_acl_classify(ctx, data, results, m, kCategories);
        for (uint32_t j = 0; j < m; ++j) {
            const RuleRef decide = results[j * kCategories + kDecide];
            out[which[j]] =
                policy::resolve(true, decide, results[j * kCategories + kLog], actions_[decide]);
        }
    }
}

void PolicyRules::classify(Direction d, const PolicyKey4 *keys, uint32_t n,
                           policy::CompiledVerdict *out) const noexcept {
    classify_impl<PolicyKey4, Input4>(0, d, keys, n, out);
}

void PolicyRules::classify(Direction d, const PolicyKey6 *keys, uint32_t n,
                           policy::CompiledVerdict *out) const noexcept {
    classify_impl<PolicyKey6, Input6>(1, d, keys, n, out);
}

}  // namespace fwd::dp
