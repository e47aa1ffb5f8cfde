#!/usr/bin/env python3
"""RFC 2544 throughput search (NDR and PDR) with a generator that can set its rate.

The throughput of RFC 2544 (section 26.1) is the highest offered rate at which
the device forwards every frame it is sent. This module finds it by a binary
search on the offered rate, and also the rate at which the loss stays within a
given ratio (PDR: partial drop rate, default 0.1 %):

    NDR  highest rate with zero loss
    PDR  highest rate with loss <= loss_ratio

Each trial offers a constant rate for `trial_s` seconds (RFC 2544: 60 s;
shorter is allowed for a quick look) and compares frames sent with frames
received. The search keeps a bracket [lo, hi]: lo the highest rate that
passed, hi the lowest that failed. The first trial is at the maximum rate (the
line rate of the frame mix); then the middle of the bracket, until hi - lo is
within `resolution` (a fraction of the maximum: 0.005 = 0.5 %). The answer is
lo, a rate that was measured to pass. The PDR search starts from what the NDR
trials already showed.

Generators (anything with max_rate_pps() and trial(rate_pps, seconds) ->
(sent, received)):

    TRexGenerator     the TRex stateless Python API (trex.stl.api) and a profile
                      of perf/profiles/trex/
    PktgenGenerator   a running pktgen-dpdk, through its Lua socket (-G, port 22022),
                      replaying perf/profiles/pcap/<scenario>.pcap

Neither generator can run on the bench node (no NIC; neither is packaged on
Debian): perf/profiles/README.md says how to run them on a real 2-port setup.

From the runner:  perf/run.py --rfc2544 --generator trex --gen-server HOST \
                      [--loss-ratio 0.001] [--trial-seconds 60] [scenario ...]
or directly:      perf/harness/rfc2544.py --generator pktgen --gen-server HOST ipv4-64
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Protocol, Sequence, runtime_checkable

PERF = Path(__file__).resolve().parents[1]        # perf/

DEFAULT_TRIAL_S = 60.0          # RFC 2544 section 24: at least 60 s per trial
DEFAULT_PDR_LOSS = 0.001        # 0.1 %
DEFAULT_RESOLUTION = 0.005      # 0.5 % of the maximum rate
DEFAULT_MAX_TRIALS = 20
PKTGEN_LUA_PORT = 22022         # pktgen-dpdk's Lua socket (-G)
WIRE_OVERHEAD = 20              # preamble + start delimiter (8) and inter-frame gap (12)
UNDERRUN = 0.98                 # a trial that offered less than this of its rate is flagged

Log = Callable[[str], None]


class GeneratorUnavailable(RuntimeError):
    """The generator's software is missing or cannot be reached: the message says
    what to install or start."""


class GeneratorError(RuntimeError):
    """A trial could not be made (the generator misbehaved)."""


@runtime_checkable
class Generator(Protocol):
    """What the search needs from a traffic generator."""

    def max_rate_pps(self) -> float:
        """The highest rate it can offer for this traffic (frames per second):
        normally the line rate of the frame mix."""

    def trial(self, rate_pps: float, seconds: float) -> tuple[int, int]:
        """Offers `rate_pps` for `seconds`; returns (frames sent, frames received)
        once the frames in flight have arrived."""


def line_rate_pps(link_bps: float, mean_wire_bytes: float) -> float:
    """Frames per second that fill a link with frames of this mean size
    (incl. FCS; the preamble and gap are added here)."""
    if link_bps <= 0 or mean_wire_bytes <= 0:
        raise ValueError("link speed and frame size must be positive")
    return link_bps / ((mean_wire_bytes + WIRE_OVERHEAD) * 8)


# --- the search -----------------------------------------------------------------------------

@dataclasses.dataclass
class Trial:
    rate_pps: float           # the rate asked for
    seconds: float
    sent: int
    received: int

    @property
    def loss(self) -> float:
        """Fraction of the frames sent that did not come back (0 when more came back)."""
        return max(0, self.sent - self.received) / self.sent if self.sent > 0 else 1.0

    @property
    def offered_pps(self) -> float:
        """What the generator really sent, per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def underrun(self) -> bool:
        """The generator did not reach the rate it was asked for."""
        return self.offered_pps < UNDERRUN * self.rate_pps

    def passes(self, loss_ratio: float) -> bool:
        return self.sent > 0 and self.loss <= loss_ratio

    def to_dict(self) -> dict:
        return {"rate_pps": self.rate_pps, "seconds": self.seconds, "sent": self.sent,
                "received": self.received, "loss": self.loss,
                "offered_pps": self.offered_pps, "underrun": self.underrun}


@dataclasses.dataclass
class SearchResult:
    loss_ratio: float               # the loss allowed (0: NDR)
    max_rate_pps: float
    resolution_pps: float
    rate_pps: float                 # highest rate that passed (0: none did)
    upper_pps: Optional[float]      # lowest rate that failed (None: the maximum passed)
    loss: float                     # measured loss at rate_pps
    converged: bool                 # bracket within the resolution (else: trials ran out)
    trials: list[Trial]             # the trials this search made, in order
    brackets: list[tuple[float, Optional[float]]]   # (lo, hi) after each of them
    reused: int = 0                 # earlier trials that seeded the bracket

    @property
    def name(self) -> str:
        return "NDR" if self.loss_ratio == 0 else f"PDR({self.loss_ratio:.4%})"

    def summary(self, mean_wire_bytes: Optional[float] = None) -> str:
        s = (f"{self.name}: {self.rate_pps / 1e6:.4f} Mpps "
             f"({self.rate_pps / self.max_rate_pps:.2%} of {self.max_rate_pps / 1e6:.4f} Mpps)")
        if mean_wire_bytes:
            gbps = self.rate_pps * (mean_wire_bytes + WIRE_OVERHEAD) * 8 / 1e9
            s += f", {gbps:.3f} Gb/s on the wire"
        s += f", loss {self.loss:.5%}, {len(self.trials)} trials"
        if not self.converged:
            top = f"{self.upper_pps:.0f}" if self.upper_pps is not None else "?"
            s += f" (NOT converged: bracket {self.rate_pps:.0f}..{top} pps)"
        if any(t.underrun for t in self.trials):
            s += " (the generator under-ran some trials: see the trial list)"
        return s

    def to_dict(self) -> dict:
        return {"loss_ratio": self.loss_ratio, "max_rate_pps": self.max_rate_pps,
                "resolution_pps": self.resolution_pps, "rate_pps": self.rate_pps,
                "upper_pps": self.upper_pps, "loss": self.loss, "converged": self.converged,
                "reused_trials": self.reused, "trials": [t.to_dict() for t in self.trials]}


def check_arguments(loss_ratio: float, resolution: float, trial_s: float,
                    max_trials: int) -> None:
    """Raises ValueError naming the bad argument."""
    def num(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    if not num(loss_ratio) or not 0 <= loss_ratio < 1:
        raise ValueError(f"loss_ratio must be a fraction from 0 (NDR) up to but not "
                         f"including 1, e.g. 0.001 for 0.1 %; got {loss_ratio!r}")
    if not num(resolution) or not 0 < resolution < 1:
        raise ValueError(f"resolution must be a fraction of the maximum rate above 0 and "
                         f"below 1, e.g. 0.005 for 0.5 %; got {resolution!r}")
    if not num(trial_s) or trial_s <= 0:
        raise ValueError(f"trial_s must be a positive number of seconds (RFC 2544: 60); "
                         f"got {trial_s!r}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be an integer of at least 1; got {max_trials!r}")


def trials_needed(resolution: float) -> int:
    """Trials a search makes at most to reach the resolution from scratch: one at
    the maximum, then halvings of the bracket."""
    return 1 + math.ceil(math.log2(1 / resolution) - 1e-9)


def run_trial(gen: Generator, rate_pps: float, seconds: float) -> Trial:
    sent, received = gen.trial(rate_pps, seconds)
    if isinstance(sent, bool) or isinstance(received, bool) or \
            not isinstance(sent, int) or not isinstance(received, int):
        raise GeneratorError(f"trial at {rate_pps:.0f} pps returned {sent!r}, {received!r}: "
                             "expected two frame counts")
    if sent <= 0:
        raise GeneratorError(f"the generator sent nothing at {rate_pps:.0f} pps: "
                             "check its ports and the link")
    if received < 0:
        raise GeneratorError(f"negative received count {received} at {rate_pps:.0f} pps")
    return Trial(rate_pps, seconds, sent, received)


def search(gen: Generator, loss_ratio: float = 0.0, resolution: float = DEFAULT_RESOLUTION,
           trial_s: float = DEFAULT_TRIAL_S, max_trials: int = DEFAULT_MAX_TRIALS, *,
           known: Iterable[Trial] = (), log: Optional[Log] = None) -> SearchResult:
    """Binary search for the highest rate whose loss is at most `loss_ratio`
    (0: NDR). `known`: trials made before on the same traffic (another search's):
    they seed the bracket and are not repeated."""
    check_arguments(loss_ratio, resolution, trial_s, max_trials)
    max_rate = float(gen.max_rate_pps())
    if not math.isfinite(max_rate) or max_rate <= 0:
        raise GeneratorError(f"the generator's maximum rate is {max_rate!r} pps")
    res_pps = resolution * max_rate
    say = log or (lambda _msg: None)

    lo, hi = 0.0, None          # highest pass, lowest fail
    lo_trial: Optional[Trial] = None
    known = [t for t in known if 0 < t.rate_pps <= max_rate * (1 + 1e-9)]
    for t in known:
        if not t.passes(loss_ratio) and (hi is None or t.rate_pps < hi):
            hi = t.rate_pps
    for t in known:             # a pass above a fail (noise) is not trusted
        if t.passes(loss_ratio) and t.rate_pps > lo and (hi is None or t.rate_pps < hi):
            lo, lo_trial = t.rate_pps, t

    made: list[Trial] = []
    brackets: list[tuple[float, Optional[float]]] = []
    converged = False
    while True:
        if hi is None:
            if lo >= max_rate * (1 - 1e-9):
                converged = True            # the maximum passed
                break
            rate = max_rate
        else:
            if hi - lo <= res_pps * (1 + 1e-9):
                converged = True
                break
            rate = (lo + hi) / 2
        if len(made) >= max_trials:
            break
        t = run_trial(gen, rate, trial_s)
        made.append(t)
        ok = t.passes(loss_ratio)
        if ok:
            lo, lo_trial = rate, t
        else:
            hi = rate
        brackets.append((lo, hi))
        say(f"  trial {len(made)}: {rate / 1e6:.4f} Mpps for {trial_s:g} s: sent {t.sent}, "
            f"received {t.received}, loss {t.loss:.5%} -> {'pass' if ok else 'fail'}"
            f"{' (generator under-ran: offered %.4f Mpps)' % (t.offered_pps / 1e6) if t.underrun else ''}")
    return SearchResult(loss_ratio=loss_ratio, max_rate_pps=max_rate, resolution_pps=res_pps,
                        rate_pps=lo, upper_pps=hi, loss=lo_trial.loss if lo_trial else 0.0,
                        converged=converged, trials=made, brackets=brackets,
                        reused=len(known))


@dataclasses.dataclass
class NdrPdr:
    ndr: SearchResult
    pdr: SearchResult
    scenario: str = ""
    generator: str = ""
    mean_wire_bytes: Optional[float] = None

    def summary(self) -> str:
        head = " ".join(x for x in (self.scenario, f"[{self.generator}]" if self.generator else "")
                        if x)
        lines = [head] if head else []
        lines += ["  " + self.ndr.summary(self.mean_wire_bytes),
                  "  " + self.pdr.summary(self.mean_wire_bytes)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "generator": self.generator,
                "mean_wire_bytes": self.mean_wire_bytes,
                "ndr": self.ndr.to_dict(), "pdr": self.pdr.to_dict()}


def ndr_pdr(gen: Generator, pdr_loss: float = DEFAULT_PDR_LOSS,
            resolution: float = DEFAULT_RESOLUTION, trial_s: float = DEFAULT_TRIAL_S,
            max_trials: int = DEFAULT_MAX_TRIALS, log: Optional[Log] = None) -> NdrPdr:
    """NDR, then PDR seeded with the NDR's trials. max_trials bounds each search."""
    check_arguments(pdr_loss, resolution, trial_s, max_trials)
    say = log or (lambda _msg: None)
    say("NDR search (zero loss)")
    ndr = search(gen, 0.0, resolution, trial_s, max_trials, log=log)
    say(f"PDR search (loss <= {pdr_loss:.4%})")
    pdr = search(gen, pdr_loss, resolution, trial_s, max_trials, known=ndr.trials, log=log)
    return NdrPdr(ndr, pdr)


# --- pcap (the scenarios' packet sets, perf/profiles/pcap/) ---------------------------------------

def read_pcap(path: Path) -> list[bytes]:
    """Frames of a classic pcap file (either byte order, us or ns stamps)."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise ValueError(f"{path}: not a pcap file")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {magic.hex()})")
    frames, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from(e + "I", data, off + 8)[0]
        off += 16
        frames.append(data[off:off + incl])
        off += incl
    return frames


def pcap_mean_wire_bytes(path: Path) -> float:
    """Mean frame size on the wire (incl. the 4 B FCS the pcap leaves out)."""
    frames = read_pcap(path)
    if not frames:
        raise ValueError(f"{path}: no frames")
    return sum(len(f) + 4 for f in frames) / len(frames)


# --- TRex -----------------------------------------------------------------------------------

TREX_INSTALL = ("TRex's stateless Python API (trex.stl.api) is not importable here. Install "
                "TRex v2.x (the release tarball from trex-tgn.cisco.com) and put its client "
                "library on the path: export PYTHONPATH=<trex dir>/automation/"
                "trex_control_plane/interactive")


def import_trex_api():
    """The trex.stl.api module (or the older trex_stl_lib.api)."""
    try:
        import trex.stl.api as api                  # TRex >= 2.4x
        return api
    except ImportError:
        pass
    try:
        import trex_stl_lib.api as api              # older releases
        return api
    except ImportError:
        raise GeneratorUnavailable(TREX_INSTALL) from None


class TRexGenerator:
    """A TRex server in stateless mode (t-rex-64 -i) with a profile of
    perf/profiles/trex/ on tx_port; frames counted back on rx_port (the same
    port when the DUT hairpins to it)."""

    def __init__(self, profile: Path, server: str = "localhost", tx_port: int = 0,
                 rx_port: int = 1, mean_wire_bytes: Optional[float] = None,
                 line_rate_gbps: Optional[float] = None, settle_s: float = 1.0,
                 tunables: Optional[dict] = None, api=None):
        self.api = api or import_trex_api()
        profile = Path(profile)
        if not profile.is_file():
            raise GeneratorUnavailable(f"{profile} is missing: run perf/export_profiles.py")
        self.tx, self.rx = tx_port, rx_port
        self.ports = sorted({tx_port, rx_port})
        self.settle_s = settle_s
        self.line_rate_gbps = line_rate_gbps
        self.client = self.api.STLClient(server=server)
        try:
            self.client.connect()
        except Exception as e:  # TRex raises its own error types
            raise GeneratorUnavailable(f"cannot reach the TRex server at {server} (is "
                                       f"'./t-rex-64 -i' running there?): {e}") from e
        self.client.reset(ports=self.ports)
        # the forwarded frames are addressed to the next hops' MACs, not to the RX port
        self.client.set_port_attr(ports=[self.rx], promiscuous=True)
        prof = self.api.STLProfile.load_py(str(profile), **(tunables or {}))
        streams = prof.get_streams()
        self.client.add_streams(streams, ports=[self.tx])
        if mean_wire_bytes is None:
            pcap = profile.parent.parent / "pcap" / (profile.stem + ".pcap")
            mean_wire_bytes = pcap_mean_wire_bytes(pcap)
        self.mean_wire_bytes = mean_wire_bytes

    def _speed_gbps(self) -> float:
        if self.line_rate_gbps:
            return float(self.line_rate_gbps)
        tries = (lambda: self.client.get_port_attr(self.tx)["speed"],
                 lambda: self.client.ports[self.tx].get_speed_gbps())
        for get in tries:
            try:
                v = get()
                m = re.search(r"[\d.]+", str(v))
                if m and float(m.group()) > 0:
                    return float(m.group())
            except Exception:
                continue
        raise GeneratorError(f"cannot read the link speed of TRex port {self.tx}: "
                             "pass --line-rate-gbps")

    def max_rate_pps(self) -> float:
        return line_rate_pps(self._speed_gbps() * 1e9, self.mean_wire_bytes)

    def trial(self, rate_pps: float, seconds: float) -> tuple[int, int]:
        c = self.client
        c.clear_stats(ports=self.ports)
        c.start(ports=[self.tx], mult=f"{rate_pps:.0f}pps", duration=seconds, force=True)
        c.wait_on_traffic(ports=[self.tx], timeout=seconds + 60)
        time.sleep(self.settle_s)                   # frames still in the DUT
        st = c.get_stats(ports=self.ports)
        return int(st[self.tx]["opackets"]), int(st[self.rx]["ipackets"])

    def close(self) -> None:
        try:
            self.client.stop(ports=self.ports)
        finally:
            self.client.disconnect()


# --- pktgen-dpdk ---------------------------------------------------------------------------

class PktgenLua:
    """pktgen-dpdk's Lua socket: a Lua prompt without a prompt, one statement a
    line, print() output sent back. Each request ends with a marker print."""

    def __init__(self, host: str = "localhost", port: int = PKTGEN_LUA_PORT,
                 timeout: float = 30.0):
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise GeneratorUnavailable(
                f"cannot reach pktgen's Lua socket at {host}:{port} ({e}): start pktgen with "
                f"-G (or -g {host}:{port}) and the scenario's pcap (-s P:file)") from e
        self.timeout = timeout
        self.buf = b""
        self.n = 0

    def run(self, lua: str, timeout: Optional[float] = None) -> str:
        """Runs one line of Lua; returns what it printed. Raises on a Lua error."""
        if "\n" in lua:
            raise ValueError("one line of Lua at a time")
        self.n += 1
        marker = f"@@done-{self.n}@@"
        self.sock.settimeout(timeout or self.timeout)
        self.sock.sendall(f'{lua}\nprint("{marker}")\n'.encode())
        while marker.encode() not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise GeneratorError("pktgen closed the Lua socket")
            self.buf += chunk
        out, _, self.buf = self.buf.partition(marker.encode())
        self.buf = self.buf.split(b"\n", 1)[1] if b"\n" in self.buf else b""
        text = out.decode(errors="replace")
        for line in text.splitlines():
            if re.match(r"\s*(stdin:\d+:|\[string .*\]:\d+:)", line):
                raise GeneratorError(f"pktgen Lua error for `{lua}`: {line.strip()}")
        return text

    def close(self) -> None:
        self.sock.close()


# portStats changed shape: older pktgen takes (ports, "port") and returns flat
# counters per port, newer takes (ports) and nests them under .curr.
LUA_COUNTERS = (
    'do local function c(p) local ok, t = pcall(pktgen.portStats, tostring(p), "port") '
    'if not ok or type(t) ~= "table" then t = pktgen.portStats(tostring(p)) end '
    'local e = t[p] if e.curr then e = e.curr end return e end '
    'local a, b = c({tx}), c({rx}) '
    'print(string.format("@@COUNTS %d %d", a.opackets, b.ipackets)) end')


class PktgenGenerator:
    """A running pktgen-dpdk, started with the scenario's pcap on tx_port
    (-s TX:perf/profiles/pcap/<scenario>.pcap) and its Lua socket (-G).

    pktgen sets its rate in percent of the line rate computed for its own
    reference frame size (which for a pcap differs between versions), so the
    pps a percent gives is measured once (calibrate_pct for calibrate_s)
    unless pps_per_pct is given."""

    def __init__(self, server: str = "localhost", lua_port: int = PKTGEN_LUA_PORT,
                 tx_port: int = 0, rx_port: int = 1, mean_wire_bytes: Optional[float] = None,
                 line_rate_gbps: Optional[float] = None, settle_s: float = 2.0,
                 pps_per_pct: Optional[float] = None, calibrate_pct: float = 10.0,
                 calibrate_s: float = 5.0, lua: Optional[PktgenLua] = None,
                 sleep: Callable[[float], None] = time.sleep):
        if mean_wire_bytes is None or mean_wire_bytes <= 0:
            raise ValueError("mean_wire_bytes (the scenario's mean frame size) is needed")
        self.lua = lua or PktgenLua(server, lua_port)
        self.tx, self.rx = tx_port, rx_port
        self.mean_wire_bytes = mean_wire_bytes
        self.line_rate_gbps = line_rate_gbps
        self.settle_s = settle_s
        self.sleep = sleep
        self.pps_per_pct = pps_per_pct
        self.calibrate_pct, self.calibrate_s = calibrate_pct, calibrate_s
        self.lua.run(f'pktgen.stop("{self.tx}")')
        self.lua.run(f'pktgen.pcap("{self.tx}", "on")')
        self.lua.run(f'pktgen.set("{self.tx}", "count", 0)')

    def counts(self) -> tuple[int, int]:
        out = self.lua.run(LUA_COUNTERS.format(tx=self.tx, rx=self.rx))
        m = re.search(r"@@COUNTS (\d+) (\d+)", out)
        if not m:
            raise GeneratorError(f"unexpected answer to the counter query: {out!r}")
        return int(m.group(1)), int(m.group(2))

    def link_mbps(self) -> float:
        out = self.lua.run(f'print("@@LINK " .. tostring(pktgen.linkState("{self.tx}")[{self.tx}]))')
        m = re.search(r"@@LINK\s*\S*?(\d{2,})", out)
        if not m or int(m.group(1)) <= 0:
            raise GeneratorError(f"cannot read the link speed of pktgen port {self.tx} "
                                 f"({out.strip()!r}): pass --line-rate-gbps")
        return float(m.group(1))

    def _run(self, pct: float, seconds: float) -> tuple[int, int]:
        a = self.counts()
        self.lua.run(f'pktgen.set("{self.tx}", "rate", {pct:.3f})')
        self.lua.run(f'pktgen.start("{self.tx}")')
        self.sleep(seconds)
        self.lua.run(f'pktgen.stop("{self.tx}")')
        self.sleep(self.settle_s)                   # in flight, and pktgen's 1 s stats tick
        b = self.counts()
        return b[0] - a[0], b[1] - a[1]

    def _scale(self) -> float:
        if not self.pps_per_pct:
            sent, _ = self._run(self.calibrate_pct, self.calibrate_s)
            if sent <= 0:
                raise GeneratorError(f"pktgen sent nothing at {self.calibrate_pct} %: is the "
                                     f"pcap loaded on port {self.tx} and the link up?")
            self.pps_per_pct = sent / self.calibrate_s / self.calibrate_pct
        return self.pps_per_pct

    def max_rate_pps(self) -> float:
        gbps = self.line_rate_gbps or self.link_mbps() / 1000
        return min(line_rate_pps(gbps * 1e9, self.mean_wire_bytes), 100 * self._scale())

    def trial(self, rate_pps: float, seconds: float) -> tuple[int, int]:
        pct = min(100.0, rate_pps / self._scale())
        return self._run(pct, seconds)

    def close(self) -> None:
        try:
            self.lua.run(f'pktgen.stop("{self.tx}")')
        finally:
            self.lua.close()


# --- what the runner calls -----------------------------------------------------------------

def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The search's options (the runner's --rfc2544 switch is its own)."""
    ap.add_argument("--generator", choices=("trex", "pktgen"), required=True,
                    help="trex: TRex stateless API; pktgen: pktgen-dpdk's Lua socket")
    ap.add_argument("--gen-server", default="localhost",
                    help="host of the TRex server / of pktgen (default: localhost)")
    ap.add_argument("--loss-ratio", type=float, default=DEFAULT_PDR_LOSS,
                    help="loss allowed at the PDR, a fraction (default 0.001 = 0.1 %%); "
                         "the NDR always allows none")
    ap.add_argument("--trial-seconds", type=float, default=DEFAULT_TRIAL_S,
                    help="length of each trial (default 60, as RFC 2544 asks)")
    ap.add_argument("--resolution", type=float, default=DEFAULT_RESOLUTION,
                    help="stop when the bracket is this fraction of the maximum rate "
                         "(default 0.005 = 0.5 %%)")
    ap.add_argument("--max-trials", type=int, default=DEFAULT_MAX_TRIALS,
                    help="trials per search at most (default 20)")
    ap.add_argument("--tx-port", type=int, default=0, help="generator port that sends (0)")
    ap.add_argument("--rx-port", type=int, default=1,
                    help="generator port that receives (1; the TX port when one port is "
                         "cabled to the DUT)")
    ap.add_argument("--gen-port", type=int, default=PKTGEN_LUA_PORT,
                    help="pktgen's Lua socket port (default 22022)")
    ap.add_argument("--line-rate-gbps", type=float,
                    help="link speed, when the generator cannot tell it")
    ap.add_argument("--profiles", default=str(PERF / "profiles"),
                    help="the exported profiles (default perf/profiles)")
    ap.add_argument("--json", help="also write the results here (JSON)")


def make_generator(args: argparse.Namespace, scenario) -> Generator:
    """The generator args ask for, loaded with the scenario's traffic."""
    profiles = Path(getattr(args, "profiles", None) or PERF / "profiles")
    pcap = profiles / "pcap" / f"{scenario.name}.pcap"
    mean = pcap_mean_wire_bytes(pcap) if pcap.is_file() else scenario.mean_wire_bytes()
    kind = getattr(args, "generator", None)
    server = getattr(args, "gen_server", None) or "localhost"
    tx, rx = getattr(args, "tx_port", 0), getattr(args, "rx_port", 1)
    gbps = getattr(args, "line_rate_gbps", None)
    if kind == "trex":
        return TRexGenerator(profiles / "trex" / f"{scenario.name}.py", server, tx, rx,
                             mean_wire_bytes=mean, line_rate_gbps=gbps)
    if kind == "pktgen":
        return PktgenGenerator(server, getattr(args, "gen_port", PKTGEN_LUA_PORT), tx, rx,
                               mean_wire_bytes=mean, line_rate_gbps=gbps)
    raise ValueError(f"unknown generator {kind!r}: trex or pktgen")


def run_search(args: argparse.Namespace, scenario, log: Optional[Log] = print,
               generator: Optional[Generator] = None) -> NdrPdr:
    """NDR and PDR of one scenario (a common.Scenario) with the options of
    add_arguments(). `generator` replaces the one args name (tests)."""
    loss = getattr(args, "loss_ratio", DEFAULT_PDR_LOSS)
    res = getattr(args, "resolution", DEFAULT_RESOLUTION)
    secs = getattr(args, "trial_seconds", DEFAULT_TRIAL_S)
    n = getattr(args, "max_trials", DEFAULT_MAX_TRIALS)
    check_arguments(loss, res, secs, n)
    gen = generator or make_generator(args, scenario)
    try:
        if log:
            log(f"{scenario.name}: RFC 2544 search, {secs:g} s trials, resolution {res:.2%}, "
                f"PDR loss {loss:.4%}, max {gen.max_rate_pps() / 1e6:.4f} Mpps")
        out = ndr_pdr(gen, loss, res, secs, n, log=log)
    finally:
        close = getattr(gen, "close", None)
        if close and generator is None:
            close()
    out.scenario = scenario.name
    out.generator = getattr(args, "generator", "") or type(gen).__name__
    out.mean_wire_bytes = getattr(gen, "mean_wire_bytes", None) or scenario.mean_wire_bytes()
    return out


def main(argv: Optional[Sequence[str]] = None, scenarios: Optional[Sequence[str]] = None) -> int:
    """perf/run.py --rfc2544 passes what it did not parse; `scenarios` are the
    runner's own --scenario picks, added to those named here."""
    ap = argparse.ArgumentParser(
        prog="perf/run.py --rfc2544",
        description="RFC 2544 NDR/PDR search with TRex or pktgen-dpdk on a real NIC "
                    "(see perf/profiles/README.md)")
    ap.add_argument("--rfc2544", action="store_true", help=argparse.SUPPRESS)
    add_arguments(ap)
    ap.add_argument("--scenario", action="append", default=[],
                    help="scenario to measure (repeatable; default: all)")
    ap.add_argument("names", nargs="*", help="scenarios to measure (default: all)")
    args = ap.parse_args(list(argv) if argv is not None else None)

    if str(PERF) not in sys.path:
        sys.path.insert(0, str(PERF))
    from harness import common
    known = {n: sc for n, sc in common.load_scenarios(PERF / "scenarios").items() if sc.profiles}
    names = list(scenarios or []) + args.scenario + args.names
    names = list(dict.fromkeys(names)) or list(known)
    for n in names:
        if n not in known:
            ap.error(f"unknown scenario '{n}' (with a hardware profile: {', '.join(known)})")
    try:
        check_arguments(args.loss_ratio, args.resolution, args.trial_seconds, args.max_trials)
    except ValueError as e:
        ap.error(str(e))
    results = []
    try:
        for n in names:
            r = run_search(args, known[n])
            results.append(r)
            print(r.summary(), flush=True)
    except (GeneratorUnavailable, GeneratorError) as e:
        print(f"rfc2544: {e}", file=sys.stderr)
        return 2
    finally:
        if args.json and results:
            Path(args.json).write_text(json.dumps([r.to_dict() for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
