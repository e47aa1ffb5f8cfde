#include "fwd/cni/invocation.hpp"

#include <array>
#include <cstring>

#include "fwd/cni/error.hpp"

namespace fwd::cni {
namespace {

[[noreturn]] void bad_env(std::string msg, std::string details) {
    throw Error(ErrorCode::kInvalidEnvironment, std::move(msg), std::move(details));
}

std::string value_of(const Env &env, std::string_view name) {
    auto it = env.find(name);
    return it == env.end() ? std::string() : it->second;
}

bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Which variables each verb requires besides CNI_COMMAND.
struct Required {
    bool container_id;
    bool netns;
    bool ifname;
    bool path;
};

Required required_for(Command cmd) {
    switch (cmd) {
        case Command::kAdd:
        case Command::kCheck:
            return {true, true, true, false};
        case Command::kDel:
            return {true, false, true, false};
        case Command::kGc:
            return {false, false, false, true};
        case Command::kStatus:
        case Command::kVersion:
            break;
    }
    return {false, false, false, false};
}

std::vector<std::string> split_path(std::string_view s) {
    std::vector<std::string> out;
    while (!s.empty()) {
        auto colon = s.find(':');
        auto part = s.substr(0, colon);
        if (!part.empty()) {
            out.emplace_back(part);
        }
        s = colon == std::string_view::npos ? std::string_view() : s.substr(colon + 1);
    }
    return out;
}

// libcni's UnmarshallableBool: 1 / true / 0 / false, any case.
bool parse_args_bool(std::string_view key, std::string_view v) {
    std::string lower(v);
    for (char &c : lower) {
        c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    if (lower == "1" || lower == "true") {
        return true;
    }
    if (lower == "0" || lower == "false") {
        return false;
    }
    bad_env("invalid " + std::string(key) + " in CNI_ARGS",
            std::string(key) + " must be 1, true, 0 or false, not \"" + std::string(v) + "\"");
}

}  // namespace

Env env_from(char **envp) {
    Env env;
    for (char **e = envp; e != nullptr && *e != nullptr; e++) {
        const char *eq = std::strchr(*e, '=');
        if (eq != nullptr) {
            env[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
        }
    }
    return env;
}

CniArgs parse_cni_args(std::string_view s) {
    CniArgs a;
    std::string unknown;
    while (!s.empty()) {
        auto semi = s.find(';');
        auto pair = s.substr(0, semi);
        s = semi == std::string_view::npos ? std::string_view() : s.substr(semi + 1);
        if (pair.empty()) {
            continue;
        }
        auto eq = pair.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            bad_env("invalid CNI_ARGS", "\"" + std::string(pair) + "\" is not KEY=VALUE");
        }
        std::string key(pair.substr(0, eq));
        std::string value(pair.substr(eq + 1));
        if (key == "IgnoreUnknown") {
            a.ignore_unknown = parse_args_bool(key, value);
        } else if (key == "K8S_POD_NAMESPACE") {
            a.pod_namespace = value;
        } else if (key == "K8S_POD_NAME") {
            a.pod_name = value;
        } else if (key == "K8S_POD_INFRA_CONTAINER_ID") {
            a.infra_container_id = value;
        } else if (key == "K8S_POD_UID") {
            a.pod_uid = value;
        } else if (key == "IP") {
            a.ip = net::IpAddr::parse(value);
            if (!a.ip) {
                bad_env("invalid IP in CNI_ARGS", "\"" + value + "\" is not an IP address");
            }
        } else if (unknown.empty()) {
            unknown = key;
        }
        a.pairs.emplace_back(std::move(key), std::move(value));
    }
    // IgnoreUnknown may come after the unknown key, so this is decided at the end.
    if (!unknown.empty() && !a.ignore_unknown) {
        bad_env("unknown key \"" + unknown + "\" in CNI_ARGS",
                "dpdk-fwd-cni knows K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, "
                "K8S_POD_UID and IP; IgnoreUnknown=1 lets others through");
    }
    return a;
}

bool is_valid_id(std::string_view s) {
    if (s.empty() || !is_alnum(s[0])) {
        return false;
    }
    for (char c : s) {
        if (!is_alnum(c) && c != '_' && c != '.' && c != '-') {
            return false;
        }
    }
    return true;
}

void validate_container_id(std::string_view id) {
    if (!is_valid_id(id)) {
        bad_env("invalid CNI_CONTAINERID \"" + std::string(id) + "\"",
                "a container ID starts with a letter or digit, followed by letters, digits, "
                "'_', '.' or '-'");
    }
}

const char *ifname_problem(std::string_view name) {
    if (name.empty()) {
        return "an interface name must not be empty";
    }
    if (name.size() > 15) {
        return "an interface name has at most 15 bytes (IFNAMSIZ less the NUL)";
    }
    if (name == "." || name == "..") {
        return "an interface name must not be \".\" or \"..\"";
    }
    for (char c : name) {
        // strchr also finds the terminator, so a NUL byte is refused with the whitespace.
        if (c == '/' || c == ':' || std::strchr(" \t\n\v\f\r", c) != nullptr) {
            return "an interface name must not contain '/', ':' or whitespace";
        }
    }
    return nullptr;
}

void validate_ifname(std::string_view name) {
    if (const char *why = ifname_problem(name)) {
        bad_env("invalid CNI_IFNAME \"" + std::string(name) + "\"", why);
    }
}

Invocation parse_invocation(const Env &env) {
    Invocation inv;
    std::string cmd = value_of(env, "CNI_COMMAND");
    if (cmd.empty()) {
        bad_env("required environment variable missing: CNI_COMMAND",
                "CNI_COMMAND is one of ADD, DEL, CHECK, STATUS, GC, VERSION");
    }
    auto parsed = parse_command(cmd);
    if (!parsed) {
        bad_env("invalid CNI_COMMAND \"" + cmd + "\"",
                "CNI_COMMAND is one of ADD, DEL, CHECK, STATUS, GC, VERSION");
    }
    inv.command = *parsed;
    Required req = required_for(inv.command);
    const std::array<std::pair<const char *, bool>, 4> vars = {
        {{"CNI_CONTAINERID", req.container_id},
         {"CNI_NETNS", req.netns},
         {"CNI_IFNAME", req.ifname},
         {"CNI_PATH", req.path}}};
    std::string missing;
    for (const auto &[name, needed] : vars) {
        if (needed && value_of(env, name).empty()) {
            missing += missing.empty() ? "" : ", ";
            missing += name;
        }
    }
    if (!missing.empty()) {
        bad_env("required environment variables missing: " + missing,
                std::string(command_name(inv.command)) + " needs them set and not empty");
    }
    if (req.container_id) {
        inv.container_id = value_of(env, "CNI_CONTAINERID");
        validate_container_id(inv.container_id);
        // Optional on DEL, but used when given.
        inv.netns = value_of(env, "CNI_NETNS");
    }
    if (req.ifname) {
        inv.ifname = value_of(env, "CNI_IFNAME");
        validate_ifname(inv.ifname);
    }
    if (inv.command != Command::kVersion) {
        inv.args = parse_cni_args(value_of(env, "CNI_ARGS"));
    }
    inv.path = split_path(value_of(env, "CNI_PATH"));
    return inv;
}

}  // namespace fwd::cni
