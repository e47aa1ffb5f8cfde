"""dpdk-fwd-cni, the real binary, driven with the real protocol (environment + stdin JSON)
through cnitool's NetworkList, which runs plugins as libcni does, and, for calls a runtime
would never make, straight through cnitool.invoke(). Behind it a real dpdk-fwd daemon with
an embedded IPAM store; pools are created with `fwdctl apply` (Calico IPPool YAML) as an
operator would.

Pods are network namespaces; the network list is configs/cni/10-dpdk-fwd.conflist with the
daemon's socket. What is checked is what CALICO.md ("Pod side of the wire", "CNI") and
issue 5 say a pod gets: the result (host-side interface, the pod interface with name / mac /
mtu / sandbox, /32 and /128 addresses pointing at it), the pod namespace really configured
(addresses, Calico's routes, the MTU from the pools' encapsulation), the endpoint in the
dataplane, the allocation in IPAM under `k8s-pod-network.<container id>` with the pod's
identity, and traffic between pods through the dataplane. After DEL nothing may be left:
no endpoint, no allocation (`fwdctl ipam check` clean), no link or route in the pod.

Traffic only between namespaces these tests made. The latency test records numbers and
asserts nothing about them."""
import ipaddress
import json
import os
import pathlib
import statistics
import subprocess
import uuid

import pytest

from cnitool import CniError, NetworkList, invoke, kubelet_args
from fwdlab import BUILD, FWDCTL, ROOT, RUN_ID, record_results, sh

CNI_DIR = BUILD / "cni-shim"
PLUGIN = CNI_DIR / "dpdk-fwd-cni"
REF_DIR = "/usr/lib/cni"  # Debian's reference plugins (tuning, loopback)
CONFLIST = ROOT / "configs" / "cni" / "10-dpdk-fwd.conflist"
NET = "k8s-pod-network"
VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
NODE = "n1"
GW4 = "169.254.1.1"
GW6 = "fe80::ecee:eeff:feee:eeee"
HOST_MAC = "ee:ee:ee:ee:ee:ee"
NODE_MTU = 1500  # fwdlab.Daemon's node.mtu

POOL4 = ipaddress.ip_network("192.168.0.0/16")
POOL6 = ipaddress.ip_network("fd00:10:244::/48")


def pool_yaml(name, cidr, block, vxlan="Never", disabled=False):
    return (f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\n"
            f"spec:\n  cidr: {cidr}\n  blockSize: {block}\n  vxlanMode: {vxlan}\n"
            f"  natOutgoing: false\n  nodeSelector: all()\n"
            f"  disabled: {'true' if disabled else 'false'}\n")


# The pool names the shipped network list asks for. VXLAN on, so the pod MTU shows the
# encapsulation overhead: 1500 - 50 with an IPv4 pool, 1500 - 70 with an IPv6 one.
V4_POOL = pool_yaml("default-ipv4-ippool", POOL4, 26, vxlan="Always")
V6_POOL = pool_yaml("default-ipv6-ippool", POOL6, 122, vxlan="Always")

FAMILIES = {
    # assign_ipv4, assign_ipv6, the pools that exist, the pod MTU
    "ipv4": ("true", "false", [V4_POOL], NODE_MTU - 50),
    "ipv6": ("false", "true", [V6_POOL], NODE_MTU - 70),
    "dual": ("true", "true", [V4_POOL, V6_POOL], NODE_MTU - 70),
}


def container_id():
    return uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex digits, like a containerd sandbox ID


def fwdctl_store(store, *args, check=True):
    env = {k: v for k, v in os.environ.items() if k != "FWD_IPAM_STORE"}
    r = subprocess.run([str(FWDCTL), *map(str, args), "--store", store], capture_output=True,
                       text=True, timeout=60, env=env)
    if check:
        assert r.returncode == 0, f"fwdctl {' '.join(map(str, args))}: {r.returncode}\n" \
                                  f"{r.stdout}{r.stderr}"
    return r


# --- what a pod namespace holds --------------------------------------------------------------

def links(ns):
    return {link["ifname"]: link for link in json.loads(ns.run("ip -j link show").stdout)}


def global_addrs(ns, ifname="eth0"):
    info = json.loads(ns.run(f"ip -j addr show dev {ifname}").stdout)
    return {f"{a['local']}/{a['prefixlen']}" for i in info for a in i["addr_info"]
            if a["scope"] == "global"}


def routes(ns, fam):
    return json.loads(ns.run(f"ip {fam} -j route show").stdout)


def non_lo_routes(ns):
    """Every route of every table in the namespace that is not on lo."""
    out = []
    for fam in ("-4", "-6"):
        out += [r for r in json.loads(ns.run(f"ip {fam} -j route show table all").stdout)
                if r.get("dev") != "lo"]
    return out


def sysctl(ns, key):
    return ns.run(f"sysctl -n {key}").stdout.strip()


def ping(ns, addr):
    """One echo reply within 3 s (asked every 0.2 s); fails the test otherwise."""
    fam = "-6" if ":" in addr else "-4"
    r = ns.run(f"ping {fam} -c 1 -i 0.2 -w 3 {addr}", check=False, timeout=15)
    assert r.returncode == 0, f"{ns.name}: no reply from {addr}\n{r.stdout}{r.stderr}"


def addrs_of(res, interface=None):
    """The result's addresses ("a/len") pointing at `interface` (any when None)."""
    return [ip["address"] for ip in res["ips"]
            if interface is None or ip.get("interface") == interface]


def bare(addr):
    return addr.split("/")[0]


class Node:
    """One dpdk-fwd with an `ipam` section on an embedded store, and the CNI side of it."""

    def __init__(self, daemon, store, tmp, netns_factory):
        self.d = daemon
        self.store = store
        self.tmp = pathlib.Path(tmp)
        self.cache = self.tmp / "cni-cache"
        self._netns = netns_factory
        self._pods = 0

    def pod(self):
        self._pods += 1
        return self._netns(f"c{self._pods}")

    def apply(self, text, name="pools.yaml"):
        path = self.tmp / name
        path.write_text(text)
        fwdctl_store(self.store, "apply", "-f", path)

    # --- network lists ---

    def conflist(self, version="1.1.0", assign_ipv4="true", assign_ipv6="true", **plugin):
        """The shipped list with this daemon's socket; ipam keys and plugin keys replaced."""
        conf = json.loads(CONFLIST.read_text())
        conf["cniVersion"] = version
        p = conf["plugins"][0]
        p["dpdk_fwd_socket"] = self.d.sock
        p["ipam"]["assign_ipv4"] = assign_ipv4
        p["ipam"]["assign_ipv6"] = assign_ipv6
        for k, v in plugin.items():
            if k.startswith("ipam_"):
                p["ipam"][k[5:]] = v
            else:
                p[k] = v
        return conf

    def network(self, conflist=None, dirs=(CNI_DIR,), **kw):
        return NetworkList(conflist or self.conflist(**kw), list(dirs), self.cache)

    # --- the daemon's and the store's view ---

    def endpoints(self):
        return self.d.ctl("endpoint", "list")["endpoints"]

    def endpoint(self, cid, network=NET, ifname="eth0"):
        want = f"{network}.{cid}.{ifname}"
        found = [e for e in self.endpoints() if e["id"] == want]
        return found[0] if found else None

    def pod_ports(self):
        """The dataplane's pod ports (names)."""
        return sorted(p["name"] for p in self.d.stats()["ports"] if p["kind"] == "pod")

    def endpoint_routes(self):
        """The dataplane's routes to endpoints (the pods' /32 and /128)."""
        return [r for r in self.d.ctl("route", "list")["routes"] if r["source"] == "endpoint"]

    def handle_addrs(self, cid, network=NET):
        out = fwdctl_store(self.store, "ipam", "show", "--handle", f"{network}.{cid}", "--json")
        return json.loads(out.stdout)["addresses"]

    def who(self, addr):
        return json.loads(fwdctl_store(self.store, "ipam", "show", "--ip", bare(addr),
                                       "--json").stdout)

    def ipam(self):
        return json.loads(fwdctl_store(self.store, "ipam", "show", "--json").stdout)

    def used(self):
        """{pool: addresses used}."""
        return {p["name"]: p["used"] for p in self.ipam()["pools"]}

    def assert_ipam_consistent(self):
        r = fwdctl_store(self.store, "ipam", "check", check=False)
        assert r.returncode == 0, f"fwdctl ipam check:\n{r.stdout}{r.stderr}"
        assert json.loads(fwdctl_store(self.store, "ipam", "check", "--json").stdout)[
            "consistent"] is True

    def assert_clean(self, pods=()):
        """No endpoint and no route to one in the dataplane, no address allocated, IPAM
        consistent, and every pod namespace back to lo only, with no route off lo."""
        assert self.endpoints() == []
        assert self.endpoint_routes() == []
        assert set(self.used().values()) <= {0}, self.used()
        assert all(b["used"] == 0 for b in self.ipam()["blocks"]), self.ipam()["blocks"]
        self.assert_ipam_consistent()
        for ns in pods:
            assert set(links(ns)) == {"lo"}, (ns.name, links(ns))
            assert non_lo_routes(ns) == [], (ns.name, non_lo_routes(ns))

    # --- one attachment, checked from every side ---

    def check_attached(self, res, ns, cid, *, v4, v6, mtu, version="1.1.0",
                       k8s=("default", None)):
        """The ADD result's shape, the pod namespace, the endpoint and the allocation."""
        assert res["cniVersion"] == version
        host, pod_if = res["interfaces"][-2:]
        base = len(res["interfaces"]) - 2  # earlier plugins' interfaces come first
        # the host side: named, Calico's gateway MAC, not in the pod
        assert isinstance(host["name"], str) and host["name"], host
        assert host["mac"] == HOST_MAC and "sandbox" not in host
        assert pod_if["name"] == "eth0" and pod_if["sandbox"] == ns.path
        assert len(pod_if["mac"].split(":")) == 6 and pod_if["mac"] != HOST_MAC
        if version in ("1.0.0", "1.1.0"):
            assert pod_if["mtu"] == mtu
        else:
            assert "mtu" not in pod_if
        ours = [ip for ip in res["ips"] if ip.get("interface") == base + 1]
        assert len(ours) == int(v4) + int(v6), res["ips"]
        got4 = [ip["address"] for ip in ours if ":" not in ip["address"]]
        got6 = [ip["address"] for ip in ours if ":" in ip["address"]]
        assert len(got4) == int(v4) and len(got6) == int(v6), res["ips"]
        for a in got4:
            assert a.endswith("/32") and ipaddress.ip_address(bare(a)) in POOL4, a
        for a in got6:
            assert a.endswith("/128") and ipaddress.ip_address(bare(a)) in POOL6, a
        for ip in ours:
            if version in ("1.0.0", "1.1.0"):
                assert "version" not in ip
            else:
                assert ip["version"] == ("6" if ":" in ip["address"] else "4")
        want_routes = ([{"dst": "0.0.0.0/0", "gw": GW4}] if v4 else []) + \
                      ([{"dst": "::/0", "gw": GW6}] if v6 else [])
        for r in want_routes:
            assert r in res.get("routes", []), res.get("routes")

        # the pod namespace
        eth0 = links(ns)["eth0"]
        assert eth0["address"] == pod_if["mac"] and eth0["mtu"] == mtu
        assert "UP" in eth0["flags"]
        assert global_addrs(ns) == set(got4 + got6)
        r4 = routes(ns, "-4")
        if v4:
            assert {"dst": GW4, "dev": "eth0", "scope": "link"} in \
                [{k: r.get(k) for k in ("dst", "dev", "scope")} for r in r4], r4
            assert [(r.get("gateway"), r.get("dev")) for r in r4 if r["dst"] == "default"] == \
                [(GW4, "eth0")], r4
        else:
            assert r4 == [], r4
        d6 = [(r.get("gateway"), r.get("dev")) for r in routes(ns, "-6") if r["dst"] == "default"]
        assert d6 == ([(GW6, "eth0")] if v6 else []), d6
        assert sysctl(ns, "net.ipv6.conf.eth0.accept_dad") == "0"

        # the dataplane's endpoint
        ep = self.endpoint(cid)
        assert ep is not None, [e["id"] for e in self.endpoints()]
        assert ep["netns"] == ns.path and ep["ifname"] == "eth0"
        assert ep["host_ifname"] == host["name"]
        assert ep["mac"] == pod_if["mac"] and ep["mtu"] == mtu
        assert ep["ipv4"] == (bare(got4[0]) if v4 else None)
        assert ep["ipv6"] == (bare(got6[0]) if v6 else None)
        assert ep["owner"]["handle"] == f"{NET}.{cid}"
        assert ep["owner"]["container_id"] == cid

        # IPAM: the handle holds exactly these addresses, with the pod's identity
        held = self.handle_addrs(cid)
        assert sorted(a["address"] for a in held) == sorted(bare(a) for a in got4 + got6)
        for a in held:
            assert a["handle"] == f"{NET}.{cid}" and a["containerID"] == cid
            assert a["node"] == NODE and a["borrowed"] is False
            assert a["namespace"] == k8s[0]
            if k8s[1] is not None:
                assert a["pod"] == k8s[1]
        who = self.who(got4[0] if v4 else got6[0])
        assert who["allocated"] is True and who["handle"] == f"{NET}.{cid}"
        return ep

    def assert_detached(self, ns, cid, res=None):
        assert self.endpoint(cid) is None
        assert self.handle_addrs(cid) == []
        for a in addrs_of(res) if res else []:
            assert self.who(a)["allocated"] is False, a
        if ns is not None:
            assert "eth0" not in links(ns)


@pytest.fixture
def node_factory(daemon_factory, netns_factory, tmpdir_short):
    """make(*pool_yaml) -> a Node: the pools applied to a fresh embedded store, then the
    daemon started on it."""
    made = []

    def make(*pools, name=NODE):
        assert not made, "one node per test"
        store = f"embedded:{tmpdir_short}/ipam"
        if pools:
            path = pathlib.Path(tmpdir_short) / "pools.yaml"
            path.write_text("---\n".join(pools))
            fwdctl_store(store, "apply", "-f", path)
        d = daemon_factory(name, extra={"ipam": {"store": store, "sync_ms": 200}})
        node = Node(d, store, tmpdir_short, netns_factory)
        made.append(node)
        return node

    return make


def plugin_env(verb, cid=None, netns=None, ifname="eth0", args=""):
    return {"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
            "CNI_IFNAME": ifname, "CNI_PATH": str(CNI_DIR), "CNI_ARGS": args}


def plugin_conf(nl):
    """The stdin libcni gives the (first) plugin of a list."""
    return nl.plugin_config(nl.plugins[0])


def plugin_error(r):
    """The CNI error JSON of a failed run (exit 1, error JSON on stdout)."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    err = json.loads(r.stdout)
    assert isinstance(err["code"], int) and err["msg"], err
    return err


# --- 1. every verb, per family ----------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_every_verb(node_factory, family):
    assign4, assign6, pools, mtu = FAMILIES[family]
    v4, v6 = assign4 == "true", assign6 == "true"
    node = node_factory(*pools)
    nl = node.network(assign_ipv4=assign4, assign_ipv6=assign6)

    # VERSION and STATUS
    info = nl.version("dpdk-fwd-cni")
    assert info == {"cniVersion": "1.1.0", "supportedVersions": VERSIONS}
    nl.status()

    # ADD three pods
    pods = [node.pod() for _ in range(3)]
    cids = [container_id() for _ in pods]
    args = [kubelet_args("shop", f"web-{i}", c) for i, c in enumerate(cids)]
    results = []
    for ns, cid, a in zip(pods, cids, args):
        res = nl.add(cid, ns.path, cni_args=a)
        assert len(res["interfaces"]) == 2
        assert [ip["interface"] for ip in res["ips"]] == [1] * (int(v4) + int(v6))
        node.check_attached(res, ns, cid, v4=v4, v6=v6, mtu=mtu,
                            k8s=("shop", a["K8S_POD_NAME"]))
        results.append(res)
    assert len(node.endpoints()) == 3
    assert len({a for r in results for a in addrs_of(r)}) == 3 * (int(v4) + int(v6))
    (a, b, c), (ra, rb, rc) = pods, results

    # CHECK, and traffic between the pods through the dataplane in the family
    for ns, cid, arg in zip(pods, cids, args):
        nl.check(cid, ns.path, cni_args=arg)
    for src, dst in ((a, rb), (b, rc), (c, ra)):
        for addr in addrs_of(dst):
            ping(src, bare(addr))

    # GC naming a and b: c goes. Its cache entry is dropped first (a runtime that lost its
    # cache), so that it is the plugin's GC and not libcni's DEL that removes it.
    os.unlink(nl.cache_path(cids[2], "eth0"))
    nl.gc([{"containerID": cids[0], "ifname": "eth0"},
           {"containerID": cids[1], "ifname": "eth0"}])
    node.assert_detached(c, cids[2], rc)
    assert non_lo_routes(c) == []
    for ns, cid, arg in zip(pods[:2], cids[:2], args[:2]):
        nl.check(cid, ns.path, cni_args=arg)
    for addr in addrs_of(rb):
        ping(a, bare(addr))

    # DEL when the dataplane's endpoint is already gone: ok, and the addresses go back
    d_ns, d_cid = node.pod(), container_id()
    rd = nl.add(d_cid, d_ns.path, cni_args=kubelet_args("shop", "web-d", d_cid))
    node.d.ctl("endpoint", "del", "--id", f"{NET}.{d_cid}.eth0")
    assert node.endpoint(d_cid) is None and len(node.handle_addrs(d_cid)) == int(v4) + int(v6)
    nl.delete(d_cid, d_ns.path, cni_args=kubelet_args("shop", "web-d", d_cid))
    node.assert_detached(d_ns, d_cid, rd)

    # CHECK reports what differs: an address removed by hand in a, a route in b
    lost = addrs_of(ra)[0]
    a.run(f"ip addr del {lost} dev eth0")
    with pytest.raises(CniError) as e:
        nl.check(cids[0], a.path, cni_args=args[0])
    assert e.value.code == 101 and e.value.plugin == "dpdk-fwd-cni"
    assert cids[0] in e.value.msg
    assert f"address {lost} missing" in e.value.details, e.value.details
    gone = "default via " + (GW4 if v4 else GW6)
    b.run(f"ip {'-4' if v4 else '-6'} route del default")
    with pytest.raises(CniError) as e:
        nl.check(cids[1], b.path, cni_args=args[1])
    assert e.value.code == 101
    assert gone in e.value.details and "missing" in e.value.details, e.value.details
    # CHECK of a container the daemon does not know (a's result, another container ID): 3
    unknown = container_id()
    conf = dict(plugin_conf(nl), prevResult=ra)
    r = invoke(PLUGIN, plugin_env("CHECK", unknown, a.path), json.dumps(conf))
    err = plugin_error(r)
    assert err["code"] == 3 and unknown in err["details"], err

    # DEL twice; DEL after the pod's namespace is gone
    nl.delete(cids[1], b.path, cni_args=args[1])
    node.assert_detached(b, cids[1], rb)
    nl.delete(cids[1], b.path, cni_args=args[1])
    mac_a = ra["interfaces"][1]["mac"]
    a.delete()
    nl.delete(cids[0], a.path, cni_args=args[0])
    node.assert_detached(None, cids[0], ra)
    # the pod's interface did not fall back into the root namespace
    assert mac_a not in sh("ip -br link").stdout
    nl.delete(cids[0], "", cni_args=args[0])  # and once more without a netns at all

    node.assert_clean([b, c, d_ns])
    assert not (node.cache / "results").exists() or list((node.cache / "results").iterdir()) == []


def test_runtime_config_mac_and_fixed_ips(node_factory):
    """The list declares the "mac" and "ips" capabilities: the runtime's MAC and addresses are
    the pod's, and IPAM holds exactly those. CNI_ARGS IP= (Calico's and host-local's fixed
    address) works too."""
    node = node_factory(V4_POOL, V6_POOL)
    nl = node.network()
    ns, cid = node.pod(), container_id()
    args = kubelet_args("default", "fixed-0", cid)
    rc = {"mac": "02:00:5e:00:53:07", "ips": ["192.168.3.7/32", "fd00:10:244::3:7/128"]}
    res = nl.add(cid, ns.path, cni_args=args, runtime_config=rc)
    assert res["interfaces"][1]["mac"] == rc["mac"]
    assert sorted(addrs_of(res)) == sorted(rc["ips"])
    node.check_attached(res, ns, cid, v4=True, v6=True, mtu=NODE_MTU - 70,
                        k8s=("default", "fixed-0"))
    nl.check(cid, ns.path, cni_args=args, runtime_config=rc)

    ns2, cid2 = node.pod(), container_id()
    args2 = dict(kubelet_args("default", "fixed-1", cid2), IP="192.168.3.8")
    nl4 = node.network(assign_ipv6="false")
    res2 = nl4.add(cid2, ns2.path, cni_args=args2)
    assert addrs_of(res2) == ["192.168.3.8/32"]
    node.check_attached(res2, ns2, cid2, v4=True, v6=False, mtu=NODE_MTU - 50,
                        k8s=("default", "fixed-1"))
    for addr in addrs_of(res2):
        ping(ns, bare(addr))

    # an address someone else holds is not handed out twice
    ns3, cid3 = node.pod(), container_id()
    with pytest.raises(CniError) as e:
        nl4.add(cid3, ns3.path, cni_args=dict(kubelet_args("default", "fixed-2", cid3),
                                              IP="192.168.3.8"))
    assert e.value.code == 7 and "192.168.3.8 is already in use" in e.value.details, e.value
    nl4.delete(cid3, ns3.path)
    assert node.who("192.168.3.8")["handle"] == f"{NET}.{cid2}"

    nl.delete(cid, ns.path, cni_args=args, runtime_config=rc)
    nl4.delete(cid2, ns2.path, cni_args=args2)
    node.assert_clean([ns, ns2, ns3])


EXAMPLES = ROOT.parent / "shared" / "examples"


def test_pod_record_annotations_choose_addresses(node_factory):
    """A kubelet-less lab: the Pod of ../shared/examples/pod-ipv6-pool-annotation.yaml (its
    annotation names an IPv6 pool), given labels, and its Namespace (whose annotation names an
    IPv4 pool by CIDR) are applied with `fwdctl apply -f`; CNI ADD with the runtime's
    K8S_POD_NAMESPACE / K8S_POD_NAME takes the pod's addresses from those pools (not the network
    list's), and the pod's record then carries its node, addresses and container id with the
    labels it had. DEL takes the attachment out of the record and keeps the labels; a pod with
    no record gets a bare one, gone with its DEL. A bad annotation refuses the ADD naming it,
    with nothing allocated."""
    prod4 = pool_yaml("production-pods-ipv4", "10.77.0.0/24", 26)
    prod6 = pool_yaml("production-pods-ipv6", "fd00:77::/112", 122)
    node = node_factory(V4_POOL, V6_POOL, prod4, prod6)
    pod_doc = (EXAMPLES / "pod-ipv6-pool-annotation.yaml").read_text().replace(
        "  namespace: production\n", "  namespace: production\n  labels:\n    app: web\n")
    ns_doc = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: production\n"
              "  annotations:\n    cni.projectcalico.org/ipv4pools: '[\"10.77.0.0/24\"]'\n")
    node.apply(pod_doc + "---\n" + ns_doc, name="pod.yaml")
    nl = node.network()  # asks default-ipv4-ippool / default-ipv6-ippool

    def record(key):
        r = fwdctl_store(node.store, "policy", "pod", key, "--json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    ns, cid = node.pod(), container_id()
    args = kubelet_args("production", "production-app", cid)
    res = nl.add(cid, ns.path, cni_args=args)
    got = sorted(bare(a) for a in addrs_of(res))
    assert len(got) == 2, res
    assert ipaddress.ip_address(got[0]) in ipaddress.ip_network("10.77.0.0/24"), got
    assert ipaddress.ip_address(got[1]) in ipaddress.ip_network("fd00:77::/112"), got
    assert sorted(a["address"] for a in node.handle_addrs(cid)) == got
    rec = record("production/production-app")
    assert rec["metadata"]["labels"] == {"app": "web"}
    assert rec["spec"]["nodeName"] == NODE
    assert sorted(i["ip"] for i in rec["status"]["podIPs"]) == got
    ann = rec["metadata"]["annotations"]
    assert ann["cni.projectcalico.org/containerID"] == cid
    assert ann["cni.projectcalico.org/ipv6pools"] == '["production-pods-ipv6"]'

    nl.delete(cid, ns.path, cni_args=args)
    rec = record("production/production-app")
    assert rec["metadata"]["labels"] == {"app": "web"}
    assert "status" not in rec and "cni.projectcalico.org/containerID" not in \
        rec["metadata"]["annotations"], rec

    # no record: a bare one while attached
    ns2, cid2 = node.pod(), container_id()
    args2 = kubelet_args("shop", "bare-0", cid2)
    res2 = nl.add(cid2, ns2.path, cni_args=args2)
    rec2 = record("shop/bare-0")
    assert rec2 is not None and "labels" not in rec2["metadata"], rec2
    assert sorted(i["ip"] for i in rec2["status"]["podIPs"]) == \
        sorted(bare(a) for a in addrs_of(res2))
    nl.delete(cid2, ns2.path, cni_args=args2)
    assert record("shop/bare-0") is None

    # a bad annotation: refused, naming it, nothing allocated
    node.apply("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  namespace: shop\n"
               "  annotations:\n    cni.projectcalico.org/ipAddrs: '[\"10.77.0.5\", "
               "\"10.77.0.6\"]'\n", name="bad.yaml")
    ns3, cid3 = node.pod(), container_id()
    args3 = kubelet_args("shop", "bad", cid3)
    with pytest.raises(CniError) as e:
        nl.add(cid3, ns3.path, cni_args=args3)
    assert "cni.projectcalico.org/ipAddrs" in e.value.details and \
        "cannot have more than one IPv4 address" in e.value.details, e.value
    nl.delete(cid3, ns3.path, cni_args=args3)
    node.assert_clean([ns, ns2, ns3])


def test_vhost_user_pod(node_factory):
    """A network whose pods are DPDK or VM pods: ADD makes a vhost-user socket (the daemon is
    the server) instead of a kernel interface; the result names it as the interface's
    socketPath; CHECK passes without a kernel interface to inspect; DEL removes the socket and
    releases the addresses. runtimeConfig can ask for vhost-user on a kernel-pod network too."""
    node = node_factory(V4_POOL, V6_POOL)
    sockdir = node.tmp / "vhost"
    nl = node.network(vhost_user={"enabled": True, "mode": "server", "socket_dir": str(sockdir)})
    ns, cid = node.pod(), container_id()
    args = kubelet_args("default", "vm-0", cid)
    res = nl.add(cid, ns.path, cni_args=args)
    pod_if = res["interfaces"][1]
    sock = pathlib.Path(pod_if["socketPath"])
    assert sock.parent == sockdir and sock.name.startswith(cid[:12] + "-"), pod_if
    assert sock.is_socket(), sock
    assert pod_if["name"] == "eth0" and pod_if["sandbox"] == ns.path, pod_if
    assert len(addrs_of(res)) == 2 and all(ip["interface"] == 1 for ip in res["ips"]), res
    ep = node.endpoint(cid)
    assert ep["kind"] == "vhost-user" and ep["port"] == "own", ep
    assert ep["vhost_socket"] == str(sock) and ep["mac"] == pod_if["mac"], ep
    assert sorted(a["address"] for a in node.handle_addrs(cid)) == sorted(bare(a) for a in addrs_of(res))
    assert set(links(ns)) == {"lo"}, "a vhost-user pod gets no kernel interface"
    nl.check(cid, ns.path, cni_args=args)
    nl.delete(cid, ns.path, cni_args=args)
    assert not sock.exists(), sock
    node.assert_detached(ns, cid, res)

    # the runtime asks for it per attachment (a network declaring the capability)
    conf = node.conflist()
    conf["plugins"][0]["capabilities"]["vhost_user"] = True
    nl2 = node.network(conflist=conf)
    cid2 = container_id()
    res2 = nl2.add(cid2, ns.path, cni_args=kubelet_args("default", "vm-1", cid2),
                   runtime_config={"vhost_user": True})
    assert pathlib.Path(res2["interfaces"][1]["socketPath"]).is_socket(), res2
    nl2.delete(cid2, ns.path)
    node.assert_clean([ns])


# --- 2. many pods on one node -----------------------------------------------------------------

MANY_PODS = 50


def test_fifty_pods_added_then_deleted(node_factory):
    """Dual stack, one node: 50 pods up (each with its own addresses, endpoint and
    allocation), the first and the last talking through the dataplane, then all deleted and
    nothing left: no address, no endpoint, no link or route in any pod, IPAM consistent."""
    node = node_factory(V4_POOL, V6_POOL)
    nl = node.network()
    # the dataplane's pod ports when no pod is attached (after one came and went: a port
    # shared by all kernel pods may stay)
    ns, cid = node.pod(), container_id()
    nl.add(cid, ns.path)
    nl.delete(cid, ns.path)
    idle_ports = node.pod_ports()
    pods = []
    for i in range(MANY_PODS):
        ns, cid = node.pod(), container_id()
        args = kubelet_args("load", f"pod-{i}", cid)
        pods.append((ns, cid, args, nl.add(cid, ns.path, cni_args=args)))

    eps = node.endpoints()
    assert len(eps) == MANY_PODS
    assert {e["owner"]["container_id"] for e in eps} == {cid for _, cid, _, _ in pods}
    every = [a for *_, res in pods for a in addrs_of(res)]
    assert len(set(every)) == 2 * MANY_PODS
    assert len(node.endpoint_routes()) == 2 * MANY_PODS
    assert node.used() == {"default-ipv4-ippool": MANY_PODS, "default-ipv6-ippool": MANY_PODS}
    node.assert_ipam_consistent()
    for ns, cid, _, res in pods:
        assert global_addrs(ns) == set(addrs_of(res)), ns.name
        assert len(node.handle_addrs(cid)) == 2
    first, last = pods[0], pods[-1]
    for addr in addrs_of(last[3]):
        ping(first[0], bare(addr))
    for addr in addrs_of(first[3]):
        ping(last[0], bare(addr))

    for ns, cid, args, _ in pods:
        nl.delete(cid, ns.path, cni_args=args)
    node.assert_clean([ns for ns, *_ in pods])
    assert node.pod_ports() == idle_ports
    for a in every:
        assert node.who(a)["allocated"] is False, a


# --- 3. latency -------------------------------------------------------------------------------

LATENCY_PODS = 100


def percentile(samples, p):
    s = sorted(samples)
    return s[max(0, -(-len(s) * p // 100) - 1)]  # nearest rank


def test_add_del_latency(node_factory):
    """ADD and DEL through the plugin as the runtime sees them (cnitool's last_elapsed: the
    plugin's exec, its call to the daemon, the result cache), dual stack, 100 pods: all added,
    then all deleted. Recorded, not asserted."""
    node = node_factory(V4_POOL, V6_POOL)
    nl = node.network()
    add_s, del_s, attached = [], [], []
    for i in range(LATENCY_PODS):
        ns, cid = node.pod(), container_id()
        args = kubelet_args("lat", f"pod-{i}", cid)
        res = nl.add(cid, ns.path, cni_args=args)
        add_s.append(nl.last_elapsed)
        assert len(addrs_of(res)) == 2
        attached.append((ns, cid, args))
    assert len(node.endpoints()) == LATENCY_PODS
    for ns, cid, args in attached:
        nl.delete(cid, ns.path, cni_args=args)
        del_s.append(nl.last_elapsed)
    node.assert_clean([ns for ns, *_ in attached])
    ms = {}
    for verb, samples in (("add", add_s), ("del", del_s)):
        ms[f"{verb}_p50_ms"] = round(percentile(samples, 50) * 1000, 2)
        ms[f"{verb}_p99_ms"] = round(percentile(samples, 99) * 1000, 2)
        ms[f"{verb}_mean_ms"] = round(statistics.mean(samples) * 1000, 2)
        ms[f"{verb}_max_ms"] = round(max(samples) * 1000, 2)
    record_results("cni_add_del_latency", {"pods": LATENCY_PODS, "family": "dual", **ms})


# --- 4. chaining ------------------------------------------------------------------------------

TUNED_MTU = 1400
TUNED_SYSCTLS = {"net.ipv4.conf.eth0.rp_filter": "2"}


def tuning_chain(node):
    """dpdk-fwd-cni -> tuning (MTU and a sysctl). tuning (Debian's 1.1.1) speaks up to 1.0.0."""
    conf = node.conflist(version="1.0.0")
    conf["plugins"].append({"type": "tuning", "mtu": TUNED_MTU, "sysctl": TUNED_SYSCTLS,
                            "dataDir": str(node.tmp / "tuning")})
    return node.network(conf, dirs=(CNI_DIR, REF_DIR))


def test_chain_with_tuning_add_del(node_factory):
    node = node_factory(V4_POOL, V6_POOL)
    nl = tuning_chain(node)
    ns, cid = node.pod(), container_id()
    args = kubelet_args("default", "tuned-0", cid)
    for key, value in TUNED_SYSCTLS.items():
        assert sysctl(ns, key.replace(".eth0.", ".default.")) != value  # tuning must change it

    res = nl.add(cid, ns.path, cni_args=args)
    # tuning passes our result on: our two interfaces and our addresses
    assert [i["name"] for i in res["interfaces"]] == [node.endpoint(cid)["host_ifname"], "eth0"]
    assert [ip["interface"] for ip in res["ips"]] == [1, 1]
    # the tuned values, inside the pod
    assert links(ns)["eth0"]["mtu"] == TUNED_MTU
    for key, value in TUNED_SYSCTLS.items():
        assert sysctl(ns, key) == value
    assert global_addrs(ns) == set(addrs_of(res))
    assert len(node.handle_addrs(cid)) == 2
    # an untuned pod of the same network: traffic both ways through the dataplane
    other_nl = node.network(version="1.0.0")
    other, ocid = node.pod(), container_id()
    ores = other_nl.add(ocid, other.path, cni_args=kubelet_args("default", "plain-0", ocid))
    for addr in addrs_of(ores):
        ping(ns, bare(addr))
    for addr in addrs_of(res):
        ping(other, bare(addr))
    other_nl.delete(ocid, other.path, cni_args=kubelet_args("default", "plain-0", ocid))

    nl.delete(cid, ns.path, cni_args=args)
    node.assert_detached(ns, cid, res)
    assert list((node.tmp / "tuning").iterdir()) == []  # tuning restored what it saved
    nl.delete(cid, ns.path, cni_args=args)
    node.assert_clean([ns, other])


def test_chain_with_tuning_check(node_factory):
    """CHECK of the dpdk-fwd-cni -> tuning list right after its ADD: nothing changed since,
    so every plugin of the list must agree (libcni runs CHECK on each with the final result).
    tuning set the MTU as configured; dpdk-fwd-cni must not call that a difference."""
    node = node_factory(V4_POOL, V6_POOL)
    nl = tuning_chain(node)
    ns, cid = node.pod(), container_id()
    args = kubelet_args("default", "tuned-1", cid)
    nl.add(cid, ns.path, cni_args=args)
    try:
        nl.check(cid, ns.path, cni_args=args)
        # and a real difference is still found
        ns.run("ip -4 route del default")
        with pytest.raises(CniError) as e:
            nl.check(cid, ns.path, cni_args=args)
        assert e.value.code == 101 and e.value.plugin == "dpdk-fwd-cni"
        assert f"default via {GW4}" in e.value.details and "MTU" not in e.value.details
    finally:
        nl.delete(cid, ns.path, cni_args=args)
    node.assert_clean([ns])


def test_chain_after_loopback_honours_prev_result(node_factory):
    """loopback -> dpdk-fwd-cni: the reference loopback plugin brings up lo and reports it;
    dpdk-fwd-cni gets that as prevResult and appends to it: lo and its addresses first, ours
    after, our addresses pointing at our pod interface (index 2 now)."""
    node = node_factory(V4_POOL, V6_POOL)
    conf = node.conflist(version="1.0.0")
    conf["plugins"].insert(0, {"type": "loopback"})
    nl = node.network(conf, dirs=(CNI_DIR, REF_DIR))
    ns, cid = node.pod(), container_id()
    args = kubelet_args("default", "lo-0", cid)
    # what loopback alone answers, in a namespace of its own
    alone_ns = node.pod()
    lo_res = json.loads(invoke(f"{REF_DIR}/loopback", plugin_env("ADD", cid, alone_ns.path),
                               json.dumps(nl.plugin_config(nl.plugins[0]))).stdout)
    assert lo_res["interfaces"] and lo_res["ips"], lo_res

    res = nl.add(cid, ns.path, cni_args=args)
    assert res["interfaces"][0] == dict(lo_res["interfaces"][0], sandbox=ns.path)
    assert res["interfaces"][0]["name"] == "lo"
    n_lo = len(lo_res["ips"])
    assert res["ips"][:n_lo] == lo_res["ips"]
    assert all(ip["interface"] == 0 for ip in res["ips"][:n_lo])
    assert [ip["interface"] for ip in res["ips"][n_lo:]] == [2, 2]
    assert len(res["interfaces"]) == 3
    node.check_attached(res, ns, cid, v4=True, v6=True, mtu=NODE_MTU - 70, version="1.0.0")
    nl.check(cid, ns.path, cni_args=args)

    nl.delete(cid, ns.path, cni_args=args)
    node.assert_detached(ns, cid, res)
    node.assert_clean([ns])


def test_check_endpoint_gone_addresses_held(node_factory):
    """The dataplane lost a pod's endpoint (removed by hand here; a daemon restart does the
    same) while IPAM still holds its addresses. CHECK must report that as a difference (101):
    code 3 ("unknown container") tells the runtime no cleanup is needed, and the addresses
    would never come back. DEL then releases them."""
    node = node_factory(V4_POOL, V6_POOL)
    nl = node.network()
    ns, cid = node.pod(), container_id()
    args = kubelet_args("default", "gone-0", cid)
    res = nl.add(cid, ns.path, cni_args=args)
    node.d.ctl("endpoint", "del", "--id", f"{NET}.{cid}.eth0")
    assert node.endpoint(cid) is None and len(node.handle_addrs(cid)) == 2
    try:
        with pytest.raises(CniError) as e:
            nl.check(cid, ns.path, cni_args=args)
        assert e.value.code == 101, e.value
        assert "endpoint" in e.value.details, e.value
    finally:
        nl.delete(cid, ns.path, cni_args=args)
    node.assert_detached(ns, cid, res)
    node.assert_clean([ns])


# --- 5. GC ------------------------------------------------------------------------------------

def test_gc_releases_all_but_the_valid_attachments(node_factory):
    """Three pods; the runtime lost the cache entries of two of them (so libcni's own half of
    GC, a DEL per cached attachment, has nothing to do and only the plugin's GC can act), then
    GC naming the third. The other two lose endpoint, addresses and pod link; the one kept
    still works. A pod of another network and an endpoint made by hand (no CNI owner) are not
    this network's: GC leaves them alone."""
    node = node_factory(V4_POOL, V6_POOL)
    nl = node.network()
    pods = []
    for i in range(3):
        ns, cid = node.pod(), container_id()
        args = kubelet_args("default", f"gc-{i}", cid)
        pods.append((ns, cid, args, nl.add(cid, ns.path, cni_args=args)))
    other_conf = node.conflist()
    other_conf["name"] = "other-net"
    other_nl = node.network(other_conf)
    ons, ocid = node.pod(), container_id()
    ores = other_nl.add(ocid, ons.path, cni_args=kubelet_args("default", "other", ocid))
    hand = node.pod()
    node.d.add_pod(hand, ipv4="10.77.0.5", ipv6="fd00:77::5", name="by-hand")
    keep = pods[0]
    for p in pods[1:]:
        os.unlink(nl.cache_path(p[1], "eth0"))

    nl.gc([{"containerID": keep[1], "ifname": "eth0"}])

    for ns, cid, _, res in pods[1:]:
        node.assert_detached(ns, cid, res)
        assert non_lo_routes(ns) == []
    assert node.endpoint(keep[1]) is not None and len(node.handle_addrs(keep[1])) == 2
    assert node.endpoint(ocid, network="other-net") is not None
    assert len(node.handle_addrs(ocid, network="other-net")) == 2
    assert "by-hand" in [e["id"] for e in node.endpoints()]
    assert len(node.endpoints()) == 3
    node.assert_ipam_consistent()
    nl.check(keep[1], keep[0].path, cni_args=keep[2])
    # the kept pod still talks: to the other network's pod and to the hand-made endpoint
    for addr in addrs_of(ores) + ["10.77.0.5", "fd00:77::5"]:
        ping(keep[0], bare(addr))

    # GC of the other network with nothing valid: its pod goes, the hand-made one stays
    other_nl.gc([])
    node.assert_detached(ons, ocid, None)
    assert len(node.handle_addrs(ocid, network="other-net")) == 0
    assert sorted(e["id"] for e in node.endpoints()) == sorted(["by-hand", f"{NET}.{keep[1]}.eth0"])

    nl.delete(keep[1], keep[0].path, cni_args=keep[2])
    node.d.ctl("endpoint", "del", "--id", "by-hand")
    node.assert_clean([p[0] for p in pods] + [ons, hand])


# --- 6. STATUS --------------------------------------------------------------------------------

def test_status(node_factory):
    node = node_factory(V4_POOL)  # an IPv4 pool only
    nl4 = node.network(assign_ipv6="false")
    nl46 = node.network()
    nl4.status()

    # IPv6 asked for, no IPv6 pool: not available (50), and ADD fails as STATUS said
    with pytest.raises(CniError) as e:
        nl46.status()
    assert e.value.code == 50 and e.value.plugin == "dpdk-fwd-cni"
    assert "IPv6 pool" in e.value.details and "IPv4" not in e.value.details, e.value.details
    ns, cid = node.pod(), container_id()
    with pytest.raises(CniError) as e:
        nl46.add(cid, ns.path)
    assert e.value.code == 7, e.value
    assert "'default-ipv6-ippool' does not exist or is disabled" in e.value.details, e.value
    nl46.delete(cid, ns.path)  # the runtime cleans up after a failed ADD
    node.assert_clean([ns])

    node.apply(V6_POOL)
    nl46.status()

    # the IPv4 pool disabled: not available for IPv4
    node.apply(pool_yaml("default-ipv4-ippool", POOL4, 26, vxlan="Always", disabled=True))
    with pytest.raises(CniError) as e:
        nl4.status()
    assert e.value.code == 50 and "IPv4 pool" in e.value.details, e.value.details
    with pytest.raises(CniError) as e:
        nl4.add(cid, ns.path)
    assert e.value.code == 7, e.value
    assert "'default-ipv4-ippool' does not exist or is disabled" in e.value.details, e.value
    nl4.delete(cid, ns.path)
    node.assert_clean([ns])
    node.apply(V4_POOL)
    nl4.status()

    # the daemon stopped: not available, and running pods are cut off too (51)
    node.d.stop()
    for nl in (nl4, nl46):
        with pytest.raises(CniError) as e:
            nl.status()
        assert e.value.code == 51 and "not reachable" in e.value.msg, e.value


# --- 7. bad input -----------------------------------------------------------------------------

TINY_POOL = pool_yaml("tiny-v4", "10.99.0.0/30", 30)


def test_bad_input(node_factory):
    """Each refused with the spec's code and a message naming the problem, and nothing
    allocated or left behind (no endpoint, no address held, IPAM consistent, the pod still
    bare). Straight through invoke() where the runtime itself would refuse the call."""
    node = node_factory(V4_POOL, V6_POOL, TINY_POOL)
    nl = node.network()
    conf = plugin_conf(nl)
    ns, cid = node.pod(), container_id()
    cni_args = ";".join(f"{k}={v}" for k, v in kubelet_args("default", "bad", cid).items())

    def run(stdin, verb="ADD", **env):
        e = {**plugin_env(verb, cid, ns.path, args=cni_args), **env}
        return invoke(PLUGIN, {k: v for k, v in e.items() if v is not None}, stdin)

    def refused(code, words, stdin, verb="ADD", **env):
        err = plugin_error(run(stdin, verb, **env))
        assert err["code"] == code, err
        text = f"{err['msg']}: {err.get('details', '')}"
        for w in words:
            assert w in text, (w, err)
        node.assert_clean([ns])
        return err

    refused(6, ["JSON"], "{not json")
    refused(6, ["ipam"], json.dumps(dict(conf, ipam="calico-ipam")))
    r = run(json.dumps(conf), CNI_COMMAND=None)
    assert (r.returncode, r.stdout) == (0, ""), r
    assert "CNI protocol versions supported: " + ", ".join(VERSIONS) in r.stderr
    node.assert_clean([ns])
    for var in ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"):
        refused(4, [var], json.dumps(conf), **{var: None})
    for var in ("CNI_CONTAINERID", "CNI_IFNAME"):
        refused(4, [var], json.dumps(conf), verb="DEL", **{var: None})
    refused(4, ["CNI_COMMAND", "FOO"], json.dumps(conf), CNI_COMMAND="FOO")
    refused(4, ["CNI_IFNAME"], json.dumps(conf), CNI_IFNAME="a" * 16)
    err = refused(1, ["9.9.9"], json.dumps(dict(conf, cniVersion="9.9.9")))
    assert err["cniVersion"] == "9.9.9"  # the error carries the config's own version
    refused(1, ["cniVersion"], json.dumps({k: v for k, v in conf.items() if k != "cniVersion"}))
    refused(1, ["STATUS", "1.0.0"], json.dumps(dict(conf, cniVersion="1.0.0")), verb="STATUS")
    nowhere = f"/var/run/netns/fwdt{RUN_ID}-nowhere"
    refused(4, ["CNI_NETNS", nowhere], json.dumps(conf), CNI_NETNS=nowhere)
    refused(2, ["ipam.type", "host-local"],
            json.dumps(dict(conf, ipam=dict(conf["ipam"], type="host-local"))))
    refused(7, ["no-such-pool"],
            json.dumps(dict(conf, ipam=dict(conf["ipam"], ipv4_pools=["no-such-pool"]))))
    refused(7, ["assign_ipv4"], json.dumps(dict(conf, ipam=dict(conf["ipam"], assign_ipv4="yes"))))
    # CHECK without the previous result (libcni's CHECK when its cache lost it)
    refused(7, ["prevResult"], json.dumps(conf), verb="CHECK")

    # the pod already has an eth0 (not ours): the port cannot be made after the addresses
    # were assigned; they go back, and the interface that was there stays untouched
    ns.run("ip link add eth0 type veth peer name eth0peer")
    mac = links(ns)["eth0"]["address"]
    err = plugin_error(run(json.dumps(conf)))
    assert err["code"] == 7 and "eth0 already exists in the pod" in err["details"], err
    assert node.endpoints() == [] and node.handle_addrs(cid) == []
    assert set(node.used().values()) == {0}
    node.assert_ipam_consistent()
    assert set(links(ns)) == {"lo", "eth0", "eth0peer"}
    assert links(ns)["eth0"]["address"] == mac and global_addrs(ns) == set()
    ns.run("ip link del eth0")  # and its peer
    node.assert_clean([ns])

    # the same through the runtime: the ADD fails, the runtime's DEL after it succeeds
    with pytest.raises(CniError) as e:
        node.network(ipam_ipv6_pools=["no-such-pool"]).add(cid, ns.path)
    assert e.value.code == 7 and "no-such-pool" in f"{e.value.msg} {e.value.details}"
    nl.delete(cid, ns.path)
    node.assert_clean([ns])


def test_pool_exhausted(node_factory):
    """A /30 pool with blockSize 30 holds four addresses: four pods fill it, the fifth is
    refused with 100 and gets nothing, a dual-stack pod too (its IPv6 address is not kept:
    all or nothing), STATUS says not available; after DEL of one the next fits again."""
    node = node_factory(V4_POOL, V6_POOL, TINY_POOL)
    tiny = node.network(assign_ipv6="false", ipam_ipv4_pools=["tiny-v4"])
    tiny_dual = node.network(ipam_ipv4_pools=["tiny-v4"])
    tiny.status()
    pods = []
    for i in range(4):
        ns, cid = node.pod(), container_id()
        res = tiny.add(cid, ns.path, cni_args=kubelet_args("default", f"tiny-{i}", cid))
        [addr] = addrs_of(res)
        assert ipaddress.ip_address(bare(addr)) in ipaddress.ip_network("10.99.0.0/30")
        pods.append((ns, cid, res))
    assert node.used()["tiny-v4"] == 4
    with pytest.raises(CniError) as e:
        tiny.status()
    assert e.value.code == 50 and "IPv4 pool" in e.value.details

    ns, cid = node.pod(), container_id()
    for nl in (tiny, tiny_dual):
        with pytest.raises(CniError) as e:
            nl.add(cid, ns.path, cni_args=kubelet_args("default", "tiny-x", cid))
        assert e.value.code == 100 and e.value.plugin == "dpdk-fwd-cni"
        assert "no free address" in e.value.msg, e.value
        assert node.endpoint(cid) is None and node.handle_addrs(cid) == []
        assert set(links(ns)) == {"lo"}
        assert node.used() == {"default-ipv4-ippool": 0, "default-ipv6-ippool": 0,
                               "tiny-v4": 4}
        nl.delete(cid, ns.path)
    node.assert_ipam_consistent()

    first = pods.pop(0)
    tiny.delete(first[1], first[0].path)
    res = tiny_dual.add(cid, ns.path, cni_args=kubelet_args("default", "tiny-x", cid))
    assert bare(addrs_of(res)[0]) == bare(addrs_of(first[2])[0])  # the freed address
    tiny_dual.delete(cid, ns.path)
    for p in pods:
        tiny.delete(p[1], p[0].path)
    node.assert_clean([p[0] for p in pods] + [first[0], ns])


def test_daemon_down(node_factory):
    """The daemon stopped: ADD and DEL are "try again later" (11) and change nothing. Once it
    is back, the runtime's retried DEL releases what the pod held."""
    node = node_factory(V4_POOL, V6_POOL)
    nl = node.network()
    ns, cid = node.pod(), container_id()
    args = kubelet_args("default", "down-0", cid)
    res = nl.add(cid, ns.path, cni_args=args)
    node.d.stop()

    ns2, cid2 = node.pod(), container_id()
    with pytest.raises(CniError) as e:
        nl.add(cid2, ns2.path, cni_args=kubelet_args("default", "down-1", cid2))
    assert e.value.code == 11 and "daemon is not reachable" in e.value.msg, e.value
    assert node.d.sock in e.value.details
    with pytest.raises(CniError) as e:
        nl.delete(cid, ns.path, cni_args=args)
    assert e.value.code == 11 and "daemon is not reachable" in e.value.msg, e.value
    assert nl.cached_entry(cid, "eth0") is not None  # not deleted: the runtime retries
    assert len(node.handle_addrs(cid)) == 2
    assert node.handle_addrs(cid2) == [] and set(links(ns2)) == {"lo"}

    node.d.start()
    nl.delete(cid, ns.path, cni_args=args)
    nl.delete(cid2, ns2.path)
    node.assert_detached(ns, cid, res)
    node.assert_clean([ns, ns2])


# --- 8. VERSION, and every version it lists -------------------------------------------------

def test_version(node_factory):
    for stdin, want in (("", "1.1.0"), ('{"cniVersion": "1.1.0"}', "1.1.0"),
                        ('{"cniVersion": "0.4.0"}', "0.4.0"), ('{"cniVersion": "9.9.9"}', "1.1.0")):
        r = invoke(PLUGIN, {"CNI_COMMAND": "VERSION"}, stdin)
        assert r.returncode == 0, r
        assert json.loads(r.stdout) == {"cniVersion": want, "supportedVersions": VERSIONS}

    # each listed version really works: ADD, CHECK (from 0.4.0 on), DEL, results in its shape
    node = node_factory(V4_POOL, V6_POOL)
    for version in VERSIONS:
        nl = node.network(version=version)
        assert nl.version("dpdk-fwd-cni")["supportedVersions"] == VERSIONS
        ns, cid = node.pod(), container_id()
        args = kubelet_args("v", f"pod-{version}", cid)
        res = nl.add(cid, ns.path, cni_args=args)
        node.check_attached(res, ns, cid, v4=True, v6=True, mtu=NODE_MTU - 70, version=version,
                            k8s=("v", f"pod-{version}"))
        if version != "0.3.0" and version != "0.3.1":
            nl.check(cid, ns.path, cni_args=args)
        nl.delete(cid, ns.path, cni_args=args)
        node.assert_clean([ns])
