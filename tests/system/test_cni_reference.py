"""The CNI harness (cnitool.py) against Debian's reference plugins, and the harness's own
protocol against a recording fake plugin.

Reference plugins: /usr/lib/cni from Debian 12's containernetworking-plugins 1.1.1. They speak
CNI 0.1.0 .. 1.0.0, so STATUS and GC (1.1.0) are unknown to them. bridge + host-local run
through ADD / CHECK / DEL for IPv4, IPv6 and dual stack; a bridge -> tuning chain; libcni's
GC (a DEL for every stale cached attachment); bad input straight through invoke().

Where things live: the bridge and the host ends of the veths in a host namespace the test
creates (host_netns), the pod ends in pod namespaces; the result cache, host-local's store
(dataDir) and tuning's saved state (dataDir) in the test's temporary directory. Nothing is
created in the root namespace (checked) and no traffic is sent.

The fake plugin (a small Python script written into the temporary directory) records the
environment it was exec'd with and its stdin, so the tests can assert exactly what libcni's
rules say each plugin of a chain must get, including STATUS and GC at 1.1.0."""
import base64
import json
import os
import pathlib
import uuid

import pytest

from cnitool import CniError, NetworkList, invoke, kubelet_args
from fwdlab import sh

PLUGIN_DIR = "/usr/lib/cni"
BRIDGE = "cnibr0"  # inside the test's host namespace only
NET = "fwdt-ref"
# What Debian 12's plugins (1.1.1) answer to VERSION. An upgrade that adds 1.1.0 must fail
# here: the STATUS / GC expectations below depend on it.
REFERENCE_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]

# One address per family, so a second pod can only get it once the first released it.
V4 = {"subnet": "10.22.0.0/24", "rangeStart": "10.22.0.10", "rangeEnd": "10.22.0.10",
      "gateway": "10.22.0.1"}
V6 = {"subnet": "fd00:22::/64", "rangeStart": "fd00:22::10", "rangeEnd": "fd00:22::10",
      "gateway": "fd00:22::1"}
FAMILIES = {
    "ipv4": ([V4], [{"dst": "0.0.0.0/0"}]),
    "ipv6": ([V6], [{"dst": "::/0"}]),
    "dual": ([V4, V6], [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]),
}


@pytest.fixture(scope="module", autouse=True)
def reference_plugins():
    for p in ("bridge", "host-local", "tuning"):
        assert os.access(f"{PLUGIN_DIR}/{p}", os.X_OK), \
            f"{PLUGIN_DIR}/{p} missing: apt-get install -y containernetworking-plugins"


class Lab:
    """A host namespace for the bridge side, two pod namespaces, a temporary directory."""

    def __init__(self, netns_factory, tmp):
        self.host = netns_factory("h")
        self.pod = netns_factory("p")
        self.pod2 = netns_factory("q")
        self.tmp = pathlib.Path(tmp)
        self.cache = self.tmp / "cache"
        self.ipam_dir = self.tmp / "ipam"

    def bridge_conf(self, ranges, routes=None):
        ipam = {"type": "host-local", "dataDir": str(self.ipam_dir),
                "ranges": [[r] for r in ranges]}
        if routes:
            ipam["routes"] = routes
        # ipMasq off: no iptables rules, not even in the test namespace
        return {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "ipam": ipam}

    def network(self, plugins, version="1.0.0", **extra):
        conflist = {"cniVersion": version, "name": NET, "plugins": plugins, **extra}
        return NetworkList(conflist, [PLUGIN_DIR], self.cache, host_netns=self.host.name)

    def reservations(self):
        """host-local's reserved addresses: one file per address in <dataDir>/<network>."""
        d = self.ipam_dir / NET
        if not d.exists():
            return {}
        return {f.name: f.read_text() for f in d.iterdir()
                if f.name != "lock" and not f.name.startswith("last_reserved_ip")}


@pytest.fixture
def lab(netns_factory, tmpdir_short):
    return Lab(netns_factory, tmpdir_short)


def container_id():
    return uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex digits, like a containerd sandbox ID


def links(ns=None):
    out = ns.run("ip -j link show").stdout if ns else sh("ip -j link show").stdout
    return {link["ifname"]: link for link in json.loads(out)}


def global_addrs(ns, ifname="eth0"):
    info = json.loads(ns.run(f"ip -j addr show dev {ifname}").stdout)[0]
    return {f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"] if a["scope"] == "global"}


def default_gateways(ns):
    gws = set()
    for fam in ("-4", "-6"):
        for r in json.loads(ns.run(f"ip {fam} -j route show default").stdout):
            gws.add((r.get("gateway"), r.get("dev")))
    return gws


def sysctl(ns, key):
    return ns.run(f"sysctl -n {key}").stdout.strip()


def check_result_shape(res, pod, gateways):
    """The ADD result of bridge + host-local, as the spec (1.0.0) lays it out: the bridge and
    the host veth without sandbox, the pod interface with it, every IP pointing at the pod
    interface."""
    assert res["cniVersion"] == "1.0.0"
    ifs = res["interfaces"]
    assert len(ifs) == 3
    assert ifs[0]["name"] == BRIDGE and "sandbox" not in ifs[0]
    host_veth = ifs[1]
    assert host_veth["name"].startswith("veth") and "sandbox" not in host_veth
    pod_if = ifs[2]
    assert pod_if["name"] == "eth0" and pod_if["sandbox"] == pod.path
    for i in ifs:
        assert len(i["mac"].split(":")) == 6
    assert [ip["gateway"] for ip in res["ips"]] == gateways
    for ip in res["ips"]:
        assert ip["interface"] == 2, ip  # the pod interface
        assert "version" not in ip  # gone since 1.0.0
    return host_veth["name"], pod_if


@pytest.mark.parametrize("family", FAMILIES)
def test_bridge_add_check_del(lab, family):
    ranges, routes = FAMILIES[family]
    nl = lab.network([lab.bridge_conf(ranges, routes)])
    cid, cid2 = container_id(), container_id()
    args = kubelet_args("default", "web-0", cid)

    res = nl.add(cid, lab.pod.path, cni_args=args)
    gws = [r["gateway"] for r in ranges]
    host_veth, pod_if = check_result_shape(res, lab.pod, gws)
    want = [r["rangeStart"] + "/" + r["subnet"].split("/")[1] for r in ranges]
    assert [ip["address"] for ip in res["ips"]] == want
    assert res.get("routes") == routes

    # the pod really has them: addresses, MAC, default routes via the gateways
    assert global_addrs(lab.pod) == set(want)
    assert links(lab.pod)["eth0"]["address"] == pod_if["mac"]
    assert default_gateways(lab.pod) == {(gw, "eth0") for gw in gws}
    # the host side lives in the host namespace, the veth on the bridge; nothing in root
    host = links(lab.host)
    assert host[host_veth]["master"] == BRIDGE and BRIDGE in host
    root = links()
    assert host_veth not in root and BRIDGE not in root

    # libcni's cache entry and host-local's reservations
    entry = json.loads((lab.cache / "results" / f"{NET}-{cid}-eth0").read_text())
    assert entry["kind"] == "cniCacheV1" and entry["result"] == res
    assert entry["cniArgs"] == [[k, v] for k, v in args.items()]
    assert entry["netns"] == lab.pod.path
    assert json.loads(base64.b64decode(entry["config"]))["name"] == NET
    reserved = lab.reservations()
    assert sorted(reserved) == sorted(a.split("/")[0] for a in want)
    assert all(v.split()[0] == cid for v in reserved.values()), reserved

    nl.check(cid, lab.pod.path, cni_args=args)

    # the pool is empty: a second pod fails (host-local's plain error: code 999), and the
    # runtime's DEL after the failed ADD cleans it up
    with pytest.raises(CniError) as e:
        nl.add(cid2, lab.pod2.path, cni_args=kubelet_args("default", "web-1", cid2))
    assert e.value.code == 999 and "no IP addresses available" in e.value.msg
    assert e.value.plugin == "bridge" and e.value.rc == 1
    assert not (lab.cache / "results" / f"{NET}-{cid2}-eth0").exists()
    nl.delete(cid2, lab.pod2.path, cni_args=kubelet_args("default", "web-1", cid2))
    assert set(links(lab.pod2)) == {"lo"}

    # an address removed behind the plugin's back: CHECK says so (bridge, code 999)
    lost = res["ips"][0]["address"]
    lab.pod.run(f"ip addr del {lost} dev eth0")
    with pytest.raises(CniError) as e:
        nl.check(cid, lab.pod.path, cni_args=args)
    assert e.value.code == 999 and e.value.plugin == "bridge"
    assert e.value.msg == f"Failed to match addr {lost} on interface eth0"

    # DEL, twice: the second finds nothing and still succeeds
    nl.delete(cid, lab.pod.path, cni_args=args)
    assert not (lab.cache / "results" / f"{NET}-{cid}-eth0").exists()
    nl.delete(cid, lab.pod.path, cni_args=args)
    assert set(links(lab.pod)) == {"lo"}
    assert host_veth not in links(lab.host)
    assert lab.reservations() == {}

    # the released addresses go to the next pod (the pool holds one per family)
    res2 = nl.add(cid2, lab.pod2.path, cni_args=kubelet_args("default", "web-1", cid2))
    assert [ip["address"] for ip in res2["ips"]] == want
    nl.delete(cid2, lab.pod2.path, cni_args=kubelet_args("default", "web-1", cid2))
    assert set(links(lab.pod2)) == {"lo"} and lab.reservations() == {}
    assert [n for n in links(lab.host) if n.startswith("veth")] == []


def test_chain_bridge_tuning(lab):
    """bridge -> tuning: tuning gets bridge's result as prevResult, sets the MTU, two sysctls
    and (capability "mac", through runtimeConfig) the MAC inside the pod; its DEL runs first."""
    mac = "02:00:5e:10:00:01"
    sysctls = {"net.ipv4.conf.eth0.rp_filter": "2", "net.ipv6.conf.eth0.accept_ra": "0"}
    # make sure the tuned values differ from what a fresh interface gets
    assert sysctl(lab.pod, "net.ipv4.conf.default.rp_filter") != "2"
    assert sysctl(lab.pod, "net.ipv6.conf.default.accept_ra") != "0"
    tuning = {"type": "tuning", "mtu": 1400, "sysctl": sysctls, "capabilities": {"mac": True},
              "dataDir": str(lab.tmp / "tuning")}
    nl = lab.network([lab.bridge_conf([V4, V6]), tuning])
    cid = container_id()
    args = kubelet_args("kube-system", "dns-0", cid)
    # portMappings is not a capability of either plugin: libcni drops it
    rc = {"mac": mac, "portMappings": [{"hostPort": 8080, "containerPort": 80}]}

    res = nl.add(cid, lab.pod.path, cni_args=args, runtime_config=rc)
    eth0 = links(lab.pod)["eth0"]
    assert eth0["mtu"] == 1400 and eth0["address"] == mac
    for key, value in sysctls.items():
        assert sysctl(lab.pod, key) == value
    # the final result is tuning's: bridge's, with the MAC it set
    _, pod_if = check_result_shape(res, lab.pod, ["10.22.0.1", "fd00:22::1"])
    assert pod_if["mac"] == mac
    assert len(list((lab.tmp / "tuning").iterdir())) == 1  # the values to restore on DEL

    nl.check(cid, lab.pod.path, cni_args=args, runtime_config=rc)
    lab.pod.run("ip link set eth0 mtu 1500")
    with pytest.raises(CniError) as e:
        nl.check(cid, lab.pod.path, cni_args=args, runtime_config=rc)
    assert e.value.plugin == "tuning" and e.value.code == 999
    assert "MTU of eth0 is 1400, current value is 1500" in e.value.msg

    nl.delete(cid, lab.pod.path, cni_args=args, runtime_config=rc)
    assert set(links(lab.pod)) == {"lo"}
    assert list((lab.tmp / "tuning").iterdir()) == []
    assert lab.reservations() == {}
    nl.delete(cid, lab.pod.path, cni_args=args, runtime_config=rc)


def test_gc_deletes_stale_attachments(lab):
    """At 1.0.0 libcni's GC is only its own half: a DEL, with what the cache remembers, for
    every cached attachment of the network not in the valid list. STATUS does nothing."""
    pool = dict(V4, rangeEnd="10.22.0.11")
    nl = lab.network([lab.bridge_conf([pool])])
    keep, stale = container_id(), container_id()
    r_keep = nl.add(keep, lab.pod.path, cni_args=kubelet_args("default", "a", keep))
    r_stale = nl.add(stale, lab.pod2.path, cni_args=kubelet_args("default", "b", stale))
    stale_veth = r_stale["interfaces"][1]["name"]
    assert stale_veth in links(lab.host) and len(lab.reservations()) == 2

    nl.status()  # below 1.1.0: not run, the network counts as ready
    nl.gc([{"containerID": keep, "ifname": "eth0"}])

    assert stale_veth not in links(lab.host)
    assert set(links(lab.pod2)) == {"lo"}
    assert not (lab.cache / "results" / f"{NET}-{stale}-eth0").exists()
    assert list(lab.reservations()) == [r_keep["ips"][0]["address"].split("/")[0]]
    nl.check(keep, lab.pod.path, cni_args=kubelet_args("default", "a", keep))
    nl.gc([{"containerID": keep, "ifname": "eth0"}])  # nothing stale left: a no-op
    assert set(links(lab.pod)) == {"lo", "eth0"}

    nl.gc([])  # nothing valid: the last one goes too
    assert set(links(lab.pod)) == {"lo"} and lab.reservations() == {}
    assert list((lab.cache / "results").iterdir()) == []


def test_bad_input(lab):
    """Straight through invoke(): the error codes the reference plugins (skel of CNI 1.1.x)
    give, as observed:
      stdin not JSON (bridge, host-local)       6  "error unmarshall network config: ..."
      no CNI_COMMAND                            exit 0, nothing on stdout, the plugin's
                                                "about" text on stderr
      unknown CNI_COMMAND                       4  "unknown CNI_COMMAND: FOO"
      no CNI_CONTAINERID / CNI_NETNS / IFNAME   4  "required env variables [X] missing"
      cniVersion 1.1.0, 9.9.9 or x.y            1  "incompatible CNI versions"
      STATUS (1.1.0 env: no CNI_CONTAINERID)    3  "missing containerID": unknown verb, and
                                                   the container ID is checked first
      no "name" in the config                   7  "missing network name"
    Nothing may be created on the way."""
    conf = {"cniVersion": "1.0.0", "name": NET, **lab.bridge_conf([V4])}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": container_id(), "CNI_NETNS": lab.pod.path,
           "CNI_IFNAME": "eth0", "CNI_PATH": PLUGIN_DIR, "CNI_ARGS": ""}

    def run(env_changes, stdin, plugin="bridge"):
        e = {k: v for k, v in {**env, **env_changes}.items() if v is not None}
        return invoke(f"{PLUGIN_DIR}/{plugin}", e, stdin, host_netns=lab.host.name)

    def error(r):
        assert r.returncode == 1, r
        return json.loads(r.stdout)

    for plugin in ("bridge", "host-local"):
        err = error(run({}, "{not json", plugin))
        assert err["code"] == 6 and err["msg"].startswith("error unmarshall network config")

    r = run({"CNI_COMMAND": None}, json.dumps(conf))
    assert (r.returncode, r.stdout) == (0, "")
    assert "CNI protocol versions supported: " + ", ".join(REFERENCE_VERSIONS) in r.stderr

    assert error(run({"CNI_COMMAND": "FOO"}, json.dumps(conf))) == \
        {"code": 4, "msg": "unknown CNI_COMMAND: FOO"}
    for var in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
        assert error(run({var: None}, json.dumps(conf))) == \
            {"code": 4, "msg": f"required env variables [{var}] missing"}
    for version in ("1.1.0", "9.9.9", "x.y"):
        err = error(run({}, json.dumps(dict(conf, cniVersion=version))))
        assert err["code"] == 1 and err["msg"] == "incompatible CNI versions"
        assert f'config is "{version}"' in err["details"]
    status_env = {"CNI_COMMAND": "STATUS", "CNI_PATH": PLUGIN_DIR}
    r = invoke(f"{PLUGIN_DIR}/bridge", status_env, json.dumps(dict(conf, cniVersion="1.1.0")),
               host_netns=lab.host.name)
    assert error(r) == {"code": 3, "msg": "missing containerID"}
    no_name = {k: v for k, v in conf.items() if k != "name"}
    assert error(run({}, json.dumps(no_name))) == {"code": 7, "msg": "missing network name"}

    # The same through the harness: a 1.1.0 list fails ADD at the first plugin, and STATUS
    # (run from 1.1.0 on) reports the plugin's error
    nl = lab.network([lab.bridge_conf([V4])], version="1.1.0")
    with pytest.raises(CniError) as e:
        nl.add(container_id(), lab.pod.path)
    assert (e.value.code, e.value.plugin, e.value.verb) == (1, "bridge", "ADD")
    with pytest.raises(CniError) as e:
        nl.status()
    assert (e.value.code, e.value.plugin, e.value.verb) == (3, "bridge", "STATUS")

    assert set(links(lab.pod)) == {"lo"}
    assert set(links(lab.host)) == {"lo"}
    assert lab.reservations() == {}
    assert not (lab.cache / "results").exists()


def test_version(lab):
    nl = lab.network([lab.bridge_conf([V4])])
    for plugin in ("bridge", "host-local", "tuning"):
        info = nl.version(plugin)
        assert info == {"cniVersion": "1.0.0", "supportedVersions": REFERENCE_VERSIONS}
        assert nl.last_elapsed > 0
    with pytest.raises(CniError) as e:
        nl.version("no-such-plugin")
    assert e.value.plugin is None and "failed to find plugin" in e.value.msg


# --- the harness's side of the protocol, seen by a recording plugin --------------------------

FAKE_PLUGIN = r'''#!/usr/bin/python3
# Records each call (the environment as exec'd, read from /proc because Python may add
# LC_CTYPE to its own, and stdin) to calls.jsonl beside itself, then answers as the "fake"
# key of its config says: {"fail": {VERB: error}, "rc": exit code with it, "stdout": {VERB:
# raw text}}. ADD appends an interface named <type>-<ifname> to prevResult.
import json, os, sys
here = os.path.dirname(os.path.abspath(sys.argv[0]))
ptype = os.path.basename(sys.argv[0])
with open("/proc/self/environ", "rb") as f:
    env = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if e)
text = sys.stdin.read()
try:
    conf = json.loads(text)
except ValueError:
    conf = text
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({"plugin": ptype, "env": env, "stdin": conf}) + "\n")
cmd = env.get("CNI_COMMAND")
fake = conf.get("fake", {}) if isinstance(conf, dict) else {}
if cmd in fake.get("fail", {}):
    print(json.dumps(fake["fail"][cmd]))
    sys.exit(fake.get("rc", 1))
if cmd in fake.get("stdout", {}):
    sys.stdout.write(fake["stdout"][cmd])
elif cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}))
elif cmd == "ADD":
    res = dict(conf.get("prevResult") or {"ips": []}, cniVersion=conf["cniVersion"])
    res["interfaces"] = res.get("interfaces", []) + [
        {"name": ptype + "-" + env["CNI_IFNAME"], "sandbox": env["CNI_NETNS"]}]
    print(json.dumps(res))
'''

POD_NETNS = "/var/run/netns/fwdt-fake-pod"  # never opened: the fake plugin touches nothing
ATTACHMENT_ENV = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_ARGS", "CNI_IFNAME",
                  "CNI_PATH", "PATH"}


class Fake:
    def __init__(self, tmp):
        self.empty = tmp / "empty-bin"  # first in CNI_PATH: lookup must go on to the next
        self.bin = tmp / "fake-bin"
        self.empty.mkdir()
        self.bin.mkdir()
        for name in ("fakea", "fakeb"):
            p = self.bin / name
            p.write_text(FAKE_PLUGIN)
            p.chmod(0o755)
        self.log = self.bin / "calls.jsonl"
        self.cache = tmp / "cache"

    def network(self, conflist):
        return NetworkList(conflist, [self.empty, self.bin], self.cache)

    def calls(self):
        """The calls since the last look, as (type, verb, env, stdin)."""
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        self.log.unlink()
        out = []
        for line in lines:
            c = json.loads(line)
            out.append((c["plugin"], c["env"].get("CNI_COMMAND"), c["env"], c["stdin"]))
        return out


@pytest.fixture
def fake(tmpdir_short):
    return Fake(pathlib.Path(tmpdir_short))


def chain(version="1.0.0", b_extra=None, **extra):
    return {"cniVersion": version, "name": "fwdt-fake", **extra, "plugins": [
        {"type": "fakea", "name": "overwritten", "cniVersion": "0.1.0",
         "capabilities": {"portMappings": True, "mac": False}},
        {"type": "fakeb", "capabilities": {"mac": True}, **(b_extra or {})}]}


def test_harness_chain_add_check_del(fake):
    nl = fake.network(chain())
    cid = container_id()
    args = kubelet_args("default", "web-0", cid, uid="0d1b2c3d-0000-4000-8000-000000000001")
    rc = {"portMappings": [{"hostPort": 80}], "mac": "02:00:00:00:00:01", "bandwidth": {}}

    res = nl.add(cid, POD_NETNS, cni_args=args, runtime_config=rc)
    calls = fake.calls()
    assert [(c[0], c[1]) for c in calls] == [("fakea", "ADD"), ("fakeb", "ADD")]
    for _, _, env, conf in calls:
        assert set(env) == ATTACHMENT_ENV
        assert env["CNI_CONTAINERID"] == cid and env["CNI_NETNS"] == POD_NETNS
        assert env["CNI_IFNAME"] == "eth0"
        assert env["CNI_PATH"] == f"{fake.empty}:{fake.bin}"
        assert env["CNI_ARGS"] == (f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
                                   f"K8S_POD_INFRA_CONTAINER_ID={cid};"
                                   "K8S_POD_UID=0d1b2c3d-0000-4000-8000-000000000001")
        assert (conf["name"], conf["cniVersion"]) == ("fwdt-fake", "1.0.0")
    a_conf, b_conf = calls[0][3], calls[1][3]
    # runtimeConfig: only the declared and enabled capabilities the runtime sent
    assert a_conf["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert b_conf["runtimeConfig"] == {"mac": "02:00:00:00:00:01"}
    assert "prevResult" not in a_conf
    a_result = {"cniVersion": "1.0.0", "ips": [],
                "interfaces": [{"name": "fakea-eth0", "sandbox": POD_NETNS}]}
    assert b_conf["prevResult"] == a_result
    assert res["interfaces"] == a_result["interfaces"] + [{"name": "fakeb-eth0",
                                                           "sandbox": POD_NETNS}]
    cache_file = fake.cache / "results" / f"fwdt-fake-{cid}-eth0"
    entry = json.loads(cache_file.read_text())
    assert entry["result"] == res and entry["capabilityArgs"] == rc
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600"

    nl.check(cid, POD_NETNS, cni_args=args, runtime_config=rc)
    calls = fake.calls()
    assert [(c[0], c[1]) for c in calls] == [("fakea", "CHECK"), ("fakeb", "CHECK")]
    assert all(c[3]["prevResult"] == res and set(c[2]) == ATTACHMENT_ENV for c in calls)

    nl.delete(cid, "", cni_args=args, runtime_config=rc)  # the pod's netns may be gone
    calls = fake.calls()
    assert [(c[0], c[1]) for c in calls] == [("fakeb", "DEL"), ("fakea", "DEL")]
    assert all(c[3]["prevResult"] == res and c[2]["CNI_NETNS"] == "" for c in calls)
    assert calls[0][3]["runtimeConfig"] == {"mac": "02:00:00:00:00:01"}
    assert not cache_file.exists()
    nl.delete(cid, POD_NETNS)  # no cache entry left: no prevResult, an empty CNI_ARGS
    calls = fake.calls()
    assert len(calls) == 2 and all("prevResult" not in c[3] for c in calls)
    assert all(c[2]["CNI_ARGS"] == "" for c in calls)


def test_harness_errors(fake):
    cid = container_id()
    fail = {"fail": {"ADD": {"cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "x"}}}
    nl = fake.network(chain(b_extra={"fake": fail}))
    with pytest.raises(CniError) as e:
        nl.add(cid, POD_NETNS)
    assert (e.value.code, e.value.msg, e.value.details) == (7, "bad", "x")
    assert (e.value.plugin, e.value.rc, e.value.verb) == ("fakeb", 1, "ADD")
    # the chain stops; nothing is undone (that is the runtime's DEL) and nothing cached
    assert [(c[0], c[1]) for c in fake.calls()] == [("fakea", "ADD"), ("fakeb", "ADD")]
    assert not (fake.cache / "results").exists()

    # error JSON with exit 0, ADD output that is not JSON, an unknown result version
    for b_extra in ({"fake": dict(fail, rc=0)},
                    {"fake": {"stdout": {"ADD": "not json"}}},
                    {"fake": {"stdout": {"ADD": '{"cniVersion": "7.0.0"}'}}}):
        with pytest.raises(CniError) as e:
            fake.network(chain(b_extra=b_extra)).add(cid, POD_NETNS)
        assert e.value.plugin == "fakeb" and e.value.rc == 0
    fake.calls()
    # null is an empty result; a missing cniVersion is the config's
    res = fake.network(chain(b_extra={"fake": {"stdout": {"ADD": "null"}}})).add(cid, POD_NETNS)
    assert res == {"cniVersion": "1.0.0"}
    fake.calls()

    # libcni's checks before running anything: container ID, interface name, network name
    for bad_cid, ifname, code in (("", "eth0", 3), ("../x", "eth0", 4), ("c", "", 4),
                                  ("c", "a" * 16, 4), ("c", "a/b", 4), ("c", "..", 4)):
        with pytest.raises(CniError) as e:
            nl.add(bad_cid, POD_NETNS, ifname=ifname)
        assert e.value.code == code and e.value.plugin is None
    with pytest.raises(CniError) as e:
        fake.network(dict(chain(), name="bad name")).add(cid, POD_NETNS)
    assert e.value.code == 7
    with pytest.raises(CniError) as e:
        fake.network({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "nosuch"}]}) \
            .add(cid, POD_NETNS)
    assert e.value.plugin is None and "failed to find plugin" in e.value.msg
    assert fake.calls() == []


def test_harness_versions(fake):
    cid = container_id()
    # below 0.4.0: CHECK is an error and DEL gets no cached result
    nl = fake.network(chain(version="0.3.1"))
    nl.add(cid, POD_NETNS)
    fake.calls()
    with pytest.raises(CniError) as e:
        nl.check(cid, POD_NETNS)
    assert "does not support the CHECK command" in e.value.msg
    nl.delete(cid, POD_NETNS)
    calls = fake.calls()
    assert [c[1] for c in calls] == ["DEL", "DEL"]
    assert all("prevResult" not in c[3] for c in calls)

    # disableCheck: CHECK runs nothing
    nl = fake.network(chain(disableCheck=True))
    nl.add(cid, POD_NETNS)
    fake.calls()
    nl.check(cid, POD_NETNS)
    assert fake.calls() == []
    nl.delete(cid, POD_NETNS)
    fake.calls()

    # cniVersions: the highest not above 1.1.0, whatever the plugins support
    nl = fake.network(chain(cniVersions=["0.4.0", "1.1.0", "2.0.0"]))
    assert nl.cni_version == "1.1.0"
    nl.add(cid, POD_NETNS)
    assert [c[3]["cniVersion"] for c in fake.calls()] == ["1.1.0", "1.1.0"]
    nl.delete(cid, POD_NETNS)
    fake.calls()

    # a single network config is a one-plugin list with its name and version
    nl = fake.network({"cniVersion": "0.4.0", "name": "single", "type": "fakea"})
    assert (nl.name, nl.cni_version, [p["type"] for p in nl.plugins]) == \
        ("single", "0.4.0", ["fakea"])
    nl.add(cid, POD_NETNS)
    assert (fake.cache / "results" / f"single-{cid}-eth0").exists()
    nl.delete(cid, POD_NETNS)

    # VERSION: CNI_COMMAND only (and PATH), stdin {"cniVersion": "1.1.0"}
    fake.calls()
    assert nl.version("fakeb")["supportedVersions"] == ["1.0.0", "1.1.0"]
    [(_, verb, env, stdin)] = fake.calls()
    assert set(env) == {"CNI_COMMAND", "PATH"} and stdin == {"cniVersion": "1.1.0"}


def test_harness_status_gc(fake):
    nl = fake.network(chain(version="1.1.0"))
    nl.status()
    calls = fake.calls()
    assert [(c[0], c[1]) for c in calls] == [("fakea", "STATUS"), ("fakeb", "STATUS")]
    for _, _, env, conf in calls:
        assert set(env) == {"CNI_COMMAND", "CNI_PATH", "PATH"}
        assert (conf["name"], conf["cniVersion"]) == ("fwdt-fake", "1.1.0")
        assert "prevResult" not in conf and "runtimeConfig" not in conf

    # the first failing plugin is the answer (50: not available)
    down = {"fail": {"STATUS": {"cniVersion": "1.1.0", "code": 50, "msg": "daemon down"}}}
    conflist = chain(version="1.1.0")
    conflist["plugins"][0]["fake"] = down
    with pytest.raises(CniError) as e:
        fake.network(conflist).status()
    assert (e.value.code, e.value.plugin) == (50, "fakea")
    assert [c[0] for c in fake.calls()] == ["fakea"]

    keep, stale = container_id(), container_id()
    nl.add(keep, POD_NETNS, cni_args=kubelet_args("default", "a", keep))
    stale_args = kubelet_args("default", "b", stale)
    stale_res = nl.add(stale, POD_NETNS, ifname="net1", cni_args=stale_args,
                       runtime_config={"mac": "02:00:00:00:00:02"})
    fake.calls()
    valid = [{"containerID": keep, "ifname": "eth0"}]
    nl.gc(valid)
    calls = fake.calls()
    # a DEL for the stale attachment, with what the cache remembers, then GC to every plugin
    assert [(c[0], c[1]) for c in calls] == [("fakeb", "DEL"), ("fakea", "DEL"),
                                             ("fakea", "GC"), ("fakeb", "GC")]
    for _, _, env, conf in calls[:2]:
        assert env["CNI_CONTAINERID"] == stale and env["CNI_IFNAME"] == "net1"
        assert env["CNI_ARGS"].startswith("IgnoreUnknown=1;") and stale in env["CNI_ARGS"]
        assert conf["prevResult"] == stale_res
    assert calls[0][3]["runtimeConfig"] == {"mac": "02:00:00:00:00:02"}
    for _, _, env, conf in calls[2:]:
        assert set(env) == {"CNI_COMMAND", "CNI_PATH", "PATH"}
        assert conf["cni.dev/valid-attachments"] == valid and "prevResult" not in conf
    assert sorted(p.name for p in (fake.cache / "results").iterdir()) == \
        [f"fwdt-fake-{keep}-eth0"]

    # disableGC: nothing at all
    fake.network(chain(version="1.1.0", disableGC=True)).gc([])
    assert fake.calls() == []
    nl.delete(keep, POD_NETNS)
