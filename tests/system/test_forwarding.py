"""One node, pods as network namespaces on tap ports: forwarding, ICMP
errors, path MTU, pod removal under load. IPv4 and IPv6 in every test."""
import itertools
import pathlib
import re
import time

import pytest

XFER = pathlib.Path(__file__).with_name("tcp_xfer.py")


def pod_addrs(i):
    return f"192.168.0.{i + 2}", f"fd00:10:244::{i + 2:x}"


@pytest.fixture
def four_pods(daemon_factory, netns_factory):
    d = daemon_factory("n1", workers=(0, 1))
    pods = []
    for i in range(4):
        ns = netns_factory(f"p{i}")
        v4, v6 = pod_addrs(i)
        ns.v4, ns.v6 = v4, v6
        d.add_pod(ns, ipv4=v4, ipv6=v6)
        pods.append(ns)
    return d, pods


def ping(ns, addr, extra="", check=True):
    fam = "-6" if ":" in addr else "-4"
    return ns.run(f"ping {fam} -c 1 -W 2 {extra} {addr}", check=check, timeout=15)


def test_pod_interface_is_calico_shaped(four_pods):
    d, pods = four_pods
    p = pods[0]
    addr = p.run("ip -o addr show dev eth0").stdout
    assert f"{p.v4}/32" in addr and f"{p.v6}/128" in addr
    r4 = p.run("ip -4 route show").stdout
    assert "169.254.1.1 dev eth0 scope link" in r4
    assert "default via 169.254.1.1 dev eth0" in r4
    assert "default via fe80::ecee:eeff:feee:eeee dev eth0" in p.run("ip -6 route show").stdout
    assert p.run("cat /proc/sys/net/ipv6/conf/eth0/accept_dad").stdout.strip() == "0"
    eps = d.ctl("endpoint", "list")["endpoints"]
    assert sorted(e["id"] for e in eps) == sorted(x.name for x in pods)
    # a tap pod has one queue per worker, so both workers carry its flows
    assert all(e["rx_queues"] == 2 for e in eps)


def test_ping_all_pairs_ipv4_ipv6(four_pods):
    _, pods = four_pods
    for a, b in itertools.permutations(pods, 2):
        ping(a, b.v4)
        ping(a, b.v6)
    # the gateway answers too
    ping(pods[0], "169.254.1.1")
    ping(pods[0], "fe80::ecee:eeff:feee:eeee%eth0")


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_tcp_100mb_content_intact(four_pods, family):
    _, pods = four_pods
    a, b = pods[0], pods[1]
    dst = b.v4 if family == "v4" else b.v6
    srv = b.popen(f"/usr/bin/python3 {XFER} server {dst} 5001")
    assert srv.stdout.readline().strip() == "listening"
    cli = a.run(f"/usr/bin/python3 {XFER} client {dst} 5001 {100 * 1024 * 1024} 7", timeout=180)
    out, err = srv.communicate(timeout=60)
    sent = cli.stdout.split()
    got = out.split()
    assert int(sent[0]) == 100 * 1024 * 1024
    assert got == sent, f"received {got}, sent {sent}; {err}"


def test_ttl_exceeded(four_pods):
    _, pods = four_pods
    a, b = pods[0], pods[1]
    r = ping(a, b.v4, "-t 1", check=False)
    assert "Time to live exceeded" in r.stdout, r.stdout
    assert "From 10.10.10.10" in r.stdout
    r = ping(a, b.v6, "-t 1", check=False)
    assert "Time exceeded: Hop limit" in r.stdout, r.stdout
    assert "From fd00:10:10::10" in r.stdout


def test_no_route_unreachable(four_pods):
    _, pods = four_pods
    r = ping(pods[0], "192.168.99.1", check=False)
    assert "Destination Net Unreachable" in r.stdout, r.stdout
    r = ping(pods[0], "fd00:99::1", check=False)
    assert "Destination unreachable: No route" in r.stdout, r.stdout


def test_path_mtu_discovery(daemon_factory, netns_factory):
    d = daemon_factory("n1")
    a, b = netns_factory("ma"), netns_factory("mb")
    d.add_pod(a, ipv4="192.168.0.2", ipv6="fd00:10:244::2")
    d.add_pod(b, ipv4="192.168.0.3", ipv6="fd00:10:244::3", mtu=1400)
    # 1500-byte packets with DF: the dataplane answers with the next-hop MTU
    r = a.run("ping -4 -c 1 -W 2 -M do -s 1472 192.168.0.3", check=False)
    assert "mtu = 1400" in r.stdout, r.stdout
    r = a.run("ip -4 route get 192.168.0.3").stdout
    assert "mtu 1400" in r, r
    a.run("ping -4 -c 1 -W 2 -M do -s 1372 192.168.0.3")  # fits the learned path MTU
    r = a.run("ping -6 -c 1 -W 2 -M do -s 1452 fd00:10:244::3", check=False)
    assert "mtu=1400" in r.stdout, r.stdout
    r = a.run("ip -6 route get fd00:10:244::3").stdout
    assert "mtu 1400" in r, r
    a.run("ping -6 -c 1 -W 2 -M do -s 1352 fd00:10:244::3")
    drops = d.stats()["drops"]
    assert drops["ip4_frag_needed"] >= 1 and drops["ip6_too_big"] >= 1


def test_remove_pod_while_others_stream(daemon_factory, netns_factory):
    d = daemon_factory("n1", workers=(0, 1))
    pods = []
    for i in range(5):
        ns = netns_factory(f"r{i}")
        ns.v4, ns.v6 = pod_addrs(i)
        d.add_pod(ns, ipv4=ns.v4, ipv6=ns.v6)
        pods.append(ns)
    a, b, c, e, victim = pods
    # long enough to be still streaming after 1 s on a quiet machine (200 MiB once finished
    # in under a second)
    total = 800 * 1024 * 1024
    srv4 = b.popen(f"/usr/bin/python3 {XFER} server {b.v4} 5002")
    srv6 = e.popen(f"/usr/bin/python3 {XFER} server {e.v6} 5003")
    assert srv4.stdout.readline().strip() == "listening"
    assert srv6.stdout.readline().strip() == "listening"
    cli4 = a.popen(f"/usr/bin/python3 {XFER} client {b.v4} 5002 {total} 1")
    cli6 = c.popen(f"/usr/bin/python3 {XFER} client {e.v6} 5003 {total} 2")
    time.sleep(1.0)
    assert cli4.poll() is None and cli6.poll() is None, "streams ended before the removal"
    d.ctl("endpoint", "del", "--id", victim.name)
    assert victim.run("ip link show eth0", check=False).returncode != 0, "pod interface left behind"
    for cli, srv in ((cli4, srv4), (cli6, srv6)):
        out, err = cli.communicate(timeout=240)
        assert cli.returncode == 0, err
        got, _ = srv.communicate(timeout=60)
        assert got.split() == out.split()
    assert [x["id"] for x in d.ctl("endpoint", "list")["endpoints"]].count(victim.name) == 0


def test_idle_cpu_under_10_percent(daemon_factory, netns_factory):
    d = daemon_factory("idle", workers=(1,))
    ns = netns_factory("idle")
    d.add_pod(ns, ipv4="192.168.0.2", ipv6="fd00:10:244::2")
    ns.run("ip link set eth0 down")  # no pod chatter (ND, MLD): a really idle node
    time.sleep(1)
    c0, t0 = d.cpu_seconds(), time.monotonic()
    time.sleep(10)
    used = (d.cpu_seconds() - c0) / (time.monotonic() - t0)
    print(f"idle CPU: {used * 100:.2f}% of one core")
    assert used < 0.10, f"idle daemon used {used * 100:.1f}% of a core"


def test_bad_config_names_the_field(tmpdir_short):
    import json
    import subprocess
    from fwdlab import DAEMON
    cfg = pathlib.Path(tmpdir_short) / "bad.json"
    cfg.write_text(json.dumps({"node_name": "n1", "cores": {"workers": [{"core": 1}]},
                               "node": {"ipv4": "10.0.0.1/24", "mtu": 70000}}))
    r = subprocess.run([str(DAEMON), "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "node.mtu" in r.stderr and "70000" in r.stderr, r.stderr
