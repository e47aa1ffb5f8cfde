// antispoof4 / antispoof6 (Hook::kIp4Input / kIp6Input, before nat4 /
// nat6) and antispoof4_local / antispoof6_local (Hook::kIp4Local /
// kIp6Local, before nat4_local / nat6_local), policy4 / policy6 (Hook::kIp4Output / kIp6Output,
// before vxlan_encap4 / vxlan_encap6 and ipip_encap) and policy4_local / policy6_local
// (Hook::kIp4Local / kIp6Local, after nat4_local / nat6_local): Calico's policy enforcement
// (policy.hpp, CALICO.md "Policy"). Nothing is done while no PolicyState is published.
//
// antispoof4 / antispoof6, packets to be routed:
// Reads: meta.in_port, the published PortPolicy of the port, the source
//        address.
// Drops: spoofed_source: a packet from an endpoint's port (kPortEndpoint)
//        whose source is in none of the endpoint's allowed prefixes (its
//        own addresses and allowedSourcePrefixes), before NAT sees it (on
//        the local hooks NAT may send it on: a NodePort of this node). The
//        local ones leave the unspecified and link-local IPv6 sources of
//        ND and DAD.
// Sets:  meta.src_cls of the others from an endpoint's port: the class of
//        the endpoint whose source matched (PolicyState::src4_cls /
//        src6_cls; a port several pods share tells the sender so); the
//        port's class for an exempt ND / DAD source.
//
// policy4 / policy6, routed packets (meta.nh set, after NAT), as Calico's
// filter sees them (after DNAT, before SNAT):
// Reads: meta (in_port, nh, l3_off, l4_off, l4_proto, flags, flow,
//        flow_dir); the PolicyState once per burst; the source endpoint's
//        class (meta.src_cls, which antispoof set from the matching source)
//        and the destination endpoint's
//        (nh_class of meta.nh: a local pod next hop); the flow of NAT
//        (meta.flow) or the shared connection table.
// Skips: a packet the dataplane built (kMetaLocalOrigin: ICMP errors); a
//        packet neither of whose ends has any policy (either direction),
//        unless NAT tracked it: not looked up, not tracked. Where an end
//        has policy the connection is tracked even when no policy checks
//        this packet's direction (an endpoint with ingress policy only
//        must know the replies of what it opens).
// Checks: a packet of a flow stamped with the state's generation
//        (Flow::policy_gen, ct::kPolicyChecked) passes: replies, and ICMP
//        errors about the flow (related); a burst whose every packet is
//        such (established NAT flows) passes after one loop over the
//        stamps (all_stamped). Otherwise the flow's original
//        tuple (tuple[kOrig]'s source, tuple[kReply]'s source as the
//        destination: pre-SNAT source, post-DNAT destination) is classified
//        with the classes of its original direction: egress of the
//        source's class, then ingress of the destination's (Felix's order:
//        the sender's policy first); both must allow. Classification is
//        one PolicyRules::classify per direction for the whole burst.
// Sets:  a new allowed flow (no NAT flow) is created with the stamp; a flow
//        re-checked and allowed gets the current stamp; a flow denied now
//        is ended (ConnTable::end): a policy change takes effect on live
//        flows, denied ones end. Per-rule packet and byte counts of the
//        worker (PolicyState::counts), the deciding rule's and the Log
//        rule's; a LogRecord for a Log rule that matched (the ring to the
//        control thread; a full ring counts log_lost).
// Drops: policy_deny_egress / policy_default_deny_egress (the sender's),
//        policy_deny_ingress / policy_default_deny_ingress (the
//        receiver's); policy_fragment (a later fragment where a policy
//        checks its direction: no reassembly, no ports to match);
//        policy_icmp_error_no_flow (an ICMP error where policy applies
//        quoting no flow: Felix drops conntrack's INVALID); the tracker's refusals (ct_*:
//        ct_table_full, ct_index_full, TCP states, ...).
// Next:  the same burst (vxlan_encap, l2_rewrite).
//
// policy4_local / policy6_local, a pod's packets to the node itself (what
// nat*_local left: not a NodePort, not a NATed flow's reply):
// Reads: as policy4 / policy6, the source endpoint only.
// Passes: packets not from an endpoint's port; IPv6 ND and MLD (ICMPv6 130,
//        131, 132, 133, 135, 136), before any policy, as Felix does.
// Checks: (antispoof*_local ran before) the pod's egress policy, packet
//        by packet (no flow:
//        the node's answers never come through these stages, so every packet
//        here is in its connection's original direction and the verdict of
//        each is that of its connection); then defaultEndpointToHostAction.
// Drops: policy_deny_egress, policy_default_deny_egress,
//        endpoint_to_host_drop (HostAction::kDrop). Failsafe ports do not
//        open this path (Felix: they are host endpoint rules).
// Next:  the same burst (icmp*_local).
#include <rte_cycles.h>
#include <rte_ip.h>

#include "fwd/dp/acl.hpp"
#include "fwd/dp/pkt.hpp"
#include "fwd/dp/policy.hpp"
#include "fwd/dp/stages.hpp"
#include "fwd/dp/worker.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::dp::policy {

namespace {

using ct::Dir;
using ct::FlowKey;
using ct::Made;
using ct::Result;
using fwd::policy::ClassId;
using fwd::policy::CompiledVerdict;
using fwd::policy::Direction;

constexpr DropReason kPass = DropReason::kCount;

PolicyWorker *worker_of(Worker &w) {
    return static_cast<PolicyWorker *>(w.slot(worker_slot()));
}

const PortPolicy *port_of(const PolicyState &st, uint16_t port) {
    return port < st.ports.size() ? &st.ports[port] : nullptr;
}

// The index in st.src4 / src6 of the endpoint's allowed source that src is
// in; -1: none (spoofed).
int64_t source_index4(const PolicyState &st, const PortPolicy &pp, uint32_t src_be) {
    for (uint32_t i = pp.src4_off, e = pp.src4_off + pp.src4_n; i < e && i < st.src4.size(); i++) {
        if ((src_be & st.src4[i].mask_be) == st.src4[i].net_be) {
            return i;
        }
    }
    return -1;
}
int64_t source_index6(const PolicyState &st, const PortPolicy &pp, const uint8_t *src) {
    uint64_t a[2];
    std::memcpy(a, src, 16);
    for (uint32_t i = pp.src6_off, e = pp.src6_off + pp.src6_n; i < e && i < st.src6.size(); i++) {
        const Src6 &p = st.src6[i];
        if ((a[0] & p.mask[0]) == p.net[0] && (a[1] & p.mask[1]) == p.net[1]) {
            return i;
        }
    }
    return -1;
}

// Whether the packet's source is none of the endpoint's; else *cls is the
// sending endpoint's class (the matching source's, on a shared port).
template <bool kV6>
bool spoofed(const PolicyState &st, const PortPolicy &pp, rte_mbuf *m, uint16_t *cls) {
    const uint32_t l3 = meta(m).l3_off;
    int64_t i;
    const std::vector<uint16_t> *of;
    if constexpr (kV6) {
        i = source_index6(st, pp, at<rte_ipv6_hdr>(m, l3)->src_addr);
        of = &st.src6_cls;
    } else {
        i = source_index4(st, pp, at<rte_ipv4_hdr>(m, l3)->src_addr);
        of = &st.src4_cls;
    }
    *cls = i >= 0 && static_cast<size_t>(i) < of->size() ? (*of)[i] : pp.cls;
    return i < 0;
}

// The IPv6 sources of ND and DAD (unspecified, link-local): not a pod's
// address, never routed; anti-spoofing leaves them.
bool local_only_source6(const uint8_t *s) {
    static const uint8_t kZero[16] = {};
    return is_link_local6(s) || std::memcmp(s, kZero, 16) == 0;
}

// kLocal: the local hooks, where ND and DAD come from sources no pod owns
// (local_only_source6); before nat*_local, which may send a packet on
// (a NodePort on this node) that no later anti-spoofing would see.
template <bool kV6, bool kLocal>
void antispoof(Worker &w, Burst &b) {
    PolicyWorker *pw = worker_of(w);
    const PolicyState *st = pw != nullptr ? pw->tables->state() : nullptr;
    if (st == nullptr) {
        return;
    }
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        const PortPolicy *pp = port_of(*st, meta(m).in_port);
        bool exempt = false;
        if constexpr (kV6 && kLocal) {
            exempt = local_only_source6(at<rte_ipv6_hdr>(m, meta(m).l3_off)->src_addr);
        }
        if (pp != nullptr && (pp->flags & kPortEndpoint) && exempt) {
            meta(m).src_cls = pp->cls;
        }
        if (pp != nullptr && (pp->flags & kPortEndpoint) && !exempt &&
            spoofed<kV6>(*st, *pp, m, &meta(m).src_cls)) {
            w.drop(m, DropReason::kSpoofedSource);
        } else {
            b.pkts[k++] = m;
        }
    }
    b.n = k;
}

// --- classification ---

constexpr uint8_t icmp_proto(bool v6) {
    return v6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP};
}

// The 5-tuple a packet is classified on (compile.hpp's fields: ICMP of the
// family carries type << 8 | code as its destination port, source 0).
struct Tuple {
    std::array<uint8_t, 16> src{}, dst{};
    uint8_t proto = 0;
    net::Be16 sport, dport;
};

// A flow's original tuple as Calico's filter sees it: the pre-SNAT source,
// the post-DNAT destination (the reply's source).
Tuple tuple_of_flow(const ct::Flow &f, bool v6) {
    const FlowKey &o = f.tuple[static_cast<size_t>(Dir::kOrig)];
    const FlowKey &r = f.tuple[static_cast<size_t>(Dir::kReply)];
    Tuple t;
    t.src = o.src;
    t.dst = r.src;
    t.proto = o.proto;
    if (o.proto == icmp_proto(v6)) {
        // Echo: the identifier is in sport, the request's type in dport.
        t.dport = net::Be16::from_host(static_cast<uint16_t>(o.dport.host() << 8));
    } else {
        t.sport = o.sport;
        t.dport = r.sport;
    }
    return t;
}

// A packet's own tuple (its headers, as parse() keyed them; ICMP: type and
// code from the message).
template <bool kV6>
Tuple tuple_of_packet(rte_mbuf *m, const FlowKey &k) {
    Tuple t;
    t.src = k.src;
    t.dst = k.dst;
    t.proto = k.proto;
    const PktMeta &md = meta(m);
    if (k.proto == icmp_proto(kV6)) {
        if (seg_avail(m, 0) >= md.l4_off + 2u) {
            const uint8_t *h = at<uint8_t>(m, md.l4_off);
            t.dport = net::Be16::from_host(static_cast<uint16_t>(h[0] << 8 | h[1]));
        }
    } else {
        t.sport = k.sport;
        t.dport = k.dport;
    }
    return t;
}

template <bool kV6>
using KeyOf = std::conditional_t<kV6, PolicyKey6, PolicyKey4>;

template <bool kV6>
KeyOf<kV6> key_of(const Tuple &t, ClassId cls) {
    KeyOf<kV6> k;
    k.cls = cls;
    k.proto = t.proto;
    if constexpr (kV6) {
        k.src = t.src;
        k.dst = t.dst;
    } else {
        uint32_t s, d;
        std::memcpy(&s, t.src.data(), 4);
        std::memcpy(&d, t.dst.data(), 4);
        k.src = net::Be32::from_raw(s);
        k.dst = net::Be32::from_raw(d);
    }
    k.sport = t.sport;
    k.dport = t.dport;
    return k;
}

// What a packet waits for between the phases of a burst.
enum class Way : uint8_t {
    kPass,      // goes on
    kDrop,      // why says
    kStamped,   // a flow's packet: pass if its stamp is current, else check
    kTrack,     // parsed and prepared: look up, then maybe check and create
    kError,     // an ICMP error: match_icmp_error, then as kStamped
    kStateless  // checked without a flow (ICMP the tracker does not follow)
};

// What only a looked-up or classified packet needs (written before read).
struct Lookups {
    ct::Packet p;
    ct::Lookup l;
    Tuple t;
    CompiledVerdict ev, iv;  // egress, ingress verdicts (when egress / ingress)
};

struct Pending {
    // h is left unwritten: a burst's route-only packets (most, when few
    // endpoints have policy) cost no more than the fields below.
    Pending() {}
    ct::Hit hit;
    ClassId src_cls = 0, dst_cls = 0;  // of the original direction
    bool egress = false, ingress = false;
    bool check = false;    // classify h.t
    bool create = false;   // a new flow: create it when allowed
    bool to_host = false;  // policy*_local: an endpoint's packet to the node
    Way way = Way::kPass;
    DropReason why = kPass;
    union {
        Lookups h;
    };
};

struct Ctx {
    Worker &w;
    PolicyWorker &pw;
    const PolicyState &st;
    ct::ConnTable *ct;  // nullptr: no table (no stateful policy: every packet checked)
    uint16_t gen;
    uint64_t now;
};

bool stamped(const ct::Flow &f, uint16_t gen) {
    return (f.policy_flags.load(std::memory_order_relaxed) & ct::kPolicyChecked) &&
           f.policy_gen.load(std::memory_order_relaxed) == gen;
}
void stamp(ct::Flow &f, uint16_t gen) {
    f.policy_gen.store(gen, std::memory_order_relaxed);
    f.policy_flags.store(ct::kPolicyChecked, std::memory_order_relaxed);
}

// The classes of the flow's original direction, seen from a packet of
// direction d (a reply comes in at the original's destination and is
// routed to its source).
void classes_for(Pending &q, ClassId in_cls, ClassId nh_cls, Dir d) {
    q.src_cls = d == Dir::kOrig ? in_cls : nh_cls;
    q.dst_cls = d == Dir::kOrig ? nh_cls : in_cls;
}

// Which ends have policy; whether there is anything to classify.
bool applies(const Ctx &c, Pending &q) {
    const PolicyRules *r = c.st.rules;
    q.egress = r != nullptr && r->applies(q.src_cls, Direction::kEgress);
    q.ingress = r != nullptr && r->applies(q.dst_cls, Direction::kIngress);
    return q.egress || q.ingress;
}

// Whether a connection between the two classes is tracked: some policy at
// either end, in either direction. Not only the directions that check this
// packet: an endpoint with ingress policy only must know the replies of
// the connections it opens, which no policy checked on the way out.
bool tracked(const Ctx &c, ClassId a, ClassId b) {
    const PolicyRules *r = c.st.rules;
    return r != nullptr &&
           (r->applies(a, Direction::kEgress) || r->applies(a, Direction::kIngress) ||
            r->applies(b, Direction::kEgress) || r->applies(b, Direction::kIngress));
}

// A flow's packet (hit) whose flow is not stamped with this generation:
// classified on the flow's original tuple.
template <bool kV6>
void recheck(const Ctx &c, Pending &q, ClassId in_cls, ClassId nh_cls) {
    ct::Flow &f = c.ct->flow(q.hit.flow);
    if (stamped(f, c.gen)) {
        q.way = Way::kPass;
        return;
    }
    classes_for(q, in_cls, nh_cls, q.hit.dir);
    if (!applies(c, q)) {
        stamp(f, c.gen);
        q.way = Way::kPass;
        return;
    }
    q.h.t = tuple_of_flow(f, kV6);
    q.check = true;
}

template <bool kV6>
ClassId nh_class_of(const PolicyState &st, uint32_t nh) {
    return nh < st.nh_class.size() ? st.nh_class[nh] : 0;
}

// Phase 1: what the packet needs; parse() and prepare() a packet to look up.
template <bool kV6>
void classify_first(const Ctx &c, rte_mbuf *m, Pending &q, ClassId in_cls, ClassId nh_cls) {
    const PktMeta &md = meta(m);
    if (md.flags & kMetaLocalOrigin) {
        q.way = Way::kPass;
        return;
    }
    if (md.flow != 0 && c.ct != nullptr) {
        q.hit = {md.flow - 1, static_cast<Dir>(md.flow_dir)};
        q.way = Way::kStamped;
        recheck<kV6>(c, q, in_cls, nh_cls);
        return;
    }
    classes_for(q, in_cls, nh_cls, Dir::kOrig);
    const bool check = applies(c, q);
    if (!tracked(c, in_cls, nh_cls)) {
        q.way = Way::kPass;
        return;
    }
    const Result r = ct::parse(m, md, kV6, q.h.p);
    switch (r) {
        case Result::kOk:
            if (c.ct == nullptr) {
                q.h.t = tuple_of_packet<kV6>(m, q.h.p.key);
                q.way = Way::kStateless;
                q.check = check;
                return;
            }
            c.ct->prepare(q.h.p.key, q.h.l);
            q.way = Way::kTrack;
            return;
        case Result::kNotTracked:
            q.h.t = tuple_of_packet<kV6>(m, q.h.p.key);
            q.way = Way::kStateless;
            q.check = check;
            return;
        case Result::kIcmpError:
            q.way = c.ct != nullptr ? Way::kError : Way::kDrop;
            q.why = DropReason::kPolicyIcmpErrorNoFlow;  // without a table: no flow to be about
            return;
        case Result::kFragment:
            // No ports to match: dropped where a policy checks this
            // direction; where the ends are tracked only (for the other
            // direction's sake) it passes, as it would untracked.
            q.way = check ? Way::kDrop : Way::kPass;
            q.why = DropReason::kPolicyFragment;
            return;
        default:
            q.way = Way::kDrop;
            q.why = ct::drop_reason(r, kPass, DropReason::kPolicyFragment);
            return;
    }
}

// Counts and logs the verdict v of direction d for packet m.
template <bool kV6>
void account(const Ctx &c, rte_mbuf *m, const Pending &q, const CompiledVerdict &v, Direction d,
             bool passed) {
    if (c.pw.index < c.st.counts.size()) {
        std::vector<RuleCount> &counts = c.st.counts[c.pw.index];
        for (const fwd::policy::RuleRef r : {v.rule, v.log}) {
            if (r != fwd::policy::kNoRule && r < counts.size()) {
                counts[r].packets.inc();
                counts[r].bytes.add(m->pkt_len - meta(m).l3_off);
            }
        }
    }
    if (v.log == fwd::policy::kNoRule) {
        return;
    }
    LogRecord rec{};
    rec.generation = c.st.generation;
    rec.rule = v.log;
    rec.src = q.h.t.src;
    rec.dst = q.h.t.dst;
    rec.sport = q.h.t.sport.host();
    rec.dport = q.h.t.dport.host();
    rec.len = static_cast<uint16_t>(m->pkt_len - meta(m).l3_off);
    rec.in_port = meta(m).in_port;
    rec.family = kV6 ? 6 : 4;
    rec.proto = q.h.t.proto;
    rec.verdict = passed ? 1 : 0;
    rec.dir = d == Direction::kIngress ? 0 : 1;
    if (!c.pw.log.push(rec)) {
        c.pw.log_lost.inc();
    }
}

// The verdict of both ends from q.h.ev / q.h.iv (egress first, as Felix).
template <bool kV6>
DropReason decide(const Ctx &c, rte_mbuf *m, const Pending &q) {
    DropReason why = kPass;
    if (q.egress && !q.h.ev.allowed) {
        why = q.h.ev.rule == fwd::policy::kNoRule ? DropReason::kPolicyDefaultDenyEgress
                                                  : DropReason::kPolicyDenyEgress;
    } else if (q.ingress && !q.h.iv.allowed) {
        why = q.h.iv.rule == fwd::policy::kNoRule ? DropReason::kPolicyDefaultDenyIngress
                                                  : DropReason::kPolicyDenyIngress;
    }
    if (q.egress) {
        account<kV6>(c, m, q, q.h.ev, Direction::kEgress, why == kPass);
    }
    if (q.ingress && (!q.egress || q.h.ev.allowed)) {
        account<kV6>(c, m, q, q.h.iv, Direction::kIngress, why == kPass);
    }
    return why;
}

// Classifies every q[i].check packet: one classify() per direction.
template <bool kV6>
void classify_burst(const Ctx &c, Pending *q, uint16_t n) {
    KeyOf<kV6> keys[kBurst];
    CompiledVerdict out[kBurst];
    uint16_t idx[kBurst];
    for (const Direction d : {Direction::kEgress, Direction::kIngress}) {
        uint16_t k = 0;
        for (uint16_t i = 0; i < n; i++) {
            if (!q[i].check) {
                continue;
            }
            const bool want = d == Direction::kEgress ? q[i].egress : q[i].ingress;
            if (want) {
                keys[k] =
                    key_of<kV6>(q[i].h.t, d == Direction::kEgress ? q[i].src_cls : q[i].dst_cls);
                idx[k++] = i;
            }
        }
        if (k == 0) {
            continue;
        }
        c.st.rules->classify(d, keys, k, out);
        for (uint16_t j = 0; j < k; j++) {
            (d == Direction::kEgress ? q[idx[j]].h.ev : q[idx[j]].h.iv) = out[j];
        }
    }
}

// A new flow allowed: created with the stamp (a packet of this burst may
// have created it since the probe: then it is tracked as that flow's).
template <bool kV6>
DropReason create_flow(const Ctx &c, Pending &q, Made &made) {
    const FlowKey reply = q.h.p.key.inverted();
    ct::Lookup rl;
    c.ct->prepare(reply, rl);
    const ct::NatInfo stamp_info{.policy_flags = ct::kPolicyChecked, .policy_gen = c.gen};
    Result r = c.ct->create(q.h.p, q.h.l, reply, rl, c.now, stamp_info, q.hit, *c.pw.counters);
    if (r == Result::kCreated) {
        made.add(q.h.l.sig);
        made.add(rl.sig);
        return kPass;
    }
    if (r == Result::kExists || r == Result::kReplyExists) {
        // Created meanwhile (by another worker, either direction): its
        // packet now; allowed as this one was.
        ct::Lookup l = q.h.l;
        c.ct->probe(l);
        r = c.ct->track(q.h.p, l, c.now, q.hit, *c.pw.counters);
        if (r == Result::kNew) {
            return DropReason::kCtBusy;
        }
    }
    return ct::drop_reason(r, kPass, DropReason::kPolicyFragment);
}

// Phase 3 of one packet: track, match an error, or take what phase 1 said.
template <bool kV6>
void track_one(const Ctx &c, Pending &q, ClassId in_cls, ClassId nh_cls, const Made &made,
               rte_mbuf *m) {
    if (q.way == Way::kTrack) {
        const Result r =
            c.ct->track(q.h.p, q.h.l, c.now, q.hit, *c.pw.counters, made.maybe(q.h.l.sig));
        if (r == Result::kNew) {
            classes_for(q, in_cls, nh_cls, Dir::kOrig);
            q.check = applies(c, q);
            q.create = true;
            if (q.check) {
                q.h.t = tuple_of_packet<kV6>(m, q.h.p.key);
            }
            return;
        }
        q.why = ct::drop_reason(r, kPass, DropReason::kPolicyFragment);
        if (q.why != kPass) {
            q.way = Way::kDrop;
            return;
        }
        q.way = Way::kStamped;
        recheck<kV6>(c, q, in_cls, nh_cls);
    } else if (q.way == Way::kError) {
        const Result r = c.ct->match_icmp_error(m, meta(m), kV6, c.now, q.hit, *c.pw.counters);
        if (r != Result::kOk) {
            q.way = Way::kDrop;
            q.why = r == Result::kIcmpErrorNoFlow
                        ? DropReason::kPolicyIcmpErrorNoFlow
                        : ct::drop_reason(r, kPass, DropReason::kPolicyFragment);
            return;
        }
        q.way = Way::kStamped;
        recheck<kV6>(c, q, in_cls, nh_cls);
    }
}

// Whether every packet of b passes on its flow's current stamp (a flow NAT
// handed in meta.flow, stamped with gen) or is the dataplane's own: what
// the phases below find for such a burst packet by packet (each recheck()
// passes, nothing is counted, stamped or created), in one read of each
// stamp. An established flow's burst, the common case where some class has
// policy, pays this loop only.
bool all_stamped(const ct::ConnTable *ct, uint16_t gen, const Burst &b) {
    if (ct == nullptr) {
        return false;
    }
    for (uint16_t i = 0; i < b.n; i++) {
        const PktMeta &md = meta(b.pkts[i]);
        if (!(md.flags & kMetaLocalOrigin) &&
            (md.flow == 0 || !stamped(ct->flow(md.flow - 1), gen))) {
            return false;
        }
    }
    return true;
}

// The burst in phases, as nat4 / nat6: decide and prepare; probe; track
// (and match errors) in order; classify what needs it, once per direction;
// then in order create, stamp, end or drop.
template <bool kV6>
void policy_output(Worker &w, Burst &b) {
    PolicyWorker *pw = worker_of(w);
    const PolicyState *st = pw != nullptr ? pw->tables->state() : nullptr;
    // No class with policy: nothing is checked or tracked (a NAT flow's stamp is only a cache
    // of a verdict, and the next rule set's generation makes it stale anyway).
    if (st == nullptr || st->rules == nullptr || !st->rules->any()) {
        return;
    }
    if (all_stamped(pw->tables->ct, static_cast<uint16_t>(st->generation), b)) {
        return;
    }
    const Ctx c{w, *pw, *st, pw->tables->ct, static_cast<uint16_t>(st->generation), rte_rdtsc()};
    Pending q[kBurst];
    ClassId in_cls[kBurst], nh_cls[kBurst];
    for (uint16_t i = 0; i < b.n; i++) {
        const PktMeta &md = meta(b.pkts[i]);
        const PortPolicy *pp = port_of(*st, md.in_port);
        // antispoof* set the sender's class for every packet of an endpoint's port
        in_cls[i] = pp != nullptr && (pp->flags & kPortEndpoint) ? md.src_cls : 0;
        nh_cls[i] = nh_class_of<kV6>(*st, md.nh);
        classify_first<kV6>(c, b.pkts[i], q[i], in_cls[i], nh_cls[i]);
    }
    // First buckets, then the second ones where needed (ConnTable::probe_first).
    uint8_t second[kBurst];
    uint32_t n2 = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        if (q[i].way == Way::kTrack && !c.ct->probe_first(q[i].h.l)) {
            second[n2++] = static_cast<uint8_t>(i);
        }
    }
    for (uint32_t j = 0; j < n2; j++) {
        c.ct->probe_second(q[second[j]].h.l);
    }
    Made made;  // no create yet: track() rechecks nothing in this pass
    bool any = false;
    for (uint16_t i = 0; i < b.n; i++) {
        track_one<kV6>(c, q[i], in_cls[i], nh_cls[i], made, b.pkts[i]);
        any |= q[i].check;
    }
    if (any) {
        classify_burst<kV6>(c, q, b.n);
    }
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        Pending &qi = q[i];
        DropReason why = qi.way == Way::kDrop ? qi.why : kPass;
        if (why == kPass && qi.create && made.maybe(qi.h.l.sig)) {
            // A packet of this burst created a flow this one may belong to.
            ct::Lookup l = qi.h.l;
            c.ct->probe(l);
            const Result r = c.ct->track(qi.h.p, l, c.now, qi.hit, *c.pw.counters, true);
            if (r != Result::kNew) {
                // That flow's packet: allowed (only allowed flows are made).
                qi.create = false;
                qi.check = false;
                why = ct::drop_reason(r, kPass, DropReason::kPolicyFragment);
            }
        }
        if (why == kPass && qi.create) {
            why = qi.check ? decide<kV6>(c, m, qi) : kPass;
            if (why == kPass) {
                why = create_flow<kV6>(c, qi, made);
            }
        } else if (why == kPass && qi.check) {
            why = decide<kV6>(c, m, qi);
            if (qi.way == Way::kStamped) {
                if (why == kPass) {
                    stamp(c.ct->flow(qi.hit.flow), c.gen);
                } else {
                    c.ct->end(qi.hit.flow);
                }
            }
        }
        if (why == kPass) {
            b.pkts[k++] = m;
        } else {
            w.drop(m, why);
        }
    }
    b.n = k;
}

// ND and MLD from a pod to the node pass before any policy (Felix's
// ICMPv6 exceptions: a router must be reachable for them).
bool nd_or_mld(rte_mbuf *m) {
    const PktMeta &md = meta(m);
    if (md.l4_proto != IPPROTO_ICMPV6 || (md.flags & kMetaLaterFragment) ||
        seg_avail(m, 0) < md.l4_off + 1u) {
        return false;
    }
    const uint8_t t = *at<uint8_t>(m, md.l4_off);
    return (t >= 130 && t <= 133) || t == 135 || t == 136;
}

template <bool kV6>
void policy_local(Worker &w, Burst &b) {
    PolicyWorker *pw = worker_of(w);
    const PolicyState *st = pw != nullptr ? pw->tables->state() : nullptr;
    if (st == nullptr) {
        return;
    }
    const Ctx c{w, *pw, *st, nullptr, static_cast<uint16_t>(st->generation), 0};
    Pending q[kBurst];
    uint16_t k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        const PortPolicy *pp = port_of(*st, meta(m).in_port);
        if (pp == nullptr || !(pp->flags & kPortEndpoint) || (meta(m).flags & kMetaLocalOrigin)) {
            b.pkts[k++] = m;
            continue;
        }
        if (kV6 && nd_or_mld(m)) {
            b.pkts[k++] = m;
            continue;
        }
        const uint16_t cls = meta(m).src_cls;  // antispoof*_local's
        Pending &qk = q[k];
        qk.to_host = true;
        qk.src_cls = cls;
        qk.egress = st->rules != nullptr && st->rules->applies(cls, Direction::kEgress);
        if (qk.egress) {
            const Result r = ct::parse(m, meta(m), kV6, qk.h.p);
            if (r == Result::kOk || r == Result::kNotTracked || r == Result::kIcmpError) {
                qk.h.t = tuple_of_packet<kV6>(m, qk.h.p.key);
                qk.check = true;
            } else {
                qk.way = Way::kDrop;
                qk.why = ct::drop_reason(r, kPass, DropReason::kPolicyFragment);
            }
        }
        b.pkts[k++] = m;
    }
    b.n = k;
    if (st->rules != nullptr) {
        classify_burst<kV6>(c, q, b.n);
    }
    k = 0;
    for (uint16_t i = 0; i < b.n; i++) {
        rte_mbuf *m = b.pkts[i];
        DropReason why = q[i].way == Way::kDrop ? q[i].why : kPass;
        if (why == kPass && q[i].check) {
            why = decide<kV6>(c, m, q[i]);
        }
        if (why == kPass && q[i].to_host && st->to_host == HostAction::kDrop) {
            why = DropReason::kEndpointToHostDrop;
        }
        if (why == kPass) {
            b.pkts[k++] = m;
        } else {
            w.drop(m, why);
        }
    }
    b.n = k;
}

}  // namespace

FWD_ON_LOAD(auto &r = PipelineRegistry::global(); r.add_stage({.name = "antispoof4",
                                                               .hook = Hook::kIp4Input,
                                                               .fn = &antispoof<false, false>,
                                                               .runs_before = {"nat4"}});
            r.add_stage({.name = "antispoof6",
                         .hook = Hook::kIp6Input,
                         .fn = &antispoof<true, false>,
                         .runs_before = {"nat6"}});
            r.add_stage({.name = "policy4",
                         .hook = Hook::kIp4Output,
                         .fn = &policy_output<false>,
                         .runs_before = {"vxlan_encap4", "ipip_encap"}});
            r.add_stage({.name = "policy6",
                         .hook = Hook::kIp6Output,
                         .fn = &policy_output<true>,
                         .runs_before = {"vxlan_encap6"}});
            r.add_stage({.name = "antispoof4_local",
                         .hook = Hook::kIp4Local,
                         .fn = &antispoof<false, true>,
                         .runs_before = {"nat4_local"}});
            r.add_stage({.name = "antispoof6_local",
                         .hook = Hook::kIp6Local,
                         .fn = &antispoof<true, true>,
                         .runs_before = {"nat6_local"}});
            r.add_stage({.name = "policy4_local",
                         .hook = Hook::kIp4Local,
                         .fn = &policy_local<false>,
                         .runs_after = {"nat4_local"}});
            r.add_stage({.name = "policy6_local",
                         .hook = Hook::kIp6Local,
                         .fn = &policy_local<true>,
                         .runs_after = {"nat6_local"}}));

}  // namespace fwd::dp::policy
