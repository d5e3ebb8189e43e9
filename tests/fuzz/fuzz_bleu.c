/* fuzz_bleu.c — BLEU: every line through the 13a and intl tokenizers
 * (nomul_tokenize_13a, nomul_tokenize_intl: invalid UTF-8 is an error, not
 * a crash), then the lines scored, even ones as hypotheses against odd ones
 * as references, under 13a (nomul_bleu) and under intl (nomul_bleu_opt). */
#include <math.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_dir(); /* errors silenced */
    char *text = fz_string(data, size), *lines[256];
    int n = fz_lines(text, lines, 256);
    for (int i = 0; i < n; i++) {
        free(nomul_tokenize_13a(lines[i]));
        free(nomul_tokenize_intl(lines[i]));
    }
    long pairs = n / 2;
    const char *hyp[128], *ref[128];
    for (long i = 0; i < pairs; i++) {
        hyp[i] = lines[2 * i];
        ref[i] = lines[2 * i + 1];
    }
    const char *const *refs[1] = {ref};
    nomul_bleu_result r;
    if (pairs && !nomul_bleu(hyp, refs, 1, pairs, &r) && !(r.score >= 0 && r.score <= 100.0001))
        abort();
    nomul_bleu_opts intl = {0, NOMUL_BLEU_TOK_INTL};
    if (pairs && !nomul_bleu_opt(hyp, refs, 1, pairs, &intl, &r) &&
        !(r.score >= 0 && r.score <= 100.0001))
        abort();
    free(text);
    return 0;
}
