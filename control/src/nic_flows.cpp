// The uplink's flow rules: the plan, the exact policy drops and the installer (nic_flows.hpp).
#include "fwd/control/nic_flows.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include "fwd/policy/compile.hpp"

namespace fwd::control::flows {

using nlohmann::json;

namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58;
constexpr uint8_t kEcho4 = 8, kEcho6 = 128;
constexpr uint32_t kPrioPolicy = 0, kPrioVxlan = 1, kPrioRss = 2;
// Exact drops are looked for among the first rules of each rule set (in order): a Deny further
// down is rarely first for anything, and the scan is quadratic in what it looks at.
constexpr size_t kScanRules = 64;
// Rules one flat rule may become at the NIC (port ranges cut into masks, both ports).
constexpr size_t kMaxPerFlatRule = 32;

std::string proto_name(uint8_t p) {
    switch (p) {
        case kTcp:
            return "tcp";
        case kUdp:
            return "udp";
        case kIcmp:
            return "icmp";
        case kIcmp6:
            return "icmp6";
        default:
            return "proto " + std::to_string(p);
    }
}

std::string masked_str(const Masked16 &m) {
    if (m.mask == 0xffff) {
        return std::to_string(m.value);
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%u/0x%04x", m.value, m.mask);
    return buf;
}

// [lo, hi] as value/mask pairs (the fewest aligned blocks); the whole 0..65535 as one
// nullopt: no match on the field.
std::vector<std::optional<Masked16>> range_masks(uint32_t lo, uint32_t hi) {
    if (lo == 0 && hi == 0xffff) {
        return {std::nullopt};
    }
    std::vector<std::optional<Masked16>> out;
    while (lo <= hi) {
        uint32_t size = 1;
        while ((lo & (size * 2 - 1)) == 0 && lo + size * 2 - 1 <= hi && size < 0x10000) {
            size *= 2;
        }
        out.push_back(Masked16{static_cast<uint16_t>(lo), static_cast<uint16_t>(~(size - 1))});
        lo += size;
    }
    return out;
}

net::AnyPrefix to_prefix(const policy::AclAddr &a, net::Family f) {
    if (f == net::Family::kIp4) {
        return net::Prefix4{net::Ip4Addr::from_host(a.w[0]), a.len};
    }
    uint8_t b[16];
    for (int i = 0; i < 4; i++) {
        b[i * 4] = static_cast<uint8_t>(a.w[i] >> 24);
        b[i * 4 + 1] = static_cast<uint8_t>(a.w[i] >> 16);
        b[i * 4 + 2] = static_cast<uint8_t>(a.w[i] >> 8);
        b[i * 4 + 3] = static_cast<uint8_t>(a.w[i]);
    }
    return net::Prefix6{net::Ip6Addr::from_bytes(b), a.len};
}

// The classifier's form of an address (compile.hpp's AclAddr), full length.
policy::AclAddr acl_addr(const net::IpAddr &ip) {
    policy::AclAddr a;
    if (ip.family() == net::Family::kIp4) {
        a.w[0] = ip.v4().host();
        a.len = 32;
        return a;
    }
    const uint8_t *b = ip.v6().data();
    for (int i = 0; i < 4; i++) {
        a.w[i] = static_cast<uint32_t>(b[i * 4]) << 24 | static_cast<uint32_t>(b[i * 4 + 1]) << 16 |
                 static_cast<uint32_t>(b[i * 4 + 2]) << 8 | b[i * 4 + 3];
    }
    a.len = 128;
    return a;
}

// Whether prefix p contains address a (both in AclAddr form, a of full length).
bool acl_contains(const policy::AclAddr &p, const policy::AclAddr &a) {
    int left = p.len;
    for (int i = 0; i < 4 && left > 0; i++, left -= 32) {
        const uint32_t mask = left >= 32 ? 0xffffffffu : ~(0xffffffffu >> left);
        if ((p.w[i] & mask) != (a.w[i] & mask)) {
            return false;
        }
    }
    return true;
}

// Whether two prefixes share an address: one contains the other.
bool acl_overlap(const policy::AclAddr &x, const policy::AclAddr &y) {
    return x.len <= y.len ? acl_contains(x, y) : acl_contains(y, x);
}

// The packets an exact drop covers, in the classifier's fields.
struct Box {
    uint8_t proto = 0;
    policy::AclAddr src, dst;
    uint32_t sport_lo = 0, sport_hi = 0xffff, dport_lo = 0, dport_hi = 0xffff;
};

bool overlaps(const policy::FlatRule &q, const Box &b) {
    return q.proto_lo <= b.proto && b.proto <= q.proto_hi && acl_overlap(q.src, b.src) &&
           acl_overlap(q.dst, b.dst) && q.sport_lo <= b.sport_hi && b.sport_lo <= q.sport_hi &&
           q.dport_lo <= b.dport_hi && b.dport_lo <= q.dport_hi;
}

}  // namespace

std::string Match::str() const {
    std::ostringstream o;
    const char *sep = "";
    auto word = [&](const std::string &s) {
        o << sep << s;
        sep = " ";
    };
    if (vlan != 0) {
        word("vlan " + std::to_string(vlan));
    }
    if (!family) {
        word("any");
    } else {
        word(*family == net::Family::kIp4 ? "ipv4" : "ipv6");
    }
    if (src) {
        word("src " + net::str(*src));
    }
    if (dst) {
        word("dst " + net::str(*dst));
    }
    if (proto) {
        word(proto_name(*proto));
    }
    if (sport) {
        word("sport " + masked_str(*sport));
    }
    if (dport) {
        word("dport " + masked_str(*dport));
    }
    if (tcp_syn_only) {
        word("syn !ack");
    }
    if (icmp_type) {
        word("type " + std::to_string(*icmp_type));
    }
    return o.str();
}

std::string Action::str() const {
    std::string s;
    auto list = [&] {
        std::string l;
        for (size_t i = 0; i < queues.size(); i++) {
            l += (i ? "," : "") + std::to_string(queues[i]);
        }
        return l;
    };
    switch (kind) {
        case Kind::kRss:
            s = "rss level " + std::to_string(level) + " queues " + list();
            break;
        case Kind::kQueue:
            s = "queue " + list();
            break;
        case Kind::kDrop:
            s = "drop";
            break;
    }
    return count ? s + ", count" : s;
}

std::vector<Group> plan(const PlanInput &in) {
    std::vector<Group> out;
    const size_t n = in.queues.size();
    if (n < 2) {
        return out;  // one queue: nothing to spread
    }
    for (net::Family f : {net::Family::kIp4, net::Family::kIp6}) {
        Rule r;
        r.priority = kPrioRss;
        r.match.vlan = in.vlan;
        r.match.family = f;
        r.action = Action{Action::Kind::kRss, in.queues, 0, false};
        out.push_back(Group{"rss", f == net::Family::kIp4 ? "ipv4" : "ipv6", {{r}}});
    }
    // Buckets of the outer source port for the fallback: n when a power of two, else enough
    // that the queues' shares differ by at most a quarter.
    size_t buckets = 1;
    while (buckets < n) {
        buckets *= 2;
    }
    if (buckets != n) {
        while (buckets < 4 * n && buckets < 64) {
            buckets *= 2;
        }
    }
    auto vxlan = [&](net::Family f, net::AnyPrefix dst, const std::string &addr) {
        Rule base;
        base.priority = kPrioVxlan;
        base.match.vlan = in.vlan;
        base.match.family = f;
        base.match.dst = dst;
        base.match.proto = kUdp;
        base.match.dport = Masked16{in.vxlan_port, 0xffff};
        Rule inner = base;
        inner.action = Action{Action::Kind::kRss, in.queues, 2, false};
        std::vector<Rule> by_port;
        for (size_t b = 0; b < buckets; b++) {
            Rule r = base;
            r.match.sport = Masked16{static_cast<uint16_t>(b), static_cast<uint16_t>(buckets - 1)};
            r.action = Action{Action::Kind::kQueue, {in.queues[b % n]}, 0, false};
            by_port.push_back(r);
        }
        out.push_back(Group{
            "vxlan", "to " + addr + " port " + std::to_string(in.vxlan_port), {{inner}, by_port}});
    };
    if (in.vtep4) {
        vxlan(net::Family::kIp4, net::Prefix4{*in.vtep4, 32}, in.vtep4->str());
    }
    if (in.vtep6) {
        vxlan(net::Family::kIp6, net::Prefix6{*in.vtep6, 128}, in.vtep6->str());
    }
    return out;
}

PolicyDrops policy_drops(const policy::Compiled &c, const LocalAddrs &local, uint16_t vlan,
                         size_t max_rules) {
    using policy::Action;
    using policy::Direction;
    PolicyDrops out;
    size_t rules = 0;
    // Each (family, rule set)'s rules in order, Log rules among them, made once: a node's
    // pods share a few sets, and a set may hold thousands of rules.
    std::map<std::pair<int, uint16_t>, std::vector<const policy::FlatRule *>> by_set;
    auto rules_of = [&](net::Family fam, uint16_t set) -> const auto & {
        const auto key = std::make_pair(fam == net::Family::kIp4 ? 4 : 6, set);
        auto it = by_set.find(key);
        if (it == by_set.end()) {
            std::vector<const policy::FlatRule *> v;
            const policy::FlatRules &fr = c.of(fam, Direction::kIngress);
            for (const auto *list : {&fr.decide, &fr.log}) {
                for (const auto &q : *list) {
                    if (q.set == set) {
                        v.push_back(&q);
                    }
                }
            }
            std::stable_sort(v.begin(), v.end(),
                             [](const auto *a, const auto *b) { return a->ref < b->ref; });
            it = by_set.emplace(key, std::move(v)).first;
        }
        return it->second;
    };
    for (const auto &[pod, ips] : local) {
        const auto cls = c.class_of.find(pod);
        if (cls == c.class_of.end()) {
            continue;
        }
        const uint16_t set = c.classes[cls->second].ingress_set;
        if (set == 0) {
            continue;  // no policy: nothing denies
        }
        for (const net::IpAddr &ip : ips) {
            const net::Family fam = ip.family();
            const policy::AclAddr me = acl_addr(ip);
            // The set's rules that can reach this address, in order, the first kScanRules.
            std::vector<const policy::FlatRule *> seen;
            for (const policy::FlatRule *q : rules_of(fam, set)) {
                if (seen.size() == kScanRules) {
                    break;
                }
                if (acl_contains(q->dst, me)) {
                    seen.push_back(q);
                }
            }
            std::map<policy::RuleRef, std::vector<flows::Rule>> by_ref;
            for (size_t i = 0; i < seen.size(); i++) {
                const policy::FlatRule &r = *seen[i];
                if (c.refs[r.ref].action != Action::kDeny) {
                    continue;
                }
                const uint8_t icmp = fam == net::Family::kIp4 ? kIcmp : kIcmp6;
                const uint8_t echo = fam == net::Family::kIp4 ? kEcho4 : kEcho6;
                for (uint8_t proto : {kTcp, icmp}) {
                    if (proto < r.proto_lo || proto > r.proto_hi) {
                        continue;
                    }
                    Box b{proto, r.src, me, r.sport_lo, r.sport_hi, r.dport_lo, r.dport_hi};
                    if (proto == icmp) {
                        // The whole echo request type (any code), source "port" 0.
                        const uint32_t lo = uint32_t{echo} << 8, hi = lo | 0xff;
                        if (r.sport_lo != 0 || r.dport_lo > lo || r.dport_hi < hi) {
                            continue;
                        }
                        b.sport_lo = b.sport_hi = 0;
                        b.dport_lo = lo;
                        b.dport_hi = hi;
                    }
                    // Exact only if no earlier rule (another ref: Allow, Deny, Pass or Log)
                    // can see these packets; seen is in ref order, Log rules included.
                    bool exact = true;
                    for (size_t j = 0; j < i && exact; j++) {
                        if (seen[j]->ref != r.ref && overlaps(*seen[j], b)) {
                            exact = false;
                        }
                    }
                    if (!exact) {
                        continue;
                    }
                    flows::Rule base;
                    base.priority = kPrioPolicy;
                    base.match.vlan = vlan;
                    base.match.family = fam;
                    base.match.src = to_prefix(r.src, fam);
                    base.match.dst = to_prefix(me, fam);
                    base.match.proto = proto;
                    base.action = flows::Action{flows::Action::Kind::kDrop, {}, 0, true};
                    std::vector<flows::Rule> made;
                    if (proto == kTcp) {
                        base.match.tcp_syn_only = true;
                        const auto sps = range_masks(r.sport_lo, r.sport_hi);
                        const auto dps = range_masks(r.dport_lo, r.dport_hi);
                        if (sps.size() * dps.size() > kMaxPerFlatRule) {
                            continue;
                        }
                        for (const auto &sp : sps) {
                            for (const auto &dp : dps) {
                                flows::Rule x = base;
                                x.match.sport = sp;
                                x.match.dport = dp;
                                made.push_back(x);
                            }
                        }
                    } else {
                        base.match.icmp_type = echo;
                        made.push_back(base);
                    }
                    auto &v = by_ref[r.ref];
                    v.insert(v.end(), made.begin(), made.end());
                }
            }
            for (auto &[ref, rs] : by_ref) {
                if (rules + rs.size() > max_rules) {
                    out.left += rs.size();
                    continue;
                }
                rules += rs.size();
                out.groups.push_back(Group{"policy",
                                           c.refs[ref].text + " for " + pod + " " + ip.str(),
                                           {rs},
                                           c.refs[ref].policy,
                                           c.refs[ref].rule});
            }
        }
    }
    return out;
}

std::optional<Mode> parse_mode(std::string_view s) {
    if (s == "off") {
        return Mode::kOff;
    }
    if (s == "validate") {
        return Mode::kValidate;
    }
    if (s == "install") {
        return Mode::kInstall;
    }
    return std::nullopt;
}

std::string_view to_string(Mode m) {
    switch (m) {
        case Mode::kOff:
            return "off";
        case Mode::kValidate:
            return "validate";
        case Mode::kInstall:
            return "install";
    }
    return "?";
}

Installer::~Installer() {
    for (auto &e : entries_) {
        remove(e);
    }
}

void Installer::remove(Entry &e) {
    for (uint64_t h : e.handles) {
        (void)dev_->destroy(h);
    }
    e.handles.clear();
}

void Installer::apply(const std::vector<Group> &wanted) {
    std::vector<Entry> next;
    std::vector<bool> kept(entries_.size(), false);
    for (const Group &g : wanted) {
        auto it = std::find_if(entries_.begin(), entries_.end(),
                               [&](const Entry &e) { return e.group == g; });
        if (it != entries_.end() && !kept[static_cast<size_t>(it - entries_.begin())]) {
            kept[static_cast<size_t>(it - entries_.begin())] = true;
            next.push_back(std::move(*it));
            continue;
        }
        Entry e;
        e.group = g;
        if (mode_ == Mode::kOff) {
            e.errors.push_back("flows are off (uplink.flows)");
            next.push_back(std::move(e));
            continue;
        }
        for (size_t o = 0; o < g.options.size() && e.state == State::kRefused; o++) {
            std::string why;
            for (const Rule &r : g.options[o]) {
                why = dev_->validate(r);
                if (!why.empty()) {
                    why = r.match.str() + " -> " + r.action.str() + ": " + why;
                    break;
                }
            }
            if (why.empty() && mode_ == Mode::kValidate) {
                e.state = State::kValidated;
                e.option = static_cast<int>(o);
                break;
            }
            if (why.empty()) {
                for (const Rule &r : g.options[o]) {
                    std::string err;
                    const uint64_t h = dev_->create(r, &err);
                    if (h == 0) {
                        why = "validated, not created: " + r.match.str() + " -> " + r.action.str() +
                              ": " + err;
                        remove(e);
                        break;
                    }
                    e.handles.push_back(h);
                }
                if (why.empty()) {
                    e.state = State::kInstalled;
                    e.option = static_cast<int>(o);
                    break;
                }
            }
            e.errors.push_back(why);
        }
        next.push_back(std::move(e));
    }
    for (size_t i = 0; i < entries_.size(); i++) {
        if (!kept[i]) {
            remove(entries_[i]);
        }
    }
    entries_ = std::move(next);
}

std::optional<uint64_t> Installer::hits(const Entry &e) const {
    if (e.state != State::kInstalled) {
        return std::nullopt;
    }
    std::optional<uint64_t> sum;
    const auto &rules = e.group.options[static_cast<size_t>(e.option)];
    for (size_t i = 0; i < e.handles.size() && i < rules.size(); i++) {
        if (!rules[i].action.count) {
            continue;
        }
        if (auto h = dev_->hits(e.handles[i])) {
            sum = sum.value_or(0) + *h;
        }
    }
    return sum;
}

RuleHits Installer::policy_hits() const {
    RuleHits out;
    for (const Entry &e : entries_) {
        if (e.group.kind == "policy") {
            if (const auto h = hits(e)) {
                out[{e.group.policy, e.group.rule}] += *h;
            }
        }
    }
    return out;
}

json Installer::to_json() const {
    json groups = json::array();
    for (const Entry &e : entries_) {
        json g{{"kind", e.group.kind},
               {"what", e.group.what},
               {"state", e.state == State::kInstalled   ? "installed"
                         : e.state == State::kValidated ? "validated"
                                                        : "refused"},
               {"option", e.option},
               {"options", e.group.options.size()}};
        json rules = json::array();
        if (e.option >= 0) {
            for (const Rule &r : e.group.options[static_cast<size_t>(e.option)]) {
                rules.push_back({{"priority", r.priority},
                                 {"match", r.match.str()},
                                 {"action", r.action.str()}});
            }
        } else if (!e.group.options.empty()) {
            for (const Rule &r : e.group.options.front()) {
                rules.push_back({{"priority", r.priority},
                                 {"match", r.match.str()},
                                 {"action", r.action.str()}});
            }
        }
        g["rules"] = rules;
        g["errors"] = e.errors;
        const auto h = hits(e);
        g["hits"] = h ? json(*h) : json();
        groups.push_back(g);
    }
    return json{{"mode", to_string(mode_)}, {"groups", groups}};
}

}  // namespace fwd::control::flows
