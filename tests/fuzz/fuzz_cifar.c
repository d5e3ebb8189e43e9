/* fuzz_cifar.c — nomul_image_set_from_cifar on 1 to 80 files cut evenly from
 * the fuzzer's bytes (byte 0: the count; byte 1: one or two label bytes). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const int nfiles = 1 + data[0] % 80, label_bytes = 1 + (data[1] & 1);
    const uint8_t *d = data + 2;
    size_t n = size - 2, each = n / (size_t)nfiles;
    char names[80][16];
    const char *paths[80];
    for (int i = 0; i < nfiles; i++) {
        snprintf(names[i], sizeof names[i], "b%d.bin", i);
        char *p = strdup(fz_path(names[i]));
        size_t len = i == nfiles - 1 ? n - each * (size_t)i : each;
        fz_write(p, d + each * (size_t)i, len);
        paths[i] = p;
    }
    nomul_image_set_free(nomul_image_set_from_cifar(paths, nfiles, label_bytes));
    for (int i = 0; i < nfiles; i++)
        free((char *)paths[i]);
    return 0;
}
