// What the compiled policy tests share (test_compile.cpp on the flat rules, test_policy_acl.cpp
// on rte_acl): a matcher of flat rules written from compile.hpp's contract, the comparison of
// a compiled verdict with PolicySet::evaluate's, and random clusters, policies and packets.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fwd/policy/compile.hpp"
#include "fwd/policy/eval.hpp"

namespace fwd::policy::test {

// ---- the packet as the classifier sees it ----

struct FlatKey {
    uint8_t proto = 0;
    uint16_t sport = 0, dport = 0;
};

inline FlatKey flat_key(const Packet &p) {
    FlatKey k;
    k.proto = p.protocol;
    const uint8_t icmp = p.family() == net::Family::kIp4 ? Protocol::kIcmp : Protocol::kIcmp6;
    if (p.protocol == icmp) {
        k.dport = static_cast<uint16_t>(p.icmp_type << 8 | p.icmp_code);
    } else if (Protocol{p.protocol}.has_ports()) {
        k.sport = p.src_port;
        k.dport = p.dst_port;
    }
    return k;
}

inline bool addr_in(const AclAddr &a, const net::IpAddr &ip) {
    std::array<uint32_t, 4> w{};
    if (ip.family() == net::Family::kIp4) {
        w[0] = ip.v4().host();
    } else {
        const auto &b = ip.v6().bytes();
        for (int i = 0; i < 16; ++i) {
            w[i / 4] = w[i / 4] << 8 | b[i];
        }
    }
    const int words = ip.family() == net::Family::kIp4 ? 1 : 4;
    for (int i = 0; i < words; ++i) {
        const int len = std::clamp(a.len - 32 * i, 0, 32);
        const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
        if ((w[i] & mask) != (a.w[i] & mask)) {
            return false;
        }
    }
    return true;
}

// The flat rules matched one by one: the lowest ref of each list wins.
inline CompiledVerdict flat_match(const Compiled &c, const Packet &p, Direction d, ClassId cls) {
    const uint16_t set = c.set_of(cls, d);
    if (set == 0) {
        return {};
    }
    const FlatKey k = flat_key(p);
    auto first = [&](const std::vector<FlatRule> &rules) {
        RuleRef best = kNoRule;
        for (const auto &r : rules) {
            if (r.set == set && k.proto >= r.proto_lo && k.proto <= r.proto_hi &&
                k.sport >= r.sport_lo && k.sport <= r.sport_hi && k.dport >= r.dport_lo &&
                k.dport <= r.dport_hi && addr_in(r.src, p.src) && addr_in(r.dst, p.dst) &&
                (best == kNoRule || r.ref < best)) {
                best = r.ref;
            }
        }
        return best;
    };
    const auto &rules = c.of(p.family(), d);
    return resolve(true, first(rules.decide), first(rules.log), c.refs);
}

// "" when the compiled verdict is the reference's, else what differs.
inline std::string differs(const Compiled &c, const Verdict &want, const CompiledVerdict &got) {
    std::ostringstream out;
    if (want.allowed != got.allowed) {
        out << "allowed " << got.allowed << " want " << want.allowed << "; ";
    }
    const bool by_rule =
        want.reason == Verdict::Reason::kRule || want.reason == Verdict::Reason::kPass;
    if (!by_rule && got.rule != kNoRule) {
        out << "decided by " << c.refs[got.rule].text << ", want no rule (" << want.why << "); ";
    }
    if (by_rule && (got.rule == kNoRule || c.refs[got.rule].policy != want.policy ||
                    c.refs[got.rule].rule != want.rule)) {
        out << "decided by " << (got.rule == kNoRule ? "no rule" : c.refs[got.rule].text)
            << ", want " << want.why << "; ";
    }
    const std::string dir = want.direction == Direction::kIngress ? "ingress" : "egress";
    const std::string log = got.log == kNoRule ? ""
                                               : c.refs[got.log].policy + " " + dir + " rule " +
                                                     std::to_string(c.refs[got.log].rule);
    const std::string want_log = want.logged.empty() ? "" : want.logged.front();
    if (log != want_log) {
        out << "logged '" << log << "' want '" << want_log << "'; ";
    }
    return out.str();
}

// The verdict got(packet, direction, class) gives against the reference's at the local end of
// the packet (its destination for ingress, its source for egress): "" when equal, else what
// differs and where; nullopt when that end is no pod.
template <typename Got>
std::optional<std::string> compare(const PolicySet &s, const Compiled &c, const Packet &p,
                                   Direction d, const Got &got) {
    const Endpoint *ep = s.endpoint_at(d == Direction::kIngress ? p.dst : p.src);
    if (ep == nullptr) {
        return std::nullopt;
    }
    const std::string diff = differs(c, s.evaluate(p, d, *ep), got(p, d, c.class_of.at(ep->key())));
    return diff.empty() ? diff : diff + "at " + ep->key();
}

// A random test's first seed: FWD_SEED when set (to replay a failure), else the clock; printed
// either way.
inline uint64_t seed(const char *test) {
    const char *env = std::getenv("FWD_SEED");
    const uint64_t s =
        env ? std::strtoull(env, nullptr, 10)
            : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    std::printf("%s seed %llu (FWD_SEED=%llu replays it)\n", test,
                static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    return s;
}

// ---- fixtures ----

inline net::IpAddr ip(const std::string &s) {
    return *net::IpAddr::parse(s);
}

inline std::vector<Policy> policies(const std::string &yaml) {
    std::vector<Policy> out;
    for (auto &r : parse_policy_resources(yaml, "t.yaml")) {
        out.push_back(std::get<Policy>(std::move(r.value)));
    }
    return out;
}

inline Pod pod(const std::string &ns, const std::string &name, Labels labels,
               std::vector<const char *> ips, std::vector<NamedPort> ports = {}) {
    Pod p;
    p.ns = ns;
    p.name = name;
    p.labels = std::move(labels);
    for (const char *a : ips) {
        p.ips.push_back(ip(a));
    }
    p.ports = std::move(ports);
    return p;
}

// ---- random clusters, policies and packets ----

struct World {
    std::vector<Namespace> namespaces;
    std::vector<Pod> pods;
    std::vector<Policy> policies;
    std::vector<net::IpAddr> outsiders;  // addresses of no pod
};

class Random {
  public:
    explicit Random(uint64_t seed) : rng_(seed) {}
    int below(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
    bool chance(int percent) { return below(100) < percent; }
    template <typename T>
    const T &pick(const std::vector<T> &v) {
        return v[static_cast<size_t>(below(static_cast<int>(v.size())))];
    }

    World world(int n_policies);
    Packet packet(const World &w);

  private:
    Policy calico_policy(const World &w, int i);
    std::string k8s_policy_yaml(int i);
    Rule rule();
    EntityRule entity(std::optional<net::Family> fam, bool ports, bool negations);
    std::string selector();
    std::string ns_selector();
    std::string labels_yaml();
    std::mt19937_64 rng_;
};

inline Sel sel(const std::string &text) {
    Sel s;
    s.text = text;
    s.parsed = label::Selector::parse(text);
    return s;
}

inline const std::vector<std::string> kValues{"a", "b", "c"};
inline const std::vector<std::string> kNets4{"10.0.0.0/24",    "10.0.0.0/28", "10.0.0.4/30",
                                             "10.0.0.3/32",    "10.1.0.0/16", "0.0.0.0/0",
                                             "192.168.0.0/16", "10.0.0.8/29"};
inline const std::vector<std::string> kNets6{"fd00::/64",     "fd00::/124", "fd00::4/126",
                                             "fd00::3/128",   "fd01::/16",  "::/0",
                                             "2001:db8::/32", "fd00::8/125"};
inline const std::vector<std::string> kPortNames{"http", "dns", "web"};

inline std::string Random::selector() {
    const std::string v = pick(kValues), u = pick(kValues);
    switch (below(10)) {
        case 0:
            return "all()";
        case 1:
            return "app == '" + v + "'";
        case 2:
            return "app != '" + v + "'";
        case 3:
            return "has(tier)";
        case 4:
            return "!has(role)";
        case 5:
            return "app in {'" + v + "', '" + u + "'}";
        case 6:
            return "app == '" + v + "' && tier == '" + u + "'";
        case 7:
            return "app == '" + v + "' || role == '" + u + "'";
        case 8:
            return "pcns.env == 'x'";
        default:
            return "tier == '" + v + "'";
    }
}

inline std::string Random::ns_selector() {
    switch (below(5)) {
        case 0:
            return "all()";
        case 1:
            return "env == 'x'";
        case 2:
            return "env == 'y'";
        case 3:
            return "has(env)";
        default:
            return chance(50) ? "global()" : "projectcalico.org/name == 'ns1'";
    }
}

inline EntityRule Random::entity(std::optional<net::Family> fam, bool ports, bool negations) {
    EntityRule e;
    const auto &nets = fam == net::Family::kIp6 ? kNets6 : kNets4;
    if (fam && chance(30)) {
        for (int i = below(2) + 1; i > 0; --i) {
            e.nets.push_back(*ipam::Cidr::parse(pick(nets)));
        }
    }
    if (fam && negations && chance(25)) {
        for (int i = below(2) + 1; i > 0; --i) {
            e.not_nets.push_back(*ipam::Cidr::parse(pick(nets)));
        }
    }
    if (chance(30)) {
        e.selector = sel(selector());
    }
    if (negations && chance(20)) {
        e.not_selector = sel(selector());
    }
    if (chance(15)) {
        e.namespace_selector = sel(ns_selector());
    }
    auto port = [&]() {
        Port p;
        switch (below(7)) {
            case 0:
                p.min = p.max = 80;
                break;
            case 1:
                p.min = p.max = 53;
                break;
            case 2:
                p.min = 8080, p.max = 8090;
                break;
            case 3:
                p.min = 1, p.max = 1000;
                break;
            case 4:
                p.min = 50000, p.max = 65535;
                break;
            default:
                p.name = pick(kPortNames);
                break;
        }
        return p;
    };
    if (ports && chance(40)) {
        for (int i = below(2) + 1; i > 0; --i) {
            e.ports.push_back(port());
        }
    }
    if (ports && negations && chance(30)) {
        for (int i = below(2) + 1; i > 0; --i) {
            e.not_ports.push_back(port());
        }
    }
    return e;
}

inline Rule Random::rule() {
    Rule r;
    const int a = below(10);
    r.action = a < 4   ? Action::kAllow
               : a < 7 ? Action::kDeny
               : a < 8 ? Action::kPass
                       : Action::kLog;
    std::optional<net::Family> fam;
    if (chance(50)) {
        fam = chance(50) ? net::Family::kIp4 : net::Family::kIp6;
        if (chance(40)) {
            r.ip_version = *fam == net::Family::kIp4 ? 4 : 6;
        }
    }
    const std::vector<uint8_t> protos{Protocol::kTcp,    Protocol::kUdp,   Protocol::kSctp,
                                      Protocol::kIcmp,   Protocol::kIcmp6, 47,
                                      Protocol::kUdpLite};
    if (chance(60)) {
        r.protocol = Protocol{pick(protos)};
    }
    if (chance(20)) {
        r.not_protocol = Protocol{pick(protos)};
    }
    auto icmp = [&]() {
        Icmp i;
        if (chance(80)) {
            i.type = static_cast<uint8_t>(pick(std::vector<int>{0, 3, 8, 11, 128, 129}));
            if (chance(50)) {
                i.code = static_cast<uint8_t>(pick(std::vector<int>{0, 1, 4}));
            }
        }
        return i;
    };
    if (r.protocol && r.protocol->is_icmp() && chance(50)) {
        r.icmp = icmp();
    }
    if (chance(15)) {
        r.not_icmp = icmp();
    }
    const bool ports = r.protocol && r.protocol->has_ports();
    // Nets and negations on one side only: an IPv6 notNets or notSelector is ~128 prefixes
    // per address taken out, both sides multiply to tens of thousands of classifier rules
    // whose rte_acl build takes seconds, and test no more than one side does.
    const bool src = chance(50);
    r.source = entity(src ? fam : std::nullopt, ports, src);
    r.destination = entity(src ? std::nullopt : fam, ports, !src);
    return r;
}

inline Policy Random::calico_policy(const World &w, int i) {
    Policy p;
    p.kind = chance(60) ? PolicyKind::kCalico : PolicyKind::kGlobal;
    p.name = "p" + std::to_string(i);
    if (p.kind == PolicyKind::kCalico) {
        p.ns = pick(w.namespaces).name;
    } else if (chance(30)) {
        p.namespace_selector = sel(pick(std::vector<std::string>{"env == 'x'", "has(env)"}));
    }
    if (chance(80)) {
        p.order = pick(std::vector<double>{1, 10, 100, 100, 500});
    }
    if (chance(70)) {
        p.selector = sel(selector());
    }
    const int t = below(3);
    p.ingress = t != 1;
    p.egress = t != 0;
    for (auto *rules : {&p.ingress_rules, &p.egress_rules}) {
        for (int k = below(5); k > 0; --k) {
            rules->push_back(rule());
        }
    }
    return p;
}

inline std::string Random::labels_yaml() {
    return chance(30) ? "{}" : "{matchLabels: {app: '" + pick(kValues) + "'}}";
}

inline std::string Random::k8s_policy_yaml(int i) {
    std::ostringstream y;
    y << "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k" << i
      << ", namespace: ns" << below(3) << "}\nspec:\n  podSelector: " << labels_yaml() << "\n";
    const int t = below(3);
    y << "  policyTypes: ["
      << (t == 0   ? "Ingress"
          : t == 1 ? "Egress"
                   : "Ingress, Egress")
      << "]\n";
    auto peers = [&](const char *key) {
        std::ostringstream b;
        if (chance(20)) {
            return b.str();
        }
        b << "    " << key << ":\n";
        for (int k = below(2) + 1; k > 0; --k) {
            switch (below(4)) {
                case 0:
                    b << "    - podSelector: " << labels_yaml() << "\n";
                    break;
                case 1:
                    b << "    - namespaceSelector: {matchLabels: {env: '"
                      << (chance(50) ? "x" : "y") << "'}}\n";
                    break;
                case 2:
                    b << "    - namespaceSelector: {}\n      podSelector: " << labels_yaml()
                      << "\n";
                    break;
                default:
                    b << (chance(50)
                              ? "    - ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.4/30]}\n"
                              : "    - ipBlock: {cidr: 'fd00::/64', except: ['fd00::/126']}\n");
            }
        }
        return b.str();
    };
    auto ports = [&]() {
        std::ostringstream b;
        if (chance(40)) {
            return b.str();
        }
        b << "    ports:\n";
        for (int k = below(2) + 1; k > 0; --k) {
            const std::string proto = pick(std::vector<std::string>{"TCP", "UDP", "SCTP"});
            switch (below(4)) {
                case 0:
                    b << "    - {protocol: " << proto << ", port: 80}\n";
                    break;
                case 1:
                    b << "    - {protocol: " << proto << ", port: 1000, endPort: 2000}\n";
                    break;
                case 2:
                    b << "    - {protocol: " << proto << ", port: " << pick(kPortNames) << "}\n";
                    break;
                default:
                    b << "    - {protocol: " << proto << "}\n";
                    break;
            }
        }
        return b.str();
    };
    for (const char *dir : {"ingress", "egress"}) {
        if (chance(25)) {
            continue;
        }
        y << "  " << dir << ":\n";
        for (int k = below(3); k >= 0; --k) {
            // The rule's fields at four spaces, the first one's indent turned into "  - ".
            std::string body = peers(std::string(dir) == "ingress" ? "from" : "to") + ports();
            if (body.empty()) {
                y << "  - {}\n";
            } else {
                y << "  - " << body.substr(4);
            }
        }
    }
    return y.str();
}

inline World Random::world(int n_policies) {
    World w;
    for (int i = 0; i < 3; ++i) {
        Namespace n;
        n.name = "ns" + std::to_string(i);
        if (i != 2) {
            n.labels["env"] = i == 0 ? "x" : "y";
        }
        w.namespaces.push_back(n);
    }
    const int n_pods = 6 + below(10);
    for (int i = 0; i < n_pods; ++i) {
        Pod p;
        p.ns = "ns" + std::to_string(below(3));
        p.name = "pod" + std::to_string(i);
        for (const char *key : {"app", "tier", "role"}) {
            if (chance(60)) {
                p.labels[key] = pick(kValues);
            }
        }
        // Addresses 10.0.0.1.. / fd00::1.. so that the rules' nets cut through them.
        const int fam = below(4);
        if (fam != 1) {
            p.ips.push_back(ip("10.0.0." + std::to_string(i + 1)));
        }
        if (fam != 0) {
            p.ips.push_back(ip("fd00::" + std::to_string(i + 1)));
        }
        for (int k = below(3); k > 0; --k) {
            const uint8_t proto =
                pick(std::vector<uint8_t>{Protocol::kTcp, Protocol::kUdp, Protocol::kSctp});
            const uint16_t port = pick(std::vector<uint16_t>{80, 53, 8080, 443, 1500});
            p.ports.push_back({pick(kPortNames), Protocol{proto}, port});
        }
        w.pods.push_back(p);
    }
    for (const char *a : {"10.0.0.200", "10.1.0.5", "192.168.1.1", "172.16.0.1", "fd00::200",
                          "fd01::5", "2001:db8::1", "fe80::1"}) {
        w.outsiders.push_back(ip(a));
    }
    for (int i = 0; i < n_policies;) {
        try {
            if (chance(25)) {
                const std::string yaml = k8s_policy_yaml(i);
                for (auto &r : parse_policy_resources(yaml, "random.yaml")) {
                    w.policies.push_back(std::get<Policy>(std::move(r.value)));
                }
            } else {
                Policy p = calico_policy(w, i);
                validate(p);
                w.policies.push_back(std::move(p));
            }
            ++i;
        } catch (const PolicyError &) {
            // Calico refuses it (e.g. ports with notProtocol only): draw another.
        }
    }
    return w;
}

inline Packet Random::packet(const World &w) {
    const bool v6 = chance(50);
    auto addr = [&]() {
        std::vector<net::IpAddr> pool;
        for (const auto &p : w.pods) {
            for (const auto &a : p.ips) {
                if ((a.family() == net::Family::kIp6) == v6) {
                    pool.push_back(a);
                }
            }
        }
        if (pool.empty() || chance(20)) {
            pool.clear();
            for (const auto &a : w.outsiders) {
                if ((a.family() == net::Family::kIp6) == v6) {
                    pool.push_back(a);
                }
            }
        }
        return pick(pool);
    };
    Packet p;
    p.src = addr();
    p.dst = addr();
    const uint8_t icmp = v6 ? Protocol::kIcmp6 : Protocol::kIcmp;
    p.protocol = pick(std::vector<uint8_t>{
        Protocol::kTcp, Protocol::kTcp, Protocol::kUdp, Protocol::kSctp, icmp, icmp,
        v6 ? Protocol::kIcmp : Protocol::kIcmp6, 47, Protocol::kUdpLite, 0});
    if (Protocol{p.protocol}.has_ports()) {
        const std::vector<uint16_t> ports{80,   53,   443,  8080, 8085,  8090,  8091,  999,
                                          1000, 1001, 1500, 2000, 50000, 12345, 65535, 1};
        p.src_port = pick(ports);
        p.dst_port = pick(ports);
    } else if (p.protocol == icmp) {
        p.icmp_type = static_cast<uint8_t>(pick(std::vector<int>{0, 3, 8, 11, 128, 129}));
        p.icmp_code = static_cast<uint8_t>(pick(std::vector<int>{0, 1, 4}));
    }
    return p;
}

}  // namespace fwd::policy::test
