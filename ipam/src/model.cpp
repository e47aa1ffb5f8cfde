// Pools, blocks, affinities and handles: validation, address arithmetic, JSON.
#include "fwd/ipam/model.hpp"

#include <algorithm>

#include "fwd/label/selector.hpp"

namespace fwd::ipam {

using nlohmann::json;

FieldError::FieldError(std::string_view kind, std::string name, std::string field,
                       const std::string &why)
    : IpamError(std::string(kind) + " '" + name + "': " + (field.empty() ? "" : field + ": ") +
                why),
      name_(std::move(name)),
      field_(std::move(field)) {}

std::optional<Cidr> Cidr::parse(std::string_view s, bool allow_host_bits) {
    if (s.find(':') != std::string_view::npos) {
        if (auto p = net::Prefix6::parse(s, allow_host_bits)) {
            return Cidr(*p);
        }
        return std::nullopt;
    }
    if (auto p = net::Prefix4::parse(s, allow_host_bits)) {
        return Cidr(*p);
    }
    return std::nullopt;
}

int Cidr::len() const {
    return is_v4() ? v4().len : v6().len;
}

net::IpAddr Cidr::addr() const {
    return is_v4() ? net::IpAddr(v4().addr) : net::IpAddr(v6().addr);
}

bool Cidr::contains(const net::IpAddr &a) const {
    if (a.family() != family()) {
        return false;
    }
    return is_v4() ? v4().contains(a.v4()) : v6().contains(a.v6());
}

bool Cidr::contains(const Cidr &c) const {
    return c.len() >= len() && contains(c.addr());
}

bool Cidr::overlaps(const Cidr &c) const {
    return contains(c) || c.contains(*this);
}

uint64_t Cidr::size() const {
    int host = bits() - len();
    return host >= 64 ? UINT64_MAX : (uint64_t{1} << host);
}

net::IpAddr Cidr::nth(U128 i) const {
    return from_u128(family(), to_u128(addr()) + i);
}

U128 Cidr::index_of(const net::IpAddr &a) const {
    return to_u128(a) - to_u128(addr());
}

Cidr Cidr::subnet(int sub_len, U128 i) const {
    U128 base = to_u128(addr()) + (i << (bits() - sub_len));
    net::IpAddr a = from_u128(family(), base);
    return containing(a, sub_len);
}

Cidr Cidr::containing(const net::IpAddr &a, int sub_len) {
    if (a.family() == net::Family::kIp4) {
        return Cidr(net::Prefix4{a.v4().masked(sub_len), static_cast<uint8_t>(sub_len)});
    }
    return Cidr(net::Prefix6{a.v6().masked(sub_len), static_cast<uint8_t>(sub_len)});
}

std::string Cidr::str() const {
    return is_v4() ? v4().str() : v6().str();
}

std::string Cidr::key() const {
    std::string s = str();
    std::replace(s.begin(), s.end(), '/', '-');
    return s;
}

U128 to_u128(const net::IpAddr &a) {
    if (a.family() == net::Family::kIp4) {
        return a.v4().host();
    }
    U128 v = 0;
    for (uint8_t b : a.v6().bytes()) {
        v = (v << 8) | b;
    }
    return v;
}

net::IpAddr from_u128(net::Family f, U128 v) {
    if (f == net::Family::kIp4) {
        return net::Ip4Addr::from_host(static_cast<uint32_t>(v));
    }
    uint8_t b[16];
    for (int i = 15; i >= 0; --i) {
        b[i] = static_cast<uint8_t>(v);
        v >>= 8;
    }
    return net::Ip6Addr::from_bytes(b);
}

std::string family_name(net::Family f) {
    return f == net::Family::kIp4 ? "IPv4" : "IPv6";
}

std::string_view to_string(EncapMode m) {
    switch (m) {
        case EncapMode::kAlways:
            return "Always";
        case EncapMode::kCrossSubnet:
            return "CrossSubnet";
        case EncapMode::kNever:
            break;
    }
    return "Never";
}

std::optional<EncapMode> parse_encap_mode(std::string_view s) {
    if (s == "Never" || s == "None" || s.empty()) {
        return EncapMode::kNever;
    }
    if (s == "Always" || s == "VXLAN") {
        return EncapMode::kAlways;
    }
    if (s == "CrossSubnet" || s == "VXLANCrossSubnet") {
        return EncapMode::kCrossSubnet;
    }
    return std::nullopt;
}

std::string_view to_string(AllowedUse u) {
    switch (u) {
        case AllowedUse::kTunnel:
            return "Tunnel";
        case AllowedUse::kLoadBalancer:
            return "LoadBalancer";
        case AllowedUse::kWorkload:
            break;
    }
    return "Workload";
}

std::optional<AllowedUse> parse_allowed_use(std::string_view s) {
    if (s == "Workload") {
        return AllowedUse::kWorkload;
    }
    if (s == "Tunnel") {
        return AllowedUse::kTunnel;
    }
    if (s == "LoadBalancer") {
        return AllowedUse::kLoadBalancer;
    }
    return std::nullopt;
}

std::string_view to_string(AffinityState s) {
    switch (s) {
        case AffinityState::kConfirmed:
            return "confirmed";
        case AffinityState::kPendingDeletion:
            return "pendingDeletion";
        case AffinityState::kPending:
            break;
    }
    return "pending";
}

bool IpPool::allows(AllowedUse u) const {
    return std::find(allowed_uses.begin(), allowed_uses.end(), u) != allowed_uses.end();
}

IpPool IpPool::normalized() const {
    IpPool p = *this;
    if (p.block_size == 0) {
        p.block_size = p.cidr.is_v4() ? kDefaultBlockSize4 : kDefaultBlockSize6;
    }
    if (p.node_selector.empty()) {
        p.node_selector = "all()";
    }
    if (p.allowed_uses.empty()) {
        p.allowed_uses = {AllowedUse::kWorkload, AllowedUse::kTunnel};
    }
    return p;
}

namespace {

const Cidr kLinkLocal4 = *Cidr::parse("169.254.0.0/16");
const Cidr kLinkLocal6 = *Cidr::parse("fe80::/10");

}  // namespace

bool is_dns1123_subdomain(std::string_view n) {
    if (n.empty() || n.size() > 253) {
        return false;
    }
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    for (size_t start = 0;;) {
        const size_t dot = n.find('.', start);
        const std::string_view label = n.substr(start, dot - start);  // npos: to the end
        if (label.empty() || !alnum(label.front()) || !alnum(label.back()) ||
            !std::all_of(label.begin(), label.end(),
                         [&](char c) { return alnum(c) || c == '-'; })) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        start = dot + 1;
    }
}

void validate_pool(const IpPool &p, const std::vector<IpPool> &others) {
    if (!is_dns1123_subdomain(p.name)) {
        throw PoolError(p.name, "name", "not a valid resource name (lower case, digits, '-', '.')");
    }
    const bool v4 = p.cidr.is_v4();
    if (p.cidr.overlaps(v4 ? kLinkLocal4 : kLinkLocal6)) {
        throw PoolError(p.name, "cidr",
                        p.cidr.str() + " overlaps the link-local range " +
                            (v4 ? kLinkLocal4 : kLinkLocal6).str());
    }
    const int lo = v4 ? kMinBlockSize4 : kMinBlockSize6;
    const int hi = v4 ? kMaxBlockSize4 : kMaxBlockSize6;
    if (p.block_size < lo || p.block_size > hi) {
        throw PoolError(p.name, "blockSize",
                        std::to_string(p.block_size) + " is outside " + std::to_string(lo) + ".." +
                            std::to_string(hi) + " for " + family_name(p.cidr.family()));
    }
    if (p.block_size < p.cidr.len()) {
        throw PoolError(
            p.name, "blockSize",
            std::to_string(p.block_size) + " is shorter than the prefix length of " + p.cidr.str());
    }
    if (!v4 && p.ipip_mode != EncapMode::kNever) {
        throw PoolError(p.name, "ipipMode", "IPIP is IPv4 only");
    }
    if (p.ipip_mode != EncapMode::kNever && p.vxlan_mode != EncapMode::kNever) {
        throw PoolError(p.name, "vxlanMode", "IPIP and VXLAN cannot both be enabled");
    }
    try {
        label::Selector::parse(p.node_selector);
    } catch (const label::SelectorError &e) {
        throw PoolError(p.name, "nodeSelector", e.what());
    }
    if (p.allowed_uses.empty()) {
        throw PoolError(p.name, "allowedUses", "empty");
    }
    if (p.allows(AllowedUse::kLoadBalancer) &&
        (p.allows(AllowedUse::kWorkload) || p.allows(AllowedUse::kTunnel))) {
        throw PoolError(p.name, "allowedUses", "LoadBalancer cannot be combined with other uses");
    }
    for (const IpPool &o : others) {
        if (o.name != p.name && o.cidr.overlaps(p.cidr)) {
            throw PoolError(
                p.name, "cidr",
                p.cidr.str() + " overlaps pool '" + o.name + "' (" + o.cidr.str() + ")");
        }
    }
}

void validate_pool_update(const IpPool &old_pool, const IpPool &new_pool,
                          const std::vector<IpPool> &others) {
    if (old_pool.cidr != new_pool.cidr) {
        throw PoolError(new_pool.name, "cidr",
                        "cannot change after creation (" + old_pool.cidr.str() + " -> " +
                            new_pool.cidr.str() + ")");
    }
    if (old_pool.block_size != new_pool.block_size) {
        throw PoolError(new_pool.name, "blockSize",
                        "cannot change after creation (" + std::to_string(old_pool.block_size) +
                            " -> " + std::to_string(new_pool.block_size) + ")");
    }
    validate_pool(new_pool, others);
}

Block Block::make(const Cidr &cidr, std::optional<std::string> node, int64_t now_ms) {
    Block b;
    b.cidr = cidr;
    b.affinity = std::move(node);
    b.allocations.resize(cidr.size());
    b.unallocated.resize(cidr.size());
    for (uint32_t i = 0; i < b.unallocated.size(); ++i) {
        b.unallocated[i] = i;
    }
    b.empty_since_ms = now_ms;
    return b;
}

void to_json(json &j, const Cidr &c) {
    j = c.str();
}

void from_json(const json &j, Cidr &c) {
    auto p = Cidr::parse(j.get<std::string>());
    if (!p) {
        throw IpamError("bad CIDR '" + j.get<std::string>() + "'");
    }
    c = *p;
}

void to_json(json &j, const IpPool &p) {
    j = json{{"name", p.name},
             {"cidr", p.cidr},
             {"blockSize", p.block_size},
             {"vxlanMode", to_string(p.vxlan_mode)},
             {"ipipMode", to_string(p.ipip_mode)},
             {"natOutgoing", p.nat_outgoing},
             {"nodeSelector", p.node_selector},
             {"disabled", p.disabled},
             {"allowedUses", json::array()}};
    for (AllowedUse u : p.allowed_uses) {
        j["allowedUses"].push_back(to_string(u));
    }
}

void from_json(const json &j, IpPool &p) {
    p = IpPool{};
    p.name = j.value("name", "");
    auto field = [&](const char *f, auto fn) {
        if (!j.contains(f)) {
            return;
        }
        try {
            fn(j.at(f));
        } catch (const PoolError &) {
            throw;
        } catch (const std::exception &e) {
            throw PoolError(p.name, f, e.what());
        }
    };
    if (!j.contains("cidr")) {
        throw PoolError(p.name, "cidr", "missing");
    }
    field("cidr", [&](const json &v) {
        auto c = Cidr::parse(v.get<std::string>());
        if (!c) {
            throw PoolError(p.name, "cidr",
                            "'" + v.get<std::string>() + "' is not a CIDR without host bits");
        }
        p.cidr = *c;
    });
    field("blockSize", [&](const json &v) { p.block_size = v.get<int>(); });
    auto mode = [&](const char *f, EncapMode &out) {
        field(f, [&](const json &v) {
            auto m = parse_encap_mode(v.get<std::string>());
            if (!m) {
                throw PoolError(p.name, f,
                                "'" + v.get<std::string>() +
                                    "' is not one of Never, Always, CrossSubnet (None, VXLAN, "
                                    "VXLANCrossSubnet)");
            }
            out = *m;
        });
    };
    mode("vxlanMode", p.vxlan_mode);
    mode("ipipMode", p.ipip_mode);
    // The operator's `encapsulation`: None, VXLAN, VXLANCrossSubnet, IPIP, IPIPCrossSubnet.
    field("encapsulation", [&](const json &v) {
        auto s = v.get<std::string>();
        if (s == "IPIP") {
            p.ipip_mode = EncapMode::kAlways;
        } else if (s == "IPIPCrossSubnet") {
            p.ipip_mode = EncapMode::kCrossSubnet;
        } else if (auto m = parse_encap_mode(s)) {
            p.vxlan_mode = *m;
        } else {
            throw PoolError(
                p.name, "encapsulation",
                "'" + s + "' is not one of None, VXLAN, VXLANCrossSubnet, IPIP, IPIPCrossSubnet");
        }
    });
    field("natOutgoing", [&](const json &v) { p.nat_outgoing = v.get<bool>(); });
    field("nodeSelector", [&](const json &v) { p.node_selector = v.get<std::string>(); });
    field("disabled", [&](const json &v) { p.disabled = v.get<bool>(); });
    field("allowedUses", [&](const json &v) {
        p.allowed_uses.clear();
        for (const auto &u : v) {
            auto a = parse_allowed_use(u.get<std::string>());
            if (!a) {
                throw PoolError(
                    p.name, "allowedUses",
                    "'" + u.get<std::string>() + "' is not one of Workload, Tunnel, LoadBalancer");
            }
            p.allowed_uses.push_back(*a);
        }
    });
    p = p.normalized();
}

void to_json(json &j, const Attributes &a) {
    j = json{{"handle", a.handle}};
    if (!a.ns.empty()) {
        j["namespace"] = a.ns;
    }
    if (!a.pod.empty()) {
        j["pod"] = a.pod;
    }
    if (!a.node.empty()) {
        j["node"] = a.node;
    }
    if (!a.container_id.empty()) {
        j["containerID"] = a.container_id;
    }
}

void from_json(const json &j, Attributes &a) {
    a.handle = j.at("handle").get<std::string>();
    a.ns = j.value("namespace", "");
    a.pod = j.value("pod", "");
    a.node = j.value("node", "");
    a.container_id = j.value("containerID", "");
}

void to_json(json &j, const Block &b) {
    j = json{{"cidr", b.cidr},
             {"affinity", b.affinity ? json("host:" + *b.affinity) : json(nullptr)},
             {"allocations", json::array()},
             {"unallocated", b.unallocated},
             {"emptySince", b.empty_since_ms}};
    for (const auto &a : b.allocations) {
        j["allocations"].push_back(a ? json(*a) : json(nullptr));
    }
}

void from_json(const json &j, Block &b) {
    b.cidr = j.at("cidr").get<Cidr>();
    b.affinity.reset();
    if (j.contains("affinity") && j["affinity"].is_string()) {
        auto s = j["affinity"].get<std::string>();
        b.affinity = s.rfind("host:", 0) == 0 ? s.substr(5) : s;
    }
    b.allocations.clear();
    for (const auto &a : j.at("allocations")) {
        b.allocations.push_back(a.is_null() ? std::nullopt
                                            : std::optional<Attributes>(a.get<Attributes>()));
    }
    b.unallocated = j.at("unallocated").get<std::vector<uint32_t>>();
    b.empty_since_ms = j.value("emptySince", int64_t{0});
}

void to_json(json &j, const Affinity &a) {
    j = json{{"node", a.node},
             {"cidr", a.cidr},
             {"state", to_string(a.state)},
             {"claimedAt", a.claimed_at_ms}};
}

void from_json(const json &j, Affinity &a) {
    a.node = j.at("node").get<std::string>();
    a.cidr = j.at("cidr").get<Cidr>();
    auto s = j.at("state").get<std::string>();
    a.state = s == "confirmed"         ? AffinityState::kConfirmed
              : s == "pendingDeletion" ? AffinityState::kPendingDeletion
                                       : AffinityState::kPending;
    a.claimed_at_ms = j.value("claimedAt", int64_t{0});
}

void to_json(json &j, const Handle &h) {
    j = json{{"id", h.id}, {"blocks", h.blocks}};
}

void from_json(const json &j, Handle &h) {
    h.id = j.at("id").get<std::string>();
    h.blocks = j.at("blocks").get<std::map<std::string, int>>();
}

void to_json(json &j, const IpamConfig &c) {
    j = json{{"strictAffinity", c.strict_affinity}, {"maxBlocksPerHost", c.max_blocks_per_host}};
}

void from_json(const json &j, IpamConfig &c) {
    c.strict_affinity = j.value("strictAffinity", false);
    c.max_blocks_per_host = j.value("maxBlocksPerHost", 0);
}

void to_json(json &j, const Reservation &r) {
    j = json{{"name", r.name}, {"reservedCIDRs", r.cidrs}};
}

void from_json(const json &j, Reservation &r) {
    r.name = j.at("name").get<std::string>();
    r.cidrs.clear();
    for (const auto &c : j.at("reservedCIDRs")) {
        auto p = Cidr::parse(c.get<std::string>(), true);
        if (!p) {
            throw IpamError("reservation '" + r.name + "': bad CIDR '" + c.get<std::string>() +
                            "'");
        }
        r.cidrs.push_back(Cidr::containing(p->addr(), p->len()));
    }
}

std::string pod_handle(std::string_view container_id, std::string_view network) {
    return std::string(network) + "." + std::string(container_id);
}

std::string tunnel_handle(std::string_view node, net::Family f) {
    return (f == net::Family::kIp4 ? "vxlan-tunnel-addr-" : "vxlan-v6-tunnel-addr-") +
           std::string(node);
}

}  // namespace fwd::ipam
