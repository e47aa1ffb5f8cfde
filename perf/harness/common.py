"""What every part of the perf harness shares: scenarios, Calico-shaped route
tables, packet sets, DPDK telemetry, processes and the measurement loop.

Topology (the same for every implementation measured): one DPDK device,
    net_pcap0,rx_pcap=<scenario pcap>,infinite_rx=1
RX replays the packet set at full speed; TX is the PMD's drop mode (frees the
mbufs and counts them, like net_null's TX). The forwarding lcore is core 1;
the main lcore, the harness and any control thread stay on core 0.
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import random
import shutil
import sys
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

# --- addresses of the bench node -------------------------------------------------

DUT_MAC = "02:00:00:00:00:01"     # the device under test; dst MAC of every frame
SRC_MAC = "02:00:00:00:00:02"     # the sender
GW_MAC = "02:00:00:00:00:fe"      # the default gateway
FWD_CORE = 1                      # the forwarding lcore of every implementation
MAIN_CORE = 0

NODE4 = "10.10.10.10/24"
NODE6 = "fd00:10:10::10/64"
GW4, GW6 = "10.10.10.1", "fd00:10:10::1"
SRC4, SRC6 = "10.10.10.1", "fd00:10:10::1"  # sources: behind the gateway


def node_mac(i: int) -> str:
    """MAC of remote node i (BGP next hop of its blocks)."""
    return "02:00:0a:0a:0a:%02x" % (i & 0xFF)


def pod_mac(i: int) -> str:
    """MAC of local pod i."""
    return "02:00:0a:f4:%02x:%02x" % ((i >> 8) & 0xFF, i & 0xFF)


@dataclasses.dataclass(frozen=True)
class Route:
    prefix: str            # "192.168.4.0/26"
    kind: str              # "remote" (a block of another node), "pod" (a local /32, /128),
                           # "local-block" (this node's block: blackhole), "default"
    via: Optional[str]     # next-hop address (None for local-block)
    mac: Optional[str]     # next-hop MAC, pinned (None for local-block)


@dataclasses.dataclass
class Table:
    family: int                     # 4 or 6
    routes: list[Route]
    destinations: list[str]         # one per packet, in packet order
    remote_nodes: int

    def count(self, kind: str) -> int:
        return sum(1 for r in self.routes if r.kind == kind)

    def describe(self) -> str:
        bl = "/26" if self.family == 4 else "/122"
        pl = "/32" if self.family == 4 else "/128"
        return (f"{self.count('remote')} remote {bl} blocks via {self.remote_nodes} nodes, "
                f"{self.count('local-block')} local {bl} blocks holding {self.count('pod')} "
                f"{pl} pods, a default route")


REMOTE_NODES = 16
LOCAL_PODS = 110
BLOCKS = 1024


def calico_table(family: int, n_dest: int, seed: int = 1) -> Table:
    """A Calico node's table: BLOCKS blocks of the pool (2 of them this node's,
    blackholed, with LOCAL_PODS pod routes inside; the rest via REMOTE_NODES
    other nodes) and a default route. Destinations: 45% local pods, 45% hosts
    in remote blocks, 10% outside the pool (default route)."""
    rnd = random.Random(seed * 10 + family)
    routes: list[Route] = []
    if family == 4:
        pool = ipaddress.ip_network("192.168.0.0/16")
        blocks = list(pool.subnets(new_prefix=26))           # exactly 1024
        node_ip = lambda i: f"10.10.10.{11 + i}"
        # a public unicast address (no 0/8, 10/8, 127/8, multicast)
        outside = lambda: str(ipaddress.ip_address(
            (rnd.choice([o for o in range(1, 224) if o not in (10, 127, 192)]) << 24)
            | rnd.randrange(1 << 24)))
        default = "0.0.0.0/0"
        gw = GW4
    else:
        pool = ipaddress.ip_network("fd00:10:244::/48")
        picked = rnd.sample(range(1 << 26), BLOCKS)          # /122 blocks at random places
        blocks = [ipaddress.ip_network((int(pool.network_address) + (b << 6), 122))
                  for b in sorted(picked)]
        node_ip = lambda i: f"fd00:10:10::{0x11 + i:x}"
        outside = lambda: str(ipaddress.ip_address(
            (0x2001_0db8 << 96) | rnd.randrange(1 << 96)))
        default = "::/0"
        gw = GW6
    local_blocks = blocks[:2]
    remote_blocks = blocks[2:]
    # pods fill the two local blocks from their first address
    pods = []
    per = (LOCAL_PODS + 1) // 2
    for b, blk in enumerate(local_blocks):
        for k in range(per if b == 0 else LOCAL_PODS - per):
            pods.append(blk.network_address + k)
    plen = 32 if family == 4 else 128
    for blk in local_blocks:
        routes.append(Route(str(blk), "local-block", None, None))
    for i, p in enumerate(pods):
        # each pod has its own MAC; its next hop address is the pod itself
        routes.append(Route(f"{p}/{plen}", "pod", str(p), pod_mac(i)))
    for i, blk in enumerate(remote_blocks):
        n = i % REMOTE_NODES
        routes.append(Route(str(blk), "remote", node_ip(n), node_mac(n)))
    routes.append(Route(default, "default", gw, GW_MAC))
    dests = []
    for _ in range(n_dest):
        x = rnd.random()
        if x < 0.45:
            dests.append(str(rnd.choice(pods)))
        elif x < 0.90:
            blk = rnd.choice(remote_blocks)
            dests.append(str(blk.network_address + rnd.randrange(blk.num_addresses)))
        else:
            dests.append(outside())
    return Table(family, routes, dests, REMOTE_NODES)


def pools_yaml(pools: dict[int, tuple[str, str, int]], vxlan_mode: str) -> str:
    """Calico IPPool resources, natOutgoing, one per family: {family: (name, cidr, block
    size)} with the given vxlanMode ("Always", "Never"), no IP-in-IP."""
    docs = []
    for fam in sorted(pools):
        name, cidr, size = pools[fam]
        docs.append(f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\n"
                    f"spec:\n  cidr: {cidr}\n  blockSize: {size}\n  vxlanMode: {vxlan_mode}\n"
                    f"  ipipMode: Never\n  natOutgoing: true\n")
    return "---\n".join(docs)


# --- scenarios ----------------------------------------------------------------------

PCAP_VERSION = 2  # bump when the packets or the table change

ALL_REFERENCES = ("dpdk-fwd", "testpmd-io", "l3fwd-lpm", "l3fwd-fib", "ovs-dpdk", "kernel")
# References only some scenarios run (the runner adds them when a scenario asked for lists
# them): Linux conntrack + nftables masquerade (harness/kernel_masq.py, the NAT scenarios).
EXTRA_REFERENCES = ("kernel-masq",)


@dataclasses.dataclass
class Scenario:
    name: str                        # file-name-like key: "ipv4-64"
    title: str                       # "IPv4, 64 B"
    family: int                      # 4 or 6
    sizes: list[tuple[int, int]]     # (frame size on the wire incl. 4 B FCS, weight)
    packets: int = 4096              # packets in the set (each its own flow)
    references: tuple[str, ...] = ALL_REFERENCES
    seed: int = 1
    order: int = 50                  # place in the report (lower first)
    # References this scenario compares with through another scenario of the same run:
    # {reference key: scenario name}. The runner adds that scenario when it was not asked
    # for; the report divides by the reference's figure there (e.g. l3fwd, which routes
    # but does not run VXLAN, through ipv4-64).
    baselines: dict[str, str] = dataclasses.field(default_factory=dict)
    # Exported for hardware generators (perf/export_profiles.py, perf/run.py --rfc2544):
    # only scenarios whose device under test is a config file alone.
    profiles: bool = True
    # dpdk-fwd's drop counters over a window may not exceed this share of what it took in
    # (None: not checked); above it the scenario fails, naming the reasons.
    max_fwd_drop: Optional[float] = None
    # What a run's figure counts: "packets" (sent out, Mpps) or "flows" (connections created
    # per second: the NAT scenarios' new flows, harness/nat.py)
    counts: str = "packets"
    # Instructions per packet under callgrind (perf/harness/callgrind.py) for this scenario
    callgrind: bool = True
    # One more dpdk-fwd run with its per-stage counters on (where the cycles go)
    stage_profile: bool = True

    def table(self) -> Table:
        return calico_table(self.family, self.packets, self.seed)

    def not_run(self, key: str) -> Optional[str]:
        """None when reference `key` measures this scenario, else why not (shown as n/a)."""
        return None if key in self.references else "not in this scenario"

    def wire_bytes(self, key: str) -> float:
        """Mean frame size on the wire of what reference `key` sends."""
        return self.mean_wire_bytes()

    def traffic(self) -> str:
        """What the packet set holds, for the report."""
        return (f"{self.packets} packets, one flow each; 45% to local pods, 45% to remote "
                f"blocks, 10% outside the pool")

    def targets(self) -> Optional[list[tuple[str, float, str]]]:
        """(reference key, goal of dpdk-fwd / it, what) for the report; None: the
        report's own targets for the scenario's family."""
        return None

    def dpdkfwd_config(self, ctx: "Ctx", cfg: dict, fwd: "Reference") -> None:
        """Changes dpdk-fwd's config (a dict made from the table's static routes) before
        each start; fwd is the DpdkFwd starting."""

    def dpdkfwd_ready(self, ctx: "Ctx", fwd: "Reference", timeout: float) -> None:
        """Returns once the started daemon is set up for this scenario; raises
        Unavailable saying what is missing after `timeout` seconds."""

    def dpdkfwd_rx(self, stats: dict) -> Optional[int]:
        """Packets dpdk-fwd took in, from its counters (fwdctl stats); None: the uplink's RX
        (the full path's packets come from a pod's port: harness/fullpath.py)."""
        return None

    def dpdkfwd_counters(self, fwd: "Reference", stats: dict) -> None:
        """Called with each reading of the daemon's counters (fwdctl stats)."""

    def dpdkfwd_window(self, fwd: "Reference", extra: dict) -> None:
        """Checks (raise Unavailable) or adds to dpdk-fwd's figures of a window."""

    def dpdkfwd_stop(self, fwd: "Reference") -> None:
        """Ends what dpdkfwd_ready started (before the daemon stops)."""

    def ovs_flow_lines(self, table: "Table") -> Optional[tuple[list[str], str]]:
        """OVS-DPDK's OpenFlow rules for this scenario and a note saying what they do; None:
        one rule per route (harness/ovs.py)."""
        return None

    def measure(self, ref: "Reference", ctx: "Ctx", warmup: float, seconds: float) -> "Window":
        """One run of ref on this scenario."""
        return measure(ref, ctx, warmup, seconds)

    def frame_sizes(self) -> list[int]:
        """Wire size of each packet, in packet order (the mix interleaved)."""
        seq = []
        for size, w in self.sizes:
            seq += [size] * w
        rnd = random.Random(self.seed)
        rnd.shuffle(seq)
        return [seq[i % len(seq)] for i in range(self.packets)]

    def mean_wire_bytes(self) -> float:
        tot = sum(w for _, w in self.sizes)
        return sum(s * w for s, w in self.sizes) / tot

    def build_pcap(self, scratch: Path) -> Path:
        """Writes the packet set (cached by content) and returns its path."""
        from scapy.all import Ether, IP, IPv6, UDP, Raw, wrpcap  # slow import: only here
        t = self.table()
        key = json.dumps([PCAP_VERSION, self.family, self.sizes, self.packets, self.seed])
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        path = scratch / f"{self.name}-{digest}.pcap"
        if path.exists():
            return path
        pkts = []
        for i, (dst, wire) in enumerate(zip(t.destinations, self.frame_sizes())):
            l2 = Ether(src=SRC_MAC, dst=DUT_MAC)
            if self.family == 4:
                l3 = IP(src=SRC4, dst=dst, ttl=64)
                hdr = 14 + 20 + 8
            else:
                l3 = IPv6(src=SRC6, dst=dst, hlim=64)
                hdr = 14 + 40 + 8
            frame = wire - 4
            pad = max(0, frame - hdr)
            pkts.append(l2 / l3 / UDP(sport=1024 + i % 50000, dport=5201) / Raw(b"\x00" * pad))
        tmp = path.with_suffix(".tmp")
        wrpcap(str(tmp), pkts)
        tmp.rename(path)
        return path


def load_scenarios(folder: Path) -> dict[str, Scenario]:
    """Every perf/scenarios/*.py that defines SCENARIO, by name."""
    import importlib.util
    out = {}
    for f in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"scenario_{f.stem}", f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sc = getattr(mod, "SCENARIO", None)
        if isinstance(sc, Scenario):
            out[sc.name] = sc
    return dict(sorted(out.items(), key=lambda kv: (kv[1].order, kv[0])))


# --- what a reference is ---------------------------------------------------------------

class Unavailable(Exception):
    """A reference cannot run here (missing binary, build failed, ...): the
    message says why. The runner reports it and exits non-zero."""


@dataclasses.dataclass
class Counters:
    rx: int          # packets the implementation took in
    tx: int          # packets it sent out
    t: float         # time.monotonic() when read


@dataclasses.dataclass
class Ctx:
    scratch: Path             # scratch folder of this run (builds, pcaps, logs)
    pcap: Path                # the scenario's packet set
    scenario: Scenario
    table: Table
    build: Path               # the dpdk-fwd build dir
    repo: Path                # the repository root
    log: Callable[[str], None]  # progress lines


class Reference:
    """One implementation measured. Subclasses fill in the hooks."""
    key = ""          # one of ALL_REFERENCES
    label = ""        # row label in the report

    def __init__(self):
        self.notes: list[str] = []   # what the report must say (patches, deviations)

    def applies(self, sc: Scenario) -> Optional[str]:
        """None when it can run sc; otherwise why not (reported as n/a)."""
        return None

    def prepare(self, ctx: Ctx) -> None:
        """Once per harness run (builds); raise Unavailable when it cannot."""

    def start(self, ctx: Ctx) -> None:
        """Brings the implementation up, forwarding; returns when packets flow."""
        raise NotImplementedError

    def counters(self) -> Counters:
        raise NotImplementedError

    def stop(self) -> None:
        """Ends and cleans up everything start() made. Safe to call twice."""

    def extra(self) -> dict:
        """Anything more measured in the last window (dpdk-fwd: stage counters)."""
        return {}


# --- DPDK telemetry --------------------------------------------------------------------

def telemetry_path(file_prefix: str) -> Path:
    return Path("/var/run/dpdk") / file_prefix / "dpdk_telemetry.v2"


def telemetry(file_prefix: str, cmd: str, timeout: float = 2.0) -> dict:
    """One telemetry command of a running DPDK process ("/ethdev/stats,0")."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(timeout)
    try:
        s.connect(str(telemetry_path(file_prefix)))
        s.recv(4096)
        s.send(cmd.encode())
        return json.loads(s.recv(1 << 20))
    finally:
        s.close()


def ethdev_counters(file_prefix: str, port: int = 0) -> Counters:
    st = telemetry(file_prefix, f"/ethdev/stats,{port}")["/ethdev/stats"]
    return Counters(rx=st["ipackets"], tx=st["opackets"], t=time.monotonic())


def wait_telemetry(file_prefix: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Waits until the process answers telemetry and its port counts TX."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise Unavailable(f"exited with status {proc.returncode} while starting")
        try:
            if ethdev_counters(file_prefix).tx > 0:
                return
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise Unavailable(f"no packets forwarded within {timeout:.0f} s")


def remove_runtime_dir(file_prefix: str) -> None:
    """--in-memory leaves /var/run/dpdk/<prefix> (telemetry socket): remove it."""
    d = Path("/var/run/dpdk") / file_prefix
    if d.is_dir():
        for f in d.iterdir():
            try:
                f.unlink()
            except OSError:
                pass
        try:
            d.rmdir()
        except OSError:
            pass


def eal_args(file_prefix: str, pcap: Path) -> list[str]:
    """EAL arguments of every DPDK implementation: lcores 0 (main) and 1,
    hugepages in memory only, the one pcap device."""
    return ["-l", f"{MAIN_CORE},{FWD_CORE}", "--main-lcore", str(MAIN_CORE), "--in-memory",
            "--no-pci", "--file-prefix", file_prefix,
            "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1"]


# --- processes ---------------------------------------------------------------------------

class Proc:
    """A child process with its output in a log file, ended by PID."""

    def __init__(self, argv: list[str], log: Path, env: Optional[dict] = None,
                 cwd: Optional[Path] = None):
        self.argv = argv
        self.log_path = log
        self._log = open(log, "ab")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                  stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  start_new_session=True)

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> Optional[int]:
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._log.close()
        return self.p.returncode

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Generator:
    """A DPDK process on the main core that feeds dpdk-fwd (perf/flowgen through a memif, testpmd
    through a pod's vhost-user port), ended by PID with its EAL runtime dir. `stats(prefix)`
    reads its counters over telemetry ({"sent": ..., ...}); mark() keeps the last two readings,
    the window's ends."""

    def __init__(self, what: str, prefix: str, stats: Callable[[str], dict]):
        self.what = what
        self.prefix = prefix
        self._stats = stats
        self.proc: Optional[Proc] = None
        self.marks: list[dict] = []

    def start(self, argv: list[str], log: Path, timeout: float = 30.0) -> None:
        """Starts it on the main core; returns once it has sent a packet."""
        self.proc = Proc(["taskset", "-c", str(MAIN_CORE)] + argv, log)
        self.marks = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.proc.alive():
                raise Unavailable(f"{self.what} exited ({self.proc.p.returncode}):\n"
                                  f"{self.proc.tail()}")
            try:
                if self._stats(self.prefix)["sent"] > 0:
                    return
            except (OSError, KeyError, ValueError, TypeError):
                pass
            time.sleep(0.1)
        raise Unavailable(f"{self.what} sent nothing within {timeout:.0f} s:\n{self.proc.tail()}")

    def mark(self) -> None:
        if self.proc is not None:
            try:
                self.marks = (self.marks + [self._stats(self.prefix)])[-2:]
            except (OSError, KeyError, ValueError, TypeError):
                pass

    def window(self) -> Optional[tuple[dict, dict]]:
        return (self.marks[0], self.marks[1]) if len(self.marks) == 2 else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
            remove_runtime_dir(self.prefix)


def find_thread(pid: int, comm_prefix: str) -> Optional[int]:
    """The id of process pid's first thread whose name starts with comm_prefix
    (a forwarding lcore: "rte-worker-1", "pmd-c01"), or None."""
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            if (t / "comm").read_text().startswith(comm_prefix):
                return int(t.name)
    except (OSError, ValueError):
        pass
    return None


def thread_oncpu_ns(pid: int, tid: Optional[int]) -> Optional[int]:
    """Time thread tid of pid has run on a CPU, in ns (schedstat), or None."""
    if tid is None:
        return None
    try:
        return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """A short command; raises with its output when it fails."""
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {r.returncode}: "
                           f"{(r.stderr or r.stdout).strip()[-800:]}")
    return r


def rdtsc_fn():
    """A callable returning the CPU's TSC (x86-64): four instructions in an
    executable page, called through ctypes."""
    import ctypes
    import mmap
    code = bytes([0x0F, 0x31,              # rdtsc
                  0x48, 0xC1, 0xE2, 0x20,  # shl rdx, 32
                  0x48, 0x09, 0xD0,        # or rax, rdx
                  0xC3])                   # ret
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
    fn._keep = buf
    return fn


def tsc_hz(seconds: float = 0.5) -> float:
    """The TSC frequency, measured: TSC ticks over `seconds` of CLOCK_MONOTONIC_RAW
    (cycles/packet are TSC cycles, like DPDK's rte_rdtsc)."""
    rd = rdtsc_fn()
    t0, c0 = time.clock_gettime(time.CLOCK_MONOTONIC_RAW), rd()
    time.sleep(seconds)
    t1, c1 = time.clock_gettime(time.CLOCK_MONOTONIC_RAW), rd()
    return (c1 - c0) / (t1 - t0)


# --- one measurement ---------------------------------------------------------------------

@dataclasses.dataclass
class Window:
    mpps: float          # packets sent out per second, millions
    rx_mpps: float       # packets taken in per second, millions
    drop_ratio: float    # 1 - tx / rx over the window
    seconds: float
    extra: dict


def measure(ref: Reference, ctx: Ctx, warmup: float, seconds: float) -> Window:
    """Starts ref, lets it warm up, counts over `seconds`, stops it."""
    ref.start(ctx)
    try:
        time.sleep(warmup)
        a = ref.counters()
        time.sleep(seconds)
        b = ref.counters()
        extra = ref.extra()
    finally:
        ref.stop()
    dt = b.t - a.t
    rx, tx = b.rx - a.rx, b.tx - a.tx
    if rx <= 0 or tx <= 0:
        raise Unavailable(f"{ref.label}: nothing forwarded in the window (rx {rx}, tx {tx})")
    return Window(mpps=tx / dt / 1e6, rx_mpps=rx / dt / 1e6,
                  drop_ratio=max(0.0, 1.0 - tx / rx), seconds=dt, extra=extra)


def pod_preflight(name: str, why_root: str, tools: dict[str, str]) -> Optional[str]:
    """What keeps a pod scenario from running here (not root; a tool missing: tool ->
    its Debian package), as the message to print; None when nothing does."""
    if os.geteuid() != 0:
        return f"{name}: run as root ({why_root})"
    for tool, package in tools.items():
        if shutil.which(tool) is None:
            return f"{name}: {tool} missing (apt-get install -y {package})"
    return None


def run_pod_scenario(name: str, why_root: str, tools: dict[str, str], run, report, args,
                     out_dir: Path, stem: str, log) -> int:
    """A pod scenario's main: the preflight (exit 2 with its message), run(runs, seconds, log)
    for the raw results, report(res) for the text, both written (write_report)."""
    why = pod_preflight(name, why_root, tools)
    if why is not None:
        print(why, file=sys.stderr)
        return 2
    res = run(args.runs, args.seconds, log)
    write_report(out_dir, stem, res, report(res), log)
    return 0


def write_report(out_dir: Path, stem: str, res: dict, text: str, log) -> None:
    """A pod scenario's results: <stem>.json (raw) and <stem>.md (text), then text printed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2))
    (out_dir / f"{stem}.md").write_text(text)
    log(f"wrote {out_dir / (stem + '.md')} and .json")
    print(text)
