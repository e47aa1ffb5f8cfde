"""natOutgoing, IPv4, new flows: every packet a new UDP flow from perf/flowgen; the figure is
connections created per second, against Linux conntrack + masquerade (harness/nat.py)."""
from harness.nat import NatNewScenario

# 4M flows (~700 MB of table): more than a run creates at up to 4M a second (flowgen starts,
# then 0.25 s of warm-up and a 0.5 s window; 0.5 + 1 s filled the table at 2.9M a second)
SCENARIO = NatNewScenario(name="nat4-new", title="natOutgoing, IPv4, new flows per second, 64 B",
                          family=4, sizes=[(64, 1)], order=62, capacity=1 << 22,
                          memory_mb=1024, window=(0.25, 0.5))
