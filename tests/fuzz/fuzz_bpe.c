/* fuzz_bpe.c — BPE: the bytes before the first "\n\n" as a merges file
 * (nomul_bpe_load), each line after it segmented (nomul_bpe_apply, then
 * nomul_bpe_remove) and learnt from (nomul_bpe_learn, a few merges). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t n1, n2;
    fz_split(data, size, &n1, &rest, &n2);
    const char *p = fz_path("codes");
    fz_write(p, data, n1);
    char *text = fz_string(rest, n2), *lines[256];
    int n = fz_lines(text, lines, 256);
    nomul_bpe *b = nomul_bpe_load(p);
    for (int i = 0; b && i < n; i++) {
        char *o = nomul_bpe_apply(b, lines[i]);
        if (o)
            nomul_bpe_remove(o);
        free(o);
    }
    nomul_bpe_free(b);
    nomul_bpe *l = nomul_bpe_learn((const char *const *)lines, n, 1 + (int)(size % 16), 1);
    if (l && !nomul_bpe_save(l, p)) {
        nomul_bpe *again = nomul_bpe_load(p);
        if (!again && nomul_bpe_merges(l) > 0)
            abort(); /* what nomul writes it must read */
        nomul_bpe_free(again);
    }
    nomul_bpe_free(l);
    free(text);
    return 0;
}
