/*
 * fkernel_avx2.c — the AVX2 float kernels of the float path's products with
 * B read in place (gemm_internal.h: fd_kernel; this file alone is compiled
 * with -mavx2 -mfma). Apart from the PAM engine's objects, as
 * fkernel_avx512.c says.
 */
#include <immintrin.h>
#include <stdint.h>

#include "../gemm_internal.h"
#include "../tile_avx2.h"

#define FMR 6

/* Float C tile = A panel · B strip (gemm_internal.h, fd_kernel), 6×16:
 * per k, two 8-lane loads of B and six broadcasts of A feed twelve fused
 * multiply-adds (FMA3: the AVX2 level requires it, core/isa.c). packed: A
 * as a panel, B's rows by offset (else A's rows in place, rows past mvalid
 * reading row 0's values, never stored, and B's rows ldb apart); full: all
 * 16 columns (else masked loads and stores, which never touch the lanes
 * past nvalid). */
static inline __attribute__((always_inline)) void
fd_body(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc, int add,
        const int packed, const int full)
{
    __m256i m[2];
    tile2_lanes(0, nvalid, m);
    __m256 acc[FMR][2];
#pragma GCC unroll 6
    for (int r = 0; r < FMR; r++)
        for (int h = 0; h < 2; h++)
            acc[r][h] = !add || r >= mvalid ? _mm256_setzero_ps()
                        : full ? _mm256_loadu_ps(c + r * ldc + 8 * h)
                               : _mm256_maskload_ps(c + r * ldc + 8 * h, m[h]);
    if (packed) {
        const float *ap = o->a, *b = o->b;
        const long *boff = o->boff;
        for (int p = 0; p < k; p++) {
            const float *row = b + boff[p];
            __m256 y0 = full ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, m[0]);
            __m256 y1 = full ? _mm256_loadu_ps(row + 8) : _mm256_maskload_ps(row + 8, m[1]);
#pragma GCC unroll 6
            for (int r = 0; r < FMR; r++) {
                __m256 x = _mm256_broadcast_ss(ap + p * FMR + r);
                acc[r][0] = _mm256_fmadd_ps(x, y0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, y1, acc[r][1]);
            }
        }
    } else {
        const float *ar[FMR];
#pragma GCC unroll 6
        for (int r = 0; r < FMR; r++)
            ar[r] = o->a + o->aoff[r < mvalid ? r : 0];
        const float *row = o->b;
        const long ldb = o->ldb, ss = o->sstride;
        const int seg = o->seg;
        for (int p0 = 0; p0 < k; p0 += seg) {
            for (int q = 0; q < seg; q++, row += ldb) {
                __m256 y0 = full ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, m[0]);
                __m256 y1 = full ? _mm256_loadu_ps(row + 8) : _mm256_maskload_ps(row + 8, m[1]);
#pragma GCC unroll 6
                for (int r = 0; r < FMR; r++) {
                    __m256 x = _mm256_broadcast_ss(ar[r] + q);
                    acc[r][0] = _mm256_fmadd_ps(x, y0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(x, y1, acc[r][1]);
                }
            }
#pragma GCC unroll 6
            for (int r = 0; r < FMR; r++)
                ar[r] += ss;
        }
    }
    if (o->nw) { /* narrow (pg_narrow) */
        tile2_store_narrow(c, ldc, acc, mvalid, nvalid, o->nw, NULL, 0, 0, FMR, 2);
        return;
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

void fd_6x16_avx2(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc, int add)
{
    int full = nvalid == 16, packed = o->aoff == NULL;
    if (packed && full)
        fd_body(k, o, mvalid, nvalid, c, ldc, add, 1, 1);
    else if (packed)
        fd_body(k, o, mvalid, nvalid, c, ldc, add, 1, 0);
    else if (full)
        fd_body(k, o, mvalid, nvalid, c, ldc, add, 0, 1);
    else
        fd_body(k, o, mvalid, nvalid, c, ldc, add, 0, 0);
}
