/*
 * conv2d_depthwise.c — depthwise convolution (one input and one output
 * channel per group, stride 1) in PA arithmetic as direct loops over shifted
 * rows, on the context's vector row kernels, when every product is known to
 * stay normal: the forward, the exact and approximate backward data and
 * weight. No im2col and no one-row matrix products; conv2d.c falls back to
 * its im2col path when these do not apply.
 */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../core/internal.h"
#include "conv2d_internal.h"
#include "nomul/arith.h"

/* one input and one output channel per group, stride 1 */
static int depthwise(const nomul_conv2d_desc *d, const conv_geom *g)
{
    return g->cig == 1 && g->cog == 1 && d->stride_h == 1 && d->stride_w == 1;
}

/* statistics of n values as they are (no padding zero) */
static pg_stats plain_stats(const nomul_conv2d_desc *d, const float *v, long n)
{
    nomul_conv2d_desc nopad = *d;
    nopad.pad_h = nopad.pad_w = 0;
    return conv_input_stats(&nopad, v, n);
}

/* whether the n values hold one of the zero class (zero or subnormal): the
 * statistics kernel's zero flag */
static int has_zero_class(const pg_dw_rows *k, const float *v, long n)
{
    pg_stats st;
    k->stats(v, n, &st);
    return st.zero;
}

/* bits(offset) − 1.0: what an offset adds to a PAM's bit sum (0 for none) */
static uint32_t offset_adj(float offset)
{
    uint32_t u = PG_ONE;
    if (offset != 1.0f)
        memcpy(&u, &offset, 4);
    return u - PG_ONE;
}

/* The outputs o in [*o0, *o1) of a stride-1 tap whose input o + shift lies
 * in [0, in): the span one tap's row kernel covers, along rows or columns. */
static void tap_span(int in, int out, int shift, int *o0, int *o1)
{
    conv_valid_cols(in, out, 1, shift, o0, o1);
}

/* Depthwise PAM forward (one input and one output channel per group, stride
 * 1) when every product stays normal: a direct convolution, each output row
 * summed from shifted input rows by the vector row kernel (one integer and
 * one float add per product), no im2col. Returns 0 when it does not apply. */
int conv_depthwise_forward(const nomul_conv2d_desc *d, const conv_geom *g, float offset,
                           const float *x, const float *weight, const float *bias, float *y)
{
    if (!depthwise(d, g))
        return 0;
    pg_stats xs = conv_input_stats(d, x, d->n * g->x_img);
    pg_stats ws = plain_stats(d, weight, (long)d->c_out * d->kh * d->kw);
    if (!pg_range_safe(&xs, &ws, offset))
        return 0;
    const pg_dw_rows *rows = &pg_cntx_active()->dw_rows;
    uint32_t off_adj = offset_adj(offset);
    long planes = (long)d->n * d->c_out;
    int nt = omp_in_parallel() ? 1 : nomul_num_threads();
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (long pl = 0; pl < planes; pl++) {
        int c = (int)(pl % d->c_out);
        const float *xin = x + pl * d->h * d->w;
        const float *wc = weight + (long)c * d->kh * d->kw;
        float *out = y + pl * g->P;
        for (long p = 0; p < g->P; p++)
            out[p] = bias ? bias[c] : 0.0f;
        long terms = 0;
        /* tap by tap over all rows: each output still adds its taps in order */
        for (int i = 0; i < d->kh; i++) {
            int sy = i * d->dil_h - d->pad_h, oy0, oy1; /* iy = oy + sy */
            tap_span(d->h, g->oh, sy, &oy0, &oy1);
            for (int j = 0; j < d->kw; j++) {
                uint32_t wb;
                memcpy(&wb, &wc[i * d->kw + j], 4);
                int shift = j * d->dil_w - d->pad_w, ox0, ox1; /* ix = ox + shift */
                tap_span(d->w, g->ow, shift, &ox0, &ox1);
                if ((wb & 0x7F800000u) == 0 || ox1 <= ox0 || oy1 <= oy0)
                    continue; /* a zero weight: every product is zero */
                rows->fwd(oy1 - oy0, ox1 - ox0, xin + (long)(oy0 + sy) * d->w + ox0 + shift, d->w,
                          wb - PG_ONE + off_adj, out + (long)oy0 * g->ow + ox0, g->ow);
                terms += (long)(oy1 - oy0) * (ox1 - ox0);
            }
        }
        NOMUL_COUNT(PAM, terms * (offset != 1.0f ? 2 : 1));
        NOMUL_COUNT(FADD, terms);
    }
    return 1;
}

/* The depthwise exact backward (one input and one output channel per group,
 * stride 1) as direct loops over shifted rows, when every term is known to
 * be a normal number: four vector integer/float operations per product, the
 * matrix engine's exact-gradient rate, without im2col or one-row products.
 * They return 0 when they do not apply (another layer, values that could
 * leave the range, NaN or infinity, no memory); the general path then runs
 * and writes every output. The approximate backward's products are PAMs
 * like the forward's, on the same row kernels.
 *
 * dx = Σ_taps ∂PAM(w', x)/∂x · dy, w' = PAM(w, offset) (exact), or
 * Σ_taps PAM(w, dy) with the offset (approximate): input row iy takes, for
 * tap (i, j), output row oy = iy + pad_h − i·dil_h shifted by
 * pad_w − j·dil_w. */
int conv_depthwise_backward_data(const nomul_conv2d_desc *d, const conv_geom *g, int approx,
                                 float offset, const float *x, const float *weight,
                                 const float *dy, float *dx)
{
    if (!depthwise(d, g))
        return 0;
    int taps = d->kh * d->kw;
    long nw = (long)d->c_out * taps, hw = (long)d->h * d->w;
    uint32_t *wadj = malloc((size_t)nw * sizeof *wadj);
    unsigned char *wuse = malloc((size_t)nw);
    float *wq = malloc((size_t)nw * sizeof *wq);
    int ok = wadj && wuse && wq;
    uint32_t off_adj = approx ? offset_adj(offset) : 0;
    for (long i = 0; ok && i < nw; i++)
        wq[i] = !approx && offset != 1.0f ? nomul_pa_mul(weight[i], offset) : weight[i];
    if (ok) {
        /* exact: terms dy·2^(E(w') + carry); approximate: PAM(w, dy, offset) */
        pg_stats ws = plain_stats(d, wq, nw), ys = plain_stats(d, dy, d->n * g->y_img);
        ok = approx ? pg_range_safe(&ys, &ws, offset)
                    : !plain_stats(d, x, d->n * g->x_img).special && pg_range_safe(&ys, &ws, 1.0f);
    }
    for (long i = 0; ok && i < nw; i++) {
        uint32_t u;
        memcpy(&u, &wq[i], 4);
        wuse[i] = (u & 0x7F800000u) != 0; /* a zero-class weight sends nothing */
        wadj[i] = u - PG_ONE + off_adj;
    }
    long planes = (long)d->n * d->c_out;
    int nt = omp_in_parallel() ? 1 : nomul_num_threads(); /* the same team for fewer planes */
    int failed = 0;
    if (ok) {
        const pg_dw_rows *rows = &pg_cntx_active()->dw_rows;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : failed)
        {
            uint32_t *xm =
                approx ? NULL : nomul_scratch_bytes(NOMUL_SCRATCH_CONV_COL, (size_t)hw * sizeof *xm);
            failed = !approx && xm == NULL;
#pragma omp for schedule(static)
            for (long pl = 0; pl < planes; pl++) {
                if (failed)
                    continue;
                int c = (int)(pl % d->c_out);
                const float *xin = approx ? NULL : x + pl * hw, *g0 = dy + pl * g->P;
                float *out = dx + pl * hw;
                for (long i = 0; !approx && i < hw; i++) {
                    uint32_t u;
                    memcpy(&u, &xin[i], 4);
                    xm[i] = (u & 0x7F800000u) ? u & 0x7FFFFFu : 0;
                }
                memset(out, 0, (size_t)hw * sizeof *out);
                int zeros = !approx && has_zero_class(rows, g0, g->P);
                long terms = 0;
                for (int i = 0; i < d->kh; i++) {
                    int sy = d->pad_h - i * d->dil_h, iy0, iy1; /* oy = iy + sy */
                    tap_span(g->oh, d->h, sy, &iy0, &iy1);
                    for (int j = 0; j < d->kw; j++) {
                        long wi = (long)c * taps + i * d->kw + j;
                        int shift = d->pad_w - j * d->dil_w, ix0, ix1; /* ox = ix + shift */
                        tap_span(g->ow, d->w, shift, &ix0, &ix1);
                        if (!wuse[wi] || ix1 <= ix0 || iy1 <= iy0)
                            continue;
                        const float *grow = g0 + (long)(iy0 + sy) * g->ow + ix0 + shift;
                        float *orow = out + (long)iy0 * d->w + ix0;
                        if (approx)
                            rows->fwd(iy1 - iy0, ix1 - ix0, grow, g->ow, wadj[wi], orow, d->w);
                        else
                            rows->dx(iy1 - iy0, ix1 - ix0, xm + (long)iy0 * d->w + ix0, d->w,
                                     wadj[wi], grow, g->ow, orow, d->w, zeros);
                        terms += (long)(iy1 - iy0) * (ix1 - ix0);
                    }
                }
                if (approx)
                    NOMUL_COUNT(PAM, terms * (offset != 1.0f ? 2 : 1));
                else
                    NOMUL_COUNT(SHIFT, terms);
                NOMUL_COUNT(FADD, terms);
            }
        }
    }
    free(wadj);
    free(wuse);
    free(wq);
    return ok && !failed;
}

/* the loops of depthwise_backward_weight: exact with wq[tap], approximate
 * with the one adjustment adj */
static int depthwise_weight_run(const nomul_conv2d_desc *d, const conv_geom *g, int approx,
                                float offset, const float *x, const uint32_t *wq, uint32_t adj,
                                const float *dy, float *dweight)
{
    int taps = d->kh * d->kw;
    long hw = (long)d->h * d->w;
    const pg_dw_rows *rows = &pg_cntx_active()->dw_rows;
    int nt = omp_in_parallel() ? 1 : nomul_num_threads(); /* the same team for fewer channels */
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int c = 0; c < d->c_out; c++) {
        float *dwc = dweight + (long)c * taps;
        long terms = 0;
        for (int t = 0; t < taps; t++)
            dwc[t] = 0.0f;
        for (int b = 0; b < d->n; b++) {
            long pl = (long)b * d->c_out + c;
            const float *xin = x + pl * hw, *g0 = dy + pl * g->P;
            int zeros = has_zero_class(rows, xin, hw) || has_zero_class(rows, g0, g->P);
            for (int i = 0; i < d->kh; i++) {
                int sy = i * d->dil_h - d->pad_h, oy0, oy1; /* iy = oy + sy */
                tap_span(d->h, g->oh, sy, &oy0, &oy1);
                for (int j = 0; j < d->kw; j++) {
                    int shift = j * d->dil_w - d->pad_w, ox0, ox1; /* ix = ox + shift */
                    tap_span(d->w, g->ow, shift, &ox0, &ox1);
                    if (ox1 <= ox0 || oy1 <= oy0)
                        continue;
                    const float *xrow = xin + (long)(oy0 + sy) * d->w + ox0 + shift;
                    const float *grow = g0 + (long)oy0 * g->ow + ox0;
                    dwc[i * d->kw + j] +=
                        approx ? rows->dot(oy1 - oy0, ox1 - ox0, xrow, d->w, adj, grow, g->ow,
                                           zeros)
                               : rows->dw(oy1 - oy0, ox1 - ox0, xrow, d->w,
                                          wq[(long)c * taps + i * d->kw + j], grow, g->ow, zeros);
                    terms += (long)(oy1 - oy0) * (ox1 - ox0);
                }
            }
        }
        if (approx)
            NOMUL_COUNT(PAM, terms * (offset != 1.0f ? 2 : 1));
        else
            NOMUL_COUNT(SHIFT, terms);
        NOMUL_COUNT(FADD, terms);
    }
    return 1;
}

/* dw = Σ_images Σ_outputs ∂PAM(w, x')/∂w · dy, x' = PAM(x, offset) (exact),
 * or Σ PAM(dy, x) with the offset (approximate): tap (i, j) pairs output row
 * oy with input row oy − pad_h + i·dil_h shifted by j·dil_w − pad_w. Each
 * channel's taps are summed by one thread, image by image, so the result
 * does not depend on the thread count. */
int conv_depthwise_backward_weight(const nomul_conv2d_desc *d, const conv_geom *g, int approx,
                                   float offset, const float *x, const float *weight,
                                   const float *dy, float *dweight)
{
    if (!depthwise(d, g))
        return 0;
    int taps = d->kh * d->kw;
    long nw = (long)d->c_out * taps;
    pg_stats xs = plain_stats(d, x, d->n * g->x_img), ys = plain_stats(d, dy, d->n * g->y_img);
    uint32_t oadj = offset_adj(offset);
    if (approx) /* Σ PAM(dy, x): bits(x) + bits(dy) − 1.0 (+ the offset's bits − 1.0) */
        return pg_range_safe(&ys, &xs, offset) &&
               depthwise_weight_run(d, g, approx, offset, x, NULL, oadj - PG_ONE, dy, dweight);
    if (xs.special || plain_stats(d, weight, nw).special)
        return 0;
    if (offset != 1.0f && xs.emax >= xs.emin) {
        /* x' = PAM(x, offset) = bits(x) + bits(offset) − 1.0 while it stays
         * normal: its exponent is x's plus the offset's, plus a carry */
        int eo = (int)(((oadj + PG_ONE) >> 23) & 0xFF) - 127;
        xs.emin += eo;
        xs.emax += eo + 1;
        if (xs.emin < -126 || xs.emax > 127)
            return 0;
    }
    if (!pg_range_safe(&ys, &xs, 1.0f))
        return 0;
    uint32_t *wq = malloc((size_t)nw * sizeof *wq);
    if (!wq)
        return 0;
    for (long i = 0; i < nw; i++) {
        uint32_t u;
        memcpy(&u, &weight[i], 4);
        wq[i] = ((u & 0x7F800000u) ? u & 0x7FFFFFu : 0) - PG_ONE + oadj;
    }
    int ok = depthwise_weight_run(d, g, approx, offset, x, wq, 0, dy, dweight);
    free(wq);
    return ok;
}
