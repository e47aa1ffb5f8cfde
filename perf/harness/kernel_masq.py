"""Linux conntrack + nftables masquerade: Calico's natOutgoing the way a Linux node does it,
on the namespaces of harness/kernel.py (generator -> veth -> router on CPU 1 -> veth ->
sink), the router given Calico's rule in nftables:

    table ip nat { chain postrouting { type nat hook postrouting priority srcnat;
        ip saddr 192.168.0.0/16 ip daddr != 192.168.0.0/16 counter masquerade } }

(and the same for ip6 with fd00:10:244::/48): the rule that tests/system/test_nat.py's
Linux node has. The router's address on rtr-out is the node's (10.10.10.10/24,
fd00:10:10::10/64), which masquerade takes.

- On scenarios that count packets (nat4-established, nat6-established): the generator is
  kernel.py's (testpmd replays the packet set into the veth), the figure packets forwarded
  per second, every packet an established flow's after the first pass.
- On scenarios that count flows (nat4-new, nat6-new): the generator is perf/flowgen on
  net_af_packet into the veth (CPU 0), every packet a new flow; the figure is connections
  created per second, from the masquerade rule's nft counter (a NAT rule sees only the
  first packet of a connection, which it sets up; the connection is inserted right after,
  at the end of postrouting), cross-checked by nf_conntrack_count's growth in the router's
  namespace (no flow ends within a window: UDP's 30 s timeout). The `insert` column of
  /proc/net/stat/nf_conntrack would be the direct count but stays 0 on this kernel (6.18).

The table's size: nf_conntrack_max and the hash size (nf_conntrack's hashsize parameter)
are global; for the run they are raised to the scenario's conntrack capacity (dpdk-fwd's
table size), buckets = max as dpdk-fwd's index is sized to its capacity, and restored in
stop().
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .common import Counters, Ctx, Proc, Unavailable, run
from .kernel import GEN_IF, MAIN_CORE, KernelRouting

CT_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
CT_HASHSIZE = Path("/sys/module/nf_conntrack/parameters/hashsize")
CT_STAT = "/proc/net/stat/nf_conntrack"


def nft_rules(family_pools: dict[int, str]) -> str:
    out = []
    for fam, pool in family_pools.items():
        t, ip = ("ip", "ip") if fam == 4 else ("ip6", "ip6")
        out.append(f"table {t} perfnat {{\n  chain postrouting {{\n"
                   f"    type nat hook postrouting priority srcnat; policy accept;\n"
                   f"    {ip} saddr {pool} {ip} daddr != {pool} counter masquerade\n  }}\n}}\n")
    return "".join(out)


def ct_stat_sum(text: str) -> dict[str, int]:
    """The columns of /proc/net/stat/nf_conntrack summed over the CPU rows (hex)."""
    lines = text.split("\n")
    names = lines[0].split()
    tot = dict.fromkeys(names, 0)
    for line in lines[1:]:
        vals = line.split()
        if len(vals) == len(names):
            for n, v in zip(names, vals):
                tot[n] += int(v, 16)
    return tot


class KernelMasquerade(KernelRouting):
    key = "kernel-masq"
    label = "Linux conntrack + masquerade (netns)"

    def __init__(self):
        super().__init__()
        self.base_notes = [
            "Linux conntrack + masquerade (netns): Linux routing (netns) as above, the router "
            "with conntrack and Calico's natOutgoing rule in nftables (postrouting, priority "
            "srcnat: `ip saddr POOL ip daddr != POOL counter masquerade`, the same for ip6); "
            "no other rule. nf_conntrack_max and the conntrack hash size are set to the "
            "scenario's conntrack capacity for the run (restored after).",
            "Linux conntrack + masquerade (netns), new flows: the generator is perf/flowgen on "
            "net_af_packet (qdisc bypass) into the generator's veth, on CPU 0; flows created = "
            "the masquerade rule's nft counter (NAT rules see a connection's first packet "
            "only), cross-checked by nf_conntrack_count's growth (JSON: extra.conntrack).",
        ] + KernelRouting.BASE_NOTES[1:]     # the first says: no conntrack
        self.notes = list(self.base_notes)
        self._saved: dict[Path, str] = {}
        self._ct_marks: list[dict] = []

    def prepare(self, ctx: Ctx) -> None:
        super().prepare(ctx)
        if not CT_MAX.exists():
            raise Unavailable(f"{CT_MAX} missing: a kernel without nf_conntrack")
        if shutil.which("nft", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            raise Unavailable("nft not found (package nftables)")

    def start(self, ctx: Ctx) -> None:
        self._ct_marks = []
        super().start(ctx)

    def _size_table(self, n: int) -> None:
        for p in (CT_MAX, CT_HASHSIZE):
            if p not in self._saved:
                self._saved[p] = p.read_text().strip()
        # the hash first: raising max over the buckets' size is allowed anyway
        CT_HASHSIZE.write_text(str(n))
        CT_MAX.write_text(str(n))

    def _build(self, ctx: Ctx, tag: str) -> None:
        self._size_table(getattr(ctx.scenario, "capacity", 262144))
        super()._build(ctx, tag)
        from .nat import POOLS
        fam = ctx.table.family
        path = ctx.scratch / f"{tag}-nat.nft"
        path.write_text(nft_rules({fam: POOLS[fam][1]}))
        run(["ip", "netns", "exec", self.ns["rtr"], "nft", "-f", str(path)])

    def _start_generator(self, ctx: Ctx, tag: str) -> None:
        if ctx.scenario.counts != "flows":
            return super()._start_generator(ctx, tag)
        from .nat import build_flowgen, flowgen_argv, local_pods
        build_flowgen(ctx)
        vdev = (f"net_af_packet0,iface={GEN_IF},qpairs=1,blocksz=4096,framesz=2048,"
                f"framecnt=4096,qdisc_bypass=1")
        argv = flowgen_argv(ctx.build, ctx.table.family, local_pods(ctx.table), tag, vdev,
                            getattr(ctx.scenario, "flow_count", 0))
        self.proc = Proc(["ip", "netns", "exec", self.ns["gen"], "taskset", "-c", str(MAIN_CORE)]
                         + argv, ctx.scratch / f"{tag}-flowgen.log")

    def _ct_read(self) -> dict:
        rtr = self.ns["rtr"]
        r = subprocess.run(["ip", "netns", "exec", rtr, "sh", "-c",
                            f"cat {CT_STAT}; echo; cat /proc/sys/net/netfilter/nf_conntrack_count"],
                           capture_output=True, text=True, timeout=10)
        text, _, count = r.stdout.rpartition("\n\n")
        st = ct_stat_sum(text.strip())
        st["count"] = int(count.strip() or 0)
        nft = subprocess.run(["ip", "netns", "exec", rtr, "nft", "-j", "list", "ruleset"],
                             capture_output=True, text=True, timeout=10)
        pk = 0
        for m in re.finditer(r'"counter":\s*\{"packets":\s*(\d+)', nft.stdout):
            pk += int(m.group(1))
        st["nft_masquerade_packets"] = pk
        return st

    def counters(self) -> Counters:
        c = super().counters()
        if self.scenario is None or self.scenario.counts != "flows":
            return c
        st = self._ct_read()
        self._ct_marks = (self._ct_marks + [st])[-2:]
        return Counters(rx=c.rx, tx=st["nft_masquerade_packets"], t=c.t)

    def extra(self) -> dict:
        out = super().extra()
        if len(self._ct_marks) == 2:
            a, b = self._ct_marks
            out["conntrack"] = {"nft_masquerade_packets": b["nft_masquerade_packets"] -
                                a["nft_masquerade_packets"],
                                "nf_conntrack_count_growth": b["count"] - a["count"]}
            out["conntrack_count"] = b["count"]
        return out

    def stop(self) -> None:
        super().stop()
        for p, v in list(self._saved.items()):
            try:
                p.write_text(v)
            except OSError:
                pass
        self._saved = {}
