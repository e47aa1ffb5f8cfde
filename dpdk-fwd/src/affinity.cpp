// sessionAffinity ClientIP: the table of clients' backends (affinity.hpp).
#include "fwd/dp/affinity.hpp"

#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_pause.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "fwd/dp/flow_hash.hpp"

namespace fwd::dp::svc {

// --- keys ---

AffinityKey AffinityKey::v4(uint32_t client_be, uint32_t frontend_be, uint8_t proto,
                            net::Be16 port) {
    AffinityKey k;
    std::memcpy(k.client.data(), &client_be, 4);
    std::memcpy(k.frontend.data(), &frontend_be, 4);
    k.port = port;
    k.proto = proto;
    k.family = 4;
    return k;
}

AffinityKey AffinityKey::v6(const uint8_t *client, const uint8_t *frontend, uint8_t proto,
                            net::Be16 port) {
    AffinityKey k;
    std::memcpy(k.client.data(), client, 16);
    std::memcpy(k.frontend.data(), frontend, 16);
    k.port = port;
    k.proto = proto;
    k.family = 6;
    return k;
}

AffinityKey AffinityKey::of(const Frontend &f, const uint8_t *client) {
    const net::Be16 port = net::Be16::from_raw(f.port_be);
    if (f.v6) {
        return v6(client, f.addr.data(), f.proto, port);
    }
    uint32_t c, a;
    std::memcpy(&c, client, 4);
    std::memcpy(&a, f.addr.data(), 4);
    return v4(c, a, f.proto, port);
}

AffinityTarget AffinityTarget::of(const Backend &b, bool v6) {
    AffinityTarget t;
    std::memcpy(t.addr.data(), b.addr.data(), v6 ? 16 : 4);
    t.port = net::Be16::from_raw(b.port_be);
    return t;
}

// --- the table ---

namespace {

uint32_t clamp_timeout(uint32_t s) {
    return std::clamp<uint32_t>(s, 1, kMaxAffinityTimeout);
}

template <typename T>
T *alloc_array(const char *name, size_t n) {
    void *p = rte_zmalloc(name, n * sizeof(T), RTE_CACHE_LINE_SIZE);
    if (p == nullptr) {
        throw std::runtime_error(std::string("affinity: no memory for ") + name);
    }
    T *a = static_cast<T *>(p);
    std::uninitialized_value_construct_n(a, n);
    return a;
}

}  // namespace

AffinityTable::AffinityTable(uint32_t capacity, uint64_t tsc_hz, uint32_t hash_seed)
    : capacity_(capacity),
      tsc_hz_(tsc_hz),
      refresh_every_(std::max<uint64_t>(tsc_hz / 1000, 1)),
      seed_(hash_seed) {
    if (capacity == 0 || capacity > kMaxAffinityCapacity) {
        throw std::invalid_argument("affinity: capacity must be 1.." +
                                    std::to_string(kMaxAffinityCapacity));
    }
    if (tsc_hz == 0) {
        throw std::invalid_argument("affinity: needs the TSC rate");
    }
    // Two slots an entry, whole buckets, at least two buckets (a key's two
    // buckets differ).
    n_buckets_ = std::max<uint32_t>((2 * capacity + kWays - 1) / kWays, 2);
    const size_t n = size_t{n_buckets_} * kWays;
    try {
        sigs_ = alloc_array<std::atomic<uint32_t>>("affinity_sigs", n);
        entries_ = alloc_array<Entry>("affinity_entries", n);
    } catch (...) {
        rte_free(sigs_);
        throw;
    }
    rte_spinlock_init(&wlock_);
}

AffinityTable::~AffinityTable() {
    rte_free(sigs_);
    rte_free(entries_);
}

AffinityTable::Hashed AffinityTable::hash(const AffinityKey &k) const noexcept {
    const uint32_t h = rte_hash_crc(&k, sizeof(k), seed_);
    const uint32_t sig = flow_mix(h) | 1;  // never 0: 0 is an empty slot
    // Range reduction by multiplication; the second bucket 1 .. n-1 buckets
    // after the first, from other bits, so never the first.
    const uint32_t n = n_buckets_;
    const auto b1 = static_cast<uint32_t>((uint64_t{h} * n) >> 32);
    const auto step = static_cast<uint32_t>((uint64_t{sig} * (n - 1)) >> 32) + 1;
    return {b1, b1 + step >= n ? b1 + step - n : b1 + step, sig};
}

// --- entries: the sequence protocol (affinity.hpp, Consistency) ---

uint64_t AffinityTable::stable_seq(const Entry &e) noexcept {
    for (;;) {
        const uint64_t s = e.seq.load(std::memory_order_acquire);
        if ((s & 1) == 0) {
            return s;
        }
        rte_pause();  // a writer or a refresh: a few stores
    }
}

uint64_t AffinityTable::read(const Entry &e, Words &w) noexcept {
    for (;;) {
        const uint64_t s = stable_seq(e);
        for (uint32_t i = 0; i < kWords; i++) {
            w[i] = e.w[i].load(std::memory_order_relaxed);
        }
        // The copy is ordered before the second read of the number: if it
        // took any word of a later write, that write's odd number shows.
        std::atomic_thread_fence(std::memory_order_acquire);
        if (e.seq.load(std::memory_order_relaxed) == s) {
            return s;
        }
    }
}

bool AffinityTable::try_write(Entry &e, uint64_t s, const Words &w) noexcept {
    if (!e.seq.compare_exchange_strong(s, s + 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return false;
    }
    // The odd number is ordered before the words: a reader that copies one
    // of them sees it (the pair of the fence in read()).
    std::atomic_thread_fence(std::memory_order_release);
    for (uint32_t i = 0; i < kWords; i++) {
        e.w[i].store(w[i], std::memory_order_relaxed);
    }
    e.seq.store(s + 2, std::memory_order_release);
    return true;
}

void AffinityTable::write_locked(uint32_t slot, const Words &w) noexcept {
    Entry &e = entries_[slot];
    // Only a refreshing reader competes with the writer lock's holder.
    while (!try_write(e, stable_seq(e), w)) {
    }
}

AffinityTable::Words AffinityTable::pack(const AffinityKey &k, const AffinityTarget &t,
                                         uint64_t now, uint32_t timeout_s) noexcept {
    Words w;
    std::memcpy(w.data(), &k, sizeof(k));
    std::memcpy(&w[kAddrWord], t.addr.data(), 16);
    w[kPortWord] = t.port.raw() | (uint64_t{timeout_s} << 32);
    w[kUseWord] = now;
    return w;
}

bool AffinityTable::same_key(const Words &w, const AffinityKey &k) noexcept {
    return std::memcmp(w.data(), &k, sizeof(k)) == 0;
}

bool AffinityTable::idle_past(uint64_t last_use, uint64_t timeout_s, uint64_t now) const noexcept {
    return now > last_use && now - last_use >= timeout_s * tsc_hz_;
}

bool AffinityTable::expired(const Words &w, uint64_t now) const noexcept {
    return idle_past(w[kUseWord], w[kPortWord] >> 32, now);
}

uint32_t AffinityTable::find_locked(const AffinityKey &k, const Hashed &h) const noexcept {
    for (const uint32_t b : {h.b1, h.b2}) {
        for (uint32_t i = b * kWays; i < (b + 1) * kWays; i++) {
            if (sigs_[i].load(std::memory_order_relaxed) != h.sig) {
                continue;
            }
            Words w;
            read(entries_[i], w);
            if (same_key(w, k)) {
                return i;
            }
        }
    }
    return kNoSlot;
}

uint32_t AffinityTable::free_slot_locked(const Hashed &h) const noexcept {
    uint32_t best = kNoSlot, best_free = 0;
    for (const uint32_t b : {h.b1, h.b2}) {
        uint32_t first = kNoSlot, n = 0;
        for (uint32_t i = b * kWays; i < (b + 1) * kWays; i++) {
            if (sigs_[i].load(std::memory_order_relaxed) == 0) {
                first = n++ == 0 ? i : first;
            }
        }
        if (n > best_free) {  // the less loaded bucket; the first on a tie
            best = first;
            best_free = n;
        }
    }
    return best;
}

void AffinityTable::free_locked(uint32_t slot) noexcept {
    sigs_[slot].store(0, std::memory_order_relaxed);
    in_use_.store(in_use_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

// --- workers ---

bool AffinityTable::lookup(const AffinityKey &key, uint64_t now, uint32_t timeout_s,
                           AffinityTarget &out, AffinityCounters &c) noexcept {
    const Hashed h = hash(key);
    timeout_s = clamp_timeout(timeout_s);
    for (const uint32_t b : {h.b1, h.b2}) {
        for (uint32_t i = b * kWays; i < (b + 1) * kWays; i++) {
            // Acquire: the entry was written before its signature (release).
            if (sigs_[i].load(std::memory_order_acquire) != h.sig) {
                continue;
            }
            Entry &e = entries_[i];
            Words w;
            const uint64_t s = read(e, w);
            if (!same_key(w, key)) {
                continue;  // another key, or freed or reused meanwhile
            }
            if (idle_past(w[kUseWord], timeout_s, now)) {
                c.count(AffinityResult::kExpired);
                return false;
            }
            std::memcpy(out.addr.data(), &w[kAddrWord], 16);
            out.port = net::Be16::from_raw(static_cast<uint16_t>(w[kPortWord]));
            // Refresh at most once a millisecond, and only the entry as read:
            // lost to a concurrent writer or refresh, theirs stands.
            const bool same_timeout = (w[kPortWord] >> 32) == timeout_s;
            if (!same_timeout || (now > w[kUseWord] && now - w[kUseWord] >= refresh_every_)) {
                w[kPortWord] = (w[kPortWord] & 0xffff) | (uint64_t{timeout_s} << 32);
                w[kUseWord] = std::max(w[kUseWord], now);
                try_write(e, s, w);
            }
            c.count(AffinityResult::kHit);
            return true;
        }
    }
    c.count(AffinityResult::kMiss);
    return false;
}

bool AffinityTable::remember(const AffinityKey &key, const AffinityTarget &target, uint64_t now,
                             uint32_t timeout_s, AffinityCounters &c) noexcept {
    const Hashed h = hash(key);
    const Words w = pack(key, target, now, clamp_timeout(timeout_s));
    AffinityResult r = AffinityResult::kReplaced;
    rte_spinlock_lock(&wlock_);
    if (const uint32_t found = find_locked(key, h); found != kNoSlot) {
        write_locked(found, w);
    } else {
        r = place_locked(h, w, now);
    }
    rte_spinlock_unlock(&wlock_);
    c.count(r);
    return r == AffinityResult::kStored || r == AffinityResult::kReplaced;
}

AffinityResult AffinityTable::place_locked(const Hashed &h, const Words &w, uint64_t now) noexcept {
    const uint32_t n = in_use_.load(std::memory_order_relaxed);
    const uint32_t slot = n < capacity_ ? free_slot_locked(h) : kNoSlot;
    if (slot != kNoSlot) {
        write_locked(slot, w);
        sigs_[slot].store(h.sig, std::memory_order_release);
        in_use_.store(n + 1, std::memory_order_relaxed);
        return AffinityResult::kStored;
    }
    // Full: an entry of the key's buckets idle past its timeout makes way
    // (only as it was read: a refresh meanwhile keeps it).
    for (const uint32_t b : {h.b1, h.b2}) {
        for (uint32_t i = b * kWays; i < (b + 1) * kWays; i++) {
            if (sigs_[i].load(std::memory_order_relaxed) == 0) {
                continue;
            }
            Words old;
            const uint64_t s = read(entries_[i], old);
            if (expired(old, now) && try_write(entries_[i], s, w)) {
                sigs_[i].store(h.sig, std::memory_order_release);
                return AffinityResult::kStored;
            }
        }
    }
    return n < capacity_ ? AffinityResult::kIndexFull : AffinityResult::kTableFull;
}

bool AffinityTable::forget(const AffinityKey &key) noexcept {
    const Hashed h = hash(key);
    rte_spinlock_lock(&wlock_);
    const uint32_t slot = find_locked(key, h);
    if (slot != kNoSlot) {
        free_locked(slot);
        write_locked(slot, Words{});
    }
    rte_spinlock_unlock(&wlock_);
    return slot != kNoSlot;
}

// --- ageing ---

uint32_t AffinityTable::age(uint64_t now, uint32_t max_slots) noexcept {
    if (ageing_.exchange(true, std::memory_order_acquire)) {
        return 0;
    }
    const uint32_t n_slots = slots();
    uint32_t freed = 0;
    for (uint32_t left = std::min(max_slots, n_slots); left > 0; left--) {
        const uint32_t i = age_cursor_;
        age_cursor_ = i + 1 < n_slots ? i + 1 : 0;
        if (sigs_[i].load(std::memory_order_relaxed) == 0) {
            continue;
        }
        Words w;
        const uint64_t s = read(entries_[i], w);
        if (!expired(w, now)) {
            continue;
        }
        // Freed only as it was read and if still in use (an empty entry
        // reads as expired): a refresh, a remember() or a forget() since
        // then moved its number on.
        rte_spinlock_lock(&wlock_);
        if (sigs_[i].load(std::memory_order_relaxed) != 0 && try_write(entries_[i], s, Words{})) {
            free_locked(i);
            freed++;
        }
        rte_spinlock_unlock(&wlock_);
    }
    ageing_.store(false, std::memory_order_release);
    return freed;
}

// --- control thread ---

size_t AffinityTable::flush() {
    constexpr uint32_t kChunk = 256;
    const uint32_t n_slots = slots();
    size_t n = 0;
    for (uint32_t c = 0; c < n_slots; c += kChunk) {
        rte_spinlock_lock(&wlock_);
        for (uint32_t i = c; i < std::min(n_slots, c + kChunk); i++) {
            if (sigs_[i].load(std::memory_order_relaxed) != 0) {
                free_locked(i);
                write_locked(i, Words{});
                n++;
            }
        }
        rte_spinlock_unlock(&wlock_);
    }
    return n;
}

}  // namespace fwd::dp::svc
