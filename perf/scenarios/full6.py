"""The full path, IPv6: as full4 (harness/fullpath.py) with IPv6 flows, 66 B frames (IPv6 + UDP
has no 64 B frame)."""
from harness.fullpath import FullPathScenario

SCENARIO = FullPathScenario(name="full6", title="full path, IPv6: 1,000 policy rules + conntrack "
                            "+ SNAT + LPM, established flows, 66 B", family=6, sizes=[(66, 1)],
                            order=71)
