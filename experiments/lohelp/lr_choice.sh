#!/bin/sh
# lr_choice.sh LR=RECORD... — the ablation with a learning rate per row,
# chosen on the validation split (issue 16). Each argument names a record of
# run_ablation.sh (RECORD/ROW/seedN/summary.txt) and the learning rate its
# runs used, e.g.
#
#   sh experiments/lohelp/lr_choice.sh 0.0015=experiments/lohelp/record \
#       0.001=experiments/lohelp/lr_sweep/lr0.001
#
# For each row, the rate is the one whose runs end with the lowest mean
# validation loss over the seeds that ran at every rate of that row (so that
# each rate is judged on the same seeds); test BLEU plays no part in the
# choice. At the chosen rate the table gives the mean test BLEU and
# validation loss over all its seeds, each seed's BLEU, the difference to
# float's mean BLEU at float's own chosen rate, and every rate's validation
# loss on the shared seeds. A row that ran at one rate only is marked so.
set -eu
[ $# -ge 1 ] || { echo "usage: lr_choice.sh LR=RECORD..." >&2; exit 2; }
E=experiments/lohelp
for arg in "$@"; do
    lr=${arg%%=*}
    rec=${arg#*=}
    [ -d "$rec" ] || { echo "lr_choice.sh: $rec is not a folder" >&2; exit 2; }
    for s in "$rec"/*/seed*/summary.txt; do
        [ -f "$s" ] || continue
        line=$(grep '^steps ' "$s" || true)
        [ -n "$line" ] || continue # unfinished
        seed=$(basename "$(dirname "$s")")
        row=$(basename "$(dirname "$(dirname "$s")")")
        echo "$line" | awk -v row="$row" -v lr="$lr" -v seed="${seed#seed}" \
            '{for (i = 1; i < NF; i++) v[$i] = $(i + 1)
              print row, lr, seed, v["valid_loss"], v["test_bleu"]}'
    done
done | sort -k1,1 -k2,2g -k3,3n | awk -v e="$E" '
    # to 2 decimals, halves away from zero: means of two-decimal values end
    # in 5 at the third decimal, which %.2f of the binary value may round
    # either way (30.025 printed 30.02)
    function r2(x) { return sprintf("%.2f", (x < 0 ? -1 : 1) * int((x < 0 ? -x : x) * 100 + 0.5 + 1e-6) / 100) }
    {
        r = $1; lr = $2
        if (!(r in seenrow)) { seenrow[r] = 1; rows[++nr] = r }
        if (!((r, lr) in seenlr)) { seenlr[r, lr] = 1; nl[r]++; lrs[r, nl[r]] = lr }
        vl[r, lr, $3] = $4; bl[r, lr, $3] = $5; has[r, lr, $3] = 1
        if (!((r, $3) in seenseed)) { seenseed[r, $3] = 1; ns[r]++; seeds[r, ns[r]] = $3 }
    }
    END {
        for (i = 1; i <= nr; i++) {
            r = rows[i]; best = ""; bestv = 1e30; per = ""
            for (j = 1; j <= nl[r]; j++) {
                lr = lrs[r, j]; sum = 0; n = 0
                for (k = 1; k <= ns[r]; k++) {
                    s = seeds[r, k]; all = 1
                    for (q = 1; q <= nl[r]; q++) if (!((r, lrs[r, q], s) in has)) all = 0
                    if (all) { sum += vl[r, lr, s]; n++ }
                }
                m = n ? sum / n : 1e30
                per = per sprintf("%s%s: %.3f", j > 1 ? "; " : "", lr, m)
                if (n && m < bestv) { bestv = m; best = lr; shared = n }
            }
            if (best == "") continue
            b = 0; v = 0; n = 0; each = ""
            for (k = 1; k <= ns[r]; k++) {
                s = seeds[r, k]
                if (!((r, best, s) in has)) continue
                b += bl[r, best, s]; v += vl[r, best, s]; n++
                each = each sprintf("%s%.2f", n > 1 ? ", " : "", bl[r, best, s])
            }
            chosen[r] = best; bleu[r] = b / n; valid[r] = v / n; eachs[r] = each
            rates[r] = nl[r] > 1 ? per sprintf(" (%d shared seed%s)", shared, shared > 1 ? "s" : "") \
                                 : per " (one rate only)"
        }
        print "| row | lr (chosen on validation) | test BLEU | vs float | valid loss | seeds (BLEU) | validation loss per lr | command |"
        print "|---|---|---|---|---|---|---|---|"
        for (i = 1; i <= nr; i++) {
            r = rows[i]
            if (!(r in chosen)) continue
            # the difference of the two printed means, so that it adds up
            gap = ("1_float" in bleu) ? r2(r2(bleu[r]) - r2(bleu["1_float"])) : "?"
            if (gap !~ /^-/ && gap != "?") gap = "+" gap
            printf "| %s | %s | %s | %s | %.3f | %s | %s | `SETS=\"--set lr=%s\" ROWS=%s sh %s/run_ablation.sh` |\n",
                r, chosen[r], r2(bleu[r]), gap, valid[r], eachs[r], rates[r], chosen[r], r, e
        }
    }'
