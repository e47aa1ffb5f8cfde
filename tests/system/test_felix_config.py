"""FelixConfiguration (issue 18): `fwdctl apply -f` writes it into the cluster store (a real
etcd) and a running daemon takes it without a restart: the metrics and health listeners move,
the log level changes, natPortRange reaches the NAT module; a node's own resource
(node.<name>) wins over the default, and deleting it gives the default back. Fields that do
not apply here are named in warnings; a bad value is refused naming the document and the
field, and changes nothing."""
import pathlib
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from fwdlab import FWDCTL, RUN_ID, Etcd, free_port, wait_until


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def felix_yaml(name, spec):
    lines = "".join(f"  {line}\n" for line in spec.strip().splitlines())
    return (f"apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n"
            f"metadata:\n  name: {name}\nspec:\n{lines}")


@pytest.fixture
def node(daemon_factory, tmp_path):
    etcd = Etcd(tmp_path, name="etcd").start()
    spec = etcd.spec(f"/fx{RUN_ID}")
    mport = free_port()
    d = daemon_factory("fx", extra={
        "ipam": {"store": spec, "sync_ms": 100},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": mport},
        "log": {"level": "info"},
    })
    d.store, d.metrics_port, d.tmp_path = spec, mport, tmp_path
    yield d
    etcd.stop()


def fwdctl(d, verb, text):
    path = d.tmp_path / f"felix-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    return subprocess.run([str(FWDCTL), verb, "-f", str(path), "--store", d.store],
                          capture_output=True, text=True, timeout=30)


def felix_view(d):
    return d.ctl("node")["felix"]


def test_felix_configuration_takes_effect_without_restart(node):
    d = node
    old = f"http://127.0.0.1:{d.metrics_port}/metrics"
    assert http_status(old) == 200
    assert d.ctl("log", "level")["level"] == "info"
    mport, hport = free_port(), free_port()

    r = fwdctl(d, "apply", felix_yaml("default", f"""
logSeverityScreen: Debug
prometheusMetricsEnabled: true
prometheusMetricsHost: 127.0.0.1
prometheusMetricsPort: {mport}
healthEnabled: true
healthHost: 127.0.0.1
healthPort: {hport}
natPortRange: "40000:40100"
vxlanVNI: 4097
vxlanPort: 4790
failsafeInboundHostPorts:
  - protocol: tcp
    port: 22
flowLogsFlushInterval: 15s
iptablesBackend: Auto
"""))
    assert r.returncode == 0, r.stderr
    assert "FelixConfiguration" in r.stdout and "default" in r.stdout, r.stdout
    # what does not apply here is named, never silently dropped
    warnings = [x for x in r.stderr.splitlines() if "warning" in x]
    assert any("spec.flowLogsFlushInterval" in x and "not supported" in x for x in warnings), \
        r.stderr
    assert any("spec.iptablesBackend" in x for x in warnings), r.stderr

    t0 = time.monotonic()
    wait_until(lambda: http_status(f"http://127.0.0.1:{mport}/metrics") == 200, 10,
               what="metrics on the FelixConfiguration's port")
    wait_until(lambda: http_status(f"http://127.0.0.1:{hport}/liveness") == 200, 10,
               what="health on the FelixConfiguration's port")
    print(f"felix: listeners moved {time.monotonic() - t0:.2f} s after the apply")
    assert http_status(old) is None  # the old port is closed
    wait_until(lambda: d.ctl("log", "level")["level"] == "debug", 5, what="log level debug")
    view = felix_view(d)
    assert view["resources"] == ["default"], view
    assert view["settings"]["failsafeInboundHostPorts"] == [{"protocol": "TCP", "port": 22}]
    assert view["problems"] == [], view
    node_view = d.ctl("node")
    assert node_view["nat"]["port_range"] == "40000-40100", node_view["nat"]
    assert node_view["overlay"]["vni"] == 4097, node_view["overlay"]
    assert node_view["overlay"]["vxlan_port"] == 4790, node_view["overlay"]
    text = subprocess.run([str(FWDCTL), "-s", d.sock, "node"], capture_output=True,
                          text=True).stdout
    assert "felix     default" in text, text

    # a node's own resource wins field by field; deleting it gives the default back
    nport = free_port()
    own = felix_yaml(f"node.{d.name}", f"prometheusMetricsPort: {nport}")
    assert fwdctl(d, "apply", own).returncode == 0
    wait_until(lambda: http_status(f"http://127.0.0.1:{nport}/metrics") == 200, 10,
               what="metrics on the node resource's port")
    assert d.ctl("log", "level")["level"] == "debug"  # still the default's
    assert fwdctl(d, "delete", own).returncode == 0
    wait_until(lambda: http_status(f"http://127.0.0.1:{mport}/metrics") == 200, 10,
               what="metrics back on the default's port")

    # a bad value: refused by name, nothing written, nothing changed
    r = fwdctl(d, "apply", felix_yaml("default", "vxlanPort: 0\nlogSeverityScreen: Error"))
    assert r.returncode != 0
    assert "FelixConfiguration 'default'" in r.stderr and "spec.vxlanPort" in r.stderr, r.stderr
    r = fwdctl(d, "apply", felix_yaml("default", "prometheusMetricPort: 1"))
    assert r.returncode != 0 and "spec.prometheusMetricPort: unknown field" in r.stderr, r.stderr
    time.sleep(0.3)  # three sync periods: a write would have been taken by now
    assert d.ctl("log", "level")["level"] == "debug"

    # the whole default deleted: the node config file's values again
    assert fwdctl(d, "delete", felix_yaml("default", "logSeverityScreen: Debug")).returncode == 0
    wait_until(lambda: http_status(old) == 200, 10, what="metrics back on the file's port")
    wait_until(lambda: d.ctl("log", "level")["level"] == "info", 5, what="log level info")
    assert http_status(f"http://127.0.0.1:{hport}/liveness") is None  # health off, as the file
    assert d.ctl("node")["nat"]["port_range"] is None
    assert d.ctl("node")["overlay"]["vxlan_port"] == 4789  # the file says nothing: the default
