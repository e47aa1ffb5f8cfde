// The "endpoints" module: pods attached to the dataplane, through the port
// kinds that register themselves (port_kind.hpp). An endpoint is a port (or
// a share of one), a next hop to the pod and its /32 and /128 routes.
// Ops: endpoint.add, endpoint.del, endpoint.get, endpoint.list.
// A reply comes only once the change is live in every worker.
//
// Restarts (issue 18 item 5): every endpoint is recorded on disk
// (<state_dir>/endpoints, endpoint_record.hpp) when endpoint.add succeeds
// and forgotten at endpoint.del; a stop keeps the record. A stop (SIGTERM,
// a rolling upgrade) also keeps every pod's interface as a kill -9 does;
// node.shutdown with remove_pods (an uninstall) takes them away. When the daemon
// comes up (online(), before the API serves) each recorded endpoint is
// added again with the kinds' reattach (the pod's interface taken over as
// the dead process left it), except a kernel pod whose namespace is gone:
// the runtime deleted it meanwhile, so its record goes and the cni module
// releases its addresses (cni.reconcile). node.get's "restore" tells what
// was restored, cleaned, refused and unreadable.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fwd/control/endpoint_record.hpp"
#include "fwd/control/module.hpp"
#include "fwd/control/port_kind.hpp"

namespace fwd::control {

class RoutesModule;

// The largest pod MTU the API allows.
inline constexpr uint16_t kMaxPodMtu = 9000;

class EndpointsModule final : public Module {
  public:
    static constexpr const char *kName = "endpoints";
    explicit EndpointsModule(ControlContext &ctx);

    void start() override;   // the record opened, every kind's start()
    void online() override;  // the recorded endpoints back (the API does not serve yet)
    void stop() override;    // every endpoint detached (Detach::kKeepPod unless node.shutdown
                             // asked to remove the pods), then every kind's stop()
    void describe_node(nlohmann::json &out) const override;
    void describe_tables(nlohmann::json &out) const override;

    const Endpoints &endpoints() const { return endpoints_; }
    // Queue 0 of port is polled by worker now (the balance module moved it): the endpoints
    // on that port show it. Control thread.
    void queue_moved(uint16_t port, unsigned worker) {
        for (auto &[id, e] : endpoints_) {
            if (e.attached && e.port_id == port) {
                e.worker = worker;
            }
        }
    }

    // Endpoint events, for modules that keep state per pod (policy,
    // anti-spoofing, metrics), on the control thread:
    //   kAttached  its port and next hop exist, its routes are not live yet:
    //              program what must be in place before the pod's first
    //              packet; throw ApiError to refuse the endpoint (it is undone)
    //   kLive      endpoint.add is about to answer: the pod is reachable
    //   kRemoving  endpoint.del (or shutdown) begins: its routes still exist
    //              (endpoint.del: its interface is silenced already, PortKind::
    //              silence); only the subscribers told of kAttached get it
    // Subscribers are called in subscription order (kRemoving: reverse); what
    // they throw at kLive and kRemoving is ignored. At shutdown the endpoints
    // go in this module's stop(), after the modules that depend on it
    // stopped: a subscriber keeps what kRemoving needs until its destructor.
    enum class Event : uint8_t { kAttached, kLive, kRemoving };
    using Subscriber = std::function<void(Event, const Endpoint &)>;
    void subscribe(Subscriber s) { subscribers_.push_back(std::move(s)); }

  private:
    // restoring: from the record (the kinds' reattach, not written again).
    nlohmann::json add(const nlohmann::json &args, bool restoring = false);
    nlohmann::json restore();
    void forget(const std::string &id);  // its record removed; errors logged
    nlohmann::json del(const nlohmann::json &args);
    nlohmann::json shutdown(const nlohmann::json &args);
    nlohmann::json get(const nlohmann::json &args) const;
    nlohmann::json list() const;
    nlohmann::json to_json(const Endpoint &e) const;
    PortKind &kind_of(const Endpoint &e) const;
    // Undoes an endpoint in reverse order; every step tolerates "was never done".
    void remove(Endpoint &e, Detach how = Detach::kAll);

    ControlContext &ctx_;
    RoutesModule &routes_;
    std::map<std::string, std::unique_ptr<PortKind>> kinds_;
    Endpoints endpoints_;
    std::vector<Subscriber> subscribers_;
    std::vector<std::string> add_args_;
    std::unique_ptr<EndpointRecord> record_;  // made by start()
    nlohmann::json restore_report_;           // restore()'s answer, for node.get
    bool keep_pods_ = true;                   // at stop(); node.shutdown remove_pods clears it
};

}  // namespace fwd::control
