/*
 * conv2d_clane.c — where a convolution's forward and data gradient run on
 * the kernels with lanes along channels (conv2d_internal.h; the kernels:
 * clane.inc). The data gradient of a 3×3, stride-1, padding-1 layer is
 * itself such a convolution: dy padded by one, the kernel flipped, the
 * input channels as its output channels. The dense direct kernels read
 * their source in wide rows of w + 2 pixels in 32-pixel tiles, which on 7×7
 * and 14×14 images compute 64 and 224 columns for 49 and 196 outputs;
 * these compute each output once. The same sums as the dense kernels
 * (gemm_internal.h's pg_clane_job), bit for bit, where:
 *  - PAM's approximate data gradient (a term PAM(w, dy), no offset): dy
 *    and the weights hold no zero, subnormal, infinity or NaN, and every
 *    term is normal (the direct path's range check), so that the padding's
 *    terms, which the kernels leave out, are the only ones the dense
 *    kernels mask;
 *  - PAM's forward (no offset): the weights hold no zero or subnormal (the
 *    dense kernels' masks for those are not in these), x no infinity or
 *    NaN, every term normal; x's zeros and the padding are masked as the
 *    dense kernels mask them;
 *  - float: always (one fma chain in the same order, the padding's zeros
 *    included).
 */
#include <string.h>

#include "../core/internal.h"
#include "conv2d_internal.h"

#include <omp.h>

int conv_clane_mode = CONV_CLANE_AUTO;
long conv_clane_runs;

/* the segments output rows are cut into: 0 where none fits */
static int clane_seg(int ow)
{
    return ow % 14 == 0 ? 14 : ow % 8 == 0 ? 8 : ow % 7 == 0 ? 7 : 0;
}

/* the geometry: cdst output channels a group, ow output columns, stride
 * 2 allowed or not (the mode's width limit in it) */
static int clane_fits(const nomul_conv2d_desc *d, int cdst, int ow, int pa, int stride2)
{
    const int s = d->stride_h;
    if (!(d->kh == 3 && d->kw == 3 && (s == 1 || (s == 2 && stride2)) && d->stride_w == s &&
          d->pad_h == 1 && d->pad_w == 1 && d->dil_h == 1 && d->dil_w == 1))
        return 0;
    if (cdst == 16) /* two 14-pixel segments of a row a tile; PAM's only */
        return pa && s == 1 && ow % 28 == 0;
    return cdst % 32 == 0 && clane_seg(ow) != 0 &&
           (conv_clane_mode == CONV_CLANE_ALWAYS || ow <= CLANE_MAX_W);
}

/* The table's buffer: the weights (K rows of every group's cdst, d->groups
 * tables), PAM's three tap lists after them, then room for np pixel
 * offsets; NULL after a report */
static uint32_t *clane_table(const char *fn, const nomul_conv2d_desc *d, int K, int cdst, long np)
{
    uint32_t *t = nomul_scratch_bytes(
        NOMUL_SCRATCH_CONV_CLTABLE, ((size_t)d->groups * K * cdst + 3 * (size_t)K + (size_t)np) *
                                        sizeof *t);
    if (!t)
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for the weights' table", fn);
    return t;
}

/* Every image's groups: csrc source planes (sh × sw) a group (src_img
 * floats an image) padded into this thread's buffer, the kernel into cdst
 * output planes (oh × ow; dst_img an image) at stride s, then the image's
 * bias (the forward's, NULL for none); the tables from t, K rows each,
 * and where the rows run on lists (PAM without pix) the lists after them
 * (the taps k = (c, i, j) that do not read the padding's row above, i ≥ 1;
 * below, i ≤ 1; either, i = 1). The terms counted as the dense paths count
 * them (g's layer: n · c_out · P · K, a PAM or a multiply and an add
 * each). 0 after a report. */
static int clane_images(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                        pg_clane_fn kern, int pa, uint32_t *t, int K, int csrc, int sh, int sw,
                        const float *src, long src_img, int cdst, int oh, int ow, int s,
                        const int *pix, const float *bias, float *dst, long dst_img)
{
    const int hq = sh + 2, wq = sw + 2, slack = conv_wide_slack(d);
    const long *off = conv_tap_offsets(csrc, 3, 3, hq, wq, 1, 1);
    if (!off) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory", fn);
        return 0;
    }
    int *kl = (int *)(t + (long)d->groups * K * cdst), klen[3] = {0, 0, 0};
    for (int k = 0; pa && !pix && k < K; k++) {
        const int i = k % 9 / 3;
        if (i >= 1)
            kl[klen[0]++] = k;
        if (i <= 1)
            kl[K + klen[1]++] = k;
        if (i == 1)
            kl[2 * K + klen[2]++] = k;
    }
    const long splane = (long)sh * sw, oplane = (long)oh * ow;
    int nt = conv_image_threads(d), failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *buf = nomul_scratch(NOMUL_SCRATCH_CONV_DCOL, (size_t)csrc * hq * wq + slack);
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->n; b++) {
            for (int gr = 0; buf && gr < d->groups; gr++) {
                conv_pad_planes(csrc, sh, sw, 1, 1, src + b * src_img + gr * csrc * splane, buf,
                                slack);
                const pg_clane_job job = {
                    .buf = buf,
                    .off = off,
                    .pix = pix,
                    .klist = {kl, kl + K, kl + 2 * K},
                    .klen = {klen[0], klen[1], klen[2]},
                    .K = K,
                    .kc = PG_KC,
                    .oh = oh,
                    .ow = ow,
                    .wp = wq,
                    .stride = s,
                    .seg = clane_seg(ow),
                    .nh = cdst / 16,
                    .table = t + (long)gr * K * cdst,
                    .y = dst + b * dst_img + gr * cdst * oplane,
                    .ys = oplane,
                };
                kern(&job);
            }
            if (buf)
                conv_add_bias(d, g, bias, dst + b * dst_img);
        }
    }
    if (failed) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for a padded image", fn);
        return 0;
    }
    const long long terms = (long long)d->n * d->c_out * g->P * g->K;
    if (pa)
        NOMUL_COUNT(PAM, terms);
    else
        NOMUL_COUNT(FMUL, terms);
    NOMUL_COUNT(FADD, terms);
#pragma omp atomic
    conv_clane_runs += (long)d->n * d->groups;
    return 1;
}

int conv_clane_data(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g, int pa,
                    const float *weight, const float *dy, float *dx)
{
    const pg_clane_ukr *cl = &pg_cntx_active()->clane;
    const pg_clane_fn kern = pa ? cl->pam : cl->fp;
    if (!kern || conv_clane_mode == CONV_CLANE_NEVER || !clane_fits(d, g->cig, d->w, pa, 0))
        return 0;
    if (pa) {
        pg_stats ys = conv_value_stats(dy, d->n * g->y_img);
        pg_stats ws = conv_value_stats(weight, (long)d->c_out * g->K);
        if (ys.zero || ys.special || ws.zero || ws.special || !pg_range_safe(&ws, &ys, 1.0f))
            return 0;
    }
    /* the flipped kernel, transposed: row k = (co, i, j) holds the group's
     * cig input channels (PAM: bits with −1.0 folded in) */
    const int K2 = g->cog * 9;
    uint32_t *t = clane_table(fn, d, K2, g->cig, 0);
    if (!t)
        return 1;
    /* output channel by output channel on the threads (each writes its own
     * nine rows, as conv_weight_rows its rows) */
    const int nco = d->groups * g->cog;
#pragma omp parallel for num_threads(nomul_fn_threads((long)nco * 9 * g->cig)) schedule(static)
    for (int r = 0; r < nco; r++) {
        const int gr = r / g->cog, co = r % g->cog;
        const float *wo = weight + (long)r * g->K;
        for (int k = co * 9; k < co * 9 + 9; k++) {
            const int tap = 8 - k % 9; /* (2 − i, 2 − j) */
            uint32_t *row = t + ((long)gr * K2 + k) * g->cig;
            for (int c = 0; c < g->cig; c++) {
                uint32_t b;
                memcpy(&b, wo + c * 9 + tap, 4);
                row[c] = pa ? b - PG_ONE : b;
            }
        }
    }
    clane_images(fn, d, g, kern, pa, t, K2, g->cog, g->oh, g->ow, dy, g->y_img, g->cig, d->h,
                 d->w, 1, NULL, NULL, dx, g->x_img);
    return 1;
}

int conv_clane_forward(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g, int pa,
                       const float *weight, const float *bias, const float *x, float *y)
{
    const pg_clane_ukr *cl = &pg_cntx_active()->clane;
    const pg_clane_fn kern = pa ? cl->pam : cl->fp;
    if (!kern || conv_clane_mode == CONV_CLANE_NEVER || !clane_fits(d, g->cog, g->ow, 0, 1) ||
        (pa && g->cog % 64 != 0))
        return 0;
    /* where skipping zeros pays (Zen 4), groups of 64·m keep the forward's
     * lists (conv2d_sparse.c: measured there against the dense kernels;
     * against the lanes, not) */
    if (conv_clane_mode == CONV_CLANE_AUTO && conv_skips_pay() && g->cog % 64 == 0)
        return 0;
    if (pa) { /* the dense direct path's conditions (its masks: x's zeros only) */
        pg_stats xs = conv_input_stats(d, x, d->n * g->x_img);
        pg_stats ws = conv_value_stats(weight, (long)d->c_out * g->K);
        if (xs.special || ws.zero || ws.special || !pg_range_safe(&ws, &xs, 1.0f))
            return 0;
    }
    /* the kernel transposed: row k = (c, i, j) holds the group's cog
     * output channels (PAM: bits with −1.0 folded in); PAM's pixels' offsets */
    const long np = pa ? g->P : 0;
    uint32_t *t = clane_table(fn, d, g->K, g->cog, np);
    if (!t)
        return 1;
    conv_weight_rows(d, g, weight, pa ? PG_ONE : 0u, t);
    int *pix = pa ? (int *)(t + (long)d->groups * g->K * g->cog + 3L * g->K) : NULL;
    const int s = d->stride_h, wq = d->w + 2;
    for (long p = 0; p < np; p++)
        pix[p] = (int)(p / g->ow) * s * wq + (int)(p % g->ow) * s;
    clane_images(fn, d, g, kern, pa, t, g->K, g->cig, d->h, d->w, x, g->x_img, g->cog, g->oh,
                 g->ow, s, pix, bias, y, g->y_img);
    return 1;
}
