#include "fwd/cni/command.hpp"

namespace fwd::cni {
namespace {

struct CommandInfo {
    Command cmd;
    std::string_view name;
    std::string_view since;  // the spec version that brought the verb
};

constexpr CommandInfo kCommands[] = {
    {Command::kAdd, "ADD", "0.1.0"},     {Command::kDel, "DEL", "0.1.0"},
    {Command::kCheck, "CHECK", "0.4.0"}, {Command::kStatus, "STATUS", "1.1.0"},
    {Command::kGc, "GC", "1.1.0"},       {Command::kVersion, "VERSION", "0.2.0"},
};

// Every enumerator has its row, so this cannot fall off the table.
const CommandInfo &info(Command cmd) {
    for (const auto &c : kCommands) {
        if (c.cmd == cmd) {
            return c;
        }
    }
    return kCommands[0];
}

}  // namespace

std::string_view command_name(Command cmd) {
    return info(cmd).name;
}

std::string_view first_version(Command cmd) {
    return info(cmd).since;
}

std::optional<Command> parse_command(std::string_view s) {
    for (const auto &c : kCommands) {
        if (c.name == s) {
            return c.cmd;
        }
    }
    return std::nullopt;
}

}  // namespace fwd::cni
