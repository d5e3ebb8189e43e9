/*
 * ops_elementwise.c — the elementwise autodiff operations and reductions to
 * a scalar: relu, GELU, add, sub, mul, div (numpy-style broadcasting),
 * scale, dropout, sum, mean. Products and quotients are PAM and PAD in PA
 * mode, with their exact or approximate derivatives; additions are float in
 * every mode. Each backward accumulates (+=) into its inputs' gradients and
 * quotes its forward.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "../arith/bits.h"
#include "../arith/elt.h"
#include "../core/internal.h"
#include "graph_internal.h"
#include "nomul/arith.h"

/* ---- relu, GELU ---------------------------------------------------------------------------- */

/* forward: y = max(x, 0). Where x ≤ 0 (or NaN) the gradient gains −0, the
 * one float that leaves every value as it is (−0 included): the same bits
 * as skipping it (a signalling NaN comes out quiet). The term is chosen
 * with a bit mask, not a branch (which the signs of x mispredict half the
 * time, and which keeps GCC from vectorizing a conditional float add):
 * ResNet20's relu backward went from 27 to 5 ms a step. */
void ad_relu_backward(const node *nd)
{
    const nomul_tensor *x = nd->in[0], *y = nd->out;
    const float *restrict xd = x->data, *restrict dy = y->grad;
    float *restrict dx = x->grad;
#pragma omp parallel for num_threads(nomul_light_threads(x->n)) schedule(static)
    for (long i = 0; i < x->n; i++) {
        uint32_t keep = 0u - (uint32_t)(xd[i] > 0.0f);
        dx[i] += pa_float((pa_bits(dy[i]) & keep) | (PA_SIGN & ~keep));
    }
}

nomul_tensor *nomul_relu(nomul_graph *g, nomul_tensor *x)
{
    if (!x)
        return NULL;
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    const float *restrict xd = x->data;
    float *restrict yd = y->data;
#pragma omp parallel for num_threads(nomul_light_threads(x->n)) schedule(static)
    for (long i = 0; i < x->n; i++)
        yd[i] = nomul_relu1(xd[i]);
    ad_record(g, AD_OP_RELU, NULL, NULL, y, x, NULL, NULL);
    return y;
}

/* forward: y = gelu(x), keeping its intermediates where it has some (PA) */
void ad_gelu_backward(const node *nd)
{
    nomul_gelu_backward_keep(&nd->cfg, nd->in[0]->n, nd->in[0]->data, nd->p.gelu.keep,
                             nd->out->grad, nd->in[0]->grad);
}

nomul_tensor *nomul_gelu(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    if (!x)
        return NULL;
    const int grad = ad_wants_grad(g, x, NULL, NULL);
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, grad);
    const long nk = grad ? nomul_gelu_keep_floats(cfg, x->n) : 0;
    float *keep = nk ? ad_arena_alloc(g, (size_t)nk * sizeof(float)) : NULL;
    if (!y || (nk && !keep))
        return NULL;
    nomul_gelu_forward_keep(cfg, x->n, x->data, y->data, keep);
    ad_record(g, AD_OP_GELU, cfg, &(ad_params){.gelu = {keep}}, y, x, NULL, NULL);
    return y;
}

/* ---- broadcasting binary operations: add, sub, mul, div ------------------------------------ */

/* Output shape of numpy-style broadcasting, and each operand's strides in
 * the output's dimensions (0 along broadcast dimensions). */
typedef struct {
    int ndim, shape[NOMUL_MAX_DIMS];
    long sa[NOMUL_MAX_DIMS], sb[NOMUL_MAX_DIMS];
} bcast;

static int broadcast(const nomul_tensor *a, const nomul_tensor *b, bcast *bc)
{
    bc->ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    long sa = 1, sb = 1;
    for (int d = bc->ndim - 1; d >= 0; d--) {
        int ia = d - (bc->ndim - a->ndim), ib = d - (bc->ndim - b->ndim);
        int na = ia >= 0 ? a->shape[ia] : 1, nb = ib >= 0 ? b->shape[ib] : 1;
        if (na != nb && na != 1 && nb != 1)
            return 0;
        bc->shape[d] = na > nb ? na : nb;
        bc->sa[d] = na == 1 ? 0 : sa;
        bc->sb[d] = nb == 1 ? 0 : sb;
        sa *= na;
        sb *= nb;
    }
    return 1;
}

/* Walks the output in order row by row (a row: the last dimension), keeping
 * each operand's offset at the row's start; within a row the operands
 * advance by their last strides (0 or 1). */
typedef struct {
    const bcast *bc;
    int idx[NOMUL_MAX_DIMS];
    long ia, ib;
} bcast_it;

static void it_next_row(bcast_it *it)
{
    const bcast *bc = it->bc;
    for (int d = bc->ndim - 2; d >= 0; d--) {
        it->ia += bc->sa[d];
        it->ib += bc->sb[d];
        if (++it->idx[d] < bc->shape[d])
            return;
        it->ia -= bc->sa[d] * bc->shape[d];
        it->ib -= bc->sb[d] * bc->shape[d];
        it->idx[d] = 0;
    }
}

/* op: AD_OP_ADD, _SUB, _MUL or _DIV */
static float bin_forward(ad_op op, int pa, float off, float x, float y)
{
    switch (op) {
    case AD_OP_ADD: return x + y;
    case AD_OP_SUB: return x - y;
    case AD_OP_MUL:
        return !pa ? x * y : off != 1.0f ? nomul_pa_mul_off(x, y, off) : nomul_pa_mul(x, y);
    default: return pa ? nomul_pa_div(x, y) : x / y;
    }
}

/* d += g (d −= g with sub) on all threads, d NULL for none; where this is
 * d's first write (store), d = +0 + g (+0 − g): the bits of the same into
 * zeros. With taken (a gradient that took the output's, AD_TAKEN: it is g
 * itself), g's −0s are then turned into +0 in place, the bits of +0 + g,
 * run by run, the check reading the run from L1 and writing only where it
 * must. */
static void grad_pass(float *restrict d, float *restrict g, long n, int store, int sub,
                      int taken)
{
    enum { RUN = 2048 };
    const long runs = (n + RUN - 1) / RUN;
#pragma omp parallel for num_threads(nomul_light_threads(n)) schedule(static)
    for (long r = 0; r < runs; r++) {
        const long i0 = r * RUN, i1 = i0 + RUN < n ? i0 + RUN : n;
        if (d && store && sub)
            for (long i = i0; i < i1; i++)
                d[i] = 0.0f - g[i];
        else if (d && store)
            for (long i = i0; i < i1; i++)
                d[i] = 0.0f + g[i];
        else if (d && sub)
            for (long i = i0; i < i1; i++)
                d[i] -= g[i];
        else if (d)
            for (long i = i0; i < i1; i++)
                d[i] += g[i];
        if (!taken)
            continue;
        uint32_t neg0 = 0;
        for (long i = i0; i < i1; i++) {
            uint32_t u;
            memcpy(&u, &g[i], sizeof u);
            neg0 |= u == 0x80000000u;
        }
        if (neg0)
            for (long i = i0; i < i1; i++)
                g[i] = 0.0f + g[i];
    }
}

void ad_binary_backward(const node *nd)
{
    nomul_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out;
    bcast bc;
    broadcast(a, b, &bc);
    ad_op op = nd->op;
    int pa = nomul_op_is_pa(&nd->cfg), approx = nd->cfg.approx_bwd;
    /* the audit: both gradients, and their accumulation; a gradient taken
     * (AD_TAKEN) is the output's, made without an add */
    long long n2 = 2LL * y->n;
    NOMUL_COUNT(FADD, nd->store[0] == AD_TAKEN ? n2 / 2 : n2);
    if (op == AD_OP_MUL || op == AD_OP_DIV) {
        if (!pa) {
            NOMUL_COUNT(FMUL, n2);
            if (op == AD_OP_DIV)
                NOMUL_COUNT(FDIV, n2);
        } else if (approx) {
            nomul_count(op == AD_OP_MUL ? NOMUL_COUNT_PAM : NOMUL_COUNT_PAD,
                        (unsigned long long)n2);
        } else {
            NOMUL_COUNT(SHIFT, n2);
        }
    }
    bcast_it it = {&bc, {0}, 0, 0};
    const long row = bc.shape[bc.ndim - 1], ra = bc.sa[bc.ndim - 1], rb = bc.sb[bc.ndim - 1];
    if ((op == AD_OP_ADD || op == AD_OP_SUB) && a->n == y->n && b->n == y->n) {
        /* no broadcast (a residual add): flat passes on all threads; a
         * gradient this node writes first is stored, +0 + g and +0 − g,
         * the bits of += and −= into zeros; a's may be g's own buffer
         * (AD_TAKEN: b's pass first, then g's −0s made +0) */
        const int taken = nd->store[0] == AD_TAKEN;
        if (a->grad && !taken)
            grad_pass(a->grad, y->grad, y->n, nd->store[0], 0, 0);
        if (b->grad || taken) /* sub: x − g is x + (−g), bit for bit */
            grad_pass(b->grad, y->grad, y->n, nd->store[1], op == AD_OP_SUB, taken);
        return;
    }
    /* the broadcast forms accumulate: a gradient left unfilled for this
     * node's first write is zeroed here */
    for (int k = 0; k < 2; k++)
        if (nd->store[k] && nd->in[k]->grad)
            memset(nd->in[k]->grad, 0, (size_t)nd->in[k]->n * sizeof(float));
    if (op == AD_OP_ADD || op == AD_OP_SUB) { /* row loops the compiler vectorizes */
        for (long i0 = 0; i0 < y->n; i0 += row, it_next_row(&it)) {
            const float *g = y->grad + i0;
            if (a->grad) {
                float *ga = a->grad + it.ia;
                if (ra)
                    for (long j = 0; j < row; j++)
                        ga[j] += g[j];
                else
                    for (long j = 0; j < row; j++)
                        ga[0] += g[j];
            }
            if (b->grad) { /* sub: x − g is x + (−g), bit for bit */
                float *gb = b->grad + it.ib;
                if (rb && op == AD_OP_ADD)
                    for (long j = 0; j < row; j++)
                        gb[j] += g[j];
                else if (rb)
                    for (long j = 0; j < row; j++)
                        gb[j] -= g[j];
                else if (op == AD_OP_ADD)
                    for (long j = 0; j < row; j++)
                        gb[0] += g[j];
                else
                    for (long j = 0; j < row; j++)
                        gb[0] -= g[j];
            }
        }
        return;
    }
    for (long i = 0; i < y->n; i++) {
        long j = i % row;
        if (j == 0 && i > 0)
            it_next_row(&it);
        long ia = it.ia + j * ra, ib = it.ib + j * rb;
        float g = y->grad[i], x0 = a->data[ia], x1 = b->data[ib], ga, gb;
        switch (op) {
        case AD_OP_ADD: ga = g; gb = g; break;
        case AD_OP_SUB: ga = g; gb = -g; break;
        case AD_OP_MUL:
            if (!pa) {
                ga = x1 * g;
                gb = x0 * g;
            } else if (approx) { /* PAM(PAM(dy, b), offset), PAM(PAM(dy, a), offset) */
                float off = nd->cfg.offset;
                ga = off != 1.0f ? nomul_pa_mul_off(g, x1, off) : nomul_pa_mul(g, x1);
                gb = off != 1.0f ? nomul_pa_mul_off(g, x0, off) : nomul_pa_mul(g, x0);
                if (isnan(x0) || isnan(x1) || isnan(g))
                    ga = gb = NAN;
            } else if (nd->cfg.offset != 1.0f) {
                nomul_pa_mul_off_grad(x0, x1, nd->cfg.offset, g, &ga, &gb);
            } else {
                nomul_pa_mul_grad(x0, x1, g, &ga, &gb);
            }
            break;
        default:
            if (!pa) {
                ga = g / x1;
                gb = -x0 * g / (x1 * x1);
            } else if (approx) {
                nomul_pa_div_grad_approx(x0, x1, g, &ga, &gb);
            } else {
                nomul_pa_div_grad(x0, x1, g, &ga, &gb);
            }
            break;
        }
        if (a->grad)
            a->grad[ia] += ga;
        if (b->grad)
            b->grad[ib] += gb;
    }
}

/* forward: y = a ∘ b (broadcast), ∘ the node's operation: add, sub, mul,
 * div; cfg: NULL for add and sub (float in every mode) */
static nomul_tensor *binary(nomul_graph *g, const nomul_op_cfg *cfg, ad_op op, nomul_tensor *a,
                            nomul_tensor *b, const char *fn)
{
    if (!a || !b)
        return NULL;
    bcast bc;
    if (!broadcast(a, b, &bc)) {
        nomul_report(NOMUL_EINVAL, "%s: the operands' shapes do not broadcast", fn);
        return NULL;
    }
    nomul_tensor *y = ad_output(g, bc.ndim, bc.shape, ad_wants_grad(g, a, b, NULL));
    if (!y)
        return NULL;
    int pa = cfg && nomul_op_is_pa(cfg);
    if (op == AD_OP_ADD || op == AD_OP_SUB)
        NOMUL_COUNT(FADD, y->n);
    else if (op == AD_OP_MUL)
        nomul_count(pa ? NOMUL_COUNT_PAM : NOMUL_COUNT_FMUL, (unsigned long long)y->n);
    else
        nomul_count(pa ? NOMUL_COUNT_PAD : NOMUL_COUNT_FDIV, (unsigned long long)y->n);
    bcast_it it = {&bc, {0}, 0, 0};
    const long row = bc.shape[bc.ndim - 1], ra = bc.sa[bc.ndim - 1], rb = bc.sb[bc.ndim - 1];
    const float off = cfg ? cfg->offset : 1.0f;
    if (a->n == y->n && b->n == y->n) { /* no broadcast (a residual add): one flat pass */
        const float *restrict x0 = a->data, *restrict x1 = b->data;
        float *restrict out = y->data;
        if (op == AD_OP_ADD) {
#pragma omp parallel for num_threads(nomul_light_threads(y->n)) schedule(static)
            for (long i = 0; i < y->n; i++)
                out[i] = x0[i] + x1[i];
        } else {
#pragma omp parallel for num_threads(nomul_light_threads(y->n)) schedule(static)
            for (long i = 0; i < y->n; i++)
                out[i] = bin_forward(op, pa, off, x0[i], x1[i]);
        }
        ad_record(g, op, cfg, NULL, y, a, b, NULL);
        return y;
    }
    for (long i0 = 0; i0 < y->n; i0 += row, it_next_row(&it)) {
        const float *x0 = a->data + it.ia, *x1 = b->data + it.ib;
        float *out = y->data + i0;
        if (op == AD_OP_ADD && ra && rb) /* the common rows, vectorized */
            for (long j = 0; j < row; j++)
                out[j] = x0[j] + x1[j];
        else if (op == AD_OP_ADD && ra)
            for (long j = 0; j < row; j++)
                out[j] = x0[j] + x1[0];
        else
            for (long j = 0; j < row; j++)
                out[j] = bin_forward(op, pa, off, x0[j * ra], x1[j * rb]);
    }
    ad_record(g, op, cfg, NULL, y, a, b, NULL);
    return y;
}

nomul_tensor *nomul_add(nomul_graph *g, nomul_tensor *a, nomul_tensor *b)
{
    return binary(g, NULL, AD_OP_ADD, a, b, "nomul_add");
}

nomul_tensor *nomul_sub(nomul_graph *g, nomul_tensor *a, nomul_tensor *b)
{
    return binary(g, NULL, AD_OP_SUB, a, b, "nomul_sub");
}

nomul_tensor *nomul_mul(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                        nomul_tensor *b)
{
    return binary(g, cfg, AD_OP_MUL, a, b, "nomul_mul");
}

nomul_tensor *nomul_div(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                        nomul_tensor *b)
{
    return binary(g, cfg, AD_OP_DIV, a, b, "nomul_div");
}

/* ---- scale ---------------------------------------------------------------------------------- */

/* The backward of y = c·x (PAM in PA mode) where keep[i] (every element when
 * keep is NULL: scale; dropout's mask), a chunk at a time on the threads:
 * the chunk's terms into d (float c·dy; PA the array kernels' operation that
 * `term` names, bit for bit the scalar PAM or its derivative, uncounted: the
 * callers count for the audit), then added where kept (a dropped element's
 * gradient is left as it is, −0 included) */
typedef enum {
    TERM_PAM,        /* PAM(dy, c) */
    TERM_PAM_OFF,    /* PAM(PAM(dy, c), off) */
    TERM_GRAD_APPROX, /* PAM(dy, c), NaN where x is */
    TERM_GRAD        /* ∂PAM(x, c)/∂x · dy */
} scaled_term;

static void scaled_backward(const node *nd, float c, float off, scaled_term term,
                            const unsigned char *keep)
{
    nomul_tensor *x = nd->in[0], *y = nd->out;
    const int pa = nomul_op_is_pa(&nd->cfg);
    enum { CH = 2048 };
#pragma omp parallel for schedule(static) num_threads(nomul_light_threads(x->n))
    for (long i0 = 0; i0 < x->n; i0 += CH) {
        float d[CH];
        long k = x->n - i0 < CH ? x->n - i0 : CH;
        const float *g = y->grad + i0, *xc = x->data + i0;
        float *dx = x->grad + i0;
        if (!pa)
            for (long i = 0; i < k; i++)
                d[i] = c * g[i];
        else if (term == TERM_PAM)
            nomul_elt(NOMUL_ELT_MUL, (size_t)k, g, 0, &c, 1, NULL, 0, NULL, 0, d, NULL);
        else if (term == TERM_PAM_OFF)
            nomul_elt(NOMUL_ELT_MUL_OFF, (size_t)k, g, 0, &c, 1, &off, 1, NULL, 0, d, NULL);
        else if (term == TERM_GRAD_APPROX)
            nomul_elt(NOMUL_ELT_MUL_GRAD_APPROX, (size_t)k, xc, 0, &c, 1, g, 0, NULL, 0, d, NULL);
        else
            nomul_elt(NOMUL_ELT_MUL_GRAD, (size_t)k, xc, 0, &c, 1, g, 0, NULL, 0, d, NULL);
        if (keep)
            for (long i = 0; i < k; i++)
                dx[i] = keep[i0 + i] ? dx[i] + d[i] : dx[i];
        else
            for (long i = 0; i < k; i++)
                dx[i] += d[i];
    }
}

/* forward: y = c · x (PAM in PA mode); counted one term per element */
void ad_scale_backward(const node *nd)
{
    float c = nd->p.scale.c, off = nd->cfg.offset;
    const long n = nd->in[0]->n;
    const int pa = nomul_op_is_pa(&nd->cfg), approx = nd->cfg.approx_bwd;
    if (!pa)
        NOMUL_COUNT(FMUL, n);
    else if (approx)
        NOMUL_COUNT(PAM, (off != 1.0f ? 2 : 1) * n);
    else
        NOMUL_COUNT(SHIFT, n);
    NOMUL_COUNT(FADD, n);
    if (pa && approx) /* c·x·offset's derivative in PA */
        scaled_backward(nd, c, off, off != 1.0f ? TERM_PAM_OFF : TERM_GRAD_APPROX, NULL);
    else if (pa && off != 1.0f) /* exact: c replaced by PAM(c, offset) */
        scaled_backward(nd, nomul_pa_mul(c, off), off, TERM_GRAD, NULL);
    else
        scaled_backward(nd, c, off, TERM_GRAD, NULL);
}

nomul_tensor *nomul_scale(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x, float c)
{
    if (!x)
        return NULL;
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    /* a contiguous share per thread (the array calls count their own PAMs;
     * each element's result does not depend on who computes it): attention's
     * scaled scores, B·H·T² values, ran on one thread */
    const int pa = nomul_op_is_pa(cfg);
    const float off = cfg->offset;
    const long n = x->n;
    if (!pa)
        NOMUL_COUNT(FMUL, n);
#pragma omp parallel num_threads(nomul_light_threads(n))
    {
        const int tn = omp_get_num_threads(), t = omp_get_thread_num();
        long lo = nomul_block_start(n, tn, t), hi = nomul_block_start(n, tn, t + 1);
        if (hi > lo) {
            const float *xs = x->data + lo;
            float *ys = y->data + lo;
            if (pa && off != 1.0f)
                nomul_pa_mul_off_vs((size_t)(hi - lo), xs, c, off, ys);
            else if (pa)
                nomul_pa_mul_vs((size_t)(hi - lo), xs, c, ys);
            else
                for (long i = 0; i < hi - lo; i++)
                    ys[i] = c * xs[i];
        }
    }
    ad_record(g, AD_OP_SCALE, cfg, &(ad_params){.scale = {c}}, y, x, NULL, NULL);
    return y;
}

/* ---- dropout ------------------------------------------------------------------------------ */

/* forward: y = keep ? s·x : 0, s = 1/(1 − p) */
void ad_dropout_backward(const node *nd)
{
    const long n = nd->in[0]->n;
    if (!nomul_op_is_pa(&nd->cfg))
        NOMUL_COUNT(FMUL, n);
    else if (nd->cfg.approx_bwd)
        NOMUL_COUNT(PAM, n);
    else
        NOMUL_COUNT(SHIFT, n);
    NOMUL_COUNT(FADD, n);
    scaled_backward(nd, nd->p.dropout.s, 1.0f, nd->cfg.approx_bwd ? TERM_PAM : TERM_GRAD,
                    nd->p.dropout.keep);
}

nomul_tensor *nomul_dropout(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x, float p,
                            unsigned long long *rng)
{
    if (!x)
        return NULL;
    if (!(p >= 0.0f && p < 1.0f) || !rng) {
        nomul_report(NOMUL_EINVAL, "nomul_dropout: p = %g must be in [0, 1), with a generator",
                     (double)p);
        return NULL;
    }
    if (p == 0.0f || !g->grad_enabled)
        return x;
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    unsigned char *keep = ad_arena_alloc(g, (size_t)x->n); /* every element written */
    if (!y || !keep)
        return NULL;
    float s = nomul_op_is_pa(cfg) ? nomul_pa_div(1.0f, 1.0f - p) : 1.0f / (1.0f - p);
    if (nomul_op_is_pa(cfg)) { /* the audit: an upper bound, every element kept */
        NOMUL_COUNT(PAD, 1);
        NOMUL_COUNT(PAM, x->n);
    } else {
        NOMUL_COUNT(FDIV, 1);
        NOMUL_COUNT(FMUL, x->n);
    }
    /* kept when a uniform 32-bit draw is at least p·2^32 */
    unsigned long long threshold = (unsigned long long)ldexp((double)p, 32); /* p·2^32 by exponent shift */
    /* element i's draw is splitmix64's i-th from *rng: the mix of
     * *rng + i·γ, so the draws are independent of one another; the scaling
     * on the array kernels (bit for bit the scalar PAM; uncounted), dropped
     * elements then set to 0 */
    const uint64_t state = *rng;
    const int pa = nomul_op_is_pa(cfg);
    enum { CH = 2048 }; /* a chunk's draws, scaling and zeros while in cache */
#pragma omp parallel for schedule(static) num_threads(nomul_light_threads(x->n))
    for (long i0 = 0; i0 < x->n; i0 += CH) {
        long c = x->n - i0 < CH ? x->n - i0 : CH;
        unsigned char *k = keep + i0;
        float *yc = y->data + i0;
        const float *xc = x->data + i0;
        for (long i = 0; i < c; i++) {
            uint64_t draw = nomul_mix64(state + (uint64_t)(i0 + i) * NOMUL_SPLITMIX_GAMMA);
            k[i] = (unsigned char)((draw >> 32) >= threshold);
        }
        if (pa)
            nomul_elt(NOMUL_ELT_MUL, (size_t)c, xc, 0, &s, 1, NULL, 0, NULL, 0, yc, NULL);
        else
            for (long i = 0; i < c; i++)
                yc[i] = s * xc[i];
        for (long i = 0; i < c; i++)
            yc[i] = k[i] ? yc[i] : 0.0f;
    }
    *rng = state + (uint64_t)x->n * NOMUL_SPLITMIX_GAMMA;
    ad_record(g, AD_OP_DROPOUT, cfg, &(ad_params){.dropout = {keep, s}}, y, x, NULL, NULL);
    return y;
}

/* ---- sum, mean ------------------------------------------------------------------------------- */

/* forward: y = Σx */
void ad_sum_backward(const node *nd)
{
    NOMUL_COUNT(FADD, nd->in[0]->n);
    for (long i = 0; i < nd->in[0]->n; i++)
        nd->in[0]->grad[i] += nd->out->grad[0];
}

nomul_tensor *nomul_sum(nomul_graph *g, nomul_tensor *x)
{
    if (!x)
        return NULL;
    int one = 1;
    nomul_tensor *y = nomul_graph_tensor(g, 1, &one, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    float s = 0.0f;
    NOMUL_COUNT(FADD, x->n);
    for (long i = 0; i < x->n; i++)
        s += x->data[i];
    y->data[0] = s;
    ad_record(g, AD_OP_SUM, NULL, NULL, y, x, NULL, NULL);
    return y;
}

/* forward: y = mean(x) = PAD(Σx, n) in PA mode */
void ad_mean_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0];
    float nf = (float)x->n, g, unused;
    NOMUL_COUNT(FADD, x->n);
    if (!nomul_op_is_pa(&nd->cfg))
        NOMUL_COUNT(FDIV, 1);
    else if (nd->cfg.approx_bwd)
        NOMUL_COUNT(PAD, 1);
    else
        NOMUL_COUNT(SHIFT, 1);
    if (!nomul_op_is_pa(&nd->cfg))
        g = nd->out->grad[0] / nf;
    else if (nd->cfg.approx_bwd)
        g = nomul_pa_div(nd->out->grad[0], nf);
    else
        nomul_pa_div_grad(nd->p.mean.sum, nf, nd->out->grad[0], &g, &unused);
    for (long i = 0; i < x->n; i++)
        x->grad[i] += g;
}

nomul_tensor *nomul_mean(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    if (!x)
        return NULL;
    int one = 1;
    nomul_tensor *y = nomul_graph_tensor(g, 1, &one, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    float s = 0.0f;
    for (long i = 0; i < x->n; i++)
        s += x->data[i];
    NOMUL_COUNT(FADD, x->n);
    if (nomul_op_is_pa(cfg))
        NOMUL_COUNT(PAD, 1);
    else
        NOMUL_COUNT(FDIV, 1);
    y->data[0] = nomul_op_is_pa(cfg) ? nomul_pa_div(s, (float)x->n) : s / (float)x->n;
    ad_record(g, AD_OP_MEAN, cfg, &(ad_params){.mean = {s}}, y, x, NULL, NULL);
    return y;
}
