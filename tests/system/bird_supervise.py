"""Runs BIRD in the foreground and starts it again whenever it exits, as runit does for
calico-node's BIRD: a daemon with bird.graceful_restart reloads a changed session by
`birdc graceful restart` (BIRD exits, its peers and its kernel routes keep the routes) and
relies on this to start BIRD on the new file, with -R (graceful restart recovery).

  bird_supervise.py /usr/sbin/bird -f -c FILE -s SOCKET -P PIDFILE

SIGTERM or SIGINT: stops BIRD (SIGTERM) and exits 0. A BIRD that exits within a second of
its start is started again after a second (a file BIRD refuses does not spin a core)."""
import signal
import subprocess
import sys
import time

child = None
stopping = False


def stop(*_):
    global stopping
    stopping = True
    if child is not None and child.poll() is None:
        child.terminate()


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while not stopping:
    started = time.monotonic()
    # -R on a restart: BIRD recovers gracefully (keeps the kernel routes it left until its
    # sessions are back) instead of syncing the kernel table at once.
    argv = sys.argv[1:2] + (["-R"] if child is not None else []) + sys.argv[2:]
    child = subprocess.Popen(argv)
    rc = child.wait()
    if stopping:
        break
    print(f"bird_supervise: BIRD exited {rc}; starting it again", flush=True)
    if time.monotonic() - started < 1:
        time.sleep(1)
sys.exit(0)
