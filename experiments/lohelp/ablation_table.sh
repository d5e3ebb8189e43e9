#!/bin/sh
# ablation_table.sh RECORD — the Markdown table of lohelp/run_ablation.sh's
# record (experiments/lohelp/record: ROW/seedN/ with each finished run's
# summary.txt, where.txt, metrics.jsonl, test.hyp; a run folder works too):
# per row, test BLEU (beam search, detokenized, sacreBLEU's default
# against the raw references; mean over the seeds, then each seed),
# validation loss, training tokens per second, float multiplications per
# training step, where it ran, and the command; then the first test sentences
# as seed 0 of each row translates them.
set -eu
OUT=$1
N=${SAMPLES:-5}
D=${DATA:-data/lohelp-de-en}
E=experiments/lohelp
echo "| row | test BLEU | valid loss | tokens/s | float mul / step | seeds | ran on | command |"
echo "|---|---|---|---|---|---|---|---|"
for rdir in "$OUT"/*/; do
    row=$(basename "$rdir")
    # where each seed ran (once per distinct machine)
    where=$(cat "$rdir"seed*/where.txt 2>/dev/null |
        awk '!seen[$0]++ {printf "%s%s", n++ ? "; " : "", $0}')
    [ -n "$where" ] || where="?"
    for s in "$rdir"seed*/summary.txt; do
        [ -f "$s" ] || continue
        line=$(grep '^steps ' "$s" || true)
        [ -n "$line" ] || continue # a run still going, or one that failed
        fm=$(sed -n 's/^float multiplications per training step: //p' "$s")
        tps=$(grep -o '"tokens_per_s": [0-9.e+-]*' "$(dirname "$s")/metrics.jsonl" |
            awk '{t += $2; n++} END {if (n) printf "%.0f", t / n}')
        echo "$line" | awk -v tps="${tps:-0}" -v fm="${fm:-?}" \
            '{for (i = 1; i < NF; i++) v[$i] = $(i + 1)
              printf "%s %s %s %s\n", v["test_bleu"], v["valid_loss"], tps, fm}'
    done | awk -v row="$row" -v where="$where" -v e="$E" '
        # BLEU means to two decimals with halves away from zero, as lr_choice.sh
        function r2(x) { return sprintf("%.2f", (x < 0 ? -1 : 1) * int((x < 0 ? -x : x) * 100 + 0.5 + 1e-6) / 100) }
        {b[NR] = $1; l += $2; tps += $3; fm = $4}
        END {
            if (!NR) exit
            sb = 0; each = ""
            for (i = 1; i <= NR; i++) {
                sb += b[i]
                each = each sprintf("%s%.2f", i > 1 ? ", " : "", b[i])
            }
            printf "| %s | %s | %.4f | %.0f | %s | %s | %s | `ROWS=%s sh %s/run_ablation.sh` |\n",
                row, r2(sb / NR), l / NR, tps / NR, fm, each, where, row, e
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
