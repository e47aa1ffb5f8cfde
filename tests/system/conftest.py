"""System test harness: real kernels in network namespaces as pods, the real
daemon, fwdctl over the real API socket.

Everything a test creates carries a per-run prefix and is removed at the end
(namespaces, daemons by PID, sockets). Nothing is sent anywhere but to
addresses inside namespaces these tests created."""
import tempfile

import pytest

from fwdlab import DAEMON, FWDCTL, RUN_ID, Bird, Daemon, Netns, sh  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "bgp_dataplane: needs the daemon's host tap and BGP route watcher "
        "(test_bgp_dataplane.py); deselect with -m 'not bgp_dataplane'")


@pytest.fixture
def tmpdir_short():
    # unix socket paths must stay short: keep them under /tmp
    with tempfile.TemporaryDirectory(prefix="fwdt") as d:
        yield d


@pytest.fixture
def netns_factory():
    created = []

    def make(label):
        ns = Netns(f"fwdt{RUN_ID}{label}")
        created.append(ns)
        return ns

    yield make
    for ns in created:
        ns.delete()


@pytest.fixture
def daemon_factory(tmpdir_short):
    started = []

    def make(name="n1", **kw):
        d = Daemon(tmpdir_short, name, **kw)
        started.append(d)
        return d.start()

    yield make
    for d in started:
        d.stop()
        assert d.proc.returncode == 0, f"dpdk-fwd exited {d.proc.returncode}:\n{d.log.read_text()}"


@pytest.fixture
def bird_factory(tmpdir_short):
    """make(ns, name, config_text) -> a started Bird in ns; stopped by PID at teardown.
    Request it after netns_factory (and daemon_factory) so BIRD stops first."""
    started = []

    def make(ns, name, config):
        b = Bird(tmpdir_short, name, ns, config)
        started.append(b)
        return b.start()

    yield make
    for b in started:
        b.stop()
