// An in-memory Store for tests: etcd v3 semantics (one global revision,
// atomic compare-and-swap transactions), safe to share between threads.
#pragma once

#include <map>
#include <mutex>

#include "fwd/ipam/store.hpp"

namespace fwd::ipam {

class MemStore : public Store {
  public:
    std::optional<KeyValue> get(const std::string &key) override;
    std::vector<KeyValue> list(const std::string &prefix) override;
    bool txn(const std::vector<Compare> &cmps, const std::vector<Operation> &ops) override;
    std::string describe() const override { return "memory"; }
    int64_t revision() override;

  private:
    struct Entry {
        std::string value;
        int64_t mod_revision = 0;
    };
    mutable std::mutex mu_;
    std::map<std::string, Entry> kv_;  // guarded by mu_
    int64_t revision_ = 0;             // guarded by mu_
};

}  // namespace fwd::ipam
