/* fuzz_text.c — parallel text: the bytes cut at the first "\n\n" into a
 * source and a target file (nomul_parallel_read), and all of them as a
 * stream (nomul_text_read_lines, as nomul translate reads stdin). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t n1, n2;
    fz_split(data, size, &n1, &rest, &n2);
    const char *src = fz_path("train.de"), *tgt = fz_path("train.en");
    fz_write(src, data, n1);
    fz_write(tgt, rest, n2);
    nomul_parallel_free(nomul_parallel_read(src, tgt));
    FILE *f = fopen(src, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size))
        abort();
    fclose(f);
    f = fopen(src, "rb");
    char **lines;
    long n = nomul_text_read_lines(f, "stream", &lines);
    fclose(f);
    if (n >= 0)
        nomul_text_free_lines(lines, n);
    return 0;
}
