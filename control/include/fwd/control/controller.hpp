// The control thread: the only writer of the tables the workers read.
//
// Requests arrive from producer threads (today the API server; the netlink
// watcher and port events join later) on one bounded single-producer ring
// each. The control thread executes them one by one and answers a request
// only once its change is live in every worker: route changes are visible
// to the next lookup, queue changes were acknowledged by the worker, and
// removals waited for an RCU grace period before anything was freed.
#pragma once

#include <rte_mempool.h>

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <future>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fwd/control/config.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/dp/worker.hpp"

namespace fwd::control {

// One pod's attachment to the dataplane.
struct Endpoint {
    std::string id;
    std::string kind;  // "tap" | "vhost-user"
    std::string netns;
    std::string ifname;
    std::optional<net::Ip4Addr> ipv4;
    std::optional<net::Ip6Addr> ipv6;
    net::MacAddr mac;
    uint16_t mtu = 0;
    uint16_t port_id = 0;
    std::string host_ifname;
    std::string vhost_socket;
    bool vhost_client = false;
    unsigned worker = 0;     // polls the only RX queue; with one queue per worker, queue 0
    uint16_t rx_queues = 1;  // a tap has one per worker (worker w polls queue w)
    uint32_t nh = dp::kNhInvalid;
};

class Controller {
  public:
    Controller(const NodeConfig &cfg, dp::Tables &tables, std::vector<dp::Worker *> workers,
               rte_mempool *pool);
    ~Controller();

    // Before the workers start (control lcore or main): uplink port, its
    // queues to the configured workers, static routes. Throws with a message.
    void start();
    // Tears down every endpoint and the uplink. Workers must still run.
    void shutdown();

    // The control thread's loop; returns after stop().
    void run();
    void stop();

    // From the API thread (single producer): queues the request and waits
    // for its answer. Throws ApiError.
    nlohmann::json call(const std::string &op, const nlohmann::json &args);

    static const std::vector<std::string> &ops();

  private:
    struct Call {
        std::string op;
        nlohmann::json args;
        std::promise<nlohmann::json> reply;
    };

    nlohmann::json execute(const std::string &op, const nlohmann::json &args);
    nlohmann::json endpoint_add(const nlohmann::json &args);
    nlohmann::json endpoint_del(const nlohmann::json &args);
    nlohmann::json endpoint_get(const nlohmann::json &args);
    nlohmann::json endpoint_list();
    nlohmann::json stats();
    nlohmann::json endpoint_json(const Endpoint &e) const;

    void remove_endpoint(Endpoint &e);
    // Posts c to worker w and waits until it is done. Throws on timeout.
    void worker_do(unsigned w, dp::WorkerCommand c);
    unsigned least_loaded_worker() const;
    void add_static_routes();

    const NodeConfig cfg_;
    dp::Tables &tables_;
    std::vector<dp::Worker *> workers_;
    rte_mempool *pool_;
    std::optional<uint16_t> uplink_port_;
    net::MacAddr uplink_mac_;
    std::map<std::string, Endpoint> endpoints_;
    std::vector<uint32_t> static_nhs_;
    uint64_t next_token_ = 1;

    boost::lockfree::spsc_queue<Call *, boost::lockfree::capacity<64>> api_ring_;  // API -> control
    int wake_fd_ = -1;  // eventfd: a producer pushed something
    std::atomic<bool> running_{true};
};

}  // namespace fwd::control
