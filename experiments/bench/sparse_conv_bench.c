/*
 * sparse_conv_bench.c — does skipping a ReLU'd input's zeros pay for a 3×3
 * stride-1 convolution's forward on this CPU? (The eleventh round: it does
 * not at a ReLU's density; the weight gradients' lists, conv2d.c's dw_block,
 * are the form that pays, for the exact derivatives.)
 *
 * dense:  the kernels' form (8 output channels × 32 wide pixels per tile,
 *         the padded image read in place, W broadcast), as
 *         float/fkernel_avx512.c (fma) and ukernel_avx512.c's fwd_direct (PAM,
 *         Y's zeros masked by vptestmd per step) compute it.
 * sparse: the transposed form: R pixels × every output channel per tile; per
 *         pixel a list of its nonzero inputs (value, weight row) in reduction
 *         order, built from the padded image 16 pixels × 16 rows at a time
 *         (a 16×16 transpose, a test, two compressing stores); the R lists
 *         run in lockstep, the shorter padded with a neutral entry (−0.0
 *         against a row of +0.0 weights, whose term −0.0 is an exact identity
 *         of a float sum); the weights in blocks of 8 KB / channels rows
 *         (L1), each block's sums continued from the last. fma and PAM.
 *
 * Both forms are checked bit for bit against each other (the sums are the
 * same chains). Prints ms per image of each layer, the lists' share, and
 * dense / sparse speed, for a fraction of nonzero inputs (default 0.5, a
 * ReLU's; ResNet20 on Fashion-MNIST measured 0.41-0.55 per layer):
 *
 *   make build/sparse_conv_bench && build/sparse_conv_bench [NONZERO (0.5)]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,popcnt")))

typedef struct {
    int cin, cout, h, w, hp, wp, K;
    float *buf; /* cin padded planes hp × wp, then slack */
    long *off;  /* K: where row k of the column matrix starts */
    float *wp8; /* dense: panels of 8 rows, K × 8 each */
    float *wt;  /* sparse: (K + 1) × cout, row K all +0.0 (the neutral row) */
    float *y;   /* cout × h·w */
} layer;

static uint64_t rng = 88172645463325252ULL;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static int make(layer *L, int c, int s, double nonzero)
{
    L->cin = L->cout = c;
    L->h = L->w = s;
    L->hp = L->wp = s + 2;
    L->K = c * 9;
    size_t nb = (size_t)c * L->hp * L->wp + 64;
    L->buf = aligned_alloc(64, nb * 4 + 256);
    L->off = malloc(L->K * sizeof(long));
    float *w = malloc((size_t)c * L->K * 4);
    L->wp8 = aligned_alloc(64, (size_t)c * L->K * 4 + 64);
    L->wt = aligned_alloc(64, (size_t)(L->K + 1) * c * 4 + 64);
    L->y = aligned_alloc(64, (size_t)c * s * s * 4 + 64);
    if (!L->buf || !L->off || !w || !L->wp8 || !L->wt || !L->y)
        return 0;
    memset(L->buf, 0, nb * 4 + 256);
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++)
                L->buf[(long)ch * L->hp * L->wp + (i + 1) * L->wp + j + 1] =
                    (rnd() % 1000) < nonzero * 1000 ? 0.5f + (float)(rnd() % 1000) / 1000.0f
                                                    : 0.0f;
    for (int ch = 0, k = 0; ch < c; ch++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                L->off[k++] = (long)ch * L->hp * L->wp + i * L->wp + j;
    for (long i = 0; i < (long)c * L->K; i++)
        w[i] = (float)((int)(rnd() % 2001) - 1000) / 4000.0f + 0.001f;
    for (int ip = 0; ip < c / 8; ip++)
        for (int k = 0; k < L->K; k++)
            for (int r = 0; r < 8; r++)
                L->wp8[(long)ip * 8 * L->K + k * 8 + r] = w[(long)(ip * 8 + r) * L->K + k];
    for (int k = 0; k < L->K; k++)
        for (int o = 0; o < c; o++)
            L->wt[(long)k * c + o] = w[(long)o * L->K + k];
    memset(L->wt + (long)L->K * c, 0, (size_t)c * 4);
    free(w);
    return 1;
}

/* dense: wide pixels j0..j0+31, 8 rows; pam: vpaddd zero-masked by the
 * exponent test, then vaddps (the weights' bits stand for the packed X: the
 * terms are not products here, only the same work) */
TGT static void dense(const layer *L, int pam)
{
    const __m512i expo = _mm512_set1_epi32(0x7F800000);
    int nwide = L->h * L->wp;
    for (int ip = 0; ip < L->cout / 8; ip++) {
        const float *xp = L->wp8 + (long)ip * 8 * L->K;
        for (int j0 = 0; j0 < nwide; j0 += 32) {
            __m512 acc[8][2];
            for (int r = 0; r < 8; r++)
                acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            for (int k = 0; k < L->K; k++) {
                const float *row = L->buf + L->off[k] + j0;
                __m512 y0 = _mm512_loadu_ps(row), y1 = _mm512_loadu_ps(row + 16);
                if (pam) {
                    __m512i i0 = _mm512_castps_si512(y0), i1 = _mm512_castps_si512(y1);
                    __mmask16 k0 = _mm512_test_epi32_mask(i0, expo),
                              k1 = _mm512_test_epi32_mask(i1, expo);
#pragma GCC unroll 8
                    for (int r = 0; r < 8; r++) {
                        __m512i x = _mm512_set1_epi32(((const int *)xp)[k * 8 + r]);
                        acc[r][0] = _mm512_add_ps(
                            acc[r][0], _mm512_castsi512_ps(_mm512_maskz_add_epi32(k0, x, i0)));
                        acc[r][1] = _mm512_add_ps(
                            acc[r][1], _mm512_castsi512_ps(_mm512_maskz_add_epi32(k1, x, i1)));
                    }
                } else {
#pragma GCC unroll 8
                    for (int r = 0; r < 8; r++) {
                        __m512 x = _mm512_set1_ps(xp[k * 8 + r]);
                        acc[r][0] = _mm512_fmadd_ps(x, y0, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(x, y1, acc[r][1]);
                    }
                }
            }
            /* the kept columns to their narrow places */
            for (int r = 0; r < 8; r++) {
                float t[32];
                _mm512_storeu_ps(t, acc[r][0]);
                _mm512_storeu_ps(t + 16, acc[r][1]);
                for (int q = 0; q < 32 && j0 + q < nwide; q++) {
                    int oy = (j0 + q) / L->wp, ox = (j0 + q) % L->wp;
                    if (ox < L->w)
                        L->y[(long)(ip * 8 + r) * L->h * L->w + oy * L->w + ox] = t[q];
                }
            }
        }
    }
}

/* v[i] (lanes j) → v[j] (lanes i), 16 × 16 */
TGT static inline void tr16(__m512i *v)
{
    __m512i t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_i32x4(v[i + j], v[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_i32x4(v[i + j], v[i + j + 4], 0xDD);
        }
#pragma GCC unroll 16
    for (int j = 0; j < 8; j++) {
        v[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
        v[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xDD);
    }
}

#define LCAP 656 /* a list's room: the longest block (576) and a vector */
typedef struct {
    uint32_t val[16][LCAP], kof[16][LCAP];
    int n[16];
} lists;

/* the lists of the wide pixels j0..j0+15 whose bit is set in valid, for rows
 * k0..k0+kc−1, in slots 0.. (the valid pixels in order) */
TGT static void build(const layer *L, long j0, int k0, int kc, int pam, int valid, lists *ls)
{
    const __m512i zm = _mm512_set1_epi32(pam ? 0x7F800000 : 0x7FFFFFFF);
    uint32_t step[16];
    for (int i = 0; i < 16; i++)
        step[i] = (uint32_t)(i * L->cout * 4);
    const __m512i kstep = _mm512_loadu_si512(step);
    for (int r = 0; r < 16; r++)
        ls->n[r] = 0;
    for (int kk = 0; kk < kc; kk += 16) {
        __m512i v[16];
        int nk = kc - kk < 16 ? kc - kk : 16;
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            v[i] = i < nk ? _mm512_loadu_si512(L->buf + L->off[k0 + kk + i] + j0)
                          : _mm512_setzero_si512();
        tr16(v);
        __m512i ko = _mm512_add_epi32(kstep, _mm512_set1_epi32((k0 + kk) * L->cout * 4));
        __mmask16 km = nk == 16 ? 0xFFFF : (__mmask16)((1u << nk) - 1);
        for (int r = 0, sl = 0; r < 16; r++) {
            if (!(valid >> r & 1))
                continue;
            __mmask16 m = _mm512_mask_test_epi32_mask(km, v[r], zm);
            int c = ls->n[sl];
            _mm512_storeu_si512(ls->val[sl] + c, _mm512_maskz_compress_epi32(m, v[r]));
            _mm512_storeu_si512(ls->kof[sl] + c, _mm512_maskz_compress_epi32(m, ko));
            ls->n[sl++] = c + __builtin_popcount(m);
        }
    }
}

/* slot sl's list padded from its length to len with the neutral entry */
TGT static inline void pad_list(lists *ls, int sl, int len, uint32_t neutral)
{
    for (int s = ls->n[sl]; s < len; s += 16) {
        __mmask16 m = len - s >= 16 ? 0xFFFF : (__mmask16)((1u << (len - s)) - 1);
        _mm512_mask_storeu_epi32(ls->val[sl] + s, m, _mm512_set1_epi32((int)0x80000000u));
        _mm512_mask_storeu_epi32(ls->kof[sl] + s, m, _mm512_set1_epi32((int)neutral));
    }
}

/* the sparse forward, R pixels × 16·NH channels per tile; build_only: the
 * lists alone (their cost) */
#define SPARSE(NAME, R, NH)                                                                     \
    TGT static void NAME(const layer *L, int pam, lists *ls, float *part, int build_only)       \
    {                                                                                           \
        int P = L->h * L->w, nwide = L->h * L->wp, KC = 8192 / L->cout;                         \
        const char *wt = (const char *)L->wt;                                                   \
        const uint32_t neutral = (uint32_t)(L->K * L->cout * 4);                                \
        for (int k0 = 0; k0 < L->K; k0 += KC) {                                                 \
            int kc = L->K - k0 < KC ? L->K - k0 : KC, first = k0 == 0, last = k0 + kc >= L->K; \
            for (long j0 = 0; j0 < nwide; j0 += 16) {                                           \
                long pix[16];                                                                   \
                int nv = 0, vm = 0;                                                             \
                for (int q = 0; q < 16 && j0 + q < nwide; q++)                                  \
                    if ((j0 + q) % L->wp < L->w) {                                              \
                        pix[nv++] = ((j0 + q) / L->wp) * L->w + (j0 + q) % L->wp;              \
                        vm |= 1 << q;                                                           \
                    }                                                                           \
                build(L, j0, k0, kc, pam, vm, ls);                                              \
                if (build_only)                                                                 \
                    continue;                                                                   \
                for (int g = 0; g < nv; g += R) {                                               \
                    int ng = nv - g < R ? nv - g : R, len = 0;                                  \
                    for (int r = 0; r < R; r++) {                                               \
                        if (r >= ng)                                                            \
                            ls->n[g + r] = 0;                                                   \
                        len = ls->n[g + r] > len ? ls->n[g + r] : len;                          \
                    }                                                                           \
                    for (int r = 0; r < R; r++)                                                 \
                        pad_list(ls, g + r, len, neutral);                                      \
                    const uint32_t *vl = ls->val[g], *kl = ls->kof[g];                          \
                    __m512 acc[R][NH];                                                          \
                    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                         \
                        _Pragma("GCC unroll 4") for (int h = 0; h < NH; h++)                    \
                            acc[r][h] = first || r >= ng                                        \
                                            ? _mm512_setzero_ps()                               \
                                            : _mm512_loadu_ps(part + pix[g + r] * 16 * NH +     \
                                                              16 * h);                          \
                    for (int s = 0; s < len; s++) {                                             \
                        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                     \
                        {                                                                       \
                            const char *wr = wt + kl[r * LCAP + s];                             \
                            __m512i x = _mm512_set1_epi32((int)vl[r * LCAP + s]);              \
                            _Pragma("GCC unroll 4") for (int h = 0; h < NH; h++) {              \
                                __m512i wv = _mm512_loadu_si512((const void *)(wr + 64 * h));   \
                                acc[r][h] =                                                     \
                                    pam ? _mm512_add_ps(acc[r][h], _mm512_castsi512_ps(         \
                                                                       _mm512_add_epi32(x, wv))) \
                                        : _mm512_fmadd_ps(_mm512_castsi512_ps(x),               \
                                                          _mm512_castsi512_ps(wv), acc[r][h]);  \
                            }                                                                   \
                        }                                                                       \
                    }                                                                           \
                    for (int r = 0; r < ng; r++) {                                              \
                        long pp = pix[g + r];                                                   \
                        if (last) {                                                             \
                            float t[16 * NH];                                                   \
                            for (int h = 0; h < NH; h++)                                        \
                                _mm512_storeu_ps(t + 16 * h, acc[r][h]);                        \
                            for (int o = 0; o < 16 * NH; o++)                                   \
                                L->y[(long)o * P + pp] = t[o];                                  \
                        } else                                                                  \
                            for (int h = 0; h < NH; h++)                                        \
                                _mm512_storeu_ps(part + pp * 16 * NH + 16 * h, acc[r][h]);      \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }
SPARSE(sparse16, 8, 1)
SPARSE(sparse32, 4, 2)
SPARSE(sparse64, 2, 4)

static void sparse(const layer *L, int pam, lists *ls, float *part, int build_only)
{
    if (L->cout == 16)
        sparse16(L, pam, ls, part, build_only);
    else if (L->cout == 32)
        sparse32(L, pam, ls, part, build_only);
    else
        sparse64(L, pam, ls, part, build_only);
}

int main(int argc, char **argv)
{
    double nonzero = argc > 1 ? atof(argv[1]) : 0.5;
    if (!(nonzero >= 0 && nonzero <= 1)) {
        fprintf(stderr, "sparse_conv_bench: NONZERO must be a fraction in [0, 1]\n");
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl")) {
        printf("sparse_conv_bench: this CPU has no AVX-512 (F, BW, DQ, VL): nothing to time\n");
        return 0;
    }
    const int shapes[3][2] = {{16, 28}, {32, 14}, {64, 7}};
    lists *ls = aligned_alloc(64, sizeof(lists));
    float *part = aligned_alloc(64, 64 * 784 * 4);
    if (!ls || !part)
        return 1;
    printf("nonzero inputs %.2f; ms per image (best of 5 runs of 200), 3x3 stride 1\n", nonzero);
    printf("%-10s %8s %8s %8s %8s %8s %8s %8s\n", "layer", "fma", "pam", "sp fma", "sp pam",
           "lists", "fma/sp", "pam/sp");
    for (int si = 0; si < 3; si++) {
        layer L;
        if (!make(&L, shapes[si][0], shapes[si][1], nonzero))
            return 1;
        size_t ny = (size_t)L.cout * L.h * L.w;
        float *ref = malloc(ny * 4);
        if (!ref)
            return 1;
        double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
        const int reps = 200;
        for (int run = 0; run < 5; run++)
            for (int m = 0; m < 5; m++) {
                double t0 = bench_now();
                for (int i = 0; i < reps; i++) {
                    if (m < 2)
                        dense(&L, m);
                    else
                        sparse(&L, m == 3, ls, part, m == 4);
                }
                double t = (bench_now() - t0) / reps * 1e3;
                best[m] = t < best[m] ? t : best[m];
                if (m == 2 || m == 3) { /* the same sums, bit for bit */
                    dense(&L, m == 3);
                    memcpy(ref, L.y, ny * 4);
                    sparse(&L, m == 3, ls, part, 0);
                    if (memcmp(ref, L.y, ny * 4)) {
                        printf("MISMATCH: %s at %dx%d\n", m == 3 ? "pam" : "fma", L.h, L.w);
                        return 1;
                    }
                }
            }
        char name[16];
        snprintf(name, sizeof name, "%dc %dx%d", L.cout, L.h, L.w);
        printf("%-10s %8.4f %8.4f %8.4f %8.4f %8.4f %8.2f %8.2f\n", name, best[0], best[1],
               best[2], best[3], best[4], best[0] / best[2], best[1] / best[3]);
        free(ref);
    }
    return 0;
}
