/*
 * tile_avx512.h — the C tile's edges shared by the AVX-512 kernels, PAM
 * (ukernel_avx512.c) and float (float/fkernel_avx512.c): column masks for a
 * tile up to 32 wide, and its rows loaded into and stored from accumulators
 * acc[rows][2]; a 16 × 16 transpose (the forward's lists, csparse.inc, and
 * the kernels with lanes along channels, clane.inc). Moves and masks only
 * (no arithmetic), so the float kernels' use of it adds nothing to the PAM
 * objects that test_no_multiply scans.
 * Include only from files compiled with AVX-512 flags; always inlined with
 * constant rows and nh, so that the accumulators stay in registers.
 */
#ifndef NOMUL_GEMM_TILE_AVX512_H
#define NOMUL_GEMM_TILE_AVX512_H

#include <immintrin.h>
#include <stdint.h>

/* km[h]: the valid lanes of the tile's h-th 16-lane half, nvalid columns */
static inline __attribute__((always_inline)) void tile_masks(int nvalid, __mmask16 km[2])
{
    km[0] = (__mmask16)(nvalid >= 16 ? 0xFFFF : (1u << nvalid) - 1);
    km[1] = (__mmask16)(nvalid >= 32 ? 0xFFFF : nvalid > 16 ? (1u << (nvalid - 16)) - 1 : 0);
}

/* acc = C's rows (add) or zeros; rows from mvalid on are zeros and C's
 * columns past the masks are not read */
static inline __attribute__((always_inline)) void
tile_load(__m512 (*acc)[2], const float *c, long ldc, const __mmask16 *km, int mvalid, int add,
          const int rows, const int nh, const int full)
{
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < nh; h++)
            acc[r][h] = !add || r >= mvalid ? _mm512_setzero_ps()
                        : full ? _mm512_loadu_ps(c + r * ldc + 16 * h)
                               : _mm512_maskz_loadu_ps(km[h], c + r * ldc + 16 * h);
}

/* C's first mvalid rows = acc, the masked columns only */
static inline __attribute__((always_inline)) void
tile_store(float *c, long ldc, __m512 (*acc)[2], const __mmask16 *km, int mvalid, const int rows,
           const int nh)
{
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        if (r < mvalid)
            for (int h = 0; h < nh; h++)
                _mm512_mask_storeu_ps(c + r * ldc + 16 * h, km[h], acc[r][h]);
}

/* The first mvalid rows of acc (nh halves of 16 lanes, lanes past nvalid
 * not stored), lanes l being the wide product's columns nw->j0 + l, to their
 * narrow places (pg_narrow, gemm_internal.h: column j of C at
 * j − (j / wp)·(wp − ow), the columns j % wp ≥ ow dropped), row r's at
 * c + r·ldc; with add, acc plus the wide tile at nw->src (row r at
 * src + 32·r) first. One masked store per row and half for each wide row the
 * tile's lanes meet (pg_narrow_segment; wp ≥ 32: one or two). Needs
 * gemm_internal.h. */
static inline __attribute__((always_inline)) void
tile_store_narrow(float *c, long ldc, __m512 (*acc)[2], int mvalid, int nvalid,
                  const pg_narrow *nw, int add, const int rows, const int nh)
{
    if (add)
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < nh; h++)
                acc[r][h] = _mm512_add_ps(acc[r][h], _mm512_loadu_ps(nw->src + 32 * r + 16 * h));
    int lo, hi;
    long at;
    for (int d = 0; pg_narrow_segment(nw, nvalid, d, &lo, &hi, &at); d++) {
        if (hi <= lo)
            continue;
        const uint32_t m = (hi >= 32 ? 0xFFFFFFFFu : (1u << hi) - 1) & ~((1u << lo) - 1);
        const __mmask16 km[2] = {(__mmask16)m, (__mmask16)(m >> 16)};
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++)
            if (r < mvalid)
                for (int h = 0; h < nh; h++) {
                    if (!km[h])
                        continue;
                    /* the address as an integer: lanes below lo, masked
                     * off and never touched, may lie before the row */
                    float *p = (float *)((uintptr_t)c +
                                         (uintptr_t)((r * ldc + at + 16 * h) * (long)sizeof(float)));
                    _mm512_mask_storeu_ps(p, km[h], acc[r][h]);
                }
    }
}

/* v[q] = row q of a 16 × 16 block at base (rows rs floats apart), its
 * columns masked by kcol, rows from `rows` on zero (not read); each row's
 * lines 64 floats on asked for (a source streamed from memory, block after
 * block along its rows: 16 streams are more than the prefetchers follow).
 * The loads of tr16's transpositions (ukernel_avx512.c's transpose_16x16,
 * pack.inc's pack_tr16). */
static inline __attribute__((always_inline)) void tr16_load(__m512i *v, const float *base, long rs,
                                                            int rows, __mmask16 kcol)
{
#pragma GCC unroll 16
    for (int q = 0; q < 16; q++) {
        if (q < rows)
            __builtin_prefetch(base + q * rs + 64);
        v[q] = q < rows ? _mm512_maskz_loadu_epi32(kcol, base + q * rs) : _mm512_setzero_si512();
    }
}

/* v[i] (lanes j) → v[j] (lanes i), 16 × 16 dwords */
static inline __attribute__((always_inline)) void tr16(__m512i *v)
{
    __m512i t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 8)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_i32x4(v[i + j], v[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_i32x4(v[i + j], v[i + j + 4], 0xDD);
        }
#pragma GCC unroll 16
    for (int j = 0; j < 8; j++) {
        v[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
        v[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xDD);
    }
}

#endif
