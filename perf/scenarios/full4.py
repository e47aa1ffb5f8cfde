"""The full path, IPv4: a pod's established UDP flows to the outside through anti-spoofing, 1,000
egress policy rules (the allowing one last), conntrack, natOutgoing SNAT and the LPM route, the
pod a vhost-user port fed by testpmd (harness/fullpath.py)."""
from harness.fullpath import FullPathScenario

SCENARIO = FullPathScenario(name="full4", title="full path, IPv4: 1,000 policy rules + conntrack "
                            "+ SNAT + LPM, established flows, 64 B", family=4, sizes=[(64, 1)],
                            order=70)
