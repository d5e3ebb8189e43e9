/*
 * test_gemm.c — the PAM matrix engine against its plain twin: a triple loop
 * over the scalar PAM (and its scalar exact derivatives) with float64
 * accumulation. Random shapes including every edge size 1..67 in m, n and k,
 * both layouts, all transposes, beta 0 and 1, offsets, leading dimensions
 * larger than needed, zeros, subnormals, infinities and rows that overflow;
 * every instruction set and 1 or 2 threads; batched against single calls;
 * the standard configuration against cblas_sgemm bit for bit; and every bad
 * argument reported without touching the output.
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
#include "gemm/gemm_internal.h"
#include "testutil.h"

typedef struct {
    CBLAS_LAYOUT layout;
    CBLAS_TRANSPOSE ta, tb;
    int m, n, k;
    int lda, ldb, ldc; /* also ld of dA / dB / dC: same shapes */
    float beta, offset;
} gemm_case;

/* element (i, j) of a stored matrix */
static long at(CBLAS_LAYOUT l, int ld, int i, int j)
{
    return l == CblasRowMajor ? (long)i * ld + j : (long)j * ld + i;
}

/* op(A)(i, p) and op(B)(p, j) */
static long idx_a(const gemm_case *g, int i, int p)
{
    return g->ta == CblasNoTrans ? at(g->layout, g->lda, i, p) : at(g->layout, g->lda, p, i);
}
static long idx_b(const gemm_case *g, int p, int j)
{
    return g->tb == CblasNoTrans ? at(g->layout, g->ldb, p, j) : at(g->layout, g->ldb, j, p);
}

/* The piecewise affine configuration: PAM with this offset, exact (approx 0)
 * or approximate backward. */
static nomul_op_cfg pam_cfg(float offset, int approx)
{
    nomul_op_cfg c = {NOMUL_OP_PAM, approx, offset};
    return c;
}

static long stored_size(CBLAS_LAYOUT l, int rows, int cols, int ld)
{
    if (rows == 0 || cols == 0)
        return 1;
    return l == CblasRowMajor ? (long)(rows - 1) * ld + cols : (long)(cols - 1) * ld + rows;
}

/* Values: mostly moderate normals, with zeros, subnormals and powers of two;
 * `wild` adds infinities, NaNs and huge values. */
static float draw(tu_rng *r, int zeros, int wild)
{
    uint32_t k = tu_u32(r) % 100;
    if (zeros && k < 15)
        return (tu_u32(r) & 1) ? 0.0f : -0.0f;
    if (zeros && k < 18)
        return tu_float((tu_u32(r) & 0x807FFFFFu) | 1); /* subnormal */
    if (wild && k < 21)
        return tu_float(((tu_u32(r) & 1) << 31) | 0x7F800000u | (tu_u32(r) % 3 == 0 ? 0x400000u : 0));
    if (wild && k < 25)
        return tu_normal(r, 60, 127, 1); /* products overflow */
    if (k < 30)
        return tu_float(tu_bits(tu_normal(r, -6, 6, 1)) & 0xFF800000u);
    return tu_normal(r, -8, 8, 1);
}

/* v[0..n) = draw(r, 1, 0) in order: moderate normals with zeros and
 * subnormals */
static void fill_values(tu_rng *r, float *v, long n)
{
    for (long i = 0; i < n; i++)
        v[i] = draw(r, 1, 0);
}

/* The same sums in float32, in order: a float32 sum can overflow (to inf,
 * or inf − inf = NaN) where the float64 one does not. */
static float *want32;

/* Checks got against want (float64) by normwise relative error over the
 * finite entries; a nonfinite entry must match the class of the float64 sum
 * or of the float32 one (want32, when set). */
static void compare(const char *what, const gemm_case *g, const double *want, const float *got,
                    CBLAS_LAYOUT l, int rows, int cols, int ld)
{
    double num = 0, den = 0;
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            double w = want[(long)i * cols + j], v = got[at(l, ld, i, j)];
            if (!isfinite(w) || !isfinite(v)) {
                double w32 = want32 ? want32[(long)i * cols + j] : w;
                int same = (isnan(w) && isnan(v)) || (isinf(w) && isinf(v) && (w > 0) == (v > 0));
                int same32 = (isnan(w32) && isnan(v)) || (isinf(w32) && isinf(v) && (w32 > 0) == (v > 0));
                int overflowed = isinf(v) && fabs(w) > 1e38;
                if (!same && !same32 && !overflowed)
                    FAIL_SEED("%s %dx%dx%d %s ta=%d tb=%d beta=%g off=%g isa=%s: (%d,%d) = %g, "
                              "want %g",
                              what, g->m, g->n, g->k,
                              g->layout == CblasRowMajor ? "row" : "col", g->ta == CblasTrans,
                              g->tb == CblasTrans, (double)g->beta, (double)g->offset,
                              nomul_isa_name(nomul_isa_active()), i, j, v, w);
                continue;
            }
            num += (v - w) * (v - w);
            den += w * w;
        }
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    if (err > 1e-5)
        FAIL_SEED("%s %dx%dx%d %s ta=%d tb=%d beta=%g off=%g isa=%s threads=%d: normwise error "
                  "%g",
                  what, g->m, g->n, g->k, g->layout == CblasRowMajor ? "row" : "col",
                  g->ta == CblasTrans, g->tb == CblasTrans, (double)g->beta, (double)g->offset,
                  nomul_isa_name(nomul_isa_active()), nomul_get_num_threads(), err);
}

static float pam_off(float a, float b, float c)
{
    return c == 1.0f ? nomul_pa_mul(a, b) : nomul_pa_mul_off(a, b, c);
}

static void grads_off(float a, float b, float c, float dc, float *da, float *db)
{
    if (c == 1.0f)
        nomul_pa_mul_grad(a, b, dc, da, db);
    else
        nomul_pa_mul_off_grad(a, b, c, dc, da, db);
}

/* Where set, the values of A, B and dC (which: 'a', 'b', 'c') instead of
 * draw()'s */
static float (*draw_hook)(tu_rng *r, char which);

/* One case: forward, grad A and grad B against the triple loops. */
static void run_case(tu_rng *r, const gemm_case *g, int zeros, int wild)
{
    int m = g->m, n = g->n, k = g->k;
    int ar = g->ta == CblasNoTrans ? m : k, ac = g->ta == CblasNoTrans ? k : m;
    int br = g->tb == CblasNoTrans ? k : n, bc = g->tb == CblasNoTrans ? n : k;
    long sa = stored_size(g->layout, ar, ac, g->lda), sb = stored_size(g->layout, br, bc, g->ldb);
    long sc = stored_size(g->layout, m, n, g->ldc);
    float *A = malloc(sa * 4), *B = malloc(sb * 4), *C = malloc(sc * 4), *C0 = malloc(sc * 4);
    float *DC = malloc(sc * 4), *DA = malloc(sa * 4), *DA0 = malloc(sa * 4);
    float *DB = malloc(sb * 4), *DB0 = malloc(sb * 4);
    long nwant = (long)m * n + (long)m * k + (long)k * n + 1;
    double *want = malloc(nwant * sizeof(double));
    want32 = malloc(nwant * sizeof(float));
    assert_true(A && B && C && C0 && DC && DA && DA0 && DB && DB0 && want);
    for (long i = 0; i < sa; i++) {
        A[i] = draw_hook ? draw_hook(r, 'a') : draw(r, zeros, wild);
        DA0[i] = tu_normal(r, -3, 3, 1);
    }
    for (long i = 0; i < sb; i++) {
        B[i] = draw_hook ? draw_hook(r, 'b') : draw(r, zeros, 0);
        DB0[i] = tu_normal(r, -3, 3, 1);
    }
    for (long i = 0; i < sc; i++) {
        C0[i] = tu_normal(r, -3, 3, 1);
        DC[i] = draw_hook ? draw_hook(r, 'c') : draw(r, zeros, 0);
    }
    /* forward */
    memcpy(C, C0, sc * 4);
    nomul_clear_error();
    nomul_op_cfg cfg = pam_cfg(g->offset, 0);
    nomul_gemm(&cfg, g->layout, g->ta, g->tb, m, n, k, A, g->lda, B, g->ldb, g->beta, C, g->ldc);
    if (nomul_last_error() != NOMUL_OK)
        FAIL_SEED("nomul_gemm reported: %s", nomul_last_error_message());
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = g->beta == 1.0f ? C0[at(g->layout, g->ldc, i, j)] : 0.0;
            float s32 = 0.0f;
            for (int p = 0; p < k; p++) {
                float t = pam_off(A[idx_a(g, i, p)], B[idx_b(g, p, j)], g->offset);
                s += t;
                s32 += t;
            }
            want[(long)i * n + j] = s;
            want32[(long)i * n + j] = s32 + (float)(g->beta == 1.0f ? C0[at(g->layout, g->ldc, i, j)] : 0.0f);
        }
    compare("forward", g, want, C, g->layout, m, n, g->ldc);
    /* grad A: written in A's storage, like A */
    memcpy(DA, DA0, sa * 4);
    nomul_gemm_backward(&cfg, g->layout, g->ta, g->tb, m, n, k, A, g->lda, B, g->ldb, DC, g->ldc,
                        g->beta, DA, g->lda, NULL, 0);
    if (nomul_last_error() != NOMUL_OK)
        FAIL_SEED("grad_a reported: %s", nomul_last_error_message());
    double *wa = want + (long)m * n;
    for (int i = 0; i < ar; i++)
        for (int j = 0; j < ac; j++) {
            /* stored (i, j) is op(A)(ii, pp) */
            int ii = g->ta == CblasNoTrans ? i : j, pp = g->ta == CblasNoTrans ? j : i;
            double s = g->beta == 1.0f ? DA0[at(g->layout, g->lda, i, j)] : 0.0;
            float s32 = 0.0f;
            for (int q = 0; q < n; q++) {
                float da, db;
                grads_off(A[idx_a(g, ii, pp)], B[idx_b(g, pp, q)], g->offset,
                          DC[at(g->layout, g->ldc, ii, q)], &da, &db);
                s += da;
                s32 += da;
            }
            wa[(long)i * ac + j] = s;
            want32[(long)i * ac + j] = s32 + (g->beta == 1.0f ? DA0[at(g->layout, g->lda, i, j)] : 0.0f);
        }
    compare("grad_a", g, wa, DA, g->layout, ar, ac, g->lda);
    /* grad B */
    memcpy(DB, DB0, sb * 4);
    nomul_gemm_backward(&cfg, g->layout, g->ta, g->tb, m, n, k, A, g->lda, B, g->ldb, DC, g->ldc,
                        g->beta, NULL, 0, DB, g->ldb);
    if (nomul_last_error() != NOMUL_OK)
        FAIL_SEED("grad_b reported: %s", nomul_last_error_message());
    double *wb = wa + (long)m * k;
    for (int i = 0; i < br; i++)
        for (int j = 0; j < bc; j++) {
            int pp = g->tb == CblasNoTrans ? i : j, jj = g->tb == CblasNoTrans ? j : i;
            double s = g->beta == 1.0f ? DB0[at(g->layout, g->ldb, i, j)] : 0.0;
            float s32 = 0.0f;
            for (int q = 0; q < m; q++) {
                float da, db;
                grads_off(A[idx_a(g, q, pp)], B[idx_b(g, pp, jj)], g->offset,
                          DC[at(g->layout, g->ldc, q, jj)], &da, &db);
                s += db;
                s32 += db;
            }
            wb[(long)i * bc + j] = s;
            want32[(long)i * bc + j] = s32 + (g->beta == 1.0f ? DB0[at(g->layout, g->ldb, i, j)] : 0.0f);
        }
    compare("grad_b", g, wb, DB, g->layout, br, bc, g->ldb);
    free(A);
    free(B);
    free(C);
    free(C0);
    free(DC);
    free(DA);
    free(DA0);
    free(DB);
    free(DB0);
    free(want);
    free(want32);
    want32 = NULL;
}

static gemm_case random_case(tu_rng *r, int m, int n, int k)
{
    gemm_case g;
    g.layout = tu_u32(r) & 1 ? CblasRowMajor : CblasColMajor;
    g.ta = tu_u32(r) & 1 ? CblasTrans : CblasNoTrans;
    g.tb = tu_u32(r) & 1 ? CblasTrans : CblasNoTrans;
    g.m = m;
    g.n = n;
    g.k = k;
    int ar = g.ta == CblasNoTrans ? m : k, ac = g.ta == CblasNoTrans ? k : m;
    int br = g.tb == CblasNoTrans ? k : n, bc = g.tb == CblasNoTrans ? n : k;
    int extra = tu_u32(r) % 3 == 0 ? (int)(tu_u32(r) % 9) : 0;
    g.lda = (g.layout == CblasRowMajor ? ac : ar) + extra;
    g.ldb = (g.layout == CblasRowMajor ? bc : br) + extra;
    g.ldc = (g.layout == CblasRowMajor ? n : m) + extra;
    if (g.lda < 1) g.lda = 1;
    if (g.ldb < 1) g.ldb = 1;
    if (g.ldc < 1) g.ldc = 1;
    g.beta = tu_u32(r) & 1 ? 1.0f : 0.0f;
    uint32_t o = tu_u32(r) % 4;
    g.offset = o == 0 ? 1.0552f : o == 1 ? 0.75f : 1.0f;
    return g;
}

static void for_each_isa_and_threads(void (*body)(tu_rng *r, int isa, int threads), uint64_t salt)
{
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        for (int t = 1; t <= 2; t++) {
            tu_rng r = {tu_seed() ^ salt ^ ((uint64_t)isa << 40) ^ ((uint64_t)t << 50)};
            nomul_isa_set((nomul_isa)isa);
            nomul_set_num_threads(t);
            body(&r, isa, t);
        }
    }
    nomul_isa_set(nomul_isa_max());
    nomul_set_num_threads(0);
}

static int rnd(tu_rng *r, int lo, int hi) { return lo + (int)(tu_u32(r) % (uint32_t)(hi - lo + 1)); }

static void edges_body(tu_rng *r, int isa, int threads)
{
    (void)isa;
    /* every edge size 1..67 in each of m, n, k (the others random) */
    int step = tu_scale() < 1 ? 7 : 1;
    for (int e = 1 + (int)(tu_u32(r) % (unsigned)step); e <= 67; e += step) {
        int which = (e + threads) % 3;
        int m = which == 0 ? e : rnd(r, 1, 40), n = which == 1 ? e : rnd(r, 1, 40),
            k = which == 2 ? e : rnd(r, 1, 40);
        gemm_case g = random_case(r, m, n, k);
        run_case(r, &g, tu_u32(r) & 1, 0);
    }
}

static void test_edge_sizes(void **state)
{
    (void)state;
    for_each_isa_and_threads(edges_body, 0x6601);
}

static void blocks_body(tu_rng *r, int isa, int threads)
{
    (void)isa;
    (void)threads;
    /* past the blocking sizes: k > 256 (several K blocks), m > 96, n > 1536 once */
    static const int shapes[][3] = {{150, 70, 600}, {97, 33, 257}, {5, 1600, 3}, {200, 130, 90}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (tu_scale() < 1 && i == 0)
            continue;
        gemm_case g = random_case(r, shapes[i][0], shapes[i][1], shapes[i][2]);
        run_case(r, &g, (int)(i & 1), 0);
    }
}

static void test_blocked_sizes(void **state)
{
    (void)state;
    for_each_isa_and_threads(blocks_body, 0x6602);
}

static void far_rows_body(tu_rng *r, int isa, int threads)
{
    (void)isa;
    (void)threads;
    /* op(A) with its rows contiguous and its columns 512 or more floats
     * apart (row-major Aᵀ, column-major A: the weight gradient's dCᵀ), so
     * that the driver stages each block's rows before packing: m past the
     * row block (96) and not a multiple of the panels (8, 6), two K blocks */
    for (int rep = 0; rep < 4; rep++) {
        gemm_case g = random_case(r, rnd(r, 97, 150), rnd(r, 1, 40), rnd(r, 193, 300));
        g.layout = rep & 1 ? CblasColMajor : CblasRowMajor;
        g.ta = rep & 1 ? CblasNoTrans : CblasTrans;
        g.lda = 512 + rnd(r, 0, 9);
        int br = g.tb == CblasNoTrans ? g.k : g.n, bc = g.tb == CblasNoTrans ? g.n : g.k;
        g.ldb = g.layout == CblasRowMajor ? bc : br;
        g.ldc = g.layout == CblasRowMajor ? g.n : g.m;
        run_case(r, &g, rep >> 1, 0);
    }
}

static void test_far_rows_staged(void **state)
{
    (void)state;
    for_each_isa_and_threads(far_rows_body, 0x6608);
}

static void specials_body(tu_rng *r, int isa, int threads)
{
    (void)isa;
    (void)threads;
    /* infinities, NaNs and products that overflow, with zeros and subnormals */
    for (int rep = 0; rep < 6; rep++) {
        gemm_case g = random_case(r, rnd(r, 1, 50), rnd(r, 1, 50), rnd(r, 1, 50));
        run_case(r, &g, 1, 1);
    }
}

static void test_special_values(void **state)
{
    (void)state;
    for_each_isa_and_threads(specials_body, 0x6603);
}

/* Rows of exponent ±60 meet columns of exponent ±70: every product leaves
 * the normal range, so the range classification must route them to the
 * checked path (overflow to inf, underflow to 0). */
static void test_range_edges(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6604};
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        /* random exponents past the edges, then sums of exactly 127 / -126 / -127
         * where only the mantissa carry decides */
        static const int exps[][2] = {{0, 0}, {0, 0}, {63, 64}, {-63, -63}, {-63, -64}, {64, 64}};
        for (int rep = 0; rep < 6; rep++) {
            int sign = rep == 0 ? -1 : 1;
            gemm_case g = random_case(&r, 19, 35, 41);
            g.beta = 0.0f;
            int ar = g.ta == CblasNoTrans ? g.m : g.k, ac = g.ta == CblasNoTrans ? g.k : g.m;
            int br = g.tb == CblasNoTrans ? g.k : g.n, bc = g.tb == CblasNoTrans ? g.n : g.k;
            long sa = stored_size(g.layout, ar, ac, g.lda), sb = stored_size(g.layout, br, bc, g.ldb);
            long sc = stored_size(g.layout, g.m, g.n, g.ldc);
            float *A = malloc(sa * 4), *B = malloc(sb * 4), *C = malloc(sc * 4);
            for (long i = 0; i < sa; i++)
                A[i] = 0.0f;
            int ea_lo = sign > 0 ? 60 : -66, ea_hi = sign > 0 ? 66 : -60;
            int eb_lo = sign > 0 ? 60 : -70, eb_hi = sign > 0 ? 70 : -60;
            if (rep >= 2) {
                ea_lo = ea_hi = exps[rep][0];
                eb_lo = eb_hi = exps[rep][1];
            }
            for (int i = 0; i < g.m; i++)
                for (int p = 0; p < g.k; p++)
                    A[idx_a(&g, i, p)] = tu_normal(&r, ea_lo, ea_hi, 1);
            for (long i = 0; i < sb; i++)
                B[i] = tu_normal(&r, eb_lo, eb_hi, 1);
            nomul_op_cfg cfg = pam_cfg(g.offset, 0);
            nomul_gemm(&cfg, g.layout, g.ta, g.tb, g.m, g.n, g.k, A, g.lda, B, g.ldb, 0.0f, C,
                       g.ldc);
            /* products near FLT_MAX of both signs: the float32 partial sums can
             * overflow to -inf before a +inf product arrives (NaN) where the
             * float64 sum is +inf, so the float32 in-order sum is a reference too */
            double *want = malloc((size_t)g.m * g.n * sizeof *want);
            want32 = malloc((size_t)g.m * g.n * sizeof *want32);
            for (int i = 0; i < g.m; i++)
                for (int j = 0; j < g.n; j++) {
                    double s = 0;
                    float s32 = 0.0f;
                    for (int p = 0; p < g.k; p++) {
                        float t = pam_off(A[idx_a(&g, i, p)], B[idx_b(&g, p, j)], g.offset);
                        s += t;
                        s32 += t;
                    }
                    want[(long)i * g.n + j] = s;
                    want32[(long)i * g.n + j] = s32;
                }
            compare("rows at the range edges", &g, want, C, g.layout, g.m, g.n, g.ldc);
            free(want32);
            want32 = NULL;
            free(want);
            free(A);
            free(B);
            free(C);
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* A and B at the top of the range (exponents 126 and 127), dC tiny: the
 * forward overflows (the checked path), the exact gradients' terms are
 * normal although a derivative 2^(127 + carry) is not a float: the integer
 * form's exponent arithmetic must carry them. */
static float top_range_value(tu_rng *r, char which)
{
    if (which == 'c')
        return tu_normal(r, -110, -100, 1);
    return tu_u32(r) % 8 == 0 ? 0.0f : tu_normal(r, 126, 127, 1);
}

static void top_range_body(tu_rng *r, int isa, int threads)
{
    (void)isa;
    (void)threads;
    draw_hook = top_range_value;
    for (int rep = 0; rep < 4; rep++) {
        gemm_case g = random_case(r, rnd(r, 1, 40), rnd(r, 1, 70), rnd(r, 1, 40));
        run_case(r, &g, 0, 0);
    }
    draw_hook = NULL;
}

static void test_derivative_at_range_top(void **state)
{
    (void)state;
    for_each_isa_and_threads(top_range_body, 0x6605);
}

/* Power-of-two operands make PAM exact: the PAM GEMM must then equal the
 * float product (sums of exact products, compared with a tolerance for the
 * summation order). */
static void test_power_of_two_matches_float(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6605};
    int m = 37, n = 29, k = 53;
    float *A = malloc(m * k * 4), *B = malloc(k * n * 4), *C = malloc(m * n * 4);
    for (int i = 0; i < m * k; i++)
        A[i] = tu_normal(&r, -5, 5, 1);
    for (int i = 0; i < k * n; i++)
        B[i] = tu_float(tu_bits(tu_normal(&r, -5, 5, 1)) & 0xFF800000u);
    nomul_op_cfg cfg = pam_cfg(1.0f, 0);
    nomul_gemm(&cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, A, k, B, n, 0.0f, C, n);
    double *want = malloc((size_t)m * n * sizeof *want);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)A[i * k + p] * (double)B[p * n + j];
            want[i * n + j] = s;
        }
    gemm_case g = {CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, k, n, n, 0.0f, 1.0f};
    compare("power-of-two vs float", &g, want, C, CblasRowMajor, m, n, n);
    free(want);
    free(A);
    free(B);
    free(C);
}

/* Batched products equal single ones bit for bit: PAM forward, exact and
 * approximate backward (both gradients, and each alone), float; 1 and 2
 * threads. */
static void test_batched_matches_single(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6606};
    int m = 13, n = 17, k = 11, batch = 5;
    long sa = m * k + 3, sb = k * n + 5, sc = m * n + 7;
    float *A = malloc(sa * batch * 4), *B = malloc(sb * batch * 4), *DC = malloc(sc * batch * 4);
    float *C1 = calloc(sc * batch, 4), *C2 = calloc(sc * batch, 4);
    float *G1 = calloc(sa * batch, 4), *G2 = calloc(sa * batch, 4), *G3 = calloc(sa * batch, 4);
    float *H1 = calloc(sb * batch, 4), *H2 = calloc(sb * batch, 4), *H3 = calloc(sb * batch, 4);
    fill_values(&r, A, sa * batch);
    fill_values(&r, B, sb * batch);
    fill_values(&r, DC, sc * batch);
    nomul_op_cfg cfgs[3] = {pam_cfg(1.0552f, 0), pam_cfg(1.0552f, 1),
                            {NOMUL_OP_STANDARD, 0, 1.0f}};
    for (int t = 1; t <= 2; t++) {
        nomul_set_num_threads(t);
        for (int c = 0; c < 3; c++) {
            const nomul_op_cfg *cfg = &cfgs[c];
            nomul_clear_error();
            nomul_gemm_batched(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, A, k, sa, B,
                               k, sb, 0.0f, C1, n, sc, batch);
            nomul_gemm_backward_batched(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, A,
                                        k, sa, B, k, sb, DC, n, sc, 0.0f, G1, k, sa, H1, k, sb,
                                        batch);
            nomul_gemm_backward_batched(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, A,
                                        k, sa, B, k, sb, DC, n, sc, 0.0f, G3, k, sa, NULL, 0, 0,
                                        batch);
            nomul_gemm_backward_batched(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, A,
                                        k, sa, B, k, sb, DC, n, sc, 0.0f, NULL, 0, 0, H3, k, sb,
                                        batch);
            for (int i = 0; i < batch; i++) {
                nomul_gemm(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, A + i * sa, k,
                           B + i * sb, k, 0.0f, C2 + i * sc, n);
                nomul_gemm_backward(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k,
                                    A + i * sa, k, B + i * sb, k, DC + i * sc, n, 0.0f,
                                    G2 + i * sa, k, H2 + i * sb, k);
            }
            assert_int_equal(nomul_last_error(), NOMUL_OK);
            assert_memory_equal(C1, C2, sc * batch * 4);
            assert_memory_equal(G1, G2, sa * batch * 4);
            assert_memory_equal(H1, H2, sb * batch * 4);
            assert_memory_equal(G3, G2, sa * batch * 4);
            assert_memory_equal(H3, H2, sb * batch * 4);
        }
    }
    nomul_set_num_threads(0);
    free(A); free(B); free(DC); free(C1); free(C2); free(G1); free(G2); free(G3); free(H1);
    free(H2); free(H3);
}

/* The standard configuration is OpenBLAS's cblas_sgemm (alpha 1) bit for
 * bit: the forward, and the backward's two products dC · op(B)ᵀ and
 * op(A)ᵀ · dC written in A's and B's storage, for every layout and
 * transpose. */
static void test_standard_is_sgemm(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6608};
    const nomul_op_cfg std_cfg = {NOMUL_OP_STANDARD, 0, 1.0f};
    for (int rep = 0; rep < 24; rep++) {
        gemm_case g = random_case(&r, rnd(&r, 1, 30), rnd(&r, 1, 30), rnd(&r, 1, 30));
        int m = g.m, n = g.n, k = g.k;
        int ar = g.ta == CblasNoTrans ? m : k, ac = g.ta == CblasNoTrans ? k : m;
        int br = g.tb == CblasNoTrans ? k : n, bc = g.tb == CblasNoTrans ? n : k;
        long sa = stored_size(g.layout, ar, ac, g.lda), sb = stored_size(g.layout, br, bc, g.ldb);
        long sc = stored_size(g.layout, m, n, g.ldc);
        float *A = malloc(sa * 4), *B = malloc(sb * 4), *DC = malloc(sc * 4);
        float *C1 = malloc(sc * 4), *C2 = malloc(sc * 4);
        float *DA1 = malloc(sa * 4), *DA2 = malloc(sa * 4), *DB1 = malloc(sb * 4),
              *DB2 = malloc(sb * 4);
        for (long i = 0; i < sa; i++) A[i] = DA1[i] = DA2[i] = draw(&r, 1, 0);
        for (long i = 0; i < sb; i++) B[i] = DB1[i] = DB2[i] = draw(&r, 1, 0);
        for (long i = 0; i < sc; i++) DC[i] = C1[i] = C2[i] = draw(&r, 1, 0);
        nomul_clear_error();
        nomul_gemm(&std_cfg, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb, g.beta, C1,
                   g.ldc);
        cblas_sgemm(g.layout, g.ta, g.tb, m, n, k, 1.0f, A, g.lda, B, g.ldb, g.beta, C2, g.ldc);
        nomul_gemm_backward(&std_cfg, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb, DC,
                            g.ldc, g.beta, DA1, g.lda, DB1, g.ldb);
        CBLAS_TRANSPOSE N = CblasNoTrans, T = CblasTrans;
        if (g.ta == N) /* dA = dC · op(B)ᵀ */
            cblas_sgemm(g.layout, N, g.tb == N ? T : N, m, k, n, 1.0f, DC, g.ldc, B, g.ldb,
                        g.beta, DA2, g.lda);
        else /* dAᵀ = op(B) · dCᵀ */
            cblas_sgemm(g.layout, g.tb, T, k, m, n, 1.0f, B, g.ldb, DC, g.ldc, g.beta, DA2,
                        g.lda);
        if (g.tb == N) /* dB = op(A)ᵀ · dC */
            cblas_sgemm(g.layout, g.ta == N ? T : N, N, k, n, m, 1.0f, A, g.lda, DC, g.ldc,
                        g.beta, DB2, g.ldb);
        else /* dBᵀ = dCᵀ · op(A) */
            cblas_sgemm(g.layout, T, g.ta, n, k, m, 1.0f, DC, g.ldc, A, g.lda, g.beta, DB2,
                        g.ldb);
        assert_int_equal(nomul_last_error(), NOMUL_OK);
        assert_memory_equal(C1, C2, sc * 4);
        assert_memory_equal(DA1, DA2, sa * 4);
        assert_memory_equal(DB1, DB2, sb * 4);
        free(A); free(B); free(DC); free(C1); free(C2); free(DA1); free(DA2); free(DB1);
        free(DB2);
    }
}

/* Float products large enough to be split into blocks (gemm_float.c): each
 * element within the float rounding bound of a float64 triple loop
 * (|err| <= (k + 2)·2⁻²⁴·Σ|a||b| + the beta term), and the same bits at 1, 2
 * and 3 threads and inside a parallel region, since the blocks depend on the
 * shape only. */
static void test_standard_split_products(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6609};
    const nomul_op_cfg std_cfg = {NOMUL_OP_STANDARD, 0, 1.0f};
    int reps = tu_scale() < 1 ? 3 : 10;
    for (int rep = 0; rep < reps; rep++) {
        gemm_case g = random_case(&r, rnd(&r, 1, 300), rnd(&r, 1, 300), rnd(&r, 30, 200));
        if (rep < 2) /* one dimension far larger than the other */
            g = random_case(&r, rep ? 7 : rnd(&r, 300, 600), rep ? rnd(&r, 300, 600) : 5,
                            rnd(&r, 60, 200));
        int m = g.m, n = g.n, k = g.k;
        int ar = g.ta == CblasNoTrans ? m : k, ac = g.ta == CblasNoTrans ? k : m;
        int br = g.tb == CblasNoTrans ? k : n, bc = g.tb == CblasNoTrans ? n : k;
        long sa = stored_size(g.layout, ar, ac, g.lda), sb = stored_size(g.layout, br, bc, g.ldb);
        long sc = stored_size(g.layout, m, n, g.ldc);
        float *A = malloc(sa * 4), *B = malloc(sb * 4), *C0 = malloc(sc * 4);
        float *C[4];
        for (long i = 0; i < sa; i++) A[i] = tu_normal(&r, -3, 3, 1);
        for (long i = 0; i < sb; i++) B[i] = tu_normal(&r, -3, 3, 1);
        for (long i = 0; i < sc; i++) C0[i] = tu_normal(&r, -3, 3, 1);
        for (int v = 0; v < 4; v++) {
            C[v] = malloc(sc * 4);
            memcpy(C[v], C0, sc * 4);
            nomul_clear_error();
            if (v < 3) {
                nomul_set_num_threads(v + 1);
                nomul_gemm(&std_cfg, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb, g.beta,
                           C[v], g.ldc);
            } else {
                nomul_set_num_threads(2);
#pragma omp parallel num_threads(2)
                {
#pragma omp single
                    nomul_gemm(&std_cfg, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb,
                               g.beta, C[v], g.ldc);
                }
            }
            assert_int_equal(nomul_last_error(), NOMUL_OK);
        }
        nomul_set_num_threads(0);
        for (int v = 1; v < 4; v++)
            if (memcmp(C[0], C[v], sc * 4)) {
                fprintf(stderr, "float product %dx%dx%d differs between thread counts "
                        "(variant %d); NOMUL_TEST_SEED=%llu\n", m, n, k, v,
                        (unsigned long long)tu_seed());
                fail();
            }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0, mag = 0;
                for (int p = 0; p < k; p++) {
                    double t = (double)A[idx_a(&g, i, p)] * B[idx_b(&g, p, j)];
                    s += t;
                    mag += fabs(t);
                }
                double c0 = C0[at(g.layout, g.ldc, i, j)];
                if (g.beta == 1.0f) {
                    s += c0;
                    mag += fabs(c0);
                }
                double got = C[0][at(g.layout, g.ldc, i, j)];
                if (fabs(got - s) > (k + 2) * 0x1p-24 * mag + 1e-30) {
                    fprintf(stderr, "float product %dx%dx%d (%d,%d): %.9g, float64 %.9g; "
                            "NOMUL_TEST_SEED=%llu\n", m, n, k, i, j, got, s,
                            (unsigned long long)tu_seed());
                    fail();
                }
            }
        for (int v = 0; v < 4; v++)
            free(C[v]);
        free(A); free(B); free(C0);
    }
}

/* nomul_gemm_backward, PA: exact, both gradients in one call equal each
 * alone bit for bit; approximate, the PAM products with dC, against triple
 * loops */
static void test_backward_helper(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6607};
    for (int rep = 0; rep < 24; rep++) {
        gemm_case g = random_case(&r, rnd(&r, 1, 30), rnd(&r, 1, 30), rnd(&r, 1, 30));
        int m = g.m, n = g.n, k = g.k;
        int ar = g.ta == CblasNoTrans ? m : k, ac = g.ta == CblasNoTrans ? k : m;
        int br = g.tb == CblasNoTrans ? k : n, bc = g.tb == CblasNoTrans ? n : k;
        long sa = stored_size(g.layout, ar, ac, g.lda), sb = stored_size(g.layout, br, bc, g.ldb);
        long sc = stored_size(g.layout, m, n, g.ldc);
        float *A = malloc(sa * 4), *B = malloc(sb * 4), *DC = malloc(sc * 4);
        float *DA1 = calloc(sa, 4), *DA2 = calloc(sa, 4), *DB1 = calloc(sb, 4), *DB2 = calloc(sb, 4);
        fill_values(&r, A, sa);
        fill_values(&r, B, sb);
        fill_values(&r, DC, sc);
        nomul_clear_error();
        nomul_op_cfg exact = pam_cfg(g.offset, 0), approx = pam_cfg(g.offset, 1);
        nomul_gemm_backward(&exact, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb, DC, g.ldc,
                            0.0f, DA1, g.lda, DB1, g.ldb);
        nomul_gemm_backward(&exact, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb, DC, g.ldc,
                            0.0f, DA2, g.lda, NULL, 0);
        nomul_gemm_backward(&exact, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb, DC, g.ldc,
                            0.0f, NULL, 0, DB2, g.ldb);
        assert_int_equal(nomul_last_error(), NOMUL_OK);
        assert_memory_equal(DA1, DA2, sa * 4);
        assert_memory_equal(DB1, DB2, sb * 4);
        nomul_gemm_backward(&approx, g.layout, g.ta, g.tb, m, n, k, A, g.lda, B, g.ldb, DC, g.ldc,
                            0.0f, DA1, g.lda, DB1, g.ldb);
        assert_int_equal(nomul_last_error(), NOMUL_OK);
        double *wa = malloc((size_t)ar * ac * 8), *wb = malloc((size_t)br * bc * 8);
        for (int i = 0; i < ar; i++)
            for (int j = 0; j < ac; j++) {
                int ii = g.ta == CblasNoTrans ? i : j, pp = g.ta == CblasNoTrans ? j : i;
                double sum = 0;
                for (int q = 0; q < n; q++)
                    sum += pam_off(DC[at(g.layout, g.ldc, ii, q)], B[idx_b(&g, pp, q)], g.offset);
                wa[(long)i * ac + j] = sum;
            }
        for (int i = 0; i < br; i++)
            for (int j = 0; j < bc; j++) {
                int pp = g.tb == CblasNoTrans ? i : j, jj = g.tb == CblasNoTrans ? j : i;
                double sum = 0;
                for (int q = 0; q < m; q++)
                    sum += pam_off(A[idx_a(&g, q, pp)], DC[at(g.layout, g.ldc, q, jj)], g.offset);
                wb[(long)i * bc + j] = sum;
            }
        compare("approx backward dA", &g, wa, DA1, g.layout, ar, ac, g.lda);
        compare("approx backward dB", &g, wb, DB1, g.layout, br, bc, g.ldb);
        free(wa); free(wb); free(A); free(B); free(DC); free(DA1); free(DA2); free(DB1); free(DB2);
    }
}

static int errors_seen;
static void count_errors(nomul_status s, const char *msg)
{
    (void)s;
    (void)msg;
    errors_seen++;
}

/* The driver shares a product among threads by X's row blocks or, for
 * products with few row panels (a linear layer's weight gradient), by Y's
 * column panels; either way every output is the same sums in the same
 * order: 1, 2 and 3 threads give the same bits on shapes that take each
 * split, forward and both exact gradients. The blocking (KC) fixes the
 * order on every instruction set and every kernel computes the same terms,
 * so each instruction set gives the scalar kernels' bits too; zeros,
 * subnormals and offsets included. */
static void test_thread_splits_same_bits(void **state)
{
    (void)state;
    static const int shapes[][3] = {{64, 192, 1088}, {13, 200, 600}, {7, 130, 400},
                                    {150, 70, 600}, {1088, 64, 192}};
    static const float offsets[] = {1.0f, 0.75f, 1.0552f};
    tu_rng r = {tu_seed() ^ 0x5917};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
        float *A = malloc(4L * m * k), *B = malloc(4L * k * n), *DC = malloc(4L * m * n);
        float *want[3], *got[3];
        long len[3] = {(long)m * n, (long)m * k, (long)k * n};
        assert_true(A && B && DC);
        for (int o = 0; o < 3; o++) {
            want[o] = calloc((size_t)len[o], 4);
            got[o] = calloc((size_t)len[o], 4);
            assert_true(want[o] && got[o]);
        }
        fill_values(&r, A, (long)m * k);
        fill_values(&r, B, (long)k * n);
        fill_values(&r, DC, (long)m * n);
        nomul_op_cfg cfg = pam_cfg(offsets[sh % 3], 0);
        for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
            nomul_isa_set((nomul_isa)isa);
            for (int t = 0; t < 3; t++) {
                nomul_set_num_threads(t + 1);
                float **out = isa == 0 && t == 0 ? want : got;
                nomul_gemm(&cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, A, k, B, n,
                           0.0f, out[0], n);
                nomul_gemm_backward(&cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, A,
                                    k, B, n, DC, n, 0.0f, out[1], k, out[2], n);
                if (out == want)
                    continue;
                static const char *what[] = {"C", "dA", "dB"};
                for (int o = 0; o < 3; o++)
                    for (long i = 0; i < len[o]; i++)
                        if (tu_bits(got[o][i]) != tu_bits(want[o][i]))
                            FAIL_SEED("%dx%dx%d off %g isa=%s threads %d: %s[%ld] = %a, the "
                                      "scalar kernels' on one thread %a",
                                      m, n, k, (double)cfg.offset,
                                      nomul_isa_name(nomul_isa_active()), t + 1, what[o], i,
                                      (double)got[o][i], (double)want[o][i]);
            }
        }
        for (int o = 0; o < 3; o++) {
            free(want[o]);
            free(got[o]);
        }
        free(A);
        free(B);
        free(DC);
    }
    nomul_isa_set(nomul_isa_max());
    nomul_set_num_threads(0);
}

/* The forward's order of sums, which the driver's two loop orders must both
 * keep (team_run_narrow for products with a few column panels and X's rows
 * contiguous, team_run for the others), one output at a time: each K block's
 * terms summed from +0 in p order, the blocks' sums added to C (to beta·C0's
 * value first) in block order. */
static void plain_blocked_forward(int m, int n, int k, const float *A, const float *B,
                                  const float *C0, float beta, float off, float *C)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float c = beta == 1.0f ? C0[(long)i * n + j] : 0.0f;
            for (int p0 = 0; p0 < k; p0 += PG_KC) {
                float s = 0.0f;
                for (int p = p0; p < p0 + PG_KC && p < k; p++) {
                    float a = A[(long)i * k + p], b = B[(long)p * n + j];
                    s += off != 1.0f ? nomul_pa_mul_off(a, b, off) : nomul_pa_mul(a, b);
                }
                c = p0 == 0 && beta != 1.0f ? s : c + s;
            }
            C[(long)i * n + j] = c;
        }
}

/* nomul_gemm's forward against plain_blocked_forward bit for bit, on shapes
 * that take each loop order (1 to 4 column panels over several K blocks;
 * 10 panels), every instruction set, 1 to 3 threads, beta 0 and 1, with
 * zeros, subnormals and offsets. */
static void test_forward_order_of_sums(void **state)
{
    (void)state;
    static const int shapes[][3] = {{300, 64, 600}, {97, 100, 1000}, {150, 70, 600},
                                    {45, 128, 385}, {200, 300, 500}, {61, 33, 193}};
    static const float offsets[] = {1.0f, 1.0552f};
    tu_rng r = {tu_seed() ^ 0x6609};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
        float *A = malloc(4L * m * k), *B = malloc(4L * k * n), *C0 = malloc(4L * m * n);
        float *want = malloc(4L * m * n), *got = malloc(4L * m * n);
        assert_true(A && B && C0 && want && got);
        fill_values(&r, A, (long)m * k);
        fill_values(&r, B, (long)k * n);
        fill_values(&r, C0, (long)m * n);
        float off = offsets[sh % 2], beta = (float)(sh / 2 % 2);
        nomul_op_cfg cfg = pam_cfg(off, 0);
        plain_blocked_forward(m, n, k, A, B, C0, beta, off, want);
        for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
            nomul_isa_set((nomul_isa)isa);
            for (int t = 1; t <= 3; t++) {
                nomul_set_num_threads(t);
                memcpy(got, C0, 4L * m * n);
                nomul_gemm(&cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, A, k, B, n,
                           beta, got, n);
                for (long i = 0; i < (long)m * n; i++)
                    if (tu_bits(got[i]) != tu_bits(want[i]))
                        FAIL_SEED("%dx%dx%d off %g beta %g isa=%s threads %d: C[%ld] = %a, the "
                                  "plain blocked sums' %a",
                                  m, n, k, (double)off, (double)beta,
                                  nomul_isa_name(nomul_isa_active()), t, i, (double)got[i],
                                  (double)want[i]);
            }
        }
        free(A);
        free(B);
        free(C0);
        free(want);
        free(got);
    }
    nomul_isa_set(nomul_isa_max());
    nomul_set_num_threads(0);
}

/* The forward with X's zeros skipped (gemm_driver.c's xlists_panel, in
 * both loop orders) against plain_blocked_forward bit for bit: X drawn with
 * a share of zeros (none, a tenth, a ReLU's half, most), or Y instead (the
 * product then taken as its transpose), in the lists' mode always, auto and
 * never; X stored by rows (padded: lda > k), transposed
 * (its rows gathered: a weight gradient's dCᵀ), or the whole product in
 * column-major order (C's rows not contiguous: tiles written back through
 * the tile buffer); Y with zeros (its panels then run packed) in some
 * shapes, infinities, NaNs and overflowing exponents in X or Y in others
 * (those tiles on the checked path); 1 to 4 column panels and more, 16 and
 * 32 wide; one K block or several; every instruction set, 1 to 3 threads,
 * beta 0 and 1, offsets. A NaN matches any NaN (the checked path's and the
 * plain twin's are both the scalar PAM's). The products must take the lists
 * where AVX-512 has them (pg_xsparse_runs). */
/* Forward products whose X rows the kernels read in place (xin_panel,
 * AVX-512) against the plain blocked sums, bit for bit, and against the
 * packed path (mode off): narrow Y (team_run_narrow: K over one block, 128
 * columns or fewer) and blocked; X dense, with whole rows of zeros (a
 * gradient's padding tokens, +0 and −0), with zeros among a row's values
 * (those panels packed), with infinities, NaNs and overflowing products
 * (packed or checked); Y with zeros; partial row panels and tiles; an
 * offset, beta 1, C row- and column-major; 1 to 3 threads. */
static void test_forward_x_in_place(void **state)
{
    (void)state;
    static const int shapes[][3] = {{300, 64, 600}, {97, 100, 450}, {150, 128, 512},
                                    {45, 16, 385},  {61, 33, 193},  {8, 96, 64},
                                    {70, 300, 700}, {203, 128, 128}, {33, 2860 / 20, 260}};
    enum { DENSE, ZERO_ROWS, MIXED, WILD, NKIND };
    tu_rng r = {tu_seed() ^ 0x71a};
    long runs0 = pg_xin_runs;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (int kind = 0; kind < NKIND; kind++) {
            int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2], pad = (int)(sh % 3);
            int yzeros = (int)((sh + kind) % 3 == 1), colmajor = (int)((sh + kind) % 4 == 3);
            float *A = malloc(4L * m * k), *B = malloc(4L * k * n), *C0 = malloc(4L * m * n);
            float *As = malloc(4L * m * (k + pad)), *Bs = malloc(4L * k * n);
            float *Cs = malloc(4L * m * n), *want = malloc(4L * m * n);
            assert_true(A && B && C0 && As && Bs && Cs && want);
            for (int i = 0; i < m; i++) {
                int zrow = kind == ZERO_ROWS && tu_u32(&r) % 4 == 0;
                int mixed = kind == MIXED && tu_u32(&r) % 8 == 0;
                for (int p = 0; p < k; p++) {
                    float v = draw(&r, 0, kind == WILD && tu_u32(&r) % 256 == 0);
                    if (zrow || (mixed && tu_u32(&r) % 16 == 0))
                        v = tu_u32(&r) & 1 ? 0.0f : -0.0f;
                    A[(long)i * k + p] = v;
                }
            }
            for (long i = 0; i < (long)k * n; i++)
                B[i] = draw(&r, yzeros, 0);
            fill_values(&r, C0, (long)m * n);
            int lda = k + pad;
            for (int i = 0; i < m; i++)
                for (int p = 0; p < k; p++)
                    As[(long)i * lda + p] = A[(long)i * k + p];
            for (int p = 0; p < k; p++)
                for (int j = 0; j < n; j++)
                    Bs[colmajor ? (long)j * k + p : (long)p * n + j] = B[(long)p * n + j];
            float off = sh % 2 ? 1.0552f : 1.0f, beta = (float)((sh + kind) % 2);
            nomul_op_cfg cfg = pam_cfg(off, 0);
            plain_blocked_forward(m, n, k, A, B, C0, beta, off, want);
            for (int mode = 1; mode >= 0; mode--)
                for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
                    if (isa != NOMUL_ISA_AVX512 && !mode)
                        continue;
                    nomul_isa_set((nomul_isa)isa);
                    pg_xin_mode = mode;
                    for (int t = 1; t <= 3; t++) {
                        nomul_set_num_threads(t);
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++)
                                Cs[colmajor ? (long)j * m + i : (long)i * n + j] =
                                    C0[(long)i * n + j];
                        if (colmajor) /* A's rows as Aᵀ's columns, C by columns */
                            nomul_gemm(&cfg, CblasColMajor, CblasTrans, CblasNoTrans, m, n, k, As,
                                       lda, Bs, k, beta, Cs, m);
                        else
                            nomul_gemm(&cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k,
                                       As, lda, Bs, n, beta, Cs, n);
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++) {
                                float g = Cs[colmajor ? (long)j * m + i : (long)i * n + j];
                                float w = want[(long)i * n + j];
                                if (tu_bits(g) != tu_bits(w) && !(isnan(g) && isnan(w)))
                                    FAIL_SEED("%dx%dx%d X kind %d Y zeros %d off %g beta %g "
                                              "C %s in place %d isa=%s threads %d: C[%d][%d] = "
                                              "%a, the plain blocked sums' %a",
                                              m, n, k, kind, yzeros, (double)off, (double)beta,
                                              colmajor ? "by columns" : "by rows", mode,
                                              nomul_isa_name(nomul_isa_active()), t, i, j,
                                              (double)g, (double)w);
                            }
                    }
                }
            pg_xin_mode = 1;
            free(A);
            free(B);
            free(C0);
            free(As);
            free(Bs);
            free(Cs);
            free(want);
        }
    nomul_set_num_threads(0);
    nomul_isa_set(nomul_isa_max());
    if (nomul_isa_max() == NOMUL_ISA_AVX512)
        assert_true(pg_xin_runs > runs0); /* the in-place path ran */
}

/* One case of the exact gradients (nomul_gemm_backward: dA, dB from A, B, dC;
 * B stored k×n or, trans, n×k as a linear layer's W) on the widest ISA at
 * 1-3 threads in each of nmodes settings (set_mode(i); 0 the default, set
 * again at the end), against the scalar kernels on one thread, bit for bit;
 * dA and dB start from the same random values (beta 1 adds to them). what
 * names the case in a failure. */
static void exact_grads_check(tu_rng *r, int m, int n, int k, const float *A, const float *B,
                              const float *DC, int trans, float off, float beta,
                              void (*set_mode)(int), int nmodes, const char *what)
{
    float *want[2], *got[2], *init[2];
    long len[2] = {(long)m * k, (long)k * n};
    float *Bs = malloc(4L * k * n);
    assert_true(Bs);
    for (int o = 0; o < 2; o++) {
        want[o] = malloc(4L * len[o]);
        got[o] = malloc(4L * len[o]);
        init[o] = malloc(4L * len[o]);
        assert_true(want[o] && got[o] && init[o]);
        fill_values(r, init[o], len[o]);
    }
    nomul_op_cfg cfg = pam_cfg(off, 0);
    CBLAS_TRANSPOSE tb = trans ? CblasTrans : CblasNoTrans;
    int ldb = trans ? k : n;
    for (int p = 0; p < k; p++)
        for (int j = 0; j < n; j++)
            Bs[trans ? (long)j * k + p : (long)p * n + j] = B[(long)p * n + j];
    nomul_isa_set(NOMUL_ISA_SCALAR);
    nomul_set_num_threads(1);
    for (int o = 0; o < 2; o++)
        memcpy(want[o], init[o], 4L * len[o]);
    nomul_gemm_backward(&cfg, CblasRowMajor, CblasNoTrans, tb, m, n, k, A, k, Bs, ldb, DC, n,
                        beta, want[0], k, want[1], ldb);
    nomul_isa_set(nomul_isa_max());
    for (int mo = 0; mo < nmodes; mo++) {
        set_mode(mo);
        for (int t = 1; t <= 3; t++) {
            nomul_set_num_threads(t);
            for (int o = 0; o < 2; o++)
                memcpy(got[o], init[o], 4L * len[o]);
            nomul_gemm_backward(&cfg, CblasRowMajor, CblasNoTrans, tb, m, n, k, A, k, Bs, ldb,
                                DC, n, beta, got[0], k, got[1], ldb);
            static const char *name[] = {"dA", "dB"};
            for (int o = 0; o < 2; o++)
                for (long i = 0; i < len[o]; i++)
                    if (tu_bits(got[o][i]) != tu_bits(want[o][i]) &&
                        !(isnan(got[o][i]) && isnan(want[o][i])))
                        FAIL_SEED("%dx%dx%d %s B %s off %g beta %g mode %d isa=%s threads %d: "
                                  "%s[%ld] = %a, the scalar kernels' %a",
                                  m, n, k, what, trans ? "transposed" : "by rows", (double)off,
                                  (double)beta, mo, nomul_isa_name(nomul_isa_active()), t,
                                  name[o], i, (double)got[o][i], (double)want[o][i]);
        }
    }
    set_mode(0);
    for (int o = 0; o < 2; o++) {
        free(want[o]);
        free(got[o]);
        free(init[o]);
    }
    free(Bs);
    nomul_isa_set(nomul_isa_max());
    nomul_set_num_threads(0);
}

static void set_xin_mode(int i) { pg_xin_mode = i == 0; }
static void set_xsparse_mode(int i)
{
    static const int modes[] = {PG_XSPARSE_AUTO, PG_XSPARSE_ALWAYS, PG_XSPARSE_NEVER};
    pg_xsparse_mode = modes[i];
}

/* The exact gradients with grad A's X (dC) read in place (AVX-512) against
 * the scalar kernels, bit for bit, and with the path off: dC dense, with
 * rows of zeros (padding tokens), with zeros among a row's values, with
 * wild values in A and B; B by rows or transposed; offset, beta, 1-3
 * threads. */
static void test_exact_grad_a_x_in_place(void **state)
{
    (void)state;
    static const int shapes[][3] = {{300, 64, 128}, {97, 130, 200}, {61, 33, 250},
                                    {400, 128, 64}, {36, 300, 70}};
    enum { DENSE, ZERO_ROWS, MIXED, WILD, NKIND };
    tu_rng r = {tu_seed() ^ 0x9a7};
    long runs0 = pg_xin_runs;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (int kind = 0; kind < NKIND; kind++) {
            int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2], wild = kind == WILD;
            float *A = malloc(4L * m * k), *B = malloc(4L * k * n), *DC = malloc(4L * m * n);
            assert_true(A && B && DC);
            for (long i = 0; i < (long)m * k; i++)
                A[i] = draw(&r, 1, wild && tu_u32(&r) % 64 == 0);
            for (long i = 0; i < (long)k * n; i++)
                B[i] = draw(&r, 0, wild && tu_u32(&r) % 64 == 0);
            for (int i = 0; i < m; i++) {
                int zrow = kind == ZERO_ROWS && tu_u32(&r) % 4 == 0;
                int mixed = kind == MIXED && tu_u32(&r) % 8 == 0;
                for (int j = 0; j < n; j++) {
                    float v = draw(&r, 0, 0);
                    if (zrow || (mixed && tu_u32(&r) % 16 == 0))
                        v = tu_u32(&r) & 1 ? 0.0f : -0.0f;
                    DC[(long)i * n + j] = v;
                }
            }
            char what[64];
            snprintf(what, sizeof what, "dC kind %d (mode 1: in place off)", kind);
            exact_grads_check(&r, m, n, k, A, B, DC, (int)((sh + (size_t)kind) % 2),
                              sh % 2 ? 1.0552f : 1.0f, (float)((sh + (size_t)kind) % 2),
                              set_xin_mode, 2, what);
            free(A);
            free(B);
            free(DC);
        }
    if (nomul_isa_max() == NOMUL_ISA_AVX512)
        assert_true(pg_xin_runs > runs0);
}

/* Batches of small products (attention's per-head products: pg_small_batch
 * reads both operands in place, AVX-512) against the scalar kernels on one
 * thread, bit for bit, and against the packed path (pg_small_mode never):
 * the forward, the exact backward and the approximate one (two forward
 * products), A and B by rows or transposed (Q·Kᵀ reads both along the
 * reduction), partial tiles, zeros and subnormals (masked attention
 * probabilities), values that overflow or are infinite or NaN (the batch
 * then packed), an offset (packed), beta 0 and 1, a reduction longer than one
 * K block (packed), one or two rows (small_m_forward), 1 to 3 threads. The
 * products must take the path where AVX-512 has it (pg_small_runs). */
static void test_small_products_in_place(void **state)
{
    (void)state;
    static const int shapes[][3] = {{18, 16, 18}, {38, 16, 38}, {16, 16, 16}, {5, 7, 3},
                                    {64, 64, 64}, {40, 33, 200}, {3, 64, 9}, {64, 3, 20},
                                    {2, 16, 16},  {17, 40, 1},   {7, 64, 192}};
    enum { DENSE, ZEROS, WILD, NKIND };
    tu_rng r = {tu_seed() ^ 0x5a11};
    long runs0 = pg_small_runs;
    const int batch = 5;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (int kind = 0; kind < NKIND; kind++)
            for (int tr = 0; tr < 4; tr++) {
                int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
                CBLAS_TRANSPOSE ta = tr & 1 ? CblasTrans : CblasNoTrans;
                CBLAS_TRANSPOSE tb = tr & 2 ? CblasTrans : CblasNoTrans;
                int lda = (tr & 1 ? m : k) + (int)(sh % 2), ldb = (tr & 2 ? k : n) + (int)(sh % 3);
                long sa = (long)(tr & 1 ? k : m) * lda, sb = (long)(tr & 2 ? n : k) * ldb;
                long sc = (long)m * n, sda = sa, sdb = sb;
                float off = (sh + (size_t)kind + (size_t)tr) % 5 == 4 ? 1.0552f : 1.0f;
                float beta = (float)((sh + (size_t)tr) % 2);
                int approx = (int)((sh + (size_t)kind + (size_t)tr) % 3 == 2);
                float *A = malloc(4L * sa * batch), *B = malloc(4L * sb * batch);
                float *DC = malloc(4L * sc * batch), *C0 = malloc(4L * sc * batch);
                float *D0 = malloc(4L * (sa + sb) * batch);
                float *want = malloc(4L * (sc + sa + sb) * batch);
                float *got = malloc(4L * (sc + sa + sb) * batch);
                assert_true(A && B && DC && C0 && D0 && want && got);
                for (long i = 0; i < sa * batch; i++)
                    A[i] = draw(&r, kind != DENSE, kind == WILD && tu_u32(&r) % 97 == 0);
                for (long i = 0; i < sb * batch; i++)
                    B[i] = draw(&r, kind == ZEROS, kind == WILD && tu_u32(&r) % 97 == 0);
                for (long i = 0; i < sc * batch; i++)
                    DC[i] = draw(&r, kind == ZEROS, 0);
                fill_values(&r, C0, sc * batch);
                fill_values(&r, D0, (sa + sb) * batch);
                nomul_op_cfg cfg = pam_cfg(off, approx);
                /* the three products of one setting into out: C, dA, dB */
#define RUN_SMALL(out)                                                                          \
    do {                                                                                        \
        memcpy(out, C0, 4L * sc * batch);                                                       \
        memcpy(out + sc * batch, D0, 4L * (sa + sb) * batch);                                   \
        nomul_gemm_batched(&cfg, CblasRowMajor, ta, tb, m, n, k, A, lda, sa, B, ldb, sb, beta,  \
                           out, n, sc, batch);                                                  \
        nomul_gemm_backward_batched(&cfg, CblasRowMajor, ta, tb, m, n, k, A, lda, sa, B, ldb,   \
                                    sb, DC, n, sc, beta, out + sc * batch, lda, sda,            \
                                    out + (sc + sa) * batch, ldb, sdb, batch);                  \
    } while (0)
                nomul_isa_set(NOMUL_ISA_SCALAR);
                nomul_set_num_threads(1);
                RUN_SMALL(want);
                nomul_isa_set(nomul_isa_max());
                for (int mode = PG_SMALL_AUTO; mode <= PG_SMALL_NEVER; mode++) {
                    pg_small_mode = mode;
                    for (int t = 1; t <= 3; t++) {
                        nomul_set_num_threads(t);
                        RUN_SMALL(got);
                        for (long i = 0; i < (sc + sa + sb) * batch; i++)
                            if (tu_bits(got[i]) != tu_bits(want[i]) &&
                                !(isnan(got[i]) && isnan(want[i])))
                                FAIL_SEED("%dx%dx%d batch %d kind %d %s%s off %g beta %g %s "
                                          "small mode %d isa=%s threads %d: %s[%ld] = %a, the "
                                          "scalar kernels' %a",
                                          m, n, k, batch, kind, tr & 1 ? "Aᵀ" : "A",
                                          tr & 2 ? "Bᵀ" : "B", (double)off, (double)beta,
                                          approx ? "approximate" : "exact", mode,
                                          nomul_isa_name(nomul_isa_active()), t,
                                          i < sc * batch              ? "C"
                                          : i < (sc + sa) * batch ? "dA"
                                                                  : "dB",
                                          i, (double)got[i], (double)want[i]);
                    }
                }
#undef RUN_SMALL
                pg_small_mode = PG_SMALL_AUTO;
                free(A);
                free(B);
                free(DC);
                free(C0);
                free(D0);
                free(want);
                free(got);
            }
    nomul_set_num_threads(0);
    nomul_isa_set(nomul_isa_max());
    if (nomul_isa_max() == NOMUL_ISA_AVX512)
        assert_true(pg_small_runs > runs0);
}

static void test_forward_sparse_x(void **state)
{
    (void)state;
    static const int shapes[][3] = {{300, 64, 600}, {97, 100, 150}, {150, 128, 512},
                                    {45, 16, 385},  {61, 33, 193}, {8, 96, 64},
                                    {70, 300, 700}, {40, 1100, 500}};
    static const float density[] = {0.0f, 0.1f, 0.5f, 0.9f};
    static const int modes[] = {PG_XSPARSE_ALWAYS, PG_XSPARSE_AUTO, PG_XSPARSE_NEVER};
    enum { ROWS, TRANS, COLMAJOR, NSTORE };
    tu_rng r = {tu_seed() ^ 0x5a11};
    long runs0 = pg_xsparse_runs;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (size_t dd = 0; dd < sizeof density / sizeof density[0]; dd++) {
            int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2], pad = (int)(sh % 3);
            int wild = (int)((sh + dd) % 3 == 1), yzeros = (int)((sh + dd) % 4 == 2);
            int store = (int)((sh + dd) % NSTORE);
            /* the zeros in Y instead (then taken as the transpose) */
            int ysparse = (int)((sh + dd) % 5 == 3);
            float *A = malloc(4L * m * k), *B = malloc(4L * k * n), *C0 = malloc(4L * m * n);
            float *As = malloc(4L * (m + pad) * (k + pad)), *Bs = malloc(4L * k * n);
            float *Cs = malloc(4L * m * n), *want = malloc(4L * m * n);
            assert_true(A && B && C0 && As && Bs && Cs && want);
            for (long i = 0; i < (long)m * k; i++) {
                int keep = ysparse || (tu_u32(&r) >> 8) < (uint32_t)(density[dd] * 16777216.0f);
                A[i] = keep ? draw(&r, 0, wild && tu_u32(&r) % 64 == 0)
                            : (tu_u32(&r) & 1 ? 0.0f : -0.0f);
            }
            for (long i = 0; i < (long)k * n; i++) {
                int keep = !ysparse || (tu_u32(&r) >> 8) < (uint32_t)(density[dd] * 16777216.0f);
                B[i] = keep ? draw(&r, yzeros, wild && tu_u32(&r) % 64 == 0)
                            : (tu_u32(&r) & 1 ? 0.0f : -0.0f);
            }
            fill_values(&r, C0, (long)m * n);
            /* A (m×k) as stored: by rows (lda = k + pad), as Aᵀ's rows
             * (lda = m + pad), or by columns (lda = m + pad) */
            int lda = store == ROWS ? k + pad : m + pad;
            for (int i = 0; i < m; i++)
                for (int p = 0; p < k; p++)
                    As[store == ROWS ? (long)i * lda + p : (long)p * lda + i] = A[(long)i * k + p];
            for (int p = 0; p < k; p++)
                for (int j = 0; j < n; j++)
                    Bs[store == COLMAJOR ? (long)j * k + p : (long)p * n + j] = B[(long)p * n + j];
            float off = sh % 2 ? 1.0552f : 1.0f, beta = (float)(dd % 2);
            nomul_op_cfg cfg = pam_cfg(off, 0);
            plain_blocked_forward(m, n, k, A, B, C0, beta, off, want);
            /* the modes where the lists are (AVX-512), auto elsewhere */
            for (size_t mo = 0; mo < sizeof modes / sizeof modes[0]; mo++)
                for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
                    if (isa != NOMUL_ISA_AVX512 && modes[mo] != PG_XSPARSE_AUTO)
                        continue;
                    nomul_isa_set((nomul_isa)isa);
                    pg_xsparse_mode = modes[mo];
                    for (int t = 1; t <= 3; t++) {
                        nomul_set_num_threads(t);
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++)
                                Cs[store == COLMAJOR ? (long)j * m + i : (long)i * n + j] =
                                    C0[(long)i * n + j];
                        if (store == COLMAJOR)
                            nomul_gemm(&cfg, CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, k,
                                       As, lda, Bs, k, beta, Cs, m);
                        else
                            nomul_gemm(&cfg, CblasRowMajor,
                                       store == TRANS ? CblasTrans : CblasNoTrans, CblasNoTrans, m,
                                       n, k, As, lda, Bs, n, beta, Cs, n);
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++) {
                                float g = Cs[store == COLMAJOR ? (long)j * m + i : (long)i * n + j];
                                float w = want[(long)i * n + j];
                                if (tu_bits(g) != tu_bits(w) && !(isnan(g) && isnan(w)))
                                    FAIL_SEED("%dx%dx%d A %s density %g of %s wild %d Y zeros %d "
                                              "off %g beta %g mode %d isa=%s threads %d: C[%d][%d] "
                                              "= %a, the plain blocked sums' %a",
                                              m, n, k,
                                              store == ROWS    ? "by rows"
                                              : store == TRANS ? "transposed"
                                                               : "column-major",
                                              (double)density[dd], ysparse ? "B" : "A", wild,
                                              yzeros, (double)off,
                                              (double)beta, modes[mo],
                                              nomul_isa_name(nomul_isa_active()), t, i, j,
                                              (double)g, (double)w);
                            }
                    }
                }
            pg_xsparse_mode = PG_XSPARSE_AUTO;
            free(A);
            free(B);
            free(C0);
            free(As);
            free(Bs);
            free(Cs);
            free(want);
        }
    nomul_isa_set(nomul_isa_max());
    nomul_set_num_threads(0);
    if (nomul_isa_max() == NOMUL_ISA_AVX512)
        assert_true(pg_xsparse_runs > runs0);
}

/* The exact gradients with X's zeros skipped (the lists' grad-A form: a
 * ReLU layer's masked output gradient dC in its data gradient, and,
 * transposed, in its weight gradient; grad B: A, a ReLU's output, in the
 * weight gradient, without an offset) against the scalar kernels on one
 * thread bit for bit (test_thread_splits_same_bits' reference, which has no
 * lists): dC or A with a share of zeros (a tenth, half, most, and half with
 * whole rows of padding), the others dense, with some wild values in one case,
 * B transposed as a linear layer's W or not, beta 0 and 1, offsets, the
 * lists' modes always, auto and never, 1 to 3 threads. The products must
 * take the lists where AVX-512 has them (pg_xsparse_runs). */
static void test_exact_grads_sparse(void **state)
{
    (void)state;
    static const int shapes[][3] = {{300, 64, 128}, {97, 130, 200}, {61, 33, 250},
                                    {400, 128, 64}};
    static const float density[] = {0.1f, 0.5f, 0.9f, 0.5f};
    tu_rng r = {tu_seed() ^ 0x6e0d};
    long runs0 = pg_xsparse_runs;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (size_t dd = 0; dd < sizeof density / sizeof density[0]; dd++) {
            int m = shapes[sh][0], n = shapes[sh][1], k = shapes[sh][2];
            int wild = (int)((sh + dd) % 4 == 1), pad_rows = dd == 3, trans = (int)((sh + dd) % 2);
            float *A = malloc(4L * m * k), *B = malloc(4L * k * n), *DC = malloc(4L * m * n);
            assert_true(A && B && DC);
            /* the zeros in A instead (a ReLU's output as the next layer's
             * input: the grad-B form's X) */
            int asparse = (int)((sh + dd) % 3 == 2);
            for (long i = 0; i < (long)m * k; i++) {
                int keep = !asparse || (tu_u32(&r) >> 8) < (uint32_t)(density[dd] * 16777216.0f);
                A[i] = keep ? draw(&r, 1, wild && tu_u32(&r) % 64 == 0) : 0.0f;
            }
            for (long i = 0; i < (long)k * n; i++)
                B[i] = draw(&r, 0, wild && tu_u32(&r) % 64 == 0);
            for (long i = 0; i < (long)m * n; i++) {
                int keep = asparse || (tu_u32(&r) >> 8) < (uint32_t)(density[dd] * 16777216.0f);
                if (pad_rows && (i / n) % 40 >= 28)
                    keep = 0;
                DC[i] = keep ? draw(&r, 0, 0) : (tu_u32(&r) & 1 ? 0.0f : -0.0f);
            }
            char what[96];
            snprintf(what, sizeof what, "%s density %g%s wild %d (modes auto, always, never)",
                     asparse ? "A" : "dC", (double)density[dd],
                     pad_rows ? " with padding rows" : "", wild);
            exact_grads_check(&r, m, n, k, A, B, DC, trans, sh % 2 ? 1.0552f : 1.0f,
                              (float)(dd % 2), set_xsparse_mode, 3, what);
            free(A);
            free(B);
            free(DC);
        }
    if (nomul_isa_max() == NOMUL_ISA_AVX512)
        assert_true(pg_xsparse_runs > runs0);
}

/* The pack's contract (gemm_internal.h, pg_pack_fn) one value at a time:
 * the plain twin of pack.inc's vector steps. Value (r, p) = base[r·rs +
 * p·cs] for r < nvalid, 1.0 for the padding rows; its packed word is its
 * bits with a zero or subnormal made its sign bit, plus adj; its mask 0 for
 * those, −1 else; the statistics are over every word of the panel, padding
 * included: the exponents of the nonzero finite values, whether a zero and
 * whether an infinity or NaN is among them. */
static void plain_pack(const float *base, long rs, long cs, int nvalid, int R, int kc,
                       uint32_t adj, uint32_t *d, int32_t *mask, pg_stats *st)
{
    int emin = 255, emax = 0, zero = 0, special = 0;
    for (int p = 0; p < kc; p++)
        for (int r = 0; r < R; r++) {
            float v = r < nvalid ? base[(long)r * rs + (long)p * cs] : 1.0f;
            uint32_t u;
            memcpy(&u, &v, 4);
            int e = (int)((u >> 23) & 0xFF);
            if (e == 0) {
                zero = 1;
                u &= 0x80000000u;
            } else if (e == 0xFF)
                special = 1;
            else {
                emin = e < emin ? e : emin;
                emax = e > emax ? e : emax;
            }
            d[(long)p * R + r] = u + adj;
            mask[(long)p * R + r] = e == 0 ? 0 : -1;
        }
    st->emin = emin - 127;
    st->emax = emax - 127;
    st->zero = zero;
    st->special = special;
}

/* Every instruction set's micro-panel packing (pack.inc, the scalar
 * context's included) against plain_pack, bit for bit: the packed words, the
 * zero masks (where a zero is present: the kernels read them only then) and
 * the statistics. Panels of 6, 8, 16 and 32 rows, all or some of them valid,
 * rows contiguous (cs = 1, the forward's X and Y), columns contiguous
 * (rs = 1) or neither, 1..200 columns (every tail of the 16-wide steps),
 * exponents from narrow to the whole range, with zeros, subnormals,
 * infinities, NaNs (one alone in a panel of zeros too) and both
 * adjustments. */
static void test_pack_matches_plain(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x6606};
    static const int rows[] = {6, 8, 16, 32};
    enum { KMAX = 200, RMAX = 32, LD = 219 };
    float *src = malloc(sizeof(float) * RMAX * LD * 2);
    uint32_t *d0 = malloc(4 * RMAX * KMAX), *d1 = malloc(4 * RMAX * KMAX);
    int32_t *m0 = malloc(4 * RMAX * KMAX), *m1 = malloc(4 * RMAX * KMAX);
    assert_true(src && d0 && d1 && m0 && m1);
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        const pg_cntx *cx = isa == NOMUL_ISA_SCALAR ? &pg_cntx_scalar
                            : isa == NOMUL_ISA_AVX2 ? &pg_cntx_avx2
                                                    : &pg_cntx_avx512;
        int reps = tu_scale() < 1 ? 60 : 300;
        for (int rep = 0; rep < reps; rep++) {
            int R = rows[tu_u32(&r) % 4], kc = 1 + (int)(tu_u32(&r) % KMAX);
            int nvalid = tu_u32(&r) % 3 ? R : 1 + (int)(tu_u32(&r) % (unsigned)R);
            int layout = (int)(tu_u32(&r) % 3); /* rows contiguous, columns, neither */
            long rs = layout == 0 ? LD - (long)(tu_u32(&r) % 8) : layout == 1 ? 1 : 2;
            long cs = layout == 0 ? 1 : layout == 1 ? RMAX + (long)(tu_u32(&r) % 5) : 2L * RMAX;
            int kind = (int)(tu_u32(&r) % 5); /* clean, zeros, specials, both, zeros but one */
            int span = tu_u32(&r) % 2 ? 126 : 1 + (int)(tu_u32(&r) % 20);
            for (long i = 0; i < (long)RMAX * LD * 2; i++) {
                uint32_t k = tu_u32(&r) % 100;
                src[i] = kind == 4                 ? ((k & 1) ? 0.0f : -0.0f)
                         : (kind & 1) && k < 10   ? ((k & 1) ? 0.0f : -0.0f)
                         : (kind & 1) && k < 13 ? tu_float((tu_u32(&r) & 0x807FFFFFu) | 1)
                         : (kind & 2) && k < 15 ? tu_float(0x7F800000u | (k == 13 ? 0x400000u : 0))
                                                : tu_normal(&r, -span, span, 1);
            }
            if (kind == 4 && tu_u32(&r) % 2) /* one infinity or NaN among zeros */
                src[tu_u32(&r) % ((unsigned)RMAX * LD * 2)] =
                    tu_float(0x7F800000u | (tu_u32(&r) % 2 ? 0x1234u : 0));
            uint32_t adj = tu_u32(&r) & 1 ? 0u - 0x3F800000u : 0u;
            memset(d0, 0xA5, 4 * RMAX * KMAX);
            memset(d1, 0x5A, 4 * RMAX * KMAX);
            pg_stats s0, s1;
            plain_pack(src, rs, cs, nvalid, R, kc, adj, d0, m0, &s0);
            cx->pack(src, rs, cs, nvalid, R, kc, adj, d1, m1, &s1);
            const char *lay = layout == 0 ? "rows contiguous" : layout == 1 ? "columns contiguous"
                                                                           : "strided";
            if (s0.emin != s1.emin || s0.emax != s1.emax || s0.zero != s1.zero ||
                s0.special != s1.special)
                FAIL_SEED("%s pack %d of %d rows x %d, %s: stats [%d, %d] zero %d special %d, "
                          "the plain pack's [%d, %d] %d %d",
                          nomul_isa_name((nomul_isa)isa), nvalid, R, kc, lay, s1.emin, s1.emax,
                          s1.zero, s1.special, s0.emin, s0.emax, s0.zero, s0.special);
            for (long i = 0; i < (long)R * kc; i++)
                if (d0[i] != d1[i] || (s0.zero && m0[i] != m1[i]))
                    FAIL_SEED("%s pack %d of %d rows x %d, %s: word %ld (p %ld, r %ld) = "
                              "%08x mask %d, the plain pack's %08x mask %d",
                              nomul_isa_name((nomul_isa)isa), nvalid, R, kc, lay, i, i / R, i % R,
                              d1[i], m1[i], d0[i], m0[i]);
        }
    }
    free(src);
    free(d0);
    free(d1);
    free(m0);
    free(m1);
}

static void test_bad_arguments_are_reported(void **state)
{
    (void)state;
    float A[64], B[64], C[64], D[64];
    for (int i = 0; i < 64; i++)
        A[i] = B[i] = D[i] = 1.0f;
    nomul_set_error_handler(count_errors);
    struct {
        CBLAS_LAYOUT l;
        CBLAS_TRANSPOSE ta, tb;
        int m, n, k, lda, ldb, ldc;
        float beta, offset;
        const char *needle;
    } bad[] = {
        {CblasRowMajor, CblasNoTrans, CblasNoTrans, -1, 4, 4, 4, 4, 4, 0, 1, "negative"},
        {CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 3, 4, 4, 0, 1, "lda = 3"},
        {CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 4, 2, 4, 0, 1, "ldb = 2"},
        {CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 4, 4, 1, 0, 1, "dc = 1"},
        {CblasColMajor, CblasTrans, CblasNoTrans, 4, 5, 3, 2, 4, 4, 0, 1, "lda = 2"},
        {CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 4, 4, 4, 0.5f, 1, "beta"},
        {CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 4, 4, 4, 0, 0.0f, "offset"},
        {CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 4, 4, 4, 0, INFINITY, "offset"},
        {(CBLAS_LAYOUT)7, CblasNoTrans, CblasNoTrans, 4, 4, 4, 4, 4, 4, 0, 1, "layout"},
        {CblasRowMajor, (CBLAS_TRANSPOSE)9, CblasNoTrans, 4, 4, 4, 4, 4, 4, 0, 1, "transpose"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int fn = 0; fn < 3; fn++) {
            for (int j = 0; j < 64; j++)
                C[j] = 7.0f;
            nomul_clear_error();
            errors_seen = 0;
            nomul_op_cfg cfg = pam_cfg(bad[i].offset, 0);
            if (fn == 0)
                nomul_gemm(&cfg, bad[i].l, bad[i].ta, bad[i].tb, bad[i].m, bad[i].n, bad[i].k, A,
                           bad[i].lda, B, bad[i].ldb, bad[i].beta, C, bad[i].ldc);
            else if (fn == 1)
                nomul_gemm_backward(&cfg, bad[i].l, bad[i].ta, bad[i].tb, bad[i].m, bad[i].n,
                                    bad[i].k, A, bad[i].lda, B, bad[i].ldb, D, bad[i].ldc,
                                    bad[i].beta, C, bad[i].lda, NULL, 0);
            else
                nomul_gemm_backward(&cfg, bad[i].l, bad[i].ta, bad[i].tb, bad[i].m, bad[i].n,
                                    bad[i].k, A, bad[i].lda, B, bad[i].ldb, D, bad[i].ldc,
                                    bad[i].beta, NULL, 0, C, bad[i].ldb);
            if (nomul_last_error() != NOMUL_EINVAL || errors_seen != 1 ||
                !strstr(nomul_last_error_message(), bad[i].needle))
                fail_msg("case %zu fn %d: status %d, %d handler calls, message '%s' (want '%s')",
                         i, fn, nomul_last_error(), errors_seen, nomul_last_error_message(),
                         bad[i].needle);
            for (int j = 0; j < 64; j++)
                assert_true(C[j] == 7.0f);
        }
    }
    nomul_clear_error();
    nomul_op_cfg pam = pam_cfg(1.0f, 0), std_cfg = {NOMUL_OP_STANDARD, 0, 1.0f};
    nomul_gemm(&pam, CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, NULL, 4, B, 4, 0, C, 4);
    assert_int_equal(nomul_last_error(), NOMUL_EINVAL);
    assert_non_null(strstr(nomul_last_error_message(), "A is NULL"));
    /* the float path checks its arguments alike; a NULL configuration is reported */
    nomul_clear_error();
    nomul_gemm(&std_cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, A, 3, B, 4, 0, C, 4);
    assert_int_equal(nomul_last_error(), NOMUL_EINVAL);
    assert_non_null(strstr(nomul_last_error_message(), "lda = 3"));
    nomul_clear_error();
    nomul_gemm(NULL, CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, A, 4, B, 4, 0, C, 4);
    assert_int_equal(nomul_last_error(), NOMUL_EINVAL);
    assert_non_null(strstr(nomul_last_error_message(), "cfg"));
    for (int j = 0; j < 64; j++)
        assert_true(C[j] == 7.0f);
    /* empty products are fine; k = 0 with beta 0 writes zeros */
    nomul_clear_error();
    nomul_gemm(&pam, CblasRowMajor, CblasNoTrans, CblasNoTrans, 0, 4, 4, A, 4, B, 4, 0, C, 4);
    nomul_gemm(&pam, CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 0, A, 1, B, 2, 0, C, 2);
    assert_int_equal(nomul_last_error(), NOMUL_OK);
    assert_true(C[0] == 0.0f && C[3] == 0.0f && C[4] == 7.0f);
    nomul_set_error_handler(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_sizes),
        cmocka_unit_test(test_blocked_sizes),
        cmocka_unit_test(test_far_rows_staged),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_range_edges),
        cmocka_unit_test(test_derivative_at_range_top),
        cmocka_unit_test(test_power_of_two_matches_float),
        cmocka_unit_test(test_batched_matches_single),
        cmocka_unit_test(test_thread_splits_same_bits),
        cmocka_unit_test(test_pack_matches_plain),
        cmocka_unit_test(test_forward_order_of_sums),
        cmocka_unit_test(test_forward_sparse_x),
        cmocka_unit_test(test_forward_x_in_place),
        cmocka_unit_test(test_exact_grad_a_x_in_place),
        cmocka_unit_test(test_exact_grads_sparse),
        cmocka_unit_test(test_small_products_in_place),
        cmocka_unit_test(test_backward_helper),
        cmocka_unit_test(test_standard_is_sgemm),
        cmocka_unit_test(test_standard_split_products),
        cmocka_unit_test(test_bad_arguments_are_reported),
    };
    printf("test_gemm: seed %llu, instruction sets up to %s\n", (unsigned long long)tu_seed(),
           nomul_isa_name(nomul_isa_max()));
    return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
}
