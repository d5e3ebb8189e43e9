#!/bin/sh
# exact_family.sh — which family's exact derivatives cost the fully-PA
# translation run its quality (docs/ablation/exact_derivatives.md)? Each row
# is the fully multiplication-free approximate row (5b_pa_full_approx) with
# the exact backward in one family only (exact_family/ROW.json: the PAM
# products, functional_cfg (softmax, GELU, exp), norm_cfg (layer norm) or
# loss_functional_cfg (log-softmax and cross-entropy)), under the recipe's
# full 12-epoch schedule, stopped after EPOCHS epochs (default 2): the gap
# between the exact and the approximate rows is clear from the first epoch
# (validation loss 5.38 against 4.97, 4.88 against 4.32 after the second).
# The stopped runs keep their checkpoints: EPOCHS=12 and --resume finish them.
# OUT/results.md gets the training / validation loss per epoch of each row
# beside the two full rows of the ablation's record (seed 0).
#
# BASE (a row's configuration in experiments/lohelp, default
# 5b_pa_full_approx), VARIANTS (the folder of the rows' configurations, default
# exact_family) and LABEL (the rows' names in the table) run the same
# experiment from another row: the mixed row (PAM products with the
# approximate backward, softmax, GELU and layer norm with exact derivatives,
# float loss and optimizer), which stalls, with one family changed at a time:
#
#   BASE=mixed/base VARIANTS=mixed LABEL="mixed, then" EPOCHS=1 \
#     ROWS="none functional_approx norm_approx loss_pa_approx" \
#     sh experiments/lohelp/exact_family.sh runs/lohelp_mixed_backward
#
#   sh experiments/lohelp/exact_family.sh [--resume] [OUT]   (default OUT: runs/lohelp_exact_family)
#   ROWS="norm loss" EPOCHS=3 NOMUL=... SEED=0 sh experiments/lohelp/exact_family.sh --resume
set -eu
NOMUL=${NOMUL:-build/nomul}
E=$(dirname "$0")
PROG=exact_family.sh
RESUME=0
if [ "${1:-}" = --resume ]; then
    RESUME=1
    shift
fi
OUT=${1:-runs/lohelp_exact_family}
ROWS=${ROWS:-"products functional norm loss"}
BASE=${BASE:-5b_pa_full_approx}
VARIANTS=${VARIANTS:-exact_family}
LABEL=${LABEL:-"approximate, exact"}
EPOCHS=${EPOCHS:-2}
SEED=${SEED:-0}
RECORD=${RECORD:-$E/record}
[ -f data/lohelp-de-en/train.bpe.de ] || sh "$E/prepare.sh"
. "$E/run_one.sh"
# epochs_in DIR: the epoch lines in DIR's metrics
epochs_in() {
    if [ -f "$1/metrics.jsonl" ]; then grep -c '"train_loss"' "$1/metrics.jsonl"; else echo 0; fi
}
mkdir -p "$OUT"
for row in $ROWS; do
    [ -f "$E/$VARIANTS/$row.json" ] || {
        echo "$PROG: no row '$row' (experiments/lohelp/$VARIANTS/*.json)" >&2
        exit 2
    }
    dir=$OUT/$row
    if run_done "$dir" || [ "$(epochs_in "$dir")" -ge "$EPOCHS" ]; then
        echo "== $row: $(epochs_in "$dir") epochs done"
        continue
    fi
    # the run in the background, stopped (kill; its last checkpoint stays)
    # once its EPOCHS-th epoch line is written
    run_train "$row" "$dir" --config "$E/transformer.json" --config "$E/ablation.json" \
        --config "$E/$BASE.json" --config "$E/$VARIANTS/$row.json" \
        --set seed="$SEED" --set out_dir="$dir" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(epochs_in "$dir")" -ge "$EPOCHS" ]; then
            pkill -P "$pid" 2>/dev/null || true
            break
        fi
        sleep 5
    done
    wait "$pid" || true
    [ "$(epochs_in "$dir")" -ge "$EPOCHS" ] || run_done "$dir" || {
        echo "$PROG: the $row run stopped early ($dir/train.log says why)" >&2
        exit 1
    }
done
# the table: epoch e's training / validation loss per row
line() { # LABEL METRICS
    awk -v label="$1" -v n="$EPOCHS" '/"train_loss"/ && ++e <= n {
        match($0, /"train_loss": [0-9.]+/); t = substr($0, RSTART + 14, RLENGTH - 14)
        match($0, /"valid_loss": [0-9.]+/); v = substr($0, RSTART + 14, RLENGTH - 14)
        s = s sprintf(" %.3f / %.3f |", t, v) }
        END { print "| " label " |" s }' "$2"
}
{
    printf '| row (seed %s) |' "$SEED"
    e=1
    while [ "$e" -le "$EPOCHS" ]; do printf ' epoch %s |' "$e"; e=$((e + 1)); done
    printf '\n|---|'
    e=1
    while [ "$e" -le "$EPOCHS" ]; do printf -- '---|'; e=$((e + 1)); done
    printf '\n'
    for r in 5b_pa_full_approx 5_pa_full; do
        m=$RECORD/$r/seed$SEED/metrics.jsonl
        [ ! -f "$m" ] || line "\`$r\` (record)" "$m"
    done
    for row in $ROWS; do
        line "$LABEL \`$row\`" "$OUT/$row/metrics.jsonl"
    done
} >"$OUT/results.md"
cat "$OUT/results.md"
