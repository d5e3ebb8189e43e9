/*
 * nomul/conv.h — 2-D convolution (NCHW, cross-correlation as in PyTorch)
 * with stride, padding, dilation and groups, forward and backward (data and
 * weights), in standard float (through OpenBLAS) or piecewise affine
 * arithmetic (every product a PAM, through the PAM matrix engine) as the
 * operation configuration says, built on im2col.
 *
 * x: (n, c_in, h, w); weight: (c_out, c_in / groups, kh, kw); bias: (c_out)
 * or NULL; y: (n, c_out, oh, ow) with oh = (h + 2 pad_h − dil_h (kh − 1) − 1)
 * / stride_h + 1, likewise ow.
 */
#ifndef NOMUL_CONV_H
#define NOMUL_CONV_H

#include "nomul/opcfg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nomul_conv2d_desc {
    int n, c_in, h, w;
    int c_out, kh, kw;
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dil_h, dil_w;
    int groups;
} nomul_conv2d_desc;

/* Checks a descriptor and gives the output size; 0 (and a reported error,
 * nomul/error.h) if it is invalid. */
int nomul_conv2d_output_size(const nomul_conv2d_desc *d, int *oh, int *ow);

/* y = conv(x, weight) + bias, as cfg (the conv family's configuration,
 * nomul/opcfg.h) says: standard, float products (OpenBLAS SGEMM); piecewise
 * affine, PAM products with cfg->offset. */
void nomul_conv2d_forward(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg, const float *x,
                          const float *weight, const float *bias, float *y);

/* dx = ∂/∂x given dy (written, not accumulated). Piecewise affine with
 * cfg->approx_bwd 0 is the exact derivative of every PAM, with approx_bwd 1
 * the PAM products with the transposed weights. x is needed by the exact PA
 * derivative only. */
void nomul_conv2d_backward_data(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                const float *x, const float *weight, const float *dy, float *dx);

/* dweight = ∂/∂weight and dbias = Σ dy (if not NULL), written; weight is
 * needed by the exact PA derivative only. */
void nomul_conv2d_backward_weight(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                  const float *x, const float *weight, const float *dy,
                                  float *dweight, float *dbias);

/* Both gradients of one convolution: nomul_conv2d_backward_data into dx
 * (unless NULL), then nomul_conv2d_backward_weight into dweight and dbias
 * (unless dweight is NULL), the same results as the two calls; the values
 * of x, dy and the weights are classified once for both (the PA paths' range
 * checks). dx must not overlap x, weight or dy. */
void nomul_conv2d_backward(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg, const float *x,
                           const float *weight, const float *dy, float *dx, float *dweight,
                           float *dbias);

/* The same for an x whose gradient is wanted only where x ≠ 0, such as a
 * ReLU's output (its backward drops the gradient at its zeros): on 3×3
 * stride-1 layers with 32 or 64 output channels per group (PA with exact
 * derivatives: also 16, and stride 2 undilated; AVX-512; float and PA's
 * approximate backward not
 * where 512-bit FMAs and adds run at full width, nomul_cpu_fma512_full in
 * nomul/isa.h, whose dense kernels are faster), where x is sparse enough,
 * only the live inputs' gradients are computed (about half a ReLU's: the
 * data gradient's work halved) and dx is +0 at x's zeros; elsewhere dx is
 * nomul_conv2d_backward_data's. The live inputs' sums are the same terms in
 * another order, so their last bits can differ from
 * nomul_conv2d_backward_data's. x is needed in every mode. The autodiff
 * graph calls it for a convolution of a relu's or batch_norm_relu's output. */
void nomul_conv2d_backward_data_live(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                     const float *x, const float *weight, const float *dy,
                                     float *dx);
void nomul_conv2d_backward_live(const nomul_conv2d_desc *d, const nomul_op_cfg *cfg,
                                const float *x, const float *weight, const float *dy, float *dx,
                                float *dweight, float *dbias);

#ifdef __cplusplus
}
#endif
#endif
