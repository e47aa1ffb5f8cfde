"""The Linux kernel routing between network namespaces: the path of Calico's
standard (iptables) dataplane, without the iptables part.

    generator ns                 router ns                      sink ns
    testpmd (CPU 0)   veth       rtr-in ... routing ... rtr-out   veth   sink
    pcap -> af_packet -> gen ==> rin (DUT_MAC)          rout ==> snk (drops)
                                 RPS: CPU 1                       RPS: CPU 0

The generator replays the scenario's packet set into the gen veth on CPU 0;
RPS on rin hands every packet to CPU 1, which receives, routes and transmits
it on rout; RPS on the sink's veth hands it back to CPU 0, where the sink
drops it (the frames are addressed to next-hop MACs that are not its own).
The router holds the scenario's Calico table the way Felix/BIRD program it.
"""
from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import struct
import threading
import time
from pathlib import Path
from typing import Optional

from .common import (DUT_MAC, FWD_CORE, MAIN_CORE, NODE4, NODE6, SRC_MAC, Counters, Ctx,
                     Proc, Reference, Scenario, Unavailable, remove_runtime_dir, run)

NETNS_DIR = Path("/run/netns")
NS_PREFIX = "perfk-"

# interface names (each namespace is ours alone)
GEN_IF, RIN_IF, ROUT_IF, SNK_IF = "gen0", "rin", "rout", "snk0"
SNK_MAC = "02:00:00:00:5e:01"      # none of the next-hop MACs: the sink drops every frame
ROUT_MAC = "02:00:00:00:00:03"

# the generator's af_packet ring: 2 KiB frames (any frame of the scenarios fits)
AF_PACKET_ARGS = "qpairs=1,blocksz=4096,framesz=2048,framecnt=4096,qdisc_bypass=1"

LINEARIZE_AT_GENERATOR = True     # scatter-gather off on the generator's veth (see notes)
START_TIMEOUT = 30.0
SATURATED_BUSY = 0.95              # CPU 1 this busy: the kernel is the limit
SATURATED_DROP = 0.005             # or this share of the offered packets refused at rin


# --- netlink: link counters of a namespace, without a process per read -----------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
IFLA_IFNAME, IFLA_STATS64 = 3, 23


def _socket_in_netns(ns: str, *args) -> socket.socket:
    """A socket created inside netns `ns` (it stays bound to that namespace).
    A thread enters the namespace (setns is per thread), makes it and ends."""
    out: dict = {}

    def enter():
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns {ns}: {os.strerror(e)}")
            finally:
                os.close(fd)
            out["s"] = socket.socket(*args)
        except BaseException as e:       # handed to the caller
            out["e"] = e

    t = threading.Thread(target=enter, name=f"setns-{ns}")
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["s"]


class LinkStats:
    """rtnl_link_stats64 of links of one namespace, read by name over rtnetlink
    (the same numbers as /sys/class/net/<if>/statistics; ~20 us a read)."""
    FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes",
              "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")

    def __init__(self, ns: str):
        self.ns = ns
        self.sock = _socket_in_netns(ns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def read(self, ifname: str) -> dict:
        self.seq += 1
        name = ifname.encode() + b"\0"
        attr = struct.pack("=HH", 4 + len(name), IFLA_IFNAME) + name
        attr += b"\0" * (-len(attr) % 4)
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0) + attr
        self.sock.send(struct.pack("=IHHII", 16 + len(body), RTM_GETLINK, NLM_F_REQUEST,
                                   self.seq, 0) + body)
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                ln, typ, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                if ln < 16:
                    break
                if seq == self.seq:
                    if typ == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", data, off + 16)[0]
                        raise OSError(err, f"RTM_GETLINK {self.ns}/{ifname}: {os.strerror(err)}")
                    if typ == RTM_NEWLINK:
                        return self._stats(data, off + 32, off + ln, ifname)
                off += (ln + 3) & ~3

    def _stats(self, data: bytes, p: int, end: int, ifname: str) -> dict:
        while p + 4 <= end:
            alen, atype = struct.unpack_from("=HH", data, p)
            if alen < 4:
                break
            if atype & 0x3FFF == IFLA_STATS64:
                return dict(zip(self.FIELDS, struct.unpack_from("=8Q", data, p + 4)))
            p += (alen + 3) & ~3
        raise OSError(f"no IFLA_STATS64 for {self.ns}/{ifname}")


# --- ethtool: scatter-gather off on the generator's veth ------------------------------

SIOCETHTOOL = 0x8946
ETHTOOL_GSG, ETHTOOL_SSG = 0x18, 0x19


def _ethtool_value(sock: socket.socket, ifname: str, cmd: int, value: int = 0) -> int:
    """One legacy ethtool get/set (struct ethtool_value) on ifname, in sock's namespace."""
    import fcntl
    buf = ctypes.create_string_buffer(struct.pack("=II", cmd, value), 8)
    ifr = struct.pack("=16sQ16x", ifname.encode(), ctypes.addressof(buf))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    return struct.unpack("=II", buf.raw)[1]


def sg_off(ns: str, ifname: str) -> None:
    """Scatter-gather off on ifname: the kernel then linearizes what the af_packet
    TX ring sends (frame data past the Ethernet header sits in ring pages, as page
    fragments) in the sender's context, on the generator's CPU, instead of the
    router pulling each IP header out of a fragment."""
    s = _socket_in_netns(ns, socket.AF_INET, socket.SOCK_DGRAM, 0)
    try:
        _ethtool_value(s, ifname, ETHTOOL_SSG, 0)
        if _ethtool_value(s, ifname, ETHTOOL_GSG) != 0:
            raise OSError(f"scatter-gather still on for {ns}/{ifname}")
    finally:
        s.close()


# --- CPU accounting ----------------------------------------------------------------------

STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times(cpu: int) -> dict:
    """The cpu<N> line of /proc/stat (ticks)."""
    tag = f"cpu{cpu} "
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(tag):
                vals = [int(x) for x in line.split()[1:1 + len(STAT_FIELDS)]]
                return dict(zip(STAT_FIELDS, vals))
    raise OSError(f"no cpu{cpu} in /proc/stat")


def softnet() -> list[tuple[int, int]]:
    """(processed, dropped) of each CPU's backlog (/proc/net/softnet_stat)."""
    out = []
    with open("/proc/net/softnet_stat") as f:
        for line in f:
            v = line.split()
            out.append((int(v[0], 16), int(v[1], 16)))
    return out


def net_rx_softirqs() -> list[int]:
    """NET_RX softirqs run so far, per CPU (/proc/softirqs)."""
    with open("/proc/softirqs") as f:
        for line in f:
            if line.strip().startswith("NET_RX:"):
                return [int(x) for x in line.split()[1:]]
    return []


# --- the reference -------------------------------------------------------------------------

class KernelRouting(Reference):
    key = "kernel"
    label = "Linux routing (netns)"

    _serial = 0

    BASE_NOTES = [
        "Linux routing (netns): plain kernel IPv4/IPv6 forwarding between network "
        "namespaces (veth in, veth out) with the scenario's Calico routes (remote blocks via "
        "their node address, pod /32 or /128 dev routes with scope link, blackholed local "
        "blocks, default route; every next hop a permanent neighbour entry) and the kernel's "
        "defaults otherwise (rp_filter off, early demux on). No iptables/nftables, no "
        "conntrack: Calico's standard dataplane adds its iptables chains and conntrack to "
        "this path, so it costs more than measured here.",
        "Linux routing (netns): generator = dpdk-testpmd io (pcap -> af_packet TX, qdisc "
        "bypass) into a veth, both its lcores on CPU 0; RPS on the router's rtr-in puts "
        "receive + routing + rtr-out transmit on CPU 1; RPS on the sink's veth puts the "
        "sink's drop back on CPU 0. rx = rtr-in rx_packets, tx = rtr-out tx_packets. The "
        "generator is back-pressured by its socket (a frame returns to its ring when the "
        "router takes the packet in), so offered_mpps ~ rx_mpps; whether CPU 1 or the "
        "generator was the limit shows in CPU 1's idle share (extra: limit, cpu1_busy).",
        "Linux routing (netns): what the test setup itself puts on CPU 1 (perf profile "
        "here): the hand-off to the sink (RPS enqueue + IPI to CPU 0, a VM exit here) "
        "~10-17% of CPU 1's forwarding samples, and releasing each generator frame "
        "(tpacket_destruct_skb/sock_wfree when ip_rcv orphans the skb) ~8-16%; a pod's "
        "socket skbs are released at the same point (sock_wfree) but without the ring "
        "update. Scatter-gather is off on the generator's veth so the af_packet frame is "
        "linearized on CPU 0 (otherwise CPU 1 pulls each IP header out of a page fragment: "
        "+15-20% CPU 1 time per packet).",
        "Linux routing (netns): CPU 1 is shared with whatever else runs: under load the "
        "kernel's softirq work moves to ksoftirqd and shares CPU 1 with other processes "
        "(extra: cpu1_user is their share). cpu1_softirq_ns_per_pkt (CPU 1 softirq time / "
        "forwarded packets, tick-sampled) is the figure least affected by that.",
    ]

    def __init__(self):
        super().__init__()
        self.base_notes = list(self.BASE_NOTES)
        self.limit_notes: dict[str, str] = {}     # scenario -> generator-limited note
        self.notes = list(self.base_notes)
        self.ns: dict[str, str] = {}              # role -> namespace name
        self.proc: Optional[Proc] = None
        self.prefix: Optional[str] = None
        self.stats: dict[str, LinkStats] = {}
        self.snaps: list[dict] = []               # counters() snapshots (the last two count)
        self.scenario: Optional[Scenario] = None

    # -- hooks --

    def applies(self, sc: Scenario) -> Optional[str]:
        if sc.family in (4, 6):
            return None
        return f"family {sc.family}"

    def prepare(self, ctx: Ctx) -> None:
        path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
        for tool in ("dpdk-testpmd", "ip", "taskset", "sysctl"):
            if shutil.which(tool, path=path) is None:
                raise Unavailable(f"{tool} not found")
        if os.geteuid() != 0:
            raise Unavailable("needs root (network namespaces)")
        if not Path("/sys/class/net/lo/queues/rx-0/rps_cpus").exists():
            raise Unavailable("kernel without RPS (CONFIG_RPS): cannot put routing on CPU 1")

    def start(self, ctx: Ctx) -> None:
        self.stop()
        self.scenario = ctx.scenario
        self.snaps = []
        if not Path(ctx.pcap).is_file():
            raise Unavailable(f"{self.label}: no packet set at {ctx.pcap}")
        self._remove_stale()
        KernelRouting._serial += 1
        tag = f"{NS_PREFIX}{os.getpid()}-{KernelRouting._serial}"
        self.prefix = tag
        try:
            self._build(ctx, tag)
            self._start_generator(ctx, tag)
            self._wait_flowing(ctx)
        except BaseException:
            tail = self.proc.tail() if self.proc else ""
            self.stop()
            if tail:
                ctx.log(f"kernel: generator log tail:\n{tail}")
            raise

    def counters(self) -> Counters:
        rin = self.stats["rtr"].read(RIN_IF)
        rout = self.stats["rtr"].read(ROUT_IF)
        gen = self.stats["gen"].read(GEN_IF)
        t = time.monotonic()
        self.snaps.append({"t": t, "rin": rin, "rout": rout, "gen": gen,
                           "cpu": cpu_times(FWD_CORE),
                           "net_rx": net_rx_softirqs(), "softnet": softnet()})
        del self.snaps[:-2]
        return Counters(rx=rin["rx_packets"], tx=rout["tx_packets"], t=t)

    def extra(self) -> dict:
        if len(self.snaps) < 2:
            return {}
        a, b = self.snaps
        dt = b["t"] - a["t"]
        if dt <= 0:
            return {}

        def share(key):
            d = {k: b[key][k] - a[key][k] for k in STAT_FIELDS}
            tot = sum(d.values()) or 1
            return d, tot

        d, tot = share("cpu")
        busy = (tot - d["idle"] - d["iowait"]) / tot
        gen_sent = b["gen"]["tx_packets"] - a["gen"]["tx_packets"]
        gen_refused = b["gen"]["tx_dropped"] - a["gen"]["tx_dropped"]
        rx = b["rin"]["rx_packets"] - a["rin"]["rx_packets"]
        tx = b["rout"]["tx_packets"] - a["rout"]["tx_packets"]
        offered = gen_sent + gen_refused
        net_rx = [y - x for x, y in zip(a["net_rx"], b["net_rx"])]
        backlog = [(y[0] - x[0], y[1] - x[1]) for x, y in zip(a["softnet"], b["softnet"])]
        saturated = busy >= SATURATED_BUSY or (offered > 0 and
                                               gen_refused / offered >= SATURATED_DROP)
        out = {
            "cpu1_busy": round(busy, 3),
            "cpu1_softirq": round(d["softirq"] / tot, 3),
            "cpu1_system": round((d["system"] + d["irq"]) / tot, 3),
            "cpu1_user": round((d["user"] + d["nice"]) / tot, 3),   # others' work on CPU 1
            "offered_mpps": round(offered / dt / 1e6, 4),
            "rin_refused_mpps": round(gen_refused / dt / 1e6, 4),
            "rout_dropped": b["rout"]["tx_dropped"] - a["rout"]["tx_dropped"],
            # CPU 1's softirq time per forwarded packet (tick-sampled: a few % noise)
            "cpu1_softirq_ns_per_pkt": round(d["softirq"] / tot * dt / tx * 1e9) if tx else None,
            # packets each CPU's backlog processed (RPS target of rin: CPU 1; of the sink: CPU 0)
            "backlog_mpps": [round(p / dt / 1e6, 4) for p, _ in backlog],
            "backlog_dropped": [q for _, q in backlog],
            "net_rx_softirqs_per_s": [round(x / dt) for x in net_rx],
            "limit": ("CPU 1" if saturated else "generator (CPU 1 not saturated)"),
        }
        name = self.scenario.name if self.scenario else "?"
        if saturated:
            self.limit_notes.pop(name, None)
        else:
            self.limit_notes[name] = (
                f"Linux routing (netns), {name}: the generator could not saturate CPU 1 "
                f"(CPU 1 {busy:.0%} busy; offered {offered / dt / 1e6:.3f} Mpps, taken in "
                f"{rx / dt / 1e6:.3f}, forwarded {tx / dt / 1e6:.3f}): the rate is a lower "
                f"bound of the kernel's.")
        self.notes = self.base_notes + list(self.limit_notes.values())
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        for s in self.stats.values():
            try:
                s.close()
            except OSError:
                pass
        self.stats = {}
        for ns in self.ns.values():
            _end_generators(ns)
            _del_netns(ns)
        self.ns = {}
        if self.prefix:
            remove_runtime_dir(self.prefix)
            self.prefix = None

    # -- building --

    def _remove_stale(self) -> None:
        """Namespaces of an earlier harness process that died without stop()."""
        if not NETNS_DIR.is_dir():
            return
        for p in NETNS_DIR.iterdir():
            if not p.name.startswith(NS_PREFIX):
                continue
            pid = p.name[len(NS_PREFIX):].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                _end_generators(p.name)
                _del_netns(p.name)
        for d in Path("/var/run/dpdk").glob(f"{NS_PREFIX}*"):
            pid = d.name[len(NS_PREFIX):].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                remove_runtime_dir(d.name)

    def _build(self, ctx: Ctx, tag: str) -> None:
        fam = ctx.table.family
        gen, rtr, snk = (f"{tag}-gen", f"{tag}-rtr", f"{tag}-snk")
        for role, ns in (("gen", gen), ("rtr", rtr), ("snk", snk)):
            run(["ip", "netns", "add", ns])
            self.ns[role] = ns
        # sysctls first: the veths made next take the namespaces' "default" values
        common_v6 = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                     "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
                     "net.ipv6.conf.default.addr_gen_mode=1"]   # no link-local, no MLD chatter
        off_v6 = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
        _sysctl(gen, off_v6)
        _sysctl(snk, off_v6 + ["net.ipv4.conf.all.forwarding=0"])
        _sysctl(rtr, common_v6 + [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.forwarding=1", "net.ipv4.conf.default.forwarding=1",
            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0",
            "net.ipv4.conf.all.log_martians=0", "net.ipv4.conf.default.log_martians=0",
            "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.forwarding=1",
        ] + (off_v6 if fam == 4 else []))
        # the two veths, one rx and one tx queue each, made straight in their namespaces
        run(["ip", "-n", rtr, "link", "add", RIN_IF, "address", DUT_MAC,
             "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
             "peer", "name", GEN_IF, "address", SRC_MAC, "netns", gen,
             "numtxqueues", "1", "numrxqueues", "1"])
        run(["ip", "-n", rtr, "link", "add", ROUT_IF, "address", ROUT_MAC,
             "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
             "peer", "name", SNK_IF, "address", SNK_MAC, "netns", snk,
             "numtxqueues", "1", "numrxqueues", "1"])
        if LINEARIZE_AT_GENERATOR:
            sg_off(gen, GEN_IF)
        run(["ip", "-n", gen, "link", "set", GEN_IF, "up"])
        run(["ip", "-n", snk, "link", "set", SNK_IF, "up"])
        # RPS: the router's receive on CPU 1, the sink's on CPU 0 (sysfs of the namespace)
        _rps(rtr, RIN_IF, 1 << FWD_CORE)
        _rps(snk, SNK_IF, 1 << MAIN_CORE)
        _rps(gen, GEN_IF, 1 << MAIN_CORE)
        # the router's addresses, neighbours and routes, in one batch
        batch = self._router_batch(ctx)
        path = ctx.scratch / f"{tag}-router.batch"
        path.write_text("\n".join(batch) + "\n")
        try:
            run(["ip", "-n", rtr, "-batch", str(path)])
        finally:
            try:
                path.unlink()
            except OSError:
                pass
        self.stats = {"rtr": LinkStats(rtr), "gen": LinkStats(gen)}
        self._check_router(ctx)

    def _router_batch(self, ctx: Ctx) -> list[str]:
        t = ctx.table
        fam = t.family
        node = NODE4 if fam == 4 else NODE6
        lines = ["link set lo up", f"link set {RIN_IF} up", f"link set {ROUT_IF} up",
                 f"address add {node} dev {ROUT_IF}" + (" nodad" if fam == 6 else "")]
        neigh: dict[str, str] = {}
        routes = []
        for r in t.routes:
            if r.kind == "remote":
                neigh[r.via] = r.mac
                routes.append(f"route add {r.prefix} via {r.via} dev {ROUT_IF}")
            elif r.kind == "pod":
                # Felix: the pod's /32 (/128) on its host-side veth, scope link, and a
                # permanent neighbour entry for the pod
                neigh[r.via] = r.mac
                routes.append(f"route add {r.prefix} dev {ROUT_IF} scope link")
            elif r.kind == "local-block":
                routes.append(f"route add blackhole {r.prefix}")
            elif r.kind == "default":
                neigh[r.via] = r.mac
                routes.append(f"route add {r.prefix} via {r.via} dev {ROUT_IF}")
            else:
                raise Unavailable(f"unknown route kind {r.kind!r}")
        lines += [f"neigh replace {a} lladdr {m} dev {ROUT_IF} nud permanent"
                  for a, m in neigh.items()]
        return lines + routes

    def _check_router(self, ctx: Ctx) -> None:
        """The routes are in, and which destinations the kernel will not forward."""
        fam = ctx.table.family
        rtr = self.ns["rtr"]
        out = run(["ip", "-n", rtr, f"-{fam}", "route", "show", "table", "main"]).stdout
        n = sum(1 for line in out.splitlines() if line.strip())
        want = len(ctx.table.routes) + 1          # + the connected route of rout
        if n < want:
            raise Unavailable(f"router has {n} routes, expected {want}")
        onlink = ipaddress.ip_interface(NODE4 if fam == 4 else NODE6).network
        known = {r.via for r in ctx.table.routes if r.via}
        odd = 0
        for d in ctx.table.destinations:
            a = ipaddress.ip_address(d)
            if (a.is_loopback or a.is_multicast or a.is_unspecified or
                    (fam == 4 and (a in ipaddress.ip_network("0.0.0.0/8") or a.is_reserved)) or
                    (a in onlink and d not in known)):
                odd += 1
        if odd:
            note = (f"Linux routing (netns), {ctx.scenario.name}: {odd} of "
                    f"{len(ctx.table.destinations)} packets go to addresses the kernel does not "
                    f"forward as-is (loopback/martian/on-link without a neighbour).")
            if note not in self.base_notes:
                self.base_notes.append(note)
                self.notes = self.base_notes + list(self.limit_notes.values())

    def _start_generator(self, ctx: Ctx, tag: str) -> None:
        argv = ["ip", "netns", "exec", self.ns["gen"],
                "taskset", "-c", str(MAIN_CORE),            # EAL control threads too
                "dpdk-testpmd",
                f"--lcores=0@{MAIN_CORE},1@{MAIN_CORE}", "--main-lcore", "0",
                "--in-memory", "--no-pci", "--file-prefix", tag,
                "--vdev", f"net_pcap0,rx_pcap={ctx.pcap},infinite_rx=1",
                "--vdev", f"net_af_packet0,iface={GEN_IF},{AF_PACKET_ARGS}",
                "--",
                "--forward-mode=io", "--port-topology=paired", "--auto-start",
                "--stats-period=10",                         # keeps the non-interactive loop alive
                "--nb-cores=1", "--rxq=1", "--txq=1", "--burst=64",
                "--total-num-mbufs=16384", "--no-flush-rx", "--no-lsc-interrupt"]
        log = ctx.scratch / f"{tag}-testpmd.log"
        self.proc = Proc(argv, log)

    def _wait_flowing(self, ctx: Ctx) -> None:
        end = time.monotonic() + START_TIMEOUT
        first = None
        while time.monotonic() < end:
            if not self.proc.alive():
                raise Unavailable(f"{self.label}: the generator exited with status "
                                  f"{self.proc.p.returncode} while starting:\n{self.proc.tail()}")
            try:
                log = self.proc.log_path.read_text(errors="replace")
            except OSError:
                log = ""
            if "probe failed" in log or "failed to initialize" in log:
                head = "\n".join(line for line in log.splitlines()[:12])
                raise Unavailable(f"{self.label}: a generator device did not come up:\n{head}")
            tx = self.stats["rtr"].read(ROUT_IF)["tx_packets"]
            if first is None:
                first = tx
            elif tx - first > 1000:
                return
            time.sleep(0.1)
        raise Unavailable(f"{self.label}: rtr-out transmitted nothing within "
                          f"{START_TIMEOUT:.0f} s; generator log:\n{self.proc.tail()}")


def _sysctl(ns: str, settings: list[str]) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w"] + settings)


def _rps(ns: str, ifname: str, mask: int) -> None:
    """rps_cpus of every rx queue of ifname (sysfs as `ip netns exec` mounts it)."""
    run(["ip", "netns", "exec", ns, "sh", "-ec",
         f'for q in /sys/class/net/{ifname}/queues/rx-*; do echo {mask:x} > "$q/rps_cpus"; done; '
         f'cat /sys/class/net/{ifname}/queues/rx-*/rps_cpus'])


def _end_generators(ns: str) -> None:
    """Ends (by PID) a testpmd this harness left running in namespace ns."""
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    for pid in (int(x) for x in r.stdout.split() if x.isdigit()):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm != "dpdk-testpmd":
            continue
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
            else:
                continue
            break


def _del_netns(ns: str) -> None:
    if (NETNS_DIR / ns).exists():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
