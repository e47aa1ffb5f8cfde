"""Connection tracking at 1M flows: conntrack capacity 1048576, 1,000,000 new IPv4 UDP flows
from perf/flowgen, all tracked; the table's memory (harness/nat.py)."""
from harness.nat import CtMillionScenario

SCENARIO = CtMillionScenario(name="ct-1m", title="conntrack: 1M flows tracked", family=4,
                             sizes=[(64, 1)], order=64, capacity=1 << 20, memory_mb=512,
                             flow_count=1000000)
