/*
 * ukernel_avx512.c — AVX-512 microkernels (this file alone is compiled with
 * AVX-512 flags). Forward 8×32: per k, two 16-lane loads of Y and eight
 * broadcasts of X; per product one vpaddd and one vaddps, no multiply.
 * Gradients 6×32: per product vpaddd, vpandd, vpaddd, vaddps.
 * Each also 16 wide (8×16, 6×16: the same bodies on one half), for products
 * whose columns would leave much of a 32-wide panel as padding (attention's
 * 16-wide heads: gemm_driver.c's kernel_for).
 * Zeros: a zero Y lane zeroes its term (zero-masked add); a zero X row
 * zeroes its term too where the sums start from +0 and Y has no zeros
 * (pam_body), else skips the accumulation (merge-masked add).
 */
#include <immintrin.h>

#include "../core/internal.h" /* nomul_prefetch */
#include "gemm_internal.h"
#include "tile_avx512.h"

#define PG_PACK_NAME pack_panel
#define PG_PACK_T_NAME pack_tile
#define PG_FWD_ROW_NAME dw_fwd_row
#define PG_STATS_NAME value_stats
#define PG_DOT_ROW_NAME dw_dot_row
#define PG_DX_ROW_NAME dw_dx_row
#define PG_DW_ROW_NAME dw_dw_row
#define PG_PACK_VB 64
#include "pack.inc"

/* A float's bit pattern in all 16 lanes, broadcast in the integer domain
 * (vpbroadcastd): the terms are integer additions, and on AMD's Zen 4 an FP
 * broadcast (vbroadcastss) feeding vpaddd costs a quarter of the kernels'
 * rate (the domain crossing) */
static inline __attribute__((always_inline)) __m512i bcast_bits(const float *p)
{
    return _mm512_set1_epi32((int)as_bits(*p));
}

#define FMR 8
#define FNR 32

/* acc (+)= one 16-lane half-row of terms: a zero X row (mx, kx = 0) adds
 * nothing (merge-masked add) */
static inline __attribute__((always_inline)) void acc_add(__m512 *a, __m512i t, const int mx,
                                                         __mmask16 kx)
{
    if (mx)
        *a = _mm512_mask_add_ps(*a, kx, *a, _mm512_castsi512_ps(t));
    else
        *a = _mm512_add_ps(*a, _mm512_castsi512_ps(t));
}

/* rows r < mr of acc (nh halves of 16) to ct (row r at ct + r·ldc), added
 * to what is there if add */
static inline __attribute__((always_inline)) void
store_rows(__m512 (*acc)[2], int mr, const int nh, float *ct, long ldc, int add)
{
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        float *row = ct + r * ldc;
        for (int h = 0; h < nh; h++) {
            if (add)
                acc[r][h] = _mm512_add_ps(acc[r][h], _mm512_loadu_ps(row + 16 * h));
            _mm512_storeu_ps(row + 16 * h, acc[r][h]);
        }
    }
}

/* Row p of a packed Y panel (nh halves of 16), with its zero masks when my
 * (else all lanes on) */
static inline __attribute__((always_inline)) void load_y(const uint32_t *yrow, const int32_t *ymrow,
                                                         const int nh, const int my, __m512i *y,
                                                         __mmask16 *k)
{
    for (int h = 0; h < nh; h++) {
        y[h] = _mm512_loadu_si512(yrow + 16 * h);
        k[h] = my ? _mm512_movepi32_mask(_mm512_loadu_si512(ymrow + 16 * h)) : (__mmask16)0xFFFF;
    }
}

#define GMR 6
#define GNR 32

/* rows r < mvalid of acc (nh halves, lanes on in km) to c (row r at c +
 * r·ldc), added to what is there if add */
static inline __attribute__((always_inline)) void
tile_store_add(float *c, long ldc, __m512 (*acc)[2], const __mmask16 *km, int mvalid,
               const int rows, const int nh, int add)
{
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        if (r < mvalid)
            for (int h = 0; h < nh; h++) {
                float *cr = c + r * ldc + 16 * h;
                if (add)
                    acc[r][h] = _mm512_add_ps(acc[r][h], _mm512_maskz_loadu_ps(km[h], cr));
                _mm512_mask_storeu_ps(cr, km[h], acc[r][h]);
            }
}

/* The packed and in-place products' loop body (fwd_8x32, grad_a_6x32, ...,
 * xin_8x32, xin_grad_a_6x32), specialised at compile time for:
 *  - the term (grad): the forward's x + y, or an exact gradient's grad A
 *    ((y + t) & sign|exp) + x (ga) or grad B ((x + t) & sign|exp) + y, t
 *    the MR × 16·nh tile of T's mantissas, fixed over the reduction and
 *    held in registers;
 *  - X's source (inplace): the packed panel xp[p·MR + r], its zero masks xm;
 *    or X's rows read in place, row r at x + r·rs (rows past mvalid read row
 *    0's), a row outside keep adding nothing;
 *  - zeros in X (mx: the row's term zeroed, zero-masked integer add; with
 *    zeros in Y too, skipped, merge-masked add), zeros in Y (my: zero the
 *    lanes' terms, zero-masked integer add), the width (nh halves of 16
 *    lanes).
 * The tile's sums from +0 over the block, stored whole (the packed kernels'
 * ct or a full tile of C) or, in place, its first mvalid rows and nvalid
 * columns; added to what is there if add. */
static inline __attribute__((always_inline)) void
pam_body(int kc, const uint32_t *xp, const int32_t *xm, const float *x, long rs, unsigned keep,
         int mvalid, const uint32_t *yp, const int32_t *ym, const uint32_t *tile, int nvalid,
         float *c, long ldc, int add, const int MR, const int nh, const int mx, const int my,
         const int grad, const int ga, const int inplace)
{
    const int nr = 16 * nh;
    const __m512i se = _mm512_set1_epi32((int)PG_SIGN_EXP);
    const float *xr[FMR];
    __mmask16 kx[FMR];
    __m512 acc[FMR][2];
    __m512i t[FMR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        if (inplace) {
            xr[r] = x + (r < mvalid ? r : 0) * rs;
            kx[r] = (__mmask16)(keep >> r & 1 ? 0xFFFF : 0);
        }
        for (int h = 0; h < nh; h++) {
            acc[r][h] = _mm512_setzero_ps();
            if (grad)
                t[r][h] = _mm512_loadu_si512(tile + r * nr + 16 * h);
        }
    }
    for (int p = 0; p < kc; p++) {
        __m512i y[2];
        __mmask16 ky[2];
        load_y(yp + p * nr, ym + p * nr, nh, my, y, ky);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512i xb = inplace ? bcast_bits(&xr[r][p])
                                 : _mm512_set1_epi32((int)xp[p * MR + r]);
            __mmask16 km = !mx ? 0 : inplace ? kx[r] : (__mmask16)xm[p * MR + r];
            for (int h = 0; h < nh; h++) {
                __m512i a = grad ? _mm512_and_si512(_mm512_add_epi32(ga ? y[h] : xb, t[r][h]), se)
                                 : xb;
                __m512i o = grad && ga ? xb : y[h];
                if (mx && !my) {
                    /* the skipped row's term as +0 bits: the sums start
                     * from +0 and so are never −0, and acc + (+0) = acc
                     * (a merge-masked vaddps, as acc_add, runs at two
                     * thirds of the rate on Zen 4) */
                    acc[r][h] = _mm512_add_ps(
                        acc[r][h], _mm512_castsi512_ps(_mm512_maskz_add_epi32(km, a, o)));
                    continue;
                }
                __m512i u = my ? _mm512_maskz_add_epi32(ky[h], a, o) : _mm512_add_epi32(a, o);
                acc_add(&acc[r][h], u, mx, km);
            }
        }
    }
    if (!inplace || (mvalid == MR && nvalid == nr)) {
        store_rows(acc, MR, nh, c, ldc, add);
    } else {
        __mmask16 km[2];
        tile_masks(nvalid, km);
        tile_store_add(c, ldc, acc, km, mvalid, MR, nh, add);
    }
}

/* a packed kernel's body, for its panels' zeros */
#define PACKED_BODY(MR, nh, grad, ga, mx, my)                                                   \
    pam_body(kc, xp, xm, NULL, 0, 0, MR, yp, ym, tile, 16 * (nh), ct, ldc, add, MR, nh, mx, my, \
             grad, ga, 0)

#define FWD_DISPATCH(name, nh)                                                                  \
    static void name(int kc, const uint32_t *xp, const uint32_t *yp, const int32_t *xm,         \
                     const int32_t *ym, int masked, float *ct, long ldc, int add)               \
    {                                                                                           \
        const uint32_t *tile = NULL;                                                            \
        switch (masked & (PG_ZEROS_X | PG_ZEROS_Y)) {                                           \
        case 0: PACKED_BODY(FMR, nh, 0, 0, 0, 0); break;                                        \
        case PG_ZEROS_X: PACKED_BODY(FMR, nh, 0, 0, 1, 0); break;                               \
        case PG_ZEROS_Y: PACKED_BODY(FMR, nh, 0, 0, 0, 1); break;                               \
        default: PACKED_BODY(FMR, nh, 0, 0, 1, 1); break;                                       \
        }                                                                                       \
    }
FWD_DISPATCH(fwd_8x32, 2)
FWD_DISPATCH(fwd_8x16, 1)

/* Forward with Y read in place (no packing): row p of the tile's Y at
 * y + yoff[p], 32 raw float bit patterns; X was packed with Y's adjustment
 * folded in, so a term is still bits(x') + bits(y). A Y value whose exponent
 * field is 0 (zero or subnormal) contributes nothing: the mask comes from a
 * test on the exponent bits, in the kernel. The caller has checked that no
 * Y value is infinite or NaN and that every product stays normal. */
static inline __attribute__((always_inline)) void
fwd_direct_body(int kc, const uint32_t *xp, const float *y, const long *yoff, const int32_t *xm,
                const int xzeros, float *ct, long ldc, int add, const pg_narrow *nw)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    __m512 acc[FMR][2];
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kc; p++) {
        const float *row = y + yoff[p];
        __m512i y0 = _mm512_loadu_si512(row);
        __m512i y1 = _mm512_loadu_si512(row + 16);
        __mmask16 k0 = _mm512_test_epi32_mask(y0, expo), k1 = _mm512_test_epi32_mask(y1, expo);
#pragma GCC unroll 8
        for (int r = 0; r < FMR; r++) {
            __m512i x = _mm512_set1_epi32((int)xp[p * FMR + r]);
            if (xzeros) {
                __m512i t0 = _mm512_maskz_add_epi32(k0, x, y0);
                __m512i t1 = _mm512_maskz_add_epi32(k1, x, y1);
                __mmask16 kx = (__mmask16)xm[p * FMR + r];
                acc_add(&acc[r][0], t0, 1, kx);
                acc_add(&acc[r][1], t1, 1, kx);
            } else {
                /* one mask a term: Y's zeros leave the sum as it is (the
                 * same bits as adding +0: a sum from +0 of normal terms is
                 * never −0); zero_mask_bench on Zen 5: 0.98 of the FMA
                 * loop's rate against 0.83 with the masked integer add too */
                acc_add(&acc[r][0], _mm512_add_epi32(x, y0), 1, k0);
                acc_add(&acc[r][1], _mm512_add_epi32(x, y1), 1, k1);
            }
        }
    }
    if (nw)
        tile_store_narrow(ct, ldc, acc, FMR, 32, nw, add, FMR, 2);
    else
        store_rows(acc, FMR, 2, ct, ldc, add);
}

static void fwd_direct_8x32(int kc, const uint32_t *xp, const float *y, const long *yoff,
                            const int32_t *xm, int xzeros, float *ct, long ldc, int add,
                            const pg_narrow *nw)
{
    if (xzeros)
        fwd_direct_body(kc, xp, y, yoff, xm, 1, ct, ldc, add, nw);
    else
        fwd_direct_body(kc, xp, y, yoff, xm, 0, ct, ldc, add, nw);
}

/* Forward with X read in place instead, raw (a convolution's approximate
 * weight gradient, X being its column matrix): X's row r at x + xoff[r]
 * (rows past mvalid read row 0's, never stored), its reduction index p at
 * (p / seg)·sstride + p % seg; Y packed (yp[p·16·nh + c], with Y's
 * adjustment; masks ym, read only when my: the pack writes them only for
 * panels that hold a zero). An x whose exponent field is 0 (zero or
 * subnormal) adds nothing: its mask comes from a test on the broadcast. The
 * caller has checked that no value is infinite or NaN and that every
 * product stays normal. Columns past nvalid are neither read from C nor
 * written; with add, each sum continues from C's value.
 * The exact weight gradient (grad, MR = 6) is the same loop with a T tile
 * (each output's weight, fixed over the reduction) held in registers: a
 * term is ((x + t) & sign|exp) + y, t the weight's mantissa field plus the
 * partner's adjustment (the offset's, and −1.0's), y dy's raw bits. */
static inline __attribute__((always_inline)) void
xdirect_body(int k, const float *x, const long *xoff, int seg, long ss, int mvalid,
             const uint32_t *yp, const int32_t *ym, const uint32_t *tile, int nvalid, float *c,
             long ldc, int add, const int MR, const int nh, const int my, const int grad)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    const __m512i se = _mm512_set1_epi32((int)PG_SIGN_EXP);
    const int nr = 16 * nh;
    __mmask16 kc[2];
    tile_masks(nvalid, kc);
    const float *xr[FMR];
    __m512 acc[FMR][2];
    __m512i t[FMR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        xr[r] = x + xoff[r < mvalid ? r : 0];
        for (int h = 0; h < nh; h++)
            if (grad)
                t[r][h] = _mm512_loadu_si512(tile + r * nr + 16 * h);
    }
    tile_load(acc, c, ldc, kc, mvalid, add, MR, nh, 0);
    for (int p0 = 0; p0 < k; p0 += seg) {
        for (int q = 0; q < seg; q++, yp += nr, ym += nr) {
            __m512i y[2];
            __mmask16 ky[2];
            load_y(yp, ym, nh, my, y, ky);
#pragma GCC unroll 8
            for (int r = 0; r < MR; r++) {
                __m512i xb = bcast_bits(&xr[r][q]);
                __mmask16 kx = _mm512_test_epi32_mask(xb, expo);
                for (int h = 0; h < nh; h++) {
                    __m512i a = grad ? _mm512_and_si512(_mm512_add_epi32(xb, t[r][h]), se) : xb;
                    acc_add(&acc[r][h], my ? _mm512_maskz_add_epi32(ky[h], a, y[h])
                                           : _mm512_add_epi32(a, y[h]),
                            1, kx);
                }
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++)
            xr[r] += ss;
    }
    tile_store(c, ldc, acc, kc, mvalid, MR, nh);
}

#define XDIRECT(name, nh)                                                                       \
    static void name(int k, const float *x, const long *xoff, int seg, long ss, int mvalid,    \
                     const uint32_t *yp, const int32_t *ym, int nvalid, float *c, long ldc,    \
                     int add)                                                                  \
    {                                                                                           \
        if (ym)                                                                                 \
            xdirect_body(k, x, xoff, seg, ss, mvalid, yp, ym, NULL, nvalid, c, ldc, add, FMR,   \
                         nh, 1, 0);                                                             \
        else                                                                                    \
            xdirect_body(k, x, xoff, seg, ss, mvalid, yp, ym, NULL, nvalid, c, ldc, add, FMR,   \
                         nh, 0, 0);                                                             \
    }
XDIRECT(xdirect_8x32, 2)
XDIRECT(xdirect_8x16, 1)

#define GXDIRECT(name, nh)                                                                      \
    static void name(int k, const float *x, const long *xoff, int seg, long ss, int mvalid,    \
                     const uint32_t *yp, const int32_t *ym, const uint32_t *tile, int nvalid,  \
                     float *c, long ldc, int add)                                              \
    {                                                                                           \
        if (ym)                                                                                 \
            xdirect_body(k, x, xoff, seg, ss, mvalid, yp, ym, tile, nvalid, c, ldc, add, 6, nh, \
                         1, 1);                                                                 \
        else                                                                                    \
            xdirect_body(k, x, xoff, seg, ss, mvalid, yp, ym, tile, nvalid, c, ldc, add, 6, nh, \
                         0, 1);                                                                 \
    }
GXDIRECT(grad_xdirect_6x32, 2)
GXDIRECT(grad_xdirect_6x16, 1)

/* pg_xlist_build_fn (gemm_internal.h): 16 lanes at a time, a masked load
 * (lanes off the mask are not read), the in-place kernels' exponent test,
 * and one compressing store of the lanes' entries. */
static int xlist_build(const float *x, int nlanes, const uint16_t *wmask, const uint32_t *went,
                       uint32_t *list)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    int n = 0;
    for (int w = 0; w < nlanes; w += 16) {
        __mmask16 km = (__mmask16)(wmask[w / 16] &
                                   (nlanes - w >= 16 ? 0xFFFFu : (1u << (nlanes - w)) - 1));
        __mmask16 nz = _mm512_mask_test_epi32_mask(km, _mm512_maskz_loadu_epi32(km, x + w), expo);
        _mm512_storeu_si512(list + n, _mm512_maskz_compress_epi32(nz, _mm512_loadu_si512(went + w)));
        n += __builtin_popcount((unsigned)nz);
    }
    return n;
}

/* One list entry's terms for tile row r (xsparse_body) */
#define XS_TERM(r, s)                                                                           \
    do {                                                                                        \
        uint32_t e_ = lists[(r) * PG_XL_CAP + (s)];                                             \
        __m512i xb_ = bcast_bits((const float *)(xr[r] + (e_ >> 16)));                          \
        const char *yr_ = yb + (e_ & 0xFFFFu);                                                  \
        for (int h = 0; h < nh; h++) {                                                          \
            __m512i a_ = grad ? _mm512_and_si512(_mm512_add_epi32(xb_, t[r][h]), se) : xb_;     \
            __m512i y_ = _mm512_loadu_si512((const void *)(yr_ + 64 * h));                      \
            acc[r][h] =                                                                         \
                _mm512_add_ps(acc[r][h], _mm512_castsi512_ps(_mm512_add_epi32(a_, y_)));        \
        }                                                                                       \
    } while (0)

/* pg_xsparse_kernel: the tile's MR lists in lockstep while all run, then
 * each to its end; per entry one broadcast of the value and nh loads of its
 * partner row; grad: the exact term ((x + t) & sign|exp) + y, else x + y
 * (Y with its adjustment). */
static inline __attribute__((always_inline)) void
xsparse_body(const uint32_t *lists, const int *len, const float *x, const long *xoff,
             const uint32_t *yp, const uint32_t *tile, int mvalid, int nvalid, float *c, long ldc,
             int add, const int MR, const int nh, const int grad)
{
    const __m512i se = _mm512_set1_epi32((int)PG_SIGN_EXP);
    const int nr = 16 * nh;
    const char *yb = (const char *)yp;
    __mmask16 kc[2];
    tile_masks(nvalid, kc);
    __m512 acc[FMR][2];
    __m512i t[FMR][2];
    const char *xr[FMR];
    int lo = len[0], hi = len[0];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        xr[r] = (const char *)(x + xoff[r < mvalid ? r : 0]);
        lo = len[r] < lo ? len[r] : lo;
        hi = len[r] > hi ? len[r] : hi;
        for (int h = 0; h < nh; h++)
            if (grad)
                t[r][h] = _mm512_loadu_si512(tile + r * nr + 16 * h);
    }
    tile_load(acc, c, ldc, kc, mvalid, add, MR, nh, 0);
    LISTS_LOCKSTEP(MR, XS_TERM);
    tile_store(c, ldc, acc, kc, mvalid, MR, nh);
}

#define XSPARSE(name, MR, nh, grad)                                                             \
    static void name(const uint32_t *lists, const int *len, const float *x, const long *xoff,  \
                     const uint32_t *yp, const uint32_t *tile, int mvalid, int nvalid,          \
                     float *c, long ldc, int add)                                               \
    {                                                                                           \
        xsparse_body(lists, len, x, xoff, yp, tile, mvalid, nvalid, c, ldc, add, MR, nh, grad); \
    }
XSPARSE(xsparse_8x32, FMR, 2, 0)
XSPARSE(xsparse_8x16, FMR, 1, 0)
XSPARSE(grad_xsparse_6x32, 6, 2, 1)
XSPARSE(grad_xsparse_6x16, 6, 1, 1)

/* The lists' step over 16 values u of a row (km: the valid lanes), their
 * partners' offsets vo (xrow_build) */
typedef struct {
    __m512i lo, hi;
    __mmask16 special, zero;
    __m512i adj; /* added to the listed values */
} xrow_acc;

static inline __attribute__((always_inline)) int xrow_step(__m512i u, __mmask16 km, __m512i vo,
                                                           uint32_t *vals, uint32_t *offs,
                                                           xrow_acc *a)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    __m512i e = _mm512_and_si512(u, expo);
    __mmask16 nz = _mm512_mask_test_epi32_mask(km, u, expo);
    __mmask16 sp = _mm512_mask_cmpeq_epi32_mask(nz, e, expo);
    __mmask16 fin = (__mmask16)(nz & ~sp);
    a->lo = _mm512_mask_min_epu32(a->lo, fin, a->lo, e);
    a->hi = _mm512_mask_max_epu32(a->hi, fin, a->hi, e);
    a->special |= sp;
    a->zero |= (__mmask16)(km & ~nz);
    _mm512_storeu_si512(vals, _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(u, a->adj)));
    _mm512_storeu_si512(offs, _mm512_maskz_compress_epi32(nz, vo));
    return __builtin_popcount((unsigned)nz);
}

/* pg_xrow_build_fn (gemm_internal.h), 16 values of a row at a time through
 * xrow_step (the exponent test, two compressing stores: the values' bits,
 * their partners' offsets; the statistics' lane-wise min and max of the
 * finite values' exponent fields in place). Rows contiguous: a masked load
 * each. Columns contiguous (rs = 1: a weight gradient's dCᵀ): 16 columns
 * of the panel's 8 rows loaded, 8 values each, and transposed in registers
 * (the two 8×8 halves at once: unpacks and shuffles within 128-bit lanes,
 * then one two-source permute per row). */
static void xrow_build(const float *x, long rs, long cs, int mr, int n, uint32_t adj,
                       uint32_t ybytes, uint32_t *vals, uint32_t *offs, int *len, pg_stats *st)
{
    xrow_acc a = {_mm512_set1_epi32(-1), _mm512_setzero_si512(), 0, 0, _mm512_set1_epi32((int)adj)};
    uint32_t lane[16]; /* value p's partner at p·ybytes, by additions */
    lane[0] = 0;
    for (int l = 1; l < 16; l++)
        lane[l] = lane[l - 1] + ybytes;
    const __m512i vo0 = _mm512_loadu_si512(lane), vstep = _mm512_set1_epi32((int)(16 * ybytes));
    for (int r = 0; r < mr; r++)
        len[r] = 0;
    if (cs != 1 && rs == 1) {
        const __m512i ia = _mm512_set_epi32(27, 26, 25, 24, 11, 10, 9, 8, 19, 18, 17, 16, 3, 2, 1, 0);
        const __m512i ib = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 23, 22, 21, 20, 7, 6, 5, 4);
        const __mmask8 rm = (__mmask8)((1u << mr) - 1);
        __m512i vo = vo0;
        for (int w = 0; w < n; w += 16, vo = _mm512_add_epi32(vo, vstep)) {
            int np = n - w < 16 ? n - w : 16;
            __mmask16 km = (__mmask16)(np == 16 ? 0xFFFFu : (1u << np) - 1);
            __m512 z[8], t[8], u[8];
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                __m256 l = q < np ? _mm256_maskz_loadu_ps(rm, x + (long)(w + q) * cs)
                                  : _mm256_setzero_ps();
                __m256 h = q + 8 < np ? _mm256_maskz_loadu_ps(rm, x + (long)(w + q + 8) * cs)
                                      : _mm256_setzero_ps();
                z[q] = _mm512_insertf32x8(_mm512_castps256_ps512(l), h, 1);
            }
#pragma GCC unroll 4
            for (int q = 0; q < 8; q += 2) {
                t[q] = _mm512_unpacklo_ps(z[q], z[q + 1]);
                t[q + 1] = _mm512_unpackhi_ps(z[q], z[q + 1]);
            }
#pragma GCC unroll 2
            for (int q = 0; q < 8; q += 4) {
                u[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
                u[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xEE);
                u[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
                u[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
            }
            /* u[c] (c < 4) holds, by 128-bit lane, row c's columns w..w+3,
             * row c + 4's, row c's w+8..w+11, row c + 4's; u[c + 4] the
             * same for columns w+4..w+7 and w+12..w+15 */
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                if (r >= mr)
                    continue;
                __m512 row = _mm512_permutex2var_ps(u[r & 3], r < 4 ? ia : ib, u[(r & 3) + 4]);
                int c = len[r];
                len[r] += xrow_step(_mm512_castps_si512(row), km, vo, vals + r * PG_XL_CAP + c,
                                    offs + r * PG_XL_CAP + c, &a);
            }
        }
    } else {
        for (int r = 0; r < mr; r++) {
            const float *xr = x + r * rs;
            int cnt = 0;
            __m512i vo = vo0;
            for (int w = 0; w < n; w += 16, vo = _mm512_add_epi32(vo, vstep)) {
                __mmask16 km = (__mmask16)(n - w >= 16 ? 0xFFFFu : (1u << (n - w)) - 1);
                cnt += xrow_step(_mm512_maskz_loadu_epi32(km, xr + w), km, vo,
                                 vals + r * PG_XL_CAP + cnt, offs + r * PG_XL_CAP + cnt, &a);
            }
            len[r] = cnt;
        }
    }
    uint32_t emin = _mm512_reduce_min_epu32(a.lo), emax = _mm512_reduce_max_epu32(a.hi);
    int any = emin != 0xFFFFFFFFu;
    st->emin = any ? (int)(emin >> 23) - 127 : 128;
    st->emax = any ? (int)(emax >> 23) - 127 : -127;
    st->zero = a.zero != 0;
    st->special = a.special != 0;
}

/* pg_xrow_kernel: the tile's lists in lockstep, n entries each (padded:
 * gemm_internal.h); per entry one broadcast of the value and nh loads of
 * its partner row, one vpaddd and one vaddps per 16 lanes */
static inline __attribute__((always_inline)) void
xrow_body(const uint32_t *vals, const uint32_t *offs, int n, const uint32_t *yp, int mvalid,
          int nvalid, float *c, long ldc, int add, const int nh)
{
    const char *yb = (const char *)yp;
    __mmask16 kc[2];
    tile_masks(nvalid, kc);
    __m512 acc[FMR][2];
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int s = 0; s < n; s++) {
#pragma GCC unroll 8
        for (int r = 0; r < FMR; r++) {
            __m512i xb = _mm512_set1_epi32((int)vals[r * PG_XL_CAP + s]);
            const char *yr = yb + offs[r * PG_XL_CAP + s];
            for (int h = 0; h < nh; h++)
                acc[r][h] = _mm512_add_ps(
                    acc[r][h], _mm512_castsi512_ps(_mm512_add_epi32(
                                   xb, _mm512_loadu_si512((const void *)(yr + 64 * h)))));
        }
    }
    tile_store_add(c, ldc, acc, kc, mvalid, FMR, nh, add);
}

static void xrow_8x32(const uint32_t *vals, const uint32_t *offs, int n, const uint32_t *yp,
                      int mvalid, int nvalid, float *c, long ldc, int add)
{
    xrow_body(vals, offs, n, yp, mvalid, nvalid, c, ldc, add, 2);
}
static void xrow_8x16(const uint32_t *vals, const uint32_t *offs, int n, const uint32_t *yp,
                      int mvalid, int nvalid, float *c, long ldc, int add)
{
    xrow_body(vals, offs, n, yp, mvalid, nvalid, c, ldc, add, 1);
}

/* pg_xrow_grad_kernel: the tile's lists in lockstep while all run, then
 * each to its end; per entry one broadcast and nh loads of the partner row,
 * a term as pam_body's: grad A ((y + t) & sign|exp) + x, grad B
 * ((x + t) & sign|exp) + y */
#define XG_TERM(r, s)                                                                           \
    do {                                                                                        \
        __m512i xb_ = _mm512_set1_epi32((int)vals[(r) * PG_XL_CAP + (s)]);                      \
        const char *yr_ = yb + offs[(r) * PG_XL_CAP + (s)];                                     \
        for (int h = 0; h < nh; h++) {                                                          \
            __m512i y_ = _mm512_loadu_si512((const void *)(yr_ + 64 * h));                      \
            __m512i u_ = _mm512_and_si512(_mm512_add_epi32(ga ? y_ : xb_, t[r][h]), se);        \
            acc[r][h] = _mm512_add_ps(acc[r][h],                                                \
                                      _mm512_castsi512_ps(_mm512_add_epi32(u_, ga ? xb_ : y_))); \
        }                                                                                       \
    } while (0)

static inline __attribute__((always_inline)) void
xrow_grad_body(const uint32_t *vals, const uint32_t *offs, const int *len, const uint32_t *yp,
               const uint32_t *tile, int mvalid, int nvalid, float *c, long ldc, int add,
               const int nh, const int ga)
{
    enum { R = 6 };
    const __m512i se = _mm512_set1_epi32((int)PG_SIGN_EXP);
    const int nr = 16 * nh;
    const char *yb = (const char *)yp;
    __mmask16 kc[2];
    tile_masks(nvalid, kc);
    __m512 acc[R][2];
    __m512i t[R][2];
    int lo = len[0], hi = len[0];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        for (int h = 0; h < nh; h++) {
            acc[r][h] = _mm512_setzero_ps();
            t[r][h] = _mm512_loadu_si512(tile + r * nr + 16 * h);
        }
        lo = len[r] < lo ? len[r] : lo;
        hi = len[r] > hi ? len[r] : hi;
    }
    LISTS_LOCKSTEP(R, XG_TERM);
    tile_store_add(c, ldc, acc, kc, mvalid, R, nh, add);
}

#define XROW_GRAD(name, nh, ga)                                                                 \
    static void name(const uint32_t *vals, const uint32_t *offs, const int *len,                \
                     const uint32_t *yp, const uint32_t *tile, int mvalid, int nvalid, float *c, \
                     long ldc, int add)                                                          \
    {                                                                                            \
        xrow_grad_body(vals, offs, len, yp, tile, mvalid, nvalid, c, ldc, add, nh, ga);         \
    }
XROW_GRAD(xrow_grad_a_6x32, 2, 1)
XROW_GRAD(xrow_grad_a_6x16, 1, 1)
XROW_GRAD(xrow_grad_b_6x32, 2, 0)
XROW_GRAD(xrow_grad_b_6x16, 1, 0)

/* pg_xin_stats_fn (gemm_internal.h): the panel's rows through the pack's
 * classify and its statistics' accumulators, one set per row, merged over
 * the rows that hold a nonzero value; a short last step masked and filled
 * with the row's first value (counted already: the statistics do not
 * move) */
static int xin_stats(const float *x, long rs, int mr, int kc, pg_stats *st, unsigned *keep)
{
    pg_acc pa = PG_ACC_INIT;
    const pg_pv none = (pg_pv){0};
    unsigned kp = 0;
    for (int r = 0; r < mr; r++) {
        const float *row = x + r * rs;
        pg_acc a = PG_ACC_INIT;
        int p = 0;
        for (; p + PG_VL <= kc; p += PG_VL) {
            pg_pv u;
            memcpy(&u, row + p, sizeof u);
            (void)classify(u, none, &a);
        }
        if (p < kc) {
            __mmask16 km = (__mmask16)((1u << (kc - p)) - 1);
            __m512i fill = _mm512_set1_epi32((int)as_bits(row[0]));
            (void)classify((pg_pv)_mm512_mask_loadu_epi32(fill, km, row + p), none, &a);
        }
        /* one compare each, where horizontal reductions cost 2.5% of
         * transformer_tiny's step (64-value rows) */
        if (!_mm512_cmpge_epi32_mask((__m512i)a.hi, (__m512i)none))
            continue; /* every value of the row is zero: skipped whole */
        if (_mm512_cmplt_epi32_mask((__m512i)a.neg, (__m512i)none))
            return 0; /* a zero among nonzero values */
        pa.lo = PG_MINU(pa.lo, a.lo);
        pa.hi = PG_MAXS(pa.hi, a.hi);
        kp |= 1u << r;
    }
    int32_t emin, emax, zero;
    if (acc_reduce(&pa, &emin, &emax, &zero))
        return 0; /* an infinity or a NaN */
    st->emin = emin - 127;
    st->emax = emax - 127;
    st->zero = 0;
    st->special = 0;
    *keep = kp;
    return 1;
}

/* pg_xin_kernel, pg_xin_grad_kernel: pam_body with X's rows in place,
 * specialised for Y's masks (ym) and for rows skipped (some valid row
 * outside keep) */
#define XIN_BODY(MR, nh, grad)                                                                  \
    do {                                                                                        \
        const unsigned all_ = (1u << mvalid) - 1;                                               \
        const int mx_ = (keep & all_) != all_;                                                  \
        if (ym && mx_)                                                                          \
            pam_body(kc, NULL, NULL, x, rs, keep, mvalid, yp, ym, tile, nvalid, c, ldc, add,    \
                     MR, nh, 1, 1, grad, 1, 1);                                                 \
        else if (ym)                                                                            \
            pam_body(kc, NULL, NULL, x, rs, keep, mvalid, yp, ym, tile, nvalid, c, ldc, add,    \
                     MR, nh, 0, 1, grad, 1, 1);                                                 \
        else if (mx_)                                                                           \
            pam_body(kc, NULL, NULL, x, rs, keep, mvalid, yp, ym, tile, nvalid, c, ldc, add,    \
                     MR, nh, 1, 0, grad, 1, 1);                                                 \
        else                                                                                    \
            pam_body(kc, NULL, NULL, x, rs, keep, mvalid, yp, ym, tile, nvalid, c, ldc, add,    \
                     MR, nh, 0, 0, grad, 1, 1);                                                 \
    } while (0)
#define XIN(name, nh)                                                                           \
    static void name(int kc, const float *x, long rs, unsigned keep, int mvalid,               \
                     const uint32_t *yp, const int32_t *ym, int nvalid, float *c, long ldc,     \
                     int add)                                                                   \
    {                                                                                           \
        const uint32_t *tile = NULL;                                                            \
        XIN_BODY(FMR, nh, 0);                                                                   \
    }
#define XIN_GRAD(name, nh)                                                                      \
    static void name(int kc, const float *x, long rs, unsigned keep, int mvalid,               \
                     const uint32_t *yp, const int32_t *ym, const uint32_t *tile, int nvalid,   \
                     float *c, long ldc, int add)                                               \
    {                                                                                           \
        XIN_BODY(GMR, nh, 1);                                                                   \
    }
XIN(xin_8x32, 2)
XIN(xin_8x16, 1)
XIN_GRAD(xin_grad_a_6x32, 2)
XIN_GRAD(xin_grad_a_6x16, 1)

#define GRAD_DISPATCH(name, ga, nh)                                                             \
    static void name(int kc, const uint32_t *xp, const uint32_t *yp, const uint32_t *tile,      \
                     const int32_t *xm, const int32_t *ym, int masked, float *ct, long ldc,     \
                     int add)                                                                   \
    {                                                                                           \
        switch (masked & (PG_ZEROS_X | PG_ZEROS_Y)) {                                           \
        case 0: PACKED_BODY(GMR, nh, 1, ga, 0, 0); break;                                       \
        case PG_ZEROS_X: PACKED_BODY(GMR, nh, 1, ga, 1, 0); break;                              \
        case PG_ZEROS_Y: PACKED_BODY(GMR, nh, 1, ga, 0, 1); break;                              \
        default: PACKED_BODY(GMR, nh, 1, ga, 1, 1); break;                                      \
        }                                                                                       \
    }
GRAD_DISPATCH(grad_a_6x32, 1, 2)
GRAD_DISPATCH(grad_b_6x32, 0, 2)
GRAD_DISPATCH(grad_a_6x16, 1, 1)
GRAD_DISPATCH(grad_b_6x16, 0, 1)

/* The exact grad-B product with Y read in place (a convolution's exact data
 * gradient in implicit form, Y its padded dy): row p of the tile's Y at
 * y + yoff[p], 32 raw floats; X packed as for grad_b; the tile's T fixed over
 * the whole reduction (each output's own input value), so its mantissas stay
 * in registers. A Y value whose exponent field is 0 (zero or subnormal)
 * adds nothing (a test on the exponent bits, as fwd_direct_8x32); a zero X
 * row neither (its mask, when xzeros). The caller has checked that no value
 * is infinite or NaN and that every term stays normal. */
static inline __attribute__((always_inline)) void
grad_b_direct_body(int kc, const uint32_t *xp, const float *y, const long *yoff,
                   const uint32_t *tile, const int32_t *xm, float *ct, long ldc, int add,
                   const pg_narrow *nw, const int xzeros)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    const __m512i se = _mm512_set1_epi32((int)PG_SIGN_EXP);
    __m512 acc[GMR][2];
    __m512i t[GMR][2];
#pragma GCC unroll 6
    for (int r = 0; r < GMR; r++)
        for (int h = 0; h < 2; h++) {
            acc[r][h] = _mm512_setzero_ps();
            t[r][h] = _mm512_loadu_si512(tile + r * GNR + 16 * h);
        }
    for (int p = 0; p < kc; p++) {
        const float *row = y + yoff[p];
        __m512i yv[2];
        __mmask16 k[2];
        for (int h = 0; h < 2; h++) {
            yv[h] = _mm512_loadu_si512(row + 16 * h);
            k[h] = _mm512_test_epi32_mask(yv[h], expo);
        }
#pragma GCC unroll 6
        for (int r = 0; r < GMR; r++) {
            __m512i x = _mm512_set1_epi32((int)xp[p * GMR + r]);
            for (int h = 0; h < 2; h++) {
                __m512i s_ = _mm512_and_si512(_mm512_add_epi32(x, t[r][h]), se);
                acc_add(&acc[r][h], _mm512_maskz_add_epi32(k[h], s_, yv[h]), xzeros,
                        xzeros ? (__mmask16)xm[p * GMR + r] : 0);
            }
        }
    }
    if (nw)
        tile_store_narrow(ct, ldc, acc, GMR, 32, nw, add, GMR, 2);
    else
        store_rows(acc, GMR, 2, ct, ldc, add);
}

static void grad_b_direct_6x32(int kc, const uint32_t *xp, const float *y, const long *yoff,
                               const uint32_t *tile, const int32_t *xm, int xzeros, float *ct,
                               long ldc, int add, const pg_narrow *nw)
{
    if (xzeros)
        grad_b_direct_body(kc, xp, y, yoff, tile, xm, ct, ldc, add, nw, 1);
    else
        grad_b_direct_body(kc, xp, y, yoff, tile, xm, ct, ldc, add, nw, 0);
}

/* pg_small_kernel (gemm_internal.h): a small product's tile with both
 * operands read in place, for a batch of them that the driver has proven
 * safe as a whole (gemm_driver.c's pg_small_batch), so that nothing is
 * packed. The terms are the packed kernels' with offset 1: the forward's
 * x + (y − 1.0), grad A's ((y − 1.0 + t) & sign|exp) + x, grad B's
 * ((x − 1.0 + t) & sign|exp) + y, t the T value's mantissa field (0 for a
 * zero or subnormal, as pack_tile's; the −1.0 is folded into it, held in
 * registers over the reduction); a zero or subnormal X adds nothing
 * (merge-masked add; X's tests are left out where the batch's X holds no
 * zero, xzeros 0), nor a zero or subnormal Y (its term +0: the sums start
 * from +0 and so are never −0). */
static inline __attribute__((always_inline)) void
small_body(int kd, const float *x, long xrs, long xcs, const float *y, long yrs, const float *t,
           long trs, long tcs, int mvalid, int nvalid, float *c, long ldc, int add,
           const int kind, const int nh, const int full, const int mx)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    const __m512i se = _mm512_set1_epi32((int)PG_SIGN_EXP);
    const int grad = kind != PG_FWD, ga = kind == PG_GRAD_A;
    const int rows = full ? GMR : mvalid;
    __mmask16 kn[2];
    tile_masks(nvalid, kn);
    __m512 acc[GMR][2];
    __m512i tm[GMR][2];
    const float *xr[GMR];
#pragma GCC unroll 6
    for (int r = 0; r < GMR; r++) {
        xr[r] = x + (r < rows ? r : 0) * xrs;
        for (int h = 0; h < nh; h++) {
            acc[r][h] = _mm512_setzero_ps();
            if (!grad)
                continue;
            /* the mantissa field, the partner's −1.0 folded in (the sum
             * (partner − 1.0 + t) & sign|exp is the packed kernels') */
            __m512i u;
            if (r >= rows) {
                u = _mm512_setzero_si512();
            } else if (tcs == 1) {
                u = _mm512_maskz_loadu_epi32(kn[h], t + r * trs + 16 * h);
            } else {
                uint32_t g[16] = {0};
                for (int l = 0; l < 16 && 16 * h + l < nvalid; l++)
                    g[l] = as_bits(t[r * trs + (16 * h + l) * tcs]);
                u = _mm512_loadu_si512(g);
            }
            u = _mm512_maskz_and_epi32(_mm512_test_epi32_mask(u, expo), u,
                                       _mm512_set1_epi32(0x007FFFFF));
            tm[r][h] = _mm512_sub_epi32(u, _mm512_set1_epi32((int)PG_ONE));
        }
    }
    for (int p = 0; p < kd; p++) {
        __m512i yv[2];
        __mmask16 ky[2];
        for (int h = 0; h < nh; h++) {
            yv[h] = _mm512_maskz_loadu_epi32(kn[h], y + p * yrs + 16 * h);
            ky[h] = _mm512_test_epi32_mask(yv[h], expo);
            if (!grad) /* the forward's Y − 1.0 */
                yv[h] = _mm512_sub_epi32(yv[h], _mm512_set1_epi32((int)PG_ONE));
        }
#pragma GCC unroll 6
        for (int r = 0; r < GMR; r++) {
            if (!full && r >= mvalid)
                continue;
            __m512i xb = bcast_bits(xr[r] + p * xcs);
            __mmask16 kx = mx ? _mm512_test_epi32_mask(xb, expo) : (__mmask16)0xFFFF;
            for (int h = 0; h < nh; h++) {
                __m512i a = grad ? _mm512_and_si512(_mm512_add_epi32(ga ? yv[h] : xb, tm[r][h]), se)
                                 : xb;
                __m512i o = grad && ga ? xb : yv[h];
                acc_add(&acc[r][h], _mm512_maskz_add_epi32(ky[h], a, o), mx, kx);
            }
        }
    }
    tile_store_add(c, ldc, acc, kn, rows, GMR, nh, add);
}

static void small_tile(pg_kind kind, int kd, const float *x, long xrs, long xcs, const float *y,
                       long yrs, const float *t, long trs, long tcs, int mvalid, int nvalid,
                       float *c, long ldc, int add, int xzeros)
{
#define SMALL_CASE(K, NH, F, MX)                                                                \
    small_body(kd, x, xrs, xcs, y, yrs, t, trs, tcs, mvalid, nvalid, c, ldc, add, K, NH, F, \
               MX)
#define SMALL_KIND(NH, F, MX)                                                                   \
    do {                                                                                        \
        if (kind == PG_FWD)                                                                     \
            SMALL_CASE(PG_FWD, NH, F, MX);                                                      \
        else if (kind == PG_GRAD_A)                                                             \
            SMALL_CASE(PG_GRAD_A, NH, F, MX);                                                   \
        else                                                                                    \
            SMALL_CASE(PG_GRAD_B, NH, F, MX);                                                   \
    } while (0)
#define SMALL_ROWS(NH, MX)                                                                      \
    do {                                                                                        \
        if (mvalid == GMR)                                                                      \
            SMALL_KIND(NH, 1, MX);                                                              \
        else                                                                                    \
            SMALL_KIND(NH, 0, MX);                                                              \
    } while (0)
    if (nvalid > 16 && xzeros)
        SMALL_ROWS(2, 1);
    else if (nvalid > 16)
        SMALL_ROWS(2, 0);
    else if (xzeros)
        SMALL_ROWS(1, 1);
    else
        SMALL_ROWS(1, 0);
#undef SMALL_ROWS
#undef SMALL_KIND
#undef SMALL_CASE
}

/* conv_transpose (conv2d.c) in 16 × 16 blocks: 16 rows of m loaded (the
 * last block's columns masked, rows past the end zero: tr16_load),
 * transposed in registers (tr16: 64 shuffles a block where the 4 × 4 SSE
 * form takes 128 and 64 loads and stores of 16 bytes), 16 columns of t
 * stored (masked to the block's rows). Block rows outer, so that each of
 * m's rows is read in order. Moves and shuffles only: the same values. */
static void transpose_16x16(int rows, int cols, const float *m, long ldm, float *t)
{
    for (int i = 0; i < rows; i += 16) {
        const int rr = rows - i < 16 ? rows - i : 16;
        __mmask16 kr[2], kc[2]; /* the block's rows, its columns (the first mask each) */
        tile_masks(rr, kr);
        for (int j = 0; j < cols; j += 16) {
            const int cw = cols - j < 16 ? cols - j : 16;
            tile_masks(cw, kc);
            __m512i v[16];
            tr16_load(v, m + (long)i * ldm + j, ldm, rr, kc[0]);
            tr16(v);
            /* column c of the block: v[c], lane q its row i + q */
            float *o = t + (long)j * rows + i;
#pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                if (c < cw)
                    _mm512_mask_storeu_ps(o + (long)c * rows, kr[0], _mm512_castsi512_ps(v[c]));
        }
    }
}

/* col2im's rows at stride 2 across (conv2d.c's conv_col2im_add): for rows
 * r < nr of n values, out[r·os + 2k] += in[r·is + k], the places between
 * added −0 (x + −0 is x, −0 included: add_row_s2's bits), 16 values a step
 * spread over the even lanes of two vectors (the odd lanes −0), the loads
 * and stores masked to the 2m − 1 places a step of m values reaches */
static void add_rows_s2(int nr, int n, const float *in, long is, float *out, long os)
{
    const __m512i lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    const __m512 nz = _mm512_set1_ps(-0.0f);
    for (int r = 0; r < nr; r++, in += is, out += os)
        for (int k = 0; k < n; k += 16) {
            const int m = n - k < 16 ? n - k : 16, span = 2 * m - 1;
            __mmask16 km[2], ko[2]; /* the m values; the span places, over two vectors */
            tile_masks(m, km);
            tile_masks(span, ko);
            const __m512 v = _mm512_maskz_loadu_ps(km[0], in + k);
            float *o = out + 2L * k;
            const __m512 e0 = _mm512_mask_permutexvar_ps(nz, 0x5555, lo, v);
            _mm512_mask_storeu_ps(o, ko[0], _mm512_add_ps(_mm512_maskz_loadu_ps(ko[0], o), e0));
            if (ko[1]) {
                const __m512 e1 = _mm512_mask_permutexvar_ps(nz, 0x5555, hi, v);
                _mm512_mask_storeu_ps(o + 16, ko[1],
                                      _mm512_add_ps(_mm512_maskz_loadu_ps(ko[1], o + 16), e1));
            }
        }
}

/* lanes [lo, hi) of 16 as a mask (either bound may lie outside 0..16) */
static inline __mmask16 lanes_between(int lo, int hi)
{
    uint32_t m = 0;
    for (int l = 0; l < 16; l++)
        m |= (uint32_t)(l >= lo && l < hi) << l;
    return (__mmask16)m;
}

/* n zeros at p (the feeds' slack) */
static void store_zeros(float *p, int n)
{
    for (int i = 0; i < n; i += 16)
        _mm512_mask_storeu_ps(p + i, lanes_between(0, n - i), _mm512_setzero_ps());
}

/* conv_pad_planes (conv2d.c): each padded row (wp = w + 2·pw wide) in
 * ⌈wp / 16⌉ vectors, each one masked load of the row's values at their
 * places (lanes outside them zero: the padding; masked lanes are not read,
 * so the loads may start before src and end past it) and one store masked
 * to the row; the rows of zeros above and below stored the same way. Where
 * the plain form copies a row four floats at a time and writes its padding
 * one float at a time (rows of 7 to 32 floats), this takes one or two load
 * and store pairs a row. Moves only: the same values. */
static void pad_planes(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                       int slack)
{
    enum { MAXV = 8 }; /* rows up to 128 floats wide; wider ones by the plain form */
    const int hp = h + 2 * ph, wp = w + 2 * pw, nv = (wp + 15) / 16;
    if (nv > MAXV) {
        conv_pad_planes_plain(c, h, w, ph, pw, src, dst, slack);
        return;
    }
    const __m512 z = _mm512_setzero_ps();
    store_zeros(dst + (long)c * hp * wp, slack);
    __mmask16 ld[MAXV], st[MAXV];
    for (int k = 0; k < nv; k++) {
        /* lanes [pw − 16k, pw + w − 16k) of vector k hold the row's values;
         * its first wp − 16k lanes are in the row */
        ld[k] = lanes_between(pw - 16 * k, pw + w - 16 * k);
        st[k] = lanes_between(0, wp - 16 * k);
    }
    for (int p = 0; p < c; p++) {
        float *pl = dst + (long)p * hp * wp;
        const float *sp = src + (long)p * h * w;
        if (p + 1 < c) /* as the plain form: the next plane asked for */
            nomul_prefetch(sp + (long)h * w, (long)h * w * 4);
        for (int y = 0; y < hp; y++) {
            float *row = pl + (long)y * wp;
            if (y < ph || y >= ph + h) {
                for (int k = 0; k < nv; k++)
                    _mm512_mask_storeu_ps(row + 16 * k, st[k], z);
                continue;
            }
            const float *s = sp + (long)(y - ph) * w - pw;
            for (int k = 0; k < nv; k++)
                _mm512_mask_storeu_ps(row + 16 * k, st[k],
                                      _mm512_maskz_loadu_ps(ld[k], s + 16 * k));
        }
    }
}

/* conv_split_planes (conv2d.c: stride 2's feed, each padded plane split by
 * the parity of row and column into four of hs × ws): split plane (a, b)'s
 * row u is x's row y = 2u + a − ph (zeros where y is outside), its lane v
 * x's column 2v + b − pw (zero outside). Sixteen lanes of a row from two
 * masked loads of 32 consecutive values (the ones outside the row masked
 * off, so zeros, and not read) and one permute of their even lanes, stored
 * masked to the row; where the plain form copies each value by itself (a
 * quarter of PAM's stride-2 forward on 28 × 28 planes, 16 → 32 channels,
 * by perf's samples). build/conv_pass_bench 16 32 28 3 2 PASS MODE 8, one
 * thread, least ms of six alternating runs, Zen 5: PAM forward 1.14 →
 * 0.98, approximate dW 1.27 → 1.11, float dW 0.84 → 0.72. Moves only: the
 * same values. */
static void split_planes(int c, int h, int w, int ph, int pw, const float *src, float *dst,
                         int slack)
{
    enum { MAXV = 4 }; /* split rows up to 64 floats wide; wider ones by the plain form */
    const int hs = conv_split_side(h, ph), ws = conv_split_side(w, pw), nv = (ws + 15) / 16;
    if (nv > MAXV) {
        conv_split_planes_plain(c, h, w, ph, pw, src, dst, slack);
        return;
    }
    const __m512 z = _mm512_setzero_ps();
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4,
                                          2, 0);
    store_zeros(dst + 4L * c * hs * ws, slack);
    /* vector k of column parity b reads x's columns 32k + b − pw + j, j <
     * 32, over two loads: lo[b][k] and hi[b][k] mask those inside the row */
    __mmask16 lo[2][MAXV], hi[2][MAXV], st[MAXV];
    for (int k = 0; k < nv; k++) {
        st[k] = lanes_between(0, ws - 16 * k);
        for (int b = 0; b < 2; b++) {
            const int first = 32 * k + b - pw; /* x's column in lane 0 of the first load */
            lo[b][k] = lanes_between(-first, w - first);
            hi[b][k] = lanes_between(-first - 16, w - first - 16);
        }
    }
    for (int p = 0; p < c; p++) {
        const float *sp = src + (long)p * h * w;
        if (p + 1 < c) /* as conv_pad_planes: the next plane asked for */
            nomul_prefetch(sp + (long)h * w, (long)h * w * 4);
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                float *pl = dst + (long)(4 * p + 2 * a + b) * hs * ws;
                for (int u = 0; u < hs; u++) {
                    float *row = pl + (long)u * ws;
                    const int y = 2 * u + a - ph;
                    if (y < 0 || y >= h) {
                        for (int k = 0; k < nv; k++)
                            _mm512_mask_storeu_ps(row + 16 * k, st[k], z);
                        continue;
                    }
                    const float *s = sp + (long)y * w + b - pw;
                    for (int k = 0; k < nv; k++) {
                        const __m512 v0 = _mm512_maskz_loadu_ps(lo[b][k], s + 32 * k);
                        const __m512 v1 = _mm512_maskz_loadu_ps(hi[b][k], s + 32 * k + 16);
                        _mm512_mask_storeu_ps(row + 16 * k, st[k],
                                              _mm512_permutex2var_ps(v0, even, v1));
                    }
                }
            }
    }
}

/* This instruction set's context: its kernels, packing and block sizes,
 * registered together (gemm_internal.h). */
const pg_cntx pg_cntx_avx512 = {
    .isa = NOMUL_ISA_AVX512,
    .fwd = {FMR, FNR, fwd_8x32},
    .grad = {GMR, GNR, grad_a_6x32, grad_b_6x32},
    .fwd_narrow = {FMR, 16, fwd_8x16},
    .grad_narrow = {GMR, 16, grad_a_6x16, grad_b_6x16},
    .fwd_direct = fwd_direct_8x32,
    .grad_b_direct = grad_b_direct_6x32,
    .fwd_xdirect = {FMR, FNR, xdirect_8x32, xdirect_8x16},
    .grad_xdirect = {6, 32, grad_xdirect_6x32, grad_xdirect_6x16},
    .xsparse = {xlist_build, xsparse_8x32, xsparse_8x16, grad_xsparse_6x32, grad_xsparse_6x16},
    .xrows = {xrow_build, xrow_8x32, xrow_8x16, xrow_grad_a_6x32, xrow_grad_a_6x16,
              xrow_grad_b_6x32, xrow_grad_b_6x16},
    .xin = {xin_stats, xin_8x32, xin_8x16, xin_grad_a_6x32, xin_grad_a_6x16},
    .small = {GMR, 32, small_tile},
    .csparse = {csparse_pam_avx512, csparse_float_avx512},
    .clane = {clane_pam_avx512, clane_float_avx512},
    .dwplane = {dwplane_pam_avx512, dwplane_float_avx512, dwplane_float_guard_avx512},
    .dxlive = {dxlive_pam_avx512, dxlive_float_avx512},
    .fdirect = {8, 32, fd_8x32_avx512, fd_8x16_avx512},
    .pack = pack_panel,
    .pack_tile = pack_tile,
    .dw_rows = {dw_fwd_row, dw_dx_row, dw_dw_row, dw_dot_row, value_stats},
    .transpose = transpose_16x16,
    .add_rows_s2 = add_rows_s2,
    .pad_planes = pad_planes,
    .split_planes = split_planes,
    .kc = PG_KC,
    .mc = PG_MC,
    .nc = PG_NC,
};
