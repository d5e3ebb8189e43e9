/*
 * dwplane_avx512.c — the PAM form (approximate) of the weight gradient input
 * by input (dwplane.inc), compiled with AVX-512 flags.
 */
#define DP_PA 1
#define DP_NAME dwplane_pam_avx512
#include "dwplane.inc"
