/*
 * nomul/optim.h — optimizers, learning-rate schedules and gradient clipping,
 * each in standard float or piecewise affine form (opt_functional_cfg).
 *
 * AdamW is fairseq's Adam with decoupled weight decay: per step t (from 1)
 *   p  -= lr·λ·p                                   (weight decay, first)
 *   m   = β1·m + (1 − β1)·g
 *   v   = β2·v + (1 − β2)·g²
 *   p  -= step · m / (√v + ε),  step = lr·√(1 − β2^t) / (1 − β1^t)
 * In PA mode (opt_functional_cfg not "standard") every product is a PAM (with
 * the configuration's offset), every quotient a PAD, every square root
 * pa_sqrt, including β^t (a running PAM product), the bias corrections and
 * the step size; the PA code lives in its own object, which the no-multiply
 * test disassembles.
 *
 * The PA moments come in two forms (moments, PA mode only; the float form is
 * the same either way):
 *   NOMUL_ADAM_MOMENTS_REFERENCE  m = PAM(m, β1) + PAM(g, 1 − β1), v likewise
 *                                 (PAM_SPEC.md, the reference's form)
 *   NOMUL_ADAM_MOMENTS_DELTA      m += PAM(g − m, 1 − β1),
 *                                 v += PAM(PAM(g, g) − v, 1 − β2)
 * PAM rounds products down by up to ~11% (PAM(x, 0.9) is ~4% low on average);
 * the reference form divides that error by 1 − β, so its averages settle
 * 25–50% below the mean of what they average (how far depends on the
 * mantissas; test_optim measures it), and with m and √v both low the update
 * runs at ~75–90% of the float one. The delta form's fixed point is the mean.
 *
 * SGD follows PyTorch: g += λ·p; b = μ·b + g; p -= lr·(nesterov ? g + μ·b : b).
 */
#ifndef NOMUL_OPTIM_H
#define NOMUL_OPTIM_H

#include <stddef.h>

#include "nomul/models.h"
#include "nomul/opcfg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nomul_adamw {
    float lr, beta1, beta2, eps, weight_decay;
    nomul_op_cfg cfg; /* opt_functional_cfg: PA throughout, with its offset, when not standard */
    long step;        /* steps taken */
    float beta1_t, beta2_t; /* β1^t, β2^t */
    int moments;            /* nomul_adam_moments: the PA moment form */
} nomul_adamw;

typedef enum { NOMUL_ADAM_MOMENTS_REFERENCE = 0, NOMUL_ADAM_MOMENTS_DELTA = 1 } nomul_adam_moments;

/* Defaults as fairseq's transformer recipes: β = (0.9, 0.98), ε = 1e-8; cfg
 * (opt_functional_cfg) is copied. */
void nomul_adamw_init(nomul_adamw *o, float lr, float weight_decay, const nomul_op_cfg *cfg);
/* Begins a step (advances t, β^t): once per step, before the updates of
 * every parameter tensor. lr may change between steps (a schedule). */
void nomul_adamw_begin_step(nomul_adamw *o);
/* Updates n parameters p with gradients g and their moments m, v (zeros at
 * the start) for the current step. */
void nomul_adamw_update(const nomul_adamw *o, size_t n, float *p, const float *g, float *m,
                        float *v);

/* A whole step's updates: every trainable tensor of p (buffers skipped),
 * tensor i with its moments m[i], v[i], weight decay only where p[i].decay is
 * set (else as o with weight_decay 0): the same bits as
 * nomul_adamw_update per tensor, in one parallel region whose threads share
 * the chunks of all the tensors. 0, or -1 (nothing updated, reported) when
 * out of memory. */
int nomul_adamw_update_params(const nomul_adamw *o, int np, const nomul_param *p, float *const *m,
                              float *const *v);

typedef struct nomul_sgd {
    float lr, momentum, weight_decay;
    int nesterov;
    nomul_op_cfg cfg; /* opt_functional_cfg, as AdamW's */
} nomul_sgd;

void nomul_sgd_init(nomul_sgd *o, float lr, float momentum, float weight_decay,
                    const nomul_op_cfg *cfg);
/* buf: the momentum buffer (zeros at the start; unused if momentum is 0). */
void nomul_sgd_update(const nomul_sgd *o, size_t n, float *p, const float *g, float *buf);
/* A whole step's SGD updates, as nomul_adamw_update_params (buf[i]: tensor
 * i's momentum buffer). */
int nomul_sgd_update_params(const nomul_sgd *o, int np, const nomul_param *p, float *const *buf);

/* Gradient-norm clipping over several tensors: returns the norm √Σg² before
 * clipping; when it exceeds max_norm every gradient is scaled by
 * max_norm / (norm + 1e-6). PA mode (cfg not standard): PAM squares,
 * pa_sqrt, PAD, PAM, all without cfg's offset (as the clipping has always
 * been computed; the optimizers' PAMs do use it). */
float nomul_clip_grad_norm(size_t ntensors, float *const *grads, const size_t *sizes,
                           float max_norm, const nomul_op_cfg *cfg);

/* Learning-rate schedules, precomputed for every step before training, so a
 * training step only looks its value up. */
typedef enum {
    NOMUL_SCHED_CONSTANT,
    NOMUL_SCHED_WARMUP_COSINE, /* linear warmup, then cosine decay to min_lr */
    NOMUL_SCHED_INVERSE_SQRT   /* linear warmup, then lr·√(warmup / t) (fairseq) */
} nomul_schedule_kind;

typedef struct nomul_schedule {
    nomul_schedule_kind kind;
    float lr, min_lr;
    long warmup, total;
} nomul_schedule;

/* The learning rate of step t (0-based, t < total). Float arithmetic: it runs
 * when the table is built, not during training steps. */
float nomul_schedule_lr(const nomul_schedule *s, long t);
/* Fills table[0 .. total) ; returns 0, or -1 if a parameter is invalid
 * (negative sizes, warmup > total, lr < 0, min_lr > lr). */
int nomul_schedule_table(const nomul_schedule *s, float *table);

#ifdef __cplusplus
}
#endif
#endif
