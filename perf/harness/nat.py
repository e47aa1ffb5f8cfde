"""The natOutgoing scenarios (issue 15): source NAT of pod traffic leaving the pools, on
dpdk-fwd's connection table, beside l3fwd, OVS-DPDK with conntrack and Linux masquerade.

- **The node.** dpdk-fwd's config gains an `ipam` section on an embedded store that holds
  only the two pools (192.168.0.0/16 in /26 blocks, fd00:10:244::/48 in /122 blocks, both
  `natOutgoing: true`, no encapsulation; `fwdctl apply -f`, once per harness run) and a
  `conntrack` section with the scenario's capacity. Before a window counts, `fwdctl node`
  must show NAT enabled with both pools (the IPAM sync delivers them within `sync_ms`).
  The routes are the Calico table's static routes (the default route via the gateway
  takes every destination outside the pool).
- **nat4-established / nat6-established** (`NatEstablishedScenario`): 4096 UDP packets,
  each its own flow, from the node's pods (sources in the pool) to addresses outside every
  pool (destinations: the default route), source ports 1024 + i. The set replays
  (`infinite_rx`): its first pass creates the 4096 flows, every later one finds them, so
  after the warm-up every packet is an established natOutgoing flow's: tracked, its
  source rewritten to the node's address (and both checksums), routed. Each window's
  conntrack counters must show no flow created and every packet tracked as `ok` (else the
  scenario fails). Peers on the same packet set: l3fwd LPM and FIB (routing alone: their
  "minus NAT"), testpmd io, OVS-DPDK with conntrack and NAT flows (`ovs_flow_lines`), and
  Linux with conntrack + nftables masquerade (`kernel-masq`).
- **nat4-new / nat6-new** (`NatNewScenario`): every packet a new flow. perf/flowgen.cpp
  sends the flows (sources 55 pods, destinations 2^16 addresses of 198.18.0.0/15 or
  2001:db8:ffff::/64, source ports changing every 2^16 flows: no 5-tuple twice, no two
  reply tuples alike, so every port is kept) on core 0: to dpdk-fwd through a memif (the
  daemon's uplink is the memif server), to Linux through a veth (af_packet). The figure is
  flows created per second: dpdk-fwd's conntrack `created` counter, Linux's conntrack
  `insert` counter (/proc/net/stat/nf_conntrack of the router's namespace), over the
  window; packets in are the uplink's (rtr-in's) RX. Both tables are sized so nothing is
  refused in the window (dpdk-fwd: `capacity`; Linux: nf_conntrack_max and the hash size,
  set for the run and restored after).
- **ct-1m** (`CtMillionScenario`): dpdk-fwd with `conntrack.capacity` 1048576 takes
  1,000,000 new flows from flowgen; then `fwdctl conntrack count` must show them all
  tracked, with the table's memory (`fwdctl tables`: capacity x bytes per flow) and the
  daemon's whole DPDK heap in use (`fwdctl tables`: heap_allocated_bytes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Optional

from . import common
from .common import Ctx, Scenario, Unavailable, Window

POOLS = {4: ("perf-nat-ipv4", "192.168.0.0/16", 26), 6: ("perf-nat-ipv6", "fd00:10:244::/48", 122)}
NODE_ADDR = {4: common.NODE4.split("/")[0], 6: common.NODE6.split("/")[0]}
STORE_VERSION = 1
SYNC_MS = 100
MAX_FWD_DROP = 0.01

# flowgen's flows (nat*-new, ct-1m)
FLOW_DST = {4: "198.18.0.0", 6: "2001:db8:ffff::"}
FLOW_DST_BITS = 16
FLOW_DPORT = 5201
FLOW_FRAME = {4: 60, 6: 62}       # bytes without the FCS: 64 / 66 on the wire


def build_store(ctx: Ctx) -> str:
    """The embedded store of the NAT scenarios (once per scratch folder): the two
    natOutgoing pools, nothing else. Returns "embedded:<dir>"."""
    d = ctx.scratch / f"nat-store-v{STORE_VERSION}"
    spec = f"embedded:{d}"
    if (d / "harness-ready").exists():
        return spec
    fwdctl = ctx.build / "control" / "fwdctl"
    if not fwdctl.is_file():
        raise Unavailable(f"{fwdctl} is missing: build dpdk-fwd first (ninja -C {ctx.build})")
    d.mkdir(parents=True, exist_ok=True)
    pools = ctx.scratch / "nat-pools.yaml"
    pools.write_text(common.pools_yaml(POOLS, "Never"))
    common.run([str(fwdctl), "apply", "--store", spec, "-f", str(pools)])
    (d / "harness-ready").write_text("")
    return spec


def local_pods(table: common.Table) -> list[str]:
    return [r.via for r in table.routes if r.kind == "pod"]


def outside(rnd: random.Random, family: int) -> str:
    """A unicast address in no pool and no special range: the default route's."""
    if family == 4:
        first = rnd.choice([o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192,
                                                                   198)])
        return str(ipaddress.ip_address((first << 24) | rnd.randrange(1 << 24)))
    return str(ipaddress.ip_address((0x2001_0db8 << 96) | rnd.randrange(1 << 96)))


@dataclasses.dataclass
class NatScenario(Scenario):
    """What every NAT scenario does to dpdk-fwd: the pools' store, a conntrack section,
    NAT ready before a window."""
    capacity: int = 262144          # conntrack.capacity
    memory_mb: int = 512            # the daemon's eal.memory_mb

    def __post_init__(self):
        self.profiles = False
        self.max_fwd_drop = MAX_FWD_DROP

    def dpdkfwd_config(self, ctx: Ctx, cfg: dict, fwd) -> None:
        cfg["ipam"] = {"store": build_store(ctx), "sync_ms": SYNC_MS}
        cfg["conntrack"] = {"capacity": self.capacity}
        cfg["eal"]["memory_mb"] = max(cfg["eal"]["memory_mb"], self.memory_mb)

    def dpdkfwd_ready(self, ctx: Ctx, fwd, timeout: float) -> None:
        end = time.monotonic() + timeout
        nat = {}
        while time.monotonic() < end:
            nat = fwd.fwdctl_json("node").get("nat") or {}
            if nat.get("enabled") and len(nat.get("pools", [])) == 2:
                return
            time.sleep(0.1)
        raise Unavailable(f"natOutgoing not ready within {timeout:.0f} s: fwdctl node shows "
                          f"nat {json.dumps(nat)}")


# --- established flows --------------------------------------------------------------------

@dataclasses.dataclass
class NatEstablishedScenario(NatScenario):
    def __post_init__(self):
        super().__post_init__()
        self.references = ("dpdk-fwd", "testpmd-io", "l3fwd-lpm", "l3fwd-fib", "ovs-dpdk",
                           "kernel-masq")

    def traffic(self) -> str:
        fam = "IPv4" if self.family == 4 else "IPv6"
        return (f"{self.packets} {fam} UDP packets, one natOutgoing flow each (set replayed: "
                f"every flow established before the window), from the node's "
                f"{common.LOCAL_PODS} pods to addresses outside every pool (default route), "
                f"source ports 1024 + i; dpdk-fwd and Linux rewrite the source to the node's "
                f"address, OVS-DPDK commits each packet to its conntrack with "
                f"nat(src=node); l3fwd and testpmd only route / echo the same set")

    def targets(self):
        return [("l3fwd-lpm", 0.5, "established natOutgoing at least 0.5x l3fwd LPM, issue 15"),
                ("ovs-dpdk", 3.0, "3x OVS-DPDK with ct + NAT, issue 15")]

    def not_run(self, key: str) -> Optional[str]:
        if key == "kernel":
            return "routing without NAT: see kernel-masq"
        return super().not_run(key)

    def table(self) -> common.Table:
        t = common.calico_table(self.family, 0, self.seed)
        rnd = random.Random(self.seed * 1000 + self.family)
        dests = [outside(rnd, self.family) for _ in range(self.packets)]
        return common.Table(t.family, t.routes, dests, t.remote_nodes)

    # what the packets are, besides the family, sizes, count and seed (the pcap's cache key)
    pcap_tag = "nat-est"

    def packet_macs(self) -> tuple[str, str]:
        """The frames' source and destination MACs."""
        return common.SRC_MAC, common.DUT_MAC

    def packet_sources(self, t: common.Table) -> list[str]:
        """Each packet's source address: one of the node's pods."""
        pods = local_pods(t)
        rnd = random.Random(self.seed)
        return [rnd.choice(pods) for _ in t.destinations]

    def build_pcap(self, scratch: Path) -> Path:
        from scapy.all import Ether, IP, IPv6, UDP, Raw, wrpcap  # slow import: only here
        key = json.dumps([common.PCAP_VERSION, self.pcap_tag, self.family, self.sizes,
                          self.packets, self.seed])
        path = scratch / f"{self.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pcap"
        if path.exists():
            return path
        t = self.table()
        src_mac, dst_mac = self.packet_macs()
        pkts = []
        for i, (src, dst, wire) in enumerate(zip(self.packet_sources(t), t.destinations,
                                                 self.frame_sizes())):
            l2 = Ether(src=src_mac, dst=dst_mac)
            if self.family == 4:
                l3, hdr = IP(src=src, dst=dst, ttl=64), 14 + 20 + 8
            else:
                l3, hdr = IPv6(src=src, dst=dst, hlim=64), 14 + 40 + 8
            pad = max(0, wire - 4 - hdr)
            pkts.append(l2 / l3 / UDP(sport=1024 + i, dport=FLOW_DPORT) / Raw(b"\x00" * pad))
        tmp = path.with_suffix(".tmp")
        wrpcap(str(tmp), pkts)
        tmp.rename(path)
        return path

    def dpdkfwd_window(self, fwd, extra: dict) -> None:
        """Every packet of the window an established flow's: no flow created, all
        tracked."""
        ct = extra.get("conntrack") or {}
        created, ok = ct.get("created", 0), ct.get("ok", 0)
        rx = extra.get("rx_packets", 0)
        if created or ok < 0.99 * rx:
            raise Unavailable(f"the window was not established flows only: conntrack created "
                              f"{created}, ok {ok}, of {rx} packets taken in")

    def ovs_flow_lines(self, table: common.Table) -> tuple[list[str], str]:
        """OVS-DPDK's flows: table 0 sends pool -> outside through ct(commit, nat(src=node))
        (zone 1), replies to the node through ct(nat), then table 1 routes (the route
        scenarios' rules)."""
        from .ovs import flow_lines
        fam = self.family
        ip, src, dst = ("ip", "nw_src", "nw_dst") if fam == 4 else ("ipv6", "ipv6_src", "ipv6_dst")
        pool = POOLS[fam][1]
        node = NODE_ADDR[fam] if fam == 4 else f"[{NODE_ADDR[fam]}]"
        lines = [
            f"table=0,priority=300,{ip},{src}={pool},{dst}={pool},actions=resubmit(,1)",
            f"table=0,priority=200,{ip},{src}={pool},"
            f"actions=ct(commit,zone=1,nat(src={node}),table=1)",
            f"table=0,priority=200,{ip},{dst}={NODE_ADDR[fam]},actions=ct(zone=1,nat,table=1)",
            f"table=0,priority=100,{ip},actions=resubmit(,1)",
        ] + [f"table=1,{line}" for line in flow_lines(table)]
        note = (f"NAT flows: table 0 sends pool ({pool}) -> not pool through "
                f"ct(commit,zone=1,nat(src={node}),table=1) (every packet: OVN's ct_snat), "
                f"replies to the node's address through ct(zone=1,nat,table=1), the rest to "
                f"table 1, which holds the {len(lines) - 4} route rules")
        return lines, note


# --- new flows ----------------------------------------------------------------------------

def flowgen_argv(build: Path, family: int, pods: list[str], prefix: str, vdev: str,
                 count: int = 0) -> list[str]:
    first = pods[0]
    n = 1
    while n < len(pods) and ipaddress.ip_address(pods[n]) == ipaddress.ip_address(first) + n:
        n += 1
    return [str(build / "perf" / "flowgen"), "-l", str(common.MAIN_CORE), "--in-memory",
            "--no-pci", "--file-prefix", prefix, "-m", "128", "--vdev", vdev, "--",
            "--family", str(family), "--src", first, "--src-count", str(n),
            "--dst", FLOW_DST[family], "--dst-bits", str(FLOW_DST_BITS),
            "--dport", str(FLOW_DPORT), "--src-mac", common.SRC_MAC,
            "--dst-mac", common.DUT_MAC, "--frame", str(FLOW_FRAME[family]),
            "--count", str(count)]


def build_flowgen(ctx: Ctx) -> Path:
    binary = ctx.build / "perf" / "flowgen"
    r = subprocess.run(["ninja", "-C", str(ctx.build), "perf/flowgen"], capture_output=True,
                       text=True)
    if r.returncode != 0 or not binary.is_file():
        raise Unavailable(f"cannot build perf/flowgen: {(r.stdout + r.stderr)[-800:]}")
    return binary


def flowgen_stats(prefix: str) -> dict:
    """flowgen's counters (TypeError until it has registered its telemetry command)."""
    return common.telemetry(prefix, "/flowgen/stats")["/flowgen/stats"]


@dataclasses.dataclass
class NatNewScenario(NatScenario):
    """Flows created per second; dpdk-fwd fed by flowgen through a memif."""
    counts: str = "flows"
    window: tuple[float, float] = (0.5, 1.0)     # warm-up, measured seconds (at most)
    flow_count: int = 0                          # flowgen --count (0: until stopped)

    def __post_init__(self):
        super().__post_init__()
        self.references = ("dpdk-fwd", "kernel-masq")
        self.callgrind = False      # valgrind's pace, a 700 MB table without hugepages
        self._gen: Optional[common.Generator] = None

    def traffic(self) -> str:
        fam = "IPv4" if self.family == 4 else "IPv6"
        return (f"{fam} UDP from perf/flowgen, every packet a new natOutgoing flow (sources "
                f"the node's pods, destinations {FLOW_DST[self.family]} + 0..2^{FLOW_DST_BITS}"
                f"-1, source ports moving every 2^{FLOW_DST_BITS} flows: no reply tuple twice, "
                f"every port kept), {FLOW_FRAME[self.family] + 4} B on the wire; dpdk-fwd "
                f"takes them from a memif, Linux from a veth. Figure: flows CREATED per second "
                f"(dpdk-fwd's conntrack `created`, Linux's masquerade rule counter), over a "
                f"{self.window[1]:g} s window after {self.window[0]:g} s; conntrack capacity "
                f"{self.capacity} (Linux: nf_conntrack_max and buckets the same)")

    def targets(self):
        return [("kernel-masq", 5.0, "new natOutgoing flows per second at least 5x Linux "
                                     "conntrack + masquerade, issue 15")]

    def mean_wire_bytes(self) -> float:
        return FLOW_FRAME[self.family] + 4.0

    def build_pcap(self, scratch: Path) -> Path:
        """No packet set: flowgen makes the flows. A note stands in its place."""
        p = scratch / f"{self.name}.flowgen.txt"
        p.write_text("flows come from perf/flowgen (perf/harness/nat.py)\n")
        return p

    def measure(self, ref, ctx: Ctx, warmup: float, seconds: float) -> Window:
        return common.measure(ref, ctx, min(warmup, self.window[0]), min(seconds, self.window[1]))

    # -- dpdk-fwd through a memif ----------------------------------------------------------
    def memif_socket(self, ctx: Ctx) -> Path:
        return ctx.scratch / f"{self.name}-memif.sock"

    def dpdkfwd_config(self, ctx: Ctx, cfg: dict, fwd) -> None:
        super().dpdkfwd_config(ctx, cfg, fwd)
        sock = self.memif_socket(ctx)
        if sock.exists():
            sock.unlink()
        cfg["uplink"]["devargs"] = (f"net_memif0,role=server,id=0,socket={sock},"
                                    f"socket-abstract=no,mac={common.DUT_MAC}")

    def dpdkfwd_ready(self, ctx: Ctx, fwd, timeout: float) -> None:
        super().dpdkfwd_ready(ctx, fwd, timeout)
        build_flowgen(ctx)
        self._gen = common.Generator("flowgen", f"pg{os.getpid() % 100000}g", flowgen_stats)
        vdev = (f"net_memif0,role=client,id=0,socket={self.memif_socket(ctx)},"
                f"socket-abstract=no,mac={common.SRC_MAC}")
        argv = flowgen_argv(ctx.build, self.family, local_pods(ctx.table), self._gen.prefix,
                            vdev, self.flow_count)
        self._gen.start(argv, ctx.scratch / f"flowgen-{self.name}.log")

    def dpdkfwd_counters(self, fwd, st: dict) -> None:
        if self._gen is not None:
            self._gen.mark()

    def dpdkfwd_window(self, fwd, extra: dict) -> None:
        win = self._gen.window() if self._gen is not None else None
        if win:
            a, b = win
            polls = b["polls"] - a["polls"]
            short = b["short_polls"] - a["short_polls"]
            extra["generator"] = {"sent": b["sent"] - a["sent"], "polls": polls,
                                  "short_polls": short,
                                  "short_share": round(short / polls, 4) if polls else None}

    def dpdkfwd_stop(self, fwd) -> None:
        if self._gen is not None:
            self._gen.stop()
            self._gen = None


# --- 1M flows -----------------------------------------------------------------------------

@dataclasses.dataclass
class CtMillionScenario(NatNewScenario):
    """1,000,000 new flows into a table of 1048576: all tracked, and the memory."""
    def __post_init__(self):
        super().__post_init__()
        self.references = ("dpdk-fwd",)
        self.stage_profile = False

    def traffic(self) -> str:
        return (f"{self.flow_count} new IPv4 UDP flows from perf/flowgen (as nat4-new) into "
                f"conntrack capacity {self.capacity}; then `fwdctl conntrack count`, "
                f"`fwdctl tables` and DPDK's heap. Figure: the fill rate (flows created / s "
                f"between the first and the last, sampled every 0.1 s)")

    def targets(self):
        return []

    def measure(self, ref, ctx: Ctx, warmup: float, seconds: float) -> Window:
        ref.start(ctx)
        try:
            t0 = c0 = None
            end = time.monotonic() + 120
            while True:
                st = ref.stats()
                t = time.monotonic()
                created = st["control"]["conntrack"]["results"]["created"]
                if t0 is None and created > 0:
                    t0, c0 = t, created
                if created >= self.flow_count:
                    break
                if t > end:
                    raise Unavailable(f"only {created} of {self.flow_count} flows created "
                                      f"within 120 s")
                time.sleep(0.1)
            t1 = t
            time.sleep(0.5)
            st = ref.stats()
            count = ref.fwdctl_json("conntrack", "count")
            all_tables = ref.fwdctl_json("tables")
            tables = all_tables.get("conntrack") or {}
            up = next(p for p in st["ports"] if p["kind"] == "uplink")
            drops = {k: v for k, v in st["drops"].items() if v}
        finally:
            ref.stop()
        created = st["control"]["conntrack"]["results"]["created"]
        if count.get("count", 0) < self.flow_count:
            raise Unavailable(f"{count.get('count')} flows tracked after {self.flow_count} "
                              f"created; drops {drops}")
        rate = (created - c0) / (t1 - t0) if t1 > t0 else 0.0
        facts = {"flows_sent": self.flow_count, "created": created,
                 "tracked": count.get("count"), "in_use": count.get("in_use"),
                 "capacity": count.get("capacity"),
                 "bytes_per_flow": tables.get("bytes_per_flow"),
                 "table_bytes": tables.get("bytes"),
                 "heap_alloc_bytes": all_tables.get("heap_allocated_bytes"),
                 "drops": drops, "fill_seconds": round(t1 - t0, 2)}
        ctx.log(f"{self.name}: {json.dumps(facts)}")
        return Window(mpps=rate / 1e6, rx_mpps=up["rx_packets"] / max(t1 - t0, 1e-9) / 1e6,
                      drop_ratio=max(0.0, 1 - created / max(1, up["rx_packets"])),
                      seconds=t1 - t0, extra={"ct_million": facts})
