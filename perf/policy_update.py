#!/usr/bin/python3
"""Policy update latency and rule memory (issue 16): the time from `fwdctl apply -f` of a
policy to its enforcement on a node, and the rte_acl memory per 1,000 rules.

    sudo /usr/bin/python3 perf/policy_update.py [--rules 1000,10000] [--runs 5]
         [--peers 200] [--out perf/results] [--name STEM]

The node: one dpdk-fwd (one worker) with an embedded cluster store and its policy module
(sync_ms 100, its default); two local pods (namespaces, IPv4 and IPv6) attached with
endpoint.add naming their pod (as the CNI plugin does), one labelled app=target; --peers
remote pod records (labelled app=peer, with IPv4 and IPv6 addresses) that selectors expand to.

The policy: a GlobalNetworkPolicy selecting app == 'target' with R ingress rules, each
"Allow TCP from one /32 (or /128: every other rule IPv6) to port 1024 + i", and, every tenth,
from the peers' selector instead: so a rule set has plain and selector rules of both families.

One measurement: the clock starts before `fwdctl apply -f` of the policy as a JSON file (the
process included, as an operator types it; "written -> enforced" leaves fwdctl's own time
out), and stops when the daemon's policy.status (polled every 5 ms on a held
API connection) shows the store revision the apply made, with R compiled model rules:
published to the workers, which read it on their next burst. Then `fwdctl delete -f` and the
same wait. Medians of --runs. Also from policy.status: the builder's phases (list the store,
compile, build the rte_acl contexts) and the contexts' memory (DPDK heap, measured by the
build), from which the memory per 1,000 rules.

Writes <out>/<date>-policy-update.md and .json; prints a line per measurement."""
import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "system"))
from fwdlab import FWDCTL, RUN_ID, Api, Daemon, Netns  # noqa: E402


def fwdctl(store, *args):
    env = {k: v for k, v in os.environ.items() if k != "FWD_IPAM_STORE"}
    r = subprocess.run([str(FWDCTL), *map(str, args), "--store", store], capture_output=True,
                       text=True, timeout=120, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"fwdctl {' '.join(map(str, args))}: {r.stdout}{r.stderr}")
    return r


def peer_v4(i):
    return f"10.200.{i // 250}.{i % 250 + 1}"


def peer_v6(i):
    return f"fd00:200::{i + 1:x}"


def peers_yaml(n):
    docs = []
    for i in range(n):
        docs.append(json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"peer-{i}", "namespace": "remote", "labels": {"app": "peer"}},
            "spec": {"nodeName": "elsewhere"},
            "status": {"podIPs": [{"ip": peer_v4(i)}, {"ip": peer_v6(i)}]}}))
    return "\n---\n".join(docs)


def policy_doc(rules):
    ingress = []
    for i in range(rules):
        if i % 10 == 9:
            src = {"selector": "app == 'peer'"}
        elif i % 2:
            src = {"nets": [f"fd00:300::{i:x}/128"]}
        else:
            src = {"nets": [f"10.{100 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}/32"]}
        ingress.append({"action": "Allow", "protocol": "TCP", "source": src,
                        "destination": {"ports": [1024 + i % 60000]}})
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"big-{rules}"},
            "spec": {"selector": "app == 'target'", "types": ["Ingress"], "ingress": ingress}}


def wait_for(api, pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = api.call("policy.status")
        if pred(st):
            return st
        time.sleep(0.005)
    raise RuntimeError(f"not enforced within {timeout} s: {api.call('policy.status')}")


def measure(api, store, tmp, rules, runs):
    # JSON, as kubectl and calicoctl take it too: YAML's parser alone costs fwdctl about
    # twice the time of everything else for 10,000 rules
    pol = tmp / f"policy-{rules}.json"
    pol.write_text(json.dumps(policy_doc(rules)))
    rows = []
    for run in range(runs):
        before = api.call("policy.status")["revision"]
        t0 = time.monotonic()
        fwdctl(store, "apply", "-f", pol)
        t_apply = time.monotonic() - t0
        st = wait_for(api, lambda s: s.get("revision") not in (None, before) and
                      s.get("compiled", {}).get("rules") == rules)
        t_on = time.monotonic() - t0
        row = {"rules": rules, "run": run, "apply_s": t_apply, "enforced_s": t_on,
               "node_s": t_on - t_apply,
               "list_s": st["seconds"]["list"], "compile_s": st["seconds"]["compile"],
               "acl_s": st["seconds"]["acl"], "flat_rules": st["compiled"]["flat_rules"],
               "acl_bytes": st["acl"]["memory_bytes"]}
        before = st["revision"]
        t1 = time.monotonic()
        fwdctl(store, "delete", "-f", pol)
        wait_for(api, lambda s: s.get("revision") != before and
                 s.get("compiled", {}).get("rules") == 0)
        row["removed_s"] = time.monotonic() - t1
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", default="1000,10000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--peers", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "perf" / "results"))
    ap.add_argument("--name", default=f"{datetime.date.today()}-policy-update")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.rules.split(",")]
    load0 = pathlib.Path("/proc/loadavg").read_text().split()[:3]

    with tempfile.TemporaryDirectory(prefix="fwdp") as d:
        tmp = pathlib.Path(d)
        store = f"embedded:{tmp}/store"
        (tmp / "peers.yaml").write_text("---\n" + peers_yaml(a.peers) + "\n---\n" + json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "target", "namespace": "perf", "labels": {"app": "target"}}}))
        fwdctl(store, "apply", "-f", tmp / "peers.yaml")
        daemon = Daemon(tmp, "polperf", extra={"ipam": {"store": store, "sync_ms": 1000}})
        pods = [Netns(f"fwdp{RUN_ID}{i}") for i in range(2)]
        try:
            daemon.start()
            api = Api(daemon.sock)
            for i, ns in enumerate(pods):
                api.call("endpoint.add", id=f"perf-{i}", netns=ns.name, ipv4=f"10.250.0.{i + 2}",
                         ipv6=f"fd00:250::{i + 2:x}",
                         owner={"namespace": "perf", "pod": "target" if i == 0 else f"p{i}"})
            wait_for(api, lambda s: s.get("revision") is not None)
            rows = []
            for r in counts:
                rows += measure(api, store, tmp, r, a.runs)
        finally:
            daemon.stop()
            for ns in pods:
                ns.delete()

    load1 = pathlib.Path("/proc/loadavg").read_text().split()[:3]
    summary = []
    for r in counts:
        mine = [x for x in rows if x["rules"] == r]
        med = {k: statistics.median(x[k] for x in mine)
               for k in ("apply_s", "enforced_s", "list_s", "compile_s", "acl_s", "removed_s",
                         "flat_rules", "acl_bytes", "node_s")}
        med["rules"] = r
        med["acl_bytes_per_1000_rules"] = med["acl_bytes"] * 1000 / r
        summary.append(med)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{a.name}.json").write_text(json.dumps({"rows": rows, "summary": summary,
                                                    "peers": a.peers, "runs": a.runs,
                                                    "load": [load0, load1]}, indent=1))
    lines = [f"# Policy update latency ({a.name})", "",
             f"One node, one worker, embedded store, {a.peers} remote peer pods, "
             f"medians of {a.runs} runs (perf/policy_update.py); load average "
             f"{' '.join(load0)} at the start, {' '.join(load1)} at the end on "
             f"{os.cpu_count()} CPUs.", "",
             "| model rules | flat rules | fwdctl apply | apply -> enforced | written -> enforced "
             "| list | compile | rte_acl build | delete -> enforced | rte_acl memory "
             "| per 1,000 rules |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in summary:
        lines.append(f"| {m['rules']} | {m['flat_rules']:.0f} | {m['apply_s'] * 1000:.0f} ms "
                     f"| **{m['enforced_s'] * 1000:.0f} ms** | {m['node_s'] * 1000:.0f} ms "
                     f"| {m['list_s'] * 1000:.0f} ms "
                     f"| {m['compile_s'] * 1000:.0f} ms | {m['acl_s'] * 1000:.0f} ms "
                     f"| {m['removed_s'] * 1000:.0f} ms | {m['acl_bytes'] / 1e6:.1f} MB "
                     f"| {m['acl_bytes_per_1000_rules'] / 1e3:.0f} kB |")
    (out / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
