#!/bin/sh
# run.sh BUILD NAME... — runs each harness BUILD/fuzz/fuzz_NAME for
# $FUZZ_SECONDS seconds from its seed corpus tests/fuzz/corpus/NAME (new
# inputs go to BUILD/fuzz-corpus/NAME, crashes, leaks, timeouts and
# out-of-memory inputs to BUILD/fuzz-artifacts/), one line per harness and
# a summary line last:
#   fuzz: N harnesses, M failed
build=$1
shift
secs=${FUZZ_SECONDS:-60}
failed=0
total=0
mkdir -p "$build/fuzz-artifacts"
for name in "$@"; do
    total=$((total + 1))
    mkdir -p "$build/fuzz-corpus/$name"
    log="$build/fuzz-artifacts/$name.log"
    # -timeout: an input slower than 10 s fails (quadratic readers);
    # -rss_limit_mb: a reader that allocates what a header claims fails
    "$build/fuzz/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/fuzz-artifacts/$name-" \
        "$build/fuzz-corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tr -dc 0-9)
    if [ $rc -eq 0 ]; then
        echo "fuzz: $name: ${runs:-?} executions in ${secs} s, nothing found"
    else
        failed=$((failed + 1))
        echo "fuzz: $name: FAILED (exit $rc); the log is $log:"
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -n 8
    fi
done
echo "fuzz: $total harnesses, $failed failed"
[ $failed -eq 0 ]
