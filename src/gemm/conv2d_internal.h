/*
 * conv2d_internal.h — what conv2d.c (the im2col path), conv2d_depthwise.c
 * (the direct depthwise paths) and float/conv_float.c (the float path on
 * nomul's FMA kernels) share: the geometry of a call, the valid span of a
 * kernel tap, the statistics of an input, im2col, and the entry points
 * (private to src/gemm).
 */
#ifndef NOMUL_CONV2D_INTERNAL_H
#define NOMUL_CONV2D_INTERNAL_H

#include "gemm_internal.h"
#include <string.h>

#include "nomul/conv.h"

typedef struct {
    int oh, ow, P, K, cig, cog;
    int ldcol; /* the column matrices' row stride: P, padded off multiples of 512 bytes */
    long x_img, y_img; /* floats per image */
} conv_geom;

/* The outputs ox in [*ox0, *ox1) whose input column ox·stride + base lies in
 * [0, w): the rest of a row reads padding. */
static inline void conv_valid_cols(int w, int ow, int stride, int base, int *ox0, int *ox1)
{
    int lo = base >= 0 ? 0 : (-base + stride - 1) / stride;
    int hi = w - base <= 0 ? 0 : (w - base + stride - 1) / stride;
    hi = hi < ow ? hi : ow;
    *ox0 = lo < hi ? lo : hi;
    *ox1 = hi;
}

/* GCC and clang turn copy_row's and zero_row's loops back into calls to
 * memcpy and memset (GCC's -ftree-loop-distribute-patterns, on at -O2;
 * clang's loop idiom recognition): on rows of 28 floats the calls cost more
 * than the copies (perf on ResNet20's float step put 8% of it in memmove,
 * called from im2col). Shared by conv2d.c and float/conv_float.c. */
#if defined(__clang__)
#define NO_LIBCALL_LOOPS __attribute__((no_builtin("memcpy", "memset")))
#elif defined(__GNUC__)
#define NO_LIBCALL_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_LIBCALL_LOOPS
#endif

/* four floats, loaded and stored unaligned (as memcpy would: may_alias) */
typedef float v4f __attribute__((vector_size(16), aligned(4), may_alias));

/* out[j] = in[j] for j < n, four at a time: a convolution row is a few to a
 * few dozen floats, for which a call to memcpy costs more than the copy */
NO_LIBCALL_LOOPS static inline void copy_row(int n, const float *restrict in, float *restrict out)
{
    int j = 0;
    for (; j + 4 <= n; j += 4)
        *(v4f *)(out + j) = *(const v4f *)(in + j);
    for (; j < n; j++)
        out[j] = in[j];
}

/* out[j] = in[2j] for j < n (stride 2), four at a time: two loads and a
 * shuffle of their even lanes. The vectors read in[8k .. 8k + 7] only
 * where in[8k + 8] is still read (in[2n − 1] lies past the row's last
 * input, perhaps past the image). */
NO_LIBCALL_LOOPS static inline void copy_row_s2(int n, const float *restrict in,
                                                float *restrict out)
{
    int j = 0;
    for (; j + 4 < n; j += 4) /* (__builtin_shufflevector: gcc 12 and clang) */
        *(v4f *)(out + j) = __builtin_shufflevector(*(const v4f *)(in + 2 * j),
                                                    *(const v4f *)(in + 2 * j + 4), 0, 2, 4, 6);
    for (; j < n; j++)
        out[j] = in[2 * j];
}

/* out[j] = 0 for j < n (the padding of a row: mostly 0 to 2 values) */
NO_LIBCALL_LOOPS static inline void zero_row(int n, float *out)
{
    int j = 0;
    const v4f z = {0, 0, 0, 0};
    for (; j + 4 <= n; j += 4)
        *(v4f *)(out + j) = z;
    for (; j < n; j++)
        out[j] = 0.0f;
}

/* Exponent statistics of n values of x (all of it), plus a zero if the
 * descriptor pads: they bound every value im2col writes. */
pg_stats conv_input_stats(const nomul_conv2d_desc *d, const float *x, long n);
/* the same without the padding's zero: the values' own */
pg_stats conv_value_stats(const float *x, long n);

/* The depthwise layers (one input and one output channel per group, stride
 * 1) as direct loops when every product is known to stay normal; each
 * returns 0, writing nothing, when it does not apply (another layer, values
 * that could leave the range, no memory), and the im2col path runs. */
int conv_depthwise_forward(const nomul_conv2d_desc *d, const conv_geom *g, float offset,
                           const float *x, const float *weight, const float *bias, float *y);
int conv_depthwise_backward_data(const nomul_conv2d_desc *d, const conv_geom *g, int approx,
                                 float offset, const float *x, const float *weight,
                                 const float *dy, float *dx);
int conv_depthwise_backward_weight(const nomul_conv2d_desc *d, const conv_geom *g, int approx,
                                   float offset, const float *x, const float *weight,
                                   const float *dy, float *dweight);

/* conv2d.c's pieces that the float path shares: the column matrix of one
 * group of one image (K × P, rows ldcol apart), its adjoint added into x,
 * and the threads a call runs its images on. */
void conv_im2col(const nomul_conv2d_desc *d, const conv_geom *g, const float *x, float *col);
void conv_col2im_add(const nomul_conv2d_desc *d, const conv_geom *g, const float *col, float *x);
int conv_image_threads(const nomul_conv2d_desc *d);
/* yb (one image's output planes) += bias (NULL: none), counted */
void conv_add_bias(const nomul_conv2d_desc *d, const conv_geom *g, const float *bias, float *yb);
/* t (cols × rows) = mᵀ, m rows × cols with leading dimension ldm */
void conv_transpose(int rows, int cols, const float *m, long ldm, float *t);
/* t = each group's weights (cog × K) transposed, group after group (row
 * (gr, k) holds the group's cog output channels), each entry's bits less
 * adj (PG_ONE: PAM's tables with −1.0 folded in; 0: float's): the tables of
 * the live data gradient and of the lanes-along-channels forward. Row by
 * row on the threads, each row its own (no cache line written by two):
 * written on one thread, ResNet20's took 0.7 ms of a two-thread step
 * while the other waited. */
void conv_weight_rows(const nomul_conv2d_desc *d, const conv_geom *g, const float *weight,
                      uint32_t adj, uint32_t *t);

/* The implicit feed of stride-1 layers: the zero-padded image stands for
 * the column matrix, row (c, i, j) of col being plane c shifted by (i·dil_h,
 * j·dil_w), read in rows Wp = w + 2·pad_w wide (the output computed that
 * wide, its last Wp − ow columns dropped). conv_pad_planes copies c planes
 * (h × w) into zero-padded ones with `slack` zeros after the last (the wide
 * rows read up to dil_w·(kw − 1) + 32 floats past it); the products write
 * each tile's kept columns to the output directly (pg_narrow: no wide
 * output and no copy to narrow it, which cost 3% of ResNet20's float step);
 * conv_tap_offsets (this
 * thread's buffer, NULL when out of memory) lists where each row of the
 * implicit column matrix starts. Wide rows cost (Wp − ow)/ow more products:
 * conv_wide_pays, up to 50%, where im2col's form costs more (its column
 * matrix, col2im, and the data gradient's reduction over the output channels
 * alone). Measured with bench conv at batch 64, 64 channels: PAM exact dX at
 * 8x8 and 7x7 4.3-4.7 -> 3.2-3.4 ms, approximate 7x7 1.5-2.4 -> 1.2-1.6 ms;
 * float at 7x7 forward 1.25 -> 0.76 ms and dX 1.24 -> 0.80, at 8x8 forward
 * 1.30 -> 1.09 (the float kernels took it below 20% before: measured when
 * they were slower). conv_forward_implicit says whether a forward takes it. */
static inline int conv_wide_pays(int ow, int wp)
{
    return 2 * (wp - ow) <= ow;
}
/* the zeros after the last padded plane: a wide row reads dil_w·(kw − 1)
 * past its plane, and the direct kernels 32 floats past a row's n */
static inline int conv_wide_slack(const nomul_conv2d_desc *d)
{
    return d->dil_w * (d->kw - 1) + 32;
}
/* The forward's feed: 0, im2col; CONV_PADDED, stride 1's padded planes;
 * CONV_SPLIT, stride 2's (undilated, kernels past 1 × 1): each padded plane
 * (hp × wp) split by the parity of row and column into four planes of hs ×
 * ws (hs = ⌈hp / 2⌉, ws = ⌈wp / 2⌉), plane (a, b) holding padded pixels
 * (2u + a, 2v + b). Tap (i, j) of output (oy, ox) then reads plane (i % 2,
 * j % 2) at (oy + i / 2, ox + j / 2): a stride-1 read, in wide rows ws
 * wide, so the forward's and the weight gradient's in-place kernels run as
 * on stride 1's feed, the sums in im2col's order (the same bits), without
 * im2col's strided copies, half of a stride-2 float forward's time before
 * (build/conv_pass_bench, one thread, batch 64, best of 20, 16 -> 32 28x28:
 * float forward 1.26 -> 0.90 ms, dW 1.42 -> 0.91; PAM exact forward 1.46 ->
 * 1.09, dW 1.86 -> 1.36; 32 -> 64 14x14 alike). 1 × 1 kernels keep im2col
 * (a plain subsampling: the split would copy four times what they read). */
enum { CONV_PADDED = 1, CONV_SPLIT = 2 };
int conv_forward_implicit(const nomul_conv2d_desc *d, const conv_geom *g);
/* the weight gradient's feed where x is read in place: stride 1's padded
 * planes (whatever the wasted columns), stride 2's split ones where the
 * forward takes them, else 0 (im2col's output) */
int conv_dw_feed(const nomul_conv2d_desc *d, const conv_geom *g);
/* the feed's wide rows' width, and its floats for c input planes (before
 * the slack) */
int conv_feed_width(const nomul_conv2d_desc *d, int implicit);
long conv_feed_floats(const nomul_conv2d_desc *d, int implicit, int c);
/* c planes of x into the feed: conv_pad_planes or conv_split_planes */
void conv_feed_fill(const nomul_conv2d_desc *d, int implicit, int c, const float *x, float *buf,
                    int slack);
void conv_split_planes(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                       int slack);
/* whether the data gradient is computed as the stride-1 convolution of dy
 * padded by dil·(k − 1) − pad with the flipped kernel (float, and PAM where
 * the direct kernels apply, conv2d.c's data_implicit), and that kernel: W'_g (c_in/g × K2, K2 = (co, i,
 * j)), W'[c][(co, i, j)] = W[co][c][kh−1−i][kw−1−j], in this thread's
 * buffer (NULL when out of memory) */
int conv_data_implicit(const nomul_conv2d_desc *d);
float *conv_flip_weights(const nomul_conv2d_desc *d, const conv_geom *g, const float *weight);
void conv_pad_planes(int c, int h, int w, int ph, int pw, const float *src, float *dst, int slack);
long *conv_tap_offsets(int c, int kh, int kw, int hp, int wp, int dh, int dw);
void conv_fill_taps(int c, int kh, int kw, int hp, int wp, int dh, int dw, long *off);
/* off[k] = where row k of x's column matrix starts: in the padded or split
 * image (implicit: CONV_PADDED, CONV_SPLIT) or in im2col's output (k·ldcol) */
void conv_col_offsets(const nomul_conv2d_desc *d, const conv_geom *g, int implicit, long *off);

/* The PAM weight gradients' kernels that skip x's zeros (pg_xsparse_ukr,
 * conv2d.c's dw_block): used on a chunk of the reduction when at most
 * XSPARSE_EXACT (exact) or XSPARSE_APPROX (approximate) / XSPARSE_DEN of its
 * values are nonzero, and only when x's first image is that sparse (so that
 * lists are not built only to be dropped). Measured with bench conv --zeros
 * 0.5 (a ReLU's half), one thread, the exact form's dW at 16, 32 and 64
 * channels: 1.08x, 1.42x, 1.21x the in-place kernels; the approximate
 * form's lists cost more than its tests save at that density (0.76-0.89x),
 * so it takes them only below 3/8. That was on a Xeon; on AMD's Zen 4 the
 * in-place kernels' merge-masked adds run at two thirds of the rate, and
 * the approximate form's lists pay on wide tiles (32 output channels or
 * more) up to 6/8 (bench conv --approx --zeros 0.5 --batch 64: 64 channels
 * dW 0.78-0.82 -> 0.95-1.02 of float; 16 channels no better, so narrow
 * tiles keep 3/8): XSPARSE_APPROX_WIDE_AMD. Not where 512-bit adds run at
 * full width (Zen 5: conv_skips_pay false), where the in-place kernels
 * win at a ReLU's half (dW ms with / without the lists, one thread, batch
 * 64: 16->32 28x28 stride 2 1.89 / 1.69, 32->64 14x14 stride 2 1.79 /
 * 1.50; experiments/bench/conv_pass_bench.c): 3/8 there. On AVX2 (no
 * mask registers: the in-place kernels spend a test per broadcast and an
 * and per term, on any vendor's core) the lists pay on 16-lane tiles at a
 * ReLU's half too (Zen 3, dW ms in place / lists, one thread, batch 64,
 * min of four alternating: 16ch 28x28 5.69 / 5.68, 16->32 s2 3.46 / 2.74,
 * 32ch 14x14 6.04 / 4.26, 64ch 7x7 7.13 / 5.38): 6/8 there. The mode is for
 * the tests, which check the paths against each other bit for bit: auto
 * (the default), never, always (every chunk, whatever its density). */
enum { XSPARSE_EXACT = 6, XSPARSE_APPROX = 3, XSPARSE_APPROX_WIDE_AMD = 6, XSPARSE_DEN = 8 };
enum { CONV_XSPARSE_AUTO, CONV_XSPARSE_NEVER, CONV_XSPARSE_ALWAYS };
extern int conv_xsparse_mode;
extern long conv_xsparse_runs; /* the chunks they ran on, for the tests */

/* Whether the backward forms that skip x's zeros pay on this CPU where
 * their terms are one or two instructions: float's (the 3×3 weight
 * gradient input by input, the data gradient at live inputs; one FMA a
 * term) and PAM's approximate data gradient at live inputs (vpaddd and
 * vaddps); their per-input work (lists, a sum across lanes per input)
 * against the dense kernels' terms. Where 512-bit FMAs and adds run at
 * full width (nomul_cpu_fma512_full: Zen 5) the dense kernels win:
 * ResNet20's float step, one thread, 131-134 ms with float's two → 114-118
 * without (Zen 5; bench conv --zeros 0.5 --batch 64 --threads 1, dW ms
 * dense / by input: 16ch 28x28 1.68 / 2.15, 64ch 8x8 1.81 / 2.63); PAM's
 * exact forms (four instructions a term) keep theirs. Auto modes follow
 * it; the tests' always modes do not. */
int conv_skips_pay(void);

/* The weight gradient of 3×3 stride-1 layers input by input
 * (pg_dwplane_job: PAM's exact and approximate forms, images whose dy has
 * no zeros; float's with 16·m output channels per group, images that pass
 * its guard): auto (the default: where it applies and, float's, where
 * conv_skips_pay), never, or always (where it applies, whatever the
 * CPU), for the tests, which check it against the in-place kernels bit for
 * bit; the images' groups it ran. */
enum { CONV_DWPLANE_AUTO, CONV_DWPLANE_NEVER, CONV_DWPLANE_ALWAYS };
extern int conv_dwplane_mode;
extern long conv_dwplane_runs;
/* the job of one image's group xg: dy's rows at yp, ys apart, nvalid
 * output channels into c (ldc = c_out per group) */
pg_dwplane_job conv_dwplane_job(const nomul_conv2d_desc *d, const conv_geom *g, const float *xg,
                                const uint32_t *yp, long ys, float *c, int nvalid, int add,
                                uint32_t *list);
/* whether planelist.h's codes (dwplane.inc, dxlive.inc) can hold the byte
 * offsets of the layer's dy rows, ys values apart, in 32 bits */
int conv_plane_codes_fit(const nomul_conv2d_desc *d, const conv_geom *g, long ys);

/* The data gradient at live inputs only (pg_dxlive_job), for an x whose
 * zeros' gradients are not wanted (nomul_conv2d_backward_live): 3×3
 * stride-1 layers with 32 or 64 output channels per group (PAM's exact
 * form: also 16, and stride 2 undilated), PAM (where its direct path's
 * range check passes, without an offset, dy and the weights free of zeros
 * and subnormals; the
 * approximate form where conv_skips_pay) or float (float/conv_float.c,
 * where conv_skips_pay), where x is at most DXLIVE_DENSE/16 nonzero (judged
 * on its first images). Its sums are its own (not the dense kernels'
 * order). auto (the default), never, always (whatever x's density
 * and the CPU), for the tests; the images' groups it ran. */
enum { DXLIVE_DENSE = 12 };
enum { CONV_DXLIVE_AUTO, CONV_DXLIVE_NEVER, CONV_DXLIVE_ALWAYS };
extern int conv_dxlive_mode;
extern long conv_dxlive_runs;
/* whether fn (the context's kernel, NULL where none) applies to the layer
 * (exact: PAM's exact form; else float's or PAM's approximate one, which
 * also need conv_skips_pay, and stride 1, outside mode always) and to x */
int conv_dxlive_applies(const nomul_conv2d_desc *d, const conv_geom *g, pg_dxlive_fn fn,
                        int exact, const float *x);
/* dx by the live form fn (PAM's where pa, exact or not; float's), image by
 * image on the threads, group by group (dy transposed per image), its
 * operations counted and its runs too; failures reported (fname's) */
void conv_dxlive_run(const char *fname, const nomul_conv2d_desc *d, const conv_geom *g,
                     pg_dxlive_fn fn, int pa, int exact, const float *x, const float *weight,
                     const float *dy, float *dx);

/* The forward on lists of each output pixel's nonzero inputs (the
 * context's csparse: AVX-512; conv2d_sparse.c), for stride-1 layers in
 * implicit form whose groups have 16, 32, 48 or a multiple of 64 output
 * channels (64 at a time, on the same lists), float or PAM without an
 * offset (PAM: where its direct path runs, up to 128 per group); the same
 * sums as the dense kernels, bit for bit (gemm_internal.h's
 * pg_csparse_job). Its terms need one 16-channel
 * row of weights loaded each (the dense kernels broadcast one weight to 32
 * pixels): it is bound by loads, and pays only where a pixel's list serves
 * 64 channels, and only over reductions of FSPARSE_MIN_K taps or more
 * (each output's stores and lists cost what a few of its terms do: VGG's
 * first layer, 3 → 64 channels, K = 27, ran 2× slower). Auto takes it for
 * groups of 64·m output channels, K ≥ FSPARSE_MIN_K, kernels larger than
 * 1×1 (whose dense form wastes no wide columns: bench conv's pointwise
 * 256-channel layer at 50% nonzero, float 21.9 → 22.9 ms), where x's first
 * image has at most FSPARSE_64 / FSPARSE_DEN of its values nonzero.
 * Measured with bench conv --batch 64 --threads 1 (Zen 4), forward ms,
 * dense → lists, at 70% / 50% / 30% nonzero: 64 channels at 7×7 float
 * 2.9 → 2.8 / 2.4 / 1.8, PAM 3.5 → 2.8 / 2.3 / 2.0; 128 channels at
 * 16×16 (VGG), 50%: float 48.5 → 44.8, PAM 57.4 → 44.3; 32 channels at 14×14
 * float 2.5 → - / 3.9 / 2.8, PAM 2.9 → - / 3.6 / 3.3 (slower at every
 * density: never in auto, nor 16 and 48). Float's only where
 * conv_skips_pay: on Zen 5 its dense FMAs win
 * (experiments/bench/conv_pass_bench.c, one thread, 50%: 64 channels at
 * 7×7 1.45 dense / 1.64 lists, 128 at 16×16 25.5 / 37.8), PAM's lists
 * still pay there (64 at 7×7 1.82 / 1.67). The mode is for the tests: auto
 * (the default), never, always (wherever it applies, whatever the
 * density).
 * conv_fsparse_plan (the calling thread, before the images): 1 and fs set
 * where it applies (the weights' table in this thread's buffer), 0 where
 * not, −1 after a report (out of memory). conv_fsparse_scratch: a
 * thread's sums and lists, 0 after a report. conv_fsparse_image: image
 * b's group gr from its padded planes buf (rows at off) into y_g; 0, with
 * nothing written, where the dense kernels must run it. */
enum { FSPARSE_64 = 11, FSPARSE_DEN = 16, FSPARSE_MIN_K = 128 };
/* how many of x's n values have a bit of mask set (the lists' density
 * checks: PAM's nonzeros 0x7F800000, float's 0x7FFFFFFF) */
long conv_nonzeros(const float *x, long n, uint32_t mask);
enum { CONV_FSPARSE_AUTO, CONV_FSPARSE_NEVER, CONV_FSPARSE_ALWAYS };
extern int conv_fsparse_mode;
extern long conv_fsparse_runs; /* the images' groups it ran, for the tests */
typedef struct {
    int nh, pa;
    uint32_t xmin;
    const uint32_t *table; /* per group (K + 1) × cog */
} conv_fsparse;
int conv_fsparse_plan(const nomul_conv2d_desc *d, const conv_geom *g, int pa, float offset,
                      const float *x, const float *weight, conv_fsparse *fs);
int conv_fsparse_scratch(const conv_geom *g, float **part, uint32_t **lists);
int conv_fsparse_image(const conv_fsparse *fs, const conv_geom *g, int wp, int gr,
                       const float *buf, const long *off, float *part, uint32_t *lists,
                       float *yg);

/* The products on the kernels with lanes along channels (the context's
 * clane: AVX-512; conv2d_clane.c) for 3×3, padding-1 layers whose outputs
 * are up to CLANE_MAX_W wide (auto), cut into rows of 7, 8 or 14 pixels,
 * where the dense kernels' wide rows waste the most:
 *  - conv_clane_data, the data gradient of stride-1 layers with 32·m input
 *    channels a group: float, and PAM's approximate form (no offset; dy and
 *    the weights without zeros, every term normal), which also takes 16
 *    channels on rows of 28·m (two 14-pixel segments a tile);
 *  - conv_clane_forward, the forward at stride 1 and 2: float's with 32·m
 *    output channels a group; PAM's (no offset, no zero or subnormal
 *    weight, the direct path's range) with 64·m, on tiles of 6 pixels ×
 *    64 channels, every broadcast tested for a ReLU's zeros (one test for
 *    four weight vectors; with 32 channels, two, it ran at 0.66–0.69 of
 *    float's rate). Where skipping zeros pays (Zen 4), 64·m channels keep
 *    the forward's lists.
 * The same sums as the dense kernels, bit for bit (gemm_internal.h's
 * pg_clane_job). One thread, batch 64, Zen 5, build/conv_pass_bench ...
 * clane=never/always, ms: dX 64ch 7×7 float 1.53 → 1.17, approximate 1.92
 * → 1.30; 32ch 14×14 float 1.36 → 1.23, approximate 1.58 → 1.31; 16ch
 * 28×28 approximate 2.13 → 1.73 (float 1.52 → 1.60: not taken); forward
 * float 64ch 7×7 1.57 → 1.26, 32ch 14×14 1.41 → 1.29, 16 → 32 s2 1.21 →
 * 0.85, 32 → 64 s2 1.28 → 0.79; PAM 64ch 7×7 1.81 → 1.59 (its lists
 * before), 32 → 64 s2 1.23 → 0.94. The mode is for the tests: auto (the
 * default), never, always (any width with a segment). Both return 0, with
 * nothing written and nothing counted, where they do not apply, else 1
 * (done, the terms counted and the forward's bias added; or after a
 * report). */
enum { CLANE_MAX_W = 16 };
enum { CONV_CLANE_AUTO, CONV_CLANE_NEVER, CONV_CLANE_ALWAYS };
extern int conv_clane_mode;
extern long conv_clane_runs; /* the images' groups it ran, for the tests */
int conv_clane_data(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g, int pa,
                    const float *weight, const float *dy, float *dx);
int conv_clane_forward(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g, int pa,
                       const float *weight, const float *bias, const float *x, float *y);

/* The float convolution on nomul's FMA kernels (src/gemm/float/conv_float.c),
 * where conv_float_applies (the instruction set has the kernels, a group has
 * 4 output channels or more); they report their failures (out of memory).
 * conv_float_dw_block computes the weight gradient of the images [b0, b1)
 * into dw (conv2d.c's blocks), on any group size; 0 after a report. */
int conv_float_applies(const conv_geom *g);
void conv_float_forward(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                        const float *x, const float *weight, const float *bias, float *y);
/* live: x's zeros' gradients are not wanted (the live form runs where it
 * applies, dx +0 at x's zeros) */
void conv_float_backward_data(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                             int live, const float *x, const float *weight, const float *dy,
                             float *dx);
int conv_float_dw_block(const char *fn, const nomul_conv2d_desc *d, const conv_geom *g,
                        const float *x, const float *dy, float *dw, long b0, long b1);

#endif
