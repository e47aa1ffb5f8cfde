// Front6: the IPv6 routes of Calico's shape, exact, in front of the rte_fib6 trie.
//
// A Calico node's IPv6 table is mostly /128 pod routes (its own pods, borrowed
// addresses) and /122 blocks (one per block of every other node), plus a few
// shorter prefixes (the default route, node subnets, BGP-learned routes).
// Front6 keys both by the /122 they fall in: one open-addressing hash of
// blocks, each slot holding the block route's next hop (if there is one) and,
// when /128 routes live in the block, the index of a 64-entry array of their
// next hops (indexed by the address's last 6 bits). A destination costs one
// hash probe of a 32-byte slot and one read of a pod array; the answer is
// picked without a branch (pod, else block, else the trie). With AVX-512
// (the tree is built -march=native) eight destinations go at once: one
// multiply-fold hash, three gathers of their slots, one of their pod
// entries; lanes whose home slot holds another block (a collision) gather
// the next slots, up to three, and a longer probe run is walked alone.
// Without it, the same steps one destination at a time.
//
// An empty slot is an all-zero key: the zero /122 (::/122) is never taken
// into the front (set refuses it, Tables leaves it to the trie), so an empty
// slot can not match, and its zero next hop and pod array 0 read as a miss.
//
// Longest match stays exact:
//  - a /128 hit is the longest match there can be;
//  - a /122 hit is the longest match only when no route of length 123..127
//    exists (one inside the block would be longer): Tables counts those
//    (mid routes) and block hits are not taken while there is any;
//  - everything else, and every miss, goes to the trie, which holds every
//    route (the front is a copy of some of them, never the only place).
//
// Writers and readers: Tables keeps one Front6 beside each rte_fib6 copy and
// changes only the copy no worker reads (tables.hpp), so a Front6 has one
// writer and no concurrent reader while it changes: it may grow (rehash,
// reallocate its pod arrays) in place. Deletion shifts later slots of the
// probe run back (no tombstones), so lookups do not slow down with churn.
//
// Measured in perf/lookup_bench against the trie on the same routes.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace fwd::dp {

class Front6 {
  public:
    static constexpr uint32_t kMiss = 0;  // Tables' kNhInvalid

    // Memory from the socket's hugepages; starts small and grows with its
    // routes. Throws std::runtime_error when even the first slots are not there.
    explicit Front6(int socket);
    ~Front6();
    Front6(const Front6 &) = delete;
    Front6 &operator=(const Front6 &) = delete;

    // Lengths the front keeps.
    static bool holds(uint8_t len) { return len == 128 || len == 122; }

    // --- the one writer (on a copy no reader uses) ---
    // Adds or replaces; ip's bits past len are ignored. False for a length
    // the front does not hold, for nh kMiss, for a route in ::/122, or when
    // growing found no memory (the route is then not in the front: Tables
    // counts a /128 so left out as a mid route).
    bool set(const uint8_t *ip, uint8_t len, uint32_t nh);
    // False when the route is not there.
    bool erase(const uint8_t *ip, uint8_t len);
    uint32_t size(uint8_t len) const { return len == 128 ? n128_ : len == 122 ? n122_ : 0; }
    size_t memory_bytes() const;

    // --- readers ---
    // One route, exact (prefix and length), kMiss when it is not there.
    uint32_t find(const uint8_t *ip, uint8_t len) const;
    // The longest of the front's matches for each of n (<= kMaxBulk)
    // destinations: hop[i] gets the /128's next hop, else (when blocks) the
    // /122's, else kMiss. blocks: whether a /122 hit may be taken as the
    // longest match (no route of length 123..127 exists; Tables knows).
    static constexpr uint16_t kMaxBulk = 64;
    void lookup_bulk(const uint8_t (*ip)[16], uint64_t *hop, uint16_t n, bool blocks) const;

  private:
    struct alignas(32) Slot {
        uint64_t hi;
        uint64_t lo;        // bits 122..127 zero
        uint32_t block_nh;  // the /122 route's next hop, kMiss for none
        uint32_t pods;      // pod array index, 0 for none (array 0 is all kMiss)
        uint64_t pad;
    };
    static_assert(sizeof(Slot) == 32);
    static constexpr uint32_t kPodsPerBlock = 64;
    using PodArray = uint32_t[kPodsPerBlock];

    // The last 6 bits of the address (bits 122..127) cleared, in the byte
    // order of a plain 8-byte load of bytes 8..15.
    static uint64_t mask122() {
        static constexpr uint8_t m[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0};
        uint64_t v;
        std::memcpy(&v, m, 8);
        return v;
    }
    // Multiply-fold: the shifts bring every bit of the key under the bits the
    // multiply carries into the top half. The AVX-512 lookup computes the same.
    static constexpr uint64_t kMul = 0x9e3779b97f4a7c15ull;
    static uint32_t hash(uint64_t hi, uint64_t lo) {
        uint64_t x = hi ^ (hi >> 29) ^ lo ^ (lo >> 31);
        return static_cast<uint32_t>((x * kMul) >> 32);
    }
    static bool empty(const Slot &s) { return (s.hi | s.lo) == 0; }
    static void key(const uint8_t *ip, uint64_t &hi, uint64_t &lo) {
        std::memcpy(&hi, ip, 8);
        std::memcpy(&lo, ip + 8, 8);
        lo &= mask122();
    }
    // The slot holding the block, or the empty slot ending its probe run.
    static uint32_t probe(const Slot *slots, uint32_t mask, uint64_t hi, uint64_t lo, uint32_t h) {
        uint32_t i = h & mask;
        while (!empty(slots[i]) && (slots[i].hi != hi || slots[i].lo != lo)) {
            i = (i + 1) & mask;
        }
        return i;
    }
    uint32_t lookup_one(const uint8_t *ip, uint32_t block_mask) const;
    Slot *slot_for(const uint8_t *ip);  // finds or adds the block's slot; nullptr: no memory
    bool grow_slots();
    uint32_t pod_array();  // a free, zeroed pod array; 0: no memory
    void drop_slot_if_empty(uint32_t i);

    int socket_;
    Slot *slots_ = nullptr;
    uint32_t mask_ = 0;  // slots - 1, a power of two
    uint32_t used_ = 0;  // slots in use
    PodArray *pods_ = nullptr;
    uint32_t pod_cap_ = 0;            // arrays allocated, array 0 included
    std::vector<uint32_t> pod_n_;     // routes in each array
    std::vector<uint32_t> pod_free_;  // arrays to reuse
    uint32_t n128_ = 0;
    uint32_t n122_ = 0;
};

inline uint32_t Front6::find(const uint8_t *ip, uint8_t len) const {
    if (!holds(len)) {
        return kMiss;
    }
    uint64_t hi, lo;
    key(ip, hi, lo);
    const Slot &s = slots_[probe(slots_, mask_, hi, lo, hash(hi, lo))];
    return len == 122 ? s.block_nh : pods_[s.pods][ip[15] % kPodsPerBlock];
}

inline void Front6::lookup_bulk(const uint8_t (*ip)[16], uint64_t *hop, uint16_t n,
                                bool blocks) const {
    const uint32_t block_mask = blocks ? UINT32_MAX : 0;
    uint16_t i = 0;
#ifdef __AVX512F__
    // the masked forms throughout: GCC 12 warns that the plain ones' undefined
    // source operand may be used uninitialized
    constexpr __mmask8 kAll = 0xff;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i vm122 = _mm512_set1_epi64(static_cast<int64_t>(mask122()));
    const __m512i vmask = _mm512_set1_epi64(mask_);
    const __m512i vmul = _mm512_set1_epi64(static_cast<int64_t>(kMul));
    const __m512i vlow32 = _mm512_set1_epi64(UINT32_MAX);
    const __m512i vblock = _mm512_set1_epi64(block_mask);
    const __m512i v63 = _mm512_set1_epi64(kPodsPerBlock - 1);
    const __m512i v32 = _mm512_set1_epi64(sizeof(Slot));
    const __m512i vslots = _mm512_set1_epi64(static_cast<int64_t>(mask_) * sizeof(Slot));
    constexpr int kVectorSteps = 3;
    // even / odd quadwords of two registers: the addresses' first and last 8 bytes
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    for (; i + 8 <= n; i += 8) {
        const __m512i a = _mm512_loadu_si512(ip[i]);
        const __m512i b = _mm512_loadu_si512(ip[i + 4]);
        const __m512i hi = _mm512_permutex2var_epi64(a, even, b);
        const __m512i lo_full = _mm512_permutex2var_epi64(a, odd, b);
        const __m512i lo = _mm512_and_si512(lo_full, vm122);
        __m512i x = _mm512_xor_si512(hi, _mm512_maskz_srli_epi64(kAll, hi, 29));
        x = _mm512_xor_si512(x, _mm512_xor_si512(lo, _mm512_maskz_srli_epi64(kAll, lo, 31)));
        const __m512i h = _mm512_maskz_srli_epi64(kAll, _mm512_mullo_epi64(x, vmul), 32);
        __m512i off = _mm512_maskz_slli_epi64(kAll, _mm512_and_si512(h, vmask), 5);  // * 32
        const auto *base = reinterpret_cast<const long long *>(slots_);
        __m512i shi = _mm512_mask_i64gather_epi64(zero, kAll, off, base, 1);
        __m512i slo = _mm512_mask_i64gather_epi64(zero, kAll, off, base + 1, 1);
        __mmask8 hit = _mm512_cmpeq_epi64_mask(shi, hi) & _mm512_cmpeq_epi64_mask(slo, lo);
        // A lane whose slot holds another block walks on to the next slot;
        // an empty slot ends its walk (a miss that reads as one).
        __mmask8 walk = ~hit & ~_mm512_cmpeq_epi64_mask(_mm512_or_si512(shi, slo), zero);
        for (int step = 0; walk != 0 && step < kVectorSteps; step++) {
            off = _mm512_mask_and_epi64(off, walk, _mm512_add_epi64(off, v32), vslots);
            shi = _mm512_mask_i64gather_epi64(shi, walk, off, base, 1);
            slo = _mm512_mask_i64gather_epi64(slo, walk, off, base + 1, 1);
            const __mmask8 now =
                walk & _mm512_cmpeq_epi64_mask(shi, hi) & _mm512_cmpeq_epi64_mask(slo, lo);
            hit |= now;
            walk &= ~now & ~_mm512_cmpeq_epi64_mask(_mm512_or_si512(shi, slo), zero);
        }
        const __m512i sval =
            _mm512_mask_i64gather_epi64(zero, kAll, off, base + 2, 1);  // block_nh | pods << 32
        // the last 6 bits of each address, an index into its block's pod array
        const __m512i pod_off = _mm512_add_epi64(
            _mm512_maskz_slli_epi64(kAll, _mm512_maskz_srli_epi64(kAll, sval, 32), 6),
            _mm512_and_si512(_mm512_maskz_srli_epi64(kAll, lo_full, 56), v63));
        const __m256i pod32 =
            _mm512_mask_i64gather_epi32(_mm256_setzero_si256(), kAll, pod_off, pods_, 4);
        const __m512i pod = _mm512_maskz_cvtepu32_epi64(kAll, pod32);
        const __m512i block = _mm512_and_si512(_mm512_and_si512(sval, vlow32), vblock);
        const __mmask8 is_pod = _mm512_test_epi64_mask(pod, pod);
        __m512i res = _mm512_mask_blend_epi64(is_pod, block, pod);
        res = _mm512_maskz_mov_epi64(hit, res);
        _mm512_storeu_si512(hop + i, res);
        // Lanes still walking after kVectorSteps slots (a long probe run): alone.
        for (unsigned rest = walk; rest != 0; rest &= rest - 1) {
            const unsigned k = i + static_cast<unsigned>(__builtin_ctz(rest));
            hop[k] = lookup_one(ip[k], block_mask);
        }
    }
#endif
    for (; i < n; i++) {
        hop[i] = lookup_one(ip[i], block_mask);
    }
}

inline uint32_t Front6::lookup_one(const uint8_t *ip, uint32_t block_mask) const {
    uint64_t hi, lo;
    key(ip, hi, lo);
    const Slot &s = slots_[probe(slots_, mask_, hi, lo, hash(hi, lo))];
    // An empty slot reads as no block and pod array 0 (all kMiss).
    const uint32_t pod = pods_[s.pods][ip[15] % kPodsPerBlock];
    return pod != kMiss ? pod : (s.block_nh & block_mask);
}

}  // namespace fwd::dp
