#!/usr/bin/env python3
"""Pod-to-pod TCP on one node, in one run: the "tun" port kind, the "tap"
kind (shared net_tap, a macvlan per pod) and Linux routing two pods the way
Calico's standard dataplane does (veth pairs, proxy ARP, /32 and /128
routes, the gateway MAC ee:ee:ee:ee:ee:ee). iperf3, one stream, IPv4 and
IPv6, S seconds each; the kinds take turns so background load hits them
alike. Namespaces and daemons are this script's own, removed at the end.

    bench_pod_kinds.py [--seconds S] [--rounds R]"""
import argparse
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from fwdlab import RUN_ID, Daemon, Netns, calico_veth_pod, sh  # noqa: E402

V4 = ("192.168.0.2", "192.168.0.3")
V6 = ("fd00:10:244::2", "fd00:10:244::3")


def iperf(client, server, addr, seconds):
    srv = server.popen(f"iperf3 -s -1 -B {addr}")
    time.sleep(0.3)
    try:
        out = client.run(f"iperf3 -J -c {addr} -t {seconds}", timeout=seconds + 30).stdout
    finally:
        srv.wait(timeout=10)
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def linux_pods(tag):
    """Calico's Linux dataplane on one node: a host namespace routing two pods."""
    host = Netns(f"fwdb{RUN_ID}{tag}h")
    pods = [Netns(f"fwdb{RUN_ID}{tag}{i}") for i in range(2)]
    for ns in (host, *pods):
        ns.delete()
        sh(f"ip netns add {ns.name}")
    host.run("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
    # proxy ARP answers for 169.254.1.1 only when it routes out of another
    # interface: a node has its default route on its uplink
    host.run("ip link add up0 type veth peer name up1")
    host.run("ip link set up1 up")
    host.run("ip link set up0 up")
    host.run("ip addr add 10.10.10.10/24 dev up0")  # a node has an address of its own
    host.run("ip route add default via 10.10.10.1 dev up0 onlink")
    for i, p in enumerate(pods):
        calico_veth_pod(host, p, f"cali{i}", V4[i], V6[i])
    return [host, *pods], pods


def dataplane_pods(tmp, tag, kind):
    d = Daemon(tmp, tag, workers=(0, 1)).start()
    pods = [Netns(f"fwdb{RUN_ID}{tag}{i}") for i in range(2)]
    for i, p in enumerate(pods):
        p.delete()
        sh(f"ip netns add {p.name}")
        d.add_pod(p, ipv4=V4[i], ipv6=V6[i], kind=kind)
    return d, pods


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="fwdb") as tmp:
        for r in range(a.rounds):
            for kind in ("tun", "tap", "linux"):
                tag = f"{kind[:2]}{r}"
                d = None
                if kind == "linux":
                    made, pods = linux_pods(tag)
                else:
                    d, pods = dataplane_pods(tmp, tag, kind)
                    made = pods
                try:
                    pods[0].run(f"ping -c 1 -W 2 {V4[1]}", timeout=10)
                    pods[0].run(f"ping -6 -c 1 -W 2 {V6[1]}", timeout=10)
                    for fam, addrs in (("v4", V4), ("v6", V6)):
                        g = iperf(pods[0], pods[1], addrs[1], a.seconds)
                        results.setdefault((kind, fam), []).append(g)
                        print(f"round {r} {kind:5} {fam}: {g:6.2f} Gbit/s", flush=True)
                finally:
                    for ns in made:
                        ns.delete()
                    if d is not None:
                        d.stop()
    print("\nkind   family  Gbit/s (mean)  vs linux")
    for fam in ("v4", "v6"):
        lin = sum(results[("linux", fam)]) / len(results[("linux", fam)])
        for kind in ("tun", "tap", "linux"):
            v = results[(kind, fam)]
            m = sum(v) / len(v)
            print(f"{kind:6} {fam:7} {m:12.2f}  {m / lin:8.2f}x")


if __name__ == "__main__":
    main()
