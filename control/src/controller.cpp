#include "fwd/control/controller.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <system_error>

#include "api_args.hpp"
#include "fwd/util/order.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

constexpr auto kAckTimeout = std::chrono::seconds(5);
constexpr unsigned kPuntBudget = 256;  // per worker per pass

std::vector<ModuleDef> &module_defs() {
    static std::vector<ModuleDef> defs;
    return defs;
}

}  // namespace

void register_module(ModuleDef d) {
    for (const auto &m : module_defs()) {
        if (m.name == d.name) {
            throw std::invalid_argument("control module '" + d.name + "' is registered twice");
        }
    }
    if (!d.make) {
        throw std::invalid_argument("control module '" + d.name + "' has no make()");
    }
    module_defs().push_back(std::move(d));
}

const std::vector<ModuleDef> &registered_modules() {
    return module_defs();
}

uint64_t ControlContext::now_ms() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
}

unsigned ControlContext::spread_rx_queues(uint16_t port, uint16_t queues) {
    std::vector<bool> used(workers().size(), false);
    unsigned first = 0;
    for (uint16_t q = 0; q < queues; q++) {
        unsigned w = least_loaded_worker(used);
        if (workers()[w]->rx_queue_count() >= dp::kMaxRxQueues) {
            w = least_loaded_worker();  // a worker with one of the port's queues already
        }
        if (workers()[w]->rx_queue_count() >= dp::kMaxRxQueues) {
            throw ApiError("unavailable", "every worker polls " + std::to_string(dp::kMaxRxQueues) +
                                              " RX queues, the most it can: no room for port " +
                                              std::to_string(port) + "'s queue " +
                                              std::to_string(q));
        }
        used[w] = true;
        if (q == 0) {
            first = w;
        }
        worker_do(w, {dp::WorkerCommand::Kind::kAddRxQueue, port, q, 0});
    }
    return first;
}

Controller::Controller(const NodeConfig &cfg, dp::Tables &tables, std::vector<dp::Worker *> workers,
                       rte_mempool *pool)
    : cfg_(cfg), tables_(tables), workers_(std::move(workers)), pool_(pool) {
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
        throw std::system_error(errno, std::generic_category(), "eventfd");
    }
    const auto &defs = registered_modules();
    std::vector<util::OrderItem> items;
    for (const auto &d : defs) {
        items.push_back({d.name, {}, d.depends_on});
    }
    std::vector<size_t> order;
    try {
        order = util::order_by_constraints(items, false);
    } catch (const std::invalid_argument &e) {
        close(wake_fd_);
        throw std::logic_error(std::string("control modules: ") + e.what());
    }
    try {
        for (size_t i : order) {
            owned_.push_back(defs[i].make(*this));
            order_.push_back(owned_.back().get());
            by_name_.emplace(defs[i].name, owned_.back().get());
        }
    } catch (...) {
        while (!owned_.empty()) {
            owned_.pop_back();
        }
        close(wake_fd_);
        throw;
    }
}

Controller::~Controller() {
    // Modules go in reverse: a module may use the ones it depends on to the end.
    while (!owned_.empty()) {
        owned_.pop_back();
    }
    if (wake_fd_ >= 0) {
        close(wake_fd_);
    }
}

void Controller::add_op(OpDef op) {
    if (op.name.empty() || !op.fn) {
        throw std::logic_error("an op needs a name and a function");
    }
    std::string name = op.name;
    if (!ops_.emplace(name, std::move(op)).second) {
        throw std::logic_error("op '" + name + "' is registered twice");
    }
}

std::vector<std::string> Controller::api_ops() const {
    std::vector<std::string> out;
    for (const auto &[name, op] : ops_) {
        if (!op.internal) {
            out.push_back(name);
        }
    }
    return out;
}

Module *Controller::find_module(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

void Controller::start() {
    try {
        for (; started_ < order_.size(); started_++) {
            order_[started_]->start();
        }
    } catch (...) {
        // The workers do not run yet: the modules that started are stopped
        // with this thread running the workers' commands for them.
        unstarted_workers_ = true;
        shutdown();
        unstarted_workers_ = false;
        throw;
    }
}

void Controller::online() {
    for (Module *m : order_) {
        m->online();
    }
}

void Controller::offline() {
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
        (*it)->offline();
    }
}

void Controller::shutdown() {
    while (started_ > 0) {
        Module *m = order_[--started_];
        try {
            m->stop();
        } catch (const std::exception &) {
            // Shutting down: what a module could not undo, the EAL cleans up.
        }
    }
    reclaim();
    for (auto *w : workers_) {
        rte_mbuf *m;
        while (w->pop_punt(m)) {
            rte_pktmbuf_free(m);
        }
    }
}

void Controller::stop() {
    running_.store(false, std::memory_order_release);
    wake();
}

void Controller::request_stop() {
    if (!stop_request_) {
        throw ApiError("unavailable", "this process cannot be stopped through the API");
    }
    stop_request_();
}

void Controller::wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof(one));
}

bool Controller::on_control_thread() const {
    return control_tid_.load(std::memory_order_acquire) == std::this_thread::get_id();
}

void Controller::run() {
    control_tid_.store(std::this_thread::get_id(), std::memory_order_release);
    std::vector<pollfd> fds{{wake_fd_, POLLIN, 0}};
    for (Module *m : order_) {
        if (int fd = m->wait_fd(); fd >= 0) {
            fds.push_back({fd, POLLIN, 0});
        }
    }
    while (running_.load(std::memory_order_acquire)) {
        // Workers hand packets over without a wake-up (no syscalls on the packet
        // path): poll every millisecond right after work, backing off to 10 ms
        // while none comes (1, 2, 4, 8, 10 ms).
        int timeout = std::min(10, 1 << std::min(quiet_passes_, 4u));
        for (auto &p : fds) {
            p.revents = 0;
        }
        poll(fds.data(), fds.size(), timeout);
        if (fds[0].revents & POLLIN) {
            uint64_t v;
            [[maybe_unused]] auto n = read(wake_fd_, &v, sizeof(v));
        }
        Call *c;
        while (api_ring_.pop(c)) {
            try {
                c->reply.set_value(execute(*c->op, *c->args));
            } catch (...) {
                c->reply.set_exception(std::current_exception());
            }
        }
        bool did = drain_punts();
        // Reverse start order: a module polls after the ones that depend on
        // it, so work they queued in this pass (a route change asking the
        // neighbor table for a solicitation) is done in the same pass.
        for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
            did = (*it)->poll() || did;
        }
        quiet_passes_ = did ? 0 : quiet_passes_ + 1;
    }
    control_tid_.store(std::thread::id(), std::memory_order_release);
}

bool Controller::drain_punts() {
    bool did = false;
    for (auto *w : workers_) {
        rte_mbuf *m;
        for (unsigned i = 0; i < kPuntBudget && w->pop_punt(m); i++) {
            did = true;
            auto r = static_cast<size_t>(dp::Worker::punt_reason(m));
            if (r < punt_handlers_.size() && punt_handlers_[r]) {
                punt_handlers_[r](m);
            } else {
                cnt_.punt_unhandled++;
                rte_pktmbuf_free(m);
            }
        }
    }
    return did;
}

json Controller::execute(const OpDef &op, const json &args) {
    check_known(args, op.args);
    return op.fn(args);
}

json Controller::call(const std::string &name, const json &args) {
    auto it = ops_.find(name);
    if (it == ops_.end()) {
        throw ApiError("unknown_op", "unknown op '" + name + "'");
    }
    const OpDef &op = it->second;
    if (op.thread == OpDef::Thread::kApi || on_control_thread()) {
        return execute(op, args);
    }
    Call c{&op, &args, {}};
    auto fut = c.reply.get_future();
    // A full ring is back-pressure (counted): wait for the control thread to catch up.
    std::unique_lock producer(call_mu_);
    api_ring_.push_wait(
        &c, [this] { wake(); }, [] { return false; });
    producer.unlock();
    return fut.get();
}

void Controller::worker_do(unsigned w, dp::WorkerCommand c) {
    auto deadline = std::chrono::steady_clock::now() + kAckTimeout;
    uint64_t seq;
    if (unstarted_workers_ && workers_[w]->post(c) != 0) {
        workers_[w]->drain_commands();  // start() failed: the worker never ran
        return;
    }
    while ((seq = workers_[w]->post(c)) == 0) {
        cnt_.worker_ring_full++;  // back-pressure: wait for the worker to drain it
        if (std::chrono::steady_clock::now() > deadline) {
            throw ApiError("unavailable", "worker " + std::to_string(w) + " command ring is full");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    while (workers_[w]->acked() < seq) {
        if (std::chrono::steady_clock::now() > deadline) {
            throw ApiError("unavailable",
                           "worker " + std::to_string(w) + " did not acknowledge a queue change");
        }
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
}

bool Controller::post_any(dp::WorkerCommand c) {
    for (size_t tries = 0; tries < workers_.size(); tries++) {
        unsigned w = tx_rr_++ % static_cast<unsigned>(workers_.size());
        if (workers_[w]->post(c) != 0) {
            return true;
        }
        cnt_.worker_ring_full++;
    }
    return false;
}

unsigned Controller::least_loaded_worker(const std::vector<bool> &taken) const {
    auto is_taken = [&](unsigned w) { return w < taken.size() && taken[w]; };
    unsigned best = 0;
    for (unsigned w = 1; w < workers_.size(); w++) {
        const bool better = is_taken(w) != is_taken(best)
                                ? !is_taken(w)
                                : workers_[w]->rx_queue_count() < workers_[best]->rx_queue_count();
        if (better) {
            best = w;
        }
    }
    return best;
}

void Controller::defer(std::function<void()> f) {
    deferred_.push_back(std::move(f));
}

void Controller::reclaim() {
    if (deferred_.empty()) {
        return;
    }
    tables_.synchronize();
    // A deferred action may defer more (for the next grace period).
    auto now = std::move(deferred_);
    deferred_.clear();
    for (auto &f : now) {
        f();
    }
}

void Controller::core_counters(json &out) const {
    out["worker_ring_full"] = cnt_.worker_ring_full;
    out["punt_unhandled"] = cnt_.punt_unhandled;
    out["api_ring_full_waits"] = api_ring_.full_waits();
}

void Controller::on_punt(dp::PuntReason r, std::function<void(rte_mbuf *)> h) {
    auto i = static_cast<size_t>(r);
    if (i >= punt_handlers_.size() || punt_handlers_[i]) {
        throw std::logic_error("punt reason '" + std::string(dp::punt_reason_name(r)) +
                               "' has a handler already");
    }
    punt_handlers_[i] = std::move(h);
}

}  // namespace fwd::control
