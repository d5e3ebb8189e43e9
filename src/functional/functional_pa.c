/*
 * functional_pa.c — the piecewise affine forms of the composite operations
 * of PAM_SPEC.md (nomul/functional.h): softmax, log_softmax and logsumexp,
 * layer norm and batch norm's rows, label-smoothed cross-entropy and GELU.
 * Every product is a PAM (with the family's offset), every quotient a PAD,
 * exp, log and square root the PA ones; only additions, subtractions and
 * comparisons are done in float here, and the no-multiply test disassembles
 * this object to prove it.
 *
 * Backward: approx_bwd = 1 evaluates the float derivative's formula in PA
 * arithmetic; 0 chains the exact derivatives of every primitive the forward
 * used (recomputing its intermediates), with ⌊max⌋ treated as the constant
 * it is almost everywhere. The rows run on the array kernels; the scalar
 * chains of layer norm, batch norm and GELU stay as the twins they are
 * tested against (nomul_pa_chains_scalar), giving the same bits.
 */
#include <math.h>

#include "../arith/elt.h"
#include "../core/internal.h"
#include "functional_internal.h"
#include "nomul/arith.h"

#define LOG2E NOMUL_LOG2E_F32

int nomul_pa_chains_scalar;

/* The PAM offset of an operation: every PAM below, and its exact
 * derivative, use it (1: none). */
static float offset_of(const nomul_op_cfg *cfg) { return cfg->offset > 0.0f ? cfg->offset : 1.0f; }

static float pam(float off, float a, float b)
{
    return off != 1.0f ? nomul_pa_mul_off(a, b, off) : nomul_pa_mul(a, b);
}

/* both exact derivatives of pam(a, b) times g */
static void mul_grads(float off, float a, float b, float g, float *da, float *db)
{
    if (off != 1.0f)
        nomul_pa_mul_off_grad(a, b, off, g, da, db);
    else
        nomul_pa_mul_grad(a, b, g, da, db);
}
static float pad(float a, float b) { return nomul_pa_div(a, b); }

/* ∂PAM(a, b)/∂a · g and ∂PAD(a, b)/∂a · g, ∂/∂b · g (exact) */
static float mul_grad_a(float off, float a, float b, float g)
{
    float da, db;
    mul_grads(off, a, b, g, &da, &db);
    return da;
}

static void div_grads(float a, float b, float g, float *da, float *db)
{
    nomul_pa_div_grad(a, b, g, da, db);
}

/* out[j] = pam(a[j], b) for a row, through the array kernels (bit-identical
 * to the scalar PAM; out may be a) */
static void pam_row(float off, int n, const float *a, float b, float *out)
{
    if (off != 1.0f)
        nomul_pa_mul_off_vs((size_t)n, a, b, off, out);
    else
        nomul_pa_mul_vs((size_t)n, a, b, out);
}

/* ---- softmax, log_softmax, logsumexp: the row pipeline ------------------------------ */

/* The PA row pipeline shared by softmax and log_softmax: t = PAM(x, log2e),
 * s = ⌊max t⌋, u = t − s, e = paexp2(u); returns S = Σe (0 for an all −∞ row).
 * The elementwise steps run on the array kernels; the sum stays in order. */
static float pa_row_exp(float off, int n, const float *x, float *u, float *e, float *s_out)
{
    pam_row(off, n, x, LOG2E, u);
    float mx = -INFINITY;
    for (int j = 0; j < n; j++)
        mx = u[j] > mx ? u[j] : mx;
    float s = isfinite(mx) ? floorf(mx) : 0.0f;
    for (int j = 0; j < n; j++)
        u[j] -= s; /* s is an integer: exact */
    nomul_pa_exp2_v((size_t)n, u, e);
    float sum = 0.0f;
    for (int j = 0; j < n; j++)
        sum += e[j];
    *s_out = s;
    return sum;
}

/* The exact chain from S = Σ paexp2(u) back to each input of a row:
 * out[j] = ∂PAM(x_j, log2e)/∂x · paexp2'(u_j) · dS (out: a row of its own). */
static void pa_row_exp_grads(float off, int n, const float *x, const float *u, float dsum,
                             float *out)
{
    if (off != 1.0f) { /* no array kernel for the offset's broadcast form */
        for (int j = 0; j < n; j++)
            out[j] = mul_grad_a(off, x[j], LOG2E, nomul_pa_exp2_grad(u[j], dsum));
        return;
    }
    for (int j = 0; j < n; j++)
        out[j] = dsum;
    nomul_pa_exp2_grad_v((size_t)n, u, out, out);
    nomul_pa_mul_grad_vs((size_t)n, x, LOG2E, out, out);
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

static void softmax_row(float off, int n, const float *x, float *y, row_tmp *t)
{
    float s, sum = pa_row_exp(off, n, x, t->u, t->e, &s);
    if (sum > 0.0f)
        nomul_pa_div_vs((size_t)n, t->e, sum, y);
    else
        for (int j = 0; j < n; j++)
            y[j] = 0.0f;
}

void nomul_softmax_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y)
{
    const float off = offset_of(cfg);
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0); NOMUL_COUNT(FADD, 2 * t0);
#pragma omp parallel num_threads(nomul_fn_threads(t0))
    {
        row_tmp t = {NULL, NULL};
        int ok = tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++)
            if (ok)
                softmax_row(off, n, x + (long)i * n, y + (long)i * n, &t);
    }
}

void nomul_softmax_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                               const float *y, const float *dy, float *dx)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    long t0 = (long)rows * n; /* the audit */
    if (approx) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(FADD, 2 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(SHIFT, 4 * t0);
        NOMUL_COUNT(FADD, 4 * t0);
    }
#pragma omp parallel num_threads(nomul_fn_threads(t0))
    {
        row_tmp t = {NULL, NULL};
        int ok = approx || tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n, *yr = y + (long)i * n, *gr = dy + (long)i * n;
            float *dr = dx + (long)i * n;
            if (approx) { /* dx = y (dy − Σ dy·y) */
                float dot = 0.0f;
                for (int j = 0; j < n; j++)
                    dot += pam(off, gr[j], yr[j]);
                for (int j = 0; j < n; j++)
                    dr[j] += pam(off, yr[j], gr[j] - dot);
            } else { /* the chain of y = PAD(e, S), e = paexp2(u), u = PAM(x, log2e) − s */
                float s, sum = pa_row_exp(off, n, xr, t.u, t.e, &s), dsum = 0.0f;
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
                    float du = nomul_pa_exp2_grad(t.u[j], de[j] + dsum);
                    dr[j] += mul_grad_a(off, xr[j], LOG2E, du);
                }
            }
        }
    }
}

/* logsumexp = PAD(s + palog2(Σ paexp2(t − s)), log2e) per row, into lse
 * and/or y = x − logsumexp (log_softmax) */
void nomul_lse_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y,
                          float *lse)
{
    const float off = offset_of(cfg);
#pragma omp parallel num_threads(nomul_fn_threads((long)rows * n))
    {
        row_tmp t = {NULL, NULL};
        int ok = tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n;
            float s, sum = pa_row_exp(off, n, xr, t.u, t.e, &s);
            float l = pad(s + nomul_pa_log2(sum), LOG2E);
            if (lse)
                lse[i] = l;
            if (y)
                for (int j = 0; j < n; j++)
                    y[(long)i * n + j] = xr[j] - l;
        }
    }
}

void nomul_log_softmax_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                   const float *dy, float *dx)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    long t0 = (long)rows * n; /* the audit */
    if (approx) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0);
        NOMUL_COUNT(FADD, 5 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(SHIFT, 2 * t0 + 2 * rows); NOMUL_COUNT(FADD, 4 * t0);
    }
#pragma omp parallel num_threads(nomul_fn_threads(t0))
    {
        row_tmp t = {NULL, NULL};
        int ok = tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n, *gr = dy + (long)i * n;
            float *dr = dx + (long)i * n, gsum = 0.0f;
            for (int j = 0; j < n; j++)
                gsum += gr[j];
            if (approx) { /* dx = dy − softmax(x) Σdy with the PA softmax and PAM */
                softmax_row(off, n, xr, t.e, &t);
                pam_row(off, n, t.e, gsum, t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += gr[j] - t.e[j];
            } else { /* y = x − PAD(s + palog2(S), log2e), S = Σ paexp2(u) */
                float s, sum = pa_row_exp(off, n, xr, t.u, t.e, &s);
                float w = s + nomul_pa_log2(sum), dw, unused;
                div_grads(w, LOG2E, -gsum, &dw, &unused);
                pa_row_exp_grads(off, n, xr, t.u, nomul_pa_log2_grad(sum, dw), t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += gr[j] + t.e[j];
            }
        }
    }
}

void nomul_logsumexp_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                 const float *dlse, float *dx)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    long t0 = (long)rows * n; /* the audit */
    if (approx) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0);
        NOMUL_COUNT(FADD, 3 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(SHIFT, 2 * t0 + 2 * rows); NOMUL_COUNT(FADD, 3 * t0);
    }
#pragma omp parallel num_threads(nomul_fn_threads(t0))
    {
        row_tmp t = {NULL, NULL};
        int ok = tmp_alloc(&t, n);
#pragma omp for schedule(static)
        for (int i = 0; i < rows; i++) {
            if (!ok)
                continue;
            const float *xr = x + (long)i * n;
            float *dr = dx + (long)i * n, g = dlse[i];
            if (approx) { /* softmax(x) · dlse */
                softmax_row(off, n, xr, t.e, &t);
                pam_row(off, n, t.e, g, t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += t.e[j];
            } else { /* lse = PAD(w, log2e), w = s + palog2(S), S = Σ paexp2(u) */
                float s, sum = pa_row_exp(off, n, xr, t.u, t.e, &s), dw, unused;
                div_grads(s + nomul_pa_log2(sum), LOG2E, g, &dw, &unused);
                pa_row_exp_grads(off, n, xr, t.u, nomul_pa_log2_grad(sum, dw), t.e);
                for (int j = 0; j < n; j++)
                    dr[j] += t.e[j];
            }
        }
    }
}

/* ---- the PA chains on the array kernels (layer norm, batch norm, GELU) ------------- */

/* One elementwise operation on the array kernels, uncounted (the rows count
 * their operations themselves); b* marks a broadcast operand. */
static void elt(nomul_elt_op op, int n, const float *a, int ba, const float *b, int bb,
                const float *c, int bc, const float *d, int bd, float *o0, float *o1)
{
    nomul_elt_args g = {{a, b, c, d}, {ba, bb, bc, bd}, {o0, o1}, 0};
    nomul_elt_run(op, (size_t)n, &g);
}

/* out = pam(a, b) element by element (with the offset) */
static void elt_pam(float off, int n, const float *a, int ba, const float *b, int bb, float *out)
{
    if (off != 1.0f)
        elt(NOMUL_ELT_MUL_OFF, n, a, ba, b, bb, &off, 1, NULL, 0, out, NULL);
    else
        elt(NOMUL_ELT_MUL, n, a, ba, b, bb, NULL, 0, NULL, 0, out, NULL);
}

/* (da, db) = mul_grads(a, b, g) element by element */
static void elt_mul_grads(float off, int n, const float *a, int ba, const float *b, int bb,
                          const float *g, int bg, float *da, float *db)
{
    if (off != 1.0f)
        elt(NOMUL_ELT_MUL_OFF_GRAD, n, a, ba, b, bb, &off, 1, g, bg, da, db);
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
static float ln_row_stats(float off, int n, const float *xr, float eps, float *d, float *t,
                          float s[4])
{
    float nf = (float)n, sum = 0.0f, q = 0.0f;
    for (int j = 0; j < n; j++)
        sum += xr[j];
    float mu = pad(sum, nf);
    for (int j = 0; j < n; j++)
        d[j] = xr[j] - mu;
    elt_pam(off, n, d, 0, d, 0, t);
    for (int j = 0; j < n; j++)
        q += t[j];
    s[0] = sum;
    s[1] = mu;
    s[2] = q;
    s[3] = pad(q, nf);
    return nomul_pa_sqrt(s[3] + eps);
}

/* The forward of one row on the array kernels: the same operations as the
 * scalar chain in nomul_ln_row_forward_pa, each over the whole row, and the
 * sums in the same order, so the results are the same bits. */
static void ln_row_forward_arrays(float off, int n, const float *xr, const float *gamma, int gs,
                                  const float *beta, int bs, float eps, float *yr, float *mean,
                                  float *rstd, float *buf)
{
    float *d = buf, *t = buf + n, st[4];
    float r = ln_row_stats(off, n, xr, eps, d, t, st), mu = st[1];
    elt(NOMUL_ELT_DIV, n, d, 0, &r, 1, NULL, 0, NULL, 0, t, NULL); /* xhat */
    elt_pam(off, n, t, 0, gamma, gs == 0, t);
    for (int j = 0; j < n; j++)
        yr[j] = t[j] + beta[j * bs];
    *mean = mu;
    *rstd = r;
}

void nomul_ln_row_forward_pa(const nomul_op_cfg *cfg, int n, const float *xr,
                             const float *gamma, int gs, const float *beta, int bs, float eps,
                             float *yr, float *mean, float *rstd)
{
    const float off = offset_of(cfg);
    /* the audit: d², ·γ; xhat, μ, σ²; pa_sqrt; sums and adds */
    NOMUL_COUNT(PAM, 2L * n + 1); NOMUL_COUNT(PAD, (long)n + 2); NOMUL_COUNT(PALOG2, 1);
    NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(FADD, 4L * n + 1);
    float *buf = ln_buf(n, 2);
    if (buf) {
        ln_row_forward_arrays(off, n, xr, gamma, gs, beta, bs, eps, yr, mean, rstd, buf);
        return;
    }
    float nf = (float)n, sum = 0.0f, q = 0.0f; /* the scalar chain: the twin */
    for (int j = 0; j < n; j++)
        sum += xr[j];
    float mu = pad(sum, nf);
    for (int j = 0; j < n; j++)
        q += pam(off, xr[j] - mu, xr[j] - mu);
    float r = nomul_pa_sqrt(pad(q, nf) + eps);
    for (int j = 0; j < n; j++)
        yr[j] = pam(off, pad(xr[j] - mu, r), gamma[j * gs]) + beta[j * bs];
    *mean = mu;
    *rstd = r;
}

/* The backward of one row on the array kernels (exact: the chain through
 * the forward's intermediates; approximate: the formula with r the
 * divisor), the same operations and sums in the same order as the scalar
 * chains in nomul_ln_row_backward_pa, so the results are the same bits.
 * buf: 6n. */
static void ln_row_backward_arrays(float off, int approx, int n, const float *xr,
                                   const float *gamma, int gs, float mu, float r, float eps,
                                   const float *gr, float *dr, float *dgamma, float *dbeta,
                                   int bs, float *dd, float *buf)
{
    float *d = buf, *xh = buf + n, *u = buf + 2 * n, *v = buf + 3 * n, *a = buf + 4 * n,
          *b = buf + 5 * n, nf = (float)n;
    const int gb = gs == 0; /* γ broadcast */
    if (approx) {
        float s1 = 0.0f, s2 = 0.0f;
        for (int j = 0; j < n; j++)
            d[j] = xr[j] - mu;
        elt(NOMUL_ELT_DIV, n, d, 0, &r, 1, NULL, 0, NULL, 0, xh, NULL);
        elt_pam(off, n, gamma, gb, gr, 0, u); /* dnorm */
        elt_pam(off, n, u, 0, xh, 0, v);
        for (int j = 0; j < n; j++) {
            s1 += u[j];
            s2 += v[j];
        }
        float m1 = pad(s1, nf), m2 = pad(s2, nf);
        elt_pam(off, n, xh, 0, gr, 0, a);
        elt_pam(off, n, xh, 0, &m2, 1, b);
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
    float r2 = ln_row_stats(off, n, xr, eps, d, a, st), sum = st[0], q = st[2], var = st[3];
    elt(NOMUL_ELT_DIV, n, d, 0, &r2, 1, NULL, 0, NULL, 0, xh, NULL);
    elt_mul_grads(off, n, xh, 0, gamma, gb, gr, 0, u, v); /* dxhat, dγ */
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
    elt_mul_grads(off, n, d, 0, d, 0, &dq, 1, a, b); /* q = Σ PAM(d, d) */
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

void nomul_ln_row_backward_pa(const nomul_op_cfg *cfg, int n, const float *xr,
                              const float *gamma, int gs, float mu, float r, float eps,
                              const float *gr, float *dr, float *dgamma, float *dbeta, int bs,
                              float *dd)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    if (approx) { /* the audit */
        NOMUL_COUNT(PAM, 6L * n); NOMUL_COUNT(PAD, 3L * n + 2); NOMUL_COUNT(FADD, 9L * n);
    } else {
        NOMUL_COUNT(PAM, (long)n + 1); NOMUL_COUNT(PAD, (long)n + 2); NOMUL_COUNT(PALOG2, 1);
        NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(SHIFT, 5L * n + 3); NOMUL_COUNT(FADD, 9L * n);
    }
    float *buf = approx || dd ? ln_buf(n, 6) : NULL;
    if (buf) {
        ln_row_backward_arrays(off, approx, n, xr, gamma, gs, mu, r, eps, gr, dr, dgamma, dbeta,
                               bs, dd, buf);
        return;
    }
    float nf = (float)n; /* below, the scalar chains: the twins */
    if (approx) { /* the float formula, r the divisor, in PA */
        float s1 = 0.0f, s2 = 0.0f;
        for (int j = 0; j < n; j++) {
            float xhat = pad(xr[j] - mu, r), dnorm = pam(off, gamma[j * gs], gr[j]);
            s1 += dnorm;
            s2 += pam(off, dnorm, xhat);
        }
        float m1 = pad(s1, nf), m2 = pad(s2, nf);
        for (int j = 0; j < n; j++) {
            float xhat = pad(xr[j] - mu, r), dnorm = pam(off, gamma[j * gs], gr[j]);
            dbeta[j * bs] += gr[j];
            dgamma[j * gs] += pam(off, xhat, gr[j]);
            dr[j] += pad(dnorm - m1 - pam(off, xhat, m2), r);
        }
        return;
    }
    float sum = 0.0f, q = 0.0f, dr_ = 0.0f; /* the chain, recomputing the forward's values */
    for (int j = 0; j < n; j++)
        sum += xr[j];
    float mu2 = pad(sum, nf);
    for (int j = 0; j < n; j++)
        q += pam(off, xr[j] - mu2, xr[j] - mu2);
    float var = pad(q, nf), r2 = nomul_pa_sqrt(var + eps);
    for (int j = 0; j < n; j++) { /* y = PAM(xhat, γ) + β, xhat = PAD(d, r) */
        float d = xr[j] - mu2, xhat = pad(d, r2), dxhat, dg, a, b;
        mul_grads(off, xhat, gamma[j * gs], gr[j], &dxhat, &dg);
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
        mul_grads(off, d, d, dq, &a, &b);
        dd[j] += a + b;
        dmu -= dd[j];
    }
    float dsum;
    div_grads(sum, nf, dmu, &dsum, &unused);
    for (int j = 0; j < n; j++)
        dr[j] += dd[j] + dsum;
}

/* ---- batch norm: one channel ---------------------------------------------------------- */

void nomul_bn_channel_forward_pa(const nomul_op_cfg *cfg, long len, const float *row,
                                 const float *gamma, const float *beta, float eps,
                                 float momentum, int training, float *running_mean,
                                 float *running_var, float *out, float *mean, float *rstd)
{
    const float off = offset_of(cfg);
    if (training) {
        nomul_ln_row_forward_pa(cfg, (int)len, row, gamma, 0, beta, 0, eps, out, mean, rstd);
        /* running statistics (unbiased variance, as PyTorch keeps) */
        float var = 0.0f;
        NOMUL_COUNT(PAM, len + 2); NOMUL_COUNT(PAD, 1); NOMUL_COUNT(FADD, 2 * len + 4);
        for (long j = 0; j < len; j++)
            var += pam(off, row[j] - *mean, row[j] - *mean);
        var = pad(var, (float)(len > 1 ? len - 1 : 1));
        /* r += m·(v − r): PAM's error only changes how fast r moves, not
         * where it settles. The float form (1 − m)·r + m·v with PAMs would
         * settle about a quarter low for m = 0.1 (PAM(r, 0.9) is ~4% small,
         * and that error is divided by m), and evaluation would collapse. */
        *running_mean += pam(off, *mean - *running_mean, momentum);
        *running_var += pam(off, var - *running_var, momentum);
        return;
    }
    NOMUL_COUNT(PAM, len); NOMUL_COUNT(PAD, len); NOMUL_COUNT(FADD, 2 * len); /* evaluation */
    NOMUL_COUNT(PALOG2, len); NOMUL_COUNT(PAEXP2, len); NOMUL_COUNT(PAM, len);
    for (long j = 0; j < len; j++) {
        float d = row[j] - *running_mean;
        out[j] = pam(off, pad(d, nomul_pa_sqrt(*running_var + eps)), gamma[0]) + beta[0];
    }
}

/* ---- label-smoothed cross-entropy ------------------------------------------------ */

/* the loss of one row, and its parts (for the exact backward):
 * nll = −logp[t], smooth = −Σ logp, msm = PAD(smooth, n) */
static float ce_row(float off, int n, const float *lp, int t, float eps, float *nll, float *msm,
                    float *smooth_out)
{
    float smooth = 0.0f;
    for (int c = 0; c < n; c++)
        smooth -= lp[c];
    *smooth_out = smooth;
    *nll = -lp[t];
    *msm = pad(smooth, (float)n);
    return pam(off, *nll, 1.0f - eps) + (eps != 0.0f ? pam(off, *msm, eps) : 0.0f);
}

float nomul_cross_entropy_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                     const int *target, int ignore_index, float smoothing,
                                     int used)
{
    const float off = offset_of(cfg);
    long t0 = (long)rows * n; /* the audit (an upper bound: ignored rows too) */
    NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    if (used <= 0)
        return used < 0 ? NAN : 0.0f;
    float total = 0.0f, nll, msm, smooth;
    for (int i = 0; i < rows; i++)
        if (target[i] != ignore_index)
            total += ce_row(off, n, logp + (long)i * n, target[i], smoothing, &nll, &msm, &smooth);
    return pad(total, (float)used);
}

int nomul_cross_entropy_rows_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                const int *target, int ignore_index, float smoothing,
                                float *loss)
{
    const float off = offset_of(cfg);
    NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows); NOMUL_COUNT(FADD, (long)rows * n);
    int used = 0;
    float nll, msm, smooth;
    for (int i = 0; i < rows; i++) {
        if (target[i] == ignore_index)
            continue;
        if (target[i] < 0 || target[i] >= n)
            return -1;
        loss[used++] = ce_row(off, n, logp + (long)i * n, target[i], smoothing, &nll, &msm,
                              &smooth);
    }
    return used;
}

void nomul_cross_entropy_backward_pa(const nomul_op_cfg *cfg, int rows, int n,
                                     const float *logp, const int *target, int ignore_index,
                                     float smoothing, float dloss, int used, float *dlogp)
{
    nomul_cross_entropy_backward_pa_total(cfg, rows, n, logp, target, ignore_index, smoothing,
                                          dloss, used, NULL, dlogp);
}

void nomul_cross_entropy_backward_pa_total(const nomul_op_cfg *cfg, int rows, int n,
                                           const float *logp, const int *target,
                                           int ignore_index, float smoothing, float dloss,
                                           int used, const float *total_in, float *dlogp)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    long t0 = (long)rows * n; /* the audit */
    if (approx) {
        NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    } else {
        NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(SHIFT, 3L * rows + 1);
        NOMUL_COUNT(FADD, 2 * t0 + rows);
    }
    if (used == 0)
        return;
    float total = 0.0f, nll, msm, smooth, nf = (float)n, g, unused;
    if (approx) {
        g = pad(dloss, (float)used);
    } else { /* loss = PAD(Σ loss_i, used) */
        for (int i = 0; !total_in && i < rows; i++)
            if (target[i] != ignore_index && target[i] >= 0 && target[i] < n)
                total += ce_row(off, n, logp + (long)i * n, target[i], smoothing, &nll, &msm,
                                &smooth);
        div_grads(total_in ? *total_in : total, (float)used, dloss, &g, &unused);
    }
    for (int i = 0; i < rows; i++) {
        int t = target[i];
        if (t == ignore_index || t < 0 || t >= n)
            continue;
        float *dr = dlogp + (long)i * n, dnll, dsmooth;
        if (approx) {
            dnll = pam(off, g, 1.0f - smoothing);
            dsmooth = smoothing != 0.0f ? pad(pam(off, g, smoothing), nf) : 0.0f;
        } else { /* loss_i = PAM(nll, 1 − ε) + PAM(PAD(smooth, n), ε) */
            ce_row(off, n, logp + (long)i * n, t, smoothing, &nll, &msm, &smooth);
            dnll = mul_grad_a(off, nll, 1.0f - smoothing, g);
            dsmooth = 0.0f;
            if (smoothing != 0.0f)
                div_grads(smooth, nf, mul_grad_a(off, msm, smoothing, g), &dsmooth, &unused);
        }
        /* nll = −logp[t], smooth = −Σ logp */
        dr[t] -= dnll;
        for (int c = 0; c < n; c++)
            dr[c] -= dsmooth;
    }
}

/* ---- GELU: x σ(1.702 x) ------------------------------------------------------------- */

#define GELU_K 1.702f

/* GELU's PA chain on the array kernels, CH values at a time: the scalar
 * chain's operations in its order, so the same bits (the scalar loops below
 * stay as the twin). */
enum { GELU_CH = 256 };

/* z = PAM(k, x), e = pa_exp(−z), q = 1 + e, s = PAD(1, q) for c values */
static void gelu_s(float off, int c, const float *x, float *z, float *e, float *q, float *s)
{
    const float k = GELU_K, one = 1.0f;
    elt_pam(off, c, &k, 1, x, 0, z);
    for (int i = 0; i < c; i++)
        e[i] = -z[i];
    elt(NOMUL_ELT_EXP, c, e, 0, NULL, 0, NULL, 0, NULL, 0, e, NULL);
    for (int i = 0; i < c; i++)
        q[i] = 1.0f + e[i];
    elt(NOMUL_ELT_DIV, c, &one, 1, q, 0, NULL, 0, NULL, 0, s, NULL);
}

void nomul_gelu_forward_pa(const nomul_op_cfg *cfg, long n, const float *x, float *y)
{
    const float off = offset_of(cfg);
    NOMUL_COUNT(PAM, 3 * n); NOMUL_COUNT(PAEXP2, n); NOMUL_COUNT(PAD, n); NOMUL_COUNT(FADD, n);
    const int chains = !nomul_pa_chains_scalar;
#pragma omp parallel num_threads(nomul_fn_threads(n))
    {
        if (chains) {
            float z[GELU_CH], e[GELU_CH], q[GELU_CH], s[GELU_CH];
#pragma omp for schedule(static)
            for (long i0 = 0; i0 < n; i0 += GELU_CH) {
                int c = n - i0 < GELU_CH ? (int)(n - i0) : GELU_CH;
                gelu_s(off, c, x + i0, z, e, q, s);
                elt_pam(off, c, x + i0, 0, s, 0, y + i0);
            }
        } else {
#pragma omp for schedule(static)
            for (long i = 0; i < n; i++) {
                float z = pam(off, GELU_K, x[i]);
                float s = pad(1.0f, 1.0f + nomul_pa_exp(-z));
                y[i] = pam(off, x[i], s);
            }
        }
    }
}

/* dx += the PA backward of GELU for c values (see the scalar chain below) */
static void gelu_backward_chunk(float off, int approx, int c, const float *x, const float *g,
                                float *dx)
{
    float z[GELU_CH], e[GELU_CH], q[GELU_CH], s[GELU_CH], a[GELU_CH], b[GELU_CH];
    const float k = GELU_K, one = 1.0f;
    gelu_s(off, c, x, z, e, q, s);
    if (approx) { /* t = PAM(PAM(k, x), PAM(s, 1 − s)); dx += PAM(g, s + t) */
        for (int i = 0; i < c; i++)
            a[i] = 1.0f - s[i];
        elt_pam(off, c, s, 0, a, 0, a);
        elt_pam(off, c, z, 0, a, 0, a);
        for (int i = 0; i < c; i++)
            a[i] = s[i] + a[i];
        elt_pam(off, c, g, 0, a, 0, a);
        for (int i = 0; i < c; i++)
            dx[i] += a[i];
        return;
    }
    elt_mul_grads(off, c, x, 0, s, 0, g, 0, a, b);                    /* a = dxa, b = ds */
    elt(NOMUL_ELT_DIV_GRAD, c, &one, 1, q, 0, b, 0, NULL, 0, NULL, b); /* b = dq */
    for (int i = 0; i < c; i++)
        z[i] = -z[i];
    elt(NOMUL_ELT_EXP_GRAD, c, z, 0, b, 0, NULL, 0, NULL, 0, b, NULL); /* ∂/∂(−z) */
    for (int i = 0; i < c; i++)
        b[i] = -b[i];
    elt_mul_grads(off, c, &k, 1, x, 0, b, 0, NULL, b);                /* b = dxz */
    for (int i = 0; i < c; i++)
        dx[i] += a[i] + b[i];
}

void nomul_gelu_backward_pa(const nomul_op_cfg *cfg, long n, const float *x, const float *dy,
                            float *dx)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    if (approx) { /* the audit */
        NOMUL_COUNT(PAM, 8 * n); NOMUL_COUNT(PAEXP2, n); NOMUL_COUNT(PAD, n);
        NOMUL_COUNT(FADD, 4 * n);
    } else {
        NOMUL_COUNT(PAM, 2 * n); NOMUL_COUNT(PAEXP2, n); NOMUL_COUNT(PAD, n);
        NOMUL_COUNT(SHIFT, 5 * n); NOMUL_COUNT(FADD, 4 * n);
    }
    const int chains = !nomul_pa_chains_scalar;
#pragma omp parallel num_threads(nomul_fn_threads(n))
    {
        if (chains) {
#pragma omp for schedule(static)
            for (long i0 = 0; i0 < n; i0 += GELU_CH)
                gelu_backward_chunk(off, approx, n - i0 < GELU_CH ? (int)(n - i0) : GELU_CH,
                                    x + i0, dy + i0, dx + i0);
        } else {
#pragma omp for schedule(static)
            for (long i = 0; i < n; i++) {
                float xi = x[i], g = dy[i];
                float z = pam(off, GELU_K, xi), e = nomul_pa_exp(-z), q = 1.0f + e,
                      s = pad(1.0f, q);
                if (approx) { /* σ + k x σ (1 − σ), in PA */
                    float t = pam(off, pam(off, GELU_K, xi), pam(off, s, 1.0f - s));
                    dx[i] += pam(off, g, s + t);
                    continue;
                }
                /* y = PAM(x, s), s = PAD(1, q), q = 1 + e, e = pa_exp(−z), z = PAM(k, x) */
                float dxa, ds, unused, dq, dz_neg, dxz;
                mul_grads(off, xi, s, g, &dxa, &ds);
                nomul_pa_div_grad(1.0f, q, ds, &unused, &dq);
                dz_neg = nomul_pa_exp_grad(-z, dq, 0); /* ∂/∂(−z) */
                mul_grads(off, GELU_K, xi, -dz_neg, &unused, &dxz);
                dx[i] += dxa + dxz;
            }
        }
    }
}
