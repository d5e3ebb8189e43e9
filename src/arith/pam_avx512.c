/*
 * pam_avx512.c — the elementwise kernels of pam_kernels.inc for AVX-512
 * (16 lanes; this file alone is compiled with -mavx512f -mavx512bw
 * -mavx512dq -mavx512vl).
 */
#define NOMUL_VEC_BYTES 64
#define NOMUL_KERNEL_TABLE nomul_elt_kernels_avx512
#define NOMUL_PA_FUSED nomul_pa_fused_avx512
#include "pam_kernels.inc"
