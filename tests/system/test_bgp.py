"""BGP between two nodes, kernel only (no dpdk-fwd): the baseline that proves the
BIRD 2 configuration (birdconf.py) and the ToR topology the dataplane version
(test_bgp_dataplane.py) reuses.

A ToR namespace with a Linux bridge; two node namespaces plugged into it by veth
pairs, each with its node addresses on eth0 and its pod addresses on a local
interface (lo); real BIRD 2 in each node, one iBGP session per family. Each node must
learn the other's pod blocks into its kernel (proto bird, via the peer), pods
must reach each other through those routes, and when the peer stops exporting
its blocks (`birdc disable` of its static protocols) the routes must leave the
kernel within 1 s."""
import time

from birdconf import NODE1, NODE2, NodeBgp
from fwdlab import Bridge, record_results, wait_until

WITHDRAW_LIMIT_S = 1.0


def bird_routes(ns):
    """The proto bird routes of the kernel main table in ns, both families."""
    return (ns.run("ip -4 route show table main proto bird", timeout=10).stdout
            + ns.run("ip -6 route show table main proto bird", timeout=10).stdout)


def has_route(text, prefix, via, dev):
    return any(line.startswith(f"{prefix} via {via} dev {dev}") for line in text.splitlines())


def ping(ns, src, dst, check=True):
    fam = "-6" if ":" in dst else "-4"
    return ns.run(f"ping {fam} -c 1 -W 1 -I {src} {dst}", check=check, timeout=10)


def make_node(plan, peer, tor, br, netns_factory, bird_factory, port):
    ns = netns_factory(f"k{plan.name[-1]}")
    br.plug_veth(ns, port, "eth0")
    ns.run("sysctl -qw net.ipv6.conf.eth0.accept_dad=0")
    ns.run("ip link set eth0 up")
    ns.run(f"ip addr add {plan.ipv4} dev eth0")
    ns.run(f"ip addr add {plan.ipv6} dev eth0 nodad")
    # the node's pod addresses, kernel style: local addresses (on lo; the test kernel
    # may have no dummy driver)
    ns.run(f"ip addr add {plan.pod4}/32 dev lo")
    ns.run(f"ip addr add {plan.pod6}/128 dev lo")
    ns.plan = plan
    ns.bgp = plan.bgp(peer)
    ns.bird = bird_factory(ns, plan.name, ns.bgp.render())
    return ns


def test_kernel_nodes_learn_and_withdraw_pod_blocks(netns_factory, bird_factory):
    tor = netns_factory("ktor")
    br = Bridge(tor)
    n1 = make_node(NODE1, NODE2, tor, br, netns_factory, bird_factory, "p1")
    n2 = make_node(NODE2, NODE1, tor, br, netns_factory, bird_factory, "p2")

    t_est = {}
    for node in (n1, n2):
        for proto in node.bgp.protocols():  # bgp4_<peer>, bgp6_<peer>
            t_est[f"{node.plan.name}/{proto}"] = round(node.bird.wait_established(proto, 30), 3)

    # each kernel learns the other's blocks, via the peer's address, proto bird
    def learned(node, other):
        text = bird_routes(node)
        return (has_route(text, other.block4, other.addr4, "eth0")
                and has_route(text, other.block6, other.addr6, "eth0"))

    wait_until(lambda: learned(n1, NODE2) and learned(n2, NODE1), 10, what="learned blocks")
    for node, other in ((n1, NODE2), (n2, NODE1)):
        text = bird_routes(node)
        # exactly the peer's two blocks: nothing of our own, no connected routes
        assert len(text.splitlines()) == 2, text
        # the own blocks are blackholes in BIRD but never reach the kernel
        own = node.plan
        assert node.run(f"ip -4 route show {own.block4}").stdout.strip() == ""
        assert node.run(f"ip -6 route show {own.block6}").stdout.strip() == ""
        assert node.run("ip -4 route show table all type blackhole").stdout.strip() == ""
        assert "blackhole" in node.bird.show_route("for", own.block4)
        br4 = node.bird.show_route("for", other.block4, "all")
        assert "BGP.next_hop: " + other.addr4 in br4, br4

    # pods reach each other through the learned routes, both directions
    for a, b in ((n1, NODE2), (n2, NODE1)):
        ping(a, a.plan.pod4, b.pod4)
        ping(a, a.plan.pod6, b.pod6)

    # node2 stops exporting its blocks: node1's kernel must lose them within 1 s
    t0 = time.monotonic()
    n2.bird.birdc("disable", NodeBgp.STATIC4)
    n2.bird.birdc("disable", NodeBgp.STATIC6)
    gone = {}
    while len(gone) < 2 and time.monotonic() - t0 < 5:
        text = bird_routes(n1)
        now = time.monotonic() - t0
        for key, prefix in (("v4", NODE2.block4), ("v6", NODE2.block6)):
            if key not in gone and not any(ln.startswith(prefix + " ") for ln in text.splitlines()):
                gone[key] = now
        time.sleep(0.02)
    assert len(gone) == 2, f"node2's blocks still in node1's kernel after 5 s:\n{bird_routes(n1)}"
    # a withdraw, not a session loss; node2's own view is untouched too
    for proto in n1.bgp.protocols():
        state = n1.bird.protocols()[proto]
        assert state[0] == "up" and state[1].startswith("Established"), state
    assert has_route(bird_routes(n2), NODE1.block4, NODE1.addr4, "eth0")
    r = ping(n1, NODE1.pod4, NODE2.pod4, check=False)
    assert r.returncode != 0, r.stdout
    r = ping(n1, NODE1.pod6, NODE2.pod6, check=False)
    assert r.returncode != 0, r.stdout

    # enable again: the routes come back and the pods talk again
    t1 = time.monotonic()
    n2.bird.birdc("enable", NodeBgp.STATIC4)
    n2.bird.birdc("enable", NodeBgp.STATIC6)
    wait_until(lambda: learned(n1, NODE2), 5, what="restored blocks")
    back = time.monotonic() - t1
    ping(n1, NODE1.pod4, NODE2.pod4)
    ping(n1, NODE1.pod6, NODE2.pod6)

    results = {
        "established_s": t_est,
        "withdraw_v4_ms": round(gone["v4"] * 1000, 1),
        "withdraw_v6_ms": round(gone["v6"] * 1000, 1),
        "restore_ms": round(back * 1000, 1),
        "poll_interval_ms": 20,
    }
    record_results("bgp_kernel_withdraw", results)
    assert max(gone.values()) < WITHDRAW_LIMIT_S, results


MAC = {"node1": "02:00:00:00:01:01", "node2": "02:00:00:00:02:02"}


def test_two_dataplane_nodes_on_a_tor_with_static_routes(netns_factory, daemon_factory):
    """The plumbing of test_bgp_dataplane.py with what the daemon has today: a
    dpdk-fwd in each node namespace (ip netns exec), its uplink net_tap moved onto
    the ToR bridge, the other node's blocks as static routes with pinned MACs. Pods
    on different nodes reach each other, both families."""
    from fwdlab import assert_link_only_in, uplink_daemon_config, uplink_ifname
    tor = netns_factory("dtor")
    br = Bridge(tor)
    nodes = []
    for plan, other, core, tag in ((NODE1, NODE2, 0, "a"), (NODE2, NODE1, 1, "b")):
        ns = netns_factory(f"d{plan.name[-1]}")
        routes = [{"prefix": other.block4, "via": other.addr4, "mac": MAC[other.name]},
                  {"prefix": other.block6, "via": other.addr6, "mac": MAC[other.name]}]
        extra = uplink_daemon_config(tag, core, MAC[plan.name], plan.ipv4, plan.ipv6,
                                     extra={"routes": routes})
        d = daemon_factory(plan.name, extra=extra, netns=ns)
        # the uplink appeared in the node namespace, not in the root one
        assert_link_only_in(ns, uplink_ifname(tag))
        br.adopt(uplink_ifname(tag), ns)
        pod = netns_factory(f"dp{plan.name[-1]}")
        d.add_pod(pod, ipv4=plan.pod4, ipv6=plan.pod6)
        pod.plan = plan
        nodes.append((d, pod))
    (d1, pod1), (d2, pod2) = nodes
    for a, b in ((pod1, pod2), (pod2, pod1)):
        a.run(f"ping -4 -c 2 -W 2 {b.plan.pod4}", timeout=20)
        a.run(f"ping -6 -c 2 -W 2 {b.plan.pod6}", timeout=20)
    for d in (d1, d2):
        up = [p for p in d.stats()["ports"] if p["kind"] == "uplink"]
        assert len(up) == 1 and up[0]["rx_packets"] >= 4 and up[0]["tx_packets"] >= 4, up
