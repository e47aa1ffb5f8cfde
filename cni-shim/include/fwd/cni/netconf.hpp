// The network configuration on stdin (CNI spec 1.1.0, section 1 and section 3 "Deriving
// execution configuration"), in Calico's shape where Calico has one:
//
//   {
//     "cniVersion": "1.0.0",               required; see version.hpp
//     "name": "k8s-pod-network",           required; same charset as a container ID
//     "type": "dpdk-fwd-cni",              required
//     "mtu": 1450,                         optional; 0 or absent: the daemon picks it from
//                                          the pools' encapsulation
//     "ipam": {                            optional, Calico's calico-ipam section
//       "type": "calico-ipam",             the only type: the daemon allocates
//       "assign_ipv4": "true",             "true" / "false" as Calico writes them (JSON
//       "assign_ipv6": "false",            booleans accepted too); defaults true / false
//       "ipv4_pools": ["192.168.0.0/16"],  pool CIDRs or names, as Calico takes them
//       "ipv6_pools": ["default-ipv6-ippool"]
//     },
//     "dpdk_fwd_socket": "/run/dpdk-fwd/api.sock",   the daemon's API socket
//     "vhost_user": true | {"enabled": true, "mode": "server" | "client",
//                           "socket_dir": "/run/dpdk-fwd/vhost", "queues": 1..8},
//     "dns": {...},                        well-known; copied into the result
//     "runtimeConfig": {"mac": ..., "ips": [...]},    capability args (conventions)
//     "args": {"cni": {"mac": ..., "ips": [...], "vhost_user": true}},
//     "prevResult": {...},                 the previous result: chaining, CHECK, DEL
//     "cni.dev/valid-attachments": [{"containerID": ..., "ifname": ...}]   GC only
//   }
//
// Unknown keys are allowed and kept in `raw` (configs carry Calico's and others' fields).
// Errors: stdin not JSON or a field of the wrong type -> 6; cniVersion missing, unsupported or
// too old for the verb -> 1; ipam.type other than calico-ipam -> 2; any other broken rule -> 7.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fwd/cni/command.hpp"
#include "fwd/cni/result.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::cni {

inline constexpr std::string_view kDefaultDaemonSocket = "/run/dpdk-fwd/api.sock";
inline constexpr std::string_view kIpamType = "calico-ipam";

struct IpamConf {
    std::string type{kIpamType};
    bool assign_ipv4 = true;
    bool assign_ipv6 = false;
    std::vector<std::string> ipv4_pools;  // CIDRs (checked to be IPv4) or pool names
    std::vector<std::string> ipv6_pools;
};

struct VhostUserConf {
    bool enabled = false;    // pods of this network get a vhost-user port, not a tap
    bool client = false;     // "mode": "client": the daemon connects to the pod's socket
    std::string socket_dir;  // empty: the daemon's run_dir
    uint32_t queues = 0;     // queue pairs of the pod's port; 0: the daemon's default (1)
};

// Per-attachment requests, from runtimeConfig (capability args) or args.cni (conventions).
struct AttachmentArgs {
    std::optional<net::MacAddr> mac;
    std::vector<IfAddr> ips;  // fixed addresses; a bare address is a /32 or /128
    std::optional<bool> vhost_user;
};

// One entry of cni.dev/valid-attachments: an attachment GC must keep.
struct Attachment {
    std::string container_id;
    std::string ifname;
    auto operator<=>(const Attachment &) const = default;
};

struct NetConf {
    std::string cni_version;
    std::string name;
    std::string type;
    std::optional<uint32_t> mtu;
    IpamConf ipam;
    std::string daemon_socket{kDefaultDaemonSocket};
    VhostUserConf vhost_user;
    Dns dns;
    AttachmentArgs runtime_config;
    AttachmentArgs cni_args;  // args.cni
    std::optional<Result> prev_result;
    // GC only (required there). libcni sends the list under cni.dev/valid-attachments and,
    // for an older draft's sake, cni.dev/attachments; either is read.
    std::optional<std::vector<Attachment>> valid_attachments;
    nlohmann::json raw;  // the whole document as received
};

// Decodes and validates stdin for `cmd` (not VERSION: it has no config). CHECK needs a
// prevResult, GC the valid attachments.
NetConf parse_netconf(std::string_view text, Command cmd);
// The same for a document already parsed.
NetConf netconf_from_json(const nlohmann::json &doc, Command cmd);

}  // namespace fwd::cni
