/*
 * dxlive_avx512.c — the PAM forms (exact and approximate) of the data
 * gradient at live inputs (dxlive.inc), compiled with AVX-512 flags.
 */
#define DX_PA 1
#define DX_NAME dxlive_pam_avx512
#include "dxlive.inc"
