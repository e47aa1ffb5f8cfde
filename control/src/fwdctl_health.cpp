// fwdctl health: what /liveness and /readiness answer (the health module),
// also when no health port is configured. Exits 1 when the daemon is not
// live or not ready, so it serves as an exec probe too.
#include <iostream>
#include <ostream>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

void print_health(const json &result, std::ostream &out) {
    for (const auto &[key, what] : {std::pair{"live", "liveness"}, {"ready", "readiness"}}) {
        out << key << ": " << (result.value(key, false) ? "yes" : "no") << '\n';
        for (const auto &reason : result.value(what, json::array())) {
            out << "  " << reason.get<std::string>() << '\n';
        }
    }
    const json &listen = result.contains("listen") ? result["listen"] : json();
    out << "probes: "
        << (listen.is_string() ? "/liveness and /readiness on " + listen.get<std::string>()
                               : std::string("off (config section \"health\")"))
        << '\n';
}

void add_health_commands(CLI::App &app, Command &command) {
    CLI::App *health = app.add_subcommand(
        "health", "show whether the daemon is live and ready (as /liveness and /readiness)");
    health->callback([&app, &command] {
        const bool as_json = app.get_option("--json")->as<bool>();
        command.dialogue = [as_json](ApiClient &client) {
            const json result = client.call("health", json::object());
            if (as_json) {
                std::cout << result.dump(2) << '\n';
            } else {
                print_health(result, std::cout);
            }
            return result.value("live", false) && result.value("ready", false) ? kExitOk
                                                                               : kExitError;
        };
    });
}

}  // namespace

FWD_ON_LOAD(register_group("health", 32, add_health_commands));

}  // namespace fwd::control::fwdctl
