"""Metrics and health (issue 18): /metrics in Prometheus' text format, /liveness and
/readiness as Felix's, `fwdctl health`, and Debian's real Prometheus server scraping the
daemon. One node with an uplink (a net_tap left in the test's namespace, so the test takes
its link down and up), an etcd as the IPAM store (stopped and started again), two pods."""
import json
import os
import pathlib
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from fwdlab import FWDCTL, RUN_ID, Etcd, free_port, sh, stop_process, wait_until

UPLINK_MAC = "02:00:00:00:0a:0a"
PROMETHEUS = "/usr/bin/prometheus"

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse_page(text):
    """The text exposition format: {name: [(labels dict, value)]}, HELP and TYPE by name.
    Fails on any line that is none of the three, and on a sample whose family has no
    HELP or TYPE line before it."""
    samples, helps, types = {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
        elif line:
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.group(1), dict(LABEL.findall(m.group(3) or "")), m.group(4)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types and family in helps, f"{name}: no TYPE / HELP before it"
            samples.setdefault(name, []).append((labels, float(value)))
    return samples, helps, types


def total(samples, name, **labels):
    return sum(v for lab, v in samples.get(name, [])
               if all(lab.get(k) == want for k, want in labels.items()))


def http_get(url, timeout=5):
    """(status, body) of a GET; 4xx and 5xx are answers too; (None, why) without one."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError as e:  # nobody listening (yet)
        return None, str(e.reason)


@pytest.fixture
def node(daemon_factory, netns_factory, tmp_path):
    etcd = Etcd(tmp_path, name="etcd").start()
    ifname = f"fwdm{RUN_ID}"[:15]
    mport, hport = free_port(), free_port()
    extra = {
        "uplink": {"devargs": f"net_tap_m{RUN_ID},iface={ifname}", "rx_queues": 2,
                   "mac": UPLINK_MAC},
        "cores": {"main": 0, "control": 0,
                  "workers": [{"core": 0, "rx": [{"port": "uplink", "queue": 0}]},
                              {"core": 1, "rx": [{"port": "uplink", "queue": 1}]}]},
        "ipam": {"store": etcd.spec(f"/m{RUN_ID}"), "sync_ms": 100},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": mport},
        "health": {"enabled": True, "host": "127.0.0.1", "port": hport},
    }
    d = daemon_factory("m", workers=(0, 1), extra=extra)
    pods = []
    for i in range(2):
        ns = netns_factory(f"m{i}")
        ns.v4, ns.v6 = f"192.168.0.{i + 2}", f"fd00:10:244::{i + 2:x}"
        d.add_pod(ns, ipv4=ns.v4, ipv6=ns.v6)
        pods.append(ns)
    d.metrics_url = f"http://127.0.0.1:{mport}/metrics"
    d.health_url = f"http://127.0.0.1:{hport}"
    d.uplink_if = ifname
    d.metrics_port = mport
    d.health_port = hport
    yield d, pods, etcd
    etcd.stop()


def scrape(d):
    status, body = http_get(d.metrics_url)
    assert status == 200, body
    return body


def test_metrics_page_health_and_readiness(node):
    d, pods, etcd = node
    t0 = time.monotonic()
    page = scrape(d)
    scrape_s = time.monotonic() - t0
    samples, helps, types = parse_page(page)
    print(f"metrics page: {len(page)} bytes, {sum(map(len, samples.values()))} samples, "
          f"{len(types)} families, scraped in {scrape_s * 1000:.1f} ms")
    assert total(samples, "dpdk_fwd_scrape_ok") == 1
    info = samples["dpdk_fwd_build_info"][0]
    assert info[1] == 1 and info[0]["version"] and info[0]["dpdk"].startswith("DPDK")
    assert types["dpdk_fwd_worker_tx_packets_total"] == "counter"
    assert types["dpdk_fwd_drops_total"] == "counter"
    assert types["dpdk_fwd_cni_call_duration_seconds"] == "histogram"
    # one series per worker, per port (the uplink and the kernel pods' shared tap), per drop
    # reason
    assert {lab["worker"] for lab, _ in samples["dpdk_fwd_worker_rx_packets_total"]} == {"0", "1"}
    kinds = sorted(lab["kind"] for lab, _ in samples["dpdk_fwd_port_rx_packets_total"])
    assert kinds == ["pod", "uplink"], kinds
    reasons = {lab["reason"] for lab, _ in samples["dpdk_fwd_drops_total"]}
    assert {"no_route", "ip4_ttl_exceeded", "ip6_hop_limit_exceeded"} <= reasons, reasons
    assert total(samples, "dpdk_fwd_endpoints") == 2
    assert total(samples, "dpdk_fwd_routes", family="ipv4") >= 2
    assert total(samples, "dpdk_fwd_routes", family="ipv6") >= 2
    assert "dpdk_fwd_rib_routes" in samples and "dpdk_fwd_neighbors" in samples
    # the packet pool: its size, and what is taken from it (the RX rings' buffers at least),
    # never more than its size; the same pools in both families
    cap = {lab["pool"]: v for lab, v in samples["dpdk_fwd_mbufs_capacity"]}
    used = {lab["pool"]: v for lab, v in samples["dpdk_fwd_mbufs_in_use"]}
    assert types["dpdk_fwd_mbufs_in_use"] == types["dpdk_fwd_mbufs_capacity"] == "gauge"
    assert set(used) == set(cap) and cap.get("fwd_pkts", 0) > 0, (used, cap)
    assert 0 < used["fwd_pkts"] and all(used[p] <= cap[p] for p in cap), (used, cap)
    for name in samples:
        assert name.startswith("dpdk_fwd_") or name.startswith("exposer_"), name

    # the forwarded packet counter moves under ping (both families)
    before = total(samples, "dpdk_fwd_worker_tx_packets_total")
    drops_before = total(samples, "dpdk_fwd_drops_total")
    a, b = pods
    a.run(f"ping -4 -c 20 -i 0.01 -W 2 {b.v4}", timeout=30)
    a.run(f"ping -6 -c 20 -i 0.01 -W 2 {b.v6}", timeout=30)
    after, _, _ = parse_page(scrape(d))
    assert total(after, "dpdk_fwd_worker_tx_packets_total") >= before + 80
    # forwarding returns its buffers: the pool's use after the pings is about what it was (the
    # RX rings refill what they took; a few may be in flight)
    used_after = total(after, "dpdk_fwd_mbufs_in_use", pool="fwd_pkts")
    assert abs(used_after - used["fwd_pkts"]) <= 64, (used_after, used)
    assert total(after, "dpdk_fwd_drops_total") >= drops_before
    # a drop to nowhere is counted under its reason
    a.run("ping -4 -c 1 -W 1 192.168.99.1", check=False, timeout=10)
    a.run("ping -6 -c 1 -W 1 fd00:99::1", check=False, timeout=10)
    wait_until(lambda: total(parse_page(scrape(d))[0], "dpdk_fwd_drops_total",
                             reason="no_route") >= 2, 5, what="two no_route drops")

    # the stage counters, while on: per worker and stage, time in seconds
    assert total(after, "dpdk_fwd_stage_stats_enabled") == 0
    assert "dpdk_fwd_stage_packets_total" not in after
    d.ctl("stats", "stages", "on")
    a.run(f"ping -4 -c 5 -i 0.01 -W 2 {b.v4}", timeout=30)
    staged, _, types = parse_page(scrape(d))
    assert total(staged, "dpdk_fwd_stage_stats_enabled") == 1
    assert types["dpdk_fwd_stage_seconds_total"] == "counter"
    assert total(staged, "dpdk_fwd_stage_packets_total") >= 10
    assert 0 < total(staged, "dpdk_fwd_stage_seconds_total") < 10
    d.ctl("stats", "stages", "off")

    # health: live and ready
    wait_until(lambda: http_get(d.health_url + "/readiness")[0] == 200, 10,
               what="readiness 200")
    status, body = http_get(d.health_url + "/liveness")
    assert status == 200 and json.loads(body) == {"live": True, "reasons": []}, body
    assert json.loads(http_get(d.health_url + "/readiness")[1])["ready"] is True
    r = subprocess.run([str(FWDCTL), "-s", d.sock, "health"], capture_output=True, text=True)
    assert r.returncode == 0 and "live: yes" in r.stdout and "ready: yes" in r.stdout, r.stdout
    assert total(parse_page(scrape(d))[0], "dpdk_fwd_ipam_sync_ok") == 1

    # the uplink goes down: not ready, naming it; back up: ready again
    sh(f"ip link set {d.uplink_if} down")
    wait_until(lambda: http_get(d.health_url + "/readiness")[0] == 503, 10,
               what="readiness 503 with the uplink down")
    body = json.loads(http_get(d.health_url + "/readiness")[1])
    assert body["ready"] is False and any("uplink" in x for x in body["reasons"]), body
    assert http_get(d.health_url + "/liveness")[0] == 200  # down is not dead
    r = subprocess.run([str(FWDCTL), "-s", d.sock, "health"], capture_output=True, text=True)
    assert r.returncode == 1 and "ready: no" in r.stdout and "uplink" in r.stdout, r.stdout
    sh(f"ip link set {d.uplink_if} up")
    wait_until(lambda: http_get(d.health_url + "/readiness")[0] == 200, 10,
               what="readiness 200 with the uplink back")

    # the IPAM store goes away: not ready, naming it; back: ready again
    etcd.stop()
    wait_until(lambda: http_get(d.health_url + "/readiness")[0] == 503, 15,
               what="readiness 503 without the store")
    body = json.loads(http_get(d.health_url + "/readiness")[1])
    assert any("IPAM store" in x for x in body["reasons"]), body
    assert total(parse_page(scrape(d))[0], "dpdk_fwd_ipam_sync_ok") == 0
    etcd.start()
    wait_until(lambda: http_get(d.health_url + "/readiness")[0] == 200, 30,
               what="readiness 200 with the store back")
    d.ctl("version")  # the daemon kept serving throughout


def test_listens_only_where_configured(node):
    d, _, _ = node
    for port in (d.metrics_port, d.health_port):
        ss = sh(f"ss -Htln 'sport = :{port}'").stdout
        local = [line.split()[3] for line in ss.splitlines()]
        assert local == [f"127.0.0.1:{port}"], ss


def test_port_in_use_stops_the_start_with_a_clear_error(tmpdir_short):
    """A metrics port someone else holds: the daemon does not start, and says which."""
    import socket
    from fwdlab import Daemon
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        d = Daemon(tmpdir_short, "busy",
                   extra={"metrics": {"enabled": True, "host": "127.0.0.1", "port": port}})
        with pytest.raises(AssertionError) as e:
            d.start()
        d.proc.wait(timeout=20)
        assert d.proc.returncode == 1, d.log.read_text()
        assert f"metrics: cannot listen on 127.0.0.1:{port}" in str(e.value), str(e.value)
        d.stop()


def test_bad_listen_address_is_refused(tmp_path):
    from fwdlab import check_config
    r = check_config(tmp_path, "metrics", {"enabled": True, "host": "node1.example"})
    assert r.returncode == 2 and "metrics.host" in r.stderr and "not an IPv4 or IPv6" in r.stderr


@pytest.mark.skipif(not pathlib.Path(PROMETHEUS).exists(), reason="apt-get install prometheus")
def test_prometheus_server_scrapes_forwarded_packets(node):
    """Debian's Prometheus scrapes the daemon every second; a PromQL query through its HTTP
    API sees the forwarded packet counter increase under traffic."""
    d, pods, _ = node
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="fwdprom") as tmp:
        cfg = pathlib.Path(tmp) / "prometheus.yml"
        cfg.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "dpdk-fwd", "scrape_interval": "1s",
                                "static_configs": [{"targets": [
                                    f"127.0.0.1:{d.metrics_port}"]}]}]}))
        log = open(pathlib.Path(tmp) / "prometheus.log", "w")
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            api = f"http://127.0.0.1:{port}/api/v1/query?query="

            def query(q):
                status, body = http_get(api + urllib.parse.quote(q))
                if status != 200:
                    return None
                res = json.loads(body)["data"]["result"]
                return float(res[0]["value"][1]) if res else None

            wait_until(lambda: query('up{job="dpdk-fwd"}') == 1, 30, interval=0.5,
                       what="Prometheus scraping the daemon")
            a, b = pods
            stop = time.monotonic() + 6
            while time.monotonic() < stop:  # traffic over several scrapes
                a.run(f"ping -4 -c 10 -i 0.01 -W 1 {b.v4}", timeout=10)
                a.run(f"ping -6 -c 10 -i 0.01 -W 1 {b.v6}", timeout=10)
            q = "sum(increase(dpdk_fwd_worker_tx_packets_total[10s]))"
            wait_until(lambda: (query(q) or 0) >= 40, 15, interval=0.5,
                       what=f"{q} >= 40 in Prometheus")
            print(f"prometheus: {q} = {query(q)}")
        finally:
            stop_process(proc, 10)
            log.close()


def test_scrape_size_and_time_with_many_pods(daemon_factory, netns_factory):
    """A hundred kernel pods (FWD_SCRAPE_PODS=1000 for the closing note's figure): the page does
    not grow per kernel pod (they share the pod tap; the snapshot holds counts, not lists), and a
    scrape stays quick. Prints the figures."""
    n = int(os.environ.get("FWD_SCRAPE_PODS", "100"))
    from test_many_pods import make_pods
    from fwdlab import Api, record_results
    mport = free_port()
    d = daemon_factory("ms", workers=(0, 1),
                       extra={"metrics": {"enabled": True, "host": "127.0.0.1", "port": mport}})
    d.metrics_url = f"http://127.0.0.1:{mport}/metrics"

    def measure():
        scrape(d)  # warm (the exposer's first request)
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            page = scrape(d)
            times.append(time.monotonic() - t0)
        return len(page), sorted(times)[2], page

    empty_bytes, empty_s, _ = measure()
    api = Api(d.sock)
    try:
        pods, _ = make_pods(api, netns_factory, n, "ms")
        full_bytes, full_s, page = measure()
    finally:
        api.close()
    samples, _, _ = parse_page(page)
    assert total(samples, "dpdk_fwd_endpoints") == n
    print(f"scrape: 0 pods {empty_bytes} bytes {empty_s * 1000:.1f} ms; "
          f"{n} pods {full_bytes} bytes {full_s * 1000:.1f} ms (median of 5)")
    record_results("metrics_scrape", {"pods0_bytes": empty_bytes, "pods0_ms": empty_s * 1000,
                                      f"pods{n}_bytes": full_bytes, f"pods{n}_ms": full_s * 1000})
    assert full_bytes - empty_bytes < n * 50, (empty_bytes, full_bytes)
    assert full_s < 0.5, full_s


def test_log_json_dpdk_included_and_level_at_run_time(daemon_factory):
    """log.format json: the daemon's lines and DPDK's own (EAL's) are JSON objects on stderr;
    `fwdctl log level` shows and sets the level while it runs, and refuses a bad one."""
    mport = free_port()
    d = daemon_factory("lg", extra={"log": {"level": "info", "format": "json"},
                                    "metrics": {"enabled": True, "host": "127.0.0.1",
                                                "port": mport}})
    lines = [json.loads(x) for x in d.log.read_text().splitlines() if x.startswith("{")]
    msgs = [x["msg"] for x in lines]
    assert any(m.startswith("EAL: ") for m in msgs), msgs  # DPDK's log, captured
    assert f"metrics: /metrics on 127.0.0.1:{mport}" in msgs, msgs
    assert all(set(x) == {"time", "level", "msg"} for x in lines), lines
    assert d.ctl("log", "level") == {"level": "info", "format": "json"}
    assert d.ctl("log", "level", "debug")["level"] == "debug"
    assert d.ctl("log", "level")["level"] == "debug"
    r = d.ctl("log", "level", "loud", check=False)
    assert r.returncode == 1 and "\"loud\" is not a log level" in r.stderr, r.stderr
    assert d.ctl("log", "level")["level"] == "debug"
