/*
 * test_determinism.c — every operation whose sums could be split over
 * threads gives bit-identical results at 1, 2 and 3 threads (3 oversubscribes
 * a small machine, which is fine): convolution (backward weight over the
 * images, general and depthwise paths, forward and backward data), layer
 * norm's and batch norm's γ and β gradients, the PAM matrix products, the
 * autodiff reductions (linear's bias, sum, mean, global average pooling) and
 * gradient-norm clipping, float and PA (exact and approximate), on fresh
 * random inputs. OpenBLAS is held to one thread: the float product's own
 * threading is the float GEMM driver's concern, not these reductions'.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cmocka.h>

#include "nomul/nomul.h"
#include "testutil.h"

static int rnd(tu_rng *r, int lo, int hi) { return lo + (int)(tu_u32(r) % (uint32_t)(hi - lo + 1)); }

static float *rand_buf(tu_rng *r, long n)
{
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (long i = 0; i < n; i++)
        p[i] = tu_u32(r) % 8 == 0 ? 0.0f : tu_normal(r, -3, 2, 1);
    return p;
}

static const nomul_op_cfg CFGS[] = {
    {NOMUL_OP_STANDARD, 0, 1.0f}, {NOMUL_OP_PAM, 0, 1.0f}, {NOMUL_OP_PAM, 1, 1.0f},
    {NOMUL_OP_PAM, 0, 1.0552f},   {NOMUL_OP_PAM, 1, 1.0552f}};
enum { NCFG = sizeof CFGS / sizeof CFGS[0], THREADS = 3 };

/* out[t] (n floats) against out[0], bit for bit */
static void same_bits(const char *what, const nomul_op_cfg *cfg, float *const *out, long n)
{
    for (int t = 1; t < THREADS; t++)
        for (long i = 0; i < n; i++)
            if (tu_bits(out[t][i]) != tu_bits(out[0][i]))
                FAIL_SEED("%s (%s, approx %d, offset %g): element %ld is %a at 1 thread, %a at %d",
                          what, nomul_op_is_pa(cfg) ? "pam" : "float", cfg->approx_bwd,
                          (double)cfg->offset, i, (double)out[0][i], (double)out[t][i], t + 1);
}

static float **outs(long n, const float *init)
{
    float **o = malloc(THREADS * sizeof *o);
    assert_non_null(o);
    for (int t = 0; t < THREADS; t++) {
        o[t] = malloc((size_t)(n > 0 ? n : 1) * sizeof **o);
        assert_non_null(o[t]);
        for (long i = 0; i < n; i++)
            o[t][i] = init ? init[i] : 0.0f;
    }
    return o;
}

static void free_outs(float **o)
{
    for (int t = 0; t < THREADS; t++)
        free(o[t]);
    free(o);
}

static int setup(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nomul_set_num_threads(0);
    return 0;
}

/* ---- convolution ------------------------------------------------------------------ */

static void conv_case(tu_rng *r, const nomul_conv2d_desc *d)
{
    int kk = d->c_in / d->groups * d->kh * d->kw;
    int oh = (d->h + 2 * d->pad_h - d->dil_h * (d->kh - 1) - 1) / d->stride_h + 1;
    int ow = (d->w + 2 * d->pad_w - d->dil_w * (d->kw - 1) - 1) / d->stride_w + 1;
    long nx = (long)d->n * d->c_in * d->h * d->w, nw = (long)d->c_out * kk;
    long ny = (long)d->n * d->c_out * oh * ow;
    float *x = rand_buf(r, nx), *w = rand_buf(r, nw), *dy = rand_buf(r, ny), *b = rand_buf(r, d->c_out);
    for (int c = 0; c < NCFG; c++) {
        const nomul_op_cfg *cfg = &CFGS[c];
        float **dw = outs(nw + d->c_out, NULL), **dx = outs(nx, NULL), **y = outs(ny, NULL);
        for (int t = 0; t < THREADS; t++) {
            nomul_set_num_threads(t + 1);
            nomul_conv2d_backward_weight(d, cfg, x, w, dy, dw[t], dw[t] + nw);
            nomul_conv2d_backward_data(d, cfg, x, w, dy, dx[t]);
            nomul_conv2d_forward(d, cfg, x, w, b, y[t]);
        }
        assert_int_equal(nomul_last_error(), NOMUL_OK);
        char what[160];
        snprintf(what, sizeof what, "conv n %d c %d→%d groups %d %dx%d k %dx%d stride %d: ", d->n,
                 d->c_in, d->c_out, d->groups, d->h, d->w, d->kh, d->kw, d->stride_h);
        size_t at = strlen(what);
        snprintf(what + at, sizeof what - at, "dW, db");
        same_bits(what, cfg, dw, nw + d->c_out);
        snprintf(what + at, sizeof what - at, "dx");
        same_bits(what, cfg, dx, nx);
        snprintf(what + at, sizeof what - at, "y");
        same_bits(what, cfg, y, ny);
        free_outs(dw);
        free_outs(dx);
        free_outs(y);
    }
    free(x);
    free(w);
    free(dy);
    free(b);
}

static void test_conv_same_at_every_thread_count(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xC0};
    int cases = (int)(12 * tu_scale()) + 2;
    for (int i = 0; i < cases; i++) {
        nomul_conv2d_desc d = {0};
        d.n = rnd(&r, 1, 23); /* more images than 16 blocks, and fewer than the threads */
        d.groups = rnd(&r, 1, 2);
        d.c_in = d.groups * rnd(&r, 1, 4);
        d.c_out = d.groups * rnd(&r, 1, 5);
        d.h = rnd(&r, 3, 9);
        d.w = rnd(&r, 3, 9);
        d.kh = d.kw = rnd(&r, 1, 3);
        d.stride_h = d.stride_w = rnd(&r, 1, 2);
        d.pad_h = d.pad_w = rnd(&r, 0, 1);
        d.dil_h = d.dil_w = 1;
        conv_case(&r, &d);
    }
    /* depthwise, on its direct paths (values that keep every product normal) */
    for (int i = 0; i < cases; i++) {
        int c = rnd(&r, 1, 8);
        nomul_conv2d_desc d = {rnd(&r, 1, 19), c, rnd(&r, 3, 10), rnd(&r, 3, 10), c, 3, 3, 1, 1,
                               1, 1, 1, 1, c};
        conv_case(&r, &d);
    }
}

/* ---- layer norm and batch norm ---------------------------------------------------- */

static void test_norm_grads_same_at_every_thread_count(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x1A};
    int cases = (int)(10 * tu_scale()) + 2;
    for (int i = 0; i < cases; i++) {
        /* enough rows × columns (8192) that the rows are split over threads */
        int rows = i % 2 ? rnd(&r, 1, 40) : rnd(&r, 200, 1500), n = rnd(&r, 8, 70);
        long tot = (long)rows * n;
        float *x = rand_buf(&r, tot), *dy = rand_buf(&r, tot), *g = rand_buf(&r, n),
              *be = rand_buf(&r, n), *init = rand_buf(&r, 2 * n);
        float *y = malloc((size_t)tot * sizeof *y), *mu = malloc((size_t)rows * sizeof *mu),
              *rs = malloc((size_t)rows * sizeof *rs);
        assert_non_null(y);
        assert_non_null(mu);
        assert_non_null(rs);
        for (int c = 0; c < NCFG; c++) {
            const nomul_op_cfg *cfg = &CFGS[c];
            nomul_set_num_threads(1);
            nomul_layer_norm_forward(cfg, rows, n, x, g, be, 1e-5f, y, mu, rs);
            float **dgb = outs(2 * n, init), **dx = outs(tot, NULL);
            for (int t = 0; t < THREADS; t++) {
                nomul_set_num_threads(t + 1);
                nomul_layer_norm_backward(cfg, rows, n, x, g, mu, rs, 1e-5f, dy, dx[t], dgb[t],
                                          dgb[t] + n);
            }
            char what[96];
            snprintf(what, sizeof what, "layer norm %d×%d: dγ, dβ", rows, n);
            same_bits(what, cfg, dgb, 2 * n);
            snprintf(what, sizeof what, "layer norm %d×%d: dx", rows, n);
            same_bits(what, cfg, dx, tot);
            free_outs(dgb);
            free_outs(dx);

            /* batch norm: the same numbers as (nb, C, S) */
            int C = n % 5 + 1, S = (int)(tot / C / 4 > 0 ? tot / C / 4 : 1), nb = 4;
            float rm[8] = {0}, rv[8] = {1, 1, 1, 1, 1, 1, 1, 1};
            nomul_set_num_threads(1);
            nomul_batch_norm_forward(cfg, nb, C, S, x, g, be, 1e-5f, 0.1f, 1, rm, rv, y, mu, rs);
            float **bgb = outs(2 * C, init), **bdx = outs((long)nb * C * S, NULL);
            for (int t = 0; t < THREADS; t++) {
                nomul_set_num_threads(t + 1);
                nomul_batch_norm_backward(cfg, nb, C, S, x, g, mu, rs, 1e-5f, dy, bdx[t], bgb[t],
                                          bgb[t] + C);
            }
            same_bits("batch norm: dγ, dβ", cfg, bgb, 2 * C);
            same_bits("batch norm: dx", cfg, bdx, (long)nb * C * S);
            free_outs(bgb);
            free_outs(bdx);
        }
        assert_int_equal(nomul_last_error(), NOMUL_OK);
        free(x);
        free(dy);
        free(g);
        free(be);
        free(init);
        free(y);
        free(mu);
        free(rs);
    }
}

/* ---- matrix products -------------------------------------------------------------- */

static void test_gemm_same_at_every_thread_count(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6E};
    int cases = (int)(10 * tu_scale()) + 2;
    for (int i = 0; i < cases; i++) {
        int m = rnd(&r, 1, 300), n = rnd(&r, 1, 200), k = rnd(&r, 1, i % 2 ? 40 : 700);
        float *a = rand_buf(&r, (long)m * k), *b = rand_buf(&r, (long)k * n),
              *dc = rand_buf(&r, (long)m * n);
        for (int c = 1; c < NCFG; c++) { /* PA only: the float product is OpenBLAS's */
            const nomul_op_cfg *cfg = &CFGS[c];
            float **cc = outs((long)m * n, NULL), **da = outs((long)m * k, NULL),
                  **db = outs((long)k * n, NULL);
            for (int t = 0; t < THREADS; t++) {
                nomul_set_num_threads(t + 1);
                nomul_gemm(cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, a, k, b, n,
                           0.0f, cc[t], n);
                nomul_gemm_backward(cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, a, k,
                                    b, n, dc, n, 0.0f, da[t], k, db[t], n);
            }
            assert_int_equal(nomul_last_error(), NOMUL_OK);
            char what[96];
            snprintf(what, sizeof what, "gemm %d×%d×%d: C", m, n, k);
            same_bits(what, cfg, cc, (long)m * n);
            snprintf(what, sizeof what, "gemm %d×%d×%d: dA", m, n, k);
            same_bits(what, cfg, da, (long)m * k);
            snprintf(what, sizeof what, "gemm %d×%d×%d: dB", m, n, k);
            same_bits(what, cfg, db, (long)k * n);
            free_outs(cc);
            free_outs(da);
            free_outs(db);
        }
        free(a);
        free(b);
        free(dc);
    }
}

/* ---- autodiff reductions and clipping --------------------------------------------- */

/* loss = sum(linear(x) + mean(x)·1) + mean(avgpool(x as images)); the
 * gradients of w, b, x at 1, 2 and 3 threads */
static void test_autodiff_reductions_same_at_every_thread_count(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xAD};
    int cases = (int)(6 * tu_scale()) + 2;
    for (int i = 0; i < cases; i++) {
        int batch = rnd(&r, 1, 300), in = 4 * rnd(&r, 1, 16), out = rnd(&r, 1, 40);
        int xs[2] = {batch, in}, ws[2] = {out, in}, bs[1] = {out}, img[4] = {batch, 4, in / 4, 1};
        for (int c = 0; c < NCFG; c++) {
            const nomul_op_cfg *cfg = &CFGS[c];
            long sizes[3] = {(long)out * in, out, (long)batch * in};
            float **got = outs(sizes[0] + sizes[1] + sizes[2] + 2, NULL);
            tu_rng rr = r; /* the same inputs at every thread count */
            for (int t = 0; t < THREADS; t++) {
                nomul_set_num_threads(t + 1);
                nomul_graph *g = nomul_graph_new(64u << 20);
                assert_non_null(g);
                nomul_tensor *x = nomul_tensor_alloc(2, xs, 1), *w = nomul_tensor_alloc(2, ws, 1),
                             *b = nomul_tensor_alloc(1, bs, 1);
                rr = r;
                for (long j = 0; j < x->n; j++)
                    x->data[j] = tu_normal(&rr, -3, 2, 1);
                for (long j = 0; j < w->n; j++)
                    w->data[j] = tu_normal(&rr, -3, 2, 1);
                for (long j = 0; j < b->n; j++)
                    b->data[j] = tu_normal(&rr, -3, 2, 1);
                nomul_tensor *lin = nomul_linear(g, cfg, x, w, b);
                nomul_tensor *pooled = nomul_avg_pool_global(g, cfg, nomul_reshape(g, x, 4, img));
                nomul_tensor *loss = nomul_add(g, nomul_sum(g, lin),
                                               nomul_add(g, nomul_mean(g, cfg, x),
                                                         nomul_mean(g, cfg, pooled)));
                assert_non_null(loss);
                nomul_backward(g, loss);
                memcpy(got[t], w->grad, (size_t)sizes[0] * sizeof(float));
                memcpy(got[t] + sizes[0], b->grad, (size_t)sizes[1] * sizeof(float));
                memcpy(got[t] + sizes[0] + sizes[1], x->grad, (size_t)sizes[2] * sizeof(float));
                got[t][sizes[0] + sizes[1] + sizes[2]] = loss->data[0];
                /* clipping: the norm over the three gradients */
                float *grads[3] = {w->grad, b->grad, x->grad};
                size_t sz[3] = {(size_t)sizes[0], (size_t)sizes[1], (size_t)sizes[2]};
                got[t][sizes[0] + sizes[1] + sizes[2] + 1] =
                    nomul_clip_grad_norm(3, grads, sz, 1e-3f, cfg);
                nomul_tensor_free(x);
                nomul_tensor_free(w);
                nomul_tensor_free(b);
                nomul_graph_free(g);
            }
            r = rr;
            assert_int_equal(nomul_last_error(), NOMUL_OK);
            char what[96];
            snprintf(what, sizeof what, "linear %d×%d→%d, sum, mean, avgpool, clip", batch, in,
                     out);
            same_bits(what, cfg, got, sizes[0] + sizes[1] + sizes[2] + 2);
            free_outs(got);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_same_at_every_thread_count),
        cmocka_unit_test(test_norm_grads_same_at_every_thread_count),
        cmocka_unit_test(test_gemm_same_at_every_thread_count),
        cmocka_unit_test(test_autodiff_reductions_same_at_every_thread_count),
    };
    printf("test_determinism: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("determinism", tests, setup, teardown);
}
