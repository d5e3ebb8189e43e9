/*
 * tile_avx2.h — the C tile's edges shared by the AVX2 kernels, PAM
 * (ukernel_avx2.c) and float (float/fkernel_avx2.c): lane masks for a tile up
 * to 16 wide, and the narrow store of its rows (pg_narrow). Moves and masks
 * only (no arithmetic), so the float kernels' use of it adds nothing to the
 * PAM objects that test_no_multiply scans.
 * Include only from files compiled with AVX2 flags, after gemm_internal.h;
 * always inlined with constant rows and nh, so that the accumulators stay in
 * registers.
 */
#ifndef NOMUL_GEMM_TILE_AVX2_H
#define NOMUL_GEMM_TILE_AVX2_H

#include <immintrin.h>
#include <stdint.h>

/* The lanes of v whose bits are set in keep (8 bits) moved to the front, in
 * order (the rest: lane 0's value): a vpermd by the table of permutations
 * pg_left_pack8 (ukernel_avx2.c), AVX2's compressing store */
extern const uint64_t pg_left_pack8[256];
static inline __attribute__((always_inline)) __m256i tile2_left_pack(__m256i v, unsigned keep)
{
    const __m256i perm =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)&pg_left_pack8[keep]));
    return _mm256_permutevar8x32_epi32(v, perm);
}

/* m[h]: all ones in the lanes l of the h-th 8-lane vector with lo ≤ 8h + l < hi */
static inline __attribute__((always_inline)) void tile2_lanes(int lo, int hi, __m256i m[2])
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    for (int h = 0; h < 2; h++) {
        __m256i l = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * h));
        m[h] = _mm256_andnot_si256(_mm256_cmpgt_epi32(vlo, l), _mm256_cmpgt_epi32(vhi, l));
    }
}

/* acc = C's rows (add) or zeros; rows from mvalid on are zeros and C's
 * columns off the lane masks km are not read */
static inline __attribute__((always_inline)) void
tile2_load(__m256 (*acc)[2], const float *c, long ldc, const __m256i *km, int mvalid, int add,
           const int rows, const int nh)
{
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < nh; h++)
            acc[r][h] = !add || r >= mvalid ? _mm256_setzero_ps()
                                            : _mm256_maskload_ps(c + r * ldc + 8 * h, km[h]);
}

/* C's first mvalid rows = acc, the lanes on in km only */
static inline __attribute__((always_inline)) void
tile2_store(float *c, long ldc, __m256 (*acc)[2], const __m256i *km, int mvalid, const int rows,
            const int nh)
{
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        if (r < mvalid)
            for (int h = 0; h < nh; h++)
                _mm256_maskstore_ps(c + r * ldc + 8 * h, km[h], acc[r][h]);
}

/* The first mvalid of rows rows of acc (nh vectors of 8 lanes, lanes past
 * nvalid not stored), lane l being the wide product's column nw->j0 + l, to
 * their narrow places (pg_narrow, gemm_internal.h), row r's at c + r·ldc; with
 * add, acc plus the wide tile at src (row r at src + srs·r) first. One masked
 * store per row and vector for each wide row the tile's lanes meet
 * (pg_narrow_segment). */
static inline __attribute__((always_inline)) void
tile2_store_narrow(float *c, long ldc, __m256 (*acc)[2], int mvalid, int nvalid,
                   const pg_narrow *nw, const float *src, long srs, int add, const int rows,
                   const int nh)
{
    if (add)
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < nh; h++)
                acc[r][h] = _mm256_add_ps(acc[r][h], _mm256_loadu_ps(src + srs * r + 8 * h));
    int lo, hi;
    long at;
    for (int d = 0; pg_narrow_segment(nw, nvalid, d, &lo, &hi, &at); d++) {
        if (hi <= lo)
            continue;
        __m256i mk[2];
        tile2_lanes(lo, hi, mk);
#pragma GCC unroll 8
        for (int r = 0; r < rows; r++)
            if (r < mvalid)
                for (int h = 0; h < nh; h++) {
                    if (hi <= 8 * h || lo >= 8 * h + 8)
                        continue;
                    /* the address as an integer: lanes below lo, masked
                     * off and never touched, may lie before the row */
                    float *p = (float *)((uintptr_t)c +
                                         (uintptr_t)((r * ldc + at + 8 * h) * (long)sizeof(float)));
                    _mm256_maskstore_ps(p, mk[h], acc[r][h]);
                }
    }
}

#endif
