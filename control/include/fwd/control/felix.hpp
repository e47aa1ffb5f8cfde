// FelixConfiguration (issue 18): Calico's per-cluster and per-node Felix settings, applied with
// `fwdctl apply -f`, kept in the cluster store beside the BGP resources (bgp.hpp: the same
// registry, key <prefix>felixconfigurations/<name>) and followed by every node's daemon
// (felix_module.cpp), which applies them without a restart.
//
// Names as Calico's: "default" for every node, "node.<node>" for one node; a field the node's
// resource sets wins over the default's, field by field. A field neither sets keeps the node
// config file's value: here the file is the node's boot default and the cluster's resource
// overrides it (Felix ranks its config file and environment above the datastore; a daemon
// reads its file once, so the store is where a cluster-wide change can come from).
//
// The fields that mean something here take effect: healthEnabled / healthHost / healthPort,
// prometheusMetricsEnabled / Host / Port, logSeverityScreen, natPortRange, vxlanPort (1 to
// 65535), vxlanVNI, vxlanMTU, vxlanMTUV6; failsafeInboundHostPorts / failsafeOutboundHostPorts
// are stored and shown (no host endpoint policy here to open them in). ipv6Support takes true
// only (IPv6 is always on). Calico's other fields are accepted with a warning naming them as
// not supported; a field Calico does not have is refused.
//
// Control code only: allocates and throws.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fwd::k8s {
class Decoder;  // policy/src/k8s_decode.hpp
}

namespace fwd::felix {

// failsafeInboundHostPorts / failsafeOutboundHostPorts entries (Calico's ProtoPort).
struct ProtoPort {
    std::string protocol = "TCP";  // TCP, UDP or SCTP (Calico's default TCP)
    uint16_t port = 0;
    std::string net;  // a CIDR, "" for any address
    bool operator==(const ProtoPort &) const = default;
};

struct PortRange {
    uint16_t lo = 0, hi = 0;
    bool operator==(const PortRange &) const = default;
};

// One resource's settings: what it sets (nullopt: not set).
struct FelixConfiguration {
    std::string name;
    std::optional<bool> health_enabled;
    std::optional<std::string> health_host;  // "" every address, "localhost", an IP address
    std::optional<uint16_t> health_port;
    std::optional<bool> metrics_enabled;
    std::optional<std::string> metrics_host;
    std::optional<uint16_t> metrics_port;
    std::optional<std::string> log_severity;  // Debug, Info, Warning, Error, Fatal
    std::optional<std::vector<ProtoPort>> failsafe_in;
    std::optional<std::vector<ProtoPort>> failsafe_out;
    std::optional<PortRange> nat_port_range;
    std::optional<uint16_t> vxlan_port;
    std::optional<uint32_t> vxlan_vni;
    std::optional<uint16_t> vxlan_mtu;
    std::optional<uint16_t> vxlan_mtu_v6;
    bool operator==(const FelixConfiguration &) const = default;
};

bool is_felix_kind(std::string_view kind);

// The spec of FelixConfiguration `name` (its apiVersion, metadata and name checked by the
// caller: bgp_model.cpp's decoder of Calico kinds), validated as Calico's validator does.
// Calico fields not supported here go to the decoder's warnings, naming each; a field Calico
// does not have is refused. Throws ipam::ResourceError naming the field.
FelixConfiguration decode_spec(const std::string &name, const nlohmann::json &spec,
                               k8s::Decoder &d);

// The settings of node `node`: node.<node>'s fields over default's. Its name is the node's.
FelixConfiguration effective(const std::vector<FelixConfiguration> &configs,
                             const std::string &node);

// Calico's field names, the fields it sets only: {"logSeverityScreen": "Info", ...}.
nlohmann::json to_json(const FelixConfiguration &c);

// Felix's log level words to the daemon's log levels (log.hpp): Debug -> debug,
// Warning -> warn, Fatal -> critical.
std::string log_level_of(const std::string &severity);

}  // namespace fwd::felix
