// Table-driven drop tests: one malformed or unwanted input, one reason.
//
// Each case is a named gtest of its own (DropTest/<suite>.Check/<name>) with
// the three sections of every test here:
//   packet-build  build   the frame, from the side it arrives on
//   setup         a fresh worker and default ports; uplink_vlan when set
//   check         that reason's counter moved by exactly one, no other
//                 reason moved, nothing was sent, no ICMP error was built.
// Drops that answer with an ICMP error are tested one by one in
// test_icmp_error.cpp, where the error itself is checked.
#pragma once

#include <functional>
#include <ostream>

#include "lab.hpp"

namespace fwd::dp::test {

struct DropCase {
    const char *name;
    Side side;
    std::function<PacketBuilder()> build;
    DropReason reason;
    uint16_t uplink_vlan = 0;
};

inline void PrintTo(const DropCase &c, std::ostream *os) {
    *os << c.name << " -> " << drop_reason_name(c.reason);
}

class DropTest : public DatapathTest, public ::testing::WithParamInterface<DropCase> {};

inline std::string drop_case_name(const ::testing::TestParamInfo<DropCase> &info) {
    return info.param.name;
}

}  // namespace fwd::dp::test
