/*
 * bn_bench.c — times one batch norm layer's training forward and backward
 * (nomul_batch_norm_forward_keep / _backward_keep) at batch N, C channels of
 * S = H·W positions, float or PA, exact or approximate backward, and prints
 * the best of R repetitions of each; with relu 1, batch_norm_relu's
 * (nomul_batch_norm_relu_*_keep: the relu applied in the forward, dy masked
 * by it in place, about half of it zeros, as in a ResNet's training step).
 * With cold 1, 64 MB are written before each call, so that its operands
 * come from memory as in a training step (whose activations outgrow the
 * caches), not from the caches the previous repetition left them in.
 * With acc 1 the backward adds into dx (accumulate 1), else (the default,
 * as a training step's graph calls it where dx is fresh) it writes dx.
 * With fresh 1, x is written anew (copied from a saved copy) right before
 * each forward, after the eviction, as a training step's convolution has
 * just written it: its lines dirty in the caches, not clean in memory.
 * Prints the best of the R calls and the mean of calls 6 to R.
 * The figures of the README's ninth round come from it, run with the
 * binaries before and after a change in turn:
 *
 *   make build/bn_bench && build/bn_bench C S [pa 0|1] [approx 0|1] [N] [R] [relu 0|1]
 *                                         [cold 0|1] [acc 0|1] [fresh 0|1]
 *   e.g. build/bn_bench 16 784 1 1      (ResNet20's 28×28 stage, PA, approximate)
 *
 * Threads: nomul's default (every core); NOMUL_NUM_THREADS=1 for one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "nomul/functional.h"
#include "nomul/opcfg.h"

int main(int argc, char **argv)
{
    static const char P[] = "bn_bench";
    if (argc < 3) {
        fprintf(stderr, "usage: bn_bench C S [pa 0|1] [approx 0|1] [N (64)] [R (30)] [relu 0|1] "
                        "[cold 0|1] [acc 0|1] [fresh 0|1]\n");
        return 2;
    }
    const int C = (int)bench_arg(P, argc, argv, 1, 16, 1, 4096, "C");
    const int S = (int)bench_arg(P, argc, argv, 2, 784, 1, 1 << 20, "S");
    const int pa = (int)bench_arg(P, argc, argv, 3, 1, 0, 1, "pa");
    const int approx = (int)bench_arg(P, argc, argv, 4, 0, 0, 1, "approx");
    const int nb = (int)bench_arg(P, argc, argv, 5, 64, 1, 4096, "N");
    const int reps = (int)bench_arg(P, argc, argv, 6, 30, 1, 100000, "R");
    const int relu = (int)bench_arg(P, argc, argv, 7, 0, 0, 1, "relu");
    const int cold = (int)bench_arg(P, argc, argv, 8, 0, 0, 1, "cold");
    const int acc = (int)bench_arg(P, argc, argv, 9, 0, 0, 1, "acc");
    const int fresh = (int)bench_arg(P, argc, argv, 10, 0, 0, 1, "fresh");
    const long len = (long)nb * C * S;
    enum { EVICT = 64 << 20 };
    float *x = malloc(sizeof(float) * (size_t)len * 5), *y = x + len, *dy = y + len, *dx = dy + len,
          *x0 = dx + len;
    float *par = malloc(sizeof(float) * (size_t)C * 10);
    char *evict = cold ? malloc(EVICT) : NULL;
    if (!x || !par || (cold && !evict)) {
        fprintf(stderr, "bn_bench: out of memory for %ld values\n", len * 4);
        return 1;
    }
    float *g = par, *b = g + C, *rm = b + C, *rv = rm + C, *mean = rv + C, *rstd = mean + C,
          *keep = rstd + C, *dg = keep + 2 * C, *db = dg + C;
    srand(1);
    for (long i = 0; i < len; i++) {
        x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        dy[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    }
    for (int c = 0; c < C; c++) {
        g[c] = 1.0f;
        b[c] = 0.0f;
        rm[c] = 0.0f;
        rv[c] = 1.0f;
    }
    memcpy(x0, x, sizeof(float) * (size_t)len);
    nomul_op_cfg cfg = {pa ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, approx, 1.0f};
    double best_f = 1e30, best_b = 1e30, sum_f = 0.0, sum_b = 0.0;
    for (int r = 0; r < reps; r++) {
        if (cold)
            memset(evict, r & 0xFF, EVICT);
        if (fresh)
            memcpy(x, x0, sizeof(float) * (size_t)len);
        double t0 = bench_now();
        if (relu) /* as the training step's batch_norm_relu: dy masked in place */
            nomul_batch_norm_relu_forward_keep(&cfg, nb, C, S, x, g, b, 1e-5f, 0.1f, 1, rm, rv,
                                               y, mean, rstd, keep);
        else
            nomul_batch_norm_forward_keep(&cfg, nb, C, S, x, g, b, 1e-5f, 0.1f, 1, rm, rv, y,
                                          mean, rstd, keep);
        double t1 = bench_now();
        if (cold)
            memset(evict, ~r & 0xFF, EVICT);
        const double t1c = bench_now();
        if (relu)
            nomul_batch_norm_relu_backward_keep(&cfg, nb, C, S, x, y, g, b, mean, rstd, keep,
                                                1e-5f, dy, acc, dx, dg, db);
        else
            nomul_batch_norm_backward_keep(&cfg, nb, C, S, x, g, mean, rstd, keep, 1e-5f, dy, acc,
                                           dx, dg, db);
        double t2 = bench_now();
        best_f = t1 - t0 < best_f ? t1 - t0 : best_f;
        best_b = t2 - t1c < best_b ? t2 - t1c : best_b;
        if (r >= 5) { /* the first calls fault y's and dx's pages in */
            sum_f += t1 - t0;
            sum_b += t2 - t1c;
        }
    }
    printf("batch norm%s %d×%d×%d (%s%s): forward %.3f ms, backward %.3f ms (best of %d%s%s)",
           relu ? " + relu" : "", nb, C, S, pa ? "PA" : "float",
           pa ? (approx ? ", approximate" : ", exact") : "", best_f * 1e3, best_b * 1e3, reps,
           cold ? ", cold" : "", fresh ? ", x fresh" : "");
    if (reps > 5)
        printf("; mean of calls 6-%d: forward %.3f, backward %.3f", reps,
               sum_f * 1e3 / (reps - 5), sum_b * 1e3 / (reps - 5));
    printf("\n");
    free(evict);
    free(x);
    free(par);
    return 0;
}
