/* counts.c — the operation counters of nomul/audit.h.
 *
 * Each thread counts into a block of its own, on a cache line of its own:
 * one shared array of atomic counters, which every thread's every operation
 * updated during a counted training step (the default: audit = true), cost
 * 1-2% of the ViT's rate on two threads. A thread's block is registered at
 * its first count and kept for the process (threads are few: OpenMP's pool
 * and the callers); reading sums the blocks, resetting zeroes them. Both
 * happen between operations, as the trainer and the audit call them, never
 * while another thread counts.
 */
#include <pthread.h>
#include <stdlib.h>

#include "nomul/audit.h"

#include "internal.h"

typedef struct count_block {
    unsigned long long n[NOMUL_COUNT_CLASSES];
    struct count_block *next;
} __attribute__((aligned(64))) count_block;

static int enabled;
static count_block *blocks;  /* every thread's, newest first */
static count_block fallback; /* shared (atomics), for a thread whose block failed */
static pthread_mutex_t blocks_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local count_block *mine;

static count_block *my_block(void)
{
    if (mine)
        return mine;
    count_block *b = aligned_alloc(64, sizeof *b);
    if (!b)
        return NULL;
    for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
        b->n[i] = 0;
    pthread_mutex_lock(&blocks_mu);
    b->next = blocks;
    __atomic_store_n(&blocks, b, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&blocks_mu);
    mine = b;
    return b;
}

void nomul_counts_enable(int on) { __atomic_store_n(&enabled, on != 0, __ATOMIC_RELAXED); }

void nomul_counts_reset(void)
{
    for (count_block *b = __atomic_load_n(&blocks, __ATOMIC_ACQUIRE); b; b = b->next)
        for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
            __atomic_store_n(&b->n[i], 0, __ATOMIC_RELAXED);
    for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
        __atomic_store_n(&fallback.n[i], 0, __ATOMIC_RELAXED);
}

void nomul_counts_get(nomul_op_counts *out)
{
    for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
        out->n[i] = __atomic_load_n(&fallback.n[i], __ATOMIC_RELAXED);
    for (count_block *b = __atomic_load_n(&blocks, __ATOMIC_ACQUIRE); b; b = b->next)
        for (int i = 0; i < NOMUL_COUNT_CLASSES; i++)
            out->n[i] += __atomic_load_n(&b->n[i], __ATOMIC_RELAXED);
}

void nomul_count(nomul_op_class c, unsigned long long n)
{
    if (!__atomic_load_n(&enabled, __ATOMIC_RELAXED) || !n)
        return;
    count_block *b = my_block();
    if (b) /* this thread's alone: no read-modify-write needed between threads */
        __atomic_store_n(&b->n[c], __atomic_load_n(&b->n[c], __ATOMIC_RELAXED) + n,
                         __ATOMIC_RELAXED);
    else
        __atomic_fetch_add(&fallback.n[c], n, __ATOMIC_RELAXED);
}

const char *nomul_op_class_name(nomul_op_class c)
{
    static const char *const names[NOMUL_COUNT_CLASSES] = {
        "float mul", "float div", "float exp/log/sqrt", "float add", "PAM",
        "PAD",       "palog2",    "paexp2",            "exponent shift"};
    return (unsigned)c < NOMUL_COUNT_CLASSES ? names[c] : "?";
}

double nomul_op_class_energy_pj(nomul_op_class c)
{
    switch (c) {
    case NOMUL_COUNT_FMUL:
    case NOMUL_COUNT_FDIV:
    case NOMUL_COUNT_FTRANS: return 3.7;
    case NOMUL_COUNT_FADD: return 0.9;
    default: return 0.1;
    }
}
