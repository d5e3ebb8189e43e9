/*
 * rows_bench.c — times the elementwise and row operations the fifteenth
 * round fused, in float, PA with exact and PA with approximate derivatives,
 * and prints the best of R repetitions of each:
 *
 *   gelu N [R]        GELU forward and backward (the forward's values kept)
 *                     on N values (the ViT's FFN: 819200)
 *   ce ROWS N [R]     log_softmax forward, and the cross-entropy's gradient
 *                     with respect to the logits (nomul_cross_entropy_logits_
 *                     backward: both backward passes) on ROWS rows of N (the
 *                     translation models' output: 4096 2860)
 *   ln ROWS N [R]     layer norm forward and backward (the forward's sums
 *                     kept) on ROWS rows of N (transformer_mini: 4096 256)
 *   softmax ROWS N [R]  softmax forward and backward (e and Σe kept) on
 *                     ROWS rows of N (attention: the ViT's 4352 17,
 *                     transformer_mini's 16384 64)
 *
 *   make build/rows_bench && build/rows_bench gelu 819200
 *
 * The README's figures come from it, run with the binaries (or libnomul.a)
 * before and after a change in turn. Threads: nomul's default (every core);
 * NOMUL_NUM_THREADS=1 for one. Inputs: a fixed LCG, so runs compare.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nomul/functional.h"
#include "nomul/opcfg.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static long arg(int argc, char **argv, int i, long dflt, long lo, long hi, const char *name)
{
    if (argc <= i)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "rows_bench: %s must be an integer in [%ld, %ld], not '%s'\n", name, lo,
                hi, argv[i]);
        exit(2);
    }
    return v;
}

/* uniform in [-h, h) */
static void fill(float *v, long n, float h, uint32_t *s)
{
    for (long i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        v[i] = ((float)(*s >> 8) / 16777216.0f * 2.0f - 1.0f) * h;
    }
}

static void *must(void *p)
{
    if (!p) {
        fprintf(stderr, "rows_bench: out of memory\n");
        exit(1);
    }
    return p;
}

static const char *const names[3] = {"float", "pa exact", "pa approx"};

static nomul_op_cfg cfg_of(int k)
{
    nomul_op_cfg c = {k ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, k == 2, 1.0f};
    return c;
}

static void gelu(long n, int reps)
{
    float *x = must(malloc((size_t)n * 4)), *y = must(malloc((size_t)n * 4));
    float *dy = must(malloc((size_t)n * 4)), *dx = must(calloc((size_t)n, 4));
    float *keep = must(malloc((size_t)n * 8));
    uint32_t s = 1;
    fill(x, n, 3.0f, &s);
    fill(dy, n, 0.01f, &s);
    printf("GELU on %ld values, best of %d\n", n, reps);
    for (int k = 0; k < 3; k++) {
        nomul_op_cfg c = cfg_of(k);
        double bf = 1e30, bb = 1e30;
        for (int r = 0; r < reps; r++) {
            double t = now();
            nomul_gelu_forward_keep(&c, n, x, y, keep);
            t = now() - t;
            bf = t < bf ? t : bf;
            t = now();
            nomul_gelu_backward_keep(&c, n, x, keep, dy, dx);
            t = now() - t;
            bb = t < bb ? t : bb;
        }
        printf("  %-10s forward %8.3f ms  backward %8.3f ms\n", names[k], bf * 1e3, bb * 1e3);
    }
    free(x), free(y), free(dy), free(dx), free(keep);
}

static void ce(int rows, int n, int reps)
{
    size_t len = (size_t)rows * n;
    float *x = must(malloc(len * 4)), *lp = must(malloc(len * 4)), *dx = must(malloc(len * 4));
    int *t = must(malloc((size_t)rows * sizeof *t));
    uint32_t s = 1;
    fill(x, (long)len, 3.0f, &s);
    for (int i = 0; i < rows; i++) {
        s = s * 1664525u + 1013904223u;
        t[i] = (int)((s >> 8) % (uint32_t)n);
    }
    printf("log_softmax and the cross-entropy's logits gradient on %d rows of %d, best of %d\n",
           rows, n, reps);
    for (int k = 0; k < 3; k++) {
        nomul_op_cfg c = cfg_of(k);
        double bf = 1e30, bb = 1e30;
        for (int r = 0; r < reps; r++) {
            double q = now();
            nomul_log_softmax_forward(&c, rows, n, x, lp);
            q = now() - q;
            bf = q < bf ? q : bf;
            q = now();
            nomul_cross_entropy_logits_backward(&c, rows, n, x, lp, t, -100, 0.1f, 1.0f / rows,
                                                NULL, 0, dx);
            q = now() - q;
            bb = q < bb ? q : bb;
        }
        printf("  %-10s forward %8.3f ms  backward %8.3f ms\n", names[k], bf * 1e3, bb * 1e3);
    }
    free(x), free(lp), free(dx), free(t);
}

static void ln(int rows, int n, int reps)
{
    size_t len = (size_t)rows * n;
    float *x = must(malloc(len * 4)), *y = must(malloc(len * 4)), *dy = must(malloc(len * 4));
    float *dx = must(calloc(len, 4)), *g = must(malloc((size_t)n * 16)), *b = g + n;
    float *dg = b + n, *db = dg + n, *st = must(malloc((size_t)rows * 16));
    float *mean = st, *rstd = st + rows, *keep = st + 2 * rows;
    uint32_t s = 1;
    fill(x, (long)len, 3.0f, &s);
    fill(dy, (long)len, 0.01f, &s);
    fill(g, n, 1.0f, &s);
    fill(b, n, 0.5f, &s);
    memset(dg, 0, (size_t)n * 8);
    printf("layer norm on %d rows of %d, best of %d\n", rows, n, reps);
    for (int k = 0; k < 3; k++) {
        nomul_op_cfg c = cfg_of(k);
        double bf = 1e30, bb = 1e30;
        for (int r = 0; r < reps; r++) {
            double q = now();
            nomul_layer_norm_forward_keep(&c, rows, n, x, g, b, 1e-5f, y, mean, rstd, keep);
            q = now() - q;
            bf = q < bf ? q : bf;
            q = now();
            nomul_layer_norm_backward_keep(&c, rows, n, x, g, mean, rstd, keep, 1e-5f, dy, dx, dg,
                                           db);
            q = now() - q;
            bb = q < bb ? q : bb;
        }
        printf("  %-10s forward %8.3f ms  backward %8.3f ms\n", names[k], bf * 1e3, bb * 1e3);
    }
    free(x), free(y), free(dy), free(dx), free(g), free(st);
}

static void softmax(int rows, int n, int reps)
{
    size_t len = (size_t)rows * n;
    float *x = must(malloc(len * 4)), *y = must(malloc(len * 4)), *dy = must(malloc(len * 4));
    float *dx = must(calloc(len, 4)), *keep = must(malloc((len + 2 * (size_t)rows) * 4));
    uint32_t s = 1;
    fill(x, (long)len, 3.0f, &s);
    fill(dy, (long)len, 0.01f, &s);
    printf("softmax on %d rows of %d, best of %d\n", rows, n, reps);
    for (int k = 0; k < 3; k++) {
        nomul_op_cfg c = cfg_of(k);
        double bf = 1e30, bb = 1e30;
        for (int r = 0; r < reps; r++) {
            double q = now();
            nomul_softmax_forward_keep(&c, rows, n, x, y, keep);
            q = now() - q;
            bf = q < bf ? q : bf;
            q = now();
            nomul_softmax_backward_keep(&c, rows, n, x, y, keep, dy, dx);
            q = now() - q;
            bb = q < bb ? q : bb;
        }
        printf("  %-10s forward %8.3f ms  backward %8.3f ms\n", names[k], bf * 1e3, bb * 1e3);
    }
    free(x), free(y), free(dy), free(dx), free(keep);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "gelu")) {
        gelu(arg(argc, argv, 2, 819200, 1, 1L << 28, "N"),
             (int)arg(argc, argv, 3, 200, 1, 100000, "R"));
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "ce")) {
        ce((int)arg(argc, argv, 2, 4096, 1, 1 << 20, "ROWS"),
           (int)arg(argc, argv, 3, 2860, 1, 1 << 20, "N"),
           (int)arg(argc, argv, 4, 15, 1, 100000, "R"));
        return 0;
    }
    if (argc >= 2 && (!strcmp(argv[1], "ln") || !strcmp(argv[1], "softmax"))) {
        int ln_ = !strcmp(argv[1], "ln");
        int rows = (int)arg(argc, argv, 2, ln_ ? 4096 : 16384, 1, 1 << 22, "ROWS");
        int n = (int)arg(argc, argv, 3, ln_ ? 256 : 64, 1, 1 << 20, "N");
        int reps = (int)arg(argc, argv, 4, 50, 1, 100000, "R");
        (ln_ ? ln : softmax)(rows, n, reps);
        return 0;
    }
    fprintf(stderr, "usage: rows_bench gelu [N [R]] | rows_bench ce [ROWS [N [R]]] |\n"
                    "       rows_bench ln [ROWS [N [R]]] | rows_bench softmax [ROWS [N [R]]]\n");
    return 2;
}
