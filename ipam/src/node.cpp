// Node records: validation, Calico's Node JSON, the derived VTEP MAC, and the registry.
#include "fwd/ipam/node.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

namespace fwd::ipam {

using nlohmann::json;

namespace {

constexpr std::string_view kApiVersion = "projectcalico.org/v3";
constexpr std::string_view kKind = "Node";

const char *const kIpv4Field = "spec.bgp.ipv4Address";
const char *const kIpv6Field = "spec.bgp.ipv6Address";
const char *const kTunnel4Field = "spec.ipv4VXLANTunnelAddr";
const char *const kTunnel6Field = "spec.ipv6VXLANTunnelAddr";
const char *const kMac4Field = "spec.vxlanTunnelMACAddr";
const char *const kMac6Field = "spec.vxlanTunnelMACAddrV6";
const char *const kAsField = "spec.bgp.asNumber";
const char *const kRrField = "spec.bgp.routeReflectorClusterID";

// Calico's numorstring.ASNumber: an integer or "a.b" (asdot); 1 to 2^32-1.
std::optional<uint32_t> as_number(const json &v) {
    if (v.is_number_unsigned() || v.is_number_integer()) {
        const auto n = v.get<int64_t>();
        return n >= 0 && n <= 0xffffffffLL ? std::optional<uint32_t>(static_cast<uint32_t>(n))
                                           : std::nullopt;
    }
    if (!v.is_string()) {
        return std::nullopt;
    }
    const std::string s = v.get<std::string>();
    const auto dot = s.find('.');
    auto num = [](std::string_view d, uint64_t max) -> std::optional<uint64_t> {
        if (d.empty() || d.size() > 10 ||
            !std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            return std::nullopt;
        }
        const uint64_t x = std::stoull(std::string(d));
        return x <= max ? std::optional<uint64_t>(x) : std::nullopt;
    };
    if (dot == std::string::npos) {
        auto x = num(s, 0xffffffffULL);
        return x ? std::optional<uint32_t>(static_cast<uint32_t>(*x)) : std::nullopt;
    }
    auto hi = num(std::string_view(s).substr(0, dot), 0xffff);
    auto lo = num(std::string_view(s).substr(dot + 1), 0xffff);
    return hi && lo ? std::optional<uint32_t>(static_cast<uint32_t>(*hi << 16 | *lo))
                    : std::nullopt;
}

bool is_v4(net::Family f) {
    return f == net::Family::kIp4;
}

// Kubernetes' label name part (and value): at most 63 characters of letters, digits, '-', '_'
// and '.', starting and ending with a letter or digit. A value may also be empty.
bool valid_label_part(std::string_view s) {
    auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    return !s.empty() && s.size() <= 63 && alnum(s.front()) && alnum(s.back()) &&
           std::all_of(s.begin(), s.end(),
                       [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

void validate_label(const std::string &node, const std::string &key, const std::string &value) {
    const std::string field = "metadata.labels." + key;
    const auto slash = key.find('/');
    const std::string_view name = slash == std::string::npos
                                      ? std::string_view(key)
                                      : std::string_view(key).substr(slash + 1);
    if (slash != std::string::npos && !is_dns1123_subdomain(key.substr(0, slash))) {
        throw NodeError(node, field, "the key's prefix is not a DNS-1123 subdomain");
    }
    if (!valid_label_part(name)) {
        throw NodeError(node, field,
                        "the key's name is not 1..63 letters, digits, '-', '_', '.' starting and "
                        "ending with a letter or digit");
    }
    if (!value.empty() && !valid_label_part(value)) {
        throw NodeError(node, field,
                        "the value '" + value +
                            "' is not empty nor 1..63 letters, digits, '-', '_', '.' starting and "
                            "ending with a letter or digit");
    }
}

void validate_address(const std::string &node, const char *field, const IfAddr &a, net::Family f) {
    if (a.family() != f) {
        throw NodeError(node, field, a.str() + " is not an " + family_name(f) + " address");
    }
    const int bits = is_v4(f) ? 32 : 128;
    if (a.len < 0 || a.len > bits) {
        throw NodeError(
            node, field,
            "prefix length " + std::to_string(a.len) + " is outside 0.." + std::to_string(bits));
    }
}

void validate_mac(const std::string &node, const char *field, const net::MacAddr &m) {
    if (m.is_zero() || m.is_multicast()) {
        throw NodeError(node, field,
                        m.str() + " is not a unicast MAC address (a VTEP MAC must be one)");
    }
}

// One JSON object of a Node: the known fields, the ones Calico has and dpdk-fwd drops, and
// nothing else. Every error names the node and the field.
class Fields {
  public:
    Fields(const json &j, const std::string &node, std::string path,
           std::initializer_list<const char *> known,
           std::initializer_list<const char *> dropped = {})
        : j_(j), node_(node), path_(std::move(path)) {
        if (j_.is_null()) {
            return;
        }
        if (!j_.is_object()) {
            throw NodeError(node_, path_, "want an object, got " + j_.dump());
        }
        for (const auto &[k, v] : j_.items()) {
            auto is = [&k = k](const char *x) { return k == x; };
            if (std::none_of(known.begin(), known.end(), is) &&
                std::none_of(dropped.begin(), dropped.end(), is)) {
                fail(k, "unknown field");
            }
        }
    }
    [[noreturn]] void fail(const std::string &key, const std::string &why) const {
        throw NodeError(node_, path_.empty() ? key : path_ + "." + key, why);
    }
    // The value at key, null when absent.
    json at(const std::string &key) const {
        return j_.is_object() && j_.contains(key) ? j_[key] : json();
    }
    // The string at key; nullopt when absent, null, or empty (Calico's omitempty).
    std::optional<std::string> str(const std::string &key) const {
        const json v = at(key);
        if (v.is_null()) {
            return std::nullopt;
        }
        if (!v.is_string()) {
            fail(key, "want a string, got " + v.dump());
        }
        auto s = v.get<std::string>();
        return s.empty() ? std::nullopt : std::optional<std::string>(s);
    }

  private:
    json j_;  // a copy: callers pass sub-objects by value
    const std::string &node_;
    std::string path_;
};

// An address with its prefix length (spec.bgp.ipv4Address / ipv6Address).
std::optional<IfAddr> node_address(const Fields &o, const char *key, net::Family f) {
    auto s = o.str(key);
    if (!s) {
        return std::nullopt;
    }
    auto a = IfAddr::parse(*s);
    // Say which half is wrong: the address or the length.
    const auto bare = net::IpAddr::parse(std::string_view(*s).substr(0, s->find('/')));
    if (!bare || bare->family() != f) {
        o.fail(key, "'" + *s + "' is not an " + family_name(f) + " address with a prefix length");
    }
    if (!a) {
        o.fail(key, "'" + *s + "': prefix length out of range 0.." +
                        std::to_string(is_v4(f) ? 32 : 128));
    }
    return a;
}

std::optional<net::IpAddr> tunnel_address(const Fields &o, const char *key, net::Family f) {
    auto s = o.str(key);
    if (!s) {
        return std::nullopt;
    }
    auto a = net::IpAddr::parse(*s);
    if (!a || a->family() != f) {
        o.fail(key, "'" + *s + "' is not an " + family_name(f) + " address");
    }
    return a;
}

std::optional<net::MacAddr> vtep_mac(const Fields &o, const char *key) {
    auto s = o.str(key);
    if (!s) {
        return std::nullopt;
    }
    auto m = net::MacAddr::parse(*s);
    if (!m) {
        o.fail(key, "'" + *s + "' is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    return m;  // unicast: validate_node
}

// What a record holds that no other record may hold: its node and tunnel addresses, and the
// VTEP MAC of every family it has an address of (two nodes with one MAC would each get the
// other's VXLAN frames).
struct Claim {
    std::string id;        // equal ids clash: "ip 10.0.0.1", "mac 66:..."
    std::string field;     // where the record holds it
    std::string what;      // "IPv4 address 10.0.0.1"
    bool derived = false;  // a VTEP MAC derived from the name, not configured
};

// "node 'a' (spec.vxlanTunnelMACAddr, derived from its name)": who holds a claim, and where.
std::string holder(const NodeRecord &n, const Claim &c) {
    return "node '" + n.name + "' (" + c.field + (c.derived ? ", derived from its name" : "") + ")";
}

std::vector<Claim> claims(const NodeRecord &n) {
    std::vector<Claim> out;
    for (net::Family f : {net::Family::kIp4, net::Family::kIp6}) {
        const std::string fam = family_name(f);
        if (const auto &a = n.address(f)) {
            out.push_back({"ip " + a->addr.str(), is_v4(f) ? kIpv4Field : kIpv6Field,
                           fam + " address " + a->addr.str()});
        }
        if (const auto &t = n.tunnel(f)) {
            out.push_back({"ip " + t->str(), is_v4(f) ? kTunnel4Field : kTunnel6Field,
                           fam + " tunnel address " + t->str()});
        }
        const auto &configured = is_v4(f) ? n.vtep_mac4 : n.vtep_mac6;
        if (configured || n.address(f) || n.tunnel(f)) {
            const std::string mac = n.vtep_mac(f).str();
            out.push_back(
                {"mac " + mac, is_v4(f) ? kMac4Field : kMac6Field,
                 fam + " VTEP MAC " + mac + (configured ? "" : " (derived from the name)"),
                 !configured});
        }
    }
    return out;
}

// Throws NodeError when `other` holds one of n's claims (`mine`: claims(n)).
void refuse_clash(const NodeRecord &n, const std::vector<Claim> &mine, const NodeRecord &other) {
    for (const Claim &theirs : claims(other)) {
        for (const Claim &c : mine) {
            if (c.id == theirs.id) {
                throw NodeError(n.name, c.field,
                                c.what + " is already held by " + holder(other, theirs));
            }
        }
    }
}

std::string decode_name(const json &j) {
    if (j.is_object() && j.contains("metadata") && j["metadata"].is_object() &&
        j["metadata"].contains("name") && j["metadata"]["name"].is_string()) {
        return j["metadata"]["name"].get<std::string>();
    }
    return "";
}

}  // namespace

std::optional<IfAddr> IfAddr::parse(std::string_view s) {
    if (s.find(':') != std::string_view::npos) {
        if (auto a = net::IfAddr6::parse(s)) {
            return IfAddr{a->addr, a->len};
        }
    } else if (auto a = net::IfAddr4::parse(s)) {
        return IfAddr{a->addr, a->len};
    }
    return std::nullopt;
}

net::MacAddr NodeRecord::vtep_mac(net::Family f) const {
    const auto &configured = is_v4(f) ? vtep_mac4 : vtep_mac6;
    return configured ? *configured : derived_vtep_mac(name, f);
}

net::MacAddr derived_vtep_mac(std::string_view node, net::Family f) {
    std::string input(node);
    if (!is_v4(f)) {
        input += "-v6";
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(input.data(), input.size(), md, &md_len, EVP_sha1(), nullptr) != 1 ||
        md_len < 5) {
        throw IpamError("node '" + std::string(node) + "': SHA-1 of the name failed (libcrypto)");
    }
    return net::MacAddr({0x66, md[0], md[1], md[2], md[3], md[4]});
}

void validate_node(const NodeRecord &n) {
    if (!is_dns1123_subdomain(n.name)) {
        throw NodeError(n.name, "metadata.name",
                        "not a DNS-1123 subdomain (at most 253 characters: lower-case letters, "
                        "digits, '-' and '.', each part starting and ending with a letter or "
                        "digit)");
    }
    if (n.ipv4) {
        validate_address(n.name, kIpv4Field, *n.ipv4, net::Family::kIp4);
    }
    if (n.ipv6) {
        validate_address(n.name, kIpv6Field, *n.ipv6, net::Family::kIp6);
    }
    if (n.tunnel4 && n.tunnel4->family() != net::Family::kIp4) {
        throw NodeError(n.name, kTunnel4Field, n.tunnel4->str() + " is not an IPv4 address");
    }
    if (n.tunnel6 && n.tunnel6->family() != net::Family::kIp6) {
        throw NodeError(n.name, kTunnel6Field, n.tunnel6->str() + " is not an IPv6 address");
    }
    if (n.vtep_mac4) {
        validate_mac(n.name, kMac4Field, *n.vtep_mac4);
    }
    if (n.vtep_mac6) {
        validate_mac(n.name, kMac6Field, *n.vtep_mac6);
    }
    for (const auto &[k, v] : n.labels) {
        validate_label(n.name, k, v);
    }
    if (n.as_number && *n.as_number == 0) {
        throw NodeError(n.name, kAsField, "0 is not an AS number (1 to 4294967295)");
    }
    if (!n.rr_cluster_id.empty()) {
        const auto a = net::IpAddr::parse(n.rr_cluster_id);
        if (!a || a->family() != net::Family::kIp4) {
            throw NodeError(
                n.name, kRrField,
                "'" + n.rr_cluster_id + "' is not an IPv4 address (a cluster ID is one)");
        }
    }
}

void to_json(json &j, const NodeRecord &n) {
    json meta{{"name", n.name}};
    if (!n.labels.empty()) {
        meta["labels"] = n.labels;
    }
    json spec = json::object();
    json bgp = json::object();
    if (n.ipv4) {
        bgp["ipv4Address"] = n.ipv4->str();
    }
    if (n.ipv6) {
        bgp["ipv6Address"] = n.ipv6->str();
    }
    if (n.as_number) {
        bgp["asNumber"] = *n.as_number;
    }
    if (!n.rr_cluster_id.empty()) {
        bgp["routeReflectorClusterID"] = n.rr_cluster_id;
    }
    if (!bgp.empty()) {
        spec["bgp"] = bgp;
    }
    if (n.tunnel4) {
        spec["ipv4VXLANTunnelAddr"] = n.tunnel4->str();
    }
    if (n.vtep_mac4) {
        spec["vxlanTunnelMACAddr"] = n.vtep_mac4->str();
    }
    if (n.tunnel6) {
        spec["ipv6VXLANTunnelAddr"] = n.tunnel6->str();
    }
    if (n.vtep_mac6) {
        spec["vxlanTunnelMACAddrV6"] = n.vtep_mac6->str();
    }
    j = json{{"apiVersion", kApiVersion}, {"kind", kKind}, {"metadata", meta}, {"spec", spec}};
}

void from_json(const json &j, NodeRecord &n) {
    n = NodeRecord{};
    // The name first, so that every later error names the node.
    const std::string name = decode_name(j);
    if (!j.is_object()) {
        throw NodeError(name, "", "not a Node resource (want a JSON object)");
    }
    const Fields top(j, name, "", {"apiVersion", "kind", "metadata", "spec"}, {"status"});
    if (top.str("apiVersion") != std::string(kApiVersion)) {
        top.fail("apiVersion", top.at("apiVersion").dump() + " is not " + std::string(kApiVersion));
    }
    if (top.str("kind") != std::string(kKind)) {
        top.fail("kind", top.at("kind").dump() + " is not Node");
    }
    const Fields meta(top.at("metadata"), name, "metadata", {"name", "labels"},
                      {"namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                       "deletionTimestamp", "annotations", "managedFields", "ownerReferences",
                       "finalizers", "selfLink", "generateName", "deletionGracePeriodSeconds"});
    if (!meta.str("name")) {
        meta.fail("name", "missing");
    }
    n.name = name;
    const json labels = meta.at("labels").is_null() ? json::object() : meta.at("labels");
    if (!labels.is_object()) {
        meta.fail("labels", "want an object, got " + labels.dump());
    }
    for (const auto &[k, v] : labels.items()) {
        if (!v.is_string()) {
            meta.fail("labels." + k, "want a string, got " + v.dump());
        }
        n.labels[k] = v.get<std::string>();
    }
    const Fields spec(top.at("spec"), name, "spec",
                      {"bgp", "ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr", "ipv6VXLANTunnelAddr",
                       "vxlanTunnelMACAddrV6"},
                      {"orchRefs", "addresses", "wireguard"});
    const Fields bgp(spec.at("bgp"), name, "spec.bgp",
                     {"ipv4Address", "ipv6Address", "asNumber", "routeReflectorClusterID"},
                     {"ipv4IPIPTunnelAddr"});
    if (const json asn = bgp.at("asNumber"); !asn.is_null()) {
        n.as_number = as_number(asn);
        if (!n.as_number) {
            bgp.fail("asNumber", asn.dump() + " is not an AS number (1 to 4294967295, or a.b)");
        }
    }
    n.rr_cluster_id = bgp.str("routeReflectorClusterID").value_or("");
    n.ipv4 = node_address(bgp, "ipv4Address", net::Family::kIp4);
    n.ipv6 = node_address(bgp, "ipv6Address", net::Family::kIp6);
    n.tunnel4 = tunnel_address(spec, "ipv4VXLANTunnelAddr", net::Family::kIp4);
    n.tunnel6 = tunnel_address(spec, "ipv6VXLANTunnelAddr", net::Family::kIp6);
    n.vtep_mac4 = vtep_mac(spec, "vxlanTunnelMACAddr");
    n.vtep_mac6 = vtep_mac(spec, "vxlanTunnelMACAddrV6");
    validate_node(n);
}

// ---- the registry ----

NodeRegistry::NodeRegistry(Store &s, std::string prefix) : store_(s), prefix_(std::move(prefix)) {}

void NodeRegistry::put(const NodeRecord &given, Merge merge) {
    validate_node(given);
    const std::string serial_key = prefix_ + "serial";
    const std::string own_key = key(given.name);
    const auto mine = claims(given);
    for (int attempt = 0; attempt < max_retries_; ++attempt) {
        NodeRecord n = given;
        // The serial before the list: a put that lands in between moves it, and this one
        // retries with that put's record in view.
        const auto serial = store_.get(serial_key);
        int64_t own_rev = 0;
        for (const auto &kv : store_.list(prefix_ + "nodes/")) {
            NodeRecord other;
            try {
                other = json::parse(kv.value).get<NodeRecord>();
            } catch (const std::exception &) {
                // A malformed record holds nothing that can be read; list() reports it.
                if (kv.key == own_key) {
                    own_rev = kv.mod_revision;
                }
                continue;
            }
            if (kv.key == own_key) {
                if (merge == Merge::kKeepUserFields) {
                    n.as_number = other.as_number;
                    n.rr_cluster_id = other.rr_cluster_id;
                    for (const auto &[k, v] : other.labels) {
                        n.labels.emplace(k, v);  // the given labels win
                    }
                }
                if (other == n) {
                    return;
                }
                own_rev = kv.mod_revision;
                continue;
            }
            refuse_clash(n, mine, other);
        }
        if (store_.txn({{serial_key, serial ? serial->mod_revision : 0}, {own_key, own_rev}},
                       {{Operation::Kind::kPut, own_key, json(n).dump()},
                        {Operation::Kind::kPut, serial_key, n.name}})) {
            return;
        }
    }
    throw ConflictError("node registry: gave up on registering node '" + given.name + "' after " +
                        std::to_string(max_retries_) + " conflicting writes (" + store_.describe() +
                        ")");
}

void NodeRegistry::check(const std::vector<NodeRecord> &batch) {
    std::map<std::string, size_t> turn;  // key -> the batch index that writes it
    std::vector<std::vector<Claim>> mine;
    for (size_t i = 0; i < batch.size(); ++i) {
        validate_node(batch[i]);
        if (!turn.emplace(key(batch[i].name), i).second) {
            throw NodeError(batch[i].name, "metadata.name", "given twice");
        }
        mine.push_back(claims(batch[i]));
    }
    for (size_t i = 0; i < batch.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            refuse_clash(batch[i], mine[i], batch[j]);
        }
    }
    for (const auto &kv : store_.list(prefix_ + "nodes/")) {
        NodeRecord other;
        try {
            other = json::parse(kv.value).get<NodeRecord>();
        } catch (const std::exception &) {
            continue;  // a malformed record holds nothing that can be read, as in put()
        }
        auto t = turn.find(kv.key);
        for (size_t i = 0; i < batch.size(); ++i) {
            // Replaced by batch[t] once its turn came (batch[i] itself included).
            if (t == turn.end() || t->second > i) {
                refuse_clash(batch[i], mine[i], other);
            }
        }
    }
}

NodeRecord NodeRegistry::update(const std::string &name,
                                const std::function<void(NodeRecord &)> &edit) {
    const std::string serial_key = prefix_ + "serial";
    for (int attempt = 0; attempt < max_retries_; ++attempt) {
        const auto serial = store_.get(serial_key);
        auto kv = store_.get(key(name));
        if (!kv) {
            throw NodeError(name, "metadata.name", "no such node in the registry");
        }
        NodeRecord n;
        try {
            n = json::parse(kv->value).get<NodeRecord>();
        } catch (const json::exception &e) {
            throw NodeError(name, "", std::string("the stored record is not JSON: ") + e.what());
        }
        const NodeRecord before = n;
        edit(n);
        // Only the user's fields: an edit never moves an address (no claim to check).
        n.name = before.name;
        n.ipv4 = before.ipv4;
        n.ipv6 = before.ipv6;
        n.tunnel4 = before.tunnel4;
        n.tunnel6 = before.tunnel6;
        n.vtep_mac4 = before.vtep_mac4;
        n.vtep_mac6 = before.vtep_mac6;
        validate_node(n);
        if (n == before) {
            return n;
        }
        if (store_.txn(
                {{serial_key, serial ? serial->mod_revision : 0}, {kv->key, kv->mod_revision}},
                {{Operation::Kind::kPut, kv->key, json(n).dump()},
                 {Operation::Kind::kPut, serial_key, n.name}})) {
            return n;
        }
    }
    throw ConflictError("node registry: gave up on updating node '" + name + "' after " +
                        std::to_string(max_retries_) + " conflicting writes (" + store_.describe() +
                        ")");
}

bool NodeRegistry::remove(const std::string &name) {
    for (int attempt = 0; attempt < max_retries_; ++attempt) {
        auto kv = store_.get(key(name));
        if (!kv) {
            return false;
        }
        if (store_.txn({{kv->key, kv->mod_revision}}, {{Operation::Kind::kDelete, kv->key, ""}})) {
            return true;
        }
    }
    throw ConflictError("node registry: gave up on removing node '" + name + "' after " +
                        std::to_string(max_retries_) + " conflicting writes (" + store_.describe() +
                        ")");
}

std::optional<NodeRecord> NodeRegistry::get(const std::string &name) {
    auto kv = store_.get(key(name));
    if (!kv) {
        return std::nullopt;
    }
    json j;
    try {
        j = json::parse(kv->value);
    } catch (const json::exception &e) {
        throw NodeError(name, "", std::string("the stored record is not JSON: ") + e.what());
    }
    return j.get<NodeRecord>();
}

NodeRegistry::Listing NodeRegistry::list() {
    Listing out;
    out.revision = store_.revision();
    std::map<std::string, std::string> refused;  // key -> why
    std::vector<std::pair<std::string, NodeRecord>> good;
    const std::string sub = prefix_ + "nodes/";
    for (const auto &kv : store_.list(sub)) {
        const std::string name = kv.key.substr(sub.size());
        try {
            NodeRecord n = json::parse(kv.value).get<NodeRecord>();
            if (n.name != name) {
                throw NodeError(name, "metadata.name",
                                "the record under this node's key is named '" + n.name + "'");
            }
            good.emplace_back(kv.key, std::move(n));
        } catch (const IpamError &e) {
            refused[kv.key] = e.what();
        } catch (const json::exception &e) {
            refused[kv.key] = "node '" + name + "': the stored record is not JSON: " + e.what();
        }
    }
    // Who holds what; a claim held by two records refuses both.
    std::map<std::string, std::vector<std::pair<size_t, Claim>>> holders;
    for (size_t i = 0; i < good.size(); ++i) {
        for (Claim &c : claims(good[i].second)) {
            auto &h = holders[c.id];
            if (std::none_of(h.begin(), h.end(), [&](const auto &x) { return x.first == i; })) {
                h.emplace_back(i, std::move(c));
            }
        }
    }
    for (const auto &[id, h] : holders) {
        for (const auto &[i, c] : h) {
            for (const auto &[other, oc] : h) {
                if (other == i) {
                    continue;
                }
                std::string &why = refused[good[i].first];
                why += std::string(why.empty() ? "" : "; ") + "node '" + good[i].second.name +
                       "': " + c.field + ": " + c.what + " is also held by " +
                       holder(good[other].second, oc);
            }
        }
    }
    for (auto &[k, n] : good) {
        if (!refused.contains(k)) {
            out.nodes.push_back(std::move(n));
        }
    }
    out.refused.assign(refused.begin(), refused.end());
    return out;
}

}  // namespace fwd::ipam
