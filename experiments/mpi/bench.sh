#!/bin/sh
# bench.sh — data-parallel training on this machine: each model trained for
# STEPS steps as 1 process × 2 threads and as 2 ranks × 1 thread (mpirun), at
# the same global batch; prints images/s or tokens/s of both, the bytes each
# rank sends per step and the exchange's time, then a model of N machines
# (scaling.py). Needs an MPI build (libopenmpi-dev) and, for the translation
# row, data/ding-de-en (sh experiments/ding/prepare.sh).
#
#   sh experiments/mpi/bench.sh [OUT]          (default /tmp/nomul-mpi-bench)
set -eu
NOMUL=${NOMUL:-build/nomul}
OUT=${1:-/tmp/nomul-mpi-bench}
STEPS=${STEPS:-24}
E=experiments
mkdir -p "$OUT"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
# mpirun refuses root unless told (containers, CI)
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() { # name ranks args...
    name=$1 ranks=$2; shift 2
    if [ "$ranks" = 1 ]; then
        NOMUL_NUM_THREADS=2 "$NOMUL" train "$@" --set out_dir="$OUT/$name" --progress lines \
            >"$OUT/$name.stdout" 2>"$OUT/$name.stderr"
    else
        mpirun --oversubscribe -np "$ranks" -x NOMUL_NUM_THREADS=1 -x OMP_WAIT_POLICY \
            "$NOMUL" train "$@" --set out_dir="$OUT/$name" --progress lines \
            >"$OUT/$name.stdout" 2>"$OUT/$name.stderr"
    fi || { echo "run $name failed:"; cat "$OUT/$name.stderr"; exit 1; }
}
COMMON="--set steps=$STEPS --set warmup_steps=2 --set log_every=1 --set audit=false"
IMG="--set data.train_limit=4096 --set data.test_limit=256"
for r in 1 2; do
    # shellcheck disable=SC2086
    run "vit_fmnist_pa.$r" $r --config $E/fmnist/vit.json $IMG $COMMON --set batch_size=128
    # shellcheck disable=SC2086
    run "resnet20_float.$r" $r --config $E/fmnist/resnet20.json --config $E/fmnist/1_float.json \
        $IMG $COMMON --set batch_size=128
    if [ -d data/ding-de-en ]; then
        # shellcheck disable=SC2086
        run "transformer_small_pa.$r" $r --config $E/ding/transformer.json \
            --config $E/ding/5_pa_full.json $COMMON --set max_tokens=2048 --set data.test_limit=16 \
            --set beam=1 --set max_len_b=5
    fi
done
python3 "$(dirname "$0")/scaling.py" "$OUT"
