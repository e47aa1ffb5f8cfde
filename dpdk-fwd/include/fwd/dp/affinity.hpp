// sessionAffinity: ClientIP, the datapath side: the backend a client address
// last got on a service port, so that its next new connections go to the
// same one while it keeps coming back (Kubernetes'
// sessionAffinityConfig.clientIP.timeoutSeconds, default 10800; kube-proxy's
// "recent" match on the source address). The NAT stage asks it for a NEW
// flow to a frontend flagged kFeAffinity (service_table.hpp): lookup(); on a
// hit whose backend the frontend still has, that backend; otherwise pick()
// and remember(). It neither picks nor translates.
//
// Key: (family, protocol, frontend address and port, client address): one
// entry per client and frontend, so the ClusterIP and a NodePort of one
// service port are two entries. Value: the backend's address and port.
//
// Ownership: ONE SHARED TABLE, as the connection table (conntrack.hpp): a
// client's connections arrive on any worker.
//   lookup            any worker; takes no lock: copies an entry under its
//                     sequence number (waiting only while that entry is
//                     mid-write: a few stores), writes it only to refresh a
//                     hit, at most once a millisecond
//   remember, forget  any worker or the control thread: the writer lock,
//                     held while the key's two buckets are searched and one
//                     entry written
//   age               one caller at a time (a worker's housekeeping or the
//                     control thread); a second concurrent caller returns 0
//   count, flush      control thread (flush takes the lock a chunk at a time)
// The worker calls never allocate, log, make a syscall or throw; the
// constructor (control thread) allocates everything and may throw.
//
// Consistency. Each entry has a sequence number, odd while someone writes
// the entry. A writer (under the writer lock) and a reader refreshing a hit
// (without it) both make it odd with a compare-and-swap from the even value
// they saw, so they never write an entry at once; a reader copies the entry
// between two reads of an equal, even number, so it never sees a torn one.
// Concurrent remember()s of one key are serialised by the writer lock: the
// second finds the first's entry and replaces it, one entry per key. (Two
// workers that both missed a new client at once may have picked two
// backends: the later remember() stands, the first connection keeps its own.)
//
// No grace periods (the workers' QSBR is not needed): entries never move
// and are never unmapped. A freed entry is rewritten in place with an empty
// key, a reused one with another key; a reader that raced either compares
// the key it copied and sees a miss, never another client's backend.
//
// Layout: buckets of 8 slots, each key in one of two buckets (the less
// loaded at insert, no displacement), 2 slots an entry of capacity; a
// bucket's 8 signatures share 32 bytes, so a lookup reads two of those and
// the one entry whose signature matches.
//
// Time: the caller's TSC (tests inject it), 64 bits, never wrapping. An
// entry lives while now - last_use < timeout. lookup() takes the frontend's
// current timeout and, on a hit, stores it with the refreshed last use;
// ageing frees an entry idle past its stored timeout. Timeouts are clamped
// to 1 .. kMaxAffinityTimeout seconds (Kubernetes' own bounds).
#pragma once

#include <rte_cycles.h>
#include <rte_spinlock.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fwd/dp/counter.hpp"
#include "fwd/dp/service_table.hpp"
#include "fwd/net/endian.hpp"

namespace fwd::dp::svc {

// --- results: one list, counted per caller (AffinityCounters) ---
#define FWD_AFFINITY_RESULTS(X)                                                     \
    X(kHit, "hit", "the client's backend found, its last use refreshed")            \
    X(kMiss, "miss", "no entry for the client and frontend")                        \
    X(kExpired, "expired", "an entry idle past the timeout: a miss")                \
    X(kStored, "stored", "a new entry remembered")                                  \
    X(kReplaced, "replaced", "an entry remembered again (same or another backend)") \
    X(kTableFull, "table_full", "no free entry: the flow goes without affinity")    \
    X(kIndexFull, "index_full", "both buckets of the key full: the flow goes without")

enum class AffinityResult : uint8_t {
#define FWD_AFFINITY_ENUM(name, str, desc) name,
    FWD_AFFINITY_RESULTS(FWD_AFFINITY_ENUM)
#undef FWD_AFFINITY_ENUM
        kCount
};
inline constexpr size_t kAffinityResultCount = static_cast<size_t>(AffinityResult::kCount);

struct AffinityResultInfo {
    std::string_view name;
    std::string_view description;
};
inline constexpr AffinityResultInfo kAffinityResultInfo[kAffinityResultCount] = {
#define FWD_AFFINITY_INFO(name, str, desc) {str, desc},
    FWD_AFFINITY_RESULTS(FWD_AFFINITY_INFO)
#undef FWD_AFFINITY_INFO
};
constexpr std::string_view affinity_result_name(AffinityResult r) {
    return kAffinityResultInfo[static_cast<size_t>(r)].name;
}

// Per caller (a worker's slot): written by its owner only, summed by readers.
struct alignas(64) AffinityCounters {
    std::array<Counter, kAffinityResultCount> by_result;
    void count(AffinityResult r) { by_result[static_cast<size_t>(r)].inc(); }
    uint64_t get(AffinityResult r) const { return by_result[static_cast<size_t>(r)].get(); }
};

// 40 bytes, compared and hashed as bytes: every unused byte is zero (build
// keys with v4(), v6() or of()).
struct AffinityKey {
    std::array<uint8_t, 16> client{};    // IPv4: the first 4 bytes, network order
    std::array<uint8_t, 16> frontend{};  // the service address, likewise
    net::Be16 port;                      // the frontend's port
    uint8_t proto = 0;                   // IPPROTO_TCP, _UDP, _SCTP
    uint8_t family = 0;                  // 4 or 6; 0 only in a free entry
    uint32_t pad = 0;

    static AffinityKey v4(uint32_t client_be, uint32_t frontend_be, uint8_t proto, net::Be16 port);
    static AffinityKey v6(const uint8_t *client, const uint8_t *frontend, uint8_t proto,
                          net::Be16 port);
    // The key of a client (4 or 16 bytes by f.v6, network order) on frontend f.
    static AffinityKey of(const Frontend &f, const uint8_t *client);
    bool operator==(const AffinityKey &) const = default;
};
static_assert(sizeof(AffinityKey) == 40);

struct AffinityTarget {
    std::array<uint8_t, 16> addr{};  // the backend's; IPv4: the first 4 bytes, the rest zero
    net::Be16 port;

    static AffinityTarget of(const Backend &b, bool v6);
    bool operator==(const AffinityTarget &) const = default;
};

inline constexpr uint32_t kMaxAffinityTimeout = 86400;      // seconds
inline constexpr uint32_t kMaxAffinityCapacity = 1u << 24;  // entries

class AffinityTable {
  public:
    // Allocates everything (rte_zmalloc). capacity: entries, 1 ..
    // kMaxAffinityCapacity. Throws std::invalid_argument for a capacity out of
    // range or a zero tsc_hz, std::runtime_error when memory runs out.
    explicit AffinityTable(uint32_t capacity, uint64_t tsc_hz = rte_get_tsc_hz(),
                           uint32_t hash_seed = 0x61666601);
    ~AffinityTable();
    AffinityTable(const AffinityTable &) = delete;
    AffinityTable &operator=(const AffinityTable &) = delete;

    // --- workers ---

    // The client's backend when its entry was used less than timeout_s ago;
    // on a hit its last use becomes now and its timeout timeout_s. kHit,
    // kMiss or kExpired.
    bool lookup(const AffinityKey &key, uint64_t now, uint32_t timeout_s, AffinityTarget &out,
                AffinityCounters &c) noexcept;
    // Remembers target for key (a new entry, or the key's own replaced),
    // used now, living timeout_s past its last use. kStored or kReplaced;
    // false with kTableFull or kIndexFull (the caller goes without affinity).
    // When full, an expired entry in the key's buckets makes way.
    bool remember(const AffinityKey &key, const AffinityTarget &target, uint64_t now,
                  uint32_t timeout_s, AffinityCounters &c) noexcept;
    // Frees key's entry (its backend is gone). Whether there was one.
    bool forget(const AffinityKey &key) noexcept;

    // --- ageing (one caller at a time) ---
    // Looks at up to max_slots slots from where the last call stopped (the
    // table has slots() of them) and frees the entries idle past their
    // stored timeout. Returns the number freed.
    uint32_t age(uint64_t now, uint32_t max_slots) noexcept;

    // --- control thread ---
    // Entries held, expired ones not yet aged included.
    size_t count() const { return in_use_.load(std::memory_order_relaxed); }
    // Frees every entry; returns how many.
    size_t flush();
    uint32_t capacity() const { return capacity_; }
    uint32_t slots() const { return n_buckets_ * kWays; }

  private:
    static constexpr uint32_t kWays = 8;
    static constexpr uint32_t kKeyWords = sizeof(AffinityKey) / 8;
    // Words of an entry after the key: the backend address (2), its port
    // with the timeout (port in bits 0-15, seconds in 32-63), the last use.
    static constexpr uint32_t kAddrWord = kKeyWords, kPortWord = kKeyWords + 2,
                              kUseWord = kKeyWords + 3, kWords = kKeyWords + 4;
    using Words = std::array<uint64_t, kWords>;  // an entry's copy; all zero: empty
    // seq: even when stable, odd while written (see Consistency above).
    struct Entry {
        std::atomic<uint64_t> seq;
        std::array<std::atomic<uint64_t>, kWords> w;
    };
    struct Hashed {
        uint32_t b1, b2, sig;
    };
    static constexpr uint32_t kNoSlot = UINT32_MAX;

    Hashed hash(const AffinityKey &k) const noexcept;
    static Words pack(const AffinityKey &k, const AffinityTarget &t, uint64_t now,
                      uint32_t timeout_s) noexcept;
    static bool same_key(const Words &w, const AffinityKey &k) noexcept;
    // The sequence protocol: the entry's number once even; a whole copy
    // and its number; a write of the entry as it was at number s (false
    // when someone wrote it since).
    static uint64_t stable_seq(const Entry &e) noexcept;
    static uint64_t read(const Entry &e, Words &w) noexcept;
    static bool try_write(Entry &e, uint64_t s, const Words &w) noexcept;
    bool idle_past(uint64_t last_use, uint64_t timeout_s, uint64_t now) const noexcept;
    bool expired(const Words &w, uint64_t now) const noexcept;  // by its stored timeout

    // With the writer lock held:
    uint32_t find_locked(const AffinityKey &k, const Hashed &h) const noexcept;  // or kNoSlot
    uint32_t free_slot_locked(const Hashed &h) const noexcept;                   // or kNoSlot
    AffinityResult place_locked(const Hashed &h, const Words &w, uint64_t now) noexcept;
    void write_locked(uint32_t slot, const Words &w) noexcept;  // waits out a refresh
    void free_locked(uint32_t slot) noexcept;                   // the signature and the count

    const uint32_t capacity_;
    const uint64_t tsc_hz_;
    const uint64_t refresh_every_;  // TSC cycles: a hit refreshes at most this often
    const uint32_t seed_;
    uint32_t n_buckets_ = 0;
    // [writer] a slot's signature, 0 empty; [readers] acquire, then the entry.
    std::atomic<uint32_t> *sigs_ = nullptr;  // n_buckets_ * kWays
    // By slot. [writer, a reader refreshing a hit] write under the sequence
    // number; [any] copies (read()).
    Entry *entries_ = nullptr;

    // The writer lock: slot choice, signatures, entry writes, in_use_.
    rte_spinlock_t wlock_;
    std::atomic<uint32_t> in_use_{0};  // [writer] [any] relaxed

    // [ager] where ageing goes on; the ager's try-lock.
    uint32_t age_cursor_ = 0;
    std::atomic<bool> ageing_{false};
};

}  // namespace fwd::dp::svc
