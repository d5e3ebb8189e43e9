#!/bin/sh
# run_ablation.sh — the paper's translation ablation on the Ding de→en split:
# float; PAM linears and bmm (approximate backward); + PA softmax, layer norm
# and embedding scale; + PA loss; + PA optimizer (fully multiplication-free).
# Same hyperparameters for every row (ding/ablation.json over
# ding/transformer.json); two seeds for the first and the last row. Then
# writes the table (results.md, with sample translations) and the curves.
#
#   sh experiments/ding/run_ablation.sh [OUT]      (default: runs/ding_ablation)
#   JOBS=2 sh experiments/ding/run_ablation.sh     (two runs at a time, one thread each)
#   ROWS="1_float 5_pa_full" SEEDS=0 sh experiments/ding/run_ablation.sh
set -eu
NOMUL=${NOMUL:-build/nomul}
OUT=${1:-runs/ding_ablation}
E=$(dirname "$0")
ROWS=${ROWS:-"1_float 2_pam_approx 3_pa_softmax_norm 4_pa_loss 5_pa_full"}
JOBS=${JOBS:-1}
[ "$JOBS" -gt 1 ] && export NOMUL_NUM_THREADS=${NOMUL_NUM_THREADS:-1}
[ -f data/ding-de-en/train.bpe.de ] || sh "$E/prepare.sh"
runs=""
for row in $ROWS; do
    seeds=${SEEDS:-0}
    case $row in 1_float | 5_pa_full) seeds=${SEEDS:-"0 1"} ;; esac
    for seed in $seeds; do
        runs="$runs $row:$seed"
    done
done
lane=0 pids=""
while [ "$lane" -lt "$JOBS" ]; do
    (
        k=0
        for rs in $runs; do
            if [ $((k % JOBS)) -eq "$lane" ]; then
                row=${rs%:*} seed=${rs#*:}
                dir=$OUT/$row/seed$seed
                mkdir -p "$dir"
                echo "== $row seed $seed"
                "$NOMUL" train --config "$E/transformer.json" --config "$E/ablation.json" \
                    --config "$E/$row.json" --set seed="$seed" --set out_dir="$dir" \
                    --progress lines >"$dir/summary.txt" 2>"$dir/train.log"
                cat "$dir/summary.txt"
            fi
            k=$((k + 1))
        done
    ) &
    pids="$pids $!"
    lane=$((lane + 1))
done
failed=0
for p in $pids; do
    wait "$p" || failed=1
done
sh "$E/ablation_table.sh" "$OUT" >"$OUT/results.md"
if [ "$failed" -ne 0 ]; then
    echo "run_ablation.sh: a run failed (its train.log in $OUT/ROW/seedN says why)" >&2
    exit 1
fi
"$NOMUL" plot "$OUT"/*/seed0/metrics.jsonl --x step --y loss,valid_loss \
    --title "transformer_tiny on Ding de-en: ablation" -o "$OUT/curves.svg"
cat "$OUT/results.md"
