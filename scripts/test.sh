#!/usr/bin/env bash
# Runs every test and ends with one line "tests: N passed, N failed".
#  1. unit + component tests (GoogleTest) on the -Werror build;
#  2. the same under AddressSanitizer + UndefinedBehaviorSanitizer;
#  3. system tests (pytest): network namespaces as pods, the real daemon.
# Needs root (namespaces, taps, hugepages). scripts/setup.sh prepares the machine.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
results=$(mktemp -d /tmp/fwd-results.XXXXXX)
trap 'rm -rf "$results"' EXIT
status=0

step() { printf '\n=== %s ===\n' "$*"; }

step "unit and component tests"
GTEST_OUTPUT="xml:$results/plain/" meson test -C build --suite unit --suite component \
  --print-errorlogs --num-processes 2 || status=1

step "sanitizer build (address, undefined)"
if [ ! -d build-asan ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true >/dev/null
fi
ninja -C build-asan || status=1
step "unit and component tests under ASan/UBSan"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  GTEST_OUTPUT="xml:$results/asan/" meson test -C build-asan --suite unit --suite component \
  --print-errorlogs --num-processes 2 || status=1

step "system tests"
FWD_BUILD="$top/build" /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/system \
  --junitxml="$results/system.xml" "$@" || status=1

/usr/bin/python3 scripts/count_results.py "$results" || status=1
exit $status
