#!/bin/sh
# run_ablation.sh — the paper's ablation on Fashion-MNIST, for the small ViT
# and ResNet20: float; PAM products (linear, conv, bmm) with the approximate
# backward; with the exact backward; + PA softmax, GELU and norms; + PA loss;
# + PA optimizer (fully multiplication-free). Same hyperparameters for every
# row (fmnist/vit.json, fmnist/resnet20.json); two seeds for the first and the
# last row. Then writes the table (results.md) and the curves (SVG).
#
#   sh experiments/run_ablation.sh [OUT]        (default: runs/ablation)
#   MODELS="vit" sh experiments/run_ablation.sh  (one model only)
#   ROWS=6c_pa_full_approx SEEDS="0 1 2" sh experiments/run_ablation.sh
#                                               (other rows: 6b_pa_full_delta, 6c_pa_full_approx)
set -eu
NOMUL=${NOMUL:-build/nomul}
OUT=${1:-runs/ablation}
MODELS=${MODELS:-"vit resnet20"}
E=$(dirname "$0")/fmnist
ROWS=${ROWS:-"1_float 2_pam_approx 3_pam_exact 4_pa_softmax_norm 5_pa_loss 6_pa_full"}
SEEDS=${SEEDS:-}
for model in $MODELS; do
    for row in $ROWS; do
        seeds=${SEEDS:-0}
        case $row in 1_float | 6_pa_full) seeds=${SEEDS:-"0 1"} ;; esac
        for seed in $seeds; do
            dir=$OUT/$model/$row/seed$seed
            mkdir -p "$dir"
            echo "== $model $row seed $seed"
            "$NOMUL" train --config "$E/$model.json" --config "$E/$row.json" --set seed=$seed \
                --set out_dir="$dir" --progress lines >"$dir/summary.txt" 2>"$dir/train.log"
            cat "$dir/summary.txt"
        done
    done
done
sh "$(dirname "$0")/ablation_table.sh" "$OUT" >"$OUT/results.md"
for model in $MODELS; do
    "$NOMUL" plot "$OUT/$model"/*/seed0/metrics.jsonl --x step --y loss,test_acc \
        --title "$model on Fashion-MNIST: ablation" -o "$OUT/$model.svg"
done
cat "$OUT/results.md"
