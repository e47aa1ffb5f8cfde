#include "fwd/ipam/mem_store.hpp"

namespace fwd::ipam {

std::optional<KeyValue> MemStore::get(const std::string &key) {
    std::lock_guard lock(mu_);
    auto it = kv_.find(key);
    if (it == kv_.end()) {
        return std::nullopt;
    }
    return KeyValue{it->first, it->second.value, it->second.mod_revision};
}

std::vector<KeyValue> MemStore::list(const std::string &prefix) {
    std::lock_guard lock(mu_);
    std::vector<KeyValue> out;
    for (auto it = kv_.lower_bound(prefix); it != kv_.end() && it->first.starts_with(prefix);
         ++it) {
        out.push_back(KeyValue{it->first, it->second.value, it->second.mod_revision});
    }
    return out;
}

bool MemStore::txn(const std::vector<Compare> &cmps, const std::vector<Operation> &ops) {
    std::lock_guard lock(mu_);
    for (const Compare &c : cmps) {
        auto it = kv_.find(c.key);
        int64_t rev = it == kv_.end() ? 0 : it->second.mod_revision;
        if (rev != c.mod_revision) {
            return false;
        }
    }
    if (ops.empty()) {
        return true;
    }
    // Like etcd, one transaction is one revision.
    ++revision_;
    for (const Operation &op : ops) {
        if (op.kind == Operation::Kind::kPut) {
            kv_[op.key] = Entry{op.value, revision_};
        } else {
            kv_.erase(op.key);
        }
    }
    return true;
}

int64_t MemStore::revision() {
    std::lock_guard lock(mu_);
    return revision_;
}

}  // namespace fwd::ipam
