#!/bin/sh
# ablation_table.sh OUT — the Markdown table of a run_ablation.sh folder:
# per model and row, test accuracy and loss (mean over seeds, and each seed),
# training seconds per epoch, float multiplications per training step.
set -eu
OUT=$1
echo "| model | row | test accuracy % | test loss | s / epoch | float mul / step | seeds |"
echo "|---|---|---|---|---|---|---|"
for mdir in "$OUT"/*/; do
    model=$(basename "$mdir")
    for rdir in "$mdir"*/; do
        row=$(basename "$rdir")
        for s in "$rdir"seed*/summary.txt; do
            [ -f "$s" ] || continue
            m=$(dirname "$s")/metrics.jsonl
            # the summary line, then the mean epoch time from the metrics
            line=$(grep '^steps ' "$s" || true)
            [ -n "$line" ] || continue # a run still going, or one that failed
            fm=$(sed -n 's/^float multiplications per training step: //p' "$s")
            ep=$(grep -o '"epoch_seconds": [0-9.e+-]*' "$m" | awk '{t += $2; n++} END {if (n) printf "%.0f", t / n}')
            echo "$line" | awk -v ep="$ep" -v fm="${fm:-?}" \
                '{for (i = 1; i < NF; i++) v[$i] = $(i + 1); printf "%s %s %s %s\n", v["test_acc"], v["test_loss"], ep, fm}'
        done | awk -v model="$model" -v row="$row" '
            {acc[NR] = $1; loss[NR] = $2; ep += $3; fm = $4}
            END {
                if (!NR) exit
                sa = 0; sl = 0; each = ""
                for (i = 1; i <= NR; i++) {
                    sa += acc[i]; sl += loss[i]
                    each = each sprintf("%s%.2f", i > 1 ? ", " : "", 100 * acc[i])
                }
                printf "| %s | %s | %.2f | %.4f | %.0f | %s | %s |\n", model, row, 100 * sa / NR, sl / NR, ep / NR, fm, each
            }'
    done
done
