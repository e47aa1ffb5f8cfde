#!/usr/bin/python3
"""What Linux puts on the wire for Calico's overlays, for test_overlay.cpp.

Run as root. Builds three network namespaces of its own (names carry this
process's id; all removed at exit, whatever happens):

  pod   eth0 (10.65.2.5, fd00:65:2::5) -- cali0 (ee:ee:ee:ee:ee:ee)  node
  node  the Linux Calico node 192.168.50.20 / fd00:50::20 on ul0, with
        vxlan.calico and vxlan-v6.calico made as Felix makes them, routes to
        the other node's blocks (10.65.0.0/26, fd00:65::/122) through them,
        a permanent neighbour for the other node's tunnel address and the
        bridge fdb entry naming its node address; tunl0 (IP-in-IP) when the
        kernel has it
  wire  ul1, ul0's peer: every frame the node sends is captured here
        (AF_PACKET)

The other node is the dataplane under test: 192.168.50.10 / fd00:50::10,
its pods' block 10.65.0.0/26, fd00:65::/122. The pod sends ICMP echo and
UDP, IPv4 and IPv6, to 10.65.0.7 / fd00:65::7; the node forwards them
(TTL / hop limit - 1) and encapsulates them.

Prints one JSON object on stdout: the setup ("config"), and for each packet
the inner IP packet the pod sent ("inner", hex, before the node's TTL
decrement) and the outer frame captured on the wire ("outer", hex).
Exit status 0 only when every VXLAN packet was captured; IP-in-IP is
reported as unavailable (with the kernel's error) when the kernel has no
ipip support, as some test VMs do.
"""
import atexit
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6, ICMPv6EchoRequest
from scapy.layers.l2 import Ether

PREFIX = "fwdvx%d" % os.getpid()
NS = {k: PREFIX + k for k in ("pod", "node", "wire")}

CONFIG = {
    "vni": 4096,
    "port": 4789,
    # the Linux node
    "linux_node4": "192.168.50.20",
    "linux_node6": "fd00:50::20",
    "linux_uplink_mac": "02:00:00:00:00:01",
    "linux_vtep_mac4": "66:01:02:03:04:05",
    "linux_vtep_mac6": "66:01:02:03:04:06",
    "linux_tunnel4": "10.65.2.0",
    "linux_tunnel6": "fd00:65:2::",
    "linux_pod4": "10.65.2.5",
    "linux_pod6": "fd00:65:2::5",
    "linux_pod_mac": "02:00:0a:41:02:05",
    "gateway_mac": "ee:ee:ee:ee:ee:ee",
    # the dataplane's node, as Linux knows it
    "node4": "192.168.50.10",
    "node6": "fd00:50::10",
    "uplink_mac": "02:00:00:00:00:fe",
    "vtep_mac4": "66:0a:0b:0c:0d:0e",
    "vtep_mac6": "66:0a:0b:0c:0d:0f",
    "tunnel4": "10.65.0.0",
    "tunnel6": "fd00:65::",
    "block4": "10.65.0.0/26",
    "block6": "fd00:65::/122",
    "pod4": "10.65.0.7",
    "pod6": "fd00:65::7",
    # IP-in-IP: a block of its own, routed via the node address (tunl0)
    "ipip_block4": "10.65.0.64/26",
    "ipip_pod4": "10.65.0.70",
    "linux_ipip_tunnel4": "10.65.2.1",
    "uplink_mtu": 1500,
    "vxlan_mtu4": 1450,
    "vxlan_mtu6": 1430,
    "ipip_mtu": 1480,
}

CLONE_NEWNET = 0x40000000
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def log(msg):
    print("linux_vxlan: " + msg, file=sys.stderr)


def run(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def ip(ns, *args, check=True):
    return run("ip", "-n", NS[ns], *args, check=check)


def sysctl(ns, key, value):
    run("ip", "netns", "exec", NS[ns], "sysctl", "-q", "-w", "%s=%s" % (key, value))


def cleanup():
    for name in NS.values():
        if os.path.exists("/run/netns/" + name):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


_libc = ctypes.CDLL(None, use_errno=True)


class InNetns:
    """Runs a block in another network namespace (this thread), then returns."""

    def __init__(self, ns):
        self.ns = ns

    def __enter__(self):
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + NS[self.ns], os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns " + NS[self.ns])
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        _libc.setns(self.home, CLONE_NEWNET)
        os.close(self.home)


def tx_checksum_off(ifname):
    """ethtool -K ifname tx off: the checksums are in the frame when it
    reaches the peer, not left for an offload that veth never does."""
    val = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(val))
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)


def setup():
    c = CONFIG
    for name in NS.values():
        run("ip", "netns", "add", name)
    for ns in NS:
        ip(ns, "link", "set", "lo", "up")
    sysctl("wire", "net.ipv6.conf.all.disable_ipv6", 1)
    sysctl("wire", "net.ipv6.conf.default.disable_ipv6", 1)
    sysctl("pod", "net.ipv6.conf.all.disable_ipv6", 1)
    sysctl("pod", "net.ipv6.conf.default.disable_ipv6", 1)
    sysctl("node", "net.ipv4.ip_forward", 1)
    sysctl("node", "net.ipv6.conf.all.forwarding", 1)
    sysctl("node", "net.ipv4.conf.all.rp_filter", 0)
    sysctl("node", "net.ipv4.conf.default.rp_filter", 0)
    sysctl("node", "net.ipv6.conf.default.accept_dad", 0)

    # the underlay
    ip("node", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1", "netns", NS["wire"])
    ip("node", "link", "set", "ul0", "address", c["linux_uplink_mac"], "mtu", str(c["uplink_mtu"]))
    ip("node", "addr", "add", c["linux_node4"] + "/24", "dev", "ul0")
    ip("node", "addr", "add", c["linux_node6"] + "/64", "dev", "ul0", "nodad")
    ip("node", "link", "set", "ul0", "up")
    ip("wire", "link", "set", "ul1", "up")
    for a in (c["node4"], c["node6"]):
        ip("node", "neigh", "replace", a, "lladdr", c["uplink_mac"], "dev", "ul0", "nud", "permanent")
    with InNetns("node"):
        tx_checksum_off("ul0")

    # the pod and its Calico link
    ip("node", "link", "add", "cali0", "type", "veth", "peer", "name", "eth0", "netns", NS["pod"])
    ip("node", "link", "set", "cali0", "address", c["gateway_mac"], "up")
    ip("pod", "link", "set", "eth0", "address", c["linux_pod_mac"], "up")
    ip("node", "route", "add", c["linux_pod4"], "dev", "cali0", "scope", "link")
    ip("node", "-6", "route", "add", c["linux_pod6"], "dev", "cali0")

    # vxlan.calico, vxlan-v6.calico: Felix's vxlan manager (netlink Vxlan
    # with VxlanId, Port, VtepDevIndex, SrcAddr, the VTEP MAC and MTU;
    # learning off; TTL, TOS and checksum settings left at the kernel's
    # defaults), its tunnel address, and per remote node: a permanent
    # neighbour (tunnel address -> VTEP MAC), an fdb entry (VTEP MAC ->
    # node address) and the block's route via the tunnel address, onlink.
    for dev, mac, mtu, local, tun_self, tun_peer, peer_mac, peer, block in (
        ("vxlan.calico", c["linux_vtep_mac4"], c["vxlan_mtu4"], c["linux_node4"],
         c["linux_tunnel4"] + "/32", c["tunnel4"], c["vtep_mac4"], c["node4"], c["block4"]),
        ("vxlan-v6.calico", c["linux_vtep_mac6"], c["vxlan_mtu6"], c["linux_node6"],
         c["linux_tunnel6"] + "/128", c["tunnel6"], c["vtep_mac6"], c["node6"], c["block6"]),
    ):
        ip("node", "link", "add", dev, "address", mac, "mtu", str(mtu), "type", "vxlan", "id",
           str(c["vni"]), "dstport", str(c["port"]), "local", local, "dev", "ul0", "nolearning")
        ip("node", "link", "set", dev, "up")
        ip("node", "addr", "add", tun_self, "dev", dev, *(["nodad"] if ":" in local else []))
        ip("node", "neigh", "replace", tun_peer, "lladdr", peer_mac, "dev", dev, "nud", "permanent")
        run("ip", "netns", "exec", NS["node"], "bridge", "fdb", "append", peer_mac, "dev", dev,
            "dst", peer)
        ip("node", "route", "add", block, "via", tun_peer, "dev", dev, "onlink")
    with InNetns("node"):
        for dev in ("vxlan.calico", "vxlan-v6.calico"):
            tx_checksum_off(dev)

    # tunl0: Felix brings up the kernel's fallback ipip device (netlink Iptun
    # named tunl0: TTL 0 (inherit), TOS 0, no PMTU discovery), gives it its
    # tunnel address and routes each remote block via the node address onlink.
    ipip = {"available": False, "error": ""}
    if ip("node", "link", "show", "tunl0", check=False).returncode != 0:
        r = ip("node", "link", "add", "tunl0", "type", "ipip", "ttl", "0", "tos", "0",
               "nopmtudisc", check=False)
        if r.returncode != 0:
            ipip["error"] = "ip link add tunl0 type ipip: " + r.stderr.strip()
            return ipip
    ip("node", "link", "set", "tunl0", "mtu", str(c["ipip_mtu"]), "up")
    ip("node", "addr", "add", c["linux_ipip_tunnel4"] + "/32", "dev", "tunl0")
    ip("node", "route", "add", c["ipip_block4"], "via", c["node4"], "dev", "tunl0", "onlink")
    ipip["available"] = True
    return ipip


def inner_packets():
    """(name, IP packet bytes) the pod sends. Pairs of one flow show the
    flow-dependent fields (source port, flow label) staying put; the TOS /
    traffic class values show the ECN and DSCP handling."""
    c = CONFIG
    s4, d4, s6, d6 = c["linux_pod4"], c["pod4"], c["linux_pod6"], c["pod6"]
    pl = bytes(range(32))
    v4 = [
        ("icmp4_echo_df", IP(src=s4, dst=d4, id=0x1111, flags="DF") / ICMP(id=0x4242, seq=1) / pl),
        ("icmp4_echo_df_2", IP(src=s4, dst=d4, id=0x1112, flags="DF") / ICMP(id=0x4242, seq=2) / pl),
        ("udp4_ect1", IP(src=s4, dst=d4, id=0x2222, tos=0x01) / UDP(sport=40000, dport=5000) / pl),
        ("udp4_ce_same_flow", IP(src=s4, dst=d4, id=0x2223, tos=0x03) / UDP(sport=40000, dport=5000) / pl),
        ("udp4_ef_df", IP(src=s4, dst=d4, id=0x3333, tos=0xb8, flags="DF", ttl=30)
         / UDP(sport=40001, dport=5001) / pl),
        ("udp4_ect0_other_flow", IP(src=s4, dst=d4, id=0x4444, tos=0x02) / UDP(sport=40002, dport=5002) / pl),
    ]
    v6 = [
        ("icmp6_echo", IPv6(src=s6, dst=d6) / ICMPv6EchoRequest(id=0x4242, seq=1, data=pl)),
        ("icmp6_echo_2", IPv6(src=s6, dst=d6) / ICMPv6EchoRequest(id=0x4242, seq=2, data=pl)),
        ("udp6_ect1_fl", IPv6(src=s6, dst=d6, tc=0x01, fl=0x12345) / UDP(sport=40000, dport=5000) / pl),
        ("udp6_ce_same_flow", IPv6(src=s6, dst=d6, tc=0x03, fl=0x12345) / UDP(sport=40000, dport=5000) / pl),
        ("udp6_ef", IPv6(src=s6, dst=d6, tc=0xb8, hlim=30) / UDP(sport=40001, dport=5001) / pl),
        ("udp6_ect0_other_flow", IPv6(src=s6, dst=d6, tc=0x02) / UDP(sport=40002, dport=5002) / pl),
    ]
    ipip = [
        ("ipip_icmp4_echo_df", IP(src=s4, dst=c["ipip_pod4"], id=0x5555, flags="DF")
         / ICMP(id=0x4343, seq=1) / pl),
        ("ipip_udp4_ect1", IP(src=s4, dst=c["ipip_pod4"], id=0x6666, tos=0x01, ttl=30)
         / UDP(sport=40000, dport=5000) / pl),
        ("ipip_udp4_ce_df", IP(src=s4, dst=c["ipip_pod4"], id=0x6667, tos=0x03, flags="DF")
         / UDP(sport=40000, dport=5000) / pl),
    ]
    conv = lambda lst: [(n, bytes(p)) for n, p in lst]
    return conv(v4), conv(v6), conv(ipip)


def is_tunnel_frame(f):
    """An outer frame of ours: IPv4 / IPv6 carrying UDP to the VXLAN port, or IPv4 carrying IPv4."""
    if len(f) < 14:
        return False
    et = struct.unpack("!H", f[12:14])[0]
    if et == 0x0800 and len(f) >= 14 + 20 + 4:
        ihl = (f[14] & 0xF) * 4
        proto = f[14 + 9]
        if proto == 4:
            return True
        return proto == 17 and struct.unpack("!H", f[14 + ihl + 2:14 + ihl + 4])[0] == CONFIG["port"]
    if et == 0x86DD and len(f) >= 14 + 40 + 4:
        return f[14 + 6] == 17 and struct.unpack("!H", f[54 + 2:54 + 4])[0] == CONFIG["port"]
    return False


def capture(sender, wire, name, inner):
    """Sends inner from the pod; returns the outer frame that came out of the node."""
    while select.select([wire], [], [], 0)[0]:
        wire.recv(65535)
    c = CONFIG
    frame = bytes(Ether(src=c["linux_pod_mac"], dst=c["gateway_mac"],
                        type=0x86DD if inner[0] >> 4 == 6 else 0x0800)) + inner
    sender.send(frame)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not select.select([wire], [], [], max(0, deadline - time.monotonic()))[0]:
            break
        data, addr = wire.recvfrom(65535)
        if addr[2] != PACKET_OUTGOING and is_tunnel_frame(data):
            return data
    raise RuntimeError("no frame on the wire for " + name)


def main():
    if os.geteuid() != 0:
        log("must run as root")
        return 2
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
    signal.signal(signal.SIGHUP, lambda *a: sys.exit(3))
    ipip = setup()
    with InNetns("wire"):
        wire = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        wire.bind(("ul1", 0))
    with InNetns("pod"):
        sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sender.bind(("eth0", 0))
    v4, v6, ip4ip4 = inner_packets()
    out = {"kernel": os.uname().release, "config": CONFIG, "vxlan": [],
           "ipip": {"available": ipip["available"], "error": ipip["error"], "packets": []}}
    for name, inner in v4 + v6:
        out["vxlan"].append({"name": name, "inner": inner.hex(),
                             "outer": capture(sender, wire, name, inner).hex()})
    if ipip["available"]:
        for name, inner in ip4ip4:
            out["ipip"]["packets"].append({"name": name, "inner": inner.hex(),
                                           "outer": capture(sender, wire, name, inner).hex()})
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # reported, then the namespaces go (atexit)
        log("%s: %s" % (type(e).__name__, e))
        sys.exit(1)
