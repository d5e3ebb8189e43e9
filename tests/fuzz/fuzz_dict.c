/* fuzz_dict.c — fairseq's dict.txt: the bytes before the first "\n\n" as the
 * file (nomul_vocab_load), each line after it encoded (nomul_vocab_encode). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t n1, n2;
    fz_split(data, size, &n1, &rest, &n2);
    const char *p = fz_path("dict.txt");
    fz_write(p, data, n1);
    nomul_vocab *v = nomul_vocab_load(p);
    if (!v)
        return 0;
    char *text = fz_string(rest, n2), *lines[256];
    int n = fz_lines(text, lines, 256), ids[64];
    for (int i = 0; i < n; i++) {
        int k = nomul_vocab_encode(v, lines[i], ids, 64);
        for (int j = 0; j < k; j++)
            if (ids[j] < 0 || ids[j] >= nomul_vocab_size(v))
                abort();
    }
    for (int i = 0; i < nomul_vocab_size(v); i++) {
        const char *t = nomul_vocab_token(v, i);
        if (nomul_vocab_id(v, t) < 0)
            abort(); /* every token looks up to an id */
    }
    nomul_vocab_free(v);
    free(text);
    return 0;
}
