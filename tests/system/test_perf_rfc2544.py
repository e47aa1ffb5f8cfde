"""The RFC 2544 search of perf/harness/rfc2544.py against a model of a DUT, its
TRex and pktgen backends against fakes of their APIs, and the generator
profiles of perf/export_profiles.py. Needs neither TRex nor pktgen (not
packaged on Debian); the Lua scripts run under lua5.x with a mock pktgen when
an interpreter is installed; the daemon of FWD_BUILD checks the DUT configs.
Takes a few seconds."""
import argparse
import hashlib
import importlib.util
import ipaddress
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PERF = ROOT / "perf"
sys.path.insert(0, str(PERF))

from harness import common, rfc2544  # noqa: E402
from harness.rfc2544 import (GeneratorError, GeneratorUnavailable, Trial,  # noqa: E402
                             ndr_pdr, search, trials_needed)

import export_profiles  # noqa: E402
from fwdlab import DAEMON  # noqa: E402


# --- a model of the DUT ------------------------------------------------------------------------

class ModelDut:
    """Deterministic: no loss up to ndr_pps; from there a loss band rising to
    band_loss at capacity_pps; above it, everything beyond the capacity is lost
    as well."""

    def __init__(self, max_rate=14_880_952.0, capacity=9_000_000.0, band=0.02,
                 band_loss=0.0005):
        self.max_rate, self.capacity = max_rate, capacity
        self.ndr_pps = capacity * (1 - band)
        self.band_loss = band_loss
        self.calls = []

    def loss_at(self, r):
        if r <= self.ndr_pps:
            return 0.0
        if r <= self.capacity:
            return self.band_loss * (r - self.ndr_pps) / (self.capacity - self.ndr_pps)
        return 1 - self.capacity * (1 - self.band_loss) / r

    def pdr_pps(self, ratio):
        """Highest rate with loss <= ratio (ratio above the band's top)."""
        assert ratio >= self.band_loss
        return self.capacity * (1 - self.band_loss) / (1 - ratio)

    def max_rate_pps(self):
        return self.max_rate

    def trial(self, rate_pps, seconds):
        self.calls.append((rate_pps, seconds))
        sent = round(rate_pps * seconds)
        loss = self.loss_at(rate_pps)
        lost = math.ceil(sent * loss) if loss > 0 else 0
        return sent, sent - lost


def check_bracket(res):
    """Each trial inside the bracket before it; lo only rises, hi only falls."""
    lo, hi = 0.0, None
    for t, (nlo, nhi) in zip(res.trials, res.brackets):
        assert lo <= t.rate_pps <= (hi if hi is not None else res.max_rate_pps)
        assert nlo >= lo
        if hi is not None:
            assert nhi is not None and nhi <= hi
        lo, hi = nlo, nhi
    assert (res.rate_pps, res.upper_pps) == ((lo, hi) if res.brackets else
                                             (res.rate_pps, res.upper_pps))


# --- the search -----------------------------------------------------------------------------------

@pytest.mark.parametrize("capacity", [1_234_567.0, 5_000_000.0, 9_000_000.0, 14_000_000.0])
@pytest.mark.parametrize("resolution", [0.005, 0.02])
def test_ndr_pdr_found_within_resolution(capacity, resolution):
    dut = ModelDut(capacity=capacity)
    r = ndr_pdr(dut, pdr_loss=0.001, resolution=resolution, trial_s=10)
    res_pps = resolution * dut.max_rate
    for got, true in ((r.ndr, dut.ndr_pps), (r.pdr, dut.pdr_pps(0.001))):
        assert got.converged
        assert true - res_pps <= got.rate_pps <= true, (got.rate_pps, true)
        assert got.upper_pps is not None and got.upper_pps > true
        assert got.upper_pps - got.rate_pps <= res_pps * (1 + 1e-9)
        check_bracket(got)
    assert r.pdr.rate_pps >= r.ndr.rate_pps
    assert all(s == 10 for _, s in dut.calls)


def test_trial_count_bounded():
    dut = ModelDut()
    r = ndr_pdr(dut, resolution=0.005, trial_s=1)
    bound = trials_needed(0.005)
    assert bound == 9                       # 1 at the maximum + ceil(log2(200))
    assert len(r.ndr.trials) <= bound
    # the PDR search starts from the NDR's bracket and repeats none of its trials
    assert r.pdr.reused == len(r.ndr.trials)
    assert len(r.pdr.trials) <= bound - 1
    assert len(dut.calls) == len(r.ndr.trials) + len(r.pdr.trials)
    assert len({c for c, _ in dut.calls}) == len(dut.calls)


def test_line_rate_passes_in_one_trial():
    dut = ModelDut(capacity=20e6)
    r = search(dut, 0.0, 0.005, 1)
    assert [t.rate_pps for t in r.trials] == [dut.max_rate]
    assert r.rate_pps == dut.max_rate and r.upper_pps is None and r.converged


def test_nothing_passes():
    dut = ModelDut(capacity=10_000.0)            # below the resolution of 14.88 Mpps
    r = search(dut, 0.0, 0.005, 1)
    assert r.rate_pps == 0 and r.converged and r.loss == 0
    assert r.upper_pps <= 0.005 * dut.max_rate
    assert "NDR: 0.0000 Mpps" in r.summary()


@pytest.mark.parametrize("ratio", [0.0, 0.001, 0.01, 0.2])
def test_loss_ratio_honoured(ratio):
    dut = ModelDut(capacity=6e6, band_loss=0.0005)
    r = search(dut, ratio, 0.005, 1)
    for t in r.trials:
        assert t.passes(ratio) == (t.loss <= ratio)
    at = {t.rate_pps: t for t in r.trials}
    assert r.loss <= ratio and at[r.rate_pps].loss == r.loss
    assert at[r.upper_pps].loss > ratio
    true = dut.ndr_pps if ratio == 0 else dut.pdr_pps(ratio)
    assert true - 0.005 * dut.max_rate <= r.rate_pps <= true


def test_max_trials_stops_the_search():
    dut = ModelDut()
    r = search(dut, 0.0, 0.001, 1, max_trials=3)
    assert len(r.trials) == 3 and not r.converged
    assert "NOT converged" in r.summary()


def test_known_trials_seed_and_ignore_noise():
    dut = ModelDut(capacity=8e6)
    noisy = [Trial(12e6, 1, 1000, 1000),      # a pass above a fail: not trusted
             Trial(10e6, 1, 1000, 900),
             Trial(4e6, 1, 1000, 1000)]
    r = search(dut, 0.0, 0.005, 1, known=noisy)
    assert r.trials[0].rate_pps == pytest.approx(7e6)       # middle of 4..10 Mpps
    assert dut.ndr_pps - 0.005 * dut.max_rate <= r.rate_pps <= dut.ndr_pps


def test_underrun_is_reported():
    class Slow(ModelDut):
        def trial(self, rate_pps, seconds):              # tops out at 5 Mpps
            return super().trial(min(rate_pps, 5e6), seconds)
    r = search(Slow(capacity=20e6), 0.0, 0.01, 1)
    assert r.trials[0].underrun
    assert "under-ran" in r.summary()


@pytest.mark.parametrize("kw,word", [
    ({"loss_ratio": -0.1}, "loss_ratio"), ({"loss_ratio": 1.0}, "loss_ratio"),
    ({"loss_ratio": float("nan")}, "loss_ratio"), ({"loss_ratio": "0.1"}, "loss_ratio"),
    ({"resolution": 0}, "resolution"), ({"resolution": 1.0}, "resolution"),
    ({"resolution": -0.5}, "resolution"), ({"trial_s": 0}, "trial_s"),
    ({"trial_s": -60}, "trial_s"), ({"trial_s": float("inf")}, "trial_s"),
    ({"max_trials": 0}, "max_trials"), ({"max_trials": 2.5}, "max_trials"),
    ({"max_trials": True}, "max_trials"),
])
def test_bad_arguments(kw, word):
    dut = ModelDut()
    with pytest.raises(ValueError, match=word):
        search(dut, **kw)
    assert dut.calls == []


def test_bad_generators():
    class NoRate(ModelDut):
        def max_rate_pps(self):
            return 0
    with pytest.raises(GeneratorError, match="maximum rate"):
        search(NoRate())

    class Silent(ModelDut):
        def trial(self, rate_pps, seconds):
            return 0, 0
    with pytest.raises(GeneratorError, match="sent nothing"):
        search(Silent())

    class Floats(ModelDut):
        def trial(self, rate_pps, seconds):
            return 1.5, 1.0
    with pytest.raises(GeneratorError, match="frame counts"):
        search(Floats())


def test_generator_protocol():
    assert isinstance(ModelDut(), rfc2544.Generator)
    assert rfc2544.line_rate_pps(10e9, 64) == pytest.approx(14_880_952.38, rel=1e-6)


def small_scenario():
    return common.Scenario(name="t-v4", title="IPv4, 64 B (test)", family=4,
                           sizes=[(64, 1)], packets=32)


def test_run_search_for_the_runner(tmp_path):
    dut = ModelDut(capacity=7e6)
    args = argparse.Namespace(generator="model", loss_ratio=0.01, trial_seconds=2.0,
                              resolution=0.01, max_trials=12)
    lines = []
    r = rfc2544.run_search(args, small_scenario(), log=lines.append, generator=dut)
    assert r.scenario == "t-v4" and r.pdr.loss_ratio == 0.01
    assert dut.ndr_pps - 0.01 * dut.max_rate <= r.ndr.rate_pps <= dut.ndr_pps
    assert all(s == 2.0 for _, s in dut.calls)
    assert any("trial 1:" in line for line in lines)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["ndr"]["rate_pps"] == r.ndr.rate_pps and d["pdr"]["trials"]
    assert "NDR:" in r.summary() and "PDR(1.0000%)" in r.summary()


def test_add_arguments_defaults():
    ap = argparse.ArgumentParser()
    rfc2544.add_arguments(ap)
    a = ap.parse_args(["--generator", "pktgen", "--gen-server", "tg1"])
    assert (a.loss_ratio, a.trial_seconds, a.resolution, a.gen_port) == (0.001, 60.0, 0.005, 22022)
    assert (a.tx_port, a.rx_port, a.gen_server) == (0, 1, "tg1")


def test_main_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as e:
        rfc2544.main(["--generator", "trex", "--loss-ratio", "1.5"])
    assert e.value.code == 2 and "loss_ratio" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rfc2544.main(["--generator", "ixia"])
    with pytest.raises(SystemExit):
        rfc2544.main(["--generator", "trex", "no-such-scenario"])


def test_unavailable_generators_say_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "trex", None)
    monkeypatch.setitem(sys.modules, "trex_stl_lib", None)
    with pytest.raises(GeneratorUnavailable, match="trex.stl.api.*PYTHONPATH"):
        rfc2544.import_trex_api()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens there now
    with pytest.raises(GeneratorUnavailable, match="-G"):
        rfc2544.PktgenLua("127.0.0.1", port, timeout=2)


# --- pktgen backend against a fake pktgen Lua socket -----------------------------------------------------

class FakePktgen:
    """pktgen's Lua socket, for the lines PktgenGenerator sends: a virtual clock,
    pps = percent * pps_per_pct, the DUT forwards up to capacity pps."""

    def __init__(self, pps_per_pct=50_000.0, capacity=3e6, link="<UP-10000-FD>"):
        self.pps_per_pct, self.capacity, self.link = pps_per_pct, capacity, link
        self.clock, self.rate, self.t0, self.running = 0.0, 100.0, 0.0, False
        self.sent = self.recv = 0.0
        self.lines, self.pcap_on = [], False
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def sleep(self, s):
        self.clock += s

    def flush(self):
        if self.running:
            dt, pps = self.clock - self.t0, self.rate * self.pps_per_pct
            self.sent += pps * dt
            self.recv += min(pps, self.capacity) * dt
            self.t0 = self.clock

    def answer(self, line):
        self.lines.append(line)
        if line.startswith('print("@@done-'):
            return line[7:-2] + "\n"
        if "@@COUNTS" in line:
            return "@@COUNTS %d %d\n" % (int(self.sent), int(self.recv))
        if "@@LINK" in line:
            return "@@LINK " + self.link + "\n"
        if line.startswith('pktgen.set("0", "rate", '):
            self.flush()
            self.rate = float(line.split(",")[2].strip(" )"))
            return ""
        if line == 'pktgen.start("0")':
            self.running, self.t0 = True, self.clock
            return ""
        if line == 'pktgen.stop("0")':
            self.flush()
            self.running = False
            return ""
        if line == 'pktgen.pcap("0", "on")':
            self.pcap_on = True
            return ""
        if line == 'pktgen.set("0", "count", 0)':
            return ""
        return "stdin:1: attempt to call a nil value (field '?')\n"

    def serve(self):
        conn, _ = self.srv.accept()
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    reply = self.answer(line.decode())
                    if reply:
                        conn.sendall(reply.encode())


def test_pktgen_generator_search():
    fake = FakePktgen()
    gen = rfc2544.PktgenGenerator("127.0.0.1", fake.port, tx_port=0, rx_port=1,
                                  mean_wire_bytes=64.0, sleep=fake.sleep)
    assert fake.pcap_on
    # link 10 Gb/s at 64 B: 14.88 Mpps; pktgen's 100 % is 5 Mpps here (its own reference size)
    assert gen.max_rate_pps() == pytest.approx(100 * fake.pps_per_pct, rel=1e-3)
    r = ndr_pdr(gen, pdr_loss=0.001, resolution=0.005, trial_s=60)
    top = gen.max_rate_pps()
    assert fake.capacity - 0.005 * top <= r.ndr.rate_pps <= fake.capacity * 1.0001
    assert r.pdr.rate_pps >= r.ndr.rate_pps
    assert r.pdr.rate_pps <= fake.capacity / 0.999 * 1.0001
    rates = [float(x.split(",")[2].strip(" )")) for x in fake.lines if '"rate"' in x]
    assert max(rates) <= 100
    gen.close()


def test_pktgen_lua_error_is_raised():
    fake = FakePktgen()
    lua = rfc2544.PktgenLua("127.0.0.1", fake.port, timeout=5)
    with pytest.raises(GeneratorError, match="Lua error"):
        lua.run("pktgen.nonsense()")
    assert lua.run('pktgen.start("0")') == ""
    with pytest.raises(ValueError):
        lua.run("a = 1\nb = 2")
    lua.close()


# --- TRex backend and profiles against a fake trex.stl.api ------------------------------------------------

def fake_trex_api(dut=None):
    """Enough of trex.stl.api for the exported profiles and TRexGenerator."""
    api = types.ModuleType("trex.stl.api")

    class STLTXCont:
        def __init__(self, pps=None, **kw):
            self.pps = pps

    class STLPktBuilder:
        def __init__(self, pkt_buffer=None, vm=None, **kw):
            self.pkt_buffer = pkt_buffer

    class STLStream:
        def __init__(self, name=None, packet=None, mode=None, mac_src_override_by_pkt=False,
                     mac_dst_override_mode=0, **kw):
            self.name, self.packet, self.mode = name, packet, mode
            self.mac_src_override_by_pkt = mac_src_override_by_pkt
            self.mac_dst_override_mode = mac_dst_override_mode

    class STLProfile:
        pcap_calls = []

        def __init__(self, streams):
            self.streams = streams

        def get_streams(self):
            return self.streams

        @staticmethod
        def load_pcap(path, **kw):
            STLProfile.pcap_calls.append((path, kw))
            return STLProfile(["replay"])

        @staticmethod
        def load_py(path, direction=0, port_id=0, **kw):
            mod = load_profile(Path(path))
            return STLProfile(mod.register().get_streams(direction=direction, port_id=port_id,
                                                          **kw))

    class STLClient:
        def __init__(self, server="localhost", **kw):
            self.server, self.log, self.streams = server, [], []
            self.counts = {}

        def connect(self):
            self.log.append("connect")

        def reset(self, ports):
            self.log.append(("reset", ports))

        def set_port_attr(self, ports, promiscuous=None, **kw):
            self.log.append(("promiscuous", ports, promiscuous))

        def add_streams(self, streams, ports):
            self.streams += streams

        def clear_stats(self, ports):
            self.counts = {p: {"opackets": 0, "ipackets": 0} for p in ports}

        def start(self, ports, mult, duration, force):
            assert mult.endswith("pps") and force
            self.log.append(("start", mult, duration))
            sent, recv = dut.trial(float(mult[:-3]), duration)
            self.counts[ports[0]]["opackets"] = sent
            self.counts[1]["ipackets"] = recv

        def wait_on_traffic(self, ports, timeout):
            pass

        def get_stats(self, ports):
            return self.counts

        def get_port_attr(self, port):
            return {"speed": 10.0}

        def stop(self, ports):
            pass

        def disconnect(self):
            self.log.append("disconnect")

    for k, v in list(locals().items()):
        if k.startswith("STL"):
            setattr(api, k, v)
    return api


def load_profile(path: Path):
    spec = importlib.util.spec_from_file_location(f"trex_profile_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def trex_api(monkeypatch):
    api = fake_trex_api()
    pkg = types.ModuleType("trex")
    stl = types.ModuleType("trex.stl")
    pkg.stl, stl.api = stl, api
    for name, m in (("trex", pkg), ("trex.stl", stl), ("trex.stl.api", api)):
        monkeypatch.setitem(sys.modules, name, m)
    return api


# --- export ---------------------------------------------------------------------------------------

TEST_SCENARIOS = {
    "t-v4": dict(title="IPv4, 64 B (test)", family=4, sizes=[(64, 1)], packets=32),
    "t-v6": dict(title="IPv6, 66 B (test)", family=6, sizes=[(66, 1)], packets=32),
    "t-imix": dict(title="IPv4 IMIX (test)", family=4, sizes=[(64, 7), (570, 4), (1518, 1)],
                   packets=48),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Test scenarios as files (like perf/scenarios/), exported twice with the CLI."""
    base = tmp_path_factory.mktemp("export")
    scen = base / "scenarios"
    scen.mkdir()
    for name, kw in TEST_SCENARIOS.items():
        (scen / f"{name.replace('-', '_')}.py").write_text(
            "from harness.common import Scenario\n"
            f"SCENARIO = Scenario(name={name!r}, **{kw!r})\n")
    outs = []
    for i in range(2):
        out = base / f"out{i}"
        assert export_profiles.main(["--out", str(out), "--scenarios", str(scen)]) == 0
        outs.append(out)
    return {"out": outs[0], "again": outs[1],
            "scenarios": common.load_scenarios(scen)}


def all_files(d: Path):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_export_is_deterministic(exported):
    a, b = all_files(exported["out"]), all_files(exported["again"])
    assert a == b
    for name in TEST_SCENARIOS:
        for rel in (f"pcap/{name}.pcap", f"trex/{name}.py", f"pktgen/{name}.lua",
                    f"dut/{name}.json"):
            assert rel in a
    man = json.loads(a["manifest.json"])
    assert set(man) == set(TEST_SCENARIOS)
    for name, entry in man.items():
        for rel, digest in entry["files"].items():
            assert hashlib.sha256(a[rel]).hexdigest() == digest


def test_pcap_is_the_scenario_set(exported):
    for name, sc in exported["scenarios"].items():
        frames = rfc2544.read_pcap(exported["out"] / "pcap" / f"{name}.pcap")
        assert [len(f) + 4 for f in frames] == sc.frame_sizes()
        table = sc.table()
        for f, dst in zip(frames, table.destinations):
            assert f[:6] == bytes.fromhex(common.DUT_MAC.replace(":", ""))
            ip = f[30:34] if sc.family == 4 else f[38:54]
            assert ipaddress.ip_address(ip) == ipaddress.ip_address(dst)


def test_trex_profile_builds_the_set(exported, trex_api):
    for name, sc in exported["scenarios"].items():
        path = exported["out"] / "trex" / f"{name}.py"
        compile(path.read_text(), str(path), "exec")
        mod = load_profile(path)
        assert callable(mod.register) and mod.SCENARIO == name
        frames = rfc2544.read_pcap(exported["out"] / "pcap" / f"{name}.pcap")
        streams = mod.register().get_streams()
        assert len(streams) == len(frames) == sc.packets
        assert [s.packet.pkt_buffer for s in streams] == frames
        assert {s.mode.pps for s in streams} == {1}          # equal rates: the set's mix
        assert all(s.mac_dst_override_mode == 1 and s.mac_src_override_by_pkt for s in streams)
        assert mod.MEAN_WIRE_BYTES == pytest.approx(sum(len(f) + 4 for f in frames) / len(frames))
        # tunables: newer TRex passes an argparse list, older ones keywords
        new = mod.register().get_streams(tunables=["--dut_mac", "aa:bb:cc:dd:ee:ff"])
        assert new[0].packet.pkt_buffer[:6] == bytes.fromhex("aabbccddeeff")
        assert new[0].packet.pkt_buffer[6:] == frames[0][6:]
        old = mod.register().get_streams(direction=0, port_id=0, dut_mac="aa:bb:cc:00:00:01",
                                         src_mac="aa:bb:cc:00:00:02")
        assert old[1].packet.pkt_buffer[:12] == bytes.fromhex("aabbcc000001aabbcc000002")
        replay = mod.register().get_streams(tunables=["--mode", "replay", "--ipg_usec", "0.5"])
        assert replay == ["replay"]
        path_, kw = trex_api.STLProfile.pcap_calls[-1]
        assert kw["loop_count"] == 0 and kw["ipg_usec"] == 0.5
        assert kw["packet_hook"](frames[0]) == frames[0]
        with pytest.raises(ValueError, match="mode"):
            mod.register().get_streams(mode="burst")


def test_trex_profile_refuses_a_changed_pcap(exported, trex_api, tmp_path):
    shutil.copytree(exported["out"], tmp_path / "p")
    pcap = tmp_path / "p" / "pcap" / "t-v4.pcap"
    pcap.write_bytes(pcap.read_bytes()[:-1] + b"\x01")
    mod = load_profile(tmp_path / "p" / "trex" / "t-v4.py")
    with pytest.raises(ValueError, match="re-run"):
        mod.register().get_streams()


def test_trex_generator_search(exported, monkeypatch):
    dut = ModelDut(max_rate=0, capacity=6e6)
    api = fake_trex_api(dut)
    pkg, stl = types.ModuleType("trex"), types.ModuleType("trex.stl")
    pkg.stl, stl.api = stl, api
    for name, m in (("trex", pkg), ("trex.stl", stl), ("trex.stl.api", api)):
        monkeypatch.setitem(sys.modules, name, m)
    gen = rfc2544.TRexGenerator(exported["out"] / "trex" / "t-v4.py", "tg1", 0, 1,
                                settle_s=0, api=api)
    assert gen.mean_wire_bytes == 64.0
    assert ("promiscuous", [1], True) in gen.client.log
    assert len(gen.client.streams) == 32
    dut.max_rate = gen.max_rate_pps()
    assert dut.max_rate == pytest.approx(14_880_952.38, rel=1e-6)
    r = ndr_pdr(gen, 0.001, 0.005, 60)
    assert dut.ndr_pps - 0.005 * dut.max_rate <= r.ndr.rate_pps <= dut.ndr_pps
    starts = [x for x in gen.client.log if x[0] == "start"]
    assert starts and all(d == 60 for _, _, d in starts)
    gen.close()
    assert gen.client.log[-1] == "disconnect"


def test_pktgen_script_parameters(exported):
    for name, sc in exported["scenarios"].items():
        lua = (exported["out"] / "pktgen" / f"{name}.lua").read_text()
        for param in ("TX_PORT", "RX_PORT", "TRIAL_MS", "SETTLE_MS", "PDR_LOSS", "RESOLUTION",
                      "MAX_TRIALS", "MAX_RATE", "SWEEP_RATES", "MODE"):
            assert f"\n{param} " in lua, param
        assert f"-s 0:perf/profiles/pcap/{name}.pcap" in lua
        assert 'pktgen.set(tx, "rate", pct)' in lua and "pktgen.portStats" in lua
        assert "TRIAL_MS or 60000" in lua and "PDR_LOSS or 0.001" in lua


def test_dut_config(exported):
    # the daemon of the build under test (FWD_BUILD) checks each config; without it the
    # configs are unchecked, which is a failure, not a pass
    assert os.access(DAEMON, os.X_OK), f"{DAEMON} is missing: build first, or set FWD_BUILD"
    for name, sc in exported["scenarios"].items():
        path = exported["out"] / "dut" / f"{name}.json"
        cfg = json.loads(path.read_text())
        assert cfg["uplink"]["mac"] == common.DUT_MAC
        table = sc.table()
        assert len(cfg["routes"]) == len(table.routes)
        assert sum(1 for r in cfg["routes"] if r.get("type") == "blackhole") == \
            table.count("local-block")
        r = subprocess.run([str(DAEMON), "--config", str(path), "--check-config"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr


# --- the Lua script under a mock pktgen --------------------------------------------------------------

LUA = next((shutil.which(x) for x in ("lua5.4", "lua5.3", "lua") if shutil.which(x)), None)

MOCK_PKTGEN = """
-- a mock of pktgen's Lua API: virtual clock, pps = percent * PPS_PER_PCT,
-- the DUT forwards up to CAP_PPS
local clock, rate, running, t0, sent, recv = 0, 100, false, 0, 0, 0
local function flush()
    if running then
        local dt, pps = clock - t0, rate * PPS_PER_PCT
        sent = sent + math.floor(pps * dt)
        recv = recv + math.floor(math.min(pps, CAP_PPS) * dt)
        t0 = clock
    end
end
local function entry(p)
    if p == 0 then return { opackets = sent, ipackets = 0 } end
    return { opackets = 0, ipackets = recv }
end
pktgen = {
    set = function(p, what, v) if what == "rate" then flush(); rate = tonumber(v) end end,
    start = function(p) running = true; t0 = clock end,
    stop = function(p) flush(); running = false end,
    delay = function(ms) clock = clock + ms / 1000 end,
    pcap = function(p, s) PCAP = s end,
    linkState = function(p) return { [tonumber(p)] = "<UP-10000-FD>" } end,
}
if NEW_API then
    pktgen.portStats = function(pl, extra)
        if extra ~= nil then error("portStats, wrong number of arguments") end
        local p = tonumber(pl)
        return { [p] = { curr = entry(p) }, n = 1 }
    end
else
    pktgen.portStats = function(pl, typ)
        assert(typ == "port", "portStats, wrong number of arguments")
        local p = tonumber(pl)
        return { [p] = entry(p), n = 1 }
    end
end
"""


def run_lua(tmp_path, script: Path, globals_: str):
    (tmp_path / "mock.lua").write_text(MOCK_PKTGEN)
    drv = tmp_path / "drive.lua"
    drv.write_text(globals_ + f'\ndofile("{tmp_path / "mock.lua"}")\ndofile("{script}")\n')
    r = subprocess.run([LUA, str(drv)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.skipif(LUA is None, reason="no Lua interpreter (apt-get install lua5.4)")
@pytest.mark.parametrize("new_api", [False, True])
def test_pktgen_script_search_under_mock(exported, tmp_path, new_api):
    script = exported["out"] / "pktgen" / "t-v4.lua"
    ok = subprocess.run([LUA, "-e", f'assert(loadfile("{script}"))'], capture_output=True)
    assert ok.returncode == 0
    pps_per_pct, cap = 100_000.0, 4.2e6          # 100 % = 10 Mpps; capacity at 42 %
    out = run_lua(tmp_path, script,
                  f"PPS_PER_PCT = {pps_per_pct}\nCAP_PPS = {cap}\n"
                  f"NEW_API = {'true' if new_api else 'false'}\nRESULTS_FILE = "
                  f'"{tmp_path / "res.txt"}"\n')
    res = {line.split()[2]: line for line in out.splitlines() if line.startswith("RESULT")}
    assert set(res) == {"NDR", "PDR(0.001)"}, out

    def field(line, key):
        return float(line.split(f"{key}=")[1].split("%")[0].split()[0])
    ndr, pdr = field(res["NDR"], "rate"), field(res["PDR(0.001)"], "rate")
    assert 42 - 0.5 <= ndr <= 42 and ndr <= pdr and 42 / 0.999 - 0.5 <= pdr <= 42 / 0.999
    assert "NOT-CONVERGED" not in out and "DONE t-v4" in out
    n_trials = sum(1 for line in out.splitlines() if line.startswith("TRIAL"))
    assert n_trials <= 2 * trials_needed(0.005)
    assert "line rate" in out                     # 10 Gb/s link known
    assert (tmp_path / "res.txt").read_text().count("RESULT") == 2


@pytest.mark.skipif(LUA is None, reason="no Lua interpreter (apt-get install lua5.4)")
def test_pktgen_script_sweep_under_mock(exported, tmp_path):
    out = run_lua(tmp_path, exported["out"] / "pktgen" / "t-imix.lua",
                  'PPS_PER_PCT = 10000\nCAP_PPS = 500000\nMODE = "sweep"\n'
                  "SWEEP_RATES = {25, 50, 75, 100}\nTRIAL_MS = 1000\n")
    trials = [line for line in out.splitlines() if line.startswith("TRIAL")]
    assert len(trials) == 4 and "loss=0.000000%" in trials[1] and "loss=0.000000%" not in trials[3]


# --- the committed profiles -----------------------------------------------------------------------

def test_committed_profiles_match_the_scenarios():
    """perf/profiles/ was exported from the current perf/scenarios/ (checked by
    the manifest and the files' hashes, without re-exporting)."""
    scenarios = {n: sc for n, sc in common.load_scenarios(PERF / "scenarios").items()
                 if sc.profiles}   # the VXLAN ones need an IPAM store: software harness only
    if not scenarios:
        pytest.skip("no scenarios yet")
    prof = PERF / "profiles"
    man = json.loads((prof / "manifest.json").read_text())
    for name, sc in scenarios.items():
        assert name in man, f"{name}: not exported; run perf/export_profiles.py"
        entry = man[name]
        assert {k: v for k, v in entry.items() if k != "files"} == \
            json.loads(json.dumps(export_profiles.describe(sc))), \
            f"{name} changed since the export: run perf/export_profiles.py {name}"
        for rel, digest in entry["files"].items():
            assert hashlib.sha256((prof / rel).read_bytes()).hexdigest() == digest, rel
        assert len(rfc2544.read_pcap(prof / "pcap" / f"{name}.pcap")) == sc.packets
