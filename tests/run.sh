#!/bin/sh
# run.sh — runs the cmocka test programs given as arguments, one after the
# other, and ends with one summary line over all of them:
#   tests: N passed, M failed
# NOMUL_TEST_VALGRIND=1 runs each under valgrind (with NOMUL_ISA=avx2, since
# valgrind cannot run AVX-512, smaller sweeps, and OpenMP's passive waits).
passed=0
failed=0
status=0
for t in "$@"; do
    name=$(basename "$t")
    log=$(mktemp)
    if [ "${NOMUL_TEST_VALGRIND:-0}" = 1 ]; then
        # valgrind runs one thread at a time: OpenMP threads that spin while
        # waiting hold it for their whole time slice (test_train's parallel
        # passes took over 20 minutes spinning, under 5 passive)
        OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} \
        NOMUL_ISA=${NOMUL_ISA:-avx2} NOMUL_TEST_SCALE=${NOMUL_TEST_SCALE:-0.02} \
            valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-possibly-lost=no \
            "$t" >"$log" 2>&1
    else
        "$t" >"$log" 2>&1
    fi
    rc=$?
    cat "$log"
    # cmocka writes to stdout and stderr, so its lines may interleave: match
    # anywhere in a line
    p=$(grep -o '\[  PASSED  \] [0-9]* test(s)\.' "$log" | tail -n 1 | tr -dc 0-9)
    f=$(grep -o '\[  FAILED  \] [0-9]* test(s), listed below' "$log" | tail -n 1 | tr -dc 0-9)
    n=$(grep -o '\[==========\] [0-9]* test(s) run\.' "$log" | tail -n 1 | tr -dc 0-9)
    # UBSan reports some checks (nonnull arguments) without stopping the program
    ub=0
    if grep -q 'runtime error:' "$log"; then ub=1; fi
    rm -f "$log"
    p=${p:-0}
    f=${f:-0}
    if [ "$ub" -eq 1 ]; then
        status=1
        f=$((f + 1))
        echo "$name: the undefined-behaviour sanitizer reported a runtime error (above)"
    fi
    if [ "$rc" -ne 0 ]; then
        status=1
        # a crash or a valgrind error: count the tests that did not pass
        if [ -n "$n" ] && [ $((p + f)) -lt "$n" ]; then f=$((n - p)); fi
        if [ "$f" -eq 0 ]; then f=1; echo "$name: exited with status $rc"; fi
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "tests: $passed passed, $failed failed"
exit $status
