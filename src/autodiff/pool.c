/*
 * pool.c — pooling on the autodiff graph: max pooling (no arithmetic: a
 * comparison picks each window's largest value, and the gradient goes back
 * to it) and global average pooling (a sum, then a product with 1/(h·w):
 * a PAM in PA mode, with its exact or approximate derivative).
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "../core/internal.h"
#include "graph_internal.h"
#include "nomul/arith.h"

/* forward: y = max over the window, saving argmax: the chosen input's index
 * in its (h, w) plane */
void ad_max_pool2d_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *y = nd->out;
    const long planes = (long)x->shape[0] * x->shape[1];
    const long hw = (long)x->shape[2] * x->shape[3], ohw = (long)y->shape[2] * y->shape[3];
    for (long p = 0; p < planes; p++)
        for (long o = 0; o < ohw; o++)
            x->grad[p * hw + nd->p.max_pool2d.argmax[p * ohw + o]] += y->grad[p * ohw + o];
}

nomul_tensor *nomul_max_pool2d(nomul_graph *g, nomul_tensor *x, int k, int stride)
{
    if (!x)
        return NULL;
    if (x->ndim != 4 || k < 1 || stride < 1 || (long)x->shape[2] * x->shape[3] > INT_MAX) {
        nomul_report(NOMUL_EINVAL, "nomul_max_pool2d: want x (n, c, h, w) with planes of at "
                     "most INT_MAX pixels, a kernel and a stride of at least 1");
        return NULL;
    }
    const int h = x->shape[2], w = x->shape[3];
    /* ceil mode: a last, partial window covers what a floor would drop */
    const int oh = h <= k ? 1 : (h - k + stride - 1) / stride + 1;
    const int ow = w <= k ? 1 : (w - k + stride - 1) / stride + 1;
    int ys[4] = {x->shape[0], x->shape[1], oh, ow};
    const int grad = ad_wants_grad(g, x, NULL, NULL);
    nomul_tensor *y = ad_output_zeroed(g, 4, ys, grad);
    int *arg = grad ? ad_arena_zalloc(g, (size_t)x->shape[0] * x->shape[1] * oh * ow * sizeof *arg)
                    : NULL;
    if (!y || (grad && !arg))
        return NULL;
    const long planes = (long)x->shape[0] * x->shape[1];
    for (long p = 0; p < planes; p++) {
        const float *xp = x->data + p * h * w;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                int best = i * stride * w + j * stride;
                for (int di = 0; di < k && i * stride + di < h; di++)
                    for (int dj = 0; dj < k && j * stride + dj < w; dj++) {
                        int at = (i * stride + di) * w + j * stride + dj;
                        if (xp[at] > xp[best] || isnan(xp[at]))
                            best = at;
                    }
                y->data[(p * oh + i) * ow + j] = xp[best];
                if (arg)
                    arg[(p * oh + i) * ow + j] = best;
            }
    }
    ad_record(g, AD_OP_MAX_POOL2D, NULL, &(ad_params){.max_pool2d = {arg}}, y, x, NULL, NULL);
    return y;
}

/* forward: y = s · Σ x over (h, w), s = 1/(h·w) (PAM(Σ, s) in PA mode),
 * saving the sums in PA mode */
void ad_avg_pool_global_backward(const node *nd)
{
    nomul_tensor *x = nd->in[0], *y = nd->out;
    const long planes = y->n, hw = x->n / y->n;
    const float s = nd->p.avg_pool_global.s;
    const int pa = nomul_op_is_pa(&nd->cfg);
    if (!pa)
        NOMUL_COUNT(FMUL, planes);
    else
        NOMUL_COUNT(PAM, planes);
    NOMUL_COUNT(FADD, x->n);
    for (long p = 0; p < planes; p++) {
        float ds, unused;
        if (!pa)
            ds = s * y->grad[p];
        else if (nd->cfg.approx_bwd)
            ds = nomul_pa_mul(y->grad[p], s);
        else /* ∂PAM(Σ, s)/∂Σ, at the forward's Σ */
            nomul_pa_mul_grad(nd->p.avg_pool_global.sums[p], s, y->grad[p], &ds, &unused);
        float *gp = x->grad + p * hw;
        for (long i = 0; i < hw; i++)
            gp[i] += ds;
    }
}

nomul_tensor *nomul_avg_pool_global(nomul_graph *g, const nomul_op_cfg *cfg, nomul_tensor *x)
{
    if (!x)
        return NULL;
    if (x->ndim != 4) {
        nomul_report(NOMUL_EINVAL, "nomul_avg_pool_global: want x (n, c, h, w)");
        return NULL;
    }
    const int pa = nomul_op_is_pa(cfg);
    const long hw = (long)x->shape[2] * x->shape[3];
    int ys[2] = {x->shape[0], x->shape[1]};
    const int grad = ad_wants_grad(g, x, NULL, NULL);
    nomul_tensor *y = ad_output_zeroed(g, 2, ys, grad);
    float *sums = grad && pa ? ad_arena_zalloc(g, (size_t)ys[0] * ys[1] * sizeof *sums) : NULL;
    if (!y || (grad && pa && !sums))
        return NULL;
    const float s = pa ? nomul_pa_div(1.0f, (float)hw) : 1.0f / (float)hw;
    NOMUL_COUNT(FADD, x->n);
    if (pa)
        NOMUL_COUNT(PAM, y->n);
    else
        NOMUL_COUNT(FMUL, y->n);
    for (long p = 0; p < y->n; p++) {
        const float *xp = x->data + p * hw;
        float sum = 0.0f;
        for (long i = 0; i < hw; i++)
            sum += xp[i];
        if (sums)
            sums[p] = sum;
        y->data[p] = pa ? nomul_pa_mul(sum, s) : s * sum;
    }
    ad_record(g, AD_OP_AVG_POOL_GLOBAL, cfg, &(ad_params){.avg_pool_global = {s, sums}}, y, x,
              NULL, NULL);
    return y;
}
