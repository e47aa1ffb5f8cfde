#!/usr/bin/env python3
"""TCP transfer with a content check, run inside pod namespaces.

server ADDR PORT            accept one connection, print "<bytes> <sha256>"
client ADDR PORT BYTES SEED send BYTES of seeded pseudo-random data, print the same
"""
import hashlib
import random
import socket
import sys


def server(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    print("listening", flush=True)
    c, _ = s.accept()
    h = hashlib.sha256()
    n = 0
    while True:
        b = c.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    print(n, h.hexdigest(), flush=True)


def client(addr, port, total, seed):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    rng = random.Random(seed)
    chunk = rng.randbytes(1 << 20)
    s = socket.create_connection((addr, port), timeout=30)
    h = hashlib.sha256()
    sent = 0
    i = 0
    while sent < total:
        # vary the chunk so reordering or duplication would change the digest
        part = chunk[i % 997:] + chunk[:i % 997]
        part = part[: min(len(part), total - sent)]
        s.sendall(part)
        h.update(part)
        sent += len(part)
        i += 1
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()
    print(sent, h.hexdigest(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
