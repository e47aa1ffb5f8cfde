// Services and EndpointSlices: decoding, validation and the store's JSON; see the header.
//
// Messages follow the API server's field errors ("Invalid value: ...", "Required value",
// "Unsupported value: ...: supported values: ...", "Duplicate value: ...", "Forbidden: ...")
// so that a user who knows kubectl's refusals recognizes ours.
#include "fwd/svc/service.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "fwd/ipam/model.hpp"
#include "k8s_decode.hpp"

namespace fwd::svc {

using nlohmann::json;
using namespace k8s;  // the API server's messages, names and the strict decoder

namespace {

constexpr int kMaxPorts = 65535;
constexpr size_t kMaxSliceEndpoints = 1000;
constexpr size_t kMaxEndpointAddresses = 100;

void validate_labels(const std::map<std::string, std::string> &labels, const std::string &path,
                     const std::string &object, bool check_values) {
    if (auto e = labels_error(labels, path, check_values)) {
        throw ServiceError(object, e->field, e->why);
    }
}

// ---- addresses ----

// Why a Service may not use a as an external address; "" when it may.
std::string external_ip_error(const net::IpAddr &a) {
    static const auto v4 = [](const char *s) { return *ipam::Cidr::parse(s); };
    static const ipam::Cidr kUnspec4 = v4("0.0.0.0/32"), kLoop4 = v4("127.0.0.0/8"),
                            kLink4 = v4("169.254.0.0/16"), kMcast4 = v4("224.0.0.0/24"),
                            kUnspec6 = v4("::/128"), kLoop6 = v4("::1/128"),
                            kLink6 = v4("fe80::/10"), kMcast6 = v4("ff02::/16");
    if (kUnspec4.contains(a) || kUnspec6.contains(a)) {
        return "may not be unspecified (0.0.0.0, ::)";
    }
    if (kLoop4.contains(a) || kLoop6.contains(a)) {
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)";
    }
    if (kLink4.contains(a) || kLink6.contains(a)) {
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)";
    }
    if (kMcast4.contains(a) || kMcast6.contains(a)) {
        return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/16)";
    }
    return "";
}

// ---- decoding ----

std::optional<Protocol> parse_protocol(std::string_view s) {
    if (s == "TCP") {
        return Protocol::kTcp;
    }
    if (s == "UDP") {
        return Protocol::kUdp;
    }
    if (s == "SCTP") {
        return Protocol::kSctp;
    }
    return std::nullopt;
}

Protocol decode_protocol(const Decoder &d, const json &obj, const std::string &path) {
    const auto s = d.str(obj, "protocol", path);
    if (!s) {
        return Protocol::kTcp;
    }
    const auto p = parse_protocol(*s);
    if (!p) {
        d.fail(path + ".protocol", unsupported(*s, {"SCTP", "TCP", "UDP"}));
    }
    return *p;
}

// A port number field; range errors are validation's (they need the number kept).
uint16_t decode_port_number(const Decoder &d, const json &obj, const char *key,
                            const std::string &path, bool allow_zero) {
    const auto v = d.integer(obj, key, path);
    if (!v) {
        return 0;
    }
    if (*v < (allow_zero ? 0 : 1) || *v > kMaxPorts) {
        d.fail(path + "." + key,
               invalid(std::to_string(*v), "must be between 1 and 65535, inclusive"));
    }
    return static_cast<uint16_t>(*v);
}

std::vector<net::IpAddr> decode_ips(const Decoder &d, const std::vector<std::string> &v,
                                    const std::string &path) {
    std::vector<net::IpAddr> out;
    for (size_t i = 0; i < v.size(); ++i) {
        auto a = net::IpAddr::parse(v[i]);
        if (!a) {
            d.fail(at(path, i), invalid(json_quoted(v[i]), "must be a valid IP address"));
        }
        out.push_back(*a);
    }
    return out;
}

std::optional<net::Family> parse_family(std::string_view s) {
    if (s == "IPv4") {
        return net::Family::kIp4;
    }
    if (s == "IPv6") {
        return net::Family::kIp6;
    }
    return std::nullopt;
}

std::optional<TrafficPolicy> decode_traffic_policy(const Decoder &d, const json &spec,
                                                   const char *key, bool old_spellings) {
    const auto s = d.str(spec, key, "spec");
    if (!s || s->empty()) {
        return std::nullopt;
    }
    const std::string field = std::string("spec.") + key;
    if (*s == "Cluster") {
        return TrafficPolicy::kCluster;
    }
    if (*s == "Local") {
        return TrafficPolicy::kLocal;
    }
    if (old_spellings && (*s == "Global" || *s == "OnlyLocal")) {
        // The values of the beta annotation service.beta.kubernetes.io/external-traffic.
        const bool local = *s == "OnlyLocal";
        d.warn(field,
               "'" + *s + "' is the old spelling of '" + (local ? "Local" : "Cluster") + "'");
        return local ? TrafficPolicy::kLocal : TrafficPolicy::kCluster;
    }
    d.fail(field, unsupported(*s, {"Cluster", "Local"}));
}

void decode_service_ports(const Decoder &d, const json &spec, Service &s) {
    const json &ports = d.list(spec, "ports", "spec");
    for (size_t i = 0; i < ports.size(); ++i) {
        const std::string path = at("spec.ports", i);
        const json p =
            d.object(ports[i], path, {"name", "protocol", "port", "targetPort", "nodePort"}, {},
                     {{"appProtocol", "the dataplane is L4: informational only"}});
        ServicePort sp;
        sp.name = d.str(p, "name", path).value_or("");
        sp.protocol = decode_protocol(d, p, path);
        if (!p.contains("port")) {
            d.fail(path + ".port", required());
        }
        sp.port = decode_port_number(d, p, "port", path, false);
        if (p.contains("targetPort")) {
            const json &t = p["targetPort"];
            if (t.is_string()) {
                sp.target_port_name = t.get<std::string>();
            } else if (t.is_number_integer()) {
                sp.target_port = decode_port_number(d, p, "targetPort", path, false);
            } else {
                d.fail(path + ".targetPort", "want a port number or name, got " + t.dump());
            }
        }
        if (sp.target_port == 0 && sp.target_port_name.empty()) {
            sp.target_port = sp.port;  // the API server's default
        }
        sp.node_port = decode_port_number(d, p, "nodePort", path, true);
        s.ports.push_back(std::move(sp));
    }
}

void decode_cluster_ips(const Decoder &d, const json &spec, Service &s) {
    const auto ip = d.str(spec, "clusterIP", "spec");
    std::vector<std::string> ips = d.strings(spec, "clusterIPs", "spec");
    if (ip && !ip->empty()) {
        if (ips.empty()) {
            ips.push_back(*ip);
        } else if (ips[0] != *ip) {
            d.fail("spec.clusterIPs[0]",
                   invalid(json_quoted(ips[0]), "must be equal to clusterIP " + json_quoted(*ip)));
        }
    }
    if (ips.size() > 2) {
        d.fail("spec.clusterIPs", too_many(ips.size(), 2));
    }
    for (size_t i = 0; i < ips.size(); ++i) {
        if (ips[i] == "None") {
            if (i != 0 || ips.size() > 1) {
                d.fail(at("spec.clusterIPs", i),
                       invalid(json_quoted("None"), "'None' must be the only value of clusterIPs"));
            }
            s.headless = true;
            return;
        }
        if (ips[i].empty()) {
            d.fail(at("spec.clusterIPs", i),
                   invalid(json_quoted(""), "must be a valid IP address"));
        }
    }
    s.cluster_ips = decode_ips(d, ips, "spec.clusterIPs");
}

void decode_status(const Decoder &d, const json &obj, Service &s) {
    const json status = d.object(obj.contains("status") ? obj["status"] : json(), "status",
                                 {"loadBalancer"}, {"conditions"});
    const json lb = d.object(status.contains("loadBalancer") ? status["loadBalancer"] : json(),
                             "status.loadBalancer", {"ingress"});
    const json &ingress = d.list(lb, "ingress", "status.loadBalancer");
    for (size_t i = 0; i < ingress.size(); ++i) {
        const std::string path = at("status.loadBalancer.ingress", i);
        const json in = d.object(
            ingress[i], path, {"ip", "ipMode"}, {},
            {{"hostname", "a load balancer known by name is not served (no DNS lookups here)"},
             {"ports", "the load balancer's own port status is not used"}});
        if (auto mode = d.str(in, "ipMode", path); mode && *mode != "VIP") {
            if (*mode != "Proxy") {
                d.fail(path + ".ipMode", unsupported(*mode, {"Proxy", "VIP"}));
            }
            d.warn(path + ".ipMode",
                   "not implemented: 'Proxy' (traffic to this address is served as 'VIP')");
        }
        if (auto ip = d.str(in, "ip", path)) {
            s.lb_ingress.push_back(decode_ips(d, {*ip}, path + ".ip")[0]);
        }
    }
}

Service decode_service(const json &obj, Decoder &d) {
    check_kind(d, obj, "v1");
    d.object(obj, "", {"apiVersion", "kind", "metadata", "spec", "status"});
    Service s;
    decode_metadata(d, obj, s.name, &s.ns, s.labels, &s.annotations);
    const json spec = d.object(
        obj.contains("spec") ? obj["spec"] : json(), "spec",
        {"type", "clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "ports", "selector",
         "externalIPs", "sessionAffinity", "sessionAffinityConfig", "externalTrafficPolicy",
         "internalTrafficPolicy", "loadBalancerIP", "externalName",
         "allocateLoadBalancerNodePorts"},
        {},
        {{"loadBalancerSourceRanges",
          "not enforced: every source reaches the load balancer addresses"},
         {"loadBalancerClass", "no load balancer controller runs here"},
         {"healthCheckNodePort", "no health check port is served"},
         {"publishNotReadyAddresses",
          "no endpoints controller runs here: EndpointSlices are used as applied"},
         {"trafficDistribution", "endpoints are chosen without topology"},
         {"topologyKeys", "removed from Kubernetes; endpoints are chosen without topology"}});
    if (auto t = d.str(spec, "type", "spec")) {
        if (*t == "ClusterIP") {
            s.type = ServiceType::kClusterIp;
        } else if (*t == "NodePort") {
            s.type = ServiceType::kNodePort;
        } else if (*t == "LoadBalancer") {
            s.type = ServiceType::kLoadBalancer;
        } else if (*t == "ExternalName") {
            s.type = ServiceType::kExternalName;
        } else {
            d.fail("spec.type",
                   unsupported(*t, {"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"}));
        }
    }
    decode_cluster_ips(d, spec, s);
    const auto families = d.strings(spec, "ipFamilies", "spec");
    for (size_t i = 0; i < families.size(); ++i) {
        auto f = parse_family(families[i]);
        if (!f) {
            d.fail(at("spec.ipFamilies", i), unsupported(families[i], {"IPv4", "IPv6"}));
        }
        s.ip_families.push_back(*f);
    }
    if (auto p = d.str(spec, "ipFamilyPolicy", "spec")) {
        if (*p == "SingleStack") {
            s.family_policy = FamilyPolicy::kSingleStack;
        } else if (*p == "PreferDualStack") {
            s.family_policy = FamilyPolicy::kPreferDualStack;
        } else if (*p == "RequireDualStack") {
            s.family_policy = FamilyPolicy::kRequireDualStack;
        } else {
            d.fail("spec.ipFamilyPolicy",
                   unsupported(*p, {"PreferDualStack", "RequireDualStack", "SingleStack"}));
        }
    }
    decode_service_ports(d, spec, s);
    s.selector = d.string_map(spec, "selector", "spec");
    if (!s.selector.empty()) {
        d.warn("spec.selector",
               "kept, but no endpoints controller runs here: the endpoints are the "
               "EndpointSlices applied with label " +
                   std::string(kServiceNameLabel) + ": " + s.name);
    }
    s.external_ips = decode_ips(d, d.strings(spec, "externalIPs", "spec"), "spec.externalIPs");
    if (auto a = d.str(spec, "sessionAffinity", "spec")) {
        if (*a == "ClientIP") {
            s.client_ip_affinity = true;
        } else if (*a != "None") {
            d.fail("spec.sessionAffinity", unsupported(*a, {"ClientIP", "None"}));
        }
    }
    if (spec.contains("sessionAffinityConfig")) {
        if (!s.client_ip_affinity) {
            d.fail("spec.sessionAffinityConfig",
                   invalid(spec["sessionAffinityConfig"].dump(),
                           "must not be set when sessionAffinity is None"));
        }
        const json cfg =
            d.object(spec["sessionAffinityConfig"], "spec.sessionAffinityConfig", {"clientIP"});
        const std::string path = "spec.sessionAffinityConfig.clientIP";
        const json cip =
            d.object(cfg.contains("clientIP") ? cfg["clientIP"] : json(), path, {"timeoutSeconds"});
        if (auto t = d.integer(cip, "timeoutSeconds", path)) {
            if (*t <= 0 || *t > kMaxAffinityTimeout) {
                d.fail(path + ".timeoutSeconds",
                       invalid(std::to_string(*t), "must be greater than 0 and less than 86400"));
            }
            s.affinity_timeout = static_cast<uint32_t>(*t);
        }
    }
    s.external_policy = decode_traffic_policy(d, spec, "externalTrafficPolicy", true);
    s.internal_policy = decode_traffic_policy(d, spec, "internalTrafficPolicy", false)
                            .value_or(TrafficPolicy::kCluster);
    if (auto ip = d.str(spec, "loadBalancerIP", "spec"); ip && !ip->empty()) {
        s.load_balancer_ip = decode_ips(d, {*ip}, "spec.loadBalancerIP")[0];
    }
    s.external_name = d.str(spec, "externalName", "spec").value_or("");
    if (auto a = d.boolean(spec, "allocateLoadBalancerNodePorts", "spec")) {
        if (s.type != ServiceType::kLoadBalancer) {
            d.fail("spec.allocateLoadBalancerNodePorts",
                   forbidden("may only be used when `type` is 'LoadBalancer'"));
        }
        s.allocate_lb_node_ports = *a;
    }
    decode_status(d, obj, s);
    if (s.type == ServiceType::kExternalName) {
        d.warn("spec.type",
               "ExternalName is a DNS name: accepted and stored, not served by the dataplane");
    }
    if (s.load_balancer_ip && s.type != ServiceType::kLoadBalancer) {
        d.warn("spec.loadBalancerIP", "used only by LoadBalancer services");
    }
    return s;
}

Conditions decode_conditions(const Decoder &d, const json &ep, const std::string &path) {
    const std::string cpath = path + ".conditions";
    const json c = d.object(ep.contains("conditions") ? ep["conditions"] : json(), cpath,
                            {"ready", "serving", "terminating"});
    Conditions out;
    const auto ready = d.boolean(c, "ready", cpath);
    const auto serving = d.boolean(c, "serving", cpath);
    const auto terminating = d.boolean(c, "terminating", cpath);
    out.ready = ready.value_or(true);
    out.serving = serving.value_or(out.ready);
    out.terminating = terminating.value_or(false);
    return out;
}

EndpointSlice decode_slice(const json &obj, Decoder &d) {
    check_kind(d, obj, "discovery.k8s.io/v1");
    d.object(obj, "", {"apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"});
    EndpointSlice s;
    decode_metadata(d, obj, s.name, &s.ns, s.labels, nullptr);
    const auto type = d.str(obj, "addressType", "");
    if (!type) {
        d.fail("addressType", required());
    }
    if (*type == "IPv4") {
        s.address_type = AddressType::kIpv4;
    } else if (*type == "IPv6") {
        s.address_type = AddressType::kIpv6;
    } else if (*type == "FQDN") {
        s.address_type = AddressType::kFqdn;
        d.warn("addressType", "FQDN endpoints are stored, not served by the dataplane");
    } else {
        d.fail("addressType", unsupported(*type, {"FQDN", "IPv4", "IPv6"}));
    }
    const json &eps = d.list(obj, "endpoints", "");
    for (size_t i = 0; i < eps.size(); ++i) {
        const std::string path = at("endpoints", i);
        const json e =
            d.object(eps[i], path, {"addresses", "conditions", "nodeName", "hostname", "zone"},
                     {"targetRef", "deprecatedTopology"},
                     {{"hints", "endpoints are chosen without topology hints"}});
        Endpoint ep;
        ep.addresses = d.strings(e, "addresses", path);
        if (s.address_type != AddressType::kFqdn) {
            // Canonical text, so that one address always compares equal to itself.
            const auto ips = decode_ips(d, ep.addresses, path + ".addresses");
            for (size_t k = 0; k < ips.size(); ++k) {
                ep.addresses[k] = ips[k].str();
            }
        }
        ep.conditions = decode_conditions(d, e, path);
        ep.node_name = d.str(e, "nodeName", path).value_or("");
        ep.hostname = d.str(e, "hostname", path).value_or("");
        ep.zone = d.str(e, "zone", path).value_or("");
        s.endpoints.push_back(std::move(ep));
    }
    const json &ports = d.list(obj, "ports", "");
    for (size_t i = 0; i < ports.size(); ++i) {
        const std::string path = at("ports", i);
        const json p = d.object(ports[i], path, {"name", "protocol", "port"}, {},
                                {{"appProtocol", "the dataplane is L4: informational only"}});
        EndpointPort ep;
        ep.name = d.str(p, "name", path).value_or("");
        ep.protocol = decode_protocol(d, p, path);
        if (p.contains("port")) {
            ep.port = decode_port_number(d, p, "port", path, false);
        }
        s.ports.push_back(std::move(ep));
    }
    if (s.service_key().empty()) {
        d.warn("metadata.labels",
               "no label " + std::string(kServiceNameLabel) + ": the slice serves no Service");
    }
    return s;
}

// Validation errors, with the decoder's origin.
template <typename F>
auto validated(const Decoder &d, F &&decode) {
    try {
        return decode();
    } catch (const ServiceError &e) {
        d.fail(e.field(), e.why());
    }
}

// The store's records: decoded like files, their warnings dropped; errors as ServiceError.
template <typename T>
void from_store(const json &j, T &out, const char *kind) {
    ipam::ResourceOrigin o{"store"};
    o.kind = kind;
    std::string object = std::string(kind) + " '?'";
    if (j.is_object() && j.contains("metadata") && j["metadata"].is_object()) {
        const json &m = j["metadata"];
        const std::string ns = m.contains("namespace") && m["namespace"].is_string()
                                   ? m["namespace"].get<std::string>()
                                   : "default";
        if (m.contains("name") && m["name"].is_string()) {
            object = std::string(kind) + " '" + ns + "/" + m["name"].get<std::string>() + "'";
        }
    }
    Decoder d(o, nullptr);
    try {
        if constexpr (std::is_same_v<T, Service>) {
            out = decode_service(j, d);
            validate_service(out);
        } else {
            out = decode_slice(j, d);
            validate_endpoint_slice(out);
        }
    } catch (const ipam::ResourceError &e) {
        const std::string what = e.what();
        const std::string prefix =
            e.origin().str() + ": " + (e.field().empty() ? "" : e.field() + ": ");
        throw ServiceError(object, e.field(),
                           what.starts_with(prefix) ? what.substr(prefix.size()) : what);
    }
}

json ip_list(const std::vector<net::IpAddr> &v) {
    json out = json::array();
    for (const auto &a : v) {
        out.push_back(a.str());
    }
    return out;
}

}  // namespace

ServiceError::ServiceError(std::string object, std::string field, std::string why)
    : std::runtime_error(object + ": " + (field.empty() ? "" : field + ": ") + why),
      object_(std::move(object)),
      field_(std::move(field)),
      why_(std::move(why)) {}

std::string_view to_string(Protocol p) {
    switch (p) {
        case Protocol::kUdp:
            return "UDP";
        case Protocol::kSctp:
            return "SCTP";
        case Protocol::kTcp:
            break;
    }
    return "TCP";
}

std::string_view to_string(ServiceType t) {
    switch (t) {
        case ServiceType::kNodePort:
            return "NodePort";
        case ServiceType::kLoadBalancer:
            return "LoadBalancer";
        case ServiceType::kExternalName:
            return "ExternalName";
        case ServiceType::kClusterIp:
            break;
    }
    return "ClusterIP";
}

std::string_view to_string(FamilyPolicy p) {
    switch (p) {
        case FamilyPolicy::kPreferDualStack:
            return "PreferDualStack";
        case FamilyPolicy::kRequireDualStack:
            return "RequireDualStack";
        case FamilyPolicy::kSingleStack:
            break;
    }
    return "SingleStack";
}

std::string_view to_string(TrafficPolicy p) {
    return p == TrafficPolicy::kLocal ? "Local" : "Cluster";
}

std::string_view to_string(AddressType t) {
    switch (t) {
        case AddressType::kIpv6:
            return "IPv6";
        case AddressType::kFqdn:
            return "FQDN";
        case AddressType::kIpv4:
            break;
    }
    return "IPv4";
}

std::string family_name(net::Family f) {
    return f == net::Family::kIp4 ? "IPv4" : "IPv6";
}

std::string EndpointSlice::service_key() const {
    auto it = labels.find(kServiceNameLabel);
    return it == labels.end() || it->second.empty() ? "" : ns + "/" + it->second;
}

std::string Warning::str() const {
    return origin.str() + ": " + (field.empty() ? "" : field + ": ") + what;
}

bool is_service_kind(std::string_view kind) {
    return kind == "Service" || kind == "EndpointSlice";
}

void validate_service(const Service &s) {
    const std::string object = "Service '" + s.key() + "'";
    auto fail = [&](const std::string &field, const std::string &why) {
        throw ServiceError(object, field, why);
    };
    if (auto e = dns1035_label_error(s.name); !e.empty()) {
        fail("metadata.name", invalid(json_quoted(s.name), e));
    }
    if (auto e = dns1123_label_error(s.ns); !e.empty()) {
        fail("metadata.namespace", invalid(json_quoted(s.ns), e));
    }
    validate_labels(s.labels, "metadata.labels", object, true);
    validate_labels(s.annotations, "metadata.annotations", object, false);
    validate_labels(s.selector, "spec.selector", object, true);
    const bool external_name = s.type == ServiceType::kExternalName;
    const std::string type = "'" + std::string(to_string(s.type)) + "'";
    if (external_name) {
        if (s.external_name.empty()) {
            fail("spec.externalName", required());
        }
        if (auto e = dns1123_subdomain_error(s.external_name); !e.empty()) {
            fail("spec.externalName", invalid(json_quoted(s.external_name), e));
        }
        if (!s.cluster_ips.empty() || s.headless) {
            fail("spec.clusterIPs", forbidden("may not be set for ExternalName services"));
        }
        if (!s.ip_families.empty()) {
            fail("spec.ipFamilies", forbidden("may not be set for ExternalName services"));
        }
        if (s.family_policy) {
            fail("spec.ipFamilyPolicy", forbidden("may not be set for ExternalName services"));
        }
    } else if (!s.external_name.empty()) {
        fail("spec.externalName", forbidden("may only be set when `type` is 'ExternalName'"));
    }
    if (s.headless && s.type != ServiceType::kClusterIp && !external_name) {
        fail("spec.clusterIPs[0]",
             invalid(json_quoted("None"), "may not be set to 'None' for " +
                                              std::string(to_string(s.type)) + " services"));
    }
    // Families: at most two, different, matching the addresses given.
    if (s.ip_families.size() > 2) {
        fail("spec.ipFamilies", too_many(s.ip_families.size(), 2));
    }
    if (s.ip_families.size() == 2 && s.ip_families[0] == s.ip_families[1]) {
        fail("spec.ipFamilies[1]", duplicate(json_quoted(family_name(s.ip_families[1]))));
    }
    if (s.cluster_ips.size() == 2 && s.cluster_ips[0].family() == s.cluster_ips[1].family()) {
        fail("spec.clusterIPs[1]", invalid(json_quoted(s.cluster_ips[1].str()),
                                           "must be of a different IP family than clusterIPs[0]"));
    }
    for (size_t i = 0; i < s.cluster_ips.size() && i < s.ip_families.size(); ++i) {
        if (s.cluster_ips[i].family() != s.ip_families[i]) {
            fail(at("spec.clusterIPs", i),
                 invalid(json_quoted(s.cluster_ips[i].str()),
                         "expected an " + family_name(s.ip_families[i]) +
                             " value as indicated by `ipFamilies[" + std::to_string(i) + "]`"));
        }
    }
    if (s.family_policy == FamilyPolicy::kSingleStack &&
        (s.ip_families.size() > 1 || s.cluster_ips.size() > 1)) {
        fail("spec.ipFamilyPolicy",
             invalid(json_quoted("SingleStack"),
                     "must be RequireDualStack or PreferDualStack when multiple " +
                         std::string(s.ip_families.size() > 1 ? "'ipFamilies'" : "'clusterIPs'") +
                         " are specified"));
    }
    // Ports.
    if (s.ports.empty() && !s.headless && !external_name) {
        fail("spec.ports", required());
    }
    std::set<std::string> names;
    std::map<std::pair<uint16_t, Protocol>, size_t> seen, seen_node;
    for (size_t i = 0; i < s.ports.size(); ++i) {
        const auto &p = s.ports[i];
        const std::string path = at("spec.ports", i);
        if (p.name.empty() && s.ports.size() > 1) {
            fail(path + ".name", required("a name is required when a service has several ports"));
        }
        if (!p.name.empty()) {
            if (auto e = dns1123_label_error(p.name); !e.empty()) {
                fail(path + ".name", invalid(json_quoted(p.name), e));
            }
            if (!names.insert(p.name).second) {
                fail(path + ".name", duplicate(json_quoted(p.name)));
            }
        }
        if (p.port == 0) {
            fail(path + ".port", invalid("0", "must be between 1 and 65535, inclusive"));
        }
        if (!p.target_port_name.empty()) {
            if (auto e = port_name_error(p.target_port_name); !e.empty()) {
                fail(path + ".targetPort", invalid(json_quoted(p.target_port_name), e));
            }
        } else if (p.target_port == 0) {
            fail(path + ".targetPort", invalid("0", "must be between 1 and 65535, inclusive"));
        }
        const std::string what = std::to_string(p.port) + "/" + std::string(to_string(p.protocol));
        if (auto [it, fresh] = seen.emplace(std::make_pair(p.port, p.protocol), i); !fresh) {
            fail(path, duplicate(json_quoted(what) + " (also spec.ports[" +
                                 std::to_string(it->second) + "])"));
        }
        if (p.node_port != 0) {
            if (s.type == ServiceType::kClusterIp || external_name) {
                fail(path + ".nodePort", forbidden("may not be used when `type` is " + type));
            }
            if (auto [it, fresh] = seen_node.emplace(std::make_pair(p.node_port, p.protocol), i);
                !fresh) {
                fail(path + ".nodePort", duplicate(std::to_string(p.node_port) + " (also " +
                                                   at("spec.ports", it->second) + ")"));
            }
        }
    }
    for (size_t i = 0; i < s.external_ips.size(); ++i) {
        if (auto e = external_ip_error(s.external_ips[i]); !e.empty()) {
            fail(at("spec.externalIPs", i), invalid(json_quoted(s.external_ips[i].str()), e));
        }
    }
    const bool external = s.type == ServiceType::kNodePort ||
                          s.type == ServiceType::kLoadBalancer || !s.external_ips.empty();
    if (s.external_policy && (!external || external_name)) {
        fail("spec.externalTrafficPolicy",
             invalid(json_quoted(std::string(to_string(*s.external_policy))),
                     "may only be set for externally-accessible services"));
    }
    if (external_name && s.internal_policy != TrafficPolicy::kCluster) {
        fail("spec.internalTrafficPolicy", forbidden("may not be set for ExternalName services"));
    }
    if (s.affinity_timeout == 0 || s.affinity_timeout > kMaxAffinityTimeout) {
        fail("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
             invalid(std::to_string(s.affinity_timeout),
                     "must be greater than 0 and less than 86400"));
    }
}

void validate_endpoint_slice(const EndpointSlice &s) {
    const std::string object = "EndpointSlice '" + s.key() + "'";
    auto fail = [&](const std::string &field, const std::string &why) {
        throw ServiceError(object, field, why);
    };
    if (auto e = dns1123_subdomain_error(s.name); !e.empty()) {
        fail("metadata.name", invalid(json_quoted(s.name), e));
    }
    if (auto e = dns1123_label_error(s.ns); !e.empty()) {
        fail("metadata.namespace", invalid(json_quoted(s.ns), e));
    }
    validate_labels(s.labels, "metadata.labels", object, true);
    if (s.endpoints.size() > kMaxSliceEndpoints) {
        fail("endpoints", too_many(s.endpoints.size(), kMaxSliceEndpoints));
    }
    const bool fqdn = s.address_type == AddressType::kFqdn;
    const net::Family want =
        s.address_type == AddressType::kIpv6 ? net::Family::kIp6 : net::Family::kIp4;
    for (size_t i = 0; i < s.endpoints.size(); ++i) {
        const auto &ep = s.endpoints[i];
        const std::string path = at("endpoints", i);
        if (ep.addresses.empty()) {
            fail(path + ".addresses", required("must contain at least 1 address"));
        }
        if (ep.addresses.size() > kMaxEndpointAddresses) {
            fail(path + ".addresses", too_many(ep.addresses.size(), kMaxEndpointAddresses));
        }
        for (size_t k = 0; k < ep.addresses.size(); ++k) {
            const std::string &a = ep.addresses[k];
            if (fqdn) {
                if (auto e = dns1123_subdomain_error(a); !e.empty()) {
                    fail(at(path + ".addresses", k), invalid(json_quoted(a), e));
                }
                continue;
            }
            const auto ip = net::IpAddr::parse(a);
            if (!ip || ip->family() != want) {
                fail(at(path + ".addresses", k),
                     invalid(json_quoted(a), "must be a valid " + family_name(want) + " address"));
            }
        }
        if (!ep.node_name.empty()) {
            if (auto e = dns1123_subdomain_error(ep.node_name); !e.empty()) {
                fail(path + ".nodeName", invalid(json_quoted(ep.node_name), e));
            }
        }
        if (!ep.hostname.empty()) {
            if (auto e = dns1123_label_error(ep.hostname); !e.empty()) {
                fail(path + ".hostname", invalid(json_quoted(ep.hostname), e));
            }
        }
    }
    std::set<std::string> names;
    for (size_t i = 0; i < s.ports.size(); ++i) {
        const auto &p = s.ports[i];
        const std::string path = at("ports", i);
        if (!p.name.empty()) {
            if (auto e = dns1123_label_error(p.name); !e.empty()) {
                fail(path + ".name", invalid(json_quoted(p.name), e));
            }
        }
        if (!names.insert(p.name).second) {
            fail(path + ".name", duplicate(json_quoted(p.name)));
        }
        if (p.port && *p.port == 0) {
            fail(path + ".port", invalid("0", "must be between 1 and 65535, inclusive"));
        }
    }
}

std::vector<ServiceResource> decode_service_resources(const std::vector<ipam::RawResource> &raw) {
    return decode_each<ServiceResource>(
        raw, is_service_kind, "Service or EndpointSlice",
        [](const json &obj, Decoder &d) -> std::variant<Service, EndpointSlice> {
            if (d.origin().kind == "Service") {
                return validated(d, [&] {
                    Service s = decode_service(obj, d);
                    validate_service(s);
                    return s;
                });
            }
            return validated(d, [&] {
                EndpointSlice s = decode_slice(obj, d);
                validate_endpoint_slice(s);
                return s;
            });
        },
        [](const ServiceResource &r) {
            const std::string name = r.is_service() ? r.service().key() : r.slice().key();
            return std::pair{r.origin.kind + "/" + name, "'" + name + "'"};
        });
}

std::vector<ServiceResource> parse_service_resources(std::string_view text,
                                                     const std::string &source_name) {
    return decode_service_resources(ipam::split_resources(text, source_name));
}

void to_json(json &j, const Service &s) {
    json meta{{"name", s.name}, {"namespace", s.ns}};
    if (!s.labels.empty()) {
        meta["labels"] = s.labels;
    }
    if (!s.annotations.empty()) {
        meta["annotations"] = s.annotations;
    }
    json spec{{"type", to_string(s.type)}};
    if (s.headless) {
        spec["clusterIP"] = "None";
        spec["clusterIPs"] = json::array({"None"});
    } else if (!s.cluster_ips.empty()) {
        spec["clusterIP"] = s.cluster_ips[0].str();
        spec["clusterIPs"] = ip_list(s.cluster_ips);
    }
    if (!s.ip_families.empty()) {
        json f = json::array();
        for (auto fam : s.ip_families) {
            f.push_back(family_name(fam));
        }
        spec["ipFamilies"] = f;
    }
    if (s.family_policy) {
        spec["ipFamilyPolicy"] = to_string(*s.family_policy);
    }
    if (!s.ports.empty()) {
        json ports = json::array();
        for (const auto &p : s.ports) {
            json pj{{"protocol", to_string(p.protocol)}, {"port", p.port}};
            if (!p.name.empty()) {
                pj["name"] = p.name;
            }
            pj["targetPort"] =
                p.target_port_name.empty() ? json(p.target_port) : json(p.target_port_name);
            if (p.node_port != 0) {
                pj["nodePort"] = p.node_port;
            }
            ports.push_back(pj);
        }
        spec["ports"] = ports;
    }
    if (!s.selector.empty()) {
        spec["selector"] = s.selector;
    }
    if (!s.external_ips.empty()) {
        spec["externalIPs"] = ip_list(s.external_ips);
    }
    spec["sessionAffinity"] = s.client_ip_affinity ? "ClientIP" : "None";
    if (s.client_ip_affinity) {
        spec["sessionAffinityConfig"] = {{"clientIP", {{"timeoutSeconds", s.affinity_timeout}}}};
    }
    if (s.external_policy) {
        spec["externalTrafficPolicy"] = to_string(*s.external_policy);
    }
    if (s.type != ServiceType::kExternalName) {
        spec["internalTrafficPolicy"] = to_string(s.internal_policy);
    }
    if (s.load_balancer_ip) {
        spec["loadBalancerIP"] = s.load_balancer_ip->str();
    }
    if (s.type == ServiceType::kLoadBalancer) {
        spec["allocateLoadBalancerNodePorts"] = s.allocate_lb_node_ports;
    }
    if (!s.external_name.empty()) {
        spec["externalName"] = s.external_name;
    }
    j = json{{"apiVersion", "v1"}, {"kind", "Service"}, {"metadata", meta}, {"spec", spec}};
    if (!s.lb_ingress.empty()) {
        json ingress = json::array();
        for (const auto &a : s.lb_ingress) {
            ingress.push_back({{"ip", a.str()}});
        }
        j["status"] = {{"loadBalancer", {{"ingress", ingress}}}};
    }
}

void from_json(const json &j, Service &s) {
    from_store(j, s, "Service");
}

void to_json(json &j, const EndpointSlice &s) {
    json meta{{"name", s.name}, {"namespace", s.ns}};
    if (!s.labels.empty()) {
        meta["labels"] = s.labels;
    }
    json eps = json::array();
    for (const auto &e : s.endpoints) {
        json ej{{"addresses", e.addresses},
                {"conditions",
                 {{"ready", e.conditions.ready},
                  {"serving", e.conditions.serving},
                  {"terminating", e.conditions.terminating}}}};
        if (!e.node_name.empty()) {
            ej["nodeName"] = e.node_name;
        }
        if (!e.hostname.empty()) {
            ej["hostname"] = e.hostname;
        }
        if (!e.zone.empty()) {
            ej["zone"] = e.zone;
        }
        eps.push_back(ej);
    }
    json ports = json::array();
    for (const auto &p : s.ports) {
        json pj{{"name", p.name}, {"protocol", to_string(p.protocol)}};
        if (p.port) {
            pj["port"] = *p.port;
        }
        ports.push_back(pj);
    }
    j = json{
        {"apiVersion", "discovery.k8s.io/v1"},      {"kind", "EndpointSlice"}, {"metadata", meta},
        {"addressType", to_string(s.address_type)}, {"endpoints", eps},        {"ports", ports}};
}

void from_json(const json &j, EndpointSlice &s) {
    from_store(j, s, "EndpointSlice");
}

}  // namespace fwd::svc
