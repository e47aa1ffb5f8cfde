"""Floods (issue 20, item 3): a pod and the uplink's peer send at full speed (flood.c, an
AF_PACKET sender compiled here) what the dataplane answers itself or hands to the control
thread and the node's kernel: ARP, Neighbor Solicitations, ICMP / ICMPv6 echo, UDP to the
node's addresses. Meanwhile:
- the control thread keeps serving the API: round trips measured (p50, p99) before and
  under the flood, with a bound;
- the node's kernel keeps its TCP sessions over the punt path (BGP's path: peer -> uplink
  -> host tap): connect + echo round trips through it under the flood;
- a pod sending garbage (random frames and broken headers of every kind, plus the packet
  fuzz corpus when there is one) leaves its neighbours their TCP throughput, within a factor.
The SYN flood against the connection table (ct_table_full, established flows go on) is
test_nat.py's test_syn_flood_fills_the_table_established_flows_go_on.

The machine may have 2 cores shared with other jobs: floods last seconds, the bounds are
loose, but a control thread starved by punts or a worker wedged by garbage fails them."""
import json
import pathlib
import random
import statistics
import struct
import subprocess
import time
import types

import pytest

from fwdlab import (Api, free_port, record_results, router_behind_uplink, uplink_daemon_config,
                    wait_until)
from nat_peer import csum

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FLOOD_SECONDS = 3
UPLINK_MAC = "02:00:00:00:0c:0a"
PEER_MAC = "02:00:00:00:0c:01"
GW_MAC = "ee:ee:ee:ee:ee:ee"
NODE4, NODE6 = "10.10.10.10", "fd00:10:10::10"
PEER4, PEER6 = "10.10.10.1", "fd00:10:10::1"
GW4, GW6 = "169.254.1.1", "fe80::ecee:eeff:feee:eeee"
HOST_TAP = "fwdfh"
PUNT_PPS = 20000
BGP_PORT = 1179  # a TCP service on the node's kernel standing in for BIRD's port 179


# --- frames -----------------------------------------------------------------------------------

def mac(s):
    return bytes.fromhex(s.replace(":", ""))


def ip4(a):
    return bytes(map(int, a.split(".")))


def ip6(a):
    import ipaddress
    return ipaddress.IPv6Address(a).packed


def eth(dst, src, etype, payload):
    return mac(dst) + mac(src) + struct.pack("!H", etype) + payload


def arp(src_mac, op, sender, target, target_mac="00:00:00:00:00:00"):
    dst = "ff:ff:ff:ff:ff:ff" if op == 1 else target_mac
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac(src_mac) + ip4(sender) + \
        mac(target_mac) + ip4(target)
    return eth(dst, src_mac, 0x0806, body)


def ipv4(src, dst, proto, payload, ttl=64):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, proto, 0,
                      ip4(src), ip4(dst))
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + payload


def icmp4_echo(src, dst, ident, seq):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"flood" * 8
    return ipv4(src, dst, 1, body[:2] + struct.pack("!H", csum(body)) + body[4:])


def udp4(src, dst, sport, dport, data):
    u = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 17, len(u))
    return ipv4(src, dst, 17, u[:6] + struct.pack("!H", csum(pseudo + u) or 0xFFFF) + u[8:])


def ipv6(src, dst, nh, payload, hlim=64):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, hlim) + ip6(src) + ip6(dst) + payload


def icmp6(src, dst, body, hlim=64):
    pseudo = ip6(src) + ip6(dst) + struct.pack("!IxxxB", len(body), 58)
    c = csum(pseudo + body[:2] + b"\0\0" + body[4:])
    return ipv6(src, dst, 58, body[:2] + struct.pack("!H", c) + body[4:], hlim)


def icmp6_echo(src, dst, ident, seq):
    return icmp6(src, dst, struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"flood" * 8)


def nd_solicit(src_mac, src, target):
    t = ip6(target)
    snm = "ff02::1:ff" + t[13:14].hex() + ":" + t[14:16].hex()
    body = struct.pack("!BBHI", 135, 0, 0, 0) + t + struct.pack("!BB", 1, 1) + mac(src_mac)
    dmac = "33:33:" + ":".join(f"{b:02x}" for b in ip6(snm)[12:])
    return eth(dmac, src_mac, 0x86DD, icmp6(src, snm, body, hlim=255))


def link_local(m):
    b = bytearray(mac(m))
    b[0] ^= 2
    eui = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    import ipaddress
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


def write_frames(path, frames):
    with open(path, "wb") as f:
        for fr in frames:
            f.write(struct.pack("<H", len(fr)) + fr)
    return path


def pod_control_frames(pod):
    """What a pod can ask of its node: ARP for the gateway, NS for the IPv6 gateway, echo to
    the node's addresses (both families), a few hundred of each with varying ids."""
    out = []
    ll = link_local(pod.mac)
    for i in range(256):
        out.append(arp(pod.mac, 1, pod.v4, GW4))
        out.append(nd_solicit(pod.mac, ll, GW6))
        out.append(eth(GW_MAC, pod.mac, 0x0800, icmp4_echo(pod.v4, NODE4, 0x4000 + i, i)))
        out.append(eth(GW_MAC, pod.mac, 0x86DD, icmp6_echo(pod.v6, NODE6, 0x6000 + i, i)))
    return out


def uplink_control_frames():
    """What the network can send to a node: ARP requests and replies, NS, echo and UDP to the
    node's addresses (punted to its kernel through the host tap)."""
    out = []
    ll = link_local(PEER_MAC)
    for i in range(256):
        out.append(arp(PEER_MAC, 1, PEER4, NODE4))
        out.append(arp(PEER_MAC, 2, PEER4, NODE4, UPLINK_MAC))
        out.append(nd_solicit(PEER_MAC, ll, NODE6))
        out.append(eth(UPLINK_MAC, PEER_MAC, 0x0800, icmp4_echo(PEER4, NODE4, 0x7000 + i, i)))
        out.append(eth(UPLINK_MAC, PEER_MAC, 0x86DD, icmp6_echo(PEER6, NODE6, 0x7000 + i, i)))
        out.append(eth(UPLINK_MAC, PEER_MAC, 0x0800, udp4(PEER4, NODE4, 40000 + i, 9, b"x" * 18)))
    return out


def garbage_frames(pod, n=4000, seed=20):
    """Random frames of every length, and frames with a valid start and a broken rest:
    truncated and lying IPv4 / IPv6 headers, bad checksums, odd ethertypes, VLAN tags,
    VXLAN from a pod, spoofed sources. Plus the packet fuzz corpus when one is committed
    (tests/fuzz/corpus/*packet*)."""
    rnd = random.Random(seed)
    rb = lambda k: bytes(rnd.getrandbits(8) for _ in range(k))  # noqa: E731
    out = []
    for fdir in (ROOT / "tests" / "fuzz" / "corpus").glob("*packet*"):
        for f in sorted(fdir.iterdir())[:2000]:
            data = f.read_bytes()
            if 14 <= len(data) <= 1514:
                out.append(data)
    valid4 = icmp4_echo(pod.v4, PEER4, 1, 1)
    valid6 = icmp6_echo(pod.v6, PEER6, 1, 1)
    while len(out) < n:
        k = rnd.randrange(12)
        if k == 0:
            out.append(rb(rnd.randrange(1, 1515)))
        elif k == 1:  # our addresses, random payload of a random type
            out.append(mac(GW_MAC) + mac(pod.mac) + rb(rnd.randrange(2, 1500)))
        elif k in (2, 3):  # IPv4 with bytes flipped
            b = bytearray(valid4)
            for _ in range(rnd.randrange(1, 6)):
                b[rnd.randrange(len(b))] = rnd.getrandbits(8)
            out.append(eth(GW_MAC, pod.mac, 0x0800, bytes(b[:rnd.randrange(1, len(b) + 1)])))
        elif k in (4, 5):  # IPv6 with bytes flipped
            b = bytearray(valid6)
            for _ in range(rnd.randrange(1, 6)):
                b[rnd.randrange(len(b))] = rnd.getrandbits(8)
            out.append(eth(GW_MAC, pod.mac, 0x86DD, bytes(b[:rnd.randrange(1, len(b) + 1)])))
        elif k == 6:  # IPv6 extension header chains of random junk
            out.append(eth(GW_MAC, pod.mac, 0x86DD,
                           ipv6(pod.v6, PEER6, rnd.choice([0, 43, 44, 60, 59]), rb(64))))
        elif k == 7:  # VXLAN from a pod
            out.append(eth(GW_MAC, pod.mac, 0x0800,
                           udp4(pod.v4, PEER4, 5555, 4789, b"\x08\0\0\0\0\x10\0\0" + rb(60))))
        elif k == 8:  # spoofed sources
            out.append(eth(GW_MAC, pod.mac, 0x0800,
                           icmp4_echo(f"192.168.{rnd.randrange(256)}.{rnd.randrange(256)}",
                                      PEER4, 2, 2)))
        elif k == 9:  # VLAN tags, stacked
            out.append(eth(GW_MAC, pod.mac, rnd.choice([0x8100, 0x88A8]), rb(4) + valid4))
        elif k == 10:  # ARP of every shape
            out.append(eth(rnd.choice(["ff:ff:ff:ff:ff:ff", GW_MAC]), pod.mac, 0x0806,
                           rb(rnd.randrange(0, 60))))
        else:  # TTL 1 and 0: ICMP errors the node must rate-limit
            out.append(eth(GW_MAC, pod.mac, 0x0800,
                           ipv4(pod.v4, PEER4, 17, rb(16), ttl=rnd.randrange(2))))
    return out


# --- the node ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flood_bin(tmp_path_factory):
    out = tmp_path_factory.mktemp("flood") / "flood"
    r = subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(out), str(HERE / "flood.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def start_flood(flood_bin, ns, ifname, frames_file, seconds=FLOOD_SECONDS):
    """The sender at a lower CPU priority (nice 5: a third of the weight of a normal process,
    so it still floods on a busy machine): on a real node the flood's CPU is another
    machine's; here it shares 2 cores with the daemon and must not starve it by itself."""
    return ns.popen(f"nice -n 5 {flood_bin} {ifname} {seconds} {frames_file}")


def flood_result(p):
    out, err = p.communicate(timeout=FLOOD_SECONDS + 30)
    assert p.returncode == 0, err
    f = out.split()
    return {"sent": int(f[1]), "refused": int(f[3]), "seconds": float(f[5])}


@pytest.fixture
def node(request, daemon_factory, netns_factory, tmpdir_short):
    """A node namespace with the daemon (one worker on core 1), its uplink on a bridge with a
    veth to the peer, its host tap with the node's addresses; three pods of the port kind
    request.param (indirect parametrization; absent: the default kind)."""
    kind = getattr(request, "param", None)
    node_ns = netns_factory("fln")
    peer = netns_factory("flp")
    d = daemon_factory("fl", netns=node_ns, extra=uplink_daemon_config(
        "fl", 1, UPLINK_MAC, f"{NODE4}/24", f"{NODE6}/64", extra={
            "routes": [{"prefix": "0.0.0.0/0", "via": PEER4, "mac": PEER_MAC},
                       {"prefix": "::/0", "via": PEER6, "mac": PEER_MAC}],
            "host": {"tap": HOST_TAP, "punt_rate_pps": PUNT_PPS}}))
    router_behind_uplink(node_ns, "fl", peer, PEER_MAC, PEER4, PEER6, NODE4, NODE6)
    pods = []
    for i, name in enumerate("abc"):
        ns = netns_factory(f"fl{name}")
        ns.v4, ns.v6 = f"192.168.0.{i + 2}", f"fd00:10:244::{i + 2:x}"
        d.add_pod(ns, ipv4=ns.v4, ipv6=ns.v6, kind=kind)
        ns.mac = json.loads(ns.run("ip -j link show dev eth0").stdout)[0]["address"]
        pods.append(ns)
    for dst in (NODE4, NODE6):  # the peer reaches the node's kernel through the punt path
        fam = "-6" if ":" in dst else "-4"
        wait_until(lambda: peer.run(f"ping {fam} -c 1 -W 1 {dst}", check=False).returncode == 0,
                   15, interval=0.2, what=f"peer -> {dst}")
    return types.SimpleNamespace(d=d, ns=node_ns, peer=peer, pods=pods, tmp=tmpdir_short)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def api_latencies(d, seconds):
    """Round trips of the API (`stats`: the control thread gathers every worker's counters)
    for `seconds`, one after the other on one connection; in ms."""
    api = Api(d.sock)
    out = []
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            api.call("stats")
            out.append((time.monotonic() - t0) * 1000)
            time.sleep(0.005)
    finally:
        api.close()
    return out


TCP_PROBE = """
import json, socket, sys, time
addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lat, fails = [], 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.monotonic()
    try:
        with socket.create_connection((addr, port), timeout=3) as s:
            s.sendall(b"keepalive\\n")
            if s.recv(64) != b"keepalive\\n":
                raise OSError("bad echo")
        lat.append((time.monotonic() - t0) * 1000)
    except OSError:
        fails += 1
    time.sleep(0.02)
print(json.dumps({"lat": lat, "fails": fails}))
"""

TCP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(64))
    c.close()
"""


def test_control_floods_api_and_punt_path_keep_serving(node, flood_bin):
    n = node
    d, a = n.d, n.pods[0]
    pod_file = write_frames(pathlib.Path(n.tmp) / "pod.bin", pod_control_frames(a))
    up_file = write_frames(pathlib.Path(n.tmp) / "up.bin", uplink_control_frames())
    srv = n.ns.popen(f"/usr/bin/python3 -c '{TCP_ECHO}' {NODE4} {BGP_PORT}")
    try:
        assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
        # quiet: the API and the node's TCP path
        probe = n.peer.popen(f"/usr/bin/python3 -c '{TCP_PROBE}' {NODE4} {BGP_PORT} 1")
        quiet = api_latencies(d, 1.0)
        quiet_tcp = json.loads(probe.communicate(timeout=30)[0])
        before = d.stats()

        # the floods, from the pod and from the uplink at once
        floods = [start_flood(flood_bin, a, "eth0", pod_file),
                  start_flood(flood_bin, n.peer, "eth0", up_file)]
        probe = n.peer.popen(
            f"/usr/bin/python3 -c '{TCP_PROBE}' {NODE4} {BGP_PORT} {FLOOD_SECONDS - 0.5}")
        time.sleep(0.2)
        loaded = api_latencies(d, FLOOD_SECONDS - 0.5)
        loaded_tcp = json.loads(probe.communicate(timeout=60)[0])
        sent = [flood_result(p) for p in floods]
        after = d.stats()
    finally:
        srv.kill()
        srv.wait()

    rx = {p["kind"]: p for p in after["ports"]}
    rx0 = {p["kind"]: p for p in before["ports"]}
    got = {k: rx[k]["rx_packets"] - rx0[k]["rx_packets"] for k in rx}
    drops = {k: v - before["drops"].get(k, 0) for k, v in after["drops"].items()
             if v - before["drops"].get(k, 0)}
    res = {
        "api_quiet_p50_ms": statistics.median(quiet), "api_quiet_p99_ms": pct(quiet, 99),
        "api_flood_p50_ms": statistics.median(loaded), "api_flood_p99_ms": pct(loaded, 99),
        "api_flood_max_ms": max(loaded), "api_flood_calls": len(loaded),
        "tcp_quiet_p50_ms": statistics.median(quiet_tcp["lat"]),
        "tcp_flood_p50_ms": statistics.median(loaded_tcp["lat"]) if loaded_tcp["lat"] else None,
        "tcp_flood_p90_ms": pct(loaded_tcp["lat"], 90) if loaded_tcp["lat"] else None,
        "tcp_flood_p99_ms": pct(loaded_tcp["lat"], 99) if loaded_tcp["lat"] else None,
        "tcp_flood_ok": len(loaded_tcp["lat"]), "tcp_flood_failed": loaded_tcp["fails"],
        "pod_sent_pps": sent[0]["sent"] / sent[0]["seconds"],
        "uplink_sent_pps": sent[1]["sent"] / sent[1]["seconds"],
        "rx_pps": {k: v / FLOOD_SECONDS for k, v in got.items()},
        "drops": drops,
        "control": {k: v - before["control"].get(k, 0) for k, v in after["control"].items()
                    if isinstance(v, int) and v - before["control"].get(k, 0)},
    }
    record_results("flood_control", res)
    # the floods reached the dataplane, from both sides
    assert got["pod"] > 10000 and got["uplink"] > 10000, res
    # the punts over the rate went as named drops, not into the control thread
    assert drops.get("punt_rate_limited", 0) > 0, res
    # the control thread answered every call under the flood, promptly
    assert len(loaded) >= 50, res
    assert pct(loaded, 99) < max(100.0, 20 * pct(quiet, 99)), res
    assert statistics.median(loaded) < max(20.0, 10 * statistics.median(quiet)), res
    # the node's own TCP sessions (BGP's path through the host tap) kept working
    # (every attempt connected within 3 s, half of them without a SYN retransmission;
    # loose for a loaded CI machine: a starved punt path gets 1 to 4 through, p50 seconds)
    assert len(loaded_tcp["lat"]) >= 5 and loaded_tcp["fails"] == 0, res
    assert statistics.median(loaded_tcp["lat"]) < 500, res
    d.ctl("version")


def iperf(client, server_addr, port, seconds=1):
    r = client.run(f"iperf3 -c {server_addr} -p {port} -t {seconds} -J", check=False,
                   timeout=seconds + 30)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"]


@pytest.mark.parametrize("node", ["tun", "tap"], indirect=True)
def test_garbage_from_a_pod_leaves_neighbours_their_throughput(node, flood_bin):
    """Pod a sends garbage at full speed while b sends TCP to c (iperf3, 1 s before, during
    and after the flood). Per-pod ports (tun: a queue per pod) keep b's throughput within a
    factor of 8. Pods on the shared tap (the default kind: one kernel queue for every
    pod, see README) lose it while the flood lasts: that is measured, and their recovery
    after it is asserted."""
    n = node
    d, (a, b, c) = n.d, n.pods
    garbage = write_frames(pathlib.Path(n.tmp) / "garbage.bin", garbage_frames(a))
    port = free_port()
    srv = c.popen(f"iperf3 -s -p {port}")
    try:
        time.sleep(0.3)
        quiet = iperf(b, c.v4, port)
        before = d.stats()
        flood = start_flood(flood_bin, a, "eth0", garbage, seconds=2)
        time.sleep(0.3)
        loaded = iperf(b, c.v4, port)
        sent = flood_result(flood)
        after = d.stats()
        recovered = iperf(b, c.v4, port)
    finally:
        srv.kill()
        srv.wait()
    drops = {k: v - before["drops"].get(k, 0) for k, v in after["drops"].items()
             if v - before["drops"].get(k, 0)}
    kind = [p for p in d.ctl("endpoint", "list")["endpoints"]][0].get("kind")
    res = {"quiet_mbps": quiet / 1e6, "flood_mbps": loaded / 1e6,
           "after_mbps": recovered / 1e6, "garbage_pps": sent["sent"] / sent["seconds"],
           "kind": kind, "drops": drops}
    record_results(f"flood_garbage_{kind}", res)
    assert sent["sent"] > 20000, res
    # the garbage was dropped under many names, each counted
    assert len(drops) >= 5, res
    # without the flood: the better of before and after (the first run warms up)
    best = max(quiet, recovered)
    if kind == "tun":
        # the neighbours kept their throughput within a factor of 8 (the sender and the
        # flood share 2 cores with them here: about 3 measured; the shared tap loses 25+)
        assert loaded > best / 8, res
    # after the flood, every kind: the throughput is back (the first run warms up: a loose
    # bound against it)
    assert recovered > quiet / 8, res
    # and the daemon answers, the pods still reach each other both ways
    for dst in (c.v4, c.v6):
        fam = "-6" if ":" in dst else "-4"
        b.run(f"ping {fam} -c 2 -i 0.1 -W 2 {dst}", timeout=20)
    d.ctl("version")
