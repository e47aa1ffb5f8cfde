#!/usr/bin/env bash
# Runs every test and ends with one line "tests: N passed, N failed, N skipped".
#  1. unit + component tests (GoogleTest) on the -Werror build;
#  2. the same under AddressSanitizer + UndefinedBehaviorSanitizer;
#  3. the libFuzzer targets (tests/fuzz) for a short time each, and the tests of
#     scripts/count_results.py, which prints that line;
#  4. system tests (pytest): network namespaces as pods, the real daemon.
# Needs root (namespaces, taps, hugepages). scripts/setup.sh prepares the machine.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
results=$(mktemp -d /tmp/fwd-results.XXXXXX)
trap 'rm -rf "$results"' EXIT
status=0

# each step says how long the run has taken so far: where CI's time goes is in its log
step() { printf '\n=== %s [%ds] ===\n' "$*" "$SECONDS"; }

# gtest_stage STAGE BUILDDIR [VAR=VALUE ...]: the unit and component suites of BUILDDIR with
# the variables set. $results/STAGE/ gets each meson test's XML (scripts/gtest_wrap.sh), what
# meson was to run (tests.txt) and what it ran (testlog.json): count_results.py counts a test
# that wrote nothing (crashed, timed out, never built) as failed instead of losing it.
gtest_stage() {
  local stage=$1 dir=$2
  shift 2
  local out=$results/$stage suites=(-C "$dir" --suite unit --suite component)
  # meson names its log after the wrapper; one of an earlier run must not stand in for this one
  local log=$dir/meson-logs/testlog-gtest_wrap.sh.json
  mkdir -p "$out"
  rm -f "$log"
  env "$@" FWD_GTEST_RESULTS="$out" meson test "${suites[@]}" \
    --wrapper "$top/scripts/gtest_wrap.sh" --print-errorlogs --num-processes 2 || status=1
  if [ -f "$log" ]; then cp "$log" "$out/testlog.json"; fi
  meson test "${suites[@]}" --no-rebuild --list >"$out/tests.txt" || rm -f "$out/tests.txt"
}

step "unit and component tests"
gtest_stage plain build

step "sanitizer build (clang: address, undefined; the fuzz targets in the same tree)"
export CCACHE_BASEDIR="$top"  # as scripts/setup.sh: checkouts share ccache hits
if [ ! -d build-asan ]; then
  # One clang tree serves the sanitizer suites and the libFuzzer targets (-Dfuzz=true): the
  # coverage instrumentation libFuzzer needs (fuzzer-no-link) costs the suites little, and a
  # third build of every source (GCC's sanitizer tree besides clang's fuzz tree) was a quarter
  # of CI. -O1 as the fuzz tree (scripts/fuzz.sh): at -O0 the targets ran 5 to 70 times fewer
  # inputs in their 15 s. Line tables (-g1): the reports keep their file:line.
  CC=clang CXX=clang++ meson setup build-asan -Dfuzz=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dwerror=true -Doptimization=1 \
    -Dc_args='-g1 -fsanitize=fuzzer-no-link' -Dcpp_args='-g1 -fsanitize=fuzzer-no-link' >/dev/null
fi
# No `ninja -C build-asan` of everything: meson test builds what the suites run and nothing
# else (the daemon's main, the CNI plugin, the perf tools are the plain build's to test).
step "unit and component tests under ASan/UBSan"
gtest_stage asan build-asan ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

step "fuzz targets (libFuzzer, in the sanitizer tree; FWD_FUZZ_SECONDS each, one per core)"
FWD_FUZZ_BUILD=build-asan FWD_FUZZ_SECONDS=${FWD_FUZZ_SECONDS:-15} \
  /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/fuzz --junitxml="$results/fuzz.xml" \
  || status=1

step "tests of the test report"
/usr/bin/python3 -m pytest -v -p no:cacheprovider tests/scripts \
  --junitxml="$results/scripts.xml" || status=1

step "system tests"
FWD_BUILD="$top/build" /usr/bin/python3 -m pytest -v -p no:cacheprovider --durations=25 tests/system \
  --junitxml="$results/system.xml" "$@" || status=1

step "report"
/usr/bin/python3 scripts/count_results.py "$results" --meson plain --meson asan \
  --pytest fuzz --pytest scripts --pytest system || status=1
exit $status
