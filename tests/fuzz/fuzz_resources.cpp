// What `fwdctl apply -f` reads: a file of YAML or JSON documents split into resources, each
// decoded by the kinds' decoders (IPAM pools, nodes and configuration; Calico and Kubernetes
// policy, pods and namespaces; Services and EndpointSlices; BGP configuration, peers, secrets).
// Bad input must end in an exception with a message (fwdctl prints it); a crash, a sanitizer
// report, a hang or an exception that is not a std::exception is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_common.hpp"
#include "fwd/control/bgp.hpp"
#include "fwd/ipam/document.hpp"
#include "fwd/ipam/resource.hpp"
#include "fwd/policy/model.hpp"
#include "fwd/svc/service.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    std::vector<fwd::ipam::RawResource> raw;
    if (!fwd::fuzz::accepted([&] { raw = fwd::ipam::split_resources(text, "fuzz.yaml"); })) {
        return 0;
    }
    // Each decoder on each resource alone: a kind it does not take is one more refusal.
    for (const auto &r : raw) {
        const std::vector<fwd::ipam::RawResource> one{r};
        fwd::fuzz::accepted([&] { (void)fwd::ipam::decode_resources(one); });
        fwd::fuzz::accepted([&] { (void)fwd::policy::decode_policy_resources(one); });
        fwd::fuzz::accepted([&] { (void)fwd::svc::decode_service_resources(one); });
        fwd::fuzz::accepted([&] { (void)fwd::bgp::decode_bgp_resources(one); });
    }
    return 0;
}
