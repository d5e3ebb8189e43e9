#!/bin/sh
# resnet20_layers.sh — where ResNet20's convolutions spend a training step,
# layer by layer: each of its layer shapes (batch 64, Fashion-MNIST's 28×28)
# through build/conv_pass_bench, forward, data gradient (live, as after a
# ReLU) and weight gradient, float, PAM exact and PAM approximate, the least
# time of ROUNDS runs taken in turn (this machine's speed swings within
# minutes), then the sums weighted by how many of each layer the network
# has, and each mode's ratio to float.
#
#   sh experiments/bench/resnet20_layers.sh [THREADS (1)] [COLD (0|1)] [ROUNDS (3)] [REPS (20)]
#
# THREADS 1 pins the runs to one core (taskset -c 1); COLD 1 has x and dy
# out of cache before each call (conv_pass_bench's cold=1), as in a
# training step, where a layer's input was written long before its
# backward. Build first: make build/conv_pass_bench.
set -eu
cd "$(dirname "$0")/../.."
T=${1:-1}
COLD=${2:-0}
ROUNDS=${3:-3}
REPS=${4:-20}
B=build/conv_pass_bench
[ -x "$B" ] || { echo "resnet20_layers.sh: $B not built (make $B)" >&2; exit 1; }
PIN=""
[ "$T" = 1 ] && command -v taskset >/dev/null && PIN="taskset -c 1"
# CIN COUT HW K STRIDE COUNT: the stem, three stages of 16, 32, 64 channels
# (each stage's first 3×3 layer strided from the second on, with its 1×1
# shortcut), as src/models/cnn.c builds resnet20 on 28×28 images
LAYERS="1 16 28 3 1 1
16 16 28 3 1 6
16 32 28 3 2 1
16 32 28 1 2 1
32 32 14 3 1 5
32 64 14 3 2 1
32 64 14 1 2 1
64 64 7 3 1 5"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    echo "$LAYERS" | while read -r ci co hw k s n; do
        for p in 0 1 2; do
            # the stem's input is the image: no data gradient
            [ "$ci" = 1 ] && [ "$p" = 1 ] && continue
            for m in 0 1 2; do
                t=$(OPENBLAS_NUM_THREADS=1 $PIN "$B" "$ci" "$co" "$hw" "$k" "$s" "$p" "$m" "$REPS" \
                    "threads=$T,cold=$COLD" | awk '{print $(NF-1)}')
                echo "${ci}x${co}_${hw}x${hw}_k${k}_s${s} $n $p $m $t" >>"$out"
            done
        done
    done
    r=$((r + 1))
done
awk -v T="$T" -v C="$COLD" '
{ k = $1 " " $2 " " $3 " " $4; if (!(k in best) || $5 < best[k]) best[k] = $5;
  lay[$1 " " $2] = 1 }
END {
    split("forward dX dW", pn, " ");
    printf "ResNet20 per layer, batch 64, %d thread(s), cold=%d: ms (ratio to float)\n", T, C;
    printf "%-22s %5s %-8s %8s %16s %16s\n", "layer", "count", "pass", "float", "PAM exact", "PAM approx";
    for (l in lay) {
        split(l, a, " ");
        for (p = 0; p < 3; p++) {
            f = best[l " " p " 0"]; if (f == "") continue;
            e = best[l " " p " 1"]; x = best[l " " p " 2"];
            printf "%-22s %5d %-8s %8.3f %8.3f (%4.2fx) %8.3f (%4.2fx)\n", a[1], a[2], pn[p + 1], f, e, e / f, x, x / f;
            tot[p, 0] += a[2] * f; tot[p, 1] += a[2] * e; tot[p, 2] += a[2] * x;
        }
    }
    for (p = 0; p < 3; p++) {
        printf "sum %-8s: float %7.2f  exact %7.2f (+%5.2f)  approx %7.2f (+%5.2f) ms\n", pn[p + 1],
               tot[p, 0], tot[p, 1], tot[p, 1] - tot[p, 0], tot[p, 2], tot[p, 2] - tot[p, 0];
        for (m = 0; m < 3; m++) all[m] += tot[p, m];
    }
    printf "sum all     : float %7.2f  exact %7.2f  approx %7.2f ms; float/exact %.2f, float/approx %.2f\n",
           all[0], all[1], all[2], all[0] / all[1], all[0] / all[2];
}' "$out" | { IFS= read -r head; echo "$head"; IFS= read -r cols; echo "$cols"; sort; }
