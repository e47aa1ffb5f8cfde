#!/usr/bin/env python3
"""The lab demo: one dpdk-fwd node, three pods (network namespaces on tap
ports), every pair pinging and streaming TCP over IPv4 and IPv6 through the
dataplane. Prints a result table; exits non-zero if any check fails; always
takes everything down (pods, daemon)."""
import argparse
import itertools
import pathlib
import re
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "system"))
from fwdlab import Daemon, Netns, sh  # noqa: E402

XFER = pathlib.Path(__file__).resolve().parents[1] / "tests" / "system" / "tcp_xfer.py"
PODS = [("pod-a", "192.168.0.2", "fd00:10:244::2"),
        ("pod-b", "192.168.0.3", "fd00:10:244::3"),
        ("pod-c", "192.168.0.4", "fd00:10:244::4")]


def ping(ns, addr):
    fam = "-6" if ":" in addr else "-4"
    r = ns.run(f"ping {fam} -c 3 -i 0.2 -W 2 {addr}", check=False, timeout=20)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return r.returncode == 0, (f"rtt {float(m.group(1)):.3f} ms" if m else r.stdout.strip()[-60:])


def tcp(src, dst, addr, port, nbytes):
    srv = dst.popen(f"/usr/bin/python3 {XFER} server {addr} {port}")
    if srv.stdout.readline().strip() != "listening":
        return False, "server did not start"
    t0 = time.monotonic()
    cli = src.run(f"/usr/bin/python3 {XFER} client {addr} {port} {nbytes} {port}", check=False,
                  timeout=180)
    dt = time.monotonic() - t0
    out, _ = srv.communicate(timeout=60)
    ok = cli.returncode == 0 and out.split() == cli.stdout.split()
    return ok, f"{nbytes * 8 / dt / 1e9:.2f} Gbit/s, sha256 {'match' if ok else 'MISMATCH'}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mbytes", type=int, default=50, help="TCP transfer size per pair")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fwddemo") as tmp:
        d = Daemon(tmp, "demo", workers=(1,))
        pods = []
        try:
            print("demo: starting dpdk-fwd (1 worker on core 1)")
            d.start()
            for name, v4, v6 in PODS:
                ns = Netns(f"fwddemo-{name}")
                pods.append(ns)
                ns.label, ns.v4, ns.v6 = name, v4, v6
                ep = d.add_pod(ns, ipv4=v4, ipv6=v6, name=name)
                print(f"demo: {name}: eth0 {ep['mac']} {v4}/32 {v6}/128 (port {ep['port_id']})")
            port = 5100
            for a, b in itertools.permutations(pods, 2):
                for fam, addr in (("IPv4", b.v4), ("IPv6", b.v6)):
                    ok, detail = ping(a, addr)
                    rows.append((f"{a.label} -> {b.label}", fam, "ping", ok, detail))
            for a, b in itertools.combinations(pods, 2):
                for fam, addr in (("IPv4", b.v4), ("IPv6", b.v6)):
                    port += 1
                    ok, detail = tcp(a, b, addr, port, args.mbytes * 1024 * 1024)
                    rows.append((f"{a.label} -> {b.label}", fam, f"tcp {args.mbytes} MB", ok, detail))
            st = d.stats()
            drops = {k: v for k, v in st["drops"].items() if v}
        finally:
            for ns in pods:
                ns.delete()
            d.stop()
    w = [max(len(str(r[i])) for r in rows + [("pair", "family", "check", "", "detail")])
         for i in range(5)]
    print()
    print(f"{'pair':<{w[0]}}  {'family':<6}  {'check':<{w[2]}}  result  detail")
    for pair, fam, check, ok, detail in rows:
        print(f"{pair:<{w[0]}}  {fam:<6}  {check:<{w[2]}}  {'PASS' if ok else 'FAIL':<6}  {detail}")
    failed = sum(1 for r in rows if not r[3])
    print(f"\ndrops seen by the dataplane: {drops or 'none'}")
    print(f"demo: {len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
