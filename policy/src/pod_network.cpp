// Calico's CNI annotations on pod records; see fwd/policy/pod_network.hpp.
#include "fwd/policy/pod_network.hpp"

#include <nlohmann/json.hpp>

namespace fwd::policy {

namespace {

using nlohmann::json;

const std::string *annotation(const std::map<std::string, std::string> &a, const char *key) {
    const auto it = a.find(key);
    return it == a.end() || it->second.empty() ? nullptr : &it->second;
}

// The value as a JSON list of strings (what Calico unmarshals it into).
std::vector<std::string> string_list(const std::string &object, const char *key,
                                     const std::string &value) {
    const std::string field = std::string("metadata.annotations.") + key;
    json j;
    try {
        j = json::parse(value);
    } catch (const json::parse_error &e) {
        throw PolicyError(object, field, "failed to parse '" + value + "' as JSON: " + e.what());
    }
    if (!j.is_array()) {
        throw PolicyError(object, field,
                          "failed to parse '" + value + "' as JSON: want a list of strings");
    }
    std::vector<std::string> out;
    for (const auto &e : j) {
        if (!e.is_string()) {
            throw PolicyError(object, field,
                              "failed to parse '" + value + "' as JSON: want a list of strings, " +
                                  e.dump() + " is not a string");
        }
        out.push_back(e.get<std::string>());
    }
    return out;
}

}  // namespace

std::vector<ipam::Cidr> allowed_source_prefixes(const Pod &pod) {
    std::vector<ipam::Cidr> out;
    const std::string *v = annotation(pod.annotations, kAllowedSourcePrefixesAnnotation);
    if (v == nullptr) {
        return out;
    }
    for (const auto &s : string_list(describe(pod), kAllowedSourcePrefixesAnnotation, *v)) {
        // A CIDR, as Go's net.ParseCIDR wants it: a bare address is not one.
        const auto c = s.find('/') == std::string::npos ? std::nullopt : ipam::Cidr::parse(s, true);
        if (!c) {
            throw PolicyError(
                describe(pod),
                std::string("metadata.annotations.") + kAllowedSourcePrefixesAnnotation,
                "failed to parse '" + s + "' as a CIDR");
        }
        out.push_back(ipam::Cidr::containing(c->addr(), c->len()));  // host bits dropped
    }
    return out;
}

PodNetworkRequest pod_network_request(const Pod *pod, const Namespace *ns) {
    PodNetworkRequest r;
    static const std::map<std::string, std::string> kNone;
    const auto &pa = pod != nullptr ? pod->annotations : kNone;
    const auto &na = ns != nullptr ? ns->annotations : kNone;
    const std::string pod_obj = pod != nullptr ? describe(*pod) : "";
    const std::string ns_obj = ns != nullptr ? describe(*ns) : "";
    // The namespace's annotation is the default, the pod's replaces it.
    auto pick = [&](const char *key) -> std::optional<std::vector<std::string>> {
        if (const std::string *v = annotation(pa, key)) {
            return string_list(pod_obj, key, *v);
        }
        if (const std::string *v = annotation(na, key)) {
            return string_list(ns_obj, key, *v);
        }
        return std::nullopt;
    };
    r.pools4 = pick(kIpv4PoolsAnnotation);
    r.pools6 = pick(kIpv6PoolsAnnotation);
    if (const std::string *v = annotation(pa, kIpFamiliesAnnotation)
                                   ? annotation(pa, kIpFamiliesAnnotation)
                                   : annotation(na, kIpFamiliesAnnotation)) {
        const bool own = annotation(pa, kIpFamiliesAnnotation) != nullptr;
        const std::string &obj = own ? pod_obj : ns_obj;
        r.assign4 = false;
        r.assign6 = false;
        for (const auto &f : string_list(obj, kIpFamiliesAnnotation, *v)) {
            if (f == "IPv4") {
                r.assign4 = true;
            } else if (f == "IPv6") {
                r.assign6 = true;
            } else {
                throw PolicyError(obj, std::string("metadata.annotations.") + kIpFamiliesAnnotation,
                                  "error parsing ipFamilies: " + *v + " (\"" + f +
                                      "\" is neither IPv4 nor IPv6)");
            }
        }
    }
    if (pod == nullptr) {
        return r;
    }
    const std::string *addrs = annotation(pa, kIpAddrsAnnotation);
    const std::string *no_ipam = annotation(pa, kIpAddrsNoIpamAnnotation);
    if (addrs != nullptr && no_ipam != nullptr) {
        throw PolicyError(pod_obj, "metadata.annotations",
                          "can't have both annotations: 'ipAddrs' and 'ipAddrsNoIpam' in use at "
                          "the same time");
    }
    if (no_ipam != nullptr) {
        throw PolicyError(pod_obj, std::string("metadata.annotations.") + kIpAddrsNoIpamAnnotation,
                          "requested feature is not enabled: ip_addrs_no_ipam (dpdk-fwd assigns "
                          "pod addresses through IPAM only; ipAddrs asks IPAM for fixed ones)");
    }
    if (addrs != nullptr) {
        const std::string field = std::string("metadata.annotations.") + kIpAddrsAnnotation;
        const auto list = string_list(pod_obj, kIpAddrsAnnotation, *addrs);
        if (list.empty()) {
            throw PolicyError(
                pod_obj, field,
                std::string("annotation \"") + kIpAddrsAnnotation + "\" specified but empty");
        }
        bool v4 = false, v6 = false;
        for (const auto &s : list) {
            const auto a = net::IpAddr::parse(s);
            if (!a) {
                throw PolicyError(pod_obj, field, "invalid IP format: " + s);
            }
            bool &seen = a->family() == net::Family::kIp4 ? v4 : v6;
            if (seen) {
                throw PolicyError(pod_obj, field,
                                  std::string("cannot have more than one ") +
                                      (a->family() == net::Family::kIp4 ? "IPv4" : "IPv6") +
                                      " address for \"" + kIpAddrsAnnotation + "\" annotation");
            }
            seen = true;
            r.ip_addrs.push_back(*a);
        }
    }
    r.allowed_source_prefixes = allowed_source_prefixes(*pod);
    return r;
}

void set_attachment(Pod &pod, const std::string &node, const std::vector<net::IpAddr> &ips,
                    const std::string &container_id) {
    pod.node = node;
    pod.ips = ips;
    pod.annotations[kContainerIdAnnotation] = container_id;
    // Calico's podIP is the first address "a/len"; podIPs all of them, comma separated.
    std::string list;
    for (const auto &a : ips) {
        list += (list.empty() ? "" : ",") + a.str() +
                (a.family() == net::Family::kIp4 ? "/32" : "/128");
    }
    if (ips.empty()) {
        pod.annotations.erase(kPodIpAnnotation);
        pod.annotations.erase(kPodIpsAnnotation);
    } else {
        pod.annotations[kPodIpAnnotation] = list.substr(0, list.find(','));
        pod.annotations[kPodIpsAnnotation] = list;
    }
}

bool clear_attachment(Pod &pod, const std::string &container_id) {
    const auto it = pod.annotations.find(kContainerIdAnnotation);
    if (it == pod.annotations.end() || it->second != container_id) {
        return false;
    }
    pod.annotations.erase(it);
    pod.annotations.erase(kPodIpAnnotation);
    pod.annotations.erase(kPodIpsAnnotation);
    pod.ips.clear();
    return true;
}

bool is_bare(const Pod &pod) {
    Pod bare;
    bare.ns = pod.ns;
    bare.name = pod.name;
    bare.node = pod.node;  // written by ADD, not by anyone who made the record
    return pod == bare;
}

}  // namespace fwd::policy
