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
    // 768: the lab's tables (about 270 MB: two IPv6 tries beside the IPv4 lpm) and a
    // second set for test_front6.cpp
    if (!fwd::dp::eal_init_for_test(argv[0], "fwdtest", 768)) {
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
