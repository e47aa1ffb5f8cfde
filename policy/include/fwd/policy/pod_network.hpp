// What a pod's record (and its namespace's) asks of the CNI plugin, and what the plugin writes
// back into the record once the pod is attached: Calico's annotations, read as Calico's CNI
// plugin reads them (cni-plugin/pkg/k8s: CmdAddK8s, HandleSourceIPSpoofingAnnotation).
//
//   cni.projectcalico.org/ipv4pools, ipv6pools   JSON lists of pool names or CIDRs; the pod's
//                                                 own wins over its namespace's, and either
//                                                 replaces the network config's pools
//   cni.projectcalico.org/ipFamilies             ["IPv4", "IPv6"]: which families to assign
//   cni.projectcalico.org/ipAddrs                 ["10.0.0.1", "fd00::1"]: fixed addresses, at
//                                                 most one per family (pod only)
//   cni.projectcalico.org/ipAddrsNoIpam           refused: addresses outside IPAM are not built
//   cni.projectcalico.org/allowedSourcePrefixes  ["10.9.0.0/24"]: sources the pod may send from
//                                                 besides its own addresses (anti-spoofing)
// Written by the plugin on ADD (Calico's Kubernetes datastore writes the same three):
//   cni.projectcalico.org/containerID, podIP, podIPs; with spec.nodeName and status.podIPs.
//
// Control code only: allocates and throws PolicyError naming the annotation.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "fwd/ipam/model.hpp"
#include "fwd/net/addr.hpp"
#include "fwd/policy/model.hpp"

namespace fwd::policy {

inline constexpr const char *kIpv4PoolsAnnotation = "cni.projectcalico.org/ipv4pools";
inline constexpr const char *kIpv6PoolsAnnotation = "cni.projectcalico.org/ipv6pools";
inline constexpr const char *kIpFamiliesAnnotation = "cni.projectcalico.org/ipFamilies";
inline constexpr const char *kIpAddrsAnnotation = "cni.projectcalico.org/ipAddrs";
inline constexpr const char *kIpAddrsNoIpamAnnotation = "cni.projectcalico.org/ipAddrsNoIpam";
inline constexpr const char *kAllowedSourcePrefixesAnnotation =
    "cni.projectcalico.org/allowedSourcePrefixes";
inline constexpr const char *kContainerIdAnnotation = "cni.projectcalico.org/containerID";
inline constexpr const char *kPodIpAnnotation = "cni.projectcalico.org/podIP";
inline constexpr const char *kPodIpsAnnotation = "cni.projectcalico.org/podIPs";

struct PodNetworkRequest {
    // nullopt: the annotation is absent (the network config decides).
    std::optional<std::vector<std::string>> pools4, pools6;
    std::optional<bool> assign4, assign6;
    std::vector<net::IpAddr> ip_addrs;
    std::vector<ipam::Cidr> allowed_source_prefixes;  // normalized (masked), as Calico does
};

// pod and ns may be null (no record). Throws PolicyError (object: the pod or namespace, field:
// metadata.annotations.<annotation>) with Calico's reason.
PodNetworkRequest pod_network_request(const Pod *pod, const Namespace *ns);

// Only the allowedSourcePrefixes annotation (what anti-spoofing reads); throws like the above.
std::vector<ipam::Cidr> allowed_source_prefixes(const Pod &pod);

// The record after ADD: spec.nodeName, status.podIPs and the three CNI annotations set.
void set_attachment(Pod &pod, const std::string &node, const std::vector<net::IpAddr> &ips,
                    const std::string &container_id);
// The record after DEL of container_id: what set_attachment wrote removed. False (nothing
// changed) when the record names another container (a DEL of an old sandbox of a pod that
// runs again elsewhere, as Calico's CmdDelK8s checks).
bool clear_attachment(Pod &pod, const std::string &container_id);
// Nothing left but the name: a record ADD made and no one has written to since.
bool is_bare(const Pod &pod);

}  // namespace fwd::policy
