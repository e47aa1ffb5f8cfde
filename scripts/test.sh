#!/usr/bin/env bash
# Runs every test and ends with one line "tests: N passed, N failed, N skipped".
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

# gtest_stage STAGE BUILDDIR [VAR=VALUE ...]: the unit and component suites of BUILDDIR with
# the variables set, each meson test writing $results/STAGE/<test name>.xml
# (scripts/gtest_wrap.sh).
gtest_stage() {
  local stage=$1 dir=$2
  shift 2
  mkdir -p "$results/$stage"
  env "$@" FWD_GTEST_RESULTS="$results/$stage" meson test -C "$dir" --suite unit \
    --suite component --wrapper "$top/scripts/gtest_wrap.sh" --print-errorlogs \
    --num-processes 2 || status=1
}

step "unit and component tests"
gtest_stage plain build

step "sanitizer build (address, undefined)"
if [ ! -d build-asan ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true >/dev/null
fi
ninja -C build-asan || status=1
step "unit and component tests under ASan/UBSan"
gtest_stage asan build-asan ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

step "system tests"
FWD_BUILD="$top/build" /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/system \
  --junitxml="$results/system.xml" "$@" || status=1

/usr/bin/python3 scripts/count_results.py "$results" || status=1
exit $status
