// The policy model evaluated from its definition; see fwd/policy/eval.hpp.
#include "fwd/policy/eval.hpp"

#include <algorithm>
#include <limits>

namespace fwd::policy {

namespace {

bool is_icmp(const Packet &p) {
    return p.protocol == (p.family() == net::Family::kIp4 ? Protocol::kIcmp : Protocol::kIcmp6);
}

bool has_ports(const Packet &p) {
    return Protocol{p.protocol}.has_ports();
}

bool icmp_matches(const Icmp &i, const Packet &p) {
    return is_icmp(p) && (!i.type || *i.type == p.icmp_type) && (!i.code || *i.code == p.icmp_code);
}

std::string icmp_text(const Icmp &i) {
    std::string s = "ICMP";
    if (i.type) {
        s += " type " + std::to_string(*i.type);
    }
    if (i.code) {
        s += " code " + std::to_string(*i.code);
    }
    return s;
}

bool in_any(const std::vector<ipam::Cidr> &nets, const net::IpAddr &a) {
    return std::any_of(nets.begin(), nets.end(),
                       [&](const ipam::Cidr &c) { return c.contains(a); });
}

std::string join_nets(const std::vector<ipam::Cidr> &nets) {
    std::string s;
    for (const auto &c : nets) {
        s += (s.empty() ? "" : ", ") + c.str();
    }
    return s;
}

std::string join_ports(const std::vector<Port> &ports) {
    std::string s;
    for (const auto &p : ports) {
        s += (s.empty() ? "" : ", ") + p.str();
    }
    return s;
}

double order_of(const Policy &p) {
    return p.order.value_or(std::numeric_limits<double>::infinity());
}

}  // namespace

std::string Packet::str() const {
    auto ep = [&](const net::IpAddr &a, uint16_t port) {
        if (!has_ports(*this)) {
            return a.str();
        }
        const std::string s = a.family() == net::Family::kIp6 ? "[" + a.str() + "]" : a.str();
        return s + ":" + std::to_string(port);
    };
    std::string out =
        ep(src, src_port) + " -> " + ep(dst, dst_port) + " " + Protocol{protocol}.str();
    if (is_icmp(*this)) {
        out += " type " + std::to_string(icmp_type) + " code " + std::to_string(icmp_code);
    }
    return out;
}

PolicySet::PolicySet(std::vector<Policy> policies, const std::vector<Namespace> &namespaces,
                     const std::vector<Pod> &pods)
    : policies_(std::move(policies)) {
    std::stable_sort(policies_.begin(), policies_.end(), [](const Policy &a, const Policy &b) {
        return order_of(a) != order_of(b) ? order_of(a) < order_of(b) : a.key() < b.key();
    });
    std::map<std::string, Labels> ns_labels;
    for (const auto &n : namespaces) {
        ns_labels[n.name] = n.labels;
    }
    for (const auto &pod : pods) {
        Endpoint ep;
        ep.ns = pod.ns;
        ep.name = pod.name;
        const Labels &own_ns = ns_labels[pod.ns];
        ep.labels = pod.effective_labels(own_ns);
        ep.ns_labels = Namespace{pod.ns, own_ns, {}}.effective_labels();
        ep.ips = pod.ips;
        ep.ports = pod.ports;
        by_key_[ep.key()] = endpoints_.size();
        for (const auto &a : ep.ips) {
            by_ip_[a] = endpoints_.size();
        }
        endpoints_.push_back(std::move(ep));
    }
}

const Endpoint *PolicySet::endpoint(const std::string &key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : &endpoints_[it->second];
}

const Endpoint *PolicySet::endpoint_at(const net::IpAddr &a) const {
    auto it = by_ip_.find(a);
    return it == by_ip_.end() ? nullptr : &endpoints_[it->second];
}

bool PolicySet::policy_selects(const Policy &p, const Endpoint &ep) const {
    if (p.kind == PolicyKind::kGlobal) {
        if (p.namespace_selector.present() && !p.namespace_selector.parsed.matches(ep.ns_labels)) {
            return false;
        }
    } else if (p.ns != ep.ns) {
        return false;
    }
    return p.selector.parsed.matches(ep.labels);
}

std::vector<const Policy *> PolicySet::applying(const Endpoint &ep, Direction d) const {
    std::vector<const Policy *> out;
    for (const auto &p : policies_) {
        if (p.applies_to(d) && policy_selects(p, ep)) {
            out.push_back(&p);
        }
    }
    return out;
}

std::vector<const Endpoint *> PolicySet::selected_by(const Policy &p) const {
    std::vector<const Endpoint *> out;
    for (const auto &ep : endpoints_) {
        if (policy_selects(p, ep)) {
            out.push_back(&ep);
        }
    }
    return out;
}

std::string PolicySet::entity_mismatch(const Policy &p, const EntityRule &e,
                                       const net::IpAddr &addr, uint16_t port, const Packet &pkt,
                                       const char *side) const {
    const std::string s = side;
    if (!e.nets.empty() && !in_any(e.nets, addr)) {
        return s + " " + addr.str() + " is in none of nets " + join_nets(e.nets);
    }
    if (in_any(e.not_nets, addr)) {
        return s + " " + addr.str() + " is in notNets " + join_nets(e.not_nets);
    }
    const Endpoint *ep = endpoint_at(addr);
    // Calico scopes a rule's selectors to the policy's namespace, or to the namespaces its
    // namespaceSelector matches; notSelector alone stays cluster-wide.
    const bool ns_sel = e.namespace_selector.present();
    const bool scoped = ns_sel || p.kind != PolicyKind::kGlobal;
    if (e.selector.present() || (scoped && (ns_sel || e.not_selector.present()))) {
        if (ep == nullptr) {
            return s + " " + addr.str() + " is no pod's (the rule selects pods)";
        }
        if (ns_sel) {
            if (e.namespace_selector.parsed.is_global()) {
                return s + " " + ep->key() +
                       " is namespaced (namespaceSelector global() selects only non-namespaced "
                       "entities)";
            }
            if (!e.namespace_selector.parsed.matches(ep->ns_labels)) {
                return s + " pod " + ep->key() + ": namespace " + ep->ns +
                       " does not match namespaceSelector " + e.namespace_selector.text;
            }
        } else if (scoped && ep->ns != p.ns) {
            return s + " pod " + ep->key() + " is not in the policy's namespace " + p.ns;
        }
        if (e.selector.present() && !e.selector.parsed.matches(ep->labels)) {
            return s + " pod " + ep->key() + " does not match selector " + e.selector.text;
        }
    }
    if (e.not_selector.present() && ep != nullptr && e.not_selector.parsed.matches(ep->labels)) {
        return s + " pod " + ep->key() + " matches notSelector " + e.not_selector.text;
    }
    // A named port is the port of that name and the packet's protocol on the pod at addr.
    auto port_matches = [&](const Port &x) {
        if (!x.named()) {
            return x.contains(port);
        }
        return ep != nullptr && std::any_of(ep->ports.begin(), ep->ports.end(), [&](const auto &n) {
                   return n.name == x.name && n.protocol.number == pkt.protocol && n.port == port;
               });
    };
    if (!e.ports.empty() && std::none_of(e.ports.begin(), e.ports.end(), port_matches)) {
        return s + " port " + std::to_string(port) + " is none of ports " + join_ports(e.ports) +
               (ep ? "" : " (named ports resolve only on pods)");
    }
    if (std::any_of(e.not_ports.begin(), e.not_ports.end(), port_matches)) {
        return s + " port " + std::to_string(port) + " is in notPorts " + join_ports(e.not_ports);
    }
    return "";
}

std::string PolicySet::mismatch(const Policy &p, const Rule &r, const Packet &pkt) const {
    if (auto f = r.family(); f && *f != pkt.family()) {
        return std::string("the rule is IPv") + (*f == net::Family::kIp4 ? "4" : "6") + " only";
    }
    if (r.protocol && r.protocol->number != pkt.protocol) {
        return "protocol is " + Protocol{pkt.protocol}.str() + ", not " + r.protocol->str();
    }
    if (r.not_protocol && r.not_protocol->number == pkt.protocol) {
        return "protocol is " + r.not_protocol->str() + " (notProtocol)";
    }
    if (r.icmp && !icmp_matches(*r.icmp, pkt)) {
        return "not " + icmp_text(*r.icmp);
    }
    if (r.not_icmp && icmp_matches(*r.not_icmp, pkt)) {
        return "is " + icmp_text(*r.not_icmp) + " (notICMP)";
    }
    if (auto m = entity_mismatch(p, r.source, pkt.src, pkt.src_port, pkt, "source"); !m.empty()) {
        return m;
    }
    return entity_mismatch(p, r.destination, pkt.dst, pkt.dst_port, pkt, "destination");
}

Verdict PolicySet::evaluate(const Packet &pkt, Direction d, const Endpoint &ep) const {
    Verdict v;
    v.direction = d;
    v.endpoint = ep.key();
    const std::string dir = d == Direction::kIngress ? "ingress" : "egress";
    const auto policies = applying(ep, d);
    for (const auto *p : policies) {
        v.applied.push_back(p->key());
    }
    if (policies.empty()) {
        v.allowed = true;
        v.reason = Verdict::Reason::kNoPolicy;
        v.why = "no policy applies to " + ep.key() + " for " + dir +
                ": the namespace profile kns." + ep.ns + " allows";
        return v;
    }
    for (const auto *p : policies) {
        const auto &rules = p->rules(d);
        for (size_t i = 0; i < rules.size(); ++i) {
            if (!mismatch(*p, rules[i], pkt).empty()) {
                continue;
            }
            const std::string where = p->key() + " " + dir + " rule " + std::to_string(i);
            switch (rules[i].action) {
                case Action::kLog:
                    v.logged.push_back(where);
                    continue;
                case Action::kPass:
                    v.allowed = true;
                    v.reason = Verdict::Reason::kPass;
                    v.policy = p->key();
                    v.rule = static_cast<int>(i);
                    v.why = where +
                            " (Pass) leaves the default tier, the last one: the namespace "
                            "profile kns." +
                            ep.ns + " allows";
                    return v;
                case Action::kAllow:
                case Action::kDeny:
                    v.allowed = rules[i].action == Action::kAllow;
                    v.reason = Verdict::Reason::kRule;
                    v.policy = p->key();
                    v.rule = static_cast<int>(i);
                    v.why = where + " (" + std::string(to_string(rules[i].action)) + ")";
                    return v;
            }
        }
    }
    v.allowed = false;
    v.reason = Verdict::Reason::kEndOfTier;
    v.why = std::to_string(policies.size()) + " polic" +
            (policies.size() == 1 ? "y applies" : "ies apply") + " to " + ep.key() + " for " + dir +
            " and no rule allowed it: denied at the end of the default tier";
    return v;
}

PolicySet::Trace PolicySet::trace(const Packet &pkt) const {
    Trace t;
    if (const auto *src = endpoint_at(pkt.src)) {
        t.egress = evaluate(pkt, Direction::kEgress, *src);
    }
    if (const auto *dst = endpoint_at(pkt.dst)) {
        t.ingress = evaluate(pkt, Direction::kIngress, *dst);
    }
    return t;
}

}  // namespace fwd::policy
