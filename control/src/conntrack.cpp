// The conntrack module (conntrack_module.hpp) and the "conntrack" section of
// the node config:
//
//   "conntrack": {"capacity": 262144, "tcp_loose": true, "tcp_liberal": false,
//                 "timeouts": {"tcp_established": 432000, "udp_unreplied": 30, ...}}
//
// Every field optional, defaults Linux's (dp::ct::Config, Timeouts). Ops:
// conntrack.list / count / flush with the filters proto, src, dst, addr,
// port, state, family (conntrack.list: limit too).
#include "fwd/control/conntrack_module.hpp"

#include <netinet/in.h>
#include <rte_cycles.h>

#include <cstring>

#include "api_args.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/dp/nat.hpp"
#include "fwd/net/addr.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;
namespace ct = dp::ct;

namespace {

// The config section's value: the core's Config (its defaults).
struct ConntrackConfig {
    ct::Config ct;
};

struct TimeoutField {
    const char *key;
    uint32_t ct::Timeouts::*field;
};
constexpr TimeoutField kTimeouts[] = {
    {"tcp_syn_sent", &ct::Timeouts::tcp_syn_sent},
    {"tcp_syn_recv", &ct::Timeouts::tcp_syn_recv},
    {"tcp_established", &ct::Timeouts::tcp_established},
    {"tcp_fin_wait", &ct::Timeouts::tcp_fin_wait},
    {"tcp_close_wait", &ct::Timeouts::tcp_close_wait},
    {"tcp_last_ack", &ct::Timeouts::tcp_last_ack},
    {"tcp_time_wait", &ct::Timeouts::tcp_time_wait},
    {"tcp_close", &ct::Timeouts::tcp_close},
    {"udp_unreplied", &ct::Timeouts::udp_unreplied},
    {"udp_replied", &ct::Timeouts::udp_replied},
    {"icmp", &ct::Timeouts::icmp},
    {"generic", &ct::Timeouts::generic},
};

ConntrackConfig parse_conntrack(const config::Object &o, const NodeConfig &) {
    ConntrackConfig c;
    if (auto f = o.get("capacity")) {
        c.ct.capacity = f->integer<uint32_t>(1, ct::kMaxCapacity);
    }
    if (auto f = o.get("tcp_loose")) {
        c.ct.tcp_loose = f->boolean();
    }
    if (auto f = o.get("tcp_liberal")) {
        c.ct.tcp_liberal = f->boolean();
    }
    if (auto f = o.get("timeouts")) {
        std::vector<std::string_view> keys;
        for (const auto &t : kTimeouts) {
            keys.push_back(t.key);
        }
        config::Object to(*f, keys);
        for (const auto &t : kTimeouts) {
            if (auto v = to.get(t.key)) {
                c.ct.timeouts.*t.field = v->integer<uint32_t>(1, ct::kMaxTimeout);
            }
        }
    }
    if (std::string why = c.ct.validate(); !why.empty()) {
        throw ConfigError("conntrack", why);
    }
    return c;
}

// --- filters of the ops ---

ct::Filter::Addr parse_addr(const json &args, const char *key) {
    const std::string s = get_str(args, key, true);
    auto a = net::IpAddr::parse(s);
    if (!a) {
        bad(std::string("field '") + key + "': '" + s + "' is not an IPv4 or IPv6 address");
    }
    ct::Filter::Addr out{};
    if (a->family() == net::Family::kIp6) {
        out.family = 6;
        out.bytes = a->v6().bytes();
    } else {
        out.family = 4;
        const uint32_t be = a->v4().be().raw();
        std::memcpy(out.bytes.data(), &be, 4);
    }
    return out;
}

uint8_t parse_proto(const json &args) {
    const std::string s = get_str(args, "proto", true);
    if (s == "tcp") {
        return IPPROTO_TCP;
    }
    if (s == "udp") {
        return IPPROTO_UDP;
    }
    if (s == "icmp") {
        return IPPROTO_ICMP;
    }
    if (s == "icmp6" || s == "icmpv6") {
        return IPPROTO_ICMPV6;
    }
    if (s == "sctp") {
        return IPPROTO_SCTP;
    }
    char *end = nullptr;
    const unsigned long n = std::strtoul(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || n > 255) {
        bad("field 'proto': '" + s + "' is not tcp, udp, icmp, icmp6, sctp or a number 0-255");
    }
    return static_cast<uint8_t>(n);
}

const std::vector<std::string> kFilterArgs = {"proto", "src",   "dst",   "addr",
                                              "port",  "state", "family"};

ct::Filter parse_filter(const json &args) {
    ct::Filter f;
    if (args.contains("proto")) {
        f.proto = parse_proto(args);
    }
    for (auto [key, slot] : {std::pair{"src", &f.src}, {"dst", &f.dst}, {"addr", &f.addr}}) {
        if (args.contains(key)) {
            *slot = parse_addr(args, key);
        }
    }
    if (args.contains("port")) {
        const json &p = args["port"];
        if (!p.is_number_unsigned() || p.get<uint64_t>() > 65535) {
            bad("field 'port': expected a number 0-65535, got " + p.dump());
        }
        f.port = static_cast<uint16_t>(p.get<uint64_t>());
    }
    if (args.contains("state")) {
        const std::string s = get_str(args, "state", true);
        std::string names;
        for (size_t i = 0; i < ct::kTcpStateCount; i++) {
            if (s == ct::kTcpStateNames[i]) {
                f.state = static_cast<ct::TcpState>(i);
            }
            names += (names.empty() ? "" : ", ") + std::string(ct::kTcpStateNames[i]);
        }
        if (!f.state) {
            bad("field 'state': '" + s + "' is not a TCP state (" + names + ")");
        }
    }
    if (args.contains("family")) {
        const json &v = args["family"];
        if (!v.is_number_unsigned() || (v.get<uint64_t>() != 4 && v.get<uint64_t>() != 6)) {
            bad("field 'family': expected 4 or 6, got " + v.dump());
        }
        f.family = static_cast<uint8_t>(v.get<uint64_t>());
    }
    return f;
}

json flow_json(const ct::FlowInfo &fi) {
    // dp::nat::NatFlags: "snat" (natOutgoing), "dnat" (a service),
    // "dnat+snat" (a service with the client's source to the node).
    std::string nat;
    if (fi.nat.flags & dp::nat::kNatDnat) {
        nat = "dnat";
    }
    if (fi.nat.flags & dp::nat::kNatSnat) {
        nat += nat.empty() ? "snat" : "+snat";
    }
    std::string changes;
    const char *names[] = {"src", "dst", "sport", "dport"};
    for (int dir = 0; dir < 2; dir++) {
        const uint8_t ch = dir == 0 ? (fi.changes & 0xf) : (fi.changes >> 4);
        for (int b = 0; b < 4; b++) {
            if (ch & (1 << b)) {
                changes += (changes.empty() ? "" : ",") +
                           std::string(dir == 0 ? "orig." : "reply.") + names[b];
            }
        }
    }
    return json{{"id", fi.id},
                {"kind", std::string(ct::kind_name(fi.kind))},
                {"family", fi.orig.family},
                {"proto", fi.orig.proto},
                {"orig", fi.orig.str()},
                {"reply", fi.reply.str()},
                {"state", fi.kind == ct::L4Kind::kTcp
                              ? json(std::string(ct::kTcpStateNames[static_cast<size_t>(fi.state)]))
                              : json()},
                {"replied", (fi.status & ct::kStatusReplied) != 0},
                {"nat", nat.empty() ? json() : json(nat)},
                {"changes", changes},
                {"expires_in_ms", fi.expires_in_ms}};
}

}  // namespace

ConntrackModule::ConntrackModule(ControlContext &ctx)
    : ctx_(ctx),
      cfg_(ctx.cfg().section<ConntrackConfig>("conntrack").ct),
      counters_(std::make_unique<ct::Counters[]>(std::max<size_t>(ctx.workers().size(), 1))) {
    std::vector<std::string> list_args = kFilterArgs;
    list_args.push_back("limit");
    ctx.add_op({.name = "conntrack.list", .args = list_args, .fn = [this](const json &a) {
                    return list(a);
                }});
    ctx.add_op({.name = "conntrack.count", .args = kFilterArgs, .fn = [this](const json &a) {
                    return count(a);
                }});
    ctx.add_op({.name = "conntrack.flush", .args = kFilterArgs, .fn = [this](const json &a) {
                    return flush(a);
                }});
}

ConntrackModule::~ConntrackModule() = default;

ct::ConnTable &ConntrackModule::require() {
    if (!table_) {
        cfg_.validate();  // parse_conntrack checked it
        table_ = std::make_unique<ct::ConnTable>(cfg_, rte_get_tsc_hz(), ctx_.tables().qsbr());
    }
    return *table_;
}

json ConntrackModule::list(const json &args) {
    const ct::Filter f = parse_filter(args);
    size_t limit = 1000;
    if (args.contains("limit")) {
        const json &l = args["limit"];
        if (!l.is_number_unsigned() || l.get<uint64_t>() == 0 || l.get<uint64_t>() > 1000000) {
            bad("field 'limit': expected a number 1-1000000, got " + l.dump());
        }
        limit = l.get<size_t>();
    }
    json flows = json::array();
    bool truncated = false;
    if (table_) {
        std::vector<ct::FlowInfo> buf(256);
        uint32_t cursor = 0;
        const uint64_t now = rte_rdtsc();
        while (cursor < table_->capacity()) {
            const size_t n = table_->snapshot(&cursor, f, now, buf.data(), buf.size());
            for (size_t i = 0; i < n; i++) {
                if (flows.size() == limit) {
                    truncated = true;
                    break;
                }
                flows.push_back(flow_json(buf[i]));
            }
            if (truncated) {
                break;
            }
        }
    }
    return json{{"enabled", table_ != nullptr}, {"flows", flows}, {"truncated", truncated}};
}

json ConntrackModule::count(const json &args) {
    const ct::Filter f = parse_filter(args);
    if (!table_) {
        return json{{"enabled", false}, {"count", 0}};
    }
    return json{{"enabled", true},
                {"count", table_->count(f, rte_rdtsc())},
                {"in_use", table_->in_use()},
                {"capacity", table_->capacity()}};
}

json ConntrackModule::flush(const json &args) {
    const ct::Filter f = parse_filter(args);
    return json{{"enabled", table_ != nullptr}, {"flushed", table_ ? table_->flush(f) : 0}};
}

void ConntrackModule::counters(json &out) const {
    if (!table_) {
        return;
    }
    const json results = sum_results(
        ct::kResultInfo, std::max<size_t>(ctx_.workers().size(), 1),
        [&](size_t w, size_t r) { return counters_[w].get(static_cast<ct::Result>(r)); });
    out["conntrack"] = json{{"capacity", table_->capacity()},
                            {"in_use", table_->in_use()},
                            {"pending_free", table_->pending_free()},
                            {"results", results}};
}

void ConntrackModule::describe_tables(json &out) const {
    out["conntrack"] =
        table_ ? json{{"capacity", table_->capacity()},
                      {"in_use", table_->in_use()},
                      {"bytes_per_flow", ct::ConnTable::bytes_per_flow()},
                      {"bytes", uint64_t{table_->capacity()} * ct::ConnTable::bytes_per_flow()}}
               : json();
}

FWD_ON_LOAD(register_module<ConntrackModule>({}));
FWD_ON_LOAD(register_config_section<ConntrackConfig>(
    "conntrack", {"capacity", "tcp_loose", "tcp_liberal", "timeouts"}, parse_conntrack));

}  // namespace fwd::control
