// The node's JSON configuration (dpdk-fwd --config): every input is parsed and validated
// against a two-CPU machine; bad input must end in ConfigError (or another std::exception)
// naming the problem.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "fwd/control/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string text(reinterpret_cast<const char *>(data), size);
    fwd::control::ConfigEnv env;
    env.cpus = {0, 1};
    fwd::fuzz::accepted([&] { (void)fwd::control::parse_config(text, env); });
    return 0;
}
