/*
 * dwplane_avx512.c — the approximate PAM weight gradient of a stride-1 3×3
 * convolution with 16 or fewer output channels per group, input by input
 * (the job and where it runs: gemm_internal.h's pg_dwplane_job, conv2d.c's
 * dw_block). AVX-512.
 *
 * The in-place kernel (xdirect_8x16) broadcasts each column value x(k, p)
 * and tests it for zero once per tap it serves: a ReLU's input is half
 * zeros, and each of its values serves the 9 taps of its plane, so 9 tests
 * and 9 merge-masked adds (two thirds of the rate on Zen 4) per value,
 * half of them for nothing. Here each plane's nonzero values are listed
 * once, row by row (a test and two compressing stores per 16), and each
 * listed value x at (y, x) adds its 9 terms PAM(dy(p_t), x) to the 9 taps'
 * sums, p_t = (y + pad − i·dil)·ow + (x + pad − j·dil): one vpaddd (dy's
 * row, 16 channels, packed with the adjustment as the in-place kernel
 * reads it) and one vaddps each, no test and no mask. For a fixed tap p_t
 * grows with (y, x), so every sum takes its terms in the in-place kernel's
 * order, less the zero inputs' terms, which add nothing there (a masked
 * add): the same bits. Inputs near the plane's edges, whose taps fall
 * partly outside the output, take a loop that checks each tap.
 */
#include <immintrin.h>
#include <string.h>

#include "gemm_internal.h"

/* tap t's term: dy's row at base − back (in uint32) plus x's bits */
#define TERM(t, base, back)                                                                     \
    acc[t] = _mm512_add_ps(                                                                     \
        acc[t], _mm512_castsi512_ps(_mm512_add_epi32(xb, _mm512_loadu_si512((base) - (back)))));

void dwplane_pam_avx512(const pg_dwplane_job *jb)
{
    const int h = jb->h, w = jb->w, oh = jb->oh, ow = jb->ow;
    const int ph = jb->pad_h, pw = jb->pad_w, dh = jb->dil_h, dw = jb->dil_w;
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __mmask16 kc = (__mmask16)((1u << jb->nvalid) - 1u);
    uint32_t *val = jb->list, *col = jb->list + w + 16;
    /* tap t = 3i + j reads dy's row p − toff[t] (rows of 16 values) */
    long toff[9], rstep = (long)dh * ow * 16, cstep = (long)dw * 16;
    for (int t = 0; t < 9; t++)
        toff[t] = t % 3 ? toff[t - 1] + cstep : t ? toff[t - 3] + rstep : 0;
    /* the inputs whose 9 taps all fall inside the output */
    const int ylo = 2 * dh - ph, yhi = oh - 1 - ph, xlo = 2 * dw - pw, xhi = ow - 1 - pw;
    for (int ci = 0; ci < jb->cig; ci++) {
        const float *plane = jb->x + (long)ci * h * w;
        float *c = jb->c + (long)ci * 9 * jb->ldc;
        __m512 acc[9];
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++)
            acc[t] = jb->add ? _mm512_maskz_loadu_ps(kc, c + t * jb->ldc) : _mm512_setzero_ps();
        for (int y = 0; y < h; y++) {
            const float *row = plane + (long)y * w;
            int n = 0;
            for (int x0 = 0; x0 < w; x0 += 16) {
                __mmask16 kt = w - x0 >= 16 ? (__mmask16)0xFFFF
                                            : (__mmask16)((1u << (w - x0)) - 1u);
                __m512i v = _mm512_maskz_loadu_epi32(kt, row + x0);
                __mmask16 nz = _mm512_mask_test_epi32_mask(kt, v, expo);
                /* (whole stores of compressed registers: the compressing
                 * store to memory is microcoded on Zen 4, ~20x slower) */
                _mm512_storeu_si512(val + n, _mm512_maskz_compress_epi32(nz, v));
                _mm512_storeu_si512(
                    col + n,
                    _mm512_maskz_compress_epi32(nz, _mm512_add_epi32(iota, _mm512_set1_epi32(x0))));
                n += __builtin_popcount(nz);
            }
            if (!n)
                continue;
            /* the taps' rows inside the output: bit i */
            unsigned rows = 0;
            for (int i = 0; i < 3; i++) {
                int oy = y + ph - i * dh;
                rows |= (unsigned)(oy >= 0 && oy < oh) << i;
            }
            const int inner = y >= ylo && y <= yhi;
            const uint32_t *yrow = jb->yp + ((long)(y + ph) * ow + pw) * 16;
            for (int e = 0; e < n; e++) {
                const int x = (int)col[e];
                const __m512i xb = _mm512_set1_epi32((int)val[e]);
                const uint32_t *yb = yrow + (long)x * 16;
                if (inner && x >= xlo && x <= xhi) {
                    if (dw == 1) { /* the taps of a row 16 values apart: displacements */
                        const uint32_t *y1 = yb - toff[3], *y2 = yb - toff[6];
                        TERM(0, yb, 0) TERM(1, yb, 16) TERM(2, yb, 32)
                        TERM(3, y1, 0) TERM(4, y1, 16) TERM(5, y1, 32)
                        TERM(6, y2, 0) TERM(7, y2, 16) TERM(8, y2, 32)
                    } else {
#pragma GCC unroll 9
                        for (int t = 0; t < 9; t++)
                            TERM(t, yb, toff[t])
                    }
                    continue;
                }
                unsigned cols = 0;
                for (int j = 0; j < 3; j++) {
                    int ox = x + pw - j * dw;
                    cols |= (unsigned)(ox >= 0 && ox < ow) << j;
                }
#pragma GCC unroll 9
                for (int t = 0; t < 9; t++)
                    if ((rows >> (t / 3) & 1) && (cols >> (t % 3) & 1))
                        TERM(t, yb, toff[t])
            }
        }
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++)
            _mm512_mask_storeu_ps(c + t * jb->ldc, kc, acc[t]);
    }
}
