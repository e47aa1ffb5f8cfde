"""The route API under load: route churn while pods stream (no packet may be
lost), 100k IPv4 + 100k IPv6 routes in the tables, and invalid requests that
must be refused whole, with a message, leaving the daemon as it was.

Every node has an uplink to a router namespace (as in test_uplink.py), so
routes via the router are real next hops resolved by ARP / ND."""
import ipaddress
import json
import pathlib
import statistics
import subprocess
import time

import fwdlab
from fwdlab import FWDCTL, RUN_ID, sh

UDP_SEQ = pathlib.Path(__file__).with_name("udp_seq.py")
PY = "/usr/bin/python3"

ROUTER_MAC = "02:00:00:00:0b:01"
UPLINK_MAC = "02:00:00:00:0b:0a"
ROUTER4, ROUTER6 = "10.10.10.1", "fd00:10:10::1"
POD_A = ("192.168.0.2", "fd00:10:244::2")
POD_B = ("192.168.0.3", "fd00:10:244::3")

# Drop reasons pod and router chatter (MLD, RS, gratuitous ARP) can cause on an
# idle node; every other reason must not move while the stream runs.
CHATTER_DROPS = {"eth_multicast", "ip4_multicast", "ip6_multicast", "nd_unhandled",
                 "arp_gratuitous", "nd_target_unknown", "ip6_link_local_dest", "arp_not_for_us",
                 "icmp_unhandled"}


# ---------------------------------------------------------------------------------------------
# helpers


def uplink_extra(tag, core=1, more=None):
    """extra= for a Daemon with one worker on `core` polling a net_tap uplink, and
    host routes to the router (resolved by ARP / ND: no MAC pinned)."""
    ifname = f"fwc{RUN_ID}{tag}"[:15]
    extra = {
        "uplink": {"devargs": f"net_tap_rc{RUN_ID}{tag},iface={ifname}", "rx_queues": 1,
                   "mac": UPLINK_MAC},
        "cores": {"main": 0, "control": 0,
                  "workers": [{"core": core, "rx": [{"port": "uplink", "queue": 0}]}]},
        "routes": [{"prefix": f"{ROUTER4}/32", "via": ROUTER4},
                   {"prefix": f"{ROUTER6}/128", "via": ROUTER6}],
    }
    extra.update(more or {})
    return ifname, extra


def make_router(netns_factory, ifname, label):
    """Moves the daemon's uplink tap into a new router namespace and addresses it."""
    rt = netns_factory(label)
    sh(f"ip link set {ifname} netns {rt.name}")
    rt.run(f"ip link set {ifname} address {ROUTER_MAC}")
    rt.run(f"sysctl -qw net.ipv6.conf.{ifname}.accept_dad=0")
    rt.run(f"ip link set {ifname} up")
    rt.run(f"ip addr add {ROUTER4}/24 dev {ifname}")
    rt.run(f"ip addr add {ROUTER6}/64 dev {ifname} nodad")
    rt.run("ip route add 192.168.0.0/24 via 10.10.10.10")
    rt.run("ip -6 route add fd00:10:244::/64 via fd00:10:10::10")
    rt.ifname = ifname
    return rt


def add_pods(d, netns_factory, labels):
    pods = []
    for label, (v4, v6) in zip(labels, (POD_A, POD_B)):
        ns = netns_factory(label)
        ns.v4, ns.v6 = v4, v6
        d.add_pod(ns, ipv4=v4, ipv6=v6)
        pods.append(ns)
    return pods


def ping(ns, addr, count=1, check=True):
    fam = "-6" if ":" in addr else "-4"
    return ns.run(f"ping {fam} -c {count} -i 0.2 -W 2 {addr}", check=check, timeout=30)


def fwdctl(d, *args, timeout=120):
    """fwdctl -s SOCK --json ARGS; returns (CompletedProcess, seconds it took)."""
    t0 = time.monotonic()
    r = subprocess.run([str(FWDCTL), "-s", d.sock, "--json", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - t0


def tables(d):
    return d.ctl("tables")


def write_json(tmp, name, obj):
    p = pathlib.Path(tmp) / name
    p.write_text(json.dumps(obj, separators=(",", ":")))
    return p


def apply_batches(d, tmp, verb, batches, key):
    """route add|del --file for each batch; returns (seconds per request, versions)."""
    times, versions = [], []
    for i, batch in enumerate(batches):
        f = write_json(tmp, f"{key}-{verb}-{i}.json", batch)
        r, dt = fwdctl(d, "route", verb, "--file", f)
        assert r.returncode == 0, (f"route {verb} --file (request {i}, {len(batch)} routes) "
                                   f"exited {r.returncode} after {dt:.1f}s:\n{r.stdout}{r.stderr}")
        reply = json.loads(r.stdout)
        assert reply[{"add": "added", "del": "deleted"}[verb]] == len(batch), reply
        times.append(dt)
        versions.append(reply["version"])
        f.unlink()
    return times, versions


def drops_delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def port_errors(stats):
    return sum(p["rx_missed"] + p["tx_errors"] for p in stats["ports"])


def record(name, results):
    rec = getattr(fwdlab, "record_results", None)
    if rec is not None:
        rec(name, results)
    else:
        print(f"\n{name}: {json.dumps(results, sort_keys=True)}")


def mem_info(d):
    st = {}
    for line in pathlib.Path(f"/proc/{d.proc.pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "HugetlbPages"):
            st[k] = v.strip()
    return st


def hugepages_free():
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return None


class Stream:
    """udp_seq.py receiver in dst, sender in src; stopped by PID."""

    def __init__(self, src, dst, addr, port, rate):
        self.recv = dst.popen(f"{PY} {UDP_SEQ} recv {addr} {port}", stdin=subprocess.PIPE)
        line = self.recv.stdout.readline().strip()
        assert line == "ready", f"receiver: {line!r} {self.recv.stderr.read() if not line else ''}"
        self.send = src.popen(f"{PY} {UDP_SEQ} send {addr} {port} {rate}", stdin=subprocess.PIPE)
        assert self.send.stdout.readline().strip() == "sending"
        self.addr = addr

    def stop(self):
        out, err = self.send.communicate("stop\n", timeout=30)
        assert self.send.returncode == 0, err
        sent = json.loads(out.strip().splitlines()[-1])
        out, err = self.recv.communicate(f"stop {sent['sent']}\n", timeout=60)
        assert self.recv.returncode == 0, err
        got = json.loads(out.strip().splitlines()[-1])
        return sent, got

    def kill(self):
        for p in (self.send, self.recv):
            if p.poll() is None:
                p.kill()
                p.wait()


# ---------------------------------------------------------------------------------------------
# 1. route churn under traffic


def churn_routes():
    """5000 IPv4 /26../32 and 5000 IPv6 /122../128, half via the router, half blackhole;
    none overlapping the pods, the node or the router."""
    v4, v6 = [], []
    base4 = int(ipaddress.IPv4Address("172.20.0.0"))
    base6 = int(ipaddress.IPv6Address("fd00:c0de::"))
    for i in range(5000):
        a4 = ipaddress.IPv4Address(base4 + i * 64)
        a6 = ipaddress.IPv6Address(base6 + i * 64)
        r4 = {"prefix": f"{a4}/{26 + i % 7}"}
        r6 = {"prefix": f"{a6}/{122 + i % 7}"}
        if i % 2 == 0:
            r4["via"], r6["via"] = ROUTER4, ROUTER6
        else:
            r4["type"] = r6["type"] = "blackhole"
        v4.append(r4)
        v6.append(r6)
    return v4, v6


ROUNDS = 3  # add all, delete all; one round takes about a second


def test_route_churn_loses_no_packet(daemon_factory, netns_factory, tmpdir_short):
    ifname, extra = uplink_extra("ch")
    d = daemon_factory("churn", workers=(1,), extra=extra)
    make_router(netns_factory, ifname, "chrt")
    a, b = add_pods(d, netns_factory, ("cha", "chb"))
    for x, y in ((a, b), (b, a)):  # neighbors resolved before the stream starts
        ping(x, y.v4)
        ping(x, y.v6)
    ping(a, ROUTER4)
    ping(a, ROUTER6)

    v4, v6 = churn_routes()
    adds = [v4[i * 50:(i + 1) * 50] + v6[i * 50:(i + 1) * 50] for i in range(100)]
    dels = [[{"prefix": r["prefix"]} for r in batch] for batch in adds]
    t_before = tables(d)
    s_before = d.stats()
    rate = 3500  # packets/s per family

    streams = []
    try:
        streams.append(Stream(a, b, b.v4, 6001, rate))
        streams.append(Stream(a, b, b.v6, 6002, rate))
        time.sleep(1.0)
        t0 = time.monotonic()
        add_times, add_versions, del_times, del_versions = [], [], [], []
        for rnd in range(ROUNDS):
            t, v = apply_batches(d, tmpdir_short, "add", adds, "churn")
            add_times += t
            add_versions += v
            t_full = tables(d)
            assert t_full["ipv4_routes"] == t_before["ipv4_routes"] + 5000, (rnd, t_full)
            assert t_full["ipv6_routes"] == t_before["ipv6_routes"] + 5000, (rnd, t_full)
            # the via routes resolved their next hop: live, pointing at the router
            for prefix, via in ((v4[0]["prefix"], ROUTER4), (v6[0]["prefix"], ROUTER6)):
                lst = d.ctl("route", "list", "--prefix", prefix)
                assert lst["total"] == 1, lst
                r = lst["routes"][0]
                assert (r["source"], r["kind"], r["via"], r["active"]) == \
                    ("static", "via", [via], True), r
            # the router's host routes and the churn
            assert d.ctl("route", "list", "--source", "static", "--limit", 0)["total"] == 10002
            t, v = apply_batches(d, tmpdir_short, "del", dels, "churn")
            del_times += t
            del_versions += v
        churn_s = time.monotonic() - t0
        time.sleep(1.0)
        results = [s.stop() for s in streams]
    finally:
        for s in streams:
            s.kill()
    t_after = tables(d)
    s_after = d.stats()

    drops = drops_delta(s_before["drops"], s_after["drops"])
    print(f"\ndrops during the churn (all reasons that moved): {drops}")
    print(f"drops dict at the end: { {k: v for k, v in s_after['drops'].items() if v} }")
    for fam, (sent, got) in zip(("ipv4", "ipv6"), results):
        print(f"{fam}: sent {sent}, received {got}")
    add_rate = 10000 * ROUNDS / sum(add_times)
    del_rate = 10000 * ROUNDS / sum(del_times)
    res = {
        "packets_sent_ipv4": results[0][0]["sent"], "packets_lost_ipv4": results[0][1]["missing"],
        "packets_sent_ipv6": results[1][0]["sent"], "packets_lost_ipv6": results[1][1]["missing"],
        "churn_seconds": round(churn_s, 2), "rounds": ROUNDS,
        "requests": len(add_versions) + len(del_versions),
        "add_routes_per_s": round(add_rate), "del_routes_per_s": round(del_rate),
        "add_request_ms_median": round(statistics.median(add_times) * 1000, 1),
        "add_request_ms_max": round(max(add_times) * 1000, 1),
        "del_request_ms_median": round(statistics.median(del_times) * 1000, 1),
        "del_request_ms_max": round(max(del_times) * 1000, 1),
        "versions": t_after["version"] - t_before["version"],
        "pod_path_drops": {k: v for k, v in drops.items() if k not in CHATTER_DROPS},
    }
    record("route_churn", res)

    for fam, (sent, got) in zip(("ipv4", "ipv6"), results):
        # the stream really ran through the churn, at about its rate
        assert sent["sent"] >= 0.8 * rate * churn_s, (fam, sent, churn_s)
        assert sent["send_errors"] == 0, (fam, sent)
        assert got["missing"] == 0 and got["unique"] == sent["sent"], (fam, sent, got)
        assert got["dups"] == 0 and got["beyond"] == 0, (fam, got)
    assert res["pod_path_drops"] == {}, drops
    assert port_errors(s_after) == port_errors(s_before), (s_before["ports"], s_after["ports"])
    # the churn really went through the tables, one version per request
    versions = add_versions + del_versions
    assert len(set(versions)) == len(versions), "two requests reported the same version"
    assert t_after["version"] - t_before["version"] >= 200 * ROUNDS, (t_before, t_after)
    assert t_after["route_changes"] - t_before["route_changes"] >= 20000 * ROUNDS, t_after
    assert t_after["route_errors"] == t_before["route_errors"], t_after
    # and left nothing behind
    assert t_after["ipv4_routes"] == t_before["ipv4_routes"], (t_before, t_after)
    assert t_after["ipv6_routes"] == t_before["ipv6_routes"], (t_before, t_after)
    assert d.ctl("route", "list", "--source", "static", "--limit", 0)["total"] == 2
    ping(a, b.v4)
    ping(a, b.v6)


# ---------------------------------------------------------------------------------------------
# 2. 100k IPv4 + 100k IPv6 routes


def scale_routes(n=100000):
    """n IPv4 /26 blocks spread over 10.128.0.0/9 (as Calico pools: 131072 possible blocks;
    an odd multiplier makes a permutation) and n IPv6 /122 blocks in fd00:cafe::/48."""
    base4 = int(ipaddress.IPv4Address("10.128.0.0"))
    base6 = int(ipaddress.IPv6Address("fd00:cafe::"))
    v4 = [f"{ipaddress.IPv4Address(base4 + ((i * 40503) % 131072) * 64)}/26" for i in range(n)]
    v6 = [f"{ipaddress.IPv6Address(base6 + i * 64)}/122" for i in range(n)]
    return v4, v6


def test_route_tables_scale(daemon_factory, netns_factory, tmpdir_short):
    name = "scale"
    ifname, extra = uplink_extra("sc", more={
        # 100k consecutive /122s fill 25k /120s; DPDK 22.11's trie reserves 13 tbl8s
        # for each: 325k per copy.
        "tables": {"ipv4_routes": 131072, "ipv6_routes": 131072, "ipv4_tbl8s": 65536,
                   "ipv6_tbl8s": 330000},
        # lpm4: 64 MiB tbl24 + 64 MiB tbl8s; fib6: two copies of 64 MiB tbl24 + 322 MiB
        # tbl8s + rib nodes; mbufs, next hops
        "eal": {"file_prefix": f"fwdt{RUN_ID}{name}", "in_memory": True, "memory_mb": 1400},
    })
    huge0 = hugepages_free()
    d = daemon_factory(name, workers=(1,), extra=extra)
    huge1 = hugepages_free()
    rt = make_router(netns_factory, ifname, "scrt")
    (a,) = add_pods(d, netns_factory, ("sca",))
    ping(a, ROUTER4)
    ping(a, ROUTER6)

    v4, v6 = scale_routes()
    # one address inside an added block of each family lives on the router
    probe4 = str(ipaddress.IPv4Network(v4[77777])[1])
    probe6 = str(ipaddress.IPv6Network(v6[88888])[1])
    rt.run(f"ip addr add {probe4}/32 dev lo")
    rt.run(f"ip addr add {probe6}/128 dev lo")
    r = ping(a, probe4, check=False)
    assert r.returncode != 0 and "Unreachable" in r.stdout, r.stdout  # no route yet
    r = ping(a, probe6, check=False)
    assert r.returncode != 0 and "unreachable" in r.stdout.lower(), r.stdout

    t0 = tables(d)
    assert t0["ipv4_capacity"] >= 131072 and t0["ipv6_capacity"] >= 131072, t0
    mem0 = mem_info(d)
    step = 10000
    add4 = [[{"prefix": p, "via": ROUTER4} for p in v4[i:i + step]] for i in range(0, len(v4), step)]
    add6 = [[{"prefix": p, "via": ROUTER6} for p in v6[i:i + step]] for i in range(0, len(v6), step)]
    add4_t, _ = apply_batches(d, tmpdir_short, "add", add4, "scale4")
    add6_t, _ = apply_batches(d, tmpdir_short, "add", add6, "scale6")
    t_full = tables(d)
    mem_full = mem_info(d)
    print(f"\ntables with 100k+100k: {json.dumps(t_full)}")
    assert t_full["ipv4_routes"] >= 100000 and t_full["ipv6_routes"] >= 100000, t_full
    assert t_full["ipv4_routes"] == t0["ipv4_routes"] + 100000, (t0, t_full)
    assert t_full["ipv6_routes"] == t0["ipv6_routes"] + 100000, (t0, t_full)
    assert t_full["route_errors"] == t0["route_errors"], t_full
    for p, via in ((v4[0], ROUTER4), (v4[77777], ROUTER4), (v4[-1], ROUTER4),
                   (v6[0], ROUTER6), (v6[88888], ROUTER6), (v6[-1], ROUTER6)):
        lst = d.ctl("route", "list", "--prefix", p)
        assert lst["total"] == 1 and len(lst["routes"]) == 1, (p, lst)
        r = lst["routes"][0]
        assert (r["prefix"], r["source"], r["kind"], r["via"], r["active"]) == \
            (p, "static", "via", [via], True), r
    assert d.ctl("route", "list", "--family", "ipv4", "--limit", 3)["total"] == t_full["ipv4_routes"]
    # traffic works with full tables: the router, and an address inside an added block
    ping(a, ROUTER4, count=3)
    ping(a, ROUTER6, count=3)
    ping(a, probe4, count=3)
    ping(a, probe6, count=3)

    del4 = [[{"prefix": r["prefix"]} for r in batch] for batch in add4]
    del6 = [[{"prefix": r["prefix"]} for r in batch] for batch in add6]
    del4_t, _ = apply_batches(d, tmpdir_short, "del", del4, "scale4")
    del6_t, _ = apply_batches(d, tmpdir_short, "del", del6, "scale6")
    t_end = tables(d)
    mem_end = mem_info(d)
    res = {
        "add_ipv4_routes_per_s": round(100000 / sum(add4_t)),
        "add_ipv6_routes_per_s": round(100000 / sum(add6_t)),
        "del_ipv4_routes_per_s": round(100000 / sum(del4_t)),
        "del_ipv6_routes_per_s": round(100000 / sum(del6_t)),
        "add_request_s_max": round(max(add4_t + add6_t), 2),
        "del_request_s_max": round(max(del4_t + del6_t), 2),
        "rss_start": mem0.get("VmRSS"), "rss_full": mem_full.get("VmRSS"),
        "rss_end": mem_end.get("VmRSS"), "rss_peak": mem_end.get("VmHWM"),
        "hugetlb_pages_of_process": mem_full.get("HugetlbPages"),
        "hugepages_taken_at_start_2MiB": (huge0 - huge1) if huge0 is not None else None,
        "eal_memory_mb": 1400,
    }
    for k in ("heap_allocated_bytes", "heap_free_bytes", "heap_total_bytes"):
        if k in t_full:
            res[k + "_full"] = t_full[k]
            res[k + "_end"] = t_end.get(k)
    record("route_tables_scale", res)
    assert t_end["ipv4_routes"] == t0["ipv4_routes"], (t0, t_end)
    assert t_end["ipv6_routes"] == t0["ipv6_routes"], (t0, t_end)
    assert d.ctl("route", "list", "--source", "static", "--limit", 0)["total"] == 2
    assert t_end["route_errors"] == t0["route_errors"], t_end
    # the blocks are gone from the dataplane too; the router is still reachable
    r = ping(a, probe4, check=False)
    assert r.returncode != 0 and "Unreachable" in r.stdout, r.stdout
    ping(a, ROUTER4)
    ping(a, ROUTER6)


# ---------------------------------------------------------------------------------------------
# 3. invalid requests


def refused(d, *args, rc=1, names=()):
    """Runs fwdctl ARGS, expects exit code rc and every string of names in stderr."""
    r, _ = fwdctl(d, *args, timeout=30)
    msg = f"fwdctl {' '.join(map(str, args))} -> {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert r.returncode == rc, msg
    for n in names:
        assert n.lower() in r.stderr.lower(), f"{n!r} not named; {msg}"
    return r.stderr.strip()


def snapshot(d):
    t = tables(d)
    routes = d.ctl("route", "list")
    return (t["version"], t["ipv4_routes"], t["ipv6_routes"],
            sorted((r["prefix"], r["source"], r["kind"]) for r in routes["routes"]))


def test_route_api_errors(daemon_factory, netns_factory, tmpdir_short):
    ifname, extra = uplink_extra("er")
    d = daemon_factory("rerr", workers=(1,), extra=extra)
    make_router(netns_factory, ifname, "errt")
    a, b = add_pods(d, netns_factory, ("era", "erb"))
    ping(a, ROUTER4)
    # a route that exists, so replacing or deleting it by mistake would show
    d.ctl("route", "add", "10.60.0.0/24", "--via", ROUTER4)
    d.ctl("route", "add", "fd00:60::/64", "--blackhole")
    before = snapshot(d)
    messages = {}
    unnamed = []  # refused batches whose message does not say which route is bad

    messages["host bits"] = refused(d, "route", "add", "10.0.0.1/24", "--blackhole",
                                    names=("10.0.0.1/24", "prefix"))
    messages["bad octet"] = refused(d, "route", "add", "300.1.1.0/24", "--blackhole",
                                    names=("300.1.1.0/24", "prefix"))
    refused(d, "route", "add", "fd00:60::1/64", "--blackhole", names=("fd00:60::1/64",))
    messages["v6 via for v4"] = refused(d, "route", "add", "10.61.0.0/24", "--via", ROUTER6,
                                        names=(ROUTER6, "IPv4"))
    refused(d, "route", "add", "fd00:61::/64", "--via", ROUTER4, names=(ROUTER4, "IPv6"))
    messages["mac with 2 vias"] = refused(
        d, "route", "add", "10.62.0.0/24", "--via", ROUTER4, "--via", "10.10.10.2",
        "--mac", ROUTER_MAC, names=("mac",))
    # the CLI refuses an unknown source itself: a usage error (exit 2)
    messages["unknown source (CLI)"] = refused(d, "route", "add", "10.63.0.0/24", "--blackhole",
                                               "--source", "bogus", rc=2, names=("bogus",))
    # the daemon refuses it in a file, and refuses the read-only sources
    f = write_json(tmpdir_short, "src.json", [{"prefix": "10.63.0.0/24", "type": "blackhole",
                                               "source": "bogus"}])
    messages["unknown source (file)"] = refused(d, "route", "add", "--file", f,
                                                names=("source", "bogus"))
    f = write_json(tmpdir_short, "bgp.json", [{"prefix": "10.63.0.0/24", "type": "blackhole",
                                               "source": "bgp"}])
    refused(d, "route", "add", "--file", f, names=("source", "bgp"))
    f = write_json(tmpdir_short, "type.json", [{"prefix": "10.63.0.0/24", "type": "drop"}])
    messages["unknown type"] = refused(d, "route", "add", "--file", f, names=("type", "drop"))
    f = write_json(tmpdir_short, "field.json", [{"prefix": "10.63.0.0/24", "nexthop": ROUTER4}])
    messages["unknown field"] = refused(d, "route", "add", "--file", f, names=("nexthop",))

    # one bad route in a batch: nothing of the batch applied
    batch = []
    for i in range(100):
        r = {"prefix": f"10.70.{i}.0/24"}
        if i % 2:
            r["via"] = ROUTER4
        else:
            r["type"] = "blackhole"
        batch.append(r)
    batch.append({"prefix": "fd00:70::/64", "via": ROUTER6})
    batch.append({"prefix": "10.60.0.0/24", "type": "blackhole"})  # would replace the existing one
    for bad in ({"prefix": "10.71.0.1/24", "type": "blackhole"},
                {"prefix": "10.71.0.0/24", "via": ROUTER6},
                {"prefix": "10.71.0.0/24", "via": [ROUTER4, "10.10.10.2"], "mac": ROUTER_MAC}):
        f = write_json(tmpdir_short, "batch.json", batch[:73] + [bad] + batch[73:])
        m = refused(d, "route", "add", "--file", f)
        messages[f"bad batch {bad}"] = m
        if bad["prefix"] not in m:
            unnamed.append((bad, m))
        assert snapshot(d) == before, f"a refused batch changed the tables ({bad})"
        assert d.ctl("route", "list", "--prefix", "10.70.1.0/24")["total"] == 0

    # deleting what does not exist
    messages["del missing"] = refused(d, "route", "del", "10.77.0.0/24",
                                      names=("not_found", "10.77.0.0/24"))
    refused(d, "route", "del", "10.60.0.0/24", "--source", "ipam", names=("not_found",))
    f = write_json(tmpdir_short, "dels.json", [{"prefix": "10.60.0.0/24"},
                                                {"prefix": "10.77.0.0/24"}])
    messages["del batch with a missing route"] = refused(d, "route", "del", "--file", f,
                                                         names=("not_found", "10.77.0.0/24"))
    assert snapshot(d) == before, "refused requests changed the routes"
    assert d.ctl("route", "list", "--prefix", "10.60.0.0/24")["total"] == 1

    # the daemon is unaffected: it answers, routes still change, pods still ping
    assert d.proc.poll() is None
    d.ctl("version")
    for x, y in ((a, b), (b, a)):
        ping(x, y.v4)
        ping(x, y.v6)
    ping(a, ROUTER4)
    ping(a, ROUTER6)
    d.ctl("route", "del", "10.60.0.0/24")
    d.ctl("route", "del", "fd00:60::/64")
    assert tables(d)["version"] > before[0]
    d.stop()  # the factory checks its exit code; one worker core at a time

    # a node without an uplink refuses routes via a next hop, nothing else
    d2 = daemon_factory("rnoup", workers=(1,))
    c, e = add_pods(d2, netns_factory, ("erc", "ere"))
    before2 = snapshot(d2)
    messages["via without uplink"] = refused(d2, "route", "add", "10.80.0.0/24", "--via",
                                             ROUTER4, names=("uplink",))
    refused(d2, "route", "add", "fd00:80::/64", "--via", ROUTER6, names=("uplink",))
    f = write_json(tmpdir_short, "noup.json", [{"prefix": "10.81.0.0/24", "type": "blackhole"},
                                               {"prefix": "10.80.0.0/24", "via": ROUTER4}])
    refused(d2, "route", "add", "--file", f, names=("uplink", "10.80.0.0/24"))
    assert snapshot(d2) == before2
    d2.ctl("route", "add", "10.81.0.0/24", "--blackhole")
    d2.ctl("route", "add", "10.82.0.0/24", "--unreachable")
    r = ping(c, "10.82.0.1", check=False)
    assert "Unreachable" in r.stdout, r.stdout
    ping(c, e.v4)
    ping(c, e.v6)
    print("\nmessages:\n" + "\n".join(f"  {k}: {v}" for k, v in messages.items()))
    # in a batch of thousands, the message must say which route is bad
    assert not unnamed, f"batch errors not naming the bad route's prefix: {unnamed}"
