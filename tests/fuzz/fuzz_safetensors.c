/* fuzz_safetensors.c — nomul_safetensors_read on the fuzzer's bytes as a file. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fz_path("t.safetensors");
    fz_write(p, data, size);
    nomul_safetensors *f = nomul_safetensors_read(p);
    if (f) {
        volatile float sink = 0;
        for (int i = 0; i < nomul_safetensors_count(f); i++) {
            int nd;
            const int64_t *sh;
            const float *x = nomul_safetensors_get(f, nomul_safetensors_name(f, i), &nd, &sh);
            int64_t n = 1;
            for (int d = 0; d < nd; d++)
                n *= sh[d];
            if (!x)
                abort(); /* a name the file lists must be found */
            if (n > 0)
                sink += x[0] + x[n - 1];
        }
        (void)sink; /* read every tensor's ends: the reads are what is checked */
        (void)nomul_safetensors_meta(f, "format");
        nomul_safetensors_free(f);
    }
    return 0;
}
