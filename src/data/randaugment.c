/*
 * randaugment.c — RandAugment as the DeiT recipe uses it (timm's
 * "rand-m9-mstd0.5-inc1"): per image, n operations drawn uniformly from the
 * increasing set below, each applied with probability 1/2 at a magnitude
 * drawn from N(m, mstd²) clipped to [0, 10]; and random erasing (timm's
 * RandomErasing, mode "pixel").
 *
 * The operations work on 8-bit images in height-width-channel order, as
 * PIL's do; geometric ones sample bilinearly with the fill value outside.
 * This is input preparation on the loader's thread, in float like PIL's;
 * the multiplication audit counts training steps, not data decoding.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "data_internal.h"
#include "nomul/data.h"

static const double PI = 3.14159265358979323846;

static const char *const op_names[] = {
    "AutoContrast", "Equalize",   "Invert",     "Rotate",     "Posterize",
    "Solarize",     "SolarizeAdd", "Color",     "Contrast",   "Brightness",
    "Sharpness",    "ShearX",     "ShearY",     "TranslateX", "TranslateY",
};
#define NOPS ((int)(sizeof op_names / sizeof op_names[0]))

static uint8_t clamp8(double v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v)); }

/* Blends img toward the degenerate image deg: img' = deg + f·(img − deg). */
static void blend(uint8_t *img, const uint8_t *deg, size_t n, double f)
{
    for (size_t i = 0; i < n; i++)
        img[i] = clamp8(deg[i] + f * ((double)img[i] - deg[i]));
}

/* Inverse-maps every output pixel through the affine (a b c; d e f), sampling
 * the input bilinearly; outside is fill. */
static void affine(uint8_t *img, uint8_t *tmp, int h, int w, int c, const double m[6],
                   uint8_t fill)
{
    memcpy(tmp, img, (size_t)h * w * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sx = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2] - 0.5;
            double sy = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5] - 0.5;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;
            for (int k = 0; k < c; k++) {
                double acc = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        int xx = x0 + dx, yy = y0 + dy;
                        double wgt = (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
                        double v = xx < 0 || yy < 0 || xx >= w || yy >= h
                                       ? fill
                                       : tmp[((size_t)yy * w + xx) * c + k];
                        acc += wgt * v;
                    }
                img[((size_t)y * w + x) * c + k] = clamp8(acc);
            }
        }
}

int nomul_augment_op(const char *name, uint8_t *img, int h, int w, int c, float level,
                     uint8_t fill)
{
    int op;
    for (op = 0; op < NOPS; op++)
        if (!strcmp(name, op_names[op]))
            break;
    if (op == NOPS || h < 1 || w < 1 || c < 1 || c > 4) {
        nomul_report(NOMUL_EINVAL, "nomul_augment_op: '%s' is not an operation (%s, ...) or "
                     "the image is empty", name ? name : "(null)", op_names[0]);
        return -1;
    }
    const size_t n = (size_t)h * w * c;
    uint8_t *tmp = malloc(n);
    if (!tmp) {
        nomul_report(NOMUL_ENOMEM, "nomul_augment_op: out of memory");
        return -1;
    }
    const double l = level; /* signed magnitude in [−1, 1] (level / 10, random sign) */
    switch (op) {
    case 0: /* AutoContrast: each channel's range stretched to 0..255 */
        for (int k = 0; k < c; k++) {
            int lo = 255, hi = 0;
            for (size_t i = (size_t)k; i < n; i += (size_t)c) {
                lo = img[i] < lo ? img[i] : lo;
                hi = img[i] > hi ? img[i] : hi;
            }
            if (hi > lo)
                for (size_t i = (size_t)k; i < n; i += (size_t)c)
                    img[i] = clamp8((img[i] - lo) * 255.0 / (hi - lo));
        }
        break;
    case 1: /* Equalize: PIL's ImageOps.equalize, per channel */
        for (int k = 0; k < c; k++) {
            long hist[256] = {0}, lut[256], total = 0, last = 0;
            for (size_t i = (size_t)k; i < n; i += (size_t)c)
                hist[img[i]]++;
            for (int v = 0; v < 256; v++)
                if (hist[v]) {
                    total += hist[v];
                    last = hist[v];
                }
            long step = (total - last) / 255;
            if (step == 0) /* one value, or nearly: PIL leaves the channel */
                continue;
            long acc = step / 2;
            for (int v = 0; v < 256; v++) {
                lut[v] = acc / step > 255 ? 255 : acc / step;
                acc += hist[v];
            }
            for (size_t i = (size_t)k; i < n; i += (size_t)c)
                img[i] = (uint8_t)lut[img[i]];
        }
        break;
    case 2: /* Invert */
        for (size_t i = 0; i < n; i++)
            img[i] = (uint8_t)(255 - img[i]);
        break;
    case 3: { /* Rotate by up to ±30° about the centre */
        double a = l * 30.0 * PI / 180.0, cs = cos(a), sn = sin(a), cx = w / 2.0, cy = h / 2.0;
        double m[6] = {cs, sn, cx - cs * cx - sn * cy, -sn, cs, cy + sn * cx - cs * cy};
        affine(img, tmp, h, w, c, m, fill);
        break;
    }
    case 4: { /* Posterize: keep 4 − ⌊4|l|⌋ high bits (at least 1) */
        int bits = 4 - (int)(fabs(l) * 4);
        bits = bits < 1 ? 1 : bits;
        uint8_t mask = (uint8_t)(0xFF << (8 - bits));
        for (size_t i = 0; i < n; i++)
            img[i] &= mask;
        break;
    }
    case 5: { /* Solarize: invert values at or above 256 − 256|l| */
        int t = 256 - (int)(fabs(l) * 256);
        for (size_t i = 0; i < n; i++)
            if (img[i] >= t)
                img[i] = (uint8_t)(255 - img[i]);
        break;
    }
    case 6: { /* SolarizeAdd: add 110|l| to values below 128 */
        int add = (int)(fabs(l) * 110);
        for (size_t i = 0; i < n; i++)
            if (img[i] < 128)
                img[i] = clamp8(img[i] + add);
        break;
    }
    case 7: /* Color: blend with the greyscale image by 1 + 0.9 l */
    case 8: /* Contrast: with the mean grey */
    case 9: /* Brightness: with black */
    case 10: { /* Sharpness: with the 3×3 smoothed image */
        const double f = 1.0 + 0.9 * l;
        if (op == 9)
            memset(tmp, 0, n);
        else if (op == 7 || op == 8) {
            double mean = 0;
            for (size_t p = 0; p < n / c; p++) {
                double grey = c >= 3 ? 0.299 * img[p * c] + 0.587 * img[p * c + 1] +
                                           0.114 * img[p * c + 2]
                                     : img[p * c];
                mean += grey;
                for (int k = 0; k < c; k++)
                    tmp[p * c + k] = clamp8(grey);
            }
            if (op == 8)
                memset(tmp, clamp8(mean / (double)(n / c)), n);
        } else { /* PIL's SMOOTH filter (1 1 1; 1 5 1; 1 1 1)/13, borders kept */
            memcpy(tmp, img, n);
            for (int y = 1; y < h - 1; y++)
                for (int x = 1; x < w - 1; x++)
                    for (int k = 0; k < c; k++) {
                        int s = 0;
                        for (int dy = -1; dy <= 1; dy++)
                            for (int dx = -1; dx <= 1; dx++)
                                s += (dx || dy ? 1 : 5) *
                                     img[((size_t)(y + dy) * w + (x + dx)) * c + k];
                        tmp[((size_t)y * w + x) * c + k] = clamp8(s / 13.0);
                    }
        }
        blend(img, tmp, n, f);
        break;
    }
    case 11: case 12: { /* Shear by up to ±0.3 */
        double s = 0.3 * l, m[6] = {1, 0, 0, 0, 1, 0};
        if (op == 11) {
            m[1] = s;
            m[2] = -s * h / 2.0;
        } else {
            m[3] = s;
            m[5] = -s * w / 2.0;
        }
        affine(img, tmp, h, w, c, m, fill);
        break;
    }
    default: { /* TranslateX/Y by up to ±45% of the size */
        double m[6] = {1, 0, 0, 0, 1, 0};
        if (op == 13)
            m[2] = 0.45 * l * w;
        else
            m[5] = 0.45 * l * h;
        affine(img, tmp, h, w, c, m, fill);
        break;
    }
    }
    free(tmp);
    return 0;
}

static double unit(uint64_t *r) { return (double)(nomul_splitmix64(r) >> 11) / 9007199254740992.0; }

static double normal(uint64_t *r)
{
    double u = unit(r);
    return sqrt(-2.0 * log(u > 0 ? u : 1e-300)) * cos(2 * PI * unit(r));
}

void randaugment_image(uint8_t *img, int h, int w, int c, const nomul_augment *a, uint8_t fill,
                       uint64_t *r)
{
    for (int k = 0; k < a->randaugment_n; k++) {
        int op = (int)(nomul_splitmix64(r) % (uint64_t)NOPS);
        double m = a->randaugment_m + (a->randaugment_mstd > 0 ? a->randaugment_mstd * normal(r) : 0);
        m = m < 0 ? 0 : m > 10 ? 10 : m;
        double sign = nomul_splitmix64(r) >> 63 ? -1.0 : 1.0;
        if (nomul_splitmix64(r) >> 63) /* each operation with probability 1/2 */
            nomul_augment_op(op_names[op], img, h, w, c, (float)(sign * m / 10.0), fill);
    }
}

void random_erase(float *x, int h, int w, int c, float prob, uint64_t *r)
{
    if (!(unit(r) < prob))
        return;
    const double area = (double)h * w;
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (0.02 + unit(r) * (1.0 / 3.0 - 0.02));
        double aspect = exp(log(0.3) + unit(r) * (log(1 / 0.3) - log(0.3)));
        int eh = (int)lround(sqrt(target * aspect)), ew = (int)lround(sqrt(target / aspect));
        if (eh < 1 || ew < 1 || eh >= h || ew >= w)
            continue;
        int top = (int)(nomul_splitmix64(r) % (uint64_t)(h - eh + 1));
        int left = (int)(nomul_splitmix64(r) % (uint64_t)(w - ew + 1));
        for (int k = 0; k < c; k++)
            for (int y = top; y < top + eh; y++)
                for (int xx = left; xx < left + ew; xx++)
                    x[((size_t)k * h + y) * w + xx] = (float)normal(r);
        return;
    }
}
