"""The uplink: a router namespace behind a net_tap uplink, static default
routes via it. Pods reach the router and back; the router resolves the
node's addresses (ARP, ND) and pings them."""
from fwdlab import RUN_ID, Netns, sh

ROUTER_MAC = "02:00:00:00:0a:01"
UPLINK_MAC = "02:00:00:00:0a:0a"


def test_pods_reach_a_router_through_the_uplink(daemon_factory, netns_factory):
    ifname = f"fwdu{RUN_ID}"
    extra = {
        "uplink": {"devargs": f"net_tap_up{RUN_ID},iface={ifname}", "rx_queues": 2,
                   "mac": UPLINK_MAC},
        "cores": {"main": 0, "control": 0,
                  "workers": [{"core": 0, "rx": [{"port": "uplink", "queue": 0}]},
                              {"core": 1, "rx": [{"port": "uplink", "queue": 1}]}]},
        "routes": [{"prefix": "0.0.0.0/0", "via": "10.10.10.1", "mac": ROUTER_MAC},
                   {"prefix": "::/0", "via": "fd00:10:10::1", "mac": ROUTER_MAC}],
    }
    d = daemon_factory("up", workers=(0, 1), extra=extra)
    rt = netns_factory("rt")
    sh(f"ip link set {ifname} netns {rt.name}")
    rt.run(f"ip link set {ifname} address {ROUTER_MAC}")
    rt.run(f"sysctl -qw net.ipv6.conf.{ifname}.accept_dad=0")
    rt.run(f"ip link set {ifname} up")
    rt.run(f"ip addr add 10.10.10.1/24 dev {ifname}")
    rt.run(f"ip addr add fd00:10:10::1/64 dev {ifname} nodad")
    rt.run("ip route add 192.168.0.0/24 via 10.10.10.10")
    rt.run("ip -6 route add fd00:10:244::/64 via fd00:10:10::10")

    pod = netns_factory("up")
    d.add_pod(pod, ipv4="192.168.0.2", ipv6="fd00:10:244::2")
    pod.run("ping -4 -c 2 -W 2 10.10.10.1", timeout=20)
    pod.run("ping -6 -c 2 -W 2 fd00:10:10::1", timeout=20)
    # the router resolved the node's addresses to the uplink MAC through us
    neigh = rt.run("ip neigh show").stdout
    assert f"10.10.10.10 dev {ifname} lladdr {UPLINK_MAC}" in neigh, neigh
    assert f"fd00:10:10::10 dev {ifname} lladdr {UPLINK_MAC} router" in neigh, neigh
    # the dataplane answers echo for the node's own addresses on the uplink
    rt.run("ping -4 -c 1 -W 2 10.10.10.10")
    rt.run("ping -6 -c 1 -W 2 fd00:10:10::10")
    up = [p for p in d.stats()["ports"] if p["kind"] == "uplink"]
    assert len(up) == 1 and up[0]["rx_packets"] >= 6 and up[0]["tx_packets"] >= 6
