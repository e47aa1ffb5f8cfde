// fwdctl log level [LEVEL]: the daemon's log level, shown or set at run time.
#include <memory>
#include <ostream>
#include <string>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

void add_log_commands(CLI::App &app, Command &command) {
    CLI::App *log = app.add_subcommand("log", "the daemon's log");
    log->require_subcommand(1);
    CLI::App *level = log->add_subcommand("level", "show the log level, or set it (at run time)");
    auto name = std::make_shared<std::string>();
    level->add_option("level", *name, "trace, debug, info, warn, error, critical or off");
    level->callback([name, &command] {
        json args = json::object();
        if (!name->empty()) {
            args["level"] = *name;
        }
        command.request = Request{"log.level", args, [](const json &result, std::ostream &out) {
                                      out << "log level " << cell(result, "level") << ", format "
                                          << cell(result, "format") << '\n';
                                  }};
    });
}

}  // namespace

FWD_ON_LOAD(register_group("log", 33, add_log_commands));

}  // namespace fwd::control::fwdctl
