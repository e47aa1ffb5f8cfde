#!/usr/bin/env python3
"""The two ends of policy tests, run inside pod namespaces.

serve PORT [PORT ...]   echo on each port over TCP and UDP, IPv4 and IPv6 (dual-stack
                        sockets on ::); print "ready" once every socket is bound; run until
                        killed. A TCP peer gets back what it sent; a UDP datagram is sent back
                        to its source.
probe SPEC [SPEC ...]   SPEC is PROTO:ADDR:PORT (PROTO tcp or udp; an IPv6 ADDR in brackets:
                        tcp:[fd00::1]:80), each tried at once in its own thread; print one JSON
                        object {SPEC: true | false}: true when the echo came back within
                        --timeout seconds (default 1), false when it did not or the
                        connection was refused or reset.
stream SPEC RATE        send a UDP datagram to SPEC every 1/RATE s and print one line per
                        second: "<seconds since start> <echoes received in that second>",
                        until killed (a policy change seen under traffic).
"""
import json
import select
import socket
import sys
import threading
import time

from dualstack import tcp_listener, udp_socket


def parse(spec):
    proto, rest = spec.split(":", 1)
    if rest.startswith("["):
        addr, port = rest[1:].split("]:")
    else:
        addr, port = rest.rsplit(":", 1)
    return proto, addr, int(port)


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve(ports):
    socks = []
    for p in ports:
        socks += [tcp_listener(p), udp_socket(p)]
    print("ready", flush=True)
    conns = []
    while True:
        r, _, _ = select.select(socks + conns, [], [], 1)
        for s in r:
            if s in conns:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    s.sendall(data)
                else:
                    conns.remove(s)
                    s.close()
            elif s.type == socket.SOCK_STREAM:
                c, _ = s.accept()
                conns.append(c)
            else:
                data, peer = s.recvfrom(4096)
                s.sendto(data, peer)


def probe_one(spec, timeout):
    proto, addr, port = parse(spec)
    s = socket.socket(family(addr), socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        msg = f"probe {spec}".encode()
        s.send(msg)
        return s.recv(4096) == msg
    except OSError:
        return False
    finally:
        s.close()


def probe(specs, timeout):
    out = {}
    threads = [threading.Thread(target=lambda sp=sp: out.__setitem__(sp, probe_one(sp, timeout)))
               for sp in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(out), flush=True)


def stream(spec, rate):
    _, addr, port = parse(spec)
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.connect((addr, port))
    s.setblocking(False)
    start = time.monotonic()
    second, got, seq = 0, 0, 0
    next_send = start
    while True:
        now = time.monotonic()
        if now >= next_send:
            try:
                s.send(seq.to_bytes(8, "big"))
            except OSError:
                pass
            seq += 1
            next_send += 1.0 / rate
        if int(now - start) > second:
            print(f"{second} {got}", flush=True)
            second, got = int(now - start), 0
        r, _, _ = select.select([s], [], [], max(0.0, min(next_send - now, 0.05)))
        if r:
            try:
                while True:
                    s.recv(64)
                    got += 1
            except OSError:
                pass


def main(argv):
    timeout = 1.0
    if "--timeout" in argv:
        i = argv.index("--timeout")
        timeout = float(argv[i + 1])
        del argv[i:i + 2]
    if argv[0] == "serve":
        serve([int(p) for p in argv[1:]])
    elif argv[0] == "probe":
        probe(argv[1:], timeout)
    elif argv[0] == "stream":
        stream(argv[1], float(argv[2]))
    else:
        sys.exit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
