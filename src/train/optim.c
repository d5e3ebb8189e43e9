/*
 * optim.c — optimizers (standard float forms, and dispatch to the PA forms
 * of optim_pa.c), gradient clipping and learning-rate schedules.
 */
#include <math.h>

#include <omp.h>

#include "../core/internal.h"
#include "optim_internal.h"

static long chunks_of(size_t n) { return (long)((n + OPT_CHUNK - 1) / OPT_CHUNK); }

/* Chunks k0 .. k1 − 1 of the jobs' chunks counted in job order */
static void run_share(const opt_job *jobs, int nj, long k0, long k1)
{
    long base = 0;
    for (int j = 0; j < nj && base < k1; j++) {
        const long cj = chunks_of(jobs[j].n);
        const long lo = k0 > base ? k0 : base, hi = k1 < base + cj ? k1 : base + cj;
        for (long k = lo; k < hi; k++) {
            size_t i0 = (size_t)(k - base) * OPT_CHUNK;
            jobs[j].fn(&jobs[j].a, i0, jobs[j].n - i0 < OPT_CHUNK ? jobs[j].n - i0 : OPT_CHUNK);
        }
        base += cj;
    }
}

void opt_run_jobs(const opt_job *jobs, int nj)
{
    long total = 0;
    size_t elements = 0;
    for (int j = 0; j < nj; j++) {
        total += chunks_of(jobs[j].n);
        elements += jobs[j].n;
    }
    int nt = elements >= OPT_PARALLEL ? nomul_num_threads() : 1;
    if (nt > total)
        nt = (int)total;
    if (nt <= 1) {
        run_share(jobs, nj, 0, total);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        const long t = omp_get_thread_num(), q = omp_get_num_threads();
        run_share(jobs, nj, total * t / q, total * (t + 1) / q);
    }
}

void nomul_adamw_init(nomul_adamw *o, float lr, float weight_decay, const nomul_op_cfg *cfg)
{
    o->lr = lr;
    o->beta1 = 0.9f;
    o->beta2 = 0.98f;
    o->eps = 1e-8f;
    o->weight_decay = weight_decay;
    o->cfg = *cfg;
    o->step = 0;
    o->beta1_t = o->beta2_t = 1.0f;
    o->moments = NOMUL_ADAM_MOMENTS_REFERENCE;
}

void nomul_adamw_begin_step(nomul_adamw *o)
{
    o->step++;
    if (nomul_op_is_pa(&o->cfg)) {
        nomul_adamw_begin_step_pa(o);
        return;
    }
    NOMUL_COUNT(FMUL, 2);
    o->beta1_t *= o->beta1;
    o->beta2_t *= o->beta2;
}

static void adamw_chunk(const void *ctx, size_t i0, size_t c)
{
    const opt_args *a = ctx;
    const nomul_adamw *o = a->o;
    float *p = a->p + i0, *m = a->m + i0, *v = a->v + i0;
    const float *g = a->g + i0;
    for (size_t i = 0; i < c; i++) {
        if (o->weight_decay != 0.0f)
            p[i] -= a->decay * p[i];
        m[i] = o->beta1 * m[i] + (1.0f - o->beta1) * g[i];
        v[i] = o->beta2 * v[i] + (1.0f - o->beta2) * g[i] * g[i];
        p[i] -= a->step * m[i] / (sqrtf(v[i]) + o->eps);
    }
}

/* One tensor's AdamW: its scalars, its count for the audit, its chunks */
static opt_job adamw_job(const nomul_adamw *o, size_t n, float *p, const float *g, float *m,
                         float *v)
{
    if (nomul_op_is_pa(&o->cfg))
        return nomul_adamw_job_pa(o, n, p, g, m, v);
    float step = o->lr * sqrtf(1.0f - o->beta2_t) / (1.0f - o->beta1_t);
    float decay = o->lr * o->weight_decay;
    /* the audit: the step's scalars, then per element the decay, both moments and the update */
    NOMUL_COUNT(FMUL, 2 + (long long)n * (6 + (o->weight_decay != 0.0f)));
    NOMUL_COUNT(FADD, (long long)n * (5 + (o->weight_decay != 0.0f)));
    NOMUL_COUNT(FDIV, 1 + (long long)n);
    NOMUL_COUNT(FTRANS, 1 + (long long)n);
    return (opt_job){adamw_chunk, {o, p, m, v, g, step, decay}, n};
}

void nomul_adamw_update(const nomul_adamw *o, size_t n, float *p, const float *g, float *m,
                        float *v)
{
    opt_job j = adamw_job(o, n, p, g, m, v);
    opt_run_jobs(&j, 1);
}

/* The jobs of a step's trainable tensors: a scratch array of np */
static opt_job *step_jobs(int np)
{
    return nomul_scratch_bytes(NOMUL_SCRATCH_OPT, (size_t)(np > 0 ? np : 1) * sizeof(opt_job));
}

int nomul_adamw_update_params(const nomul_adamw *o, int np, const nomul_param *p, float *const *m,
                              float *const *v)
{
    opt_job *jobs = step_jobs(np);
    if (!jobs)
        return -1;
    nomul_adamw nodecay = *o;
    nodecay.weight_decay = 0.0f;
    int nj = 0;
    for (int i = 0; i < np; i++)
        if (!p[i].buffer)
            jobs[nj++] = adamw_job(p[i].decay ? o : &nodecay, (size_t)p[i].t->n, p[i].t->data,
                                   p[i].t->grad, m[i], v[i]);
    opt_run_jobs(jobs, nj);
    return 0;
}

void nomul_sgd_init(nomul_sgd *o, float lr, float momentum, float weight_decay,
                    const nomul_op_cfg *cfg)
{
    o->lr = lr;
    o->momentum = momentum;
    o->weight_decay = weight_decay;
    o->nesterov = 0;
    o->cfg = *cfg;
}

static void sgd_chunk(const void *ctx, size_t i0, size_t c)
{
    const opt_args *a = ctx;
    const nomul_sgd *o = a->o;
    float *p = a->p + i0, *buf = a->m ? a->m + i0 : NULL;
    const float *g = a->g + i0;
    for (size_t i = 0; i < c; i++) {
        float d = g[i] + o->weight_decay * p[i];
        if (o->momentum != 0.0f) {
            buf[i] = o->momentum * buf[i] + d;
            d = o->nesterov ? d + o->momentum * buf[i] : buf[i];
        }
        p[i] -= o->lr * d;
    }
}

static opt_job sgd_job(const nomul_sgd *o, size_t n, float *p, const float *g, float *buf)
{
    if (nomul_op_is_pa(&o->cfg))
        return nomul_sgd_job_pa(o, n, p, g, buf);
    long long k = 2 + (o->momentum != 0.0f) + (o->momentum != 0.0f && o->nesterov);
    NOMUL_COUNT(FMUL, (long long)n * k); /* the audit */
    NOMUL_COUNT(FADD, (long long)n * k);
    return (opt_job){sgd_chunk, {o, p, buf, NULL, g, 0.0f, 0.0f}, n};
}

void nomul_sgd_update(const nomul_sgd *o, size_t n, float *p, const float *g, float *buf)
{
    opt_job j = sgd_job(o, n, p, g, buf);
    opt_run_jobs(&j, 1);
}

int nomul_sgd_update_params(const nomul_sgd *o, int np, const nomul_param *p, float *const *buf)
{
    opt_job *jobs = step_jobs(np);
    if (!jobs)
        return -1;
    nomul_sgd nodecay = *o;
    nodecay.weight_decay = 0.0f;
    int nj = 0;
    for (int i = 0; i < np; i++)
        if (!p[i].buffer)
            jobs[nj++] = sgd_job(p[i].decay ? o : &nodecay, (size_t)p[i].t->n, p[i].t->data,
                                 p[i].t->grad, buf[i]);
    opt_run_jobs(jobs, nj);
    return 0;
}

float nomul_clip_grad_norm(size_t ntensors, float *const *grads, const size_t *sizes,
                           float max_norm, const nomul_op_cfg *cfg)
{
    if (nomul_op_is_pa(cfg))
        return nomul_clip_grad_norm_pa(ntensors, grads, sizes, max_norm);
    double sumsq = 0.0;
    size_t total = 0;
    for (size_t k = 0; k < ntensors; k++)
        total += sizes[k];
    NOMUL_COUNT(FMUL, total); /* the audit: squares (and the scaling, below) */
    NOMUL_COUNT(FADD, total);
    NOMUL_COUNT(FTRANS, 1);
    for (size_t k = 0; k < ntensors; k++)
        for (size_t i = 0; i < sizes[k]; i++)
            sumsq += (double)grads[k][i] * grads[k][i];
    float norm = (float)sqrt(sumsq);
    if (norm > max_norm) {
        float scale = max_norm / (norm + 1e-6f);
        NOMUL_COUNT(FDIV, 1);
        NOMUL_COUNT(FMUL, total);
        for (size_t k = 0; k < ntensors; k++)
            for (size_t i = 0; i < sizes[k]; i++)
                grads[k][i] *= scale;
    }
    return norm;
}

float nomul_schedule_lr(const nomul_schedule *s, long t)
{
    if (s->kind == NOMUL_SCHED_CONSTANT)
        return s->lr;
    if (t < s->warmup)
        return s->lr * (float)(t + 1) / (float)s->warmup;
    if (s->kind == NOMUL_SCHED_INVERSE_SQRT)
        return s->lr * (float)sqrt((double)s->warmup / (double)(t + 1));
    long span = s->total - s->warmup;
    double progress = span > 1 ? (double)(t - s->warmup) / (double)(span - 1) : 1.0;
    return (float)(s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(3.14159265358979323846 * progress)));
}

int nomul_schedule_table(const nomul_schedule *s, float *table)
{
    if (s->total < 1 || s->warmup < 0 || s->warmup > s->total || !(s->lr >= 0) ||
        !(s->min_lr >= 0) || s->min_lr > s->lr ||
        (s->kind != NOMUL_SCHED_CONSTANT && s->kind != NOMUL_SCHED_WARMUP_COSINE &&
         s->kind != NOMUL_SCHED_INVERSE_SQRT))
        return -1;
    for (long t = 0; t < s->total; t++)
        table[t] = nomul_schedule_lr(s, t);
    return 0;
}
