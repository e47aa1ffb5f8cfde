// Calico's CNI annotations on pod and namespace records (fwd/policy/pod_network.hpp): which
// pools, families and fixed addresses they ask for, every refusal with Calico's reason, and
// the attachment the CNI plugin writes into a record and takes out again (registry, in-memory
// store).
#include <gtest/gtest.h>

#include "fwd/ipam/mem_store.hpp"
#include "fwd/policy/pod_network.hpp"
#include "fwd/policy/store.hpp"

namespace fwd::policy {
namespace {

Pod pod_with(std::map<std::string, std::string> annotations) {
    Pod p;
    p.ns = "production";
    p.name = "production-app";
    p.annotations = std::move(annotations);
    return p;
}

Namespace ns_with(std::map<std::string, std::string> annotations) {
    Namespace n;
    n.name = "production";
    n.annotations = std::move(annotations);
    return n;
}

std::string error_of(const Pod *p, const Namespace *n) {
    try {
        pod_network_request(p, n);
    } catch (const PolicyError &e) {
        return e.what();
    }
    return "ok";
}

TEST(PodNetwork, NoRecordAsksNothing) {
    const auto r = pod_network_request(nullptr, nullptr);
    EXPECT_FALSE(r.pools4 || r.pools6 || r.assign4 || r.assign6);
    EXPECT_TRUE(r.ip_addrs.empty() && r.allowed_source_prefixes.empty());
}

TEST(PodNetwork, ThePodsPoolsWinOverItsNamespaces) {
    // ../shared/examples/pod-ipv6-pool-annotation.yaml, with a namespace default for IPv4.
    const Pod p = pod_with({{kIpv6PoolsAnnotation, R"(["production-pods-ipv6"])"}});
    const Namespace n = ns_with({{kIpv4PoolsAnnotation, R"(["10.9.0.0/24"])"},
                                 {kIpv6PoolsAnnotation, R"(["ns-default-v6"])"}});
    const auto r = pod_network_request(&p, &n);
    ASSERT_TRUE(r.pools4 && r.pools6);
    EXPECT_EQ(*r.pools4, std::vector<std::string>{"10.9.0.0/24"});
    EXPECT_EQ(*r.pools6, std::vector<std::string>{"production-pods-ipv6"});
    const auto only_ns = pod_network_request(nullptr, &n);
    EXPECT_EQ(*only_ns.pools6, std::vector<std::string>{"ns-default-v6"});
}

TEST(PodNetwork, IpFamiliesAndFixedAddresses) {
    const Pod p = pod_with({{kIpFamiliesAnnotation, R"(["IPv6"])"},
                            {kIpAddrsAnnotation, R"(["10.9.0.7", "fd00:9::7"])"}});
    const auto r = pod_network_request(&p, nullptr);
    EXPECT_EQ(r.assign4, false);
    EXPECT_EQ(r.assign6, true);
    ASSERT_EQ(r.ip_addrs.size(), 2u);
    EXPECT_EQ(r.ip_addrs[0].str(), "10.9.0.7");
    EXPECT_EQ(r.ip_addrs[1].str(), "fd00:9::7");
}

TEST(PodNetwork, AllowedSourcePrefixesAreNormalized) {
    const Pod p =
        pod_with({{kAllowedSourcePrefixesAnnotation, R"(["10.9.0.5/24", "fd00:9::1/64"])"}});
    const auto r = pod_network_request(&p, nullptr);
    ASSERT_EQ(r.allowed_source_prefixes.size(), 2u);
    EXPECT_EQ(r.allowed_source_prefixes[0].str(), "10.9.0.0/24");
    EXPECT_EQ(r.allowed_source_prefixes[1].str(), "fd00:9::/64");
}

TEST(PodNetwork, RefusalsNameTheAnnotationAndSayWhy) {
    const std::string pre = "Pod 'production/production-app': metadata.annotations.";
    struct Case {
        const char *key, *value, *want;
    } cases[] = {
        {kIpv4PoolsAnnotation, "pool-a",
         "cni.projectcalico.org/ipv4pools: failed to parse 'pool-a' as JSON"},
        {kIpv6PoolsAnnotation, R"({"a": 1})",
         "ipv6pools: failed to parse '{\"a\": 1}' as JSON: want a list of strings"},
        {kIpv4PoolsAnnotation, "[1]", "1 is not a string"},
        {kIpFamiliesAnnotation, R"(["IPv5"])", "error parsing ipFamilies: [\"IPv5\"]"},
        {kIpAddrsAnnotation, "[]",
         "annotation \"cni.projectcalico.org/ipAddrs\" specified but empty"},
        {kIpAddrsAnnotation, R"(["10.0.0.300"])", "invalid IP format: 10.0.0.300"},
        {kIpAddrsAnnotation, R"(["10.0.0.1", "10.0.0.2"])",
         "cannot have more than one IPv4 address for \"cni.projectcalico.org/ipAddrs\" annotation"},
        {kIpAddrsAnnotation, R"(["fd00::1", "fd00::2"])", "cannot have more than one IPv6 address"},
        {kIpAddrsNoIpamAnnotation, R"(["10.0.0.1"])",
         "requested feature is not enabled: ip_addrs_no_ipam"},
        {kAllowedSourcePrefixesAnnotation, R"(["10.0.0.1"])",
         "allowedSourcePrefixes: failed to parse '10.0.0.1' as a CIDR"},
    };
    for (const auto &c : cases) {
        const Pod p = pod_with({{c.key, c.value}});
        const std::string e = error_of(&p, nullptr);
        EXPECT_EQ(e.rfind(pre, 0), 0u) << e;
        EXPECT_NE(e.find(c.want), std::string::npos) << c.key << " " << c.value << ": " << e;
    }
    const Pod both = pod_with(
        {{kIpAddrsAnnotation, R"(["10.0.0.1"])"}, {kIpAddrsNoIpamAnnotation, R"(["10.0.0.1"])"}});
    EXPECT_NE(error_of(&both, nullptr).find("can't have both annotations"), std::string::npos);
    // A namespace's bad default names the namespace.
    const Namespace n = ns_with({{kIpv4PoolsAnnotation, "nope"}});
    EXPECT_EQ(error_of(nullptr, &n)
                  .rfind("Namespace 'production': metadata.annotations."
                         "cni.projectcalico.org/ipv4pools: failed to parse",
                         0),
              0u)
        << error_of(nullptr, &n);
}

TEST(PodNetwork, AttachAndDetachInTheStore) {
    ipam::MemStore store;
    PolicyRegistry reg(store);
    const std::vector<net::IpAddr> ips{*net::IpAddr::parse("10.0.0.2"),
                                       *net::IpAddr::parse("fd00::2")};

    // A pod with no record: ADD makes a bare one, DEL takes it away again.
    Pod made = reg.attach_pod("shop", "web-0", "n1", ips, "c1");
    EXPECT_EQ(made.node, "n1");
    EXPECT_EQ(made.ips, ips);
    EXPECT_EQ(made.annotations.at(kContainerIdAnnotation), "c1");
    EXPECT_EQ(made.annotations.at(kPodIpAnnotation), "10.0.0.2/32");
    EXPECT_EQ(made.annotations.at(kPodIpsAnnotation), "10.0.0.2/32,fd00::2/128");
    EXPECT_EQ(reg.get_pod("shop", "web-0"), made);
    EXPECT_FALSE(reg.detach_pod("shop", "web-0", "another-sandbox"));  // not its container
    EXPECT_TRUE(reg.get_pod("shop", "web-0"));
    EXPECT_TRUE(reg.detach_pod("shop", "web-0", "c1"));
    EXPECT_FALSE(reg.get_pod("shop", "web-0"));
    EXPECT_FALSE(reg.detach_pod("shop", "web-0", "c1"));  // idempotent

    // A record applied first keeps its labels and annotations through ADD and DEL.
    Pod manifest;
    manifest.ns = "shop";
    manifest.name = "api";
    manifest.labels = {{"app", "api"}};
    manifest.annotations = {{kIpv4PoolsAnnotation, R"(["p4"])"}};
    reg.apply({manifest});
    Pod attached = reg.attach_pod("shop", "api", "n1", ips, "c2");
    EXPECT_EQ(attached.labels, manifest.labels);
    EXPECT_EQ(attached.annotations.at(kIpv4PoolsAnnotation), R"(["p4"])");
    EXPECT_TRUE(reg.detach_pod("shop", "api", "c2"));
    auto after = reg.get_pod("shop", "api");
    ASSERT_TRUE(after);
    EXPECT_TRUE(after->ips.empty());
    EXPECT_EQ(after->node, "n1");
    EXPECT_EQ(after->labels, manifest.labels);
    EXPECT_EQ(after->annotations, manifest.annotations);
}

}  // namespace
}  // namespace fwd::policy
