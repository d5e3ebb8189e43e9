/*
 * ukernel_avx2.c — AVX2 microkernels (this file alone is compiled with
 * -mavx2): the packed forward 6×16 and gradients 4×8, the forward and the
 * exact grad B with Y read in place, the weight gradients with X read in
 * place (6×16 / 6×8, exact 2×16) or on lists of its nonzeros. AVX2 has no
 * mask registers: a zero's term is cleared with vpand (the packed masks) or
 * vpandn (a test on the exponent bits), a cleared term adding +0.
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

/* rows r < MR of acc (nh vectors of 8) to ct (row r at ct + r·ldc), added
 * to what is there if add; narrow (nw not NULL): to their narrow places,
 * the earlier blocks' sums from the wide strip at nw->src + r0·NR (NR wide) */
static inline __attribute__((always_inline)) void
store_rows(__m256 (*acc)[2], float *ct, long ldc, int add, const pg_narrow *nw, const int r0,
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
    store_rows(acc, ct, ldc, add, NULL, 0, MR, nh);
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
    store_rows(acc, ct, ldc, add, nw, r0, 3, 2);
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
    store_rows(acc, ct, ldc, add, nw, 0, GMR, 1);
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

/* The weight gradients with X read in place (gemm_internal.h,
 * pg_xdirect_kernel and pg_grad_xdirect_kernel; a convolution's column
 * matrix): X's row r at x + xoff[r] (rows past mvalid read row 0's, never
 * stored), its reduction index p at (p / seg)·ss + p % seg; Y packed
 * (yp[p·8·nh + c], with Y's adjustment, or raw for the exact form), its masks
 * ym read only when my. An x whose exponent field is 0 (zero or subnormal)
 * adds +0: its lanes' mask from a test on the broadcast; grad: the exact
 * term ((x + t) & sign|exp) + y, t the weight's tile (its mantissa field and
 * the partner's adjustment) in registers. Each sum continues from C's value
 * when add (a sum from +0 of such terms is never −0, so +0 terms leave it as
 * it is); columns past nvalid are neither read nor written. MR ≤ 3 rows
 * (the approximate form's callers split 6-row tiles in two; the exact
 * form's tile is 2 × 16). */
static inline __attribute__((always_inline)) void
xdirect_body(int k, const float *x, const long *xoff, int seg, long ss, int mvalid,
             const uint32_t *yp, const int32_t *ym, const uint32_t *tile, int nvalid, float *c,
             long ldc, int add, const int MR, const int nh, const int my, const int grad)
{
    const __m256i expo = _mm256_set1_epi32(0x7F800000);
    const __m256i se = _mm256_set1_epi32((int)PG_SIGN_EXP);
    const int nr = 8 * nh;
    __m256i km[2];
    tile2_lanes(0, nvalid, km);
    const float *xr[GMR];
    __m256 acc[GMR][2];
    __m256i t[GMR][2];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) {
        xr[r] = x + xoff[r < mvalid ? r : 0];
        for (int h = 0; h < nh; h++)
            if (grad)
                t[r][h] = _mm256_loadu_si256((const __m256i *)(tile + r * nr + 8 * h));
    }
    tile2_load(acc, c, ldc, km, mvalid, add, MR, nh);
    long at = 0; /* the packed Y's row p: yp + at */
    for (int p0 = 0; p0 < k; p0 += seg) {
        for (int q = 0; q < seg; q++, at += nr) {
            __m256i y[2], ky[2];
            for (int h = 0; h < nh; h++) {
                y[h] = _mm256_loadu_si256((const __m256i *)(yp + at + 8 * h));
                if (my)
                    ky[h] = _mm256_loadu_si256((const __m256i *)(ym + at + 8 * h));
            }
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const __m256i xb = _mm256_set1_epi32((int)as_bits(xr[r][q]));
                const __m256i z = _mm256_cmpeq_epi32(_mm256_and_si256(xb, expo),
                                                     _mm256_setzero_si256());
                for (int h = 0; h < nh; h++) {
                    __m256i a = grad ? _mm256_and_si256(_mm256_add_epi32(xb, t[r][h]), se) : xb;
                    __m256i u = _mm256_andnot_si256(z, _mm256_add_epi32(a, y[h]));
                    if (my)
                        u = _mm256_and_si256(u, ky[h]);
                    acc[r][h] = _mm256_add_ps(acc[r][h], as_ps(u));
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
            xr[r] += ss;
    }
    tile2_store(c, ldc, acc, km, mvalid, MR, nh);
}

/* the approximate form's 6-row tile: rows 0–2, then 3–5 where valid (a
 * half with no valid row is skipped: its xoff entries may lie past K) */
#define XDIRECT(name, nh)                                                                       \
    static void name(int k, const float *x, const long *xoff, int seg, long ss, int mvalid,    \
                     const uint32_t *yp, const int32_t *ym, int nvalid, float *c, long ldc,    \
                     int add)                                                                  \
    {                                                                                           \
        for (int r0 = 0; r0 < mvalid; r0 += 3) {                                                \
            if (ym)                                                                             \
                xdirect_body(k, x, xoff + r0, seg, ss, mvalid - r0, yp, ym, NULL, nvalid,       \
                             c + r0 * ldc, ldc, add, 3, nh, 1, 0);                              \
            else                                                                                \
                xdirect_body(k, x, xoff + r0, seg, ss, mvalid - r0, yp, ym, NULL, nvalid,       \
                             c + r0 * ldc, ldc, add, 3, nh, 0, 0);                              \
        }                                                                                       \
    }
XDIRECT(xdirect_6x16, 2)
XDIRECT(xdirect_6x8, 1)

/* the exact form's tile: 2 × 16 (its T in four registers beside four sums;
 * a list entry then feeds two vectors of terms) */
#define XGMR 2
#define XGNR 16
static void grad_xdirect_2x16(int k, const float *x, const long *xoff, int seg, long ss,
                              int mvalid, const uint32_t *yp, const int32_t *ym,
                              const uint32_t *tile, int nvalid, float *c, long ldc, int add)
{
    if (ym)
        xdirect_body(k, x, xoff, seg, ss, mvalid, yp, ym, tile, nvalid, c, ldc, add, XGMR, 2, 1, 1);
    else
        xdirect_body(k, x, xoff, seg, ss, mvalid, yp, ym, tile, nvalid, c, ldc, add, XGMR, 2, 0, 1);
}

/* tile_avx2.h's left-packing permutations: for a byte m of lane bits, the
 * indices of its set bits in order, one per byte (the rest 0) */
const uint64_t pg_left_pack8[256] = {
    0x0000000000000000ULL, 0x0000000000000000ULL, 0x0000000000000001ULL, 0x0000000000000100ULL,
    0x0000000000000002ULL, 0x0000000000000200ULL, 0x0000000000000201ULL, 0x0000000000020100ULL,
    0x0000000000000003ULL, 0x0000000000000300ULL, 0x0000000000000301ULL, 0x0000000000030100ULL,
    0x0000000000000302ULL, 0x0000000000030200ULL, 0x0000000000030201ULL, 0x0000000003020100ULL,
    0x0000000000000004ULL, 0x0000000000000400ULL, 0x0000000000000401ULL, 0x0000000000040100ULL,
    0x0000000000000402ULL, 0x0000000000040200ULL, 0x0000000000040201ULL, 0x0000000004020100ULL,
    0x0000000000000403ULL, 0x0000000000040300ULL, 0x0000000000040301ULL, 0x0000000004030100ULL,
    0x0000000000040302ULL, 0x0000000004030200ULL, 0x0000000004030201ULL, 0x0000000403020100ULL,
    0x0000000000000005ULL, 0x0000000000000500ULL, 0x0000000000000501ULL, 0x0000000000050100ULL,
    0x0000000000000502ULL, 0x0000000000050200ULL, 0x0000000000050201ULL, 0x0000000005020100ULL,
    0x0000000000000503ULL, 0x0000000000050300ULL, 0x0000000000050301ULL, 0x0000000005030100ULL,
    0x0000000000050302ULL, 0x0000000005030200ULL, 0x0000000005030201ULL, 0x0000000503020100ULL,
    0x0000000000000504ULL, 0x0000000000050400ULL, 0x0000000000050401ULL, 0x0000000005040100ULL,
    0x0000000000050402ULL, 0x0000000005040200ULL, 0x0000000005040201ULL, 0x0000000504020100ULL,
    0x0000000000050403ULL, 0x0000000005040300ULL, 0x0000000005040301ULL, 0x0000000504030100ULL,
    0x0000000005040302ULL, 0x0000000504030200ULL, 0x0000000504030201ULL, 0x0000050403020100ULL,
    0x0000000000000006ULL, 0x0000000000000600ULL, 0x0000000000000601ULL, 0x0000000000060100ULL,
    0x0000000000000602ULL, 0x0000000000060200ULL, 0x0000000000060201ULL, 0x0000000006020100ULL,
    0x0000000000000603ULL, 0x0000000000060300ULL, 0x0000000000060301ULL, 0x0000000006030100ULL,
    0x0000000000060302ULL, 0x0000000006030200ULL, 0x0000000006030201ULL, 0x0000000603020100ULL,
    0x0000000000000604ULL, 0x0000000000060400ULL, 0x0000000000060401ULL, 0x0000000006040100ULL,
    0x0000000000060402ULL, 0x0000000006040200ULL, 0x0000000006040201ULL, 0x0000000604020100ULL,
    0x0000000000060403ULL, 0x0000000006040300ULL, 0x0000000006040301ULL, 0x0000000604030100ULL,
    0x0000000006040302ULL, 0x0000000604030200ULL, 0x0000000604030201ULL, 0x0000060403020100ULL,
    0x0000000000000605ULL, 0x0000000000060500ULL, 0x0000000000060501ULL, 0x0000000006050100ULL,
    0x0000000000060502ULL, 0x0000000006050200ULL, 0x0000000006050201ULL, 0x0000000605020100ULL,
    0x0000000000060503ULL, 0x0000000006050300ULL, 0x0000000006050301ULL, 0x0000000605030100ULL,
    0x0000000006050302ULL, 0x0000000605030200ULL, 0x0000000605030201ULL, 0x0000060503020100ULL,
    0x0000000000060504ULL, 0x0000000006050400ULL, 0x0000000006050401ULL, 0x0000000605040100ULL,
    0x0000000006050402ULL, 0x0000000605040200ULL, 0x0000000605040201ULL, 0x0000060504020100ULL,
    0x0000000006050403ULL, 0x0000000605040300ULL, 0x0000000605040301ULL, 0x0000060504030100ULL,
    0x0000000605040302ULL, 0x0000060504030200ULL, 0x0000060504030201ULL, 0x0006050403020100ULL,
    0x0000000000000007ULL, 0x0000000000000700ULL, 0x0000000000000701ULL, 0x0000000000070100ULL,
    0x0000000000000702ULL, 0x0000000000070200ULL, 0x0000000000070201ULL, 0x0000000007020100ULL,
    0x0000000000000703ULL, 0x0000000000070300ULL, 0x0000000000070301ULL, 0x0000000007030100ULL,
    0x0000000000070302ULL, 0x0000000007030200ULL, 0x0000000007030201ULL, 0x0000000703020100ULL,
    0x0000000000000704ULL, 0x0000000000070400ULL, 0x0000000000070401ULL, 0x0000000007040100ULL,
    0x0000000000070402ULL, 0x0000000007040200ULL, 0x0000000007040201ULL, 0x0000000704020100ULL,
    0x0000000000070403ULL, 0x0000000007040300ULL, 0x0000000007040301ULL, 0x0000000704030100ULL,
    0x0000000007040302ULL, 0x0000000704030200ULL, 0x0000000704030201ULL, 0x0000070403020100ULL,
    0x0000000000000705ULL, 0x0000000000070500ULL, 0x0000000000070501ULL, 0x0000000007050100ULL,
    0x0000000000070502ULL, 0x0000000007050200ULL, 0x0000000007050201ULL, 0x0000000705020100ULL,
    0x0000000000070503ULL, 0x0000000007050300ULL, 0x0000000007050301ULL, 0x0000000705030100ULL,
    0x0000000007050302ULL, 0x0000000705030200ULL, 0x0000000705030201ULL, 0x0000070503020100ULL,
    0x0000000000070504ULL, 0x0000000007050400ULL, 0x0000000007050401ULL, 0x0000000705040100ULL,
    0x0000000007050402ULL, 0x0000000705040200ULL, 0x0000000705040201ULL, 0x0000070504020100ULL,
    0x0000000007050403ULL, 0x0000000705040300ULL, 0x0000000705040301ULL, 0x0000070504030100ULL,
    0x0000000705040302ULL, 0x0000070504030200ULL, 0x0000070504030201ULL, 0x0007050403020100ULL,
    0x0000000000000706ULL, 0x0000000000070600ULL, 0x0000000000070601ULL, 0x0000000007060100ULL,
    0x0000000000070602ULL, 0x0000000007060200ULL, 0x0000000007060201ULL, 0x0000000706020100ULL,
    0x0000000000070603ULL, 0x0000000007060300ULL, 0x0000000007060301ULL, 0x0000000706030100ULL,
    0x0000000007060302ULL, 0x0000000706030200ULL, 0x0000000706030201ULL, 0x0000070603020100ULL,
    0x0000000000070604ULL, 0x0000000007060400ULL, 0x0000000007060401ULL, 0x0000000706040100ULL,
    0x0000000007060402ULL, 0x0000000706040200ULL, 0x0000000706040201ULL, 0x0000070604020100ULL,
    0x0000000007060403ULL, 0x0000000706040300ULL, 0x0000000706040301ULL, 0x0000070604030100ULL,
    0x0000000706040302ULL, 0x0000070604030200ULL, 0x0000070604030201ULL, 0x0007060403020100ULL,
    0x0000000000070605ULL, 0x0000000007060500ULL, 0x0000000007060501ULL, 0x0000000706050100ULL,
    0x0000000007060502ULL, 0x0000000706050200ULL, 0x0000000706050201ULL, 0x0000070605020100ULL,
    0x0000000007060503ULL, 0x0000000706050300ULL, 0x0000000706050301ULL, 0x0000070605030100ULL,
    0x0000000706050302ULL, 0x0000070605030200ULL, 0x0000070605030201ULL, 0x0007060503020100ULL,
    0x0000000007060504ULL, 0x0000000706050400ULL, 0x0000000706050401ULL, 0x0000070605040100ULL,
    0x0000000706050402ULL, 0x0000070605040200ULL, 0x0000070605040201ULL, 0x0007060504020100ULL,
    0x0000000706050403ULL, 0x0000070605040300ULL, 0x0000070605040301ULL, 0x0007060504030100ULL,
    0x0000070605040302ULL, 0x0007060504030200ULL, 0x0007060504030201ULL, 0x0706050403020100ULL,
};

/* pg_xlist_build_fn (gemm_internal.h): 8 lanes at a time, the in-place
 * kernels' exponent test, the lanes' bits from wmask, and the kept lanes'
 * entries moved to the front (tile2_left_pack) and stored whole: up to
 * 7 entries past the list's end. Lanes past nlanes are not read (a masked
 * load for the last 8); those within it that wmask leaves out (the wide
 * rows' dropped columns) lie inside the rows and are read, then dropped. */
static int xlist_build(const float *x, int nlanes, const uint16_t *wmask, const uint32_t *went,
                       uint32_t *list)
{
    const __m256i expo = _mm256_set1_epi32(0x7F800000);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int n = 0;
    for (int w = 0; w < nlanes; w += 8) {
        unsigned m = (unsigned)(wmask[w / 16] >> (w % 16)) & 0xFFu;
        __m256i v;
        if (nlanes - w >= 8) {
            v = _mm256_loadu_si256((const __m256i *)(x + w));
        } else {
            m &= (1u << (nlanes - w)) - 1;
            v = _mm256_maskload_epi32((const int *)(x + w),
                                      _mm256_cmpgt_epi32(_mm256_set1_epi32(nlanes - w), lane));
        }
        const __m256i z = _mm256_cmpeq_epi32(_mm256_and_si256(v, expo), _mm256_setzero_si256());
        const unsigned keep = m & ~(unsigned)_mm256_movemask_ps(as_ps(z));
        const __m256i e = _mm256_loadu_si256((const __m256i *)(went + w));
        _mm256_storeu_si256((__m256i *)(list + n), tile2_left_pack(e, keep));
        n += __builtin_popcount(keep);
    }
    return n;
}

/* One list entry's terms for tile row r (xsparse_body) */
#define XS_TERM(r, s)                                                                           \
    do {                                                                                        \
        uint32_t e_ = lists[(r) * PG_XL_CAP + (s)];                                             \
        __m256i xb_ = _mm256_set1_epi32(*(const int *)(const void *)(xr[r] + (e_ >> 16)));      \
        const char *yr_ = yb + (e_ & 0xFFFFu);                                                  \
        for (int h = 0; h < nh; h++) {                                                          \
            __m256i a_ = grad ? _mm256_and_si256(_mm256_add_epi32(xb_, t[r][h]), se) : xb_;     \
            __m256i y_ = _mm256_loadu_si256((const __m256i *)(const void *)(yr_ + 32 * h));     \
            acc[r][h] = _mm256_add_ps(acc[r][h], as_ps(_mm256_add_epi32(a_, y_)));              \
        }                                                                                       \
    } while (0)

/* pg_xsparse_kernel: the in-place kernels' sums with X's zeros skipped
 * outright (gemm_internal.h): the tile's MR lists in lockstep, per entry
 * one broadcast of the value and nh loads of its partner row of Y (without
 * zeros: the caller's condition), no masks. MR ≤ 6 rows of 8·nh lanes. */
static inline __attribute__((always_inline)) void
xsparse_body(const uint32_t *lists, const int *len, const float *x, const long *xoff,
             const uint32_t *yp, const uint32_t *tile, int mvalid, int nvalid, float *c, long ldc,
             int add, const int MR, const int nh, const int grad)
{
    const __m256i se = _mm256_set1_epi32((int)PG_SIGN_EXP);
    const int nr = 8 * nh;
    const char *yb = (const char *)yp;
    __m256i km[2];
    tile2_lanes(0, nvalid, km);
    __m256 acc[FMR][2];
    __m256i t[XGMR][2];
    const char *xr[FMR];
    int lo = len[0], hi = len[0];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        xr[r] = (const char *)(x + xoff[r < mvalid ? r : 0]);
        lo = len[r] < lo ? len[r] : lo;
        hi = len[r] > hi ? len[r] : hi;
        for (int h = 0; grad && h < nh; h++)
            t[r][h] = _mm256_loadu_si256((const __m256i *)(tile + r * nr + 8 * h));
    }
    tile2_load(acc, c, ldc, km, mvalid, add, MR, nh);
    LISTS_LOCKSTEP(MR, XS_TERM);
    tile2_store(c, ldc, acc, km, mvalid, MR, nh);
}

static void xsparse_6x16(const uint32_t *lists, const int *len, const float *x, const long *xoff,
                         const uint32_t *yp, const uint32_t *tile, int mvalid, int nvalid,
                         float *c, long ldc, int add)
{
    xsparse_body(lists, len, x, xoff, yp, tile, mvalid, nvalid, c, ldc, add, FMR, 2, 0);
}

static void xsparse_6x8(const uint32_t *lists, const int *len, const float *x, const long *xoff,
                        const uint32_t *yp, const uint32_t *tile, int mvalid, int nvalid,
                        float *c, long ldc, int add)
{
    xsparse_body(lists, len, x, xoff, yp, tile, mvalid, nvalid, c, ldc, add, FMR, 1, 0);
}

static void grad_xsparse_2x16(const uint32_t *lists, const int *len, const float *x,
                              const long *xoff, const uint32_t *yp, const uint32_t *tile,
                              int mvalid, int nvalid, float *c, long ldc, int add)
{
    xsparse_body(lists, len, x, xoff, yp, tile, mvalid, nvalid, c, ldc, add, XGMR, 2, 1);
}

/* This instruction set's context: its kernels, packing and block sizes,
 * registered together (gemm_internal.h). */
const pg_cntx pg_cntx_avx2 = {
    .isa = NOMUL_ISA_AVX2,
    .fwd = {FMR, FNR, fwd_6x16},
    .grad = {GMR, GNR, grad_a_4x8, grad_b_4x8},
    .fwd_direct = fwd_direct_6x16,
    .grad_b_direct = grad_b_direct_4x8,
    .fwd_xdirect = {FMR, FNR, xdirect_6x16, xdirect_6x8},
    .grad_xdirect = {XGMR, XGNR, grad_xdirect_2x16, NULL},
    .xsparse = {xlist_build, xsparse_6x16, xsparse_6x8, grad_xsparse_2x16, NULL},
    .dxlive = {dxlive_pam_avx2, NULL},
    .fdirect = {6, 16, fd_6x16_avx2, NULL},
    .pack = pack_panel,
    .pack_tile = pack_tile,
    .dw_rows = {dw_fwd_row, dw_dx_row, dw_dw_row, dw_dot_row, value_stats},
    .pad_planes = conv_pad_planes_plain,
    .split_planes = conv_split_planes_plain,
    .kc = PG_KC,
    .mc = PG_MC,
    .nc = PG_NC,
};
