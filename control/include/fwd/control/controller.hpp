// The control thread: the only writer of the tables the workers read.
//
// The Controller is the core the control-plane modules (module.hpp) plug
// into; it holds no feature's state and knows no op:
//   - the control thread's loop: API calls from one bounded single-producer
//     ring, the punt rings of the workers (dispatched by PuntReason to the
//     module that registered for it), each module's poll() and wait_fd();
//   - the op table: every module's ops, their argument checks, which thread
//     runs them; call() runs one, answering only once its change is live in
//     every worker;
//   - the workers' command rings (worker_do, post_any) and RCU grace periods
//     (defer / reclaim): nothing a worker may still read is freed before a
//     grace period passed.
// A full ring is back-pressure on its producer and is counted; nothing is
// dropped silently.
#pragma once

#include <rte_mempool.h>

#include <array>
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fwd/control/config.hpp"
#include "fwd/control/module.hpp"
#include "fwd/control/ring.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/dp/worker.hpp"

namespace fwd::control {

class Controller final : public ControlContext {
  public:
    // Makes every registered module (their constructors register ops).
    Controller(const NodeConfig &cfg, dp::Tables &tables, std::vector<dp::Worker *> workers,
               rte_mempool *pool);
    ~Controller() override;
    Controller(const Controller &) = delete;
    Controller &operator=(const Controller &) = delete;

    // Before the workers start: every module's start(), in dependency order.
    // Throws with a message; the modules started before are stopped again
    // (this thread runs the workers' commands for them: they never ran).
    void start();
    // The control thread runs / is about to stop: every module's online() /
    // offline() (main thread).
    void online();
    void offline();
    // After the control thread stopped: every module's stop(), in reverse,
    // then the punted packets nobody took. Workers must still run.
    void shutdown();

    // The control thread's loop; returns after stop().
    void run();
    void stop();

    // The ops served on the API socket (every op but the internal ones).
    std::vector<std::string> api_ops() const;

    // ControlContext
    const NodeConfig &cfg() const override { return cfg_; }
    dp::Tables &tables() override { return tables_; }
    const std::vector<dp::Worker *> &workers() const override { return workers_; }
    rte_mempool *pool() const override { return pool_; }
    void add_op(OpDef op) override;
    nlohmann::json call(const std::string &op, const nlohmann::json &args) override;
    Module *find_module(std::string_view name) const override;
    const std::vector<Module *> &modules() const override { return order_; }
    void worker_do(unsigned w, dp::WorkerCommand c) override;
    bool post_any(dp::WorkerCommand c) override;
    using ControlContext::least_loaded_worker;
    unsigned least_loaded_worker(const std::vector<bool> &taken) const override;
    void defer(std::function<void()> f) override;
    void reclaim() override;
    void on_punt(dp::PuntReason r, std::function<void(rte_mbuf *)> h) override;
    void wake() override;

    void core_counters(nlohmann::json &out) const override;
    void request_stop() override;
    // How request_stop() stops the process (the daemon: a SIGTERM to itself);
    // unset, request_stop() refuses.
    void set_stop_request(std::function<void()> f) { stop_request_ = std::move(f); }

  private:
    struct Call {
        const OpDef *op;
        const nlohmann::json *args;
        std::promise<nlohmann::json> reply;
    };
    // Checks args against the op's fields, then runs it (on the caller's thread).
    static nlohmann::json execute(const OpDef &op, const nlohmann::json &args);
    bool drain_punts();  // true when it took any
    struct Counters {
        uint64_t worker_ring_full = 0;  // command ring to a worker full (counted, retried)
        uint64_t punt_unhandled = 0;    // punted for a reason no module handles
    };
    bool on_control_thread() const;

    const NodeConfig cfg_;               // immutable
    dp::Tables &tables_;                 // control writes; workers read (tables.hpp rules)
    std::vector<dp::Worker *> workers_;  // their command rings: control produces
    rte_mempool *pool_;                  // thread safe (per-lcore caches)

    // Made in the constructor, in start order; fixed afterwards.
    std::vector<std::unique_ptr<Module>> owned_;
    std::vector<Module *> order_;
    std::map<std::string, Module *, std::less<>> by_name_;
    size_t started_ = 0;  // modules whose start() returned (main thread)
    std::function<void()> stop_request_;
    // start() failed before any worker ran: worker_do runs their commands here.
    bool unstarted_workers_ = false;
    // Filled by the module constructors, read-only afterwards (any thread).
    std::map<std::string, OpDef, std::less<>> ops_;
    std::array<std::function<void(rte_mbuf *)>, dp::kPuntReasonCount> punt_handlers_;

    // Control thread.
    std::vector<std::function<void()>> deferred_;
    unsigned tx_rr_ = 0;
    unsigned quiet_passes_ = 0;  // loop passes with nothing to do (poll back-off)
    Counters cnt_;
    std::atomic<std::thread::id> control_tid_{};  // set by run()

    // API callers -> control. The ring has one producer at a time: call()
    // holds call_mu_ while pushing.
    EventRing<Call *, 64> api_ring_;
    std::mutex call_mu_;
    int wake_fd_ = -1;                 // eventfd: any producer writes, control reads
    std::atomic<bool> running_{true};  // main thread writes (stop), control reads
};

}  // namespace fwd::control
