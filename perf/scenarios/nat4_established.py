"""natOutgoing, IPv4, established flows: 4096 UDP flows from the node's pods to addresses
outside the pools, tracked and source-NATed to the node's address (harness/nat.py)."""
from harness.nat import NatEstablishedScenario

SCENARIO = NatEstablishedScenario(name="nat4-established", title="natOutgoing, IPv4, "
                                  "established flows, 64 B", family=4, sizes=[(64, 1)], order=60)
