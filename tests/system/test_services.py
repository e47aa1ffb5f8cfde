"""Kubernetes Services as data, followed by the daemon: `fwdctl apply -f` writes the example
Service of ../shared/examples and an EndpointSlice into the node's store, and the daemon
compiles and publishes what its node serves (service.frontends) within its sync period;
a slice that comes before its service waits for it; deleting the service takes its
frontends away. No packet is translated yet (the NAT stage is not built): this checks the
path from the store to the datapath's table."""
import pathlib
import subprocess

from fwdlab import FWDCTL, wait_until

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "examples"
SLICE = """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: my-app-v6
  namespace: production
  labels:
    kubernetes.io/service-name: my-app
addressType: IPv6
endpoints:
  - addresses: ["fd00:10:244::5"]
    nodeName: svcnode
    conditions: {ready: true}
  - addresses: ["fd00:10:244::45"]
    nodeName: othernode
    conditions: {ready: false, serving: true, terminating: true}
ports:
  - name: http
    port: 8080
    protocol: TCP
  - name: https
    port: 8443
    protocol: TCP
"""


def fwdctl(*args, check=True):
    r = subprocess.run([str(FWDCTL), *map(str, args)], capture_output=True, text=True,
                       timeout=60)
    assert not check or r.returncode == 0, r.stdout + r.stderr
    return r


def test_daemon_follows_services_from_the_store(daemon_factory, tmpdir_short):
    store = f"embedded:{tmpdir_short}/store"
    d = daemon_factory("svcnode", extra={"ipam": {"store": store, "sync_ms": 100}})
    slice_file = pathlib.Path(tmpdir_short) / "slice.yaml"
    slice_file.write_text(SLICE)

    # the slice first: it waits for its service, nothing is served
    fwdctl("apply", "--store", store, "-f", slice_file)

    def notes():
        return d.ctl("service", "frontends")["notes"]
    wait_until(lambda: any("my-app-v6" in n for n in notes()), 20, interval=0.1,
               what="the slice noted as waiting for its service")
    assert d.ctl("service", "frontends")["frontends"] == []

    # the dual-stack example service (PreferDualStack, IPv6 first): both ClusterIPs, two ports
    fwdctl("apply", "--store", store, "-f", EXAMPLES / "service-dual-stack.yaml")

    def served():
        return d.ctl("service", "frontends")["frontends"]
    wait_until(lambda: len(served()) == 4, 20, interval=0.1,
               what="4 frontends: 2 ClusterIPs x 2 ports")
    fes = served()
    assert {f["service"] for f in fes} == {"production/my-app"}
    assert {f["kind"] for f in fes} == {"ClusterIP"}
    v6 = [f for f in fes if ":" in f["addr"]]
    v4 = [f for f in fes if ":" not in f["addr"]]
    assert len(v6) == 2 and len(v4) == 2, fes
    http6 = next(f for f in v6 if f["port"] == 80)
    # the ready endpoint takes new flows, the terminating one stays listed for existing flows
    assert [(b["addr"], b["port"], b["local"], b["new_flows"]) for b in http6["backends"]] == [
        ("fd00:10:244::5", 8080, True, True), ("fd00:10:244::45", 8080, False, False)], http6
    assert http6["no_backend"] == "-"
    # no IPv4 slice: the IPv4 frontends reject (ICMP port unreachable), as kube-proxy does
    assert all(f["no_backend"] == "reject" and f["backends"] == [] for f in v4), v4
    assert d.ctl("node")["services"]["frontends"] == 4
    out = fwdctl("-s", d.sock, "service", "frontends").stdout
    assert "production/my-app" in out and "fd00:10:244::5:8080" in out and "reject" in out, out

    # the service goes: its frontends go, the slice waits again
    fwdctl("delete", "--store", store, "-f", EXAMPLES / "service-dual-stack.yaml")
    wait_until(lambda: served() == [], 20, interval=0.1, what="the frontends withdrawn")
    assert any("my-app-v6" in n for n in notes())
