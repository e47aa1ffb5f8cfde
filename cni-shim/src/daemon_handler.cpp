#include "daemon_handler.hpp"

#include <sys/stat.h>

#include "fwd/control/api.hpp"

namespace fwd::cni {
namespace {

using Json = nlohmann::json;

Json pool_args(const NetConf &c) {
    return {{"assign_ipv4", c.ipam.assign_ipv4},
            {"assign_ipv6", c.ipam.assign_ipv6},
            {"ipv4_pools", c.ipam.ipv4_pools},
            {"ipv6_pools", c.ipam.ipv6_pools}};
}

// The pod's network namespace must exist before the daemon is asked to move an interface there.
void require_netns(const std::string &path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        throw Error(ErrorCode::kInvalidEnvironment, "CNI_NETNS does not exist",
                    "no network namespace at '" + path + "'");
    }
}

Json attachment(const Request &req) {
    return {{"network", req.conf.name},
            {"container_id", req.inv.container_id},
            {"ifname", req.inv.ifname}};
}

// The pod the runtime names (CNI_ARGS K8S_POD_NAMESPACE, K8S_POD_NAME): the daemon finds its
// record, and its annotations, by them.
Json k8s_args(const Request &req) {
    return {{"namespace", req.inv.args.pod_namespace}, {"pod", req.inv.args.pod_name}};
}

}  // namespace

Json DaemonHandler::call(const Request &req, const std::string &op, const Json &args,
                         ErrorCode down) {
    const std::string &sock = req.conf.daemon_socket;
    try {
        control::ApiClient client(sock, timeout_ms_);
        return client.call(op, args);
    } catch (const control::ApiConnectionError &e) {
        throw Error(down, "the dpdk-fwd daemon is not reachable", e.what());
    } catch (const control::ApiError &e) {
        const std::string what = "dpdk-fwd (" + sock + ") " + op;
        if (e.code() == "unavailable") {
            throw Error(down, what + ": try again later", e.what());
        }
        if (e.code() == "invalid_argument") {
            throw Error(ErrorCode::kInvalidConfig, what + " refused the request", e.what());
        }
        if (e.code() == "not_found") {
            throw Error(ErrorCode::kUnknownContainer, what + ": unknown attachment", e.what());
        }
        if (e.code() == "exhausted") {
            throw Error(ErrorCode::kAddressesExhausted, what + ": no free address", e.what());
        }
        throw Error(ErrorCode::kInternal, what + " failed (" + e.code() + ")", e.what());
    }
}

Result result_from_reply(const Request &req, const Json &reply) {
    const Json &ep = reply.at("endpoint");
    Result ours;
    Interface host;
    host.name = ep.value("host_ifname", Json()).is_string() ? ep["host_ifname"].get<std::string>()
                                                            : std::string();
    host.mac = "ee:ee:ee:ee:ee:ee";  // the host side answers as Calico's gateway MAC
    Interface pod;
    pod.name = req.inv.ifname;
    pod.mac = ep.at("mac").get<std::string>();
    pod.mtu = ep.at("mtu").get<uint32_t>();
    pod.sandbox = req.inv.netns;
    if (ep.value("vhost_socket", Json()).is_string()) {
        pod.socket_path = ep["vhost_socket"].get<std::string>();
    }
    ours.interfaces = {host, pod};
    if (ep.value("ipv4", Json()).is_string()) {
        auto a = net::Ip4Addr::parse(ep["ipv4"].get<std::string>());
        ours.ips.push_back({net::IfAddr4{*a, 32}, std::nullopt, 1});
        Route r{*parse_prefix("0.0.0.0/0"), net::IpAddr(net::kCalicoGateway4)};
        ours.routes.push_back(r);
    }
    if (ep.value("ipv6", Json()).is_string()) {
        auto a = net::Ip6Addr::parse(ep["ipv6"].get<std::string>());
        ours.ips.push_back({net::IfAddr6{*a, 128}, std::nullopt, 1});
        Route r{*parse_prefix("::/0"), net::IpAddr(net::calico_gateway6())};
        ours.routes.push_back(r);
    }
    ours.dns = req.conf.dns;
    if (!req.conf.prev_result) {
        return ours;
    }
    // Chained after another plugin: its interfaces, addresses and routes stay, ours follow.
    Result out = *req.conf.prev_result;
    auto offset = static_cast<uint32_t>(out.interfaces.size());
    for (auto &i : ours.interfaces) {
        out.interfaces.push_back(i);
    }
    for (auto ip : ours.ips) {
        ip.interface = *ip.interface + offset;
        out.ips.push_back(ip);
    }
    for (auto &r : ours.routes) {
        out.routes.push_back(r);
    }
    if (!req.conf.dns.empty()) {
        out.dns = req.conf.dns;
    }
    return out;
}

Result DaemonHandler::add(const Request &req) {
    const bool vhost = req.wants_vhost_user();
    if (!vhost) {
        require_netns(req.inv.netns);
    }
    Json args = attachment(req);
    args.update(pool_args(req.conf));
    args["netns"] = req.inv.netns;
    args["k8s"] = k8s_args(req);
    Json ips = Json::array();
    for (const auto &a : req.requested_ips()) {
        ips.push_back(str(a));
    }
    if (!ips.empty()) {
        args["ips"] = ips;
    }
    if (req.conf.mtu && *req.conf.mtu > 0) {
        args["mtu"] = *req.conf.mtu;
    }
    if (auto mac = req.requested_mac()) {
        args["mac"] = mac->str();
    }
    if (vhost) {
        Json v{{"client", req.conf.vhost_user.client}};
        if (!req.conf.vhost_user.socket_dir.empty()) {
            v["socket_dir"] = req.conf.vhost_user.socket_dir;
        }
        if (req.conf.vhost_user.queues != 0) {
            v["queues"] = req.conf.vhost_user.queues;
        }
        args["vhost_user"] = v;
    }
    return result_from_reply(req, call(req, "cni.add", args));
}

void DaemonHandler::del(const Request &req) {
    Json args = attachment(req);
    args["k8s"] = k8s_args(req);
    call(req, "cni.del", args);
}

void DaemonHandler::check(const Request &req) {
    require_netns(req.inv.netns);
    Json args = attachment(req);
    args["netns"] = req.inv.netns;
    // What the previous result says about our pod interface: its addresses, MAC and MTU.
    const Result &prev = *req.conf.prev_result;
    std::optional<uint32_t> idx;
    for (uint32_t i = 0; i < prev.interfaces.size(); i++) {
        if (prev.interfaces[i].name == req.inv.ifname &&
            prev.interfaces[i].sandbox == req.inv.netns) {
            idx = i;
        }
    }
    if (!idx) {
        throw Error(ErrorCode::kCheckFailed, "CHECK: the previous result has no interface " +
                                                 req.inv.ifname + " in " + req.inv.netns);
    }
    Json ips = Json::array();
    for (const auto &ip : prev.ips) {
        if (ip.interface == idx) {
            ips.push_back(str(ip.address));
        }
    }
    args["ips"] = ips;
    args["mac"] = prev.interfaces[*idx].mac;
    if (prev.interfaces[*idx].mtu) {
        args["mtu"] = *prev.interfaces[*idx].mtu;
    }
    Json reply = call(req, "cni.check", args);
    const Json &diff = reply.at("differences");
    if (!diff.empty()) {
        std::string details;
        for (const auto &d : diff) {
            details += (details.empty() ? "" : "; ") + d.get<std::string>();
        }
        throw Error(ErrorCode::kCheckFailed,
                    "CHECK: " + std::to_string(diff.size()) + " difference(s) for container " +
                        req.inv.container_id + " " + req.inv.ifname,
                    details);
    }
}

void DaemonHandler::status(const Request &req) {
    // The daemon down: no ADD, and the pods it forwards for are cut off as well.
    Json reply = call(req, "cni.status", pool_args(req.conf), ErrorCode::kLimitedConnectivity);
    if (!reply.value("ready", false)) {
        throw Error(ErrorCode::kNotAvailable, "dpdk-fwd cannot serve ADD",
                    reply.value("reason", std::string("not ready")));
    }
}

void DaemonHandler::gc(const Request &req) {
    Json valid = Json::array();
    for (const auto &a : *req.conf.valid_attachments) {
        valid.push_back({{"container_id", a.container_id}, {"ifname", a.ifname}});
    }
    call(req, "cni.gc", {{"network", req.conf.name}, {"valid", valid}});
}

}  // namespace fwd::cni
