/*
 * pam_avx2.c — the elementwise kernels of pam_kernels.inc for AVX2
 * (8 lanes; this file alone is compiled with -mavx2).
 */
#define NOMUL_VEC_BYTES 32
#define NOMUL_KERNEL_TABLE nomul_elt_kernels_avx2
#define NOMUL_PA_FUSED nomul_pa_fused_avx2
#include "pam_kernels.inc"
