// Connection tracking, the datapath side (issue 15, part 1): a table of
// IPv4 and IPv6 flows that the policy and NAT stages call. It tracks; it
// neither drops nor translates: every call returns a Result, the caller maps
// the refusals to its drop reasons (ct_*) and does the NAT rewrite.
//
// A flow has two tuples, as Linux's tuplehash[2]: the original (as its first
// packet arrived) and the reply (as the answer will arrive). Both are keys in
// one index and lead to the same entry with their direction. Without NAT the
// reply is the inverted original; a NAT chooses another one (create() refuses
// a reply tuple that exists: kReplyExists, so SNAT tries the next port).
//   TCP, UDP, SCTP:   addresses + ports
//   ICMP / ICMPv6 echo: addresses + identifier + type (the original tuple has
//                     the request type, the reply tuple the reply type: a
//                     request and its reply are one flow, a request the other
//                     way with the same id is another)
//   anything else:    addresses + protocol
//
// Ownership: ONE SHARED TABLE, lock-free readers, writers serialised.
// Measured on this machine (2 cores at 2.1 GHz, shared with other builds:
// load average 1.5 during the run), TSC cycles per operation per thread,
// median of 5 runs (min-max); keys are FlowKey, two per flow, half IPv4 half
// IPv6; lookups of established flows at random; inserts of new flows into an
// empty table up to the count (that is, to 100% of its capacity). "2
// threads": per-worker = a table of half the flows each; shared = one table,
// both threads looking up any flow and inserting disjoint halves at once.
// "one at a time": a lookup or insert finishes before the next starts;
// "bursts": 32 keys in the phases the NAT stages use (Lookup below; inserts:
// prepare and probe the original, prepare the reply, prefetch_new, create).
//
//   ninja -C build perf/ct_bench && build/perf/ct_bench
//
//   | variant                     | thr | flows | lookup          | insert           |
//   |-----------------------------|----:|------:|-----------------|------------------|
//   | per-worker rte_hash         | 1   | 10k   | 83 (80-96)      | 252 (245-913)    |
//   | shared rte_hash LF+MW       | 1   | 10k   | 83 (81-98)      | 281 (260-972)    |
//   | ours, one at a time         | 1   | 10k   | 85 (82-105)     | 218 (202-225)    |
//   | ours, bursts                | 1   | 10k   | 79 (78-84)      | 212 (207-267)    |
//   | per-worker rte_hash         | 2   | 10k   | 90 (78-134)     | 319 (232-375)    |
//   | shared rte_hash LF+MW       | 2   | 10k   | 104 (83-116)    | 1892 (295-2053)  |
//   | ours, one at a time         | 2   | 10k   | 103 (83-110)    | 1719 (1577-1806) |
//   | ours, bursts                | 2   | 10k   | 97 (79-155)     | 1574 (1402-1772) |
//   | per-worker rte_hash         | 1   | 1M    | 221 (199-384)   | 420 (392-822)    |
//   | shared rte_hash LF+MW       | 1   | 1M    | 258 (221-385)   | 1009 (612-1084)  |
//   | ours, one at a time         | 1   | 1M    | 328 (218-354)   | 544 (463-584)    |
//   | ours, bursts                | 1   | 1M    | 95 (88-115)     | 278 (253-382)    |
//   | per-worker rte_hash         | 2   | 1M    | 366 (322-1200)  | 567 (373-783)    |
//   | shared rte_hash LF+MW       | 2   | 1M    | 373 (246-696)   | 2679 (2331-3040) |
//   | ours, one at a time         | 2   | 1M    | 363 (291-857)   | 1876 (1258-1936) |
//   | ours, bursts                | 2   | 1M    | 141 (117-289)   | 1529 (991-1976)  |
//
// Runs at load 3 to 5 had every number higher and wider, same order. Read:
// - Lookups: one at a time, a shared table costs about what a private one
//   does; at 1M flows each lookup waits for two cache misses (a bucket, then
//   the entry), 200-370 cycles. In bursts the misses of 32 keys overlap: 95
//   to 141 cycles at 1M, 3x less. This, not the table's sharing, is what the
//   datapath's cost was made of.
// - Inserts: two threads inserting into one table pay the writer lock and
//   the bouncing of its lines: 1500 to 1900 cycles a new flow against 320 to
//   570 in private tables, about 3-4x (bursts take the misses out of the
//   locked part, not the bouncing).
// - ConnTable's index never refused a key at 100% of its capacity (the
//   bench counts kIndexFull: 0 of 1M x 5 runs, both variants).
//
// Why shared, then:
// - The reply of a NATed flow does not come back where the original left.
//   SNAT: a pod's packet enters on the pod tap (queue picked by the kernel's
//   tap queue selection, not by us), its reply enters on the uplink (RSS on
//   the translated tuple). DNAT: a client's packet enters on the uplink, the
//   backend's reply on the pod tap. Per-worker tables would need a handoff
//   (a ring to the owning worker: the flow's packets would cross cores,
//   reordering against those that do not) or a port choice that steers the
//   reply home (choosing the SNAT port so RSS brings the reply to the worker
//   that owns the flow: possible on a NIC with a known Toeplitz key and
//   queue map; impossible on the tap PMD and af_packet, and it divides the
//   port range by the worker count). With one table the reply finds its flow
//   on whichever worker it arrives.
// - The shared table's price is paid once per flow (the insert premium,
//   about 2000-3000 cycles with two workers creating at once); a handoff
//   would be paid by every packet of the steered direction (a ring enqueue
//   and dequeue and the mbuf's lines moving cores: a few hundred cycles a
//   packet), and a flow of more than a few packets costs more that way.
//   A per-worker table stays the better choice only where a NIC steers
//   both directions home; the table's API (track / create / age) would not
//   change for it.
// - Lookups (every packet) stay lock-free: readers take no lock and write no
//   shared line but the flow's own timestamp. Only new flows take the writer
//   lock (one spin lock for the index, held for the insert of two keys);
//   TCP state changes take the flow's own lock (uncontended unless both
//   directions of one connection are on two cores at the same instant, as
//   Linux's per-conntrack lock).
// - Freed entries go back only after an RCU grace period (the workers' QSBR,
//   worker.hpp), so a reader never sees an entry reused under it.
//
// Layout. An entry array (capacity, fixed at construction) holds the flows;
// the index is an array of 8-slot buckets (one cache line each), each key in
// one of two buckets (the less loaded one at insert; no displacement, so a
// reader never misses a key that is being moved). Both buckets of a key are
// in one group of 64 (a 4 KiB page, aligned): a key's lookup touches one
// page (one TLB entry), and two choices among 64 buckets still spread the
// load (a page holds 512 slots for 256 keys on average). A slot is one
// 64-bit word: 32 bits of signature, 32 bits of (entry << 1 | direction) +
// 1; 0 is empty. Index slots are 4 per flow (2 keys at a 50% load): a key
// never finds both its buckets full in practice (the bench counts it:
// kIndexFull). Keys are hashed with CRC32c over their 8-byte words (3 for
// IPv4, 5 for IPv6), one 64-bit product giving the signature and the second
// bucket.
//
// Lookups in phases (Lookup): prepare() hashes a key and prefetches its
// first bucket, probe_first() scans it for its signature and prefetches the
// entry, or, when the signature is not there, the second bucket, which
// probe_second() then scans; track() / lookup() compare the key and go on.
// A stage does each phase for its whole burst before the next, so that the
// loads of all its keys are in flight at once (bursts in the table above);
// probe() does both scans for one key. The second bucket is asked for only
// when the first lacks the key: an insert takes the first on a tie, so in a
// table below its design load nearly every key is there, and prefetching
// both buckets of 32 keys filled the core's miss buffers (the prefetches
// themselves stalled: nat4-established's NAT stage went from 101-121 to 92
// cycles a packet without them, 2026-12-08, AMD EPYC). create() takes the
// prepared lookups of both tuples and looks at each key's buckets once,
// under the writer lock: whether the key exists and where it goes.
//
// Time. Every call takes `now` as a TSC value from the caller (tests inject
// it); the table keeps it in ticks of 2^shift TSC cycles (about a
// millisecond), 32 bits with serial arithmetic (timeouts up to 20 days).
// An expired flow (now past its expiry) or a flushed one does not exist for
// lookups; create() replaces it in place of a new one, ageing frees it.
//
// Threads:
//   prepare, probe, prefetch_new,
//   track, create, match_icmp_error,
//   lookup, end                       any worker (RCU reader, online)
//   age                               one caller at a time (a worker's
//                                     housekeeping or the control thread);
//                                     a second concurrent caller returns 0
//   snapshot, flush, count            control thread (takes the writer lock
//                                     for a bounded chunk at a time)
// The packet path never allocates, logs, makes a syscall or throws; the
// constructor (control thread) allocates everything and may throw.
#pragma once

#include <netinet/in.h>
#include <rte_hash_crc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#if defined(RTE_ARCH_X86_64) && defined(__SSE4_2__)
#include <nmmintrin.h>
#endif
#include <rte_pause.h>
#include <rte_rcu_qsbr.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "fwd/dp/counter.hpp"
#include "fwd/dp/drop.hpp"
#include "fwd/dp/meta.hpp"
#include "fwd/net/endian.hpp"

namespace fwd::dp::ct {

// --- results: one list, counted per caller (Counters), named for drops ---
#define FWD_CT_RESULTS(X)                                                              \
    X(kOk, "ok", "packet belongs to a flow; state updated")                            \
    X(kCreated, "created", "new flow created")                                         \
    X(kNew, "new", "no flow: the caller may create one")                               \
    X(kTruncated, "truncated", "L4 header cut")                                        \
    X(kFragment, "fragment", "later IP fragment: no L4 header to key on")              \
    X(kNotTracked, "not_tracked", "ICMP that is neither echo nor error")               \
    X(kIcmpError, "icmp_error", "an ICMP error: use match_icmp_error")                 \
    X(kTcpNotSyn, "tcp_not_syn", "first packet of a TCP flow without SYN (loose off)") \
    X(kTcpBadFlags, "tcp_bad_flags", "TCP flag combination never valid")               \
    X(kIcmpNoRequest, "icmp_no_request", "ICMP echo reply with no request's flow")     \
    X(kTcpInvalid, "tcp_invalid", "TCP segment invalid in the flow's state")           \
    X(kTcpIgnored, "tcp_ignored", "TCP segment ignored by the state machine (passed)") \
    X(kTcpOutOfWindow, "tcp_out_of_window", "TCP segment outside the window")          \
    X(kTcpRstOutOfWindow, "tcp_rst_out_of_window", "TCP RST outside the window")       \
    X(kTableFull, "table_full", "no free entry for a new flow")                        \
    X(kIndexFull, "index_full", "both index buckets of a key full")                    \
    X(kExists, "exists", "original tuple already a flow (look it up again)")           \
    X(kReplyExists, "reply_exists", "reply tuple already a flow (NAT: try another)")   \
    X(kIcmpErrorTruncated, "icmp_error_truncated", "ICMP error quoting too little")    \
    X(kIcmpErrorBadQuote, "icmp_error_bad_quote", "ICMP error quoting garbage")        \
    X(kIcmpErrorNoFlow, "icmp_error_no_flow", "ICMP error quoting no known flow")

enum class Result : uint8_t {
#define FWD_CT_ENUM(name, str, desc) name,
    FWD_CT_RESULTS(FWD_CT_ENUM)
#undef FWD_CT_ENUM
        kCount
};
inline constexpr size_t kResultCount = static_cast<size_t>(Result::kCount);

struct ResultInfo {
    std::string_view name;
    std::string_view description;
};
inline constexpr ResultInfo kResultInfo[kResultCount] = {
#define FWD_CT_INFO(name, str, desc) {str, desc},
    FWD_CT_RESULTS(FWD_CT_INFO)
#undef FWD_CT_INFO
};
constexpr std::string_view result_name(Result r) {
    return kResultInfo[static_cast<size_t>(r)].name;
}

// Per caller (a worker's slot): written by its owner only, summed by readers.
struct alignas(64) Counters {
    std::array<Counter, kResultCount> by_result;
    void count(Result r) { by_result[static_cast<size_t>(r)].inc(); }
    uint64_t get(Result r) const { return by_result[static_cast<size_t>(r)].get(); }
};

// The drop reason of a tracker's refusal (ct_*), for the stages that call
// it: pass for the results that let the packet go on (kOk, kCreated,
// kTcpIgnored), fragment for kFragment (the caller's own reason); kCtBusy
// for those the callers handle themselves (kNew, kExists, kReplyExists,
// kIcmpError).
constexpr DropReason drop_reason(Result r, DropReason pass, DropReason fragment) {
    switch (r) {
        case Result::kTruncated:
            return DropReason::kCtTruncated;
        case Result::kFragment:
            return fragment;
        case Result::kNotTracked:
            return DropReason::kCtNotTracked;
        case Result::kTcpNotSyn:
            return DropReason::kCtTcpNotSyn;
        case Result::kTcpBadFlags:
            return DropReason::kCtTcpBadFlags;
        case Result::kIcmpNoRequest:
            return DropReason::kCtIcmpNoRequest;
        case Result::kTcpInvalid:
            return DropReason::kCtTcpInvalid;
        case Result::kTcpOutOfWindow:
            return DropReason::kCtTcpOutOfWindow;
        case Result::kTcpRstOutOfWindow:
            return DropReason::kCtTcpRstOutOfWindow;
        case Result::kTableFull:
            return DropReason::kCtTableFull;
        case Result::kIndexFull:
            return DropReason::kCtIndexFull;
        case Result::kIcmpErrorTruncated:
            return DropReason::kCtIcmpErrorTruncated;
        case Result::kIcmpErrorBadQuote:
            return DropReason::kCtIcmpErrorBadQuote;
        case Result::kIcmpErrorNoFlow:
            return DropReason::kCtIcmpErrorNoFlow;
        case Result::kOk:
        case Result::kCreated:
        case Result::kTcpIgnored:
            return pass;
        default:
            return DropReason::kCtBusy;
    }
}

// --- keys ---
enum class Dir : uint8_t { kOrig = 0, kReply = 1 };
constexpr Dir other(Dir d) {
    return d == Dir::kOrig ? Dir::kReply : Dir::kOrig;
}

inline constexpr uint8_t kIcmpEchoRequest = 8, kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmp6EchoRequest = 128, kIcmp6EchoReply = 129;

// 40 bytes, compared and hashed as five 8-byte words: every unused byte is
// zero (build keys with v4() / v6()).
struct FlowKey {
    std::array<uint8_t, 16> src{};  // IPv4: the first 4 bytes, network order
    std::array<uint8_t, 16> dst{};
    net::Be16 sport;  // TCP/UDP/SCTP ports; echo: the identifier
    net::Be16 dport;  // TCP/UDP/SCTP ports; echo: the type (from_host(type))
    uint8_t proto = 0;
    uint8_t family = 0;  // 4 or 6
    uint16_t pad = 0;

    static FlowKey v4(uint32_t src_be, uint32_t dst_be, uint8_t proto, net::Be16 sport,
                      net::Be16 dport);
    static FlowKey v6(const uint8_t *src, const uint8_t *dst, uint8_t proto, net::Be16 sport,
                      net::Be16 dport);
    bool v6() const { return family == 6; }
    // The tuple of the other direction: addresses and ports swapped; an echo
    // keeps its identifier and takes the other type (request <-> reply).
    FlowKey inverted() const;
    bool operator==(const FlowKey &) const = default;
    std::string str() const;  // control side: "tcp 10.0.0.1:80 -> 10.0.0.2:1234"
};
static_assert(sizeof(FlowKey) == 40);

// What the tracker needs of one packet (parse()).
struct Packet {
    FlowKey key;
    uint8_t tcp_flags = 0;  // TCP: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 ...
    uint8_t wscale = 0xff;  // TCP window scale option (SYN only); 0xff: none
    uint16_t win = 0;       // TCP window field, unscaled
    uint32_t seq = 0, ack = 0;
    uint32_t payload = 0;  // TCP payload bytes
};

// Parses the L4 header of an IP packet whose meta ip4_input / ip6_input set
// (l3_off, l4_off, l4_proto, flags). kOk with p filled, or kTruncated,
// kFragment (a later fragment), kNotTracked, kIcmpError. Reads through
// rte_pktmbuf_read: headers may span segments.
Result parse(const rte_mbuf *m, const PktMeta &md, bool v6, Packet &p);

// --- configuration (the control side fills it from the config file) ---
struct Timeouts {  // seconds; Linux's defaults (nf_conntrack_proto_tcp/udp/icmp/generic)
    uint32_t tcp_syn_sent = 120;
    uint32_t tcp_syn_recv = 60;
    uint32_t tcp_established = 432000;  // 5 days
    uint32_t tcp_fin_wait = 120;
    uint32_t tcp_close_wait = 60;
    uint32_t tcp_last_ack = 30;
    uint32_t tcp_time_wait = 120;
    uint32_t tcp_close = 10;
    uint32_t udp_unreplied = 30;
    uint32_t udp_replied = 120;  // once seen both ways (Linux's "stream")
    uint32_t icmp = 30;
    uint32_t generic = 600;  // other protocols, SCTP too (no SCTP states yet)
};

struct Config {
    uint32_t capacity = 262144;  // flows; 1 .. kMaxCapacity
    // Pick up a TCP flow from a packet without SYN (Linux's
    // nf_conntrack_tcp_loose=1): state ESTABLISHED, window checks off for
    // that flow (its window scale is unknown). false: kTcpNotSyn.
    bool tcp_loose = true;
    // No window checks at all (Linux's nf_conntrack_tcp_be_liberal).
    bool tcp_liberal = false;
    Timeouts timeouts;
    uint32_t hash_seed = 0x6374;  // the control side may randomise it

    // An error message naming the field, empty when valid. Timeouts must be
    // 1 .. kMaxTimeout seconds.
    std::string validate() const;
};
inline constexpr uint32_t kMaxCapacity = 1u << 26;  // 64M flows
inline constexpr uint32_t kMaxTimeout = 20 * 86400;

// --- TCP ---
enum class TcpState : uint8_t {
    kNone,
    kSynSent,
    kSynRecv,
    kEstablished,
    kFinWait,
    kCloseWait,
    kLastAck,
    kTimeWait,
    kClose,
    kSynSent2,  // simultaneous open: a SYN both ways
    kCount
};
inline constexpr size_t kTcpStateCount = static_cast<size_t>(TcpState::kCount);
inline constexpr std::string_view kTcpStateNames[kTcpStateCount] = {
    "none",       "syn_sent", "syn_recv",  "established", "fin_wait",
    "close_wait", "last_ack", "time_wait", "close",       "syn_sent2"};

// One direction's sequence space (Linux's ip_ct_tcp_state, simplified):
// the sender's highest sequence sent (end), the highest it may send as the
// receiver advertised (maxend), its largest window (maxwin). Its scale and
// flags live beside (Flow::scale, Flow::pflags) to keep a flow in 128 bytes.
struct TcpPeer {
    uint32_t end = 0, maxend = 0, maxwin = 0;
};
enum TcpPeerFlags : uint8_t {
    kPeerWscale = 1 << 0,   // sent the window scale option
    kPeerLiberal = 1 << 1,  // no window checks (picked up mid-stream)
    kPeerSeen = 1 << 2,     // its sequence space is known
};

// A test-and-set lock: an acquire exchange takes it, a release store lets it
// go (a plain store on x86, where rte_spinlock_unlock is an xchg: a full
// barrier, draining the stores before it, that every new flow and every TCP
// packet would pay). 1 byte (a flow entry has none to spare); zero is free
// (entries are zeroed, not built).
class SpinLock {
  public:
    void lock() noexcept {
        while (v_.exchange(1, std::memory_order_acquire) != 0) {
            while (v_.load(std::memory_order_relaxed) != 0) {
                rte_pause();
            }
        }
    }
    void unlock() noexcept { v_.store(0, std::memory_order_release); }

  private:
    std::atomic<uint8_t> v_{0};
};

// --- the flow entry ---
enum FlowStatus : uint8_t {
    kStatusLive = 1 << 0,     // in the index (cleared by unlink, before grace)
    kStatusReplied = 1 << 1,  // a packet seen in the reply direction
    kStatusDying = 1 << 2,    // flushed: gone for lookups, ageing frees it
};

enum class L4Kind : uint8_t { kTcp, kUdp, kIcmp, kGeneric };

// Flow::policy_flags.
enum FlowPolicyFlags : uint8_t {
    kPolicyChecked = 1 << 0,  // allowed under policy_gen
};

// What a NAT owns in a flow: the translation is the two tuples themselves (a
// packet of direction d is rewritten to tuple[other(d)].inverted()); these
// say what that changes and to which service it belongs. Set at create.
enum NatChange : uint8_t {
    kChangeSrcAddr = 1 << 0,
    kChangeDstAddr = 1 << 1,
    kChangeSrcPort = 1 << 2,  // echo: the identifier
    kChangeDstPort = 1 << 3,
};
struct NatInfo {
    uint32_t service = UINT32_MAX;  // the NAT's indexes (services, backends)
    uint32_t backend = UINT32_MAX;
    uint8_t flags = 0;  // the NAT's own (SNAT, DNAT, ...)
    // The policy's stamp of a flow it allowed (Flow::policy_flags / _gen).
    uint8_t policy_flags = 0;
    uint16_t policy_gen = 0;
};

// 128 bytes: two cache lines. Fields marked [I] are written once before the
// entry is published (release) and read by anyone; [L] under `lock` by any
// worker (TCP); [A] atomics any worker writes.
struct alignas(64) Flow {
    std::array<FlowKey, 2> tuple;   // [I] by Dir
    std::atomic<uint32_t> expires;  // [A] ticks (ConnTable::ticks), relaxed
    SpinLock lock;                  // TCP: state, peer, scale, pflags
    std::atomic<uint8_t> state;     // [L] TcpState (TCP only); relaxed loads elsewhere
    std::atomic<uint8_t> status;    // [A] FlowStatus
    uint8_t changes;                // [I] NatChange of kOrig (low 4 bits), kReply (high 4)
    uint8_t nat_flags;              // [I] NatInfo::flags
    // [A] policy (policy.hpp): the low 16 bits of the PolicyState
    // generation the flow was last allowed under, kPolicyChecked set in
    // policy_flags; relaxed (a stale read re-checks, never lets more pass).
    std::atomic<uint8_t> policy_flags;
    std::atomic<uint16_t> policy_gen;
    uint32_t nat_service;           // [I] NatInfo::service
    uint32_t nat_backend;           // [I] NatInfo::backend
    std::array<TcpPeer, 2> peer;    // [L] by the sending direction
    std::array<uint8_t, 2> scale;   // [L] window scale by direction (0 unless both sent one)
    std::array<uint8_t, 2> pflags;  // [L] TcpPeerFlags by direction

    L4Kind kind() const {
        switch (tuple[0].proto) {
            case IPPROTO_TCP:
                return L4Kind::kTcp;
            case IPPROTO_UDP:
                return L4Kind::kUdp;
            case IPPROTO_ICMP:
            case IPPROTO_ICMPV6:
                return L4Kind::kIcmp;
            default:
                return L4Kind::kGeneric;
        }
    }
    // NatChange bits for packets of direction d.
    uint8_t changes_for(Dir d) const { return d == Dir::kOrig ? (changes & 0xf) : (changes >> 4); }
    // The tuple a packet of direction d leaves with after the NAT.
    FlowKey translated(Dir d) const { return tuple[static_cast<size_t>(other(d))].inverted(); }
};
static_assert(sizeof(Flow) == 128, "a flow is two cache lines");

struct Hit {
    uint32_t flow = UINT32_MAX;  // entry index (ConnTable::flow)
    Dir dir = Dir::kOrig;
};

// A key's place in the index, for a burst looked up in phases (prepare() every
// key, probe() every key, then track()): what track(p, ...) does in one call,
// cut where it waits for memory, so that the loads of a burst overlap.
// Filled by the table; a caller only keeps it beside its key.
struct Lookup {
    uint32_t b1 = 0, b2 = 0;  // the key's two buckets
    uint32_t sig = 0;         // its signature (never 0)
    uint32_t slot = 0;        // probe(): the first slot of that signature, 0 when none
};

// The signatures of the keys a burst's create()s inserted, as a filter
// (256 bits, by a signature's top byte), for a stage that looks a burst up
// in phases: a packet probed before them is looked up again (track()'s
// recheck) only when its key may be one of them. Only an insert can make a
// key the probe missed (or found on a dead flow) a live flow's: creates
// that failed, unlinks and ends need no recheck.
struct Made {
    uint64_t bits[4] = {0, 0, 0, 0};
    void add(uint32_t sig) { bits[sig >> 30] |= uint64_t{1} << ((sig >> 24) & 63); }
    bool maybe(uint32_t sig) const { return (bits[sig >> 30] >> ((sig >> 24) & 63)) & 1; }
};

// A copy of a flow for listings (snapshot()).
struct FlowInfo {
    uint32_t id;
    FlowKey orig, reply;
    L4Kind kind;
    TcpState state;
    uint8_t status;
    uint8_t changes;
    NatInfo nat;
    uint64_t expires_in_ms;  // 0: expired or flushed, awaiting ageing
};

// Which flows a listing, count or flush takes; an empty field takes all. An
// address or port matches either end of either tuple.
struct Filter {
    struct Addr {
        uint8_t family;                 // 4 or 6
        std::array<uint8_t, 16> bytes;  // IPv4: the first 4, network order
    };
    std::optional<Addr> addr;
    // The original tuple's source / destination (as the first packet had them).
    std::optional<Addr> src, dst;
    uint8_t family = 0;            // 0: both
    std::optional<uint16_t> port;  // host order; only flows with ports match
    std::optional<uint8_t> proto;
    std::optional<TcpState> state;  // only TCP flows match
    bool matches(const FlowKey &orig, const FlowKey &reply, TcpState st, L4Kind k) const;
};

namespace detail {
// The 8 slots of an index bucket as two masks, bit i for slot i: empty, and
// holding signature sig. slot_masks() is the one the table uses, with vector
// loads where the target has AVX2: not atomic, so only where no slot changes
// meanwhile (under the writer lock); slot_masks_scalar() its reference (the
// tests check that they agree).
struct SlotMasks {
    uint32_t empty, match;
};
SlotMasks slot_masks(const std::atomic<uint64_t> *bucket, uint32_t sig) noexcept;
SlotMasks slot_masks_scalar(const std::atomic<uint64_t> *bucket, uint32_t sig) noexcept;
}  // namespace detail

class ConnTable {
  public:
    // Allocates everything (rte_zmalloc). qsbr: the workers' RCU; the table
    // never registers threads in it. Throws std::invalid_argument for an
    // invalid config, std::runtime_error when memory runs out.
    ConnTable(const Config &cfg, uint64_t tsc_hz, rte_rcu_qsbr *qsbr);
    ~ConnTable();
    ConnTable(const ConnTable &) = delete;
    ConnTable &operator=(const ConnTable &) = delete;

    // --- workers (noexcept, lock-free but for TCP's flow lock) ---

    // The flow of p and its direction, its state moved by p. kOk, kNew (no
    // flow or an expired / flushed one: check policy, then create()), or a
    // refusal of a packet of a known flow (kTcp*: hit is filled, the flow
    // untouched).
    Result track(const Packet &p, uint64_t now, Hit &hit, Counters &c) noexcept {
        Lookup l;
        prepare(p.key, l);
        probe(l);
        return track(p, l, now, hit, c);
    }
    // The same in phases, for a burst: prepare() hashes a key and prefetches
    // its buckets; probe() reads them and prefetches the entry the key's
    // signature points to; track(p, l, ...) compares the key and goes on as
    // track(p, ...). l must be prepare()'d for p.key and probe()'d. A probe
    // sees the index as it was then. recheck: this thread's create()s since
    // the probe may have inserted p.key (the caller knows which signatures
    // it inserted), so a key the probe found nowhere or on an expired or
    // flushed flow is looked up again (a live flow found is still the key's:
    // create() replaces none). Other threads' changes race as they do with
    // track(p, ...).
    void prepare(const FlowKey &k, Lookup &l) const noexcept;
    void probe(Lookup &l) const noexcept;
    bool probe_first(Lookup &l) const noexcept;  // false: call probe_second
    void probe_second(Lookup &l) const noexcept;
    Result track(const Packet &p, const Lookup &l, uint64_t now, Hit &hit, Counters &c,
                 bool recheck = false) noexcept;
    // A new flow from its first packet p (the original direction) with the
    // given reply tuple (p.key.inverted() without NAT). kCreated; or
    // kTcpNotSyn / kTcpBadFlags (TCP needs a SYN unless loose), kExists
    // (another worker created it: track() again), kReplyExists, kTableFull,
    // kIndexFull. An expired or flushed flow on either tuple is replaced.
    Result create(const Packet &p, const FlowKey &reply, uint64_t now, const NatInfo &nat, Hit &hit,
                  Counters &c) noexcept {
        Lookup lo, lr;
        prepare(p.key, lo);
        prepare(reply, lr);
        return create(p, lo, reply, lr, now, nat, hit, c);
    }
    Result create(const Packet &p, uint64_t now, Hit &hit, Counters &c) noexcept {
        return create(p, p.key.inverted(), now, NatInfo{}, hit, c);
    }
    // The same with both keys already prepare()'d (orig for p.key, rl for
    // reply): a burst's lookup hashed the original, the caller the reply.
    Result create(const Packet &p, const Lookup &orig, const FlowKey &reply, const Lookup &rl,
                  uint64_t now, const NatInfo &nat, Hit &hit, Counters &c) noexcept;
    // Prefetches, for writing, the entry that this thread's k-th next
    // create() would take if no other thread created meanwhile (a hint, read
    // without the lock).
    void prefetch_new(uint32_t k) const noexcept;
    // An ICMP / ICMPv6 error (parse() said kIcmpError): the flow of the
    // packet it quotes. hit.dir is the error's own direction in that flow
    // (the quoted packet went the other way). kOk, kIcmpErrorTruncated,
    // kIcmpErrorBadQuote, kIcmpErrorNoFlow. Does not refresh the flow.
    Result match_icmp_error(const rte_mbuf *m, const PktMeta &md, bool v6, uint64_t now, Hit &hit,
                            Counters &c) const noexcept;
    // Lookup only: the flow holding key (live, not expired), no update.
    bool lookup(const FlowKey &key, uint64_t now, Hit &hit) const noexcept {
        Lookup l;
        prepare(key, l);
        probe(l);
        return lookup(key, l, now, hit);
    }
    // The same in phases (l prepare()'d for key and probe()'d, as track()).
    bool lookup(const FlowKey &key, const Lookup &l, uint64_t now, Hit &hit) const noexcept;
    // Ends flow i now (a worker's decision, e.g. a DNAT flow whose backend
    // is gone): marked dying as flush() does, so lookups no longer see it and
    // create() replaces it; ageing frees it. No lock: one atomic or.
    void end(uint32_t i) noexcept {
        flows_[i].status.fetch_or(kStatusDying, std::memory_order_relaxed);
    }

    const Flow &flow(uint32_t i) const { return flows_[i]; }
    Flow &flow(uint32_t i) { return flows_[i]; }

    // --- ageing (one caller at a time) ---
    // Looks at up to max_slots entries from where the last call stopped;
    // unlinks the expired and flushed ones; frees those unlinked by earlier
    // calls whose grace period is over. Returns the number unlinked.
    uint32_t age(uint64_t now, uint32_t max_slots) noexcept;
    // Flows unlinked, waiting for their grace period.
    uint32_t pending_free() const { return dead_n_.load(std::memory_order_relaxed); }

    // --- control thread (introspection) ---
    // Copies up to max matching flows from *cursor on into out; *cursor
    // moves on (capacity() when done). Takes the writer lock per 256 entries.
    size_t snapshot(uint32_t *cursor, const Filter &f, uint64_t now, FlowInfo *out, size_t max);
    // Marks the matching flows dying (gone for lookups; ageing frees them).
    // Returns how many.
    size_t flush(const Filter &f);
    size_t count(const Filter &f, uint64_t now);
    uint32_t in_use() const { return in_use_.load(std::memory_order_relaxed); }
    uint32_t capacity() const { return capacity_; }
    static constexpr size_t bytes_per_flow() {
        // entry + 4 index slots + free stack + dead ring
        return sizeof(Flow) + kSlotsPerFlow * sizeof(uint64_t) + 2 * sizeof(uint32_t);
    }
    const Config &config() const { return cfg_; }
    uint32_t ticks(uint64_t tsc) const { return static_cast<uint32_t>(tsc >> shift_); }

  private:
    static constexpr uint32_t kSlotsPerBucket = 8;
    static constexpr uint32_t kSlotsPerFlow = 4;
    // Both buckets of a key are in one group: 64 buckets, 4 KiB (a page),
    // aligned; a smaller index is one group.
    static constexpr uint32_t kGroupBuckets = 64;
    // The slot value of key k (hashed in l), or 0.
    uint32_t find(const FlowKey &k, const Lookup &l) const noexcept;
    bool scan_bucket(uint32_t b, Lookup &l) const noexcept;
    // Under the writer lock, one pass over k's buckets: the slot value of k
    // (0: none) and the free slot an insert takes (the less loaded bucket's
    // first; nullptr: both full), never `taken`.
    uint32_t scan_locked(const FlowKey &k, const Lookup &l, const std::atomic<uint64_t> *taken,
                         std::atomic<uint64_t> *&free) noexcept;
    void remove_locked(const FlowKey &k, uint32_t ref) noexcept;
    void unlink_locked(uint32_t i) noexcept;
    void reclaim() noexcept;
    bool usable(const Flow &f, uint32_t now_t) const noexcept;
    uint32_t timeout(const Flow &f) const noexcept;
    Result tcp_update(Flow &f, Dir d, const Packet &p, uint32_t now_t) noexcept;
    void tcp_init(Flow &f, const Packet &p) noexcept;

    const Config cfg_;
    const uint32_t capacity_;
    const uint64_t tsc_hz_;
    const uint32_t shift_;
    rte_rcu_qsbr *const qsbr_;
    std::array<uint32_t, kTcpStateCount> tcp_ticks_{};
    uint32_t udp_unreplied_t_, udp_replied_t_, icmp_t_, generic_t_;

    Flow *flows_ = nullptr;                   // capacity_
    std::atomic<uint64_t> *slots_ = nullptr;  // n_buckets_ * 8
    uint32_t n_buckets_;
    uint32_t group_mask_;  // buckets per group - 1

    // The writer lock: index inserts and removals, the free stack, the dead
    // ring. Readers never take it. On lines of its own: every lookup reads
    // the fields above.
    alignas(RTE_CACHE_LINE_SIZE) SpinLock wlock_;
    // Stack of free entries, [0, n_free_); atomics for prefetch_new's
    // unlocked read only (relaxed; written under the lock).
    std::atomic<uint32_t> *free_ = nullptr;
    std::atomic<uint32_t> n_free_{0};
    // Unlinked entries in order, waiting for grace: [dead_head_, dead_tail_)
    // mod capacity; batches say which grace period each waits for;
    // dead_batched_ of them (from the head) are in a batch.
    uint32_t *dead_ = nullptr;
    uint32_t dead_head_ = 0, dead_batched_ = 0;
    std::atomic<uint32_t> dead_n_{0};
    struct Batch {
        uint64_t token;  // rte_rcu_qsbr_start after its last unlink
        uint32_t n;      // entries, from dead_head_ on
    };
    static constexpr uint32_t kMaxBatches = 256;
    std::array<Batch, kMaxBatches> batches_{};
    uint32_t batch_head_ = 0, batch_n_ = 0;
    std::atomic<uint32_t> in_use_{0};

    // [ager] where ageing goes on; the ager's try-lock.
    uint32_t age_cursor_ = 0;
    std::atomic<bool> ageing_{false};
};

// --- inline: what a stage calls for every packet it looks up ---

namespace detail {
// Word i of a key (0-4), as it is hashed and compared.
inline uint64_t key_word(const FlowKey &k, uint32_t i) {
    uint64_t w;
    std::memcpy(&w, reinterpret_cast<const uint8_t *>(&k) + 8 * i, 8);
    return w;
}
}  // namespace detail

// CRC32c of the key's 8-byte words with the instruction itself where the
// target has it (rte_hash_crc_8byte gives the same value, choosing at run
// time). An IPv4 key's words 1 and 3 are zero (FlowKey::v4): left out.
inline void ConnTable::prepare(const FlowKey &k, Lookup &l) const noexcept {
    const bool v6 = k.family == 6;
#if defined(RTE_ARCH_X86_64) && defined(__SSE4_2__)
    uint64_t c = _mm_crc32_u64(cfg_.hash_seed, detail::key_word(k, 0));
    if (v6) {
        c = _mm_crc32_u64(c, detail::key_word(k, 1));
    }
    c = _mm_crc32_u64(c, detail::key_word(k, 2));
    if (v6) {
        c = _mm_crc32_u64(c, detail::key_word(k, 3));
    }
    const auto h = static_cast<uint32_t>(_mm_crc32_u64(c, detail::key_word(k, 4)));
#else
    uint32_t h = rte_hash_crc_8byte(detail::key_word(k, 0), cfg_.hash_seed);
    if (v6) {
        h = rte_hash_crc_8byte(detail::key_word(k, 1), h);
    }
    h = rte_hash_crc_8byte(detail::key_word(k, 2), h);
    if (v6) {
        h = rte_hash_crc_8byte(detail::key_word(k, 3), h);
    }
    h = rte_hash_crc_8byte(detail::key_word(k, 4), h);
#endif
    // The first bucket from h by range reduction (a multiplication: any
    // bucket count, no modulo); one 64-bit product spreads h for the rest:
    // its high half is the signature (never 0: 0 is an empty slot), its low
    // half (h times an odd constant, a bijection) picks the second bucket
    // among the other buckets of the first one's group. Two multiplications
    // after the CRC, not a chain of mixes: every key of a burst waits for
    // this.
    const uint64_t x = uint64_t{h} * 0x9e3779b97f4a7c15ull;
    const uint32_t b1 = static_cast<uint32_t>((uint64_t{h} * n_buckets_) >> 32);
    const uint32_t sig = static_cast<uint32_t>(x >> 32) | 1;
    const auto r = static_cast<uint32_t>((uint64_t{static_cast<uint32_t>(x)} * group_mask_) >> 32);
    const uint32_t b2 = (b1 & ~group_mask_) | ((b1 + 1 + r) & group_mask_);
    l.b1 = b1;
    l.b2 = b2;
    l.sig = sig;
    l.slot = 0;
    rte_prefetch0(slots_ + size_t{b1} * kSlotsPerBucket);
}

// The first slot of the key's signature in bucket b: l.slot and the entry
// prefetched, true; none: false.
inline bool ConnTable::scan_bucket(uint32_t b, Lookup &l) const noexcept {
    const std::atomic<uint64_t> *s = slots_ + size_t{b} * kSlotsPerBucket;
    for (uint32_t i = 0; i < kSlotsPerBucket; i++) {
        // Acquire: the entry was written before its slot (release).
        const uint64_t v = s[i].load(std::memory_order_acquire);
        if (static_cast<uint32_t>(v >> 32) == l.sig) {
            l.slot = static_cast<uint32_t>(v);
            // Both lines: the key (the reply's spans them), then the expiry
            // and state track() reads and writes.
            const auto *f = reinterpret_cast<const char *>(&flows_[(l.slot - 1) >> 1]);
            rte_prefetch0(f);
            rte_prefetch0(f + RTE_CACHE_LINE_SIZE);
            return true;
        }
    }
    return false;
}

// The first bucket; when the signature is not there, the second one asked
// for (probe_second() scans it).
inline bool ConnTable::probe_first(Lookup &l) const noexcept {
    l.slot = 0;
    if (scan_bucket(l.b1, l)) {
        return true;
    }
    rte_prefetch0(slots_ + size_t{l.b2} * kSlotsPerBucket);
    return false;
}

inline void ConnTable::probe_second(Lookup &l) const noexcept {
    scan_bucket(l.b2, l);
}

inline void ConnTable::probe(Lookup &l) const noexcept {
    if (!probe_first(l)) {
        probe_second(l);
    }
}

// Names for listings.
std::string_view kind_name(L4Kind k);

}  // namespace fwd::dp::ct
