// The CNI verbs (CNI_COMMAND).
#pragma once

#include <optional>
#include <string_view>

namespace fwd::cni {

enum class Command { kAdd, kDel, kCheck, kStatus, kGc, kVersion };

// "ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION".
std::string_view command_name(Command cmd);
// Exact, upper-case names only, as runtimes send them.
std::optional<Command> parse_command(std::string_view s);
// The first spec version that has the verb.
std::string_view first_version(Command cmd);

}  // namespace fwd::cni
