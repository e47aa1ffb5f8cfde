// The "bgp" module: the node's BIRD configuration kept from the cluster store, as Calico's
// confd keeps bird.cfg (issue 19; fwd/control/bgp.hpp for the resources and the generator).
//
//   IPAM sync thread (a follower of its rounds): reads the BGP resources, the node registry
//     and the pools; generates the node's BIRD 2 file (IPv4 and IPv6, the IPAM include file
//     inside); when the text changed, writes it atomically (temp, fsync, rename) and runs
//     `birdc -s <socket> configure`. A reload that fails (BIRD not up yet, or refusing the
//     file) is retried every round, without rewriting an unchanged file.
//     With bird.graceful_restart (BIRD runs under a supervisor that starts it again when it
//     exits, as runit does in calico-node), a change that would make `configure` restart a
//     session (a node becoming a route reflector: `rr client`) is loaded by `birdc graceful
//     restart` instead: the peers keep the node's routes and the node keeps its kernel routes
//     while BIRD comes back on the new file (BGP graceful restart, RFC 4724), where
//     `configure` would send a Cease and the peers would drop them for about 1.5 s.
//   API thread (bgp.status): `birdc show protocols all`, each generated session with its state
//     and routes received / sent.
// Needs the `bird` config section and an `ipam` section (the store, and bird_include: the
// node's blocks and borrowed addresses BIRD announces).
#include <filesystem>
#include <mutex>
#include <sstream>

#include "api_args.hpp"
#include "fwd/control/bgp.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/control/ipam_module.hpp"
#include "fwd/control/ipam_sync.hpp"
#include "fwd/ipam/node.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

// The config file's "bird" section.
struct BirdSection {
    bool enabled = false;
    std::string config;  // the BIRD file the module keeps
    std::string socket;  // BIRD's control socket; empty: BIRD not told
    std::string birdc = "/usr/sbin/birdc";
    int kernel_table = 254;
    int connect_delay_s = 1;
    int connect_retry_s = 3;
    int error_wait_min_s = 1;
    int error_wait_max_s = 60;
    bool graceful_restart = false;  // BIRD is supervised: restart it gracefully, see above
};

BirdSection parse_bird(const config::Object &o, const NodeConfig &) {
    BirdSection b;
    b.enabled = true;
    b.config = o.need("config", "the BIRD file's absolute path").string("an absolute path");
    if (!b.config.starts_with("/")) {
        o.need("config", "").fail_expected("an absolute path");
    }
    if (auto f = o.get("socket")) {
        b.socket = f->string("BIRD's control socket path");
    }
    if (auto f = o.get("birdc")) {
        b.birdc = f->string("the birdc binary");
    }
    if (auto f = o.get("kernel_table")) {
        b.kernel_table = static_cast<int>(f->integer<uint32_t>(1, 0x7fffffffu));
    }
    if (auto f = o.get("connect_delay_s")) {
        b.connect_delay_s = static_cast<int>(f->integer<uint32_t>(0, 3600));
    }
    if (auto f = o.get("connect_retry_s")) {
        b.connect_retry_s = static_cast<int>(f->integer<uint32_t>(1, 3600));
    }
    if (auto f = o.get("error_wait_min_s")) {
        b.error_wait_min_s = static_cast<int>(f->integer<uint32_t>(0, 3600));
    }
    if (auto f = o.get("error_wait_max_s")) {
        b.error_wait_max_s =
            static_cast<int>(f->integer<uint32_t>(static_cast<uint32_t>(b.error_wait_min_s), 3600));
    }
    if (auto f = o.get("graceful_restart")) {
        b.graceful_restart = f->boolean();
    }
    return b;
}

// `birdc show protocols all`: per protocol its state, info and per channel the routes.
json parse_protocols(const std::string &out) {
    json protocols = json::object();
    std::string current, channel;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line.starts_with("BIRD ") || line.starts_with("Name ")) {
            continue;
        }
        std::istringstream w(line);
        if (line[0] != ' ') {
            std::string name, proto, table, state, since, info, rest;
            w >> name >> proto >> table >> state >> since;
            std::getline(w, rest);
            info = rest.substr(std::min(rest.find_first_not_of(' '), rest.size()));
            while (!info.empty() && info.back() == ' ') {
                info.pop_back();
            }
            current = name;
            channel.clear();
            protocols[name] = {{"proto", proto}, {"state", state}, {"since", since},
                               {"info", info},   {"received", 0},  {"sent", 0}};
            continue;
        }
        if (current.empty()) {
            continue;
        }
        std::string key;
        w >> key;
        if (key == "Channel") {
            w >> channel;
        } else if (key == "Routes:" && !channel.empty()) {
            // "Routes:  1 imported, 2 exported, 1 preferred"
            uint64_t imported = 0, exported = 0;
            std::string word;
            uint64_t n = 0;
            while (w >> word) {
                if (std::isdigit(static_cast<unsigned char>(word[0]))) {
                    n = std::stoull(word);
                } else if (word.starts_with("imported")) {
                    imported = n;
                } else if (word.starts_with("exported")) {
                    exported = n;
                }
            }
            auto &p = protocols[current];
            p["received"] = p["received"].get<uint64_t>() + imported;
            p["sent"] = p["sent"].get<uint64_t>() + exported;
        } else if (key == "BGP" && line.find("BGP state:") != std::string::npos) {
            protocols[current]["bgp_state"] = line.substr(line.find(':') + 1);
            auto &s = protocols[current]["bgp_state"].get_ref<std::string &>();
            s.erase(0, s.find_first_not_of(' '));
        }
    }
    return protocols;
}

class BgpModule final : public Module {
  public:
    static constexpr const char *kName = "bgp";

    explicit BgpModule(ControlContext &ctx)
        : ctx_(ctx), ipam_(ctx.need<IpamModule>()), cfg_(ctx.cfg().section<BirdSection>("bird")) {
        ctx.add_op({.name = "bgp.status",
                    .args = {},
                    .fn = [this](const json &) { return status(); },
                    .thread = OpDef::Thread::kApi});
    }

    void start() override {
        if (!cfg_.enabled) {
            return;
        }
        const auto &ipam = ctx_.cfg().ipam;
        if (!ipam) {
            throw std::runtime_error("bird: needs an ipam section (the cluster store)");
        }
        IpamSync *sync = ipam_.sync();
        if (sync == nullptr) {
            throw std::runtime_error("bird: the IPAM sync is not running");
        }
        opts_.node = ctx_.cfg().node_name;
        opts_.ipam_include = ipam->bird_include;
        opts_.kernel_table = cfg_.kernel_table;
        opts_.connect_delay_s = cfg_.connect_delay_s;
        opts_.connect_retry_s = cfg_.connect_retry_s;
        opts_.error_wait_min_s = cfg_.error_wait_min_s;
        opts_.error_wait_max_s = cfg_.error_wait_max_s;
        sync->follow("bgp",
                     [this](ipam::Store &s, ipam::Allocator &a, int64_t rev) { round(s, a, rev); });
    }

    void describe_node(json &out) const override {
        std::lock_guard g(mu_);
        out["bgp_config"] = json{{"enabled", cfg_.enabled},
                                 {"file", cfg_.config},
                                 {"socket", cfg_.socket},
                                 {"revision", revision_},
                                 {"writes", writes_},
                                 {"reloads", reloads_},
                                 {"graceful_restarts", graceful_restarts_},
                                 {"reload_pending", dirty_},
                                 {"as_number", as_number_},
                                 {"router_id", router_id_},
                                 {"sessions", sessions_.size()},
                                 {"problems", problems_},
                                 {"refused", refused_}};
    }

  private:
    // [IPAM sync thread] one round: generate, write when changed, reload when needed.
    void round(ipam::Store &store, ipam::Allocator &alloc, int64_t rev) {
        bgp::Cluster c;
        for (const auto &p : alloc.pools()) {
            if (!p.disabled) {
                c.pools.push_back(p.cidr);
            }
        }
        auto listing = bgp::BgpRegistry(store).list();
        c.configs = std::move(listing.configs);
        c.peers = std::move(listing.peers);
        c.secrets = std::move(listing.secrets);
        c.nodes = ipam::NodeRegistry(store).list().nodes;
        bgp::BirdConfig out = bgp::generate_bird_config(c, opts_);
        bool changed = out.text != text_;
        if (changed) {
            // 0600: the file may hold peers' passwords.
            write_file_atomic(cfg_.config, out.text, 0600);
            text_ = out.text;
        }
        {
            std::lock_guard g(mu_);
            revision_ = rev;
            writes_ += changed ? 1 : 0;
            dirty_ = dirty_ || changed;
            sessions_ = json::array();
            for (const auto &s : out.sessions) {
                sessions_.push_back({{"protocol", s.protocol},
                                     {"source", s.source},
                                     {"node", s.peer_node},
                                     {"family", s.family == net::Family::kIp4 ? 4 : 6},
                                     {"address", s.address.str()},
                                     {"port", s.port},
                                     {"as_number", s.as_number},
                                     {"rr_client", s.rr_client},
                                     {"passive", s.passive}});
            }
            problems_ = out.problems;
            refused_ = json::array();
            for (const auto &[k, why] : listing.refused) {
                refused_.push_back({{"key", k}, {"error", why}});
            }
            as_number_ = out.as_number;
            router_id_ = out.router_id;
        }
        if (dirty_ && !cfg_.socket.empty()) {
            // A restart only for a BIRD that runs a file of ours (not at its first load).
            const bool graceful = cfg_.graceful_restart && !loaded_.empty() &&
                                  !bgp::restarted_sessions(loaded_, text_).empty();
            std::vector<std::string> argv = {cfg_.birdc, "-s", cfg_.socket, "configure"};
            if (graceful) {
                argv.back() = "graceful";
                argv.push_back("restart");
            }
            auto [rc, text] = run_capture(argv, 10'000);
            const bool ok =
                rc == 0 &&
                text.find(graceful ? "Graceful restart" : "Reconfigur") != std::string::npos &&
                text.find("rror") == std::string::npos;
            if (!ok) {
                // Thrown: the sync counts it and calls again next round.
                throw std::runtime_error("birdc -s " + cfg_.socket + " configure " +
                                         (rc < 0 ? "timed out" : "exited " + std::to_string(rc)) +
                                         ": " + one_line(text));
            }
            loaded_ = text_;
            std::lock_guard g(mu_);
            dirty_ = false;
            reloads_++;
            graceful_restarts_ += graceful ? 1 : 0;
        }
    }

    // [API thread]
    json status() const {
        json sessions, problems, refused;
        uint32_t asn = 0;
        std::string rid;
        {
            std::lock_guard g(mu_);
            sessions = sessions_;
            problems = problems_;
            refused = refused_;
            asn = as_number_;
            rid = router_id_;
        }
        json result{{"enabled", cfg_.enabled}, {"node", ctx_.cfg().node_name},
                    {"as_number", asn},        {"router_id", rid},
                    {"problems", problems},    {"refused", refused}};
        if (!cfg_.enabled) {
            throw ApiError("unavailable",
                           "no bird section in the node's config: BGP is not "
                           "configured from the cluster store here");
        }
        json bird = json::object();
        std::string error;
        if (!cfg_.socket.empty()) {
            auto [rc, out] =
                run_capture({cfg_.birdc, "-s", cfg_.socket, "show", "protocols", "all"}, 10'000);
            if (rc == 0 && out.find("Access denied") == std::string::npos) {
                bird = parse_protocols(out);
            } else {
                error = "birdc " +
                        std::string(rc < 0 ? "timed out" : "exited " + std::to_string(rc)) + ": " +
                        one_line(out);
            }
        } else {
            error = "no bird.socket in the config";
        }
        for (auto &s : sessions) {
            const std::string p = s["protocol"];
            if (bird.contains(p)) {
                s["state"] = bird[p].value("bgp_state", bird[p]["info"].get<std::string>());
                s["up"] = bird[p]["state"] == "up";
                s["since"] = bird[p]["since"];
                s["received"] = bird[p]["received"];
                s["sent"] = bird[p]["sent"];
            } else {
                s["state"] = error.empty() ? "not in BIRD yet (reload pending)" : "unknown";
                s["up"] = false;
            }
        }
        result["sessions"] = sessions;
        result["bird_error"] = error;
        return result;
    }

    ControlContext &ctx_;
    IpamModule &ipam_;
    const BirdSection cfg_;
    bgp::BirdOptions opts_;
    std::string text_;    // [sync thread] what the file holds, as we wrote it
    std::string loaded_;  // [sync thread] what BIRD was last told to load

    mutable std::mutex mu_;  // guards what follows (sync thread writes, API / control read)
    int64_t revision_ = -1;
    uint64_t writes_ = 0;
    uint64_t reloads_ = 0;
    uint64_t graceful_restarts_ = 0;
    bool dirty_ = false;
    json sessions_ = json::array();
    std::vector<std::string> problems_;
    json refused_ = json::array();
    uint32_t as_number_ = 0;
    std::string router_id_;
};

}  // namespace

FWD_ON_LOAD(register_module<BgpModule>({IpamModule::kName}));
FWD_ON_LOAD(register_config_section<BirdSection>("bird",
                                                 {"config", "socket", "birdc", "kernel_table",
                                                  "connect_delay_s", "connect_retry_s",
                                                  "error_wait_min_s", "error_wait_max_s",
                                                  "graceful_restart"},
                                                 parse_bird));

}  // namespace fwd::control
