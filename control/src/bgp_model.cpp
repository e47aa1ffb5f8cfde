// The BGP resources: decoding and validation (Calico's validator's words:
// libcalico-go/lib/validator/v3, "communities are defined but not used in
// Spec.PrefixAdvertisement[]", "PeerIP field must be empty when PeerSelector is specified", ...;
// the API server's for the Secret), and their registry in the cluster store. See
// fwd/control/bgp.hpp.
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "fwd/control/bgp.hpp"
#include "k8s_decode.hpp"

namespace fwd::bgp {

using nlohmann::json;
using namespace k8s;

namespace {

// s as a decimal number of 1 to max_len digits; nullopt when it is not one.
std::optional<uint64_t> digits(std::string_view s, size_t max_len) {
    if (s.empty() || s.size() > max_len ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return std::nullopt;
    }
    uint64_t n = 0;
    for (const char c : s) {
        n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    return n;
}

constexpr const char *kCalicoApi = "projectcalico.org/v3";
constexpr const char *kCalicoCrdApi = "crd.projectcalico.org/v1";

const char *const kLogLevels[] = {"Debug", "Info", "Warning", "Error", "Fatal"};

// Calico's `name` validator (a resource name): a DNS-1123 subdomain.
void check_name(const Decoder &d, const std::string &name, const std::string &field) {
    if (const auto e = dns1123_subdomain_error(name); !e.empty()) {
        d.fail(field, invalid(json_quoted(name), e));
    }
}

// The apiVersion, the top-level fields and the metadata of a Calico kind (cluster-scoped);
// returns its name.
std::string decode_calico_head(const json &obj, Decoder &d) {
    check_api(d, obj, {kCalicoApi, kCalicoCrdApi});
    d.object(obj, "", {"apiVersion", "kind", "metadata", "spec"}, {"status"});
    std::string name;
    std::map<std::string, std::string> labels;
    decode_metadata(d, obj, name, nullptr, labels, nullptr);
    check_name(d, name, "metadata.name");
    return name;
}

Selector decode_selector(const Decoder &d, const json &spec, const char *key) {
    const auto s = d.str(spec, key, "spec");
    if (!s || s->empty()) {
        return {};
    }
    try {
        return Selector{*s, label::Selector::parse(*s)};
    } catch (const label::SelectorError &e) {
        d.fail(std::string("spec.") + key,
               invalid(json_quoted(*s), "invalid selector: " + e.why() + " at position " +
                                            std::to_string(e.position())));
    }
}

// Calico's numorstring.ASNumber: an integer, or "a.b" (asdot).
uint32_t decode_as(const Decoder &d, const json &v, const std::string &field) {
    auto bad = [&] {
        d.fail(field, invalid(v.dump(), "an AS number is 1 to 4294967295, or a.b (asdot)"));
    };
    if (v.is_number_integer() || v.is_number_unsigned()) {
        const auto n = v.get<int64_t>();
        if (n < 1 || n > 0xffffffffLL) {
            bad();
        }
        return static_cast<uint32_t>(n);
    }
    if (!v.is_string()) {
        bad();
    }
    const std::string s = v.get<std::string>();
    uint64_t n = 0;
    const auto dot = s.find('.');
    if (dot != std::string::npos) {  // asdot: "hi.lo", 16 bits each
        const auto hi = digits(std::string_view(s).substr(0, dot), 5);
        const auto lo = digits(std::string_view(s).substr(dot + 1), 5);
        if (!hi || !lo || *hi > 0xffff || *lo > 0xffff) {
            bad();
        }
        n = *hi << 16 | *lo;
    } else if (const auto p = digits(s, 10)) {
        n = *p;
    } else {
        bad();
    }
    if (n < 1 || n > 0xffffffffULL) {
        bad();
    }
    return static_cast<uint32_t>(n);
}

// A Kubernetes metav1.Duration ("30s", "1m30s", "1.5h"), as whole seconds.
uint32_t decode_seconds(const Decoder &d, const json &spec, const char *key,
                        const std::string &path) {
    const std::string field = Decoder::join(path, key);
    const auto s = d.str(spec, key, path);
    double total = 0;
    std::string_view rest = *s;
    if (rest.empty() || rest == "0") {
        return 0;
    }
    const auto bad = [&] {
        d.fail(field, invalid(json_quoted(*s), "not a duration (e.g. 30s, 1m30s)"));
    };
    while (!rest.empty()) {
        // a number ("1", "1.5", "1.") then a unit: h, m, s, ms, us, ns
        size_t i = 0;
        while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) {
            i++;
        }
        if (i == 0) {
            bad();
        }
        if (i < rest.size() && rest[i] == '.') {
            i++;
            while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) {
                i++;
            }
        }
        const double x = std::stod(std::string(rest.substr(0, i)));
        rest.remove_prefix(i);
        double unit = 0;
        for (const auto &[name, scale] : {std::pair<std::string_view, double>{"ms", 1e-3},
                                          {"us", 1e-6},
                                          {"ns", 1e-9},
                                          {"h", 3600},
                                          {"m", 60},
                                          {"s", 1}}) {
            if (rest.starts_with(name)) {
                unit = scale;
                rest.remove_prefix(name.size());
                break;
            }
        }
        if (unit == 0) {
            bad();
        }
        total += x * unit;
    }
    if (total != std::floor(total) || total > 65535) {
        d.fail(field, invalid(json_quoted(*s), "BIRD takes whole seconds from 0 to 65535"));
    }
    return static_cast<uint32_t>(total);
}

std::vector<ipam::Cidr> decode_blocks(const Decoder &d, const json &spec, const char *key) {
    std::vector<ipam::Cidr> out;
    const std::string path = std::string("spec.") + key;
    const json l = d.list(spec, key, "spec");
    for (size_t i = 0; i < l.size(); ++i) {
        const json o = d.object(l[i], at(path, i), {"cidr"});
        const auto s = d.str(o, "cidr", at(path, i));
        if (!s) {
            continue;  // omitempty, as Calico
        }
        const auto c = ipam::Cidr::parse(*s);
        if (!c) {
            d.fail(
                at(path, i) + ".cidr",
                invalid(json_quoted(*s), "invalid CIDR (a network address with a prefix length)"));
        }
        out.push_back(*c);
    }
    return out;
}

// "aa:nn" with 16-bit parts, or "aa:nn:mm" with 32-bit parts (Calico's isValidCommunity).
bool community_value_ok(const std::string &v) {
    std::vector<std::string_view> parts;
    std::string_view rest = v;
    for (size_t c; (c = rest.find(':')) != std::string_view::npos;) {
        parts.push_back(rest.substr(0, c));
        rest.remove_prefix(c + 1);
    }
    parts.push_back(rest);
    if (parts.size() != 2 && parts.size() != 3) {
        return false;
    }
    const uint64_t max = parts.size() == 2 ? 0xffff : 0xffffffffULL;
    for (const auto &p : parts) {
        const auto n = digits(p, 10);
        if (!n || *n > max) {
            return false;
        }
    }
    return true;
}

std::optional<SecretKeyRef> decode_password(const Decoder &d, const json &spec, const char *key) {
    if (!spec.contains(key)) {
        return std::nullopt;
    }
    const std::string path = std::string("spec.") + key;
    const json pw = d.object(spec[key], path, {"secretKeyRef"});
    if (!pw.contains("secretKeyRef")) {
        d.fail(path + ".secretKeyRef", required("a password comes from a secret"));
    }
    const std::string p = path + ".secretKeyRef";
    const json ref = d.object(pw["secretKeyRef"], p, {"name", "key"}, {},
                              {{"optional", "a missing secret leaves the peering out"}});
    SecretKeyRef out{d.str(ref, "name", p).value_or(""), d.str(ref, "key", p).value_or("")};
    if (out.name.empty()) {
        d.fail(p + ".name", required());
    }
    check_name(d, out.name, p + ".name");
    if (out.key.empty()) {
        d.fail(p + ".key", required());
    }
    return out;
}

BgpConfiguration decode_config(const json &obj, Decoder &d) {
    BgpConfiguration c;
    c.name = decode_calico_head(obj, d);
    const json spec = d.object(
        obj.contains("spec") ? obj["spec"] : json(), "spec",
        {"logSeverityScreen", "nodeToNodeMeshEnabled", "asNumber", "serviceClusterIPs",
         "serviceExternalIPs", "serviceLoadBalancerIPs", "communities", "prefixAdvertisements",
         "listenPort", "nodeMeshPassword", "nodeMeshMaxRestartTime"},
        {},
        {{"bindMode", "BIRD listens on every address"},
         {"ignoredInterfaces", "BIRD here scans the node's namespace only"},
         {"localWorkloadPeeringIPV4", "no workload peers BGP here"},
         {"localWorkloadPeeringIPV6", "no workload peers BGP here"}});
    if (auto l = d.str(spec, "logSeverityScreen", "spec")) {
        if (std::none_of(std::begin(kLogLevels), std::end(kLogLevels),
                         [&](const char *x) { return *l == x; })) {
            d.fail("spec.logSeverityScreen",
                   unsupported(*l, {"Debug", "Info", "Warning", "Error", "Fatal"}));
        }
        c.log_severity = *l;
    }
    c.node_to_node_mesh = d.boolean(spec, "nodeToNodeMeshEnabled", "spec");
    if (spec.contains("asNumber")) {
        c.as_number = decode_as(d, spec["asNumber"], "spec.asNumber");
    }
    c.service_cluster_ips = decode_blocks(d, spec, "serviceClusterIPs");
    c.service_external_ips = decode_blocks(d, spec, "serviceExternalIPs");
    c.service_load_balancer_ips = decode_blocks(d, spec, "serviceLoadBalancerIPs");
    if (auto p = d.integer(spec, "listenPort", "spec")) {
        if (*p < 1 || *p > 65535) {
            d.fail("spec.listenPort", invalid(std::to_string(*p), "must be between 1 and 65535"));
        }
        c.listen_port = static_cast<uint16_t>(*p);
    }
    const json comms = d.list(spec, "communities", "spec");
    for (size_t i = 0; i < comms.size(); ++i) {
        const std::string p = at("spec.communities", i);
        const json o = d.object(comms[i], p, {"name", "value"});
        Community k{d.str(o, "name", p).value_or(""), d.str(o, "value", p).value_or("")};
        if (k.name.empty()) {
            d.fail(p + ".name", required());
        }
        check_name(d, k.name, p + ".name");
        if (!community_value_ok(k.value)) {
            d.fail(p + ".value", invalid(json_quoted(k.value),
                                         "invalid community value or format used (aa:nn with "
                                         "16-bit numbers, or aa:nn:mm with 32-bit numbers)"));
        }
        c.communities.push_back(k);
    }
    const json pas = d.list(spec, "prefixAdvertisements", "spec");
    if (pas.empty() && !c.communities.empty()) {
        d.fail("spec.communities",
               "communities are defined but not used in Spec.PrefixAdvertisement[].");
    }
    for (size_t i = 0; i < pas.size(); ++i) {
        const std::string p = at("spec.prefixAdvertisements", i);
        const json o = d.object(pas[i], p, {"cidr", "communities"});
        PrefixAdvertisement pa;
        const auto s = d.str(o, "cidr", p);
        const auto cidr = s ? ipam::Cidr::parse(*s) : std::nullopt;
        if (!cidr) {
            d.fail(p + ".cidr", invalid(s ? json_quoted(*s) : "null", "invalid CIDR value."));
        }
        pa.cidr = *cidr;
        const auto names = d.strings(o, "communities", p);
        if (names.empty()) {
            d.fail(p + ".communities", required());
        }
        for (size_t j = 0; j < names.size(); ++j) {
            if (community_value_ok(names[j])) {
                pa.communities.push_back(names[j]);
                continue;
            }
            auto it = std::find_if(c.communities.begin(), c.communities.end(),
                                   [&](const Community &k) { return k.name == names[j]; });
            if (it == c.communities.end()) {
                d.fail(at(p + ".communities", j),
                       invalid(json_quoted(names[j]), "community used is invalid or not defined."));
            }
            pa.communities.push_back(it->value);
        }
        c.prefix_advertisements.push_back(pa);
    }
    c.node_mesh_password = decode_password(d, spec, "nodeMeshPassword");
    if (spec.contains("nodeMeshMaxRestartTime")) {
        c.node_mesh_max_restart_s = decode_seconds(d, spec, "nodeMeshMaxRestartTime", "spec");
    }
    const bool node_specific = c.name.starts_with("node.");
    if (!node_specific && c.name != "default") {
        d.warn("metadata.name",
               "only 'default' and 'node.<node>' BGPConfigurations are read (Calico's rule)");
    }
    if (node_specific) {
        // Calico: these fields are cluster-wide, only on the default resource.
        for (const char *f :
             {"nodeToNodeMeshEnabled", "asNumber", "serviceClusterIPs", "serviceExternalIPs",
              "serviceLoadBalancerIPs", "communities", "prefixAdvertisements", "nodeMeshPassword",
              "nodeMeshMaxRestartTime"}) {
            if (spec.contains(f)) {
                d.fail(std::string("spec.") + f,
                       forbidden("can only be set on the default BGPConfiguration"));
            }
        }
    } else if ((c.node_mesh_password || c.node_mesh_max_restart_s) &&
               c.node_to_node_mesh == std::optional<bool>(false)) {
        d.fail(c.node_mesh_password ? "spec.nodeMeshPassword" : "spec.nodeMeshMaxRestartTime",
               forbidden("requires nodeToNodeMeshEnabled (the node-to-node mesh is off)"));
    }
    return c;
}

// "a", "a:port", "[a6]:port", as Calico's IP:port validator takes them.
void decode_peer_ip(const Decoder &d, const std::string &s, BgpPeer &p) {
    const std::string field = "spec.peerIP";
    auto bad = [&] {
        d.fail(field, invalid(json_quoted(s), "not an IP address, IPv4:port or [IPv6]:port"));
    };
    std::string addr = s, port;
    if (s.starts_with("[")) {
        const auto close = s.find("]:");
        if (close == std::string::npos) {
            bad();
        }
        addr = s.substr(1, close - 1);
        port = s.substr(close + 2);
    } else if (std::count(s.begin(), s.end(), ':') == 1) {
        addr = s.substr(0, s.find(':'));
        port = s.substr(s.find(':') + 1);
    }
    p.peer_ip = net::IpAddr::parse(addr);
    if (!p.peer_ip || (s.starts_with("[") && p.peer_ip->family() != net::Family::kIp6)) {
        bad();
    }
    if (!port.empty()) {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
            std::stoul(port) < 1 || std::stoul(port) > 65535) {
            bad();
        }
        p.peer_port = static_cast<uint16_t>(std::stoul(port));
    }
}

BgpPeer decode_peer(const json &obj, Decoder &d) {
    BgpPeer p;
    p.name = decode_calico_head(obj, d);
    const json spec = d.object(
        obj.contains("spec") ? obj["spec"] : json(), "spec",
        {"node", "nodeSelector", "peerIP", "asNumber", "peerSelector", "keepOriginalNextHop",
         "password", "sourceAddress", "maxRestartTime", "numAllowedLocalASNumbers", "keepaliveTime",
         "keepAliveTime", "holdTime"},
        {},
        {{"failureDetectionMode", "no BFD here"},
         {"restartMode", "graceful restart is always on"},
         {"birdGatewayMode", "BIRD's default (direct on the node's subnet, else recursive)"},
         {"ttlSecurity", "no GTSM here"},
         {"filters", "no BGPFilter resources here"},
         {"reachableBy", "the peer is reached by the node's routes"},
         {"localASNumber", "the node's own AS is used"},
         {"nextHopMode", "keepOriginalNextHop is the way here"},
         {"reversePeering", "peerSelector peerings are always set up on both ends"}});
    p.node = d.str(spec, "node", "spec").value_or("");
    if (!p.node.empty()) {
        check_name(d, p.node, "spec.node");
    }
    p.node_selector = decode_selector(d, spec, "nodeSelector");
    p.peer_selector = decode_selector(d, spec, "peerSelector");
    if (auto ip = d.str(spec, "peerIP", "spec"); ip && !ip->empty()) {
        decode_peer_ip(d, *ip, p);
    }
    if (spec.contains("asNumber")) {
        p.as_number = decode_as(d, spec["asNumber"], "spec.asNumber");
    }
    // Calico's validateBGPPeerSpec, in its words.
    if (!p.node.empty() && !p.node_selector.text.empty()) {
        d.fail("spec.node", "Node field must be empty when NodeSelector is specified");
    }
    if (p.peer_ip && !p.peer_selector.text.empty()) {
        d.fail("spec.peerIP", "PeerIP field must be empty when PeerSelector is specified");
    }
    if (p.as_number != 0 && !p.peer_selector.text.empty()) {
        d.fail("spec.asNumber", "ASNumber field must be empty when PeerSelector is specified");
    }
    if (!p.peer_ip && p.peer_selector.text.empty()) {
        d.fail("spec.peerIP", required("a peer is a peerIP with an asNumber, or a peerSelector"));
    }
    if (p.peer_ip && p.as_number == 0) {
        d.fail("spec.asNumber", required("a peerIP needs the peer's asNumber"));
    }
    p.keep_original_next_hop = d.boolean(spec, "keepOriginalNextHop", "spec").value_or(false);
    p.password = decode_password(d, spec, "password");
    if (auto s = d.str(spec, "sourceAddress", "spec")) {
        if (*s != "UseNodeIP" && *s != "None") {
            d.fail("spec.sourceAddress", unsupported(*s, {"UseNodeIP", "None"}));
        }
        p.source_node_ip = *s == "UseNodeIP";
    }
    if (spec.contains("maxRestartTime")) {
        p.max_restart_s = decode_seconds(d, spec, "maxRestartTime", "spec");
    }
    if (auto n = d.integer(spec, "numAllowedLocalASNumbers", "spec")) {
        if (*n < 0 || *n > 10) {
            d.fail("spec.numAllowedLocalASNumbers",
                   invalid(std::to_string(*n), "BIRD allows 0 to 10"));
        }
        p.num_allowed_local_as = static_cast<int32_t>(*n);
    }
    // Calico spells it keepaliveTime; guides (and ../shared/examples) write keepAliveTime.
    for (const char *k : {"keepaliveTime", "keepAliveTime"}) {
        if (spec.contains(k)) {
            if (p.keepalive_s) {
                d.fail(std::string("spec.") + k, "keepaliveTime given twice (keepAliveTime)");
            }
            p.keepalive_s = decode_seconds(d, spec, k, "spec");
            if (*p.keepalive_s < 1) {
                d.fail(std::string("spec.") + k, invalid("0", "must be at least 1s"));
            }
        }
    }
    if (spec.contains("holdTime")) {
        p.hold_s = decode_seconds(d, spec, "holdTime", "spec");
        if (*p.hold_s != 0 && *p.hold_s < 3) {
            d.fail("spec.holdTime", invalid(json_quoted(std::to_string(*p.hold_s) + "s"),
                                            "must be 0 or at least 3s (RFC 4271)"));
        }
    }
    if (p.hold_s && p.keepalive_s && *p.hold_s > 0 && *p.keepalive_s > *p.hold_s / 3) {
        d.fail("spec.keepaliveTime", "keepaliveTime " + std::to_string(*p.keepalive_s) +
                                         "s must be <= holdTime/3 (" +
                                         std::to_string(*p.hold_s / 3) + "s)");
    }
    return p;
}

std::string base64_decode(const Decoder &d, const std::string &in, const std::string &field) {
    if (in.size() % 4 != 0) {
        d.fail(field, invalid("<value>", "illegal base64 data (length not a multiple of 4)"));
    }
    std::string out(in.size() / 4 * 3 + 1, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                                  reinterpret_cast<const unsigned char *>(in.data()),
                                  static_cast<int>(in.size()));
    if (n < 0) {
        d.fail(field, invalid("<value>", "illegal base64 data"));
    }
    size_t len = static_cast<size_t>(n);
    for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) {
        len--;  // EVP_DecodeBlock counts the padding as zero bytes
    }
    out.resize(len);
    return out;
}

Secret decode_secret(const json &obj, Decoder &d) {
    check_api(d, obj, {"v1"});
    d.object(obj, "", {"apiVersion", "kind", "metadata", "data", "stringData", "type"},
             {"immutable"});
    Secret s;
    s.ns = "default";
    std::map<std::string, std::string> labels;
    decode_metadata(d, obj, s.name, &s.ns, labels, nullptr);
    check_name(d, s.name, "metadata.name");
    if (auto t = d.str(obj, "type", ""); t && *t != "Opaque") {
        d.warn("type", "stored as Opaque data: only its keys are read");
    }
    for (const auto &[k, v] : d.string_map(obj, "data", "")) {
        s.data[k] = base64_decode(d, v, "data[" + k + "]");
    }
    for (const auto &[k, v] : d.string_map(obj, "stringData", "")) {
        s.data[k] = v;  // stringData wins, as the API server merges it
    }
    for (const auto &[k, v] : s.data) {
        const bool key_ok =
            !k.empty() && k.size() <= 253 && std::all_of(k.begin(), k.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                       c == '.';
            });
        if (!key_ok) {
            d.fail("data[" + k + "]", invalid(json_quoted(k),
                                              "a valid config key must consist of alphanumeric "
                                              "characters, '-', '_' or '.'"));
        }
    }
    return s;
}

Object decode_object(const json &obj, Decoder &d) {
    const std::string &kind = d.origin().kind;
    if (kind == "BGPConfiguration") {
        return decode_config(obj, d);
    }
    if (kind == "BGPPeer") {
        return decode_peer(obj, d);
    }
    if (felix::is_felix_kind(kind)) {
        const std::string name = decode_calico_head(obj, d);
        return felix::decode_spec(name, obj.contains("spec") ? obj["spec"] : json(), d);
    }
    return decode_secret(obj, d);
}

// The document as it is stored: what was applied, less what the server sets.
json stored_form(json j) {
    if (j.contains("metadata") && j["metadata"].is_object()) {
        for (const char *k : {"uid", "resourceVersion", "generation", "creationTimestamp",
                              "managedFields", "selfLink"}) {
            j["metadata"].erase(k);
        }
    }
    j.erase("status");
    return j;
}

}  // namespace

bool is_bgp_kind(std::string_view kind) {
    return kind == "BGPConfiguration" || kind == "BGPPeer" || kind == "Secret" ||
           felix::is_felix_kind(kind);
}

std::string kind_of(const Object &o) {
    return std::visit(
        [](const auto &x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            return std::is_same_v<T, BgpConfiguration>            ? "BGPConfiguration"
                   : std::is_same_v<T, BgpPeer>                   ? "BGPPeer"
                   : std::is_same_v<T, felix::FelixConfiguration> ? "FelixConfiguration"
                                                                  : "Secret";
        },
        o);
}

std::string name_of(const Object &o) {
    if (const auto *s = std::get_if<Secret>(&o)) {
        return s->ns + "/" + s->name;
    }
    return std::visit([](const auto &x) { return x.name; }, o);
}

std::vector<Decoded> decode_bgp_resources(const std::vector<ipam::RawResource> &raw) {
    struct R {
        Object value;
        ipam::ResourceOrigin origin;
        std::vector<svc::Warning> warnings;
    };
    auto decoded = decode_each<R>(
        raw, is_bgp_kind, "BGPConfiguration, BGPPeer, Secret, FelixConfiguration",
        [](const json &obj, Decoder &d) { return decode_object(obj, d); },
        [](const R &r) {
            const std::string what = kind_of(r.value) + " '" + name_of(r.value) + "'";
            return std::pair{kind_of(r.value) + "/" + name_of(r.value), what};
        });
    std::vector<Decoded> out;
    for (size_t i = 0; i < decoded.size(); ++i) {
        out.push_back(
            {decoded[i].value, decoded[i].origin, decoded[i].warnings, stored_form(raw[i].value)});
    }
    return out;
}

Object decode_stored(const json &j, const std::string &key) {
    ipam::ResourceOrigin o;
    o.source = key;
    o.kind = j.is_object() && j.contains("kind") && j["kind"].is_string()
                 ? j["kind"].get<std::string>()
                 : "";
    if (!is_bgp_kind(o.kind)) {
        throw ipam::ResourceError(o, "kind", "not a BGP resource");
    }
    Decoder d(o, nullptr);
    return decode_object(j, d);
}

// ---- the registry ----

BgpRegistry::BgpRegistry(ipam::Store &s, std::string prefix)
    : store_(s), prefix_(std::move(prefix)) {}

std::string BgpRegistry::key_of(const Object &o) const {
    if (const auto *s = std::get_if<Secret>(&o)) {
        return prefix_ + "secrets/" + s->ns + "/" + s->name;
    }
    if (const auto *c = std::get_if<BgpConfiguration>(&o)) {
        return prefix_ + "bgpconfigurations/" + c->name;
    }
    if (const auto *f = std::get_if<felix::FelixConfiguration>(&o)) {
        return prefix_ + "felixconfigurations/" + f->name;
    }
    return prefix_ + "bgppeers/" + std::get<BgpPeer>(o).name;
}

BgpRegistry::Plan BgpRegistry::plan_apply(const std::vector<Decoded> &objects) {
    Plan p;
    for (const auto &d : objects) {
        Change c{Action::kCreate, kind_of(d.value), name_of(d.value), key_of(d.value)};
        const std::string text = d.json.dump();
        const auto kv = store_.get(c.key);
        p.compares.push_back({c.key, kv ? kv->mod_revision : 0});
        if (kv && kv->value == text) {
            c.action = Action::kUnchanged;
        } else {
            c.action = kv ? Action::kUpdate : Action::kCreate;
            p.ops.push_back({ipam::Operation::Kind::kPut, c.key, text});
        }
        p.changes.push_back(std::move(c));
    }
    return p;
}

BgpRegistry::Plan BgpRegistry::plan_delete(const std::vector<Decoded> &objects) {
    Plan p;
    for (const auto &d : objects) {
        Change c{Action::kDelete, kind_of(d.value), name_of(d.value), key_of(d.value)};
        const auto kv = store_.get(c.key);
        if (!kv) {
            throw ipam::ResourceError(d.origin, "metadata.name",
                                      c.kind + " '" + c.name + "' not found");
        }
        p.compares.push_back({c.key, kv->mod_revision});
        p.ops.push_back({ipam::Operation::Kind::kDelete, c.key, ""});
        p.changes.push_back(std::move(c));
    }
    return p;
}

bool BgpRegistry::commit(const Plan &p) {
    return p.ops.empty() || store_.txn(p.compares, p.ops);
}

BgpRegistry::Listing BgpRegistry::list() {
    Listing out;
    out.revision = store_.revision();
    for (const auto &kv : store_.list(prefix_)) {
        try {
            Object o = decode_stored(json::parse(kv.value), kv.key);
            if (key_of(o) != kv.key) {
                throw std::runtime_error("stored under another resource's key (it is " +
                                         kind_of(o) + " '" + name_of(o) + "')");
            }
            if (auto *c = std::get_if<BgpConfiguration>(&o)) {
                out.configs.push_back(std::move(*c));
            } else if (auto *pe = std::get_if<BgpPeer>(&o)) {
                out.peers.push_back(std::move(*pe));
            } else if (auto *f = std::get_if<felix::FelixConfiguration>(&o)) {
                out.felix.push_back(std::move(*f));
            } else {
                auto &s = std::get<Secret>(o);
                out.secrets[s.ns + "/" + s.name] = std::move(s);
            }
        } catch (const std::exception &e) {
            out.refused.emplace_back(kv.key, e.what());
        }
    }
    return out;
}

std::string_view to_string(BgpRegistry::Action a) {
    switch (a) {
        case BgpRegistry::Action::kCreate:
            return "created";
        case BgpRegistry::Action::kUpdate:
            return "configured";
        case BgpRegistry::Action::kUnchanged:
            return "unchanged";
        case BgpRegistry::Action::kDelete:
            return "deleted";
    }
    return "?";
}

}  // namespace fwd::bgp
