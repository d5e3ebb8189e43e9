/* optim_internal.h — the PA forms of the optimizers, in optim_pa.c (private). */
#ifndef NOMUL_OPTIM_INTERNAL_H
#define NOMUL_OPTIM_INTERNAL_H

#include "nomul/optim.h"

#include "../core/internal.h"

/* Threads for an elementwise update of n values, cut into chunks that depend
 * on n alone: every element's arithmetic is its own, so the result does not
 * depend on the count; a small tensor stays on the calling thread (a
 * parallel region costs about a microsecond, 4,096 PA updates about 20). */
static inline int opt_threads(size_t n) { return n >= 4096 ? nomul_num_threads() : 1; }

void nomul_adamw_begin_step_pa(nomul_adamw *o);
void nomul_adamw_update_pa(const nomul_adamw *o, size_t n, float *p, const float *g, float *m,
                           float *v);
void nomul_sgd_update_pa(const nomul_sgd *o, size_t n, float *p, const float *g, float *buf);
float nomul_clip_grad_norm_pa(size_t ntensors, float *const *grads, const size_t *sizes,
                              float max_norm);

#endif
