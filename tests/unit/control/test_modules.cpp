// The control core (controller.hpp) and its modules (module.hpp): a
// Controller with a minimal config (no uplink, one worker) makes every module
// linked into this binary — the built-in ones and three of this file's own,
// probe_base, probe (which depends on routes and probe_base) and
// endpoint_watch (a subscriber to the endpoints module's events); the test
// thread plays the worker (it drains the worker's commands while an op or
// the shutdown waits for them). Module order and lookup, the op table and
// its argument checks, the node-wide views, routes through the real routes
// module, the life of a module, punt handlers, endpoint kinds, endpoint
// events, soft ports, and RCU defer / reclaim.
//
// Starting the Controller starts every module for real: the endpoints
// module's tap kind makes the shared pod tap (a kernel interface, named
// after this process). Those tests need root and skip without it; the
// endpoint event tests also make network namespaces (ip netns) as pods.
#include <gtest/gtest.h>
#include <net/if.h>
#include <rte_eal.h>
#include <rte_fib6.h>
#include <rte_lpm.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../temp_dir.hpp"
#include "fwd/control/api.hpp"
#include "fwd/control/controller.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/control/routes.hpp"
#include "fwd/dp/eal.hpp"
#include "fwd/dp/meta.hpp"
#include "fwd/util/registry.hpp"
#include "fwd/vhost/netns.hpp"

namespace fwd::control::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

rte_mempool *g_pool = nullptr;  // made by main once EAL is up
std::string g_pod_tap;          // the config's pod tap: "fwdtc<pid>"

// What the test modules saw. Written by them (main or control thread) and
// read by the tests once the Controller is quiet.
std::vector<std::string> g_events;  // "<module>.<make|start|online|offline|stop|destroy>"
bool g_fail_start = false;          // probe's start() throws
std::string g_punt_error;           // what probe's on_punt for the host reason threw
bool g_probe_saw_deps = false;      // its dependencies were made before it
std::atomic<uint64_t> g_probe_calls{0};
std::thread::id g_op_thread;   // the thread probe.echo ran on
std::thread::id g_api_thread;  // the thread probe.api ran on

// A module that depends on nothing.
class ProbeBase final : public Module {
  public:
    static constexpr const char *kName = "probe_base";
    explicit ProbeBase(ControlContext &) { g_events.push_back("probe_base.make"); }
    ~ProbeBase() override { g_events.push_back("probe_base.destroy"); }
    void start() override { g_events.push_back("probe_base.start"); }
    void online() override { g_events.push_back("probe_base.online"); }
    void offline() override { g_events.push_back("probe_base.offline"); }
    void stop() override { g_events.push_back("probe_base.stop"); }
};

// A module with ops, counters and views, depending on probe_base and routes.
class Probe final : public Module {
  public:
    static constexpr const char *kName = "probe";
    explicit Probe(ControlContext &ctx) : ctx_(ctx) {
        g_events.push_back("probe.make");
        g_probe_saw_deps = ctx.find<ProbeBase>() != nullptr && ctx.find<RoutesModule>() != nullptr;
        ctx.add_op({.name = "probe.echo", .args = {"value", "note"}, .fn = [](const json &a) {
                        g_probe_calls++;
                        g_op_thread = std::this_thread::get_id();
                        return json{{"value", a.value("value", json())}};
                    }});
        ctx.add_op({.name = "probe.api",
                    .args = {},
                    .fn =
                        [](const json &) {
                            g_api_thread = std::this_thread::get_id();
                            return json{{"api", true}};
                        },
                    .thread = OpDef::Thread::kApi});
        ctx.add_op({.name = "probe.internal",
                    .args = {},
                    .fn =
                        [](const json &) {
                            return json{{"internal", true}};
                        },
                    .internal = true});
        // An op on the control thread calling another: run in place.
        ctx.add_op({.name = "probe.nested", .args = {}, .fn = [this](const json &) {
                        return ctx_.call("version", json::object());
                    }});
        // The neighbors module (made before: probe depends on routes, which
        // depends on neighbors) took every built-in punt reason.
        try {
            ctx.on_punt(dp::PuntReason::kHost, [](rte_mbuf *m) { rte_pktmbuf_free(m); });
            g_punt_error = "accepted";
        } catch (const std::logic_error &e) {
            g_punt_error = e.what();
        }
    }
    ~Probe() override { g_events.push_back("probe.destroy"); }
    void start() override {
        g_events.push_back("probe.start");
        if (g_fail_start) {
            throw std::runtime_error("probe refuses to start");
        }
        started_ = true;
    }
    void online() override { g_events.push_back("probe.online"); }
    void offline() override { g_events.push_back("probe.offline"); }
    void stop() override {
        g_events.push_back("probe.stop");
        started_ = false;
    }
    void counters(json &out) const override { out["probe_calls"] = g_probe_calls.load(); }
    void describe_node(json &out) const override { out["probe"] = json{{"started", started_}}; }
    void describe_tables(json &out) const override { out["probe_entries"] = 7; }

  private:
    ControlContext &ctx_;
    bool started_ = false;
};

FWD_ON_LOAD(register_module<ProbeBase>({}));
FWD_ON_LOAD(register_module<Probe>({RoutesModule::kName, ProbeBase::kName}));

// Endpoint events (EndpointsModule::subscribe) as a module that keeps state
// per pod sees them: endpoint_watch subscribes twice in its constructor
// ("a", then "b") and records every event with what was in the RIB, the
// tables and the pod's namespace at that moment. "b" refuses (throws
// ApiError) at g_watch_refuse_at.
struct EpEvent {
    EndpointsModule::Event event;
    char who;  // 'a' or 'b'
    std::string id;
    std::string netns;
    std::string ifname;
    std::string mac;
    std::optional<net::Ip4Addr> ipv4;
    std::optional<net::Ip6Addr> ipv6;
    uint32_t nh;
    uint16_t port_id;
    bool rib4 = false, rib6 = false;  // its /32, /128 in the RIB (source endpoint)
    bool fib4 = false, fib6 = false;  // the tables' lookups of its addresses give its next hop
    bool pod_if = false;              // its interface exists in its namespace
    bool pod_routed = false;          // the pod's own routes (its default routes) are there
};
std::vector<EpEvent> g_ep_events;  // written on the control (or main) thread
std::optional<EndpointsModule::Event> g_watch_refuse_at;

const char *event_name(EndpointsModule::Event e) {
    switch (e) {
        case EndpointsModule::Event::kAttached:
            return "attached";
        case EndpointsModule::Event::kLive:
            return "live";
        case EndpointsModule::Event::kRemoving:
            return "removing";
    }
    return "?";
}

// The tables' IPv4 / IPv6 lookups: the next hop, kNhInvalid on a miss.
uint32_t lookup4(const dp::Tables &t, net::Ip4Addr a) {
    uint32_t nh = dp::kNhInvalid;
    return rte_lpm_lookup(t.lpm4(), a.host(), &nh) == 0 ? nh : dp::kNhInvalid;
}
uint32_t lookup6(const dp::Tables &t, const net::Ip6Addr &a) {
    uint8_t ip[1][16];
    std::copy(a.bytes().begin(), a.bytes().end(), ip[0]);
    uint64_t nh = dp::kNhInvalid;
    if (rte_fib6_lookup_bulk(t.fib6(), ip, &nh, 1) != 0) {
        return dp::kNhInvalid;
    }
    return static_cast<uint32_t>(nh);
}

// Any of the routes the pod side gets (vhost::expected_pod_routes) is in its namespace.
bool pod_routed(const Endpoint &e) {
    try {
        const auto routes = vhost::inspect_pod_interface(e.netns, e.ifname).routes;
        for (const auto &r : vhost::expected_pod_routes(pod_if_config(e))) {
            if (std::find(routes.begin(), routes.end(), r) != routes.end()) {
                return true;
            }
        }
    } catch (const std::exception &) {
    }
    return false;
}

bool pod_interface_exists(const std::string &netns, const std::string &ifname) {
    try {
        return vhost::inspect_pod_interface(netns, ifname).exists;
    } catch (const std::exception &) {
        return false;
    }
}

class EndpointWatch final : public Module {
  public:
    static constexpr const char *kName = "endpoint_watch";
    explicit EndpointWatch(ControlContext &ctx)
        : routes_(ctx.need<RoutesModule>()), tables_(ctx.tables()) {
        auto &eps = ctx.need<EndpointsModule>();
        eps.subscribe([this](EndpointsModule::Event ev, const Endpoint &e) { record('a', ev, e); });
        eps.subscribe([this](EndpointsModule::Event ev, const Endpoint &e) {
            record('b', ev, e);
            if (g_watch_refuse_at == ev) {
                throw ApiError("invalid_argument", "endpoint_watch refuses " + e.id);
            }
        });
    }

  private:
    void record(char who, EndpointsModule::Event ev, const Endpoint &e) {
        EpEvent r{ev, who, e.id, e.netns, e.ifname, e.mac.str(), e.ipv4, e.ipv6, e.nh, e.port_id};
        Rib &rib = routes_.rib();
        r.rib4 = e.ipv4 && rib.get(net::Prefix4{*e.ipv4, 32}, RouteSource::kEndpoint) != nullptr;
        r.rib6 = e.ipv6 && rib.get(net::Prefix6{*e.ipv6, 128}, RouteSource::kEndpoint) != nullptr;
        r.fib4 = e.ipv4 && e.nh != dp::kNhInvalid && lookup4(tables_, *e.ipv4) == e.nh;
        r.fib6 = e.ipv6 && e.nh != dp::kNhInvalid && lookup6(tables_, *e.ipv6) == e.nh;
        r.pod_if = pod_interface_exists(e.netns, e.ifname);
        r.pod_routed = r.pod_if && pod_routed(e);
        g_ep_events.push_back(std::move(r));
    }

    RoutesModule &routes_;
    const dp::Tables &tables_;
};

FWD_ON_LOAD(register_module<EndpointWatch>({EndpointsModule::kName, RoutesModule::kName}));

// A module type no one registered.
struct NotBuiltIn : Module {
    static constexpr const char *kName = "not_built_in";
};

// The events of one module, in order.
std::vector<std::string> events_of(const std::string &module) {
    std::vector<std::string> v;
    for (const auto &e : g_events) {
        if (e.rfind(module + ".", 0) == 0) {
            v.push_back(e.substr(module.size() + 1));
        }
    }
    return v;
}

// The events other than "make" / "destroy", of both test modules, in order.
std::vector<std::string> lifecycle() {
    std::vector<std::string> v;
    for (const auto &e : g_events) {
        if (e.find(".make") == std::string::npos && e.find(".destroy") == std::string::npos) {
            v.push_back(e);
        }
    }
    return v;
}

class Control : public ::testing::Test {
  protected:
    // Runs f on another thread while this one plays the worker.
    template <typename F>
    auto as_worker(F f) {
        auto done = std::async(std::launch::async, f);
        while (done.wait_for(1ms) != std::future_status::ready) {
            worker_->drain_commands();
        }
        return done.get();
    }
    void SetUp() override {
        g_events.clear();
        g_fail_start = false;
        g_probe_calls = 0;
        pool_avail_ = rte_mempool_avail_count(g_pool);
        size_t sz = rte_rcu_qsbr_get_memsize(1);
        qsbr_ = static_cast<rte_rcu_qsbr *>(rte_zmalloc("ctl_qsbr", sz, RTE_CACHE_LINE_SIZE));
        ASSERT_NE(qsbr_, nullptr);
        ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
        // Worker 0 is registered and offline: grace periods pass at once,
        // unless a test puts it online.
        ASSERT_EQ(rte_rcu_qsbr_thread_register(qsbr_, 0), 0);
        tables_ = std::make_unique<dp::Tables>(1024, 1024, qsbr_, 0, 256, 1024);
        worker_ = std::make_unique<dp::Worker>(0, *tables_, g_pool, dp::IdleParams{}, 1000, qsbr_);
        cfg_.node_name = "test-node";
        cfg_.workers.resize(1);
        cfg_.pod_tap = g_pod_tap;
        cfg_.state_dir = state_.path();  // the endpoint record: this test's own
        ctl_ = std::make_unique<Controller>(cfg_, *tables_,
                                            std::vector<dp::Worker *>{worker_.get()}, g_pool);
    }

    void TearDown() override {
        if (started_) {
            ctl_->offline();
        }
        stop_control();
        if (started_) {
            as_worker([&] { ctl_->shutdown(); });
            started_ = false;
        }
        ctl_.reset();
        // A stop that kept pods kept the pod tap too: the next test starts without it.
        if (if_nametoindex(g_pod_tap.c_str()) != 0) {
            try {
                vhost::set_tap_persist(g_pod_tap, false);
            } catch (const std::exception &e) {
                ADD_FAILURE() << "pod tap " << g_pod_tap << ": " << e.what();
            }
        }
        worker_.reset();
        tables_.reset();
        rte_free(qsbr_);
        EXPECT_EQ(rte_mempool_avail_count(g_pool), pool_avail_) << "mbufs leaked";
    }

    // The control thread's loop, on a thread of its own.
    void run_control() {
        control_ = std::thread([this] { ctl_->run(); });
    }
    void stop_control() {
        if (control_.joinable()) {
            ctl_->stop();
            control_.join();
        }
    }
    // As the daemon: every module's start(), the control thread, online().
    // False (skipped) without root: the pod tap is a kernel interface.
    bool start_all() {
        if (geteuid() != 0) {
            return false;
        }
        ctl_->start();
        started_ = true;
        run_control();
        ctl_->online();
        return true;
    }

    json call(const std::string &op, const json &args) {
        return as_worker([&] { return ctl_->call(op, args); });
    }
    // The ApiError op throws; a failure when it answers.
    ApiError error_of(const std::string &op, const json &args) {
        try {
            json r = call(op, args);
            ADD_FAILURE() << op << " " << args.dump() << " answered " << r.dump();
        } catch (const ApiError &e) {
            return e;
        }
        return ApiError("none", "");
    }

    fwd::test::TempDir state_{"fwd-ctl-state"};
    NodeConfig cfg_;
    rte_rcu_qsbr *qsbr_ = nullptr;
    std::unique_ptr<dp::Tables> tables_;
    std::unique_ptr<dp::Worker> worker_;
    std::unique_ptr<Controller> ctl_;
    std::thread control_;
    bool started_ = false;
    unsigned pool_avail_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Modules: made, found, ordered.

TEST_F(Control, EveryModuleIsMadeAndFoundByName) {
    for (const char *name : {"ports", "neighbors", "routes", "endpoints", "node", "ipam", "cni",
                             "probe_base", "probe"}) {
        EXPECT_NE(ctl_->find_module(name), nullptr) << name;
    }
    EXPECT_EQ(ctl_->find_module("nope"), nullptr);
    EXPECT_EQ(ctl_->find<RoutesModule>(), ctl_->find_module("routes"));
    EXPECT_NE(ctl_->find<Probe>(), nullptr);
    EXPECT_EQ(ctl_->find<NotBuiltIn>(), nullptr);
    EXPECT_THROW(ctl_->need<NotBuiltIn>(), std::logic_error);
    EXPECT_EQ(&ctl_->need<RoutesModule>(), ctl_->find<RoutesModule>());

    // Every registered module once, each after what it depends on.
    const auto &defs = registered_modules();
    const auto &order = ctl_->modules();
    ASSERT_EQ(order.size(), defs.size());
    auto position = [&](const std::string &name) {
        auto it = std::find(order.begin(), order.end(), ctl_->find_module(name));
        return it == order.end() ? SIZE_MAX : static_cast<size_t>(it - order.begin());
    };
    for (const auto &d : defs) {
        ASSERT_NE(position(d.name), SIZE_MAX) << d.name;
        for (const auto &dep : d.depends_on) {
            EXPECT_LT(position(dep), position(d.name)) << d.name << " depends on " << dep;
        }
    }
    // Made in that order: a module's constructor finds its dependencies.
    EXPECT_TRUE(g_probe_saw_deps);
    EXPECT_EQ(g_events, (std::vector<std::string>{"probe_base.make", "probe.make"}));
    // Destroyed in reverse.
    ctl_.reset();
    EXPECT_EQ(g_events, (std::vector<std::string>{"probe_base.make", "probe.make", "probe.destroy",
                                                  "probe_base.destroy"}));
}

TEST_F(Control, ModuleNameIsRegisteredOnce) {
    size_t n = registered_modules().size();
    auto make = [](ControlContext &ctx) -> std::unique_ptr<Module> {
        return std::make_unique<ProbeBase>(ctx);
    };
    EXPECT_THROW(register_module(ModuleDef{"probe", {}, make}), std::invalid_argument);
    EXPECT_THROW(register_module(ModuleDef{"routes", {}, make}), std::invalid_argument);
    EXPECT_THROW(register_module(ModuleDef{"probe_without_make", {}, nullptr}),
                 std::invalid_argument);
    EXPECT_EQ(registered_modules().size(), n);
}

// ---------------------------------------------------------------------------------------------
// The op table.

TEST_F(Control, ApiOpsAreTheServedOnes) {
    std::vector<std::string> ops = ctl_->api_ops();
    EXPECT_TRUE(std::is_sorted(ops.begin(), ops.end()));
    EXPECT_EQ(std::adjacent_find(ops.begin(), ops.end()), ops.end()) << "listed twice";
    auto has = [&](const std::string &op) {
        return std::find(ops.begin(), ops.end(), op) != ops.end();
    };
    for (const char *op :
         {"route.add",    "route.del",    "route.list",    "neighbor.list", "endpoint.add",
          "endpoint.del", "endpoint.get", "endpoint.list", "node.get",      "tables",
          "stats",        "stats.stages", "version",       "cni.add",       "cni.del",
          "cni.check",    "cni.status",   "cni.gc",        "probe.echo",    "probe.api"}) {
        EXPECT_TRUE(has(op)) << op;
    }
    EXPECT_FALSE(has("ipam.routes")) << "internal: the IPAM sync's";
    EXPECT_FALSE(has("probe.internal"));
}

TEST_F(Control, UnknownOpIsRefused) {
    run_control();
    ApiError e = error_of("no.such.op", json::object());
    EXPECT_EQ(e.code(), "unknown_op");
    EXPECT_STREQ(e.what(), "unknown op 'no.such.op'");
}

TEST_F(Control, UnknownArgumentIsRefusedNamingTheKnownOnes) {
    run_control();
    ApiError e = error_of("route.list", {{"bogus", 1}});
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "unknown field 'bogus'; known fields: source, family, prefix, limit");

    e = error_of("probe.echo", {{"value", 1}, {"valu", 2}});
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "unknown field 'valu'; known fields: value, note");
    EXPECT_EQ(g_probe_calls.load(), 0u) << "the op ran despite the bad argument";

    // endpoint.add takes the fields of every port kind as well.
    e = error_of("endpoint.add", {{"id", "pod1"}, {"socket", "/tmp/x"}});
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_NE(std::string(e.what()).find("vhost_socket"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'socket'"), std::string::npos) << e.what();

    e = error_of("version", json::array());
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "arguments must be a JSON object, got array");

    // kApi ops are checked the same way.
    e = error_of("cni.status", {{"bogus", true}});
    EXPECT_EQ(e.code(), "invalid_argument");
}

TEST_F(Control, OpsRunOnTheirThread) {
    run_control();
    EXPECT_EQ(call("probe.echo", {{"value", 5}}), (json{{"value", 5}}));
    EXPECT_EQ(g_op_thread, control_.get_id()) << "kControl: on the control thread";
    EXPECT_EQ(g_probe_calls.load(), 1u);

    EXPECT_EQ(ctl_->call("probe.api", json::object()), (json{{"api", true}}));
    EXPECT_EQ(g_api_thread, std::this_thread::get_id()) << "kApi: on the caller's thread";

    // Internal ops are not served on the socket, but the daemon's threads call them.
    EXPECT_EQ(call("probe.internal", json::object()), (json{{"internal", true}}));
    // An op calling another from the control thread: run in place.
    EXPECT_EQ(call("probe.nested", json::object()), (json{{"version", FWD_VERSION}}));
    // A kApi op without an ipam section.
    ApiError e = error_of("cni.status", json::object());
    EXPECT_EQ(e.code(), "unavailable");
}

TEST_F(Control, OpsAreAddedOnce) {
    auto fn = [](const json &) { return json(); };
    EXPECT_THROW(ctl_->add_op({.name = "route.add", .args = {}, .fn = fn}), std::logic_error);
    EXPECT_THROW(ctl_->add_op({.name = "", .args = {}, .fn = fn}), std::logic_error);
    EXPECT_THROW(ctl_->add_op({.name = "probe.nofn", .args = {}, .fn = nullptr}), std::logic_error);
}

// ---------------------------------------------------------------------------------------------
// The node-wide views: each module adds its keys.

void expect_keys(const json &j, std::initializer_list<const char *> keys, const char *what) {
    for (const char *k : keys) {
        EXPECT_TRUE(j.contains(k)) << what << " has no '" << k << "': " << j.dump();
    }
}

TEST_F(Control, ViewsHoldTheKeysOfEveryModule) {
    run_control();
    call("probe.echo", {{"value", 1}});
    call("probe.echo", {{"value", 2}});

    json t = call("tables", json::object());
    expect_keys(t,
                {"version", "ipv4_routes", "ipv6_routes", "routes_by_source", "ecmp_groups",
                 "neighbor_next_hops", "endpoints", "api_ring_full_waits", "probe_entries"},
                "tables");
    EXPECT_EQ(t["endpoints"], 0);
    EXPECT_EQ(t["neighbor_next_hops"], 0);
    EXPECT_EQ(t["probe_entries"], 7);

    json n = call("node.get", json::object());
    expect_keys(n,
                {"node_name", "mtu", "ipv4", "ipv6", "uplink", "host_tap", "neighbors", "bgp",
                 "ipam", "pod_tap", "restore", "probe"},
                "node.get");
    EXPECT_EQ(n["node_name"], "test-node");
    EXPECT_TRUE(n["uplink"].is_null());
    EXPECT_TRUE(n["ipam"].is_null());
    EXPECT_TRUE(n["pod_tap"].is_null()) << "not started";
    EXPECT_EQ(n["probe"], (json{{"started", false}}));

    json s = call("stats", json::object());
    expect_keys(s, {"ports", "workers", "drops", "control", "icmp_errors_sent", "stage_stats"},
                "stats");
    expect_keys(
        s["control"],
        {"worker_ring_full", "punt_unhandled", "api_ring_full_waits", "port_ring_full_waits",
         "host_no_tap", "resolve_no_neighbor", "versions", "route_changes", "probe_calls"},
        "stats.control");
    EXPECT_EQ(s["control"]["probe_calls"], 2);
    EXPECT_EQ(s["workers"].size(), 1u);

    EXPECT_EQ(call("version", json::object()), (json{{"version", FWD_VERSION}}));
}

// ---------------------------------------------------------------------------------------------
// Routes, through the real routes module into the tables.

TEST_F(Control, RouteAddListDel) {
    if (!start_all()) {
        GTEST_SKIP() << "needs root: starting makes the pod tap";
    }
    uint64_t v0 = call("tables", json::object())["version"];
    json r = call("route.add", {{"prefix", "10.99.0.0/16"}, {"type", "blackhole"}});
    EXPECT_EQ(r["added"], 1);
    EXPECT_EQ(r["version"], v0 + 1);
    r = call("route.add", {{"prefix", "fd00:99::/32"}, {"type", "unreachable"}});
    EXPECT_EQ(r["version"], v0 + 2);

    json l = call("route.list", json::object());
    ASSERT_EQ(l["total"], 2) << l.dump();
    json want4 = {
        {"kind", "blackhole"}, {"prefix", "10.99.0.0/16"}, {"source", "static"}, {"active", true}};
    EXPECT_EQ(call("route.list", {{"family", "ipv4"}})["routes"], json::array({want4}));
    json l6 = call("route.list", {{"family", "ipv6"}});
    ASSERT_EQ(l6["routes"].size(), 1u);
    EXPECT_EQ(l6["routes"][0]["kind"], "unreachable");
    EXPECT_EQ(l6["routes"][0]["prefix"], "fd00:99::/32");

    // In the tables the workers read.
    uint32_t nh = 0;
    ASSERT_EQ(rte_lpm_lookup(tables_->lpm4(), 0x0a630101 /* 10.99.1.1 */, &nh), 0);
    EXPECT_EQ(dp::load_kind(tables_->nh(nh)), dp::NhKind::kBlackhole);
    uint8_t ip6[1][16] = {{0xfd, 0x00, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
    uint64_t nh6 = 0;
    ASSERT_EQ(rte_fib6_lookup_bulk(tables_->fib6(), ip6, &nh6, 1), 0);
    EXPECT_EQ(dp::load_kind(tables_->nh(static_cast<uint32_t>(nh6))), dp::NhKind::kUnreachable);
    EXPECT_EQ(call("tables", json::object())["ipv4_routes"], 1);

    r = call("route.del", {{"prefix", "10.99.0.0/16"}});
    EXPECT_EQ(r["deleted"], 1);
    EXPECT_EQ(call("route.list", {{"family", "ipv4"}})["total"], 0);
    EXPECT_EQ(call("route.list", json::object())["total"], 1);
    EXPECT_NE(rte_lpm_lookup(tables_->lpm4(), 0x0a630101, &nh), 0) << "still in the LPM";
    ApiError e = error_of("route.del", {{"prefix", "10.99.0.0/16"}});
    EXPECT_EQ(e.code(), "not_found");
    call("route.del", {{"prefix", "fd00:99::/32"}});
    EXPECT_EQ(call("route.list", json::object())["total"], 0);
}

TEST_F(Control, RouteViaNeedsAnUplink) {
    run_control();
    ApiError e = error_of("route.add", {{"prefix", "10.98.0.0/16"}, {"via", "192.168.50.1"}});
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_NE(std::string(e.what()).find("uplink"), std::string::npos) << e.what();
    EXPECT_EQ(call("route.list", json::object())["total"], 0);
}

// ---------------------------------------------------------------------------------------------
// The life of a module.

TEST_F(Control, ModulesStartInOrderAndStopInReverse) {
    if (!start_all()) {
        GTEST_SKIP() << "needs root: starting makes the pod tap";
    }
    json n = call("node.get", json::object());
    EXPECT_EQ(n["probe"], (json{{"started", true}}));
    EXPECT_FALSE(n["pod_tap"].is_null()) << "the tap kind started: " << n.dump();
    EXPECT_NE(if_nametoindex(g_pod_tap.c_str()), 0u) << "no pod tap " << g_pod_tap;

    ctl_->offline();
    stop_control();
    as_worker([&] { ctl_->shutdown(); });
    started_ = false;
    EXPECT_EQ(if_nametoindex(g_pod_tap.c_str()), 0u) << "pod tap left behind";
    EXPECT_EQ(worker_->rx_queue_count(), 0) << "the pod tap's queue left with it";
    ctl_.reset();
    EXPECT_EQ(lifecycle(),
              (std::vector<std::string>{"probe_base.start", "probe.start", "probe_base.online",
                                        "probe.online", "probe.offline", "probe_base.offline",
                                        "probe.stop", "probe_base.stop"}));
    EXPECT_EQ(events_of("probe"),
              (std::vector<std::string>{"make", "start", "online", "offline", "stop", "destroy"}));
}

// A module whose start() throws: the start fails with its message, and the
// modules started before it are stopped again (with this thread running
// the workers' commands: they never ran).
TEST_F(Control, FailedStartStopsWhatStarted) {
    if (geteuid() != 0) {
        GTEST_SKIP() << "needs root: starting makes the pod tap";
    }
    g_fail_start = true;
    try {
        ctl_->start();
        ADD_FAILURE() << "started";
    } catch (const std::runtime_error &e) {
        EXPECT_STREQ(e.what(), "probe refuses to start");
    }
    EXPECT_EQ(lifecycle(),
              (std::vector<std::string>{"probe_base.start", "probe.start", "probe_base.stop"}));
    // The endpoints module (before probe: 'e' < 'p') made the tap; it went again.
    EXPECT_EQ(if_nametoindex(g_pod_tap.c_str()), 0u) << "pod tap left behind";
    EXPECT_EQ(worker_->rx_queue_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Punts.

TEST_F(Control, PuntReasonHasOneHandler) {
    EXPECT_NE(g_punt_error.find("'host'"), std::string::npos) << g_punt_error;
    EXPECT_NE(g_punt_error.find("has a handler already"), std::string::npos) << g_punt_error;
    EXPECT_THROW(ctl_->on_punt(dp::PuntReason::kNeighbor, [](rte_mbuf *) {}), std::logic_error);
    EXPECT_THROW(ctl_->on_punt(dp::PuntReason::kResolve, [](rte_mbuf *) {}), std::logic_error);
}

// Punted packets reach the module that handles their reason (neighbors,
// which counts what it cannot use and frees it).
TEST_F(Control, PuntsGoToTheirHandler) {
    run_control();
    rte_mbuf *host = rte_pktmbuf_alloc(g_pool);
    rte_mbuf *resolve = rte_pktmbuf_alloc(g_pool);
    ASSERT_NE(host, nullptr);
    ASSERT_NE(resolve, nullptr);
    ASSERT_NE(rte_pktmbuf_append(host, 60), nullptr);
    ASSERT_NE(rte_pktmbuf_append(resolve, 60), nullptr);
    dp::meta(resolve) = dp::PktMeta{};
    dp::meta(resolve).nh = 4242;  // no neighbor's next hop
    ASSERT_TRUE(worker_->punt(host, dp::PuntReason::kHost));
    ASSERT_TRUE(worker_->punt(resolve, dp::PuntReason::kResolve));
    json c;
    for (int i = 0; i < 2000; i++) {
        c = call("stats", json::object())["control"];
        if (c["host_no_tap"] == 1 && c["resolve_no_neighbor"] == 1) {
            break;
        }
        std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(c["host_no_tap"], 1) << c.dump();
    EXPECT_EQ(c["resolve_no_neighbor"], 1) << c.dump();
    EXPECT_EQ(c["punt_unhandled"], 0);
}

// ---------------------------------------------------------------------------------------------
// Endpoints and their kinds.

TEST_F(Control, EndpointOfAnUnknownKindNamesTheKinds) {
    run_control();
    ApiError e =
        error_of("endpoint.add",
                 {{"id", "pod1"}, {"kind", "bogus"}, {"netns", "ns1"}, {"ipv4", "10.70.0.2"}});
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "kind must be 'tap' or 'vhost-user', got 'bogus'");
    EXPECT_EQ(call("endpoint.list", json::object())["endpoints"], json::array());
}

TEST_F(Control, TapEndpointBeforeStartIsUnavailable) {
    run_control();
    ApiError e = error_of("endpoint.add", {{"id", "pod1"},
                                           {"kind", "tap"},
                                           {"netns", "ns1"},
                                           {"ipv4", "10.70.0.2"},
                                           {"ipv6", "fd00:70::2"}});
    EXPECT_EQ(e.code(), "unavailable");
    EXPECT_EQ(std::string(e.what()).rfind("no pod tap", 0), 0u) << e.what();
    // Nothing of it stays: no endpoint, no route.
    EXPECT_EQ(call("endpoint.list", json::object())["endpoints"], json::array());
    EXPECT_EQ(call("route.list", {{"source", "endpoint"}})["total"], 0);
    EXPECT_EQ(call("tables", json::object())["endpoints"], 0);
    // The default kind is tap.
    e = error_of("endpoint.add", {{"id", "pod2"}, {"netns", "ns1"}, {"ipv4", "10.70.0.3"}});
    EXPECT_EQ(e.code(), "unavailable");
}

// ---------------------------------------------------------------------------------------------
// Soft ports: ports a feature's driver does the I/O of (ports.hpp).

PortsModule::SoftPort soft_port(std::string name, uint8_t driver, void *ctx,
                                dp::PortRole role = dp::PortRole::kPod) {
    PortsModule::SoftPort p;
    p.name = std::move(name);
    p.driver = driver;
    p.ctx = ctx;
    p.mac = net::MacAddr({0x02, 0x50, 0x00, 0x00, driver, static_cast<uint8_t>(role)});
    p.role = role;
    return p;
}

// Guards add_soft_port: ids from kFirstSoftPort up, its PortState written
// whole (driver, ctx, MAC, role; what an earlier user of the id left in
// vlan cleared); all kMaxSoftPorts ids usable and the next one
// refused with ApiError "unavailable"; an id given back is given again.
TEST_F(Control, SoftPortsTakeIdsFromTheFirstSoftPort) {
    auto &ports = ctl_->need<PortsModule>();
    int ctx_a = 0, ctx_b = 0, ctx_n = 0;
    dp::PortState &dirty = tables_->port_mut(dp::kFirstSoftPort);
    dirty.vlan = 7;

    PortsModule::SoftPort a = soft_port("tun_a", 3, &ctx_a);
    uint16_t ia = ports.add_soft_port(a);
    EXPECT_EQ(ia, dp::kFirstSoftPort);
    const dp::PortState &pa = tables_->port(ia);
    EXPECT_EQ(pa.driver, 3);
    EXPECT_EQ(pa.driver_ctx, &ctx_a);
    EXPECT_EQ(pa.mac, a.mac.bytes());
    EXPECT_EQ(pa.role.load(), dp::PortRole::kPod);
    EXPECT_EQ(pa.vlan, 0);

    uint16_t ib = ports.add_soft_port(soft_port("tun_b", 4, &ctx_b, dp::PortRole::kUplink));
    EXPECT_EQ(ib, dp::kFirstSoftPort + 1);
    EXPECT_EQ(tables_->port(ib).driver, 4);
    EXPECT_EQ(tables_->port(ib).driver_ctx, &ctx_b);
    EXPECT_EQ(tables_->port(ib).role.load(), dp::PortRole::kUplink) << "the role given";

    size_t out_of_order = 0;
    for (uint16_t i = 2; i < dp::kMaxSoftPorts; i++) {
        uint16_t id = ports.add_soft_port(soft_port("tun" + std::to_string(i), 1, &ctx_n));
        out_of_order += id != dp::kFirstSoftPort + i;
    }
    EXPECT_EQ(out_of_order, 0u);
    ASSERT_EQ(ports.soft_ports().size(), dp::kMaxSoftPorts);
    EXPECT_EQ(ports.soft_ports().begin()->first, dp::kFirstSoftPort);
    EXPECT_EQ(ports.soft_ports().rbegin()->first, dp::kMaxPorts - 1);
    EXPECT_EQ(ports.soft_ports().at(ia).name, "tun_a");
    EXPECT_EQ(tables_->port(dp::kMaxPorts - 1).role.load(), dp::PortRole::kPod);

    try {
        ports.add_soft_port(soft_port("one_too_many", 1, &ctx_n));
        ADD_FAILURE() << "soft port " << dp::kMaxSoftPorts + 1 << " given";
    } catch (const ApiError &e) {
        EXPECT_EQ(e.code(), "unavailable");
    }
    EXPECT_EQ(ports.soft_ports().size(), dp::kMaxSoftPorts);

    // One given back in the middle: the next one gets its id.
    const uint16_t freed = dp::kFirstSoftPort + 500;
    as_worker([&] { ports.remove_soft_port(freed); });
    EXPECT_EQ(ports.soft_ports().size(), dp::kMaxSoftPorts - 1);
    uint16_t again = ports.add_soft_port(soft_port("tun_again", 2, &ctx_b));
    EXPECT_EQ(again, freed);
    EXPECT_EQ(tables_->port(again).driver, 2);
    EXPECT_EQ(ports.soft_ports().at(again).name, "tun_again");
}

// Guards remove_soft_port: the port retired as retire() does it (role kNone
// first, then it waits until the worker acknowledged kDropPort, which takes
// the port's RX queue from it), its driver and ctx cleared, its id free; an
// id that is not a soft port's is left alone.
TEST_F(Control, RemovedSoftPortIsRetired) {
    auto &ports = ctl_->need<PortsModule>();
    int ctx = 0;
    uint16_t id = ports.add_soft_port(soft_port("tun_gone", 5, &ctx));
    uint16_t kept = ports.add_soft_port(soft_port("tun_kept", 5, &ctx));
    ASSERT_NE(worker_->post({dp::WorkerCommand::Kind::kAddRxQueue, id, 0, 0}), 0u);
    ASSERT_NE(worker_->post({dp::WorkerCommand::Kind::kAddRxQueue, kept, 0, 0}), 0u);
    worker_->drain_commands();
    ASSERT_EQ(worker_->rx_queue_count(), 2);

    auto done = std::async(std::launch::async, [&] { ports.remove_soft_port(id); });
    EXPECT_EQ(done.wait_for(200ms), std::future_status::timeout)
        << "returned before the worker acknowledged kDropPort";
    EXPECT_EQ(tables_->port(id).role.load(), dp::PortRole::kNone) << "role kNone first";
    while (done.wait_for(1ms) != std::future_status::ready) {
        worker_->drain_commands();
    }
    done.get();
    EXPECT_EQ(worker_->rx_queue_count(), 1) << "the worker dropped the port's queue";
    const dp::PortState &ps = tables_->port(id);
    EXPECT_EQ(ps.driver, 0);
    EXPECT_EQ(ps.driver_ctx, nullptr);
    EXPECT_EQ(ports.soft_ports().count(id), 0u);
    EXPECT_EQ(tables_->port(kept).role.load(), dp::PortRole::kPod) << "the other one stays";
    EXPECT_EQ(tables_->port(kept).driver_ctx, &ctx);

    // Not a soft port (an ethdev's id, one never given): nothing happens.
    tables_->port_mut(0).role.store(dp::PortRole::kPod);
    uint64_t acked = worker_->acked();
    ports.remove_soft_port(0);
    ports.remove_soft_port(dp::kFirstSoftPort + 77);
    EXPECT_EQ(tables_->port(0).role.load(), dp::PortRole::kPod);
    worker_->drain_commands();
    EXPECT_EQ(worker_->acked(), acked) << "a command was posted";
    EXPECT_EQ(ports.soft_ports().size(), 1u);
}

// Guards the stats op's soft port rows: one per soft port, with its id,
// name and kind, and the fields its stats callback returns (none without
// one).
TEST_F(Control, StatsListSoftPortsWithTheirCallbacksFields) {
    auto &ports = ctl_->need<PortsModule>();
    int ctx = 0;
    int calls = 0;
    PortsModule::SoftPort a = soft_port("tun_stats", 1, &ctx);
    a.stats = [&calls] {
        calls++;
        return json{{"rx_packets", 11}, {"tx_packets", 22}, {"tx_dropped", 3}};
    };
    uint16_t ia = ports.add_soft_port(a);
    uint16_t ib = ports.add_soft_port(soft_port("tun_quiet", 1, &ctx, dp::PortRole::kUplink));
    run_control();
    json s = call("stats", json::object());
    std::map<uint16_t, json> rows;
    for (const json &r : s["ports"]) {
        uint16_t id = r["port_id"];
        if (id >= dp::kFirstSoftPort) {
            rows[id] = r;
        }
    }
    ASSERT_EQ(rows.size(), 2u) << s["ports"].dump();
    json &ra = rows[ia];
    EXPECT_EQ(ra["name"], "tun_stats");
    EXPECT_EQ(ra["kind"], "pod");
    EXPECT_EQ(ra["rx_packets"], 11);
    EXPECT_EQ(ra["tx_packets"], 22);
    EXPECT_EQ(ra["tx_dropped"], 3);
    EXPECT_TRUE(ra.contains("link")) << ra.dump();
    json &rb = rows[ib];
    EXPECT_EQ(rb["name"], "tun_quiet");
    EXPECT_EQ(rb["kind"], "uplink");
    EXPECT_FALSE(rb.contains("rx_packets")) << rb.dump();
    EXPECT_EQ(calls, 1);
}

// ---------------------------------------------------------------------------------------------
// Endpoint events: what endpoint_watch (above) is told, and when.

// A started Controller (the shared pod tap) and a network namespace of its
// own as the pods' (deleted at the end).
class EndpointEvents : public Control {
  protected:
    void SetUp() override {
        g_ep_events.clear();
        g_watch_refuse_at.reset();
        Control::SetUp();
        if (geteuid() != 0) {
            GTEST_SKIP() << "needs root: the pod tap and a network namespace";
        }
        netns_ = make_netns("fwdtcev");
        ASSERT_FALSE(netns_.empty());
        ASSERT_TRUE(start_all());
    }
    void TearDown() override {
        Control::TearDown();
        for (const std::string &ns : made_) {
            EXPECT_EQ(std::system(("ip netns del " + ns).c_str()), 0) << ns;
        }
    }
    // A network namespace named prefix<pid> (one pod each: a pod's gateway
    // routes are its namespace's); "" when it cannot be made.
    // The endpoint record's files (endpoint_record.hpp), its lock aside.
    std::set<std::string> record_files() const {
        std::set<std::string> out;
        std::error_code ec;
        for (const auto &f :
             std::filesystem::directory_iterator(cfg_.state_dir + "/endpoints", ec)) {
            if (f.path().filename() != "lock") {
                out.insert(f.path().filename().string());
            }
        }
        return out;
    }
    std::string make_netns(const std::string &prefix) {
        std::string ns = prefix + std::to_string(getpid());
        if (std::system(("ip netns add " + ns).c_str()) != 0) {
            ADD_FAILURE() << "ip netns add " << ns;
            return "";
        }
        made_.push_back(ns);
        return ns;
    }

    // endpoint.add's arguments of a tap pod: 10.70.0.<n>, fd00:70::<n>, in
    // netns (netns_ when empty).
    json pod(const std::string &id, int n, const std::string &ifname = "eth0",
             const std::string &netns = "") const {
        return json{{"id", id},
                    {"netns", netns.empty() ? netns_ : netns},
                    {"ifname", ifname},
                    {"ipv4", "10.70.0." + std::to_string(n)},
                    {"ipv6", "fd00:70::" + std::to_string(n)}};
    }
    // The events so far as "<who>:<event>:<id>"; forgets them with clear.
    static std::vector<std::string> events(bool clear = false) {
        std::vector<std::string> v;
        for (const EpEvent &e : g_ep_events) {
            v.push_back(std::string(1, e.who) + ":" + event_name(e.event) + ":" + e.id);
        }
        if (clear) {
            g_ep_events.clear();
        }
        return v;
    }
    // No trace of pod n: no endpoint, no route in the RIB or the tables, no
    // interface in the namespace.
    void expect_gone(int n, const std::string &ifname = "eth0") {
        EXPECT_EQ(call("endpoint.list", json::object())["endpoints"], json::array());
        EXPECT_EQ(call("route.list", {{"source", "endpoint"}})["total"], 0);
        EXPECT_EQ(call("tables", json::object())["endpoints"], 0);
        auto a4 = net::Ip4Addr::parse("10.70.0." + std::to_string(n));
        auto a6 = net::Ip6Addr::parse("fd00:70::" + std::to_string(n));
        ASSERT_TRUE(a4 && a6);
        EXPECT_EQ(lookup4(*tables_, *a4), dp::kNhInvalid) << "still in the LPM";
        EXPECT_EQ(lookup6(*tables_, *a6), dp::kNhInvalid) << "still in the FIB";
        EXPECT_FALSE(pod_interface_exists(netns_, ifname)) << ifname << " left in " << netns_;
    }

    std::string netns_;
    std::vector<std::string> made_;  // namespaces to delete
};

// Guards the order of an add's events (kAttached, then kLive, each to the
// subscribers in subscription order) and what each finds: at kAttached the
// pod's interface and next hop exist but neither its /32 nor its /128 is in
// the RIB or the tables, and the pod has no routes of its own (a feature
// programs its state before the pod's first packet can arrive, either way);
// at kLive both routes are live, the pod's too. The endpoint given is the
// one endpoint.add answers with.
TEST_F(EndpointEvents, AddTellsAttachedThenLive) {
    json r = call("endpoint.add", pod("pod-ev1", 2));
    ASSERT_EQ(events(), (std::vector<std::string>{"a:attached:pod-ev1", "b:attached:pod-ev1",
                                                  "a:live:pod-ev1", "b:live:pod-ev1"}));
    for (const EpEvent &e : g_ep_events) {
        SCOPED_TRACE(std::string(1, e.who) + " " + event_name(e.event));
        EXPECT_EQ(e.netns, netns_);
        EXPECT_EQ(e.ifname, "eth0");
        EXPECT_EQ(e.mac, r["mac"]);
        EXPECT_EQ(e.port_id, r["port_id"]);
        ASSERT_TRUE(e.ipv4 && e.ipv6);
        EXPECT_EQ(e.ipv4->str(), "10.70.0.2");
        EXPECT_EQ(e.ipv6->str(), "fd00:70::2");
        EXPECT_NE(e.nh, dp::kNhInvalid) << "no next hop yet";
        EXPECT_EQ(e.nh, g_ep_events[0].nh);
        EXPECT_TRUE(e.pod_if) << "no interface in the pod yet";
        const bool live = e.event == EndpointsModule::Event::kLive;
        EXPECT_EQ(e.rib4, live) << "the /32 in the RIB";
        EXPECT_EQ(e.rib6, live) << "the /128 in the RIB";
        EXPECT_EQ(e.fib4, live) << "the /32 in the tables";
        EXPECT_EQ(e.fib6, live) << "the /128 in the tables";
        EXPECT_EQ(e.pod_routed, live) << "the pod's own routes";
    }
    EXPECT_EQ(call("route.list", {{"source", "endpoint"}})["total"], 2);
}

// Guards endpoint.del's event: kRemoving, to the subscribers in reverse
// order, while the pod's routes are still in the RIB and the tables, and its
// interface already gone (silenced first: nothing it sends reaches a worker
// once its state goes); once del answered the routes are gone too.
TEST_F(EndpointEvents, DelTellsRemovingWhileTheRoutesExist) {
    call("endpoint.add", pod("pod-ev1", 2));
    const uint32_t nh = g_ep_events.at(0).nh;
    events(true);
    EXPECT_EQ(call("endpoint.del", {{"id", "pod-ev1"}}),
              (json{{"id", "pod-ev1"}, {"deleted", true}}));
    ASSERT_EQ(events(), (std::vector<std::string>{"b:removing:pod-ev1", "a:removing:pod-ev1"}));
    for (const EpEvent &e : g_ep_events) {
        SCOPED_TRACE(std::string(1, e.who));
        EXPECT_EQ(e.nh, nh);
        EXPECT_TRUE(e.rib4 && e.rib6) << "routes left the RIB before kRemoving";
        EXPECT_TRUE(e.fib4 && e.fib6) << "routes left the tables before kRemoving";
        EXPECT_FALSE(e.pod_if) << "the pod's interface still there at kRemoving";
    }
    expect_gone(2);
}

// Guards a refusal at kAttached: endpoint.add fails with the subscriber's
// code and message and undoes everything (no endpoint, no route, no macvlan
// in the namespace); the subscribers told of kAttached are told kRemoving
// (reverse order), and nobody kLive. The same endpoint can then be added.
TEST_F(EndpointEvents, RefusalAtAttachedUndoesTheEndpoint) {
    g_watch_refuse_at = EndpointsModule::Event::kAttached;
    ApiError e = error_of("endpoint.add", pod("pod-ev1", 2));
    EXPECT_EQ(e.code(), "invalid_argument");
    EXPECT_STREQ(e.what(), "endpoint_watch refuses pod-ev1");
    EXPECT_EQ(events(), (std::vector<std::string>{"a:attached:pod-ev1", "b:attached:pod-ev1",
                                                  "b:removing:pod-ev1", "a:removing:pod-ev1"}));
    expect_gone(2);
    EXPECT_EQ(call("node.get", json::object())["pod_tap"]["endpoints"], 0);

    g_watch_refuse_at.reset();
    events(true);
    json r = call("endpoint.add", pod("pod-ev1", 2));
    EXPECT_EQ(r["id"], "pod-ev1");
    EXPECT_EQ(events(), (std::vector<std::string>{"a:attached:pod-ev1", "b:attached:pod-ev1",
                                                  "a:live:pod-ev1", "b:live:pod-ev1"}));
    EXPECT_EQ(call("route.list", {{"source", "endpoint"}})["total"], 2);
}

// Guards a refusal at kRemoving: it is ignored; the removal goes on, the
// other subscribers are still told, and nothing of the pod stays.
TEST_F(EndpointEvents, RefusalAtRemovingDoesNotStopTheRemoval) {
    call("endpoint.add", pod("pod-ev1", 2));
    events(true);
    g_watch_refuse_at = EndpointsModule::Event::kRemoving;
    EXPECT_EQ(call("endpoint.del", {{"id", "pod-ev1"}}),
              (json{{"id", "pod-ev1"}, {"deleted", true}}));
    EXPECT_EQ(events(), (std::vector<std::string>{"b:removing:pod-ev1", "a:removing:pod-ev1"}));
    expect_gone(2);
}

// Guards shutdown: every endpoint still there is told kRemoving (each to
// the subscribers in reverse order) while its routes still exist; the pods
// keep their interfaces (a stop is a restart's first half, as kill -9) and
// the pod tap stays for the next daemon.
TEST_F(EndpointEvents, ShutdownTellsRemovingForEachEndpointAndKeepsThePods) {
    const std::string ns2 = make_netns("fwdtcev2_");
    ASSERT_FALSE(ns2.empty());
    call("endpoint.add", pod("pod-ev1", 2));
    call("endpoint.add", pod("pod-ev2", 3, "eth0", ns2));
    ASSERT_TRUE(pod_interface_exists(netns_, "eth0"));
    ASSERT_TRUE(pod_interface_exists(ns2, "eth0"));
    events(true);
    ctl_->offline();
    stop_control();
    as_worker([&] { ctl_->shutdown(); });
    started_ = false;
    std::vector<std::string> seen = events();
    ASSERT_EQ(seen.size(), 4u) << ::testing::PrintToString(seen);
    std::map<std::string, std::string> order;  // id: who, in order
    for (const EpEvent &e : g_ep_events) {
        EXPECT_EQ(e.event, EndpointsModule::Event::kRemoving);
        order[e.id] += e.who;
        EXPECT_TRUE(e.rib4 && e.rib6 && e.fib4 && e.fib6) << e.id << ": routes gone before";
    }
    EXPECT_EQ(order, (std::map<std::string, std::string>{{"pod-ev1", "ba"}, {"pod-ev2", "ba"}}));
    EXPECT_TRUE(pod_interface_exists(netns_, "eth0"));
    EXPECT_TRUE(pod_interface_exists(ns2, "eth0"));
    EXPECT_NE(if_nametoindex(g_pod_tap.c_str()), 0u) << "the pod tap went with its pods";
    EXPECT_EQ(record_files(), (std::set<std::string>{"pod-ev1.json", "pod-ev2.json"}));
}

// Guards node.shutdown: it asks the process to stop (refused where nothing
// can stop it, and then nothing changes); with remove_pods the stop takes
// every pod's interface, the pod tap and the records.
TEST_F(EndpointEvents, ShutdownWithRemovePodsTakesThePodsAway) {
    const std::string ns2 = make_netns("fwdtcev3_");
    ASSERT_FALSE(ns2.empty());
    call("endpoint.add", pod("pod-ev1", 2));
    call("endpoint.add", pod("pod-ev2", 3, "eth0", ns2));
    EXPECT_EQ(error_of("node.shutdown", {{"remove_pods", true}}).code(), "unavailable");
    int stops = 0;
    ctl_->set_stop_request([&stops] { ++stops; });
    EXPECT_EQ(error_of("node.shutdown", {{"remove_pods", "yes"}}).code(), "invalid_argument");
    EXPECT_EQ(error_of("node.shutdown", {{"drain", true}}).code(), "invalid_argument");
    EXPECT_EQ(stops, 0);
    EXPECT_EQ(call("node.shutdown", {{"remove_pods", true}}),
              (json{{"stopping", true}, {"remove_pods", true}}));
    EXPECT_EQ(stops, 1);
    ctl_->offline();
    stop_control();
    as_worker([&] { ctl_->shutdown(); });
    started_ = false;
    EXPECT_FALSE(pod_interface_exists(netns_, "eth0"));
    EXPECT_FALSE(pod_interface_exists(ns2, "eth0"));
    EXPECT_EQ(if_nametoindex(g_pod_tap.c_str()), 0u) << "pod tap left behind";
    EXPECT_EQ(record_files(), std::set<std::string>{});
}

// Guards endpoint.get's port_stats: null for a tap endpoint (kernel pods
// share the tap, whose counters are no one pod's); the rest of get's answer
// is add's.
TEST_F(EndpointEvents, TapEndpointHasNoPortStats) {
    json r = call("endpoint.add", pod("pod-ev1", 2));
    json g = call("endpoint.get", {{"id", "pod-ev1"}});
    ASSERT_TRUE(g.contains("port_stats")) << g.dump();
    EXPECT_TRUE(g["port_stats"].is_null()) << g["port_stats"].dump();
    g.erase("port_stats");
    EXPECT_EQ(g, r);
    EXPECT_EQ(r["port"], "shared");
}

// ---------------------------------------------------------------------------------------------
// RCU: defer / reclaim.

TEST_F(Control, DeferredRunsAtReclaimAfterAGracePeriod) {
    std::atomic<int> ran{0};
    rte_rcu_qsbr_thread_online(qsbr_, 0);  // worker 0 reads from now on
    ctl_->defer([&] { ran++; });
    EXPECT_EQ(ran.load(), 0) << "defer ran it";
    auto reclaimed = std::async(std::launch::async, [&] { ctl_->reclaim(); });
    EXPECT_EQ(reclaimed.wait_for(100ms), std::future_status::timeout)
        << "reclaim did not wait for the worker";
    EXPECT_EQ(ran.load(), 0) << "ran before the grace period";
    rte_rcu_qsbr_quiescent(qsbr_, 0);
    ASSERT_EQ(reclaimed.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(ran.load(), 1);

    // Nothing deferred: no wait, nothing run again.
    auto nothing = std::async(std::launch::async, [&] { ctl_->reclaim(); });
    EXPECT_EQ(nothing.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(ran.load(), 1);
    rte_rcu_qsbr_thread_offline(qsbr_, 0);
}

TEST_F(Control, WhatADeferredFunctionDefersWaitsForTheNextReclaim) {
    std::atomic<int> ran{0};
    ctl_->defer([&] {
        ran += 1;
        ctl_->defer([&] { ran += 10; });
    });
    ctl_->defer([&] { ran += 100; });
    ctl_->reclaim();
    EXPECT_EQ(ran.load(), 101);
    ctl_->reclaim();
    EXPECT_EQ(ran.load(), 111);
}

}  // namespace
}  // namespace fwd::control::test

// EAL without hugepages on one lcore, a packet pool, then gtest.
int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (!fwd::dp::eal_init_for_test(argv[0], "fwdctltest", 256)) {
        return 1;
    }
    using fwd::control::test::g_pool;
    fwd::control::test::g_pod_tap = "fwdtc" + std::to_string(getpid());
    g_pool = rte_pktmbuf_pool_create("ctl_pool", 4095, 0 /* no cache: exact counts */,
                                     fwd::dp::kMetaSize, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    if (g_pool == nullptr) {
        std::fprintf(stderr, "rte_pktmbuf_pool_create failed\n");
        fwd::dp::eal_cleanup_all();
        return 1;
    }
    int rc = RUN_ALL_TESTS();
    rte_mempool_free(g_pool);
    fwd::dp::eal_cleanup_all();
    return rc;
}
