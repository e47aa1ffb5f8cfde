// The "telemetry" module: the /dpdk_fwd/ commands on DPDK's telemetry
// socket (telemetry.hpp; the "telemetry" config section turns the socket
// off).
//
// Threads: DPDK runs a callback on a thread of its own per connected client,
// so several may run at once. A callback never reads the daemon's state: it
// asks the control thread (ControlContext::call, as a metrics scrape does)
// for the op its command shows and turns the answer into rte_tel_data.
// Workers are not touched; a read costs the control thread one `fwdctl
// stats` or `fwdctl tables`.
//
// Lifetime: DPDK 22.11 cannot unregister a command, and the telemetry
// threads outlive the controller. The callbacks therefore reach the
// controller through one process-wide slot, set in online() and cleared in
// offline() (while the control thread still answers) under a lock the
// callbacks hold shared for the whole call; after offline() they answer
// {"error": "..."} and touch nothing.
#include <rte_telemetry.h>

#include <mutex>
#include <shared_mutex>
#include <string>

#include "fwd/control/log.hpp"
#include "fwd/control/module.hpp"
#include "fwd/control/telemetry.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

struct Slot {
    std::shared_mutex mu;
    ControlContext *ctx = nullptr;  // [main] writes under mu, [telemetry threads] read under mu
    std::string node_name;          // as ctx
};

Slot &slot() {
    static Slot s;
    return s;
}

// j (telemetry::fit's shape) into d, started as a dict or an array.
int fill(rte_tel_data *d, const json &j);

rte_tel_data *container(const json &j) {
    rte_tel_data *c = rte_tel_data_alloc();
    if (c != nullptr && fill(c, j) != 0) {
        rte_tel_data_free(c);
        return nullptr;
    }
    return c;
}

int fill(rte_tel_data *d, const json &j) {
    if (j.is_object()) {
        rte_tel_data_start_dict(d);
        for (const auto &[k, v] : j.items()) {
            if (v.is_structured()) {
                if (rte_tel_data *c = container(v);
                    c != nullptr && rte_tel_data_add_dict_container(d, k.c_str(), c, 0) != 0) {
                    rte_tel_data_free(c);
                }
            } else if (v.is_number_unsigned()) {
                rte_tel_data_add_dict_u64(d, k.c_str(), v.get<uint64_t>());
            } else if (v.is_number_integer()) {
                rte_tel_data_add_dict_int(d, k.c_str(), v.get<int>());
            } else {
                rte_tel_data_add_dict_string(d, k.c_str(), v.get<std::string>().c_str());
            }
        }
        return 0;
    }
    bool numbers = true;
    for (const json &v : j) {
        numbers &= v.is_number_unsigned();
    }
    rte_tel_data_start_array(d, numbers ? RTE_TEL_U64_VAL : RTE_TEL_STRING_VAL);
    for (const json &v : j) {
        if (numbers) {
            rte_tel_data_add_array_u64(d, v.get<uint64_t>());
        } else {
            rte_tel_data_add_array_string(d, v.get<std::string>().c_str());
        }
    }
    return 0;
}

int answer(const char *cmd, const char *params, rte_tel_data *d) {
    json out;
    try {
        std::shared_lock lock(slot().mu);
        if (slot().ctx == nullptr) {
            throw std::runtime_error("dpdk-fwd is not running its control thread");
        }
        const telemetry::Command *c = nullptr;
        for (const auto &x : telemetry::commands()) {
            c = std::string_view(cmd) == x.name ? &x : c;
        }
        if (c == nullptr) {
            throw std::invalid_argument(std::string("unknown command ") + cmd);
        }
        out = telemetry::reply(cmd, params != nullptr ? params : "",
                               slot().ctx->call(c->op, json::object()), slot().node_name);
    } catch (const std::exception &e) {
        // a reply naming the problem rather than telemetry's bare null
        out = telemetry::fit(json{{"error", e.what()}});
    }
    return fill(d, out);
}

class TelemetryModule final : public Module {
  public:
    static constexpr const char *kName = "telemetry";

    explicit TelemetryModule(ControlContext &ctx) : ctx_(ctx) {}

    void online() override {
        // Once a process: a command registered twice would be listed twice.
        static std::once_flag registered;
        std::call_once(registered, [] {
            for (const auto &c : telemetry::commands()) {
                if (int rc = rte_telemetry_register_cmd(c.name, answer, c.help); rc != 0) {
                    log::warn("telemetry: cannot register {}: error {}", c.name, rc);
                }
            }
        });
        std::unique_lock lock(slot().mu);
        slot().ctx = &ctx_;
        slot().node_name = ctx_.cfg().node_name;
    }

    // Waits for callbacks in progress (the control thread still answers them).
    void offline() override {
        std::unique_lock lock(slot().mu);
        slot().ctx = nullptr;
    }

    void describe_node(json &out) const override {
        json names = json::array();
        for (const auto &c : telemetry::commands()) {
            names.push_back(c.name);
        }
        out["telemetry"] = ctx_.cfg().section<telemetry::TelemetryConfig>("telemetry").enabled
                               ? json{{"commands", names}}
                               : json();
    }

  private:
    ControlContext &ctx_;
};

}  // namespace

FWD_ON_LOAD(register_module<TelemetryModule>({"node"}));

}  // namespace fwd::control
