"""Instructions per packet of dpdk-fwd's worker, from a short callgrind run.

valgrind lacks AVX-512, so this uses its own build of the daemon with
-mno-avx512f (the normal build is -march=native) and EAL's SIMD width capped
at 256 bits (rte_fib6 then takes its AVX2-less scalar or vector lookup: the
report says which numbers these are). Only the worker's poll loop is counted
(--toggle-collect on Worker::poll_once*), so start-up, the control thread and
the API do not mix in. Packets: every poll of the pcap device returns a full
burst of 32 (its infinite_rx ring always holds more), so packets = 32 x the
calls of Worker::process (one per burst received); the daemon's own RX counter, read just before
the end, must agree within a few percent (checked).

With cache_sim, callgrind also simulates the caches and branch predictors
(about twice as slow) and the result adds an estimate of cycles per packet,
callgrind_annotate's: Ir + 10 x (L1 misses + mispredicted branches) + 100 x
last-level misses. It ranks changes that trade instructions for misses; it
is no measure of this CPU.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from . import common
from .common import Ctx, Unavailable
from .dpdkfwd import DpdkFwd

BUILD_ARGS = ["-Dtests=false", "-Dwerror=true", "-Dcpp_args=-mno-avx512f",
              "-Dc_args=-mno-avx512f"]
# fwdctl, a client, comes from the normal build
TARGETS = ["dpdk-fwd/app/dpdk-fwd"]
# called once per received burst (the pcap PMD's own functions have no symbols)
BURST_FN = "fwd::dp::Worker::process"
BURST = 32


def build(repo: Path, build_dir: Path, log) -> Path:
    """Configures (once) and builds the daemon without AVX-512."""
    if shutil.which("valgrind") is None:
        raise Unavailable("valgrind is missing (Debian package valgrind)")
    if not (build_dir / "build.ninja").exists():
        log(f"callgrind: configuring {build_dir} (-mno-avx512f)")
        common.run(["meson", "setup", str(build_dir), *BUILD_ARGS], cwd=repo)
    log("callgrind: building the daemon without AVX-512")
    common.run(["ninja", "-C", str(build_dir), *TARGETS], cwd=repo)
    return build_dir


# callgrind_annotate's cycle estimate: event -> weight
CYCLE_WEIGHTS = {"Ir": 1, "I1mr": 10, "D1mr": 10, "D1mw": 10, "Bcm": 10, "Bim": 10,
                 "ILmr": 100, "DLmr": 100, "DLmw": 100}


def parse(out_file: Path) -> dict:
    """Total Ir (and every event's total), the calls of the burst function."""
    names: dict[str, str] = {}
    total = 0
    events: list[str] = []
    totals: dict[str, int] = {}
    rx_calls = 0
    pending_cfn = None
    name_re = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")
    with open(out_file, errors="replace") as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                m = name_re.match(line.strip())
                if m:
                    fid, nm = m.group(1), m.group(2)
                    if nm:
                        names[fid] = nm
                    if line.startswith("cfn="):
                        pending_cfn = names.get(fid, "")
                continue
            if line.startswith("calls="):
                if pending_cfn is not None and BURST_FN in pending_cfn:
                    rx_calls += int(line.split("=")[1].split()[0])
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            if line.startswith(("summary:", "totals:")):
                vals = [int(v) for v in line.split()[1:]]
                total = max(total, vals[0])
                for e, v in zip(events, vals):
                    totals[e] = max(totals.get(e, 0), v)
    return {"ir": total, "bursts": rx_calls, "events": totals}


def self_top(out_file: Path, n: int = 14) -> list[tuple[str, int]]:
    """(function, its own Ir, inlined code included) of the costliest functions
    under the poll loop, from callgrind_annotate; a DPDK driver's function
    without a symbol is named by its library and address."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", str(out_file)],
                       capture_output=True, text=True)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)(?:\s+\[(.*)\])?$", line)
        if not m or m.group(2).startswith("PROGRAM TOTALS"):
            continue
        where, obj = m.group(2), m.group(3) or ""
        fn = where.split(":", 1)[1] if ":" in where else where
        if fn.startswith("0x") or where.startswith("???"):
            fn = f"{Path(obj).name} {fn}" if obj else fn
        rows.append((fn, int(m.group(1).replace(",", ""))))
    # a function's cost is split by the source file of its lines (inlined
    # headers): add them up
    merged: dict[str, int] = {}
    for fn, ir in rows:
        merged[fn] = merged.get(fn, 0) + ir
    return sorted(merged.items(), key=lambda kv: -kv[1])[:n]


def measure_instructions(ctx: Ctx, build_dir: Path, seconds: float,
                         cache_sim: bool = False) -> dict:
    """Runs the daemon under callgrind for `seconds` of forwarding; returns
    {"instr_per_pkt", "packets", "ir", "daemon_rx", "top": [(fn, ir_per_pkt)]},
    with cache_sim also "per_pkt" (every event) and "est_cycles_per_pkt"."""
    out = ctx.scratch / f"callgrind.{ctx.scenario.name}.out"
    if out.exists():
        out.unlink()
    wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               "--collect-atstart=no", "--toggle-collect=*Worker::poll_once*",
               "--dump-instr=no", "--vgdb=no",
               # valgrind runs one thread at a time: without a fair scheduler the
               # polling worker starves the API thread
               "--fair-sched=yes"]
    if cache_sim:
        wrapper += ["--cache-sim=yes", "--branch-sim=yes"]
    ref = DpdkFwd(stage_stats=False, no_huge=True,
                  extra_eal=["--force-max-simd-bitwidth=256"], wrapper=wrapper,
                  binary=build_dir / "dpdk-fwd" / "app" / "dpdk-fwd")
    ref.start(ctx)
    try:
        time.sleep(seconds)
        daemon_rx = ref.counters().rx
    finally:
        ref.stop()
    if not out.exists():
        raise Unavailable("callgrind wrote no output (see the daemon log under "
                          f"{ctx.scratch / 'dpdk-fwd'})")
    p = parse(out)
    packets = p["bursts"] * BURST
    if packets == 0 or p["ir"] == 0:
        raise Unavailable(f"callgrind: no packets counted ({p})")
    # the daemon's counter is read before the end, so it is a little lower
    if not (0.5 * packets <= daemon_rx <= packets * 1.01):
        raise Unavailable(f"callgrind: {packets} packets by RX calls but the daemon "
                          f"counted {daemon_rx}: the burst-of-32 assumption does not hold")
    top = [(fn, ir / packets) for fn, ir in self_top(out)]
    res = {"instr_per_pkt": p["ir"] / packets, "packets": packets, "ir": p["ir"],
           "daemon_rx": daemon_rx, "top": top}
    if cache_sim and p["events"]:
        res["per_pkt"] = {e: v / packets for e, v in p["events"].items()}
        res["est_cycles_per_pkt"] = sum(CYCLE_WEIGHTS.get(e, 0) * v
                                        for e, v in p["events"].items()) / packets
    return res
