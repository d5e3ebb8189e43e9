#!/bin/sh
# run_ablation.sh — the paper's translation ablation on LibreOffice's help,
# German→English (lohelp/ablation.json over lohelp/transformer.json, the same
# hyperparameters for every row): float; PAM products with the approximate
# and with the exact backward; + PA softmax, GELU, layer norm and embedding
# scale (approximate backward, as every family of the approximate rows);
# + PA loss; fully multiplication-free with exact derivatives; fully
# multiplication-free with the approximate backward everywhere. Two seeds for
# float and both fully-PA rows. Runs one after the other; after each the table
# (experiments/lohelp/results.md, with sample translations) is rewritten, so
# it grows as rows finish. Every run checkpoints every checkpoint_every steps:
# --resume continues the unfinished runs from their last checkpoint and skips
# the finished ones (the run folders say which is which).
#
# A finished run's small files (summary.txt, where.txt, config.json,
# metrics.jsonl, test.hyp) are copied into the repository, RECORD/ROW/seedN
# (default experiments/lohelp/record), and the table is made from that
# record: it keeps what earlier sessions, on other machines, finished, while
# the run folders (checkpoints) stay where they ran. A row already in the
# record is not run again (delete its folder there to rerun it).
#
#   sh experiments/lohelp/run_ablation.sh [--resume] [OUT]   (default OUT: runs/lohelp_ablation)
#   ROWS="1_float 5_pa_full" SEEDS=0 sh experiments/lohelp/run_ablation.sh
#   WHERE="quiet 16-core machine" sh experiments/lohelp/run_ablation.sh --resume
#   SETS="--set model=transformer_tiny --set steps=6 --set warmup_steps=2" sh ...   (extra --set, e.g. a smoke run)
set -eu
NOMUL=${NOMUL:-build/nomul}
E=$(dirname "$0")
PROG=run_ablation.sh
RESUME=0
if [ "${1:-}" = --resume ]; then
    RESUME=1
    shift
fi
OUT=${1:-runs/lohelp_ablation}
TABLE=${TABLE:-$E/results.md}
RECORD=${RECORD:-$E/record}
ROWS=${ROWS:-"1_float 2_pam_approx 2b_pam_exact 3_pa_softmax_norm 4_pa_loss 5_pa_full 5b_pa_full_approx"}
WHERE=${WHERE:-$(hostname) ($(nproc) cores)}
[ -f data/lohelp-de-en/train.bpe.de ] || sh "$E/prepare.sh"
. "$E/run_one.sh"
mkdir -p "$OUT"
# keep_record DIR REC: a finished run's small files into the repository's
# record (written to REC.tmp, then renamed: a killed copy leaves no record)
keep_record() {
    rm -rf "$2.tmp"
    mkdir -p "$2.tmp"
    for f in summary.txt where.txt config.json metrics.jsonl test.hyp; do
        [ ! -f "$1/$f" ] || cp "$1/$f" "$2.tmp/$f"
    done
    rm -rf "$2"
    mv "$2.tmp" "$2"
}
failed=0
for row in $ROWS; do
    seeds=${SEEDS:-0}
    case $row in 1_float | 5_pa_full | 5b_pa_full_approx) seeds=${SEEDS:-"0 1"} ;; esac
    for seed in $seeds; do
        dir=$OUT/$row/seed$seed
        rec=$RECORD/$row/seed$seed
        if [ -f "$rec/summary.txt" ]; then
            echo "== $row seed $seed: done (in $rec)"
            continue
        fi
        if run_done "$dir"; then
            echo "== $row seed $seed: done"
            keep_record "$dir" "$rec"
            continue
        fi
        mkdir -p "$dir"
        echo "$WHERE" >"$dir/where.txt"
        if run_train "$row seed $seed" "$dir" --config "$E/transformer.json" \
            --config "$E/ablation.json" --config "$E/$row.json" --set seed="$seed" \
            --set out_dir="$dir"; then
            cat "$dir/summary.txt"
            keep_record "$dir" "$rec"
        else
            failed=1
            echo "run_ablation.sh: $row seed $seed failed ($dir/train.log says why)" >&2
        fi
        sh "$E/ablation_table.sh" "$RECORD" >"$TABLE.tmp" && mv "$TABLE.tmp" "$TABLE"
    done
done
sh "$E/ablation_table.sh" "$RECORD" >"$TABLE.tmp" && mv "$TABLE.tmp" "$TABLE"
cat "$TABLE"
exit "$failed"
