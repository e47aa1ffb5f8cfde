// Policy, the datapath side's helpers outside the stages (policy.hpp).
#include "fwd/dp/policy.hpp"

#include <cstring>

#include "fwd/dp/pipeline.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::policy {

Src4 src4(const net::Prefix4 &p) {
    const uint32_t mask = p.len == 0 ? 0 : ~uint32_t{0} << (32 - p.len);
    return {net::Be32::from_host(p.addr.host() & mask).raw(), net::Be32::from_host(mask).raw()};
}

Src6 src6(const net::Prefix6 &p) {
    std::array<uint8_t, 16> mask{};
    for (int i = 0; i < p.len; i++) {
        mask[i / 8] |= static_cast<uint8_t>(0x80 >> (i % 8));
    }
    Src6 s;
    std::memcpy(s.mask.data(), mask.data(), 16);
    std::memcpy(s.net.data(), p.addr.data(), 16);
    s.net[0] &= s.mask[0];
    s.net[1] &= s.mask[1];
    return s;
}

uint16_t worker_slot() {
    static const uint16_t slot = PipelineRegistry::global().add_worker_slot("policy");
    return slot;
}

FWD_ON_LOAD(worker_slot());

}  // namespace fwd::dp::policy
