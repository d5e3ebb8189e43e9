#!/bin/sh
# prepare.sh — the German→English data for translation, from Debian's
# trans-de-en: sentence pairs (nomul corpus ding), a joint BPE of 4,000
# merges learned on the training set (nomul bpe learn), every split segmented
# (nomul bpe apply), and a fairseq dict.txt per language (nomul bpe dict).
#
#   sh experiments/ding/prepare.sh [DIR]      (default: data/ding-de-en)
set -eu
NOMUL=${NOMUL:-build/nomul}
D=${1:-data/ding-de-en}
MERGES=${MERGES:-4000}
"$NOMUL" corpus ding -o "$D"
"$NOMUL" bpe learn --merges "$MERGES" -o "$D/codes" "$D/train.de" "$D/train.en"
for split in train valid test; do
    for l in de en; do
        "$NOMUL" bpe apply --codes "$D/codes" <"$D/$split.$l" >"$D/$split.bpe.$l"
    done
done
"$NOMUL" bpe dict -o "$D/dict.de.txt" "$D/train.bpe.de"
"$NOMUL" bpe dict -o "$D/dict.en.txt" "$D/train.bpe.en"
