// The feature registry and its frozen form (pipeline.hpp).
#include "fwd/dp/pipeline.hpp"

#include <netinet/in.h>

#include <set>
#include <stdexcept>

#include "fwd/dp/worker.hpp"
#include "fwd/util/order.hpp"

namespace fwd::dp {

namespace {

bool is_local(Hook h) {
    return h == Hook::kIp4Local || h == Hook::kIp6Local;
}

void check_name(const std::string &name, const char *what) {
    if (name.empty() || name.size() > 32) {
        throw std::invalid_argument(std::string(what) + " name '" + name +
                                    "' must be 1 to 32 characters");
    }
    for (char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            throw std::invalid_argument(std::string(what) + " name '" + name +
                                        "' must be [a-z0-9_]");
        }
    }
}

}  // namespace

PipelineRegistry &PipelineRegistry::global() {
    static PipelineRegistry r;
    return r;
}

void PipelineRegistry::add_stage(StageDef d) {
    check_name(d.name, "stage");
    if (d.fn == nullptr) {
        throw std::invalid_argument("stage '" + d.name + "' has no function");
    }
    if (static_cast<size_t>(d.hook) >= kHookCount) {
        throw std::invalid_argument("stage '" + d.name + "' names no hook");
    }
    const bool has_port = d.l4_port != 0 || d.l4_port_fn != nullptr;
    if ((d.l4_proto != 0 || has_port) && !is_local(d.hook)) {
        throw std::invalid_argument("stage '" + d.name +
                                    "': an L4 port is only for the ip4_local / ip6_local hooks");
    }
    const bool port_proto = d.l4_proto == IPPROTO_UDP || d.l4_proto == IPPROTO_TCP;
    if (has_port && !port_proto) {
        throw std::invalid_argument("stage '" + d.name + "': an L4 port needs l4_proto UDP or TCP");
    }
    if (port_proto && !has_port) {
        throw std::invalid_argument("stage '" + d.name +
                                    "': UDP and TCP stages take one port (l4_port or l4_port_fn)");
    }
    if (d.l4_port != 0 && d.l4_port_fn != nullptr) {
        throw std::invalid_argument("stage '" + d.name +
                                    "': a fixed port (l4_port) or a run-time one (l4_port_fn)");
    }
    size_t on_hook = 0;
    for (const auto &s : stages_) {
        on_hook += s.hook == d.hook ? 1 : 0;
        // Run-time ports may meet at run time: the first in order takes them.
        if (d.l4_proto != 0 && d.l4_port_fn == nullptr && s.l4_port_fn == nullptr &&
            s.hook == d.hook && s.l4_proto == d.l4_proto && s.l4_port == d.l4_port) {
            throw std::invalid_argument("stages '" + s.name + "' and '" + d.name + "' both take " +
                                        (d.l4_port != 0
                                             ? "L4 port " + std::to_string(d.l4_port)
                                             : "protocol " + std::to_string(d.l4_proto)));
        }
    }
    if (on_hook == kMaxHookStages) {
        throw std::invalid_argument("stage '" + d.name + "': hook " +
                                    std::string(kHookNames[static_cast<size_t>(d.hook)]) + " has " +
                                    std::to_string(kMaxHookStages) + " stages already");
    }
    stages_.push_back(std::move(d));
}

void PipelineRegistry::add_tap(TapDef d) {
    check_name(d.name, "tap");
    if (d.fn == nullptr) {
        throw std::invalid_argument("tap '" + d.name + "' has no function");
    }
    size_t at_point = 0;
    for (const auto &t : taps_) {
        at_point += t.point == d.point ? 1 : 0;
    }
    if (at_point == kMaxTaps) {
        throw std::invalid_argument("tap '" + d.name + "': " + std::to_string(kMaxTaps) +
                                    " taps there already");
    }
    taps_.push_back(std::move(d));
}

NhKind PipelineRegistry::add_nh_kind(std::string name) {
    check_name(name, "next-hop kind");
    size_t v = static_cast<size_t>(NhKind::kFirstFeature) + nh_kinds_.size();
    if (v > UINT8_MAX) {
        throw std::invalid_argument("next-hop kind '" + name + "': no kind left");
    }
    for (const auto &n : nh_kinds_) {
        if (n == name) {
            throw std::invalid_argument("next-hop kind '" + name + "' is registered twice");
        }
    }
    nh_kinds_.push_back(std::move(name));
    return static_cast<NhKind>(v);
}

uint16_t PipelineRegistry::add_worker_slot(std::string name) {
    check_name(name, "worker slot");
    if (slots_.size() == kMaxWorkerSlots) {
        throw std::invalid_argument("worker slot '" + name + "': all " +
                                    std::to_string(kMaxWorkerSlots) + " are taken");
    }
    slots_.push_back(std::move(name));
    return static_cast<uint16_t>(slots_.size() - 1);
}

uint8_t PipelineRegistry::add_port_driver(PortDriverDef d) {
    check_name(d.name, "port driver");
    if (d.rx == nullptr || d.tx == nullptr) {
        throw std::invalid_argument("port driver '" + d.name + "' needs rx and tx");
    }
    if ((d.arm == nullptr) != (d.disarm == nullptr) || (d.arm != nullptr && d.wake_fd != nullptr)) {
        throw std::invalid_argument("port driver '" + d.name +
                                    "': arm and disarm go together, and not with wake_fd");
    }
    for (const auto &o : drivers_) {
        if (o.name == d.name) {
            throw std::invalid_argument("port driver '" + d.name + "' is registered twice");
        }
    }
    if (drivers_.size() == kMaxPortDrivers) {
        throw std::invalid_argument("port driver '" + d.name + "': all " +
                                    std::to_string(kMaxPortDrivers) + " are taken");
    }
    drivers_.push_back(std::move(d));
    return static_cast<uint8_t>(drivers_.size());
}

void PipelineRegistry::add_housekeeping(HousekeepDef d) {
    check_name(d.name, "housekeeping");
    if (d.fn == nullptr) {
        throw std::invalid_argument("housekeeping '" + d.name + "' has no function");
    }
    for (const auto &o : housekeeping_) {
        if (o.name == d.name) {
            throw std::invalid_argument("housekeeping '" + d.name + "' is registered twice");
        }
    }
    if (housekeeping_.size() == kMaxHousekeeping) {
        throw std::invalid_argument("housekeeping '" + d.name + "': all " +
                                    std::to_string(kMaxHousekeeping) + " are taken");
    }
    housekeeping_.push_back(std::move(d));
}

Pipeline PipelineRegistry::freeze() const {
    Pipeline p;
    for (std::string_view n : kStageNames) {
        p.stage_names.emplace_back(n);
    }
    std::set<std::string> names(p.stage_names.begin(), p.stage_names.end());
    auto claim = [&](const std::string &name) {
        if (!names.insert(name).second) {
            throw std::invalid_argument("stage name '" + name + "' is used twice");
        }
        p.stage_names.push_back(name);
        return static_cast<uint16_t>(p.stage_names.size() - 1);
    };
    for (size_t h = 0; h < kHookCount; h++) {
        std::vector<const StageDef *> defs;
        std::vector<util::OrderItem> items;
        for (const auto &s : stages_) {
            if (static_cast<size_t>(s.hook) == h) {
                defs.push_back(&s);
                items.push_back({s.name, s.runs_before, s.runs_after});
            }
        }
        std::vector<size_t> order;
        try {
            order = util::order_by_constraints(items, true);
        } catch (const std::invalid_argument &e) {
            throw std::invalid_argument("hook " + std::string(kHookNames[h]) + ": " + e.what());
        }
        // L4-port stages first (they take their packets before the others
        // see the burst): fixed ports and protocols, then run-time ports (a
        // fixed port wins when one meets it), then the rest; each group in
        // the resolved order.
        Pipeline::List &l = p.hooks[h];
        auto group = [](const StageDef &d) {
            return d.l4_proto == 0 ? 2 : d.l4_port_fn != nullptr ? 1 : 0;
        };
        for (int pass = 0; pass < 3; pass++) {
            for (size_t i : order) {
                const StageDef &d = *defs[i];
                if (group(d) != pass) {
                    continue;
                }
                l.e[l.n++] =
                    Pipeline::Entry{d.fn, claim(d.name), d.l4_proto, d.l4_port, d.l4_port_fn};
                l.n_proto += pass == 0 && d.l4_port == 0 ? 1 : 0;
            }
            if (pass == 1) {
                l.n_l4 = l.n;
            }
        }
    }
    for (const auto &t : taps_) {
        Pipeline::TapList &l = p.taps[static_cast<size_t>(t.point)];
        if (t.armed) {
            l.armed |= static_cast<uint8_t>(1u << l.n);
        }
        l.e[l.n++] = Pipeline::TapEntry{t.fn, claim(t.name)};
    }
    p.slot_names = slots_;
    for (size_t i = 0; i < drivers_.size(); i++) {
        p.drivers[i + 1] = Pipeline::Driver{drivers_[i].rx, drivers_[i].tx, drivers_[i].wake_fd,
                                            drivers_[i].arm, drivers_[i].disarm};
    }
    for (const auto &h : housekeeping_) {
        p.housekeeping[p.n_housekeeping++] = h.fn;
    }
    return p;
}

int Pipeline::tap_index(TapPoint p, std::string_view name) const {
    const TapList &l = taps[static_cast<size_t>(p)];
    for (uint8_t i = 0; i < l.n; i++) {
        if (stage_names[l.e[i].stage] == name) {
            return i;
        }
    }
    return -1;
}

size_t Pipeline::stage_id(std::string_view name) const {
    for (size_t i = 0; i < stage_names.size(); i++) {
        if (stage_names[i] == name) {
            return i;
        }
    }
    return SIZE_MAX;
}

const Pipeline &default_pipeline() {
    static const Pipeline p = PipelineRegistry::global().freeze();
    return p;
}

std::string_view nh_kind_name(NhKind k) {
    switch (k) {
        case NhKind::kNone:
            return "none";
        case NhKind::kPod:
            return "pod";
        case NhKind::kVia:
            return "via";
        case NhKind::kBlackhole:
            return "blackhole";
        case NhKind::kUnreachable:
            return "unreachable";
        case NhKind::kResolve:
            return "resolve";
        case NhKind::kGroup:
            return "group";
        default:
            break;
    }
    size_t i = static_cast<size_t>(k) - static_cast<size_t>(NhKind::kFirstFeature);
    const auto &names = PipelineRegistry::global().nh_kind_names();
    if (static_cast<uint8_t>(k) >= static_cast<uint8_t>(NhKind::kFirstFeature) &&
        i < names.size()) {
        return names[i];
    }
    return "unknown";
}

}  // namespace fwd::dp
