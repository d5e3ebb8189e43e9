/*
 * clane_avx512.c — the PAM form of the convolution products with lanes
 * along the output channels (clane.inc), compiled with AVX-512 flags.
 */
#include "gemm_internal.h"

#define CL_PA 1
#define CL_NAME clane_pam_avx512
#include "clane.inc"
