#!/bin/sh
# run.sh — a fixed set of short training runs (every model family, float and
# fully piecewise affine, exact and approximate) whose per-step losses,
# evaluation figures and final parameters a refactor must leave unchanged,
# bit for bit, on the same machine and thread count.
#
#   sh experiments/regress/run.sh OUT          (needs data/ding-de-en:
#                                               sh experiments/ding/prepare.sh)
#   python3 experiments/regress/compare.py OUT_BEFORE OUT_AFTER
#
# Each run leaves OUT/NAME/{metrics.jsonl,checkpoint_last.safetensors,stdout}.
set -eu
NOMUL=${NOMUL:-build/nomul}
OUT=$1
mkdir -p "$OUT"
E=experiments
run() {
    name=$1; shift
    rm -rf "$OUT/$name"
    "$NOMUL" train "$@" --set out_dir="$OUT/$name" --set log_every=1 --progress lines \
        >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" || { echo "run $name failed"; cat "$OUT/$name.stderr"; exit 1; }
    echo "ran $name"
}
IMG="--set data.train_limit=512 --set data.test_limit=128 --set warmup_steps=2"
DEIT="--set aug.randaugment_n=2 --set aug.erase_prob=0.25 --set mixup=0.8 --set cutmix=1.0 --set drop_path=0.1"
for cfg in 1_float 6_pa_full 6c_pa_full_approx 2_pam_approx; do
    # shellcheck disable=SC2086
    run "vit_$cfg" --config $E/fmnist/vit.json --config $E/fmnist/$cfg.json $IMG $DEIT \
        --set steps=8 --set batch_size=32
done
for cfg in 1_float 6_pa_full 6c_pa_full_approx; do
    # shellcheck disable=SC2086
    run "resnet20_$cfg" --config $E/fmnist/resnet20.json --config $E/fmnist/$cfg.json $IMG \
        --set steps=4 --set batch_size=16 --set aug.crop_pad=2
done
for model in resnext20_4x16 vgg13 convmixer_256_8; do
    for cfg in 1_float 6_pa_full; do
        # shellcheck disable=SC2086
        run "${model}_$cfg" --config $E/fmnist/resnet20.json --config $E/fmnist/$cfg.json $IMG \
            --set model=$model --set steps=2 --set batch_size=8 --set data.test_limit=16
    done
done
TR="--set model=transformer_tiny --set steps=6 --set warmup_steps=2 --set max_tokens=1024 --set beam=3 --set max_len_b=5"
for cfg in 1_float 5_pa_full 5b_pa_full_approx; do
    # shellcheck disable=SC2086
    run "transformer_$cfg" --config $E/ding/transformer.json --config $E/ding/ablation.json \
        --config $E/ding/$cfg.json $TR
done
# the evaluation and translation commands on the runs' checkpoints
"$NOMUL" eval --checkpoint "$OUT/vit_6_pa_full/checkpoint_last.safetensors" >"$OUT/eval_vit.stdout" 2>&1
head -n 20 data/ding-de-en/test.de | "$NOMUL" translate \
    --checkpoint "$OUT/transformer_5_pa_full/checkpoint_last.safetensors" >"$OUT/translate.stdout" 2>&1
"$NOMUL" audit >"$OUT/audit.stdout" 2>&1
"$NOMUL" audit --config $E/fmnist/6_pa_full.json >"$OUT/audit_pa.stdout" 2>&1
echo "done: $OUT"
