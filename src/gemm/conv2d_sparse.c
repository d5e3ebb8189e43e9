/*
 * conv2d_sparse.c — where a convolution's forward runs on lists of each
 * output pixel's nonzero inputs (conv2d_internal.h; the kernels:
 * csparse.inc). After a ReLU about half of a layer's inputs are zero;
 * the dense kernels compute their terms anyway (PAM masks them, float's
 * FMA multiplies by zero), the lists leave them out. Both give the same
 * sums, bit for bit, where:
 *  - PAM: no offset, no zero or subnormal weight (the dense kernels' masks
 *    for those are not in the lists' terms); the range is the direct path's,
 *    proven by its caller;
 *  - float: every weight finite (0 · ∞ is NaN: that term is not skippable),
 *    and every nonzero product exact on the grid of 2⁻¹⁴⁹ (exponent fields
 *    of x and w summing to 151 or more), so that no term can round a sum to
 *    −0.0, which a skipped +0.0 term would have turned into +0.0. The
 *    weights fix the least exponent field x may have (job.xmin); an image
 *    with a smaller one runs dense.
 */
#include "../core/internal.h"
#include "conv2d_internal.h"

int conv_fsparse_mode = CONV_FSPARSE_AUTO;
long conv_fsparse_runs;

/* whether x's first image is sparse enough for the lists at cog channels */
static int sparse_enough(const nomul_conv2d_desc *d, const float *x, long n, int cog, int K,
                         int pa)
{
    if (conv_fsparse_mode == CONV_FSPARSE_ALWAYS)
        return 1;
    if (!pa && !conv_skips_pay()) /* float's: not where FMAs run at full width */
        return 0;
    if (cog % 64 != 0 || K < FSPARSE_MIN_K || d->kh * d->kw == 1)
        return 0;
    long nz = conv_nonzeros(x, n, pa ? 0x7F800000u : 0x7FFFFFFFu);
    return nz * FSPARSE_DEN <= (long)FSPARSE_64 * n;
}

int conv_fsparse_plan(const nomul_conv2d_desc *d, const conv_geom *g, int pa, float offset,
                      const float *x, const float *weight, conv_fsparse *fs)
{
    memset(fs, 0, sizeof *fs);
    const pg_csparse_ukr *cs = &pg_cntx_active()->csparse;
    if (!(pa ? cs->pam : cs->fp) || conv_fsparse_mode == CONV_FSPARSE_NEVER ||
        g->cog % 16 != 0 || (g->cog > 64 && g->cog % 64 != 0) || (pa && offset != 1.0f) ||
        d->n < 1 || (long)(g->K + 1) * g->cog * 4 > (long)UINT32_MAX || /* 32-bit offsets */
        !sparse_enough(d, x, g->x_img, g->cog, g->K, pa))
        return 0;
    long rows = (long)g->K + 1;
    uint32_t *t = nomul_scratch_bytes(NOMUL_SCRATCH_CONV_FSTABLE,
                                      (size_t)d->groups * rows * g->cog * sizeof *t);
    if (!t)
        return -1;
    uint32_t emin = 255;
    for (int gr = 0; gr < d->groups; gr++) {
        uint32_t *tg = t + gr * rows * g->cog;
        for (int o = 0; o < g->cog; o++) {
            const float *wo = weight + ((long)gr * g->cog + o) * g->K;
            for (int k = 0; k < g->K; k++) {
                uint32_t b;
                memcpy(&b, wo + k, 4);
                uint32_t e = b >> 23 & 0xFFu;
                if (pa ? e == 0 : e == 0xFFu) /* PAM's zero; float's ∞ or NaN */
                    return 0;
                if (!pa && (b & 0x7FFFFFFFu) && e < emin)
                    emin = e;
                tg[(long)k * g->cog + o] = pa ? b - PG_ONE : b;
            }
        }
        memset(tg + (long)g->K * g->cog, 0, (size_t)g->cog * sizeof *tg);
    }
    int xmin = 151 - (int)emin;
    fs->xmin = pa ? 0u : (uint32_t)(xmin < 1 ? 1 : xmin);
    fs->nh = g->cog / 16;
    fs->pa = pa;
    fs->table = t;
    return 1;
}

int conv_fsparse_scratch(const conv_geom *g, float **part, uint32_t **lists)
{
    *part = nomul_scratch(NOMUL_SCRATCH_CONV_FSPART, (size_t)g->P * g->cog);
    *lists = *part ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_FSLISTS,
                                         (size_t)PG_CS_LISTS * sizeof **lists)
                   : NULL;
    return *lists != NULL;
}

int conv_fsparse_image(const conv_fsparse *fs, const conv_geom *g, int wp, int gr,
                       const float *buf, const long *off, float *part, uint32_t *lists,
                       float *yg)
{
    const pg_csparse_job job = {
        .buf = buf,
        .off = off,
        .K = g->K,
        .kc = PG_KC,
        .nwide = g->oh * wp,
        .wp = wp,
        .ow = g->ow,
        .P = g->P,
        .nh = fs->nh,
        .xmin = fs->xmin,
        .table = fs->table + (long)gr * (g->K + 1) * g->cog,
        .part = part,
        .lists = lists,
        .y = yg,
    };
    const pg_csparse_ukr *cs = &pg_cntx_active()->csparse;
    if (!(fs->pa ? cs->pam : cs->fp)(&job))
        return 0;
#pragma omp atomic
    conv_fsparse_runs++;
    return 1;
}
