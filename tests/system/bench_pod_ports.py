#!/usr/bin/env python3
"""Kernel pod ports, one design against another, in one run: pod-to-pod TCP
throughput on one node (iperf3 between two pod namespaces, IPv4 and IPv6) and
endpoint ADD / DEL time (over the API socket, without fwdctl's process start).

    bench_pod_ports.py BUILD_A [BUILD_B ...] [--pods N] [--seconds S] [--rounds R]

Each BUILD is a meson build directory of dpdk-fwd (e.g. one of the commit
with a tap per pod and one with the shared tap and macvlans). The builds take
turns, R rounds, so background load hits them alike. Everything runs in
namespaces this script creates and removes; daemons are stopped by PID."""
import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import fwdlab  # noqa: E402
from fwdlab import RUN_ID, Daemon, Netns  # noqa: E402
from test_many_pods import Api, pod_addrs  # noqa: E402


def start_daemon(build, tmp, tag):
    fwdlab.DAEMON = pathlib.Path(build) / "dpdk-fwd" / "app" / "dpdk-fwd"
    fwdlab.FWDCTL = pathlib.Path(build) / "control" / "fwdctl"
    d = Daemon(tmp, tag, workers=(0, 1))
    cfg = json.loads(d.config.read_text())
    # a build without the shared pod tap does not know the field
    r = fwdlab.sh(f"{fwdlab.DAEMON} --config {d.config} --check-config", check=False)
    if r.returncode != 0 and "pod_tap" in r.stderr:
        cfg.pop("pod_tap")
        d.config.write_text(json.dumps(cfg))
    # the machine's hugepages are shared: wait a little for other runs to give some back
    for attempt in range(12):
        try:
            return d.start()
        except AssertionError as e:
            if "Not enough memory" not in str(e) or attempt == 11:
                raise
            time.sleep(5)


def iperf(client, server, addr, seconds, streams):
    srv = server.popen(f"iperf3 -s -1 -B {addr}")
    time.sleep(0.3)
    try:
        out = client.run(f"iperf3 -J -c {addr} -t {seconds} -P {streams}",
                         timeout=seconds + 30).stdout
    finally:
        srv.wait(timeout=10)
    end = json.loads(out)["end"]
    return end["sum_received"]["bits_per_second"] / 1e9, end["sum_sent"].get("retransmits", 0)


def measure(build, tmp, tag, pods, seconds):
    d = start_daemon(build, tmp, tag)
    api = Api(d.sock)
    nss = []
    res = {}
    try:
        nss = [Netns(f"fwdt{RUN_ID}{tag}{i}") for i in range(pods)]
        add, dele = [], []
        for rnd in range(2):
            for i, ns in enumerate(nss):
                v4, v6 = pod_addrs(i)
                t0 = time.monotonic()
                api.call("endpoint.add", id=ns.name, netns=ns.name, ipv4=v4, ipv6=v6)
                add.append(time.monotonic() - t0)
            if rnd == 0:
                for ns in nss:
                    t0 = time.monotonic()
                    api.call("endpoint.del", id=ns.name)
                    dele.append(time.monotonic() - t0)
        res["add_ms"] = 1000 * statistics.median(add)
        res["del_ms"] = 1000 * statistics.median(dele)
        a, b = nss[0], nss[1]
        (a4, a6), (b4, b6) = pod_addrs(0), pod_addrs(1)
        a.run(f"ping -c1 -W2 {b4}")
        a.run(f"ping -6 -c1 -W2 {b6}")
        res["tcp4_gbps"], res["tcp4_retrans"] = iperf(a, b, b4, seconds, 1)
        res["tcp6_gbps"], res["tcp6_retrans"] = iperf(a, b, b6, seconds, 1)
        res["tcp4_x4_gbps"], res["tcp4_x4_retrans"] = iperf(a, b, b4, seconds, 4)
    finally:
        api.close()
        d.stop()
        for ns in nss:
            ns.delete()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs="+")
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    runs = {b: [] for b in args.builds}
    with tempfile.TemporaryDirectory(prefix="fwdt") as tmp:
        for rnd in range(args.rounds):
            for k, build in enumerate(args.builds):
                r = measure(build, tmp, f"b{k}r{rnd}", args.pods, args.seconds)
                print(f"{build} round {rnd}: {json.dumps(r)}", flush=True)
                runs[build].append(r)
    print("\nmedian over rounds:")
    for build, rs in runs.items():
        med = {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
        print(f"{build}: {json.dumps(med)}")


if __name__ == "__main__":
    main()
