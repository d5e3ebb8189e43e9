/*
 * nomul/autodiff.h — float32 tensors and reverse-mode autodiff over a tape.
 *
 * The operations, each a forward that records itself on the tape and a
 * backward (src/autodiff/optable.c lists them):
 *   products        linear, matmul (batched), conv2d
 *   row-wise        softmax, log_softmax, logsumexp, layer_norm, batch_norm,
 *                   batch_norm_relu, cross_entropy
 *   elementwise     relu, gelu, add, sub, mul, div (broadcasting), scale,
 *                   dropout
 *   reductions      sum, mean
 *   shape           transpose, concat, narrow, embedding
 *   pooling         max_pool2d, avg_pool_global
 * and, recording nothing of their own: reshape (a view), attention (a
 * composite of the above), and the constant tables sinusoidal_positions and
 * causal_mask.
 *
 * A graph owns an arena from which every tensor an operation creates is
 * allocated, and the tape of operations recorded since the last reset.
 * nomul_graph_reset() rewinds both, so a training step reuses the same
 * memory. Parameters live outside the arena (nomul_tensor_alloc) and their
 * gradients accumulate across backward passes until zeroed.
 *
 * An operation returns NULL after reporting an error (nomul/error.h); given a
 * NULL input it returns NULL without a new report, so a chain of operations
 * keeps the first error.
 *
 * An operation with products, quotients or nonlinear functions takes the
 * nomul_op_cfg of its family (nomul/opcfg.h): "standard" runs in float,
 * "pam" in piecewise affine arithmetic with the exact or approximate
 * backward (dkwargs approx_bwd) and offset. The others (relu, add, sub, sum,
 * the shape operations, max pooling) compute the same in every mode.
 */
#ifndef NOMUL_AUTODIFF_H
#define NOMUL_AUTODIFF_H

#include <stddef.h>

#include "nomul/opcfg.h"

struct nomul_ce_global;

#ifdef __cplusplus
extern "C" {
#endif

#define NOMUL_MAX_DIMS 5

typedef struct nomul_tensor {
    float *data;
    float *grad; /* NULL when no gradient is wanted */
    int ndim;
    int shape[NOMUL_MAX_DIMS];
    long n; /* elements */
} nomul_tensor;

typedef struct nomul_graph nomul_graph;

/* A graph whose arena holds arena_bytes; NULL (and a reported error) on
 * failure. */
nomul_graph *nomul_graph_new(size_t arena_bytes);
void nomul_graph_free(nomul_graph *g);
/* Forgets the tape and rewinds the arena (tensors from it become invalid). */
void nomul_graph_reset(nomul_graph *g);
/* 0: operations record nothing and create no gradients (evaluation). */
void nomul_graph_set_grad(nomul_graph *g, int enabled);

/* What a graph's arena holds. Every allocation starts 64-byte aligned, so
 * used ≤ asked + 63·allocs: a forward's asked bytes and allocations, which
 * its shapes alone fix, bound its use of the arena. */
typedef struct nomul_arena_use {
    size_t size;   /* the arena's bytes */
    size_t used;   /* bytes in use since the last reset, alignment included */
    size_t asked;  /* bytes asked for since the last reset */
    size_t allocs; /* allocations since the last reset */
    size_t peak;   /* the most bytes in use at once since nomul_graph_new or
                    * the last nomul_graph_reset_peak */
} nomul_arena_use;
nomul_arena_use nomul_graph_arena_use(const nomul_graph *g);
void nomul_graph_reset_peak(nomul_graph *g);

/* Time per operation (nomul train --profile). While on, every recorded
 * operation's forward and backward are timed, summed per operation and
 * variant since the profile was turned on. An operation's forward time is
 * the time since the previous recorded operation (or the graph's reset)
 * ended: it includes the code between operations, such as operations on
 * tensors without gradients. */
typedef struct {
    const char *op;      /* the function's name without nomul_, e.g. "linear" */
    const char *variant; /* "float", "pa" (exact derivatives) or "pa approx" */
    long calls;
    double forward_s, backward_s;
} nomul_op_time;
void nomul_graph_profile(nomul_graph *g, int on);
/* Up to max rows, the most expensive (forward + backward) first; returns the
 * number of rows with calls (which may exceed max). */
int nomul_graph_profile_rows(const nomul_graph *g, nomul_op_time *rows, int max);

/* A persistent tensor (parameters, inputs kept across steps), zero-filled,
 * with a zeroed gradient if grad; free with nomul_tensor_free. */
nomul_tensor *nomul_tensor_alloc(int ndim, const int *shape, int grad);
void nomul_tensor_free(nomul_tensor *t);
/* A tensor from the graph's arena, zero-filled (gradient too, if grad). */
nomul_tensor *nomul_graph_tensor(nomul_graph *g, int ndim, const int *shape, int grad);
void nomul_tensor_zero_grad(nomul_tensor *t);

/* y (batch, out) = x (batch, in) · wᵀ (w: (out, in)) + b (out, may be NULL);
 * cfg: linear_cfg. */
nomul_tensor *nomul_linear(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                           nomul_tensor *w, nomul_tensor *b);
/* relu(nomul_linear(x, w, b)) in one operation (a transformer's first FFN
 * layer): the relu applied in the bias's pass over y, its derivative in the
 * bias gradient's pass over dy, and no pre-activation kept; the same values,
 * bits and gradients as the two operations. cfg: linear_cfg. */
nomul_tensor *nomul_linear_relu(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                                nomul_tensor *w, nomul_tensor *b);
/* GELU (functional.h's forms); cfg: functional_cfg. */
nomul_tensor *nomul_gelu(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x);
/* max(x, 0) */
nomul_tensor *nomul_relu(nomul_graph *g, nomul_tensor *x);
/* a + b and a − b with numpy-style broadcasting (float additions in every
 * mode). */
nomul_tensor *nomul_add(nomul_graph *g, nomul_tensor *a, nomul_tensor *b);
nomul_tensor *nomul_sub(nomul_graph *g, nomul_tensor *a, nomul_tensor *b);
/* Mean label-smoothed cross-entropy of logits (batch, classes) against
 * targets (batch; ignore_index rows skipped), through log_softmax; cfg:
 * loss_functional_cfg. Returns a 1-element tensor. */
nomul_tensor *nomul_cross_entropy(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *logits,
                                  const int *targets, int ignore_index, float smoothing);
/* The same for these rows of a global batch split over processes: reduce
 * gets these rows' losses (the used rows', in order: nomul/functional.h's
 * nomul_cross_entropy_row_losses) and sets *glob from the whole batch's (0,
 * or -1 after a report); the value is then the global batch's loss, the
 * gradient these rows' part of its. */
typedef int (*nomul_ce_reduce)(void *ctx, const float *row_losses, int used,
                               struct nomul_ce_global *glob);
nomul_tensor *nomul_cross_entropy_global(nomul_graph *g, const nomul_op_cfg *cfg,
                                         nomul_tensor *logits, const int *targets,
                                         int ignore_index, float smoothing,
                                         nomul_ce_reduce reduce, void *ctx);

/* Row-wise over the last dimension (x's −∞ entries are masks: exactly 0
 * probability); cfg: functional_cfg. */
nomul_tensor *nomul_softmax(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x);
nomul_tensor *nomul_log_softmax(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x);
/* logsumexp over the last dimension: shape without it (1-D for a vector). */
nomul_tensor *nomul_logsumexp(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x);
/* Over the last dimension, with gamma and beta of that size; cfg: norm_cfg. */
nomul_tensor *nomul_layer_norm(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                               nomul_tensor *gamma, nomul_tensor *beta, float eps);
/* Batch norm of x (n, C, ...) per channel with gamma, beta (C); training:
 * batch statistics, running_mean/var (C floats, the caller's) updated with
 * momentum; else the running statistics (nothing recorded). cfg: norm_cfg. */
nomul_tensor *nomul_batch_norm(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                               nomul_tensor *gamma, nomul_tensor *beta, float *running_mean,
                               float *running_var, float eps, float momentum, int training);
/* relu(batch_norm(...)) in one operation: the same values and gradients,
 * bit for bit, without the intermediate tensor or relu's own passes over
 * memory (each channel's relu runs while the channel is in the cache). */
nomul_tensor *nomul_batch_norm_relu(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                                    nomul_tensor *gamma, nomul_tensor *beta,
                                    float *running_mean, float *running_var, float eps,
                                    float momentum, int training);
/* Matrix products of the last two dimensions, batched over a leading one
 * (2-D or 3-D, the same batch): a (.., m, k) · b (.., k, n), or · bᵀ with
 * b (.., n, k) when trans_b; cfg: bmm_cfg (linear_cfg for weights). */
nomul_tensor *nomul_matmul(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                           nomul_tensor *b, int trans_b);
/* Elementwise a · b and a / b with broadcasting, and c · x; cfg:
 * functional_cfg (PAM and PAD in PA mode, with exact or approximate
 * derivatives). */
nomul_tensor *nomul_mul(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                        nomul_tensor *b);
nomul_tensor *nomul_div(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *a,
                        nomul_tensor *b);
nomul_tensor *nomul_scale(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x, float c);
/* Dropout with probability p: each element kept with probability 1 − p
 * (drawn from *rng, advanced) and scaled by 1/(1 − p), computed and applied
 * with PAD and PAM in PA mode (functional_cfg). p = 0, or gradients off
 * (evaluation), is the identity. */
nomul_tensor *nomul_dropout(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x, float p,
                            unsigned long long *rng);
/* Max pooling of x (n, c, h, w) with a k×k window every `stride` pixels, in
 * ceil mode (a partial last window counts, as PyTorch's ceil_mode=True):
 * comparisons only, in every mode. */
nomul_tensor *nomul_max_pool2d(nomul_graph *g, nomul_tensor *x, int k, int stride);
/* Global average pooling: (n, c, h, w) → (n, c), the mean of each plane
 * (a sum, then a PAM by 1/(h·w) when cfg, functional_cfg, is PA). */
nomul_tensor *nomul_avg_pool_global(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x);
/* Rows of table (vocab, dim) for n ids: (n, dim); an id outside the table is
 * a reported error. */
nomul_tensor *nomul_embedding(nomul_graph *g, nomul_tensor *table, const int *ids, int n);
/* conv2d of x (n, c_in, h, w) with weight (c_out, c_in/groups, kh, kw) and
 * bias (c_out or NULL) as described by d (its n, c_in, h, w, c_out, kh, kw
 * must match the tensors); cfg: conv_cfg. */
struct nomul_conv2d_desc;
nomul_tensor *nomul_conv2d(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x,
                           nomul_tensor *weight, nomul_tensor *bias,
                           const struct nomul_conv2d_desc *d);
/* Sinusoidal positions as fairseq builds them, (positions, dim): sin of the
 * first half, cos of the second, frequencies 10000^(−i/(half − 1)). A
 * constant table, computed once in float at model construction. */
void nomul_sinusoidal_positions(int positions, int dim, float *out);

/* x with dimensions d0 and d1 swapped (a copy). */
nomul_tensor *nomul_transpose(nomul_graph *g, nomul_tensor *x, int d0, int d1);
/* a and b joined along dimension dim (every other dimension equal), e.g. a
 * class token before the patch tokens. */
nomul_tensor *nomul_concat(nomul_graph *g, nomul_tensor *a, nomul_tensor *b, int dim);
/* Entries start .. start+len−1 of x along dimension dim (a copy), e.g. the
 * class token's output. */
nomul_tensor *nomul_narrow(nomul_graph *g, nomul_tensor *x, int dim, int start, int len);

/* Multi-head attention core: q (batch, tq, heads·dh), k and v (batch, tk,
 * heads·dh) → softmax(q kᵀ / √dh + mask) v, (batch, tq, heads·dh). mask is
 * added to the scores and broadcast to (batch, heads, tq, tk): (tq, tk) for
 * a causal mask, (batch, 1, 1, tk) for key padding, −∞ where masked; NULL for
 * none. The scaling is a PAM in PA mode; bmm: the products' family,
 * fun: the scaling's and the softmax's. */
nomul_tensor *nomul_attention(nomul_graph *g, const nomul_op_cfg *bmm, const nomul_op_cfg *fun,
                              nomul_tensor *q, nomul_tensor *k, nomul_tensor *v, int heads,
                              nomul_tensor *mask);
/* Fills a (t, t) causal mask: 0 on and below the diagonal, −∞ above. */
void nomul_causal_mask(int t, float *out);

/* The same data and gradient seen with another shape of as many elements
 * (no copy, nothing recorded). */
nomul_tensor *nomul_reshape(nomul_graph *g, nomul_tensor *x, int ndim, const int *shape);
/* Σx, and mean(x) = PAD(Σx, n) in PA mode; 1-element results. */
nomul_tensor *nomul_sum(nomul_graph *g, nomul_tensor *x);
nomul_tensor *nomul_mean(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x);

/* Runs the tape backwards from a 1-element tensor (its gradient seeded 1),
 * accumulating into the gradients of the leaves (persistent tensors and
 * nomul_graph_tensor's). The gradients of operations' outputs live only
 * while the backward needs them: made when first written, their memory
 * reused once consumed, and their `grad` NULL afterwards. 0, or -1 after a
 * report (the graph's arena is too small for the backward's gradients). */
int nomul_backward(nomul_graph *g, nomul_tensor *loss);

#ifdef __cplusplus
}
#endif
#endif
