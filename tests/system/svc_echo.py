#!/usr/bin/python3
"""A service backend and its clients, for the Service rows of the lab and the system tests.

  svc_echo.py server NAME PORT
      listens on PORT over TCP, IPv4 and IPv6 (each family the namespace has), prints
      "listening" once ready; each connection gets one line "NAME PEER_ADDR PEER_PORT"
      (who the backend is, and the source it saw), then is closed.
  svc_echo.py client ADDR PORT COUNT [TIMEOUT]
      COUNT connections to ADDR:PORT one after another (each from a new source port); one
      output line per connection: the server's line, or "error <what>". Exit 0 when every
      connection was answered.
  svc_echo.py refused ADDR PORT [TIMEOUT]
      one connection; prints "refused" and exits 0 when the connection is refused (an ICMP
      port unreachable or a RST), else says what happened and exits 1."""
import socket
import sys
import threading


def serve(name, port):
    socks = []
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            s.listen(128)
            socks.append(s)
        except OSError:
            continue  # the namespace lacks that family
    if not socks:
        print("no family to listen on", file=sys.stderr)
        return 1

    def loop(s):
        while True:
            c, peer = s.accept()
            with c:
                try:
                    c.sendall(f"{name} {peer[0]} {peer[1]}\n".encode())
                except OSError:
                    pass

    threads = [threading.Thread(target=loop, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    print("listening", flush=True)
    for t in threads:
        t.join()
    return 0


def connect(addr, port, timeout):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return data.decode().strip() or "error empty answer"
    finally:
        s.close()


def client(addr, port, count, timeout):
    ok = True
    for _ in range(count):
        try:
            print(connect(addr, port, timeout), flush=True)
        except OSError as e:
            ok = False
            print(f"error {type(e).__name__}: {e}", flush=True)
    return 0 if ok else 1


def refused(addr, port, timeout):
    try:
        got = connect(addr, port, timeout)
    except ConnectionRefusedError:
        print("refused")
        return 0
    except OSError as e:
        print(f"error {type(e).__name__}: {e}")
        return 1
    print(f"answered: {got}")
    return 1


def main(argv):
    if len(argv) >= 3 and argv[0] == "server":
        return serve(argv[1], int(argv[2]))
    if len(argv) >= 3 and argv[0] == "client":
        return client(argv[1], int(argv[2]), int(argv[3]) if len(argv) > 3 else 1,
                      float(argv[4]) if len(argv) > 4 else 3.0)
    if len(argv) >= 3 and argv[0] == "refused":
        return refused(argv[1], int(argv[2]), float(argv[3]) if len(argv) > 3 else 3.0)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
