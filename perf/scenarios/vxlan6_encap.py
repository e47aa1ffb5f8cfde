"""VXLAN encapsulation, IPv6: a local pod to a remote node's pod, 66 B frames (IPv6 + UDP
has no 64 B frame; ipv6-min's size) that leave with outer IPv6 headers (136 B). The overlay
comes from the IPAM store (harness/vxlan.py)."""
from harness.vxlan import VxlanScenario

SCENARIO = VxlanScenario(name="vxlan6-encap", title="VXLAN encap, IPv6, 66 B inner", family=6,
                         sizes=[(66, 1)], order=42, direction="encap")
