/*
 * functional_float.c — the standard float forms of the composite operations
 * (nomul/functional.h): softmax, log_softmax and logsumexp, layer norm and
 * batch norm's rows, label-smoothed cross-entropy and GELU, forward and
 * backward (functional_internal.h declares them; functional.c dispatches).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <emmintrin.h>

#include "../core/internal.h"
#include "nomul/isa.h"
#include "functional_internal.h"

/* erf and exp four floats at a time: glibc's libmvec (2.35 and later), the
 * SSE form of the x86-64 vector ABI (an IFUNC picks the kernel for the
 * CPU), each lane within 4 ulp as erff and expf are within 1–2. A lane's
 * result does not depend on its neighbours, so a value's GELU or exp is the
 * same wherever it sits in the array (a tail is padded to a whole vector).
 * The scalar loops over erff and expf are the twins
 * (nomul_float_math_scalar). */
__m128 _ZGVbN4v_erff(__m128 x);
__m128 _ZGVbN4v_expf(__m128 x);

/* v = c ≤ 4 values from p, the rest `pad` (element loops: a tail's few
 * floats, where a memcpy call of a variable size costs more than the exp) */
static __m128 load4_pad(const float *p, long c, float pad)
{
    float t[4] = {pad, pad, pad, pad};
    for (long k = 0; k < c; k++)
        t[k] = p[k];
    return _mm_loadu_ps(t);
}

static __m128 load4(const float *p, long c) { return load4_pad(p, c, 0.0f); }

static void store4(float *p, long c, __m128 v)
{
    float t[4];
    _mm_storeu_ps(t, v);
    for (long k = 0; k < c; k++)
        p[k] = t[k];
}

int nomul_float_math_scalar;

/* Σ_j e[j] with e[j] = expf(x[j] − s) (stored when e is not NULL): four
 * lanes of libmvec's exp, summed in four partial sums (lane k takes j ≡ k
 * mod 4; the tail's lanes padded with exp(−∞) = +0) added as (s0 + s1) +
 * (s2 + s3), an order that depends on n alone; the scalar twin sums in one
 * chain. */
static float exp_sum(int n, const float *x, float s, float *e)
{
    if (nomul_float_math_scalar) {
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            float v = expf(x[j] - s);
            sum += v;
            if (e)
                e[j] = v;
        }
        return sum;
    }
    const __m128 vs = _mm_set1_ps(s);
    __m128 acc = _mm_setzero_ps();
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        __m128 v = _ZGVbN4v_expf(_mm_sub_ps(_mm_loadu_ps(x + j), vs));
        acc = _mm_add_ps(acc, v);
        if (e)
            _mm_storeu_ps(e + j, v);
    }
    if (j < n) {
        __m128 v = _ZGVbN4v_expf(_mm_sub_ps(load4_pad(x + j, n - j, -INFINITY), vs));
        acc = _mm_add_ps(acc, v);
        if (e)
            store4(e + j, n - j, v);
    }
    float a[4];
    _mm_storeu_ps(a, acc);
    return (a[0] + a[1]) + (a[2] + a[3]);
}

/* ---- softmax, log_softmax, logsumexp --------------------------------------------- */

static void softmax_row(int n, const float *x, float *y)
{
    float mx = -INFINITY, sum = 0.0f;
    for (int j = 0; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    if (!isfinite(mx)) { /* an all-masked row */
        for (int j = 0; j < n; j++)
            y[j] = 0.0f;
        return;
    }
    /* scalar expf: softmax's rows are attention's, a few dozen keys, where
     * libmvec's four lanes gain nothing over expf (measured: transformer_mini's
     * softmax 1 ms a step slower through exp_sum) */
    for (int j = 0; j < n; j++) {
        y[j] = expf(x[j] - mx);
        sum += y[j];
    }
    for (int j = 0; j < n; j++)
        y[j] /= sum;
}

void nomul_softmax_forward_float(int rows, int n, const float *x, float *y)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FDIV, t0); NOMUL_COUNT(FADD, 2 * t0);
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads(t0))
    for (int i = 0; i < rows; i++)
        softmax_row(n, x + (long)i * n, y + (long)i * n);
}

void nomul_softmax_backward_float(int rows, int n, const float *y, const float *dy, float *dx)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(FMUL, 2 * t0); NOMUL_COUNT(FADD, 2 * t0);
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads(t0))
    for (int i = 0; i < rows; i++) {
        const float *yr = y + (long)i * n, *gr = dy + (long)i * n;
        float *dr = dx + (long)i * n, dot = 0.0f;
        for (int j = 0; j < n; j++) /* dx = y (dy − Σ dy·y) */
            dot += gr[j] * yr[j];
        for (int j = 0; j < n; j++)
            dr[j] += yr[j] * (gr[j] - dot);
    }
}

/* A row's largest value (NaNs skipped, −∞ for none): max(x, m) lane by lane,
 * x > m ? x : m as the scalar loop (the twin's) takes it, in four lanes of
 * two vectors (one scalar chain waited on each compare: 7 ms of
 * transformer_mini's float step at 2,860 words); the lanes' maxima, and so
 * which of +0 and −0 a tie keeps, in a fixed order. */
static float row_max(int n, const float *x)
{
    float mx = -INFINITY;
    if (nomul_float_math_scalar) {
        for (int j = 0; j < n; j++)
            mx = x[j] > mx ? x[j] : mx;
        return mx;
    }
    __m128 a = _mm_set1_ps(-INFINITY), b = a;
    int j = 0;
    for (; j + 8 <= n; j += 8) { /* MAXPS(v, m): v > m ? v : m, per lane */
        a = _mm_max_ps(_mm_loadu_ps(x + j), a);
        b = _mm_max_ps(_mm_loadu_ps(x + j + 4), b);
    }
    a = _mm_max_ps(b, a);
    float l[4];
    _mm_storeu_ps(l, a);
    for (int k = 0; k < 4; k++)
        mx = l[k] > mx ? l[k] : mx;
    for (; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    return mx;
}

void nomul_lse_forward_float(int rows, int n, const float *x, float *y, float *lse)
{
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads((long)rows * n))
    for (int i = 0; i < rows; i++) {
        const float *xr = x + (long)i * n;
        float mx = row_max(n, xr), sum = exp_sum(n, xr, mx, NULL);
        float l = mx + logf(sum);
        if (lse)
            lse[i] = l;
        if (y)
            for (int j = 0; j < n; j++)
                y[(long)i * n + j] = xr[j] - l;
    }
}

/* One row of log_softmax's backward: dr += gr − exp(yr) · Σgr (store: dr =
 * +0 + the same, the bits of adding into zeros) */
static void lsm_backward_row(int n, const float *yr, const float *gr, float *dr, int store)
{
    float gsum = lane_sum(n, gr); /* as layer norm's sums */
    if (nomul_float_math_scalar) {
        for (int j = 0; j < n; j++) /* dx = dy − softmax(x) Σdy */
            dr[j] = (store ? 0.0f : dr[j]) + (gr[j] - expf(yr[j]) * gsum);
        return;
    }
    const __m128 vg = _mm_set1_ps(gsum);
    int j = 0;
    for (; j + 4 <= n; j += 4) { /* the same, four at a time */
        __m128 e = _ZGVbN4v_expf(_mm_loadu_ps(yr + j));
        __m128 d = _mm_sub_ps(_mm_loadu_ps(gr + j), _mm_mul_ps(e, vg));
        _mm_storeu_ps(dr + j, _mm_add_ps(store ? _mm_setzero_ps() : _mm_loadu_ps(dr + j), d));
    }
    if (j < n) {
        __m128 e = _ZGVbN4v_expf(load4(yr + j, n - j));
        __m128 d = _mm_sub_ps(load4(gr + j, n - j), _mm_mul_ps(e, vg));
        store4(dr + j, n - j,
               _mm_add_ps(store ? _mm_setzero_ps() : load4(dr + j, n - j), d));
    }
}

void nomul_log_softmax_backward_float(int rows, int n, const float *y, const float *dy,
                                      float *dx)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FMUL, t0); NOMUL_COUNT(FADD, 3 * t0);
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads(t0))
    for (int i = 0; i < rows; i++)
        lsm_backward_row(n, y + (long)i * n, dy + (long)i * n, dx + (long)i * n, 0);
}

void nomul_logsumexp_backward_float(int rows, int n, const float *x, const float *dlse, float *dx)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FDIV, t0); NOMUL_COUNT(FMUL, t0);
    NOMUL_COUNT(FADD, 3 * t0);
#pragma omp parallel num_threads(nomul_fn_threads(t0))
    {
        float *e = nomul_scratch(NOMUL_SCRATCH_ROW, (size_t)n * 2);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!e)
                continue;
            const float *xr = x + (long)i * n;
            float *dr = dx + (long)i * n, g = dlse[i], mx = row_max(n, xr);
            float sum = exp_sum(n, xr, mx, e); /* softmax(x) · dlse */
            for (int j = 0; j < n; j++)
                dr[j] += e[j] / sum * g;
        }
    }
}

/* ---- layer norm and batch norm rows ------------------------------------------------- */

/* (lane sums: functional_internal.h) */

/* Σ (x[j] − mu)² */
static float lane_sq_dev(long n, const float *x, float mu)
{
    float acc[LANES] = {0};
    lanes_sq_dev(acc, n, x, mu);
    return lanes_total(acc);
}

void nomul_ln_row_forward_float(int n, const float *xr, const float *gamma, int gs,
                                const float *beta, int bs, float eps, float *yr, float *mean,
                                float *rstd, float *sq)
{
    NOMUL_COUNT(FMUL, 3L * n); NOMUL_COUNT(FDIV, 3); NOMUL_COUNT(FTRANS, 1); /* the audit */
    NOMUL_COUNT(FADD, 4L * n + 1);
    float nf = (float)n, mu = lane_sum(n, xr) / nf, q = lane_sq_dev(n, xr, mu);
    float rs = 1.0f / sqrtf(q / nf + eps);
    for (int j = 0; j < n; j++)
        yr[j] = (xr[j] - mu) * rs * gamma[j * gs] + beta[j * bs];
    *mean = mu;
    *rstd = rs;
    if (sq)
        *sq = q;
}

/* llm.c's layernorm_backward (its two sums in lanes) */
void nomul_ln_row_backward_float(int n, const float *xr, const float *gamma, int gs, float mu,
                                 float r, const float *gr, float *dr, float *dgamma,
                                 float *dbeta, int bs)
{
    NOMUL_COUNT(FMUL, 9L * n); NOMUL_COUNT(FDIV, 2); NOMUL_COUNT(FADD, 7L * n); /* the audit */
    float nf = (float)n, a1[LANES] = {0}, a2[LANES] = {0}; /* Σ dnorm, Σ dnorm·xhat */
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) {
            float xhat = (xr[j + l] - mu) * r, dnorm = gamma[(j + l) * gs] * gr[j + l];
            a1[l] += dnorm;
            a2[l] += dnorm * xhat;
        }
    for (int l = 0; j < n; j++, l++) {
        float xhat = (xr[j] - mu) * r, dnorm = gamma[j * gs] * gr[j];
        a1[l] += dnorm;
        a2[l] += dnorm * xhat;
    }
    float m1 = lanes_total(a1) / nf, m2 = lanes_total(a2) / nf;
    if (gs == 0 && bs == 0) {
        /* batch norm: one γ and β for the row, whose gradients are sums
         * over it (in lanes: added in place they would be a chain through
         * memory, a store and a load per term) */
        float g = gamma[0], sb[LANES] = {0}, sg[LANES] = {0};
        for (j = 0; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float xhat = (xr[j + l] - mu) * r, gj = gr[j + l];
                sb[l] += gj;
                sg[l] += xhat * gj;
                dr[j + l] += (g * gj - m1 - xhat * m2) * r;
            }
        for (int l = 0; j < n; j++, l++) {
            float xhat = (xr[j] - mu) * r;
            sb[l] += gr[j];
            sg[l] += xhat * gr[j];
            dr[j] += (g * gr[j] - m1 - xhat * m2) * r;
        }
        dbeta[0] += lanes_total(sb);
        dgamma[0] += lanes_total(sg);
        return;
    }
    for (j = 0; j < n; j++) {
        float xhat = (xr[j] - mu) * r, dnorm = gamma[j * gs] * gr[j];
        dbeta[j * bs] += gr[j];
        dgamma[j * gs] += xhat * gr[j];
        dr[j] += (dnorm - m1 - xhat * m2) * r;
    }
}

void nomul_bn_channel_forward_float(long len, const float *row, const float *gamma,
                                    const float *beta, float eps, float momentum, int training,
                                    float *running_mean, float *running_var, float *out,
                                    float *mean, float *rstd)
{
    if (training) {
        float q;
        nomul_ln_row_forward_float((int)len, row, gamma, 0, beta, 0, eps, out, mean, rstd, &q);
        bn_running_float(len, *mean, q, momentum, running_mean, running_var);
        return;
    }
    /* evaluation: the square root once (the same value for every element) */
    NOMUL_COUNT(FMUL, len); NOMUL_COUNT(FDIV, len); NOMUL_COUNT(FTRANS, 1);
    NOMUL_COUNT(FADD, 2 * len + 1);
    const float m = *running_mean, sd = sqrtf(*running_var + eps), g = gamma[0], b = beta[0];
    for (long j = 0; j < len; j++)
        out[j] = (row[j] - m) / sd * g + b;
}

/* Batch norm's float passes over planes (bn_float.inc), compiled for each
 * instruction set (the same operations, elementwise or in the fixed lanes,
 * without contraction into fused multiply-adds: the same bits on each) and
 * chosen by nomul_isa_active(). */
#define BNF_PASSES nomul_bnf_passes_base
#include "bn_float.inc"
#undef BNF_PASSES

static const nomul_bnf_passes *bnf_active(void)
{
    switch (nomul_isa_active()) {
    case NOMUL_ISA_AVX512: return &nomul_bnf_passes_avx512;
    case NOMUL_ISA_AVX2: return &nomul_bnf_passes_avx2;
    default: return &nomul_bnf_passes_base;
    }
}

int nomul_bn_planes_forward_float(int nb, int C, int S, int c, const float *x, const float *xrow,
                                  const float *gamma, const float *beta, float eps,
                                  float momentum, int training, float *running_mean,
                                  float *running_var, float *y, float *mean, float *rstd,
                                  int relu)
{
    return bnf_active()->planes_forward(nb, C, S, c, x, xrow, gamma, beta, eps, momentum,
                                        training, running_mean, running_var, y, mean, rstd, relu);
}

int nomul_bn_planes_backward_float(int nb, int C, int S, int c, const float *x,
                                   const float *xrow, const float *gamma,
                                   const float *relu_beta, float mu, float r, const float *dy,
                                   const float *dyrow, int store, float *dx, float *dgamma,
                                   float *dbeta)
{
    return bnf_active()->planes_backward(nb, C, S, c, x, xrow, gamma, relu_beta, mu, r, dy,
                                         dyrow, store, dx, dgamma, dbeta);
}

/* ---- label-smoothed cross-entropy -------------------------------------------------- */

/* the loss of one row: (1 − ε)·(−logp[t]) + ε·(−Σ logp) / n */
static float ce_row(int n, const float *lp, int t, float eps)
{
    float smooth = 0.0f;
    for (int c = 0; c < n; c++)
        smooth -= lp[c];
    float nll = -lp[t], msm = smooth / (float)n;
    return (1.0f - eps) * nll + eps * msm;
}

/* Each used row's loss (its targets in range), on all threads, in a scratch
 * buffer indexed by row; NULL when out of scratch (the callers then take the
 * rows one at a time: the same values) */
static const float *ce_losses(int rows, int n, const float *logp, const int *target,
                              int ignore_index, float smoothing)
{
    float *loss = nomul_scratch(NOMUL_SCRATCH_PART, (size_t)rows);
    if (loss) {
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads((long)rows * n))
        for (int i = 0; i < rows; i++)
            if (nomul_ce_row_used(target[i], ignore_index, n))
                loss[i] = ce_row(n, logp + (long)i * n, target[i], smoothing);
    }
    return loss;
}

float nomul_cross_entropy_forward_float(int rows, int n, const float *logp, const int *target,
                                        int ignore_index, float smoothing, int used)
{
    long t0 = (long)rows * n; /* the audit (an upper bound: ignored rows too) */
    NOMUL_COUNT(FMUL, 2L * rows); NOMUL_COUNT(FDIV, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    if (used <= 0)
        return used < 0 ? NAN : 0.0f;
    /* the rows' losses on all threads, their total in row order (the same
     * bits as one loop) */
    const float *loss = ce_losses(rows, n, logp, target, ignore_index, smoothing);
    float total = 0.0f;
    for (int i = 0; i < rows; i++)
        if (nomul_ce_row_used(target[i], ignore_index, n))
            total += loss ? loss[i] : ce_row(n, logp + (long)i * n, target[i], smoothing);
    return total / (float)used;
}

int nomul_cross_entropy_rows_float(int rows, int n, const float *logp, const int *target,
                                   int ignore_index, float smoothing, float *loss)
{
    NOMUL_COUNT(FMUL, 2L * rows); NOMUL_COUNT(FDIV, rows); NOMUL_COUNT(FADD, (long)rows * n);
    for (int i = 0; i < rows; i++)
        if (target[i] != ignore_index && (target[i] < 0 || target[i] >= n))
            return -1;
    const float *row_loss = ce_losses(rows, n, logp, target, ignore_index, smoothing);
    int used = 0;
    for (int i = 0; i < rows; i++)
        if (nomul_ce_row_used(target[i], ignore_index, n))
            loss[used++] = row_loss ? row_loss[i]
                                    : ce_row(n, logp + (long)i * n, target[i], smoothing);
    return used;
}

/* One row's gradient (target t) added into dr, g = ∂loss/∂(Σ row losses) */
static void ce_row_grad(int n, int t, float smoothing, float g, float *dr)
{
    float dnll = (1.0f - smoothing) * g, dsmooth = smoothing * g / (float)n;
    /* nll = −logp[t], smooth = −Σ logp */
    dr[t] -= dnll;
    for (int c = 0; c < n; c++)
        dr[c] -= dsmooth;
}

void nomul_cross_entropy_backward_float(int rows, int n, const int *target, int ignore_index,
                                        float smoothing, float dloss, int used, float *dlogp)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(FMUL, 3L * rows); NOMUL_COUNT(FDIV, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    if (used == 0)
        return;
    float g = dloss / (float)used;
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads(t0))
    for (int i = 0; i < rows; i++) {
        int t = target[i];
        if (nomul_ce_row_used(t, ignore_index, n))
            ce_row_grad(n, t, smoothing, g, dlogp + (long)i * n);
    }
}

void nomul_ce_lsm_backward_float(int rows, int n, const float *logp, const int *target,
                                 int ignore_index, float smoothing, float dloss, int used,
                                 int store, float *dx)
{
    long t0 = (long)rows * n; /* the audit: the two passes' */
    NOMUL_COUNT(FMUL, 3L * rows); NOMUL_COUNT(FDIV, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FMUL, t0); NOMUL_COUNT(FADD, 3 * t0);
    float g = used > 0 ? dloss / (float)used : 0.0f;
    int failed = 0;
#pragma omp parallel num_threads(nomul_fn_threads(t0))
    {
        float *dr = nomul_scratch(NOMUL_SCRATCH_ROW, (size_t)n);
        if (!dr) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!dr)
                continue;
            /* the row's dlogp, as the cross-entropy pass leaves it in a
             * zeroed gradient, then log_softmax's backward of it */
            memset(dr, 0, (size_t)n * sizeof *dr);
            int t = target[i];
            if (used > 0 && nomul_ce_row_used(t, ignore_index, n))
                ce_row_grad(n, t, smoothing, g, dr);
            lsm_backward_row(n, logp + (long)i * n, dr, dx + (long)i * n, store);
        }
    }
    if (failed)
        nomul_report(NOMUL_ENOMEM, "cross-entropy backward: out of memory for a row of %d", n);
}

/* ---- GELU: x Φ(x) ------------------------------------------------------------------ */

/* (libmvec's erf and exp, and load4 / store4: the top of this file) */

void nomul_gelu_forward_float(long n, const float *x, float *y)
{
    NOMUL_COUNT(FTRANS, n); NOMUL_COUNT(FMUL, 3 * n); NOMUL_COUNT(FADD, n); /* the audit */
    if (nomul_float_math_scalar) {
        for (long i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        return;
    }
    const long blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads(n))
    for (long b = 0; b < blocks; b++) {
        long i = 4 * b, c = n - i < 4 ? n - i : 4;
        __m128 v = load4(x + i, c);
        __m128 e = _ZGVbN4v_erff(_mm_mul_ps(v, _mm_set1_ps(0.70710678118654752f)));
        __m128 r = _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(0.5f), v), _mm_add_ps(_mm_set1_ps(1.0f), e));
        store4(y + i, c, r);
    }
}

void nomul_gelu_backward_float(long n, const float *x, const float *dy, float *dx)
{
    NOMUL_COUNT(FTRANS, 2 * n); NOMUL_COUNT(FMUL, 8 * n); NOMUL_COUNT(FADD, 3 * n); /* the audit */
    if (nomul_float_math_scalar) {
        for (long i = 0; i < n; i++) { /* Φ(x) + x φ(x) */
            float xi = x[i], g = dy[i];
            float cdf = 0.5f * (1.0f + erff(xi * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * xi * xi);
            dx[i] += g * (cdf + xi * pdf);
        }
        return;
    }
    const long blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads(n))
    for (long b = 0; b < blocks; b++) {
        long i = 4 * b, c = n - i < 4 ? n - i : 4;
        __m128 v = load4(x + i, c), g = load4(dy + i, c), d = load4(dx + i, c);
        __m128 e = _ZGVbN4v_erff(_mm_mul_ps(v, _mm_set1_ps(0.70710678118654752f)));
        __m128 cdf = _mm_mul_ps(_mm_set1_ps(0.5f), _mm_add_ps(_mm_set1_ps(1.0f), e));
        __m128 q = _ZGVbN4v_expf(_mm_mul_ps(_mm_mul_ps(_mm_set1_ps(-0.5f), v), v));
        __m128 pdf = _mm_mul_ps(_mm_set1_ps(0.39894228040143268f), q);
        d = _mm_add_ps(d, _mm_mul_ps(g, _mm_add_ps(cdf, _mm_mul_ps(v, pdf))));
        store4(dx + i, c, d);
    }
}
