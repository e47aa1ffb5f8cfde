// flows::Device on rte_flow (nic_flows.hpp): a Rule as an ingress rte_flow rule, items and
// actions with explicit masks (DPDK's default masks are C-only).
#include <rte_ethdev.h>
#include <rte_flow.h>

#include <algorithm>
#include <cstring>

#include "fwd/control/nic_flows.hpp"

namespace fwd::control::flows {
namespace {

// A rule in rte_flow's terms; the item and action arrays point into it, so it is not copied.
struct RteRule {
    rte_flow_attr attr{};
    rte_flow_item_vlan vlan{}, vlan_m{};
    rte_flow_item_ipv4 ip4{}, ip4_m{};
    rte_flow_item_ipv6 ip6{}, ip6_m{};
    rte_flow_item_tcp tcp{}, tcp_m{};
    rte_flow_item_udp udp{}, udp_m{};
    rte_flow_item_icmp icmp{}, icmp_m{};
    rte_flow_item_icmp6 icmp6{}, icmp6_m{};
    rte_flow_action_rss rss{};
    rte_flow_action_queue queue{};
    rte_flow_action_count count{};
    std::vector<uint16_t> queues;
    rte_flow_item items[8]{};
    rte_flow_action actions[4]{};

    RteRule(const RteRule &) = delete;
    RteRule &operator=(const RteRule &) = delete;

    explicit RteRule(const Rule &r) {
        attr.ingress = 1;
        attr.priority = r.priority;
        const Match &m = r.match;
        int n = 0;
        items[n++] = {RTE_FLOW_ITEM_TYPE_ETH, nullptr, nullptr, nullptr};
        if (m.vlan != 0) {
            vlan.hdr.vlan_tci = rte_cpu_to_be_16(m.vlan);
            vlan_m.hdr.vlan_tci = rte_cpu_to_be_16(0x0fff);
            items[n++] = {RTE_FLOW_ITEM_TYPE_VLAN, &vlan, nullptr, &vlan_m};
        }
        if (m.family == net::Family::kIp4) {
            if (m.src) {
                const auto &p = std::get<net::Prefix4>(*m.src);
                ip4.hdr.src_addr = p.addr.be().raw();
                ip4_m.hdr.src_addr =
                    net::Ip4Addr::from_host(p.len == 0 ? 0 : ~0u << (32 - p.len)).be().raw();
            }
            if (m.dst) {
                const auto &p = std::get<net::Prefix4>(*m.dst);
                ip4.hdr.dst_addr = p.addr.be().raw();
                ip4_m.hdr.dst_addr =
                    net::Ip4Addr::from_host(p.len == 0 ? 0 : ~0u << (32 - p.len)).be().raw();
            }
            if (m.proto) {
                ip4.hdr.next_proto_id = *m.proto;
                ip4_m.hdr.next_proto_id = 0xff;
            }
            items[n++] = {RTE_FLOW_ITEM_TYPE_IPV4, &ip4, nullptr, &ip4_m};
        } else if (m.family == net::Family::kIp6) {
            auto put = [](uint8_t *addr, uint8_t *mask, const net::Prefix6 &p) {
                std::memcpy(addr, p.addr.data(), 16);
                for (int i = 0; i < 16; i++) {
                    const int bits = std::min(8, std::max(0, p.len - i * 8));
                    mask[i] = static_cast<uint8_t>(0xff00 >> bits);
                }
            };
            if (m.src) {
                put(ip6.hdr.src_addr, ip6_m.hdr.src_addr, std::get<net::Prefix6>(*m.src));
            }
            if (m.dst) {
                put(ip6.hdr.dst_addr, ip6_m.hdr.dst_addr, std::get<net::Prefix6>(*m.dst));
            }
            if (m.proto) {
                ip6.hdr.proto = *m.proto;
                ip6_m.hdr.proto = 0xff;
            }
            items[n++] = {RTE_FLOW_ITEM_TYPE_IPV6, &ip6, nullptr, &ip6_m};
        }
        if (m.family && m.proto) {
            // Packed headers: the ports are set by value, not through references.
            const rte_be16_t sp = m.sport ? rte_cpu_to_be_16(m.sport->value) : 0;
            const rte_be16_t spm = m.sport ? rte_cpu_to_be_16(m.sport->mask) : 0;
            const rte_be16_t dp = m.dport ? rte_cpu_to_be_16(m.dport->value) : 0;
            const rte_be16_t dpm = m.dport ? rte_cpu_to_be_16(m.dport->mask) : 0;
            switch (*m.proto) {
                case 6:
                    tcp.hdr.src_port = sp;
                    tcp_m.hdr.src_port = spm;
                    tcp.hdr.dst_port = dp;
                    tcp_m.hdr.dst_port = dpm;
                    if (m.tcp_syn_only) {
                        tcp.hdr.tcp_flags = RTE_TCP_SYN_FLAG;
                        tcp_m.hdr.tcp_flags = RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG;
                    }
                    items[n++] = {RTE_FLOW_ITEM_TYPE_TCP, &tcp, nullptr, &tcp_m};
                    break;
                case 17:
                    udp.hdr.src_port = sp;
                    udp_m.hdr.src_port = spm;
                    udp.hdr.dst_port = dp;
                    udp_m.hdr.dst_port = dpm;
                    items[n++] = {RTE_FLOW_ITEM_TYPE_UDP, &udp, nullptr, &udp_m};
                    break;
                case 1:
                    if (m.icmp_type) {
                        icmp.hdr.icmp_type = *m.icmp_type;
                        icmp_m.hdr.icmp_type = 0xff;
                    }
                    items[n++] = {RTE_FLOW_ITEM_TYPE_ICMP, &icmp, nullptr, &icmp_m};
                    break;
                case 58:
                    if (m.icmp_type) {
                        icmp6.type = *m.icmp_type;
                        icmp6_m.type = 0xff;
                    }
                    items[n++] = {RTE_FLOW_ITEM_TYPE_ICMP6, &icmp6, nullptr, &icmp6_m};
                    break;
                default:
                    break;  // the protocol number in the L3 item is the match
            }
        }
        items[n] = {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr};
        int a = 0;
        const Action &act = r.action;
        if (act.count) {
            actions[a++] = {RTE_FLOW_ACTION_TYPE_COUNT, &count};
        }
        switch (act.kind) {
            case Action::Kind::kRss:
                queues = act.queues;
                rss.func = RTE_ETH_HASH_FUNCTION_DEFAULT;
                rss.level = act.level;
                rss.types = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
                rss.queue_num = static_cast<uint32_t>(queues.size());
                rss.queue = queues.data();
                actions[a++] = {RTE_FLOW_ACTION_TYPE_RSS, &rss};
                break;
            case Action::Kind::kQueue:
                queue.index = act.queues.empty() ? 0 : act.queues.front();
                actions[a++] = {RTE_FLOW_ACTION_TYPE_QUEUE, &queue};
                break;
            case Action::Kind::kDrop:
                actions[a++] = {RTE_FLOW_ACTION_TYPE_DROP, nullptr};
                break;
        }
        actions[a] = {RTE_FLOW_ACTION_TYPE_END, nullptr};
    }
};

std::string flow_error(int ret, const rte_flow_error &err) {
    std::string s = err.message != nullptr ? err.message : std::strerror(ret < 0 ? -ret : ret);
    if (err.type != RTE_FLOW_ERROR_TYPE_NONE) {
        s += " (rte_flow error type " + std::to_string(static_cast<int>(err.type)) + ")";
    }
    return s;
}

class RteFlowDevice final : public Device {
  public:
    explicit RteFlowDevice(uint16_t port) : port_(port) {
        rte_eth_dev_info info{};
        if (rte_eth_dev_info_get(port, &info) == 0 && info.driver_name != nullptr) {
            driver_ = info.driver_name;
        }
    }

    std::string validate(const Rule &r) override {
        if (r.action.kind == Action::Kind::kRss && driver_ == "net_tap") {
            return "not asked of net_tap: DPDK 22.11's tap crashes validating RSS rules where "
                   "the kernel lacks its qdisc";
        }
        RteRule x(r);
        rte_flow_error err{};
        const int ret = rte_flow_validate(port_, &x.attr, x.items, x.actions, &err);
        return ret == 0 ? std::string() : flow_error(ret, err);
    }

    uint64_t create(const Rule &r, std::string *error) override {
        RteRule x(r);
        rte_flow_error err{};
        rte_flow *f = rte_flow_create(port_, &x.attr, x.items, x.actions, &err);
        if (f == nullptr) {
            *error = flow_error(-rte_errno, err);
            return 0;
        }
        return reinterpret_cast<uint64_t>(f);
    }

    std::string destroy(uint64_t handle) override {
        rte_flow_error err{};
        const int ret = rte_flow_destroy(port_, reinterpret_cast<rte_flow *>(handle), &err);
        return ret == 0 ? std::string() : flow_error(ret, err);
    }

    std::optional<uint64_t> hits(uint64_t handle) override {
        rte_flow_query_count q{};
        const rte_flow_action count[] = {{RTE_FLOW_ACTION_TYPE_COUNT, nullptr},
                                         {RTE_FLOW_ACTION_TYPE_END, nullptr}};
        rte_flow_error err{};
        if (rte_flow_query(port_, reinterpret_cast<rte_flow *>(handle), count, &q, &err) != 0 ||
            q.hits_set == 0) {
            return std::nullopt;
        }
        return q.hits;
    }

  private:
    uint16_t port_;
    std::string driver_;
};

}  // namespace

std::unique_ptr<Device> rte_flow_device(uint16_t port_id) {
    return std::make_unique<RteFlowDevice>(port_id);
}

}  // namespace fwd::control::flows
