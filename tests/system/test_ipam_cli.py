"""fwdctl ipam show / check / release and fwdctl apply / delete -f, run as the real binary
against a real IPAM store: the embedded one in a temporary directory and a real etcd (every
test runs on both). No daemon: fwdctl opens the store itself, as calicoctl does.

Addresses come from the ipam_load tool (the real allocator in its own process); its pools are
load-v4 10.128.0.0/16 and load-v6 fd00:128::/112. An inconsistency for `ipam check` is made
by deleting a handle record behind the allocator's back: etcdctl on etcd, an appended journal
record on the embedded store (its format is in embedded_store.hpp)."""
import fcntl
import itertools
import json
import os
import pathlib
import struct
import subprocess
import zlib

import pytest

from fwdlab import BUILD, FWDCTL, RUN_ID, Etcd

IPAM_LOAD = BUILD / "ipam" / "tools" / "ipam_load"
KEYS = "/dpdk-fwd/ipam/v1/"  # the allocator's key prefix, under the store's own prefix

V1_POOL = """\
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: crd-v4
  resourceVersion: "1234"
spec:
  cidr: 10.20.0.0/16
  blockSize: 28
  ipipMode: Never
  vxlanMode: CrossSubnet
  natOutgoing: false
  nodeSelector: all()
"""

V3_POOLS = """\
# an IPv6 pool and the IPAM configuration, as calicoctl takes them
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: v3-v6
spec:
  cidr: fd00:20::/64
  natOutgoing: true
  allowedUses: [Workload]
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: default
spec:
  strictAffinity: false
  maxBlocksPerHost: 8
"""


class EmbeddedStore:
    def __init__(self, path):
        self.dir = pathlib.Path(path)
        self.spec = f"embedded:{self.dir}"

    def delete_key(self, key):
        """Deletes KEYS + key as one committed journal record: [u32 len][u32 crc32]
        [u64 revision][u32 op count][u8 1 = delete][u32 key length][key], little-endian,
        under the store's exclusive lock."""
        with open(self.dir / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            journal = (self.dir / "journal").read_bytes()
            pos, rev = 0, 0
            while len(journal) - pos >= 8:
                length, crc = struct.unpack_from("<II", journal, pos)
                payload = journal[pos + 8:pos + 8 + length]
                assert len(payload) == length and zlib.crc32(payload) == crc, "torn journal"
                rev = struct.unpack_from("<Q", payload)[0]
                pos += 8 + length
            assert rev > 0, "the journal was compacted: no revision to follow"
            k = (KEYS + key).encode()
            payload = struct.pack("<QIBI", rev + 1, 1, 1, len(k)) + k
            with open(self.dir / "journal", "ab") as f:
                f.write(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
                f.flush()
                os.fsync(f.fileno())


class EtcdPrefixStore:
    def __init__(self, etcd, prefix):
        self.etcd = etcd
        self.prefix = prefix
        self.spec = etcd.spec(prefix)

    def delete_key(self, key):
        r = subprocess.run(["etcdctl", "--endpoints", self.etcd.url, "del",
                            self.prefix + KEYS + key],
                           capture_output=True, text=True, timeout=30,
                           env={**os.environ, "ETCDCTL_API": "3"})
        assert r.returncode == 0 and r.stdout.strip() == "1", r.stdout + r.stderr


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    e = Etcd(tmp_path_factory.mktemp("etcd")).start()
    yield e
    e.stop()


_prefixes = itertools.count()


@pytest.fixture(params=["embedded", "etcd"])
def store(request, tmp_path):
    if request.param == "embedded":
        return EmbeddedStore(tmp_path / "ipam")
    # One etcd for the module; each test under its own key prefix.
    return EtcdPrefixStore(request.getfixturevalue("etcd"), f"/t{RUN_ID}-{next(_prefixes)}")


def fwdctl(store, *args, stdin=None, check=True):
    env = {k: v for k, v in os.environ.items() if k != "FWD_IPAM_STORE"}
    r = subprocess.run([str(FWDCTL), *args, "--store", store.spec], input=stdin,
                       capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert r.returncode == 0, f"fwdctl {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def fwdctl_json(store, *args):
    return json.loads(fwdctl(store, *args, "--json").stdout)


def apply(store, tmp_path, name, text, check=True):
    path = tmp_path / name
    path.write_text(text)
    return fwdctl(store, "apply", "-f", str(path), check=check)


def pools(store):
    return {p["name"]: p for p in fwdctl_json(store, "ipam", "show")["pools"]}


def load(store, node, count, prefix, dual=True):
    args = [str(IPAM_LOAD), "--store", store.spec, "--node", node, "--count", str(count),
            "--handle-prefix", prefix]
    r = subprocess.run(args + (["--dual"] if dual else []), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_apply_v1_and_v3_then_show(store, tmp_path):
    r = apply(store, tmp_path, "v1.yaml", V1_POOL)
    assert r.stdout == "IPPool 'crd-v4' created\n"
    r = apply(store, tmp_path, "v3.yaml", V3_POOLS)
    assert r.stdout == "IPPool 'v3-v6' created\nIPAMConfiguration 'default' updated\n"

    shown = fwdctl_json(store, "ipam", "show")
    assert shown["config"] == {"strictAffinity": False, "maxBlocksPerHost": 8}
    p = {x["name"]: x for x in shown["pools"]}
    assert set(p) == {"crd-v4", "v3-v6"}
    assert p["crd-v4"]["cidr"] == "10.20.0.0/16"
    assert p["crd-v4"]["blockSize"] == 28
    assert p["crd-v4"]["vxlanMode"] == "CrossSubnet"
    assert p["crd-v4"]["natOutgoing"] is False
    assert p["crd-v4"]["capacity"] == 65536
    assert p["crd-v4"]["used"] == 0 and p["crd-v4"]["blocks"] == 0
    assert p["v3-v6"]["blockSize"] == 122  # the IPv6 default
    assert p["v3-v6"]["natOutgoing"] is True
    assert p["v3-v6"]["allowedUses"] == ["Workload"]
    assert p["v3-v6"]["capacity"] == str(2 ** 64)  # past 64 bits: a decimal string
    assert shown["blocks"] == []

    text = fwdctl(store, "ipam", "show").stdout
    assert "maxBlocksPerHost 8" in text
    header = next(line for line in text.splitlines() if line.startswith("POOL"))
    for col in ("CIDR", "BLOCK-SIZE", "BLOCKS", "USED", "CAPACITY", "NAT-OUTGOING", "VXLAN"):
        assert col in header
    row = next(line.split() for line in text.splitlines() if line.startswith("crd-v4 "))
    assert row[:3] == ["crd-v4", "10.20.0.0/16", "28"]
    assert "CrossSubnet" in row

    # The same files again change nothing.
    assert apply(store, tmp_path, "v1.yaml", V1_POOL).stdout == "IPPool 'crd-v4' unchanged\n"


def test_apply_updates_and_refuses_immutable_fields_all_or_nothing(store, tmp_path):
    apply(store, tmp_path, "v1.yaml", V1_POOL)
    apply(store, tmp_path, "v3.yaml", V3_POOLS)
    before = pools(store)

    r = apply(store, tmp_path, "nat.yaml", V1_POOL.replace("natOutgoing: false",
                                                           "natOutgoing: true"))
    assert r.stdout == "IPPool 'crd-v4' updated\n"
    after = pools(store)
    assert after["crd-v4"]["natOutgoing"] is True
    assert after["v3-v6"] == before["v3-v6"]

    # Document 1 would be a valid update; document 2 changes a cidr: nothing is written.
    text = (V1_POOL.replace("vxlanMode: CrossSubnet", "vxlanMode: Always") + "---\n"
            + V3_POOLS.replace("fd00:20::/64", "fd00:21::/64"))
    r = apply(store, tmp_path, "moved.yaml", text, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    assert "moved.yaml" in r.stderr and "document 2" in r.stderr, r.stderr
    assert "IPPool 'v3-v6'" in r.stderr and "spec.cidr" in r.stderr, r.stderr
    assert "cannot change after creation" in r.stderr, r.stderr
    assert pools(store) == after

    r = apply(store, tmp_path, "bs.yaml", V1_POOL.replace("blockSize: 28", "blockSize: 27"),
              check=False)
    assert r.returncode == 1 and "spec.blockSize" in r.stderr, r.stderr
    assert pools(store) == after

    # JSON on stdin; the IPAM configuration back to its defaults by delete -f.
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
           "metadata": {"name": "json-v4"}, "spec": {"cidr": "10.30.0.0/24", "disabled": True}}
    r = fwdctl(store, "apply", "-f", "-", "--json", stdin=json.dumps(doc))
    assert json.loads(r.stdout)["resources"] == [
        {"kind": "IPPool", "name": "json-v4", "action": "created", "document": 1}]
    assert pools(store)["json-v4"]["disabled"] is True
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(V3_POOLS.split("---\n")[1])
    fwdctl(store, "delete", "-f", str(cfg))
    assert fwdctl_json(store, "ipam", "show")["config"] == {"strictAffinity": False,
                                                            "maxBlocksPerHost": 0}


def test_show_check_release_delete_with_allocations(store, tmp_path):
    load(store, "node-a", 3, "a")            # a-0..a-2: IPv4 + IPv6 each, node-a's blocks
    load(store, "node-b", 2, "b", dual=False)

    node = fwdctl_json(store, "ipam", "show", "--node", "node-a")
    assert {b["node"] for b in node["blocks"]} == {"node-a"}
    assert {b["state"] for b in node["blocks"]} == {"confirmed"}
    assert sorted(b["pool"] for b in node["blocks"]) == ["load-v4", "load-v6"]
    assert len(node["allocations"]) == 6
    assert all(a["node"] == "node-a" and not a["borrowed"] for a in node["allocations"])
    text = fwdctl(store, "ipam", "show", "--node", "node-a").stdout
    assert "node node-a: 2 block(s), 6 address(es), 0 borrowed" in text
    assert "node-b" not in text

    usage = pools(store)
    assert usage["load-v4"]["used"] == 5 and usage["load-v6"]["used"] == 3
    assert usage["load-v4"]["blocks"] == 2

    held = fwdctl_json(store, "ipam", "show", "--handle", "a-1")["addresses"]
    assert len(held) == 2
    v4 = next(a["address"] for a in held if ":" not in a["address"])
    v6 = next(a["address"] for a in held if ":" in a["address"])
    assert v4.startswith("10.128.") and v6.startswith("fd00:128:")
    assert fwdctl(store, "ipam", "show", "--handle", "a-1").stdout.count("a-1") == 2

    who = fwdctl_json(store, "ipam", "show", "--ip", v4)
    assert who["allocated"] is True
    assert (who["handle"], who["namespace"], who["pod"], who["node"]) == (
        "a-1", "load", "pod-1", "node-a")
    assert who["pool"] == "load-v4" and who["blockAffinity"] == "node-a"
    assert who["borrowed"] is False
    text = fwdctl(store, "ipam", "show", "--ip", v6).stdout
    assert f"{v6} is allocated to handle a-1" in text and "load/pod-1" in text

    # Clean, then a handle record deleted behind the allocator's back.
    r = fwdctl(store, "ipam", "check")
    assert r.stdout.startswith("IPAM is consistent: 2 pool(s), 3 block(s), 8 allocated")
    assert fwdctl_json(store, "ipam", "check")["consistent"] is True
    store.delete_key("handles/a-2")
    r = fwdctl(store, "ipam", "check", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "missing-handle" in r.stdout and "a-2" in r.stdout
    assert "2 problem(s)" in r.stdout, r.stdout  # one per block (IPv4 and IPv6)
    r = fwdctl(store, "ipam", "check", "--json", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    found = json.loads(r.stdout)
    assert found["consistent"] is False
    assert {(f["kind"], f["subject"]) for f in found["findings"]} == {("missing-handle", "a-2")}

    # release --handle mends it: the addresses go even without their handle record.
    r = fwdctl(store, "ipam", "release", "--handle", "a-2")
    assert r.stdout == "released 2 address(es) of handle a-2\n"
    assert fwdctl(store, "ipam", "check").returncode == 0

    # release --ip: all or nothing.
    r = fwdctl(store, "ipam", "release", "--ip", v4, "--ip", "10.128.0.200", check=False)
    assert r.returncode == 1 and "10.128.0.200 is not allocated" in r.stderr, r.stderr
    assert fwdctl_json(store, "ipam", "show", "--ip", v4)["allocated"] is True
    r = fwdctl(store, "ipam", "release", "--ip", v4, "--ip", v6)
    assert r.stdout.count("released") == 2 and "handle a-1" in r.stdout
    assert fwdctl_json(store, "ipam", "show", "--ip", v4)["allocated"] is False
    assert "is not allocated" in fwdctl(store, "ipam", "show", "--ip", v4).stdout
    r = fwdctl(store, "ipam", "release", "--ip", v4, check=False)
    assert r.returncode == 1 and "is not allocated" in r.stderr
    r = fwdctl(store, "ipam", "release", "--handle", "no-such-handle", check=False)
    assert r.returncode == 1 and "no-such-handle is unknown" in r.stderr

    # delete -f refuses a pool that still holds addresses, and deletes nothing.
    doomed = tmp_path / "load.yaml"
    doomed.write_text("apiVersion: projectcalico.org/v3\nkind: List\nitems:\n"
                      "- {apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: load-v6},"
                      " spec: {cidr: 'fd00:128::/112', blockSize: 122}}\n"
                      "- {apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: load-v4},"
                      " spec: {cidr: 10.128.0.0/16}}\n")
    fwdctl(store, "ipam", "release", "--handle", "a-0")
    r = fwdctl(store, "delete", "-f", str(doomed), check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "item 2, IPPool 'load-v4'" in r.stderr and "still has 2 allocated" in r.stderr
    assert "load-v6" not in r.stderr  # empty now: its only blocker is the other pool
    assert set(pools(store)) == {"load-v4", "load-v6"}
    for h in ("b-0", "b-1"):
        fwdctl(store, "ipam", "release", "--handle", h)
    r = fwdctl(store, "delete", "-f", str(doomed))
    assert r.stdout == "IPPool 'load-v6' deleted\nIPPool 'load-v4' deleted\n"
    assert pools(store) == {}
    assert fwdctl(store, "ipam", "check").returncode == 0


BAD_INPUTS = {
    "unknown kind": ("apiVersion: projectcalico.org/v3\nkind: IPPoool\nmetadata: {name: x}\n",
                     "unknown kind 'IPPoool'"),
    "unknown apiVersion": ("apiVersion: projectcalico.org/v2\nkind: IPPool\nmetadata: {name: x}\n"
                           "spec: {cidr: 10.40.0.0/16}\n", "unknown apiVersion"),
    "bad YAML": ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: [x\n",
                 "bad YAML"),
    "bad JSON": ('{"apiVersion": "projectcalico.org/v3", "kind": "IPPool",}', "bad JSON"),
    "bad blockSize": (V1_POOL.replace("blockSize: 28", "blockSize: 12"), "spec.blockSize"),
    "overlap in file": (V1_POOL + "---\n" + V1_POOL.replace("crd-v4", "other"),
                        "overlaps pool"),
    "unknown field": (V1_POOL.replace("natOutgoing", "natOutgoin"), "spec.natOutgoin"),
    "bad node address": ("apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: nx}\n"
                         "spec: {bgp: {ipv4Address: 10.0.0.1/40}}\n",
                         "Node 'nx': spec.bgp.ipv4Address: '10.0.0.1/40': prefix length"),
    "node of the CRD group": ("apiVersion: crd.projectcalico.org/v1\nkind: Node\n"
                              "metadata: {name: nx}\n", "for Node (want projectcalico.org/v3)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_writes_nothing(store, tmp_path, case):
    apply(store, tmp_path, "v3.yaml", V3_POOLS)
    before = fwdctl_json(store, "ipam", "show")
    text, message = BAD_INPUTS[case]
    # A valid pool first: all or nothing means it is not written either.
    r = apply(store, tmp_path, "bad.yaml",
              V3_POOLS.split("---\n")[0].replace("v3-v6", "extra").replace("fd00:20", "fd00:30")
              + "---\n" + text if not text.startswith("{") else text, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    assert "bad.yaml" in r.stderr and message in r.stderr, r.stderr
    assert fwdctl_json(store, "ipam", "show") == before


# ---- Node: the node registry's records, as calicoctl writes Calico's ----

NODES = """\
apiVersion: projectcalico.org/v3
kind: NodeList
items:
- metadata: {name: node-a, labels: {zone: a}}
  spec:
    bgp: {ipv4Address: 10.10.10.11/24, ipv6Address: "fd00:10:10::11/64"}
- metadata: {name: node-b}
  spec:
    bgp: {ipv4Address: 10.10.10.12/24}
    vxlanTunnelMACAddr: "66:00:00:00:00:0b"
"""


def test_apply_and_delete_nodes(store, tmp_path):
    r = apply(store, tmp_path, "nodes.yaml", NODES)
    assert r.stdout == "Node 'node-a' created\nNode 'node-b' created\n", r.stdout + r.stderr
    r = fwdctl(store, "apply", "-f", str(tmp_path / "nodes.yaml"), "--json")
    assert [(x["kind"], x["name"], x["action"]) for x in json.loads(r.stdout)["resources"]] == \
        [("Node", "node-a", "unchanged"), ("Node", "node-b", "unchanged")]
    # node-b moves; a pool in the same file goes in too
    moved = NODES.replace("10.10.10.12/24", "10.10.10.13/24")
    r = apply(store, tmp_path, "moved.yaml", V1_POOL + "---\n" + moved)
    assert r.stdout == ("IPPool 'crd-v4' created\nNode 'node-a' unchanged\n"
                        "Node 'node-b' updated\n"), r.stdout
    # node-b's old address is free again, its new one is not
    r = apply(store, tmp_path, "cd.yaml",
              "apiVersion: projectcalico.org/v3\nkind: NodeList\nitems:\n"
              "- metadata: {name: node-c}\n  spec: {bgp: {ipv4Address: 10.10.10.12/24}}\n"
              "- metadata: {name: node-d}\n  spec: {bgp: {ipv4Address: 10.10.10.13/24}}\n",
              check=False)
    assert r.returncode == 1 and "item 2, Node 'node-d': node 'node-d': spec.bgp.ipv4Address: " \
        "IPv4 address 10.10.10.13 is already held by node 'node-b'" in r.stderr, r.stderr
    r = fwdctl(store, "delete", "-f", str(tmp_path / "nodes.yaml"))
    assert r.stdout == "Node 'node-a' deleted\nNode 'node-b' deleted\n", r.stdout
    r = fwdctl(store, "delete", "-f", str(tmp_path / "nodes.yaml"), check=False)
    assert r.returncode == 1 and "no node named 'node-a' in the registry" in r.stderr, r.stderr
    assert "crd-v4" in pools(store)


def test_conflicting_node_is_refused_and_writes_nothing(store, tmp_path):
    apply(store, tmp_path, "nodes.yaml", NODES)
    # a pool and two nodes: the second holds node-a's address, so nothing is written
    text = (V1_POOL + "---\napiVersion: projectcalico.org/v3\nkind: Node\n"
            "metadata: {name: node-c}\nspec: {bgp: {ipv4Address: 10.10.10.21/24}}\n"
            "---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node-d}\n"
            "spec: {bgp: {ipv4Address: 10.10.10.11/16}}\n")
    r = apply(store, tmp_path, "bad.yaml", text, check=False)
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert "bad.yaml:19: document 3, Node 'node-d': node 'node-d': spec.bgp.ipv4Address: IPv4 " \
        "address 10.10.10.11 is already held by node 'node-a' (spec.bgp.ipv4Address)" \
        in r.stderr, r.stderr
    assert "nothing was written" in r.stderr
    assert "crd-v4" not in pools(store)
    r = fwdctl(store, "apply", "-f", str(tmp_path / "nodes.yaml"), "--json")
    assert all(x["action"] == "unchanged" for x in json.loads(r.stdout)["resources"])
    # node-c was not written either: applied alone, it is created
    r = apply(store, tmp_path, "c.yaml", text.split("---\n")[1])
    assert r.stdout == "Node 'node-c' created\n", r.stdout


def test_ipam_load_lays_out_blocks_and_addresses(store, tmp_path):
    """ipam_load --claim / --ip: another node's blocks and fixed addresses, in the store's
    own pools (the perf harness's remote nodes)."""
    apply(store, tmp_path, "v1.yaml", V1_POOL)    # 10.20.0.0/16 in /28 blocks

    def layout(*args):
        return subprocess.run([str(IPAM_LOAD), "--store", store.spec, *args],
                              capture_output=True, text=True, timeout=120)

    r = layout("--node", "n1", "--claim", "10.20.0.16/28", "--claim", "10.20.0.32/28",
               "--ip", "10.20.0.17", "--ip", "10.20.0.33", "--handle-prefix", "n1-pod")
    assert r.returncode == 0 and json.loads(r.stdout) == {"claimed": 2, "allocated": 2}, \
        r.stdout + r.stderr
    shown = fwdctl_json(store, "ipam", "show", "--node", "n1")
    assert [(b["cidr"], b["state"], b["used"]) for b in shown["blocks"]] == \
        [("10.20.0.16/28", "confirmed", 1), ("10.20.0.32/28", "confirmed", 1)]
    assert sorted((a["address"], a["handle"], a["borrowed"]) for a in shown["allocations"]) == \
        [("10.20.0.17", "n1-pod-0", False), ("10.20.0.33", "n1-pod-1", False)]
    assert "load-v4" not in pools(store)     # no load pools in this mode
    r = layout("--node", "n2", "--claim", "10.20.0.16/28")
    assert r.returncode == 1 and "held by another node" in r.stderr, r.stderr
    r = layout("--node", "n2", "--ip", "10.20.0.17", "--handle-prefix", "n2")
    assert r.returncode != 0, r.stdout
    fwdctl(store, "ipam", "check")


def test_missing_file_and_unreachable_store(store, tmp_path):
    r = fwdctl(store, "apply", "-f", str(tmp_path / "nope.yaml"), check=False)
    assert r.returncode == 2 and "cannot read" in r.stderr and "nope.yaml" in r.stderr
    r = subprocess.run([str(FWDCTL), "ipam", "show", "--store", "etcd:http://127.0.0.1:1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "IPAM store" in r.stderr, r.stderr
    r = subprocess.run([str(FWDCTL), "ipam", "check", "--store", "nowhere"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "want embedded:<dir> or etcd:" in r.stderr, r.stderr
    # The environment names the store when --store is not given.
    r = subprocess.run([str(FWDCTL), "ipam", "show", "--json"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "FWD_IPAM_STORE": store.spec})
    assert r.returncode == 0 and json.loads(r.stdout)["pools"] == [], r.stderr
