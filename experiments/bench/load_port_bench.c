/*
 * load_port_bench.c — how many 512-bit loads a cycle this CPU's load ports
 * take, and what that means for the weight gradient input by input
 * (src/gemm/dwplane.inc, the approximate form): per listed input, one
 * broadcast of its bits, its code, and nine rows of dy (one per tap, 64
 * bytes each at 16 output channels), each added to the broadcast
 * (vpaddd) and into that tap's sum (vaddps). The forms, run in turn, best of
 * R runs each, operands in L1 and L2 as in the kernel (a SIDE × SIDE plane of
 * dy, 64 bytes a pixel: 50 KB at the default 28, in L1 at 14):
 *
 *   loads distinct    nine vpaddd from nine distinct 64-byte lines
 *   loads one line    the same nine from one line
 *   input loop        dwplane's loop on the plane's inputs (half of them,
 *                     at random), those near the edges taking their taps one
 *                     test at a time as the kernel does
 *   input loop, one line  the same, every tap reading the input's first row
 *                     (wrong sums: a timing of the loads' share only)
 *   input loop, inside    the same loop with every input taken as inside
 *                     (wrong sums: the edges' tests' share)
 *
 * Prints ns per load or per input and, at the clock given (GHz, default
 * 3.1), cycles. No multiplication in any form. The README's forty-second
 * round quotes it:
 *
 *   make build/load_port_bench && build/load_port_bench [R (5)] [GHZ_TENTHS (31)] [SIDE (28)]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

#include <immintrin.h>

#define TGT __attribute__((noinline, target("avx512f,avx512bw")))

/* nine loads a step, each added to one register (no dependence between
 * steps but the loop counter); base + off[k] for the nine */
#define NINE(o0, o1, o2, o3, o4, o5, o6, o7, o8)                                                \
    "vpaddd " #o0 "(%0), %%zmm1, %%zmm2\n\tvpaddd " #o1 "(%0), %%zmm1, %%zmm3\n\t"              \
    "vpaddd " #o2 "(%0), %%zmm1, %%zmm4\n\tvpaddd " #o3 "(%0), %%zmm1, %%zmm5\n\t"              \
    "vpaddd " #o4 "(%0), %%zmm1, %%zmm6\n\tvpaddd " #o5 "(%0), %%zmm1, %%zmm7\n\t"              \
    "vpaddd " #o6 "(%0), %%zmm1, %%zmm8\n\tvpaddd " #o7 "(%0), %%zmm1, %%zmm9\n\t"              \
    "vpaddd " #o8 "(%0), %%zmm1, %%zmm10\n\t"
#define CLOB "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "memory"

TGT static double loads(const float *buf, long n, int one_line)
{
    __asm__ volatile("vpxord %%zmm1, %%zmm1, %%zmm1" ::: "xmm1");
    double t0 = bench_now();
    if (one_line)
        for (long i = 0; i < n; i++)
            __asm__ volatile(NINE(0, 0, 0, 0, 0, 0, 0, 0, 0) ::"r"(buf) : CLOB);
    else
        for (long i = 0; i < n; i++)
            __asm__ volatile(NINE(0, 64, 128, 1792, 1856, 1920, 3584, 3648, 3712) ::"r"(buf)
                             : CLOB);
    return (bench_now() - t0) / ((double)n * 9);
}

enum { ROWB = 64 }; /* a dy row's bytes: 16 output channels */

/* whether tap t = 3i + j of the input with code cd reaches an output
 * (planelist.h's plane_code_tap) */
static inline unsigned tap_in(uint32_t cd, int t) { return (cd >> (3 + t / 3)) & (cd >> (t % 3)) & 1; }

/* dwplane's loop over one plane's list (rows of w pixels), `planes` times;
 * form 0: as the kernel, 1: every tap reads the input's first row, 2: every
 * input inside */
TGT static double input_loop(const char *yb, int w, const uint32_t *val, const uint32_t *code,
                             int n, long planes, int form, float *sink)
{
    const long rs = (long)w * ROWB, cs = ROWB;
    __m512 acc[9];
    for (int t = 0; t < 9; t++)
        acc[t] = _mm512_setzero_ps();
#define TERM(t, p)                                                                              \
    acc[t] = _mm512_add_ps(acc[t], _mm512_castsi512_ps(_mm512_add_epi32(                       \
                                       xb, _mm512_loadu_si512((const void *)(p)))));
    double t0 = bench_now();
    for (long pl = 0; pl < planes; pl++)
        for (int e = 0; e < n; e++) {
            const __m512i xb = _mm512_set1_epi32((int)val[e]);
            const uint32_t cd = code[e];
            const char *r0 = yb + (cd & ~63u);
            if (form == 1) {
                TERM(0, r0) TERM(1, r0) TERM(2, r0) TERM(3, r0) TERM(4, r0)
                TERM(5, r0) TERM(6, r0) TERM(7, r0) TERM(8, r0)
            } else if (form == 2 || (cd & 63) == 63) {
                const char *r1 = r0 - rs, *r2 = r1 - rs;
                TERM(0, r0) TERM(1, r0 - cs) TERM(2, r0 - 2 * cs)
                TERM(3, r1) TERM(4, r1 - cs) TERM(5, r1 - 2 * cs)
                TERM(6, r2) TERM(7, r2 - cs) TERM(8, r2 - 2 * cs)
            } else {
#pragma GCC unroll 9
                for (int t = 0; t < 9; t++)
                    if (tap_in(cd, t))
                        TERM(t, r0 - (t / 3) * rs - (t % 3) * cs)
            }
        }
#undef TERM
    double t = bench_now() - t0;
    __m512 s = acc[0];
    for (int k = 1; k < 9; k++)
        s = _mm512_add_ps(s, acc[k]);
    _mm512_storeu_ps(sink, s);
    return t / ((double)planes * n);
}

int main(int argc, char **argv)
{
    static const char P[] = "load_port_bench";
    const int R = (int)bench_arg(P, argc, argv, 1, 5, 1, 100, "R");
    const double ghz = (double)bench_arg(P, argc, argv, 2, 31, 5, 100, "GHZ_TENTHS") / 10.0;
    const int W = (int)bench_arg(P, argc, argv, 3, 28, 7, 64, "SIDE"), H = W;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) {
        fprintf(stderr, "%s: this CPU has no AVX-512 (F and BW): nothing to measure\n", P);
        return 2;
    }
    /* dy: the plane's rows with two rows of slack on each side (the edges'
     * untaken taps are never read; form 2 reads them); at SIDE 7 still more
     * than the 3,776 bytes the loads' form reads */
    const size_t rows = (size_t)(W * (H + 4));
    float *dy = aligned_alloc(64, rows * ROWB);
    uint32_t *val = malloc((size_t)W * H * sizeof *val), *code = malloc((size_t)W * H * sizeof *code);
    float sink[16];
    if (!dy || !val || !code) {
        fprintf(stderr, "%s: out of memory\n", P);
        return 1;
    }
    for (size_t i = 0; i < rows * ROWB / 4; i++)
        dy[i] = 1e-3f * (float)(1 + i % 13);
    /* half the inputs, at random (a ReLU's zeros), in the pixels' order;
     * codes as planelist.h's for padding 1: the base row (y + 1, x + 1) two
     * rows into the slack, the taps' rows and columns in the low bits */
    srand(1);
    int n = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if (rand() & 1) {
                unsigned ri = 0, cj = 0;
                for (int i = 0; i < 3; i++)
                    ri |= (unsigned)(y + 1 - i >= 0 && y + 1 - i < H) << i;
                for (int j = 0; j < 3; j++)
                    cj |= (unsigned)(x + 1 - j >= 0 && x + 1 - j < W) << j;
                code[n] = (uint32_t)(((y + 3) * W + x + 1) * ROWB) | ri << 3 | cj;
                val[n++] = 0x3F800000u + ((unsigned)rand() & 0xFFFu);
            }
    const char *yb = (const char *)dy;
    const char *names[] = {"loads distinct (ns/load)", "loads one line (ns/load)",
                           "input loop (ns/input)", "input loop, one line (ns/input)",
                           "input loop, inside (ns/input)"};
    double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
    for (int r = 0; r < R; r++)
        for (int f = 0; f < 5; f++) {
            double t = f < 2 ? loads(dy, 20000000L, f) : input_loop(yb, W, val, code, n, 4000, f - 2, sink);
            best[f] = t < best[f] ? t : best[f];
        }
    printf("load ports and dwplane's input loop, one thread, best of %d (a %d×%d plane, %d "
           "inputs)\n", R, W, H, n);
    for (int f = 0; f < 5; f++)
        printf("%-34s %7.3f   %5.2f cycles at %.1f GHz\n", names[f], best[f] * 1e9,
               best[f] * 1e9 * ghz, ghz);
    free(dy);
    free(val);
    free(code);
    return 0;
}
