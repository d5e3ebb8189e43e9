/*
 * bn_float_avx2.c — batch norm's float passes (bn_float.inc) compiled for
 * AVX2 (this file alone gets those flags, and -ffp-contract=off).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../core/internal.h"
#include "functional_internal.h"

#define BNF_PASSES nomul_bnf_passes_avx2
#include "bn_float.inc"
