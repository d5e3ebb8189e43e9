/* optim_internal.h — the PA forms of the optimizers, in optim_pa.c (private). */
#ifndef NOMUL_OPTIM_INTERNAL_H
#define NOMUL_OPTIM_INTERNAL_H

#include "nomul/optim.h"

/* An update's elements go in chunks of OPT_CHUNK that depend on its size
 * alone: fn(ctx, i0, c) updates elements i0 .. i0 + c − 1 (c ≤ OPT_CHUNK).
 * Every element's arithmetic is its own, so results do not depend on the
 * thread count. */
enum { OPT_CHUNK = 1024, OPT_PARALLEL = 4096 };
typedef void (*opt_chunk_fn)(const void *ctx, size_t i0, size_t c);
/* One update's arguments, the ctx of its chunks (m: SGD's momentum buffer) */
typedef struct {
    const void *o;
    float *p, *m, *v;
    const float *g;
    float step, decay;
} opt_args;
/* One tensor's update: its chunk function, arguments and size */
typedef struct {
    opt_chunk_fn fn;
    opt_args a;
    size_t n;
} opt_job;
/* Runs the jobs' chunks: from OPT_PARALLEL elements in all, in one parallel
 * region, the chunks of all jobs shared in contiguous runs among the
 * threads; below, on the calling thread without a region (a region costs
 * 1–2 µs, and waking threads that have gone to sleep more: a region per
 * tensor made the float ViT's AdamW step slower on two threads than on one). */
void opt_run_jobs(const opt_job *jobs, int njobs);

void nomul_adamw_begin_step_pa(nomul_adamw *o);
/* The PA forms' jobs: their scalars computed (in PA) and their operations
 * counted for the audit */
opt_job nomul_adamw_job_pa(const nomul_adamw *o, size_t n, float *p, const float *g, float *m,
                           float *v);
opt_job nomul_sgd_job_pa(const nomul_sgd *o, size_t n, float *p, const float *g, float *buf);
float nomul_clip_grad_norm_pa(size_t ntensors, float *const *grads, const size_t *sizes,
                              float max_norm);

#endif
