"""IPv6, minimum size: Ethernet + IPv6 + UDP and no payload (66 B on the wire)."""
from harness.common import Scenario

SCENARIO = Scenario(name="ipv6-min", title="IPv6, 66 B (minimum)", family=6, sizes=[(66, 1)], order=20)
