"""A DPDK pod on vhost-user: dpdk-testpmd with net_virtio_user plays the pod
and exchanges traffic with a kernel pod on a tap port, both directions."""
import re
import shutil
import signal
import subprocess
import time

from fwdlab import RUN_ID

VHOST_MAC = "02:00:00:00:00:99"
VHOST_V4 = "192.168.0.50"


def run_testpmd(sock, mode_args, tag):
    """testpmd as the pod: forwards on core 1, virtio-user to our socket, runs
    until SIGINT. --single-file-segments keeps its memory within the 8 regions
    vhost-user can map."""
    cmd = ["dpdk-testpmd", "-l", "0-1", "--in-memory", "--single-file-segments", "--no-pci",
           "-m", "256",
           f"--file-prefix=fwdt{RUN_ID}{tag}", "--log-level=*:warning",
           f"--vdev=net_virtio_user0,path={sock},mac={VHOST_MAC},queues=1",
           "--", "--no-mlockall", "--nb-cores=1", "--stats-period", "1", *mode_args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    p.eal_prefix = f"fwdt{RUN_ID}{tag}"
    return p


def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    # testpmd leaves EAL's runtime dir behind, --in-memory or not
    shutil.rmtree(f"/var/run/dpdk/{p.eal_prefix}", ignore_errors=True)
    return out


def rx_packets(ns):
    out = ns.run("cat /sys/class/net/eth0/statistics/rx_packets").stdout
    return int(out.strip())


def test_vhost_pod_exchanges_traffic_with_tap_pod(daemon_factory, netns_factory):
    d = daemon_factory("vh", workers=(0, 1))
    tap = netns_factory("vt")
    d.add_pod(tap, ipv4="192.168.0.2", ipv6="fd00:10:244::2")
    ep = d.ctl("endpoint", "add", "--id", "vpod", "--kind", "vhost-user", "--ipv4", VHOST_V4,
               "--mac", VHOST_MAC)
    sock = ep["vhost_socket"]
    assert ep["kind"] == "vhost-user" and sock

    # tap pod -> vhost pod: testpmd answers ARP-less ICMP echo (icmpecho mode)
    pmd = run_testpmd(sock, ["--forward-mode=icmpecho", "--auto-start"], "echo")
    try:
        ok = False
        for _ in range(30):  # the virtio peer needs a moment to negotiate
            r = tap.run(f"ping -4 -c 1 -W 1 {VHOST_V4}", check=False, timeout=10)
            if r.returncode == 0:
                ok = True
                break
            time.sleep(0.5)
        assert ok, f"no echo reply from the vhost pod:\n{r.stdout}"
        r = tap.run(f"ping -4 -c 5 -i 0.2 -W 1 {VHOST_V4}")
        assert " 0% packet loss" in r.stdout
        # the virtio peer's connection reached the control thread as a port event
        vport = [p for p in d.stats()["ports"] if p["port_id"] == ep["port_id"]][0]
        assert vport["link"]["up"] is True and vport["link"]["events"] >= 1, vport
    finally:
        out = stop(pmd)
    assert "icmpecho" in out

    # vhost pod -> tap pod: testpmd generates UDP to the tap pod's address
    before = rx_packets(tap)
    pmd = run_testpmd(sock, ["--forward-mode=txonly", f"--tx-ip={VHOST_V4},192.168.0.2",
                         "--eth-peer=0,ee:ee:ee:ee:ee:ee", "--txpkts=128", "--auto-start"], "tx")
    try:
        time.sleep(4)
    finally:
        stop(pmd)
    got = rx_packets(tap) - before
    assert got > 1000, f"tap pod received only {got} packets from the vhost pod"
    st = d.stats()
    vport = [p for p in st["ports"] if p["port_id"] == ep["port_id"]][0]
    assert vport["rx_packets"] >= got
    # the port kind counts the vhost pod's own port (endpoint.get)
    pst = d.ctl("endpoint", "get", "--id", "vpod")["port_stats"]
    assert pst["rx_packets"] >= got and pst["rx_packets"] == vport["rx_packets"], (pst, vport)
    # ... and its departure: the link is down again
    assert vport["link"]["up"] is False and vport["link"]["events"] >= 2, vport

    d.ctl("endpoint", "del", "--id", "vpod")
    time.sleep(0.2)
    assert not __import__("os").path.exists(sock), "vhost socket left behind"
