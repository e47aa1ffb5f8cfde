// Pure helpers of the vhost component: devargs, device names, socket paths, netns paths and
// the canonical pod addresses and routes. No EAL, no netlink.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fwd/vhost/netns.hpp"
#include "fwd/vhost/pod_port.hpp"

namespace fwd::vhost {
namespace {

TEST(TapDevargs, NamesDeviceAndInterface) {
    EXPECT_EQ(tap_devname("p17"), "net_tap_p17");
    EXPECT_EQ(tap_devargs("p17", "fwdp17"), "net_tap_p17,iface=fwdp17");
    EXPECT_EQ(tap_devargs("a_b-9", "cali0123456789a"), "net_tap_a_b-9,iface=cali0123456789a");
}

TEST(TapDevargs, RejectsNamesTheKernelOrKvargsWouldNot) {
    EXPECT_THROW(tap_devargs("p1", ""), PortError);
    EXPECT_THROW(tap_devargs("p1", "cali0123456789ab"), PortError);  // 16 > IFNAMSIZ - 1
    EXPECT_THROW(tap_devargs("p1", "a,b"), PortError);
    EXPECT_THROW(tap_devargs("p1", "a=b"), PortError);
    EXPECT_THROW(tap_devargs("p1", "a/b"), PortError);
    EXPECT_THROW(tap_devargs("p1", "a b"), PortError);
    EXPECT_THROW(tap_devargs("p1", ".."), PortError);
}

TEST(PortToken, MustBeShortAndPlain) {
    EXPECT_THROW(tap_devname(""), PortError);
    EXPECT_THROW(tap_devname("p,1"), PortError);
    EXPECT_THROW(tap_devname("p 1"), PortError);
    EXPECT_THROW(tap_devname(std::string(kMaxTokenLen + 1, 'x')), PortError);
    EXPECT_EQ(tap_devname(std::string(kMaxTokenLen, 'x')),
              "net_tap_" + std::string(kMaxTokenLen, 'x'));
}

// librte_vhost takes the path as it is (no devargs to split): only sun_path's
// size and control characters are refused.
TEST(VhostSocketPath, FitsSunPathWithoutControlCharacters) {
    EXPECT_NO_THROW(check_socket_path("/run/fwd/p17.sock"));
    EXPECT_NO_THROW(check_socket_path("/run/a,b=c[1].sock"));
    EXPECT_NO_THROW(check_socket_path("/" + std::string(106, 'x')));
    EXPECT_THROW(check_socket_path(""), PortError);
    EXPECT_THROW(check_socket_path("/" + std::string(107, 'x')), PortError);
    EXPECT_THROW(check_socket_path("/run/a\nb.sock"), PortError);
}

TEST(ResolveNetnsPath, BareNameIsUnderVarRunNetns) {
    EXPECT_EQ(resolve_netns_path("pod1"), "/var/run/netns/pod1");
    EXPECT_EQ(resolve_netns_path("cni-1234-abcd"), "/var/run/netns/cni-1234-abcd");
}

TEST(ResolveNetnsPath, PathsAreKept) {
    EXPECT_EQ(resolve_netns_path("/var/run/netns/pod1"), "/var/run/netns/pod1");
    EXPECT_EQ(resolve_netns_path("/proc/4242/ns/net"), "/proc/4242/ns/net");
    EXPECT_EQ(resolve_netns_path("./pod1"), "./pod1");
}

TEST(ResolveNetnsPath, RejectsEmptyAndDots) {
    EXPECT_THROW(resolve_netns_path(""), NetnsError);
    EXPECT_THROW(resolve_netns_path("."), NetnsError);
    EXPECT_THROW(resolve_netns_path(".."), NetnsError);
}

PodIfConfig dual_stack() {
    PodIfConfig cfg;
    cfg.netns = "pod1";
    cfg.host_ifname = "fwdp1";
    cfg.ipv4 = *net::Ip4Addr::parse("10.65.0.5");
    cfg.ipv6 = *net::Ip6Addr::parse("fd00:10:65::5");
    return cfg;
}

TEST(ExpectedPodState, DualStack) {
    const PodIfConfig cfg = dual_stack();
    EXPECT_EQ(expected_pod_addresses(cfg),
              (std::vector<std::string>{"10.65.0.5/32", "fd00:10:65::5/128"}));
    EXPECT_EQ(expected_pod_routes(cfg), (std::vector<std::string>{
                                            "169.254.1.1/32 dev eth0",
                                            "default via 169.254.1.1 dev eth0",
                                            "default via fe80::ecee:eeff:feee:eeee dev eth0",
                                        }));
}

TEST(ExpectedPodState, SingleFamilyOnlyGetsItsRoutes) {
    PodIfConfig v4 = dual_stack();
    v4.ipv6.reset();
    v4.ifname = "net1";
    EXPECT_EQ(expected_pod_addresses(v4), std::vector<std::string>{"10.65.0.5/32"});
    EXPECT_EQ(expected_pod_routes(v4), (std::vector<std::string>{
                                           "169.254.1.1/32 dev net1",
                                           "default via 169.254.1.1 dev net1",
                                       }));

    PodIfConfig v6 = dual_stack();
    v6.ipv4.reset();
    EXPECT_EQ(expected_pod_addresses(v6), std::vector<std::string>{"fd00:10:65::5/128"});
    EXPECT_EQ(expected_pod_routes(v6),
              std::vector<std::string>{"default via fe80::ecee:eeff:feee:eeee dev eth0"});
}

TEST(FormatRoute, GatewayIsOptional) {
    EXPECT_EQ(format_route("10.0.0.0/8", "", "eth0"), "10.0.0.0/8 dev eth0");
    EXPECT_EQ(format_route("default", "169.254.1.1", "eth0"), "default via 169.254.1.1 dev eth0");
}

}  // namespace
}  // namespace fwd::vhost
