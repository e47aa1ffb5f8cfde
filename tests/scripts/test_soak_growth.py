"""scripts/soak_check.py, the soak's verdict, on synthetic series: flat and noisy series pass,
a leak fails naming what grew, the churn's sawtooth passes, a warm-up ramp is forgiven; drops
of reasons the traffic does not explain, leaked namespaces and failing traffic fail it."""
import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts"))
import soak_check  # noqa: E402

MIB = 1 << 20


def times(n, interval=15.0):
    return [i * interval for i in range(n)]


def judge(metric, ys, interval=15.0):
    return soak_check.growth(times(len(ys), interval), ys, *soak_check.TOLERANCES[metric])


def test_flat_and_noisy_series_pass():
    rng = random.Random(1)
    assert not judge("rss_bytes", [200 * MIB] * 20)["grew"]
    noisy = [200 * MIB + rng.randint(-2 * MIB, 2 * MIB) for _ in range(60)]
    v = judge("rss_bytes", noisy, 60)
    assert v["judged"] and not v["grew"], v
    # a table with traffic's flows coming and going
    flows = [300 + rng.randint(-40, 40) for _ in range(40)]
    assert not judge("conntrack_flows", flows)["grew"]


def test_leak_fails():
    # 64 KiB a sample over 60 samples: 3.8 MiB on 20 MiB, past 5 %
    leak = [20 * MIB + i * 64 * 1024 for i in range(60)]
    v = judge("heap_bytes", leak, 60)
    assert v["judged"] and v["grew"], v
    assert v["slope"] > 0
    # an fd a minute, with noise
    rng = random.Random(2)
    fds = [40 + i + rng.randint(-1, 1) for i in range(30)]
    assert judge("fds", fds, 60)["grew"]
    # one endpoint left behind every few churn cycles
    eps = [8 + i // 3 for i in range(40)]
    assert judge("endpoints", eps)["grew"]


def test_small_growth_inside_the_floor_passes():
    # 3 routes more by the end on a table of 20: inside the floor of 8
    routes = [20] * 10 + [21] * 10 + [23] * 10
    assert not judge("routes_v4", routes)["grew"]


def test_sawtooth_passes():
    # the churn's pod: present at some samples, gone at others; irregular phase; an
    # amplitude above the floor (two pods' routes, fds)
    rng = random.Random(3)
    for metric, base, amp in (("routes_v4", 20, 10), ("fds", 60, 6), ("endpoints", 8, 5),
                              ("mbufs_in_use", 1000, 400)):
        ys = [base + (amp if rng.random() < 0.5 else 0) for _ in range(40)]
        v = judge(metric, ys)
        assert v["judged"] and not v["grew"], (metric, v)
        # a regular sawtooth too
        ys = [base + (i % 4) * amp // 3 for i in range(40)]
        assert not judge(metric, ys)["grew"], (metric, judge(metric, ys))


def test_warm_up_is_forgiven_and_short_runs_are_not_judged():
    # RSS ramps over the first samples (pages touched once), then flat
    ramp = [100 * MIB + min(i, 3) * 20 * MIB for i in range(20)]
    assert not judge("rss_bytes", ramp)["grew"]
    short = judge("rss_bytes", [1, 2 * MIB * 100, 3 * MIB * 100])
    assert not short["judged"] and not short["grew"]
    # the connection table fills for its flows' timeouts: 90 s of it (every 10 s) is all
    # warm-up; past that, a plateau passes and a table that keeps filling fails
    t = times(10, 10)
    filling = [i * 30 for i in range(10)]
    v = soak_check.judge_growth({("node1", "conntrack_flows"): (t, filling)})
    assert not v[("node1", "conntrack_flows")]["judged"]
    t = times(40, 10)
    plateau = [min(i, 15) * 30 for i in range(40)]
    assert not soak_check.judge_growth({("n", "conntrack_flows"): (t, plateau)})[
        ("n", "conntrack_flows")]["grew"]
    assert soak_check.judge_growth({("n", "conntrack_flows"): (t, [i * 30 for i in range(40)])})[
        ("n", "conntrack_flows")]["grew"]


def test_verdict_names_what_grew_dropped_leaked_and_failed():
    t = times(30)
    series = {("node1", "heap_bytes"): (t, [20 * MIB + i * 256 * 1024 for i in range(30)]),
              ("node1", "fds"): (t, [50] * 30),
              ("node2", "routes_v4"): (t, [30] * 30),
              ("etcd", "etcd_rss_bytes"): (t, [50 * MIB + i * MIB for i in range(30)])}
    ok, problems, grown = soak_check.verdict(
        series, {"node1": {"no_route": 5, "eth_multicast": 30}, "node2": {"tx_queue_full": 3}},
        {"netns": 9, "links node1": 4}, {"netns": 10, "links node1": 4},
        {"ping across nodes v4": [50, 1], "svc ClusterIP v6": [2, 8]})
    assert not ok
    text = "\n".join(problems)
    assert "node1 heap_bytes grew" in text
    assert "fds" not in text and "routes_v4" not in text
    # etcd is shown, never judged
    assert grown[("etcd", "etcd_rss_bytes")]["reported_only"]
    assert "etcd" not in text
    assert "node2 dropped 3 packets as tx_queue_full" in text
    assert "no_route" not in text and "eth_multicast" not in text
    assert "leaked netns: 9 before the churn, 10 after" in text
    assert "traffic svc ClusterIP v6: 8 of 10 runs failed" in text
    assert "ping across nodes" not in text
    assert len(problems) == 4, problems


def test_clean_verdict():
    t = times(12)
    ok, problems, _ = soak_check.verdict({("node1", "rss_bytes"): (t, [90 * MIB] * 12)},
                                         {"node1": {"eth_multicast": 4, "no_route": 0}},
                                         {"netns": 9}, {"netns": 9}, {"udp v4": [10, 0]})
    assert ok and problems == []
