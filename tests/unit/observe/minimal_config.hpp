// A minimal node config with `extra` merged in, parsed with the registered
// sections (metrics, health, log): for the sections' tests.
#pragma once

#include <nlohmann/json.hpp>

#include "fwd/control/config.hpp"

namespace fwd::control {

inline NodeConfig parse_with(const nlohmann::json &extra) {
    nlohmann::json cfg{{"node_name", "n"},
                       {"node", {{"ipv4", "10.0.0.1/24"}, {"mtu", 1500}}},
                       {"cores", {{"main", 0}, {"control", 0}, {"workers", {{{"core", 1}}}}}},
                       {"api_socket", "/tmp/s"}};
    cfg.update(extra);
    return parse_config(cfg.dump(), ConfigEnv{{0, 1}});
}

}  // namespace fwd::control
