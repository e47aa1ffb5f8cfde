// One node's BIRD 2 configuration from the BGP resources and the node registry, with the
// semantics of Calico's confd templates (bird.cfg.template, bird6.cfg.template,
// bird_ipam.cfg.template) and of confd's peer computation, IPv4 and IPv6 in one file:
//
// - Peers. The node-to-node mesh (nodeToNodeMeshEnabled, default on): every other node with
//   an address of the family, except route reflectors (a node with routeReflectorClusterID
//   keeps out of the mesh and is left out of everyone's). BGPPeers whose node / nodeSelector
//   selects this node (neither: every node): a peerIP with its asNumber, or every node the
//   peerSelector selects (IPv4 and IPv6 where both ends have that family; the remote AS is its
//   asNumber or the cluster's); a peerSelector peering is set up on both ends, so a node the
//   peerSelector selects peers with the nodes the nodeSelector selects. One session per peer
//   address: the mesh first, then BGPPeers by name.
// - A route reflector (this node has a cluster ID) marks every iBGP peer outside its cluster
//   `rr client`. Between two cluster nodes the one with the higher address is passive (Calico's
//   mesh rule; applied to every node-to-node session here, as both ends are generated alike).
// - A session is named by its peer's address (Peer_<address>), whatever asked for it (the mesh
//   or a BGPPeer: said in a comment), so that a peering that moves from the mesh to a BGPPeer
//   keeps its protocol and BIRD does not restart it (Calico names them Mesh_, Node_, Global_).
// - Routes announced: the node's blocks and borrowed /32 /128 (the IPAM sync's include file,
//   protocols fwd_ipam4 / fwd_ipam6), serviceClusterIPs / serviceExternalIPs /
//   serviceLoadBalancerIPs only when the default BGPConfiguration lists them (static
//   blackholes fwd_svc4 / fwd_svc6: BGP only, never the kernel), and BGP-learned routes inside
//   a pool (a reflector reflects them; an external peer gets them, as Calico's filter passes
//   any route inside a pool); prefixAdvertisements' communities added on the way out.
// - Routes learned: into the kernel table (proto bird), where the dataplane's netlink watcher
//   takes them; a default route from a peer is refused (the underlay gives it, as in Calico).
#include <openssl/evp.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "fwd/control/bgp.hpp"

namespace fwd::bgp {

namespace {

using net::Family;

bool is_v4(Family f) {
    return f == Family::kIp4;
}

const std::optional<ipam::IfAddr> &addr_of(const ipam::NodeRecord &n, Family f) {
    return n.address(f);
}

// A BIRD symbol from an address: dots and colons become underscores.
std::string symbol(const net::IpAddr &a) {
    std::string s = a.str();
    std::replace_if(
        s.begin(), s.end(), [](char c) { return c == '.' || c == ':'; }, '_');
    return s;
}

std::string quoted(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    return out + "\"";
}

// Calico's router id when the node has no IPv4 address: an IPv4-shaped hash of its name.
std::string hashed_router_id(const std::string &name) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(name.data(), name.size(), md, &len, EVP_sha1(), nullptr);
    return std::to_string(md[0]) + "." + std::to_string(md[1]) + "." + std::to_string(md[2]) + "." +
           std::to_string(md[3]);
}

struct Candidate {
    Session s;
    std::string cluster_id;  // of the peer node ("" external or not a reflector)
    std::optional<SecretKeyRef> password;
    std::optional<uint32_t> keepalive_s, hold_s, restart_s;
    std::optional<int32_t> allow_local_as;
    bool keep_next_hop = false;
    bool source_node_ip = true;
};

class Generator {
  public:
    Generator(const Cluster &c, const BirdOptions &o) : c_(c), o_(o) {
        for (const auto &n : c.nodes) {
            nodes_.push_back(&n);
            if (n.name == o.node) {
                me_ = &n;
            }
        }
        // By name: the text depends on the store's content only, not on listing order.
        std::sort(
            nodes_.begin(), nodes_.end(),
            [](const ipam::NodeRecord *a, const ipam::NodeRecord *b) { return a->name < b->name; });
        if (me_ == nullptr || (!me_->ipv4 && !me_->ipv6)) {
            throw std::runtime_error("node '" + o.node +
                                     "' has no record with an address in the registry (yet)");
        }
        for (const auto &cfg : c.configs) {
            if (cfg.name == "default") {
                global_ = &cfg;
            } else if (cfg.name == "node." + o.node) {
                mine_ = &cfg;
            }
        }
    }

    BirdConfig run() {
        BirdConfig out;
        out.as_number = as_of(*me_);
        out.router_id = me_->ipv4 ? me_->ipv4->addr.str() : hashed_router_id(me_->name);
        collect();
        std::ostringstream t;
        header(t, out);
        services(t);
        filters(t);
        kernel(t);
        sessions(t, out);
        out.text = t.str();
        out.problems = problems_;
        return out;
    }

  private:
    uint32_t as_of(const ipam::NodeRecord &n) const {
        if (n.as_number) {
            return *n.as_number;
        }
        return global_ && global_->as_number ? *global_->as_number : kDefaultAsNumber;
    }

    uint16_t port_of(const std::string &node) const {
        for (const auto &cfg : c_.configs) {
            if (cfg.name == "node." + node && cfg.listen_port) {
                return *cfg.listen_port;
            }
        }
        return global_ && global_->listen_port ? *global_->listen_port : kDefaultPort;
    }

    bool mesh_on() const { return !global_ || global_->node_to_node_mesh.value_or(true); }

    // Does peer p's node / nodeSelector select node n as a local end?
    static bool selects_local(const BgpPeer &p, const ipam::NodeRecord &n) {
        if (!p.node.empty()) {
            return p.node == n.name;
        }
        return p.node_selector.text.empty() || p.node_selector.sel.matches(n.labels);
    }

    void add(Candidate c) {
        const std::string key = c.s.address.str();
        if (seen_.insert(key).second) {
            candidates_.push_back(std::move(c));
        }
    }

    // Sessions with another cluster node, one per family both ends have.
    void add_node(const ipam::NodeRecord &n, const std::string &source,
                  const std::function<void(Candidate &)> &extra) {
        for (Family f : {Family::kIp4, Family::kIp6}) {
            if (!addr_of(*me_, f) || !addr_of(n, f)) {
                continue;
            }
            Candidate c;
            c.s.family = f;
            c.s.address = addr_of(n, f)->addr;
            c.s.port = port_of(n.name);
            c.s.as_number = as_of(n);
            c.s.peer_node = n.name;
            c.s.source = source;
            c.s.protocol = "Peer_" + symbol(c.s.address);
            c.cluster_id = n.rr_cluster_id;
            extra(c);
            add(std::move(c));
        }
    }

    void collect() {
        if (mesh_on() && me_->rr_cluster_id.empty()) {
            for (const auto *np : nodes_) {
                const auto &n = *np;
                if (n.name == me_->name || !n.rr_cluster_id.empty()) {
                    continue;
                }
                add_node(n, "mesh", [this](Candidate &c) {
                    c.password = global_ ? global_->node_mesh_password : std::nullopt;
                    c.restart_s = global_ ? global_->node_mesh_max_restart_s : std::nullopt;
                });
            }
        }
        std::vector<const BgpPeer *> peers;
        for (const auto &p : c_.peers) {
            peers.push_back(&p);
        }
        std::sort(peers.begin(), peers.end(),
                  [](const BgpPeer *a, const BgpPeer *b) { return a->name < b->name; });
        for (const BgpPeer *p : peers) {
            auto extra = [p](Candidate &c) {
                c.password = p->password;
                c.keepalive_s = p->keepalive_s;
                c.hold_s = p->hold_s;
                c.restart_s = p->max_restart_s;
                c.allow_local_as = p->num_allowed_local_as;
                c.keep_next_hop = p->keep_original_next_hop;
                c.source_node_ip = p->source_node_ip;
            };
            const std::string source = "bgppeer/" + p->name;
            if (!p->peer_selector.text.empty()) {
                const bool local = selects_local(*p, *me_);
                const bool remote = p->peer_selector.sel.matches(me_->labels);
                for (const auto *np : nodes_) {
                    const auto &n = *np;
                    if (n.name == me_->name) {
                        continue;
                    }
                    if ((local && p->peer_selector.sel.matches(n.labels)) ||
                        (remote && selects_local(*p, n))) {
                        add_node(n, source, extra);
                    }
                }
                continue;
            }
            if (!selects_local(*p, *me_)) {
                continue;
            }
            const Family f = p->peer_ip->family();
            if (!addr_of(*me_, f)) {
                problems_.push_back(source + ": peer " + p->peer_ip->str() + " left out: node '" +
                                    me_->name + "' has no " + ipam::family_name(f) + " address");
                continue;
            }
            if (addr_of(*me_, f)->addr == *p->peer_ip) {
                continue;  // ourselves (Calico skips it too)
            }
            Candidate c;
            c.s.family = f;
            c.s.address = *p->peer_ip;
            c.s.port = p->peer_port.value_or(kDefaultPort);
            c.s.as_number = p->as_number;
            c.s.source = source;
            c.s.protocol = "Peer_" + symbol(c.s.address) +
                           (p->peer_port ? "_port_" + std::to_string(*p->peer_port) : "");
            for (const auto *np : nodes_) {
                const auto &n = *np;
                if (addr_of(n, f) && addr_of(n, f)->addr == *p->peer_ip) {
                    c.s.peer_node = n.name;
                    c.cluster_id = n.rr_cluster_id;
                    if (!p->peer_port) {
                        c.s.port = port_of(n.name);
                    }
                }
            }
            extra(c);
            add(std::move(c));
        }
    }

    void header(std::ostringstream &t, const BirdConfig &out) {
        const std::string sev = mine_ && !mine_->log_severity.empty()       ? mine_->log_severity
                                : global_ && !global_->log_severity.empty() ? global_->log_severity
                                                                            : "Info";
        const std::string classes = sev == "Debug" ? "all"
                                    : sev == "Info"
                                        ? "{ info, remote, warning, error, auth, fatal, bug }"
                                    : sev == "Warning" ? "{ warning, error, auth, fatal, bug }"
                                    : sev == "Error"   ? "{ error, auth, fatal, bug }"
                                                       : "{ fatal, bug }";
        debug_ = sev == "Debug" ? "all" : "{ states }";
        t << "# Generated by dpdk-fwd for node " << me_->name
          << " from the BGPConfiguration and BGPPeer resources and the node registry.\n"
          << "# Rewritten whole when they change; do not edit.\n"
          << "log stderr " << classes << ";  # logSeverityScreen " << sev
          << "\n"
          // After a graceful restart (BirdOptions, restarted_sessions) the kernel routes stay
          // until the sessions are back, at most this long.
          << "graceful restart wait 10;\n"
          << "router id " << out.router_id << ";\n\n"
          << "protocol device {\n  scan time 10;\n}\n\n";
        if (!o_.ipam_include.empty()) {
            t << "# The node's blocks and borrowed addresses (protocol static fwd_ipam4 / "
                 "fwd_ipam6), kept by the IPAM sync.\ninclude "
              << quoted(o_.ipam_include) << ";\n\n";
        }
    }

    void services(std::ostringstream &t) {
        std::vector<ipam::Cidr> svc;
        if (global_) {
            for (const auto *l : {&global_->service_cluster_ips, &global_->service_external_ips,
                                  &global_->service_load_balancer_ips}) {
                svc.insert(svc.end(), l->begin(), l->end());
            }
        }
        std::sort(svc.begin(), svc.end());
        svc.erase(std::unique(svc.begin(), svc.end()), svc.end());
        for (Family f : {Family::kIp4, Family::kIp6}) {
            std::vector<ipam::Cidr> mine;
            std::copy_if(svc.begin(), svc.end(), std::back_inserter(mine),
                         [f](const ipam::Cidr &c) { return c.family() == f; });
            if (mine.empty()) {
                continue;
            }
            has_svc_[is_v4(f) ? 0 : 1] = true;
            t << "# Service ranges advertised (serviceClusterIPs / serviceExternalIPs / "
                 "serviceLoadBalancerIPs): to BGP only.\n"
              << "protocol static fwd_svc" << (is_v4(f) ? 4 : 6) << " {\n  "
              << (is_v4(f) ? "ipv4" : "ipv6") << ";\n";
            for (const auto &c : mine) {
                t << "  route " << c.str() << " blackhole;\n";
            }
            t << "}\n\n";
        }
    }

    void filters(std::ostringstream &t) {
        t << "# Communities of prefixAdvertisements, on every route announced.\n"
          << "function fwd_communities() {\n";
        if (global_) {
            for (const auto &pa : global_->prefix_advertisements) {
                t << "  if net ~ " << pa.cidr.str() << " then {\n";
                for (const auto &v : pa.communities) {
                    std::string parts = v;
                    std::replace(parts.begin(), parts.end(), ':', ',');
                    const bool large = std::count(v.begin(), v.end(), ':') == 2;
                    t << "    " << (large ? "bgp_large_community" : "bgp_community") << ".add(("
                      << parts << "));\n";
                }
                t << "  }\n";
            }
        }
        t << "}\n\n";
        for (Family f : {Family::kIp4, Family::kIp6}) {
            const int n = is_v4(f) ? 4 : 6;
            std::vector<std::string> pools;
            for (const auto &p : c_.pools) {
                if (p.family() == f) {
                    pools.push_back(p.str() + "+");
                }
            }
            t << "filter fwd_export" << n << " {\n";
            if (!o_.ipam_include.empty()) {
                t << "  if proto = \"fwd_ipam" << n << "\" then { fwd_communities(); accept; }\n";
            }
            if (has_svc_[is_v4(f) ? 0 : 1]) {
                t << "  if proto = \"fwd_svc" << n << "\" then { fwd_communities(); accept; }\n";
            }
            if (!pools.empty()) {
                t << "  if source = RTS_BGP && net ~ [ ";
                for (size_t i = 0; i < pools.size(); ++i) {
                    t << (i ? ", " : "") << pools[i];
                }
                t << " ] then { fwd_communities(); accept; }\n";
            }
            t << "  reject;\n}\n\n";
            t << "filter fwd_import" << n << " {\n  if net = " << (is_v4(f) ? "0.0.0.0/0" : "::/0")
              << " then reject;  # the underlay gives the default route\n  accept;\n}\n\n";
        }
    }

    void kernel(std::ostringstream &t) {
        for (Family f : {Family::kIp4, Family::kIp6}) {
            if (!addr_of(*me_, f)) {
                continue;
            }
            t << "# Learned routes into kernel table " << o_.kernel_table
              << " (proto bird), where the dataplane's netlink watcher takes them.\n"
              << "protocol kernel fwd_kernel" << (is_v4(f) ? 4 : 6) << " {\n"
              << "  kernel table " << o_.kernel_table
              << ";\n"
              // persist + graceful restart: a BIRD that restarts (bird.graceful_restart)
              // leaves the learned routes in the kernel and resyncs only once its sessions
              // are back, so the dataplane never loses them (Calico's kernel protocol too).
              << "  learn off;\n  persist;\n  merge paths on;\n  graceful restart on;\n"
              << "  " << (is_v4(f) ? "ipv4" : "ipv6")
              << " { import none; export where source = RTS_BGP; };\n}\n\n";
        }
    }

    std::optional<std::string> password(const Candidate &c) {
        if (!c.password) {
            return std::string();
        }
        const std::string key = std::string(kSecretNamespace) + "/" + c.password->name;
        auto it = c_.secrets.find(key);
        if (it == c_.secrets.end() || !it->second.data.contains(c.password->key)) {
            problems_.push_back(c.s.source + ": session " + c.s.protocol +
                                " left out: its password's secret " + key + " (key '" +
                                c.password->key + "') is not in the store");
            return std::nullopt;
        }
        const std::string &pw = it->second.data.at(c.password->key);
        // BIRD's strings have no escapes: a quote, backslash or line break cannot be written.
        if (pw.empty() || pw.find_first_of("\"\\\n\r") != std::string::npos) {
            problems_.push_back(c.s.source + ": session " + c.s.protocol +
                                " left out: the password in " + key + " (key '" + c.password->key +
                                "') is empty or holds a quote, backslash or line break, which "
                                "BIRD cannot take");
            return std::nullopt;
        }
        return pw;
    }

    void sessions(std::ostringstream &t, BirdConfig &out) {
        const uint32_t my_as = as_of(*me_);
        const std::string &my_cluster = me_->rr_cluster_id;
        t << "template bgp fwd_peer {\n"
          << "  debug " << debug_ << ";\n"
          << "  connect delay time " << o_.connect_delay_s << ";\n"
          << "  connect retry time " << o_.connect_retry_s << ";\n"
          << "  error wait time " << o_.error_wait_min_s << ", " << o_.error_wait_max_s << ";\n"
          << "  graceful restart on;\n}\n\n";
        if (!mesh_on()) {
            t << "# Node-to-node mesh disabled.\n\n";
        } else if (!my_cluster.empty()) {
            t << "# This node is a route reflector (cluster ID " << my_cluster
              << "): out of the node-to-node mesh.\n\n";
        }
        for (auto &c : candidates_) {
            const auto pw = password(c);
            if (!pw) {
                continue;
            }
            const auto &mine = *addr_of(*me_, c.s.family);
            const bool ibgp = c.s.as_number == my_as;
            c.s.rr_client = ibgp && !my_cluster.empty() && c.cluster_id != my_cluster;
            c.s.passive = !c.s.peer_node.empty() && c.s.address > mine.addr;
            const uint16_t my_port = port_of(me_->name);
            const int n = is_v4(c.s.family) ? 4 : 6;
            t << "# " << c.s.source << (c.s.peer_node.empty() ? "" : ", node " + c.s.peer_node)
              << "\nprotocol bgp " << c.s.protocol << " from fwd_peer {\n"
              << "  local" << (c.source_node_ip ? " " + mine.addr.str() : "")
              << (my_port != kDefaultPort ? " port " + std::to_string(my_port) : "") << " as "
              << my_as << ";\n"
              << "  neighbor " << c.s.address.str()
              << (c.s.port != kDefaultPort ? " port " + std::to_string(c.s.port) : "") << " as "
              << c.s.as_number << ";\n"
              << (mine.contains(c.s.address) ? "  direct;\n" : "  multihop;\n");
            if (c.s.passive) {
                t << "  passive on;  # the higher address waits: one connection per pair\n";
            }
            if (c.s.rr_client) {
                t << "  rr client;\n  rr cluster id " << my_cluster << ";\n";
            }
            if (!pw->empty()) {
                t << "  password " << quoted(*pw) << ";\n";
            }
            if (c.hold_s) {
                t << "  hold time " << *c.hold_s << ";\n";
            }
            if (c.keepalive_s) {
                t << "  keepalive time " << *c.keepalive_s << ";\n";
            }
            t << "  graceful restart time " << c.restart_s.value_or(o_.graceful_restart_s) << ";\n";
            if (c.allow_local_as) {
                t << "  allow local as " << *c.allow_local_as << ";\n";
            }
            t << "  ipv" << n << " {\n    import filter fwd_import" << n
              << ";\n    export filter fwd_export" << n << ";\n";
            if (!ibgp && c.keep_next_hop) {
                t << "    next hop keep;\n";
            }
            t << "  };\n}\n\n";
            out.sessions.push_back(c.s);
        }
    }

    const Cluster &c_;
    const BirdOptions &o_;
    std::vector<const ipam::NodeRecord *> nodes_;  // by name
    const ipam::NodeRecord *me_ = nullptr;
    const BgpConfiguration *global_ = nullptr;
    const BgpConfiguration *mine_ = nullptr;
    std::vector<Candidate> candidates_;
    std::set<std::string> seen_;
    std::vector<std::string> problems_;
    std::string debug_;
    bool has_svc_[2] = {false, false};
};

}  // namespace

std::vector<std::string> restarted_sessions(const std::string &old_text,
                                            const std::string &new_text) {
    // "protocol bgp NAME from fwd_peer {" up to the line "}", and the template.
    auto blocks = [](const std::string &text) {
        std::map<std::string, std::string> out;
        std::istringstream in(text);
        std::string line, name, body;
        while (std::getline(in, line)) {
            if (name.empty()) {
                std::istringstream w(line);
                std::string a, b, n;
                w >> a >> b >> n;
                if (a == "protocol" && b == "bgp") {
                    name = n;
                } else if (a == "template" && b == "bgp") {
                    name = "template " + n;
                }
                body.clear();
            }
            if (!name.empty()) {
                body += line + "\n";
                if (line == "}") {
                    out[name] = body;
                    name.clear();
                }
            }
        }
        return out;
    };
    const auto before = blocks(old_text), after = blocks(new_text);
    const bool template_changed = before.find("template fwd_peer") == before.end() ||
                                  after.find("template fwd_peer") == after.end() ||
                                  before.at("template fwd_peer") != after.at("template fwd_peer");
    std::vector<std::string> out;
    for (const auto &[name, body] : after) {
        auto it = before.find(name);
        if (name.starts_with("template ") || it == before.end()) {
            continue;
        }
        if (template_changed || it->second != body) {
            out.push_back(name);
        }
    }
    return out;
}

BirdConfig generate_bird_config(const Cluster &c, const BirdOptions &o) {
    return Generator(c, o).run();
}

}  // namespace fwd::bgp
