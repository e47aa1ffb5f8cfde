// The "overlay" module: routes to other nodes' blocks without BGP, as
// Calico's Felix computes them in VXLAN mode (../shared/CALICO.md, "Overlay
// and routing"): from the block affinities and the node registry in the
// cluster store.
//
//   IPAM sync thread (a follower of its rounds, ipam_module.hpp):
//     registers this node (fwd/ipam/node.hpp: addresses with their prefix,
//     VTEP MACs, tunnel addresses from IPAM with the Tunnel use), reads the
//     pools, every node's blocks and borrowed addresses and the registry,
//     computes the routes (fwd/ipam/overlay_routes.hpp) and, when the result
//     changed, hands it to the control thread (internal op overlay.apply).
//   control thread (overlay.apply):
//     a tunnel per remote node, family and kind (fwd/dp/overlay.hpp: its
//     outer addresses and MACs, and the neighbors module's via next hop to
//     the node's address as its underlay) behind a next hop of kind vxlan or
//     ipip on the uplink whose MTU is the uplink's minus the overhead (route
//     answers too-large packets with that MTU); the routes as source overlay
//     in the RIB, published as one table version; the decap configuration
//     (our VNI, UDP port and VTEP MACs, the known node addresses, the pools)
//     swapped in; tunnels no route uses any more freed after the grace period.
//   control thread (overlay.vxlan, FelixConfiguration's vxlanVNI / vxlanPort /
//     vxlanMTU / vxlanMTUV6): a change makes every tunnel again (the VNI and
//     the port are in each tunnel's headers and checksum) and publishes the
//     decap configuration with them, as one overlay.apply.
// Ops: overlay.apply (internal), node.list (the registry as last read, each
// node's tunnel state and route count). node.get shows "overlay".
#include "fwd/dp/overlay.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "api_args.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/control/ipam_module.hpp"
#include "fwd/control/neighbors.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/control/routes.hpp"
#include "fwd/ipam/node.hpp"
#include "fwd/ipam/overlay_routes.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;
namespace ov = dp::overlay;

namespace {

// The config file's "overlay" section: what the node says of itself.
struct OverlayConfig {
    uint32_t vni = ov::kDefaultVni;
    uint16_t vxlan_port = ov::kDefaultVxlanPort;  // UDP destination port of VXLAN
    std::optional<net::MacAddr> vtep_mac4;        // absent: derived from the node name
    std::optional<net::MacAddr> vtep_mac6;
    std::map<std::string, std::string> labels;  // the node's labels (pool nodeSelector)
};

// ipam::to_string's inverse, for the routes the sync hands over as JSON.
std::optional<ipam::OverlayRoute::Via> parse_via(const std::string &s) {
    for (auto v : {ipam::OverlayRoute::Via::kVxlan, ipam::OverlayRoute::Via::kIpip,
                   ipam::OverlayRoute::Via::kNative}) {
        if (s == ipam::to_string(v)) {
            return v;
        }
    }
    return std::nullopt;
}

class OverlayModule final : public Module {
  public:
    static constexpr const char *kName = "overlay";

    explicit OverlayModule(ControlContext &ctx)
        : ctx_(ctx),
          ports_(ctx.need<PortsModule>()),
          neighbors_(ctx.need<NeighborsModule>()),
          routes_(ctx.need<RoutesModule>()),
          ipam_(ctx.need<IpamModule>()),
          ocfg_(ctx.cfg().section<OverlayConfig>("overlay")) {
        for (dp::Worker *w : ctx.workers()) {
            w->set_slot(ov::worker_slot(), &tables_);
        }
        ctx.add_op(
            {.name = "overlay.apply",
             .args = {"revision", "routes", "nodes", "pools", "problems", "refused", "read_ms"},
             .fn = [this](const json &a) { return apply(a); },
             .internal = true});
        ctx.add_op(
            {.name = "node.list", .args = {}, .fn = [this](const json &) { return node_list(); }});
        // FelixConfiguration's vxlanVNI / vxlanPort / vxlanMTU / vxlanMTUV6 (felix_module.cpp);
        // null: the config file's VNI and port, the uplink's MTU less the overhead.
        ctx.add_op({.name = "overlay.vxlan",
                    .args = {"vni", "port", "mtu", "mtu6"},
                    .fn = [this](const json &a) { return set_vxlan(a); },
                    .internal = true});
    }

    ~OverlayModule() override {
        for (dp::Worker *w : ctx_.workers()) {
            w->set_slot(ov::worker_slot(), nullptr);
        }
    }

    // After the ipam module's start (the sync exists) and before its
    // online() (the sync's thread starts there).
    void start() override {
        IpamSync *sync = ipam_.sync();
        if (sync == nullptr) {
            return;  // no cluster store: nothing to follow
        }
        if (!ports_.uplink()) {
            // A node without an uplink reaches no other node: it registers
            // nothing and takes no tunnel address (a single-node setup).
            return;
        }
        self_ = self_record();
        sync->follow("overlay", [this](ipam::Store &s, ipam::Allocator &a, int64_t rev) {
            sync_round(s, a, rev);
        });
    }

    void stop() override {
        // The routes first (the RIB frees nothing of ours), then the tunnels
        // once no worker can still see them.
        routes_.rib().begin_resync(RouteSource::kOverlay);
        routes_.rib().end_resync(RouteSource::kOverlay);
        routes_.publish();
        for (auto &[key, t] : tunnels_) {
            retire(t);
        }
        tunnels_.clear();
        if (const ov::DecapConfig *old = tables_.swap_decap(nullptr)) {
            ctx_.defer([old] { delete old; });
        }
        ctx_.reclaim();
    }

    void describe_node(json &out) const override {
        json j{{"enabled", self_.has_value()},
               {"vni", vni_},
               {"vxlan_port", vxlan_port_},
               {"vxlan_mtu", mtu4_ ? json(*mtu4_) : json()},
               {"vxlan_mtu_v6", mtu6_ ? json(*mtu6_) : json()},
               {"revision", applied_revision_},
               {"routes", route_count_},
               {"tunnels", tunnels_.size()},
               {"applies", applies_},
               {"apply_errors", apply_errors_},
               {"last_apply_ms", last_apply_ms_},
               {"problems", problems_},
               {"refused", refused_}};
        if (self_) {
            j["vtep_mac4"] = self_->vtep_mac4 ? json(self_->vtep_mac4->str()) : json();
            j["vtep_mac6"] = self_->vtep_mac6 ? json(self_->vtep_mac6->str()) : json();
        }
        std::lock_guard g(sync_mu_);
        j["sync"] = sync_status_;
        out["overlay"] = j;
    }

    void counters(json &out) const override {
        out["overlay"] = json{{"applies", applies_},
                              {"apply_errors", apply_errors_},
                              {"tunnels", tunnels_.size()},
                              {"routes", route_count_}};
    }

  private:
    // A tunnel: one per remote node, outer family, kind and outer parameters
    // (an address or MAC change is a new tunnel, the old one retired).
    struct TunnelKey {
        std::string node;
        ipam::OverlayRoute::Via via;
        net::IpAddr dst;
        net::MacAddr dst_mac;
        uint32_t settings = 0;  // settings_ when made: a VNI, port or MTU change remakes it
        auto operator<=>(const TunnelKey &) const = default;
    };
    struct TunnelState {
        uint32_t index = UINT32_MAX;  // OverlayTables entry
        uint32_t nh = dp::kNhInvalid;
        net::IpAddr underlay;  // via_ref'd
        bool used = false;     // by the routes being applied
    };

    // --- the IPAM sync's thread ---

    ipam::NodeRecord self_record() const {
        const NodeConfig &cfg = ctx_.cfg();
        ipam::NodeRecord r;
        r.name = cfg.node_name;
        if (cfg.node_ip4) {
            r.ipv4 = ipam::IfAddr{net::IpAddr(cfg.node_ip4->addr), cfg.node_ip4->len};
            r.vtep_mac4 = ocfg_.vtep_mac4
                              ? *ocfg_.vtep_mac4
                              : ipam::derived_vtep_mac(cfg.node_name, net::Family::kIp4);
        }
        if (cfg.node_ip6) {
            r.ipv6 = ipam::IfAddr{net::IpAddr(cfg.node_ip6->addr), cfg.node_ip6->len};
            r.vtep_mac6 = ocfg_.vtep_mac6
                              ? *ocfg_.vtep_mac6
                              : ipam::derived_vtep_mac(cfg.node_name, net::Family::kIp6);
        }
        r.labels = ocfg_.labels;
        return r;
    }

    // One round: our record up to date, then the routes from what the store holds.
    void sync_round(ipam::Store &store, ipam::Allocator &alloc, int64_t rev) {
        const uint64_t t0 = ControlContext::now_ms();
        ipam::NodeRecord me = *self_;
        std::vector<ipam::IpPool> pools = alloc.pools();
        // A tunnel address per family that a VXLAN pool serves (Calico gives
        // one only then); kept once given.
        for (net::Family f : {net::Family::kIp4, net::Family::kIp6}) {
            bool has_addr = f == net::Family::kIp4 ? me.ipv4.has_value() : me.ipv6.has_value();
            bool wanted = std::any_of(pools.begin(), pools.end(), [f](const ipam::IpPool &p) {
                return p.cidr.family() == f && !p.disabled &&
                       p.vxlan_mode != ipam::EncapMode::kNever &&
                       p.allows(ipam::AllowedUse::kTunnel);
            });
            if (has_addr && wanted) {
                auto a = alloc.assign_tunnel_address(me.name, me.labels, f);
                (f == net::Family::kIp4 ? me.tunnel4 : me.tunnel6) = a;
            }
        }
        ipam::NodeRegistry registry(store);
        auto current = registry.get(me.name);
        if (!current || !(*current == me)) {
            // throws naming a node that holds one of our addresses; keeps what the user set
            // (labels, asNumber, routeReflectorClusterID: fwdctl bgp node, apply -f)
            registry.put(me, ipam::NodeRegistry::Merge::kKeepUserFields);
        }
        auto listing = registry.list();
        auto cluster = alloc.cluster_routes();
        std::vector<std::string> problems;
        auto routes =
            ipam::compute_overlay_routes(me.name, listing.nodes, pools, cluster, &problems);

        json jr = json::array();
        for (const auto &r : routes) {
            jr.push_back({{"prefix", r.prefix.str()},
                          {"via", ipam::to_string(r.via)},
                          {"node", r.node},
                          {"next_hop", r.next_hop.str()}});
        }
        json jn = json::array();
        for (const auto &n : listing.nodes) {
            jn.push_back(n);  // Calico's Node shape (to_json)
        }
        json jp = json::array();
        for (const auto &p : pools) {
            jp.push_back({{"cidr", p.cidr.str()},
                          {"vxlan", p.vxlan_mode != ipam::EncapMode::kNever && !p.disabled},
                          {"ipip", p.ipip_mode != ipam::EncapMode::kNever && !p.disabled}});
        }
        json refused = json::array();
        for (const auto &[key, why] : listing.refused) {
            refused.push_back({{"key", key}, {"error", why}});
        }
        json desired{{"routes", jr},
                     {"nodes", jn},
                     {"pools", jp},
                     {"problems", problems},
                     {"refused", refused}};
        if (desired != last_sent_) {
            json args = desired;
            args["revision"] = rev;
            args["read_ms"] = ControlContext::now_ms() - t0;
            ctx_.call("overlay.apply", args);
            last_sent_ = std::move(desired);
        }
        std::lock_guard g(sync_mu_);
        sync_status_ = json{{"revision", rev},
                            {"nodes", listing.nodes.size()},
                            {"routes", routes.size()},
                            {"tunnel4", me.tunnel4 ? json(me.tunnel4->str()) : json()},
                            {"tunnel6", me.tunnel6 ? json(me.tunnel6->str()) : json()}};
    }

    // --- the control thread ---

    json set_vxlan(const json &a) {
        auto opt = [&a](const char *k) -> std::optional<uint16_t> {
            return a.contains(k) && !a[k].is_null() ? std::optional(a[k].get<uint16_t>())
                                                    : std::nullopt;
        };
        const uint32_t vni =
            a.contains("vni") && !a["vni"].is_null() ? a["vni"].get<uint32_t>() : ocfg_.vni;
        if (vni < 1 || vni >= (1u << 24)) {
            bad("overlay.vxlan: bad VNI " + std::to_string(vni));
        }
        const int64_t port = a.contains("port") && !a["port"].is_null() ? a["port"].get<int64_t>()
                                                                        : int64_t{ocfg_.vxlan_port};
        if (port < 1 || port > 65535) {
            bad("overlay.vxlan: bad UDP port " + std::to_string(port) + " (1 to 65535)");
        }
        if (vni != vni_ || port != vxlan_port_ || opt("mtu") != mtu4_ || opt("mtu6") != mtu6_) {
            vni_ = vni;
            vxlan_port_ = static_cast<uint16_t>(port);
            mtu4_ = opt("mtu");
            mtu6_ = opt("mtu6");
            settings_++;
            if (!last_args_.is_null()) {  // every tunnel made again with them, the old retired
                apply(json(last_args_));
            }
        }
        return json{{"vni", vni_}, {"port", vxlan_port_}};
    }

    json apply(const json &a) {
        last_args_ = a;
        const auto &up = ports_.uplink();
        if (!up) {
            throw ApiError("unavailable", "the overlay needs an uplink");
        }
        std::map<std::string, ipam::NodeRecord> nodes;
        for (const auto &n : a.at("nodes")) {
            auto r = n.get<ipam::NodeRecord>();
            nodes[r.name] = r;
        }
        for (auto &[key, t] : tunnels_) {
            t.used = false;
        }
        Rib &rib = routes_.rib();
        rib.begin_resync(RouteSource::kOverlay);
        size_t count = 0;
        std::vector<std::string> errors;
        for (const auto &jr : a.at("routes")) {
            auto prefix = parse_any_prefix(jr.at("prefix").get<std::string>());
            auto via = parse_via(jr.at("via").get<std::string>());
            auto next_hop = net::IpAddr::parse(jr.at("next_hop").get<std::string>());
            const std::string node = jr.at("node").get<std::string>();
            if (!prefix || !via || !next_hop) {
                errors.push_back("bad route " + jr.dump());
                continue;
            }
            try {
                RouteTarget target = *via == ipam::OverlayRoute::Via::kNative
                                         ? RouteTarget::via({*next_hop})
                                         : tunnel_target(*via, node, *next_hop, nodes, *up);
                rib.set(*prefix, RouteSource::kOverlay, std::move(target));
                count++;
            } catch (const std::exception &e) {
                errors.push_back(prefix_str(*prefix) + " via " + node + ": " + e.what());
            }
        }
        rib.end_resync(RouteSource::kOverlay);
        for (const auto &[prefix, why] : routes_.publish()) {
            errors.push_back(prefix_str(prefix) + ": " + why);
            count--;
        }
        // Tunnels no route points at any more: the routes are gone from every
        // worker (publish waited), the next hops go after one more grace period.
        for (auto it = tunnels_.begin(); it != tunnels_.end();) {
            if (!it->second.used) {
                retire(it->second);
                it = tunnels_.erase(it);
            } else {
                ++it;
            }
        }
        swap_decap(a, nodes);
        applied_revision_ = a.value("revision", int64_t{-1});
        route_count_ = count;
        applies_++;
        last_apply_ms_ = a.value("read_ms", int64_t{0});
        problems_ = a.value("problems", json::array());
        refused_ = a.value("refused", json::array());
        snapshot_nodes_ = a.at("nodes");
        snapshot_routes_ = a.at("routes");
        if (!errors.empty()) {
            apply_errors_ += errors.size();
            for (const auto &e : errors) {
                problems_.push_back(e);
            }
        }
        return json{{"routes", count}, {"errors", errors}};
    }

    RouteTarget tunnel_target(ipam::OverlayRoute::Via via, const std::string &node,
                              const net::IpAddr &dst,
                              const std::map<std::string, ipam::NodeRecord> &nodes,
                              const PortsModule::Uplink &up) {
        const bool v6 = dst.family() == net::Family::kIp6;
        auto it = nodes.find(node);
        if (it == nodes.end()) {
            throw std::runtime_error("node not in the registry");
        }
        net::MacAddr dst_mac{};
        if (via == ipam::OverlayRoute::Via::kVxlan) {
            dst_mac = it->second.vtep_mac(dst.family());
        }
        TunnelKey key{node, via, dst, dst_mac, settings_};
        auto found = tunnels_.find(key);
        if (found == tunnels_.end()) {
            found = tunnels_.emplace(key, make_tunnel(key, v6, up)).first;
        }
        found->second.used = true;
        const char *owner = via == ipam::OverlayRoute::Via::kVxlan ? "vxlan" : "ipip";
        return RouteTarget::owned(found->second.nh, owner, "node", node + " " + dst.str());
    }

    TunnelState make_tunnel(const TunnelKey &key, bool v6, const PortsModule::Uplink &up) {
        const NodeConfig &cfg = ctx_.cfg();
        const bool vxlan = key.via == ipam::OverlayRoute::Via::kVxlan;
        if (v6 ? !cfg.node_ip6 : !cfg.node_ip4) {
            throw std::runtime_error("this node has no address of that family");
        }
        if (!vxlan && v6) {
            throw std::runtime_error("IP-in-IP carries IPv4 only");
        }
        ov::Tunnel t{};
        t.type = vxlan ? ov::TunnelType::kVxlan : ov::TunnelType::kIpip;
        t.v6 = v6;
        if (v6) {
            t.src6 = cfg.node_ip6->addr.bytes();
            t.dst6 = key.dst.v6().bytes();
        } else {
            t.src4 = cfg.node_ip4->addr.be().raw();
            t.dst4 = key.dst.v4().be().raw();
        }
        const auto &mine = v6 ? self_->vtep_mac6 : self_->vtep_mac4;
        if (vxlan) {
            t.inner_src_mac = mine->bytes();
            t.inner_dst_mac = key.dst_mac.bytes();
        }
        t.vni = vni_;
        t.dst_port = vxlan_port_;
        TunnelState s;
        s.underlay = underlay_for(key.dst);
        t.underlay_nh = neighbors_.via_ref(s.underlay);
        s.index = tables_.tunnel_alloc(t);
        if (s.index == UINT32_MAX) {
            neighbors_.via_unref(s.underlay);
            throw std::runtime_error("the tunnel table is full");
        }
        dp::NextHop nh{};
        nh.kind = vxlan ? ov::vxlan_nh_kind() : ov::ipip_nh_kind();
        nh.port = up.port;
        nh.src_mac = up.mac.bytes();
        const uint16_t overhead = !vxlan ? ov::kIpipOverhead
                                  : v6   ? ov::kVxlanOverhead6
                                         : ov::kVxlanOverhead4;
        nh.mtu = static_cast<uint16_t>(up.mtu - overhead);
        if (const auto &want = v6 ? mtu6_ : mtu4_; vxlan && want && *want < nh.mtu) {
            nh.mtu = *want;  // larger than the uplink allows: the uplink's
        }
        nh.group = s.index;
        s.nh = ctx_.tables().nh_alloc(nh);
        if (s.nh == dp::kNhInvalid) {
            tables_.tunnel_free(s.index);
            neighbors_.via_unref(s.underlay);
            throw std::runtime_error("the next-hop table is full");
        }
        return s;
    }

    // Where the outer packets to a node go first: the node itself when it is
    // on our subnet, else the next hop of the static or BGP route that covers
    // its address (the ToR between node subnets: CrossSubnet's other case).
    // Chosen when the tunnel is made; a later change of that route is not
    // followed (the tunnel is remade when the node's record changes).
    net::IpAddr underlay_for(const net::IpAddr &dst) const {
        const NodeConfig &cfg = ctx_.cfg();
        const bool v6 = dst.family() == net::Family::kIp6;
        if (v6 ? cfg.node_ip6 && cfg.node_ip6->subnet().contains(dst.v6())
               : cfg.node_ip4 && cfg.node_ip4->subnet().contains(dst.v4())) {
            return dst;
        }
        std::optional<net::IpAddr> best;
        int best_len = -1;
        for (const auto &r : routes_.rib().list(std::nullopt, dst.family())) {
            if (!r.active || r.target.kind != RouteTarget::Kind::kVia || r.target.vias.empty()) {
                continue;
            }
            int len = -1;
            if (v6) {
                const auto &p = std::get<net::Prefix6>(r.prefix);
                len = p.contains(dst.v6()) ? p.len : -1;
            } else {
                const auto &p = std::get<net::Prefix4>(r.prefix);
                len = p.contains(dst.v4()) ? p.len : -1;
            }
            if (len > best_len) {
                best_len = len;
                best = r.target.vias.front();
            }
        }
        if (!best) {
            throw std::runtime_error("no route to the node's address " + dst.str());
        }
        return *best;
    }

    // No route points at t any more (published): its next hop and entry go
    // after a grace period; the underlay reference now (the neighbors module
    // frees its next hop after a grace period of its own).
    void retire(const TunnelState &t) {
        ctx_.defer([&tables = ctx_.tables(), &ot = tables_, nh = t.nh, index = t.index] {
            tables.nh_free(nh);
            ot.tunnel_free(index);
        });
        neighbors_.via_unref(t.underlay);
    }

    void swap_decap(const json &a, const std::map<std::string, ipam::NodeRecord> &nodes) {
        auto d = std::make_unique<ov::DecapConfig>();
        d->vni = vni_;
        d->port = vxlan_port_;
        const NodeConfig &cfg = ctx_.cfg();
        for (const auto &p : a.at("pools")) {
            auto c = ipam::Cidr::parse(p.at("cidr").get<std::string>());
            if (!c) {
                continue;
            }
            if (c->is_v4()) {
                d->pools4.push_back(c->v4());
                d->vxlan4 = d->vxlan4 || p.at("vxlan").get<bool>();
                d->ipip = d->ipip || p.at("ipip").get<bool>();
            } else {
                d->pools6.push_back(c->v6());
                d->vxlan6 = d->vxlan6 || p.at("vxlan").get<bool>();
            }
        }
        d->vxlan4 = d->vxlan4 && cfg.node_ip4.has_value();
        d->ipip = d->ipip && cfg.node_ip4.has_value();
        d->vxlan6 = d->vxlan6 && cfg.node_ip6.has_value();
        if (self_->vtep_mac4) {
            d->vtep_mac4 = self_->vtep_mac4->bytes();
        }
        if (self_->vtep_mac6) {
            d->vtep_mac6 = self_->vtep_mac6->bytes();
        }
        std::vector<uint32_t> peers4;
        std::vector<std::array<uint8_t, 16>> peers6;
        for (const auto &[name, n] : nodes) {
            if (name == self_->name) {
                continue;
            }
            if (n.ipv4) {
                peers4.push_back(n.ipv4->addr.v4().be().raw());
            }
            if (n.ipv6) {
                peers6.push_back(n.ipv6->addr.v6().bytes());
            }
        }
        d->peers4.assign(peers4);
        d->peers6.assign(peers6);
        if (const ov::DecapConfig *old = tables_.swap_decap(d.release())) {
            ctx_.defer([old] { delete old; });
        }
    }

    json node_list() const {
        std::map<std::string, json> by_node;
        for (const auto &n : snapshot_nodes_) {
            json j = n;
            j["routes"] = 0;
            j["via"] = json::object();
            by_node[n.at("metadata").at("name").get<std::string>()] = j;
        }
        for (const auto &r : snapshot_routes_) {
            auto it = by_node.find(r.at("node").get<std::string>());
            if (it != by_node.end()) {
                it->second["routes"] = it->second["routes"].get<int>() + 1;
                it->second["via"][r.at("via").get<std::string>()] = true;
            }
        }
        json list = json::array();
        for (auto &[name, j] : by_node) {
            j["self"] = self_ && name == self_->name;
            list.push_back(j);
        }
        return json{{"nodes", list}, {"refused", refused_}, {"revision", applied_revision_}};
    }

    ControlContext &ctx_;
    PortsModule &ports_;
    NeighborsModule &neighbors_;
    RoutesModule &routes_;
    IpamModule &ipam_;
    const OverlayConfig ocfg_;
    // [control thread] the VXLAN settings in use (overlay.vxlan), and the last overlay.apply's
    // arguments to apply them again with.
    uint32_t vni_ = ocfg_.vni;
    uint16_t vxlan_port_ = ocfg_.vxlan_port;
    std::optional<uint16_t> mtu4_, mtu6_;
    uint32_t settings_ = 0;
    json last_args_;
    ov::OverlayTables tables_;
    // Set in start() (main thread, before the sync runs), read-only after.
    std::optional<ipam::NodeRecord> self_;

    // [sync thread]
    json last_sent_;
    // [sync thread] writes, describe_node reads: guarded
    mutable std::mutex sync_mu_;
    json sync_status_;

    // [control thread]
    std::map<TunnelKey, TunnelState> tunnels_;
    int64_t applied_revision_ = -1;
    size_t route_count_ = 0;
    uint64_t applies_ = 0;
    uint64_t apply_errors_ = 0;
    int64_t last_apply_ms_ = 0;
    json problems_ = json::array();
    json refused_ = json::array();
    json snapshot_nodes_ = json::array();
    json snapshot_routes_ = json::array();
};

net::MacAddr parse_vtep_mac(const config::Field &f) {
    constexpr std::string_view kExpected = "a unicast MAC address like \"66:a1:b2:c3:d4:e5\"";
    auto mac = net::MacAddr::parse(f.string(kExpected));
    if (!mac || mac->is_multicast() || mac->is_zero()) {
        f.fail_expected(kExpected);
    }
    return *mac;
}

OverlayConfig parse_overlay(const config::Object &o, const NodeConfig &) {
    OverlayConfig c;
    if (auto f = o.get("vni")) {
        c.vni = f->integer<uint32_t>(1, (1u << 24) - 1);
    }
    if (auto f = o.get("vxlan_port")) {
        c.vxlan_port = f->integer<uint16_t>(1, 65535);
    }
    if (auto f = o.get("vtep_mac4")) {
        c.vtep_mac4 = parse_vtep_mac(*f);
    }
    if (auto f = o.get("vtep_mac6")) {
        c.vtep_mac6 = parse_vtep_mac(*f);
    }
    if (auto f = o.get("labels")) {
        if (!f->json().is_object()) {
            f->fail_expected("an object of label names to string values");
        }
        for (const auto &[k, v] : f->json().items()) {
            c.labels[k] = config::Field(v, f->path() + "." + k).string("a string label value");
        }
    }
    return c;
}

}  // namespace

FWD_ON_LOAD(register_module<OverlayModule>({RoutesModule::kName, NeighborsModule::kName,
                                            PortsModule::kName, IpamModule::kName}));
FWD_ON_LOAD(register_config_section<OverlayConfig>(
    "overlay", {"vni", "vxlan_port", "vtep_mac4", "vtep_mac6", "labels"}, parse_overlay));

}  // namespace fwd::control
