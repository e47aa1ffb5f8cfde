#!/usr/bin/env bash
# The two entry points of dpdk-fwd on a fresh Debian 12 machine, as root:
#   ./run.sh demo   a four-node lab (VXLAN, no BGP, etcd, pods through the CNI plugin) and
#                   its checks; --bgp: the BGP lab; it stays up: ./run.sh demo --down takes it down
#   ./run.sh test   every test: unit, component, sanitizer build, system
# and the benchmark (perf/README.md): ./run.sh perf [--smoke]; the fuzzers: ./run.sh fuzz [--jobs N] [SECONDS] [TARGET[=SECONDS]...];
# the lab under traffic and pod churn, failing on growth (README: Soak): ./run.sh soak [MINUTES]
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  demo) shift
    # taking the lab down or looking at it needs no packages and no build (a build that
    # fails must not keep a lab up)
    case "${1:-}" in --down|--status) exec scripts/demo.sh "$@" ;; esac
    scripts/setup.sh && exec scripts/demo.sh "$@" ;;
  test) shift; scripts/setup.sh && exec scripts/test.sh "$@" ;;
  # the perf harness (perf/README.md): a benchmark, not one of the two main commands
  perf) shift; scripts/setup.sh && exec /usr/bin/python3 perf/run.py "$@" ;;
  # libFuzzer on every input path (tests/fuzz), SECONDS per target (default 60), N processes each
  fuzz) shift; scripts/setup.sh && exec scripts/fuzz.sh "$@" ;;
  # the lab (brought up if it is not) under mixed traffic and pod churn for MINUTES (default
  # 60): memory, mbufs, tables, drops sampled every --interval SECONDS; exit 1 on growth
  soak) shift; scripts/setup.sh && exec /usr/bin/python3 scripts/soak.py "$@" ;;
  *) echo "usage: sudo ./run.sh demo [--bgp [--rr]] [--ipv4-only | --ipv6-only] [--down | --status] | test | perf [--smoke] | fuzz [--jobs N] [SECONDS] [TARGET[=SECONDS]...] | soak [MINUTES] [--interval SECONDS] [--out DIR]" >&2; exit 2 ;;
esac
