/*
 * planelist.h — one plane's list of its nonzero inputs, for the kernels
 * that work input by input on a stride-1 3×3 layer (dwplane.inc: the
 * weight gradient; dxlive.inc: the data gradient at live inputs). AVX-512;
 * included only by objects compiled with its flags.
 *
 * Each listed input carries a code: the byte offset, in dy's pixel-major
 * rows (rowb bytes each, a multiple of 64), of the row its tap (0, 0)
 * reads, output pixel (y + pad_h, x + pad_w); its low 6 bits, free, say
 * which of its taps fall inside the output: bits 3-5 its taps' rows i (oy
 * = y + pad_h − i·dil_h in [0, oh)), bits 0-2 its columns j. Tap (i, j)
 * reads the row i·dil_h·ow·rowb + j·dil_w·rowb bytes before. An input with
 * all 9 inside has the code's low bits 63: the kernels add its taps with no
 * test and walk the list in one loop, with no work per row.
 */
#ifndef NOMUL_GEMM_PLANELIST_H
#define NOMUL_GEMM_PLANELIST_H

#include <immintrin.h>
#include <stdint.h>

#include "gemm_internal.h" /* PG_PLANE_LIST: the lists' size */

/* What each listed input's value entry holds */
enum { PL_NONE, PL_BITS, PL_MANTISSA };
enum { PL_INSIDE = 63 };

/* The lists' places in list (PG_PLANE_LIST(h, w) uint32): values, codes and
 * positions (y·w + x), h·w entries each with a store's slack of 16, then
 * the w + 16 columns' codes */
typedef struct {
    uint32_t *val, *code, *pos, *colc;
} plane_list;
static inline plane_list plane_list_at(uint32_t *list, int h, int w)
{
    const long pl = (long)h * w + 16;
    return (plane_list){list, list + pl, list + 2 * pl, list + 3 * pl};
}

/* The columns' codes, once per geometry: column x's (x + pw)·rowb, and bit j
 * where its tap j's column x + pw − j·dw falls in [0, ow) */
static inline void plane_col_codes(const plane_list *L, int w, int ow, int pw, int dw, long rowb)
{
    for (int x = 0; x < w + 16; x++) {
        uint32_t c = (uint32_t)((long)(x + pw) * rowb);
        for (int j = 0; j < 3; j++) {
            int ox = x + pw - j * dw;
            c |= (uint32_t)(x < w && ox >= 0 && ox < ow) << j;
        }
        L->colc[x] = c;
    }
}

/* The nonzero inputs of plane (h × w), row after row (an input is listed
 * where its bits and `nonzero` are not 0): val (PL_BITS: its bits;
 * PL_MANTISSA: its mantissa field, 0 where its exponent field is), code,
 * pos where pos_too; zero: where not NULL, a plane of outputs zeroed on the
 * way. Returns how many. The whole plane is listed before any list is
 * read back. Compressed registers stored whole: the compressing store to
 * memory is microcoded on Zen 4, about 20× slower. */
static inline __attribute__((always_inline)) int
plane_code_lists(const plane_list *L, const float *plane, int h, int w, int oh, int ow, int ph,
                 int dh, long rowb, uint32_t nonzero, const int vals, const int pos_too,
                 float *zero)
{
    const __m512i nzm = _mm512_set1_epi32((int)nonzero), expo = _mm512_set1_epi32(0x7F800000);
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    int n = 0;
    for (int y = 0; y < h; y++) {
        const float *row = plane + (long)y * w;
        unsigned rows = 0;
        for (int i = 0; i < 3; i++) {
            int oy = y + ph - i * dh;
            rows |= (unsigned)(oy >= 0 && oy < oh) << i;
        }
        const __m512i rc =
            _mm512_set1_epi32((int)(uint32_t)((long)(y + ph) * ow * rowb | rows << 3));
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
                _mm512_storeu_si512(L->val + n, _mm512_maskz_compress_epi32(nz, v));
            _mm512_storeu_si512(
                L->code + n,
                _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(rc, _mm512_loadu_si512(L->colc + x0))));
            if (pos_too)
                _mm512_storeu_si512(
                    L->pos + n,
                    _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(iota, _mm512_set1_epi32(y * w + x0))));
            n += __builtin_popcount(nz);
        }
    }
    return n;
}

#endif
