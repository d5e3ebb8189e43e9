/*
 * dxlive_float_avx512.c — the float form of the data gradient at live
 * inputs (../dxlive.inc: fused multiply-adds), compiled with AVX-512 flags,
 * among the float kernels (outside the objects the multiply audit scans).
 */
#define DX_PA 0
#define DX_NAME dxlive_float_avx512
#include "../dxlive.inc"
