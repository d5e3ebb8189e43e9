/* internal.h — helpers shared inside libnomul (not installed). */
#ifndef NOMUL_CORE_INTERNAL_H
#define NOMUL_CORE_INTERNAL_H

#include <stddef.h>

#include "nomul/error.h"

/* Records an error for this thread and calls the handler. */
void nomul_report(nomul_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 on an AMD CPU (cpuid's vendor): for kernel choices that weigh
 * differently there (isa.c), never for results. */
int nomul_cpu_amd(void);
/* nomul_cpu_fma512_full's rule (nomul/isa.h), for the tests: amd the
 * vendor, family and model as cpuid's leaf 1 composes them. Its kernel
 * choices may sum in another order (float's data gradient at live inputs,
 * conv2d_internal.h): unlike nomul_cpu_amd's, they can move last bits. */
int nomul_cpu_fma512_full_of(int amd, unsigned family, unsigned model);

/* The number of threads the kernels use: NOMUL_NUM_THREADS, or every core. */
int nomul_num_threads(void);
/* Threads for an elementwise or row-wise pass over `work` elements (each
 * element or row on its own, so results do not depend on the count): all of
 * them, or one for small passes. */
int nomul_fn_threads(long work);
/* Threads for a light elementwise pass (a compare or an add per element,
 * bound by memory: ReLU, a residual add): all of them from 2^16 elements;
 * below, a team's start and barrier cost about what the pass does (and a
 * beam search's many small ones ran slower threaded). */
static inline int nomul_light_threads(long n) { return n >= 65536 ? nomul_num_threads() : 1; }
/* p[0..n) = +0, on nomul_light_threads(n) threads (one where nested in a
 * team) */
void nomul_zero_floats(float *p, long n);

/* Sums whose order must not depend on the thread count (a run reproduces
 * bit for bit at any NOMUL_NUM_THREADS): a sum over n items (images, rows)
 * is cut into nomul_sum_blocks(n, min_items, max_blocks) blocks of
 * consecutive items, block i holding items [nomul_block_start(n, blocks, i),
 * nomul_block_start(n, blocks, i + 1)); each block is summed alone, from
 * zero and in item order, by whichever thread takes it, and the blocks'
 * partial sums are then added in block order. Every bound depends on n (and
 * the caller's constants) alone. */
static inline int nomul_sum_blocks(long n, long min_items, int max_blocks)
{
    long b = min_items > 0 ? (n + min_items - 1) / min_items : n;
    if (b > max_blocks)
        b = max_blocks;
    return b < 1 ? 1 : (int)b;
}
static inline long nomul_block_start(long n, int blocks, int i)
{
    return (long)((long long)n * i / blocks);
}

/* Aligned allocation for packed panels (64 bytes); NULL on failure. */
void *nomul_aligned_alloc(size_t bytes);
void nomul_aligned_free(void *p);

/* The library's one kind of per-thread buffer: a scratch buffer of at least
 * n floats (nomul_scratch) or bytes (nomul_scratch_bytes), 64-byte aligned,
 * kept and reused between calls (no allocation in a training step's steady
 * state); it only grows, keeping its contents when it does. NULL (after a
 * report) when out of memory. Each slot is one independent buffer: a fixed
 * slot below, or NOMUL_SCRATCH_KEYED + i for an open-ended family (the
 * matrix engine's plans, one per convolution group). */
enum { NOMUL_SCRATCH_ROW, NOMUL_SCRATCH_NORM, NOMUL_SCRATCH_OP, NOMUL_SCRATCH_PART, NOMUL_SCRATCH_LN,
       NOMUL_SCRATCH_OPT, /* an optimizer step's jobs (src/train/optim.c) */
       /* the matrix engine (src/gemm): packed panels, their masks and
        * statistics, T's tiles and NaN flags; convolution's column matrices,
        * per-thread weight gradients and plan array; the float path's dyᵀ,
        * dWᵀ, row offsets and flipped weights; the exact data gradient's
        * input in wide rows, the exact weight gradient's weight tiles */
       NOMUL_SCRATCH_GEMM_Y, NOMUL_SCRATCH_GEMM_YM, NOMUL_SCRATCH_GEMM_YS, NOMUL_SCRATCH_GEMM_X,
       NOMUL_SCRATCH_GEMM_XM, NOMUL_SCRATCH_GEMM_XS, NOMUL_SCRATCH_GEMM_T,
       NOMUL_SCRATCH_GEMM_STRIP, /* a narrow direct product's strip (gemm_plan.c) */
       NOMUL_SCRATCH_GEMM_XSTAGE, /* a transposed X block, staged (gemm_driver.c) */
       NOMUL_SCRATCH_GEMM_XLISTS, /* the threads' lists of X's nonzeros (gemm_driver.c) */
       NOMUL_SCRATCH_GEMM_SMALLY, /* a small product's Y, its rows made contiguous */
       NOMUL_SCRATCH_GEMM_TNAN, NOMUL_SCRATCH_CONV_COL, NOMUL_SCRATCH_CONV_DCOL,
       NOMUL_SCRATCH_CONV_PARTIAL, NOMUL_SCRATCH_CONV_PLANS, NOMUL_SCRATCH_CONV_DYT,
       NOMUL_SCRATCH_CONV_DWT, NOMUL_SCRATCH_CONV_OFFS, NOMUL_SCRATCH_CONV_DWOFFS,
       NOMUL_SCRATCH_CONV_WFLIP, NOMUL_SCRATCH_CONV_XWIDE, NOMUL_SCRATCH_CONV_WTILE,
       NOMUL_SCRATCH_CONV_XLISTS, /* the weight gradient's lists of nonzero x (conv2d.c) */
       NOMUL_SCRATCH_CONV_FSTABLE, NOMUL_SCRATCH_CONV_FSPART, /* the forward's lists */
       NOMUL_SCRATCH_CONV_FSLISTS, /* (conv2d_sparse.c): weight table, sums, lists */
       NOMUL_SCRATCH_CONV_PLANELIST, /* a plane's nonzero x, the dW by input (dwplane.inc) */
       NOMUL_SCRATCH_CONV_WLIVE, /* the weights as the dX at live inputs reads them */
       NOMUL_SCRATCH_CONV_CLTABLE, /* the weights as the lanes along channels read them */
       NOMUL_SCRATCH_SLOTS,
       NOMUL_SCRATCH_KEYED = NOMUL_SCRATCH_SLOTS };
float *nomul_scratch(int slot, size_t n);
void *nomul_scratch_bytes(int slot, size_t bytes);
/* Frees this thread's buffers of slots first..first + count − 1 (a slot
 * never used is skipped; count may reach past the keyed ones in use). */
void nomul_scratch_release(int first, int count);

/* splitmix64: nomul_mix64 hashes a value (one step from state z), and
 * nomul_splitmix64 draws the next number of a stream kept in *state. The
 * library's randomness (dropout masks, initialisation, augmentation) is
 * integer-only and reproducible from its seeds. */
#include <math.h>
#include <stdint.h>
/* A uniform in (0, 1) from the stream *state: 53 random bits, centred, so
 * never 0 or 1 (safe under log). For initialisation and sampling only. */
static inline uint64_t nomul_splitmix64(uint64_t *state);
static inline double nomul_uniform01(uint64_t *state)
{
    return ((double)(nomul_splitmix64(state) >> 11) + 0.5) / 9007199254740992.0;
}

/* A standard normal by Box–Muller from two uniforms drawn in this order
 * (one statement would leave the order to the compiler). Initialisation
 * and sampling only. */
static inline double nomul_normal01(uint64_t *state)
{
    double u1 = nomul_uniform01(state), u2 = nomul_uniform01(state);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* splitmix64's increment: the i-th draw from state s is nomul_mix64(s + i·γ) */
#define NOMUL_SPLITMIX_GAMMA 0x9E3779B97F4A7C15ull
static inline uint64_t nomul_mix64(uint64_t z)
{
    z += NOMUL_SPLITMIX_GAMMA;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t nomul_splitmix64(uint64_t *state)
{
    uint64_t z = nomul_mix64(*state);
    *state += NOMUL_SPLITMIX_GAMMA;
    return z;
}

/* Asks the caches for the n bytes at p, line by line and the last byte's
 * line (where p is not on a line's start): a plane read next whose short
 * stream the hardware's prefetchers start late (batch norm's planes,
 * conv2d.c's padded copy, dwplane.inc, dxlive.inc). Always inlined, and so
 * must be its callers' helpers: GCC 12 finds a function whose only effect
 * is a prefetch free of effects and drops the calls to it (this one, with
 * its loop and its test, in every caller; functional.c's gathers had lost
 * bn_prefetch_plane's so) */
static inline __attribute__((always_inline)) void nomul_prefetch(const void *p, long n)
{
    const char *q = (const char *)p;
    for (long o = 0; o < n; o += 64)
        __builtin_prefetch(q + o);
    if (n > 0)
        __builtin_prefetch(q + n - 1);
}

/* relu as every path computes it (nomul_relu, batch norm's and linear's
 * fused forms): v > 0 ? v : +0, a NaN to +0 */
static inline float nomul_relu1(float v) { return v > 0.0f ? v : 0.0f; }

/* relu's derivative as nomul_relu's backward leaves it in a zeroed gradient
 * (its −0 term leaves +0), from the relu's output y: +0 + g where y > 0,
 * else +0. Chosen with a bit mask: a branch on y's sign mispredicts half the
 * time and keeps the loops from being vectorized (9 ms of ResNet20's step in
 * batch norm's, 20 ms of transformer_mini's in linear's). */
#include <string.h>
static inline float nomul_relu_grad1(float y, float g)
{
    uint32_t keep = 0u - (uint32_t)(y > 0.0f), u;
    float v = 0.0f + g;
    memcpy(&u, &v, sizeof u);
    u &= keep;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Adds n operations of class c to the audit counters (when enabled). */
#include "nomul/audit.h"
void nomul_count(nomul_op_class c, unsigned long long n);
#define NOMUL_COUNT(cls, n) nomul_count(NOMUL_COUNT_##cls, (unsigned long long)(n))

/* What a convolution's forward learned of x: the PA paths' classification
 * of its values (exponent range, zeros, infinities or NaNs; known 0 where
 * the forward classified nothing: float, or a path without a range check).
 * The autodiff tape keeps it with the node, for the backward on the same x,
 * unchanged in between, which then does not read x again to classify it
 * (src/gemm/conv2d.c; x is as large as the layer's output, and that read
 * was a third of the classifying passes of a PA ResNet step). */
#include "nomul/conv.h"
typedef struct {
    int emin, emax, zero, special, known;
} nomul_conv_xstats;
void nomul_conv2d_forward_keep(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                               const float *x, const float *weight, const float *bias, float *y,
                               nomul_conv_xstats *keep);
/* nomul_conv2d_backward (live 0) or nomul_conv2d_backward_live (1), with
 * the forward's keep (NULL or unknown: x classified here as there) */
void nomul_conv2d_backward_keep(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg, int live,
                                const float *x, const float *weight, const float *dy, float *dx,
                                float *dweight, float *dbias, const nomul_conv_xstats *keep);

#endif
