#!/bin/sh
# run_ablation.sh — the paper's translation ablation on LibreOffice's help,
# German→English (lohelp/ablation.json over lohelp/transformer.json, the same
# hyperparameters for every row): float; PAM products with the approximate
# and with the exact backward; + PA softmax, layer norm and embedding scale;
# + PA loss; fully multiplication-free with exact derivatives; fully
# multiplication-free with the approximate backward everywhere. Two seeds for
# float and both fully-PA rows. Runs one after the other; after each the table
# (experiments/lohelp/results.md, with sample translations) is rewritten, so
# it grows as rows finish. Every run checkpoints every checkpoint_every steps:
# --resume continues the unfinished runs from their last checkpoint and skips
# the finished ones (the run folders say which is which).
#
#   sh experiments/lohelp/run_ablation.sh [--resume] [OUT]   (default OUT: runs/lohelp_ablation)
#   ROWS="1_float 5_pa_full" SEEDS=0 sh experiments/lohelp/run_ablation.sh
#   WHERE="quiet 16-core machine" sh experiments/lohelp/run_ablation.sh --resume
#   SETS="--set model=transformer_tiny --set steps=6" sh ...   (extra --set, e.g. a smoke run)
set -eu
NOMUL=${NOMUL:-build/nomul}
E=$(dirname "$0")
RESUME=0
if [ "${1:-}" = --resume ]; then
    RESUME=1
    shift
fi
OUT=${1:-runs/lohelp_ablation}
TABLE=${TABLE:-$E/results.md}
ROWS=${ROWS:-"1_float 2_pam_approx 2b_pam_exact 3_pa_softmax_norm 4_pa_loss 5_pa_full 5b_pa_full_approx"}
WHERE=${WHERE:-$(hostname) ($(nproc) cores)}
[ -f data/lohelp-de-en/train.bpe.de ] || sh "$E/prepare.sh"
mkdir -p "$OUT"
failed=0
for row in $ROWS; do
    seeds=${SEEDS:-0}
    case $row in 1_float | 5_pa_full | 5b_pa_full_approx) seeds=${SEEDS:-"0 1"} ;; esac
    for seed in $seeds; do
        dir=$OUT/$row/seed$seed
        if [ -f "$dir/summary.txt" ] && grep -q '^steps ' "$dir/summary.txt"; then
            echo "== $row seed $seed: done"
            continue
        fi
        mkdir -p "$dir"
        if [ -f "$dir/checkpoint_last.safetensors" ]; then
            if [ "$RESUME" -ne 1 ]; then
                echo "run_ablation.sh: $dir has a checkpoint: --resume continues it" >&2
                exit 2
            fi
            echo "== $row seed $seed: resumed"
            set -- --resume "$dir/checkpoint_last.safetensors"
        else
            echo "== $row seed $seed"
            set -- --config "$E/transformer.json" --config "$E/ablation.json" \
                --config "$E/$row.json" --set seed="$seed" --set out_dir="$dir"
        fi
        echo "$WHERE" >"$dir/where.txt"
        # shellcheck disable=SC2086
        if "$NOMUL" train "$@" ${SETS:-} --progress lines >"$dir/summary.txt" 2>>"$dir/train.log"; then
            cat "$dir/summary.txt"
        else
            failed=1
            echo "run_ablation.sh: $row seed $seed failed ($dir/train.log says why)" >&2
        fi
        sh "$E/ablation_table.sh" "$OUT" >"$TABLE.tmp" && mv "$TABLE.tmp" "$TABLE"
    done
done
sh "$E/ablation_table.sh" "$OUT" >"$TABLE.tmp" && mv "$TABLE.tmp" "$TABLE"
cat "$TABLE"
exit "$failed"
