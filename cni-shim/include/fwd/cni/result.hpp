// The ADD result (CNI spec 1.1.0, section 5 "Success"), rendered for the config's cniVersion,
// and parsed back from a prevResult (chaining, CHECK, DEL).
//
// Rendering per version:
//   0.3.0 / 0.3.1 / 0.4.0  interfaces {name, mac, sandbox}; ips {version "4"|"6", address,
//                          gateway, interface}; routes {dst, gw}; dns.
//   1.0.0 / 1.1.0          no "version" in ips; interfaces also {mtu, socketPath, pciID};
//                          routes also {mtu, advmss, priority, table, scope}.
// The 1.1 fields go out under 1.0.0 too: libcni has one result type for 1.0 and 1.1, and
// Calico's 1.0.0 results carry the interface mtu. Under 0.x they are left out, as libcni's
// 0.4.0 conversion leaves out the interface ones. Empty lists, unset optionals and an empty
// dns are omitted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "fwd/net/addr.hpp"

namespace fwd::cni {

// An address with its prefix length, either family ("10.1.0.5/16", "fd00::5/128").
using IfAddr = std::variant<net::IfAddr4, net::IfAddr6>;
// "a/len", or a bare address (full length).
std::optional<IfAddr> parse_ifaddr(std::string_view s);
// A prefix, either family; host bits are allowed and cleared ("10.1.2.3/8" -> 10.0.0.0/8).
std::optional<net::AnyPrefix> parse_prefix(std::string_view s);
std::string str(const IfAddr &a);
net::Family family(const IfAddr &a);
net::IpAddr addr_of(const IfAddr &a);

struct Interface {
    std::string name;
    // Text, not net::MacAddr: a hardware address need not be Ethernet (InfiniBand GUIDs are 20
    // bytes), and a prevResult from another plugin must survive a round trip.
    std::string mac;
    std::string sandbox;  // the netns path for a pod interface, empty on the host
    std::optional<uint32_t> mtu;
    std::string socket_path;  // vhost-user socket of the interface
    std::string pci_id;
    bool operator==(const Interface &) const = default;
};

struct IpConfig {
    IfAddr address;
    std::optional<net::IpAddr> gateway;
    std::optional<uint32_t> interface;  // index into Result::interfaces
    bool operator==(const IpConfig &) const = default;
};

struct Route {
    net::AnyPrefix dst;
    std::optional<net::IpAddr> gw;
    std::optional<uint32_t> mtu;
    std::optional<uint32_t> advmss;
    std::optional<uint32_t> priority;
    std::optional<uint32_t> table;
    std::optional<uint32_t> scope;  // 0..255 (RT_SCOPE_*)
    bool operator==(const Route &) const = default;
};

struct Dns {
    std::vector<std::string> nameservers;
    std::string domain;
    std::vector<std::string> search;
    std::vector<std::string> options;
    bool empty() const {
        return nameservers.empty() && domain.empty() && search.empty() && options.empty();
    }
    bool operator==(const Dns &) const = default;
};

struct Result {
    std::vector<Interface> interfaces;
    std::vector<IpConfig> ips;
    std::vector<Route> routes;
    Dns dns;
    bool operator==(const Result &) const = default;
};

// Throws kIncompatibleVersion for a version we do not speak, and kInternal when an ip points
// past the interfaces (a bug of ours, caught before a runtime sees it).
nlohmann::json render_result(const Result &r, std::string_view cni_version);

// Any supported version's shape; an IPAM plugin's abbreviated result (no interfaces) too.
// "version" in ips is checked against the address when present. Unknown keys are ignored.
// Errors name the field under `path` (e.g. "prevResult.ips[0].address"): 6 for a wrong JSON
// type, 7 for a bad value.
Result parse_result(const nlohmann::json &j, const std::string &path = "prevResult");

Dns parse_dns(const nlohmann::json &j, const std::string &path);
nlohmann::json render_dns(const Dns &d);

}  // namespace fwd::cni
