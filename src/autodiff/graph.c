/*
 * graph.c — tensors, the arena and the tape (nomul/autodiff.h), and the
 * first operations: each is a forward that records a node and a backward
 * that accumulates (+=) into its inputs' gradients, quoting the forward.
 */
#include "nomul/autodiff.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/functional.h"
#include "nomul/gemm.h"
#include "graph_internal.h"

nomul_graph *nomul_graph_new(size_t arena_bytes)
{
    nomul_graph *g = calloc(1, sizeof *g);
    if (g)
        g->arena = nomul_aligned_alloc(arena_bytes);
    if (!g || !g->arena) {
        free(g);
        nomul_report(NOMUL_ENOMEM, "nomul_graph_new: cannot allocate a %zu-byte arena",
                     arena_bytes);
        return NULL;
    }
    g->size = arena_bytes;
    g->grad_enabled = 1;
    return g;
}

void nomul_graph_free(nomul_graph *g)
{
    if (!g)
        return;
    nomul_aligned_free(g->arena);
    free(g->tape);
    free(g);
}

void nomul_graph_reset(nomul_graph *g)
{
    g->used = 0;
    g->ntape = 0;
}

void nomul_graph_set_grad(nomul_graph *g, int enabled) { g->grad_enabled = enabled != 0; }

static void *arena_get(nomul_graph *g, size_t bytes)
{
    size_t at = (g->used + 63) & ~(size_t)63;
    if (at + bytes > g->size) {
        nomul_report(NOMUL_ENOMEM, "autodiff: the graph's %zu-byte arena is full (a step needs "
                     "more; make the graph larger)", g->size);
        return NULL;
    }
    g->used = at + bytes;
    return g->arena + at;
}

static int shape_ok(const char *fn, int ndim, const int *shape, long *n)
{
    if (ndim < 1 || ndim > NOMUL_MAX_DIMS) {
        nomul_report(NOMUL_EINVAL, "%s: %d dimensions (1 to %d)", fn, ndim, NOMUL_MAX_DIMS);
        return 0;
    }
    long total = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1) {
            nomul_report(NOMUL_EINVAL, "%s: dimension %d is %d", fn, i, shape[i]);
            return 0;
        }
        total *= shape[i];
    }
    *n = total;
    return 1;
}

static void set_shape(nomul_tensor *t, int ndim, const int *shape, long n)
{
    t->ndim = ndim;
    memset(t->shape, 0, sizeof t->shape);
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->n = n;
}

nomul_tensor *nomul_tensor_alloc(int ndim, const int *shape, int grad)
{
    long n;
    if (!shape_ok("nomul_tensor_alloc", ndim, shape, &n))
        return NULL;
    nomul_tensor *t = calloc(1, sizeof *t);
    if (t) {
        t->data = calloc((size_t)n, sizeof(float));
        t->grad = grad ? calloc((size_t)n, sizeof(float)) : NULL;
    }
    if (!t || !t->data || (grad && !t->grad)) {
        nomul_tensor_free(t);
        nomul_report(NOMUL_ENOMEM, "nomul_tensor_alloc: out of memory for %ld floats", n);
        return NULL;
    }
    set_shape(t, ndim, shape, n);
    return t;
}

void nomul_tensor_free(nomul_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    free(t->grad);
    free(t);
}

nomul_tensor *nomul_graph_tensor(nomul_graph *g, int ndim, const int *shape, int grad)
{
    long n;
    if (!shape_ok("nomul_graph_tensor", ndim, shape, &n))
        return NULL;
    nomul_tensor *t = arena_get(g, sizeof *t);
    float *data = arena_get(g, (size_t)n * sizeof(float));
    float *gr = grad && g->grad_enabled ? arena_get(g, (size_t)n * sizeof(float)) : NULL;
    if (!t || !data || (grad && g->grad_enabled && !gr))
        return NULL;
    memset(data, 0, (size_t)n * sizeof(float));
    if (gr)
        memset(gr, 0, (size_t)n * sizeof(float));
    t->data = data;
    t->grad = gr;
    set_shape(t, ndim, shape, n);
    return t;
}

nomul_tensor *nomul_reshape(nomul_graph *g, nomul_tensor *x, int ndim, const int *shape)
{
    long n;
    if (!x)
        return NULL;
    if (!shape_ok("nomul_reshape", ndim, shape, &n))
        return NULL;
    if (n != x->n) {
        nomul_report(NOMUL_EINVAL, "nomul_reshape: %ld elements cannot take a shape of %ld",
                     x->n, n);
        return NULL;
    }
    nomul_tensor *t = arena_get(g, sizeof *t);
    if (!t)
        return NULL;
    *t = *x;
    set_shape(t, ndim, shape, n);
    return t;
}

void nomul_tensor_zero_grad(nomul_tensor *t)
{
    if (t && t->grad)
        memset(t->grad, 0, (size_t)t->n * sizeof(float));
}

/* Records a node when gradients are on and some input has one. */
node *ad_record(nomul_graph *g, backward_fn fn, nomul_tensor *out, nomul_tensor *a,
                nomul_tensor *b, nomul_tensor *c)
{
    if (!g->grad_enabled || !((a && a->grad) || (b && b->grad) || (c && c->grad)))
        return NULL;
    if (g->ntape == g->captape) { /* grows during the first steps, then stays */
        int cap = g->captape ? 2 * g->captape : 64;
        node *nt = realloc(g->tape, (size_t)cap * sizeof *nt);
        if (!nt) {
            nomul_report(NOMUL_ENOMEM, "autodiff: out of memory for the tape");
            return NULL;
        }
        g->tape = nt;
        g->captape = cap;
    }
    node *nd = &g->tape[g->ntape++];
    memset(nd, 0, sizeof *nd);
    nd->backward = fn;
    nd->out = out;
    nd->in[0] = a;
    nd->in[1] = b;
    nd->in[2] = c;
    return nd;
}

int ad_wants_grad(nomul_graph *g, nomul_tensor *a, nomul_tensor *b, nomul_tensor *c)
{
    return g->grad_enabled && ((a && a->grad) || (b && b->grad) || (c && c->grad));
}

/* ---- linear --------------------------------------------------------------------- */

/* forward: y = x·wᵀ + b */
static void linear_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2], *y = nd->out;
    int batch = x->shape[0], in = x->shape[1], out = w->shape[0];
    if (b && b->grad) /* db += Σ_rows dy */
        NOMUL_COUNT(FADD, (long)batch * out);
    if (b && b->grad)
        for (int i = 0; i < batch; i++)
            for (int j = 0; j < out; j++)
                b->grad[j] += y->grad[(long)i * out + j];
    if (nd->cfg.subtype == NOMUL_OP_STANDARD) {
        long long mnk = (long long)batch * in * out;
        NOMUL_COUNT(FMUL, mnk * ((x->grad != NULL) + (w->grad != NULL)));
        NOMUL_COUNT(FADD, mnk * ((x->grad != NULL) + (w->grad != NULL)));
        if (x->grad) /* dx += dy · w */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f, y->grad,
                        out, w->data, in, 1.0f, x->grad, in);
        if (w->grad) /* dw += dyᵀ · x */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0f, y->grad,
                        out, x->data, in, 1.0f, w->grad, in);
        return;
    }
    /* PAM: y = PAM-GEMM(x, wᵀ); its exact or approximate backward */
    nomul_gemm_backward(&nd->cfg, CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, x->data,
                        in, w->data, in, y->grad, out, 1.0f, x->grad, in, w->grad, in);
}

nomul_tensor *nomul_linear(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                           nomul_tensor *w, nomul_tensor *b)
{
    if (!x || !w) /* an earlier operation failed and said why */
        return NULL;
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1] ||
        (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) {
        nomul_report(NOMUL_EINVAL, "nomul_linear: x must be (batch, in), w (out, in) and b "
                     "(out) with matching sizes");
        return NULL;
    }
    int batch = x->shape[0], in = x->shape[1], out = w->shape[0];
    int shape[2] = {batch, out};
    nomul_tensor *y = nomul_graph_tensor(g, 2, shape, ad_wants_grad(g, x, w, b));
    if (!y)
        return NULL;
    if (cfg->subtype == NOMUL_OP_STANDARD) {
        NOMUL_COUNT(FMUL, (long long)batch * out * in);
        NOMUL_COUNT(FADD, (long long)batch * out * in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x->data, in,
                    w->data, in, 0.0f, y->data, out);
    }
    else
        nomul_gemm(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, x->data, in,
                   w->data, in, 0.0f, y->data, out);
    if (b)
        NOMUL_COUNT(FADD, (long)batch * out);
    if (b)
        for (int i = 0; i < batch; i++)
            for (int j = 0; j < out; j++)
                y->data[(long)i * out + j] += b->data[j];
    node *nd = ad_record(g, linear_backward, y, x, w, b);
    if (nd)
        nd->cfg = *cfg;
    return y;
}

/* ---- relu, add -------------------------------------------------------------------- */

/* forward: y = max(x, 0) */
static void relu_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *y = nd->out;
    for (long i = 0; i < x->n; i++)
        if (x->data[i] > 0.0f)
            x->grad[i] += y->grad[i];
}

nomul_tensor *nomul_relu(nomul_graph *g, nomul_tensor *x)
{
    if (!x)
        return NULL;
    nomul_tensor *y = nomul_graph_tensor(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    for (long i = 0; i < x->n; i++)
        y->data[i] = x->data[i] > 0.0f ? x->data[i] : 0.0f;
    ad_record(g, relu_backward, y, x, NULL, NULL);
    return y;
}

/* ---- cross-entropy ------------------------------------------------------------------- */

/* forward: logp = log_softmax(logits); loss = CE(logp, targets) */
static void cross_entropy_backward(const node *nd)
{
    nomul_tensor *logits = nd->in[0], *logp = nd->saved;
    int rows = logits->shape[0], n = logits->shape[1];
    const nomul_op_cfg *m = &nd->cfg;
    memset(logp->grad, 0, (size_t)logp->n * sizeof(float));
    nomul_cross_entropy_backward(m, rows, n, logp->data, nd->targets, nd->ival, nd->fval,
                                 nd->out->grad[0], logp->grad);
    nomul_log_softmax_backward(m, rows, n, logits->data, logp->data, logp->grad, logits->grad);
}

nomul_tensor *nomul_cross_entropy(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *logits,
                                  const int *targets, int ignore_index, float smoothing)
{
    if (!logits)
        return NULL;
    if (logits->ndim != 2 || !targets) {
        nomul_report(NOMUL_EINVAL, "nomul_cross_entropy: logits must be (batch, classes) with "
                     "one target per row");
        return NULL;
    }
    int rows = logits->shape[0], n = logits->shape[1], one = 1, count;
    int grad = ad_wants_grad(g, logits, NULL, NULL);
    nomul_tensor *logp = nomul_graph_tensor(g, 2, logits->shape, grad);
    nomul_tensor *loss = nomul_graph_tensor(g, 1, &one, grad);
    if (!logp || !loss)
        return NULL;
    const nomul_op_cfg *m = cfg;
    nomul_log_softmax_forward(m, rows, n, logits->data, logp->data);
    loss->data[0] = nomul_cross_entropy_forward(m, rows, n, logp->data, targets, ignore_index,
                                                smoothing, &count);
    if (count < 0) {
        nomul_report(NOMUL_EINVAL, "nomul_cross_entropy: a target is outside 0..%d and is not "
                     "the ignore index %d", n - 1, ignore_index);
        return NULL;
    }
    node *nd = ad_record(g, cross_entropy_backward, loss, logits, NULL, NULL);
    if (nd) {
        nd->cfg = *cfg;
        nd->targets = targets;
        nd->ival = ignore_index;
        nd->fval = smoothing;
        nd->saved = logp;
    }
    return loss;
}

/* ---- backward -------------------------------------------------------------------------- */

void nomul_backward(nomul_graph *g, nomul_tensor *loss)
{
    if (!loss || loss->n != 1 || !loss->grad) {
        nomul_report(NOMUL_EINVAL, "nomul_backward: the loss must be a 1-element tensor with a "
                     "gradient (made while gradients were on)");
        return;
    }
    loss->grad[0] += 1.0f;
    for (int i = g->ntape - 1; i >= 0; i--)
        g->tape[i].backward(&g->tape[i]);
}
