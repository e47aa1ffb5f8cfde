#!/usr/bin/env python3
"""The soak: the lab (scripts/lab.py) under mixed traffic and pod churn for MINUTES, sampled
every interval; fails when something grows, leaks or drops without a cause.

  soak.py [MINUTES] [--interval SECONDS] [--out DIR]

MINUTES (default 60) of, side by side:
  traffic  back to back, gently (one job at a time, a pause between): ping, TCP (tcp_xfer.py)
           and UDP (udp_seq.py) bursts between pods on one node and across nodes, IPv4 and
           IPv6; TCP to the echo Service's ClusterIP (DNAT to the two backends); ping and TCP
           to the ToR's loopbacks (natOutgoing in the default profile); plus a ping stream
           (5 a second, each family) across nodes for the whole run;
  churn    on every node in turn: a pod added through the CNI plugin (lab.pod_add), pinged
           from a pod on another node and one on its own, deleted (lab.pod_del);
  samples  every interval, per node daemon: RSS (VmRSS), DPDK heap in use, mbufs in use,
           table sizes (routes, endpoints, neighbors, conntrack flows, NAT pools, service
           frontends, IPAM blocks), drops by reason, open fds, links in its namespace; for
           the lab: etcd's RSS, lab namespaces, links of the root namespace, the store's
           blocks and addresses.

Output in DIR (default /tmp/soak-<date>): samples.csv (a row per sample per node, and a
"lab" row), summary.json (the verdict, every series' trend, drops, traffic), soak.png (RSS
and heap, mbufs, tables, drops per minute, fds, namespaces and links over time). A table at
the end; exit 1 naming what grew, leaked, dropped without a cause or stopped answering
(the rule: scripts/soak_check.py).

A lab that is up is used as it is (the default profile or --bgp); else one is brought up
(the default profile, without the demo's checks) and left up: ./run.sh demo --down."""
import argparse
import csv
import ipaddress
import itertools
import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lab  # noqa: E402  (puts tests/system on the path too)
import soak_check  # noqa: E402
from fwdlab import Netns, sh  # noqa: E402

UDP_SEQ = lab.ROOT / "tests" / "system" / "udp_seq.py"
TCP_BYTES = 1 << 20  # per TCP job: a burst, not a benchmark
UDP_RATE, UDP_SECONDS = 200, 2  # packets/s per UDP job
JOB_PAUSE = 0.5  # seconds between traffic jobs
CHURN_PAUSE = 3.0  # seconds between churn cycles
STREAM_INTERVAL = 0.2  # the ping stream's
T0 = time.monotonic()


def log(msg):
    print(f"soak [{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------- the lab

def ensure_lab(out):
    """The running lab's state, or a new lab brought up (default profile, no checks)."""
    if lab.STATE.exists():
        st = lab.State.load()
        dead = [p["name"] for p in st["processes"] if not lab.alive(p)]
        planned = st.data.get("planned", [])
        if dead or len(st["nodes"]) != len(planned) or not st.data.get("services"):
            raise SystemExit(f"soak: the lab in {lab.STATE_DIR} is not whole (not running: "
                             f"{', '.join(dead) or 'none'}; nodes {sorted(st['nodes'])} of "
                             f"{planned}): ./run.sh demo --down, then run the soak again")
        log(f"using the lab that is up: {lab.describe(st)}")
        return st, False
    log("no lab is up: bringing one up (scripts/lab.py's default profile, without its checks)")
    args = argparse.Namespace(bgp=False, rr=False, ipv4_only=False, ipv6_only=False, pods=2,
                              keep=False)
    brought = lab.bring_up(args)
    if isinstance(brought, int):
        raise SystemExit("soak: the lab did not come up (its log above)")
    return brought[0], True


def daemon_pids(st):
    return {p["name"].split()[0]: p["pid"] for p in st["processes"] if p["kind"] == "dpdk-fwd"}


def etcd_pid(st):
    return next((p["pid"] for p in st["processes"] if p["kind"] == "etcd"), None)


def addr_of(pod, fam):
    """The pod's address of the family (from its CNI result)."""
    for a in pod.get("ips", []):
        ip = ipaddress.ip_interface(a).ip
        if ip.version == fam:
            return str(ip)
    raise RuntimeError(f"{pod['name']} has no IPv{fam} address")


# ---------------------------------------------------------------- traffic

class Results:
    """{kind: [ok, failed]} and the last failures' details, shared by the threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []

    def add(self, kind, ok, detail="", weight=1, failed=None):
        with self.lock:
            c = self.counts.setdefault(kind, [0, 0])
            if failed is None:
                c[0 if ok else 1] += weight
            else:
                c[0] += weight
                c[1] += failed
            if not ok or failed:
                self.failures.append(f"{time.monotonic() - T0:.0f}s {kind}: {detail}"[:240])
                del self.failures[:-50]


def udp_burst(src, dst, addr, port):
    """UDP_SECONDS at UDP_RATE from src to addr:port in dst; (ok, detail): at most 1 % lost."""
    rx = dst.popen(f"/usr/bin/python3 {UDP_SEQ} recv {addr} {port}", stdin=subprocess.PIPE)
    tx = None
    try:
        if rx.stdout.readline().strip() != "ready":
            return False, f"receiver did not start: {rx.stderr.read()[-200:]}"
        tx = src.popen(f"/usr/bin/python3 {UDP_SEQ} send {addr} {port} {UDP_RATE}",
                       stdin=subprocess.PIPE)
        tx.stdout.readline()  # "sending"
        time.sleep(UDP_SECONDS)
        sent, _ = tx.communicate("stop\n", timeout=20)
        n = json.loads(sent.strip().splitlines()[-1])["sent"]
        got, _ = rx.communicate(f"stop {n}\n", timeout=20)
        r = json.loads(got.strip().splitlines()[-1])
    finally:
        for p in (tx, rx):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    ok = n > 0 and r["missing"] <= n // 100
    return ok, f"{r['unique']}/{n} received, {r['missing']} missing"


def jobs_of(st):
    """[(kind, [fn, ...])]: every kind of traffic with the pod pairs (or clients) it runs
    between; a job is one fn of one kind, picked at random."""
    pods = [p for p in st["pods"] if not p["name"].startswith("soak-")]
    ns = {p["name"]: lab.NsRef(p["netns"]) for p in pods}
    by_node = {}
    for p in pods:
        by_node.setdefault(p["node"], []).append(p)
    names = sorted(by_node, key=lambda n: int(n[4:]))
    same = [(v[0], v[1]) for v in by_node.values() if len(v) > 1]
    cross = [(by_node[a][-1], by_node[names[(i + 1) % len(names)]][-1])
             for i, a in enumerate(names)] if len(names) > 1 else []
    backends = set(st["services"]["backends"])
    clients = [p for p in pods if p["name"] not in backends]
    port = itertools.count(6000)

    def next_port():
        return 6000 + next(port) % 2000

    kinds = []
    for fam in lab.fams(st):
        for where, pairs in (("same node", same), ("across nodes", cross)):
            kinds.append((f"ping {where} v{fam}", [
                lambda a=a, b=b, fam=fam: lab.ping(ns[a["name"]], addr_of(b, fam), count=5)
                for a, b in pairs]))
            kinds.append((f"tcp {where} v{fam}", [
                lambda a=a, b=b, fam=fam: lab.tcp(ns[a["name"]], ns[b["name"]], addr_of(b, fam),
                                                  next_port(), TCP_BYTES)
                for a, b in pairs]))
            kinds.append((f"udp {where} v{fam}", [
                lambda a=a, b=b, fam=fam: udp_burst(ns[a["name"]], ns[b["name"]],
                                                    addr_of(b, fam), next_port())
                for a, b in pairs]))
        vip = lab.SVC_IPS["echo"][0 if fam == 4 else 1]

        def svc(c, vip=vip):
            got, errors = lab.svc_client(ns[c["name"]], vip, lab.SVC_PORT, 4)
            return not errors and len(got) == 4, f"{len(got)}/4 answered {errors[:1]}"
        kinds.append((f"svc ClusterIP v{fam}", [lambda c=c, svc=svc: svc(c) for c in clients]))
        loop = lab.LOOP4 if fam == 4 else lab.LOOP6
        firsts = [by_node[n][0] for n in names]
        kinds.append((f"ping outside v{fam}", [
            lambda a=a, loop=loop: lab.ping(ns[a["name"]], loop, count=5) for a in firsts]))
        if st["profile"] == "vxlan":
            kinds.append((f"tcp outside v{fam}", [
                lambda a=a, loop=loop, fam=fam: lab.tcp_to_tor(
                    ns[a["name"]], loop, next_port(),
                    str(ipaddress.ip_interface(st["nodes"][a["node"]][f"ipv{fam}"]).ip),
                    TCP_BYTES)
                for a in firsts]))
    return [(k, fns) for k, fns in kinds if fns], cross, ns


def traffic_loop(kinds, results, stop):
    """One job after another: every kind in turn, a random pair of it each time."""
    rng = random.Random(20)
    for kind, fns in itertools.cycle(kinds):
        if stop.is_set():
            return
        try:
            ok, detail = rng.choice(fns)()
        except Exception as e:  # noqa: BLE001 - a job that breaks is a failed job
            ok, detail = False, f"error: {e}".splitlines()[0][:160]
        results.add(kind, ok, detail)
        stop.wait(JOB_PAUSE)


def ping_streams(st, cross, ns, seconds):
    """A ping every STREAM_INTERVAL across nodes, each family, for the whole run:
    [(kind, Popen)]."""
    if not cross:
        return []
    a, b = cross[0]
    out = []
    for fam in lab.fams(st):
        p = ns[a["name"]].popen(f"ping -{fam} -i {STREAM_INTERVAL} -W 2 -w {int(seconds) + 5} "
                                f"{addr_of(b, fam)}")
        out.append((f"ping stream v{fam} {a['name']}->{b['name']}", p))
    return out


def stream_result(p):
    """(transmitted, received) from a ping's summary, after SIGINT."""
    if p.poll() is None:
        p.send_signal(signal.SIGINT)  # ping prints its summary and ends
    out, _ = p.communicate(timeout=15)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    return (int(m[1]), int(m[2])) if m else (0, 0)


# ---------------------------------------------------------------- churn

def churn_loop(st, ns, results, stop, counts):
    """Every node in turn: a pod added through the CNI plugin, pinged from a pod of another
    node and one of its own node, deleted. Recorded in the lab's state while it exists (so
    --down takes it away if the soak dies)."""
    nodes = sorted(st["nodes"], key=lambda n: int(n[4:]))
    lab_pods = [p for p in st["pods"] if not p["name"].startswith("soak-")]
    for k in itertools.count():
        if stop.is_set():
            return
        node = nodes[k % len(nodes)]
        n = st["nodes"][node]
        name = f"soak-{node[4:]}-{k % 100}"
        pod = {"name": name, "node": node, "netns": f"lab-{name}",
               "netns_path": f"/var/run/netns/lab-{name}", "cid": uuid.uuid4().hex * 2,
               "conflist": n["conflist"], "host_netns": n["netns"],
               "plugin_dir": str(lab.CNI_PLUGIN_DIR), "attached": False}
        st.add("pods", pod)
        try:
            t0 = time.monotonic()
            try:
                Netns(pod["netns"])  # the container runtime's part
                pod["attached"] = True
                st.save()
                result = lab.pod_add(pod)
            except Exception as e:  # noqa: BLE001 - counted, then DEL as kubelet would
                results.add("churn ADD", False, f"{name}: {e}".splitlines()[0])
                result = None
            else:
                results.add("churn ADD", True)
                counts["add_seconds"].append(time.monotonic() - t0)
                pod["ips"] = [ip["address"] for ip in result.get("ips", [])]
                peers = [p for p in lab_pods if p["node"] != node][:1] + \
                        [p for p in lab_pods if p["node"] == node][:1]
                for peer in peers:
                    for fam in lab.fams(st):
                        try:
                            # the pod's routes and port come up with ADD; the first echo may
                            # wait for the neighbor entries
                            ok, detail = lab.ping(ns[peer["name"]], addr_of(pod, fam), count=2)
                        except Exception as e:  # noqa: BLE001
                            ok, detail = False, str(e).splitlines()[0]
                        where = "across nodes" if peer["node"] != node else "same node"
                        results.add(f"churn ping {where} v{fam}", ok, f"{peer['name']} -> {name}:"
                                    f" {detail}")
            t0 = time.monotonic()
            try:
                lab.pod_del(pod)
                results.add("churn DEL", True)
                counts["del_seconds"].append(time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001
                results.add("churn DEL", False, f"{name}: {e}".splitlines()[0])
        finally:
            sh(f"ip netns del {pod['netns']}", check=False)
            st.data["pods"] = [p for p in st["pods"] if p["cid"] != pod["cid"]]
            st.save()
        counts["cycles"] += 1
        stop.wait(CHURN_PAUSE)


# ---------------------------------------------------------------- samples

def proc_status(pid, key):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def link_count(netns=None):
    r = sh(f"ip {'-n ' + netns if netns else ''} -o link show", check=False)
    return len(r.stdout.splitlines()) if r.returncode == 0 else None


def lab_netns():
    out = sh("ip netns list", check=False).stdout
    return sum(1 for line in out.splitlines() if line.startswith("lab-"))


def sample_node(st, name, pid):
    """One node's row (without drops) and its drop totals by reason."""
    n = st["nodes"][name]
    sock = n["sock"]
    tables = lab.api_call(sock, "tables", timeout=20)
    stats = lab.api_call(sock, "stats", timeout=20)
    node = lab.api_call(sock, "node.get", timeout=20)
    fronts = lab.api_call(sock, "service.frontends", timeout=20)["frontends"]
    mbufs = tables.get("mbufs") or {}
    row = {
        "rss_bytes": proc_status(pid, "VmRSS"),
        "heap_bytes": tables.get("heap_allocated_bytes"),
        "fds": fd_count(pid),
        "mbufs_in_use": sum(m["in_use"] for m in mbufs.values()) if mbufs else None,
        "mbufs_capacity": sum(m["capacity"] for m in mbufs.values()) if mbufs else None,
        "routes_v4": tables.get("ipv4_routes"),
        "routes_v6": tables.get("ipv6_routes"),
        "endpoints": tables.get("endpoints"),
        "neighbors": tables.get("neighbor_next_hops"),
        "conntrack_flows": (tables.get("conntrack") or {}).get("in_use"),
        "nat_pools": (stats.get("control", {}).get("nat") or {}).get("pools"),
        "svc_frontends": len(fronts),
        "ipam_blocks": (node.get("ipam") or {}).get("blocks"),
        "links": link_count(n["netns"]),
    }
    return row, {r: v for r, v in stats["drops"].items()}


def sample_lab(st):
    show = lab.ipam_show(st)
    return {"etcd_rss_bytes": proc_status(etcd_pid(st), "VmRSS"), "netns": lab_netns(),
            "root_links": link_count(),
            "store_blocks": len(show["blocks"]),
            "store_addresses": sum(p["used"] for p in show["pools"])}


NODE_COLUMNS = ["rss_bytes", "heap_bytes", "fds", "mbufs_in_use", "mbufs_capacity", "routes_v4",
                "routes_v6", "endpoints", "neighbors", "conntrack_flows", "nat_pools",
                "svc_frontends", "ipam_blocks", "links"]
LAB_COLUMNS = ["etcd_rss_bytes", "netns", "root_links", "store_blocks", "store_addresses"]
CSV_COLUMNS = ["t_s", "time", "process", *NODE_COLUMNS, *LAB_COLUMNS, "drops",
               "drops_expected_per_min", "drops_unexpected_per_min", "churn_cycles"]


# ---------------------------------------------------------------- output

def plot(path, rows, drop_rows, minutes):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    procs = sorted({r["process"] for r in rows if r["process"] != "lab"})
    fig, ax = plt.subplots(2, 3, figsize=(18, 9.5))
    fig.suptitle(f"dpdk-fwd lab soak: {minutes:.1f} min of mixed traffic and pod churn")

    def series(proc, key, scale=1.0):
        pts = [(r["t_s"] / 60, r[key] / scale) for r in rows
               if r["process"] == proc and r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    a = ax[0][0]
    heap = a.twinx()  # the heap (hundreds of MiB) on its own scale
    for i, p in enumerate(procs):
        c = f"C{i}"
        a.plot(*series(p, "rss_bytes", 1 << 20), color=c, label=f"{p} RSS")
        heap.plot(*series(p, "heap_bytes", 1 << 20), color=c, ls="--", label=f"{p} heap")
    a.plot(*series("lab", "etcd_rss_bytes", 1 << 20), color="k", ls=":", label="etcd RSS")
    a.set_title("memory (MiB): RSS solid (left), DPDK heap dashed (right)")
    for axis in (a, heap):  # from 0, room above the lines for the legends
        axis.set_ylim(0, axis.get_ylim()[1] * 1.25)
    a.legend(fontsize=7, ncol=2, loc="lower left")
    heap.legend(fontsize=7, loc="lower right")
    def per_node(a, key, title):
        for p in procs:
            a.plot(*series(p, key), label=p)
        a.set_title(title)
        a.legend(fontsize=7)

    per_node(ax[0][1], "mbufs_in_use", "mbufs in use (packet pool)")
    a = ax[0][2]
    for key, style in (("routes_v4", "-"), ("routes_v6", "--"), ("endpoints", ":"),
                       ("conntrack_flows", "-."), ("neighbors", (0, (1, 3)))):
        for i, p in enumerate(procs):
            a.plot(*series(p, key), color=f"C{i}", ls=style,
                   label=f"{key}" if i == 0 else None)
    a.plot(*series("lab", "store_addresses"), color="k", label="store addresses")
    a.set_title("table sizes per node (colour: node)")
    a.legend(fontsize=7)
    a = ax[1][0]
    reasons = sorted({r for d in drop_rows for r in d["per_min"]})
    for i, reason in enumerate(reasons):
        xs = [d["t_s"] / 60 for d in drop_rows]
        ys = [d["per_min"].get(reason, 0) for d in drop_rows]
        bad = reason not in soak_check.EXPECTED_DROPS
        a.plot(xs, ys, lw=2.5 if bad else 1, ls="-" if bad else "--",
               label=reason + (" (UNEXPECTED)" if bad else ""))
    a.set_title("drops per minute by reason, all nodes")
    if reasons:
        a.legend(fontsize=7)
    per_node(ax[1][1], "fds", "open fds per daemon")
    a = ax[1][2]
    a.plot(*series("lab", "netns"), label="lab namespaces")
    a.plot(*series("lab", "root_links"), label="links, root namespace")
    for p in procs:
        a.plot(*series(p, "links"), ls="--", label=f"links, {p}")
    a.set_title("namespaces and links (leak check)")
    a.legend(fontsize=7)
    for a in ax.flat:
        a.set_xlabel("minutes")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def human(metric, v):
    if v is None:
        return "-"
    if metric.endswith("bytes"):
        return f"{v / (1 << 20):.1f}M"
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2f}"


def report(grown, series, drop_totals, minutes_run, traffic, churn, problems):
    lines = ["", f"{'process':<8} {'metric':<16} {'first':>9} {'last':>9} {'median':>9} "
             f"{'per min':>9} {'trend':>9} {'tolerance':>9}  verdict",
             "-" * 96]
    for (proc, metric), v in grown.items():
        t, y = series[(proc, metric)]
        word = ("grew" if v["grew"] else "reported" if v.get("reported_only") else
                "ok" if v["judged"] else "too short")
        lines.append(f"{proc:<8} {metric:<16} {human(metric, y[0]):>9} {human(metric, y[-1]):>9} "
                     f"{human(metric, v['level']):>9} {human(metric, v['slope']):>9} "
                     f"{human(metric, v['trend']):>9} {human(metric, v['tolerance']):>9}  {word}")
    lines += ["", f"{'drops':<26} {'total':>8} {'per min':>8}  by node", "-" * 72]
    reasons = sorted({r for d in drop_totals.values() for r, n in d.items() if n})
    for r in reasons:
        tot = sum(d.get(r, 0) for d in drop_totals.values())
        by = " ".join(f"{p}:{d[r]}" for p, d in sorted(drop_totals.items()) if d.get(r))
        tag = "" if r in soak_check.EXPECTED_DROPS else "  UNEXPECTED"
        lines.append(f"{r:<26} {tot:>8} {tot / max(minutes_run, 1e-9):>8.1f}  {by}{tag}")
    if not reasons:
        lines.append("none")
    lines += ["", f"{'traffic':<34} {'ok':>7} {'failed':>7}", "-" * 50]
    for kind, (ok, bad) in sorted(traffic.items()):
        lines.append(f"{kind:<34} {ok:>7} {bad:>7}")
    lines.append(f"\nchurn: {churn['cycles']} pods added, pinged and deleted"
                 + (f"; ADD {sum(churn['add_seconds']) / len(churn['add_seconds']):.2f} s, "
                    f"DEL {sum(churn['del_seconds']) / max(len(churn['del_seconds']), 1):.2f} s "
                    "on average" if churn["add_seconds"] else ""))
    print("\n".join(lines))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("minutes", nargs="?", type=float, default=60.0, help="how long (default 60)")
    ap.add_argument("--interval", type=float, default=60.0,
                    help="seconds between samples (default 60)")
    ap.add_argument("--out", help="output directory (default /tmp/soak-<date>)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("soak: needs root (the lab's namespaces, taps, hugepages)")
    if args.minutes <= 0 or args.interval <= 0:
        ap.error("MINUTES and --interval must be above 0")
    if args.minutes * 60 < 4 * args.interval:
        ap.error(f"{args.minutes:g} minutes hold fewer than 4 samples of {args.interval:g} s: "
                 "give a shorter --interval")
    out = pathlib.Path(args.out or f"/tmp/soak-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)

    st, brought = ensure_lab(out)
    pids = daemon_pids(st)
    kinds, cross, ns = jobs_of(st)
    log(f"{args.minutes:g} min, a sample every {args.interval:g} s, into {out}; traffic: "
        + ", ".join(k for k, _ in kinds) + "; churn on " + " ".join(sorted(st["nodes"])))

    results = Results()
    churn = {"cycles": 0, "add_seconds": [], "del_seconds": []}
    rows, drop_rows = [], []
    series = {}
    first_drops, last_drops = {}, {}
    stop = threading.Event()
    duration = args.minutes * 60

    prev_t = [0.0]

    def take(t):
        """One sample of every node and of the lab: rows, series, drop totals."""
        stamp = time.strftime("%H:%M:%S")
        per_min = {}
        expected = unexpected = 0
        for name in sorted(pids, key=lambda n: int(n[4:])):
            row, drops = sample_node(st, name, pids[name])
            prev = last_drops.get(name, drops)
            first_drops.setdefault(name, drops)
            last_drops[name] = drops
            delta = {r: drops[r] - prev.get(r, 0) for r in drops if drops[r] - prev.get(r, 0)}
            dt_min = max(t - prev_t[0], 1.0) / 60  # since the last sample
            ex = sum(v for r, v in delta.items() if r in soak_check.EXPECTED_DROPS)
            un = sum(delta.values()) - ex
            expected, unexpected = expected + ex, unexpected + un
            for r, v in delta.items():
                per_min[r] = per_min.get(r, 0) + v / dt_min
            rows.append({"t_s": round(t, 1), "time": stamp, "process": name, **row,
                         "drops": " ".join(f"{r}={v}" for r, v in sorted(delta.items())),
                         "drops_expected_per_min": round(ex / dt_min, 2),
                         "drops_unexpected_per_min": round(un / dt_min, 2),
                         "churn_cycles": churn["cycles"]})
            for k, v in row.items():
                if v is not None:
                    ts, ys = series.setdefault((name, k), ([], []))
                    ts.append(t)
                    ys.append(v)
        labrow = sample_lab(st)
        rows.append({"t_s": round(t, 1), "time": stamp, "process": "lab", **labrow,
                     "churn_cycles": churn["cycles"]})
        for k, v in labrow.items():
            if v is not None:
                proc = "etcd" if k == "etcd_rss_bytes" else "lab"
                ts, ys = series.setdefault((proc, k), ([], []))
                ts.append(t)
                ys.append(v)
        drop_rows.append({"t_s": t, "per_min": per_min})
        prev_t[0] = t
        return expected, unexpected

    # before: the counts the churn must leave as they were
    before = {"netns": lab_netns(), "root links": link_count()}
    before.update({f"links {name}": link_count(n["netns"]) for name, n in st["nodes"].items()})
    take(0.0)
    t_start = time.monotonic()
    streams = ping_streams(st, cross, ns, duration)
    threads = [threading.Thread(target=traffic_loop, args=(kinds, results, stop), daemon=True),
               threading.Thread(target=churn_loop, args=(st, ns, results, stop, churn),
                                daemon=True)]
    for th in threads:
        th.start()
    failed_run = None
    try:
        k = 1
        while True:
            due = t_start + k * args.interval
            if due > t_start + duration + 0.5:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            ex, un = take(time.monotonic() - t_start)
            r = rows[-len(pids) - 1:]
            log(f"sample {k}: RSS " + " ".join(f"{x['process']} {human('rss_bytes', x['rss_bytes'])}"
                                                for x in r if x["process"] != "lab")
                + f"; drops/min expected {ex / args.interval * 60:.0f}, unexpected "
                f"{un / args.interval * 60:.0f}; churn {churn['cycles']} pods; "
                f"traffic {sum(c[0] for c in results.counts.values())} ok, "
                f"{sum(c[1] for c in results.counts.values())} failed")
            if any(not th.is_alive() for th in threads):
                failed_run = "a traffic or churn thread stopped"
                break
            k += 1
    except KeyboardInterrupt:
        failed_run = "interrupted"
    except Exception as e:  # noqa: BLE001 - reported with what was sampled so far
        failed_run = f"sampling failed: {e}"
        traceback.print_exc()
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=120)
        for kind, p in streams:
            sent, got = stream_result(p)
            results.add(kind, got > 0, f"{got}/{sent} answered", weight=got, failed=sent - got)
    minutes_run = (time.monotonic() - t_start) / 60
    time.sleep(2)  # the last DEL's links go
    after = {"netns": lab_netns(), "root links": link_count()}
    after.update({f"links {name}": link_count(n["netns"]) for name, n in st["nodes"].items()})

    drop_totals = {name: {r: last_drops[name][r] - first_drops[name].get(r, 0)
                          for r in last_drops[name]} for name in last_drops}
    ok, problems, grown = soak_check.verdict(series, drop_totals, before, after, results.counts)
    if failed_run:
        ok, problems = False, [failed_run] + problems
    with open(out / "samples.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    summary = {
        "ok": ok, "problems": problems, "minutes": round(minutes_run, 2),
        "interval_s": args.interval, "lab": lab.describe(st), "lab_brought_up": brought,
        "samples": len(drop_rows), "rule": {
            "warmup": f"first {soak_check.WARMUP_FRACTION:.0%} of the samples, at least "
                      f"{soak_check.WARMUP_MIN}",
            "tolerances": {m: {"relative": r, "floor": f}
                           for m, (r, f) in soak_check.TOLERANCES.items()},
            "reported_only": list(soak_check.REPORTED_ONLY),
            "expected_drops": soak_check.EXPECTED_DROPS},
        "series": {f"{p} {m}": {k: v[k] for k in ("judged", "grew", "level", "slope", "trend",
                                                   "shift", "tolerance")}
                   | {"first": series[(p, m)][1][0], "last": series[(p, m)][1][-1]}
                   for (p, m), v in grown.items()},
        "drops": drop_totals, "leak_check": {"before": before, "after": after},
        "traffic": results.counts, "traffic_failures": results.failures[-20:],
        "churn": {"cycles": churn["cycles"]},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    try:
        plot(out / "soak.png", rows, drop_rows, minutes_run)
    except Exception as e:  # noqa: BLE001 - the numbers are in the CSV anyway
        problems.append(f"no plot: {e}")
    report(grown, series, drop_totals, minutes_run, results.counts, churn, problems)
    if results.failures:
        print("\nlast traffic failures:\n  " + "\n  ".join(results.failures[-8:]))
    print(f"\nsamples {out / 'samples.csv'}, summary {out / 'summary.json'}, plot "
          f"{out / 'soak.png'}")
    print("the lab stays up: ./run.sh demo --down takes it down" if brought else
          "the lab is as it was (still up)")
    if ok:
        print(f"soak: PASS ({minutes_run:.1f} min, {len(drop_rows)} samples)")
        return 0
    print("soak: FAIL\n  " + "\n  ".join(problems))
    return 1


if __name__ == "__main__":
    sys.exit(main())
