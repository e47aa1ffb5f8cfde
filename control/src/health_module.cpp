// The "health" module: Felix's /liveness and /readiness (config "health",
// observe.hpp) and the API op "health" (`fwdctl health`).
//
//   live   every worker reached its housekeeping point (Worker::heartbeat_tsc)
//          and the control loop ran a pass within kStaleMs
//   ready  live's control loop, and: the modules started and the control
//          thread serves (the tables are loaded), the IPAM store answered
//          the sync's last round (with an ipam section), the uplink's link
//          is up (with an uplink)
// 200 or 503, with {"live"|"ready": bool, "reasons": [what is not]}.
//
// Threads: the control loop bumps its heartbeat and recomputes the
// readiness conditions (kReadyPeriodMs) into atomics; civetweb's threads and
// the op (API thread) only read atomics, so a stuck control thread is
// reported instead of hanging the probe.
#include <rte_cycles.h>

#include <CivetServer.h>

#include <atomic>
#include <memory>
#include <utility>

#include "fwd/control/ipam_module.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/observe.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/util/registry.hpp"
#include "listen_op.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

// A heartbeat older than this is a stuck thread. Long next to anything a
// healthy one waits for: an idle worker sleeps at most its max_sleep_us or
// blocks at most its max_block_ms (10 s at most), the
// control loop polls at least every 10 ms, and an op that blocks it (a worker
// command) gives up after 5 s.
constexpr uint64_t kStaleMs = 10000;
constexpr uint64_t kReadyPeriodMs = 100;

// Readiness conditions, one bit each (0: all met).
enum NotReady : uint32_t {
    kNotStarted = 1u << 0,
    kIpamStore = 1u << 1,
    kUplinkDown = 1u << 2,
};

class Probe final : public CivetHandler {
  public:
    using Fn = std::function<std::pair<bool, json>()>;
    explicit Probe(Fn fn) : fn_(std::move(fn)) {}

    bool handleGet(CivetServer *, mg_connection *c) override {
        const auto [ok, body] = fn_();
        const std::string text = body.dump() + "\n";
        mg_printf(c,
                  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                  "%zu\r\nConnection: close\r\n\r\n%s",
                  ok ? 200 : 503, ok ? "OK" : "Service Unavailable", text.size(), text.c_str());
        return true;
    }

  private:
    Fn fn_;
};

class HealthModule final : public Module {
  public:
    static constexpr const char *kName = "health";

    explicit HealthModule(ControlContext &ctx)
        : ctx_(ctx),
          ports_(ctx.need<PortsModule>()),
          ipam_(ctx.need<IpamModule>()),
          live_([this] { return liveness(); }),
          ready_([this] { return readiness(); }),
          listener_(
              "health", ctx.cfg().section<HealthConfig>("health"),
              [this](const std::string &where) {
                  server_ = std::make_unique<CivetServer>(
                      std::vector<std::string>{"listening_ports", where, "num_threads", "2"});
                  server_->addHandler("/liveness", live_);
                  server_->addHandler("/readiness", ready_);
                  log::info("health: /liveness and /readiness on {}", where);
              },
              [this] { server_.reset(); }) {
        ctx.add_op({.name = "health",
                    .args = {},
                    .fn = [this](const json &) { return report(); },
                    .thread = OpDef::Thread::kApi});
        add_listen_op(ctx, "health.listen", listener_);
    }

    void online() override { listener_.online(); }
    void offline() override { listener_.offline(); }
    void stop() override { listener_.offline(); }

    // Control thread, every loop pass.
    bool poll() override {
        const uint64_t now = ControlContext::now_ms();
        control_ms_.store(now, std::memory_order_relaxed);
        if (now - checked_ms_ >= kReadyPeriodMs) {
            checked_ms_ = now;
            not_ready_.store(conditions(), std::memory_order_relaxed);
        }
        return false;  // never work: the loop's back-off stays as it is
    }

    void describe_node(json &out) const override {
        const ListenConfig c = listener_.config();
        out["health"] = c.enabled ? json{{"listen", listening_ports(c)}} : json();
    }

  private:
    uint32_t conditions() const {
        uint32_t bits = 0;
        if (IpamSync *sync = ipam_.sync(); sync != nullptr && !sync->status().value("ok", false)) {
            bits |= kIpamStore;
        }
        if (const auto &up = ports_.uplink();
            up && !ports_.link_json(up->port).value("up", false)) {
            bits |= kUplinkDown;
        }
        return bits;
    }

    // Any thread: atomics only.
    std::pair<bool, json> liveness() const {
        json reasons = json::array();
        const uint64_t hz = rte_get_tsc_hz();
        const uint64_t now = rte_rdtsc();
        const auto &workers = ctx_.workers();
        for (size_t w = 0; w < workers.size(); w++) {
            const uint64_t hb = workers[w]->heartbeat_tsc();
            if (hb == 0 || (now > hb && (now - hb) / (hz / 1000) > kStaleMs)) {
                reasons.push_back("worker " + std::to_string(w) + " made no progress for " +
                                  (hb == 0 ? std::string("ever")
                                           : std::to_string((now - hb) / (hz / 1000)) + " ms"));
            }
        }
        control_stale(reasons);
        return {reasons.empty(), json{{"live", reasons.empty()}, {"reasons", reasons}}};
    }

    std::pair<bool, json> readiness() const {
        json reasons = json::array();
        const uint32_t bits = not_ready_.load(std::memory_order_relaxed);
        if (bits & kNotStarted) {
            reasons.push_back("the control thread has not loaded the tables yet");
        }
        if (bits & kIpamStore) {
            reasons.push_back("the IPAM store " + ctx_.cfg().ipam->store +
                              " did not answer the last sync round");
        }
        if (bits & kUplinkDown) {
            reasons.push_back("the uplink's link is down");
        }
        control_stale(reasons);
        return {reasons.empty(), json{{"ready", reasons.empty()}, {"reasons", reasons}}};
    }

    void control_stale(json &reasons) const {
        const uint64_t last = control_ms_.load(std::memory_order_relaxed);
        const uint64_t now = ControlContext::now_ms();
        if (last == 0 || now - std::min(now, last) > kStaleMs) {
            reasons.push_back(last == 0 ? std::string("the control thread has not run yet")
                                        : "the control thread made no progress for " +
                                              std::to_string(now - last) + " ms");
        }
    }

    // API thread.
    json report() const {
        auto [live, l] = liveness();
        auto [ready, r] = readiness();
        return json{{"live", live},
                    {"ready", ready},
                    {"liveness", l["reasons"]},
                    {"readiness", r["reasons"]},
                    {"listen", listen_now()}};
    }

    json listen_now() const {
        const ListenConfig c = listener_.config();
        return c.enabled ? json(listening_ports(c)) : json();
    }

    ControlContext &ctx_;
    PortsModule &ports_;
    IpamModule &ipam_;
    // [C] writes, [any] reads
    std::atomic<uint64_t> control_ms_{0};
    std::atomic<uint32_t> not_ready_{kNotStarted};
    uint64_t checked_ms_ = 0;  // [C]
    Probe live_;
    Probe ready_;
    std::unique_ptr<CivetServer> server_;  // the listener's (under its lock)
    Listener listener_;
};

}  // namespace

FWD_ON_LOAD(register_module<HealthModule>({PortsModule::kName, IpamModule::kName}));

}  // namespace fwd::control
