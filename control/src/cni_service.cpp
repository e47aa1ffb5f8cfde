#include "fwd/control/cni_service.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "api_args.hpp"
#include "fwd/control/api.hpp"
#include "fwd/label/selector.hpp"
#include "fwd/policy/pod_network.hpp"
#include "fwd/policy/store.hpp"

namespace fwd::control {
namespace {

using nlohmann::json;

// Calico's encapsulation overheads (CALICO.md, "Overlay and routing").
constexpr int kVxlan4Overhead = 50;
constexpr int kVxlan6Overhead = 70;
constexpr int kIpipOverhead = 20;

std::vector<std::string> get_strings(const json &args, const char *key) {
    std::vector<std::string> out;
    auto it = args.find(key);
    if (it == args.end() || it->is_null()) {
        return out;
    }
    if (!it->is_array()) {
        bad(std::string("field '") + key + "' must be a list of strings");
    }
    for (const auto &v : *it) {
        if (!v.is_string()) {
            bad(std::string("field '") + key + "' must be a list of strings, got " + v.dump());
        }
        out.push_back(v.get<std::string>());
    }
    return out;
}

const json &get_object(const json &args, const char *key) {
    static const json kEmpty = json::object();
    auto it = args.find(key);
    if (it == args.end() || it->is_null()) {
        return kEmpty;
    }
    if (!it->is_object()) {
        bad(std::string("field '") + key + "' must be an object, got " + it->type_name());
    }
    return *it;
}

std::string owner_str(const json &ep, const char *key) {
    const json &o = ep.value("owner", json::object());
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The IPAM errors as API errors: what the plugin turns into CNI codes.
// `what` ("" or e.g. "release") prefixes the message.
template <class F>
auto ipam_call(const std::string &what, F &&f) -> decltype(f()) {
    const std::string pre = what.empty() ? "" : what + ": ";
    try {
        return f();
    } catch (const ipam::ExhaustedError &e) {
        throw ApiError("exhausted", pre + e.what());
    } catch (const ipam::ConflictError &e) {
        throw ApiError("unavailable", pre + e.what());
    } catch (const ipam::StoreError &e) {
        throw ApiError("unavailable", pre + "IPAM store: " + e.what());
    } catch (const ipam::IpamError &e) {
        throw ApiError("invalid_argument", pre + e.what());
    }
}

// FNV-1a, 64 bits: a stable short name for an attachment.
uint64_t fnv1a(const std::string &s) {
    uint64_t h = 14695981039346656037ull;
    for (char c : s) {
        h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
    }
    return h;
}

// The attachment a cni.* request names, and the ids derived from it.
struct Attachment {
    std::string network;
    std::string cid;  // container id
    std::string ifname;
    std::string netns;   // may be empty
    std::string id;      // endpoint id
    std::string handle;  // IPAM handle (Calico's: no ifname)
};

Attachment attachment_of(const json &args) {
    Attachment a;
    a.network = get_str(args, "network", true);
    a.cid = get_str(args, "container_id", true);
    a.ifname = get_str(args, "ifname", false, "eth0");
    a.netns = get_str(args, "netns", false);
    a.id = CniService::endpoint_id(a.network, a.cid, a.ifname);
    a.handle = a.network + "." + a.cid;
    return a;
}

std::string addr_list(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &a : v) {
        s += (s.empty() ? "" : ", ") + a;
    }
    return s.empty() ? "none" : s;
}

}  // namespace

CniService::CniService(const NodeConfig &cfg, std::shared_ptr<ipam::Store> store, CniDeps deps)
    : node_(cfg.node_name),
      node_mtu_(cfg.mtu),
      run_dir_(cfg.run_dir),
      store_(std::move(store)),
      alloc_(*store_),
      deps_(std::move(deps)) {}

const std::vector<CniService::Op> &CniService::op_table() {
    static const std::vector<Op> kOps{
        {"cni.add",
         {"network", "container_id", "netns", "ifname", "k8s", "assign_ipv4", "assign_ipv6",
          "ipv4_pools", "ipv6_pools", "ips", "mtu", "mac", "vhost_user"},
         &CniService::add},
        {"cni.del", {"network", "container_id", "ifname", "netns", "k8s"}, &CniService::del},
        {"cni.check",
         {"network", "container_id", "netns", "ifname", "ips", "mac", "mtu"},
         &CniService::check},
        {"cni.status",
         {"assign_ipv4", "assign_ipv6", "ipv4_pools", "ipv6_pools"},
         &CniService::status},
        {"cni.gc", {"network", "valid"}, &CniService::gc},
    };
    return kOps;
}

const std::vector<std::string> &CniService::ops() {
    static const std::vector<std::string> kOps = [] {
        std::vector<std::string> v;
        for (const auto &op : op_table()) {
            v.push_back(op.name);
        }
        return v;
    }();
    return kOps;
}

bool CniService::handles(const std::string &op) {
    return op.rfind("cni.", 0) == 0;
}

json CniService::call(const std::string &op, const json &args) {
    for (const auto &o : op_table()) {
        if (o.name == op) {
            check_known(args, o.args);
            return (this->*o.fn)(args);
        }
    }
    throw ApiError("unknown_op", "unknown op '" + op + "'");
}

std::string CniService::endpoint_id(const std::string &network, const std::string &container_id,
                                    const std::string &ifname) {
    std::string id = network + "." + container_id + "." + ifname;
    bool ok = !network.empty() && !container_id.empty() && !ifname.empty() && id.size() <= 128;
    for (char c : id) {
        ok = ok && (isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
    }
    if (!ok) {
        bad("network '" + network + "', container '" + container_id + "' and ifname '" + ifname +
            "' do not make an endpoint id: together at most 126 characters of [A-Za-z0-9._-]");
    }
    return id;
}

json CniService::endpoint_or_null(const std::string &id) {
    try {
        return deps_.call("endpoint.get", {{"id", id}});
    } catch (const ApiError &e) {
        if (e.code() == "not_found") {
            return nullptr;
        }
        throw;
    }
}

std::vector<json> CniService::endpoints_of(const std::string &network) {
    std::vector<json> out;
    const json list = deps_.call("endpoint.list", json::object());
    for (const auto &ep : list.at("endpoints")) {
        if (owner_str(ep, "network") == network) {
            out.push_back(ep);
        }
    }
    return out;
}

void CniService::detach(const std::string &ns, const std::string &pod, const std::string &cid) {
    if (pod.empty()) {
        return;
    }
    try {
        ipam_call("pod record", [&] {
            return policy::PolicyRegistry(*store_).detach_pod(ns.empty() ? "default" : ns, pod,
                                                              cid);
        });
    } catch (const policy::PolicyError &) {
        // A malformed record is the writer's to fix; the pod is detached all the same.
    }
}

uint16_t CniService::pod_mtu(const ipam::Assignment &a) {
    int overhead = 0;
    auto pools = ipam_call("", [&] { return alloc_.pools(); });
    auto account = [&](const net::IpAddr &addr) {
        for (const auto &p : pools) {
            if (!p.cidr.contains(addr)) {
                continue;
            }
            bool v4 = addr.family() == net::Family::kIp4;
            if (p.vxlan_mode != ipam::EncapMode::kNever) {
                overhead = std::max(overhead, v4 ? kVxlan4Overhead : kVxlan6Overhead);
            }
            if (v4 && p.ipip_mode != ipam::EncapMode::kNever) {
                overhead = std::max(overhead, kIpipOverhead);
            }
        }
    };
    for (const auto &x : a.v4) {
        account(x);
    }
    for (const auto &x : a.v6) {
        account(x);
    }
    return static_cast<uint16_t>(std::max(576, node_mtu_ - overhead));
}

json CniService::add(const json &args) {
    const auto [network, cid, ifname, netns, id, handle] = attachment_of(args);
    const json &k8s = get_object(args, "k8s");
    const json &vhost = get_object(args, "vhost_user");
    const bool vhost_user = args.contains("vhost_user") && !args["vhost_user"].is_null();
    if (!vhost_user && netns.empty()) {
        bad("missing field 'netns': a kernel pod needs its network namespace");
    }

    // A repeated ADD of a live attachment in the same namespace returns it (a runtime retrying
    // after a lost reply); anything else of the same id is a different attachment.
    if (json ep = endpoint_or_null(id); !ep.is_null()) {
        if (ep.value("netns", json()) == (netns.empty() ? json() : json(netns))) {
            return {{"endpoint", ep}, {"handle", handle}, {"mtu", ep["mtu"]}, {"existing", true}};
        }
        throw ApiError("already_exists", "endpoint '" + id + "' exists in another netns");
    }
    for (const auto &ep : endpoints_of(network)) {
        if (owner_str(ep, "handle") == handle) {
            throw ApiError("already_exists", "container " + cid + " is already attached to " +
                                                 network + " as " + owner_str(ep, "ifname") +
                                                 "; one interface per network and container");
        }
    }

    ipam::AssignRequest req;
    req.handle = handle;
    req.node = node_;
    req.attrs.ns = get_str(k8s, "namespace", false);
    req.attrs.pod = get_str(k8s, "pod", false);
    req.attrs.node = node_;
    req.attrs.container_id = cid;
    req.pools4 = get_strings(args, "ipv4_pools");
    req.pools6 = get_strings(args, "ipv6_pools");
    for (const auto &s : get_strings(args, "ips")) {
        auto slash = s.find('/');
        auto a = net::IpAddr::parse(s.substr(0, slash));
        if (!a) {
            bad("ips: '" + s + "' is not an IP address");
        }
        req.fixed.push_back(*a);
    }
    req.num4 = get_bool(args, "assign_ipv4", true) ? 1 : 0;
    req.num6 = get_bool(args, "assign_ipv6", false) ? 1 : 0;
    // A Kubernetes pod: its record's annotations (and its namespace's) choose its addresses,
    // as Calico's plugin reads them from the API server.
    const std::string pod_ns = req.attrs.ns.empty() ? "default" : req.attrs.ns;
    const bool k8s_pod = !req.attrs.pod.empty();
    if (k8s_pod) {
        policy::PodNetworkRequest pn;
        try {
            pn = ipam_call("pod record", [&] {
                policy::PolicyRegistry reg(*store_);
                const auto pod = reg.get_pod(pod_ns, req.attrs.pod);
                const auto ns = reg.get_namespace(pod_ns);
                return policy::pod_network_request(pod ? &*pod : nullptr, ns ? &*ns : nullptr);
            });
        } catch (const policy::PolicyError &e) {
            bad(e.what());
        }
        if (pn.pools4) {
            req.pools4 = *pn.pools4;
        }
        if (pn.pools6) {
            req.pools6 = *pn.pools6;
        }
        if (pn.assign4) {
            req.num4 = *pn.assign4 ? 1 : 0;
            req.num6 = *pn.assign6 ? 1 : 0;
        }
        if (!pn.ip_addrs.empty()) {
            if (!req.fixed.empty()) {
                bad("the pod's annotation " + std::string(policy::kIpAddrsAnnotation) +
                    " and the runtime's IP argument both ask for addresses");
            }
            req.fixed = pn.ip_addrs;
        }
    }
    if (req.fixed.empty() && req.num4 == 0 && req.num6 == 0) {
        bad("assign_ipv4 and assign_ipv6 are both false: nothing to assign");
    }
    if (req.fixed.size() > 2 ||
        std::count_if(req.fixed.begin(), req.fixed.end(),
                      [](const net::IpAddr &a) { return a.family() == net::Family::kIp4; }) > 1 ||
        std::count_if(req.fixed.begin(), req.fixed.end(),
                      [](const net::IpAddr &a) { return a.family() == net::Family::kIp6; }) > 1) {
        bad("ips: at most one IPv4 and one IPv6 address per pod");
    }

    // What a crashed or failed earlier ADD left under this handle goes first: the handle is the
    // container's, and no endpoint of it exists (checked above).
    ipam_call("release of a stale allocation",
              [&, &handle = handle] { return alloc_.release_handle(handle); });
    ipam::Assignment a = ipam_call("", [&] { return alloc_.assign(req); });
    try {
        json ea{{"id", id}, {"ifname", ifname}};
        if (!netns.empty()) {
            ea["netns"] = netns;
        }
        if (!a.v4.empty()) {
            ea["ipv4"] = a.v4[0].str();
        }
        if (!a.v6.empty()) {
            ea["ipv6"] = a.v6[0].str();
        }
        auto mtu = args.find("mtu");
        ea["mtu"] = mtu != args.end() && !mtu->is_null() ? *mtu : json(pod_mtu(a));
        if (auto mac = get_str(args, "mac", false); !mac.empty()) {
            ea["mac"] = mac;
        }
        if (vhost_user) {
            check_known(vhost, {"client", "socket_dir", "queues"});
            ea["kind"] = "vhost-user";
            ea["vhost_mode"] = get_bool(vhost, "client", false) ? "client" : "server";
            if (auto q = vhost.find("queues"); q != vhost.end() && !q->is_null()) {
                ea["vhost_queues"] = *q;  // checked by the port kind
            }
            std::string dir = get_str(vhost, "socket_dir", false, run_dir_);
            // A socket path must fit sun_path (108 bytes) and a container id alone is 64
            // characters: the short id (12, as docker shows it) and a hash of the whole
            // endpoint id, unique per attachment.
            const uint64_t h = fnv1a(id);
            char tail[40];
            snprintf(tail, sizeof tail, "-%016llx.sock", static_cast<unsigned long long>(h));
            ea["vhost_socket"] = dir + "/" + cid.substr(0, 12) + tail;
            if (!ea.contains("mac")) {
                // A vhost-user pod brings its own MAC; without one, a stable one from the id.
                char buf[18];
                snprintf(buf, sizeof buf, "02:fd:%02x:%02x:%02x:%02x",
                         static_cast<unsigned>(h >> 24) & 255, static_cast<unsigned>(h >> 16) & 255,
                         static_cast<unsigned>(h >> 8) & 255, static_cast<unsigned>(h) & 255);
                ea["mac"] = buf;
            }
        }
        ea["owner"] = {{"network", network}, {"container_id", cid},       {"ifname", ifname},
                       {"handle", handle},   {"namespace", req.attrs.ns}, {"pod", req.attrs.pod}};
        json ep = deps_.call("endpoint.add", ea);
        if (k8s_pod) {
            std::vector<net::IpAddr> ips = a.v4;
            ips.insert(ips.end(), a.v6.begin(), a.v6.end());
            try {
                ipam_call("pod record", [&, &cid = cid] {
                    return policy::PolicyRegistry(*store_).attach_pod(pod_ns, req.attrs.pod, node_,
                                                                      ips, cid);
                });
            } catch (const ApiError &) {
                deps_.call("endpoint.del", {{"id", id}});
                throw;
            } catch (const policy::PolicyError &e) {
                deps_.call("endpoint.del", {{"id", id}});
                throw ApiError("invalid_argument", e.what());
            }
        }
        return {{"endpoint", ep}, {"handle", handle}, {"mtu", ep["mtu"]}};
    } catch (const ApiError &e) {
        std::string undo;
        try {
            alloc_.release_handle(handle);
        } catch (const std::exception &x) {
            undo = "; the addresses stay held by handle " + handle +
                   " until DEL or GC (release failed: " + x.what() + ")";
        }
        throw ApiError(e.code(), e.what() + undo);
    }
}

json CniService::del(const json &args) {
    const auto [network, cid, ifname, netns, id, handle] = attachment_of(args);
    // The pod: the runtime's arguments, else the endpoint's owner (a DEL without them).
    const json &k8s = get_object(args, "k8s");
    std::string pod_ns = get_str(k8s, "namespace", false);
    std::string pod = get_str(k8s, "pod", false);
    bool removed = false;
    try {
        const json ep = deps_.call("endpoint.del", {{"id", id}});
        if (pod.empty()) {
            pod_ns = owner_str(ep, "namespace");
            pod = owner_str(ep, "pod");
        }
        removed = true;
    } catch (const ApiError &e) {
        if (e.code() != "not_found") {
            throw;
        }
    }
    detach(pod_ns, pod, cid);
    int released = 0;
    bool shared = false;
    for (const auto &ep : endpoints_of(network)) {
        shared = shared || owner_str(ep, "handle") == handle;
    }
    if (!shared) {
        released =
            ipam_call("release", [&, &handle = handle] { return alloc_.release_handle(handle); });
    }
    return {{"endpoint_removed", removed}, {"released", released}};
}

json CniService::check(const json &args) {
    const auto [network, cid, ifname, netns, id, handle] = attachment_of(args);
    // What IPAM holds for the handle and what the endpoint has, both "a/len" and sorted.
    std::vector<std::string> held;
    for (const auto &a :
         ipam_call("", [&, &handle = handle] { return alloc_.addresses(handle); })) {
        held.push_back(a.str() + (a.family() == net::Family::kIp4 ? "/32" : "/128"));
    }
    std::sort(held.begin(), held.end());
    json ep = endpoint_or_null(id);
    if (ep.is_null()) {
        // Without an endpoint the handle may still hold addresses (the endpoint was lost, e.g.
        // by a daemon restart): the attachment exists and differs. "Unknown container" would
        // tell the runtime no DEL is needed, and the addresses would leak.
        if (held.empty()) {
            throw ApiError("not_found", "no endpoint for container " + cid + " interface " +
                                            ifname + " in network " + network + " on node " +
                                            node_);
        }
        return {{"differences",
                 json::array({"no endpoint " + id + " in the dataplane of node " + node_ +
                              ", but IPAM handle " + handle + " holds " + addr_list(held)})},
                {"endpoint", nullptr}};
    }
    std::vector<std::string> diff;
    std::vector<std::string> have;
    if (ep["ipv4"].is_string()) {
        have.push_back(ep["ipv4"].get<std::string>() + "/32");
    }
    if (ep["ipv6"].is_string()) {
        have.push_back(ep["ipv6"].get<std::string>() + "/128");
    }
    std::sort(have.begin(), have.end());
    if (!netns.empty() && ep.value("netns", json()) != json(netns)) {
        diff.push_back("endpoint netns is " + ep.value("netns", json()).dump() + ", expected " +
                       netns);
    }
    if (args.contains("ips")) {
        auto want = get_strings(args, "ips");
        std::sort(want.begin(), want.end());
        if (want != have) {
            diff.push_back("endpoint addresses are " + addr_list(have) +
                           ", the previous result has " + addr_list(want));
        }
    }
    if (auto mac = get_str(args, "mac", false); !mac.empty() && mac != ep["mac"]) {
        diff.push_back("endpoint MAC is " + ep["mac"].get<std::string>() +
                       ", the previous result has " + mac);
    }
    if (auto mtu = args.find("mtu"); mtu != args.end() && !mtu->is_null() && *mtu != ep["mtu"]) {
        diff.push_back("endpoint MTU is " + ep["mtu"].dump() + ", the previous result has " +
                       mtu->dump());
    }
    if (held != have) {
        diff.push_back("IPAM handle " + handle + " holds " + addr_list(held) +
                       ", the endpoint has " + addr_list(have));
    }
    if (ep.value("pod_interface", false) && deps_.inspect) {
        // The pod's MTU is the previous result's to state: a plugin chained after this one
        // (tuning) may change it, and a result without one (tuning's at 1.0.0) leaves it
        // unchecked.
        json want = ep;
        auto mtu = args.find("mtu");
        want["mtu"] = mtu != args.end() ? *mtu : json();
        for (auto &d : deps_.inspect(want)) {
            diff.push_back(std::move(d));
        }
    }
    return {{"differences", diff}, {"endpoint", ep}};
}

json CniService::status(const json &args) {
    const bool want4 = get_bool(args, "assign_ipv4", true);
    const bool want6 = get_bool(args, "assign_ipv6", false);
    const auto names4 = get_strings(args, "ipv4_pools");
    const auto names6 = get_strings(args, "ipv6_pools");
    std::vector<ipam::PoolUsage> usage;
    try {
        usage = ipam_call("", [&] { return alloc_.pool_usage(); });
    } catch (const ApiError &e) {
        return {{"ready", false}, {"reason", e.what()}, {"pools", json::array()}};
    }
    json pools = json::array();
    bool ok4 = false;
    bool ok6 = false;
    for (const auto &u : usage) {
        const auto &p = u.pool;
        bool v4 = p.cidr.is_v4();
        const auto &names = v4 ? names4 : names6;
        bool named = names.empty() ||
                     std::find(names.begin(), names.end(), p.name) != names.end() ||
                     std::find(names.begin(), names.end(), p.cidr.str()) != names.end();
        // Free addresses: the pool's size less what is used (saturated for huge IPv6 pools).
        uint64_t size = p.cidr.size();
        bool has_free = u.used < size;
        // The node's labels are not configured yet: a pool serves this node when its selector
        // matches no labels, exactly what assign() checks.
        bool selected = false;
        try {
            selected = label::Selector::parse(p.node_selector).matches(label::Labels{});
        } catch (const std::exception &) {
        }
        bool usable =
            named && selected && !p.disabled && p.allows(ipam::AllowedUse::kWorkload) && has_free;
        (v4 ? ok4 : ok6) |= usable;
        pools.push_back({{"name", p.name},
                         {"cidr", p.cidr.str()},
                         {"used", u.used},
                         {"disabled", p.disabled},
                         {"usable", usable}});
    }
    std::string reason;
    if (want4 && !ok4) {
        reason = "no enabled IPv4 pool for workloads with a free address";
    }
    if (want6 && !ok6) {
        reason += std::string(reason.empty() ? "" : "; ") +
                  "no enabled IPv6 pool for workloads with a free address";
    }
    return {{"ready", reason.empty()}, {"reason", reason}, {"pools", pools}};
}

json CniService::gc(const json &args) {
    const std::string network = get_str(args, "network", true);
    std::set<std::pair<std::string, std::string>> valid;
    std::set<std::string> valid_containers;
    auto it = args.find("valid");
    if (it == args.end() || !it->is_array()) {
        bad("field 'valid' must be a list of {container_id, ifname}");
    }
    for (const auto &v : *it) {
        if (!v.is_object()) {
            bad("field 'valid' must be a list of {container_id, ifname}, got " + v.dump());
        }
        auto cid = get_str(v, "container_id", true);
        valid.insert({cid, get_str(v, "ifname", true)});
        valid_containers.insert(cid);
    }
    int removed = 0;
    for (const auto &ep : endpoints_of(network)) {
        if (!valid.count({owner_str(ep, "container_id"), owner_str(ep, "ifname")})) {
            try {
                deps_.call("endpoint.del", {{"id", ep["id"]}});
                removed++;
            } catch (const ApiError &e) {
                if (e.code() != "not_found") {
                    throw;
                }
            }
            detach(owner_str(ep, "namespace"), owner_str(ep, "pod"), owner_str(ep, "container_id"));
        }
    }
    // Handles of this network held by this node (Calico's handle: "<network>.<container id>").
    const std::string prefix = network + ".";
    std::set<std::string> stale;
    for (const auto &a : ipam_call("", [&] { return alloc_.allocations(); })) {
        const auto &h = a.attrs.handle;
        if (a.attrs.node == node_ && h.rfind(prefix, 0) == 0 &&
            !valid_containers.count(h.substr(prefix.size()))) {
            stale.insert(h);
        }
    }
    int released = 0;
    for (const auto &h : stale) {
        ipam_call("release", [&] { return alloc_.release_handle(h); });
        released++;
    }
    return {{"endpoints_removed", removed}, {"handles_released", released}};
}

json CniService::reconcile(const json &args) {
    std::set<std::string> keep;
    for (const auto &h : get_strings(args, "keep")) {
        keep.insert(h);
    }
    int pods = 0;
    std::set<std::string> released;
    auto it = args.find("release");
    if (it != args.end() && it->is_array()) {
        for (const auto &owner : *it) {
            json ep{{"owner", owner}};
            const std::string handle = owner_str(ep, "handle");
            detach(owner_str(ep, "namespace"), owner_str(ep, "pod"), owner_str(ep, "container_id"));
            if (handle.empty()) {
                continue;  // not a CNI pod: it held no addresses
            }
            if (!keep.count(handle)) {
                ipam_call("release", [&] { return alloc_.release_handle(handle); });
                released.insert(handle);
            }
            pods++;
        }
    }
    if (get_bool(args, "sweep", false)) {
        // CNI's handles: "<network>.<container id>" with that container id in the attributes.
        std::set<std::string> stale;
        for (const auto &a : ipam_call("", [&] { return alloc_.allocations(); })) {
            const auto &h = a.attrs.handle;
            const auto &cid = a.attrs.container_id;
            if (a.attrs.node == node_ && !cid.empty() && h.size() > cid.size() + 1 &&
                h.compare(h.size() - cid.size() - 1, std::string::npos, "." + cid) == 0 &&
                !keep.count(h) && !released.count(h)) {
                stale.insert(h);
            }
        }
        for (const auto &h : stale) {
            ipam_call("release", [&] { return alloc_.release_handle(h); });
            released.insert(h);
        }
    }
    return {{"pods_released", pods}, {"handles_released", released.size()}};
}

}  // namespace fwd::control
