// Calico-style block-affinity IPAM over a compare-and-swap Store.
#include "fwd/ipam/allocator.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

namespace fwd::ipam {

using nlohmann::json;
using Op = Operation;

namespace {

std::string join(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &x : v) {
        s += (s.empty() ? "" : ", ") + x;
    }
    return s;
}

Op put(const std::string &key, const json &j) {
    return Op{Op::Kind::kPut, key, j.dump()};
}
Op del(const std::string &key) {
    return Op{Op::Kind::kDelete, key, ""};
}

bool in_any(const std::vector<Cidr> &cidrs, const net::IpAddr &a) {
    return std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr &c) { return c.contains(a); });
}

// The block named by the last part of its key (Cidr::key(): '/' as '-').
std::optional<Cidr> cidr_of_key(std::string_view k) {
    std::string s(k);
    auto dash = s.rfind('-');
    if (dash == std::string::npos) {
        return std::nullopt;
    }
    s[dash] = '/';
    return Cidr::parse(s);
}

}  // namespace

ExhaustedError::ExhaustedError(net::Family f, std::vector<std::string> pools,
                               const std::string &why)
    : IpamError(why), family_(f), pools_(std::move(pools)) {}

std::string_view to_string(Finding::Kind k) {
    switch (k) {
        case Finding::Kind::kLeakedHandle:
            return "leaked-handle";
        case Finding::Kind::kMissingHandle:
            return "missing-handle";
        case Finding::Kind::kDoubledAddress:
            return "doubled-address";
        case Finding::Kind::kAffinityMismatch:
            return "affinity-mismatch";
        case Finding::Kind::kStalePending:
            return "stale-pending-claim";
        case Finding::Kind::kOutsidePool:
            return "outside-pool";
        case Finding::Kind::kCorruptBlock:
            return "corrupt-block";
    }
    return "?";
}

// What one family's allocation needs to know, read once per request.
struct Allocator::Ctx {
    const AssignRequest *req;
    net::Family family;
    std::vector<IpPool> pools;
    const std::vector<Cidr> &reserved;
    const IpamConfig &config;
    bool in_pools(const Cidr &c) const {
        return std::any_of(pools.begin(), pools.end(),
                           [&](const IpPool &p) { return p.cidr.contains(c); });
    }
    std::vector<std::string> pool_names() const {
        std::vector<std::string> v;
        for (const auto &p : pools) {
            v.push_back(p.name + " (" + p.cidr.str() + ")");
        }
        return v;
    }
};

// An assign() in the making: copies of the blocks it takes addresses from,
// at the revisions they were read, the affinity records that make them the
// node's, and the addresses. commit() writes it in one transaction with the
// handle, so a request lands whole or not at all.
struct Allocator::Draft {
    std::map<std::string, Versioned<Block>> blocks;  // by key
    std::map<std::string, int64_t> affinities;       // key -> mod revision read
    std::map<std::string, int> counts;               // block cidr -> addresses taken
    std::map<net::Family, Hint> hints;               // own block used last, per family
    std::vector<net::IpAddr> v4, v6;
    std::vector<net::IpAddr> &got(net::Family f) { return f == net::Family::kIp4 ? v4 : v6; }
    const std::vector<net::IpAddr> &got(net::Family f) const {
        return f == net::Family::kIp4 ? v4 : v6;
    }
};

Allocator::Allocator(Store &store, AllocatorOptions opts) : store_(store), opts_(std::move(opts)) {
    if (!opts_.clock) {
        opts_.clock = [] {
            return std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                .count();
        };
    }
    if (opts_.max_retries < 1) {
        opts_.max_retries = 1;
    }
}

std::string Allocator::key_pool(const std::string &name) const {
    return opts_.prefix + "pools/" + name;
}
std::string Allocator::key_block(const Cidr &c) const {
    return opts_.prefix + "blocks/" + c.key();
}
std::string Allocator::key_affinity(const std::string &node, const Cidr &c) const {
    return opts_.prefix + "affinity/" + node + "/" + c.key();
}
std::string Allocator::key_handle(const std::string &h) const {
    return opts_.prefix + "handles/" + h;
}

template <typename T>
std::optional<Allocator::Versioned<T>> Allocator::load(const std::string &key) {
    auto kv = store_.get(key);
    if (!kv) {
        return std::nullopt;
    }
    return Versioned<T>{json::parse(kv->value).get<T>(), kv->mod_revision};
}

template <typename T>
std::vector<Allocator::Versioned<T>> Allocator::load_all(const std::string &sub) {
    std::vector<Versioned<T>> out;
    for (const auto &kv : store_.list(opts_.prefix + sub)) {
        out.push_back({json::parse(kv.value).get<T>(), kv.mod_revision});
    }
    return out;
}

void Allocator::conflict(int &n, const std::string &what) {
    if (++n > opts_.max_retries) {
        throw ConflictError("IPAM: gave up on " + what + " after " +
                            std::to_string(opts_.max_retries) + " conflicting writes (" +
                            store_.describe() + ")");
    }
    std::this_thread::yield();
}

// ---- pools, config, reservations ----

std::vector<IpPool> Allocator::pools() {
    std::vector<IpPool> v;
    for (auto &p : load_all<IpPool>("pools/")) {
        v.push_back(std::move(p.value));
    }
    return v;
}

std::optional<IpPool> Allocator::pool(const std::string &name) {
    auto p = load<IpPool>(key_pool(name));
    return p ? std::optional<IpPool>(p->value) : std::nullopt;
}

void Allocator::add_pool(const IpPool &in) {
    IpPool p = in.normalized();
    for (int n = 0;; conflict(n, "adding pool " + p.name)) {
        // Validated against the pools read in the same list whose revisions
        // the write compares, so two overlapping pools added at once cannot
        // both pass.
        auto all = load_all<IpPool>("pools/");
        std::vector<IpPool> others;
        std::vector<Compare> cmps{{key_pool(p.name), 0}};
        for (const auto &o : all) {
            others.push_back(o.value);
            cmps.push_back({key_pool(o.value.name), o.rev});
        }
        validate_pool(p, others);
        if (std::any_of(others.begin(), others.end(),
                        [&](const IpPool &o) { return o.name == p.name; })) {
            throw PoolError(p.name, "name", "a pool of that name exists");
        }
        if (store_.txn(cmps, {put(key_pool(p.name), p)})) {
            return;
        }
    }
}

void Allocator::apply(const PoolChanges &c) {
    std::vector<IpPool> puts;
    for (const auto &p : c.put) {
        puts.push_back(p.normalized());
    }
    if (c.config && c.config->max_blocks_per_host < 0) {
        throw IpamError("IPAM config: maxBlocksPerHost must be >= 0");
    }
    for (int n = 0;; conflict(n, "applying pool changes")) {
        auto all = load_all<IpPool>("pools/");
        std::map<std::string, IpPool> final_pools, old;
        std::vector<Compare> cmps;
        for (const auto &o : all) {
            final_pools[o.value.name] = o.value;
            old[o.value.name] = o.value;
            cmps.push_back({key_pool(o.value.name), o.rev});
        }
        std::vector<Operation> ops;
        for (const auto &name : c.remove) {
            if (!old.count(name)) {
                throw PoolError(name, "name", "no such pool");
            }
            final_pools.erase(name);
        }
        for (const auto &p : puts) {
            final_pools[p.name] = p;
        }
        for (const auto &p : puts) {
            std::vector<IpPool> others;
            for (const auto &[name, o] : final_pools) {
                if (name != p.name) {
                    others.push_back(o);
                }
            }
            if (auto it = old.find(p.name); it != old.end()) {
                validate_pool_update(it->second, p, others);
            } else {
                validate_pool(p, others);
                cmps.push_back({key_pool(p.name), 0});
            }
            ops.push_back(put(key_pool(p.name), p));
        }
        if (!c.remove.empty()) {
            auto blocks = load_all<Block>("blocks/");
            auto affinities = load_all<Affinity>("affinity/");
            for (const auto &name : c.remove) {
                removal(old[name], blocks, affinities, cmps, ops);
            }
        }
        if (c.config) {
            auto kv = store_.get(opts_.prefix + "config");
            cmps.push_back({opts_.prefix + "config", kv ? kv->mod_revision : 0});
            ops.push_back(put(opts_.prefix + "config", *c.config));
        }
        if (ops.empty() || store_.txn(cmps, ops)) {
            return;
        }
    }
}

// What deleting pool p takes: its key, its (empty) blocks and their
// affinities; refused while a block of it holds addresses.
void Allocator::removal(const IpPool &p, const std::vector<Versioned<Block>> &blocks,
                        const std::vector<Versioned<Affinity>> &affinities,
                        std::vector<Compare> &cmps, std::vector<Operation> &ops) {
    ops.push_back(del(key_pool(p.name)));
    for (const auto &b : blocks) {
        if (!p.cidr.contains(b.value.cidr)) {
            continue;
        }
        if (!b.value.empty()) {
            throw PoolError(p.name, "cidr",
                            "still has " + std::to_string(b.value.used()) +
                                " allocated addresses in block " + b.value.cidr.str());
        }
        cmps.push_back({key_block(b.value.cidr), b.rev});
        ops.push_back(del(key_block(b.value.cidr)));
    }
    for (const auto &a : affinities) {
        if (p.cidr.contains(a.value.cidr)) {
            cmps.push_back({key_affinity(a.value.node, a.value.cidr), a.rev});
            ops.push_back(del(key_affinity(a.value.node, a.value.cidr)));
        }
    }
}

void Allocator::update_pool(const IpPool &in) {
    IpPool p = in.normalized();
    for (int n = 0;; conflict(n, "updating pool " + p.name)) {
        auto old = load<IpPool>(key_pool(p.name));
        if (!old) {
            throw PoolError(p.name, "name", "no such pool");
        }
        validate_pool_update(old->value, p, pools());
        if (store_.txn({{key_pool(p.name), old->rev}}, {put(key_pool(p.name), p)})) {
            return;
        }
    }
}

void Allocator::delete_pool(const std::string &name) {
    for (int n = 0;; conflict(n, "deleting pool " + name)) {
        auto p = load<IpPool>(key_pool(name));
        if (!p) {
            throw PoolError(name, "name", "no such pool");
        }
        std::vector<Compare> cmps{{key_pool(name), p->rev}};
        std::vector<Operation> ops;
        removal(p->value, load_all<Block>("blocks/"), load_all<Affinity>("affinity/"), cmps, ops);
        if (store_.txn(cmps, ops)) {
            return;
        }
    }
}

IpamConfig Allocator::config() {
    auto c = load<IpamConfig>(opts_.prefix + "config");
    return c ? c->value : IpamConfig{};
}

void Allocator::set_config(const IpamConfig &c) {
    if (c.max_blocks_per_host < 0) {
        throw IpamError("IPAM config: maxBlocksPerHost must be >= 0");
    }
    for (int n = 0;; conflict(n, "setting the IPAM config")) {
        auto kv = store_.get(opts_.prefix + "config");
        if (store_.txn({{opts_.prefix + "config", kv ? kv->mod_revision : 0}},
                       {put(opts_.prefix + "config", c)})) {
            return;
        }
    }
}

void Allocator::add_reservation(const Reservation &r) {
    if (!store_.txn({{opts_.prefix + "reservations/" + r.name, 0}},
                    {put(opts_.prefix + "reservations/" + r.name, r)})) {
        throw IpamError("reservation '" + r.name + "' exists");
    }
}

void Allocator::delete_reservation(const std::string &name) {
    const std::string key = opts_.prefix + "reservations/" + name;
    for (int n = 0;; conflict(n, "deleting reservation " + name)) {
        auto kv = store_.get(key);
        if (!kv || store_.txn({{key, kv->mod_revision}}, {del(key)})) {
            return;
        }
    }
}

std::vector<Reservation> Allocator::reservations() {
    std::vector<Reservation> v;
    for (auto &r : load_all<Reservation>("reservations/")) {
        v.push_back(std::move(r.value));
    }
    return v;
}

std::vector<Cidr> Allocator::reserved() {
    std::vector<Cidr> v;
    for (const auto &r : reservations()) {
        v.insert(v.end(), r.cidrs.begin(), r.cidrs.end());
    }
    return v;
}

// ---- pool choice ----

std::vector<IpPool> Allocator::select_pools(std::vector<IpPool> all, net::Family f,
                                            const std::vector<std::string> &wanted,
                                            const Labels &labels, AllowedUse use) {
    std::vector<IpPool> chosen;
    if (wanted.empty()) {
        chosen = all;
    } else {
        for (const auto &w : wanted) {
            auto wc = Cidr::parse(w);
            auto it = std::find_if(all.begin(), all.end(), [&](const IpPool &p) {
                return p.name == w || (wc && p.cidr == *wc);
            });
            if (it == all.end() || it->disabled) {
                throw IpamError("IPAM: the requested pool '" + w +
                                "' does not exist or is disabled");
            }
            if (it->cidr.family() != f) {
                throw IpamError("IPAM: the requested pool '" + w + "' is not " + family_name(f));
            }
            chosen.push_back(*it);
        }
    }
    std::vector<IpPool> out;
    for (auto &p : chosen) {
        if (p.cidr.family() == f && !p.disabled && p.allows(use) &&
            label::Selector::parse(p.node_selector).matches(labels)) {
            out.push_back(std::move(p));
        }
    }
    return out;
}

// ---- allocation ----

Assignment Allocator::assign(const AssignRequest &req) {
    if (req.handle.empty()) {
        throw IpamError("IPAM: a request needs a handle");
    }
    if (req.node.empty()) {
        throw IpamError("IPAM: a request needs a node");
    }
    Assignment out;
    if (!req.fixed.empty()) {
        assign_fixed(req, out);
        return out;
    }
    if (req.num4 <= 0 && req.num6 <= 0) {
        return out;
    }
    const Shared shared{pools(), reserved(), config()};
    for (int n = 0;; conflict(n, "allocating for " + req.handle)) {
        Draft d;
        assign_family(req, shared, net::Family::kIp4, req.num4, req.pools4, d);
        assign_family(req, shared, net::Family::kIp6, req.num6, req.pools6, d);
        if (commit(req, d)) {
            out.v4 = std::move(d.v4);
            out.v6 = std::move(d.v6);
            return out;
        }
        // The blocks changed under us (most often another allocator of the
        // node took a slot), or an affinity did: the scan re-reads the node's
        // affinities and tries its other blocks first.
        for (const auto &[f, h] : d.hints) {
            hints_.erase({req.node, f});
            contended_[{req.node, f}] = h.cidr;
        }
    }
}

void Allocator::assign_family(const AssignRequest &req, const Shared &shared, net::Family f, int n,
                              const std::vector<std::string> &wanted, Draft &d) {
    if (n <= 0) {
        return;
    }
    Ctx ctx{&req, f, select_pools(shared.pools, f, wanted, req.node_labels, req.use),
            shared.reserved, shared.config};
    if (ctx.pools.empty()) {
        throw ExhaustedError(f, {},
                             "IPAM: no enabled " + family_name(f) + " pool allowing " +
                                 std::string(to_string(req.use)) + " use matches node " + req.node +
                                 (wanted.empty() ? "" : " among the requested " + join(wanted)));
    }
    int conflicts = 0;
    while (static_cast<int>(d.got(f).size()) < n) {
        switch (alloc_one(ctx, d)) {
            case Step::kDone:
            case Step::kProgress:
                break;
            case Step::kConflict:
                conflict(conflicts, "allocating for " + req.handle);
                break;
            case Step::kExhausted:
                throw ExhaustedError(
                    f, ctx.pool_names(),
                    "IPAM: no " + family_name(f) + " address left for node " + req.node +
                        " in pool(s) " + join(ctx.pool_names()) +
                        (ctx.config.strict_affinity ? " (strict affinity: no borrowing)" : ""));
        }
    }
}

// The blocks, the handle and the affinities in one compare-and-swap on the
// revisions they were read at. Most handles are new: the first try compares
// the handle as absent without reading it; only if that fails is it read.
bool Allocator::commit(const AssignRequest &req, const Draft &d) {
    const std::string hkey = key_handle(req.handle);
    std::optional<Versioned<Handle>> h;
    std::vector<Operation> ops;
    for (bool read = false;; read = true) {
        Handle hv = h ? h->value : Handle{req.handle, {}};
        for (const auto &[bstr, count] : d.counts) {
            hv.blocks[bstr] += count;
        }
        std::vector<Compare> cmps{{hkey, h ? h->rev : 0}};
        ops = {put(hkey, hv)};
        for (const auto &[key, b] : d.blocks) {
            cmps.push_back({key, b.rev});
            ops.push_back(put(key, b.value));
        }
        for (const auto &[key, rev] : d.affinities) {
            cmps.push_back({key, rev});
        }
        if (store_.txn(cmps, ops)) {
            break;
        }
        if (read || !(h = load<Handle>(hkey))) {
            return false;  // the blocks or affinities changed
        }
    }
    for (size_t i = 1; i < ops.size(); ++i) {
        remember(ops[i].key, std::move(ops[i].value), d.blocks.at(ops[i].key).value);
    }
    for (const auto &[f, hint] : d.hints) {
        hints_[{req.node, f}] = hint;
    }
    for (auto f : {net::Family::kIp4, net::Family::kIp6}) {
        if (!d.got(f).empty()) {
            contended_.erase({req.node, f});
        }
    }
    return true;
}

// One address into the draft, or a claim (kProgress), or why not.
Allocator::Step Allocator::alloc_one(const Ctx &ctx, Draft &d) {
    const std::string &node = ctx.req->node;
    // 0. The block the node allocated from last: usually the only block read.
    if (auto h = hints_.find({node, ctx.family}); h != hints_.end()) {
        Hint hint = h->second;
        if (ctx.in_pools(hint.cidr) && alloc_in_own(ctx, hint.cidr, hint.affinity_rev, d)) {
            return Step::kDone;
        }
        hints_.erase({node, ctx.family});
    }
    // 1. The node's own confirmed blocks (a pending claim counts as absent),
    // in order, skipping those seen full or not the node's at their current
    // revision, and the block lost in a race. Affinities first: a confirmed
    // one's block existed before it.
    std::optional<Cidr> contended;
    if (auto c = contended_.find({node, ctx.family}); c != contended_.end()) {
        contended = c->second;
    }
    std::optional<Versioned<Affinity>> lost;
    int owned = 0;
    auto affs = load_all<Affinity>("affinity/" + node + "/");
    auto revs = block_revisions();
    for (auto &a : affs) {
        if (a.value.state != AffinityState::kConfirmed || a.value.cidr.family() != ctx.family) {
            continue;
        }
        ++owned;
        const std::string bkey = key_block(a.value.cidr);
        auto r = revs.find(bkey);
        if (!ctx.in_pools(a.value.cidr) || r == revs.end()) {
            continue;
        }
        if (const BlockSeen *b = seen(bkey, r->second);
            b && (b->free == 0 || b->affinity != node)) {
            continue;
        }
        if (a.value.cidr == contended) {
            lost = a;
        } else if (alloc_in_own(ctx, a.value.cidr, a.rev, d)) {
            return Step::kDone;
        }
    }
    // 2. A new block, also rather than racing another allocator of the node
    // for the block just lost; that block only when no new one is left.
    if (owned < ctx.config.effective_max_blocks()) {
        Step s = claim_new_block(ctx);
        if (s != Step::kExhausted) {
            return s;
        }
    }
    if (lost && alloc_in_own(ctx, lost->value.cidr, lost->rev, d)) {
        return Step::kDone;
    }
    // 3. Borrow from any block of the pools.
    if (ctx.config.strict_affinity) {
        return Step::kExhausted;
    }
    const std::string blocks = opts_.prefix + "blocks/";
    for (const auto &[bkey, rev] : block_revisions()) {
        auto c = cidr_of_key(std::string_view(bkey).substr(blocks.size()));
        const BlockSeen *b = seen(bkey, rev);
        if (!c || c->family() != ctx.family || !ctx.in_pools(*c) || (b && b->free == 0)) {
            continue;
        }
        if (auto blk = draft_block(d, *c); blk && take_slot(ctx, std::move(*blk), d)) {
            return Step::kDone;
        }
    }
    return Step::kExhausted;
}

// c is one of the node's blocks, its confirmed affinity record at
// affinity_rev. The commit compares that record too, so nothing lands in a
// block the node has begun to give up.
bool Allocator::alloc_in_own(const Ctx &ctx, const Cidr &c, int64_t affinity_rev, Draft &d) {
    const std::string &node = ctx.req->node;
    auto b = draft_block(d, c);
    if (!b || b->value.affinity != node || !take_slot(ctx, std::move(*b), d)) {
        return false;
    }
    d.affinities[key_affinity(node, c)] = affinity_rev;
    d.hints[ctx.family] = Hint{c, affinity_rev};
    return true;
}

// The draft's copy of block c, or else the store's.
std::optional<Allocator::Versioned<Block>> Allocator::draft_block(const Draft &d, const Cidr &c) {
    auto it = d.blocks.find(key_block(c));
    if (it != d.blocks.end()) {
        return it->second;
    }
    return load_block(c);
}

// Takes the first free, unreserved slot of b into the draft.
bool Allocator::take_slot(const Ctx &ctx, Versioned<Block> b, Draft &d) {
    Block &blk = b.value;
    auto it = std::find_if(blk.unallocated.begin(), blk.unallocated.end(),
                           [&](uint32_t o) { return !in_any(ctx.reserved, blk.cidr.nth(o)); });
    if (it == blk.unallocated.end()) {
        return false;
    }
    uint32_t ord = *it;
    blk.unallocated.erase(it);
    Attributes attrs = ctx.req->attrs;
    attrs.handle = ctx.req->handle;
    if (attrs.node.empty()) {
        attrs.node = ctx.req->node;
    }
    blk.allocations[ord] = attrs;
    blk.empty_since_ms = 0;
    d.got(ctx.family).push_back(blk.cidr.nth(ord));
    d.counts[blk.cidr.str()]++;
    d.blocks.insert_or_assign(key_block(blk.cidr), std::move(b));
    return true;
}

// A block read again with the very bytes last read or written here (the
// node's own block, between two of its allocations) is not parsed again.
std::optional<Allocator::Versioned<Block>> Allocator::load_block(const Cidr &c) {
    const std::string key = key_block(c);
    auto kv = store_.get(key);
    if (!kv) {
        return std::nullopt;
    }
    auto it = texts_.find(key);
    if (it == texts_.end() || it->second.text != kv->value) {
        Block b = json::parse(kv->value).get<Block>();
        it = remember(key, std::move(kv->value), std::move(b));
    }
    const Block &b = it->second.block;
    seen_[key] =
        BlockSeen{kv->mod_revision, b.affinity, b.free(), static_cast<int>(b.allocations.size())};
    return Versioned<Block>{b, kv->mod_revision};
}

std::map<std::string, Allocator::BlockText>::iterator Allocator::remember(const std::string &key,
                                                                          std::string text,
                                                                          Block b) {
    if (texts_.size() >= kBlockTexts && !texts_.count(key)) {
        texts_.clear();
    }
    return texts_.insert_or_assign(key, BlockText{std::move(text), std::move(b)}).first;
}

// Every block key with its mod revision, without the values; forgets what
// was seen of blocks since changed or gone.
std::map<std::string, int64_t> Allocator::block_revisions() {
    std::map<std::string, int64_t> revs;
    for (const auto &kv : store_.list_keys(opts_.prefix + "blocks/")) {
        revs.emplace(kv.key, kv.mod_revision);
    }
    std::erase_if(seen_, [&](const auto &e) {
        auto r = revs.find(e.first);
        return r == revs.end() || r->second != e.second.rev;
    });
    return revs;
}

const Allocator::BlockSeen *Allocator::seen(const std::string &key, int64_t rev) const {
    auto it = seen_.find(key);
    return it != seen_.end() && it->second.rev == rev ? &it->second : nullptr;
}

// Finds a block of the pools nobody holds and claims it for the node. Who
// claims what comes from the affinity records, which are small: a block with
// a confirmed claim is held (its block is affine to that node), so only the
// other existing blocks are read, and only those changed since last seen.
Allocator::Step Allocator::claim_new_block(const Ctx &ctx) {
    const std::string &node = ctx.req->node;
    std::set<Cidr> held;
    std::map<std::string, Versioned<Affinity>> affs;  // by key
    for (auto &a : load_all<Affinity>("affinity/")) {
        if (a.value.state == AffinityState::kConfirmed) {
            held.insert(a.value.cidr);
        }
        affs.emplace(key_affinity(a.value.node, a.value.cidr), std::move(a));
    }
    auto record = [&](const std::string &n, const Cidr &c) -> const Affinity * {
        auto it = affs.find(key_affinity(n, c));
        return it == affs.end() ? nullptr : &it->second.value;
    };
    auto revs = block_revisions();
    for (const IpPool &p : ctx.pools) {
        U128 count = U128{1} << (p.block_size - p.cidr.len());
        for (U128 i = 0; i < count; ++i) {
            Cidr c = p.cidr.subnet(p.block_size, i);
            const std::string bkey = key_block(c);
            auto r = revs.find(bkey);
            if (r != revs.end() && held.count(c)) {
                continue;
            }
            std::optional<BlockSeen> b;  // none: the block does not exist
            if (r != revs.end()) {
                const BlockSeen *known = seen(bkey, r->second);
                if (!known && load_block(c)) {
                    known = &seen_.at(bkey);
                }
                if (known) {
                    b = *known;
                }
            }
            bool candidate = false;
            if (!b) {
                candidate = true;
            } else if (!b->affinity) {
                candidate = b->free > 0;
            } else if (*b->affinity == node) {
                const Affinity *mine = record(node, c);
                candidate = !mine || mine->state == AffinityState::kPending;
            } else if (b->free == b->size) {
                const Affinity *theirs = record(*b->affinity, c);
                candidate =
                    !theirs || (theirs->state == AffinityState::kPending &&
                                now() - theirs->claimed_at_ms >= opts_.pending_claim_timeout_ms);
            }
            if (!candidate) {
                continue;
            }
            switch (claim(node, c)) {
                case Claim::kClaimed:
                    return Step::kProgress;
                case Claim::kConflict:
                    return Step::kConflict;
                case Claim::kTaken:
                    break;
            }
            if (!b) {
                // A missing block we could not take: someone is racing us.
                return Step::kConflict;
            }
        }
    }
    return Step::kExhausted;
}

bool Allocator::claim_block(const std::string &node, const Cidr &block) {
    auto ps = pools();
    auto it =
        std::find_if(ps.begin(), ps.end(), [&](const IpPool &p) { return p.cidr.contains(block); });
    if (it == ps.end() || it->block_size != block.len()) {
        throw IpamError("IPAM: " + block.str() + " is not a block of any pool");
    }
    for (int n = 0;; conflict(n, "claiming " + block.str() + " for " + node)) {
        switch (claim(node, block)) {
            case Claim::kClaimed:
                return true;
            case Claim::kTaken:
                return false;
            case Claim::kConflict:
                break;
        }
    }
}

// The two-phase claim: affinity pending, block written with the node's
// affinity, affinity confirmed. A crash in between leaves a pending claim,
// which counts as absent and which the same node resumes or, once stale,
// another node takes over.
Allocator::Claim Allocator::claim(const std::string &node, const Cidr &c) {
    const std::string akey = key_affinity(node, c);
    const std::string bkey = key_block(c);
    auto mine = load<Affinity>(akey);
    int64_t arev = 0;
    Affinity aff{node, c, AffinityState::kPending, now()};
    if (mine) {
        if (mine->value.state == AffinityState::kConfirmed) {
            auto b = load<Block>(bkey);
            return b && b->value.affinity == node ? Claim::kClaimed : Claim::kTaken;
        }
        if (mine->value.state == AffinityState::kPendingDeletion) {
            return Claim::kTaken;
        }
        arev = mine->rev;
        aff.claimed_at_ms = mine->value.claimed_at_ms;
    } else {
        if (!store_.txn({{akey, 0}}, {put(akey, aff)})) {
            return Claim::kConflict;
        }
        arev = store_.get(akey) ? store_.get(akey)->mod_revision : 0;
    }
    auto drop_pending = [&] { store_.txn({{akey, arev}}, {del(akey)}); };

    auto b = load<Block>(bkey);
    if (!b) {
        if (!store_.txn({{bkey, 0}}, {put(bkey, Block::make(c, node, now()))})) {
            drop_pending();
            return Claim::kConflict;
        }
    } else if (b->value.affinity == node) {
        // Resuming our own claim.
    } else if (!b->value.affinity) {
        b->value.affinity = node;
        if (!store_.txn({{bkey, b->rev}}, {put(bkey, b->value)})) {
            drop_pending();
            return Claim::kConflict;
        }
    } else {
        const std::string other = *b->value.affinity;
        auto theirs = load<Affinity>(key_affinity(other, c));
        bool stale =
            !theirs || (theirs->value.state == AffinityState::kPending &&
                        now() - theirs->value.claimed_at_ms >= opts_.pending_claim_timeout_ms);
        if (!stale || !b->value.empty()) {
            drop_pending();
            return Claim::kTaken;
        }
        b->value.affinity = node;
        std::vector<Compare> cmps{{bkey, b->rev}};
        std::vector<Operation> ops{put(bkey, b->value)};
        if (theirs) {
            cmps.push_back({key_affinity(other, c), theirs->rev});
            ops.push_back(del(key_affinity(other, c)));
        }
        if (!store_.txn(cmps, ops)) {
            drop_pending();
            return Claim::kConflict;
        }
    }
    aff.state = AffinityState::kConfirmed;
    if (!store_.txn({{akey, arev}}, {put(akey, aff)})) {
        return Claim::kConflict;
    }
    return Claim::kClaimed;
}

void Allocator::assign_fixed(const AssignRequest &req, Assignment &out) {
    auto ps = pools();
    auto res = reserved();
    auto cfg = config();
    std::vector<net::IpAddr> got;
    try {
        for (const net::IpAddr &addr : req.fixed) {
            auto p = std::find_if(ps.begin(), ps.end(),
                                  [&](const IpPool &x) { return x.cidr.contains(addr); });
            if (p == ps.end()) {
                throw IpamError("IPAM: " + addr.str() + " is not in any IP pool");
            }
            if (in_any(res, addr)) {
                throw IpamError("IPAM: " + addr.str() + " is reserved");
            }
            Cidr c = Cidr::containing(addr, p->block_size);
            uint32_t ord = static_cast<uint32_t>(c.index_of(addr));
            for (int n = 0;; conflict(n, "assigning " + addr.str())) {
                auto b = load<Block>(key_block(c));
                if (!b) {
                    claim(req.node, c);
                    continue;
                }
                if (b->value.affinity && *b->value.affinity != req.node && cfg.strict_affinity) {
                    throw IpamError("IPAM: " + addr.str() + " is in block " + c.str() +
                                    " of node " + *b->value.affinity + " (strict affinity)");
                }
                Block &blk = b->value;
                auto it = std::find(blk.unallocated.begin(), blk.unallocated.end(), ord);
                if (it == blk.unallocated.end()) {
                    throw IpamError("IPAM: " + addr.str() + " is already in use by " +
                                    (blk.allocations[ord] ? blk.allocations[ord]->handle : "?"));
                }
                blk.unallocated.erase(it);
                Attributes attrs = req.attrs;
                attrs.handle = req.handle;
                if (attrs.node.empty()) {
                    attrs.node = req.node;
                }
                blk.allocations[ord] = attrs;
                blk.empty_since_ms = 0;
                auto h = load<Handle>(key_handle(req.handle));
                Handle hv = h ? h->value : Handle{req.handle, {}};
                hv.blocks[c.str()]++;
                if (store_.txn({{key_block(c), b->rev}, {key_handle(req.handle), h ? h->rev : 0}},
                               {put(key_block(c), blk), put(key_handle(req.handle), hv)})) {
                    got.push_back(addr);
                    break;
                }
            }
        }
    } catch (...) {
        release_all(got);
        throw;
    }
    for (const auto &a : got) {
        (a.family() == net::Family::kIp4 ? out.v4 : out.v6).push_back(a);
    }
}

net::IpAddr Allocator::assign_tunnel_address(const std::string &node, const Labels &labels,
                                             net::Family f) {
    const std::string h = tunnel_handle(node, f);
    for (const auto &a : addresses(h)) {
        if (a.family() == f) {
            return a;
        }
    }
    AssignRequest req;
    req.handle = h;
    req.attrs.node = node;
    req.node = node;
    req.node_labels = labels;
    req.use = AllowedUse::kTunnel;
    (f == net::Family::kIp4 ? req.num4 : req.num6) = 1;
    auto a = assign(req);
    return f == net::Family::kIp4 ? a.v4.at(0) : a.v6.at(0);
}

// ---- release ----

std::optional<Cidr> Allocator::block_of(const net::IpAddr &addr) {
    for (const auto &p : pools()) {
        if (p.cidr.contains(addr)) {
            return Cidr::containing(addr, p.block_size);
        }
    }
    for (const auto &kv : store_.list(opts_.prefix + "blocks/")) {
        auto c = json::parse(kv.value).at("cidr").get<Cidr>();
        if (c.contains(addr)) {
            return c;
        }
    }
    return std::nullopt;
}

Allocator::Step Allocator::release_one(const net::IpAddr &addr, bool &found) {
    found = false;
    auto c = block_of(addr);
    if (!c) {
        return Step::kDone;
    }
    auto b = load<Block>(key_block(*c));
    if (!b) {
        return Step::kDone;
    }
    Block &blk = b->value;
    uint32_t ord = static_cast<uint32_t>(c->index_of(addr));
    if (!blk.allocations[ord]) {
        return Step::kDone;
    }
    const std::string handle = blk.allocations[ord]->handle;
    blk.allocations[ord].reset();
    blk.unallocated.push_back(ord);
    std::vector<Compare> cmps{{key_block(*c), b->rev}};
    std::vector<Operation> ops;
    if (blk.empty()) {
        blk.empty_since_ms = now();
    }
    // An empty block nobody holds has no reason to stay.
    ops.push_back(blk.empty() && !blk.affinity ? del(key_block(*c)) : put(key_block(*c), blk));
    auto h = load<Handle>(key_handle(handle));
    if (h) {
        cmps.push_back({key_handle(handle), h->rev});
        auto hit = h->value.blocks.find(c->str());
        if (hit != h->value.blocks.end() && --hit->second <= 0) {
            h->value.blocks.erase(hit);
        }
        ops.push_back(h->value.blocks.empty() ? del(key_handle(handle))
                                              : put(key_handle(handle), h->value));
    } else {
        cmps.push_back({key_handle(handle), 0});
    }
    if (!store_.txn(cmps, ops)) {
        return Step::kConflict;
    }
    found = true;
    return Step::kDone;
}

bool Allocator::release_address(const net::IpAddr &addr) {
    for (int n = 0;; conflict(n, "releasing " + addr.str())) {
        bool found = false;
        if (release_one(addr, found) == Step::kDone) {
            return found;
        }
    }
}

void Allocator::release_all(const std::vector<net::IpAddr> &addrs) {
    for (const auto &a : addrs) {
        release_address(a);
    }
}

int Allocator::release_handle(const std::string &handle) {
    int released = 0;
    for (int n = 0;; conflict(n, "releasing handle " + handle)) {
        auto h = load<Handle>(key_handle(handle));
        if (!h || h->value.blocks.empty()) {
            if (h) {
                store_.txn({{key_handle(handle), h->rev}}, {del(key_handle(handle))});
            }
            return released;
        }
        const std::string bstr = h->value.blocks.begin()->first;
        Cidr c = *Cidr::parse(bstr);
        auto b = load<Block>(key_block(c));
        int count = 0;
        std::vector<Compare> cmps{{key_handle(handle), h->rev}};
        std::vector<Operation> ops;
        if (b) {
            Block &blk = b->value;
            for (uint32_t i = 0; i < blk.allocations.size(); ++i) {
                if (blk.allocations[i] && blk.allocations[i]->handle == handle) {
                    blk.allocations[i].reset();
                    blk.unallocated.push_back(i);
                    ++count;
                }
            }
            if (blk.empty()) {
                blk.empty_since_ms = now();
            }
            cmps.push_back({key_block(c), b->rev});
            ops.push_back(blk.empty() && !blk.affinity ? del(key_block(c))
                                                       : put(key_block(c), blk));
        }
        h->value.blocks.erase(bstr);
        ops.push_back(h->value.blocks.empty() ? del(key_handle(handle))
                                              : put(key_handle(handle), h->value));
        if (store_.txn(cmps, ops)) {
            released += count;
            n = -1;  // progress: a fresh retry budget for the next block
        }
    }
}

bool Allocator::release_block_affinity(const std::string &node, const Cidr &c, bool require_empty) {
    const std::string akey = key_affinity(node, c);
    const std::string bkey = key_block(c);
    for (int n = 0;; conflict(n, "releasing " + c.str() + " of " + node)) {
        auto a = load<Affinity>(akey);
        if (!a) {
            return false;
        }
        auto b = load<Block>(bkey);
        if (b && require_empty && !b->value.empty()) {
            if (a->value.state == AffinityState::kPendingDeletion) {
                a->value.state = AffinityState::kConfirmed;
                store_.txn({{akey, a->rev}}, {put(akey, a->value)});
            }
            return false;
        }
        // Phase 1: the node stops allocating from it.
        if (a->value.state != AffinityState::kPendingDeletion) {
            a->value.state = AffinityState::kPendingDeletion;
            if (!store_.txn({{akey, a->rev}}, {put(akey, a->value)})) {
                continue;
            }
            a = load<Affinity>(akey);
            if (!a) {
                return false;
            }
            b = load<Block>(bkey);
            if (b && require_empty && !b->value.empty()) {
                continue;  // borrowed from meanwhile: back to confirmed above
            }
        }
        // Phase 2: the block (if empty, else its affinity) and the affinity go.
        std::vector<Compare> cmps{{akey, a->rev}};
        std::vector<Operation> ops{del(akey)};
        if (b && b->value.affinity == node) {
            cmps.push_back({bkey, b->rev});
            if (b->value.empty()) {
                ops.push_back(del(bkey));
            } else {
                b->value.affinity.reset();
                ops.push_back(put(bkey, b->value));
            }
        }
        if (store_.txn(cmps, ops)) {
            return true;
        }
    }
}

int Allocator::release_empty_blocks(const std::string &node) {
    int released = 0;
    for (auto &a : load_all<Affinity>("affinity/" + node + "/")) {
        if (a.value.state != AffinityState::kConfirmed) {
            continue;
        }
        auto b = load<Block>(key_block(a.value.cidr));
        if (!b || !b->value.empty() ||
            now() - b->value.empty_since_ms < opts_.empty_block_grace_ms) {
            continue;
        }
        if (release_block_affinity(node, a.value.cidr, true)) {
            ++released;
        }
    }
    return released;
}

void Allocator::release_node(const std::string &node) {
    for (auto &a : load_all<Affinity>("affinity/" + node + "/")) {
        release_block_affinity(node, a.value.cidr, false);
    }
}

// ---- queries ----

std::vector<PoolUsage> Allocator::pool_usage() {
    std::vector<PoolUsage> out;
    auto bs = blocks();
    for (auto &p : pools()) {
        PoolUsage u{p, 0, 0, 0};
        for (const auto &b : bs) {
            if (b.pool == p.name) {
                ++u.blocks;
                u.used += b.used;
                u.free_in_blocks += b.free;
            }
        }
        out.push_back(std::move(u));
    }
    return out;
}

std::vector<BlockInfo> Allocator::blocks() {
    auto ps = pools();
    std::vector<BlockInfo> out;
    for (auto &b : load_all<Block>("blocks/")) {
        BlockInfo i;
        i.cidr = b.value.cidr;
        for (const auto &p : ps) {
            if (p.cidr.contains(b.value.cidr)) {
                i.pool = p.name;
            }
        }
        i.node = b.value.affinity;
        if (i.node) {
            if (auto a = load<Affinity>(key_affinity(*i.node, i.cidr))) {
                i.state = a->value.state;
            }
        }
        i.used = b.value.used();
        i.free = b.value.free();
        out.push_back(std::move(i));
    }
    return out;
}

std::vector<AllocationInfo> Allocator::allocations() {
    std::vector<AllocationInfo> out;
    for (auto &b : load_all<Block>("blocks/")) {
        for (uint32_t i = 0; i < b.value.allocations.size(); ++i) {
            if (const auto &a = b.value.allocations[i]) {
                out.push_back({b.value.cidr.nth(i), *a, b.value.cidr,
                               !b.value.affinity || *b.value.affinity != a->node});
            }
        }
    }
    return out;
}

std::vector<net::IpAddr> Allocator::addresses(const std::string &handle) {
    std::vector<net::IpAddr> out;
    auto h = load<Handle>(key_handle(handle));
    if (!h) {
        return out;
    }
    for (const auto &[bstr, count] : h->value.blocks) {
        auto b = load<Block>(key_block(*Cidr::parse(bstr)));
        if (!b) {
            continue;
        }
        for (uint32_t i = 0; i < b->value.allocations.size(); ++i) {
            if (b->value.allocations[i] && b->value.allocations[i]->handle == handle) {
                out.push_back(b->value.cidr.nth(i));
            }
        }
    }
    return out;
}

std::vector<Cidr> Allocator::confirmed_blocks(const std::string &node) {
    std::vector<Cidr> out;
    for (auto &a : load_all<Affinity>("affinity/" + node + "/")) {
        if (a.value.state == AffinityState::kConfirmed) {
            auto b = load<Block>(key_block(a.value.cidr));
            if (b && b->value.affinity == node) {
                out.push_back(a.value.cidr);
            }
        }
    }
    return out;
}

NodeRoutes Allocator::node_routes(const std::string &node) {
    NodeRoutes r;
    r.blocks = confirmed_blocks(node);
    for (const auto &a : allocations()) {
        if (a.attrs.node == node && a.borrowed) {
            r.borrowed.push_back(a.addr);
        }
    }
    return r;
}

std::map<std::string, NodeRoutes> Allocator::cluster_routes() {
    std::map<std::string, NodeRoutes> out;
    const auto blocks = load_all<Block>("blocks/");
    std::map<Cidr, const Block *> by_cidr;
    for (const auto &b : blocks) {
        by_cidr[b.value.cidr] = &b.value;
    }
    // A confirmed claim counts while the block names the same node (as confirmed_blocks()).
    for (const auto &a : load_all<Affinity>("affinity/")) {
        auto it = by_cidr.find(a.value.cidr);
        if (a.value.state == AffinityState::kConfirmed && it != by_cidr.end() &&
            it->second->affinity == a.value.node) {
            out[a.value.node].blocks.push_back(a.value.cidr);
        }
    }
    // Borrowed: allocated to a node other than the block's (as allocations() marks them).
    for (const auto &b : blocks) {
        for (uint32_t i = 0; i < b.value.allocations.size(); ++i) {
            const auto &a = b.value.allocations[i];
            if (a && !a->node.empty() && b.value.affinity != a->node) {
                out[a->node].borrowed.push_back(b.value.cidr.nth(i));
            }
        }
    }
    return out;
}

std::vector<Finding> Allocator::check() {
    // One list of the whole prefix: a consistent snapshot on stores where
    // a list is atomic.
    std::vector<IpPool> ps;
    std::vector<Block> bs;
    std::map<std::string, Affinity> affs;  // key: node + " " + cidr
    std::map<std::string, Handle> handles;
    for (const auto &kv : store_.list(opts_.prefix)) {
        std::string sub = kv.key.substr(opts_.prefix.size());
        auto j = json::parse(kv.value);
        if (sub.starts_with("pools/")) {
            ps.push_back(j.get<IpPool>());
        } else if (sub.starts_with("blocks/")) {
            bs.push_back(j.get<Block>());
        } else if (sub.starts_with("affinity/")) {
            auto a = j.get<Affinity>();
            affs[a.node + " " + a.cidr.str()] = a;
        } else if (sub.starts_with("handles/")) {
            auto h = j.get<Handle>();
            handles[h.id] = h;
        }
    }
    std::vector<Finding> out;
    std::map<std::string, std::map<std::string, int>> held;  // handle -> block -> count
    std::map<net::IpAddr, std::string> seen;                 // address -> block
    for (const Block &b : bs) {
        const std::string bstr = b.cidr.str();
        std::set<uint32_t> free(b.unallocated.begin(), b.unallocated.end());
        bool corrupt = free.size() != b.unallocated.size();
        for (uint32_t i = 0; i < b.allocations.size(); ++i) {
            corrupt |= (b.allocations[i].has_value() == free.contains(i));
        }
        if (corrupt) {
            out.push_back(
                {Finding::Kind::kCorruptBlock, bstr, "free list and allocations disagree"});
        }
        bool in_pool = std::any_of(ps.begin(), ps.end(),
                                   [&](const IpPool &p) { return p.cidr.contains(b.cidr); });
        for (uint32_t i = 0; i < b.allocations.size(); ++i) {
            if (!b.allocations[i]) {
                continue;
            }
            net::IpAddr a = b.cidr.nth(i);
            held[b.allocations[i]->handle][bstr]++;
            if (!in_pool) {
                out.push_back({Finding::Kind::kOutsidePool, a.str(),
                               "allocated to " + b.allocations[i]->handle + " in block " + bstr +
                                   " which is in no pool"});
            }
            auto [it, fresh] = seen.emplace(a, bstr);
            if (!fresh) {
                out.push_back({Finding::Kind::kDoubledAddress, a.str(),
                               "allocated in blocks " + it->second + " and " + bstr});
            }
        }
        if (b.affinity) {
            auto it = affs.find(*b.affinity + " " + bstr);
            if (it == affs.end()) {
                out.push_back({Finding::Kind::kAffinityMismatch, bstr,
                               "block is affine to " + *b.affinity + " which has no claim on it"});
            } else if (it->second.state == AffinityState::kPending &&
                       now() - it->second.claimed_at_ms >= opts_.pending_claim_timeout_ms) {
                out.push_back({Finding::Kind::kStalePending, bstr,
                               "claim by " + *b.affinity + " never confirmed"});
            }
        }
    }
    for (const auto &[k, a] : affs) {
        auto b = std::find_if(bs.begin(), bs.end(),
                              [&cidr = a.cidr](const Block &x) { return x.cidr == cidr; });
        if (a.state == AffinityState::kConfirmed && (b == bs.end() || b->affinity != a.node)) {
            out.push_back({Finding::Kind::kAffinityMismatch, a.cidr.str(),
                           "confirmed for " + a.node + " but the block " +
                               (b == bs.end() ? std::string("does not exist")
                                              : "is affine to " + b->affinity.value_or("nobody"))});
        } else if (a.state == AffinityState::kPending && b == bs.end() &&
                   now() - a.claimed_at_ms >= opts_.pending_claim_timeout_ms) {
            out.push_back({Finding::Kind::kStalePending, a.cidr.str(),
                           "claim by " + a.node + " never completed"});
        }
    }
    for (const auto &[id, h] : handles) {
        for (const auto &[bstr, count] : h.blocks) {
            int have = held.count(id) && held[id].count(bstr) ? held[id][bstr] : 0;
            if (count > have) {
                out.push_back({Finding::Kind::kLeakedHandle, id,
                               "counts " + std::to_string(count) + " in " + bstr +
                                   ", block holds " + std::to_string(have)});
            }
        }
    }
    for (const auto &[id, per_block] : held) {
        for (const auto &[bstr, have] : per_block) {
            auto h = handles.find(id);
            int count =
                h == handles.end() || !h->second.blocks.count(bstr) ? 0 : h->second.blocks.at(bstr);
            if (count < have) {
                out.push_back({Finding::Kind::kMissingHandle, id,
                               std::to_string(have) + " addresses in " + bstr + ", handle counts " +
                                   std::to_string(count)});
            }
        }
    }
    // Blocks that overlap each other double every address they share.
    for (size_t i = 0; i < bs.size(); ++i) {
        for (size_t j = i + 1; j < bs.size(); ++j) {
            if (bs[i].cidr.overlaps(bs[j].cidr)) {
                out.push_back({Finding::Kind::kDoubledAddress, bs[i].cidr.str(),
                               "overlaps block " + bs[j].cidr.str()});
            }
        }
    }
    return out;
}

}  // namespace fwd::ipam
