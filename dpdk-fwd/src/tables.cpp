#include "fwd/dp/tables.hpp"

#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_rib6.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fwd::dp {

namespace {
std::string unique_name(const char *base) {
    static std::atomic<int> seq{0};
    return std::string(base) + std::to_string(seq.fetch_add(1));
}
}  // namespace

Tables::Tables(uint32_t max_routes4, uint32_t max_routes6, rte_rcu_qsbr *qsbr, int socket,
               uint32_t tbl8s4, uint32_t tbl8s6)
    : max_routes6_(max_routes6), tbl8s4_(tbl8s4), tbl8s6_(tbl8s6), socket_(socket), qsbr_(qsbr) {
    nh_ = static_cast<NextHop *>(
        rte_zmalloc_socket("fwd_nh", sizeof(NextHop) * kMaxNextHops, RTE_CACHE_LINE_SIZE, socket));
    if (nh_ == nullptr) {
        throw std::runtime_error("cannot allocate the next-hop table");
    }
    nh_free_.reserve(kMaxNextHops);
    for (uint32_t i = kMaxNextHops - 1; i > kNhInvalid; i--) {
        nh_free_.push_back(i);
    }
    groups_ = static_cast<uint32_t *>(
        rte_zmalloc_socket("fwd_nh_groups", sizeof(uint32_t) * kMaxGroups * kMaxGroupPaths,
                           RTE_CACHE_LINE_SIZE, socket));
    if (groups_ == nullptr) {
        rte_free(nh_);
        throw std::runtime_error("cannot allocate the ECMP group table");
    }
    group_free_.reserve(kMaxGroups);
    for (uint32_t g = kMaxGroups; g-- > 0;) {
        group_free_.push_back(g);
    }
    rte_lpm_config c4{};
    c4.max_rules = max_routes4;
    c4.number_tbl8s = tbl8s4;
    auto n4 = unique_name("fwd_lpm4_");
    lpm4_ = rte_lpm_create(n4.c_str(), socket, &c4);
    if (lpm4_ == nullptr) {
        throw std::runtime_error(std::string("rte_lpm_create: ") + rte_strerror(rte_errno));
    }
    if (qsbr_ != nullptr) {
        rte_lpm_rcu_config rc{};
        rc.v = qsbr_;
        rc.mode = RTE_LPM_QSBR_MODE_DQ;
        if (rte_lpm_rcu_qsbr_add(lpm4_, &rc) != 0) {
            throw std::runtime_error(std::string("rte_lpm_rcu_qsbr_add: ") +
                                     rte_strerror(rte_errno));
        }
    }
    for (auto &f : fib6_) {
        f = create_fib6();
        if (f == nullptr) {
            throw std::runtime_error(std::string("rte_fib6_create: ") + rte_strerror(rte_errno));
        }
    }
    for (auto &f : front6_) {
        f = std::make_unique<Front6>(socket_);
    }
}

rte_fib6 *Tables::create_fib6() const {
    rte_fib6_conf c6{};
    c6.type = RTE_FIB6_TRIE;
    c6.default_nh = kNhInvalid;
    c6.max_routes = static_cast<int>(max_routes6_);
    c6.trie.nh_sz = RTE_FIB6_TRIE_4B;
    // DPDK 22.11's trie reserves a tbl8 for every byte of a long prefix below
    // the deepest covering route: a /122 in an empty /120 reserves 13. 100k
    // Calico /122 blocks (25k /120s) need 325k.
    c6.trie.num_tbl8 = tbl8s6_;
    auto n6 = unique_name("fwd_fib6_");
    return rte_fib6_create(n6.c_str(), socket_, &c6);
}

Tables::~Tables() {
    for (auto *f : fib6_) {
        rte_fib6_free(f);
    }
    rte_lpm_free(lpm4_);
    rte_free(groups_);
    rte_free(nh_);
}

uint32_t Tables::nh_alloc(const NextHop &nh) {
    if (nh_free_.empty()) {
        return kNhInvalid;
    }
    uint32_t id = nh_free_.back();
    nh_free_.pop_back();
    nh_[id] = nh;
    // The route that will point at this entry is published after this store.
    std::atomic_thread_fence(std::memory_order_release);
    return id;
}

void Tables::nh_free(uint32_t id) {
    if (id != kNhInvalid) {
        nh_[id] = NextHop{};
        nh_free_.push_back(id);
    }
}

void Tables::nh_set_resolved(uint32_t id, const net::MacAddr &mac) {
    if (id == kNhInvalid || id >= kMaxNextHops) {
        return;
    }
    NextHop &nh = nh_[id];
    std::memcpy(nh.dst_mac.data(), mac.data(), 6);
    std::atomic_ref<NhKind>(nh.kind).store(NhKind::kVia, std::memory_order_release);
}

void Tables::nh_set_unresolved(uint32_t id) {
    if (id == kNhInvalid || id >= kMaxNextHops) {
        return;
    }
    std::atomic_ref<NhKind>(nh_[id].kind).store(NhKind::kResolve, std::memory_order_release);
}

uint32_t Tables::group_alloc(const uint32_t *members, uint8_t n) {
    if (n == 0 || n > kMaxGroupPaths || group_free_.empty()) {
        return kGroupInvalid;
    }
    for (uint8_t i = 0; i < n; i++) {
        if (members[i] >= kMaxNextHops) {
            return kGroupInvalid;  // workers index the next-hop table with it
        }
    }
    uint32_t g = group_free_.back();
    group_free_.pop_back();
    uint32_t *row = groups_ + static_cast<size_t>(g) * kMaxGroupPaths;
    std::memcpy(row, members, sizeof(uint32_t) * n);
    std::fill(row + n, row + kMaxGroupPaths, kNhInvalid);
    // The kGroup next hop, then the route, are published after this store.
    std::atomic_thread_fence(std::memory_order_release);
    return g;
}

void Tables::group_free(uint32_t g) {
    if (g < kMaxGroups) {
        std::fill_n(groups_ + static_cast<size_t>(g) * kMaxGroupPaths, kMaxGroupPaths, kNhInvalid);
        group_free_.push_back(g);
    }
}

// rte_lpm takes depths 1 to 32: the default route lives beside it, in
// default4_, which route4 uses on a miss.
int Tables::add4(const net::Prefix4 &p, uint32_t nh) {
    if (p.len == 0) {
        default4_.store(nh, std::memory_order_release);
        return 0;
    }
    return rte_lpm_add(lpm4_, p.addr.host(), p.len, nh);
}

int Tables::del4(const net::Prefix4 &p) {
    if (p.len == 0) {
        return default4_.exchange(kNhInvalid, std::memory_order_acq_rel) == kNhInvalid ? -ENOENT
                                                                                       : 0;
    }
    return rte_lpm_delete(lpm4_, p.addr.host(), p.len);
}

// DPDK 22.11's trie takes a tbl8 reservation for every added route longer
// than /24 and never gives it back on delete, so after enough churn (2520
// add/delete cycles of one /128 with 2^15 tbl8s) every such add fails with
// -ENOSPC. A fresh copy holding the same routes starts with the right
// reservation. Only called on a copy no reader uses.
int Tables::rebuild6(unsigned copy) {
    rte_fib6 *fresh = create_fib6();
    if (fresh == nullptr) {
        return -ENOSPC;
    }
    rte_rib6 *rib = rte_fib6_get_rib(fib6_[copy]);
    const uint8_t any[16] = {};
    rte_rib6_node *n = nullptr;
    while ((n = rte_rib6_get_nxt(rib, any, 0, n, RTE_RIB6_GET_NXT_ALL)) != nullptr) {
        uint8_t ip[16];
        uint8_t len = 0;
        uint64_t nh = 0;
        rte_rib6_get_ip(n, ip);
        rte_rib6_get_depth(n, &len);
        rte_rib6_get_nh(n, &nh);
        int rc = rte_fib6_add(fresh, ip, len, nh);
        if (rc != 0) {
            rte_fib6_free(fresh);
            return rc;
        }
    }
    rte_fib6_free(fib6_[copy]);
    fib6_[copy] = fresh;
    return 0;
}

int Tables::change6(unsigned copy, const uint8_t *ip, uint8_t len, uint32_t nh, bool add) {
    Front6 &front = *front6_[copy];
    if (!add) {
        int rc = rte_fib6_delete(fib6_[copy], ip, len);
        deletes6_[copy] += rc == 0 ? 1 : 0;
        // a route the front holds leaves it; one it did not hold was a mid route
        if (rc == 0 && !front.erase(ip, len) && len > 122) {
            mid6_[copy]--;
        }
        return rc;
    }
    // whether the route was there before: a replaced mid route is counted once
    const bool had =
        len > 122 && rte_rib6_lookup_exact(rte_fib6_get_rib(fib6_[copy]), ip, len) != nullptr;
    int rc = add_trie6(copy, ip, len, nh);
    if (rc == 0 && !front.set(ip, len, nh) && len > 122 && !had) {
        // 123..127, or (never, by its sizing) a /128 the front had no room
        // for: /122 hits may not be the longest match while it is there
        mid6_[copy]++;
    }
    return rc;
}

int Tables::add_trie6(unsigned copy, const uint8_t *ip, uint8_t len, uint32_t nh) {
    int rc = rte_fib6_add(fib6_[copy], ip, len, nh);
    // A rebuild only helps when deletes leaked reservations. A table that is
    // simply full stays full: after a rebuild that did not help, the next one
    // waits for many more deletes (rebuilding per failing add under churn
    // would cost O(routes) each time).
    if (rc == -ENOSPC && deletes6_[copy] >= rebuild_after6_[copy] && rebuild6(copy) == 0) {
        deletes6_[copy] = 0;
        rc = rte_fib6_add(fib6_[copy], ip, len, nh);
        rebuild_after6_[copy] = rc == -ENOSPC ? 1024 : 1;
    }
    return rc;
}

void Tables::apply6_batch(const std::vector<Change6> &changes, std::vector<int> &rc) {
    rc.assign(changes.size(), 0);
    if (changes.empty()) {
        return;
    }
    uint32_t idle = active6_.load(std::memory_order_relaxed) ^ 1;
    bool any = false;
    for (size_t i = 0; i < changes.size(); i++) {
        const auto &c = changes[i];
        rc[i] = change6(idle, c.prefix.addr.data(), c.prefix.len, c.nh, c.nh != kNhInvalid);
        any = any || rc[i] == 0;
    }
    if (!any) {
        return;
    }
    active6_.store(idle, std::memory_order_release);
    synchronize();
    // No reader uses the old copy any more: bring it level with the same
    // changes, in the same order (a failure here leaves the copies apart; the
    // next rebuild6 of that copy starts from its own routes, so report it).
    for (size_t i = 0; i < changes.size(); i++) {
        if (rc[i] != 0) {
            continue;
        }
        const auto &c = changes[i];
        int r = change6(idle ^ 1, c.prefix.addr.data(), c.prefix.len, c.nh, c.nh != kNhInvalid);
        if (r != 0 && r != -ENOENT) {
            rc[i] = r;
        }
    }
}

size_t Tables::memory_bytes() const {
    size_t lpm = sizeof(uint32_t) * ((1u << 24) + 256u * tbl8s4_);
    size_t fib6 = 2 * sizeof(uint32_t) * ((1u << 24) + 256u * static_cast<size_t>(tbl8s6_));
    size_t front6 = front6_[0]->memory_bytes() + front6_[1]->memory_bytes();
    return lpm + fib6 + front6 + sizeof(NextHop) * kMaxNextHops;
}

int Tables::add6(const net::Prefix6 &p, uint32_t nh) {
    if (nh == kNhInvalid) {
        return -EINVAL;
    }
    std::vector<int> rc;
    apply6_batch({{p, nh}}, rc);
    return rc[0];
}
int Tables::del6(const net::Prefix6 &p) {
    std::vector<int> rc;
    apply6_batch({{p, kNhInvalid}}, rc);
    return rc[0];
}

void Tables::synchronize() {
    if (qsbr_ != nullptr) {
        rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
    }
}

}  // namespace fwd::dp
