/*
 * functional_internal.h — the float forms (functional_float.c) and the
 * piecewise affine forms (functional_pa.c, whose object the no-multiply test
 * disassembles) of the composite operations, which functional.c's public
 * entry points choose between by the nomul_op_cfg (private).
 *
 * Shapes are those of nomul/functional.h. A PA form takes the family's cfg:
 * its offset applies to every PAM (PAM(PAM(a, b), offset)) and approx_bwd
 * chooses the backward. Every form counts its own operations for the audit.
 */
#ifndef NOMUL_FUNCTIONAL_INTERNAL_H
#define NOMUL_FUNCTIONAL_INTERNAL_H

#include "../core/internal.h" /* NOMUL_COUNT, for bn_running_float */
#include "nomul/opcfg.h"

/* 1: layer norm, batch norm and GELU take their scalar PA chains, the twins
 * their array-kernel versions are tested against (tests only). */
extern int nomul_pa_chains_scalar;
/* 1: float GELU, log_softmax and logsumexp by the scalar erff and expf,
 * the exps' row sums in one chain (the twins of the libmvec paths) */
extern int nomul_float_math_scalar;

/* Whether a cross-entropy row with target t takes part (in the loss, its
 * count and its gradient): t is not ignore_index and is a class of the n.
 * Every form's row loops ask this one question. */
static inline int nomul_ce_row_used(int t, int ignore_index, int n)
{
    return t != ignore_index && t >= 0 && t < n;
}

/* ---- float forms ---- */
void nomul_softmax_forward_float(int rows, int n, const float *x, float *y);
void nomul_softmax_backward_float(int rows, int n, const float *y, const float *dy, float *dx);
/* logsumexp of each row into lse (rows) and/or x − lse into y (rows, n); either may be
 * NULL. Uncounted: log_softmax and logsumexp count their own. */
void nomul_lse_forward_float(int rows, int n, const float *x, float *y, float *lse);
void nomul_log_softmax_backward_float(int rows, int n, const float *y, const float *dy,
                                      float *dx);
void nomul_logsumexp_backward_float(int rows, int n, const float *x, const float *dlse,
                                    float *dx);
/* One row of layer norm (γ, β at j·gs, j·bs; stride 0: batch norm's one
 * value per channel); rstd is the reciprocal standard deviation, and *sq
 * (when sq is not NULL) the sum of squared deviations Σ (x − μ)², which
 * batch norm's running variance reuses. */
void nomul_ln_row_forward_float(int n, const float *xr, const float *gamma, int gs,
                                const float *beta, int bs, float eps, float *yr, float *mean,
                                float *rstd, float *sq);
void nomul_ln_row_backward_float(int n, const float *xr, const float *gamma, int gs, float mu,
                                 float r, const float *gr, float *dr, float *dgamma,
                                 float *dbeta, int bs);
/* One batch-norm channel of len values (row), gathered: training, its
 * statistics and the running ones' update; else the running ones. The plain
 * form that the in-place passes (nomul_bn_planes_forward_float, which the
 * library runs) are tested against, bit for bit. */
void nomul_bn_channel_forward_float(long len, const float *row, const float *gamma,
                                    const float *beta, float eps, float momentum, int training,
                                    float *running_mean, float *running_var, float *out,
                                    float *mean, float *rstd);
/* Batch norm's float passes over channel c of x (nb, C, S), plane by plane
 * in place: training where S is a multiple of 16 (the lanes of the gathered
 * row's sums), or the forward's sums over xrow, the channel gathered;
 * evaluation for any S; the same operations and bits as on the gathered row
 * (the backward adds into dx). 0, having done nothing, where they do not
 * apply. relu: the forward's output through relu (batch_norm_relu). */
int nomul_bn_planes_forward_float(int nb, int C, int S, int c, const float *x, const float *xrow,
                                  const float *gamma, const float *beta, float eps,
                                  float momentum, int training, float *running_mean,
                                  float *running_var, float *y, float *mean, float *rstd,
                                  int relu);
/* the passes above (and the backward below) for each instruction set
 * (bn_float.inc): nomul_bnf_passes_base, _avx2, _avx512 */
typedef struct {
    int (*planes_forward)(int nb, int C, int S, int c, const float *x, const float *xrow,
                          const float *gamma, const float *beta, float eps, float momentum,
                          int training, float *running_mean, float *running_var, float *y,
                          float *mean, float *rstd, int relu);
    int (*planes_backward)(int nb, int C, int S, int c, const float *x, const float *xrow,
                           const float *gamma, const float *relu_beta, float mu, float r,
                           const float *dy, const float *dyrow, int store, float *dx,
                           float *dgamma, float *dbeta);
} nomul_bnf_passes;
extern const nomul_bnf_passes nomul_bnf_passes_base, nomul_bnf_passes_avx2,
    nomul_bnf_passes_avx512;
/* The backward (relu_beta: batch norm followed by relu, dy the relu's
 * output gradient, masked on the fly, the relu's output recomputed from x
 * and β as the forward made it; NULL: batch norm alone); where S is not a
 * multiple of 16, over xrow and dyrow, the channel of x and of dy gathered
 * (0 without them), dx still added plane by plane (store: written, the
 * bits of adding into +0). */
int nomul_bn_planes_backward_float(int nb, int C, int S, int c, const float *x,
                                   const float *xrow, const float *gamma,
                                   const float *relu_beta, float mu, float r, const float *dy,
                                   const float *dyrow, int store, float *dx, float *dgamma,
                                   float *dbeta);
/* used: the rows whose target is not ignore_index (-1: a target out of
 * range, the loss is NaN; 0: the loss is 0). */
float nomul_cross_entropy_forward_float(int rows, int n, const float *logp, const int *target,
                                        int ignore_index, float smoothing, int used);
void nomul_cross_entropy_backward_float(int rows, int n, const int *target, int ignore_index,
                                        float smoothing, float dloss, int used, float *dlogp);
/* Both backward passes at once, row by row (nomul_cross_entropy_logits_backward):
 * dx += log_softmax's backward of the cross-entropy's dlogp (store: dx = +0 +
 * it), each row's dlogp made in a row buffer as the cross-entropy pass writes
 * it into zeros (the same bits as the two passes) */
void nomul_ce_lsm_backward_float(int rows, int n, const float *logp, const int *target,
                                 int ignore_index, float smoothing, float dloss, int used,
                                 int store, float *dx);
/* the used rows' losses, in order (nomul_cross_entropy_row_losses) */
int nomul_cross_entropy_rows_float(int rows, int n, const float *logp, const int *target,
                                   int ignore_index, float smoothing, float *loss);
void nomul_gelu_forward_float(long n, const float *x, float *y);
void nomul_gelu_backward_float(long n, const float *x, const float *dy, float *dx);

/* ---- piecewise affine forms, the same shapes; rstd is the divisor
 * pa_sqrt(σ² + eps) itself ---- */
/* keep: NULL, or e (rows·n), then each row's Σe and s (rows each), written
 * by the forward and read by the exact backward instead of recomputing them */
void nomul_softmax_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y,
                              float *keep);
void nomul_softmax_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                               const float *y, const float *keep, const float *dy, float *dx);
void nomul_lse_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y,
                          float *lse);
void nomul_log_softmax_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                   const float *dy, float *dx);
void nomul_logsumexp_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                 const float *dlse, float *dx);
/* (*sum, *sq where not NULL: Σx and Σ PAM(x − μ, x − μ), as the float row's;
 * the exact backward takes them back as ksum, kq) */
void nomul_ln_row_forward_pa(const nomul_op_cfg *cfg, int n, const float *xr,
                             const float *gamma, int gs, const float *beta, int bs, float eps,
                             float *yr, float *mean, float *rstd, float *sum, float *sq);
/* The forward of k ≤ 8 contiguous rows of a layer norm (γ, β one per
 * column) at once: the same bits as nomul_ln_row_forward_pa row by row;
 * returns k, or 0 (nothing done) under the twin (nomul_pa_chains_scalar),
 * for k > 8 or out of scratch memory. */
enum { NOMUL_PA_GROUP = 8 }; /* rows taken at a time by the PA row operations */
int nomul_ln_rows_forward_pa(const nomul_op_cfg *cfg, int k, int n, const float *x,
                             const float *gamma, const float *beta, float eps, float *y,
                             float *mean, float *rstd, float *ksum, float *kq);
/* The backward of k ≤ 8 contiguous rows of a layer norm (dγ, dβ one per
 * column, added row after row): the same bits as nomul_ln_row_backward_pa
 * row by row; returns k, or 0 (nothing done) as nomul_ln_rows_forward_pa. */
int nomul_ln_rows_backward_pa(const nomul_op_cfg *cfg, int k, int n, const float *x,
                              const float *gamma, const float *mean, const float *rstd,
                              const float *ksum, const float *kq, float eps, const float *dy,
                              float *dx, float *dgamma, float *dbeta);
/* dd: n floats of scratch for the exact chain (NULL: approximate only);
 * ksum, kq: the forward's Σx and Σ PAM(d, d) of the row (NULL: recomputed) */
void nomul_ln_row_backward_pa(const nomul_op_cfg *cfg, int n, const float *xr,
                              const float *gamma, int gs, float mu, float r, float eps,
                              const float *ksum, const float *kq, const float *gr, float *dr,
                              float *dgamma, float *dbeta, int bs, float *dd);
/* Batch norm's PA training passes over channel c of x (nb, C, S), in place:
 * the passes whose sums run in lanes plane by plane where an image's plane
 * fills whole lanes (S a multiple of 16), else over xrow (and, the
 * backward, dyrow), the channel gathered (NULL: not gathered); the output
 * and dx plane by plane. relu (batch_norm_relu's forward): the output through
 * nomul_relu1 as it is written. ry (batch_norm_relu's backward, where not
 * gathered): the ReLU's output, dy read through its derivative (a gathered
 * dy already was). The same operations and bits as on the gathered row
 * (nomul_bn_channel_forward_pa, nomul_ln_row_backward_pa; the backward adds
 * into dx, or with store writes it, the bits of adding into +0). 0, having
 * done nothing, where they do not apply (no fused passes, or S not a
 * multiple of 16 and no rows). */
int nomul_bn_planes_forward_pa(const nomul_op_cfg *cfg, int nb, int C, int S, int c,
                               const float *x, const float *xrow, const float *gamma,
                               const float *beta, float eps, float momentum, float *running_mean,
                               float *running_var, float *y, float *mean, float *rstd,
                               float *ksum, float *kq, int relu);
int nomul_bn_planes_backward_pa(const nomul_op_cfg *cfg, int nb, int C, int S, int c,
                                const float *x, const float *xrow, const float *gamma, float mu,
                                float r, float eps, const float *ksum, const float *kq,
                                const float *dy, const float *dyrow, const float *ry, int store,
                                float *dx, float *dgamma, float *dbeta);
/* Batch norm's PA evaluation of channel c, plane by plane (any S): y =
 * PAM(PAD(x − μ_run, pa_sqrt(σ²_run + ε)), γ) + β through the fused output
 * pass, with relu through nomul_relu1 as it is written: the bits of the
 * gathered row's (nomul_bn_channel_forward_pa, then the relu). 0, having
 * done nothing, where there are no fused passes. */
int nomul_bn_planes_eval_pa(const nomul_op_cfg *cfg, int nb, int C, int S, int c,
                            const float *x, const float *gamma, const float *beta, float eps,
                            const float *running_mean, const float *running_var, float *y,
                            int relu);
void nomul_bn_channel_forward_pa(const nomul_op_cfg *cfg, long len, const float *row,
                                 const float *gamma, const float *beta, float eps,
                                 float momentum, int training, float *running_mean,
                                 float *running_var, float *out, float *mean, float *rstd,
                                 float *ksum, float *kq);
float nomul_cross_entropy_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                     const int *target, int ignore_index, float smoothing,
                                     int used);
void nomul_cross_entropy_backward_pa(const nomul_op_cfg *cfg, int rows, int n,
                                     const float *logp, const int *target, int ignore_index,
                                     float smoothing, float dloss, int used, float *dlogp);
/* total (not NULL): the loss's numerator over a global batch, with used its
 * rows (data parallelism), instead of these rows' */
void nomul_cross_entropy_backward_pa_total(const nomul_op_cfg *cfg, int rows, int n,
                                           const float *logp, const int *target,
                                           int ignore_index, float smoothing, float dloss,
                                           int used, const float *total, float *dlogp);
/* Both backward passes at once (nomul_cross_entropy_logits_backward): dx +=
 * log_softmax's backward of the cross-entropy's dlogp, made a group of rows
 * at a time in a row buffer (the same bits as the two passes) */
void nomul_ce_lsm_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logits,
                              const float *logp, const float *keep, const int *target,
                              int ignore_index, float smoothing, float dloss, int used,
                              const float *total_in, int store, float *dx);
/* nomul_cross_entropy_logits_forward in PA (used: the rows whose target is
 * not ignore_index, -1 for a target out of range): log_softmax's rows and the
 * row losses a group of rows at a time, the loss returned; logp may be NULL,
 * keep (nomul_ce_keep_floats_pa floats) is not */
long nomul_ce_keep_floats_pa(const nomul_op_cfg *cfg, int rows, int n);
float nomul_ce_logits_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logits,
                                 const int *target, int ignore_index, float smoothing, int used,
                                 float *logp, float *keep);
int nomul_cross_entropy_rows_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                const int *target, int ignore_index, float smoothing,
                                float *loss);
/* keep: NULL, or 2n floats (σ, then 1 + pa_exp(−z)) written by the forward
 * and read by the backward instead of recomputing them (the same bits) */
void nomul_gelu_forward_pa(const nomul_op_cfg *cfg, long n, const float *x, float *y,
                           float *keep);
void nomul_gelu_backward_pa(const nomul_op_cfg *cfg, long n, const float *x, const float *keep,
                            const float *dy, float *dx);

/* Batch norm's sums (float and PA): LANES interleaved partial sums (lane l
 * takes the terms at j ≡ l mod LANES, in j order, from 0), added pairwise in
 * a fixed order at the end. A sum in order costs an addition's latency per
 * term (4 cycles; batch norm's channels are 65,536 long in ResNet20 at batch
 * 64), these vectorize, and the order is a function of n only: the same bits
 * on every instruction set. lanes_add puts term j into its lane (the scalar
 * twins', one term at a time); lane_sum sums an array. */
enum { LANES = 16 };

static inline float lanes_total(float *acc)
{
    for (int w = LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0];
}

static inline void lanes_add(float *acc, long j, float v)
{
    acc[j % LANES] += v;
}

/* acc's lanes += x[0..n) (x[0] into lane 0): a sum carried over pieces of a
 * row, each starting at a multiple of LANES. The lanes in vectors of the
 * includer's instruction set (GCC's extension: lane by lane, the same
 * operations), kept in registers: as an array of 16 they were a load, an
 * add and a store a step, a store-forwarding chain (batch norm's Σx at
 * 16 × 784, batch 64, took longer than its output pass). */
#if defined(__AVX512F__)
#define LANES_VB 64
#elif defined(__AVX__)
#define LANES_VB 32
#else
#define LANES_VB 16
#endif
typedef float lanes_part __attribute__((vector_size(LANES_VB)));
enum { LANES_NP = LANES * (int)sizeof(float) / LANES_VB };

/* Batch norm reads a channel as nb planes of S values, C·S apart: each
 * plane a short stream of its own, which the hardware's prefetchers start
 * late, so that the first pass over a channel waits on memory plane after
 * plane. The first passes (the gathers of functional.c, float's passes over
 * planes in bn_float.inc) ask for the plane BN_AHEAD planes on, p being
 * plane b's start (nothing past plane nb − 1). The PA passes, with more
 * arithmetic a value, gained nothing from it and go without. */
enum { BN_AHEAD = 6 };
static inline __attribute__((always_inline)) void bn_prefetch_plane(const float *p, int b, int nb,
                                                                    long stride, int S)
{
    if (b + BN_AHEAD >= nb)
        return;
    nomul_prefetch(p + (long)BN_AHEAD * stride, (long)S * 4);
}

static inline void lanes_accumulate(float *acc, long n, const float *x)
{
    lanes_part a[LANES_NP], v;
#pragma GCC unroll 4
    for (int p = 0; p < LANES_NP; p++)
        memcpy(&a[p], acc + p * (LANES_VB / 4), LANES_VB);
    long j = 0;
    for (; j + LANES <= n; j += LANES)
#pragma GCC unroll 4
        for (int p = 0; p < LANES_NP; p++) {
            memcpy(&v, x + j + p * (LANES_VB / 4), LANES_VB);
            a[p] += v;
        }
#pragma GCC unroll 4
    for (int p = 0; p < LANES_NP; p++)
        memcpy(acc + p * (LANES_VB / 4), &a[p], LANES_VB);
    for (int l = 0; j < n; j++, l++)
        acc[l] += x[j];
}

/* acc's lanes += (x[j] − mu)², as lanes_accumulate */
static inline void lanes_sq_dev(float *acc, long n, const float *x, float mu)
{
    lanes_part a[LANES_NP], v;
#pragma GCC unroll 4
    for (int p = 0; p < LANES_NP; p++)
        memcpy(&a[p], acc + p * (LANES_VB / 4), LANES_VB);
    long j = 0;
    for (; j + LANES <= n; j += LANES)
#pragma GCC unroll 4
        for (int p = 0; p < LANES_NP; p++) {
            memcpy(&v, x + j + p * (LANES_VB / 4), LANES_VB);
            v -= mu;
            a[p] += v * v;
        }
#pragma GCC unroll 4
    for (int p = 0; p < LANES_NP; p++)
        memcpy(acc + p * (LANES_VB / 4), &a[p], LANES_VB);
    for (int l = 0; j < n; j++, l++)
        acc[l] += (x[j] - mu) * (x[j] - mu);
}

/* the running statistics (unbiased variance, as PyTorch keeps) from the
 * forward's μ and Σ (x − μ)² */
static inline void bn_running_float(long len, float mu, float q, float momentum,
                                    float *running_mean, float *running_var)
{
    NOMUL_COUNT(FMUL, 4); NOMUL_COUNT(FDIV, 1); NOMUL_COUNT(FADD, 4);
    float var = q / (float)(len > 1 ? len - 1 : 1);
    *running_mean = (1.0f - momentum) * *running_mean + momentum * mu;
    *running_var = (1.0f - momentum) * *running_var + momentum * var;
}

static inline float lane_sum(long n, const float *x)
{
    float acc[LANES] = {0};
    lanes_accumulate(acc, n, x);
    return lanes_total(acc);
}

#endif
