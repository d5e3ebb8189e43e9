/*
 * planelist.h — one plane's list of its nonzero inputs, for the kernels
 * that work input by input on a 3×3 layer (dwplane.inc: the weight
 * gradient, stride 1; dxlive.inc: the data gradient at live inputs, stride
 * 1 or 2). AVX-512, or AVX2 (dxlive.inc's AVX2 form); included only by
 * objects compiled with those flags.
 *
 * Each listed input carries a code: the byte offset, in dy's pixel-major
 * rows (rowb bytes each, a multiple of 64), of its base output pixel, and
 * in its low 6 bits (free) which of its taps reach an output: bits 3-5 its
 * taps' rows i, bits 0-2 its columns j. Stride 1: the base is output pixel
 * (y + pad_h, x + pad_w), tap (i, j) reaches oy = y + pad_h − i·dil_h (in
 * [0, oh)) and reads the row i·dil_h·ow·rowb + j·dil_w·rowb bytes before;
 * an input with all 9 taps inside has low bits 63 (PL_INSIDE), and the
 * list is one run in the pixels' order. Stride 2 (dilation 1: the data
 * gradient's kernel only): tap i reaches oy = (y + pad_h − i) / 2 where
 * that is whole and in [0, oh); the base is output pixel ((y + pad_h) / 2,
 * (x + pad_w) / 2), tap (i, j) reads the row (i / 2)·ow·rowb + (j / 2)·rowb
 * bytes before it; the inputs are listed class by class, the parities of
 * y + pad_h and x + pad_w (even-even: taps (0|2, 0|2), 45 when all four
 * are in; even-odd (0|2, 1), 42; odd-even, 21; odd-odd, tap (1, 1), 18),
 * each class in the pixels' order, so that each class's loop runs one
 * pattern of taps.
 */
#ifndef NOMUL_GEMM_PLANELIST_H
#define NOMUL_GEMM_PLANELIST_H

#include <immintrin.h>
#include <stdint.h>

#include "gemm_internal.h" /* PG_PLANE_LIST: the lists' size */
#ifndef __AVX512F__
#include "tile_avx2.h"
#endif

/* What each listed input's value entry holds */
enum { PL_NONE, PL_BITS, PL_MANTISSA };
enum { PL_INSIDE = 63 };

/* The lists' places in list (PG_PLANE_LIST(h, w) uint32): values, codes and
 * positions (y·w + x), h·w entries each with a store's slack of 16, then
 * the w + 16 columns' codes (for one stride) */
typedef struct {
    uint32_t *val, *code, *pos, *colc;
} plane_list;
static inline plane_list plane_list_at(uint32_t *list, int h, int w)
{
    const long pl = (long)h * w + 16;
    return (plane_list){list, list + pl, list + 2 * pl, list + 3 * pl};
}

/* whether tap i of an input at u = y + pad reaches an output in [0, n)
 * (stride s: 1, or 2 with dilation 1) */
static inline unsigned plane_tap_in(int u, int i, int dil, int s, int n)
{
    int o = u - i * dil;
    return o >= 0 && o % s == 0 && o / s < n;
}

/* whether tap t = 3i + j of the input with code cd reaches an output */
static inline unsigned plane_code_tap(uint32_t cd, int t)
{
    return (cd >> (3 + t / 3)) & (cd >> (t % 3)) & 1;
}

/* the low bits of an input with every tap of its class in: stride 1, all 9
 * (PL_INSIDE); stride 2, class c (c / 2, c % 2: the parities of y + pad,
 * x + pad), rows and columns 0 and 2 where even, 1 where odd (45, 42, 21,
 * 18) */
static inline uint32_t plane_class_full(int s, int c)
{
    return s == 1 ? PL_INSIDE : (c / 2 ? 2u : 5u) << 3 | (c % 2 ? 2u : 5u);
}

/* The columns' codes, once per geometry: column x's base (x + pw) / s ·
 * rowb, and bit j where its tap j reaches an output */
static inline void plane_col_codes(const plane_list *L, int w, int ow, int pw, int dw, int s,
                                   long rowb)
{
    for (int x = 0; x < w + 16; x++) {
        uint32_t c = (uint32_t)((long)((x + pw) / s) * rowb);
        for (int j = 0; j < 3; j++)
            c |= (uint32_t)(x < w && plane_tap_in(x + pw, j, dw, s, ow)) << j;
        L->colc[x] = c;
    }
}

/* Row y of the plane (at row, w wide) into the lists from entry n on (the
 * one step that differs by instruction set): its inputs whose bits and
 * `nonzero` are not 0 (stride 2: those whose x + pw has the class's parity
 * px), each with the code rc (the row's base and tap rows) plus its
 * column's; the row of outputs at zero zeroed first where zero is not NULL
 * (once per row: class px 0). Returns the new end. AVX-512: 16 lanes a step,
 * compressing register stores (the compressing store to memory is
 * microcoded on Zen 4, about 20× slower); AVX2: 8 lanes a step, compressed
 * by tile2_left_pack. */
#ifdef __AVX512F__
static inline __attribute__((always_inline)) int
plane_row_lists(const plane_list *L, const float *row, int y, int w, int pw, int px, const int s,
                uint32_t rc, uint32_t nonzero, const int vals, const int pos_too, float *zero,
                int n)
{
    const __m512i nzm = _mm512_set1_epi32((int)nonzero), expo = _mm512_set1_epi32(0x7F800000);
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i rcv = _mm512_set1_epi32((int)rc);
    for (int x0 = 0; x0 < w; x0 += 16) {
        __mmask16 kt = w - x0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (w - x0)) - 1u);
        __m512i v = _mm512_maskz_loadu_epi32(kt, row + x0);
        if (zero && px == 0)
            _mm512_mask_storeu_ps(zero + (long)y * w + x0, kt, _mm512_setzero_ps());
        if (s == 2) /* the lanes whose x + pw has the class's parity */
            kt &= (__mmask16)((x0 + pw + px) & 1 ? 0xAAAAu : 0x5555u);
        __mmask16 nz = _mm512_mask_test_epi32_mask(kt, v, nzm);
        if (vals == PL_MANTISSA)
            v = _mm512_maskz_and_epi32(_mm512_test_epi32_mask(v, expo), v,
                                       _mm512_set1_epi32(0x007FFFFF));
        if (vals != PL_NONE)
            _mm512_storeu_si512(L->val + n, _mm512_maskz_compress_epi32(nz, v));
        const __m512i cv = _mm512_add_epi32(rcv, _mm512_loadu_si512(L->colc + x0));
        _mm512_storeu_si512(L->code + n, _mm512_maskz_compress_epi32(nz, cv));
        if (pos_too) {
            const __m512i p = _mm512_add_epi32(iota, _mm512_set1_epi32(y * w + x0));
            _mm512_storeu_si512(L->pos + n, _mm512_maskz_compress_epi32(nz, p));
        }
        n += __builtin_popcount(nz);
    }
    return n;
}
#else
static inline __attribute__((always_inline)) int
plane_row_lists(const plane_list *L, const float *row, int y, int w, int pw, int px, const int s,
                uint32_t rc, uint32_t nonzero, const int vals, const int pos_too, float *zero,
                int n)
{
    const __m256i nzm = _mm256_set1_epi32((int)nonzero), expo = _mm256_set1_epi32(0x7F800000);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), z = _mm256_setzero_si256();
    const __m256i rcv = _mm256_set1_epi32((int)rc);
    for (int x0 = 0; x0 < w; x0 += 8) {
        const int left = w - x0;
        const __m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), iota);
        unsigned kt = left >= 8 ? 0xFFu : (1u << left) - 1u;
        __m256i v = left >= 8 ? _mm256_loadu_si256((const __m256i *)(row + x0))
                              : _mm256_maskload_epi32((const int *)(row + x0), lm);
        if (zero && px == 0)
            _mm256_maskstore_ps(zero + (long)y * w + x0, lm, _mm256_setzero_ps());
        if (s == 2) /* the lanes whose x + pw has the class's parity */
            kt &= (x0 + pw + px) & 1 ? 0xAAu : 0x55u;
        const unsigned nz = kt & ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(
                                     _mm256_cmpeq_epi32(_mm256_and_si256(v, nzm), z)));
        if (vals == PL_MANTISSA)
            v = _mm256_andnot_si256(_mm256_cmpeq_epi32(_mm256_and_si256(v, expo), z),
                                    _mm256_and_si256(v, _mm256_set1_epi32(0x007FFFFF)));
        if (vals != PL_NONE)
            _mm256_storeu_si256((__m256i *)(L->val + n), tile2_left_pack(v, nz));
        const __m256i cv =
            _mm256_add_epi32(rcv, _mm256_loadu_si256((const __m256i *)(L->colc + x0)));
        _mm256_storeu_si256((__m256i *)(L->code + n), tile2_left_pack(cv, nz));
        if (pos_too) {
            const __m256i p = _mm256_add_epi32(iota, _mm256_set1_epi32(y * w + x0));
            _mm256_storeu_si256((__m256i *)(L->pos + n), tile2_left_pack(p, nz));
        }
        n += __builtin_popcount(nz);
    }
    return n;
}
#endif

/* The nonzero inputs of plane (h × w), row after row (an input is listed
 * where its bits and `nonzero` are not 0): val (PL_BITS: its bits;
 * PL_MANTISSA: its mantissa field, 0 where its exponent field is), code,
 * pos where pos_too; zero: where not NULL, a plane of outputs zeroed on the
 * way. Stride s = 2: class by class (the parities of y + ph, then of x +
 * pw), seg[c] the start of class c and seg[4] the end; stride 1: seg[0] =
 * 0, seg[1] = the end. Returns how many. The whole plane is listed before
 * any list is read back. */
static inline __attribute__((always_inline)) int
plane_code_lists(const plane_list *L, const float *plane, int h, int w, int oh, int ow, int ph,
                 int pw, int dh, const int s, long rowb, uint32_t nonzero, const int vals,
                 const int pos_too, float *zero, int *seg)
{
    int n = 0;
    for (int c = 0; c < s * s; c++) {
        const int py = c / 2, px = c % 2; /* stride 2: the class's parities */
        seg[c] = n;
        for (int y = s == 2 ? (py - ph) & 1 : 0; y < h; y += s) {
            unsigned rows = 0;
            for (int i = 0; i < 3; i++)
                rows |= plane_tap_in(y + ph, i, dh, s, oh) << i;
            const uint32_t rc = (uint32_t)((long)((y + ph) / s) * ow * rowb | rows << 3);
            n = plane_row_lists(L, plane + (long)y * w, y, w, pw, px, s, rc, nonzero, vals,
                                pos_too, zero, n);
        }
    }
    seg[s * s] = n;
    return n;
}

#endif
