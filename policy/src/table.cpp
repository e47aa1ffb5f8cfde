// Services + EndpointSlices + this node -> the node's service table; see the header.
#include "fwd/svc/table.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <tuple>

namespace fwd::svc {

namespace {

std::optional<net::Family> slice_family(const EndpointSlice &s) {
    switch (s.address_type) {
        case AddressType::kIpv4:
            return net::Family::kIp4;
        case AddressType::kIpv6:
            return net::Family::kIp6;
        case AddressType::kFqdn:
            break;
    }
    return std::nullopt;
}

// The port a slice gives a service port, as kube-proxy matches them: the slice's port named
// like the service port (what the endpoints controller writes: the targetPort resolved per
// pod); else, for a hand-written slice, a slice port named like a named targetPort; else a
// numeric targetPort when the slice names no such port. nullopt: the slice serves no
// endpoint of this port.
std::optional<uint16_t> resolve_port(const ServicePort &sp, const EndpointSlice &s) {
    auto named = [&](const std::string &name) -> const EndpointPort * {
        for (const auto &p : s.ports) {
            if (p.name == name && p.protocol == sp.protocol) {
                return &p;
            }
        }
        return nullptr;
    };
    if (const EndpointPort *p = named(sp.name)) {
        return p->port;
    }
    if (!sp.target_port_name.empty()) {
        if (const EndpointPort *p = named(sp.target_port_name)) {
            return p->port;
        }
        return std::nullopt;
    }
    return sp.target_port;
}

struct Builder {
    const NodeInfo &node;
    ServiceTable table;

    void note(std::string subject, std::string what) {
        table.notes.push_back({std::move(subject), std::move(what)});
    }

    // Every endpoint of family f the slices give port sp.
    std::vector<Backend> backends(const Service &s, const ServicePort &sp, net::Family f,
                                  const std::vector<const EndpointSlice *> &slices) {
        std::map<std::pair<net::IpAddr, uint16_t>, Backend> out;
        for (const EndpointSlice *slice : slices) {
            if (slice_family(*slice) != f) {
                continue;
            }
            const auto port = resolve_port(sp, *slice);
            if (!port) {
                note("EndpointSlice '" + slice->key() + "'",
                     "has no port for Service '" + s.key() + "' port " +
                         (sp.name.empty() ? std::to_string(sp.port) : "'" + sp.name + "'") +
                         " (targetPort '" + sp.target_port_name + "')");
                continue;
            }
            for (const auto &ep : slice->endpoints) {
                // Consumers use the first address (the others are the same endpoint).
                const auto addr = net::IpAddr::parse(ep.addresses.front());
                if (!addr) {
                    continue;
                }
                Backend b;
                b.addr = *addr;
                b.port = *port;
                b.node = ep.node_name;
                b.local = !ep.node_name.empty() && ep.node_name == node.name;
                b.conditions = ep.conditions;
                out.emplace(std::make_pair(b.addr, b.port), std::move(b));  // first slice wins
            }
        }
        std::vector<Backend> v;
        for (auto &[k, b] : out) {
            v.push_back(std::move(b));
        }
        return v;
    }

    void add(const Service &s, const ServicePort &sp, FrontendKind kind, const net::IpAddr &addr,
             uint16_t port, const std::vector<Backend> &all) {
        Frontend f;
        f.kind = kind;
        f.addr = addr;
        f.protocol = sp.protocol;
        f.port = port;
        f.service = s.key();
        f.port_name = sp.name;
        f.affinity = s.client_ip_affinity;
        f.affinity_timeout = s.client_ip_affinity ? s.affinity_timeout : 0;
        if (kind == FrontendKind::kClusterIp) {
            f.local_only = s.internal_policy == TrafficPolicy::kLocal;
        } else {
            f.local_only = s.effective_external_policy() == TrafficPolicy::kLocal;
            f.keep_source = f.local_only;
        }
        f.backends = all;
        bool any_ready = false, any_new = false;
        for (auto &b : f.backends) {
            b.for_new_flows = b.conditions.ready && (!f.local_only || b.local);
            any_ready = any_ready || b.conditions.ready;
            any_new = any_new || b.for_new_flows;
        }
        f.no_backend = any_new     ? NoBackend::kNone
                       : any_ready ? NoBackend::kDrop
                                   : NoBackend::kReject;
        table.frontends.push_back(std::move(f));
    }

    void service(const Service &s, const std::vector<const EndpointSlice *> &slices) {
        const std::string subject = "Service '" + s.key() + "'";
        if (s.type == ServiceType::kExternalName) {
            note(subject, "ExternalName (" + s.external_name + "): a DNS name, not served");
            return;
        }
        if (s.headless) {
            note(subject, "headless (clusterIP None): no virtual address to serve");
            return;
        }
        std::set<net::Family> families;
        for (const auto &a : s.cluster_ips) {
            families.insert(a.family());
        }
        // Addresses outside the service's families: no proxier of that family has it.
        auto served = [&](const net::IpAddr &a, const char *what) {
            if (!families.contains(a.family())) {
                note(subject, std::string(what) + " " + a.str() + " is " + family_name(a.family()) +
                                  ", a family the service does not have: not served");
                return false;
            }
            return true;
        };
        std::vector<net::IpAddr> external, lb;
        for (const auto &a : s.external_ips) {
            if (served(a, "external IP") &&
                std::find(external.begin(), external.end(), a) == external.end()) {
                external.push_back(a);
            }
        }
        if (s.type == ServiceType::kLoadBalancer) {
            std::vector<net::IpAddr> ingress = s.lb_ingress;
            if (s.load_balancer_ip) {
                ingress.push_back(*s.load_balancer_ip);
            }
            for (const auto &a : ingress) {
                if (served(a, "load balancer IP") &&
                    std::find(lb.begin(), lb.end(), a) == lb.end()) {
                    lb.push_back(a);
                }
            }
        }
        for (const auto &sp : s.ports) {
            for (const auto &cip : s.cluster_ips) {
                const auto all = backends(s, sp, cip.family(), slices);
                add(s, sp, FrontendKind::kClusterIp, cip, sp.port, all);
                if (sp.node_port != 0) {
                    for (const auto &a : node.addresses) {
                        if (a.family() == cip.family()) {
                            add(s, sp, FrontendKind::kNodePort, a, sp.node_port, all);
                        }
                    }
                }
                for (const auto &a : external) {
                    if (a.family() == cip.family()) {
                        add(s, sp, FrontendKind::kExternalIp, a, sp.port, all);
                    }
                }
                for (const auto &a : lb) {
                    if (a.family() == cip.family()) {
                        add(s, sp, FrontendKind::kLoadBalancer, a, sp.port, all);
                    }
                }
            }
        }
    }
};

auto frontend_key(const Frontend &f) {
    return std::tie(f.addr, f.protocol, f.port);
}

}  // namespace

std::string_view to_string(FrontendKind k) {
    switch (k) {
        case FrontendKind::kNodePort:
            return "NodePort";
        case FrontendKind::kExternalIp:
            return "ExternalIP";
        case FrontendKind::kLoadBalancer:
            return "LoadBalancer";
        case FrontendKind::kClusterIp:
            break;
    }
    return "ClusterIP";
}

std::string_view to_string(NoBackend n) {
    switch (n) {
        case NoBackend::kReject:
            return "reject";
        case NoBackend::kDrop:
            return "drop";
        case NoBackend::kNone:
            break;
    }
    return "-";
}

const Frontend *ServiceTable::find(const net::IpAddr &addr, Protocol p, uint16_t port) const {
    Frontend probe;
    probe.addr = addr;
    probe.protocol = p;
    probe.port = port;
    auto it = std::lower_bound(
        frontends.begin(), frontends.end(), probe,
        [](const Frontend &a, const Frontend &b) { return frontend_key(a) < frontend_key(b); });
    return it != frontends.end() && frontend_key(*it) == frontend_key(probe) ? &*it : nullptr;
}

ServiceTable compile(const std::vector<Service> &services, const std::vector<EndpointSlice> &slices,
                     const NodeInfo &node) {
    Builder b{node, {}};
    std::map<std::string, const Service *> by_key;
    for (const auto &s : services) {
        by_key.emplace(s.key(), &s);
    }
    std::map<std::string, std::vector<const EndpointSlice *>> slices_of;
    std::vector<const EndpointSlice *> sorted;
    for (const auto &s : slices) {
        sorted.push_back(&s);
    }
    std::sort(sorted.begin(), sorted.end(),
              [](const EndpointSlice *a, const EndpointSlice *c) { return a->key() < c->key(); });
    for (const EndpointSlice *s : sorted) {
        const std::string subject = "EndpointSlice '" + s->key() + "'";
        const std::string svc = s->service_key();
        if (svc.empty()) {
            b.note(subject, "no label " + std::string(kServiceNameLabel) + ": serves no Service");
            continue;
        }
        if (!by_key.contains(svc)) {
            b.note(subject, "waits for Service '" + svc +
                                "', which does not exist (kept; it takes effect when the "
                                "service comes)");
            continue;
        }
        if (s->address_type == AddressType::kFqdn) {
            b.note(subject, "FQDN endpoints are not served");
            continue;
        }
        slices_of[svc].push_back(s);
    }
    for (const auto &[key, s] : by_key) {
        b.service(*s, slices_of[key]);
    }
    // One frontend per address, protocol and port: the first service (by key) keeps it.
    auto &fs = b.table.frontends;
    std::stable_sort(fs.begin(), fs.end(), [](const Frontend &x, const Frontend &y) {
        return frontend_key(x) < frontend_key(y);
    });
    std::vector<Frontend> unique;
    for (auto &f : fs) {
        if (!unique.empty() && frontend_key(unique.back()) == frontend_key(f)) {
            const Frontend &kept = unique.back();
            if (kept.service != f.service || kept.kind != f.kind) {
                b.note("Service '" + f.service + "'",
                       std::string(to_string(f.kind)) + " " + f.addr.str() + " " +
                           std::string(to_string(f.protocol)) + "/" + std::to_string(f.port) +
                           " is already " + std::string(to_string(kept.kind)) + " of Service '" +
                           kept.service + "': not served");
            }
            continue;
        }
        unique.push_back(std::move(f));
    }
    fs = std::move(unique);
    std::sort(b.table.notes.begin(), b.table.notes.end());
    b.table.notes.erase(std::unique(b.table.notes.begin(), b.table.notes.end()),
                        b.table.notes.end());
    return std::move(b.table);
}

}  // namespace fwd::svc
