// rte_eal_cleanup() and then the runtime directory (/var/run/dpdk/<prefix>)
// that EAL makes even with --in-memory or --no-shconf and leaves behind.
#pragma once

#include <rte_eal.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace fwd::dp {

inline void eal_cleanup_all() {
    const std::string dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ec;
    if (!dir.empty()) {
        std::filesystem::remove_all(dir, ec);
    }
}

}  // namespace fwd::dp
