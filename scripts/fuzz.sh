#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang and runs each for SECONDS (default 60)
# from its committed seed corpus; prints each target's executions, their rate and findings,
# then a total. Exit 1 on any finding (a crash, a sanitizer report, a timeout, an
# out-of-memory); the input that caused it is kept in build-fuzz/findings/<target>/
# ($FWD_FUZZ_BUILD/findings/ when that is set).
#   ./run.sh fuzz [--jobs N] [SECONDS] [TARGET[=SECONDS]...]
# TARGET=SECONDS gives that target its own time (a long run's budget spent where it buys most).
# --jobs N: N fuzzer processes per target side by side (one per idle core), sharing what they
#   find (each picks up the others' new inputs every second); the executions are their sum.
#   Default 1. Only for long runs on cores nothing else uses: in the first minute each
#   process redoes much of the others' discovery, and on a busy machine two processes got
#   no more CPU than one (20 s of fuzz_config: 2/3 of the executions per CPU second).
# --build-only: set up and build, run nothing (tests/fuzz/test_fuzz.py, CI).
# New inputs are kept in a scratch directory (tmpfs when there is one) and deleted at the end:
# nothing is written into the committed corpus.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build_only=false jobs=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) build_only=true; shift ;;
    --jobs) jobs=${2:-}; shift 2 || { echo "fuzz: --jobs needs a number" >&2; exit 2; } ;;
    --jobs=*) jobs=${1#--jobs=}; shift ;;
    *) break ;;
  esac
done
case "$jobs" in '' | *[!0-9]* | 0) echo "fuzz: --jobs takes a number of processes (1 or more), not '$jobs'" >&2; exit 2 ;; esac
seconds=${1:-60}
shift || true
case "$seconds" in '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;; esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_resources fuzz_config fuzz_cni fuzz_journal fuzz_api fuzz_packet)
export CCACHE_BASEDIR=$PWD
# FWD_FUZZ_BUILD: another tree configured with -Dfuzz=true (CI: its clang sanitizer tree, which
# also builds the unit tests, so one sanitizer build serves both).
build=${FWD_FUZZ_BUILD:-build-fuzz}
if [ ! -d "$build" ]; then
  # The whole tree instrumented for coverage and the sanitizers, so the fuzzer sees into the
  # libraries; each target links libFuzzer's main (tests/fuzz/meson.build).
  CC=clang CXX=clang++ meson setup "$build" -Dfuzz=true -Dtests=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=1 \
    -Dc_args='-g1 -fsanitize=fuzzer-no-link' -Dcpp_args='-g1 -fsanitize=fuzzer-no-link' \
    >/dev/null || exit 1
fi
names=()
for spec in "${targets[@]}"; do names+=("tests/fuzz/${spec%%=*}"); done
ninja -C "$build" "${names[@]}" || exit 1
$build_only && exit 0
# tmpfs for the inputs libFuzzer writes (every new or reduced one is a file): on the root
# file system each was a metadata update the fuzzer waited for.
scratch=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && scratch=/dev/shm
status=0 total=0
for spec in "${targets[@]}"; do
  t=${spec%%=*} secs=$seconds
  [ "$t" = "$spec" ] || secs=${spec#*=}
  case "$secs" in '' | *[!0-9]*) echo "fuzz: $t=SECONDS needs a whole number, not '$secs'" >&2; exit 2 ;; esac
  work=$(mktemp -d "$scratch/fwd-fuzz-corpus.XXXXXX")
  out=$build/findings/$t
  mkdir -p "$out"
  rm -f "$out"/log*.txt
  # shellcheck disable=SC2207  # the flags are words, no globs
  extra=($(sed -e 's/#.*//' tests/fuzz/options.txt | awk -v t="$t" '$1 == t { $1 = ""; print }'))
  pids=()
  for j in $(seq 1 "$jobs"); do
    log=$out/log.txt
    [ "$jobs" -gt 1 ] && log=$out/log.$j.txt
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:malloc_context_size=0 \
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "$build"/tests/fuzz/"$t" "${extra[@]}" -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/" "$work" \
      "tests/fuzz/corpus/$t" >"$log" 2>&1 &
    pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do
    wait "$p" || rc=$?
  done
  rm -rf "$work"
  execs=0
  for log in "$out"/log*.txt; do
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=$((execs + ${n:-0}))
  done
  findings=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' \
    -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  total=$((total + execs))
  echo "$t: $execs executions in ${secs} s ($((execs / (secs > 0 ? secs : 1)))/s," \
    "$jobs process(es)), $findings finding(s), exit $rc"
  if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
    status=1
    # The run records no allocation stacks (malloc_context_size=0: a fifth more executions
    # for fuzz_cni); each finding is run again alone with them, for the whole report.
    for f in $(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \)); do
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        timeout 60 "$build"/tests/fuzz/"$t" "${extra[@]}" "$f" >"$f.report.txt" 2>&1
      echo "  full report: $f.report.txt"
    done
    cat "$out"/log*.txt | grep -m5 -E "ERROR|runtime error|Assertion|fuzz_|SUMMARY" | sed 's/^/  /'
    echo "  logs: $out/log*.txt; inputs: $out/"
  fi
done
echo "fuzz: $total executions in all, $([ $status -eq 0 ] && echo "no finding" || echo "FINDINGS")"
exit $status
