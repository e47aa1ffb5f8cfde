"""The VXLAN scenarios: dpdk-fwd encapsulating (a local pod to a remote node's pod) and
decapsulating (a remote node's pod to a local pod), IPv4 and IPv6, the overlay set up the
way a cluster sets it up (README "Overlay"), not as static routes:

- **The store.** An embedded IPAM store in the scratch folder, filled before the daemon
  starts: the pools (VXLAN Always: 192.168.0.0/16 in /26 blocks, fd00:10:244::/48 in /122
  blocks) with `fwdctl apply -f`; the remote nodes' blocks (the Calico table's, 1022 per
  family over 16 nodes) claimed with `ipam_load --claim`; this node's ("perf") two blocks
  per family and its 110 pods per family with `ipam_load --claim --ip`; the 16 remote
  nodes' registry records (Calico `Node`, addresses in this node's subnets, VTEP MACs
  derived from their names) with `fwdctl apply -f`. Built once per harness run, shared by
  the four scenarios; the daemon adds its own record and tunnel addresses.
- **The daemon.** node_name "perf", an `ipam` section on that store (its sync installs this
  node's blocks as blackholes, the overlay module every remote block as a VXLAN route),
  the local pods as the static /32 and /128 routes the route scenarios use (via the pod,
  its MAC pinned: everything leaves by the one pcap port) and the default routes. Before
  a window counts, `fwdctl route list --source overlay` must show every remote block of
  the scenario's family as kind vxlan (anything else fails the scenario), `fwdctl node`
  the VTEP MAC the decap frames are addressed to, and for encap `fwdctl neighbor list`
  every remote node's underlay MAC.
- **The underlay neighbours.** The outer packets go to the remote nodes' addresses, which
  dpdk-fwd resolves with ARP / Neighbor Discovery: nothing pins a neighbour's MAC (a
  static route's `mac` pins that route's next hop only; the overlay takes its underlay
  from the neighbour table). With nobody behind the pcap port to answer, the encap
  packet sets carry the answers: one ARP reply (IPv4) or solicited Neighbor Advertisement
  (IPv6) per remote node, spread over the set, so 16 packets of each pass are punted to
  the control thread instead of forwarded (0.4%, rate limited per worker).
- **The packets.** Encap: 64 B frames (66 B for IPv6, its minimum with UDP) from local
  pods to hosts in the remote blocks, all 16 nodes, leaving with outer headers (VXLAN
  adds 50 B over IPv4, 70 B over IPv6). Decap: VXLAN frames from the remote nodes'
  addresses to this node's, UDP 4789 (checksum filled in, as dpdk-fwd and Linux send
  them), VNI 4096 with the I flag, the inner destination MAC this node's VTEP MAC, inner
  64 B (IPv6: 62 B + FCS = 66 B) frames from hosts in the sender's blocks to local pods;
  they leave decapsulated.
- **The comparison.** l3fwd does not run VXLAN: each VXLAN row's ratio divides by l3fwd
  LPM's figure on ipv4-64 (and, for IPv6, FIB's on ipv6-min) measured in the same run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import random
import shutil
import time
from pathlib import Path
from typing import Optional

from . import common
from .common import Ctx, Route, Scenario, Table, Unavailable

DUT_NODE = "perf"                 # the daemon's node_name
VNI = 4096                        # overlay.vni (the default)
VXLAN_PORT = 4789
POOLS = {4: ("perf-ipv4", "192.168.0.0/16", 26), 6: ("perf-ipv6", "fd00:10:244::/48", 122)}
OVERHEAD = {4: 14 + 20 + 8 + 8, 6: 14 + 40 + 8 + 8}   # outer Ethernet + IP + UDP + VXLAN
STORE_VERSION = 1                 # bump when the store's layout changes
SYNC_MS = 100                     # ipam.sync_ms: the overlay follows the store within it
MAX_FWD_DROP = 0.01               # drops allowed in a window (the ARP replies punted over
                                  # the rate limit are the expected ones)


def remote_node(i: int) -> str:
    return f"node{i}"


def node_ip(family: int, i: int) -> str:
    """Remote node i's address, in this node's subnet (the table's next hop of its blocks)."""
    return f"10.10.10.{11 + i}" if family == 4 else f"fd00:10:10::{0x11 + i:x}"


def derived_vtep_mac(node: str, family: int) -> str:
    """Calico's VTEP MAC for a node without one configured (ipam::derived_vtep_mac): 0x66,
    then the first five bytes of SHA-1 of the name (of "<name>-v6" for IPv6)."""
    digest = hashlib.sha1((node if family == 4 else node + "-v6").encode()).digest()
    return ":".join(f"{b:02x}" for b in b"\x66" + digest[:5])


def _host(rnd: random.Random, block) -> str:
    """A random address of an ipaddress network."""
    return str(block.network_address + rnd.randrange(block.num_addresses))


@dataclasses.dataclass
class Layout:
    """One family of the cluster, from the Calico table the route scenarios use (same
    blocks, same pods, same remote nodes)."""
    family: int
    local_blocks: list[str]
    pods: list[tuple[str, str]]                  # (address, MAC)
    remote_blocks: dict[int, list[str]]          # remote node index -> its blocks
    default: Route

    @classmethod
    def of(cls, family: int, seed: int) -> "Layout":
        t = common.calico_table(family, 0, seed)
        index = {node_ip(family, i): i for i in range(t.remote_nodes)}
        remote: dict[int, list[str]] = {i: [] for i in range(t.remote_nodes)}
        local, pods, default = [], [], None
        for r in t.routes:
            if r.kind == "remote":
                remote[index[r.via]].append(r.prefix)
            elif r.kind == "local-block":
                local.append(r.prefix)
            elif r.kind == "pod":
                pods.append((r.via, r.mac))
            elif r.kind == "default":
                default = r
        return cls(family, local, pods, remote, default)

    def remote_count(self) -> int:
        return sum(len(b) for b in self.remote_blocks.values())


class VxlanTable(Table):
    def describe(self) -> str:
        fam = self.family
        bl, pl = ("/26", "/32") if fam == 4 else ("/122", "/128")
        return (f"{self.count('remote')} remote {bl} blocks of {self.remote_nodes} nodes as "
                f"VXLAN routes (source overlay, from the IPAM store), {self.count('local-block')} "
                f"local {bl} blocks (IPAM blackholes) holding {self.count('pod')} {pl} pods "
                f"(static routes, pinned MACs), a default route")


# --- the store ------------------------------------------------------------------------------

def _pools_yaml() -> str:
    return common.pools_yaml(POOLS, "Always")


def _nodes_json(n: int) -> str:
    """The remote nodes' registry records: Calico Node resources (a NodeList)."""
    items = []
    for i in range(n):
        items.append({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                      "metadata": {"name": remote_node(i)},
                      "spec": {"bgp": {"ipv4Address": f"{node_ip(4, i)}/24",
                                       "ipv6Address": f"{node_ip(6, i)}/64"}}})
    return json.dumps({"apiVersion": "projectcalico.org/v3", "kind": "NodeList",
                       "items": items}, indent=1)


def build_store(ctx: Ctx, seed: int, build: Path) -> str:
    """The embedded store of the VXLAN scenarios (built once per scratch folder); returns
    its spec, "embedded:<dir>"."""
    layouts = {fam: Layout.of(fam, seed) for fam in (4, 6)}
    key = json.dumps([STORE_VERSION, seed, {f: dataclasses.asdict(l) for f, l in layouts.items()}])
    d = ctx.scratch / f"overlay-store-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    spec = f"embedded:{d}"
    if (d / "harness-ready").exists():
        return spec
    fwdctl = build / "control" / "fwdctl"
    ipam_load = build / "ipam" / "tools" / "ipam_load"
    for tool in (fwdctl, ipam_load):
        if not tool.is_file():
            raise Unavailable(f"{tool} is missing: build dpdk-fwd first (ninja -C {build})")
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    t0 = time.monotonic()
    (ctx.scratch / "overlay-pools.yaml").write_text(_pools_yaml())
    common.run([str(fwdctl), "apply", "--store", spec, "-f", str(ctx.scratch / "overlay-pools.yaml")])
    n_remote = len(layouts[4].remote_blocks)
    for i in range(n_remote):
        claims = [a for fam in (4, 6) for b in layouts[fam].remote_blocks[i] for a in ("--claim", b)]
        common.run([str(ipam_load), "--store", spec, "--node", remote_node(i), *claims])
    local = [a for fam in (4, 6) for b in layouts[fam].local_blocks for a in ("--claim", b)]
    pods = [a for fam in (4, 6) for ip, _ in layouts[fam].pods for a in ("--ip", ip)]
    common.run([str(ipam_load), "--store", spec, "--node", DUT_NODE, "--handle-prefix",
                f"{DUT_NODE}-pod", *local, *pods])
    (ctx.scratch / "overlay-nodes.json").write_text(_nodes_json(n_remote))
    common.run([str(fwdctl), "apply", "--store", spec, "-f", str(ctx.scratch / "overlay-nodes.json")])
    # what the store holds now, checked
    common.run([str(fwdctl), "ipam", "check", "--store", spec])
    shown = json.loads(common.run([str(fwdctl), "--json", "ipam", "show", "--store", spec]).stdout)
    per_node: dict[str, int] = {}
    for b in shown["blocks"]:
        per_node[b["node"]] = per_node.get(b["node"], 0) + 1
    want = {remote_node(i): sum(len(layouts[f].remote_blocks[i]) for f in (4, 6))
            for i in range(n_remote)}
    want[DUT_NODE] = sum(len(layouts[f].local_blocks) for f in (4, 6))
    if per_node != want:
        raise Unavailable(f"the overlay store's blocks per node are {per_node}, not {want}")
    (d / "harness-ready").write_text("")
    ctx.log(f"VXLAN: IPAM store {d} filled in {time.monotonic() - t0:.1f} s "
            f"({sum(want.values())} blocks of {len(want)} nodes, "
            f"{sum(len(layouts[f].pods) for f in (4, 6))} pods, {n_remote} node records)")
    return spec


# --- the scenario ---------------------------------------------------------------------------

@dataclasses.dataclass
class VxlanScenario(Scenario):
    direction: str = "encap"       # "encap": pod -> remote pod; "decap": remote pod -> pod

    def __post_init__(self):
        if self.direction not in ("encap", "decap"):
            raise ValueError(f"{self.name}: direction {self.direction!r}")
        self.references = ("dpdk-fwd", "testpmd-io")
        self.baselines = {"l3fwd-lpm": "ipv4-64",
                          "l3fwd-fib": "ipv4-64" if self.family == 4 else "ipv6-min"}
        self.profiles = False
        self.max_fwd_drop = MAX_FWD_DROP

    # -- what the report says --------------------------------------------------------------
    def inner_wire(self) -> int:
        return self.sizes[0][0]

    def mean_wire_bytes(self) -> float:
        """What dpdk-fwd sends: the outer frames (encap) or the inner ones (decap)."""
        return self.inner_wire() + (OVERHEAD[self.family] if self.direction == "encap" else 0)

    def wire_bytes(self, key: str) -> float:
        """dpdk-fwd adds or takes off the outer headers; testpmd io sends what it got."""
        if key == "dpdk-fwd":
            return self.mean_wire_bytes()
        return self.inner_wire() + (OVERHEAD[self.family] if self.direction == "decap" else 0)

    def not_run(self, key: str) -> Optional[str]:
        if key in self.baselines:
            return "does not run VXLAN"
        if key not in self.references:
            return "not set up for VXLAN in this harness (routes only)"
        return None

    def traffic(self) -> str:
        fam = "IPv4" if self.family == 4 else "IPv6"
        n = common.REMOTE_NODES
        if self.direction == "encap":
            return (f"{self.packets} packets, one flow each, from local pods to hosts in the "
                    f"remote blocks of all {n} nodes, {self.inner_wire()} B on the wire; they "
                    f"leave VXLAN-encapsulated (outer {fam}, {self.mean_wire_bytes():.0f} B). "
                    f"Plus one {'ARP reply' if self.family == 4 else 'Neighbor Advertisement'} "
                    f"per remote node per pass ({n} punted packets: nothing pins an underlay "
                    f"neighbour's MAC, and nobody answers on the pcap port)")
        return (f"{self.packets} VXLAN packets (outer {fam} from the {n} remote nodes to this "
                f"node, UDP {VXLAN_PORT}, VNI {VNI}, "
                f"{self.inner_wire() + OVERHEAD[self.family]} B on the wire), one flow each, "
                f"inner frames from hosts in the remote blocks to local pods; they leave "
                f"decapsulated ({self.inner_wire()} B)")

    def targets(self) -> Optional[list[tuple[str, float, str]]]:
        return [("l3fwd-lpm", 0.6, f"VXLAN {self.direction} at least 0.6x l3fwd LPM, "
                                   f"issue 14")]

    # -- the table and the packets ---------------------------------------------------------
    def layout(self) -> Layout:
        return Layout.of(self.family, self.seed)

    def table(self) -> Table:
        t = common.calico_table(self.family, 0, self.seed)
        return VxlanTable(t.family, t.routes, self._flows()[1], t.remote_nodes)

    def _flows(self) -> tuple[list[tuple[int, str, str]], list[str]]:
        """(remote node, source, destination) of each packet, and the destinations."""
        lay = self.layout()
        rnd = random.Random(self.seed * 100 + self.family * 10 + (self.direction == "decap"))
        blocks = [(i, ipaddress.ip_network(b)) for i, bs in lay.remote_blocks.items() for b in bs]
        flows = []
        for _ in range(self.packets):
            i, blk = rnd.choice(blocks)
            pod = rnd.choice(lay.pods)[0]
            remote = _host(rnd, blk)
            flows.append((i, pod, remote) if self.direction == "encap" else (i, remote, pod))
        return flows, [dst for _, _, dst in flows]

    def build_pcap(self, scratch: Path) -> Path:
        from scapy.all import (ARP, Ether, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IP, IPv6, Padding,
                               Raw, UDP, wrpcap)  # slow import: only here
        from scapy.layers.vxlan import VXLAN
        key = json.dumps([common.PCAP_VERSION, STORE_VERSION, self.family, self.direction,
                          self.sizes, self.packets, self.seed])
        path = scratch / f"{self.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pcap"
        if path.exists():
            return path
        v4 = self.family == 4
        ip_hdr = 20 if v4 else 40
        node4 = common.NODE4.split("/")[0]
        node6 = common.NODE6.split("/")[0]

        def inner(k: int, src: str, dst: str, eth: Ether) -> Ether:
            l3 = IP(src=src, dst=dst, ttl=64) if v4 else IPv6(src=src, dst=dst, hlim=64)
            pad = max(0, self.inner_wire() - 4 - (14 + ip_hdr + 8))
            return eth / l3 / UDP(sport=1024 + k % 50000, dport=5201) / Raw(b"\x00" * pad)

        pkts = []
        flows, _ = self._flows()
        for k, (i, src, dst) in enumerate(flows):
            if self.direction == "encap":
                pkts.append(inner(k, src, dst, Ether(src=common.SRC_MAC, dst=common.DUT_MAC)))
                continue
            frame = inner(k, src, dst, Ether(src=derived_vtep_mac(remote_node(i), self.family),
                                             dst=derived_vtep_mac(DUT_NODE, self.family)))
            outer_ip = (IP(src=node_ip(4, i), dst=node4, ttl=64, id=k & 0xFFFF) if v4
                        else IPv6(src=node_ip(6, i), dst=node6, hlim=64))
            sport = 49152 + (k * 2654435761 >> 8) % 16384   # a spread like the flow hash's
            pkts.append(Ether(src=common.node_mac(i), dst=common.DUT_MAC) / outer_ip
                        / UDP(sport=sport, dport=VXLAN_PORT) / VXLAN(vni=VNI, flags=0x08) / frame)
        if self.direction == "encap":
            # the underlay neighbours' answers, spread over the set
            step = len(pkts) // common.REMOTE_NODES
            for i in reversed(range(common.REMOTE_NODES)):
                mac = common.node_mac(i)
                if v4:
                    ans = (Ether(src=mac, dst=common.DUT_MAC)
                           / ARP(op=2, hwsrc=mac, psrc=node_ip(4, i), hwdst=common.DUT_MAC,
                                 pdst=node4))
                    ans = ans / Padding(b"\x00" * (60 - len(ans)))
                else:
                    ans = (Ether(src=mac, dst=common.DUT_MAC)
                           / IPv6(src=node_ip(6, i), dst=node6, hlim=255)
                           / ICMPv6ND_NA(tgt=node_ip(6, i), R=0, S=1, O=1)
                           / ICMPv6NDOptDstLLAddr(lladdr=mac))
                pkts.insert(i * step, ans)
        tmp = path.with_suffix(".tmp")
        wrpcap(str(tmp), pkts)
        tmp.rename(path)
        return path

    # -- dpdk-fwd ----------------------------------------------------------------------------
    def dpdkfwd_config(self, ctx: Ctx, cfg: dict, fwd) -> None:
        spec = build_store(ctx, self.seed, ctx.build)
        routes = []
        for fam in (4, 6):
            lay = Layout.of(fam, self.seed)
            plen = 32 if fam == 4 else 128
            routes += [{"prefix": f"{ip}/{plen}", "via": ip, "mac": mac} for ip, mac in lay.pods]
            routes.append({"prefix": lay.default.prefix, "via": lay.default.via,
                           "mac": lay.default.mac})
        cfg["node_name"] = DUT_NODE
        cfg["routes"] = routes
        cfg["ipam"] = {"store": spec, "sync_ms": SYNC_MS}
        cfg["overlay"] = {"vni": VNI}

    def dpdkfwd_ready(self, ctx: Ctx, fwd, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            missing = self._not_ready(fwd)
            if not missing:
                return
            if time.monotonic() > end:
                raise Unavailable(f"after {timeout:.0f} s: " + "; ".join(missing))
            time.sleep(0.2)

    def _not_ready(self, fwd) -> list[str]:
        """What is not yet as the scenario needs it; raises Unavailable for what waiting
        cannot mend (a remote block routed other than by VXLAN, another VTEP MAC)."""
        fam = "ipv4" if self.family == 4 else "ipv6"
        lay = self.layout()
        want = {ipaddress.ip_network(b): remote_node(i)
                for i, bs in lay.remote_blocks.items() for b in bs}
        got = fwd.fwdctl_json("route", "list", "--source", "overlay", "--family", fam)["routes"]
        wrong = [r for r in got if r.get("kind") != "vxlan" or not r.get("active")]
        if wrong:
            raise Unavailable(f"{len(wrong)} of the {len(got)} overlay routes are not active "
                              f"vxlan routes, e.g. {wrong[:3]}")
        missing = []
        routed = {ipaddress.ip_network(r["prefix"]): r.get("node", "").split(" ")[0] for r in got}
        if routed != want:
            absent = [str(p) for p in want if p not in routed]
            other = [f"{p} to {routed[p]}" for p in want if p in routed and routed[p] != want[p]]
            extra = [str(p) for p in routed if p not in want]
            if other or extra:
                raise Unavailable(f"overlay routes to the wrong node: {other[:3]}, "
                                  f"not in the store: {extra[:3]}")
            missing.append(f"{len(absent)} of the {len(want)} remote {fam} blocks have no "
                           f"overlay route yet (e.g. {absent[:2]})")
        overlay = fwd.fwdctl_json("node").get("overlay") or {}
        mac = overlay.get(f"vtep_mac{self.family}")
        if mac is None:
            missing.append(f"the overlay shows no {fam} VTEP MAC yet ({overlay})")
        elif mac != derived_vtep_mac(DUT_NODE, self.family):
            raise Unavailable(f"the node's {fam} VTEP MAC is {mac}, the packet set's "
                              f"{derived_vtep_mac(DUT_NODE, self.family)}")
        if self.direction == "encap":
            neigh = {n["ip"]: n for n in fwd.fwdctl_json("neighbor", "list")["neighbors"]}
            for i in lay.remote_blocks:
                ip = str(ipaddress.ip_address(node_ip(self.family, i)))
                n = neigh.get(ip)
                if n is None or n.get("mac") != common.node_mac(i):
                    missing.append(f"underlay neighbour {ip} of {remote_node(i)}: "
                                   f"{n and n.get('state') or 'absent'}")
        return missing
