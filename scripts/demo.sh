#!/usr/bin/env bash
# The lab demo (scripts/lab.py): four dpdk-fwd nodes on two subnets of a ToR with etcd,
# VXLAN routes from the node registry (no BGP), pods attached by the CNI plugin, a table of
# checks. The lab stays up afterwards.
#   scripts/demo.sh            take down a lab that is still up, bring a new one up, check it
#   scripts/demo.sh --bgp      the same with the BGP profile (three nodes, BIRD, no overlay)
#   scripts/demo.sh --ipv4-only | --ipv6-only   nodes and pods of one family
#   scripts/demo.sh --down     take it down (nothing up: a no-op)
#   scripts/demo.sh --status   what is up and how to poke at it
# Needs root and a build (scripts/setup.sh); FWD_BUILD names another build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 scripts/lab.py "$@"
