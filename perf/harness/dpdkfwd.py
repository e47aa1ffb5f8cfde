"""dpdk-fwd itself, one worker on core 1, the pcap device as its uplink.

The Calico table goes in as static routes: remote blocks via their node with
a pinned MAC, the local blocks blackholed, each pod a /32 (/128) via itself
with its own MAC, a default route via the gateway. Counters come from the
daemon's API (`fwdctl --json stats`): the uplink port's packets, and the
worker's per-stage packet and cycle counters when the daemon has them.

A scenario may set the daemon up its own way (Scenario.dpdkfwd_config: the VXLAN
scenarios give it an IPAM store and take the remote blocks out of the static
routes), say when it is ready (Scenario.dpdkfwd_ready) and bound its drops
(Scenario.max_fwd_drop: a window that dropped more fails, naming the reasons).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

from . import common
from .common import Counters, Ctx, Proc, Reference, Unavailable


def static_routes(table: common.Table) -> list[dict]:
    """The Calico table as dpdk-fwd's static routes: next hops with pinned MACs,
    the local blocks blackholed."""
    routes = []
    for r in table.routes:
        if r.kind == "local-block":
            routes.append({"prefix": r.prefix, "type": "blackhole"})
        else:
            routes.append({"prefix": r.prefix, "via": r.via, "mac": r.mac})
    return routes


def _merge(cfg: dict, extra: dict) -> None:
    """extra's keys into cfg; an object into an object key by key."""
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            _merge(cfg[k], v)
        else:
            cfg[k] = v


class DpdkFwd(Reference):
    key = "dpdk-fwd"
    label = "dpdk-fwd"

    def __init__(self, stage_stats: bool = True, extra_eal: Optional[list[str]] = None,
                 no_huge: bool = False, wrapper: Optional[list[str]] = None,
                 binary: Optional[Path] = None):
        super().__init__()
        self.stage_stats = stage_stats
        self.extra_eal = extra_eal or []
        self.no_huge = no_huge
        self.wrapper = wrapper or []      # e.g. valgrind --tool=callgrind ...
        self.binary = binary
        self.proc: Optional[Proc] = None
        self.dir: Optional[Path] = None
        self._stats_a: Optional[dict] = None
        self._stats_b: Optional[dict] = None

    # --- paths --------------------------------------------------------------------------
    def _bin(self, ctx: Ctx) -> Path:
        return self.binary or ctx.build / "dpdk-fwd" / "app" / "dpdk-fwd"

    def _fwdctl(self, ctx: Ctx) -> Path:
        return ctx.build / "control" / "fwdctl"

    def fwdctl_json(self, *args: str) -> dict:
        """One fwdctl command against the running daemon, its --json result."""
        r = subprocess.run([str(self._fwdctl(self._ctx)), "-s", str(self.dir / "api.sock"),
                            "--json", *args], capture_output=True, text=True,
                           timeout=120 if self.wrapper else 20)
        if r.returncode != 0:
            raise RuntimeError(f"fwdctl {' '.join(args)}: "
                               f"{r.stderr.strip() or r.stdout.strip()}")
        return json.loads(r.stdout)

    def prepare(self, ctx: Ctx) -> None:
        for p in (self._bin(ctx), self._fwdctl(ctx)):
            if not os.access(p, os.X_OK):
                raise Unavailable(f"{p} is missing: build dpdk-fwd first (ninja -C {ctx.build})")

    def config(self, ctx: Ctx, name: str) -> dict:
        """The daemon's config for this scenario."""
        routes = static_routes(ctx.table)
        cfg = {
            "node_name": "perf",
            # under valgrind (no hugepages) 512 MB does not hold a scenario with the NAT
            # module's tables (vxlan4-encap: "affinity: no memory for affinity_entries")
            "eal": {"file_prefix": name, "in_memory": not self.no_huge, "no_huge": self.no_huge,
                    "memory_mb": 1024 if self.no_huge else 512, "extra_args": self.extra_eal},
            "cores": {"main": common.MAIN_CORE, "control": common.MAIN_CORE,
                      "workers": [{"core": common.FWD_CORE,
                                   "rx": [{"port": "uplink", "queue": 0}]}]},
            "uplink": {"devargs": f"net_pcap0,rx_pcap={ctx.pcap},infinite_rx=1",
                       "rx_queues": 1, "mac": common.DUT_MAC},
            "pod_tap": name[-15:],
            "node": {"ipv4": common.NODE4, "ipv6": common.NODE6, "mtu": 1500},
            "api_socket": str(self.dir / "api.sock"),
            "run_dir": str(self.dir),
            "state_dir": str(self.dir / "state"),
            "mbufs": 16383,
            "routes": routes,
            **({"stage_stats": True} if self.stage_stats else {}),
        }
        ctx.scenario.dpdkfwd_config(ctx, cfg, self)
        # perf/run.py --dpdkfwd-config: keys merged last (an A/B of a knob)
        extra = os.environ.get("FWD_PERF_DPDKFWD_CONFIG")
        if extra:
            _merge(cfg, json.loads(extra))
        return cfg

    def start(self, ctx: Ctx) -> None:
        name = f"pf{os.getpid() % 100000}f"
        self.prefix = name
        self.dir = ctx.scratch / "dpdk-fwd"
        self.dir.mkdir(parents=True, exist_ok=True)
        # Each run starts afresh: the endpoints an earlier run recorded (its pods) must not be
        # taken back by this daemon (a restart's record, README "Restarts").
        shutil.rmtree(self.dir / "state", ignore_errors=True)
        cfg_path = self.dir / "node.json"
        cfg = self.config(ctx, name)
        cfg_path.write_text(json.dumps(cfg, indent=1))
        self._ctx = ctx
        self._stats_a = self._stats_b = None
        self._worker_tid = None
        self._oncpu = []
        log = self.dir / "daemon.log"
        self.proc = Proc(self.wrapper + [str(self._bin(ctx)), "--config", str(cfg_path)], log)
        timeout = 600 if self.wrapper else 30
        end = time.monotonic() + timeout
        ready = False
        while time.monotonic() < end:
            if not self.proc.alive():
                tail = self.proc.tail()
                self.stop()
                raise Unavailable(f"dpdk-fwd exited while starting:\n{tail}")
            try:
                tx = self.counters().tx
                if not ready:   # the API answers: the scenario's own setup, then packets
                    ctx.scenario.dpdkfwd_ready(ctx, self, timeout)
                    ready = True
                    continue
                if tx > 0:
                    return
            except (RuntimeError, OSError, ValueError, KeyError, subprocess.TimeoutExpired):
                pass
            except Unavailable as e:
                self.stop()
                raise Unavailable(f"dpdk-fwd is not set up for {ctx.scenario.name}: {e}") \
                    from None
            time.sleep(0.2)
        tail = self.proc.tail()
        self.stop()
        raise Unavailable(f"dpdk-fwd forwarded nothing in time:\n{tail}")

    def stats(self) -> dict:
        return self.fwdctl_json("stats")

    def counters(self) -> Counters:
        """The uplink's packets in (or where the scenario's packets come in:
        Scenario.dpdkfwd_rx) and out; out is the flows the conntrack table created when the
        scenario counts flows (Scenario.counts)."""
        st = self.stats()
        t = time.monotonic()
        up = next(p for p in st["ports"] if p["kind"] == "uplink")
        tx = up["tx_packets"]
        if self._ctx.scenario.counts == "flows":
            tx = st["control"]["conntrack"]["results"]["created"]
        rx = self._ctx.scenario.dpdkfwd_rx(st)
        c = Counters(rx=up["rx_packets"] if rx is None else rx, tx=tx, t=t)
        self._stats_a, self._stats_b = self._stats_b, st
        # the worker's time on its CPU (the 2 cores are shared): extra() tells its share
        if self._worker_tid is None and self.proc is not None:
            self._worker_tid = common.find_thread(self.proc.pid, "rte-worker-2")
        self._oncpu = (self._oncpu + [(t, common.thread_oncpu_ns(self.proc.pid, self._worker_tid)
                                       if self.proc is not None else None)])[-2:]
        self._ctx.scenario.dpdkfwd_counters(self, st)
        return c

    def extra(self) -> dict:
        """Per-stage cycles over the window, when the daemon counts them:
        {"stages": {name: {"packets", "cycles"}}, "busy_cycles", "rx_packets",
        "drops": {reason: n}}."""
        a, b = self._stats_a, self._stats_b
        if a is None or b is None:
            return {}
        out: dict = {}
        wa, wb = a["workers"][0], b["workers"][0]
        out["rx_packets"] = wb["rx_packets"] - wa["rx_packets"]
        if "busy_cycles" in wb:
            out["busy_cycles"] = wb["busy_cycles"] - wa["busy_cycles"]
            out["tsc_hz"] = b.get("tsc_hz")
            out["stages"] = {
                k: {f: v[f] - wa["stages"][k][f] for f in ("calls", "packets", "cycles")}
                for k, v in wb.get("stages", {}).items()}
        out["drops"] = {k: v - a["drops"].get(k, 0) for k, v in b["drops"].items()
                        if v - a["drops"].get(k, 0) > 0}
        if len(self._oncpu) == 2 and None not in (self._oncpu[0][1], self._oncpu[1][1]):
            (ta, na), (tb, nb) = self._oncpu
            if tb > ta:
                # share of the window the worker (lcore 2, rte-worker-2) was on its CPU
                out["worker_cpu_share"] = round((nb - na) / 1e9 / (tb - ta), 3)
        cta, ctb = (a.get("control", {}).get("conntrack"), b.get("control", {}).get("conntrack"))
        if cta and ctb:
            ra, rb = cta["results"], ctb["results"]
            out["conntrack"] = {k: v - ra.get(k, 0) for k, v in rb.items()
                                if v - ra.get(k, 0) > 0}
            out["conntrack_in_use"] = ctb["in_use"]
        limit = self._ctx.scenario.max_fwd_drop
        dropped, rx = sum(out["drops"].values()), max(1, out["rx_packets"])
        if limit is not None and dropped > limit * rx:
            reasons = ", ".join(f"{k} {v}" for k, v in
                                sorted(out["drops"].items(), key=lambda kv: -kv[1]))
            raise Unavailable(f"dpdk-fwd dropped {dropped} of the {rx} packets it took in "
                              f"during the window ({dropped / rx:.2%}, at most {limit:.1%} "
                              f"allowed); by reason: {reasons}")
        self._ctx.scenario.dpdkfwd_window(self, out)
        return out

    def stop(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is not None:
            ctx.scenario.dpdkfwd_stop(self)
        if self.proc is not None:
            self.proc.stop(timeout=30 if not self.wrapper else 120)
            self.proc = None
        if getattr(self, "prefix", None):
            common.remove_runtime_dir(self.prefix)
