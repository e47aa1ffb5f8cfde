"""VXLAN decapsulation, IPv6: a remote node's pod to a local pod, VXLAN over IPv6 (136 B)
around 66 B frames (IPv6 + UDP has no 64 B frame), which leave decapsulated. The overlay
comes from the IPAM store (harness/vxlan.py)."""
from harness.vxlan import VxlanScenario

SCENARIO = VxlanScenario(name="vxlan6-decap", title="VXLAN decap, IPv6, 66 B inner", family=6,
                         sizes=[(66, 1)], order=43, direction="decap")
