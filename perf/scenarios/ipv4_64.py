"""IPv4, 64-byte frames: the route path at its packet-rate limit."""
from harness.common import Scenario

SCENARIO = Scenario(name="ipv4-64", title="IPv4, 64 B", family=4, sizes=[(64, 1)], order=10)
