/*
 * dwplane_float_avx512.c — the float form of the weight gradient input by
 * input (../dwplane.inc: fused multiply-adds), compiled with AVX-512 flags,
 * among the float kernels (outside the objects the multiply audit scans).
 */
#define DP_PA 0
#define DP_NAME dwplane_float_avx512
#include "../dwplane.inc"
