// Opens a store from its spec, the one string every tool and the daemon take:
//   embedded:<state dir>                 the crash-safe local store
//   etcd:<url>[;<url>...][,<key prefix>] etcd v3 through its JSON gateway
// Throws std::invalid_argument naming the spec when it is neither, and
// StoreError when the store cannot be opened.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "fwd/ipam/store.hpp"

namespace fwd::ipam {

inline constexpr const char *kDefaultStoreSpec = "embedded:/var/lib/dpdk-fwd/ipam";

std::unique_ptr<Store> open_store(const std::string &spec);

// Tells a reader that a store may have changed, so it hears of a write as it is made rather
// than at its next poll of the revision: a hint only (the reader still compares revisions,
// and keeps its slower poll as the fallback). Used by one thread; its own descriptors.
class ChangeNotifier {
  public:
    virtual ~ChangeNotifier() = default;
    // Blocks until the store may have changed since the last call (true) or timeout passed
    // (false). Throws StoreError when the notice itself fails.
    virtual bool wait(std::chrono::milliseconds timeout) = 0;
};

// Change notices for the store of spec: the embedded store's through inotify on its
// directory (a journal write, a compaction's new files; reads raise none); nullptr for etcd
// (its readers poll).
std::unique_ptr<ChangeNotifier> open_notifier(const std::string &spec);

// Checks the form only (no I/O); empty when good, else what is wrong.
std::string check_store_spec(const std::string &spec);

}  // namespace fwd::ipam
