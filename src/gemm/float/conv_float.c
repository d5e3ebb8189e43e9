/*
 * conv_float.c — the float convolution on nomul's FMA kernels (fdirect.c),
 * where the instruction set has them and a group has 4 output channels or
 * more (conv_float_applies); elsewhere conv2d.c's im2col and OpenBLAS.
 *
 * Two ways to feed the kernels a column matrix col (K × P, K = c_in/g·kh·kw):
 *  - im2col (conv2d.c), for small images and strides other than 1 and 2;
 *  - implicit, for stride 1: the image, copied once into a zero-padded
 *    plane per channel (Hp × Wp), stands for col: row (c, i, j) of col is
 *    plane c shifted by (i·dil_h, j·dil_w) rows and columns. Read in rows of
 *    Wp pixels ("wide" rows: the output is computed Wp wide and its last
 *    Wp − ow columns, which read across the padding into the next row, are
 *    dropped), so the kernels read B's row k at xp + off[k]. No im2col, and
 *    no col2im: the data gradient of a stride-1 convolution is itself one,
 *    of dy padded by dil·(k − 1) − pad with the flipped kernel;
 *  - implicit, for stride 2 (undilated): the padded planes split by the
 *    parity of row and column (conv2d_internal.h's CONV_SPLIT), each tap
 *    a stride-1 read of one of them; the forward and the weight gradient.
 *
 * What is summed, and in which order (test_conv checks every path bit for
 * bit against plain fmaf loops in this order):
 *  - forward: y = the fma chain over (c, i, j) of W · x (padding zeros
 *    included), from zero, then + bias; the same on both feeds;
 *  - backward data, im2col: dcol = fma chains over the group's output
 *    channels, added into dx by col2im in (c, i, j, pixel) order from zero;
 *    implicit: one fma chain over (co, i, j) of W flipped · dy padded;
 *  - backward weight: one fma chain per block of images (conv2d.c) over
 *    its images and output pixels in order, on both feeds; 3×3 layers with
 *    16·m output channels per group take it input by input (dwplane.inc),
 *    the zero inputs' terms left out, where the guard shows they add
 *    nothing.
 */
#include <string.h>

#include "../../core/internal.h"
#include "../conv2d_internal.h"

#include <omp.h>

int conv_float_applies(const conv_geom *g) { return fd_available() && g->cog >= 4; }

/* each group's plan of op(W_g) (m × k), in this thread's keyed buffers */
static fd_plan **group_plans(const nomul_conv2d_desc *d, CBLAS_TRANSPOSE ta, int m, int k,
                             const float *w, long wstride, int ldw)
{
    fd_plan **plans =
        nomul_scratch_bytes(NOMUL_SCRATCH_CONV_PLANS, (size_t)d->groups * sizeof *plans);
    for (int gr = 0; plans && gr < d->groups; gr++)
        if (!(plans[gr] = fd_plan_make(gr, ta, m, k, w + gr * wstride, ldw)))
            plans = NULL;
    return plans;
}

static void report_oom(const char *fn) { nomul_report(NOMUL_ENOMEM, "%s: out of memory", fn); }


void conv_float_forward(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                        const float *x, const float *weight, const float *bias, float *y)
{
    if (conv_clane_forward(fn, d, g, 0, weight, bias, x, y))
        return;
    int slack = conv_wide_slack(d);
    int implicit = conv_forward_implicit(d, g), wp = conv_feed_width(d, implicit);
    fd_plan **plans =
        group_plans(d, CblasNoTrans, g->cog, g->K, weight, (long)g->cog * g->K, g->K);
    long *off = nomul_scratch_bytes(NOMUL_SCRATCH_CONV_OFFS, (size_t)g->K * sizeof *off);
    if (!plans || !off) {
        report_oom(fn);
        return;
    }
    conv_col_offsets(d, g, implicit, off);
    conv_fsparse fs;
    int sp = implicit == CONV_PADDED ? conv_fsparse_plan(d, g, 0, 1.0f, x, weight, &fs) : 0;
    if (sp < 0)
        return; /* reported */
    long nwide = (long)g->oh * wp; /* the wide output's columns */
    NOMUL_COUNT(FMUL, (long long)d->n * d->c_out * g->P * g->K);
    NOMUL_COUNT(FADD, (long long)d->n * d->c_out * g->P * g->K);
    int nt = conv_image_threads(d), failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *buf = nomul_scratch(NOMUL_SCRATCH_CONV_COL,
                                   implicit ? (size_t)conv_feed_floats(d, implicit, g->cig) + slack
                                            : (size_t)g->K * g->ldcol + 32);
        float *part = NULL;
        uint32_t *lists = NULL;
        if (buf && sp && !conv_fsparse_scratch(g, &part, &lists))
            buf = NULL; /* reported */
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->n; b++) {
            if (!buf)
                continue;
            for (int gr = 0; gr < d->groups; gr++) {
                const float *xg = x + b * g->x_img + (long)gr * g->cig * d->h * d->w;
                float *yg = y + b * g->y_img + (long)gr * g->cog * g->P;
                if (implicit) {
                    conv_feed_fill(d, implicit, g->cig, xg, buf, slack);
                    if (!sp || !conv_fsparse_image(&fs, g, wp, gr, buf, off, part, lists, yg))
                        fd_plan_run(plans[gr], (int)nwide, buf, off, yg, g->P,
                                    (pg_narrow){.wp = wp, .ow = g->ow});
                } else {
                    conv_im2col(d, g, xg, buf);
                    fd_plan_run(plans[gr], g->P, buf, off, yg, g->P, (pg_narrow){.wp = 0});
                }
            }
            conv_add_bias(d, g, bias, y + b * g->y_img);
        }
    }
    if (failed)
        report_oom(fn);
}

/* at live inputs only (pg_dxlive_job), weights finite (∞ · 0 at the
 * edges, where the dense form reads dy's padding, would be NaN there);
 * 0, having written nothing, where it does not apply, else 1 (done, or
 * after a report) */
static int backward_data_live(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                              const float *x, const float *weight, const float *dy, float *dx)
{
    const pg_dxlive_fn lfn = pg_cntx_active()->dxlive.fp;
    if (!conv_dxlive_applies(d, g, lfn, 0, x) ||
        conv_value_stats(weight, (long)d->c_out * g->K).special)
        return 0;
    conv_dxlive_run(fn, d, g, lfn, 0, 0, x, weight, dy, dx);
    return 1;
}

void conv_float_backward_data(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                              int live, const float *x, const float *weight, const float *dy,
                              float *dx)
{
    if (live && backward_data_live(fn, d, g, x, weight, dy, dx))
        return;
    if (conv_clane_data(fn, d, g, 0, weight, dy, dx))
        return;
    int implicit = conv_data_implicit(d);
    int qh = d->dil_h * (d->kh - 1) - d->pad_h, qw = d->dil_w * (d->kw - 1) - d->pad_w;
    int hq = g->oh + 2 * qh, wq = g->ow + 2 * qw; /* dy padded */
    int slack = conv_wide_slack(d);
    int K2 = g->cog * d->kh * d->kw; /* the implicit reduction: (co, i, j) */
    fd_plan **plans;
    long *off;
    if (implicit) {
        const float *wf = conv_flip_weights(d, g, weight);
        plans = wf ? group_plans(d, CblasNoTrans, g->cig, K2, wf, (long)g->cig * K2, K2) : NULL;
        off = conv_tap_offsets(g->cog, d->kh, d->kw, hq, wq, d->dil_h, d->dil_w);
    } else {
        plans = group_plans(d, CblasTrans, g->K, g->cog, weight, (long)g->cog * g->K, g->K);
        off = nomul_scratch_bytes(NOMUL_SCRATCH_CONV_OFFS, (size_t)g->cog * sizeof *off);
        if (off)
            for (int co = 0; co < g->cog; co++)
                off[co] = (long)co * g->P;
    }
    if (!plans || !off) {
        report_oom(fn);
        return;
    }
    long nwide = (long)d->h * wq;
    NOMUL_COUNT(FMUL, (long long)d->n * d->c_out * g->P * g->K);
    NOMUL_COUNT(FADD, (long long)d->n * d->c_out * g->P * g->K);
    int nt = conv_image_threads(d), failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *buf = nomul_scratch(NOMUL_SCRATCH_CONV_DCOL, implicit
                                                                ? (size_t)g->cog * hq * wq + slack
                                                                : (size_t)g->K * g->ldcol + 32);
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->n; b++) {
            if (!buf)
                continue;
            if (!implicit)
                memset(dx + b * g->x_img, 0, (size_t)g->x_img * sizeof *dx);
            for (int gr = 0; gr < d->groups; gr++) {
                const float *dyg = dy + b * g->y_img + (long)gr * g->cog * g->P;
                float *dxg = dx + b * g->x_img + (long)gr * g->cig * d->h * d->w;
                if (implicit) {
                    conv_pad_planes(g->cog, g->oh, g->ow, qh, qw, dyg, buf, slack);
                    fd_plan_run(plans[gr], (int)nwide, buf, off, dxg, d->h * d->w,
                                (pg_narrow){.wp = wq, .ow = d->w});
                } else {
                    fd_plan_run(plans[gr], g->P, dyg, off, buf, g->ldcol, (pg_narrow){.wp = 0});
                    conv_col2im_add(d, g, buf, dxg);
                }
            }
        }
    }
    if (failed)
        report_oom(fn);
}

/* The pixels run along the rows of both operands' reading: one of dy_g
 * (co × P) and col (K × P) is transposed per image, the smaller: dW_gᵀ
 * (K × co) = col · dy_gᵀ, transposed into dw at the end, or dW_g (co × K) =
 * dy_g · colᵀ into dw directly. Implicit (stride 1, and col the one read
 * in place): col's rows read in the padded image, P as oh segments of ow
 * pixels, Wp apart; stride 2 the same in the split image (rows ws apart). */
int conv_float_dw_block(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                        const float *x, const float *dy, float *dw, long b0, long b1)
{
    long nw = (long)d->c_out * g->K;
    int slack = conv_wide_slack(d);
    int by_dyt = g->cog <= g->K;
    int implicit = by_dyt ? conv_dw_feed(d, g) : 0;
    int wp = conv_feed_width(d, implicit);
    size_t nb = implicit ? (size_t)conv_feed_floats(d, implicit, g->cig) + slack
                         : (size_t)g->K * g->ldcol + 32;
    float *buf = nomul_scratch(NOMUL_SCRATCH_CONV_COL, nb);
    float *t = buf ? nomul_scratch(NOMUL_SCRATCH_CONV_DYT, (size_t)g->P * (by_dyt ? g->cog : g->K))
                   : NULL;
    float *dwt = t && by_dyt ? nomul_scratch(NOMUL_SCRATCH_CONV_DWT, (size_t)nw) : dw;
    /* this thread's row offsets of col (K) and of dy_g (co) */
    long *off = dwt ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_DWOFFS,
                                          (size_t)(g->K + g->cog) * sizeof *off)
                    : NULL;
    /* 3×3, 16·m output channels per group (dy's transposed rows are read
     * 16 or 32 wide), where it pays (conv_skips_pay): input by input
     * (dwplane.inc) while the images pass the guard (x sparse enough, the
     * bits the same); once one has not, the rest of the block runs in place
     * (its sums could then hold a −0 that a left-out zero term would have
     * turned to +0) */
    const pg_dwplane_ukr *dp = &pg_cntx_active()->dwplane;
    int plane = implicit == CONV_PADDED && d->kh == 3 && d->kw == 3 && g->cog % 16 == 0 &&
                dp->fp &&
                conv_plane_codes_fit(d, g, g->cog) &&
                (conv_dwplane_mode == CONV_DWPLANE_ALWAYS ||
                 (conv_dwplane_mode == CONV_DWPLANE_AUTO && conv_skips_pay()));
    uint32_t *plist = off && plane ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_PLANELIST,
                                                         PG_PLANE_LIST(d->h, d->w) * 4)
                                   : NULL;
    if (!off || (plane && !plist)) {
        report_oom(fn);
        return 0;
    }
    if (b0 == b1) {
        memset(dw, 0, (size_t)nw * sizeof *dw);
        return 1;
    }
    conv_col_offsets(d, g, implicit, off);
    for (int co = 0; co < g->cog; co++)
        off[g->K + co] = (long)co * g->P;
    long plane_runs = 0;
    for (long b = b0; b < b1; b++)
        for (int gr = 0; gr < d->groups; gr++) {
            const float *xg = x + b * g->x_img + (long)gr * g->cig * d->h * d->w;
            const float *dyg = dy + b * g->y_img + (long)gr * g->cog * g->P;
            long at = (long)gr * g->K * g->cog;
            plane = plane && dp->fp_guard(xg, (long)g->cig * d->h * d->w, dyg,
                                          (long)g->cog * g->P);
            if (plane) {
                conv_transpose(g->cog, g->P, dyg, g->P, t);
                for (int j0 = 0; j0 < g->cog; j0 += 32) { /* 32 channels a pass */
                    pg_dwplane_job job = conv_dwplane_job(
                        d, g, xg, (const uint32_t *)t + j0, g->cog, dwt + at + j0,
                        g->cog - j0 < 32 ? g->cog - j0 : 32, b > b0, plist);
                    dp->fp(&job);
                }
                plane_runs++;
                continue;
            }
            if (implicit)
                conv_feed_fill(d, implicit, g->cig, xg, buf, slack);
            else
                conv_im2col(d, g, xg, buf);
            if (by_dyt) {
                conv_transpose(g->cog, g->P, dyg, g->P, t);
                if (implicit)
                    fd_gemm_inplace(g->K, g->cog, g->P, buf, off, g->ow, wp, t, g->cog, dwt + at,
                                    g->cog, b > b0);
                else
                    fd_gemm_inplace(g->K, g->cog, g->P, buf, off, g->P, 0, t, g->cog, dwt + at,
                                    g->cog, b > b0);
            } else {
                conv_transpose(g->K, g->P, buf, g->ldcol, t);
                fd_gemm_inplace(g->cog, g->K, g->P, dyg, off + g->K, g->P, 0, t, g->K, dw + at,
                                g->K, b > b0);
            }
        }
    if (by_dyt)
        for (int gr = 0; gr < d->groups; gr++) {
            long at = (long)gr * g->K * g->cog;
            conv_transpose(g->K, g->cog, dwt + at, g->cog, dw + at);
        }
    NOMUL_COUNT(FMUL, (long long)(b1 - b0) * nw * g->P);
    NOMUL_COUNT(FADD, (long long)(b1 - b0) * nw * g->P);
    if (plane_runs) {
#pragma omp atomic
        conv_dwplane_runs += plane_runs;
    }
    return 1;
}
