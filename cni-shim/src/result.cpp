#include "fwd/cni/result.hpp"

#include <cstdint>
#include <limits>

#include "fwd/cni/error.hpp"
#include "fwd/cni/version.hpp"
#include "json_read.hpp"

namespace fwd::cni {
namespace {

using detail::Fields;
using detail::Json;
using detail::parsed_field;
using detail::required_field;

constexpr uint64_t kU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kI32 = std::numeric_limits<int32_t>::max();

// Picks the family by the presence of ':' and parses with the matching parser.
template <typename V>
std::optional<V> by_family(std::string_view s, auto parse4, auto parse6) {
    if (s.find(':') != std::string_view::npos) {
        if (auto a = parse6(s)) {
            return V{*a};
        }
    } else if (auto a = parse4(s)) {
        return V{*a};
    }
    return std::nullopt;
}

std::optional<net::IpAddr> parse_ip(std::string_view s) {
    return net::IpAddr::parse(s);
}

std::optional<uint32_t> u32_field(const Fields &f, std::string_view key, uint64_t max = kU32) {
    auto v = f.uint(key, max);
    return v ? std::optional<uint32_t>(static_cast<uint32_t>(*v)) : std::nullopt;
}

// Optional members go out only when set, strings and lists only when not empty.
template <typename T>
void put(Json &j, const char *key, const std::optional<T> &v) {
    if (v) {
        j[key] = *v;
    }
}

template <typename T>
void put(Json &j, const char *key, const T &v) {
    if (!v.empty()) {
        j[key] = v;
    }
}

Interface parse_interface(const Fields &f) {
    Interface i;
    i.name = f.required_str("name");
    i.mac = f.str("mac").value_or("");
    i.sandbox = f.str("sandbox").value_or("");
    i.mtu = u32_field(f, "mtu");
    i.socket_path = f.str("socketPath").value_or("");
    i.pci_id = f.str("pciID").value_or("");
    return i;
}

IpConfig parse_ip_config(const Fields &f) {
    IpConfig ip{required_field(f, "address", parse_ifaddr, "an address in CIDR notation")};
    ip.gateway = parsed_field(f, "gateway", parse_ip, "an IP address");
    ip.interface = u32_field(f, "interface", kI32);
    // 0.x results say the family; it must agree with the address.
    if (auto v = f.str("version")) {
        const char *want = family(ip.address) == net::Family::kIp4 ? "4" : "6";
        if (*v != want) {
            f.invalid("version", "\"" + *v + "\" does not match the address " + str(ip.address) +
                                     " (version " + want + ")");
        }
    }
    return ip;
}

Route parse_route(const Fields &f) {
    Route r{required_field(f, "dst", parse_prefix, "a prefix in CIDR notation")};
    r.gw = parsed_field(f, "gw", parse_ip, "an IP address");
    r.mtu = u32_field(f, "mtu");
    r.advmss = u32_field(f, "advmss");
    r.priority = u32_field(f, "priority");
    r.table = u32_field(f, "table");
    r.scope = u32_field(f, "scope", 255);
    return r;
}

// Parses every element of the array field `key` as an object with `parse`.
template <typename T, typename Parse>
std::vector<T> parse_list(const Fields &f, std::string_view key, Parse parse) {
    std::vector<T> out;
    for (const auto &[e, path] : f.array(key)) {
        out.push_back(parse(Fields(*e, path)));
    }
    return out;
}

// Sets out[key] to the rendered elements of v, unless v is empty.
template <typename T, typename Render>
void put_list(Json &out, const char *key, const std::vector<T> &v, Render render) {
    if (v.empty()) {
        return;
    }
    Json a = Json::array();
    for (const auto &x : v) {
        a.push_back(render(x));
    }
    out[key] = std::move(a);
}

Json render_ip(const IpConfig &ip, bool v1, size_t n_interfaces) {
    if (ip.interface && *ip.interface >= n_interfaces) {
        throw Error(ErrorCode::kInternal, "result is inconsistent",
                    "ip " + str(ip.address) + " points at interface " +
                        std::to_string(*ip.interface) + " of " + std::to_string(n_interfaces));
    }
    Json j = {{"address", str(ip.address)}};
    if (!v1) {
        j["version"] = family(ip.address) == net::Family::kIp4 ? "4" : "6";
    }
    if (ip.gateway) {
        j["gateway"] = ip.gateway->str();
    }
    put(j, "interface", ip.interface);
    return j;
}

Json render_interface(const Interface &i, bool v1) {
    Json j = {{"name", i.name}};
    put(j, "mac", i.mac);
    put(j, "sandbox", i.sandbox);
    if (v1) {
        put(j, "mtu", i.mtu);
        put(j, "socketPath", i.socket_path);
        put(j, "pciID", i.pci_id);
    }
    return j;
}

Json render_route(const Route &r, bool v1) {
    Json j = {{"dst", net::str(r.dst)}};
    if (r.gw) {
        j["gw"] = r.gw->str();
    }
    if (v1) {
        put(j, "mtu", r.mtu);
        put(j, "advmss", r.advmss);
        put(j, "priority", r.priority);
        put(j, "table", r.table);
        put(j, "scope", r.scope);
    }
    return j;
}

}  // namespace

std::optional<IfAddr> parse_ifaddr(std::string_view s) {
    return by_family<IfAddr>(s, net::IfAddr4::parse, net::IfAddr6::parse);
}

std::optional<net::AnyPrefix> parse_prefix(std::string_view s) {
    return by_family<net::AnyPrefix>(
        s, [](std::string_view x) { return net::Prefix4::parse(x, true); },
        [](std::string_view x) { return net::Prefix6::parse(x, true); });
}

std::string str(const IfAddr &a) {
    return std::visit([](const auto &x) { return x.str(); }, a);
}

net::Family family(const IfAddr &a) {
    return std::holds_alternative<net::IfAddr4>(a) ? net::Family::kIp4 : net::Family::kIp6;
}

net::IpAddr addr_of(const IfAddr &a) {
    return std::visit([](const auto &x) { return net::IpAddr(x.addr); }, a);
}

Dns parse_dns(const nlohmann::json &j, const std::string &path) {
    Fields f(j, path);
    Dns d;
    d.nameservers = f.strings("nameservers");
    d.domain = f.str("domain").value_or("");
    d.search = f.strings("search");
    d.options = f.strings("options");
    return d;
}

nlohmann::json render_dns(const Dns &d) {
    Json j = Json::object();
    put(j, "nameservers", d.nameservers);
    put(j, "domain", d.domain);
    put(j, "search", d.search);
    put(j, "options", d.options);
    return j;
}

nlohmann::json render_result(const Result &r, std::string_view cni_version) {
    bool v1 = require_supported(cni_version).major >= 1;
    Json out = {{"cniVersion", cni_version}};
    put_list(out, "interfaces", r.interfaces,
             [&](const auto &i) { return render_interface(i, v1); });
    put_list(out, "ips", r.ips,
             [&](const auto &ip) { return render_ip(ip, v1, r.interfaces.size()); });
    put_list(out, "routes", r.routes, [&](const auto &rt) { return render_route(rt, v1); });
    if (!r.dns.empty()) {
        out["dns"] = render_dns(r.dns);
    }
    return out;
}

Result parse_result(const nlohmann::json &j, const std::string &path) {
    Fields f(j, path);
    Result r;
    r.interfaces = parse_list<Interface>(f, "interfaces", parse_interface);
    r.ips = parse_list<IpConfig>(f, "ips", parse_ip_config);
    r.routes = parse_list<Route>(f, "routes", parse_route);
    if (auto d = f.get("dns")) {
        r.dns = parse_dns(*d, f.path("dns"));
    }
    return r;
}

}  // namespace fwd::cni
