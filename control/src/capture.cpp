// The "capture" module: packet capture to pcap files, the control side of
// the capture taps (fwd/dp/capture.hpp).
//
// Ops:
//   capture.start {port, file, count, seconds, rate_pps, snaplen, direction}
//     port: "uplink", a port id, an ethdev name, or an endpoint id (a pod on
//     the shared pod tap is told apart by its MAC); file: an absolute path the
//     daemon writes (pcap, nanosecond timestamps); count / seconds: stop after
//     that many packets / that long (0: until capture.stop); rate_pps: copies
//     a second at most (default 10000), spread over the workers; snaplen:
//     bytes kept of each frame (default 65535); direction: rx, tx or both.
//     -> the capture (as capture.get)
//   capture.get {id}   -> {id, state: running | done, port, port_id, file,
//                          packets, bytes, over_rate, ring_full, no_mbuf, ...}
//   capture.stop {id}  -> the capture, finished: the file is complete
//   capture.list       -> {captures: [...]}
// At most kMaxSessions run at once; a capture that reached its count or its
// time stays listed as done until capture.stop takes it.
//
// Node config (a feature section, config_sections.hpp):
//   "capture": {"max_rate_pps": 100000}   the most copies a second a capture
//   may ask for (rate_pps; its default is 10000 or this, the lower): what an
//   operator's capture may cost the workers.
#include <pcap/pcap.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <time.h>

#include <filesystem>
#include <map>

#include "api_args.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/control/endpoints.hpp"
#include "fwd/control/ports.hpp"
#include "fwd/dp/capture.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;
namespace cap = dp::capture;

namespace {

constexpr uint32_t kDefaultRate = 10000;

struct CaptureConfig {
    uint32_t max_rate_pps = 100000;
};
constexpr uint32_t kDefaultSnaplen = 65535;
constexpr uint32_t kMaxSnaplen = 262144;
constexpr size_t kMaxDone = 16;          // finished captures kept for capture.get / stop
constexpr unsigned kDrainBudget = 4096;  // copies written per worker per pass

uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint32_t get_uint(const json &args, const char *key, uint32_t def, uint32_t lo, uint32_t hi) {
    auto it = args.find(key);
    if (it == args.end() || it->is_null()) {
        return def;
    }
    if (!it->is_number_unsigned() || it->get<uint64_t>() < lo || it->get<uint64_t>() > hi) {
        bad(std::string(key) + " must be an integer from " + std::to_string(lo) + " to " +
            std::to_string(hi) + ", got " + it->dump());
    }
    return it->get<uint32_t>();
}

class CaptureModule final : public Module {
  public:
    static constexpr const char *kName = "capture";

    explicit CaptureModule(ControlContext &ctx)
        : ctx_(ctx), tsc0_(rte_get_tsc_cycles()), real0_(realtime_ns()) {
        // One state per worker, in its slot, before the workers run.
        for (dp::Worker *w : ctx.workers()) {
            workers_.push_back(std::make_unique<cap::WorkerState>());
            w->set_slot(cap::worker_slot(), workers_.back().get());
        }
        ctx.add_op(
            {.name = "capture.start",
             .args = {"port", "file", "count", "seconds", "rate_pps", "snaplen", "direction"},
             .fn = [this](const json &a) { return start_capture(a); }});
        ctx.add_op({.name = "capture.get", .args = {"id"}, .fn = [this](const json &a) {
                        return to_json(find(a));
                    }});
        ctx.add_op({.name = "capture.stop", .args = {"id"}, .fn = [this](const json &a) {
                        return stop_capture(a);
                    }});
        ctx.add_op({.name = "capture.list", .args = {}, .fn = [this](const json &) {
                        json list = json::array();
                        for (const auto &[id, c] : captures_) {
                            list.push_back(to_json(c));
                        }
                        return json{{"captures", list}};
                    }});
    }

    ~CaptureModule() override {
        for (auto &[id, c] : captures_) {
            close_file(c);
        }
        delete current_;
        // Workers no longer run: take back what the rings still hold.
        for (size_t w = 0; w < workers_.size(); w++) {
            rte_mbuf *m;
            while (workers_[w]->ring.pop(m)) {
                rte_pktmbuf_free(m);
            }
            ctx_.workers()[w]->set_slot(cap::worker_slot(), nullptr);
        }
    }

    void stop() override {
        for (auto &[id, c] : captures_) {
            finish(c);
        }
        publish();
        ctx_.tables().synchronize();
        drain();
        for (auto &[id, c] : captures_) {
            close_file(c);
        }
    }

    bool poll() override {
        bool did = drain();
        uint64_t now = ControlContext::now_ms();
        bool changed = false;
        for (auto &[id, c] : captures_) {
            if (c.running && c.deadline_ms != 0 && now >= c.deadline_ms) {
                finish(c);
                changed = true;
            }
        }
        if (changed) {
            publish();
        }
        return did;
    }

    void counters(json &out) const override {
        out["capture_sessions"] = running();
        out["capture_packets"] = packets_total_;
    }

  private:
    struct Capture {
        uint32_t id = 0;
        cap::Session s;
        std::string port_arg;
        std::string file;
        uint32_t count = 0;
        uint64_t deadline_ms = 0;
        bool running = true;
        pcap_t *pcap = nullptr;
        pcap_dumper_t *dumper = nullptr;
        uint64_t packets = 0;
        uint64_t bytes = 0;
        // the workers' counters of its slot when it started and when it
        // finished (slots are reused)
        std::array<uint64_t, 3> base{};
        std::array<uint64_t, 3> final_counts{};
    };

    size_t running() const {
        size_t n = 0;
        for (const auto &[id, c] : captures_) {
            n += c.running ? 1 : 0;
        }
        return n;
    }

    Capture &find(const json &args) {
        auto it = args.find("id");
        if (it == args.end() || !it->is_number_unsigned()) {
            bad("missing field 'id' (a capture id, a number)");
        }
        auto c = captures_.find(it->get<uint32_t>());
        if (c == captures_.end()) {
            throw ApiError("not_found", "no capture " + it->dump());
        }
        return c->second;
    }

    // The port (and MAC) a port argument names.
    void resolve_port(const std::string &arg, cap::Session &s) {
        if (arg == "uplink") {
            const auto &up = ctx_.need<PortsModule>().uplink();
            if (!up) {
                throw ApiError("not_found", "this node has no uplink");
            }
            s.port = up->port;
            return;
        }
        if (auto *eps = ctx_.find<EndpointsModule>()) {
            auto it = eps->endpoints().find(arg);
            if (it != eps->endpoints().end()) {
                // A pod's frames are those from (rx) and to (tx) its MAC,
                // on a port of its own or on one pods share.
                s.port = it->second.port_id;
                s.match_mac = true;
                s.mac = it->second.mac.bytes();
                return;
            }
        }
        uint16_t port = 0;
        if (!arg.empty() && arg.find_first_not_of("0123456789") == std::string::npos &&
            arg.size() <= 5 && std::stoul(arg) < RTE_MAX_ETHPORTS &&
            rte_eth_dev_is_valid_port(static_cast<uint16_t>(std::stoul(arg)))) {
            s.port = static_cast<uint16_t>(std::stoul(arg));
            return;
        }
        if (rte_eth_dev_get_port_by_name(arg.c_str(), &port) == 0) {
            s.port = port;
            return;
        }
        throw ApiError("not_found", "no port '" + arg +
                                        "': give \"uplink\", an endpoint id, a port id or an "
                                        "ethdev name (fwdctl stats lists the ports)");
    }

    json start_capture(const json &args) {
        if (running() >= cap::kMaxSessions) {
            throw ApiError("unavailable", "already " + std::to_string(cap::kMaxSessions) +
                                              " captures running; stop one first");
        }
        Capture c;
        c.port_arg = get_str(args, "port", true);
        resolve_port(c.port_arg, c.s);
        c.file = get_str(args, "file", true);
        std::filesystem::path path(c.file);
        if (!path.is_absolute()) {
            bad("file must be an absolute path, got '" + c.file + "'");
        }
        if (!std::filesystem::is_directory(path.parent_path())) {
            bad("file '" + c.file + "': directory " + path.parent_path().string() +
                " does not exist");
        }
        c.count = get_uint(args, "count", 0, 0, UINT32_MAX);
        uint32_t seconds = get_uint(args, "seconds", 0, 0, 86400);
        const uint32_t max_rate = ctx_.cfg().section<CaptureConfig>("capture").max_rate_pps;
        if (auto it = args.find("rate_pps");
            it != args.end() && it->is_number_unsigned() && it->get<uint64_t>() > max_rate) {
            bad("rate_pps " + it->dump() + " is above this node's capture.max_rate_pps (" +
                std::to_string(max_rate) + ")");
        }
        uint32_t rate = get_uint(args, "rate_pps", std::min(kDefaultRate, max_rate), 1, max_rate);
        c.s.snaplen = get_uint(args, "snaplen", kDefaultSnaplen, 64, kMaxSnaplen);
        auto dir = get_str(args, "direction", false, "both");
        if (dir != "rx" && dir != "tx" && dir != "both") {
            bad("direction must be 'rx', 'tx' or 'both', got '" + dir + "'");
        }
        c.s.rx = dir != "tx";
        c.s.tx = dir != "rx";
        auto n_workers = static_cast<uint32_t>(std::max<size_t>(ctx_.workers().size(), 1));
        c.s.rate_per_worker = std::max<uint32_t>(1, (rate + n_workers - 1) / n_workers);
        // A free counter slot.
        std::array<bool, cap::kMaxSessions> used{};
        for (const auto &[id, o] : captures_) {
            if (o.running) {
                used[o.s.slot] = true;
            }
        }
        c.s.slot = static_cast<uint8_t>(std::find(used.begin(), used.end(), false) - used.begin());
        c.pcap = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, static_cast<int>(c.s.snaplen),
                                                      PCAP_TSTAMP_PRECISION_NANO);
        if (c.pcap == nullptr) {
            throw ApiError("internal", "cannot make a pcap handle");
        }
        c.dumper = pcap_dump_open(c.pcap, c.file.c_str());
        if (c.dumper == nullptr) {
            std::string err = pcap_geterr(c.pcap);
            pcap_close(c.pcap);
            bad("file '" + c.file + "': " + err);
        }
        c.id = next_id_++;
        c.s.id = c.id;
        c.base = slot_totals(c.s.slot);
        if (seconds != 0) {
            c.deadline_ms = ControlContext::now_ms() + uint64_t{seconds} * 1000;
        }
        auto [it, ok] = captures_.emplace(c.id, c);
        trim_done();
        publish();
        return to_json(it->second);
    }

    json stop_capture(const json &args) {
        Capture &c = find(args);
        if (c.running) {
            finish(c);
            publish();
            // Copies the workers made before they saw the new set are in the
            // rings once a grace period passed: the file gets them all.
            ctx_.tables().synchronize();
            drain();
        }
        json j = to_json(c);
        close_file(c);
        captures_.erase(c.id);
        return j;
    }

    // Stops a capture's copying (publish() makes it live); its file stays
    // open for the copies still in the rings.
    void finish(Capture &c) {
        if (c.running) {
            c.running = false;
            c.final_counts = slot_totals(c.s.slot);
        }
    }

    void close_file(Capture &c) {
        if (c.dumper != nullptr) {
            pcap_dump_close(c.dumper);
            c.dumper = nullptr;
        }
        if (c.pcap != nullptr) {
            pcap_close(c.pcap);
            c.pcap = nullptr;
        }
    }

    void trim_done() {
        size_t done = captures_.size() - running();
        for (auto it = captures_.begin(); it != captures_.end() && done > kMaxDone;) {
            if (!it->second.running) {
                close_file(it->second);
                it = captures_.erase(it);
                done--;
            } else {
                ++it;
            }
        }
    }

    // The running captures as the workers' new session set.
    void publish() {
        auto next = std::make_unique<cap::Sessions>();
        next->generation = ++generation_;
        for (const auto &[id, c] : captures_) {
            if (c.running) {
                next->s[next->n++] = c.s;
            }
        }
        const cap::Sessions *set = next->n != 0 ? next.release() : nullptr;
        const cap::Sessions *old = current_;
        // The taps cost nothing while disarmed: armed only while a capture runs.
        for (size_t i = 0; i < workers_.size(); i++) {
            workers_[i]->sessions.store(set, std::memory_order_release);
            dp::Worker *w = ctx_.workers()[i];
            for (auto [point, name] : {std::pair{dp::TapPoint::kRx, "capture_rx"},
                                       std::pair{dp::TapPoint::kTx, "capture_tx"}}) {
                if (int tap = w->pipeline().tap_index(point, name); tap >= 0) {
                    w->set_tap_armed(point, static_cast<uint8_t>(tap), set != nullptr);
                }
            }
        }
        current_ = set;
        if (old != nullptr) {
            ctx_.defer([old] { delete old; });
            ctx_.reclaim();
        }
    }

    // Writes what the workers copied; true when there was anything.
    bool drain() {
        bool did = false;
        std::vector<uint8_t> buf;
        for (auto &w : workers_) {
            rte_mbuf *m;
            for (unsigned i = 0; i < kDrainBudget && w->ring.pop(m); i++) {
                did = true;
                write(m, buf);
                rte_pktmbuf_free(m);
            }
        }
        if (did) {
            for (auto &[id, c] : captures_) {
                if (c.dumper != nullptr) {
                    pcap_dump_flush(c.dumper);
                }
            }
        }
        return did;
    }

    void write(rte_mbuf *m, std::vector<uint8_t> &buf) {
        const cap::CaptureMeta &cm = cap::capture_meta(m);
        auto it = captures_.find(cm.session);
        if (it == captures_.end() || it->second.dumper == nullptr) {
            return;  // stopped and closed meanwhile
        }
        Capture &c = it->second;
        if (c.count != 0 && c.packets >= c.count) {
            return;  // the count was reached by copies before this one
        }
        buf.resize(m->pkt_len);
        const void *data = rte_pktmbuf_read(m, 0, m->pkt_len, buf.data());
        if (data == nullptr) {
            return;
        }
        uint64_t hz = rte_get_tsc_hz();
        uint64_t dt = cm.tsc >= tsc0_ ? cm.tsc - tsc0_ : 0;
        uint64_t ns = real0_ + dt / hz * 1000000000ull + (dt % hz) * 1000000000ull / hz;
        pcap_pkthdr h{};
        h.ts.tv_sec = static_cast<time_t>(ns / 1000000000ull);
        h.ts.tv_usec =
            static_cast<suseconds_t>(ns % 1000000000ull);  // nanoseconds (NANO precision)
        h.caplen = m->pkt_len;
        h.len = cm.wire_len;
        pcap_dump(reinterpret_cast<u_char *>(c.dumper), &h, static_cast<const u_char *>(data));
        c.packets++;
        c.bytes += cm.wire_len;
        packets_total_++;
        if (c.count != 0 && c.packets >= c.count && c.running) {
            finish(c);
            publish();
        }
    }

    // Sum over the workers of a slot's over_rate, ring_full, no_mbuf.
    std::array<uint64_t, 3> slot_totals(uint8_t slot) const {
        std::array<uint64_t, 3> t{};
        for (const auto &w : workers_) {
            const auto &c = w->counters[slot];
            t[0] += c.over_rate.get();
            t[1] += c.ring_full.get();
            t[2] += c.no_mbuf.get();
        }
        return t;
    }

    json to_json(const Capture &c) const {
        auto now = c.running ? slot_totals(c.s.slot) : c.final_counts;
        char name[RTE_ETH_NAME_MAX_LEN] = {};
        rte_eth_dev_get_name_by_port(c.s.port, name);
        json j{{"id", c.id},
               {"state", c.running ? "running" : "done"},
               {"port", c.port_arg},
               {"port_id", c.s.port},
               {"port_name", name},
               {"file", c.file},
               {"direction", c.s.rx && c.s.tx ? "both"
                             : c.s.rx         ? "rx"
                                              : "tx"},
               {"snaplen", c.s.snaplen},
               {"count", c.count},
               {"packets", c.packets},
               {"bytes", c.bytes},
               {"over_rate", now[0] - c.base[0]},
               {"ring_full", now[1] - c.base[1]},
               {"no_mbuf", now[2] - c.base[2]}};
        j["mac"] = c.s.match_mac ? json(net::MacAddr(c.s.mac).str()) : json();
        return j;
    }

    ControlContext &ctx_;
    std::vector<std::unique_ptr<cap::WorkerState>> workers_;
    std::map<uint32_t, Capture> captures_;
    const cap::Sessions *current_ = nullptr;
    uint64_t generation_ = 0;
    uint32_t next_id_ = 1;
    uint64_t packets_total_ = 0;
    const uint64_t tsc0_;  // TSC and wall clock at the same moment: pcap timestamps
    const uint64_t real0_;
};

}  // namespace

FWD_ON_LOAD(register_module<CaptureModule>({EndpointsModule::kName, PortsModule::kName}));
FWD_ON_LOAD(register_config_section<CaptureConfig>("capture", {"max_rate_pps"},
                                                   [](const config::Object &o, const NodeConfig &) {
                                                       CaptureConfig c;
                                                       if (auto f = o.get("max_rate_pps")) {
                                                           c.max_rate_pps =
                                                               f->integer<uint32_t>(1, 10000000);
                                                       }
                                                       return c;
                                                   }));

}  // namespace fwd::control
