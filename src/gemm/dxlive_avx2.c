/*
 * dxlive_avx2.c — the PAM forms (exact and approximate) of the data
 * gradient at live inputs (dxlive.inc), compiled with AVX2 flags: the
 * AVX-512 form's sums, bit for bit, on 8-lane halves.
 */
#define DX_PA 1
#define DX_AVX2 1
#define DX_NAME dxlive_pam_avx2
#include "dxlive.inc"
