#!/usr/bin/env python3
"""The lab: a dpdk-fwd cluster on one machine, Calico-style.

  lab.py              take down a lab that is still up, bring a new one up, run the
                      checks, print the result table; the lab stays up (exit 1 if a
                      check failed)
  lab.py --bgp        the BGP profile instead of the default one (below)
  lab.py --bgp --rr   its route-reflector variant: node1 and node2 reflect, mesh off
  lab.py --ipv4-only / --ipv6-only
                      the nodes and pods have addresses of that family only; the rows
                      of the other family are left out (default profile only)
  lab.py --down       take the lab down, whichever profile is up (a no-op when nothing is)
  lab.py --status     what is up, and how to poke at it

The default profile is the cluster the project is modelled on (Calico in VXLAN mode):

  lab-tor      a Linux router: loopbacks 1.1.1.1/32 and 2001:db8::1/128; bridge br0 with
               10.10.10.1/24 and fd00:10:10::1/64 (node subnet 1), bridge br1 with
               10.10.20.1/24 and fd00:10:20::1/64 (node subnet 2), routing between them;
               etcd on 10.10.10.1:2379 (the cluster store). No BGP: it knows the node
               subnets and its loopbacks, no pod network. nftables counters on the ports
               of its bridges (table bridge lab) count VXLAN and bare pod frames.
  lab-node1..3 dpdk-fwd on subnet 1 (10.10.10.10-12, fd00:10:10::10-12), lab-node4 on
               subnet 2 (10.10.20.10, fd00:10:20::10): an uplink net_tap moved onto the
               ToR's bridge, a host tap fwdhost with the node addresses (the etcd client),
               a static default route via the ToR (dataplane and host stack), an `ipam`
               section on the ToR's etcd: each node registers itself (addresses, VTEP
               MACs, tunnel addresses) and routes to the others' blocks from the block
               affinities (overlay module).
  pools        configs/lab/ippools.yaml: 192.168.0.0/16 /26 CrossSubnet (native among
               nodes 1-3, VXLAN to and from node4), fd00:10:244::/48 /122 VXLAN always,
               both natOutgoing: pods reach the loopbacks with the node's address as their
               source (the nodes' natOutgoing; the ToR has no route back to the pools).

The BGP profile (--bgp): nodes 1-3 on subnet 1 only, BIRD on every node and on the ToR,
pools without encapsulation (configs/lab/ippools-bgp.yaml), `bgp` in the daemons' configs
(routes BIRD puts in the kernel become dataplane routes) and, as in the default profile, a
static default route via the ToR. BGP is configured only through Calico's resources in etcd
(configs/lab/bgp.yaml: AS 64512, node-to-node mesh, the ToR as an external peer in AS 64513
that announces its loopbacks and learns the pod blocks): each daemon writes its node's whole
BIRD file from them (its `bird` config section) and reloads BIRD. --rr: node1 and node2 are
made route reflectors (cluster ID 244.0.0.1) and ../shared/examples/bgp-route-reflectors.yaml
is applied (mesh off, every node peering with the reflectors).

In both, the pods (lab-pod-1a..) are network namespaces attached by the CNI plugin
(build/cni-shim/dpdk-fwd-cni, run like kubelet runs it, through tests/system/cnitool.py)
with the network list configs/cni/10-dpdk-fwd.conflist (a per-node copy that names the
node's API socket).

State (the profile, PIDs with their start times, namespaces, pods, paths), configs and logs
live in /run/dpdk-fwd-lab; `--down` works from it alone."""
import argparse
import ipaddress
import itertools
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "system"))
from birdconf import NodeBgp, Peer  # noqa: E402
from fwdlab import (BIRDC, BUILD, DAEMON, FWDCTL, Bird, Bridge, Daemon, Etcd,  # noqa: E402
                    Netns, sh, uplink_daemon_config, wait_until)

STATE_DIR = pathlib.Path("/run/dpdk-fwd-lab")
STATE = STATE_DIR / "state.json"
CNI_PLUGIN_DIR = BUILD / "cni-shim"
CNI_PLUGIN = CNI_PLUGIN_DIR / "dpdk-fwd-cni"
CONFLIST = ROOT / "configs" / "cni" / "10-dpdk-fwd.conflist"
POOLS_YAML = {"vxlan": ROOT / "configs" / "lab" / "ippools.yaml",
              "bgp": ROOT / "configs" / "lab" / "ippools-bgp.yaml"}
BGP_YAML = ROOT / "configs" / "lab" / "bgp.yaml"
RR_YAML = ROOT.parent / "shared" / "examples" / "bgp-route-reflectors.yaml"
TOR_AS, NODE_AS = 64513, 64512
RR_NODES, RR_CLUSTER = ("node1", "node2"), "244.0.0.1"
# The generated BIRD files' session timers: a session a reload restarts comes back quickly.
# BIRD runs supervised (tests/system/bird_supervise.py): a change that would restart a session
# is loaded by a graceful restart, so the peers keep the node's routes meanwhile.
BIRD_TIMERS = {"connect_delay_s": 1, "connect_retry_s": 1, "error_wait_min_s": 1,
               "error_wait_max_s": 5, "graceful_restart": True}
XFER = ROOT / "tests" / "system" / "tcp_xfer.py"
NAT_PEER = ROOT / "tests" / "system" / "nat_peer.py"
SVC_PEER = ROOT / "tests" / "system" / "svc_peer.py"

TOR = "lab-tor"
TOR4, TOR6 = "10.10.10.1", "fd00:10:10::1"  # etcd listens here (subnet 1)
LOOP4, LOOP6 = "1.1.1.1", "2001:db8::1"
POOL4, POOL6 = ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("fd00:10:244::/48")
HOST_TAP = "fwdhost"
CALICO_GW6 = "fe80::ecee:eeff:feee:eeee"  # the pods' IPv6 gateway (IPv4: 169.254.1.1)
# The IPAM keys live under /calico, like Calico's own etcd data.
ETCD_PREFIX = "/calico"
K8S_NAMESPACE = "default"
NETWORK = "k8s-pod-network"

# Each daemon: 128 MiB of hugepages, tables sized for a lab (thousands of routes, not
# the default 131072 per family), so four nodes (512 MiB) leave room for others on the
# machine.
MEMORY_MB = 128
TABLES = {"ipv4_routes": 16384, "ipv6_routes": 16384, "ipv4_tbl8s": 2048, "ipv6_tbl8s": 8192}
# Idle back-off of the workers: three polling daemons share the machine's cores. 1 ms
# is the longest a first packet after a quiet period waits in each dataplane. Measured
# here (lab idle, 30 s): the whole lab uses 5.8 % of one core with 1 ms and the store
# polled every second; 7.6 % polled every 500 ms, 10.4 % with the default 500 us sleep
# on top; 4.1 % with 5 ms sleeps (what is left is the control threads' 10 ms tick).
# The default profile's four daemons (and etcd): 5.4 % over 10 s, about 1.1 % per daemon.
IDLE = {"enabled": True, "spin_polls": 100, "pause_polls": 1000, "max_sleep_us": 1000}
IPAM_SYNC_MS = 1000

# Services (applied into etcd with fwdctl apply once the pods are up): "echo", dual-stack
# NodePort with two backends (the first pod of the first and of the last node, each running
# tests/system/svc_peer.py on SVC_TARGET); "echo-sticky", the same backends with
# sessionAffinity ClientIP; "empty", a ClusterIP service with no endpoint (rejected).
SVC_NS = "default"
SVC_IPS = {"echo": ("10.96.0.10", "fd00:10:96::10"), "echo-sticky": ("10.96.0.11", "fd00:10:96::11"),
           "empty": ("10.96.0.12", "fd00:10:96::12")}
SVC_PORT, SVC_TARGET, SVC_NODEPORT = 80, 8080, 30080


class Subnet:
    """A node subnet: a bridge of the ToR with the ToR's addresses (.1, ::1) on it."""

    def __init__(self, bridge, net4, net6, mac):
        self.bridge = bridge
        self.net4, self.net6 = ipaddress.ip_network(net4), ipaddress.ip_network(net6)
        self.gw4, self.gw6 = str(self.net4[1]), str(self.net6[1])
        # a fixed MAC: a bridge otherwise takes its lowest port's, and changes it as the
        # nodes' uplinks join, under the neighbor entries the dataplanes already hold
        self.mac = mac


SUBNETS = (Subnet("br0", "10.10.10.0/24", "fd00:10:10::/64", "02:00:0a:0a:0a:01"),
           Subnet("br1", "10.10.20.0/24", "fd00:10:20::/64", "02:00:0a:0a:14:01"))


class Node:
    def __init__(self, i, cores, subnet, k, families):
        """The i-th node (node1..), the k-th (from 0) on its subnet."""
        self.i = i
        self.name = f"node{i}"
        self.ns = f"lab-node{i}"
        self.subnet = subnet
        host4 = subnet.net4.network_address + 10 + k
        self.ipv4 = str(host4) if 4 in families else None
        # ::10 .. ::12, as written (the IPv4 host numbers read as hex digits)
        self.ipv6 = f"{subnet.net6.network_address}{10 + k}" if 6 in families else None
        self.mac = "02:00:" + ":".join(f"{b:02x}" for b in host4.packed)
        self.uplink = f"{self.name}-up"
        # the worker polls on its own core; main and control (mostly asleep) on the next
        self.worker_core = cores[(i - 1) % len(cores)]
        self.control_core = cores[i % len(cores)]


def nodes(profile, families):
    """bgp: node1-3 on subnet 1. vxlan: node1-3 on subnet 1, node4 on subnet 2."""
    cores = sorted(os.sched_getaffinity(0))
    placed = [SUBNETS[0]] * 3 + ([SUBNETS[1]] if profile == "vxlan" else [])
    out = []
    for i, sub in enumerate(placed, 1):
        out.append(Node(i, cores, sub, sum(1 for n in out if n.subnet is sub), families))
    return out


# ---------------------------------------------------------------- state and processes

class State:
    """Everything the lab created, saved after every step (atomically), so `--down` from
    a fresh shell finds it even after a bring-up that failed half way."""

    def __init__(self, data=None):
        self.data = data or {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "build": str(BUILD),
                             "namespaces": [], "processes": [], "pods": [], "nodes": {},
                             "eal_prefixes": [], "etcd": None}

    @classmethod
    def load(cls):
        return cls(json.loads(STATE.read_text()))

    def save(self):
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, STATE)

    def __getitem__(self, k):
        return self.data[k]

    def add(self, key, value):
        self.data[key].append(value)
        self.save()


CHILDREN = {}  # pid -> Popen, for the processes this run started (reaped when stopped)


def start_time(pid):
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat),
    None when there is no such process. With the PID it names one process for good."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])


def proc_state(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def alive(p):
    """p: a state process entry. True while that very process runs (not a zombie)."""
    return start_time(p["pid"]) == p["start"] and proc_state(p["pid"]) not in (None, "Z", "X")


def record_process(state, kind, name, proc, **extra):
    CHILDREN[proc.pid] = proc
    state.add("processes", {"kind": kind, "name": name, "pid": proc.pid,
                            "start": start_time(proc.pid), **extra})


def stop_pid(p, timeout=20):
    """SIGTERM, then SIGKILL after timeout, by PID, only if the PID still names the process
    the lab started. Returns a note when it had to kill."""
    if not alive(p):
        return None
    os.kill(p["pid"], signal.SIGTERM)
    note = None
    t0 = time.monotonic()
    deadline = t0 + timeout
    while alive(p):
        if time.monotonic() > deadline:
            os.kill(p["pid"], signal.SIGKILL)
            note = f"{p['name']} (pid {p['pid']}) did not stop in {timeout}s: killed"
            deadline = time.monotonic() + 10
        time.sleep(0.02)
    if note is None and time.monotonic() - t0 > 2:
        note = f"{p['name']} took {time.monotonic() - t0:.1f} s to stop"
    child = CHILDREN.pop(p["pid"], None)
    if child is not None:
        child.wait()
    return note


def cpu_ticks(p):
    try:
        f = pathlib.Path(f"/proc/{p['pid']}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(f[11]) + int(f[12])


class NsRef(Netns):
    """A namespace that exists already (Netns creates one)."""

    def __init__(self, name):  # pylint: disable=super-init-not-called
        self.name = name
        self.path = f"/var/run/netns/{name}"


def bird_ref(name, n):
    """A fwdlab.Bird for a running BIRD of the lab (for birdc, protocols, wait_established)."""
    b = Bird.__new__(Bird)
    b.name, b.sock, b.log = name, n["bird_sock"], pathlib.Path(n["bird_log"])
    b.proc = CHILDREN.get(next((p["pid"] for p in State.load()["processes"]
                                if p["name"] == f"{name} bird"), None))
    return b


def api_call(sock, op, args=None, timeout=60):
    """One request on a daemon's API socket; returns the result or raises RuntimeError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock)
        s.sendall((json.dumps({"id": 1, "op": op, "args": args or {}}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise RuntimeError(f"{op}: {reply.get('error')}")
    return reply["result"]


T0 = time.monotonic()


def log(msg, end="\n"):
    print(f"lab [{time.monotonic() - T0:5.1f}s] {msg}", end=end, flush=True)


# ---------------------------------------------------------------- CNI

def cni():
    import cnitool  # tests/system/cnitool.py
    return cnitool


def node_conflist(node, sock, families):
    """The network list as the node's kubelet would find it in /etc/cni/net.d, with this
    node's daemon socket (and, in a single-family lab, addresses of that family only)."""
    conf = json.loads(CONFLIST.read_text())
    for p in conf["plugins"]:
        if p.get("type") == "dpdk-fwd-cni":
            p["dpdk_fwd_socket"] = sock
            for fam in (4, 6):
                if fam not in families:
                    p["ipam"][f"assign_ipv{fam}"] = "false"
                    p["ipam"].pop(f"ipv{fam}_pools", None)
    return conf


def network_list(pod_state):
    t = cni()
    conf = json.loads(pathlib.Path(pod_state["conflist"]).read_text())
    return t.NetworkList(conf, [pod_state["plugin_dir"]], str(STATE_DIR / "cni-cache"),
                         host_netns=pod_state["host_netns"])


def pod_add(pod_state):
    t = cni()
    return network_list(pod_state).add(
        pod_state["cid"], pod_state["netns_path"], ifname="eth0",
        cni_args=t.kubelet_args(K8S_NAMESPACE, pod_state["name"], pod_state["cid"]))


def pod_del(pod_state):
    t = cni()
    network_list(pod_state).delete(
        pod_state["cid"], pod_state["netns_path"], ifname="eth0",
        cni_args=t.kubelet_args(K8S_NAMESPACE, pod_state["name"], pod_state["cid"]))


# ---------------------------------------------------------------- down

def down():
    """Takes down whatever state.json lists, in reverse order of creation; always ends with
    no state dir. Returns 0 (notes are printed, not fatal)."""
    if not STATE_DIR.exists():
        log("nothing is up")
        return 0
    t0 = time.monotonic()
    try:
        st = State.load()
    except (OSError, ValueError) as e:
        log(f"state file unreadable ({e}); removing {STATE_DIR} only")
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        return 0
    procs = {p["name"]: p for p in st["processes"]}
    # pods: CNI DEL, as kubelet does when a pod goes (the daemon releases the addresses)
    for pod in reversed(st["pods"]):
        if pod.get("attached"):
            daemon = procs.get(f"{pod['node']} dpdk-fwd")
            if daemon is None or not alive(daemon):
                log(f"{pod['name']}: no daemon on {pod['node']}, DEL skipped")
            else:
                try:
                    pod_del(pod)
                except Exception as e:  # noqa: BLE001 - reported, the teardown goes on
                    log(f"{pod['name']}: CNI DEL failed: {e}")
        sh(f"ip netns del {pod['netns']}", check=False)
    etcd = procs.get("etcd")
    if st["pods"] and st["etcd"] and etcd and alive(etcd):
        try:
            used = sum(p["used"] for p in ipam_show(st)["pools"])
            pods_held = sum(len(ipam_show(st, "--handle", f"{NETWORK}.{p['cid']}")["addresses"])
                            for p in st["pods"])
            log(f"pods deleted through the CNI plugin (DEL): {len(st['pods'])}; their addresses "
                f"still held in IPAM: {pods_held}; all addresses held: {used}"
                + (" (the nodes' VXLAN tunnel addresses)" if used and not pods_held
                   and st.data.get("profile") == "vxlan" else ""))
        except (AssertionError, ValueError, KeyError) as e:
            log(f"IPAM after DEL: {e}")
    # BIRDs, then daemons, then etcd: reverse start order
    for p in reversed(st["processes"]):
        note = stop_pid(p)
        if note:
            log(note)
    for ns in reversed(st["namespaces"]):
        sh(f"ip netns del {ns}", check=False)
    for prefix in st["eal_prefixes"]:
        for f in pathlib.Path("/dev/hugepages").glob(f"{prefix}map_*"):
            f.unlink()
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    log(f"down in {time.monotonic() - t0:.1f} s")
    return 0


# ---------------------------------------------------------------- up

def preflight(lab):
    missing = [str(p) for p in (DAEMON, FWDCTL, Etcd.BINARY, POOLS_YAML[lab.profile])
               if not os.path.exists(p)]
    if lab.profile == "bgp" and not os.path.exists(BIRDC):
        missing.append(BIRDC)
    if not shutil.which("nft"):
        missing.append("nft (nftables: the ToR's counters)")
    if not os.path.exists(CNI_PLUGIN):
        missing.append(f"{CNI_PLUGIN} (the CNI plugin)")
    if not os.path.exists(CONFLIST):
        missing.append(f"{CONFLIST} (the CNI network list)")
    try:
        cni()
    except ImportError as e:
        missing.append(f"tests/system/cnitool.py ({e})")
    if missing:
        raise SystemExit("lab: missing: " + ", ".join(missing) + " (scripts/setup.sh builds)")
    free = int(re.search(r"HugePages_Free:\s+(\d+)", pathlib.Path("/proc/meminfo").read_text())[1])
    need = len(lab.nodes) * MEMORY_MB // 2
    if free < need:
        raise SystemExit(f"lab: {free} free 2 MiB hugepages, {need} needed "
                         f"({len(lab.nodes)} x {MEMORY_MB} MiB)")


# The ToR's counters: every frame that enters a port of its bridges (bridge prerouting, so
# a frame is counted once, at the port it came in on, whether the ToR switches or routes
# it). VXLAN by its outer header; bare pod traffic by a source inside a pool.
TOR_NFT = f"""table bridge lab {{
    counter vxlan4 {{}}
    counter vxlan6 {{}}
    counter pod4 {{}}
    counter pod6 {{}}
    chain ports {{
        type filter hook prerouting priority 0; policy accept;
        ip protocol udp udp dport 4789 counter name vxlan4
        ip6 nexthdr udp udp dport 4789 counter name vxlan6
        ip saddr {POOL4} counter name pod4
        ip6 saddr {POOL6} counter name pod6
    }}
}}
"""


def up_tor(st, lab):
    st.add("namespaces", TOR)
    tor = Netns(TOR)
    # the ToR: no IPv6 on its bridge ports (the uplink taps), forwarding on
    tor.run("sysctl -qw net.ipv6.conf.default.disable_ipv6=1")
    tor.run("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
    bridges = {}
    for sub in lab.subnets:
        br = bridges[sub.bridge] = Bridge(tor, sub.bridge)
        tor.run(f"ip link set {br.name} address {sub.mac}")
        tor.run(f"sysctl -qw net.ipv6.conf.{br.name}.accept_dad=0 "
                f"net.ipv6.conf.{br.name}.disable_ipv6=0")
        tor.run(f"ip addr add {sub.gw4}/{sub.net4.prefixlen} dev {br.name}")
        tor.run(f"ip addr add {sub.gw6}/{sub.net6.prefixlen} dev {br.name} nodad")
    tor.run(f"ip addr add {LOOP4}/32 dev lo")
    tor.run(f"ip addr add {LOOP6}/128 dev lo")
    (STATE_DIR / "tor.nft").write_text(TOR_NFT)
    tor.run(f"nft -f {STATE_DIR / 'tor.nft'}")
    return tor, bridges


def tor_counters():
    """{vxlan4, vxlan6, pod4, pod6: packets} from the ToR's nftables counters."""
    r = sh(f"ip netns exec {TOR} nft -j list counters table bridge lab")
    return {c["counter"]["name"]: c["counter"]["packets"]
            for c in json.loads(r.stdout)["nftables"] if "counter" in c}


def pools_yaml(lab):
    """The profile's pool file; with one family, a copy with that family's pools only."""
    src = POOLS_YAML[lab.profile]
    if lab.families == {4, 6}:
        return src
    docs = [d for d in src.read_text().split("\n---\n")
            if (":" in re.search(r"cidr:\s*(\S+)", d)[1]) == (6 in lab.families)]
    out = STATE_DIR / src.name
    out.write_text("\n---\n".join(docs))
    return out


def up_etcd(st, tor, lab):
    # on the node network: IPv4 when the nodes have it, else IPv6
    host = TOR4 if 4 in lab.families else f"[{TOR6}]"
    etcd = Etcd(STATE_DIR, "etcd", ns=tor, host=host)
    try:
        etcd.start()
    finally:
        if etcd.proc is not None:
            record_process(st, "etcd", "etcd", etcd.proc)
    st.data["etcd"] = {"url": etcd.url, "spec": etcd.spec(ETCD_PREFIX), "dir": str(etcd.dir)}
    st.save()
    pools = pools_yaml(lab)
    for f in [pools] + ([BGP_YAML] if lab.profile == "bgp" else []):
        store_ctl(st, "apply", "-f", f)
    return etcd


def store_ctl(st, *args):
    """fwdctl <args> --store <the lab's etcd>, from the ToR (where etcd listens); logs what
    it printed."""
    r = sh(f"ip netns exec {TOR} {FWDCTL} {' '.join(map(str, args))} "
           f"--store '{st['etcd']['spec']}'", check=False)
    if r.returncode != 0:
        raise RuntimeError(f"fwdctl {' '.join(map(str, args))}: {r.stdout}{r.stderr}")
    for line in r.stdout.splitlines():
        log(f"  {line}")
    return r.stdout


def node_sections(lab, node, etcd, include, bird_sock):
    """The profile's part of a node's daemon config."""
    ipam = {"store": etcd.spec(ETCD_PREFIX), "sync_ms": IPAM_SYNC_MS}
    # a node's default route points at the ToR on its subnet, as on any Calico node (in the
    # BGP profile too: the ToR's own address and the other nodes' answer a NodePort through it)
    gws = ([("0.0.0.0/0", node.subnet.gw4)] if node.ipv4 else []) + \
          ([("::/0", node.subnet.gw6)] if node.ipv6 else [])
    routes = [{"prefix": p, "via": gw} for p, gw in gws]
    if lab.profile == "bgp":
        # the daemon writes the node's whole BIRD file from the BGP resources (bird section)
        return {"bgp": {"table": 254, "protocols": [12]}, "routes": routes,
                "ipam": {**ipam, "bird_include": str(include), "bird_socket": str(bird_sock)},
                "bird": {"config": str(STATE_DIR / f"{node.name}.bird.conf"),
                         "socket": str(bird_sock), **BIRD_TIMERS}}
    return {"ipam": ipam, "routes": routes}


def up_node(st, lab, node, bridges, etcd):
    st.add("namespaces", node.ns)
    ns = Netns(node.ns)
    include = STATE_DIR / f"{node.name}.ipam.conf"
    bird_sock = STATE_DIR / f"{node.name}.bird.ctl"  # fwdlab.Bird's socket path
    prefix = f"lab-{node.name}"
    v4 = f"{node.ipv4}/{node.subnet.net4.prefixlen}" if node.ipv4 else None
    v6 = f"{node.ipv6}/{node.subnet.net6.prefixlen}" if node.ipv6 else None
    extra = uplink_daemon_config(node.name, node.worker_core, node.mac, v4, v6, extra={
        "eal": {"file_prefix": prefix, "in_memory": True, "memory_mb": MEMORY_MB},
        "host": {"tap": HOST_TAP},
        **node_sections(lab, node, etcd, include, bird_sock),
        "idle": IDLE,
        "tables": TABLES,
    })
    extra["node"] = {k: v for k, v in extra["node"].items() if v is not None}
    extra["uplink"]["devargs"] = f"net_tap_{node.name},iface={node.uplink}"
    extra["cores"]["main"] = extra["cores"]["control"] = node.control_core
    st.add("eal_prefixes", prefix)
    d = Daemon(STATE_DIR, node.name, netns=ns, extra=extra)
    # fwdlab names the pods' shared tap per test run (daemons of parallel runs sharing one
    # namespace); each lab node has a namespace of its own, so the default name serves
    cfg = json.loads(d.config.read_text())
    cfg.pop("pod_tap", None)
    d.config.write_text(json.dumps(cfg, indent=2))
    try:
        d.start()
    finally:
        if d.proc is not None:
            record_process(st, "dpdk-fwd", f"{node.name} dpdk-fwd", d.proc, sock=d.sock)
    bridges[node.subnet.bridge].adopt(node.uplink, ns)
    if lab.profile == "vxlan":
        # the node's own stack (the etcd client) leaves by the ToR too: node4 reaches etcd
        # on the other subnet only so
        for fam, gw in ((4, node.subnet.gw4 if node.ipv4 else None),
                        (6, node.subnet.gw6 if node.ipv6 else None)):
            if gw:
                ns.run(f"ip -{fam} route replace default via {gw} dev {HOST_TAP}")
    conflist = STATE_DIR / "cni" / node.name / CONFLIST.name
    conflist.parent.mkdir(parents=True, exist_ok=True)
    conflist.write_text(json.dumps(node_conflist(node, d.sock, lab.families), indent=2))
    st.data["nodes"][node.name] = {
        "netns": node.ns, "ipv4": node.ipv4, "ipv6": node.ipv6, "sock": d.sock,
        "subnet": node.subnet.bridge, "config": str(d.config), "log": str(d.log),
        "include": str(include), "conflist": str(conflist), "uplink": node.uplink,
        "worker_core": node.worker_core}
    st.save()
    return ns


def bgp_sessions(n):
    """The node's BGP sessions as its daemon generated them from the resources."""
    return api_call(n["sock"], "bgp.status")["sessions"]


def wait_bird_files(st, want):
    """Waits until every node's daemon wrote its BIRD file with `want` sessions (the node
    registered, the resources read)."""
    wait_until(lambda: all(pathlib.Path(STATE_DIR / f"{name}.bird.conf").exists() and
                           len(bgp_sessions(n)) == want for name, n in st["nodes"].items()),
               30, interval=0.1, what=f"every node's BIRD file with {want} sessions")


def up_node_bird(st, node, ns):
    """BIRD on a node whose dataplane is up and plugged in, started on the file its daemon
    wrote from the BGP resources (the include file is there too) and reloaded by the daemon
    when they change; every peer is reachable from its first connect."""
    n = st["nodes"][node.name]
    conf = STATE_DIR / f"{node.name}.bird.conf"  # the daemon's; fwdlab.Bird writes it back as is
    bird = Bird(STATE_DIR, node.name, ns, conf.read_text(), supervised=True)
    try:
        bird.start()
    finally:
        if bird.proc is not None:
            record_process(st, "bird", f"{node.name} bird", bird.proc, sock=bird.sock)
    n.update({"bird_sock": bird.sock, "bird_log": str(bird.log),
              "protocols": sorted(s["protocol"] for s in bgp_sessions(n))})
    st.save()


def up_tor_bird(st, tor, all_nodes):
    # the ToR is no cluster node: its BIRD file is the lab's (an external router, own AS)
    bgp = NodeBgp(f"{TOR4}/24", f"{TOR6}/64", [f"{LOOP4}/32"], [f"{LOOP6}/128"],
                  [Peer(n.name, n.ipv4, n.ipv6) for n in all_nodes], asn=TOR_AS,
                  peer_asn=NODE_AS, debug="states")
    bird = Bird(STATE_DIR, "tor", tor, bgp.render())
    try:
        bird.start()
    finally:
        if bird.proc is not None:
            record_process(st, "bird", "tor bird", bird.proc, sock=bird.sock)
    st.data["tor"] = {"netns": TOR, "bird_sock": bird.sock, "bird_log": str(bird.log),
                      "protocols": bgp.protocols()}
    st.save()
    return bird


def established(st):
    """The BGP sessions (node/protocol) of the lab that are not Established."""
    pending = []
    for name, n in list(st["nodes"].items()) + [("tor", st["tor"])]:
        got = bird_ref(name, n).protocols()
        pending += [f"{name}/{p}" for p in n["protocols"]
                    if not got.get(p, ("", ""))[1].startswith("Established")]
    return pending


def wait_bgp(st, timeout):
    """Waits for every session of the mesh; fails at once when a lab process died."""
    t0 = time.monotonic()
    next_note = 10
    while True:
        dead = [p["name"] for p in st["processes"] if not alive(p)]
        if dead:
            raise RuntimeError(f"not running: {', '.join(dead)}")
        pending = established(st)
        waited = time.monotonic() - t0
        if not pending:
            return waited
        if waited > timeout:
            raise RuntimeError(f"BGP sessions not Established after {timeout} s: {pending}")
        if int(waited) >= next_note:
            log(f"  {waited:.0f} s, still not Established: {' '.join(pending)}")
            next_note += 10
        time.sleep(0.1)


def add_pods(st, all_nodes, per_node):
    for node in all_nodes:
        n = st["nodes"][node.name]
        for k in range(per_node):
            name = f"pod-{node.i}{chr(ord('a') + k)}"
            pod = {"name": name, "node": node.name, "netns": f"lab-{name}",
                   "netns_path": f"/var/run/netns/lab-{name}", "cid": uuid.uuid4().hex * 2,
                   "conflist": n["conflist"], "host_netns": node.ns,
                   "plugin_dir": str(CNI_PLUGIN_DIR),
                   "attached": False}
            st.add("pods", pod)
            Netns(pod["netns"])  # the container runtime's part: the sandbox's namespace
            pod["attached"] = True  # from here on DEL is due, whatever ADD returns
            st.save()
            result = pod_add(pod)
            pod["result"] = result
            pod["ips"] = [ip["address"] for ip in result.get("ips", [])]
            st.save()
            log(f"  {name} on {node.name}: {' '.join(pod['ips'])}")


def services_yaml(st, backends):
    """The lab's Services and EndpointSlices. backends: [(pod name, node, {family: addr})]."""
    fams_ = st["families"]
    families = [f"IPv{f}" for f in fams_]
    policy = "RequireDualStack" if len(fams_) == 2 else "SingleStack"
    docs = []
    for name, extra in (("echo", "  type: NodePort\n  externalTrafficPolicy: Cluster\n"),
                        ("echo-sticky", "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n"
                                        "    clientIP: {timeoutSeconds: 600}\n"),
                        ("empty", "")):
        ips = [a for f, a in zip((4, 6), SVC_IPS[name]) if f in fams_]
        node_port = f", nodePort: {SVC_NODEPORT}" if name == "echo" else ""
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {SVC_NS}}}
spec:
{extra}  ipFamilyPolicy: {policy}
  ipFamilies: [{', '.join(families)}]
  clusterIPs: [{', '.join(ips)}]
  ports:
    - {{name: echo, port: {SVC_PORT}, targetPort: {SVC_TARGET}, protocol: TCP{node_port}}}
""")
        if name == "empty":
            continue
        for f in fams_:
            eps = "".join(f"""  - addresses: ["{addrs[f]}"]
    nodeName: {node}
    targetRef: {{kind: Pod, name: {pod}, namespace: {K8S_NAMESPACE}}}
    conditions: {{ready: true, serving: true, terminating: false}}
""" for pod, node, addrs in backends)
            docs.append(f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-v{f}
  namespace: {SVC_NS}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv{f}
endpoints:
{eps}ports:
  - {{name: echo, port: {SVC_TARGET}, protocol: TCP}}
""")
    return "---\n".join(docs)


def up_services(st):
    """The backends' servers, then the Services and slices into etcd; waits until every node
    serves them (service.frontends)."""
    pods = {p["name"]: p for p in st["pods"]}
    names = sorted({p["node"] for p in st["pods"]}, key=lambda n: int(n[4:]))
    backend_pods = [next(p for p in st["pods"] if p["node"] == n)
                    for n in dict.fromkeys((names[0], names[-1]))]
    backends = []
    for p in backend_pods:
        v4, v6 = pod_addresses(NsRef(p["netns"]))
        addrs = {4: v4, 6: v6}
        backends.append((p["name"], p["node"],
                         {f: str(ipaddress.ip_interface(addrs[f][0]).ip) for f in st["families"]}))
        srv = NsRef(p["netns"]).popen(f"/usr/bin/python3 {SVC_PEER} serve {p['name']} "
                                      f"{SVC_TARGET} {SVC_TARGET}", stdin=subprocess.DEVNULL)
        record_process(st, "svc-echo", f"{p['name']} svc-echo", srv)
        if srv.stdout.readline().strip() != "listening":
            raise RuntimeError(f"{p['name']}: svc_peer.py did not start: {srv.stderr.read()}")
    st.data["services"] = {"backends": [b[0] for b in backends]}
    st.save()
    path = STATE_DIR / "services.yaml"
    path.write_text(services_yaml(st, backends))
    r = sh(f"ip netns exec {TOR} {FWDCTL} apply -f {path} --store '{st['etcd']['spec']}'",
           check=False)
    if r.returncode != 0:
        raise RuntimeError(f"fwdctl apply -f {path}: {r.stdout}{r.stderr}")
    # ClusterIP x families x 3 services, NodePort x the node's addresses
    want = 3 * len(st["families"]) + len(st["families"])

    def served():
        return {name: len(api_call(n["sock"], "service.frontends")["frontends"])
                for name, n in st["nodes"].items()}
    t0 = time.monotonic()
    wait_until(lambda: all(v == want for v in served().values()), 30, interval=0.1,
               what=f"every node serving {want} frontends")
    return backends, time.monotonic() - t0


def svc_client(ns, addr, port, count):
    """(answers, errors): the backend lines ("NAME SRC_ADDR SRC_PORT": who answered and the
    source it saw) of count TCP connections to addr:port from ns."""
    r = ns.run(f"/usr/bin/python3 {SVC_PEER} ask tcp {addr} {port} {count}", check=False,
               timeout=30 + 4 * count)
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith("from ")]
    got = [ln.split() for ln in lines if ln not in ("refused", "timeout")]
    return got, ([f"{ln} after {len(got)}" for ln in lines if ln in ("refused", "timeout")] or
                 ([f"exit {r.returncode}: {r.stderr.strip()[-120:]}"] if r.returncode else []))


def service_checks(c, st, ns, by_node):
    """The Service rows: ClusterIP from a pod of every node, both backends take flows,
    hairpin, ClientIP affinity, NodePort from the ToR, a service with no endpoint rejected."""
    backends = st["services"]["backends"]
    both = set(backends)

    def reach(src, name, fam, count, want_all=False, sticky=False):
        addr = SVC_IPS[name][0 if fam == 4 else 1]
        got, errors = svc_client(src, addr, SVC_PORT, count)
        seen = sorted({g[0] for g in got})
        if errors:
            return False, f"{len(got)}/{count} answered; {errors[0]}"
        if not set(seen) <= both:
            return False, f"answered by {seen}, not a backend of {sorted(both)}"
        if want_all and set(seen) != both:
            return False, f"{count} connections all to {seen}"
        if sticky and len(seen) != 1:
            return False, f"{count} connections spread over {seen} (want one backend)"
        return True, f"{count}/{count} answered by {', '.join(seen)}"

    for node in sorted(by_node, key=lambda n: int(n[4:])):
        # a client that is not a backend (the node's last pod)
        cl = by_node[node][-1]
        for fam in fams(st):
            c.run("svc ClusterIP", f"{cl} -> echo", f"v{fam}",
                  lambda cl=cl, fam=fam: reach(ns[cl], "echo", fam, 4))
    first = by_node[sorted(by_node, key=lambda n: int(n[4:]))[0]][-1]
    for fam in fams(st):
        c.run("svc both backends", f"{first} -> echo x16", f"v{fam}",
              lambda fam=fam: reach(ns[first], "echo", fam, 16, want_all=True))
        c.run("svc affinity", f"{first} -> echo-sticky x8", f"v{fam}",
              lambda fam=fam: reach(ns[first], "echo-sticky", fam, 8, sticky=True))
        # hairpin: a backend reaching its own service lands on itself about half the time
        c.run("svc hairpin", f"{backends[0]} -> echo x16", f"v{fam}",
              lambda fam=fam: reach(ns[backends[0]], "echo", fam, 16, want_all=True))

        def rejected(fam=fam):
            addr = SVC_IPS["empty"][0 if fam == 4 else 1]
            r = ns[first].run(f"/usr/bin/python3 {SVC_PEER} ask tcp {addr} {SVC_PORT}",
                              check=False, timeout=30)
            return r.returncode == 3, ("connection refused (ICMP port unreachable)"
                                       if r.returncode == 3 else
                                       f"exit {r.returncode}: {r.stdout.strip()[-120:]}")
        c.run("svc no endpoint", f"{first} -> empty", f"v{fam}", rejected)
    # NodePort from outside the cluster: the ToR to every node's address
    tor = NsRef(TOR)
    for name, n in st["nodes"].items():
        for fam in fams(st):
            addr = str(ipaddress.ip_interface(n[f"ipv{fam}"]).ip)

            def nodeport(addr=addr, node=name):
                got, errors = svc_client(tor, addr, SVC_NODEPORT, 4)
                if errors:
                    return False, f"{len(got)}/4 answered; {errors[0]}"
                seen = sorted({f"{g[0]} (saw {g[1]})" for g in got})
                return all(g[0] in both for g in got), f"4/4 answered by {', '.join(seen)}"
            c.run("svc NodePort", f"ToR -> {name}:{SVC_NODEPORT}", f"v{fam}", nodeport)


# ---------------------------------------------------------------- checks

PASS, FAIL, TODO = "PASS", "FAIL", "TODO"


class Checks:
    """The result table. A row's result is PASS, FAIL, or TODO: a check of something not
    built yet (it says what it needs), neither passed nor failed. Its `on ToR` column says
    what crossed the ToR while the row ran (read from the ToR's counters): vxlan, native
    (bare pod frames), none, mixed; `-` where the row measures no traffic."""

    def __init__(self):
        self.rows = []
        self.progress = True

    def add(self, check, subject, family, ok, detail, wire="-"):
        result = TODO if ok == TODO else PASS if ok else FAIL
        self.rows.append((check, subject, family, wire, result, detail))
        if self.progress:
            print({PASS: ".", FAIL: "F", TODO: "t"}[result], end="", flush=True)

    def run(self, check, subject, family, fn, wire="-"):
        try:
            ok, detail = fn()
        except Exception as e:  # noqa: BLE001 - a check that breaks is a failed check
            ok, detail = False, f"error: {e}".splitlines()[0][:160]
        self.add(check, subject, family, ok, detail, wire)
        return ok

    def run_wired(self, check, subject, family, fn, expect):
        """run(), and what crossed the ToR meanwhile must be `expect` (None: not checked)."""
        fam = 6 if family == "v6" else 4
        before = tor_counters()
        try:
            ok, detail = fn()
        except Exception as e:  # noqa: BLE001 - a check that breaks is a failed check
            ok, detail = False, f"error: {e}".splitlines()[0][:160]
        wire, seen = wire_delta(before, tor_counters(), fam)
        if expect is not None and wire != expect:
            ok, seen = (False if ok != TODO else ok), f"{seen}, want {expect}"
        self.add(check, subject, family, ok, f"{detail}; {seen}", wire)
        return ok

    def count(self, result):
        return sum(1 for r in self.rows if r[4] == result)

    def failed(self):
        return self.count(FAIL)

    def table(self):
        head = ("check", "between / what", "fam", "on ToR", "result", "detail")
        w = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(4)]
        out = [f"{head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:<{w[2]}}  {head[3]:<{w[3]}}  "
               f"{head[4]:<6}  {head[5]}",
               f"{'-' * w[0]}  {'-' * w[1]}  {'-' * w[2]}  {'-' * w[3]}  ------  {'-' * 6}"]
        for check, subject, fam, wire, result, detail in self.rows:
            out.append(f"{check:<{w[0]}}  {subject:<{w[1]}}  {fam:<{w[2]}}  {wire:<{w[3]}}  "
                       f"{result:<6}  {detail}")
        return "\n".join(out)


def wire_delta(before, after, fam):
    """What crossed the ToR between two counter readings, for one family's traffic (IPv4
    pods: VXLAN with an IPv4 outer header; IPv6 pods: an IPv6 one, as Calico's pools)."""
    vx = after[f"vxlan{fam}"] - before[f"vxlan{fam}"]
    bare = after[f"pod{fam}"] - before[f"pod{fam}"]
    wire = ("mixed" if vx and bare else "vxlan" if vx else "native" if bare else "none")
    return wire, f"ToR: {vx} VXLAN, {bare} bare"


def expected_wire(st, a, b, fam):
    """How pod traffic from node a to node b crosses the ToR: not at all on one node; BGP
    profile: bare; IPv4 (CrossSubnet): bare inside a subnet, VXLAN across; IPv6: VXLAN."""
    if a == b:
        return "none"
    if st["profile"] == "bgp":
        return "native"
    same = st["nodes"][a]["subnet"] == st["nodes"][b]["subnet"]
    return "native" if fam == 4 and same else "vxlan"


def ping(ns, addr, count=3, wait=2):
    """count echo requests 0.2 s apart; PASS when every one is answered."""
    fam = "-6" if ":" in addr else "-4"
    r = ns.run(f"ping {fam} -c {count} -i 0.2 -W {wait} {addr}", check=False, timeout=30)
    seqs = {int(x) for x in re.findall(r"icmp_seq=(\d+) ttl", r.stdout)}
    lost = sorted(set(range(1, count + 1)) - seqs)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    if m and not lost:
        return True, f"rtt avg {float(m.group(1)):.3f} ms ({count}/{count} answered)"
    if m:
        return False, (f"{count - len(lost)}/{count} answered, lost icmp_seq {lost}, "
                       f"rtt avg {float(m.group(1)):.3f} ms")
    out = (r.stdout + r.stderr).strip().splitlines()
    return False, out[-1][:120] if out else f"ping exit {r.returncode}"


def tcp(src, dst, addr, port, nbytes):
    srv = dst.popen(f"/usr/bin/python3 {XFER} server {addr} {port}")
    try:
        if srv.stdout.readline().strip() != "listening":
            return False, f"server did not start: {srv.stderr.read()[-200:]}"
        t0 = time.monotonic()
        cli = src.run(f"/usr/bin/python3 {XFER} client {addr} {port} {nbytes} {port}",
                      check=False, timeout=180)
        dt = time.monotonic() - t0
        out, _ = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    sent, got = cli.stdout.split(), out.split()
    if cli.returncode != 0 or sent != got or int(got[0]) != nbytes:
        return False, (f"client exit {cli.returncode}: {cli.stderr.strip()[-120:]}; "
                       f"sent {sent}, received {got}")
    return True, (f"{nbytes * 8 / dt / 1e9:.2f} Gbit/s ({nbytes >> 20} MiB in {dt:.2f} s, "
                  "sha256 match)")


def tcp_to_tor(src, dst, port, node_addr, nbytes):
    """TCP from a pod to a server on the ToR's loopback (nat_peer.py): PASS when the content
    arrives whole and the ToR saw the node's address as the source (natOutgoing)."""
    srv = subprocess.Popen(["ip", "netns", "exec", TOR, "/usr/bin/python3", str(NAT_PEER),
                            "tcp-server", dst, str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        if srv.stdout.readline().strip() != "listening":
            return False, f"server did not start: {srv.stderr.read()[-200:]}"
        cli = src.run(f"/usr/bin/python3 {NAT_PEER} tcp-client {dst} {port} {nbytes} "
                      f"{40000 + port}", check=False, timeout=180)
        out, _ = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    lines = out.splitlines()
    peer = lines[0].split() if lines else ["?", "?"]
    seen = str(ipaddress.ip_address(peer[0].removeprefix("::ffff:"))) if peer[0] != "?" else "?"
    whole = cli.returncode == 0 and len(lines) > 1 and lines[1] == cli.stdout.strip()
    if not whole:
        return False, f"client exit {cli.returncode}: {cli.stderr.strip()[-120:]}; got {lines}"
    if seen != node_addr:
        return False, f"the ToR saw {seen}:{peer[1]}, want the node's {node_addr}"
    return True, (f"the ToR saw {seen}:{peer[1]} (the node, source port kept); "
                  f"{nbytes >> 20} MiB sha256 match")


def pod_addresses(ns):
    """(ipv4 list, ipv6 list) of global addresses on eth0, with prefix length."""
    out = ns.run("ip -o addr show dev eth0 scope global", check=False).stdout
    v4 = re.findall(r"inet (\S+)", out)
    v6 = re.findall(r"inet6 (\S+)", out)
    return v4, v6


def routes(sock, source):
    res = api_call(sock, "route.list", {"source": source, "limit": 100000})
    return {r["prefix"]: r for r in res["routes"]}


def ipam_show(st, *args):
    """fwdctl ipam show [args] on the lab's store (from the ToR, where etcd listens)."""
    fwdctl = pathlib.Path(st["build"]) / "control" / "fwdctl"  # --down: the lab's build
    r = sh(f"ip netns exec {TOR} {fwdctl} --json ipam show --store '{st['etcd']['spec']}' "
           + " ".join(args))
    return json.loads(r.stdout)


def store_blocks(st):
    return {b["cidr"]: b["node"] for b in ipam_show(st)["blocks"]}


def fams(st):
    return [f for f in (4, 6) if f in st["families"]]


def fam_label(st):
    return "+".join(str(f) for f in fams(st))


def converged(st, kinds=True):
    """Missing routes per node: its own blocks as ipam blackholes; the others' blocks by
    BGP (with the ToR's loopbacks) or, in the default profile, by the overlay module as
    VXLAN or native ("via") routes as the pool's mode and the two nodes' subnets say
    (kinds=False: any kind; the bring-up waits for that, the table checks the kinds)."""
    blocks = store_blocks(st)
    missing = {}
    for name, n in st["nodes"].items():
        ipam = routes(n["sock"], "ipam")
        miss = [b for b, owner in blocks.items() if owner == name and b not in ipam]
        others = {b: owner for b, owner in blocks.items() if owner not in (name, None)}
        if st["profile"] == "bgp":
            bgp = routes(n["sock"], "bgp")
            miss += [b for b in list(others) + [f"{LOOP4}/32", f"{LOOP6}/128"] if b not in bgp]
        else:
            ov = routes(n["sock"], "overlay")
            for b, owner in others.items():
                want = expected_wire(st, name, owner, 6 if ":" in b else 4)
                kind = "vxlan" if want == "vxlan" else "via"
                if b not in ov or (kinds and ov[b].get("kind") != kind):
                    miss.append(f"{b} as {kind} (have {ov.get(b, {}).get('kind')})")
        if miss:
            missing[name] = miss
    return missing, blocks


def registry_complete(st):
    """Nodes whose registry (node.list) lacks another node, or a VTEP of a lab family."""
    want = set(st["nodes"])
    short = {}
    for name, n in st["nodes"].items():
        got = {x["metadata"]["name"]: x for x in api_call(n["sock"], "node.list")["nodes"]}
        lack = sorted(want - set(got))
        for other in sorted(want & set(got)):
            spec = got[other].get("spec", {})
            for f, keys in ((4, ("vxlanTunnelMACAddr", "ipv4VXLANTunnelAddr")),
                            (6, ("vxlanTunnelMACAddrV6", "ipv6VXLANTunnelAddr"))):
                if f in st["families"]:
                    lack += [f"{other}.{k}" for k in keys if not spec.get(k)]
        if lack:
            short[name] = lack
    return short


def bgp_config_check(st, name, n):
    """The node's generated sessions against the variant: the mesh (every other node) or the
    reflectors (node1 and node2 reflect, node3 their client), and the ToR in its own AS."""
    res = api_call(n["sock"], "bgp.status")
    got = {}
    for s in res["sessions"]:
        got.setdefault(s["node"] or f"AS{s['as_number']}", set()).add(
            (s["family"], s["rr_client"]))
    others = sorted(x for x in st["nodes"] if x != name)
    rr = st.data.get("rr")
    if rr and name not in RR_NODES:
        others = list(RR_NODES)
    want = {o: {(4, rr and name in RR_NODES and o not in RR_NODES),
                (6, rr and name in RR_NODES and o not in RR_NODES)} for o in others}
    want[f"AS{TOR_AS}"] = {(4, False), (6, False)}
    ok = got == want and not res["problems"] and res["as_number"] == NODE_AS
    role = (f"reflector {RR_CLUSTER}" if rr and name in RR_NODES else
            "client of the reflectors" if rr else "node-to-node mesh")
    peers = " ".join(f"{o}{' (rr client)' if any(c for _, c in got.get(o, ())) else ''}"
                     for o in others)
    return ok, (f"AS {res['as_number']}, {role}: {peers}; the ToR in AS {TOR_AS}"
                if ok else f"sessions {got}, want {want}; problems {res['problems']}")


def run_checks(st, tcp_bytes):
    c = Checks()
    pods = {p["name"]: p for p in st["pods"]}
    ns = {name: NsRef(p["netns"]) for name, p in pods.items()}
    both = fam_label(st)

    if st["profile"] == "bgp":
        # BGP: every session of every node and of the ToR
        for name, n in list(st["nodes"].items()) + [("tor", st["tor"])]:
            def bgp_up(n=n, name=name):
                got = bird_ref(name, n).protocols()
                up = [p for p in n["protocols"]
                      if got.get(p, ("", ""))[1].startswith("Established")]
                down = sorted(set(n["protocols"]) - set(up))
                return not down, (f"{len(up)}/{len(n['protocols'])} sessions Established"
                                  + (f"; not: {', '.join(down)}" if down else ""))
            c.run("bgp sessions", name, "4+6", bgp_up)
        # each node's sessions are the ones the resources call for (bgp.status)
        for name, n in st["nodes"].items():
            c.run("bgp from resources", name, "4+6",
                  lambda name=name, n=n: bgp_config_check(st, name, n))
    else:
        # the node registry: every node knows every node, with its VTEPs and tunnel addresses
        short = registry_complete(st)
        for name, n in st["nodes"].items():
            def registry(name=name, n=n):
                got = api_call(n["sock"], "node.list")["nodes"]
                how = sorted(f"{x['metadata']['name']}:{','.join(sorted(x.get('via', {})))}"
                             for x in got if not x.get("self"))
                return name not in short, (f"{len(got)} nodes; reached by " + " ".join(how)
                                           if name not in short else f"missing {short[name]}")
            c.run("node registry", name, both, registry)

        # the ToR knows the node subnets and its loopbacks, no pod network
        def tor_routes():
            # every table, every type (a default route would cover the pools as well)
            inside, count = [], 0
            for f, pool in ((4, POOL4), (6, POOL6)):
                if f not in st["families"]:
                    continue
                for r in json.loads(sh(f"ip -n {TOR} -j -{f} route show table all").stdout):
                    count += 1
                    dst = {"default": "::/0" if f == 6 else "0.0.0.0/0"}.get(r["dst"], r["dst"])
                    if ipaddress.ip_network(dst, strict=False).overlaps(pool):
                        inside.append(f"{r.get('type', '')} {r['dst']} {r.get('dev', '')}")
            subnets = sorted({n["subnet"] for n in st["nodes"].values()})
            return not inside, (f"{count} routes in all tables (node subnets on {' '.join(subnets)}, "
                                f"loopbacks, local), none covering "
                                + " or ".join(str(p) for f, p in ((4, POOL4), (6, POOL6))
                                              if f in st["families"])
                                if not inside else f"routes into the pools: {inside}")
        c.run("ToR routes", "no pod network", both, tor_routes)

    # routes: each dataplane has the others' blocks and its own (ipam)
    t0 = time.monotonic()
    missing, blocks = converged(st)
    while missing and time.monotonic() - t0 < 20:
        time.sleep(0.2)
        missing, blocks = converged(st)
    for name, n in st["nodes"].items():
        mine = sorted(b for b, o in blocks.items() if o == name)
        if name in missing:
            detail = f"missing {missing[name]}"
        elif st["profile"] == "bgp":
            detail = (f"own blocks {' '.join(mine)}; {len(blocks) - len(mine)} others' blocks + "
                      f"2 loopbacks by BGP")
        else:
            kinds = {}
            for r in routes(n["sock"], "overlay").values():
                kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
            detail = (f"own blocks {' '.join(mine)}; others' by the overlay: "
                      + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())))
        c.add("routes", name, both, name not in missing, detail)

    # each pod: one address of each lab family from the pools, /32 and /128 on eth0, as the
    # CNI result says and as IPAM holds them for the pod; Calico's gateways as default routes
    for name, p in pods.items():
        def addrs(name=name, p=p):
            v4, v6 = pod_addresses(ns[name])
            problems = []
            for f, got, pool, plen in ((4, v4, POOL4, "/32"), (6, v6, POOL6, "/128")):
                want = 1 if f in st["families"] else 0
                if not (len(got) == want and all(a.endswith(plen) and
                                                  ipaddress.ip_interface(a).ip in pool
                                                  for a in got)):
                    problems.append(f"IPv{f} {got} (want {want} {plen} from {pool})")
            if sorted(v4 + v6) != sorted(p.get("ips", [])):
                problems.append(f"the CNI result says {p.get('ips')}")
            held = ipam_show(st, "--handle", f"{NETWORK}.{p['cid']}")["addresses"]
            held = sorted(a["address"] for a in held if a["node"] == p["node"]
                          and a["pod"] == p["name"] and a["namespace"] == K8S_NAMESPACE)
            if held != sorted(str(ipaddress.ip_interface(a).ip) for a in v4 + v6):
                problems.append(f"IPAM handle holds {held}")
            r4 = ns[name].run("ip -4 route show default", check=False).stdout
            r6 = ns[name].run("ip -6 route show default", check=False).stdout
            if 4 in st["families"] and "via 169.254.1.1 dev eth0" not in r4:
                problems.append(f"IPv4 default route {r4.strip()!r}")
            if 6 in st["families"] and f"via {CALICO_GW6} dev eth0" not in r6:
                problems.append(f"IPv6 default route {r6.strip()!r}")
            return not problems, f"eth0 {' '.join(v4 + v6)}" + (
                "" if not problems else "; " + "; ".join(problems))
        c.run("pod addresses", f"{name} ({p['node']})", both, addrs)

    def addr_of(name, fam):
        v4, v6 = pod_addresses(ns[name])
        return str(ipaddress.ip_interface((v4 if fam == 4 else v6)[0]).ip)

    by_node = {}
    for name, p in pods.items():
        by_node.setdefault(p["node"], []).append(name)
    names = sorted(by_node)
    same = [(v[0], v[1]) for v in by_node.values() if len(v) > 1]
    # across nodes: a ring, node1 -> node2 -> ... -> node1 (all pairs get a ping below)
    cross = [(by_node[a][0], by_node[names[(i + 1) % len(names)]][0])
             for i, a in enumerate(names)] if len(names) > 1 else []

    def wire(a, b, fam):
        return expected_wire(st, pods[a]["node"], pods[b]["node"], fam)

    # a pod of each node reaches the ToR's loopbacks: learned by BGP in the BGP profile; in
    # the default one the ToR has no route back to the pools, so it takes NAT (not built)
    for node in names:
        a = by_node[node][0]
        for fam, dst in ((4, LOOP4), (6, LOOP6)):
            if fam not in st["families"]:
                continue
            if st["profile"] == "bgp":
                c.run_wired("ping ToR loop", f"{a} -> {dst}", f"v{fam}",
                            lambda a=a, dst=dst: ping(ns[a], dst), "native")
            else:
                # natOutgoing: the ToR has no route back to the pools, so an answer means
                # the node translated; no pod address crosses the ToR ("none")
                c.run_wired("ping ToR loop", f"{a} -> {dst}", f"v{fam}",
                            lambda a=a, dst=dst: ping(ns[a], dst), "none")
    if st["profile"] != "bgp":
        # TCP to the loopbacks: the ToR sees the node's address as the source, the content
        # arrives whole
        nat_port = 5100
        for node in names:
            a = by_node[node][0]
            for fam, dst in ((4, LOOP4), (6, LOOP6)):
                if fam not in st["families"]:
                    continue
                nat_port += 1
                src = str(ipaddress.ip_interface(st["nodes"][node][f"ipv{fam}"]).ip)
                c.run_wired("tcp ToR loop", f"{a} -> {dst}", f"v{fam}",
                            lambda a=a, dst=dst, src=src, port=nat_port:
                            tcp_to_tor(ns[a], dst, port, src, tcp_bytes), "none")

    port = 5200
    for kind, pairs in (("same node", same), ("across nodes", cross)):
        for a, b in pairs:
            for fam in fams(st):
                c.run_wired(f"ping {kind}", f"{a} -> {b}", f"v{fam}",
                            lambda a=a, b=b, fam=fam: ping(ns[a], addr_of(b, fam)),
                            wire(a, b, fam))
        for a, b in pairs:
            for fam in fams(st):
                port += 1
                c.run_wired(f"tcp {kind}", f"{a} -> {b}", f"v{fam}",
                            lambda a=a, b=b, fam=fam, port=port: tcp(ns[a], ns[b], addr_of(b, fam),
                                                                     port, tcp_bytes),
                            wire(a, b, fam))

    # every ordered pair of pods: one ping each, and each crossed the ToR as it should
    def all_pairs(fam):
        bad, odd, n, seen = [], [], 0, {}
        before = tor_counters()
        for a, b in itertools.permutations(sorted(pods), 2):
            n += 1
            ok, _ = ping(ns[a], addr_of(b, fam), count=1)
            after = tor_counters()
            got, _ = wire_delta(before, after, fam)
            before = after
            seen[got] = seen.get(got, 0) + 1
            if not ok:
                bad.append(f"{a}->{b}")
            elif got != wire(a, b, fam):
                odd.append(f"{a}->{b} {got} (want {wire(a, b, fam)})")
        return not bad and not odd, (
            f"{n - len(bad)}/{n} pairs answer; on the ToR: "
            + ", ".join(f"{v} {k}" for k, v in sorted(seen.items()))
            + (f"; failed: {' '.join(bad)}" if bad else "")
            + (f"; wrong way: {' '.join(odd)}" if odd else ""))
    for fam in fams(st):
        c.run("ping all pairs", f"{len(pods)} pods", f"v{fam}", lambda fam=fam: all_pairs(fam),
              "per pair")

    # packet capture on a pod's port (fwdctl capture): its echoes both ways, each family
    if cross:
        a, b = cross[0]
        c.run("capture", f"{a} ({pods[a]['node']})", both,
              lambda a=a, b=b: capture(st, pods[a], ns[a],
                                       {f: addr_of(b, f) for f in fams(st)}))

    if st.data.get("services"):
        service_checks(c, st, ns, by_node)

    policy_checks(c, st, ns, by_node, addr_of)

    # the IPAM store is consistent: nothing leaked or doubled
    def ipam_check():
        r = sh(f"ip netns exec {TOR} {FWDCTL} ipam check --store '{st['etcd']['spec']}'",
               check=False)
        used = sum(1 for p in pods.values() for _ in p.get("ips", []))
        return r.returncode == 0, (f"clean: {used} addresses, {len(blocks)} blocks"
                                   if r.returncode == 0 else r.stdout.strip()[-160:])
    c.run("ipam check", "etcd store", both, ipam_check)
    return c


POLICY_YAML = """apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: lab-deny-pair, namespace: %s}
spec:
  selector: lab-policy == 'target'
  ingress:
  - action: Deny
    source: {selector: lab-policy == 'denied'}
  - action: Allow
""" % K8S_NAMESPACE


def policy_checks(c, st, ns, by_node, addr_of):
    """The policy rows: a Calico NetworkPolicy applied to the store denies one pod pair (a
    pod of another node to a pod of the first node, picked by labels `fwdctl label` sets) and
    keeps the others (a third pod to the same target, the target to the denied pod); every
    node enforces it before the rows run (policy.sync), and its drop shows on the target's
    node, whose flows module plans the exact early drop for its uplink NIC (flow.list; the
    lab's net_tap refuses it, saying why). The policy and labels are taken away afterwards:
    the lab stays open."""
    names = sorted(by_node)
    if len(names) < 2:
        return
    target = by_node[names[0]][0]
    denied = by_node[names[1]][0]
    kept = next((p for n in names for p in by_node[n] if p not in (target, denied)), None)
    if kept is None:
        return
    store = st["etcd"]["spec"]

    def ctl(*args):
        return sh(f"ip netns exec {TOR} {FWDCTL} {' '.join(args)} --store '{store}'")

    def sync_all():
        for n in st["nodes"].values():
            api_call(n["sock"], "policy.sync", {"timeout_ms": 10000})

    path = STATE_DIR / "policy-deny-pair.yaml"
    path.write_text(POLICY_YAML)
    pods = {p["name"]: p for p in st["pods"]}
    node_of_target = st["nodes"][pods[target]["node"]]
    ctl("label", "pod", f"{K8S_NAMESPACE}/{target}", "lab-policy=target", "--overwrite")
    ctl("label", "pod", f"{K8S_NAMESPACE}/{denied}", "lab-policy=denied", "--overwrite")
    ctl("apply", "-f", str(path))
    try:
        sync_all()
        for fam in fams(st):
            def deny(fam=fam):
                before = api_call(node_of_target["sock"], "stats")["drops"]
                ok, detail = ping(ns[denied], addr_of(target, fam), count=2, wait=1)
                after = api_call(node_of_target["sock"], "stats")["drops"]
                dropped = sum(after.get(k, 0) - before.get(k, 0) for k in after
                              if k.startswith("policy_deny"))
                return not ok and dropped >= 2, (
                    f"lab-deny-pair: no answer, {dropped} dropped by policy on "
                    f"{pods[target]['node']}" if not ok else f"answered: {detail}")
            c.run("policy deny", f"{denied} -> {target}", f"v{fam}", deny)

            def nic(fam=fam):
                # the flows module plans the exact early drop for the NIC (nic_flows.hpp)
                want = ipaddress.ip_address(addr_of(target, fam))

                def planned():
                    return [g for g in api_call(node_of_target["sock"], "flow.list")["groups"]
                            if g["kind"] == "policy" and "lab-deny-pair" in g["what"]
                            and ipaddress.ip_address(g["what"].rsplit(" ", 1)[1]) == want]
                t0 = time.monotonic()
                got = planned()
                while not got and time.monotonic() - t0 < 5:
                    time.sleep(0.2)
                    got = planned()
                if not got:
                    return False, f"no exact drop planned for {want} on {pods[target]['node']}"
                g = got[0]
                why = g["errors"][-1].rsplit(": ", 1)[-1] if g["errors"] else ""
                return True, (f"{len(g['rules'])} drop rule(s) planned for the uplink NIC ("
                              + "; ".join(r["match"] for r in g["rules"]) + f"), {g['state']}"
                              + (f" by net_tap: {why}" if g["state"] == "refused" else ""))
            c.run("policy at the NIC", f"{denied} -> {target}", f"v{fam}", nic)
            c.run("policy keeps", f"{kept} -> {target}", f"v{fam}",
                  lambda fam=fam: ping(ns[kept], addr_of(target, fam)))
            c.run("policy keeps", f"{target} -> {denied}", f"v{fam}",
                  lambda fam=fam: ping(ns[target], addr_of(denied, fam)))
    finally:
        ctl("delete", "-f", str(path))
        ctl("label", "pod", f"{K8S_NAMESPACE}/{target}", "lab-policy-")
        ctl("label", "pod", f"{K8S_NAMESPACE}/{denied}", "lab-policy-")
        sync_all()


def capture(st, pod, ns, dsts):
    """fwdctl capture's ops on the pod's endpoint while it pings dsts ({family: address}):
    the pcap the daemon writes holds the requests it sent and the replies it got."""
    from scapy.all import ICMP, IP, IPv6, ICMPv6EchoReply, ICMPv6EchoRequest, rdpcap
    sock = st["nodes"][pod["node"]]["sock"]
    out = STATE_DIR / f"capture-{pod['name']}.pcap"
    cap = api_call(sock, "capture.start", {"port": f"{NETWORK}.{pod['cid']}.eth0",
                                           "file": str(out)})
    for f, dst in dsts.items():
        ns.run(f"ping -{f} -c 2 -i 0.2 -W 2 {dst}", check=False, timeout=30)
    done = api_call(sock, "capture.stop", {"id": cap["id"]})
    pkts = rdpcap(str(out))
    got = {}
    if 4 in dsts:
        got[4] = (sum(1 for p in pkts if ICMP in p and p[ICMP].type == 8 and p[IP].dst == dsts[4]),
                  sum(1 for p in pkts if ICMP in p and p[ICMP].type == 0 and p[IP].src == dsts[4]))
    if 6 in dsts:
        got[6] = (sum(1 for p in pkts if ICMPv6EchoRequest in p and p[IPv6].dst == dsts[6]),
                  sum(1 for p in pkts if ICMPv6EchoReply in p and p[IPv6].src == dsts[6]))
    ok = all(v == (2, 2) for v in got.values()) and done["packets"] == len(pkts)
    return ok, (f"{len(pkts)} frames in {shown(out)}: echo "
                + " ".join(f"{q}+{r} (v{f})" for f, (q, r) in got.items()) + " of 2+2 each")


def idle_cpu(st, seconds=10):
    """CPU the lab's processes use while nothing flows: % of one core over `seconds`."""
    procs = [p for p in st["processes"] if alive(p)]
    t0 = {p["name"]: cpu_ticks(p) for p in procs}
    time.sleep(seconds)
    hz = os.sysconf("SC_CLK_TCK")
    return {p["name"]: (cpu_ticks(p) - t0[p["name"]]) / hz / seconds * 100 for p in procs}


def shown(path):
    """A path as the user types it from the repository (demo.sh runs there)."""
    try:
        return str(pathlib.Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def how_to_poke(st):
    n1 = st["nodes"]["node1"]
    pods = st["pods"]
    far = [p for p in pods if p["node"] != "node1"]
    other = far[-1] if far else (pods[-1] if pods else None)
    dst = other["ips"][0].split("/")[0] if other and other.get("ips") else "192.168.0.64"
    fwdctl = shown(FWDCTL)
    cmds = [
        (f"ip netns exec lab-pod-1a ping {dst}", "pod-1a (node1) to a pod on another node"),
        ("ip netns exec lab-pod-1a ip addr", "a pod's side: eth0, /32 and /128, routes"),
        (f"{fwdctl} -s {n1['sock']} endpoint list", "node1's dataplane: route list, stats, node"),
    ]
    if st["profile"] == "bgp":
        cmds += [(f"{FWDCTL} -s {n1['sock']} bgp status",
                  "node1's BGP sessions from the resources, with BIRD's state"),
                 (f"birdc -s {n1['bird_sock']} show protocols", "node1's BGP sessions (show route)"),
                 (f"ip netns exec {TOR} ip route", "the ToR learned the pod blocks by BGP")]
    else:
        cmds += [(f"{fwdctl} -s {n1['sock']} node list", "the node registry as node1 sees it"),
                 (f"{fwdctl} -s {n1['sock']} route list --source overlay",
                  "node1's routes to other nodes' blocks: vxlan or via"),
                 (f"ip netns exec {TOR} nft list counters table bridge lab",
                  "what crossed the ToR: VXLAN, bare pod frames"),
                 (f"ip netns exec {TOR} ip route", "the ToR: node subnets and loopbacks only")]
    cmds += [
        (f"ip netns exec {TOR} {fwdctl} ipam show --store {st['etcd']['spec']}",
         "pools, blocks, nodes"),
        ("./run.sh demo --status", "what is up; configs and logs in " + str(STATE_DIR)),
        ("./run.sh demo --down", "take it all down"),
    ]
    w = max(len(c) for c, _ in cmds if len(c) < 70)
    return "\n".join(["The lab stays up. Poke at it:"] + [
        f"  {c:<{w}}  # {why}" if len(c) <= w else f"  {c}\n  {'':<{w}}  # {why}"
        for c, why in cmds])


def describe(st):
    fam = {(4, 6): "dual-stack", (4,): "IPv4 only", (6,): "IPv6 only"}[tuple(st["families"])]
    return {"bgp": "BGP profile" + (" (route reflectors)" if st.data.get("rr") else ""),
            "vxlan": "default profile (VXLAN, no BGP)"}[st["profile"]] + \
        f", {fam}, {len(st.data.get('planned', st['nodes']))} nodes"


def status():
    if not STATE.exists():
        log("nothing is up")
        return 0
    st = State.load()
    print(f"lab up since {st['created']} (state {STATE}): {describe(st)}")
    for p in st["processes"]:
        print(f"  {p['name']:<16} pid {p['pid']:<8} {'running' if alive(p) else 'NOT RUNNING'}")
    for name, n in st["nodes"].items():
        print(f"  {name:<16} {n['netns']} on {n['subnet']}: "
              + " ".join(a for a in (n.get("ipv4"), n.get("ipv6")) if a))
    for p in st["pods"]:
        print(f"  {p['name']:<16} on {p['node']}: {' '.join(p.get('ips', []))}")
    complete = len(st["nodes"]) == len(st.data.get("planned", [])) and st["etcd"]
    if complete and (st["profile"] != "bgp" or "bird_sock" in st["nodes"]["node1"]):
        print(how_to_poke(st))
    return 0


class Lab:
    """What to bring up: the profile ("vxlan", the default, or "bgp") and the families."""

    def __init__(self, profile, families):
        self.profile = profile
        self.families = set(families)
        self.nodes = nodes(profile, self.families)
        self.subnets = [s for s in SUBNETS if any(n.subnet is s for n in self.nodes)]


def up(args):
    """Brings the lab up, runs the checks, prints the table; 0 when every check passed."""
    brought = bring_up(args)
    if isinstance(brought, int):
        return brought
    st, t_up = brought
    return check_and_report(st, args, t_up)


def bring_up(args):
    """Takes down a lab that is up and brings up a new one as args say (profile, families,
    pods per node), without the checks: (state, seconds it took), or 2 when it failed (then
    it is down again, unless args.keep)."""
    lab = Lab("bgp" if args.bgp else "vxlan",
              (4,) if args.ipv4_only else (6,) if args.ipv6_only else (4, 6))
    preflight(lab)
    if STATE_DIR.exists():
        log(f"a previous lab is up ({STATE_DIR}): taking it down first")
        down()
    STATE_DIR.mkdir(parents=True)
    os.chmod(STATE_DIR, 0o755)
    st = State()
    st.data.update({"profile": lab.profile, "families": sorted(lab.families),
                    "planned": [n.name for n in lab.nodes], "rr": bool(args.rr)})
    st.save()
    all_nodes = lab.nodes
    log(f"{describe(st)}")
    t0 = time.monotonic()
    try:
        log(f"ToR {TOR}: " + ", ".join(f"bridge {s.bridge} {s.gw4}/{s.net4.prefixlen} "
                                      f"{s.gw6}/{s.net6.prefixlen}" for s in lab.subnets)
            + f"; loopbacks {LOOP4} {LOOP6}; nftables counters on the bridge ports")
        tor, bridges = up_tor(st, lab)
        etcd_host = TOR4 if 4 in lab.families else TOR6
        log(f"etcd on {etcd_host} port 2379; IP pools from "
            f"{POOLS_YAML[lab.profile].relative_to(ROOT)}")
        etcd = up_etcd(st, tor, lab)
        node_ns = {}
        for node in all_nodes:
            log(f"{node.name}: dpdk-fwd (worker on core {node.worker_core}, control on "
                f"{node.control_core}), {' '.join(a for a in (node.ipv4, node.ipv6) if a)}, "
                f"uplink {node.uplink} on {node.subnet.bridge}")
            node_ns[node.name] = up_node(st, lab, node, bridges, etcd)
        if lab.profile == "bgp":
            if args.rr:
                log(f"route reflectors {' and '.join(RR_NODES)} (cluster ID {RR_CLUSTER}), "
                    f"then {RR_YAML.name} (mesh off)")
                for name in RR_NODES:
                    store_ctl(st, "bgp", "node", name, "route-reflector=true",
                              "--route-reflector-cluster-id", RR_CLUSTER)
                store_ctl(st, "apply", "-f", RR_YAML)
            # mesh: 2 other nodes + the ToR; reflectors: 2 reflectors (or the other reflector
            # and the client) + the ToR; two families each
            wait_bird_files(st, 6)
            # BGP once every dataplane is plugged in: a first SYN lost to a peer that is not
            # there yet costs a TCP retransmission back-off (1, 3, 7, 15, 31 s)
            log(f"BIRD: the ToR (AS {TOR_AS}), then each node on the file its daemon wrote "
                f"(AS {NODE_AS}, " + ("route reflectors" if args.rr else "node-to-node mesh")
                + " + the ToR)")
            up_tor_bird(st, tor, all_nodes)
            for node in all_nodes:
                up_node_bird(st, node, node_ns[node.name])
            log(f"BGP: every session Established in {wait_bgp(st, 60):.1f} s")
        else:
            t_reg = time.monotonic()
            wait_until(lambda: not registry_complete(st), 60, interval=0.2,
                       what="every node in every node's registry, with VTEPs and tunnel "
                            "addresses")
            log(f"node registry complete on every node in {time.monotonic() - t_reg:.1f} s")
        log(f"pods: {args.pods} per node through the CNI plugin (ADD)")
        add_pods(st, all_nodes, args.pods)
        t_conv = time.monotonic()
        try:
            wait_until(lambda: not converged(st, kinds=False)[0], 30, interval=0.2,
                       what="every node to route every block")
        except AssertionError as e:
            raise RuntimeError(f"{e}: missing {converged(st, kinds=False)[0]}") from None
        log(f"routes converged {time.monotonic() - t_conv:.1f} s after the last ADD")
        log(f"services: echo (NodePort {SVC_NODEPORT}), echo-sticky (ClientIP affinity), empty "
            "(no endpoint) into etcd; backends run tests/system/svc_peer.py")
        backends, t_svc = up_services(st)
        log(f"  backends {', '.join(f'{b[0]} ({b[1]})' for b in backends)}; every node serves "
            f"them {t_svc:.1f} s after the apply")
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - reported with the logs, then taken down
        log(f"bring-up failed: {e}")
        for p in st["processes"]:
            if not alive(p):
                logf = {"etcd": STATE_DIR / "etcd" / "etcd.log"}.get(p["name"])
                print(f"--- {p['name']} is not running; its log: ---")
                for f in [logf] if logf else STATE_DIR.glob(f"{p['name'].split()[0]}*.log"):
                    if f and f.exists():
                        print(f.read_text()[-3000:])
        if args.keep:
            log("--keep: leaving it up for a look; ./run.sh demo --down takes it down")
        else:
            log("taking it down")
            down()
        return 2
    t_up = time.monotonic() - t0
    st.data["up_seconds"] = round(t_up, 1)
    st.save()
    log(f"up in {t_up:.1f} s")
    return st, t_up


def check_and_report(st, args, t_up):
    log("checks (. passed, F failed, t not built yet) ", end="")
    t1 = time.monotonic()
    c = run_checks(st, args.tcp_mbytes << 20)
    t_checks = time.monotonic() - t1
    print(f" {t_checks:.1f} s", flush=True)
    log(f"idle CPU: sampling the lab's processes for {args.idle_seconds} s")
    time.sleep(2)
    cpu = idle_cpu(st, args.idle_seconds)
    total = sum(cpu.values())
    c.progress = False
    daemons = max([v for k, v in cpu.items() if k.endswith("dpdk-fwd")], default=0)
    dead = [p["name"] for p in st["processes"] if not alive(p)]
    # every process still runs after the checks, and idle daemons back off
    c.add("idle CPU", "whole lab", "-", daemons < 10 and not dead,
          (f"NOT RUNNING: {', '.join(dead)}; " if dead else "")
          + f"{total:.1f}% of one core over {args.idle_seconds} s (busiest daemon "
          f"{daemons:.1f}%): " + ", ".join(f"{k} {v:.1f}%" for k, v in cpu.items()))
    drops = {}
    for name, n in st["nodes"].items():
        try:
            d = {k: v for k, v in api_call(n["sock"], "stats")["drops"].items() if v}
        except (OSError, RuntimeError, ValueError) as e:
            d = {"stats unavailable": str(e)}
        if d:
            drops[name] = d

    print("\n" + c.table())
    failed = c.failed()
    print(f"\ndrops counted by the dataplanes: {drops or 'none'}")
    todo = [r for r in c.rows if r[4] == TODO]
    print(f"lab up in {t_up:.1f} s, checks in {t_checks:.1f} s; "
          f"{c.count(PASS)} passed, {failed} failed, {len(todo)} not built yet"
          + (f" ({'; '.join(sorted({r[5].split(';')[0] for r in todo}))})" if todo else "")
          + "\n")
    print(how_to_poke(st))
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--down", action="store_true", help="take the lab down")
    ap.add_argument("--status", action="store_true", help="show what is up")
    ap.add_argument("--pods", type=int, default=2, help="pods per node (default 2)")
    ap.add_argument("--tcp-mbytes", type=int, default=32, help="TCP transfer per check, MiB")
    ap.add_argument("--idle-seconds", type=int, default=10, help="idle CPU sample length")
    ap.add_argument("--keep", action="store_true", help="leave a failed bring-up up")
    ap.add_argument("--bgp", action="store_true",
                    help="the BGP profile: BIRD on the nodes and the ToR, pools without overlay")
    ap.add_argument("--rr", action="store_true",
                    help="with --bgp: node1 and node2 route reflectors, node-to-node mesh off")
    one = ap.add_mutually_exclusive_group()
    one.add_argument("--ipv4-only", action="store_true", help="nodes and pods with IPv4 only")
    one.add_argument("--ipv6-only", action="store_true", help="nodes and pods with IPv6 only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("lab: needs root (namespaces, taps, hugepages)")
    if args.down:
        return down()
    if args.status:
        return status()
    if not 1 <= args.pods <= 26:
        ap.error("--pods: 1 to 26 per node")
    if args.rr and not args.bgp:
        ap.error("--rr is a variant of the BGP profile: give --bgp too")
    if args.bgp and (args.ipv4_only or args.ipv6_only):
        ap.error("--bgp runs dual-stack only (its BIRD mesh is written for both families)")
    try:
        return up(args)
    except KeyboardInterrupt:
        # Ctrl-C reaches the lab's daemons too (they share the terminal's process group)
        print()
        log("interrupted: taking the lab down")
        down()
        return 130


if __name__ == "__main__":
    sys.exit(main())
