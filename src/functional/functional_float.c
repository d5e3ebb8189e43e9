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
#include "functional_internal.h"

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

void nomul_lse_forward_float(int rows, int n, const float *x, float *y, float *lse)
{
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads((long)rows * n))
    for (int i = 0; i < rows; i++) {
        const float *xr = x + (long)i * n;
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j < n; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        for (int j = 0; j < n; j++)
            sum += expf(xr[j] - mx);
        float l = mx + logf(sum);
        if (lse)
            lse[i] = l;
        if (y)
            for (int j = 0; j < n; j++)
                y[(long)i * n + j] = xr[j] - l;
    }
}

void nomul_log_softmax_backward_float(int rows, int n, const float *y, const float *dy,
                                      float *dx)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FMUL, t0); NOMUL_COUNT(FADD, 3 * t0);
#pragma omp parallel for schedule(static) num_threads(nomul_fn_threads(t0))
    for (int i = 0; i < rows; i++) {
        const float *yr = y + (long)i * n, *gr = dy + (long)i * n;
        float *dr = dx + (long)i * n, gsum = 0.0f;
        for (int j = 0; j < n; j++)
            gsum += gr[j];
        for (int j = 0; j < n; j++) /* dx = dy − softmax(x) Σdy */
            dr[j] += gr[j] - expf(yr[j]) * gsum;
    }
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
            float *dr = dx + (long)i * n, g = dlse[i], mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < n; j++) /* softmax(x) · dlse */
                mx = xr[j] > mx ? xr[j] : mx;
            for (int j = 0; j < n; j++)
                sum += (e[j] = expf(xr[j] - mx));
            for (int j = 0; j < n; j++)
                dr[j] += e[j] / sum * g;
        }
    }
}

/* ---- layer norm and batch norm rows ------------------------------------------------- */

/* (lane sums: functional_internal.h) */

/* acc's lanes += (x[j] − mu)², as lanes_accumulate */
static void lanes_sq_dev(float *acc, long n, const float *x, float mu)
{
    long j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += (x[j + l] - mu) * (x[j + l] - mu);
    for (int l = 0; j < n; j++, l++)
        acc[l] += (x[j] - mu) * (x[j] - mu);
}

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

/* the running statistics (unbiased variance, as PyTorch keeps) from the
 * forward's μ and Σ (x − μ)² */
static void bn_running_float(long len, float mu, float q, float momentum, float *running_mean,
                             float *running_var)
{
    NOMUL_COUNT(FMUL, 4); NOMUL_COUNT(FDIV, 1); NOMUL_COUNT(FADD, 4);
    float var = q / (float)(len > 1 ? len - 1 : 1);
    *running_mean = (1.0f - momentum) * *running_mean + momentum * mu;
    *running_var = (1.0f - momentum) * *running_var + momentum * var;
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

/* Batch norm's float passes over channel c of x (nb, C, S) plane by plane,
 * in place (the sums: S a multiple of LANES, each plane filling whole lanes,
 * or over xrow, the channel gathered): the operations and sums of the
 * gathered row's (nomul_bn_channel_forward_float, nomul_ln_row_backward_float
 * with γ and β broadcast), so the same bits, without copying the output
 * back (the backward: without copying the channel out at all). */
#define PLANE(p, b) ((p) + ((long)(b) * C + c) * S)

/* y = v, or relu(v) = v > 0 ? v : 0 (a NaN to 0, as nomul_relu) */
static inline float bn_out(int relu, float v) { return relu && !(v > 0.0f) ? 0.0f : v; }

int nomul_bn_planes_forward_float(int nb, int C, int S, int c, const float *x, const float *xrow,
                                  const float *gamma, const float *beta, float eps,
                                  float momentum, int training, float *running_mean,
                                  float *running_var, float *y, float *mean, float *rstd,
                                  int relu)
{
    const long len = (long)nb * S;
    if (!training) { /* elementwise: any S; the square root once, as the gathered form's */
        NOMUL_COUNT(FMUL, len); NOMUL_COUNT(FDIV, len); NOMUL_COUNT(FTRANS, 1);
        NOMUL_COUNT(FADD, 2 * len + 1);
        const float m = *running_mean, sd = sqrtf(*running_var + eps), g = gamma[0], bt = beta[0];
        for (int b = 0; b < nb; b++) {
            const float *xp = PLANE(x, b);
            float *yp = PLANE(y, b);
            if (relu)
                for (int j = 0; j < S; j++)
                    yp[j] = bn_out(1, (xp[j] - m) / sd * g + bt);
            else
                for (int j = 0; j < S; j++)
                    yp[j] = (xp[j] - m) / sd * g + bt;
        }
        return 1;
    }
    if (S % LANES && !xrow)
        return 0;
    if (S % LANES == 0)
        xrow = NULL;
    /* the sums' pieces: planes, or the gathered row */
    const int nseg = xrow ? 1 : nb;
    const long seg = xrow ? len : S;
    NOMUL_COUNT(FMUL, 3L * len); NOMUL_COUNT(FDIV, 3); NOMUL_COUNT(FTRANS, 1);
    NOMUL_COUNT(FADD, 4L * len + 1);
    float nf = (float)len, acc[LANES] = {0}, aq[LANES] = {0};
    for (int b = 0; b < nseg; b++)
        lanes_accumulate(acc, seg, xrow ? xrow : PLANE(x, b));
    float mu = lanes_total(acc) / nf;
    for (int b = 0; b < nseg; b++)
        lanes_sq_dev(aq, seg, xrow ? xrow : PLANE(x, b), mu);
    float q = lanes_total(aq), rs = 1.0f / sqrtf(q / nf + eps);
    for (int b = 0; b < nb; b++) {
        const float *xp = PLANE(x, b);
        float *yp = PLANE(y, b);
        if (relu)
            for (int j = 0; j < S; j++)
                yp[j] = bn_out(1, (xp[j] - mu) * rs * gamma[0] + beta[0]);
        else
            for (int j = 0; j < S; j++)
                yp[j] = (xp[j] - mu) * rs * gamma[0] + beta[0];
    }
    *mean = mu;
    *rstd = rs;
    bn_running_float(len, mu, q, momentum, running_mean, running_var);
    return 1;
}

/* relu (batch norm followed by relu): each value's relu output recomputed
 * as the forward made it, xhat·γ + β, the same bits; dy then counts as
 * +0 + dy where that output is > 0, else as +0 (what a relu's backward
 * accumulates into a zeroed gradient), with a bit mask. Else dy as it is. */
static inline __attribute__((always_inline)) float relu_dy(const int relu, float beta, float xhat,
                                                           float g, float gj)
{
    if (!relu)
        return gj;
    uint32_t keep = 0u - (uint32_t)(xhat * g + beta > 0.0f), u;
    float v = 0.0f + gj;
    memcpy(&u, &v, sizeof u);
    u &= keep;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* the passes, specialised at compile time for the relu (a branch in the
 * lanes' loop would keep it from being vectorized) */
static inline __attribute__((always_inline)) void
bn_planes_backward(int nb, int C, int S, int c, const float *x, float g, const int relu,
                   float beta, float mu, float r, const float *dy, float *dx, float *dgamma,
                   float *dbeta)
{
    const long len = (long)nb * S;
    float nf = (float)len, a1[LANES] = {0}, a2[LANES] = {0};
    for (int b = 0; b < nb; b++) {
        const float *xp = PLANE(x, b), *gp = PLANE(dy, b);
        for (int j = 0; j < S; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float xhat = (xp[j + l] - mu) * r;
                float dnorm = g * relu_dy(relu, beta, xhat, g, gp[j + l]);
                a1[l] += dnorm;
                a2[l] += dnorm * xhat;
            }
    }
    float m1 = lanes_total(a1) / nf, m2 = lanes_total(a2) / nf;
    float sb[LANES] = {0}, sg[LANES] = {0};
    for (int b = 0; b < nb; b++) {
        const float *xp = PLANE(x, b), *gp = PLANE(dy, b);
        float *dp = PLANE(dx, b);
        for (int j = 0; j < S; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float xhat = (xp[j + l] - mu) * r, gj = relu_dy(relu, beta, xhat, g, gp[j + l]);
                sb[l] += gj;
                sg[l] += xhat * gj;
                /* as added into a gathered row that starts at +0, then into dx */
                dp[j + l] += 0.0f + (g * gj - m1 - xhat * m2) * r;
            }
    }
    dbeta[0] += lanes_total(sb);
    dgamma[0] += lanes_total(sg);
}

void nomul_bn_relu_mask_row_float(long len, const float *xrow, float g, float beta, float mu,
                                  float r, float *dyrow)
{
    for (long i = 0; i < len; i++)
        dyrow[i] = relu_dy(1, beta, (xrow[i] - mu) * r, g, dyrow[i]);
}

int nomul_bn_planes_backward_float(int nb, int C, int S, int c, const float *x,
                                   const float *gamma, const float *relu_beta, float mu, float r,
                                   const float *dy, float *dx, float *dgamma, float *dbeta)
{
    if (S % LANES)
        return 0;
    NOMUL_COUNT(FMUL, 9L * nb * S); NOMUL_COUNT(FDIV, 2); NOMUL_COUNT(FADD, 7L * nb * S);
    if (relu_beta)
        bn_planes_backward(nb, C, S, c, x, gamma[0], 1, relu_beta[0], mu, r, dy, dx, dgamma,
                           dbeta);
    else
        bn_planes_backward(nb, C, S, c, x, gamma[0], 0, 0.0f, mu, r, dy, dx, dgamma, dbeta);
    return 1;
}
#undef PLANE

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

float nomul_cross_entropy_forward_float(int rows, int n, const float *logp, const int *target,
                                        int ignore_index, float smoothing, int used)
{
    long t0 = (long)rows * n; /* the audit (an upper bound: ignored rows too) */
    NOMUL_COUNT(FMUL, 2L * rows); NOMUL_COUNT(FDIV, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    if (used <= 0)
        return used < 0 ? NAN : 0.0f;
    float total = 0.0f;
    for (int i = 0; i < rows; i++)
        if (target[i] != ignore_index)
            total += ce_row(n, logp + (long)i * n, target[i], smoothing);
    return total / (float)used;
}

int nomul_cross_entropy_rows_float(int rows, int n, const float *logp, const int *target,
                                   int ignore_index, float smoothing, float *loss)
{
    NOMUL_COUNT(FMUL, 2L * rows); NOMUL_COUNT(FDIV, rows); NOMUL_COUNT(FADD, (long)rows * n);
    int used = 0;
    for (int i = 0; i < rows; i++) {
        if (target[i] == ignore_index)
            continue;
        if (target[i] < 0 || target[i] >= n)
            return -1;
        loss[used++] = ce_row(n, logp + (long)i * n, target[i], smoothing);
    }
    return used;
}

void nomul_cross_entropy_backward_float(int rows, int n, const int *target, int ignore_index,
                                        float smoothing, float dloss, int used, float *dlogp)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(FMUL, 3L * rows); NOMUL_COUNT(FDIV, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    if (used == 0)
        return;
    float nf = (float)n, g = dloss / (float)used;
    for (int i = 0; i < rows; i++) {
        int t = target[i];
        if (t == ignore_index || t < 0 || t >= n)
            continue;
        float *dr = dlogp + (long)i * n;
        float dnll = (1.0f - smoothing) * g, dsmooth = smoothing * g / nf;
        /* nll = −logp[t], smooth = −Σ logp */
        dr[t] -= dnll;
        for (int c = 0; c < n; c++)
            dr[c] -= dsmooth;
    }
}

/* ---- GELU: x Φ(x) ------------------------------------------------------------------ */

/* erf and exp four floats at a time: glibc's libmvec (2.35 and later), the
 * SSE form of the x86-64 vector ABI (an IFUNC picks the kernel for the
 * CPU), each lane within 4 ulp as erff and expf are within 1–2. A lane's
 * result does not depend on its neighbours, so a value's GELU is the same
 * wherever it sits in the array (a tail is padded to a whole vector). The
 * scalar loops over erff and expf are the twin (nomul_gelu_float_scalar). */
__m128 _ZGVbN4v_erff(__m128 x);
__m128 _ZGVbN4v_expf(__m128 x);

int nomul_gelu_float_scalar;

/* v = 4 values from p (c < 4: the rest zero) */
static __m128 load4(const float *p, long c)
{
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    memcpy(t, p, (size_t)c * sizeof *t);
    return _mm_loadu_ps(t);
}

static void store4(float *p, long c, __m128 v)
{
    float t[4];
    _mm_storeu_ps(t, v);
    memcpy(p, t, (size_t)c * sizeof *t);
}

void nomul_gelu_forward_float(long n, const float *x, float *y)
{
    NOMUL_COUNT(FTRANS, n); NOMUL_COUNT(FMUL, 3 * n); NOMUL_COUNT(FADD, n); /* the audit */
    if (nomul_gelu_float_scalar) {
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
    if (nomul_gelu_float_scalar) {
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
