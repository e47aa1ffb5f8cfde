// The dpdk-fwd-cni binary's verbs: each one is one call to the node daemon's API (the cni.*
// ops of fwd/control/cni_service.hpp) on the socket the network config names. The plugin holds
// no state: IPAM, the endpoint and their undo live in the daemon.
//
// Daemon errors become CNI codes: unreachable or "unavailable" -> 11 (try again later; STATUS:
// 51), invalid_argument -> 7, not_found -> 3, exhausted -> 100, CHECK differences -> 101,
// anything else -> 999. The message names the daemon socket and what the daemon said.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "fwd/cni/plugin.hpp"

namespace fwd::cni {

class DaemonHandler : public Handler {
  public:
    explicit DaemonHandler(int timeout_ms = 120000) : timeout_ms_(timeout_ms) {}
    Result add(const Request &req) override;
    void del(const Request &req) override;
    void check(const Request &req) override;
    void status(const Request &req) override;
    void gc(const Request &req) override;

  private:
    nlohmann::json call(const Request &req, const std::string &op, const nlohmann::json &args,
                        ErrorCode down = ErrorCode::kTryAgainLater);
    int timeout_ms_;
};

// The ADD result for the daemon's cni.add reply: the host side and the pod interface, the
// addresses on the pod interface, Calico's default routes, the config's DNS; appended to the
// prevResult when the plugin runs chained after another.
Result result_from_reply(const Request &req, const nlohmann::json &reply);

}  // namespace fwd::cni
