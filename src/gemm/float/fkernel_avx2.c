/*
 * fkernel_avx2.c — the AVX2 float kernels of the float path's products with
 * B read in place (gemm_internal.h: fd_kernel; this file alone is compiled
 * with -mavx2 -mfma). Apart from the PAM engine's objects, as
 * fkernel_avx512.c says.
 */
#include <immintrin.h>

#include "../gemm_internal.h"

#define FMR 6

/* Float C tile = A panel · B strip (gemm_internal.h, fd_kernel), 6×16:
 * per k, two 8-lane loads of B and six broadcasts of A feed twelve fused
 * multiply-adds (FMA3: the AVX2 level requires it, core/isa.c). packed: A
 * as panels (else row r at a + r·lda, rows past mvalid reading row 0's
 * values, never stored); full: all 16 columns (else masked loads and
 * stores, which never touch the lanes past nvalid). */
static inline __attribute__((always_inline)) void fd_body(int k, const float *a, long lda, const float *b, long ldb,
                                     int mvalid, int nvalid, float *c, long ldc, int add,
                                     const int packed, const int full)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m[2] = {_mm256_cmpgt_epi32(_mm256_set1_epi32(nvalid), lane),
                    _mm256_cmpgt_epi32(_mm256_set1_epi32(nvalid - 8), lane)};
    const float *ar[FMR];
#pragma GCC unroll 6
    for (int r = 0; r < FMR; r++)
        ar[r] = packed ? a + r : a + (r < mvalid ? r : 0) * lda;
    const long as = packed ? FMR : 1;
    __m256 acc[FMR][2];
#pragma GCC unroll 6
    for (int r = 0; r < FMR; r++)
        for (int h = 0; h < 2; h++)
            acc[r][h] = !add || r >= mvalid ? _mm256_setzero_ps()
                        : full ? _mm256_loadu_ps(c + r * ldc + 8 * h)
                               : _mm256_maskload_ps(c + r * ldc + 8 * h, m[h]);
    for (int p = 0; p < k; p++) {
        const float *row = b + p * ldb;
        __m256 y0 = full ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, m[0]);
        __m256 y1 = full ? _mm256_loadu_ps(row + 8) : _mm256_maskload_ps(row + 8, m[1]);
#pragma GCC unroll 6
        for (int r = 0; r < FMR; r++) {
            __m256 x = _mm256_broadcast_ss(ar[r] + p * as);
            acc[r][0] = _mm256_fmadd_ps(x, y0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, y1, acc[r][1]);
        }
    }
    /* unrolled with constant indices, so that acc stays in registers */
#pragma GCC unroll 6
    for (int r = 0; r < FMR; r++) {
        if (r >= mvalid)
            continue;
        if (full) {
            _mm256_storeu_ps(c + r * ldc, acc[r][0]);
            _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
        } else {
            _mm256_maskstore_ps(c + r * ldc, m[0], acc[r][0]);
            _mm256_maskstore_ps(c + r * ldc + 8, m[1], acc[r][1]);
        }
    }
}

void fd_6x16_avx2(int k, const float *a, long lda, const float *b, long ldb, int mvalid,
                  int nvalid, float *c, long ldc, int add)
{
    int full = nvalid == 16;
    if (lda == 0 && full)
        fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, 1, 1);
    else if (lda == 0)
        fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, 1, 0);
    else if (full)
        fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, 0, 1);
    else
        fd_body(k, a, lda, b, ldb, mvalid, nvalid, c, ldc, add, 0, 0);
}

