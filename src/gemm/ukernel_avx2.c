/*
 * ukernel_avx2.c — AVX2 microkernels (this file alone is compiled with
 * -mavx2). Forward 6×16, gradients 4×8; zeros are cleared with vpand against
 * the packed masks (AVX2 has no mask registers).
 */
#include <immintrin.h>

#include "gemm_internal.h"
#include "tile_avx2.h"

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
#define GMR 4
#define GNR 8

static inline __m256 as_ps(__m256i v) { return _mm256_castsi256_ps(v); }

/* The packed kernels' loop body (fwd_6x16, grad_a_4x8, grad_b_4x8),
 * specialised at compile time for:
 *  - the term (grad): the forward's x + y, or an exact gradient's grad A
 *    ((y + t) & sign|exp) + x (ga) or grad B ((x + t) & sign|exp) + y, t the
 *    MR × 8·nh tile of T's mantissas, held in registers;
 *  - zeros in X (mx: the row's term cleared by its broadcast mask) and in Y
 *    (my: the lanes' terms cleared by their mask), a cleared term being +0,
 *    which leaves a sum from +0 as it is (such a sum is never −0);
 *  - the width (nh vectors of 8 lanes).
 * The masks go into vpand as memory operands where they are not kept in
 * registers: a 6×16 tile's twelve sums, its two Y vectors and a broadcast
 * fill the sixteen registers. The tile's sums from +0 over the block, stored
 * whole to ct (row r at ct + r·ldc), added to what is there if add. */
static inline __attribute__((always_inline)) void
pam_body(int kc, const uint32_t *xp, const int32_t *xm, const int XS, const uint32_t *yp,
         const int32_t *ym, const uint32_t *tile, float *ct, long ldc, int add, const int MR,
         const int nh, const int mx, const int my, const int grad, const int ga)
{
    const int nr = 8 * nh;
    const __m256i se = _mm256_set1_epi32((int)PG_SIGN_EXP);
    __m256 acc[FMR][2];
    __m256i t[FMR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        for (int h = 0; h < nh; h++) {
            acc[r][h] = _mm256_setzero_ps();
            if (grad)
                t[r][h] = _mm256_loadu_si256((const __m256i *)(tile + r * nr + 8 * h));
        }
    for (int p = 0; p < kc; p++) {
        __m256i y[2];
        for (int h = 0; h < nh; h++)
            y[h] = _mm256_loadu_si256((const __m256i *)(yp + p * nr + 8 * h));
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256i xb = _mm256_set1_epi32((int)xp[p * XS + r]);
            __m256i kx = _mm256_setzero_si256();
            if (mx)
                kx = _mm256_set1_epi32(xm[p * XS + r]);
            for (int h = 0; h < nh; h++) {
                __m256i u;
                if (!grad)
                    u = _mm256_add_epi32(xb, y[h]);
                else if (ga)
                    u = _mm256_add_epi32(_mm256_and_si256(_mm256_add_epi32(y[h], t[r][h]), se), xb);
                else
                    u = _mm256_add_epi32(_mm256_and_si256(_mm256_add_epi32(xb, t[r][h]), se), y[h]);
                if (my)
                    u = _mm256_and_si256(u, _mm256_loadu_si256((const __m256i *)(ym + p * nr + 8 * h)));
                if (mx)
                    u = _mm256_and_si256(u, kx);
                acc[r][h] = _mm256_add_ps(acc[r][h], as_ps(u));
            }
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        for (int h = 0; h < nh; h++) {
            float *row = ct + r * ldc + 8 * h;
            if (add)
                acc[r][h] = _mm256_add_ps(acc[r][h], _mm256_loadu_ps(row));
            _mm256_storeu_ps(row, acc[r][h]);
        }
}

#define PACKED_BODY(MR, nh, grad, ga, mx, my)                                                   \
    pam_body(kc, xp, xm, MR, yp, ym, tile, ct, ldc, add, MR, nh, mx, my, grad, ga)

/* The forward's 6×16 tile with zeros: two passes of three rows over the
 * block (the masks and a term's temporary would not fit beside twelve sums
 * in the sixteen registers, and spilled sums cost more than reading the Y
 * panel twice from L1) */
#define FWD_HALVES(mx, my)                                                                      \
    do {                                                                                        \
        pam_body(kc, xp, xm, FMR, yp, ym, NULL, ct, ldc, add, 3, 2, mx, my, 0, 0);              \
        pam_body(kc, xp + 3, xm + 3, FMR, yp, ym, NULL, ct + 3 * ldc, ldc, add, 3, 2, mx, my,   \
                 0, 0);                                                                         \
    } while (0)

/* one packed kernel, specialised for which panels hold zeros */
#define PACKED_DISPATCH(MR, nh, grad, ga)                                                       \
    switch (masked & (PG_ZEROS_X | PG_ZEROS_Y)) {                                               \
    case 0: PACKED_BODY(MR, nh, grad, ga, 0, 0); break;                                         \
    case PG_ZEROS_X: PACKED_BODY(MR, nh, grad, ga, 1, 0); break;                                \
    case PG_ZEROS_Y: PACKED_BODY(MR, nh, grad, ga, 0, 1); break;                                \
    default: PACKED_BODY(MR, nh, grad, ga, 1, 1); break;                                        \
    }

static void fwd_6x16(int kc, const uint32_t *xp, const uint32_t *yp, const int32_t *xm,
                     const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    switch (masked & (PG_ZEROS_X | PG_ZEROS_Y)) {
    case 0: pam_body(kc, xp, xm, FMR, yp, ym, NULL, ct, ldc, add, FMR, 2, 0, 0, 0, 0); break;
    case PG_ZEROS_X: FWD_HALVES(1, 0); break;
    case PG_ZEROS_Y: FWD_HALVES(0, 1); break;
    default: FWD_HALVES(1, 1); break;
    }
}

static void grad_a_4x8(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
                       const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    PACKED_DISPATCH(GMR, 1, 1, 1)
}

static void grad_b_4x8(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,
                       const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc, int add)
{
    PACKED_DISPATCH(GMR, 1, 1, 0)
}

/* rows r < MR of acc (nh vectors of 8) to ct (row r at ct + r·ldc), added
 * to what is there if add; narrow (nw not NULL): to their narrow places,
 * the earlier blocks' sums from the wide strip at nw->src + r0·NR (NR wide) */
static inline __attribute__((always_inline)) void
direct_store(__m256 (*acc)[2], float *ct, long ldc, int add, const pg_narrow *nw, const int r0,
             const int MR, const int nh)
{
    const int NR = 8 * nh;
    if (nw) {
        tile2_store_narrow(ct + r0 * ldc, ldc, acc, MR, NR, nw, add ? nw->src + r0 * NR : NULL,
                           NR, add, MR, nh);
        return;
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        for (int h = 0; h < nh; h++) {
            float *row = ct + (r0 + r) * ldc + 8 * h;
            if (add)
                acc[r][h] = _mm256_add_ps(acc[r][h], _mm256_loadu_ps(row));
            _mm256_storeu_ps(row, acc[r][h]);
        }
}

/* Forward with Y read in place (no packing): row p of the tile's Y at
 * y + yoff[p], 16 raw float bit patterns; X packed with Y's adjustment
 * folded in, so a term is still bits(x') + bits(y). A Y value whose exponent
 * field is 0 (zero or subnormal) contributes +0: its lanes' mask comes from a
 * test on the exponent bits, once per row of Y; a zero X row too, by its
 * packed mask (xzeros). Rows r0 .. r0 + 2 of the 6×16 tile: the tile runs in
 * two such passes, as the packed forward with zeros does (fwd_6x16). The
 * caller has checked that no Y value is infinite or NaN and that every
 * product stays normal. */
static inline __attribute__((always_inline)) void
fwd_direct_body(int kc, const uint32_t *xp, const float *y, const long *yoff, const int32_t *xm,
                float *ct, long ldc, int add, const pg_narrow *nw, const int r0,
                const int xzeros)
{
    const __m256i expo = _mm256_set1_epi32(0x7F800000);
    __m256 acc[3][2];
#pragma GCC unroll 3
    for (int r = 0; r < 3; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int p = 0; p < kc; p++) {
        const float *row = y + yoff[p];
        __m256i yv[2], z[2];
        for (int h = 0; h < 2; h++) {
            yv[h] = _mm256_loadu_si256((const __m256i *)(row + 8 * h));
            z[h] = _mm256_cmpeq_epi32(_mm256_and_si256(yv[h], expo), _mm256_setzero_si256());
        }
#pragma GCC unroll 3
        for (int r = 0; r < 3; r++) {
            const __m256i xb = _mm256_set1_epi32((int)xp[p * FMR + r0 + r]);
            for (int h = 0; h < 2; h++) {
                __m256i u = _mm256_andnot_si256(z[h], _mm256_add_epi32(xb, yv[h]));
                if (xzeros)
                    u = _mm256_and_si256(u, _mm256_set1_epi32(xm[p * FMR + r0 + r]));
                acc[r][h] = _mm256_add_ps(acc[r][h], as_ps(u));
            }
        }
    }
    direct_store(acc, ct, ldc, add, nw, r0, 3, 2);
}

static void fwd_direct_6x16(int kc, const uint32_t *xp, const float *y, const long *yoff,
                            const int32_t *xm, int xzeros, float *ct, long ldc, int add,
                            const pg_narrow *nw)
{
    if (xzeros) {
        fwd_direct_body(kc, xp, y, yoff, xm, ct, ldc, add, nw, 0, 1);
        fwd_direct_body(kc, xp, y, yoff, xm, ct, ldc, add, nw, 3, 1);
    } else {
        fwd_direct_body(kc, xp, y, yoff, xm, ct, ldc, add, nw, 0, 0);
        fwd_direct_body(kc, xp, y, yoff, xm, ct, ldc, add, nw, 3, 0);
    }
}

/* The exact grad-B product with Y read in place (a convolution's exact data
 * gradient in implicit form, Y its padded dy): row p of the tile's Y at
 * y + yoff[p], 8 raw floats; X packed as for grad_b; the tile's T fixed over
 * the reduction, its mantissas in registers. A Y value whose exponent field
 * is 0 (zero or subnormal) contributes +0 (a test on the exponent bits, as
 * fwd_direct_6x16), a zero X row too (its mask, when xzeros). The caller has
 * checked that no value is infinite or NaN and that every term stays
 * normal. */
static inline __attribute__((always_inline)) void
grad_b_direct_body(int kc, const uint32_t *xp, const float *y, const long *yoff,
                   const uint32_t *tile, const int32_t *xm, float *ct, long ldc, int add,
                   const pg_narrow *nw, const int xzeros)
{
    const __m256i expo = _mm256_set1_epi32(0x7F800000);
    const __m256i se = _mm256_set1_epi32((int)PG_SIGN_EXP);
    __m256 acc[GMR][2];
    __m256i t[GMR];
#pragma GCC unroll 4
    for (int r = 0; r < GMR; r++) {
        acc[r][0] = _mm256_setzero_ps();
        t[r] = _mm256_loadu_si256((const __m256i *)(tile + r * GNR));
    }
    for (int p = 0; p < kc; p++) {
        const __m256i yv = _mm256_loadu_si256((const __m256i *)(y + yoff[p]));
        const __m256i z = _mm256_cmpeq_epi32(_mm256_and_si256(yv, expo), _mm256_setzero_si256());
#pragma GCC unroll 4
        for (int r = 0; r < GMR; r++) {
            const __m256i xb = _mm256_set1_epi32((int)xp[p * GMR + r]);
            __m256i s = _mm256_and_si256(_mm256_add_epi32(xb, t[r]), se);
            __m256i u = _mm256_andnot_si256(z, _mm256_add_epi32(s, yv));
            if (xzeros)
                u = _mm256_and_si256(u, _mm256_set1_epi32(xm[p * GMR + r]));
            acc[r][0] = _mm256_add_ps(acc[r][0], as_ps(u));
        }
    }
    direct_store(acc, ct, ldc, add, nw, 0, GMR, 1);
}

static void grad_b_direct_4x8(int kc, const uint32_t *xp, const float *y, const long *yoff,
                              const uint32_t *tile, const int32_t *xm, int xzeros, float *ct,
                              long ldc, int add, const pg_narrow *nw)
{
    if (xzeros)
        grad_b_direct_body(kc, xp, y, yoff, tile, xm, ct, ldc, add, nw, 1);
    else
        grad_b_direct_body(kc, xp, y, yoff, tile, xm, ct, ldc, add, nw, 0);
}

/* This instruction set's context: its kernels, packing and block sizes,
 * registered together (gemm_internal.h). */
const pg_cntx pg_cntx_avx2 = {
    .isa = NOMUL_ISA_AVX2,
    .fwd = {FMR, FNR, fwd_6x16},
    .grad = {GMR, GNR, grad_a_4x8, grad_b_4x8},
    .fwd_direct = fwd_direct_6x16,
    .grad_b_direct = grad_b_direct_4x8,
    .fdirect = {6, 16, fd_6x16_avx2, NULL},
    .pack = pack_panel,
    .pack_tile = pack_tile,
    .dw_rows = {dw_fwd_row, dw_dx_row, dw_dw_row, dw_dot_row, value_stats},
    .kc = PG_KC,
    .mc = PG_MC,
    .nc = PG_NC,
};
