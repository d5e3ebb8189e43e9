/*
 * nomul/text.h — text for translation: BLEU as sacreBLEU scores it.
 */
#ifndef NOMUL_TEXT_H
#define NOMUL_TEXT_H

#ifdef __cplusplus
extern "C" {
#endif

/* sacreBLEU's default tokenizer "13a" (mteval-v13a.pl): entities unescaped,
 * ASCII punctuation split off, periods and commas split unless between
 * digits, dashes after digits split, spaces collapsed. A malloc'd string
 * (free it), or NULL after a report. */
char *nomul_tokenize_13a(const char *line);

typedef struct nomul_bleu_result {
    double score;        /* BLEU, 0..100 */
    double precision[4]; /* n-gram precisions in percent (smoothed where 0) */
    double bp;           /* brevity penalty */
    long hyp_len, ref_len;
    long matches[4], totals[4];
} nomul_bleu_result;

/* Corpus BLEU of n hypotheses against nrefs reference sets (refs[j][s] is
 * reference j of sentence s), exactly as sacreBLEU's defaults (13a, 4-grams,
 * "exp" smoothing, closest reference length). 0, or -1 after a report. */
int nomul_bleu(const char *const *hyps, const char *const *const *refs, int nrefs, long n,
               nomul_bleu_result *r);

#ifdef __cplusplus
}
#endif

#endif
