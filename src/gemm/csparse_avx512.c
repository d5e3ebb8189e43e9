/*
 * csparse_avx512.c — the PAM form of the convolution forward on lists of
 * nonzero inputs (csparse.inc), compiled with AVX-512 flags.
 */
#include "gemm_internal.h"

#define CS_PA 1
#define CS_NAME csparse_pam_avx512
#include "csparse.inc"
