// fwdctl service list | config, and the Service / EndpointSlice entry of `fwdctl apply -f` /
// `delete -f`: Kubernetes Services as data in the cluster store (fwd/svc/store.hpp), the way
// kubectl talks to the API server. No daemon is involved, except in `fwdctl service frontends`:
// what a daemon compiled from the store for its node (control/src/services.cpp).
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fwd/ipam/open_store.hpp"
#include "fwd/svc/store.hpp"
#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

// ---- the apply -f / delete -f entry ----

std::string object_of(const svc::ServiceResource &r) {
    return r.is_service() ? "Service '" + r.service().key() + "'"
                          : "EndpointSlice '" + r.slice().key() + "'";
}

// A registry refusal with the file, document and resource it is about.
std::runtime_error located(const std::vector<svc::ServiceResource> &rs,
                           const svc::ServiceError &e) {
    for (const auto &r : rs) {
        if (object_of(r) == e.object()) {
            return std::runtime_error(r.origin.str() + ": " +
                                      (e.field().empty() ? "" : e.field() + ": ") + e.why());
        }
    }
    return std::runtime_error(e.what());
}

json result_of(const svc::ServiceRegistry::Change &c, const svc::ServiceResource &r) {
    const std::string name = std::holds_alternative<svc::Service>(c.value)
                                 ? std::get<svc::Service>(c.value).key()
                                 : std::get<svc::EndpointSlice>(c.value).key();
    return {{"kind", r.origin.kind},
            {"name", name},
            {"action", svc::to_string(c.action)},
            {"document", r.origin.document}};
}

FileKinds::Write stage_services(const std::vector<ipam::RawResource> &raw, ipam::Store &store,
                                bool del) {
    auto rs = svc::decode_service_resources(raw);
    for (const auto &r : rs) {
        for (const auto &w : r.warnings) {
            std::cerr << "fwdctl: warning: " << w.str() << '\n';
        }
    }
    // Plans list services first, then slices: the resources in that order, for the results.
    std::vector<svc::ServiceResource> ordered;
    std::vector<svc::Service> services;
    std::vector<svc::EndpointSlice> slices;
    std::vector<std::string> service_keys, slice_keys;
    for (const auto &r : rs) {
        if (r.is_service()) {
            ordered.push_back(r);
            services.push_back(r.service());
            service_keys.push_back(r.service().key());
        }
    }
    for (const auto &r : rs) {
        if (!r.is_service()) {
            ordered.push_back(r);
            slices.push_back(r.slice());
            slice_keys.push_back(r.slice().key());
        }
    }
    auto registry = std::make_shared<svc::ServiceRegistry>(store);
    auto plan = std::make_shared<svc::ServiceRegistry::Plan>();
    try {
        *plan = del ? registry->plan_delete(service_keys, slice_keys)
                    : registry->plan_apply(services, slices);
    } catch (const svc::ServiceError &e) {
        throw located(rs, e);
    }
    return [=](json &results) {
        std::vector<svc::ServiceRegistry::Change> changes = plan->changes;
        try {
            // Another writer moved the store since the plan: plan again (what it took is
            // taken; a refusal now is said as such).
            if (!registry->commit(*plan)) {
                changes = del ? registry->remove(service_keys, slice_keys)
                              : registry->apply(services, slices);
            }
        } catch (const svc::ServiceError &e) {
            std::cerr << "fwdctl: " << located(ordered, e).what()
                      << "\nfwdctl: the services and slices were not written (another writer "
                         "changed the store meanwhile)\n";
            return kExitError;
        }
        for (size_t i = 0; i < changes.size() && i < ordered.size(); ++i) {
            results.push_back(result_of(changes[i], ordered[i]));
        }
        return kExitOk;
    };
}

// ---- service list ----

std::string join(const std::vector<std::string> &v, const char *sep = ",") {
    std::string s;
    for (const auto &x : v) {
        s += (s.empty() ? "" : sep) + x;
    }
    return s.empty() ? "-" : s;
}

std::string ports_text(const svc::Service &s) {
    std::vector<std::string> out;
    for (const auto &p : s.ports) {
        std::string t = (p.name.empty() ? "" : p.name + ":") + std::to_string(p.port);
        if (p.node_port != 0) {
            t += ":" + std::to_string(p.node_port);
        }
        t += "/" + std::string(svc::to_string(p.protocol)) + "->" +
             (p.target_port_name.empty() ? std::to_string(p.target_port) : p.target_port_name);
        out.push_back(t);
    }
    return join(out);
}

std::string external_text(const svc::Service &s) {
    std::vector<std::string> out;
    for (const auto &a : s.external_ips) {
        out.push_back(a.str());
    }
    for (const auto &a : s.lb_ingress) {
        out.push_back(a.str());
    }
    if (s.load_balancer_ip) {
        out.push_back(s.load_balancer_ip->str());
    }
    return join(out);
}

std::string conditions_text(const svc::Conditions &c) {
    std::vector<std::string> out;
    if (c.ready) {
        out.push_back("ready");
    }
    if (c.serving) {
        out.push_back("serving");
    }
    if (c.terminating) {
        out.push_back("terminating");
    }
    return join(out);
}

struct ListOptions {
    std::string store;
    const CLI::Option *json_flag = nullptr;
    std::vector<std::string> ranges;
    std::string node_ports;
    bool as_json() const { return json_flag != nullptr && json_flag->count() > 0; }
};

int list(const ListOptions &o) {
    auto store = ipam::open_store(o.store);
    svc::ServiceRegistry registry(*store);
    const auto cfg = registry.config();
    const auto l = registry.list();
    std::map<std::string, const svc::Service *> by_key;
    for (const auto &s : l.services) {
        by_key[s.key()] = &s;
    }
    std::vector<const svc::EndpointSlice *> waiting;
    for (const auto &s : l.slices) {
        if (!by_key.contains(s.service_key())) {
            waiting.push_back(&s);
        }
    }
    if (o.as_json()) {
        json out{
            {"store", store->describe()}, {"revision", l.revision},     {"config", cfg},
            {"services", l.services},     {"endpointSlices", l.slices}, {"waiting", json::array()},
            {"refused", json::array()}};
        for (const auto *s : waiting) {
            out["waiting"].push_back({{"endpointSlice", s->key()}, {"service", s->service_key()}});
        }
        for (const auto &[k, why] : l.refused) {
            out["refused"].push_back({{"key", k}, {"why", why}});
        }
        print_json(out);
        return kExitOk;
    }
    std::vector<std::string> ranges;
    for (const auto &r : cfg.cluster_ip_ranges) {
        ranges.push_back(r.str());
    }
    std::cout << "services in " << store->describe() << " (service CIDRs " << join(ranges, ", ")
              << ", NodePorts " << cfg.node_port_range() << ")\n\n";
    Table services({{"NAMESPACE/NAME"},
                    {"TYPE"},
                    {"CLUSTER-IPS"},
                    {"PORTS (name:port[:nodePort]/proto->target)"},
                    {"EXTERNAL"},
                    {"AFFINITY"},
                    {"TRAFFIC (ext/int)"}});
    for (const auto &s : l.services) {
        std::vector<std::string> ips;
        for (const auto &a : s.cluster_ips) {
            ips.push_back(a.str());
        }
        services.add_row(
            {s.key(), std::string(svc::to_string(s.type)), s.headless ? "None" : join(ips),
             ports_text(s), external_text(s),
             s.client_ip_affinity ? "ClientIP " + std::to_string(s.affinity_timeout) + "s" : "-",
             std::string(svc::to_string(s.effective_external_policy())) + "/" +
                 std::string(svc::to_string(s.internal_policy))});
    }
    services.print(std::cout);
    std::cout << '\n';
    // Endpoints per service and node.
    Table endpoints({{"SERVICE"}, {"NODE"}, {"ADDRESS"}, {"CONDITIONS"}, {"PORTS"}, {"SLICE"}});
    for (const auto &s : l.slices) {
        if (!by_key.contains(s.service_key())) {
            continue;
        }
        std::vector<std::string> ports;
        for (const auto &p : s.ports) {
            ports.push_back((p.name.empty() ? "" : p.name + ":") +
                            (p.port ? std::to_string(*p.port) : "-") + "/" +
                            std::string(svc::to_string(p.protocol)));
        }
        for (const auto &e : s.endpoints) {
            endpoints.add_row({s.service_key(), e.node_name.empty() ? "-" : e.node_name,
                               join(e.addresses), conditions_text(e.conditions), join(ports),
                               s.key()});
        }
    }
    endpoints.print(std::cout);
    for (const auto *s : waiting) {
        std::cout << "\nEndpointSlice '" << s->key() << "' waits for Service '"
                  << (s->service_key().empty() ? "?" : s->service_key())
                  << "' (not in the store; it takes effect when the service comes)";
    }
    for (const auto &[k, why] : l.refused) {
        std::cout << "\nrefused " << k << ": " << why;
    }
    if (!waiting.empty() || !l.refused.empty()) {
        std::cout << '\n';
    }
    return kExitOk;
}

// service config: shows the ranges, or sets them (the API server's
// --service-cluster-ip-range and --service-node-port-range).
int config(const ListOptions &o) {
    auto store = ipam::open_store(o.store);
    svc::ServiceRegistry registry(*store);
    svc::ServiceConfig cfg = registry.config();
    if (!o.ranges.empty() || !o.node_ports.empty()) {
        if (!o.ranges.empty()) {
            cfg.cluster_ip_ranges.clear();
            for (const auto &r : o.ranges) {
                auto c = ipam::Cidr::parse(r);
                if (!c) {
                    throw CLI::ValidationError("--service-cluster-ip-range",
                                               "'" + r + "' is not a CIDR");
                }
                cfg.cluster_ip_ranges.push_back(*c);
            }
        }
        if (!o.node_ports.empty()) {
            auto p = svc::parse_port_range(o.node_ports);
            if (!p) {
                throw CLI::ValidationError("--service-node-port-range",
                                           "'" + o.node_ports + "' is not low-high");
            }
            cfg.node_port_min = p->first;
            cfg.node_port_max = p->second;
        }
        registry.set_config(cfg);
    }
    if (o.as_json()) {
        print_json(cfg);
        return kExitOk;
    }
    std::vector<std::string> ranges;
    for (const auto &r : cfg.cluster_ip_ranges) {
        ranges.push_back(r.str());
    }
    std::cout << "service-cluster-ip-range  " << join(ranges) << "\nservice-node-port-range   "
              << cfg.node_port_range() << '\n';
    return kExitOk;
}

// service frontends: what the daemon serves (the service.frontends op, control/src/services.cpp).
void print_frontends(const json &r, std::ostream &out) {
    Table table({{"SERVICE"},
                 {"KIND"},
                 {"FRONTEND"},
                 {"PROTO"},
                 {"BACKENDS"},
                 {"NEW-FLOWS", true},
                 {"NO-BACKEND"},
                 {"FLOWS", true},
                 {"FLAGS"}});
    for (const auto &f : array_field(r, "frontends")) {
        std::string backends;
        int for_new = 0;
        for (const auto &b : array_field(f, "backends")) {
            backends += (backends.empty() ? "" : ",") + cell(b, "addr") + ":" + cell(b, "port");
            for_new += b.value("new_flows", false) ? 1 : 0;
        }
        std::string flags;
        auto flag = [&](bool on, const char *name) {
            if (on) {
                flags += (flags.empty() ? "" : ",") + std::string(name);
            }
        };
        flag(!f.value("affinity_timeout", json()).is_null(), "affinity");
        flag(f.value("local_only", false), "local-only");
        flag(f.value("keep_source", false), "keep-source");
        const bool v6 = cell(f, "addr").find(':') != std::string::npos;
        table.add_row({cell(f, "service"), cell(f, "kind"),
                       (v6 ? "[" + cell(f, "addr") + "]" : cell(f, "addr")) + ":" + cell(f, "port"),
                       cell(f, "protocol"), backends.empty() ? "-" : backends,
                       std::to_string(for_new), cell(f, "no_backend"),
                       f.contains("flows") ? cell(f, "flows") : "-", flags.empty() ? "-" : flags});
    }
    table.print(out);
    for (const auto &n : array_field(r, "notes")) {
        out << "note: " << n.get<std::string>() << '\n';
    }
    for (const auto &x : array_field(r, "refused")) {
        out << "refused " << cell(x, "key") << ": " << cell(x, "error") << '\n';
    }
}

void add_service_commands(CLI::App &app, Command &command) {
    std::function<int()> &local = command.local;
    auto o = std::make_shared<ListOptions>();
    o->json_flag = app.get_option_no_throw("--json");
    CLI::App *group = app.add_subcommand(
        "service",
        "Kubernetes Services as data, straight from the cluster store (no daemon needed)");
    group->require_subcommand(1);
    auto store = add_store_option(group);
    auto run = [o, store, &local](int (*fn)(const ListOptions &)) {
        return [o, store, fn, &local] {
            o->store = *store;
            local = [o, fn] { return run_guarded([o, fn] { return fn(*o); }); };
        };
    };
    group
        ->add_subcommand("list",
                         "services with their ClusterIPs and NodePorts, endpoints per node, "
                         "slices waiting for their service, refused records")
        ->callback(run(list));
    group
        ->add_subcommand("frontends",
                         "what the daemon serves (through its API socket): frontends (ClusterIP, "
                         "NodePort, externalIP, LoadBalancer) with their backends")
        ->callback([&command] {
            command.request = Request{"service.frontends", json::object(), print_frontends};
        });
    CLI::App *cfg = group->add_subcommand(
        "config",
        "show or set the service CIDRs (one per family, primary first) and the NodePort "
        "range");
    cfg->add_option("--service-cluster-ip-range", o->ranges,
                    "CIDRs, comma-separated (default 10.96.0.0/12,fd00:10:96::/112)")
        ->delimiter(',');
    cfg->add_option("--service-node-port-range", o->node_ports, "low-high (default 30000-32767)");
    cfg->callback(run(config));
}

}  // namespace

FWD_ON_LOAD(register_file_kinds({"services", "Service, EndpointSlice", 20, svc::is_service_kind,
                                 stage_services}));
FWD_ON_LOAD(register_group("service", 55, add_service_commands));

}  // namespace fwd::control::fwdctl
