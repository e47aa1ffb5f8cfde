// The "nat" module: natOutgoing (fwd/dp/nat.hpp) on this node.
//
//   IPAM sync thread (a follower of its rounds, ipam_module.hpp): reads
//     every pool of both families (cidr, natOutgoing, disabled, whether its
//     only use is LoadBalancer) and, when that changed, hands the list to
//     the control thread (internal op nat.apply).
//   control thread (nat.apply): builds an immutable NatConfig (the pool
//     table and the port range), publishes it with a release store and
//     deletes the old one after a grace period.
//
// With an ipam section only (the pools and the services live in the store):
// start() asks the conntrack module for its table and fills every worker's
// "nat" slot, so the table exists whenever the services module can publish
// a service table (it follows the same sync). No ipam section: no pools, no
// services, no table; the stages skip.
//
// The "nat" section: {"port_range": "1024-65535", "affinity_capacity":
// 65536}: port_range is FelixConfiguration natPortRange ("lo-hi" or
// "lo:hi"; unset, Linux masquerade's choice); affinity_capacity the clients
// sessionAffinity ClientIP remembers (one entry per client and frontend,
// 168 bytes each, made with the conntrack table). node.get shows "nat"
// (with the affinity entries held); stats the affinity results.
#include "fwd/dp/nat.hpp"

#include <memory>
#include <mutex>

#include "api_args.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/control/conntrack_module.hpp"
#include "fwd/control/ipam_module.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;
namespace nat = dp::nat;

namespace {

struct NatSectionConfig {
    nat::PortRange ports;  // lo 0: unset
    uint32_t affinity_capacity = 65536;
};

NatSectionConfig parse_nat(const config::Object &o, const NodeConfig &) {
    NatSectionConfig c;
    if (auto f = o.get("port_range")) {
        constexpr std::string_view kExpected =
            "a port range \"lo-hi\" (or \"lo:hi\") with 1 <= lo <= hi <= 65535";
        const std::string s = f->string(kExpected);
        const size_t sep = s.find_first_of("-:");
        auto num = [&](std::string_view v) {
            if (v.empty() || v.size() > 5 || v.find_first_not_of("0123456789") != v.npos) {
                f->fail_expected(kExpected);
            }
            return std::stoul(std::string(v));
        };
        if (sep == std::string::npos) {
            f->fail_expected(kExpected);
        }
        const unsigned long lo = num(std::string_view(s).substr(0, sep));
        const unsigned long hi = num(std::string_view(s).substr(sep + 1));
        if (lo < 1 || lo > hi || hi > 65535) {
            f->fail_expected(kExpected);
        }
        c.ports = {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
    }
    if (auto f = o.get("affinity_capacity")) {
        c.affinity_capacity = f->integer<uint32_t>(1, dp::svc::kMaxAffinityCapacity);
    }
    return c;
}

class NatModule final : public Module {
  public:
    static constexpr const char *kName = "nat";

    explicit NatModule(ControlContext &ctx)
        : ctx_(ctx),
          ipam_(ctx.need<IpamModule>()),
          conntrack_(ctx.need<ConntrackModule>()),
          file_ports_(ctx.cfg().section<NatSectionConfig>("nat").ports),
          ports_(file_ports_),
          affinity_capacity_(ctx.cfg().section<NatSectionConfig>("nat").affinity_capacity),
          workers_(std::make_unique<nat::NatWorker[]>(std::max<size_t>(ctx.workers().size(), 1))) {
        ctx.add_op({.name = "nat.apply",
                    .args = {"pools", "revision"},
                    .fn = [this](const json &a) { return apply(a); },
                    .internal = true});
        // FelixConfiguration's natPortRange (felix_module.cpp): {"lo", "hi"}, or null for the
        // config file's.
        ctx.add_op({.name = "nat.ports",
                    .args = {"lo", "hi"},
                    .fn = [this](const json &a) { return set_ports(a); },
                    .internal = true});
    }

    ~NatModule() override {
        for (dp::Worker *w : ctx_.workers()) {
            w->set_slot(nat::worker_slot(), nullptr);
        }
        delete tables_.swap_config(nullptr);  // the workers are gone or have no slot
    }

    // After the ipam and conntrack modules' start, before the sync's thread runs.
    void start() override {
        IpamSync *sync = ipam_.sync();
        if (sync == nullptr) {
            return;  // no store, no pools: no natOutgoing
        }
        tables_.ct = &conntrack_.require();
        affinity_ = std::make_unique<dp::svc::AffinityTable>(affinity_capacity_);
        tables_.affinity = affinity_.get();
        const auto &ws = ctx_.workers();
        for (size_t i = 0; i < ws.size(); i++) {
            workers_[i].tables = &tables_;
            workers_[i].counters = &conntrack_.counters(static_cast<unsigned>(i));
            ws[i]->set_slot(nat::worker_slot(), &workers_[i]);
        }
        enabled_ = true;
        sync->follow(
            "nat", [this](ipam::Store &, ipam::Allocator &a, int64_t rev) { sync_round(a, rev); });
    }

    void stop() override {
        if (const nat::NatConfig *old = tables_.swap_config(nullptr)) {
            ctx_.defer([old] { delete old; });
        }
        ctx_.reclaim();
    }

    void describe_node(json &out) const override {
        out["nat"] = json{{"enabled", enabled_},
                          {"pools", pools_},
                          {"port_range", ports_.lo == 0 ? json() : json(range_str())},
                          {"affinity", affinity_ ? json{{"capacity", affinity_->capacity()},
                                                        {"entries", affinity_->count()}}
                                                 : json()},
                          {"revision", revision_}};
    }

    void counters(json &out) const override {
        if (enabled_) {
            const json aff = sum_results(
                dp::svc::kAffinityResultInfo, std::max<size_t>(ctx_.workers().size(), 1),
                [&](size_t w, size_t r) {
                    return workers_[w].affinity.get(static_cast<dp::svc::AffinityResult>(r));
                });
            out["nat"] = json{{"applies", applies_}, {"pools", pools_.size()}, {"affinity", aff}};
        }
    }

  private:
    std::string range_str() const {
        return std::to_string(ports_.lo) + "-" + std::to_string(ports_.hi);
    }

    // [sync thread]
    void sync_round(ipam::Allocator &alloc, int64_t rev) {
        json pools = json::array();
        for (const auto &p : alloc.pools()) {
            const bool lb_only = p.allows(ipam::AllowedUse::kLoadBalancer) &&
                                 !p.allows(ipam::AllowedUse::kWorkload) &&
                                 !p.allows(ipam::AllowedUse::kTunnel);
            pools.push_back({{"cidr", p.cidr.str()},
                             {"nat_outgoing", p.nat_outgoing},
                             {"disabled", p.disabled},
                             {"load_balancer_only", lb_only}});
        }
        if (pools != last_sent_) {
            ctx_.call("nat.apply", json{{"pools", pools}, {"revision", rev}});
            last_sent_ = std::move(pools);
        }
    }

    // [control thread]
    json set_ports(const json &a) {
        nat::PortRange r = file_ports_;
        if (a.contains("lo") && !a["lo"].is_null()) {
            const auto lo = a.at("lo").get<uint32_t>(), hi = a.at("hi").get<uint32_t>();
            if (lo < 1 || lo > hi || hi > 65535) {
                bad("nat.ports: bad range " + a.dump());
            }
            r = {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
        }
        if (r.lo != ports_.lo || r.hi != ports_.hi) {
            ports_ = r;
            if (applies_ > 0) {  // the pools are known: publish them with the new range
                apply(json{{"pools", pools_}, {"revision", revision_}});
            }
        }
        return json{{"port_range", ports_.lo == 0 ? json() : json(range_str())}};
    }

    json apply(const json &a) {
        auto cfg = std::make_unique<nat::NatConfig>();
        cfg->ports = ports_;
        for (const auto &p : a.at("pools")) {
            auto c = ipam::Cidr::parse(p.at("cidr").get<std::string>());
            if (!c) {
                bad("nat.apply: bad pool " + p.dump());
            }
            const uint8_t flags =
                (p.value("nat_outgoing", false) ? nat::kPoolNatOutgoing : 0) |
                (p.value("disabled", false) ? nat::kPoolDisabled : 0) |
                (p.value("load_balancer_only", false) ? nat::kPoolLoadBalancerOnly : 0);
            if (c->is_v4()) {
                cfg->pools.add(c->v4(), flags);
            } else {
                cfg->pools.add(c->v6(), flags);
            }
        }
        if (const nat::NatConfig *old = tables_.swap_config(cfg.release())) {
            ctx_.defer([old] { delete old; });
        }
        pools_ = a.at("pools");
        revision_ = a.value("revision", int64_t{-1});
        applies_++;
        return json{{"pools", pools_.size()}};
    }

    ControlContext &ctx_;
    IpamModule &ipam_;
    ConntrackModule &conntrack_;
    const nat::PortRange file_ports_;  // the config file's
    nat::PortRange ports_;  // [control thread] in use: FelixConfiguration's or the file's
    const uint32_t affinity_capacity_;
    std::unique_ptr<dp::svc::AffinityTable> affinity_;  // [C] made in start()
    nat::NatTables tables_;
    std::unique_ptr<nat::NatWorker[]> workers_;  // by worker index
    bool enabled_ = false;                       // set in start(), read-only after

    json last_sent_;  // [sync thread]

    // [control thread]
    json pools_ = json::array();
    int64_t revision_ = -1;
    uint64_t applies_ = 0;
};

}  // namespace

FWD_ON_LOAD(register_module<NatModule>({IpamModule::kName, ConntrackModule::kName}));
FWD_ON_LOAD(register_config_section<NatSectionConfig>("nat", {"port_range", "affinity_capacity"},
                                                      parse_nat));

}  // namespace fwd::control
