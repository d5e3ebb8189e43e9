/*
 * conv2d.c — 2-D convolution on the matrix engine (nomul/conv.h): argument
 * checks, and per image and group, im2col builds col (K × P,
 * K = c_in/g · kh · kw, P = oh · ow), and
 *   forward          y_g  (co × P) = W_g (co × K) · col
 *   backward data    dcol (K × P)  = W_gᵀ · dy_g, then col2im (summing)
 *   backward weight  dW_g (co × K) = Σ_images dy_g · colᵀ
 * in float (OpenBLAS through gemm_float.c) or piecewise affine arithmetic (plans of the PAM
 * engine, nomul_gemm and its exact gradients, whose products are exactly
 * the scalar PAMs of the direct convolution), as the configuration says.
 * Depthwise layers whose products stay normal take the direct paths of
 * conv2d_depthwise.c.
 */
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/arith.h"
#include "nomul/conv.h"
#include "nomul/gemm.h"
#include "conv2d_internal.h"

#include <omp.h>
#ifdef __SSE2__
#include <xmmintrin.h>
#endif

int nomul_conv2d_output_size(const nomul_conv2d_desc *d, int *oh, int *ow)
{
    if (!d) {
        nomul_report(NOMUL_EINVAL, "conv2d: descriptor is NULL");
        return 0;
    }
    if (d->n < 1 || d->c_in < 1 || d->h < 1 || d->w < 1 || d->c_out < 1 || d->kh < 1 ||
        d->kw < 1) {
        nomul_report(NOMUL_EINVAL, "conv2d: sizes must be positive (n %d, c_in %d, h %d, w %d, "
                     "c_out %d, kernel %dx%d)", d->n, d->c_in, d->h, d->w, d->c_out, d->kh, d->kw);
        return 0;
    }
    if (d->stride_h < 1 || d->stride_w < 1 || d->dil_h < 1 || d->dil_w < 1 || d->pad_h < 0 ||
        d->pad_w < 0) {
        nomul_report(NOMUL_EINVAL, "conv2d: stride (%d, %d) and dilation (%d, %d) must be >= 1, "
                     "padding (%d, %d) >= 0", d->stride_h, d->stride_w, d->dil_h, d->dil_w,
                     d->pad_h, d->pad_w);
        return 0;
    }
    if (d->groups < 1 || d->c_in % d->groups || d->c_out % d->groups) {
        nomul_report(NOMUL_EINVAL, "conv2d: groups = %d must divide c_in = %d and c_out = %d",
                     d->groups, d->c_in, d->c_out);
        return 0;
    }
    long eh = (long)d->h + 2L * d->pad_h - (long)d->dil_h * (d->kh - 1) - 1;
    long ew = (long)d->w + 2L * d->pad_w - (long)d->dil_w * (d->kw - 1) - 1;
    if (eh < 0 || ew < 0) {
        nomul_report(NOMUL_EINVAL, "conv2d: the %dx%d kernel (dilation %d, %d) does not fit the "
                     "padded %dx%d input", d->kh, d->kw, d->dil_h, d->dil_w, d->h + 2 * d->pad_h,
                     d->w + 2 * d->pad_w);
        return 0;
    }
    *oh = (int)(eh / d->stride_h + 1);
    *ow = (int)(ew / d->stride_w + 1);
    return 1;
}

static int geometry(const char *fn, const nomul_conv2d_desc *d, conv_geom *g, const void *p1,
                    const void *p2, const void *p3, const void *p4)
{
    if (!nomul_conv2d_output_size(d, &g->oh, &g->ow))
        return 0;
    if (!p1 || !p2 || !p3 || !p4) {
        nomul_report(NOMUL_EINVAL, "%s: an input or output pointer is NULL", fn);
        return 0;
    }
    g->P = g->oh * g->ow;
    /* rows 2 KiB or 4 KiB apart (32x32 images: 1024 pixels) would share L1
     * sets: the kernels read 8 to 32 rows of a column matrix together */
    g->ldcol = g->P % 128 == 0 ? g->P + 16 : g->P;
    g->cig = d->c_in / d->groups;
    g->cog = d->c_out / d->groups;
    g->K = g->cig * d->kh * d->kw;
    g->x_img = (long)d->c_in * d->h * d->w;
    g->y_img = (long)d->c_out * g->P;
    return 1;
}

/* col (K × P) from one group of one image: row (c, i, j), column (oy, ox). */
NO_LIBCALL_LOOPS void conv_im2col(const nomul_conv2d_desc *d, const conv_geom *g, const float *x,
                                  float *col)
{
    for (int c = 0; c < g->cig; c++)
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                float *row = col + ((long)(c * d->kh + i) * d->kw + j) * g->ldcol;
                const float *plane = x + (long)c * d->h * d->w;
                int base = j * d->dil_w - d->pad_w, ox0, ox1;
                conv_valid_cols(d->w, g->ow, d->stride_w, base, &ox0, &ox1);
                for (int oy = 0; oy < g->oh; oy++) {
                    int iy = oy * d->stride_h - d->pad_h + i * d->dil_h;
                    float *out = row + (long)oy * g->ow;
                    if (iy < 0 || iy >= d->h) {
                        zero_row(g->ow, out);
                        continue;
                    }
                    const float *in = plane + (long)iy * d->w; /* ix = ox·stride + base */
                    zero_row(ox0, out);
                    if (d->stride_w == 1)
                        copy_row(ox1 - ox0, in + ox0 + base, out + ox0);
                    else if (d->stride_w == 2)
                        copy_row_s2(ox1 - ox0, in + 2 * ox0 + base, out + ox0);
                    else
                        for (int ox = ox0; ox < ox1; ox++)
                            out[ox] = in[ox * d->stride_w + base];
                    zero_row(g->ow - ox1, out + ox1);
                }
            }
}

/* out[2j] += in[j] for j < n (stride 2), four at a time: in's values
 * interleaved with −0, which leaves every value it is added to as it was
 * (+0 included, where +0 would turn −0 into +0), so the odd places keep
 * their bits; the vectors touch out[8k .. 8k + 7] only where out[8k + 8] is
 * an even place still to come */
static inline void add_row_s2(int n, const float *restrict in, float *restrict out)
{
    const v4f nz = {-0.0f, -0.0f, -0.0f, -0.0f};
    int j = 0;
    for (; j + 4 < n; j += 4) {
        const v4f v = *(const v4f *)(in + j);
        *(v4f *)(out + 2 * j) += __builtin_shufflevector(v, nz, 0, 4, 1, 4);
        *(v4f *)(out + 2 * j + 4) += __builtin_shufflevector(v, nz, 2, 4, 3, 4);
    }
    for (; j < n; j++)
        out[2 * j] += in[j];
}

/* out[j] += in[j] for j < n (the arrays do not overlap), four at a time:
 * gcc -O2 leaves the plain loop scalar (it would need a scalar epilogue) */
static inline void add_row(int n, const float *restrict in, float *restrict out)
{
    int j = 0;
    for (; j + 4 <= n; j += 4)
        *(v4f *)(out + j) += *(const v4f *)(in + j);
    for (; j < n; j++)
        out[j] += in[j];
}

/* ---- the implicit feed (conv2d_internal.h) ---- */

/* dst (c planes of hp × wp, then slack floats) = src (c × h × w) with ph
 * rows and pw columns of zeros around each plane (hp = h + 2ph, wp = w +
 * 2pw); slack zeros after the last plane, which the wide rows read into.
 * The instruction set's own form where its context has one (AVX-512: a
 * row in one or two masked vectors, ukernel_avx512.c: the float ResNet20
 * step's share in it 7.1% → 5.0% by perf's samples, its convolutions'
 * forward 15.4-15.7 → 14.7-15.3 ms by --profile, four runs of each in
 * turn, Zen 5; what is left waits on x coming from memory); else these
 * plain rows (the other contexts' pad_planes). */
void conv_pad_planes(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                     int slack)
{
    pg_cntx_active()->pad_planes(c, h, w, ph, pw, src, dst, slack);
}

NO_LIBCALL_LOOPS void conv_pad_planes_plain(int c, int h, int w, int ph, int pw,
                                            const float *src, float *dst, int slack)
{
    int hp = h + 2 * ph, wp = w + 2 * pw;
    for (int k = 0; k < c; k++) {
        float *pl = dst + (long)k * hp * wp;
        /* the next plane asked for while this one is copied: the source
         * comes from memory, and its rows are too short for the hardware's
         * prefetchers (share of the float ResNet20 step 7.2-7.8% → 5.9-6.7%;
         * a row of the next plane with each row copied, or two planes on,
         * less) */
        if (k + 1 < c)
            nomul_prefetch(src + (long)(k + 1) * h * w, (long)h * w * 4);
        zero_row(ph * wp, pl);
        for (int y = 0; y < h; y++) {
            float *row = pl + (long)(ph + y) * wp;
            zero_row(pw, row);
            copy_row(w, src + ((long)k * h + y) * w, row + pw);
            zero_row(pw, row + pw + w);
        }
        zero_row(ph * wp, pl + (long)(ph + h) * wp);
    }
    zero_row(slack, dst + (long)c * hp * wp);
}

/* floor(a / 2) for any sign */
static inline int half_floor(int a) { return a >= 0 ? a / 2 : -((1 - a) / 2); }

/* dst = c planes (h × w) of src, each zero-padded (ph, pw) and split into
 * four planes hs × ws by parity (conv2d_internal.h's CONV_SPLIT), then
 * `slack` zeros. The instruction set's own form where its context has one
 * (AVX-512: sixteen values of a row from two masked loads and a permute,
 * ukernel_avx512.c); else conv_split_planes_plain's rows (the other
 * contexts' split_planes). */
void conv_split_planes(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                       int slack)
{
    pg_cntx_active()->split_planes(c, h, w, ph, pw, src, dst, slack);
}

NO_LIBCALL_LOOPS void conv_split_planes_plain(int c, int h, int w, int ph, int pw,
                                              const float *src, float *dst, int slack)
{
    const int hs = conv_split_side(h, ph), ws = conv_split_side(w, pw);
    for (int k = 0; k < c; k++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                float *pl = dst + (long)(4 * k + 2 * a + b) * hs * ws;
                /* plane columns v0 .. v1 − 1 hold x's columns 2v + b − pw */
                int v0 = half_floor(pw - b + 1), v1 = half_floor(w - 1 + pw - b) + 1;
                v0 = v0 < 0 ? 0 : v0 > ws ? ws : v0;
                v1 = v1 > ws ? ws : v1 < v0 ? v0 : v1;
                for (int u = 0; u < hs; u++) {
                    float *row = pl + (long)u * ws;
                    const int y = 2 * u + a - ph;
                    if (y < 0 || y >= h) {
                        zero_row(ws, row);
                        continue;
                    }
                    zero_row(v0, row);
                    copy_row_s2(v1 - v0, src + ((long)k * h + y) * w + 2 * v0 + b - pw,
                                row + v0);
                    zero_row(ws - v1, row + v1);
                }
            }
    zero_row(slack, dst + 4L * c * hs * ws);
}

int conv_feed_width(const nomul_conv2d_desc *d, int implicit)
{
    return implicit == CONV_SPLIT ? conv_split_side(d->w, d->pad_w) : d->w + 2 * d->pad_w;
}

long conv_feed_floats(const nomul_conv2d_desc *d, int implicit, int c)
{
    return implicit == CONV_SPLIT
               ? 4L * c * conv_split_side(d->h, d->pad_h) * conv_split_side(d->w, d->pad_w)
               : (long)c * (d->h + 2 * d->pad_h) * (d->w + 2 * d->pad_w);
}

void conv_feed_fill(const nomul_conv2d_desc *d, int implicit, int c, const float *x, float *buf,
                    int slack)
{
    if (implicit == CONV_SPLIT)
        conv_split_planes(c, d->h, d->w, d->pad_h, d->pad_w, x, buf, slack);
    else
        conv_pad_planes(c, d->h, d->w, d->pad_h, d->pad_w, x, buf, slack);
}

/* dst (c × rows × ws) = src's rows (c × rows × w) widened with ws − w zeros */
static NO_LIBCALL_LOOPS void conv_widen_rows(int c, int rows, int w, int ws, const float *src,
                                            float *dst)
{
    for (long r = 0; r < (long)c * rows; r++) {
        copy_row(w, src + r * w, dst + r * ws);
        zero_row(ws - w, dst + r * ws + w);
    }
}

/* off[(c, i, j)] = c·hp·wp + i·dh·wp + j·dw: where row (c, i, j) of the
 * implicit column matrix starts in the padded planes */
void conv_fill_taps(int c, int kh, int kw, int hp, int wp, int dh, int dw, long *off)
{
    for (int k = 0; k < c; k++)
        for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++)
                off[((long)k * kh + i) * kw + j] =
                    (long)k * hp * wp + (long)i * dh * wp + (long)j * dw;
}

long *conv_tap_offsets(int c, int kh, int kw, int hp, int wp, int dh, int dw)
{
    long *off = nomul_scratch_bytes(NOMUL_SCRATCH_CONV_OFFS, (size_t)c * kh * kw * sizeof *off);
    if (off)
        conv_fill_taps(c, kh, kw, hp, wp, dh, dw, off);
    return off;
}

void conv_col_offsets(const nomul_conv2d_desc *d, const conv_geom *g, int implicit, long *off)
{
    if (implicit == CONV_SPLIT) {
        const long hs = conv_split_side(d->h, d->pad_h), ws = conv_split_side(d->w, d->pad_w);
        for (int k = 0; k < g->cig; k++)
            for (int i = 0; i < d->kh; i++)
                for (int j = 0; j < d->kw; j++)
                    off[((long)k * d->kh + i) * d->kw + j] =
                        (4L * k + 2 * (i % 2) + j % 2) * hs * ws + (long)(i / 2) * ws + j / 2;
    } else if (implicit)
        conv_fill_taps(g->cig, d->kh, d->kw, d->h + 2 * d->pad_h, d->w + 2 * d->pad_w, d->dil_h,
                       d->dil_w, off);
    else
        for (int k = 0; k < g->K; k++)
            off[k] = (long)k * g->ldcol;
}

/* The instruction set's own form where its context has one (AVX-512: 16 ×
 * 16 blocks, ukernel_avx512.c); else in 4×4 blocks on SSE (x86-64's
 * baseline: four loads, the shuffles of _MM_TRANSPOSE4_PS, four stores per
 * 16 values, against 16 scalar loads and stores), each column of t written
 * whole before the next; the edges one value at a time. Moves only: the
 * same values. */
void conv_transpose(int rows, int cols, const float *m, long ldm, float *t)
{
    const pg_cntx *cx = pg_cntx_active();
    if (cx->transpose) {
        cx->transpose(rows, cols, m, ldm, t);
        return;
    }
    int j = 0;
#ifdef __SSE2__
    for (; j + 4 <= cols; j += 4) {
        int i = 0;
        for (; i + 4 <= rows; i += 4) {
            const float *a = m + (long)i * ldm + j;
            __m128 r0 = _mm_loadu_ps(a), r1 = _mm_loadu_ps(a + ldm);
            __m128 r2 = _mm_loadu_ps(a + 2 * ldm), r3 = _mm_loadu_ps(a + 3 * ldm);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            float *o = t + (long)j * rows + i;
            _mm_storeu_ps(o, r0);
            _mm_storeu_ps(o + rows, r1);
            _mm_storeu_ps(o + 2L * rows, r2);
            _mm_storeu_ps(o + 3L * rows, r3);
        }
        for (; i < rows; i++)
            for (int q = 0; q < 4; q++)
                t[(long)(j + q) * rows + i] = m[(long)i * ldm + j + q];
    }
#endif
    for (; j < cols; j++)
        for (int i = 0; i < rows; i++)
            t[(long)j * rows + i] = m[(long)i * ldm + j];
}

/* x += col2im(col): the adjoint of im2col. */
void conv_col2im_add(const nomul_conv2d_desc *d, const conv_geom *g, const float *col, float *x)
{
    NOMUL_COUNT(FADD, (long long)g->K * g->P);
    /* stride 2 across: the instruction set's rows where it has them, each
     * (c, i, j)'s rows that land inside x in one call */
    const pg_cntx *cx = pg_cntx_active();
    const int rows_s2 = d->stride_w == 2 && cx->add_rows_s2;
    for (int c = 0; c < g->cig; c++)
        for (int i = 0; i < d->kh; i++)
            for (int j = 0; j < d->kw; j++) {
                const float *row = col + ((long)(c * d->kh + i) * d->kw + j) * g->ldcol;
                float *plane = x + (long)c * d->h * d->w;
                int base = j * d->dil_w - d->pad_w, ox0, ox1;
                conv_valid_cols(d->w, g->ow, d->stride_w, base, &ox0, &ox1);
                if (rows_s2) {
                    /* the rows oy0 .. oy1 − 1 whose iy = oy·stride_h + rbase is in x */
                    const int rbase = i * d->dil_h - d->pad_h;
                    int oy0, oy1;
                    conv_valid_cols(d->h, g->oh, d->stride_h, rbase, &oy0, &oy1);
                    if (oy0 < oy1 && ox0 < ox1)
                        cx->add_rows_s2(oy1 - oy0, ox1 - ox0, row + (long)oy0 * g->ow + ox0,
                                        g->ow,
                                        plane + (long)(oy0 * d->stride_h + rbase) * d->w +
                                            2 * ox0 + base,
                                        (long)d->stride_h * d->w);
                    continue;
                }
                for (int oy = 0; oy < g->oh; oy++) {
                    int iy = oy * d->stride_h - d->pad_h + i * d->dil_h;
                    if (iy < 0 || iy >= d->h)
                        continue;
                    const float *in = row + (long)oy * g->ow;
                    float *out = plane + (long)iy * d->w; /* ix = ox·stride + base */
                    if (d->stride_w == 1)
                        add_row(ox1 - ox0, in + ox0, out + ox0 + base);
                    else if (d->stride_w == 2)
                        add_row_s2(ox1 - ox0, in + ox0, out + 2 * ox0 + base);
                    else
                        for (int ox = ox0; ox < ox1; ox++)
                            out[ox * d->stride_w + base] += in[ox];
                }
            }
}

/* The column matrices are kept per thread and reused (core/internal.h's
 * scratch slots), so a training step's convolutions allocate nothing once
 * warm. */
static float *cached_col(const char *fn, const conv_geom *g, int slot)
{
    float *p = nomul_scratch(slot, (size_t)g->K * g->ldcol + 32);
    if (!p)
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for a %d x %d column matrix", fn, g->K, g->P);
    return p;
}


static int check_cfg(const char *fn, const nomul_op_cfg *cfg)
{
    if (!cfg) {
        nomul_report(NOMUL_EINVAL, "%s: the operation configuration (cfg) is NULL", fn);
        return 0;
    }
    return 1;
}

/* ---- which feed, and the flipped kernel (conv2d_internal.h) ---- */

int conv_data_implicit(const nomul_conv2d_desc *d)
{
    int qh = d->dil_h * (d->kh - 1) - d->pad_h, qw = d->dil_w * (d->kw - 1) - d->pad_w;
    return d->stride_h == 1 && d->stride_w == 1 && qh >= 0 && qw >= 0 &&
           conv_wide_pays(d->w, d->w + d->dil_w * (d->kw - 1));
}

float *conv_flip_weights(const nomul_conv2d_desc *d, const conv_geom *g, const float *weight)
{
    int K2 = g->cog * d->kh * d->kw;
    float *wf = nomul_scratch(NOMUL_SCRATCH_CONV_WFLIP, (size_t)d->c_in * K2);
    if (wf)
        for (int gr = 0; gr < d->groups; gr++)
            for (int c = 0; c < g->cig; c++)
                for (int co = 0; co < g->cog; co++)
                    for (int i = 0; i < d->kh; i++)
                        for (int j = 0; j < d->kw; j++)
                            wf[((long)gr * g->cig + c) * K2 + ((long)co * d->kh + i) * d->kw + j] =
                                weight[((long)gr * g->cog + co) * g->K +
                                       ((long)c * d->kh + d->kh - 1 - i) * d->kw + d->kw - 1 - j];
    return wf;
}

int conv_forward_implicit(const nomul_conv2d_desc *d, const conv_geom *g)
{
    if (d->stride_h == 1 && d->stride_w == 1)
        return conv_wide_pays(g->ow, d->w + 2 * d->pad_w) ? CONV_PADDED : 0;
    return d->stride_h == 2 && d->stride_w == 2 && d->dil_h == 1 && d->dil_w == 1 &&
                   d->kh * d->kw > 1 && conv_wide_pays(g->ow, conv_feed_width(d, CONV_SPLIT))
               ? CONV_SPLIT
               : 0;
}

int conv_dw_feed(const nomul_conv2d_desc *d, const conv_geom *g)
{
    if (d->stride_h == 1 && d->stride_w == 1)
        return CONV_PADDED;
    return conv_forward_implicit(d, g) == CONV_SPLIT ? CONV_SPLIT : 0;
}

/* Images run in parallel, each on one thread (the per-image products are
 * small), when there are enough of them; else one after the other with
 * products split over the threads (float: gemm_float.c). The team keeps its
 * size when the images are fewer than the threads: a smaller team would end
 * OpenMP threads, and their scratch buffers, for the next call to remake.
 * The images are dealt one at a time (schedule(dynamic, 1)), not in equal
 * shares: their costs differ where lists skip x's zeros (each image's own
 * density), and so can the cores' speeds (this virtual machine's two ran
 * the same one-thread pass in 2.4 and 3.8 ms, pinned, minutes apart), where
 * a static share leaves the faster thread waiting at the loop's end. Each
 * image writes its own outputs: the same bits either way. */
int conv_image_threads(const nomul_conv2d_desc *d)
{
    if (omp_in_parallel() || d->n < 2)
        return 1;
    return nomul_num_threads();
}

/* The weights of each group packed once for all images (PAM mode only):
 * forward W_g, approximate backward data W_gᵀ, exact backward data grad B
 * of W_g · col. NULL (after a report) when out of memory, or in float mode. */
typedef enum { PLAN_FORWARD, PLAN_DATA_APPROX, PLAN_DATA_EXACT } plan_kind;

/* The per-group plan array, per thread like the plans themselves (each
 * group's plan is this thread's keyed scratch buffer gr): one set is alive
 * at a time, from a call's making its plans to its return. */
static pg_plan **plans_alloc(int groups)
{
    return nomul_scratch_bytes(NOMUL_SCRATCH_CONV_PLANS, (size_t)groups * sizeof(pg_plan *));
}

static pg_plan **make_plans(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                            int pa, plan_kind kind, const float *weight, float offset)
{
    if (!pa)
        return NULL;
    pg_plan **plans = plans_alloc(d->groups);
    for (int gr = 0; plans && gr < d->groups; gr++) {
        const float *wg = weight + (long)gr * g->cog * g->K;
        plans[gr] = kind == PLAN_FORWARD ? pg_plan_forward(gr, CblasNoTrans, g->cog, g->K, wg, g->K, offset)
                    : kind == PLAN_DATA_APPROX ? pg_plan_forward(gr, CblasTrans, g->K, g->cog, wg, g->K, offset)
                                               : pg_plan_grad_b(gr, g->cog, g->K, wg, g->K, offset);
        if (!plans[gr])
            plans = NULL;
    }
    if (!plans)
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for packed weights", fn);
    return plans;
}

/* x's exponent statistics (by the vector kernel, in one chunk per thread) */
static pg_stats stats_of(const float *x, long n)
{
    enum { CHUNKS = 64 };
    pg_stats part[CHUNKS];
    const pg_dw_rows *k = &pg_cntx_active()->dw_rows;
    int nt = omp_in_parallel() ? 1 : nomul_num_threads();
    int chunks = n < 65536 ? 1 : nt < CHUNKS ? nt : CHUNKS;
    long per = (n + chunks - 1) / chunks;
#pragma omp parallel for num_threads(nt) if (chunks > 1) schedule(static)
    for (int c = 0; c < chunks; c++) {
        long lo = (long)c * per, hi = lo + per < n ? lo + per : n;
        k->stats(x + lo, hi > lo ? hi - lo : 0, &part[c]);
    }
    pg_stats st = {127, -127, 0, 0};
    for (int c = 0; c < chunks; c++) {
        if (part[c].emax >= part[c].emin) { /* chunks of zeros only have none */
            st.emin = part[c].emin < st.emin ? part[c].emin : st.emin;
            st.emax = part[c].emax > st.emax ? part[c].emax : st.emax;
        }
        st.zero |= part[c].zero;
        st.special |= part[c].special;
    }
    if (st.emax < st.emin) { /* as the scalar loop left them: 255 and 0, biased */
        st.emin = 128;
        st.emax = -127;
    }
    return st;
}

/* The statistics of one nomul_conv2d_backward: its data and weight
 * gradients check the same x, dy and weights (unchanged between them), each
 * classified once; x's may come from the forward (nomul_conv2d_forward_keep,
 * which holds its own call's). Per thread; empty outside those calls. */
static __thread struct {
    int on, n;
    struct {
        const float *p;
        long len;
        pg_stats st;
    } e[4];
} held;

/* held on for one call, starting with x's statistics from keep if known */
static void held_open(const float *x, long n, const nomul_conv_xstats *keep)
{
    held.on = 1;
    held.n = 0;
    if (keep && keep->known) {
        held.e[0].p = x;
        held.e[0].len = n;
        held.e[0].st = (pg_stats){keep->emin, keep->emax, keep->zero, keep->special};
        held.n = 1;
    }
}

static void held_close(void)
{
    held.on = 0;
    held.n = 0;
}

static long x_len(const nomul_conv2d_desc *d)
{
    return (long)d->n * d->c_in * d->h * d->w;
}

void nomul_conv2d_forward_keep(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                               const float *x, const float *weight, const float *bias, float *y,
                               nomul_conv_xstats *keep)
{
    keep->known = 0;
    held_open(NULL, 0, NULL);
    nomul_conv2d_forward(d, cfg, x, weight, bias, y);
    const long n = x_len(d);
    for (int i = 0; i < held.n; i++)
        if (held.e[i].p == x && held.e[i].len == n) {
            const pg_stats st = held.e[i].st;
            *keep = (nomul_conv_xstats){st.emin, st.emax, st.zero, st.special, 1};
            break;
        }
    held_close();
}

/* Exponent statistics of all of x, plus a zero if padding adds any: they
 * bound every value im2col writes, so x is classified once per call (by the
 * vector kernel, in one chunk per thread), or once per nomul_conv2d_backward. */
pg_stats conv_input_stats(const nomul_conv2d_desc *d, const float *x, long n)
{
    pg_stats st = conv_value_stats(x, n);
    st.zero |= d->pad_h > 0 || d->pad_w > 0;
    return st;
}

pg_stats conv_value_stats(const float *x, long n)
{
    pg_stats st;
    int i = 0;
    while (i < held.n && !(held.e[i].p == x && held.e[i].len == n))
        i++;
    if (held.on && i < held.n) {
        st = held.e[i].st;
    } else {
        st = stats_of(x, n);
        if (held.on && held.n < 4) {
            held.e[held.n].p = x;
            held.e[held.n].len = n;
            held.e[held.n++].st = st;
        }
    }
    return st;
}

/* PAM forward where every product is known to stay normal (AVX-512, AVX2): the
 * im2col matrix is read in place by the kernels, unpacked. Packing costs a
 * pass over im2col's output per group and image, shared by only c_out/groups
 * rows; reading in place costs an in-kernel zero test per value, so it pays
 * for groups of up to 128 output channels (measured with bench conv), and
 * not for one or two (the elementwise path serves those). Returns NULL when
 * this path does not apply (another ISA, group size, values that could leave
 * the range), leaving the general path to run. */
static pg_plan **direct_plans(const nomul_conv2d_desc *d, const conv_geom *g, const float *x,
                              const float *weight, float offset)
{
    if (!pg_cntx_active()->fwd_direct || g->cog <= 2 || g->cog > 128)
        return NULL;
    pg_stats xs = conv_input_stats(d, x, d->n * g->x_img);
    if (xs.special)
        return NULL;
    pg_plan **plans = plans_alloc(d->groups);
    int ok = plans != NULL;
    for (int gr = 0; ok && gr < d->groups; gr++) {
        plans[gr] = pg_plan_forward_direct(gr, g->cog, g->K, weight + (long)gr * g->cog * g->K,
                                           g->K, offset);
        ok = plans[gr] && pg_plan_direct_safe(plans[gr], &xs);
    }
    return ok ? plans : NULL;
}

/* How the direct PAM forward reads its Y: row k of the column matrix at
 * buf + off[k], buf being im2col's output (off[k] = k·ldcol) or, implicit,
 * the zero-padded image (conv2d_internal.h), the output then computed in
 * rows wp wide, each tile's kept columns written to y (pg_narrow). */
typedef struct {
    int implicit, wp, slack, offset; /* offset: the PAMs have one (two adds each) */
    const long *off;
    const conv_fsparse *fs; /* implicit: the lists of x's nonzeros, where they run */
} direct_feed;

void conv_add_bias(const nomul_conv2d_desc *d, const conv_geom *g, const float *bias, float *yb)
{
    if (!bias)
        return;
    NOMUL_COUNT(FADD, g->y_img);
    for (int c = 0; c < d->c_out; c++)
        for (int p = 0; p < g->P; p++)
            yb[(long)c * g->P + p] += bias[c];
}

/* forward for image b: y_b = conv(x_b, W) + bias */
static void forward_image(const nomul_conv2d_desc *d, const conv_geom *g, int pa,
                          pg_plan *const *plans, const direct_feed *feed, const float *x,
                          const float *weight, const float *bias, float *y, int b, float *col,
                          float *part, uint32_t *lists)
{
    for (int gr = 0; gr < d->groups; gr++) {
        const float *xg = x + b * g->x_img + (long)gr * g->cig * d->h * d->w;
        const float *wg = weight + (long)gr * g->cog * g->K;
        float *yg = y + b * g->y_img + (long)gr * g->cog * g->P;
        if (feed) {
            NOMUL_COUNT(PAM, (long long)g->cog * g->P * g->K * (feed->offset ? 2 : 1));
            NOMUL_COUNT(FADD, (long long)g->cog * g->P * g->K);
        }
        if (feed && feed->implicit) {
            int nwide = g->oh * feed->wp;
            conv_feed_fill(d, feed->implicit, g->cig, xg, col, feed->slack);
            if (!feed->fs ||
                !conv_fsparse_image(feed->fs, g, feed->wp, gr, col, feed->off, part, lists, yg))
                pg_plan_run_forward_direct(plans[gr], nwide, col, feed->off, 0.0f, yg, g->P,
                                           (pg_narrow){.wp = feed->wp, .ow = g->ow});
            continue;
        }
        conv_im2col(d, g, xg, col);
        if (feed) {
            pg_plan_run_forward_direct(plans[gr], g->P, col, feed->off, 0.0f, yg, g->P,
                                       (pg_narrow){.wp = 0});
            continue;
        }
        if (!pa) {
            NOMUL_COUNT(FMUL, (long long)g->cog * g->P * g->K);
            NOMUL_COUNT(FADD, (long long)g->cog * g->P * g->K);
            nomul_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cog, g->P, g->K, wg, g->K,
                        col, g->ldcol, 0.0f, yg, g->P);
        }
        else
            pg_plan_run_forward(plans[gr], g->P, col, g->ldcol, 0.0f, yg, g->P);
    }
    conv_add_bias(d, g, bias, y + b * g->y_img);
}

void nomul_conv2d_forward(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg, const float *x,
                          const float *weight, const float *bias, float *y)
{
    const char *fn = "nomul_conv2d_forward";
    conv_geom g;
    if (!check_cfg(fn, cfg) || !geometry(fn, d, &g, x, weight, y, y))
        return;
    int pa = nomul_op_is_pa(cfg);
    float offset = cfg->offset;
    if (pa && conv_depthwise_forward(d, &g, offset, x, weight, bias, y))
        return;
    if (pa && offset == 1.0f && conv_clane_forward(fn, d, &g, 1, weight, bias, x, y))
        return;
    if (!pa && conv_float_applies(&g)) {
        conv_float_forward(fn, d, &g, x, weight, bias, y);
        return;
    }
    pg_plan **plans = pa ? direct_plans(d, &g, x, weight, offset) : NULL;
    const int implicit_of = conv_forward_implicit(d, &g);
    direct_feed feed = {implicit_of, conv_feed_width(d, implicit_of), conv_wide_slack(d),
                        offset != 1.0f, NULL, NULL};
    conv_fsparse fs;
    if (plans) {
        long *off = nomul_scratch_bytes(NOMUL_SCRATCH_CONV_OFFS, (size_t)g.K * sizeof *off);
        if (!off) {
            nomul_report(NOMUL_ENOMEM, "%s: out of memory", fn);
            return;
        }
        conv_col_offsets(d, &g, feed.implicit, off);
        feed.off = off;
        int sp = feed.implicit == CONV_PADDED ? conv_fsparse_plan(d, &g, 1, offset, x, weight, &fs)
                                              : 0;
        if (sp < 0)
            return; /* reported */
        feed.fs = sp ? &fs : NULL;
    } else
        plans = make_plans(fn, d, &g, pa, PLAN_FORWARD, weight, offset);
    if (pa && !plans)
        return;
    /* the direct path, on the padded or split image */
    int implicit = feed.off && feed.implicit;
    int nt = conv_image_threads(d);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *col = implicit ? nomul_scratch(NOMUL_SCRATCH_CONV_COL,
                                              (size_t)conv_feed_floats(d, feed.implicit, g.cig) +
                                                  feed.slack)
                              : cached_col(fn, &g, NOMUL_SCRATCH_CONV_COL);
        if (!col)
            nomul_report(NOMUL_ENOMEM, "%s: out of memory for a padded image", fn);
        float *part = NULL;
        uint32_t *lists = NULL;
        int ready = col && (!feed.fs || conv_fsparse_scratch(&g, &part, &lists));
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->n; b++)
            if (ready)
                forward_image(d, &g, pa, plans, feed.off ? &feed : NULL, x, weight, bias, y, b,
                              col, part, lists);
    }
}

/* The audit of a gradient's terms: an exponent shift each (exact), or a
 * PAM (two with an offset: approximate); a float add each. */
static void count_terms(int exact, float offset, long long terms)
{
    if (exact)
        NOMUL_COUNT(SHIFT, terms);
    else
        NOMUL_COUNT(PAM, terms * (offset != 1.0f ? 2 : 1));
    NOMUL_COUNT(FADD, terms);
}

/* The PAM data gradient of a stride-1 layer in implicit form, where the
 * direct PAM kernels apply (AVX-512 or AVX2, every term normal; 3 (exact:
 * the gradient tile's rows) to 128 input channels per group): the
 * convolution of dy padded by dil·(k − 1) − pad
 * with the flipped kernel, read in place as the forward reads x
 * (conv2d_internal.h), its sums one chain over (co, i, j) in blocks of KC.
 * Approximate: dx = Σ PAM(W, dy). Exact: dx = Σ ∂PAM(W, x)/∂x · dy, where
 * every term of one output has that output's own x as its T: x is laid out
 * in the same wide rows as the output, and each 6×32 tile keeps its T in
 * registers over the whole reduction. Returns 0, having written nothing,
 * when it does not apply; 1 when done or after a report. */
static int data_implicit(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                         int exact, float offset, const float *x, const float *weight,
                         const float *dy, float *dx)
{
    /* exact: from one full 6-row panel (3 to 5 input channels, VGG's first
     * layer: im2col's form is faster, measured with bench conv) */
    const pg_cntx *cx = pg_cntx_active();
    if (!(exact ? cx->grad_b_direct != NULL : cx->fwd_direct != NULL) ||
        g->cig < (exact ? cx->grad.mr : 3) || g->cig > 128 || !conv_data_implicit(d))
        return 0;
    int qh = d->dil_h * (d->kh - 1) - d->pad_h, qw = d->dil_w * (d->kw - 1) - d->pad_w;
    int hq = g->oh + 2 * qh, wq = g->ow + 2 * qw, slack = conv_wide_slack(d);
    int K2 = g->cog * d->kh * d->kw;
    pg_stats ys = conv_input_stats(d, dy, d->n * g->y_img);
    ys.zero |= qh > 0 || qw > 0;
    if (ys.special || (exact && conv_input_stats(d, x, d->n * g->x_img).special))
        return 0;
    const float *wf = conv_flip_weights(d, g, weight);
    pg_plan **plans = wf ? plans_alloc(d->groups) : NULL;
    int ok = 1;
    for (int gr = 0; plans && ok && gr < d->groups; gr++) {
        const float *wg = wf + (long)gr * g->cig * K2;
        plans[gr] = exact ? pg_plan_grad_t_direct(gr, g->cig, K2, wg, K2, offset)
                          : pg_plan_forward_direct(gr, g->cig, K2, wg, K2, offset);
        if (!plans[gr])
            plans = NULL;
        else
            ok = pg_plan_direct_safe(plans[gr], &ys);
    }
    if (!plans) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for packed weights", fn);
        return 1;
    }
    if (!ok)
        return 0;
    const long *off = conv_tap_offsets(g->cog, d->kh, d->kw, hq, wq, d->dil_h, d->dil_w);
    if (!off) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory", fn);
        return 1;
    }
    int nwide = d->h * wq, nt = conv_image_threads(d);
    /* exact: x in the output's wide rows (the columns past w, whose outputs
     * are dropped, hold zeros) */
    size_t nt_x = exact ? (size_t)g->cig * nwide : 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *buf = nomul_scratch(NOMUL_SCRATCH_CONV_DCOL, (size_t)g->cog * hq * wq + slack);
        float *xw = NULL;
        if (!buf || (exact && !(xw = nomul_scratch(NOMUL_SCRATCH_CONV_XWIDE, nt_x)))) {
            nomul_report(NOMUL_ENOMEM, "%s: out of memory for a padded gradient", fn);
            buf = NULL;
        }
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->n; b++)
            for (int gr = 0; buf && gr < d->groups; gr++) {
                /* the terms im2col's form counts (K · P per output channel) */
                count_terms(exact, offset, (long long)g->cog * g->P * g->K);
                long xoff = b * g->x_img + (long)gr * g->cig * d->h * d->w;
                conv_pad_planes(g->cog, g->oh, g->ow, qh, qw,
                                dy + b * g->y_img + (long)gr * g->cog * g->P, buf, slack);
                const pg_narrow nw = {.wp = wq, .ow = d->w};
                if (exact) {
                    conv_widen_rows(g->cig, d->h, d->w, wq, x + xoff, xw);
                    pg_plan_run_grad_t_direct(plans[gr], nwide, xw, nwide, buf, off, 0.0f,
                                              dx + xoff, d->h * d->w, nw);
                } else
                    pg_plan_run_forward_direct(plans[gr], nwide, buf, off, 0.0f, dx + xoff,
                                               d->h * d->w, nw);
            }
    }
    return 1;
}

/* The PAM data gradient at live inputs only (pg_dxlive_job), where it
 * applies (conv_dxlive_applies; no offset): every term normal (the dense
 * direct kernels' range check on the weights' and dy's exponents), nonzero
 * (no zero or subnormal in dy or the weights), x without ∞ or NaN (exact);
 * the approximate form only where conv_skips_pay (in conv_dxlive_applies:
 * its two instructions a term weigh little beside each input's sum across
 * lanes where 512-bit adds run whole: on Zen 5 the dense kernel wins,
 * bench conv --approx --live --zeros 0.5 --batch 64 --threads 1, dX ms
 * live / dense: 32ch 14x14 1.78 / 1.53, 64ch 7x7 2.26 / 1.89). Returns 0,
 * having written nothing, where it does not apply; else 1 (done, or after
 * a report). */
static int data_live(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g, int exact,
                     float offset, const float *x, const float *weight, const float *dy,
                     float *dx)
{
    const pg_dxlive_fn lfn = pg_cntx_active()->dxlive.pam;
    if (offset != 1.0f || !conv_dxlive_applies(d, g, lfn, exact, x))
        return 0;
    pg_stats ys = conv_value_stats(dy, d->n * g->y_img);
    pg_stats ws = conv_value_stats(weight, (long)d->c_out * g->K);
    if (ys.zero || ws.zero || !pg_range_safe(&ws, &ys, 1.0f) ||
        (exact && conv_value_stats(x, d->n * g->x_img).special))
        return 0;
    conv_dxlive_run(fn, d, g, lfn, 1, exact, x, weight, dy, dx);
    return 1;
}

/* backward data for image b: dx_b = col2im(W_gᵀ-product with dy_b) */
static void backward_data_image(const nomul_conv2d_desc *d, const conv_geom *g,
                                int pa, int approx, pg_plan *const *plans,
                                const float *x, const float *weight, const float *dy, float *dx,
                                int b, float *col, float *dcol)
{
    memset(dx + b * g->x_img, 0, (size_t)g->x_img * sizeof *dx);
    for (int gr = 0; gr < d->groups; gr++) {
        const float *wg = weight + (long)gr * g->cog * g->K;
        const float *dyg = dy + b * g->y_img + (long)gr * g->cog * g->P;
        long xoff = b * g->x_img + (long)gr * g->cig * d->h * d->w;
        if (!pa) {
            NOMUL_COUNT(FMUL, (long long)g->cog * g->P * g->K);
            NOMUL_COUNT(FADD, (long long)g->cog * g->P * g->K);
            nomul_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->K, g->P, g->cog, wg, g->K,
                        dyg, g->P, 0.0f, dcol, g->ldcol);
        } else if (approx) {
            pg_plan_run_forward(plans[gr], g->P, dyg, g->P, 0.0f, dcol, g->ldcol);
        } else {
            conv_im2col(d, g, x + xoff, col);
            pg_plan_run_grad_b(plans[gr], g->P, col, g->ldcol, dyg, g->P, 0.0f, dcol, g->ldcol);
        }
        conv_col2im_add(d, g, dcol, dx + xoff);
    }
}

/* dx; live: wanted only where x ≠ 0 (the live form, where it applies,
 * leaves +0 at x's zeros; the other paths compute them) */
static void backward_data(const char *fn, const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                          int live, const float *x, const float *weight, const float *dy,
                          float *dx)
{
    conv_geom g;
    if (!check_cfg(fn, cfg))
        return;
    int pa = nomul_op_is_pa(cfg), approx = cfg->approx_bwd;
    float offset = cfg->offset;
    int exact = pa && !approx;
    if (!geometry(fn, d, &g, exact ? x : weight, weight, dy, dx))
        return;
    if (pa && conv_depthwise_backward_data(d, &g, approx, offset, x, weight, dy, dx))
        return;
    if (pa && live && data_live(fn, d, &g, !approx, offset, x, weight, dy, dx))
        return;
    if (pa && approx && offset == 1.0f && conv_clane_data(fn, d, &g, 1, weight, dy, dx))
        return;
    if (pa && data_implicit(fn, d, &g, !approx, offset, x, weight, dy, dx))
        return;
    if (!pa && conv_float_applies(&g)) {
        conv_float_backward_data(fn, d, &g, live, x, weight, dy, dx);
        return;
    }
    pg_plan **plans = make_plans(fn, d, &g, pa, approx ? PLAN_DATA_APPROX : PLAN_DATA_EXACT,
                                 weight, offset);
    if (pa && !plans)
        return;
    int nt = conv_image_threads(d);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *col = cached_col(fn, &g, NOMUL_SCRATCH_CONV_COL), *dcol = col ? cached_col(fn, &g, NOMUL_SCRATCH_CONV_DCOL) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->n; b++)
            if (dcol)
                backward_data_image(d, &g, pa, approx, plans, x, weight, dy, dx, b, col, dcol);
    }
}

void nomul_conv2d_backward_data(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                const float *x, const float *weight, const float *dy, float *dx)
{
    backward_data("nomul_conv2d_backward_data", d, cfg, 0, x, weight, dy, dx);
}

void nomul_conv2d_backward_data_live(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                     const float *x, const float *weight, const float *dy,
                                     float *dx)
{
    backward_data("nomul_conv2d_backward_data_live", d, cfg, 1, x, weight, dy, dx);
}

/* dW (+)= the weight gradient of image b */
static void backward_weight_image(const nomul_conv2d_desc *d, const conv_geom *g,
                                  const nomul_op_cfg *cfg, const float *x, const float *weight,
                                  const float *dy, float *dweight, int b, float beta, float *col)
{
    for (int gr = 0; gr < d->groups; gr++) {
        const float *wg = weight ? weight + (long)gr * g->cog * g->K : NULL;
        const float *dyg = dy + b * g->y_img + (long)gr * g->cog * g->P;
        float *dwg = dweight + (long)gr * g->cog * g->K;
        conv_im2col(d, g, x + b * g->x_img + (long)gr * g->cig * d->h * d->w, col);
        /* dW_g = ∂/∂W_g of W_g · col: exact PA needs W_g; float and approximate
         * PA are the product dy_g · colᵀ */
        if (nomul_op_is_pa(cfg) && !cfg->approx_bwd)
            nomul_gemm_backward(cfg, CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cog, g->P,
                                g->K, wg, g->K, col, g->ldcol, dyg, g->P, beta, dwg, g->K, NULL, 0);
        else
            nomul_gemm(cfg, CblasRowMajor, CblasNoTrans, CblasTrans, g->cog, g->K, g->P, dyg,
                       g->P, col, g->ldcol, beta, dwg, g->K);
    }
}

int conv_xsparse_mode = CONV_XSPARSE_AUTO;
long conv_xsparse_runs;
int conv_dwplane_mode = CONV_DWPLANE_AUTO;
long conv_dwplane_runs;

pg_dwplane_job conv_dwplane_job(const nomul_conv2d_desc *d, const conv_geom *g, const float *xg,
                                const uint32_t *yp, long ys, float *c, int nvalid, int add,
                                uint32_t *list)
{
    return (pg_dwplane_job){.x = xg, .cig = g->cig, .h = d->h, .w = d->w, .oh = g->oh,
                            .ow = g->ow, .pad_h = d->pad_h, .pad_w = d->pad_w,
                            .dil_h = d->dil_h, .dil_w = d->dil_w, .yp = yp, .ys = ys, .c = c,
                            .ldc = g->cog, .nvalid = nvalid, .add = add, .list = list};
}

int conv_plane_codes_fit(const nomul_conv2d_desc *d, const conv_geom *g, long ys)
{
    /* a byte offset past every input's tap (0, 0) row, its low 6 bits spare */
    return (((long)d->h + d->pad_h) * g->ow + d->w + d->pad_w) * ys * 4 < (1L << 32) - 64;
}

int conv_skips_pay(void) { return !nomul_cpu_fma512_full(); }

int conv_dxlive_mode = CONV_DXLIVE_AUTO;
long conv_dxlive_runs;

int conv_dxlive_applies(const nomul_conv2d_desc *d, const conv_geom *g, pg_dxlive_fn fn,
                        int exact, const float *x)
{
    /* 16 channels pay for PAM's exact form only (bench conv --live: exact
     * 6.4 -> 3.8 ms, approximate 2.95 -> 3.13, float 2.51 -> 2.56 on
     * ResNet's 16-channel 28x28 layer: a term's one or two instructions
     * then weigh little beside each input's sum across lanes) */
    const int s1 = d->stride_h == 1 && d->stride_w == 1,
              s2 = d->stride_h == 2 && d->stride_w == 2 && d->dil_h == 1 && d->dil_w == 1;
    if (!fn || conv_dxlive_mode == CONV_DXLIVE_NEVER || d->kh != 3 || d->kw != 3 ||
        !(s1 || s2) || !((exact && g->cog == 16) || g->cog == 32 || g->cog == 64) ||
        !conv_plane_codes_fit(d, g, g->cog))
        return 0;
    /* float's and PAM's approximate form (exact 0), mode always aside: only
     * at stride 1 and where conv_skips_pay, whatever x. Stride 2
     * (undilated) pays for PAM's exact form, whose dense path goes through
     * im2col, col2im and T tiles packed per image (conv_pass_bench, one
     * thread, batch 64, x half zeros, dX ms dense / live: 16 -> 32 28x28
     * 3.41 / 1.90, 32 -> 64 14x14 3.04 / 1.78) */
    if (!exact && conv_dxlive_mode != CONV_DXLIVE_ALWAYS && (s2 || !conv_skips_pay()))
        return 0;
    /* x's density from its first images (a ReLU's zeros vary little
     * between images), so that the check costs little beside the layer */
    long nx = (long)(d->n < 4 ? d->n : 4) * g->x_img;
    return conv_dxlive_mode == CONV_DXLIVE_ALWAYS ||
           conv_nonzeros(x, nx, 0x7FFFFFFFu) * 16 <= (long)DXLIVE_DENSE * nx;
}

void conv_weight_rows(const nomul_conv2d_desc *d, const conv_geom *g, const float *weight,
                      uint32_t adj, uint32_t *t)
{
    const int rows = d->groups * g->K; /* (gr, k) */
#pragma omp parallel for num_threads(nomul_fn_threads((long)rows * g->cog)) schedule(static)
    for (int r = 0; r < rows; r++) {
        const int gr = r / g->K, k = r % g->K;
        const float *s = weight + (long)gr * g->cog * g->K + k;
        uint32_t *o = t + (long)r * g->cog;
        for (int co = 0; co < g->cog; co++) {
            uint32_t b;
            memcpy(&b, s + (long)co * g->K, sizeof b);
            o[co] = b - adj;
        }
    }
}

/* the weights as pg_dxlive_job's wp (conv_weight_rows: row (ci, t) of each
 * group, PAM's bits less 1.0's), in a scratch slot of the calling thread;
 * NULL (reported) out of memory */
static uint32_t *dxlive_weights(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                                const float *weight, int pa)
{
    uint32_t *wp = nomul_scratch_bytes(NOMUL_SCRATCH_CONV_WLIVE,
                                       (size_t)d->c_out * g->cig * 9 * sizeof *wp);
    if (!wp) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for the weights", fn);
        return NULL;
    }
    conv_weight_rows(d, g, weight, pa ? PG_ONE : 0u, wp);
    return wp;
}

/* dx of image b, group after group: dy transposed into yt (cog·P floats),
 * the job run, its operations counted; returns the groups run */
static int dxlive_image(const nomul_conv2d_desc *d, const conv_geom *g, pg_dxlive_fn fn, int pa,
                        int exact, const float *x, const uint32_t *wp, const float *dy,
                        float *dx, int b, float *yt, uint32_t *list)
{
    for (int gr = 0; gr < d->groups; gr++) {
        long xoff = b * g->x_img + (long)gr * g->cig * d->h * d->w;
        conv_transpose(g->cog, g->P, dy + b * g->y_img + (long)gr * g->cog * g->P, g->P, yt);
        pg_dxlive_job jb = {.x = x + xoff, .cig = g->cig, .h = d->h, .w = d->w, .oh = g->oh,
                            .ow = g->ow, .pad_h = d->pad_h, .pad_w = d->pad_w,
                            .dil_h = d->dil_h, .dil_w = d->dil_w, .stride = d->stride_h,
                            .wp = wp + (long)gr * g->cig * 9 * g->cog,
                            .yp = (const uint32_t *)(const void *)yt, .cog = g->cog,
                            .exact = exact, .dx = dx + xoff, .list = list};
        fn(&jb);
        /* each term one add into its lane, each live input 15 more */
        if (!pa)
            NOMUL_COUNT(FMUL, jb.terms);
        else if (exact)
            NOMUL_COUNT(SHIFT, jb.terms);
        else
            NOMUL_COUNT(PAM, jb.terms);
        NOMUL_COUNT(FADD, jb.terms + 15 * jb.outputs);
    }
    return d->groups;
}

void conv_dxlive_run(const char *fname, const nomul_conv2d_desc *d, const conv_geom *g,
                     pg_dxlive_fn fn, int pa, int exact, const float *x, const float *weight,
                     const float *dy, float *dx)
{
    const uint32_t *wp = dxlive_weights(fname, d, g, weight, pa);
    if (!wp)
        return;
    long runs = 0;
    int nt = conv_image_threads(d), failed = 0;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(+ : runs)
    {
        float *yt = nomul_scratch(NOMUL_SCRATCH_CONV_DCOL, (size_t)g->cog * g->P);
        uint32_t *list = yt ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_PLANELIST,
                                                  PG_PLANE_LIST(d->h, d->w) * sizeof(uint32_t))
                            : NULL;
        if (!list) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int b = 0; b < d->n; b++)
            if (list)
                runs += dxlive_image(d, g, fn, pa, exact, x, wp, dy, dx, b, yt, list);
    }
    if (failed)
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for dy's rows", fname);
    conv_dxlive_runs += runs;
}

/* The PAM weight gradient where the kernels that read X in place (AVX-512, AVX2)
 * apply (every term proven normal, no NaN or infinity; 4 or more output
 * channels per group): checked once per call. Approximate: dW = Σ PAM(dy,
 * col). Exact: dW = Σ ∂PAM(W, col)/∂W · dy, whose T, the weight itself, is
 * fixed per output (the partner PAM(col, offset) normal too). */
static int dw_direct_ok(const nomul_conv2d_desc *d, const conv_geom *g, int exact, float offset,
                        const float *x, const float *weight, const float *dy)
{
    const pg_cntx *cx = pg_cntx_active();
    if (!(exact ? cx->grad_xdirect.wide != NULL : cx->fwd_xdirect.wide != NULL) || g->cog < 4)
        return 0;
    pg_stats xs = conv_input_stats(d, x, d->n * g->x_img);
    pg_stats ys = conv_input_stats(d, dy, d->n * g->y_img);
    if (xs.special || ys.special || !pg_range_safe(&xs, &ys, offset))
        return 0;
    if (!exact)
        return 1;
    if (conv_input_stats(d, weight, (long)d->c_out * g->K).special)
        return 0;
    if (offset == 1.0f || xs.emax < xs.emin)
        return 1;
    int e;
    frexpf(offset, &e); /* offset = f · 2^e, f in [0.5, 1): its exponent e − 1 */
    return xs.emin + e - 1 >= -126 && xs.emax + e + 1 <= 127;
}

/* The weight gradients' reduction in chunks for the kernels that skip x's
 * zeros (pg_xsparse_ukr): whole output rows, as many as fit XS_LANES lanes
 * of the wide rows the in-place kernels read (implicit), or XS_LANES
 * indices of im2col's rows. The lanes' validity (16 per mask) and entries
 * (x's and the partner row's byte offsets from the chunk's start) are the
 * same for every chunk; the last may be shorter. */
enum { XS_LANES = PG_XL_CAP - 16 };
typedef struct {
    int lanes;  /* wide lanes of a full chunk */
    int pixels; /* reduction indices of a full chunk */
    uint16_t wmask[XS_LANES / 16];
    uint32_t went[XS_LANES];
} xs_chunks;

/* Whether x's values (n, one image: a block's first) are sparse enough for
 * the lists to pay (at most num/XSPARSE_DEN of them nonzero), so that the
 * lists are not built only to be dropped (ReLU's half is too dense for the
 * approximate form, bench conv --zeros); the mode's always says yes. */
long conv_nonzeros(const float *x, long n, uint32_t mask)
{
    const uint32_t *u = (const uint32_t *)(const void *)x;
    long nz = 0;
    for (long i = 0; i < n; i++)
        nz += (u[i] & mask) != 0;
    return nz;
}

static int xs_sparse_enough(const float *x, long n, int num)
{
    if (conv_xsparse_mode == CONV_XSPARSE_ALWAYS)
        return 1;
    return conv_nonzeros(x, n, 0x7F800000u) * XSPARSE_DEN <= (long)num * n;
}

/* The lists' density bound (of XSPARSE_DEN) for the exact or approximate
 * form, on a narrow (16-wide) or wide tile (conv2d_internal.h) */
static int xs_num_of(int exact, int narrow)
{
    if (exact)
        return XSPARSE_EXACT;
    const int avx2 = pg_cntx_active()->isa == NOMUL_ISA_AVX2;
    return !narrow && (nomul_cpu_amd() || avx2) && conv_skips_pay() ? XSPARSE_APPROX_WIDE_AMD
                                                                     : XSPARSE_APPROX;
}

/* 0 where no chunk fits (rows wider than XS_LANES) */
static int xs_chunks_make(const conv_geom *g, int implicit, int wp, uint32_t ybytes,
                          xs_chunks *ch)
{
    if (implicit && wp > XS_LANES)
        return 0;
    int rows = implicit ? XS_LANES / wp : 1;
    ch->lanes = implicit ? rows * wp : XS_LANES;
    ch->pixels = implicit ? rows * g->ow : XS_LANES;
    memset(ch->wmask, 0, sizeof ch->wmask);
    for (int w = 0; w < ch->lanes; w++) {
        int row = implicit ? w / wp : 0, col = implicit ? w % wp : w;
        int valid = !implicit || col < g->ow;
        uint32_t p = (uint32_t)(row * g->ow + col); /* < XS_LANES: offsets fit 16 bits */
        ch->went[w] = valid ? (uint32_t)w * 4 << 16 | p * ybytes : 0u;
        ch->wmask[w / 16] |= (uint16_t)(valid << (w % 16));
    }
    return 1;
}

/* The lists of rows i0 .. i0 + MR − 1 (past mvalid: empty) over a chunk (x's
 * rows at xc + off[k], nlanes wide lanes, npix indices), their lengths in
 * len; 0 where the in-place kernels should run instead: more than
 * num/XSPARSE_DEN of the tile's values nonzero. */
static int xs_lists(const pg_xsparse_ukr *xs, const xs_chunks *ch, const float *xc,
                    const long *off, int i0, int MR, int mvalid, int nlanes, int npix, int num,
                    uint32_t *lists, int *len)
{
    long total = 0;
    for (int r = 0; r < MR; r++) {
        len[r] = r < mvalid ? xs->build(xc + off[i0 + r], nlanes, ch->wmask, ch->went,
                                        lists + r * PG_XL_CAP)
                            : 0;
        total += len[r];
    }
    return conv_xsparse_mode == CONV_XSPARSE_ALWAYS ||
           total * XSPARSE_DEN <= (long)num * mvalid * npix;
}

/* The weight gradient's tiling on the in-place kernels: MR rows of col
 * against NR = 32 or 16 output channels (narrow, for groups of 16 or fewer). */
typedef struct {
    int exact, narrow, MR, NR, npi, npj;
    long ntile; /* one group's weight tiles' values (exact) */
} dw_shape;

static dw_shape dw_shape_of(const conv_geom *g, int exact)
{
    const pg_cntx *cx = pg_cntx_active();
    dw_shape sh;
    int nr_u = exact ? cx->grad_xdirect.nr : cx->fwd_xdirect.nr;
    sh.exact = exact;
    sh.MR = exact ? cx->grad_xdirect.mr : cx->fwd_xdirect.mr;
    sh.narrow = (exact ? cx->grad_xdirect.narrow != NULL : cx->fwd_xdirect.narrow != NULL) &&
                g->cog <= nr_u / 2;
    sh.NR = sh.narrow ? nr_u / 2 : nr_u;
    sh.npj = (g->cog + sh.NR - 1) / sh.NR;
    sh.npi = (g->K + sh.MR - 1) / sh.MR;
    sh.ntile = (long)sh.npi * sh.npj * sh.MR * sh.NR;
    return sh;
}

/* The exact weight gradient's T tiles, T(k, co) = W(co, k) with the partner
 * PAM(col, offset)'s adjustment and −1.0 folded in, every group's, packed
 * once per call into the calling thread's buffer (every block's thread
 * reads them). NULL after a report. */
static uint32_t *dw_tiles(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                          const dw_shape *sh, float offset, const float *weight)
{
    const pg_cntx *cx = pg_cntx_active();
    const int MR = sh->MR, NR = sh->NR;
    uint32_t *wt = nomul_scratch_bytes(NOMUL_SCRATCH_CONV_WTILE,
                                       (size_t)d->groups * sh->ntile * 4);
    if (!wt) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for a weight gradient's tiles", fn);
        return NULL;
    }
    uint32_t ob;
    memcpy(&ob, &offset, 4);
    uint32_t tadj = (offset != 1.0f ? ob - PG_ONE : 0u) - PG_ONE;
    for (int gr = 0; gr < d->groups; gr++)
        for (int ip = 0; ip < sh->npi; ip++)
            for (int jp = 0; jp < sh->npj; jp++) {
                int i0 = ip * MR, j0 = jp * NR;
                uint32_t *tile = wt + gr * sh->ntile + ((long)ip * sh->npj + jp) * MR * NR;
                cx->pack_tile(weight + ((long)gr * g->cog + j0) * g->K + i0, 1, g->K,
                              g->K - i0 < MR ? g->K - i0 : MR, g->cog - j0 < NR ? g->cog - j0 : NR,
                              MR, NR, tile);
                for (int e = 0; e < MR * NR; e++)
                    tile[e] += tadj;
            }
    return wt;
}

/* ... for the images [b0, b1) into dw: per group, dW_gᵀ (K × co) = Σ over
 * the images and pixels of the terms of (col, dy_g), col's rows read in
 * place (the padded image for stride 1, the split one for stride 2 where the
 * forward takes it, in segments of one output row; else im2col's output),
 * dy_g packed per image into 32- or 16-column panels (the pack the matrix
 * engine uses: with forward Y's adjustment, or raw for the
 * exact terms, whose weight tiles are packed once per call), each sum one
 * chain over the block's images and pixels in order; dw_g = (dW_gᵀ)ᵀ at the
 * end. Where the context has them, the kernels that skip x's zeros run on the
 * chunks whose lists pay (xs_chunks, xs_lists), the in-place ones on the
 * others: the same sums. 0 after a report. */
static int dw_block(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                    const dw_shape *sh, int sparse, float offset, const float *x,
                    const uint32_t *wt, const float *dy, float *dw, long b0, long b1)
{
    const pg_cntx *cx = pg_cntx_active();
    const int exact = sh->exact, narrow = sh->narrow, MR = sh->MR, NR = sh->NR;
    const int npi = sh->npi, npj = sh->npj;
    const long ntile = sh->ntile;
    /* x read in place (the padded or the split image), else im2col's output */
    int implicit = conv_dw_feed(d, g);
    int wp = conv_feed_width(d, implicit), slack = conv_wide_slack(d);
    /* x's zeros skipped where the lists pay: the chunks' geometry */
    const pg_xsparse_ukr *xs = &cx->xsparse;
    const uint32_t ybytes = (uint32_t)NR * 4;
    xs_chunks ch;
    int xs_num = xs_num_of(exact, narrow);
    int len[8]; /* a tile's list lengths: MR ≤ 8 */
    sparse = sparse && MR <= 8 && xs_chunks_make(g, implicit, wp, ybytes, &ch);
    pg_xsparse_kernel skern = !sparse ? NULL
                              : exact ? (narrow ? xs->gnarrow : xs->gwide)
                                      : (narrow ? xs->narrow : xs->wide);
    long nw = (long)d->c_out * g->K, npk = (long)npj * g->P * NR;
    size_t nb = implicit ? (size_t)conv_feed_floats(d, implicit, g->cig) + slack
                         : (size_t)g->K * g->ldcol + 32;
    float *buf = nomul_scratch(NOMUL_SCRATCH_CONV_COL, nb);
    uint32_t *yp = buf ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_DYT, (size_t)npk * 4) : NULL;
    int32_t *ym = yp ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_DCOL, (size_t)npk * 4) : NULL;
    float *dwt = ym ? nomul_scratch(NOMUL_SCRATCH_CONV_DWT, (size_t)nw) : NULL;
    long *off = dwt ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_DWOFFS, (size_t)g->K * sizeof *off)
                    : NULL;
    uint32_t *lists = off && sparse ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_XLISTS,
                                                          (size_t)MR * PG_XL_CAP * 4)
                                    : NULL;
    if (!off || (sparse && !lists)) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for a weight gradient's panels", fn);
        return 0;
    }
    /* 3×3: input by input, panel by panel, where dy has no zeros
     * (pg_dwplane_job), its list scratch. Exact: on 16-column panels only,
     * its T the weights' tiles (9 registers beside the 9 sums; 32 columns
     * would spill them: bench conv --zeros 0.5 --batch 64 --threads 1, dW
     * ms in place / by input: 16ch 32x32 5.6-7.4 / 4.1-4.5, 32ch 14x14
     * 2.8-3.0 / 3.9-4.1, 64ch 8x8 3.9-4.0 / 5.8-6.0) */
    const int plane =
        (exact ? NR == 16 : NR <= 32) && implicit == CONV_PADDED && d->kh == 3 && d->kw == 3 &&
        cx->dwplane.pam &&
        conv_dwplane_mode != CONV_DWPLANE_NEVER && conv_plane_codes_fit(d, g, NR);
    uint32_t *plist = plane ? nomul_scratch_bytes(NOMUL_SCRATCH_CONV_PLANELIST,
                                                  PG_PLANE_LIST(d->h, d->w) * 4)
                            : NULL;
    if (plane && !plist) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for a weight gradient's lists", fn);
        return 0;
    }
    if (b0 == b1) {
        memset(dw, 0, (size_t)nw * sizeof *dw);
        return 1;
    }
    conv_col_offsets(d, g, implicit, off);
    uint32_t ob;
    memcpy(&ob, &offset, 4);
    /* approximate: forward Y's adjustment; exact: dy raw (the partner's
     * adjustment is in the tiles, dw_tiles) */
    uint32_t adj = exact ? 0u : (offset != 1.0f ? ob - PG_ONE : 0u) - PG_ONE;
    int seg = implicit ? g->ow : g->P;
    long ss = implicit ? wp : 0, runs = 0, plane_runs = 0;
    for (long b = b0; b < b1; b++)
        for (int gr = 0; gr < d->groups; gr++) {
            const float *xg = x + b * g->x_img + (long)gr * g->cig * d->h * d->w;
            const float *dyg = dy + b * g->y_img + (long)gr * g->cog * g->P;
            float *dwg = dwt + (long)gr * g->K * g->cog;
            /* the pack writes a panel's masks only when it holds a zero: the
             * kernel reads them only then (past 64 panels, all are written) */
            unsigned char zeros[64];
            for (int jp = 0; jp < npj; jp++) {
                pg_stats st;
                int j0 = jp * NR, nr = g->cog - j0 < NR ? g->cog - j0 : NR;
                int32_t *mp = ym + (long)jp * g->P * NR;
                cx->pack(dyg + (long)j0 * g->P, g->P, 1, nr, NR, g->P, adj,
                         yp + (long)jp * g->P * NR, mp, &st);
                if (npj > 64 && !st.zero)
                    memset(mp, 0xFF, (size_t)g->P * NR * sizeof *mp);
                else if (npj <= 64)
                    zeros[jp] = (unsigned char)(st.zero != 0);
            }
            count_terms(exact, offset, (long long)g->K * g->cog * g->P);
            int dy_zeros = 0;
            for (int jp = 0; plane && jp < npj; jp++)
                dy_zeros |= npj > 64 || zeros[jp];
            if (plane && !dy_zeros) { /* panel by panel (NR wide: nh = 1 or 2) */
                for (int jp = 0; jp < npj; jp++) {
                    int j0 = jp * NR, nr = g->cog - j0 < NR ? g->cog - j0 : NR;
                    pg_dwplane_job job = conv_dwplane_job(d, g, xg, yp + (long)jp * g->P * NR,
                                                          NR, dwg + j0, nr, b > b0, plist);
                    if (exact) {
                        job.t = wt + gr * ntile + (long)jp * MR * NR;
                        job.t_mr = MR;
                        job.t_step = (long)npj * MR * NR;
                    }
                    cx->dwplane.pam(&job);
                }
                plane_runs++;
                continue;
            }
            if (implicit)
                conv_feed_fill(d, implicit, g->cig, xg, buf, slack);
            else
                conv_im2col(d, g, xg, buf);
            for (int ip = 0; ip < npi; ip++) {
                int i0 = ip * MR, mvalid = g->K - i0 < MR ? g->K - i0 : MR;
                /* the whole reduction in place, or chunk by chunk */
                int step = sparse ? ch.pixels : g->P;
                for (int p0 = 0; p0 < g->P; p0 += step) {
                    int npix = g->P - p0 < step ? g->P - p0 : step;
                    /* the chunk's first x: row p0 / seg of x's segments */
                    const float *xc = buf + (implicit ? (long)(p0 / seg) * ss : p0);
                    int use = sparse && xs_lists(xs, &ch, xc, off, i0, MR, mvalid,
                                                 implicit ? npix / g->ow * wp : npix, npix,
                                                 xs_num, lists, len);
                    for (int jp = 0; jp < npj; jp++) {
                        int j0 = jp * NR, nr = g->cog - j0 < NR ? g->cog - j0 : NR;
                        int masked = npj > 64 || zeros[jp];
                        const uint32_t *ypc = yp + ((long)jp * g->P + p0) * NR; /* the chunk's */
                        const int32_t *ymj = masked ? ym + ((long)jp * g->P + p0) * NR : NULL;
                        const uint32_t *tile =
                            exact ? wt + gr * ntile + ((long)ip * npj + jp) * MR * NR : NULL;
                        float *c = dwg + (long)i0 * g->cog + j0;
                        int add = b > b0 || p0 > 0;
                        if (use && !masked) { /* dy's zeros need the masks */
                            skern(lists, len, xc, off + i0, ypc, tile, mvalid, nr, c, g->cog,
                                  add);
                            runs++;
                        }
                        else if (exact)
                            (narrow ? cx->grad_xdirect.narrow : cx->grad_xdirect.wide)(
                                npix, xc, off + i0, implicit ? seg : npix, ss, mvalid, ypc, ymj,
                                tile, nr, c, g->cog, add);
                        else
                            (narrow ? cx->fwd_xdirect.narrow : cx->fwd_xdirect.wide)(
                                npix, xc, off + i0, implicit ? seg : npix, ss, mvalid, ypc, ymj,
                                nr, c, g->cog, add);
                    }
                }
            }
        }
    for (int gr = 0; gr < d->groups; gr++) {
        long at = (long)gr * g->K * g->cog;
        conv_transpose(g->K, g->cog, dwt + at, g->cog, dw + at);
    }
    if (runs) {
#pragma omp atomic
        conv_xsparse_runs += runs;
    }
    if (plane_runs) {
#pragma omp atomic
        conv_dwplane_runs += plane_runs;
    }
    return 1;
}

/* dW through im2col and the matrix products. The images are summed in
 * fixed blocks (core/internal.h): block 0 into dW, each other block from
 * zero into its own partial, image by image; the partials are then added
 * in block order, so dW does not depend on the thread count. The blocks
 * number at most 16, fewer for large layers (their partials kept within
 * 2^24 floats). */
static int backward_weight_general(const char *fn, const nomul_conv2d_desc *d,
                                   const conv_geom *g, const nomul_op_cfg *cfg, const float *x,
                                   const float *weight, const float *dy, float *dweight)
{
    enum { MAX_BLOCKS = 16, PARTIAL_FLOATS = 1 << 24 };
    long nw = (long)d->c_out * g->K;
    long by_size = PARTIAL_FLOATS / (nw > 0 ? nw : 1);
    int blocks = nomul_sum_blocks(d->n, 1, by_size < MAX_BLOCKS ? (int)by_size : MAX_BLOCKS);
    int nt = conv_image_threads(d); /* the same team even for fewer blocks (see image_threads) */
    /* kept between calls, like the column matrices */
    float *partial = blocks > 1
                         ? nomul_scratch(NOMUL_SCRATCH_CONV_PARTIAL, (size_t)(blocks - 1) * nw)
                         : NULL;
    if (blocks > 1 && !partial) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for per-block gradients", fn);
        return 0;
    }
    int failed = 0;
    /* float, where the context has the kernels (src/gemm/float/conv_float.c;
     * the dW of depthwise layers, one output channel per group, too) */
    int fast = !nomul_op_is_pa(cfg) && fd_available();
    int xdirect = nomul_op_is_pa(cfg) &&
                  dw_direct_ok(d, g, !cfg->approx_bwd, cfg->offset, x, weight, dy);
    /* the in-place kernels' tiling, the exact form's T tiles, and whether x
     * (its first image) is sparse enough for the lists that skip its zeros */
    dw_shape sh = {0};
    if (xdirect)
        sh = dw_shape_of(g, !cfg->approx_bwd);
    const uint32_t *wt = NULL;
    if (xdirect && sh.exact && !(wt = dw_tiles(fn, d, g, &sh, cfg->offset, weight)))
        return 0;
    int sparse = xdirect && pg_cntx_active()->xsparse.build != NULL &&
                 conv_xsparse_mode != CONV_XSPARSE_NEVER &&
                 xs_sparse_enough(x, g->x_img, xs_num_of(sh.exact, sh.narrow));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *col = fast || xdirect ? NULL : cached_col(fn, g, NOMUL_SCRATCH_CONV_COL);
        if (!fast && !xdirect && !col) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < blocks; k++) {
            float *dw = k == 0 ? dweight : partial + (long)(k - 1) * nw;
            long b0 = nomul_block_start(d->n, blocks, k), b1 = nomul_block_start(d->n, blocks, k + 1);
            if (fast) {
                if (!conv_float_dw_block(fn, d, g, x, dy, dw, b0, b1)) {
#pragma omp atomic write
                    failed = 1;
                }
                continue;
            }
            if (xdirect) {
                if (!dw_block(fn, d, g, &sh, sparse, cfg->offset, x, wt, dy, dw, b0, b1)) {
#pragma omp atomic write
                    failed = 1;
                }
                continue;
            }
            for (long b = b0; b < b1 && col; b++)
                backward_weight_image(d, g, cfg, x, weight, dy, dw, (int)b, b == b0 ? 0.0f : 1.0f,
                                      col);
            if (b0 == b1)
                memset(dw, 0, (size_t)nw * sizeof *dw);
        }
    }
    if (failed)
        return 0; /* reported */
    /* on the threads from 32 channels up (3x3: 15 partials of 9,216 values
     * and more), which one thread took while the others waited */
    int ct = blocks > 1 && (long)(blocks - 1) * nw >= 65536 && !omp_in_parallel()
                 ? nomul_num_threads()
                 : 1;
#pragma omp parallel num_threads(ct) if (ct > 1)
    for (int k = 1; k < blocks; k++) {
        const float *pk = partial + (long)(k - 1) * nw;
#pragma omp for schedule(static)
        for (long i = 0; i < nw; i++)
            dweight[i] += pk[i];
    }
    return 1;
}

static void backward_both(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg, int live,
                          const float *x, const float *weight, const float *dy, float *dx,
                          float *dweight, float *dbias, const nomul_conv_xstats *keep)
{
    held_open(x, x_len(d), keep);
    if (dx)
        backward_data(live ? "nomul_conv2d_backward_live" : "nomul_conv2d_backward", d, cfg,
                      live, x, weight, dy, dx);
    if (dweight)
        nomul_conv2d_backward_weight(d, cfg, x, weight, dy, dweight, dbias);
    held_close();
}

void nomul_conv2d_backward(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg, const float *x,
                           const float *weight, const float *dy, float *dx, float *dweight,
                           float *dbias)
{
    backward_both(d, cfg, 0, x, weight, dy, dx, dweight, dbias, NULL);
}

void nomul_conv2d_backward_live(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                const float *x, const float *weight, const float *dy, float *dx,
                                float *dweight, float *dbias)
{
    backward_both(d, cfg, 1, x, weight, dy, dx, dweight, dbias, NULL);
}

void nomul_conv2d_backward_keep(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg, int live,
                                const float *x, const float *weight, const float *dy, float *dx,
                                float *dweight, float *dbias, const nomul_conv_xstats *keep)
{
    backward_both(d, cfg, live != 0, x, weight, dy, dx, dweight, dbias, keep);
}

void nomul_conv2d_backward_weight(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                  const float *x, const float *weight, const float *dy,
                                  float *dweight, float *dbias)
{
    const char *fn = "nomul_conv2d_backward_weight";
    conv_geom g;
    if (!check_cfg(fn, cfg))
        return;
    int pa = nomul_op_is_pa(cfg);
    int exact = pa && !cfg->approx_bwd;
    if (!geometry(fn, d, &g, x, exact ? weight : x, dy, dweight))
        return;
    if (!(pa && conv_depthwise_backward_weight(d, &g, cfg->approx_bwd, cfg->offset, x, weight, dy,
                                          dweight)) &&
        !backward_weight_general(fn, d, &g, cfg, x, weight, dy, dweight))
        return;
    if (dbias) {
        /* each channel's sum one chain over (image, pixel) in order; eight
         * channels' chains side by side (an addition's latency per term
         * otherwise), groups of channels over the threads: the same sums */
        enum { CH = 8 };
        NOMUL_COUNT(FADD, (long long)d->n * g.y_img);
#pragma omp parallel for num_threads(nomul_fn_threads((long)d->n * g.y_img)) schedule(static)
        for (int c0 = 0; c0 < d->c_out; c0 += CH) {
            int k = d->c_out - c0 < CH ? d->c_out - c0 : CH;
            if (k < CH) { /* the last channels, one chain each */
                for (int j = 0; j < k; j++) {
                    float s = 0.0f;
                    for (int b = 0; b < d->n; b++) {
                        const float *plane = dy + b * g.y_img + (long)(c0 + j) * g.P;
                        for (int p = 0; p < g.P; p++)
                            s += plane[p];
                    }
                    dbias[c0 + j] = s;
                }
                continue;
            }
            /* named accumulators: an array would live on the stack */
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
            const long P = g.P;
            for (int b = 0; b < d->n; b++) {
                const float *q = dy + b * g.y_img + (long)c0 * P;
                for (long p = 0; p < P; p++) {
                    s0 += q[p];
                    s1 += q[P + p];
                    s2 += q[2 * P + p];
                    s3 += q[3 * P + p];
                    s4 += q[4 * P + p];
                    s5 += q[5 * P + p];
                    s6 += q[6 * P + p];
                    s7 += q[7 * P + p];
                }
            }
            float *o = dbias + c0;
            o[0] = s0; o[1] = s1; o[2] = s2; o[3] = s3;
            o[4] = s4; o[5] = s5; o[6] = s6; o[7] = s7;
        }
    }
}
