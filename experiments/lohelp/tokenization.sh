#!/bin/sh
# tokenization.sh — issue 16's choice of segmentation, measured on the
# validation split: Moses-style tokenization per language + joint BPE
# (prepare.sh: the recipe's data) against SentencePiece (Debian's
# `sentencepiece` tools: a unigram model of SPM_VOCAB pieces, default 8000,
# learned on the raw training text of both languages; no tokenizer, the pieces
# carry the spaces). Each is trained with the float recipe (transformer.json +
# ablation.json + 1_float.json, seed 0), then the validation sources are
# translated with beam 5 and scored by BLEU (sacreBLEU's defaults, nomul bleu)
# on detokenized text against the raw validation references. The test split
# is not looked at. Results go to OUT/results.md.
#   SPM_TYPE=bpe: SentencePiece's BPE model (spm_train --model_type=bpe)
#   instead of its unigram model, in data/lohelp-de-en-spm-bpe and run folder
#   OUT/spm_bpe (default unigram: data/lohelp-de-en-spm, OUT/spm).
#
#   sh experiments/lohelp/tokenization.sh [--resume] [OUT]    (default OUT: runs/lohelp_tokenization)
#   BPE_RUN=DIR: take the BPE row from a finished float run folder (its
#   checkpoint_last.safetensors), e.g. the ablation's 1_float/seed0, rather
#   than training it again.
#   SEED=N: the training seed of both rows (default 0), e.g. a second seed:
#   SEED=1 BPE_RUN=runs/lohelp_ablation/1_float/seed1 sh ... runs/lohelp_tokenization_seed1
#
# Runs checkpoint every 200 steps; --resume continues an interrupted one.
set -eu
NOMUL=${NOMUL:-build/nomul}
E=$(dirname "$0")
PROG=tokenization.sh
RESUME=0
if [ "${1:-}" = --resume ]; then
    RESUME=1
    shift
fi
OUT=${1:-runs/lohelp_tokenization}
SEED=${SEED:-0}
D=data/lohelp-de-en
T=${SPM_TYPE:-unigram}
case $T in
unigram) S=data/lohelp-de-en-spm SPM=spm ;;
bpe) S=data/lohelp-de-en-spm-bpe SPM=spm_bpe ;;
*)
    echo "tokenization.sh: SPM_TYPE must be unigram or bpe, not '$T'" >&2
    exit 2
    ;;
esac
V=${SPM_VOCAB:-8000}
for t in spm_train spm_encode spm_decode; do
    command -v "$t" >/dev/null || {
        echo "tokenization.sh: $t is missing (apt-get install sentencepiece)" >&2
        exit 2
    }
done
[ -f "$D/train.bpe.de" ] || sh "$E/prepare.sh"
. "$E/run_one.sh"
mkdir -p "$S" "$OUT"
if [ ! -f "$S/dict.en.txt" ]; then
    cat "$D/train.de" "$D/train.en" >"$S/spm_input.txt"
    spm_train --input="$S/spm_input.txt" --model_prefix="$S/spm" --vocab_size="$V" \
        --model_type="$T" --character_coverage=1.0 --input_sentence_size=2000000 \
        --shuffle_input_sentence=true --minloglevel=1
    for split in train valid test; do
        for l in de en; do
            spm_encode --model="$S/spm.model" --output_format=piece <"$D/$split.$l" \
                >"$S/$split.spm.$l"
        done
    done
    "$NOMUL" bpe dict -o "$S/dict.de.txt" "$S/train.spm.de"
    "$NOMUL" bpe dict -o "$S/dict.en.txt" "$S/train.spm.en"
fi

# train NAME [--set ...]: the float recipe into OUT/NAME (skipped when done)
train() {
    name=$1
    shift
    run_done "$OUT/$name" && return 0
    run_train "$name" "$OUT/$name" --config "$E/transformer.json" --config "$E/ablation.json" \
        --config "$E/1_float.json" --set seed="$SEED" --set out_dir="$OUT/$name" "$@" || {
        echo "tokenization.sh: the $name run failed ($OUT/$name/train.log says why)" >&2
        exit 1
    }
}

if [ -n "${BPE_RUN:-}" ]; then
    bpe_ck=$BPE_RUN/checkpoint_last.safetensors
else
    train bpe
    bpe_ck=$OUT/bpe/checkpoint_last.safetensors
fi
# the SentencePiece row: pieces in, pieces out; the test set (not scored
# here) cut to one sentence, which only the trainer's own BLEU line reads
train "$SPM" --set data.train_src="$S/train.spm.de" --set data.train_tgt="$S/train.spm.en" \
    --set data.valid_src="$S/valid.spm.de" --set data.valid_tgt="$S/valid.spm.en" \
    --set data.test_src="$S/test.spm.de" --set data.test_tgt="$S/test.spm.en" \
    --set data.src_dict="$S/dict.de.txt" --set data.tgt_dict="$S/dict.en.txt" \
    --set data.bpe_codes= --set data.tokenizer=none --set data.test_ref= \
    --set data.test_limit=1

"$NOMUL" translate --checkpoint "$bpe_ck" --input "$D/valid.de" >"$OUT/valid.bpe.hyp" \
    2>"$OUT/valid.bpe.speed"
"$NOMUL" translate --checkpoint "$OUT/$SPM/checkpoint_last.safetensors" \
    --input "$S/valid.spm.de" 2>"$OUT/valid.$SPM.speed" |
    spm_decode --model="$S/spm.model" --input_format=piece >"$OUT/valid.$SPM.hyp"
bpe=$("$NOMUL" bleu --ref "$D/valid.en" "$OUT/valid.bpe.hyp" | head -n 1)
spm=$("$NOMUL" bleu --ref "$D/valid.en" "$OUT/valid.$SPM.hyp" | head -n 1)
vloss() { sed -n 's/.*valid_loss \([0-9.]*\).*/\1/p' "$1/summary.txt"; }
{
    echo "Training seed $SEED; BPE row from $(dirname "$bpe_ck")."
    echo
    echo "| segmentation | validation BLEU (sacreBLEU defaults, beam 5) | validation loss (per token of its own segmentation) | source tokens per sentence |"
    echo "|---|---|---|---|"
    echo "| Moses tokenizer + joint BPE (8,000 merges) | $bpe | $(vloss "$(dirname "$bpe_ck")") | $(awk '{n += NF} END {printf "%.1f", n / NR}' "$D/valid.bpe.de") |"
    echo "| SentencePiece $T ($V pieces, joint) | $spm | $(vloss "$OUT/$SPM") | $(awk '{n += NF} END {printf "%.1f", n / NR}' "$S/valid.spm.de") |"
} >"$OUT/results.md"
cat "$OUT/results.md"
