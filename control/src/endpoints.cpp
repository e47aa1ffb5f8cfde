#include "fwd/control/endpoints.hpp"

#include <sys/stat.h>

#include <random>

#include "api_args.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/control/routes.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

FWD_ON_LOAD(register_module<EndpointsModule>({RoutesModule::kName, PortsModule::kName}));

namespace {

// endpoint.add without "kind".
constexpr const char *kDefaultKind = "tap";

std::map<std::string, PortKindFactory> &kind_factories() {
    static std::map<std::string, PortKindFactory> m;
    return m;
}

bool valid_id(const std::string &id) {
    if (id.empty() || id.size() > 128) {
        return false;
    }
    for (char c : id) {
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

net::MacAddr random_pod_mac() {
    static std::mt19937_64 rng{std::random_device{}()};
    uint64_t r = rng();
    std::array<uint8_t, 6> b;
    for (int i = 0; i < 6; i++) {
        b[i] = static_cast<uint8_t>(r >> (i * 8));
    }
    b[0] = (b[0] & 0xfe) | 0x02;  // unicast, locally administered
    return net::MacAddr(b);
}

bool path_exists(const std::string &path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

std::string owner_handle(const json &rec) {
    auto o = rec.find("owner");
    if (o == rec.end() || !o->is_object()) {
        return {};
    }
    auto h = o->find("handle");
    return h != o->end() && h->is_string() ? h->get<std::string>() : std::string();
}

}  // namespace

void register_port_kind(std::string name, PortKindFactory make) {
    if (name.empty() || !make) {
        throw std::invalid_argument("a port kind needs a name and a factory");
    }
    if (!kind_factories().emplace(name, std::move(make)).second) {
        throw std::invalid_argument("port kind '" + name + "' is registered twice");
    }
}

const std::map<std::string, PortKindFactory> &registered_port_kinds() {
    return kind_factories();
}

EndpointsModule::EndpointsModule(ControlContext &ctx)
    : ctx_(ctx), routes_(ctx.need<RoutesModule>()) {
    std::vector<std::string> add_args = {"id",   "netns", "ifname", "ipv4", "ipv6",
                                         "kind", "mtu",   "mac",    "owner"};
    for (const auto &[name, make] : registered_port_kinds()) {
        auto k = make(ctx);
        for (auto &a : k->args()) {
            if (std::find(add_args.begin(), add_args.end(), a) == add_args.end()) {
                add_args.push_back(a);
            }
        }
        kinds_.emplace(name, std::move(k));
    }
    add_args_ = add_args;
    ctx.add_op(
        {.name = "endpoint.add", .args = add_args, .fn = [this](const json &a) { return add(a); }});
    ctx.add_op({.name = "endpoint.restore",
                .args = {},
                .fn = [this](const json &) { return restore(); },
                .internal = true});
    ctx.add_op(
        {.name = "endpoint.del", .args = {"id"}, .fn = [this](const json &a) { return del(a); }});
    ctx.add_op(
        {.name = "endpoint.get", .args = {"id"}, .fn = [this](const json &a) { return get(a); }});
    ctx.add_op(
        {.name = "endpoint.list", .args = {}, .fn = [this](const json &) { return list(); }});
    ctx.add_op({.name = "node.shutdown", .args = {"remove_pods"}, .fn = [this](const json &a) {
                    return shutdown(a);
                }});
}

void EndpointsModule::start() {
    record_ = std::make_unique<EndpointRecord>(ctx_.cfg().state_dir + "/endpoints");
    for (auto &[name, k] : kinds_) {
        k->start();
    }
}

void EndpointsModule::online() {
    ctx_.call("endpoint.restore", json::object());
}

json EndpointsModule::restore() {
    json restored = json::array();
    json gone = json::array();
    json failed = json::array();
    json unreadable = json::array();
    json release = json::array();  // the owners of the pods that went while we were down
    json keep = json::array();     // the IPAM handles recorded endpoints hold
    RecordLoad l;
    try {
        l = record_->load();
    } catch (const RecordError &e) {
        unreadable.push_back(e.what());
        log::error("endpoint record: {}: no pod restored", e.what());
    }
    for (const auto &u : l.unreadable) {
        unreadable.push_back(u);
        log::error("endpoint record: {}: that pod is not restored", u);
    }
    for (const auto &rec : l.records) {
        const std::string id = rec.value("id", "");
        try {
            auto kit = kinds_.find(rec.value("kind", kDefaultKind));
            const std::string netns = rec.value("netns", "");
            if (kit != kinds_.end() && kit->second->needs_netns() && !netns.empty() &&
                !path_exists(vhost::resolve_netns_path(netns))) {
                // The runtime removed the pod while no daemon ran (its DEL
                // never reached us): what it held goes.
                record_->erase(id);
                gone.push_back(id);
                release.push_back(rec.value("owner", json::object()));
                log::info("endpoint {}: netns {} is gone: removed", id, netns);
                continue;
            }
            add(rec, true);
            restored.push_back(id);
        } catch (const std::exception &e) {
            // Kept: the next start tries again, the runtime's DEL removes it.
            failed.push_back(json{{"id", id}, {"error", e.what()}});
            if (auto h = owner_handle(rec); !h.empty()) {
                keep.push_back(h);
            }
            log::error("endpoint {}: not restored: {}", id, e.what());
        }
    }
    for (const auto &[id, e] : endpoints_) {
        if (auto h = owner_handle(json{{"owner", e.owner}}); !h.empty()) {
            keep.push_back(h);
        }
    }
    json ipam = nullptr;
    if (ctx_.cfg().ipam) {
        // A damaged record may hold addresses: no sweep of the unrecorded
        // ones then, only the gone pods' are released.
        try {
            ipam = ctx_.call("cni.reconcile",
                             {{"release", release}, {"keep", keep}, {"sweep", unreadable.empty()}});
        } catch (const std::exception &e) {
            ipam = json{{"error", e.what()}};
            log::error("endpoint restore: IPAM not reconciled: {}", e.what());
        }
    }
    restore_report_ = json{{"restored", restored},
                           {"removed", gone},
                           {"failed", failed},
                           {"unreadable", unreadable},
                           {"ipam", ipam}};
    if (!l.records.empty() || !unreadable.empty()) {
        log::info("endpoint restore: {}", restore_report_.dump());
    }
    // A record that could not be read may name pods still on their ports.
    if (unreadable.empty()) {
        for (auto &[name, k] : kinds_) {
            k->restored();
        }
    }
    return restore_report_;
}

void EndpointsModule::stop() {
    while (!endpoints_.empty()) {
        remove(endpoints_.begin()->second, keep_pods_ ? Detach::kKeepPod : Detach::kShutdown);
        if (!keep_pods_) {
            forget(endpoints_.begin()->first);  // nothing left for a next daemon
        }
        endpoints_.erase(endpoints_.begin());
    }
    for (auto it = kinds_.rbegin(); it != kinds_.rend(); ++it) {
        it->second->stop(keep_pods_);
    }
}

// The daemon stops as at SIGTERM (the main thread's sigwait takes it). With
// remove_pods (an uninstall, a node drained for good) every pod's interface
// goes too, and the records with them: nothing is left for a next daemon.
json EndpointsModule::shutdown(const json &args) {
    const bool remove_pods = get_bool(args, "remove_pods", false);
    // First, as it may refuse: nothing is changed then. The stop itself
    // comes after this reply (the main thread stops the API first).
    ctx_.request_stop();
    keep_pods_ = !remove_pods;
    log::info("node.shutdown: stopping, {}",
              remove_pods ? "removing the pods" : "keeping the pods");
    return json{{"stopping", true}, {"remove_pods", remove_pods}};
}

PortKind &EndpointsModule::kind_of(const Endpoint &e) const {
    return *kinds_.at(e.kind);
}

json EndpointsModule::add(const json &args, bool restoring) {
    Endpoint e;
    e.id = get_str(args, "id", true);
    if (!valid_id(e.id)) {
        bad("id '" + e.id + "' must be 1-128 characters of [A-Za-z0-9._-]");
    }
    if (endpoints_.count(e.id)) {
        throw ApiError("already_exists", "endpoint '" + e.id + "' already exists");
    }
    const NodeConfig &cfg = ctx_.cfg();
    if (endpoints_.size() >= cfg.max_endpoints) {
        throw ApiError("unavailable", "endpoint limit reached (max_endpoints " +
                                          std::to_string(cfg.max_endpoints) + ")");
    }
    e.kind = get_str(args, "kind", false, kDefaultKind);
    auto kit = kinds_.find(e.kind);
    if (kit == kinds_.end()) {
        std::string names;
        size_t i = 0;
        for (const auto &[name, k] : kinds_) {
            names += (i == 0 ? "" : i + 1 == kinds_.size() ? " or " : ", ") + ("'" + name + "'");
            i++;
        }
        bad("kind must be " + names + ", got '" + e.kind + "'");
    }
    PortKind &kind = *kit->second;
    e.netns = get_str(args, "netns", kind.needs_netns());
    e.ifname = get_str(args, "ifname", false, "eth0");
    if (e.ifname.empty() || e.ifname.size() > 15 || e.ifname.find('/') != std::string::npos) {
        bad("ifname '" + e.ifname + "' is not a valid interface name (1-15 characters, no '/')");
    }
    auto v4 = get_str(args, "ipv4", false);
    auto v6 = get_str(args, "ipv6", false);
    if (v4.empty() && v6.empty()) {
        bad("an endpoint needs ipv4, ipv6 or both");
    }
    if (!v4.empty()) {
        e.ipv4 = net::Ip4Addr::parse(v4);
        if (!e.ipv4) {
            bad("ipv4 '" + v4 + "' is not an IPv4 address");
        }
    }
    if (!v6.empty()) {
        e.ipv6 = net::Ip6Addr::parse(v6);
        if (!e.ipv6 || e.ipv6->is_link_local() || e.ipv6->is_multicast()) {
            bad("ipv6 '" + v6 + "' is not a global unicast IPv6 address");
        }
    }
    for (const auto &[id, o] : endpoints_) {
        if ((e.ipv4 && o.ipv4 == e.ipv4) || (e.ipv6 && o.ipv6 == e.ipv6)) {
            throw ApiError("already_exists", "address already used by endpoint '" + id + "'");
        }
    }
    e.mtu = cfg.mtu;
    if (auto it = args.find("mtu"); it != args.end() && !it->is_null()) {
        if (!it->is_number_integer() || *it < 576 || *it > kMaxPodMtu) {
            bad("mtu must be an integer from 576 to " + std::to_string(kMaxPodMtu) + ", got " +
                it->dump());
        }
        e.mtu = it->get<uint16_t>();
        if (e.ipv6 && e.mtu < 1280) {
            bad("mtu must be at least 1280 with IPv6, got " + it->dump());
        }
    }
    auto mac = get_str(args, "mac", kind.needs_mac());
    if (!mac.empty()) {
        auto m = net::MacAddr::parse(mac);
        if (!m || m->is_multicast() || m->is_zero()) {
            bad("mac '" + mac + "' is not a unicast MAC address");
        }
        e.mac = *m;
    } else {
        e.mac = random_pod_mac();
    }
    kind.check(e, args, endpoints_);
    if (auto it = args.find("owner"); it != args.end() && !it->is_null()) {
        if (!it->is_object() || it->size() > 16) {
            bad("owner must be an object of at most 16 strings");
        }
        for (const auto &[k, v] : it->items()) {
            if (!v.is_string() || k.size() > 64 || v.get_ref<const std::string &>().size() > 256) {
                bad("owner." + k + " must be a string of at most 256 characters");
            }
        }
        e.owner = *it;
    }

    if (!restoring && record_) {
        // Written ahead of the port: a crash in the middle of this add
        // leaves a record, and the restore finishes what it began (else a
        // pod interface no record names would stay behind). What this add
        // was asked, with what it chose (MAC, MTU): a restore makes the same
        // endpoint.
        json rec = json::object();
        for (const auto &k : add_args_) {
            if (auto it = args.find(k); it != args.end() && !it->is_null()) {
                rec[k] = *it;
            }
        }
        rec["id"] = e.id;
        rec["kind"] = e.kind;
        rec["ifname"] = e.ifname;
        rec["mac"] = e.mac.str();
        rec["mtu"] = e.mtu;
        rec["owner"] = e.owner;
        try {
            record_->put(rec);
        } catch (const RecordError &x) {
            throw ApiError("unavailable", std::string("cannot record the endpoint (it would "
                                                      "not survive a restart): ") +
                                              x.what());
        }
    }

    // From here on, every failure undoes what was done before it.
    try {
        if (restoring) {
            kind.reattach(e);
        } else {
            kind.attach(e);
        }
        e.attached = true;
        dp::NextHop nh{};
        nh.kind = dp::NhKind::kPod;
        nh.port = e.port_id;
        nh.dst_mac = e.mac.bytes();
        nh.src_mac = net::kCalicoGatewayMac.bytes();
        nh.mtu = e.mtu;
        e.nh = ctx_.tables().nh_alloc(nh);
        if (e.nh == dp::kNhInvalid) {
            throw ApiError("unavailable", "next-hop table full");
        }
        for (const auto &s : subscribers_) {
            e.announced++;  // told before it is called: a refusal is undone for it too
            s(Event::kAttached, e);
        }
        Rib &rib = routes_.rib();
        if (e.ipv4) {
            rib.set(net::Prefix4{*e.ipv4, 32}, RouteSource::kEndpoint,
                    RouteTarget::pod(e.nh, e.id));
        }
        if (e.ipv6) {
            rib.set(net::Prefix6{*e.ipv6, 128}, RouteSource::kEndpoint,
                    RouteTarget::pod(e.nh, e.id));
        }
        if (auto failed = routes_.publish(); !failed.empty()) {
            throw ApiError("unavailable", "cannot add route " + prefix_str(failed[0].first) + ": " +
                                              failed[0].second);
        }
        kind.activate(e);
        e.active = true;
    } catch (...) {
        remove(e);
        if (!restoring) {
            forget(e.id);
        }
        throw;
    }
    // The pod is live: nothing can refuse it any more.
    for (const auto &s : subscribers_) {
        try {
            s(Event::kLive, e);
        } catch (...) {
            // Logged by the subscriber if it cares; the endpoint stands.
        }
    }
    auto [it, ok] = endpoints_.emplace(e.id, std::move(e));
    return to_json(it->second);
}

void EndpointsModule::remove(Endpoint &e, Detach how) {
    if (e.attached && how == Detach::kAll) {
        // The pod falls silent before its state goes (a packet it sent after
        // kRemoving took its addresses would be a spoofed source on a shared
        // port), and a burst a worker read before is done with.
        kind_of(e).silence(e);
        ctx_.tables().synchronize();
    }
    // The subscribers that were told of it, in reverse.
    while (e.announced > 0) {
        try {
            subscribers_[--e.announced](Event::kRemoving, e);
        } catch (...) {
            // A removal goes on whatever a subscriber thinks of it.
        }
    }
    Rib &rib = routes_.rib();
    if (e.ipv4) {
        rib.remove(net::Prefix4{*e.ipv4, 32}, RouteSource::kEndpoint);
    }
    if (e.ipv6) {
        rib.remove(net::Prefix6{*e.ipv6, 128}, RouteSource::kEndpoint);
    }
    routes_.publish();
    PortKind &kind = kind_of(e);
    if (e.attached) {
        kind.deactivate(e);
    }
    e.active = false;
    if (e.nh != dp::kNhInvalid) {
        // Once no lookup returns the next hop it can go.
        ctx_.tables().synchronize();
        ctx_.tables().nh_free(e.nh);
        e.nh = dp::kNhInvalid;
    }
    if (e.attached) {
        kind.detach(e, how);
        e.attached = false;
    }
}

json EndpointsModule::del(const json &args) {
    auto id = get_str(args, "id", true);
    auto it = endpoints_.find(id);
    if (it == endpoints_.end()) {
        // One the restore could not take back goes with the runtime's DEL.
        forget(id);
        throw ApiError("not_found", "no endpoint '" + id + "'");
    }
    remove(it->second);
    endpoints_.erase(it);
    forget(id);
    return json{{"id", id}, {"deleted", true}};
}

void EndpointsModule::forget(const std::string &id) {
    if (!record_) {
        return;
    }
    try {
        record_->erase(id);
    } catch (const RecordError &e) {
        // The endpoint is gone all the same; a restart finds its namespace
        // gone, or takes it back for the runtime's next DEL.
        log::error("endpoint {}: record not removed: {}", id, e.what());
    }
}

json EndpointsModule::get(const json &args) const {
    auto id = get_str(args, "id", true);
    auto it = endpoints_.find(id);
    if (it == endpoints_.end()) {
        throw ApiError("not_found", "no endpoint '" + id + "'");
    }
    json j = to_json(it->second);
    j["port_stats"] = kind_of(it->second).stats(it->second);
    return j;
}

json EndpointsModule::list() const {
    json list = json::array();
    for (const auto &[id, e] : endpoints_) {
        list.push_back(to_json(e));
    }
    return json{{"endpoints", list}};
}

json EndpointsModule::to_json(const Endpoint &e) const {
    json j{
        {"id", e.id},   {"kind", e.kind},       {"ifname", e.ifname}, {"mac", e.mac.str()},
        {"mtu", e.mtu}, {"port_id", e.port_id}, {"worker", e.worker}, {"rx_queues", e.rx_queues}};
    j["netns"] = e.netns.empty() ? json() : json(e.netns);
    j["ipv4"] = e.ipv4 ? json(e.ipv4->str()) : json();
    j["ipv6"] = e.ipv6 ? json(e.ipv6->str()) : json();
    for (const auto &[name, k] : kinds_) {
        for (const auto &f : k->fields()) {
            j[f] = json();
        }
    }
    const PortKind &kind = kind_of(e);
    kind.describe(e, j);
    // "shared": on a port many pods share; "own": a port of its own.
    j["port"] = kind.shared_port() ? "shared" : "own";
    j["pod_interface"] = kind.pod_interface();
    j["owner"] = e.owner;
    return j;
}

void EndpointsModule::describe_node(json &out) const {
    out["restore"] = restore_report_;
    for (const auto &[name, k] : kinds_) {
        k->describe_node(out, endpoints_);
    }
}

void EndpointsModule::describe_tables(json &out) const {
    out["endpoints"] = endpoints_.size();
}

}  // namespace fwd::control
