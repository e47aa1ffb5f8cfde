"""The perf harness in its smoke mode: one short run of every implementation
(dpdk-fwd, testpmd io, l3fwd LPM and FIB, OVS-DPDK, Linux routing) on ipv4-64, and
of the full path (full4: a pod's established flows through 1,000 policy rules,
conntrack and SNAT; its peers l3fwd LPM and OVS-DPDK with the same rules), and a
well-formed report. The figures are not judged here: a benchmark is not a test;
that each implementation ran and forwarded is."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "perf"))

from harness import common  # noqa: E402

LABELS = {
    "dpdk-fwd": "dpdk-fwd",
    "testpmd-io": "testpmd io",
    "l3fwd-lpm": "l3fwd LPM",
    "l3fwd-fib": "l3fwd FIB",
    "ovs-dpdk": "OVS-DPDK",
    "kernel": "Linux routing",
}
# dpdk-fwd forwards every packet of the set (perf/results: 0.00% lost, no drop counted); the
# allowance is for packets in flight while the counters are read
FWD_MAX_LOSS = 0.01
# the full path's peers (harness/fullpath.py), and what is n/a there
FULL_LABELS = {"dpdk-fwd": "dpdk-fwd", "testpmd-io": "testpmd io", "l3fwd-lpm": "l3fwd LPM",
               "ovs-dpdk": "OVS-DPDK"}
FULL_RULES = 1000


def hugepages_free():
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


def netns_names():
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                              text=True).stdout.split())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    scratch = tmp_path_factory.mktemp("perf-scratch")
    free_before = hugepages_free()
    ns_before = netns_names()
    dpdk_dirs_before = set(os.listdir("/var/run/dpdk")) if os.path.isdir("/var/run/dpdk") else set()
    build = os.environ.get("FWD_BUILD", str(REPO / "build"))
    r = subprocess.run([sys.executable, str(REPO / "perf" / "run.py"), "--smoke",
                        "--scenario", "ipv4-64", "--scenario", "full4", "--out",
                        str(out), "--name", "smoke", "--scratch", str(scratch),
                        "--build", build],
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    yield {"r": r, "out": out, "scratch": scratch, "free_before": free_before,
           "ns_before": ns_before, "dpdk_dirs_before": dpdk_dirs_before}
    # the scratch folder holds the packet set and an l3fwd build: not kept
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)


def assert_forwarded(sc):
    """What came in went out, in the report of one scenario: each reference sent packets and
    lost less than half of what it took in; dpdk-fwd lost next to nothing, by its port
    counters and by its own drop counters (each dropped packet counted by reason)."""
    for key, ref in sc["refs"].items():
        for run in ref["runs"]:
            assert run["mpps"] > 0 and run["drop_ratio"] < 0.5, (key, run)
    fwd = sc["refs"]["dpdk-fwd"]
    assert all(run["drop_ratio"] < FWD_MAX_LOSS for run in fwd["runs"]), fwd["runs"]
    # the measured runs, then the one with the stage counters on
    windows = fwd["extra"]["windows"] + fwd["profile"]["extra"]["windows"]
    assert len(windows) == len(fwd["runs"]) + 1, windows
    for w in windows:
        assert w["rx_packets"] > 0, w
        assert sum(w["drops"].values()) <= w["rx_packets"] * FWD_MAX_LOSS, w["drops"]


def test_smoke_runs_every_reference(smoke):
    r = smoke["r"]
    assert r.returncode == 0, f"perf/run.py --smoke exited {r.returncode}:\n" \
                              f"{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    # progress shows, one line per implementation measured
    for label in LABELS.values():
        assert re.search(rf"ipv4-64 run 1/1: {re.escape(label)}.*Mpps", r.stdout), \
            f"no progress line for {label}:\n{r.stdout[-3000:]}"
    for label in FULL_LABELS.values():
        assert re.search(rf"full4 run 1/1: {re.escape(label)}.*Mpps", r.stdout), \
            f"no full4 progress line for {label}:\n{r.stdout[-3000:]}"


def test_smoke_report_is_well_formed(smoke):
    out = smoke["out"]
    res = json.loads((out / "smoke.json").read_text())
    assert res["args"]["smoke"] is True and res["args"]["runs"] == 1
    assert res["failures"] == []
    assert list(res["scenarios"]) == ["ipv4-64", "full4"]
    sc = res["scenarios"]["ipv4-64"]
    assert set(sc["refs"]) == set(common.ALL_REFERENCES)
    for key, ref in sc["refs"].items():
        assert ref["error"] is None and ref["na"] is None, (key, ref)
        assert len(ref["runs"]) == 1, key
    assert_forwarded(sc)
    # dpdk-fwd's stage counters made it into the report
    prof = sc["refs"]["dpdk-fwd"]["profile"]
    stages = prof["extra"]["windows"][0]["stages"]
    for st in ("rx", "fast_input", "route4", "l2_rewrite4", "tx"):
        assert stages[st]["packets"] > 0 and stages[st]["cycles"] > 0, (st, stages[st])

    md = (out / "smoke.md").read_text()
    rows = [l for l in md.splitlines() if l.startswith("| ")]
    for key, label in LABELS.items():
        row = next((l for l in rows if l.startswith(f"| {label}")), None)
        assert row is not None, f"no row for {label} in the report:\n{md}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        mpps, cycles, ratio = float(cells[1]), float(cells[4]), float(cells[8])
        assert mpps > 0 and cycles > 0 and ratio > 0, row
    assert "| stage | packets per packet | cycles per packet | share of busy |" in md
    assert "| full4 | l3fwd LPM" in md and "| full4 | OVS-DPDK" in md, md
    assert "## Against the targets" in md and "l3fwd LPM" in md.split("## Against")[1]
    assert "## How each reference was run" in md
    png = out / "smoke.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_smoke_leaves_nothing_behind(smoke):
    assert netns_names() - smoke["ns_before"] == set()
    left = set(os.listdir("/var/run/dpdk")) - smoke["dpdk_dirs_before"] \
        if os.path.isdir("/var/run/dpdk") else set()
    assert left == set(), f"DPDK runtime dirs left: {left}"
    assert hugepages_free() >= smoke["free_before"], "hugepages not given back"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    scratch = str(smoke["scratch"])
    assert scratch not in ps, f"a process of the run is still up:\n{ps}"


def test_smoke_full_path_ran_every_stage(smoke):
    """full4: dpdk-fwd took the pod's packets from its vhost-user port, each an established
    flow's (conntrack ok, none created), decided by the last of the 1,000 egress rules, with
    every stage of the path counted; l3fwd LPM and OVS-DPDK (its conntrack holding the set's
    4096 connections) ran beside it."""
    res = json.loads((smoke["out"] / "smoke.json").read_text())
    sc = res["scenarios"]["full4"]
    for key, ref in sc["refs"].items():
        if key in FULL_LABELS:
            assert ref["error"] is None and ref["na"] is None and len(ref["runs"]) == 1, \
                (key, ref)
        else:
            assert ref["na"] and not ref["runs"], (key, ref)
    assert_forwarded(sc)
    fwd = sc["refs"]["dpdk-fwd"]
    for w in fwd["extra"]["windows"] + fwd["profile"]["extra"]["windows"]:
        assert w["conntrack"].get("ok", 0) >= 0.99 * w["rx_packets"], w["conntrack"]
        assert "created" not in w["conntrack"], w["conntrack"]
        assert w["policy"]["rules_counted"] == FULL_RULES, w["policy"]
        assert w["policy"]["allow_rule_packets"] >= sc["packets"], w["policy"]
        assert w["pod_generator"]["sent"] > 0, w
    stages = fwd["profile"]["extra"]["windows"][0]["stages"]
    for st in ("rx", "fast_input", "antispoof4", "nat4", "route4", "policy4", "l2_rewrite4",
               "tx"):
        assert stages[st]["packets"] > 0 and stages[st]["cycles"] > 0, (st, stages[st])
    ovs = sc["refs"]["ovs-dpdk"]["extra"]["windows"][0]
    assert ovs.get("ct_connections", 0) >= sc["packets"], ovs
    md = (smoke["out"] / "smoke.md").read_text()
    assert "On CPU time" in md.split("(`full4`)")[1], md
