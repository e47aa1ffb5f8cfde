"""Pods, routers and daemons for the system tests and the demo: network
namespaces, the real dpdk-fwd process, fwdctl over its API socket. Every
name carries a per-run prefix; every object has a cleanup."""
import hashlib
import json
import os
import pathlib
import socket
import signal
import subprocess
import time
import types
import uuid


ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("FWD_BUILD", ROOT / "build"))
DAEMON = BUILD / "dpdk-fwd" / "app" / "dpdk-fwd"
FWDCTL = BUILD / "control" / "fwdctl"
RUN_ID = uuid.uuid4().hex[:6]


def sh(cmd, check=True, timeout=60, **kw):
    """Runs a shell command; returns CompletedProcess with text output."""
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"command failed ({r.returncode}): {cmd}\n{r.stdout}\n{r.stderr}")
    return r


def wait_until(cond, timeout, interval=0.02, what="condition"):
    """Polls cond() every interval seconds until it is true; returns the seconds it took
    (measured from the call). Raises AssertionError after timeout."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ippools_yaml(pool4, pool6, mode4=None, mode6=None):
    """The two natOutgoing pools of a test cluster as Calico IPPool YAML (blockSize 26 and 122),
    with vxlanMode when given."""
    docs = []
    for f, cidr, size, mode in ((4, pool4, 26, mode4), (6, pool6, 122, mode6)):
        docs.append(f"""apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv{f}-ippool
spec:
  cidr: {cidr}
  blockSize: {size}
""" + (f"  vxlanMode: {mode}\n" if mode is not None else "") + "  natOutgoing: true\n")
    return "---\n".join(docs)


def calico_veth_pod(host, pod, host_if, v4, v6, mtu=None):
    """A pod behind a veth on a Linux node, wired as Felix wires one: the host side
    `host_if` with MAC ee:ee:ee:ee:ee:ee, proxy ARP and NDP proxy, routes to the pod's /32
    and /128; the pod's eth0 with those addresses, 169.254.1.1 scope link, the default routes
    via it and via the host side's link-local fe80::ecee:eeff:feee:eeee (EUI-64 of the MAC).
    No DAD on either side, so both answer at once. mtu: both sides' MTU."""
    host.run(f"ip link add {host_if} type veth peer name eth0 netns {pod.name}")
    host.run(f"sysctl -qw net.ipv6.conf.{host_if}.accept_dad=0 net.ipv4.conf.{host_if}.proxy_arp=1 "
             f"net.ipv6.conf.{host_if}.proxy_ndp=1")
    host.run(f"ip link set {host_if} address ee:ee:ee:ee:ee:ee up")
    host.run(f"ip route add {v4}/32 dev {host_if}")
    host.run(f"ip -6 route add {v6}/128 dev {host_if}")
    if mtu:
        host.run(f"ip link set {host_if} mtu {mtu}")
        pod.run(f"ip link set eth0 mtu {mtu}")
    pod.run("sysctl -qw net.ipv6.conf.eth0.accept_dad=0")
    pod.run("ip link set eth0 up")
    pod.run(f"ip addr add {v4}/32 dev eth0")
    pod.run(f"ip -6 addr add {v6}/128 dev eth0 nodad")
    pod.run("ip route add 169.254.1.1 dev eth0 scope link")
    pod.run("ip route add default via 169.254.1.1 dev eth0")
    pod.run("ip -6 route add default via fe80::ecee:eeff:feee:eeee dev eth0")


def vtep_mac(node, v6):
    """Calico's derived VTEP MAC: 0x66, then SHA-1 of the node name ("<node>-v6")."""
    h = hashlib.sha1((node + ("-v6" if v6 else "")).encode()).digest()
    return ":".join(f"{b:02x}" for b in bytes([0x66]) + h[:5])


IPAM_LOAD = BUILD / "ipam" / "tools" / "ipam_load"


def ipam_allocate(etcd, spec, node, prefix, count=1):
    """count dual-stack allocations for node in the store (ipam_load, where etcd is
    reachable); returns [[v4, v6], ...]."""
    r = etcd.run([IPAM_LOAD, "--store", spec, "--node", node, "--count", count,
                  "--handle-prefix", prefix, "--dual", "--report-fd", "1"])
    assert r.returncode == 0, r.stdout + r.stderr
    return [line.split()[1:] for line in r.stdout.splitlines() if line.startswith(prefix + "-")]


def felix_vxlan_devices(ns, node, addr4, addr6, mtu4, mtu6):
    """A Linux node (namespace ns, its underlay on eth0 with addr4 / addr6) set up as Felix sets
    one up in VXLAN mode: forwarding on, rp_filter off, vxlan.calico and vxlan-v6.calico (VNI
    4096, port 4789, the derived VTEP MACs of `node`, no learning) with MTUs mtu4 / mtu6."""
    for k in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
              "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
        ns.run(f"sysctl -qw {k}")
    for dev, v6, addr, mtu in (("vxlan.calico", False, addr4, mtu4),
                               ("vxlan-v6.calico", True, addr6, mtu6)):
        ns.run(f"ip link add {dev} address {vtep_mac(node, v6)} type vxlan id 4096 "
               f"dstport 4789 local {addr} dev eth0 nolearning")
        ns.run(f"sysctl -qw net/ipv6/conf/{dev}/accept_dad=0")  # a dot in the name: slashes
        ns.run(f"ip link set {dev} mtu {mtu} up")


def felix_vxlan_peer(ns, v6, tunnel_addr, mac, node_addr, blocks):
    """What Felix writes on a Linux node for another node of the family: a permanent neighbour
    for its tunnel address with its VTEP MAC, an FDB entry sending that MAC to its node
    address, and its blocks via the tunnel address onlink."""
    dev, fam = ("vxlan-v6.calico", "-6") if v6 else ("vxlan.calico", "-4")
    ns.run(f"ip {fam} neigh replace {tunnel_addr} lladdr {mac} dev {dev} nud permanent")
    ns.run(f"bridge fdb replace {mac} dev {dev} dst {node_addr}")
    for b in blocks:
        ns.run(f"ip {fam} route replace {b} via {tunnel_addr} dev {dev} onlink")


def record_results(name, results):
    """Prints measured numbers and, when FWD_RESULTS_DIR is set, writes them to
    $FWD_RESULTS_DIR/<name>.json."""
    print(f"\n{name}: {json.dumps(results, sort_keys=True)}")
    d = os.environ.get("FWD_RESULTS_DIR")
    if d:
        pathlib.Path(d).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(d) / f"{name}.json").write_text(json.dumps(results, indent=2, sort_keys=True))


def stop_process(proc, timeout):
    """SIGTERM, then SIGKILL after timeout (by PID, never by name). False when there was
    nothing running to stop."""
    if proc is None or proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True


class Netns:
    """A network namespace standing in for a pod or a router."""

    def __init__(self, name):
        self.name = name
        self.path = f"/var/run/netns/{name}"
        sh(f"ip netns add {name}")
        sh(f"ip -n {name} link set lo up")

    def run(self, cmd, check=True, timeout=60):
        return sh(f"ip netns exec {self.name} {cmd}", check=check, timeout=timeout)

    def popen(self, cmd, **kw):
        return subprocess.Popen(f"exec ip netns exec {self.name} {cmd}", shell=True, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def delete(self):
        sh(f"ip netns del {self.name}", check=False)


class Daemon:
    """One dpdk-fwd process with its own config, socket and file prefix."""

    def __init__(self, tmp, name, workers=(1,), extra=None, idle=None, netns=None):
        """netns: a Netns to run the daemon in (ip netns exec); its uplink net_tap and
        host tap then appear in that namespace. The API socket stays on the shared
        filesystem, so fwdctl works from anywhere."""
        self.tmp = pathlib.Path(tmp)
        self.name = name
        self.netns = netns
        self.sock = str(self.tmp / f"{name}.sock")
        self.prefix = f"fwdt{RUN_ID}{name}"
        cfg = {
            "node_name": name,
            "eal": {"file_prefix": self.prefix, "in_memory": True, "memory_mb": 256},
            "cores": {"main": 0, "control": 0, "workers": [{"core": c} for c in workers]},
            "node": {"ipv4": "10.10.10.10/24", "ipv6": "fd00:10:10::10/64", "mtu": 1500},
            "api_socket": self.sock,
            "run_dir": str(self.tmp / f"{name}-run"),
            # the endpoint record a restart takes the pods back from: the daemon's own
            "state_dir": str(self.tmp / f"{name}-state"),
            "mbufs": 8191,
            # the shared tap of kernel pods: its own name, so daemons of parallel runs
            # in one namespace do not clash
            "pod_tap": f"fwp{RUN_ID}{name}"[:15],
        }
        if idle:
            cfg["idle"] = idle
        if extra:
            cfg.update(extra)
        self.config = self.tmp / f"{name}.json"
        self.config.write_text(json.dumps(cfg, indent=2))
        self.log = self.tmp / f"{name}.log"
        self.proc = None

    def start(self, timeout=30):
        logf = open(self.log, "w")
        argv = [str(DAEMON), "--config", str(self.config)]
        if self.netns is not None:
            # ip netns exec execs the daemon: proc.pid is the daemon's pid
            argv = ["ip", "netns", "exec", self.netns.name, *argv]
        self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dpdk-fwd exited {self.proc.returncode}:\n{self.log.read_text()}")
            r = subprocess.run([str(FWDCTL), "-s", self.sock, "version"], capture_output=True)
            if r.returncode == 0:
                return self
            time.sleep(0.2)
        raise AssertionError(f"dpdk-fwd did not answer on {self.sock}:\n{self.log.read_text()}")

    def ctl(self, *args, check=True):
        """fwdctl --json <args>; returns the parsed result."""
        r = subprocess.run([str(FWDCTL), "-s", self.sock, "--json", *map(str, args)],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"fwdctl {' '.join(map(str, args))}: {r.returncode}\n{r.stderr}")
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else r

    def add_pod(self, ns, ipv4=None, ipv6=None, mtu=None, name=None, kind=None):
        """kind: the port kind; None: FWD_POD_KIND from the environment, else the
        daemon's default (so the kernel-pod tests run on either kind)."""
        args = ["endpoint", "add", "--id", name or ns.name, "--netns", ns.name]
        kind = kind or os.environ.get("FWD_POD_KIND")
        if kind:
            args += ["--kind", kind]
        if ipv4:
            args += ["--ipv4", ipv4]
        if ipv6:
            args += ["--ipv6", ipv6]
        if mtu:
            args += ["--mtu", mtu]
        return self.ctl(*args)

    def stats(self):
        return self.ctl("stats")

    def idle_for(self, seconds=5):
        """The daemon left alone for `seconds`: its share of a core over them, and each
        worker's blocks and sleeps in them ({worker: (blocks, sleeps)})."""
        before = {w["worker"]: w for w in self.stats()["workers"]}
        cpu0, t0 = self.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        share = (self.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        after = {w["worker"]: w for w in self.stats()["workers"]}
        return share, {w: (a["blocks"] - before[w]["blocks"], a["sleeps"] - before[w]["sleeps"])
                       for w, a in after.items()}

    def cpu_seconds(self):
        """utime + stime of the daemon, in seconds, from /proc."""
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self, timeout=20, keep_tap=False):
        """SIGTERM, as an operator's restart: the pods keep their interfaces and the shared
        pod tap stays, persistent, for a next daemon on this config. Unless keep_tap, the
        shared tap is then deleted (with the macvlans on it), as an uninstall would."""
        if not stop_process(self.proc, timeout):
            return
        for f in pathlib.Path("/dev/hugepages").glob(f"{self.prefix}*"):
            f.unlink()
        if not keep_tap:
            self.remove_tap()

    def remove_tap(self):
        """Deletes the shared pod tap a stop left (and the macvlans on it), if any."""
        tap = json.loads(self.config.read_text()).get("pod_tap")
        if tap:
            where = f"-n {self.netns.name} " if self.netns is not None else ""
            sh(f"ip {where}link del {tap}", check=False)


class Api:
    """The daemon's API socket, held open: one call per line, timed without
    fwdctl's process start."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.next_id = 1

    def call(self, op, **args):
        req = {"id": self.next_id, "op": op, "args": args}
        self.next_id += 1
        self.file.write((json.dumps(req) + "\n").encode())
        self.file.flush()
        reply = json.loads(self.file.readline())
        if not reply["ok"]:
            raise AssertionError(f"{op} {args}: {reply['error']}")
        return reply["result"]

    def error(self, op, **args):
        """The error code of a call that must fail."""
        req = {"id": self.next_id, "op": op, "args": args}
        self.next_id += 1
        self.file.write((json.dumps(req) + "\n").encode())
        self.file.flush()
        reply = json.loads(self.file.readline())
        assert not reply["ok"], f"{op} {args} succeeded: {reply}"
        return reply["error"]["code"]

    def close(self):
        self.file.close()
        self.sock.close()


def check_config(tmp, section, value):
    """dpdk-fwd --check-config on a minimal node config with `section` set to value; returns
    the CompletedProcess (exit 2 and the message on stderr when refused)."""
    cfg = {"node_name": "n", "node": {"ipv4": "10.0.0.1/24", "mtu": 1500},
           "cores": {"main": 0, "control": 0, "workers": [{"core": 1}]},
           "api_socket": str(pathlib.Path(tmp) / "s"), section: value}
    path = pathlib.Path(tmp) / "c.json"
    path.write_text(json.dumps(cfg))
    return subprocess.run([str(DAEMON), "--check-config", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)


class Bridge:
    """A Linux bridge inside a namespace: the ToR switch the nodes' uplinks plug into.
    Deleted with its namespace."""

    def __init__(self, ns, name="br0"):
        self.ns = ns
        self.name = name
        ns.run(f"ip link add {name} type bridge")
        # no STP, no forwarding delay: ports forward as soon as they are up
        ns.run(f"ip link set {name} type bridge stp_state 0 forward_delay 0")
        ns.run(f"sysctl -qw net.ipv6.conf.{name}.disable_ipv6=1")
        ns.run(f"ip link set {name} up")

    def enslave(self, ifname):
        """Puts an interface that already is in the bridge's namespace on the bridge."""
        self.ns.run(f"ip link set {ifname} master {self.name}")
        self.ns.run(f"ip link set {ifname} up")

    def plug_veth(self, node, port, ifname="eth0"):
        """A veth pair: `port` on the bridge, `ifname` (down, no address) in node."""
        self.ns.run(f"ip link add {port} type veth peer name {ifname} netns {node.name}")
        self.enslave(port)

    def adopt(self, ifname, src, new_mac=True):
        """Moves ifname from namespace src (a Netns, or None for the root namespace)
        into the bridge's namespace and onto the bridge.

        new_mac: give the interface a fresh random MAC first. DPDK's net_tap copies the
        port's MAC onto the kernel side of its tap; enslaved with that MAC, the bridge
        takes it for one of its own (a permanent local fdb entry) and swallows every
        frame sent to the dataplane instead of forwarding it to the port."""
        pre = f"ip -n {src.name}" if src is not None else "ip"
        sh(f"{pre} link set {ifname} netns {self.ns.name}")
        if new_mac:
            mac = "02:fe:" + ":".join(f"{b:02x}" for b in os.urandom(4))
            self.ns.run(f"ip link set {ifname} address {mac}")
        self.enslave(ifname)


def uplink_daemon_config(tag, core, mac, ipv4, ipv6, mtu=1500, extra=None):
    """extra= for a Daemon that runs in a node namespace with one worker on `core`
    polling a net_tap uplink named uplink_ifname(tag). ipv4/ipv6: the node's addresses
    with prefix length."""
    cfg = {
        "uplink": {"devargs": f"net_tap_{tag}{RUN_ID},iface={uplink_ifname(tag)}",
                   "rx_queues": 1, "mac": mac},
        "cores": {"main": 0, "control": 0,
                  "workers": [{"core": core, "rx": [{"port": "uplink", "queue": 0}]}]},
        "node": {"ipv4": ipv4, "ipv6": ipv6, "mtu": mtu},
    }
    cfg.update(extra or {})
    return cfg


def router_behind_uplink(node_ns, tag, peer, mac, addr4, addr6, via4, via6,
                         pods4="192.168.0.0/24", pods6="fd00:10:244::/64"):
    """For a daemon run in node_ns with uplink_daemon_config(tag, ...): a bridge in node_ns
    with the uplink tap on it (so net_tap, which reads its link state in the daemon's
    namespace, sees it up or down as it is) and a veth to peer, whose eth0 gets mac, addr4/24
    and addr6/64, and routes to the pods via the node's via4 / via6. Returns the bridge."""
    br = Bridge(node_ns)
    ifname = uplink_ifname(tag)
    # not the dataplane's MAC on the bridge port (see Bridge.adopt)
    node_ns.run(f"ip link set {ifname} address 02:fe:" +
                ":".join(f"{b:02x}" for b in os.urandom(4)))
    br.enslave(ifname)
    br.plug_veth(peer, f"{tag}{RUN_ID}p"[:15])
    peer.run(f"ip link set eth0 address {mac}")
    peer.run("sysctl -qw net.ipv6.conf.eth0.accept_dad=0")
    peer.run("ip link set eth0 up")
    peer.run(f"ip addr add {addr4}/24 dev eth0")
    peer.run(f"ip addr add {addr6}/64 dev eth0 nodad")
    peer.run(f"ip route add {pods4} via {via4}")
    peer.run(f"ip -6 route add {pods6} via {via6}")
    return br


def tor_bridge(tor, addr4, addr6):
    """A ToR in namespace tor: a bridge for the nodes' uplinks with addr4/24 and addr6/64."""
    br = Bridge(tor)
    tor.run(f"sysctl -qw net.ipv6.conf.{br.name}.disable_ipv6=0")
    tor.run(f"ip addr add {addr4}/24 dev {br.name}")
    tor.run(f"ip addr add {addr6}/64 dev {br.name} nodad")
    return br


def ipam_pod(daemon, store, node, handle, ns):
    """A pod in namespace ns on daemon, its IPv4 and IPv6 addresses allocated on node in the
    store by ipam_load (the real allocator) under handle; returns (ns, v4, v6) as a
    SimpleNamespace."""
    r = subprocess.run([str(BUILD / "ipam" / "tools" / "ipam_load"), "--store", store,
                        "--node", node, "--count", "1", "--handle-prefix", handle, "--dual",
                        "--report-fd", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    (v4, v6), = [line.split()[1:] for line in r.stdout.splitlines()
                 if line.startswith(f"{handle}-")]
    daemon.add_pod(ns, ipv4=v4, ipv6=v6)
    return types.SimpleNamespace(ns=ns, v4=v4, v6=v6)


def uplink_ifname(tag):
    return f"fwu{RUN_ID}{tag}"[:15]


def assert_link_only_in(ns, ifname):
    """ifname is an interface of namespace ns (a Netns) and not of the root namespace."""
    r = ns.run(f"ip -o link show dev {ifname}", check=False)
    assert r.returncode == 0, f"{ifname} is not in {ns.name}: {r.stderr.strip()}"
    assert sh(f"ip -o link show dev {ifname}", check=False).returncode != 0, \
        f"{ifname} is in the root namespace"


BIRD = os.environ.get("FWD_BIRD", "/usr/sbin/bird")
BIRDC = os.environ.get("FWD_BIRDC", "/usr/sbin/birdc")


class Bird:
    """A real BIRD 2 in a namespace, foreground under Popen, stopped by PID.
    config: the bird.conf text (see birdconf.py)."""

    def __init__(self, tmp, name, ns, config, supervised=False):
        """supervised: run it under bird_supervise.py, which starts BIRD again when it exits
        (what a daemon with bird.graceful_restart needs)."""
        self.tmp = pathlib.Path(tmp)
        self.name = name
        self.ns = ns
        self.supervised = supervised
        self.conf = self.tmp / f"{name}.bird.conf"
        self.sock = str(self.tmp / f"{name}.bird.ctl")
        self.pidfile = self.tmp / f"{name}.bird.pid"
        self.log = self.tmp / f"{name}.bird.log"
        self.conf.write_text(config)
        self.proc = None

    def start(self, timeout=10):
        sh(f"{BIRD} -p -c {self.conf}")  # parse only: a config error fails here, clearly
        logf = open(self.log, "w")
        sup = ["/usr/bin/python3", str(pathlib.Path(__file__).with_name("bird_supervise.py"))] \
            if self.supervised else []
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, *sup, BIRD, "-f", "-c", str(self.conf),
             "-s", self.sock, "-P", str(self.pidfile)],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"bird exited {self.proc.returncode}:\n{self.log.read_text()}")
            if os.path.exists(self.sock):
                r = subprocess.run([BIRDC, "-s", self.sock, "show", "status"],
                                   capture_output=True, text=True, timeout=10)
                if r.returncode == 0 and "Daemon is up and running" in r.stdout:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"bird did not answer on {self.sock}:\n{self.log.read_text()}")

    def birdc(self, *cmd, timeout=10):
        """birdc -s SOCK <cmd>; returns the output without the banner line. Raises on
        a birdc failure or an error reply from BIRD."""
        r = subprocess.run([BIRDC, "-s", self.sock, *map(str, cmd)], capture_output=True,
                           text=True, timeout=timeout)
        lines = r.stdout.splitlines()
        if lines and lines[0].startswith("BIRD ") and lines[0].endswith("ready."):
            lines = lines[1:]
        out = "\n".join(lines)
        bad = ("syntax error", "No protocols match", "unknown command", "Access denied")
        if r.returncode != 0 or any(b.lower() in out.lower() for b in bad):
            raise AssertionError(f"birdc {' '.join(map(str, cmd))} ({r.returncode}):\n{out}\n{r.stderr}")
        return out

    def protocols(self):
        """{name: (state, info)} from `show protocols`."""
        res = {}
        for line in self.birdc("show", "protocols").splitlines()[1:]:
            f = line.split(None, 5)
            if len(f) >= 4:
                res[f[0]] = (f[3], f[5].strip() if len(f) > 5 else "")
        return res

    def wait_established(self, protocol, timeout=30):
        """Waits until a BGP protocol is up and Established; returns the seconds waited."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"bird exited {self.proc.returncode}:\n{self.log.read_text()}")
            last = self.protocols().get(protocol)
            if last and last[0] == "up" and last[1].startswith("Established"):
                return time.monotonic() - t0
            time.sleep(0.1)
        detail = self.birdc("show", "protocols", "all", protocol)
        raise AssertionError(f"{self.name}: {protocol} not Established after {timeout}s "
                             f"({last}):\n{detail}\n{self.log.read_text()[-4000:]}")

    def show_route(self, *args):
        return self.birdc("show", "route", *args)

    def stop(self, timeout=10):
        if not stop_process(self.proc, timeout):
            return
        for f in (pathlib.Path(self.sock), self.pidfile):
            if f.exists():
                f.unlink()


def free_port():
    """A loopback TCP port the kernel just handed out (released at once)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Etcd:
    """A real etcd 3.4 (Debian's etcd-server), data under tmp, stopped by PID.
    By default on free loopback ports of the test's namespace; with ns (a Netns) and
    host it runs in that namespace and listens on host:2379 there (the cluster store
    on the node network). spec(prefix) is the IPAM store spec for it."""

    BINARY = "/usr/bin/etcd"

    def __init__(self, tmp, name="etcd", ns=None, host=None):
        self.dir = pathlib.Path(tmp) / name
        self.ns = ns
        if ns is None:
            self.url = f"http://127.0.0.1:{free_port()}"
            self.peer = f"http://127.0.0.1:{free_port()}"
        else:
            self.url = f"http://{host}:2379"
            self.peer = "http://127.0.0.1:2380"
        self.log = self.dir / "etcd.log"
        self.proc = None

    def start(self, timeout=30):
        if not os.access(self.BINARY, os.X_OK):
            raise AssertionError(f"{self.BINARY} missing: apt-get install -y etcd-server")
        self.dir.mkdir(parents=True, exist_ok=True)
        pre = ["ip", "netns", "exec", self.ns.name] if self.ns else []
        logf = open(self.log, "w")
        self.proc = subprocess.Popen(
            [*pre, self.BINARY, "--name", "default", "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", self.peer, "--initial-advertise-peer-urls", self.peer,
             "--initial-cluster", f"default={self.peer}", "--log-level", "warn"],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"etcd exited {self.proc.returncode}:\n{self.log.read_text()}")
            probe = ("import urllib.request,sys; "
                     f"sys.stdout.write(urllib.request.urlopen('{self.url}/health', "
                     "timeout=1).read().decode())")
            r = subprocess.run([*pre, "/usr/bin/python3", "-c", probe], capture_output=True,
                               text=True)
            return r.returncode == 0 and '"health":"true"' in r.stdout
        wait_until(up, timeout, interval=0.1, what=f"etcd on {self.url}")
        return self

    def spec(self, prefix=""):
        return f"etcd:{self.url}" + (f",{prefix}" if prefix else "")

    def run(self, argv, timeout=120):
        """Runs argv where etcd is reachable (its namespace); returns CompletedProcess."""
        pre = ["ip", "netns", "exec", self.ns.name] if self.ns else []
        return subprocess.run([*pre, *map(str, argv)], capture_output=True, text=True,
                              timeout=timeout)

    def stop(self, timeout=10):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
