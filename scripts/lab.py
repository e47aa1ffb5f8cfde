#!/usr/bin/env python3
"""The lab: a three-node dpdk-fwd cluster on one machine, Calico-style.

  lab.py            take down a lab that is still up, bring a new one up, run the
                    checks, print the result table; the lab stays up (exit 1 if a
                    check failed)
  lab.py --down     take the lab down (a no-op when nothing is up)
  lab.py --status   what is up, and how to poke at it

Topology (every name below is fixed, so a fresh shell finds it again):

  lab-tor      a Linux router: loopbacks 1.1.1.1/32 and 2001:db8::1/128, bridge br0 with
               10.10.10.1/24 and fd00:10:10::1/64 (the node subnet), IP forwarding on;
               etcd on 10.10.10.1:2379 (the cluster's IPAM store); BIRD peering with
               every node (AS 64512, iBGP): it announces its loopbacks and learns the
               pod blocks, so pods reach the loopbacks and the ToR routes back to pods.
  lab-node1..3 one dpdk-fwd each (10.10.10.10-12, fd00:10:10::10-12): its uplink is a
               net_tap moved onto the ToR's bridge (node1-up ...), its host tap fwdhost
               carries the node addresses for the node's own stack (BIRD, etcd client);
               BGP routes imported from the kernel table; an `ipam` section on the etcd
               store writing the BIRD include file. BIRD: Calico's default, AS 64512,
               full node-to-node iBGP mesh (plus the ToR).
  lab-pod-1a.. the pods, two per node: network namespaces attached by the CNI plugin
               (build/cni-shim/dpdk-fwd-cni, run like kubelet runs it, through
               tests/system/cnitool.py) with the network list configs/cni/10-dpdk-fwd.conflist
               (a per-node copy that names the node's API socket).

IP pools 192.168.0.0/16 (/26 blocks) and fd00:10:244::/48 (/122 blocks) come from
configs/lab/ippools.yaml through `fwdctl apply -f`.

State (PIDs with their start times, namespaces, pods, paths), configs and logs live in
/run/dpdk-fwd-lab; `--down` works from it alone."""
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
POOLS_YAML = ROOT / "configs" / "lab" / "ippools.yaml"
XFER = ROOT / "tests" / "system" / "tcp_xfer.py"

TOR = "lab-tor"
BRIDGE = "br0"
TOR4, TOR6 = "10.10.10.1", "fd00:10:10::1"
TOR_MAC = "02:00:0a:0a:0a:01"
LOOP4, LOOP6 = "1.1.1.1", "2001:db8::1"
POOL4, POOL6 = ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("fd00:10:244::/48")
HOST_TAP = "fwdhost"
CALICO_GW6 = "fe80::ecee:eeff:feee:eeee"  # the pods' IPv6 gateway (IPv4: 169.254.1.1)
# The IPAM keys live under /calico, like Calico's own etcd data.
ETCD_PREFIX = "/calico"
K8S_NAMESPACE = "default"
NETWORK = "k8s-pod-network"

# Each daemon: 128 MiB of hugepages, tables sized for a lab (thousands of routes, not
# the default 131072 per family), so three nodes leave room for others on the machine.
MEMORY_MB = 128
TABLES = {"ipv4_routes": 16384, "ipv6_routes": 16384, "ipv4_tbl8s": 2048, "ipv6_tbl8s": 8192}
# Idle back-off of the workers: three polling daemons share the machine's cores. 1 ms
# is the longest a first packet after a quiet period waits in each dataplane. Measured
# here (lab idle, 30 s): the whole lab uses 5.8 % of one core with 1 ms and the store
# polled every second; 7.6 % polled every 500 ms, 10.4 % with the default 500 us sleep
# on top; 4.1 % with 5 ms sleeps (what is left is the control threads' 10 ms tick).
IDLE = {"enabled": True, "spin_polls": 100, "pause_polls": 1000, "max_sleep_us": 1000}
IPAM_SYNC_MS = 1000


class Node:
    def __init__(self, i, cores):
        self.i = i
        self.name = f"node{i}"
        self.ns = f"lab-node{i}"
        self.ipv4 = f"10.10.10.{9 + i}"
        self.ipv6 = f"fd00:10:10::{9 + i}"  # ::10 .. ::12, as written
        self.mac = "02:00:0a:0a:0a:%02x" % (9 + i)
        self.uplink = f"{self.name}-up"
        # the worker polls on its own core; main and control (mostly asleep) on the next
        self.worker_core = cores[(i - 1) % len(cores)]
        self.control_core = cores[i % len(cores)]


def nodes(count=3):
    cores = sorted(os.sched_getaffinity(0))
    return [Node(i, cores) for i in range(1, count + 1)]


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


def node_conflist(node, sock):
    """The network list as the node's kubelet would find it in /etc/cni/net.d, with this
    node's daemon socket."""
    conf = json.loads(CONFLIST.read_text())
    for p in conf["plugins"]:
        if p.get("type") == "dpdk-fwd-cni":
            p["dpdk_fwd_socket"] = sock
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
            log(f"pods deleted through the CNI plugin (DEL): {len(st['pods'])}; "
                f"addresses still held in IPAM: {used}")
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

def preflight():
    missing = [str(p) for p in (DAEMON, FWDCTL, BIRDC, Etcd.BINARY, POOLS_YAML)
               if not os.path.exists(p)]
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
    need = 3 * MEMORY_MB // 2
    if free < need:
        raise SystemExit(f"lab: {free} free 2 MiB hugepages, {need} needed (3 x {MEMORY_MB} MiB)")


def up_tor(st):
    st.add("namespaces", TOR)
    tor = Netns(TOR)
    # the ToR: no IPv6 on its bridge ports (the uplink taps), forwarding on
    tor.run("sysctl -qw net.ipv6.conf.default.disable_ipv6=1")
    tor.run("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
    br = Bridge(tor, BRIDGE)
    # a fixed MAC: a bridge otherwise takes its lowest port's, and changes it as the nodes'
    # uplinks join, under the neighbor entries the dataplanes already hold for the ToR
    tor.run(f"ip link set {BRIDGE} address {TOR_MAC}")
    tor.run(f"sysctl -qw net.ipv6.conf.{BRIDGE}.accept_dad=0 "
            f"net.ipv6.conf.{BRIDGE}.disable_ipv6=0")
    tor.run(f"ip addr add {TOR4}/24 dev {BRIDGE}")
    tor.run(f"ip addr add {TOR6}/64 dev {BRIDGE} nodad")
    tor.run(f"ip addr add {LOOP4}/32 dev lo")
    tor.run(f"ip addr add {LOOP6}/128 dev lo")
    return tor, br


def up_etcd(st, tor):
    etcd = Etcd(STATE_DIR, "etcd", ns=tor, host=TOR4)
    try:
        etcd.start()
    finally:
        if etcd.proc is not None:
            record_process(st, "etcd", "etcd", etcd.proc)
    st.data["etcd"] = {"url": etcd.url, "spec": etcd.spec(ETCD_PREFIX), "dir": str(etcd.dir)}
    st.save()
    r = etcd.run([FWDCTL, "apply", "-f", POOLS_YAML, "--store", st["etcd"]["spec"]])
    if r.returncode != 0:
        raise RuntimeError(f"fwdctl apply -f {POOLS_YAML}: {r.stdout}{r.stderr}")
    for line in r.stdout.splitlines():
        log(f"  {line}")
    return etcd


def node_peers(node, all_nodes):
    peers = [Peer(n.name, n.ipv4, n.ipv6) for n in all_nodes if n is not node]
    return peers + [Peer("tor", TOR4, TOR6)]


def up_node(st, node, br, etcd):
    st.add("namespaces", node.ns)
    ns = Netns(node.ns)
    include = STATE_DIR / f"{node.name}.ipam.conf"
    bird_sock = STATE_DIR / f"{node.name}.bird.ctl"  # fwdlab.Bird's socket path
    prefix = f"lab-{node.name}"
    extra = uplink_daemon_config(node.name, node.worker_core, node.mac, f"{node.ipv4}/24",
                                 f"{node.ipv6}/64", extra={
        "eal": {"file_prefix": prefix, "in_memory": True, "memory_mb": MEMORY_MB},
        "host": {"tap": HOST_TAP},
        "bgp": {"table": 254, "protocols": [12]},
        "ipam": {"store": etcd.spec(ETCD_PREFIX), "sync_ms": IPAM_SYNC_MS,
                 "bird_include": str(include), "bird_socket": str(bird_sock)},
        "idle": IDLE,
        "tables": TABLES,
    })
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
    br.adopt(node.uplink, ns)
    conflist = STATE_DIR / "cni" / node.name / CONFLIST.name
    conflist.parent.mkdir(parents=True, exist_ok=True)
    conflist.write_text(json.dumps(node_conflist(node, d.sock), indent=2))
    st.data["nodes"][node.name] = {
        "netns": node.ns, "ipv4": node.ipv4, "ipv6": node.ipv6, "sock": d.sock,
        "config": str(d.config), "log": str(d.log), "include": str(include),
        "conflist": str(conflist), "uplink": node.uplink, "worker_core": node.worker_core}
    st.save()
    return ns


def up_node_bird(st, node, ns, all_nodes):
    """BIRD on a node whose dataplane is up and plugged in: the include file is there (the
    daemon writes it at start) and every peer is reachable from its first connect."""
    n = st["nodes"][node.name]
    bgp = NodeBgp(node.ipv4, node.ipv6, [], [], node_peers(node, all_nodes),
                  include=n["include"], debug="states")
    bird = Bird(STATE_DIR, node.name, ns, bgp.render())
    try:
        bird.start()
    finally:
        if bird.proc is not None:
            record_process(st, "bird", f"{node.name} bird", bird.proc, sock=bird.sock)
    n.update({"bird_sock": bird.sock, "bird_log": str(bird.log), "protocols": bgp.protocols()})
    st.save()


def up_tor_bird(st, tor, all_nodes):
    bgp = NodeBgp(f"{TOR4}/24", f"{TOR6}/64", [f"{LOOP4}/32"], [f"{LOOP6}/128"],
                  [Peer(n.name, n.ipv4, n.ipv6) for n in all_nodes], debug="states")
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


# ---------------------------------------------------------------- checks

class Checks:
    def __init__(self):
        self.rows = []
        self.progress = True

    def add(self, check, subject, family, ok, detail):
        self.rows.append((check, subject, family, bool(ok), detail))
        if self.progress:
            print("." if ok else "F", end="", flush=True)

    def run(self, check, subject, family, fn):
        try:
            ok, detail = fn()
        except Exception as e:  # noqa: BLE001 - a check that breaks is a failed check
            ok, detail = False, f"error: {e}".splitlines()[0][:160]
        self.add(check, subject, family, ok, detail)
        return ok

    def failed(self):
        return sum(1 for r in self.rows if not r[3])

    def table(self):
        head = ("check", "between / what", "fam", "result", "detail")
        w = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(3)]
        out = [f"{head[0]:<{w[0]}}  {head[1]:<{w[1]}}  {head[2]:<{w[2]}}  {head[3]:<6}  {head[4]}",
               f"{'-' * w[0]}  {'-' * w[1]}  {'-' * w[2]}  ------  {'-' * 6}"]
        for check, subject, fam, ok, detail in self.rows:
            out.append(f"{check:<{w[0]}}  {subject:<{w[1]}}  {fam:<{w[2]}}  "
                       f"{'PASS' if ok else 'FAIL':<6}  {detail}")
        return "\n".join(out)


def ping(ns, addr, count=3):
    """count echo requests 0.2 s apart; PASS when every one is answered."""
    fam = "-6" if ":" in addr else "-4"
    r = ns.run(f"ping {fam} -c {count} -i 0.2 -W 2 {addr}", check=False, timeout=30)
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


def converged(st):
    """Missing routes per node: every other node's blocks and the ToR's loopbacks by BGP,
    its own as ipam blackholes."""
    blocks = store_blocks(st)
    missing = {}
    for name, n in st["nodes"].items():
        bgp, ipam = routes(n["sock"], "bgp"), routes(n["sock"], "ipam")
        want_bgp = [b for b, owner in blocks.items() if owner != name] + [f"{LOOP4}/32",
                                                                          f"{LOOP6}/128"]
        want_ipam = [b for b, owner in blocks.items() if owner == name]
        miss = [b for b in want_bgp if b not in bgp] + [b for b in want_ipam if b not in ipam]
        if miss:
            missing[name] = miss
    return missing, blocks


def run_checks(st, tcp_bytes):
    c = Checks()
    pods = {p["name"]: p for p in st["pods"]}
    ns = {name: NsRef(p["netns"]) for name, p in pods.items()}

    # BGP: every session of every node and of the ToR
    for name, n in list(st["nodes"].items()) + [("tor", st["tor"])]:
        def bgp_up(n=n, name=name):
            got = bird_ref(name, n).protocols()
            up = [p for p in n["protocols"] if got.get(p, ("", ""))[1].startswith("Established")]
            down = sorted(set(n["protocols"]) - set(up))
            return not down, (f"{len(up)}/{len(n['protocols'])} sessions Established"
                              + (f"; not: {', '.join(down)}" if down else ""))
        c.run("bgp sessions", name, "4+6", bgp_up)

    # routes: each dataplane has the others' blocks and the loopbacks (BGP), its own (ipam)
    t0 = time.monotonic()
    missing, blocks = converged(st)
    while missing and time.monotonic() - t0 < 20:
        time.sleep(0.2)
        missing, blocks = converged(st)
    for name, n in st["nodes"].items():
        mine = sorted(b for b, o in blocks.items() if o == name)
        c.add("routes", name, "4+6", name not in missing,
              f"own blocks {' '.join(mine)}; {len(blocks) - len(mine)} others' blocks + "
              f"2 loopbacks by BGP" if name not in missing else f"missing {missing[name]}")

    # each pod: one address of each family from the pools, /32 and /128 on eth0, as the CNI
    # result says and as IPAM holds them for the pod; Calico's gateways as default routes
    for name, p in pods.items():
        def addrs(name=name, p=p):
            v4, v6 = pod_addresses(ns[name])
            problems = []
            if not (len(v4) == 1 and v4[0].endswith("/32")
                    and ipaddress.ip_interface(v4[0]).ip in POOL4):
                problems.append(f"IPv4 {v4} (want one /32 from {POOL4})")
            if not (len(v6) == 1 and v6[0].endswith("/128")
                    and ipaddress.ip_interface(v6[0]).ip in POOL6):
                problems.append(f"IPv6 {v6} (want one /128 from {POOL6})")
            if sorted(v4 + v6) != sorted(p.get("ips", [])):
                problems.append(f"the CNI result says {p.get('ips')}")
            held = ipam_show(st, "--handle", f"{NETWORK}.{p['cid']}")["addresses"]
            held = sorted(a["address"] for a in held if a["node"] == p["node"]
                          and a["pod"] == p["name"] and a["namespace"] == K8S_NAMESPACE)
            if held != sorted(str(ipaddress.ip_interface(a).ip) for a in v4 + v6):
                problems.append(f"IPAM handle holds {held}")
            r4 = ns[name].run("ip -4 route show default", check=False).stdout
            r6 = ns[name].run("ip -6 route show default", check=False).stdout
            if "via 169.254.1.1 dev eth0" not in r4 or f"via {CALICO_GW6} dev eth0" not in r6:
                problems.append(f"default routes {r4.strip()!r} {r6.strip()!r}")
            return not problems, f"eth0 {' '.join(v4 + v6)}" + (
                "" if not problems else "; " + "; ".join(problems))
        c.run("pod addresses", f"{name} ({p['node']})", "4+6", addrs)

    def addr_of(name, fam):
        v4, v6 = pod_addresses(ns[name])
        return str(ipaddress.ip_interface((v4 if fam == "IPv4" else v6)[0]).ip)

    by_node = {}
    for name, p in pods.items():
        by_node.setdefault(p["node"], []).append(name)
    names = sorted(by_node)
    same = [(v[0], v[1]) for v in by_node.values() if len(v) > 1]
    # across nodes: a ring, node1 -> node2 -> node3 -> node1 (all pairs get a ping below)
    cross = [(by_node[a][0], by_node[names[(i + 1) % len(names)]][0])
             for i, a in enumerate(names)] if len(names) > 1 else []
    # a pod of each node reaches the ToR's loopbacks (learned from the ToR by BGP)
    for node in names:
        a = by_node[node][0]
        for fam, dst in (("v4", LOOP4), ("v6", LOOP6)):
            c.run("ping ToR loop", f"{a} -> {dst}", fam, lambda a=a, dst=dst: ping(ns[a], dst))

    port = 5200
    for kind, pairs in (("same node", same), ("across nodes", cross)):
        for a, b in pairs:
            for fam in ("IPv4", "IPv6"):
                c.run(f"ping {kind}", f"{a} -> {b}", fam.replace("IP", ""),
                      lambda a=a, b=b, fam=fam: ping(ns[a], addr_of(b, fam)))
        for a, b in pairs:
            for fam in ("IPv4", "IPv6"):
                port += 1
                c.run(f"tcp {kind}", f"{a} -> {b}", fam.replace("IP", ""),
                      lambda a=a, b=b, fam=fam, port=port: tcp(ns[a], ns[b], addr_of(b, fam),
                                                               port, tcp_bytes))

    # every ordered pair of pods, both families: one ping each
    def all_pairs(fam):
        bad, n = [], 0
        for a, b in itertools.permutations(sorted(pods), 2):
            n += 1
            ok, _ = ping(ns[a], addr_of(b, fam), count=1)
            if not ok:
                bad.append(f"{a}->{b}")
        return not bad, (f"{n - len(bad)}/{n} pairs answer"
                         + (f"; failed: {' '.join(bad)}" if bad else ""))
    for fam in ("IPv4", "IPv6"):
        c.run("ping all pairs", f"{len(pods)} pods", fam.replace("IP", ""),
              lambda fam=fam: all_pairs(fam))

    # packet capture on a pod's port (fwdctl capture): its echoes both ways, both families
    if cross:
        a, b = cross[0]
        c.run("capture", f"{a} ({pods[a]['node']})", "4+6",
              lambda a=a, b=b: capture(st, pods[a], ns[a], addr_of(b, "IPv4"),
                                       addr_of(b, "IPv6")))

    # the IPAM store is consistent: nothing leaked or doubled
    def ipam_check():
        r = sh(f"ip netns exec {TOR} {FWDCTL} ipam check --store '{st['etcd']['spec']}'",
               check=False)
        used = sum(1 for p in pods.values() for _ in p.get("ips", []))
        return r.returncode == 0, (f"clean: {used} addresses, {len(blocks)} blocks"
                                   if r.returncode == 0 else r.stdout.strip()[-160:])
    c.run("ipam check", "etcd store", "4+6", ipam_check)
    return c


def capture(st, pod, ns, dst4, dst6):
    """fwdctl capture's ops on the pod's endpoint while it pings dst4 and dst6: the pcap the
    daemon writes holds the requests it sent and the replies it got, IPv4 and IPv6."""
    from scapy.all import ICMP, IP, IPv6, ICMPv6EchoReply, ICMPv6EchoRequest, rdpcap
    sock = st["nodes"][pod["node"]]["sock"]
    out = STATE_DIR / f"capture-{pod['name']}.pcap"
    cap = api_call(sock, "capture.start", {"port": f"{NETWORK}.{pod['cid']}.eth0",
                                           "file": str(out)})
    ns.run(f"ping -4 -c 2 -i 0.2 -W 2 {dst4}", check=False, timeout=30)
    ns.run(f"ping -6 -c 2 -i 0.2 -W 2 {dst6}", check=False, timeout=30)
    done = api_call(sock, "capture.stop", {"id": cap["id"]})
    pkts = rdpcap(str(out))
    req4 = sum(1 for p in pkts if ICMP in p and p[ICMP].type == 8 and p[IP].dst == dst4)
    rep4 = sum(1 for p in pkts if ICMP in p and p[ICMP].type == 0 and p[IP].src == dst4)
    req6 = sum(1 for p in pkts if ICMPv6EchoRequest in p and p[IPv6].dst == dst6)
    rep6 = sum(1 for p in pkts if ICMPv6EchoReply in p and p[IPv6].src == dst6)
    ok = (req4, rep4, req6, rep6) == (2, 2, 2, 2) and done["packets"] == len(pkts)
    return ok, (f"{len(pkts)} frames in {shown(out)}: echo {req4}+{rep4} (v4) {req6}+{rep6} (v6) "
                f"of 2+2 each")


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
    other = next((p for p in pods if p["node"] != "node1"), pods[-1]) if pods else None
    dst = other["ips"][0].split("/")[0] if other and other.get("ips") else "192.168.0.64"
    fwdctl = shown(FWDCTL)
    cmds = [
        (f"ip netns exec lab-pod-1a ping {dst}", "pod-1a (node1) to a pod on another node"),
        ("ip netns exec lab-pod-1a ip addr", "a pod's side: eth0, /32 and /128, routes"),
        (f"{fwdctl} -s {n1['sock']} endpoint list", "node1's dataplane: route list, stats, node"),
        (f"birdc -s {n1['bird_sock']} show protocols", "node1's BGP sessions (show route)"),
        (f"ip netns exec {TOR} {fwdctl} ipam show --store {st['etcd']['spec']}",
         "pools, blocks, nodes"),
        (f"ip netns exec {TOR} ip route", "the ToR learned the pod blocks by BGP"),
        ("./run.sh demo --status", "what is up; configs and logs in " + str(STATE_DIR)),
        ("./run.sh demo --down", "take it all down"),
    ]
    w = max(len(c) for c, _ in cmds if len(c) < 70)
    return "\n".join(["The lab stays up. Poke at it:"] + [
        f"  {c:<{w}}  # {why}" if len(c) <= w else f"  {c}\n  {'':<{w}}  # {why}"
        for c, why in cmds])


def status():
    if not STATE.exists():
        log("nothing is up")
        return 0
    st = State.load()
    print(f"lab up since {st['created']} (state {STATE})")
    for p in st["processes"]:
        print(f"  {p['name']:<16} pid {p['pid']:<8} {'running' if alive(p) else 'NOT RUNNING'}")
    for p in st["pods"]:
        print(f"  {p['name']:<16} on {p['node']}: {' '.join(p.get('ips', []))}")
    if "bird_sock" in st["nodes"].get("node1", {}) and st["etcd"]:
        print(how_to_poke(st))
    return 0


def up(args):
    preflight()
    if STATE_DIR.exists():
        log(f"a previous lab is up ({STATE_DIR}): taking it down first")
        down()
    STATE_DIR.mkdir(parents=True)
    os.chmod(STATE_DIR, 0o755)
    st = State()
    st.save()
    all_nodes = nodes()
    t0 = time.monotonic()
    try:
        log(f"ToR {TOR}: bridge {BRIDGE} {TOR4}/24 {TOR6}/64, loopbacks {LOOP4} {LOOP6}")
        tor, br = up_tor(st)
        log(f"etcd on {TOR4}:2379; IP pools from {POOLS_YAML.relative_to(ROOT)}")
        etcd = up_etcd(st, tor)
        node_ns = {}
        for node in all_nodes:
            log(f"{node.name}: dpdk-fwd (worker on core {node.worker_core}, control on "
                f"{node.control_core}), {node.ipv4} {node.ipv6}, uplink {node.uplink} on {BRIDGE}")
            node_ns[node.name] = up_node(st, node, br, etcd)
        # BGP once every dataplane is plugged in: a first SYN lost to a peer that is not
        # there yet costs a TCP retransmission back-off (1, 3, 7, 15, 31 s)
        log("BIRD: the ToR, then each node (AS 64512, node-to-node mesh + the ToR)")
        up_tor_bird(st, tor, all_nodes)
        for node in all_nodes:
            up_node_bird(st, node, node_ns[node.name], all_nodes)
        log(f"BGP: every session Established in {wait_bgp(st, 60):.1f} s")
        log(f"pods: {args.pods} per node through the CNI plugin (ADD)")
        add_pods(st, all_nodes, args.pods)
        t_conv = time.monotonic()
        wait_until(lambda: not converged(st)[0], 30, interval=0.2,
                   what="every node to route every block")
        log(f"routes converged {time.monotonic() - t_conv:.1f} s after the last ADD")
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

    log("checks (. passed, F failed) ", end="")
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
    print(f"lab up in {t_up:.1f} s, checks in {t_checks:.1f} s; "
          f"{len(c.rows) - failed} passed, {failed} failed\n")
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
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("lab: needs root (namespaces, taps, hugepages)")
    if args.down:
        return down()
    if args.status:
        return status()
    if not 1 <= args.pods <= 26:
        ap.error("--pods: 1 to 26 per node")
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
