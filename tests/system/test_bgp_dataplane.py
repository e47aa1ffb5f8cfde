"""BGP through the dataplane: two dpdk-fwd nodes on a ToR, pod blocks learned
from BIRD via the kernel, withdrawn within a second.

Uses the daemon's host tap ("host") and kernel route watcher ("bgp"); marked
bgp_dataplane so it can be run alone: pytest tests/system -m bgp_dataplane.

Topology (test_bgp.py's kernel baseline, with the dataplane in the middle):
  ToR namespace: a Linux bridge.
  node1, node2 namespaces: a dpdk-fwd each, started in the namespace (ip netns exec),
    one worker (core 0 / core 1). Its uplink net_tap appears in the node namespace
    and is moved onto the ToR bridge. Its host tap (fwdhost) carries the node's
    addresses and the uplink MAC. BIRD 2 runs in the node namespace and peers with
    the other node over the host taps (IPv4 and IPv6 sessions), installing the
    learned pod blocks into the kernel main table (proto bird); the daemon's watcher
    turns them into dataplane routes via the peer, resolved by ARP / ND on the uplink.
  One pod namespace per node (d.add_pod).
"""
import json
import pathlib
import time
import types

import pytest

from birdconf import NODE1, NODE2, NodeBgp
from fwdlab import Bridge, record_results, uplink_daemon_config, uplink_ifname, wait_until

pytestmark = pytest.mark.bgp_dataplane

XFER = pathlib.Path(__file__).with_name("tcp_xfer.py")
HOST_TAP = "fwdhost"
MAC = {"node1": "02:00:00:00:01:01", "node2": "02:00:00:00:02:02"}
WITHDRAW_LIMIT_S = 1.0


def bgp_routes(d):
    """{prefix: route} of the daemon's routes whose source is bgp."""
    return {r["prefix"]: r for r in d.ctl("route", "list")["routes"] if r.get("source") == "bgp"}


def kernel_bird_routes(ns):
    return (ns.run("ip -4 route show table main proto bird", timeout=10).stdout
            + ns.run("ip -6 route show table main proto bird", timeout=10).stdout)


def learned(node, other):
    """True when node's dataplane routes other's blocks via other's addresses."""
    routes = bgp_routes(node.d)
    r4, r6 = routes.get(other.block4), routes.get(other.block6)
    return (r4 is not None and r4.get("kind") == "via" and other.addr4 in r4.get("via", [])
            and r6 is not None and r6.get("kind") == "via" and other.addr6 in r6.get("via", []))


def ping(ns, dst, check=True, count=1):
    fam = "-6" if ":" in dst else "-4"
    return ns.run(f"ping {fam} -c {count} -W 2 {dst}", check=check, timeout=20)


@pytest.fixture
def bgp_nodes(netns_factory, daemon_factory, bird_factory):
    # fixture order matters for teardown: BIRD stops first, then the daemons, then the
    # namespaces go (the uplink taps must not outlive the ToR namespace).
    tor = netns_factory("btor")
    br = Bridge(tor)
    nodes = []
    for plan, other, core, tag in ((NODE1, NODE2, 0, "a"), (NODE2, NODE1, 1, "b")):
        ns = netns_factory(f"b{plan.name[-1]}")
        extra = uplink_daemon_config(tag, core, MAC[plan.name], plan.ipv4, plan.ipv6, extra={
            "host": {"tap": HOST_TAP, "punt_rate_pps": 20000},
            "bgp": {"table": 254, "protocols": [12]},
        })
        d = daemon_factory(plan.name, extra=extra, netns=ns)
        br.adopt(uplink_ifname(tag), ns)
        # the host tap: in the node namespace, uplink MAC, the node's addresses
        link = ns.run(f"ip -o link show dev {HOST_TAP}").stdout
        assert MAC[plan.name] in link, link
        addrs = ns.run(f"ip -o addr show dev {HOST_TAP}").stdout
        assert plan.ipv4 in addrs and plan.ipv6 in addrs, addrs
        pod = netns_factory(f"bp{plan.name[-1]}")
        d.add_pod(pod, ipv4=plan.pod4, ipv6=plan.pod6)
        bgp = plan.bgp(other)
        bird = bird_factory(ns, plan.name, bgp.render())
        nodes.append(types.SimpleNamespace(plan=plan, ns=ns, d=d, pod=pod, bgp=bgp, bird=bird))
    n1, n2 = nodes
    est = {}
    for n in nodes:
        for proto in n.bgp.protocols():
            est[f"{n.plan.name}/{proto}"] = round(n.bird.wait_established(proto, 30), 3)
    try:
        t = wait_until(lambda: learned(n1, NODE2) and learned(n2, NODE1), 15,
                       what="each dataplane to route the other node's blocks (source bgp)")
    except AssertionError as e:
        raise AssertionError(
            f"{e}\nnode1 kernel:\n{kernel_bird_routes(n1.ns)}\nnode1 routes: "
            f"{json.dumps(n1.d.ctl('route', 'list'))}\nnode2 kernel:\n"
            f"{kernel_bird_routes(n2.ns)}\nnode2 routes: {json.dumps(n2.d.ctl('route', 'list'))}")
    print(f"\nsessions established after {est} s; blocks in both dataplanes {t:.3f} s later")
    return n1, n2


def test_dataplane_bgp_pods_talk_across_nodes(bgp_nodes):
    n1, n2 = bgp_nodes
    # BIRD's routes are in each kernel, via the peer over the host tap
    for n, other in ((n1, NODE2), (n2, NODE1)):
        k = kernel_bird_routes(n.ns)
        assert f"{other.block4} via {other.addr4} dev {HOST_TAP}" in k, k
        assert f"{other.block6} via {other.addr6} dev {HOST_TAP}" in k, k
    for a, b in ((n1, n2), (n2, n1)):
        ping(a.pod, b.plan.pod4, count=2)
        ping(a.pod, b.plan.pod6, count=2)
    # the dataplane resolved the next hops itself, to the peer's uplink MAC
    for n, other in ((n1, NODE2), (n2, NODE1)):
        neigh = json.dumps(n.d.ctl("neighbor", "list")).lower()
        for addr in (other.addr4, other.addr6):
            assert addr in neigh, neigh
        assert MAC[other.name] in neigh, neigh
    # a TCP stream each family, content checked
    total = 64 * 1024 * 1024
    for port, dst in ((5011, NODE2.pod4), (5012, NODE2.pod6)):
        srv = n2.pod.popen(f"/usr/bin/python3 {XFER} server {dst} {port}")
        assert srv.stdout.readline().strip() == "listening"
        t0 = time.monotonic()
        cli = n1.pod.run(f"/usr/bin/python3 {XFER} client {dst} {port} {total} {port}",
                         timeout=180)
        out, err = srv.communicate(timeout=60)
        dt = time.monotonic() - t0
        assert int(cli.stdout.split()[0]) == total
        assert out.split() == cli.stdout.split(), f"received {out}, sent {cli.stdout}; {err}"
        print(f"TCP {dst}: {total / dt / 1e6 * 8:.0f} Mbit/s")
    # BGP (punted to the host taps) survived the stream
    for n in (n1, n2):
        for proto in n.bgp.protocols():
            state = n.bird.protocols()[proto]
            assert state[0] == "up" and state[1].startswith("Established"), (n.plan.name, state)
    # a node with live BGP sessions (keepalives every 2 s through the host tap) is
    # still idle: under 5 % of a core per daemon
    time.sleep(1)
    c0 = [n.d.cpu_seconds() for n in (n1, n2)]
    time.sleep(10)
    idle = [(n.d.cpu_seconds() - c) / 10 for n, c in zip((n1, n2), c0)]
    print(f"idle CPU with BGP sessions: {[f'{x:.1%}' for x in idle]}")
    assert max(idle) < 0.05, idle
    # the host path is counted: the kernel's BGP traffic went both ways
    for n in (n1, n2):
        ctl = n.d.stats()["control"]
        assert ctl["host_to_kernel"] > 0 and ctl["host_from_kernel"] > 0, ctl
        assert ctl["neigh_learned"] > 0, ctl


def test_dataplane_bgp_withdraw_within_1s(bgp_nodes):
    n1, n2 = bgp_nodes
    ping(n1.pod, NODE2.pod4)
    ping(n1.pod, NODE2.pod6)

    # node2 stops exporting its blocks; node1's dataplane must drop them within 1 s
    t0 = time.monotonic()
    n2.bird.birdc("disable", NodeBgp.STATIC4)
    n2.bird.birdc("disable", NodeBgp.STATIC6)
    gone, kernel_gone = {}, {}
    while len(gone) < 2 and time.monotonic() - t0 < 5:
        routes = bgp_routes(n1.d)
        now = time.monotonic() - t0
        for key, prefix in (("v4", NODE2.block4), ("v6", NODE2.block6)):
            if key not in gone and prefix not in routes:
                gone[key] = now
        if len(kernel_gone) < 2:
            k = kernel_bird_routes(n1.ns)
            now = time.monotonic() - t0
            for key, prefix in (("v4", NODE2.block4), ("v6", NODE2.block6)):
                if key not in kernel_gone and prefix + " " not in k:
                    kernel_gone[key] = now
        time.sleep(0.02)
    assert len(gone) == 2, (f"node2's blocks still in node1's dataplane after 5 s: "
                            f"{json.dumps(n1.d.ctl('route', 'list'))}\nkernel:\n"
                            f"{kernel_bird_routes(n1.ns)}")
    # a withdraw, not a session loss
    for proto in n1.bgp.protocols():
        state = n1.bird.protocols()[proto]
        assert state[0] == "up" and state[1].startswith("Established"), state
    # node1's pod can no longer reach node2's pod: no route in node1's dataplane
    no_route0 = n1.d.stats()["drops"]["no_route"]
    for dst in (NODE2.pod4, NODE2.pod6):
        r = ping(n1.pod, dst, check=False)
        assert r.returncode != 0, r.stdout
    assert n1.d.stats()["drops"]["no_route"] >= no_route0 + 2

    # enable again: the routes come back and the pods talk again
    t1 = time.monotonic()
    n2.bird.birdc("enable", NodeBgp.STATIC4)
    n2.bird.birdc("enable", NodeBgp.STATIC6)
    wait_until(lambda: learned(n1, NODE2), 5, what="node2's blocks back in node1's dataplane")
    back = time.monotonic() - t1
    ping(n1.pod, NODE2.pod4)
    ping(n1.pod, NODE2.pod6)

    results = {
        "withdraw_dataplane_v4_ms": round(gone["v4"] * 1000, 1),
        "withdraw_dataplane_v6_ms": round(gone["v6"] * 1000, 1),
        "withdraw_kernel_v4_ms": round(kernel_gone.get("v4", -1) * 1000, 1),
        "withdraw_kernel_v6_ms": round(kernel_gone.get("v6", -1) * 1000, 1),
        "restore_dataplane_ms": round(back * 1000, 1),
        "poll_interval_ms": 20,
    }
    record_results("bgp_dataplane_withdraw", results)
    assert max(gone.values()) < WITHDRAW_LIMIT_S, results
