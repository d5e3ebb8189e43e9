/*
 * fkernel_avx512.c — the AVX-512 float kernels of the float path's products
 * with B read in place (gemm_internal.h: fd_kernel; this file alone is
 * compiled with AVX-512 flags). They are float arithmetic, fused
 * multiply-adds, and live apart from the PAM engine's objects, which
 * test_no_multiply shows free of any float multiplication.
 */
#include <immintrin.h>

#include "../gemm_internal.h"
#include "../tile_avx512.h"

#define FMR 8

/* One step of the reduction: acc[r] += a_r · (B's row), a_r = ar[r][at] */
static inline __attribute__((always_inline)) void
fd_step(__m512 (*acc)[2], const float *row, const float *const *ar, long at, const __mmask16 *km,
        const int nh, const int full)
{
    __m512 y[2];
    for (int h = 0; h < nh; h++)
        y[h] = full ? _mm512_loadu_ps(row + 16 * h) : _mm512_maskz_loadu_ps(km[h], row + 16 * h);
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++) {
        __m512 x = _mm512_set1_ps(ar[r][at]);
        for (int h = 0; h < nh; h++)
            acc[r][h] = _mm512_fmadd_ps(x, y[h], acc[r][h]);
    }
}

/* Float C tile = A panel · B strip (gemm_internal.h, fd_kernel), 8 rows by
 * nh halves of 16: per k, nh 16-lane loads of B and eight broadcasts of A
 * feed 8·nh fused multiply-adds. packed: A as a panel, B's rows by offset
 * (else A's rows in place, rows past mvalid reading row 0's values, never
 * stored, and B's rows ldb apart); full: all 16·nh columns (else masked
 * loads and stores, which never touch the lanes past nvalid). Rows past
 * mvalid of C are neither read nor written. */
static inline __attribute__((always_inline)) void
fd_body(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc, int add,
        const int nh, const int packed, const int full)
{
    __mmask16 km[2];
    tile_masks(nvalid, km);
    __m512 acc[FMR][2];
    tile_load(acc, c, ldc, km, mvalid, add, FMR, nh, full);
    const float *ar[FMR];
#pragma GCC unroll 8
    for (int r = 0; r < FMR; r++)
        ar[r] = packed ? o->a + r : o->a + o->aoff[r < mvalid ? r : 0];
    if (packed) {
        for (int p = 0; p < k; p++)
            fd_step(acc, o->b + o->boff[p], ar, (long)p * FMR, km, nh, full);
    } else {
        const float *row = o->b;
        for (int p0 = 0; p0 < k; p0 += o->seg) {
            for (int q = 0; q < o->seg; q++, row += o->ldb)
                fd_step(acc, row, ar, q, km, nh, full);
#pragma GCC unroll 8
            for (int r = 0; r < FMR; r++)
                ar[r] += o->sstride;
        }
    }
    if (o->nw)
        tile_store_narrow(c, ldc, acc, mvalid, nvalid, o->nw, 0, FMR, nh);
    else
        tile_store(c, ldc, acc, km, mvalid, FMR, nh);
}

#define FD_KERNEL(name, nh)                                                                      \
    void name(int k, const fd_operands *o, int mvalid, int nvalid, float *c, long ldc, int add)  \
    {                                                                                            \
        int full = nvalid == 16 * (nh), packed = o->aoff == NULL;                                \
        if (packed && full)                                                                      \
            fd_body(k, o, mvalid, nvalid, c, ldc, add, nh, 1, 1);                                \
        else if (packed)                                                                         \
            fd_body(k, o, mvalid, nvalid, c, ldc, add, nh, 1, 0);                                \
        else if (full)                                                                           \
            fd_body(k, o, mvalid, nvalid, c, ldc, add, nh, 0, 1);                                \
        else                                                                                     \
            fd_body(k, o, mvalid, nvalid, c, ldc, add, nh, 0, 0);                                \
    }
FD_KERNEL(fd_8x32_avx512, 2)
FD_KERNEL(fd_8x16_avx512, 1)
