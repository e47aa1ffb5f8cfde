"""DPDK telemetry (issue 18): DPDK's own client, dpdk-telemetry.py, reads the daemon's
/dpdk_fwd/ commands from its socket (/var/run/dpdk/<file prefix>/dpdk_telemetry.v2, with
EAL's --in-memory as the lab runs it). Two daemons at once answer each on its own socket;
the forwarded-packet counter moves under traffic; a bad parameter is answered by name."""
import json
import pathlib
import subprocess

from fwdlab import wait_until

TELEMETRY = "/usr/bin/dpdk-telemetry.py"


def telemetry(d, *commands):
    """dpdk-telemetry.py -f <prefix> with the commands on stdin: {command: reply}."""
    r = subprocess.run([TELEMETRY, "-f", d.prefix], input="\n".join(commands) + "\n",
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    replies = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(replies) == len(commands), r.stdout + r.stderr
    out = {}
    for cmd, rep in zip(commands, replies):
        (key, value), = rep.items()
        assert key == cmd.split(",")[0], rep
        out[cmd] = value
    return out


def socket_of(d):
    return pathlib.Path("/var/run/dpdk") / d.prefix / "dpdk_telemetry.v2"


def test_dpdk_telemetry_reads_our_counters(daemon_factory, netns_factory):
    a = daemon_factory("tla", workers=(0, 1))
    b = daemon_factory("tlb")
    assert a.prefix != b.prefix
    assert socket_of(a).is_socket() and socket_of(b).is_socket()
    pods = []
    for i in range(2):
        ns = netns_factory(f"tl{i}")
        ns.v4, ns.v6 = f"192.168.0.{i + 2}", f"fd00:10:244::{i + 2:x}"
        a.add_pod(ns, ipv4=ns.v4, ipv6=ns.v6)
        pods.append(ns)

    listed = telemetry(a, "/")["/"]
    for cmd in ("/dpdk_fwd/stats", "/dpdk_fwd/drops", "/dpdk_fwd/ports", "/dpdk_fwd/workers",
                "/dpdk_fwd/tables"):
        assert listed.count(cmd) == 1, listed
    first = telemetry(a, "/dpdk_fwd/stats", "/dpdk_fwd/tables", "/dpdk_fwd/workers",
                      "/dpdk_fwd/ports", "/help,/dpdk_fwd/ports")
    stats = first["/dpdk_fwd/stats"]
    assert stats["node"] == "tla" and stats["workers"] == 2, stats
    assert first["/dpdk_fwd/tables"]["endpoints"] == 2, first["/dpdk_fwd/tables"]
    assert set(first["/dpdk_fwd/workers"]) == {"0", "1"}, first["/dpdk_fwd/workers"]
    assert "port id" in first["/help,/dpdk_fwd/ports"]["/dpdk_fwd/ports"]
    # each daemon answers on its own socket
    other = telemetry(b, "/dpdk_fwd/stats", "/dpdk_fwd/tables")
    assert other["/dpdk_fwd/stats"]["node"] == "tlb"
    assert other["/dpdk_fwd/tables"]["endpoints"] == 0

    # the forwarded-packet counter moves under traffic, both families
    x, y = pods
    x.run(f"ping -4 -c 20 -i 0.01 -W 2 {y.v4}", timeout=30)
    x.run(f"ping -6 -c 20 -i 0.01 -W 2 {y.v6}", timeout=30)
    x.run("ping -4 -c 1 -W 1 192.168.99.1", check=False, timeout=10)  # no route: a drop
    after = telemetry(a, "/dpdk_fwd/stats", "/dpdk_fwd/drops")
    assert after["/dpdk_fwd/stats"]["tx_packets"] >= stats["tx_packets"] + 80, after
    assert after["/dpdk_fwd/drops"]["no_route"] >= 1, after["/dpdk_fwd/drops"]
    assert after["/dpdk_fwd/stats"]["dropped"] >= 1
    # the same numbers fwdctl shows (nothing forwards between the two reads on an idle node)
    fwdctl = sum(w["tx_packets"] for w in a.stats()["workers"])
    assert fwdctl >= after["/dpdk_fwd/stats"]["tx_packets"]

    # each port and one worker whole; DPDK's own commands answer beside ours
    ids = telemetry(a, "/dpdk_fwd/ports")["/dpdk_fwd/ports"]
    assert ids, ids
    one = telemetry(a, *[f"/dpdk_fwd/ports,{i}" for i in ids], "/dpdk_fwd/workers,1",
                    "/ethdev/list")
    ports = [one[f"/dpdk_fwd/ports,{i}"] for i in ids]
    assert [p["port_id"] for p in ports] == ids, ports
    pod_rx = sum(p.get("rx_packets", 0) for p in ports if p["kind"] == "pod")
    assert pod_rx >= 40, ports  # the pings' requests came in from the pod side
    assert "punted" in one["/dpdk_fwd/workers,1"], one
    assert isinstance(one["/ethdev/list"], list), one
    bad = telemetry(a, "/dpdk_fwd/ports,99", "/dpdk_fwd/stats,x")
    assert bad["/dpdk_fwd/ports,99"] == {"error": "/dpdk_fwd/ports: no port 99"}, bad
    assert "takes no parameter" in bad["/dpdk_fwd/stats,x"]["error"], bad

    # a stopped daemon leaves no socket behind
    b.stop()
    wait_until(lambda: not socket_of(b).exists(), 5, what="the telemetry socket removed")
