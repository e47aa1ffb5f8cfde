// EtcdStore: the IPAM store on etcd v3 (3.4), through its JSON gRPC gateway
// over HTTP (POST /v3/kv/range and /v3/kv/txn, keys and values base64).
//
// txn() is one etcd Txn: each Compare becomes "MOD revision EQUAL n", or
// "CREATE revision EQUAL 0" (absent) for n == 0; the operations are the
// success branch; "succeeded" absent or false -> false, nothing applied.
// Keys live under Options::prefix, invisible to callers, so several users
// (or tests) can share one cluster. Endpoints are tried in order; the first
// one answering is kept until it fails. Thread-safe: each call borrows a
// pooled curl handle (keep-alive connections).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "fwd/ipam/store.hpp"

namespace fwd::ipam {

class EtcdStore final : public Store {
  public:
    struct Options {
        std::vector<std::string> endpoints{"http://127.0.0.1:2379"};
        std::string prefix;  // prepended to every key
        std::chrono::milliseconds connect_timeout{2000};
        std::chrono::milliseconds request_timeout{10000};
    };

    explicit EtcdStore(Options opts);
    explicit EtcdStore(std::vector<std::string> endpoints);
    ~EtcdStore() override;
    EtcdStore(const EtcdStore &) = delete;
    EtcdStore &operator=(const EtcdStore &) = delete;

    std::optional<KeyValue> get(const std::string &key) override;
    std::vector<KeyValue> list(const std::string &prefix) override;
    bool txn(const std::vector<Compare> &cmps, const std::vector<Operation> &ops) override;
    // The cluster's revision: it also moves for writes outside our prefix.
    int64_t revision() override;
    std::vector<KeyValue> list_keys(const std::string &prefix) override;
    std::string describe() const override;

  private:
    // POSTs `body` (JSON) to `path` on a live endpoint; returns the JSON reply.
    std::string post(const std::string &path, const std::string &body);
    std::vector<KeyValue> range(const std::string &prefix, bool keys_only);

    Options opts_;
    std::mutex mu_;             // guards idle_ and current_
    std::vector<void *> idle_;  // CURL easy handles not in use
    std::size_t current_ = 0;   // endpoint last seen alive
};

}  // namespace fwd::ipam
