"""Fault injection (issue 20, item 2): what a node agent meets in a cluster's life, with the
real daemon and the real parts around it, and what it must do each time:

- etcd (the IPAM store) stopped and started again under CNI churn (the real dpdk-fwd-cni
  plugin driven as kubelet drives it): calls in the outage fail naming the store, nothing
  half-done stays behind (no IPAM handle, interface or route), calls work again once etcd is
  back, readiness goes not-ready and back, and `fwdctl ipam check` is clean at the end;
- the disk of the embedded store full (a small tmpfs): the write fails naming the problem,
  nothing stored is lost or damaged, the store works again once space is freed;
- BIRD killed: what it taught the peer's dataplane goes, what it taught its own node's
  kernel stays (Calico's BIRD persists its kernel routes), the daemon keeps serving, and the
  routes come back when BIRD runs again;
- the uplink down and up: forwarding stops with the drops named (port_down), readiness
  follows, forwarding resumes;
- hugepages exhausted at start: a clear error and exit code, no file left in /dev/hugepages.

The kill -9 of the daemon under churn is test_restart's (issue 18's recovery)."""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from cnitool import CniError, kubelet_args
from fwdlab import (DAEMON, RUN_ID, Etcd, free_port, router_behind_uplink, sh, uplink_daemon_config,
                    uplink_ifname, wait_until)
from test_cni import (V4_POOL, V6_POOL, Node, bare, addrs_of, container_id, fwdctl_store,
                      links, non_lo_routes)
from test_bgp_dataplane import bgp_nodes, bgp_routes, kernel_bird_routes, learned  # noqa: F401
from birdconf import NODE1, NODE2
from test_metrics import http_get


# --- CNI churn against a store that goes away -------------------------------------------------

class Churn:
    """kubelet's side of pod churn, in a thread: ADD a new container in a new pod namespace,
    then DEL it; a DEL that fails is retried on every round (kubelet retries it; after a
    failed ADD it tears the sandbox down with DEL too), while new pods keep coming (at most
    three waiting for their DEL). Every call is recorded as (phase at start, phase at end,
    verb, cid, error or None); after a failed ADD the pod namespace and the daemon are checked
    at once for anything half-done."""

    MAX_PENDING = 3

    def __init__(self, node, nl):
        self.node, self.nl = node, nl
        self.phase = "before"
        self.calls = []
        self.half_done = []
        self.failed_adds = []
        self.pods = []  # every pod namespace used
        self.pending = []  # (cid, ns) not deleted yet
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _call(self, verb, cid, ns):
        start = self.phase
        args = kubelet_args("churn", f"pod-{cid[:8]}", cid)
        try:
            if verb == "ADD":
                self.nl.add(cid, ns.path, cni_args=args)
            else:
                self.nl.delete(cid, ns.path, cni_args=args)
            err = None
        except CniError as e:
            err = e
        self.calls.append((start, self.phase, verb, cid, err))
        return err

    def _delete_pending(self):
        self.pending = [(cid, ns) for cid, ns in self.pending
                        if self._call("DEL", cid, ns) is not None]

    def _run(self):
        try:
            while not self.stop.is_set():
                self._delete_pending()
                if len(self.pending) >= self.MAX_PENDING:
                    time.sleep(0.1)
                    continue
                ns, cid = self.node.pod(), container_id()
                self.pods.append(ns)
                self.pending.append((cid, ns))
                if self._call("ADD", cid, ns) is not None:
                    self.failed_adds.append(cid)
                    # nothing half-done, seen at once: no interface or route in the pod,
                    # no endpoint in the dataplane
                    left = set(links(ns)) - {"lo"}
                    if left or non_lo_routes(ns) or self.node.endpoint(cid) is not None:
                        self.half_done.append((cid, left, non_lo_routes(ns)))
        except Exception as e:  # reported by join(): a thread's exception is lost otherwise
            self.error = e

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the churn loop did not stop"
        if self.error is not None:
            raise self.error
        self._delete_pending()  # the last ones, with the store there
        assert self.pending == [], [(c, str(e)) for *_, c, e in self.calls[-3:]]

    def wait_calls(self, phase, verb, ok, n, timeout):
        """Waits for n calls of verb started and ended in phase with the outcome ok."""
        def enough():
            if self.error is not None or not self.thread.is_alive():
                raise AssertionError(f"churn loop ended: {self.error!r}")
            return len(self.of(phase, verb, ok)) >= n
        wait_until(enough, timeout, interval=0.05,
                   what=f"{n} {'good' if ok else 'failed'} {verb} in phase {phase}")

    def of(self, phase, verb=None, ok=None):
        return [c for c in self.calls if c[0] == phase and c[1] == phase
                and (verb is None or c[2] == verb)
                and (ok is None or (c[4] is None) == ok)]


def readiness(d):
    ns = getattr(d, "health_ns", None)
    if ns is None:
        status, body = http_get(d.health_url + "/readiness")
    else:  # the daemon's namespace: curl there
        r = ns.run(f"curl -s -m 5 -w '\\n%{{http_code}}' {d.health_url}/readiness", check=False)
        body, _, code = r.stdout.rpartition("\n")
        status = int(code) if code.isdigit() and code != "000" else None
    return status, (json.loads(body) if status in (200, 503) else body)


def test_etcd_stopped_and_restarted_under_cni_churn(daemon_factory, netns_factory,
                                                    tmpdir_short):
    etcd = Etcd(tmpdir_short, name="etcd").start()
    try:
        store = etcd.spec(f"/f{RUN_ID}")
        pools = pathlib.Path(tmpdir_short) / "pools.yaml"
        pools.write_text("---\n".join([V4_POOL, V6_POOL]))
        fwdctl_store(store, "apply", "-f", pools)
        hport = free_port()
        d = daemon_factory("fe", extra={
            "ipam": {"store": store, "sync_ms": 100},
            "health": {"enabled": True, "host": "127.0.0.1", "port": hport}})
        d.health_url = f"http://127.0.0.1:{hport}"
        node = Node(d, store, tmpdir_short, netns_factory)
        nl = node.network()
        wait_until(lambda: readiness(d)[0] == 200, 10, what="readiness 200")

        # a pod that lives through the outage, and the churn next to it
        steady_ns, steady = node.pod(), container_id()
        res = nl.add(steady, steady_ns.path, cni_args=kubelet_args("churn", "steady", steady))
        churn = Churn(node, nl).start()
        churn.wait_calls("before", "DEL", True, 2, 30)

        t0 = time.monotonic()
        churn.phase = "stopping"  # calls from here on may find etcd or not
        etcd.stop()
        churn.phase = "down"
        t_unready = wait_until(lambda: readiness(d)[0] == 503, 15,
                               what="readiness 503 without etcd")
        _, body = readiness(d)
        assert body["ready"] is False and any("IPAM store" in r for r in body["reasons"]), body
        churn.wait_calls("down", "ADD", False, 1, 30)
        churn.wait_calls("down", "DEL", False, 2, 30)
        d.ctl("version")  # the API keeps serving
        # the pod that was there keeps its endpoint and its traffic path
        assert node.endpoint(steady) is not None

        churn.phase = "starting"  # calls from here on may find etcd or not
        etcd.start()
        wait_until(lambda: readiness(d)[0] == 200, 30, what="readiness 200 with etcd back")
        t_back = time.monotonic() - t0
        churn.phase = "back"
        churn.wait_calls("back", "DEL", True, 2, 30)
        churn.join()

        down = churn.of("down")
        print(f"\netcd outage: not ready after {t_unready:.2f} s, ready again {t_back:.2f} s "
              f"after the stop; calls: {len(churn.of('before'))} before, {len(down)} during "
              f"(failed: {len(churn.of('down', ok=False))}), {len(churn.of('back'))} after")
        # every call made while etcd was gone failed, naming the store and its address
        assert down and all(c[4] is not None for c in down), \
            [(c[2], c[4]) for c in down if c[4] is None]
        for c in down:
            msg = str(c[4])
            assert "IPAM store" in msg and etcd.url in msg, msg
            assert c[4].code == 11, msg  # CNI "try again later"
        # every call made with etcd there worked
        for phase in ("before", "back"):
            bad = [(c[2], str(c[4])) for c in churn.of(phase, ok=False)]
            assert not bad, (phase, bad)
        # nothing half-done: not right after the failed ADD, not in IPAM once it was back
        assert churn.half_done == [], churn.half_done
        assert churn.failed_adds
        for cid in churn.failed_adds:
            assert node.handle_addrs(cid) == [], cid
            assert node.endpoint(cid) is None, cid

        # the steady pod is still whole; then it goes too, and nothing is left anywhere
        assert sorted(a["address"] for a in node.handle_addrs(steady)) == \
            sorted(bare(a) for a in addrs_of(res))
        nl.delete(steady, steady_ns.path, cni_args=kubelet_args("churn", "steady", steady))
        node.assert_clean(pods=[steady_ns, *churn.pods])
    finally:
        etcd.stop()


# --- the embedded store's disk full -----------------------------------------------------------

@pytest.fixture
def small_tmpfs():
    """A 1 MB tmpfs mounted for the test (unmounted after it, lazily if still busy)."""
    d = tempfile.mkdtemp(prefix="fwdtfull")
    sh(f"mount -t tmpfs -o size=1m,mode=0700 fwdt{RUN_ID} {d}")
    yield pathlib.Path(d)
    if sh(f"umount {d}", check=False).returncode != 0:
        sh(f"umount -l {d}", check=False)
    os.rmdir(d)


def fill(fs):
    """Fills fs up to its last byte with one file; returns its path."""
    path = fs / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):  # big writes, then the last partial page
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def test_embedded_store_disk_full(small_tmpfs, daemon_factory, netns_factory, tmpdir_short):
    store = f"embedded:{small_tmpfs}/ipam"
    pools = pathlib.Path(tmpdir_short) / "pools.yaml"
    pools.write_text("---\n".join([V4_POOL, V6_POOL]))
    fwdctl_store(store, "apply", "-f", pools)
    d = daemon_factory("fd", extra={"ipam": {"store": store, "sync_ms": 100}})
    node = Node(d, store, tmpdir_short, netns_factory)
    nl = node.network()
    a_ns, a = node.pod(), container_id()
    ra = nl.add(a, a_ns.path, cni_args=kubelet_args("full", "a", a))
    print("store before the disk fills:", {p.name: p.stat().st_size
                                           for p in (small_tmpfs / "ipam").iterdir()})
    filler = fill(small_tmpfs)
    assert shutil.disk_usage(small_tmpfs).free < 4096

    # new pods: the journal's last page still has room for a record or two; then an ADD
    # fails, naming the problem, and leaves nothing in the pod, the dataplane or the store
    added = [(a_ns, a, ra)]
    for _ in range(10):
        before = node.ipam()
        b_ns, b = node.pod(), container_id()
        try:
            added.append((b_ns, b, nl.add(b, b_ns.path, cni_args=kubelet_args("full", "b", b))))
        except CniError as e:
            err = e
            break
    else:
        raise AssertionError("10 ADDs on a full disk, none failed")
    msg = str(err)
    assert "IPAM store" in msg and "No space left on device" in msg, msg
    assert str(small_tmpfs) in msg, msg  # which store
    assert err.code == 11, msg  # try again later
    assert set(links(b_ns)) == {"lo"} and non_lo_routes(b_ns) == []
    assert node.endpoint(b) is None
    # nothing stored was lost or damaged: the same allocations, the store consistent
    assert node.ipam() == before
    node.assert_ipam_consistent()
    for ns, cid, res in added:
        assert sorted(x["address"] for x in node.handle_addrs(cid)) == \
            sorted(bare(x) for x in addrs_of(res))
    # DEL of a pod that was there, with the disk still full: it fails the same way and
    # the pod keeps its allocation (kubelet retries), or, when its record still fit in the
    # journal's last page, it is released whole
    try:
        nl.delete(a, a_ns.path, cni_args=kubelet_args("full", "a", a))
        assert node.handle_addrs(a) == []
    except CniError as e:
        assert "No space left on device" in str(e), str(e)
        assert len(node.handle_addrs(a)) == 2
    node.assert_ipam_consistent()

    # space back: the retried calls work, and everything is released
    filler.unlink()
    rb = nl.add(b, b_ns.path, cni_args=kubelet_args("full", "b", b))
    assert len(addrs_of(rb)) == 2
    for ns, cid, _ in added + [(b_ns, b, rb)]:
        nl.delete(cid, ns.path, cni_args=kubelet_args("full", "b", cid))
    node.assert_clean(pods=[ns for ns, _, _ in added] + [b_ns])
    leftovers = sorted(p.name for p in (small_tmpfs / "ipam").iterdir())
    assert not [n for n in leftovers if n.endswith(".tmp")], leftovers


# --- BIRD killed -----------------------------------------------------------------------------

def drops(d, reason):
    return d.stats()["drops"].get(reason, 0)


def pings(ns, dst, count=1, check=True):
    fam = "-6" if ":" in dst else "-4"
    r = ns.run(f"ping {fam} -c {count} -i 0.05 -W 1 {dst}", check=False, timeout=20)
    if check:
        assert r.returncode == 0, f"{ns.name}: no reply from {dst}\n{r.stdout}{r.stderr}"
    return r.returncode == 0


def test_bird_killed_and_restarted(bgp_nodes):
    """kill -9 of node1's BIRD (test_bgp_dataplane's two nodes: BIRD in each node namespace
    feeding the kernel, the daemon's watcher feeding the dataplane). The peer's session
    ends with the TCP connection, so node2's BIRD withdraws node1's blocks and node2's
    dataplane drops them (no_route); node1's kernel keeps what the dead BIRD put there
    (nothing removes it: Calico's BIRD, with `persist`, leaves them on purpose), so node1's
    dataplane keeps routing to node2. Started again, BIRD re-establishes both sessions and
    both dataplanes route both ways."""
    n1, n2 = bgp_nodes
    for dst in (NODE2.pod4, NODE2.pod6):
        pings(n1.pod, dst)
    t0 = time.monotonic()
    n1.bird.proc.kill()
    n1.bird.proc.wait()
    t_gone = wait_until(lambda: NODE1.block4 not in bgp_routes(n2.d)
                        and NODE1.block6 not in bgp_routes(n2.d), 10,
                        what="node2's dataplane to drop node1's blocks")
    before = drops(n2.d, "no_route")
    for dst in (NODE1.pod4, NODE1.pod6):
        assert not pings(n2.pod, dst, check=False), f"{dst} still reachable from node2"
    assert drops(n2.d, "no_route") >= before + 2
    # node1: the kernel routes stay, the dataplane still routes to node2, the API serves
    k = kernel_bird_routes(n1.ns)
    assert NODE2.block4 in k and NODE2.block6 in k, k
    assert learned(n1, NODE2)
    n1.d.ctl("version")
    n2.d.ctl("version")

    n1.bird.start()
    for proto in n1.bgp.protocols():
        n1.bird.wait_established(proto, 30)
    wait_until(lambda: learned(n1, NODE2) and learned(n2, NODE1), 15,
               what="both dataplanes to route the other node's blocks again")
    t_back = time.monotonic() - t0
    for a, b in ((n1, NODE2), (n2, NODE1)):
        for dst in (b.pod4, b.pod6):
            pings(a.pod, dst)
    print(f"\nBIRD killed: node2 dropped node1's blocks in {t_gone:.2f} s; "
          f"BIRD restarted, routes back {t_back:.2f} s after the kill")


# --- the uplink down and up -------------------------------------------------------------------

ROUTER_MAC = "02:00:00:00:0b:01"


def test_uplink_down_and_up(daemon_factory, netns_factory):
    """A router behind the net_tap uplink, a pod pinging it. The daemon runs in a node
    namespace where its uplink tap stays (net_tap reads the link state there), on a bridge
    with a veth to the router. The uplink's link down: readiness 503 naming the uplink, the
    pod's packets dropped as port_down (both families), the API serving; up again: ready,
    forwarding resumes."""
    hport = free_port()
    node_ns = netns_factory("fun")
    rt = netns_factory("frt")
    d = daemon_factory("fu", netns=node_ns, extra=uplink_daemon_config(
        "fu", 1, "02:00:00:00:0b:0a", "10.10.10.10/24", "fd00:10:10::10/64", extra={
            "routes": [{"prefix": "0.0.0.0/0", "via": "10.10.10.1", "mac": ROUTER_MAC},
                       {"prefix": "::/0", "via": "fd00:10:10::1", "mac": ROUTER_MAC}],
            "health": {"enabled": True, "host": "127.0.0.1", "port": hport}}))
    # the health port is on the node namespace's loopback: read it from there
    d.health_url, d.health_ns = f"http://127.0.0.1:{hport}", node_ns
    router_behind_uplink(node_ns, "fu", rt, ROUTER_MAC, "10.10.10.1", "fd00:10:10::1",
                         "10.10.10.10", "fd00:10:10::10")
    ifname = uplink_ifname("fu")
    pod = netns_factory("fup")
    d.add_pod(pod, ipv4="192.168.0.2", ipv6="fd00:10:244::2")
    dsts = ("10.10.10.1", "fd00:10:10::1")
    for dst in dsts:
        pings(pod, dst)
    try:
        wait_until(lambda: readiness(d)[0] == 200, 10, what="readiness 200")
    except AssertionError:
        raise AssertionError(f"not ready: {readiness(d)}")

    node_ns.run(f"ip link set {ifname} down")
    t_down = wait_until(lambda: readiness(d)[0] == 503, 10,
                        what="readiness 503 with the uplink down")
    _, body = readiness(d)
    assert any("uplink" in r for r in body["reasons"]), body
    before = drops(d, "port_down")
    for dst in dsts:
        assert not pings(pod, dst, count=3, check=False), f"{dst} answered over a down link"
    st = d.stats()
    assert drops(d, "port_down") >= before + 6, ({k: v for k, v in st["drops"].items() if v},
                                                  st["ports"])
    d.ctl("version")

    node_ns.run(f"ip link set {ifname} up")
    t_up = wait_until(lambda: readiness(d)[0] == 200, 10,
                      what="readiness 200 with the uplink back")
    for dst in dsts:
        pings(pod, dst)
    print(f"\nuplink: not ready {t_down:.2f} s after link down, ready {t_up:.2f} s after up")


# --- hugepages --------------------------------------------------------------------------------

def hugepages_mb():
    """(total, free) MB of the default hugepage size, from /proc/meminfo."""
    info = dict(line.split(":", 1) for line in pathlib.Path("/proc/meminfo").read_text()
                .splitlines())
    size_kb = int(info["Hugepagesize"].split()[0])
    return (int(info["HugePages_Total"]) * size_kb // 1024,
            int(info["HugePages_Free"]) * size_kb // 1024)


def test_hugepages_exhausted_at_start(tmpdir_short):
    """eal.memory_mb above every hugepage of the machine (so other tests running now lose
    none: EAL refuses before it takes a page): the daemon says what it lacks and exits 1,
    leaving no hugepage file."""
    total, _ = hugepages_mb()
    ask = min(max(total * 2, 1024), 65536)
    prefix = f"fwdt{RUN_ID}huge"
    cfg = {"node_name": "huge", "node": {"ipv4": "10.0.0.1/24", "mtu": 1500},
           "eal": {"file_prefix": prefix, "in_memory": False, "memory_mb": ask},
           "cores": {"main": 0, "control": 0, "workers": [{"core": 1}]},
           "api_socket": f"{tmpdir_short}/huge.sock", "run_dir": f"{tmpdir_short}/run"}
    path = pathlib.Path(tmpdir_short) / "huge.json"
    path.write_text(json.dumps(cfg))
    r = subprocess.run([str(DAEMON), "--config", str(path)], capture_output=True, text=True,
                       timeout=60)
    out = r.stdout + r.stderr
    try:
        assert r.returncode == 1, out
        assert f"eal.memory_mb is {ask} MB" in r.stderr, out
        assert "hugepage" in r.stderr, out
        assert not os.path.exists(cfg["api_socket"]), "the API socket was created"
        left = [f.name for f in pathlib.Path("/dev/hugepages").glob(f"{prefix}*")]
        assert left == [], left
    finally:
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
