// rte_eal_cleanup() and then the runtime directory (/var/run/dpdk/<prefix>)
// that EAL makes even with --in-memory or --no-shconf and leaves behind.
#pragma once

#include <rte_eal.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace fwd::dp {

inline void eal_cleanup_all() {
    const std::string dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ec;
    if (!dir.empty()) {
        std::filesystem::remove_all(dir, ec);
    }
}

// The component tests' EAL: no hugepages (memory_mb of heap), no shared config files, no PCI,
// no telemetry, errors only, a file prefix of name and the PID, then lcores (default "-l 0").
// DPDK 22.11 refuses --in-memory with --no-huge (which implies legacy memory); --no-shconf keeps
// the run from leaving files behind instead. False (and a message) when rte_eal_init fails.
inline bool eal_init_for_test(const char *argv0, const std::string &name, int memory_mb,
                              const std::vector<std::string> &lcores = {"-l", "0"}) {
    std::vector<std::string> args = {argv0,
                                     "--no-huge",
                                     "-m",
                                     std::to_string(memory_mb),
                                     "--no-shconf",
                                     "--no-pci",
                                     "--no-telemetry",
                                     "--log-level=*:error",
                                     "--file-prefix=" + name + std::to_string(getpid())};
    args.insert(args.end(), lcores.begin(), lcores.end());
    std::vector<char *> argv;
    for (auto &a : args) {
        argv.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "rte_eal_init failed\n");
        return false;
    }
    return true;
}

}  // namespace fwd::dp
