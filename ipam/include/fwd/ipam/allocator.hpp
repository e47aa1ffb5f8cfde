// The allocator: Calico's block-affinity IPAM over any Store.
//
// Keys under opts.prefix (default "/dpdk-fwd/ipam/v1/"):
//   pools/<name>            IpPool
//   blocks/<cidr, '/'->'-'> Block (one allocation slot per address)
//   affinity/<node>/<cidr>  Affinity (pending -> confirmed -> pendingDeletion)
//   handles/<handle>        Handle (address count per block)
//   reservations/<name>     Reservation
//   config                  IpamConfig
// Every write is a compare-and-swap transaction on the mod revisions it read;
// an assign() writes all its addresses (both families), their blocks and the
// handle in one transaction, so a crash never leaves one without the others.
// A conflict re-reads and retries, at most opts.max_retries times, then
// throws ConflictError.
//
// Not thread-safe itself (one Allocator per thread); any number of
// Allocators, in any processes, may share one store. An Allocator remembers
// the block each node last allocated from and what it last read of each
// block (by mod revision), so an allocation usually reads and parses one
// block per family instead of every block of the node. Both only choose
// where to try: the compare-and-swap on what was read decides.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fwd/ipam/model.hpp"
#include "fwd/ipam/store.hpp"
#include "fwd/label/selector.hpp"

namespace fwd::ipam {

// A node's labels, as a pool's nodeSelector reads them (the selector language is common/'s).
using Labels = label::Labels;

// No address left: names the family and the pools tried. Nothing was allocated.
class ExhaustedError : public IpamError {
  public:
    ExhaustedError(net::Family f, std::vector<std::string> pools, const std::string &why);
    net::Family family() const { return family_; }
    const std::vector<std::string> &pools() const { return pools_; }

  private:
    net::Family family_;
    std::vector<std::string> pools_;
};

// Too many conflicting writes in a row.
class ConflictError : public IpamError {
  public:
    using IpamError::IpamError;
};

struct AllocatorOptions {
    std::string prefix = "/dpdk-fwd/ipam/v1/";
    int max_retries = 1000;
    // A pending claim older than this was left by a crashed claimer.
    int64_t pending_claim_timeout_ms = 60'000;
    // An affine block empty for this long is given back.
    int64_t empty_block_grace_ms = 60'000;
    // Milliseconds; default: the system clock.
    std::function<int64_t()> clock;
};

struct AssignRequest {
    std::string handle;  // e.g. pod_handle(container_id)
    Attributes attrs;    // attrs.handle is set from `handle`
    std::string node;
    Labels node_labels;  // matched against each pool's nodeSelector
    int num4 = 0;
    int num6 = 0;
    // Pool names or CIDRs (the ipv4pools / ipv6pools annotations); empty: every
    // enabled pool whose nodeSelector matches the node.
    std::vector<std::string> pools4;
    std::vector<std::string> pools6;
    // Fixed addresses (the ipAddrs annotation); when set, num4/num6 are ignored.
    std::vector<net::IpAddr> fixed;
    AllowedUse use = AllowedUse::kWorkload;
};

struct Assignment {
    std::vector<net::IpAddr> v4;
    std::vector<net::IpAddr> v6;
};

struct BlockInfo {
    Cidr cidr;
    std::string pool;                    // "" when in no pool
    std::optional<std::string> node;     // the block's affinity
    std::optional<AffinityState> state;  // of that node's affinity record
    int used = 0;
    int free = 0;
};

struct AllocationInfo {
    net::IpAddr addr;
    Attributes attrs;
    Cidr block;
    bool borrowed = false;  // attrs.node differs from the block's affinity
};

struct PoolUsage {
    IpPool pool;
    int blocks = 0;
    uint64_t used = 0;
    uint64_t free_in_blocks = 0;
};

// What a node advertises: its confirmed blocks and, as /32 or /128, the
// addresses it borrowed from other nodes' blocks.
struct NodeRoutes {
    std::vector<Cidr> blocks;
    std::vector<net::IpAddr> borrowed;
};

struct Finding {
    enum class Kind {
        kLeakedHandle,      // a handle counts addresses no block holds
        kMissingHandle,     // allocations whose handle record is missing or short
        kDoubledAddress,    // an address in two blocks
        kAffinityMismatch,  // block and affinity record disagree
        kStalePending,      // a pending claim past its timeout
        kOutsidePool,       // allocations in a block inside no pool
        kCorruptBlock,      // free list and allocations disagree
    };
    Kind kind;
    std::string subject;  // handle, address or block
    std::string detail;
};
std::string_view to_string(Finding::Kind k);

class Allocator {
  public:
    explicit Allocator(Store &store, AllocatorOptions opts = {});

    // Pools. add/update validate (Calico's rules, no overlap, cidr and
    // blockSize immutable) and throw PoolError. delete refuses a pool with
    // allocations; its empty blocks and their affinities go with it.
    void add_pool(const IpPool &pool);
    void update_pool(const IpPool &pool);
    void delete_pool(const std::string &name);
    // Several pool changes and the IPAM configuration in one transaction (fwdctl
    // apply / delete -f): validated against the pools as they are at that
    // revision and against each other; all or nothing.
    struct PoolChanges {
        std::vector<IpPool> put;          // created or updated
        std::vector<std::string> remove;  // refused while a block of the pool holds addresses
        std::optional<IpamConfig> config;
    };
    void apply(const PoolChanges &c);
    std::vector<IpPool> pools();
    std::optional<IpPool> pool(const std::string &name);

    IpamConfig config();
    void set_config(const IpamConfig &c);
    void add_reservation(const Reservation &r);
    void delete_reservation(const std::string &name);
    std::vector<Reservation> reservations();

    // All or nothing: on any failure no address is taken (blocks claimed on
    // the way stay claimed) and the error is rethrown (ExhaustedError,
    // IpamError, ConflictError).
    Assignment assign(const AssignRequest &req);
    // The node's tunnel address of family f (handle vxlan-tunnel-addr-<node> or
    // vxlan-v6-tunnel-addr-<node>, pools allowing Tunnel); the existing one if any.
    net::IpAddr assign_tunnel_address(const std::string &node, const Labels &labels, net::Family f);
    // Number of addresses released.
    int release_handle(const std::string &handle);
    bool release_address(const net::IpAddr &addr);

    // Claims `block` (a block of a pool) for node: pending, block written,
    // confirmed. False when another node holds it.
    bool claim_block(const std::string &node, const Cidr &block);
    // pendingDeletion first, then the block (if empty) and the affinity go.
    // A non-empty block keeps its allocations and loses its affinity, unless
    // require_empty (then false is returned and nothing changes).
    bool release_block_affinity(const std::string &node, const Cidr &block,
                                bool require_empty = true);
    // Gives back node's blocks empty for at least the grace period; returns how many.
    int release_empty_blocks(const std::string &node);
    // Every affinity of the node (a node leaving).
    void release_node(const std::string &node);

    // Queries (for `fwdctl ipam show`).
    std::vector<PoolUsage> pool_usage();
    std::vector<BlockInfo> blocks();
    std::vector<AllocationInfo> allocations();
    std::vector<net::IpAddr> addresses(const std::string &handle);
    std::vector<Cidr> confirmed_blocks(const std::string &node);
    NodeRoutes node_routes(const std::string &node);
    // node_routes() of every node that has a confirmed block or a borrowed address, from one
    // listing of the blocks and one of the affinities, not a read per node (what the overlay
    // routes need each time the cluster changes).
    std::map<std::string, NodeRoutes> cluster_routes();
    // Like `calicoctl ipam check`; empty when consistent.
    std::vector<Finding> check();

    const AllocatorOptions &options() const { return opts_; }

  private:
    struct Ctx;
    struct Draft;
    // What an assign() reads once for both families.
    struct Shared {
        std::vector<IpPool> pools;
        std::vector<Cidr> reserved;
        IpamConfig config;
    };
    template <typename T>
    struct Versioned {
        T value;
        int64_t rev = 0;
    };
    enum class Step { kDone, kProgress, kConflict, kExhausted };
    // What this Allocator last read of a block, by key. A key's value at a
    // given mod revision never changes, so while a block's revision stays
    // the same a scan can skip it (full, or not the node's) without fetching
    // and parsing it again.
    struct BlockSeen {
        int64_t rev = 0;
        std::optional<std::string> affinity;
        int free = 0;
        int size = 0;
    };
    // A block as last read or written here, stored and parsed.
    struct BlockText {
        std::string text;
        Block block;
    };
    static constexpr size_t kBlockTexts = 16;
    // The block a node last allocated from (per family), tried before any
    // scan, and the mod revision of the node's confirmed affinity record for
    // it, compared by the allocation's transaction.
    struct Hint {
        Cidr cidr;
        int64_t affinity_rev = 0;
    };

    int64_t now() const { return opts_.clock(); }
    std::string key_pool(const std::string &name) const;
    std::string key_block(const Cidr &c) const;
    std::string key_affinity(const std::string &node, const Cidr &c) const;
    std::string key_handle(const std::string &h) const;
    template <typename T>
    std::optional<Versioned<T>> load(const std::string &key);
    template <typename T>
    std::vector<Versioned<T>> load_all(const std::string &sub);
    void conflict(int &n, const std::string &what);
    void removal(const IpPool &p, const std::vector<Versioned<Block>> &blocks,
                 const std::vector<Versioned<Affinity>> &affinities, std::vector<Compare> &cmps,
                 std::vector<Operation> &ops);

    std::vector<IpPool> select_pools(std::vector<IpPool> all, net::Family f,
                                     const std::vector<std::string> &wanted, const Labels &labels,
                                     AllowedUse use);
    std::vector<Cidr> reserved();
    void assign_family(const AssignRequest &req, const Shared &shared, net::Family f, int n,
                       const std::vector<std::string> &wanted, Draft &d);
    bool commit(const AssignRequest &req, const Draft &d);
    Step alloc_one(const Ctx &ctx, Draft &d);
    bool alloc_in_own(const Ctx &ctx, const Cidr &c, int64_t affinity_rev, Draft &d);
    std::optional<Versioned<Block>> draft_block(const Draft &d, const Cidr &c);
    bool take_slot(const Ctx &ctx, Versioned<Block> b, Draft &d);
    Step claim_new_block(const Ctx &ctx);
    std::optional<Versioned<Block>> load_block(const Cidr &c);
    std::map<std::string, int64_t> block_revisions();
    const BlockSeen *seen(const std::string &key, int64_t rev) const;
    std::map<std::string, BlockText>::iterator remember(const std::string &key, std::string text,
                                                        Block b);
    enum class Claim { kClaimed, kConflict, kTaken };
    Claim claim(const std::string &node, const Cidr &block);
    void assign_fixed(const AssignRequest &req, Assignment &out);
    Step release_one(const net::IpAddr &addr, bool &found);
    void release_all(const std::vector<net::IpAddr> &addrs);
    std::optional<Cidr> block_of(const net::IpAddr &addr);

    Store &store_;
    AllocatorOptions opts_;
    std::map<std::string, BlockSeen> seen_;  // pruned to the blocks a scan lists
    std::map<std::pair<std::string, net::Family>, Hint> hints_;
    // A node's block whose commit just lost a race, most often to another
    // allocator of the same node: the next scan tries the node's other blocks
    // with room first, so two allocators of a node drift apart instead of
    // racing for every address.
    std::map<std::pair<std::string, net::Family>, Cidr> contended_;
    std::map<std::string, BlockText> texts_;  // at most kBlockTexts
};

}  // namespace fwd::ipam
