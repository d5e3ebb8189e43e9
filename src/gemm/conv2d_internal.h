/*
 * conv2d_internal.h — what conv2d.c (the im2col path) and
 * conv2d_depthwise.c (the direct depthwise paths) share: the geometry of a
 * call, the valid span of a kernel tap, the statistics of an input, and the
 * depthwise entry points (private to src/gemm).
 */
#ifndef NOMUL_CONV2D_INTERNAL_H
#define NOMUL_CONV2D_INTERNAL_H

#include "gemm_internal.h"
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

/* Exponent statistics of n values of x (all of it), plus a zero if the
 * descriptor pads: they bound every value im2col writes. */
pg_stats conv_input_stats(const nomul_conv2d_desc *d, const float *x, long n);

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

#endif
