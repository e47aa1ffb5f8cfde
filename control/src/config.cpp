// Node configuration parser. Every value is read through a Field that knows
// its JSON path (config_reader.hpp), so each rejection names exactly what to
// fix. The whole file is checked before the daemon touches EAL: a bad config
// must never half-start a node.
#include "fwd/control/config.hpp"

#include <cxxabi.h>
#include <grp.h>
#include <sched.h>
#include <sys/un.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <system_error>

#include "fwd/control/config_reader.hpp"
#include "fwd/control/config_sections.hpp"
#include "fwd/ipam/open_store.hpp"

namespace fwd::control {
namespace {

using config::child_path;
using config::Field;
using config::index_path;
using config::Json;
using config::json_quote;
using config::Object;

// The keys parse_config reads itself; features add theirs (config_sections.hpp).
// One a line (clang-format would fill the lines): a key added is a line added.
// clang-format off
constexpr std::string_view kBuiltinKeys[] = {"node_name",
                                             "eal",
                                             "cores",
                                             "uplink",
                                             "node",
                                             "idle",
                                             "api_socket",
                                             "api_socket_group",
                                             "run_dir",
                                             "state_dir",
                                             "mbufs",
                                             "icmp_errors_per_sec",
                                             "max_endpoints",
                                             "pod_tap",
                                             "routes",
                                             "host",
                                             "bgp",
                                             "neighbor",
                                             "tables",
                                             "ipam",
                                             "fast_path",
                                             "stage_stats"};
// clang-format on

// The API socket's group: a name, or a number as chown(1) takes it.
gid_t parse_group(const config::Field &f) {
    if (f.json().is_number()) {
        return f.integer<gid_t>(0, 0x7fffffff);
    }
    const std::string name = f.string("a group name or number");
    std::vector<char> buf(16384);
    group g{};
    group *found = nullptr;
    const int rc = getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
    if (found == nullptr) {
        f.fail("no group '" + name + "' on this machine" +
               (rc != 0 ? std::string(" (") + std::strerror(rc) + ")" : std::string()));
    }
    return g.gr_gid;
}

constexpr size_t kMaxWorkers = 64;
constexpr uint16_t kMaxUplinkQueues = 16;
constexpr size_t kMaxNodeNameLen = 63;
constexpr size_t kMaxFilePrefixLen = 32;
// sun_path must also hold the terminating NUL.
constexpr size_t kMaxSocketPathLen = sizeof(sockaddr_un{}.sun_path) - 1;
constexpr uint16_t kMinMtu = 576;
constexpr uint16_t kMinMtu6 = 1280;  // RFC 8200 section 5
constexpr uint16_t kMaxMtu = 9000;
constexpr std::string_view kUplinkPort = "uplink";

// "0-3,6,8-9": short enough to print even on large machines.
std::string cpu_ranges(std::vector<unsigned> cpus) {
    std::sort(cpus.begin(), cpus.end());
    cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
    if (cpus.empty()) {
        return "none";
    }
    std::string out;
    for (size_t i = 0; i < cpus.size();) {
        size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) {
            j++;
        }
        out += out.empty() ? "" : ",";
        out += std::to_string(cpus[i]);
        if (j > i) {
            out += "-" + std::to_string(cpus[j]);
        }
        i = j + 1;
    }
    return out;
}

// nlohmann keeps the last of repeated keys without a word; a config that says
// "mtu" twice is a mistake worth reporting, with its path like any other.
class DuplicateKeyCheck {
  public:
    bool operator()(int /*depth*/, Json::parse_event_t event, Json &parsed) {
        switch (event) {
            case Json::parse_event_t::object_start:
                frames_.push_back(Frame{false, 0, {}, {}});
                break;
            case Json::parse_event_t::array_start:
                frames_.push_back(Frame{true, 0, {}, {}});
                break;
            case Json::parse_event_t::key: {
                Frame &top = frames_.back();
                top.key = parsed.get<std::string>();
                if (!top.seen.insert(top.key).second) {
                    throw ConfigError(current_path(),
                                      "field " + json_quote(top.key) +
                                          " appears twice; each field may be given once");
                }
                break;
            }
            case Json::parse_event_t::object_end:
            case Json::parse_event_t::array_end:
                frames_.pop_back();
                element_done();
                break;
            case Json::parse_event_t::value:
                element_done();
                break;
        }
        return true;
    }

  private:
    struct Frame {
        bool array;
        size_t index;     // arrays: position of the element being parsed
        std::string key;  // objects: key of the member being parsed
        std::set<std::string> seen;
    };

    void element_done() {
        if (!frames_.empty() && frames_.back().array) {
            frames_.back().index++;
        }
    }

    std::string current_path() const {
        std::string path;
        for (const Frame &f : frames_) {
            path = f.array ? index_path(path, f.index) : child_path(path, f.key);
        }
        return path;
    }

    std::vector<Frame> frames_;
};

Json parse_json(const std::string &text) {
    // The callback is copied into the parser; the state it builds is only
    // needed while parsing.
    auto check = std::make_shared<DuplicateKeyCheck>();
    try {
        return Json::parse(text, [check](int depth, Json::parse_event_t event, Json &parsed) {
            return (*check)(depth, event, parsed);
        });
    } catch (const Json::exception &e) {
        // Drop nlohmann's "[json.exception.parse_error.101] " tag; the rest
        // carries the line and column.
        std::string msg = e.what();
        if (auto end = msg.find("] ");
            msg.rfind("[json.exception.", 0) == 0 && end != std::string::npos) {
            msg = msg.substr(end + 2);
        }
        throw ConfigError("(file)", "not valid JSON: " + msg);
    }
}

bool is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

void check_node_name(const Field &f, const std::string &name) {
    bool ok = !name.empty() && name.size() <= kMaxNodeNameLen && is_lower_alnum(name.front()) &&
              is_lower_alnum(name.back()) && std::all_of(name.begin(), name.end(), [](char c) {
                  return is_lower_alnum(c) || c == '.' || c == '-';
              });
    if (!ok) {
        f.fail("expected 1 to " + std::to_string(kMaxNodeNameLen) +
               " characters of [a-z0-9.-] starting and ending with a letter or digit, got " +
               json_quote(name));
    }
}

EalConfig parse_eal(const Object &o) {
    EalConfig eal;
    if (auto f = o.get("file_prefix")) {
        constexpr std::string_view kExpected = "1 to 32 characters of [A-Za-z0-9_-]";
        eal.file_prefix = f->string(kExpected);
        bool ok = !eal.file_prefix.empty() && eal.file_prefix.size() <= kMaxFilePrefixLen &&
                  std::all_of(eal.file_prefix.begin(), eal.file_prefix.end(), [](char c) {
                      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
                  });
        if (!ok) {
            f->fail("expected " + std::string(kExpected) + ", got " + json_quote(eal.file_prefix));
        }
    }
    if (auto f = o.get("in_memory")) {
        eal.in_memory = f->boolean();
    }
    if (auto f = o.get("no_huge")) {
        eal.no_huge = f->boolean();
    }
    if (auto f = o.get("memory_mb")) {
        eal.memory_mb = f->integer<uint32_t>(64, 65536);
    }
    if (auto f = o.get("extra_args")) {
        for (const Field &arg : f->array(0, 256, "strings")) {
            eal.extra_args.push_back(arg.string("a string (one EAL argument)"));
        }
    }
    return eal;
}

// A MAC we may put in the source field of frames or address frames to.
net::MacAddr parse_unicast_mac(const Field &f) {
    constexpr std::string_view kExpected = "a unicast MAC address like \"02:00:00:00:00:01\"";
    auto mac = net::MacAddr::parse(f.string(kExpected));
    if (!mac || mac->is_multicast() || mac->is_zero()) {
        f.fail_expected(kExpected);
    }
    return *mac;
}

UplinkConfig parse_uplink(const Object &o) {
    UplinkConfig up;
    Field devargs = o.need("devargs", "DPDK device arguments like \"net_tap0,iface=up0\"");
    up.devargs = devargs.string("a non-empty string of DPDK device arguments");
    if (up.devargs.empty()) {
        devargs.fail_expected("a non-empty string of DPDK device arguments");
    }
    if (auto f = o.get("rx_queues")) {
        up.rx_queues = f->integer<uint16_t>(1, kMaxUplinkQueues);
    }
    if (auto f = o.get("mac")) {
        up.mac = parse_unicast_mac(*f);
    }
    if (auto f = o.get("vlan")) {
        up.vlan = f->integer<uint16_t>(1, 4094);
    }
    return up;
}

unsigned parse_core(const Field &f, const ConfigEnv &env) {
    const Json &j = f.json();
    if (j.is_number_unsigned()) {
        auto core = j.get<uint64_t>();
        if (std::find(env.cpus.begin(), env.cpus.end(), core) != env.cpus.end()) {
            return static_cast<unsigned>(core);
        }
        f.fail("core " + std::to_string(core) +
               " is not available (this process may run on cores " + cpu_ranges(env.cpus) + ")");
    }
    f.fail_expected("a core number this process may run on (" + cpu_ranges(env.cpus) + ")");
}

// Which worker polls each uplink queue, for the exactly-once check.
using QueueOwners = std::map<uint16_t, std::string>;

RxQueueRef parse_rx(const Object &o, const std::optional<UplinkConfig> &uplink,
                    const std::string &worker_path, QueueOwners &owners) {
    RxQueueRef rx;
    Field port = o.need("port", json_quote(kUplinkPort));
    rx.port = port.string(json_quote(kUplinkPort));
    if (rx.port != kUplinkPort) {
        port.fail("expected " + json_quote(kUplinkPort) +
                  " (pod ports are given to workers at runtime), got " + json_quote(rx.port));
    }
    if (!uplink) {
        port.fail("port " + json_quote(rx.port) +
                  " is polled but no uplink is configured; add an \"uplink\" section or remove "
                  "this entry");
    }
    auto queue = o.get("queue");
    if (queue) {
        const Json &j = queue->json();
        if (!j.is_number_unsigned() || j.get<uint64_t>() >= uplink->rx_queues) {
            queue->fail_expected("a queue from 0 to " + std::to_string(uplink->rx_queues - 1) +
                                 " (uplink.rx_queues is " + std::to_string(uplink->rx_queues) +
                                 ")");
        }
        rx.queue = static_cast<uint16_t>(j.get<uint64_t>());
    }
    auto [it, inserted] = owners.emplace(rx.queue, worker_path);
    if (!inserted) {
        Field where = queue ? *queue : o.field();
        where.fail("uplink queue " + std::to_string(rx.queue) + " is already polled by " +
                   it->second + "; each queue must be polled by exactly one worker, here " +
                   worker_path + " polls it too");
    }
    return rx;
}

void parse_cores(const Object &o, const ConfigEnv &env, NodeConfig &cfg) {
    if (auto f = o.get("main")) {
        cfg.main_core = parse_core(*f, env);
    }
    if (auto f = o.get("control")) {
        cfg.control_core = parse_core(*f, env);
    }
    Field workers = o.need("workers", "an array of workers like [{\"core\": 1}]");
    std::map<unsigned, std::string> core_owners;
    QueueOwners queue_owners;
    for (const Field &wf : workers.array(1, kMaxWorkers, "workers")) {
        Object w(wf, {"core", "rx"});
        WorkerConfig wc;
        Field core = w.need("core", "the core this worker is pinned to");
        wc.core = parse_core(core, env);
        // Main and control threads mostly sleep, so a worker may share their
        // CPU; two busy-polling workers on one CPU would starve each other.
        auto [it, inserted] = core_owners.emplace(wc.core, wf.path());
        if (!inserted) {
            core.fail("core " + std::to_string(wc.core) + " is already used by " + it->second +
                      "; each worker needs its own core");
        }
        if (auto rx = w.get("rx")) {
            for (const Field &rf : rx->array(0, kMaxUplinkQueues, "queues")) {
                wc.rx.push_back(
                    parse_rx(Object(rf, {"port", "queue"}), cfg.uplink, wf.path(), queue_owners));
            }
        }
        cfg.workers.push_back(std::move(wc));
    }
    if (cfg.uplink) {
        for (uint16_t q = 0; q < cfg.uplink->rx_queues; q++) {
            if (!queue_owners.count(q)) {
                workers.fail("uplink queue " + std::to_string(q) +
                             " is not polled by any worker; every queue from 0 to " +
                             std::to_string(cfg.uplink->rx_queues - 1) +
                             " must appear in exactly one worker's rx (uplink.rx_queues is " +
                             std::to_string(cfg.uplink->rx_queues) + ")");
            }
        }
    }
}

bool is_ip4_multicast(net::Ip4Addr a) {
    return (a.host() >> 28) == 0xe;
}

void parse_node(const Object &o, NodeConfig &cfg) {
    if (auto f = o.get("ipv4")) {
        constexpr std::string_view kExpected =
            "an IPv4 unicast address with prefix length like \"10.10.10.10/24\"";
        std::string s = f->string(kExpected);
        auto a = net::IfAddr4::parse(s);
        if (!a || s.find('/') == std::string::npos || a->addr == net::Ip4Addr() ||
            is_ip4_multicast(a->addr)) {
            f->fail_expected(kExpected);
        }
        cfg.node_ip4 = *a;
    }
    if (auto f = o.get("ipv6")) {
        constexpr std::string_view kExpected =
            "a global or unique-local IPv6 address with prefix length like "
            "\"fd00:10:10::10/64\" (not link-local, not multicast)";
        std::string s = f->string(kExpected);
        auto a = net::IfAddr6::parse(s);
        if (!a || s.find('/') == std::string::npos || a->addr == net::Ip6Addr() ||
            a->addr.is_link_local() || a->addr.is_multicast()) {
            f->fail_expected(kExpected);
        }
        cfg.node_ip6 = *a;
    }
    if (!cfg.node_ip4 && !cfg.node_ip6) {
        o.field().fail("expected at least one of \"ipv4\" and \"ipv6\", got neither");
    }
    if (auto f = o.get("mtu")) {
        cfg.mtu = f->integer<uint16_t>(kMinMtu, kMaxMtu);
        if (cfg.node_ip6 && cfg.mtu < kMinMtu6) {
            f->fail("expected at least " + std::to_string(kMinMtu6) +
                    " (the IPv6 minimum link MTU) because node.ipv6 is set, got " +
                    std::to_string(cfg.mtu));
        }
    }
}

IdleConfig parse_idle(const Object &o) {
    constexpr uint32_t kMaxPolls = 10'000'000;
    IdleConfig idle;
    if (auto f = o.get("enabled")) {
        idle.enabled = f->boolean();
    }
    if (auto f = o.get("spin_polls")) {
        idle.spin_polls = f->integer<uint32_t>(0, kMaxPolls);
    }
    if (auto f = o.get("pause_polls")) {
        idle.pause_polls = f->integer<uint32_t>(0, kMaxPolls);
    }
    if (auto f = o.get("max_sleep_us")) {
        idle.max_sleep_us = f->integer<uint32_t>(0, 100'000);
    }
    if (auto f = o.get("max_block_ms")) {
        idle.max_block_ms = f->integer<uint32_t>(0, 10'000);
    }
    return idle;
}

std::string parse_abs_path(const Field &f, size_t max_len) {
    std::string expected = "an absolute path of at most " + std::to_string(max_len) + " bytes";
    std::string s = f.string(expected);
    if (s.empty() || s.front() != '/' || s.find('\0') != std::string::npos) {
        f.fail("expected an absolute path (starting with '/'), got " + json_quote(s));
    }
    if (s.size() > max_len) {
        f.fail("expected at most " + std::to_string(max_len) + " bytes" +
               (max_len == kMaxSocketPathLen ? " (the size of sun_path)" : "") + ", got " +
               std::to_string(s.size()) + " bytes in " + json_quote(s));
    }
    return s;
}

template <typename A>
std::optional<net::Prefix<A>> parse_prefix_of(const Field &f, const std::string &s) {
    if (auto p = net::Prefix<A>::parse(s)) {
        return p;
    }
    if (auto p = net::Prefix<A>::parse(s, true)) {
        f.fail("host bits set in " + json_quote(s) + "; expected the network address " +
               json_quote(p->str()));
    }
    return std::nullopt;
}

std::variant<net::Prefix4, net::Prefix6> parse_route_prefix(const Field &f) {
    constexpr std::string_view kExpected =
        "an IPv4 or IPv6 prefix like \"10.0.0.0/8\" or \"fd00::/8\"";
    std::string s = f.string(kExpected);
    if (s.find(':') == std::string::npos) {
        if (auto p = parse_prefix_of<net::Ip4Addr>(f, s)) {
            return *p;
        }
    } else if (auto p = parse_prefix_of<net::Ip6Addr>(f, s)) {
        return *p;
    }
    f.fail_expected(kExpected);
}

StaticRoute parse_route(const Object &o, const NodeConfig &cfg) {
    StaticRoute r;
    r.prefix = parse_route_prefix(o.need("prefix", "an IPv4 or IPv6 prefix like \"10.0.0.0/8\""));
    auto via = o.get("via");
    auto mac = o.get("mac");
    constexpr std::string_view kTypes = "one of \"blackhole\", \"unreachable\", \"via\"";
    std::string type;
    if (auto f = o.get("type")) {
        type = f->string(kTypes);
        if (type == "blackhole") {
            r.kind = RouteKind::kBlackhole;
        } else if (type == "unreachable") {
            r.kind = RouteKind::kUnreachable;
        } else if (type == "via") {
            r.kind = RouteKind::kVia;
        } else {
            f->fail_expected(kTypes);
        }
    } else if (via) {
        type = "via";
        r.kind = RouteKind::kVia;
    } else {
        throw ConfigError(
            child_path(o.field().path(), "type"),
            "required field is missing (there is no \"via\"); expected " + std::string(kTypes));
    }

    if (r.kind != RouteKind::kVia) {
        for (const auto &extra : {via, mac}) {
            if (extra) {
                extra->fail("only allowed for type \"via\", but this route's type is " +
                            json_quote(type));
            }
        }
        return r;
    }

    bool v4 = std::holds_alternative<net::Prefix4>(r.prefix);
    std::string expected = std::string(v4 ? "an IPv4" : "an IPv6") +
                           " next-hop address (the family of prefix " + net::str(r.prefix) + ")";
    Field via_f = o.need("via", expected);
    auto addr = net::IpAddr::parse(via_f.string(expected));
    if (!addr || (addr->family() == net::Family::kIp4) != v4) {
        via_f.fail_expected(expected);
    }
    // Routes via a next hop leave by the uplink; without one the controller
    // could only fail at startup, after EAL is up.
    if (!cfg.uplink) {
        via_f.fail("a route via " + addr->str() +
                   " leaves by the uplink, but no uplink is configured; add an \"uplink\" "
                   "section or use type \"blackhole\" or \"unreachable\"");
    }
    r.via = *addr;
    if (mac) {
        r.mac = parse_unicast_mac(*mac);
    }
    return r;
}

bool valid_ifname(const std::string &s) {
    return !s.empty() && s.size() <= 15 && s.find('/') == std::string::npos &&
           s.find(' ') == std::string::npos && s != "." && s != "..";
}

HostConfig parse_host(const Object &o) {
    HostConfig h;
    if (auto f = o.get("tap")) {
        h.tap = f->string("an interface name");
        if (!valid_ifname(h.tap)) {
            f->fail("\"" + h.tap +
                    "\" is not an interface name (1-15 characters, no '/' or space)");
        }
    }
    if (auto f = o.get("punt_rate_pps")) {
        h.punt_rate_pps = f->integer<uint32_t>(0, 10'000'000);
    }
    return h;
}

BgpConfig parse_bgp(const Object &o) {
    BgpConfig b;
    if (auto f = o.get("table")) {
        b.table = f->integer<uint32_t>(1, 0xfffffffe);
    }
    if (auto f = o.get("protocols")) {
        b.protocols.clear();
        for (const Field &p : f->array(1, 16, "protocol numbers")) {
            b.protocols.push_back(p.integer<uint8_t>(0, 255));
        }
    }
    if (auto f = o.get("netns")) {
        b.netns = f->string("a network namespace name or path");
    }
    return b;
}

NeighborConfig parse_neighbor(const Object &o) {
    NeighborConfig n;
    if (auto f = o.get("retrans_ms")) {
        n.retrans_ms = f->integer<uint32_t>(10, 60'000);
    }
    if (auto f = o.get("max_probes")) {
        n.max_probes = f->integer<uint32_t>(1, 100);
    }
    if (auto f = o.get("reachable_ms")) {
        n.reachable_ms = f->integer<uint32_t>(100, 3'600'000);
    }
    if (auto f = o.get("queue_len")) {
        n.queue_len = f->integer<uint32_t>(0, 64);
    }
    return n;
}

TablesConfig parse_tables(const Object &o) {
    TablesConfig t;
    if (auto f = o.get("ipv4_routes")) {
        t.ipv4_routes = f->integer<uint32_t>(1024, 4'000'000);
    }
    if (auto f = o.get("ipv6_routes")) {
        t.ipv6_routes = f->integer<uint32_t>(1024, 4'000'000);
    }
    if (auto f = o.get("ipv4_tbl8s")) {
        t.ipv4_tbl8s = f->integer<uint32_t>(256, 1 << 24);
    }
    if (auto f = o.get("ipv6_tbl8s")) {
        t.ipv6_tbl8s = f->integer<uint32_t>(256, 1 << 24);
    }
    return t;
}

IpamNodeConfig parse_ipam(const Object &o) {
    IpamNodeConfig c;
    if (auto f = o.get("store")) {
        c.store = f->string(
            "a store like \"embedded:/var/lib/dpdk-fwd/ipam\" or "
            "\"etcd:http://127.0.0.1:2379\"");
        if (auto why = ipam::check_store_spec(c.store); !why.empty()) {
            f->fail("\"" + c.store + "\": " + why);
        }
    }
    if (auto f = o.get("sync_ms")) {
        c.sync_ms = f->integer<uint32_t>(10, 3'600'000);
    }
    if (auto f = o.get("release_empty_blocks_s")) {
        c.release_empty_blocks_s = f->integer<uint32_t>(0, 30 * 86400);
    }
    if (auto f = o.get("bird_include")) {
        c.bird_include = parse_abs_path(*f, PATH_MAX - 1);
    }
    if (auto f = o.get("bird_socket")) {
        c.bird_socket = parse_abs_path(*f, kMaxSocketPathLen);
        if (c.bird_include.empty()) {
            f->fail("BIRD is reconfigured to read bird_include, which is not set");
        }
    }
    if (auto f = o.get("birdc")) {
        c.birdc = parse_abs_path(*f, PATH_MAX - 1);
    }
    return c;
}

std::string type_name(const std::type_info &t) {
    int status = 0;
    std::unique_ptr<char, void (*)(void *)> name(
        abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), &std::free);
    return status == 0 && name ? name.get() : t.name();
}

bool valid_section_key(std::string_view key) {
    return !key.empty() && key.front() >= 'a' && key.front() <= 'z' &&
           std::all_of(key.begin(), key.end(),
                       [](char c) { return is_lower_alnum(c) || c == '_'; });
}

}  // namespace

namespace detail {

void throw_section_type_mismatch(std::string_view key, const std::type_info &held,
                                 const std::type_info &asked) {
    throw std::logic_error("config section " + json_quote(key) + " holds a " + type_name(held) +
                           ", read as a " + type_name(asked));
}

void check_global_section(std::string_view key, const std::type_info &asked) {
    const ConfigSections::Section *s = ConfigSections::global().find(key);
    if (!s) {
        throw std::logic_error("no config section " + json_quote(key) + " is registered");
    }
    if (*s->type != asked) {
        throw_section_type_mismatch(key, *s->type, asked);
    }
}

}  // namespace detail

ConfigSections &ConfigSections::global() {
    static ConfigSections sections;
    return sections;
}

const ConfigSections::Section *ConfigSections::find(std::string_view key) const {
    auto it = sections_.find(key);
    return it == sections_.end() ? nullptr : &it->second;
}

void ConfigSections::add_section(Section s) {
    std::string what = "config section " + json_quote(s.key);
    if (!valid_section_key(s.key)) {
        throw std::logic_error(what + ": a key is [a-z][a-z0-9_]*");
    }
    if (std::find(std::begin(kBuiltinKeys), std::end(kBuiltinKeys), s.key) !=
        std::end(kBuiltinKeys)) {
        throw std::logic_error(what + ": a built-in key of the node config");
    }
    if (sections_.count(s.key)) {
        throw std::logic_error(what + ": registered twice (with " +
                               type_name(*sections_.at(s.key).type) + " and " + type_name(*s.type) +
                               ")");
    }
    std::set<std::string_view> fields;
    for (const std::string &f : s.fields) {
        if (f.empty() || !fields.insert(f).second) {
            throw std::logic_error(what + ": field " + json_quote(f) + " is empty or listed twice");
        }
    }
    std::string key = s.key;
    sections_.emplace(std::move(key), std::move(s));
}

ConfigEnv ConfigEnv::from_this_process() {
    // Start from the glibc default set size and grow on EINVAL, which the
    // kernel returns when the mask is smaller than its CPU count.
    for (int n = CPU_SETSIZE;; n *= 2) {
        std::unique_ptr<cpu_set_t, void (*)(cpu_set_t *)> set(CPU_ALLOC(n),
                                                              [](cpu_set_t *s) { CPU_FREE(s); });
        if (!set) {
            throw std::bad_alloc();
        }
        size_t size = CPU_ALLOC_SIZE(n);
        CPU_ZERO_S(size, set.get());
        if (sched_getaffinity(0, size, set.get()) == 0) {
            ConfigEnv env;
            for (int cpu = 0; cpu < n; cpu++) {
                if (CPU_ISSET_S(cpu, size, set.get())) {
                    env.cpus.push_back(static_cast<unsigned>(cpu));
                }
            }
            return env;
        }
        if (errno != EINVAL || n >= (1 << 20)) {
            throw std::system_error(errno, std::generic_category(), "sched_getaffinity");
        }
    }
}

NodeConfig parse_config(const std::string &json_text, const ConfigEnv &env,
                        const ConfigSections &sections) {
    Json doc = parse_json(json_text);
    std::vector<std::string_view> root_keys(std::begin(kBuiltinKeys), std::end(kBuiltinKeys));
    for (const auto &[key, section] : sections.sections()) {
        root_keys.push_back(key);
    }
    Object root(Field(doc, ""), std::move(root_keys));
    NodeConfig cfg;

    Field name = root.need("node_name", "the Kubernetes node name like \"node1\"");
    cfg.node_name = name.string("a string");
    check_node_name(name, cfg.node_name);

    if (auto f = root.get("eal")) {
        cfg.eal = parse_eal(
            Object(*f, {"file_prefix", "in_memory", "no_huge", "memory_mb", "extra_args"}));
    }
    // Before cores: the workers' rx entries are checked against the uplink.
    if (auto f = root.get("uplink")) {
        cfg.uplink = parse_uplink(Object(*f, {"devargs", "rx_queues", "mac", "vlan"}));
    }
    parse_cores(
        Object(root.need("cores", "an object with \"workers\""), {"main", "control", "workers"}),
        env, cfg);
    parse_node(Object(root.need("node", "an object with \"ipv4\", \"ipv6\" or both"),
                      {"ipv4", "ipv6", "mtu"}),
               cfg);
    if (auto f = root.get("idle")) {
        cfg.idle = parse_idle(
            Object(*f, {"enabled", "spin_polls", "pause_polls", "max_sleep_us", "max_block_ms"}));
    }
    if (auto f = root.get("api_socket")) {
        cfg.api_socket = parse_abs_path(*f, kMaxSocketPathLen);
    }
    if (auto f = root.get("api_socket_group")) {
        cfg.api_socket_group = parse_group(*f);
    }
    if (auto f = root.get("run_dir")) {
        cfg.run_dir = parse_abs_path(*f, PATH_MAX - 1);
    }
    if (auto f = root.get("state_dir")) {
        cfg.state_dir = parse_abs_path(*f, PATH_MAX - 1);
    }
    if (auto f = root.get("mbufs")) {
        cfg.mbufs = f->integer<uint32_t>(1023, 1048575);
    }
    if (auto f = root.get("icmp_errors_per_sec")) {
        cfg.icmp_errors_per_sec = f->integer<uint32_t>(0, 1'000'000);
    }
    if (auto f = root.get("max_endpoints")) {
        cfg.max_endpoints = f->integer<uint32_t>(1, 65535);
    }
    if (auto f = root.get("pod_tap")) {
        cfg.pod_tap = f->string("an interface name");
        if (!valid_ifname(cfg.pod_tap)) {
            f->fail("\"" + cfg.pod_tap +
                    "\" is not an interface name (1-15 characters, no '/' or space)");
        }
    }
    if (auto f = root.get("host")) {
        cfg.host = parse_host(Object(*f, {"tap", "punt_rate_pps"}));
        if (cfg.host->tap == cfg.pod_tap) {
            throw ConfigError(
                child_path(f->path(), "tap"),
                "\"" + cfg.pod_tap + "\" is also pod_tap; the two need their own names");
        }
    }
    if (auto f = root.get("bgp")) {
        cfg.bgp = parse_bgp(Object(*f, {"table", "protocols", "netns"}));
    }
    if (auto f = root.get("neighbor")) {
        cfg.neighbor =
            parse_neighbor(Object(*f, {"retrans_ms", "max_probes", "reachable_ms", "queue_len"}));
    }
    if (auto f = root.get("tables")) {
        cfg.tables =
            parse_tables(Object(*f, {"ipv4_routes", "ipv6_routes", "ipv4_tbl8s", "ipv6_tbl8s"}));
    }
    if (auto f = root.get("ipam")) {
        cfg.ipam = parse_ipam(Object(*f, {"store", "sync_ms", "release_empty_blocks_s",
                                          "bird_include", "bird_socket", "birdc"}));
    }
    if (auto f = root.get("stage_stats")) {
        cfg.stage_stats = f->boolean();
    }
    if (auto f = root.get("fast_path")) {
        cfg.fast_path = f->boolean();
    }
    if (auto f = root.get("routes")) {
        for (const Field &rf : f->array(0, 65536, "routes")) {
            StaticRoute r = parse_route(Object(rf, {"prefix", "type", "via", "mac"}), cfg);
            for (size_t i = 0; i < cfg.routes.size(); i++) {
                if (cfg.routes[i].prefix == r.prefix) {
                    throw ConfigError(child_path(rf.path(), "prefix"),
                                      "prefix " + net::str(r.prefix) + " is already routed by " +
                                          index_path(f->path(), i) +
                                          "; each prefix may appear once");
                }
            }
            cfg.routes.push_back(std::move(r));
        }
    }
    // Last, so a section's parser may read every built-in field.
    for (const auto &[key, section] : sections.sections()) {
        if (auto f = root.get(key)) {
            Object o(*f,
                     std::vector<std::string_view>(section.fields.begin(), section.fields.end()));
            section.load(&o, cfg);
        } else {
            section.load(nullptr, cfg);
        }
    }
    return cfg;
}

NodeConfig parse_config(const std::string &json_text, const ConfigEnv &env) {
    return parse_config(json_text, env, ConfigSections::global());
}

NodeConfig parse_config(const std::string &json_text) {
    return parse_config(json_text, ConfigEnv::from_this_process());
}

NodeConfig load_config(const std::string &path, const ConfigEnv &env) {
    std::unique_ptr<std::FILE, int (*)(std::FILE *)> file(std::fopen(path.c_str(), "rb"),
                                                          &std::fclose);
    if (!file) {
        throw ConfigError(path, std::string("cannot open: ") + std::strerror(errno));
    }
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), file.get())) > 0) {
        text.append(buf, n);
    }
    if (std::ferror(file.get())) {
        throw ConfigError(path, std::string("cannot read: ") + std::strerror(errno));
    }
    return parse_config(text, env);
}

NodeConfig load_config(const std::string &path) {
    return load_config(path, ConfigEnv::from_this_process());
}

}  // namespace fwd::control
