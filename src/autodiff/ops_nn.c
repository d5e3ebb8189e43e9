/*
 * ops_nn.c — the autodiff operations on the matrix engine (gemm.h, conv.h):
 * linear, matmul (batched), conv2d; and multi-head attention, a composite of
 * recorded operations (nothing of its own on the tape). Each backward
 * accumulates (+=) into its inputs' gradients and quotes its forward.
 */
#include <math.h>
#include <string.h>

#include "../core/internal.h"
#include "graph_internal.h"
#include "nomul/arith.h"
#include "nomul/conv.h"
#include "nomul/gemm.h"

/* ---- the GEMM's backward, shared by linear and matmul ------------------------------------ */

/* forward: c (m, n) = a (m, k) · op(b), op(b) = bᵀ with b (n, k) when
 * trans_b, else b (k, n); da (m, k) and db (b's layout) may be NULL */
static void gemm_backward(const nomul_op_cfg *cfg, int trans_b, int m, int n, int k,
                          const float *a, const float *b, const float *dc, float *da, float *db)
{
    /* float: da += dc · op(b)ᵀ, d op(b) += aᵀ · dc; PA: PAM-GEMM's exact or
     * approximate backward (nomul/gemm.h) */
    int ldb = trans_b ? k : n;
    nomul_gemm_backward(cfg, CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m,
                        n, k, a, k, b, ldb, dc, n, 1.0f, da, k, db, ldb);
}

/* ---- linear ------------------------------------------------------------------------------ */

/* y (rows × cols) += bias on every row (bias NULL: nothing), then relu when
 * asked: rows over the threads */
static void add_bias_rows(float *y, const float *bias, int rows, int cols, int relu)
{
    if (bias)
        NOMUL_COUNT(FADD, (long)rows * cols);
#pragma omp parallel for num_threads(nomul_light_threads((long)rows * cols)) schedule(static)
    for (int i = 0; i < rows; i++) {
        float *yi = y + (long)i * cols;
        if (bias && relu)
            for (int j = 0; j < cols; j++)
                yi[j] = nomul_relu1(yi[j] + bias[j]);
        else if (bias)
            for (int j = 0; j < cols; j++)
                yi[j] += bias[j];
        else
            for (int j = 0; j < cols; j++)
                yi[j] = nomul_relu1(yi[j]);
    }
}

/* db += Σ_rows dy, each column's sum in row order (the same bits on any
 * number of threads, however the columns are split): one block of columns
 * per thread, a multiple of 16 wide, so that each thread streams long runs
 * of every row (blocks of 64 columns made 256-byte pieces 2 KiB apart, which
 * ran slower than one thread's pass). y not NULL: dy is first replaced, in
 * place, by relu's derivative (nomul_relu_grad1 from y, the relu's output); db
 * NULL: that alone. */
static void add_column_sums(float *db, float *dy, const float *y, int rows, int cols)
{
    if (db)
        NOMUL_COUNT(FADD, (long)rows * cols);
    const int nt = nomul_light_threads((long)rows * cols);
    const int per = ((cols + nt - 1) / nt + 15) / 16 * 16, nblocks = (cols + per - 1) / per;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int q = 0; q < nblocks; q++) {
        int j0 = q * per, j1 = j0 + per < cols ? j0 + per : cols;
        for (int i = 0; i < rows; i++) {
            float *di = dy + (long)i * cols;
            if (y) {
                const float *yi = y + (long)i * cols;
                for (int j = j0; j < j1; j++)
                    di[j] = nomul_relu_grad1(yi[j], di[j]);
            }
            if (db)
                for (int j = j0; j < j1; j++)
                    db[j] += di[j];
        }
    }
}

/* forward: y = x·wᵀ + b */
/* linear and linear_relu (y = relu(x·wᵀ + b): the output's gradient, this
 * node's alone, becomes the pre-activation's in place, in db's pass) */
void ad_linear_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    int batch = x->shape[0], in = x->shape[1], out = w->shape[0];
    float *db = b && b->grad ? b->grad : NULL;
    const float *relu_y = nd->op == AD_OP_LINEAR_RELU ? y->data : NULL;
    if (db || relu_y)
        add_column_sums(db, y->grad, relu_y, batch, out);
    /* dx += dy · w, dw += dyᵀ · x */
    gemm_backward(&nd->cfg, 1, batch, out, in, x->data, w->data, y->grad, x->grad, w->grad);
}

static nomul_tensor *linear_op(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                               nomul_tensor *w, nomul_tensor *b, int relu)
{
    const char *fn = relu ? "nomul_linear_relu" : "nomul_linear";
    if (!x || !w) /* an earlier operation failed and said why */
        return NULL;
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1] ||
        (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) {
        nomul_report(NOMUL_EINVAL, "%s: x must be (batch, in), w (out, in) and b (out) with "
                     "matching sizes", fn);
        return NULL;
    }
    int batch = x->shape[0], in = x->shape[1], out = w->shape[0];
    int shape[2] = {batch, out};
    nomul_tensor *y = ad_output(g, 2, shape, ad_wants_grad(g, x, w, b));
    if (!y)
        return NULL;
    nomul_gemm(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, x->data, in, w->data,
               in, 0.0f, y->data, out);
    if (b || relu)
        add_bias_rows(y->data, b ? b->data : NULL, batch, out, relu);
    ad_record(g, relu ? AD_OP_LINEAR_RELU : AD_OP_LINEAR, cfg, NULL, y, x, w, b);
    return y;
}

nomul_tensor *nomul_linear(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                           nomul_tensor *w, nomul_tensor *b)
{
    return linear_op(g, cfg, x, w, b, 0);
}

nomul_tensor *nomul_linear_relu(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                                nomul_tensor *w, nomul_tensor *b)
{
    return linear_op(g, cfg, x, w, b, 1);
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

/* forward: c = a · op(b), per batch item */
void ad_matmul_backward(const node *nd)
{
    nomul_tensor *a = nd->in[0], *b = nd->in[1], *c = nd->out;
    int tb = nd->p.matmul.trans_b;
    mm_geom mg;
    mm_geometry(a, b, tb, &mg);
    /* one batched call: the small per-head products of attention run one per
     * thread instead of each split over the threads */
    int ldb = tb ? mg.k : mg.n;
    nomul_gemm_backward_batched(&nd->cfg, CblasRowMajor, CblasNoTrans,
                                tb ? CblasTrans : CblasNoTrans, mg.m, mg.n, mg.k, a->data, mg.k,
                                mg.sa, b->data, ldb, mg.sb, c->grad, mg.n, mg.sc, 1.0f, a->grad,
                                mg.k, mg.sa, b->grad, ldb, mg.sb, mg.batch);
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
    nomul_tensor *c = ad_output(g, d, d == 3 ? shape : shape + 1,
                                         ad_wants_grad(g, a, b, NULL));
    if (!c)
        return NULL;
    CBLAS_TRANSPOSE opb = trans_b ? CblasTrans : CblasNoTrans;
    int ldb = trans_b ? mg.k : mg.n;
    nomul_gemm_batched(cfg, CblasRowMajor, CblasNoTrans, opb, mg.m, mg.n, mg.k, a->data, mg.k,
                       mg.sa, b->data, ldb, mg.sb, 0.0f, c->data, mg.n, mg.sc, mg.batch);
    ad_record(g, AD_OP_MATMUL, cfg, &(ad_params){.matmul = {trans_b}}, c, a, b, NULL);
    return c;
}

/* ---- conv2d ------------------------------------------------------------------------------- */

/* forward: y = conv2d(x, w) + b as described by the saved descriptor */
void ad_conv2d_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    const nomul_conv2d_desc *d = &nd->p.conv2d.d;
    int wg = w->grad || (b && b->grad);
    /* x's gradient, when this is its first writer, written in place: every
     * path of nomul_conv2d_backward writes each dx element as a sum from
     * +0, never −0, so the bits are those of += into zeros (test_autodiff's
     * test_first_writer_stores) */
    int in_place = x->grad && nd->store[0];
    size_t nx = x->grad && !in_place ? (size_t)x->n : 0;
    size_t nw = wg ? (size_t)w->n + (size_t)d->c_out : 0;
    float *dx = nx + nw ? nomul_scratch(NOMUL_SCRATCH_OP, nx + nw) : NULL;
    float *dw = dx ? dx + nx : NULL;
    if (nx + nw && !dx)
        return;
    /* one call: x's, dy's and the weights' values classified once for both,
     * x's by the forward already (x unchanged since); the bias's gradient
     * only where there is one to take it (a pass over dy: it had run for
     * every layer, 1.0-1.5% of the ResNet20 step, whose convolutions have
     * none) */
    nomul_conv2d_backward_keep(d, &nd->cfg, nd->p.conv2d.live, x->data, w->data, y->grad,
                               in_place ? x->grad : x->grad ? dx : NULL, wg ? dw : NULL,
                               b && b->grad ? dw + w->n : NULL, &nd->p.conv2d.xs);
    if (x->grad && !in_place) {
        float *gx = x->grad;
        const long n = x->n;
#pragma omp parallel for num_threads(nomul_light_threads(n)) schedule(static)
        for (long i = 0; i < n; i++)
            gx[i] += dx[i];
    }
    if (w->grad)
        for (long i = 0; i < w->n; i++)
            w->grad[i] += dw[i];
    if (b && b->grad)
        for (int i = 0; i < d->c_out; i++)
            b->grad[i] += dw[w->n + i];
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
    /* not zero-filled: every path writes every output (or reports) */
    nomul_tensor *y = ad_output(g, 4, shape, ad_wants_grad(g, x, weight, bias));
    if (!y)
        return NULL;
    nomul_conv_xstats xs;
    nomul_conv2d_forward_keep(d, cfg, x->data, weight->data, bias ? bias->data : NULL, y->data,
                              &xs);
    /* x a ReLU's output: its gradient only at x's nonzeros, the data
     * gradient's work there only (nomul_conv2d_backward_live) */
    ad_record(g, AD_OP_CONV2D, cfg,
              &(ad_params){.conv2d = {*d, ad_zeros_dropped(g, x), xs}}, y, x, weight, bias);
    return y;
}

/* ---- attention (a composite: split heads, matmul, scale, softmax, matmul) ------------------ */

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
    float scale = nomul_op_is_pa(fun) ? nomul_pa_div(1.0f, nomul_pa_sqrt((float)dh))
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
