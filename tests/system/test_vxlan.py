"""VXLAN without BGP, as a Calico cluster in VXLAN mode runs: two dpdk-fwd nodes share one
real etcd (on the ToR) as their cluster store, register themselves in the node registry, and
route to each other's blocks from the block affinities alone. The ToR is a plain bridge: no
BGP, no route to any pod network.

A third node is Linux configured as Felix configures it (kernel vxlan devices vxlan.calico and
vxlan-v6.calico, VNI 4096, port 4789, the derived VTEP MACs, "via <tunnel address> onlink"
routes, permanent neighbour and FDB entries for the other nodes): Linux's VXLAN is the
reference implementation of the wire format, and pods on both kinds of node talk both ways.

  tor (bridge, etcd 10.0.0.254)
   |-- node1: dpdk-fwd 10.0.0.1/24 fd00::1/64   pods from IPAM
   |-- node2: dpdk-fwd 10.0.0.2/24 fd00::2/64   pods from IPAM
   `-- linux1: Linux 10.0.0.3/24 fd00::3/64     a pod behind a veth, Calico's pod-side setup
"""
import ipaddress
import json
import pathlib
import subprocess
import time
import types

import pytest

from birdconf import NODE1, NODE2
from fwdlab import (FWDCTL, Bridge, Etcd, calico_veth_pod, check_config, felix_vxlan_devices,
                    felix_vxlan_peer, ippools_yaml, record_results, uplink_daemon_config,
                    uplink_ifname, vtep_mac, wait_until)
from fwdlab import ipam_allocate as allocate

XFER = pathlib.Path(__file__).resolve().parent / "tcp_xfer.py"
ETCD_ADDR = "10.0.0.254"
MAC = {"node1": "02:00:00:00:01:01", "node2": "02:00:00:00:02:02"}
POOL4, POOL6 = "10.244.0.0/16", "fd00:244::/48"
PREFIX = "/vxlan-test"
REGISTRY = PREFIX + "/dpdk-fwd/nodes/v1/nodes/"
LINUX = types.SimpleNamespace(name="linux1", ipv4="10.0.0.3/24", ipv6="fd00::3/64",
                              addr4="10.0.0.3", addr6="fd00::3")


def pools_yaml(mode4, mode6):
    return ippools_yaml(POOL4, POOL6, mode4, mode6)


def block_of(addr):
    v4 = ":" not in addr
    return str(ipaddress.ip_network(f"{addr}/{26 if v4 else 122}", strict=False))


def apply_pools(etcd, spec, tmp, mode4, mode6):
    path = f"{tmp}/pools-{mode4}-{mode6}.yaml"
    with open(path, "w") as f:
        f.write(pools_yaml(mode4, mode6))
    r = etcd.run([FWDCTL, "apply", "--store", spec, "-f", path])
    assert r.returncode == 0, r.stdout + r.stderr


def overlay_routes(d):
    return {r["prefix"]: r for r in d.ctl("route", "list", "--source", "overlay")["routes"]}


def vxlan_drops(d):
    drops = d.stats()["drops"]
    return {k: v for k, v in drops.items() if k.startswith(("vxlan_", "ipip_", "encap_")) and v}


class Tcpdump:
    """tcpdump on a port of the ToR's bridge into a pcap; count(filter) reads it back."""

    def __init__(self, ns, ifname, path):
        self.ns, self.path = ns, path
        self.proc = ns.popen(f"tcpdump -i {ifname} -n -U -w {path}")
        # it says so on stderr once it captures
        line = self.proc.stderr.readline()
        assert "listening on" in line, line

    def stop(self):
        # what the kernel still buffers for it is lost at SIGTERM: let it write first
        time.sleep(0.3)
        self.proc.terminate()
        self.proc.communicate(timeout=10)

    def dump(self):
        return subprocess.run(["tcpdump", "-n", "-r", self.path], capture_output=True, text=True,
                              timeout=30).stdout

    def count(self, flt):
        r = subprocess.run(["tcpdump", "-n", "-r", self.path, flt], capture_output=True,
                           text=True, timeout=30)
        return len([x for x in r.stdout.splitlines() if x.strip()])


@pytest.fixture
def cluster(tmpdir_short, netns_factory, daemon_factory):
    tor = netns_factory("vtor")
    br = Bridge(tor)
    tor.run(f"ip addr add {ETCD_ADDR}/24 dev {br.name}")
    etcd = Etcd(tmpdir_short, ns=tor, host=ETCD_ADDR).start()
    spec = etcd.spec(PREFIX)
    try:
        apply_pools(etcd, spec, tmpdir_short, "Always", "Always")
        nodes = {}
        for plan, core, tag in ((NODE1, 0, "va"), (NODE2, 1, "vb")):
            ns = netns_factory(f"v{plan.name[-1]}")
            extra = uplink_daemon_config(tag, core, MAC[plan.name], plan.ipv4, plan.ipv6, extra={
                "host": {"tap": "fwdhost", "punt_rate_pps": 20000},
                # empty blocks go back after 1 s, so a block release is seen in the test
                "ipam": {"store": spec, "sync_ms": 100, "release_empty_blocks_s": 1},
                # a few blocks: small route tables, so two nodes fit in the hugepages
                # another lab leaves
                "tables": {"ipv4_tbl8s": 1024, "ipv6_tbl8s": 4096},
            })
            d = daemon_factory(plan.name, extra=extra, netns=ns)
            br.adopt(uplink_ifname(tag), ns)
            # port: the uplink's side on the ToR's bridge. Captures go there: a bridge's
            # own device sees only what it floods or is for itself.
            nodes[plan.name] = types.SimpleNamespace(plan=plan, ns=ns, d=d, port=uplink_ifname(tag))

        def registered():
            return all({"node1", "node2"} <= {x["metadata"]["name"] for x in
                                              n.d.ctl("node", "list")["nodes"]} for n in nodes.values())
        wait_until(registered, 30, interval=0.1, what="both nodes in the registry")
        yield types.SimpleNamespace(tor=tor, br=br, etcd=etcd, spec=spec, nodes=nodes,
                                    tmp=tmpdir_short)
    finally:
        etcd.stop()


def node_of(d, name):
    return next(x for x in d.ctl("node", "list")["nodes"] if x["metadata"]["name"] == name)


def pods_on(c, netns_factory, names=("node1", "node2")):
    """A dual-stack pod on each named node, addresses from IPAM; returns {node: (ns, v4, v6)}."""
    pods = {}
    for name in names:
        (a4, a6), = allocate(c.etcd, c.spec, name, f"{name}pod")
        ns = netns_factory(f"vp{name[-1]}")
        c.nodes[name].d.add_pod(ns, ipv4=a4, ipv6=a6)
        pods[name] = (ns, a4, a6)
    return pods


def test_registry_vteps_and_routes_from_affinities(cluster, netns_factory):
    c = cluster
    n1, n2 = c.nodes["node1"].d, c.nodes["node2"].d
    me = node_of(n1, "node1")
    assert me["self"] is True
    spec = me["spec"]
    assert spec["bgp"]["ipv4Address"] == "10.0.0.1/24" and spec["bgp"]["ipv6Address"] == "fd00::1/64"
    assert spec["vxlanTunnelMACAddr"] == vtep_mac("node1", False)
    assert spec["vxlanTunnelMACAddrV6"] == vtep_mac("node1", True)
    # the tunnel addresses come from IPAM (handles vxlan-tunnel-addr-node1, ...)
    t4, t6 = spec["ipv4VXLANTunnelAddr"], spec["ipv6VXLANTunnelAddr"]
    assert ipaddress.ip_address(t4) in ipaddress.ip_network(POOL4)
    assert ipaddress.ip_address(t6) in ipaddress.ip_network(POOL6)
    for handle, addr in (("vxlan-tunnel-addr-node1", t4), ("vxlan-v6-tunnel-addr-node1", t6)):
        show = c.etcd.run([FWDCTL, "ipam", "show", "--store", c.spec, "--json", "--handle", handle])
        assert show.returncode == 0 and addr in show.stdout, show.stdout + show.stderr

    # a block claimed on node2 reaches node1's tables as a VXLAN route to node2's VTEP
    t0 = time.monotonic()
    pods = pods_on(c, netns_factory)
    want = {block_of(a) for a in pods["node2"][1:]}

    def routed():
        r = overlay_routes(n1)
        return all(b in r and r[b]["kind"] == "vxlan" and r[b]["node"].startswith("node2 ")
                   for b in want)
    took = wait_until(routed, 20, interval=0.05, what="node2's blocks as VXLAN routes on node1")
    claim_to_route = time.monotonic() - t0
    r = overlay_routes(n1)
    for b in want:
        assert r[b]["node"] in ("node2 10.0.0.2", "node2 fd00::2"), r[b]
    # fwdctl shows how each route leaves and how each node is reached
    out = subprocess.run([FWDCTL, "-s", n1.sock, "route", "list", "--source", "overlay"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "vxlan" in out and "node node2 10.0.0.2" in out, out
    out = subprocess.run([FWDCTL, "-s", n1.sock, "node", "list"], capture_output=True, text=True,
                         timeout=30).stdout
    assert "node2" in out and "vxlan" in out and "(this node)" in out, out

    # pods talk across the nodes, both families, and the ToR sees only VXLAN between them
    dump = Tcpdump(c.tor, c.nodes["node1"].port, f"{c.tmp}/tor.pcap")
    (p1, a1, b1), (p2, a2, b2) = pods["node1"], pods["node2"]
    for src, dst in ((p1, a2), (p2, a1)):
        src.run(f"ping -4 -c 2 -W 2 {dst}", timeout=20)
    for src, dst in ((p1, b2), (p2, b1)):
        src.run(f"ping -6 -c 2 -W 2 {dst}", timeout=20)
    dump.stop()
    assert dump.count("udp port 4789 and ip") >= 8, "IPv4 pings crossed the ToR in VXLAN"
    assert dump.count("udp port 4789 and ip6") >= 8, "IPv6 pings crossed the ToR in VXLAN"
    assert dump.count(f"icmp and host {a1}") == 0, "no bare pod traffic on the ToR"
    assert dump.count(f"icmp6 and host {b1}") == 0
    assert dump.count("udp port 4789 and ip and ip[6:2] & 0x4000 = 0") >= 8, \
        "outer IPv4 without DF, as Linux's vxlan device sends it"
    assert not vxlan_drops(n1) and not vxlan_drops(n2), (vxlan_drops(n1), vxlan_drops(n2))

    record_results("vxlan_routes", {"claim_to_routed_s": round(claim_to_route, 2),
                                    "converge_s": round(took, 2), "sync_ms": 100})


def test_crosssubnet_routes_natively_in_one_subnet(cluster, netns_factory):
    c = cluster
    n1 = c.nodes["node1"].d
    pods = pods_on(c, netns_factory)
    want = {block_of(a) for a in pods["node2"][1:]}
    wait_until(lambda: all(overlay_routes(n1).get(b, {}).get("kind") == "vxlan" for b in want), 20,
               interval=0.05, what="VXLAN routes")
    # node1 and node2 share 10.0.0.0/24 and fd00::/64: CrossSubnet routes natively
    apply_pools(c.etcd, c.spec, c.tmp, "CrossSubnet", "CrossSubnet")

    back = {block_of(a) for a in pods["node1"][1:]}

    def native():
        r1, r2 = overlay_routes(n1), overlay_routes(c.nodes["node2"].d)
        return (all(r1.get(b, {}).get("kind") == "via" for b in want)
                and all(r2.get(b, {}).get("kind") == "via" for b in back))
    wait_until(native, 20, interval=0.05, what="native routes in one subnet")
    r = overlay_routes(n1)
    assert r[block_of(pods["node2"][1])]["via"] == ["10.0.0.2"]
    assert r[block_of(pods["node2"][2])]["via"] == ["fd00::2"]
    dump = Tcpdump(c.tor, c.nodes["node1"].port, f"{c.tmp}/tor-native.pcap")
    (p1, _, _), (_, a2, b2) = pods["node1"], pods["node2"]
    p1.run(f"ping -4 -c 2 -W 2 {a2}", timeout=20)
    p1.run(f"ping -6 -c 2 -W 2 {b2}", timeout=20)
    dump.stop()
    assert dump.count("udp port 4789") == 0, dump.dump()
    assert dump.count(f"icmp and host {a2}") >= 2, dump.dump()
    assert dump.count(f"icmp6 and host {b2} and ip6[40] = 128") >= 1, dump.dump()  # echo request
    assert dump.count(f"icmp6 and host {b2} and ip6[40] = 129") >= 1, dump.dump()  # and reply


def put_node(c, name, v4, v6):
    """A Node record as calico-node writes it, straight into the store (etcdctl)."""
    record = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name},
              "spec": {"bgp": {"ipv4Address": v4, "ipv6Address": v6},
                       "vxlanTunnelMACAddr": vtep_mac(name, False),
                       "vxlanTunnelMACAddrV6": vtep_mac(name, True)}}
    etcdctl(c, "put", REGISTRY + name, json.dumps(record))


def etcdctl(c, *args):
    r = c.etcd.run(["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", c.etcd.url, *args])
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def routes_to(d, blocks):
    """{block: "<kind> <node> <address>"} of the overlay routes to those blocks on d."""
    r = overlay_routes(d)
    return {b: f"{r[b]['kind']} {r[b].get('node', '')}" if b in r else None for b in blocks}


def test_nodes_join_move_conflict_leave_and_blocks_go(cluster, netns_factory):
    """What changes in the cluster reaches both nodes' tables without a restart: a node joins
    (its record appears after its block), moves (new addresses), conflicts with another
    record (both left out, the rest keep their routes), leaves (its record goes); a block
    claimed by a real node is released when it empties (ipam.release_empty_blocks_s)."""
    c = cluster
    n1, n2 = c.nodes["node1"].d, c.nodes["node2"].d
    both = (n1, n2)

    def settle(blocks, want, what):
        wait_until(lambda: all(routes_to(d, blocks) == want for d in both), 20, interval=0.05,
                   what=what)

    # node3 has a block before it has a record: nobody routes it, both nodes say why
    (a4, a6), = allocate(c.etcd, c.spec, "node3", "node3pod")
    blocks = (block_of(a4), block_of(a6))
    wait_until(lambda: all(any(f"of node 'node3': the node is not in the node registry" in p
                               for p in d.ctl("node")["overlay"]["problems"]) for d in both),
               20, interval=0.05, what="node3's block named as unroutable")
    assert routes_to(n1, blocks) == {blocks[0]: None, blocks[1]: None}
    # join
    put_node(c, "node3", "10.0.0.3/24", "fd00::3/64")
    settle(blocks, {blocks[0]: "vxlan node3 10.0.0.3", blocks[1]: "vxlan node3 fd00::3"},
           "node3's blocks as VXLAN routes on both nodes")
    tunnels = n1.ctl("node")["overlay"]["tunnels"]
    # its addresses change: the routes follow, the old tunnels go
    put_node(c, "node3", "10.0.0.13/24", "fd00::13/64")
    settle(blocks, {blocks[0]: "vxlan node3 10.0.0.13", blocks[1]: "vxlan node3 fd00::13"},
           "node3's new addresses on both nodes")
    wait_until(lambda: n1.ctl("node")["overlay"]["tunnels"] == tunnels, 10, interval=0.05,
               what="node3's old tunnels retired")
    # node4 claims node3's IPv4 address: neither record is used, each error names the other;
    # node2 keeps its routes on node1
    def node2_blocks_on_n1():
        return [b for b, r in overlay_routes(n1).items() if r.get("node", "").startswith("node2 ")]
    wait_until(lambda: len(node2_blocks_on_n1()) == 2, 20, interval=0.05,
               what="node2's two blocks (its tunnel addresses') on node1")
    node2_blocks = node2_blocks_on_n1()
    put_node(c, "node4", "10.0.0.13/24", "fd00::14/64")

    def refused():
        got = {x["key"].rsplit("/", 1)[1]: x["error"] for x in n1.ctl("node", "list")["refused"]}
        return (set(got) == {"node3", "node4"} and "is also held by node 'node4'" in got["node3"]
                and "is also held by node 'node3'" in got["node4"])
    wait_until(refused, 20, interval=0.05, what="node3 and node4 refused, each naming the other")
    settle(blocks, {blocks[0]: None, blocks[1]: None}, "node3's routes withdrawn")
    assert all(overlay_routes(n1)[b]["node"].startswith("node2 ") for b in node2_blocks)
    names = {x["metadata"]["name"] for x in n1.ctl("node", "list")["nodes"]}
    assert names == {"node1", "node2"}, names
    # the conflict resolved: node3 is back
    etcdctl(c, "del", REGISTRY + "node4")
    settle(blocks, {blocks[0]: "vxlan node3 10.0.0.13", blocks[1]: "vxlan node3 fd00::13"},
           "node3 back after the conflict")
    # leave
    etcdctl(c, "del", REGISTRY + "node3")
    settle(blocks, {blocks[0]: None, blocks[1]: None}, "node3's routes gone on both nodes")
    wait_until(lambda: n1.ctl("node")["overlay"]["tunnels"] == tunnels - 2, 10, interval=0.05,
               what="node3's tunnels retired")

    # block release: node2 fills its first blocks (with its tunnel addresses) and claims a
    # second of each family; when those empty, node2 gives them back and node1 forgets them
    got = allocate(c.etcd, c.spec, "node2", "fill", count=64)
    second = {block_of(a) for pair in got for a in pair} - set(node2_blocks)
    assert len(second) == 2, (second, node2_blocks)
    wait_until(lambda: all(overlay_routes(n1).get(b, {}).get("kind") == "vxlan" for b in second),
               20, interval=0.05, what="node2's second blocks on node1")
    in_second = [i for i, pair in enumerate(got) if any(block_of(a) in second for a in pair)]
    for i in in_second:
        r = c.etcd.run([FWDCTL, "ipam", "release", "--store", c.spec, "--handle", f"fill-{i}"])
        assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: not second & set(overlay_routes(n1)), 20, interval=0.1,
               what="node2's emptied blocks released and gone from node1")
    assert all(b in overlay_routes(n1) for b in node2_blocks), "node2's first blocks stay"
    assert n2.ctl("node")["ipam"]["blocks_released"] >= 2


def linux_node(c, netns_factory):
    """linux1: a Linux node as Felix configures one in VXLAN mode, registered in the store like
    calico-node registers its Node, with a block and a pod of its own."""
    ns = netns_factory("vlin")
    c.br.plug_veth(ns, f"{ns.name[-6:]}p", "eth0")
    ns.run("ip link set eth0 up")
    ns.run(f"ip addr add {LINUX.ipv4} dev eth0")
    ns.run(f"ip addr add {LINUX.ipv6} dev eth0 nodad")
    # a default route, as every node has: proxy ARP answers the pod for 169.254.1.1 only
    # when the host routes that address out of another interface than the pod's
    ns.run(f"ip route add default via {ETCD_ADDR}")
    felix_vxlan_devices(ns, LINUX.name, LINUX.addr4, LINUX.addr6, 1430, 1430)
    mac4, mac6 = vtep_mac(LINUX.name, False), vtep_mac(LINUX.name, True)
    # its Node record, as calico-node writes it (no tunnel address: pod traffic needs none)
    record = {"apiVersion": "projectcalico.org/v3", "kind": "Node",
              "metadata": {"name": LINUX.name},
              "spec": {"bgp": {"ipv4Address": LINUX.ipv4, "ipv6Address": LINUX.ipv6},
                       "vxlanTunnelMACAddr": mac4, "vxlanTunnelMACAddrV6": mac6}}
    r = c.etcd.run(["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", c.etcd.url, "put",
                    REGISTRY + LINUX.name, json.dumps(record)])
    assert r.returncode == 0, r.stdout + r.stderr
    # a block and a pod: Calico's pod side (eth0 /32, gateway 169.254.1.1 / fe80::ecee:...)
    # and host side (proxy ARP / NDP proxy, the pod's /32 and /128 on the veth)
    (a4, a6), = allocate(c.etcd, c.spec, LINUX.name, "linuxpod")
    pod = netns_factory("vlpod")
    calico_veth_pod(ns, pod, "calilin0", a4, a6)
    return types.SimpleNamespace(ns=ns, pod=pod, a4=a4, a6=a6)


def program_linux_routes(lin, c, node):
    """What Felix writes on linux1 for a dpdk-fwd node: routes to its blocks via its tunnel
    address onlink, a permanent neighbour for that address with its VTEP MAC, an FDB entry
    sending that MAC to its node address."""
    d = c.nodes[node].d
    me = node_of(d, node)
    spec = me["spec"]
    blocks = [p for p, r in overlay_routes(c.nodes["node1" if node == "node2" else "node2"].d).items()
              if r.get("node", "").startswith(node + " ")]
    mine = {r["prefix"] for r in d.ctl("route", "list", "--source", "ipam")["routes"]}
    plan = c.nodes[node].plan
    for v6, tun, mac, addr in (
            (False, spec["ipv4VXLANTunnelAddr"], spec["vxlanTunnelMACAddr"], plan.ipv4.split("/")[0]),
            (True, spec["ipv6VXLANTunnelAddr"], spec["vxlanTunnelMACAddrV6"],
             plan.ipv6.split("/")[0])):
        felix_vxlan_peer(lin.ns, v6, tun, mac, addr,
                         [b for b in sorted(mine | set(blocks)) if (":" in b) == v6])


def test_linux_calico_node_interop(cluster, netns_factory):
    c = cluster
    n1 = c.nodes["node1"].d
    pods = pods_on(c, netns_factory, names=("node1",))
    lin = linux_node(c, netns_factory)
    want = {block_of(lin.a4), block_of(lin.a6)}

    def routed():
        r = overlay_routes(n1)
        return all(r.get(b, {}).get("kind") == "vxlan" and r[b]["node"].startswith("linux1 ")
                   for b in want)
    wait_until(routed, 20, interval=0.05, what="linux1's blocks as VXLAN routes on node1")
    wait_until(lambda: any(":" not in p for p in
                           (x["prefix"] for x in n1.ctl("route", "list", "--source", "ipam")["routes"])),
               20, interval=0.05, what="node1's own block")
    program_linux_routes(lin, c, "node1")
    p1, a1, b1 = pods["node1"]
    dump = Tcpdump(c.tor, c.nodes["node1"].port, f"{c.tmp}/tor-linux.pcap")
    p1.run(f"ping -4 -c 3 -W 2 {lin.a4}", timeout=20)
    lin.pod.run(f"ping -4 -c 3 -W 2 {a1}", timeout=20)
    p1.run(f"ping -6 -c 3 -W 2 {lin.a6}", timeout=20)
    lin.pod.run(f"ping -6 -c 3 -W 2 {b1}", timeout=20)
    # TCP with a content check, each way and each family
    for src, dst_ns, dst in ((p1, lin.pod, lin.a4), (lin.pod, p1, a1),
                             (p1, lin.pod, lin.a6), (lin.pod, p1, b1)):
        srv = dst_ns.popen(f"/usr/bin/python3 {XFER} server {dst} 5001")
        assert srv.stdout.readline().strip() == "listening"
        cli = src.run(f"/usr/bin/python3 {XFER} client {dst} 5001 {4 * 1024 * 1024} 3", timeout=120)
        out, err = srv.communicate(timeout=60)
        assert out.split() == cli.stdout.split(), f"{dst}: received {out}, sent {cli.stdout}; {err}"
    dump.stop()
    assert dump.count(f"udp port 4789 and ip and host {LINUX.addr4}") >= 12
    assert dump.count(f"udp port 4789 and ip6 and host {LINUX.addr6}") >= 12
    assert dump.count(f"icmp and host {lin.a4}") == 0
    assert not vxlan_drops(n1), vxlan_drops(n1)


def test_bad_vxlan_from_the_uplink_is_dropped_and_counted(cluster, netns_factory):
    """VXLAN from a box that is no node of the registry (a Linux vxlan device aimed at node1's
    VTEP) never reaches the pod: dropped as vxlan_unknown_peer and counted. The component tests
    (tests/unit/datapath/test_overlay.cpp) have every other reason."""
    c = cluster
    n1 = c.nodes["node1"].d
    pods = pods_on(c, netns_factory, names=("node1",))
    _, a1, _ = pods["node1"]
    rogue = netns_factory("vrog")
    c.br.plug_veth(rogue, f"{rogue.name[-6:]}p", "eth0")
    rogue.run("ip link set eth0 up")
    rogue.run("ip addr add 10.0.0.99/24 dev eth0")
    rogue.run(f"ip link add vxr0 address {vtep_mac('rogue', False)} type vxlan id 4096 "
              "dstport 4789 local 10.0.0.99 dev eth0 nolearning")
    rogue.run("ip link set vxr0 up")
    rogue.run(f"ip route add {a1}/32 dev vxr0 via 10.10.99.1 onlink")
    rogue.run(f"ip neigh replace 10.10.99.1 lladdr {vtep_mac('node1', False)} dev vxr0 nud permanent")
    rogue.run("bridge fdb replace " + vtep_mac('node1', False) + " dev vxr0 dst 10.0.0.1")
    before = n1.stats()["drops"].get("vxlan_unknown_peer", 0)
    pod_rx = pods["node1"][0].run("cat /sys/class/net/eth0/statistics/rx_packets").stdout
    r = rogue.run(f"ping -4 -c 3 -W 1 {a1}", check=False, timeout=20)
    assert r.returncode != 0, r.stdout

    def counted():
        return n1.stats()["drops"].get("vxlan_unknown_peer", 0) >= before + 3
    wait_until(counted, 10, interval=0.1, what="vxlan_unknown_peer on node1")
    assert pods["node1"][0].run("cat /sys/class/net/eth0/statistics/rx_packets").stdout == pod_rx


def apply_felix(c, spec_lines):
    """A FelixConfiguration 'default' with spec_lines, through fwdctl apply into the store."""
    path = f"{c.tmp}/felix-{time.monotonic_ns()}.yaml"
    with open(path, "w") as f:
        f.write("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n"
                f"metadata:\n  name: default\nspec:\n  {spec_lines}\n")
    r = c.etcd.run([FWDCTL, "apply", "--store", c.spec, "-f", path])
    assert r.returncode == 0, r.stdout + r.stderr
    return path


UDP_RECV = ("import socket,sys; fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET; "
            "s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2]))); "
            "print('ready', flush=True); s.settimeout(float(sys.argv[3])); "
            "print(s.recvfrom(100)[0].decode(), flush=True)")
UDP_SEND = ("import socket,sys; fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET; "
            "socket.socket(fam, socket.SOCK_DGRAM).sendto(sys.argv[3].encode(), "
            "(sys.argv[1], int(sys.argv[2])))")


def udp_to_node_kernel(c, sender, node, addr, port, seconds):
    """Sends a few plain UDP datagrams from sender (a box on the ToR, no node) to node's address
    and port; returns what a socket of the node's own kernel (behind its host tap) bound there
    received, or None."""
    rx = c.nodes[node].ns.popen(f"/usr/bin/python3 -c \"{UDP_RECV}\" {addr} {port} {seconds}")
    try:
        assert rx.stdout.readline().strip() == "ready", rx.stderr.read()
        for _ in range(int(seconds * 5)):
            sender.run(f"/usr/bin/python3 -c \"{UDP_SEND}\" {addr} {port} plain-udp-{port}")
            time.sleep(0.2)
            if rx.poll() is not None:
                break
        out, _ = rx.communicate(timeout=seconds + 5)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.communicate()
    got = out.strip()
    return got or None


def test_vxlan_port_changes_at_run_time(cluster, netns_factory):
    """FelixConfiguration vxlanPort (issue 18 item 6) takes effect on both nodes without a
    restart: pods talk over UDP 4790 (seen on the wire), UDP to 4789 is then plain UDP for the
    node's own kernel (the host tap), and back to 4789 when the resource goes."""
    c = cluster
    n1, n2 = c.nodes["node1"].d, c.nodes["node2"].d
    box = netns_factory("vbox")
    c.br.plug_veth(box, f"{box.name[-6:]}p", "eth0")
    box.run("ip link set eth0 up")
    box.run("ip addr add 10.0.0.99/24 dev eth0")
    box.run("ip addr add fd00::99/64 dev eth0 nodad")
    pods = pods_on(c, netns_factory)
    (p1, a1, b1), (p2, a2, b2) = pods["node1"], pods["node2"]
    want1 = {block_of(a) for a in (a2, b2)}
    want2 = {block_of(a) for a in (a1, b1)}
    wait_until(lambda: all(overlay_routes(n1).get(b, {}).get("kind") == "vxlan" for b in want1)
               and all(overlay_routes(n2).get(b, {}).get("kind") == "vxlan" for b in want2),
               20, interval=0.05, what="VXLAN routes both ways")

    def talk(count=2):
        for src, dst in ((p1, a2), (p2, a1)):
            src.run(f"ping -4 -c {count} -W 2 {dst}", timeout=20)
        for src, dst in ((p1, b2), (p2, b1)):
            src.run(f"ping -6 -c {count} -W 2 {dst}", timeout=20)

    def ports():
        return [d.ctl("node")["overlay"]["vxlan_port"] for d in (n1, n2)]

    def all_answer():
        return all(src.run(f"ping -{fam} -c 1 -W 1 {dst}", check=False, timeout=10).returncode == 0
                   for src, dst, fam in ((p1, a2, 4), (p2, a1, 4), (p1, b2, 6), (p2, b1, 6)))

    assert ports() == [4789, 4789]
    talk()
    # 4789 is VXLAN's: plain UDP from a box that is no node to it is dropped
    before = n1.stats()["drops"]
    assert udp_to_node_kernel(c, box, "node1", "10.0.0.1", 4789, 1) is None
    after = n1.stats()["drops"]
    assert sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("vxlan_")) >= 1

    for port, old in ((4790, 4789), (4789, 4790)):
        t0 = time.monotonic()
        if port == 4790:
            felix = apply_felix(c, f"vxlanPort: {port}")
        else:  # the resource deleted: the node config file's port (the default) again
            r = c.etcd.run([FWDCTL, "delete", "--store", c.spec, "-f", felix])
            assert r.returncode == 0, r.stdout + r.stderr
        wait_until(lambda: ports() == [port, port], 10, interval=0.05, what=f"port {port} on both")
        wait_until(all_answer, 20, interval=0.1, what=f"pods answering over UDP {port}")
        print(f"vxlanPort {old} -> {port}: traffic back {time.monotonic() - t0:.2f} s after the "
              "write")
        dump = Tcpdump(c.tor, c.nodes["node1"].port, f"{c.tmp}/tor-port-{port}.pcap")
        talk(3)  # 6 packets each node and family: a loaded machine's capture may miss the last
        dump.stop()
        assert dump.count(f"udp dst port {port} and ip and src host 10.0.0.1") >= 4, dump.dump()
        assert dump.count(f"udp dst port {port} and ip and src host 10.0.0.2") >= 4, dump.dump()
        assert dump.count(f"udp dst port {port} and ip6 and src host fd00::1") >= 4, dump.dump()
        assert dump.count(f"udp dst port {port} and ip6 and src host fd00::2") >= 4, dump.dump()
        assert dump.count(f"udp port {old}") == 0, dump.dump()
        assert dump.count(f"icmp and host {a1}") == 0, "no bare pod traffic on the ToR"
        # the old port is no longer ours: plain UDP to it reaches the node's own kernel
        assert udp_to_node_kernel(c, box, "node1", "10.0.0.1", old, 5) == f"plain-udp-{old}"
        assert udp_to_node_kernel(c, box, "node2", "fd00::2", old, 5) == f"plain-udp-{old}"
        text = subprocess.run([FWDCTL, "-s", n1.sock, "node"], capture_output=True, text=True,
                              timeout=30).stdout
        assert f"port {port}" in text, text
    assert n1.ctl("node")["felix"]["problems"] == [], n1.ctl("node")["felix"]
    assert not vxlan_drops(n2), vxlan_drops(n2)


def test_vxlan_port_in_the_node_config(tmp_path, daemon_factory):
    """overlay.vxlan_port in the node config file: the port when no FelixConfiguration sets one;
    1 to 65535, a bad value refused naming the field."""
    d = daemon_factory("vxp", extra={"overlay": {"vxlan_port": 8472}})
    assert d.ctl("node")["overlay"]["vxlan_port"] == 8472
    for bad in (0, 65536, "4789"):
        r = check_config(tmp_path, "overlay", {"vxlan_port": bad})
        assert r.returncode == 2 and "overlay.vxlan_port" in r.stderr, (bad, r.stderr)
    assert check_config(tmp_path, "overlay", {"vxlan_port": 1}).returncode == 0
