// The policy compiler; see fwd/policy/compile.hpp.
#include "fwd/policy/compile.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <unordered_map>
#include <utility>

namespace fwd::policy {

namespace {

using U128 = unsigned __int128;

// A set of values as sorted, disjoint, non-adjacent closed intervals. One type serves
// addresses (IPv6's need 128 bits), ports and protocols: the compiler's sets are small.
using Interval = std::pair<U128, U128>;
using Set = std::vector<Interval>;

Set one(U128 lo, U128 hi) {
    return Set{{lo, hi}};
}

// Sorts and merges overlapping and adjacent intervals.
Set normalize(Set s) {
    std::sort(s.begin(), s.end());
    Set out;
    for (const auto &iv : s) {
        if (!out.empty() && (iv.first <= out.back().second || iv.first == out.back().second + 1)) {
            out.back().second = std::max(out.back().second, iv.second);
        } else {
            out.push_back(iv);
        }
    }
    return out;
}

Set intersect(const Set &a, const Set &b) {
    Set out;
    size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        const U128 lo = std::max(a[i].first, b[j].first);
        const U128 hi = std::min(a[i].second, b[j].second);
        if (lo <= hi) {
            out.emplace_back(lo, hi);
        }
        (a[i].second < b[j].second ? i : j)++;
    }
    return out;
}

// a without b.
Set subtract(const Set &a, const Set &b) {
    Set out;
    size_t j = 0;
    for (auto [lo, hi] : a) {
        while (j < b.size() && b[j].second < lo) {
            ++j;
        }
        size_t k = j;
        bool gone = false;
        while (k < b.size() && b[k].first <= hi) {
            if (b[k].first > lo) {
                out.emplace_back(lo, b[k].first - 1);
            }
            if (b[k].second >= hi) {
                gone = true;
                break;
            }
            lo = b[k].second + 1;
            ++k;
        }
        if (!gone) {
            out.emplace_back(lo, hi);
        }
    }
    return out;
}

bool contains(const Set &s, U128 v) {
    return std::any_of(s.begin(), s.end(),
                       [&](const Interval &iv) { return iv.first <= v && v <= iv.second; });
}

int width(net::Family f) {
    return f == net::Family::kIp4 ? 32 : 128;
}

U128 all_ones(int bits) {
    return bits == 128 ? ~U128{0} : (U128{1} << bits) - 1;
}

U128 value_of(const net::IpAddr &a) {
    if (a.family() == net::Family::kIp4) {
        return a.v4().host();
    }
    U128 v = 0;
    for (uint8_t b : a.v6().bytes()) {
        v = v << 8 | b;
    }
    return v;
}

Interval interval_of(const ipam::Cidr &c) {
    const U128 lo = value_of(c.addr());
    return {lo, lo | all_ones(c.bits() - c.len())};
}

// The fewest prefixes covering exactly the set.
std::vector<AclAddr> prefixes(const Set &s, net::Family f) {
    const int bits = width(f);
    std::vector<AclAddr> out;
    for (auto [lo, hi] : s) {
        while (true) {
            // The largest block aligned at lo that ends at or before hi.
            int host = 0;
            while (host < bits && (lo & (U128{1} << host)) == 0 &&
                   (lo | all_ones(host + 1)) <= hi) {
                ++host;
            }
            AclAddr a;
            a.len = static_cast<uint8_t>(bits - host);
            if (f == net::Family::kIp4) {
                a.w[0] = static_cast<uint32_t>(lo);
            } else {
                for (int i = 0; i < 4; ++i) {
                    a.w[i] = static_cast<uint32_t>(lo >> (96 - 32 * i));
                }
            }
            out.push_back(a);
            const U128 end = lo | all_ones(host);
            if (end >= hi) {
                break;
            }
            lo = end + 1;
        }
    }
    return out;
}

const Set kAllPorts = one(0, 65535);
const Set kAllProtos = one(0, 255);

Set icmp_codes(const Icmp &i) {
    if (!i.type) {
        return kAllPorts;
    }
    const U128 t = U128{*i.type} << 8;
    return i.code ? one(t | *i.code, t | *i.code) : one(t, t | 255);
}

// One side of a rule as a union of boxes: these addresses with these ports.
struct Box {
    Set addrs, ports;
};

// A rule's protocols, with the destination port values ICMP criteria allow (type << 8 | code
// for the family's ICMP, see compile.hpp).
struct L4 {
    Set protos, dports;
};

class Compiler {
  public:
    Compiler(const PolicySet &set, const Limits &limits) : set_(set), limits_(limits) {}

    Compiled run(const std::vector<std::string> &local);

  private:
    const std::vector<Policy> &policies() const { return set_.policies(); }
    std::vector<FlatRule> expand(const Policy &p, const Rule &r, net::Family f,
                                 const std::string &where);
    std::vector<Box> side(const Policy &p, const EntityRule &e, net::Family f,
                          std::optional<uint8_t> proto);
    // The addresses (of family f) of the pods pred accepts, cached under key.
    template <typename Pred>
    const Set &pods(const std::string &key, net::Family f, Pred pred);
    Set named(const std::vector<Port> &ports, uint8_t proto, net::Family f,
              std::map<uint16_t, Set> *by_port);

    const PolicySet &set_;
    const Limits &limits_;
    std::unordered_map<std::string, Set> pod_sets_;
};

template <typename Pred>
const Set &Compiler::pods(const std::string &key, net::Family f, Pred pred) {
    const std::string k = key + (f == net::Family::kIp4 ? "\x01"
                                                          "4"
                                                        : "\x01"
                                                          "6");
    auto it = pod_sets_.find(k);
    if (it != pod_sets_.end()) {
        return it->second;
    }
    Set s;
    for (const auto &ep : set_.endpoints()) {
        if (!pred(ep)) {
            continue;
        }
        for (const auto &a : ep.ips) {
            if (a.family() == f) {
                const U128 v = value_of(a);
                s.emplace_back(v, v);
            }
        }
    }
    return pod_sets_.emplace(k, normalize(std::move(s))).first->second;
}

// The addresses of each port number the named ports resolve to (pods with a port of that
// name and protocol).
Set Compiler::named(const std::vector<Port> &ports, uint8_t proto, net::Family f,
                    std::map<uint16_t, Set> *by_port) {
    Set numbers;
    for (const auto &port : ports) {
        if (!port.named()) {
            numbers.emplace_back(port.min, port.max);
        }
    }
    for (const auto &ep : set_.endpoints()) {
        for (const auto &np : ep.ports) {
            if (np.protocol.number != proto ||
                std::none_of(ports.begin(), ports.end(),
                             [&](const Port &x) { return x.named() && x.name == np.name; })) {
                continue;
            }
            for (const auto &a : ep.ips) {
                if (a.family() == f) {
                    const U128 v = value_of(a);
                    (*by_port)[np.port].emplace_back(v, v);
                }
            }
        }
    }
    for (auto &[port, s] : *by_port) {
        s = normalize(std::move(s));
    }
    return normalize(std::move(numbers));
}

std::vector<Box> Compiler::side(const Policy &p, const EntityRule &e, net::Family f,
                                std::optional<uint8_t> proto) {
    Set addrs = one(0, all_ones(width(f)));
    if (!e.nets.empty()) {
        Set nets;
        for (const auto &c : e.nets) {
            if (c.family() == f) {
                nets.push_back(interval_of(c));
            }
        }
        addrs = intersect(addrs, normalize(std::move(nets)));
    }
    Set not_nets;
    for (const auto &c : e.not_nets) {
        if (c.family() == f) {
            not_nets.push_back(interval_of(c));
        }
    }
    addrs = subtract(addrs, normalize(std::move(not_nets)));

    // The scoping of eval.cpp's entity_mismatch: a rule's selectors hold in the policy's
    // namespace, or in the namespaces namespaceSelector matches; notSelector alone is
    // cluster-wide for a GlobalNetworkPolicy.
    const bool ns_sel = e.namespace_selector.present();
    const bool scoped = ns_sel || p.kind != PolicyKind::kGlobal;
    if (e.selector.present() || (scoped && (ns_sel || e.not_selector.present()))) {
        const std::string key = std::string(ns_sel   ? "N"
                                            : scoped ? "S"
                                                     : "G") +
                                '\x02' +
                                (ns_sel   ? e.namespace_selector.text
                                 : scoped ? p.ns
                                          : "") +
                                '\x02' + e.selector.text;
        addrs = intersect(addrs, pods(key, f, [&](const Endpoint &ep) {
                              if (ns_sel) {
                                  if (e.namespace_selector.parsed.is_global() ||
                                      !e.namespace_selector.parsed.matches(ep.ns_labels)) {
                                      return false;
                                  }
                              } else if (scoped && ep.ns != p.ns) {
                                  return false;
                              }
                              return !e.selector.present() || e.selector.parsed.matches(ep.labels);
                          }));
    }
    if (e.not_selector.present()) {
        addrs = subtract(addrs, pods("!" + e.not_selector.text, f, [&](const Endpoint &ep) {
                             return e.not_selector.parsed.matches(ep.labels);
                         }));
    }
    if (addrs.empty()) {
        return {};
    }

    std::vector<Box> boxes;
    if (e.ports.empty()) {
        boxes.push_back({addrs, kAllPorts});
    } else {
        std::map<uint16_t, Set> by_port;
        Set numbers = named(e.ports, proto.value_or(0), f, &by_port);
        if (!numbers.empty()) {
            boxes.push_back({addrs, numbers});
        }
        for (const auto &[port, owners] : by_port) {
            Set a = intersect(addrs, owners);
            if (!a.empty()) {
                boxes.push_back({std::move(a), one(port, port)});
            }
        }
    }
    if (!e.not_ports.empty()) {
        std::map<uint16_t, Set> by_port;
        const Set numbers = named(e.not_ports, proto.value_or(0), f, &by_port);
        std::vector<Box> out;
        for (auto &b : boxes) {
            b.ports = subtract(b.ports, numbers);
            if (!b.ports.empty()) {
                out.push_back(std::move(b));
            }
        }
        // A named notPort takes the pair (owner's address, its port) out: the owners keep
        // every other port, the others keep that one.
        for (const auto &[port, owners] : by_port) {
            std::vector<Box> next;
            for (auto &b : out) {
                if (!contains(b.ports, port)) {
                    next.push_back(std::move(b));
                    continue;
                }
                Set others = subtract(b.addrs, owners);
                Set mine = intersect(b.addrs, owners);
                Set rest = subtract(b.ports, one(port, port));
                if (!others.empty()) {
                    next.push_back({std::move(others), b.ports});
                }
                if (!mine.empty() && !rest.empty()) {
                    next.push_back({std::move(mine), std::move(rest)});
                }
            }
            out = std::move(next);
        }
        boxes = std::move(out);
    }
    return boxes;
}

std::vector<FlatRule> Compiler::expand(const Policy &p, const Rule &r, net::Family f,
                                       const std::string &where) {
    if (auto rf = r.family(); rf && *rf != f) {
        return {};
    }
    const bool ports = !r.source.ports.empty() || !r.source.not_ports.empty() ||
                       !r.destination.ports.empty() || !r.destination.not_ports.empty();
    if (ports && !(r.protocol && r.protocol->has_ports())) {
        throw CompileError(where + ": ports need protocol TCP, UDP or SCTP (not validated?)");
    }
    const U128 icmp = f == net::Family::kIp4 ? Protocol::kIcmp : Protocol::kIcmp6;
    L4 base{kAllProtos, kAllPorts};
    if (r.protocol) {
        base.protos = one(r.protocol->number, r.protocol->number);
    }
    if (r.not_protocol) {
        base.protos = subtract(base.protos, one(r.not_protocol->number, r.not_protocol->number));
    }
    if (r.icmp) {
        base.protos = intersect(base.protos, one(icmp, icmp));
        base.dports = icmp_codes(*r.icmp);
    }
    std::vector<L4> l4{base};
    if (r.not_icmp) {
        // Not that message: any other protocol, or the family's ICMP with another type / code.
        l4 = {{subtract(base.protos, one(icmp, icmp)), base.dports},
              {intersect(base.protos, one(icmp, icmp)),
               subtract(base.dports, icmp_codes(*r.not_icmp))}};
    }
    std::optional<uint8_t> proto;
    if (r.protocol) {
        proto = r.protocol->number;
    }
    const auto src = side(p, r.source, f, proto);
    const auto dst = side(p, r.destination, f, proto);

    // Count first: refuse before building a rule set no one can load.
    struct Piece {
        const L4 *l4;
        const Box *s, *d;
        Set dports;
        std::vector<AclAddr> sp, dp;
    };
    std::vector<Piece> pieces;
    size_t total = 0;
    std::map<const Box *, std::vector<AclAddr>> pfx;
    auto prefixes_of = [&](const Box &b) -> const std::vector<AclAddr> & {
        auto it = pfx.find(&b);
        if (it == pfx.end()) {
            it = pfx.emplace(&b, prefixes(b.addrs, f)).first;
        }
        return it->second;
    };
    for (const auto &x : l4) {
        if (x.protos.empty() || x.dports.empty()) {
            continue;
        }
        for (const auto &s : src) {
            for (const auto &d : dst) {
                Set dports = intersect(d.ports, x.dports);
                if (dports.empty()) {
                    continue;
                }
                const auto &sp = prefixes_of(s);
                const auto &dp = prefixes_of(d);
                total += x.protos.size() * sp.size() * dp.size() * s.ports.size() * dports.size();
                if (total > limits_.max_per_rule) {
                    throw CompileError(where + ": expands to more than " +
                                       std::to_string(limits_.max_per_rule) +
                                       " classifier rules (addresses x ports x protocols)");
                }
                pieces.push_back({&x, &s, &d, std::move(dports), sp, dp});
            }
        }
    }
    std::vector<FlatRule> out;
    out.reserve(total);
    for (const auto &pc : pieces) {
        for (const auto &pr : pc.l4->protos) {
            for (const auto &sa : pc.sp) {
                for (const auto &da : pc.dp) {
                    for (const auto &spr : pc.s->ports) {
                        for (const auto &dpr : pc.dports) {
                            FlatRule fr;
                            fr.proto_lo = static_cast<uint8_t>(pr.first);
                            fr.proto_hi = static_cast<uint8_t>(pr.second);
                            fr.src = sa;
                            fr.dst = da;
                            fr.sport_lo = static_cast<uint16_t>(spr.first);
                            fr.sport_hi = static_cast<uint16_t>(spr.second);
                            fr.dport_lo = static_cast<uint16_t>(dpr.first);
                            fr.dport_hi = static_cast<uint16_t>(dpr.second);
                            out.push_back(fr);
                        }
                    }
                }
            }
        }
    }
    return out;
}

Compiled Compiler::run(const std::vector<std::string> &local) {
    const auto t0 = std::chrono::steady_clock::now();
    Compiled c;
    const auto &ps = policies();
    const Direction dirs[2] = {Direction::kIngress, Direction::kEgress};

    // Rule refs in the global order: policies as evaluated, then direction, then index.
    std::vector<std::array<RuleRef, 2>> first_ref(ps.size());
    c.refs.resize(1);
    for (size_t i = 0; i < ps.size(); ++i) {
        for (Direction d : dirs) {
            first_ref[i][static_cast<int>(d)] = static_cast<RuleRef>(c.refs.size());
            const auto &rules = ps[i].rules(d);
            for (size_t k = 0; k < rules.size(); ++k) {
                RuleInfo info;
                info.policy = ps[i].key();
                info.direction = d;
                info.rule = static_cast<int>(k);
                info.action = rules[k].action;
                info.text = info.policy + " " + (d == Direction::kIngress ? "ingress" : "egress") +
                            " rule " + std::to_string(k) + " (" +
                            std::string(to_string(rules[k].action)) + ")";
                c.refs.push_back(std::move(info));
            }
        }
    }

    // Classes: distinct (ingress policies, egress policies); sets: distinct policy lists.
    std::array<std::map<std::vector<size_t>, uint16_t>, 2> set_ids;
    std::map<std::pair<uint16_t, uint16_t>, ClassId> class_ids;
    c.classes.resize(1);
    class_ids[{0, 0}] = kNoPolicyClass;
    for (auto &s : c.sets) {
        s.resize(1);
    }
    std::array<std::vector<std::vector<size_t>>, 2> set_policies;
    for (auto &v : set_policies) {
        v.resize(1);
    }
    for (const auto &key : local) {
        const Endpoint *ep = set_.endpoint(key);
        if (ep == nullptr || c.class_of.count(key) != 0) {
            continue;
        }
        uint16_t sid[2] = {0, 0};
        for (Direction d : dirs) {
            const int di = static_cast<int>(d);
            std::vector<size_t> idx;
            for (const Policy *p : set_.applying(*ep, d)) {
                idx.push_back(static_cast<size_t>(p - ps.data()));
            }
            if (idx.empty()) {
                continue;
            }
            auto [it, fresh] =
                set_ids[di].emplace(idx, static_cast<uint16_t>(set_policies[di].size()));
            if (fresh) {
                if (set_policies[di].size() > 0xffff) {
                    throw CompileError("more than 65535 distinct policy lists");
                }
                SetInfo info;
                for (size_t i : idx) {
                    info.policies.push_back(ps[i].key());
                }
                c.sets[di].push_back(std::move(info));
                set_policies[di].push_back(idx);
            }
            sid[di] = it->second;
        }
        auto [it, fresh] =
            class_ids.emplace(std::pair{sid[0], sid[1]}, static_cast<ClassId>(c.classes.size()));
        if (fresh) {
            if (c.classes.size() > 0xffff) {
                throw CompileError("more than 65535 endpoint classes");
            }
            c.classes.push_back({sid[0], sid[1], {}});
        }
        c.classes[it->second].endpoints.push_back(key);
        c.class_of[key] = it->second;
    }

    // Each rule of a policy that some set holds is expanded once per family, then copied
    // into every set holding it.
    std::map<std::pair<RuleRef, int>, std::vector<FlatRule>> expanded;
    std::vector<bool> counted(ps.size(), false);
    const net::Family fams[2] = {net::Family::kIp4, net::Family::kIp6};
    for (Direction d : dirs) {
        const int di = static_cast<int>(d);
        for (size_t sid = 1; sid < set_policies[di].size(); ++sid) {
            for (size_t pi : set_policies[di][sid]) {
                const Policy &p = ps[pi];
                if (!counted[pi]) {
                    counted[pi] = true;
                    ++c.stats.policies;
                    c.stats.rules += p.ingress_rules.size() + p.egress_rules.size();
                }
                const auto &rules = p.rules(d);
                for (size_t k = 0; k < rules.size(); ++k) {
                    const RuleRef ref = first_ref[pi][di] + static_cast<RuleRef>(k);
                    for (int fi = 0; fi < 2; ++fi) {
                        auto it = expanded.find({ref, fi});
                        if (it == expanded.end()) {
                            it = expanded
                                     .emplace(std::pair{ref, fi},
                                              expand(p, rules[k], fams[fi], c.refs[ref].text))
                                     .first;
                            c.stats.largest_rule =
                                std::max(c.stats.largest_rule, it->second.size());
                        }
                        auto &list = rules[k].action == Action::kLog ? c.rules[fi][di].log
                                                                     : c.rules[fi][di].decide;
                        for (FlatRule fr : it->second) {
                            fr.set = static_cast<uint16_t>(sid);
                            fr.ref = ref;
                            list.push_back(fr);
                        }
                        c.stats.flat_rules += it->second.size();
                        if (c.stats.flat_rules > limits_.max_total) {
                            throw CompileError("the rule set expands to more than " +
                                               std::to_string(limits_.max_total) +
                                               " classifier rules");
                        }
                    }
                }
            }
        }
    }
    c.stats.classes = c.classes.size();
    c.stats.sets = c.sets[0].size() + c.sets[1].size() - 2;
    c.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return c;
}

}  // namespace

Compiled compile(const PolicySet &set, const std::vector<std::string> &local,
                 const Limits &limits) {
    return Compiler(set, limits).run(local);
}

}  // namespace fwd::policy
