/*
 * ukernel_avx512.c — AVX-512 microkernels (this file alone is compiled with
 * AVX-512 flags). Forward 8×32: per k, two 16-lane loads of Y and eight
 * broadcasts of X; per product one vpaddd and one vaddps, no multiply.
 * Gradients 6×32: per product vpaddd, vpandd, vpaddd, vaddps.
 * Zeros: a zero Y lane zeroes its term (zero-masked add), a zero X row skips
 * the accumulation (merge-masked add).
 */
#include <immintrin.h>

#include "gemm_internal.h"

#define PG_PACK_NAME pack_panel
#define PG_PACK_T_NAME pack_tile
#define PG_FWD_ROW_NAME dw_fwd_row
#define PG_STATS_NAME value_stats
#define PG_DOT_ROW_NAME dw_dot_row
#define PG_DX_ROW_NAME dw_dx_row
#define PG_DW_ROW_NAME dw_dw_row
#define PG_PACK_VB 64
#include "pack.inc"

#define FMR 8
#define FNR 32

/* acc (+)= one 32-wide row pair of terms: a zero X row (mx, kx = 0) adds
 * nothing (merge-masked add) */
static inline __attribute__((always_inline)) void
acc_add(__m512 *a0, __m512 *a1, __m512i t0, __m512i t1, const int mx, __mmask16 kx)
{
    if (mx) {
        *a0 = _mm512_mask_add_ps(*a0, kx, *a0, _mm512_castsi512_ps(t0));
        *a1 = _mm512_mask_add_ps(*a1, kx, *a1, _mm512_castsi512_ps(t1));
    } else {
        *a0 = _mm512_add_ps(*a0, _mm512_castsi512_ps(t0));
        *a1 = _mm512_add_ps(*a1, _mm512_castsi512_ps(t1));
    }
}

/* rows r < mr of acc to ct (row r at ct + r·ldc), added to what is there if add */
static inline __attribute__((always_inline)) void
store_rows(__m512 (*acc)[2], int mr, float *ct, long ldc, int add)
{
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        float *row = ct + r * ldc;
        if (add) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(row));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(row + 16));
        }
        _mm512_storeu_ps(row, acc[r][0]);
        _mm512_storeu_ps(row + 16, acc[r][1]);
    }
}

/* The loop body, specialised at compile time for zeros in X (mx: skip the
 * whole row term, merge-masked add) and zeros in Y (my: zero the lanes'
 * terms, zero-masked integer add). */
static inline __attribute__((always_inline)) void
fwd_body(int kc, const uint32_t *xp, const uint32_t *yp, const int32_t *xm, const int32_t *ym,
         float *ct, long ldc, int add, const int mx, const int my)
{
    __m512 acc[FMR][2];
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512i y0 = _mm512_loadu_si512(yp + p * FNR);
        __m512i y1 = _mm512_loadu_si512(yp + p * FNR + 16);
        __mmask16 k0 = 0xFFFF, k1 = 0xFFFF;
        if (my) {
            k0 = _mm512_movepi32_mask(_mm512_loadu_si512(ym + p * FNR));
            k1 = _mm512_movepi32_mask(_mm512_loadu_si512(ym + p * FNR + 16));
        }
#pragma GCC unroll 8
        for (int r = 0; r < FMR; r++) {
            __m512i x = _mm512_set1_epi32((int)xp[p * FMR + r]);
            __m512i t0 = my ? _mm512_maskz_add_epi32(k0, x, y0) : _mm512_add_epi32(x, y0);
            __m512i t1 = my ? _mm512_maskz_add_epi32(k1, x, y1) : _mm512_add_epi32(x, y1);
            acc_add(&acc[r][0], &acc[r][1], t0, t1, mx, mx ? (__mmask16)xm[p * FMR + r] : 0);
        }
    }
    store_rows(acc, FMR, ct, ldc, add);
}

static void fwd_8x32(int kc, const uint32_t *xp, const uint32_t *yp, const int32_t *xm,
                     const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    switch (masked & (PG_ZEROS_X | PG_ZEROS_Y)) {
    case 0: fwd_body(kc, xp, yp, xm, ym, ct, ldc, add, 0, 0); break;
    case PG_ZEROS_X: fwd_body(kc, xp, yp, xm, ym, ct, ldc, add, 1, 0); break;
    case PG_ZEROS_Y: fwd_body(kc, xp, yp, xm, ym, ct, ldc, add, 0, 1); break;
    default: fwd_body(kc, xp, yp, xm, ym, ct, ldc, add, 1, 1); break;
    }
}

/* Forward with Y read in place (no packing): row p of the tile's Y at
 * y + p·ldy, 32 raw float bit patterns; X was packed with Y's adjustment
 * folded in, so a term is still bits(x') + bits(y). A Y value whose exponent
 * field is 0 (zero or subnormal) contributes nothing: the mask comes from a
 * test on the exponent bits, in the kernel. The caller has checked that no
 * Y value is infinite or NaN and that every product stays normal. */
static void fwd_direct_8x32(int kc, const uint32_t *xp, const float *y, long ldy,
                            const int32_t *xm, int xzeros, float *ct, long ldc, int add)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    __m512 acc[FMR][2];
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        __m512i y0 = _mm512_loadu_si512(y + p * ldy);
        __m512i y1 = _mm512_loadu_si512(y + p * ldy + 16);
        __mmask16 k0 = _mm512_test_epi32_mask(y0, expo), k1 = _mm512_test_epi32_mask(y1, expo);
#pragma GCC unroll 8
        for (int r = 0; r < FMR; r++) {
            __m512i x = _mm512_set1_epi32((int)xp[p * FMR + r]);
            __m512i t0 = _mm512_maskz_add_epi32(k0, x, y0);
            __m512i t1 = _mm512_maskz_add_epi32(k1, x, y1);
            acc_add(&acc[r][0], &acc[r][1], t0, t1, 1,
                    xzeros ? (__mmask16)xm[p * FMR + r] : (__mmask16)0xFFFF);
        }
    }
    store_rows(acc, FMR, ct, ldc, add);
}

#define GMR 6
#define GNR 32

/* grad A (ga = 1): u = (y + tile) & sign|exp, term = u + x (x broadcast);
 * grad B (ga = 0): u = (x + tile) & sign|exp, term = u + y. One broadcast
 * serves the two 16-lane halves of a row; zeros as in fwd_body. */
static inline __attribute__((always_inline)) void
grad_body(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
          const int32_t *xm, const int32_t *ym, float *ct, long ldc, int add, const int ga,
          const int mx, const int my)
{
    const __m512i se = _mm512_set1_epi32((int)PG_SIGN_EXP);
    __m512 acc[GMR][2];
    __m512i t[GMR][2];
#pragma GCC unroll 6
    for (int r = 0; r < GMR; r++) {
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        t[r][0] = _mm512_loadu_si512(tile + r * GNR);
        t[r][1] = _mm512_loadu_si512(tile + r * GNR + 16);
    }
    for (int p = 0; p < kc; p++) {
        __m512i y0 = _mm512_loadu_si512(yp + p * GNR);
        __m512i y1 = _mm512_loadu_si512(yp + p * GNR + 16);
        __mmask16 k0 = 0xFFFF, k1 = 0xFFFF;
        if (my) {
            k0 = _mm512_movepi32_mask(_mm512_loadu_si512(ym + p * GNR));
            k1 = _mm512_movepi32_mask(_mm512_loadu_si512(ym + p * GNR + 16));
        }
#pragma GCC unroll 6
        for (int r = 0; r < GMR; r++) {
            __m512i x = _mm512_set1_epi32((int)xp[p * GMR + r]);
            __m512i s0, s1, o0, o1;
            if (ga) {
                s0 = _mm512_and_si512(_mm512_add_epi32(y0, t[r][0]), se);
                s1 = _mm512_and_si512(_mm512_add_epi32(y1, t[r][1]), se);
                o0 = x;
                o1 = x;
            } else {
                s0 = _mm512_and_si512(_mm512_add_epi32(x, t[r][0]), se);
                s1 = _mm512_and_si512(_mm512_add_epi32(x, t[r][1]), se);
                o0 = y0;
                o1 = y1;
            }
            __m512i u0 = my ? _mm512_maskz_add_epi32(k0, s0, o0) : _mm512_add_epi32(s0, o0);
            __m512i u1 = my ? _mm512_maskz_add_epi32(k1, s1, o1) : _mm512_add_epi32(s1, o1);
            acc_add(&acc[r][0], &acc[r][1], u0, u1, mx, mx ? (__mmask16)xm[p * GMR + r] : 0);
        }
    }
    store_rows(acc, GMR, ct, ldc, add);
}

#define GRAD_DISPATCH(name, ga)                                                                 \
    static void name(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,      \
                     const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc,     \
                     int add)                                                                   \
    {                                                                                           \
        switch (masked & (PG_ZEROS_X | PG_ZEROS_Y)) {                                           \
        case 0: grad_body(kc, xp, yp, tile, xm, ym, ct, ldc, add, ga, 0, 0); break;             \
        case PG_ZEROS_X: grad_body(kc, xp, yp, tile, xm, ym, ct, ldc, add, ga, 1, 0); break;    \
        case PG_ZEROS_Y: grad_body(kc, xp, yp, tile, xm, ym, ct, ldc, add, ga, 0, 1); break;    \
        default: grad_body(kc, xp, yp, tile, xm, ym, ct, ldc, add, ga, 1, 1); break;            \
        }                                                                                       \
    }
GRAD_DISPATCH(grad_a_6x32, 1)
GRAD_DISPATCH(grad_b_6x32, 0)

/* This instruction set's context: its kernels, packing and block sizes,
 * registered together (gemm_internal.h). */
const pg_cntx pg_cntx_avx512 = {
    .isa = NOMUL_ISA_AVX512,
    .fwd = {FMR, FNR, fwd_8x32},
    .grad = {GMR, GNR, grad_a_6x32, grad_b_6x32},
    .fwd_direct = fwd_direct_8x32,
    .pack = pack_panel,
    .pack_tile = pack_tile,
    .dw_rows = {dw_fwd_row, dw_dx_row, dw_dw_row, dw_dot_row, value_stats},
    .kc = PG_KC,
    .mc = PG_MC,
    .nc = PG_NC,
};
