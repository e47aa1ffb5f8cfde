// The control thread: the only writer of the tables the workers read.
//
// Inputs arrive from producer threads on one bounded single-producer ring
// each: the API server (calls), the netlink watcher (routes BIRD learned), the
// workers (punted packets: for the host, neighbor replies, packets waiting for
// a neighbor), plus the host tap's file descriptor. A full ring is
// back-pressure on its producer and is counted; nothing is dropped silently.
//
// Route changes from every source go through the RIB (rib.hpp), which
// coalesces a burst to its net effect; publish() writes that to the tables as
// one new table version. The control thread answers a request only once its
// change is live in every worker: route changes are visible to the next
// lookup, queue changes were acknowledged by the worker, and removals waited
// for an RCU grace period before anything was freed.
#pragma once

#include <rte_ethdev.h>
#include <rte_mempool.h>

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fwd/control/config.hpp"
#include "fwd/control/neighbor.hpp"
#include "fwd/control/netlink_watcher.hpp"
#include "fwd/control/rib.hpp"
#include "fwd/control/ring.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/vhost/host_tap.hpp"

namespace fwd::control {

// One pod's attachment to the dataplane. A kernel pod (kind "tap") is a
// macvlan on the shared pod tap: its port is that tap's, its MAC tells it
// apart there. A vhost-user pod has a port of its own.
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
    bool own_port = false;    // a vhost-user port, created and destroyed with the endpoint
    int pod_ifindex = 0;      // the macvlan's ifindex in netns; 0: none made
    std::string host_ifname;  // the shared pod tap's kernel interface
    std::string vhost_socket;
    bool vhost_client = false;
    unsigned worker = 0;     // polls the only RX queue; with one queue per worker, queue 0
    uint16_t rx_queues = 1;  // the shared tap has one per worker (worker w polls queue w)
    uint32_t nh = dp::kNhInvalid;
    // Who asked for the endpoint (the CNI attachment: network, container_id, ifname, handle,
    // k8s namespace and pod): an object of strings, kept and shown, never interpreted here.
    nlohmann::json owner = nlohmann::json::object();
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

    // The IPAM sync's state for node.get; set before run(), called on the
    // control thread (the provider locks what it shares).
    void set_ipam_status(std::function<nlohmann::json()> f) { ipam_status_ = std::move(f); }

  private:
    struct Call {
        std::string op;
        nlohmann::json args;
        std::promise<nlohmann::json> reply;
    };

    // Control thread counters (written by the control thread only; read by stats()).
    struct Counters {
        uint64_t versions = 0;             // table versions published
        uint64_t route_changes = 0;        // FIB changes applied
        uint64_t route_errors = 0;         // FIB changes the tables refused
        uint64_t bgp_events = 0;           // netlink events consumed
        uint64_t bgp_ignored = 0;          // learned routes we cannot use (device, v4-via-v6)
        uint64_t host_to_kernel = 0;       // punted frames written to the host tap
        uint64_t host_write_errors = 0;    // ... the kernel refused
        uint64_t host_no_tap = 0;          // punted for the host without a host tap
        uint64_t host_from_kernel = 0;     // frames the kernel sent, handed to a worker
        uint64_t host_tx_dropped = 0;      // ... dropped: no mbuf, too big, worker ring full
        uint64_t neigh_frames = 0;         // ARP / NA frames seen
        uint64_t neigh_learned = 0;        // ... that updated a neighbor
        uint64_t neigh_solicits = 0;       // ARP requests / NS sent
        uint64_t neigh_queued = 0;         // packets parked for a neighbor
        uint64_t neigh_flushed = 0;        // ... sent once it resolved
        uint64_t neigh_dropped = 0;        // ... dropped (evicted, failed, route gone)
        uint64_t resolve_no_neighbor = 0;  // punted for a next hop that is no neighbor any more
        uint64_t worker_ring_full = 0;     // command ring to a worker full (counted, retried)
        uint64_t last_batch_routes = 0;    // size of the last netlink batch
        uint64_t last_batch_us = 0;        // its pop-to-live time
        uint64_t max_batch_us = 0;
    };

    nlohmann::json execute(const std::string &op, const nlohmann::json &args);
    nlohmann::json endpoint_add(const nlohmann::json &args);
    nlohmann::json endpoint_del(const nlohmann::json &args);
    nlohmann::json endpoint_get(const nlohmann::json &args);
    nlohmann::json endpoint_list();
    nlohmann::json stats();
    nlohmann::json endpoint_json(const Endpoint &e) const;
    nlohmann::json route_add(const nlohmann::json &args);
    nlohmann::json route_del(const nlohmann::json &args);
    nlohmann::json route_list(const nlohmann::json &args);
    nlohmann::json ipam_routes(const nlohmann::json &args);
    nlohmann::json node_get();
    nlohmann::json neighbor_list();
    nlohmann::json tables_get();
    nlohmann::json link_json(uint16_t port);

    // --- routes (routes.cpp) ---
    // Writes the RIB's coalesced changes to the tables: one table version.
    // Returns the prefixes the tables refused (already taken out of the RIB's
    // installed set) with the reason.
    std::vector<std::pair<AnyPrefix, std::string>> publish();
    uint32_t acquire(const RouteTarget &t);  // a next hop for t; throws std::runtime_error
    void release(const RouteTarget &t);      // frees after the next grace period
    uint32_t via_ref(const net::IpAddr &ip);
    void via_unref(const net::IpAddr &ip);
    void drain_netlink();

    // --- port events (slowpath.cpp) ---
    // A port's link changed (ethdev interrupt thread: the ring's one producer).
    struct PortEvent {
        uint16_t port;
        uint8_t type;  // rte_eth_event_type
    };
    static int on_port_event(uint16_t port, rte_eth_event_type type, void *self, void *ret);
    void drain_port_events();
    struct PortLink {
        bool up = false;
        uint32_t speed_mbps = 0;
        uint64_t events = 0;
    };
    std::map<uint16_t, PortLink> links_;  // control thread

    // --- slow path (slowpath.cpp) ---
    void start_slow_path();
    bool slow_path_work();  // returns true when it did something
    void handle_punt(rte_mbuf *m);
    void host_read();
    void neighbor_actions();
    bool send_on_worker(dp::WorkerCommand::Kind kind, uint16_t port, rte_mbuf *m);
    void send_frame(const uint8_t *frame, size_t len);  // out of the uplink via a worker
    uint64_t now_ms() const;

    // The shared pod tap (start()) and its removal (shutdown()).
    void start_pod_tap();
    void stop_pod_tap();
    // with_link false: leave a kernel pod's macvlan (shutdown: destroying the
    // shared tap deletes every macvlan on it, in whatever namespace).
    void remove_endpoint(Endpoint &e, bool with_link = true);
    // Posts c to worker w and waits until it is done. Throws on timeout.
    void worker_do(unsigned w, dp::WorkerCommand c);
    unsigned least_loaded_worker() const;
    void add_static_routes();

    // Ownership: everything below is the control thread's alone (start() and
    // shutdown() run before the control thread starts and after it stopped),
    // except where a comment names another thread.
    const NodeConfig cfg_;               // immutable
    dp::Tables &tables_;                 // control writes; workers read (tables.hpp rules)
    std::vector<dp::Worker *> workers_;  // their command rings: control produces
    rte_mempool *pool_;                  // thread safe (per-lcore caches)
    std::optional<uint16_t> uplink_port_;
    net::MacAddr uplink_mac_;
    std::optional<uint16_t> pod_port_;  // the shared tap every kernel pod's macvlan sits on
    std::map<std::string, Endpoint> endpoints_;
    uint64_t next_token_ = 1;

    // Routes: the RIB and the next hops its targets share. All control thread.
    Rib rib_;
    struct ViaNh {
        uint32_t nh;
        uint32_t refs;
        std::optional<net::MacAddr> mac;  // resolved MAC the next hop uses
    };
    std::map<net::IpAddr, ViaNh> via_;  // one kVia/kResolve next hop per neighbor
    std::map<uint32_t, net::IpAddr> via_by_nh_;
    struct GroupNh {
        uint32_t nh;
        uint32_t group;
        uint32_t refs;
    };
    std::map<std::vector<net::IpAddr>, GroupNh> groups_;  // ECMP sets
    struct FixedNh {
        uint32_t nh;
        uint32_t refs;
    };
    std::map<std::pair<net::IpAddr, net::MacAddr>, FixedNh> fixed_;  // via with a pinned MAC
    uint32_t blackhole_nh_ = dp::kNhInvalid;
    uint32_t unreachable_nh_ = dp::kNhInvalid;
    // Freed after the next grace period (publish() runs it).
    std::vector<uint32_t> free_nhs_;
    std::vector<uint32_t> free_groups_;
    std::vector<net::IpAddr> free_neighbors_;

    // Slow path: neighbors on the uplink, the host tap, the route watcher (its
    // thread is the only producer of its ring; control pops).
    std::unique_ptr<NeighborTable> neigh_;
    std::unique_ptr<vhost::HostTap> host_;
    std::unique_ptr<NetlinkWatcher> watcher_;
    unsigned tx_rr_ = 0;
    unsigned quiet_passes_ = 0;  // loop passes since the last punt (poll back-off)
    Counters cnt_;

    // API callers -> control. The ring has one producer at a time: call()
    // holds call_mu_ while pushing (the API server and the IPAM sync call).
    EventRing<Call *, 64> api_ring_;
    std::mutex call_mu_;
    std::function<nlohmann::json()> ipam_status_;  // set before run(); control calls it
    EventRing<PortEvent, 256> port_ring_;          // ethdev interrupt thread -> control
    int wake_fd_ = -1;                             // eventfd: any producer writes, control reads
    std::atomic<bool> running_{true};              // main thread writes (stop), control reads
};

}  // namespace fwd::control
