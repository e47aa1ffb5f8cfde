// Front6: the /128 and /122 routes in front of the trie (front6.hpp).
#include "fwd/dp/front6.hpp"

#include <rte_common.h>
#include <rte_malloc.h>

#include <stdexcept>

namespace fwd::dp {

namespace {
constexpr uint32_t kFirstSlots = 1024;
constexpr uint32_t kFirstPodArrays = 16;
}  // namespace

Front6::Front6(int socket) : socket_(socket) {
    slots_ = static_cast<Slot *>(
        rte_zmalloc_socket("fwd_front6", sizeof(Slot) * kFirstSlots, RTE_CACHE_LINE_SIZE, socket));
    pods_ = static_cast<PodArray *>(rte_zmalloc_socket(
        "fwd_front6_pods", sizeof(PodArray) * kFirstPodArrays, RTE_CACHE_LINE_SIZE, socket));
    if (slots_ == nullptr || pods_ == nullptr) {
        rte_free(slots_);
        rte_free(pods_);
        throw std::runtime_error("the IPv6 route front: no memory");
    }
    mask_ = kFirstSlots - 1;
    pod_cap_ = kFirstPodArrays;
    pod_n_.assign(pod_cap_, 0);
    for (uint32_t p = pod_cap_ - 1; p >= 1; p--) {  // array 0 stays all kMiss
        pod_free_.push_back(p);
    }
}

Front6::~Front6() {
    rte_free(slots_);
    rte_free(pods_);
}

size_t Front6::memory_bytes() const {
    return sizeof(Slot) * (static_cast<size_t>(mask_) + 1) + sizeof(PodArray) * pod_cap_;
}

bool Front6::grow_slots() {
    const uint32_t n = 2 * (mask_ + 1);
    auto *fresh = static_cast<Slot *>(
        rte_zmalloc_socket("fwd_front6", sizeof(Slot) * n, RTE_CACHE_LINE_SIZE, socket_));
    if (fresh == nullptr) {
        return false;
    }
    for (uint32_t i = 0; i <= mask_; i++) {
        const Slot &s = slots_[i];
        if (!empty(s)) {
            fresh[probe(fresh, n - 1, s.hi, s.lo, hash(s.hi, s.lo))] = s;
        }
    }
    rte_free(slots_);
    slots_ = fresh;
    mask_ = n - 1;
    return true;
}

uint32_t Front6::pod_array() {
    if (pod_free_.empty()) {
        const uint32_t n = 2 * pod_cap_;
        auto *fresh = static_cast<PodArray *>(rte_zmalloc_socket(
            "fwd_front6_pods", sizeof(PodArray) * n, RTE_CACHE_LINE_SIZE, socket_));
        if (fresh == nullptr) {
            return 0;
        }
        std::memcpy(fresh, pods_, sizeof(PodArray) * pod_cap_);
        rte_free(pods_);
        pods_ = fresh;
        for (uint32_t p = n - 1; p >= pod_cap_; p--) {
            pod_free_.push_back(p);
        }
        pod_cap_ = n;
        pod_n_.resize(n, 0);
    }
    uint32_t p = pod_free_.back();
    pod_free_.pop_back();
    std::memset(pods_[p], 0, sizeof(PodArray));
    pod_n_[p] = 0;
    return p;
}

Front6::Slot *Front6::slot_for(const uint8_t *ip) {
    uint64_t hi, lo;
    key(ip, hi, lo);
    if ((hi | lo) == 0) {
        return nullptr;  // ::/122 would read as an empty slot: the trie keeps it
    }
    uint32_t i = probe(slots_, mask_, hi, lo, hash(hi, lo));
    if (!empty(slots_[i])) {
        return &slots_[i];
    }
    if (used_ + 1 > (mask_ + 1) / 2) {  // keep the load at one half at most
        if (!grow_slots()) {
            return nullptr;
        }
        i = probe(slots_, mask_, hi, lo, hash(hi, lo));
    }
    slots_[i] = Slot{hi, lo, kMiss, 0, 0};
    used_++;
    return &slots_[i];
}

bool Front6::set(const uint8_t *ip, uint8_t len, uint32_t nh) {
    if (!holds(len) || nh == kMiss) {
        return false;
    }
    Slot *s = slot_for(ip);
    if (s == nullptr) {
        return false;
    }
    if (len == 122) {
        n122_ += s->block_nh == kMiss ? 1 : 0;
        s->block_nh = nh;
        return true;
    }
    if (s->pods == 0) {
        uint32_t p = pod_array();  // moves no slot
        if (p == 0) {
            drop_slot_if_empty(static_cast<uint32_t>(s - slots_));
            return false;
        }
        s->pods = p;
    }
    uint32_t &e = pods_[s->pods][ip[15] % kPodsPerBlock];
    if (e == kMiss) {
        n128_++;
        pod_n_[s->pods]++;
    }
    e = nh;
    return true;
}

bool Front6::erase(const uint8_t *ip, uint8_t len) {
    if (!holds(len)) {
        return false;
    }
    uint64_t hi, lo;
    key(ip, hi, lo);
    const uint32_t i = probe(slots_, mask_, hi, lo, hash(hi, lo));
    Slot &s = slots_[i];
    if (empty(s)) {
        return false;
    }
    if (len == 122) {
        if (s.block_nh == kMiss) {
            return false;
        }
        s.block_nh = kMiss;
        n122_--;
    } else {
        uint32_t &e = pods_[s.pods][ip[15] % kPodsPerBlock];
        if (s.pods == 0 || e == kMiss) {
            return false;
        }
        e = kMiss;
        n128_--;
        if (--pod_n_[s.pods] == 0) {
            pod_free_.push_back(s.pods);
            s.pods = 0;
        }
    }
    drop_slot_if_empty(i);
    return true;
}

// A block with neither its route nor a pod route leaves the table. Backward
// shift: a slot later in the run moves into the hole when the hole lies on its
// way from its home slot to where it is, so every slot stays reachable from
// its home without tombstones.
void Front6::drop_slot_if_empty(uint32_t i) {
    if (empty(slots_[i]) || slots_[i].block_nh != kMiss || slots_[i].pods != 0) {
        return;
    }
    used_--;
    for (uint32_t j = (i + 1) & mask_; !empty(slots_[j]); j = (j + 1) & mask_) {
        const Slot &e = slots_[j];
        const uint32_t home = hash(e.hi, e.lo) & mask_;
        if (((i - home) & mask_) < ((j - home) & mask_)) {
            slots_[i] = e;
            i = j;
        }
    }
    slots_[i] = Slot{};
}

}  // namespace fwd::dp
