// fuzz_packet's seed corpus, built with the datapath tests' packet builder (correct lengths and
// checksums, so the fuzzer starts from frames every stage takes in): what a pod, the network and
// a kernel pod send to a node. FWD_FUZZ_PACKET_SEEDS=DIR fuzz_packet writes them to DIR and
// exits (tests/fuzz/corpus/fuzz_packet/ is its output, committed).
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_packet.hpp"

namespace fwd::dp::test {
namespace {

constexpr uint8_t kVxlanFlagVni = 0x08;

// A seed: the switches byte, then [port][length][frame] per frame (fuzz_packet.cpp).
struct Seed {
    std::string name;
    uint8_t switches = 1;
    std::vector<std::pair<uint8_t, Bytes>> frames;
};

Bytes vnet(uint8_t flags, uint8_t gso, uint16_t hdr_len, uint16_t gso_size, uint16_t start,
           uint16_t offset) {
    Bytes h = {flags, gso};
    for (uint16_t v : {hdr_len, gso_size, start, offset, uint16_t{0}}) {
        h.push_back(static_cast<uint8_t>(v));  // host order (little-endian), as tun writes it
        h.push_back(static_cast<uint8_t>(v >> 8));
    }
    return h;
}

// A tun frame: the virtio-net header, then the frame.
Bytes tun(const Bytes &hdr, const PacketBuilder &b) {
    Bytes f = hdr;
    Bytes fr = b.build();
    f.insert(f.end(), fr.begin(), fr.end());
    return f;
}

PacketBuilder from_tun() {
    return std::move(PacketBuilder().eth(kFuzzTunMac, kGwMac));
}
PacketBuilder from_vhost() {
    return std::move(PacketBuilder().eth(kFuzzVhostMac, kGwMac));
}

Bytes vxlan(bool v6, const Bytes &inner_l3, uint32_t vni = overlay::kDefaultVni) {
    const bool inner6 = (inner_l3[0] >> 4) == 6;
    Bytes in = {kVxlanFlagVni,
                0,
                0,
                0,
                static_cast<uint8_t>(vni >> 16),
                static_cast<uint8_t>(vni >> 8),
                static_cast<uint8_t>(vni),
                0};
    Bytes eth(kFuzzVtepMac4.begin(), kFuzzVtepMac4.end());
    if (v6) {
        std::copy(kFuzzVtepMac6.begin(), kFuzzVtepMac6.end(), eth.begin());
    }
    eth.insert(eth.end(), kFuzzRemoteVtepMac.begin(), kFuzzRemoteVtepMac.end());
    eth.push_back(inner6 ? 0x86 : 0x08);
    eth.push_back(inner6 ? 0xdd : 0x00);
    in.insert(in.end(), eth.begin(), eth.end());
    in.insert(in.end(), inner_l3.begin(), inner_l3.end());
    PacketBuilder b = from_uplink();
    if (v6) {
        b.ip6(kFuzzRemote6, kNode6);
    } else {
        b.ip4(kFuzzRemote4, kNode4);
    }
    return b.udp(49152, overlay::kDefaultVxlanPort).payload(in).build();
}

std::vector<Seed> seeds() {
    const uint32_t kVip4 = ip4("10.96.0.10"), kOut4 = ip4("203.0.113.5");
    const Ip6 kVip6 = ip6("fd00:96::10"), kOut6 = ip6("2001:db8:99::5");
    const uint32_t kRemotePod4 = ip4("10.65.2.9"), kIpipPod4 = ip4("10.65.3.9");
    const Ip6 kRemotePod6 = ip6("fd00:65:2::9");
    const uint8_t A = kFuzzPodA, B = kFuzzPodB, U = kFuzzUplink, V = kFuzzVhost, T = kFuzzTun;
    std::vector<Seed> s;
    auto one = [&](std::string name, uint8_t port, Bytes f, uint8_t sw = 1) {
        s.push_back({std::move(name), sw, {{port, std::move(f)}}});
    };
    // --- ARP, ND ---
    one("arp_request_gw", A, from_pod_a().arp(1, kPodAMac, kPodA4, {}, kGw4).build());
    one("arp_request_node_uplink", U,
        PacketBuilder()
            .eth(kRouterMac, kBroadcastMac)
            .arp(1, kRouterMac, ip4("192.168.50.1"), {}, kNode4)
            .build());
    one("arp_reply_uplink", U,
        from_uplink().arp(2, kRouterMac, ip4("192.168.50.1"), kUplinkMac, kNode4).build());
    one("nd_ns_gw", A,
        PacketBuilder()
            .eth(kPodAMac, kGwSnmMac)
            .ip6(kPodALl6, kGwSnm6)
            .hop_limit(255)
            .ns(kGw6)
            .nd_option_ll(1, kPodAMac)
            .build());
    one("nd_na_uplink", U,
        from_uplink()
            .ip6(ip6("fd00:50::1"), kNode6)
            .hop_limit(255)
            .na(ip6("fd00:50::1"), 0x60000000)
            .nd_option_ll(2, kRouterMac)
            .build());
    one("nd_rs", B,
        PacketBuilder()
            .eth(kPodBMac, kAllNodesMac)
            .ip6(kPodALl6, ip6("ff02::2"))
            .hop_limit(255)
            .rs()
            .build());
    // --- pod to pod, pod to node, pod out ---
    for (bool v6 : {false, true}) {
        const std::string f = v6 ? "6" : "4";
        auto ipab = [&](PacketBuilder b) {
            return v6 ? std::move(b.ip6(kPodA6, kPodB6)) : std::move(b.ip4(kPodA4, kPodB4));
        };
        auto ipa = [&](PacketBuilder b, uint32_t d4, const Ip6 &d6) {
            return v6 ? std::move(b.ip6(kPodA6, d6)) : std::move(b.ip4(kPodA4, d4));
        };
        one("tcp_syn_a_b" + f, A, ipab(from_pod_a()).tcp(40000, 8080).build());
        one("udp_a_b" + f, A, ipab(from_pod_a()).udp(40000, 53).payload(40).build());
        one("echo_a_b" + f, A, ipab(from_pod_a()).echo_request().payload(56).build());
        one("echo_a_node" + f, A, ipa(from_pod_a(), kNode4, kNode6).echo_request().build());
        one("echo_a_gw" + f, A, ipa(from_pod_a(), kGw4, kGw6).echo_request().payload(8).build());
        one("tcp_a_out_nat" + f, A, ipa(from_pod_a(), kOut4, kOut6).tcp(40001, 443).build());
        one("udp_a_out_nat" + f, A,
            ipa(from_pod_a(), kOut4, kOut6).udp(40002, 53).payload(30).build());
        one("tcp_a_ssh_denied" + f, A, ipab(from_pod_a()).tcp(40003, 22).build());
        one("svc_tcp" + f, A, ipa(from_pod_a(), kVip4, kVip6).tcp(40004, 80).build());
        one("svc_udp" + f, A, ipa(from_pod_a(), kVip4, kVip6).udp(40005, 80).payload(10).build());
        one("ttl1" + f, A,
            (v6 ? std::move(from_pod_a().ip6(kPodA6, kOut6).hop_limit(1))
                : std::move(from_pod_a().ip4(kPodA4, kOut4).ttl(1)))
                .udp(1, 2)
                .build());
        one("too_big_for_b" + f, A,
            (v6 ? std::move(from_pod_a().ip6(kPodA6, kPodB6))
                : std::move(from_pod_a().ip4(kPodA4, kPodB4).df()))
                .udp(1, 2)
                .payload(1460)
                .build());
        one("blackhole" + f, A, ipa(from_pod_a(), kBlackhole4, kBlackhole6).udp(1, 2).build());
        one("unreachable" + f, A,
            ipa(from_pod_a(), kUnreachable4, kUnreachable6).udp(1, 2).build());
        one("spoofed" + f, A,
            (v6 ? std::move(from_pod_a().ip6(kPodB6, kOut6))
                : std::move(from_pod_a().ip4(kPodB4, kOut4)))
                .udp(1, 2)
                .build());
        one("to_remote_vxlan" + f, A,
            ipa(from_pod_a(), kRemotePod4, kRemotePod6).tcp(40006, 80).payload(100).build());
        one("vhost_to_a" + f, V,
            (v6 ? std::move(from_vhost().ip6(kFuzzVhost6, kPodA6))
                : std::move(from_vhost().ip4(kFuzzVhost4, kPodA4)))
                .tcp(1000, 80)
                .build());
        one("uplink_to_a" + f, U,
            (v6 ? std::move(from_uplink().ip6(kOut6, kPodA6))
                : std::move(from_uplink().ip4(kOut4, kPodA4)))
                .tcp(443, 40001, 0x12)
                .build());
        one("uplink_echo_node" + f, U,
            (v6 ? std::move(from_uplink().ip6(kOut6, kNode6))
                : std::move(from_uplink().ip4(kOut4, kNode4)))
                .echo_request()
                .build());
        one("uplink_vlan_to_b" + f, U,
            (v6 ? std::move(from_uplink().vlan(kUplinkVlan).ip6(kOut6, kPodB6))
                : std::move(from_uplink().vlan(kUplinkVlan).ip4(kOut4, kPodB4)))
                .udp(53, 40000)
                .payload(20)
                .build(),
            3);
        // From the kernel pod to (d4, d6), its virtio-net header first.
        auto from_tun_to = [&](uint32_t d4, const Ip6 &d6) {
            return v6 ? std::move(from_tun().ip6(kFuzzTun6, d6))
                      : std::move(from_tun().ip4(kFuzzTun4, d4));
        };
        one("tun_plain" + f, T,
            tun(vnet(0, 0, 0, 0, 0, 0), from_tun_to(kPodA4, kPodA6).udp(5000, 6000).payload(100)));
        // A kernel pod's GSO frames: TCP, segments of gso_size, the checksum partial.
        const uint16_t l3 = v6 ? 40 : 20;
        const Bytes gso = vnet(1, v6 ? 4 : 1, static_cast<uint16_t>(14 + l3 + 20), 1400,
                               static_cast<uint16_t>(14 + l3), 16);
        one("tun_gso_tcp" + f, T,
            tun(gso, from_tun_to(kOut4, kOut6).tcp(5001, 443, 0x18).payload(20000)));
        one("tun_gso_to_pod_b" + f, T,
            tun(gso, from_tun_to(kPodB4, kPodB6).tcp(5002, 8080, 0x18).payload(5000)));
        one("tun_csum_udp" + f, T,
            tun(vnet(1, 0, 0, 0, static_cast<uint16_t>(14 + l3), 6),
                from_tun_to(kRemotePod4, kRemotePod6).udp(5003, 53).payload(300)));
        // A big frame from an ethdev pod (a chain of mbufs), to the vhost pod (takes TSO).
        one("big_chain" + f, A,
            ipa(from_pod_a(), kFuzzVhost4, kFuzzVhost6).udp(7, 7).payload(9000).build());
    }
    // --- fragments, options, extension headers ---
    one("frag4_first", A, from_pod_a().ip4(kPodA4, kOut4).mf().udp(1, 2).payload(100).build());
    one("frag4_later", A,
        from_pod_a().ip4(kPodA4, kOut4).frag_offset(20).next_proto(kProtoUdp).payload(64).build());
    one("frag6_first", A,
        from_pod_a().ip6(kPodA6, kOut6).fragment(0, true).udp(1, 2).payload(100).build());
    one("frag6_later", A,
        from_pod_a()
            .ip6(kPodA6, kOut6)
            .fragment(20, false)
            .next_proto(kProtoUdp)
            .payload(64)
            .build());
    one("ip4_options", A,
        from_pod_a().ip4(kPodA4, kPodB4).ip4_options({7, 7, 4, 0, 0, 0, 0}).udp(1, 2).build());
    one("ip6_hbh", A, from_pod_a().ip6(kPodA6, kPodB6).hop_by_hop().udp(1, 2).build());
    one("ip6_dest_routing", U,
        from_uplink().ip6(kOut6, kPodA6).dest_opts(16).routing(0).tcp(443, 1).build());
    one("ip6_routing_left", U, from_uplink().ip6(kOut6, kNode6).routing(1, 24).udp(1, 2).build());
    // --- overlays in ---
    const Bytes in4 =
        l3_of(PacketBuilder().ip4(kRemotePod4, kPodA4).ttl(63).udp(1000, 2000).payload(20));
    const Bytes in6 =
        l3_of(PacketBuilder().ip6(kRemotePod6, kPodA6).hop_limit(63).tcp(1000, 8080).payload(20));
    one("vxlan4_in", U, vxlan(false, in4));
    one("vxlan6_in", U, vxlan(true, in6));
    one("vxlan4_inner6", U, vxlan(false, in6));
    one("vxlan4_bad_vni", U, vxlan(false, in4, 99));
    one("ipip_in", U,
        from_uplink()
            .ip4(kFuzzIpipPeer4, kNode4)
            .next_proto(IPPROTO_IPIP)
            .payload(l3_of(PacketBuilder().ip4(kIpipPod4, kPodA4).echo_request()))
            .build());
    one("to_ipip", A, from_pod_a().ip4(kPodA4, kIpipPod4).udp(9, 9).payload(1470).df().build());
    // --- broken ---
    one("runt", A, Bytes{0x02, 0, 0, 0, 0});
    one("empty", U, Bytes{});
    one("bad_ihl", A, from_pod_a().ip4(kPodA4, kPodB4).ihl(3).udp(1, 2).build());
    one("total_length_long", A,
        from_pod_a().ip4(kPodA4, kPodB4).total_length(1400).udp(1, 2).build());
    one("bad_csum", U, from_uplink().ip4(kOut4, kPodA4).bad_ip_checksum().udp(1, 2).build());
    one("truncated_tcp6", A,
        from_pod_a().ip6(kPodA6, kPodB6).tcp(1, 2).truncate(14 + 40 + 6).build());
    one("tun_bad_vnet", T, Bytes{1, 1, 0, 0});
    // --- bursts: everything above, mixed, both switches ---
    for (uint8_t sw : {uint8_t{0}, uint8_t{1}, uint8_t{3}}) {
        Seed b{"burst_sw" + std::to_string(sw), sw, {}};
        for (size_t i = 0; i < s.size() && b.frames.size() < 40; i += 2) {
            if (s[i].frames[0].second.size() < 3000) {
                b.frames.push_back(s[i].frames[0]);
            }
        }
        s.push_back(b);
    }
    Seed flow{"tcp_flow4", 1, {}};
    flow.frames.push_back({A, from_pod_a().ip4(kPodA4, kOut4).tcp(41000, 443, 0x02).build()});
    flow.frames.push_back({U, from_uplink().ip4(kNode4, kPodA4).tcp(443, 41000, 0x12).build()});
    flow.frames.push_back({A, from_pod_a().ip4(kPodA4, kOut4).tcp(41000, 443, 0x10).build()});
    s.push_back(flow);
    // More new flows (DNS from pod A, one source port each) than the node's connection table
    // holds (32, fuzz_packet.cpp): the last ones are refused, ct_table_full.
    Seed fill{"ct_fill", 1, {}};
    for (uint16_t i = 0; i < 40; i++) {
        fill.frames.push_back(
            {A, from_pod_a().ip4(kPodA4, kOut4).udp(static_cast<uint16_t>(20000 + i), 53).build()});
    }
    s.push_back(fill);
    return s;
}

}  // namespace

int write_seeds(const char *dir) {
    mkdir(dir, 0755);
    int n = 0;
    for (const Seed &sd : seeds()) {
        Bytes out = {sd.switches};
        for (const auto &[port, f] : sd.frames) {
            out.push_back(port);
            out.push_back(static_cast<uint8_t>(f.size() >> 8));
            out.push_back(static_cast<uint8_t>(f.size()));
            out.insert(out.end(), f.begin(), f.end());
        }
        const std::string path = std::string(dir) + "/" + sd.name;
        FILE *fp = std::fopen(path.c_str(), "wb");
        if (fp == nullptr || std::fwrite(out.data(), 1, out.size(), fp) != out.size()) {
            std::perror(path.c_str());
            return 1;
        }
        std::fclose(fp);
        n++;
    }
    std::printf("fuzz_packet: %d seeds in %s\n", n, dir);
    return 0;
}

}  // namespace fwd::dp::test
