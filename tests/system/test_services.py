"""Kubernetes Services: as data followed by the daemon, and in the datapath.

As data: `fwdctl apply -f` writes the example Service of ../shared/examples and an
EndpointSlice into the node's store, and the daemon compiles and publishes what its node
serves (service.frontends) within its sync period; a slice that comes before its service
waits for it; deleting the service takes its frontends away.

In the datapath (the NAT stages destination-NAT new flows to a backend and reverse the
replies), with namespaces as pods and the real daemon:

  tor (namespace): bridge br0 10.0.0.254/24 fd00::254/64, no route to the pools
   `-- node1: dpdk-fwd 10.0.0.1/24 fd00::1/64, an ipam section on an embedded store with
              natOutgoing pools; pods a and b (servers answering with their name) and c
              (a client), addresses from IPAM

  web    dual-stack ClusterIP 10.96.0.10 / fd00:10:96::a, TCP 80 -> 8080, UDP 53 -> 5353,
         endpoints a and b: IPv4 and IPv6 clients get answers from both, from the
         ClusterIP, and the backends see the client's own address (no SNAT)
  empty  dual-stack ClusterIP without endpoints: TCP and UDP refused (ICMP / ICMPv6 port
         unreachable), drop reason svc_no_endpoint
  np     NodePort 30080 (TCP) -> a: the ToR reaches it at the node's addresses
  hair   ClusterIP with a as its only endpoint: a reaches itself through it (hairpin: the
         node's address as the source)
"""
import pathlib
import subprocess
import types

import pytest

from fwdlab import FWDCTL, ipam_pod, tor_bridge, uplink_daemon_config, uplink_ifname, wait_until

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "examples"
SLICE = """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: my-app-v6
  namespace: production
  labels:
    kubernetes.io/service-name: my-app
addressType: IPv6
endpoints:
  - addresses: ["fd00:10:244::5"]
    nodeName: svcnode
    conditions: {ready: true}
  - addresses: ["fd00:10:244::45"]
    nodeName: othernode
    conditions: {ready: false, serving: true, terminating: true}
ports:
  - name: http
    port: 8080
    protocol: TCP
  - name: https
    port: 8443
    protocol: TCP
"""


def fwdctl(*args, check=True):
    r = subprocess.run([str(FWDCTL), *map(str, args)], capture_output=True, text=True,
                       timeout=60)
    assert not check or r.returncode == 0, r.stdout + r.stderr
    return r


def test_daemon_follows_services_from_the_store(daemon_factory, tmpdir_short):
    store = f"embedded:{tmpdir_short}/store"
    d = daemon_factory("svcnode", extra={"ipam": {"store": store, "sync_ms": 100}})
    slice_file = pathlib.Path(tmpdir_short) / "slice.yaml"
    slice_file.write_text(SLICE)

    # the slice first: it waits for its service, nothing is served
    fwdctl("apply", "--store", store, "-f", slice_file)

    def notes():
        return d.ctl("service", "frontends")["notes"]
    wait_until(lambda: any("my-app-v6" in n for n in notes()), 20, interval=0.1,
               what="the slice noted as waiting for its service")
    assert d.ctl("service", "frontends")["frontends"] == []

    # the dual-stack example service (PreferDualStack, IPv6 first): both ClusterIPs, two ports
    fwdctl("apply", "--store", store, "-f", EXAMPLES / "service-dual-stack.yaml")

    def served():
        return d.ctl("service", "frontends")["frontends"]
    wait_until(lambda: len(served()) == 4, 20, interval=0.1,
               what="4 frontends: 2 ClusterIPs x 2 ports")
    fes = served()
    assert {f["service"] for f in fes} == {"production/my-app"}
    assert {f["kind"] for f in fes} == {"ClusterIP"}
    v6 = [f for f in fes if ":" in f["addr"]]
    v4 = [f for f in fes if ":" not in f["addr"]]
    assert len(v6) == 2 and len(v4) == 2, fes
    http6 = next(f for f in v6 if f["port"] == 80)
    # the ready endpoint takes new flows, the terminating one stays listed for existing flows
    assert [(b["addr"], b["port"], b["local"], b["new_flows"]) for b in http6["backends"]] == [
        ("fd00:10:244::5", 8080, True, True), ("fd00:10:244::45", 8080, False, False)], http6
    assert http6["no_backend"] == "-"
    # no IPv4 slice: the IPv4 frontends reject (ICMP port unreachable), as kube-proxy does
    assert all(f["no_backend"] == "reject" and f["backends"] == [] for f in v4), v4
    assert d.ctl("node")["services"]["frontends"] == 4
    out = fwdctl("-s", d.sock, "service", "frontends").stdout
    assert "production/my-app" in out and "fd00:10:244::5:8080" in out and "reject" in out, out

    # the service goes: its frontends go, the slice waits again
    fwdctl("delete", "--store", store, "-f", EXAMPLES / "service-dual-stack.yaml")
    wait_until(lambda: served() == [], 20, interval=0.1, what="the frontends withdrawn")
    assert any("my-app-v6" in n for n in notes())


# --- in the datapath ---

PEER = pathlib.Path(__file__).resolve().parent / "svc_peer.py"
PY = "/usr/bin/python3"
TOR4, TOR6 = "10.0.0.254", "fd00::254"
NODE4, NODE6 = "10.0.0.1", "fd00::1"
WEB4, WEB6 = "10.96.0.10", "fd00:10:96::a"
EMPTY4, EMPTY6 = "10.96.0.20", "fd00:10:96::14"
HAIR4, HAIR6 = "10.96.0.30", "fd00:10:96::1e"
NODE_PORT = 30080

POOLS = """apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool4}
spec: {cidr: 10.244.0.0/16, blockSize: 26, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool6}
spec: {cidr: "fd00:244::/48", blockSize: 122, natOutgoing: true}
"""


def service(name, ips, ports, kind="ClusterIP"):
    ports_yaml = "".join(
        f"    - {{name: {p[0]}, protocol: {p[1]}, port: {p[2]}, targetPort: {p[3]}"
        + (f", nodePort: {p[4]}" if len(p) > 4 else "") + "}\n" for p in ports)
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: {kind}
  ipFamilyPolicy: {"RequireDualStack" if len(ips) == 2 else "SingleStack"}
  ipFamilies: [{", ".join("IPv6" if ":" in ip else "IPv4" for ip in ips)}]
  clusterIPs: [{", ".join(f'"{ip}"' for ip in ips)}]
  ports:
{ports_yaml}"""


def endpoint_slice(service_name, family, addrs, ports):
    eps = "".join(f"""  - addresses: ["{a}"]
    nodeName: node1
    conditions: {{ready: true}}
""" for a in addrs)
    ports_yaml = "".join(f"  - {{name: {p[0]}, protocol: {p[1]}, port: {p[3]}}}\n"
                         for p in ports)
    return f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service_name}-{family.lower()}
  namespace: default
  labels: {{kubernetes.io/service-name: {service_name}}}
addressType: {family}
endpoints:
{eps}ports:
{ports_yaml}"""


@pytest.fixture
def svc_net(tmpdir_short, netns_factory, daemon_factory):
    tor = netns_factory("stor")
    br = tor_bridge(tor, TOR4, TOR6)
    store = f"embedded:{tmpdir_short}/store"
    pools = pathlib.Path(tmpdir_short) / "pools.yaml"
    pools.write_text(POOLS)
    fwdctl("apply", "--store", store, "-f", pools)
    ns1 = netns_factory("sn1")
    extra = uplink_daemon_config("sa", 1, "02:00:00:00:02:01", f"{NODE4}/24", f"{NODE6}/64",
                                 extra={"ipam": {"store": store, "sync_ms": 100},
                                        "routes": [{"prefix": "0.0.0.0/0", "via": TOR4},
                                                   {"prefix": "::/0", "via": TOR6}]})
    d = daemon_factory("node1", extra=extra, netns=ns1)
    br.adopt(uplink_ifname("sa"), ns1)
    pods = {name: ipam_pod(d, store, "node1", f"svc{name}", netns_factory(f"sp{name}"))
            for name in ("a", "b", "c")}
    a, b = pods["a"], pods["b"]
    web_ports = [("http", "TCP", 80, 8080), ("dns", "UDP", 53, 5353)]
    docs = [
        service("web", [WEB4, WEB6], web_ports),
        endpoint_slice("web", "IPv4", [a.v4, b.v4], web_ports),
        endpoint_slice("web", "IPv6", [a.v6, b.v6], web_ports),
        service("empty", [EMPTY4, EMPTY6], [("http", "TCP", 80, 8080), ("dns", "UDP", 53, 5353)]),
        service("np", ["10.96.0.40", "fd00:10:96::28"], [("http", "TCP", 80, 8080, NODE_PORT)], kind="NodePort"),
        endpoint_slice("np", "IPv4", [a.v4], [("http", "TCP", 80, 8080)]),
        endpoint_slice("np", "IPv6", [a.v6], [("http", "TCP", 80, 8080)]),
        service("hair", [HAIR4, HAIR6], [("http", "TCP", 80, 8080)]),
        endpoint_slice("hair", "IPv4", [a.v4], [("http", "TCP", 80, 8080)]),
        endpoint_slice("hair", "IPv6", [a.v6], [("http", "TCP", 80, 8080)]),
    ]
    svc_file = pathlib.Path(tmpdir_short) / "services.yaml"
    svc_file.write_text("---\n".join(docs))
    fwdctl("apply", "--store", store, "-f", svc_file)
    # web: 2 x 2, empty: 2 x 2, np: 2 ClusterIPs + the NodePort on both node addresses,
    # hair: 2
    wait_until(lambda: len(d.ctl("service", "frontends")["frontends"]) == 14, 30,
               interval=0.1, what="the services' frontends published")
    servers = []
    try:
        for name in ("a", "b"):
            p = pods[name].ns.popen(f"{PY} {PEER} serve {name} 8080 5353")
            servers.append(p)
            assert p.stdout.readline().strip() == "listening", p.stderr.read()
        yield types.SimpleNamespace(tor=tor, d=d, pods=pods, store=store, tmp=tmpdir_short)
    finally:
        for p in servers:
            if p.poll() is None:
                p.kill()
            p.wait()


def ask(ns, proto, addr, port):
    """(exit code, answering name, the peer the server saw, where the answer came from)."""
    r = ns.run(f"{PY} {PEER} ask {proto} {addr} {port}", check=False, timeout=30)
    lines = r.stdout.split("\n")
    if r.returncode != 0:
        return r.returncode, None, None, None
    name, peer_addr, peer_port = lines[0].split()
    src = lines[1].split()[1:]
    return 0, name, (peer_addr, int(peer_port)), (src[0], int(src[1]))


def test_cluster_ip_both_families_both_backends(svc_net):
    c = svc_net
    client = c.pods["c"]
    for vip, own in ((WEB4, client.v4), (WEB6, client.v6)):
        for proto, port in (("tcp", 80), ("udp", 53)):
            names = set()
            for _ in range(16):
                rc, name, peer, src = ask(client.ns, proto, vip, port)
                assert rc == 0, (vip, proto, rc)
                assert src == (vip, port), src  # the answer comes from the frontend
                assert peer[0] == own, peer     # the backend sees the client itself
                names.add(name)
            assert names == {"a", "b"}, (vip, proto, names)
    flows = c.d.ctl("conntrack", "list", "--dst", WEB4)["flows"]
    assert flows and all(f["nat"] == "dnat" for f in flows), flows
    out = fwdctl("-s", c.d.sock, "conntrack", "list", "--dst", WEB6).stdout
    assert "dnat" in out and WEB6 in out, out
    # the flows per frontend (TCP's in time_wait still count)
    fes = c.d.ctl("service", "frontends")["frontends"]
    web4 = next(f for f in fes if f["addr"] == WEB4 and f["port"] == 80)
    assert web4["flows"] >= 16, web4
    empty4 = next(f for f in fes if f["addr"] == EMPTY4 and f["port"] == 80)
    assert empty4["flows"] == 0, empty4
    out = fwdctl("-s", c.d.sock, "service", "frontends").stdout
    assert "FLOWS" in out, out


def test_no_endpoint_is_refused(svc_net):
    c = svc_net
    client = c.pods["c"]
    before = c.d.stats()["drops"].get("svc_no_endpoint", 0)
    for vip in (EMPTY4, EMPTY6):
        for proto, port in (("tcp", 80), ("udp", 53)):
            rc, *_ = ask(client.ns, proto, vip, port)
            assert rc == 3, (vip, proto, rc)  # ECONNREFUSED: ICMP / ICMPv6 port unreachable
    assert c.d.stats()["drops"].get("svc_no_endpoint", 0) >= before + 4


def test_node_port_from_outside(svc_net):
    c = svc_net
    for node, tor in ((NODE4, TOR4), (NODE6, TOR6)):
        rc, name, peer, src = ask(c.tor, "tcp", node, NODE_PORT)
        assert rc == 0 and name == "a", (node, rc, name)
        assert src == (node, NODE_PORT), src
        assert peer[0] == tor, peer  # a local backend: the client's address is kept


def test_hairpin(svc_net):
    c = svc_net
    a = c.pods["a"]
    for vip, node in ((HAIR4, NODE4), (HAIR6, NODE6)):
        rc, name, peer, src = ask(a.ns, "tcp", vip, 80)
        assert rc == 0 and name == "a", (vip, rc)
        assert src == (vip, 80), src
        assert peer[0] == node, peer  # SNATed to the node: never its own address
    flows = c.d.ctl("conntrack", "list", "--dst", HAIR4)["flows"]
    assert any(f["nat"] == "dnat+snat" for f in flows), flows
