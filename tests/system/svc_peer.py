#!/usr/bin/env python3
"""Both ends of the service checks, run inside namespaces (test_services.py).

serve NAME TCP_PORT UDP_PORT  answer every TCP connection and UDP datagram, IPv4 and IPv6,
                              with "NAME <peer addr> <peer port>"; print "listening", then
                              run until killed
ask tcp|udp ADDR PORT [COUNT] one question (COUNT, one after another, each from a new source
                              port); print the answer and "from <addr> <port>" (the address
                              and port it came from) for each; exit 3 when refused (ICMP /
                              ICMPv6 port unreachable: ECONNREFUSED), 1 on a timeout (the
                              first failure ends the run)
"""
import select
import socket
import sys

from dualstack import tcp_listener, udp_socket


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve(name, tcp_port, udp_port):
    t = tcp_listener(tcp_port)
    u = udp_socket(udp_port)
    print("listening", flush=True)
    while True:
        ready, _, _ = select.select([t, u], [], [])
        if t in ready:
            c, peer = t.accept()
            c.settimeout(5)
            try:
                c.sendall(f"{name} {peer[0].removeprefix('::ffff:')} {peer[1]}\n".encode())
            except OSError:
                pass
            c.close()
        if u in ready:
            data, peer = u.recvfrom(2048)
            u.sendto(f"{name} {peer[0].removeprefix('::ffff:')} {peer[1]}\n".encode(), peer)


def ask(proto, addr, port):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(fam(addr), kind)
    s.settimeout(3)
    try:
        s.connect((addr, port))
        if proto == "udp":
            for _ in range(3):
                s.send(b"?")
                try:
                    answer = s.recv(2048)
                    break
                except socket.timeout:
                    continue
            else:
                return 1
        else:
            answer = b""
            while not answer.endswith(b"\n"):
                b = s.recv(2048)
                if not b:
                    break
                answer += b
        peer = s.getpeername()
    except ConnectionRefusedError:
        print("refused", flush=True)
        return 3
    except socket.timeout:
        print("timeout", flush=True)
        return 1
    print(answer.decode().strip())
    print("from", peer[0], peer[1], flush=True)
    return 0


def main():
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "ask":
        for _ in range(int(sys.argv[5]) if len(sys.argv) > 5 else 1):
            rc = ask(sys.argv[2], sys.argv[3], int(sys.argv[4]))
            if rc != 0:
                sys.exit(rc)
    else:
        sys.exit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
