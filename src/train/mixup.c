/*
 * mixup.c — the image task's batch mixing, as timm's Mixup in mode "batch":
 * mixup (a blend by λ ~ Beta(α, α)) and cutmix (a pasted box), each image
 * mixed with its partner in the batch reversed.
 */
#include <math.h>
#include <stdint.h>

#include "../core/internal.h"
#include "nomul/arith.h"
#include "nomul/data.h"
#include "trainer_internal.h"

/* Gamma(a, 1) (Marsaglia and Tsang; a < 1 through Gamma(a + 1)·U^(1/a)). */
static double gamma_sample(uint64_t *r, double a)
{
    if (a < 1.0)
        return gamma_sample(r, a + 1.0) * pow(nomul_uniform01(r), 1.0 / a);
    const double d = a - 1.0 / 3.0, k = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double z = nomul_normal01(r);
        double v = 1.0 + k * z;
        if (v <= 0)
            continue;
        v = v * v * v;
        if (log(nomul_uniform01(r)) < 0.5 * z * z + d - d * v + d * log(v))
            return d * v;
    }
}

/* Mixes the batch with itself reversed, as timm's Mixup (mode "batch"):
 * mixup blends images i and b−1−i by λ ~ Beta(α, α) (PAMs when the
 * functional family is piecewise affine), cutmix pastes a box of the partner
 * and sets λ to the area kept. The mixing draws (λ, the box) are sampled in
 * double from the step's stream, like initialisation; returns λ (1: not
 * mixed). */
double train_mix_batch(const nomul_train_config *c, float *x, int b, uint64_t *r)
{
    if ((c->mixup <= 0 && c->cutmix <= 0) || !(nomul_uniform01(r) < c->mix_prob))
        return 1.0;
    const int cut = c->cutmix > 0 && (c->mixup <= 0 || nomul_uniform01(r) < c->mix_switch_prob);
    double g1 = gamma_sample(r, cut ? c->cutmix : c->mixup);
    double g2 = gamma_sample(r, cut ? c->cutmix : c->mixup);
    double lam = g1 / (g1 + g2);
    const int side = c->image, ch = c->channels;
    const size_t plane = (size_t)side * side, img = plane * (size_t)ch;
    if (cut) {
        const double ratio = sqrt(1.0 - lam);
        const int ch_ = (int)(side * ratio), cw = (int)(side * ratio);
        const int cy = (int)(nomul_uniform01(r) * side), cx = (int)(nomul_uniform01(r) * side);
        const int y0 = cy - ch_ / 2 < 0 ? 0 : cy - ch_ / 2, y1 = cy + ch_ / 2 > side ? side : cy + ch_ / 2;
        const int x0 = cx - cw / 2 < 0 ? 0 : cx - cw / 2, x1 = cx + cw / 2 > side ? side : cx + cw / 2;
        for (int i = 0; i < b / 2; i++) { /* the box swaps between partners */
            float *a = x + (size_t)i * img, *p = x + (size_t)(b - 1 - i) * img;
            for (int k = 0; k < ch; k++)
                for (int y = y0; y < y1; y++)
                    for (int xx = x0; xx < x1; xx++) {
                        size_t at = (size_t)k * plane + (size_t)y * side + (size_t)xx;
                        float tmp = a[at];
                        a[at] = p[at];
                        p[at] = tmp;
                    }
        }
        lam = 1.0 - (double)(y1 - y0) * (x1 - x0) / (double)plane;
    } else {
        const int pa = nomul_op_is_pa(&c->ops.family[NOMUL_CFG_FUNCTIONAL]);
        const float l = (float)lam, m = 1.0f - l;
        for (int i = 0; i < b / 2; i++) {
            float *a = x + (size_t)i * img, *p = x + (size_t)(b - 1 - i) * img;
            for (size_t k = 0; k < img; k++) {
                float u = a[k], v = p[k];
                a[k] = pa ? nomul_pa_mul(l, u) + nomul_pa_mul(m, v) : l * u + m * v;
                p[k] = pa ? nomul_pa_mul(l, v) + nomul_pa_mul(m, u) : l * v + m * u;
            }
        }
        if (pa)
            NOMUL_COUNT(PAM, 2 * img * (size_t)(b / 2 * 2));
        else
            NOMUL_COUNT(FMUL, 2 * img * (size_t)(b / 2 * 2));
        NOMUL_COUNT(FADD, img * (size_t)(b / 2 * 2));
    }
    return lam;
}
