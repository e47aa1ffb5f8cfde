// The invocation: the CNI_* environment variables of one plugin run (CNI spec 1.1.0, section
// 2 "Parameters" and the "Input" of each verb).
//
// Required per verb (an empty value counts as missing, as in libcni):
//   ADD, CHECK   CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME
//   DEL          CNI_CONTAINERID, CNI_IFNAME (no CNI_NETNS: the namespace may be gone already)
//   GC           CNI_PATH (no container: it works on the whole network)
//   STATUS       nothing but CNI_COMMAND
//   VERSION      nothing but CNI_COMMAND
// CNI_ARGS and CNI_PATH are optional elsewhere. Variables a verb does not use are ignored.
// All errors here are ErrorCode::kInvalidEnvironment and name the variable.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fwd/cni/command.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::cni {

// The process environment as a map, so tests never touch the real one.
using Env = std::map<std::string, std::string, std::less<>>;
// Every NAME=value of envp (the third argument of main, or `environ`).
Env env_from(char **envp);

// CNI_ARGS: "K=V;K=V". Kubernetes runtimes pass the pod's identity here. A key we do not know
// is an error unless IgnoreUnknown is 1 / true (libcni's rule; containerd and CRI-O set it).
struct CniArgs {
    std::vector<std::pair<std::string, std::string>> pairs;  // all of them, in order
    bool ignore_unknown = false;
    std::string pod_namespace;       // K8S_POD_NAMESPACE
    std::string pod_name;            // K8S_POD_NAME
    std::string infra_container_id;  // K8S_POD_INFRA_CONTAINER_ID
    std::string pod_uid;             // K8S_POD_UID
    std::optional<net::IpAddr> ip;   // IP: a fixed address, as Calico and host-local take it
};
// Empty segments (a trailing ';') are skipped; the value is everything after the first '='.
CniArgs parse_cni_args(std::string_view s);

struct Invocation {
    Command command = Command::kVersion;
    std::string container_id;       // CNI_CONTAINERID
    std::string netns;              // CNI_NETNS; may be empty on DEL
    std::string ifname;             // CNI_IFNAME
    CniArgs args;                   // CNI_ARGS
    std::vector<std::string> path;  // CNI_PATH split on ':', empty entries dropped
};

Invocation parse_invocation(const Env &env);

// Container IDs (and network names): an ASCII letter or digit, then letters, digits, '_', '.'
// or '-'.
bool is_valid_id(std::string_view s);
// Throws kInvalidEnvironment naming CNI_CONTAINERID.
void validate_container_id(std::string_view id);
// Linux interface names: 1 to 15 bytes, not "." or "..", no '/', ':' or whitespace. Returns
// why `name` breaks the rule, or nullptr.
const char *ifname_problem(std::string_view name);
// Throws kInvalidEnvironment naming CNI_IFNAME.
void validate_ifname(std::string_view name);

}  // namespace fwd::cni
