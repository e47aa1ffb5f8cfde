"""A thousand kernel pods on one node, each on a tun port of its own (issue 17's scale): no
ethdev per pod (soft ports, not bounded by DPDK's 32), every pod answered over IPv4 and IPv6
through the dataplane, the memory and file descriptors each pod costs the daemon, then all
detached: no fd, no port, no route left.

The daemon starts under the usual soft limit of 1024 open files (a pod takes a fd per queue,
two here): it raises its own to the hard limit.

The namespaces are made and deleted with one `ip -batch` each, and the pods talk through one
process that enters each namespace in turn (setns), not a process per pod: a thousand
`ip netns exec` would be most of the test's time."""
import resource
import subprocess
import sys
import time

from fwdlab import RUN_ID, Api, record_results, sh
from test_tun_ports import daemon_fds

N_PODS = 1000
ECHO_PORT = 7


def pod_addrs(i):
    # 10.244.0.0/16 and fd00:10:244::/64: pod i's /32 and /128
    return f"10.244.{i // 250}.{i % 250 + 2}", f"fd00:10:244::{i + 2:x}"


# Runs in the first pod: echoes every datagram back to its sender, IPv4 and IPv6.
ECHO_SERVER = f"""
import select, socket
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s4.bind(("0.0.0.0", {ECHO_PORT}))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); s6.bind(("::", {ECHO_PORT}))
print("ready", flush=True)
while True:
    for s in select.select([s4, s6], [], [])[0]:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
"""

# Enters each namespace named on stdin (setns) and sends one datagram from it to the echo
# server over IPv4 and IPv6; prints the namespaces whose echo did not come back in 3 s.
SENDER = f"""
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
v4, v6 = sys.argv[1], sys.argv[2]
missing = []
for name in sys.stdin.read().split():
    fd = os.open("/var/run/netns/" + name, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns " + name)
    os.close(fd)
    for fam, dst in ((socket.AF_INET, v4), (socket.AF_INET6, v6)):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(3)
        msg = (name + " " + dst).encode()
        try:
            s.sendto(msg, (dst, {ECHO_PORT}))
            ok = s.recvfrom(2048)[0] == msg
        except OSError:
            ok = False
        s.close()
        if not ok:
            missing.append(name + "/" + ("v4" if fam == socket.AF_INET else "v6"))
print(" ".join(missing))
"""


def vm_rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def ip_batch(lines):
    subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True,
                   capture_output=True, timeout=600)


def test_a_thousand_tun_pods(daemon_factory):
    names = [f"fwdt{RUN_ID}k{i}" for i in range(N_PODS)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= 4 * N_PODS, f"the hard limit of open files ({hard}) is too low for the test"
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        d = daemon_factory("k1", workers=(0, 1))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    api = Api(d.sock)
    echo = None
    made = False
    try:
        t0 = time.monotonic()
        ip_batch([f"netns add {n}" for n in names])
        made = True
        netns_s = time.monotonic() - t0
        ethdevs0 = sorted(p["name"] for p in api.call("stats")["ports"])
        rss0, fds0 = vm_rss_kib(d.proc.pid), daemon_fds(d)
        tun0 = daemon_fds(d, "/dev/net/tun")  # the node's own taps
        routes = ("ipv4_routes", "ipv6_routes", "routes_by_source")
        routes0 = {k: api.call("tables")[k] for k in routes}

        t0 = time.monotonic()
        for i, n in enumerate(names):
            v4, v6 = pod_addrs(i)
            ep = api.call("endpoint.add", id=n, netns=n, kind="tun", ipv4=v4, ipv6=v6)
            assert ep["tun_queues"] == 2, ep
        add_s = time.monotonic() - t0
        rss1, fds1 = vm_rss_kib(d.proc.pid), daemon_fds(d)
        assert daemon_fds(d, "/dev/net/tun") == tun0 + 2 * N_PODS
        eps = api.call("endpoint.list")["endpoints"]
        assert len(eps) == N_PODS and {e["kind"] for e in eps} == {"tun"}
        assert len({e["port_id"] for e in eps}) == N_PODS
        # no ethdev for any of them: the ports DPDK knows are the same as before
        stats = api.call("stats")
        assert sorted(p["name"] for p in stats["ports"] if p["port_id"] < 32) == ethdevs0, \
            (ethdevs0, stats["ports"][:5])
        assert sum(w["rx_queues"] for w in stats["workers"]) >= 2 * N_PODS
        t = api.call("tables")
        assert t["ipv4_routes"] >= routes0["ipv4_routes"] + N_PODS, t
        assert t["ipv6_routes"] >= routes0["ipv6_routes"] + N_PODS, t

        # every pod to the first one and back, IPv4 and IPv6, through the dataplane
        first4, first6 = pod_addrs(0)
        echo = subprocess.Popen(["ip", "netns", "exec", names[0], sys.executable, "-c",
                                 ECHO_SERVER], stdout=subprocess.PIPE, text=True)
        assert echo.stdout.readline().strip() == "ready"
        tx0 = sum(w["tx_packets"] for w in api.call("stats")["workers"])
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-c", SENDER, first4, first6],
                           input="\n".join(names[1:]), capture_output=True, text=True,
                           timeout=900)
        echo_s = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        missing = r.stdout.split()
        assert missing == [], f"{len(missing)} echoes missing: {missing[:20]}"
        tx1 = sum(w["tx_packets"] for w in api.call("stats")["workers"])
        assert tx1 - tx0 >= 4 * (N_PODS - 1), (tx0, tx1)  # request and echo, two families

        t0 = time.monotonic()
        for n in names:
            api.call("endpoint.del", id=n)
        del_s = time.monotonic() - t0
        assert api.call("endpoint.list")["endpoints"] == []
        assert daemon_fds(d, "/dev/net/tun") == tun0
        assert daemon_fds(d) == fds0
        stats = api.call("stats")
        assert sorted(p["name"] for p in stats["ports"]) == ethdevs0
        assert {k: api.call("tables")[k] for k in routes} == routes0
        # the pods' devices went with their last fd
        left = sh(f"ip -n {names[1]} -o link show").stdout
        assert "eth0" not in left, left

        per_pod_kib = (rss1 - rss0) / N_PODS
        record_results("thousand_tun_pods", {
            "pods": N_PODS,
            "netns_add_s": round(netns_s, 2),
            "endpoint_add_ms_each": round(1000 * add_s / N_PODS, 2),
            "echo_all_s": round(echo_s, 2),
            "endpoint_del_ms_each": round(1000 * del_s / N_PODS, 2),
            "rss_kib_per_pod": round(per_pod_kib, 1),
            "fds_per_pod": (fds1 - fds0) / N_PODS,
        })
        print(f"\n{N_PODS} tun pods: add {1000 * add_s / N_PODS:.1f} ms each, all echoed in "
              f"{echo_s:.1f} s, del {1000 * del_s / N_PODS:.1f} ms each; "
              f"{per_pod_kib:.1f} KiB of RSS and {(fds1 - fds0) / N_PODS:.1f} fds per pod")
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        api.close()
        if made:
            d.stop()
            ip_batch([f"netns del {n}" for n in names])
