"""natOutgoing, IPv6, established flows: 4096 UDP flows from the node's pods to addresses
outside the pools, tracked and source-NATed to the node's address, 66 B frames (IPv6 + UDP
has no 64 B frame) (harness/nat.py)."""
from harness.nat import NatEstablishedScenario

SCENARIO = NatEstablishedScenario(name="nat6-established", title="natOutgoing, IPv6, "
                                  "established flows, 66 B", family=6, sizes=[(66, 1)], order=61)
