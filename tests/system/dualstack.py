"""Dual-stack server sockets for the peers that run inside namespaces (svc_peer.py,
pol_peer.py): one socket on :: takes IPv4 (as ::ffff:a.b.c.d) and IPv6 alike."""
import socket


def tcp_listener(port, backlog=64):
    t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("::", port))
    t.listen(backlog)
    return t


def udp_socket(port):
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.bind(("::", port))
    return u
