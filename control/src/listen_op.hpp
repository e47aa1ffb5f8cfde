// The internal op "<module>.listen" through which FelixConfiguration's
// health* and prometheusMetrics* fields (felix_module.cpp) move a module's
// listener: args enabled, host, port; run on the caller's thread (Listener,
// observe.hpp, says why).
#pragma once

#include <string>

#include "fwd/control/module.hpp"
#include "fwd/control/observe.hpp"

namespace fwd::control {

inline void add_listen_op(ControlContext &ctx, std::string name, Listener &l) {
    ctx.add_op({.name = std::move(name),
                .args = {"enabled", "host", "port"},
                .fn = [&l](const nlohmann::json &a) { return l.relisten(listen_of(a)); },
                .thread = OpDef::Thread::kApi,
                .internal = true});
}

}  // namespace fwd::control
