#!/bin/sh
# prepare.sh — the German→English data from LibreOffice's help (Debian's
# libreoffice-help-de and libreoffice-help-en-us): sentence pairs (nomul corpus
# lohelp), Moses-style tokenization per language (nomul tokenize), a joint BPE
# learned on the tokenized training set (nomul bpe learn), every split
# segmented (nomul bpe apply), and a fairseq dict.txt per language (nomul bpe
# dict). The raw files (train.de, test.en, ...) stay beside them: test.en is
# the reference BLEU is scored against (data.test_ref).
#
#   sh experiments/lohelp/prepare.sh [DIR]      (default: data/lohelp-de-en)
#   SRC=fr TGT=en MERGES=8000 HELP_ROOT=/usr/share/libreoffice/help sh experiments/lohelp/prepare.sh DIR
set -eu
NOMUL=${NOMUL:-build/nomul}
SRC=${SRC:-de}
TGT=${TGT:-en}
D=${1:-data/lohelp-$SRC-$TGT}
MERGES=${MERGES:-8000}
HELP_ROOT=${HELP_ROOT:-/usr/share/libreoffice/help}
"$NOMUL" corpus lohelp --src "$SRC" --tgt "$TGT" --help-root "$HELP_ROOT" -o "$D"
for split in train valid test; do
    for l in "$SRC" "$TGT"; do
        "$NOMUL" tokenize --lang "$l" <"$D/$split.$l" >"$D/$split.tok.$l"
    done
done
"$NOMUL" bpe learn --merges "$MERGES" -o "$D/codes" "$D/train.tok.$SRC" "$D/train.tok.$TGT"
for split in train valid test; do
    for l in "$SRC" "$TGT"; do
        "$NOMUL" bpe apply --codes "$D/codes" <"$D/$split.tok.$l" >"$D/$split.bpe.$l"
    done
done
"$NOMUL" bpe dict -o "$D/dict.$SRC.txt" "$D/train.bpe.$SRC"
"$NOMUL" bpe dict -o "$D/dict.$TGT.txt" "$D/train.bpe.$TGT"
