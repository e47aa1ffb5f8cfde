// The control plane as modules (grout's module_register / api_handler): each
// feature registers a Module from its own file, with its state, its API ops
// and its counters. The Controller (controller.hpp) keeps what they share:
// the control thread and its loop, the rings from the API and the workers,
// RCU grace periods and publication, and the op dispatch. It knows no op.
//
//   FWD_ON_LOAD(fwd::control::register_module<RoutesModule>({NeighborsModule::kName}));
//
// Life of a module, all on the main thread unless noted:
//   constructor  registers its ops (ControlContext::add_op) and punt
//                handlers; no ports, no threads yet (the daemon has not
//                decided to start; tests build a Controller and never start it)
//   start()      before the workers and the control thread run, in
//                depends_on order: ports, tables, files. Throw to abort the
//                start (the modules started before are stopped)
//   online()     the control thread runs: threads of the module's own that
//                call ops (the IPAM sync) start here
//   poll()       control thread, every loop pass
//   offline()    before the control thread stops, reverse order
//   stop()       after it stopped, reverse order; the workers still run
//
// Ownership: a module's state belongs to the control thread (or to the main
// thread before start() returned and after offline()), unless the module
// says otherwise. Ops of Thread::kApi run on the API server's thread.
#pragma once

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fwd/control/api.hpp"
#include "fwd/control/config.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/dp/worker.hpp"

namespace fwd::control {

class ControlContext;

// One API op. args lists the fields its arguments may have; the dispatcher
// rejects any other (invalid_argument naming the field and the known ones)
// before fn runs, so an op's fields are written once, here.
struct OpDef {
    enum class Thread : uint8_t {
        kControl,  // on the control thread (the tables' only writer)
        kApi,      // on the API server's thread (slow I/O: the IPAM store)
    };
    std::string name;
    std::vector<std::string> args;
    std::function<nlohmann::json(const nlohmann::json &args)> fn;
    Thread thread = Thread::kControl;
    // Not served on the API socket; only threads of the daemon call it
    // (ControlContext::call), e.g. the IPAM sync's ipam.routes.
    bool internal = false;
};

class Module {
  public:
    virtual ~Module() = default;
    virtual void start() {}
    virtual void online() {}
    virtual bool poll() { return false; }  // true when it did something
    virtual void offline() {}
    virtual void stop() {}
    // A descriptor the control loop waits on for this module (readable:
    // poll() has work); -1: none.
    virtual int wait_fd() const { return -1; }
    // Its part of the node-wide views, on the control thread: counters go
    // into stats.control, describe_node into node.get, describe_tables into
    // tables. Each adds its own keys.
    virtual void counters(nlohmann::json &) const {}
    virtual void describe_node(nlohmann::json &) const {}
    virtual void describe_tables(nlohmann::json &) const {}
};

struct ModuleDef {
    std::string name;                     // [a-z0-9_]
    std::vector<std::string> depends_on;  // modules that start before it (must exist)
    std::function<std::unique_ptr<Module>(ControlContext &)> make;
};

// At load time (FWD_ON_LOAD). Throws std::invalid_argument for a name used twice.
void register_module(ModuleDef d);
const std::vector<ModuleDef> &registered_modules();
// The usual case: a module class T with a kName and a T(ControlContext &).
//   FWD_ON_LOAD(register_module<RoutesModule>({NeighborsModule::kName}));
template <typename T>
void register_module(std::vector<std::string> depends_on) {
    register_module(ModuleDef{
        T::kName, std::move(depends_on),
        [](ControlContext &ctx) -> std::unique_ptr<Module> { return std::make_unique<T>(ctx); }});
}

// What the Controller offers its modules.
class ControlContext {
  public:
    virtual ~ControlContext() = default;

    virtual const NodeConfig &cfg() const = 0;
    virtual dp::Tables &tables() = 0;
    virtual const std::vector<dp::Worker *> &workers() const = 0;
    virtual rte_mempool *pool() const = 0;

    // Ops: from a module's constructor.
    virtual void add_op(OpDef op) = 0;
    // Runs op on its thread and returns its result, from any thread but the
    // control thread (an op running on the control thread calls other
    // modules directly). Throws ApiError.
    virtual nlohmann::json call(const std::string &op, const nlohmann::json &args) = 0;

    // Modules, by the name they registered with; nullptr when not built in.
    virtual Module *find_module(std::string_view name) const = 0;
    // Every module, in start order.
    virtual const std::vector<Module *> &modules() const = 0;
    template <typename T>
    T *find() const {
        return dynamic_cast<T *>(find_module(T::kName));
    }
    // The module T depends on; throws std::logic_error when it is missing.
    template <typename T>
    T &need() const {
        T *m = find<T>();
        if (m == nullptr) {
            throw std::logic_error(std::string("module '") + T::kName + "' is not built in");
        }
        return *m;
    }

    // Workers. worker_do posts c to worker w and waits until it is done
    // (throws ApiError "unavailable" after 5 s); post_any hands a frame to
    // one worker after another (round robin) and is false when every ring
    // is full (counted in worker_ring_full).
    virtual void worker_do(unsigned w, dp::WorkerCommand c) = 0;
    virtual bool post_any(dp::WorkerCommand c) = 0;
    // The worker with the fewest RX queues; with `taken` (a flag per
    // worker), one not taken first (a pod's queues on different workers).
    virtual unsigned least_loaded_worker(const std::vector<bool> &taken) const = 0;
    unsigned least_loaded_worker() const { return least_loaded_worker({}); }
    // A port's RX queues 0..queues-1 to the workers, each to the least loaded
    // one that has none of them yet (all have one: the least loaded), so a
    // pod's queues are read on different workers; returns queue 0's worker.
    // Throws ApiError "unavailable" when a queue finds every worker polling
    // dp::kMaxRxQueues (the queues given so far stay: the caller's undo,
    // retiring the port, takes them back).
    unsigned spread_rx_queues(uint16_t port, uint16_t queues);

    // RCU: f runs after the next grace period (reclaim() waits for it), so
    // no worker still reads what f frees. Control thread.
    virtual void defer(std::function<void()> f) = 0;
    virtual void reclaim() = 0;

    // Packets the workers punted with reason r go to h (control thread),
    // which owns them. One handler per reason.
    virtual void on_punt(dp::PuntReason r, std::function<void(rte_mbuf *)> h) = 0;

    // Wakes the control loop (any thread): a producer of the module's own
    // queued something for poll().
    virtual void wake() = 0;
    // The core's own counters (worker rings, API ring, punts no module took).
    virtual void core_counters(nlohmann::json &out) const = 0;
    // Asks the process to stop as at SIGTERM (the daemon's main thread set
    // how: Controller::set_stop_request); throws ApiError where it cannot.
    virtual void request_stop() = 0;
    // Milliseconds of a monotonic clock.
    static uint64_t now_ms();
};

}  // namespace fwd::control
