// fwdctl: the command line front end of the dpdk-fwd control API, and of the IPAM store.
//
// main() only drives: the global options, the command groups (each registers itself from its
// own fwdctl_<group>.cpp, see fwdctl.hpp), parsing, then sending the request to the daemon or
// running the local command, and turning failures into messages and exit codes.
//
// Exit codes (fwdctl.hpp): 0 success, 1 the daemon answered with an error, 2 usage error, 3 the
// daemon cannot be reached.
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fwd/control/api.hpp"
#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

constexpr const char *kSocketEnv = "FWD_API_SOCKET";

int run(int argc, char **argv) {
    CLI::App app{"Control a running dpdk-fwd daemon, and the IPAM store.", "fwdctl"};
#ifdef FWD_VERSION
    app.set_version_flag("--version", std::string("fwdctl ") + FWD_VERSION);
#endif
    // Global options are also accepted after the subcommand ("fwdctl endpoint list --json").
    app.fallthrough();
    app.require_subcommand(1);

    std::string socket_path = kDefaultApiSocket;
    bool as_json = false;
    app.add_option("-s,--api-socket", socket_path, "daemon API socket")
        ->envname(kSocketEnv)
        ->capture_default_str();
    app.add_flag("--json", as_json, "print the result as JSON");

    Command command;
    for (const Group &group : registered_groups()) {
        group.add(app, command);
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        const int rc = app.exit(e);
        return rc == 0 ? kExitOk : kExitUsage;
    }
    if (command.local) {
        return command.local();
    }
    if (!command.request && !command.dialogue) {
        std::cerr << app.help();
        return kExitUsage;
    }

    try {
        ApiClient client(socket_path);
        if (command.dialogue) {
            return command.dialogue(client);
        }
        const Request &request = *command.request;
        const json result = client.call(request.op, request.args);
        if (as_json) {
            std::cout << result.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
        } else {
            request.print(result, std::cout);
        }
        return kExitOk;
    } catch (const ApiConnectionError &e) {
        std::cerr << "fwdctl: " << e.code() << ": " << e.what() << '\n'
                  << "fwdctl: is dpdk-fwd running? (API socket " << socket_path
                  << "; choose another with -s or " << kSocketEnv << ")\n";
        return kExitUnavailable;
    } catch (const ApiError &e) {
        std::cerr << "fwdctl: " << e.code() << ": " << e.what() << '\n';
        return kExitError;
    } catch (const std::exception &e) {
        std::cerr << "fwdctl: internal: " << e.what() << '\n';
        return kExitError;
    }
}

}  // namespace

}  // namespace fwd::control::fwdctl

int main(int argc, char **argv) {
    return fwd::control::fwdctl::run(argc, argv);
}
