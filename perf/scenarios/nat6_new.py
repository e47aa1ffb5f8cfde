"""natOutgoing, IPv6, new flows: every packet a new UDP flow from perf/flowgen (66 B frames);
the figure is connections created per second, against Linux conntrack + masquerade
(harness/nat.py)."""
from harness.nat import NatNewScenario

# The table and the window as nat4-new's.
SCENARIO = NatNewScenario(name="nat6-new", title="natOutgoing, IPv6, new flows per second, 66 B",
                          family=6, sizes=[(66, 1)], order=63, capacity=1 << 22,
                          memory_mb=1024, window=(0.25, 0.5))
