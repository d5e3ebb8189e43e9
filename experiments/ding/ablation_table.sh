#!/bin/sh
# ablation_table.sh OUT — the Markdown table of a ding/run_ablation.sh
# folder: per row, test BLEU (beam search, sacreBLEU's default), validation
# loss, training seconds per epoch, float multiplications per training step;
# then the first test sentences as each row translates them.
set -eu
OUT=$1
N=${SAMPLES:-5}
D=${DATA:-data/ding-de-en}
echo "| row | test BLEU | valid loss | s / epoch | float mul / step |"
echo "|---|---|---|---|---|"
for rdir in "$OUT"/*/; do
    row=$(basename "$rdir")
    line=$(grep '^steps ' "$rdir/summary.txt" 2>/dev/null || true)
    [ -n "$line" ] || continue # a run still going, or one that failed
    fm=$(sed -n 's/^float multiplications per training step: //p' "$rdir/summary.txt")
    ep=$(grep -o '"epoch_seconds": [0-9.e+-]*' "$rdir/metrics.jsonl" |
        awk '{t += $2; n++} END {if (n) printf "%.0f", t / n}')
    echo "$line" | awk -v row="$row" -v ep="$ep" -v fm="${fm:-?}" \
        '{for (i = 1; i < NF; i++) v[$i] = $(i + 1)
          printf "| %s | %.2f | %.4f | %s | %s |\n", row, v["test_bleu"], v["valid_loss"], ep, fm}'
done
echo
echo "Sample translations (the first $N test sentences):"
i=1
while [ "$i" -le "$N" ]; do
    echo
    echo "- source: $(sed -n "${i}p" "$D/test.de")"
    echo "  - reference: $(sed -n "${i}p" "$D/test.en")"
    for rdir in "$OUT"/*/; do
        [ -f "$rdir/test.hyp" ] || continue
        echo "  - $(basename "$rdir"): $(sed -n "${i}p" "$rdir/test.hyp")"
    done
    i=$((i + 1))
done
