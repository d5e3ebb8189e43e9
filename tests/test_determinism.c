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
 *
 * One pass over every case per thread count, counts rising: the first pass
 * keeps each output, the others compare with it. (A team smaller than the
 * last ends OpenMP threads, and with them their scratch buffers, which
 * LeakSanitizer would report.)
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

#include "core/internal.h" /* nomul_scratch */
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
enum { NCFG = sizeof CFGS / sizeof CFGS[0] };

/* The outputs of the first pass, in the order the cases made them. */
static float **kept;
static long *kept_n;
static int nkept, at;

/* The first pass (1 thread) keeps out; a later one (threads) compares it
 * bit for bit with what the first kept at the same place. */
static void same_bits(const char *what, const nomul_op_cfg *cfg, int threads, const float *out,
                      long n)
{
    if (threads == 1) {
        kept = realloc(kept, (size_t)(nkept + 1) * sizeof *kept);
        kept_n = realloc(kept_n, (size_t)(nkept + 1) * sizeof *kept_n);
        assert_non_null(kept);
        assert_non_null(kept_n);
        kept[nkept] = malloc((size_t)(n > 0 ? n : 1) * sizeof **kept);
        assert_non_null(kept[nkept]);
        memcpy(kept[nkept], out, (size_t)n * sizeof *out);
        kept_n[nkept++] = n;
        return;
    }
    assert_true(at < nkept && kept_n[at] == n);
    const float *ref = kept[at++];
    for (long i = 0; i < n; i++)
        if (tu_bits(out[i]) != tu_bits(ref[i]))
            FAIL_SEED("%s (%s, approx %d, offset %g): element %ld is %a at 1 thread, %a at %d",
                      what, nomul_op_is_pa(cfg) ? "pam" : "float", cfg->approx_bwd,
                      (double)cfg->offset, i, (double)ref[i], (double)out[i], threads);
}

static float *zeros(long n, const float *init)
{
    float *o = malloc((size_t)(n > 0 ? n : 1) * sizeof *o);
    assert_non_null(o);
    for (long i = 0; i < n; i++)
        o[i] = init ? init[i] : 0.0f;
    return o;
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
    for (int k = 0; k < nkept; k++)
        free(kept[k]);
    free(kept);
    free(kept_n);
    return 0;
}

/* ---- convolution ------------------------------------------------------------------ */

static void conv_case(tu_rng *r, const nomul_conv2d_desc *d, int threads)
{
    int kk = d->c_in / d->groups * d->kh * d->kw;
    int oh = (d->h + 2 * d->pad_h - d->dil_h * (d->kh - 1) - 1) / d->stride_h + 1;
    int ow = (d->w + 2 * d->pad_w - d->dil_w * (d->kw - 1) - 1) / d->stride_w + 1;
    long nx = (long)d->n * d->c_in * d->h * d->w, nw = (long)d->c_out * kk;
    long ny = (long)d->n * d->c_out * oh * ow;
    float *x = rand_buf(r, nx), *w = rand_buf(r, nw), *dy = rand_buf(r, ny), *b = rand_buf(r, d->c_out);
    for (int c = 0; c < NCFG; c++) {
        const nomul_op_cfg *cfg = &CFGS[c];
        float *dw = zeros(nw + d->c_out, NULL), *dx = zeros(nx, NULL), *y = zeros(ny, NULL);
        nomul_conv2d_backward_weight(d, cfg, x, w, dy, dw, dw + nw);
        nomul_conv2d_backward_data(d, cfg, x, w, dy, dx);
        nomul_conv2d_forward(d, cfg, x, w, b, y);
        assert_int_equal(nomul_last_error(), NOMUL_OK);
        char what[160];
        snprintf(what, sizeof what, "conv n %d c %d→%d groups %d %dx%d k %dx%d stride %d: ", d->n,
                 d->c_in, d->c_out, d->groups, d->h, d->w, d->kh, d->kw, d->stride_h);
        size_t len = strlen(what);
        snprintf(what + len, sizeof what - len, "dW, db");
        same_bits(what, cfg, threads, dw, nw + d->c_out);
        snprintf(what + len, sizeof what - len, "dx");
        same_bits(what, cfg, threads, dx, nx);
        snprintf(what + len, sizeof what - len, "y");
        same_bits(what, cfg, threads, y, ny);
        free(dw);
        free(dx);
        free(y);
    }
    free(x);
    free(w);
    free(dy);
    free(b);
}

static void conv_cases(int threads)
{
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
        conv_case(&r, &d, threads);
    }
    /* depthwise, on its direct paths (values that keep every product normal) */
    for (int i = 0; i < cases; i++) {
        nomul_conv2d_desc d = {0};
        d.n = rnd(&r, 1, 19);
        d.c_in = d.c_out = d.groups = rnd(&r, 1, 8);
        d.h = rnd(&r, 3, 10);
        d.w = rnd(&r, 3, 10);
        d.kh = d.kw = 3;
        d.stride_h = d.stride_w = d.pad_h = d.pad_w = d.dil_h = d.dil_w = 1;
        conv_case(&r, &d, threads);
    }
}

/* ---- layer norm and batch norm ---------------------------------------------------- */

static void norm_cases(int threads)
{
    tu_rng r = {tu_seed() ^ 0x1A};
    int cases = (int)(10 * tu_scale()) + 2;
    for (int i = 0; i < cases; i++) {
        /* enough rows × columns (8192) that the rows are split over threads */
        int rows = i % 2 ? rnd(&r, 1, 40) : rnd(&r, 200, 1500), n = rnd(&r, 8, 70);
        long tot = (long)rows * n;
        float *x = rand_buf(&r, tot), *dy = rand_buf(&r, tot), *g = rand_buf(&r, n),
              *be = rand_buf(&r, n), *init = rand_buf(&r, 2 * n);
        float *y = zeros(tot, NULL), *mu = zeros(rows + 8, NULL), *rs = zeros(rows + 8, NULL);
        for (int c = 0; c < NCFG; c++) {
            const nomul_op_cfg *cfg = &CFGS[c];
            nomul_layer_norm_forward(cfg, rows, n, x, g, be, 1e-5f, y, mu, rs);
            float *dgb = zeros(2 * n, init), *dx = zeros(tot, NULL);
            nomul_layer_norm_backward(cfg, rows, n, x, g, mu, rs, 1e-5f, dy, dx, dgb, dgb + n);
            char what[96];
            snprintf(what, sizeof what, "layer norm %d×%d: mean, rstd", rows, n);
            same_bits(what, cfg, threads, mu, rows);
            same_bits(what, cfg, threads, rs, rows);
            snprintf(what, sizeof what, "layer norm %d×%d: dγ, dβ", rows, n);
            same_bits(what, cfg, threads, dgb, 2 * n);
            snprintf(what, sizeof what, "layer norm %d×%d: dx", rows, n);
            same_bits(what, cfg, threads, dx, tot);
            free(dgb);
            free(dx);

            /* batch norm: the same numbers as (nb, C, S), nb·C·S ≤ tot (fewer
             * channels where there are not 4 values for each: a single row
             * of 19 once made C = 5, S = 1 read x and dy past their end) */
            int C = n % 5 + 1, nb = 4;
            while (C > 1 && tot < (long)nb * C)
                C--;
            int S = (int)(tot / C / nb);
            float rm[8] = {0}, rv[8] = {1, 1, 1, 1, 1, 1, 1, 1}; /* mu, rs: C ≤ 5 more */
            nomul_batch_norm_forward(cfg, nb, C, S, x, g, be, 1e-5f, 0.1f, 1, rm, rv, y, mu, rs);
            float *bgb = zeros(2 * C, init), *bdx = zeros((long)nb * C * S, NULL);
            nomul_batch_norm_backward(cfg, nb, C, S, x, g, mu, rs, 1e-5f, dy, bdx, bgb, bgb + C);
            same_bits("batch norm: dγ, dβ", cfg, threads, bgb, 2 * C);
            same_bits("batch norm: dx", cfg, threads, bdx, (long)nb * C * S);
            free(bgb);
            free(bdx);
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

static void gemm_cases(int threads)
{
    tu_rng r = {tu_seed() ^ 0x6E};
    int cases = (int)(10 * tu_scale()) + 2;
    for (int i = 0; i < cases; i++) {
        int m = rnd(&r, 1, 300), n = rnd(&r, 1, 200), k = rnd(&r, 1, i % 2 ? 40 : 700);
        float *a = rand_buf(&r, (long)m * k), *b = rand_buf(&r, (long)k * n),
              *dc = rand_buf(&r, (long)m * n);
        for (int c = 1; c < NCFG; c++) { /* PA only: the float product is OpenBLAS's */
            const nomul_op_cfg *cfg = &CFGS[c];
            float *cc = zeros((long)m * n, NULL), *da = zeros((long)m * k, NULL),
                  *db = zeros((long)k * n, NULL);
            nomul_gemm(cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, a, k, b, n, 0.0f,
                       cc, n);
            nomul_gemm_backward(cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, a, k, b,
                                n, dc, n, 0.0f, da, k, db, n);
            assert_int_equal(nomul_last_error(), NOMUL_OK);
            char what[96];
            snprintf(what, sizeof what, "gemm %d×%d×%d: C", m, n, k);
            same_bits(what, cfg, threads, cc, (long)m * n);
            snprintf(what, sizeof what, "gemm %d×%d×%d: dA", m, n, k);
            same_bits(what, cfg, threads, da, (long)m * k);
            snprintf(what, sizeof what, "gemm %d×%d×%d: dB", m, n, k);
            same_bits(what, cfg, threads, db, (long)k * n);
            free(cc);
            free(da);
            free(db);
        }
        free(a);
        free(b);
        free(dc);
    }
}

/* ---- autodiff reductions and clipping --------------------------------------------- */

/* loss = sum(linear(x)) + mean(x) + mean(avgpool(x as images)): the
 * gradients of w, b and x, the loss, and the clipping norm over them */
static void autodiff_cases(int threads)
{
    tu_rng r = {tu_seed() ^ 0xAD};
    int cases = (int)(6 * tu_scale()) + 2;
    for (int i = 0; i < cases; i++) {
        int batch = rnd(&r, 1, 300), in = 4 * rnd(&r, 1, 16), out = rnd(&r, 1, 40);
        int xs[2] = {batch, in}, ws[2] = {out, in}, bs[1] = {out}, img[4] = {batch, 4, in / 4, 1};
        for (int c = 0; c < NCFG; c++) {
            const nomul_op_cfg *cfg = &CFGS[c];
            nomul_graph *g = nomul_graph_new(64u << 20);
            assert_non_null(g);
            nomul_tensor *x = nomul_tensor_alloc(2, xs, 1), *w = nomul_tensor_alloc(2, ws, 1),
                         *b = nomul_tensor_alloc(1, bs, 1);
            assert_true(x && w && b);
            for (long j = 0; j < x->n; j++)
                x->data[j] = tu_normal(&r, -3, 2, 1);
            for (long j = 0; j < w->n; j++)
                w->data[j] = tu_normal(&r, -3, 2, 1);
            for (long j = 0; j < b->n; j++)
                b->data[j] = tu_normal(&r, -3, 2, 1);
            nomul_tensor *lin = nomul_linear(g, cfg, x, w, b);
            nomul_tensor *pooled = nomul_avg_pool_global(g, cfg, nomul_reshape(g, x, 4, img));
            nomul_tensor *loss = nomul_add(
                g, nomul_sum(g, lin), nomul_add(g, nomul_mean(g, cfg, x), nomul_mean(g, cfg, pooled)));
            assert_non_null(loss);
            nomul_backward(g, loss);
            float *grads[3] = {w->grad, b->grad, x->grad};
            size_t sz[3] = {(size_t)w->n, (size_t)b->n, (size_t)x->n};
            float scalars[2] = {loss->data[0], nomul_clip_grad_norm(3, grads, sz, 1e-3f, cfg)};
            assert_int_equal(nomul_last_error(), NOMUL_OK);
            char what[96];
            snprintf(what, sizeof what, "linear %d×%d→%d, sum, mean, avgpool: dW", batch, in, out);
            same_bits(what, cfg, threads, w->grad, w->n);
            snprintf(what, sizeof what, "linear %d×%d→%d, sum, mean, avgpool: db", batch, in, out);
            same_bits(what, cfg, threads, b->grad, b->n);
            snprintf(what, sizeof what, "linear %d×%d→%d, sum, mean, avgpool: dx", batch, in, out);
            same_bits(what, cfg, threads, x->grad, x->n);
            same_bits("the loss and the clipping norm", cfg, threads, scalars, 2);
            nomul_tensor_free(x);
            nomul_tensor_free(w);
            nomul_tensor_free(b);
            nomul_graph_free(g);
        }
    }
}

/* The scratch buffers of threads that end are freed: a team of 3 takes
 * buffers in every thread, then a team of 2 lets libgomp end the third.
 * Without the destructor LeakSanitizer (make SANITIZE=1 test, in CI) reports
 * their buffers at exit. */
static void test_scratch_of_ended_threads_freed(void **state)
{
    (void)state;
    int ok = 1;
#pragma omp parallel num_threads(3) reduction(&& : ok)
    ok = nomul_scratch(NOMUL_SCRATCH_OP, 4096) != NULL;
    assert_true(ok);
#pragma omp parallel num_threads(2) reduction(&& : ok)
    ok = nomul_scratch(NOMUL_SCRATCH_OP, 16) != NULL;
    assert_true(ok);
}

static void test_reductions_same_at_1_2_and_3_threads(void **state)
{
    (void)state;
    for (int t = 1; t <= 3; t++) {
        nomul_set_num_threads(t);
        at = 0;
        conv_cases(t);
        norm_cases(t);
        gemm_cases(t);
        autodiff_cases(t);
        assert_int_equal(at, t == 1 ? 0 : nkept);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reductions_same_at_1_2_and_3_threads),
        cmocka_unit_test(test_scratch_of_ended_threads_freed),
    };
    printf("test_determinism: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("determinism", tests, setup, teardown);
}
