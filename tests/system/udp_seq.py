#!/usr/bin/env python3
"""A paced UDP stream with sequence numbers, run inside pod namespaces.

send ADDR PORT RATE   send to ADDR:PORT at RATE packets/s until a line "stop" (or EOF)
                      on stdin; then print {"sent": N, "send_errors": E, "seconds": S}
recv ADDR PORT        receive on ADDR:PORT; print "ready" once bound; on a line
                      "stop N" on stdin keep draining until the socket is quiet for 1 s,
                      then print {"received", "unique", "dups", "stray", "missing",
                      "gaps": [[first, last], ...] (the first 20), "beyond"} for
                      sequence numbers 0..N-1

Packets are 64 bytes: an 8-byte magic, an 8-byte sequence number, padding.
"""
import json
import socket
import struct
import sys
import threading
import time

MAGIC = b"FWDSEQ01"
SIZE = 64
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; not in the socket module


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def stdin_lines(on_line):
    def run():
        for line in sys.stdin:
            if on_line(line.strip()):
                return
        on_line("stop")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def send(addr, port, rate):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    stop = threading.Event()
    stdin_lines(lambda line: (stop.set(), True)[1] if line.startswith("stop") else False)
    pad = b"\0" * (SIZE - 16)
    seq = 0
    errors = 0
    t0 = time.monotonic()
    print("sending", flush=True)
    while not stop.is_set():
        due = int((time.monotonic() - t0) * rate)
        while seq < due:
            try:
                s.sendto(MAGIC + struct.pack("!Q", seq) + pad, (addr, port))
            except OSError:
                errors += 1  # the sequence number is skipped: the receiver sees a gap
            seq += 1
        time.sleep(0.001)
    print(json.dumps({"sent": seq, "send_errors": errors,
                      "seconds": round(time.monotonic() - t0, 3)}), flush=True)


def recv(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)  # root in the netns
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind((addr, port))
    s.settimeout(0.1)
    expect = []
    stop = threading.Event()

    def on_line(line):
        if line.startswith("stop"):
            parts = line.split()
            expect.append(int(parts[1]) if len(parts) > 1 else -1)
            stop.set()
            return True
        return False

    stdin_lines(on_line)
    seen = bytearray(1 << 20)
    received = dups = stray = 0
    top = -1
    print("ready", flush=True)
    quiet_since = None
    while True:
        try:
            b = s.recv(2048)
        except socket.timeout:
            if stop.is_set():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 1.0:
                    break
            continue
        quiet_since = None
        if len(b) != SIZE or not b.startswith(MAGIC):
            stray += 1
            continue
        seq = struct.unpack("!Q", b[8:16])[0]
        received += 1
        if seq >= len(seen):
            seen.extend(bytearray(max(seq + 1 - len(seen), len(seen))))
        if seen[seq]:
            dups += 1
        seen[seq] = 1
        top = max(top, seq)
    n = expect[0] if expect and expect[0] >= 0 else top + 1
    if n > len(seen):
        seen.extend(bytearray(n - len(seen)))
    gaps = []
    missing = 0
    i = 0
    while i < n:
        if not seen[i]:
            j = i
            while j + 1 < n and not seen[j + 1]:
                j += 1
            missing += j - i + 1
            if len(gaps) < 20:
                gaps.append([i, j])
            i = j + 1
        else:
            i += 1
    unique = sum(seen[:n])
    beyond = sum(seen[n:])
    print(json.dumps({"received": received, "unique": unique, "dups": dups, "stray": stray,
                      "missing": missing, "gaps": gaps, "beyond": beyond, "expected": n}),
          flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        recv(sys.argv[2], int(sys.argv[3]))
