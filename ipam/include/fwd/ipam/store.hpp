// The IPAM store: a key-value space with revisions and atomic
// compare-and-swap transactions, the only thing the allocator needs from its
// backend. Two implementations: an embedded, crash-safe one for a single node
// (stores/) and etcd v3 for clusters.
//
// Semantics follow etcd v3: every successful write gets the store's next
// revision (a global, strictly increasing counter); a key's mod revision is
// the revision of its last write. A transaction applies all its operations
// atomically iff every comparison holds, else applies nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fwd::ipam {

struct KeyValue {
    std::string key;
    std::string value;
    int64_t mod_revision = 0;  // revision of the key's last write
};

// A comparison of a transaction: the key's mod revision must equal
// `mod_revision`; 0 means the key must not exist.
struct Compare {
    std::string key;
    int64_t mod_revision = 0;
};

struct Operation {
    enum class Kind { kPut, kDelete };
    Kind kind = Kind::kPut;
    std::string key;
    std::string value;  // kPut
};

// The backend cannot be reached or failed; what() names the store and cause.
// A failed comparison is not an error (txn returns false).
class StoreError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Store {
  public:
    virtual ~Store() = default;
    virtual std::optional<KeyValue> get(const std::string &key) = 0;
    // Every key starting with prefix, in key order.
    virtual std::vector<KeyValue> list(const std::string &prefix) = 0;
    // True: every compare held and every op was applied (durably, before
    // returning). False: a compare failed and nothing changed.
    virtual bool txn(const std::vector<Compare> &cmps, const std::vector<Operation> &ops) = 0;
    // The store's current revision: it moves whenever anything changes, so a
    // reader polling for changes compares it with the last one it saw.
    virtual int64_t revision() = 0;
    // Like list() without the values (value is empty): what a scan for
    // free slots needs before it reads the few keys it chose.
    virtual std::vector<KeyValue> list_keys(const std::string &prefix) {
        auto v = list(prefix);
        for (auto &kv : v) {
            kv.value.clear();
        }
        return v;
    }
    // What this store is, for messages ("embedded /var/lib/dpdk-fwd/ipam", "etcd http://...").
    virtual std::string describe() const = 0;
};

}  // namespace fwd::ipam
