#!/bin/sh
# ablation_table.sh OUT — the Markdown table of a ding/run_ablation.sh
# folder: per row, test BLEU (beam search, sacreBLEU's default; mean over
# the seeds, then each seed), validation loss, training seconds per epoch,
# float multiplications per training step; then the first test sentences
# as seed 0 of each row translates them.
set -eu
OUT=$1
N=${SAMPLES:-5}
D=${DATA:-data/ding-de-en}
echo "| row | test BLEU | valid loss | s / epoch | float mul / step | seeds |"
echo "|---|---|---|---|---|---|"
for rdir in "$OUT"/*/; do
    row=$(basename "$rdir")
    for s in "$rdir"seed*/summary.txt; do
        [ -f "$s" ] || continue
        line=$(grep '^steps ' "$s" || true)
        [ -n "$line" ] || continue # a run still going, or one that failed
        fm=$(sed -n 's/^float multiplications per training step: //p' "$s")
        ep=$(grep -o '"epoch_seconds": [0-9.e+-]*' "$(dirname "$s")/metrics.jsonl" |
            awk '{t += $2; n++} END {if (n) printf "%.0f", t / n}')
        echo "$line" | awk -v ep="$ep" -v fm="${fm:-?}" \
            '{for (i = 1; i < NF; i++) v[$i] = $(i + 1)
              printf "%s %s %s %s\n", v["test_bleu"], v["valid_loss"], ep, fm}'
    done | awk -v row="$row" '
        {b[NR] = $1; l += $2; ep += $3; fm = $4}
        END {
            if (!NR) exit
            sb = 0; each = ""
            for (i = 1; i <= NR; i++) {
                sb += b[i]
                each = each sprintf("%s%.2f", i > 1 ? ", " : "", b[i])
            }
            printf "| %s | %.2f | %.4f | %.0f | %s | %s |\n", row, sb / NR, l / NR, ep / NR, fm, each
        }'
done
echo
echo "Sample translations (the first $N test sentences; seed 0 of each row):"
i=1
while [ "$i" -le "$N" ]; do
    echo
    echo "- source: $(sed -n "${i}p" "$D/test.de")"
    echo "  - reference: $(sed -n "${i}p" "$D/test.en")"
    for rdir in "$OUT"/*/; do
        [ -f "$rdir/seed0/test.hyp" ] || continue
        echo "  - $(basename "$rdir"): $(sed -n "${i}p" "$rdir/seed0/test.hyp")"
    done
    i=$((i + 1))
done
