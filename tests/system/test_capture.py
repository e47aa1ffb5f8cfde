"""Packet capture (fwdctl capture): the example feature added through the registries
(a datapath tap, a control module, a fwdctl group). Real daemon, kernel pods in network
namespaces, the pcap files read back with scapy. IPv4 and IPv6."""
import json
import subprocess
import time

import pytest
from scapy.all import ICMP, IP, IPv6, ICMPv6EchoReply, ICMPv6EchoRequest, rdpcap

from fwdlab import DAEMON, FWDCTL


@pytest.fixture
def two_pods(daemon_factory, netns_factory):
    d = daemon_factory("cap", workers=(0, 1))
    a, b = netns_factory("ca"), netns_factory("cb")
    a.v4, a.v6 = "192.168.0.2", "fd00:10:244::2"
    b.v4, b.v6 = "192.168.0.3", "fd00:10:244::3"
    a.ep = d.add_pod(a, ipv4=a.v4, ipv6=a.v6)
    b.ep = d.add_pod(b, ipv4=b.v4, ipv6=b.v6)
    return d, a, b


def fwdctl(d, *args, timeout=30):
    return subprocess.run([str(FWDCTL), "-s", d.sock, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_capture_a_pods_frames(two_pods, tmp_path):
    d, a, b = two_pods
    out = tmp_path / "a.pcap"
    a.run(f"ping -4 -c 1 {b.v4}")  # ARP and ND settle before the capture
    a.run(f"ping -6 -c 1 {b.v6}")
    cap = subprocess.Popen([str(FWDCTL), "-s", d.sock, "capture", a.name, "-w", str(out),
                            "--seconds", "3", "--rate", "100000"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    a.run(f"ping -4 -c 2 -i 0.2 {b.v4}")
    a.run(f"ping -6 -c 2 -i 0.2 {b.v6}")
    stdout, stderr = cap.communicate(timeout=20)
    assert cap.returncode == 0, stderr
    pkts = rdpcap(str(out))
    assert f"{len(pkts)} packets" in stdout and str(out) in stdout, stdout
    mac = a.ep["mac"]
    # only pod A's frames: from its MAC (the dataplane received them) or to it (sent)
    assert all(p.src == mac or p.dst == mac for p in pkts), [p.summary() for p in pkts]
    # the echoes: 2 requests and 2 replies per family, seen leaving the pod (rx) and
    # reaching it (tx)
    v4 = [p for p in pkts if IP in p and ICMP in p and p[IP].src in (a.v4, b.v4)]
    v6 = [p for p in pkts if IPv6 in p and (ICMPv6EchoRequest in p or ICMPv6EchoReply in p)]
    assert len(v4) == 4 and len(v6) == 4, [p.summary() for p in pkts]
    assert {(p[IP].src, p[IP].dst) for p in v4} == {(a.v4, b.v4), (b.v4, a.v4)}
    assert {(p[IPv6].src, p[IPv6].dst) for p in v6} == {(a.v6, b.v6), (b.v6, a.v6)}
    # the reply towards A left the dataplane with its TTL / hop limit taken off once
    assert {p[IP].ttl for p in v4 if p[IP].dst == a.v4} == {63}
    assert {p[IPv6].hlim for p in v6 if p[IPv6].dst == a.v6} == {63}
    # timestamps are wall-clock time
    assert all(abs(float(p.time) - time.time()) < 60 for p in pkts)
    assert d.ctl("capture", "list")["captures"] == []


def test_capture_stops_at_its_count(two_pods, tmp_path):
    d, a, b = two_pods
    out = tmp_path / "c.pcap"
    cap = subprocess.Popen([str(FWDCTL), "-s", d.sock, "capture", a.name, "-w", str(out),
                            "-c", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    a.run(f"ping -4 -c 5 -i 0.2 {b.v4}")
    stdout, stderr = cap.communicate(timeout=20)
    assert cap.returncode == 0, stderr
    assert "3 packets" in stdout, stdout
    assert len(rdpcap(str(out))) == 3


def test_capture_is_rate_limited_and_stops_by_time(two_pods, tmp_path):
    d, a, b = two_pods
    out = tmp_path / "rate.pcap"
    cap = subprocess.Popen([str(FWDCTL), "-s", d.sock, "--json", "capture", a.name, "-w",
                            str(out), "--seconds", "2", "--rate", "20", "--direction", "rx"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    a.run(f"ping -4 -f -c 3000 -W 1 {b.v4}", check=False, timeout=30)
    stdout, stderr = cap.communicate(timeout=20)
    assert cap.returncode == 0, stderr
    res = json.loads(stdout)
    pkts = rdpcap(str(out))
    assert res["packets"] == len(pkts)
    # 20 a second over 2 s, plus a burst of at most 10 per worker: far below the 3000 sent
    assert 10 <= len(pkts) <= 2 * 20 + 2 * 10 + 5, len(pkts)
    assert res["over_rate"] > 1000, res
    assert all(p.src == a.ep["mac"] for p in pkts)  # rx only: what the pod sent


def test_capture_uplink_name_and_port_id_and_background(two_pods, tmp_path):
    d, a, b = two_pods
    # the shared pod tap by its ethdev name, in the background; then stop it
    ports = {p["name"]: p["port_id"] for p in d.stats()["ports"]}
    tap_name = next(n for n in ports if "pods" in n)
    out = tmp_path / "bg.pcap"
    r = fwdctl(d, "--json", "capture", tap_name, "-w", out, "--background")
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    assert started["state"] == "running" and started["port_id"] == ports[tap_name]
    assert started["mac"] is None  # the whole port
    a.run(f"ping -4 -c 3 -i 0.2 {b.v4}")
    listed = d.ctl("capture", "list")["captures"]
    assert [c["id"] for c in listed] == [started["id"]]
    stopped = d.ctl("capture", "stop", started["id"])
    assert stopped["state"] == "done"
    pkts = rdpcap(str(out))
    # both pods' frames: 3 requests and 3 replies, each received and sent by the dataplane
    icmp = [p for p in pkts if ICMP in p]
    assert len(icmp) >= 12, [p.summary() for p in pkts]
    assert stopped["packets"] == len(pkts)
    assert d.ctl("capture", "list")["captures"] == []
    # by port id; every frame written is counted in stats.control
    cap = subprocess.Popen([str(FWDCTL), "-s", d.sock, "capture", str(ports[tap_name]), "-w",
                            str(tmp_path / "id.pcap"), "-c", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    a.run(f"ping -4 -c 1 {b.v4}")
    stdout, stderr = cap.communicate(timeout=20)
    assert cap.returncode == 0 and "2 packets" in stdout, stdout + stderr
    assert len(rdpcap(str(tmp_path / "id.pcap"))) == 2
    assert d.stats()["control"]["capture_packets"] == len(pkts) + 2


def test_capture_errors_name_the_problem(two_pods, tmp_path):
    d, a, _ = two_pods
    r = fwdctl(d, "capture", "no-such-port", "-w", tmp_path / "x.pcap", "-c", "1")
    assert r.returncode == 1 and "no port 'no-such-port'" in r.stderr, r.stderr
    r = fwdctl(d, "capture", a.name, "-w", "/nonexistent-dir/x.pcap", "-c", "1")
    assert r.returncode == 1 and "/nonexistent-dir does not exist" in r.stderr, r.stderr
    # no uplink on this node
    r = fwdctl(d, "capture", "uplink", "-c", "1")
    assert r.returncode == 1 and "no uplink" in r.stderr, r.stderr
    r = fwdctl(d, "capture", a.name, "--snaplen", "10", "-w", tmp_path / "s.pcap")
    assert r.returncode == 1 and "snaplen must be an integer from 64" in r.stderr, r.stderr
    r = fwdctl(d, "capture", "stop", "77")
    assert r.returncode == 1 and "not_found" in r.stderr, r.stderr
    # the daemon keeps running, and nothing was left open
    assert d.ctl("capture", "list")["captures"] == []
    assert not any(tmp_path.iterdir())
    # at most 4 at once
    ids = []
    for i in range(4):
        r = fwdctl(d, "--json", "capture", a.name, "-w", tmp_path / f"{i}.pcap", "--background")
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["id"])
    r = fwdctl(d, "capture", a.name, "-w", tmp_path / "5.pcap", "--background")
    assert r.returncode == 1 and "already 4 captures running" in r.stderr, r.stderr
    for i in ids:
        d.ctl("capture", "stop", i)


def test_capture_rate_is_capped_by_the_node_config(daemon_factory, netns_factory, tmp_path):
    # the feature's own config section ("capture"), registered from its file
    d = daemon_factory("capcfg", extra={"capture": {"max_rate_pps": 50}})
    a = netns_factory("cc")
    d.add_pod(a, ipv4="192.168.0.2")
    r = fwdctl(d, "capture", a.name, "-w", tmp_path / "x.pcap", "--rate", "100")
    assert r.returncode == 1, r.stderr
    assert "rate_pps 100 is above this node's capture.max_rate_pps (50)" in r.stderr
    r = fwdctl(d, "--json", "capture", a.name, "-w", tmp_path / "y.pcap", "--background")
    assert r.returncode == 0, r.stderr
    d.ctl("capture", "stop", json.loads(r.stdout)["id"])
    # a bad field in the section stops the daemon at its start, naming it
    bad = tmp_path / "bad.json"
    cfg = json.loads(d.config.read_text())
    cfg["capture"] = {"max_rate": 5}
    bad.write_text(json.dumps(cfg))
    r = subprocess.run([str(DAEMON), "--check-config", "--config", str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert 'capture.max_rate: unknown field "max_rate"; known fields: max_rate_pps' in r.stderr, \
        r.stderr
