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

#endif
