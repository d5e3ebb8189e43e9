/*
 * clane_float_avx512.c — the float (FMA) form of the convolution products
 * with lanes along the output channels (../clane.inc), compiled with
 * AVX-512 flags; here, with the float kernels, outside the objects the
 * multiply audit scans.
 */
#include "../gemm_internal.h"

#define CL_PA 0
#define CL_NAME clane_float_avx512
#include "../clane.inc"
