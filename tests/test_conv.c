/*
 * test_conv.c — conv2d (forward, backward data, backward weight; float and
 * PAM, exact and approximate) against direct convolution loops over the
 * scalar functions with float64 sums, on random descriptors covering
 * stride, padding, dilation and groups; power-of-two weights against the
 * float convolution; bad descriptors reported.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nomul/nomul.h"
#include "core/internal.h"
#include "gemm/conv2d_internal.h"
#include "testutil.h"

static int rnd(tu_rng *r, int lo, int hi) { return lo + (int)(tu_u32(r) % (uint32_t)(hi - lo + 1)); }

/* a layer's output size and its x, weight and y element counts */
static void layer_sizes(const nomul_conv2d_desc *d, int *oh, int *ow, long *nx, long *nw,
                        long *ny)
{
    assert_true(nomul_conv2d_output_size(d, oh, ow));
    *nx = (long)d->n * d->c_in * d->h * d->w;
    *nw = (long)d->c_out * (d->c_in / d->groups) * d->kh * d->kw;
    *ny = (long)d->n * d->c_out * *oh * *ow;
}

static float value(tu_rng *r, int zeros)
{
    if (zeros && tu_u32(r) % 6 == 0)
        return 0.0f;
    return tu_normal(r, -4, 4, 1);
}

/* The product a configuration uses, and its two derivatives times g. */
static double prod(const nomul_op_cfg *m, float w, float x)
{
    if (!nomul_op_is_pa(m))
        return (double)w * (double)x;
    return m->offset == 1.0f ? nomul_pa_mul(w, x) : nomul_pa_mul_off(w, x, m->offset);
}

/* d/dw and d/dx of prod(w, x), times g */
static void dprod(const nomul_op_cfg *m, float w, float x, float g, double *dw, double *dx)
{
    if (!nomul_op_is_pa(m)) {
        *dw = (double)x * g;
        *dx = (double)w * g;
    } else if (m->approx_bwd) {
        *dw = m->offset == 1.0f ? nomul_pa_mul(g, x) : nomul_pa_mul_off(g, x, m->offset);
        *dx = m->offset == 1.0f ? nomul_pa_mul(w, g) : nomul_pa_mul_off(w, g, m->offset);
    } else {
        float a, b;
        if (m->offset == 1.0f)
            nomul_pa_mul_grad(w, x, g, &a, &b);
        else
            nomul_pa_mul_off_grad(w, x, m->offset, g, &a, &b);
        *dw = a;
        *dx = b;
    }
}

/* Normwise error against the float64 sums, relative to the sums of the
 * terms' magnitudes (mag): what a float32 sum's rounding is bounded by, in
 * any order, so an output whose terms cancel is not held to a bound its own
 * float summation cannot meet (one weight of a 1x1 kernel: 72 terms up to
 * 2^8 that summed to -4.27 came out 5e-5 off in float, 1.2e-5 relative). */
static void check_close(const char *what, const nomul_conv2d_desc *d, const nomul_op_cfg *m,
                        const double *want, const double *mag, const float *got, long n)
{
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += mag[i] * mag[i];
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    if (!(err <= 1e-5))
        FAIL_SEED("%s n%d c%d->%d %dx%d k%dx%d s%d,%d p%d,%d d%d,%d g%d mode %d approx %d off %g "
                  "isa %s: normwise error %g",
                  what, d->n, d->c_in, d->c_out, d->h, d->w, d->kh, d->kw, d->stride_h,
                  d->stride_w, d->pad_h, d->pad_w, d->dil_h, d->dil_w, d->groups, m->subtype,
                  m->approx_bwd, (double)m->offset, nomul_isa_name(nomul_isa_active()), err);
}

/* ±2^k, k in [-3, 3] (or 0 now and then with zeros) */
static float pow2_value(tu_rng *r, int zeros)
{
    if (zeros && tu_u32(r) % 6 == 0)
        return 0.0f;
    return ldexpf(tu_u32(r) % 2 ? -1.0f : 1.0f, (int)(tu_u32(r) % 7) - 3);
}

/* zeros: bit 0 puts zeros into x and dy, bit 1 into the weights too.
 * dy's values are scaled by 2^dy_exp (to push the gradient terms out of the
 * normal range); with pow2 = 1, the weights are ±1 and ±2; with pow2 = 2,
 * every value is ±2^k, so that every product and every exact-gradient term
 * is a power of two (mantissas 0, no carries) and every sum of them is exact
 * in float32 in any order: the results must then equal the float64 sums bit
 * for bit, which no tolerance-based check can ask (a constant one unit of
 * the last place off would pass one). */
/* nomul_conv2d_backward (both gradients, x's, dy's and the weights' values
 * classified once) gives the two calls' results bit for bit; and with dx
 * or dweight NULL, the other alone */
static void check_combined(const nomul_conv2d_desc *d, const nomul_op_cfg *m, const float *x,
                           const float *w, const float *dy, const float *dx, const float *dw,
                           const float *db)
{
    long nx = (long)d->n * d->c_in * d->h * d->w;
    long nw = (long)d->c_out * (d->c_in / d->groups) * d->kh * d->kw;
    float *cx = malloc(sizeof(float) * (size_t)nx), *cw = malloc(sizeof(float) * (size_t)nw),
          *cb = malloc(sizeof(float) * (size_t)d->c_out);
    assert_non_null(cx);
    assert_non_null(cw);
    assert_non_null(cb);
    for (int form = 0; form < 3; form++) {
        nomul_conv2d_backward(d, m, x, w, dy, form == 2 ? NULL : cx, form == 1 ? NULL : cw,
                              form == 1 ? NULL : cb);
        const struct {
            const char *what;
            const float *want, *got;
            long n;
        } out[] = {{"data", dx, cx, form == 2 ? 0 : nx},
                   {"weight", dw, cw, form == 1 ? 0 : nw},
                   {"bias", db, cb, form == 1 ? 0 : d->c_out}};
        for (int o = 0; o < 3; o++)
            for (long i = 0; i < out[o].n; i++)
                if (tu_bits(out[o].want[i]) != tu_bits(out[o].got[i]))
                    FAIL_SEED("nomul_conv2d_backward (form %d), %s gradient [%ld] = %a, the "
                              "separate call's %a (approx %d off %g isa %s)",
                              form, out[o].what, i, (double)out[o].got[i],
                              (double)out[o].want[i], m->approx_bwd, (double)m->offset,
                              nomul_isa_name(nomul_isa_active()));
    }
    free(cx);
    free(cw);
    free(cb);
}

static void run_conv_case_scaled(tu_rng *r, const nomul_conv2d_desc *d, const nomul_op_cfg *m,
                                 int zeros, int dy_exp, int pow2)
{
    int oh, ow;
    long nx, nw, ny;
    layer_sizes(d, &oh, &ow, &nx, &nw, &ny);
    int cig = d->c_in / d->groups, cog = d->c_out / d->groups;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *bias = malloc(d->c_out * 4);
    float *y = malloc(ny * 4), *dy = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4);
    float *db = malloc(d->c_out * 4);
    double *wy = calloc(ny, 8), *wdx = calloc(nx, 8), *wdw = calloc(nw, 8), *wdb = calloc(d->c_out, 8);
    double *my = calloc(ny, 8), *mdx = calloc(nx, 8), *mdw = calloc(nw, 8), *mdb = calloc(d->c_out, 8);
    for (long i = 0; i < nx; i++)
        x[i] = pow2 == 2 ? pow2_value(r, zeros) : value(r, zeros);
    for (long i = 0; i < nw; i++)
        w[i] = pow2 == 1   ? (float)(1 + (int)(tu_u32(r) % 2)) * (tu_u32(r) % 2 ? -1.0f : 1.0f)
               : pow2 == 2 ? pow2_value(r, zeros & 2)
                           : value(r, zeros & 2);
    for (int i = 0; i < d->c_out; i++)
        bias[i] = pow2 == 2 ? pow2_value(r, 0) : value(r, 0);
    for (long i = 0; i < ny; i++)
        dy[i] = ldexpf(pow2 == 2 ? pow2_value(r, zeros) : value(r, zeros), dy_exp);
    /* the direct loops */
    for (int b = 0; b < d->n; b++)
        for (int co = 0; co < d->c_out; co++) {
            int gr = co / cog;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    long yi = (((long)b * d->c_out + co) * oh + oy) * ow + ox;
                    double s = bias[co], sm = fabs(bias[co]);
                    for (int c = 0; c < cig; c++)
                        for (int i = 0; i < d->kh; i++)
                            for (int j = 0; j < d->kw; j++) {
                                int iy = oy * d->stride_h - d->pad_h + i * d->dil_h;
                                int ix = ox * d->stride_w - d->pad_w + j * d->dil_w;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                                    continue;
                                int ci = gr * cig + c;
                                long xi = (((long)b * d->c_in + ci) * d->h + iy) * d->w + ix;
                                long wi = (((long)co * cig + c) * d->kh + i) * d->kw + j;
                                double gw, gx;
                                double p = prod(m, w[wi], x[xi]);
                                s += p;
                                sm += fabs(p);
                                dprod(m, w[wi], x[xi], dy[yi], &gw, &gx);
                                wdw[wi] += gw;
                                wdx[xi] += gx;
                                mdw[wi] += fabs(gw);
                                mdx[xi] += fabs(gx);
                            }
                    wy[yi] = s;
                    my[yi] = sm;
                    /* the bias gradient is a float32 sum in (image, pixel) order */
                    wdb[co] = (float)wdb[co] + dy[yi];
                    mdb[co] += fabs(dy[yi]);
                }
        }
    nomul_clear_error();
    nomul_conv2d_forward(d, m, x, w, bias, y);
    nomul_conv2d_backward_data(d, m, x, w, dy, dx);
    nomul_conv2d_backward_weight(d, m, x, w, dy, dw, db);
    if (nomul_last_error() != NOMUL_OK)
        FAIL_SEED("conv2d reported: %s", nomul_last_error_message());
    check_combined(d, m, x, w, dy, dx, dw, db);
    if (pow2 == 2) {
        const struct {
            const char *what;
            const double *want;
            const float *got;
            long n;
        } out[] = {{"forward", wy, y, ny}, {"backward data", wdx, dx, nx},
                   {"backward weight", wdw, dw, nw}};
        for (int o = 0; o < 3; o++)
            for (long i = 0; i < out[o].n; i++)
                if (tu_bits(out[o].got[i]) != tu_bits((float)out[o].want[i]) &&
                    !(out[o].got[i] == 0.0f && out[o].want[i] == 0.0)) /* a zero's sign
                                                     depends on the order of the sum */
                    FAIL_SEED("%s, powers of two, n%d c%d->%d %dx%d k%dx%d s%d,%d p%d,%d d%d,%d g%d "
                              "approx %d off %g isa %s: [%ld] = %a, want %a exactly",
                              out[o].what, d->n, d->c_in, d->c_out, d->h, d->w, d->kh, d->kw,
                              d->stride_h, d->stride_w, d->pad_h, d->pad_w, d->dil_h, d->dil_w,
                              d->groups, m->approx_bwd, (double)m->offset,
                              nomul_isa_name(nomul_isa_active()), i, (double)out[o].got[i],
                              out[o].want[i]);
    }
    check_close("forward", d, m, wy, my, y, ny);
    check_close("backward data", d, m, wdx, mdx, dx, nx);
    check_close("backward weight", d, m, wdw, mdw, dw, nw);
    check_close("backward bias", d, m, wdb, mdb, db, d->c_out);
    free(x); free(w); free(bias); free(y); free(dy); free(dx); free(dw); free(db);
    free(wy); free(wdx); free(wdw); free(wdb);
    free(my); free(mdx); free(mdw); free(mdb);
}

static void run_conv_case(tu_rng *r, const nomul_conv2d_desc *d, const nomul_op_cfg *m, int zeros)
{
    run_conv_case_scaled(r, d, m, zeros, 0, 0);
}

static nomul_conv2d_desc random_desc(tu_rng *r)
{
    for (;;) {
        nomul_conv2d_desc d;
        d.groups = rnd(r, 1, 3);
        d.n = rnd(r, 1, 2);
        d.c_in = d.groups * rnd(r, 1, 3);
        d.c_out = d.groups * rnd(r, 1, 3);
        d.h = rnd(r, 1, 9);
        d.w = rnd(r, 1, 9);
        d.kh = rnd(r, 1, 3);
        d.kw = rnd(r, 1, 3);
        d.stride_h = rnd(r, 1, 2);
        d.stride_w = rnd(r, 1, 2);
        d.pad_h = rnd(r, 0, 2);
        d.pad_w = rnd(r, 0, 2);
        d.dil_h = rnd(r, 1, 2);
        d.dil_w = rnd(r, 1, 2);
        if (d.h + 2 * d.pad_h - d.dil_h * (d.kh - 1) - 1 >= 0 &&
            d.w + 2 * d.pad_w - d.dil_w * (d.kw - 1) - 1 >= 0)
            return d;
    }
}

static void test_conv_against_direct_loops(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC011};
    int reps = tu_scale() < 1 ? 4 : 25;
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        for (int rep = 0; rep < reps; rep++) {
            nomul_conv2d_desc d = random_desc(&r);
            static const nomul_op_cfg modes[] = {{NOMUL_OP_STANDARD, 0, 1.0f},
                                              {NOMUL_OP_PAM, 0, 1.0f},
                                              {NOMUL_OP_PAM, 1, 1.0f},
                                              {NOMUL_OP_PAM, 0, 1.0552f},
                                              {NOMUL_OP_PAM, 1, 1.0552f}};
            for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++)
                run_conv_case(&r, &d, &modes[k], rep & 1);
            run_conv_case_scaled(&r, &d, &modes[1 + (rep & 1)], rep & 1, 0, 2); /* no offset */
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* The float path's fast kernels (src/gemm/float: W packed, the column
 * matrix read in place, on every instruction set that has them) against
 * their plain twin, bit for bit: each output of the forward is the fused
 * multiply-adds of its K terms in (channel, tap) order from zero, padding's
 * zeros included; each backward data value is col2im's sum, in (channel,
 * tap, row) order from zero, of the fused multiply-add chains over the
 * group's output channels; each weight gradient is the sum, in block order,
 * of one fused multiply-add chain per block of images (core/internal.h's
 * fixed blocks) over its images and output pixels in order. Groups of 4 to
 * 20 output channels (partial row panels), output rows of 1 to 70 columns
 * (partial column tiles), up to 40 images (blocks of several); stride-1
 * layers take the implicit paths (src/gemm/float/conv_float.c), the data
 * gradient then one fma chain over (co, i, j) of the flipped kernel times
 * dy padded by dil·(k − 1) − pad. */
static float fd_col(const nomul_conv2d_desc *d, const float *xg, int c, int i, int j, int oy, int ox)
{
    int iy = oy * d->stride_h - d->pad_h + i * d->dil_h, ix = ox * d->stride_w - d->pad_w + j * d->dil_w;
    return iy < 0 || iy >= d->h || ix < 0 || ix >= d->w ? 0.0f : xg[((long)c * d->h + iy) * d->w + ix];
}

static void test_float_fast_kernels_match_fma_twin(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC015};
    int reps = tu_scale() < 1 ? 6 : 20;
    const nomul_op_cfg fl = {NOMUL_OP_STANDARD, 0, 1.0f};
    /* and the layers of a ResNet on 28x28 and 32x32 images (the implicit
     * paths; rows 1024 floats apart, padded), a strided one, a 1x1 one */
    static const nomul_conv2d_desc fixed[] = {{3, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},
                                              {2, 8, 32, 32, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1},
                                              {2, 16, 14, 14, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},
                                              {2, 16, 14, 14, 32, 1, 1, 1, 1, 0, 0, 1, 1, 1}};
    const int nfixed = (int)(sizeof fixed / sizeof fixed[0]);
    for (int isa = NOMUL_ISA_AVX2; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        assert_true(fd_available());
        for (int rep = 0; rep < reps + nfixed; rep++) {
            nomul_conv2d_desc d = rep < nfixed ? fixed[rep] : random_desc(&r);
            int gsz = rep < nfixed ? d.c_out / d.groups : rnd(&r, 4, 20);
            d.c_out = d.groups * gsz;
            if (rep >= nfixed && rep % 3 == 2)
                d.n = rnd(&r, 17, 40);
            if (rep >= nfixed)
                d.w = rnd(&r, 1, 70);
            if (d.w + 2 * d.pad_w - d.dil_w * (d.kw - 1) - 1 < 0)
                d.w = d.dil_w * (d.kw - 1) + 1;
            int oh, ow;
            assert_true(nomul_conv2d_output_size(&d, &oh, &ow));
            long nx = (long)d.n * d.c_in * d.h * d.w, ny = (long)d.n * d.c_out * oh * ow;
            long nw = (long)d.c_out * (d.c_in / d.groups) * d.kh * d.kw;
            float *x = malloc(nx * 4), *w = malloc(nw * 4), *y = malloc(ny * 4);
            float *dy = malloc(ny * 4), *dx = malloc(nx * 4), *tx = calloc(nx, 4);
            float *dw = malloc(nw * 4), *tw = malloc(nw * 4), *bw = malloc(nw * 4);
            assert_non_null(x); assert_non_null(w); assert_non_null(y);
            assert_non_null(dy); assert_non_null(dx); assert_non_null(tx);
            assert_non_null(dw); assert_non_null(tw); assert_non_null(bw);
            for (long i = 0; i < nx; i++) x[i] = value(&r, rep & 1);
            for (long i = 0; i < nw; i++) w[i] = value(&r, 0);
            for (long i = 0; i < ny; i++) dy[i] = value(&r, rep & 1);
            nomul_conv2d_forward(&d, &fl, x, w, NULL, y);
            nomul_conv2d_backward_data(&d, &fl, x, w, dy, dx);
            nomul_conv2d_backward_weight(&d, &fl, x, w, dy, dw, NULL);
            int cig = d.c_in / d.groups, K = cig * d.kh * d.kw;
            /* the weight gradient's blocks (conv2d.c: at most 16 here) */
            int blocks = nomul_sum_blocks(d.n, 1, 16);
            for (int k = 0; k < blocks; k++) {
                long b0 = nomul_block_start(d.n, blocks, k), b1 = nomul_block_start(d.n, blocks, k + 1);
                for (int gr = 0; gr < d.groups; gr++)
                    for (int co = gr * gsz; co < (gr + 1) * gsz; co++)
                        for (int c = 0; c < cig; c++)
                            for (int i = 0; i < d.kh; i++)
                                for (int j = 0; j < d.kw; j++) {
                                    float acc = 0.0f;
                                    for (long b = b0; b < b1; b++) {
                                        const float *xg = x + ((long)b * d.c_in + gr * cig) * d.h * d.w;
                                        for (int oy = 0; oy < oh; oy++)
                                            for (int ox = 0; ox < ow; ox++)
                                                acc = fmaf(fd_col(&d, xg, c, i, j, oy, ox),
                                                           dy[(((long)b * d.c_out + co) * oh + oy) * ow + ox],
                                                           acc);
                                    }
                                    bw[(long)co * K + (c * d.kh + i) * d.kw + j] = acc;
                                }
                for (long i = 0; i < nw; i++)
                    tw[i] = k == 0 ? bw[i] : tw[i] + bw[i];
            }
            for (long i = 0; i < nw; i++)
                if (tu_bits(dw[i]) != tu_bits(tw[i]))
                    FAIL_SEED("float backward weight isa %s n%d c%d->%d g%d %dx%d k%dx%d s%d,%d "
                              "p%d,%d d%d,%d: dw[%ld] = %a, twin %a",
                              nomul_isa_name((nomul_isa)isa), d.n, d.c_in, d.c_out, d.groups, d.h,
                              d.w, d.kh, d.kw, d.stride_h, d.stride_w, d.pad_h, d.pad_w, d.dil_h,
                              d.dil_w, i, (double)dw[i], (double)tw[i]);
            for (int b = 0; b < d.n; b++)
                for (int gr = 0; gr < d.groups; gr++) {
                    const float *xg = x + ((long)b * d.c_in + gr * cig) * d.h * d.w;
                    float *txg = tx + ((long)b * d.c_in + gr * cig) * d.h * d.w;
                    for (int co = gr * gsz; co < (gr + 1) * gsz; co++)
                        for (int oy = 0; oy < oh; oy++)
                            for (int ox = 0; ox < ow; ox++) {
                                float acc = 0.0f;
                                for (int c = 0; c < cig; c++)
                                    for (int i = 0; i < d.kh; i++)
                                        for (int j = 0; j < d.kw; j++)
                                            acc = fmaf(w[(long)co * K + (c * d.kh + i) * d.kw + j],
                                                       fd_col(&d, xg, c, i, j, oy, ox), acc);
                                float got = y[(((long)b * d.c_out + co) * oh + oy) * ow + ox];
                                if (tu_bits(got) != tu_bits(acc))
                                    FAIL_SEED("float forward isa %s n%d c%d->%d g%d %dx%d k%dx%d "
                                              "s%d,%d p%d,%d d%d,%d: y[%d][%d][%d][%d] = %a, twin %a",
                                              nomul_isa_name((nomul_isa)isa), d.n, d.c_in, d.c_out,
                                              d.groups, d.h, d.w, d.kh, d.kw, d.stride_h,
                                              d.stride_w, d.pad_h, d.pad_w, d.dil_h, d.dil_w, b, co,
                                              oy, ox, (double)got, (double)acc);
                            }
                    if (conv_data_implicit(&d)) {
                        /* one fma chain over (co, i, j) of the flipped kernel
                         * times dy padded by dil·(k − 1) − pad */
                        int qh = d.dil_h * (d.kh - 1) - d.pad_h, qw = d.dil_w * (d.kw - 1) - d.pad_w;
                        for (int c = 0; c < cig; c++)
                            for (int iy = 0; iy < d.h; iy++)
                                for (int ix = 0; ix < d.w; ix++) {
                                    float acc = 0.0f;
                                    for (int co = gr * gsz; co < (gr + 1) * gsz; co++)
                                        for (int i = 0; i < d.kh; i++)
                                            for (int j = 0; j < d.kw; j++) {
                                                int oy = iy + i * d.dil_h - qh, ox = ix + j * d.dil_w - qw;
                                                float v = oy < 0 || oy >= oh || ox < 0 || ox >= ow
                                                              ? 0.0f
                                                              : dy[(((long)b * d.c_out + co) * oh + oy) * ow + ox];
                                                acc = fmaf(w[(long)co * K + (c * d.kh + d.kh - 1 - i) * d.kw +
                                                             d.kw - 1 - j],
                                                           v, acc);
                                            }
                                    txg[((long)c * d.h + iy) * d.w + ix] = acc;
                                }
                        continue;
                    }
                    /* col2im in (c, i, j, oy, ox) order of dcol's fma chains */
                    for (int c = 0; c < cig; c++)
                        for (int i = 0; i < d.kh; i++)
                            for (int j = 0; j < d.kw; j++)
                                for (int oy = 0; oy < oh; oy++)
                                    for (int ox = 0; ox < ow; ox++) {
                                        int iy = oy * d.stride_h - d.pad_h + i * d.dil_h;
                                        int ix = ox * d.stride_w - d.pad_w + j * d.dil_w;
                                        if (iy < 0 || iy >= d.h || ix < 0 || ix >= d.w)
                                            continue;
                                        float acc = 0.0f;
                                        for (int co = gr * gsz; co < (gr + 1) * gsz; co++)
                                            acc = fmaf(w[(long)co * K + (c * d.kh + i) * d.kw + j],
                                                       dy[(((long)b * d.c_out + co) * oh + oy) * ow + ox],
                                                       acc);
                                        txg[((long)c * d.h + iy) * d.w + ix] += acc;
                                    }
                }
            for (long i = 0; i < nx; i++)
                if (tu_bits(dx[i]) != tu_bits(tx[i]))
                    FAIL_SEED("float backward data (%s) isa %s n%d c%d->%d g%d %dx%d k%dx%d "
                              "s%d,%d p%d,%d d%d,%d: dx[%ld] = %a, twin %a",
                              conv_data_implicit(&d) ? "implicit" : "col2im",
                              nomul_isa_name((nomul_isa)isa), d.n, d.c_in, d.c_out, d.groups, d.h,
                              d.w, d.kh, d.kw, d.stride_h, d.stride_w, d.pad_h, d.pad_w, d.dil_h,
                              d.dil_w, i, (double)dx[i], (double)tx[i]);
            free(x); free(w); free(y); free(dy); free(dx); free(tx); free(dw); free(tw); free(bw);
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* A layer's three cases for a mode: with zeros in x and dy; with the
 * mode's offset (and zero weights when wzeros = 2); powers of two, bit for
 * bit. */
static void run_mode_cases(tu_rng *r, const nomul_conv2d_desc *d, const nomul_op_cfg *m,
                           const nomul_op_cfg *m_off, int wzeros)
{
    run_conv_case(r, d, m, 1);
    run_conv_case(r, d, m_off, wzeros ? 1 | wzeros : 0);
    run_conv_case_scaled(r, d, m, 1, 0, 2);
}

/* A bigger layer, past the matrix engine's blocking (K = 3·3·40 > 256). */
static void test_conv_larger_layer(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC012};
    nomul_conv2d_desc d = {2, 40, 12, 12, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    nomul_op_cfg m = {NOMUL_OP_PAM, 0, 1.0f}, m_off = {NOMUL_OP_PAM, 0, 1.0552f};
    run_conv_case(&r, &d, &m, 1);
    run_conv_case(&r, &d, &m_off, 0); /* the in-place direct path, with an offset */
    /* the approximate backward: its data gradient as the convolution of the
     * padded dy (stride 1), its weight gradient on the kernel that reads the
     * padded image (or im2col's output) in place, with and without zeros and
     * an offset, and powers of two (exact in any order: bit for bit) */
    nomul_op_cfg ma = {NOMUL_OP_PAM, 1, 1.0f}, ma_off = {NOMUL_OP_PAM, 1, 1.0552f};
    run_conv_case(&r, &d, &ma, 0);
    run_conv_case(&r, &d, &ma_off, 1);
    run_conv_case_scaled(&r, &d, &ma, 1, 0, 2);
    nomul_conv2d_desc dil = {2, 6, 23, 21, 5, 3, 3, 1, 1, 2, 1, 2, 1, 1}; /* dilated, uneven pad */
    run_conv_case(&r, &dil, &ma_off, 0);
    run_conv_case_scaled(&r, &dil, &ma, 0, 0, 2);
    /* strided: the weight gradient's kernel on im2col's output, 20 channels
     * (a 32-wide panel, 12 columns of padding) */
    nomul_conv2d_desc st = {3, 12, 11, 13, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1};
    run_mode_cases(&r, &st, &ma, &ma_off, 0);
    /* 20 images: blocks of two, each sum continued over its images */
    nomul_conv2d_desc many = {20, 8, 9, 10, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    run_conv_case(&r, &many, &ma, 1);
    run_conv_case_scaled(&r, &many, &ma, 0, 0, 2);
    /* the exact data gradient's implicit form (6 or more input channels),
     * and the exact weight gradient read in place (4 or more output ones):
     * partial 6-row panels (40, 8 channels), zero weights, powers of two
     * bit for bit, and a dilated layer without column padding, whose wide
     * rows (w + 4) are narrower than x's padded by the same 4 either side */
    run_conv_case(&r, &d, &m, 3);
    run_conv_case_scaled(&r, &d, &m, 3, 0, 2);
    nomul_conv2d_desc valid = {2, 8, 6, 40, 7, 3, 3, 1, 1, 1, 0, 1, 2, 1};
    run_mode_cases(&r, &valid, &m, &m_off, 2);
    run_conv_case(&r, &many, &m, 1);
    run_conv_case(&r, &dil, &m, 0);
    /* the exact weight gradient on the kernel that reads x in place: also
     * strided (im2col's output), 16 wide (20 channels), an offset whose
     * partner PAM(col, offset) it folds into the weight tiles */
    run_mode_cases(&r, &st, &m, &m_off, 2);
    run_conv_case_scaled(&r, &many, &m, 0, 0, 2);
    /* terms that leave the normal range (dy near 2^-120): the direct paths
     * must decline, and the general path's results match the definition */
    run_conv_case_scaled(&r, &d, &m, 1, -120, 0);
    run_conv_case_scaled(&r, &d, &ma, 0, -121, 0);
    nomul_conv2d_desc wide = {2, 8, 6, 6, 200, 1, 1, 1, 1, 0, 0, 1, 1, 1}; /* > 128 per group */
    run_conv_case(&r, &wide, &m, 1);
    /* depthwise (ConvMixer-like), with zeros in x, plain and with an offset */
    nomul_conv2d_desc dw = {2, 16, 10, 10, 16, 5, 5, 1, 1, 2, 2, 1, 1, 16};
    run_conv_case(&r, &dw, &m, 1);
    nomul_op_cfg mo = {NOMUL_OP_PAM, 1, 1.0552f};
    run_conv_case(&r, &dw, &mo, 1);
    nomul_conv2d_desc dwd = {1, 8, 9, 11, 8, 3, 3, 1, 1, 2, 1, 2, 1, 8}; /* dilated */
    run_conv_case(&r, &dwd, &m, 1);
}

/* The weight gradients' kernels that skip x's zeros (AVX-512's
 * pg_xsparse_ukr, conv2d.c's dw_block) against the in-place kernels they
 * stand in for, bit for bit, on the same inputs: x half zeros (as after a
 * ReLU) with some subnormals (left out as zeros are), dy with and without
 * zeros (a panel with zeros falls back to the in-place kernel: the last
 * image's, when the layer has several), exact and
 * approximate, with and without an offset; stride 1 (the padded image: chunks
 * of whole output rows, several per image, the last shorter), strided
 * (im2col's rows: chunks of one long segment), dilated with groups, 16-wide
 * and 32-wide panels and two of them, partial row tiles, and rows too wide
 * for a chunk (the in-place kernels only). conv_xsparse_runs shows where the
 * lists ran. Then the definition's checks (run_conv_case: float64 sums, and
 * powers of two bit for bit) with the lists forced on every chunk. */
static void test_dw_sparse_matches_in_place(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC015};
    nomul_isa_set(nomul_isa_max());
    if (!pg_cntx_active()->xsparse.build) {
        printf("# no kernels that skip zeros on %s: nothing to compare\n",
               nomul_isa_name(nomul_isa_active()));
        return;
    }
    /* (the 16-channel approximate layers' weight gradient by input would
     * stand in for both: test_dw_by_input_matches_in_place) */
    conv_dwplane_mode = CONV_DWPLANE_NEVER;
    static const nomul_conv2d_desc layers[] = {
        {3, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}, /* 16 wide, 4 chunks per image */
        {2, 8, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* 32 wide, one chunk */
        {2, 12, 7, 9, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* two panels, 32 + 8 */
        {2, 8, 40, 40, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1},  /* strided: im2col, P = 400 */
        {2, 6, 9, 23, 10, 3, 3, 1, 1, 2, 1, 2, 1, 2},   /* dilated, groups of 5 */
        {5, 7, 11, 5, 6, 2, 3, 1, 1, 0, 1, 1, 1, 1},    /* K = 42: a partial row tile */
        {1, 4, 2, 300, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* rows of 302: no chunk fits */
    };
    static const nomul_op_cfg modes[] = {{NOMUL_OP_PAM, 0, 1.0f},
                                      {NOMUL_OP_PAM, 0, 1.0552f},
                                      {NOMUL_OP_PAM, 1, 1.0f},
                                      {NOMUL_OP_PAM, 1, 1.0552f}};
    int nl = (int)(sizeof layers / sizeof layers[0]);
    for (int li = 0; li < nl; li++) {
        const nomul_conv2d_desc *d = &layers[li];
        int oh, ow;
        long nx, nw, ny;
        layer_sizes(d, &oh, &ow, &nx, &nw, &ny);
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc(ny * 4), *db = malloc(d->c_out * 4);
        float *dw[3] = {malloc(nw * 4), malloc(nw * 4), malloc(nw * 4)};
        assert_true(x && w && dy && db && dw[0] && dw[1] && dw[2]);
        for (int rep = 0; rep < 2; rep++) {
            for (long i = 0; i < nx; i++) {
                uint32_t u = tu_u32(&r);
                x[i] = u % 2 ? 0.0f : u % 97 == 1 ? ldexpf(1.0f, -140) : tu_normal(&r, -4, 4, 1);
            }
            for (long i = 0; i < nw; i++)
                w[i] = tu_normal(&r, -4, 2, 1);
            /* rep 1: zeros in the last image's dy (its panels in place) */
            long y_img = ny / d->n;
            for (long i = 0; i < ny; i++)
                dy[i] = rep == 1 && i >= ny - y_img && tu_u32(&r) % 8 == 0
                            ? 0.0f
                            : tu_normal(&r, -4, 4, 1);
            for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
                static const int order[3] = {CONV_XSPARSE_NEVER, CONV_XSPARSE_ALWAYS,
                                             CONV_XSPARSE_AUTO};
                long runs0 = conv_xsparse_runs, runs_always = 0;
                nomul_clear_error();
                for (int o = 0; o < 3; o++) {
                    long before = conv_xsparse_runs;
                    conv_xsparse_mode = order[o];
                    nomul_conv2d_backward_weight(d, &modes[k], x, w, dy, dw[o], db);
                    if (order[o] == CONV_XSPARSE_ALWAYS)
                        runs_always = conv_xsparse_runs - before;
                }
                conv_xsparse_mode = CONV_XSPARSE_AUTO;
                if (nomul_last_error() != NOMUL_OK)
                    FAIL_SEED("conv2d reported: %s", nomul_last_error_message());
                int want_none = li == nl - 1 || (rep == 1 && d->n == 1);
                if (want_none ? conv_xsparse_runs != runs0 : runs_always == 0)
                    FAIL_SEED("layer %d (approx %d off %g): the lists ran on %ld chunks, "
                              "want %s",
                              li, modes[k].approx_bwd, (double)modes[k].offset,
                              conv_xsparse_runs - runs0, want_none ? "none" : "some");
                for (int o = 1; o < 3; o++)
                    for (long i = 0; i < nw; i++)
                        if (tu_bits(dw[o][i]) != tu_bits(dw[0][i]))
                            FAIL_SEED("layer %d, dy zeros %d, approx %d off %g, mode %s: "
                                      "dW[%ld] = %a, the in-place kernels' %a",
                                      li, rep, modes[k].approx_bwd, (double)modes[k].offset,
                                      o == 1 ? "always" : "auto", i, (double)dw[o][i],
                                      (double)dw[0][i]);
            }
        }
        free(x); free(w); free(dy); free(db);
        for (int o = 0; o < 3; o++)
            free(dw[o]);
    }
    /* the definition's checks with the lists on every chunk */
    conv_xsparse_mode = CONV_XSPARSE_ALWAYS;
    nomul_op_cfg m = {NOMUL_OP_PAM, 0, 1.0f}, m_off = {NOMUL_OP_PAM, 0, 1.0552f};
    nomul_op_cfg ma = {NOMUL_OP_PAM, 1, 1.0f}, ma_off = {NOMUL_OP_PAM, 1, 1.0552f};
    for (int li = 0; li < 5; li++) {
        nomul_conv2d_desc d = layers[li];
        d.n = 1;
        run_mode_cases(&r, &d, &m, &m_off, 0);
        run_mode_cases(&r, &d, &ma, &ma_off, 0);
    }
    conv_xsparse_mode = CONV_XSPARSE_AUTO;
    conv_dwplane_mode = CONV_DWPLANE_AUTO;
}

/* The weight gradient input by input (AVX-512's dwplane.inc: 3×3, stride
 * 1; PAM's approximate form, float's with 16·m output channels per group)
 * against the in-place kernels, bit for bit, on fresh random layers each
 * run: 5, 8, 12, 16, 32, 47, 48 and 64 output channels (one or two
 * registers a tap, panels of 32 and partial ones), groups, padding
 * 0 to 2, dilation (rows and columns apart), planes narrower and wider than
 * 16 and not multiples of it (edge inputs take the checked loop), 40
 * images (blocks of several: the sums continue); x 5/8 zeros of both
 * signs, subnormals in the last image (PAM's zeros; float's guard runs that
 * image in place); dy without zeros, then with zeros in the last image
 * (PAM runs that image in place); then, for float, images whose products
 * all underflow (sums that reach −0, where a left-out +0 term would change
 * the bits: the guard keeps them in place), and x without zeros (too dense
 * for the lists to pay: in place).
 * conv_dwplane_runs shows where it ran: in mode always wherever it applies,
 * in auto for float only where conv_skips_pay (not on Zen 5). PAM's
 * exact form takes it as its approximate one does on 16-column panels (its
 * T the weights' tiles, with and without an offset). */
static void test_dw_by_input_matches_in_place(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xD1A7};
    nomul_isa_set(nomul_isa_max());
    if (!pg_cntx_active()->dwplane.pam) {
        printf("# no weight gradient by input on %s: nothing to compare\n",
               nomul_isa_name(nomul_isa_active()));
        return;
    }
    static const nomul_conv2d_desc layers[] = {
        {3, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* ResNet20's first stage */
        {2, 12, 9, 37, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* 37 wide: a partial 16 */
        {2, 6, 7, 5, 8, 3, 3, 1, 1, 0, 0, 1, 1, 1},      /* no padding, narrow */
        {2, 8, 13, 11, 10, 3, 3, 1, 1, 2, 1, 2, 1, 2},   /* dilated rows, groups of 5 */
        {2, 4, 10, 19, 16, 3, 3, 1, 1, 1, 2, 1, 2, 1},   /* dilated columns, pad 2 */
        {2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 1, 4},    /* ResNeXt: groups of 16 */
        {40, 3, 6, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},     /* blocks of several images */
        {2, 8, 9, 11, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},    /* 32: two registers a tap */
        {2, 6, 7, 13, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1},    /* 48: panels of 32 and 16 */
        {2, 8, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},     /* 64: two panels */
        {2, 5, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},     /* float: K = 45 < 64, dy read in place */
        {2, 4, 6, 9, 47, 3, 3, 1, 1, 2, 2, 2, 2, 1},     /* 47 (32 + 15), dilated */
    };
    static const nomul_op_cfg modes[] = {{NOMUL_OP_PAM, 1, 1.0f},
                                         {NOMUL_OP_PAM, 1, 1.0552f},
                                         {NOMUL_OP_PAM, 0, 1.0f},
                                         {NOMUL_OP_PAM, 0, 1.0552f},
                                         {NOMUL_OP_STANDARD, 0, 1.0f}};
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const nomul_conv2d_desc *d = &layers[li];
        int oh, ow;
        long nx, nw, ny;
        layer_sizes(d, &oh, &ow, &nx, &nw, &ny);
        long y_img = ny / d->n;
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc(ny * 4);
        float *db = malloc(d->c_out * 4), *dw[2] = {malloc(nw * 4), malloc(nw * 4)};
        assert_true(x && w && dy && db && dw[0] && dw[1]);
        for (int rep = 0; rep < 4; rep++) {
            long x_img = nx / d->n;
            for (long i = 0; i < nx; i++) {
                uint32_t u = tu_u32(&r);
                int last = i >= nx - x_img;
                x[i] = u % 8 < 5 && rep < 3 ? (u % 16 < 5 ? -0.0f : 0.0f)
                       : last && u % 13 == 0 ? ldexpf(u % 3 ? 1.0f : -1.0f, -140)
                       : rep == 2            ? tu_normal(&r, -110, -109, 1)
                                             : tu_normal(&r, -5, 4, 1);
            }
            for (long i = 0; i < nw; i++)
                w[i] = tu_normal(&r, -4, 2, 1);
            for (long i = 0; i < ny; i++) {
                int last = i >= ny - y_img;
                dy[i] = rep == 1 && last && tu_u32(&r) % 8 == 0 ? 0.0f
                        : rep == 2                             ? tu_normal(&r, -48, -47, 1)
                                                               : tu_normal(&r, -4, 4, 1);
            }
            for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
                int pa = nomul_op_is_pa(&modes[k]);
                if (rep >= 2 && pa)
                    continue; /* (PAM declines products that leave the normal range) */
                nomul_clear_error();
                conv_dwplane_mode = CONV_DWPLANE_NEVER;
                long before = conv_dwplane_runs;
                nomul_conv2d_backward_weight(d, &modes[k], x, w, dy, dw[0], db);
                if (conv_dwplane_runs != before)
                    FAIL_SEED("layer %zu: the weight gradient by input ran in mode never", li);
                int cog = d->c_out / d->groups;
                /* (PAM exact: 16-column panels, 16 channels a group or fewer) */
                long want = pa ? (modes[k].approx_bwd || d->c_out / d->groups <= 16
                                      ? (long)(d->n - rep) * d->groups
                                      : 0)
                               : (cog % 16 == 0 && cog <= d->c_in / d->groups * 9 && rep < 2
                                      ? (long)(d->n - 1) * d->groups
                                      : 0);
                for (int always = 0; always < 2; always++) {
                    conv_dwplane_mode = always ? CONV_DWPLANE_ALWAYS : CONV_DWPLANE_AUTO;
                    before = conv_dwplane_runs;
                    nomul_conv2d_backward_weight(d, &modes[k], x, w, dy, dw[1], db);
                    if (nomul_last_error() != NOMUL_OK)
                        FAIL_SEED("conv2d reported: %s", nomul_last_error_message());
                    long want_here = !pa && !always && !conv_skips_pay() ? 0 : want;
                    if (conv_dwplane_runs - before != want_here)
                        FAIL_SEED("layer %zu, rep %d, %s approx %d, mode %s: by input on %ld "
                                  "images' groups, want %ld",
                                  li, rep, pa ? "PAM" : "float", modes[k].approx_bwd,
                                  always ? "always" : "auto", conv_dwplane_runs - before,
                                  want_here);
                    for (long i = 0; i < nw; i++)
                        if (tu_bits(dw[1][i]) != tu_bits(dw[0][i]))
                            FAIL_SEED("layer %zu, rep %d, %s approx %d off %g: dW[%ld] = %a, "
                                      "the in-place kernels' %a",
                                      li, rep, pa ? "PAM" : "float", modes[k].approx_bwd,
                                      (double)modes[k].offset, i, (double)dw[1][i],
                                      (double)dw[0][i]);
                }
                conv_dwplane_mode = CONV_DWPLANE_AUTO;
            }
        }
        free(x); free(w); free(dy); free(db); free(dw[0]); free(dw[1]);
    }
}

/* The data gradient at live inputs as pg_dxlive_job defines its sums, over
 * the scalar functions: for each nonzero x, per row i of taps, 16 lanes
 * (output channels l, l + 16, ...) from +0 over the taps (i, j) inside dy
 * in order of j and each tap's channels in order; the rows (0 + 1) + 2;
 * the lanes l + 8 into l, then + 4, + 2, + 1. dx +0 at x's zeros; mag the
 * sum of the terms' magnitudes. */
static void dxlive_twin(const nomul_conv2d_desc *d, const nomul_op_cfg *m, const float *x,
                        const float *w, const float *dy, float *dx, double *mag)
{
    int oh, ow;
    assert_true(nomul_conv2d_output_size(d, &oh, &ow));
    const int cig = d->c_in / d->groups, cog = d->c_out / d->groups, hw = d->h * d->w;
    for (int b = 0; b < d->n; b++)
        for (int c = 0; c < d->c_in; c++)
            for (int y = 0; y < d->h; y++)
                for (int xx = 0; xx < d->w; xx++) {
                    const int gr = c / cig, ci = c % cig;
                    const long at = ((long)b * d->c_in + c) * hw + (long)y * d->w + xx;
                    mag[at] = 0;
                    if (x[at] == 0.0f) {
                        dx[at] = 0.0f;
                        continue;
                    }
                    float acc[3][16] = {{0}}, v[16];
                    for (int i = 0; i < 3; i++)
                        for (int j = 0; j < 3; j++) {
                            /* the output pixel the tap reaches, if any */
                            int uy = y + d->pad_h - i * d->dil_h, ux = xx + d->pad_w - j * d->dil_w;
                            if (uy < 0 || ux < 0 || uy % d->stride_h || ux % d->stride_w)
                                continue;
                            int oy = uy / d->stride_h, ox = ux / d->stride_w;
                            if (oy >= oh || ox >= ow)
                                continue;
                            for (int co = 0; co < cog; co++) {
                                float wv = w[((long)(gr * cog + co) * cig + ci) * 9 + 3 * i + j];
                                float g = dy[(((long)b * d->c_out + gr * cog + co) * oh + oy) * ow + ox];
                                float t, unused;
                                if (!nomul_op_is_pa(m))
                                    acc[i][co % 16] = fmaf(wv, g, acc[i][co % 16]);
                                else if (m->approx_bwd)
                                    acc[i][co % 16] += (t = nomul_pa_mul(wv, g));
                                else {
                                    nomul_pa_mul_grad(wv, x[at], g, &unused, &t);
                                    acc[i][co % 16] += t;
                                }
                                mag[at] += fabs(nomul_op_is_pa(m) ? (double)t : (double)wv * g);
                            }
                        }
                    for (int l = 0; l < 16; l++)
                        v[l] = (acc[0][l] + acc[1][l]) + acc[2][l];
                    for (int sh = 8; sh >= 1; sh /= 2)
                        for (int l = 0; l < sh; l++)
                            v[l] = v[l] + v[l + sh];
                    dx[at] = v[0];
                }
}

/* nomul_conv2d_backward_data_live on fresh random values each run: where
 * the live form runs (3×3 layers of stride 1, or 2 undilated, 32 or 64
 * output channels a group, 16 with PAM's exact form; padding 0–2,
 * dilation, planes narrower and wider than 16, odd sizes whose inputs near
 * the edges skip taps, groups; x half zeros of both signs, subnormals with
 * random mantissas and negative values), bit for bit against dxlive_twin,
 * +0 at x's zeros and within float rounding of the dense data gradient
 * (the same terms in another order) elsewhere; where it declines (16
 * channels for float and the approximate form, 48 channels, a 5x5 kernel,
 * stride 2 dilated, a dy zero or a zero weight for PAM, x too dense for the
 * auto mode, float's and the approximate form's auto mode at stride 2 or
 * where !conv_skips_pay), the dense data gradient bit for bit.
 * conv_dxlive_runs shows where it ran. */
static void test_dx_live_matches_twin_and_dense(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xD711};
    nomul_isa_set(nomul_isa_max());
    /* (AVX2 has PAM's forms only) */
    const int have_pam = pg_cntx_active()->dxlive.pam != NULL,
              have_fp = pg_cntx_active()->dxlive.fp != NULL;
    nomul_conv2d_desc layers[] = {
        {2, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* ResNet20's first stage */
        {2, 8, 9, 37, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},    /* 37 wide */
        {2, 6, 7, 5, 64, 3, 3, 1, 1, 0, 0, 1, 1, 1},     /* no padding, narrow */
        {2, 10, 13, 11, 64, 3, 3, 1, 1, 2, 1, 2, 1, 2},  /* dilated rows, groups of 32 */
        {2, 4, 10, 19, 32, 3, 3, 1, 1, 1, 2, 1, 2, 1},   /* dilated columns, pad 2 */
        {3, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 4},    /* groups of 16 */
        {2, 5, 8, 8, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1},     /* 48: dense */
        {2, 6, 9, 9, 32, 5, 5, 1, 1, 2, 2, 1, 1, 1},     /* 5x5: dense */
        {2, 6, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},     /* stride 2 */
        {2, 16, 28, 28, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},  /* ResNet20's 16 -> 32 */
        {2, 5, 11, 13, 64, 3, 3, 2, 2, 0, 0, 1, 1, 1},   /* stride 2, no padding, odd */
        {2, 7, 10, 19, 16, 3, 3, 2, 2, 2, 1, 1, 1, 1},   /* stride 2, pad 2, 16 */
        {2, 8, 12, 9, 64, 3, 3, 2, 2, 1, 1, 1, 1, 2},    /* stride 2, groups of 32 */
        {2, 6, 9, 9, 32, 3, 3, 2, 2, 2, 2, 2, 2, 1},     /* stride 2 dilated: dense */
        {1, 0, 0, 0, 0, 3, 3, 1, 1, 0, 0, 1, 1, 1},      /* random, below */
    };
    const int nl = (int)(sizeof layers / sizeof layers[0]);
    nomul_conv2d_desc *rl = &layers[nl - 1];
    rl->n = rnd(&r, 1, 3);
    rl->c_in = rnd(&r, 1, 20);
    rl->h = rnd(&r, 1, 21);
    rl->w = rnd(&r, 1, 40);
    rl->c_out = 16 << rnd(&r, 0, 2);
    rl->pad_h = rnd(&r, 0, 2);
    rl->pad_w = rnd(&r, 0, 2);
    rl->dil_h = rnd(&r, 1, 2);
    rl->dil_w = rnd(&r, 1, 2);
    rl->stride_h = rl->stride_w = rnd(&r, 1, 2);
    while (rl->h + 2 * rl->pad_h < 2 * rl->dil_h + 1)
        rl->pad_h++;
    while (rl->w + 2 * rl->pad_w < 2 * rl->dil_w + 1)
        rl->pad_w++;
    static const nomul_op_cfg modes[] = {{NOMUL_OP_PAM, 0, 1.0f},
                                         {NOMUL_OP_PAM, 1, 1.0f},
                                         {NOMUL_OP_STANDARD, 0, 1.0f}};
    for (int li = 0; li < nl; li++) {
        const nomul_conv2d_desc *d = &layers[li];
        int oh, ow;
        long nx, nw, ny;
        layer_sizes(d, &oh, &ow, &nx, &nw, &ny);
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc(ny * 4);
        float *got = malloc(nx * 4), *twin = malloc(nx * 4), *dense = malloc(nx * 4);
        double *mag = malloc(nx * sizeof *mag);
        assert_true(x && w && dy && got && twin && dense && mag);
        /* rep 0, 1: half zeros (mode always, then auto); 2: a zero in dy
         * and in the weights (PAM declines); 3: x without zeros (auto
         * declines) */
        for (int rep = 0; rep < 4; rep++) {
            for (long i = 0; i < nx; i++) {
                uint32_t u = tu_u32(&r);
                /* (subnormals with random mantissas: PAM's exact form
                 * takes theirs as 0) */
                x[i] = rep < 3 && u % 2 ? (u % 4 < 2 ? -0.0f : 0.0f)
                       : u % 29 == 0    ? tu_float((u & 0x80000000u) | (tu_u32(&r) >> 9))
                                        : tu_normal(&r, -5, 4, 1);
            }
            for (long i = 0; i < nw; i++)
                w[i] = tu_normal(&r, -4, 2, 1);
            for (long i = 0; i < ny; i++)
                dy[i] = tu_normal(&r, -4, 4, 1);
            if (rep == 2) {
                dy[tu_u32(&r) % ny] = 0.0f;
                w[tu_u32(&r) % nw] = -0.0f;
            }
            for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
                const nomul_op_cfg *m = &modes[k];
                int pa = nomul_op_is_pa(m), exact = pa && !m->approx_bwd;
                int cog = d->c_out / d->groups;
                int s1 = d->stride_h == 1 && d->stride_w == 1,
                    s2 = d->stride_h == 2 && d->stride_w == 2 && d->dil_h == 1 && d->dil_w == 1;
                int shape = d->kh == 3 && d->kw == 3 && (s1 || s2) &&
                            ((exact && cog == 16) || cog == 32 || cog == 64);
                /* (float's and the approximate form's in auto only at stride
                 * 1 where conv_skips_pay) */
                long want = (pa ? have_pam : have_fp) && shape && rep != 3 && !(rep == 2 && pa) &&
                                    (exact || rep == 0 || (s1 && conv_skips_pay()))
                                ? (long)d->n * d->groups
                                : 0;
                nomul_clear_error();
                conv_dxlive_mode = rep == 0 ? CONV_DXLIVE_ALWAYS : CONV_DXLIVE_AUTO;
                long before = conv_dxlive_runs;
                for (long i = 0; i < nx; i++)
                    got[i] = 7.0f;
                nomul_conv2d_backward_data_live(d, m, x, w, dy, got);
                conv_dxlive_mode = CONV_DXLIVE_AUTO;
                nomul_conv2d_backward_data(d, m, x, w, dy, dense);
                if (nomul_last_error() != NOMUL_OK)
                    FAIL_SEED("conv2d reported: %s", nomul_last_error_message());
                const char *name = !pa ? "float" : exact ? "PAM exact" : "PAM approximate";
                if (conv_dxlive_runs - before != want)
                    FAIL_SEED("layer %d, rep %d, %s: the live form ran on %ld images' groups, "
                              "want %ld",
                              li, rep, name, conv_dxlive_runs - before, want);
                if (want)
                    dxlive_twin(d, m, x, w, dy, twin, mag);
                double num = 0, den = 0;
                for (long i = 0; i < nx; i++) {
                    if (!want) {
                        if (tu_bits(got[i]) != tu_bits(dense[i]))
                            FAIL_SEED("layer %d, rep %d, %s: dx[%ld] = %a where declined, the "
                                      "dense path's %a",
                                      li, rep, name, i, (double)got[i], (double)dense[i]);
                        continue;
                    }
                    if (x[i] == 0.0f) {
                        if (tu_bits(got[i]) != 0)
                            FAIL_SEED("layer %d, rep %d, %s: dx[%ld] = %a at a zero of x, "
                                      "want +0",
                                      li, rep, name, i, (double)got[i]);
                        continue;
                    }
                    if (tu_bits(got[i]) != tu_bits(twin[i]))
                        FAIL_SEED("layer %d, rep %d, %s: dx[%ld] = %a, the twin's %a", li, rep,
                                  name, i, (double)got[i], (double)twin[i]);
                    num += ((double)got[i] - dense[i]) * ((double)got[i] - dense[i]);
                    den += mag[i] * mag[i];
                }
                if (den > 0 && !(sqrt(num / den) <= 1e-6))
                    FAIL_SEED("layer %d, rep %d, %s: normwise error %g against the dense "
                              "gradient",
                              li, rep, name, sqrt(num / den));
            }
        }
        free(x); free(w); free(dy); free(got); free(twin); free(dense); free(mag);
    }
}

/* The autodiff graph asks for the live data gradient where a convolution's
 * input is a relu's or batch_norm_relu's output, not where it is a leaf
 * or another operation's (an add of a relu's output): the gradients
 * reaching the leaves agree with the dense data gradient's within
 * rounding (float, and PAM's exact form). */
static void test_graph_asks_live_after_relu(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6E1A};
    nomul_isa_set(nomul_isa_max());
    const nomul_conv2d_desc d = {2, 16, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    const nomul_op_cfg cfgs[] = {{NOMUL_OP_STANDARD, 0, 1.0f}, {NOMUL_OP_PAM, 0, 1.0f}};
    int xs[4] = {2, 16, 8, 8}, ws[4] = {32, 16, 3, 3};
    nomul_graph *g = nomul_graph_new(1 << 24);
    assert_non_null(g);
    int cs = 16;
    nomul_tensor *gamma = nomul_tensor_alloc(1, &cs, 1), *beta = nomul_tensor_alloc(1, &cs, 1);
    float rmean[16] = {0}, rvar[16] = {0};
    assert_true(gamma && beta);
    for (int c = 0; c < 16; c++) {
        gamma->data[c] = tu_normal(&r, -1, 1, 0);
        beta->data[c] = tu_normal(&r, -3, -1, 1);
    }
    for (int ci = 0; ci < 2; ci++)
        for (int through = 0; through < 4; through++) { /* leaf, relu, add, bn relu */
            nomul_tensor *x = nomul_tensor_alloc(4, xs, 1), *w = nomul_tensor_alloc(4, ws, 1);
            assert_true(x && w);
            for (long i = 0; i < x->n; i++)
                x->data[i] = tu_normal(&r, -3, 2, 1);
            for (long i = 0; i < w->n; i++)
                w->data[i] = tu_normal(&r, -4, 0, 1);
            float *grads[2];
            long runs[2];
            for (int mode = 0; mode < 2; mode++) {
                conv_dxlive_mode = mode ? CONV_DXLIVE_NEVER : CONV_DXLIVE_ALWAYS;
                memset(x->grad, 0, (size_t)x->n * 4);
                memset(w->grad, 0, (size_t)w->n * 4);
                nomul_graph_reset(g);
                long before = conv_dxlive_runs;
                nomul_tensor *a = through == 0   ? x
                                  : through == 1 ? nomul_relu(g, x)
                                  : through == 2 ? nomul_add(g, nomul_relu(g, x), x)
                                                 : nomul_batch_norm_relu(g, &cfgs[ci], x, gamma,
                                                                         beta, rmean, rvar,
                                                                         1e-5f, 0.1f, 1);
                nomul_tensor *y = nomul_conv2d(g, &cfgs[ci], a, w, NULL, &d);
                /* (dy without zeros: PAM's live form wants none) */
                nomul_tensor *loss = nomul_sum(g, y);
                assert_non_null(loss);
                assert_int_equal(nomul_backward(g, loss), 0);
                runs[mode] = conv_dxlive_runs - before;
                grads[mode] = malloc((size_t)x->n * 4);
                memcpy(grads[mode], x->grad, (size_t)x->n * 4);
            }
            conv_dxlive_mode = CONV_DXLIVE_AUTO;
            const pg_dxlive_ukr *lv = &pg_cntx_active()->dxlive;
            long want = (nomul_op_is_pa(&cfgs[ci]) ? lv->pam : lv->fp) && through % 2 ? d.n : 0;
            if (runs[0] != want || runs[1] != 0)
                FAIL_SEED("cfg %d, input %d: the live form ran %ld and %ld times, want %ld and 0",
                          ci, through, runs[0], runs[1], want);
            double num = 0, den = 0;
            for (long i = 0; i < x->n; i++) {
                num += ((double)grads[0][i] - grads[1][i]) * ((double)grads[0][i] - grads[1][i]);
                den += (double)grads[1][i] * grads[1][i];
            }
            if (!(sqrt(num / den) <= 1e-5))
                FAIL_SEED("cfg %d, input %d: x's gradient %g off the dense one", ci, through,
                          sqrt(num / den));
            free(grads[0]);
            free(grads[1]);
            nomul_tensor_free(x);
            nomul_tensor_free(w);
        }
    nomul_tensor_free(gamma);
    nomul_tensor_free(beta);
    nomul_graph_free(g);
}

/* The autodiff tape's carry of x's classification from a convolution's
 * forward to its backward (nomul_conv2d_forward_keep, _backward_keep): on
 * fresh random layers (PAM, exact and approximate, x half zeros as after a
 * ReLU), what the forward keeps is x's classification (conv_value_stats')
 * wherever it kept one; the backward given it writes the bits of the backward
 * that classifies x itself; and it is what the backward goes by: told that
 * x holds an infinity, the exact live data gradient (which refuses such an
 * x) does not run. */
static void test_backward_takes_forward_stats(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x57A7};
    nomul_isa_set(nomul_isa_max());
    const pg_dxlive_fn lfn = pg_cntx_active()->dxlive.pam;
    for (int rep = 0; rep < 4; rep++) {
        const int cout = rep % 2 ? 64 : 32, hw = 6 + rep;
        const nomul_conv2d_desc d = {2, 16, hw, hw, cout, 3, 3, 1, 1, 1, 1, 1, 1, 1};
        const nomul_op_cfg cfg = {NOMUL_OP_PAM, rep >= 2, 1.0f};
        const long nx = 2L * 16 * hw * hw, nw = (long)cout * 16 * 9, ny = 2L * cout * hw * hw;
        float *x = malloc((size_t)nx * 4), *w = malloc((size_t)nw * 4), *dy = malloc((size_t)ny * 4),
              *y = malloc((size_t)ny * 4), *out[2][2];
        assert_true(x && w && dy && y);
        for (long i = 0; i < nx; i++)
            x[i] = tu_u32(&r) & 1 ? 0.0f : tu_normal(&r, -3, 2, 0);
        for (long i = 0; i < nw; i++)
            w[i] = tu_normal(&r, -4, 0, 1);
        for (long i = 0; i < ny; i++)
            dy[i] = tu_normal(&r, -6, 0, 1);
        nomul_conv_xstats keep;
        nomul_conv2d_forward_keep(&d, &cfg, x, w, NULL, y, &keep);
        const pg_stats st = conv_value_stats(x, nx);
        if (keep.known && (keep.emin != st.emin || keep.emax != st.emax ||
                           keep.zero != st.zero || keep.special != st.special))
            FAIL_SEED("layer %d: the forward kept x's exponents %d..%d, zero %d, special %d; "
                      "x holds %d..%d, %d, %d",
                      rep, keep.emin, keep.emax, keep.zero, keep.special, st.emin, st.emax,
                      st.zero, st.special);
        keep = (nomul_conv_xstats){st.emin, st.emax, st.zero, st.special, 1};
        for (int k = 0; k < 2; k++) {
            out[k][0] = malloc((size_t)nx * 4);
            out[k][1] = malloc((size_t)nw * 4);
            assert_true(out[k][0] && out[k][1]);
            nomul_conv2d_backward_keep(&d, &cfg, 1, x, w, dy, out[k][0], out[k][1], NULL,
                                       k ? &keep : NULL);
        }
        if (memcmp(out[0][0], out[1][0], (size_t)nx * 4) ||
            memcmp(out[0][1], out[1][1], (size_t)nw * 4))
            FAIL_SEED("layer %d: the gradients given the forward's statistics differ", rep);
        if (rep < 2 && lfn) { /* exact: the live form runs, unless told of an infinity */
            for (int told = 0; told < 2; told++) {
                nomul_conv_xstats k2 = keep;
                k2.special = told;
                conv_dxlive_mode = CONV_DXLIVE_ALWAYS;
                const long before = conv_dxlive_runs;
                nomul_conv2d_backward_keep(&d, &cfg, 1, x, w, dy, out[0][0], NULL, NULL, &k2);
                conv_dxlive_mode = CONV_DXLIVE_AUTO;
                if ((conv_dxlive_runs != before) != !told)
                    FAIL_SEED("layer %d, told of an infinity %d: the live form ran %ld times",
                              rep, told, conv_dxlive_runs - before);
            }
        }
        for (int k = 0; k < 2; k++) {
            free(out[k][0]);
            free(out[k][1]);
        }
        free(x); free(w); free(dy); free(y);
    }
}

/* The forward on lists of each output pixel's nonzero inputs
 * (conv2d_sparse.c, AVX-512) against the dense kernels, bit for bit, on
 * fresh random layers each run: 16, 32, 48, 64, 128 and 192 output channels per
 * group (every tile shape), taps past one block of PG_KC (sums from +0 per
 * block for PAM, one chain for float), odd widths, dilation, groups, a
 * bias; x half zeros (+0 and −0), with subnormals in some images (PAM's
 * zeros; float runs such an image dense); weights with a zero (PAM then
 * runs dense), with an offset (likewise), and float weights so small that
 * their products could round to zero (the images run dense). The mode
 * never, always, auto each; conv_fsparse_runs shows where the lists ran. */
static void test_forward_lists_match_dense(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF5A7};
    nomul_isa_set(nomul_isa_max());
    if (!pg_cntx_active()->csparse.pam) {
        printf("# no forward lists on %s: nothing to compare\n",
               nomul_isa_name(nomul_isa_active()));
        return;
    }
    static const nomul_conv2d_desc layers[] = {
        {3, 24, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* K = 216: two blocks */
        {2, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1}, /* K = 288 */
        {2, 5, 9, 13, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* 48: three halves */
        {2, 6, 11, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* 16: eight pixels a tile */
        {2, 8, 9, 17, 64, 3, 3, 1, 1, 2, 1, 2, 1, 2},   /* dilated, groups of 32 */
        {1, 70, 5, 6, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* K = 630: four blocks */
        {2, 9, 6, 7, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* 128: two slices of 64 */
        {2, 8, 5, 5, 384, 3, 3, 1, 1, 1, 1, 1, 1, 2},   /* groups of 192 */
    };
    /* cfg, and the case: 0 plain, 1 a zero weight, 2 tiny float weights */
    static const struct {
        nomul_op_cfg cfg;
        int kind, runs;
    } cases[] = {
        {{NOMUL_OP_STANDARD, 0, 1.0f}, 0, 1}, {{NOMUL_OP_PAM, 0, 1.0f}, 0, 1},
        {{NOMUL_OP_PAM, 1, 1.0f}, 0, 1},   {{NOMUL_OP_PAM, 0, 1.0552f}, 0, 0},
        {{NOMUL_OP_PAM, 0, 1.0f}, 1, 0},   {{NOMUL_OP_STANDARD, 0, 1.0f}, 1, 1},
        {{NOMUL_OP_STANDARD, 0, 1.0f}, 2, 0},
    };
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const nomul_conv2d_desc *d = &layers[li];
        int oh, ow;
        long nx, nw, ny;
        layer_sizes(d, &oh, &ow, &nx, &nw, &ny);
        long x_img = nx / d->n;
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(d->c_out * 4);
        float *y[3] = {malloc(ny * 4), malloc(ny * 4), malloc(ny * 4)};
        assert_true(x && w && b && y[0] && y[1] && y[2]);
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            const nomul_op_cfg *cfg = &cases[k].cfg;
            int pa = nomul_op_is_pa(cfg);
            /* x: half zeros; the last image of a batch also subnormals */
            for (long i = 0; i < nx; i++) {
                uint32_t u = tu_u32(&r);
                int last = i >= nx - x_img && d->n > 1;
                x[i] = u % 2       ? (u % 4 == 1 ? -0.0f : 0.0f)
                       : last && u % 11 == 0 ? ldexpf(u % 3 ? 1.0f : -1.0f, -140)
                                             : tu_normal(&r, -6, 4, 1);
            }
            /* (one subnormal at least in each group of that image: a
             * group's 100 values, 1/22 each, held none with seed
             * 1883797881636231, and that group ran on lists) */
            long gx = x_img / d->groups;
            for (int gr = 0; d->n > 1 && gr < d->groups; gr++)
                x[nx - x_img + gr * gx + tu_u32(&r) % gx] = ldexpf(1.0f, -140);
            for (long i = 0; i < nw; i++)
                w[i] = cases[k].kind == 2 ? tu_normal(&r, -100, -90, 1) : tu_normal(&r, -5, 2, 1);
            if (cases[k].kind == 1)
                w[tu_u32(&r) % nw] = 0.0f;
            for (int c = 0; c < d->c_out; c++)
                b[c] = tu_normal(&r, -3, 1, 1);
            static const int order[3] = {CONV_FSPARSE_NEVER, CONV_FSPARSE_ALWAYS,
                                         CONV_FSPARSE_AUTO};
            long runs_always = 0;
            nomul_clear_error();
            for (int o = 0; o < 3; o++) {
                long before = conv_fsparse_runs;
                conv_fsparse_mode = order[o];
                conv_clane_mode = CONV_CLANE_NEVER; /* the dense kernels, not the lanes */
                nomul_conv2d_forward(d, cfg, x, w, b, y[o]);
                conv_clane_mode = CONV_CLANE_AUTO;
                if (order[o] == CONV_FSPARSE_ALWAYS)
                    runs_always = conv_fsparse_runs - before;
                if (order[o] == CONV_FSPARSE_NEVER && conv_fsparse_runs != before)
                    FAIL_SEED("layer %zu case %zu: the lists ran in mode never", li, k);
            }
            conv_fsparse_mode = CONV_FSPARSE_AUTO;
            if (nomul_last_error() != NOMUL_OK)
                FAIL_SEED("conv2d reported: %s", nomul_last_error_message());
            /* float: the last image (subnormal x) runs dense */
            long groups_run = (long)(d->n - (!pa && d->n > 1)) * d->groups;
            /* (PAM's direct path, the lists' host, takes groups up to 128) */
            long want = cases[k].runs && (!pa || d->c_out / d->groups <= 128) ? groups_run : 0;
            if (runs_always != want)
                FAIL_SEED("layer %zu case %zu (%s, offset %g): the lists ran %ld images' "
                          "groups, want %ld",
                          li, k, pa ? "pam" : "float", (double)cfg->offset, runs_always, want);
            for (int o = 1; o < 3; o++)
                for (long i = 0; i < ny; i++)
                    if (tu_bits(y[o][i]) != tu_bits(y[0][i]))
                        FAIL_SEED("layer %zu case %zu (%s, offset %g), mode %s: y[%ld] = %a, "
                                  "the dense kernels' %a",
                                  li, k, pa ? "pam" : "float", (double)cfg->offset,
                                  o == 1 ? "always" : "auto", i, (double)y[o][i],
                                  (double)y[0][i]);
        }
        free(x); free(w); free(b);
        for (int o = 0; o < 3; o++)
            free(y[o]);
    }
}

/* The data gradient with lanes along channels (conv2d_clane.c, clane.inc)
 * against the dense direct kernels, bit for bit, float and PAM's
 * approximate form, and the forward (stride 1 and 2; PAM's on 6-pixel
 * tiles of 64 channels), with the path never taken, always taken where it
 * applies, and auto: 3×3 stride-1 padding-1 layers with 32·m input
 * channels a group, rows of 7, 8, 14 and 16 (two 8-pixel segments) and
 * 28 (two of 14), one to three rows (the first and last rows' tested
 * pixels, the two-row tiles), K = 9·c_out over one to four blocks of
 * taps. Where PAM's sums would differ (an offset, a zero in dy or in the
 * weights, the exact form), it must not run; the runs are counted. */
static void test_data_lanes_match_dense(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC1A9E};
    nomul_isa_set(nomul_isa_max());
    if (!pg_cntx_active()->clane.pam) {
        printf("# no lanes along channels on %s: nothing to compare\n",
               nomul_isa_name(nomul_isa_active()));
        return;
    }
    static const nomul_conv2d_desc layers[] = {
        {3, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* K = 576: three blocks */
        {2, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1}, /* K = 288 */
        {2, 32, 8, 8, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* K = 216 */
        {2, 64, 5, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* two segments of 8 */
        {1, 32, 3, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* two of 14 (always only) */
        {2, 32, 1, 7, 80, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* one row, K = 720 */
        {2, 32, 2, 7, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* two edge rows */
        {2, 32, 4, 7, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* one middle pair */
        {2, 128, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 2},  /* groups of 64 → 32 */
        {2, 32, 6, 6, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* 6 wide: no segment */
        {2, 48, 7, 7, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* 48 channels: not 32·m */
        {2, 32, 7, 7, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},   /* stride 2: 4 wide, none */
        {2, 16, 28, 28, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1}, /* stride 2: forward, 14 wide */
        {2, 32, 14, 14, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1}, /* 7 wide, two rows a tile */
        {1, 32, 13, 13, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1}, /* 13: the last row and column */
        {2, 8, 16, 16, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},  /* 8 wide */
        {2, 16, 8, 8, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* 128: two passes of 64 */
        {2, 16, 5, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* 70 pixels: tiles of 6 and 5 */
        {1, 32, 13, 13, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1}, /* stride 2, 49: 4 × 6 + 5 × 5 */
        {2, 16, 5, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* 16: two segments a tile */
        {1, 16, 1, 56, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* one row of two tiles */
        {2, 32, 3, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 2},  /* groups of 16 */
        {2, 16, 4, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},  /* 16 at 14 wide: none */
    };
    /* cfg, the case (0 plain, 1 a zero in dy, 2 a zero weight), whether it runs */
    static const struct {
        nomul_op_cfg cfg;
        int kind, runs;
    } cases[] = {
        {{NOMUL_OP_STANDARD, 0, 1.0f}, 0, 1}, {{NOMUL_OP_PAM, 1, 1.0f}, 0, 1},
        {{NOMUL_OP_PAM, 0, 1.0f}, 0, 0},      {{NOMUL_OP_PAM, 1, 1.0552f}, 0, 0},
        {{NOMUL_OP_PAM, 1, 1.0f}, 1, 0},      {{NOMUL_OP_PAM, 1, 1.0f}, 2, 0},
        {{NOMUL_OP_STANDARD, 0, 1.0f}, 1, 1}, {{NOMUL_OP_STANDARD, 0, 1.0f}, 2, 1},
    };
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        const nomul_conv2d_desc *d = &layers[li];
        int oh, ow;
        long nx, nw, ny;
        layer_sizes(d, &oh, &ow, &nx, &nw, &ny);
        const int cig = d->c_in / d->groups;
        int fits = d->stride_h == 1 &&
                   (cig == 16 ? d->w % 28 == 0
                              : cig % 32 == 0 && (d->w % 14 == 0 || d->w % 8 == 0 || d->w % 7 == 0));
        int narrow = cig == 16 || d->w <= CLANE_MAX_W; /* auto takes it */
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *dy = malloc(ny * 4);
        float *dx[3] = {malloc(nx * 4), malloc(nx * 4), malloc(nx * 4)};
        float *y[3] = {malloc(ny * 4), malloc(ny * 4), malloc(ny * 4)};
        float *bias = malloc(d->c_out * 4);
        assert_true(x && w && dy && dx[0] && dx[1] && dx[2] && y[0] && y[1] && y[2] && bias);
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            const nomul_op_cfg *cfg = &cases[k].cfg;
            for (long i = 0; i < nx; i++)
                x[i] = tu_u32(&r) % 2 ? 0.0f : tu_normal(&r, -6, 4, 1);
            for (long i = 0; i < nw; i++)
                w[i] = tu_normal(&r, -5, 2, 1);
            for (long i = 0; i < ny; i++)
                dy[i] = tu_normal(&r, -8, 3, 1);
            if (cases[k].kind == 1)
                dy[tu_u32(&r) % ny] = 0.0f;
            if (cases[k].kind == 2)
                w[tu_u32(&r) % nw] = 0.0f;
            static const int order[3] = {CONV_CLANE_NEVER, CONV_CLANE_ALWAYS, CONV_CLANE_AUTO};
            long runs[3] = {0, 0, 0};
            nomul_clear_error();
            for (int o = 0; o < 3; o++) {
                long before = conv_clane_runs;
                conv_clane_mode = order[o];
                nomul_conv2d_backward_data(d, cfg, x, w, dy, dx[o]);
                runs[o] = conv_clane_runs - before;
            }
            conv_clane_mode = CONV_CLANE_AUTO;
            if (nomul_last_error() != NOMUL_OK)
                FAIL_SEED("conv2d reported: %s", nomul_last_error_message());
            const char *what = nomul_op_is_pa(cfg) ? "pam" : "float";
            /* 16 channels a group: PAM's only */
            long want = cases[k].runs && fits && (cig != 16 || nomul_op_is_pa(cfg))
                            ? (long)d->n * d->groups
                            : 0;
            long want_auto = narrow ? want : 0;
            if (runs[0] != 0 || runs[1] != want || runs[2] != want_auto)
                FAIL_SEED("layer %zu case %zu (%s, approx %d, offset %g): ran %ld / %ld / %ld "
                          "images' groups (never / always / auto), want 0 / %ld / %ld",
                          li, k, what, cfg->approx_bwd, (double)cfg->offset, runs[0], runs[1],
                          runs[2], want, want_auto);
            for (int o = 1; o < 3; o++)
                for (long i = 0; i < nx; i++)
                    if (tu_bits(dx[o][i]) != tu_bits(dx[0][i]))
                        FAIL_SEED("layer %zu case %zu (%s, approx %d, offset %g), mode %s: "
                                  "dx[%ld] = %a, the dense kernels' %a",
                                  li, k, what, cfg->approx_bwd, (double)cfg->offset,
                                  o == 1 ? "always" : "auto", i, (double)dx[o][i],
                                  (double)dx[0][i]);
            /* the forward (x half zeros, now and then a subnormal: PAM's
             * zero; a bias): float's with 32·m output channels a group in
             * the lanes, PAM's with 64·m (no offset, no zero weight; its
             * cases differ in their backward only) */
            const int pa = nomul_op_is_pa(cfg), cog = d->c_out / d->groups;
            int ffits = cog % (pa ? 64 : 32) == 0 && (ow % 14 == 0 || ow % 8 == 0 || ow % 7 == 0) &&
                        (!pa || (cfg->offset == 1.0f && cases[k].kind != 2));
            long fwant = ffits ? (long)d->n * d->groups : 0;
            for (long i = 0; i < nx; i += 1 + (long)(tu_u32(&r) % 97))
                if (x[i] != 0.0f)
                    x[i] = ldexpf(1.0f, -140);
            /* (where skipping zeros pays, 64·m channels keep the lists) */
            long fwant_auto = ow <= CLANE_MAX_W && !(conv_skips_pay() && cog % 64 == 0) ? fwant : 0;
            for (int c = 0; c < d->c_out; c++)
                bias[c] = tu_normal(&r, -3, 1, 1);
            for (int o = 0; o < 3; o++) {
                long before = conv_clane_runs;
                conv_clane_mode = order[o];
                nomul_conv2d_forward(d, cfg, x, w, bias, y[o]);
                runs[o] = conv_clane_runs - before;
            }
            conv_clane_mode = CONV_CLANE_AUTO;
            if (nomul_last_error() != NOMUL_OK)
                FAIL_SEED("conv2d reported: %s", nomul_last_error_message());
            if (runs[0] != 0 || runs[1] != fwant || runs[2] != fwant_auto)
                FAIL_SEED("layer %zu case %zu (%s, offset %g): the forward ran %ld / %ld / %ld "
                          "images' groups (never / always / auto), want 0 / %ld / %ld",
                          li, k, what, (double)cfg->offset, runs[0], runs[1], runs[2], fwant,
                          fwant_auto);
            for (int o = 1; o < 3; o++)
                for (long i = 0; i < ny; i++)
                    if (tu_bits(y[o][i]) != tu_bits(y[0][i]))
                        FAIL_SEED("layer %zu case %zu (%s), forward mode %s: y[%ld] = %a, the "
                                  "dense kernels' %a",
                                  li, k, what, o == 1 ? "always" : "auto", i, (double)y[o][i],
                                  (double)y[0][i]);
        }
        free(x); free(w); free(dy); free(bias);
        for (int o = 0; o < 3; o++)
            free(y[o]);
        for (int o = 0; o < 3; o++)
            free(dx[o]);
    }
}

/* The depthwise direct paths (forward, and the exact and approximate
 * backward's data and weight gradients: vector row kernels with half- and
 * quarter-width tails) against the direct loops, on every instruction set:
 * random depthwise layers of stride 1 with rows of 1..40 (every tail),
 * padding, dilation, with and without zeros in x and dy, with and without
 * an offset, and weights of ±1 and ±2 (1.0's adjusted bits are 0). The
 * audit counts show that the direct paths ran: they count the products of
 * the valid (unpadded) taps only, where im2col's products count every one. */
static void test_depthwise_direct_paths(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC013};
    int reps = tu_scale() < 1 ? 3 : 12;
    static const nomul_op_cfg modes[] = {{NOMUL_OP_PAM, 0, 1.0f},
                                      {NOMUL_OP_PAM, 0, 1.0552f},
                                      {NOMUL_OP_PAM, 1, 1.0f},
                                      {NOMUL_OP_PAM, 1, 1.0552f}};
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        for (int rep = 0; rep < reps; rep++) {
            nomul_conv2d_desc d;
            int oh, ow;
            do {
                int c = rnd(&r, 1, 4);
                d = (nomul_conv2d_desc){rnd(&r, 1, 2), c, rnd(&r, 1, 12), rnd(&r, 1, 40), c,
                                        rnd(&r, 1, 5), rnd(&r, 1, 5), 1, 1, rnd(&r, 0, 3),
                                        rnd(&r, 0, 3), rnd(&r, 1, 2), rnd(&r, 1, 2), c};
            } while (d.h + 2 * d.pad_h - d.dil_h * (d.kh - 1) - 1 < 0 ||
                     d.w + 2 * d.pad_w - d.dil_w * (d.kw - 1) - 1 < 0);
            for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++)
                run_conv_case_scaled(&r, &d, &modes[k], rep & 1, 0, rep % 3 == 2);
            /* powers of two, bit for bit (offset 2: a power of two too) */
            static const nomul_op_cfg exact_modes[] = {{NOMUL_OP_PAM, 0, 1.0f},
                                                    {NOMUL_OP_PAM, 1, 2.0f}};
            for (size_t k = 0; k < 2; k++)
                run_conv_case_scaled(&r, &d, &exact_modes[k], rep & 1, 0, 2);
            /* the products of valid taps, and what the five calls count */
            assert_true(nomul_conv2d_output_size(&d, &oh, &ow));
            long valid = 0;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++)
                    for (int i = 0; i < d.kh; i++)
                        for (int j = 0; j < d.kw; j++) {
                            int iy = oy - d.pad_h + i * d.dil_h, ix = ox - d.pad_w + j * d.dil_w;
                            valid += iy >= 0 && iy < d.h && ix >= 0 && ix < d.w;
                        }
            valid *= (long)d.n * d.c_out;
            long nx = (long)d.n * d.c_in * d.h * d.w, ny = (long)d.n * d.c_out * oh * ow;
            float *x = malloc(nx * 4), *w = malloc(d.c_out * d.kh * d.kw * 4);
            float *y = malloc(ny * 4), *dy = malloc(ny * 4), *dx = malloc(nx * 4);
            float *dw = malloc(d.c_out * d.kh * d.kw * 4);
            for (long i = 0; i < nx; i++)
                x[i] = value(&r, 0);
            for (long i = 0; i < (long)d.c_out * d.kh * d.kw; i++)
                w[i] = value(&r, 0);
            for (long i = 0; i < ny; i++)
                dy[i] = value(&r, 0);
            nomul_op_counts ct;
            unsigned long long got[5];
            nomul_counts_enable(1);
            for (int call = 0; call < 5; call++) {
                nomul_counts_reset();
                nomul_op_cfg cfg = {NOMUL_OP_PAM, call >= 3, 1.0f};
                if (call == 0)
                    nomul_conv2d_forward(&d, &cfg, x, w, NULL, y);
                else if (call % 2)
                    nomul_conv2d_backward_data(&d, &cfg, x, w, dy, dx);
                else
                    nomul_conv2d_backward_weight(&d, &cfg, x, w, dy, dw, NULL);
                nomul_counts_get(&ct);
                /* exact gradients count exponent shifts, the rest PAMs */
                got[call] = ct.n[call == 1 || call == 2 ? NOMUL_COUNT_SHIFT : NOMUL_COUNT_PAM];
            }
            nomul_counts_enable(0);
            for (int call = 0; call < 5; call++)
                if (got[call] != (unsigned long long)valid)
                    FAIL_SEED("depthwise %dx%d k%dx%d p%d,%d d%d,%d: %ld valid products, counted "
                              "%llu in call %d (forward, exact dx, exact dw, approximate dx, "
                              "approximate dw): a direct path did not run",
                              d.h, d.w, d.kh, d.kw, d.pad_h, d.pad_w, d.dil_h, d.dil_w, valid,
                              got[call], call);
            free(x); free(w); free(y); free(dy); free(dx); free(dw);
        }
        /* gradient terms that leave the normal range (dy near 2^-120: many
         * terms flush to zero): the direct paths must decline, and the
         * general path's results match the definition */
        nomul_conv2d_desc dd = {2, 3, 7, 19, 3, 5, 5, 1, 1, 2, 2, 1, 1, 3};
        for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++)
            run_conv_case_scaled(&r, &dd, &modes[k], (int)k & 1, -120 - (int)(k & 1), 0);
    }
    nomul_isa_set(nomul_isa_max());
}

/* conv_transpose (AVX-512: 16 × 16 blocks; else 4×4 SSE blocks, scalar
 * edges) against the plain double loop, bit for bit, on every instruction
 * set this CPU has, on random shapes of 1..70 rows and columns (one to five
 * blocks, every edge; ResNet's 16, 32 and 64 rows among them) with a
 * leading dimension wider than the columns; t's values past its end
 * untouched. */
static void test_transpose_matches_plain_loop(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x7A5};
    enum { MAX = 70, GUARD = 16 };
    static float m[MAX * (MAX + 5)], t[MAX * MAX + GUARD];
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        for (int rep = 0; rep < 300; rep++) {
            int rows = 1 + (int)(tu_next(&r) % MAX), cols = 1 + (int)(tu_next(&r) % MAX);
            if (rep % 4 == 0)
                rows = 16 << (rep / 4 % 3);
            long ldm = cols + (long)(tu_next(&r) % 6);
            for (long i = 0; i < rows * ldm; i++)
                m[i] = (float)(int)(tu_next(&r) % 100000) - 50000.0f;
            for (int i = 0; i < MAX * MAX + GUARD; i++)
                t[i] = -0.0f;
            conv_transpose(rows, cols, m, ldm, t);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++)
                    if (tu_bits(t[(long)j * rows + i]) != tu_bits(m[(long)i * ldm + j]))
                        FAIL_SEED("transpose %d×%d (ldm %ld) on %s: t[%d][%d] = %g, want %g",
                                  rows, cols, ldm, nomul_isa_name((nomul_isa)isa), j, i,
                                  (double)t[(long)j * rows + i], (double)m[(long)i * ldm + j]);
            for (long i = (long)rows * cols; i < MAX * MAX + GUARD; i++)
                if (tu_bits(t[i]) != 0x80000000u)
                    FAIL_SEED("transpose %d×%d (ldm %ld) on %s wrote t[%ld], past its end",
                              rows, cols, ldm, nomul_isa_name((nomul_isa)isa), i);
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* conv_pad_planes (the padded feed of stride-1 layers) on each instruction
 * set (AVX-512: its masked rows) against a plain loop, bit for bit, on
 * random planes (1-5 of them, rows 1-40 wide and some past 128, padding
 * 0-3, slack 0-40) whose values include ±0, in a buffer whose floats past
 * the slack must be left as they were */
static void test_pad_planes_match_plain_loop(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x9AD5};
    enum { GUARD = 40 };
    for (int rep = 0; rep < 400; rep++) {
        nomul_isa_set((nomul_isa)(rep % ((int)nomul_isa_max() + 1)));
        const int c = 1 + (int)(tu_next(&r) % 5), h = 1 + (int)(tu_next(&r) % 12);
        const int w = rep % 10 == 9 ? 120 + (int)(tu_next(&r) % 30) : 1 + (int)(tu_next(&r) % 40);
        const int ph = (int)(tu_next(&r) % 4), pw = (int)(tu_next(&r) % 4);
        const int slack = (int)(tu_next(&r) % 41), hp = h + 2 * ph, wp = w + 2 * pw;
        const long nx = (long)c * h * w, nd = (long)c * hp * wp + slack;
        float *x = malloc(nx * 4), *buf = malloc((nd + GUARD) * 4);
        assert_true(x && buf);
        for (long i = 0; i < nx; i++) {
            uint32_t u = tu_u32(&r);
            x[i] = u % 5 == 0 ? tu_float(u & 0x80000000u) : tu_normal(&r, -3, 3, 1);
        }
        for (long i = 0; i < nd + GUARD; i++)
            buf[i] = -7.0f;
        conv_pad_planes(c, h, w, ph, pw, x, buf, slack);
        for (long i = 0; i < nd + GUARD; i++) {
            const long p = i / ((long)hp * wp), y = i / wp % hp - ph, xx = i % wp - pw;
            float want = i >= nd ? -7.0f
                         : p >= c || y < 0 || y >= h || xx < 0 || xx >= w
                             ? 0.0f
                             : x[(p * h + y) * w + xx];
            if (tu_bits(buf[i]) != tu_bits(want))
                FAIL_SEED("pad rep %d on %s (%d planes %dx%d, pad %d,%d, slack %d): dst[%ld] = "
                          "%a, want %a", rep, nomul_isa_name(nomul_isa_active()), c, h, w, ph,
                          pw, slack, i, (double)buf[i], (double)want);
        }
        free(x);
        free(buf);
    }
    nomul_isa_set(nomul_isa_max());
}

/* where col's row k = (c, i, j), column p = (oy, ox) reads x (one group,
 * one image): its index, or −1 in the padding */
static long col_source(const nomul_conv2d_desc *d, const conv_geom *g, int k, int p)
{
    int c = k / (d->kh * d->kw), i = k / d->kw % d->kh, j = k % d->kw;
    int iy = p / g->ow * d->stride_h - d->pad_h + i * d->dil_h;
    int ix = p % g->ow * d->stride_w - d->pad_w + j * d->dil_w;
    return iy < 0 || iy >= d->h || ix < 0 || ix >= d->w ? -1 : ((long)c * d->h + iy) * d->w + ix;
}

/* one group's geometry of layer d (one image), col's rows ldpad floats
 * longer than its P columns */
static conv_geom one_group_geom(const nomul_conv2d_desc *d, int ldpad)
{
    conv_geom g = {0};
    assert_true(nomul_conv2d_output_size(d, &g.oh, &g.ow));
    g.P = g.oh * g.ow;
    g.ldcol = g.P + ldpad;
    g.cig = d->c_in;
    g.cog = d->c_out;
    g.K = g.cig * d->kh * d->kw;
    return g;
}

/* im2col and col2im's add (the vector rows at stride 1 and 2: stride 2 reads
 * two vectors for one, and adds −0 between its values; AVX-512's own
 * stride-2 rows, the instruction sets in turn) against plain
 * loops, bit for bit, on random layers (kernels 1-3, strides 1-3, padding
 * 0-2, dilation 1-2, rows 1-40 wide) whose values include ±0 and whose dx
 * starts from random values with ±0 among them (+0 added to −0 would make
 * it +0: col2im's stride-2 rows must leave the places between theirs). */
static void test_im2col_col2im_match_plain_loops(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x12C0};
    for (int rep = 0; rep < 600; rep++) {
        /* col2im's stride-2 rows on each instruction set (AVX-512: its own) */
        nomul_isa_set((nomul_isa)(rep % ((int)nomul_isa_max() + 1)));
        nomul_conv2d_desc d = {1, 1 + (int)(tu_next(&r) % 3), 1 + (int)(tu_next(&r) % 12),
                               1 + (int)(tu_next(&r) % 40), 4, 1 + (int)(tu_next(&r) % 3),
                               1 + (int)(tu_next(&r) % 3), 1 + (int)(tu_next(&r) % 3),
                               1 + (int)(tu_next(&r) % 3), (int)(tu_next(&r) % 3),
                               (int)(tu_next(&r) % 3), 1 + (int)(tu_next(&r) % 2),
                               1 + (int)(tu_next(&r) % 2), 1};
        if (rep % 2) /* half the layers at stride 2 across */
            d.stride_w = 2;
        while (d.h + 2 * d.pad_h < d.dil_h * (d.kh - 1) + 1)
            d.pad_h++;
        while (d.w + 2 * d.pad_w < d.dil_w * (d.kw - 1) + 1)
            d.pad_w++;
        conv_geom g = one_group_geom(&d, (int)(tu_next(&r) % 3));
        long nx = (long)d.c_in * d.h * d.w, nc = (long)g.K * g.ldcol;
        float *x = malloc(nx * 4), *col = malloc(nc * 4), *dx = malloc(nx * 4),
              *twin = malloc(nx * 4);
        assert_true(x && col && dx && twin);
        for (long i = 0; i < nx; i++) {
            uint32_t u = tu_u32(&r);
            x[i] = u % 5 == 0 ? tu_float(u & 0x80000000u) : tu_normal(&r, -3, 3, 1);
            dx[i] = twin[i] = u % 7 == 0 ? -0.0f : tu_normal(&r, -3, 3, 1);
        }
        for (long i = 0; i < nc; i++)
            col[i] = 7.0f;
        conv_im2col(&d, &g, x, col);
        for (int k = 0; k < g.K; k++)
            for (int p = 0; p < g.P; p++) {
                long src = col_source(&d, &g, k, p), at = (long)k * g.ldcol + p;
                float want = src < 0 ? 0.0f : x[src];
                if (tu_bits(col[at]) != tu_bits(want))
                    FAIL_SEED("im2col rep %d (stride %d, %d): col[%ld] = %a, want %a", rep,
                              d.stride_h, d.stride_w, at, (double)col[at], (double)want);
            }
        for (long i = 0; i < nc; i++) {
            uint32_t u = tu_u32(&r);
            col[i] = u % 5 == 0 ? tu_float(u & 0x80000000u) : tu_normal(&r, -3, 3, 1);
        }
        conv_col2im_add(&d, &g, col, dx);
        for (int k = 0; k < g.K; k++) /* in col2im's order: rows, then columns */
            for (int p = 0; p < g.P; p++) {
                long src = col_source(&d, &g, k, p);
                if (src >= 0)
                    twin[src] += col[(long)k * g.ldcol + p];
            }
        for (long i = 0; i < nx; i++)
            if (tu_bits(dx[i]) != tu_bits(twin[i]))
                FAIL_SEED("col2im rep %d (stride %d, %d) on %s: dx[%ld] = %a, want %a", rep,
                          d.stride_h, d.stride_w, nomul_isa_name(nomul_isa_active()), i,
                          (double)dx[i], (double)twin[i]);
        free(x); free(col); free(dx); free(twin);
    }
    nomul_isa_set(nomul_isa_max());
}

/* stride 2's split feed (conv2d_internal.h's CONV_SPLIT): for every row k of
 * the column matrix and output pixel (oy, ox), the split planes at off[k] +
 * oy·ws + ox hold im2col's value, inside the feed's floats and slack; the
 * kernels' reads past a wide row end in the slack's zeros */
static void test_split_planes_read_as_im2col(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x5917};
    for (int rep = 0; rep < 600; rep++) {
        /* each instruction set's form (AVX-512: its masked loads and
         * permutes), and rows past its 64-float limit now and then */
        nomul_isa_set((nomul_isa)(rep % ((int)nomul_isa_max() + 1)));
        nomul_conv2d_desc d = {1, 1 + (int)(tu_next(&r) % 3), 1 + (int)(tu_next(&r) % 15),
                               1 + (int)(tu_next(&r) % 33), 4, 1 + (int)(tu_next(&r) % 5),
                               1 + (int)(tu_next(&r) % 5), 2, 2, (int)(tu_next(&r) % 3),
                               (int)(tu_next(&r) % 3), 1, 1, 1};
        if (rep % 10 == 9)
            d.w = 126 + (int)(tu_next(&r) % 20);
        while (d.h + 2 * d.pad_h < d.kh)
            d.pad_h++;
        while (d.w + 2 * d.pad_w < d.kw)
            d.pad_w++;
        conv_geom g = one_group_geom(&d, 0);
        /* the kernels' slack, or (a third of the layers) a few floats: the
         * copies must stop at the buffer's end however narrow the rows */
        const int ws = conv_feed_width(&d, CONV_SPLIT),
                  slack = rep / 3 % 3 == 2 ? (int)(tu_next(&r) % 8) : conv_wide_slack(&d);
        const long nx = (long)d.c_in * d.h * d.w, nf = conv_feed_floats(&d, CONV_SPLIT, g.cig);
        enum { GUARD = 16 }; /* past the slack: left as it was */
        float *x = malloc(nx * 4), *buf = malloc((nf + slack + GUARD) * 4);
        long *off = malloc(g.K * sizeof *off);
        assert_true(x && buf && off);
        for (long i = 0; i < nx; i++) {
            uint32_t u = tu_u32(&r);
            x[i] = u % 5 == 0 ? tu_float(u & 0x80000000u) : tu_normal(&r, -3, 3, 1);
        }
        for (long i = 0; i < nf + slack + GUARD; i++)
            buf[i] = 7.0f;
        conv_feed_fill(&d, CONV_SPLIT, g.cig, x, buf, slack);
        for (long i = nf + slack; i < nf + slack + GUARD; i++)
            if (buf[i] != 7.0f)
                FAIL_SEED("split rep %d on %s: float %ld past the slack written", rep,
                          nomul_isa_name(nomul_isa_active()), i - nf - slack);
        conv_col_offsets(&d, &g, CONV_SPLIT, off);
        for (long i = nf; i < nf + slack; i++)
            if (tu_bits(buf[i]) != 0)
                FAIL_SEED("split rep %d: slack float %ld = %a, want +0", rep, i - nf,
                          (double)buf[i]);
        for (int k = 0; k < g.K; k++)
            for (int p = 0; p < g.P; p++) {
                long src = col_source(&d, &g, k, p);
                long at = off[k] + (long)(p / g.ow) * ws + p % g.ow;
                float want = src < 0 ? 0.0f : x[src];
                if (at < 0 || at >= nf || tu_bits(buf[at]) != tu_bits(want))
                    FAIL_SEED("split rep %d on %s (%dx%d k%dx%d p%d,%d): row %d pixel %d at %ld "
                              "of %ld, want %a", rep, nomul_isa_name(nomul_isa_active()), d.h,
                              d.w, d.kh, d.kw, d.pad_h, d.pad_w, k, p, at, nf, (double)want);
            }
        free(x); free(buf); free(off);
    }
    nomul_isa_set(nomul_isa_max());
}

/* The vector statistics kernel (it decides which path a convolution takes)
 * against a plain loop, on every instruction set, for lengths 0..70 of
 * values with random exponents, zeros, subnormals, infinities and NaNs. */
static void test_value_stats_match_plain_loop(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC014};
    const pg_dw_rows *k[] = {&pg_cntx_scalar.dw_rows, &pg_cntx_avx2.dw_rows,
                             &pg_cntx_avx512.dw_rows};
    float v[70];
    for (int rep = 0; rep < 200; rep++) {
        int n = rep % 71;
        for (int i = 0; i < n; i++) {
            uint32_t u = tu_u32(&r), kind = tu_u32(&r) % 16;
            if (kind == 0)
                u &= 0x80000000u; /* ±0 */
            else if (kind == 1)
                u &= 0x807FFFFFu; /* subnormal */
            else if (kind == 2 && rep % 4 == 0)
                u |= 0x7F800000u; /* infinity or NaN, now and then */
            else if ((u & 0x7F800000u) == 0x7F800000u)
                u ^= 0x40000000u; /* otherwise finite */
            v[i] = tu_float(u);
        }
        int emin = 128, emax = -127, zero = 0, special = 0;
        for (int i = 0; i < n; i++) {
            int e = (int)((tu_bits(v[i]) >> 23) & 0xFF);
            if (e == 0)
                zero = 1;
            else if (e == 255)
                special = 1;
            else {
                emin = e - 127 < emin ? e - 127 : emin;
                emax = e - 127 > emax ? e - 127 : emax;
            }
        }
        for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
            pg_stats st;
            k[isa]->stats(v, n, &st);
            if (st.emin != emin || st.emax != emax || st.zero != zero || st.special != special)
                FAIL_SEED("stats of %d values on %s: (%d, %d, %d, %d), want (%d, %d, %d, %d)", n,
                          nomul_isa_name((nomul_isa)isa), st.emin, st.emax, st.zero,
                          st.special, emin, emax, zero, special);
        }
    }
}

/* Power-of-two weights make every PAM exact: PAM conv = float conv. */
static void test_power_of_two_weights_match_float(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC013};
    nomul_conv2d_desc d = {2, 6, 9, 7, 4, 3, 3, 2, 1, 1, 2, 1, 1, 2};
    int oh, ow;
    assert_true(nomul_conv2d_output_size(&d, &oh, &ow));
    long nx = 2L * 6 * 9 * 7, nw = 4L * 3 * 3 * 3, ny = 2L * 4 * oh * ow;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
    for (long i = 0; i < nx; i++)
        x[i] = tu_normal(&r, -3, 3, 1);
    for (long i = 0; i < nw; i++)
        w[i] = tu_float(tu_bits(tu_normal(&r, -3, 3, 1)) & 0xFF800000u);
    const nomul_op_cfg fl = {NOMUL_OP_STANDARD, 0, 1.0f}, pam = {NOMUL_OP_PAM, 0, 1.0f};
    nomul_conv2d_forward(&d, &fl, x, w, NULL, y1);
    nomul_conv2d_forward(&d, &pam, x, w, NULL, y2);
    for (long i = 0; i < ny; i++)
        if (fabsf(y1[i] - y2[i]) > 1e-5f * (fabsf(y1[i]) + 1.0f))
            FAIL_SEED("power-of-two weights: output %ld float %g, PAM %g", i, (double)y1[i],
                      (double)y2[i]);
    free(x); free(w); free(y1); free(y2);
}

static int errors;
static void count(nomul_status s, const char *m) { (void)s; (void)m; errors++; }

static void test_bad_descriptors_are_reported(void **state)
{
    (void)state;
    float buf[4096];
    for (int i = 0; i < 4096; i++)
        buf[i] = 3.0f;
    float y[64];
    const nomul_op_cfg pam = {NOMUL_OP_PAM, 0, 1.0f};
    nomul_set_error_handler(count);
    struct {
        nomul_conv2d_desc d;
        const char *needle;
    } bad[] = {
        {{1, 4, 5, 5, 6, 3, 3, 1, 1, 0, 0, 1, 1, 4}, "groups"},
        {{1, 4, 5, 5, 6, 7, 3, 1, 1, 0, 0, 1, 1, 1}, "does not fit"},
        {{1, 4, 5, 5, 6, 3, 3, 0, 1, 0, 0, 1, 1, 1}, "stride"},
        {{0, 4, 5, 5, 6, 3, 3, 1, 1, 0, 0, 1, 1, 1}, "positive"},
        {{1, 4, 5, 5, 6, 3, 3, 1, 1, -1, 0, 1, 1, 1}, "padding"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int j = 0; j < 64; j++)
            y[j] = 9.0f;
        errors = 0;
        nomul_clear_error();
        nomul_conv2d_forward(&bad[i].d, &pam, buf, buf, NULL, y);
        if (nomul_last_error() != NOMUL_EINVAL || errors != 1 ||
            !strstr(nomul_last_error_message(), bad[i].needle))
            fail_msg("bad descriptor %zu: status %d, message '%s' (want '%s')", i,
                     nomul_last_error(), nomul_last_error_message(), bad[i].needle);
        for (int j = 0; j < 64; j++)
            assert_true(y[j] == 9.0f);
    }
    nomul_conv2d_desc ok = {1, 2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    nomul_clear_error();
    nomul_conv2d_forward(&ok, &pam, NULL, buf, NULL, y);
    assert_int_equal(nomul_last_error(), NOMUL_EINVAL);
    nomul_conv2d_forward(&ok, NULL, buf, buf, NULL, y);
    assert_non_null(strstr(nomul_last_error_message(), "cfg"));
    for (int j = 0; j < 64; j++)
        assert_true(y[j] == 9.0f);
    nomul_set_error_handler(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_against_direct_loops),
        cmocka_unit_test(test_conv_larger_layer),
        cmocka_unit_test(test_float_fast_kernels_match_fma_twin),
        cmocka_unit_test(test_depthwise_direct_paths),
        cmocka_unit_test(test_dw_sparse_matches_in_place),
        cmocka_unit_test(test_forward_lists_match_dense),
        cmocka_unit_test(test_data_lanes_match_dense),
        cmocka_unit_test(test_dw_by_input_matches_in_place),
        cmocka_unit_test(test_dx_live_matches_twin_and_dense),
        cmocka_unit_test(test_graph_asks_live_after_relu),
        cmocka_unit_test(test_backward_takes_forward_stats),
        cmocka_unit_test(test_value_stats_match_plain_loop),
        cmocka_unit_test(test_transpose_matches_plain_loop),
        cmocka_unit_test(test_pad_planes_match_plain_loop),
        cmocka_unit_test(test_im2col_col2im_match_plain_loops),
        cmocka_unit_test(test_split_planes_read_as_im2col),
        cmocka_unit_test(test_power_of_two_weights_match_float),
        cmocka_unit_test(test_bad_descriptors_are_reported),
    };
    printf("test_conv: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("conv", tests, NULL, NULL);
}
