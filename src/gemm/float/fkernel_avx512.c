/*
 * fkernel_avx512.c — the AVX-512 float kernels of the float path's products
 * with B read in place (gemm_internal.h: fd_kernel; this file alone is
 * compiled with AVX-512 flags). They are float arithmetic, fused
 * multiply-adds, and live apart from the PAM engine's objects, which
 * test_no_multiply shows free of any float multiplication.
 */
#include <immintrin.h>

#include "../gemm_internal.h"

#define FMR 8

/* Float C tile = A panel · B strip (gemm_internal.h, fd_kernel), 8 rows by
 * nh halves of 16: per k, nh 16-lane loads of B and eight broadcasts of A
 * feed 8·nh fused multiply-adds. packed: A as panels (else row r at a +
 * r·lda, rows past mvalid reading row 0's values, never stored); full: all
 * 16·nh columns (else masked loads and stores, which never touch the lanes
 * past nvalid). */
static inline __attribute__((always_inline)) void
fd_body(int k, const float *a, long lda, const float *b, long ldb, int mvalid, int nvalid,
        float *c, long ldc, int add, const int nh, const int packed, const int full)
{
    __mmask16 km[2];
    km[0] = (__mmask16)(nvalid >= 16 ? 0xFFFF : (1u << nvalid) - 1);
    km[1] = (__mmask16)(nvalid >= 32 ? 0xFFFF : nvalid > 16 ? (1u << (nvalid - 16)) - 1 : 0);
    const float *ar[FMR];
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        ar[r] = packed ? a + r : a + (r < mvalid ? r : 0) * lda;
    const long as = packed ? FMR : 1;
    __m512 acc[FMR][2];
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        for (int h = 0; h < nh; h++)
            acc[r][h] = !add ? _mm512_setzero_ps()
                        : full ? _mm512_loadu_ps(c + r * ldc + 16 * h)
                               : _mm512_maskz_loadu_ps(r < mvalid ? km[h] : 0, c + r * ldc + 16 * h);
    for (int p = 0; p < k; p++) {
        const float *row = b + p * ldb;
        __m512 y[2];
        for (int h = 0; h < nh; h++)
            y[h] = full ? _mm512_loadu_ps(row + 16 * h) : _mm512_maskz_loadu_ps(km[h], row + 16 * h);
#pragma GCC unroll 8
        for (int r = 0; r < FMR; r++) {
            __m512 x = _mm512_set1_ps(ar[r][p * as]);
            for (int h = 0; h < nh; h++)
                acc[r][h] = _mm512_fmadd_ps(x, y[h], acc[r][h]);
        }
    }
    /* unrolled with constant indices, so that acc stays in registers */
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        if (r < mvalid)
            for (int h = 0; h < nh; h++)
                _mm512_mask_storeu_ps(c + r * ldc + 16 * h, km[h], acc[r][h]);
}

#define FD_KERNEL(name, nh)                                                                      \
    void name(int k, const float *a, long lda, const float *b, long ldb, int mvalid,     \
                     int nvalid, float *c, long ldc, int add)                                   \
    {                                                                                            \
        int full = nvalid == 16 * (nh);                                                          \
        if (lda == 0 && full)                                                                    \
            fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, nh, 1, 1);                   \
        else if (lda == 0)                                                                       \
            fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, nh, 1, 0);                   \
        else if (full)                                                                           \
            fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, nh, 0, 1);                   \
        else                                                                                     \
            fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, nh, 0, 0);                   \
    }
FD_KERNEL(fd_8x32_avx512, 2)
FD_KERNEL(fd_8x16_avx512, 1)

