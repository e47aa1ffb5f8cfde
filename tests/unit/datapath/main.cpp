// The harness of the datapath component tests: EAL without hugepages on one
// lcore (the tests call Worker::process() and flush_tx() from this thread),
// then the Lab (pool, ring ports, tables), then gtest.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "fwd/dp/eal.hpp"
#include "lab.hpp"

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    std::string prefix = "--file-prefix=fwdtest" + std::to_string(getpid());
    // DPDK 22.11 refuses --in-memory with --no-huge (which implies legacy
    // memory); --no-shconf keeps the run from leaving files behind instead.
    std::vector<std::string> args = {
        argv[0],          "--no-huge",           "-m",   "512", "--no-shconf", "--no-pci",
        "--no-telemetry", "--log-level=*:error", prefix, "-l",  "0",
    };
    std::vector<char *> eal_argv;
    for (auto &a : args) {
        eal_argv.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "rte_eal_init failed\n");
        return 1;
    }
    if (!fwd::dp::test::Lab::init()) {
        fwd::dp::eal_cleanup_all();
        return 1;
    }
    int rc = RUN_ALL_TESTS();
    fwd::dp::test::Lab::fini();
    fwd::dp::eal_cleanup_all();
    return rc;
}
