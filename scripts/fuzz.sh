#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang and runs each for SECONDS (default 60)
# from its committed seed corpus; prints each target's executions and findings, then a total.
# Exit 1 on any finding (a crash, a sanitizer report, a timeout, an out-of-memory); the input
# that caused it is kept in build-fuzz/findings/<target>/. ./run.sh fuzz [SECONDS] [TARGET...]
# --build-only: set up and build, run nothing (tests/fuzz/test_fuzz.py, CI).
set -uo pipefail
cd "$(dirname "$0")/.."
build_only=false
if [ "${1:-}" = --build-only ]; then build_only=true; shift; fi
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_resources fuzz_config fuzz_cni fuzz_journal fuzz_api fuzz_packet)
export CCACHE_BASEDIR=$PWD
if [ ! -d build-fuzz ]; then
  # The whole tree instrumented for coverage and the sanitizers, so the fuzzer sees into the
  # libraries; each target links libFuzzer's main (tests/fuzz/meson.build).
  CC=clang CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dtests=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=1 \
    -Dc_args='-g1 -fsanitize=fuzzer-no-link' -Dcpp_args='-g1 -fsanitize=fuzzer-no-link' \
    >/dev/null || exit 1
fi
ninja -C build-fuzz "${targets[@]/#/tests/fuzz/}" || exit 1
$build_only && exit 0
status=0 total=0
for t in "${targets[@]}"; do
  work=$(mktemp -d /tmp/fwd-fuzz-corpus.XXXXXX)  # new inputs stay out of the committed seeds
  out=build-fuzz/findings/$t
  mkdir -p "$out"
  log=$out/log.txt
  # fuzz_packet: libFuzzer's entropic schedule spent three quarters of the time in
  # UpdateFeatureFrequency (the packet path's many features); without it, 4x the executions
  # and more coverage in the same 30 s (tests/fuzz/test_fuzz.py passes the same).
  extra=()
  [ "$t" = fuzz_packet ] && extra=(-entropic=0)
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    build-fuzz/tests/fuzz/"$t" "${extra[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  rm -rf "$work"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  findings=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' \
    -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  total=$((total + ${execs:-0}))
  echo "$t: ${execs:-0} executions in ${seconds} s, $findings finding(s), exit $rc"
  if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
    status=1
    grep -m5 -E "ERROR|runtime error|Assertion|fuzz_|SUMMARY" "$log" | sed 's/^/  /'
    echo "  log: $log; inputs: $out/"
  fi
done
echo "fuzz: $total executions in all, $([ $status -eq 0 ] && echo "no finding" || echo "FINDINGS")"
exit $status
