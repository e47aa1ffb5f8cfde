// Opens a store from its spec, the one string every tool and the daemon take:
//   embedded:<state dir>                 the crash-safe local store
//   etcd:<url>[;<url>...][,<key prefix>] etcd v3 through its JSON gateway
// Throws std::invalid_argument naming the spec when it is neither, and
// StoreError when the store cannot be opened.
#pragma once

#include <memory>
#include <string>

#include "fwd/ipam/store.hpp"

namespace fwd::ipam {

inline constexpr const char *kDefaultStoreSpec = "embedded:/var/lib/dpdk-fwd/ipam";

std::unique_ptr<Store> open_store(const std::string &spec);

// Checks the form only (no I/O); empty when good, else what is wrong.
std::string check_store_spec(const std::string &spec);

}  // namespace fwd::ipam
