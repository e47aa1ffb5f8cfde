"""The soak's verdict (scripts/soak.py), as pure functions of what it sampled: no lab, no
root, so tests/scripts/test_soak_growth.py runs them on synthetic series.

Growth. A series (one metric of one process, sampled every interval) is judged on its
steady state: the samples after the warm-up (the first WARMUP_FRACTION of them, at least
WARMUP_MIN). Two measures must both exceed the metric's tolerance for it to count as grown:

  trend   the Theil-Sen slope (median of the slopes between every pair of samples) times the
          steady window's length: what a steady leak adds over the run. A median of pair
          slopes ignores a few outliers, and a sawtooth (the churn's pod that is there at
          one sample and gone at the next) gives as many falling pairs as rising ones.
  shift   the median of the window's last quarter minus the median of its first quarter
          (against half the tolerance): a leak moves the level, a trend made of noise in a
          short run does not.

The tolerance is max(relative x the series' median level, the metric's absolute floor)
(TOLERANCES): 5 % where the level is large (memory), a floor of a few entries where it is
small (tables, fds), so that one pod more at the last sample is not a leak. Fewer than
STEADY_MIN steady samples: not judged (too short), never a failure. The connection table
warms up for WARMUP_SECONDS at least (its flows' timeouts): a short run does not judge it.

Drops. Reasons the soak's traffic and churn explain (EXPECTED_DROPS: the uplink's broadcast
and neighbor noise, packets in flight to a pod just deleted, TCP segments after their flow
ended) are reported per minute; any other reason (loss without a cause: a full queue, ring
or table, no mbuf, a spoofed source, an encapsulation error...) fails the soak.

Leaks. The lab's interfaces and namespaces after the churn stopped must be what they were
before it started.
"""
import statistics

WARMUP_FRACTION = 0.2
WARMUP_MIN = 2
STEADY_MIN = 4
MIB = 1 << 20

# metric -> (relative tolerance of the median level, absolute floor in the metric's unit)
TOLERANCES = {
    "rss_bytes": (0.05, 8 * MIB),
    "heap_bytes": (0.05, 1 * MIB),
    "fds": (0.05, 4),
    "mbufs_in_use": (0.05, 256),
    "routes_v4": (0.05, 8),
    "routes_v6": (0.05, 8),
    "endpoints": (0.05, 4),
    "neighbors": (0.05, 4),
    "conntrack_flows": (0.10, 64),
    "nat_pools": (0.05, 2),
    "svc_frontends": (0.05, 2),
    "ipam_blocks": (0.05, 2),
    "links": (0.05, 4),
    # the store, from the ToR: every node's blocks and every address held
    "store_blocks": (0.05, 2),
    "store_addresses": (0.05, 8),
    "netns": (0.05, 4),
    "root_links": (0.05, 4),
}
# metric -> seconds of warm-up at least: the connection table fills until the first flows of
# the traffic expire (the conntrack section's timeouts: 120 s for a closed TCP connection in
# TIME_WAIT and for a UDP flow that was answered), then comes and goes around a level
WARMUP_SECONDS = {"conntrack_flows": 150}
# sampled and shown, not judged: the lab's etcd keeps every revision (no compaction), so it
# grows with the churn's writes by design; the store's own counts above are judged instead
REPORTED_ONLY = ("etcd_rss_bytes",)

# Drop reasons the soak's traffic explains (the rest are loss without a cause).
EXPECTED_DROPS = {
    # the uplink's broadcast and neighbor noise, frames for other hosts on the ToR's bridge
    "eth_not_for_us": "frames for other nodes on the ToR's bridge",
    "eth_multicast": "multicast on the ToR's bridge",
    "eth_unknown_type": "other ethertypes on the ToR's bridge",
    "arp_gratuitous": "gratuitous ARP (a pod or node coming up)",
    "arp_not_for_us": "ARP for the other nodes",
    "arp_reply": "ARP replies for the other nodes",
    "nd_target_unknown": "solicitations for the other nodes",
    "nd_unhandled": "RS, RA, NA: nothing to do",
    "ip4_multicast": "IPv4 multicast or broadcast (a pod or the ToR)",
    "ip6_multicast": "IPv6 multicast (MLD, a pod's DAD)",
    "ip6_link_local_dest": "link-local traffic of other hosts",
    "icmp_unhandled": "ICMP to the node other than echo",
    # measured: none while the lab idles, a few per churned pod (its kernel talking to its
    # node as eth0 comes up), dropped as Calico's defaultEndpointToHostAction Drop does
    "endpoint_to_host_drop": "a churned pod's kernel talking to its node as it comes up",
    "local_unhandled": "non-ICMP traffic to a dataplane address",
    # churn: packets in flight to (or from) a pod just deleted
    "no_route": "traffic to a churned pod just deleted",
    "route_blackhole": "traffic to a churned pod's freed address (its block's blackhole)",
    "port_down": "traffic to a churned pod's port going away",
    "icmp_rate_limited": "unreachables for the churned pod's late packets",
    # TCP and ICMP after their flow ended (a retransmission, a late RST or reply)
    "ct_tcp_invalid": "TCP segments after their connection closed",
    "ct_tcp_out_of_window": "late TCP retransmissions",
    "ct_tcp_rst_out_of_window": "late TCP RSTs",
    "ct_icmp_no_request": "late echo replies",
}


def theil_sen(t, y):
    """The median of the slopes between every pair of samples with distinct times."""
    slopes = [(y[j] - y[i]) / (t[j] - t[i])
              for i in range(len(t)) for j in range(i + 1, len(t)) if t[j] != t[i]]
    return statistics.median(slopes) if slopes else 0.0


def steady(t, y, warmup_s=0.0):
    """The samples after the warm-up (and at least warmup_s after the first)."""
    skip = max(WARMUP_MIN, int(len(t) * WARMUP_FRACTION))
    while skip < len(t) and t[skip] - t[0] < warmup_s:
        skip += 1
    return list(t[skip:]), list(y[skip:])


def growth(t, y, rel, floor, warmup_s=0.0):
    """The verdict on one series: {grew, judged, trend, shift, tolerance, level, slope}
    (slope per minute when t is in seconds)."""
    st, sy = steady(t, y, warmup_s)
    if len(st) < STEADY_MIN:
        return {"judged": False, "grew": False, "trend": 0.0, "shift": 0.0, "slope": 0.0,
                "tolerance": 0.0, "level": sy[-1] if sy else (y[-1] if y else 0)}
    slope = theil_sen(st, sy)
    trend = slope * (st[-1] - st[0])
    q = max(1, len(sy) // 4)
    shift = statistics.median(sy[-q:]) - statistics.median(sy[:q])
    level = statistics.median(sy)
    tol = max(rel * abs(level), floor)
    return {"judged": True, "grew": trend > tol and shift > tol / 2, "trend": trend,
            "shift": shift, "slope": slope * 60, "tolerance": tol, "level": level}


def judge_growth(series):
    """series: {(process, metric): (times, values)}. Returns {(process, metric): verdict}
    for every series of a metric in TOLERANCES or REPORTED_ONLY (the latter never grew)."""
    out = {}
    for (proc, metric), (t, y) in sorted(series.items()):
        if metric in TOLERANCES:
            out[(proc, metric)] = growth(t, y, *TOLERANCES[metric],
                                         WARMUP_SECONDS.get(metric, 0.0))
        elif metric in REPORTED_ONLY:
            v = growth(t, y, 0.0, 0.0)
            v["grew"] = False
            v["reported_only"] = True
            out[(proc, metric)] = v
    return out


def classify_drops(totals):
    """totals: {reason: packets over the run}. (expected, unexpected), each {reason: n>0}."""
    expected = {r: n for r, n in totals.items() if n and r in EXPECTED_DROPS}
    unexpected = {r: n for r, n in totals.items() if n and r not in EXPECTED_DROPS}
    return expected, unexpected


def leaks(before, after):
    """before, after: {what: count}. What there is more of after the churn: {what: (b, a)}."""
    return {k: (before.get(k, 0), n) for k, n in after.items() if n > before.get(k, 0)}


MAX_FAILED_FRACTION = 0.1


def traffic_problems(results):
    """results: {kind: [ok, failed]}. The kinds of traffic that failed more than
    MAX_FAILED_FRACTION of their runs (a loaded machine loses a ping now and then; a
    path that stopped working fails most of them)."""
    return {k: (ok, bad) for k, (ok, bad) in sorted(results.items())
            if bad > MAX_FAILED_FRACTION * (ok + bad)}


def verdict(series, drop_totals, before, after, traffic):
    """The soak's verdict: (ok, problems: [str], growth verdicts). Each problem names what
    grew, leaked, dropped or failed."""
    problems = []
    grown = judge_growth(series)
    for (proc, metric), v in grown.items():
        if v["grew"]:
            problems.append(f"{proc} {metric} grew: {v['level']:.0f} at its median, "
                            f"+{v['trend']:.0f} over the steady window by its trend "
                            f"(last quarter +{v['shift']:.0f}), tolerance {v['tolerance']:.0f}")
    for proc, totals in sorted(drop_totals.items()):
        _, bad = classify_drops(totals)
        for r, n in sorted(bad.items()):
            problems.append(f"{proc} dropped {n} packets as {r} (not explained by the soak's "
                            "traffic)")
    for what, (b, a) in sorted(leaks(before, after).items()):
        problems.append(f"leaked {what}: {b} before the churn, {a} after")
    for kind, (ok, bad) in traffic_problems(traffic).items():
        problems.append(f"traffic {kind}: {bad} of {ok + bad} runs failed")
    return not problems, problems, grown
