/*
 * ukernel_avx2.c — AVX2 microkernels (this file alone is compiled with
 * -mavx2). Forward 6×16, gradients 4×8; zeros are cleared with vpand against
 * the packed masks (AVX2 has no mask registers).
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
#define PG_PACK_VB 32
#include "pack.inc"

#define FMR 6
#define FNR 16

static inline __m256 as_ps(__m256i v) { return _mm256_castsi256_ps(v); }

static void fwd_6x16(int kc, const uint32_t *xp, const uint32_t *yp, const int32_t *xm,
                     const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    __m256 acc[FMR][2];
#pragma GCC unroll 6
    for (int r = 0; r < FMR; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    if (!masked) {
        for (int p = 0; p < kc; p++) {
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(yp + p * FNR));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(yp + p * FNR + 8));
#pragma GCC unroll 6
            for (int r = 0; r < FMR; r++) {
                __m256i x = _mm256_set1_epi32((int)xp[p * FMR + r]);
                acc[r][0] = _mm256_add_ps(acc[r][0], as_ps(_mm256_add_epi32(x, y0)));
                acc[r][1] = _mm256_add_ps(acc[r][1], as_ps(_mm256_add_epi32(x, y1)));
            }
        }
    } else {
        for (int p = 0; p < kc; p++) {
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(yp + p * FNR));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(yp + p * FNR + 8));
            __m256i ones = _mm256_set1_epi32(-1);
            __m256i m0 = (masked & PG_ZEROS_Y) ? _mm256_loadu_si256((const __m256i *)(ym + p * FNR)) : ones;
            __m256i m1 = (masked & PG_ZEROS_Y) ? _mm256_loadu_si256((const __m256i *)(ym + p * FNR + 8)) : ones;
#pragma GCC unroll 6
            for (int r = 0; r < FMR; r++) {
                __m256i x = _mm256_set1_epi32((int)xp[p * FMR + r]);
                __m256i mx = _mm256_set1_epi32((masked & PG_ZEROS_X) ? xm[p * FMR + r] : -1);
                acc[r][0] = _mm256_add_ps(acc[r][0],
                                          as_ps(_mm256_and_si256(_mm256_and_si256(_mm256_add_epi32(x, y0), m0), mx)));
                acc[r][1] = _mm256_add_ps(acc[r][1],
                                          as_ps(_mm256_and_si256(_mm256_and_si256(_mm256_add_epi32(x, y1), m1), mx)));
            }
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < FMR; r++) {
        float *row = ct + r * ldc;
        if (add) {
            acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(row));
            acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(row + 8));
        }
        _mm256_storeu_ps(row, acc[r][0]);
        _mm256_storeu_ps(row + 8, acc[r][1]);
    }
}

#define GMR 4
#define GNR 8

/* grad A (ga = 1): u = (y + tile) & sign|exp, term = u + x (x broadcast);
 * grad B (ga = 0): u = (x + tile) & sign|exp, term = u + y */
static inline __attribute__((always_inline)) void
grad_body(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
          const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc, int add,
          const int ga)
{
    const __m256i se = _mm256_set1_epi32((int)PG_SIGN_EXP);
    __m256 acc[GMR];
    __m256i t[GMR];
#pragma GCC unroll 4
    for (int r = 0; r < GMR; r++) {
        acc[r] = _mm256_setzero_ps();
        t[r] = _mm256_loadu_si256((const __m256i *)(tile + r * GNR));
    }
    for (int p = 0; p < kc; p++) {
        __m256i y = _mm256_loadu_si256((const __m256i *)(yp + p * GNR));
        __m256i my = (masked & PG_ZEROS_Y) ? _mm256_loadu_si256((const __m256i *)(ym + p * GNR)) : _mm256_set1_epi32(-1);
#pragma GCC unroll 4
        for (int r = 0; r < GMR; r++) {
            __m256i x = _mm256_set1_epi32((int)xp[p * GMR + r]), u;
            if (ga)
                u = _mm256_add_epi32(_mm256_and_si256(_mm256_add_epi32(y, t[r]), se), x);
            else
                u = _mm256_add_epi32(_mm256_and_si256(_mm256_add_epi32(x, t[r]), se), y);
            if (masked)
                u = _mm256_and_si256(_mm256_and_si256(u, my), _mm256_set1_epi32((masked & PG_ZEROS_X) ? xm[p * GMR + r] : -1));
            acc[r] = _mm256_add_ps(acc[r], as_ps(u));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < GMR; r++) {
        float *row = ct + r * ldc;
        _mm256_storeu_ps(row, add ? _mm256_add_ps(acc[r], _mm256_loadu_ps(row)) : acc[r]);
    }
}

static void grad_a_4x8(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
                       const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    grad_body(kc, xp, yp, tile, xm, ym, masked, ct, ldc, add, 1);
}

static void grad_b_4x8(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
                       const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    grad_body(kc, xp, yp, tile, xm, ym, masked, ct, ldc, add, 0);
}

/* This instruction set's context: its kernels, packing and block sizes,
 * registered together (gemm_internal.h). */
const pg_cntx pg_cntx_avx2 = {
    .isa = NOMUL_ISA_AVX2,
    .fwd = {FMR, FNR, fwd_6x16},
    .grad = {GMR, GNR, grad_a_4x8, grad_b_4x8},
    .fwd_direct = NULL,
    .fdirect = {6, 16, fd_6x16_avx2, NULL},
    .pack = pack_panel,
    .pack_tile = pack_tile,
    .dw_rows = {dw_fwd_row, dw_dx_row, dw_dw_row, dw_dot_row, value_stats},
    .kc = PG_KC,
    .mc = PG_MC,
    .nc = PG_NC,
};
