#include "fwd/cni/netconf.hpp"

#include "fwd/cni/error.hpp"
#include "fwd/cni/invocation.hpp"
#include "fwd/cni/version.hpp"
#include "json_read.hpp"

namespace fwd::cni {
namespace {

using detail::Fields;
using detail::Json;

constexpr size_t kMaxSocketPath = 107;  // sizeof(sun_path) less the NUL
constexpr uint64_t kMinMtu = 68;        // RFC 791
constexpr uint64_t kMinMtu6 = 1280;     // RFC 8200

// Calico writes assign_ipv4 / assign_ipv6 as the strings "true" / "false".
bool parse_flag(const Fields &f, std::string_view key, bool dflt) {
    const Json *v = f.get(key);
    if (v == nullptr) {
        return dflt;
    }
    if (v->is_boolean()) {
        return v->get<bool>();
    }
    if (!v->is_string()) {
        detail::wrong_type(f.path(key), "\"true\" or \"false\"", *v);
    }
    auto s = v->get<std::string>();
    if (s != "true" && s != "false") {
        f.invalid(key, "must be \"true\" or \"false\", not \"" + s + "\"");
    }
    return s == "true";
}

std::optional<std::string> abs_path(const Fields &f, std::string_view key, size_t max) {
    auto s = f.str(key);
    if (s &&
        (s->empty() || (*s)[0] != '/' || s->size() > max || s->find('\0') != std::string::npos)) {
        f.invalid(key, "must be an absolute path of at most " + std::to_string(max) +
                           " bytes, not \"" + *s + "\"");
    }
    return s;
}

// Pool CIDRs must be of the list's family; anything without a '/' is a pool name.
std::vector<std::string> parse_pools(const Fields &f, std::string_view key, net::Family want) {
    auto pools = f.strings(key);
    for (size_t i = 0; i < pools.size(); i++) {
        const auto &p = pools[i];
        std::string where = f.path(key) + "[" + std::to_string(i) + "]";
        if (p.empty()) {
            detail::invalid(where, "a pool is a CIDR or a pool name, not empty");
        }
        if (p.find('/') == std::string::npos) {
            continue;
        }
        auto prefix = parse_prefix(p);
        if (!prefix) {
            detail::invalid(where, "\"" + p + "\" is not a CIDR");
        }
        bool is4 = std::holds_alternative<net::Prefix4>(*prefix);
        if (is4 != (want == net::Family::kIp4)) {
            detail::invalid(where, "\"" + p + "\" is an IPv" + (is4 ? "4" : "6") +
                                       " CIDR in an IPv" + (is4 ? "6" : "4") + " pool list");
        }
    }
    return pools;
}

IpamConf parse_ipam(const Fields &f) {
    IpamConf c;
    if (auto t = f.str("type")) {
        if (*t != kIpamType) {
            throw Error(ErrorCode::kUnsupportedField, "unsupported ipam.type \"" + *t + "\"",
                        "dpdk-fwd-cni allocates from the dpdk-fwd daemon's Calico IPAM; "
                        "ipam.type must be \"calico-ipam\" or absent");
        }
    }
    c.assign_ipv4 = parse_flag(f, "assign_ipv4", true);
    c.assign_ipv6 = parse_flag(f, "assign_ipv6", false);
    if (!c.assign_ipv4 && !c.assign_ipv6) {
        detail::invalid(f.path(), "assign_ipv4 and assign_ipv6 are both false: nothing to assign");
    }
    c.ipv4_pools = parse_pools(f, "ipv4_pools", net::Family::kIp4);
    c.ipv6_pools = parse_pools(f, "ipv6_pools", net::Family::kIp6);
    return c;
}

VhostUserConf parse_vhost_user(const Fields &f) {
    VhostUserConf c;
    const Json *v = f.get("vhost_user");
    if (v == nullptr) {
        return c;
    }
    if (v->is_boolean()) {
        c.enabled = v->get<bool>();
        return c;
    }
    if (!v->is_object()) {
        detail::wrong_type(f.path("vhost_user"), "true, false or an object", *v);
    }
    Fields o(*v, f.path("vhost_user"));
    // Writing the object at all asks for vhost-user unless it says "enabled": false.
    c.enabled = o.boolean("enabled").value_or(true);
    auto mode = o.str("mode").value_or("server");
    if (mode != "server" && mode != "client") {
        o.invalid("mode", "must be \"server\" or \"client\", not \"" + mode + "\"");
    }
    c.client = mode == "client";
    c.socket_dir = abs_path(o, "socket_dir", kMaxSocketPath).value_or("");
    if (auto q = o.uint("queues", 8)) {
        if (*q == 0) {
            o.invalid("queues", "must be 1 to 8, not 0");
        }
        c.queues = static_cast<uint32_t>(*q);
    }
    return c;
}

AttachmentArgs parse_attachment_args(const Fields &f) {
    AttachmentArgs a;
    a.mac = detail::parsed_field(
        f, "mac", [](std::string_view s) { return net::MacAddr::parse(s); }, "a MAC address");
    if (a.mac && (a.mac->is_multicast() || a.mac->is_zero())) {
        f.invalid("mac", a.mac->str() + " is not a unicast address");
    }
    for (const auto &[e, path] : f.array("ips")) {
        if (!e->is_string()) {
            detail::wrong_type(path, "a string", *e);
        }
        auto ip = parse_ifaddr(e->get<std::string>());
        if (!ip) {
            detail::invalid(path, e->dump() + " is not an IP address");
        }
        a.ips.push_back(*ip);
    }
    a.vhost_user = f.boolean("vhost_user");
    return a;
}

std::optional<std::vector<Attachment>> parse_valid_attachments(const Fields &f) {
    std::string_view key = "cni.dev/valid-attachments";
    if (f.get(key) == nullptr) {
        key = "cni.dev/attachments";
        if (f.get(key) == nullptr) {
            return std::nullopt;
        }
    }
    std::vector<Attachment> out;
    for (const auto &[e, path] : f.array(key)) {
        Fields a(*e, path);
        Attachment att{a.required_str("containerID"), a.required_str("ifname")};
        if (!is_valid_id(att.container_id)) {
            a.invalid("containerID", "\"" + att.container_id + "\" is not a container ID");
        }
        if (const char *why = ifname_problem(att.ifname)) {
            a.invalid("ifname", why);
        }
        out.push_back(std::move(att));
    }
    return out;
}

void parse_mtu(const Fields &f, NetConf &c) {
    auto mtu = f.uint("mtu", 65535);
    if (!mtu || *mtu == 0) {
        return;  // Calico's 0: the daemon decides
    }
    if (*mtu < kMinMtu) {
        f.invalid("mtu", std::to_string(*mtu) + " is below IPv4's minimum of 68");
    }
    if (c.ipam.assign_ipv6 && *mtu < kMinMtu6) {
        f.invalid("mtu", std::to_string(*mtu) + " is below IPv6's minimum of 1280");
    }
    c.mtu = static_cast<uint32_t>(*mtu);
}

}  // namespace

NetConf netconf_from_json(const nlohmann::json &doc, Command cmd) {
    Fields f(doc, "");
    NetConf c;
    auto version = f.str("cniVersion");
    if (!version) {
        throw Error(ErrorCode::kIncompatibleVersion, "the network config has no cniVersion",
                    "libcni reads that as 0.1.0, which dpdk-fwd-cni does not support");
    }
    c.cni_version = *version;
    require_allowed(cmd, c.cni_version);

    c.name = f.required_str("name");
    if (!is_valid_id(c.name)) {
        f.invalid("name", "\"" + c.name +
                              "\" must start with a letter or digit, followed by letters, digits, "
                              "'_', '.' or '-'");
    }
    c.type = f.required_str("type");
    if (auto ipam = f.object("ipam")) {
        c.ipam = parse_ipam(*ipam);
    }
    parse_mtu(f, c);
    c.daemon_socket = abs_path(f, "dpdk_fwd_socket", kMaxSocketPath).value_or(c.daemon_socket);
    c.vhost_user = parse_vhost_user(f);
    if (auto dns = f.get("dns")) {
        c.dns = parse_dns(*dns, "dns");
    }
    if (auto rc = f.object("runtimeConfig")) {
        c.runtime_config = parse_attachment_args(*rc);
    }
    if (auto args = f.object("args")) {
        if (auto cni = args->object("cni")) {
            c.cni_args = parse_attachment_args(*cni);
        }
    }
    if (auto prev = f.get("prevResult")) {
        c.prev_result = parse_result(*prev, "prevResult");
    } else if (cmd == Command::kCheck) {
        throw Error(ErrorCode::kInvalidConfig, "missing prevResult",
                    "CHECK needs the result of the ADD in prevResult");
    }
    c.valid_attachments = parse_valid_attachments(f);
    if (cmd == Command::kGc && !c.valid_attachments) {
        throw Error(ErrorCode::kInvalidConfig, "missing cni.dev/valid-attachments",
                    "GC needs the list of attachments to keep (an empty list releases all)");
    }
    c.raw = doc;
    return c;
}

NetConf parse_netconf(std::string_view text, Command cmd) {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
        throw Error(ErrorCode::kDecodeFailure, "no network config on stdin",
                    std::string(command_name(cmd)) + " needs the network config as JSON on stdin");
    }
    Json doc;
    try {
        doc = Json::parse(text);
    } catch (const Json::parse_error &e) {
        throw Error(ErrorCode::kDecodeFailure, "the network config is not valid JSON", e.what());
    }
    return netconf_from_json(doc, cmd);
}

}  // namespace fwd::cni
