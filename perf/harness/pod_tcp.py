"""pod-tcp: TCP between kernel pods (iperf3), dpdk-fwd against Linux doing the same job the
way Calico's standard dataplane does, in one run (issue 17).

Four set-ups, each made, measured and removed in turn, so that background load falls on
all of them alike (the rounds alternate too):

- **linux, one node**: a host namespace routing two pods as Felix sets them up (veth pairs,
  the host side ee:ee:ee:ee:ee:ee with proxy ARP, /32 and /128 routes; the pods' gateway
  169.254.1.1 and fe80::ecee:eeff:feee:eeee). `tests/system/bench_pod_kinds.py`'s.
- **dpdk-fwd, one node**: one daemon, two workers (both cores), the two pods of kind `tun`
  (a tap in the pod opened with the virtio-net header and checksum / TSO offloads).
- **linux, two nodes**: two node namespaces on a ToR bridge (veth), each with one pod as
  above and Felix's VXLAN devices (`vxlan.calico` VNI 4096 port 4789 and `vxlan-v6.calico`,
  the derived VTEP MACs, the other node's block via its tunnel address onlink, a permanent
  neighbour and an FDB entry for it).
- **dpdk-fwd, two nodes**: two daemons (one worker each, one per core) in node namespaces,
  their net_tap uplinks on a ToR bridge, a real etcd on the ToR as the cluster store, both
  pools VXLAN Always: the nodes register, claim blocks and route to each other's blocks
  over VXLAN as in tests/system/test_vxlan.py. Each has one `tun` pod with addresses from
  IPAM and MTU 1430 (as `cni.add` and Felix give a dual-stack pod of VXLAN pools); the
  Linux pods of the two-node set-up get the same.

Per set-up, family (IPv4, IPv6) and stream count (1, 4): iperf3 for S seconds, the
receiver's Gbit/s; the machine's CPU over the same window from /proc/stat (user + system +
irq + softirq + steal; `nice` time is left out, so a niced background job does not count,
but its system time does), as cores busy and CPU seconds per Gbit; and with one stream, the
median RTT of pings between the two pods while iperf3 runs (ping -i 0.05). Once per run, the
one-node dpdk-fwd daemon with 10 idle tun pods: its CPU over 10 s.

    sudo /usr/bin/python3 perf/run.py --scenario pod-tcp [--runs R] [--seconds S]
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "system"))

import bench_pod_kinds  # noqa: E402
from . import common  # noqa: E402
import fwdlab  # noqa: E402
from fwdlab import (Bridge, Daemon, Etcd, Netns, calico_veth_pod,  # noqa: E402
                    felix_vxlan_devices, felix_vxlan_peer, ipam_allocate, ippools_yaml,
                    uplink_daemon_config, uplink_ifname, vtep_mac, wait_until)

SETUPS = ("dpdk-fwd-1node", "linux-1node", "dpdk-fwd-2nodes", "linux-2nodes")
LABEL = {"linux-1node": "Linux, one node", "dpdk-fwd-1node": "dpdk-fwd, one node",
         "linux-2nodes": "Linux, two nodes (VXLAN)", "dpdk-fwd-2nodes": "dpdk-fwd, two nodes (VXLAN)"}
# issue 17's goals: dpdk-fwd / Linux
GOAL = {"1node": 1.0, "2nodes": 0.8}
TOR_ADDR = "10.0.0.254"
NODES = {"a": ("10.0.0.1", "fd00::1"), "b": ("10.0.0.2", "fd00::2")}
# the Linux two-node set-up's blocks: (tunnel address, pod) per node and family
LINUX_BLOCKS = {"a": {4: ("192.168.0.0/26", "192.168.0.1", "192.168.0.2"),
                      6: ("fd00:10:244::/122", "fd00:10:244::1", "fd00:10:244::2")},
                "b": {4: ("192.168.0.64/26", "192.168.0.65", "192.168.0.66"),
                      6: ("fd00:10:244::40/122", "fd00:10:244::41", "fd00:10:244::42")}}
# what cni.add gives a dual-stack pod of VXLAN pools (CniService::pod_mtu), and Felix a pod
# when VXLAN over IPv6 is on: the node MTU 1500 less VXLAN over IPv6's 70 bytes
POD_MTU_VXLAN = 1500 - 70


def cpu_busy() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat; nice time left out)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, _nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Setup:
    """Two pods that talk: .pods = (client, server), .addr = {4: server v4, 6: server v6};
    close() removes everything made."""

    def __init__(self):
        self.made: list = []       # namespaces, deleted in reverse
        self.daemons: list = []
        self.etcd = None
        self.pods = ()
        self.addr = {}
        self.mtu = None

    def ns(self, name):
        n = Netns(f"fwpt{fwdlab.RUN_ID}{name}"[:15])
        self.made.append(n)
        return n

    def close(self):
        for d in self.daemons:
            d.stop()
        if self.etcd is not None:
            self.etcd.stop()
        for n in reversed(self.made):
            n.delete()


def linux_1node(s: Setup, tmp: Path, tag: str):
    made, pods = bench_pod_kinds.linux_pods(f"pt{tag}")
    s.made += made
    s.pods = tuple(pods)
    s.addr = {4: bench_pod_kinds.V4[1], 6: bench_pod_kinds.V6[1]}


def fwd_1node(s: Setup, tmp: Path, tag: str):
    d, pods = bench_pod_kinds.dataplane_pods(str(tmp), f"pt{tag}", "tun")
    s.daemons.append(d)
    s.made += pods
    s.pods = tuple(pods)
    s.addr = {4: bench_pod_kinds.V4[1], 6: bench_pod_kinds.V6[1]}


def tor(s: Setup, tag: str):
    t = s.ns(f"t{tag}")
    br = Bridge(t)
    t.run(f"ip addr add {TOR_ADDR}/24 dev {br.name}")
    return t, br


def linux_2nodes(s: Setup, tmp: Path, tag: str):
    _, br = tor(s, tag)
    nodes, pods = {}, {}
    for k, (a4, a6) in NODES.items():
        n = s.ns(f"n{k}{tag}")
        br.plug_veth(n, f"pt{fwdlab.RUN_ID}{k}{tag}"[:15], "eth0")
        n.run("sysctl -qw net.ipv6.conf.eth0.accept_dad=0")
        n.run("ip link set eth0 up")
        n.run(f"ip addr add {a4}/24 dev eth0")
        n.run(f"ip addr add {a6}/64 dev eth0 nodad")
        n.run(f"ip route add default via {TOR_ADDR}")  # proxy ARP needs another way out
        felix_vxlan_devices(n, f"linux-{k}", a4, a6, 1450, 1430)
        n.run(f"ip addr add {LINUX_BLOCKS[k][4][1]}/32 dev vxlan.calico")
        n.run(f"ip -6 addr add {LINUX_BLOCKS[k][6][1]}/128 dev vxlan-v6.calico nodad")
        p = s.ns(f"p{k}{tag}")
        calico_veth_pod(n, p, f"cali{k}", LINUX_BLOCKS[k][4][2], LINUX_BLOCKS[k][6][2],
                        POD_MTU_VXLAN)
        nodes[k], pods[k] = n, p
    for k, other in (("a", "b"), ("b", "a")):
        n = nodes[k]
        for fam in (4, 6):
            block, tun, _ = LINUX_BLOCKS[other][fam]
            felix_vxlan_peer(n, fam == 6, tun, vtep_mac(f"linux-{other}", fam == 6),
                             NODES[other][0 if fam == 4 else 1], [block])
    s.pods = (pods["a"], pods["b"])
    s.addr = {4: LINUX_BLOCKS["b"][4][2], 6: LINUX_BLOCKS["b"][6][2]}


def fwd_2nodes(s: Setup, tmp: Path, tag: str):
    t, br = tor(s, tag)
    etcd = Etcd(str(tmp / f"etcd{tag}"), ns=t, host=TOR_ADDR).start()
    s.etcd = etcd
    spec = etcd.spec("/pod-tcp")
    pools = tmp / f"pools{tag}.yaml"
    pools.write_text(ippools_yaml("192.168.0.0/16", "fd00:10:244::/48", "Always", "Always"))
    r = etcd.run([fwdlab.FWDCTL, "apply", "--store", spec, "-f", pools])
    if r.returncode != 0:
        raise RuntimeError(f"fwdctl apply of the pools: {r.stdout}{r.stderr}")
    pods = {}
    for core, (k, (a4, a6)) in enumerate(NODES.items()):
        n = s.ns(f"n{k}{tag}")
        ul = f"{k}{tag}"
        extra = uplink_daemon_config(ul, core, f"02:00:00:00:0{core + 1}:01", f"{a4}/24",
                                     f"{a6}/64", extra={
                                         # the node's own traffic (etcd) through the
                                         # dataplane's host tap, as in test_vxlan.py
                                         "host": {"tap": "fwdhost", "punt_rate_pps": 20000},
                                         "ipam": {"store": spec, "sync_ms": 100},
                                         "tables": {"ipv4_tbl8s": 1024, "ipv6_tbl8s": 4096}})
        d = Daemon(str(tmp), f"pt{k}{tag}", extra=extra, netns=n)
        cfg = json.loads(d.config.read_text())
        cfg["node_name"] = f"node-{k}"
        d.config.write_text(json.dumps(cfg, indent=2))
        s.daemons.append(d.start())
        br.adopt(uplink_ifname(ul), n)
    # both registered (and so the overlay on): the pods then get the MTU of the encapsulation
    names = {f"node-{k}" for k in NODES}
    wait_until(lambda: all(names <= {x["metadata"]["name"] for x in d.ctl("node", "list")["nodes"]}
                           for d in s.daemons), 60, interval=0.2, what="both nodes registered")
    for k, d in zip(NODES, s.daemons):
        name = f"node-{k}"
        (p4, p6), = ipam_allocate(etcd, spec, name, f"pt{k}")
        p = s.ns(f"p{k}{tag}")
        d.add_pod(p, ipv4=p4, ipv6=p6, kind="tun", mtu=POD_MTU_VXLAN)
        pods[k] = (p, p4, p6)
    s.pods = (pods["a"][0], pods["b"][0])
    s.addr = {4: pods["b"][1], 6: pods["b"][2]}
    s.mtu = int(s.pods[0].run("cat /sys/class/net/eth0/mtu").stdout)


def reachable(s: Setup, timeout=30):
    for fam in (4, 6):
        wait_until(lambda: s.pods[0].run(f"ping -{fam} -c 1 -W 1 {s.addr[fam]}",
                                         check=False).returncode == 0,
                   timeout, interval=0.2, what=f"IPv{fam} ping between the pods")


def iperf(s: Setup, fam: int, streams: int, seconds: float) -> dict:
    """One iperf3 run; the machine's busy CPU over it, and with one stream the ping RTT."""
    client, server = s.pods
    addr = s.addr[fam]
    srv = server.popen(f"iperf3 -s -1 -B {addr}")
    time.sleep(0.3)
    pinger = None
    if streams == 1:
        pinger = client.popen(f"ping -{fam} -i 0.05 -w {seconds:g} {addr}")
    try:
        c0, t0 = cpu_busy(), time.monotonic()
        out = client.run(f"iperf3 -J -{fam} -c {addr} -P {streams} -t {seconds:g}",
                         timeout=seconds + 60).stdout
        c1, t1 = cpu_busy(), time.monotonic()
    finally:
        srv.wait(timeout=20)
    res = json.loads(out)["end"]
    gbps = res["sum_received"]["bits_per_second"] / 1e9
    r = {"gbps": gbps, "retransmits": res["sum_sent"].get("retransmits", 0),
         "cores_busy": (c1 - c0) / (t1 - t0)}
    r["cpu_s_per_gbit"] = r["cores_busy"] / gbps if gbps > 0 else None
    if pinger is not None:
        ping_out, _ = pinger.communicate(timeout=seconds + 30)
        rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", ping_out)]
        r["rtt_ms"] = statistics.median(rtts) if rtts else None
    return r


def idle_with_pods(tmp: Path, tag: str, seconds: float = 10.0) -> dict:
    """A node with 10 idle tun pods: the daemon's CPU (share of one core) over `seconds`."""
    s = Setup()
    try:
        d = Daemon(str(tmp), f"ptidle{tag}", workers=(0, 1)).start()
        s.daemons.append(d)
        for i in range(10):
            p = s.ns(f"i{i}{tag}")
            d.add_pod(p, ipv4=f"192.168.1.{i + 2}", ipv6=f"fd00:10:244::1:{i + 2:x}", kind="tun")
        time.sleep(3)
        c0, t0 = d.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = d.cpu_seconds(), time.monotonic()
        return {"pods": 10, "core_share": (c1 - c0) / (t1 - t0)}
    finally:
        s.close()


MAKERS = {"linux-1node": linux_1node, "dpdk-fwd-1node": fwd_1node,
          "linux-2nodes": linux_2nodes, "dpdk-fwd-2nodes": fwd_2nodes}


def run(runs: int, seconds: float, log) -> dict:
    """Measures every set-up runs times (set-ups alternating); returns the raw results."""
    res = {"seconds": seconds, "runs": runs, "samples": {}, "idle": [], "mtu_2nodes": None,
           "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="fwpt") as d:
        tmp = Path(d)
        for run_i in range(runs):
            for name in SETUPS:
                tag = f"{run_i}{SETUPS.index(name)}"
                s = Setup()
                try:
                    log(f"pod-tcp run {run_i + 1}/{runs}: {LABEL[name]}: setting up")
                    MAKERS[name](s, tmp, tag)
                    if name == "dpdk-fwd-2nodes":
                        res["mtu_2nodes"] = s.mtu
                    reachable(s)
                    for fam in (4, 6):
                        for streams in (1, 4):
                            r = iperf(s, fam, streams, seconds)
                            res["samples"].setdefault(f"{name}/{fam}/{streams}", []).append(r)
                            rtt = r.get("rtt_ms")
                            log(f"pod-tcp run {run_i + 1}/{runs}: {LABEL[name]:28s} IPv{fam} "
                                f"{streams} stream(s): {r['gbps']:6.2f} Gbit/s, "
                                f"{r['cores_busy']:.2f} cores busy"
                                + (f", ping {rtt:.3f} ms" if rtt is not None else ""))
                finally:
                    s.close()
            log(f"pod-tcp run {run_i + 1}/{runs}: dpdk-fwd with 10 idle tun pods")
            res["idle"].append(idle_with_pods(tmp, f"{run_i}"))
    res["load_after"] = os.getloadavg()[0]
    return res


def median(samples, key):
    v = [x[key] for x in samples if x.get(key) is not None]
    return statistics.median(v) if v else None


def report(res: dict) -> str:
    """The markdown table of a run's results."""
    lines = [f"## pod-tcp: TCP between kernel pods (iperf3, {res['seconds']:g} s, medians of "
             f"{res['runs']})", "",
             "| path | family | streams | dpdk-fwd Gbit/s | Linux Gbit/s | ratio | goal | "
             "dpdk-fwd CPU s / Gbit | Linux CPU s / Gbit | ping RTT dpdk-fwd / Linux (ms) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for where in ("1node", "2nodes"):
        for fam in (4, 6):
            for streams in (1, 4):
                f = res["samples"].get(f"dpdk-fwd-{where}/{fam}/{streams}", [])
                lx = res["samples"].get(f"linux-{where}/{fam}/{streams}", [])
                gf, gl = median(f, "gbps"), median(lx, "gbps")
                cf, cl = median(f, "cpu_s_per_gbit"), median(lx, "cpu_s_per_gbit")
                rf, rl = median(f, "rtt_ms"), median(lx, "rtt_ms")
                ratio = gf / gl if gf is not None and gl else None

                def num(x, fmt):
                    return format(x, fmt) if x is not None else "-"
                met = "" if ratio is None else (" (met)" if ratio >= GOAL[where] else " (not met)")
                lines.append(
                    f"| {'one node' if where == '1node' else 'two nodes, VXLAN'} | IPv{fam} | "
                    f"{streams} | {num(gf, '.2f')} | {num(gl, '.2f')} | {num(ratio, '.2f')}x | "
                    f"{GOAL[where]:.1f}x{met} | {num(cf, '.3f')} | {num(cl, '.3f')} | "
                    + (f"{num(rf, '.3f')} / {num(rl, '.3f')}" if streams == 1 else "") + " |")
    idle = [x["core_share"] for x in res["idle"]]
    lines += ["", f"Idle node with 10 tun pods: dpdk-fwd used {statistics.median(idle):.2%} of a "
              f"core (median of {len(idle)}; goal under 1%)." if idle else "",
              f"Pod MTU on two nodes: {res['mtu_2nodes']} (dpdk-fwd's for VXLAN; the Linux pods "
              "got the same).", f"Load average before / after: {res['load_before']:.1f} / "
              f"{res.get('load_after', 0):.1f}.", ""]
    return "\n".join(lines)


def main(args, out_dir: Path, stem: str, log) -> int:
    return common.run_pod_scenario("pod-tcp", "namespaces, the daemon",
                                   {"iperf3": "iperf3", "ping": "iputils-ping"},
                                   run, report, args, out_dir, stem, log)
