// Overlay routes from block affinities, borrowed addresses, pools and node records; see the
// header for the rules.
#include "fwd/ipam/overlay_routes.hpp"

#include <algorithm>
#include <set>

namespace fwd::ipam {

namespace {

// A prefix of another node, before its pool and the node records are looked at.
struct Candidate {
    Cidr prefix;
    std::string node;
    bool in_local_block = false;
};

class Computation {
  public:
    Computation(const std::string &self, const std::vector<NodeRecord> &nodes,
                const std::vector<IpPool> &pools)
        : self_(self), pools_(pools) {
        for (const NodeRecord &n : nodes) {
            by_name_[n.name] = &n;
        }
    }

    std::optional<OverlayRoute> route(const Candidate &c) {
        const std::string what = c.prefix.str() + " of node '" + c.node + "': ";
        const IpPool *q = pool_of(c.prefix);
        if (q == nullptr) {
            problem(what + "in no IP pool: no route");
            return std::nullopt;
        }
        const net::Family f = c.prefix.family();
        OverlayRoute r{c.prefix, OverlayRoute::Via::kVxlan, c.node, {}, {}, c.in_local_block};
        EncapMode mode = q->vxlan_mode;
        if (mode == EncapMode::kNever && f == net::Family::kIp4) {
            r.via = OverlayRoute::Via::kIpip;
            mode = q->ipip_mode;
        }
        if (mode == EncapMode::kNever) {
            return std::nullopt;  // a BGP pool: BGP carries its routes
        }
        const std::string field =
            f == net::Family::kIp4 ? "spec.bgp.ipv4Address" : "spec.bgp.ipv6Address";
        const NodeRecord *peer = find(c.node);
        if (peer == nullptr) {
            problem(what + "the node is not in the node registry: no route");
            return std::nullopt;
        }
        if (!peer->address(f)) {
            problem(what + "the node has no " + family_name(f) + " address (" + field +
                    "): no route");
            return std::nullopt;
        }
        const NodeRecord *me = find(self_);
        if (me == nullptr || !me->address(f)) {
            problem(what + "this node ('" + self_ + "') has no " + family_name(f) + " address (" +
                    field + "): no route");
            return std::nullopt;
        }
        r.next_hop = peer->address(f)->addr;
        if (mode == EncapMode::kCrossSubnet && me->address(f)->contains(r.next_hop)) {
            r.via = OverlayRoute::Via::kNative;
        }
        if (r.via == OverlayRoute::Via::kVxlan) {
            r.vtep_mac = peer->vtep_mac(f);
        }
        return r;
    }

    void problem(std::string line) { problems_.insert(std::move(line)); }
    const std::set<std::string> &problems() const { return problems_; }

  private:
    const NodeRecord *find(const std::string &name) const {
        auto it = by_name_.find(name);
        return it == by_name_.end() ? nullptr : it->second;
    }
    // Pools never overlap, so at most one holds the prefix.
    const IpPool *pool_of(const Cidr &prefix) const {
        auto it = std::find_if(pools_.begin(), pools_.end(),
                               [&](const IpPool &p) { return p.cidr.contains(prefix); });
        return it == pools_.end() ? nullptr : &*it;
    }

    const std::string &self_;
    const std::vector<IpPool> &pools_;
    std::map<std::string, const NodeRecord *> by_name_;
    std::set<std::string> problems_;
};

}  // namespace

std::string_view to_string(OverlayRoute::Via v) {
    switch (v) {
        case OverlayRoute::Via::kVxlan:
            return "vxlan";
        case OverlayRoute::Via::kIpip:
            return "ipip";
        case OverlayRoute::Via::kNative:
            break;
    }
    return "native";
}

std::string str(const OverlayRoute &r) {
    std::string s = r.prefix.str() + " via " + std::string(to_string(r.via)) + " to " + r.node +
                    " (" + r.next_hop.str();
    if (r.vtep_mac) {
        s += ", VTEP " + r.vtep_mac->str();
    }
    return s + (r.in_local_block ? ", borrowed from a local block)" : ")");
}

std::vector<OverlayRoute> compute_overlay_routes(const std::string &self,
                                                 const std::vector<NodeRecord> &nodes,
                                                 const std::vector<IpPool> &pools,
                                                 const ClusterRoutes &cr,
                                                 std::vector<std::string> *problems) {
    const auto own = cr.find(self);
    const std::vector<Cidr> no_blocks;
    const std::vector<Cidr> &own_blocks = own == cr.end() ? no_blocks : own->second.blocks;
    std::vector<Candidate> candidates;
    for (const auto &[node, routes] : cr) {
        if (node == self) {
            continue;  // our blocks and borrowed addresses are local
        }
        for (const Cidr &b : routes.blocks) {
            candidates.push_back({b, node, false});
        }
        for (const net::IpAddr &a : routes.borrowed) {
            const bool ours = std::any_of(own_blocks.begin(), own_blocks.end(),
                                          [&](const Cidr &b) { return b.contains(a); });
            candidates.push_back(
                {Cidr::containing(a, a.family() == net::Family::kIp4 ? 32 : 128), node, ours});
        }
    }
    std::sort(candidates.begin(), candidates.end(), [](const Candidate &a, const Candidate &b) {
        return std::tie(a.prefix, a.node) < std::tie(b.prefix, b.node);
    });
    Computation c(self, nodes, pools);
    std::vector<OverlayRoute> out;
    for (size_t i = 0; i < candidates.size();) {
        // A prefix two nodes claim is ambiguous: neither gets a route.
        size_t j = i + 1;
        std::string holders = "'" + candidates[i].node + "'";
        for (; j < candidates.size() && candidates[j].prefix == candidates[i].prefix; ++j) {
            holders += ", '" + candidates[j].node + "'";
        }
        if (j - i > 1) {
            c.problem(candidates[i].prefix.str() + " is held by nodes " + holders + ": no route");
        } else if (auto r = c.route(candidates[i])) {
            out.push_back(std::move(*r));
        }
        i = j;
    }
    if (problems != nullptr) {
        problems->insert(problems->end(), c.problems().begin(), c.problems().end());
    }
    return out;
}

}  // namespace fwd::ipam
