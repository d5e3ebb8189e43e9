/*
 * nomul/functional.h — the composite operations of PAM_SPEC.md as plain
 * forward/backward functions on float buffers (llm.c style), each in
 * standard float or piecewise affine form:
 *
 *   softmax, log_softmax, logsumexp (rows, −∞ masks give exactly 0 probability)
 *   layer_norm (rows, with γ and β), batch_norm (channels), batch_norm_relu
 *   (batch norm and relu in one pass)
 *   label-smoothed cross-entropy with an ignore index, over log_softmax
 *   GELU
 *
 * The family's nomul_op_cfg (nomul/opcfg.h) selects the form: "standard" is
 * float; "pam" is the PA composite exactly as the spec builds it, every PAM
 * with the cfg's offset (PAM(PAM(a, b), offset)), and approx_bwd choosing
 * the backward: 1, the derivative of the exact function evaluated in PA
 * arithmetic; 0, the chain of the exact (piecewise constant) derivatives of
 * every PA primitive used. Backward functions accumulate (+=) into the
 * input gradients, like llm.c's.
 */
#ifndef NOMUL_FUNCTIONAL_H
#define NOMUL_FUNCTIONAL_H

#include "nomul/opcfg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x, y: (rows, n). PA: t = PAM(x, log2e), s = ⌊max t⌋ per row,
 * e = paexp2(t − s), y = PAD(e, Σe). */
void nomul_softmax_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x, float *y);
/* dx += ∂/∂x given dy; needs x (exact PA backward) and y. */
void nomul_softmax_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                            const float *y, const float *dy, float *dx);
/* The same with what the exact PA backward would recompute kept by the
 * forward: keep holds nomul_softmax_keep_floats(cfg, rows, n) floats (PA with
 * exact derivatives: e, then each row's Σe and s, rows·n + 2·rows; otherwise
 * none, keep may be NULL). The same results, bit for bit, as the plain pair. */
long nomul_softmax_keep_floats(const nomul_op_cfg *cfg, int rows, int n);
void nomul_softmax_forward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                float *y, float *keep);
void nomul_softmax_backward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                 const float *y, const float *keep, const float *dy, float *dx);

/* y = x − logsumexp(x) per row; PA: logsumexp = PAD(s + palog2(Σ paexp2(t − s)), log2e).
 * The backward needs y (float) or x (PA). */
void nomul_log_softmax_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                               float *y);
void nomul_log_softmax_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                const float *y, const float *dy, float *dx);

/* lse (rows) = logsumexp of each row; PA: PAD(s + palog2(Σ paexp2(t − s)), log2e). */
void nomul_logsumexp_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                             float *lse);
/* dx += ∂lse/∂x · dlse (per row). */
void nomul_logsumexp_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                              const float *dlse, float *dx);

/* y = PAM(PAD(x − μ, pa_sqrt(σ² + eps)), γ) + β per row (PA), the usual
 * layer norm in float; mean and rstd (rows) are saved for the backward. */
void nomul_layer_norm_forward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                              const float *gamma, const float *beta, float eps, float *y,
                              float *mean, float *rstd);
/* dx, dgamma, dbeta += gradients. In PA mode rstd holds pa_sqrt(σ² + eps)
 * itself (the divisor), in float mode its reciprocal. */
void nomul_layer_norm_backward(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                               const float *gamma, const float *mean, const float *rstd,
                               float eps, const float *dy, float *dx, float *dgamma,
                               float *dbeta);
/* The same with more of the forward kept for the backward: keep holds
 * nomul_layer_norm_keep_floats(cfg, rows) floats (PA with exact derivatives:
 * each row's Σx, then each row's Σ PAM(x − μ, x − μ), 2·rows; otherwise
 * none, keep may be NULL),
 * written by the forward; the exact PA backward then does not recompute the
 * statistics. The same results, bit for bit, as the plain pair. */
long nomul_layer_norm_keep_floats(const nomul_op_cfg *cfg, int rows);
void nomul_layer_norm_forward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                   const float *gamma, const float *beta, float eps, float *y,
                                   float *mean, float *rstd, float *keep);
void nomul_layer_norm_backward_keep(const nomul_op_cfg *cfg, int rows, int n, const float *x,
                                    const float *gamma, const float *mean, const float *rstd,
                                    const float *keep, float eps, const float *dy, float *dx,
                                    float *dgamma, float *dbeta);

/* Batch norm over x (n, C, S) (S the spatial size): per channel, layer norm
 * over its n·S values with γ_c, β_c. training: batch statistics, saved in
 * mean/rstd (C) as for layer norm, and the running ones updated with
 * momentum (PAMs in PA mode; unbiased variance); else the running ones. */
void nomul_batch_norm_forward(const nomul_op_cfg *cfg, int n, int C, int S, const float *x,
                              const float *gamma, const float *beta, float eps, float momentum,
                              int training, float *running_mean, float *running_var, float *y,
                              float *mean, float *rstd);
/* Training-mode backward: dx, dγ, dβ +=. */
void nomul_batch_norm_backward(const nomul_op_cfg *cfg, int n, int C, int S, const float *x,
                               const float *gamma, const float *mean, const float *rstd,
                               float eps, const float *dy, float *dx, float *dgamma,
                               float *dbeta);
/* The same with the forward's per-channel Σx and Σ PAM(x − μ, x − μ) kept
 * for the exact PA backward (nomul_batch_norm_keep_floats(cfg, C) floats,
 * 2·C; none otherwise), as for layer norm: the same results, bit for bit,
 * without the statistics recomputed. In PA mode each channel's sums run in
 * 16 interleaved lanes added pairwise (a channel is n·S values long).
 * accumulate 1: dx +=; 0: every element of dx written, +0 + the value (the
 * bits of adding into zeros; dx need not be zero-filled nor is it read).
 * dγ and dβ are added to either way. */
long nomul_batch_norm_keep_floats(const nomul_op_cfg *cfg, int C);
void nomul_batch_norm_forward_keep(const nomul_op_cfg *cfg, int n, int C, int S, const float *x,
                                   const float *gamma, const float *beta, float eps,
                                   float momentum, int training, float *running_mean,
                                   float *running_var, float *y, float *mean, float *rstd,
                                   float *keep);
void nomul_batch_norm_backward_keep(const nomul_op_cfg *cfg, int n, int C, int S, const float *x,
                                    const float *gamma, const float *mean, const float *rstd,
                                    const float *keep, float eps, const float *dy,
                                    int accumulate, float *dx, float *dgamma, float *dbeta);
/* Batch norm followed by relu, without a pass of the relu's own over
 * memory: the relu is applied as each channel's output is written;
 * y = relu(batch_norm(x)), the same bits as
 * nomul_batch_norm_forward_keep then a relu (max(v, 0), NaN to 0). The
 * backward takes that y, β, and dy = the gradient at y, to which it applies
 * relu's derivative channel by channel (where y > 0, +0 + dy, else +0: what
 * a relu's backward accumulates into a zeroed gradient; on the fly, as dy
 * is read: in float from y's sign recomputed from x and β as the forward
 * made y, in PA form from y; dy is not written), then adds (or, accumulate
 * 0, writes) dx, and adds dγ, dβ, as nomul_batch_norm_backward_keep: the
 * same bits as the two operations one after the other. */
void nomul_batch_norm_relu_forward_keep(const nomul_op_cfg *cfg, int n, int C, int S,
                                        const float *x, const float *gamma, const float *beta,
                                        float eps, float momentum, int training,
                                        float *running_mean, float *running_var, float *y,
                                        float *mean, float *rstd, float *keep);
void nomul_batch_norm_relu_backward_keep(const nomul_op_cfg *cfg, int n, int C, int S,
                                         const float *x, const float *y, const float *gamma,
                                         const float *beta, const float *mean, const float *rstd,
                                         const float *keep, float eps, const float *dy,
                                         int accumulate, float *dx, float *dgamma, float *dbeta);

/* Label-smoothed cross-entropy over logprobs (rows, n) = log_softmax output:
 * loss = mean over rows whose target is not ignore_index of
 * (1 − ε)·(−logp[target]) + ε·mean_c(−logp[c]). In PA mode every scaling by
 * a constant is a PAM and the means are PADs. Returns the loss (0 when every
 * row is ignored) and the count of rows used (-1, and NaN, when a target is
 * out of range). */
float nomul_cross_entropy_forward(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                  const int *target, int ignore_index, float smoothing,
                                  int *count);
/* dlogp += ∂loss/∂logp · dloss. */
void nomul_cross_entropy_backward(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                  const int *target, int ignore_index, float smoothing,
                                  float dloss, float *dlogp);
/* The same loss over a global batch whose rows are split over processes
 * (data parallelism): each computes its rows' losses (row_losses: the
 * (1 − ε)·nll + ε·mean terms of the used rows, in row order; returns their
 * count, -1 for a target out of range); their sum over the global batch in
 * row order, total, and its used rows make `glob`. The loss is then total /
 * used (a PAD in PA mode) as nomul_cross_entropy_forward computes it, and
 * backward_global adds this process's rows' part of its gradient, which in
 * PA mode depends on the global total: summed over the processes, the
 * gradient of the whole batch, row for row the same values. */
typedef struct nomul_ce_global {
    float total;
    int used;
} nomul_ce_global;
int nomul_cross_entropy_row_losses(const nomul_op_cfg *cfg, int rows, int n, const float *logp,
                                   const int *target, int ignore_index, float smoothing,
                                   float *loss);
float nomul_cross_entropy_forward_global(const nomul_op_cfg *cfg, const nomul_ce_global *glob);
void nomul_cross_entropy_backward_global(const nomul_op_cfg *cfg, int rows, int n,
                                         const float *logp, const int *target, int ignore_index,
                                         float smoothing, float dloss,
                                         const nomul_ce_global *glob, float *dlogp);
/* The loss's gradient with respect to the logits (logp = their log_softmax)
 * in one pass over the rows: dlogits += (accumulate 1) or = (0: every
 * element written, +0 + the value, the bits of adding into zeros) the
 * backward of log_softmax applied to the cross-entropy's dlogp, each row's
 * dlogp made in a row buffer, never stored whole. The same bits as
 * nomul_cross_entropy_backward (or _global, with glob not NULL) into a
 * zeroed dlogp followed by nomul_log_softmax_backward(logits, logp, dlogp),
 * and the same audit counts; a (rows × n) array and two passes over memory
 * fewer. keep: nomul_cross_entropy_logits_forward's (PA), or NULL; with it,
 * logp is not read (may be NULL), the row losses and log_softmax's
 * exponentials are not recomputed, and the audit counts those operations no
 * more. */
void nomul_cross_entropy_logits_backward(const nomul_op_cfg *cfg, int rows, int n,
                                         const float *logits, const float *logp,
                                         const float *keep, const int *target,
                                         int ignore_index, float smoothing, float dloss,
                                         const nomul_ce_global *glob, int accumulate,
                                         float *dlogits);
/* log_softmax and the cross-entropy's forward at once, from the logits, with
 * what the PA backward would recompute kept: keep holds
 * nomul_cross_entropy_keep_floats(cfg, rows, n) floats (PA: per row its loss,
 * the exact derivative's parts and log_softmax's shift and Σ, 6·rows; with
 * the approximate backward also the exponentials, rows·n more; float: none,
 * keep may be NULL). PA with keep: the rows in the cache a group at a time,
 * logp written only where not NULL, and nomul_cross_entropy_logits_backward
 * given keep reads it (logp may then be NULL there too) instead of
 * recomputing; otherwise (or keep NULL) log_softmax into logp, then
 * nomul_cross_entropy_forward. The same bits either way: loss, count, logp,
 * and the gradients. */
long nomul_cross_entropy_keep_floats(const nomul_op_cfg *cfg, int rows, int n);
float nomul_cross_entropy_logits_forward(const nomul_op_cfg *cfg, int rows, int n,
                                         const float *logits, const int *target,
                                         int ignore_index, float smoothing, float *logp,
                                         float *keep, int *count);

/* GELU over n values. Float: x Φ(x) with the error function (PyTorch's
 * default). PA: nomul's form, x σ(1.702 x) with σ(z) = PAD(1, 1 + pa_exp(−z))
 * and both products PAMs (PAM_SPEC.md gives no GELU recipe). */
void nomul_gelu_forward(const nomul_op_cfg *cfg, long n, const float *x, float *y);
void nomul_gelu_backward(const nomul_op_cfg *cfg, long n, const float *x, const float *dy,
                         float *dx);
/* The same with the forward's intermediates kept for the backward (as layer
 * norm keeps its mean and rstd): keep holds nomul_gelu_keep_floats(cfg, n)
 * floats (PA: σ, n, then 1 + pa_exp(−1.702 x), n more, for the exact
 * derivative only; float: none, keep may be NULL),
 * written by the forward and read by the backward, which then does not
 * recompute them: the same results, bit for bit, as the plain pair. */
long nomul_gelu_keep_floats(const nomul_op_cfg *cfg, long n);
void nomul_gelu_forward_keep(const nomul_op_cfg *cfg, long n, const float *x, float *y,
                             float *keep);
void nomul_gelu_backward_keep(const nomul_op_cfg *cfg, long n, const float *x,
                              const float *keep, const float *dy, float *dx);

#ifdef __cplusplus
}
#endif
#endif
