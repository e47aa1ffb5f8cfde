// Services in the cluster store: configuration, allocation (plan_service) and the registry.
#include "fwd/svc/store.hpp"

#include <algorithm>
#include <charconv>
#include <set>
#include <stdexcept>

#include "fwd/ipam/allocator.hpp"

namespace fwd::svc {

using nlohmann::json;

namespace {

// Rewritten by every write that takes or gives back an address or port, and compared by
// set_config(): a configuration can never be replaced under an allocation it did not see.
constexpr const char *kSerial = "allocations";
constexpr const char *kConfig = "config";

std::string json_quoted(const std::string &s) {
    return json(s).dump();
}

std::string at(const std::string &path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

bool is_v4(net::Family f) {
    return f == net::Family::kIp4;
}

net::Family other(net::Family f) {
    return is_v4(f) ? net::Family::kIp6 : net::Family::kIp4;
}

bool contains(const std::vector<net::IpAddr> &v, const net::IpAddr &a) {
    return std::find(v.begin(), v.end(), a) != v.end();
}

// The addresses a service range hands out: not the network address, not an IPv4 range's
// broadcast address (the API server's rule).
bool allocatable(const ipam::Cidr &range, const net::IpAddr &a) {
    const ipam::U128 i = range.index_of(a);
    const ipam::U128 last = (ipam::U128{1} << (range.bits() - range.len())) - 1;
    return i != 0 && !(range.is_v4() && i == last);
}

// The lowest allocatable address of range that nobody holds; nullopt when the range is full.
std::optional<net::IpAddr> first_free(const ipam::Cidr &range, const InUse &used,
                                      const std::vector<net::IpAddr> &mine) {
    const ipam::U128 size = ipam::U128{1} << (range.bits() - range.len());
    // Every held address is skipped once at most: the loop ends after used.ips.size() + 2
    // misses, whatever the size of the range.
    for (ipam::U128 i = 1; i < size; ++i) {
        const net::IpAddr a = range.nth(i);
        if (allocatable(range, a) && !used.ips.contains(a) && !contains(mine, a)) {
            return a;
        }
    }
    return std::nullopt;
}

// What plan_delete removes under `full` (the key of kind's object `key`, "ns/name"): the
// stored record, decoded, or only its name when it no longer decodes. Refused when absent.
template <typename T>
std::pair<ipam::KeyValue, T> stored_for_delete(ipam::Store &store, const std::string &kind,
                                               const std::string &key, const std::string &full) {
    auto kv = store.get(full);
    if (!kv) {
        throw ServiceError(kind + " '" + key + "'", "metadata.name",
                           "Not found: no " + kind + " " + json_quoted(key) + " in the store");
    }
    T obj;
    try {
        obj = json::parse(kv->value).get<T>();
    } catch (const std::exception &) {
        obj.ns = key.substr(0, key.find('/'));
        obj.name = key.substr(key.find('/') + 1);
    }
    return {std::move(*kv), std::move(obj)};
}

}  // namespace

// ---- configuration ----

ServiceConfig ServiceConfig::defaults() {
    ServiceConfig c;
    c.cluster_ip_ranges = {*ipam::Cidr::parse("10.96.0.0/12"),
                           *ipam::Cidr::parse("fd00:10:96::/112")};
    return c;
}

const ipam::Cidr *ServiceConfig::range(net::Family f) const {
    for (const auto &r : cluster_ip_ranges) {
        if (r.family() == f) {
            return &r;
        }
    }
    return nullptr;
}

std::string ServiceConfig::node_port_range() const {
    return std::to_string(node_port_min) + "-" + std::to_string(node_port_max);
}

std::optional<std::pair<uint16_t, uint16_t>> parse_port_range(std::string_view s) {
    const auto dash = s.find('-');
    if (dash == std::string_view::npos) {
        return std::nullopt;
    }
    unsigned a = 0, b = 0;
    const auto lo = s.substr(0, dash), hi = s.substr(dash + 1);
    if (std::from_chars(lo.data(), lo.data() + lo.size(), a).ptr != lo.data() + lo.size() ||
        std::from_chars(hi.data(), hi.data() + hi.size(), b).ptr != hi.data() + hi.size() ||
        lo.empty() || hi.empty() || a > 65535 || b > 65535) {
        return std::nullopt;
    }
    return std::make_pair(static_cast<uint16_t>(a), static_cast<uint16_t>(b));
}

void validate_config(const ServiceConfig &c) {
    if (c.cluster_ip_ranges.empty() || c.cluster_ip_ranges.size() > 2) {
        throw std::invalid_argument(
            "service cluster IP ranges: want one or two (one per family), "
            "got " +
            std::to_string(c.cluster_ip_ranges.size()));
    }
    if (c.cluster_ip_ranges.size() == 2 &&
        c.cluster_ip_ranges[0].family() == c.cluster_ip_ranges[1].family()) {
        throw std::invalid_argument("service cluster IP ranges: two " +
                                    family_name(c.cluster_ip_ranges[0].family()) +
                                    " ranges; a dual-stack cluster has one of each family");
    }
    for (const auto &r : c.cluster_ip_ranges) {
        // The API server refuses IPv4 ranges longer than /30 and IPv6 ones longer than /126
        // would leave nothing; 8 addresses is our floor, and at most 2^20 addresses for
        // IPv4 (a /12) like the API server's bitmap allocator (IPv6: any size).
        if (r.bits() - r.len() < 3) {
            throw std::invalid_argument("service cluster IP range " + r.str() +
                                        ": too small (at least 8 addresses)");
        }
        if (r.is_v4() && r.len() < 12) {
            throw std::invalid_argument("service cluster IP range " + r.str() +
                                        ": larger than a /12, the API server's largest");
        }
    }
    if (c.node_port_min == 0 || c.node_port_min > c.node_port_max) {
        throw std::invalid_argument("service node port range " + c.node_port_range() +
                                    ": want low-high with 1 <= low <= high <= 65535");
    }
}

void to_json(json &j, const ServiceConfig &c) {
    json ranges = json::array();
    for (const auto &r : c.cluster_ip_ranges) {
        ranges.push_back(r.str());
    }
    j = json{{"serviceClusterIPRanges", ranges}, {"serviceNodePortRange", c.node_port_range()}};
}

void from_json(const json &j, ServiceConfig &c) {
    c = ServiceConfig{};
    if (!j.is_object() || !j.contains("serviceClusterIPRanges") ||
        !j["serviceClusterIPRanges"].is_array() || !j.contains("serviceNodePortRange") ||
        !j["serviceNodePortRange"].is_string()) {
        throw std::invalid_argument(
            "service configuration: want serviceClusterIPRanges (a list) "
            "and serviceNodePortRange, got " +
            j.dump());
    }
    for (const auto &r : j["serviceClusterIPRanges"]) {
        auto cidr = r.is_string() ? ipam::Cidr::parse(r.get<std::string>()) : std::nullopt;
        if (!cidr) {
            throw std::invalid_argument("service configuration: " + r.dump() + " is not a CIDR");
        }
        c.cluster_ip_ranges.push_back(*cidr);
    }
    auto ports = parse_port_range(j["serviceNodePortRange"].get<std::string>());
    if (!ports) {
        throw std::invalid_argument("service configuration: serviceNodePortRange " +
                                    j["serviceNodePortRange"].dump() + " is not low-high");
    }
    c.node_port_min = ports->first;
    c.node_port_max = ports->second;
    validate_config(c);
}

// ---- planning one service ----

Service plan_service(const Service &wanted, const std::optional<Service> &stored_in,
                     const ServiceConfig &config, const InUse &in_use) {
    Service s = wanted;
    const std::string key = s.key();
    auto fail = [&](const std::string &field, const std::string &why) {
        throw ServiceError("Service '" + key + "'", field, why);
    };
    if (s.type == ServiceType::kExternalName) {
        return s;  // no address, no port (validate_service refused any asked for)
    }
    // An ExternalName record held nothing: the service starts afresh.
    const std::optional<Service> stored =
        stored_in && stored_in->type != ServiceType::kExternalName ? stored_in : std::nullopt;

    // kubectl apply keeps what the server set when the file leaves it out.
    bool ips_kept = false, families_kept = false;
    if (stored) {
        // Headless or not is fixed at creation; a file that leaves clusterIP out keeps it.
        if (s.headless != stored->headless && (s.headless || !s.cluster_ips.empty())) {
            fail("spec.clusterIPs[0]",
                 "Invalid value: " + json_quoted(s.headless ? "None" : s.cluster_ips[0].str()) +
                     ": field is immutable (it is " +
                     json_quoted(stored->headless ? "None" : stored->cluster_ips[0].str()) +
                     "; delete the service to change it)");
        }
        s.headless = stored->headless;
        for (size_t i = 0; i < s.cluster_ips.size() && i < stored->cluster_ips.size(); ++i) {
            if (s.cluster_ips[i] != stored->cluster_ips[i]) {
                fail(at("spec.clusterIPs", i),
                     "Invalid value: " + json_quoted(s.cluster_ips[i].str()) +
                         ": field is immutable (it is " +
                         json_quoted(stored->cluster_ips[i].str()) + ")");
            }
        }
        if (!s.ip_families.empty() && !stored->ip_families.empty() &&
            s.ip_families[0] != stored->ip_families[0]) {
            fail("spec.ipFamilies[0]",
                 "Invalid value: " + json_quoted(family_name(s.ip_families[0])) +
                     ": the primary IP family may not change (it is " +
                     json_quoted(family_name(stored->ip_families[0])) + ")");
        }
        if (s.cluster_ips.size() < stored->cluster_ips.size()) {
            const size_t asked = s.cluster_ips.size();
            for (size_t i = asked; i < stored->cluster_ips.size(); ++i) {
                s.cluster_ips.push_back(stored->cluster_ips[i]);
            }
            ips_kept = asked == 0 || s.cluster_ips.size() > asked;
        }
        if (s.ip_families.empty()) {
            s.ip_families = stored->ip_families;
            families_kept = true;
        }
        if (!s.family_policy) {
            s.family_policy = stored->family_policy;
        }
    }
    // The policy: the API server's defaults.
    if (!s.family_policy) {
        if (s.ip_families.size() == 2 || s.cluster_ips.size() == 2) {
            s.family_policy = FamilyPolicy::kRequireDualStack;
        } else if (s.headless && s.selector.empty() && config.dual_stack()) {
            s.family_policy = FamilyPolicy::kRequireDualStack;
        } else {
            s.family_policy = FamilyPolicy::kSingleStack;
        }
    }
    const FamilyPolicy policy = *s.family_policy;
    if (policy == FamilyPolicy::kSingleStack) {
        // A downgrade: what was kept from the record beyond the primary goes.
        if (ips_kept && s.cluster_ips.size() > 1) {
            s.cluster_ips.resize(1);
        }
        if (families_kept && s.ip_families.size() > 1) {
            s.ip_families.resize(1);
        }
        if (s.ip_families.size() > 1 || s.cluster_ips.size() > 1) {
            fail("spec.ipFamilyPolicy",
                 "Invalid value: \"SingleStack\": must be RequireDualStack or PreferDualStack "
                 "when multiple IP families are specified");
        }
    }
    // Families: those of the addresses asked for, then ipFamilies, then the cluster's.
    std::vector<net::Family> fams;
    std::vector<bool> from_ip;
    for (size_t i = 0; i < s.cluster_ips.size(); ++i) {
        if (i < s.ip_families.size() && s.ip_families[i] != s.cluster_ips[i].family()) {
            fail(at("spec.clusterIPs", i), "Invalid value: " + json_quoted(s.cluster_ips[i].str()) +
                                               ": expected an " + family_name(s.ip_families[i]) +
                                               " value as indicated by `ipFamilies[" +
                                               std::to_string(i) + "]`");
        }
        fams.push_back(s.cluster_ips[i].family());
        from_ip.push_back(true);
    }
    for (size_t i = fams.size(); i < s.ip_families.size(); ++i) {
        fams.push_back(s.ip_families[i]);
        from_ip.push_back(false);
    }
    if (policy == FamilyPolicy::kRequireDualStack && !config.dual_stack()) {
        fail("spec.ipFamilyPolicy",
             "Invalid value: \"RequireDualStack\": this cluster is not configured for "
             "dual-stack services (service cluster IP ranges: " +
                 config.cluster_ip_ranges[0].str() + ")");
    }
    std::vector<net::Family> resolved;
    for (size_t i = 0; i < fams.size(); ++i) {
        if (config.range(fams[i]) != nullptr) {
            resolved.push_back(fams[i]);
            continue;
        }
        // PreferDualStack on a single-stack cluster: the secondary family is dropped.
        if (i > 0 && !from_ip[i] && policy == FamilyPolicy::kPreferDualStack) {
            continue;
        }
        const bool ip = from_ip[i];
        fail(ip ? at("spec.clusterIPs", i) : at("spec.ipFamilies", i),
             "Invalid value: " + json_quoted(ip ? s.cluster_ips[i].str() : family_name(fams[i])) +
                 ": " + (ip ? "an " + family_name(fams[i]) + " address, and " : std::string()) +
                 family_name(fams[i]) + " is not configured on this cluster");
    }
    if (resolved.empty()) {
        resolved.push_back(config.cluster_ip_ranges[0].family());
    }
    if (policy != FamilyPolicy::kSingleStack && resolved.size() == 1 && config.dual_stack()) {
        resolved.push_back(other(resolved[0]));
    }
    s.ip_families = resolved;
    if (s.headless) {
        s.cluster_ips.clear();
        for (auto &p : s.ports) {
            p.node_port = 0;
        }
        return s;
    }

    // ClusterIPs.
    auto held_by_other = [&](const net::IpAddr &a) {
        auto it = in_use.ips.find(a);
        return it != in_use.ips.end() && it->second != key ? it->second : std::string();
    };
    std::vector<net::IpAddr> ips;
    for (size_t i = 0; i < resolved.size(); ++i) {
        const ipam::Cidr &range = *config.range(resolved[i]);
        if (i < s.cluster_ips.size()) {
            const net::IpAddr &a = s.cluster_ips[i];
            const bool ours = stored && contains(stored->cluster_ips, a);
            if (!ours && (!range.contains(a) || !allocatable(range, a))) {
                fail(at("spec.clusterIPs", i),
                     "Invalid value: " + json_quoted(a.str()) +
                         ": provided IP is not in the valid range. The range of valid IPs is " +
                         range.str());
            }
            if (auto other_owner = held_by_other(a); !other_owner.empty()) {
                fail(at("spec.clusterIPs", i),
                     "Invalid value: " + json_quoted(a.str()) +
                         ": provided IP is already allocated (to Service '" + other_owner + "')");
            }
            ips.push_back(a);
            continue;
        }
        auto a = first_free(range, in_use, ips);
        if (!a) {
            fail(at("spec.clusterIPs", i),
                 "Internal error: failed to allocate a service IP: the range " + range.str() +
                     " is full");
        }
        ips.push_back(*a);
    }
    s.cluster_ips = ips;

    // NodePorts.
    if (!s.wants_node_ports()) {
        for (auto &p : s.ports) {
            if (s.type != ServiceType::kLoadBalancer) {
                p.node_port = 0;
            }
        }
    }
    std::set<uint16_t> mine;
    for (const auto &p : s.ports) {
        if (p.node_port != 0) {
            mine.insert(p.node_port);
        }
    }
    const std::string range = config.node_port_range();
    for (size_t i = 0; i < s.ports.size(); ++i) {
        auto &p = s.ports[i];
        const std::string field = at("spec.ports", i) + ".nodePort";
        if (p.node_port != 0) {
            const bool ours = stored && std::any_of(stored->ports.begin(), stored->ports.end(),
                                                    [&](const ServicePort &o) {
                                                        return o.node_port == p.node_port;
                                                    });
            if (!ours &&
                (p.node_port < config.node_port_min || p.node_port > config.node_port_max)) {
                fail(field, "Invalid value: " + std::to_string(p.node_port) +
                                ": provided port is not in the valid range. The range of valid "
                                "ports is " +
                                range);
            }
            auto it = in_use.node_ports.find(p.node_port);
            if (it != in_use.node_ports.end() && it->second != key) {
                fail(field, "Invalid value: " + std::to_string(p.node_port) +
                                ": provided port is already allocated (to Service '" + it->second +
                                "')");
            }
            continue;
        }
        if (!s.wants_node_ports()) {
            continue;
        }
        if (stored) {
            for (const auto &o : stored->ports) {
                if (o.port == p.port && o.protocol == p.protocol && o.node_port != 0 &&
                    !mine.contains(o.node_port)) {
                    p.node_port = o.node_port;
                    break;
                }
            }
        }
        for (uint32_t n = config.node_port_min; p.node_port == 0 && n <= config.node_port_max;
             ++n) {
            const auto port = static_cast<uint16_t>(n);
            if (!in_use.node_ports.contains(port) && !mine.contains(port)) {
                p.node_port = port;
            }
        }
        if (p.node_port == 0) {
            fail(field,
                 "Internal error: failed to allocate a nodePort: the range " + range + " is full");
        }
        mine.insert(p.node_port);
    }
    return s;
}

// ---- the registry ----

std::string_view to_string(ServiceRegistry::Action a) {
    switch (a) {
        case ServiceRegistry::Action::kUpdate:
            return "updated";
        case ServiceRegistry::Action::kUnchanged:
            return "unchanged";
        case ServiceRegistry::Action::kDelete:
            return "deleted";
        case ServiceRegistry::Action::kCreate:
            break;
    }
    return "created";
}

ServiceRegistry::ServiceRegistry(ipam::Store &s, std::string prefix)
    : store_(s), prefix_(std::move(prefix)) {}

ServiceConfig ServiceRegistry::config() {
    auto kv = store_.get(prefix_ + kConfig);
    if (!kv) {
        return ServiceConfig::defaults();
    }
    try {
        return json::parse(kv->value).get<ServiceConfig>();
    } catch (const json::exception &e) {
        throw std::invalid_argument("service configuration in the store is not JSON: " +
                                    std::string(e.what()));
    }
}

InUse ServiceRegistry::in_use() {
    InUse u;
    const std::string ips = prefix_ + "clusterips/", ports = prefix_ + "nodeports/";
    for (const auto &kv : store_.list(ips)) {
        if (auto a = net::IpAddr::parse(kv.key.substr(ips.size()))) {
            u.ips[*a] = kv.value;
        }
    }
    for (const auto &kv : store_.list(ports)) {
        const std::string n = kv.key.substr(ports.size());
        unsigned p = 0;
        if (std::from_chars(n.data(), n.data() + n.size(), p).ptr == n.data() + n.size() && p > 0 &&
            p <= 65535) {
            u.node_ports[static_cast<uint16_t>(p)] = kv.value;
        }
    }
    return u;
}

void ServiceRegistry::set_config(const ServiceConfig &c) {
    validate_config(c);
    for (int attempt = 0; attempt < max_retries_; ++attempt) {
        const auto cfg = store_.get(prefix_ + kConfig);
        const auto serial = store_.get(prefix_ + kSerial);
        const InUse u = in_use();
        for (const auto &[a, owner] : u.ips) {
            const ipam::Cidr *r = c.range(a.family());
            if (r == nullptr || !r->contains(a)) {
                throw ipam::ConflictError("service cluster IP ranges: Service '" + owner +
                                          "' holds " + a.str() + ", outside the new ranges");
            }
        }
        for (const auto &[p, owner] : u.node_ports) {
            if (p < c.node_port_min || p > c.node_port_max) {
                throw ipam::ConflictError("service node port range " + c.node_port_range() +
                                          ": Service '" + owner + "' holds port " +
                                          std::to_string(p));
            }
        }
        if (store_.txn({{prefix_ + kConfig, cfg ? cfg->mod_revision : 0},
                        {prefix_ + kSerial, serial ? serial->mod_revision : 0}},
                       {{ipam::Operation::Kind::kPut, prefix_ + kConfig, json(c).dump()}})) {
            return;
        }
    }
    throw ipam::ConflictError("service registry: gave up on the configuration after " +
                              std::to_string(max_retries_) + " conflicting writes (" +
                              store_.describe() + ")");
}

std::optional<Service> ServiceRegistry::get_service(const std::string &key) {
    auto kv = store_.get(service_key(key));
    if (!kv) {
        return std::nullopt;
    }
    try {
        return json::parse(kv->value).get<Service>();
    } catch (const json::exception &e) {
        throw ServiceError("Service '" + key + "'", "",
                           "the stored record is not JSON: " + std::string(e.what()));
    }
}

std::optional<EndpointSlice> ServiceRegistry::get_slice(const std::string &key) {
    auto kv = store_.get(slice_key(key));
    if (!kv) {
        return std::nullopt;
    }
    try {
        return json::parse(kv->value).get<EndpointSlice>();
    } catch (const json::exception &e) {
        throw ServiceError("EndpointSlice '" + key + "'", "",
                           "the stored record is not JSON: " + std::string(e.what()));
    }
}

ServiceRegistry::Plan ServiceRegistry::plan_apply(const std::vector<Service> &services,
                                                  const std::vector<EndpointSlice> &slices) {
    using Kind = ipam::Operation::Kind;
    Plan plan;
    const auto cfg_kv = store_.get(prefix_ + kConfig);
    const ServiceConfig cfg = config();
    plan.compares.push_back({prefix_ + kConfig, cfg_kv ? cfg_kv->mod_revision : 0});
    InUse use = in_use();
    // The revisions of the allocation keys, for the ones a service gives back.
    std::map<std::string, int64_t> alloc_rev;
    for (const char *sub : {"clusterips/", "nodeports/"}) {
        for (const auto &kv : store_.list_keys(prefix_ + sub)) {
            alloc_rev[kv.key] = kv.mod_revision;
        }
    }
    bool allocations_moved = false;
    for (const auto &wanted : services) {
        const std::string key = wanted.key();
        const auto kv = store_.get(service_key(key));
        std::optional<Service> stored;
        if (kv) {
            try {
                stored = json::parse(kv->value).get<Service>();
            } catch (const std::exception &) {
                // A malformed record is written over; the addresses it held stay its own
                // (their keys name this service) and go when the new record leaves them out.
            }
        }
        plan.compares.push_back({service_key(key), kv ? kv->mod_revision : 0});
        Service s = plan_service(wanted, stored, cfg, use);
        // What it takes and what it gives back.
        std::set<net::IpAddr> ips(s.cluster_ips.begin(), s.cluster_ips.end());
        std::set<uint16_t> ports;
        for (const auto &p : s.ports) {
            if (p.node_port != 0) {
                ports.insert(p.node_port);
            }
        }
        for (const auto &a : ips) {
            if (!use.ips.contains(a)) {
                plan.compares.push_back({ip_key(a), 0});
                plan.ops.push_back({Kind::kPut, ip_key(a), key});
                use.ips[a] = key;
                allocations_moved = true;
            }
        }
        for (uint16_t p : ports) {
            if (!use.node_ports.contains(p)) {
                plan.compares.push_back({port_key(p), 0});
                plan.ops.push_back({Kind::kPut, port_key(p), key});
                use.node_ports[p] = key;
                allocations_moved = true;
            }
        }
        for (auto it = use.ips.begin(); it != use.ips.end();) {
            if (it->second == key && !ips.contains(it->first)) {
                plan.compares.push_back({ip_key(it->first), alloc_rev[ip_key(it->first)]});
                plan.ops.push_back({Kind::kDelete, ip_key(it->first), ""});
                it = use.ips.erase(it);
                allocations_moved = true;
            } else {
                ++it;
            }
        }
        for (auto it = use.node_ports.begin(); it != use.node_ports.end();) {
            if (it->second == key && !ports.contains(it->first)) {
                plan.compares.push_back({port_key(it->first), alloc_rev[port_key(it->first)]});
                plan.ops.push_back({Kind::kDelete, port_key(it->first), ""});
                it = use.node_ports.erase(it);
                allocations_moved = true;
            } else {
                ++it;
            }
        }
        const Action action = !kv                      ? Action::kCreate
                              : stored && *stored == s ? Action::kUnchanged
                                                       : Action::kUpdate;
        if (action != Action::kUnchanged) {
            plan.ops.push_back({Kind::kPut, service_key(key), json(s).dump()});
        }
        plan.changes.push_back({action, std::move(s)});
    }
    for (const auto &slice : slices) {
        const auto kv = store_.get(slice_key(slice.key()));
        std::optional<EndpointSlice> stored;
        if (kv) {
            try {
                stored = json::parse(kv->value).get<EndpointSlice>();
            } catch (const std::exception &) {
            }
        }
        plan.compares.push_back({slice_key(slice.key()), kv ? kv->mod_revision : 0});
        const Action action = !kv                          ? Action::kCreate
                              : stored && *stored == slice ? Action::kUnchanged
                                                           : Action::kUpdate;
        if (action != Action::kUnchanged) {
            plan.ops.push_back({Kind::kPut, slice_key(slice.key()), json(slice).dump()});
        }
        plan.changes.push_back({action, slice});
    }
    if (allocations_moved) {
        plan.ops.push_back({Kind::kPut, prefix_ + kSerial, "apply"});
    }
    return plan;
}

ServiceRegistry::Plan ServiceRegistry::plan_delete(const std::vector<std::string> &service_keys,
                                                   const std::vector<std::string> &slice_keys) {
    using Kind = ipam::Operation::Kind;
    Plan plan;
    const InUse use = in_use();
    bool allocations_moved = false;
    for (const auto &key : service_keys) {
        auto [kv, s] = stored_for_delete<Service>(store_, "Service", key, service_key(key));
        plan.compares.push_back({kv.key, kv.mod_revision});
        plan.ops.push_back({Kind::kDelete, kv.key, ""});
        for (const auto &[a, owner] : use.ips) {
            if (owner == key) {
                plan.ops.push_back({Kind::kDelete, ip_key(a), ""});
                allocations_moved = true;
            }
        }
        for (const auto &[p, owner] : use.node_ports) {
            if (owner == key) {
                plan.ops.push_back({Kind::kDelete, port_key(p), ""});
                allocations_moved = true;
            }
        }
        plan.changes.push_back({Action::kDelete, std::move(s)});
    }
    for (const auto &key : slice_keys) {
        auto [kv, s] =
            stored_for_delete<EndpointSlice>(store_, "EndpointSlice", key, slice_key(key));
        plan.compares.push_back({kv.key, kv.mod_revision});
        plan.ops.push_back({Kind::kDelete, kv.key, ""});
        plan.changes.push_back({Action::kDelete, std::move(s)});
    }
    if (allocations_moved) {
        plan.ops.push_back({Kind::kPut, prefix_ + kSerial, "delete"});
    }
    return plan;
}

bool ServiceRegistry::commit(const Plan &p) {
    if (p.ops.empty()) {
        return true;
    }
    return store_.txn(p.compares, p.ops);
}

std::vector<ServiceRegistry::Change> ServiceRegistry::apply(
    const std::vector<Service> &services, const std::vector<EndpointSlice> &slices) {
    for (int attempt = 0; attempt < max_retries_; ++attempt) {
        Plan p = plan_apply(services, slices);
        if (commit(p)) {
            return std::move(p.changes);
        }
    }
    throw ipam::ConflictError("service registry: gave up on applying after " +
                              std::to_string(max_retries_) + " conflicting writes (" +
                              store_.describe() + ")");
}

std::vector<ServiceRegistry::Change> ServiceRegistry::remove(
    const std::vector<std::string> &service_keys, const std::vector<std::string> &slice_keys) {
    for (int attempt = 0; attempt < max_retries_; ++attempt) {
        Plan p = plan_delete(service_keys, slice_keys);
        if (commit(p)) {
            return std::move(p.changes);
        }
    }
    throw ipam::ConflictError("service registry: gave up on deleting after " +
                              std::to_string(max_retries_) + " conflicting writes (" +
                              store_.describe() + ")");
}

ServiceRegistry::Listing ServiceRegistry::list() {
    for (int attempt = 0;; ++attempt) {
        Listing out;
        out.revision = store_.revision();
        std::map<std::string, std::string> refused;
        const std::string svc_prefix = prefix_ + "services/";
        for (const auto &kv : store_.list(svc_prefix)) {
            const std::string key = kv.key.substr(svc_prefix.size());
            try {
                Service s = json::parse(kv.value).get<Service>();
                if (s.key() != key) {
                    throw ServiceError("Service '" + key + "'", "metadata",
                                       "the record under this key is Service '" + s.key() + "'");
                }
                out.services.push_back(std::move(s));
            } catch (const ServiceError &e) {
                refused[kv.key] = e.what();
            } catch (const json::exception &e) {
                refused[kv.key] =
                    "Service '" + key + "': the stored record is not JSON: " + e.what();
            }
        }
        const std::string slice_prefix = prefix_ + "endpointslices/";
        for (const auto &kv : store_.list(slice_prefix)) {
            const std::string key = kv.key.substr(slice_prefix.size());
            try {
                EndpointSlice s = json::parse(kv.value).get<EndpointSlice>();
                if (s.key() != key) {
                    throw ServiceError(
                        "EndpointSlice '" + key + "'", "metadata",
                        "the record under this key is EndpointSlice '" + s.key() + "'");
                }
                out.slices.push_back(std::move(s));
            } catch (const ServiceError &e) {
                refused[kv.key] = e.what();
            } catch (const json::exception &e) {
                refused[kv.key] =
                    "EndpointSlice '" + key + "': the stored record is not JSON: " + e.what();
            }
        }
        out.refused.assign(refused.begin(), refused.end());
        // Two reads: the listing holds only if nothing was written in between.
        if (store_.revision() == out.revision || attempt >= max_retries_) {
            return out;
        }
    }
}

}  // namespace fwd::svc
