"""BGP configured the Calico way (issue 19), with real BIRD and real dpdk-fwd nodes.

Three dpdk-fwd nodes on one etcd (on a ToR bridge), each with BIRD whose whole configuration
the daemon writes from the BGPConfiguration / BGPPeer resources applied with `fwdctl apply -f`
and from the node registry (the `bird` config section); the ToR runs BIRD in its own AS
(64513), peered with every node by one BGPPeer; an edge router (AS 64514) waits for a node
labelled edge=true. Each node has one IPAM block per family; the others learn it by BGP and
the dataplanes route it (route source bgp).

- service CIDRs: the ToR learns serviceClusterIPs / serviceExternalIPs only while the default
  BGPConfiguration lists them;
- a peer added by label: labelling node2 edge=true (fwdctl bgp node) brings up its session
  to the edge router and the router's prefixes into node2's dataplane, removing the label
  takes them away;
- mesh -> route reflectors, as Calico's guide does it (the reflector BGPPeers, then the
  reflectors' labels and cluster ID one at a time, then nodeToNodeMeshEnabled false, the
  example file ../shared/examples/bgp-route-reflectors.yaml), while every node's dataplane
  is polled for every other node's block: no block may be missing for more than a second.
"""
import contextlib
import ipaddress
import json
import pathlib
import socket
import subprocess
import threading
import time
import types

import pytest

from birdconf import NodeBgp, Peer
from fwdlab import (BUILD, FWDCTL, Bird, Bridge, Daemon, Etcd, Netns, RUN_ID,
                    record_results, uplink_daemon_config, uplink_ifname, wait_until)

pytestmark = pytest.mark.bgp_dataplane

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "examples"
IPAM_LOAD = BUILD / "ipam" / "tools" / "ipam_load"
TOR4, TOR6 = "10.0.0.254", "fd00::fe"
EDGE4, EDGE6 = "10.0.0.253", "fd00::fd"
EDGE_NETS = ("203.0.113.0/24", "2001:db8:203::/48")
SVC = ("10.96.0.0/12", "fd00:10:96::/112", "2001:db8:ff::/48")
# ipam_load's pools (load-v4 10.128.0.0/16, load-v6 fd00:128::/112): no overlay, BGP's
NODES = [("node1", "10.0.0.1", "fd00::1"), ("node2", "10.0.0.2", "fd00::2"),
         ("node3", "10.0.0.3", "fd00::3")]
IDLE = {"enabled": True, "spin_polls": 100, "pause_polls": 1000, "max_sleep_us": 1000}
# Session timers of the generated config: a session a reload restarts comes back at once.
TIMERS = {"connect_delay_s": 1, "connect_retry_s": 1, "error_wait_min_s": 1,
          "error_wait_max_s": 5, "graceful_restart": True}

BASE = f"""apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec:
  asNumber: 64512
  logSeverityScreen: Info
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: tor-v4}}
spec: {{peerIP: {TOR4}, asNumber: 64513}}
---
apiVersion: crd.projectcalico.org/v1
kind: BGPPeer
metadata: {{name: tor-v6}}
spec: {{peerIP: "{TOR6}", asNumber: 64513}}
"""

EDGE_PEER = f"""apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {{name: edge}}
spec:
  nodeSelector: edge == "true"
  peerIP: {EDGE4}
  asNumber: 64514
  keepAliveTime: 2s
  holdTime: 6s
"""


def api(sock, op, args=None):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(sock)
        s.sendall((json.dumps({"id": 1, "op": op, "args": args or {}}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    assert reply.get("ok"), reply
    return reply["result"]


def bgp_routes(n):
    return {r["prefix"] for r in api(n.d.sock, "route.list", {"source": "bgp", "limit": 100000})["routes"]}


def fwdctl(c, *args):
    r = c.etcd.run([FWDCTL, *args, "--store", c.spec])
    assert r.returncode == 0, f"fwdctl {' '.join(map(str, args))}: {r.stdout}{r.stderr}"
    return r.stdout


def apply(c, text):
    path = pathlib.Path(c.tmp) / f"apply-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    return fwdctl(c, "apply", "-f", str(path))


def sessions(n):
    return api(n.d.sock, "bgp.status")["sessions"]


def all_established(n):
    s = sessions(n)
    return bool(s) and all(x.get("up") and str(x.get("state", "")).startswith("Established")
                           for x in s)


def tor_kernel_routes(c):
    out = []
    for fam in ("-4", "-6"):
        r = c.tor.run(f"ip {fam} -j route show proto bird")
        out += [x["dst"] for x in json.loads(r.stdout or "[]")]
    return set(out)


@pytest.fixture(scope="module")
def cluster():
    with contextlib.ExitStack() as stack:
        import tempfile
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fwdt"))
        made = []
        stack.callback(lambda: [ns.delete() for ns in reversed(made)])

        def netns(label):
            ns = Netns(f"fwdt{RUN_ID}{label}")
            made.append(ns)
            return ns

        tor = netns("btor")
        tor.run("sysctl -qw net.ipv6.conf.default.disable_ipv6=1")
        br = Bridge(tor)
        # a fixed MAC: a bridge otherwise takes its lowest port's and changes it as ports join,
        # under the ARP entries the nodes' stacks hold (etcd then stops answering them)
        tor.run(f"ip link set {br.name} address 02:00:0a:00:00:fe")
        tor.run(f"sysctl -qw net.ipv6.conf.{br.name}.disable_ipv6=0 "
                f"net.ipv6.conf.{br.name}.accept_dad=0")
        tor.run(f"ip addr add {TOR4}/24 dev {br.name}")
        tor.run(f"ip addr add {TOR6}/64 dev {br.name} nodad")
        etcd = Etcd(tmp, ns=tor, host=TOR4).start()
        stack.callback(etcd.stop)
        c = types.SimpleNamespace(tmp=tmp, tor=tor, etcd=etcd, spec=etcd.spec("/bgpconf"),
                                  nodes=[], birds=[])
        apply(c, BASE)
        # the edge router: its own namespace on the bridge, AS 64514, two prefixes
        edge = netns("bedge")
        br.plug_veth(edge, f"fwe{RUN_ID}"[:15])
        edge.run("sysctl -qw net.ipv6.conf.eth0.accept_dad=0")
        edge.run(f"ip addr add {EDGE4}/24 dev eth0")
        edge.run(f"ip addr add {EDGE6}/64 dev eth0 nodad")
        edge.run("ip link set eth0 up")
        stack.callback(lambda: [b.stop() for b in reversed(c.birds)])
        for i, (name, v4, v6) in enumerate(NODES):
            ns = netns(f"b{name[-1]}")
            tag = f"g{i}"
            conf = pathlib.Path(tmp) / f"{name}.bird.conf"  # fwdlab.Bird's paths
            sock = pathlib.Path(tmp) / f"{name}.bird.ctl"
            include = pathlib.Path(tmp) / f"{name}.ipam.conf"
            extra = uplink_daemon_config(tag, i % 2, f"02:00:00:00:0b:0{i + 1}", f"{v4}/24",
                                         f"{v6}/64", extra={
                "host": {"tap": "fwdhost"},
                "bgp": {"table": 254, "protocols": [12]},
                "ipam": {"store": c.spec, "sync_ms": 100, "bird_include": str(include),
                         "bird_socket": str(sock)},
                "bird": {"config": str(conf), "socket": str(sock), **TIMERS},
                "idle": IDLE,
                # tables for a test (as the lab's), so 128 MiB of hugepages hold them
                "tables": {"ipv4_routes": 16384, "ipv6_routes": 16384, "ipv4_tbl8s": 2048,
                           "ipv6_tbl8s": 8192},
            })
            d = Daemon(tmp, name, extra=extra, netns=ns)
            cfg = json.loads(d.config.read_text())
            cfg["eal"]["memory_mb"] = 128  # three daemons: 384 MiB of hugepages
            d.config.write_text(json.dumps(cfg, indent=2))
            d.start()
            stack.callback(d.stop)
            br.adopt(uplink_ifname(tag), ns)
            c.nodes.append(types.SimpleNamespace(name=name, v4=v4, v6=v6, ns=ns, d=d, conf=conf,
                                                 include=include))
        # every node registered and its config written with the full mesh and the ToR
        for n in c.nodes:
            try:
                wait_until(lambda n=n: n.conf.exists() and len(sessions(n)) == 6, 30,
                           interval=0.1, what=f"{n.name}'s BIRD file with 4 mesh and 2 ToR sessions")
            except AssertionError as e:
                node = api(n.d.sock, "node.get")
                raise AssertionError(f"{e}: bgp {node.get('bgp_config')}, ipam {node.get('ipam')}, "
                                     f"registry {api(n.d.sock, 'node.list')}\n"
                                     f"neighbors {api(n.d.sock, 'neighbor.list')}\n"
                                     f"{n.d.log.read_text()[-3000:]}") from None
        for n in c.nodes:
            # supervised: restarted when the daemon restarts it gracefully (bird.graceful_restart)
            n.bird = Bird(tmp, n.name, n.ns, n.conf.read_text(), supervised=True).start()
            c.birds.append(n.bird)
        tor_bgp = NodeBgp(f"{TOR4}/24", f"{TOR6}/64", [], [],
                          [Peer(n.name, n.v4, n.v6) for n in c.nodes], asn=64513, peer_asn=64512,
                          debug="states")
        c.tor_bird = Bird(tmp, "tor", tor, tor_bgp.render()).start()
        c.birds.append(c.tor_bird)
        edge_bgp = NodeBgp(f"{EDGE4}/24", f"{EDGE6}/64", [EDGE_NETS[0]], [EDGE_NETS[1]],
                           [Peer(n.name, n.v4, n.v6) for n in c.nodes], asn=64514, peer_asn=64512,
                           debug="states")
        c.edge_bird = Bird(tmp, "edge", edge, edge_bgp.render()).start()
        c.birds.append(c.edge_bird)
        for n in c.nodes:
            wait_until(lambda n=n: all_established(n), 60, interval=0.2,
                       what=f"{n.name}: every session Established")
        # a block per family on each node, learned by the others
        c.blocks = {}
        for n in c.nodes:
            r = etcd.run([IPAM_LOAD, "--store", c.spec, "--node", n.name, "--count", 1,
                          "--handle-prefix", f"{n.name}pod", "--dual", "--report-fd", "1"])
            assert r.returncode == 0, r.stdout + r.stderr
            line = [x for x in r.stdout.splitlines() if x.startswith(f"{n.name}pod-")][0]
            _, a4, a6 = line.split()
            c.blocks[n.name] = {str(ipaddress.ip_network(f"{a4}/26", strict=False)),
                                str(ipaddress.ip_network(f"{a6}/122", strict=False))}
        c.want = {n.name: set().union(*(b for o, b in c.blocks.items() if o != n.name))
                  for n in c.nodes}
        for n in c.nodes:
            wait_until(lambda n=n: c.want[n.name] <= bgp_routes(n), 30, interval=0.1,
                       what=f"{n.name}: the other nodes' blocks by BGP")
        yield c


def test_status_and_generated_file(cluster):
    c = cluster
    n = c.nodes[0]
    r = subprocess.run([str(FWDCTL), "-s", n.d.sock, "bgp", "status"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    for proto in ("Peer_10_0_0_2", "Peer_fd00__3", "Peer_10_0_0_254", "Peer_fd00__fe"):
        assert proto in r.stdout, r.stdout
    st = api(n.d.sock, "bgp.status")
    by = {s["protocol"]: s for s in st["sessions"]}
    assert st["as_number"] == 64512 and st["router_id"] == "10.0.0.1", st
    assert by["Peer_10_0_0_2"]["received"] == 1 and by["Peer_10_0_0_2"]["sent"] >= 1, by
    assert by["Peer_10_0_0_254"]["as_number"] == 64513 and by["Peer_10_0_0_2"]["source"] == "mesh"
    assert "include" in n.conf.read_text() and oct(n.conf.stat().st_mode & 0o777) == "0o600"
    # an unchanged store is not rewritten nor reloaded
    before = api(n.d.sock, "node.get")["bgp_config"]
    apply(c, BASE)
    time.sleep(0.5)
    after = api(n.d.sock, "node.get")["bgp_config"]
    assert after["writes"] == before["writes"] and after["reloads"] == before["reloads"]


def test_service_cidrs_reach_the_tor_only_when_configured(cluster):
    c = cluster
    assert not tor_kernel_routes(c) & set(SVC)
    t0 = time.monotonic()
    apply(c, BASE.replace("  logSeverityScreen: Info\n", f"""  logSeverityScreen: Info
  serviceClusterIPs: [{{cidr: {SVC[0]}}}, {{cidr: "{SVC[1]}"}}]
  serviceExternalIPs: [{{cidr: "{SVC[2]}"}}]
"""))
    took = wait_until(lambda: set(SVC) <= tor_kernel_routes(c), 20, interval=0.1,
                      what="the ToR to learn the service ranges")
    # announced by every node (ECMP on the ToR)
    wait_until(lambda: all(f"bgp4_{n.name}" in c.tor_bird.show_route("for", SVC[0])
                           for n in c.nodes), 10, interval=0.1,
               what="every node to announce the cluster IP range")
    apply(c, BASE)
    gone = wait_until(lambda: not tor_kernel_routes(c) & set(SVC), 20, interval=0.1,
                      what="the service ranges withdrawn from the ToR")
    record_results("bgp_config_services", {"advertised_s": round(took, 2),
                                           "withdrawn_s": round(gone, 2),
                                           "since_apply_s": round(time.monotonic() - t0, 2)})


def test_peer_added_by_label(cluster):
    c = cluster
    n2 = c.nodes[1]
    apply(c, EDGE_PEER)
    time.sleep(1)
    assert not any(s["address"] == EDGE4 for n in c.nodes for s in sessions(n))
    assert EDGE_NETS[0] not in bgp_routes(n2)
    t0 = time.monotonic()
    out = fwdctl(c, "bgp", "node", "node2", "edge=true")
    assert "edge=true" in out, out
    took = wait_until(lambda: EDGE_NETS[0] in bgp_routes(n2), 30, interval=0.1,
                      what="node2 to learn the edge router's prefix over its new session")
    s = {x["protocol"]: x for x in sessions(n2)}["Peer_10_0_0_253"]
    assert s["state"].startswith("Established") and s["as_number"] == 64514, s
    assert "keepalive time 2;" in n2.conf.read_text()
    for other in (c.nodes[0], c.nodes[2]):
        assert not any(x["address"] == EDGE4 for x in sessions(other))
        assert EDGE_NETS[0] not in bgp_routes(other)
    fwdctl(c, "bgp", "node", "node2", "edge-")
    wait_until(lambda: EDGE_NETS[0] not in bgp_routes(n2), 30, interval=0.1,
               what="the edge prefix withdrawn once the label is gone")
    assert not any(x["address"] == EDGE4 for x in sessions(n2))
    record_results("bgp_config_peer_by_label", {"label_to_route_s": round(took, 2)})


class Watcher:
    """Polls every node's dataplane for the other nodes' blocks; the longest time each
    (node, block) was missing."""

    def __init__(self, c):
        self.c, self.stop_ev = c, threading.Event()
        self.gaps = {}
        self.when = {}  # (node, block) -> when its longest gap began, seconds from the start
        self.t0 = time.monotonic()
        self.polls = 0
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        last_seen = {}
        while not self.stop_ev.is_set():
            for n in self.c.nodes:
                now = time.monotonic()
                have = bgp_routes(n)
                for b in self.c.want[n.name]:
                    key = (n.name, b)
                    if b in have:
                        last_seen[key] = now
                    elif key in last_seen and now - last_seen[key] > self.gaps.get(key, 0):
                        self.gaps[key] = now - last_seen[key]
                        self.when[key] = last_seen[key] - self.t0
            self.polls += 1
            time.sleep(0.005)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop_ev.set()
        self.t.join()


def test_mesh_to_route_reflectors_without_losing_a_route(cluster):
    c = cluster
    docs = (EXAMPLES / "bgp-route-reflectors.yaml").read_text().split("\n---\n")
    rr_peers, mesh_off = "\n---\n".join(docs[1:]), docs[0]
    steps = []
    with Watcher(c) as w:
        t0 = w.t0
        time.sleep(0.5)
        apply(c, rr_peers)  # selects nobody yet: no node is labelled
        steps.append(("reflector peers applied", time.monotonic() - t0))
        time.sleep(2)
        for n in c.nodes[:2]:
            fwdctl(c, "bgp", "node", n.name, "route-reflector=true",
                   "--route-reflector-cluster-id", "244.0.0.1")
            wait_until(lambda: all(all_established(x) for x in c.nodes), 30, interval=0.1,
                       what=f"every session Established after {n.name} became a reflector")
            time.sleep(2)
            steps.append((f"{n.name} reflector", time.monotonic() - t0))
        apply(c, mesh_off.replace("asNumber: 64512", "asNumber: 64512\n  logSeverityScreen: Info"))

        def reflected():
            s = sessions(c.nodes[2])
            return not any(x["source"] == "mesh" for x in s) and all_established(c.nodes[2])
        wait_until(reflected, 30, interval=0.1, what="node3 on the reflectors only")
        steps.append(("mesh off", time.monotonic() - t0))
        time.sleep(3)
    # the end state: node3 peers with the two reflectors (and the ToR), which reflect
    s3 = {x["protocol"]: x for x in sessions(c.nodes[2])}
    assert {p for p, x in s3.items() if x["node"]} == {
        "Peer_10_0_0_1", "Peer_10_0_0_2", "Peer_fd00__1", "Peer_fd00__2"}, s3
    assert all(x["source"] != "mesh" for x in s3.values()), s3
    s1 = {x["protocol"]: x for x in sessions(c.nodes[0])}
    assert s1["Peer_10_0_0_3"]["rr_client"] and not s1["Peer_10_0_0_2"]["rr_client"], s1
    # the reflectors took their new sessions by a graceful restart, not a Cease
    for n in c.nodes[:2]:
        assert api(n.d.sock, "node.get")["bgp_config"]["graceful_restarts"] >= 1
    for n in c.nodes:
        assert c.want[n.name] <= bgp_routes(n), n.name
    worst = max(w.gaps.values(), default=0.0)
    record_results("bgp_config_rr_switch", {
        "worst_gap_s": round(worst, 3), "polls": w.polls,
        "gaps": {f"{k[0]} {k[1]}": f"{v:.3f} s from {w.when[k]:.2f} s"
                 for k, v in sorted(w.gaps.items())},
        "steps": {k: round(v, 2) for k, v in steps}})
    assert w.polls > 100
    assert worst <= 1.0, f"a block was missing for {worst:.3f} s: {w.gaps}"
