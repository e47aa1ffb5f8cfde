"""Kernel pods on port kind "tun" (issue 17): a tap device of their own in
their namespace, opened by the daemon with the virtio-net header and
offloads, read and written by the workers as a soft port (no ethdev).
IPv4 and IPv6 in every test."""
import os
import pathlib
import subprocess
import time

import pytest

from fwdlab import FWDCTL, wait_until

XFER = pathlib.Path(__file__).with_name("tcp_xfer.py")
TUN = "/dev/net/tun"


def pod_addrs(i):
    return f"192.168.0.{i + 2}", f"fd00:10:244::{i + 2:x}"


def add_tun_pods(d, netns_factory, n, label="t", mtu=None):
    pods = []
    for i in range(n):
        ns = netns_factory(f"{label}{i}")
        ns.v4, ns.v6 = pod_addrs(i)
        d.add_pod(ns, ipv4=ns.v4, ipv6=ns.v6, kind="tun", mtu=mtu)
        pods.append(ns)
    return pods


@pytest.fixture
def two_tun_pods(daemon_factory, netns_factory):
    d = daemon_factory("n1", workers=(0, 1))
    return d, add_tun_pods(d, netns_factory, 2)


def endpoint(d, name):
    return d.ctl("endpoint", "get", "--id", name)


def daemon_fds(d, what=None):
    """The daemon's open fds; what: only those open on that path (/dev/net/tun)."""
    p = f"/proc/{d.proc.pid}/fd"
    names = os.listdir(p)
    if what is None:
        return len(names)
    n = 0
    for f in names:
        try:
            n += os.readlink(f"{p}/{f}") == what
        except FileNotFoundError:  # closed meanwhile
            pass
    return n


def test_tun_pod_is_calico_shaped(two_tun_pods):
    d, (a, _) = two_tun_pods
    link = a.run("ip -d link show dev eth0").stdout
    assert "tun type tap" in link, link
    addr = a.run("ip -o addr show dev eth0").stdout
    assert f"{a.v4}/32" in addr and f"{a.v6}/128" in addr
    r4 = a.run("ip -4 route show").stdout
    assert "169.254.1.1 dev eth0 scope link" in r4
    assert "default via 169.254.1.1 dev eth0" in r4
    assert "default via fe80::ecee:eeff:feee:eeee dev eth0" in a.run("ip -6 route show").stdout
    ep = endpoint(d, a.name)
    assert ep["kind"] == "tun"
    assert ep["tun_offloads"] == ["csum", "tso4", "tso6"]
    assert ep["port_id"] >= 32, "a soft port id, not an ethdev's"
    # the gateway's MAC answers ARP for 169.254.1.1
    a.run("ping -4 -c 1 -W 2 169.254.1.1")
    neigh = a.run("ip -4 neigh show 169.254.1.1").stdout
    assert "ee:ee:ee:ee:ee:ee" in neigh, neigh


def test_ping_ipv4_ipv6(two_tun_pods):
    _, (a, b) = two_tun_pods
    for x, y in ((a, b), (b, a)):
        x.run(f"ping -4 -c 2 -i 0.2 -W 2 {y.v4}", timeout=15)
        x.run(f"ping -6 -c 2 -i 0.2 -W 2 {y.v6}", timeout=15)
    a.run("ping -6 -c 1 -W 2 fe80::ecee:eeff:feee:eeee%eth0", timeout=15)


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_tcp_content_intact_with_gso(two_tun_pods, family):
    d, (a, b) = two_tun_pods
    dst = b.v4 if family == "v4" else b.v6
    size = 200 * 1024 * 1024
    srv = b.popen(f"/usr/bin/python3 {XFER} server {dst} 5001")
    assert srv.stdout.readline().strip() == "listening"
    cli = a.run(f"/usr/bin/python3 {XFER} client {dst} 5001 {size} 7", timeout=180)
    out, err = srv.communicate(timeout=60)
    assert out.split() == cli.stdout.split(), err
    sa = endpoint(d, a.name)["port_stats"]
    sb = endpoint(d, b.name)["port_stats"]
    assert sa["rx_gso"] > 0, f"no GSO frame from the pod: {sa}"
    assert sb["tx_gso"] > 0, f"no GSO frame to the pod: {sb}"
    assert sb["tx_errors"] == 0
    drops = d.stats()["drops"]
    for r in ("gso_bad_frame", "gso_no_mbuf", "tun_bad_vnet_hdr", "tun_rx_too_big", "tun_tx_error"):
        assert drops[r] == 0, (r, drops[r])


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_iperf3(two_tun_pods, family):
    _, (a, b) = two_tun_pods
    dst = b.v4 if family == "v4" else b.v6
    srv = b.popen("iperf3 -s -1")
    time.sleep(0.5)
    try:
        r = a.run(f"iperf3 -c {dst} -t 3 -J", timeout=60)
    finally:
        srv.communicate(timeout=30)
    import json
    bps = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]
    print(f"iperf3 {family} tun->tun: {bps / 1e9:.2f} Gbit/s")
    assert bps > 0


def test_mtu_9000(daemon_factory, netns_factory):
    d = daemon_factory("n1")
    a, b = add_tun_pods(d, netns_factory, 2, label="j", mtu=9000)
    a.run(f"ping -4 -c 1 -W 2 -M do -s 8972 {b.v4}", timeout=15)
    a.run(f"ping -6 -c 1 -W 2 -M do -s 8952 {b.v6}", timeout=15)
    assert "mtu 9000" in a.run("ip link show eth0").stdout


def test_detach_under_traffic_leaks_nothing(daemon_factory, netns_factory):
    d = daemon_factory("n1", workers=(0, 1))
    fds0, tun0 = daemon_fds(d), daemon_fds(d, TUN)
    a, b, c, e, victim = add_tun_pods(d, netns_factory, 5, label="r")
    # the tun fds exactly; all fds only at the end, once settled: the API server
    # closes its side of fwdctl's last connection just after fwdctl has seen it close
    q = endpoint(d, a.name)["tun_queues"]  # one fd a queue; a queue a worker by default
    assert q == 2
    assert daemon_fds(d, TUN) == tun0 + 5 * q, "one fd per tun pod queue"
    total = 800 * 1024 * 1024
    srv4 = b.popen(f"/usr/bin/python3 {XFER} server {b.v4} 5002")
    srv6 = e.popen(f"/usr/bin/python3 {XFER} server {e.v6} 5003")
    assert srv4.stdout.readline().strip() == "listening"
    assert srv6.stdout.readline().strip() == "listening"
    cli4 = a.popen(f"/usr/bin/python3 {XFER} client {b.v4} 5002 {total} 1")
    cli6 = c.popen(f"/usr/bin/python3 {XFER} client {e.v6} 5003 {total} 2")
    # the victim streams too, to a pod that stays: it goes under traffic
    srv_v = c.popen(f"/usr/bin/python3 {XFER} server {c.v4} 5004")
    assert srv_v.stdout.readline().strip() == "listening"
    cli_v = victim.popen(f"/usr/bin/python3 {XFER} client {c.v4} 5004 {total} 3")
    time.sleep(1.0)
    assert cli4.poll() is None and cli6.poll() is None, "streams ended before the removal"
    d.ctl("endpoint", "del", "--id", victim.name)
    assert victim.run("ip link show eth0", check=False).returncode != 0, "tap left in the pod"
    assert daemon_fds(d, TUN) == tun0 + 4 * q, "the victim's fds are still open"
    for cli, srv in ((cli4, srv4), (cli6, srv6)):
        out, err = cli.communicate(timeout=240)
        assert cli.returncode == 0, err
        got, _ = srv.communicate(timeout=60)
        assert got.split() == out.split()
    cli_v.kill()
    cli_v.communicate(timeout=30)
    srv_v.kill()
    srv_v.communicate(timeout=30)
    for p in (a, b, c, e):
        d.ctl("endpoint", "del", "--id", p.name)
    assert daemon_fds(d, TUN) == tun0, "tun fds left after every tun pod went"
    wait_until(lambda: daemon_fds(d) == fds0, 5, what=f"the daemon back at its {fds0} fds")
    assert d.ctl("endpoint", "list")["endpoints"] == []



def test_idle_workers_block_and_a_packet_wakes_them(daemon_factory, netns_factory):
    """An idle node with 10 tun pods: its workers wait blocked on the pods' fds and the shared
    pod tap's (epoll), not sleeping and polling, so the daemon takes almost no CPU; a ping
    wakes the worker that owns the pod at once."""
    d = daemon_factory("n1", workers=(0, 1))
    pods = add_tun_pods(d, netns_factory, 10, label="i")
    pods[0].run(f"ping -4 -c 1 -W 2 {pods[1].v4}", timeout=10)  # neighbours learned
    time.sleep(1)
    share, idle = d.idle_for(5)
    after = {w["worker"]: w for w in d.stats()["workers"]}
    for w, (blocks, sleeps) in idle.items():
        assert blocks > 0, f"worker {w} never blocked"
        # blocked up to 100 ms a time (less when the pods' own IPv6 ND wakes it); one that
        # never blocked would have slept about 5000 times in 5 s
        assert sleeps < 500, f"worker {w} slept {sleeps} times in 5 s ({blocks} blocked)"
    print(f"idle, 10 tun pods, 2 workers: {share:.2%} of a core")
    assert share < 0.03, f"an idle node took {share:.2%} of a core"
    # the first packet after the quiet: the blocked worker wakes for it (RTT in ms, not the
    # block's 100 ms)
    out = pods[2].run(f"ping -4 -c 3 -i 0.5 -W 2 {pods[3].v4}", timeout=15).stdout
    rtts = [float(x.split("time=")[1].split()[0]) for x in out.splitlines() if "time=" in x]
    assert len(rtts) == 3 and max(rtts) < 50, out
    woke = sum(w["wakeups"] for w in d.stats()["workers"])
    assert woke > sum(w["wakeups"] for w in after.values()), "no blocked wait ended on a packet"


def test_a_pods_queues_go_to_different_workers(daemon_factory, netns_factory):
    """With two workers a tun pod gets two queues (a multi-queue tap), one on each worker;
    sixteen TCP streams from it are read by both (the pod's kernel picks a queue by flow
    hash: all sixteen on one queue is a chance of 2 in 65536)."""
    d = daemon_factory("n1", workers=(0, 1))
    before = [w["rx_queues"] for w in d.stats()["workers"]]
    a, b = add_tun_pods(d, netns_factory, 2, label="q")
    for p in (a, b):
        ep = endpoint(d, p.name)
        assert ep["tun_queues"] == 2 and ep["rx_queues"] == 2, ep
        assert "multi_queue" in p.run("ip -d link show eth0").stdout
    after = [w["rx_queues"] for w in d.stats()["workers"]]
    assert [x - y for x, y in zip(after, before)] == [2, 2], (before, after)
    rx0 = [w["rx_packets"] for w in d.stats()["workers"]]
    srv = b.popen("iperf3 -s -1")
    time.sleep(0.5)
    try:
        a.run(f"iperf3 -c {b.v4} -t 2 -P 16", timeout=60)
    finally:
        srv.communicate(timeout=30)
    rx1 = [w["rx_packets"] for w in d.stats()["workers"]]
    assert all(y - x > 100 for x, y in zip(rx0, rx1)), (rx0, rx1)
    # one queue asked: a single-queue tap
    c = netns_factory("q9")
    c.v4, c.v6 = pod_addrs(9)
    d.add_pod(c, ipv4=c.v4, ipv6=c.v6, kind="tun")
    d.ctl("endpoint", "del", "--id", c.name)
    r = d.ctl("endpoint", "add", "--id", c.name, "--netns", c.name, "--kind", "tun",
              "--ipv4", c.v4, "--tun-queues", "9", check=False)
    assert r.returncode != 0 and "tun_queues must be an integer from 1 to 8" in r.stderr, r.stderr


def test_busy_pod_queues_are_rebalanced_across_workers(daemon_factory, netns_factory):
    """The balance module (control/balance.hpp): four single-queue tun pods take the two
    workers in turn, so two share each worker. One TCP transfer loads one queue (the
    sender's; the receiver's carries the ACKs): moving a queue cannot help, and nothing moves.
    Two transfers whose senders share a worker load that worker twice: within a few of the
    module's intervals one sender's queue moves to the other worker (fwdctl balance says
    which and why), the transfers go on, and the pods reach each other afterwards. The pinned
    queues (the shared pod tap's) stay."""
    d = daemon_factory("n1", workers=(0, 1), extra={
        "balance": {"enabled": True, "interval_ms": 500, "load_threshold": 5,
                    "improvement": 20}})
    pods = []
    for i in range(4):
        ns = netns_factory(f"b{i}")
        ns.v4, ns.v6 = pod_addrs(i)
        d.ctl("endpoint", "add", "--id", ns.name, "--netns", ns.name, "--kind", "tun",
              "--ipv4", ns.v4, "--ipv6", ns.v6, "--tun-queues", "1")
        ns.port = endpoint(d, ns.name)["port_id"]
        pods.append(ns)
    st = d.ctl("balance")
    assert st["enabled"] and st["moves"] == 0, st
    wait_until(lambda: len(d.ctl("balance")["queues"]) >= 4, timeout=5, what="a measurement")
    where = {q["port"]: q["worker"] for q in d.ctl("balance")["queues"]}
    pinned = {(q["port"], q["queue"], q["worker"]) for q in d.ctl("balance")["queues"]
              if not q["movable"]}
    senders = [p for p in pods if where[p.port] == where[pods[0].port]]
    receivers = [p for p in pods if p not in senders]
    assert len(senders) == 2 and len(receivers) == 2, where
    busy = where[senders[0].port]

    def transfer(pairs, seconds):
        srvs = [r.popen(f"iperf3 -s -1 -B {r.v4}") for _, r in pairs]
        time.sleep(0.5)
        return srvs, [s.popen(f"iperf3 -c {r.v4} -t {seconds}") for s, r in pairs]

    def finish(srvs, clis):
        for c in clis:
            c.communicate(timeout=30)
            assert c.returncode == 0
        for s in srvs:
            s.communicate(timeout=30)

    # one transfer: one heavy queue; nothing to gain from a move
    srvs, clis = transfer([(senders[0], receivers[0])], 3)
    finish(srvs, clis)
    st = d.ctl("balance")
    assert st["moves"] == 0, st
    # two transfers from the same worker
    srvs, clis = transfer(list(zip(senders, receivers)), 8)
    try:
        wait_until(lambda: d.ctl("balance")["moves"] >= 1, timeout=8, interval=0.2,
                   what="a queue moved")
    finally:
        finish(srvs, clis)
    st = d.ctl("balance")
    assert st["rebalances"] >= 1, st
    now = {q["port"]: q["worker"] for q in st["queues"]}
    assert {now[p.port] for p in senders} == {0, 1}, (busy, where, now, st)
    assert {endpoint(d, p.name)["worker"] for p in senders} == {0, 1}, "endpoints follow"
    assert {(q["port"], q["queue"], q["worker"]) for q in st["queues"] if not q["movable"]} == \
        pinned, st
    counts = d.stats()["control"]["balance"]
    assert counts["moves"] >= 1 and counts["rebalances"] >= 1, counts
    for s, r in zip(senders, receivers):
        s.run(f"ping -c 2 -i 0.2 -W 2 {r.v4}")
        s.run(f"ping -6 -c 2 -i 0.2 -W 2 {r.v6}")
    text = subprocess.run([str(FWDCTL), "-s", d.sock, "balance"], capture_output=True, text=True,
                          timeout=30, check=True).stdout
    assert "balance on: every 500 ms" in text and "queues moved" in text, text
