#!/bin/sh
# run.sh BUILD NAME... — runs each harness BUILD/fuzz/fuzz_NAME for
# $FUZZ_SECONDS seconds (and at most $FUZZ_RUNS executions, when set) from
# its seed corpus tests/fuzz/corpus/NAME; new inputs go to
# $FUZZ_CORPUS/NAME (default BUILD/fuzz-corpus), crashes, leaks, timeouts
# and out-of-memory inputs to BUILD/fuzz-artifacts/. One line per harness
# and a summary line last:
#   fuzz: NAME: E executions in S s (slowest input T s, peak RSS M MB), nothing found
#   fuzz: N harnesses, M failed
# The files a harness hands to a reader go to a private folder under
# $TMPDIR, by default /dev/shm where it is writable (memory: 2 to 10 times
# the executions per second of a disk-backed /tmp).
build=$1
shift
secs=${FUZZ_SECONDS:-60}
corpus=${FUZZ_CORPUS:-$build/fuzz-corpus}
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    TMPDIR=/dev/shm
    export TMPDIR
fi
failed=0
total=0
mkdir -p "$build/fuzz-artifacts"
for name in "$@"; do
    total=$((total + 1))
    mkdir -p "$corpus/$name"
    log="$build/fuzz-artifacts/$name.log"
    t0=$(date +%s)
    # -timeout: an input slower than 10 s fails (quadratic readers);
    # -rss_limit_mb: a reader that allocates what a header claims fails;
    # leaks fail too (libFuzzer's -detect_leaks is on with ASan)
    "$build/fuzz/fuzz_$name" -max_total_time="$secs" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} \
        -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/fuzz-artifacts/$name-" \
        "$corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - t0))
    stat() { grep -o "stat::$1: *[0-9]*" "$log" | tr -dc 0-9; }
    runs=$(stat number_of_executed_units)
    if [ $rc -eq 0 ]; then
        echo "fuzz: $name: ${runs:-?} executions in $took s (slowest input $(stat slowest_unit_time_sec) s, peak RSS $(stat peak_rss_mb) MB), nothing found"
    else
        failed=$((failed + 1))
        echo "fuzz: $name: FAILED (exit $rc); the log is $log:"
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -n 8
    fi
done
echo "fuzz: $total harnesses, $failed failed"
[ $failed -eq 0 ]
