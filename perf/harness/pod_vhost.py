"""pod-vhost: DPDK pods on vhost-user, one pod to another through dpdk-fwd, against dpdk-testpmd
forwarding between the same two vhost-user ports, in one run (issue 17's goal: 0.9x).

Both set-ups have the same two pods, played by one dpdk-testpmd on core 0 with three ports: a
pcap port replaying 64 flows of 64-byte UDP frames from pod A to pod B (`infinite_rx`), pod A's
`net_virtio_user` and pod B's. `--port-topology=chained` forwards pcap -> A (pod A sends the
set), A -> B (pod A receives nothing) and B -> pcap (what reaches pod B is counted, then
dropped). The switch between the pods runs on core 1:

- **dpdk-fwd**: one worker; the pods are vhost-user endpoints (A 192.168.0.50, B 192.168.0.51,
  each with its MAC; the sockets are dpdk-fwd's, the pods connect): every frame is dequeued from
  A's port, checked (anti-spoofing), routed (B's /32), its TTL decremented and MACs rewritten,
  and enqueued on B's port.
- **testpmd vhost<->vhost**: dpdk-testpmd in io mode with two `net_vhost` ports (the sockets the
  pods connect to), each forwarded to the other, no header looked at: the vhost-user I/O
  floor.

The figure is packets a second reaching pod B (the pods' testpmd's RX count on B's port over S
seconds after a warm-up), the median of R runs, set-ups alternating; `generator_full` is the
share of the frames pod A read from its pcap that its vhost ring had no room for (above a few
percent, the switch set the pace, as it should).

    sudo /usr/bin/python3 perf/run.py --scenario pod-vhost [--runs R] [--seconds S]
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import common
from .common import Proc, Unavailable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "system"))

from fwdlab import Daemon  # noqa: E402

TESTPMD = "dpdk-testpmd"
POD_A = ("192.168.0.50", "02:00:00:00:0a:01")
POD_B = ("192.168.0.51", "02:00:00:00:0b:01")
GATEWAY_MAC = "ee:ee:ee:ee:ee:ee"
FLOWS = 64
GOAL = 0.9
SETUPS = ("dpdk-fwd", "testpmd-vhost")
LABEL = {"dpdk-fwd": "dpdk-fwd (route, one worker)",
         "testpmd-vhost": "testpmd io vhost<->vhost"}
SWITCH_CORE = 1


def write_pcap(path: Path) -> None:
    """FLOWS UDP frames from pod A to pod B, 60 bytes (64 on the wire), to the gateway's MAC
    as a Calico pod sends them."""
    from scapy.all import IP, UDP, Ether, Raw, wrpcap
    frames = [Ether(src=POD_A[1], dst=GATEWAY_MAC) / IP(src=POD_A[0], dst=POD_B[0], ttl=64)
              / UDP(sport=1024 + i, dport=5201) / Raw(bytes(18)) for i in range(FLOWS)]
    wrpcap(str(path), frames)


def pods_stats(prefix: str) -> dict:
    """The pods' testpmd: frames read from the pcap (port 0), sent by pod A (port 1), received
    by pod B (port 2)."""
    st = [common.telemetry(prefix, f"/ethdev/stats,{p}")["/ethdev/stats"] for p in range(3)]
    return {"read": st[0]["ipackets"], "sent": st[1]["opackets"], "got": st[2]["ipackets"],
            "t": time.monotonic()}


def start_pods(pcap: Path, sock_a: str, sock_b: str, tag: str, log: Path) -> common.Generator:
    gen = common.Generator("the pods (testpmd)", f"pv{os.getpid() % 10**5}{tag}", pods_stats)
    argv = [shutil.which(TESTPMD), "--lcores", f"0@{common.MAIN_CORE},1@{common.MAIN_CORE}",
            "--in-memory", "--single-file-segments", "--no-pci", "-m", "256",
            "--file-prefix", gen.prefix, "--log-level=*:warning",
            "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
            "--vdev", f"net_virtio_user0,path={sock_a},mac={POD_A[1]},queues=1,queue_size=1024",
            "--vdev", f"net_virtio_user1,path={sock_b},mac={POD_B[1]},queues=1,queue_size=1024",
            "--", "--forward-mode=io", "--port-topology=chained", "--nb-cores=1", "--burst=32",
            "--auto-start", "--stats-period=3600", "--no-lsc-interrupt", "--no-mlockall",
            "--total-num-mbufs=16384"]
    gen.start(argv, log)
    return gen


def wait_delivery(gen: common.Generator, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pods_stats(gen.prefix)["got"] > 0:
                return
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise Unavailable(f"nothing reached pod B within {timeout:.0f} s:\n{gen.proc.tail()}")


def measure(gen: common.Generator, warmup: float, seconds: float) -> dict:
    time.sleep(warmup)
    a = pods_stats(gen.prefix)
    time.sleep(seconds)
    b = pods_stats(gen.prefix)
    read, sent = b["read"] - a["read"], b["sent"] - a["sent"]
    return {"mpps": (b["got"] - a["got"]) / (b["t"] - a["t"]) / 1e6,
            "generator_full": round(1 - sent / read, 4) if read else None}


def run_dpdkfwd(tmp: Path, pcap: Path, tag: str, warmup: float, seconds: float) -> dict:
    d = Daemon(str(tmp), f"pv{tag}", workers=(SWITCH_CORE,)).start()
    gen = None
    try:
        socks = []
        for name, (addr, mac) in (("pod-a", POD_A), ("pod-b", POD_B)):
            ep = d.ctl("endpoint", "add", "--id", name, "--kind", "vhost-user", "--ipv4", addr,
                       "--mac", mac)
            socks.append(ep["vhost_socket"])
        gen = start_pods(pcap, socks[0], socks[1], tag, tmp / f"pods-{tag}.log")
        wait_delivery(gen)
        r = measure(gen, warmup, seconds)
        drops = {k: v for k, v in d.stats()["drops"].items() if v}
        r["drops"] = drops
        return r
    finally:
        if gen is not None:
            gen.stop()
        d.stop()


def run_testpmd(tmp: Path, pcap: Path, tag: str, warmup: float, seconds: float) -> dict:
    prefix = f"pvs{os.getpid() % 10**5}{tag}"
    sock_a, sock_b = str(tmp / f"sw{tag}-a.sock"), str(tmp / f"sw{tag}-b.sock")
    argv = [shutil.which(TESTPMD), "--lcores", f"0@{common.MAIN_CORE},1@{SWITCH_CORE}",
            "--in-memory", "--no-pci", "-m", "256", "--file-prefix", prefix,
            "--log-level=*:warning",
            "--vdev", f"net_vhost0,iface={sock_a},queues=1",
            "--vdev", f"net_vhost1,iface={sock_b},queues=1",
            "--", "--forward-mode=io", "--nb-cores=1", "--burst=32", "--auto-start",
            "--stats-period=3600", "--no-mlockall", "--total-num-mbufs=16384"]
    sw = Proc(argv, tmp / f"switch-{tag}.log")
    gen = None
    try:
        end = time.monotonic() + 30
        while not (os.path.exists(sock_a) and os.path.exists(sock_b)):
            if not sw.alive() or time.monotonic() > end:
                raise Unavailable(f"testpmd's vhost sockets did not appear:\n{sw.tail()}")
            time.sleep(0.1)
        gen = start_pods(pcap, sock_a, sock_b, tag, tmp / f"pods-{tag}.log")
        wait_delivery(gen)
        return measure(gen, warmup, seconds)
    finally:
        if gen is not None:
            gen.stop()
        sw.stop()
        common.remove_runtime_dir(prefix)


def run(runs: int, seconds: float, log) -> dict:
    res = {"seconds": seconds, "runs": runs, "samples": {k: [] for k in SETUPS},
           "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="fwpv") as d:
        tmp = Path(d)
        pcap = tmp / "pod-a-to-b.pcap"
        write_pcap(pcap)
        for i in range(runs):
            for k, name in enumerate(SETUPS):
                tag = f"{i}{k}"
                fn = run_dpdkfwd if name == "dpdk-fwd" else run_testpmd
                r = fn(tmp, pcap, tag, 1.0, seconds)
                res["samples"][name].append(r)
                log(f"pod-vhost run {i + 1}/{runs}: {LABEL[name]:30s} {r['mpps']:.3f} Mpps "
                    f"to pod B, generator full {r['generator_full']}")
    res["load_after"] = os.getloadavg()[0]
    return res


def report(res: dict) -> str:
    med = {k: statistics.median(x["mpps"] for x in v) for k, v in res["samples"].items() if v}
    full = {k: statistics.median(x["generator_full"] or 0 for x in v)
            for k, v in res["samples"].items() if v}
    ratio = med["dpdk-fwd"] / med["testpmd-vhost"] if med.get("testpmd-vhost") else None
    lines = [f"## pod-vhost: pod to pod over vhost-user ({res['seconds']:g} s, medians of "
             f"{res['runs']}, 64-byte UDP, {FLOWS} flows)", "",
             "| switch (core 1) | Mpps to pod B | pod A's ring full |", "|---|---:|---:|"]
    for k in SETUPS:
        if k in med:
            lines.append(f"| {LABEL[k]} | {med[k]:.3f} | {full[k]:.1%} |")
    if ratio is not None:
        lines += ["", f"dpdk-fwd / testpmd: {ratio:.2f}x (goal {GOAL}x: "
                  f"{'met' if ratio >= GOAL else 'not met'})."]
    lines += [f"Load average before / after: {res['load_before']:.1f} / "
              f"{res.get('load_after', 0):.1f}.", ""]
    return "\n".join(lines)


def main(args, out_dir: Path, stem: str, log) -> int:
    return common.run_pod_scenario("pod-vhost", "hugepages, vhost-user sockets",
                                   {TESTPMD: "dpdk"},
                                   run, report, args, out_dir, stem, log)
