/*
 * ops_rows.c — the autodiff operations over functional.h's row-wise forms,
 * float or PA by the configuration: softmax, log_softmax, logsumexp, layer
 * norm, batch norm, label-smoothed cross-entropy. Each backward accumulates
 * (+=) into its inputs' gradients and quotes its forward.
 */
#include <string.h>

#include "../core/internal.h"
#include "graph_internal.h"

/* rows × last dimension of a tensor */
static void rows_cols(const nomul_tensor *x, int *rows, int *cols)
{
    *cols = x->shape[x->ndim - 1];
    *rows = (int)(x->n / *cols);
}

/* ---- softmax, log_softmax, logsumexp ---------------------------------------------------- */

/* forward: y = softmax(x) over rows */
void ad_softmax_backward(const node *nd)
{
    int rows, n;
    rows_cols(nd->in[0], &rows, &n);
    nomul_softmax_backward_keep(&nd->cfg, rows, n, nd->in[0]->data, nd->out->data,
                                nd->p.softmax.keep, nd->out->grad, nd->in[0]->grad);
}

/* forward: y = log_softmax(x) over rows */
void ad_log_softmax_backward(const node *nd)
{
    int rows, n;
    rows_cols(nd->in[0], &rows, &n);
    nomul_log_softmax_backward(&nd->cfg, rows, n, nd->in[0]->data, nd->out->data,
                               nd->out->grad, nd->in[0]->grad);
}

/* A row-wise operation whose output has x's shape. */
typedef void (*row_forward_fn)(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y);

static nomul_tensor *row_op(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                            row_forward_fn fwd, ad_op op)
{
    if (!x)
        return NULL;
    int rows, n;
    rows_cols(x, &rows, &n);
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, ad_wants_grad(g, x, NULL, NULL));
    if (!y)
        return NULL;
    fwd(cfg, rows, n, x->data, y->data);
    ad_record(g, op, cfg, NULL, y, x, NULL, NULL);
    return y;
}

/* softmax keeps what its exact PA backward would recompute (in the arena) */
nomul_tensor *nomul_softmax(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    if (!x)
        return NULL;
    int rows, n;
    rows_cols(x, &rows, &n);
    const int grad = ad_wants_grad(g, x, NULL, NULL);
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, grad);
    const long nk = grad ? nomul_softmax_keep_floats(cfg, rows, n) : 0;
    float *keep = nk ? ad_arena_alloc(g, (size_t)nk * sizeof(float)) : NULL;
    if (!y || (nk && !keep))
        return NULL;
    nomul_softmax_forward_keep(cfg, rows, n, x->data, y->data, keep);
    ad_record(g, AD_OP_SOFTMAX, cfg, &(ad_params){.softmax = {keep}}, y, x, NULL, NULL);
    return y;
}

nomul_tensor *nomul_log_softmax(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    return row_op(g, cfg, x, nomul_log_softmax_forward, AD_OP_LOG_SOFTMAX);
}

/* forward: y = logsumexp(x) over rows */
void ad_logsumexp_backward(const node *nd)
{
    int rows, n;
    rows_cols(nd->in[0], &rows, &n);
    nomul_logsumexp_backward(&nd->cfg, rows, n, nd->in[0]->data, nd->out->grad,
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
    nomul_logsumexp_forward(cfg, rows, n, x->data, y->data);
    ad_record(g, AD_OP_LOGSUMEXP, cfg, NULL, y, x, NULL, NULL);
    return y;
}

/* ---- layer norm ------------------------------------------------------------------------ */

/* forward: y = layer_norm(x; γ, β), saving mean and rstd (rows each) */
/* A norm's three gradients (the functional forms write all of them): each
 * tensor's own, or zeroed scratch where one has none (γ and β np long); 0
 * when out of memory. */
static int norm_grads(const nomul_tensor *x, const nomul_tensor *gm, const nomul_tensor *bt,
                      long np, float **dx, float **dg, float **db)
{
    *dx = x->grad;
    *dg = gm->grad;
    *db = bt->grad;
    if (*dx && *dg && *db)
        return 1;
    size_t len = (size_t)x->n + 2 * (size_t)np;
    float *tmp = nomul_scratch(NOMUL_SCRATCH_OP, len);
    if (!tmp)
        return 0;
    memset(tmp, 0, len * sizeof *tmp);
    *dx = *dx ? *dx : tmp;
    *dg = *dg ? *dg : tmp + x->n;
    *db = *db ? *db : tmp + x->n + np;
    return 1;
}

void ad_layer_norm_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *gm = nd->in[1], *bt = nd->in[2];
    int rows, n;
    rows_cols(x, &rows, &n);
    float *dx, *dg, *db;
    if (!norm_grads(x, gm, bt, n, &dx, &dg, &db))
        return;
    nomul_layer_norm_backward_keep(&nd->cfg, rows, n, x->data, gm->data, nd->p.norm.mean,
                                   nd->p.norm.rstd, nd->p.norm.keep, nd->p.norm.eps,
                                   nd->out->grad, dx, dg, db);
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
    const int grad = ad_wants_grad(g, x, gamma, beta);
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, grad);
    /* mean | rstd | what the backward would otherwise recompute (PA) */
    const long nk = grad ? nomul_layer_norm_keep_floats(cfg, rows) : 0;
    float *stats = ad_arena_zalloc(g, (2 * (size_t)rows + (size_t)nk) * sizeof(float));
    if (!y || !stats)
        return NULL;
    float *keep = nk ? stats + 2 * (size_t)rows : NULL;
    nomul_layer_norm_forward_keep(cfg, rows, n, x->data, gamma->data, beta->data, eps,
                                  y->data, stats, stats + rows, keep);
    ad_record(g, AD_OP_LAYER_NORM, cfg, &(ad_params){.norm = {stats, stats + rows, keep, eps}},
              y, x, gamma, beta);
    return y;
}

/* ---- batch norm --------------------------------------------------------------------------- */

static void bn_dims(const nomul_tensor *x, int *nb, int *C, int *S)
{
    *nb = x->shape[0];
    *C = x->shape[1];
    *S = (int)(x->n / ((long)*nb * *C));
}

/* forward: y = batch_norm(x; γ, β) with batch statistics, saving mean and
 * rstd (C each); with relu (AD_OP_BATCH_NORM_RELU), y = relu of that, whose
 * derivative the backward applies to the gradient as it reads it */
static void bn_backward(const node *nd, int relu)
{
    nomul_tensor *x = nd->in[0], *gm = nd->in[1], *bt = nd->in[2];
    int nb, C, S;
    bn_dims(x, &nb, &C, &S);
    float *dx, *dg, *db;
    if (!norm_grads(x, gm, bt, C, &dx, &dg, &db))
        return;
    /* x's gradient, when this is its first writer, written whole (not
     * zero-filled before, not read) */
    const int acc = !(x->grad && nd->store[0]);
    if (relu)
        nomul_batch_norm_relu_backward_keep(&nd->cfg, nb, C, S, x->data, nd->out->data, gm->data,
                                            bt->data, nd->p.norm.mean, nd->p.norm.rstd,
                                            nd->p.norm.keep, nd->p.norm.eps, nd->out->grad, acc,
                                            dx, dg, db);
    else
        nomul_batch_norm_backward_keep(&nd->cfg, nb, C, S, x->data, gm->data, nd->p.norm.mean,
                                       nd->p.norm.rstd, nd->p.norm.keep, nd->p.norm.eps,
                                       nd->out->grad, acc, dx, dg, db);
}

void ad_batch_norm_backward(const node *nd) { bn_backward(nd, 0); }

void ad_batch_norm_relu_backward(const node *nd) { bn_backward(nd, 1); }

static nomul_tensor *bn_op(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                           nomul_tensor *gamma, nomul_tensor *beta, float *running_mean,
                           float *running_var, float eps, float momentum, int training, int relu)
{
    if (!x || !gamma || !beta)
        return NULL;
    if (x->ndim < 2 || gamma->n != x->shape[1] || beta->n != x->shape[1] || !running_mean ||
        !running_var) {
        nomul_report(NOMUL_EINVAL, "%s: x must be (n, C, ...) with gamma, beta and running "
                     "statistics of C elements",
                     relu ? "nomul_batch_norm_relu" : "nomul_batch_norm");
        return NULL;
    }
    int nb, C, S;
    bn_dims(x, &nb, &C, &S);
    const int grad = training && ad_wants_grad(g, x, gamma, beta);
    nomul_tensor *y = ad_output(g, x->ndim, x->shape, grad); /* every channel written */
    /* mean | rstd, then what the exact PA backward would recompute */
    const long nk = grad ? nomul_batch_norm_keep_floats(cfg, C) : 0;
    float *stats = ad_arena_zalloc(g, (2 * (size_t)C + (size_t)nk) * sizeof(float));
    if (!y || !stats)
        return NULL;
    float *keep = nk ? stats + 2 * (size_t)C : NULL;
    (relu ? nomul_batch_norm_relu_forward_keep : nomul_batch_norm_forward_keep)(
        cfg, nb, C, S, x->data, gamma->data, beta->data, eps, momentum, training, running_mean,
        running_var, y->data, stats, stats + C, keep);
    if (training)
        ad_record(g, relu ? AD_OP_BATCH_NORM_RELU : AD_OP_BATCH_NORM, cfg,
                  &(ad_params){.norm = {stats, stats + C, keep, eps}}, y, x, gamma, beta);
    return y;
}

nomul_tensor *nomul_batch_norm(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                               nomul_tensor *gamma, nomul_tensor *beta, float *running_mean,
                               float *running_var, float eps, float momentum, int training)
{
    return bn_op(g, cfg, x, gamma, beta, running_mean, running_var, eps, momentum, training, 0);
}

nomul_tensor *nomul_batch_norm_relu(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                                    nomul_tensor *gamma, nomul_tensor *beta,
                                    float *running_mean, float *running_var, float eps,
                                    float momentum, int training)
{
    return bn_op(g, cfg, x, gamma, beta, running_mean, running_var, eps, momentum, training, 1);
}

/* ---- cross-entropy ------------------------------------------------------------------- */

/* forward: logp = log_softmax(logits); loss = CE(logp, targets), PA with
 * grad in one pass that keeps what the backward reads instead of logp.
 * Backward: both passes at once, row by row (logp has no gradient array),
 * storing into a fresh logits gradient (first writer: ad_op_def.stores) */
void ad_cross_entropy_backward(const node *nd)
{
    nomul_tensor *logits = nd->in[0], *logp = nd->p.cross_entropy.logp;
    int rows = logits->shape[0], n = logits->shape[1];
    nomul_cross_entropy_logits_backward(
        &nd->cfg, rows, n, logits->data, logp ? logp->data : NULL, nd->p.cross_entropy.keep,
        nd->p.cross_entropy.targets,
        nd->p.cross_entropy.ignore_index, nd->p.cross_entropy.smoothing, nd->out->grad[0],
        nd->p.cross_entropy.global ? &nd->p.cross_entropy.glob : NULL, !nd->store[0],
        logits->grad);
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
    /* PA with a gradient: what the backward reads, kept (no logp); else logp */
    const long nk = grad ? nomul_cross_entropy_keep_floats(cfg, rows, n) : 0;
    float *keep = nk ? ad_arena_alloc(g, (size_t)nk * sizeof(float)) : NULL;
    nomul_tensor *logp = nk ? NULL : ad_output(g, 2, logits->shape, 0); /* every row written */
    nomul_tensor *loss = nomul_graph_tensor(g, 1, &one, grad);
    if ((nk ? !keep : !logp) || !loss)
        return NULL;
    loss->data[0] = nomul_cross_entropy_logits_forward(cfg, rows, n, logits->data, targets,
                                                       ignore_index, smoothing,
                                                       logp ? logp->data : NULL, keep, &count);
    if (count < 0) {
        nomul_report(NOMUL_EINVAL, "nomul_cross_entropy: a target is outside 0..%d and is not "
                     "the ignore index %d", n - 1, ignore_index);
        return NULL;
    }
    ad_record(g, AD_OP_CROSS_ENTROPY, cfg,
              &(ad_params){.cross_entropy = {logp, keep, targets, ignore_index, smoothing, 0,
                                             {0, 0}}},
              loss, logits, NULL, NULL);
    return loss;
}

nomul_tensor *nomul_cross_entropy_global(nomul_graph *g, const nomul_op_cfg *cfg,
                                         nomul_tensor *logits, const int *targets,
                                         int ignore_index, float smoothing,
                                         nomul_ce_reduce reduce, void *ctx)
{
    if (!logits)
        return NULL;
    if (logits->ndim != 2 || !targets || !reduce) {
        nomul_report(NOMUL_EINVAL, "nomul_cross_entropy_global: logits must be (batch, "
                     "classes) with one target per row, and a reduction given");
        return NULL;
    }
    int rows = logits->shape[0], n = logits->shape[1], one = 1;
    int grad = ad_wants_grad(g, logits, NULL, NULL);
    nomul_tensor *logp = ad_output(g, 2, logits->shape, 0); /* every row written */
    nomul_tensor *loss = nomul_graph_tensor(g, 1, &one, grad);
    nomul_tensor *per_row = nomul_graph_tensor(g, 1, &rows, 0); /* the used rows' losses */
    if (!logp || !loss || !per_row)
        return NULL;
    float *row_losses = per_row->data;
    nomul_log_softmax_forward(cfg, rows, n, logits->data, logp->data);
    int used = nomul_cross_entropy_row_losses(cfg, rows, n, logp->data, targets, ignore_index,
                                              smoothing, row_losses);
    nomul_ce_global glob = {0.0f, 0};
    int rc = used < 0 ? -1 : reduce(ctx, row_losses, used, &glob);
    if (used < 0)
        nomul_report(NOMUL_EINVAL, "nomul_cross_entropy_global: a target is outside 0..%d "
                     "and is not the ignore index %d", n - 1, ignore_index);
    if (rc)
        return NULL;
    loss->data[0] = nomul_cross_entropy_forward_global(cfg, &glob);
    ad_record(g, AD_OP_CROSS_ENTROPY, cfg,
              &(ad_params){.cross_entropy = {logp, NULL, targets, ignore_index, smoothing, 1,
                                             glob}},
              loss, logits, NULL, NULL);
    return loss;
}
