// fwdctl's internals, shared by its command groups (not installed).
//
// A command group is one file, fwdctl_<group>.cpp, that adds its subcommands to the command line
// and registers itself at load time; fwdctl.cpp's main() knows no group by name:
//
//   void add_stats_commands(CLI::App &app, Command &command) { ... }
//   FWD_ON_LOAD(register_group("stats", 30, add_stats_commands));
//
// plus a line in the fwdctl sources of control/meson.build. A subcommand's callback only records
// in Command what to do: a Request for the daemon and how to print its result, or a local
// function (fwdctl_ipam.cpp works on the IPAM store itself). main() then does it and turns
// failures into messages and exit codes in one place.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fwd/control/api.hpp"
#include "fwd/ipam/document.hpp"
#include "fwd/ipam/store.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control::fwdctl {

using nlohmann::json;

// Exit codes of every command: 0 success, 1 the daemon (or the IPAM store) answered with an
// error, 2 usage error, 3 the daemon (or the IPAM store) cannot be reached.
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnavailable = 3;

// What the command line asks the daemon for, and how to show the answer to a human.
struct Request {
    std::string op;
    json args = json::object();
    std::function<void(const json &result, std::ostream &out)> print;
};

// What the parsed command line asks for: a request to the daemon, or a command that runs here
// (its exit code is fwdctl's). The callback of the subcommand that was used sets one of them.
struct Command {
    std::optional<Request> request;
    std::function<int()> local;
    // A command that talks to the daemon more than once (fwdctl capture): main() connects and
    // turns the daemon's errors into messages and exit codes as for a request.
    std::function<int(ApiClient &client)> dialogue;
};

// ---------------------------------------------------------------------------------------------
// Command groups

// Adds a group's subcommands to app; their callbacks fill command. app and command outlive the
// parse, so callbacks may keep references to them. The global options (-s, --json) are already
// on app, for a group that needs one (app.get_option_no_throw).
using GroupFn = void (*)(CLI::App &app, Command &command);

struct Group {
    std::string name;
    int order;  // place in --help, lowest first; spaced by 10 so a group can go between two
    GroupFn add;
};

// Registers a group; call it through FWD_ON_LOAD from the group's own file.
void register_group(std::string name, int order, GroupFn fn);

// The registered groups, in --help order (by order, then name).
std::vector<Group> registered_groups();

// ---------------------------------------------------------------------------------------------
// Output helpers shared by every command.

// Aligned columns separated by two spaces. Numbers read best right-aligned, text left-aligned.
class Table {
  public:
    struct Column {
        std::string title;
        bool right = false;
    };

    explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}

    void add_row(std::vector<std::string> cells);
    void print(std::ostream &out, bool header = true) const;

  private:
    std::vector<Column> columns_;
    std::vector<std::vector<std::string>> rows_;
};

// One member of a result as table text; "-" when absent or null. Never throws, so a daemon
// newer than fwdctl cannot make it fail on a changed field.
std::string cell(const json &obj, const char *key);

// The array member key of a result, or an empty array.
const json &array_field(const json &obj, const char *key);

// "name  value" lines for a single object, in the given order.
void print_fields(const json &obj, const std::vector<const char *> &keys, std::ostream &out);

// A counter of a result; 0 when absent or not a count. Never throws (as cell()).
uint64_t count_of(const json &obj, const char *key);

// The neighbors of a node.get or neighbor.list result as a table.
void print_neighbors(const json &result, std::ostream &out);

// num / den with one decimal and unit; "-" when den is 0.
std::string ratio(double num, uint64_t den, const char *unit = "");

// ---------------------------------------------------------------------------------------------
// Options that map one to one onto request args. Only options given on the command line are
// sent, so every default lives in one place: the daemon.
class ArgOptions {
  public:
    CLI::Option *text(CLI::App *cmd, const std::string &flag, std::string key,
                      const std::string &help);
    CLI::Option *integer(CLI::App *cmd, const std::string &flag, std::string key,
                         const std::string &help);
    json args() const;

  private:
    struct Arg {
        std::string key;
        bool is_integer = false;
        std::string text;
        long long number = 0;
        CLI::Option *option = nullptr;
    };

    Arg &add(std::string key, bool is_integer);

    // unique_ptr: CLI11 keeps pointers to the bound variables.
    std::vector<std::unique_ptr<Arg>> args_;
};

// Registers a subcommand whose request is built from ArgOptions; setup adds the options.
CLI::App *add_request_command(CLI::App &parent, const std::string &name, const std::string &help,
                              const std::string &op, Command &command,
                              std::function<void(const json &, std::ostream &)> print,
                              const std::function<void(CLI::App *, ArgOptions &)> &setup = {});

// ---------------------------------------------------------------------------------------------
// Commands on the cluster store itself (fwdctl_ipam.cpp): no daemon involved.

// Runs a store command; its failures become messages and exit codes (a store that cannot be
// reached: kExitUnavailable, with how to choose another).
int run_guarded(const std::function<int()> &command);

// The --store option of one command (env FWD_IPAM_STORE), default ipam::kDefaultStoreSpec.
std::shared_ptr<std::string> add_store_option(CLI::App *cmd);

void print_json(const json &j);

// ---------------------------------------------------------------------------------------------
// `fwdctl apply -f` / `delete -f` take resources of several kinds, one file may mix them. Each
// family of kinds is one entry, registered from its own file (FWD_ON_LOAD), so a new kind is a
// new entry and no edit of the others. apply / delete run in two phases: every entry stages
// its resources (decodes, validates, plans against the store: everything that can be refused
// is refused here, nothing is written), then every entry writes, in registration order.
struct FileKinds {
    std::string name;   // "IPAM", "services": for messages
    std::string kinds;  // "IPPool, IPAMConfiguration, Node": for an unknown kind's message
    int order = 0;      // writing order, lowest first (the pools before what uses them)
    bool (*handles)(std::string_view kind) = nullptr;
    // The write step: appends {"kind", "name", "action", "document"} per resource to results;
    // nonzero (after saying what was and was not written) when it fails.
    using Write = std::function<int(json &results)>;
    // Throws (any std::exception, what() naming the file, document and field) to refuse; may
    // print warnings to stderr. del: `delete -f`.
    Write (*stage)(const std::vector<ipam::RawResource> &resources, ipam::Store &store,
                   bool del) = nullptr;
};
void register_file_kinds(FileKinds k);
std::vector<FileKinds> registered_file_kinds();  // by order

}  // namespace fwd::control::fwdctl
