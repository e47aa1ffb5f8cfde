#!/usr/bin/env bash
# The two entry points of dpdk-fwd on a fresh Debian 12 machine, as root:
#   ./run.sh demo   one node, three pods: ping and TCP over IPv4 and IPv6
#   ./run.sh test   every test: unit, component, sanitizer build, system
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  demo) shift; scripts/setup.sh && exec scripts/demo.sh "$@" ;;
  test) shift; scripts/setup.sh && exec scripts/test.sh "$@" ;;
  *) echo "usage: sudo ./run.sh demo | test" >&2; exit 2 ;;
esac
