/*
 * ops.c — autodiff operations over the functional forms and the arithmetic:
 * softmax, log_softmax, layer norm, matmul (batched), elementwise mul and
 * scale, sum and mean. Each backward accumulates (+=) into its inputs'
 * gradients and quotes its forward.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "graph_internal.h"
#include "nomul/arith.h"
#include "nomul/conv.h"
#include "nomul/gemm.h"

static int is_pa(const nomul_op_cfg *cfg) { return cfg->subtype != NOMUL_OP_STANDARD; }

/* rows × last dimension of a tensor */
static void rows_cols(const nomul_tensor *x, int *rows, int *cols)
{
    *cols = x->shape[x->ndim - 1];
    *rows = (int)(x->n / *cols);
}

/* ---- softmax, log_softmax ---------------------------------------------------------- */

/* forward: y = softmax(x) over rows */
static void softmax_backward(const node *nd)
{
    int rows, n;
    rows_cols(nd->in[0], &rows, &n);
    nomul_softmax_backward(ad_fmode(&nd->cfg), rows, n, nd->in[0]->data, nd->out->data,
                           nd->out->grad, nd->in[0]->grad);
}

/* forward: y = log_softmax(x) over rows */
static void log_softmax_backward(const node *nd)
{
    int rows, n;
    rows_cols(nd->in[0], &rows, &n);
    nomul_log_softmax_backward(ad_fmode(&nd->cfg), rows, n, nd->in[0]->data, nd->out->data,
                               nd->out->grad, nd->in[0]->grad);
}

/* A row-wise operation whose output has x's shape. */
typedef void (*row_forward_fn)(nomul_fmode m, int rows, int n, const float *x, float *y);

static nomul_tensor *row_op(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                            row_forward_fn fwd, backward_fn bwd)
{
    if (!x)
        return NULL;
    int rows, n;
    rows_cols(x, &rows, &n);
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    fwd(ad_fmode(cfg), rows, n, x->data, y->data);
    node *nd = ad_record(g, bwd, y, x, NULL, NULL);
    if (nd)
        nd->cfg = *cfg;
    return y;
}

nomul_tensor *nomul_softmax(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    return row_op(g, cfg, x, nomul_softmax_forward, softmax_backward);
}

nomul_tensor *nomul_log_softmax(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    return row_op(g, cfg, x, nomul_log_softmax_forward, log_softmax_backward);
}

/* forward: y = logsumexp(x) over rows */
static void logsumexp_backward(const node *nd)
{
    int rows, n;
    rows_cols(nd->in[0], &rows, &n);
    nomul_logsumexp_backward(ad_fmode(&nd->cfg), rows, n, nd->in[0]->data, nd->out->grad,
                             nd->in[0]->grad);
}

nomul_tensor *nomul_logsumexp(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    if (!x)
        return NULL;
    int rows, n, one = 1;
    rows_cols(x, &rows, &n);
    nomul_tensor *y = x->ndim > 1 ? nomul_graph_tensor(g, x->ndim - 1, x->shape,
                                                       ad_wants_grad(g, x, NULL, NULL))
                                  : nomul_graph_tensor(g, 1, &one, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    nomul_logsumexp_forward(ad_fmode(cfg), rows, n, x->data, y->data);
    node *nd = ad_record(g, logsumexp_backward, y, x, NULL, NULL);
    if (nd)
        nd->cfg = *cfg;
    return y;
}

/* ---- layer norm ------------------------------------------------------------------------ */

/* forward: y = layer_norm(x; γ, β); saved = [mean (rows) | rstd (rows)] */
static void layer_norm_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *gm = nd->in[1], *bt = nd->in[2];
    int rows, n;
    rows_cols(x, &rows, &n);
    float *dx = x->grad, *dg = gm->grad, *db = bt->grad, *tmp = NULL;
    if (!dx || !dg || !db) { /* the functional form writes all three */
        size_t len = (size_t)x->n + 2 * (size_t)n;
        tmp = nomul_scratch(NOMUL_SCRATCH_OP, len);
        if (!tmp)
            return;
        memset(tmp, 0, len * sizeof *tmp);
        dx = dx ? dx : tmp;
        dg = dg ? dg : tmp + x->n;
        db = db ? db : tmp + x->n + n;
    }
    nomul_layer_norm_backward(ad_fmode(&nd->cfg), rows, n, x->data, gm->data, nd->saved->data,
                              nd->saved->data + rows, nd->fval, nd->out->grad, dx, dg, db);
}

nomul_tensor *nomul_layer_norm(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                               nomul_tensor *gamma, nomul_tensor *beta, float eps)
{
    if (!x || !gamma || !beta)
        return NULL;
    int rows, n;
    rows_cols(x, &rows, &n);
    if (gamma->n != n || beta->n != n) {
        nomul_report(NOMUL_EINVAL, "nomul_layer_norm: gamma and beta must have %d elements", n);
        return NULL;
    }
    int two = 2 * rows;
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, x->shape, ad_wants_grad(g, x, gamma, beta));
    nomul_tensor *saved = nomul_graph_tensor(g, 1, &two, 0);
    if (!y || !saved)
        return NULL;
    nomul_layer_norm_forward(ad_fmode(cfg), rows, n, x->data, gamma->data, beta->data, eps,
                             y->data, saved->data, saved->data + rows);
    node *nd = ad_record(g, layer_norm_backward, y, x, gamma, beta);
    if (nd) {
        nd->cfg = *cfg;
        nd->saved = saved;
        nd->fval = eps;
    }
    return y;
}

/* ---- batch norm --------------------------------------------------------------------------- */

static void bn_dims(const nomul_tensor *x, int *nb, int *C, int *S)
{
    *nb = x->shape[0];
    *C = x->shape[1];
    *S = (int)(x->n / ((long)*nb * *C));
}

/* forward: y = batch_norm(x; γ, β) with batch statistics; saved = [mean | rstd] (C each) */
static void batch_norm_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *gm = nd->in[1], *bt = nd->in[2];
    int nb, C, S;
    bn_dims(x, &nb, &C, &S);
    size_t len = (size_t)x->n + 2 * (size_t)C;
    float *tmp = nomul_scratch(NOMUL_SCRATCH_OP, len);
    if (!tmp)
        return;
    memset(tmp, 0, len * sizeof *tmp);
    float *dx = x->grad ? x->grad : tmp, *dg = gm->grad ? gm->grad : tmp + x->n;
    float *db = bt->grad ? bt->grad : tmp + x->n + C;
    nomul_batch_norm_backward(ad_fmode(&nd->cfg), nb, C, S, x->data, gm->data, nd->saved->data,
                              nd->saved->data + C, nd->fval, nd->out->grad, dx, dg, db);
}

nomul_tensor *nomul_batch_norm(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                               nomul_tensor *gamma, nomul_tensor *beta, float *running_mean,
                               float *running_var, float eps, float momentum, int training)
{
    if (!x || !gamma || !beta)
        return NULL;
    if (x->ndim < 2 || gamma->n != x->shape[1] || beta->n != x->shape[1] || !running_mean ||
        !running_var) {
        nomul_report(NOMUL_EINVAL, "nomul_batch_norm: x must be (n, C, ...) with gamma, beta and "
                     "running statistics of C elements");
        return NULL;
    }
    int nb, C, S, two;
    bn_dims(x, &nb, &C, &S);
    two = 2 * C;
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, x->shape,
                                         training && ad_wants_grad(g, x, gamma, beta));
    nomul_tensor *saved = nomul_graph_tensor(g, 1, &two, 0);
    if (!y || !saved)
        return NULL;
    nomul_batch_norm_forward(ad_fmode(cfg), nb, C, S, x->data, gamma->data, beta->data, eps,
                             momentum, training, running_mean, running_var, y->data, saved->data,
                             saved->data + C);
    node *nd = training ? ad_record(g, batch_norm_backward, y, x, gamma, beta) : NULL;
    if (nd) {
        nd->cfg = *cfg;
        nd->saved = saved;
        nd->fval = eps;
    }
    return y;
}

/* ---- matmul ------------------------------------------------------------------------------ */

typedef struct {
    int batch, m, n, k;
    long sa, sb, sc;
} mm_geom;

static int mm_geometry(const nomul_tensor *a, const nomul_tensor *b, int trans_b, mm_geom *mg)
{
    if (a->ndim != b->ndim || a->ndim < 2 || a->ndim > 3)
        return 0;
    int d = a->ndim;
    mg->batch = d == 3 ? a->shape[0] : 1;
    if (d == 3 && b->shape[0] != mg->batch)
        return 0;
    mg->m = a->shape[d - 2];
    mg->k = a->shape[d - 1];
    int bk = trans_b ? b->shape[d - 1] : b->shape[d - 2];
    mg->n = trans_b ? b->shape[d - 2] : b->shape[d - 1];
    if (bk != mg->k)
        return 0;
    mg->sa = (long)mg->m * mg->k;
    mg->sb = (long)mg->k * mg->n;
    mg->sc = (long)mg->m * mg->n;
    return 1;
}

/* forward: c = a · op(b), per batch item; ival = trans_b */
static void matmul_backward(const node *nd)
{
    nomul_tensor *a = nd->in[0], *b = nd->in[1], *c = nd->out;
    int tb = nd->ival;
    mm_geom mg;
    mm_geometry(a, b, tb, &mg);
    CBLAS_TRANSPOSE opb = tb ? CblasTrans : CblasNoTrans;
    int ldb = tb ? mg.k : mg.n;
    for (int i = 0; i < mg.batch; i++) {
        const float *ai = a->data + i * mg.sa, *bi = b->data + i * mg.sb;
        const float *dci = c->grad + i * mg.sc;
        float *dai = a->grad ? a->grad + i * mg.sa : NULL;
        float *dbi = b->grad ? b->grad + i * mg.sb : NULL;
        if (is_pa(&nd->cfg)) {
            nomul_pam_sgemm_backward(CblasRowMajor, CblasNoTrans, opb, mg.m, mg.n, mg.k, ai, mg.k,
                                     bi, ldb, dci, mg.n, 1.0f, dai, mg.k, dbi, ldb,
                                     nd->cfg.offset, nd->cfg.approx_bwd);
            continue;
        }
        NOMUL_COUNT(FMUL, (long long)mg.m * mg.n * mg.k * ((dai != NULL) + (dbi != NULL)));
        NOMUL_COUNT(FADD, (long long)mg.m * mg.n * mg.k * ((dai != NULL) + (dbi != NULL)));
        if (dai) /* da += dc · op(b)ᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb ? CblasNoTrans : CblasTrans, mg.m, mg.k,
                        mg.n, 1.0f, dci, mg.n, bi, ldb, 1.0f, dai, mg.k);
        if (dbi) { /* d op(b) += aᵀ · dc, written in b's layout */
            if (tb)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, mg.n, mg.k, mg.m, 1.0f, dci,
                            mg.n, ai, mg.k, 1.0f, dbi, mg.k);
            else
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, mg.k, mg.n, mg.m, 1.0f, ai,
                            mg.k, dci, mg.n, 1.0f, dbi, mg.n);
        }
    }
}

nomul_tensor *nomul_matmul(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                           nomul_tensor *b, int trans_b)
{
    if (!a || !b)
        return NULL;
    mm_geom mg;
    if (!mm_geometry(a, b, trans_b, &mg)) {
        nomul_report(NOMUL_EINVAL, "nomul_matmul: shapes do not multiply (2-D or 3-D with the "
                     "same batch, inner sizes equal)");
        return NULL;
    }
    int shape[3] = {mg.batch, mg.m, mg.n};
    int d = a->ndim;
    nomul_tensor *c = nomul_graph_tensor(g, d, d == 3 ? shape : shape + 1,
                                         ad_wants_grad(g, a, b, NULL));
    if (!c)
        return NULL;
    CBLAS_TRANSPOSE opb = trans_b ? CblasTrans : CblasNoTrans;
    int ldb = trans_b ? mg.k : mg.n;
    if (is_pa(cfg))
        nomul_pam_sgemm_batched(CblasRowMajor, CblasNoTrans, opb, mg.m, mg.n, mg.k, a->data, mg.k,
                                mg.sa, b->data, ldb, mg.sb, 0.0f, c->data, mg.n, mg.sc, mg.batch,
                                cfg->offset);
    else
        nomul_sgemm_batched(CblasRowMajor, CblasNoTrans, opb, mg.m, mg.n, mg.k, a->data, mg.k,
                            mg.sa, b->data, ldb, mg.sb, 0.0f, c->data, mg.n, mg.sc, mg.batch);
    node *nd = ad_record(g, matmul_backward, c, a, b, NULL);
    if (nd) {
        nd->cfg = *cfg;
        nd->ival = trans_b;
    }
    return c;
}

/* ---- elementwise mul, scale -------------------------------------------------------------- */

/* forward: y = c · x (PAM in PA mode); fval = c */
static void scale_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *y = nd->out;
    float c = nd->fval;
    if (!is_pa(&nd->cfg)) {
        NOMUL_COUNT(FMUL, x->n);
        NOMUL_COUNT(FADD, x->n);
        for (long i = 0; i < x->n; i++)
            x->grad[i] += c * y->grad[i];
        return;
    }
    NOMUL_COUNT(FADD, x->n);
    float *d = nomul_scratch(NOMUL_SCRATCH_OP, (size_t)x->n);
    if (!d)
        return;
    float off = nd->cfg.offset;
    if (nd->cfg.approx_bwd && off != 1.0f) /* c·x·offset's derivative in PA */
        nomul_pam_mul_off_vs((size_t)x->n, y->grad, c, off, d);
    else if (nd->cfg.approx_bwd)
        nomul_pam_mul_grad_approx_vs((size_t)x->n, x->data, c, y->grad, d);
    else if (off != 1.0f) /* exact: c replaced by PAM(c, offset) */
        nomul_pam_mul_grad_vs((size_t)x->n, x->data, nomul_pam_mul(c, off), y->grad, d);
    else
        nomul_pam_mul_grad_vs((size_t)x->n, x->data, c, y->grad, d);
    for (long i = 0; i < x->n; i++)
        x->grad[i] += d[i];
}

nomul_tensor *nomul_scale(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x, float c)
{
    if (!x)
        return NULL;
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    if (is_pa(cfg) && cfg->offset != 1.0f)
        nomul_pam_mul_off_vs((size_t)x->n, x->data, c, cfg->offset, y->data);
    else if (is_pa(cfg))
        nomul_pam_mul_vs((size_t)x->n, x->data, c, y->data);
    else
        NOMUL_COUNT(FMUL, x->n);
    if (!is_pa(cfg))
        for (long i = 0; i < x->n; i++)
            y->data[i] = c * x->data[i];
    node *nd = ad_record(g, scale_backward, y, x, NULL, NULL);
    if (nd) {
        nd->cfg = *cfg;
        nd->fval = c;
    }
    return y;
}

/* ---- sum, mean ------------------------------------------------------------------------------- */

/* forward: y = Σx */
static void sum_backward(const node *nd)
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
    ad_record(g, sum_backward, y, x, NULL, NULL);
    return y;
}

/* forward: y = mean(x) = PAD(Σx, n) in PA mode; fval = Σx */
static void mean_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0];
    float nf = (float)x->n, g, unused;
    NOMUL_COUNT(FADD, x->n);
    if (!is_pa(&nd->cfg))
        NOMUL_COUNT(FDIV, 1);
    else if (nd->cfg.approx_bwd)
        NOMUL_COUNT(PAD, 1);
    else
        NOMUL_COUNT(SHIFT, 1);
    if (!is_pa(&nd->cfg))
        g = nd->out->grad[0] / nf;
    else if (nd->cfg.approx_bwd)
        g = nomul_pam_div(nd->out->grad[0], nf);
    else
        nomul_pam_div_grad(nd->fval, nf, nd->out->grad[0], &g, &unused);
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
    if (is_pa(cfg))
        NOMUL_COUNT(PAD, 1);
    else
        NOMUL_COUNT(FDIV, 1);
    y->data[0] = is_pa(cfg) ? nomul_pam_div(s, (float)x->n) : s / (float)x->n;
    node *nd = ad_record(g, mean_backward, y, x, NULL, NULL);
    if (nd) {
        nd->cfg = *cfg;
        nd->fval = s;
    }
    return y;
}

/* ---- dropout ------------------------------------------------------------------------------ */

/* forward: y = keep ? s·x : 0, s = 1/(1 − p); saved = the kept mask (1/0) */
static void dropout_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *y = nd->out;
    const float *keep = nd->saved->data;
    float s = nd->fval;
    if (!is_pa(&nd->cfg))
        NOMUL_COUNT(FMUL, x->n);
    else if (nd->cfg.approx_bwd)
        NOMUL_COUNT(PAM, x->n);
    else
        NOMUL_COUNT(SHIFT, x->n);
    NOMUL_COUNT(FADD, x->n);
    for (long i = 0; i < x->n; i++) {
        if (keep[i] == 0.0f)
            continue;
        float g = y->grad[i], da, unused;
        if (!is_pa(&nd->cfg))
            da = s * g;
        else if (nd->cfg.approx_bwd)
            da = nomul_pam_mul(g, s);
        else
            nomul_pam_mul_grad(x->data[i], s, g, &da, &unused);
        x->grad[i] += da;
    }
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
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    nomul_tensor *keep = nomul_graph_tensor(g, x->ndim, x->shape, 0);
    if (!y || !keep)
        return NULL;
    float s = is_pa(cfg) ? nomul_pam_div(1.0f, 1.0f - p) : 1.0f / (1.0f - p);
    if (is_pa(cfg)) { /* the audit: an upper bound, every element kept */
        NOMUL_COUNT(PAD, 1);
        NOMUL_COUNT(PAM, x->n);
    } else {
        NOMUL_COUNT(FDIV, 1);
        NOMUL_COUNT(FMUL, x->n);
    }
    /* kept when a uniform 32-bit draw is at least p·2^32 */
    unsigned long long threshold = (unsigned long long)ldexp((double)p, 32); /* p·2^32 by exponent shift */
    uint64_t state = *rng;
    for (long i = 0; i < x->n; i++) {
        int kept = (nomul_splitmix64(&state) >> 32) >= threshold;
        keep->data[i] = kept ? 1.0f : 0.0f;
        y->data[i] = !kept ? 0.0f : is_pa(cfg) ? nomul_pam_mul(x->data[i], s) : s * x->data[i];
    }
    *rng = state;
    node *nd = ad_record(g, dropout_backward, y, x, NULL, NULL);
    if (nd) {
        nd->cfg = *cfg;
        nd->saved = keep;
        nd->fval = s;
    }
    return y;
}

/* ---- embedding -------------------------------------------------------------------------- */

/* forward: y[i] = table[ids[i]] */
static void embedding_backward(const node *nd)
{
    nomul_tensor *table = nd->in[0], *y = nd->out;
    int dim = table->shape[1];
    for (int i = 0; i < y->shape[0]; i++) {
        float *dst = table->grad + (long)nd->targets[i] * dim;
        const float *src = y->grad + (long)i * dim;
        for (int j = 0; j < dim; j++)
            dst[j] += src[j];
    }
}

nomul_tensor *nomul_embedding(nomul_graph *g, nomul_tensor *table, const int *ids, int n)
{
    if (!table)
        return NULL;
    if (table->ndim != 2 || !ids || n < 1) {
        nomul_report(NOMUL_EINVAL, "nomul_embedding: the table must be (vocab, dim), with ids");
        return NULL;
    }
    int vocab = table->shape[0], dim = table->shape[1];
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            nomul_report(NOMUL_EINVAL, "nomul_embedding: id %d at position %d is outside the "
                         "vocabulary of %d", ids[i], i, vocab);
            return NULL;
        }
    int shape[2] = {n, dim};
    nomul_tensor *y = nomul_graph_tensor(g, 2, shape, ad_wants_grad(g, table, NULL, NULL));
    if (!y)
        return NULL;
    for (int i = 0; i < n; i++)
        memcpy(y->data + (long)i * dim, table->data + (long)ids[i] * dim, (size_t)dim * 4);
    node *nd = ad_record(g, embedding_backward, y, table, NULL, NULL);
    if (nd)
        nd->targets = ids;
    return y;
}

void nomul_sinusoidal_positions(int positions, int dim, float *out)
{
    int half = dim / 2;
    double step = half > 1 ? log(10000.0) / (half - 1) : 0.0;
    for (int p = 0; p < positions; p++) {
        for (int i = 0; i < half; i++) {
            double a = p * exp(-step * i);
            out[(long)p * dim + i] = (float)sin(a);
            out[(long)p * dim + half + i] = (float)cos(a);
        }
        if (dim % 2)
            out[(long)p * dim + dim - 1] = 0.0f;
    }
}

/* ---- conv2d ------------------------------------------------------------------------------- */

static nomul_conv_mode conv_mode(const nomul_op_cfg *cfg)
{
    return is_pa(cfg) ? NOMUL_CONV_PAM : NOMUL_CONV_FLOAT;
}

/* forward: y = conv2d(x, w) + b; saved: the descriptor (in the arena) */
static void conv2d_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    const nomul_conv2d_desc *d = (const nomul_conv2d_desc *)nd->saved->data;
    nomul_conv_mode mode = conv_mode(&nd->cfg);
    int approx = nd->cfg.approx_bwd;
    float off = nd->cfg.offset;
    if (x->grad) {
        float *dx = nomul_scratch(NOMUL_SCRATCH_OP, (size_t)x->n);
        if (!dx)
            return;
        nomul_conv2d_backward_data(d, mode, approx, off, x->data, w->data, y->grad, dx);
        for (long i = 0; i < x->n; i++)
            x->grad[i] += dx[i];
    }
    if (w->grad || (b && b->grad)) {
        float *dw = nomul_scratch(NOMUL_SCRATCH_OP, (size_t)w->n + (size_t)d->c_out);
        if (!dw)
            return;
        nomul_conv2d_backward_weight(d, mode, approx, off, x->data, w->data, y->grad, dw,
                                     dw + w->n);
        if (w->grad)
            for (long i = 0; i < w->n; i++)
                w->grad[i] += dw[i];
        if (b && b->grad)
            for (int i = 0; i < d->c_out; i++)
                b->grad[i] += dw[w->n + i];
    }
}

nomul_tensor *nomul_conv2d(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                           nomul_tensor *weight, nomul_tensor *bias,
                           const struct nomul_conv2d_desc *d)
{
    if (!x || !weight)
        return NULL;
    int oh, ow;
    if (!d || !nomul_conv2d_output_size(d, &oh, &ow))
        return NULL;
    if (x->ndim != 4 || x->shape[0] != d->n || x->shape[1] != d->c_in || x->shape[2] != d->h ||
        x->shape[3] != d->w || weight->ndim != 4 || weight->shape[0] != d->c_out ||
        weight->shape[1] != d->c_in / d->groups || weight->shape[2] != d->kh ||
        weight->shape[3] != d->kw || (bias && bias->n != d->c_out)) {
        nomul_report(NOMUL_EINVAL, "nomul_conv2d: x, weight and bias do not match the "
                     "descriptor's sizes");
        return NULL;
    }
    int shape[4] = {d->n, d->c_out, oh, ow};
    int words = (int)((sizeof *d + sizeof(float) - 1) / sizeof(float));
    nomul_tensor *y = nomul_graph_tensor(g, 4, shape, ad_wants_grad(g, x, weight, bias));
    nomul_tensor *saved = nomul_graph_tensor(g, 1, &words, 0);
    if (!y || !saved)
        return NULL;
    memcpy(saved->data, d, sizeof *d);
    nomul_conv2d_forward(d, conv_mode(cfg), cfg->offset, x->data, weight->data,
                         bias ? bias->data : NULL, y->data);
    node *nd = ad_record(g, conv2d_backward, y, x, weight, bias);
    if (nd) {
        nd->cfg = *cfg;
        nd->saved = saved;
    }
    return y;
}

/* ---- GELU ---------------------------------------------------------------------------------- */

/* forward: y = gelu(x) */
static void gelu_backward(const node *nd)
{
    nomul_gelu_backward(ad_fmode(&nd->cfg), nd->in[0]->n, nd->in[0]->data, nd->out->grad,
                        nd->in[0]->grad);
}

nomul_tensor *nomul_gelu(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    if (!x)
        return NULL;
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    nomul_gelu_forward(ad_fmode(cfg), x->n, x->data, y->data);
    node *nd = ad_record(g, gelu_backward, y, x, NULL, NULL);
    if (nd)
        nd->cfg = *cfg;
    return y;
}

/* ---- broadcasting binary operations: add, sub, mul, div ------------------------------------ */

enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV };

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

/* Walks the output in order, keeping each operand's offset. */
typedef struct {
    const bcast *bc;
    int idx[NOMUL_MAX_DIMS];
    long ia, ib;
} bcast_it;

static void it_next(bcast_it *it)
{
    const bcast *bc = it->bc;
    for (int d = bc->ndim - 1; d >= 0; d--) {
        it->ia += bc->sa[d];
        it->ib += bc->sb[d];
        if (++it->idx[d] < bc->shape[d])
            return;
        it->ia -= bc->sa[d] * bc->shape[d];
        it->ib -= bc->sb[d] * bc->shape[d];
        it->idx[d] = 0;
    }
}

static float bin_forward(int op, int pa, float off, float x, float y)
{
    switch (op) {
    case BIN_ADD: return x + y;
    case BIN_SUB: return x - y;
    case BIN_MUL: return !pa ? x * y : off != 1.0f ? nomul_pam_mul_off(x, y, off) : nomul_pam_mul(x, y);
    default: return pa ? nomul_pam_div(x, y) : x / y;
    }
}

/* forward: y = a ∘ b (broadcast); ival = the operation */
static void binary_backward(const node *nd)
{
    nomul_tensor *a = nd->in[0], *b = nd->in[1], *y = nd->out;
    bcast bc;
    broadcast(a, b, &bc);
    int op = nd->ival, pa = is_pa(&nd->cfg), approx = nd->cfg.approx_bwd;
    long long n2 = 2LL * y->n; /* the audit: both gradients, and their accumulation */
    NOMUL_COUNT(FADD, n2);
    if (op == BIN_MUL || op == BIN_DIV) {
        if (!pa) {
            NOMUL_COUNT(FMUL, n2);
            if (op == BIN_DIV)
                NOMUL_COUNT(FDIV, n2);
        } else if (approx) {
            nomul_count(op == BIN_MUL ? NOMUL_COUNT_PAM : NOMUL_COUNT_PAD, (unsigned long long)n2);
        } else {
            NOMUL_COUNT(SHIFT, n2);
        }
    }
    bcast_it it = {&bc, {0}, 0, 0};
    for (long i = 0; i < y->n; i++, it_next(&it)) {
        long ia = it.ia, ib = it.ib;
        float g = y->grad[i], x0 = a->data[ia], x1 = b->data[ib], ga, gb;
        switch (op) {
        case BIN_ADD: ga = g; gb = g; break;
        case BIN_SUB: ga = g; gb = -g; break;
        case BIN_MUL:
            if (!pa) {
                ga = x1 * g;
                gb = x0 * g;
            } else if (approx) { /* PAM(PAM(dy, b), offset), PAM(PAM(dy, a), offset) */
                float off = nd->cfg.offset;
                ga = off != 1.0f ? nomul_pam_mul_off(g, x1, off) : nomul_pam_mul(g, x1);
                gb = off != 1.0f ? nomul_pam_mul_off(g, x0, off) : nomul_pam_mul(g, x0);
                if (isnan(x0) || isnan(x1) || isnan(g))
                    ga = gb = NAN;
            } else if (nd->cfg.offset != 1.0f) {
                nomul_pam_mul_off_grad(x0, x1, nd->cfg.offset, g, &ga, &gb);
            } else {
                nomul_pam_mul_grad(x0, x1, g, &ga, &gb);
            }
            break;
        default:
            if (!pa) {
                ga = g / x1;
                gb = -x0 * g / (x1 * x1);
            } else if (approx) {
                nomul_pam_div_grad_approx(x0, x1, g, &ga, &gb);
            } else {
                nomul_pam_div_grad(x0, x1, g, &ga, &gb);
            }
            break;
        }
        if (a->grad)
            a->grad[ia] += ga;
        if (b->grad)
            b->grad[ib] += gb;
    }
}

static nomul_tensor *binary(nomul_graph *g, const nomul_op_cfg *cfg, int op, nomul_tensor *a,
                            nomul_tensor *b, const char *fn)
{
    if (!a || !b)
        return NULL;
    bcast bc;
    if (!broadcast(a, b, &bc)) {
        nomul_report(NOMUL_EINVAL, "%s: the operands' shapes do not broadcast", fn);
        return NULL;
    }
    nomul_tensor *y = nomul_graph_tensor(g, bc.ndim, bc.shape, ad_wants_grad(g, a, b, NULL));
    if (!y)
        return NULL;
    int pa = cfg && is_pa(cfg);
    if (op == BIN_ADD || op == BIN_SUB)
        NOMUL_COUNT(FADD, y->n);
    else if (op == BIN_MUL)
        nomul_count(pa ? NOMUL_COUNT_PAM : NOMUL_COUNT_FMUL, (unsigned long long)y->n);
    else
        nomul_count(pa ? NOMUL_COUNT_PAD : NOMUL_COUNT_FDIV, (unsigned long long)y->n);
    bcast_it it = {&bc, {0}, 0, 0};
    for (long i = 0; i < y->n; i++, it_next(&it))
        y->data[i] = bin_forward(op, pa, cfg ? cfg->offset : 1.0f, a->data[it.ia], b->data[it.ib]);
    node *nd = ad_record(g, binary_backward, y, a, b, NULL);
    if (nd) {
        nomul_op_cfg std = {NOMUL_OP_STANDARD, 0, 1.0f};
        nd->cfg = cfg ? *cfg : std;
        nd->ival = op;
    }
    return y;
}

nomul_tensor *nomul_add(nomul_graph *g, nomul_tensor *a, nomul_tensor *b)
{
    return binary(g, NULL, BIN_ADD, a, b, "nomul_add");
}

nomul_tensor *nomul_sub(nomul_graph *g, nomul_tensor *a, nomul_tensor *b)
{
    return binary(g, NULL, BIN_SUB, a, b, "nomul_sub");
}

nomul_tensor *nomul_mul(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                        nomul_tensor *b)
{
    return binary(g, cfg, BIN_MUL, a, b, "nomul_mul");
}

nomul_tensor *nomul_div(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                        nomul_tensor *b)
{
    return binary(g, cfg, BIN_DIV, a, b, "nomul_div");
}

/* ---- transpose ------------------------------------------------------------------------------ */

/* Strides of a contiguous shape, and those of the shape with d0, d1 swapped
 * mapped back onto x. */
static void transpose_strides(const nomul_tensor *x, int d0, int d1, long *src_stride)
{
    long st[NOMUL_MAX_DIMS], s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        st[d] = s;
        s *= x->shape[d];
    }
    for (int d = 0; d < x->ndim; d++)
        src_stride[d] = st[d];
    src_stride[d0] = st[d1];
    src_stride[d1] = st[d0];
}

/* y[idx] = x[idx with d0, d1 swapped]; y has the swapped shape. add: +=. */
static void transpose_copy(const nomul_tensor *x, const int *yshape, int d0, int d1,
                           const float *src, float *dst, int add)
{
    long ss[NOMUL_MAX_DIMS];
    transpose_strides(x, d0, d1, ss);
    int idx[NOMUL_MAX_DIMS] = {0};
    long off = 0;
    for (long i = 0; i < x->n; i++) {
        if (add)
            dst[off] += src[i];
        else
            dst[i] = src[off];
        for (int d = x->ndim - 1; d >= 0; d--) {
            off += ss[d];
            if (++idx[d] < yshape[d])
                break;
            off -= ss[d] * yshape[d];
            idx[d] = 0;
        }
    }
}

/* forward: y = swap(x, d0, d1); ival = d0, fval = d1 */
static void transpose_backward(const node *nd)
{
    /* dx[swap(idx)] += dy[idx] */
    transpose_copy(nd->in[0], nd->out->shape, nd->ival, (int)nd->fval, nd->out->grad,
                   nd->in[0]->grad, 1);
}

nomul_tensor *nomul_transpose(nomul_graph *g, nomul_tensor *x, int d0, int d1)
{
    if (!x)
        return NULL;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim) {
        nomul_report(NOMUL_EINVAL, "nomul_transpose: dimensions %d, %d of a %d-D tensor", d0, d1,
                     x->ndim);
        return NULL;
    }
    int shape[NOMUL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[d0] = x->shape[d1];
    shape[d1] = x->shape[d0];
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    transpose_copy(x, shape, d0, d1, x->data, y->data, 0);
    node *nd = ad_record(g, transpose_backward, y, x, NULL, NULL);
    if (nd) {
        nd->ival = d0;
        nd->fval = (float)d1;
    }
    return y;
}

/* ---- concat and narrow -------------------------------------------------------------------------- */

/* Sizes around dimension dim: the product of the dimensions before it and
 * after it. */
static void around(const nomul_tensor *x, int dim, long *outer, long *inner)
{
    *outer = *inner = 1;
    for (int d = 0; d < dim; d++)
        *outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++)
        *inner *= x->shape[d];
}

static void concat_backward(const node *nd)
{
    const int dim = nd->ival;
    long outer, inner;
    around(nd->out, dim, &outer, &inner);
    const long ra = nd->in[0]->shape[dim] * inner, rb = nd->in[1]->shape[dim] * inner;
    const float *dy = nd->out->grad;
    for (long o = 0; o < outer; o++) {
        const float *src = dy + o * (ra + rb);
        if (nd->in[0]->grad)
            for (long i = 0; i < ra; i++)
                nd->in[0]->grad[o * ra + i] += src[i];
        if (nd->in[1]->grad)
            for (long i = 0; i < rb; i++)
                nd->in[1]->grad[o * rb + i] += src[ra + i];
    }
}

nomul_tensor *nomul_concat(nomul_graph *g, nomul_tensor *a, nomul_tensor *b, int dim)
{
    if (!a || !b)
        return NULL;
    int ok = a->ndim == b->ndim && dim >= 0 && dim < a->ndim;
    for (int d = 0; ok && d < a->ndim; d++)
        ok = d == dim || a->shape[d] == b->shape[d];
    if (!ok) {
        nomul_report(NOMUL_EINVAL, "nomul_concat: a %d-D and a %d-D tensor along dimension %d "
                     "(every other dimension must agree)", a->ndim, b->ndim, dim);
        return NULL;
    }
    int shape[NOMUL_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[dim] = a->shape[dim] + b->shape[dim];
    nomul_tensor *y = nomul_graph_tensor(g, a->ndim, shape, ad_wants_grad(g, a, b, NULL));
    if (!y)
        return NULL;
    long outer, inner;
    around(a, dim, &outer, &inner);
    const long ra = a->shape[dim] * inner, rb = b->shape[dim] * inner;
    for (long o = 0; o < outer; o++) {
        memcpy(y->data + o * (ra + rb), a->data + o * ra, (size_t)ra * sizeof(float));
        memcpy(y->data + o * (ra + rb) + ra, b->data + o * rb, (size_t)rb * sizeof(float));
    }
    node *nd = ad_record(g, concat_backward, y, a, b, NULL);
    if (nd)
        nd->ival = dim;
    return y;
}

static void narrow_backward(const node *nd)
{
    const int dim = nd->ival, start = (int)nd->fval;
    const nomul_tensor *x = nd->in[0];
    long outer, inner;
    around(x, dim, &outer, &inner);
    const long rx = x->shape[dim] * inner, ry = nd->out->shape[dim] * inner;
    for (long o = 0; o < outer; o++)
        for (long i = 0; i < ry; i++)
            x->grad[o * rx + start * inner + i] += nd->out->grad[o * ry + i];
}

nomul_tensor *nomul_narrow(nomul_graph *g, nomul_tensor *x, int dim, int start, int len)
{
    if (!x)
        return NULL;
    if (dim < 0 || dim >= x->ndim || start < 0 || len < 1 || start > x->shape[dim] - len ||
        start >= (1 << 24)) {
        nomul_report(NOMUL_EINVAL, "nomul_narrow: entries %d..%d of dimension %d of a %d-D "
                     "tensor", start, start + len - 1, dim, x->ndim);
        return NULL;
    }
    int shape[NOMUL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    long outer, inner;
    around(x, dim, &outer, &inner);
    const long rx = x->shape[dim] * inner, ry = (long)len * inner;
    for (long o = 0; o < outer; o++)
        memcpy(y->data + o * ry, x->data + o * rx + start * inner, (size_t)ry * sizeof(float));
    node *nd = ad_record(g, narrow_backward, y, x, NULL, NULL);
    if (nd) {
        nd->ival = dim;
        nd->fval = (float)start;
    }
    return y;
}

/* ---- attention ---------------------------------------------------------------------------------- */

/* (batch, t, heads·dh) → (batch·heads, t, dh) */
static nomul_tensor *split_heads(nomul_graph *g, nomul_tensor *x, int heads)
{
    if (!x)
        return NULL;
    int b = x->shape[0], t = x->shape[1], dh = x->shape[2] / heads;
    int s4[4] = {b, t, heads, dh}, s3[3] = {b * heads, t, dh};
    nomul_tensor *y = nomul_transpose(g, nomul_reshape(g, x, 4, s4), 1, 2);
    return nomul_reshape(g, y, 3, s3);
}

nomul_tensor *nomul_attention(nomul_graph *g, const nomul_op_cfg *bmm, const nomul_op_cfg *fun,
                              nomul_tensor *q, nomul_tensor *k, nomul_tensor *v, int heads,
                              nomul_tensor *mask)
{
    if (!q || !k || !v)
        return NULL;
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || heads < 1 || q->shape[2] % heads ||
        k->shape[2] != q->shape[2] || v->shape[2] != q->shape[2] || k->shape[0] != q->shape[0] ||
        v->shape[0] != q->shape[0] || v->shape[1] != k->shape[1]) {
        nomul_report(NOMUL_EINVAL, "nomul_attention: q (batch, tq, d), k and v (batch, tk, d) "
                     "with d a multiple of heads = %d", heads);
        return NULL;
    }
    int b = q->shape[0], tq = q->shape[1], tk = k->shape[1], dh = q->shape[2] / heads;
    nomul_tensor *qh = split_heads(g, q, heads), *kh = split_heads(g, k, heads);
    nomul_tensor *vh = split_heads(g, v, heads);
    /* scores (batch·heads, tq, tk) = q kᵀ / √dh */
    float scale = fun->subtype != NOMUL_OP_STANDARD ? nomul_pam_div(1.0f, nomul_pa_sqrt((float)dh))
                                                     : 1.0f / sqrtf((float)dh);
    nomul_tensor *s = nomul_scale(g, fun, nomul_matmul(g, bmm, qh, kh, 1), scale);
    if (mask) {
        int s4[4] = {b, heads, tq, tk};
        s = nomul_add(g, nomul_reshape(g, s, 4, s4), mask);
        int s3[3] = {b * heads, tq, tk};
        s = nomul_reshape(g, s, 3, s3);
    }
    nomul_tensor *o = nomul_matmul(g, bmm, nomul_softmax(g, fun, s), vh, 0);
    /* (batch·heads, tq, dh) → (batch, tq, heads·dh) */
    int s4[4] = {b, heads, tq, dh}, s3[3] = {b, tq, heads * dh};
    return nomul_reshape(g, nomul_transpose(g, nomul_reshape(g, o, 4, s4), 1, 2), 3, s3);
}

void nomul_causal_mask(int t, float *out)
{
    for (int i = 0; i < t; i++)
        for (int j = 0; j < t; j++)
            out[(long)i * t + j] = j <= i ? 0.0f : -INFINITY;
}
