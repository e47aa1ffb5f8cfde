// The "policy" module: Calico network policy enforced on this node (issue 16).
//
//   builder thread (its own, so the control thread keeps serving while a large rule set
//     compiles): checks the cluster store's revision when the store's change notice comes (the
//     embedded store: a watcher thread waits on inotify, so a write is built at once rather than
//     at the next poll) and every policy.sync_ms (etcd, and a fallback), and runs at once when
//     kicked (an endpoint came or went, policy.sync). When the revision moved, the local
//     endpoints changed or the last build failed, it reads the policies, namespaces and pod
//     records (fwd/policy/store.hpp) and IPAM's allocations, adds this node's endpoints (their
//     pod by the CNI owner's namespace and pod, their addresses as the dataplane has them),
//     builds the PolicySet (eval.hpp), compiles it for the local endpoints (compile.hpp) and
//     builds the rte_acl contexts (dp::PolicyRules, acl.hpp). The result waits for the control
//     thread; a failure (store unreachable, a rule past the compiler's limits, rte_acl
//     refusing) is counted and kept as last_error, and the last good build stays enforced.
//   control thread: publishes a dp::policy::PolicyState (dp/policy.hpp) from the newest build
//     and the endpoints as they are now: each pod port's class and allowed sources (its own
//     addresses, cni.projectcalico.org/allowedSourcePrefixes), each pod next hop's class, the
//     classes' flags, defaultEndpointToHostAction and the failsafe ports. It publishes again on
//     every endpoint event (kAttached: the new pod's anti-spoofing is in place before its first
//     packet; kRemoving: a removed pod's goes after its interface fell silent), deletes the old
//     state after a grace period (its per-rule counts summed first, by policy and rule, so `fwdctl
//     policy stats` survives rebuilds) and writes the workers' Log records as rate-limited lines on
//     stderr.
//
// A port shared by several pods (the kernel pods' tap) tells no single endpoint: its entry
// allows the sources of every pod on it and has class 0, each source tagged with its pod's
// class (PolicyState::src4_cls / src6_cls), from which antispoof tells the sender's class; the
// next hops give each pod's class as a destination.
//
// Enabled with an ipam section (the policies live in the cluster store); without one, nothing
// is published and the stages pass everything.
//
// Ops: policy.status, policy.show {name}, policy.stats, policy.endpoint {pod}, and
// policy.sync {timeout_ms} (API thread: returns once a build started after the call is
// enforced). node.get shows "policy"; stats.control its counters.
//
// The "policy" section of the node config, with FelixConfiguration's names where Felix has the
// setting: defaultEndpointToHostAction ("Drop", "Return", "Accept"; Felix's default Drop),
// failsafeInboundHostPorts / failsafeOutboundHostPorts ([{"protocol": "TCP", "port": 22}, ...];
// Felix's defaults), sync_ms (store polling, default 100), log_rate / log_burst (Log lines a
// second, and the burst allowed above it; default 10 and 50).

#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "api_args.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/control/conntrack_module.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/ipam_module.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/nic_flows.hpp"
// acl.hpp before dp/policy.hpp: inside fwd::dp it names fwd::policy as policy::, which
// fwd::dp::policy hides once declared.
#include "fwd/dp/acl.hpp"
#include "fwd/dp/policy.hpp"
#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/open_store.hpp"
#include "fwd/policy/compile.hpp"
#include "fwd/policy/eval.hpp"
#include "fwd/policy/pod_network.hpp"
#include "fwd/policy/store.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;
namespace dpol = dp::policy;
using policy::Direction;

namespace {

// ---- the config section ----

struct PolicySectionConfig {
    dpol::HostAction to_host = dpol::HostAction::kDrop;
    // Felix's defaults (CALICO.md, "Policy").
    std::vector<dpol::FailsafePort> failsafe_in = {
        {IPPROTO_TCP, 22},   {IPPROTO_UDP, 68},   {IPPROTO_TCP, 179},
        {IPPROTO_TCP, 2379}, {IPPROTO_TCP, 2380}, {IPPROTO_TCP, 5473},
        {IPPROTO_TCP, 6443}, {IPPROTO_TCP, 6666}, {IPPROTO_TCP, 6667}};
    std::vector<dpol::FailsafePort> failsafe_out = {
        {IPPROTO_UDP, 53},   {IPPROTO_UDP, 67},   {IPPROTO_TCP, 179},
        {IPPROTO_TCP, 2379}, {IPPROTO_TCP, 2380}, {IPPROTO_TCP, 5473},
        {IPPROTO_TCP, 6443}, {IPPROTO_TCP, 6666}, {IPPROTO_TCP, 6667}};
    uint32_t sync_ms = 100;
    uint32_t log_rate = 10;
    uint32_t log_burst = 50;
};

std::string_view to_string(dpol::HostAction a) {
    switch (a) {
        case dpol::HostAction::kReturn:
            return "Return";
        case dpol::HostAction::kAccept:
            return "Accept";
        case dpol::HostAction::kDrop:
            break;
    }
    return "Drop";
}

std::vector<dpol::FailsafePort> parse_failsafe(const config::Field &f) {
    std::vector<dpol::FailsafePort> out;
    for (const auto &e : f.array(0, 64, "{\"protocol\": \"TCP\" or \"UDP\", \"port\": N}")) {
        const config::Object o(e, {"protocol", "port"});
        const std::string proto =
            o.need("protocol", "\"TCP\" or \"UDP\"").string("\"TCP\" or \"UDP\"");
        if (proto != "TCP" && proto != "UDP" && proto != "tcp" && proto != "udp") {
            o.need("protocol", "").fail_expected("\"TCP\" or \"UDP\"");
        }
        out.push_back(
            {static_cast<uint8_t>(proto == "TCP" || proto == "tcp" ? IPPROTO_TCP : IPPROTO_UDP),
             o.need("port", "a port number").integer<uint16_t>(1, 65535)});
    }
    return out;
}

PolicySectionConfig parse_policy(const config::Object &o, const NodeConfig &) {
    PolicySectionConfig c;
    if (auto f = o.get("defaultEndpointToHostAction")) {
        const std::string s = f->string("\"Drop\", \"Return\" or \"Accept\"");
        if (s == "Drop") {
            c.to_host = dpol::HostAction::kDrop;
        } else if (s == "Return") {
            c.to_host = dpol::HostAction::kReturn;
        } else if (s == "Accept") {
            c.to_host = dpol::HostAction::kAccept;
        } else {
            f->fail_expected("\"Drop\", \"Return\" or \"Accept\"");
        }
    }
    if (auto f = o.get("failsafeInboundHostPorts")) {
        c.failsafe_in = parse_failsafe(*f);
    }
    if (auto f = o.get("failsafeOutboundHostPorts")) {
        c.failsafe_out = parse_failsafe(*f);
    }
    if (auto f = o.get("sync_ms")) {
        c.sync_ms = f->integer<uint32_t>(10, 60'000);
    }
    if (auto f = o.get("log_rate")) {
        c.log_rate = f->integer<uint32_t>(0, 1'000'000);
    }
    if (auto f = o.get("log_burst")) {
        c.log_burst = f->integer<uint32_t>(1, 1'000'000);
    }
    return c;
}

json failsafe_json(const std::vector<dpol::FailsafePort> &v) {
    json out = json::array();
    for (const auto &p : v) {
        out.push_back({{"protocol", p.proto == IPPROTO_TCP ? "TCP" : "UDP"}, {"port", p.port}});
    }
    return out;
}

// ---- what the builder makes ----

// A local endpoint as the builder sees it.
struct LocalEndpoint {
    std::string id;
    std::string pod;  // "ns/name"; "" when its owner names no pod
    std::vector<net::IpAddr> ips;
    bool operator==(const LocalEndpoint &) const = default;
};

struct Build {
    uint64_t seq = 0;       // the kick count it started at
    int64_t revision = -1;  // the store's revision it read
    std::shared_ptr<const policy::PolicySet> set;
    std::shared_ptr<const policy::Compiled> compiled;
    std::shared_ptr<const dp::PolicyRules> rules;
    std::map<std::string, std::vector<ipam::Cidr>> allowed;  // pod -> allowedSourcePrefixes
    std::vector<std::string> notes;                          // records refused, bad annotations
    double list_s = 0, compile_s = 0, acl_s = 0;
    bool acl_reused = false;  // rules: the previous build's (nothing the classifier reads changed)
    uint64_t started_ms = 0;
};

// Whether two compilations make the same rte_acl rule set: PolicyRules::build reads the flat
// rules, each class's rule sets and each rule ref's action, nothing else.
bool same_acl(const policy::Compiled &a, const policy::Compiled &b) {
    if (a.refs.size() != b.refs.size() || a.classes.size() != b.classes.size()) {
        return false;
    }
    for (size_t i = 0; i < a.refs.size(); ++i) {
        if (a.refs[i].action != b.refs[i].action) {
            return false;
        }
    }
    for (size_t i = 0; i < a.classes.size(); ++i) {
        if (a.classes[i].ingress_set != b.classes[i].ingress_set ||
            a.classes[i].egress_set != b.classes[i].egress_set) {
            return false;
        }
    }
    for (size_t f = 0; f < 2; ++f) {
        for (size_t d = 0; d < 2; ++d) {
            if (a.rules[f][d].decide != b.rules[f][d].decide ||
                a.rules[f][d].log != b.rules[f][d].log) {
                return false;
            }
        }
    }
    return true;
}

// Everything the builder reads, as one PolicySet: the store's pods with IPAM's addresses,
// and this node's endpoints (a pod without a record yet is a bare one; the dataplane's
// addresses win over the record's, which may lag).
// read_revision: the revision of the listing, once read (-1 before: the store failed).
// cache: what the last listing decoded (the builder's own, across builds); prev: the last
// build made (null: none), whose rte_acl contexts are kept when the rules compile the same (a
// label or a pod that changes no rule, a policy of no local pod: no rte_acl build).
std::shared_ptr<Build> build_once(ipam::Store &store, const std::vector<LocalEndpoint> &local,
                                  int64_t &read_revision, policy::PolicyRegistry::ListCache &cache,
                                  const Build *prev) {
    auto b = std::make_shared<Build>();
    const auto t0 = std::chrono::steady_clock::now();
    policy::PolicyRegistry reg(store);
    auto listing = reg.list(&cache);
    ipam::Allocator alloc(store);
    const auto allocations = alloc.allocations();
    b->revision = listing.revision;
    read_revision = listing.revision;
    for (const auto &[key, why] : listing.refused) {
        b->notes.push_back(key + ": " + why);
    }
    std::vector<policy::Pod> pods = policy::with_allocations(listing.pods, allocations);
    std::map<std::string, size_t> by_key;
    for (size_t i = 0; i < pods.size(); i++) {
        by_key[pods[i].key()] = i;
    }
    std::vector<std::string> local_keys;
    for (const auto &e : local) {
        if (e.pod.empty()) {
            continue;
        }
        local_keys.push_back(e.pod);
        auto it = by_key.find(e.pod);
        if (it == by_key.end()) {
            policy::Pod p;
            p.ns = e.pod.substr(0, e.pod.find('/'));
            p.name = e.pod.substr(e.pod.find('/') + 1);
            it = by_key.emplace(e.pod, pods.size()).first;
            pods.push_back(std::move(p));
        }
        if (!e.ips.empty()) {
            pods[it->second].ips = e.ips;
        }
        try {
            b->allowed[e.pod] = policy::allowed_source_prefixes(pods[it->second]);
        } catch (const policy::PolicyError &err) {
            b->notes.push_back(std::string(err.what()) + " (no extra sources allowed)");
        }
    }
    auto set =
        std::make_shared<policy::PolicySet>(std::move(listing.policies), listing.namespaces, pods);
    const auto t1 = std::chrono::steady_clock::now();
    auto compiled = std::make_shared<policy::Compiled>(policy::compile(*set, local_keys));
    const auto t2 = std::chrono::steady_clock::now();
    if (prev != nullptr && same_acl(*prev->compiled, *compiled)) {
        b->rules = prev->rules;
        b->acl_reused = true;
    } else {
        b->rules = dp::PolicyRules::build(*compiled);
    }
    const auto t3 = std::chrono::steady_clock::now();
    b->set = std::move(set);
    b->compiled = std::move(compiled);
    auto secs = [](auto a, auto z) { return std::chrono::duration<double>(z - a).count(); };
    b->list_s = secs(t0, t1);
    b->compile_s = secs(t1, t2);
    b->acl_s = secs(t2, t3);
    return b;
}

std::string ip_str(uint8_t family, const std::array<uint8_t, 16> &a) {
    if (family == 4) {
        return net::Ip4Addr::from_host(static_cast<uint32_t>(a[0]) << 24 | a[1] << 16 | a[2] << 8 |
                                       a[3])
            .str();
    }
    return net::Ip6Addr::from_bytes(a.data()).str();
}

std::string proto_str(uint8_t p) {
    policy::Protocol x;
    x.number = p;
    return x.str();
}

// A per-rule count that outlives rule refs: by policy, direction and rule index.
using RuleKey = std::tuple<std::string, int, int>;

class PolicyModule final : public Module, public flows::PolicySource {
  public:
    static constexpr const char *kName = "policy";

    // ---- the flows module's view [C] ----
    uint64_t policy_generation() const override { return generation_.load(); }
    std::shared_ptr<const policy::Compiled> policy_compiled() const override {
        return live_ && live_->build ? live_->build->compiled : nullptr;
    }
    flows::LocalAddrs policy_endpoints() const override {
        flows::LocalAddrs out;
        each_endpoint(nullptr, std::string(), [&](const Endpoint &e) {
            const std::string pod = pod_of(e);
            if (!e.attached || pod.empty()) {
                return;
            }
            std::vector<net::IpAddr> ips;
            if (e.ipv4) {
                ips.emplace_back(*e.ipv4);
            }
            if (e.ipv6) {
                ips.emplace_back(*e.ipv6);
            }
            out.emplace_back(pod, std::move(ips));
        });
        return out;
    }

    explicit PolicyModule(ControlContext &ctx)
        : ctx_(ctx),
          endpoints_(ctx.need<EndpointsModule>()),
          ipam_(ctx.need<IpamModule>()),
          conntrack_(ctx.need<ConntrackModule>()),
          cfg_(ctx.cfg().section<PolicySectionConfig>("policy")),
          workers_(
              std::make_unique<dpol::PolicyWorker[]>(std::max<size_t>(ctx.workers().size(), 1))) {
        endpoints_.subscribe(
            [this](EndpointsModule::Event ev, const Endpoint &e) { on_endpoint(ev, e); });
        ctx.add_op(
            {.name = "policy.status", .args = {}, .fn = [this](const json &) { return status(); }});
        ctx.add_op({.name = "policy.show", .args = {"name"}, .fn = [this](const json &a) {
                        return show(a);
                    }});
        ctx.add_op(
            {.name = "policy.stats", .args = {}, .fn = [this](const json &) { return stats(); }});
        ctx.add_op({.name = "policy.endpoint", .args = {"pod"}, .fn = [this](const json &a) {
                        return endpoint_policy(a);
                    }});
        ctx.add_op({.name = "policy.sync",
                    .args = {"timeout_ms"},
                    .fn = [this](const json &a) { return sync(a); },
                    .thread = OpDef::Thread::kApi});
    }

    ~PolicyModule() override {
        stop_builder();
        for (dp::Worker *w : ctx_.workers()) {
            w->set_slot(dpol::worker_slot(), nullptr);
        }
        delete tables_.swap_state(nullptr);  // the workers are gone or have no slot
    }

    // Main thread, before the workers run: the conntrack table and the workers' slots.
    void start() override {
        if (ipam_.sync() == nullptr) {
            return;  // no cluster store: no policies
        }
        store_ = ipam::open_store(ctx_.cfg().ipam->store);
        try {
            notifier_ = ipam::open_notifier(ctx_.cfg().ipam->store);
        } catch (const std::exception &e) {
            log::warn("policy: no change notices from the store, polling every {} ms: {}",
                      cfg_.sync_ms, e.what());
        }
        tables_.ct = &conntrack_.require();
        const auto &ws = ctx_.workers();
        for (size_t i = 0; i < ws.size(); i++) {
            workers_[i].tables = &tables_;
            workers_[i].counters = &conntrack_.counters(static_cast<unsigned>(i));
            workers_[i].index = static_cast<unsigned>(i);
            ws[i]->set_slot(dpol::worker_slot(), &workers_[i]);
        }
        enabled_ = true;
        tokens_ = cfg_.log_burst;
        last_refill_ms_ = ControlContext::now_ms();
    }

    void online() override {
        if (enabled_) {
            kicked_ = true;  // the first build at once: the store may hold policies already
            builder_ = std::thread([this] { builder_loop(); });
            if (notifier_) {
                watcher_ = std::thread([this] { watch_loop(); });
            }
        }
    }

    void offline() override { stop_builder(); }

    void stop() override {
        stopped_ = true;  // the endpoints' removal at shutdown publishes nothing more
        if (const dpol::PolicyState *old = tables_.swap_state(nullptr)) {
            ctx_.defer([old] { delete old; });
        }
        ctx_.reclaim();
        live_.reset();
    }

    bool poll() override {
        if (!enabled_) {
            return false;
        }
        bool did = drain_logs();
        std::shared_ptr<Build> next;
        {
            std::lock_guard g(mu_);
            next = std::move(pending_);
        }
        if (next) {
            good_ = std::move(next);
            publish(nullptr, "");
            {
                std::lock_guard g(mu_);
                published_seq_ = good_->seq;
            }
            published_cv_.notify_all();
            did = true;
        }
        return did;
    }

    void describe_node(json &out) const override { out["policy"] = enabled_ ? status() : json(); }

    void counters(json &out) const override {
        if (!enabled_) {
            return;
        }
        std::lock_guard g(mu_);
        uint64_t lost = 0;
        for (size_t i = 0; i < std::max<size_t>(ctx_.workers().size(), 1); i++) {
            lost += workers_[i].log_lost.get();
        }
        out["policy"] = json{{"builds", builds_},
                             {"build_errors", build_errors_},
                             {"publishes", generation_.load()},
                             {"log_lines", log_lines_},
                             {"log_suppressed", log_suppressed_},
                             {"log_lost", lost}};
    }

  private:
    // ---- endpoints ----

    static std::string pod_of(const Endpoint &e) {
        const auto ns = e.owner.value("namespace", std::string());
        const auto pod = e.owner.value("pod", std::string());
        return pod.empty() ? std::string() : (ns.empty() ? "default" : ns) + "/" + pod;
    }

    // [C] The endpoints as they are now: the module's map, plus `extra` (an endpoint being
    // added is in the map only once endpoint.add answers), less `gone` (one being removed).
    template <typename F>
    void each_endpoint(const Endpoint *extra, const std::string &gone, F &&f) const {
        for (const auto &[id, e] : endpoints_.endpoints()) {
            if (id != gone && (extra == nullptr || id != extra->id)) {
                f(e);
            }
        }
        if (extra != nullptr && extra->id != gone) {
            f(*extra);
        }
    }

    // [C] what the builder compiles for.
    void snapshot_endpoints(const Endpoint *extra, const std::string &gone) {
        std::vector<LocalEndpoint> v;
        each_endpoint(extra, gone, [&](const Endpoint &e) {
            LocalEndpoint l{e.id, pod_of(e), {}};
            if (e.ipv4) {
                l.ips.emplace_back(*e.ipv4);
            }
            if (e.ipv6) {
                l.ips.emplace_back(*e.ipv6);
            }
            v.push_back(std::move(l));
        });
        std::sort(v.begin(), v.end(),
                  [](const LocalEndpoint &a, const LocalEndpoint &b) { return a.id < b.id; });
        std::lock_guard g(mu_);
        if (v != local_) {
            local_ = std::move(v);
            local_seq_++;
            kicked_ = true;
            cv_.notify_all();
        }
    }

    void on_endpoint(EndpointsModule::Event ev, const Endpoint &e) {
        if (!enabled_ || stopped_ || ev == EndpointsModule::Event::kLive) {
            return;
        }
        const bool gone = ev == EndpointsModule::Event::kRemoving;
        publish(gone ? nullptr : &e, gone ? e.id : std::string());
        snapshot_endpoints(gone ? nullptr : &e, gone ? e.id : std::string());
    }

    // ---- the builder thread ----

    void builder_loop() {
        int64_t built_rev = -2;
        uint64_t built_local = ~0ull;
        bool failed = false;
        policy::PolicyRegistry::ListCache decoded;  // the store's records as last listed
        std::shared_ptr<const Build> last;          // the last build made
        for (;;) {
            std::vector<LocalEndpoint> local;
            uint64_t local_seq = 0, seq = 0;
            {
                std::unique_lock lk(mu_);
                cv_.wait_for(lk, std::chrono::milliseconds(cfg_.sync_ms),
                             [&] { return stop_ || kicked_ || store_moved_; });
                if (stop_) {
                    return;
                }
                const bool kicked = kicked_;
                kicked_ = false;
                store_moved_ = false;
                seq = kicks_;
                local = local_;
                local_seq = local_seq_;
                if (!kicked && local_seq == built_local && !failed) {
                    lk.unlock();
                    int64_t rev = -1;
                    try {
                        rev = store_->revision();
                    } catch (const std::exception &e) {
                        note_failure(std::string("store: ") + e.what(), seq);
                        continue;
                    }
                    if (rev == built_rev) {
                        continue;
                    }
                }
            }
            const uint64_t t0 = ControlContext::now_ms();
            int64_t read_rev = -1;
            try {
                auto b = build_once(*store_, local, read_rev, decoded, last.get());
                last = b;
                b->seq = seq;
                b->started_ms = t0;
                built_rev = b->revision;
                built_local = local_seq;
                failed = false;
                std::lock_guard g(mu_);
                builds_++;
                last_build_ms_ = ControlContext::now_ms() - t0;
                pending_ = std::move(b);
            } catch (const std::exception &e) {
                // What the store said cannot compile: tried again when it changes. The store
                // failing: tried again next period.
                failed = read_rev < 0;
                built_rev = read_rev;
                built_local = local_seq;
                note_failure(e.what(), seq);
                continue;
            }
            ctx_.wake();
        }
    }

    // The watcher thread: wakes the builder on each change notice, which then compares the
    // revision. A failing notice leaves the builder to its poll.
    void watch_loop() {
        for (;;) {
            {
                std::lock_guard g(mu_);
                if (stop_) {
                    return;
                }
            }
            bool moved = false;
            try {
                moved = notifier_->wait(std::chrono::milliseconds(kWatchMs));
            } catch (const std::exception &e) {
                log::error("policy: store change notices failed, polling every {} ms: {}",
                           cfg_.sync_ms, e.what());
                return;
            }
            if (moved) {
                std::lock_guard g(mu_);
                store_moved_ = true;
                notices_++;
                cv_.notify_all();
            }
        }
    }

    void note_failure(const std::string &why, uint64_t seq) {
        std::lock_guard g(mu_);
        build_errors_++;
        if (why != last_error_) {
            log::error("policy: build failed, the last good rule set stays: {}", why);
        }
        last_error_ = why;
        failed_seq_ = seq;
        published_cv_.notify_all();
    }

    void stop_builder() {
        {
            std::lock_guard g(mu_);
            stop_ = true;
            cv_.notify_all();
        }
        if (builder_.joinable()) {
            builder_.join();
        }
        if (watcher_.joinable()) {
            watcher_.join();  // within kWatchMs
        }
    }

    // ---- publication [C] ----

    struct Live {
        std::shared_ptr<const Build> build;
        const dpol::PolicyState *state = nullptr;
    };

    void publish(const Endpoint *extra, const std::string &gone) {
        auto st = std::make_unique<dpol::PolicyState>();
        const Build *b = good_.get();
        const policy::Compiled *c = b ? b->compiled.get() : nullptr;
        st->rules = b ? b->rules.get() : nullptr;
        st->generation = ++generation_;
        st->ports.assign(dp::kMaxPorts, dpol::PortPolicy{});
        st->nh_class.assign(dp::kMaxNextHops, 0);
        // The pods of each port: one tells the port's class, several (a shared port) do not.
        std::map<uint16_t, std::vector<const Endpoint *>> by_port;
        each_endpoint(extra, gone, [&](const Endpoint &e) {
            if (!e.attached) {
                return;
            }
            by_port[e.port_id].push_back(&e);
            const policy::ClassId cls = class_of(c, pod_of(e));
            if (e.nh != dp::kNhInvalid && e.nh < dp::kMaxNextHops) {
                st->nh_class[e.nh] = cls;
            }
        });
        for (const auto &[port, eps] : by_port) {
            if (port >= dp::kMaxPorts) {
                continue;
            }
            dpol::PortPolicy &pp = st->ports[port];
            pp.flags = dpol::kPortEndpoint;
            pp.cls = eps.size() == 1 ? class_of(c, pod_of(*eps[0])) : policy::kNoPolicyClass;
            pp.src4_off = static_cast<uint32_t>(st->src4.size());
            pp.src6_off = static_cast<uint32_t>(st->src6.size());
            for (const Endpoint *e : eps) {
                // Each source tagged with its endpoint's class: on a shared port the
                // matching source tells the sender.
                const policy::ClassId cls = class_of(c, pod_of(*e));
                auto add4 = [&](const net::Prefix4 &p) {
                    st->src4.push_back(dpol::src4(p));
                    st->src4_cls.push_back(cls);
                };
                auto add6 = [&](const net::Prefix6 &p) {
                    st->src6.push_back(dpol::src6(p));
                    st->src6_cls.push_back(cls);
                };
                if (e->ipv4) {
                    add4(net::Prefix4{*e->ipv4, 32});
                }
                if (e->ipv6) {
                    add6(net::Prefix6{*e->ipv6, 128});
                }
                if (b) {
                    if (auto it = b->allowed.find(pod_of(*e)); it != b->allowed.end()) {
                        for (const auto &p : it->second) {
                            if (p.is_v4()) {
                                add4(p.v4());
                            } else {
                                add6(p.v6());
                            }
                        }
                    }
                }
            }
            pp.src4_n = static_cast<uint16_t>(st->src4.size() - pp.src4_off);
            pp.src6_n = static_cast<uint16_t>(st->src6.size() - pp.src6_off);
        }
        st->to_host = cfg_.to_host;
        st->failsafe_in = cfg_.failsafe_in;
        st->failsafe_out = cfg_.failsafe_out;
        st->counts.resize(std::max<size_t>(ctx_.workers().size(), 1));
        if (st->rules != nullptr) {
            for (auto &v : st->counts) {
                v = std::vector<dpol::RuleCount>(st->rules->refs());
            }
        }
        const dpol::PolicyState *published = st.release();
        const dpol::PolicyState *old = tables_.swap_state(published);
        auto old_build = live_ ? live_->build : nullptr;
        live_ = Live{good_, published};
        recent_[published->generation] = good_;
        while (recent_.size() > 8) {
            recent_.erase(recent_.begin());
        }
        if (old != nullptr) {
            // After the grace period no worker counts into it any more: its counts join the
            // retired ones, by rule, and its build (with the rte_acl contexts) may go.
            ctx_.defer([this, old, old_build] {
                retire_counts(*old, old_build.get());
                delete old;
            });
        }
    }

    static policy::ClassId class_of(const policy::Compiled *c, const std::string &pod) {
        if (c == nullptr || pod.empty()) {
            return policy::kNoPolicyClass;
        }
        const auto it = c->class_of.find(pod);
        return it == c->class_of.end() ? policy::kNoPolicyClass : it->second;
    }

    void retire_counts(const dpol::PolicyState &st, const Build *b) {
        if (b == nullptr || !b->compiled) {
            return;
        }
        const auto &refs = b->compiled->refs;
        for (const auto &w : st.counts) {
            for (size_t r = 1; r < w.size() && r < refs.size(); r++) {
                if (const uint64_t p = w[r].packets.get()) {
                    auto &acc = retired_[{refs[r].policy, static_cast<int>(refs[r].direction),
                                          refs[r].rule}];
                    acc.first += p;
                    acc.second += w[r].bytes.get();
                }
            }
        }
    }

    // ---- Log lines [C] ----

    bool drain_logs() {
        bool did = false;
        const uint64_t now = ControlContext::now_ms();
        if (now > last_refill_ms_) {
            tokens_ = std::min<double>(cfg_.log_burst,
                                       tokens_ + cfg_.log_rate * (now - last_refill_ms_) / 1000.0);
            last_refill_ms_ = now;
        }
        dpol::LogRecord r;
        for (size_t i = 0; i < ctx_.workers().size(); i++) {
            while (workers_[i].log.pop(r)) {
                did = true;
                if (tokens_ < 1) {
                    std::lock_guard g(mu_);
                    log_suppressed_++;
                    continue;
                }
                tokens_ -= 1;
                write_log(r);
            }
        }
        return did;
    }

    void write_log(const dpol::LogRecord &r) {
        json line{{"generation", r.generation},
                  {"direction", r.dir == 0 ? "ingress" : "egress"},
                  {"family", r.family},
                  {"protocol", proto_str(r.proto)},
                  {"src", ip_str(r.family, r.src)},
                  {"dst", ip_str(r.family, r.dst)},
                  {"len", r.len},
                  {"in_port", r.in_port},
                  {"verdict", r.verdict ? "allow" : "deny"}};
        const bool icmp = r.proto == IPPROTO_ICMP || r.proto == IPPROTO_ICMPV6;
        line[icmp ? "icmp_type" : "sport"] = r.sport;
        line[icmp ? "icmp_code" : "dport"] = r.dport;
        const auto it = recent_.find(r.generation);
        if (it != recent_.end() && it->second && it->second->compiled &&
            r.rule < it->second->compiled->refs.size()) {
            const auto &info = it->second->compiled->refs[r.rule];
            line["policy"] = info.policy;
            line["rule"] = info.rule;
            line["rule_text"] = info.text;
        } else {
            line["rule_ref"] = r.rule;
        }
        log::info("policy log {}", line.dump());
        std::lock_guard g(mu_);
        log_lines_++;
    }

    // ---- ops ----

    json status() const {
        json out{{"enabled", enabled_},
                 {"defaultEndpointToHostAction", to_string(cfg_.to_host)},
                 {"failsafeInboundHostPorts", failsafe_json(cfg_.failsafe_in)},
                 {"failsafeOutboundHostPorts", failsafe_json(cfg_.failsafe_out)},
                 {"sync_ms", cfg_.sync_ms},
                 {"store_notices", notifier_ != nullptr}};
        std::lock_guard g(mu_);
        out["notices"] = notices_;
        out["generation"] = generation_.load();
        out["builds"] = builds_;
        out["build_errors"] = build_errors_;
        out["last_error"] = last_error_.empty() ? json() : json(last_error_);
        out["last_build_ms"] = last_build_ms_;
        const Build *b = good_.get();
        if (b == nullptr) {
            out["revision"] = nullptr;
            return out;
        }
        const auto &s = b->compiled->stats;
        json notes = json::array();
        for (const auto &n : b->notes) {
            notes.push_back(n);
        }
        out["revision"] = b->revision;
        out["policies"] = b->set->policies().size();
        out["compiled"] = json{{"policies", s.policies},
                               {"rules", s.rules},
                               {"classes", s.classes},
                               {"flat_rules", s.flat_rules},
                               {"largest_rule", s.largest_rule}};
        out["acl"] =
            json{{"memory_bytes", b->rules->memory_bytes()},
                 {"reused", b->acl_reused},
                 {"rules4_ingress", b->rules->rule_count(net::Family::kIp4, Direction::kIngress)},
                 {"rules4_egress", b->rules->rule_count(net::Family::kIp4, Direction::kEgress)},
                 {"rules6_ingress", b->rules->rule_count(net::Family::kIp6, Direction::kIngress)},
                 {"rules6_egress", b->rules->rule_count(net::Family::kIp6, Direction::kEgress)}};
        out["seconds"] = json{{"list", b->list_s}, {"compile", b->compile_s}, {"acl", b->acl_s}};
        out["notes"] = notes;
        return out;
    }

    const Build &need_build() const {
        if (!good_) {
            throw ApiError("unavailable", enabled_ ? "no policy build yet" + last_error_suffix()
                                                   : "policy is not enforced on this node: no "
                                                     "ipam section (cluster store) in its config");
        }
        return *good_;
    }

    std::string last_error_suffix() const {
        std::lock_guard g(mu_);
        return last_error_.empty() ? "" : " (last error: " + last_error_ + ")";
    }

    // The local endpoints of pod key `pod`.
    json endpoint_ids(const std::string &pod) const {
        json ids = json::array();
        for (const auto &[id, e] : endpoints_.endpoints()) {
            if (pod_of(e) == pod) {
                ids.push_back(id);
            }
        }
        return ids;
    }

    static std::string flat_str(const policy::FlatRule &r, net::Family f) {
        auto addr = [&](const policy::AclAddr &a) -> std::string {
            if (a.len == 0) {
                return "any";
            }
            if (f == net::Family::kIp4) {
                return net::Ip4Addr::from_host(a.w[0]).str() + "/" + std::to_string(a.len);
            }
            std::array<uint8_t, 16> b{};
            for (int i = 0; i < 4; i++) {
                for (int k = 0; k < 4; k++) {
                    b[i * 4 + k] = static_cast<uint8_t>(a.w[i] >> (24 - 8 * k));
                }
            }
            return net::Ip6Addr::from_bytes(b.data()).str() + "/" + std::to_string(a.len);
        };
        auto range = [](unsigned lo, unsigned hi, unsigned max) -> std::string {
            if (lo == 0 && hi == max) {
                return "any";
            }
            return lo == hi ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(hi);
        };
        return "set " + std::to_string(r.set) + " proto " + range(r.proto_lo, r.proto_hi, 255) +
               " src " + addr(r.src) + " dst " + addr(r.dst) + " sport " +
               range(r.sport_lo, r.sport_hi, 65535) + " dport " +
               range(r.dport_lo, r.dport_hi, 65535) + " -> ref " + std::to_string(r.ref);
    }

    json show(const json &a) const {
        const std::string name = get_str(a, "name", true);
        const Build &b = need_build();
        const policy::Policy *p = nullptr;
        for (const auto &x : b.set->policies()) {
            if (x.key() == name || x.name == name || x.calico_name() == name ||
                (x.ns + "/" + x.calico_name()) == name) {
                if (p != nullptr) {
                    throw ApiError("invalid_argument",
                                   "'" + name + "' names more than one policy (" + p->key() + ", " +
                                       x.key() + "): give ns/name");
                }
                p = &x;
            }
        }
        if (p == nullptr) {
            throw ApiError("not_found", "no policy '" + name + "' in the store (revision " +
                                            std::to_string(b.revision) + ")");
        }
        json selected = json::array();
        for (const policy::Endpoint *e : b.set->selected_by(*p)) {
            json ips = json::array();
            for (const auto &ip : e->ips) {
                ips.push_back(ip.str());
            }
            const auto cls = b.compiled->class_of.find(e->key());
            selected.push_back(
                {{"pod", e->key()},
                 {"ips", ips},
                 {"local", cls != b.compiled->class_of.end()},
                 {"class", cls != b.compiled->class_of.end() ? json(cls->second) : json()},
                 {"endpoints", endpoint_ids(e->key())}});
        }
        // The compiled rules of this policy, per family and direction, capped for the reply.
        constexpr size_t kMaxShown = 1000;
        json rules = json::array();
        size_t total = 0;
        const auto &refs = b.compiled->refs;
        for (const auto f : {net::Family::kIp4, net::Family::kIp6}) {
            for (const auto d : {Direction::kIngress, Direction::kEgress}) {
                const auto &fr = b.compiled->of(f, d);
                for (const auto *list : {&fr.decide, &fr.log}) {
                    for (const auto &r : *list) {
                        if (r.ref >= refs.size() || refs[r.ref].policy != p->key()) {
                            continue;
                        }
                        if (++total <= kMaxShown) {
                            rules.push_back({{"family", f == net::Family::kIp4 ? 4 : 6},
                                             {"direction", policy::to_string(d)},
                                             {"rule", refs[r.ref].rule},
                                             {"action", policy::to_string(refs[r.ref].action)},
                                             {"flat", flat_str(r, f)}});
                        }
                    }
                }
            }
        }
        return json{
            {"policy", p->key()},
            {"kind", policy::to_string(p->kind)},
            {"revision", b.revision},
            {"selected", selected},
            {"compiled", rules},
            {"compiled_total", total},
            {"compiled_shown", std::min(total, kMaxShown)},
            {"applies_locally", std::any_of(selected.begin(), selected.end(),
                                            [](const json &s) { return s["local"].get<bool>(); })}};
    }

    json stats() const {
        std::map<RuleKey, std::pair<uint64_t, uint64_t>> sum = retired_;
        std::map<RuleKey, std::string> text;
        std::map<RuleKey, std::string> action;
        if (live_ && live_->build && live_->state) {
            const auto &refs = live_->build->compiled->refs;
            for (size_t r = 1; r < refs.size(); r++) {
                const RuleKey k{refs[r].policy, static_cast<int>(refs[r].direction), refs[r].rule};
                text[k] = refs[r].text;
                action[k] = std::string(policy::to_string(refs[r].action));
                auto &acc = sum[k];
                for (const auto &w : live_->state->counts) {
                    if (r < w.size()) {
                        acc.first += w[r].packets.get();
                        acc.second += w[r].bytes.get();
                    }
                }
            }
        }
        // Packets the uplink NIC dropped for a rule (the flows module's exact early drops)
        // never reached the workers' counters: they are the rule's too. Bytes: the NIC's
        // COUNT is read for packets only.
        flows::RuleHits nic;
        if (const auto *src =
                dynamic_cast<const flows::PolicyHitsSource *>(ctx_.find_module("flows"))) {
            nic = src->nic_policy_hits();
        }
        json rules = json::array();
        for (const auto &[k, v] : sum) {
            const auto dir = static_cast<Direction>(std::get<1>(k));
            const auto n =
                dir == Direction::kIngress ? nic.find({std::get<0>(k), std::get<2>(k)}) : nic.end();
            const uint64_t at_nic = n != nic.end() ? n->second : 0;
            rules.push_back({{"policy", std::get<0>(k)},
                             {"direction", policy::to_string(dir)},
                             {"rule", std::get<2>(k)},
                             {"action", action.count(k) ? json(action[k]) : json()},
                             {"text", text.count(k) ? json(text[k]) : json()},
                             {"current", text.count(k) > 0},
                             {"packets", v.first + at_nic},
                             {"nic_packets", at_nic},
                             {"bytes", v.second}});
        }
        return json{{"generation", generation_.load()}, {"rules", rules}};
    }

    json endpoint_policy(const json &a) const {
        std::string pod = get_str(a, "pod", true);
        if (pod.find('/') == std::string::npos) {
            pod = "default/" + pod;
        }
        const Build &b = need_build();
        const policy::Endpoint *ep = b.set->endpoint(pod);
        if (ep == nullptr) {
            throw ApiError("not_found", "no pod '" + pod + "' in the store or on this node");
        }
        const auto cls = b.compiled->class_of.find(pod);
        json out{{"pod", pod},
                 {"local", cls != b.compiled->class_of.end()},
                 {"class", cls != b.compiled->class_of.end() ? json(cls->second) : json()},
                 {"endpoints", endpoint_ids(pod)},
                 {"revision", b.revision}};
        json ips = json::array();
        for (const auto &ip : ep->ips) {
            ips.push_back(ip.str());
        }
        out["ips"] = ips;
        json labels = json::object();
        for (const auto &[k, v] : ep->labels) {
            labels[k] = v;
        }
        out["labels"] = labels;
        for (const auto d : {Direction::kIngress, Direction::kEgress}) {
            json list = json::array();
            for (const policy::Policy *p : b.set->applying(*ep, d)) {
                json rules = json::array();
                for (size_t i = 0; i < p->rules(d).size(); i++) {
                    rules.push_back(
                        {{"rule", i}, {"action", policy::to_string(p->rules(d)[i].action)}});
                }
                list.push_back({{"policy", p->key()},
                                {"kind", policy::to_string(p->kind)},
                                {"order", p->order ? json(*p->order) : json()},
                                {"rules", rules}});
            }
            const std::string dir = d == Direction::kIngress ? "ingress" : "egress";
            out[dir] = {
                {"policies", list},
                {"default", list.empty() ? "allow (no policy applies: the namespace profile)"
                                         : "deny (no rule decided: end of tier)"}};
        }
        return out;
    }

    // [API thread] kicks the builder and waits until a build it started afterwards is
    // published (or failed, or nothing had changed).
    json sync(const json &a) {
        if (!enabled_) {
            throw ApiError("unavailable", "policy is not enforced on this node: no ipam section");
        }
        const auto it = a.find("timeout_ms");
        const int64_t timeout =
            it != a.end() && it->is_number_unsigned() ? it->get<int64_t>() : 5000;
        const uint64_t t0 = ControlContext::now_ms();
        std::unique_lock lk(mu_);
        const uint64_t want = ++kicks_;
        kicked_ = true;
        cv_.notify_all();
        const bool ok = published_cv_.wait_for(lk, std::chrono::milliseconds(timeout), [&] {
            return published_seq_ >= want || failed_seq_ >= want;
        });
        if (!ok) {
            throw ApiError("unavailable",
                           "no policy build within " + std::to_string(timeout) + " ms");
        }
        if (failed_seq_ >= want && published_seq_ < want) {
            throw ApiError("failed_precondition", "policy build failed: " + last_error_ +
                                                      "; the last good rule set stays enforced");
        }
        return json{{"generation", generation_.load()}, {"ms", ControlContext::now_ms() - t0}};
    }

    ControlContext &ctx_;
    EndpointsModule &endpoints_;
    IpamModule &ipam_;
    ConntrackModule &conntrack_;
    const PolicySectionConfig cfg_;
    dpol::PolicyTables tables_;
    std::unique_ptr<dpol::PolicyWorker[]> workers_;   // by worker index
    bool enabled_ = false;                            // set in start(), read-only after
    bool stopped_ = false;                            // [main] set in stop()
    std::unique_ptr<ipam::Store> store_;              // [builder thread] after start()
    std::unique_ptr<ipam::ChangeNotifier> notifier_;  // [watcher thread] after start(); may be null
    std::thread builder_, watcher_;
    static constexpr int kWatchMs = 100;  // the watcher's check of stop_

    // [C]
    std::shared_ptr<Build> good_;  // the newest build that succeeded
    std::optional<Live> live_;
    std::map<uint32_t, std::shared_ptr<const Build>> recent_;  // by generation, for Log lines
    std::map<RuleKey, std::pair<uint64_t, uint64_t>> retired_;
    double tokens_ = 0;
    uint64_t last_refill_ms_ = 0;
    std::atomic<uint32_t> generation_{0};

    // Shared by the builder, the control and the API threads: guarded by mu_.
    mutable std::mutex mu_;
    std::condition_variable cv_;            // wakes the builder
    std::condition_variable published_cv_;  // wakes policy.sync
    bool stop_ = false;
    bool kicked_ = false;
    bool store_moved_ = false;  // a change notice since the builder last looked
    uint64_t kicks_ = 0, notices_ = 0;
    std::vector<LocalEndpoint> local_;
    uint64_t local_seq_ = 0;
    std::shared_ptr<Build> pending_;
    uint64_t published_seq_ = 0, failed_seq_ = 0;
    uint64_t builds_ = 0, build_errors_ = 0, last_build_ms_ = 0;
    std::string last_error_;
    uint64_t log_lines_ = 0, log_suppressed_ = 0;
};

}  // namespace

FWD_ON_LOAD(register_module<PolicyModule>({EndpointsModule::kName, IpamModule::kName,
                                           ConntrackModule::kName}));
FWD_ON_LOAD(register_config_section<PolicySectionConfig>("policy",
                                                         {"defaultEndpointToHostAction",
                                                          "failsafeInboundHostPorts",
                                                          "failsafeOutboundHostPorts", "sync_ms",
                                                          "log_rate", "log_burst"},
                                                         parse_policy));

}  // namespace fwd::control
