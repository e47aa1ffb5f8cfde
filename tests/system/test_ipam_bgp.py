"""IPAM to BGP to the dataplane: two dpdk-fwd nodes share one real etcd as
their IPAM store; each advertises the blocks IPAM gave it, through the BIRD
include file it keeps, and routes the other's blocks learned over BGP.

Topology as test_bgp_dataplane.py (ToR bridge, node namespaces with a
dpdk-fwd, a host tap and BIRD each), except that BIRD's static blocks are
empty: the only routes a node announces are the ones in the include file its
daemon writes from the IPAM store. Addresses come from the real allocator
(build/ipam/tools/ipam_load, pools load-v4 10.128.0.0/16 /26 blocks and
load-v6 fd00:128::/112 /122 blocks).
"""
import ipaddress
import json
import pathlib
import subprocess
import time
import types

import pytest

from birdconf import NODE1, NODE2
from fwdlab import (BUILD, FWDCTL, Bridge, Etcd, record_results, uplink_daemon_config, uplink_ifname,
                    wait_until)

pytestmark = pytest.mark.bgp_dataplane

IPAM_LOAD = BUILD / "ipam" / "tools" / "ipam_load"
HOST_TAP = "fwdhost"
MAC = {"node1": "02:00:00:00:01:01", "node2": "02:00:00:00:02:02"}
POOL4 = ipaddress.ip_network("10.128.0.0/16")
POOL6 = ipaddress.ip_network("fd00:128::/112")
ETCD_ADDR = "10.0.0.254"


def routes_of(d, source):
    return {r["prefix"]: r for r in d.ctl("route", "list")["routes"] if r.get("source") == source}


def allocate(etcd, spec, node, prefix, count):
    """count dual-stack allocations for node; returns [(handle, v4, v6)]."""
    r = etcd.run([IPAM_LOAD, "--store", spec, "--node", node, "--count", count,
                  "--handle-prefix", prefix, "--dual", "--report-fd", "1"])
    assert r.returncode == 0, r.stdout + r.stderr
    out = []
    for line in r.stdout.splitlines():
        if line.startswith(prefix + "-"):
            h, a4, a6 = line.split()
            out.append((h, a4, a6))
    assert len(out) == count, r.stdout
    return out


def block_of(addr, v4):
    return str(ipaddress.ip_network(f"{addr}/{26 if v4 else 122}", strict=False))


@pytest.fixture
def ipam_nodes(tmpdir_short, netns_factory, daemon_factory, bird_factory):
    # etcd on the ToR, reached by the daemons over the node network (through
    # their dataplanes' host path, like BGP)
    tor = netns_factory("itor")
    br = Bridge(tor)
    tor.run(f"ip addr add {ETCD_ADDR}/24 dev {br.name}")
    etcd = Etcd(tmpdir_short, ns=tor, host=ETCD_ADDR).start()
    spec = etcd.spec("/ipam-bgp-test")
    nodes = []
    try:
        for plan, other, core, tag in ((NODE1, NODE2, 0, "a"), (NODE2, NODE1, 1, "b")):
            ns = netns_factory(f"i{plan.name[-1]}")
            include = pathlib.Path(tmpdir_short) / f"{plan.name}.ipam.conf"
            bird_sock = pathlib.Path(tmpdir_short) / f"{plan.name}.bird.ctl"  # fwdlab.Bird's
            extra = uplink_daemon_config(tag, core, MAC[plan.name], plan.ipv4, plan.ipv6, extra={
                "host": {"tap": HOST_TAP, "punt_rate_pps": 20000},
                "bgp": {"table": 254, "protocols": [12]},
                "ipam": {"store": spec, "sync_ms": 100, "release_empty_blocks_s": 1,
                         "bird_include": str(include), "bird_socket": str(bird_sock)},
            })
            d = daemon_factory(plan.name, extra=extra, netns=ns)
            br.adopt(uplink_ifname(tag), ns)
            # the daemon wrote the include file (empty protocols) before BIRD starts
            assert "protocol static fwd_ipam4" in include.read_text()
            bgp = plan.bgp(other)
            bgp.blocks4, bgp.blocks6, bgp.include = [], [], str(include)
            bird = bird_factory(ns, plan.name, bgp.render())
            nodes.append(types.SimpleNamespace(plan=plan, ns=ns, d=d, bgp=bgp, bird=bird,
                                               include=include))
        for n in nodes:
            for proto in n.bgp.protocols():
                n.bird.wait_established(proto, 30)
        yield etcd, spec, nodes
    finally:
        for n in nodes:
            n.bird.stop()
        etcd.stop()


def test_ipam_blocks_are_advertised_and_routed(ipam_nodes, netns_factory):
    etcd, spec, (n1, n2) = ipam_nodes
    t0 = time.monotonic()
    got = {"node1": allocate(etcd, spec, "node1", "n1pod", 3),
           "node2": allocate(etcd, spec, "node2", "n2pod", 3)}
    blocks = {name: {block_of(a[0][1], True), block_of(a[0][2], False)} for name, a in got.items()}
    for name, a in got.items():
        for _, a4, a6 in a:
            assert ipaddress.ip_address(a4) in POOL4 and ipaddress.ip_address(a6) in POOL6
            # three allocations fit in one block per family
            assert {block_of(a4, True), block_of(a6, False)} == blocks[name]
    assert not blocks["node1"] & blocks["node2"], blocks

    # each node: its blocks as ipam blackholes in its own dataplane, the other's via BGP
    def converged():
        for n, other in ((n1, n2), (n2, n1)):
            mine = routes_of(n.d, "ipam")
            if set(mine) != blocks[n.plan.name] or any(r["kind"] != "blackhole" for r in mine.values()):
                return False
            learned = routes_of(n.d, "bgp")
            for b in blocks[other.plan.name]:
                via = other.plan.addr4 if ":" not in b else other.plan.addr6
                if b not in learned or via not in learned[b].get("via", []):
                    return False
        return True
    try:
        took = wait_until(converged, 20, interval=0.05, what="IPAM blocks in both dataplanes")
    except AssertionError as e:
        raise AssertionError(f"{e}\n" + "\n".join(
            f"{n.plan.name}: node {json.dumps(n.d.ctl('node')['ipam'])}\n"
            f"routes {json.dumps(n.d.ctl('route', 'list'))}\ninclude:\n{n.include.read_text()}\n"
            f"bird: {n.bird.show_route()}" for n in (n1, n2)))
    since_alloc = time.monotonic() - t0
    for n in (n1, n2):
        st = n.d.ctl("node")["ipam"]
        assert st["ok"] and st["blocks"] == 2 and st["bird_reloads"] >= 1, st
        inc = n.include.read_text()
        for b in blocks[n.plan.name]:
            assert f"route {b} blackhole;" in inc, inc
        # BIRD took the file: the routes are in its fwd_ipam protocols
        shown = n.bird.show_route("protocol", "fwd_ipam4") + n.bird.show_route("protocol", "fwd_ipam6")
        for b in blocks[n.plan.name]:
            assert b in shown, shown

    # pods with the allocated addresses talk across the nodes, both families
    pods = {}
    for n in (n1, n2):
        _, a4, a6 = got[n.plan.name][0]
        pod = netns_factory(f"ip{n.plan.name[-1]}")
        n.d.add_pod(pod, ipv4=a4, ipv6=a6)
        pods[n.plan.name] = (pod, a4, a6)
    p1, p2 = pods["node1"], pods["node2"]
    for src, dst in ((p1, p2), (p2, p1)):
        src[0].run(f"ping -4 -c 2 -W 2 {dst[1]}", timeout=20)
        src[0].run(f"ping -6 -c 2 -W 2 {dst[2]}", timeout=20)
    # an allocated address without a pod on node2: node2's ipam blackhole drops it
    _, idle4, _ = got["node2"][1]
    bh0 = n2.d.stats()["drops"]["route_blackhole"]
    r = p1[0].run(f"ping -4 -c 1 -W 1 {idle4}", check=False, timeout=20)
    assert r.returncode != 0
    wait_until(lambda: n2.d.stats()["drops"]["route_blackhole"] > bh0, 5,
               what="node2 to drop traffic for its unused address by its block's blackhole")

    # node1 gives its addresses back: its blocks go after the 1 s grace period and
    # node2 stops routing them
    n1.d.ctl("endpoint", "del", "--id", pods["node1"][0].name)
    t1 = time.monotonic()
    for h, _, _ in got["node1"]:
        r = etcd.run([FWDCTL, "ipam", "release", "--store", spec, "--handle", h])
        assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: not set(routes_of(n2.d, "bgp")) & blocks["node1"]
               and not routes_of(n1.d, "ipam"), 20, interval=0.05,
               what="node1's released blocks withdrawn everywhere")
    withdrawn = time.monotonic() - t1
    assert "route " not in n1.include.read_text()
    # node2's block and allocations are untouched, and the store is consistent
    assert set(routes_of(n2.d, "ipam")) == blocks["node2"]
    r = etcd.run([FWDCTL, "ipam", "check", "--store", spec])
    assert r.returncode == 0, r.stdout + r.stderr
    record_results("ipam_bgp", {"alloc_to_routed_s": round(since_alloc, 2),
                                "converge_after_alloc_s": round(took, 2),
                                "release_to_withdrawn_s": round(withdrawn, 2),
                                "sync_ms": 100, "release_empty_blocks_s": 1})


def test_ipam_store_down_daemon_keeps_running(daemon_factory, tmpdir_short):
    """An unreachable store is an error the daemon reports and retries, not a crash; BIRD
    still gets a well-formed (empty) include file to start with."""
    include = pathlib.Path(tmpdir_short) / "down.ipam.conf"
    d = daemon_factory("ipdown", extra={"ipam": {"store": "etcd:http://127.0.0.1:1",
                                                 "sync_ms": 50, "bird_include": str(include)}})
    wait_until(lambda: d.ctl("node")["ipam"]["errors"] >= 3, 20, interval=0.1,
               what="the IPAM sync to report the unreachable store, round after round")
    st = d.ctl("node")["ipam"]
    assert not st["ok"] and "127.0.0.1:1" in st["last_error"], st
    assert "protocol static fwd_ipam4" in include.read_text()
    assert "route " not in include.read_text()
    assert d.ctl("version")["version"]
    r = subprocess.run([str(FWDCTL), "-s", d.sock, "node"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "ERROR" in r.stdout and "127.0.0.1:1" in r.stdout, r.stdout
