/*
 * functional.c — the public entry points of the composite operations
 * (nomul/functional.h): each chooses the float form (functional_float.c) or
 * the piecewise affine form (functional_pa.c) by its nomul_op_cfg. What the
 * two forms share lives here: the threads of a row-wise operation, layer
 * norm's and batch norm's loops over rows and channels (with the fixed
 * blocks of rows dγ and dβ are summed in), and cross-entropy's count of the
 * rows used.
 */
#include "nomul/functional.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <omp.h>

#include "../core/internal.h"
#include "nomul/arith.h"
#include "functional_internal.h"


/* ---- softmax, log_softmax, logsumexp ------------------------------------------------- */

void nomul_softmax_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y)
{
    nomul_softmax_forward_keep(cfg, rows, n, x, y, NULL);
}

void nomul_softmax_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                            const float *y, const float *dy, float *dx)
{
    nomul_softmax_backward_keep(cfg, rows, n, x, y, NULL, dy, dx);
}

long nomul_softmax_keep_floats(const nomul_op_cfg *cfg, int rows, int n)
{
    return nomul_op_is_pa(cfg) && !cfg->approx_bwd ? (long)rows * n + 2L * rows : 0;
}

void nomul_softmax_forward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                float *y, float *keep)
{
    if (nomul_op_is_pa(cfg))
        nomul_softmax_forward_pa(cfg, rows, n, x, y, cfg->approx_bwd ? NULL : keep);
    else
        nomul_softmax_forward_float(rows, n, x, y);
}

void nomul_softmax_backward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                 const float *y, const float *keep, const float *dy, float *dx)
{
    if (nomul_op_is_pa(cfg))
        nomul_softmax_backward_pa(cfg, rows, n, x, y, cfg->approx_bwd ? NULL : keep, dy, dx);
    else
        nomul_softmax_backward_float(rows, n, y, dy, dx);
}

void nomul_log_softmax_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y)
{
    long t0 = (long)rows * n; /* the audit: logsumexp's, and the subtractions */
    if (nomul_op_is_pa(cfg)) {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(PAD, rows); NOMUL_COUNT(FADD, 3 * t0);
        nomul_lse_forward_pa(cfg, rows, n, x, y, NULL);
    } else {
        NOMUL_COUNT(FTRANS, t0 + rows); NOMUL_COUNT(FADD, 3 * t0);
        nomul_lse_forward_float(rows, n, x, y, NULL);
    }
}

void nomul_log_softmax_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                const float *y, const float *dy, float *dx)
{
    if (nomul_op_is_pa(cfg))
        nomul_log_softmax_backward_pa(cfg, rows, n, x, dy, dx);
    else
        nomul_log_softmax_backward_float(rows, n, y, dy, dx);
}

void nomul_logsumexp_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *lse)
{
    long t0 = (long)rows * n; /* the audit */
    if (nomul_op_is_pa(cfg)) {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(PAD, rows); NOMUL_COUNT(FADD, 2 * t0);
        nomul_lse_forward_pa(cfg, rows, n, x, NULL, lse);
    } else {
        NOMUL_COUNT(FTRANS, t0 + rows); NOMUL_COUNT(FADD, 2 * t0);
        nomul_lse_forward_float(rows, n, x, NULL, lse);
    }
}

void nomul_logsumexp_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                              const float *dlse, float *dx)
{
    if (nomul_op_is_pa(cfg))
        nomul_logsumexp_backward_pa(cfg, rows, n, x, dlse, dx);
    else
        nomul_logsumexp_backward_float(rows, n, x, dlse, dx);
}

/* ---- layer norm ------------------------------------------------------------------- */

static void ln_row_forward(const nomul_op_cfg *cfg, int n, const float *xr, const float *gamma,
                           int gs, const float *beta, int bs, float eps, float *yr, float *mean,
                           float *rstd, float *ksum, float *kq)
{
    if (nomul_op_is_pa(cfg))
        nomul_ln_row_forward_pa(cfg, n, xr, gamma, gs, beta, bs, eps, yr, mean, rstd, ksum, kq);
    else
        nomul_ln_row_forward_float(n, xr, gamma, gs, beta, bs, eps, yr, mean, rstd, NULL);
}

/* dx, dγ, dβ of one row (dγ, dβ at j·gs, j·bs: summed when the stride is 0);
 * dd: n floats of scratch for the exact PA chain; ksum, kq: the forward's
 * kept PA statistics of the row, or NULL */
static void ln_row_backward(const nomul_op_cfg *cfg, int n, const float *xr, const float *gamma,
                            int gs, float mu, float r, float eps, const float *ksum,
                            const float *kq, const float *gr, float *dr, float *dgamma,
                            float *dbeta, int bs, float *dd)
{
    if (nomul_op_is_pa(cfg))
        nomul_ln_row_backward_pa(cfg, n, xr, gamma, gs, mu, r, eps, ksum, kq, gr, dr, dgamma,
                                 dbeta, bs, dd);
    else
        nomul_ln_row_backward_float(n, xr, gamma, gs, mu, r, gr, dr, dgamma, dbeta, bs);
}

long nomul_layer_norm_keep_floats(const nomul_op_cfg *cfg, int rows)
{
    return nomul_op_is_pa(cfg) && !cfg->approx_bwd ? 2L * rows : 0;
}

void nomul_layer_norm_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                              const float *gamma, const float *beta, float eps, float *y,
                              float *mean, float *rstd)
{
    nomul_layer_norm_forward_keep(cfg, rows, n, x, gamma, beta, eps, y, mean, rstd, NULL);
}

void nomul_layer_norm_forward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                   const float *gamma, const float *beta, float eps, float *y,
                                   float *mean, float *rstd, float *keep)
{
    /* PA: groups of rows at once where the array kernels serve (their sums
     * side by side), else row by row; the same bits either way */
    const int pa = nomul_op_is_pa(cfg), groups = (rows + NOMUL_PA_GROUP - 1) / NOMUL_PA_GROUP;
    /* (kept only for the exact PA backward: nomul_layer_norm_keep_floats) */
    float *ksum = pa && !cfg->approx_bwd && keep ? keep : NULL, *kq = ksum ? keep + rows : NULL;
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads((long)rows * n))
    for (int g = 0; g < groups; g++) {
        int i0 = g * NOMUL_PA_GROUP, k = rows - i0 < NOMUL_PA_GROUP ? rows - i0 : NOMUL_PA_GROUP;
        if (pa && nomul_ln_rows_forward_pa(cfg, k, n, x + (long)i0 * n, gamma, beta, eps,
                                           y + (long)i0 * n, mean + i0, rstd + i0,
                                           ksum ? ksum + i0 : NULL, kq ? kq + i0 : NULL))
            continue;
        for (int i = i0; i < i0 + k; i++)
            ln_row_forward(cfg, n, x + (long)i * n, gamma, 1, beta, 1, eps, y + (long)i * n,
                           &mean[i], &rstd[i], ksum ? ksum + i : NULL, kq ? kq + i : NULL);
    }
}

void nomul_layer_norm_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                               const float *gamma, const float *mean, const float *rstd,
                               float eps, const float *dy, float *dx, float *dgamma,
                               float *dbeta)
{
    nomul_layer_norm_backward_keep(cfg, rows, n, x, gamma, mean, rstd, NULL, eps, dy, dx, dgamma,
                                   dbeta);
}

void nomul_layer_norm_backward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                    const float *gamma, const float *mean, const float *rstd,
                                    const float *keep, float eps, const float *dy, float *dx,
                                    float *dgamma, float *dbeta)
{
    /* dγ and dβ are summed in fixed blocks of rows (core/internal.h), each
     * from zero into its own partial, and the partials added in block
     * order: the same sums whatever the thread count */
    enum { MIN_ROWS = 16, MAX_BLOCKS = 64 };
    const int blocks = nomul_sum_blocks(rows, MIN_ROWS, MAX_BLOCKS);
    const int pa = nomul_op_is_pa(cfg), exact_pa = pa && !cfg->approx_bwd;
    const float *ksum = exact_pa && keep ? keep : NULL, *kq = ksum ? keep + rows : NULL;
    float *part = nomul_scratch(NOMUL_SCRATCH_PART, 2 * (size_t)n * blocks);
    int failed = part == NULL;
    /* a team of the usual size even when blocks are fewer: a smaller team
     * would end threads (and their scratch buffers) for the next to remake */
#pragma omp parallel num_threads(nomul_fn_threads((long)rows * n)) if (!failed)
    {
        float *dd = exact_pa ? nomul_scratch(NOMUL_SCRATCH_NORM, (size_t)n) : NULL;
        if (exact_pa && !dd) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int b = 0; b < blocks; b++) {
            float *dg = part + 2 * (size_t)n * b, *db = dg + n;
            memset(dg, 0, 2 * sizeof(float) * (size_t)n);
            if (exact_pa && !dd)
                continue;
            /* PA: groups of rows at once where the array kernels serve,
             * else row by row (the same bits) */
            int i1 = (int)nomul_block_start(rows, blocks, b + 1);
            for (int i = (int)nomul_block_start(rows, blocks, b); i < i1;) {
                int k = i1 - i < NOMUL_PA_GROUP ? i1 - i : NOMUL_PA_GROUP;
                if (pa && nomul_ln_rows_backward_pa(cfg, k, n, x + (long)i * n, gamma, mean + i,
                                                    rstd + i, ksum ? ksum + i : NULL,
                                                    kq ? kq + i : NULL, eps, dy + (long)i * n,
                                                    dx + (long)i * n, dg, db)) {
                    i += k;
                    continue;
                }
                ln_row_backward(cfg, n, x + (long)i * n, gamma, 1, mean[i], rstd[i], eps,
                                ksum ? ksum + i : NULL, kq ? kq + i : NULL, dy + (long)i * n,
                                dx + (long)i * n, dg, db, 1, dd);
                i++;
            }
        }
    }
    if (failed)
        return; /* reported */
    for (int b = 0; b < blocks; b++)
        for (int j = 0; j < n; j++) {
            dgamma[j] += part[2 * (size_t)n * b + j];
            dbeta[j] += part[2 * (size_t)n * b + n + j];
        }
}

/* ---- batch norm: layer norm's rows, one per channel over (batch, spatial) ---------- */

/* channel c of x (n, C, S) to row[0 .. n·S), or back (+= when add) */
static void gather_channel(int nb, int C, int S, int c, const float *x, float *row)
{
    for (int b = 0; b < nb; b++) {
        const float *p = x + ((long)b * C + c) * S;
        bn_prefetch_plane(p, b, nb, (long)C * S, S);
        memcpy(row + (long)b * S, p, (size_t)S * sizeof *row);
    }
}

static void scatter_channel(int nb, int C, int S, int c, const float *row, float *x, int add)
{
    for (int b = 0; b < nb; b++) {
        float *dst = x + ((long)b * C + c) * S;
        for (int s = 0; s < S; s++)
            dst[s] = add ? dst[s] + row[(long)b * S + s] : row[(long)b * S + s];
    }
}

/* scatter_channel's store through the relu (nomul_relu1: max(v, 0), a NaN to
 * +0), batch_norm_relu's PA forward on a gathered channel */
static void scatter_channel_relu(int nb, int C, int S, int c, const float *row, float *x)
{
    for (int b = 0; b < nb; b++) {
        float *dst = x + ((long)b * C + c) * S;
        for (int s = 0; s < S; s++)
            dst[s] = nomul_relu1(row[(long)b * S + s]);
    }
}

long nomul_batch_norm_keep_floats(const nomul_op_cfg *cfg, int C)
{
    return nomul_layer_norm_keep_floats(cfg, C);
}

void nomul_batch_norm_forward(const nomul_op_cfg *cfg, int nb, int C, int S, const float *x,
                              const float *gamma, const float *beta, float eps, float momentum,
                              int training, float *running_mean, float *running_var, float *y,
                              float *mean, float *rstd)
{
    nomul_batch_norm_forward_keep(cfg, nb, C, S, x, gamma, beta, eps, momentum, training,
                                  running_mean, running_var, y, mean, rstd, NULL);
}

/* channel c of dy gathered as gather_channel does, through the relu's
 * derivative from its output y (nomul_relu_grad1) where y is not NULL */
static void gather_channel_relu(int nb, int C, int S, int c, const float *y, const float *dy,
                                float *row)
{
    if (!y) {
        gather_channel(nb, C, S, c, dy, row);
        return;
    }
    for (int b = 0; b < nb; b++) {
        const long o = ((long)b * C + c) * S;
        const float *restrict yp = y + o, *restrict gp = dy + o;
        float *restrict rp = row + (long)b * S;
        bn_prefetch_plane(yp, b, nb, (long)C * S, S);
        bn_prefetch_plane(gp, b, nb, (long)C * S, S);
        for (int s = 0; s < S; s++)
            rp[s] = nomul_relu_grad1(yp[s], gp[s]);
    }
}

static void bn_forward(const nomul_op_cfg *cfg, int nb, int C, int S, const float *x,
                       const float *gamma, const float *beta, float eps, float momentum,
                       int training, float *running_mean, float *running_var, float *y,
                       float *mean, float *rstd, float *keep, int relu)
{
    const long len = (long)nb * S;
    float *ksum = training && nomul_batch_norm_keep_floats(cfg, C) ? keep : NULL;
    /* channels are independent (each writes only its own statistics and
     * outputs): split over threads, results as on one. Dealt in runs of
     * neighbouring channels that shrink as they go (guided), not one at a
     * time: a channel's planes lie next to its neighbours' (a 7×7 plane is
     * 196 bytes, so two channels share cache lines), and two threads working
     * on neighbouring channels at once pull lines from each other's caches
     * (ResNet20's batch norm took 1.3–1.5× as long dealt one by one); the
     * shrinking runs at the end still keep a thread slowed by the machine
     * from holding the others (the backward's alike) */
#pragma omp parallel num_threads(nomul_fn_threads((long)C * len))
    {
        /* the gathered channel's scratch, only where a channel is gathered:
         * for the sums where S is not a multiple of 16 (in training; the
         * output goes to y plane by plane), for all of it where there are
         * no fused PA passes (the scalar chains) */
        float *row = NULL;
        int failed = 0;
#pragma omp for schedule(guided)
        for (int c = 0; c < C; c++) {
            const int pa = nomul_op_is_pa(cfg), gathered = training && S % LANES;
            float *km = ksum ? ksum + c : NULL, *kv = ksum ? ksum + C + c : NULL;
            /* the relu in the output's pass (PA planes and float), or as the
             * gathered channel's output is scattered */
            if (!gathered && training && pa &&
                nomul_bn_planes_forward_pa(cfg, nb, C, S, c, x, NULL, gamma + c, beta + c, eps,
                                           momentum, &running_mean[c], &running_var[c], y,
                                           &mean[c], &rstd[c], km, kv, relu))
                continue;
            /* PA evaluation: elementwise, plane by plane (it had gathered
             * each channel and scattered it back: 9% of ResNet20's PA
             * evaluation) */
            if (!training && pa &&
                nomul_bn_planes_eval_pa(cfg, nb, C, S, c, x, gamma + c, beta + c, eps,
                                        &running_mean[c], &running_var[c], y, relu))
                continue;
            if (!gathered && !pa &&
                nomul_bn_planes_forward_float(nb, C, S, c, x, NULL, gamma + c, beta + c, eps,
                                              momentum, training, &running_mean[c],
                                              &running_var[c], y, &mean[c], &rstd[c], relu))
                continue;
            if (!row && !failed)
                row = nomul_scratch(NOMUL_SCRATCH_NORM, (size_t)len * 2);
            if (!row) {
                failed = 1; /* reported once */
                continue;
            }
            gather_channel(nb, C, S, c, x, row);
            /* the sums over the gathered row, the output into y */
            if (!pa && nomul_bn_planes_forward_float(nb, C, S, c, x, row, gamma + c, beta + c,
                                                     eps, momentum, training, &running_mean[c],
                                                     &running_var[c], y, &mean[c], &rstd[c],
                                                     relu))
                continue;
            if (pa && training &&
                nomul_bn_planes_forward_pa(cfg, nb, C, S, c, x, row, gamma + c, beta + c, eps,
                                           momentum, &running_mean[c], &running_var[c], y,
                                           &mean[c], &rstd[c], km, kv, relu))
                continue;
            /* PA: evaluation, or the scalar chains; the gathered row's
             * functions */
            nomul_bn_channel_forward_pa(cfg, len, row, gamma + c, beta + c, eps, momentum,
                                        training, &running_mean[c], &running_var[c], row + len,
                                        &mean[c], &rstd[c], km, kv);
            if (relu)
                scatter_channel_relu(nb, C, S, c, row + len, y);
            else
                scatter_channel(nb, C, S, c, row + len, y, 0);
        }
    }
}

void nomul_batch_norm_forward_keep(const nomul_op_cfg *cfg, int nb, int C, int S, const float *x,
                                   const float *gamma, const float *beta, float eps,
                                   float momentum, int training, float *running_mean,
                                   float *running_var, float *y, float *mean, float *rstd,
                                   float *keep)
{
    bn_forward(cfg, nb, C, S, x, gamma, beta, eps, momentum, training, running_mean,
               running_var, y, mean, rstd, keep, 0);
}

void nomul_batch_norm_relu_forward_keep(const nomul_op_cfg *cfg, int nb, int C, int S,
                                        const float *x, const float *gamma, const float *beta,
                                        float eps, float momentum, int training,
                                        float *running_mean, float *running_var, float *y,
                                        float *mean, float *rstd, float *keep)
{
    bn_forward(cfg, nb, C, S, x, gamma, beta, eps, momentum, training, running_mean,
               running_var, y, mean, rstd, keep, 1);
}

void nomul_batch_norm_backward(const nomul_op_cfg *cfg, int nb, int C, int S, const float *x,
                               const float *gamma, const float *mean, const float *rstd,
                               float eps, const float *dy, float *dx, float *dgamma,
                               float *dbeta)
{
    nomul_batch_norm_backward_keep(cfg, nb, C, S, x, gamma, mean, rstd, NULL, eps, dy, 1, dx,
                                   dgamma, dbeta);
}

/* y: the relu's output, whose derivative masks channel c of dy as the PA
 * form reads it (in the planes' passes, or as dy is gathered); in float,
 * from x and β as the forward made y (on the fly in the planes' passes, or
 * on the gathered dy), without reading y; NULL for batch norm alone. dy is
 * not written. dx added to, or with store written whole, the bits of adding
 * into +0 (each path's term is +0 + v, never −0). */
static void bn_backward(const nomul_op_cfg *cfg, int nb, int C, int S, const float *x,
                        const float *y, const float *gamma, const float *beta, const float *mean,
                        const float *rstd, const float *keep, float eps, const float *dy,
                        int store, float *dx, float *dgamma, float *dbeta)
{
    const long len = (long)nb * S;
    const float *ksum = nomul_batch_norm_keep_floats(cfg, C) ? keep : NULL;
    /* per channel: its own dγ, dβ and dx entries, so threads never meet */
#pragma omp parallel num_threads(nomul_fn_threads((long)C * len))
    {
        float *row = NULL; /* as in the forward: only where a channel is gathered */
        int failed = 0;
#pragma omp for schedule(guided)
        for (int c = 0; c < C; c++) {
            const int pa = nomul_op_is_pa(cfg), gathered = S % LANES != 0;
            const float *km = ksum ? ksum + c : NULL, *kv = ksum ? ksum + C + c : NULL;
            /* planes: the relu's derivative on the fly (float: from x and β;
             * PA: from y, as dy is read) */
            if (!pa && !gathered &&
                nomul_bn_planes_backward_float(nb, C, S, c, x, NULL, gamma + c,
                                               y ? beta + c : NULL, mean[c], rstd[c], dy, NULL,
                                               store, dx, dgamma + c, dbeta + c))
                continue;
            if (pa && !gathered &&
                nomul_bn_planes_backward_pa(cfg, nb, C, S, c, x, NULL, gamma + c, mean[c],
                                            rstd[c], eps, km, kv, dy, NULL, y, store, dx,
                                            dgamma + c, dbeta + c))
                continue;
            if (!row && !failed)
                row = nomul_scratch(NOMUL_SCRATCH_NORM, (size_t)len * 4);
            if (!row) {
                failed = 1; /* reported once */
                continue;
            }
            float *grow = row + len, *drow = row + 2 * len, *dd = row + 3 * len;
            gather_channel(nb, C, S, c, x, row);
            /* PA: dy through the relu's derivative from y as it is gathered
             * (float: from x and β, in the rows' passes) */
            gather_channel_relu(nb, C, S, c, pa ? y : NULL, dy, grow);
            if (!pa && nomul_bn_planes_backward_float(nb, C, S, c, x, row, gamma + c,
                                                      y ? beta + c : NULL, mean[c], rstd[c], dy,
                                                      grow, store, dx, dgamma + c, dbeta + c))
                continue;
            /* PA where S is not a multiple of 16: the sums over the gathered
             * rows, dx plane by plane */
            if (pa && gathered &&
                nomul_bn_planes_backward_pa(cfg, nb, C, S, c, x, row, gamma + c, mean[c],
                                            rstd[c], eps, km, kv, dy, grow, NULL, store, dx,
                                            dgamma + c, dbeta + c))
                continue;
            memset(drow, 0, (size_t)len * sizeof *drow);
            ln_row_backward(cfg, (int)len, row, gamma + c, 0, mean[c], rstd[c], eps, km, kv, grow,
                            drow, dgamma + c, dbeta + c, 0, dd);
            /* drow = +0 + v, never −0: stored, the bits of +0 + drow */
            scatter_channel(nb, C, S, c, drow, dx, !store);
        }
    }
}

void nomul_batch_norm_backward_keep(const nomul_op_cfg *cfg, int nb, int C, int S, const float *x,
                                    const float *gamma, const float *mean, const float *rstd,
                                    const float *keep, float eps, const float *dy,
                                    int accumulate, float *dx, float *dgamma, float *dbeta)
{
    bn_backward(cfg, nb, C, S, x, NULL, gamma, NULL, mean, rstd, keep, eps, dy, !accumulate, dx,
                dgamma, dbeta);
}

void nomul_batch_norm_relu_backward_keep(const nomul_op_cfg *cfg, int nb, int C, int S,
                                         const float *x, const float *y, const float *gamma,
                                         const float *beta, const float *mean, const float *rstd,
                                         const float *keep, float eps, const float *dy,
                                         int accumulate, float *dx, float *dgamma, float *dbeta)
{
    bn_backward(cfg, nb, C, S, x, y, gamma, beta, mean, rstd, keep, eps, dy, !accumulate, dx,
                dgamma, dbeta);
}

/* ---- label-smoothed cross-entropy ------------------------------------------------ */

/* the rows whose target is not ignore_index, -1 for a target out of range */
static int ce_count_used(int rows, int n, const int *target, int ignore_index)
{
    int used = 0;
    for (int i = 0; i < rows && used >= 0; i++)
        if (target[i] != ignore_index)
            used = target[i] < 0 || target[i] >= n ? -1 : used + 1;
    return used;
}

float nomul_cross_entropy_forward(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                  const int *target, int ignore_index, float smoothing,
                                  int *count)
{
    int used = ce_count_used(rows, n, target, ignore_index);
    if (count)
        *count = used;
    if (nomul_op_is_pa(cfg))
        return nomul_cross_entropy_forward_pa(cfg, rows, n, logp, target, ignore_index, smoothing,
                                              used);
    return nomul_cross_entropy_forward_float(rows, n, logp, target, ignore_index, smoothing,
                                             used);
}

long nomul_cross_entropy_keep_floats(const nomul_op_cfg *cfg, int rows, int n)
{
    return nomul_op_is_pa(cfg) ? nomul_ce_keep_floats_pa(cfg, rows, n) : 0;
}

float nomul_cross_entropy_logits_forward(const nomul_op_cfg *cfg, int rows, int n,
                                         const float *logits, const int *target,
                                         int ignore_index, float smoothing, float *logp,
                                         float *keep, int *count)
{
    if (!nomul_op_is_pa(cfg) || !keep) { /* the two passes */
        nomul_log_softmax_forward(cfg, rows, n, logits, logp);
        return nomul_cross_entropy_forward(cfg, rows, n, logp, target, ignore_index, smoothing,
                                           count);
    }
    int used = ce_count_used(rows, n, target, ignore_index);
    if (count)
        *count = used;
    return nomul_ce_logits_forward_pa(cfg, rows, n, logits, target, ignore_index, smoothing,
                                      used, logp, keep);
}

/* the rows the backward uses: targets not ignored (rows out of range are
 * skipped) */
static int ce_used_rows(int rows, int n, const int *target, int ignore_index)
{
    int used = 0;
    for (int i = 0; i < rows; i++)
        if (nomul_ce_row_used(target[i], ignore_index, n))
            used++;
    return used;
}

void nomul_cross_entropy_backward(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                  const int *target, int ignore_index, float smoothing,
                                  float dloss, float *dlogp)
{
    int used = ce_used_rows(rows, n, target, ignore_index);
    if (nomul_op_is_pa(cfg))
        nomul_cross_entropy_backward_pa(cfg, rows, n, logp, target, ignore_index, smoothing,
                                        dloss, used, dlogp);
    else
        nomul_cross_entropy_backward_float(rows, n, target, ignore_index, smoothing, dloss,
                                           used, dlogp);
}

int nomul_cross_entropy_row_losses(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                   const int *target, int ignore_index, float smoothing,
                                   float *loss)
{
    if (nomul_op_is_pa(cfg))
        return nomul_cross_entropy_rows_pa(cfg, rows, n, logp, target, ignore_index, smoothing,
                                           loss);
    return nomul_cross_entropy_rows_float(rows, n, logp, target, ignore_index, smoothing, loss);
}

/* as the end of nomul_cross_entropy_forward_float / _pa */
float nomul_cross_entropy_forward_global(const nomul_op_cfg *cfg, const nomul_ce_global *glob)
{
    if (glob->used <= 0)
        return glob->used < 0 ? NAN : 0.0f;
    if (nomul_op_is_pa(cfg)) {
        NOMUL_COUNT(PAD, 1);
        return nomul_pa_div(glob->total, (float)glob->used);
    }
    NOMUL_COUNT(FDIV, 1);
    return glob->total / (float)glob->used;
}

void nomul_cross_entropy_backward_global(const nomul_op_cfg *cfg, int rows, int n,
                                         const float *logp, const int *target, int ignore_index,
                                         float smoothing, float dloss,
                                         const nomul_ce_global *glob, float *dlogp)
{
    if (nomul_op_is_pa(cfg))
        nomul_cross_entropy_backward_pa_total(cfg, rows, n, logp, target, ignore_index,
                                              smoothing, dloss, glob->used, &glob->total, dlogp);
    else
        nomul_cross_entropy_backward_float(rows, n, target, ignore_index, smoothing, dloss,
                                           glob->used, dlogp);
}

void nomul_cross_entropy_logits_backward(const nomul_op_cfg *cfg, int rows, int n,
                                         const float *logits, const float *logp,
                                         const float *keep, const int *target,
                                         int ignore_index, float smoothing, float dloss,
                                         const nomul_ce_global *glob, int accumulate,
                                         float *dlogits)
{
    int used = glob ? glob->used : ce_used_rows(rows, n, target, ignore_index);
    if (nomul_op_is_pa(cfg))
        nomul_ce_lsm_backward_pa(cfg, rows, n, logits, logp, keep, target, ignore_index,
                                 smoothing, dloss, used, glob ? &glob->total : NULL, !accumulate,
                                 dlogits);
    else
        nomul_ce_lsm_backward_float(rows, n, logp, target, ignore_index, smoothing, dloss, used,
                                    !accumulate, dlogits);
}

/* ---- GELU ---------------------------------------------------------------------------- */

void nomul_gelu_forward(const nomul_op_cfg *cfg, long n, const float *x, float *y)
{
    nomul_gelu_forward_keep(cfg, n, x, y, NULL);
}

void nomul_gelu_backward(const nomul_op_cfg *cfg, long n, const float *x, const float *dy,
                         float *dx)
{
    nomul_gelu_backward_keep(cfg, n, x, NULL, dy, dx);
}

long nomul_gelu_keep_floats(const nomul_op_cfg *cfg, long n)
{
    /* σ; and q = 1 + e, which only the exact derivative reads */
    return nomul_op_is_pa(cfg) ? (cfg->approx_bwd ? n : 2 * n) : 0;
}

void nomul_gelu_forward_keep(const nomul_op_cfg *cfg, long n, const float *x, float *y,
                             float *keep)
{
    if (nomul_op_is_pa(cfg))
        nomul_gelu_forward_pa(cfg, n, x, y, keep);
    else
        nomul_gelu_forward_float(n, x, y);
}

void nomul_gelu_backward_keep(const nomul_op_cfg *cfg, long n, const float *x,
                              const float *keep, const float *dy, float *dx)
{
    if (nomul_op_is_pa(cfg))
        nomul_gelu_backward_pa(cfg, n, x, keep, dy, dx);
    else
        nomul_gelu_backward_float(n, x, dy, dx);
}
