/* threads.c — thread count (NOMUL_NUM_THREADS) and aligned buffers. */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "internal.h"
#include "nomul/threads.h"

static int configured = 0;

int nomul_num_threads(void)
{
    int n = __atomic_load_n(&configured, __ATOMIC_ACQUIRE);
    if (n > 0)
        return n;
    const char *s = getenv("NOMUL_NUM_THREADS");
    char *end;
    long v = s && *s ? strtol(s, &end, 10) : 0;
    if (s && *s && (*end || v < 1 || v > 4096)) {
        nomul_report(NOMUL_EINVAL, "NOMUL_NUM_THREADS='%s' is not a thread count from 1 to 4096; "
                     "using all %d cores", s, omp_get_num_procs());
        v = 0;
    }
    n = v > 0 ? (int)v : omp_get_num_procs();
    __atomic_store_n(&configured, n, __ATOMIC_RELEASE);
    return n;
}

int nomul_get_num_threads(void) { return nomul_num_threads(); }

void nomul_set_num_threads(int n)
{
    __atomic_store_n(&configured, n > 0 ? n : 0, __ATOMIC_RELEASE);
}

void *nomul_aligned_alloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return NULL;
    return p;
}

void nomul_aligned_free(void *p) { free(p); }

static _Thread_local struct {
    float *p;
    size_t cap;
} scratch[NOMUL_SCRATCH_SLOTS];

float *nomul_scratch(int slot, size_t n)
{
    if (n == 0)
        n = 1;
    if (scratch[slot].cap < n) {
        float *p = realloc(scratch[slot].p, n * sizeof *p);
        if (!p) {
            nomul_report(NOMUL_ENOMEM, "out of memory for %zu floats of scratch", n);
            return NULL;
        }
        scratch[slot].p = p;
        scratch[slot].cap = n;
    }
    return scratch[slot].p;
}
