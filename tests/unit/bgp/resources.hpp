// What the BGP and FelixConfiguration tests share: reading ../shared/examples, decoding a YAML
// text as `fwdctl apply -f` does, and the refusal a text gets.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fwd/control/bgp.hpp"
#include "fwd/ipam/document.hpp"

namespace fwd::bgp::test_util {

inline std::string read(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

inline std::vector<Decoded> decode(const std::string &text, const std::string &source = "t.yaml") {
    return decode_bgp_resources(ipam::split_resources(text, source));
}

// The error of decoding text ("" when it decodes).
inline std::string refusal(const std::string &text) {
    try {
        decode(text);
    } catch (const std::exception &e) {
        return e.what();
    }
    return "";
}

}  // namespace fwd::bgp::test_util
