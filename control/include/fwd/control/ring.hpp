// A bounded single-producer / single-consumer event ring between a producer
// thread (API, netlink, port events) and the control thread.
//
// A full ring is back-pressure, never loss: the producer wakes the consumer
// and waits until there is room, and every wait is counted so operators see a
// control thread that falls behind. Order is preserved.
//
// Ownership: push_wait()/try_push() from the one producer thread; pop() from
// the control thread; the counter is read by anyone.
#pragma once

#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <chrono>
#include <cstdint>
#include <thread>

namespace fwd::control {

template <typename T, size_t N>
class EventRing {
  public:
    // Pushes v, waiting while the ring is full. wake() is called after the push
    // and before every wait. Gives up (false) only when stop() turns true.
    template <typename Wake, typename Stop>
    bool push_wait(const T &v, Wake &&wake, Stop &&stop) {
        while (!q_.push(v)) {
            full_waits_.fetch_add(1, std::memory_order_relaxed);
            wake();
            if (stop()) {
                return false;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
        wake();
        return true;
    }
    bool try_push(const T &v) { return q_.push(v); }
    bool pop(T &out) { return q_.pop(out); }
    bool empty() { return q_.read_available() == 0; }
    uint64_t full_waits() const { return full_waits_.load(std::memory_order_relaxed); }
    static constexpr size_t capacity() { return N; }

  private:
    boost::lockfree::spsc_queue<T, boost::lockfree::capacity<N>> q_;
    std::atomic<uint64_t> full_waits_{0};
};

}  // namespace fwd::control
