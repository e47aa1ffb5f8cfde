"""pod-balance: the workers' load balancing (control/balance.hpp, issue 21) on this machine's
two cores, the control thread on core 0 beside worker 0.

One daemon, two workers (cores 0 and 1), four `tun` pods with one queue each, given to the
workers in turn, so pods 0 and 2 share worker 0. TCP between them (iperf3, IPv4, 1 and 4
streams) in two set-ups, alternating per run:

- **shared**: balancing off: both pods' queues stay on worker 0, worker 1 idles;
- **balanced**: balancing on (every 500 ms, a worker at 5 %, a gain of 20 %): a warm-up
  transfer runs until the module moved one of the two queues to worker 1, then the measure.

The receiver's Gbit/s, the machine's busy cores over the transfer (pod_tcp's iperf, with its
ping beside one stream), and each worker's share of the packets; medians and the ratio
balanced / shared. The pods' own TCP stacks run on the same two cores, so this measures the
whole node, as a two-core node would run.

    sudo /usr/bin/python3 perf/run.py --scenario pod-balance [--runs R] [--seconds S]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "system"))

from . import common  # noqa: E402
from .pod_tcp import iperf  # noqa: E402
import fwdlab  # noqa: E402
from fwdlab import Daemon, Netns, sh, wait_until  # noqa: E402

SETUPS = ("shared", "balanced")
BALANCE = {"enabled": True, "interval_ms": 500, "load_threshold": 5, "improvement": 20}


def make(tmp: Path, tag: str, balanced: bool):
    extra = {"balance": BALANCE} if balanced else {}
    d = Daemon(str(tmp), f"pb{tag}", workers=(0, 1), extra=extra).start()
    pods = []
    try:
        for i in range(4):
            p = Netns(f"fwpb{fwdlab.RUN_ID}{tag}{i}"[:15])
            p.delete()
            sh(f"ip netns add {p.name}")
            pods.append(p)
            p.v4 = f"192.168.0.{i + 2}"
            d.ctl("endpoint", "add", "--id", p.name, "--netns", p.name, "--kind", "tun",
                  "--ipv4", p.v4, "--ipv6", f"fd00:10:244::{i + 2:x}", "--tun-queues", "1")
            p.worker = d.ctl("endpoint", "get", "--id", p.name)["worker"]
    except BaseException:
        close(d, pods)
        raise
    return d, pods


def close(d, pods):
    d.stop()
    for p in pods:
        p.delete()


def run(runs: int, seconds: float, log) -> dict:
    res = {"seconds": seconds, "runs": runs, "samples": {}, "moves": []}
    with tempfile.TemporaryDirectory(prefix="fwpb") as tmpd:
        tmp = Path(tmpd)
        for run_i in range(runs):
            for name in SETUPS:
                tag = f"{run_i}{SETUPS.index(name)}"
                d, pods = make(tmp, tag, name == "balanced")
                try:
                    a, b = [p for p in pods if p.worker == pods[0].worker][:2]
                    wait_until(lambda: a.run(f"ping -c 1 -W 1 {b.v4}", check=False).returncode
                               == 0, 30, interval=0.2, what="the pods reach each other")
                    if name == "balanced":
                        warm = b.popen(f"iperf3 -s -1 -B {b.v4}")
                        time.sleep(0.3)
                        cli = a.popen(f"iperf3 -4 -c {b.v4} -t 30")
                        try:
                            wait_until(lambda: d.ctl("balance")["moves"] >= 1, 20, interval=0.2,
                                       what="a queue moved")
                        finally:
                            cli.kill()
                            cli.wait(timeout=10)
                            warm.kill()
                            warm.wait(timeout=10)
                        res["moves"].append(d.ctl("balance")["last"])
                    for streams in (1, 4):
                        w0 = [w["rx_packets"] for w in d.stats()["workers"]]
                        r = iperf(types.SimpleNamespace(pods=(a, b), addr={4: b.v4}), 4,
                                  streams, seconds)
                        w1 = [w["rx_packets"] for w in d.stats()["workers"]]
                        tot = sum(y - x for x, y in zip(w0, w1)) or 1
                        r["worker_share"] = [(y - x) / tot for x, y in zip(w0, w1)]
                        res["samples"].setdefault(f"{name}/{streams}", []).append(r)
                        log(f"pod-balance run {run_i + 1}/{runs}: {name:8s} {streams} stream(s): "
                            f"{r['gbps']:6.2f} Gbit/s, {r['cores_busy']:.2f} cores busy, worker "
                            f"shares {', '.join(f'{s:.0%}' for s in r['worker_share'])}")
                finally:
                    close(d, pods)
    return res


def report(res: dict) -> str:
    def med(name, key):
        v = [x[key] for x in res["samples"].get(name, [])]
        return statistics.median(v) if v else None
    lines = [f"## pod-balance: TCP between two tun pods on one worker (iperf3 IPv4, "
             f"{res['seconds']:g} s, medians of {res['runs']})", "",
             "| streams | shared Gbit/s | balanced Gbit/s | ratio | shared cores busy | "
             "balanced cores busy |", "|---:|---:|---:|---:|---:|---:|"]
    for streams in (1, 4):
        s, b = med(f"shared/{streams}", "gbps"), med(f"balanced/{streams}", "gbps")
        cs, cb = med(f"shared/{streams}", "cores_busy"), med(f"balanced/{streams}", "cores_busy")
        ratio = f"{b / s:.2f}x" if s and b else "-"
        lines.append(f"| {streams} | {s:.2f} | {b:.2f} | {ratio} | {cs:.2f} | {cb:.2f} |")
    if res["moves"]:
        lines += ["", "The balancer's decisions: " + "; ".join(m["why"] for m in res["moves"])
                  + "."]
    return "\n".join(lines) + "\n"


def main(args, out_dir: Path, stem: str, log) -> int:
    return common.run_pod_scenario("pod-balance", "namespaces, the daemon",
                                   {"iperf3": "iperf3", "ping": "iputils-ping"},
                                   run, report, args, out_dir, stem, log)
