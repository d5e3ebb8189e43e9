/*
 * cmd_bench_linear.c — `nomul bench linear`: a linear layer's three products
 * (y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x) as training makes them (nomul_gemm and
 * nomul_gemm_backward, the calls of nomul_linear and its backward), float,
 * PAM with the approximate backward and PAM with the exact one, on the
 * shapes of the translation transformers' layers, measured in one run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char linear_usage[] =
    "usage: nomul bench linear [--shapes LIST] [--min-time SECONDS]\n"
    "\n"
    "Times a linear layer's products on nomul's threads as training makes them:\n"
    "forward y = x W^T (x: T x IN, W: OUT x IN), the data gradient dx = dy W and the\n"
    "weight gradient dW = dy^T x, in float (OpenBLAS SGEMM), PAM with the\n"
    "approximate backward (PAM products) and PAM with the exact backward (the\n"
    "derivative of every PAM). LIST is TxINxOUT items (default: transformer_mini's\n"
    "layers on 4,096 tokens, 4096x128x128, 4096x128x512, 4096x512x128, and its\n"
    "output projection onto 2,860 words, 4096x128x2860). Each product is timed in\n"
    "three interleaved rounds of SECONDS/3 (default 0.6) and its best kept; prints\n"
    "milliseconds per product, each PAM / float speed ratio, and a summary line per\n"
    "configuration over all shapes and products (time-weighted).\n";

typedef struct {
    int t, in, out;
} linear_shape;

enum { CFG_FLOAT, CFG_APPROX, CFG_EXACT, NCFG };
enum { PASS_FWD, PASS_DX, PASS_DW, NPASS };
static const char *const pass_name[NPASS] = {"forward", "dx", "dW"};

typedef struct {
    linear_shape s;
    nomul_op_cfg cfg;
    int pass;
    const float *x, *w, *dy;
    float *y, *dx, *dw;
} linear_job;

static void run_linear(const linear_job *j)
{
    int T = j->s.t, in = j->s.in, out = j->s.out;
    if (j->pass == PASS_FWD)
        nomul_gemm(&j->cfg, CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, j->x, in, j->w,
                   in, 0.0f, j->y, out);
    else /* as ad_linear_backward: m = T, n = OUT, k = IN, B = W transposed */
        nomul_gemm_backward(&j->cfg, CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, j->x,
                            in, j->w, in, j->dy, out, 0.0f, j->pass == PASS_DX ? j->dx : NULL, in,
                            j->pass == PASS_DW ? j->dw : NULL, in);
}

/* best seconds per call over at least min_time (after a warm-up call) */
static double time_linear(const linear_job *j, double min_time)
{
    run_linear(j);
    double best = 1e30, t0 = cli_now_s();
    do {
        double t1 = cli_now_s();
        run_linear(j);
        double t = cli_now_s() - t1;
        best = t < best ? t : best;
    } while (cli_now_s() - t0 < min_time);
    return best;
}

static int parse_linear_shapes(const char *list, linear_shape *out, int max)
{
    int n = 0;
    char *copy = strdup(list), *save = NULL;
    if (!copy) {
        cli_error("bench linear: out of memory");
        return -1;
    }
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        linear_shape s;
        char extra;
        if (sscanf(t, "%dx%dx%d%c", &s.t, &s.in, &s.out, &extra) != 3 || s.t < 1 || s.in < 1 ||
            s.out < 1 || s.t > 65536 || s.in > 65536 || s.out > 65536 || n == max) {
            cli_error("bench linear: --shapes: '%s' is not TxINxOUT with each in 1..65536 "
                      "(at most %d shapes)", t, max);
            free(copy);
            return -1;
        }
        out[n++] = s;
    }
    free(copy);
    if (n == 0)
        cli_error("bench linear: --shapes: no shape in '%s'", list);
    return n > 0 ? n : -1;
}

static void fill(float *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f; /* [0, 1) */
        p[i] = u + u - 1.0f + 0x1p-20f;
    }
}

int bench_linear(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bench linear");
    const char *arg, *v;
    const char *shapes_arg = "4096x128x128,4096x128x512,4096x512x128,4096x128x2860";
    double min_time = 0.6;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(linear_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "shapes")) {
            if (!(shapes_arg = cli_value(&a, "shapes")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "min-time")) {
            if (!(v = cli_value(&a, "min-time")) || !cli_parse_double("min-time", v, &min_time))
                return CLI_USAGE;
            if (min_time <= 0 || min_time > 60) {
                cli_error("bench linear: --min-time must be in (0, 60] seconds");
                return CLI_USAGE;
            }
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    linear_shape shapes[16];
    int nshapes = parse_linear_shapes(shapes_arg, shapes, 16);
    if (nshapes < 0)
        return CLI_USAGE;
    size_t nx = 0, nw = 0, ny = 0;
    for (int i = 0; i < nshapes; i++) {
        size_t sx = (size_t)shapes[i].t * shapes[i].in, sw = (size_t)shapes[i].out * shapes[i].in,
               sy = (size_t)shapes[i].t * shapes[i].out;
        nx = sx > nx ? sx : nx;
        nw = sw > nw ? sw : nw;
        ny = sy > ny ? sy : ny;
    }
    float *x = malloc(nx * 4), *dx = malloc(nx * 4), *w = malloc(nw * 4), *dw = malloc(nw * 4);
    float *y = malloc(ny * 4), *dy = malloc(ny * 4);
    if (!x || !dx || !w || !dw || !y || !dy) {
        cli_error("bench linear: out of memory for the shapes' operands");
        free(x), free(dx), free(w), free(dw), free(y), free(dy);
        return CLI_USAGE;
    }
    uint64_t seed = 42;
    fill(x, nx, &seed);
    fill(w, nw, &seed);
    fill(dy, ny, &seed);
    static const nomul_op_cfg cfgs[NCFG] = {
        {NOMUL_OP_STANDARD, 0, 1.0f}, {NOMUL_OP_PAM, 1, 1.0f}, {NOMUL_OP_PAM, 0, 1.0f}};
    char core[96];
    printf("nomul bench linear: %d threads, ISA %s, OpenBLAS core %s; best of 3 interleaved "
           "rounds\n", nomul_get_num_threads(), cli_isa(),
           cli_blas_core(core, sizeof core));
    printf("%-18s %-8s %9s %9s %7s %9s %7s\n", "T x IN x OUT", "product", "float ms",
           "approx ms", "ratio", "exact ms", "ratio");
    double total[NCFG] = {0, 0, 0};
    for (int si = 0; si < nshapes; si++) {
        double best[NPASS][NCFG];
        for (int p = 0; p < NPASS; p++)
            for (int c = 0; c < NCFG; c++)
                best[p][c] = 1e30;
        for (int round = 0; round < 3; round++)
            for (int p = 0; p < NPASS; p++)
                for (int c = 0; c < NCFG; c++) {
                    if (p == PASS_FWD && c == CFG_EXACT)
                        continue; /* the same forward as the approximate one */
                    linear_job j = {shapes[si], cfgs[c], p, x, w, dy, y, dx, dw};
                    double t = time_linear(&j, min_time / 3);
                    best[p][c] = t < best[p][c] ? t : best[p][c];
                }
        char name[48];
        snprintf(name, sizeof name, "%dx%dx%d", shapes[si].t, shapes[si].in, shapes[si].out);
        for (int p = 0; p < NPASS; p++) {
            if (p == PASS_FWD)
                best[p][CFG_EXACT] = best[p][CFG_APPROX];
            double f = best[p][CFG_FLOAT], ap = best[p][CFG_APPROX], ex = best[p][CFG_EXACT];
            printf("%-18s %-8s %9.3f %9.3f %7.2f %9.3f %7.2f\n", p == 0 ? name : "",
                   pass_name[p], 1e3 * f, 1e3 * ap, f / ap, 1e3 * ex, f / ex);
            for (int c = 0; c < NCFG; c++)
                total[c] += best[p][c];
        }
        fflush(stdout);
    }
    printf("summary: a linear layer's three products over these shapes, PAM / float speed = "
           "%.2f (approximate backward), %.2f (exact)\n",
           total[CFG_FLOAT] / total[CFG_APPROX], total[CFG_FLOAT] / total[CFG_EXACT]);
    free(x), free(dx), free(w), free(dw), free(y), free(dy);
    return CLI_OK;
}
