/*
 * cmd_bench.c — `nomul bench arith`: throughput of every elementwise array
 * kernel on each instruction set, beside a memcpy of the same size, measured
 * in one run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
    double t0 = now(), t;
    do {
        run_job(j);
        reps++;
        t = now() - t0;
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

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs("usage: nomul bench arith [OPTIONS]\n\n"
              "  arith   throughput of the elementwise arithmetic ('nomul bench arith --help')\n",
              argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "arith") == 0)
        return bench_arith(argc - 1, argv + 1);
    cli_error("bench: unknown benchmark '%s' (arith)", argv[1]);
    return CLI_USAGE;
}
