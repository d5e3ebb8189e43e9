/*
 * planelist.h — one plane's lists of its nonzero inputs, for the kernels
 * that work input by input (dwplane.inc: the weight gradient; dxlive.inc:
 * the data gradient at live inputs). AVX-512; included only by objects
 * compiled with its flags.
 */
#ifndef NOMUL_GEMM_PLANELIST_H
#define NOMUL_GEMM_PLANELIST_H

#include <immintrin.h>
#include <stdint.h>

#include "gemm_internal.h" /* PG_PLANE_LIST: the lists' size */

/* What each listed input's value entry holds */
enum { PL_NONE, PL_BITS, PL_MANTISSA };

/* The lists' places in list (PG_PLANE_LIST(h, w) uint32): the values and
 * the columns, h·w entries each with a store's slack of 16, then h + 1 row
 * starts */
typedef struct {
    uint32_t *val, *col, *start;
} plane_list;
static inline plane_list plane_list_at(uint32_t *list, int h, int w)
{
    const long pl = (long)h * w + 16;
    return (plane_list){list, list + pl, list + 2 * pl};
}

/* The nonzero inputs of plane (h × w), row after row: an input is listed
 * where its bits and `nonzero` are not 0; row y's entries from start[y]
 * (start[h] their count), col[e] its column, val[e] (PL_BITS) its bits or
 * (PL_MANTISSA) its mantissa field, 0 where its exponent field is. The
 * whole plane is listed before any list is read back (not each row right
 * after its stores). zero: where not NULL, a plane of outputs zeroed on
 * the way. Compressed registers stored whole: the compressing store to
 * memory is microcoded on Zen 4, about 20× slower. */
static inline __attribute__((always_inline)) void
plane_lists(const float *plane, int h, int w, uint32_t nonzero, const int vals, float *zero,
            uint32_t *list)
{
    const __m512i nzm = _mm512_set1_epi32((int)nonzero), expo = _mm512_set1_epi32(0x7F800000);
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const plane_list L = plane_list_at(list, h, w);
    uint32_t *val = L.val, *col = L.col, *start = L.start;
    int n = 0;
    for (int y = 0; y < h; y++) {
        const float *row = plane + (long)y * w;
        start[y] = n;
        for (int x0 = 0; x0 < w; x0 += 16) {
            __mmask16 kt = w - x0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w - x0)) - 1u);
            __m512i v = _mm512_maskz_loadu_epi32(kt, row + x0);
            __mmask16 nz = _mm512_mask_test_epi32_mask(kt, v, nzm);
            if (zero)
                _mm512_mask_storeu_ps(zero + (long)y * w + x0, kt, _mm512_setzero_ps());
            if (vals == PL_MANTISSA)
                v = _mm512_maskz_and_epi32(_mm512_test_epi32_mask(v, expo), v,
                                           _mm512_set1_epi32(0x007FFFFF));
            if (vals != PL_NONE)
                _mm512_storeu_si512(val + n, _mm512_maskz_compress_epi32(nz, v));
            _mm512_storeu_si512(
                col + n,
                _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(iota, _mm512_set1_epi32(x0))));
            n += __builtin_popcount(nz);
        }
    }
    start[h] = n;
}

#endif
