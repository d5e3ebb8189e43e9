/*
 * functional.c — softmax, log_softmax, layer_norm and label-smoothed
 * cross-entropy, forward and backward, in float and in the PA composite
 * forms of PAM_SPEC.md (nomul/functional.h). PA backward: approx_bwd = 1
 * evaluates the float derivative's formula in PA arithmetic; 0 chains the
 * exact derivatives of every primitive the forward used (recomputing its
 * intermediates), with ⌊max⌋ treated as the constant it is almost
 * everywhere.
 */
#include "nomul/functional.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../arith/elt.h"
#include "../core/internal.h"
#include "nomul/arith.h"

#define LOG2E NOMUL_LOG2E_F32

/* The PAM offset of the operation running on this thread (set from its
 * nomul_fmode on entry): every PAM below, and its exact derivative, use it. */
static _Thread_local float cur_off = 1.0f;

static void set_mode(nomul_fmode m) { cur_off = m.offset > 0.0f ? m.offset : 1.0f; }

/* Threads for a row-wise operation of `work` elements: rows are independent,
 * so results do not depend on the count; small operations stay on one. */
static int row_threads(long work) { return work >= 8192 ? nomul_num_threads() : 1; }

static float pam(float a, float b)
{
    return cur_off != 1.0f ? nomul_pam_mul_off(a, b, cur_off) : nomul_pam_mul(a, b);
}

/* both exact derivatives of pam(a, b) times g */
static void mul_grads(float a, float b, float g, float *da, float *db)
{
    if (cur_off != 1.0f)
        nomul_pam_mul_off_grad(a, b, cur_off, g, da, db);
    else
        nomul_pam_mul_grad(a, b, g, da, db);
}
static float pad(float a, float b) { return nomul_pam_div(a, b); }

/* ∂PAM(a, b)/∂a · g and ∂PAD(a, b)/∂a · g, ∂/∂b · g (exact) */
static float mul_grad_a(float a, float b, float g)
{
    float da, db;
    mul_grads(a, b, g, &da, &db);
    return da;
}

static void div_grads(float a, float b, float g, float *da, float *db)
{
    nomul_pam_div_grad(a, b, g, da, db);
}

/* out[j] = pam(a[j], b) for a row, through the array kernels (bit-identical
 * to the scalar PAM; out may be a) */
static void pam_row(int n, const float *a, float b, float *out)
{
    if (cur_off != 1.0f)
        nomul_pam_mul_off_vs((size_t)n, a, b, cur_off, out);
    else
        nomul_pam_mul_vs((size_t)n, a, b, out);
}

/* The PA row pipeline shared by softmax and log_softmax: t = PAM(x, log2e),
 * s = ⌊max t⌋, u = t − s, e = paexp2(u); returns S = Σe (0 for an all −∞ row).
 * The elementwise steps run on the array kernels; the sum stays in order. */
static float pa_row_exp(int n, const float *x, float *u, float *e, float *s_out)
{
    pam_row(n, x, LOG2E, u);
    float mx = -INFINITY;
    for (int j = 0; j < n; j++)
        mx = u[j] > mx ? u[j] : mx;
    float s = isfinite(mx) ? floorf(mx) : 0.0f;
    for (int j = 0; j < n; j++)
        u[j] -= s; /* s is an integer: exact */
    nomul_paexp2_v((size_t)n, u, e);
    float sum = 0.0f;
    for (int j = 0; j < n; j++)
        sum += e[j];
    *s_out = s;
    return sum;
}

/* The exact chain from S = Σ paexp2(u) back to each input of a row:
 * out[j] = ∂PAM(x_j, log2e)/∂x · paexp2'(u_j) · dS (out: a row of its own). */
static void pa_row_exp_grads(int n, const float *x, const float *u, float dsum, float *out)
{
    if (cur_off != 1.0f) { /* no array kernel for the offset's broadcast form */
        for (int j = 0; j < n; j++)
            out[j] = mul_grad_a(x[j], LOG2E, nomul_paexp2_grad(u[j], dsum));
        return;
    }
    for (int j = 0; j < n; j++)
        out[j] = dsum;
    nomul_paexp2_grad_v((size_t)n, u, out, out);
    nomul_pam_mul_grad_vs((size_t)n, x, LOG2E, out, out);
}

typedef struct {
    float *u, *e;
} row_tmp;

static int tmp_alloc(row_tmp *t, int n)
{
    t->u = nomul_scratch(NOMUL_SCRATCH_ROW, (size_t)n * 2);
    t->e = t->u ? t->u + n : NULL;
    return t->u != NULL;
}

/* ---- softmax ------------------------------------------------------------------ */

static void softmax_row_float(int n, const float *x, float *y)
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

static void softmax_row_pa(int n, const float *x, float *y, row_tmp *t)
{
    float s, sum = pa_row_exp(n, x, t->u, t->e, &s);
    if (sum > 0.0f)
        nomul_pam_div_vs((size_t)n, t->e, sum, y);
    else
        for (int j = 0; j < n; j++)
            y[j] = 0.0f;
}

void nomul_softmax_forward(nomul_fmode m, int rows, int n, const float *x, float *y)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit */
    if (m.pa) {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0); NOMUL_COUNT(FADD, 2 * t0);
    } else {
        NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FDIV, t0); NOMUL_COUNT(FADD, 2 * t0);
    }
#pragma omp parallel num_threads(row_threads((long)rows * n))
    {
        set_mode(m); /* per thread */
        row_tmp t = {NULL, NULL};
        int ok = !m.pa || tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            if (m.pa)
                softmax_row_pa(n, x + (long)i * n, y + (long)i * n, &t);
            else
                softmax_row_float(n, x + (long)i * n, y + (long)i * n);
        }
    }
}

void nomul_softmax_backward(nomul_fmode m, int rows, int n, const float *x, const float *y,
                            const float *dy, float *dx)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit */
    if (!m.pa) {
        NOMUL_COUNT(FMUL, 2 * t0); NOMUL_COUNT(FADD, 2 * t0);
    } else if (m.approx_bwd) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(FADD, 2 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(SHIFT, 4 * t0);
        NOMUL_COUNT(FADD, 4 * t0);
    }
#pragma omp parallel num_threads(row_threads((long)rows * n))
    {
        set_mode(m); /* per thread */
        row_tmp t = {NULL, NULL};
        int ok = !(m.pa && !m.approx_bwd) || tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n, *yr = y + (long)i * n, *gr = dy + (long)i * n;
            float *dr = dx + (long)i * n;
            if (!m.pa) { /* dx = y (dy − Σ dy·y) */
                float dot = 0.0f;
                for (int j = 0; j < n; j++)
                    dot += gr[j] * yr[j];
                for (int j = 0; j < n; j++)
                    dr[j] += yr[j] * (gr[j] - dot);
            } else if (m.approx_bwd) {
                float dot = 0.0f;
                for (int j = 0; j < n; j++)
                    dot += pam(gr[j], yr[j]);
                for (int j = 0; j < n; j++)
                    dr[j] += pam(yr[j], gr[j] - dot);
            } else { /* the chain of y = PAD(e, S), e = paexp2(u), u = PAM(x, log2e) − s */
                float s, sum = pa_row_exp(n, xr, t.u, t.e, &s), dsum = 0.0f;
                if (!(sum > 0.0f))
                    continue;
                float *de = t.e; /* e is not needed once its gradient is formed */
                for (int j = 0; j < n; j++) {
                    float da, db;
                    div_grads(t.e[j], sum, gr[j], &da, &db);
                    de[j] = da;
                    dsum += db;
                }
                for (int j = 0; j < n; j++) {
                    float du = nomul_paexp2_grad(t.u[j], de[j] + dsum);
                    dr[j] += mul_grad_a(xr[j], LOG2E, du);
                }
            }
        }
    }
}

/* ---- log_softmax ---------------------------------------------------------------- */

void nomul_log_softmax_forward(nomul_fmode m, int rows, int n, const float *x, float *y)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit */
    if (m.pa) {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(PAD, rows); NOMUL_COUNT(FADD, 3 * t0);
    } else {
        NOMUL_COUNT(FTRANS, t0 + rows); NOMUL_COUNT(FADD, 3 * t0);
    }
#pragma omp parallel num_threads(row_threads((long)rows * n))
    {
        set_mode(m); /* per thread */
        row_tmp t = {NULL, NULL};
        int ok = !m.pa || tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n;
            float *yr = y + (long)i * n, lse;
            if (m.pa) {
                float s, sum = pa_row_exp(n, xr, t.u, t.e, &s);
                lse = pad(s + nomul_palog2(sum), LOG2E);
            } else {
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < n; j++)
                    mx = xr[j] > mx ? xr[j] : mx;
                for (int j = 0; j < n; j++)
                    sum += expf(xr[j] - mx);
                lse = mx + logf(sum);
            }
            for (int j = 0; j < n; j++)
                yr[j] = xr[j] - lse;
        }
    }
}

void nomul_log_softmax_backward(nomul_fmode m, int rows, int n, const float *x, const float *y,
                                const float *dy, float *dx)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit */
    if (!m.pa) {
        NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FMUL, t0); NOMUL_COUNT(FADD, 3 * t0);
    } else if (m.approx_bwd) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0);
        NOMUL_COUNT(FADD, 5 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(SHIFT, 2 * t0 + 2 * rows); NOMUL_COUNT(FADD, 4 * t0);
    }
#pragma omp parallel num_threads(row_threads((long)rows * n))
    {
        set_mode(m); /* per thread */
        row_tmp t = {NULL, NULL};
        int ok = tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n, *yr = y + (long)i * n, *gr = dy + (long)i * n;
            float *dr = dx + (long)i * n, gsum = 0.0f;
            for (int j = 0; j < n; j++)
                gsum += gr[j];
            if (!m.pa) { /* dx = dy − softmax(x) Σdy */
                for (int j = 0; j < n; j++)
                    dr[j] += gr[j] - expf(yr[j]) * gsum;
            } else if (m.approx_bwd) { /* the same with the PA softmax and PAM */
                softmax_row_pa(n, xr, t.e, &t);
                pam_row(n, t.e, gsum, t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += gr[j] - t.e[j];
            } else { /* y = x − PAD(s + palog2(S), log2e), S = Σ paexp2(u) */
                float s, sum = pa_row_exp(n, xr, t.u, t.e, &s);
                float w = s + nomul_palog2(sum), dw, unused;
                div_grads(w, LOG2E, -gsum, &dw, &unused);
                pa_row_exp_grads(n, xr, t.u, nomul_palog2_grad(sum, dw), t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += gr[j] + t.e[j];
            }
        }
    }
}

/* ---- logsumexp ---------------------------------------------------------------------- */

void nomul_logsumexp_forward(nomul_fmode m, int rows, int n, const float *x, float *lse)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit */
    if (m.pa) {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(PAD, rows); NOMUL_COUNT(FADD, 2 * t0);
    } else {
        NOMUL_COUNT(FTRANS, t0 + rows); NOMUL_COUNT(FADD, 2 * t0);
    }
#pragma omp parallel num_threads(row_threads((long)rows * n))
    {
        set_mode(m); /* per thread */
        row_tmp t = {NULL, NULL};
        int ok = !m.pa || tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n;
            if (m.pa) {
                float s, sum = pa_row_exp(n, xr, t.u, t.e, &s);
                lse[i] = pad(s + nomul_palog2(sum), LOG2E);
            } else {
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < n; j++)
                    mx = xr[j] > mx ? xr[j] : mx;
                for (int j = 0; j < n; j++)
                    sum += expf(xr[j] - mx);
                lse[i] = mx + logf(sum);
            }
        }
    }
}

void nomul_logsumexp_backward(nomul_fmode m, int rows, int n, const float *x, const float *dlse,
                              float *dx)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit */
    if (!m.pa) {
        NOMUL_COUNT(FTRANS, t0); NOMUL_COUNT(FDIV, t0); NOMUL_COUNT(FMUL, t0);
        NOMUL_COUNT(FADD, 3 * t0);
    } else if (m.approx_bwd) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0);
        NOMUL_COUNT(FADD, 3 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(SHIFT, 2 * t0 + 2 * rows); NOMUL_COUNT(FADD, 3 * t0);
    }
#pragma omp parallel num_threads(row_threads((long)rows * n))
    {
        set_mode(m); /* per thread */
        row_tmp t = {NULL, NULL};
        int ok = tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n;
            float *dr = dx + (long)i * n, g = dlse[i];
            if (!m.pa) { /* softmax(x) · dlse */
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < n; j++)
                    mx = xr[j] > mx ? xr[j] : mx;
                for (int j = 0; j < n; j++)
                    sum += (t.e[j] = expf(xr[j] - mx));
                for (int j = 0; j < n; j++)
                    dr[j] += t.e[j] / sum * g;
            } else if (m.approx_bwd) {
                softmax_row_pa(n, xr, t.e, &t);
                pam_row(n, t.e, g, t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += t.e[j];
            } else { /* lse = PAD(w, log2e), w = s + palog2(S), S = Σ paexp2(u) */
                float s, sum = pa_row_exp(n, xr, t.u, t.e, &s), dw, unused;
                div_grads(s + nomul_palog2(sum), LOG2E, g, &dw, &unused);
                pa_row_exp_grads(n, xr, t.u, nomul_palog2_grad(sum, dw), t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += t.e[j];
            }
        }
    }
}

/* ---- the PA chains on the array kernels (layer norm, batch norm, GELU) ------------- */

int nomul_pa_chains_scalar;

/* One elementwise operation on the array kernels, uncounted (the rows count
 * their operations themselves); b* marks a broadcast operand. */
static void elt(nomul_elt_op op, int n, const float *a, int ba, const float *b, int bb,
                const float *c, int bc, const float *d, int bd, float *o0, float *o1)
{
    nomul_elt_args g = {{a, b, c, d}, {ba, bb, bc, bd}, {o0, o1}, 0};
    nomul_elt_run(op, (size_t)n, &g);
}

/* out = pam(a, b) element by element (with the mode's offset) */
static void elt_pam(int n, const float *a, int ba, const float *b, int bb, float *out)
{
    if (cur_off != 1.0f)
        elt(NOMUL_ELT_MUL_OFF, n, a, ba, b, bb, &cur_off, 1, NULL, 0, out, NULL);
    else
        elt(NOMUL_ELT_MUL, n, a, ba, b, bb, NULL, 0, NULL, 0, out, NULL);
}

/* (da, db) = mul_grads(a, b, g) element by element */
static void elt_mul_grads(int n, const float *a, int ba, const float *b, int bb, const float *g,
                          int bg, float *da, float *db)
{
    if (cur_off != 1.0f)
        elt(NOMUL_ELT_MUL_OFF_GRAD, n, a, ba, b, bb, &cur_off, 1, g, bg, da, db);
    else
        elt(NOMUL_ELT_MUL_GRAD, n, a, ba, b, bb, g, bg, NULL, 0, da, db);
}

/* k rows of n floats of this thread's scratch for the array-kernel rows, or
 * NULL for the scalar chain (forced, or no memory) */
static float *ln_buf(int n, int k)
{
    return nomul_pa_chains_scalar ? NULL : nomul_scratch(NOMUL_SCRATCH_LN, (size_t)k * n);
}

/* ---- layer norm ------------------------------------------------------------------- */

/* A row's PA statistics: s[0] = Σ x, s[1] = μ = PAD(Σ x, n), s[2] = q =
 * Σ PAM(d, d), s[3] = σ² = PAD(q, n), with d = x − μ (into d; t: scratch);
 * returns pa_sqrt(σ² + eps). */
static float ln_row_stats_pa(int n, const float *xr, float eps, float *d, float *t, float s[4])
{
    float nf = (float)n, sum = 0.0f, q = 0.0f;
    for (int j = 0; j < n; j++)
        sum += xr[j];
    float mu = pad(sum, nf);
    for (int j = 0; j < n; j++)
        d[j] = xr[j] - mu;
    elt_pam(n, d, 0, d, 0, t);
    for (int j = 0; j < n; j++)
        q += t[j];
    s[0] = sum;
    s[1] = mu;
    s[2] = q;
    s[3] = pad(q, nf);
    return nomul_pa_sqrt(s[3] + eps);
}

/* The PA forward of one row on the array kernels: the same operations as
 * the scalar chain in ln_row_forward, each over the whole row, and the sums
 * in the same order, so the results are the same bits. */
static void ln_row_forward_pa(int n, const float *xr, const float *gamma, int gs,
                              const float *beta, int bs, float eps, float *yr, float *mean,
                              float *rstd, float *buf)
{
    float *d = buf, *t = buf + n, st[4];
    float r = ln_row_stats_pa(n, xr, eps, d, t, st), mu = st[1];
    elt(NOMUL_ELT_DIV, n, d, 0, &r, 1, NULL, 0, NULL, 0, t, NULL); /* xhat */
    elt_pam(n, t, 0, gamma, gs == 0, t);
    for (int j = 0; j < n; j++)
        yr[j] = t[j] + beta[j * bs];
    *mean = mu;
    *rstd = r;
}


/* One row of n values; γ and β read at j·gs and j·bs (stride 0: one value
 * for the whole row, as batch norm's per-channel γ and β). */
static void ln_row_forward(nomul_fmode m, int n, const float *xr, const float *gamma, int gs,
                           const float *beta, int bs, float eps, float *yr, float *mean,
                           float *rstd)
{
    if (m.pa) { /* the audit: d², ·γ; xhat, μ, σ²; pa_sqrt; sums and adds */
        NOMUL_COUNT(PAM, 2L * n + 1); NOMUL_COUNT(PAD, (long)n + 2); NOMUL_COUNT(PALOG2, 1);
        NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(FADD, 4L * n + 1);
    } else {
        NOMUL_COUNT(FMUL, 3L * n); NOMUL_COUNT(FDIV, 3); NOMUL_COUNT(FTRANS, 1);
        NOMUL_COUNT(FADD, 4L * n + 1);
    }
    float *buf = m.pa ? ln_buf(n, 2) : NULL;
    if (buf) {
        ln_row_forward_pa(n, xr, gamma, gs, beta, bs, eps, yr, mean, rstd, buf);
        return;
    }
    float nf = (float)n, sum = 0.0f, q = 0.0f;
    for (int j = 0; j < n; j++)
        sum += xr[j];
    if (m.pa) { /* the scalar chain: the twin of ln_row_forward_pa */
        float mu = pad(sum, nf);
        for (int j = 0; j < n; j++)
            q += pam(xr[j] - mu, xr[j] - mu);
        float r = nomul_pa_sqrt(pad(q, nf) + eps);
        for (int j = 0; j < n; j++)
            yr[j] = pam(pad(xr[j] - mu, r), gamma[j * gs]) + beta[j * bs];
        *mean = mu;
        *rstd = r;
    } else {
        float mu = sum / nf;
        for (int j = 0; j < n; j++)
            q += (xr[j] - mu) * (xr[j] - mu);
        float rs = 1.0f / sqrtf(q / nf + eps);
        for (int j = 0; j < n; j++)
            yr[j] = (xr[j] - mu) * rs * gamma[j * gs] + beta[j * bs];
        *mean = mu;
        *rstd = rs;
    }
}

/* The PA backward of one row on the array kernels (exact: the chain through
 * the forward's intermediates; approximate: the formula with r the
 * divisor), the same operations and sums in the same order as the scalar
 * chains in ln_row_backward, so the results are the same bits. buf: 6n. */
static void ln_row_backward_pa(int approx, int n, const float *xr, const float *gamma, int gs,
                               float mu, float r, float eps, const float *gr, float *dr,
                               float *dgamma, float *dbeta, int bs, float *dd, float *buf)
{
    float *d = buf, *xh = buf + n, *u = buf + 2 * n, *v = buf + 3 * n, *a = buf + 4 * n,
          *b = buf + 5 * n, nf = (float)n;
    const int gb = gs == 0; /* γ broadcast */
    if (approx) {
        float s1 = 0.0f, s2 = 0.0f;
        for (int j = 0; j < n; j++)
            d[j] = xr[j] - mu;
        elt(NOMUL_ELT_DIV, n, d, 0, &r, 1, NULL, 0, NULL, 0, xh, NULL);
        elt_pam(n, gamma, gb, gr, 0, u); /* dnorm */
        elt_pam(n, u, 0, xh, 0, v);
        for (int j = 0; j < n; j++) {
            s1 += u[j];
            s2 += v[j];
        }
        float m1 = pad(s1, nf), m2 = pad(s2, nf);
        elt_pam(n, xh, 0, gr, 0, a);
        elt_pam(n, xh, 0, &m2, 1, b);
        for (int j = 0; j < n; j++) {
            dbeta[j * bs] += gr[j];
            dgamma[j * gs] += a[j];
            v[j] = u[j] - m1 - b[j];
        }
        elt(NOMUL_ELT_DIV, n, v, 0, &r, 1, NULL, 0, NULL, 0, v, NULL);
        for (int j = 0; j < n; j++)
            dr[j] += v[j];
        return;
    }
    float st[4], dr_ = 0.0f;
    float r2 = ln_row_stats_pa(n, xr, eps, d, a, st), sum = st[0], q = st[2], var = st[3];
    elt(NOMUL_ELT_DIV, n, d, 0, &r2, 1, NULL, 0, NULL, 0, xh, NULL);
    elt_mul_grads(n, xh, 0, gamma, gb, gr, 0, u, v); /* dxhat, dγ */
    for (int j = 0; j < n; j++) {
        dgamma[j * gs] += v[j];
        dbeta[j * bs] += gr[j];
    }
    elt(NOMUL_ELT_DIV_GRAD, n, d, 0, &r2, 1, u, 0, NULL, 0, a, b);
    for (int j = 0; j < n; j++) {
        dd[j] = a[j];
        dr_ += b[j];
    }
    float dvar = nomul_pa_sqrt_grad(var + eps, dr_, 0), dq, unused;
    div_grads(q, nf, dvar, &dq, &unused);
    elt_mul_grads(n, d, 0, d, 0, &dq, 1, a, b); /* q = Σ PAM(d, d) */
    float dmu = 0.0f;
    for (int j = 0; j < n; j++) {
        dd[j] += a[j] + b[j];
        dmu -= dd[j];
    }
    float dsum;
    div_grads(sum, nf, dmu, &dsum, &unused);
    for (int j = 0; j < n; j++)
        dr[j] += dd[j] + dsum;
}

/* dx, dγ, dβ of one row (dγ, dβ at j·gs, j·bs: summed when the stride is 0);
 * dd: n floats of scratch for the exact PA chain */
static void ln_row_backward(nomul_fmode m, int n, const float *xr, const float *gamma, int gs,
                            float mu, float r, float eps, const float *gr, float *dr,
                            float *dgamma, float *dbeta, int bs, float *dd)
{
    if (!m.pa) { /* the audit */
        NOMUL_COUNT(FMUL, 9L * n); NOMUL_COUNT(FDIV, 2); NOMUL_COUNT(FADD, 7L * n);
    } else if (m.approx_bwd) {
        NOMUL_COUNT(PAM, 6L * n); NOMUL_COUNT(PAD, 3L * n + 2); NOMUL_COUNT(FADD, 9L * n);
    } else {
        NOMUL_COUNT(PAM, (long)n + 1); NOMUL_COUNT(PAD, (long)n + 2); NOMUL_COUNT(PALOG2, 1);
        NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(SHIFT, 5L * n + 3); NOMUL_COUNT(FADD, 9L * n);
    }
    float *buf = m.pa && (m.approx_bwd || dd) ? ln_buf(n, 6) : NULL;
    if (buf) {
        ln_row_backward_pa(m.approx_bwd, n, xr, gamma, gs, mu, r, eps, gr, dr, dgamma, dbeta, bs,
                           dd, buf);
        return;
    }
    float nf = (float)n; /* below, the PA modes' scalar chains: the twins */
    if (!m.pa) { /* llm.c's layernorm_backward */
        float m1 = 0.0f, m2 = 0.0f;
        for (int j = 0; j < n; j++) {
            float xhat = (xr[j] - mu) * r, dnorm = gamma[j * gs] * gr[j];
            m1 += dnorm;
            m2 += dnorm * xhat;
        }
        m1 /= nf;
        m2 /= nf;
        for (int j = 0; j < n; j++) {
            float xhat = (xr[j] - mu) * r, dnorm = gamma[j * gs] * gr[j];
            dbeta[j * bs] += gr[j];
            dgamma[j * gs] += xhat * gr[j];
            dr[j] += (dnorm - m1 - xhat * m2) * r;
        }
    } else if (m.approx_bwd) { /* the same formula, r the divisor, in PA */
        float s1 = 0.0f, s2 = 0.0f;
        for (int j = 0; j < n; j++) {
            float xhat = pad(xr[j] - mu, r), dnorm = pam(gamma[j * gs], gr[j]);
            s1 += dnorm;
            s2 += pam(dnorm, xhat);
        }
        float m1 = pad(s1, nf), m2 = pad(s2, nf);
        for (int j = 0; j < n; j++) {
            float xhat = pad(xr[j] - mu, r), dnorm = pam(gamma[j * gs], gr[j]);
            dbeta[j * bs] += gr[j];
            dgamma[j * gs] += pam(xhat, gr[j]);
            dr[j] += pad(dnorm - m1 - pam(xhat, m2), r);
        }
    } else { /* the chain, recomputing the forward's intermediates */
        float sum = 0.0f, q = 0.0f, dr_ = 0.0f;
        for (int j = 0; j < n; j++)
            sum += xr[j];
        float mu2 = pad(sum, nf);
        for (int j = 0; j < n; j++)
            q += pam(xr[j] - mu2, xr[j] - mu2);
        float var = pad(q, nf), r2 = nomul_pa_sqrt(var + eps);
        for (int j = 0; j < n; j++) { /* y = PAM(xhat, γ) + β, xhat = PAD(d, r) */
            float d = xr[j] - mu2, xhat = pad(d, r2), dxhat, dg, a, b;
            mul_grads(xhat, gamma[j * gs], gr[j], &dxhat, &dg);
            dgamma[j * gs] += dg;
            dbeta[j * bs] += gr[j];
            div_grads(d, r2, dxhat, &a, &b);
            dd[j] = a;
            dr_ += b;
        }
        float dvar = nomul_pa_sqrt_grad(var + eps, dr_, 0), dq, unused;
        div_grads(q, nf, dvar, &dq, &unused);
        float dmu = 0.0f;
        for (int j = 0; j < n; j++) { /* q = Σ PAM(d, d) */
            float d = xr[j] - mu2, a, b;
            mul_grads(d, d, dq, &a, &b);
            dd[j] += a + b;
            dmu -= dd[j];
        }
        float dsum;
        div_grads(sum, nf, dmu, &dsum, &unused);
        for (int j = 0; j < n; j++)
            dr[j] += dd[j] + dsum;
    }
}

void nomul_layer_norm_forward(nomul_fmode m, int rows, int n, const float *x, const float *gamma,
                              const float *beta, float eps, float *y, float *mean, float *rstd)
{
#pragma omp parallel num_threads(row_threads((long)rows * n))
    {
        set_mode(m); /* per thread */
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++)
            ln_row_forward(m, n, x + (long)i * n, gamma, 1, beta, 1, eps, y + (long)i * n,
                           &mean[i], &rstd[i]);
    }
}

void nomul_layer_norm_backward(nomul_fmode m, int rows, int n, const float *x,
                               const float *gamma, const float *mean, const float *rstd,
                               float eps, const float *dy, float *dx, float *dgamma,
                               float *dbeta)
{
    /* rows split over threads; each thread sums its rows' dγ and dβ apart,
     * and the partial sums are added in thread order afterwards */
    enum { MAXT = 64 };
    float *part[MAXT];
    int used = 1, failed = 0;
    int nt = row_threads((long)rows * n);
#pragma omp parallel num_threads(nt < MAXT ? nt : MAXT)
    {
        set_mode(m); /* per thread */
        const int me = omp_get_thread_num(), k = omp_get_num_threads();
        float *dd = m.pa && !m.approx_bwd ? nomul_scratch(NOMUL_SCRATCH_NORM, (size_t)n) : NULL;
        float *acc = k > 1 ? nomul_scratch(NOMUL_SCRATCH_PART, 2 * (size_t)n) : NULL;
        int ok = (!m.pa || m.approx_bwd || dd) && (k == 1 || acc);
        if (acc)
            memset(acc, 0, 2 * sizeof(float) * (size_t)n);
        part[me] = acc;
        if (me == 0)
            used = k;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
        float *dg = acc ? acc : dgamma, *db = acc ? acc + n : dbeta;
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++)
            if (ok)
                ln_row_backward(m, n, x + (long)i * n, gamma, 1, mean[i], rstd[i], eps,
                                dy + (long)i * n, dx + (long)i * n, dg, db, 1, dd);
    }
    if (used > 1 && !failed)
        for (int k = 0; k < used; k++)
            for (int j = 0; j < n; j++) {
                dgamma[j] += part[k][j];
                dbeta[j] += part[k][n + j];
            }
}

/* ---- batch norm: layer norm's rows, one per channel over (batch, spatial) ---------- */

/* channel c of x (n, C, S) to row[0 .. n·S), or back (+= when add) */
static void gather_channel(int nb, int C, int S, int c, const float *x, float *row)
{
    for (int b = 0; b < nb; b++)
        memcpy(row + (long)b * S, x + ((long)b * C + c) * S, (size_t)S * sizeof *row);
}

static void scatter_channel(int nb, int C, int S, int c, const float *row, float *x, int add)
{
    for (int b = 0; b < nb; b++) {
        float *dst = x + ((long)b * C + c) * S;
        for (int s = 0; s < S; s++)
            dst[s] = add ? dst[s] + row[(long)b * S + s] : row[(long)b * S + s];
    }
}

void nomul_batch_norm_forward(nomul_fmode m, int nb, int C, int S, const float *x,
                              const float *gamma, const float *beta, float eps, float momentum,
                              int training, float *running_mean, float *running_var, float *y,
                              float *mean, float *rstd)
{
    const long len = (long)nb * S;
    /* channels are independent (each writes only its own statistics and
     * outputs): split over threads, results as on one */
#pragma omp parallel num_threads(row_threads((long)C * len))
    {
        set_mode(m); /* per thread */
        float *row = nomul_scratch(NOMUL_SCRATCH_NORM, (size_t)len * 2);
        float *out = row ? row + len : NULL;
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            if (!row)
                continue;
            gather_channel(nb, C, S, c, x, row);
            if (training) {
                ln_row_forward(m, (int)len, row, gamma + c, 0, beta + c, 0, eps, out, &mean[c],
                               &rstd[c]);
                /* running statistics (unbiased variance, as PyTorch keeps) */
                float var = 0.0f;
                if (m.pa) {
                    NOMUL_COUNT(PAM, len + 2); NOMUL_COUNT(PAD, 1); NOMUL_COUNT(FADD, 2 * len + 4);
                    for (long j = 0; j < len; j++)
                        var += pam(row[j] - mean[c], row[j] - mean[c]);
                    var = pad(var, (float)(len > 1 ? len - 1 : 1));
                    /* r += m·(v − r): PAM's error only changes how fast r moves, not
                     * where it settles. The float form (1 − m)·r + m·v with PAMs would
                     * settle about a quarter low for m = 0.1 (PAM(r, 0.9) is ~4% small,
                     * and that error is divided by m), and evaluation would collapse. */
                    running_mean[c] += pam(mean[c] - running_mean[c], momentum);
                    running_var[c] += pam(var - running_var[c], momentum);
                } else {
                    NOMUL_COUNT(FMUL, len + 4); NOMUL_COUNT(FDIV, 1); NOMUL_COUNT(FADD, 2 * len + 4);
                    for (long j = 0; j < len; j++)
                        var += (row[j] - mean[c]) * (row[j] - mean[c]);
                    var /= (float)(len > 1 ? len - 1 : 1);
                    running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean[c];
                    running_var[c] = (1.0f - momentum) * running_var[c] + momentum * var;
                }
            } else { /* evaluation: the running statistics */
                if (m.pa) {
                    NOMUL_COUNT(PAM, len); NOMUL_COUNT(PAD, len); NOMUL_COUNT(FADD, 2 * len);
                    NOMUL_COUNT(PALOG2, len); NOMUL_COUNT(PAEXP2, len); NOMUL_COUNT(PAM, len);
                } else {
                    NOMUL_COUNT(FMUL, len); NOMUL_COUNT(FDIV, len); NOMUL_COUNT(FTRANS, len);
                    NOMUL_COUNT(FADD, 3 * len);
                }
                for (long j = 0; j < len; j++) {
                    float d = row[j] - running_mean[c];
                    out[j] = m.pa ? pam(pad(d, nomul_pa_sqrt(running_var[c] + eps)), gamma[c]) + beta[c]
                                  : d / sqrtf(running_var[c] + eps) * gamma[c] + beta[c];
                }
            }
            scatter_channel(nb, C, S, c, out, y, 0);
        }
    }
}

void nomul_batch_norm_backward(nomul_fmode m, int nb, int C, int S, const float *x,
                               const float *gamma, const float *mean, const float *rstd,
                               float eps, const float *dy, float *dx, float *dgamma,
                               float *dbeta)
{
    const long len = (long)nb * S;
    /* per channel: its own dγ, dβ and dx entries, so threads never meet */
#pragma omp parallel num_threads(row_threads((long)C * len))
    {
        set_mode(m); /* per thread */
        float *row = nomul_scratch(NOMUL_SCRATCH_NORM, (size_t)len * 4);
        float *grow = row + len, *drow = row + 2 * len, *dd = row + 3 * len;
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            if (!row)
                continue;
            gather_channel(nb, C, S, c, x, row);
            gather_channel(nb, C, S, c, dy, grow);
            memset(drow, 0, (size_t)len * sizeof *drow);
            ln_row_backward(m, (int)len, row, gamma + c, 0, mean[c], rstd[c], eps, grow, drow,
                            dgamma + c, dbeta + c, 0, dd);
            scatter_channel(nb, C, S, c, drow, dx, 1);
        }
    }
}

/* ---- label-smoothed cross-entropy ------------------------------------------------ */

/* the loss of one row, and its parts (for the exact backward):
 * nll = −logp[t], smooth = −Σ logp, msm = smooth / n */
static float ce_row(nomul_fmode m, int n, const float *lp, int t, float eps, float *nll,
                    float *msm, float *smooth_out)
{
    float smooth = 0.0f;
    for (int c = 0; c < n; c++)
        smooth -= lp[c];
    *smooth_out = smooth;
    *nll = -lp[t];
    if (!m.pa) {
        *msm = smooth / (float)n;
        return (1.0f - eps) * *nll + eps * *msm;
    }
    *msm = pad(smooth, (float)n);
    return pam(*nll, 1.0f - eps) + (eps != 0.0f ? pam(*msm, eps) : 0.0f);
}

float nomul_cross_entropy_forward(nomul_fmode m, int rows, int n, const float *logp,
                                  const int *target, int ignore_index, float smoothing,
                                  int *count)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit (an upper bound: ignored rows too) */
    if (m.pa) {
        NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    } else {
        NOMUL_COUNT(FMUL, 2L * rows); NOMUL_COUNT(FDIV, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    }
    float total = 0.0f, nll, msm, smooth;
    int used = 0;
    for (int i = 0; i < rows; i++) {
        if (target[i] == ignore_index)
            continue;
        if (target[i] < 0 || target[i] >= n) {
            if (count)
                *count = -1;
            return NAN;
        }
        total += ce_row(m, n, logp + (long)i * n, target[i], smoothing, &nll, &msm, &smooth);
        used++;
    }
    if (count)
        *count = used;
    if (used == 0)
        return 0.0f;
    return m.pa ? pad(total, (float)used) : total / (float)used;
}

void nomul_cross_entropy_backward(nomul_fmode m, int rows, int n, const float *logp,
                                  const int *target, int ignore_index, float smoothing,
                                  float dloss, float *dlogp)
{
    set_mode(m);
    long t0 = (long)rows * n; /* the audit */
    if (!m.pa) {
        NOMUL_COUNT(FMUL, 3L * rows); NOMUL_COUNT(FDIV, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    } else if (m.approx_bwd) {
        NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    } else {
        NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(SHIFT, 3L * rows + 1);
        NOMUL_COUNT(FADD, 2 * t0 + rows);
    }
    int used = 0;
    float total = 0.0f, nll, msm, smooth;
    for (int i = 0; i < rows; i++)
        if (target[i] != ignore_index && target[i] >= 0 && target[i] < n) {
            used++;
            if (m.pa && !m.approx_bwd)
                total += ce_row(m, n, logp + (long)i * n, target[i], smoothing, &nll, &msm,
                                &smooth);
        }
    if (used == 0)
        return;
    float nf = (float)n, g, unused;
    if (!m.pa)
        g = dloss / (float)used;
    else if (m.approx_bwd)
        g = pad(dloss, (float)used);
    else
        div_grads(total, (float)used, dloss, &g, &unused);
    for (int i = 0; i < rows; i++) {
        int t = target[i];
        if (t == ignore_index || t < 0 || t >= n)
            continue;
        float *dr = dlogp + (long)i * n, dnll, dsmooth;
        if (!m.pa) {
            dnll = (1.0f - smoothing) * g;
            dsmooth = smoothing * g / nf;
        } else if (m.approx_bwd) {
            dnll = pam(g, 1.0f - smoothing);
            dsmooth = smoothing != 0.0f ? pad(pam(g, smoothing), nf) : 0.0f;
        } else { /* loss_i = PAM(nll, 1 − ε) + PAM(PAD(smooth, n), ε) */
            ce_row(m, n, logp + (long)i * n, t, smoothing, &nll, &msm, &smooth);
            dnll = mul_grad_a(nll, 1.0f - smoothing, g);
            dsmooth = 0.0f;
            if (smoothing != 0.0f)
                div_grads(smooth, nf, mul_grad_a(msm, smoothing, g), &dsmooth, &unused);
        }
        /* nll = −logp[t], smooth = −Σ logp */
        dr[t] -= dnll;
        for (int c = 0; c < n; c++)
            dr[c] -= dsmooth;
    }
}

/* ---- GELU ---------------------------------------------------------------------------- */

#define GELU_K 1.702f

/* GELU's PA chain on the array kernels, CH values at a time: the scalar
 * chain's operations in its order, so the same bits (the scalar loops below
 * stay as the twin). */
enum { GELU_CH = 256 };

/* z = PAM(k, x), e = pa_exp(−z), q = 1 + e, s = PAD(1, q) for c values */
static void gelu_s(int c, const float *x, float *z, float *e, float *q, float *s)
{
    const float k = GELU_K, one = 1.0f;
    elt_pam(c, &k, 1, x, 0, z);
    for (int i = 0; i < c; i++)
        e[i] = -z[i];
    elt(NOMUL_ELT_EXP, c, e, 0, NULL, 0, NULL, 0, NULL, 0, e, NULL);
    for (int i = 0; i < c; i++)
        q[i] = 1.0f + e[i];
    elt(NOMUL_ELT_DIV, c, &one, 1, q, 0, NULL, 0, NULL, 0, s, NULL);
}

void nomul_gelu_forward(nomul_fmode m, long n, const float *x, float *y)
{
    set_mode(m);
    if (m.pa) { /* the audit */
        NOMUL_COUNT(PAM, 3 * n); NOMUL_COUNT(PAEXP2, n); NOMUL_COUNT(PAD, n); NOMUL_COUNT(FADD, n);
    } else {
        NOMUL_COUNT(FTRANS, n); NOMUL_COUNT(FMUL, 3 * n); NOMUL_COUNT(FADD, n);
    }
    const int chains = m.pa && !nomul_pa_chains_scalar;
#pragma omp parallel num_threads(row_threads(n))
    {
        set_mode(m); /* per thread */
        if (chains) {
            float z[GELU_CH], e[GELU_CH], q[GELU_CH], s[GELU_CH];
#pragma omp for schedule(static)
            for (long i0 = 0; i0 < n; i0 += GELU_CH) {
                int c = n - i0 < GELU_CH ? (int)(n - i0) : GELU_CH;
                gelu_s(c, x + i0, z, e, q, s);
                elt_pam(c, x + i0, 0, s, 0, y + i0);
            }
        } else {
#pragma omp for schedule(static)
            for (long i = 0; i < n; i++) {
                if (!m.pa) {
                    y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
                    continue;
                }
                float z = pam(GELU_K, x[i]);
                float s = pad(1.0f, 1.0f + nomul_pa_exp(-z));
                y[i] = pam(x[i], s);
            }
        }
    }
}

/* dx += the PA backward of GELU for c values (see the scalar chain below) */
static void gelu_backward_chunk(int approx, int c, const float *x, const float *g, float *dx)
{
    float z[GELU_CH], e[GELU_CH], q[GELU_CH], s[GELU_CH], a[GELU_CH], b[GELU_CH];
    const float k = GELU_K, one = 1.0f;
    gelu_s(c, x, z, e, q, s);
    if (approx) { /* t = PAM(PAM(k, x), PAM(s, 1 − s)); dx += PAM(g, s + t) */
        for (int i = 0; i < c; i++)
            a[i] = 1.0f - s[i];
        elt_pam(c, s, 0, a, 0, a);
        elt_pam(c, z, 0, a, 0, a);
        for (int i = 0; i < c; i++)
            a[i] = s[i] + a[i];
        elt_pam(c, g, 0, a, 0, a);
        for (int i = 0; i < c; i++)
            dx[i] += a[i];
        return;
    }
    elt_mul_grads(c, x, 0, s, 0, g, 0, a, b);               /* a = dxa, b = ds */
    elt(NOMUL_ELT_DIV_GRAD, c, &one, 1, q, 0, b, 0, NULL, 0, NULL, b); /* b = dq */
    for (int i = 0; i < c; i++)
        z[i] = -z[i];
    elt(NOMUL_ELT_EXP_GRAD, c, z, 0, b, 0, NULL, 0, NULL, 0, b, NULL); /* ∂/∂(−z) */
    for (int i = 0; i < c; i++)
        b[i] = -b[i];
    elt_mul_grads(c, &k, 1, x, 0, b, 0, NULL, b);           /* b = dxz */
    for (int i = 0; i < c; i++)
        dx[i] += a[i] + b[i];
}

void nomul_gelu_backward(nomul_fmode m, long n, const float *x, const float *dy, float *dx)
{
    set_mode(m);
    if (!m.pa) { /* the audit */
        NOMUL_COUNT(FTRANS, 2 * n); NOMUL_COUNT(FMUL, 8 * n); NOMUL_COUNT(FADD, 3 * n);
    } else if (m.approx_bwd) {
        NOMUL_COUNT(PAM, 8 * n); NOMUL_COUNT(PAEXP2, n); NOMUL_COUNT(PAD, n); NOMUL_COUNT(FADD, 4 * n);
    } else {
        NOMUL_COUNT(PAM, 2 * n); NOMUL_COUNT(PAEXP2, n); NOMUL_COUNT(PAD, n);
        NOMUL_COUNT(SHIFT, 5 * n); NOMUL_COUNT(FADD, 4 * n);
    }
    const int chains = m.pa && !nomul_pa_chains_scalar;
#pragma omp parallel num_threads(row_threads(n))
    {
        set_mode(m); /* per thread */
        if (chains) {
#pragma omp for schedule(static)
            for (long i0 = 0; i0 < n; i0 += GELU_CH)
                gelu_backward_chunk(m.approx_bwd, n - i0 < GELU_CH ? (int)(n - i0) : GELU_CH,
                                    x + i0, dy + i0, dx + i0);
        } else {
#pragma omp for schedule(static)
            for (long i = 0; i < n; i++) {
                float xi = x[i], g = dy[i];
                if (!m.pa) { /* Φ(x) + x φ(x) */
                    float cdf = 0.5f * (1.0f + erff(xi * 0.70710678118654752f));
                    float pdf = 0.39894228040143268f * expf(-0.5f * xi * xi);
                    dx[i] += g * (cdf + xi * pdf);
                    continue;
                }
                float z = pam(GELU_K, xi), e = nomul_pa_exp(-z), q = 1.0f + e, s = pad(1.0f, q);
                if (m.approx_bwd) { /* σ + k x σ (1 − σ), in PA */
                    float t = pam(pam(GELU_K, xi), pam(s, 1.0f - s));
                    dx[i] += pam(g, s + t);
                    continue;
                }
                /* y = PAM(x, s), s = PAD(1, q), q = 1 + e, e = pa_exp(−z), z = PAM(k, x) */
                float dxa, ds, unused, dq, dz_neg, dxz;
                mul_grads(xi, s, g, &dxa, &ds);
                nomul_pam_div_grad(1.0f, q, ds, &unused, &dq);
                dz_neg = nomul_pa_exp_grad(-z, dq, 0); /* ∂/∂(−z) */
                mul_grads(GELU_K, xi, -dz_neg, &unused, &dxz);
                dx[i] += dxa + dxz;
            }
        }
    }
}
