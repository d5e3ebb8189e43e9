/* fuzz_idx.c — IDX files: nomul_idx_read and nomul_image_set_from_idx on an
 * image and a label file cut from the fuzzer's bytes (byte 0: the class
 * count; bytes 1-2: where the image file ends). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const int classes = data[0];
    size_t cut = ((size_t)data[1] | (size_t)data[2] << 8) % (size - 3 + 1);
    const char *im = fz_path("images.idx"), *lb = fz_path("labels.idx");
    fz_write(im, data + 3, cut);
    fz_write(lb, data + 3 + cut, size - 3 - cut);
    nomul_idx_free(nomul_idx_read(im));
    nomul_image_set_free(nomul_image_set_from_idx(im, lb, classes));
    return 0;
}
