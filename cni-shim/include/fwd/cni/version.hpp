// CNI spec versions: which ones dpdk-fwd-cni speaks, which verbs each allows, and the VERSION
// reply.
//
// Supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0. The 0.3.x and 0.4.0 results have one shape
// (ips carry "version"); 1.0.0 dropped that field; 1.1.0 added the STATUS and GC verbs and
// interface mtu / socketPath / pciID and route mtu / advmss / priority / table / scope. A
// config without cniVersion is 0.1.0 to libcni, which we do not speak (0.1.0 / 0.2.0 results
// are the old ip4 / ip6 shape).
#pragma once

#include <array>
#include <compare>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fwd/cni/command.hpp"

namespace fwd::cni {

inline constexpr std::string_view kLatestVersion = "1.1.0";
// Oldest first, as VERSION lists them.
inline constexpr std::array<std::string_view, 5> kSupportedVersions = {"0.3.0", "0.3.1", "0.4.0",
                                                                       "1.0.0", "1.1.0"};

struct SpecVersion {
    unsigned major = 0;
    unsigned minor = 0;
    unsigned patch = 0;
    // Exactly "X.Y.Z", decimal digits only.
    static std::optional<SpecVersion> parse(std::string_view s);
    std::string str() const;
    auto operator<=>(const SpecVersion &) const = default;
};

bool is_supported(std::string_view version);

// The parsed version; throws ErrorCode::kIncompatibleVersion naming it and the supported list.
SpecVersion require_supported(std::string_view version);

// Throws kIncompatibleVersion when `version` predates `cmd` (CHECK came in 0.4.0, STATUS and
// GC in 1.1.0).
void require_allowed(Command cmd, std::string_view version);

// {"cniVersion", "supportedVersions"}. cniVersion echoes the request's when we support it,
// else names our latest: we never claim to speak a version we do not.
nlohmann::json version_json(std::string_view requested);

}  // namespace fwd::cni
