/*
 * rows_bench.c — times the elementwise and row operations the fifteenth
 * round fused, in float, PA with exact and PA with approximate derivatives,
 * and prints the best of R repetitions of each:
 *
 *   gelu N [R]        GELU forward and backward (the forward's values kept)
 *                     on N values (the ViT's FFN: 819200)
 *   ce ROWS N [R]     log_softmax and the cross-entropy's forward, and the
 *                     gradient with respect to the logits (nomul_cross_entropy_
 *                     logits_backward: both backward passes) on ROWS rows of N
 *                     (the translation models' output: 4096 2860); then the
 *                     same with the forward's values kept (training's form)
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

#include "bench_util.h"
#include "nomul/functional.h"
#include "nomul/opcfg.h"

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

/* One operation's buffers (each mode uses its own), and its forward and
 * backward as calls on them */
typedef struct {
    long n;        /* values (gelu) */
    int rows, cols; /* rows of cols (ce, ln, softmax) */
    float *x, *y, *dy, *dx, *keep, *g, *b, *dg, *db, *mean, *rstd;
    int *t;
} bufs;
typedef void (*pass_fn)(const nomul_op_cfg *c, bufs *u);

/* forward and backward in float, PA exact and PA approximate, the best of
 * reps of each, one line per configuration */
static void time_passes(bufs *u, int reps, pass_fn fwd, pass_fn bwd)
{
    for (int k = 0; k < 3; k++) {
        nomul_op_cfg c = cfg_of(k);
        double bf = 1e30, bb = 1e30;
        for (int r = 0; r < reps; r++) {
            double q = bench_now();
            fwd(&c, u);
            q = bench_now() - q;
            bf = q < bf ? q : bf;
            q = bench_now();
            bwd(&c, u);
            q = bench_now() - q;
            bb = q < bb ? q : bb;
        }
        printf("  %-10s forward %8.3f ms  backward %8.3f ms\n", names[k], bf * 1e3, bb * 1e3);
    }
}

static void gelu_fwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_gelu_forward_keep(c, u->n, u->x, u->y, u->keep);
}
static void gelu_bwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_gelu_backward_keep(c, u->n, u->x, u->keep, u->dy, u->dx);
}
static void ce_fwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_log_softmax_forward(c, u->rows, u->cols, u->x, u->y);
    nomul_cross_entropy_forward(c, u->rows, u->cols, u->y, u->t, -100, 0.1f, NULL);
}
static void ce_bwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_cross_entropy_logits_backward(c, u->rows, u->cols, u->x, u->y, NULL, u->t, -100,
                                        0.1f, 1.0f / u->rows, NULL, 0, u->dx);
}
/* the same with the forward's values kept (PA: no logp; float: as above) */
static void ce_keep_fwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_cross_entropy_logits_forward(c, u->rows, u->cols, u->x, u->t, -100, 0.1f,
                                       c->subtype == NOMUL_OP_STANDARD ? u->y : NULL, u->keep,
                                       NULL);
}
static void ce_keep_bwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_cross_entropy_logits_backward(c, u->rows, u->cols, u->x, u->y, u->keep, u->t, -100,
                                        0.1f, 1.0f / u->rows, NULL, 0, u->dx);
}
static void ln_fwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_layer_norm_forward_keep(c, u->rows, u->cols, u->x, u->g, u->b, 1e-5f, u->y, u->mean,
                                  u->rstd, u->keep);
}
static void ln_bwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_layer_norm_backward_keep(c, u->rows, u->cols, u->x, u->g, u->mean, u->rstd, u->keep,
                                   1e-5f, u->dy, u->dx, u->dg, u->db);
}
static void sm_fwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_softmax_forward_keep(c, u->rows, u->cols, u->x, u->y, u->keep);
}
static void sm_bwd(const nomul_op_cfg *c, bufs *u)
{
    nomul_softmax_backward_keep(c, u->rows, u->cols, u->x, u->y, u->keep, u->dy, u->dx);
}

/* mode: "gelu" (n values), "ce", "ln" or "softmax" (rows of cols): inputs
 * from a fixed LCG, then the passes timed */
static void run(const char *mode, long n, int rows, int cols, int reps)
{
    bufs u;
    memset(&u, 0, sizeof u);
    const int gelu = !strcmp(mode, "gelu"), ce = !strcmp(mode, "ce"), ln = !strcmp(mode, "ln");
    size_t len = gelu ? (size_t)n : (size_t)rows * cols;
    u.n = n, u.rows = rows, u.cols = cols;
    u.x = must(malloc(len * 4)), u.y = must(malloc(len * 4)), u.dy = must(malloc(len * 4));
    u.dx = must(calloc(len, 4));
    /* GELU: 2 floats per value; softmax: e and 2 per row; layer norm: 2 per row */
    u.keep = must(malloc((2 * len + 2 * (size_t)rows) * 4));
    uint32_t s = 1;
    fill(u.x, (long)len, 3.0f, &s);
    fill(u.dy, (long)len, 0.01f, &s);
    if (ce) {
        u.t = must(malloc((size_t)rows * sizeof *u.t));
        for (int i = 0; i < rows; i++) {
            s = s * 1664525u + 1013904223u;
            u.t[i] = (int)((s >> 8) % (uint32_t)cols);
        }
    }
    if (ln) {
        u.g = must(calloc((size_t)cols * 4, 4)), u.b = u.g + cols, u.dg = u.b + cols;
        u.db = u.dg + cols;
        fill(u.g, cols, 1.0f, &s);
        fill(u.b, cols, 0.5f, &s);
        u.mean = must(malloc((size_t)rows * 8)), u.rstd = u.mean + rows;
    }
    if (gelu)
        printf("GELU on %ld values, best of %d\n", n, reps);
    else
        printf("%s on %d rows of %d, best of %d\n",
               ce ? "log_softmax and the cross-entropy's logits gradient"
               : ln ? "layer norm"
                    : "softmax",
               rows, cols, reps);
    if (ce)
        printf(" log_softmax's rows written, then read by the loss and the backward:\n");
    time_passes(&u, reps, gelu ? gelu_fwd : ce ? ce_fwd : ln ? ln_fwd : sm_fwd,
                gelu ? gelu_bwd : ce ? ce_bwd : ln ? ln_bwd : sm_bwd);
    if (ce) {
        printf(" one pass, what the backward reads kept (nomul_cross_entropy_logits_forward):\n");
        time_passes(&u, reps, ce_keep_fwd, ce_keep_bwd);
    }
    free(u.x), free(u.y), free(u.dy), free(u.dx), free(u.keep), free(u.t), free(u.g),
        free(u.mean);
}

int main(int argc, char **argv)
{
    static const char P[] = "rows_bench";
    const char *m = argc >= 2 ? argv[1] : "";
    if (!strcmp(m, "gelu")) {
        long n = bench_arg(P, argc, argv, 2, 819200, 1, 1L << 28, "N");
        run(m, n, 0, 0, (int)bench_arg(P, argc, argv, 3, 200, 1, 100000, "R"));
        return 0;
    }
    if (!strcmp(m, "ce") || !strcmp(m, "ln") || !strcmp(m, "softmax")) {
        const int ce = !strcmp(m, "ce"), ln = !strcmp(m, "ln");
        int rows = (int)bench_arg(P, argc, argv, 2, ce || ln ? 4096 : 16384, 1, 1 << 22, "ROWS");
        int cols = (int)bench_arg(P, argc, argv, 3, ce ? 2860 : ln ? 256 : 64, 1, 1 << 20, "N");
        run(m, 0, rows, cols, (int)bench_arg(P, argc, argv, 4, ce ? 15 : 50, 1, 100000, "R"));
        return 0;
    }
    fprintf(stderr, "usage: rows_bench gelu [N [R]] | rows_bench ce [ROWS [N [R]]] |\n"
                    "       rows_bench ln [ROWS [N [R]]] | rows_bench softmax [ROWS [N [R]]]\n");
    return 2;
}
