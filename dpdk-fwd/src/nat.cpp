// NAT tables (nat.hpp): the pool table, the port choice, the worker slot and
// the conntrack table's ageing from the workers' housekeeping.
#include "fwd/dp/nat.hpp"

#include <rte_byteorder.h>
#include <rte_cycles.h>

#include <algorithm>
#include <cstring>

#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::nat {

namespace {

std::array<uint64_t, 2> words6(const uint8_t *a) {
    std::array<uint64_t, 2> w;
    std::memcpy(w.data(), a, 16);
    return w;
}

std::array<uint64_t, 2> mask6(uint8_t len) {
    std::array<uint8_t, 16> b{};
    for (uint8_t i = 0; i < 16; i++) {
        const int bits = std::clamp(len - i * 8, 0, 8);
        b[i] = static_cast<uint8_t>(0xff00u >> bits);
    }
    return words6(b.data());
}

}  // namespace

void PoolTable::add(const net::Prefix4 &p, uint8_t flags) {
    const uint8_t len = std::min<uint8_t>(p.len, 32);
    const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    v4_.push_back({p.addr.host() & mask, mask, flags});
    nat4_ = nat4_ || (flags & kPoolNatOutgoing);
}

void PoolTable::add(const net::Prefix6 &p, uint8_t flags) {
    const auto mask = mask6(std::min<uint8_t>(p.len, 128));
    auto net = words6(p.addr.data());
    net[0] &= mask[0];
    net[1] &= mask[1];
    v6_.push_back({net, mask, flags});
    nat6_ = nat6_ || (flags & kPoolNatOutgoing);
}

PortRange port_range_for(const PortRange &cfg, uint8_t proto, uint16_t orig) {
    if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
        return {0, 65535};
    }
    if (cfg.lo != 0) {
        return cfg;
    }
    if (orig < 512) {
        return {1, 511};
    }
    if (orig < 1024) {
        return {600, 1023};
    }
    return {1024, 65535};
}

int port_candidate(const PortRange &r, uint32_t hash, uint32_t n) {
    const uint32_t size = uint32_t{r.hi} - r.lo + 1;
    // Rounds: 128 tries from the flow's start, then 64, 32, 16 from others
    // (a range smaller than a round is walked once, whole).
    uint32_t round_len = std::min<uint32_t>(128, size);
    uint32_t start = hash;
    for (uint32_t round = 0;; round++) {
        if (n < round_len) {
            return static_cast<int>(r.lo + (start + n) % size);
        }
        n -= round_len;
        if (round_len >= size || round_len < 32) {
            return -1;
        }
        round_len /= 2;
        start = start * 2654435761u + 0x9e3779b9u;  // another start, deterministic per flow
    }
}

uint16_t worker_slot() {
    static const uint16_t slot = PipelineRegistry::global().add_worker_slot("nat");
    return slot;
}

namespace {

// A worker's housekeeping: a slice of 1024 entries (and 1024 slots of the
// affinity table, when it holds any) aged at most once a
// millisecond per worker (one worker at a time: age() refuses a second
// caller), none while the table holds nothing: the housekeeping runs on
// every idle loop, and an idle node must stay idle. A 1M-flow table goes
// round in about a second.
void age(Worker &w) {
    auto *nw = static_cast<NatWorker *>(w.slot(worker_slot()));
    if (nw == nullptr || nw->tables->ct == nullptr) {
        return;
    }
    const uint64_t now = rte_rdtsc();
    if (now < nw->next_age_tsc) {
        return;
    }
    nw->next_age_tsc = now + rte_get_tsc_hz() / 1000;
    if (svc::AffinityTable *aff = nw->tables->affinity; aff != nullptr && aff->count() != 0) {
        aff->age(now, 1024);
    }
    ct::ConnTable &ct = *nw->tables->ct;
    if (ct.in_use() == 0 && ct.pending_free() == 0) {
        return;
    }
    ct.age(now, 1024);
}

}  // namespace

FWD_ON_LOAD(worker_slot(); PipelineRegistry::global().add_housekeeping({"ct_age", &age}));

}  // namespace fwd::dp::nat
