#!/usr/bin/env python3
"""The perf harness: dpdk-fwd side by side with the I/O floor (testpmd io),
DPDK's l3fwd (LPM, FIB), OVS-DPDK and Linux routing, on the same core and the
same device, per scenario. Writes perf/results/<date>.md, .png and .json.

    sudo /usr/bin/python3 perf/run.py            # the full run (5 runs a figure)
    sudo /usr/bin/python3 perf/run.py --smoke    # one scenario, one short run, each reference

Exits non-zero when a scenario or a reference cannot run; never because of a
figure (benchmarks are not tests).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import common, report  # noqa: E402
from harness.common import Ctx, Unavailable  # noqa: E402


def make_references(keys):
    """The implementations, in report order."""
    from harness.dpdkfwd import DpdkFwd
    from harness.testpmd import Testpmd
    out = []
    for k in keys:
        if k == "dpdk-fwd":
            out.append(DpdkFwd(stage_stats=False))
        elif k == "testpmd-io":
            out.append(Testpmd())
        elif k in ("l3fwd-lpm", "l3fwd-fib"):
            from harness.l3fwd import L3fwd
            out.append(L3fwd(k.split("-")[1]))
        elif k == "ovs-dpdk":
            from harness.ovs import OvsDpdk
            out.append(OvsDpdk())
        elif k == "kernel":
            from harness.kernel import KernelRouting
            out.append(KernelRouting())
        elif k == "kernel-masq":
            from harness.kernel_masq import KernelMasquerade
            out.append(KernelMasquerade())
        else:
            known = common.ALL_REFERENCES + common.EXTRA_REFERENCES
            raise SystemExit(f"unknown reference '{k}' (known: {', '.join(known)})")
    return out


def machine_facts(tsc: float) -> dict:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    dpdk = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                          text=True).stdout.strip()
    try:
        rev = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        if dirty:
            rev += " (with local changes)"
    except OSError:
        rev = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "tsc_hz": tsc, "kernel": platform.release(),
            "dpdk": dpdk, "git": rev, "load_before": os.getloadavg()[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="one scenario (ipv4-64), one 1-second run, each reference, no callgrind")
    ap.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    ap.add_argument("--reference", action="append",
                    help="only these implementations (repeatable; "
                         f"{', '.join(common.ALL_REFERENCES + common.EXTRA_REFERENCES)})")
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (median reported)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured window of a run")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before the window")
    ap.add_argument("--no-callgrind", action="store_true", help="skip instructions per packet")
    ap.add_argument("--callgrind-seconds", type=float, default=15.0)
    ap.add_argument("--dpdkfwd-config", metavar="JSON",
                    help="top-level keys merged into every dpdk-fwd config of the run, for an "
                         "A/B of a setting (e.g. '{\"fast_path\": false}')")
    ap.add_argument("--callgrind-only", action="store_true",
                    help="dpdk-fwd under callgrind alone: no timed runs, no peers (an A/B "
                         "of instructions per packet on a busy machine)")
    ap.add_argument("--callgrind-cycles", action="store_true",
                    help="callgrind also simulates caches and branches: an estimate of "
                         "cycles per packet besides the instructions (about 2x slower)")
    ap.add_argument("--build", default=os.environ.get("FWD_BUILD", str(HERE.parent / "build")),
                    help="dpdk-fwd build dir (default: build)")
    ap.add_argument("--out", default=str(HERE / "results"), help="where the report goes")
    ap.add_argument("--name", help="report file name without extension (default: the date)")
    ap.add_argument("--scratch", help="scratch folder (default: a new one under /var/tmp)")
    ap.add_argument("--keep-scratch", action="store_true")
    ap.add_argument("--rfc2544", action="store_true",
                    help="NDR/PDR search with a rate-setting generator (TRex, pktgen-dpdk): "
                         "see perf/profiles/README.md")
    ap.add_argument("--report-only", metavar="JSON",
                    help="write the .md and .png again from a run's .json, measuring nothing")
    args, rest = ap.parse_known_args(argv)

    if args.report_only:
        src = Path(args.report_only)
        res = json.loads(src.read_text())
        for p in report.write(res, src.parent, src.stem):
            print(f"wrote {p}")
        return 0

    if args.rfc2544:
        from harness import rfc2544
        return rfc2544.main(rest, scenarios=args.scenario)
    if rest:
        ap.error(f"unknown arguments: {' '.join(rest)}")
    if os.geteuid() != 0:
        print("perf/run.py: run as root (hugepages, namespaces)", file=sys.stderr)
        return 2
    if args.dpdkfwd_config:
        try:
            if not isinstance(json.loads(args.dpdkfwd_config), dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            ap.error(f"--dpdkfwd-config: {e}")
        os.environ["FWD_PERF_DPDKFWD_CONFIG"] = args.dpdkfwd_config
    if args.smoke:
        args.runs, args.seconds, args.warmup, args.no_callgrind = 1, 1.0, 0.5, True
        args.scenario = args.scenario or ["ipv4-64"]
    if args.callgrind_only:
        args.runs, args.no_callgrind, args.reference = 0, False, ["dpdk-fwd"]
    elif args.runs < 1 or args.seconds <= 0:
        ap.error("--runs must be at least 1 and --seconds positive")

    stem = args.name or datetime.date.today().isoformat() + ("-smoke" if args.smoke else "")
    # Pod scenarios, not packet-set ones: pod-tcp (TCP between kernel pods, iperf3, Gbit/s)
    # and pod-vhost (pod to pod over vhost-user against testpmd); each its own report,
    # <stem>-<scenario>.md / .json
    # and pod-balance (two pods' queues on one worker, the balance module off and on)
    for pod_scenario in ("pod-tcp", "pod-vhost", "pod-balance"):
        if not args.scenario or pod_scenario not in args.scenario:
            continue
        if pod_scenario == "pod-tcp":
            from harness import pod_tcp as mod
        elif pod_scenario == "pod-vhost":
            from harness import pod_vhost as mod
        else:
            from harness import pod_balance as mod
        t0 = time.monotonic()
        rc = mod.main(args, Path(args.out), f"{stem}-{pod_scenario}",
                      lambda m: print(f"[{time.monotonic() - t0:6.1f}s] {m}", flush=True))
        args.scenario = [n for n in args.scenario if n != pod_scenario]
        if not args.scenario or rc != 0:
            return rc
    scenarios = common.load_scenarios(HERE / "scenarios")
    names = args.scenario or list(scenarios)
    for n in names:
        if n not in scenarios:
            ap.error(f"unknown scenario '{n}' (known: {', '.join(scenarios)}, pod-tcp, "
                     "pod-vhost, pod-balance)")
    keys = args.reference or list(common.ALL_REFERENCES) + [
        k for k in common.EXTRA_REFERENCES if any(k in scenarios[n].references for n in names)]
    if "dpdk-fwd" not in keys:
        keys = ["dpdk-fwd"] + keys   # every ratio is to dpdk-fwd
    refs = make_references(keys)
    # a scenario compared through another one's figures (VXLAN through ipv4-64's l3fwd)
    # needs that one measured in the same run
    added = [b for n in names for k, b in scenarios[n].baselines.items()
             if k in keys and b not in names]
    added = list(dict.fromkeys(added))
    names = [n for n in scenarios if n in names or n in added]

    own_scratch = args.scratch is None
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="dpdk-fwd-perf.", dir="/var/tmp"))
    scratch.mkdir(parents=True, exist_ok=True)
    build = Path(args.build).resolve()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", flush=True)

    tsc = common.tsc_hz()
    facts = machine_facts(tsc)
    log(f"perf: {len(names)} scenario(s) x {len(refs)} implementations x {args.runs} run(s) "
        f"of {args.seconds:g} s; scratch {scratch}")
    if added:
        log(f"perf: also {', '.join(added)}: the other scenarios' ratios divide by figures "
            f"measured there")
    failures: list[str] = []
    results: dict = {"facts": facts, "args": {"runs": args.runs, "seconds": args.seconds,
                                              "warmup": args.warmup, "smoke": args.smoke,
                                              "dpdkfwd_config": args.dpdkfwd_config},
                     "scenarios": {}, "notes": {}, "failures": failures}
    prepared: dict[str, bool] = {}
    try:
        for name in names:
            sc = scenarios[name]
            log(f"{name}: building the packet set ({sc.packets} packets)")
            pcap = sc.build_pcap(scratch)
            table = sc.table()
            ctx = Ctx(scratch, pcap, sc, table, build, HERE.parent, log)
            entry = {"title": sc.title, "family": sc.family, "table": table.describe(),
                     "mean_wire_bytes": sc.mean_wire_bytes(), "packets": sc.packets,
                     "wire_bytes": {ref.key: sc.wire_bytes(ref.key) for ref in refs},
                     "traffic": sc.traffic(), "baselines": sc.baselines, "counts": sc.counts,
                     "targets": sc.targets(), "refs": {}}
            results["scenarios"][name] = entry
            for ref in refs:
                why = sc.not_run(ref.key) or ref.applies(sc)
                entry["refs"][ref.key] = {"label": ref.label, "runs": [], "na": why,
                                          "error": None, "extra": {}}
            for run_i in range(args.runs):
                for ref in refs:
                    r = entry["refs"][ref.key]
                    if r["na"] or r["error"]:
                        continue
                    try:
                        if not prepared.get(ref.key):
                            log(f"{ref.label}: preparing")
                            ref.prepare(ctx)
                            prepared[ref.key] = True
                        w = sc.measure(ref, ctx, args.warmup, args.seconds)
                    except Unavailable as e:
                        r["error"] = str(e)
                        failures.append(f"{name} / {ref.label}: {e}")
                        log(f"{name} / {ref.label}: CANNOT RUN: {e}")
                        continue
                    except Exception as e:  # a harness bug: report it, go on
                        r["error"] = f"{type(e).__name__}: {e}"
                        failures.append(f"{name} / {ref.label}: {r['error']}")
                        log(f"{name} / {ref.label}: FAILED:\n{traceback.format_exc()}")
                        continue
                    r["runs"].append({"mpps": w.mpps, "rx_mpps": w.rx_mpps,
                                      "drop_ratio": w.drop_ratio, "seconds": w.seconds})
                    if w.extra:
                        r["extra"].setdefault("windows", []).append(w.extra)
                    unit = "M flows/s created" if sc.counts == "flows" else "Mpps"
                    log(f"{name} run {run_i + 1}/{args.runs}: {ref.label:28s} "
                        f"{w.mpps:7.3f} {unit}  {tsc / (w.mpps * 1e6):7.1f} cycles each  "
                        f"drop {w.drop_ratio:.2%}")
                    results["notes"][ref.key] = ref.notes
            fwd = entry["refs"]["dpdk-fwd"]
            if fwd["runs"] and not fwd["error"] and sc.stage_profile:
                # the stage breakdown: one more run with the counters on
                from harness.dpdkfwd import DpdkFwd
                try:
                    w = sc.measure(DpdkFwd(stage_stats=True), ctx, args.warmup, args.seconds)
                    fwd["profile"] = {"mpps": w.mpps, "extra": {"windows": [w.extra]}}
                    log(f"{name}: dpdk-fwd with stage counters on: {w.mpps:.2f} Mpps")
                except Exception as e:
                    failures.append(f"{name} / dpdk-fwd stage counters: {e}")
                    log(f"{name} / dpdk-fwd stage counters: CANNOT RUN: {e}")
            if not args.no_callgrind and sc.callgrind:
                try:
                    from harness import callgrind
                    cg_build = build.parent / (build.name + "-perf-cg")
                    callgrind.build(HERE.parent, cg_build, log)
                    log(f"{name}: dpdk-fwd under callgrind for {args.callgrind_seconds:g} s")
                    cg = callgrind.measure_instructions(ctx, cg_build, args.callgrind_seconds,
                                                        cache_sim=args.callgrind_cycles)
                    entry["refs"]["dpdk-fwd"]["callgrind"] = cg
                    est = cg.get("est_cycles_per_pkt")
                    log(f"{name}: {cg['instr_per_pkt']:.1f} instructions/packet "
                        + (f"{est:.1f} estimated cycles/packet " if est else "")
                        + f"({cg['packets']} packets)")
                except Exception as e:
                    failures.append(f"{name} / callgrind: {e}")
                    log(f"{name} / callgrind: CANNOT RUN: {e}")
    finally:
        for ref in refs:
            try:
                ref.stop()
            except Exception:
                pass
        if own_scratch and not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    facts["load_after"] = os.getloadavg()[0]
    facts["duration_s"] = round(time.monotonic() - t_start, 1)
    paths = report.write(results, out_dir, stem)
    for p in paths:
        log(f"wrote {p}")
    if failures:
        log(f"{len(failures)} could not run:")
        for f in failures:
            print(f"  - {f.splitlines()[0]}", flush=True)
        return 1
    log("done: every scenario and reference ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
