/*
 * csparse_float_avx512.c — the float (FMA) form of the convolution forward
 * on lists of nonzero inputs (../csparse.inc), compiled with AVX-512 flags;
 * here, with the float kernels, outside the objects the multiply audit
 * scans.
 */
#include "../gemm_internal.h"

#define CS_PA 0
#define CS_NAME csparse_float_avx512
#include "../csparse.inc"
