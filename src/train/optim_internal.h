/* optim_internal.h — the PA forms of the optimizers, in optim_pa.c (private). */
#ifndef NOMUL_OPTIM_INTERNAL_H
#define NOMUL_OPTIM_INTERNAL_H

#include "nomul/optim.h"

/* An update's elements, in chunks of OPT_CHUNK that depend on n alone:
 * fn(ctx, i0, c) updates elements i0 .. i0 + c − 1 (c ≤ OPT_CHUNK). Every
 * element's arithmetic is its own, so the result does not depend on the
 * thread count. From OPT_PARALLEL elements on, the chunks are shared among
 * the threads; below, they run on the calling thread without entering a
 * parallel region (which costs 1–2 µs, about 300 PA updates). */
enum { OPT_CHUNK = 1024, OPT_PARALLEL = 4096 };
typedef void (*opt_chunk_fn)(const void *ctx, size_t i0, size_t c);
void opt_for_chunks(size_t n, opt_chunk_fn fn, const void *ctx);
/* One update's arguments, the ctx of its chunks (m: SGD's momentum buffer) */
typedef struct {
    const void *o;
    float *p, *m, *v;
    const float *g;
    float step, decay;
} opt_args;

void nomul_adamw_begin_step_pa(nomul_adamw *o);
void nomul_adamw_update_pa(const nomul_adamw *o, size_t n, float *p, const float *g, float *m,
                           float *v);
void nomul_sgd_update_pa(const nomul_sgd *o, size_t n, float *p, const float *g, float *buf);
float nomul_clip_grad_norm_pa(size_t ntensors, float *const *grads, const size_t *sizes,
                              float max_norm);

#endif
