/*
 * test_functional.c — softmax, log_softmax, layer_norm and cross-entropy.
 * Float forms: forward against float64 formulas, backward against central
 * finite differences of float64 twins. PA forms: forward and approximate
 * backward bit for bit against the spec's recipes written out with the
 * scalar functions; exact backward against the approximate one (they
 * differ only by PA's slopes) and exactly zero at −∞ masks.
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
#include "arith/elt.h"
#include "functional/functional_internal.h"
#include "testutil.h"

enum { R = 5, N = 37 };
static const float L2E = NOMUL_LOG2E_F32;

static void fill(tu_rng *r, float *x, int n, int elo, int ehi)
{
    for (int i = 0; i < n; i++)
        x[i] = tu_normal(r, elo, ehi, 1);
}

/* ---- float64 twins of the float forms ------------------------------------------- */

static void softmax_d(int n, const double *x, double *y)
{
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    for (int j = 0; j < n; j++)
        s += (y[j] = exp(x[j] - mx));
    for (int j = 0; j < n; j++)
        y[j] /= s;
}

static void log_softmax_d(int n, const double *x, double *y)
{
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    for (int j = 0; j < n; j++)
        s += exp(x[j] - mx);
    for (int j = 0; j < n; j++)
        y[j] = x[j] - mx - log(s);
}

static void layer_norm_d(int n, const double *x, const double *g, const double *b, double eps,
                         double *y)
{
    double mu = 0, v = 0;
    for (int j = 0; j < n; j++)
        mu += x[j];
    mu /= n;
    for (int j = 0; j < n; j++)
        v += (x[j] - mu) * (x[j] - mu);
    v /= n;
    for (int j = 0; j < n; j++)
        y[j] = (x[j] - mu) / sqrt(v + eps) * g[j] + b[j];
}

/* Σ_j w_j f(x)_j and its gradient by central differences, one row */
typedef void (*row_fn)(int n, const double *x, double *y, const void *ctx);
static void sm_fn(int n, const double *x, double *y, const void *c) { (void)c; softmax_d(n, x, y); }
static void lsm_fn(int n, const double *x, double *y, const void *c) { (void)c; log_softmax_d(n, x, y); }
typedef struct {
    const double *g, *b;
    double eps;
} ln_ctx;
static void ln_fn(int n, const double *x, double *y, const void *c)
{
    const ln_ctx *l = c;
    layer_norm_d(n, x, l->g, l->b, l->eps, y);
}

static void fd_grad(row_fn f, const void *ctx, int n, const float *x, const float *w, double *g)
{
    double xd[N], y1[N], y2[N];
    for (int j = 0; j < n; j++)
        xd[j] = x[j];
    for (int k = 0; k < n; k++) {
        double h = 1e-5 * (fabs(xd[k]) + 1.0), keep = xd[k], s1 = 0, s2 = 0;
        xd[k] = keep + h;
        f(n, xd, y1, ctx);
        xd[k] = keep - h;
        f(n, xd, y2, ctx);
        xd[k] = keep;
        for (int j = 0; j < n; j++) {
            s1 += w[j] * y1[j];
            s2 += w[j] * y2[j];
        }
        g[k] = (s1 - s2) / (2 * h);
    }
}

static void close_rel(const char *what, const double *want, const float *got, int n, double tol)
{
    double num = 0, den = 0;
    for (int j = 0; j < n; j++) {
        num += (got[j] - want[j]) * (got[j] - want[j]);
        den += want[j] * want[j];
    }
    if (!(sqrt(num) <= tol * (sqrt(den) + 1e-6)))
        FAIL_SEED("%s: normwise error %g", what, sqrt(num / (den + 1e-30)));
}

static void test_float_forms(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF0};
    nomul_op_cfg fm = {NOMUL_OP_STANDARD, 0, 1.0f};
    float x[R * N], y[R * N], dy[R * N], dx[R * N], g[N], b[N], mean[R], rstd[R];
    double want[N], gw[N], gd[N], bd[N];
    fill(&r, x, R * N, -2, 2);
    fill(&r, dy, R * N, -2, 0);
    fill(&r, g, N, -1, 0);
    fill(&r, b, N, -1, 0);
    for (int j = 0; j < N; j++) {
        gd[j] = g[j];
        bd[j] = b[j];
    }
    ln_ctx lc = {gd, bd, 1e-5};
    for (int op = 0; op < 3; op++) {
        memset(dx, 0, sizeof dx);
        float dg[N] = {0}, db[N] = {0};
        if (op == 0) {
            nomul_softmax_forward(&fm, R, N, x, y);
            nomul_softmax_backward(&fm, R, N, x, y, dy, dx);
        } else if (op == 1) {
            nomul_log_softmax_forward(&fm, R, N, x, y);
            nomul_log_softmax_backward(&fm, R, N, x, y, dy, dx);
        } else {
            nomul_layer_norm_forward(&fm, R, N, x, g, b, 1e-5f, y, mean, rstd);
            nomul_layer_norm_backward(&fm, R, N, x, g, mean, rstd, 1e-5f, dy, dx, dg, db);
        }
        for (int i = 0; i < R; i++) {
            double xd[N];
            for (int j = 0; j < N; j++)
                xd[j] = x[i * N + j];
            row_fn f = op == 0 ? sm_fn : op == 1 ? lsm_fn : ln_fn;
            f(N, xd, want, &lc);
            close_rel(op == 0 ? "softmax forward" : op == 1 ? "log_softmax forward" : "layer_norm forward",
                      want, y + i * N, N, 1e-5);
            fd_grad(f, &lc, N, x + i * N, dy + i * N, gw);
            close_rel(op == 0 ? "softmax backward" : op == 1 ? "log_softmax backward" : "layer_norm backward",
                      gw, dx + i * N, N, 1e-3);
        }
    }
}

/* ---- PA forms against the spec's recipes ---------------------------------------------- */

static void pa_softmax_row(int n, const float *x, float *y)
{
    float t[N], mx = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++) {
        t[j] = nomul_pa_mul(x[j], L2E);
        if (t[j] > mx)
            mx = t[j];
    }
    float s = floorf(mx);
    for (int j = 0; j < n; j++)
        sum += (t[j] = nomul_pa_exp2(t[j] - s));
    for (int j = 0; j < n; j++)
        y[j] = nomul_pa_div(t[j], sum);
}

static void test_pa_forms_match_recipes(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF1};
    nomul_op_cfg pm = {NOMUL_OP_PAM, 1, 1.0f};
    float x[R * N], y[R * N], dy[R * N], dx[R * N], want[N], g[N], b[N], mean[R], rstd[R];
    fill(&r, x, R * N, -3, 3);
    fill(&r, dy, R * N, -3, 0);
    fill(&r, g, N, -1, 0);
    fill(&r, b, N, -1, 0);
    x[3] = x[N + 7] = -INFINITY; /* masks */
    nomul_softmax_forward(&pm, R, N, x, y);
    memset(dx, 0, sizeof dx);
    nomul_softmax_backward(&pm, R, N, x, y, dy, dx);
    for (int i = 0; i < R; i++) {
        pa_softmax_row(N, x + i * N, want);
        float dot = 0;
        for (int j = 0; j < N; j++)
            dot += nomul_pa_mul(dy[i * N + j], want[j]);
        for (int j = 0; j < N; j++) {
            assert_int_equal(tu_bits(y[i * N + j]), tu_bits(want[j]));
            float dw = 0.0f + nomul_pa_mul(want[j], dy[i * N + j] - dot); /* dx += */
            assert_int_equal(tu_bits(dx[i * N + j]), tu_bits(dw));
        }
    }
    assert_true(y[3] == 0.0f && y[N + 7] == 0.0f);
    /* log_softmax: x − PAD(s + palog2(Σ paexp2(t − s)), log2e) */
    nomul_log_softmax_forward(&pm, R, N, x, y);
    for (int i = 0; i < R; i++) {
        float t[N], mx = -INFINITY, sum = 0;
        for (int j = 0; j < N; j++) {
            t[j] = nomul_pa_mul(x[i * N + j], L2E);
            mx = t[j] > mx ? t[j] : mx;
        }
        float s = floorf(mx);
        for (int j = 0; j < N; j++)
            sum += nomul_pa_exp2(t[j] - s);
        float lse = nomul_pa_div(s + nomul_pa_log2(sum), L2E);
        for (int j = 0; j < N; j++)
            assert_int_equal(tu_bits(y[i * N + j]), tu_bits(x[i * N + j] - lse));
    }
    /* layer norm: PAM(PAD(x − μ, pa_sqrt(σ² + ε)), γ) + β */
    fill(&r, x, R * N, -3, 3);
    nomul_layer_norm_forward(&pm, R, N, x, g, b, 1e-5f, y, mean, rstd);
    for (int i = 0; i < R; i++) {
        float sum = 0, q = 0;
        for (int j = 0; j < N; j++)
            sum += x[i * N + j];
        float mu = nomul_pa_div(sum, (float)N);
        for (int j = 0; j < N; j++)
            q += nomul_pa_mul(x[i * N + j] - mu, x[i * N + j] - mu);
        float rr = nomul_pa_sqrt(nomul_pa_div(q, (float)N) + 1e-5f);
        assert_int_equal(tu_bits(rstd[i]), tu_bits(rr));
        for (int j = 0; j < N; j++) {
            float w = nomul_pa_mul(nomul_pa_div(x[i * N + j] - mu, rr), g[j]) + b[j];
            assert_int_equal(tu_bits(y[i * N + j]), tu_bits(w));
        }
    }
}

/* The exact PA backward is the derivative of the PA forward: where L(x) =
 * Σ dy·f(x) (float64 sums of the forward's float outputs) is affine along a
 * coordinate, its rise over run must match it within 1%. A coordinate is
 * judged only where the step shows it affine: the rises before and after x
 * agree within 0.2%. That leaves out the steps that cross a breakpoint,
 * including the row's own (its sum, mean, variance, max: a kink moves
 * every coordinate's central difference by the same amount, a bias no
 * step size averages away), and those the float outputs' rounding blurs
 * (a row's shared sum moves by a few ulps, or none). Nearly all judged
 * coordinates agree; softmax gives masked inputs exactly 0. */
static double pa_objective(const nomul_op_cfg *ex, int op, const float *x, const float *dy,
                          const float *g, const float *b)
{
    float y[N], mean[1], rstd[1];
    if (op == 0)
        nomul_softmax_forward(ex, 1, N, x, y);
    else if (op == 1)
        nomul_log_softmax_forward(ex, 1, N, x, y);
    else if (op == 2)
        nomul_layer_norm_forward(ex, 1, N, x, g, b, 1e-5f, y, mean, rstd);
    else { /* logsumexp: one value */
        nomul_logsumexp_forward(ex, 1, N, x, y);
        return (double)dy[0] * y[0];
    }
    double s = 0;
    for (int j = 0; j < N; j++)
        if (isfinite(y[j]))
            s += (double)dy[j] * y[j];
    return s;
}

/* A rise-over-run check's tallies: total, each coordinate; judged, those
 * affine along their step; agree, those whose slope matches */
typedef struct {
    int agree, judged, total;
} rises;

/* one coordinate: L at x − h, x and x + h, and the backward's slope there */
static void rises_judge(rises *t, double below, double at, double above, float h, float slope)
{
    double rise_after = (above - at) / h, rise_before = (at - below) / h;
    double fd = (rise_after + rise_before) / 2;
    t->total++;
    if (fabs(rise_after - rise_before) > 0.002 * fabs(fd) + 1e-7)
        return; /* a kink, or the rounding, within the step */
    t->judged++;
    t->agree += fabs(fd - slope) <= 0.01 * fabs(slope) + 1e-6;
}

/* a step of 2^-9 of x: short beside most breakpoints (octaves of the PA
 * operations' inputs), long beside the rounding */
static float rises_step(float x)
{
    return ldexpf(1.0f, ilogbf(x) - 9);
}

/* every finite coordinate of one row of op, judged against dx */
static void rises_add(rises *t, const nomul_op_cfg *ex, int op, float *x, const float *dy,
                      const float *g, const float *b, const float *dx)
{
    const double at = pa_objective(ex, op, x, dy, g, b);
    for (int k = 0; k < N; k++) {
        if (!isfinite(x[k]))
            continue;
        float keep = x[k], h = rises_step(keep);
        x[k] = keep + h;
        double above = pa_objective(ex, op, x, dy, g, b);
        x[k] = keep - h;
        double below = pa_objective(ex, op, x, dy, g, b);
        x[k] = keep;
        rises_judge(t, below, at, above, h, dx[k]);
    }
}

/* Over 2000 seeds, check by check, at least 95% of the judged coordinates
 * agreed (softmax, log_softmax, logsumexp, GELU ≥ 98.8%; layer norm 97.7%,
 * the offset one 94.8%, cross-entropy 95.3%, batch norm 95.0%) and at least
 * 45% were judged (the offset layer norm's wider rows and batch norm's
 * 15-value channels put more kinks within a step; the others ≥ 67%); a
 * quarter judged keeps the verdict from resting on a few. */
static void rises_verdict(const char *what, const rises *t)
{
    if (t->judged < t->total / 4)
        FAIL_SEED("%s: only %d of %d coordinates affine along their step", what, t->judged,
                  t->total);
    if (t->agree < 0.9 * t->judged)
        FAIL_SEED("%s: the exact PA backward matches the rise over run at only %d of %d "
                  "coordinates", what, t->agree, t->judged);
}

static void test_pa_exact_backward(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF2};
    nomul_op_cfg ex = {NOMUL_OP_PAM, 0, 1.0f};
    float x[N], y[N], dy[N], dx[N], g[N], b[N], mean[1], rstd[1], dg[N], db[N];
    /* 24 rows an op, whatever the scale (a row costs 2·N forwards of N): a
     * row can lose its coordinates together, to a kink within the step of
     * a statistic shared by the row */
    const int reps = 24;
    for (int op = 0; op < 4; op++) {
        rises t = {0};
        for (int rep = 0; rep < reps; rep++) {
            fill(&r, x, N, -1, 1);
            fill(&r, dy, N, -1, 0);
            fill(&r, g, N, -1, 0);
            fill(&r, b, N, -1, 0);
            if (op < 2) {
                x[5] = -INFINITY;
                dy[5] = 0.0f; /* a masked log-probability carries no gradient */
            }
            memset(dx, 0, sizeof dx);
            memset(dg, 0, sizeof dg);
            memset(db, 0, sizeof db);
            if (op == 0) {
                nomul_softmax_forward(&ex, 1, N, x, y);
                nomul_softmax_backward(&ex, 1, N, x, y, dy, dx);
            } else if (op == 1) {
                nomul_log_softmax_forward(&ex, 1, N, x, y);
                nomul_log_softmax_backward(&ex, 1, N, x, y, dy, dx);
            } else if (op == 2) {
                nomul_layer_norm_forward(&ex, 1, N, x, g, b, 1e-5f, y, mean, rstd);
                nomul_layer_norm_backward(&ex, 1, N, x, g, mean, rstd, 1e-5f, dy, dx, dg, db);
            } else {
                nomul_logsumexp_backward(&ex, 1, N, x, dy, dx);
            }
            /* softmax sends nothing to a masked input (log_softmax passes dy through) */
            if (op == 0 && dx[5] != 0.0f)
                FAIL_SEED("op %d: gradient %g at a masked input", op, (double)dx[5]);
            rises_add(&t, &ex, op, x, dy, g, b, dx);
        }
        static const char *const names[4] = {"softmax", "log_softmax", "layer norm",
                                             "logsumexp"};
        rises_verdict(names[op], &t);
    }
}

static void test_cross_entropy(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF3};
    float x[R * N], lp[R * N];
    int tgt[R] = {3, -100, 0, 36, 12};
    fill(&r, x, R * N, -2, 2);
    for (int pa = 0; pa <= 1; pa++) {
        nomul_op_cfg m = {pa ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, 1, 1.0f};
        nomul_log_softmax_forward(&m, R, N, x, lp);
        int count;
        float loss = nomul_cross_entropy_forward(&m, R, N, lp, tgt, -100, 0.1f, &count);
        assert_int_equal(count, 4);
        double want = 0;
        for (int i = 0; i < R; i++) {
            if (tgt[i] == -100)
                continue;
            double sm = 0;
            for (int c = 0; c < N; c++)
                sm -= lp[i * N + c];
            want += 0.9 * -lp[i * N + tgt[i]] + 0.1 * sm / N;
        }
        want /= 4;
        /* PA scalings by constants are PAMs: within PAM's error */
        if (!(fabs(loss - want) <= (pa ? 0.12 : 1e-5) * fabs(want)))
            FAIL_SEED("cross-entropy pa=%d: %g, want %g", pa, (double)loss, want);
        float d[R * N] = {0}, d2[R * N] = {0};
        nomul_cross_entropy_backward(&m, R, N, lp, tgt, -100, 0.1f, 1.0f, d);
        nomul_op_cfg ex = {pa ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, 0, 1.0f};
        nomul_cross_entropy_backward(&ex, R, N, lp, tgt, -100, 0.1f, 1.0f, d2);
        for (int c = 0; c < N; c++)
            assert_true(d[N + c] == 0.0f && d2[N + c] == 0.0f); /* the ignored row */
        if (!pa) {
            for (int c = 0; c < N; c++) {
                double w = -(c == 3 ? 0.9 : 0.0) / 4 - 0.1 / N / 4;
                assert_true(fabs(d[c] - w) < 1e-6);
            }
        } else { /* the exact backward against the rise over run of the PA loss */
            rises tally = {0};
            double at = nomul_cross_entropy_forward(&ex, R, N, lp, tgt, -100, 0.1f, &count);
            for (int i = 0; i < R * N; i++) {
                if (tgt[i / N] == -100)
                    continue;
                float keep = lp[i], h = rises_step(keep);
                lp[i] = keep + h;
                double up = nomul_cross_entropy_forward(&ex, R, N, lp, tgt, -100, 0.1f, &count);
                lp[i] = keep - h;
                double dn = nomul_cross_entropy_forward(&ex, R, N, lp, tgt, -100, 0.1f, &count);
                lp[i] = keep;
                rises_judge(&tally, dn, at, up, h, d2[i]);
            }
            rises_verdict("cross-entropy", &tally);
        }
    }
    int bad[R] = {3, 99, 0, 1, 2}, count;
    nomul_op_cfg m = {NOMUL_OP_STANDARD, 0, 1.0f};
    assert_true(isnan(nomul_cross_entropy_forward(&m, R, N, lp, bad, -100, 0.0f, &count)));
    assert_int_equal(count, -1);
    int none[R] = {-100, -100, -100, -100, -100};
    assert_true(nomul_cross_entropy_forward(&m, R, N, lp, none, -100, 0.0f, &count) == 0.0f);
    assert_int_equal(count, 0);
}

/* 16 lanes added pairwise: lane l + lane l+8, then l + l+4, l + l+2, l + l+1 */
static float lanes16(float *acc)
{
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0];
}

/* A value with a random exponent over the whole float range and beyond it
 * (subnormals, and ±0, ±∞, NaN now and then), random sign and mantissa */
static float wide_value(tu_rng *r)
{
    uint64_t u = tu_next(r);
    switch (u % 23) {
    case 0: return 0.0f;
    case 1: return -0.0f;
    case 2: return (u >> 8) & 1 ? INFINITY : -INFINITY;
    case 3: return NAN;
    default: break;
    }
    float m = 1.0f + (float)((u >> 8) % 8388608) / 8388608.0f;
    int e = (int)((u >> 32) % 290) - 160; /* 2^-160 (zero) .. 2^129 (∞) */
    float v = ldexpf(m, e);
    return (u >> 40) & 1 ? -v : v;
}

/* the same bits, or both NaN (a NaN's payload is not part of the contract) */
static int same_value(float a, float b)
{
    return tu_bits(a) == tu_bits(b) || (isnan(a) && isnan(b));
}

/* a PAD divisor r: near 1 (the common case) or of any normal exponent */
static float random_divisor(tu_rng *r, int near)
{
    if (near)
        return 0.5f + (float)(tu_next(r) % 1024) / 512.0f;
    return ldexpf(1.0f + (float)(tu_next(r) % 1024) / 1024.0f, (int)(tu_next(r) % 254) - 126);
}

/* a norm pass's input: near, a multiple of 1/scale within ±1000/scale (the
 * common range), else any value wide_value gives */
static float pass_value(tu_rng *r, int near, float scale)
{
    return near ? (float)((int)(tu_next(r) % 2001) - 1000) / scale : wide_value(r);
}

/* A value whose magnitude's bits are edge + d − 1 for d = 0, 1 or 2 (drawn),
 * within [0, ∞], of either sign: the three values around a limit of the
 * fused passes' normal-range windows (a bound of |x| in bits) */
static float edge_value(tu_rng *r, int64_t edge)
{
    int64_t b = edge + (int64_t)(tu_next(r) % 3) - 1;
    b = b < 0 ? 0 : b > 0x7F800000 ? 0x7F800000 : b;
    return tu_float((uint32_t)b | (tu_next(r) % 2 ? 0x80000000u : 0u));
}

/* Layer norm's and batch norm's fused output pass, y = PAM(PAD(x − μ, r), γ)
 * + β, and their squares pass, PAM(d, d), on every instruction set with the
 * fused passes, against the operations one at a time (nomul_pa_div,
 * nomul_pa_mul, a float add; the squares' lanes added in order), bit for
 * bit: the output's normal-range form (one subtraction and one addition of
 * bits per value, where a vector's every lane is proven in range) on values
 * that cross every limit: x and γ over the whole exponent range with zeros,
 * subnormals, infinities and NaNs, r from 2^-126 to 2^127, γ broadcast (bn)
 * and per value; with and without the relu of batch_norm_relu. */
static void test_ln_output_matches_operations(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x0D7};
    enum { NV = 70 };
    float x[NV], g[NV], b[NV], y[2 * NV];
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        const nomul_pa_fused *f = nomul_pa_fused_active();
        if (!f)
            continue;
        for (int rep = 0; rep < 3000; rep++) {
            int n = 1 + (int)(tu_next(&r) % NV), bn = rep % 2, near = rep % 7 == 0;
            /* batch norm's planes: np of S values, x's at b·xs (within x's n), y's
             * at b·ys, the gaps between y's planes left as they were */
            int np = bn ? 1 + (int)(tu_next(&r) % 3) : 1, S = n / np;
            if (S == 0) {
                np = 1;
                S = n;
            }
            const long xs = np > 1 ? S + (long)(tu_next(&r) % (1 + (n - np * S) / (np - 1))) : 0;
            const long ys = np > 1 ? S + (long)(tu_next(&r) % 5) : 0;
            float rr = random_divisor(&r, near);
            for (int j = 0; j < n; j++) {
                x[j] = pass_value(&r, near, 256.0f);
                g[j] = wide_value(&r);
                b[j] = rep % 3 ? (float)((int)(tu_next(&r) % 201) - 100) / 64.0f : wide_value(&r);
            }
            if (rep % 5 == 0)
                g[0] = ldexpf(1.0f, -120); /* tiny γ: PAD's overflow bound decides */
            if (rep % 3 == 1) { /* one x a vector at a limit of the windows (AVX-512's
                                 * batch norm passes: PAD's and PAM's, the squares'), the
                                 * others well inside: a window one too wide shows */
                const int64_t mr = tu_bits(rr), mg = tu_bits(g[0]) & 0x7FFFFFFF;
                const int64_t edges[] = {mr - 0x3F000000, mr + 0x40000000,
                                         mr + 0x00800000 - mg, mr + 0x7F800000 - mg,
                                         0x00800000, 0x20000000, 0x5F800000};
                for (int j = 0; j < n; j++)
                    x[j] = rr * (float)(1 + (int)(tu_next(&r) % 64)) / (tu_next(&r) % 2 ? 32 : -32);
                for (int v0 = 0; v0 < n; v0 += 16) {
                    int j = v0 + (int)(tu_next(&r) % 16);
                    if (j < n)
                        x[j] = edge_value(&r, edges[tu_next(&r) % 7]);
                }
            }
            const int relu = rep % 4 == 3; /* batch_norm_relu's output */
            for (int j = 0; j < 2 * NV; j++)
                y[j] = 1234.5f;
            f->output(np, S, x, xs, 0.0f, rr, g, b, 1.0f, y, ys, bn, relu);
            /* the squares, PAM(d, d), stored and added into lanes */
            float sq[NV], lanes[16] = {0}, wsum[16] = {0};
            f->squares(n, x, 0.0f, 1.0f, sq, NULL);
            f->squares(n, x, 0.0f, 1.0f, NULL, lanes);
            for (int j = 0; j < n; j++) {
                float w = nomul_pa_mul(x[j] - 0.0f, x[j] - 0.0f);
                wsum[j % 16] += w;
                if (!same_value(sq[j], w))
                    FAIL_SEED("%s squares: x %a: %a, PAM gives %a",
                              nomul_isa_name(nomul_isa_active()), (double)x[j], (double)sq[j],
                              (double)w);
            }
            for (int l = 0; l < 16; l++)
                if (!same_value(lanes[l], wsum[l]))
                    FAIL_SEED("%s squares' lane %d: %a, in order %a",
                              nomul_isa_name(nomul_isa_active()), l, (double)lanes[l],
                              (double)wsum[l]);
            for (long k = 0; k < 2 * NV; k++) {
                const long pb = np > 1 ? k / ys : k / S, s = np > 1 ? k % ys : k % S;
                if (pb >= np || s >= S) { /* outside the planes */
                    if (y[k] != 1234.5f)
                        FAIL_SEED("%s fused output wrote outside its %d planes of %d "
                                  "(stride %ld) at %ld", nomul_isa_name(nomul_isa_active()),
                                  np, S, ys, k);
                    continue;
                }
                const long j = pb * xs + s;
                float gj = bn ? g[0] : g[j], bj = bn ? b[0] : b[j];
                float want = nomul_pa_mul(nomul_pa_div(x[j] - 0.0f, rr), gj) + bj;
                if (relu) /* max(v, 0), a NaN to +0 */
                    want = want > 0.0f ? want : 0.0f;
                if (!same_value(y[k], want))
                    FAIL_SEED("%s fused output, bn %d: x %a, r %a, gamma %a, beta %a: %a, "
                              "the operations give %a (planes of %d)",
                              nomul_isa_name(nomul_isa_active()), bn, (double)x[j], (double)rr,
                              (double)gj, (double)bj, (double)y[k], (double)want, S);
            }
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* Layer norm's and batch norm's exact backward, first pass (xh = PAD(d, r),
 * (u, e) = mul_grads(xh, γ, dy), dγ += e, dβ += dy, (dd, dr) =
 * div_grads(d, r, u); dy through a ReLU's derivative first where its output
 * is given, as batch_norm_relu's backward does), with its normal-range form
 * (ln_back1_normal: the four derivatives as known powers of two), against
 * the operations one at a time (nomul_pa_div, nomul_pa_mul_grad,
 * nomul_pa_div_grad; the lanes added in order), bit for bit, on every
 * instruction set with the fused passes:
 * x, γ and dy over the whole exponent range with zeros, subnormals,
 * infinities and NaNs, or near 1 with a ReLU's zeros in dy (the fast form's
 * zeros), r from 2^-126 to 2^127, γ broadcast (bn) and per value, tiny or
 * huge. */
static void test_ln_backward1_matches_operations(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x0D9};
    enum { NV = 70 };
    float x[NV], g[NV], dy[NV], dd[NV], dr[NV], ry[NV];
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        const nomul_pa_fused *f = nomul_pa_fused_active();
        if (!f)
            continue;
        for (int rep = 0; rep < 3000; rep++) {
            int n = 1 + (int)(tu_next(&r) % NV), bn = rep % 2, near = rep % 3 != 0;
            float rr = random_divisor(&r, near);
            for (int j = 0; j < n; j++) {
                x[j] = pass_value(&r, near, 256.0f);
                g[j] = near ? (float)((int)(tu_next(&r) % 401) - 200) / 128.0f : wide_value(&r);
                dy[j] = !near               ? wide_value(&r)
                        : tu_next(&r) % 2 ? 0.0f /* a ReLU's masked half */
                                            : (float)((int)(tu_next(&r) % 2001) - 1000) / 4096.0f;
            }
            if (rep % 5 == 0) /* tiny or huge γ, dy: the results' range decides */
                g[0] = ldexpf(rep % 2 ? 1.5f : -1.25f, rep % 3 ? -120 : 110);
            if (rep % 7 == 0)
                dy[n - 1] = ldexpf(1.0f, rep % 2 ? -125 : 120);
            /* batch norm (AVX-512's pass): one value a vector where a result's exponent
             * field reaches 0 or 255, the others well inside (x about r, dy near 1 or 0):
             * PAD(d, r)'s limits (h about 2^-126 with a dy that keeps e and dr normal, or
             * 2^128 with dy 0); E_dy + E_γ (u) and that − E_r (dd) at −126 or 127, ±1;
             * E_dy + E_h (e) and that + E_γ − E_r (dr) likewise */
            const int edges = bn && rep % 6 == 3;
            if (edges && rep % 12 == 9) { /* E_γ > E_r: e's lower limit binds (γ's small
                                           * mantissa: M_h + M_γ < 1 the more often) */
                g[0] = ldexpf((tu_next(&r) % 2 ? 1.0f : -1.0f) *
                                  (1.0f + (float)(tu_next(&r) % 64) / 1024.0f),
                              (int)(tu_next(&r) % 3));
                rr = ldexpf(1.0f + (float)(tu_next(&r) % 1024) / 1024.0f,
                            -1 - (int)(tu_next(&r) % 2));
            }
            if (edges) {
                const int64_t mr = tu_bits(rr), er = (mr >> 23) - 127;
                const int64_t eg = ((tu_bits(g[0]) & 0x7FFFFFFF) >> 23) - 127;
                const int64_t ew[] = {-126 - eg, 127 - eg, -126 - eg + er, 127 - eg + er};
                const int64_t es[] = {-126, 127, -126 - eg + er, 127 - eg + er};
                for (int j = 0; j < n; j++) {
                    x[j] = rr * (float)(1 + (int)(tu_next(&r) % 64)) / (tu_next(&r) % 2 ? 32 : -32);
                    dy[j] = tu_next(&r) % 3 ? (float)((int)(tu_next(&r) % 2001) - 1000) / 512.0f
                                            : 0.0f;
                }
                for (int v0 = 0; v0 < n; v0 += 16) {
                    int j = v0 + (int)(tu_next(&r) % 16), k = (int)(tu_next(&r) % 3);
                    if (j >= n)
                        continue;
                    int64_t e = 0;
                    if (k == 0) { /* h at its limits, dy large enough that e and dr stay normal */
                        int lower = tu_next(&r) % 2;
                        x[j] = edge_value(&r, lower ? mr - 0x3F000000 : mr + 0x40000000);
                        dy[j] = lower ? ldexpf(tu_next(&r) % 2 ? 1.5f : -1.5f,
                                               (int)(er - eg > 0 ? er - eg : 0) + 1)
                                      : 0.0f;
                        continue;
                    }
                    if (k == 1) {
                        e = ew[tu_next(&r) % 4];
                    } else { /* E_h from h's bits, |d| − |r| + 1.0 */
                        int64_t eh = (((tu_bits(x[j]) & 0x7FFFFFFF) - mr + 0x3F800000) >> 23) - 127;
                        e = es[tu_next(&r) % 4] - eh;
                    }
                    e += (int64_t)(tu_next(&r) % 3) - 1;
                    e = e < -127 ? -127 : e > 128 ? 128 : e;
                    dy[j] = tu_float((uint32_t)(((e + 127) << 23) | (tu_next(&r) & 0x7FFFFF)) |
                                     (tu_next(&r) % 2 ? 0x80000000u : 0u));
                }
            }
            const int relu = rep % 4 == 1; /* then a ReLU's output: > 0, +0, or NaN/−0 */
            for (int j = 0; j < n; j++)
                ry[j] = edges ? 0.75f
                        : tu_next(&r) % 2 ? 0.0f : j % 9 == 4 ? (j % 2 ? NAN : -0.0f) : 0.75f;
            /* lanes from −0 (every zero's sign then shows in its sum) or +0 */
            const float z0 = rep % 8 == 3 ? -0.0f : 0.0f;
            float lg[16], lb[16], lr[16], wg[16], wb[16], wr[16], dg[NV] = {0}, db[NV] = {0};
            for (int l = 0; l < 16; l++)
                lg[l] = lb[l] = lr[l] = wg[l] = wb[l] = wr[l] = z0;
            f->backward1(n, x, 0.0f, rr, g, dy, relu ? ry : NULL, 1.0f, bn ? lg : dg,
                         bn ? lb : db, dd, bn ? lr : dr, bn);
            for (int j = 0; j < n; j++) {
                float gj = bn ? g[0] : g[j], h = nomul_pa_div(x[j] - 0.0f, rr), u, e, wdd, wdr;
                if (relu) /* the relu's backward into a zeroed gradient */
                    dy[j] = ry[j] > 0.0f ? 0.0f + dy[j] : 0.0f;
                nomul_pa_mul_grad(h, gj, dy[j], &u, &e);
                nomul_pa_div_grad(x[j] - 0.0f, rr, u, &wdd, &wdr);
                int okv = same_value(dd[j], wdd);
                if (bn) {
                    wg[j % 16] += e;
                    wb[j % 16] += dy[j];
                    wr[j % 16] += wdr;
                } else {
                    okv = okv && same_value(dr[j], wdr) && same_value(dg[j], 0.0f + e) &&
                          same_value(db[j], 0.0f + dy[j]);
                }
                if (!okv)
                    FAIL_SEED("%s exact pass, bn %d: x %a, r %a, gamma %a, dy %a: dd %a dr %a "
                              "dgamma %a, the operations give %a, %a, %a",
                              nomul_isa_name(nomul_isa_active()), bn, (double)x[j], (double)rr,
                              (double)gj, (double)dy[j], (double)dd[j], bn ? 0.0 : (double)dr[j],
                              bn ? 0.0 : (double)dg[j], (double)wdd, (double)wdr, (double)e);
            }
            for (int l = 0; bn && l < 16; l++)
                if (!same_value(lg[l], wg[l]) || !same_value(lb[l], wb[l]) ||
                    !same_value(lr[l], wr[l]))
                    FAIL_SEED("%s exact pass, lane %d: dgamma %a dbeta %a dr %a, in order %a %a "
                              "%a (r %a, gamma %a, n %d)", nomul_isa_name(nomul_isa_active()), l,
                              (double)lg[l], (double)lb[l], (double)lr[l], (double)wg[l],
                              (double)wb[l], (double)wr[l], (double)rr, (double)g[0], n);
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* Layer norm's approximate backward, first pass (u = PAM(γ, dy), v =
 * PAM(u, PAD(x − μ, r)), γ by lane), against the operations one at a
 * time, bit for bit, on every instruction set with
 * the fused passes: x, dy and γ over the whole exponent range with zeros,
 * subnormals, infinities and NaNs (γ mostly near 1, as trained), r from
 * 2^-126 to 2^127, an offset now and then (the general form). */
static void test_ln_approx_pass_matches_operations(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x1A9};
    enum { NV = 70 };
    float x[NV], dy[NV], gam[NV], u[NV], v[NV];
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        const nomul_pa_fused *f = nomul_pa_fused_active();
        if (!f)
            continue;
        for (int rep = 0; rep < 3000; rep++) {
            int n = 1 + (int)(tu_next(&r) % NV), near = rep % 4 != 0;
            float rr = random_divisor(&r, near), mu = near ? 0.125f : wide_value(&r);
            float off = rep % 7 == 3 ? 1.0552f : 1.0f;
            for (int j = 0; j < n; j++) {
                x[j] = pass_value(&r, near, 256.0f);
                dy[j] = pass_value(&r, near, 4096.0f);
                gam[j] = rep % 5 == 0 ? wide_value(&r)
                                      : (float)((int)(tu_next(&r) % 401) - 200) / 128.0f;
            }
            f->backward_approx1(n, x, mu, rr, gam, dy, off, u, v);
            for (int j = 0; j < n; j++) {
                float h = nomul_pa_div(x[j] - mu, rr);
                float uj = off != 1.0f ? nomul_pa_mul_off(gam[j], dy[j], off)
                                       : nomul_pa_mul(gam[j], dy[j]);
                float vj = off != 1.0f ? nomul_pa_mul_off(uj, h, off) : nomul_pa_mul(uj, h);
                if (!same_value(u[j], uj) || !same_value(v[j], vj))
                    FAIL_SEED("%s layer norm approximate pass: x %a, mu %a, r %a, gamma %a, "
                              "dy %a, off %g: u %a v %a, the operations give %a, %a",
                              nomul_isa_name(nomul_isa_active()), (double)x[j], (double)mu,
                              (double)rr, (double)gam[j], (double)dy[j], (double)off,
                              (double)u[j], (double)v[j], (double)uj, (double)vj);
            }
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* The exact backward's second pass (dd += a + a, a = ∂PAM(d, d)/∂d · dq;
 * batch norm's: Σ dd into 16 lanes) against the operations one at a time
 * (nomul_pa_mul_grad, the float adds, the lanes in order), bit for bit, on
 * every instruction set with the fused passes: x over the whole exponent
 * range with zeros, subnormals, infinities and NaNs, or one x a vector at a
 * limit of AVX-512's window (the product's exponent field at 0, 1, 254 or
 * 255) among values well inside; dq tiny, huge, zero or near 1; lanes from
 * −0 or +0. */
static void test_ln_backward2_matches_operations(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x0DA};
    enum { NV = 70 };
    float x[NV], dd[NV], dd0[NV];
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        const nomul_pa_fused *f = nomul_pa_fused_active();
        if (!f)
            continue;
        for (int rep = 0; rep < 3000; rep++) {
            int n = 1 + (int)(tu_next(&r) % NV), near = rep % 3 == 0, edges = rep % 3 == 1;
            float dq = rep % 7 == 0 ? ldexpf(1.25f, rep % 2 ? -120 : 110)
                       : rep % 29 == 0 ? 0.0f
                                       : (float)((int)(tu_next(&r) % 401) - 200) / 64.0f;
            const int64_t qe = (tu_bits(dq) & 0x7FFFFFFF) >> 23;
            for (int j = 0; j < n; j++) {
                x[j] = edges ? (float)(1 + (int)(tu_next(&r) % 64)) / (tu_next(&r) % 2 ? 32 : -32)
                             : pass_value(&r, near, 256.0f);
                dd0[j] = dd[j] = (float)((int)(tu_next(&r) % 201) - 100) / 16.0f;
            }
            if (edges) /* F = (|d| + 2^22) >> 23 at 128 − E_dq or 381 − E_dq, ± one */
                for (int v0 = 0; v0 < n; v0 += 16) {
                    int j = v0 + (int)(tu_next(&r) % 16);
                    if (j >= n)
                        continue;
                    int64_t fe = tu_next(&r) % 2 ? 128 - qe : 382 - qe;
                    x[j] = edge_value(&r, fe * 0x800000 - 0x400000);
                    dd0[j] = dd[j] = 0.0f; /* so that a tiny result shows */
                }
            const float z0 = rep % 4 == 3 ? -0.0f : 0.0f;
            float lanes[16], want[16];
            for (int l = 0; l < 16; l++)
                lanes[l] = want[l] = z0;
            f->backward2(n, x, 0.0f, dq, 1.0f, dd, rep % 5 == 4 ? NULL : lanes);
            for (int j = 0; j < n; j++) {
                float a, unused;
                nomul_pa_mul_grad(x[j] - 0.0f, x[j] - 0.0f, dq, &a, &unused);
                float nd = dd0[j] + (a + a);
                want[j % 16] += nd;
                if (!same_value(dd[j], nd))
                    FAIL_SEED("%s exact second pass: x %a, dq %a, dd %a: %a, the operations "
                              "give %a", nomul_isa_name(nomul_isa_active()), (double)x[j],
                              (double)dq, (double)dd0[j], (double)dd[j], (double)nd);
            }
            if (rep % 5 != 4)
                for (int l = 0; l < 16; l++)
                    if (!same_value(lanes[l], want[l]))
                        FAIL_SEED("%s exact second pass, lane %d: %a, in order %a (dq %a, n %d)",
                                  nomul_isa_name(nomul_isa_active()), l, (double)lanes[l],
                                  (double)want[l], (double)dq, n);
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* Batch norm's approximate backward, first pass (the fused kernel that
 * stores xh and u and adds Σu, ΣPAM(u, xh), ΣPAM(xh, dy), Σdy into 16
 * lanes; dy through a ReLU's derivative first where its output is given),
 * with its normal-range form, against the operations one at a time and the
 * lanes added in order, bit for bit, on every instruction set with the
 * fused passes: x and dy over the whole exponent range with zeros,
 * subnormals, infinities and NaNs, r from 2^-126 to 2^127, γ of either
 * sign, tiny or huge. */
static void test_bn_approx_pass_matches_operations(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x0D8};
    enum { NV = 70 };
    float x[NV], dy[NV], xh[NV], u[NV], ry[NV];
    for (int isa = 0; isa <= (int)nomul_isa_max(); isa++) {
        nomul_isa_set((nomul_isa)isa);
        const nomul_pa_fused *f = nomul_pa_fused_active();
        if (!f)
            continue;
        for (int rep = 0; rep < 3000; rep++) {
            int n = 1 + (int)(tu_next(&r) % NV), near = rep % 4 == 0;
            float rr = random_divisor(&r, near);
            float gam = rep % 5 == 0 ? ldexpf(rep % 10 ? 1.5f : -1.25f, rep % 3 ? -118 : 100)
                                     : (float)((int)(tu_next(&r) % 401) - 200) / 128.0f;
            for (int j = 0; j < n; j++) {
                x[j] = pass_value(&r, near, 256.0f);
                dy[j] = pass_value(&r, near, 4096.0f);
            }
            /* one value a vector at a limit of the windows (AVX-512's pass), the others
             * well inside, so that a window one too wide shows: PAD(d, r)'s (dy 0, whose
             * products are zeros), PAM(γ, dy)'s (|d| at r·4 or r/4, inside the others), and
             * PAM(u, h)'s and PAM(h, dy)'s on |d| + |dy| */
            const int edges = rep % 4 == 3;
            if (edges) {
                const int64_t mr = tu_bits(rr), mg = tu_bits(gam) & 0x7FFFFFFF;
                const int64_t c = mg - mr - 0x3F800000;
                const int64_t ed[] = {mr - 0x3F000000, mr + 0x40000000};
                const int64_t eg[] = {0x00800000 + 0x3F800000 - mg, 0x7F800000LL + 0x3F800000 - mg};
                const int64_t es[] = {0x00800000 - c, 0x00800000 + mr, 0x7F800000 - c,
                                      0x7F800000 + mr};
                for (int j = 0; j < n; j++) {
                    x[j] = rr * (float)(1 + (int)(tu_next(&r) % 64)) / (tu_next(&r) % 2 ? 32 : -32);
                    dy[j] = (float)((int)(tu_next(&r) % 2001) - 1000) / 4096.0f;
                }
                for (int v0 = 0; v0 < n; v0 += 16) {
                    int j = v0 + (int)(tu_next(&r) % 16), k = (int)(tu_next(&r) % 3), e;
                    if (j >= n)
                        continue;
                    if (k == 0) {
                        x[j] = edge_value(&r, ed[tu_next(&r) % 2]);
                        dy[j] = 0.0f;
                    } else if (k == 1) {
                        e = (int)(tu_next(&r) % 2);
                        x[j] = e ? rr / 4 : rr * 4;
                        dy[j] = edge_value(&r, eg[e]);
                    } else {
                        dy[j] = edge_value(&r, es[tu_next(&r) % 4] - (tu_bits(x[j]) & 0x7FFFFFFF));
                    }
                }
            }
            const int relu = rep % 3 == 1; /* then a ReLU's output: > 0, +0, or NaN/−0 */
            for (int j = 0; j < n; j++)
                ry[j] = edges ? 2.5f
                        : tu_next(&r) % 2 ? 0.0f : j % 9 == 4 ? (j % 2 ? NAN : -0.0f) : 2.5f;
            /* lanes from −0 (every zero's sign then shows in its sum) or +0 */
            const float z0 = rep % 6 == 4 ? -0.0f : 0.0f;
            float lanes[4][16], want[4][16];
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 16; l++)
                    lanes[k][l] = want[k][l] = z0;
            f->bn_backward_approx1(n, x, 0.0f, rr, gam, dy, relu ? ry : NULL, 1.0f, xh, u,
                                   lanes[0], lanes[1], lanes[2], lanes[3]);
            { /* without xh stored: the same u and sums */
                float u2[NV], lanes2[4][16];
                for (int k = 0; k < 4; k++)
                    for (int l = 0; l < 16; l++)
                        lanes2[k][l] = z0;
                f->bn_backward_approx1(n, x, 0.0f, rr, gam, dy, relu ? ry : NULL, 1.0f, NULL, u2,
                                       lanes2[0], lanes2[1], lanes2[2], lanes2[3]);
                if (memcmp(u2, u, (size_t)n * sizeof *u) || memcmp(lanes2, lanes, sizeof lanes))
                    FAIL_SEED("%s approximate pass without xh: u or the sums differ (n %d)",
                              nomul_isa_name(nomul_isa_active()), n);
            }
            for (int j = 0; j < n; j++) {
                if (relu) /* the relu's backward into a zeroed gradient */
                    dy[j] = ry[j] > 0.0f ? 0.0f + dy[j] : 0.0f;
                float h = nomul_pa_div(x[j] - 0.0f, rr), uj = nomul_pa_mul(gam, dy[j]);
                float terms[4] = {uj, nomul_pa_mul(uj, h), nomul_pa_mul(h, dy[j]), dy[j]};
                for (int k = 0; k < 4; k++)
                    want[k][j % 16] += terms[k];
                if (!same_value(xh[j], h) || !same_value(u[j], uj))
                    FAIL_SEED("%s approximate pass: x %a, dy %a, r %a, gamma %a: xh %a u %a, "
                              "the operations give %a, %a", nomul_isa_name(nomul_isa_active()),
                              (double)x[j], (double)dy[j], (double)rr, (double)gam,
                              (double)xh[j], (double)u[j], (double)h, (double)uj);
            }
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 16; l++)
                    if (!same_value(lanes[k][l], want[k][l]))
                        FAIL_SEED("%s approximate pass, sum %d lane %d: %a, in order %a "
                                  "(r %a, gamma %a, n %d)", nomul_isa_name(nomul_isa_active()), k,
                                  l, (double)lanes[k][l], (double)want[k][l], (double)rr,
                                  (double)gam, n);
            /* the second pass: dx += 0 + PAD(u − m1 − PAM(xh, m2), r), on the
             * first pass's xh and u, or on wide values; every third repetition
             * stored instead (dx's planes NaN before, not to be read) */
            /* at the limits of PAM(xh, m2)'s window (hedge: one xh a vector there, u − m1
             * small enough that p's underflow shows in w) and of PAD(w, r)'s (wedge: one u a
             * vector there, the others about r, p about 2^-126, below half an ulp of u) */
            const int hedge = rep % 8 == 5, wedge = rep % 8 == 7;
            float m1 = hedge || wedge ? 0.0f
                       : near       ? (float)((int)(tu_next(&r) % 201) - 100) / 64.0f
                                    : wide_value(&r);
            float m2 = wedge          ? ldexpf(1.0f, -126)
                       : rep % 10 == 4 ? ldexpf(1.0f, -140) /* subnormal: the general path */
                       : rep % 3 == 0 ? ldexpf(1.75f, rep % 2 ? -120 : 110)
                                      : (float)((int)(tu_next(&r) % 201) - 100) / 32.0f;
            const int wup = rep % 16 == 15; /* the upper limit: r < 1, so that u is finite */
            float r2 = wedge ? ldexpf(1.0f + (float)(tu_next(&r) % 1024) / 1024.0f,
                                      wup ? -1 - (int)(tu_next(&r) % 90)
                                          : 30 + (int)(tu_next(&r) % 90))
                             : rr;
            float dx[NV], dx0[NV];
            const int64_t mm = tu_bits(m2) & 0x7FFFFFFF, mr2 = tu_bits(r2);
            for (int j = 0; j < n; j++) {
                if (rep % 2) {
                    xh[j] = wide_value(&r);
                    u[j] = wide_value(&r);
                }
                float sg = tu_next(&r) % 2 ? 1.0f : -1.0f;
                float k = (float)(1 + (int)(tu_next(&r) % 64)) / 32;
                if (hedge) {
                    xh[j] = j % 16 == 5 ? edge_value(&r, 0x00800000 + 0x3F800000 - mm) : k;
                    u[j] = sg * ldexpf(k, -110);
                }
                if (wedge) {
                    xh[j] = 1.0f + k;
                    u[j] = j % 16 == 5 ? edge_value(&r, wup ? mr2 + 0x40000000 : mr2 - 0x3F000000)
                                       : sg * r2 * k;
                }
                dx0[j] = dx[j] = (float)((int)(tu_next(&r) % 201) - 100) / 16.0f;
                if ((hedge || wedge) && j % 16 == 5) /* so that the tiny results show */
                    dx0[j] = dx[j] = 0.0f;
            }
            /* over np planes of S values (xh and u at b·S, dx at b·ds, the gaps
             * between dx's planes left as they were) */
            int np = 1 + (int)(tu_next(&r) % 3), S = n / np;
            if (S == 0) {
                np = 1;
                S = n;
            }
            const long ds = S + (long)(tu_next(&r) % 5);
            const int store = rep % 3 == 2;
            float dxp[3 * (NV + 4)];
            for (long k = 0; k < np * ds; k++)
                dxp[k] = k % ds >= S ? 1234.5f : store ? NAN : dx[k / ds * S + k % ds];
            if (store)
                for (int j = 0; j < n; j++)
                    dx0[j] = 0.0f;
            float dxq[3 * (NV + 4)]; /* xh formed again from x (μ 0), where xh is x's */
            memcpy(dxq, dxp, sizeof dxq);
            f->bn_backward_approx2(np, S, xh, NULL, 0, 0.0f, u, S, r2, m1, m2, 1.0f, dxp, ds,
                                   store);
            if (rep % 2 == 0) {
                f->bn_backward_approx2(np, S, NULL, x, S, 0.0f, u, S, r2, m1, m2, 1.0f, dxq, ds,
                                       store);
                for (long k = 0; k < np * ds; k++)
                    if (k % ds < S && !same_value(dxq[k], dxp[k]))
                        FAIL_SEED("%s approximate second pass, xh formed from x %a: dx %a, "
                                  "from the first pass's xh %a (planes of %d, store %d)",
                                  nomul_isa_name(nomul_isa_active()),
                                  (double)x[k / ds * S + k % ds], (double)dxq[k],
                                  (double)dxp[k], S, store);
            }
            for (long k = 0; k < np * ds; k++) {
                const int j = (int)(k / ds * S + k % ds);
                if (k % ds >= S) {
                    if (dxp[k] != 1234.5f)
                        FAIL_SEED("%s approximate second pass wrote between planes (%d of "
                                  "%d, stride %ld) at %ld", nomul_isa_name(nomul_isa_active()),
                                  S, np, ds, k);
                    continue;
                }
                float w = u[j] - m1 - nomul_pa_mul(xh[j], m2);
                float want2 = dx0[j] + (0.0f + nomul_pa_div(w, r2));
                if (!same_value(dxp[k], want2))
                    FAIL_SEED("%s approximate second pass: xh %a, u %a, r %a, m1 %a, m2 %a: "
                              "dx %a, the operations give %a (planes of %d, store %d)",
                              nomul_isa_name(nomul_isa_active()), (double)xh[j], (double)u[j],
                              (double)r2, (double)m1, (double)m2, (double)dxp[k],
                              (double)want2, S, store);
            }
        }
    }
    nomul_isa_set(nomul_isa_max());
}

/* Float batch norm in place (plane by plane: training where S is a
 * multiple of 16, else the sums over the gathered channel and the output
 * and dx plane by plane; evaluation for any S) against its twin, the channel
 * gathered into one row and run through the row functions
 * (nomul_bn_channel_forward_float, nomul_ln_row_backward_float with γ and β
 * broadcast, the row's dx then added into dx), bit for bit: outputs, the
 * statistics and running ones, dx added into what it held, dγ, dβ, on
 * random sizes with zeros and one constant channel. */
static void test_float_batch_norm_in_place_matches_gathered_row(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF9};
    static const int sizes[] = {16, 32, 48, 784, 5, 49};
    /* every instruction set's passes (bn_float.inc) against the baseline row
     * functions; 0-5, 12-17 training; 6-11, 18-23 evaluation */
    for (int it = 0; it < 24 * ((int)nomul_isa_max() + 1); it++) {
        const int rep = it % 24;
        nomul_isa_set((nomul_isa)(it / 24));
        const int S = sizes[rep % 6], training = (rep / 6) % 2 == 0;
        const int nb = 1 + (int)(tu_next(&r) % 5), C = 1 + (int)(tu_next(&r) % 4), M = nb * C * S;
        const long len = (long)nb * S;
        float *x = malloc(sizeof(float) * (size_t)M * 5), *y = x + M, *dy = y + M, *dx = dy + M,
              *dx0 = dx + M;
        float *row = malloc(sizeof(float) * (size_t)len * 4), *out = row + len, *grow = out + len,
              *drow = grow + len;
        assert_non_null(x);
        assert_non_null(row);
        float g[4], b[4], rm[4], rv[4], mean[4], rstd[4], dg[4], db[4];
        fill(&r, x, M, -3, 3);
        fill(&r, dy, M, -2, 0);
        fill(&r, dx0, M, -1, 0);
        fill(&r, g, C, -1, 1);
        fill(&r, b, C, -1, 0);
        for (int i = 0; i < M; i += 7)
            x[i] = 0.0f;
        for (int i = 0; i < S; i++)
            x[i] = 0.5f; /* image 0, channel 0: constant when nb is 1 */
        for (int c = 0; c < C; c++) {
            rm[c] = 0.25f * (float)c;
            rv[c] = 1.0f + 0.5f * (float)c;
            dg[c] = 0.125f;
            db[c] = -0.5f;
        }
        memcpy(dx, dx0, sizeof(float) * (size_t)M);
        nomul_op_cfg fl = {NOMUL_OP_STANDARD, 0, 1.0f};
        float rm1[4], rv1[4];
        memcpy(rm1, rm, sizeof rm1);
        memcpy(rv1, rv, sizeof rv1);
        nomul_batch_norm_forward(&fl, nb, C, S, x, g, b, 1e-5f, 0.1f, training, rm1, rv1, y, mean,
                                 rstd);
        if (training)
            nomul_batch_norm_backward(&fl, nb, C, S, x, g, mean, rstd, 1e-5f, dy, dx, dg, db);
        for (int c = 0; c < C; c++) {
            for (int i = 0; i < nb; i++) {
                memcpy(row + (long)i * S, x + ((long)i * C + c) * S, sizeof(float) * (size_t)S);
                memcpy(grow + (long)i * S, dy + ((long)i * C + c) * S, sizeof(float) * (size_t)S);
            }
            float m2 = rm[c], v2 = rv[c], mu = 0, rs = 0, dg2 = 0.125f, db2 = -0.5f;
            nomul_bn_channel_forward_float(len, row, g + c, b + c, 1e-5f, 0.1f, training, &m2, &v2,
                                           out, &mu, &rs);
            memset(drow, 0, sizeof(float) * (size_t)len);
            if (training)
                nomul_ln_row_backward_float((int)len, row, g + c, 0, mu, rs, grow, drow, &dg2,
                                            &db2, 0);
            for (long j = 0; j < len; j++) {
                long at = ((j / S) * C + c) * S + j % S;
                float want_dx = training ? dx0[at] + drow[j] : dx0[at];
                if (tu_bits(y[at]) != tu_bits(out[j]) || tu_bits(dx[at]) != tu_bits(want_dx))
                    FAIL_SEED("float batch norm in place (%s), nb %d C %d S %d training %d, "
                              "channel %d [%ld]: y %a dx %a, the gathered row's %a, %a",
                              nomul_isa_name(nomul_isa_active()), nb, C, S, training, c, j,
                              (double)y[at], (double)dx[at], (double)out[j], (double)want_dx);
            }
            if (training &&
                (tu_bits(mean[c]) != tu_bits(mu) || tu_bits(rstd[c]) != tu_bits(rs) ||
                 tu_bits(rm1[c]) != tu_bits(m2) || tu_bits(rv1[c]) != tu_bits(v2) ||
                 tu_bits(dg[c]) != tu_bits(dg2) || tu_bits(db[c]) != tu_bits(db2)))
                FAIL_SEED("float batch norm in place (%s), nb %d C %d S %d, channel %d: "
                          "statistics or dgamma/dbeta differ from the gathered row's",
                          nomul_isa_name(nomul_isa_active()), nb, C, S, c);
        }
        free(x);
        free(row);
    }
    nomul_isa_set(nomul_isa_max());
}

/* Batch norm: per channel, the layer-norm recipe over (batch, spatial)
 * (float: layer norm's row; PA: its definition bit for bit, the sums in
 * batch norm's lanes, functional_internal.h); the running statistics;
 * evaluation with them; exact PA backward = rise over run. */
/* L = Σ dy·y of a PA batch norm in training mode (3 images × 4 channels × 5
 * positions: test_batch_norm's shape) */
static double bn_objective(const nomul_op_cfg *ex, const float *x, const float *g,
                           const float *b, const float *dy)
{
    enum { NB = 3, C = 4, S = 5, M = NB * C * S };
    float y[M], mean[C], rstd[C], rm[C] = {0}, rv[C] = {0};
    nomul_batch_norm_forward(ex, NB, C, S, x, g, b, 1e-5f, 0.1f, 1, rm, rv, y, mean, rstd);
    double L = 0;
    for (int i = 0; i < M; i++)
        L += (double)dy[i] * y[i];
    return L;
}

static void test_batch_norm(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF5};
    enum { NB = 3, C = 4, S = 5, M = NB * C * S };
    float x[M], y[M], g[C], b[C], mean[C], rstd[C], rm[C], rv[C];
    fill(&r, x, M, -2, 2);
    fill(&r, g, C, -1, 0);
    fill(&r, b, C, -1, 0);
    for (int pa = 0; pa <= 1; pa++) {
        nomul_op_cfg m = {pa ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, 0, 1.0f};
        for (int c = 0; c < C; c++) {
            rm[c] = 0.0f;
            rv[c] = 1.0f;
        }
        nomul_batch_norm_forward(&m, NB, C, S, x, g, b, 1e-5f, 0.1f, 1, rm, rv, y, mean, rstd);
        for (int c = 0; c < C; c++) {
            float row[NB * S], gam[NB * S], bet[NB * S], want[NB * S], mu, rs;
            for (int i = 0; i < NB; i++)
                for (int s = 0; s < S; s++) {
                    row[i * S + s] = x[(i * C + c) * S + s];
                    gam[i * S + s] = g[c];
                    bet[i * S + s] = b[c];
                }
            nomul_layer_norm_forward(&m, 1, NB * S, row, gam, bet, 1e-5f, want, &mu, &rs);
            if (pa) { /* the definition, the sums in batch norm's 16 lanes */
                float nf = NB * S, q[16] = {0}, sx[16] = {0};
                for (int j = 0; j < NB * S; j++)
                    sx[j % 16] += row[j];
                mu = nomul_pa_div(lanes16(sx), nf);
                for (int j = 0; j < NB * S; j++)
                    q[j % 16] += nomul_pa_mul(row[j] - mu, row[j] - mu);
                rs = nomul_pa_sqrt(nomul_pa_div(lanes16(q), nf) + 1e-5f);
                for (int j = 0; j < NB * S; j++)
                    want[j] = nomul_pa_mul(nomul_pa_div(row[j] - mu, rs), gam[j]) + bet[j];
            }
            for (int i = 0; i < NB; i++)
                for (int s = 0; s < S; s++)
                    assert_int_equal(tu_bits(y[(i * C + c) * S + s]), tu_bits(want[i * S + s]));
            assert_int_equal(tu_bits(mean[c]), tu_bits(mu));
            double var = 0;
            for (int j = 0; j < NB * S; j++)
                var += ((double)row[j] - mu) * ((double)row[j] - mu);
            var /= NB * S - 1;
            assert_true(fabs(rm[c] - 0.1 * mu) < (pa ? 0.12 : 1e-6) * fabs(0.1 * mu) + 1e-7);
            assert_true(fabs(rv[c] - (0.9 + 0.1 * var)) < (pa ? 0.12 : 1e-5) * (0.9 + 0.1 * var));
        }
        /* the running statistics settle on the batch's statistics (a PA update of
         * the form (1 − m)·r + m·v would settle a quarter low) */
        if (pa) {
            float rm2[C] = {0}, rv2[C] = {1, 1, 1, 1}, y2[M], mean2[C], rstd2[C];
            for (int it = 0; it < 300; it++)
                nomul_batch_norm_forward(&m, NB, C, S, x, g, b, 1e-5f, 0.1f, 1, rm2, rv2, y2, mean2,
                                         rstd2);
            for (int c = 0; c < C; c++) {
                double mu = 0, var = 0;
                for (int i = 0; i < NB; i++)
                    for (int s = 0; s < S; s++)
                        mu += x[(i * C + c) * S + s];
                mu /= NB * S;
                for (int i = 0; i < NB; i++)
                    for (int s = 0; s < S; s++)
                        var += (x[(i * C + c) * S + s] - mu) * (x[(i * C + c) * S + s] - mu);
                var /= NB * S - 1;
                /* the PA mean and variance themselves are within PAD's and PAM's errors */
                if (fabs(rm2[c] - mu) > 0.15 * fabs(mu) + 1e-3 || fabs(rv2[c] - var) > 0.15 * var)
                    FAIL_SEED("channel %d: running statistics %g, %g settled away from the "
                              "batch's %g, %g", c, rm2[c], rv2[c], mu, var);
            }
        }
        /* evaluation uses the running statistics */
        float ye[M];
        nomul_batch_norm_forward(&m, NB, C, S, x, g, b, 1e-5f, 0.1f, 0, rm, rv, ye, mean, rstd);
        for (int i = 0; i < M; i++) {
            int c = (i / S) % C;
            if (pa) { /* PAM(PAD(x − μ_run, pa_sqrt(σ²_run + ε)), γ) + β */
                float w = nomul_pa_mul(nomul_pa_div(x[i] - rm[c], nomul_pa_sqrt(rv[c] + 1e-5f)),
                                        g[c]) + b[c];
                assert_int_equal(tu_bits(ye[i]), tu_bits(w));
            } else {
                double want = (x[i] - rm[c]) / sqrt(rv[c] + 1e-5) * g[c] + b[c];
                assert_true(fabs(ye[i] - want) < 1e-5 * (fabs(want) + 0.1));
            }
        }
    }
    /* exact PA backward: rise over run of Σ dy·y along each input (four
     * draws; rises_judge) */
    nomul_op_cfg ex = {NOMUL_OP_PAM, 0, 1.0f};
    rises tally = {0};
    for (int rep = 0; rep < 4; rep++) {
        float dy[M], dx[M] = {0}, dg[C] = {0}, db[C] = {0};
        fill(&r, x, M, -2, 2);
        fill(&r, dy, M, -1, 0);
        nomul_batch_norm_forward(&ex, NB, C, S, x, g, b, 1e-5f, 0.1f, 1, rm, rv, y, mean, rstd);
        nomul_batch_norm_backward(&ex, NB, C, S, x, g, mean, rstd, 1e-5f, dy, dx, dg, db);
        const double at = bn_objective(&ex, x, g, b, dy);
        for (int k = 0; k < M; k++) {
            float keep = x[k], h = rises_step(keep);
            x[k] = keep + h;
            double above = bn_objective(&ex, x, g, b, dy);
            x[k] = keep - h;
            double below = bn_objective(&ex, x, g, b, dy);
            x[k] = keep;
            rises_judge(&tally, below, at, above, h, dx[k]);
        }
    }
    rises_verdict("batch norm", &tally);
}

/* Batch norm's PA evaluation, plane by plane (nomul_bn_planes_eval_pa), with
 * and without the relu, on planes that fill whole lanes and planes that do
 * not, every instruction set and PAM offsets 1 and 0.75, against the
 * recipe on each value: PAM(PAD(x − μ_run, pa_sqrt(σ²_run + ε)), γ) + β
 * (then nomul_relu1), bit for bit; x with zeros and values out of PAM's
 * range (the fused pass's slow lanes). */
static void test_pa_batch_norm_evaluation_matches_recipe(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xE7A1};
    static const int sizes[] = {5, 16, 49, 196, 784};
    for (int it = 0; it < 20 * ((int)nomul_isa_max() + 1); it++) {
        nomul_isa_set((nomul_isa)(it / 20));
        const int S = sizes[it % 5], relu = it / 5 % 2, offset = it / 10 % 2;
        const int nb = 1 + (int)(tu_next(&r) % 4), C = 1 + (int)(tu_next(&r) % 3), M = nb * C * S;
        float *x = malloc(sizeof(float) * (size_t)M * 2), *y = x + M;
        assert_non_null(x);
        float g[3], b[3], rm[3], rv[3], mean[3], rstd[3];
        fill(&r, x, M, -3, 3);
        for (int i = 0; i < M; i += 5)
            x[i] = i % 10 ? 0.0f : -0.0f;
        if (M > 9)
            x[7] = 3e38f, x[9] = 1e-37f;
        for (int c = 0; c < C; c++) {
            g[c] = tu_normal(&r, -1, 1, 1);
            b[c] = tu_normal(&r, -1, 0, 1);
            rm[c] = tu_normal(&r, -2, 1, 1);
            rv[c] = fabsf(tu_normal(&r, -1, 2, 1));
        }
        const float off = offset ? 0.75f : 1.0f;
        nomul_op_cfg pa = {NOMUL_OP_PAM, 1, off};
        if (relu)
            nomul_batch_norm_relu_forward_keep(&pa, nb, C, S, x, g, b, 1e-5f, 0.1f, 0, rm, rv, y,
                                               mean, rstd, NULL);
        else
            nomul_batch_norm_forward(&pa, nb, C, S, x, g, b, 1e-5f, 0.1f, 0, rm, rv, y, mean,
                                     rstd);
        for (int i = 0; i < M; i++) {
            const int c = i / S % C;
            const float d = nomul_pa_div(x[i] - rm[c], nomul_pa_sqrt(rv[c] + 1e-5f));
            float w = (offset ? nomul_pa_mul_off(d, g[c], off) : nomul_pa_mul(d, g[c])) + b[c];
            if (relu)
                w = w > 0.0f ? w : 0.0f;
            if (tu_bits(y[i]) != tu_bits(w))
                FAIL_SEED("PA batch norm evaluation (%s), nb %d C %d S %d relu %d offset %g "
                          "[%d]: %a, the recipe's %a (x %a)",
                          nomul_isa_name(nomul_isa_active()), nb, C, S, relu, (double)off, i,
                          (double)y[i], (double)w, (double)x[i]);
        }
        free(x);
    }
    nomul_isa_set(nomul_isa_max());
}

/* GELU: the PA forward is the stated recipe; the exact PA backward is the
 * rise over run of the PA function; the float backward its derivative. */
static void test_gelu(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF4};
    enum { M = 200 };
    float x[M], y[M], dy[M], dx[M];
    fill(&r, x, M, -3, 2);
    for (int i = 0; i < M; i++)
        dy[i] = 1.0f;
    nomul_op_cfg ex = {NOMUL_OP_PAM, 0, 1.0f}, ap = {NOMUL_OP_PAM, 1, 1.0f};
    nomul_op_cfg fl = {NOMUL_OP_STANDARD, 0, 1.0f};
    nomul_gelu_forward(&ex, M, x, y);
    for (int i = 0; i < M; i++) {
        float s = nomul_pa_div(1.0f, 1.0f + nomul_pa_exp(-nomul_pa_mul(1.702f, x[i])));
        assert_int_equal(tu_bits(y[i]), tu_bits(nomul_pa_mul(x[i], s)));
    }
    rises tally = {0};
    memset(dx, 0, sizeof dx);
    nomul_gelu_backward(&ex, M, x, dy, dx);
    for (int i = 0; i < M; i++) {
        float keep = x[i], h = rises_step(keep), up, dn;
        x[i] = keep + h;
        nomul_gelu_forward(&ex, 1, &x[i], &up);
        x[i] = keep - h;
        nomul_gelu_forward(&ex, 1, &x[i], &dn);
        x[i] = keep;
        rises_judge(&tally, dn, y[i], up, h, dx[i]);
    }
    rises_verdict("GELU", &tally);
    float da[M] = {0}, df[M] = {0};
    nomul_gelu_backward(&ap, M, x, dy, da);
    nomul_gelu_backward(&fl, M, x, dy, df);
    for (int i = 0; i < M; i++) { /* all three estimate the same slope */
        assert_true(fabs(da[i] - df[i]) < 0.2 * fabs(df[i]) + 0.05);
        double xd = x[i], h = 1e-4;
        double fd = (0.5 * (xd + h) * (1 + erf((xd + h) / sqrt(2.0))) -
                     0.5 * (xd - h) * (1 + erf((xd - h) / sqrt(2.0)))) / (2 * h);
        assert_true(fabs(df[i] - fd) < 1e-4 * (fabs(fd) + 1));
    }
}

/* With a PAM offset every PAM of the recipe is PAM(PAM(a, b), offset), and
 * the exact backward stays the derivative of what the forward computes. */
static void test_offset(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF6};
    const float off = 1.0552f;
    nomul_op_cfg ex = {NOMUL_OP_PAM, 0, off};
    float x[N], y[N], g[N], b[N], mean[1], rstd[1];
    fill(&r, x, N, -2, 2);
    fill(&r, g, N, -1, 0);
    fill(&r, b, N, -1, 0);
    nomul_softmax_forward(&ex, 1, N, x, y);
    float t[N], mx = -INFINITY, sum = 0;
    for (int j = 0; j < N; j++) {
        t[j] = nomul_pa_mul_off(x[j], L2E, off);
        mx = t[j] > mx ? t[j] : mx;
    }
    float s = floorf(mx);
    for (int j = 0; j < N; j++)
        sum += (t[j] = nomul_pa_exp2(t[j] - s));
    for (int j = 0; j < N; j++)
        assert_int_equal(tu_bits(y[j]), tu_bits(nomul_pa_div(t[j], sum)));
    nomul_layer_norm_forward(&ex, 1, N, x, g, b, 1e-5f, y, mean, rstd);
    float su = 0, q = 0;
    for (int j = 0; j < N; j++)
        su += x[j];
    float mu = nomul_pa_div(su, (float)N);
    for (int j = 0; j < N; j++)
        q += nomul_pa_mul_off(x[j] - mu, x[j] - mu, off);
    float rr = nomul_pa_sqrt(nomul_pa_div(q, (float)N) + 1e-5f);
    for (int j = 0; j < N; j++)
        assert_int_equal(tu_bits(y[j]),
                         tu_bits(nomul_pa_mul_off(nomul_pa_div(x[j] - mu, rr), g[j], off) + b[j]));
    /* exact backward of the offset layer norm against its rise over run, on
     * 24 rows (rises_add) */
    rises tally = {0};
    for (int rep = 0; rep < 24; rep++) {
        float dy[N], dx[N] = {0}, dg[N] = {0}, db[N] = {0};
        fill(&r, x, N, -2, 2);
        fill(&r, dy, N, -1, 0);
        nomul_layer_norm_forward(&ex, 1, N, x, g, b, 1e-5f, y, mean, rstd);
        nomul_layer_norm_backward(&ex, 1, N, x, g, mean, rstd, 1e-5f, dy, dx, dg, db);
        rises_add(&tally, &ex, 2, x, dy, g, b, dx);
    }
    rises_verdict("offset layer norm", &tally);
}


/* Layer norm and batch norm in PA mode run their rows on the array kernels;
 * the scalar chains they replace stay as their twin: forward, exact and
 * approximate backward, with and without an offset, on rows of 1 to 300
 * (layer norm) and channels of 2 images × 1 to 70 positions (batch norm),
 * with zeros, constant rows and wide exponents, must give the same bits; the
 * array path on every instruction set this CPU has (on AVX2 and AVX-512
 * layer norm's fused passes, on the scalar one a kernel call per operation). */
static void test_pa_norm_rows_match_scalar_chain(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF8};
    enum { MAXN = 3 * 3 * 1037 };
    enum { PATHS = 1 + NOMUL_ISA_COUNT }; /* the scalar chain, then the array path per ISA */
    static float x[MAXN], g[MAXN], b[MAXN], dy[MAXN], dx0[MAXN], out[2 * PATHS][7][MAXN],
        keep[2 * 19];
    const int nisa = (int)nomul_isa_max() + 1;
    static const int widths[] = {1, 2, 7, 16, 37, 64, 300};
    for (int rep = 0; rep < 28; rep++) {
        /* layer norm: 3 rows (one partial group of the grouped forward) or
         * 19 (two whole groups and a partial one) */
        int bn = rep % 2, n = widths[(rep / 2) % 7], rows = (rep / 7) % 2 ? 19 : 3;
        nomul_op_cfg m = {NOMUL_OP_PAM, (rep / 14) % 2, rep % 4 < 2 ? 1.0f : 1.0552f};
        /* batch norm: 3 images, 3 channels, S positions (planes that do
         * not fill whole lanes start at three lane offsets); layer norm: 3
         * rows of n. Batch norm's channels: up to 210 values, or 3111 (S =
         * 1037: the chunked passes' chunks of 1024 and a partial one, an
         * image's plane ending inside a chunk); every other one followed
         * by its relu (batch_norm_relu: the backward reads dy through the
         * relu's output) */
        int S = bn ? (n == 300 ? 1037 : n < 70 ? n : 70) : 0, total = bn ? 3 * 3 * S : rows * n;
        const int relu = bn && rep % 4 == 1;
        fill(&r, x, total, -3, 3);
        fill(&r, dy, total, -3, 0);
        fill(&r, g, bn ? 3 : n, -1, 1);
        fill(&r, b, bn ? 3 : n, -1, 0);
        /* batch norm's dx accumulates (accumulate 1) into what it holds */
        fill(&r, dx0, total, -3, 0);
        for (int i = 0; i < total; i += 5)
            x[i] = 0.0f;
        if (!bn && rep % 3 == 0)
            for (int j = 0; j < n; j++)
                x[j] = 0.75f; /* a constant row: variance 0 */
        /* the scalar chain (twin) and the array path on each instruction
         * set, each also with the forward's statistics kept for the
         * backward */
        const int variants = 2 * PATHS;
        if (bn)
            assert_int_equal(nomul_batch_norm_keep_floats(&m, 3), m.approx_bwd ? 0 : 2 * 3);
        else
            assert_int_equal(nomul_layer_norm_keep_floats(&m, rows), m.approx_bwd ? 0 : 2 * rows);
        for (int v = 0; v < variants; v++) {
            const int path = v % PATHS, kept = v / PATHS;
            if (path > nisa)
                continue;
            nomul_pa_chains_scalar = path == 0;
            nomul_isa_set(path == 0 ? nomul_isa_max() : (nomul_isa)(path - 1));
            float *o = out[v][0], *mean = out[v][1], *rstd = out[v][2];
            float *dx = out[v][3], *dg = out[v][4], *db = out[v][5];
            memset(out[v], 0, sizeof out[v]);
            if (bn)
                memcpy(dx, dx0, (size_t)total * sizeof *dx);
            for (int i = 0; i < 2 * 19; i++)
                keep[i] = NAN;
            float *kp = kept ? keep : NULL;
            if (bn) {
                float rm[3] = {0}, rv[3] = {1, 1, 1}, em[3], er[3];
                void (*const fwd)(const nomul_op_cfg *, int, int, int, const float *,
                                  const float *, const float *, float, float, int, float *,
                                  float *, float *, float *, float *, float *) =
                    relu ? nomul_batch_norm_relu_forward_keep : nomul_batch_norm_forward_keep;
                fwd(&m, 3, 3, S, x, g, b, 1e-5f, 0.1f, 1, rm, rv, o, mean, rstd, kp);
                if (relu) /* dy through the relu's output o */
                    nomul_batch_norm_relu_backward_keep(&m, 3, 3, S, x, o, g, b, mean, rstd, kp,
                                                        1e-5f, dy, 1, dx, dg, db);
                else
                    nomul_batch_norm_backward_keep(&m, 3, 3, S, x, g, mean, rstd, kp, 1e-5f, dy,
                                                   1, dx, dg, db);
                /* evaluation, with the running statistics the step left */
                fwd(&m, 3, 3, S, x, g, b, 1e-5f, 0.1f, 0, rm, rv, out[v][6], em, er, NULL);
            } else {
                nomul_layer_norm_forward_keep(&m, rows, n, x, g, b, 1e-5f, o, mean, rstd, kp);
                nomul_layer_norm_backward_keep(&m, rows, n, x, g, mean, rstd, kp, 1e-5f, dy, dx,
                                               dg, db);
            }
        }
        nomul_pa_chains_scalar = 0;
        nomul_isa_set(nomul_isa_max());
        static const char *what[] = {"y", "mean", "rstd", "dx", "dgamma", "dbeta",
                                     "evaluation's y"};
        for (int v = 1; v < variants; v++) {
            const int path = v % PATHS, kept = v / PATHS;
            if (path > nisa)
                continue;
            for (int k = 0; k < 7; k++)
                for (int i = 0; i < MAXN; i++)
                    if (tu_bits(out[0][k][i]) != tu_bits(out[v][k][i]))
                        FAIL_SEED("%s norm%s, n %d, rows %d, approx %d, offset %g: %s[%d] = %a "
                                  "by the scalar chain, %a by the %s%s%s",
                                  bn ? "batch" : "layer", relu ? " + relu" : "", n, rows, m.approx_bwd,
                                  (double)m.offset, what[k], i, (double)out[0][k][i],
                                  (double)out[v][k][i], path ? "array path on " : "scalar chain",
                                  path ? nomul_isa_name((nomul_isa)(path - 1)) : "",
                                  kept ? ", statistics kept" : "");
        }
    }
}

/* GELU in PA mode runs 256 values at a time, in one fused pass (AVX2,
 * AVX-512: pam_kernels.inc) or as a chain on the array kernels (the scalar
 * instruction set); the scalar chain stays as the twin: forward, exact and
 * approximate backward, with and without an offset, over 1..1000 values
 * with zeros, values large enough to saturate, infinities and a NaN, must
 * give the same bits, on every instruction set. */
static void test_pa_gelu_matches_scalar_chain(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF9};
    enum { MAXN = 1000 };
    static float x[MAXN], dy[MAXN], out[4][3][MAXN], keep[2 * MAXN];
    static const long sizes[] = {1, 5, 255, 256, 257, 1000};
    for (int rep = 0; rep < 24 * ((int)nomul_isa_max() + 1); rep++) {
        nomul_isa_set((nomul_isa)(rep / 24));
        long n = sizes[rep % 6];
        nomul_op_cfg m = {NOMUL_OP_PAM, (rep / 6) % 2, (rep / 12) % 2 ? 1.0552f : 1.0f};
        fill(&r, x, (int)n, -4, 6);
        fill(&r, dy, (int)n, -3, 0);
        for (long i = 0; i < n; i += 7)
            x[i] = 0.0f;
        if (n > 4) {
            x[1] = INFINITY;
            x[2] = -INFINITY;
            x[3] = NAN;
        }
        /* the array kernels and the scalar chain (twin), each without and
         * with the forward's intermediates kept for the backward */
        /* σ, and q for the exact derivative only: the forward writes no
         * further than the floats it asks for (a canary after them) */
        const long nk = nomul_gelu_keep_floats(&m, n);
        assert_int_equal(nk, m.approx_bwd ? n : 2 * n);
        for (int v = 0; v < 4; v++) {
            const int twin = v & 1, kept = v >> 1;
            nomul_pa_chains_scalar = twin;
            memset(out[v], 0, sizeof out[v]);
            for (long i = 0; i < 2 * MAXN; i++)
                keep[i] = tu_float(0x7fc0deadu);
            nomul_gelu_forward_keep(&m, n, x, out[v][0], kept ? keep : NULL);
            for (long i = nk; i < 2 * MAXN; i++)
                if (tu_bits(keep[i]) != 0x7fc0deadu)
                    FAIL_SEED("gelu approx %d, n %ld: keep[%ld] written, past the %ld floats "
                              "nomul_gelu_keep_floats asks for",
                              m.approx_bwd, n, i, nk);
            nomul_gelu_backward_keep(&m, n, x, kept ? keep : NULL, dy, out[v][1]);
        }
        nomul_pa_chains_scalar = 0;
        static const char *const names[4] = {"array kernels", "scalar chain",
                                             "array kernels, intermediates kept",
                                             "scalar chain, intermediates kept"};
        for (int v = 1; v < 4; v++)
            for (int k = 0; k < 2; k++)
                for (long i = 0; i < n; i++)
                    if (tu_bits(out[0][k][i]) != tu_bits(out[v][k][i]))
                        FAIL_SEED("gelu %s, n %ld, approx %d, offset %g, isa %s: [%ld] (x = "
                                  "%a) = %a on the array kernels, %a by the %s",
                                  k ? "backward" : "forward", n, m.approx_bwd, (double)m.offset,
                                  nomul_isa_name(nomul_isa_active()), i, (double)x[i],
                                  (double)out[0][k][i], (double)out[v][k][i], names[v]);
    }
    nomul_isa_set(nomul_isa_max());
}

/* Float log_softmax and logsumexp, forward and backward, on libmvec's four
 * lanes of exp with four partial sums, against the scalar twin (expf, one
 * chain: nomul_float_math_scalar): the sums' orders differ, so each value
 * within (8 + n)·2^-24 of its scale ((1 + |value|, plus Σ|dy| of the row
 * for log_softmax's backward) times 1 + |the row's logsumexp|). Rows of
 * 1..1001 values (tails of 1–3), some with −∞ (masked) entries, half with
 * their largest value last: a lane lost in the tail would move the row's
 * logsumexp by about 1. */
static void test_float_exp_rows_match_scalar_twin(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xE4};
    enum { ER = 3, MAXN = 1001 };
    static float x[ER * MAXN], dy[ER * MAXN], y[2][ER * MAXN], dx[2][2][ER * MAXN];
    float lse[2][ER], dlse[ER];
    static const int sizes[] = {1, 2, 3, 5, 7, 8, 61, 255, 1001};
    for (int rep = 0; rep < 18; rep++) {
        const int n = sizes[rep % 9];
        for (int i = 0; i < ER * n; i++) {
            x[i] = (float)((int)(tu_next(&r) % 40001) - 20000) / 1000.0f;
            dy[i] = (float)((int)(tu_next(&r) % 2001) - 1000) / 300.0f;
        }
        for (int i = 0; i < ER; i++) {
            float *xr = x + (long)i * n;
            dlse[i] = (float)((int)(tu_next(&r) % 2001) - 1000) / 300.0f;
            if (n > 3 && i == 1)
                xr[tu_next(&r) % (unsigned)(n - 1)] = -INFINITY;
            if (rep & 1) { /* the largest last */
                float mx = xr[0];
                for (int j = 1; j < n; j++)
                    mx = xr[j] > mx ? xr[j] : mx;
                xr[n - 1] = mx + 1.0f;
            }
        }
        for (int twin = 0; twin < 2; twin++) {
            nomul_float_math_scalar = twin;
            for (int i = 0; i < ER * n; i++)
                dx[twin][0][i] = dx[twin][1][i] = 0.25f;
            nomul_lse_forward_float(ER, n, x, y[twin], lse[twin]);
            nomul_log_softmax_backward_float(ER, n, y[twin], dy, dx[twin][0]);
            nomul_logsumexp_backward_float(ER, n, x, dlse, dx[twin][1]);
        }
        nomul_float_math_scalar = 0;
        const double ulps = (8.0 + n) * 0x1p-24;
        for (int i = 0; i < ER; i++) {
            double sabs = 0.0;
            for (int j = 0; j < n; j++)
                sabs += fabsf(dy[(long)i * n + j]);
            if (!(fabs((double)lse[0][i] - lse[1][i]) <= ulps * (1.0 + fabsf(lse[1][i]))))
                FAIL_SEED("float logsumexp, n %d, row %d: %a by libmvec, %a by expf", n, i,
                          (double)lse[0][i], (double)lse[1][i]);
            for (int j = 0; j < n; j++) {
                const long k = (long)i * n + j;
                const char *what[3] = {"log_softmax forward", "log_softmax backward",
                                       "logsumexp backward"};
                float v[3][2] = {{y[0][k], y[1][k]},
                                 {dx[0][0][k], dx[1][0][k]},
                                 {dx[0][1][k], dx[1][1][k]}};
                for (int o = 0; o < 3; o++) {
                    /* y = x − lse and exp(y) inherit lse's rounding, an ulp of
                     * |lse| (valgrind's CPU takes libmvec's SSE2 kernel: seed
                     * 1883661977186965 differed by 2^-19 at lse ≈ 17) */
                    double scale = (1.0 + fabsf(v[o][1]) + (o == 1 ? sabs : 0.0)) *
                                   (1.0 + fabsf(lse[1][i]));
                    int same = v[o][0] == v[o][1] || (isnan(v[o][0]) && isnan(v[o][1])) ||
                               fabs((double)v[o][0] - v[o][1]) <= ulps * scale;
                    if (!same)
                        FAIL_SEED("float %s, n %d: [%d][%d] (x = %a) = %a by libmvec, %a by expf",
                                  what[o], n, i, j, (double)x[k], (double)v[o][0],
                                  (double)v[o][1]);
                }
            }
        }
    }
}

/* Float GELU runs erf and exp four values at a time through glibc's libmvec;
 * the scalar loop over erff and expf is its twin. libmvec's lanes are within
 * 4 ulp where erff and expf are within 1–2, so the two agree to a few ulp of
 * erf near ±1 and of exp: |Δy| ≤ 2^-22 (|x| + |y|) and |Δdx| ≤ 2^-22 (|dy|
 * (1 + |x|) + |dx|) (over every fourth float, the largest difference seen
 * was 0.08 of 2^-20's bound forward and 0.11 backward), over 1..1001 values
 * (tails of 1–3), x from −9 to 9 with zeros and ±∞; a value's result must
 * not depend on its position. */
/* The float row maximum that log_softmax and logsumexp shift by (four lanes
 * of two vectors, then a tail): a wrong one changes nothing while exp's
 * terms stay in range, so each row here has one value of 200 (exp(200)
 * overflows) at every position, in rows of 1 to 40 values, the others in
 * [−4, 4]; a maximum that missed it makes the log-probabilities −∞ or NaN.
 * Against the scalar loop's log-probabilities within 2^-20. */
static void test_float_row_max_every_position(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x3A7};
    float x[40], y[40], y1[40], lse[1];
    nomul_op_cfg f = {NOMUL_OP_STANDARD, 0, 1.0f};
    for (int n = 1; n <= 40; n++)
        for (int pos = 0; pos < n; pos++) {
            for (int j = 0; j < n; j++)
                x[j] = (float)((int)(tu_u32(&r) % 8001) - 4000) / 1000.0f;
            x[pos] = 200.0f;
            nomul_log_softmax_forward(&f, 1, n, x, y);
            nomul_float_math_scalar = 1;
            nomul_log_softmax_forward(&f, 1, n, x, y1);
            nomul_float_math_scalar = 0;
            nomul_logsumexp_forward(&f, 1, n, x, lse);
            for (int j = 0; j < n; j++)
                if (!(fabsf(y[j] - y1[j]) <= 0x1p-20f * (1.0f + fabsf(y1[j])))) {
                    fprintf(stderr, "log_softmax of %d values, 200 at %d: y[%d] = %g, the "
                            "scalar loop's %g; NOMUL_TEST_SEED=%llu\n", n, pos, j, (double)y[j],
                            (double)y1[j], (unsigned long long)tu_seed());
                    fail();
                }
            assert_true(fabsf(lse[0] - 200.0f) < 1.0f);
        }
}

static void test_float_gelu_matches_scalar_twin(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xFB};
    enum { MAXN = 1001 };
    static float x[MAXN], dy[MAXN], out[2][2][MAXN];
    static const long sizes[] = {1, 2, 3, 4, 5, 255, 1001};
    for (int rep = 0; rep < 14; rep++) {
        long n = sizes[rep % 7];
        for (long i = 0; i < n; i++) {
            x[i] = (float)((int)(tu_next(&r) % 18001) - 9000) / 1000.0f;
            dy[i] = (float)((int)(tu_next(&r) % 2001) - 1000) / 300.0f;
        }
        x[0] = 0.0f;
        if (n > 4) {
            x[1] = INFINITY;
            x[2] = -INFINITY;
        }
        for (int twin = 0; twin < 2; twin++) {
            nomul_float_math_scalar = twin;
            for (long i = 0; i < n; i++)
                out[twin][1][i] = 0.25f;
            nomul_gelu_forward_float(n, x, out[twin][0]);
            nomul_gelu_backward_float(n, x, dy, out[twin][1]);
        }
        nomul_float_math_scalar = 0;
        for (long i = 0; i < n; i++) {
            float ax = fabsf(x[i]);
            for (int k = 0; k < 2; k++) {
                float f = out[0][k][i], t = out[1][k][i];
                double tol = k == 0 ? ldexp(isinf(ax) ? 0.0 : ax + fabsf(t), -22)
                                    : ldexp(fabsf(dy[i]) * (1.0 + ax) + fabsf(t), -22);
                int same = f == t || (isnan(f) && isnan(t)) || fabs((double)f - t) <= tol;
                if (!same)
                    FAIL_SEED("float gelu %s, n %ld: [%ld] (x = %a) = %a by libmvec, %a by "
                              "erff/expf (tolerance %g)",
                              k ? "backward" : "forward", n, i, (double)x[i], (double)f,
                              (double)t, tol);
            }
        }
        /* the same value at another position: the same result */
        if (n > 5) {
            float x2[5] = {x[5], x[5], x[5], x[5], x[5]}, y2[5];
            nomul_gelu_forward_float(5, x2, y2);
            for (int i = 0; i < 5; i++)
                if (tu_bits(y2[i]) != tu_bits(out[0][0][5]))
                    FAIL_SEED("float gelu of %a: %a at position %d, %a at position 5",
                              (double)x[5], (double)y2[i], i, (double)out[0][0][5]);
        }
    }
}

/* The PA row operations take a row's maximum in interleaved partial maxima
 * and cross-entropy's rows on all threads, its parts kept between the
 * passes of the exact backward, log_softmax's approximate backward in one
 * fused pass (AVX2, AVX-512: each instruction set in turn); the in-order
 * loops stay as their twin
 * (nomul_pa_chains_scalar). softmax, log_softmax and logsumexp forward and
 * backward, cross-entropy's loss, row losses and backward (exact and
 * approximate, with and without an offset, of a global batch's total too)
 * over rows of 1 to 2,860, with zeros of both signs (rows whose maximum is
 * a zero), −∞ masks, a NaN and ignored or out-of-range targets, must give
 * the same bits. */
static void test_pa_rows_match_scalar_twin(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xFA};
    /* up to 70 rows: short rows are taken up to 32 at a time (17-wide: 30),
     * so that several groups, and a partial one, are split among threads */
    enum { ROWS = 70, MAXN = 2860, OUTS = 13 };
    static float x[ROWS * MAXN], dy[ROWS * MAXN], out[2][OUTS][ROWS * MAXN];
    static float kept[ROWS * MAXN + 2 * ROWS];
    static const int widths[] = {1, 15, 16, 17, 64, 300, 2860};
    int tgt[ROWS];
    /* four threads, so that the fast path splits its rows (the twin runs on
     * one) even on a machine of fewer cores */
    const int threads = nomul_get_num_threads();
    nomul_set_num_threads(4);
    for (int rep = 0; rep < 28; rep++) {
        int n = widths[rep % 7], rows = 1 + (int)(tu_next(&r) % ROWS);
        /* the fast path's fused passes on each instruction set in turn */
        nomul_isa_set((nomul_isa)(rep % ((int)nomul_isa_max() + 1)));
        if (rep == 6 || rep == 27)
            rows = ROWS; /* 2,860 wide: nine groups of rows, split among the threads */
        int total = rows * n;
        nomul_op_cfg m = {NOMUL_OP_PAM, (rep / 7) % 2, (rep / 14) % 2 ? 1.0552f : 1.0f};
        float smoothing = rep % 3 ? 0.1f : 0.0f;
        fill(&r, x, total, -6, 6);
        fill(&r, dy, total, -3, 0);
        for (int i = 0; i < total; i += 9)
            x[i] = 0.0f;
        for (int i = 4; i < total; i += 13)
            x[i] = -0.0f;
        if (total > 100)
            x[100] = NAN;
        if (rows > 2) { /* a row whose maximum is a zero, −0 first */
            for (int j = 0; j < n; j++)
                x[n + j] = j % 3 == 0 ? -0.0f : j % 3 == 1 ? 0.0f : -(float)(j + 1);
            if (n > 3)
                x[2 * n + 3] = -INFINITY; /* a mask */
        }
        if (rows > 5 && rep % 4 == 1) /* a row masked whole: its group off the fused pass */
            for (int j = 0; j < n; j++)
                x[5 * n + j] = -INFINITY;
        for (int i = 0; i < rows; i++)
            tgt[i] = (int)(tu_next(&r) % (unsigned)n);
        if (rows > 3)
            tgt[3] = -100; /* ignored */
        for (int twin = 0; twin < 2; twin++) {
            nomul_pa_chains_scalar = twin;
            memset(out[twin], 0, sizeof out[twin]);
            float *sm = out[twin][0], *lsm = out[twin][1], *lse = out[twin][2];
            float *dsm = out[twin][3], *dlsm = out[twin][4], *dlse = out[twin][5];
            float *lp = out[twin][6], *dce = out[twin][7], *dceg = out[twin][8];
            float *dceb = out[twin][9], *misc = out[twin][10];
            nomul_softmax_forward(&m, rows, n, x, sm);
            nomul_softmax_backward(&m, rows, n, x, sm, dy, dsm);
            /* again with what the exact backward recomputes kept */
            long nk = nomul_softmax_keep_floats(&m, rows, n);
            assert_int_equal(nk, m.approx_bwd ? 0 : (long)rows * n + 2 * rows);
            for (long i = 0; i < nk; i++)
                kept[i] = NAN;
            nomul_softmax_forward_keep(&m, rows, n, x, out[twin][11], nk ? kept : NULL);
            nomul_softmax_backward_keep(&m, rows, n, x, out[twin][11], nk ? kept : NULL, dy,
                                        out[twin][12]);
            nomul_log_softmax_forward(&m, rows, n, x, lsm);
            nomul_log_softmax_backward(&m, rows, n, x, lsm, dy, dlsm);
            nomul_logsumexp_forward(&m, rows, n, x, lse);
            nomul_logsumexp_backward(&m, rows, n, x, dy, dlse);
            /* cross-entropy over finite log-probabilities: the rows' own */
            nomul_log_softmax_forward(&m, rows, n, x, lp);
            for (int i = 0; i < total; i++)
                if (!isfinite(lp[i]))
                    lp[i] = -50.0f;
            int count;
            misc[0] = nomul_cross_entropy_forward(&m, rows, n, lp, tgt, -100, smoothing, &count);
            misc[1] = (float)count;
            misc[2] = (float)nomul_cross_entropy_row_losses(&m, rows, n, lp, tgt, -100,
                                                            smoothing, misc + 8);
            nomul_cross_entropy_backward(&m, rows, n, lp, tgt, -100, smoothing, 0.75f, dce);
            nomul_ce_global glob = {3.5f, 2 * count + 1};
            nomul_cross_entropy_backward_global(&m, rows, n, lp, tgt, -100, smoothing, 0.5f,
                                                &glob, dceg);
            int keep = tgt[0];
            tgt[0] = n; /* out of range: NaN loss, -1 rows, skipped in the backward */
            misc[3] = nomul_cross_entropy_forward(&m, rows, n, lp, tgt, -100, smoothing, &count);
            misc[4] = (float)nomul_cross_entropy_row_losses(&m, rows, n, lp, tgt, -100,
                                                            smoothing, misc + 8 + ROWS);
            nomul_cross_entropy_backward(&m, rows, n, lp, tgt, -100, smoothing, 1.0f, dceb);
            tgt[0] = keep;
        }
        nomul_pa_chains_scalar = 0;
        static const char *what[] = {"softmax",          "log_softmax",          "logsumexp",
                                     "softmax backward", "log_softmax backward", "logsumexp backward",
                                     "cross-entropy's log-probabilities",
                                     "cross-entropy backward", "cross-entropy backward (global)",
                                     "cross-entropy backward (a bad target)",
                                     "cross-entropy loss, count and row losses",
                                     "softmax (kept)", "softmax backward (kept)"};
        for (int t = 0; t < 2; t++) /* kept and recomputed: the same bits */
            for (int k = 0; k < 2; k++)
                for (int i = 0; i < ROWS * MAXN; i++)
                    if (tu_bits(out[t][k ? 3 : 0][i]) != tu_bits(out[t][11 + k][i]))
                        FAIL_SEED("%s, %d rows of %d, approx %d, offset %g, %s: [%d] = %a, "
                                  "%a with the forward's values kept",
                                  what[k ? 3 : 0], rows, n, m.approx_bwd, (double)m.offset,
                                  t ? "in-order twin" : "fast path", i,
                                  (double)out[t][k ? 3 : 0][i], (double)out[t][11 + k][i]);
        for (int k = 0; k < OUTS; k++)
            for (int i = 0; i < ROWS * MAXN; i++)
                if (tu_bits(out[0][k][i]) != tu_bits(out[1][k][i]))
                    FAIL_SEED("%s, %d rows of %d, approx %d, offset %g, isa %s: [%d] = %a on "
                              "the fast path, %a by the in-order twin",
                              what[k], rows, n, m.approx_bwd, (double)m.offset,
                              nomul_isa_name(nomul_isa_active()), i, (double)out[0][k][i],
                              (double)out[1][k][i]);
    }
    nomul_isa_set(nomul_isa_max());
    nomul_set_num_threads(threads);
}

/* One case of the cross-entropy tests below, drawn for repetition rep:
 * widths around the row groups, float / PA approximate / PA exact / PA exact
 * with an offset, smoothing or not, dloss 1 or not, the PA twin's chains,
 * every row ignored, a stored (not added) gradient. */
typedef struct {
    int n, rows, kind, twin, none, store;
    nomul_op_cfg m;
    float smoothing, dloss;
} ce_case;

static ce_case ce_case_draw(tu_rng *r, int rep, int max_rows)
{
    static const int widths[] = {1, 7, 17, 64, 300, 2860};
    ce_case c;
    c.n = widths[rep % 6];
    c.rows = 1 + (int)(tu_next(r) % (unsigned)max_rows);
    c.kind = (rep / 6) % 4;
    c.m = (nomul_op_cfg){c.kind ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, c.kind == 1,
                         c.kind == 3 ? 1.0552f : 1.0f};
    c.smoothing = rep % 4 ? 0.1f : 0.0f;
    c.dloss = rep % 5 ? 1.0f : 0.625f;
    c.twin = c.kind && rep % 7 == 3;
    c.none = rep % 11 == 5;
    c.store = rep % 3 == 1; /* into a fresh gradient: its NaNs overwritten */
    return c;
}

/* The cross-entropy's gradient with respect to the logits in one pass
 * (nomul_cross_entropy_logits_backward) against its two passes, the
 * cross-entropy's backward into a zeroed dlogp, then log_softmax's backward
 * (the plain twin): bit for bit, added to a dlogits that already holds
 * values or stored into one of NaNs (against adding into zeros), with the
 * same audit counts, for float, PA approximate and exact
 * (with an offset), smoothing or not, ignored rows, the data-parallel form,
 * every row ignored, the PA twin's chains, on widths around the row groups
 * and rows split among threads. */
static void test_ce_logits_backward_matches_two_passes(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xCE1};
    enum { ROWS = 70, MAXN = 2860 };
    static float x[ROWS * MAXN], lp[ROWS * MAXN], d1[ROWS * MAXN], d2[ROWS * MAXN],
        dlp[ROWS * MAXN];
    int tgt[ROWS];
    const int threads = nomul_get_num_threads();
    nomul_set_num_threads(4);
    for (int rep = 0; rep < 48; rep++) {
        ce_case cc = ce_case_draw(&r, rep, ROWS);
        int n = cc.n, rows = cc.rows, kind = cc.kind, twin = cc.twin, none = cc.none;
        int store = cc.store, global = rep / 24;
        nomul_op_cfg m = cc.m;
        float smoothing = cc.smoothing, dloss = cc.dloss;
        int total = rows * n;
        fill(&r, x, total, -6, 6);
        nomul_log_softmax_forward(&m, rows, n, x, lp);
        for (int i = 0; i < rows; i++)
            tgt[i] = none || i % 5 == 3 ? -100 : (int)(tu_next(&r) % (unsigned)n);
        fill(&r, d1, total, -3, 0);
        memcpy(d2, d1, (size_t)total * sizeof *d2);
        if (store)
            for (int i = 0; i < total; i++)
                d1[i] = 0.0f, d2[i] = tu_float(0x7fc0beefu);
        nomul_ce_global glob = {0.0f, 0};
        if (global) { /* this process's rows as part of a larger batch */
            float rl[ROWS];
            int used = nomul_cross_entropy_row_losses(&m, rows, n, lp, tgt, -100, smoothing, rl);
            for (int i = 0; i < used; i++)
                glob.total += rl[i];
            glob.total += 3.25f;
            glob.used = used + 3;
        }
        nomul_pa_chains_scalar = twin;
        nomul_op_counts c1, c2;
        nomul_counts_reset();
        nomul_counts_enable(1);
        memset(dlp, 0, (size_t)total * sizeof *dlp);
        if (global)
            nomul_cross_entropy_backward_global(&m, rows, n, lp, tgt, -100, smoothing, dloss,
                                                &glob, dlp);
        else
            nomul_cross_entropy_backward(&m, rows, n, lp, tgt, -100, smoothing, dloss, dlp);
        nomul_log_softmax_backward(&m, rows, n, x, lp, dlp, d1);
        nomul_counts_get(&c1);
        nomul_counts_reset();
        nomul_cross_entropy_logits_backward(&m, rows, n, x, lp, NULL, tgt, -100, smoothing,
                                            dloss, global ? &glob : NULL, !store, d2);
        nomul_counts_get(&c2);
        nomul_counts_enable(0);
        nomul_pa_chains_scalar = 0;
        for (int i = 0; i < total; i++)
            if (memcmp(&d1[i], &d2[i], sizeof d1[i])) {
                fprintf(stderr, "ce logits backward (%s, %d x %d, smoothing %g, %s%s%s%s): "
                        "dlogits[%d] = %a, the two passes %a; NOMUL_TEST_SEED=%llu\n",
                        kind == 0 ? "float" : kind == 1 ? "pa approx" : "pa exact", rows, n,
                        (double)smoothing, global ? "global" : "local", twin ? ", twin" : "",
                        none ? ", all ignored" : "", store ? ", stored" : "", i,
                        (double)d2[i], (double)d1[i],
                        (unsigned long long)tu_seed());
                fail();
            }
        assert_memory_equal(&c1, &c2, sizeof c1);
    }
    nomul_set_num_threads(threads);
}

/* The cross-entropy's forward from the logits with what its backward reads
 * kept (nomul_cross_entropy_logits_forward, then the logits backward given
 * keep: training's form in PA) against the two passes with logp (the twin):
 * the same loss, count and logp bits, the same dlogits bits, added into
 * values or stored over NaNs; for float, PA approximate and exact (with an
 * offset), smoothing or not, ignored rows, every row ignored, a target out
 * of range, masked (−∞) logits and NaNs, the PA twin's chains, on widths
 * around the row groups and rows split among threads. The audit counts the forward's operations as the two
 * passes do, and the backward's as many or fewer (no paexp2 recomputed). */
static void test_ce_keep_matches_two_passes(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xCE2};
    enum { ROWS = 70, MAXN = 2860 };
    static float x[ROWS * MAXN], lp[ROWS * MAXN], lp2[ROWS * MAXN], d1[ROWS * MAXN],
        d2[ROWS * MAXN], keep[6 * ROWS + ROWS * MAXN];
    int tgt[ROWS];
    const int threads = nomul_get_num_threads();
    nomul_set_num_threads(4);
    for (int rep = 0; rep < 48; rep++) {
        ce_case cc = ce_case_draw(&r, rep, ROWS);
        int n = cc.n, rows = cc.rows, kind = cc.kind, twin = cc.twin, none = cc.none;
        int store = cc.store, bad = rep % 13 == 7, with_logp = kind == 0 || rep % 2;
        nomul_op_cfg m = cc.m;
        float smoothing = cc.smoothing, dloss = cc.dloss;
        int total = rows * n;
        long nk = nomul_cross_entropy_keep_floats(&m, rows, n);
        assert_true(nk == (kind ? 6L * rows + (kind == 1 ? (long)total : 0) : 0));
        fill(&r, x, total, -6, 6);
        const int masked = rep % 8 == 2 || rep % 8 == 5;
        if (masked) /* masked logits (a whole row where there are two), and NaNs */
            for (int i = 0; i < total; i += 3)
                x[i] = i % 7 == 0 ? NAN : -INFINITY;
        if (masked && rows > 1)
            for (int c = 0; c < n; c++)
                x[n + c] = -INFINITY;
        for (int i = 0; i < rows; i++)
            tgt[i] = none || i % 5 == 3 ? -100 : (int)(tu_next(&r) % (unsigned)n);
        if (bad)
            tgt[rows - 1] = n; /* out of range: NaN and a count of -1, both ways */
        fill(&r, d1, total, -3, 0);
        memcpy(d2, d1, (size_t)total * sizeof *d2);
        if (store)
            for (int i = 0; i < total; i++)
                d1[i] = 0.0f, d2[i] = tu_float(0x7fc0beefu);
        for (int i = 0; i < total; i++)
            lp2[i] = tu_float(0x7fc0cafeu); /* each row must be written */
        nomul_pa_chains_scalar = twin;
        nomul_op_counts c1, c2;
        nomul_counts_reset();
        nomul_counts_enable(1);
        int count1, count2;
        nomul_log_softmax_forward(&m, rows, n, x, lp);
        float l1 = nomul_cross_entropy_forward(&m, rows, n, lp, tgt, -100, smoothing, &count1);
        nomul_counts_get(&c1);
        nomul_counts_reset();
        float l2 = nomul_cross_entropy_logits_forward(&m, rows, n, x, tgt, -100, smoothing,
                                                      with_logp ? lp2 : NULL, nk ? keep : NULL,
                                                      &count2);
        nomul_counts_get(&c2);
        assert_memory_equal(&c1, &c2, sizeof c1);
        if (count1 != count2 || memcmp(&l1, &l2, sizeof l1) ||
            (with_logp && memcmp(lp, lp2, (size_t)total * sizeof *lp)))
            fail_msg("ce keep forward (kind %d, %d x %d, rep %d): loss %a (%d rows), the two "
                     "passes %a (%d), logp %s; NOMUL_TEST_SEED=%llu", kind, rows, n, rep,
                     (double)l2, count2, (double)l1, count1,
                     with_logp && memcmp(lp, lp2, (size_t)total * sizeof *lp) ? "differs"
                                                                              : "the same",
                     (unsigned long long)tu_seed());
        if (bad) { /* no backward for a rejected target */
            assert_int_equal(count2, -1);
            nomul_counts_enable(0);
            nomul_pa_chains_scalar = 0;
            continue;
        }
        nomul_counts_reset();
        nomul_cross_entropy_logits_backward(&m, rows, n, x, lp, NULL, tgt, -100, smoothing,
                                            dloss, NULL, !store, d1);
        nomul_counts_get(&c1);
        nomul_counts_reset();
        nomul_cross_entropy_logits_backward(&m, rows, n, x, with_logp ? lp2 : NULL,
                                            nk ? keep : NULL, tgt, -100, smoothing, dloss, NULL,
                                            !store, d2);
        nomul_counts_get(&c2);
        nomul_counts_enable(0);
        nomul_pa_chains_scalar = 0;
        for (int i = 0; i < total; i++)
            if (memcmp(&d1[i], &d2[i], sizeof d1[i]))
                fail_msg("ce keep backward (kind %d, %d x %d, rep %d, smoothing %g%s%s%s): "
                         "dlogits[%d] = %a, the two passes %a; NOMUL_TEST_SEED=%llu", kind,
                         rows, n, rep, (double)smoothing, twin ? ", twin" : "",
                         none ? ", all ignored" : "", store ? ", stored" : "", i,
                         (double)d2[i], (double)d1[i], (unsigned long long)tu_seed());
        for (int k = 0; k < NOMUL_COUNT_CLASSES; k++)
            assert_true(c2.n[k] <= c1.n[k]);
        if (kind)
            assert_true(c2.n[NOMUL_COUNT_PAEXP2] == 0 && c1.n[NOMUL_COUNT_PAEXP2] == (unsigned long long)total);
    }
    nomul_set_num_threads(threads);
}

/* The audit counts each operation of a composite once: the PA softmax
 * forward of R×N values is N·R PAMs (by log₂e), paexp2s and PADs, and 2·N·R
 * float additions (the shift and the sum), whatever array kernels run them. */
static void test_pa_softmax_counted_once(void **state)
{
    (void)state;
    enum { CR = 5, CN = 37 };
    static float x[CR * CN], y[CR * CN], dy[CR * CN], dx[CR * CN];
    for (int i = 0; i < CR * CN; i++) {
        x[i] = (float)(i % 11) - 5.0f;
        dy[i] = 0.25f;
    }
    nomul_op_cfg m = {NOMUL_OP_PAM, 0, 1.0f};
    nomul_op_counts c;
    nomul_counts_reset();
    nomul_counts_enable(1);
    nomul_softmax_forward(&m, CR, CN, x, y);
    nomul_counts_get(&c);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], CR * CN);
    assert_int_equal(c.n[NOMUL_COUNT_PAEXP2], CR * CN);
    assert_int_equal(c.n[NOMUL_COUNT_PAD], CR * CN);
    assert_int_equal(c.n[NOMUL_COUNT_FADD], 2 * CR * CN);
    /* log_softmax's exact backward: PAM, paexp2 and 4 additions per value,
     * a palog2 per row, 2 shifts per value and per row */
    nomul_counts_reset();
    nomul_log_softmax_backward(&m, CR, CN, x, y, dy, dx);
    nomul_counts_get(&c);
    nomul_counts_enable(0);
    assert_int_equal(c.n[NOMUL_COUNT_PAM], CR * CN);
    assert_int_equal(c.n[NOMUL_COUNT_PAEXP2], CR * CN);
    assert_int_equal(c.n[NOMUL_COUNT_PALOG2], CR);
    assert_int_equal(c.n[NOMUL_COUNT_SHIFT], 2 * CR * CN + 2 * CR);
    assert_int_equal(c.n[NOMUL_COUNT_FADD], 4 * CR * CN);
}

/* The exact PA backward of log_softmax and logsumexp, element by element as
 * its definition reads with the scalar functions (the library runs the
 * elementwise steps on the array kernels): bit for bit, on a short row and a
 * vocabulary-sized one, with and without PAM's offset, with masked inputs. */
static float pm_off(float a, float b, float off)
{
    return off != 1.0f ? nomul_pa_mul_off(a, b, off) : nomul_pa_mul(a, b);
}

static void test_pa_lse_backward_matches_definition(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xF7};
    enum { NL = 2861 };
    static float x[NL], y[NL], dy[NL], dx[NL], dl[NL], u[NL];
    for (int v = 0; v < 4; v++) {
        int n = v & 1 ? NL : N;
        float off = v & 2 ? 1.0552f : 1.0f;
        nomul_op_cfg ex = {NOMUL_OP_PAM, 0, off};
        fill(&r, x, n, -3, 4);
        fill(&r, dy, n, -4, 0);
        x[1] = -INFINITY;
        dy[1] = 0.0f;
        /* S = Σ paexp2(PAM(x, log2e) − s) */
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j < n; j++) {
            u[j] = pm_off(x[j], L2E, off);
            mx = u[j] > mx ? u[j] : mx;
        }
        float s = floorf(mx);
        for (int j = 0; j < n; j++) {
            u[j] -= s;
            sum += nomul_pa_exp2(u[j]);
        }
        float w = s + nomul_pa_log2(sum), gsum = 0.0f;
        for (int j = 0; j < n; j++)
            gsum += dy[j];
        for (int op = 0; op < 2; op++) { /* log_softmax, logsumexp (dlse = gsum) */
            float dw, unused, da, db;
            nomul_pa_div_grad(w, L2E, op == 0 ? -gsum : gsum, &dw, &unused);
            float dsum = nomul_pa_log2_grad(sum, dw);
            memset(dx, 0, sizeof dx);
            if (op == 0) {
                nomul_log_softmax_forward(&ex, 1, n, x, y);
                nomul_log_softmax_backward(&ex, 1, n, x, y, dy, dx);
            } else {
                nomul_logsumexp_backward(&ex, 1, n, x, &gsum, dx);
            }
            for (int j = 0; j < n; j++) {
                float g = nomul_pa_exp2_grad(u[j], dsum);
                if (off != 1.0f)
                    nomul_pa_mul_off_grad(x[j], L2E, off, g, &da, &db);
                else
                    nomul_pa_mul_grad(x[j], L2E, g, &da, &db);
                dl[j] = op == 0 ? 0.0f + (dy[j] + da) : 0.0f + da;
                if (tu_bits(dx[j]) != tu_bits(dl[j]))
                    FAIL_SEED("%s backward, n %d, offset %g, element %d: %08x, want %08x",
                              op == 0 ? "log_softmax" : "logsumexp", n, (double)off, j,
                              tu_bits(dx[j]), tu_bits(dl[j]));
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_forms),
        cmocka_unit_test(test_pa_forms_match_recipes),
        cmocka_unit_test(test_pa_exact_backward),
        cmocka_unit_test(test_pa_lse_backward_matches_definition),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_ce_logits_backward_matches_two_passes),
        cmocka_unit_test(test_ce_keep_matches_two_passes),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_batch_norm),
        cmocka_unit_test(test_pa_batch_norm_evaluation_matches_recipe),
        cmocka_unit_test(test_float_batch_norm_in_place_matches_gathered_row),
        cmocka_unit_test(test_ln_output_matches_operations),
        cmocka_unit_test(test_ln_backward1_matches_operations),
        cmocka_unit_test(test_ln_backward2_matches_operations),
        cmocka_unit_test(test_ln_approx_pass_matches_operations),
        cmocka_unit_test(test_bn_approx_pass_matches_operations),
        cmocka_unit_test(test_offset),
        cmocka_unit_test(test_pa_norm_rows_match_scalar_chain),
        cmocka_unit_test(test_pa_gelu_matches_scalar_chain),
        cmocka_unit_test(test_pa_rows_match_scalar_twin),
        cmocka_unit_test(test_pa_softmax_counted_once),
        cmocka_unit_test(test_float_gelu_matches_scalar_twin),
        cmocka_unit_test(test_float_exp_rows_match_scalar_twin),
        cmocka_unit_test(test_float_row_max_every_position),
    };
    printf("test_functional: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("functional", tests, NULL, NULL);
}
