// The main of a micro-benchmark: EAL with the benchmark's fixed arguments
// (a file prefix of its own added) and the command line's appended, the
// benchmark, EAL cleanup. An exception from the benchmark is printed.
#pragma once

#include <rte_eal.h>
#include <rte_errno.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace fwd::perf {

inline int bench_main(int argc, char **argv, const char *name, std::vector<std::string> args,
                      int (*bench)()) {
    args.insert(args.begin(), argv[0]);
    args.push_back(std::string("--file-prefix=") + name + std::to_string(getpid()));
    for (int i = 1; i < argc; i++) {
        args.emplace_back(argv[i]);
    }
    std::vector<char *> eal_argv;
    for (auto &a : args) {
        eal_argv.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "rte_eal_init: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    int rc = 1;
    try {
        rc = bench();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
    }
    rte_eal_cleanup();
    return rc;
}

}  // namespace fwd::perf
