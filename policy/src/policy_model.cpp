// The policy resources: decoding, validation, the Kubernetes conversion and the store's JSON;
// see fwd/policy/model.hpp.
//
// Calico's refusals keep Calico's words (libcalico-go/lib/validator/v3: "rules that specify
// ports must set protocol to TCP or UDP or SCTP", "rule contains both IPv4 and IPv6 CIDRs",
// ...); the Kubernetes kinds keep the API server's ("Invalid value: ...", "Required value").
#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "fwd/policy/model.hpp"
#include "k8s_decode.hpp"

namespace fwd::policy {

using nlohmann::json;
using namespace k8s;

namespace {

constexpr size_t kMaxNameLength = 253;  // DNS-1123 subdomain
constexpr const char *kCalicoApi = "projectcalico.org/v3";
constexpr const char *kCalicoCrdApi = "crd.projectcalico.org/v1";
constexpr const char *kK8sPolicyApi = "networking.k8s.io/v1";

const char *const kProtocolNames[] = {"TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"};
const uint8_t kProtocolNumbers[] = {Protocol::kTcp,   Protocol::kUdp,  Protocol::kIcmp,
                                    Protocol::kIcmp6, Protocol::kSctp, Protocol::kUdpLite};

// ---- Calico's names ----

bool is_label(std::string_view s) {
    return !s.empty() && s.size() <= 63 && dns1123_label_error(s).empty();
}

// NetworkPolicy: label, label.label, or knp.default.<subdomain> / ossg.default.<subdomain>.
bool network_policy_name_ok(const std::string &n) {
    for (const char *prefix : {"knp.default.", "ossg.default."}) {
        if (n.starts_with(prefix)) {
            return dns1123_subdomain_error(n.substr(std::string_view(prefix).size())).empty();
        }
    }
    const auto dot = n.find('.');
    return dot == std::string::npos ? is_label(n)
                                    : is_label(n.substr(0, dot)) && is_label(n.substr(dot + 1));
}

// GlobalNetworkPolicy: label or label.label.
bool global_policy_name_ok(const std::string &n) {
    const auto dot = n.find('.');
    return dot == std::string::npos ? is_label(n)
                                    : is_label(n.substr(0, dot)) && is_label(n.substr(dot + 1));
}

// ---- values ----

// A selector field, parsed; an error names the field, the text and the position in it.
Sel parse_selector(const Decoder &d, const std::string &text, const std::string &field) {
    try {
        return Sel{text, label::Selector::parse(text)};
    } catch (const label::SelectorError &e) {
        d.fail(field, "invalid selector " + json_quoted(text) + ": " + e.why() + " at position " +
                          std::to_string(e.position()));
    }
}

Sel decode_selector(const Decoder &d, const json &obj, const char *key, const std::string &path) {
    const auto s = d.str(obj, key, path);
    return s ? parse_selector(d, *s, Decoder::join(path, key)) : Sel{};
}

// A CIDR of nets / notNets: "a/len" or an address alone (its /32 or /128). strict: host bits
// are refused, as Calico's `net` validator refuses them; else they are masked off (a
// Kubernetes ipBlock).
ipam::Cidr decode_cidr(const Decoder &d, const std::string &s, const std::string &field,
                       bool strict) {
    std::string text = s;
    if (text.find('/') == std::string::npos) {
        if (auto a = net::IpAddr::parse(text)) {
            text += a->family() == net::Family::kIp4 ? "/32" : "/128";
        }
    }
    const auto loose = ipam::Cidr::parse(text, true);
    if (!loose) {
        d.fail(field, invalid(json_quoted(s), "invalid CIDR"));
    }
    const auto masked = ipam::Cidr::containing(loose->addr(), loose->len());
    if (strict && !ipam::Cidr::parse(text, false)) {
        d.fail(field, invalid(json_quoted(s), "invalid CIDR: host bits are set (the network is " +
                                                  masked.str() + ")"));
    }
    return masked;
}

std::vector<ipam::Cidr> decode_nets(const Decoder &d, const json &obj, const char *key,
                                    const std::string &path, bool strict) {
    std::vector<ipam::Cidr> out;
    const auto v = d.strings(obj, key, path);
    for (size_t i = 0; i < v.size(); ++i) {
        out.push_back(decode_cidr(d, v[i], at(Decoder::join(path, key), i), strict));
    }
    return out;
}

std::optional<Protocol> decode_protocol(const Decoder &d, const json &obj, const char *key,
                                        const std::string &path) {
    if (!obj.contains(key)) {
        return std::nullopt;
    }
    const json &v = obj[key];
    const std::string field = Decoder::join(path, key);
    if (v.is_number_integer()) {
        const auto n = v.get<int64_t>();
        if (n < 1 || n > 255) {
            d.fail(field, invalid(v.dump(), "protocol number invalid (1 to 255)"));
        }
        return Protocol{static_cast<uint8_t>(n)};
    }
    if (!v.is_string()) {
        d.fail(field, "want a protocol name or number, got " + v.dump());
    }
    const auto p = Protocol::parse(v.get<std::string>());
    if (!p) {
        d.fail(field, invalid(v.dump(),
                              "protocol name invalid (TCP, UDP, ICMP, ICMPv6, SCTP, "
                              "UDPLite or a number from 1 to 255)"));
    }
    return p;
}

std::optional<Icmp> decode_icmp(const Decoder &d, const json &obj, const char *key,
                                const std::string &path) {
    if (!obj.contains(key)) {
        return std::nullopt;
    }
    const std::string p = Decoder::join(path, key);
    const json o = d.object(obj[key], p, {"type", "code"});
    Icmp out;
    if (auto t = d.integer(o, "type", p)) {
        if (*t < 0 || *t > 254) {
            d.fail(p + ".type", invalid(std::to_string(*t), "must be between 0 and 254"));
        }
        out.type = static_cast<uint8_t>(*t);
    }
    if (auto c = d.integer(o, "code", p)) {
        if (*c < 0 || *c > 255) {
            d.fail(p + ".code", invalid(std::to_string(*c), "must be between 0 and 255"));
        }
        out.code = static_cast<uint8_t>(*c);
    }
    return out;
}

// A port of ports / notPorts: a number, "a:b", digits, or a name (Calico's numorstring.Port).
Port decode_port(const Decoder &d, const json &v, const std::string &field) {
    auto number = [&](int64_t n) {
        if (n < 0 || n > 65535) {
            d.fail(field, invalid(std::to_string(n),
                                  "port range invalid, port number must be between 1 and 65535"));
        }
        return static_cast<uint16_t>(n);
    };
    auto digits = [](std::string_view s) {
        return !s.empty() && s.size() <= 6 &&
               std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (v.is_number_integer()) {
        const uint16_t n = number(v.get<int64_t>());
        return Port{n, n, ""};
    }
    if (!v.is_string()) {
        d.fail(field, "want a port number, range or name, got " + v.dump());
    }
    const std::string s = v.get<std::string>();
    if (digits(s)) {
        const uint16_t n = number(std::stoll(s));
        return Port{n, n, ""};
    }
    if (const auto colon = s.find(':'); colon != std::string::npos) {
        const std::string lo = s.substr(0, colon), hi = s.substr(colon + 1);
        if (!digits(lo) || !digits(hi)) {
            d.fail(field, invalid(json_quoted(s), "port range invalid (want \"min:max\")"));
        }
        return Port{number(std::stoll(lo)), number(std::stoll(hi)), ""};
    }
    return Port{0, 0, s};
}

std::vector<Port> decode_ports(const Decoder &d, const json &obj, const char *key,
                               const std::string &path) {
    std::vector<Port> out;
    const json &l = d.list(obj, key, path);
    for (size_t i = 0; i < l.size(); ++i) {
        out.push_back(decode_port(d, l[i], at(Decoder::join(path, key), i)));
    }
    return out;
}

// ---- Calico policies ----

EntityRule decode_entity(const Decoder &d, const json &rule, const char *key,
                         const std::string &path) {
    const std::string p = Decoder::join(path, key);
    static const json kNull;
    json scratch;
    const json &e = d.fields(rule.contains(key) ? rule[key] : kNull, scratch, p,
                             {"nets", "notNets", "selector", "notSelector", "namespaceSelector",
                              "ports", "notPorts", "serviceAccounts", "services"});
    for (const char *not_built : {"serviceAccounts", "services"}) {
        if (e.contains(not_built)) {
            d.fail(p + "." + not_built,
                   std::string("not built here: ") +
                       (std::string_view(not_built) == "services"
                            ? "matching Kubernetes Services in a rule (use selectors or nets)"
                            : "matching service accounts (use the pods' labels)"));
        }
    }
    EntityRule out;
    out.nets = decode_nets(d, e, "nets", p, true);
    out.not_nets = decode_nets(d, e, "notNets", p, true);
    out.selector = decode_selector(d, e, "selector", p);
    out.not_selector = decode_selector(d, e, "notSelector", p);
    out.namespace_selector = decode_selector(d, e, "namespaceSelector", p);
    out.ports = decode_ports(d, e, "ports", p);
    out.not_ports = decode_ports(d, e, "notPorts", p);
    return out;
}

Rule decode_rule(const Decoder &d, const json &v, const std::string &path) {
    json scratch;
    const json &r = d.fields(v, scratch, path,
                             {"action", "ipVersion", "protocol", "notProtocol", "icmp", "notICMP",
                              "source", "destination", "metadata", "http"});
    if (r.contains("http")) {
        d.fail(path + ".http", "not built here: HTTP matches (application layer policy)");
    }
    Rule out;
    const auto action = d.str(r, "action", path);
    if (!action) {
        d.fail(path + ".action", required());
    }
    if (*action == "Allow") {
        out.action = Action::kAllow;
    } else if (*action == "Deny") {
        out.action = Action::kDeny;
    } else if (*action == "Log") {
        out.action = Action::kLog;
    } else if (*action == "Pass") {
        out.action = Action::kPass;
    } else {
        d.fail(path + ".action", unsupported(*action, {"Allow", "Deny", "Log", "Pass"}));
    }
    if (auto ver = d.integer(r, "ipVersion", path)) {
        if (*ver != 4 && *ver != 6) {
            d.fail(path + ".ipVersion", unsupported(std::to_string(*ver), {"4", "6"}));
        }
        out.ip_version = static_cast<int>(*ver);
    }
    out.protocol = decode_protocol(d, r, "protocol", path);
    out.not_protocol = decode_protocol(d, r, "notProtocol", path);
    out.icmp = decode_icmp(d, r, "icmp", path);
    out.not_icmp = decode_icmp(d, r, "notICMP", path);
    out.source = decode_entity(d, r, "source", path);
    out.destination = decode_entity(d, r, "destination", path);
    const json meta = d.object(r.contains("metadata") ? r["metadata"] : json(), path + ".metadata",
                               {"annotations"});
    out.annotations = d.string_map(meta, "annotations", path + ".metadata");
    return out;
}

void default_types(Policy &p) {
    // Calico: Ingress when there are no egress rules; Egress when there are egress rules and
    // no ingress rules; both when there are both.
    p.egress = !p.egress_rules.empty();
    p.ingress = p.egress_rules.empty() || !p.ingress_rules.empty();
}

Policy decode_calico(const json &obj, Decoder &d, bool global) {
    check_api(d, obj, {kCalicoApi, kCalicoCrdApi});
    {
        // The checks alone: object() would copy the whole resource (10,000 rules: a third
        // of the decode), fields() copies only what it must filter out.
        json scratch;
        d.fields(obj, scratch, "", {"apiVersion", "kind", "metadata", "spec"}, {"status"});
    }
    Policy p;
    p.kind = global ? PolicyKind::kGlobal : PolicyKind::kCalico;
    p.ns = global ? "" : "default";
    decode_metadata(d, obj, p.name, global ? nullptr : &p.ns, p.labels, &p.annotations);
    std::vector<const char *> known = {"tier",
                                       "order",
                                       "selector",
                                       "types",
                                       "ingress",
                                       "egress",
                                       "serviceAccountSelector",
                                       "performanceHints"};
    if (global) {
        known.insert(known.end(), {"namespaceSelector", "doNotTrack", "preDNAT", "applyOnForward"});
    }
    static const json kNull;
    const json &raw_spec = obj.contains("spec") ? obj["spec"] : kNull;
    if (!raw_spec.is_null() && raw_spec.is_object()) {
        for (const auto &[k, v] : raw_spec.items()) {
            if (std::none_of(known.begin(), known.end(),
                             [&k = k](const char *x) { return k == x; })) {
                d.fail("spec." + k, "unknown field");
            }
        }
    }
    json scratch;
    const json &spec = d.fields(
        raw_spec, scratch, "spec",
        {"tier", "order", "selector", "types", "ingress", "egress", "serviceAccountSelector",
         "performanceHints", "namespaceSelector", "doNotTrack", "preDNAT", "applyOnForward"});
    if (auto tier = d.str(spec, "tier", "spec"); tier && !tier->empty() && *tier != "default") {
        d.fail("spec.tier", invalid(json_quoted(*tier),
                                    "not built here: only the default tier "
                                    "exists (omit tier or say \"default\")"));
    }
    if (spec.contains("order")) {
        if (!spec["order"].is_number()) {
            d.fail("spec.order", "want a number, got " + spec["order"].dump());
        }
        p.order = spec["order"].get<double>();
        if (!std::isfinite(*p.order)) {
            d.fail("spec.order", invalid(spec["order"].dump(), "must be a finite number"));
        }
    }
    p.selector = decode_selector(d, spec, "selector", "spec");
    p.namespace_selector = decode_selector(d, spec, "namespaceSelector", "spec");
    if (auto sa = d.str(spec, "serviceAccountSelector", "spec"); sa && !sa->empty()) {
        d.fail("spec.serviceAccountSelector",
               "not built here: selecting pods by service account (use spec.selector on the "
               "pods' labels)");
    }
    for (const char *host_only : {"doNotTrack", "preDNAT"}) {
        if (d.boolean(spec, host_only, "spec").value_or(false)) {
            d.fail(std::string("spec.") + host_only,
                   "not built here: it applies to host endpoints, which dpdk-fwd does not have");
        }
    }
    p.apply_on_forward = d.boolean(spec, "applyOnForward", "spec").value_or(false);
    if (p.apply_on_forward) {
        d.warn("spec.applyOnForward", "kept, but it matters only for host endpoints (none here)");
    }
    const auto hints = d.strings(spec, "performanceHints", "spec");
    for (size_t i = 0; i < hints.size(); ++i) {
        if (hints[i] != "AssumeNeededOnEveryNode") {
            d.fail(at("spec.performanceHints", i),
                   unsupported(hints[i], {"AssumeNeededOnEveryNode"}));
        }
        if (std::find(hints.begin(), hints.begin() + static_cast<long>(i), hints[i]) !=
            hints.begin() + static_cast<long>(i)) {
            d.fail(at("spec.performanceHints", i), duplicate(json_quoted(hints[i])));
        }
    }
    p.performance_hints = hints;
    for (const auto &[key, rules] :
         {std::pair{"ingress", &p.ingress_rules}, std::pair{"egress", &p.egress_rules}}) {
        const json &l = d.list(spec, key, "spec");
        rules->reserve(l.size());
        for (size_t i = 0; i < l.size(); ++i) {
            rules->push_back(decode_rule(d, l[i], at(std::string("spec.") + key, i)));
        }
    }
    const auto types = d.strings(spec, "types", "spec");
    if (types.empty()) {
        default_types(p);
    } else {
        p.ingress = p.egress = false;
        for (size_t i = 0; i < types.size(); ++i) {
            bool &flag = types[i] == "Ingress" ? p.ingress : p.egress;
            if (types[i] != "Ingress" && types[i] != "Egress") {
                d.fail(at("spec.types", i), unsupported(types[i], {"Egress", "Ingress"}));
            }
            if (flag) {
                d.fail("spec.types", "'" + types[i] + "' type specified more than once");
            }
            flag = true;
        }
    }
    return p;
}

// ---- Kubernetes NetworkPolicy, converted as Calico converts it ----

// A metav1.LabelSelector as the API server checks it, then as Calico's selector text. pod:
// a pod selector (Calico adds projectcalico.org/orchestrator == 'k8s'); an absent namespace
// selector is "", an empty one all().
std::string k8s_selector(const Decoder &d, const json &v, const std::string &path, bool pod) {
    std::vector<std::string> terms;
    if (pod) {
        terms.push_back(std::string(kOrchestratorLabel) + " == 'k8s'");
    }
    if (v.is_null()) {
        return terms.empty() ? "" : terms[0];
    }
    const json s = d.object(v, path, {"matchLabels", "matchExpressions"});
    const auto labels = d.string_map(s, "matchLabels", path);
    if (auto e = labels_error(labels, path + ".matchLabels", true)) {
        d.fail(e->field, e->why);
    }
    const json &exprs = d.list(s, "matchExpressions", path);
    if (!pod && labels.empty() && exprs.empty()) {
        return "all()";
    }
    for (const auto &[k, val] : labels) {
        terms.push_back(k + " == '" + val + "'");
    }
    for (size_t i = 0; i < exprs.size(); ++i) {
        const std::string p = at(path + ".matchExpressions", i);
        const json e = d.object(exprs[i], p, {"key", "operator", "values"});
        const auto key = d.str(e, "key", p);
        if (!key) {
            d.fail(p + ".key", required());
        }
        if (auto err = label_key_error(*key); !err.empty()) {
            d.fail(p + ".key", invalid(json_quoted(*key), err));
        }
        const auto op = d.str(e, "operator", p);
        if (!op) {
            d.fail(p + ".operator", required());
        }
        const auto values = d.strings(e, "values", p);
        for (size_t k = 0; k < values.size(); ++k) {
            if (!label_part_ok(values[k])) {
                d.fail(at(p + ".values", k), invalid(json_quoted(values[k]),
                                                     "a valid label must be an empty string or "
                                                     "consist of alphanumeric characters, '-', "
                                                     "'_' or '.'"));
            }
        }
        std::string list;
        for (const auto &x : values) {
            list += (list.empty() ? "'" : ", '") + x + "'";
        }
        if (*op == "In" || *op == "NotIn") {
            if (values.empty()) {
                d.fail(p + ".values",
                       required("must be specified when `operator` is 'In' or 'NotIn'"));
            }
            terms.push_back(*key + (*op == "In" ? " in { " : " not in { ") + list + " }");
        } else if (*op == "Exists" || *op == "DoesNotExist") {
            if (!values.empty()) {
                d.fail(p + ".values",
                       forbidden("may not be specified when `operator` is 'Exists' or "
                                 "'DoesNotExist'"));
            }
            terms.push_back((*op == "Exists" ? "has(" : "! has(") + *key + ")");
        } else {
            d.fail(p + ".operator", unsupported(*op, {"DoesNotExist", "Exists", "In", "NotIn"}));
        }
    }
    std::string out;
    for (const auto &t : terms) {
        out += (out.empty() ? "" : " && ") + t;
    }
    return out;
}

struct K8sPeer {
    std::string selector, namespace_selector;
    std::vector<ipam::Cidr> nets, not_nets;
};

K8sPeer k8s_peer(const Decoder &d, const json &v, const std::string &path) {
    const json p = d.object(v, path, {"podSelector", "namespaceSelector", "ipBlock"});
    K8sPeer out;
    if (p.contains("ipBlock")) {
        if (p.contains("podSelector") || p.contains("namespaceSelector")) {
            d.fail(path, forbidden("may not specify more than 1 peer type (ipBlock with a "
                                   "podSelector or namespaceSelector)"));
        }
        const std::string bp = path + ".ipBlock";
        const json b = d.object(p["ipBlock"], bp, {"cidr", "except"});
        const auto cidr = d.str(b, "cidr", bp);
        if (!cidr || cidr->empty()) {
            d.fail(bp + ".cidr", required());
        }
        if (cidr->find('/') == std::string::npos) {
            d.fail(bp + ".cidr", invalid(json_quoted(*cidr), "must be a valid CIDR"));
        }
        out.nets.push_back(decode_cidr(d, *cidr, bp + ".cidr", false));
        const auto except = d.strings(b, "except", bp);
        for (size_t i = 0; i < except.size(); ++i) {
            const std::string f = at(bp + ".except", i);
            if (except[i].find('/') == std::string::npos) {
                d.fail(f, invalid(json_quoted(except[i]), "must be a valid CIDR"));
            }
            const auto c = decode_cidr(d, except[i], f, false);
            if (!out.nets[0].contains(c) || c == out.nets[0]) {
                d.fail(f, invalid(json_quoted(except[i]), "must be a strict subset of `cidr`"));
            }
            out.not_nets.push_back(c);
        }
        return out;
    }
    if (!p.contains("podSelector") && !p.contains("namespaceSelector")) {
        d.fail(path, required("must specify a peer"));
    }
    out.selector = k8s_selector(d, p.contains("podSelector") ? p["podSelector"] : json(),
                                path + ".podSelector", true);
    out.namespace_selector =
        k8s_selector(d, p.contains("namespaceSelector") ? p["namespaceSelector"] : json(),
                     path + ".namespaceSelector", false);
    return out;
}

// Calico's SimplifyPorts: named ports as given, then the numbers merged into ranges.
std::vector<Port> simplify_ports(const std::vector<Port> &in) {
    std::vector<Port> out;
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    for (const auto &p : in) {
        if (p.named()) {
            out.push_back(p);
        } else {
            ranges.emplace_back(p.min, p.max);
        }
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 0; i < ranges.size();) {
        auto [lo, hi] = ranges[i++];
        while (i < ranges.size() && ranges[i].first <= hi + 1) {
            hi = std::max(hi, ranges[i++].second);
        }
        out.push_back(Port{static_cast<uint16_t>(lo), static_cast<uint16_t>(hi), ""});
    }
    return out;
}

// One ingress or egress rule of a Kubernetes policy, as Calico's rules: one per protocol
// (sorted by name) and peer, each protocol's ports simplified.
void k8s_rule(const Decoder &d, const json &v, const std::string &path, bool ingress,
              std::vector<Rule> &out) {
    const char *peers_key = ingress ? "from" : "to";
    const json r = d.object(v, path, {peers_key, "ports"});
    std::vector<std::optional<K8sPeer>> peers;
    const json &pl = d.list(r, peers_key, path);
    for (size_t i = 0; i < pl.size(); ++i) {
        peers.push_back(k8s_peer(d, pl[i], at(path + "." + peers_key, i)));
    }
    if (peers.empty()) {
        peers.push_back(std::nullopt);  // every peer
    }
    // Protocol name -> its ports; "" is any protocol (no ports given at all).
    struct Ports {
        bool every = false;  // an entry of the protocol gave no port: all of them
        std::vector<Port> list;
    };
    std::map<std::string, Ports> by_protocol;
    const json &ports = d.list(r, "ports", path);
    for (size_t i = 0; i < ports.size(); ++i) {
        const std::string pp = at(path + ".ports", i);
        const json p = d.object(ports[i], pp, {"protocol", "port", "endPort"});
        const std::string proto = d.str(p, "protocol", pp).value_or("TCP");
        if (proto != "TCP" && proto != "UDP" && proto != "SCTP") {
            d.fail(pp + ".protocol", unsupported(proto, {"SCTP", "TCP", "UDP"}));
        }
        std::optional<Port> port;
        if (p.contains("port")) {
            const json &pv = p["port"];
            if (pv.is_number_integer()) {
                const auto n = pv.get<int64_t>();
                if (n < 1 || n > 65535) {
                    d.fail(pp + ".port",
                           invalid(std::to_string(n), "must be between 1 and 65535, inclusive"));
                }
                port = Port{static_cast<uint16_t>(n), static_cast<uint16_t>(n), ""};
            } else if (pv.is_string()) {
                const std::string name = pv.get<std::string>();
                if (auto e = port_name_error(name); !e.empty()) {
                    d.fail(pp + ".port", invalid(json_quoted(name), e));
                }
                port = Port{0, 0, name};
            } else {
                d.fail(pp + ".port", "want a port number or name, got " + pv.dump());
            }
        }
        if (auto end = d.integer(p, "endPort", pp)) {
            if (!port) {
                d.fail(pp + ".endPort", required("may not be specified when `port` is not"));
            }
            if (port->named()) {
                d.fail(pp + ".endPort", invalid(std::to_string(*end),
                                                "may not be specified when `port` is "
                                                "non-numeric"));
            }
            if (*end < port->min || *end > 65535) {
                d.fail(pp + ".endPort",
                       invalid(std::to_string(*end), "must be greater than or equal to `port`"));
            }
            port->max = static_cast<uint16_t>(*end);
        }
        Ports &slot = by_protocol[proto];
        if (port) {
            slot.list.push_back(*port);
        } else {
            slot.every = true;
        }
    }
    if (ports.empty()) {
        by_protocol[""].every = true;
    }
    for (const auto &[proto, plist] : by_protocol) {
        for (const auto &peer : peers) {
            Rule rule;
            rule.action = Action::kAllow;
            if (!proto.empty()) {
                rule.protocol = Protocol::parse(proto);
            }
            EntityRule &dst = rule.destination;
            EntityRule &remote = ingress ? rule.source : rule.destination;
            if (!plist.every) {
                dst.ports = simplify_ports(plist.list);
            }
            if (peer) {
                remote.nets = peer->nets;
                remote.not_nets = peer->not_nets;
                if (!peer->selector.empty()) {
                    remote.selector = parse_selector(d, peer->selector, path);
                }
                if (!peer->namespace_selector.empty()) {
                    remote.namespace_selector = parse_selector(d, peer->namespace_selector, path);
                }
            }
            out.push_back(std::move(rule));
        }
    }
}

Policy decode_k8s(const json &obj, Decoder &d) {
    check_api(d, obj, {kK8sPolicyApi});
    d.object(obj, "", {"apiVersion", "kind", "metadata", "spec"}, {"status"});
    Policy p;
    p.kind = PolicyKind::kKubernetes;
    p.ns = "default";
    decode_metadata(d, obj, p.name, &p.ns, p.labels, &p.annotations);
    p.k8s_spec = d.object(obj.contains("spec") ? obj["spec"] : json(), "spec",
                          {"podSelector", "policyTypes", "ingress", "egress"});
    const json &spec = p.k8s_spec;
    if (!spec.contains("podSelector")) {
        d.fail("spec.podSelector", required());
    }
    p.selector = parse_selector(d, k8s_selector(d, spec["podSelector"], "spec.podSelector", true),
                                "spec.podSelector");
    p.order = kK8sPolicyOrder;
    for (const auto &[key, ingress] : {std::pair{"ingress", true}, std::pair{"egress", false}}) {
        const json &l = d.list(spec, key, "spec");
        for (size_t i = 0; i < l.size(); ++i) {
            k8s_rule(d, l[i], at(std::string("spec.") + key, i), ingress,
                     ingress ? p.ingress_rules : p.egress_rules);
        }
    }
    const auto types = d.strings(spec, "policyTypes", "spec");
    if (types.empty()) {
        // The API server's default.
        p.ingress = true;
        p.egress = spec.contains("egress") && !spec["egress"].empty();
    } else {
        p.ingress = p.egress = false;
        if (types.size() > 2) {
            d.fail("spec.policyTypes", too_many(types.size(), 2));
        }
        for (size_t i = 0; i < types.size(); ++i) {
            if (types[i] != "Ingress" && types[i] != "Egress") {
                d.fail(at("spec.policyTypes", i), unsupported(types[i], {"Egress", "Ingress"}));
            }
            bool &flag = types[i] == "Ingress" ? p.ingress : p.egress;
            if (flag) {
                d.fail(at("spec.policyTypes", i), duplicate(json_quoted(types[i])));
            }
            flag = true;
        }
    }
    return p;
}

// ---- Namespace and Pod ----

Namespace decode_namespace(const json &obj, Decoder &d) {
    check_kind(d, obj, "v1");
    d.object(obj, "", {"apiVersion", "kind", "metadata"}, {"spec", "status"});
    Namespace n;
    decode_metadata(d, obj, n.name, nullptr, n.labels, &n.annotations);
    return n;
}

Protocol decode_port_protocol(const Decoder &d, const json &obj, const std::string &path) {
    const std::string s = d.str(obj, "protocol", path).value_or("TCP");
    if (s != "TCP" && s != "UDP" && s != "SCTP") {
        d.fail(path + ".protocol", unsupported(s, {"SCTP", "TCP", "UDP"}));
    }
    return *Protocol::parse(s);
}

// A Pod: metadata, and of its spec and status only what networking uses (the rest belongs to
// the kubelet and is accepted unread).
Pod decode_pod(const json &obj, Decoder &d) {
    check_kind(d, obj, "v1");
    d.object(obj, "", {"apiVersion", "kind", "metadata", "spec", "status"});
    Pod p;
    decode_metadata(d, obj, p.name, &p.ns, p.labels, &p.annotations);
    const json spec =
        obj.contains("spec") && obj["spec"].is_object() ? obj["spec"] : json::object();
    p.node = d.str(spec, "nodeName", "spec").value_or("");
    p.service_account = d.str(spec, "serviceAccountName", "spec").value_or("");
    for (const char *group : {"initContainers", "containers"}) {
        const json &cs = d.list(spec, group, "spec");
        for (size_t i = 0; i < cs.size(); ++i) {
            const std::string cp = at(std::string("spec.") + group, i);
            if (!cs[i].is_object()) {
                d.fail(cp, "want a mapping, got " + cs[i].dump());
            }
            const json &ports = d.list(cs[i], "ports", cp);
            for (size_t k = 0; k < ports.size(); ++k) {
                const std::string pp = at(cp + ".ports", k);
                const json port = d.object(
                    ports[k], pp, {"name", "containerPort", "protocol", "hostPort", "hostIP"});
                const auto number = d.integer(port, "containerPort", pp);
                if (!number) {
                    d.fail(pp + ".containerPort", required());
                }
                if (*number < 1 || *number > 65535) {
                    d.fail(pp + ".containerPort", invalid(std::to_string(*number),
                                                          "must be between 1 and 65535, "
                                                          "inclusive"));
                }
                const auto name = d.str(port, "name", pp);
                if (name && !name->empty()) {
                    p.ports.push_back(
                        {*name, decode_port_protocol(d, port, pp), static_cast<uint16_t>(*number)});
                }
            }
        }
    }
    const json status =
        obj.contains("status") && obj["status"].is_object() ? obj["status"] : json::object();
    std::vector<std::string> ips;
    const json &list = d.list(status, "podIPs", "status");
    for (size_t i = 0; i < list.size(); ++i) {
        const json e = d.object(list[i], at("status.podIPs", i), {"ip"});
        if (auto ip = d.str(e, "ip", at("status.podIPs", i))) {
            ips.push_back(*ip);
        }
    }
    if (ips.empty()) {
        if (auto ip = d.str(status, "podIP", "status"); ip && !ip->empty()) {
            ips.push_back(*ip);
        }
    }
    for (size_t i = 0; i < ips.size(); ++i) {
        const auto a = net::IpAddr::parse(ips[i]);
        if (!a) {
            d.fail(at("status.podIPs", i), invalid(json_quoted(ips[i]), "must be a valid IP"));
        }
        p.ips.push_back(*a);
    }
    return p;
}

// ---- validation ----

// The family of a rule's CIDRs and the consistency Calico requires of them.
void check_nets(const Rule &r, const std::string &path,
                const std::function<void(const std::string &, const std::string &)> &fail) {
    bool seen4 = false, seen6 = false;
    const std::pair<const std::vector<ipam::Cidr> *, std::string> lists[] = {
        {&r.source.nets, "source.nets"},
        {&r.source.not_nets, "source.notNets"},
        {&r.destination.nets, "destination.nets"},
        {&r.destination.not_nets, "destination.notNets"}};
    for (const auto &[nets, name] : lists) {
        bool v4 = false, v6 = false;
        for (const auto &c : *nets) {
            (c.is_v4() ? v4 : v6) = true;
        }
        if (r.ip_version && ((v4 && *r.ip_version != 4) || (v6 && *r.ip_version != 6))) {
            fail(path + "." + name, "rule IP version doesn't match CIDR version");
        }
        if ((v4 && seen6) || (v6 && seen4) || (v4 && v6)) {
            fail(path + "." + name, "rule contains both IPv4 and IPv6 CIDRs");
        }
        seen4 = seen4 || v4;
        seen6 = seen6 || v6;
    }
}

// The list's field is "<rule>.<entity>.<list>", joined only for an error message (a policy
// of 10,000 rules is validated in every apply and every node's build).
void check_ports(const std::vector<Port> &ports, const std::string &rule, const char *entity,
                 const char *list,
                 const std::function<void(const std::string &, const std::string &)> &fail) {
    const auto path = [&] { return rule + "." + entity + "." + list; };
    for (size_t i = 0; i < ports.size(); ++i) {
        const Port &p = ports[i];
        if (p.named()) {
            if (auto e = port_name_error(p.name); !e.empty()) {
                fail(at(path(), i), invalid(json_quoted(p.name), "named port invalid: " + e));
            }
        } else if (p.min > p.max) {
            fail(at(path(), i), invalid(json_quoted(p.str()), "port range invalid"));
        } else if (p.min < 1) {
            fail(at(path(), i),
                 invalid(json_quoted(p.str()),
                         "port range invalid, port number must be between 1 and 65535"));
        }
    }
}

void validate_rule(const Rule &r, const std::string &path,
                   const std::function<void(const std::string &, const std::string &)> &fail) {
    const bool ports_ok = r.protocol && r.protocol->has_ports();
    for (const auto &[entity, name] :
         {std::pair{&r.source, "source"}, std::pair{&r.destination, "destination"}}) {
        const auto ep = [&, name = name] { return path + "." + name; };  // for errors only
        if (!ports_ok && !entity->ports.empty()) {
            fail(ep() + ".ports",
                 "rules that specify ports must set protocol to TCP or UDP or SCTP");
        }
        if (!ports_ok && !entity->not_ports.empty()) {
            fail(ep() + ".notPorts",
                 "rules that specify ports must set protocol to TCP or UDP or SCTP");
        }
        check_ports(entity->ports, path, name, "ports", fail);
        check_ports(entity->not_ports, path, name, "notPorts", fail);
        for (const auto &[sel, sname] : {std::pair{&entity->selector, "selector"},
                                         std::pair{&entity->not_selector, "notSelector"}}) {
            if (sel->parsed.uses_global()) {
                fail(ep() + "." + sname,
                     "global() can only be used in an EntityRule namespaceSelector");
            }
        }
        if (entity->namespace_selector.parsed.uses_global() &&
            !entity->namespace_selector.parsed.is_global()) {
            fail(ep() + ".namespaceSelector", "global() cannot be combined with other selectors");
        }
    }
    if (r.icmp && !(r.protocol && r.protocol->is_icmp())) {
        fail(path + ".icmp", "rules that specify ICMP fields must set protocol to ICMP");
    }
    for (const auto &[icmp, name] :
         {std::pair{&r.icmp, "icmp"}, std::pair{&r.not_icmp, "notICMP"}}) {
        if (*icmp && (*icmp)->code && !(*icmp)->type) {
            fail(path + "." + name + ".code", "ICMP code specified without an ICMP type");
        }
    }
    for (const auto &p : {r.protocol, r.not_protocol}) {
        if (p && p->number == Protocol::kIcmp && r.ip_version && *r.ip_version != 4) {
            fail(path + ".ipVersion", "must set ipversion to '4' with protocol icmp");
        }
        if (p && p->number == Protocol::kIcmp6 && r.ip_version && *r.ip_version != 6) {
            fail(path + ".ipVersion", "must set ipversion to '6' with protocol icmpv6");
        }
    }
    check_nets(r, path, fail);
    if (r.annotations.empty()) {
        return;
    }
    if (auto e = labels_error(r.annotations, path + ".metadata.annotations", false)) {
        fail(e->field, e->why);
    }
}

// ---- the store's JSON ----

json selector_json(const Sel &s) {
    return s.text;
}

json ports_json(const std::vector<Port> &ports) {
    json out = json::array();
    for (const auto &p : ports) {
        if (p.named() || p.min != p.max) {
            out.push_back(p.str());
        } else {
            out.push_back(p.min);
        }
    }
    return out;
}

json entity_json(const EntityRule &e) {
    json out = json::object();
    auto nets = [](const std::vector<ipam::Cidr> &v) {
        json a = json::array();
        for (const auto &c : v) {
            a.push_back(c.str());
        }
        return a;
    };
    if (!e.nets.empty()) {
        out["nets"] = nets(e.nets);
    }
    if (!e.not_nets.empty()) {
        out["notNets"] = nets(e.not_nets);
    }
    for (const auto &[sel, key] :
         {std::pair{&e.selector, "selector"}, std::pair{&e.not_selector, "notSelector"},
          std::pair{&e.namespace_selector, "namespaceSelector"}}) {
        if (sel->present()) {
            out[key] = selector_json(*sel);
        }
    }
    if (!e.ports.empty()) {
        out["ports"] = ports_json(e.ports);
    }
    if (!e.not_ports.empty()) {
        out["notPorts"] = ports_json(e.not_ports);
    }
    return out;
}

json protocol_json(const Protocol &p) {
    const std::string s = p.str();
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })
               ? json(p.number)
               : json(s);
}

json icmp_json(const Icmp &i) {
    json out = json::object();
    if (i.type) {
        out["type"] = *i.type;
    }
    if (i.code) {
        out["code"] = *i.code;
    }
    return out;
}

json rule_json(const Rule &r) {
    json out{{"action", to_string(r.action)}};
    if (r.ip_version) {
        out["ipVersion"] = *r.ip_version;
    }
    if (r.protocol) {
        out["protocol"] = protocol_json(*r.protocol);
    }
    if (r.not_protocol) {
        out["notProtocol"] = protocol_json(*r.not_protocol);
    }
    if (r.icmp) {
        out["icmp"] = icmp_json(*r.icmp);
    }
    if (r.not_icmp) {
        out["notICMP"] = icmp_json(*r.not_icmp);
    }
    if (auto s = entity_json(r.source); !s.empty()) {
        out["source"] = std::move(s);
    }
    if (auto s = entity_json(r.destination); !s.empty()) {
        out["destination"] = std::move(s);
    }
    if (!r.annotations.empty()) {
        out["metadata"] = {{"annotations", r.annotations}};
    }
    return out;
}

json metadata_json(const std::string &name, const std::string &ns, const Labels &labels,
                   const std::map<std::string, std::string> &annotations) {
    json meta{{"name", name}};
    if (!ns.empty()) {
        meta["namespace"] = ns;
    }
    if (!labels.empty()) {
        meta["labels"] = labels;
    }
    if (!annotations.empty()) {
        meta["annotations"] = annotations;
    }
    return meta;
}

json policy_json(const Policy &p) {
    const json meta = metadata_json(p.name, p.ns, p.labels, p.annotations);
    if (p.kind == PolicyKind::kKubernetes) {
        return {{"apiVersion", kK8sPolicyApi},
                {"kind", "NetworkPolicy"},
                {"metadata", meta},
                {"spec", p.k8s_spec}};
    }
    json spec = json::object();
    if (p.order) {
        spec["order"] = *p.order;
    }
    if (p.selector.present()) {
        spec["selector"] = selector_json(p.selector);
    }
    if (p.namespace_selector.present()) {
        spec["namespaceSelector"] = selector_json(p.namespace_selector);
    }
    json types = json::array();
    if (p.ingress) {
        types.push_back("Ingress");
    }
    if (p.egress) {
        types.push_back("Egress");
    }
    spec["types"] = types;
    for (const auto &[key, rules] :
         {std::pair{"ingress", &p.ingress_rules}, std::pair{"egress", &p.egress_rules}}) {
        if (!rules->empty()) {
            json l = json::array();
            for (const auto &r : *rules) {
                l.push_back(rule_json(r));
            }
            spec[key] = std::move(l);  // moved, not copied: a rule list may be long
        }
    }
    if (p.apply_on_forward) {
        spec["applyOnForward"] = true;
    }
    if (!p.performance_hints.empty()) {
        spec["performanceHints"] = p.performance_hints;
    }
    // Assigned, not an initializer list: that copies its elements, the whole spec.
    json out = json::object();
    out["apiVersion"] = kCalicoApi;
    out["kind"] = p.kind == PolicyKind::kGlobal ? "GlobalNetworkPolicy" : "NetworkPolicy";
    out["metadata"] = meta;
    out["spec"] = std::move(spec);
    return out;
}

json pod_json(const Pod &p) {
    json spec = json::object();
    if (!p.node.empty()) {
        spec["nodeName"] = p.node;
    }
    if (!p.service_account.empty()) {
        spec["serviceAccountName"] = p.service_account;
    }
    if (!p.ports.empty()) {
        json ports = json::array();
        for (const auto &np : p.ports) {
            ports.push_back(
                {{"name", np.name}, {"containerPort", np.port}, {"protocol", np.protocol.str()}});
        }
        spec["containers"] = json::array({{{"name", "ports"}, {"ports", ports}}});
    }
    json out{{"apiVersion", "v1"},
             {"kind", "Pod"},
             {"metadata", metadata_json(p.name, p.ns, p.labels, p.annotations)},
             {"spec", spec}};
    if (!p.ips.empty()) {
        json ips = json::array();
        for (const auto &a : p.ips) {
            ips.push_back({{"ip", a.str()}});
        }
        out["status"] = {{"podIP", p.ips[0].str()}, {"podIPs", ips}};
    }
    return out;
}

// Validation errors, with the decoder's origin.
template <typename F>
auto validated(const Decoder &d, F &&decode) {
    try {
        return decode();
    } catch (const PolicyError &e) {
        d.fail(e.field(), e.why());
    }
}

Object decode_object(const json &obj, Decoder &d) {
    const std::string &kind = d.origin().kind;
    const auto api = obj.is_object() && obj.contains("apiVersion") && obj["apiVersion"].is_string()
                         ? obj["apiVersion"].get<std::string>()
                         : std::string();
    return validated(d, [&]() -> Object {
        if (kind == "GlobalNetworkPolicy") {
            Policy p = decode_calico(obj, d, true);
            validate(p);
            return p;
        }
        if (kind == "NetworkPolicy") {
            Policy p = api == kK8sPolicyApi ? decode_k8s(obj, d) : decode_calico(obj, d, false);
            validate(p);
            return p;
        }
        if (kind == "Namespace") {
            Namespace n = decode_namespace(obj, d);
            validate(n);
            return n;
        }
        Pod p = decode_pod(obj, d);
        validate(p);
        return p;
    });
}

}  // namespace

// ---- public ----

std::string_view to_string(Action a) {
    switch (a) {
        case Action::kDeny:
            return "Deny";
        case Action::kLog:
            return "Log";
        case Action::kPass:
            return "Pass";
        case Action::kAllow:
            break;
    }
    return "Allow";
}

std::string_view to_string(Direction d) {
    return d == Direction::kIngress ? "Ingress" : "Egress";
}

std::string_view to_string(PolicyKind k) {
    switch (k) {
        case PolicyKind::kGlobal:
            return "GlobalNetworkPolicy";
        case PolicyKind::kKubernetes:
            return "NetworkPolicy (networking.k8s.io/v1)";
        case PolicyKind::kCalico:
            break;
    }
    return "NetworkPolicy";
}

std::string Protocol::str() const {
    for (size_t i = 0; i < std::size(kProtocolNumbers); ++i) {
        if (kProtocolNumbers[i] == number) {
            return kProtocolNames[i];
        }
    }
    return std::to_string(number);
}

std::optional<Protocol> Protocol::parse(std::string_view s) {
    for (size_t i = 0; i < std::size(kProtocolNames); ++i) {
        if (s == kProtocolNames[i]) {
            return Protocol{kProtocolNumbers[i]};
        }
    }
    if (!s.empty() && s.size() <= 3 &&
        std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        const int n = std::stoi(std::string(s));
        if (n >= 1 && n <= 255) {
            return Protocol{static_cast<uint8_t>(n)};
        }
    }
    return std::nullopt;
}

std::string Port::str() const {
    if (named()) {
        return name;
    }
    return min == max ? std::to_string(min) : std::to_string(min) + ":" + std::to_string(max);
}

std::optional<net::Family> Rule::family() const {
    if (ip_version) {
        return *ip_version == 4 ? net::Family::kIp4 : net::Family::kIp6;
    }
    for (const auto *nets :
         {&source.nets, &source.not_nets, &destination.nets, &destination.not_nets}) {
        if (!nets->empty()) {
            return nets->front().family();
        }
    }
    return std::nullopt;
}

std::string Policy::key() const {
    return kind == PolicyKind::kGlobal ? name : ns + "/" + calico_name();
}

std::string Policy::calico_name() const {
    return kind == PolicyKind::kKubernetes ? kK8sPolicyPrefix + name : name;
}

Labels Namespace::effective_labels() const {
    Labels l = labels;
    l[kNameLabel] = name;
    l[kK8sNameLabel] = name;
    return l;
}

Labels Pod::effective_labels(const Labels &ns_labels) const {
    Labels l = labels;
    for (const auto &[k, v] : ns_labels) {
        l[kNamespaceLabelPrefix + k] = v;
    }
    l[std::string(kNamespaceLabelPrefix) + kNameLabel] = ns;
    l[kNamespaceLabel] = ns;
    l[kOrchestratorLabel] = "k8s";
    if (!service_account.empty()) {
        l[kServiceAccountLabel] = service_account;
    }
    return l;
}

PolicyError::PolicyError(std::string object, std::string field, std::string why)
    : std::runtime_error(object + ": " + (field.empty() ? "" : field + ": ") + why),
      object_(std::move(object)),
      field_(std::move(field)),
      why_(std::move(why)) {}

bool is_policy_kind(std::string_view kind) {
    return kind == "NetworkPolicy" || kind == "GlobalNetworkPolicy" || kind == "Namespace" ||
           kind == "Pod";
}

std::string describe(const Object &o) {
    if (const auto *p = std::get_if<Policy>(&o)) {
        const char *kind = p->kind == PolicyKind::kGlobal ? "GlobalNetworkPolicy" : "NetworkPolicy";
        return std::string(kind) + " '" +
               (p->kind == PolicyKind::kGlobal ? p->name : p->ns + "/" + p->name) + "'";
    }
    if (const auto *n = std::get_if<Namespace>(&o)) {
        return "Namespace '" + n->name + "'";
    }
    return "Pod '" + std::get<Pod>(o).key() + "'";
}

void validate(const Policy &p) {
    const std::string object = describe(p);
    auto fail = [&](const std::string &field, const std::string &why) {
        throw PolicyError(object, field, why);
    };
    if (p.name.size() > kMaxNameLength) {
        fail("metadata.name",
             "name is too long by " + std::to_string(p.name.size() - kMaxNameLength) + " bytes");
    }
    if (p.kind == PolicyKind::kKubernetes) {
        if (auto e = dns1123_subdomain_error(p.name); !e.empty()) {
            fail("metadata.name", invalid(json_quoted(p.name), e));
        }
    } else if (!(p.kind == PolicyKind::kGlobal ? global_policy_name_ok(p.name)
                                               : network_policy_name_ok(p.name))) {
        fail("metadata.name",
             invalid(json_quoted(p.name),
                     "name must consist of lower case alphanumeric characters or '-' (regex: "
                     "[a-z0-9]([-a-z0-9]*[a-z0-9])?), with at most one '.'"));
    }
    if (p.kind != PolicyKind::kGlobal) {
        if (auto e = dns1123_label_error(p.ns); !e.empty()) {
            fail("metadata.namespace", invalid(json_quoted(p.ns), e));
        }
    } else if (!p.ns.empty()) {
        fail("metadata.namespace", forbidden("a GlobalNetworkPolicy has no namespace"));
    }
    if (auto e = labels_error(p.labels, "metadata.labels", true)) {
        fail(e->field, e->why);
    }
    if (auto e = labels_error(p.annotations, "metadata.annotations", false)) {
        fail(e->field, e->why);
    }
    if (p.selector.parsed.uses_global()) {
        fail("spec.selector", "global() can only be used in an EntityRule namespaceSelector");
    }
    if (p.namespace_selector.parsed.uses_global()) {
        fail("spec.namespaceSelector",
             "global() can only be used in an EntityRule namespaceSelector");
    }
    if (p.kind != PolicyKind::kGlobal && p.namespace_selector.present()) {
        fail("spec.namespaceSelector", "unknown field");
    }
    if (!p.ingress && !p.egress) {
        fail("spec.types", required("Ingress, Egress or both"));
    }
    for (const auto &[key, rules] :
         {std::pair{"spec.ingress", &p.ingress_rules}, std::pair{"spec.egress", &p.egress_rules}}) {
        for (size_t i = 0; i < rules->size(); ++i) {
            validate_rule((*rules)[i], at(key, i), fail);
        }
    }
}

void validate(const Namespace &n) {
    const std::string object = describe(n);
    if (auto e = dns1123_label_error(n.name); !e.empty()) {
        throw PolicyError(object, "metadata.name", invalid(json_quoted(n.name), e));
    }
    for (const auto &e : {labels_error(n.labels, "metadata.labels", true),
                          labels_error(n.annotations, "metadata.annotations", false)}) {
        if (e) {
            throw PolicyError(object, e->field, e->why);
        }
    }
}

void validate(const Pod &p) {
    const std::string object = describe(p);
    auto fail = [&](const std::string &field, const std::string &why) {
        throw PolicyError(object, field, why);
    };
    if (auto e = dns1123_subdomain_error(p.name); !e.empty()) {
        fail("metadata.name", invalid(json_quoted(p.name), e));
    }
    if (auto e = dns1123_label_error(p.ns); !e.empty()) {
        fail("metadata.namespace", invalid(json_quoted(p.ns), e));
    }
    for (const auto &e : {labels_error(p.labels, "metadata.labels", true),
                          labels_error(p.annotations, "metadata.annotations", false)}) {
        if (e) {
            fail(e->field, e->why);
        }
    }
    std::set<std::string> names;
    for (const auto &np : p.ports) {
        if (auto e = port_name_error(np.name); !e.empty()) {
            fail("spec.containers.ports", invalid(json_quoted(np.name), e));
        }
        if (!names.insert(np.name).second) {
            fail("spec.containers.ports", duplicate(json_quoted(np.name)));
        }
    }
    if (p.ips.size() > 2 || (p.ips.size() == 2 && p.ips[0].family() == p.ips[1].family())) {
        fail("status.podIPs", invalid(std::to_string(p.ips.size()) + " addresses",
                                      "at most one address per family"));
    }
}

std::vector<PolicyResource> decode_policy_resources(const std::vector<ipam::RawResource> &raw) {
    return decode_each<PolicyResource>(
        raw, is_policy_kind, "NetworkPolicy, GlobalNetworkPolicy, Namespace or Pod",
        [](const json &obj, Decoder &d) { return decode_object(obj, d); },
        [](const PolicyResource &r) {
            const auto *p = std::get_if<Policy>(&r.value);
            const std::string what = describe(r.value);
            return std::pair{what + (p && p->kind == PolicyKind::kKubernetes ? " (k8s)" : ""),
                             what};
        });
}

std::vector<PolicyResource> parse_policy_resources(std::string_view text,
                                                   const std::string &source_name) {
    return decode_policy_resources(ipam::split_resources(text, source_name));
}

json to_json(const Object &o) {
    if (const auto *p = std::get_if<Policy>(&o)) {
        return policy_json(*p);
    }
    if (const auto *n = std::get_if<Namespace>(&o)) {
        return {{"apiVersion", "v1"},
                {"kind", "Namespace"},
                {"metadata", metadata_json(n->name, "", n->labels, n->annotations)}};
    }
    return pod_json(std::get<Pod>(o));
}

Object object_from_json(const json &j) {
    ipam::ResourceOrigin o{"store"};
    o.kind = j.is_object() && j.contains("kind") && j["kind"].is_string()
                 ? j["kind"].get<std::string>()
                 : "";
    if (!is_policy_kind(o.kind)) {
        throw PolicyError("record", "kind", "unknown kind '" + o.kind + "'");
    }
    Decoder d(o, nullptr);
    try {
        return decode_object(j, d);
    } catch (const ipam::ResourceError &e) {
        throw PolicyError(o.kind + " record", e.field(), e.what());
    }
}

}  // namespace fwd::policy
