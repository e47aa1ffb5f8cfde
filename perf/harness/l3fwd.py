"""DPDK's l3fwd example as a reference: `L3fwd("lpm")` and `L3fwd("fib")`.

prepare() copies the l3fwd source Debian's dpdk-doc ships
(/usr/share/dpdk/examples/l3fwd, plus ../common it includes) into the scratch
folder, patches the copy so it runs on the harness's single pcap device with
the Calico route tables, and builds it against the installed libdpdk with its
own Makefile. The binary is cached under scratch/l3fwd-src-<hash>, the hash
covering the patch version, the pristine sources and the generated route
tables, so a second prepare() is a directory lookup.

One binary holds both tables (l3fwd always installs its IPv4 and IPv6 arrays,
in LPM as in FIB mode): the scenario's own table (ctx.table) and the other
family's table made by common.calico_table() with the scenario's seed.

Every patch looks for its anchor text and raises Unavailable naming the patch
when it is missing, so another DPDK version fails loudly instead of building
something else. Each patch adds a line to self.notes.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from . import common
from .common import Counters, Ctx, Proc, Reference, Unavailable

EXAMPLES = Path("/usr/share/dpdk/examples")    # Debian's dpdk-doc
PATCH_VERSION = 1                              # bump when a patch below changes

LPM_MAX_RULES = 4096        # stock: 1024 per family, fewer than the ~1135 Calico routes
LPM4_TBL8S = 1 << 12        # stock: 256, exactly the /24s of the /16 pool: no headroom
MEM_MB = 512                # hugepages are shared with the other references
RX_RING_EXTRA = 1024        # --rx-queue-size = held pcap mbufs + a normal RX ring
LOOKUP_TAG = "L3FWD-PERF:"  # the line patch "lookup-log" prints


# --- the route tables, as C initialisers --------------------------------------------

def _v4_entries(routes: list[common.Route]) -> list[str]:
    out = []
    for r in routes:
        if r.kind == "default":
            continue
        net = ipaddress.IPv4Network(r.prefix)
        a, b, c, d = net.network_address.packed
        out.append(f"\t{{RTE_IPV4({a}, {b}, {c}, {d}), {net.prefixlen}, 0}},")
    return out


def _v6_entries(routes: list[common.Route]) -> list[str]:
    out = []
    for r in routes:
        if r.kind == "default":
            continue
        net = ipaddress.IPv6Network(r.prefix)
        octets = ", ".join(str(x) for x in net.network_address.packed)
        out.append(f"\t{{{{{octets}}}, {net.prefixlen}, 0}},")
    return out


def _tables(ctx: Ctx) -> dict[int, list[common.Route]]:
    """Routes per family: the scenario's own table, the other family's made the
    same way (same seed); only the routes matter, not the destinations."""
    sc = ctx.scenario
    tables = {}
    for fam in (4, 6):
        if ctx.table is not None and ctx.table.family == fam:
            tables[fam] = ctx.table.routes
        else:
            tables[fam] = common.calico_table(fam, sc.packets, sc.seed).routes
    return tables


# --- patching ---------------------------------------------------------------------------

class _Tree:
    """The scratch copy being patched."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, rel: str) -> Path:
        return self.root / "l3fwd" / rel

    def replace(self, patch: str, rel: str, old: str, new: str) -> None:
        """Replaces the one occurrence of `old`; fails naming the patch otherwise."""
        p = self._path(rel)
        text = p.read_text()
        n = text.count(old)
        if n != 1:
            raise Unavailable(
                f"l3fwd patch '{patch}': anchor {old.strip()[:70]!r} found {n} times in "
                f"{rel} (expected once): not the DPDK 22.11 l3fwd this harness patches")
        p.write_text(text.replace(old, new, 1))

    def replace_block(self, patch: str, rel: str, start: str, end: str, new: str) -> None:
        """Replaces from `start` (once in the file) to the first `end` after it."""
        p = self._path(rel)
        text = p.read_text()
        if text.count(start) != 1:
            raise Unavailable(f"l3fwd patch '{patch}': anchor {start!r} not found once in {rel}")
        i = text.index(start)
        j = text.find(end, i)
        if j < 0:
            raise Unavailable(f"l3fwd patch '{patch}': no {end!r} after {start!r} in {rel}")
        p.write_text(text[:i] + new + text[j + len(end):])


def _apply_patches(tree: _Tree, tables: dict[int, list[common.Route]]) -> None:
    """Every change made to the stock example (the descriptions are in _notes())."""
    # 1. no RX checksum offload: the pcap PMD offers none, configure fails (-EINVAL)
    tree.replace("rx-checksum", "main.c",
                 "\t\t.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,\n",
                 "\t\t.offloads = 0, /* perf: the pcap PMD has no RX checksum offload */\n")

    # 2. one TX queue per lcore that polls RX, not per enabled lcore: the main
    #    lcore (0) forwards nothing, and the pcap PMD (rx_pcap only) has one TX queue.
    tree.replace("tx-queues", "main.c",
                 "\t\tn_tx_queue = nb_lcores;\n",
                 "\t\tn_tx_queue = 0; /* perf: TX queues only for lcores that poll RX */\n"
                 "\t\tfor (lcore_id = 0; lcore_id < RTE_MAX_LCORE; lcore_id++)\n"
                 "\t\t\tif (rte_lcore_is_enabled(lcore_id) &&\n"
                 "\t\t\t    lcore_conf[lcore_id].n_rx_queue > 0)\n"
                 "\t\t\t\tn_tx_queue++;\n")
    tree.replace("tx-queues", "main.c",
                 "\t\t\tif (rte_lcore_is_enabled(lcore_id) == 0)\n"
                 "\t\t\t\tcontinue;\n\n"
                 "\t\t\tif (numa_on)\n",
                 "\t\t\tif (rte_lcore_is_enabled(lcore_id) == 0 ||\n"
                 "\t\t\t    lcore_conf[lcore_id].n_rx_queue == 0) /* perf */\n"
                 "\t\t\t\tcontinue;\n\n"
                 "\t\t\tif (numa_on)\n")

    # 3. the routes: the Calico tables instead of the 16 RFC 2544 routes per family
    v4, v6 = _v4_entries(tables[4]), _v6_entries(tables[6])
    tree.replace_block(
        "routes", "main.c",
        "const struct ipv4_l3fwd_route ipv4_l3fwd_route_array[] = {\n", "\n};\n",
        "/* perf: the Calico IPv4 table (default route left out: depth 0) */\n"
        "const struct ipv4_l3fwd_route ipv4_l3fwd_route_array[] = {\n"
        + "\n".join(v4) + "\n};\n")
    tree.replace_block(
        "routes", "main.c",
        "const struct ipv6_l3fwd_route ipv6_l3fwd_route_array[] = {\n", "\n};\n",
        "/* perf: the Calico IPv6 table (default route left out: depth 0) */\n"
        "const struct ipv6_l3fwd_route ipv6_l3fwd_route_array[] = {\n"
        + "\n".join(v6) + "\n};\n")
    tree.replace("routes", "l3fwd_route.h",
                 "extern const struct ipv4_l3fwd_route ipv4_l3fwd_route_array[16];\n",
                 f"extern const struct ipv4_l3fwd_route ipv4_l3fwd_route_array[{len(v4)}];\n")
    tree.replace("routes", "l3fwd_route.h",
                 "extern const struct ipv6_l3fwd_route ipv6_l3fwd_route_array[16];\n",
                 f"extern const struct ipv6_l3fwd_route ipv6_l3fwd_route_array[{len(v6)}];\n")

    # 4. LPM limits: room for all the routes (FIB's 65536 routes / 32768 tbl8s suffice)
    tree.replace("lpm-limits", "l3fwd_lpm.c",
                 "#define IPV4_L3FWD_LPM_MAX_RULES         1024\n",
                 f"#define IPV4_L3FWD_LPM_MAX_RULES         {LPM_MAX_RULES} /* perf */\n")
    tree.replace("lpm-limits", "l3fwd_lpm.c",
                 "#define IPV4_L3FWD_LPM_NUMBER_TBL8S (1 << 8)\n",
                 f"#define IPV4_L3FWD_LPM_NUMBER_TBL8S {LPM4_TBL8S} /* perf */\n")
    tree.replace("lpm-limits", "l3fwd_lpm.c",
                 "#define IPV6_L3FWD_LPM_MAX_RULES         1024\n",
                 f"#define IPV6_L3FWD_LPM_MAX_RULES         {LPM_MAX_RULES} /* perf */\n")

    # 5. log the lookup function rte_fib / rte_fib6 chose. Selecting the AVX-512
    #    one succeeds exactly when the default selection already took it (AVX-512F
    #    and a max SIMD bitwidth >= 512) and changes nothing when it fails.
    tree.replace("lookup-log", "l3fwd_fib.c",
                 "\t/* Populate the fib IPv6 table. */\n",
                 "\t/* perf: which lookup did the library pick? */\n"
                 f"\tprintf(\"{LOOKUP_TAG} FIB lookup %s, FIB6 lookup %s\\n\",\n"
                 "\t       rte_fib_select_lookup(ipv4_l3fwd_fib_lookup_struct[socketid],\n"
                 "\t\t\tRTE_FIB_LOOKUP_DIR24_8_VECTOR_AVX512) == 0 ? \"avx512\" : \"scalar\",\n"
                 "\t       rte_fib6_select_lookup(ipv6_l3fwd_fib_lookup_struct[socketid],\n"
                 "\t\t\tRTE_FIB6_LOOKUP_TRIE_VECTOR_AVX512) == 0 ? \"avx512\" : \"scalar\");\n\n"
                 "\t/* Populate the fib IPv6 table. */\n")


def _notes(tables: dict[int, list[common.Route]]) -> list[str]:
    n4, n6 = len(_v4_entries(tables[4])), len(_v6_entries(tables[6]))
    lb = sum(1 for r in tables[4] if r.kind == "local-block")
    return [
        "l3fwd patch rx-checksum: no RX checksum offload requested (the pcap PMD has none; "
        "rte_eth_dev_configure refuses it)",
        "l3fwd patch tx-queues: a TX queue only for the lcore that polls RX (stock l3fwd wants "
        "one per enabled lcore, 2; the pcap PMD has 1)",
        f"l3fwd patch routes: the built-in 16 routes per family replaced by the Calico tables "
        f"({n4} IPv4 + {n6} IPv6 routes, one binary for LPM and FIB), all to port 0",
        f"l3fwd routes: the {lb} local-block routes (blackholes in Calico) also go to port 0: "
        "l3fwd has no blackhole; no packet of the set hits one without a pod route inside",
        "l3fwd routes: no default route (rte_lpm/rte_lpm6 refuse depth 0); on a miss l3fwd "
        "sends the packet back out of its input port (LPM: lookup default = portid; FIB: "
        "default_nh 999 -> portid): port 0, the same as the default route with one port",
        f"l3fwd patch lpm-limits: LPM max rules 1024 -> {LPM_MAX_RULES} per family, IPv4 "
        f"tbl8 groups 256 -> {LPM4_TBL8S} (FIB/FIB6 limits are large enough as shipped)",
        "l3fwd patch lookup-log: prints which rte_fib/rte_fib6 lookup the library chose "
        "(observational, no change of lookup)",
        "l3fwd mbufs: no patch; --rx-queue-size=<packets + 1024> puts the pcap mbufs that "
        "infinite_rx holds into l3fwd's NB_MBUF sizing (pool = max(8192, RX ring + TX ring "
        "+ bursts + caches): 8192 for 4096 packets, 4096 held + 4096 for bursts and caches)",
        "l3fwd options: --parse-ptype (pcap gives no packet types: a software RX callback "
        "sets them, in both modes), --eth-dest=0,<gateway MAC>, --force-max-simd-bitwidth=512 "
        "(lets FIB/FIB6 pick AVX-512), -m 512",
        "l3fwd as shipped: every packet gets port 0's destination MAC (no per-next-hop MAC); "
        "IPv4 TTL decremented with an incremental checksum update; the IPv6 hop limit is "
        "not decremented",
    ]


# --- build ---------------------------------------------------------------------------------

def _source_digest() -> str:
    h = hashlib.sha256()
    for d in ("l3fwd", "common"):
        for f in sorted((EXAMPLES / d).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(EXAMPLES)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def _build_key(tables: dict[int, list[common.Route]]) -> str:
    h = hashlib.sha256()
    h.update(f"patch {PATCH_VERSION}\n".encode())
    h.update(_source_digest().encode())
    h.update("\n".join(_v4_entries(tables[4])).encode())
    h.update("\n".join(_v6_entries(tables[6])).encode())
    return h.hexdigest()[:16]


class L3fwd(Reference):
    MODES = {"lpm": "l3fwd LPM", "fib": "l3fwd FIB"}

    def __init__(self, mode: str):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"l3fwd lookup mode {mode!r}: one of {', '.join(self.MODES)}")
        self.mode = mode
        self.key = f"l3fwd-{mode}"
        self.label = self.MODES[mode]
        self.binary: Optional[Path] = None
        self.build_seconds = 0.0            # 0 when the cached binary was used
        self._proc: Optional[Proc] = None
        self._log_path: Optional[Path] = None
        self._expected_routes = (0, 0)
        self.routes_added = (0, 0)
        self._prefix = ""
        self._log_from = 0
        self._family = 4
        self._marks: list = []                  # (Counters, fwd thread CPU ns) x 2
        self._fwd_tid: Optional[int] = None

    # -- prepare ------------------------------------------------------------------------------

    def prepare(self, ctx: Ctx) -> None:
        for d in ("l3fwd", "common"):
            if not (EXAMPLES / d).is_dir():
                raise Unavailable(f"{EXAMPLES / d} missing (install dpdk-doc)")
        if not shutil.which("make") or not shutil.which("pkg-config"):
            raise Unavailable("make and pkg-config are needed to build l3fwd")
        if subprocess.run(["pkg-config", "--exists", "libdpdk"]).returncode != 0:
            raise Unavailable("pkg-config finds no libdpdk (install libdpdk-dev)")
        tables = _tables(ctx)
        self.notes[:] = _notes(tables)
        self._expected_routes = (len(_v4_entries(tables[4])), len(_v6_entries(tables[6])))
        key = _build_key(tables)
        root = ctx.scratch / f"l3fwd-src-{key}"
        binary = root / "l3fwd" / "build" / "l3fwd-shared"
        if binary.is_file() and os.access(binary, os.X_OK):
            self.binary = binary
            self.build_seconds = 0.0
            ctx.log(f"{self.label}: cached build {binary}")
            return
        ctx.log(f"{self.label}: building patched l3fwd in {root}")
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f"l3fwd-src-{key}.", dir=ctx.scratch))
        try:
            shutil.copytree(EXAMPLES / "l3fwd", tmp / "l3fwd")
            shutil.copytree(EXAMPLES / "common", tmp / "common")   # Makefile: -I../common
            _apply_patches(_Tree(tmp), tables)
            # shared: the static link fails here (-lsystemd: libsystemd-dev is not installed)
            r = subprocess.run(["make", "-C", str(tmp / "l3fwd"), "shared"],
                               capture_output=True, text=True)
            (tmp / "build.log").write_text(r.stdout + r.stderr)
            if r.returncode != 0:
                raise Unavailable(f"l3fwd build failed (make exit {r.returncode}): "
                                  f"{(r.stderr or r.stdout).strip()[-800:]}")
            try:
                tmp.rename(root)                     # atomic: a whole tree or none
            except OSError:
                if not binary.is_file():             # lost a race: use the winner's
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self.binary = binary
        self.build_seconds = time.monotonic() - t0
        ctx.log(f"{self.label}: built in {self.build_seconds:.1f} s")

    # -- run ----------------------------------------------------------------------------------

    def argv(self, ctx: Ctx, prefix: str, pcap_vdev_extra: str = "") -> list[str]:
        """The command line (pcap_vdev_extra: e.g. ",tx_pcap=out.pcap" for a check)."""
        eal = common.eal_args(prefix, ctx.pcap)
        if pcap_vdev_extra:
            i = eal.index("--vdev") + 1
            eal[i] += pcap_vdev_extra
        # stdbuf: line-buffered stdout, so the log has every route line once TX flows
        # (stdbuf execs l3fwd: the PID stays l3fwd's)
        return (["stdbuf", "-oL", "-eL", str(self.binary)] + eal
                + ["-m", str(MEM_MB), "--force-max-simd-bitwidth=512", "--",
                   "-p", "0x1", f"--config=(0,0,{common.FWD_CORE})", "--parse-ptype",
                   f"--lookup={self.mode}", f"--eth-dest=0,{common.GW_MAC}",
                   f"--rx-queue-size={ctx.scenario.packets + RX_RING_EXTRA}"])

    def start(self, ctx: Ctx) -> None:
        if self.binary is None:
            raise Unavailable(f"{self.label}: prepare() was not run")
        self.stop()
        self._family = ctx.scenario.family
        self._prefix = f"perf-{self.key}-{os.getpid()}"
        common.remove_runtime_dir(self._prefix)
        log = ctx.scratch / f"{self.key}-{ctx.scenario.name}.log"
        self._log_from = log.stat().st_size if log.exists() else 0
        self._log_path = log
        self._marks = []
        self._fwd_tid = None
        self._proc = Proc(self.argv(ctx, self._prefix), log)
        try:
            common.wait_telemetry(self._prefix, self._proc.p)
            self._check_routes()
        except Unavailable as e:
            tail = self._proc.tail(20)
            self.stop()
            raise Unavailable(f"{self.label}: {e}\n{tail}") from None

    def _log_text(self) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(self._log_from)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _check_routes(self) -> None:
        """l3fwd prints one 'Adding route' line per route it installed and exits
        on the first failure: all of both families must be there."""
        want = self._expected_routes
        text = self._log_text()
        tag = "LPM" if self.mode == "lpm" else "FIB"
        v4 = len(re.findall(rf"^{tag}: Adding route \d+\.\d+\.\d+\.\d+ / ", text, re.M))
        v6 = len(re.findall(rf"^{tag}: Adding route [0-9a-f:]+ / ", text, re.M))
        self.routes_added = (v4, v6)
        if (v4, v6) != want:
            raise Unavailable(f"routes installed: {v4} IPv4, {v6} IPv6; expected "
                              f"{want[0]} and {want[1]}")

    def counters(self) -> Counters:
        c = common.ethdev_counters(self._prefix, 0)
        # with each reading, the forwarding thread's time on the CPU: extra() tells
        # how much of the window it actually ran (the 2 cores are shared)
        self._marks = (self._marks + [(c, self._fwd_cpu_ns())])[-2:]
        return c

    def _fwd_cpu_ns(self) -> Optional[int]:
        """Time on the CPU of l3fwd's forwarding lcore thread (rte-worker-1), in ns,
        from /proc/<pid>/task/<tid>/schedstat; None when it cannot be found."""
        if self._proc is None:
            return None
        if self._fwd_tid is None:
            # l3fwd runs lcores 0 and 1 only: no rte-worker-1x to mistake for it
            self._fwd_tid = common.find_thread(self._proc.pid, f"rte-worker-{common.FWD_CORE}")
        return common.thread_oncpu_ns(self._proc.pid, self._fwd_tid)

    def stop(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.stop(signal.SIGINT)
        if self._prefix:
            common.remove_runtime_dir(self._prefix)

    def extra(self) -> dict:
        """fib: the lookup rte_fib6 (IPv6) or rte_fib (IPv4) picked. Both modes:
        the share of the last counters() window the forwarding thread was on the
        CPU, and its packet rate over that time on the CPU (Mpps): the rate with
        the time other processes took from core 1 left out."""
        out: dict = {}
        if self.mode == "fib":
            m = re.search(rf"{LOOKUP_TAG} FIB lookup (\w+), FIB6 lookup (\w+)",
                          self._log_text())
            if m:
                out["fib6_lookup" if self._family == 6 else "fib_lookup"] = \
                    m.group(2) if self._family == 6 else m.group(1)
        if len(self._marks) == 2:
            (a, ca), (b, cb) = self._marks
            if ca is not None and cb is not None and b.t > a.t and b.tx > a.tx:
                oncpu = (cb - ca) / 1e9
                out["fwd_cpu_share"] = round(oncpu / (b.t - a.t), 3)
                out["oncpu_mpps"] = round((b.tx - a.tx) / oncpu / 1e6, 2)
        return out
