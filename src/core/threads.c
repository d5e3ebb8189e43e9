/* threads.c — thread count (NOMUL_NUM_THREADS), aligned buffers and the
 * per-thread scratch buffers (internal.h). */
#include <pthread.h>
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

int nomul_fn_threads(long work) { return work >= 8192 ? nomul_num_threads() : 1; }

void nomul_zero_floats(float *p, long n)
{
    const int nt = nomul_light_threads(n);
    if (nt <= 1) {
        memset(p, 0, (size_t)n * sizeof *p);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const int tn = omp_get_num_threads(); /* 1 where nested in a team */
        long per = (n + tn - 1) / tn, lo = per * omp_get_thread_num();
        long hi = lo + per < n ? lo + per : n;
        if (hi > lo)
            memset(p + lo, 0, (size_t)(hi - lo) * sizeof *p);
    }
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

/* This thread's scratch buffers (internal.h): the fixed slots, then the
 * keyed ones, in one table that grows with the highest slot asked for. */
typedef struct {
    void *p;
    size_t cap; /* bytes */
} scratch_buf;
static _Thread_local scratch_buf *scratch;
static _Thread_local int scratch_n;

/* A thread's buffers are freed when it ends (libgomp ends the threads a
 * smaller team no longer needs): the table is registered under a key whose
 * destructor frees it. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *table)
{
    scratch_buf *t = table;
    for (int i = 0; t && i < scratch_n; i++)
        nomul_aligned_free(t[i].p);
    free(t);
    scratch = NULL;
    scratch_n = 0;
}

static void scratch_key_make(void) { (void)pthread_key_create(&scratch_key, scratch_free); }

void *nomul_scratch_bytes(int slot, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    if (slot >= scratch_n) {
        int n = slot + 1 > 2 * scratch_n ? slot + 1 : 2 * scratch_n;
        scratch_buf *t = realloc(scratch, (size_t)n * sizeof *t);
        if (!t) {
            nomul_report(NOMUL_ENOMEM, "out of memory for %d scratch slots", n);
            return NULL;
        }
        memset(t + scratch_n, 0, (size_t)(n - scratch_n) * sizeof *t);
        scratch = t;
        scratch_n = n;
        pthread_once(&scratch_once, scratch_key_make);
        (void)pthread_setspecific(scratch_key, t);
    }
    scratch_buf *b = &scratch[slot];
    if (b->cap < bytes) {
        /* a quarter more than the old size at least: sizes that creep up
         * from step to step (batches of varying length) cost a few copies
         * and page faults, not one per step */
        if (b->cap && bytes < b->cap + b->cap / 4)
            bytes = b->cap + b->cap / 4;
        void *p = nomul_aligned_alloc(bytes);
        if (!p) {
            nomul_report(NOMUL_ENOMEM, "out of memory for %zu bytes of scratch", bytes);
            return NULL;
        }
        if (b->cap)
            memcpy(p, b->p, b->cap);
        nomul_aligned_free(b->p);
        b->p = p;
        b->cap = bytes;
    }
    return b->p;
}

float *nomul_scratch(int slot, size_t n)
{
    return nomul_scratch_bytes(slot, (n ? n : 1) * sizeof(float));
}

void nomul_scratch_release(int first, int count)
{
    for (int i = first; i < scratch_n && i - first < count; i++) {
        nomul_aligned_free(scratch[i].p);
        scratch[i].p = NULL;
        scratch[i].cap = 0;
    }
}
