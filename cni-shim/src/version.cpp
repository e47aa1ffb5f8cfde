#include "fwd/cni/version.hpp"

#include <algorithm>
#include <charconv>

#include "fwd/cni/error.hpp"

namespace fwd::cni {
namespace {

std::string supported_list() {
    std::string s;
    for (auto v : kSupportedVersions) {
        s += s.empty() ? "" : ", ";
        s += v;
    }
    return s;
}

}  // namespace

std::optional<SpecVersion> SpecVersion::parse(std::string_view s) {
    SpecVersion v;
    unsigned *parts[] = {&v.major, &v.minor, &v.patch};
    const char *p = s.data();
    const char *end = s.data() + s.size();
    for (size_t i = 0; i < 3; i++) {
        if (i > 0) {
            if (p == end || *p != '.') {
                return std::nullopt;
            }
            p++;
        }
        // from_chars takes no sign, so "-1" or "+1" fail here.
        auto [next, ec] = std::from_chars(p, end, *parts[i]);
        if (ec != std::errc() || next == p) {
            return std::nullopt;
        }
        p = next;
    }
    if (p != end) {
        return std::nullopt;
    }
    return v;
}

std::string SpecVersion::str() const {
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

bool is_supported(std::string_view version) {
    return std::find(kSupportedVersions.begin(), kSupportedVersions.end(), version) !=
           kSupportedVersions.end();
}

SpecVersion require_supported(std::string_view version) {
    if (!is_supported(version)) {
        throw Error(ErrorCode::kIncompatibleVersion,
                    "CNI version \"" + std::string(version) + "\" is not supported",
                    "dpdk-fwd-cni supports " + supported_list());
    }
    return *SpecVersion::parse(version);
}

void require_allowed(Command cmd, std::string_view version) {
    auto have = require_supported(version);
    auto since = first_version(cmd);
    if (have < *SpecVersion::parse(since)) {
        throw Error(ErrorCode::kIncompatibleVersion,
                    std::string(command_name(cmd)) + " is not in CNI " + std::string(version),
                    std::string(command_name(cmd)) + " needs cniVersion " + std::string(since) +
                        " or later");
    }
}

nlohmann::json version_json(std::string_view requested) {
    auto versions = nlohmann::json::array();
    for (auto v : kSupportedVersions) {
        versions.push_back(v);
    }
    return {{"cniVersion", is_supported(requested) ? requested : kLatestVersion},
            {"supportedVersions", versions}};
}

}  // namespace fwd::cni
