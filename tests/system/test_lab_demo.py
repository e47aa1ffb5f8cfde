"""The README's main command end to end: scripts/demo.sh (what `./run.sh demo` runs) brings
up the three-node lab (ToR with etcd and BIRD, dpdk-fwd + BIRD per node, pods through the
CNI plugin), every row of its check table passes and it exits 0; run again while that lab is
up, it takes the old one down first; `scripts/demo.sh --down` leaves nothing behind (no lab
namespace, none of the processes it started, no state dir, no hugepage files) and a second
`--down` is a no-op.

The lab's names are fixed (lab-tor, lab-node1.., /run/dpdk-fwd-lab): a lab a user left up
is taken down by this test."""
import json
import os
import pathlib
import re
import subprocess

import pytest

from fwdlab import BUILD, ROOT

pytestmark = pytest.mark.bgp_dataplane

DEMO = ROOT / "scripts" / "demo.sh"
STATE_DIR = pathlib.Path("/run/dpdk-fwd-lab")
ROW = re.compile(r"^(?P<check>\S.*?)\s{2,}(?P<what>\S.*?)\s{2,}(?P<fam>\S+)\s{2,}"
                 r"(?P<result>PASS|FAIL)\s{2,}(?P<detail>.*)$")


def demo(*args, timeout=900):
    env = dict(os.environ, FWD_BUILD=str(BUILD))
    return subprocess.run([str(DEMO), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def table(out):
    """The rows of the result table: the lines after its header."""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines)
                if re.match(r"^check\s+between / what\s+fam", line))
    rows = []
    for line in lines[head + 2:]:
        if not line.strip():
            break
        m = ROW.match(line)
        assert m, f"not a table row: {line!r}"
        rows.append(m.groupdict())
    return rows


def state():
    return json.loads((STATE_DIR / "state.json").read_text())


def running(p):
    """The process the lab recorded still runs (same PID and start time, not a zombie:
    this machine's init may not reap orphans)."""
    try:
        stat = pathlib.Path(f"/proc/{p['pid']}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(stat[19]) == p["start"] and stat[0] not in ("Z", "X")


def lab_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("lab-")]


def assert_all_pass(r):
    out = r.stdout + r.stderr
    assert "check" in r.stdout, out
    rows = table(r.stdout)
    failed = [row for row in rows if row["result"] != "PASS"]
    assert not failed, "\n".join(f"{f['check']} {f['what']} {f['fam']}: {f['detail']}"
                                 for f in failed) + "\n" + out[-6000:]
    assert r.returncode == 0, out[-6000:]
    return rows


def test_lab_demo_up_checks_and_down():
    first = None
    try:
        r = demo()
        if STATE_DIR.exists():
            first = state()
        rows = assert_all_pass(r)
        checks = {(row["check"], row["what"], row["fam"]) for row in rows}
        # what the table must cover: the BGP mesh, every pod's addresses, pod to pod on one
        # node and across nodes, IPv4 and IPv6, ping and TCP
        for node in ("node1", "node2", "node3", "tor"):
            assert ("bgp sessions", node, "4+6") in checks
        assert sum(1 for c in checks if c[0] == "pod addresses") == 6
        for kind in ("ping same node", "ping across nodes", "tcp same node", "tcp across nodes"):
            for fam in ("v4", "v6"):
                assert sum(1 for c in checks if c[0] == kind and c[2] == fam) == 3, (kind, fam)
        assert "The lab stays up" in r.stdout and "--down" in r.stdout
        # the lab is up: its processes run, its pods answer
        assert first and all(running(p) for p in first["processes"]), first
        assert len(first["processes"]) == 8  # etcd, 3 x (dpdk-fwd, BIRD), the ToR's BIRD
        assert {"lab-tor", "lab-node1", "lab-node2", "lab-node3"} <= set(lab_namespaces())

        # demo again while the lab is up: the old one goes first, a new one comes up
        r = demo("--pods", "1", "--tcp-mbytes", "4", "--idle-seconds", "2")
        assert "a previous lab is up" in r.stdout, r.stdout
        assert_all_pass(r)
        assert not any(running(p) for p in first["processes"]), first["processes"]
        first = state()
    finally:
        down = demo("--down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not STATE_DIR.exists()
    assert lab_namespaces() == []
    if first:
        assert not any(running(p) for p in first["processes"]), first["processes"]
        for prefix in first["eal_prefixes"]:
            assert not list(pathlib.Path("/dev/hugepages").glob(f"{prefix}*")), prefix
    ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    left = [line for line in ps.splitlines()
            if "/run/dpdk-fwd-lab" in line and not line.startswith("Z")]
    assert not left, left
    # nothing up: --down is a no-op that succeeds
    again = demo("--down", timeout=60)
    assert again.returncode == 0 and "nothing is up" in again.stdout, again.stdout + again.stderr
