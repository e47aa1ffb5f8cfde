// The datapath's service table (service_table.hpp).
#include "fwd/dp/service_table.hpp"

#include <rte_byteorder.h>

#include <cstring>

#include "fwd/dp/pipeline.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::svc {

namespace {

uint32_t key_hash(bool v6, const uint8_t *addr, uint8_t proto, uint16_t port_be) {
    uint64_t a0 = 0, a1 = 0;
    std::memcpy(&a0, addr, 8);
    if (v6) {
        std::memcpy(&a1, addr + 8, 8);
    } else {
        a0 &= 0xffffffffu;  // IPv4: the first 4 bytes only (little-endian loads)
    }
    uint64_t h = a0 * 0x9E3779B97F4A7C15ull;
    h ^= (a1 + (uint64_t{proto} << 16 | port_be) + (v6 ? 0x100000000ull : 0)) *
         0xC2B2AE3D27D4EB4Full;
    return static_cast<uint32_t>(h >> 32) ^ static_cast<uint32_t>(h);
}

uint32_t addr_hash(bool v6, const uint8_t *addr) {
    return key_hash(v6, addr, 0, 0);
}

bool all_zero(const uint8_t *a, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (a[i] != 0) {
            return false;
        }
    }
    return true;
}

// The smallest power of two of at least 2n slots (at least 2).
size_t set_size(size_t n) {
    size_t s = 2;
    while (s < 2 * n) {
        s <<= 1;
    }
    return s;
}

bool same_addr(bool v6, const uint8_t *a, const uint8_t *b) {
    if (v6) {
        return eq16(a, b);
    }
    uint32_t x, y;
    std::memcpy(&x, a, 4);
    std::memcpy(&y, b, 4);
    return x == y;
}

}  // namespace

ServiceTable::ServiceTable(const std::vector<FrontendSpec> &specs) {
    uint32_t n_slots = 1;
    while (n_slots < 2 * specs.size()) {
        n_slots <<= 1;
    }
    slots_.assign(n_slots, 0);
    mask_ = n_slots - 1;
    frontends_.reserve(specs.size());
    size_t n_backends = 0;
    for (const FrontendSpec &s : specs) {
        n_backends += s.backends.size();
    }
    be4_.assign(set_size(n_backends), 0);
    be6_.assign(set_size(n_backends), std::array<uint8_t, 16>{});
    for (const FrontendSpec &s : specs) {
        const uint16_t port_be = rte_cpu_to_be_16(s.port);
        if (find(s.v6, s.addr.data(), s.proto, port_be) != kNoFrontend) {
            continue;
        }
        Frontend f{};
        f.addr = s.addr;
        if (!s.v6) {
            std::memset(f.addr.data() + 4, 0, 12);
        }
        f.port_be = port_be;
        f.proto = s.proto;
        f.v6 = s.v6;
        f.flags = s.flags;
        f.affinity_timeout_s = s.affinity_timeout_s;
        f.first_backend = static_cast<uint32_t>(backends_.size());
        f.n_backends = static_cast<uint32_t>(s.backends.size());
        f.first_new = static_cast<uint32_t>(new_.size());
        for (size_t i = 0; i < s.backends.size(); i++) {
            if (i < s.for_new.size() && s.for_new[i]) {
                new_.push_back(f.first_backend + static_cast<uint32_t>(i));
            }
            backends_.push_back(s.backends[i]);
            add_backend_addr(s.v6, s.backends[i].addr);
        }
        f.n_new = static_cast<uint32_t>(new_.size()) - f.first_new;
        const auto idx = static_cast<uint32_t>(frontends_.size());
        frontends_.push_back(f);
        uint32_t i = key_hash(f.v6, f.addr.data(), f.proto, f.port_be) & mask_;
        while (slots_[i] != 0) {
            i = (i + 1) & mask_;
        }
        slots_[i] = idx + 1;
        n_frontends_[f.v6 ? 1 : 0]++;
    }
}

void ServiceTable::add_backend_addr(bool v6, const std::array<uint8_t, 16> &a) {
    if (all_zero(a.data(), v6 ? 16 : 4)) {
        return;
    }
    if (v6) {
        const auto mask = static_cast<uint32_t>(be6_.size() - 1);
        for (uint32_t i = addr_hash(true, a.data()) & mask;; i = (i + 1) & mask) {
            if (eq16(be6_[i].data(), a.data())) {
                return;
            }
            if (all_zero(be6_[i].data(), 16)) {
                be6_[i] = a;
                return;
            }
        }
    }
    uint32_t be;
    std::memcpy(&be, a.data(), 4);
    uint8_t key[8] = {};
    std::memcpy(key, &be, 4);
    const auto mask = static_cast<uint32_t>(be4_.size() - 1);
    for (uint32_t i = addr_hash(false, key) & mask;; i = (i + 1) & mask) {
        if (be4_[i] == be) {
            return;
        }
        if (be4_[i] == 0) {
            be4_[i] = be;
            return;
        }
    }
}

bool ServiceTable::is_backend4(uint32_t addr_be) const noexcept {
    uint8_t key[8] = {};
    std::memcpy(key, &addr_be, 4);
    const auto mask = static_cast<uint32_t>(be4_.size() - 1);
    for (uint32_t i = addr_hash(false, key) & mask;; i = (i + 1) & mask) {
        if (be4_[i] == addr_be) {
            return addr_be != 0;
        }
        if (be4_[i] == 0) {
            return false;
        }
    }
}

bool ServiceTable::is_backend6(const uint8_t *addr) const noexcept {
    const auto mask = static_cast<uint32_t>(be6_.size() - 1);
    for (uint32_t i = addr_hash(true, addr) & mask;; i = (i + 1) & mask) {
        const std::array<uint8_t, 16> &s = be6_[i];
        if (eq16(s.data(), addr)) {
            return !all_zero(addr, 16);
        }
        if (all_zero(s.data(), 16)) {
            return false;
        }
    }
}

uint32_t ServiceTable::find(bool v6, const uint8_t *addr, uint8_t proto,
                            uint16_t port_be) const noexcept {
    for (uint32_t i = key_hash(v6, addr, proto, port_be) & mask_;; i = (i + 1) & mask_) {
        const uint32_t s = slots_[i];
        if (s == 0) {
            return kNoFrontend;
        }
        const Frontend &f = frontends_[s - 1];
        if (f.v6 == v6 && f.port_be == port_be && f.proto == proto &&
            same_addr(v6, f.addr.data(), addr)) {
            return s - 1;
        }
    }
}

uint32_t ServiceTable::find4(uint32_t addr_be, uint8_t proto, uint16_t port_be) const noexcept {
    uint8_t a[8] = {};
    std::memcpy(a, &addr_be, 4);
    return find(false, a, proto, port_be);
}

uint32_t ServiceTable::find6(const uint8_t *addr, uint8_t proto, uint16_t port_be) const noexcept {
    return find(true, addr, proto, port_be);
}

uint32_t ServiceTable::pick(const Frontend &f, uint32_t flow_hash) const noexcept {
    if (f.n_new == 0) {
        return UINT32_MAX;
    }
    // multiply-shift onto [0, n_new): no division
    const auto k = static_cast<uint32_t>((uint64_t{flow_hash} * f.n_new) >> 32);
    return new_[f.first_new + k];
}

bool ServiceTable::has_backend(const Frontend &f, const uint8_t *addr,
                               uint16_t port_be) const noexcept {
    for (uint32_t i = f.first_backend; i < f.first_backend + f.n_backends; i++) {
        const Backend &b = backends_[i];
        if (b.port_be == port_be && same_addr(f.v6, b.addr.data(), addr)) {
            return true;
        }
    }
    return false;
}

uint32_t ServiceTable::new_flow_backend(const Frontend &f, const uint8_t *addr,
                                        uint16_t port_be) const noexcept {
    for (uint32_t i = f.first_new; i < f.first_new + f.n_new; i++) {
        const Backend &b = backends_[new_[i]];
        if (b.port_be == port_be && same_addr(f.v6, b.addr.data(), addr)) {
            return new_[i];
        }
    }
    return UINT32_MAX;
}

uint16_t worker_slot() {
    static const uint16_t slot = PipelineRegistry::global().add_worker_slot("services");
    return slot;
}

FWD_ON_LOAD(worker_slot());

}  // namespace fwd::dp::svc
