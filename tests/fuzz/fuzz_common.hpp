// Shared by the fuzz targets: what counts as a clean refusal of bad input.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>

namespace fwd::fuzz {

// Runs f: true when it returned, false when it threw a std::exception with a message (the
// clean refusal every input path promises). Anything else thrown, or a refusal with an empty
// message, aborts: libFuzzer reports it with the input.
template <typename F>
bool accepted(F &&f) {
    try {
        f();
        return true;
    } catch (const std::exception &e) {
        if (e.what() == nullptr || e.what()[0] == '\0') {
            std::fprintf(stderr, "fuzz: a refusal without a message\n");
            std::abort();
        }
        return false;
    } catch (...) {
        std::fprintf(stderr, "fuzz: an exception that is not a std::exception\n");
        std::abort();
    }
}

}  // namespace fwd::fuzz
