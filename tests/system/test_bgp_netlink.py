"""Kernel routes (what BIRD installs) into the dataplane at scale, without BIRD:
`ip -batch` plays BIRD's part in the node namespace, so the numbers are the
watcher + control thread's, and the kernel's own time is the peer they are
compared with.

One daemon in a node namespace with a host tap (the kernel has the node's
subnet on it, so routes via a neighbor there are accepted) and the netlink
watcher on. Only routes of the configured protocol (bird = 12) are taken.
"""
import json
import time

from fwdlab import (RUN_ID, assert_link_only_in, record_results, uplink_daemon_config,
                    uplink_ifname, wait_until)

HOST_TAP = "fwdhost"
NODE4, NODE6 = "10.0.0.1/24", "fd00::1/64"
PEER4, PEER6 = "10.0.0.2", "fd00::2"
PEER4B, PEER6B = "10.0.0.3", "fd00::3"


def bgp_count(d):
    return d.ctl("tables")["routes_by_source"]["bgp"]


def batch(ns, tmp, name, lines):
    path = f"{tmp}/{name}"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    t0 = time.monotonic()
    ns.run(f"ip -batch {path}", timeout=300)
    return time.monotonic() - t0


def test_kernel_routes_reach_the_dataplane_and_leave_it(netns_factory, daemon_factory,
                                                         tmpdir_short):
    ns = netns_factory("bn")
    tag = "n"
    extra = uplink_daemon_config(tag, 0, "02:00:00:00:0e:01", NODE4, NODE6, extra={
        "host": {"tap": HOST_TAP},
        "bgp": {"table": 254, "protocols": [12]},
        "tables": {"ipv4_routes": 65536, "ipv6_routes": 65536, "ipv4_tbl8s": 32768,
                   "ipv6_tbl8s": 40000},
        "eal": {"file_prefix": f"fwdt{RUN_ID}bn", "in_memory": True, "memory_mb": 700},
    })
    d = daemon_factory("bn", extra=extra, netns=ns)
    # the uplink tap is in the node namespace (and stays there: no peer needed)
    assert_link_only_in(ns, uplink_ifname(tag))
    t = d.ctl("tables")
    assert t["bgp"]["enabled"] is True and t["bgp"]["error"] in (None, ""), t

    # one route of each shape, then the protocol filter
    ns.run(f"ip route add 10.244.9.0/26 via {PEER4} proto bird")
    ns.run(f"ip -6 route add fd00:244::9:0/122 via {PEER6} proto bird")
    ns.run(f"ip route add 10.244.8.0/26 proto bird nexthop via {PEER4} nexthop via {PEER4B}")
    ns.run(f"ip -6 route add fd00:244::8:0/122 proto bird nexthop via {PEER6} "
           f"nexthop via {PEER6B}")
    ns.run(f"ip route add 10.99.0.0/16 via {PEER4} proto static")  # not BIRD's: ignored
    ns.run(f"ip route add 10.98.0.0/16 via {PEER4}")  # proto boot: ignored
    wait_until(lambda: bgp_count(d) == 4, 5, what="4 bgp routes")
    routes = {r["prefix"]: r for r in d.ctl("route", "list", "--source", "bgp")["routes"]}
    assert routes["10.244.9.0/26"]["via"] == [PEER4], routes
    assert routes["fd00:244::9:0/122"]["via"] == [PEER6], routes
    assert sorted(routes["10.244.8.0/26"]["via"]) == [PEER4, PEER4B], routes
    assert sorted(routes["fd00:244::8:0/122"]["via"]) == [PEER6, PEER6B], routes
    assert all(r["active"] for r in routes.values()), routes
    t = d.ctl("tables")
    assert t["ecmp_groups"] == 2, t
    # each next hop is a neighbor the dataplane resolves (nobody answers here)
    neigh = {n["ip"] for n in d.ctl("neighbor", "list")["neighbors"]}
    assert {PEER4, PEER4B, PEER6, PEER6B} <= neigh, neigh

    # a path withdrawn from the ECMP route: the route follows the kernel
    ns.run(f"ip route replace 10.244.8.0/26 via {PEER4B} proto bird")
    ns.run(f"ip -6 route del fd00:244::8:0/122 via {PEER6B} proto bird")
    wait_until(lambda: (lambda r: r["10.244.8.0/26"]["via"] == [PEER4B]
                        and r["fd00:244::8:0/122"]["via"] == [PEER6])(
        {r["prefix"]: r for r in d.ctl("route", "list", "--source", "bgp")["routes"]}),
        5, what="ECMP paths withdrawn")
    wait_until(lambda: d.ctl("tables")["ecmp_groups"] == 0, 5, what="groups freed")

    # 10k IPv4 /26 + 10k IPv6 /122 in one burst each, like a BGP full table arriving
    n = 10000
    v4 = [f"10.{128 + (i >> 10)}.{(i >> 2) & 255}.{(i & 3) * 64}/26" for i in range(n)]
    v6 = [f"fd00:245::{i >> 2:x}:{(i & 3) * 64:x}/122" for i in range(n)]
    base = bgp_count(d)
    t_before = d.ctl("tables")
    t0 = time.monotonic()
    k4 = batch(ns, tmpdir_short, "add4", [f"route add {p} via {PEER4} proto bird" for p in v4])
    k6 = batch(ns, tmpdir_short, "add6", [f"route add {p} via {PEER6} proto bird" for p in v6])
    wait_until(lambda: bgp_count(d) == base + 2 * n, 60, interval=0.01, what="20k bgp routes")
    t_add = time.monotonic() - t0
    t_full = d.ctl("tables")
    assert t_full["ipv4_routes"] >= n and t_full["ipv6_routes"] >= n, t_full
    assert t_full["route_errors"] == t_before["route_errors"], t_full
    # spot checks
    for p in (v4[0], v4[4321], v4[-1], v6[0], v6[4321], v6[-1]):
        r = d.ctl("route", "list", "--prefix", p)["routes"]
        assert len(r) == 1 and r[0]["source"] == "bgp" and r[0]["active"], (p, r)

    t0 = time.monotonic()
    batch(ns, tmpdir_short, "del4", [f"route del {p} proto bird" for p in v4])
    batch(ns, tmpdir_short, "del6", [f"route del {p} proto bird" for p in v6])
    wait_until(lambda: bgp_count(d) == base, 60, interval=0.01, what="bgp routes withdrawn")
    t_del = time.monotonic() - t0
    t_end = d.ctl("tables")
    assert t_end["ipv4_routes"] == t_before["ipv4_routes"], t_end
    assert t_end["ipv6_routes"] == t_before["ipv6_routes"], t_end

    res = {
        "routes": 2 * n,
        "kernel_ip_batch_s": round(k4 + k6, 3),
        "add_to_dataplane_s": round(t_add, 3),
        "add_routes_per_s": round(2 * n / t_add),
        "del_to_dataplane_s": round(t_del, 3),
        "del_routes_per_s": round(2 * n / t_del),
        "ratio_dataplane_to_kernel_add": round(t_add / (k4 + k6), 2),
        "largest_netlink_batch": t_full["bgp"]["last_batch_routes"],
        "max_batch_us": t_end["bgp"]["max_batch_us"],
        "resyncs": t_end["bgp"]["resyncs"],
        "backpressure_waits": t_end["bgp"]["backpressure_waits"],
    }
    record_results("bgp_netlink_scale", res)
    print("\n" + json.dumps(res))


def test_api_round_trip(netns_factory, daemon_factory):
    """API latency: a no-op ('version') and a route add / del that is live when it
    returns, over the real socket (median of 500 each); reported, not judged,
    beside the bare socket round trip (a peer measured in the same run)."""
    import socket
    import statistics

    ns = netns_factory("rt")
    extra = uplink_daemon_config("r", 1, "02:00:00:00:0e:02", NODE4, NODE6)
    d = daemon_factory("rt", extra=extra, netns=ns)

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(d.sock)
    f = s.makefile("rwb", buffering=0)

    def call(i, op, args):
        f.write((json.dumps({"id": i, "op": op, "args": args}) + "\n").encode())
        line = f.readline()
        reply = json.loads(line)
        assert reply.get("ok") is True, reply
        return reply

    def median_us(op, args_of, n=500):
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            call(i, op, args_of(i))
            times.append((time.perf_counter() - t0) * 1e6)
        return statistics.median(times)

    # the peer: a line echo served by another thread over a unix socket pair (the
    # floor of any socket API: the same two wake-ups a daemon needs at least)
    import threading
    a, b = socket.socketpair()

    def echo():
        fb = b.makefile("rwb", buffering=0)
        for line in fb:
            fb.write(line)
            if line == b"stop\n":
                return

    th = threading.Thread(target=echo)
    th.start()
    fa = a.makefile("rwb", buffering=0)
    times = []
    for _ in range(500):
        t0 = time.perf_counter()
        fa.write(b"x" * 64 + b"\n")
        fa.readline()
        times.append((time.perf_counter() - t0) * 1e6)
    fa.write(b"stop\n")
    th.join()
    floor = statistics.median(times)

    version = median_us("version", lambda i: {})
    add4 = median_us("route.add", lambda i: {"prefix": f"10.77.{i >> 8}.{i & 255}/32",
                                               "via": PEER4})
    del4 = median_us("route.del", lambda i: {"prefix": f"10.77.{i >> 8}.{i & 255}/32"})
    add6 = median_us("route.add", lambda i: {"prefix": f"fd00:77::{i:x}/128", "via": PEER6})
    del6 = median_us("route.del", lambda i: {"prefix": f"fd00:77::{i:x}/128"})
    assert d.ctl("tables")["routes_by_source"]["static"] == 0
    res = {"python_thread_echo_us": round(floor, 1), "version_us": round(version, 1),
           "route_add4_us": round(add4, 1), "route_del4_us": round(del4, 1),
           "route_add6_us": round(add6, 1), "route_del6_us": round(del6, 1),
           "version_vs_python_thread_echo": round(version / floor, 2)}
    record_results("api_round_trip", res)
    print("\n" + json.dumps(res))
    s.close()
