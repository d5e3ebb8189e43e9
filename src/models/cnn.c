/* cnn.c — the paper's CNNs (filled in by the next commit). */
#include "models_internal.h"

const char cnn_model_names[] = "";

int cnn_model_new(const char *name, int image, int channels, int classes, uint64_t seed,
                  void **impl, const model_vtable **vt)
{
    (void)name, (void)image, (void)channels, (void)classes, (void)seed, (void)impl, (void)vt;
    return 0;
}
