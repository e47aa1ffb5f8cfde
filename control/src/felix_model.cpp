// FelixConfiguration: decoding and validation in Calico's validator's words
// (fwd/control/felix.hpp), the settings a node gets from the default and its own resource, and
// their JSON.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <string_view>
#include <utility>

#include "fwd/control/felix.hpp"
#include "fwd/ipam/model.hpp"
#include "fwd/net/addr.hpp"
#include "k8s_decode.hpp"

namespace fwd::felix {

using nlohmann::json;
using namespace k8s;

namespace {

// The fields that take effect here (felix.hpp).
constexpr const char *kSupported[] = {"healthEnabled",
                                      "healthHost",
                                      "healthPort",
                                      "prometheusMetricsEnabled",
                                      "prometheusMetricsHost",
                                      "prometheusMetricsPort",
                                      "logSeverityScreen",
                                      "failsafeInboundHostPorts",
                                      "failsafeOutboundHostPorts",
                                      "natPortRange",
                                      "vxlanPort",
                                      "vxlanVNI",
                                      "vxlanMTU",
                                      "vxlanMTUV6",
                                      "ipv6Support"};

// Calico's fields that do not apply to this dataplane, by name or by the prefix of a family of
// them, with what to do instead. Accepted with a warning each: a resource written for Calico
// applies, and says what it did not change.
struct Unsupported {
    const char *name;  // a field, or a prefix ending in '*'
    const char *why;
};
constexpr Unsupported kUnsupported[] = {
    {"iptables*", "no iptables here (the dataplane is DPDK)"},
    {"nftables*", "no nftables here (the dataplane is DPDK)"},
    {"ipsets*", "no ipsets here"},
    {"maxIpsetSize", "no ipsets here"},
    {"chainInsertMode", "no iptables here"},
    {"bpf*", "no BPF dataplane here"},
    {"xdp*", "no XDP here"},
    {"genericXDPEnabled", "no XDP here"},
    {"wireguard*", "no WireGuard here"},
    {"flowLogs*", "no flow logs here"},
    {"dnsLogs*", "no DNS logs here"},
    {"usageReporting*", "no usage reporting here"},
    {"debug*", "no Felix debug hooks here"},
    {"windows*", "not a Windows node"},
    {"openstackRegion", "no OpenStack here"},
    {"metadataAddr", "no OpenStack metadata here"},
    {"metadataPort", "no OpenStack metadata here"},
    {"aws*", "no AWS integration here"},
    {"ipip*", "IP-in-IP is set by the pools' ipipMode"},
    {"mtu", "the pod MTU is the node config's node.mtu (CNI), the tunnels' vxlanMTU / vxlanMTUV6"},
    {"vxlanEnabled", "VXLAN follows the pools' vxlanMode"},
    {"vxlanEnabledV6", "VXLAN follows the pools' vxlanMode"},
    {"defaultEndpointToHostAction", "set the node config's policy.defaultEndpointToHostAction"},
    {"logSeverityFile", "the daemon logs to stderr only (logSeverityScreen)"},
    {"logSeveritySys", "the daemon logs to stderr only (logSeverityScreen)"},
    {"logFilePath", "the daemon logs to stderr only"},
    {"logPrefix", "policy Log rules write the daemon's log"},
    {"logDebugFilenameRegex", "no per-file debug filter here"},
    {"healthTimeoutOverrides", "the liveness timeouts are fixed (10 s)"},
    {"prometheusGoMetricsEnabled", "no Go runtime here"},
    {"prometheusProcessMetricsEnabled", "no process metrics here"},
    {"prometheusWireGuardMetricsEnabled", "no WireGuard here"},
    {"*RefreshInterval", "the daemon follows netlink and the store's revision instead"},
    {"reportingInterval", "no status reports into the store here"},
    {"reportingTTL", "no status reports into the store here"},
    {"endpointReporting*", "no endpoint status reports here"},
    {"endpointStatusPathPrefix", "no endpoint status files here"},
    {"natOutgoingAddress", "natOutgoing uses the node's address"},
    {"interfacePrefix", "pod interfaces are the daemon's own"},
    {"interfaceExclude", "no host endpoints here"},
    {"ipForwarding", "the dataplane forwards by itself"},
    {"kubeNodePortRanges", "no kube-proxy IPVS here"},
    {"serviceLoopPrevention", "not implemented here"},
    {"routeTable*", "routes live in the dataplane's tables"},
    {"routeSource", "routes come from the pools and the blocks"},
    {"removeExternalRoutes", "routes live in the dataplane's tables"},
    {"deviceRoute*", "routes live in the dataplane's tables"},
    {"externalNodesList", "not implemented here"},
    {"featureDetectOverride", "no kernel feature detection here"},
    {"featureGates", "no Felix feature gates here"},
    {"floatingIPs", "not implemented here"},
    {"policySyncPathPrefix", "no policy sync API here"},
    {"sidecarAccelerationEnabled", "not implemented here"},
    {"disableConntrackInvalidCheck", "not implemented here"},
    {"dataplaneDriver", "the dataplane is this daemon"},
    {"useInternalDataplaneDriver", "the dataplane is this daemon"},
    {"dataplaneWatchdogTimeout", "the liveness timeouts are fixed (10 s)"},
    {"netlinkTimeout", "not implemented here"},
    {"allowVXLANPacketsFromWorkloads", "not implemented here"},
    {"allowIPIPPacketsFromWorkloads", "not implemented here"},
    {"typha*", "no Typha here"},
    {"goGCThreshold", "no Go runtime here"},
    {"goMemoryLimitMB", "no Go runtime here"},
    {"goMaxProcs", "no Go runtime here"},
    {"programClusterRoutes", "routes live in the dataplane's tables"},
    {"nfNetlinkBufSize", "no netfilter here"},
    {"cgroupV2Path", "no cgroup hooks here"},
};

const Unsupported *unsupported_field(std::string_view key) {
    for (const auto &u : kUnsupported) {
        std::string_view n = u.name;
        if (n.starts_with('*') ? key.ends_with(n.substr(1))
            : n.ends_with('*') ? key.starts_with(n.substr(0, n.size() - 1))
                               : key == n) {
            return &u;
        }
    }
    return nullptr;
}

uint16_t port_field(const Decoder &d, const json &spec, const char *key) {
    const auto v = d.integer(spec, key, "spec");
    if (*v < 1 || *v > 65535) {
        d.fail(std::string("spec.") + key,
               invalid(std::to_string(*v), "must be between 1 and 65535"));
    }
    return static_cast<uint16_t>(*v);
}

// Calico's prometheusHost / healthHost: an address to bind. "::" and "" listen on every IPv4
// and IPv6 address (a Go listener on "::" takes both); no name is resolved here.
std::string host_field(const Decoder &d, const json &spec, const char *key) {
    const std::string h = *d.str(spec, key, "spec");
    if (h.empty() || h == "::") {
        return "";
    }
    if (h == "localhost" || net::IpAddr::parse(h)) {
        return h;
    }
    d.fail(std::string("spec.") + key,
           invalid(json_quoted(h),
                   "not an IP address (names are not resolved here; \"\" or "
                   "\"::\" for every address, \"localhost\" for the loopback)"));
}

std::vector<ProtoPort> failsafe_field(const Decoder &d, const json &spec, const char *key) {
    std::vector<ProtoPort> out;
    const std::string path = std::string("spec.") + key;
    const json &l = d.list(spec, key, "spec");
    for (size_t i = 0; i < l.size(); ++i) {
        const std::string p = at(path, i);
        const json o = d.object(l[i], p, {"protocol", "port", "net"});
        ProtoPort pp;
        if (auto proto = d.str(o, "protocol", p)) {
            std::string up = *proto;
            std::transform(up.begin(), up.end(), up.begin(),
                           [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
            if (up != "TCP" && up != "UDP" && up != "SCTP") {
                d.fail(p + ".protocol", unsupported(*proto, {"TCP", "UDP", "SCTP"}));
            }
            pp.protocol = up;
        }
        const auto port = d.integer(o, "port", p);
        if (!port) {
            d.fail(p + ".port", required());
        }
        if (*port < 0 || *port > 65535) {
            d.fail(p + ".port", invalid(std::to_string(*port), "must be between 0 and 65535"));
        }
        pp.port = static_cast<uint16_t>(*port);
        if (auto n = d.str(o, "net", p); n && !n->empty()) {
            if (!ipam::Cidr::parse(*n)) {
                d.fail(p + ".net", invalid(json_quoted(*n), "invalid CIDR"));
            }
            pp.net = *n;
        }
        out.push_back(pp);
    }
    return out;
}

// Calico's numorstring.Port for natPortRange: a number, or "lo:hi".
PortRange port_range_field(const Decoder &d, const json &spec) {
    const json &v = spec["natPortRange"];
    const std::string field = "spec.natPortRange";
    auto bad = [&] {
        d.fail(field, invalid(v.dump(), "a port (1-65535) or a range \"lo:hi\" with lo <= hi"));
    };
    auto number = [&](std::string_view s) {
        unsigned n = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
        if (s.empty() || ec != std::errc() || p != s.data() + s.size() || n < 1 || n > 65535) {
            bad();
        }
        return static_cast<uint16_t>(n);
    };
    if (v.is_number_integer()) {
        const int64_t n = v.get<int64_t>();
        if (n < 1 || n > 65535) {
            bad();
        }
        return {static_cast<uint16_t>(n), static_cast<uint16_t>(n)};
    }
    if (!v.is_string()) {
        bad();
    }
    const std::string s = v.get<std::string>();
    const size_t colon = s.find(':');
    if (colon == std::string::npos) {
        const uint16_t n = number(s);
        return {n, n};
    }
    PortRange r{number(std::string_view(s).substr(0, colon)),
                number(std::string_view(s).substr(colon + 1))};
    if (r.lo > r.hi) {
        bad();
    }
    return r;
}

template <typename T>
T range_field(const Decoder &d, const json &spec, const char *key, int64_t lo, int64_t hi,
              const char *why) {
    const auto v = d.integer(spec, key, "spec");
    if (*v < lo || *v > hi) {
        d.fail(std::string("spec.") + key, invalid(std::to_string(*v), why));
    }
    return static_cast<T>(*v);
}

constexpr const char *kSeverities[] = {"Debug", "Info", "Warning", "Error", "Fatal"};

}  // namespace

bool is_felix_kind(std::string_view kind) {
    return kind == "FelixConfiguration";
}

FelixConfiguration decode_spec(const std::string &name, const json &spec_in, Decoder &d) {
    FelixConfiguration c;
    c.name = name;
    if (!spec_in.is_null() && !spec_in.is_object()) {
        d.fail("spec", "want a mapping, got " + spec_in.dump());
    }
    static const json kEmpty = json::object();
    const json &given = spec_in.is_object() ? spec_in : kEmpty;
    json spec = json::object();
    for (const auto &[key, v] : given.items()) {
        if (std::any_of(std::begin(kSupported), std::end(kSupported),
                        [&key = key](const char *k) { return key == k; })) {
            if (!v.is_null()) {
                spec[key] = v;
            }
        } else if (const Unsupported *u = unsupported_field(key)) {
            d.warn("spec." + key, std::string("not supported by dpdk-fwd, ignored: ") + u->why);
        } else {
            d.fail("spec." + key, "unknown field (not a FelixConfiguration field dpdk-fwd knows)");
        }
    }
    c.health_enabled = d.boolean(spec, "healthEnabled", "spec");
    if (spec.contains("healthHost")) {
        c.health_host = host_field(d, spec, "healthHost");
    }
    if (spec.contains("healthPort")) {
        c.health_port = port_field(d, spec, "healthPort");
    }
    c.metrics_enabled = d.boolean(spec, "prometheusMetricsEnabled", "spec");
    if (spec.contains("prometheusMetricsHost")) {
        c.metrics_host = host_field(d, spec, "prometheusMetricsHost");
    }
    if (spec.contains("prometheusMetricsPort")) {
        c.metrics_port = port_field(d, spec, "prometheusMetricsPort");
    }
    if (auto l = d.str(spec, "logSeverityScreen", "spec")) {
        // Calico's pattern is case-insensitive; kept in its own spelling
        auto it = std::find_if(std::begin(kSeverities), std::end(kSeverities), [&](const char *s) {
            return std::equal(l->begin(), l->end(), s, s + std::char_traits<char>::length(s),
                              [](char a, char b) { return std::tolower(a) == std::tolower(b); });
        });
        if (it == std::end(kSeverities)) {
            d.fail("spec.logSeverityScreen",
                   unsupported(*l, {"Debug", "Info", "Warning", "Error", "Fatal"}));
        }
        c.log_severity = *it;
    }
    if (spec.contains("failsafeInboundHostPorts")) {
        c.failsafe_in = failsafe_field(d, spec, "failsafeInboundHostPorts");
    }
    if (spec.contains("failsafeOutboundHostPorts")) {
        c.failsafe_out = failsafe_field(d, spec, "failsafeOutboundHostPorts");
    }
    if (spec.contains("natPortRange")) {
        c.nat_port_range = port_range_field(d, spec);
    }
    if (spec.contains("vxlanPort")) {
        c.vxlan_port = port_field(d, spec, "vxlanPort");
    }
    if (spec.contains("vxlanVNI")) {
        c.vxlan_vni = range_field<uint32_t>(d, spec, "vxlanVNI", 1, (1 << 24) - 1,
                                            "must be between 1 and 16777215 (24 bits)");
    }
    if (spec.contains("vxlanMTU")) {
        c.vxlan_mtu = range_field<uint16_t>(d, spec, "vxlanMTU", 576, 8950,
                                            "must be between 576 and 8950 (9000 less VXLAN's 50)");
    }
    if (spec.contains("vxlanMTUV6")) {
        c.vxlan_mtu_v6 = range_field<uint16_t>(
            d, spec, "vxlanMTUV6", 1280, 8930,
            "must be between 1280 (IPv6's minimum) and 8930 (9000 less VXLAN's 70)");
    }
    if (d.boolean(spec, "ipv6Support", "spec") == std::optional<bool>(false)) {
        d.fail("spec.ipv6Support", forbidden("IPv6 is always on in dpdk-fwd (dual-stack)"));
    }
    if (name != "default" && !name.starts_with("node.")) {
        d.warn("metadata.name",
               "only 'default' and 'node.<node>' FelixConfigurations are read (Calico's rule)");
    }
    return c;
}

FelixConfiguration effective(const std::vector<FelixConfiguration> &configs,
                             const std::string &node) {
    FelixConfiguration out;
    out.name = node;
    auto overlay = [&out](const FelixConfiguration &c) {
        auto take = [](auto &dst, const auto &src) {
            if (src) {
                dst = src;
            }
        };
        take(out.health_enabled, c.health_enabled);
        take(out.health_host, c.health_host);
        take(out.health_port, c.health_port);
        take(out.metrics_enabled, c.metrics_enabled);
        take(out.metrics_host, c.metrics_host);
        take(out.metrics_port, c.metrics_port);
        take(out.log_severity, c.log_severity);
        take(out.failsafe_in, c.failsafe_in);
        take(out.failsafe_out, c.failsafe_out);
        take(out.nat_port_range, c.nat_port_range);
        take(out.vxlan_port, c.vxlan_port);
        take(out.vxlan_vni, c.vxlan_vni);
        take(out.vxlan_mtu, c.vxlan_mtu);
        take(out.vxlan_mtu_v6, c.vxlan_mtu_v6);
    };
    for (const char *which : {"default", ""}) {
        const std::string want = *which != '\0' ? std::string(which) : "node." + node;
        for (const auto &c : configs) {
            if (c.name == want) {
                overlay(c);
            }
        }
    }
    return out;
}

json to_json(const FelixConfiguration &c) {
    json j = json::object();
    auto put = [&j](const char *k, const auto &v) {
        if (v) {
            j[k] = *v;
        }
    };
    put("healthEnabled", c.health_enabled);
    put("healthHost", c.health_host);
    put("healthPort", c.health_port);
    put("prometheusMetricsEnabled", c.metrics_enabled);
    put("prometheusMetricsHost", c.metrics_host);
    put("prometheusMetricsPort", c.metrics_port);
    put("logSeverityScreen", c.log_severity);
    for (auto [k, v] : {std::pair{"failsafeInboundHostPorts", &c.failsafe_in},
                        std::pair{"failsafeOutboundHostPorts", &c.failsafe_out}}) {
        if (*v) {
            json l = json::array();
            for (const auto &p : **v) {
                json e{{"protocol", p.protocol}, {"port", p.port}};
                if (!p.net.empty()) {
                    e["net"] = p.net;
                }
                l.push_back(e);
            }
            j[k] = l;
        }
    }
    if (c.nat_port_range) {
        j["natPortRange"] =
            std::to_string(c.nat_port_range->lo) + ":" + std::to_string(c.nat_port_range->hi);
    }
    put("vxlanPort", c.vxlan_port);
    put("vxlanVNI", c.vxlan_vni);
    put("vxlanMTU", c.vxlan_mtu);
    put("vxlanMTUV6", c.vxlan_mtu_v6);
    return j;
}

std::string log_level_of(const std::string &severity) {
    if (severity == "Warning") {
        return "warn";
    }
    if (severity == "Fatal") {
        return "critical";
    }
    std::string l = severity;
    std::transform(l.begin(), l.end(), l.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    return l;
}

}  // namespace fwd::felix
