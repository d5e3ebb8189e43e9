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
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

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

static void elt_pam(float off, int n, const float *a, int ba, const float *b, int bb, float *out);

/* out[j] = pam(a[j], b) for a row, through the array kernels (bit-identical
 * to the scalar PAM; out may be a). Like every array step of this file it
 * runs on the internal kernels, which do not count: the entry points count
 * their operations for the audit once. */
static void pam_row(float off, int n, const float *a, float b, float *out)
{
    elt_pam(off, n, a, 0, &b, 1, out);
}

/* ---- softmax, log_softmax, logsumexp: the row pipeline ------------------------------ */

/* The largest of n values, NaNs skipped: what `m = u[j] > m ? u[j] : m`
 * from −∞ gives, in four interleaved vectors of partial maxima (a comparison
 * chain per element costs a compare's latency; four chains hide it). The
 * maximum of a set does not depend on the order it is taken in, except for
 * which zero a zero maximum is (+0 and −0 compare equal, and the first one
 * met stays): such a row is taken again in order. The in-order loop is the
 * twin (nomul_pa_chains_scalar). */
static float row_max(int n, const float *u)
{
    float mx = -INFINITY;
    int j = 0;
    const int vec = !nomul_pa_chains_scalar && n >= 16;
    if (vec) {
        typedef float v4 __attribute__((vector_size(16)));
        typedef int32_t i4 __attribute__((vector_size(16)));
        v4 m[4];
        for (int k = 0; k < 4; k++)
            m[k] = (v4){0} - INFINITY;
        for (; j + 16 <= n; j += 16)
            for (int k = 0; k < 4; k++) {
                v4 a;
                memcpy(&a, u + j + 4 * k, sizeof a);
                i4 gt = a > m[k];
                m[k] = (v4)(((i4)a & gt) | ((i4)m[k] & ~gt));
            }
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 4; l++)
                mx = m[k][l] > mx ? m[k][l] : mx;
    }
    for (; j < n; j++)
        mx = u[j] > mx ? u[j] : mx;
    if (mx == 0.0f && vec) {
        mx = -INFINITY;
        for (j = 0; j < n; j++)
            mx = u[j] > mx ? u[j] : mx;
    }
    return mx;
}

/* Rows are taken GROUP at a time: their sums run side by side. The row
 * pipeline of softmax, log_softmax and logsumexp takes short rows more at
 * a time (rows_group): attention's 17-long rows, eight at a time, paid for
 * a kernel call per 136 values (softmax's exact backward 15% faster at 30);
 * layer norm keeps 8 (at 32 rows of 64 its eleven buffers leave L1). */
enum { GROUP = NOMUL_PA_GROUP, ROWS_MAX = 32 };

/* The rows of n values the row pipeline takes at a time: about 512
 * values, from GROUP to ROWS_MAX rows (a function of n alone: the groups,
 * and so the threads' shares, never change the bits) */
static int rows_group(int n)
{
    int k = 512 / (n > 0 ? n : 1);
    return k < GROUP ? GROUP : k > ROWS_MAX ? ROWS_MAX : k;
}

typedef float v4 __attribute__((vector_size(16)));

/* acc ±= the 4×4 block of rows p[0..3], columns j..j+3, column by column:
 * each lane carries its row's chain */
static inline __attribute__((always_inline)) void row_sums_step(const float *const *p, int j,
                                                                int neg, v4 *acc)
{
    v4 x0, x1, x2, x3;
    memcpy(&x0, p[0] + j, sizeof x0);
    memcpy(&x1, p[1] + j, sizeof x1);
    memcpy(&x2, p[2] + j, sizeof x2);
    memcpy(&x3, p[3] + j, sizeof x3);
    v4 t0 = __builtin_shufflevector(x0, x1, 0, 4, 1, 5);
    v4 t1 = __builtin_shufflevector(x0, x1, 2, 6, 3, 7);
    v4 t2 = __builtin_shufflevector(x2, x3, 0, 4, 1, 5);
    v4 t3 = __builtin_shufflevector(x2, x3, 2, 6, 3, 7);
    v4 c0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    v4 c1 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    v4 c2 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    v4 c3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
    v4 a = *acc;
    if (neg)
        a = (((a - c0) - c1) - c2) - c3;
    else
        a = (((a + c0) + c1) + c2) + c3;
    *acc = a;
}

/* row_sums for 4·nq rows p[0..4·nq − 1] (nq 2 or 4, constants after
 * inlining): nq chains side by side, each kept in a register */
static inline __attribute__((always_inline)) void row_sums_quads(int nq, int n,
                                                                 const float *const *p,
                                                                 int neg, v4 *out)
{
    v4 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        row_sums_step(p, j, neg, &a0);
        row_sums_step(p + 4, j, neg, &a1);
        if (nq > 2) {
            row_sums_step(p + 8, j, neg, &a2);
            row_sums_step(p + 12, j, neg, &a3);
        }
    }
    for (; j < n; j++) {
        v4 c0 = {p[0][j], p[1][j], p[2][j], p[3][j]}, c1 = {p[4][j], p[5][j], p[6][j], p[7][j]};
        a0 = neg ? a0 - c0 : a0 + c0;
        a1 = neg ? a1 - c1 : a1 + c1;
        if (nq > 2) {
            v4 c2 = {p[8][j], p[9][j], p[10][j], p[11][j]};
            v4 c3 = {p[12][j], p[13][j], p[14][j], p[15][j]};
            a2 = neg ? a2 - c2 : a2 + c2;
            a3 = neg ? a3 - c3 : a3 + c3;
        }
    }
    out[0] = a0;
    out[1] = a1;
    if (nq > 2) {
        out[2] = a2;
        out[3] = a3;
    }
}

/* row_sums' fast path for k ≤ 16 rows */
static void row_sums16(int k, int n, const float *a, long stride, int neg, float *out)
{
    const float *p[16]; /* rows past k repeat row 0; their sums are dropped */
    for (int r = 0; r < 16; r++)
        p[r] = a + (r < k ? r : 0) * stride;
    v4 acc[4];
    if (k <= 8) {
        if (neg)
            row_sums_quads(2, n, p, 1, acc);
        else
            row_sums_quads(2, n, p, 0, acc);
    } else {
        if (neg)
            row_sums_quads(4, n, p, 1, acc);
        else
            row_sums_quads(4, n, p, 0, acc);
    }
    for (int r = 0; r < k; r++)
        out[r] = acc[r / 4][r % 4];
}

/* The in-order sums of k ≤ GROUP rows of n values (row r at a + r·stride):
 * out[r] = ((0 ± a_r[0]) ± a_r[1]) ± … (− where neg), each with the bits of
 * the one-row loop `s ± = a[j]`. A float sum in order is a chain of
 * dependent additions, one addition's latency per value; here each lane of
 * a vector carries one row's chain (4×4 blocks transposed in registers feed
 * the lanes), and two to four vectors' chains interleave, so sixteen rows
 * cost what one did (row_sums16, sixteen rows at a time). The one-row loops are the twin
 * (nomul_pa_chains_scalar). */
static void row_sums(int k, int n, const float *a, long stride, int neg, float *out)
{
    if (nomul_pa_chains_scalar) {
        for (int r = 0; r < k; r++) {
            const float *ar = a + r * stride;
            float sum = 0.0f;
            if (neg)
                for (int j = 0; j < n; j++)
                    sum -= ar[j];
            else
                for (int j = 0; j < n; j++)
                    sum += ar[j];
            out[r] = sum;
        }
        return;
    }
    for (int r0 = 0; r0 < k; r0 += 16)
        row_sums16(k - r0 < 16 ? k - r0 : 16, n, a + r0 * stride, stride, neg, out + r0);
}

/* Scratch rows of a group: u, e and w (a backward's terms), and z (a
 * per-row scalar spread over its row), rows_group(n) rows of n each. */
typedef struct {
    float *u, *e, *w, *z, *d; /* d: a group's rows of dy where they are made (rows_job) */
} row_tmp;

static int tmp_alloc(row_tmp *t, int n)
{
    const size_t G = (size_t)rows_group(n) * n;
    t->u = nomul_scratch(NOMUL_SCRATCH_ROW, 5 * G);
    t->e = t->u ? t->u + G : NULL;
    t->w = t->u ? t->u + 2 * G : NULL;
    t->z = t->u ? t->u + 3 * G : NULL;
    t->d = t->u ? t->u + 4 * G : NULL;
    return t->u != NULL;
}

/* z row r = v[r] (k rows of n): a per-row scalar as an array, so that one
 * kernel call serves the group (the kernels compute each element alone: the
 * same bits as a call per row with v[r] broadcast; attention's rows are 17
 * long, where a call per row costs more than its elements and leaves most
 * of the second vector's lanes empty) */
static const float *spread(int k, int n, const float *v, float *z)
{
    for (int r = 0; r < k; r++)
        for (int c = 0; c < n; c++)
            z[(long)r * n + c] = v[r];
    return z;
}

/* The PA row pipeline shared by softmax, log_softmax and logsumexp, for the
 * k rows of a group (row r of x at x + r·n): t = PAM(x, log2e),
 * s = ⌊max t⌋, u = t − s, e = paexp2(u) into t->u, t->e (row r at r·n);
 * s[r], and sum[r] = Σe (0 for an all −∞ row). The elementwise steps run on
 * the array kernels; the sums are in order (row_sums). */
static void pa_rows_exp(float off, int k, int n, const float *x, row_tmp *t, float *s,
                        float *sum)
{
    /* the group's rows are contiguous: one kernel call each for PAM and
     * paexp2 over all of them (short rows, e.g. attention's, would pay a
     * call per row and step otherwise) */
    pam_row(off, k * n, x, LOG2E, t->u);
    /* long rows: the shift and paexp2 in one fused pass per row (AVX2,
     * AVX-512); short ones (attention's): one paexp2 call for the group */
    const nomul_pa_fused *f = n >= 64 && !nomul_pa_chains_scalar ? nomul_pa_fused_active() : NULL;
    for (int r = 0; r < k; r++) {
        float *u = t->u + (long)r * n;
        float mx = row_max(n, u);
        s[r] = isfinite(mx) ? floorf(mx) : 0.0f;
        if (f) {
            f->exp2_shifted(n, u, s[r], t->e + (long)r * n);
            continue;
        }
        for (int j = 0; j < n; j++)
            u[j] -= s[r]; /* s is an integer: exact */
    }
    if (!f)
        nomul_elt(NOMUL_ELT_EXP2, (size_t)(k * n), t->u, 0, NULL, 0, NULL, 0, NULL, 0, t->e,
                  NULL);
    row_sums(k, n, t->e, n, 0, sum);
}

/* pa_rows_exp's u for a group whose shifts s were kept by the forward:
 * u = PAM(x, log2e) − s into t->u (row r at r·n), without the maximum */
static void pa_rows_u_kept(float off, int k, int n, const float *x, const float *s, row_tmp *t)
{
    pam_row(off, k * n, x, LOG2E, t->u);
    for (int r = 0; r < k; r++) {
        float *u = t->u + (long)r * n;
        for (int c = 0; c < n; c++)
            u[c] -= s[r]; /* s is an integer: exact */
    }
}

/* logsumexp = PAD(s + palog2(S), log2e) of each row of a group (from
 * pa_rows_exp's s and S), into lse[r] where lse is given, and y = x − it
 * into y's rows where y is given (row r of x and y at r·n) */
static void pa_rows_lse(int k, int n, const float *x, const float *s, const float *sum,
                        float *lse, float *y)
{
    for (int r = 0; r < k; r++) {
        float l = pad(s[r] + nomul_pa_log2(sum[r]), LOG2E);
        if (lse)
            lse[r] = l;
        if (y) {
            const float *xr = x + (long)r * n;
            float *yr = y + (long)r * n;
            for (int c = 0; c < n; c++)
                yr[c] = xr[c] - l;
        }
    }
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
    const float log2e = LOG2E;
    for (int j = 0; j < n; j++)
        out[j] = dsum;
    nomul_elt(NOMUL_ELT_EXP2_GRAD, (size_t)n, u, 0, out, 0, NULL, 0, NULL, 0, out, NULL);
    nomul_elt(NOMUL_ELT_MUL_GRAD, (size_t)n, x, 0, &log2e, 1, out, 0, NULL, 0, out, NULL);
}

/* The cross-entropy's kept values (nomul_ce_logits_forward_pa), rows
 * floats each: a used row's loss and the exact derivative's parts nll, msm
 * and smooth (ce_row's; 0 for a skipped row), then every row's shift s and
 * sum S (pa_rows_exp's); after them, for the approximate backward,
 * e = paexp2(u), rows × n. */
enum { CK_LOSS, CK_NLL, CK_MSM, CK_SMOOTH, CK_S, CK_SUM, CK_ARRAYS };

/* Runs body(i0, k, t) over the rows in groups of rows_group(n), the groups
 * split among the threads (one thread: no OpenMP team), each thread with
 * its scratch rows; a thread out of scratch memory skips its groups (after
 * the report). */
typedef struct {
    const nomul_op_cfg *cfg;
    int rows, n;
    const float *x, *y, *dy, *dlse;
    float *out, *lse;
    float *keep;       /* softmax's forward: e | Σe | s written, or NULL */
    const float *kept; /* its exact backward: those read, or NULL */
    /* log_softmax's backward: dy's rows i0..i0+k−1 made by make_dy(dy_ctx)
     * into a row buffer (k × n) instead of read from dy (the cross-entropy's
     * gradient, fused: nomul_ce_lsm_backward_pa) */
    void (*make_dy)(const void *dy_ctx, int i0, int k, float *dy);
    const void *dy_ctx;
    int store; /* log_softmax's backward: out = +0 + its term, not out += it */
    /* the cross-entropy from the logits (nomul_ce_logits_forward_pa): its
     * targets, and its kept values (the CK_ layout above), written by the
     * forward, read by log_softmax's backward instead of recomputed */
    const int *target;
    int ignore_index;
    float eps;
    float *ce_keep;
} rows_job;
typedef void (*rows_body)(const rows_job *j, int i0, int k, row_tmp *t);

static void rows_range(const rows_job *j, rows_body body, int g0, int g1)
{
    row_tmp t;
    if (g0 >= g1 || !tmp_alloc(&t, j->n))
        return;
    const int G = rows_group(j->n);
    for (int g = g0; g < g1; g++) {
        int i0 = g * G, k = j->rows - i0 < G ? j->rows - i0 : G;
        body(j, i0, k, &t);
    }
}

static void rows_run(const rows_job *j, rows_body body)
{
    const int G = rows_group(j->n), groups = (j->rows + G - 1) / G;
    /* the twin on one thread: a wrong split of the fast path shows */
    int nt = nomul_pa_chains_scalar ? 1 : nomul_fn_threads((long)j->rows * j->n);
    if (nt <= 1 || groups < 2) {
        rows_range(j, body, 0, groups);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        long q = omp_get_num_threads(), t = omp_get_thread_num();
        rows_range(j, body, (int)(groups * t / q), (int)(groups * (t + 1) / q));
    }
}

static void softmax_body(const rows_job *j, int i0, int k, row_tmp *t)
{
    const int n = j->n;
    float s[ROWS_MAX], sum[ROWS_MAX];
    row_tmp tk = *t; /* e straight into the kept values, where kept */
    if (j->keep)
        tk.e = j->keep + (long)i0 * n;
    pa_rows_exp(offset_of(j->cfg), k, n, j->x + (long)i0 * n, &tk, s, sum);
    float *y = j->out + (long)i0 * n;
    nomul_elt(NOMUL_ELT_DIV, (size_t)k * n, tk.e, 0, spread(k, n, sum, t->z), 0, NULL, 0, NULL,
              0, y, NULL);
    for (int r = 0; r < k; r++)
        if (!(sum[r] > 0.0f)) /* an all −∞ row */
            memset(y + (long)r * n, 0, (size_t)n * sizeof *y);
    if (j->keep) {
        float *ksum = j->keep + (long)j->rows * n, *ks = ksum + j->rows;
        for (int r = 0; r < k; r++) {
            ksum[i0 + r] = sum[r];
            ks[i0 + r] = s[r];
        }
    }
}

void nomul_softmax_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y,
                              float *keep)
{
    long t0 = (long)rows * n; /* the audit */
    NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0); NOMUL_COUNT(FADD, 2 * t0);
    rows_run(&(rows_job){.cfg = cfg, .rows = rows, .n = n, .x = x, .out = y, .keep = keep},
             softmax_body);
}

static void softmax_backward_body(const rows_job *j, int i0, int k, row_tmp *t)
{
    const float off = offset_of(j->cfg);
    const int n = j->n;
    if (j->cfg->approx_bwd) { /* dx = y (dy − Σ dy·y) */
        float dot[ROWS_MAX];
        const float *y = j->y + (long)i0 * n, *g = j->dy + (long)i0 * n;
        if (nomul_pa_chains_scalar) { /* the twin: PAM by PAM */
            for (int c = 0; c < k * n; c++)
                t->e[c] = pam(off, g[c], y[c]);
        } else { /* the group's rows at once (the audit counted them) */
            elt_pam(off, k * n, g, 0, y, 0, t->e);
        }
        row_sums(k, n, t->e, n, 0, dot);
        for (int r = 0; r < k; r++)
            for (int c = 0; c < n; c++)
                t->w[(long)r * n + c] = g[(long)r * n + c] - dot[r];
        float *dr = j->out + (long)i0 * n;
        if (nomul_pa_chains_scalar)
            for (int c = 0; c < k * n; c++)
                t->w[c] = pam(off, y[c], t->w[c]);
        else
            elt_pam(off, k * n, y, 0, t->w, 0, t->w);
        for (int c = 0; c < k * n; c++)
            dr[c] += t->w[c];
        return;
    }
    /* the chain of y = PAD(e, S), e = paexp2(u), u = PAM(x, log2e) − s;
     * e, S and s the forward's where kept (then u = PAM(x, log2e) − s
     * again), else recomputed */
    float s[ROWS_MAX], sum[ROWS_MAX], dsum[ROWS_MAX];
    /* the last steps in one fused pass (AVX2, AVX-512), which recomputes u,
     * for a group whose every row has a positive S (an all −∞ row adds
     * nothing: such groups take the steps below) */
    const nomul_pa_fused *f = !nomul_pa_chains_scalar && off == 1.0f ? nomul_pa_fused_active()
                                                                      : NULL;
    if (j->kept) {
        const float *ksum = j->kept + (long)j->rows * n, *ks = ksum + j->rows;
        for (int r = 0; r < k; r++) {
            sum[r] = ksum[i0 + r];
            s[r] = ks[i0 + r];
            if (!(sum[r] > 0.0f))
                f = NULL;
        }
        if (!f)
            pa_rows_u_kept(off, k, n, j->x + (long)i0 * n, s, t);
    } else {
        pa_rows_exp(off, k, n, j->x + (long)i0 * n, t, s, sum);
        for (int r = 0; r < k; r++)
            if (!(sum[r] > 0.0f))
                f = NULL;
    }
    /* e: the kept values, read in place by the array kernels; the twin
     * overwrites its e with de, so it works on a copy */
    const float *e_in = j->kept ? j->kept + (long)i0 * n : t->e;
    if (nomul_pa_chains_scalar || off != 1.0f) { /* the twin, and the offset's form */
        if (j->kept)
            memcpy(t->e, e_in, (size_t)k * n * sizeof *t->e);
        for (int r = 0; r < k; r++) {
            if (!(sum[r] > 0.0f))
                continue;
            const float *xr = j->x + (long)(i0 + r) * n, *gr = j->dy + (long)(i0 + r) * n;
            const float *u = t->u + (long)r * n;
            float *dr = j->out + (long)(i0 + r) * n, *e = t->e + (long)r * n, ds = 0.0f;
            float *de = e; /* e is not needed once its gradient is formed */
            for (int c = 0; c < n; c++) {
                float da, db;
                div_grads(e[c], sum[r], gr[c], &da, &db);
                de[c] = da;
                ds += db;
            }
            for (int c = 0; c < n; c++) {
                float du = nomul_pa_exp2_grad(u[c], de[c] + ds);
                dr[c] += mul_grad_a(off, xr[c], LOG2E, du);
            }
        }
        return;
    }
    /* on the array kernels: de = ∂PAD/∂e · dy in place of e, the terms of
     * dS = Σ ∂PAD/∂S · dy in w (summed in order, rows side by side), then
     * du = paexp2'(u) (de + dS) and dx += ∂PAM(x, log2e)/∂x · du */
    /* (the internal kernels: nomul_softmax_backward_pa has counted these
     * operations for the audit) */
    /* (each step over the whole group: rows whose S is 0 are computed and
     * not added) */
    const float log2e = LOG2E;
    const size_t kn = (size_t)k * n;
    nomul_elt(NOMUL_ELT_DIV_GRAD, kn, e_in, 0, spread(k, n, sum, t->z), 0,
              j->dy + (long)i0 * n, 0, NULL, 0, t->e, t->w);
    row_sums(k, n, t->w, n, 0, dsum);
    if (f) { /* s and dS spread over z and w (their arrays read already) */
        f->softmax_backward_exact((int)kn, j->x + (long)i0 * n, spread(k, n, s, t->z), t->e,
                                  spread(k, n, dsum, t->w), j->out + (long)i0 * n);
        return;
    }
    for (int r = 0; r < k; r++)
        for (int c = 0; c < n; c++)
            t->e[(long)r * n + c] += dsum[r];
    nomul_elt(NOMUL_ELT_EXP2_GRAD, kn, t->u, 0, t->e, 0, NULL, 0, NULL, 0, t->e, NULL);
    nomul_elt(NOMUL_ELT_MUL_GRAD, kn, j->x + (long)i0 * n, 0, &log2e, 1, t->e, 0, NULL, 0, t->e,
              NULL);
    for (int r = 0; r < k; r++) {
        if (!(sum[r] > 0.0f))
            continue;
        const float *v = t->e + (long)r * n;
        float *dr = j->out + (long)(i0 + r) * n;
        for (int c = 0; c < n; c++)
            dr[c] += v[c];
    }
}

void nomul_softmax_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                               const float *y, const float *keep, const float *dy, float *dx)
{
    long t0 = (long)rows * n; /* the audit */
    if (cfg->approx_bwd) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(FADD, 2 * t0);
    } else { /* with e and Σe kept: no paexp2 and no Σ again */
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, keep ? 0 : t0); NOMUL_COUNT(SHIFT, 4 * t0);
        NOMUL_COUNT(FADD, keep ? 3 * t0 : 4 * t0);
    }
    rows_run(&(rows_job){.cfg = cfg, .rows = rows, .n = n, .x = x, .y = y, .dy = dy, .out = dx,
                         .kept = keep},
             softmax_backward_body);
}

/* logsumexp = PAD(s + palog2(Σ paexp2(t − s)), log2e) per row, into lse
 * and/or y = x − logsumexp (log_softmax) */
static void lse_body(const rows_job *j, int i0, int k, row_tmp *t)
{
    const int n = j->n;
    float s[ROWS_MAX], sum[ROWS_MAX];
    pa_rows_exp(offset_of(j->cfg), k, n, j->x + (long)i0 * n, t, s, sum);
    pa_rows_lse(k, n, j->x + (long)i0 * n, s, sum, j->lse ? j->lse + i0 : NULL,
                j->out ? j->out + (long)i0 * n : NULL);
}

void nomul_lse_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y,
                          float *lse)
{
    rows_run(&(rows_job){.cfg = cfg, .rows = rows, .n = n, .x = x, .out = y, .lse = lse},
             lse_body);
}

/* The backward of log_softmax (dlse NULL: dy is its rows' gradient, whose
 * sums are logsumexp's) and of logsumexp (dlse: one gradient per row). */
static void lse_backward_body(const rows_job *j, int i0, int k, row_tmp *t)
{
    const float off = offset_of(j->cfg);
    const int n = j->n, lsm = j->dlse == NULL;
    float g[ROWS_MAX], s[ROWS_MAX], sum[ROWS_MAX];
    const float *dy = lsm && j->make_dy ? t->d : lsm ? j->dy + (long)i0 * n : NULL;
    if (lsm && j->make_dy)
        j->make_dy(j->dy_ctx, i0, k, t->d);
    if (lsm)
        row_sums(k, n, dy, n, 0, g);
    else
        for (int r = 0; r < k; r++)
            g[r] = j->dlse[i0 + r];
    const int approx = j->cfg->approx_bwd;
    /* log_softmax's backward in one fused pass per row (AVX2, AVX-512;
     * exact: without an offset, u recomputed in the pass), else the steps
     * below */
    const nomul_pa_fused *f = lsm && (approx || off == 1.0f) && !nomul_pa_chains_scalar
                                  ? nomul_pa_fused_active()
                                  : NULL;
    /* e (the approximate backward's) and u (the exact one's): recomputed, or
     * from the cross-entropy's kept s, S (and e) */
    const float *e = t->e;
    if (j->ce_keep) {
        const long R = j->rows;
        for (int r = 0; r < k; r++) {
            s[r] = j->ce_keep[CK_S * R + i0 + r];
            sum[r] = j->ce_keep[CK_SUM * R + i0 + r];
        }
        if (approx)
            e = j->ce_keep + CK_ARRAYS * R + (long)i0 * n;
        else if (!f)
            pa_rows_u_kept(off, k, n, j->x + (long)i0 * n, s, t);
    } else {
        pa_rows_exp(off, k, n, j->x + (long)i0 * n, t, s, sum);
    }
    for (int r = 0; r < k; r++) {
        float *w = t->w, *dr = j->out + (long)(i0 + r) * n;
        if (f && approx) {
            f->lsm_backward_approx(n, e + (long)r * n, sum[r], g[r], dy + (long)r * n, off,
                                   j->store, dr);
            continue;
        }
        if (f) { /* the exact chain below, dS = palog2'(S) · dv */
            float dv, unused;
            div_grads(s[r] + nomul_pa_log2(sum[r]), LOG2E, -g[r], &dv, &unused);
            f->lsm_backward_exact(n, j->x + (long)(i0 + r) * n, s[r],
                                  nomul_pa_log2_grad(sum[r], dv), dy + (long)r * n, j->store,
                                  dr);
            continue;
        }
        if (approx) { /* w = softmax(x) · g, with the PA softmax and PAM */
            if (sum[r] > 0.0f)
                nomul_elt(NOMUL_ELT_DIV, (size_t)n, e + (long)r * n, 0, &sum[r], 1, NULL, 0, NULL,
                          0, w, NULL);
            else
                for (int c = 0; c < n; c++)
                    w[c] = 0.0f;
            pam_row(off, n, w, g[r], w);
        } else { /* lse = PAD(v, log2e), v = s + palog2(S), S = Σ paexp2(u); for
                  * log_softmax, y = x − lse, so its dlse is −Σdy */
            float dv, unused;
            div_grads(s[r] + nomul_pa_log2(sum[r]), LOG2E, lsm ? -g[r] : g[r], &dv, &unused);
            pa_row_exp_grads(off, n, j->x + (long)(i0 + r) * n, t->u + (long)r * n,
                             nomul_pa_log2_grad(sum[r], dv), w);
        }
        if (!lsm) {
            for (int c = 0; c < n; c++)
                dr[c] += w[c];
            continue;
        }
        const float *gr = dy + (long)r * n;
        if (j->store) /* into a fresh gradient: the bits of adding into zeros */
            for (int c = 0; c < n; c++)
                dr[c] = 0.0f;
        if (approx) /* dx = dy − softmax(x) Σdy */
            for (int c = 0; c < n; c++)
                dr[c] += gr[c] - w[c];
        else
            for (int c = 0; c < n; c++)
                dr[c] += gr[c] + w[c];
    }
}

/* the audit of log_softmax's backward; kept: the cross-entropy's kept
 * values read, not recomputed (no paexp2 and no Σe; approximate, no u
 * either) */
static void count_lsm_backward(const nomul_op_cfg *cfg, int rows, int n, int kept)
{
    long t0 = (long)rows * n;
    if (cfg->approx_bwd) {
        NOMUL_COUNT(PAM, kept ? t0 : 2 * t0); NOMUL_COUNT(PAEXP2, kept ? 0 : t0);
        NOMUL_COUNT(PAD, t0); NOMUL_COUNT(FADD, kept ? 3 * t0 : 5 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, kept ? 0 : t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(SHIFT, 2 * t0 + 2 * rows); NOMUL_COUNT(FADD, kept ? 3 * t0 : 4 * t0);
    }
}

void nomul_log_softmax_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                   const float *dy, float *dx)
{
    count_lsm_backward(cfg, rows, n, 0);
    rows_run(&(rows_job){.cfg = cfg, .rows = rows, .n = n, .x = x, .dy = dy, .out = dx},
             lse_backward_body);
}

void nomul_logsumexp_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                 const float *dlse, float *dx)
{
    long t0 = (long)rows * n; /* the audit */
    if (cfg->approx_bwd) {
        NOMUL_COUNT(PAM, 2 * t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PAD, t0);
        NOMUL_COUNT(FADD, 3 * t0);
    } else {
        NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
        NOMUL_COUNT(SHIFT, 2 * t0 + 2 * rows); NOMUL_COUNT(FADD, 3 * t0);
    }
    rows_run(&(rows_job){.cfg = cfg, .rows = rows, .n = n, .x = x, .dlse = dlse, .out = dx},
             lse_backward_body);
}

/* ---- the PA chains on the array kernels (layer norm, batch norm, GELU) ------------- */

/* out = pam(a, b) element by element (with the offset) */
static void elt_pam(float off, int n, const float *a, int ba, const float *b, int bb, float *out)
{
    if (off != 1.0f)
        nomul_elt(NOMUL_ELT_MUL_OFF, (size_t)n, a, ba, b, bb, &off, 1, NULL, 0, out, NULL);
    else
        nomul_elt(NOMUL_ELT_MUL, (size_t)n, a, ba, b, bb, NULL, 0, NULL, 0, out, NULL);
}

/* (da, db) = mul_grads(a, b, g) element by element */
static void elt_mul_grads(float off, int n, const float *a, int ba, const float *b, int bb,
                          const float *g, int bg, float *da, float *db)
{
    if (off != 1.0f)
        nomul_elt(NOMUL_ELT_MUL_OFF_GRAD, (size_t)n, a, ba, b, bb, &off, 1, g, bg, da, db);
    else
        nomul_elt(NOMUL_ELT_MUL_GRAD, (size_t)n, a, ba, b, bb, g, bg, NULL, 0, da, db);
}

/* k rows of n floats of this thread's scratch for the array-kernel rows, or
 * NULL for the scalar chain (forced, or no memory) */
static float *ln_buf(int n, int k)
{
    return nomul_pa_chains_scalar ? NULL : nomul_scratch(NOMUL_SCRATCH_LN, (size_t)k * n);
}

/* ---- layer norm ------------------------------------------------------------------- */

/* A row's sum: in order (a layer norm's row), or in lanes (a batch norm's
 * channel, bn: functional_internal.h's lane sums). Rows with γ broadcast
 * (gs = 0) are batch norm's. */
static float row_sum(int bn, int n, const float *a)
{
    if (bn)
        return lane_sum(n, a);
    float s = 0.0f;
    for (int j = 0; j < n; j++)
        s += a[j];
    return s;
}

/* the scalar twins' running sums: term j into acc[0] (in order) or its lane */
static inline void sum_add(int bn, float *acc, int j, float v)
{
    if (bn)
        lanes_add(acc, j, v);
    else
        acc[0] += v;
}

static inline float sum_total(int bn, float *acc)
{
    return bn ? lanes_total(acc) : acc[0];
}

/* A row's PA statistics: s[0] = Σ x, s[1] = μ = PAD(Σ x, n), s[2] = q =
 * Σ PAM(d, d), s[3] = σ² = PAD(q, n), with d = x − μ (into d; t: scratch),
 * the sums as row_sum's; returns pa_sqrt(σ² + eps). */
static float ln_row_stats(float off, int bn, int n, const float *xr, float eps, float *d,
                          float *t, float s[4])
{
    float nf = (float)n, sum = row_sum(bn, n, xr);
    float mu = pad(sum, nf);
    for (int j = 0; j < n; j++)
        d[j] = xr[j] - mu;
    elt_pam(off, n, d, 0, d, 0, t);
    float q = row_sum(bn, n, t);
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
                                  float *rstd, float *sum, float *sq, float *buf)
{
    float *d = buf, *t = buf + n, st[4];
    const nomul_pa_fused *f = gs == 0 ? nomul_pa_fused_active() : NULL;
    if (f) { /* batch norm: the fused passes (the same operations, element by element) */
        float nf = (float)n, s0 = lane_sum(n, xr), mu = pad(s0, nf), aq[LANES] = {0};
        f->squares(n, xr, mu, off, NULL, aq);
        float q = lanes_total(aq), r = nomul_pa_sqrt(pad(q, nf) + eps);
        f->output(1, n, xr, 0, mu, r, gamma, beta, off, yr, 0, 1, 0);
        *mean = mu;
        *rstd = r;
        if (sum)
            *sum = s0;
        if (sq)
            *sq = q;
        return;
    }
    float r = ln_row_stats(off, gs == 0, n, xr, eps, d, t, st), mu = st[1];
    nomul_elt(NOMUL_ELT_DIV, (size_t)n, d, 0, &r, 1, NULL, 0, NULL, 0, t, NULL); /* xhat */
    elt_pam(off, n, t, 0, gamma, gs == 0, t);
    for (int j = 0; j < n; j++)
        yr[j] = t[j] + beta[j * bs];
    *mean = mu;
    *rstd = r;
    if (sum)
        *sum = st[0];
    if (sq)
        *sq = st[2];
}

void nomul_ln_row_forward_pa(const nomul_op_cfg *cfg, int n, const float *xr,
                             const float *gamma, int gs, const float *beta, int bs, float eps,
                             float *yr, float *mean, float *rstd, float *sum, float *sq)
{
    const float off = offset_of(cfg);
    /* the audit: d², ·γ; xhat, μ, σ²; pa_sqrt; sums and adds */
    NOMUL_COUNT(PAM, 2L * n + 1); NOMUL_COUNT(PAD, (long)n + 2); NOMUL_COUNT(PALOG2, 1);
    NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(FADD, 4L * n + 1);
    float *buf = ln_buf(n, 2);
    if (buf) {
        ln_row_forward_arrays(off, n, xr, gamma, gs, beta, bs, eps, yr, mean, rstd, sum, sq,
                              buf);
        return;
    }
    /* the scalar chain: the twin (its sums in order, or in lanes for batch
     * norm: row_sum's) */
    const int bn = gs == 0;
    float nf = (float)n, acc[LANES] = {0}, acq[LANES] = {0};
    for (int j = 0; j < n; j++)
        sum_add(bn, acc, j, xr[j]);
    float sum_ = sum_total(bn, acc), mu = pad(sum_, nf);
    for (int j = 0; j < n; j++)
        sum_add(bn, acq, j, pam(off, xr[j] - mu, xr[j] - mu));
    float q = sum_total(bn, acq), r = nomul_pa_sqrt(pad(q, nf) + eps);
    for (int j = 0; j < n; j++)
        yr[j] = pam(off, pad(xr[j] - mu, r), gamma[j * gs]) + beta[j * bs];
    *mean = mu;
    *rstd = r;
    if (sum)
        *sum = sum_;
    if (sq)
        *sq = q;
}

/* The forward of k ≤ GROUP contiguous rows (γ and β one per column) on the
 * array kernels: the operations of ln_row_forward_arrays, the two sums of
 * each row side by side (row_sums, in each row's order) and d² over the
 * whole group in one call, so the same bits; on AVX2 and AVX-512 the
 * squares and the output each in one fused pass per row (nomul_pa_fused:
 * the same operations, element by element). NULL-free: buf holds 2·GROUP
 * rows. */
static void ln_rows_forward_arrays(float off, int k, int n, const float *x, const float *gamma,
                                   const float *beta, float eps, float *y, float *mean,
                                   float *rstd, float *ksum, float *kq, float *buf)
{
    float *d = buf, *t = buf + (long)GROUP * n, sum[GROUP], q[GROUP], nf = (float)n;
    const nomul_pa_fused *f = nomul_pa_fused_active();
    row_sums(k, n, x, n, 0, sum);
    for (int r = 0; r < k; r++) {
        float mu = pad(sum[r], nf);
        const float *xr = x + (long)r * n;
        float *dr = d + (long)r * n;
        if (f)
            f->squares(n, xr, mu, off, t + (long)r * n, NULL);
        else
            for (int j = 0; j < n; j++)
                dr[j] = xr[j] - mu;
        mean[r] = mu;
    }
    if (!f)
        elt_pam(off, k * n, d, 0, d, 0, t);
    row_sums(k, n, t, n, 0, q);
    if (ksum)
        for (int r = 0; r < k; r++) {
            ksum[r] = sum[r];
            kq[r] = q[r];
        }
    for (int r = 0; r < k; r++) {
        float rr = nomul_pa_sqrt(pad(q[r], nf) + eps), *tr = t + (long)r * n;
        rstd[r] = rr;
        if (f) {
            f->output(1, n, x + (long)r * n, 0, mean[r], rr, gamma, beta, off, y + (long)r * n, 0,
                      0, 0);
            continue;
        }
        nomul_elt(NOMUL_ELT_DIV, (size_t)n, d + (long)r * n, 0, &rr, 1, NULL, 0, NULL, 0, tr, NULL); /* xhat */
        elt_pam(off, n, tr, 0, gamma, 0, tr);
        float *yr = y + (long)r * n;
        for (int j = 0; j < n; j++)
            yr[j] = tr[j] + beta[j];
    }
}

int nomul_ln_rows_forward_pa(const nomul_op_cfg *cfg, int k, int n, const float *x,
                             const float *gamma, const float *beta, float eps, float *y,
                             float *mean, float *rstd, float *ksum, float *kq)
{
    if (k > GROUP)
        return 0;
    float *buf = ln_buf(n, 2 * GROUP);
    if (!buf)
        return 0;
    /* the audit, as nomul_ln_row_forward_pa per row */
    NOMUL_COUNT(PAM, k * (2L * n + 1)); NOMUL_COUNT(PAD, k * ((long)n + 2));
    NOMUL_COUNT(PALOG2, k); NOMUL_COUNT(PAEXP2, k); NOMUL_COUNT(FADD, k * (4L * n + 1));
    ln_rows_forward_arrays(offset_of(cfg), k, n, x, gamma, beta, eps, y, mean, rstd, ksum, kq,
                           buf);
    return k;
}

/* dγ[j·gs] += g[j], dβ[j·bs] += gr[j] for j < n, in j order. Batch norm's
 * strides are 0, one γ and β per row: dγ += Σ g, dβ += Σ gr, the sums in
 * lanes (row_sum). */
static void add_param_grads(int n, const float *g, int gs, const float *gr, int bs,
                            float *dgamma, float *dbeta)
{
    if (gs == 0 && bs == 0) {
        dgamma[0] += lane_sum(n, g);
        dbeta[0] += lane_sum(n, gr);
        return;
    }
    for (int j = 0; j < n; j++) {
        dgamma[j * gs] += g[j];
        dbeta[j * bs] += gr[j];
    }
}

/* Batch norm's row backward (γ broadcast, sums in lanes) in nomul_pa_fused's
 * passes: the operations of ln_row_backward_arrays element by element, and
 * the same sums (added into their lanes in the passes), so the same bits. */
static void bn_row_backward_fused(const nomul_pa_fused *f, float off, int approx, int n,
                                  const float *xr, const float *gamma, float mu, float r,
                                  float eps, const float *ksum, const float *kq, const float *gr,
                                  float *dr, float *dgamma, float *dbeta, float *dd, float *buf)
{
    float nf = (float)n, adg[LANES] = {0}, adb[LANES] = {0};
    if (approx) { /* buf: xh and u, 2n */
        float au[LANES] = {0}, av[LANES] = {0};
        f->bn_backward_approx1(n, xr, mu, r, gamma[0], gr, NULL, off, buf, buf + n, au, av, adg,
                               adb);
        f->bn_backward_approx2(1, n, buf, NULL, 0, 0.0f, buf + n, n, r, pad(lanes_total(au), nf),
                               pad(lanes_total(av), nf), off, dr, 0, 0);
        dgamma[0] += lanes_total(adg);
        dbeta[0] += lanes_total(adb);
        return;
    }
    float sum, q, mu2 = mu, r2 = r;
    if (ksum) { /* the forward's statistics, kept */
        sum = *ksum;
        q = *kq;
    } else {
        float aq[LANES] = {0};
        sum = lane_sum(n, xr);
        mu2 = pad(sum, nf);
        f->squares(n, xr, mu2, off, NULL, aq);
        q = lanes_total(aq);
        r2 = nomul_pa_sqrt(pad(q, nf) + eps);
    }
    float var = pad(q, nf), adr[LANES] = {0};
    f->backward1(n, xr, mu2, r2, gamma, gr, NULL, off, adg, adb, dd, adr, 1);
    dgamma[0] += lanes_total(adg);
    dbeta[0] += lanes_total(adb);
    float dvar = nomul_pa_sqrt_grad(var + eps, lanes_total(adr), 0), dq, unused, dsum;
    div_grads(q, nf, dvar, &dq, &unused);
    float amu[LANES] = {0};
    f->backward2(n, xr, mu2, dq, off, dd, amu);
    div_grads(sum, nf, -lanes_total(amu), &dsum, &unused);
    for (int j = 0; j < n; j++)
        dr[j] += dd[j] + dsum;
}

/* The backward of one row on the array kernels (exact: the chain through
 * the forward's intermediates; approximate: the formula with r the
 * divisor), the same operations and sums in the same order as the scalar
 * chains in nomul_ln_row_backward_pa, so the results are the same bits.
 * buf: 6n. */
static void ln_row_backward_arrays(float off, int approx, int n, const float *xr,
                                   const float *gamma, int gs, float mu, float r, float eps,
                                   const float *ksum, const float *kq, const float *gr,
                                   float *dr, float *dgamma, float *dbeta, int bs, float *dd,
                                   float *buf)
{
    float *d = buf, *xh = buf + n, *u = buf + 2 * n, *v = buf + 3 * n, *a = buf + 4 * n,
          *b = buf + 5 * n, nf = (float)n;
    const int gb = gs == 0; /* γ broadcast: batch norm, its sums in lanes */
    const nomul_pa_fused *f = gb ? nomul_pa_fused_active() : NULL;
    if (f) { /* batch norm: the fused passes, the same operations element by element */
        bn_row_backward_fused(f, off, approx, n, xr, gamma, mu, r, eps, ksum, kq, gr, dr, dgamma,
                              dbeta, dd, buf);
        return;
    }
    if (approx) {
        for (int j = 0; j < n; j++)
            d[j] = xr[j] - mu;
        nomul_elt(NOMUL_ELT_DIV, (size_t)n, d, 0, &r, 1, NULL, 0, NULL, 0, xh, NULL);
        elt_pam(off, n, gamma, gb, gr, 0, u); /* dnorm */
        elt_pam(off, n, u, 0, xh, 0, v);
        float m1 = pad(row_sum(gb, n, u), nf), m2 = pad(row_sum(gb, n, v), nf);
        elt_pam(off, n, xh, 0, gr, 0, a);
        elt_pam(off, n, xh, 0, &m2, 1, b);
        for (int j = 0; j < n; j++)
            v[j] = u[j] - m1 - b[j];
        add_param_grads(n, a, gs, gr, bs, dgamma, dbeta);
        nomul_elt(NOMUL_ELT_DIV, (size_t)n, v, 0, &r, 1, NULL, 0, NULL, 0, v, NULL);
        for (int j = 0; j < n; j++)
            dr[j] += v[j];
        return;
    }
    float st[4], r2;
    if (ksum) { /* the forward's statistics, kept */
        for (int j = 0; j < n; j++)
            d[j] = xr[j] - mu;
        st[0] = *ksum;
        st[2] = *kq;
        st[3] = pad(st[2], nf);
        r2 = r;
    } else {
        r2 = ln_row_stats(off, gb, n, xr, eps, d, a, st);
    }
    float sum = st[0], q = st[2], var = st[3];
    nomul_elt(NOMUL_ELT_DIV, (size_t)n, d, 0, &r2, 1, NULL, 0, NULL, 0, xh, NULL);
    elt_mul_grads(off, n, xh, 0, gamma, gb, gr, 0, u, v); /* dxhat, dγ */
    add_param_grads(n, v, gs, gr, bs, dgamma, dbeta);
    nomul_elt(NOMUL_ELT_DIV_GRAD, (size_t)n, d, 0, &r2, 1, u, 0, NULL, 0, a, b);
    memcpy(dd, a, (size_t)n * sizeof *dd);
    float dr_ = row_sum(gb, n, b);
    float dvar = nomul_pa_sqrt_grad(var + eps, dr_, 0), dq, unused;
    div_grads(q, nf, dvar, &dq, &unused);
    elt_mul_grads(off, n, d, 0, d, 0, &dq, 1, a, b); /* q = Σ PAM(d, d) */
    float dmu = 0.0f, dsum;
    for (int j = 0; j < n; j++)
        dd[j] += a[j] + b[j];
    if (gb)
        dmu = -lane_sum(n, dd);
    else
        for (int j = 0; j < n; j++)
            dmu -= dd[j];
    div_grads(sum, nf, dmu, &dsum, &unused);
    for (int j = 0; j < n; j++)
        dr[j] += dd[j] + dsum;
}

void nomul_ln_row_backward_pa(const nomul_op_cfg *cfg, int n, const float *xr,
                              const float *gamma, int gs, float mu, float r, float eps,
                              const float *ksum, const float *kq, const float *gr, float *dr,
                              float *dgamma, float *dbeta, int bs, float *dd)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    if (approx) { /* the audit */
        NOMUL_COUNT(PAM, 6L * n); NOMUL_COUNT(PAD, 3L * n + 2); NOMUL_COUNT(FADD, 9L * n);
    } else if (ksum) { /* the forward's Σx and Σd² kept: no d², μ, Σ or pa_sqrt again */
        NOMUL_COUNT(PAD, (long)n + 1); NOMUL_COUNT(SHIFT, 5L * n + 3); NOMUL_COUNT(FADD, 7L * n);
    } else {
        NOMUL_COUNT(PAM, (long)n + 1); NOMUL_COUNT(PAD, (long)n + 2); NOMUL_COUNT(PALOG2, 1);
        NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(SHIFT, 5L * n + 3); NOMUL_COUNT(FADD, 9L * n);
    }
    float *buf = approx || dd ? ln_buf(n, 6) : NULL;
    if (buf) {
        ln_row_backward_arrays(off, approx, n, xr, gamma, gs, mu, r, eps, ksum, kq, gr, dr,
                               dgamma, dbeta, bs, dd, buf);
        return;
    }
    /* below, the scalar chains: the twins (batch norm's sums in lanes, as
     * row_sum's; its dγ and dβ sums added once, as add_param_grads) */
    const int bn = gs == 0;
    float nf = (float)n, dgl[LANES] = {0}, dbl[LANES] = {0};
    if (approx) { /* the float formula, r the divisor, in PA */
        float s1[LANES] = {0}, s2[LANES] = {0};
        for (int j = 0; j < n; j++) {
            float xhat = pad(xr[j] - mu, r), dnorm = pam(off, gamma[j * gs], gr[j]);
            sum_add(bn, s1, j, dnorm);
            sum_add(bn, s2, j, pam(off, dnorm, xhat));
        }
        float m1 = pad(sum_total(bn, s1), nf), m2 = pad(sum_total(bn, s2), nf);
        for (int j = 0; j < n; j++) {
            float xhat = pad(xr[j] - mu, r), dnorm = pam(off, gamma[j * gs], gr[j]);
            if (bn) {
                lanes_add(dbl, j, gr[j]);
                lanes_add(dgl, j, pam(off, xhat, gr[j]));
            } else {
                dbeta[j * bs] += gr[j];
                dgamma[j * gs] += pam(off, xhat, gr[j]);
            }
            dr[j] += pad(dnorm - m1 - pam(off, xhat, m2), r);
        }
        if (bn) {
            dgamma[0] += lanes_total(dgl);
            dbeta[0] += lanes_total(dbl);
        }
        return;
    }
    /* the chain, with the forward's values kept or recomputed */
    float sum, q, mu2 = mu, r2 = r, var, acc[LANES] = {0};
    if (ksum) {
        sum = *ksum;
        q = *kq;
        var = pad(q, nf);
    } else {
        float acq[LANES] = {0};
        for (int j = 0; j < n; j++)
            sum_add(bn, acc, j, xr[j]);
        sum = sum_total(bn, acc);
        mu2 = pad(sum, nf);
        for (int j = 0; j < n; j++)
            sum_add(bn, acq, j, pam(off, xr[j] - mu2, xr[j] - mu2));
        q = sum_total(bn, acq);
        var = pad(q, nf);
        r2 = nomul_pa_sqrt(var + eps);
    }
    float adr[LANES] = {0};
    for (int j = 0; j < n; j++) { /* y = PAM(xhat, γ) + β, xhat = PAD(d, r) */
        float d = xr[j] - mu2, xhat = pad(d, r2), dxhat, dg, a, b;
        mul_grads(off, xhat, gamma[j * gs], gr[j], &dxhat, &dg);
        if (bn) {
            lanes_add(dgl, j, dg);
            lanes_add(dbl, j, gr[j]);
        } else {
            dgamma[j * gs] += dg;
            dbeta[j * bs] += gr[j];
        }
        div_grads(d, r2, dxhat, &a, &b);
        dd[j] = a;
        sum_add(bn, adr, j, b);
    }
    if (bn) {
        dgamma[0] += lanes_total(dgl);
        dbeta[0] += lanes_total(dbl);
    }
    float dvar = nomul_pa_sqrt_grad(var + eps, sum_total(bn, adr), 0), dq, unused;
    div_grads(q, nf, dvar, &dq, &unused);
    float dmu = 0.0f, amu[LANES] = {0};
    for (int j = 0; j < n; j++) { /* q = Σ PAM(d, d) */
        float d = xr[j] - mu2, a, b;
        mul_grads(off, d, d, dq, &a, &b);
        dd[j] += a + b;
        if (bn)
            lanes_add(amu, j, dd[j]);
        else
            dmu -= dd[j];
    }
    if (bn)
        dmu = -lanes_total(amu);
    float dsum;
    div_grads(sum, nf, dmu, &dsum, &unused);
    for (int j = 0; j < n; j++)
        dr[j] += dd[j] + dsum;
}

/* The exact backward's last step for k rows: μ = PAD(Σx, n), so dμ = −Σ dd
 * flows back through the division to Σx and to every x: dx += dd + dsum. */
static void ln_rows_add_dx(int k, int n, const float *sum, const float *dd, float *dx)
{
    float dmu[GROUP];
    row_sums(k, n, dd, n, 1, dmu);
    for (int i = 0; i < k; i++) {
        float dsum, unused;
        div_grads(sum[i], (float)n, dmu[i], &dsum, &unused);
        for (int j = 0; j < n; j++)
            dx[(long)i * n + j] += dd[(long)i * n + j] + dsum;
    }
}

/* The backward of k ≤ GROUP contiguous rows of a layer norm (γ one per
 * column; dγ, dβ one per column, added row after row): the operations of
 * ln_row_backward_arrays, each over the whole group (a row's scalar spread
 * over its row, γ tiled), and each row's sums in its order (row_sums), so
 * the same bits. The ViT's rows are 64 long: a kernel call per row and step
 * costs about what its elements do. buf: 11·GROUP rows of n. */
static void ln_rows_backward_arrays(float off, int approx, int k, int n, const float *x,
                                    const float *gamma, const float *mean, const float *rstd,
                                    const float *ksum, const float *kq, float eps,
                                    const float *dy, float *dx, float *dgamma, float *dbeta,
                                    float *buf)
{
    const size_t G = (size_t)GROUP * n, kn = (size_t)k * n;
    float *d = buf, *xh = buf + G, *u = buf + 2 * G, *v = buf + 3 * G, *a = buf + 4 * G,
          *b = buf + 5 * G, *dd = buf + 6 * G, *gt = buf + 7 * G, *z = buf + 8 * G,
          *z2 = buf + 9 * G, *t = buf + 10 * G, nf = (float)n;
    float sum[GROUP], mu[GROUP], q[GROUP], var[GROUP], r[GROUP], s1[GROUP], s2[GROUP];
    for (int i = 0; i < k; i++)
        memcpy(gt + (long)i * n, gamma, (size_t)n * sizeof *gt);
    const int recompute = !approx && !ksum;
    if (!recompute) { /* the forward's statistics, kept */
        for (int i = 0; i < k; i++) {
            mu[i] = mean[i];
            r[i] = rstd[i];
            if (!approx) {
                sum[i] = ksum[i];
                q[i] = kq[i];
                var[i] = pad(q[i], nf);
            }
        }
    } else { /* recomputed (ln_row_stats row by row) */
        row_sums(k, n, x, n, 0, sum);
        for (int i = 0; i < k; i++)
            mu[i] = pad(sum[i], nf);
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < n; j++)
            d[(long)i * n + j] = x[(long)i * n + j] - mu[i];
    if (recompute) {
        elt_pam(off, (int)kn, d, 0, d, 0, t);
        row_sums(k, n, t, n, 0, q);
        for (int i = 0; i < k; i++) {
            var[i] = pad(q[i], nf);
            r[i] = nomul_pa_sqrt(var[i] + eps);
        }
    }
    const float *zr = spread(k, n, r, z);
    nomul_elt(NOMUL_ELT_DIV, kn, d, 0, zr, 0, NULL, 0, NULL, 0, xh, NULL);
    if (approx) {
        elt_pam(off, (int)kn, gt, 0, dy, 0, u); /* dnorm */
        elt_pam(off, (int)kn, u, 0, xh, 0, v);
        row_sums(k, n, u, n, 0, s1);
        row_sums(k, n, v, n, 0, s2);
        float m1[GROUP], m2[GROUP];
        for (int i = 0; i < k; i++) {
            m1[i] = pad(s1[i], nf);
            m2[i] = pad(s2[i], nf);
        }
        elt_pam(off, (int)kn, xh, 0, dy, 0, a);
        elt_pam(off, (int)kn, xh, 0, spread(k, n, m2, z2), 0, b);
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < n; j++) {
                long c = (long)i * n + j;
                v[c] = u[c] - m1[i] - b[c];
            }
            add_param_grads(n, a + (long)i * n, 1, dy + (long)i * n, 1, dgamma, dbeta);
        }
        nomul_elt(NOMUL_ELT_DIV, kn, v, 0, zr, 0, NULL, 0, NULL, 0, v, NULL);
        for (size_t c = 0; c < kn; c++)
            dx[c] += v[c];
        return;
    }
    elt_mul_grads(off, (int)kn, xh, 0, gt, 0, dy, 0, u, v); /* dxhat, dγ */
    for (int i = 0; i < k; i++)
        add_param_grads(n, v + (long)i * n, 1, dy + (long)i * n, 1, dgamma, dbeta);
    nomul_elt(NOMUL_ELT_DIV_GRAD, kn, d, 0, zr, 0, u, 0, NULL, 0, a, b);
    memcpy(dd, a, kn * sizeof *dd);
    float dr_[GROUP], dq[GROUP];
    row_sums(k, n, b, n, 0, dr_);
    for (int i = 0; i < k; i++) {
        float dvar = nomul_pa_sqrt_grad(var[i] + eps, dr_[i], 0), unused;
        div_grads(q[i], nf, dvar, &dq[i], &unused);
    }
    elt_mul_grads(off, (int)kn, d, 0, d, 0, spread(k, n, dq, z2), 0, a, b); /* q = Σ PAM(d, d) */
    for (size_t c = 0; c < kn; c++)
        dd[c] += a[c] + b[c];
    ln_rows_add_dx(k, n, sum, dd, dx);
}

/* The backward of k ≤ GROUP contiguous rows in the fused passes of
 * nomul_pa_fused: the operations of ln_rows_backward_arrays (exact or
 * approximate), element by element in two passes per row instead of one
 * kernel call per operation over the group, and the same sums in the same
 * order (dγ and dβ row after row, each row's sums by row_sums), so the same
 * bits. buf: 3·GROUP rows of n. */
static void ln_rows_backward_fused(const nomul_pa_fused *f, float off, int approx, int k,
                                   int n, const float *x, const float *gamma, const float *mean,
                                   const float *rstd, const float *ksum, const float *kq,
                                   float eps, const float *dy, float *dx, float *dgamma,
                                   float *dbeta, float *buf)
{
    const size_t G = (size_t)GROUP * n;
    float *t = buf, *dd = buf + G, *db = buf + 2 * G, nf = (float)n;
    float sum[GROUP], mu[GROUP], q[GROUP], var[GROUP], r[GROUP];
    if (approx) { /* the formula with the forward's μ and r: u = dnorm, v = PAM(u, xh) */
        float *u = dd, *v = db, s1[GROUP], s2[GROUP];
        for (int i = 0; i < k; i++)
            f->backward_approx1(n, x + (long)i * n, mean[i], rstd[i], gamma, dy + (long)i * n,
                                off, u + (long)i * n, v + (long)i * n);
        row_sums(k, n, u, n, 0, s1);
        row_sums(k, n, v, n, 0, s2);
        for (int i = 0; i < k; i++)
            f->backward_approx2(n, x + (long)i * n, mean[i], rstd[i], dy + (long)i * n,
                                pad(s1[i], nf), pad(s2[i], nf), off, u + (long)i * n, dgamma,
                                dbeta, dx + (long)i * n);
        return;
    }
    if (ksum) { /* the forward's statistics, kept */
        for (int i = 0; i < k; i++) {
            mu[i] = mean[i];
            r[i] = rstd[i];
            sum[i] = ksum[i];
            q[i] = kq[i];
        }
    } else { /* recomputed, as the forward */
        row_sums(k, n, x, n, 0, sum);
        for (int i = 0; i < k; i++) {
            mu[i] = pad(sum[i], nf);
            f->squares(n, x + (long)i * n, mu[i], off, t + (long)i * n, NULL);
        }
        row_sums(k, n, t, n, 0, q);
    }
    for (int i = 0; i < k; i++) {
        var[i] = pad(q[i], nf);
        if (!ksum)
            r[i] = nomul_pa_sqrt(var[i] + eps);
        f->backward1(n, x + (long)i * n, mu[i], r[i], gamma, dy + (long)i * n, NULL, off,
                     dgamma, dbeta, dd + (long)i * n, db + (long)i * n, 0);
    }
    float dr_[GROUP];
    row_sums(k, n, db, n, 0, dr_);
    for (int i = 0; i < k; i++) {
        float dvar = nomul_pa_sqrt_grad(var[i] + eps, dr_[i], 0), dq, unused;
        div_grads(q[i], nf, dvar, &dq, &unused);
        f->backward2(n, x + (long)i * n, mu[i], dq, off, dd + (long)i * n, NULL);
    }
    ln_rows_add_dx(k, n, sum, dd, dx);
}

int nomul_ln_rows_backward_pa(const nomul_op_cfg *cfg, int k, int n, const float *x,
                              const float *gamma, const float *mean, const float *rstd,
                              const float *ksum, const float *kq, float eps, const float *dy,
                              float *dx, float *dgamma, float *dbeta)
{
    if (k > GROUP)
        return 0;
    /* the fused passes need 3 rows of scratch per row of the group, the
     * kernel-call sequence 11 */
    const nomul_pa_fused *f = nomul_pa_fused_active();
    float *buf = ln_buf(n, (f ? 3 : 11) * GROUP);
    if (!buf)
        return 0;
    const int approx = cfg->approx_bwd;
    if (approx) { /* the audit, as nomul_ln_row_backward_pa per row */
        NOMUL_COUNT(PAM, k * 6L * n); NOMUL_COUNT(PAD, k * (3L * n + 2)); NOMUL_COUNT(FADD, k * 9L * n);
    } else if (ksum) {
        NOMUL_COUNT(PAD, k * ((long)n + 1)); NOMUL_COUNT(SHIFT, k * (5L * n + 3));
        NOMUL_COUNT(FADD, k * 7L * n);
    } else {
        NOMUL_COUNT(PAM, k * ((long)n + 1)); NOMUL_COUNT(PAD, k * ((long)n + 2));
        NOMUL_COUNT(PALOG2, k); NOMUL_COUNT(PAEXP2, k); NOMUL_COUNT(SHIFT, k * (5L * n + 3));
        NOMUL_COUNT(FADD, k * 9L * n);
    }
    if (f)
        ln_rows_backward_fused(f, offset_of(cfg), approx, k, n, x, gamma, mean, rstd, ksum, kq,
                               eps, dy, dx, dgamma, dbeta, buf);
    else
        ln_rows_backward_arrays(offset_of(cfg), approx, k, n, x, gamma, mean, rstd, ksum, kq,
                                eps, dy, dx, dgamma, dbeta, buf);
    return k;
}

/* ---- batch norm: one channel ---------------------------------------------------------- */

/* The running statistics (unbiased variance, as PyTorch keeps) from a
 * training forward's μ and q = Σ PAM(x − μ, x − μ) over len values. */
static void bn_running_update(float off, long len, float mean, float q, float momentum,
                              float *running_mean, float *running_var)
{
    NOMUL_COUNT(PAM, 2); NOMUL_COUNT(PAD, 1); NOMUL_COUNT(FADD, 4);
    float var = pad(q, (float)(len > 1 ? len - 1 : 1));
    /* r += m·(v − r): PAM's error only changes how fast r moves, not where
     * it settles. The float form (1 − m)·r + m·v with PAMs would settle
     * about a quarter low for m = 0.1 (PAM(r, 0.9) is ~4% small, and that
     * error is divided by m), and evaluation would collapse. */
    *running_mean += pam(off, mean - *running_mean, momentum);
    *running_var += pam(off, var - *running_var, momentum);
}

/* Batch norm's PA evaluation of len values: its divisor pa_sqrt(σ²_run + ε),
 * and the audit of the whole evaluation (the gathered row's and the
 * planes') */
static float bn_eval_divisor(long len, float running_var, float eps)
{
    NOMUL_COUNT(PAM, len); NOMUL_COUNT(PAD, len); NOMUL_COUNT(FADD, 2 * len + 1);
    NOMUL_COUNT(PALOG2, 1); NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(PAM, 1);
    return nomul_pa_sqrt(running_var + eps);
}

void nomul_bn_channel_forward_pa(const nomul_op_cfg *cfg, long len, const float *row,
                                 const float *gamma, const float *beta, float eps,
                                 float momentum, int training, float *running_mean,
                                 float *running_var, float *out, float *mean, float *rstd,
                                 float *ksum, float *kq)
{
    const float off = offset_of(cfg);
    if (training) {
        float q, sum;
        nomul_ln_row_forward_pa(cfg, (int)len, row, gamma, 0, beta, 0, eps, out, mean, rstd, &sum,
                                &q);
        if (ksum) {
            *ksum = sum;
            *kq = q;
        }
        bn_running_update(off, len, *mean, q, momentum, running_mean, running_var);
        return;
    }
    /* evaluation: PAM(PAD(x − μ_run, pa_sqrt(σ²_run + ε)), γ) + β, the divisor
     * computed once (the fused output pass where there is one) */
    const float r = bn_eval_divisor(len, *running_var, eps);
    const nomul_pa_fused *f = nomul_pa_chains_scalar ? NULL : nomul_pa_fused_active();
    if (f && len <= INT_MAX) {
        f->output(1, (int)len, row, 0, *running_mean, r, gamma, beta, off, out, 0, 1, 0);
        return;
    }
    for (long j = 0; j < len; j++)
        out[j] = pam(off, pad(row[j] - *running_mean, r), gamma[0]) + beta[0];
}

/* ---- batch norm: one channel plane by plane ---------------------------------------- */

/* The passes whose sums run in lanes (Σx, the squares, the backward's sums)
 * go plane by plane where each plane fills whole lanes (S a multiple of 16),
 * else (the backward) once over the channel gathered into a row (xrow,
 * dyrow: the planes one after the other, so plane b is at row + b·S either
 * way); the passes that only write (the output, dx) go plane by plane into
 * y and dx. */
static const nomul_pa_fused *bn_planes_fused(int S, const float *xrow)
{
    return nomul_pa_chains_scalar || (S % LANES && !xrow) ? NULL : nomul_pa_fused_active();
}

/* the lane passes' pieces: nseg segments of seg values, segment b at
 * SEG(p, prow, b) */
#define PLANE(p, b) ((p) + ((long)(b) * C + c) * S)
#define SEG(p, prow, b) (prow ? (prow) + (long)(b) * seg : PLANE(p, b))

int nomul_bn_planes_eval_pa(const nomul_op_cfg *cfg, int nb, int C, int S, int c,
                            const float *x, const float *gamma, const float *beta, float eps,
                            const float *running_mean, const float *running_var, float *y,
                            int relu)
{
    const nomul_pa_fused *f = nomul_pa_chains_scalar ? NULL : nomul_pa_fused_active();
    if (!f)
        return 0;
    const float r = bn_eval_divisor((long)nb * S, *running_var, eps), off = offset_of(cfg);
    f->output(nb, S, PLANE(x, 0), (long)C * S, *running_mean, r, gamma, beta, off, PLANE(y, 0),
              (long)C * S, 1, relu);
    return 1;
}

int nomul_bn_planes_forward_pa(const nomul_op_cfg *cfg, int nb, int C, int S, int c,
                               const float *x, const float *xrow, const float *gamma,
                               const float *beta, float eps, float momentum, float *running_mean,
                               float *running_var, float *y, float *mean, float *rstd,
                               float *ksum, float *kq, int relu)
{
    const nomul_pa_fused *f = bn_planes_fused(S, xrow);
    if (!f)
        return 0;
    if (S % LANES == 0)
        xrow = NULL;
    const int nseg = xrow ? 1 : nb, seg = xrow ? nb * S : S;
    const float off = offset_of(cfg);
    const long len = (long)nb * S;
    const float nf = (float)len;
    /* the audit, as nomul_ln_row_forward_pa's */
    NOMUL_COUNT(PAM, 2L * len + 1); NOMUL_COUNT(PAD, len + 2); NOMUL_COUNT(PALOG2, 1);
    NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(FADD, 4L * len + 1);
    float acc[LANES] = {0}, aq[LANES] = {0};
    for (int b = 0; b < nseg; b++)
        lanes_accumulate(acc, seg, SEG(x, xrow, b));
    float sum = lanes_total(acc), mu = pad(sum, nf);
    for (int b = 0; b < nseg; b++)
        f->squares(seg, SEG(x, xrow, b), mu, off, NULL, aq);
    float q = lanes_total(aq), r = nomul_pa_sqrt(pad(q, nf) + eps);
    f->output(nb, S, xrow ? xrow : PLANE(x, 0), xrow ? S : (long)C * S, mu, r, gamma, beta, off,
              PLANE(y, 0), (long)C * S, 1, relu);
    *mean = mu;
    *rstd = r;
    if (ksum) {
        *ksum = sum;
        *kq = q;
    }
    bn_running_update(off, len, mu, q, momentum, running_mean, running_var);
    return 1;
}

int nomul_bn_planes_backward_pa(const nomul_op_cfg *cfg, int nb, int C, int S, int c,
                                const float *x, const float *xrow, const float *gamma, float mu,
                                float r, float eps, const float *ksum, const float *kq,
                                const float *dy, const float *dyrow, const float *ry, int store,
                                float *dx, float *dgamma, float *dbeta)
{
    const int approx = cfg->approx_bwd;
    const nomul_pa_fused *f = bn_planes_fused(S, xrow && dyrow ? xrow : NULL);
    if (!f)
        return 0;
    const long len = (long)nb * S;
    if (S % LANES == 0)
        xrow = dyrow = NULL;
    /* where dx is stored plane by plane, the scratch it replaces (the exact
     * backward's dd, the approximate one's u) in dx's own planes: fewer
     * arrays in the caches (a 64 × 784 channel's are 200 KB each); else the
     * exact backward's dd, or the approximate one's xh and u */
    const int own = store && !xrow;
    float *dd = own ? NULL : nomul_scratch(NOMUL_SCRATCH_LN, (size_t)len * (approx ? 2 : 1));
    if (!own && !dd)
        return 0;
    const int nseg = xrow ? 1 : nb, seg = xrow ? (int)len : S;
    if (xrow) /* the gathered dy went through the ReLU as it was gathered */
        ry = NULL;
    const float off = offset_of(cfg), nf = (float)len;
    if (approx) { /* the audit, as nomul_ln_row_backward_pa's */
        NOMUL_COUNT(PAM, 6L * len); NOMUL_COUNT(PAD, 3L * len + 2); NOMUL_COUNT(FADD, 9L * len);
    } else if (ksum) {
        NOMUL_COUNT(PAD, len + 1); NOMUL_COUNT(SHIFT, 5L * len + 3); NOMUL_COUNT(FADD, 7L * len);
    } else {
        NOMUL_COUNT(PAM, len + 1); NOMUL_COUNT(PAD, len + 2); NOMUL_COUNT(PALOG2, 1);
        NOMUL_COUNT(PAEXP2, 1); NOMUL_COUNT(SHIFT, 5L * len + 3); NOMUL_COUNT(FADD, 9L * len);
    }
    float adg[LANES] = {0}, adb[LANES] = {0};
    if (approx) { /* bn_row_backward_fused's, dx plane by plane; in dx's
                   * planes, u, and xh = PAD(x − μ, r) not kept but formed
                   * again from x */
        float au[LANES] = {0}, av[LANES] = {0}, *xh = own ? NULL : dd;
        float *u = own ? PLANE(dx, 0) : dd + len;
        const long us = own ? (long)C * S : seg;
        for (int b = 0; b < nseg; b++)
            f->bn_backward_approx1(seg, SEG(x, xrow, b), mu, r, gamma[0], SEG(dy, dyrow, b),
                                   ry ? PLANE(ry, b) : NULL, off, xh ? xh + (long)b * seg : NULL,
                                   u + (long)b * us, au, av, adg, adb);
        float m1 = pad(lanes_total(au), nf), m2 = pad(lanes_total(av), nf);
        f->bn_backward_approx2(nb, S, xh, PLANE(x, 0), (long)C * S, mu, u, own ? us : S, r, m1,
                               m2, off, PLANE(dx, 0), (long)C * S, store);
        dgamma[0] += lanes_total(adg);
        dbeta[0] += lanes_total(adb);
        return 1;
    }
    float sum, q, mu2 = mu, r2 = r;
    if (ksum) {
        sum = *ksum;
        q = *kq;
    } else {
        float acc[LANES] = {0}, aq[LANES] = {0};
        for (int b = 0; b < nseg; b++)
            lanes_accumulate(acc, seg, SEG(x, xrow, b));
        sum = lanes_total(acc);
        mu2 = pad(sum, nf);
        for (int b = 0; b < nseg; b++)
            f->squares(seg, SEG(x, xrow, b), mu2, off, NULL, aq);
        q = lanes_total(aq);
        r2 = nomul_pa_sqrt(pad(q, nf) + eps);
    }
    float var = pad(q, nf), adr[LANES] = {0}, amu[LANES] = {0};
#define DD(b) (own ? PLANE(dx, b) : dd + (long)(b) * seg)
    for (int b = 0; b < nseg; b++)
        f->backward1(seg, SEG(x, xrow, b), mu2, r2, gamma, SEG(dy, dyrow, b),
                     ry ? PLANE(ry, b) : NULL, off, adg, adb, DD(b), adr, 1);
    dgamma[0] += lanes_total(adg);
    dbeta[0] += lanes_total(adb);
    float dvar = nomul_pa_sqrt_grad(var + eps, lanes_total(adr), 0), dq, unused, dsum;
    div_grads(q, nf, dvar, &dq, &unused);
    for (int b = 0; b < nseg; b++)
        f->backward2(seg, SEG(x, xrow, b), mu2, dq, off, DD(b), amu);
#undef DD
    div_grads(sum, nf, -lanes_total(amu), &dsum, &unused);
    /* store: the bits of adding into +0; else as added into a gathered row
     * that starts at +0 */
    f->bn_dx_finish(nb, S, own ? PLANE(dx, 0) : dd, own ? (long)C * S : S, dsum, PLANE(dx, 0),
                    (long)C * S, store);
    return 1;
}
#undef SEG
#undef PLANE

/* ---- label-smoothed cross-entropy ------------------------------------------------ */

/* the loss of one row, and its parts (for the exact backward):
 * nll = −logp[t], smooth = −Σ logp, msm = PAD(smooth, n) */
static float ce_loss(float off, int n, float nll, float smooth, float eps, float *msm)
{
    *msm = pad(smooth, (float)n);
    return pam(off, nll, 1.0f - eps) + (eps != 0.0f ? pam(off, *msm, eps) : 0.0f);
}

static float ce_row(float off, int n, const float *lp, int t, float eps, float *nll, float *msm,
                    float *smooth_out)
{
    float smooth = 0.0f;
    for (int c = 0; c < n; c++)
        smooth -= lp[c];
    *smooth_out = smooth;
    *nll = -lp[t];
    return ce_loss(off, n, *nll, smooth, eps, msm);
}

/* The rows of a cross-entropy, split among the threads (each row is
 * independent; the callers add the rows' losses in row order, so the split
 * does not change a bit). Rows whose target is ignore_index or out of range
 * are skipped, and their entries left as they were. */
typedef struct {
    float off, eps, g;
    int n, ignore_index, approx;
    const float *logp;
    const int *target;
    float *loss, *nll, *msm, *smooth; /* per row: ce_row's loss and parts */
    float *dlogp;                     /* the gradient pass: rows to write */
    int kept; /* loss and the parts: the forward's (nomul_ce_logits_forward_pa) */
} ce_job;

static int ce_skip(const ce_job *j, int i)
{
    int t = j->target[i];
    return !nomul_ce_row_used(t, j->ignore_index, j->n);
}

/* the forward pass of rows lo..hi−1: loss[i] (and the parts if kept), the
 * smoothing sums of a group of rows side by side (row_sums) */
static void ce_parts_range(const ce_job *j, int lo, int hi)
{
    const int n = j->n;
    for (int i0 = lo; i0 < hi; i0 += GROUP) {
        int k = hi - i0 < GROUP ? hi - i0 : GROUP;
        float smooth[GROUP];
        row_sums(k, n, j->logp + (long)i0 * n, n, 1, smooth);
        for (int r = 0; r < k; r++) {
            int i = i0 + r;
            if (ce_skip(j, i))
                continue;
            float nll = -j->logp[(long)i * n + j->target[i]], msm;
            j->loss[i] = ce_loss(j->off, n, nll, smooth[r], j->eps, &msm);
            if (j->nll) {
                j->nll[i] = nll;
                j->msm[i] = msm;
                j->smooth[i] = smooth[r];
            }
        }
    }
}

/* One row's gradient into dr (target t), g = ∂loss/∂(Σ row losses); the
 * exact derivative from the row's parts nll, msm, smooth (ce_row's). */
static void ce_row_grad(float off, int approx, int n, int t, float eps, float g, float nll,
                        float msm, float smooth, float *dr)
{
    const float nf = (float)n;
    float dnll, dsmooth, unused;
    if (approx) {
        dnll = pam(off, g, 1.0f - eps);
        dsmooth = eps != 0.0f ? pad(pam(off, g, eps), nf) : 0.0f;
    } else { /* loss_i = PAM(nll, 1 − ε) + PAM(PAD(smooth, n), ε) */
        dnll = mul_grad_a(off, nll, 1.0f - eps, g);
        dsmooth = 0.0f;
        if (eps != 0.0f)
            div_grads(smooth, nf, mul_grad_a(off, msm, eps, g), &dsmooth, &unused);
    }
    /* nll = −logp[t], smooth = −Σ logp */
    dr[t] -= dnll;
    for (int c = 0; c < n; c++)
        dr[c] -= dsmooth;
}

/* row i's gradient into dr (row i of dlogp, or a buffer standing for it),
 * g = ∂loss/∂(Σ row losses); nothing for a skipped row */
static void ce_grad_row(const ce_job *j, int i, float *dr)
{
    if (!ce_skip(j, i))
        ce_row_grad(j->off, j->approx, j->n, j->target[i], j->eps, j->g,
                    j->nll ? j->nll[i] : 0.0f, j->nll ? j->msm[i] : 0.0f,
                    j->nll ? j->smooth[i] : 0.0f, dr);
}

/* the gradient of rows lo..hi−1 into dlogp */
static void ce_grad_range(const ce_job *j, int lo, int hi)
{
    for (int i = lo; i < hi; i++)
        ce_grad_row(j, i, j->dlogp + (long)i * j->n);
}

/* fn over all rows, in contiguous shares among the threads (one thread: no
 * OpenMP team at all) */
static void ce_run(const ce_job *j, int rows, void (*fn)(const ce_job *, int, int))
{
    int nt = nomul_pa_chains_scalar ? 1 : nomul_fn_threads((long)rows * j->n);
    if (nt <= 1 || rows < 2) {
        fn(j, 0, rows);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        long k = omp_get_num_threads(), t = omp_get_thread_num();
        fn(j, (int)(rows * t / k), (int)(rows * (t + 1) / k));
    }
}

/* A job over these rows with per-row buffers (parts: the exact backward's
 * too); 0 if out of scratch memory or under the twin (nomul_pa_chains_scalar),
 * where the callers take the rows one after the other in a single loop. */
static int ce_job_init(ce_job *j, const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                       const int *target, int ignore_index, float smoothing, int parts)
{
    memset(j, 0, sizeof *j);
    if (nomul_pa_chains_scalar)
        return 0;
    float *buf = nomul_scratch(NOMUL_SCRATCH_PART, (size_t)rows * (parts ? 4 : 1));
    if (!buf)
        return 0;
    *j = (ce_job){offset_of(cfg), smoothing, 0.0f, n, ignore_index, cfg->approx_bwd, logp,
                  target, buf, NULL, NULL, NULL, NULL, 0};
    if (parts) {
        j->nll = buf + rows;
        j->msm = buf + 2L * rows;
        j->smooth = buf + 3L * rows;
    }
    return 1;
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
    ce_job j;
    if (ce_job_init(&j, cfg, rows, n, logp, target, ignore_index, smoothing, 0)) {
        ce_run(&j, rows, ce_parts_range);
        for (int i = 0; i < rows; i++)
            if (nomul_ce_row_used(target[i], ignore_index, n))
                total += j.loss[i];
    } else { /* the twin: the same rows in one loop */
        for (int i = 0; i < rows; i++)
            if (nomul_ce_row_used(target[i], ignore_index, n))
                total += ce_row(off, n, logp + (long)i * n, target[i], smoothing, &nll, &msm,
                                &smooth);
    }
    return pad(total, (float)used);
}

int nomul_cross_entropy_rows_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                const int *target, int ignore_index, float smoothing,
                                float *loss)
{
    const float off = offset_of(cfg);
    NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows); NOMUL_COUNT(FADD, (long)rows * n);
    int used = 0;
    for (int i = 0; i < rows; i++)
        if (target[i] != ignore_index && (target[i] < 0 || target[i] >= n))
            return -1;
    ce_job j;
    int fast = ce_job_init(&j, cfg, rows, n, logp, target, ignore_index, smoothing, 0);
    if (fast)
        ce_run(&j, rows, ce_parts_range);
    float nll, msm, smooth;
    for (int i = 0; i < rows; i++) {
        if (!nomul_ce_row_used(target[i], ignore_index, n))
            continue;
        loss[used++] = fast ? j.loss[i]
                            : ce_row(off, n, logp + (long)i * n, target[i], smoothing, &nll,
                                     &msm, &smooth);
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

/* The twin of the gradient pass: every row in one loop, its parts
 * recomputed. */
static void ce_backward_rows_scalar(float off, int approx, int rows, int n, const float *logp,
                                    const int *target, int ignore_index, float smoothing,
                                    float g, float *dlogp)
{
    float nll = 0.0f, msm = 0.0f, smooth = 0.0f;
    for (int i = 0; i < rows; i++) {
        int t = target[i];
        if (!nomul_ce_row_used(t, ignore_index, n))
            continue;
        if (!approx)
            ce_row(off, n, logp + (long)i * n, t, smoothing, &nll, &msm, &smooth);
        ce_row_grad(off, approx, n, t, smoothing, g, nll, msm, smooth, dlogp + (long)i * n);
    }
}

/* the audit of the cross-entropy's backward */
static void count_ce_backward(const nomul_op_cfg *cfg, int rows, int n)
{
    long t0 = (long)rows * n;
    if (cfg->approx_bwd) {
        NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    } else {
        NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(SHIFT, 3L * rows + 1);
        NOMUL_COUNT(FADD, 2 * t0 + rows);
    }
}

/* j's g, ∂loss/∂(Σ row losses) (used > 0), the exact derivative's from the
 * rows' parts (computed here, kept in j when fast) and their total (or the
 * global one, total_in) */
static float ce_grad_scale(ce_job *j, int fast, const nomul_op_cfg *cfg, int rows, int n,
                           const float *logp, const int *target, int ignore_index,
                           float smoothing, float dloss, int used, const float *total_in)
{
    const float off = offset_of(cfg);
    float total = 0.0f, nll, msm, smooth, g, unused;
    if (cfg->approx_bwd)
        return pad(dloss, (float)used);
    /* loss = PAD(Σ loss_i, used) */
    if (fast && !j->kept)
        ce_run(j, rows, ce_parts_range);
    for (int i = 0; !total_in && i < rows; i++)
        if (nomul_ce_row_used(target[i], ignore_index, n))
            total += fast ? j->loss[i]
                          : ce_row(off, n, logp + (long)i * n, target[i], smoothing, &nll, &msm,
                                   &smooth);
    div_grads(total_in ? *total_in : total, (float)used, dloss, &g, &unused);
    return g;
}

void nomul_cross_entropy_backward_pa_total(const nomul_op_cfg *cfg, int rows, int n,
                                           const float *logp, const int *target,
                                           int ignore_index, float smoothing, float dloss,
                                           int used, const float *total_in, float *dlogp)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    count_ce_backward(cfg, rows, n);
    if (used == 0)
        return;
    ce_job j;
    /* the exact derivative needs each row's parts: computed once, kept */
    int fast = ce_job_init(&j, cfg, rows, n, logp, target, ignore_index, smoothing, !approx);
    float g = ce_grad_scale(&j, fast, cfg, rows, n, logp, target, ignore_index, smoothing, dloss,
                            used, total_in);
    if (!fast) {
        ce_backward_rows_scalar(off, approx, rows, n, logp, target, ignore_index, smoothing, g,
                                dlogp);
        return;
    }
    j.g = g;
    j.dlogp = dlogp;
    ce_run(&j, rows, ce_grad_range);
}

/* rows_job's make_dy for the fused backward: rows i0..i0+k−1 of dlogp as
 * the gradient pass leaves them in a zeroed gradient (with no used row,
 * every row is skipped: zeros) */
static void ce_dy_rows(const void *ctx, int i0, int k, float *dy)
{
    const ce_job *j = ctx;
    memset(dy, 0, (size_t)k * j->n * sizeof *dy);
    for (int r = 0; r < k; r++)
        ce_grad_row(j, i0 + r, dy + (long)r * j->n);
}

void nomul_ce_lsm_backward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logits,
                              const float *logp, const float *keep, const int *target,
                              int ignore_index, float smoothing, float dloss, int used,
                              const float *total_in, int store, float *dx)
{
    ce_job j;
    /* read only: ce_job's part arrays and rows_job's ce_keep serve both ways */
    float *k = (float *)keep;
    int fast = 1;
    if (k) { /* the forward's row losses, parts, s, S (and e): no pass over logp */
        const long R = rows;
        j = (ce_job){offset_of(cfg), smoothing, 0.0f, n, ignore_index, cfg->approx_bwd, NULL,
                     target, k + CK_LOSS * R, k + CK_NLL * R, k + CK_MSM * R,
                     k + CK_SMOOTH * R, NULL, 1};
    } else {
        fast = ce_job_init(&j, cfg, rows, n, logp, target, ignore_index, smoothing,
                           !cfg->approx_bwd);
    }
    float *dlogp = NULL;
    if (!fast) { /* the twin, or out of scratch memory: the two passes through a buffer */
        dlogp = calloc((size_t)rows * n, sizeof *dlogp);
        if (!dlogp) {
            nomul_report(NOMUL_ENOMEM, "cross-entropy backward: out of memory for %d x %d "
                         "gradients", rows, n);
            return;
        }
        nomul_cross_entropy_backward_pa_total(cfg, rows, n, logp, target, ignore_index,
                                              smoothing, dloss, used, total_in, dlogp);
        if (store)
            memset(dx, 0, (size_t)rows * n * sizeof *dx);
        nomul_log_softmax_backward_pa(cfg, rows, n, logits, dlogp, dx);
        free(dlogp);
        return;
    }
    count_ce_backward(cfg, rows, n);
    count_lsm_backward(cfg, rows, n, k != NULL);
    if (used > 0) /* else every row is skipped, and g unused */
        j.g = ce_grad_scale(&j, fast, cfg, rows, n, logp, target, ignore_index, smoothing, dloss,
                            used, total_in);
    rows_run(&(rows_job){.cfg = cfg, .rows = rows, .n = n, .x = logits, .out = dx,
                         .make_dy = ce_dy_rows, .dy_ctx = &j, .store = store, .ce_keep = k},
             lse_backward_body);
}

/* log_softmax and the cross-entropy's row losses for a group of rows, in
 * the cache: pa_rows_lse's logsumexp and y = x − lse (into logp where given,
 * else a scratch row), then ce_parts_range's smoothing sums and losses, all
 * into the kept values (e straight into them for the approximate backward) */
static void ce_keep_body(const rows_job *j, int i0, int k, row_tmp *t)
{
    const float off = offset_of(j->cfg);
    const int n = j->n;
    const long R = j->rows;
    float *kk = j->ce_keep, s[ROWS_MAX], sum[ROWS_MAX], smooth[ROWS_MAX];
    row_tmp tk = *t;
    if (j->cfg->approx_bwd)
        tk.e = kk + CK_ARRAYS * R + (long)i0 * n;
    pa_rows_exp(off, k, n, j->x + (long)i0 * n, &tk, s, sum);
    float *y = j->out ? j->out + (long)i0 * n : t->w;
    pa_rows_lse(k, n, j->x + (long)i0 * n, s, sum, NULL, y);
    row_sums(k, n, y, n, 1, smooth);
    for (int r = 0; r < k; r++) {
        const long i = i0 + r;
        const int tg = j->target[i];
        kk[CK_S * R + i] = s[r];
        kk[CK_SUM * R + i] = sum[r];
        float loss = 0.0f, nll = 0.0f, msm = 0.0f;
        if (nomul_ce_row_used(tg, j->ignore_index, n)) {
            nll = -y[(long)r * n + tg];
            loss = ce_loss(off, n, nll, smooth[r], j->eps, &msm);
        }
        kk[CK_LOSS * R + i] = loss;
        kk[CK_NLL * R + i] = nll;
        kk[CK_MSM * R + i] = msm;
        kk[CK_SMOOTH * R + i] = smooth[r];
    }
}

long nomul_ce_keep_floats_pa(const nomul_op_cfg *cfg, int rows, int n)
{
    return CK_ARRAYS * (long)rows + (cfg->approx_bwd ? (long)rows * n : 0);
}

float nomul_ce_logits_forward_pa(const nomul_op_cfg *cfg, int rows, int n, const float *logits,
                                 const int *target, int ignore_index, float smoothing, int used,
                                 float *logp, float *keep)
{
    long t0 = (long)rows * n; /* the audit: log_softmax's forward, then the cross-entropy's */
    NOMUL_COUNT(PAM, t0); NOMUL_COUNT(PAEXP2, t0); NOMUL_COUNT(PALOG2, rows);
    NOMUL_COUNT(PAD, rows); NOMUL_COUNT(FADD, 3 * t0);
    NOMUL_COUNT(PAM, 2L * rows); NOMUL_COUNT(PAD, rows + 1L); NOMUL_COUNT(FADD, t0 + rows);
    rows_run(&(rows_job){.cfg = cfg, .rows = rows, .n = n, .x = logits, .out = logp,
                         .target = target, .ignore_index = ignore_index, .eps = smoothing,
                         .ce_keep = keep},
             ce_keep_body); /* (a target out of range: its row is skipped) */
    if (used <= 0)
        return used < 0 ? NAN : 0.0f;
    float total = 0.0f;
    for (int i = 0; i < rows; i++)
        if (nomul_ce_row_used(target[i], ignore_index, n))
            total += keep[CK_LOSS * (long)rows + i];
    return pad(total, (float)used);
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
    nomul_elt(NOMUL_ELT_EXP, (size_t)c, e, 0, NULL, 0, NULL, 0, NULL, 0, e, NULL);
    for (int i = 0; i < c; i++)
        q[i] = 1.0f + e[i];
    nomul_elt(NOMUL_ELT_DIV, (size_t)c, &one, 1, q, 0, NULL, 0, NULL, 0, s, NULL);
}

void nomul_gelu_forward_pa(const nomul_op_cfg *cfg, long n, const float *x, float *y,
                           float *keep)
{
    const float off = offset_of(cfg);
    NOMUL_COUNT(PAM, 3 * n); NOMUL_COUNT(PAEXP2, n); NOMUL_COUNT(PAD, n); NOMUL_COUNT(FADD, n);
    const int chains = !nomul_pa_chains_scalar;
    /* the fused pass (AVX2, AVX-512), else the chain on the array kernels */
    const nomul_pa_fused *f = chains ? nomul_pa_fused_active() : NULL;
    /* keep: σ for n values, then q for the exact derivative (none for the approximate) */
    float *keep_q = keep && !cfg->approx_bwd ? keep + n : NULL;
#pragma omp parallel num_threads(nomul_fn_threads(n))
    {
        if (f) {
#pragma omp for schedule(static)
            for (long i0 = 0; i0 < n; i0 += GELU_CH)
                f->gelu_forward(n - i0 < GELU_CH ? (int)(n - i0) : GELU_CH, x + i0, GELU_K, off,
                                y + i0, keep ? keep + i0 : NULL, keep_q ? keep_q + i0 : NULL);
        } else if (chains) {
            float z[GELU_CH], e[GELU_CH], q[GELU_CH], s[GELU_CH];
#pragma omp for schedule(static)
            for (long i0 = 0; i0 < n; i0 += GELU_CH) {
                int c = n - i0 < GELU_CH ? (int)(n - i0) : GELU_CH;
                float *sc = keep ? keep + i0 : s, *qc = keep_q ? keep_q + i0 : q;
                gelu_s(off, c, x + i0, z, e, qc, sc);
                elt_pam(off, c, x + i0, 0, sc, 0, y + i0);
            }
        } else {
#pragma omp for schedule(static)
            for (long i = 0; i < n; i++) {
                float z = pam(off, GELU_K, x[i]);
                float q = 1.0f + nomul_pa_exp(-z), s = pad(1.0f, q);
                y[i] = pam(off, x[i], s);
                if (keep)
                    keep[i] = s;
                if (keep_q)
                    keep_q[i] = q;
            }
        }
    }
}

/* dx += the PA backward of GELU for c values (see the scalar chain below),
 * σ and q = 1 + e from ks, kq (the forward's, kept; kq only for the exact
 * derivative) or recomputed (ks NULL) */
static void gelu_backward_chunk(float off, int approx, int c, const float *x, const float *g,
                                const float *ks, const float *kq, float *dx)
{
    float z[GELU_CH], e[GELU_CH], qb[GELU_CH], sb[GELU_CH], a[GELU_CH], b[GELU_CH];
    const float k = GELU_K, one = 1.0f, *s = sb, *q = qb;
    /* the fused pass (AVX2, AVX-512), which makes z itself */
    const nomul_pa_fused *f = nomul_pa_fused_active();
    if (ks) {
        if (!f)
            elt_pam(off, c, &k, 1, x, 0, z);
        s = ks;
        q = kq;
    } else if (f) {
        f->gelu_forward(c, x, k, off, NULL, sb, qb);
    } else {
        gelu_s(off, c, x, z, e, qb, sb);
    }
    if (f) {
        f->gelu_backward(c, x, s, q, g, k, off, approx, dx);
        return;
    }
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
    nomul_elt(NOMUL_ELT_DIV_GRAD, (size_t)c, &one, 1, q, 0, b, 0, NULL, 0, NULL, b); /* b = dq */
    for (int i = 0; i < c; i++)
        z[i] = -z[i];
    nomul_elt(NOMUL_ELT_EXP_GRAD, (size_t)c, z, 0, b, 0, NULL, 0, NULL, 0, b, NULL); /* ∂/∂(−z) */
    for (int i = 0; i < c; i++)
        b[i] = -b[i];
    elt_mul_grads(off, c, &k, 1, x, 0, b, 0, NULL, b);                /* b = dxz */
    for (int i = 0; i < c; i++)
        dx[i] += a[i] + b[i];
}

void nomul_gelu_backward_pa(const nomul_op_cfg *cfg, long n, const float *x, const float *keep,
                            const float *dy, float *dx)
{
    const float off = offset_of(cfg);
    const int approx = cfg->approx_bwd;
    /* the audit; with the forward's σ and q kept, less their recomputation
     * (σ's chain: PAM 2n, PAEXP2 n, PAD n, FADD n) but z = PAM(k, x) again */
    const long kept = keep ? n : 0;
    if (approx) {
        NOMUL_COUNT(PAM, 8 * n - kept); NOMUL_COUNT(PAEXP2, n - kept); NOMUL_COUNT(PAD, n - kept);
        NOMUL_COUNT(FADD, 4 * n - kept);
    } else {
        NOMUL_COUNT(PAM, 2 * n - kept); NOMUL_COUNT(PAEXP2, n - kept); NOMUL_COUNT(PAD, n - kept);
        NOMUL_COUNT(SHIFT, 5 * n); NOMUL_COUNT(FADD, 4 * n - kept);
    }
    const int chains = !nomul_pa_chains_scalar;
    /* keep: σ, then q for the exact derivative (as nomul_gelu_forward_pa wrote them) */
    const float *keep_q = keep && !approx ? keep + n : NULL;
#pragma omp parallel num_threads(nomul_fn_threads(n))
    {
        if (chains) {
#pragma omp for schedule(static)
            for (long i0 = 0; i0 < n; i0 += GELU_CH)
                gelu_backward_chunk(off, approx, n - i0 < GELU_CH ? (int)(n - i0) : GELU_CH,
                                    x + i0, dy + i0, keep ? keep + i0 : NULL,
                                    keep_q ? keep_q + i0 : NULL, dx + i0);
        } else {
#pragma omp for schedule(static)
            for (long i = 0; i < n; i++) {
                float xi = x[i], g = dy[i];
                float z = pam(off, GELU_K, xi), q, s;
                if (keep) {
                    s = keep[i];
                    q = keep_q ? keep_q[i] : 0.0f; /* the approximate backward reads no q */
                } else {
                    q = 1.0f + nomul_pa_exp(-z);
                    s = pad(1.0f, q);
                }
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
