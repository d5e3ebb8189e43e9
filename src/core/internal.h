/* internal.h — helpers shared inside libnomul (not installed). */
#ifndef NOMUL_CORE_INTERNAL_H
#define NOMUL_CORE_INTERNAL_H

#include "nomul/error.h"

/* Records an error for this thread and calls the handler. */
void nomul_report(nomul_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The number of threads the kernels use: NOMUL_NUM_THREADS, or every core. */
int nomul_num_threads(void);

/* Aligned allocation for packed panels (64 bytes); NULL on failure. */
void *nomul_aligned_alloc(size_t bytes);
void nomul_aligned_free(void *p);

/* A per-thread scratch buffer of at least n floats, kept and reused between
 * calls (no allocation in a training step's steady state); NULL (after a
 * report) when out of memory. Each slot is one independent buffer. */
enum { NOMUL_SCRATCH_ROW, NOMUL_SCRATCH_NORM, NOMUL_SCRATCH_OP, NOMUL_SCRATCH_SLOTS };
float *nomul_scratch(int slot, size_t n);

#endif
