"""Many kernel pods on one node: every kernel pod is a macvlan (private mode) on
the daemon's one shared pod tap, so a node holds far more pods than DPDK has
ethdev ports (32 in Debian's build). 100 pods with addresses, pings across the
set over IPv4 and IPv6 that must go through the dataplane (its counters move,
TTL and hop limit drop by one, a frame sent straight to another pod's MAC is
not bridged by the kernel), then all deleted: nothing left in any pod."""
import json
import random
import time

from fwdlab import Api, record_results, sh

N_PODS = 100


def pod_addrs(i):
    return f"10.244.{i // 200}.{i % 200 + 2}", f"fd00:10:244::{i + 2:x}"


def pod_tap_port(stats):
    ports = [p for p in stats["ports"] if p["name"] == "net_tap_pods"]
    assert len(ports) == 1, stats["ports"]
    return ports[0]


def make_pods(api, netns_factory, n, label):
    """n namespaces with a kernel pod each; returns (pods, seconds per add)."""
    pods, times = [], []
    for i in range(n):
        ns = netns_factory(f"{label}{i}")
        ns.v4, ns.v6 = pod_addrs(i)
        t0 = time.monotonic()
        ns.ep = api.call("endpoint.add", id=ns.name, netns=ns.name, ipv4=ns.v4, ipv6=ns.v6)
        times.append(time.monotonic() - t0)
        pods.append(ns)
    return pods, times


def ping(ns, addr, count=1, extra=""):
    fam = "-6" if ":" in addr else "-4"
    return ns.run(f"ping {fam} -n -c {count} -W 2 {extra} {addr}", timeout=30).stdout


def assert_pod_empty(ns):
    """No interface but lo, no route through anything else, in the pod."""
    out = sh(f"ip -n {ns.name} -o link show; echo ---; ip -n {ns.name} -4 route show; "
             f"echo ---; ip -n {ns.name} -6 route show").stdout
    links, r4, r6 = out.split("---\n")
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    assert names == ["lo"], f"{ns.name}: {links}"
    assert r4.strip() == "", f"{ns.name}: {r4}"
    assert all(" dev lo " in line for line in r6.splitlines()), f"{ns.name}: {r6}"


def test_hundred_kernel_pods(daemon_factory, netns_factory):
    d = daemon_factory("n1", workers=(0, 1))
    api = Api(d.sock)
    try:
        pods, add_s = make_pods(api, netns_factory, N_PODS, "m")

        eps = api.call("endpoint.list")["endpoints"]
        assert len(eps) == N_PODS
        assert {e["port"] for e in eps} == {"shared"}
        assert len({e["port_id"] for e in eps}) == 1
        assert len({e["mac"] for e in eps}) == N_PODS
        node = api.call("node.get")
        assert node["pod_tap"]["endpoints"] == N_PODS
        # one ethdev for all of them
        stats = api.call("stats")
        assert [p["name"] for p in stats["ports"]] == ["net_tap_pods"], stats["ports"]

        # Calico-shaped macvlans in private mode, each with its endpoint's MAC
        for ns in (pods[0], pods[N_PODS // 2], pods[-1]):
            link = json.loads(sh(f"ip -n {ns.name} -d -j link show dev eth0").stdout)[0]
            assert link["linkinfo"]["info_kind"] == "macvlan"
            assert link["linkinfo"]["info_data"]["mode"] == "private"
            assert link["address"] == ns.ep["mac"]
            assert link["mtu"] == 1500 and "UP" in link["flags"]
            addrs = ns.run("ip -o addr show dev eth0").stdout
            assert f"{ns.v4}/32" in addrs and f"{ns.v6}/128" in addrs
            assert "default via 169.254.1.1 dev eth0" in ns.run("ip -4 route").stdout
            assert "default via fe80::ecee:eeff:feee:eeee dev eth0" in ns.run("ip -6 route").stdout

        # pings across the set, through the dataplane: one hop (TTL / hop limit 63)
        rng = random.Random(11)
        pairs = [(0, N_PODS - 1), (N_PODS - 1, 0)]
        pairs += [tuple(rng.sample(range(N_PODS), 2)) for _ in range(8)]
        t0 = time.monotonic()
        for i, j in pairs:
            a, b = pods[i], pods[j]
            assert "ttl=63" in ping(a, b.v4), (a.name, b.v4)
            assert "ttl=63" in ping(a, b.v6), (a.name, b.v6)
        ping(pods[7], "169.254.1.1")
        ping(pods[7], "fe80::ecee:eeff:feee:eeee%eth0")
        ping_s = time.monotonic() - t0

        # the dataplane counts every request and reply: in from one pod, out to the other
        a, b = pods[3], pods[96]
        before = pod_tap_port(api.call("stats"))
        ping(a, b.v4, count=20, extra="-i 0.01 -q")
        ping(a, b.v6, count=20, extra="-i 0.01 -q")
        after = pod_tap_port(api.call("stats"))
        assert after["rx_packets"] - before["rx_packets"] >= 80, (before, after)
        assert after["tx_packets"] - before["tx_packets"] >= 80, (before, after)

        # private mode: a frame straight to another pod's MAC is not bridged by the
        # kernel; it reaches the dataplane, which is not its destination and drops it
        drops0 = api.call("stats")["drops"]["eth_not_for_us"]
        a.run(f"ip neigh replace {b.v4} lladdr {b.ep['mac']} dev eth0 nud permanent")
        a.run(f"ip route add {b.v4}/32 dev eth0")
        r = a.run(f"ping -4 -n -c 2 -W 1 {b.v4}", check=False)
        assert r.returncode != 0, r.stdout
        assert api.call("stats")["drops"]["eth_not_for_us"] >= drops0 + 2
        a.run(f"ip route del {b.v4}/32 dev eth0")
        a.run(f"ip neigh del {b.v4} dev eth0")

        # nor are a pod's broadcasts: b sees nothing of a's ARP request for the
        # gateway, which the dataplane answered
        rx_b = int(b.run("cat /sys/class/net/eth0/statistics/rx_packets").stdout)
        a.run("ip neigh flush dev eth0")
        ping(a, "169.254.1.1")
        time.sleep(0.2)
        assert int(b.run("cat /sys/class/net/eth0/statistics/rx_packets").stdout) == rx_b

        del_s = []
        for ns in pods:
            t0 = time.monotonic()
            api.call("endpoint.del", id=ns.name)
            del_s.append(time.monotonic() - t0)

        assert api.call("endpoint.list")["endpoints"] == []
        assert api.call("route.list", source="endpoint")["total"] == 0
        assert api.call("node.get")["pod_tap"]["endpoints"] == 0
        for ns in pods:
            assert_pod_empty(ns)
        record_results("many_pods", {
            "pods": N_PODS,
            "add_ms_mean": round(1000 * sum(add_s) / len(add_s), 2),
            "add_ms_max": round(1000 * max(add_s), 2),
            "del_ms_mean": round(1000 * sum(del_s) / len(del_s), 2),
            "del_ms_max": round(1000 * max(del_s), 2),
            "ping_pairs_s": round(ping_s, 2),
        })
    finally:
        api.close()


def test_shutdown_removes_every_pod_link(daemon_factory, netns_factory):
    d = daemon_factory("n1", workers=(0, 1))
    api = Api(d.sock)
    pods, _ = make_pods(api, netns_factory, 10, "s")
    tap = api.call("node.get")["pod_tap"]["name"]
    api.close()
    assert sh(f"ip link show {tap}", check=False).returncode == 0
    d.stop()
    assert d.proc.returncode == 0, d.log.read_text()
    # the shared tap took every macvlan on it along
    for ns in pods:
        assert_pod_empty(ns)
    assert sh(f"ip link show {tap}", check=False).returncode != 0


def test_pod_gone_first_and_others_unharmed(daemon_factory, netns_factory):
    d = daemon_factory("n1", workers=(0, 1))
    api = Api(d.sock)
    try:
        pods, _ = make_pods(api, netns_factory, 3, "g")
        a, b, c = pods
        # one MAC per pod on the shared tap
        assert api.error("endpoint.add", id="dup", netns=c.name, ifname="eth1",
                         ipv4="10.244.9.9", mac=a.ep["mac"]) == "already_exists"
        # the kernel refuses a second eth0 in a pod; nothing of the attempt stays: c holds
        # lo and its own macvlan, no other link (-d: the kind, which plain `ip link` omits)
        assert api.error("endpoint.add", id="dup", netns=c.name,
                         ipv4="10.244.9.9") == "invalid_argument"
        links = json.loads(c.run("ip -d -j link show").stdout)
        kinds = [(l["ifname"], l.get("linkinfo", {}).get("info_kind")) for l in links]
        assert kinds == [("lo", None), ("eth0", "macvlan")], links
        assert links[1]["address"] == c.ep["mac"], links

        # the pod's namespace is gone before its endpoint: the DEL still works
        a.delete()
        api.call("endpoint.del", id=a.name)
        # b's macvlan is deleted by ifindex and MAC: c's, of the same name, stays
        api.call("endpoint.del", id=b.name)
        assert_pod_empty(b)
        ping(c, "169.254.1.1")
        assert [e["id"] for e in api.call("endpoint.list")["endpoints"]] == [c.name]
        assert "eth0" in c.run("ip -o link show").stdout
        ping(c, "fe80::ecee:eeff:feee:eeee%eth0")
        # a new pod takes a's addresses again and reaches c
        n = netns_factory("g3")
        api.call("endpoint.add", id=n.name, netns=n.name, ipv4=a.v4, ipv6=a.v6)
        assert "ttl=63" in ping(n, c.v4)
        assert "ttl=63" in ping(n, c.v6)
    finally:
        api.close()
