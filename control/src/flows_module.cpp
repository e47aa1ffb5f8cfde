// The "flows" module: the uplink's rte_flow rules (nic_flows.hpp) kept in step with the node.
//
//   control thread, poll(): at most once a second, the plan's inputs are read (the uplink's
//     queues and VLAN, the overlay's state and VXLAN port, the policy's generation); when any
//     changed, the plan and the exact policy drops are made again and the installer makes the
//     port carry them (unchanged groups keep their rules).
//   op flow.list: the groups, their state (installed, validated, refused with each option's
//     reason), their rules and hits; fwdctl flow list prints it.
//   counters: stats.control.flows (groups by state, nic_policy_drops: the hits of installed
//     policy drops, the packets the NIC dropped for the dataplane).
//
// The config's "flows" section: {"mode": "install" | "validate" | "off" (default install),
// "max_policy_rules": the most exact-drop rules the NIC gets (default 256; 0: none)}.
#include <chrono>

#include "fwd/control/config_sections.hpp"
#include "fwd/control/nic_flows.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/policy/compile.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

struct FlowsConfig {
    flows::Mode mode = flows::Mode::kInstall;
    size_t max_policy_rules = 256;
};

class FlowsModule final : public Module, public flows::PolicyHitsSource {
  public:
    static constexpr const char *kName = "flows";

    explicit FlowsModule(ControlContext &ctx)
        : ctx_(ctx),
          ports_(ctx.need<PortsModule>()),
          cfg_(ctx.cfg().section<FlowsConfig>("flows")) {
        ctx.add_op(OpDef{"flow.list", {}, [this](const json &) { return list(); }});
    }

    void start() override {
        const auto &up = ports_.uplink();
        if (!up) {
            return;
        }
        installer_ =
            std::make_unique<flows::Installer>(flows::rte_flow_device(up->port), cfg_.mode);
        refresh(true);
    }

    void stop() override { installer_.reset(); }

    bool poll() override {
        if (!installer_) {
            return false;
        }
        const uint64_t now = ControlContext::now_ms();
        if (now - last_check_ms_ < 1000) {
            return false;
        }
        last_check_ms_ = now;
        return refresh(false);
    }

    void counters(json &out) const override {
        if (!installer_) {
            return;
        }
        size_t installed = 0, validated = 0, refused = 0;
        uint64_t drops = 0;
        for (const auto &e : installer_->entries()) {
            installed += e.state == flows::Installer::State::kInstalled;
            validated += e.state == flows::Installer::State::kValidated;
            refused += e.state == flows::Installer::State::kRefused;
            if (e.group.kind == "policy") {
                drops += installer_->hits(e).value_or(0);
            }
        }
        out["flows"] = json{{"mode", flows::to_string(cfg_.mode)},
                            {"installed", installed},
                            {"validated", validated},
                            {"refused", refused},
                            {"policy_left", policy_left_},
                            {"nic_policy_drops", drops},
                            {"applies", applies_}};
    }

    flows::RuleHits nic_policy_hits() const override {
        return installer_ ? installer_->policy_hits() : flows::RuleHits{};
    }

  private:
    // Reads the plan's inputs: the uplink's queues and VLAN, the overlay's state and VXLAN port
    // (its node.get view), the policy's generation, rules and local endpoints (its PolicySource
    // side, when the policy module is built in). When any changed (or force), plans again and
    // has the installer apply it; true when it did.
    bool refresh(bool force) {
        const auto &up = *ports_.uplink();
        flows::PlanInput in;
        const uint16_t n = ctx_.cfg().uplink ? ctx_.cfg().uplink->rx_queues : 1;
        for (uint16_t q = 0; q < n; q++) {
            in.queues.push_back(q);
        }
        in.vlan = up.vlan;
        if (Module *ov = ctx_.find_module("overlay")) {
            json node;
            ov->describe_node(node);
            const json &o = node.value("overlay", json::object());
            if (o.value("enabled", false)) {
                in.vxlan_port = o.value("vxlan_port", uint16_t{4789});
                if (ctx_.cfg().node_ip4) {
                    in.vtep4 = ctx_.cfg().node_ip4->addr;
                }
                if (ctx_.cfg().node_ip6) {
                    in.vtep6 = ctx_.cfg().node_ip6->addr;
                }
            }
        }
        const flows::PolicySource *ps =
            dynamic_cast<const flows::PolicySource *>(ctx_.find_module("policy"));
        const uint64_t gen = ps != nullptr ? ps->policy_generation() : 0;
        if (!force && in == last_in_ && gen == last_gen_) {
            return false;
        }
        last_in_ = in;
        last_gen_ = gen;
        std::vector<flows::Group> groups;
        policy_left_ = 0;
        if (ps != nullptr && cfg_.max_policy_rules > 0) {
            if (auto compiled = ps->policy_compiled()) {
                auto drops = flows::policy_drops(*compiled, ps->policy_endpoints(), in.vlan,
                                                 cfg_.max_policy_rules);
                groups = std::move(drops.groups);
                policy_left_ = drops.left;
            }
        }
        auto rest = flows::plan(in);
        groups.insert(groups.end(), rest.begin(), rest.end());
        installer_->apply(groups);
        applies_++;
        return true;
    }

    json list() const {
        if (!installer_) {
            return json{{"uplink", nullptr},
                        {"mode", flows::to_string(cfg_.mode)},
                        {"groups", json::array()}};
        }
        json j = installer_->to_json();
        const uint16_t port = ports_.uplink()->port;
        rte_eth_dev_info info{};
        j["uplink"] = json{
            {"port", port},
            {"driver",
             rte_eth_dev_info_get(port, &info) == 0 && info.driver_name ? info.driver_name : ""}};
        j["policy_left"] = policy_left_;
        return j;
    }

    ControlContext &ctx_;
    PortsModule &ports_;
    FlowsConfig cfg_;
    std::unique_ptr<flows::Installer> installer_;
    flows::PlanInput last_in_;
    uint64_t last_gen_ = 0;
    uint64_t last_check_ms_ = 0;
    size_t policy_left_ = 0;
    uint64_t applies_ = 0;
};

FlowsConfig parse_flows(const config::Object &o, const NodeConfig &) {
    FlowsConfig c;
    if (auto f = o.get("mode")) {
        constexpr std::string_view kExpected = "\"install\", \"validate\" or \"off\"";
        auto m = flows::parse_mode(f->string(kExpected));
        if (!m) {
            f->fail_expected(kExpected);
        }
        c.mode = *m;
    }
    if (auto f = o.get("max_policy_rules")) {
        c.max_policy_rules = f->integer<uint32_t>(0, 65536);
    }
    return c;
}

}  // namespace

// After the policy module where it is built in (its rules); find_module finds it either way.
FWD_ON_LOAD(register_module<FlowsModule>({PortsModule::kName}));
FWD_ON_LOAD(register_config_section<FlowsConfig>("flows", {"mode", "max_policy_rules"},
                                                 parse_flows));

}  // namespace fwd::control
