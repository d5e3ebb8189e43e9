/* fuzz_idx_gz.c — gzip IDX files: the fuzzer's image and label bytes (cut as
 * fuzz_idx.c cuts them) compressed, then byte 3's count of the label bytes'
 * tail appended raw after the image file's gzip stream (trailing garbage). */
#include <zlib.h>

#include "fuzz.h"

static void write_gz(const char *path, const uint8_t *d, size_t n, const uint8_t *tail,
                     size_t nt)
{
    gzFile g = gzopen(path, "wb");
    if (!g || (n && gzwrite(g, d, (unsigned)n) != (int)n) || gzclose(g) != Z_OK)
        abort();
    if (nt) {
        FILE *f = fopen(path, "ab");
        if (!f || fwrite(tail, 1, nt, f) != nt)
            abort();
        fclose(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const int classes = data[0];
    size_t cut = ((size_t)data[1] | (size_t)data[2] << 8) % (size - 4 + 1);
    const uint8_t *lab = data + 4 + cut;
    size_t nl = size - 4 - cut, nt = data[3] % 4 == 0 ? (data[3] >> 2) % (nl + 1) : 0;
    const char *im = fz_path("images.idx.gz"), *lb = fz_path("labels.idx.gz");
    write_gz(im, data + 4, cut, lab + nl - nt, nt);
    write_gz(lb, lab, nl - nt, NULL, 0);
    nomul_idx_free(nomul_idx_read(im));
    nomul_image_set_free(nomul_image_set_from_idx(im, lb, classes));
    return 0;
}
