#!/usr/bin/env bash
# libFuzzer runs of every target of Sources/videophone-fuzz (the list: Targets.swift; one
# seed directory per target under Tests/Fuzz/corpus/).
#
#   toolchain/fuzz.sh smoke [TARGET...]   each target for 20 000 runs, seeded by the commit (make test)
#   toolchain/fuzz.sh long  [TARGET...]   each target for FUZZ_RUNS runs, default 10^6 (make fuzz)
#   toolchain/fuzz.sh run TARGET [libFuzzer flags...]   one target, as long as you like
#
# One release build with --sanitize=fuzzer --sanitize=address in .build-fuzz serves all
# targets; FUZZ_TARGET picks one. New inputs the fuzzer finds go to a scratch corpus and
# crash/timeout/leak files to FUZZ_ARTIFACTS (default: under a temporary directory), never
# into the repository. A crash found: add a unit test with the input to the module's tests,
# fix the parser, then put the input in Tests/Fuzz/corpus/TARGET/ as a regression seed.
# Prints per target: runs, exec/s, coverage, and the result.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
SWIFT=${SWIFT:-swift}
MODE=${1:-smoke}
shift || true
SCRATCH=.build-fuzz
CORPUS=Tests/Fuzz/corpus
WORK=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/videophone-fuzz.XXXXXX")}
ARTIFACTS=${FUZZ_ARTIFACTS:-$WORK/artifacts}
mkdir -p "$ARTIFACTS"

# The smoke replays: libFuzzer's seed comes from the commit (FUZZ_SEED=N to choose) and
# Swift's per-process hash seed is fixed, so a run on the same commit makes the same
# mutations, and each commit still explores a little differently. (Targets whose code reads
# a clock or random numbers, as ICE's transaction IDs, can still drift from run to run.)
# The long runs seed at random.
case "$MODE" in
  smoke) RUNS=${FUZZ_RUNS:-20000}; MAX_TIME=${FUZZ_MAX_TIME:-120}
         head=$(git rev-parse --short=7 HEAD 2>/dev/null || echo 1)
         SEED=${FUZZ_SEED:-$(( 16#$head % 2147483647 + 1 ))}
         export SWIFT_DETERMINISTIC_HASHING=1 ;;
  long)  RUNS=${FUZZ_RUNS:-1000000}; MAX_TIME=${FUZZ_MAX_TIME:-0} ;;
  run)   ;;
  *) echo "usage: $0 smoke|long [TARGET...] | run TARGET [libFuzzer flags]" >&2; exit 2 ;;
esac

# libsrtp2 on OpenSSL (toolchain/libsrtp2.sh), as `make` builds with it, also when run directly.
"$(dirname "$0")/libsrtp2.sh" native
export PKG_CONFIG_PATH="$("$(dirname "$0")/libsrtp2.sh" prefix)/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
echo "== building videophone-fuzz (release, libFuzzer + ASan) in $SCRATCH"
# SwiftPM passes its sanitizers to the compiler as separate -sanitize= flags and the driver keeps
# only the last one (fuzzer OR address, varying between builds): -Xswiftc gives both at once.
# --sanitize=fuzzer is still needed so SwiftPM links libFuzzer's main instead of ours.
$SWIFT build -c release --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address \
  --scratch-path "$SCRATCH" --product videophone-fuzz \
  2>&1 | grep -Ev "Cannot export local symbol|prohibited flag"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "build failed (an older binary would fuzz stale code)" >&2; exit 1; }
BIN="$SCRATCH/release/videophone-fuzz"

# The Swift runtime's backtracer would hold the fuzzer's output open after a crash.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:handle_abort=1}

if [ "$MODE" = run ]; then
  t=${1:?target}; shift
  mkdir -p "$WORK/corpus/$t"
  echo "== $t: scratch corpus $WORK/corpus/$t, artifacts $ARTIFACTS"
  FUZZ_TARGET=$t exec "$BIN" -artifact_prefix="$ARTIFACTS/$t-" "$@" "$WORK/corpus/$t" "$CORPUS/$t"
fi

if [ $# -gt 0 ]; then TARGETS=("$@"); else mapfile -t TARGETS < <(ls "$CORPUS"); fi
echo "== $MODE: ${#TARGETS[@]} targets, $RUNS runs each${SEED:+, seed $SEED (FUZZ_SEED=$SEED replays it)}; logs and artifacts in $WORK"
printf '%-16s %10s %8s %6s %9s  %s\n' target runs exec/s cov seconds result
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/corpus/$t"
  log="$WORK/$t.log"
  start=$(date +%s)
  FUZZ_TARGET=$t "$BIN" -runs="$RUNS" -max_total_time="$MAX_TIME" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 ${SEED:+-seed=$SEED} -artifact_prefix="$ARTIFACTS/$t-" "$WORK/corpus/$t" "$CORPUS/$t" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  if [ $rc -eq 0 ]; then result=ok; else result="FAILED (exit $rc, see $log)"; failed=1; fi
  printf '%-16s %10s %8s %6s %9s  %s\n' "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "$secs" "$result"
  if [ $rc -ne 0 ]; then
    grep -E "Fatal error|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -8 | sed 's/^/    /'
  fi
done
[ $failed -eq 0 ] && [ -z "${FUZZ_WORK:-}" ] && rm -rf "$WORK"
exit $failed
