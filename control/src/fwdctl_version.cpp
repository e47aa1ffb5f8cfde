// fwdctl version: the daemon's version (fwdctl --version is fwdctl's own).
#include <ostream>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

void add_version_commands(CLI::App &app, Command &command) {
    add_request_command(app, "version", "show the daemon's version", "version", command,
                        [](const json &result, std::ostream &out) {
                            out << "dpdk-fwd " << cell(result, "version") << '\n';
                        });
}

}  // namespace

FWD_ON_LOAD(register_group("version", 40, add_version_commands));

}  // namespace fwd::control::fwdctl
