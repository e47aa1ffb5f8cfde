"""The uplink: a router namespace behind a net_tap uplink, static default
routes via it. Pods reach the router and back; the router resolves the
node's addresses (ARP, ND) and pings them."""
import pytest

from fwdlab import RUN_ID, check_config, sh

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


@pytest.mark.parametrize("section, value, message", [
    ("flows", {"mode": "on"}, 'flows.mode: expected "install", "validate" or "off"'),
    ("flows", {"max_policy_rules": -1},
     "flows.max_policy_rules: expected an integer from 0 to 65536"),
    ("flows", {"modes": "off"}, 'flows.modes: unknown field "modes"'),
    ("balance", {"enabled": "yes"}, "balance.enabled: expected"),
    ("balance", {"interval_ms": 10},
     "balance.interval_ms: expected an integer from 100 to 3600000"),
    ("balance", {"load_threshold": 0},
     "balance.load_threshold: expected an integer from 1 to 100"),
])
def test_flows_and_balance_config_errors_name_the_field(tmp_path, section, value, message):
    """The uplink's flow rules and the workers' balancing are configured like every section:
    a bad value is refused naming the field and what it may be; good ones pass."""
    r = check_config(tmp_path, section, value)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    good = {"flows": {"mode": "validate", "max_policy_rules": 0},
            "balance": {"enabled": True, "interval_ms": 1000, "load_threshold": 90,
                        "improvement": 10}}
    assert check_config(tmp_path, section, good[section]).returncode == 0
