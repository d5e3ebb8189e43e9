/*
 * nomul/safetensors.h — checkpoints in the safetensors format, which
 * PyTorch, JAX and NumPy users read with the `safetensors` package:
 * an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, optional string metadata under
 * "__metadata__", then the tensors' bytes, little-endian.
 *
 * Writing is atomic: the file is written beside its destination under a
 * temporary name, flushed to disk (fsync), then renamed over it, so a crash
 * or a full disk leaves the previous checkpoint intact, never half a file.
 * Reading validates everything the format promises (header bounds, JSON,
 * dtypes, shapes against byte ranges, ranges that tile the data exactly, the
 * file's length) and names the file and the tensor in every error.
 */
#ifndef NOMUL_SAFETENSORS_H
#define NOMUL_SAFETENSORS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NOMUL_ST_MAX_DIMS 8

/* One float32 tensor to write. */
typedef struct nomul_st_tensor {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;
} nomul_st_tensor;

/* Writes n tensors and nmeta key/value string pairs (meta[2i], meta[2i+1]);
 * 0 on success, -1 after a report (the destination is then untouched). */
int nomul_safetensors_write(const char *path, const nomul_st_tensor *tensors, int n,
                            const char *const *meta, int nmeta);

typedef struct nomul_safetensors nomul_safetensors;

/* Reads and validates a whole file (F32 tensors); NULL after a report. */
nomul_safetensors *nomul_safetensors_read(const char *path);
void nomul_safetensors_free(nomul_safetensors *f);

/* The tensors, in file order, and lookup by name (NULL if absent). */
int nomul_safetensors_count(const nomul_safetensors *f);
const char *nomul_safetensors_name(const nomul_safetensors *f, int i);
const float *nomul_safetensors_get(const nomul_safetensors *f, const char *name, int *ndim,
                                   const int64_t **shape);
/* A metadata value, or NULL. */
const char *nomul_safetensors_meta(const nomul_safetensors *f, const char *key);

#ifdef __cplusplus
}
#endif
#endif
