#!/bin/sh
# long_run.sh [BUILD] — the long fuzzing run of issue 17: every harness of
# BUILD/fuzz (default build-fuzz, made by `make fuzz-build FUZZ=1 CC=clang`)
# until it has run $FUZZ_TARGET executions (default 10,000,000) without a
# crash, a leak, undefined behaviour, an input slower than 10 s or one that
# needs 2 GB. It runs in chunks of $FUZZ_CHUNK_SECONDS (default 600) through
# tests/fuzz/run.sh, and appends each finished chunk to the ledger
# tests/fuzz/long_run.tsv (date, commit, harness, executions, seconds,
# slowest input, peak RSS, result, machine), then rewrites the summary
# tests/fuzz/long_run.md from it. So it resumes: a second call starts from
# the totals in the ledger and the corpus it grew ($FUZZ_CORPUS, default
# runs/fuzz-corpus); a killed chunk loses only its own executions. A
# harness with a failed chunk is not run again until its row is removed
# from the ledger (after the fix); the artifact is in BUILD/fuzz-artifacts.
#
#   make fuzz-long                             (builds, then this script)
#   nice -n 19 sh tests/fuzz/long_run.sh &     (in the background, resumable)
#   FUZZ_NAMES="bleu config" FUZZ_TARGET=1000000 sh tests/fuzz/long_run.sh
set -u
build=${1:-build-fuzz}
target=${FUZZ_TARGET:-10000000}
chunk=${FUZZ_CHUNK_SECONDS:-600}
ledger=${FUZZ_LEDGER:-tests/fuzz/long_run.tsv}
table=${FUZZ_TABLE:-tests/fuzz/long_run.md}
# fastest harnesses first, so finished rows appear early
names=${FUZZ_NAMES:-"vectors safetensors dict idx text cifar folder bpe bleu config idx_gz"}
where=${WHERE:-"$(hostname) ($(nproc) cores)"}
FUZZ_CORPUS=${FUZZ_CORPUS:-runs/fuzz-corpus}
export FUZZ_CORPUS
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
for name in $names; do
    if [ ! -x "$build/fuzz/fuzz_$name" ]; then
        echo "long_run.sh: $build/fuzz/fuzz_$name is missing: make fuzz-build FUZZ=1 CC=clang" >&2
        exit 2
    fi
done
[ -f "$ledger" ] || printf 'date\tcommit\tharness\texecutions\tseconds\tslowest_s\tpeak_rss_mb\tresult\twhere\n' >"$ledger"

executions() { awk -F'\t' -v h="$1" 'NR > 1 && $3 == h { s += $4 } END { printf "%d", s }' "$ledger"; }
has_failed() { awk -F'\t' -v h="$1" 'NR > 1 && $3 == h && $8 != "ok" { f = 1 } END { exit !f }' "$ledger"; }

summary() {
    awk -F'\t' -v target="$target" '
        NR == 1 { next }
        !($3 in n) { order[++k] = $3 }
        {
            n[$3] += $4; s[$3] += $5; c[$3]++
            if ($6 + 0 > slow[$3]) slow[$3] = $6 + 0
            if ($7 + 0 > rss[$3]) rss[$3] = $7 + 0
            if ($8 != "ok") bad[$3] = $8
            # each distinct commit and machine once (a set: one may be a prefix of another)
            if (!(($3, $2) in seen_c)) { seen_c[$3, $2] = 1; commits[$3] = commits[$3] (commits[$3] ? " " : "") $2 }
            if (!(($3, $9) in seen_m)) { seen_m[$3, $9] = 1; machines[$3] = machines[$3] (machines[$3] ? "; " : "") $9 }
            N += $4; S += $5
        }
        END {
            print "# The long fuzzing run (issue 17)"
            print ""
            print "Written by `sh tests/fuzz/long_run.sh` from its ledger `tests/fuzz/long_run.tsv` (one line per"
            print "finished chunk); the target is " target " executions per harness. Each chunk runs the"
            print "harness with `tests/fuzz/run.sh`: ASan, UBSan and leak detection, 10 s per input, 2 GB."
            print ""
            print "| harness | executions | of target | chunks | CPU-hours | executions/s | slowest input (s) | peak RSS (MB) | result | commits | ran on |"
            print "|---|---|---|---|---|---|---|---|---|---|---|"
            for (i = 1; i <= k; i++) {
                h = order[i]
                res = (h in bad) ? bad[h] : (n[h] >= target ? "done, nothing found" : "under way, nothing found")
                printf "| %s | %d | %.0f%% | %d | %.2f | %.0f | %d | %d | %s | %s | %s |\n", h, n[h], \
                    100 * n[h] / target, c[h], s[h] / 3600, s[h] ? n[h] / s[h] : 0, slow[h], rss[h], res, \
                    commits[h], machines[h]
            }
            printf "\nIn all: %d executions in %.2f CPU-hours.\n", N, S / 3600
        }' "$ledger" >"$table.tmp" && mv "$table.tmp" "$table"
}

failed=0
for name in $names; do
    while :; do
        if has_failed "$name"; then
            echo "long_run.sh: $name failed before (see $ledger): not run again" >&2
            failed=1
            break
        fi
        done_n=$(executions "$name")
        [ "$done_n" -lt "$target" ] || break
        out=$(FUZZ_SECONDS=$chunk FUZZ_RUNS=$((target - done_n)) sh tests/fuzz/run.sh "$build" "$name")
        line=$(printf '%s\n' "$out" | grep "^fuzz: $name: ")
        echo "$line"
        runs=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9]*\) executions in \([0-9]*\) s (slowest input \([0-9]*\) s, peak RSS \([0-9]*\) MB), nothing found$/\1 \2 \3 \4/p')
        stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
        if [ -n "$runs" ]; then
            set -- $runs
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\tok\t%s\n' "$stamp" "$commit" "$name" "$1" "$2" "$3" "$4" "$where" >>"$ledger"
        else
            log="$build/fuzz-artifacts/$name.log"
            n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tr -dc 0-9)
            art=$(grep -o 'Test unit written to [^ ]*' "$log" | head -n 1 | sed 's/Test unit written to //')
            printf '%s\t%s\t%s\t%s\t0\t0\t0\tFAILED %s\t%s\n' "$stamp" "$commit" "$name" "${n:-0}" "${art:-see $log}" "$where" >>"$ledger"
            printf '%s\n' "$out" >&2
            failed=1
            summary
            break
        fi
        summary
    done
done
summary
cat "$table"
exit "$failed"
