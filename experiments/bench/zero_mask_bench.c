/*
 * zero_mask_bench.c — what a PAM product's zero handling costs on this CPU,
 * against the FMA it replaces: the inner loop of an 8×32 AVX-512 tile (per
 * reduction step, two 16-lane rows of Y and eight broadcasts of X: 16 terms
 * of 16 lanes), its operands in L1 and its accumulators in registers, in the
 * forms the kernels use (src/gemm/ukernel_avx512.c, float/fkernel_avx512.c):
 *
 *   fma             vfmadd (the float kernels)
 *   pam             vpaddd + vaddps, no zero handling: the bound of the brief's
 *                   "integer add + float add costs what an FMA costs"
 *   pam y mask=const  zero-masked vpaddd, one mask for the whole loop
 *   pam y test      zero-masked vpaddd, Y's zero lanes found by vptestmd per
 *                   step (kernels reading Y in place: the exact data
 *                   gradient's, the small products')
 *   pam y test+x    the same, then a merge-masked vaddps whose X mask is all
 *                   ones (the direct forward, reading Y in place, before the
 *                   twenty-seventh round)
 *   pam y merge     plain vpaddd, Y's zero lanes by vptestmd per step as the
 *                   mask of a merge-masked vaddps (the direct forward since)
 *   pam y mask mem  the same masks loaded from memory per step (packed Y)
 *   pam y and       vpaddd, vpandd with a lane mask, vaddps (no mask register)
 *   pam x test      X's zeros: vptestmd per broadcast, merge-masked vaddps (the
 *                   weight gradients reading X in place)
 *   pam x mask mem  the same masks loaded from memory
 *   exact grad      the exact derivative's term ((x + t) & sign|exp) + y, then
 *                   vaddps, on a 6×32 tile with t held in registers (its
 *                   gradient kernels), no zero handling
 *
 * Prints each form's time per term (16 lanes) and its speed against fma,
 * best of R runs of each, the forms run in turn. No multiplication is in any
 * PAM form; fma is the float reference. The README's tenth round quotes it:
 *
 *   make build/zero_mask_bench && build/zero_mask_bench [R (5)]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"

#include <immintrin.h>

#define TGT __attribute__((noinline, target("avx512f,avx512bw,avx512dq,fma")))
#define STEPS 64   /* distinct reduction steps (operands in L1) */
#define ITERS 20000000L

enum {
    F_FMA,
    F_PAM,
    F_YCONST,
    F_YTEST,
    F_YTESTX,
    F_YMERGE,
    F_YMEM,
    F_YAND,
    F_XTEST,
    F_XMEM,
    F_EXACT,
    F_COUNT
};
static const char *names[F_COUNT] = {"fma",           "pam",         "pam y mask=const",
                                     "pam y test",    "pam y test+x", "pam y merge",
                                     "pam y mask mem", "pam y and",   "pam x test",
                                     "pam x mask mem", "exact grad"};

typedef struct {
    float x[STEPS * 8], y[STEPS * 32];
    uint16_t ym[STEPS * 2], xm[STEPS * 8];
    uint32_t t[6 * 32];
} operands;

/* the accumulators summed, so that no form's work is dead */
TGT static float total(__m512 (*acc)[2], int rows)
{
    __m512 s = _mm512_setzero_ps();
    for (int r = 0; r < rows; r++)
        s = _mm512_add_ps(s, _mm512_add_ps(acc[r][0], acc[r][1]));
    return _mm512_reduce_add_ps(s);
}

#define TILE_LOOP(ROWS, PRE, TERM)                                                               \
    __m512 acc[ROWS][2];                                                                         \
    for (int r = 0; r < ROWS; r++)                                                               \
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();                                             \
    for (long it = 0; it < n; it++) {                                                            \
        const int p = (int)(it & (STEPS - 1));                                                   \
        const float *yp = o->y + p * 32;                                                         \
        __m512i y0 = _mm512_loadu_si512(yp), y1 = _mm512_loadu_si512(yp + 16);                   \
        PRE _Pragma("GCC unroll 8") for (int r = 0; r < ROWS; r++)                              \
        {                                                                                        \
            TERM(0, y0, k0);                                                                     \
            TERM(1, y1, k1);                                                                     \
        }                                                                                        \
    }                                                                                            \
    return total(acc, ROWS);

#define XB _mm512_set1_epi32((int)((const uint32_t *)o->x)[p * 8 + r])
#define ADDT(h, t) acc[r][h] = _mm512_add_ps(acc[r][h], _mm512_castsi512_ps(t))

TGT static float run_fma(const operands *o, long n)
{
    __m512 acc[8][2];
    for (int r = 0; r < 8; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long it = 0; it < n; it++) {
        const int p = (int)(it & (STEPS - 1));
        __m512 y0 = _mm512_loadu_ps(o->y + p * 32), y1 = _mm512_loadu_ps(o->y + p * 32 + 16);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512 b = _mm512_set1_ps(o->x[p * 8 + r]);
            acc[r][0] = _mm512_fmadd_ps(b, y0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(b, y1, acc[r][1]);
        }
    }
    return total(acc, 8);
}

#define T_PLAIN(h, y, k) ADDT(h, _mm512_add_epi32(XB, y))
#define T_MASKZ(h, y, k) ADDT(h, _mm512_maskz_add_epi32(k, XB, y))
#define T_AND(h, y, k) ADDT(h, _mm512_and_si512(_mm512_add_epi32(XB, y), k))
#define T_XMERGE(h, y, k)                                                                        \
    acc[r][h] = _mm512_mask_add_ps(acc[r][h], kx, acc[r][h],                                     \
                                   _mm512_castsi512_ps(_mm512_add_epi32(xb, y)))

TGT static float run_pam(const operands *o, long n) { TILE_LOOP(8, , T_PLAIN) }

TGT static float run_yconst(const operands *o, long n, __mmask16 k0, __mmask16 k1)
{
    TILE_LOOP(8, , T_MASKZ)
}

TGT static float run_ytest(const operands *o, long n)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    TILE_LOOP(8,
              __mmask16 k0 = _mm512_test_epi32_mask(y0, expo);
              __mmask16 k1 = _mm512_test_epi32_mask(y1, expo);, T_MASKZ)
}

#define T_MASKZ_X(h, y, k)                                                                       \
    acc[r][h] = _mm512_mask_add_ps(acc[r][h], kx, acc[r][h],                                     \
                                   _mm512_castsi512_ps(_mm512_maskz_add_epi32(k, XB, y)))
#define T_YMERGE(h, y, k)                                                                        \
    acc[r][h] = _mm512_mask_add_ps(acc[r][h], k, acc[r][h],                                      \
                                   _mm512_castsi512_ps(_mm512_add_epi32(XB, y)))

TGT static float run_ytestx(const operands *o, long n, __mmask16 kx)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    TILE_LOOP(8,
              __mmask16 k0 = _mm512_test_epi32_mask(y0, expo);
              __mmask16 k1 = _mm512_test_epi32_mask(y1, expo);, T_MASKZ_X)
}

TGT static float run_ymerge(const operands *o, long n)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    TILE_LOOP(8,
              __mmask16 k0 = _mm512_test_epi32_mask(y0, expo);
              __mmask16 k1 = _mm512_test_epi32_mask(y1, expo);, T_YMERGE)
}

TGT static float run_ymem(const operands *o, long n)
{
    TILE_LOOP(8,
              __mmask16 k0 = _load_mask16((__mmask16 *)(o->ym + 2 * p));
              __mmask16 k1 = _load_mask16((__mmask16 *)(o->ym + 2 * p + 1));, T_MASKZ)
}

TGT static float run_yand(const operands *o, long n)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    TILE_LOOP(8,
              __m512i k0 = _mm512_movm_epi32(_mm512_test_epi32_mask(y0, expo));
              __m512i k1 = _mm512_movm_epi32(_mm512_test_epi32_mask(y1, expo));, T_AND)
}

#define T_XTEST(h, y, k)                                                                         \
    do {                                                                                         \
        __m512i xb = XB;                                                                         \
        __mmask16 kx = _mm512_test_epi32_mask(xb, expo);                                         \
        T_XMERGE(h, y, k);                                                                       \
    } while (0)
#define T_XMEM(h, y, k)                                                                          \
    do {                                                                                         \
        __m512i xb = XB;                                                                         \
        __mmask16 kx = _load_mask16((__mmask16 *)(o->xm + p * 8 + r));                           \
        T_XMERGE(h, y, k);                                                                       \
    } while (0)

TGT static float run_xtest(const operands *o, long n)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    TILE_LOOP(8, , T_XTEST)
}

TGT static float run_xmem(const operands *o, long n) { TILE_LOOP(8, , T_XMEM) }

TGT static float run_exact(const operands *o, long n)
{
    const __m512i se = _mm512_set1_epi32((int)0xFF800000u);
    __m512i t[6][2];
    for (int r = 0; r < 6; r++)
        for (int h = 0; h < 2; h++)
            t[r][h] = _mm512_loadu_si512(o->t + r * 32 + 16 * h);
#define T_EXACT(h, y, k) ADDT(h, _mm512_add_epi32(_mm512_and_si512(_mm512_add_epi32(XB, t[r][h]), se), y))
    TILE_LOOP(6, , T_EXACT)
#undef T_EXACT
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1 || reps > 1000) {
        fprintf(stderr, "zero_mask_bench: R must be an integer in [1, 1000], not '%s'\n",
                argv[1]);
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq")) {
        fprintf(stderr, "zero_mask_bench: this CPU has no AVX-512 (F, BW, DQ)\n");
        return 1;
    }
    static operands o;
    /* small normal values, no zeros (each form does the same work whatever
     * the masks say); the sums stay finite */
    for (int i = 0; i < STEPS * 8; i++) {
        o.x[i] = 1e-30f * (1.0f + (float)(i % 7) / 8.0f);
        o.xm[i] = 0xFFFF;
    }
    for (int i = 0; i < STEPS * 32; i++)
        o.y[i] = 1.0f + (float)(i % 5) / 8.0f;
    for (int i = 0; i < STEPS * 2; i++)
        o.ym[i] = 0xFFFF;
    for (int i = 0; i < 6 * 32; i++)
        o.t[i] = (uint32_t)(i * 40503u) & 0x7FFFFFu;
    double best[F_COUNT];
    volatile float sink = 0.0f;
    for (int f = 0; f < F_COUNT; f++)
        best[f] = 1e30;
    for (int rep = 0; rep < reps; rep++)
        for (int f = 0; f < F_COUNT; f++) {
            double t0 = bench_now();
            switch (f) {
            case F_FMA: sink += run_fma(&o, ITERS); break;
            case F_PAM: sink += run_pam(&o, ITERS); break;
            case F_YCONST: sink += run_yconst(&o, ITERS, 0xFFFF, 0xFFF7); break;
            case F_YTEST: sink += run_ytest(&o, ITERS); break;
            case F_YTESTX: sink += run_ytestx(&o, ITERS, (__mmask16)o.xm[0]); break;
            case F_YMERGE: sink += run_ymerge(&o, ITERS); break;
            case F_YMEM: sink += run_ymem(&o, ITERS); break;
            case F_YAND: sink += run_yand(&o, ITERS); break;
            case F_XTEST: sink += run_xtest(&o, ITERS); break;
            case F_XMEM: sink += run_xmem(&o, ITERS); break;
            default: sink += run_exact(&o, ITERS); break;
            }
            double terms = (double)ITERS * (f == F_EXACT ? 12 : 16);
            double per = (bench_now() - t0) / terms;
            best[f] = per < best[f] ? per : best[f];
        }
    printf("8x32 AVX-512 tile inner loop, one thread, best of %d (%ld steps of %d terms)\n",
           reps, ITERS, 16);
    printf("%-18s %12s %10s\n", "form", "ns/term", "vs fma");
    for (int f = 0; f < F_COUNT; f++)
        printf("%-18s %12.4f %9.2fx\n", names[f], best[f] * 1e9, best[F_FMA] / best[f]);
    return sink == 12345.0f; /* never: keeps the sums live */
}
