// CNI CHECK of a kernel pod: the pod's interface as the kernel has it against what the
// endpoint says it should be (fwd/vhost/netns.hpp installs it). Control-plane only: it enters
// the pod's network namespace on a short-lived thread.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fwd::control {

// `endpoint` is an endpoint's JSON (endpoint.get); an "mtu" that is null is not checked. One line
// per difference: the interface missing or down, another MAC or MTU, an expected address or route
// missing, a global address that should not be there, or the namespace that cannot be entered.
// Empty when all match.
std::vector<std::string> pod_interface_differences(const nlohmann::json &endpoint);

}  // namespace fwd::control
