"""The full path (issues 16 and 21): a pod's established flows to the outside world through
every stage a Calico node puts on them -- anti-spoofing, 1,000 egress policy rules, conntrack,
natOutgoing SNAT, the LPM route -- beside l3fwd LPM (routing alone) and OVS-DPDK doing the same
job with 1,000 OpenFlow ACL rules, conntrack and NAT.

- **The pod.** Policy selects endpoints, and an endpoint is a pod port: the packets must come
  from one, not from the uplink (a packet from the uplink has no sending endpoint, so no egress
  policy applies to it, and natOutgoing only concerns pod -> outside, where the sender is the
  only endpoint). So the pod is a vhost-user endpoint (`endpoint.add` kind vhost-user, owner
  perf/client, IPv4 and IPv6 addresses in the node's local blocks), and a generator plays it:
  dpdk-testpmd in io mode on core 0 reads the scenario's pcap (`infinite_rx`) and sends it
  through `net_virtio_user` to the endpoint's socket. dpdk-fwd's uplink is `net_null` without
  RX (its TX frees and counts, as the pcap PMD's drop mode of every reference). The peers read the same pcap
  straight from their own pcap device: dpdk-fwd alone pays a vhost-user dequeue (a copy per
  packet) on its side, which a real pod costs too.
- **The policy** (the cluster store, as every node reads it: `fwdctl apply -f` into an embedded
  store with the natOutgoing pools, the pod record perf/client labelled app=perf-client, and a
  GlobalNetworkPolicy): 1,000 egress rules on the pod, the first 999 `Deny UDP to <one /32 or
  /128 no packet goes to> port 5201`, the last `Allow UDP port 5201`, which every flow of the
  set takes. A flow's first packet is classified against the rule set (rte_acl); later ones
  find the flow stamped with the rule set's generation and pass on the connection's state,
  as Felix's conntrack rule lets established flows pass before any policy.
- **The flows.** 4096 UDP flows from the pod's address to addresses outside every pool (the
  default route), source ports 1024 + i; the first pass of the set creates them, every later
  one finds them, and each window must show conntrack `created` 0 and `ok` for every packet
  (the established path, as nat4-established), and no drop above 1%.
- **The generator's pace.** testpmd drops what the vhost ring has no room for; the share of
  packets it read but could not send (`generator_full`) says who set the pace: above a few
  percent, dpdk-fwd did.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import shutil
import socket
import time
from pathlib import Path
from typing import Optional

from . import common, nat
from .common import Ctx, Unavailable

STORE_VERSION = 1
RULES = 1000
POD_NS, POD_NAME, POD_LABEL = "perf", "client", "perf-client"
POD_MAC = "02:00:0a:f4:ff:01"
POD_ID = "perf-client"
POD_HOST = 60                      # the pod's address: its local block's address 60 (unused)
GATEWAY_MAC = "ee:ee:ee:ee:ee:ee"  # what a Calico pod sends to (the gateway's MAC)
DPORT = nat.FLOW_DPORT
TESTPMD = "dpdk-testpmd"


def pod_address(family: int, seed: int) -> str:
    """The pod's address: in the first local block of the family's table, past its pods."""
    t = common.calico_table(family, 0, seed)
    blk = next(r.prefix for r in t.routes if r.kind == "local-block")
    return str(ipaddress.ip_network(blk).network_address + POD_HOST)


def deny_net(family: int, i: int) -> str:
    """Rule i's destination: an address no packet of the set goes to (100.64/10 and fd99::/64
    are outside nat.outside()'s ranges)."""
    if family == 4:
        return f"100.64.{i // 250}.{i % 250 + 1}/32"
    return f"fd99::{i + 1:x}/128"


def policy_doc(family: int) -> dict:
    egress = [{"action": "Deny", "protocol": "UDP",
               "destination": {"nets": [deny_net(family, i)], "ports": [DPORT]}}
              for i in range(RULES - 1)]
    egress.append({"action": "Allow", "protocol": "UDP", "destination": {"ports": [DPORT]}})
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"perf-full{family}"},
            "spec": {"selector": f"app == '{POD_LABEL}'", "types": ["Egress"],
                     "egress": egress}}


def build_store(ctx: Ctx, family: int) -> str:
    """The scenario's embedded store (once per scratch folder): the natOutgoing pools, the
    pod's record and the 1,000-rule policy, each applied with fwdctl apply -f."""
    d = ctx.scratch / f"full{family}-store-v{STORE_VERSION}"
    spec = f"embedded:{d}"
    if (d / "harness-ready").exists():
        return spec
    fwdctl = ctx.build / "control" / "fwdctl"
    if not fwdctl.is_file():
        raise Unavailable(f"{fwdctl} is missing: build dpdk-fwd first (ninja -C {ctx.build})")
    d.mkdir(parents=True, exist_ok=True)
    pools = ctx.scratch / f"full{family}-pools.yaml"
    pools.write_text(common.pools_yaml(nat.POOLS, "Never"))
    pod = ctx.scratch / f"full{family}-pod.json"
    pod.write_text(json.dumps({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": POD_NAME, "namespace": POD_NS,
                                            "labels": {"app": POD_LABEL}}}))
    pol = ctx.scratch / f"full{family}-policy.json"
    pol.write_text(json.dumps(policy_doc(family)))
    for f in (pools, pod, pol):
        common.run([str(fwdctl), "apply", "--store", spec, "-f", str(f)])
    (d / "harness-ready").write_text("")
    return spec


def api_call(sock: Path, op: str, **args) -> dict:
    """One request on the daemon's API socket (a JSON line each way)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    try:
        s.connect(str(sock))
        f = s.makefile("rwb")
        f.write((json.dumps({"id": 1, "op": op, "args": args}) + "\n").encode())
        f.flush()
        reply = json.loads(f.readline())
    finally:
        s.close()
    if not reply.get("ok"):
        raise Unavailable(f"{op}: {reply.get('error')}")
    return reply["result"]


def generator_stats(prefix: str) -> dict:
    """Packets the pod's generator read from its pcap device (port 0) and sent to the pod's
    port (port 1)."""
    read = common.telemetry(prefix, "/ethdev/stats,0")["/ethdev/stats"]
    sent = common.telemetry(prefix, "/ethdev/stats,1")["/ethdev/stats"]
    return {"read": read["ipackets"], "sent": sent["opackets"]}


@dataclasses.dataclass
class FullPathScenario(nat.NatEstablishedScenario):
    def __post_init__(self):
        super().__post_init__()
        self.references = ("dpdk-fwd", "testpmd-io", "l3fwd-lpm", "ovs-dpdk")
        self._gen: Optional[common.Generator] = None

    def traffic(self) -> str:
        fam = "IPv4" if self.family == 4 else "IPv6"
        return (f"{self.packets} {fam} UDP packets, one flow each (set replayed: every flow "
                f"established before the window), from one pod "
                f"({pod_address(self.family, self.seed)}) to addresses outside every pool "
                f"(default route), source ports 1024 + i. dpdk-fwd takes them from the pod's "
                f"vhost-user port (testpmd io on core 0 replays the set into it) and applies "
                f"anti-spoofing, the pod's {RULES} egress rules (the allowing one last; "
                f"classified on a flow's first packet, later ones pass on its state), "
                f"conntrack, natOutgoing SNAT to the node's address and the LPM route; "
                f"OVS-DPDK does the same with {RULES} OpenFlow ACL rules, ct and nat; "
                f"l3fwd and testpmd only route / echo the set from their pcap device")

    def targets(self):
        return [("l3fwd-lpm", 0.5, "full path at least 0.5x l3fwd LPM, issues 16 and 21"),
                ("ovs-dpdk", 3.0, "3x OVS-DPDK with 1,000 rules + ct + NAT, issues 16 and 21")]

    pcap_tag = f"full-{POD_HOST}-{POD_MAC}"

    def packet_macs(self) -> tuple[str, str]:
        """The pod's frames: to the Calico gateway's MAC."""
        return POD_MAC, GATEWAY_MAC

    def packet_sources(self, t: common.Table) -> list[str]:
        """Every packet from the one pod."""
        return [pod_address(self.family, self.seed)] * len(t.destinations)

    # -- dpdk-fwd: the store, the pod, the generator -----------------------------------------
    def vhost_socket(self, fwd) -> Path:
        return fwd.dir / f"{POD_ID}.sock"

    def dpdkfwd_config(self, ctx: Ctx, cfg: dict, fwd) -> None:
        super().dpdkfwd_config(ctx, cfg, fwd)
        cfg["ipam"]["store"] = build_store(ctx, self.family)
        # nothing comes from the outside: net_null without RX (an empty pcap's RX costs a
        # read of its end of file each poll, ~30 instructions a packet); its TX frees and
        # counts, as the pcap PMD's drop mode
        cfg["uplink"]["devargs"] = "net_null0,no-rx=1"
        sock = self.vhost_socket(fwd)
        if sock.exists():
            sock.unlink()

    def dpdkfwd_ready(self, ctx: Ctx, fwd, timeout: float) -> None:
        super().dpdkfwd_ready(ctx, fwd, timeout)     # natOutgoing on, both pools
        if shutil.which(TESTPMD) is None:
            raise Unavailable(f"{TESTPMD} is missing (Debian package dpdk)")
        api = fwd.dir / "api.sock"
        v4, v6 = pod_address(4, self.seed), pod_address(6, self.seed)
        # the pod as the CNI plugin attaches it: its owner names its record in the store
        api_call(api, "endpoint.add", id=POD_ID, kind="vhost-user", mac=POD_MAC, ipv4=v4,
                 ipv6=v6, vhost_socket=str(self.vhost_socket(fwd)),
                 owner={"namespace": POD_NS, "pod": POD_NAME})
        # returns once a build started after the call is enforced: the pod's class in it
        api_call(api, "policy.sync", timeout_ms=int(timeout * 1000))
        ep = api_call(api, "policy.endpoint", pod=f"{POD_NS}/{POD_NAME}")
        egress = (ep.get("egress") or {}).get("policies") or []
        rules = sum(len(p.get("rules", [])) for p in egress)
        if not ep.get("local") or rules != RULES:
            raise Unavailable(f"the pod's policy is not enforced: policy.endpoint shows local "
                              f"{ep.get('local')}, {rules} egress rules (want {RULES})")
        self._start_generator(ctx, fwd)

    def _start_generator(self, ctx: Ctx, fwd) -> None:
        """testpmd io on core 0 (two lcores on one CPU: testpmd's main one sleeps): the pcap
        device's packets out of the virtio-user device, the pod's side of the vhost port."""
        self._gen = common.Generator("the pod's generator (testpmd)",
                                     f"pg{time.monotonic_ns() % 10**8}g", generator_stats)
        argv = [shutil.which(TESTPMD),
                "--lcores", f"0@{common.MAIN_CORE},1@{common.MAIN_CORE}", "--in-memory",
                "--single-file-segments", "--no-pci", "-m", "256",
                "--file-prefix", self._gen.prefix, "--log-level=*:warning",
                "--vdev", f"net_pcap0,rx_pcap={ctx.pcap},infinite_rx=1",
                "--vdev", f"net_virtio_user0,path={self.vhost_socket(fwd)},mac={POD_MAC},"
                          f"queues=1,queue_size=1024",
                "--", "--forward-mode=io", "--nb-cores=1", "--burst=32", "--auto-start",
                "--stats-period=3600", "--no-lsc-interrupt", "--no-mlockall",
                "--total-num-mbufs=16384"]
        self._gen.start(argv, ctx.scratch / f"generator-{self.name}.log")

    def dpdkfwd_rx(self, st: dict) -> int:
        """What dpdk-fwd took in: the pod's port, not the uplink."""
        return sum(p["rx_packets"] for p in st["ports"] if p["kind"] != "uplink")

    def dpdkfwd_counters(self, fwd, st: dict) -> None:
        if self._gen is not None:
            self._gen.mark()

    def dpdkfwd_window(self, fwd, extra: dict) -> None:
        super().dpdkfwd_window(fwd, extra)           # established flows only
        win = self._gen.window() if self._gen is not None else None
        if win:
            a, b = win
            read, sent = b["read"] - a["read"], b["sent"] - a["sent"]
            extra["pod_generator"] = {"read": read, "sent": sent,
                                      "full_share": round(1 - sent / read, 4) if read else None}
        # the rule that allowed the flows: the last of the policy's egress rules
        try:
            stats = api_call(fwd.dir / "api.sock", "policy.stats")
            allow = [r for r in stats["rules"] if r["direction"] == "Egress"
                     and r["rule"] == RULES - 1 and r["current"]]
            extra["policy"] = {"allow_rule_packets": sum(r["packets"] for r in allow),
                               "rules_counted": sum(1 for r in stats["rules"] if r["current"])}
        except (OSError, KeyError, ValueError, Unavailable):
            pass

    def dpdkfwd_stop(self, fwd) -> None:
        if self._gen is not None:
            self._gen.stop()
            self._gen = None

    # -- OVS-DPDK: the same job in OpenFlow ----------------------------------------------------
    def ovs_flow_lines(self, table: common.Table) -> tuple[list[str], str]:
        """OVN's stateful ACL pipeline, with Calico's rules:
        table 0  the pod's source only (anti-spoofing: other sources miss and drop),
                 ct(zone=1,nat,table=1): the connection's state, an established one's SNAT
                 applied;
        table 1  +est -> table 3 (the route); +new -> table 2 (the ACL);
        table 2  the 1,000 rules: 999 `udp, <ip>_dst=<deny net>, tp_dst=5201 -> drop` at
                 falling priorities, the last `udp, tp_dst=5201 ->
                 ct(commit,zone=1,nat(src=NODE),table=3)` (commit and SNAT on the allowing
                 rule, as the ACL's allow-related does);
        table 3  the route rules (one per route: MACs, dec_ttl, back out)."""
        from .ovs import flow_lines
        fam = self.family
        if fam == 4:
            ip, udp, src, dst, node = "ip", "udp", "nw_src", "nw_dst", nat.NODE_ADDR[4]
        else:
            ip, udp, src, dst = "ipv6", "udp6", "ipv6_src", "ipv6_dst"
            node = f"[{nat.NODE_ADDR[6]}]"
        pod = pod_address(fam, self.seed)
        lines = [f"table=0,priority=100,{ip},{src}={pod},actions=ct(zone=1,nat,table=1)",
                 f"table=1,priority=100,ct_state=+trk+est,{ip},actions=resubmit(,3)",
                 f"table=1,priority=100,ct_state=+trk+new,{ip},actions=resubmit(,2)"]
        for i in range(RULES - 1):
            net = deny_net(fam, i).split("/")[0]
            lines.append(f"table=2,priority={10000 - i},{udp},{dst}={net},tp_dst={DPORT},"
                         f"actions=drop")
        lines.append(f"table=2,priority=1,{udp},tp_dst={DPORT},"
                     f"actions=ct(commit,zone=1,nat(src={node}),table=3)")
        routes = flow_lines(table)
        lines += [f"table=3,{line}" for line in routes]
        note = (f"full path flows: table 0 takes the pod's source only ({pod}) into "
                f"ct(zone=1,nat,table=1); table 1 sends +est to the routes (table 3) and +new "
                f"to the ACL (table 2): {RULES - 1} drop rules (UDP to one address each, port "
                f"{DPORT}), then the allowing rule ct(commit,zone=1,nat(src={node}),table=3); "
                f"table 3 holds the {len(routes)} route rules")
        return lines, note
