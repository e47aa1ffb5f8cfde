#include "fwd/control/routes.hpp"

#include <rte_lcore.h>
#include <rte_malloc.h>

#include <chrono>

#include "api_args.hpp"
#include "fwd/control/neighbors.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

FWD_ON_LOAD(register_module<RoutesModule>({NeighborsModule::kName}));

namespace {

// Hugepage memory in use by this process (every socket).
uint64_t heap_allocated() {
    uint64_t total = 0;
    for (unsigned s = 0; s < rte_socket_count(); s++) {
        rte_malloc_socket_stats st{};
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(s), &st) == 0) {
            total += st.heap_allocsz_bytes;
        }
    }
    return total;
}

bool is_v4(const AnyPrefix &p) {
    return std::holds_alternative<net::Prefix4>(p);
}

}  // namespace

RoutesModule::RoutesModule(ControlContext &ctx)
    : ctx_(ctx), ports_(ctx.need<PortsModule>()), neighbors_(ctx.need<NeighborsModule>()) {
    ctx.add_op({.name = "route.add",
                .args = {"routes", "prefix", "type", "via", "mac", "source"},
                .fn = [this](const json &a) { return route_add(a); }});
    ctx.add_op({.name = "route.del",
                .args = {"routes", "prefix", "source"},
                .fn = [this](const json &a) { return route_del(a); }});
    ctx.add_op({.name = "route.list",
                .args = {"source", "family", "prefix", "limit"},
                .fn = [this](const json &a) { return route_list(a); }});
    ctx.add_op({.name = "ipam.routes",
                .args = {"prefixes"},
                .fn = [this](const json &a) { return ipam_routes(a); },
                .internal = true});
}

void RoutesModule::start() {
    dp::NextHop bh{};
    bh.kind = dp::NhKind::kBlackhole;
    blackhole_nh_ = ctx_.tables().nh_alloc(bh);
    dp::NextHop un{};
    un.kind = dp::NhKind::kUnreachable;
    unreachable_nh_ = ctx_.tables().nh_alloc(un);
    const NodeConfig &cfg = ctx_.cfg();
    // Routes BIRD learned are for the uplink: without one there is nothing to follow.
    if (cfg.bgp && ports_.uplink()) {
        NetlinkWatcherConfig wc;
        wc.netns = cfg.bgp->netns;
        wc.table = cfg.bgp->table;
        wc.protocols = cfg.bgp->protocols;
        watcher_ = std::make_unique<NetlinkWatcher>(wc, [this] { ctx_.wake(); });
        watcher_->start();
    }
    add_static_routes();
}

void RoutesModule::stop() {
    if (watcher_) {
        watcher_->stop();
    }
    // Every route out: the neighbors give back the packets they parked.
    for (const auto &r : rib_.list()) {
        rib_.remove(r.prefix, r.source);
    }
    publish();
    for (uint32_t *nh : {&blackhole_nh_, &unreachable_nh_}) {
        if (*nh != dp::kNhInvalid) {
            ctx_.defer([&t = ctx_.tables(), id = *nh] { t.nh_free(id); });
            *nh = dp::kNhInvalid;
        }
    }
    ctx_.reclaim();
}

void RoutesModule::add_static_routes() {
    for (const auto &r : ctx_.cfg().routes) {
        RouteTarget t = r.kind == RouteKind::kBlackhole     ? RouteTarget::blackhole()
                        : r.kind == RouteKind::kUnreachable ? RouteTarget::unreachable()
                                                            : RouteTarget::via({*r.via}, r.mac);
        rib_.set(r.prefix, RouteSource::kStatic, t);
    }
    auto failed = publish();
    if (!failed.empty()) {
        throw std::runtime_error("cannot add static route " + prefix_str(failed[0].first) + ": " +
                                 failed[0].second);
    }
}

uint32_t RoutesModule::acquire(const RouteTarget &t) {
    switch (t.kind) {
        case RouteTarget::Kind::kOwned:
            return t.nh;
        case RouteTarget::Kind::kBlackhole:
        case RouteTarget::Kind::kUnreachable: {
            uint32_t nh = t.kind == RouteTarget::Kind::kBlackhole ? blackhole_nh_ : unreachable_nh_;
            if (nh == dp::kNhInvalid) {
                throw std::runtime_error("the routes module has not started");
            }
            return nh;
        }
        case RouteTarget::Kind::kVia:
            break;
    }
    if (t.vias.empty() || t.vias.size() > dp::kMaxGroupPaths) {
        throw std::runtime_error("a route needs 1 to " + std::to_string(dp::kMaxGroupPaths) +
                                 " next hops");
    }
    if (t.mac) {
        auto key = std::make_pair(t.vias[0], *t.mac);
        auto it = fixed_.find(key);
        if (it != fixed_.end()) {
            it->second.refs++;
            return it->second.nh;
        }
        const auto &up = ports_.uplink();
        if (!up) {
            throw std::runtime_error("a route via " + t.vias[0].str() + " needs an uplink");
        }
        dp::NextHop nh{};
        nh.kind = dp::NhKind::kVia;
        nh.port = up->port;
        nh.src_mac = up->mac.bytes();
        nh.dst_mac = t.mac->bytes();
        nh.mtu = up->mtu;
        nh.vlan = up->vlan;
        uint32_t id = ctx_.tables().nh_alloc(nh);
        if (id == dp::kNhInvalid) {
            throw std::runtime_error("next-hop table full");
        }
        fixed_.emplace(key, FixedNh{id, 1});
        return id;
    }
    if (t.vias.size() == 1) {
        return neighbors_.via_ref(t.vias[0]);
    }
    auto it = groups_.find(t.vias);
    if (it != groups_.end()) {
        it->second.refs++;
        return it->second.nh;
    }
    std::vector<uint32_t> members;
    try {
        for (const auto &v : t.vias) {
            members.push_back(neighbors_.via_ref(v));
        }
    } catch (...) {
        for (size_t i = 0; i < members.size(); i++) {
            neighbors_.via_unref(t.vias[i]);
        }
        throw;
    }
    dp::Tables &tables = ctx_.tables();
    uint32_t g = tables.group_alloc(members.data(), static_cast<uint8_t>(members.size()));
    uint32_t id = dp::kNhInvalid;
    if (g != UINT32_MAX) {
        dp::NextHop nh{};
        nh.kind = dp::NhKind::kGroup;
        nh.group = g;
        nh.group_n = static_cast<uint8_t>(members.size());
        id = tables.nh_alloc(nh);
        if (id == dp::kNhInvalid) {
            tables.group_free(g);  // never published
        }
    }
    if (id == dp::kNhInvalid) {
        for (const auto &v : t.vias) {
            neighbors_.via_unref(v);
        }
        throw std::runtime_error(g == UINT32_MAX ? "ECMP group table full" : "next-hop table full");
    }
    groups_.emplace(t.vias, GroupNh{id, g, 1});
    return id;
}

void RoutesModule::release(const RouteTarget &t) {
    if (t.kind != RouteTarget::Kind::kVia) {
        return;  // pods own their next hop; blackhole and unreachable are permanent
    }
    dp::Tables &tables = ctx_.tables();
    if (t.mac) {
        auto it = fixed_.find(std::make_pair(t.vias[0], *t.mac));
        if (it != fixed_.end() && --it->second.refs == 0) {
            ctx_.defer([&tables, nh = it->second.nh] { tables.nh_free(nh); });
            fixed_.erase(it);
        }
        return;
    }
    if (t.vias.size() == 1) {
        neighbors_.via_unref(t.vias[0]);
        return;
    }
    auto it = groups_.find(t.vias);
    if (it == groups_.end() || --it->second.refs > 0) {
        return;
    }
    ctx_.defer([&tables, nh = it->second.nh, g = it->second.group] {
        tables.nh_free(nh);
        tables.group_free(g);
    });
    groups_.erase(it);
    for (const auto &v : t.vias) {
        neighbors_.via_unref(v);
    }
}

std::vector<std::pair<AnyPrefix, std::string>> RoutesModule::publish() {
    std::vector<std::pair<AnyPrefix, std::string>> failed;
    dp::Tables &tables = ctx_.tables();
    auto changes = rib_.flush();
    // A change the tables refused: nothing of it may stay half in place.
    auto refuse = [&](const RibChange &c, const std::string &err) {
        cnt_.route_errors++;
        if (c.target) {
            if (c.previous) {  // the old route must not linger either
                if (is_v4(c.prefix)) {
                    tables.del4(std::get<net::Prefix4>(c.prefix));
                } else {
                    tables.del6(std::get<net::Prefix6>(c.prefix));
                }
            }
            rib_.mark_not_installed(c.prefix);
        }
        failed.emplace_back(c.prefix, err);
    };
    // IPv4 changes go in place one by one (rte_lpm takes a writer beside its
    // readers); IPv6 changes are collected and applied as one batch (one grace
    // period for the whole burst).
    std::vector<dp::Tables::Change6> batch6;
    std::vector<size_t> batch6_idx;
    std::vector<uint32_t> nhs(changes.size(), dp::kNhInvalid);
    for (size_t i = 0; i < changes.size(); i++) {
        const auto &c = changes[i];
        cnt_.route_changes++;
        if (c.target) {
            try {
                nhs[i] = acquire(*c.target);
            } catch (const std::exception &e) {
                refuse(c, e.what());
                continue;
            }
        }
        if (!is_v4(c.prefix)) {
            batch6.push_back({std::get<net::Prefix6>(c.prefix), nhs[i]});
            batch6_idx.push_back(i);
            continue;
        }
        const auto &p = std::get<net::Prefix4>(c.prefix);
        int rc = c.target ? tables.add4(p, nhs[i]) : tables.del4(p);
        if (rc != 0 && !(rc == -ENOENT && !c.target)) {
            if (c.target) {
                release(*c.target);
            }
            refuse(c, std::string("the table refused it: ") + strerror(-rc));
        }
    }
    std::vector<int> rc6;
    tables.apply6_batch(batch6, rc6);
    for (size_t k = 0; k < batch6.size(); k++) {
        const auto &c = changes[batch6_idx[k]];
        if (rc6[k] != 0 && !(rc6[k] == -ENOENT && !c.target)) {
            if (c.target) {
                release(*c.target);
            }
            refuse(c, std::string("the table refused it: ") + strerror(-rc6[k]));
        }
    }
    for (const auto &c : changes) {
        if (c.previous) {
            release(*c.previous);
        }
    }
    ctx_.reclaim();
    if (!changes.empty()) {
        cnt_.versions++;
    }
    return failed;
}

// ---------------------------------------------------------------------------------------------
// Routes BIRD learned, from the netlink watcher.

bool RoutesModule::poll() {
    if (!watcher_) {
        return false;
    }
    auto t0 = std::chrono::steady_clock::now();
    RouteEvent ev;
    size_t n = 0;
    // A budget per pass so API calls and punts are not starved by a full table dump.
    while (n < 50000 && watcher_->pop(ev)) {
        n++;
        cnt_.bgp_events++;
        switch (ev.kind) {
            case RouteEvent::Kind::kResyncBegin:
                rib_.begin_resync(RouteSource::kBgp);
                continue;
            case RouteEvent::Kind::kResyncEnd:
                rib_.end_resync(RouteSource::kBgp);
                continue;
            case RouteEvent::Kind::kDel:
                rib_.remove(ev.prefix, RouteSource::kBgp);
                continue;
            case RouteEvent::Kind::kAdd:
                break;
        }
        if (ev.blackhole) {
            rib_.set(ev.prefix, RouteSource::kBgp, RouteTarget::blackhole());
            continue;
        }
        if (ev.unreachable) {
            rib_.set(ev.prefix, RouteSource::kBgp, RouteTarget::unreachable());
            continue;
        }
        std::vector<net::IpAddr> vias;
        bool v4 = is_v4(ev.prefix);
        for (const auto &h : ev.nexthops) {
            if (h.has_via && (h.via.family() == net::Family::kIp4) == v4) {
                vias.push_back(h.via);
            }
        }
        if (vias.empty() || vias.size() > RouteTarget::kMaxPaths) {
            // A device route or IPv4 via an IPv6 next hop: nothing the uplink can resolve.
            cnt_.bgp_ignored++;
            rib_.remove(ev.prefix, RouteSource::kBgp);
            continue;
        }
        rib_.set(ev.prefix, RouteSource::kBgp, RouteTarget::via(std::move(vias)));
    }
    if (n == 0) {
        return false;
    }
    publish();
    auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    cnt_.last_batch_routes = n;
    cnt_.last_batch_us = static_cast<uint64_t>(us);
    cnt_.max_batch_us = std::max<uint64_t>(cnt_.max_batch_us, static_cast<uint64_t>(us));
    return true;
}

// ---------------------------------------------------------------------------------------------
// The route API.

namespace {

struct ParsedRoute {
    AnyPrefix prefix;
    RouteSource source;
    RouteTarget target;
};

RouteSource api_source(const json &r) {
    auto it = r.find("source");
    if (it == r.end() || it->is_null()) {
        return RouteSource::kStatic;
    }
    if (!it->is_string()) {
        bad("source must be a string");
    }
    auto s = parse_route_source(it->get<std::string>());
    if (!s || *s == RouteSource::kEndpoint || *s == RouteSource::kBgp) {
        bad("source must be 'static' or 'ipam' (bgp routes come from the kernel, endpoint routes "
            "from endpoints), got '" +
            it->get<std::string>() + "'");
    }
    return *s;
}

AnyPrefix api_prefix(const json &r) {
    auto it = r.find("prefix");
    if (it == r.end() || !it->is_string()) {
        bad("missing field 'prefix' (a string like \"10.244.1.0/26\")");
    }
    auto p = parse_any_prefix(it->get<std::string>());
    if (!p) {
        bad("prefix '" + it->get<std::string>() +
            "' is not a valid prefix: an IPv4 or IPv6 address, '/', a length, and no address "
            "bits set past the length");
    }
    return *p;
}

ParsedRoute api_route(const json &r) {
    check_known(r, {"prefix", "type", "via", "mac", "source"});
    ParsedRoute out{api_prefix(r), api_source(r), {}};
    bool v4 = is_v4(out.prefix);
    std::string type;
    if (auto it = r.find("type"); it != r.end() && !it->is_null()) {
        if (!it->is_string()) {
            bad("type must be a string");
        }
        type = it->get<std::string>();
    } else {
        type = r.contains("via") ? "via" : "";
    }
    if (type == "blackhole" || type == "unreachable") {
        if (r.contains("via") || r.contains("mac")) {
            bad("'via' and 'mac' are only allowed for type 'via'");
        }
        out.target = type == "blackhole" ? RouteTarget::blackhole() : RouteTarget::unreachable();
        return out;
    }
    if (type != "via") {
        bad("type must be 'via', 'blackhole' or 'unreachable'" +
            std::string(type.empty() ? " (or give 'via')" : ", got '" + type + "'"));
    }
    auto vit = r.find("via");
    if (vit == r.end()) {
        bad("a route of type 'via' needs 'via' (an address or a list of addresses)");
    }
    std::vector<json> items = vit->is_array() ? vit->get<std::vector<json>>() : std::vector{*vit};
    if (items.empty() || items.size() > RouteTarget::kMaxPaths) {
        bad("via needs 1 to " + std::to_string(RouteTarget::kMaxPaths) + " addresses");
    }
    std::vector<net::IpAddr> vias;
    for (const auto &v : items) {
        auto a = v.is_string() ? net::IpAddr::parse(v.get<std::string>()) : std::nullopt;
        if (!a || (a->family() == net::Family::kIp4) != v4) {
            bad("via " + v.dump() + " is not an " + (v4 ? "IPv4" : "IPv6") +
                " address (the family of prefix " + prefix_str(out.prefix) + ")");
        }
        vias.push_back(*a);
    }
    std::optional<net::MacAddr> mac;
    if (auto mit = r.find("mac"); mit != r.end() && !mit->is_null()) {
        auto m = mit->is_string() ? net::MacAddr::parse(mit->get<std::string>()) : std::nullopt;
        if (!m || m->is_multicast() || m->is_zero()) {
            bad("mac " + mit->dump() + " is not a unicast MAC address");
        }
        if (vias.size() != 1) {
            bad("mac pins one next hop; this route has " + std::to_string(vias.size()));
        }
        mac = m;
    }
    out.target = RouteTarget::via(std::move(vias), mac);
    return out;
}

// "routes[3] (10.1.0.0/16): " for a batch, "" for a single route: which one is wrong.
std::string route_ref(const std::vector<json> &items, size_t i) {
    if (items.size() == 1) {
        return "";
    }
    std::string ref = "routes[" + std::to_string(i) + "]";
    const json &r = items[i];
    if (r.is_object() && r.contains("prefix") && r["prefix"].is_string()) {
        ref += " (" + r["prefix"].get<std::string>() + ")";
    }
    return ref + ": ";
}

// The routes of a request: {"routes": [...]} or one route's fields.
std::vector<json> api_routes(const json &args) {
    if (auto it = args.find("routes"); it != args.end()) {
        if (args.size() != 1) {
            bad("give either 'routes' or the fields of one route, not both");
        }
        if (!it->is_array() || it->empty() || it->size() > 1000000) {
            bad("routes must be an array of 1 to 1000000 routes");
        }
        return it->get<std::vector<json>>();
    }
    return {args};
}

json target_json(const RouteTarget &t) {
    json j{{"kind", t.kind_name()}};
    if (t.kind == RouteTarget::Kind::kOwned && !t.ref_key.empty() && !t.ref.empty()) {
        j[t.ref_key] = t.ref;
    }
    if (t.kind == RouteTarget::Kind::kVia) {
        json v = json::array();
        for (const auto &a : t.vias) {
            v.push_back(a.str());
        }
        j["via"] = v;
        if (t.mac) {
            j["mac"] = t.mac->str();
        }
    }
    return j;
}

}  // namespace

json RoutesModule::route_add(const json &args) {
    // Everything is checked before anything changes.
    std::vector<ParsedRoute> routes;
    auto items = api_routes(args);
    for (size_t i = 0; i < items.size(); i++) {
        try {
            routes.push_back(api_route(items[i]));
        } catch (const ApiError &e) {
            throw ApiError(e.code(), route_ref(items, i) + e.what());
        }
        if (routes.back().target.kind == RouteTarget::Kind::kVia && !ports_.uplink()) {
            bad("route " + prefix_str(routes.back().prefix) +
                " via a next hop needs an uplink, and this node has none");
        }
    }
    std::vector<std::optional<RouteTarget>> before;
    for (const auto &r : routes) {
        const RouteTarget *t = rib_.get(r.prefix, r.source);
        before.push_back(t ? std::optional(*t) : std::nullopt);
        rib_.set(r.prefix, r.source, r.target);
    }
    auto failed = publish();
    if (!failed.empty()) {
        // All or nothing: put back what the request replaced.
        for (size_t i = routes.size(); i-- > 0;) {
            if (before[i]) {
                rib_.set(routes[i].prefix, routes[i].source, *before[i]);
            } else {
                rib_.remove(routes[i].prefix, routes[i].source);
            }
        }
        publish();
        throw ApiError("unavailable", "route " + prefix_str(failed[0].first) + ": " +
                                          failed[0].second + " (" + std::to_string(failed.size()) +
                                          " failed; nothing of this request was applied)");
    }
    return json{{"added", routes.size()}, {"version", cnt_.versions}};
}

// The IPAM sync's complete set of node routes (not an API op: only the sync
// thread calls it): blackholes of source ipam, replacing the previous set.
// All or nothing: when the tables refuse one, the previous set comes back.
json RoutesModule::ipam_routes(const json &args) {
    std::vector<AnyPrefix> want;
    auto it = args.find("prefixes");
    if (it == args.end() || !it->is_array()) {
        bad("ipam.routes wants 'prefixes', an array of prefixes");
    }
    for (const auto &p : *it) {
        auto a = p.is_string() ? parse_any_prefix(p.get<std::string>()) : std::nullopt;
        if (!a) {
            bad("ipam.routes: '" + p.dump() + "' is not a prefix");
        }
        want.push_back(*a);
    }
    auto before = rib_.list(RouteSource::kIpam);
    auto replace = [&](const auto &items, auto prefix_of, auto target_of) {
        rib_.begin_resync(RouteSource::kIpam);
        for (const auto &x : items) {
            rib_.set(prefix_of(x), RouteSource::kIpam, target_of(x));
        }
        return rib_.end_resync(RouteSource::kIpam);
    };
    size_t removed = replace(
        want, [](const AnyPrefix &p) { return p; },
        [](const AnyPrefix &) { return RouteTarget::blackhole(); });
    auto failed = publish();
    if (!failed.empty()) {
        replace(
            before, [](const Rib::Route &r) { return r.prefix; },
            [](const Rib::Route &r) { return r.target; });
        publish();
        throw ApiError("unavailable", "ipam route " + prefix_str(failed[0].first) + ": " +
                                          failed[0].second + " (the previous set is kept)");
    }
    return json{{"routes", want.size()}, {"removed", removed}, {"version", cnt_.versions}};
}

json RoutesModule::route_del(const json &args) {
    std::vector<std::pair<AnyPrefix, RouteSource>> keys;
    auto items = api_routes(args);
    for (size_t i = 0; i < items.size(); i++) {
        const json &r = items[i];
        try {
            check_known(r, {"prefix", "source"});
            keys.emplace_back(api_prefix(r), api_source(r));
        } catch (const ApiError &e) {
            throw ApiError(e.code(), route_ref(items, i) + e.what());
        }
        if (!rib_.get(keys.back().first, keys.back().second)) {
            throw ApiError("not_found", "no " + std::string(route_source_name(keys.back().second)) +
                                            " route " + prefix_str(keys.back().first));
        }
    }
    for (const auto &[p, s] : keys) {
        rib_.remove(p, s);
    }
    publish();  // deletes cannot fail
    return json{{"deleted", keys.size()}, {"version", cnt_.versions}};
}

json RoutesModule::route_list(const json &args) {
    std::optional<RouteSource> src;
    if (auto it = args.find("source"); it != args.end() && !it->is_null()) {
        src = it->is_string() ? parse_route_source(it->get<std::string>()) : std::nullopt;
        if (!src) {
            std::string names;
            for (const char *n : kRouteSourceNames) {
                names += (names.empty() ? "" : ", ") + std::string(n);
            }
            bad("source must be one of " + names);
        }
    }
    std::optional<net::Family> fam;
    if (auto it = args.find("family"); it != args.end() && !it->is_null()) {
        if (*it == "ipv4") {
            fam = net::Family::kIp4;
        } else if (*it == "ipv6") {
            fam = net::Family::kIp6;
        } else {
            bad("family must be 'ipv4' or 'ipv6'");
        }
    }
    std::optional<AnyPrefix> only;
    if (auto it = args.find("prefix"); it != args.end() && !it->is_null()) {
        only = api_prefix(args);
    }
    size_t limit = SIZE_MAX;
    if (auto it = args.find("limit"); it != args.end() && !it->is_null()) {
        if (!it->is_number_unsigned()) {
            bad("limit must be a non-negative integer");
        }
        limit = it->get<size_t>();
    }
    json out = json::array();
    size_t total = 0;
    for (const auto &r : rib_.list(src, fam)) {
        if (only && r.prefix != *only) {
            continue;
        }
        total++;
        if (out.size() >= limit) {
            continue;
        }
        json j = target_json(r.target);
        j["prefix"] = prefix_str(r.prefix);
        j["source"] = route_source_name(r.source);
        j["active"] = r.active;
        out.push_back(std::move(j));
    }
    return json{{"routes", out}, {"total", total}};
}

void RoutesModule::counters(json &out) const {
    out["versions"] = cnt_.versions;
    out["route_changes"] = cnt_.route_changes;
    out["route_errors"] = cnt_.route_errors;
    out["bgp_events"] = cnt_.bgp_events;
    out["bgp_ignored"] = cnt_.bgp_ignored;
}

void RoutesModule::describe_node(json &out) const {
    const NodeConfig &cfg = ctx_.cfg();
    out["bgp"] =
        cfg.bgp ? json{{"table", cfg.bgp->table}, {"protocols", cfg.bgp->protocols}} : json();
}

void RoutesModule::describe_tables(json &out) const {
    const NodeConfig &cfg = ctx_.cfg();
    json src = json::object();
    for (size_t i = 0; i < kRouteSourceCount; i++) {
        src[route_source_name(static_cast<RouteSource>(i))] =
            rib_.size(static_cast<RouteSource>(i));
    }
    out["version"] = cnt_.versions;
    out["ipv4_routes"] = rib_.installed(net::Family::kIp4);
    out["ipv6_routes"] = rib_.installed(net::Family::kIp6);
    out["ipv4_capacity"] = cfg.tables.ipv4_routes;
    out["ipv6_capacity"] = cfg.tables.ipv6_routes;
    out["routes_by_source"] = src;
    out["ecmp_groups"] = groups_.size();
    out["route_changes"] = cnt_.route_changes;
    out["route_errors"] = cnt_.route_errors;
    out["bgp"] = json{{"enabled", watcher_ != nullptr},
                      {"events", cnt_.bgp_events},
                      {"ignored", cnt_.bgp_ignored},
                      {"resyncs", watcher_ ? watcher_->resyncs() : 0},
                      {"backpressure_waits", watcher_ ? watcher_->backpressure_waits() : 0},
                      {"error", watcher_ ? json(watcher_->error()) : json()},
                      {"last_batch_routes", cnt_.last_batch_routes},
                      {"last_batch_us", cnt_.last_batch_us},
                      {"max_batch_us", cnt_.max_batch_us}};
    out["table_memory_bytes"] = ctx_.tables().memory_bytes();
    out["heap_allocated_bytes"] = heap_allocated();
}

}  // namespace fwd::control
