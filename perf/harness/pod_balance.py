"""pod-balance: the workers' load balancing (control/balance.hpp, issue 21) on this machine's
two cores, the control thread on core 0 beside worker 0.

One daemon, two workers (cores 0 and 1), four `tun` pods with one queue each, given to the
workers in turn: pods 0 and 2 on worker 0, pods 1 and 3 on worker 1. Two TCP transfers at once
(iperf3, IPv4, one stream each), pod 0 to pod 1 and pod 2 to pod 3: a sender's queue carries
its data, a receiver's the ACKs, so both heavy queues are worker 0's. Two set-ups, alternating
per run:

- **shared**: balancing off: worker 0 reads both senders' queues;
- **balanced**: balancing on (every 500 ms, a worker at 5 %, a gain of 20 %): warm-up transfers
  run until the module moved one sender's queue to worker 1, then the measure.

The sum of the receivers' Gbit/s, the machine's busy cores over the transfers (/proc/stat, nice
time left out) and each worker's share of the packets; medians and the ratio balanced /
shared. The pods' own TCP stacks run on the same two cores, so this measures the whole node,
as a two-core node would run.

    sudo /usr/bin/python3 perf/run.py --scenario pod-balance [--runs R] [--seconds S]
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "system"))

from . import common  # noqa: E402
from .pod_tcp import cpu_busy  # noqa: E402
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


def transfers(pairs, seconds):
    """Two iperf3 transfers at once; the sum of the receivers' Gbit/s and the busy cores."""
    srvs = [r.popen(f"iperf3 -s -1 -B {r.v4}") for _, r in pairs]
    time.sleep(0.3)
    try:
        c0, t0 = cpu_busy(), time.monotonic()
        clis = [snd.popen(f"iperf3 -J -4 -c {r.v4} -t {seconds:g}") for snd, r in pairs]
        outs = [c.communicate(timeout=seconds + 60)[0] for c in clis]
        c1, t1 = cpu_busy(), time.monotonic()
    finally:
        for srv in srvs:
            srv.wait(timeout=20)
    gbps = sum(json.loads(o)["end"]["sum_received"]["bits_per_second"] for o in outs) / 1e9
    return {"gbps": gbps, "cores_busy": (c1 - c0) / (t1 - t0)}


def run(runs: int, seconds: float, log) -> dict:
    res = {"seconds": seconds, "runs": runs, "samples": {}, "moves": []}
    with tempfile.TemporaryDirectory(prefix="fwpb") as tmpd:
        tmp = Path(tmpd)
        for run_i in range(runs):
            for name in SETUPS:
                tag = f"{run_i}{SETUPS.index(name)}"
                d, pods = make(tmp, tag, name == "balanced")
                try:
                    senders = [p for p in pods if p.worker == pods[0].worker]
                    receivers = [p for p in pods if p not in senders]
                    pairs = list(zip(senders, receivers))
                    for snd, r in pairs:
                        wait_until(lambda snd=snd, r=r: snd.run(
                            f"ping -c 1 -W 1 {r.v4}", check=False).returncode == 0,
                            30, interval=0.2, what="the pods reach each other")
                    if name == "balanced":
                        srvs = [r.popen(f"iperf3 -s -1 -B {r.v4}") for _, r in pairs]
                        time.sleep(0.3)
                        clis = [snd.popen(f"iperf3 -4 -c {r.v4} -t 30") for snd, r in pairs]
                        try:
                            wait_until(lambda: d.ctl("balance")["moves"] >= 1, 20, interval=0.2,
                                       what="a queue moved")
                        finally:
                            for p in clis + srvs:
                                p.kill()
                                p.wait(timeout=10)
                        res["moves"].append(d.ctl("balance")["last"])
                    w0 = [w["rx_packets"] for w in d.stats()["workers"]]
                    r = transfers(pairs, seconds)
                    w1 = [w["rx_packets"] for w in d.stats()["workers"]]
                    tot = sum(y - x for x, y in zip(w0, w1)) or 1
                    r["worker_share"] = [(y - x) / tot for x, y in zip(w0, w1)]
                    res["samples"].setdefault(name, []).append(r)
                    log(f"pod-balance run {run_i + 1}/{runs}: {name:8s}: {r['gbps']:6.2f} Gbit/s, "
                        f"{r['cores_busy']:.2f} cores busy, worker shares "
                        f"{', '.join(f'{x:.0%}' for x in r['worker_share'])}")
                finally:
                    close(d, pods)
    return res


def report(res: dict) -> str:
    def med(name, key):
        v = [x[key] for x in res["samples"].get(name, [])]
        return statistics.median(v) if v else None
    s, b = med("shared", "gbps"), med("balanced", "gbps")
    shares = {n: [statistics.median(x["worker_share"][w] for x in res["samples"].get(n, []))
                  for w in (0, 1)] for n in SETUPS if res["samples"].get(n)}
    lines = [f"## pod-balance: two TCP transfers whose senders share a worker (iperf3 IPv4, "
             f"{res['seconds']:g} s, medians of {res['runs']})", "",
             "| set-up | Gbit/s (both transfers) | cores busy | packets read by worker 0 / 1 |",
             "|---|---:|---:|---|"]
    for n in SETUPS:
        if n in shares:
            lines.append(f"| {n} | {med(n, 'gbps'):.2f} | {med(n, 'cores_busy'):.2f} | "
                         f"{shares[n][0]:.0%} / {shares[n][1]:.0%} |")
    if s and b:
        lines += ["", f"Balanced / shared: {b / s:.2f}x."]
    if res["moves"]:
        lines += ["", "The balancer's decisions: " + "; ".join(m["why"] for m in res["moves"])
                  + "."]
    return "\n".join(lines) + "\n"


def main(args, out_dir: Path, stem: str, log) -> int:
    return common.run_pod_scenario("pod-balance", "namespaces, the daemon",
                                   {"iperf3": "iperf3", "ping": "iputils-ping"},
                                   run, report, args, out_dir, stem, log)
