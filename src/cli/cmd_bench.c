/*
 * cmd_bench.c — `nomul bench arith`: throughput of every elementwise array
 * kernel on each instruction set, beside a memcpy of the same size, measured
 * in one run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../arith/elt.h"
#include "cli.h"
#include "nomul/nomul.h"

static const char bench_usage[] =
    "usage: nomul bench arith [--n N] [--min-time SECONDS] [--ops OP,OP,...]\n"
    "\n"
    "Times every elementwise kernel of the arithmetic (or the operations listed)\n"
    "on arrays of N floats (default 1048576) on each instruction set this CPU runs\n"
    "(capped by NOMUL_ISA), repeating each for at least SECONDS (default 0.2),\n"
    "and prints ns per element, GB/s (bytes read + written) and the ratio to a\n"
    "memcpy of one N-float array measured in the same run.\n";

/* Repeats fn until min_time has passed; returns seconds per call. */
typedef struct {
    nomul_isa isa;
    nomul_elt_op op;
    size_t n;
    nomul_elt_args *args;
    float *src, *dst;
} bench_job;

static void run_job(const bench_job *j)
{
    if (j->src)
        memcpy(j->dst, j->src, j->n * sizeof(float));
    else
        nomul_elt_run_isa(j->isa, j->op, j->n, j->args);
}

static double time_job(const bench_job *j, double min_time)
{
    run_job(j); /* warm up caches and pages */
    long reps = 0;
    double t0 = cli_now_s(), t;
    do {
        run_job(j);
        reps++;
        t = cli_now_s() - t0;
    } while (t < min_time);
    return t / (double)reps;
}

static int bench_arith(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bench arith");
    const char *arg, *v, *ops = NULL;
    uint64_t n = 1u << 20;
    double min_time = 0.2;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(bench_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "n")) {
            if (!(v = cli_value(&a, "n")) || !cli_parse_u64("n", v, 1, 1u << 28, &n))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "min-time")) {
            if (!(v = cli_value(&a, "min-time")) || !cli_parse_double("min-time", v, &min_time))
                return CLI_USAGE;
            if (min_time <= 0 || min_time > 60) {
                cli_error("bench arith: --min-time must be in (0, 60] seconds");
                return CLI_USAGE;
            }
        } else if (cli_is(&a, arg, "ops")) {
            if (!(ops = cli_value(&a, "ops")))
                return CLI_USAGE;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    int want[NOMUL_ELT_COUNT];
    for (int op = 0; op < NOMUL_ELT_COUNT; op++)
        want[op] = ops == NULL;
    if (ops) {
        char *list = strdup(ops), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int found = 0;
            for (int op = 0; op < NOMUL_ELT_COUNT; op++)
                if (strcmp(nomul_elt_info_table[op].name, t) == 0)
                    want[op] = found = 1;
            if (!found) {
                cli_error("bench arith: --ops: unknown operation '%s'; known:", t);
                for (int op = 0; op < NOMUL_ELT_COUNT; op++)
                    fprintf(stderr, "%s%s", op ? "," : "  ", nomul_elt_info_table[op].name);
                fprintf(stderr, "\n");
                free(list);
                return CLI_USAGE;
            }
        }
        free(list);
    }
    float *buf[6];
    for (int k = 0; k < 6; k++) {
        buf[k] = malloc(n * sizeof(float));
        if (!buf[k]) {
            cli_error("bench arith: cannot allocate 6 arrays of %llu floats",
                      (unsigned long long)n);
            return CLI_USAGE;
        }
    }
    /* inputs: normal numbers of moderate range, some zeros; the offset 1.0552 */
    uint64_t s = 12345;
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t u = (uint32_t)(s >> 32);
            uint32_t bits = (u & 0x8000007Fu) | ((uint32_t)(120 + (u >> 24) % 16) << 23) |
                            ((u << 9) & 0x7FFF80u);
            if ((u & 0xFF) == 0)
                bits = 0;
            if (k == 0 || k == 1)
                bits &= 0x7FFFFFFFu; /* positive: pow, sqrt, log */
            memcpy(&buf[k][i], &bits, 4);
        }
    }
    for (size_t i = 0; i < n; i++)
        buf[2][i] = 1.0552f;

    nomul_isa max = nomul_isa_max();
    bench_job cp = {NOMUL_ISA_SCALAR, 0, n, NULL, buf[0], buf[4]};
    double t_copy = time_job(&cp, min_time);
    double copy_gbs = 2.0 * 4.0 * (double)n / t_copy / 1e9;
    printf("elementwise arithmetic, n = %llu floats, instruction sets up to %s\n",
           (unsigned long long)n, nomul_isa_name(max));
    printf("%-18s %-7s %9s %9s %10s\n", "op", "isa", "ns/elem", "GB/s", "vs memcpy");
    printf("%-18s %-7s %9.3f %9.2f %10.2f\n", "memcpy", "-", 1e9 * t_copy / (double)n,
           copy_gbs, 1.0);
    for (int op = 0; op < NOMUL_ELT_COUNT; op++) {
        if (!want[op])
            continue;
        const nomul_elt_info *info = &nomul_elt_info_table[op];
        for (int isa = 0; isa <= (int)max; isa++) {
            nomul_elt_args g = {{buf[0], buf[1], buf[2], buf[3]}, {0}, {buf[4], buf[5]}, 0};
            if (op == NOMUL_ELT_MUL_OFF || op == NOMUL_ELT_MUL_OFF_GRAD)
                g.bcast[2] = 1;
            bench_job j = {(nomul_isa)isa, (nomul_elt_op)op, n, &g, NULL, NULL};
            double t = time_job(&j, min_time);
            double bytes = 4.0 * (double)n * (info->n_in + info->n_out -
                                              (g.bcast[2] && info->n_in > 2 ? 1 : 0));
            double gbs = bytes / t / 1e9;
            printf("%-18s %-7s %9.3f %9.2f %10.2f\n", info->name, nomul_isa_name((nomul_isa)isa),
                   1e9 * t / (double)n, gbs, gbs / copy_gbs);
        }
    }
    for (int k = 0; k < 6; k++)
        free(buf[k]);
    return CLI_OK;
}

/* ---- bench gemm ---------------------------------------------------------------- */

static const char gemm_usage[] =
    "usage: nomul bench gemm [--sizes LIST] [--threads LIST] [--min-time SECONDS]\n"
    "                        [--zeros FRACTION] [--quick]\n"
    "\n"
    "Times, in one run, OpenBLAS SGEMM, the PAM GEMM and its exact backward (dA\n"
    "and dB) on row-major products C (m x n) = A (m x k) B (k x n): square sizes\n"
    "256..2048 and the transformer shapes 4096x512x512, 4096x1024x512 and\n"
    "4096x512x2048 (m x n x k), with 1 and 2 threads. Figures are GFLOP/s\n"
    "counting 2mnk per product (for PAM: per PAM and addition), and each ratio to\n"
    "SGEMM of the same shape and threads (best of three interleaved rounds of\n"
    "SECONDS/3 each). Ends with one summary line per ratio at\n"
    "1024^3 on the most threads. --sizes takes MxNxK items (or N for NxNxN),\n"
    "--zeros makes that fraction of A's entries zero (as after a ReLU), --quick\n"
    "runs 256 and 1024 only.\n";

typedef struct {
    int m, n, k;
} gemm_shape;

typedef struct {
    int which; /* 0 sgemm, 1 pam, 2 grad a, 3 grad b */
    gemm_shape s;
    const float *a, *b, *dc;
    float *c;
} gemm_job;

static void run_gemm_job(const gemm_job *j)
{
    static const nomul_op_cfg pam = {NOMUL_OP_PAM, 0, 1.0f}; /* exact, no offset */
    int m = j->s.m, n = j->s.n, k = j->s.k;
    switch (j->which) {
    case 0:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, j->a, k, j->b, n,
                    0.0f, j->c, n);
        break;
    case 1:
        nomul_gemm(&pam, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, j->a, k, j->b, n,
                   0.0f, j->c, n);
        break;
    case 2:
        nomul_gemm_backward(&pam, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, j->a, k,
                            j->b, n, j->dc, n, 0.0f, j->c, k, NULL, 0);
        break;
    default:
        nomul_gemm_backward(&pam, CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, j->a, k,
                            j->b, n, j->dc, n, 0.0f, NULL, 0, j->c, n);
        break;
    }
}

static double time_gemm(const gemm_job *j, double min_time)
{
    run_gemm_job(j);
    long reps = 0;
    double t0 = cli_now_s(), t;
    do {
        run_gemm_job(j);
        reps++;
        t = cli_now_s() - t0;
    } while (t < min_time);
    return t / (double)reps;
}

static int parse_shapes(const char *list, gemm_shape *out, int max)
{
    int n = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        gemm_shape s;
        char extra;
        if (sscanf(t, "%dx%dx%d%c", &s.m, &s.n, &s.k, &extra) == 3) {
        } else if (sscanf(t, "%d%c", &s.m, &extra) == 1) {
            s.n = s.k = s.m;
        } else {
            cli_error("bench gemm: --sizes: '%s' is not MxNxK or N", t);
            free(copy);
            return -1;
        }
        if (s.m < 1 || s.n < 1 || s.k < 1 || s.m > 65536 || s.n > 65536 || s.k > 65536 ||
            n == max) {
            cli_error("bench gemm: --sizes: '%s' is out of range (1..65536, at most %d shapes)",
                      t, max);
            free(copy);
            return -1;
        }
        out[n++] = s;
    }
    free(copy);
    return n;
}

static int bench_gemm(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bench gemm");
    const char *arg, *v;
    const char *sizes = "256,512,1024,2048,4096x512x512,4096x1024x512,4096x512x2048";
    const char *threads = "1,2";
    double min_time = 0.3, zeros = 0.0;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(gemm_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "sizes")) {
            if (!(sizes = cli_value(&a, "sizes")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "threads")) {
            if (!(threads = cli_value(&a, "threads")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "quick")) {
            sizes = "256,1024";
        } else if (cli_is(&a, arg, "min-time")) {
            if (!(v = cli_value(&a, "min-time")) || !cli_parse_double("min-time", v, &min_time))
                return CLI_USAGE;
            if (min_time <= 0 || min_time > 60) {
                cli_error("bench gemm: --min-time must be in (0, 60] seconds");
                return CLI_USAGE;
            }
        } else if (cli_is(&a, arg, "zeros")) {
            if (!(v = cli_value(&a, "zeros")) || !cli_parse_double("zeros", v, &zeros))
                return CLI_USAGE;
            if (zeros < 0 || zeros > 1) {
                cli_error("bench gemm: --zeros must be a fraction in [0, 1]");
                return CLI_USAGE;
            }
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    gemm_shape shapes[32];
    int nshapes = parse_shapes(sizes, shapes, 32);
    if (nshapes < 0)
        return CLI_USAGE;
    int tlist[8], ntl = 0;
    {
        char *copy = strdup(threads), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            uint64_t tv;
            if (ntl == 8 || !cli_parse_u64("threads", t, 1, 256, &tv)) {
                free(copy);
                return CLI_USAGE;
            }
            tlist[ntl++] = (int)tv;
        }
        free(copy);
    }
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (int i = 0; i < nshapes; i++) {
        size_t sa = (size_t)shapes[i].m * shapes[i].k, sb = (size_t)shapes[i].k * shapes[i].n,
               sc = (size_t)shapes[i].m * shapes[i].n;
        maxa = sa > maxa ? sa : maxa;
        maxb = sb > maxb ? sb : maxb;
        maxc = sc > maxc ? sc : maxc;
    }
    size_t maxo = maxa > maxb ? maxa : maxb;
    maxo = maxo > maxc ? maxo : maxc;
    float *A = malloc(maxa * 4), *B = malloc(maxb * 4), *DC = malloc(maxc * 4),
          *C = malloc(maxo * 4);
    if (!A || !B || !DC || !C) {
        cli_error("bench gemm: out of memory");
        return CLI_USAGE;
    }
    uint64_t s = 42;
    float *arrays[3] = {A, B, DC};
    size_t sizes_[3] = {maxa, maxb, maxc};
    for (int q = 0; q < 3; q++)
        for (size_t i = 0; i < sizes_[q]; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            float u = (float)((s >> 40) & 0xFFFFFF) / 16777216.0f; /* [0, 1) */
            arrays[q][i] = u + u - 1.0f + 0x1p-20f;
            if (q == 0 && zeros > 0 && (double)((s >> 8) & 0xFFFF) / 65536.0 < zeros)
                arrays[q][i] = 0.0f;
        }
    char core[96];
    printf("OpenBLAS %s, core %s; nomul %s kernels; A zeros %.0f%%\n", openblas_get_config(),
           cli_blas_core(core, sizeof core), cli_isa(), 100.0 * zeros);
    printf("%-16s %3s %9s %9s %9s %9s %7s %7s %7s\n", "m x n x k", "thr", "sgemm", "pam",
           "pam dA", "pam dB", "pam/sg", "dA/sg", "dB/sg");
    double last[4] = {0, 0, 0, 0};
    int have_summary = 0, summary_t = 0;
    for (int ti = 0; ti < ntl; ti++) {
        nomul_set_num_threads(tlist[ti]);
        openblas_set_num_threads(tlist[ti]);
        for (int si = 0; si < nshapes; si++) {
            gemm_shape sh = shapes[si];
            /* interleaved rounds, best of each: the machine may be shared */
            double g[4] = {0, 0, 0, 0};
            for (int round = 0; round < 3; round++)
                for (int w = 0; w < 4; w++) {
                    gemm_job j = {w, sh, A, B, DC, C};
                    double t = time_gemm(&j, min_time / 3);
                    double rate = 2.0 * sh.m * sh.n * sh.k / t / 1e9;
                    g[w] = rate > g[w] ? rate : g[w];
                }
            char name[48];
            snprintf(name, sizeof name, "%dx%dx%d", sh.m, sh.n, sh.k);
            printf("%-16s %3d %9.1f %9.1f %9.1f %9.1f %7.2f %7.2f %7.2f\n", name, tlist[ti], g[0],
                   g[1], g[2], g[3], g[1] / g[0], g[2] / g[0], g[3] / g[0]);
            fflush(stdout);
            if (sh.m == 1024 && sh.n == 1024 && sh.k == 1024 && tlist[ti] >= summary_t) {
                memcpy(last, g, sizeof last);
                have_summary = 1;
                summary_t = tlist[ti];
            }
        }
    }
    if (have_summary) {
        printf("summary 1024^3, %d threads: pam gemm / sgemm = %.2f (target 0.90)\n", summary_t,
               last[1] / last[0]);
        printf("summary 1024^3, %d threads: exact dA / sgemm = %.2f (target 0.50)\n", summary_t,
               last[2] / last[0]);
        printf("summary 1024^3, %d threads: exact dB / sgemm = %.2f (target 0.50)\n", summary_t,
               last[3] / last[0]);
    }
    nomul_set_num_threads(0);
    free(A);
    free(B);
    free(DC);
    free(C);
    return CLI_OK;
}

/* ---- bench conv ---------------------------------------------------------------- */

static const char conv_usage[] =
    "usage: nomul bench conv [--threads N] [--batch N] [--min-time SECONDS] [--approx]\n"
    "                        [--zeros FRACTION] [--live]\n"
    "\n"
    "Times conv2d forward, backward data and backward weight on CNN layers\n"
    "(batch 32 unless --batch) in float mode (nomul's fused multiply-add kernels on the\n"
    "padded image or on im2col's output; OpenBLAS SGEMM on the scalar ISA and for depthwise\n"
    "layers) and PAM mode (im2col + the PAM matrix engine, or direct loops for depthwise\n"
    "layers; exact backward, or the\n"
    "approximate one with --approx), in one run, and prints the milliseconds and each\n"
    "PAM / float speed ratio, then one summary line per pass over all layers\n"
    "(time-weighted). Threads default to all cores. The inputs x are positive (as after a\n"
    "ReLU) with no zeros unless --zeros makes that fraction of them zero (a ReLU leaves\n"
    "about half: 0.5; the PAM weight gradients then skip them). --live times the data\n"
    "gradient as the autodiff graph asks for it when x is a ReLU's output\n"
    "(nomul_conv2d_backward_data_live: only where x is nonzero, where that form runs;\n"
    "float's not where 512-bit FMAs run at full width, see nomul info).\n";

typedef struct {
    const char *name;
    nomul_conv2d_desc d;
} conv_layer;

typedef struct {
    const nomul_conv2d_desc *d;
    int which; /* 0 fwd, 1 bwd data, 2 bwd weight */
    int live;  /* bwd data at x's nonzeros only */
    nomul_op_cfg cfg; /* float or PAM (no offset), exact or approximate backward */
    const float *x, *w, *dy;
    float *y, *dx, *dw;
} conv_job;

static void run_conv_job(const conv_job *j)
{
    if (j->which == 0)
        nomul_conv2d_forward(j->d, &j->cfg, j->x, j->w, NULL, j->y);
    else if (j->which == 1)
        (j->live ? nomul_conv2d_backward_data_live : nomul_conv2d_backward_data)(
            j->d, &j->cfg, j->x, j->w, j->dy, j->dx);
    else
        nomul_conv2d_backward_weight(j->d, &j->cfg, j->x, j->w, j->dy, j->dw, NULL);
}

static double time_conv(const conv_job *j, double min_time)
{
    run_conv_job(j);
    long reps = 0;
    double t0 = cli_now_s(), t;
    do {
        run_conv_job(j);
        reps++;
        t = cli_now_s() - t0;
    } while (t < min_time);
    return t / (double)reps;
}

static int bench_conv(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bench conv");
    const char *arg, *v;
    double min_time = 0.3;
    uint64_t threads = 0, batch = 32;
    int approx = 0, live = 0;
    double zeros = 0.0;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(conv_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "zeros")) {
            if (!(v = cli_value(&a, "zeros")) || !cli_parse_double("zeros", v, &zeros))
                return CLI_USAGE;
            if (!(zeros >= 0 && zeros <= 1)) {
                cli_error("bench conv: --zeros must be a fraction in [0, 1]");
                return CLI_USAGE;
            }
        } else if (cli_is(&a, arg, "approx")) {
            approx = 1;
        } else if (cli_is(&a, arg, "live")) {
            live = 1;
        } else if (cli_is(&a, arg, "threads")) {
            if (!(v = cli_value(&a, "threads")) || !cli_parse_u64("threads", v, 1, 256, &threads))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "batch")) {
            if (!(v = cli_value(&a, "batch")) || !cli_parse_u64("batch", v, 1, 4096, &batch))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "min-time")) {
            if (!(v = cli_value(&a, "min-time")) || !cli_parse_double("min-time", v, &min_time))
                return CLI_USAGE;
            if (min_time <= 0 || min_time > 60) {
                cli_error("bench conv: --min-time must be in (0, 60] seconds");
                return CLI_USAGE;
            }
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    if (threads) {
        nomul_set_num_threads((int)threads);
        openblas_set_num_threads((int)threads);
    }
    conv_layer layers[] = {
        {"resnet 3x3 16ch 32x32", {32, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}},
        {"resnet 3x3 64ch 8x8", {32, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1}},
        /* the sizes of the ResNets on Fashion-MNIST (28x28 images) */
        {"resnet 3x3 16ch 28x28", {32, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1}},
        {"resnet 3x3 32ch 14x14", {32, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1}},
        {"resnet 3x3 64ch 7x7", {32, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1}},
        {"vgg 3x3 128ch 16x16", {32, 128, 16, 16, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1}},
        {"vgg 3x3 3->64 32x32", {32, 3, 32, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1}},
        {"strided 3x3 s2 64ch", {32, 64, 16, 16, 128, 3, 3, 2, 2, 1, 1, 1, 1, 1}},
        {"pointwise 1x1 256ch", {32, 256, 16, 16, 256, 1, 1, 1, 1, 0, 0, 1, 1, 1}},
        {"resnext 3x3 g4 64ch", {32, 64, 16, 16, 64, 3, 3, 1, 1, 1, 1, 1, 1, 4}},
        {"convmixer dw 5x5 256", {32, 256, 16, 16, 256, 5, 5, 1, 1, 2, 2, 1, 1, 256}},
    };
    int nl = (int)(sizeof layers / sizeof layers[0]);
    size_t mx = 0, mw = 0, my = 0;
    for (int i = 0; i < nl; i++)
        layers[i].d.n = (int)batch;
    for (int i = 0; i < nl; i++) {
        const nomul_conv2d_desc *d = &layers[i].d;
        int oh, ow;
        if (!nomul_conv2d_output_size(d, &oh, &ow))
            return CLI_USAGE;
        size_t sx = (size_t)d->n * d->c_in * d->h * d->w;
        size_t sw = (size_t)d->c_out * (d->c_in / d->groups) * d->kh * d->kw;
        size_t sy = (size_t)d->n * d->c_out * oh * ow;
        mx = sx > mx ? sx : mx;
        mw = sw > mw ? sw : mw;
        my = sy > my ? sy : my;
    }
    float *x = malloc(mx * 4), *dx = malloc(mx * 4), *w = malloc(mw * 4), *dw = malloc(mw * 4);
    float *y = malloc(my * 4), *dy = malloc(my * 4);
    if (!x || !dx || !w || !dw || !y || !dy) {
        cli_error("bench conv: out of memory");
        return CLI_USAGE;
    }
    uint64_t s = 7;
    for (size_t i = 0; i < mx; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((s >> 40) & 0xFFFF) / 65536.0f + 0.01f; /* post-ReLU-like, nonzero */
        if (zeros > 0 && (double)((s >> 16) & 0xFFFF) / 65536.0 < zeros)
            x[i] = 0.0f;
    }
    for (size_t i = 0; i < mw; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = (float)((s >> 40) & 0xFFFF) / 32768.0f - 0.999f;
    }
    for (size_t i = 0; i < my; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        dy[i] = (float)((s >> 40) & 0xFFFF) / 32768.0f - 0.999f;
    }
    char core[96];
    printf("conv2d, batch %d, %d threads, nomul %s kernels, OpenBLAS core %s, %s backward, "
           "x zeros %.0f%%%s\n",
           (int)batch, nomul_get_num_threads(), cli_isa(),
           cli_blas_core(core, sizeof core), approx ? "approximate" : "exact", 100.0 * zeros,
           live ? ", dX at x's nonzeros only (--live)" : "");
    printf("%-24s %8s %8s %6s %8s %8s %6s %8s %8s %6s\n", "layer", "fwd ms", "pam ms", "ratio",
           "dX ms", "pam ms", "ratio", "dW ms", "pam ms", "ratio");
    double sum[3][2] = {{0, 0}, {0, 0}, {0, 0}};
    for (int i = 0; i < nl; i++) {
        double t[3][2] = {{1e30, 1e30}, {1e30, 1e30}, {1e30, 1e30}};
        for (int round = 0; round < 3; round++) /* interleaved, best of each */
            for (int which = 0; which < 3; which++)
                for (int mode = 0; mode < 2; mode++) {
                    conv_job j = {&layers[i].d, which, live,
                                  {mode ? NOMUL_OP_PAM : NOMUL_OP_STANDARD, approx, 1.0f},
                                  x, w, dy, y, dx, dw};
                    double tt = time_conv(&j, min_time / 3);
                    t[which][mode] = tt < t[which][mode] ? tt : t[which][mode];
                }
        for (int which = 0; which < 3; which++)
            for (int mode = 0; mode < 2; mode++)
                sum[which][mode] += t[which][mode];
        printf("%-24s %8.2f %8.2f %6.2f %8.2f %8.2f %6.2f %8.2f %8.2f %6.2f\n", layers[i].name,
               1e3 * t[0][0], 1e3 * t[0][1], t[0][0] / t[0][1], 1e3 * t[1][0], 1e3 * t[1][1],
               t[1][0] / t[1][1], 1e3 * t[2][0], 1e3 * t[2][1], t[2][0] / t[2][1]);
        fflush(stdout);
    }
    printf("summary: conv2d forward, PAM / float speed over these layers = %.2f (target 0.80)\n",
           sum[0][0] / sum[0][1]);
    printf("summary: conv2d %s backward data, PAM / float speed over these layers = %.2f\n",
           approx ? "approximate" : "exact", sum[1][0] / sum[1][1]);
    printf("summary: conv2d %s backward weight, PAM / float speed over these layers = %.2f\n",
           approx ? "approximate" : "exact", sum[2][0] / sum[2][1]);
    nomul_set_num_threads(0);
    free(x); free(dx); free(w); free(dw); free(y); free(dy);
    return CLI_OK;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs("usage: nomul bench arith|gemm|linear|conv|train|optim|allreduce [OPTIONS]\n\n"
              "  arith   throughput of the elementwise arithmetic ('nomul bench arith --help')\n"
              "  gemm    PAM GEMM and its exact backward against OpenBLAS SGEMM\n"
              "  linear  a linear layer's forward, data and weight gradient, float and PAM\n"
              "  conv    conv2d in PAM mode against float conv2d\n"
              "  train   training throughput and memory per model and configuration,\n"
              "          against PyTorch when it is installed\n"
              "  optim   one optimizer step over a model's tensors, float and PA, 1 and\n"
              "          all threads\n"
              "  allreduce  (under mpirun) the trainer's gradient sum against MPI_Allreduce\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "arith") == 0)
        return bench_arith(argc - 1, argv + 1);
    if (strcmp(argv[1], "gemm") == 0)
        return bench_gemm(argc - 1, argv + 1);
    if (strcmp(argv[1], "linear") == 0)
        return bench_linear(argc - 1, argv + 1);
    if (strcmp(argv[1], "conv") == 0)
        return bench_conv(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") == 0)
        return bench_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "optim") == 0)
        return bench_optim(argc - 1, argv + 1);
    if (strcmp(argv[1], "allreduce") == 0)
        return bench_allreduce(argc - 1, argv + 1);
    cli_error("bench: unknown benchmark '%s' (arith, gemm, linear, conv, train, optim, "
              "allreduce)",
              argv[1]);
    return CLI_USAGE;
}
