#include "fwd/control/pod_check.hpp"

#include <algorithm>

#include "fwd/vhost/netns.hpp"

namespace fwd::control {

std::vector<std::string> pod_interface_differences(const nlohmann::json &ep) {
    std::vector<std::string> diff;
    vhost::PodIfConfig want;
    want.netns = ep.value("netns", "");
    want.ifname = ep.value("ifname", "eth0");
    const bool check_mtu = ep.contains("mtu") && ep["mtu"].is_number_integer();
    want.mtu = check_mtu ? ep["mtu"].get<uint16_t>() : 0;
    if (ep["ipv4"].is_string()) {
        want.ipv4 = net::Ip4Addr::parse(ep["ipv4"].get<std::string>());
    }
    if (ep["ipv6"].is_string()) {
        want.ipv6 = net::Ip6Addr::parse(ep["ipv6"].get<std::string>());
    }
    const std::string where = want.ifname + " in netns " + want.netns;
    vhost::PodIfState st;
    try {
        st = vhost::inspect_pod_interface(want.netns, want.ifname);
    } catch (const std::exception &e) {
        diff.push_back(e.what());
        return diff;
    }
    if (!st.exists) {
        diff.push_back("interface " + where + " does not exist");
        return diff;
    }
    if (!st.up) {
        diff.push_back("interface " + where + " is down");
    }
    if (st.mac.str() != ep.value("mac", "")) {
        diff.push_back("interface " + where + " has MAC " + st.mac.str() + ", expected " +
                       ep.value("mac", ""));
    }
    if (check_mtu && st.mtu != want.mtu) {
        diff.push_back("interface " + where + " has MTU " + std::to_string(st.mtu) + ", expected " +
                       std::to_string(want.mtu));
    }
    const auto addrs = vhost::expected_pod_addresses(want);
    for (const auto &a : addrs) {
        if (std::find(st.addresses.begin(), st.addresses.end(), a) == st.addresses.end()) {
            diff.push_back("address " + a + " missing on " + where);
        }
    }
    for (const auto &a : st.addresses) {
        bool link_local = a.rfind("fe80:", 0) == 0;
        if (!link_local && std::find(addrs.begin(), addrs.end(), a) == addrs.end()) {
            diff.push_back("unexpected address " + a + " on " + where);
        }
    }
    for (const auto &r : vhost::expected_pod_routes(want)) {
        if (std::find(st.routes.begin(), st.routes.end(), r) == st.routes.end()) {
            diff.push_back("route '" + r + "' missing in netns " + want.netns);
        }
    }
    return diff;
}

}  // namespace fwd::control
