"""A DPDK pod on vhost-user: dpdk-testpmd with net_virtio_user plays the pod
and exchanges traffic with a kernel pod on a tap port, both directions; a pod
with two queue pairs on both workers, a peer that enables fewer; the pod
crashing and coming back on its own, with our port as server and as client."""
import os
import shutil
import signal
import subprocess
import time

from fwdlab import RUN_ID, wait_until

VHOST_MAC = "02:00:00:00:00:99"
VHOST_V4 = "192.168.0.50"


def run_testpmd(sock, mode_args, tag, queues=1):
    """testpmd as the pod: forwards on core 1, virtio-user to our socket (with
    `queues` queue pairs, all enabled), runs until SIGINT. --single-file-segments
    keeps its memory within the 8 regions vhost-user can map."""
    cmd = ["dpdk-testpmd", "-l", "0-1", "--in-memory", "--single-file-segments", "--no-pci",
           "-m", "256",
           f"--file-prefix=fwdt{RUN_ID}{tag}", "--log-level=*:warning",
           f"--vdev=net_virtio_user0,path={sock},mac={VHOST_MAC},queues={queues}",
           "--", "--no-mlockall", "--nb-cores=1", "--stats-period", "1",
           f"--rxq={queues}", f"--txq={queues}", *mode_args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    p.eal_prefix = f"fwdt{RUN_ID}{tag}"
    return p


def stop(p, sig=signal.SIGINT):
    p.send_signal(sig)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    # testpmd leaves EAL's runtime dir behind, --in-memory or not
    shutil.rmtree(f"/var/run/dpdk/{p.eal_prefix}", ignore_errors=True)
    return out


def rx_packets(ns):
    out = ns.run("cat /sys/class/net/eth0/statistics/rx_packets").stdout
    return int(out.strip())


def test_vhost_pod_exchanges_traffic_with_tap_pod(daemon_factory, netns_factory):
    d = daemon_factory("vh", workers=(0, 1))
    tap = netns_factory("vt")
    d.add_pod(tap, ipv4="192.168.0.2", ipv6="fd00:10:244::2")
    ep = d.ctl("endpoint", "add", "--id", "vpod", "--kind", "vhost-user", "--ipv4", VHOST_V4,
               "--mac", VHOST_MAC)
    sock = ep["vhost_socket"]
    assert ep["kind"] == "vhost-user" and sock

    # tap pod -> vhost pod: testpmd answers ARP-less ICMP echo (icmpecho mode)
    pmd = run_testpmd(sock, ["--forward-mode=icmpecho", "--auto-start"], "echo")
    try:
        ok = False
        for _ in range(30):  # the virtio peer needs a moment to negotiate
            r = tap.run(f"ping -4 -c 1 -W 1 {VHOST_V4}", check=False, timeout=10)
            if r.returncode == 0:
                ok = True
                break
            time.sleep(0.5)
        assert ok, f"no echo reply from the vhost pod:\n{r.stdout}"
        r = tap.run(f"ping -4 -c 5 -i 0.2 -W 1 {VHOST_V4}")
        assert " 0% packet loss" in r.stdout
        # the virtio peer's connection reached the control thread as a port event
        vport = [p for p in d.stats()["ports"] if p["port_id"] == ep["port_id"]][0]
        assert vport["link"]["up"] is True and vport["link"]["events"] >= 1, vport
    finally:
        out = stop(pmd)
    assert "icmpecho" in out

    # vhost pod -> tap pod: testpmd generates UDP to the tap pod's address
    before = rx_packets(tap)
    pmd = run_testpmd(sock, ["--forward-mode=txonly", f"--tx-ip={VHOST_V4},192.168.0.2",
                         "--eth-peer=0,ee:ee:ee:ee:ee:ee", "--txpkts=128", "--auto-start"], "tx")
    try:
        time.sleep(4)
    finally:
        stop(pmd)
    got = rx_packets(tap) - before
    assert got > 1000, f"tap pod received only {got} packets from the vhost pod"
    st = d.stats()
    vport = [p for p in st["ports"] if p["port_id"] == ep["port_id"]][0]
    assert vport["rx_packets"] >= got
    # the port kind counts the vhost pod's own port (endpoint.get)
    pst = d.ctl("endpoint", "get", "--id", "vpod")["port_stats"]
    assert pst["rx_packets"] >= got and pst["rx_packets"] == vport["rx_packets"], (pst, vport)
    # ... and its departure: the link is down again
    assert vport["link"]["up"] is False and vport["link"]["events"] >= 2, vport

    d.ctl("endpoint", "del", "--id", "vpod")
    time.sleep(0.2)
    assert not __import__("os").path.exists(sock), "vhost socket left behind"


def port_stats(d, ep_id):
    return d.ctl("endpoint", "get", "--id", ep_id)["port_stats"]


def ping_ok(ns, addr):
    return ns.run(f"ping -4 -c 1 -W 0.3 {addr}", check=False, timeout=10).returncode == 0


def udp_flows(ns, dst, flows=64, each=20):
    """`flows` UDP flows (a socket, so a source port, each) of `each` datagrams to dst:9,
    a millisecond apart (testpmd, the peer, shares a core: a burst could fill its ring).
    A multi-queue pod's kernel picks its queue by flow hash, so they come in on every
    queue (all 64 on one of two is a chance of 1 in 2^63)."""
    script = ("import socket, time\n"
              f"for _ in range({flows}):\n"
              " s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f" for _ in range({each}):\n"
              f"  s.sendto(bytes(64), ('{dst}', 9))\n"
              "  time.sleep(0.001)\n"
              " s.close()\n")
    ns.run(f'python3 -c "{script}"', timeout=60)


def test_vhost_pod_queues_spread_over_workers(daemon_factory, netns_factory):
    """vhost_queues 2 on two workers: each RX queue on its own worker, both fed by the peer's
    two TX queues; the peer's two RX queues both get our traffic (each worker sends on its
    own). A peer that enables one pair only gets everything on that pair, nothing refused."""
    d = daemon_factory("vq", workers=(0, 1))
    tun = netns_factory("vq")
    d.add_pod(tun, ipv4="192.168.0.2", kind="tun")  # two queues: one on each worker
    before = [w["rx_queues"] for w in d.stats()["workers"]]
    ep = d.ctl("endpoint", "add", "--id", "vq", "--kind", "vhost-user", "--ipv4", VHOST_V4,
               "--mac", VHOST_MAC, "--vhost-queues", "2")
    assert ep["vhost_queues"] == 2 and ep["rx_queues"] == 2, ep
    after = [w["rx_queues"] for w in d.stats()["workers"]]
    assert [x - y for x, y in zip(after, before)] == [1, 1], (before, after)
    sock = ep["vhost_socket"]
    dropped = ("tx_queue_full", "port_down")

    # the peer sends on both its queues: both our RX queues take, each on its worker
    rx0 = [w["rx_packets"] for w in d.stats()["workers"]]
    pmd = run_testpmd(sock, ["--forward-mode=txonly", f"--tx-ip={VHOST_V4},192.168.0.2",
                             "--eth-peer=0,ee:ee:ee:ee:ee:ee", "--txpkts=128", "--auto-start"],
                      "q2tx", queues=2)
    try:
        wait_until(lambda: all(n > 1000 for n in port_stats(d, "vq")["rx_queue_packets"]), 30,
                   what="packets on both RX queues of the vhost pod's port")
    finally:
        stop(pmd)
    rx1 = [w["rx_packets"] for w in d.stats()["workers"]]
    assert all(y - x > 1000 for x, y in zip(rx0, rx1)), (rx0, rx1)

    # both workers send to the pod: each on its own queue, both enabled
    pmd = run_testpmd(sock, ["--forward-mode=icmpecho", "--auto-start"], "q2echo", queues=2)
    try:
        wait_until(lambda: ping_ok(tun, VHOST_V4), 30, what="the vhost pod's echo reply")
        assert d.ctl("endpoint", "get", "--id", "vq")["vhost_tx_queues_enabled"] == [0, 1]
        drops0 = {r: d.stats()["drops"].get(r, 0) for r in dropped}
        tx0 = port_stats(d, "vq")["tx_queue_packets"]
        all0 = d.stats()["drops"]
        udp_flows(tun, VHOST_V4)
        try:
            wait_until(lambda: sum(port_stats(d, "vq")["tx_queue_packets"]) - sum(tx0) >= 64 * 20,
                       10, what="every datagram sent to the vhost pod")
        except AssertionError:
            all1 = d.stats()["drops"]
            raise AssertionError(({k: v - all0.get(k, 0) for k, v in all1.items()
                                   if v != all0.get(k, 0)}, tx0, port_stats(d, "vq"),
                                  tun.run("ip -s link show eth0").stdout))
        tx1 = port_stats(d, "vq")["tx_queue_packets"]
        assert all(y - x >= 20 for x, y in zip(tx0, tx1)), (tx0, tx1)
        assert {r: d.stats()["drops"].get(r, 0) for r in dropped} == drops0
    finally:
        stop(pmd)

    # a peer with one queue pair: all on queue 0, nothing refused
    pmd = run_testpmd(sock, ["--forward-mode=icmpecho", "--auto-start"], "q1echo", queues=1)
    try:
        wait_until(lambda: ping_ok(tun, VHOST_V4), 30, what="the one-queue peer's echo reply")
        assert d.ctl("endpoint", "get", "--id", "vq")["vhost_tx_queues_enabled"] == [0]
        drops0 = {r: d.stats()["drops"].get(r, 0) for r in dropped}
        tx0 = port_stats(d, "vq")["tx_queue_packets"]
        udp_flows(tun, VHOST_V4)
        r = tun.run(f"ping -4 -c 20 -i 0.01 -W 1 {VHOST_V4}", check=False)
        assert " 0% packet loss" in r.stdout, r.stdout
        wait_until(lambda: port_stats(d, "vq")["tx_queue_packets"][0] - tx0[0] >= 64 * 20 + 20,
                   10, what="every datagram and echo request sent on queue 0")
        tx1 = port_stats(d, "vq")["tx_queue_packets"]
        assert tx1[1] == tx0[1], (tx0, tx1)
        assert {r: d.stats()["drops"].get(r, 0) for r in dropped} == drops0
    finally:
        stop(pmd)
    # gone: no queue enabled
    wait_until(lambda: d.ctl("endpoint", "get", "--id", "vq")["vhost_tx_queues_enabled"] == [],
               10, what="the departed peer's queues disabled")

    r = d.ctl("endpoint", "add", "--id", "vq9", "--kind", "vhost-user", "--ipv4", "192.168.0.51",
              "--mac", "02:00:00:00:00:98", "--vhost-queues", "9", check=False)
    assert r.returncode != 0 and "vhost_queues must be an integer from 1 to 8" in r.stderr, \
        r.stderr


def test_vhost_pod_crashes_and_comes_back_without_a_call(daemon_factory, netns_factory,
                                                         tmpdir_short):
    """The pod's testpmd killed (-9) and started again: with our port as the socket's server
    the pod connects again; with our port as client (the pod's virtio-user is the server)
    our port reconnects by itself. Either way traffic flows again with no API call, and
    the port's link went down and up."""
    d = daemon_factory("vr", workers=(0, 1))
    tap = netns_factory("vr")
    d.add_pod(tap, ipv4="192.168.0.2")
    client_sock = os.path.join(tmpdir_short, "vr-pod.sock")
    for mode in ("server", "client"):
        ep_id = f"vr-{mode}"
        if mode == "server":
            ep = d.ctl("endpoint", "add", "--id", ep_id, "--kind", "vhost-user", "--ipv4",
                       VHOST_V4, "--mac", VHOST_MAC)
            pod_sock = ep["vhost_socket"]
        else:
            pod_sock = f"{client_sock},server=1"
        for life in range(2):
            pmd = run_testpmd(pod_sock, ["--forward-mode=icmpecho", "--auto-start"],
                              f"{mode[0]}{life}")
            try:
                if mode == "client" and life == 0:
                    wait_until(lambda: os.path.exists(client_sock), 30,
                               what="testpmd's vhost-user socket")
                    ep = d.ctl("endpoint", "add", "--id", ep_id, "--kind", "vhost-user",
                               "--ipv4", VHOST_V4, "--mac", VHOST_MAC, "--vhost-mode", "client",
                               "--vhost-socket", client_sock)
                wait_until(lambda: ping_ok(tap, VHOST_V4), 30,
                           what=f"the {mode} port's pod answering (life {life})")
                link = [p for p in d.stats()["ports"] if p["port_id"] == ep["port_id"]][0]["link"]
                assert link["up"] is True and link["events"] >= 1 + 2 * life, link
            finally:
                stop(pmd, signal.SIGKILL)  # a crash: no goodbye on the socket
            if mode == "client":
                # the dead server's socket file stays; the pod's runtime makes it again
                if os.path.exists(client_sock):
                    os.unlink(client_sock)
            wait_until(lambda: not [p for p in d.stats()["ports"]
                                    if p["port_id"] == ep["port_id"]][0]["link"]["up"],
                       10, what=f"the {mode} port's link down after the crash")
        d.ctl("endpoint", "del", "--id", ep_id)


def test_more_vhost_pods_than_the_eal_has_ethdevs(daemon_factory, netns_factory):
    """vhost-user pods are soft ports driven through librte_vhost, not net_vhost ethdevs:
    40 of them on one node (Debian's DPDK has 32 ethdevs in all), each with its socket and a
    port id outside the ethdev range; the last one made carries traffic; all go cleanly."""
    d = daemon_factory("vm", workers=(0, 1))
    tap = netns_factory("vm")
    d.add_pod(tap, ipv4="192.168.0.2")
    n = 40
    eps = []
    for i in range(n):
        eps.append(d.ctl("endpoint", "add", "--id", f"vm{i}", "--kind", "vhost-user",
                         "--ipv4", f"192.168.1.{10 + i}", "--mac", f"02:00:00:00:01:{i:02x}"))
    ids = [ep["port_id"] for ep in eps]
    assert len(set(ids)) == n and min(ids) >= 32, ids
    assert all(os.path.exists(ep["vhost_socket"]) for ep in eps)
    rows = {p["port_id"]: p for p in d.stats()["ports"]}
    assert all(rows[i]["name"].startswith("vhost-user:") for i in ids), rows
    # a socket is one pod's: another endpoint on it is refused, naming it, and nothing stays
    r = d.ctl("endpoint", "add", "--id", "vmdup", "--kind", "vhost-user", "--ipv4",
              "192.168.1.99", "--mac", "02:00:00:00:01:99", "--vhost-mode", "client",
              "--vhost-socket", eps[0]["vhost_socket"], check=False)
    assert r.returncode != 0 and "is another pod's" in r.stderr, r.stderr
    assert len(d.stats()["ports"]) == len(rows) and os.path.exists(eps[0]["vhost_socket"])

    last = eps[-1]
    pmd = run_testpmd(last["vhost_socket"], ["--forward-mode=icmpecho", "--auto-start"], "m40")
    try:
        wait_until(lambda: ping_ok(tap, f"192.168.1.{10 + n - 1}"), 30,
                   what="the 40th vhost-user pod's echo reply")
        st = port_stats(d, f"vm{n - 1}")
        assert st["rx_packets"] >= 1 and st["tx_packets"] >= 1 and st["link"]["up"], st
        # a second endpoint on its socket as server: the probe of the live socket (a second
        # peer) is refused by the socket's owner, the pod keeps its queues and its traffic
        r = d.ctl("endpoint", "add", "--id", "vmdup2", "--kind", "vhost-user", "--ipv4",
                  "192.168.1.98", "--mac", "02:00:00:00:01:98", "--vhost-socket",
                  last["vhost_socket"], check=False)
        assert r.returncode != 0 and "a server is already listening on it" in r.stderr, \
            r.stderr
        assert d.ctl("endpoint", "get", "--id", f"vm{n - 1}")["vhost_tx_queues_enabled"] == [0]
        assert port_stats(d, f"vm{n - 1}")["link"]["up"]
        r = tap.run(f"ping -4 -c 5 -i 0.05 -W 1 192.168.1.{10 + n - 1}", check=False)
        assert " 0% packet loss" in r.stdout, r.stdout
    finally:
        stop(pmd)

    # removed while its pod streams into it: the device goes under traffic, the daemon serves on
    pmd = run_testpmd(last["vhost_socket"], ["--forward-mode=txonly",
                                             f"--tx-ip=192.168.1.{10 + n - 1},192.168.0.2",
                                             "--eth-peer=0,ee:ee:ee:ee:ee:ee", "--txpkts=128",
                                             "--auto-start"], "m40tx")
    try:
        wait_until(lambda: port_stats(d, f"vm{n - 1}")["rx_packets"] > 10000, 30,
                   what="the 40th pod's stream")
        d.ctl("endpoint", "del", "--id", f"vm{n - 1}")
        assert not os.path.exists(last["vhost_socket"])
        assert d.ctl("endpoint", "get", "--id", "vm0")["port_id"] == ids[0]
        assert d.proc.poll() is None, "the daemon died removing a pod under traffic"
    finally:
        stop(pmd)
    for i in range(n - 1):
        d.ctl("endpoint", "del", "--id", f"vm{i}")
    assert not any(os.path.exists(ep["vhost_socket"]) for ep in eps), "sockets left behind"
    assert not [p for p in d.stats()["ports"] if p["port_id"] in ids]


def test_idle_vhost_pods_let_the_workers_block(daemon_factory, netns_factory):
    """Idle workers block on their vhost-user queues instead of sleeping and polling: each
    queue is armed for the block (the peer's notifications on, its kick eventfd watched), so
    10 vhost-user pods, one of them with a connected peer, leave both workers blocked and the
    daemon under 3% of a core (sleeping and polling every millisecond it took about 6%); a
    ping after the quiet is answered in milliseconds, not the block's 100 ms bound."""
    d = daemon_factory("vi", workers=(0, 1))
    tap = netns_factory("vi")
    d.add_pod(tap, ipv4="192.168.0.2")
    eps = [d.ctl("endpoint", "add", "--id", f"vi{i}", "--kind", "vhost-user", "--ipv4",
                 f"192.168.1.{10 + i}", "--mac", f"02:00:00:00:03:{i:02x}") for i in range(10)]
    pmd = run_testpmd(eps[0]["vhost_socket"], ["--forward-mode=icmpecho", "--auto-start"], "vi")
    try:
        wait_until(lambda: ping_ok(tap, "192.168.1.10"), 30, what="the vhost pod's echo reply")
        time.sleep(1)
        share, idle = d.idle_for(5)
        for w, (blocks, sleeps) in idle.items():
            assert blocks > 0 and sleeps < 500, \
                f"worker {w}: {blocks} blocks, {sleeps} sleeps in 5 s (polling: about 5000)"
        print(f"idle, 10 vhost-user pods (one connected), 2 workers: {share:.2%} of a core")
        assert share < 0.03, f"an idle node took {share:.2%} of a core"
        out = tap.run("ping -4 -c 5 -i 0.5 -W 2 192.168.1.10", timeout=15).stdout
        rtts = [float(x.split("time=")[1].split()[0]) for x in out.splitlines() if "time=" in x]
        assert len(rtts) == 5 and max(rtts) < 50, out
    finally:
        stop(pmd)
