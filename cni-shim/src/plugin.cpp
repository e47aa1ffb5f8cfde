#include "fwd/cni/plugin.hpp"

#include "fwd/cni/version.hpp"

#ifndef FWD_VERSION
#define FWD_VERSION "dev"
#endif

namespace fwd::cni {
namespace {

using Json = nlohmann::json;

// VERSION's stdin is {"cniVersion": ...} at most; libcni's plugins do not even read it.
std::string version_request(std::string_view text) {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        return "";
    }
    Json doc;
    try {
        doc = Json::parse(text);
    } catch (const Json::parse_error &e) {
        throw Error(ErrorCode::kDecodeFailure, "the VERSION request is not valid JSON", e.what());
    }
    auto it = doc.is_object() ? doc.find("cniVersion") : doc.end();
    if (!doc.is_object() || (it != doc.end() && !it->is_string())) {
        throw Error(ErrorCode::kDecodeFailure, "cannot decode the VERSION request",
                    "expected {\"cniVersion\": \"<version>\"}, got " + doc.dump());
    }
    return it == doc.end() ? "" : it->get<std::string>();
}

std::string about() {
    std::string versions;
    for (auto v : kSupportedVersions) {
        versions += versions.empty() ? "" : ", ";
        versions += v;
    }
    return std::string("dpdk-fwd-cni ") + FWD_VERSION +
           ": CNI plugin of dpdk-fwd\nCNI protocol versions supported: " + versions + "\n";
}

std::string output(const Json &j) {
    return j.dump(4) + "\n";
}

}  // namespace

std::string Request::handle() const {
    return conf.name + "." + inv.container_id;
}

bool Request::wants_vhost_user() const {
    return conf.runtime_config.vhost_user.value_or(
        conf.cni_args.vhost_user.value_or(conf.vhost_user.enabled));
}

std::optional<net::MacAddr> Request::requested_mac() const {
    return conf.runtime_config.mac ? conf.runtime_config.mac : conf.cni_args.mac;
}

std::vector<IfAddr> Request::requested_ips() const {
    if (!conf.runtime_config.ips.empty()) {
        return conf.runtime_config.ips;
    }
    if (!conf.cni_args.ips.empty()) {
        return conf.cni_args.ips;
    }
    std::vector<IfAddr> out;
    if (inv.args.ip) {
        const auto &ip = *inv.args.ip;
        if (ip.family() == net::Family::kIp4) {
            out.push_back(net::IfAddr4{ip.v4(), 32});
        } else {
            out.push_back(net::IfAddr6{ip.v6(), 128});
        }
    }
    return out;
}

Request parse_request(const Env &env, std::string_view stdin_text) {
    Request r;
    r.inv = parse_invocation(env);
    if (r.inv.command == Command::kVersion) {
        r.conf.cni_version = version_request(stdin_text);
    } else {
        r.conf = parse_netconf(stdin_text, r.inv.command);
    }
    return r;
}

std::string error_version(std::string_view stdin_text) {
    auto doc = Json::parse(stdin_text, nullptr, false);
    if (doc.is_object()) {
        auto it = doc.find("cniVersion");
        if (it != doc.end() && it->is_string()) {
            return it->get<std::string>();
        }
    }
    return std::string(kLatestVersion);
}

Reply run(const Env &env, std::string_view stdin_text, Handler &handler) {
    auto cmd = env.find("CNI_COMMAND");
    if (cmd == env.end() || cmd->second.empty()) {
        return {0, "", about()};
    }
    Reply reply;
    try {
        Request req = parse_request(env, stdin_text);
        switch (req.inv.command) {
            case Command::kAdd:
                reply.out = output(render_result(handler.add(req), req.conf.cni_version));
                break;
            case Command::kDel:
                handler.del(req);
                break;
            case Command::kCheck:
                handler.check(req);
                break;
            case Command::kStatus:
                handler.status(req);
                break;
            case Command::kGc:
                handler.gc(req);
                break;
            case Command::kVersion:
                reply.out = output(version_json(req.conf.cni_version));
                break;
        }
        return reply;
    } catch (const Error &e) {
        return {1, output(error_json(e, error_version(stdin_text))), ""};
    } catch (const std::exception &e) {
        Error internal(ErrorCode::kInternal, "dpdk-fwd-cni failed", e.what());
        return {1, output(error_json(internal, error_version(stdin_text))), ""};
    }
}

}  // namespace fwd::cni
