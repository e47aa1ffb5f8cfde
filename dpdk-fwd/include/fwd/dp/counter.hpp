// A counter with exactly one writer (its worker) and any number of readers.
// The writer adds with a relaxed load+store, which compiles to a plain add:
// no locked instruction on the packet path. Readers see a value that is at
// most a few packets old, never a torn one.
#pragma once

#include <atomic>
#include <cstdint>

namespace fwd::dp {

class Counter {
  public:
    void add(uint64_t n) {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void inc() { add(1); }
    uint64_t get() const { return v_.load(std::memory_order_relaxed); }

  private:
    std::atomic<uint64_t> v_{0};
};

}  // namespace fwd::dp
