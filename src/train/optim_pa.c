/*
 * optim_pa.c — the piecewise affine forms of the optimizers and of gradient
 * clipping: every product a PAM (with the configured offset), every quotient
 * a PAD, every square root pa_sqrt, through the array kernels in chunks
 * (AdamW on AVX2 and AVX-512: a chunk in one fused pass, nomul_pa_fused).
 * Only additions, subtractions and comparisons are done in float here, and
 * the no-multiply test disassembles this object to prove it.
 */
#include "../arith/elt.h"
#include "../core/internal.h"
#include "optim_internal.h"

#include "nomul/arith.h"

enum { CHUNK = OPT_CHUNK };

static float pam(float a, float b, float off)
{
    return off != 1.0f ? nomul_pa_mul_off(a, b, off) : nomul_pa_mul(a, b);
}

static void pam_vs(size_t n, const float *a, float b, float off, float *out)
{
    if (off != 1.0f)
        nomul_pa_mul_off_vs(n, a, b, off, out);
    else
        nomul_pa_mul_vs(n, a, b, out);
}

static void pam_v(size_t n, const float *a, const float *b, float off, float *out)
{
    if (off != 1.0f)
        nomul_pa_mul_off_v(n, a, b, off, out);
    else
        nomul_pa_mul_v(n, a, b, out);
}

/* AdamW on c ≤ CHUNK elements from i0 (one chunk: its temporaries in L1) */
static void adamw_chunk(const void *ctx, size_t i0, size_t c)
{
    const opt_args *a = ctx;
    const nomul_adamw *o = a->o;
    const float off = o->cfg.offset, step = a->step, decay = a->decay;
    float *pp = a->p + i0, *mm = a->m + i0, *vv = a->v + i0;
    const float *gg = a->g + i0;
    /* AVX2, AVX-512: the operations below in one pass (nomul_pa_fused);
     * the scalar kernels run them one array call at a time */
    const nomul_pa_fused *f = nomul_pa_fused_active();
    if (f) {
        /* the audit: what the array calls below count for themselves, a
         * PAM with an offset two (the moments' form: 3 or 5 PAM calls, the
         * decay's 1, the step's 1; pa_sqrt a palog2, a PAM and a paexp2) */
        const int delta = o->moments == NOMUL_ADAM_MOMENTS_DELTA;
        const long long calls = (o->weight_decay != 0.0f) + (delta ? 3 : 5) + 1;
        NOMUL_COUNT(PAM, (long long)c * (calls * (off != 1.0f ? 2 : 1) + 1));
        NOMUL_COUNT(PAD, (long long)c);
        NOMUL_COUNT(PALOG2, (long long)c);
        NOMUL_COUNT(PAEXP2, (long long)c);
        const float k[8] = {decay, o->beta1, 1.0f - o->beta1, o->beta2, 1.0f - o->beta2,
                            o->eps, step, off};
        f->adamw((int)c, pp, gg, mm, vv, k, delta, o->weight_decay != 0.0f);
        return;
    }
    float t1[CHUNK], t2[CHUNK];
    if (o->weight_decay != 0.0f) { /* p -= lr·λ·p */
        pam_vs(c, pp, decay, off, t1);
        for (size_t i = 0; i < c; i++)
            pp[i] -= t1[i];
    }
    if (o->moments == NOMUL_ADAM_MOMENTS_DELTA) {
        /* m += (1 − β1)·(g − m) */
        for (size_t i = 0; i < c; i++)
            t1[i] = gg[i] - mm[i];
        pam_vs(c, t1, 1.0f - o->beta1, off, t1);
        for (size_t i = 0; i < c; i++)
            mm[i] += t1[i];
        /* v += (1 − β2)·(g² − v) */
        pam_v(c, gg, gg, off, t2);
        for (size_t i = 0; i < c; i++)
            t2[i] -= vv[i];
        pam_vs(c, t2, 1.0f - o->beta2, off, t2);
        for (size_t i = 0; i < c; i++)
            vv[i] += t2[i];
    } else {
        /* m = β1·m + (1 − β1)·g */
        pam_vs(c, mm, o->beta1, off, t1);
        pam_vs(c, gg, 1.0f - o->beta1, off, t2);
        for (size_t i = 0; i < c; i++)
            mm[i] = t1[i] + t2[i];
        /* v = β2·v + (1 − β2)·g² */
        pam_v(c, gg, gg, off, t2);
        pam_vs(c, t2, 1.0f - o->beta2, off, t2);
        pam_vs(c, vv, o->beta2, off, t1);
        for (size_t i = 0; i < c; i++)
            vv[i] = t1[i] + t2[i];
    }
    /* p -= step · m / (√v + ε) */
    nomul_pa_sqrt_v(c, vv, t1);
    for (size_t i = 0; i < c; i++)
        t1[i] += o->eps;
    nomul_pa_div_v(c, mm, t1, t2);
    pam_vs(c, t2, step, off, t2);
    for (size_t i = 0; i < c; i++)
        pp[i] -= t2[i];
}

void nomul_adamw_begin_step_pa(nomul_adamw *o)
{
    NOMUL_COUNT(PAM, 2);
    o->beta1_t = pam(o->beta1_t, o->beta1, 1.0f);
    o->beta2_t = pam(o->beta2_t, o->beta2, 1.0f);
}

opt_job nomul_adamw_job_pa(const nomul_adamw *o, size_t n, float *p, const float *g, float *m,
                           float *v)
{
    const float off = o->cfg.offset;
    /* step = lr · √(1 − β2^t) / (1 − β1^t), and lr·λ, all in PA arithmetic */
    float step = pam(o->lr, nomul_pa_div(nomul_pa_sqrt(1.0f - o->beta2_t), 1.0f - o->beta1_t),
                     off);
    float decay = pam(o->lr, o->weight_decay, off);
    /* the audit: the scalars here (PAMs, PAD, pa_sqrt) and the float additions
     * of adamw_chunk; the array calls count themselves */
    NOMUL_COUNT(PAM, 3);
    NOMUL_COUNT(PAD, 1);
    NOMUL_COUNT(PALOG2, 1);
    NOMUL_COUNT(PAEXP2, 1);
    NOMUL_COUNT(FADD, (long long)n *
                          (4 + 2 * (o->moments == NOMUL_ADAM_MOMENTS_DELTA) +
                           (o->weight_decay != 0.0f)));
    return (opt_job){adamw_chunk, {o, p, m, v, g, step, decay}, n};
}

/* SGD on c ≤ CHUNK elements from i0 */
static void sgd_chunk(const void *ctx, size_t i0, size_t c)
{
    const opt_args *a = ctx;
    const nomul_sgd *o = a->o;
    const float off = o->cfg.offset;
    float *pp = a->p + i0, *bb = a->m ? a->m + i0 : NULL;
    const float *gg = a->g + i0;
    float d[CHUNK], t[CHUNK];
    for (size_t i = 0; i < c; i++)
        d[i] = gg[i];
    if (o->weight_decay != 0.0f) { /* g += λ·p */
        pam_vs(c, pp, o->weight_decay, off, t);
        for (size_t i = 0; i < c; i++)
            d[i] += t[i];
    }
    if (o->momentum != 0.0f) { /* b = μ·b + g */
        pam_vs(c, bb, o->momentum, off, t);
        for (size_t i = 0; i < c; i++)
            bb[i] = t[i] + d[i];
        if (o->nesterov) {
            pam_vs(c, bb, o->momentum, off, t);
            for (size_t i = 0; i < c; i++)
                d[i] += t[i];
        } else {
            for (size_t i = 0; i < c; i++)
                d[i] = bb[i];
        }
    }
    pam_vs(c, d, o->lr, off, t); /* p -= lr·d */
    for (size_t i = 0; i < c; i++)
        pp[i] -= t[i];
}

opt_job nomul_sgd_job_pa(const nomul_sgd *o, size_t n, float *p, const float *g, float *buf)
{
    NOMUL_COUNT(FADD, (long long)n * 4); /* the audit: the float additions in sgd_chunk */
    return (opt_job){sgd_chunk, {o, p, buf, NULL, g, 0.0f, 0.0f}, n};
}

float nomul_clip_grad_norm_pa(size_t ntensors, float *const *grads, const size_t *sizes,
                              float max_norm)
{
    float t[CHUNK], sumsq = 0.0f;
    for (size_t k = 0; k < ntensors; k++)
        NOMUL_COUNT(FADD, sizes[k]);
    for (size_t k = 0; k < ntensors; k++)
        for (size_t i0 = 0; i0 < sizes[k]; i0 += CHUNK) {
            size_t c = sizes[k] - i0 < CHUNK ? sizes[k] - i0 : CHUNK;
            nomul_pa_mul_v(c, grads[k] + i0, grads[k] + i0, t);
            for (size_t i = 0; i < c; i++)
                sumsq += t[i];
        }
    float norm = nomul_pa_sqrt(sumsq);
    NOMUL_COUNT(PALOG2, 1); /* the audit: pa_sqrt, the PAD, the sums */
    NOMUL_COUNT(PAM, 1);
    NOMUL_COUNT(PAEXP2, 1);
    NOMUL_COUNT(PAD, 1);
    if (norm > max_norm) {
        float scale = nomul_pa_div(max_norm, norm + 1e-6f);
        for (size_t k = 0; k < ntensors; k++)
            nomul_pa_mul_vs(sizes[k], grads[k], scale, grads[k]);
    }
    return norm;
}
