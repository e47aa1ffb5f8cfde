// Node configuration: the JSON file given to `dpdk-fwd --config`.
// Parsed and validated completely before anything starts; every error names
// the JSON path of the offending field and the reason.
//
// The file holds what a node needs to boot. The keys below are built in; a
// feature with a boot setting of its own (a table's capacity, a timeout) adds
// its key from its own file instead (config_sections.hpp). Feature objects
// (pools, policies, services, tunnels) come through the API and the cluster
// store, never the file.
#pragma once

#include <any>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <variant>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::control {

// Thrown by parse_config / load_config. what() is "<json path>: <reason>",
// e.g. "cores.workers[1].core: core 7 is not available (this process may run on
// cores 0-1)". A document that is not JSON has path "(file)", a document that
// is not an object "(root)"; load_config uses the file name when it cannot read it.
class ConfigError : public std::runtime_error {
  public:
    ConfigError(const std::string &path, const std::string &reason)
        : std::runtime_error(path + ": " + reason), path_(path), reason_(reason) {}
    const std::string &path() const { return path_; }
    const std::string &reason() const { return reason_; }

  private:
    std::string path_;
    std::string reason_;
};

struct EalConfig {
    std::string file_prefix = "dpdk-fwd";  // --file-prefix; must be unique per daemon
    bool in_memory = true;                 // --in-memory: no hugepage files left behind
    bool no_huge = false;                  // --no-huge (tests only; slow, small)
    uint32_t memory_mb = 512;              // -m
    std::vector<std::string> extra_args;   // appended verbatim to the EAL arguments
};

// One RX queue a worker polls. port is "uplink" (the only named port in a
// config; pod ports are assigned to workers at runtime).
struct RxQueueRef {
    std::string port;
    uint16_t queue = 0;
};

struct WorkerConfig {
    unsigned core = 0;  // CPU the worker thread is pinned to
    std::vector<RxQueueRef> rx;
};

struct UplinkConfig {
    std::string devargs;              // any DPDK vdev/PCI devargs, e.g. "net_tap0,iface=up0"
    uint16_t rx_queues = 1;           // queues polled by the workers listed in rx[]
    std::optional<net::MacAddr> mac;  // override the port's MAC
    std::optional<uint16_t> vlan;     // accept frames tagged with this VLAN id (strip/insert)
};

// Adaptive idle back-off of the workers: after spin_polls empty polls they
// rte_pause() for pause_polls more, then wait: blocked on their queues' fds
// for up to max_block_ms where every queue has one (tun pods, net_tap
// ports; 0: never), else sleeping, doubling from 1 us up to max_sleep_us
// (dp::IdleParams).
struct IdleConfig {
    bool enabled = true;
    uint32_t spin_polls = 100;
    uint32_t pause_polls = 1000;
    uint32_t max_sleep_us = 1000;
    uint32_t max_block_ms = 100;
};

enum class RouteKind { kBlackhole, kUnreachable, kVia };

// A static route. kVia leaves by the uplink; its next hop's MAC is resolved
// by the dataplane (ARP / ND) unless mac pins it.
struct StaticRoute {
    std::variant<net::Prefix4, net::Prefix6> prefix;
    RouteKind kind = RouteKind::kUnreachable;
    std::optional<net::IpAddr> via;
    std::optional<net::MacAddr> mac;
};

// The node's own kernel interface behind the dataplane: a tap in the daemon's
// network namespace with the node's addresses and the uplink MAC. Traffic for
// the node's addresses goes to it (rate limited per worker); what the kernel
// sends on it leaves by the uplink.
struct HostConfig {
    std::string tap = "fwdhost";
    uint32_t punt_rate_pps = 20000;  // per worker; 0 punts nothing
};

// Routes learned from the kernel (BIRD): which table and protocols to follow.
struct BgpConfig {
    uint32_t table = 254;                   // main
    std::vector<uint8_t> protocols = {12};  // bird
    std::string netns;                      // empty: the daemon's own
};

// Next-hop resolution on the uplink (ARP, Neighbor Discovery).
struct NeighborConfig {
    uint32_t retrans_ms = 1000;
    uint32_t max_probes = 3;
    uint32_t reachable_ms = 30000;
    uint32_t queue_len = 3;  // packets parked per unresolved neighbor
};

// Sizes of the forwarding tables (memory is reserved at start).
struct TablesConfig {
    uint32_t ipv4_routes = 131072;
    uint32_t ipv6_routes = 131072;
    uint32_t ipv4_tbl8s = 32768;  // rte_lpm groups for routes longer than /24 (1 KiB each)
    uint32_t ipv6_tbl8s = 32768;  // rte_fib6 trie groups per copy (1 KiB each, two copies)
};

// The node's IPAM: where pools, blocks and affinities live (shared by every
// node of a cluster through etcd) and how this node's blocks reach BGP. The
// daemon polls the store's revision; on a change it recomputes the node's
// routes (its confirmed blocks, and /32 or /128 for addresses it borrowed
// from other nodes' blocks), installs them as blackhole routes of source
// ipam, and rewrites the BIRD include file and reconfigures BIRD.
struct IpamNodeConfig {
    std::string store = "embedded:/var/lib/dpdk-fwd/ipam";  // fwd/ipam/open_store.hpp
    uint32_t sync_ms = 1000;                                // store revision polling period
    uint32_t release_empty_blocks_s = 300;  // give back blocks empty this long; 0: never
    std::string bird_include;               // empty: no BIRD include file
    std::string bird_socket;                // empty: BIRD is not reconfigured
    std::string birdc = "/usr/sbin/birdc";
};

class ConfigSections;  // config_sections.hpp

namespace detail {
[[noreturn]] void throw_section_type_mismatch(std::string_view key, const std::type_info &held,
                                              const std::type_info &asked);
// Throws std::logic_error unless ConfigSections::global() has `key` with type `asked`.
void check_global_section(std::string_view key, const std::type_info &asked);
}  // namespace detail

// The values of the sections features add to the config (config_sections.hpp),
// by top-level key. Values, not pointers: copying a NodeConfig copies them.
class ConfigSectionValues {
  public:
    // The section as parsed, or T{} when the file has no such key. A NodeConfig
    // built by hand (tests) holds no values and gives T{} for any section in
    // ConfigSections::global(). Throws std::logic_error when T is not the type
    // the section was registered with, or no section has this key.
    template <typename T>
    const T &get(std::string_view key) const {
        if (auto it = values_.find(key); it != values_.end()) {
            if (const T *v = std::any_cast<T>(&it->second)) {
                return *v;
            }
            detail::throw_section_type_mismatch(key, it->second.type(), typeid(T));
        }
        detail::check_global_section(key, typeid(T));
        static const T kDefault{};
        return kDefault;
    }

    // parse_config stores every registered section here; tests may set one on
    // a NodeConfig they build by hand. Throws std::logic_error when the key
    // already holds another type.
    template <typename T>
    void set(std::string key, T value) {
        static_assert(std::is_copy_constructible_v<T>, "a NodeConfig is copied, so are sections");
        if (auto it = values_.find(key); it != values_.end() && it->second.type() != typeid(T)) {
            detail::throw_section_type_mismatch(key, it->second.type(), typeid(T));
        }
        values_.insert_or_assign(std::move(key), std::any(std::move(value)));
    }

  private:
    std::map<std::string, std::any, std::less<>> values_;
};

struct NodeConfig {
    std::string node_name;  // required; [a-z0-9.-], <= 63 chars
    EalConfig eal;
    unsigned main_core = 0;                // CPU of the main thread (API, signals)
    unsigned control_core = 0;             // CPU of the control thread (table writer)
    std::vector<WorkerConfig> workers;     // 1..N, each on its own lcore
    std::optional<UplinkConfig> uplink;    // absent: a single-node setup
    std::optional<net::IfAddr4> node_ip4;  // the node's addresses; at least one family
    std::optional<net::IfAddr6> node_ip6;
    uint16_t mtu = 1500;  // uplink MTU and default pod MTU (576..9000)
    IdleConfig idle;
    std::string api_socket = "/run/dpdk-fwd/api.sock";
    // Besides root and the daemon's user, this group may use the API (the socket is then 0660).
    std::optional<gid_t> api_socket_group;
    std::string run_dir = "/run/dpdk-fwd";  // vhost-user sockets live here
    // What outlives the process: the endpoint record (<state_dir>/endpoints,
    // endpoint_record.hpp) that a restart takes the node's pods back from.
    std::string state_dir = "/var/lib/dpdk-fwd";
    uint32_t mbufs = 16383;               // mbufs in the packet pool (power of 2 minus 1)
    uint32_t icmp_errors_per_sec = 1000;  // per worker token bucket for ICMP errors
    uint32_t max_endpoints = 1024;
    // The shared tap of kernel pods (a macvlan each), in the daemon's namespace.
    std::string pod_tap = "fwdpods";
    std::vector<StaticRoute> routes;
    std::optional<HostConfig> host;
    std::optional<BgpConfig> bgp;
    NeighborConfig neighbor;
    TablesConfig tables;
    std::optional<IpamNodeConfig> ipam;
    // Per-stage packet and cycle counters in the workers from the start (the
    // stats.stages op turns them on and off at runtime). Off: the fast path
    // does not read the TSC.
    bool stage_stats = false;
    // The workers' fused first stage (dp::fast_input). false: eth_input,
    // ip4_input and ip6_input one after the other, with the same results:
    // for A/B measurements and for ruling the fast path out.
    bool fast_path = true;
    // Settings of the features that add their own top-level key
    // (config_sections.hpp), parsed after the fields above.
    ConfigSectionValues sections;

    // cfg.section<ConntrackConfig>("conntrack"): see ConfigSectionValues::get.
    template <typename T>
    const T &section(std::string_view key) const {
        return sections.get<T>(key);
    }
};

// What a config is checked against beyond its own consistency. Injectable so
// tests do not depend on the machine they run on.
struct ConfigEnv {
    std::vector<unsigned> cpus;  // CPUs this process may be pinned to

    // The CPUs in the calling process's affinity mask (sched_getaffinity), so
    // a cpuset-restricted container rejects cores it cannot use.
    static ConfigEnv from_this_process();
};

// Parses and validates; throws ConfigError. The one-argument forms check
// against ConfigEnv::from_this_process(). The forms without `sections` read
// the feature sections of ConfigSections::global(); tests pass their own.
NodeConfig parse_config(const std::string &json_text, const ConfigEnv &env,
                        const ConfigSections &sections);
NodeConfig parse_config(const std::string &json_text, const ConfigEnv &env);
NodeConfig parse_config(const std::string &json_text);
NodeConfig load_config(const std::string &path, const ConfigEnv &env);
NodeConfig load_config(const std::string &path);  // reads the file, then parse_config

}  // namespace fwd::control
