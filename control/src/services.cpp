// The "services" module: the Kubernetes Services this node answers for, as
// kube-proxy programs a node, followed from the cluster store (issue 15).
//
//   IPAM sync thread (a follower of its rounds, ipam_module.hpp): lists the
//     Services and EndpointSlices of the store (fwd/svc/store.hpp), compiles
//     this node's table (fwd/svc/table.hpp: frontends for ClusterIPs,
//     NodePorts on the node's addresses, externalIPs, LoadBalancer ingress;
//     backends with their conditions) and, when it changed, hands it to the
//     control thread (internal op services.apply).
//   control thread (services.apply): builds the datapath's table
//     (fwd/dp/service_table.hpp) and swaps it into every worker's slot
//     "services"; the old one is deleted after a grace period.
// Ops: services.apply (internal), service.frontends (what this node serves:
// frontends, backends, flags, the live DNAT flows of each; the notes of the
// compile: services not served, slices waiting for their service,
// conflicts). node.get shows "services".
//
// The NAT stages (dpdk-fwd/src/stages/nat.cpp) read the published table once
// per burst: new flows to a frontend are destination-NATed to a backend,
// replies reverse-translated. Their connection table exists whenever this
// module publishes anything: both need the cluster store (an ipam section
// with its sync), and the nat module's start() requires the table then.
#include "fwd/dp/service_table.hpp"

#include <netinet/in.h>
#include <rte_byteorder.h>

#include <rte_cycles.h>

#include <map>
#include <mutex>
#include <tuple>

#include "fwd/control/conntrack_module.hpp"
#include "fwd/control/ipam_module.hpp"
#include "fwd/dp/nat.hpp"
#include "fwd/svc/store.hpp"
#include "fwd/svc/table.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;
namespace dsvc = dp::svc;

namespace {

uint8_t ip_proto(svc::Protocol p) {
    switch (p) {
        case svc::Protocol::kTcp:
            return IPPROTO_TCP;
        case svc::Protocol::kUdp:
            return IPPROTO_UDP;
        case svc::Protocol::kSctp:
            return IPPROTO_SCTP;
    }
    return 0;
}

// svc::to_string(Protocol)'s inverse, for the frontends the sync hands over as JSON.
std::optional<svc::Protocol> parse_protocol(const std::string &s) {
    for (auto p : {svc::Protocol::kTcp, svc::Protocol::kUdp, svc::Protocol::kSctp}) {
        if (svc::to_string(p) == s) {
            return p;
        }
    }
    return std::nullopt;
}

std::array<uint8_t, 16> addr_bytes(const net::IpAddr &a) {
    std::array<uint8_t, 16> b{};
    if (a.family() == net::Family::kIp4) {
        const uint32_t be = a.v4().be().raw();
        std::memcpy(b.data(), &be, 4);
    } else {
        b = a.v6().bytes();
    }
    return b;
}

// The compiled table as the JSON the internal op carries (and service.frontends shows).
json table_json(const svc::ServiceTable &t) {
    json fes = json::array();
    for (const auto &f : t.frontends) {
        json bes = json::array();
        for (const auto &b : f.backends) {
            bes.push_back({{"addr", b.addr.str()},
                           {"port", b.port},
                           {"node", b.node},
                           {"local", b.local},
                           {"ready", b.conditions.ready},
                           {"serving", b.conditions.serving},
                           {"terminating", b.conditions.terminating},
                           {"new_flows", b.for_new_flows}});
        }
        fes.push_back({{"kind", svc::to_string(f.kind)},
                       {"addr", f.addr.str()},
                       {"protocol", svc::to_string(f.protocol)},
                       {"port", f.port},
                       {"service", f.service},
                       {"port_name", f.port_name},
                       {"affinity_timeout", f.affinity ? json(f.affinity_timeout) : json()},
                       {"local_only", f.local_only},
                       {"keep_source", f.keep_source},
                       {"no_backend", svc::to_string(f.no_backend)},
                       {"backends", bes}});
    }
    json notes = json::array();
    for (const auto &n : t.notes) {
        notes.push_back(n.subject + ": " + n.what);
    }
    return json{{"frontends", fes}, {"notes", notes}};
}

std::vector<dsvc::FrontendSpec> specs_of(const json &frontends) {
    std::vector<dsvc::FrontendSpec> out;
    for (const auto &f : frontends) {
        const auto addr = net::IpAddr::parse(f.at("addr").get<std::string>());
        const auto proto = parse_protocol(f.at("protocol").get<std::string>());
        if (!addr || !proto) {
            throw std::invalid_argument("services.apply: bad frontend " + f.dump());
        }
        dsvc::FrontendSpec s;
        s.v6 = addr->family() == net::Family::kIp6;
        s.addr = addr_bytes(*addr);
        s.proto = ip_proto(*proto);
        s.port = f.at("port").get<uint16_t>();
        const std::string kind = f.at("kind").get<std::string>();
        const std::string nb = f.at("no_backend").get<std::string>();
        s.flags = static_cast<uint8_t>(
            (f.at("affinity_timeout").is_null() ? 0 : dsvc::kFeAffinity) |
            (f.at("local_only").get<bool>() ? dsvc::kFeLocalOnly : 0) |
            (f.at("keep_source").get<bool>() ? dsvc::kFeKeepSource : 0) |
            (nb == "reject" ? dsvc::kFeReject : 0) | (nb == "drop" ? dsvc::kFeDrop : 0) |
            (kind != "ClusterIP" ? dsvc::kFeExternal : 0));
        s.affinity_timeout_s =
            f.at("affinity_timeout").is_null() ? 0 : f.at("affinity_timeout").get<uint32_t>();
        for (const auto &b : f.at("backends")) {
            const auto ba = net::IpAddr::parse(b.at("addr").get<std::string>());
            if (!ba || ba->family() != addr->family()) {
                throw std::invalid_argument("services.apply: bad backend " + b.dump());
            }
            s.backends.push_back(
                dsvc::Backend{addr_bytes(*ba), rte_cpu_to_be_16(b.at("port").get<uint16_t>()),
                              static_cast<uint8_t>(
                                  (b.at("local").get<bool>() ? dsvc::kBeLocal : 0) |
                                  (b.at("ready").get<bool>() ? dsvc::kBeReady : 0) |
                                  (b.at("serving").get<bool>() ? dsvc::kBeServing : 0) |
                                  (b.at("terminating").get<bool>() ? dsvc::kBeTerminating : 0))});
            s.for_new.push_back(b.at("new_flows").get<bool>());
        }
        out.push_back(std::move(s));
    }
    return out;
}

// The live DNAT flows of the connection table by their frontend (the original
// tuple's destination address, protocol and port: a flow's NatInfo::service
// is an index into the table version that made it, not a stable name).
using FrontendKey = std::tuple<uint8_t, std::array<uint8_t, 16>, uint8_t, uint16_t>;

std::map<FrontendKey, uint64_t> dnat_flows(dp::ct::ConnTable &t) {
    std::map<FrontendKey, uint64_t> n;
    std::vector<dp::ct::FlowInfo> buf(4096);
    const uint64_t now = rte_rdtsc();
    for (uint32_t cur = 0; cur < t.capacity();) {
        const size_t got = t.snapshot(&cur, {}, now, buf.data(), buf.size());
        for (size_t i = 0; i < got; i++) {
            const dp::ct::FlowInfo &f = buf[i];
            if ((f.nat.flags & dp::nat::kNatDnat) && f.expires_in_ms != 0) {
                n[{f.orig.family, f.orig.dst, f.orig.proto, f.orig.dport.host()}]++;
            }
        }
    }
    return n;
}

class ServicesModule final : public Module {
  public:
    static constexpr const char *kName = "services";

    explicit ServicesModule(ControlContext &ctx)
        : ctx_(ctx), ipam_(ctx.need<IpamModule>()), conntrack_(ctx.need<ConntrackModule>()) {
        for (dp::Worker *w : ctx.workers()) {
            w->set_slot(dsvc::worker_slot(), &tables_);
        }
        ctx.add_op({.name = "services.apply",
                    .args = {"revision", "frontends", "notes", "refused"},
                    .fn = [this](const json &a) { return apply(a); },
                    .internal = true});
        ctx.add_op({.name = "service.frontends", .args = {}, .fn = [this](const json &) {
                        return frontends();
                    }});
    }

    ~ServicesModule() override {
        for (dp::Worker *w : ctx_.workers()) {
            w->set_slot(dsvc::worker_slot(), nullptr);
        }
    }

    void start() override {
        IpamSync *sync = ipam_.sync();
        if (sync == nullptr) {
            return;  // no cluster store: no services
        }
        node_.name = ctx_.cfg().node_name;
        if (ctx_.cfg().node_ip4) {
            node_.addresses.push_back(net::IpAddr(ctx_.cfg().node_ip4->addr));
        }
        if (ctx_.cfg().node_ip6) {
            node_.addresses.push_back(net::IpAddr(ctx_.cfg().node_ip6->addr));
        }
        sync->follow("services", [this](ipam::Store &s, ipam::Allocator &, int64_t rev) {
            sync_round(s, rev);
        });
    }

    void stop() override {
        if (const dsvc::ServiceTable *old = tables_.swap(nullptr)) {
            ctx_.defer([old] { delete old; });
        }
        ctx_.reclaim();
    }

    void describe_node(json &out) const override {
        std::lock_guard g(mu_);
        out["services"] = json{{"revision", revision_},
                               {"frontends", shown_.value("frontends", json::array()).size()},
                               {"notes", shown_.value("notes", json::array()).size()},
                               {"refused", refused_.size()},
                               {"applies", applies_}};
    }

  private:
    // The sync thread.
    void sync_round(ipam::Store &store, int64_t rev) {
        svc::ServiceRegistry registry(store);
        auto l = registry.list();
        json desired = table_json(svc::compile(l.services, l.slices, node_));
        json refused = json::array();
        for (const auto &[key, why] : l.refused) {
            refused.push_back({{"key", key}, {"error", why}});
        }
        desired["refused"] = refused;
        if (desired != last_sent_) {
            json args = desired;
            args["revision"] = rev;
            ctx_.call("services.apply", args);
            last_sent_ = std::move(desired);
        }
    }

    // The control thread.
    json apply(const json &a) {
        auto next = std::make_unique<dsvc::ServiceTable>(specs_of(a.at("frontends")));
        const size_t n = next->size();
        if (const dsvc::ServiceTable *old = tables_.swap(next.release())) {
            ctx_.defer([old] { delete old; });
        }
        std::lock_guard g(mu_);
        shown_ = json{{"frontends", a.at("frontends")}, {"notes", a.at("notes")}};
        refused_ = a.at("refused");
        revision_ = a.value("revision", int64_t{-1});
        applies_++;
        return json{{"frontends", n}};
    }

    json frontends() const {
        std::lock_guard g(mu_);
        json out = shown_;
        if (dp::ct::ConnTable *t = conntrack_.table()) {
            const auto flows = dnat_flows(*t);
            for (json &f : out["frontends"]) {
                const auto addr = net::IpAddr::parse(f.at("addr").get<std::string>());
                const auto proto = parse_protocol(f.at("protocol").get<std::string>());
                if (!addr || !proto) {
                    continue;
                }
                const auto it =
                    flows.find({static_cast<uint8_t>(addr->family() == net::Family::kIp6 ? 6 : 4),
                                addr_bytes(*addr), ip_proto(*proto), f.at("port").get<uint16_t>()});
                f["flows"] = it == flows.end() ? 0 : it->second;
            }
        }
        out["refused"] = refused_;
        out["revision"] = revision_;
        return out;
    }

    ControlContext &ctx_;
    IpamModule &ipam_;
    ConntrackModule &conntrack_;
    dsvc::ServiceTables tables_;
    svc::NodeInfo node_;
    json last_sent_;  // [sync thread]
    mutable std::mutex mu_;
    json shown_ = json{{"frontends", json::array()}, {"notes", json::array()}};
    json refused_ = json::array();
    int64_t revision_ = -1;
    uint64_t applies_ = 0;
};

}  // namespace

FWD_ON_LOAD(register_module<ServicesModule>({IpamModule::kName, ConntrackModule::kName}));

}  // namespace fwd::control
