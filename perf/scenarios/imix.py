"""IPv4 simple IMIX: 64, 570 and 1518 B frames in 7:4:1."""
from harness.common import Scenario

SCENARIO = Scenario(name="imix", title="IPv4 IMIX 64/570/1518 (7:4:1)", family=4,
                    sizes=[(64, 7), (570, 4), (1518, 1)], order=30)
