"""OVS-DPDK 3.1 (Debian's openvswitch-switch-dpdk) doing a router's job with
OpenFlow rules, as a reference point.

A private instance per start(): everything lives in <scratch>/ovs (database,
sockets, pid files, logs); ovsdb-server and ovs-vswitchd-dpdk are children of
the harness (common.Proc, no --detach), ended by PID in stop(). ovs-vswitchd
runs in a network namespace of its own (`unshare --net`, when available) so
the tap devices of the userspace datapath (ovs-netdev, the bridge's local
port) never appear on the host; the namespace dies with the process.

DPDK: dpdk-lcore-mask 0x1 (main lcore on core 0), pmd-cpu-mask 0x2 (one PMD
thread on core 1), EAL extra `--in-memory --no-pci --file-prefix <unique>`,
hugepage use capped by dpdk-socket-limit (memory allocated on demand), and
per-port-memory=true: the port gets its own mempool of
n_rxq*rxq_size + n_txq*txq_size + 32 + 16384 mbufs (~22k with the default
2048 descriptors; the whole instance took ~35 hugepages of 2 MB) instead of
the shared model's 262144-mbuf pool (~650 MB at MTU 1500, which OVS would
halve until it fits). The pcap PMD's infinite_rx keeps one mbuf per packet of
the pcap in its ring for good (rx queue setup fails with "Not enough mbufs"
otherwise) plus a burst per RX call: fine for the scenarios' 4096 packets,
tried up to 20000; 30000 fails (the port then reports an error).

The port: bridge datapath_type=netdev, fail_mode=secure (no NORMAL flow), one
Interface type=dpdk with dpdk-devargs "net_pcap0,rx_pcap=<pcap>,infinite_rx=1".
Flows: one per route, priority BASE + prefix length, `ip,nw_dst=P` or
`ipv6,ipv6_dst=P`; actions mod_dl_src:DUT_MAC, mod_dl_dst:<next-hop MAC>,
dec_ttl, in_port (back out of the only device); blackholed local blocks:
drop. Default route: the bare `ip` / `ipv6` match at priority BASE. Table
miss: drop (secure mode). Everything else is OVS's default (EMC on with
emc-insert-inv-prob 100, SMC off, megaflows on).

counters(): ethdev stats of the port read over the DPDK telemetry socket of
the vswitchd process (no subprocess); `ovs-ofctl dump-ports` if that fails.
Each call also snapshots `dpif-netdev/pmd-stats-show` of the core-1 PMD.

extra(), from the difference of the last two snapshots (the window):
  pmd_cycles_per_pkt   processing cycles / packets received (TSC cycles)
  pmd_busy             processing / (processing + idle) cycles
  pmd_cpu_share        time the PMD thread was on its core / wall time (from
                       /proc/<pid>/task/<tid>/schedstat); below 1 when other
                       processes share core 1, and then pmd_cycles_per_pkt
                       (TSC cycles between OVS's timestamps) includes the
                       preempted time
  pmd_oncpu_cycles_per_pkt
                       on-core time * TSC Hz / packets received: the cost per
                       packet without the preemptions
  pmd_sys_share        share of the PMD thread's ticks spent in the kernel
                       (utime/stime of /proc/.../stat): interrupts and softirqs
                       of other traffic that ran on core 1 in its time (OVS's
                       PMD itself makes no system calls in the loop)
  pmd_user_cycles_per_pkt
                       pmd_oncpu_cycles_per_pkt * (1 - pmd_sys_share)
  emc_hit, smc_hit, megaflow_hit, simple_match_hit
                       share of the PMD's received packets that hit each cache
  upcalls              misses that went to the slow path (success + failed)
  megaflows            datapath flows installed at the end of the window
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from . import common
from .common import Counters, Ctx, Proc, Reference, Unavailable

VSWITCHD = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
PCAP_PMD_GLOB = "/usr/lib/*/dpdk/pmds-*/librte_net_pcap.so*"

# tool -> Debian package providing it
TOOLS = {
    VSWITCHD: "openvswitch-switch-dpdk",
    "ovsdb-server": "openvswitch-common",
    "ovsdb-tool": "openvswitch-common",
    "ovs-vsctl": "openvswitch-switch",
    "ovs-ofctl": "openvswitch-common",
    "ovs-appctl": "openvswitch-common",
}

BRIDGE = "brperf"
PORT = "pcap0"
PRIO_BASE = 1000
SOCKET_LIMIT_MB = 512
START_TIMEOUT = 60.0


def _which(tool: str) -> Optional[str]:
    if tool.startswith("/"):
        return tool if os.access(tool, os.X_OK) else None
    return shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.access(p, os.X_OK)), None)


def flow_lines(table: common.Table, ingress_action: str = "in_port") -> list[str]:
    """One OpenFlow rule per route of the table (ovs-ofctl add-flows syntax)."""
    ip, dst = ("ip", "nw_dst") if table.family == 4 else ("ipv6", "ipv6_dst")
    out = []
    for r in table.routes:
        plen = int(r.prefix.split("/")[1])
        match = f"priority={PRIO_BASE + plen},{ip}"
        if plen > 0:
            match += f",{dst}={r.prefix}"
        if r.kind == "local-block":
            actions = "drop"
        else:
            actions = (f"mod_dl_src:{common.DUT_MAC},mod_dl_dst:{r.mac},dec_ttl,"
                       f"{ingress_action}")
        out.append(f"{match},actions={actions}")
    return out


def parse_pmd_stats(text: str, core: int = common.FWD_CORE) -> dict[str, float]:
    """The counters of the PMD thread on `core` in pmd-stats-show output."""
    out: dict[str, float] = {}
    inside = False
    for line in text.splitlines():
        if not line.startswith(" "):
            inside = bool(re.search(rf"\bcore_id {core}:", line))
            continue
        if not inside or ":" not in line:
            continue
        k, v = line.split(":", 1)
        m = re.match(r"\s*([0-9.]+)", v)
        if m:
            out[k.strip()] = float(m.group(1))
    return out


class OvsDpdk(Reference):
    key = "ovs-dpdk"
    label = "OVS-DPDK 3.1"

    _seq = 0

    def __init__(self, tx_pcap: Optional[Path] = None):
        super().__init__()
        # tx_pcap: write forwarded packets there instead of dropping them
        # (checking the forwarding; far slower, not for measuring).
        self.tx_pcap = tx_pcap
        self._dir: Optional[Path] = None
        self._env: dict = {}
        self._db: Optional[Proc] = None
        self._sw: Optional[Proc] = None
        self._prefix: Optional[str] = None
        self._port_id: Optional[int] = None
        self._snaps: list[dict[str, float]] = []
        self._megaflows: Optional[int] = None
        self._tools: dict[str, str] = {}
        self._pmd_tid: Optional[int] = None
        self._tsc: Optional[float] = None
        self._nat = False

    # --- hooks --------------------------------------------------------------------

    def prepare(self, ctx: Ctx) -> None:
        missing = []
        for tool, pkg in TOOLS.items():
            path = _which(tool)
            if path is None:
                missing.append(f"{tool} (package {pkg})")
            else:
                self._tools[tool] = path
        if not Path(SCHEMA).is_file():
            missing.append(f"{SCHEMA} (package openvswitch-switch)")
        import glob
        if not glob.glob(PCAP_PMD_GLOB):
            missing.append("the DPDK pcap PMD librte_net_pcap.so (package librte-net-pcap23)")
        if missing:
            raise Unavailable("OVS-DPDK: missing " + ", ".join(missing))

    def start(self, ctx: Ctx) -> None:
        if not self._tools:
            self.prepare(ctx)
        self.stop()      # a leftover of an earlier start
        OvsDpdk._seq += 1
        self._prefix = f"ovsperf{os.getpid()}x{OvsDpdk._seq}"
        self._snaps = []
        self._megaflows = None
        self._port_id = None
        self._pmd_tid = None
        if self._tsc is None:
            try:
                self._tsc = common.tsc_hz()
            except Exception:
                self._tsc = None
        d = ctx.scratch / "ovs"
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():            # a fresh database and fresh logs each start
            if f.is_file() or f.is_socket():
                f.unlink()
        self._dir = d
        self._env = dict(os.environ, OVS_RUNDIR=str(d), OVS_DBDIR=str(d),
                         OVS_LOGDIR=str(d), OVS_SYSCONFDIR=str(d))
        try:
            self._start(ctx, d)
        except Unavailable:
            self.stop()
            raise
        except Exception as e:       # a failed ovs-* command: report it with the log
            tail = self._log_tail()
            self.stop()
            raise Unavailable(f"OVS-DPDK: {e}\n{tail}") from e

    def _start(self, ctx: Ctx, d: Path) -> None:
        db = d / "conf.db"
        self._run("ovsdb-tool", "create", str(db), SCHEMA)
        self._db = Proc([self._tools["ovsdb-server"], str(db),
                         f"--remote=punix:{d / 'db.sock'}",
                         f"--unixctl={d / 'ovsdb-server.ctl'}",
                         f"--pidfile={d / 'ovsdb-server.pid'}",
                         f"--log-file={d / 'ovsdb-server.log'}",
                         "-vsyslog:off", "-vconsole:warn", "--no-chdir"],
                        d / "ovsdb-server.out", env=self._env)
        self._wait(lambda: (d / "db.sock").exists(), self._db, "ovsdb-server", 10, "its socket")

        extra = f"--in-memory --no-pci --file-prefix {self._prefix}"
        cfg = {
            "dpdk-init": "true",
            "dpdk-extra": extra,
            "dpdk-lcore-mask": hex(1 << common.MAIN_CORE),
            "pmd-cpu-mask": hex(1 << common.FWD_CORE),
            "dpdk-socket-limit": str(SOCKET_LIMIT_MB),
            "per-port-memory": "true",
        }
        self._vsctl("--no-wait", "init", "--", "set", "Open_vSwitch", ".",
                    *[f'other_config:{k}="{v}"' for k, v in cfg.items()])

        argv = [self._tools[VSWITCHD], f"unix:{d / 'db.sock'}",
                f"--pidfile={d / 'ovs-vswitchd.pid'}",
                f"--unixctl={d / 'ovs-vswitchd.ctl'}",
                f"--log-file={d / 'ovs-vswitchd.log'}",
                "-vsyslog:off", "-vconsole:warn", "--no-chdir"]
        unshare = shutil.which("unshare")
        netns = unshare is not None and subprocess.run(
            [unshare, "--net", "true"], capture_output=True).returncode == 0
        if netns:
            argv = [unshare, "--net", "--"] + argv      # unshare execs: same PID
        self._sw = Proc(argv, d / "ovs-vswitchd.out", env=self._env)

        def dpdk_up() -> bool:
            r = subprocess.run(self._vsctl_argv("--timeout=2", "get", "Open_vSwitch", ".",
                                                "dpdk_initialized"),
                               capture_output=True, text=True, env=self._env)
            return r.stdout.strip() == "true"
        self._wait(dpdk_up, self._sw, "ovs-vswitchd", START_TIMEOUT, "DPDK initialisation")

        self._vsctl("--timeout=60", "add-br", BRIDGE, "--", "set", "Bridge", BRIDGE,
                    "datapath_type=netdev", "fail_mode=secure")
        flows = d / "flows.txt"
        custom = ctx.scenario.ovs_flow_lines(ctx.table)
        lines, flows_note = custom if custom is not None else (flow_lines(ctx.table), None)
        self._nat = custom is not None
        flows.write_text("\n".join(lines) + "\n")
        self._run("ovs-ofctl", "add-flows", f"unix:{d / (BRIDGE + '.mgmt')}", str(flows))

        devargs = f"net_pcap0,rx_pcap={ctx.pcap},infinite_rx=1"
        if self.tx_pcap is not None:
            devargs += f",tx_pcap={self.tx_pcap}"
        self._vsctl("--timeout=60", "add-port", BRIDGE, PORT, "--", "set", "Interface", PORT,
                    "type=dpdk", f'options:dpdk-devargs="{devargs}"', "ofport_request=1")
        err = self._vsctl("get", "Interface", PORT, "error").stdout.strip()
        if err and err != "[]":
            raise Unavailable(f"OVS-DPDK: port {PORT}: {err}\n{self._log_tail()}")

        end = time.monotonic() + START_TIMEOUT
        while True:
            if not self._sw.alive():
                raise Unavailable(f"OVS-DPDK: ovs-vswitchd exited ({self._sw.p.returncode})"
                                  f"\n{self._log_tail()}")
            try:
                if self._read_counters().tx > 0:
                    break
            except Exception:
                pass
            if time.monotonic() > end:
                raise Unavailable(f"OVS-DPDK: no packets forwarded within "
                                  f"{START_TIMEOUT:.0f} s\n{self._log_tail()}")
            time.sleep(0.2)

        self.notes = [
            f"OVS-DPDK {self._version()}: private ovsdb-server + ovs-vswitchd-dpdk"
            f"{' (own network namespace)' if netns else ''}; "
            f"dpdk-lcore-mask {cfg['dpdk-lcore-mask']}, pmd-cpu-mask {cfg['pmd-cpu-mask']} "
            f"(one PMD on core {common.FWD_CORE}), dpdk-extra '{extra.rsplit(' ', 1)[0]} <prefix>', "
            f"dpdk-socket-limit {SOCKET_LIMIT_MB} MB, per-port-memory=true "
            f"(port mempool ~22k mbufs; the pcap PMD's infinite_rx holds "
            f"{ctx.scenario.packets} of them)",
            f"{len(lines)} OpenFlow rules (one per route, priority {PRIO_BASE}+prefix length, "
            f"mod_dl_src/mod_dl_dst/dec_ttl/in_port; local blocks drop), bridge fail_mode=secure; "
            f"OVS defaults otherwise: EMC on (emc-insert-inv-prob 100 = 1/100 inserts), "
            f"SMC off, megaflows on, 1 rxq",
        ]
        if flows_note:
            self.notes.append(f"{ctx.scenario.name}: {flows_note}")

    def counters(self) -> Counters:
        c = self._read_counters()
        try:
            snap = self._pmd_stats()
        except Exception:
            snap = {}
        oncpu = self._pmd_oncpu_ns()
        if oncpu is not None:
            snap["oncpu ns"] = oncpu
            snap["wall ns"] = time.monotonic_ns()
            ticks = self._pmd_ticks()
            if ticks is not None:
                snap["utime"], snap["stime"] = ticks
        self._snaps.append(snap)
        return c

    def extra(self) -> dict:
        try:
            r = self._appctl("upcall/show")
            m = re.search(r"flows\s*:\s*\(current (\d+)\)", r.stdout)
            self._megaflows = int(m.group(1)) if m else None
        except Exception:
            pass
        out: dict = {}
        if self._megaflows is not None:
            out["megaflows"] = self._megaflows
        if self._nat:
            try:   # its conntrack's connections (the NAT scenarios)
                r = self._appctl("dpctl/ct-stats-show")
                m = re.search(r"Total:\s*(\d+)", r.stdout)
                if m:
                    out["ct_connections"] = int(m.group(1))
            except Exception:
                pass
        if len(self._snaps) < 2:
            return out
        a, b = self._snaps[-2], self._snaps[-1]
        dif = lambda k: b.get(k, 0.0) - a.get(k, 0.0)
        pkts = dif("packets received")
        passes = pkts + dif("packet recirculations")
        proc, idle = dif("processing cycles"), dif("idle cycles")
        if pkts > 0:
            out["pmd_cycles_per_pkt"] = round(proc / pkts, 1)
        if proc + idle > 0:
            out["pmd_busy"] = round(proc / (proc + idle), 4)
        if passes > 0:
            for key, stat in (("emc_hit", "emc hits"), ("smc_hit", "smc hits"),
                              ("megaflow_hit", "megaflow hits"),
                              ("simple_match_hit", "simple match hits")):
                if stat in b:
                    out[key] = round(dif(stat) / passes, 4)
        if "oncpu ns" in a and "oncpu ns" in b:
            on, wall = dif("oncpu ns"), dif("wall ns")
            if wall > 0:
                out["pmd_cpu_share"] = round(on / wall, 3)
            if pkts > 0 and self._tsc:
                out["pmd_oncpu_cycles_per_pkt"] = round(on * 1e-9 * self._tsc / pkts, 1)
            ut, st = dif("utime"), dif("stime")
            if "utime" in a and "utime" in b and ut + st > 0:
                out["pmd_sys_share"] = round(st / (ut + st), 3)
                if "pmd_oncpu_cycles_per_pkt" in out:
                    out["pmd_user_cycles_per_pkt"] = round(
                        out["pmd_oncpu_cycles_per_pkt"] * ut / (ut + st), 1)
        out["upcalls"] = int(dif("miss with success upcall") + dif("miss with failed upcall"))
        return out

    def stop(self) -> None:
        sw, db = self._sw, self._db
        self._sw = self._db = None
        if sw is not None:
            if sw.alive() and self._dir is not None:
                # removes the bridge from the datapath and closes the DPDK port
                subprocess.run(self._appctl_argv("exit", "--cleanup"), capture_output=True,
                               env=self._env, timeout=30)
                try:
                    sw.p.wait(20)
                except subprocess.TimeoutExpired:
                    pass
            sw.stop(signal.SIGTERM)
        if db is not None:
            db.stop(signal.SIGTERM)
        if self._dir is not None and self._dir.is_dir():
            for f in self._dir.iterdir():
                if f.is_socket() or f.suffix in (".pid", ".ctl", ".mgmt", ".snoop", ".sock"):
                    try:
                        f.unlink()
                    except OSError:
                        pass
        if self._prefix:
            common.remove_runtime_dir(self._prefix)

    # --- helpers ------------------------------------------------------------------

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        return common.run([self._tools.get(tool, tool), *args], env=self._env, timeout=90)

    def _vsctl_argv(self, *args: str) -> list[str]:
        return [self._tools["ovs-vsctl"], f"--db=unix:{self._dir / 'db.sock'}", *args]

    def _vsctl(self, *args: str) -> subprocess.CompletedProcess:
        return common.run(self._vsctl_argv(*args), env=self._env, timeout=90)

    def _appctl_argv(self, *args: str) -> list[str]:
        return [self._tools["ovs-appctl"], "-t", str(self._dir / "ovs-vswitchd.ctl"),
                "--timeout=10", *args]

    def _appctl(self, *args: str) -> subprocess.CompletedProcess:
        return common.run(self._appctl_argv(*args), env=self._env, timeout=20)

    def _pmd_stats(self) -> dict[str, float]:
        return parse_pmd_stats(self._appctl("dpif-netdev/pmd-stats-show").stdout)

    def _pmd_oncpu_ns(self) -> Optional[int]:
        """Time the PMD thread has run, in ns (None if it cannot be told)."""
        if self._sw is None:
            return None
        if self._pmd_tid is None:
            self._pmd_tid = common.find_thread(self._sw.pid, "pmd-c")
        return common.thread_oncpu_ns(self._sw.pid, self._pmd_tid)

    def _pmd_ticks(self) -> Optional[tuple[int, int]]:
        """utime and stime of the PMD thread, in clock ticks."""
        try:
            stat = Path(f"/proc/{self._sw.pid}/task/{self._pmd_tid}/stat").read_text()
            f = stat.rsplit(")", 1)[1].split()
            return int(f[11]), int(f[12])
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def _wait(self, cond, proc: Proc, name: str, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not proc.alive():
                raise Unavailable(f"OVS-DPDK: {name} exited ({proc.p.returncode}) waiting for "
                                  f"{what}\n{self._log_tail()}")
            if cond():
                return
            time.sleep(0.1)
        raise Unavailable(f"OVS-DPDK: no {what} within {timeout:.0f} s\n{self._log_tail()}")

    def _read_counters(self) -> Counters:
        if self._prefix:
            try:
                if self._port_id is None:
                    ports = common.telemetry(self._prefix, "/ethdev/list")["/ethdev/list"]
                    self._port_id = ports[0]
                return common.ethdev_counters(self._prefix, self._port_id)
            except (OSError, KeyError, ValueError, IndexError, TypeError):
                pass
        r = self._run("ovs-ofctl", "dump-ports", f"unix:{self._dir / (BRIDGE + '.mgmt')}", "1")
        t = time.monotonic()
        rx = re.search(r"rx pkts=(\d+)", r.stdout)
        tx = re.search(r"tx pkts=(\d+)", r.stdout)
        if not rx or not tx:
            raise RuntimeError(f"cannot parse ovs-ofctl dump-ports: {r.stdout[-300:]}")
        return Counters(rx=int(rx.group(1)), tx=int(tx.group(1)), t=t)

    def _log_tail(self, n: int = 12) -> str:
        """The last warnings/errors and the last lines of the vswitchd log."""
        if self._dir is None:
            return ""
        time.sleep(0.2)        # let the daemon write what it was saying
        for name in ("ovs-vswitchd.log", "ovs-vswitchd.out", "ovsdb-server.log"):
            p = self._dir / name
            try:
                lines = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                bad = [l for l in lines if re.search(r"\|(WARN|ERR|EMER)\|", l)
                       and "xlate_key failed" not in l][-n:]
                last = [l for l in lines[-n:] if l not in bad]
                return f"[{p}]\n" + "\n".join(bad + (["..."] if bad and last else []) + last)
        return ""

    def _version(self) -> str:
        try:
            out = common.run([self._tools[VSWITCHD], "--version"]).stdout
            ovs = re.search(r"\(Open vSwitch\) (\S+)", out)
            dpdk = re.search(r"DPDK (\S+)", out)
            return f"{ovs.group(1) if ovs else '?'} (DPDK {dpdk.group(1) if dpdk else '?'})"
        except Exception:
            return "?"
