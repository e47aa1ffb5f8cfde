"""natOutgoing end to end, IPv4 and IPv6, against Linux's own NAT as the reference.

  tor (namespace): bridge br0 10.0.0.254/24 fd00::254/64, loopbacks 1.1.1.1/32 and
       2001:db8::1/128, NO route to the pools: a pod's packet that comes back needs NAT
   |-- node1: dpdk-fwd 10.0.0.1/24 fd00::1/64, default route via the ToR; an ipam section on
   |          an embedded store whose pools (10.244.0.0/16, fd00:244::/48) are natOutgoing;
   |          pods a and b (namespaces through the daemon) with addresses from IPAM
   `-- linux1: a Linux node 10.0.0.3/24 fd00::3/64 configured as the reference: nftables
              masquerade of pool sources to destinations in no pool (Calico's rule), pods
              a and b behind veths (Calico's pod-side setup)

The same cases run from both nodes' pods to the ToR's loopbacks: ping with a given ICMP
identifier, UDP and TCP (content checked) from given source ports, and two pods using one
source port to one destination (the second must move). What the ToR sees must agree: the
node's own address as the source, the identifier / port kept when free, moved when not.
Then what the table must refuse: a reply of no flow, a TCP segment out of the window, each
dropped with its name in `fwdctl stats`; a SYN flood past the table's capacity (ct_table_full)
while an established connection goes on. Services: a ClusterIP (TCP, UDP, both families), a
pod reaching itself through it, a service without endpoints, on the dpdk-fwd node and on the
Linux node with kube-proxy's rules in nftables (DNAT, hairpin masquerade, REJECT): both ends
must see the same.
"""
import ipaddress
import pathlib
import subprocess
import time
import types

import pytest

from fwdlab import (FWDCTL, calico_veth_pod, check_config, ipam_pod, ippools_yaml,
                    record_results, tor_bridge, uplink_daemon_config, uplink_ifname, wait_until)

PEER = pathlib.Path(__file__).resolve().parent / "nat_peer.py"
PY = "/usr/bin/python3"
LOOP4, LOOP6 = "1.1.1.1", "2001:db8::1"
TOR4, TOR6 = "10.0.0.254", "fd00::254"
POOL4, POOL6 = "10.244.0.0/16", "fd00:244::/48"
NODE = types.SimpleNamespace(addr4="10.0.0.1", addr6="fd00::1")
LINUX = types.SimpleNamespace(addr4="10.0.0.3", addr6="fd00::3",
                              pods={"a": ("10.244.200.2", "fd00:244:0:200::2"),
                                    "b": ("10.244.200.3", "fd00:244:0:200::3")})

POOLS_YAML = ippools_yaml(POOL4, POOL6)

# Calico's rule as Felix writes it for iptables, in nftables: source in a natOutgoing pool,
# destination in no pool at all -> masquerade.
NFT = f"""table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {POOL4} ip daddr != {POOL4} masquerade
  }}
}}
table ip6 nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip6 saddr {POOL6} ip6 daddr != {POOL6} masquerade
  }}
}}
"""


def linux_pod(node, pod, name, v4, v6):
    """Calico's pod-side setup behind a veth on a Linux node."""
    calico_veth_pod(node, pod, f"cali{name}", v4, v6)


@pytest.fixture
def net(tmpdir_short, netns_factory, daemon_factory):
    tor = netns_factory("ntor")
    br = tor_bridge(tor, TOR4, TOR6)
    tor.run(f"ip addr add {LOOP4}/32 dev lo")
    tor.run(f"ip addr add {LOOP6}/128 dev lo")
    tor.run("sysctl -qw net.ipv4.conf.all.rp_filter=0")

    # the dpdk-fwd node, its store embedded, the pools in it before it starts
    store = f"embedded:{tmpdir_short}/ipam"
    pools = pathlib.Path(tmpdir_short) / "pools.yaml"
    pools.write_text(POOLS_YAML)
    r = subprocess.run([FWDCTL, "apply", "--store", store, "-f", str(pools)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    ns1 = netns_factory("nn1")
    extra = uplink_daemon_config("na", 1, "02:00:00:00:01:01", f"{NODE.addr4}/24",
                                 f"{NODE.addr6}/64", extra={
                                     "ipam": {"store": store, "sync_ms": 100},
                                     "routes": [{"prefix": "0.0.0.0/0", "via": TOR4},
                                                {"prefix": "::/0", "via": TOR6}],
                                     "conntrack": {"capacity": 4096,
                                                   "timeouts": {"udp_unreplied": 30}},
                                 })
    d = daemon_factory("node1", extra=extra, netns=ns1)
    br.adopt(uplink_ifname("na"), ns1)
    wait_until(lambda: len(d.ctl("node")["nat"]["pools"]) == 2, 20, interval=0.1,
               what="the pools in the dataplane")
    pods = {name: ipam_pod(d, store, "node1", f"nat{name}", netns_factory(f"np{name}"))
            for name in ("a", "b")}

    # the Linux node
    lin = netns_factory("nl1")
    br.plug_veth(lin, "nl1port")
    lin.run("sysctl -qw net.ipv6.conf.eth0.accept_dad=0")
    lin.run("ip link set eth0 up")
    lin.run(f"ip addr add {LINUX.addr4}/24 dev eth0")
    lin.run(f"ip addr add {LINUX.addr6}/64 dev eth0 nodad")
    lin.run(f"ip route add default via {TOR4}")
    lin.run(f"ip -6 route add default via {TOR6}")
    lin.run("sysctl -qw net.ipv4.ip_forward=1")
    lin.run("sysctl -qw net.ipv6.conf.all.forwarding=1")
    nft = pathlib.Path(tmpdir_short) / "nat.nft"
    nft.write_text(NFT)
    lin.run(f"nft -f {nft}")
    lpods = {}
    for name, (v4, v6) in LINUX.pods.items():
        ns = netns_factory(f"nq{name}")
        linux_pod(lin, ns, name, v4, v6)
        lpods[name] = types.SimpleNamespace(ns=ns, v4=v4, v6=v6)
    yield types.SimpleNamespace(tor=tor, br=br, d=d, pods=pods, lin=lin, lpods=lpods,
                                tmp=tmpdir_short)


def tor_peer(tor, proto, dst, port, client):
    """Runs a server on the ToR, the client (a callable) against it; returns what the ToR
    saw as the peer (address, port) and the client's result."""
    srv = tor.popen(f"{PY} {PEER} {proto}-server {dst} {port}")
    try:
        assert srv.stdout.readline().strip() == "listening", srv.stderr.read()
        res = client()
        out, err = srv.communicate(timeout=30)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    lines = out.split("\n")
    peer = lines[0].split()
    return (str(ipaddress.ip_address(peer[0].removeprefix("::ffff:"))), int(peer[1])), lines, res


def ping_ids(tor, pod, dst, ident, tmp, tag):
    """Pings dst from pod with ICMP identifier ident; returns (answered, {(src, id)}) the
    ToR saw in echo requests (tcpdump on its loopback side: the bridge)."""
    fam = 6 if ":" in dst else 4
    pcap = f"{tmp}/{tag}.pcap"
    dump = tor.popen(f"tcpdump -i br0 -n -U -w {pcap} {'icmp6' if fam == 6 else 'icmp'}")
    assert "listening on" in dump.stderr.readline()
    r = pod.run(f"ping -{fam} -c 2 -W 2 -e {ident} {dst}", check=False, timeout=20)
    time.sleep(0.3)
    dump.terminate()
    dump.communicate(timeout=10)
    out = subprocess.run(["tcpdump", "-n", "-r", pcap], capture_output=True, text=True,
                         timeout=30).stdout
    seen = set()
    for line in out.splitlines():
        if "echo request" in line:
            src = line.split(" IP6 " if fam == 6 else " IP ")[1].split(" > ")[0]
            ident_seen = int(line.split(" id ")[1].split(",")[0])
            seen.add((src, ident_seen))
    return r.returncode == 0, seen


def cases(c, node_addr, pods, tag):
    """What the ToR sees of one node's pods: {case: value}, with the node's own address
    written as "node"."""
    got = {}
    a, b = pods["a"], pods["b"]

    def who(addr):
        return "node" if addr in (node_addr.addr4, node_addr.addr6) else addr

    for fam, dst in ((4, LOOP4), (6, LOOP6)):
        ok, seen = ping_ids(c.tor, a.ns, dst, 4321, c.tmp, f"{tag}-ping{fam}")
        got[f"ping{fam}"] = (ok, sorted((who(s), i) for s, i in seen))
        port = 7000 + fam
        (peer, _, res) = tor_peer(
            c.tor, "udp", dst, port,
            lambda: a.ns.run(f"{PY} {PEER} udp-client {dst} {port} 40001", check=False))
        got[f"udp{fam}"] = (res.returncode == 0, who(peer[0]), peer[1])
        port = 7100 + fam
        peer, lines, res = tor_peer(
            c.tor, "tcp", dst, port,
            lambda: a.ns.run(f"{PY} {PEER} tcp-client {dst} {port} 3000000 40002",
                             check=False, timeout=60))
        got[f"tcp{fam}"] = (res.returncode == 0 and lines[1] == res.stdout.strip(),
                            who(peer[0]), peer[1])
        # two pods, one source port, one destination: the first keeps it, the second moves
        moved = []
        for p, port in ((a, 7200 + fam), (b, 7200 + fam)):
            peer, _, res = tor_peer(
                c.tor, "udp", dst, port,
                lambda p=p, port=port: p.ns.run(
                    f"{PY} {PEER} udp-client {dst} {port} 40003", check=False))
            moved.append((res.returncode == 0, who(peer[0]), peer[1]))
        got[f"collide{fam}"] = (moved[0], moved[1][:2], moved[1][2] != 40003,
                                moved[1][2] >= 1024)
    return got


def test_nat_outgoing_agrees_with_linux(net):
    c = net
    # the UDP collision case needs the first flow alive while the second starts: both
    # nodes keep an unreplied... the first one was replied; it stays (udp_replied 120 s)
    ours = cases(c, NODE, c.pods, "dpdk")
    linux = cases(c, LINUX, c.lpods, "linux")
    want = {
        "ping4": (True, [("node", 4321)]), "ping6": (True, [("node", 4321)]),
        "udp4": (True, "node", 40001), "udp6": (True, "node", 40001),
        "tcp4": (True, "node", 40002), "tcp6": (True, "node", 40002),
        "collide4": ((True, "node", 40003), (True, "node"), True, True),
        "collide6": ((True, "node", 40003), (True, "node"), True, True),
    }
    assert linux == want, f"the reference itself: {linux}"
    assert ours == linux, f"dpdk-fwd {ours}\nlinux    {linux}"
    # the flows are in the table, translated
    flows = c.d.ctl("conntrack", "list", "--family", "4")["flows"]
    assert any(f["nat"] == "snat" and f["orig"].startswith("tcp ") and LOOP4 in f["orig"]
               for f in flows), flows
    n = c.d.ctl("conntrack", "count")["count"]
    assert n >= 10, n
    drops = {k: v for k, v in c.d.stats()["drops"].items() if v and k.startswith(("ct_", "nat_"))}
    assert not drops, drops
    record_results("nat_outgoing", {"flows": n, "agree_with_linux": True})


def test_refusals_have_names(net):
    c = net
    d, a = c.d, c.pods["a"]

    def drops():
        return d.stats()["drops"]

    # a reply of no flow: UDP and a TCP SYN/ACK to the node's address (no host stack here)
    before = drops()
    c.tor.run(f"{PY} -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              f"s.bind(('{LOOP4}', 53)); s.sendto(b'x', ('{NODE.addr4}', 45678))\"")
    c.tor.run(f"{PY} {PEER} tcp-raw {LOOP4} 80 {NODE.addr4} 45679 12345")
    wait_until(lambda: drops().get("local_unhandled", 0) >= before.get("local_unhandled", 0) + 2,
               10, interval=0.1, what="the stray replies dropped as local_unhandled")

    # a TCP segment out of the window of an established flow, through the ToR
    srv = c.tor.popen(f"{PY} {PEER} tcp-server {LOOP4} 7300")
    cli = None
    try:
        assert srv.stdout.readline().strip() == "listening"
        cli = a.ns.popen(f"{PY} {PEER} tcp-client {LOOP4} 7300 0 40100", stdin=subprocess.PIPE)
        assert cli.stdout.readline().strip() == "connected", cli.stderr.read()
        peer = srv.stdout.readline().split()
        assert peer[0] == NODE.addr4, peer
        before = drops()
        # one of two sequence numbers half the space apart is outside any window
        for seq in (123456, 123456 + (1 << 31)):
            c.tor.run(f"{PY} {PEER} tcp-raw {LOOP4} 7300 {NODE.addr4} {peer[1]} {seq}")
        wait_until(lambda: drops().get("ct_tcp_out_of_window", 0)
                   > before.get("ct_tcp_out_of_window", 0), 10, interval=0.1,
                   what="ct_tcp_out_of_window")
        # the connection still works
        cli.stdin.close()
        cli.wait(timeout=20)
        out, _ = srv.communicate(timeout=20)
        assert out.split() == ["10", out.split()[1]], out
    finally:
        for p in (srv, cli):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    out = subprocess.run([FWDCTL, "-s", d.sock, "stats"], capture_output=True, text=True,
                         timeout=30).stdout
    assert "ct_tcp_out_of_window" in out and "conntrack" in out, out
    # fwdctl conntrack: count, filters, flush
    out = subprocess.run([FWDCTL, "-s", d.sock, "conntrack", "list", "--proto", "tcp",
                          "--dst", LOOP4], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and LOOP4 in out.stdout, out.stdout + out.stderr
    bad = subprocess.run([FWDCTL, "-s", d.sock, "conntrack", "list", "--state", "nonsense"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "'state'" in bad.stderr, bad.stderr
    assert d.ctl("conntrack", "flush", "--proto", "tcp")["flushed"] >= 1
    assert d.ctl("conntrack", "count", "--proto", "tcp")["count"] == 0


@pytest.mark.parametrize("section,value,message", [
    ("conntrack", {"capacity": 0}, "conntrack.capacity: expected an integer from 1 to 67108864"),
    ("conntrack", {"timeouts": {"tcp_established": 0}},
     "conntrack.timeouts.tcp_established: expected an integer from 1 to 1728000"),
    ("conntrack", {"timeouts": {"tcp_establish": 5}},
     'conntrack.timeouts.tcp_establish: unknown field "tcp_establish"'),
    ("conntrack", {"tcp_loose": "yes"}, "conntrack.tcp_loose: expected true or false"),
    ("nat", {"port_range": "2000-1000"}, "nat.port_range: expected a port range"),
    ("nat", {"port_range": "0:10"}, "nat.port_range: expected a port range"),
    ("nat", {"ports": "1-2"}, 'nat.ports: unknown field "ports"; known fields: port_range'),
])
def test_config_errors_name_the_key(tmp_path, section, value, message):
    r = check_config(tmp_path, section, value)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    ok = {"capacity": 1000, "timeouts": {"udp_unreplied": 5}} if section == "conntrack" \
        else {"port_range": "32768:60999"}
    r = check_config(tmp_path, section, ok)
    assert r.returncode == 0, r.stdout + r.stderr


FLOOD = """
import sys
from scapy.all import IP, IPv6, TCP, conf, send
dst, n = sys.argv[1], int(sys.argv[2])
ip = IPv6(dst=dst) if ":" in dst else IP(dst=dst)
send([ip / TCP(sport=10000 + i, dport=9, flags="S", seq=i) for i in range(n)], verbose=0)
"""


def test_syn_flood_fills_the_table_established_flows_go_on(net):
    """A pod floods SYNs (new flows) past the table's capacity (4096): the excess is dropped
    as ct_table_full, the daemon keeps running, and a connection established before the
    flood goes on through it (its data and FIN are translated both ways)."""
    c = net
    d, a, b = c.d, c.pods["a"], c.pods["b"]
    flood = pathlib.Path(c.tmp) / "flood.py"
    flood.write_text(FLOOD)
    srv = c.tor.popen(f"{PY} {PEER} tcp-server {LOOP4} 7400")
    cli = None
    try:
        assert srv.stdout.readline().strip() == "listening"
        cli = a.ns.popen(f"{PY} {PEER} tcp-client {LOOP4} 7400 0 40200", stdin=subprocess.PIPE)
        assert cli.stdout.readline().strip() == "connected", cli.stderr.read()
        capacity = d.ctl("conntrack", "count")["capacity"]
        assert capacity == 4096
        before = d.stats()["drops"].get("ct_table_full", 0)
        for dst in (LOOP4, LOOP6):
            b.ns.run(f"{PY} {flood} {dst} 3000", timeout=300)
        wait_until(lambda: d.stats()["drops"].get("ct_table_full", 0) > before, 20,
                   interval=0.1, what="new flows refused as ct_table_full")
        count = d.ctl("conntrack", "count")
        assert count["in_use"] == capacity, count
        # the established connection goes on: its close, both ways, through the full table
        cli.stdin.close()
        assert cli.wait(timeout=30) == 0, cli.stderr.read()
        out, _ = srv.communicate(timeout=30)
        lines = out.split("\n")
        assert lines[0].split() == [NODE.addr4, "40200"], out  # natOutgoing, port kept
        assert lines[1].split()[0] == "10", out  # all of it arrived
        assert d.ctl("conntrack", "count")["capacity"] == capacity  # the daemon still answers
    finally:
        for p in (srv, cli):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


SVC_PEER = pathlib.Path(__file__).resolve().parent / "svc_peer.py"
VIP = {4: "10.96.0.10", 6: "fd00:10:96::10"}
VIP_EMPTY = {4: "10.96.0.12", 6: "fd00:10:96::12"}


def services_yaml(backend):
    """A dual-stack ClusterIP service web (TCP 80 -> 8080, UDP 80 -> 5353) on backend
    ({family: address}), and a service empty without endpoints."""
    docs = [f"""apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIPs: [{VIP[4]}, {VIP[6]}]
  ports:
    - {{name: t, port: 80, targetPort: 8080, protocol: TCP}}
    - {{name: u, port: 80, targetPort: 5353, protocol: UDP}}
""", f"""apiVersion: v1
kind: Service
metadata: {{name: empty, namespace: default}}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  clusterIPs: [{VIP_EMPTY[4]}, {VIP_EMPTY[6]}]
  ports:
    - {{name: t, port: 80, protocol: TCP}}
"""]
    for f in (4, 6):
        docs.append(f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-v{f}
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv{f}
endpoints:
  - addresses: ["{backend[f]}"]
    nodeName: node1
    conditions: {{ready: true}}
ports:
  - {{name: t, port: 8080, protocol: TCP}}
  - {{name: u, port: 5353, protocol: UDP}}
""")
    return "---\n".join(docs)


def linux_services_nft(backend):
    """kube-proxy's rules for services_yaml() in nftables: DNAT of the ClusterIP to the
    endpoint, REJECT (ICMP port unreachable) for the service without endpoints, masquerade
    of a pod reaching itself through its service (KUBE-MARK-MASQ of hairpin traffic)."""
    out = []
    for f, tbl, icmp in ((4, "ip", "icmp"), (6, "ip6", "icmpv6")):
        ep = backend[f] if f == 4 else f"[{backend[f]}]"
        out.append(f"""table {tbl} svc {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    {tbl} daddr {VIP[f]} tcp dport 80 dnat to {ep}:8080
    {tbl} daddr {VIP[f]} udp dport 80 dnat to {ep}:5353
  }}
  chain post {{
    type nat hook postrouting priority 99; policy accept;
    {tbl} saddr {backend[f]} {tbl} daddr {backend[f]} masquerade
  }}
  chain forward_reject {{
    type filter hook forward priority 0; policy accept;
    {tbl} daddr {VIP_EMPTY[f]} tcp dport 80 reject with {icmp} type port-unreachable
  }}
}}
""")
    return "".join(out)


def service_cases(client, backend_pod, node_addr):
    """What the two ends of a service connection see, from client (a pod) and from the
    backend pod itself (hairpin): {case: value}, addresses written as who they are."""
    got = {}

    def who(addr, c):
        return {c.v4: "client", c.v6: "client", node_addr.addr4: "node",
                node_addr.addr6: "node", VIP[4]: "vip", VIP[6]: "vip"}.get(addr, addr)

    for fam in (4, 6):
        for tag, c in (("pod", client), ("hairpin", backend_pod)):
            for proto in ("tcp", "udp"):
                r = c.ns.run(f"{PY} {SVC_PEER} ask {proto} {VIP[fam]} 80", check=False,
                             timeout=30)
                lines = r.stdout.split("\n")
                if r.returncode != 0:
                    got[f"{tag}-{proto}{fam}"] = ("failed", r.returncode, r.stdout)
                    continue
                name, saw, _ = lines[0].split()
                src = lines[1].split()[1:]
                # (who answered, the source the backend saw, where the answer came from)
                got[f"{tag}-{proto}{fam}"] = (name, who(saw, c), who(src[0], c), int(src[1]))
        r = client.ns.run(f"{PY} {SVC_PEER} ask tcp {VIP_EMPTY[fam]} 80", check=False,
                          timeout=30)
        got[f"empty{fam}"] = r.stdout.strip()
    return got


def test_service_dnat_agrees_with_linux(net):
    """A ClusterIP service (TCP and UDP, both families), a pod reaching itself through it and
    a service without endpoints, on the dpdk-fwd node and on the Linux node with
    kube-proxy's rules in nftables: the backend and the client must see the same things
    (the client's own address at the backend, the answer from the ClusterIP and its port;
    the node's address at a backend reaching itself; port unreachable without endpoints)."""
    c = net
    d, a, b = c.d, c.pods["a"], c.pods["b"]
    store = f"embedded:{c.tmp}/ipam"
    svc = pathlib.Path(c.tmp) / "services.yaml"
    svc.write_text(services_yaml({4: a.v4, 6: a.v6}))
    r = subprocess.run([FWDCTL, "apply", "--store", store, "-f", str(svc)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    la, lb = c.lpods["a"], c.lpods["b"]
    nft = pathlib.Path(c.tmp) / "svc.nft"
    nft.write_text(linux_services_nft({4: la.v4, 6: la.v6}))
    c.lin.run(f"nft -f {nft}")
    wait_until(lambda: len(d.ctl("service", "frontends")["frontends"]) == 6, 30, interval=0.1,
               what="the ClusterIPs published")
    servers = []
    try:
        for ns in (a.ns, la.ns):
            p = ns.popen(f"{PY} {SVC_PEER} serve backend 8080 5353")
            servers.append(p)
            assert p.stdout.readline().strip() == "listening", p.stderr.read()
        ours = service_cases(b, a, NODE)
        linux = service_cases(lb, la, LINUX)
    finally:
        for p in servers:
            if p.poll() is None:
                p.kill()
            p.wait()
    record_results("service_dnat_vs_linux", {"dpdk-fwd": ours, "linux": linux})
    assert ours == linux, f"dpdk-fwd {ours}\nlinux    {linux}"
    # and what both saw is what kube-proxy gives
    for fam in (4, 6):
        for proto in ("tcp", "udp"):
            assert ours[f"pod-{proto}{fam}"] == ("backend", "client", "vip", 80)
            assert ours[f"hairpin-{proto}{fam}"] == ("backend", "node", "vip", 80)
        assert ours[f"empty{fam}"] == "refused"
