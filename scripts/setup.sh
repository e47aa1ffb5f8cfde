#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) for building and running dpdk-fwd:
# packages, hugepages, a build. Idempotent; used by ./run.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  meson ninja-build pkg-config g++ clang-format
  # meson compiles through ccache when it is there: a rebuild of unchanged sources (another
  # checkout, the next CI run on this machine) is a cache hit
  ccache
  dpdk dpdk-dev libdpdk-dev dpdk-doc
  libnl-3-dev libnl-route-3-dev libboost-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libgtest-dev libcli11-dev libpcap-dev
  iproute2 iputils-ping iperf3 tcpdump procps psmisc kmod
  # the lab ToR's counters (scripts/lab.py)
  nftables
  python3 python3-pytest python3-scapy
  # the Kubernetes manifests' test (tests/system/test_k8s_manifests.py) parses them
  python3-yaml
  bird2
  libcurl4-openssl-dev etcd-server etcd-client
  # resource files (fwdctl apply -f): libyaml, the reference YAML parser
  libyaml-dev
  # SHA-1 of node names (derived VXLAN VTEP MACs, as Calico derives them)
  libssl-dev
  # metrics on /metrics (prometheus-cpp's exposer, on civetweb, which also serves the health
  # probes) and the real Prometheus server that scrapes the daemon in tests/system/test_metrics.py
  prometheus-cpp-dev libcivetweb-dev prometheus
  containernetworking-plugins
  # the perf harness (perf/run.py): OVS-DPDK and l3fwd as references, callgrind, the chart
  openvswitch-switch-dpdk make valgrind python3-matplotlib lua5.4
  # the fuzz targets (tests/fuzz, ./run.sh fuzz): clang and its libFuzzer runtime
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Hugepages: 1024 x 2 MiB, hugetlbfs at /dev/hugepages.
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
if [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 1024 ]; then
  echo 1024 > /proc/sys/vm/nr_hugepages
fi
echo "setup: $(cat /proc/sys/vm/nr_hugepages) hugepages reserved"
mkdir -p /var/run/netns

# ccache keys on paths relative to the checkout, so two checkouts share hits
export CCACHE_BASEDIR="$PWD"
# Build (release-ish, warnings as errors). Debug info is line tables only (-g1): backtraces
# keep their file:line, and the build takes a fifth less time than with full -g.
if [ ! -d build ]; then
  meson setup build -Dwerror=true -Dc_args=-g1 -Dcpp_args=-g1 >/dev/null
fi
ninja -C build
echo "setup: done in ${SECONDS}s"
