#!/usr/bin/env python3
"""Both ends of the natOutgoing checks, run inside namespaces (test_nat.py).

tcp-server ADDR PORT         accept one connection; print "<peer addr> <peer port>" once
                             accepted, then "<bytes> <sha256>" when it closes
tcp-client ADDR PORT BYTES SPORT
                             from source port SPORT, send BYTES of seeded data; print
                             "<bytes> <sha256>"; with BYTES 0, send 10 bytes and hold the
                             connection until stdin closes
udp-server ADDR PORT         answer one datagram; print "<peer addr> <peer port>"
udp-client ADDR PORT SPORT   from SPORT, send one datagram, wait for the answer (3 tries);
                             print "ok" or exit 1
tcp-raw SRC SPORT DST DPORT SEQ
                             send one bare TCP ACK segment (IPv4) with sequence SEQ
"""
import hashlib
import random
import socket
import struct
import sys


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_server(addr, port):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    print("listening", flush=True)
    c, peer = s.accept()
    print(peer[0], peer[1], flush=True)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    print(n, h.hexdigest(), flush=True)


def tcp_client(addr, port, nbytes, sport):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if ":" in addr else "0.0.0.0", sport))
    s.settimeout(20)
    s.connect((addr, port))
    if nbytes == 0:
        s.sendall(b"0123456789")
        print("connected", flush=True)
        sys.stdin.read()
        s.close()
        return
    rng = random.Random(sport)
    h, left = hashlib.sha256(), nbytes
    while left:
        b = rng.randbytes(min(left, 1 << 16))
        s.sendall(b)
        h.update(b)
        left -= len(b)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    print(nbytes, h.hexdigest(), flush=True)


def udp_server(addr, port):
    s = socket.socket(fam(addr), socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("listening", flush=True)
    data, peer = s.recvfrom(2048)
    s.sendto(b"pong:" + data, peer)
    print(peer[0], peer[1], flush=True)


def udp_client(addr, port, sport):
    s = socket.socket(fam(addr), socket.SOCK_DGRAM)
    s.bind(("::" if ":" in addr else "0.0.0.0", sport))
    s.settimeout(1)
    for _ in range(3):
        s.sendto(b"ping", (addr, port))
        try:
            data, _ = s.recvfrom(2048)
        except socket.timeout:
            continue
        if data == b"pong:ping":
            print("ok")
            return
    sys.exit(1)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def tcp_raw(src, sport, dst, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x10, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.bind((src, 0))
    s.sendto(tcp, (dst, 0))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "tcp-server":
        tcp_server(args[0], int(args[1]))
    elif cmd == "tcp-client":
        tcp_client(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "udp-server":
        udp_server(args[0], int(args[1]))
    elif cmd == "udp-client":
        udp_client(args[0], int(args[1]), int(args[2]))
    elif cmd == "tcp-raw":
        tcp_raw(args[0], int(args[1]), args[2], int(args[3]), int(args[4]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
