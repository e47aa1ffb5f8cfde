"""VXLAN encapsulation, IPv4: a local pod to a remote node's pod, 64 B frames that leave
with outer IPv4 headers (114 B). The overlay comes from the IPAM store (harness/vxlan.py)."""
from harness.vxlan import VxlanScenario

SCENARIO = VxlanScenario(name="vxlan4-encap", title="VXLAN encap, IPv4, 64 B inner", family=4,
                         sizes=[(64, 1)], order=40, direction="encap")
