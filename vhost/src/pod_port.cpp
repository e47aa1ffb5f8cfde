#include "fwd/vhost/pod_port.hpp"

#include <linux/if_tun.h>
#include <net/if.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_kvargs.h>
#include <rte_mempool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

namespace fwd::vhost {
namespace {

constexpr const char *kTapDriver = "net_tap";
constexpr const char *kVhostDriver = "net_vhost";

std::string errno_text(int err) {
    return rte_strerror(err);
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

void check_token(const std::string &token) {
    if (token.empty() || token.size() > kMaxTokenLen ||
        !std::all_of(token.begin(), token.end(), is_name_char)) {
        throw PortError("bad port token '" + token + "': want 1 to " +
                        std::to_string(kMaxTokenLen) + " of [A-Za-z0-9_-]");
    }
}

void check_ifname(const std::string &ifname) {
    auto ok = [](char c) { return is_name_char(c) || c == '.'; };
    if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname == "." || ifname == ".." ||
        !std::all_of(ifname.begin(), ifname.end(), ok)) {
        throw PortError("bad tap interface name '" + ifname + "': want 1 to " +
                        std::to_string(IFNAMSIZ - 1) + " of [A-Za-z0-9_.-]");
    }
}

std::string port_name(uint16_t port_id) {
    char name[RTE_ETH_NAME_MAX_LEN] = {};
    if (rte_eth_dev_get_name_by_port(port_id, name) != 0) {
        return "port " + std::to_string(port_id);
    }
    return std::string(name) + " (port " + std::to_string(port_id) + ")";
}

// A devargs value of a live port ("iface" of a tap or vhost port), read back
// from EAL so that no side table has to mirror it.
std::optional<std::string> devarg_of(const rte_eth_dev_info &info, const char *driver,
                                     const char *key) {
    if (info.driver_name == nullptr || std::strcmp(info.driver_name, driver) != 0 ||
        info.device == nullptr) {
        return std::nullopt;
    }
    const rte_devargs *da = rte_dev_devargs(info.device);
    if (da == nullptr || da->args == nullptr) {
        return std::nullopt;
    }
    std::unique_ptr<rte_kvargs, decltype(&rte_kvargs_free)> kv(rte_kvargs_parse(da->args, nullptr),
                                                               rte_kvargs_free);
    if (!kv) {
        return std::nullopt;
    }
    const char *value = rte_kvargs_get(kv.get(), key);
    if (value == nullptr) {
        return std::nullopt;
    }
    return std::string(value);
}

// The socket a vhost-user server port made.
std::optional<std::string> server_socket_of(const rte_eth_dev_info &info) {
    if (devarg_of(info, kVhostDriver, "client").value_or("0") != "0") {
        return std::nullopt;
    }
    return devarg_of(info, kVhostDriver, "iface");
}

// The tap PMD keeps addressing its interface by name in our namespace, even
// after the interface moved into a pod; a second port with that name would
// get the first one's stop (link down) and more. Refuse such a name.
// A tap of ours left persistent (set_tap_persist): its tun_flags (sysfs, in
// hex) have IFF_TAP, IFF_MULTI_QUEUE and IFF_PERSIST.
bool persistent_mq_tap(const std::string &ifname) {
    std::FILE *f = std::fopen(("/sys/class/net/" + ifname + "/tun_flags").c_str(), "r");
    if (f == nullptr) {
        return false;  // not a tun device at all
    }
    unsigned flags = 0;
    const bool read = std::fscanf(f, "%x", &flags) == 1;
    std::fclose(f);
    const unsigned want = IFF_TAP | IFF_MULTI_QUEUE | IFF_PERSIST;
    return read && (flags & want) == want;
}

void check_tap_name_free(const std::string &ifname, const std::string &devname, bool take_over) {
    uint16_t port_id;
    RTE_ETH_FOREACH_DEV(port_id) {
        rte_eth_dev_info info{};
        if (rte_eth_dev_info_get(port_id, &info) != 0) {
            continue;
        }
        if (devarg_of(info, kTapDriver, "iface") == ifname) {
            throw PortError("create " + devname + ": tap name " + ifname + " still belongs to " +
                            port_name(port_id) + ", whose interface may be in a pod");
        }
    }
    if (if_nametoindex(ifname.c_str()) != 0 && !(take_over && persistent_mq_tap(ifname))) {
        // The tap PMD would attach to a leftover tap of that name, or fail
        // obscurely on anything else.
        throw PortError("create " + devname + ": interface " + ifname + " already exists");
    }
}

// Stops, closes and removes; every step is tried. Returns what failed.
std::vector<std::string> teardown(uint16_t port_id) {
    std::vector<std::string> failed;
    rte_eth_dev_info info{};
    if (int ret = rte_eth_dev_info_get(port_id, &info); ret != 0) {
        failed.push_back("get info: " + errno_text(-ret));
        info.device = nullptr;
    }
    const std::optional<std::string> socket = server_socket_of(info);

    // A tap whose interface left our namespace: stop ignores its failing
    // by-name link-down, and close releases the queue fds, which deletes the
    // (non-persistent) interface in whichever namespace it is.
    if (int ret = rte_eth_dev_stop(port_id); ret != 0) {
        failed.push_back("stop: " + errno_text(-ret));
    }
    if (int ret = rte_eth_dev_close(port_id); ret != 0) {
        failed.push_back("close: " + errno_text(-ret));
    }
    // Removing the EAL device also closes the port if close refused above.
    if (info.device != nullptr) {
        if (int ret = rte_dev_remove(info.device); ret != 0) {
            failed.push_back("remove device: " + errno_text(-ret));
        }
    }
    // The vhost PMD deletes its server socket on remove, not on close; this
    // covers a remove that failed.
    if (socket && ::unlink(socket->c_str()) != 0 && errno != ENOENT) {
        failed.push_back("remove socket " + *socket + ": " + errno_text(errno));
    }
    return failed;
}

void setup(uint16_t port_id, const PortSpec &spec, const std::string &where) {
    rte_eth_dev_info info{};
    if (int ret = rte_eth_dev_info_get(port_id, &info); ret != 0) {
        throw PortError("get info of " + where + ": " + errno_text(-ret));
    }
    if (spec.rx_queues > info.max_rx_queues || spec.tx_queues > info.max_tx_queues) {
        throw PortError("configure " + where + ": " + std::to_string(spec.rx_queues) + " RX / " +
                        std::to_string(spec.tx_queues) + " TX queues, the PMD allows " +
                        std::to_string(info.max_rx_queues) + " / " +
                        std::to_string(info.max_tx_queues));
    }
    // No LSC interrupt: a tap's link events come from our namespace only, so
    // they stop once the interface moves into the pod.
    rte_eth_conf conf{};
    // RX interrupts where the fd is the queue's own (net_tap: its tap fd,
    // readable while frames wait): an idle worker blocks on it instead of
    // polling (Worker::block). Not asked of other PMDs: where the fd is an
    // eventfd to read and re-arm, an unread one would wake the worker for
    // ever.
    if (info.driver_name != nullptr && std::strcmp(info.driver_name, "net_tap") == 0) {
        conf.intr_conf.rxq = 1;
    }
    // Several RX queues: RSS spreads the flows over them (a NIC without it delivers
    // everything to queue 0), by addresses and TCP / UDP ports where the PMD hashes them.
    // The uplink's flow rules (control/nic_flows.hpp) say the same to NICs that steer by rule.
    if (spec.rx_queues > 1 && info.flow_type_rss_offloads != 0) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf =
            (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    if (spec.rx_scatter) {
        if ((info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER) == 0) {
            throw PortError("configure " + where + ": the PMD cannot do RX scatter");
        }
        conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
        if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) {
            conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
        }
    }
    if (int ret = rte_eth_dev_configure(port_id, spec.rx_queues, spec.tx_queues, &conf); ret != 0) {
        throw PortError("configure " + where + ": " + errno_text(-ret));
    }
    uint16_t rx_desc = spec.rx_desc;
    uint16_t tx_desc = spec.tx_desc;
    if (int ret = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rx_desc, &tx_desc); ret != 0) {
        throw PortError("adjust descriptors of " + where + ": " + errno_text(-ret));
    }
    int socket_id = rte_eth_dev_socket_id(port_id);
    const unsigned queue_socket =
        socket_id < 0 ? static_cast<unsigned>(SOCKET_ID_ANY) : static_cast<unsigned>(socket_id);
    for (uint16_t q = 0; q < spec.rx_queues; q++) {
        int ret = rte_eth_rx_queue_setup(port_id, q, rx_desc, queue_socket, nullptr, spec.pool);
        if (ret != 0) {
            throw PortError("set up RX queue " + std::to_string(q) + " of " + where + ": " +
                            errno_text(-ret));
        }
    }
    for (uint16_t q = 0; q < spec.tx_queues; q++) {
        int ret = rte_eth_tx_queue_setup(port_id, q, tx_desc, queue_socket, nullptr);
        if (ret != 0) {
            throw PortError("set up TX queue " + std::to_string(q) + " of " + where + ": " +
                            errno_text(-ret));
        }
    }
    if (int ret = rte_eth_dev_start(port_id); ret != 0) {
        throw PortError("start " + where + ": " + errno_text(-ret));
    }
}

// Reads the port's MAC; undoes the port when that fails.
PortInfo finish(uint16_t port_id, const std::string &devname, const std::string &where) {
    rte_ether_addr mac{};
    if (int ret = rte_eth_macaddr_get(port_id, &mac); ret != 0) {
        teardown(port_id);
        throw PortError("get MAC of " + where + ": " + errno_text(-ret));
    }
    return PortInfo{port_id, devname, net::MacAddr::from_bytes(mac.addr_bytes)};
}

// Probes devargs (unless must_probe is false and a port of that name exists:
// a PCI device probed at EAL init), sets the port up and starts it. Undoes
// everything on failure.
PortInfo attach(const std::string &devargs, const std::string &devname, const PortSpec &spec,
                bool must_probe) {
    uint16_t port_id = 0;
    if (must_probe || rte_eth_dev_get_port_by_name(devname.c_str(), &port_id) != 0) {
        if (int ret = rte_dev_probe(devargs.c_str()); ret != 0) {
            throw PortError("probe " + devargs + ": " + errno_text(-ret));
        }
        if (rte_eth_dev_get_port_by_name(devname.c_str(), &port_id) != 0) {
            rte_eal_hotplug_remove("vdev", devname.c_str());
            throw PortError("find port of " + devname + ": the probe made no ethdev port");
        }
    }
    const std::string where = devname + " (port " + std::to_string(port_id) + ")";
    try {
        setup(port_id, spec, where);
    } catch (...) {
        teardown(port_id);
        throw;
    }
    return finish(port_id, devname, where);
}

}  // namespace

std::string tap_devname(const std::string &token) {
    check_token(token);
    return std::string(kTapDriver) + "_" + token;
}

std::string tap_devargs(const std::string &token, const std::string &ifname) {
    check_ifname(ifname);
    return tap_devname(token) + ",iface=" + ifname;
}

void check_socket_path(const std::string &path) {
    // sun_path bounds the length.
    auto bad = [](char c) { return static_cast<unsigned char>(c) < 0x20; };
    if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path) ||
        std::any_of(path.begin(), path.end(), bad)) {
        throw PortError("bad vhost-user socket path '" + path + "': want a path under " +
                        std::to_string(sizeof(sockaddr_un::sun_path)) +
                        " characters without control characters");
    }
}

// Server mode binds the path, which fails if a socket file from an earlier
// run is still there. DPDK will not delete it for us, so do it here, but only
// when nobody answers on it.
void prepare_server_socket(const std::string &path, const std::string &who) {
    namespace fs = std::filesystem;
    check_socket_path(path);
    const std::string step = "prepare vhost-user socket " + path + " for " + who;
    const fs::path p(path);
    std::error_code ec;
    if (p.has_parent_path()) {
        fs::create_directories(p.parent_path(), ec);
        if (ec) {
            throw PortError(step + ": create " + p.parent_path().string() + ": " + ec.message());
        }
    }
    const fs::file_status st = fs::symlink_status(p, ec);
    if (st.type() == fs::file_type::not_found) {
        return;
    }
    if (ec) {
        throw PortError(step + ": " + ec.message());
    }
    if (st.type() != fs::file_type::socket) {
        throw PortError(step + ": exists and is not a socket");
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw PortError(step + ": socket: " + errno_text(errno));
    }
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr *>(&sa), sizeof(sa));
    const int err = errno;
    ::close(fd);
    if (rc == 0) {
        throw PortError(step + ": a server is already listening on it");
    }
    if (err != ECONNREFUSED) {
        throw PortError(step + ": probe stale socket: " + errno_text(err));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        throw PortError(step + ": remove stale socket: " + errno_text(errno));
    }
}

PortInfo create_port(const PortSpec &spec) {
    const std::string devname = tap_devname(spec.token);
    if (spec.pool == nullptr) {
        throw PortError("create " + devname + ": no mempool");
    }
    if (spec.rx_queues == 0 || spec.tx_queues == 0) {
        throw PortError("create " + devname + ": needs at least one RX and one TX queue");
    }
    const std::string devargs = tap_devargs(spec.token, spec.tap_ifname);
    check_tap_name_free(spec.tap_ifname, devname, spec.tap_take_over);

    return attach(devargs, devname, spec, true);
}

PortInfo create_port_from_devargs(const std::string &devargs, const PortSpec &spec) {
    const std::string devname = devargs.substr(0, devargs.find(','));
    if (devname.empty() || spec.pool == nullptr || spec.rx_queues == 0 || spec.tx_queues == 0) {
        throw PortError("create port from '" + devargs + "': empty name, no pool or no queues");
    }
    return attach(devargs, devname, spec, false);
}

void destroy_port(uint16_t port_id) {
    if (!rte_eth_dev_is_valid_port(port_id)) {
        throw PortError("destroy port " + std::to_string(port_id) + ": no such port");
    }
    const std::string where = port_name(port_id);
    const std::vector<std::string> failed = teardown(port_id);
    if (failed.empty()) {
        return;
    }
    std::string msg = "destroy " + where + ": ";
    for (size_t i = 0; i < failed.size(); i++) {
        msg += (i ? "; " : "") + failed[i];
    }
    throw PortError(msg);
}

}  // namespace fwd::vhost
