"""VXLAN decapsulation, IPv4: a remote node's pod to a local pod, VXLAN over IPv4 (114 B)
around 64 B frames, which leave decapsulated. The overlay comes from the IPAM store
(harness/vxlan.py)."""
from harness.vxlan import VxlanScenario

SCENARIO = VxlanScenario(name="vxlan4-decap", title="VXLAN decap, IPv4, 64 B inner", family=4,
                         sizes=[(64, 1)], order=41, direction="decap")
