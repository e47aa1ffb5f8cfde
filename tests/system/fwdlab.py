"""Pods, routers and daemons for the system tests and the demo: network
namespaces, the real dpdk-fwd process, fwdctl over its API socket. Every
name carries a per-run prefix; every object has a cleanup."""
import json
import os
import pathlib
import signal
import subprocess
import tempfile
import time
import uuid


ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("FWD_BUILD", ROOT / "build"))
DAEMON = BUILD / "dpdk-fwd" / "app" / "dpdk-fwd"
FWDCTL = BUILD / "control" / "fwdctl"
RUN_ID = uuid.uuid4().hex[:6]


def sh(cmd, check=True, timeout=60, **kw):
    """Runs a shell command; returns CompletedProcess with text output."""
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"command failed ({r.returncode}): {cmd}\n{r.stdout}\n{r.stderr}")
    return r


class Netns:
    """A network namespace standing in for a pod or a router."""

    def __init__(self, name):
        self.name = name
        self.path = f"/var/run/netns/{name}"
        sh(f"ip netns add {name}")
        sh(f"ip -n {name} link set lo up")

    def run(self, cmd, check=True, timeout=60):
        return sh(f"ip netns exec {self.name} {cmd}", check=check, timeout=timeout)

    def popen(self, cmd, **kw):
        return subprocess.Popen(f"exec ip netns exec {self.name} {cmd}", shell=True, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def delete(self):
        sh(f"ip netns del {self.name}", check=False)


class Daemon:
    """One dpdk-fwd process with its own config, socket and file prefix."""

    def __init__(self, tmp, name, workers=(1,), extra=None, idle=None):
        self.tmp = pathlib.Path(tmp)
        self.name = name
        self.sock = str(self.tmp / f"{name}.sock")
        self.prefix = f"fwdt{RUN_ID}{name}"
        cfg = {
            "node_name": name,
            "eal": {"file_prefix": self.prefix, "in_memory": True, "memory_mb": 256},
            "cores": {"main": 0, "control": 0, "workers": [{"core": c} for c in workers]},
            "node": {"ipv4": "10.10.10.10/24", "ipv6": "fd00:10:10::10/64", "mtu": 1500},
            "api_socket": self.sock,
            "run_dir": str(self.tmp / f"{name}-run"),
            "mbufs": 8191,
        }
        if idle:
            cfg["idle"] = idle
        if extra:
            cfg.update(extra)
        self.config = self.tmp / f"{name}.json"
        self.config.write_text(json.dumps(cfg, indent=2))
        self.log = self.tmp / f"{name}.log"
        self.proc = None

    def start(self, timeout=30):
        logf = open(self.log, "w")
        self.proc = subprocess.Popen([str(DAEMON), "--config", str(self.config)], stdout=logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dpdk-fwd exited {self.proc.returncode}:\n{self.log.read_text()}")
            r = subprocess.run([str(FWDCTL), "-s", self.sock, "version"], capture_output=True)
            if r.returncode == 0:
                return self
            time.sleep(0.2)
        raise AssertionError(f"dpdk-fwd did not answer on {self.sock}:\n{self.log.read_text()}")

    def ctl(self, *args, check=True):
        """fwdctl --json <args>; returns the parsed result."""
        r = subprocess.run([str(FWDCTL), "-s", self.sock, "--json", *map(str, args)],
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"fwdctl {' '.join(map(str, args))}: {r.returncode}\n{r.stderr}")
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else r

    def add_pod(self, ns, ipv4=None, ipv6=None, mtu=None, name=None):
        args = ["endpoint", "add", "--id", name or ns.name, "--netns", ns.name]
        if ipv4:
            args += ["--ipv4", ipv4]
        if ipv6:
            args += ["--ipv6", ipv6]
        if mtu:
            args += ["--mtu", mtu]
        return self.ctl(*args)

    def stats(self):
        return self.ctl("stats")

    def cpu_seconds(self):
        """utime + stime of the daemon, in seconds, from /proc."""
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in pathlib.Path("/dev/hugepages").glob(f"{self.prefix}*"):
            f.unlink()


