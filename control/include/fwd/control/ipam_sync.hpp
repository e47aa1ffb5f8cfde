// IPAM sync: what the store says this node owns becomes routes, in the
// dataplane and in BGP.
//
// A thread polls the store's revision every sync_ms. When it moved (or the
// last round failed) it reads the node's routes (Allocator::node_routes: its
// confirmed blocks, and /32 or /128 for addresses it borrowed from other
// nodes' blocks) and, if they changed:
//  1. hands the whole set to `apply` (the daemon installs them as blackhole
//     routes of source ipam: traffic for an address of ours without a pod is
//     dropped here, not sent back to the uplink; pods' /32 and /128 win);
//  2. rewrites the BIRD include file (temp file, fsync, rename), which
//     defines the static protocols fwd_ipam4 and fwd_ipam6 with those routes
//     as blackholes, and runs `birdc -s <socket> configure` so BIRD
//     announces them. BIRD not answering is retried every round.
// Every release_empty_blocks_s / 4 (at most every minute) it also gives back
// the node's blocks that have been empty for release_empty_blocks_s.
//
// Followers: features whose state also comes from the store (the overlay's
// routes to other nodes' blocks) run on the same thread after the node's own
// routes, so the store's revision is polled once: each is called when the
// revision moved or its own last call threw, and its failures are counted
// under its name.
//
// A failure (store unreachable, apply refused, birdc failing) is counted and
// kept as last_error; the thread retries on the next round and never stops
// the daemon. The include file is written at start() when it does not exist
// (empty protocols, so BIRD can start), and never with an unread store.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fwd/control/config.hpp"
#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/store.hpp"

namespace fwd::control {

// The BIRD 2 include file for a node's routes: protocol static fwd_ipam4 and
// fwd_ipam6, every route a blackhole. Deterministic (sorted).
std::string bird_include_text(const std::string &node, const std::string &store,
                              const ipam::NodeRoutes &routes);

// The prefixes of a node's routes: blocks as they are, borrowed addresses as
// /32 or /128; sorted, IPv4 first.
std::vector<ipam::Cidr> node_route_prefixes(const ipam::NodeRoutes &routes);

// Helpers shared with the BGP module (bgp_module.cpp), which keeps BIRD's main file.
// Runs argv with stdout and stderr captured; kills it after timeout_ms. Returns the exit
// status (-1 on timeout) and the output.
std::pair<int, std::string> run_capture(const std::vector<std::string> &argv, int timeout_ms);
// Newlines as spaces, trailing blanks cut.
std::string one_line(std::string s);
// Writes file whole or not at all: a temporary beside it, fsync, rename.
void write_file_atomic(const std::string &file, const std::string &text, int mode);

class IpamSync {
  public:
    // Installs the complete set of ipam routes (replacing the previous set);
    // throws on failure.
    using Apply = std::function<void(const std::vector<ipam::Cidr> &)>;

    // store: from open_store(cfg.store) (or any Store, for tests).
    IpamSync(const IpamNodeConfig &cfg, std::string node, std::shared_ptr<ipam::Store> store,
             Apply apply, ipam::AllocatorOptions opts = {});
    ~IpamSync();
    IpamSync(const IpamSync &) = delete;
    IpamSync &operator=(const IpamSync &) = delete;

    // A follower's work for one revision, on the sync's thread; throws on
    // failure (retried next round). The allocator is the sync's own.
    using FollowFn = std::function<void(ipam::Store &, ipam::Allocator &, int64_t revision)>;
    // Before start().
    void follow(std::string name, FollowFn fn);

    // Writes the include file if missing, then starts the thread. The first
    // round runs at once.
    void start();
    void stop();
    // Runs one round now on the calling thread (tests; not with start()).
    void sync_once();
    // Wakes the thread for a round before its period ends.
    void kick();

    // Counters and the current state, for `fwdctl node` / stats.
    nlohmann::json status() const;

  private:
    void loop();
    void round();
    void run_followers(int64_t rev);
    void write_include(const std::string &text);
    void reconfigure_bird();

    IpamNodeConfig cfg_;
    std::string node_;
    std::shared_ptr<ipam::Store> store_;
    ipam::Allocator alloc_;
    Apply apply_;

    // Owned by the sync thread (or the sync_once caller).
    int64_t seen_revision_ = -1;
    bool applied_ok_ = false;
    bool bird_dirty_ = false;
    std::string include_text_;  // what the file holds, as written by us
    std::vector<ipam::Cidr> applied_;
    int64_t last_gc_ms_ = 0;

    // Shared with status() and stop(): guarded by mu_.
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool kicked_ = false;
    struct Counters {
        uint64_t rounds = 0;  // rounds that read the routes (the revision moved)
        uint64_t polls = 0;   // revision polls
        uint64_t applies = 0;
        uint64_t bird_reloads = 0;
        uint64_t errors = 0;
        uint64_t blocks_released = 0;
    } cnt_;
    int64_t revision_ = 0;
    size_t blocks_ = 0;
    size_t borrowed_ = 0;
    std::string last_error_;  // the last failure, kept after recovery
    bool last_ok_ = false;    // the last round succeeded
    struct Follower {
        std::string name;
        FollowFn fn;
        // [sync thread] the revision it last ran for without failing (-1: none)
        int64_t done_revision = -1;
        // guarded by mu_
        uint64_t runs = 0;
        uint64_t errors = 0;
        std::string last_error;
        bool ok = false;
    };
    std::vector<Follower> followers_;  // fixed once started
    std::thread thread_;
};

}  // namespace fwd::control
