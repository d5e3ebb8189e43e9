/*
 * cmd_vectors.c — `nomul vectors check|gen|stats`: the arithmetic against
 * golden vectors, vectors for others to check against, and PAM's error.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nomul/nomul.h"

/* ---- check --------------------------------------------------------------- */

static const char check_usage[] =
    "usage: nomul vectors check [--max-mismatches K] FILE\n"
    "\n"
    "Checks every line of FILE (the golden format of PAM_SPEC.md; '-' reads\n"
    "stdin) with nomul's arithmetic: the scalar functions and the array kernels\n"
    "of every instruction set this CPU runs (capped by NOMUL_ISA). Prints per\n"
    "operation and path the mismatch counts, the first K mismatches in hex\n"
    "(default 10), and ends with 'N passed, M failed' (a case passes when every\n"
    "path gives its outputs bit for bit). Exits 1 on any mismatch, 2 on a\n"
    "malformed line or unreadable file.\n";

typedef struct {
    nomul_vector_case *cases;
    long *lines;
    size_t n, cap;
} case_list;

static int case_list_push(case_list *l, const nomul_vector_case *c, long line)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        nomul_vector_case *nc = realloc(l->cases, cap * sizeof *nc);
        if (!nc)
            return 0;
        l->cases = nc;
        long *nl = realloc(l->lines, cap * sizeof *nl);
        if (!nl)
            return 0;
        l->lines = nl;
        l->cap = cap;
    }
    l->cases[l->n] = *c;
    l->lines[l->n++] = line;
    return 1;
}

/* Reads and parses every line; returns 0 (after an error message) on a
 * malformed line or read error. */
/* A malformed line comes out once, through cli_error with its line number,
 * instead of also on the default handler's line. */
static void quiet(nomul_status status, const char *message) { (void)status, (void)message; }

static int read_cases(const char *path, case_list *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        cli_error("vectors check: cannot open '%s': %s", path, strerror(errno));
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int ok = 1;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        nomul_vector_case c;
        nomul_set_error_handler(quiet);
        int r = nomul_vector_parse(line, &c);
        nomul_set_error_handler(NULL);
        if (r < 0) {
            cli_error("vectors check: %s:%ld: %s", path, lineno, nomul_last_error_message());
            ok = 0;
            break;
        }
        if (r > 0 && !case_list_push(out, &c, lineno)) {
            cli_error("vectors check: out of memory at %s:%ld", path, lineno);
            ok = 0;
            break;
        }
    }
    if (ok && ferror(f)) {
        cli_error("vectors check: error reading '%s'", path);
        ok = 0;
    }
    free(line);
    if (f != stdin)
        fclose(f);
    return ok;
}

#define N_PATHS (1 + NOMUL_ISA_COUNT) /* the scalar functions, then each kernel set */

static const char *path_name(int p)
{
    return p == 0 ? "function" : nomul_isa_name((nomul_isa)(p - 1));
}

static void print_mismatch(const case_list *l, size_t i, int path, const uint32_t *got)
{
    const nomul_vector_case *c = &l->cases[i];
    char buf[256];
    nomul_vector_format(buf, sizeof buf, c);
    printf("  line %ld [%s]: %s, got", l->lines[i], path_name(path), buf);
    for (int j = 0; j < nomul_vector_op_outputs(c->op); j++)
        printf(" %08" PRIx32, got[j]);
    printf("\n");
}

static int run_check(const char *path, uint64_t max_show)
{
    case_list l = {0};
    if (!read_cases(path, &l)) {
        free(l.cases);
        free(l.lines);
        return CLI_USAGE;
    }
    int nops = nomul_vector_op_count();
    int npaths = 1 + (int)nomul_isa_max() + 1; /* scalar functions + kernels up to max */
    size_t *count = calloc((size_t)nops, sizeof *count);
    size_t *fails = calloc((size_t)nops * N_PATHS, sizeof *fails);
    unsigned char *bad = calloc(l.n ? l.n : 1, 1);
    float *buf = malloc((l.n ? l.n : 1) * sizeof(float) * (NOMUL_VECTOR_MAX_IN + NOMUL_VECTOR_MAX_OUT));
    size_t *idx = malloc((l.n ? l.n : 1) * sizeof *idx);
    if (!count || !fails || !bad || !buf || !idx) {
        cli_error("vectors check: out of memory");
        return CLI_USAGE;
    }
    uint64_t shown = 0;
    printf("checking %zu cases from %s on paths:", l.n, path);
    for (int p = 0; p < npaths; p++)
        printf(" %s", path_name(p));
    printf("\n");
    for (int op = 0; op < nops; op++) {
        size_t m = 0;
        for (size_t i = 0; i < l.n; i++)
            if (l.cases[i].op == op)
                idx[m++] = i;
        count[op] = m;
        if (m == 0)
            continue;
        int nin = nomul_vector_op_inputs(op), nout = nomul_vector_op_outputs(op);
        float *in[NOMUL_VECTOR_MAX_IN], *out[NOMUL_VECTOR_MAX_OUT];
        for (int j = 0; j < NOMUL_VECTOR_MAX_IN; j++)
            in[j] = buf + (size_t)j * m;
        for (int j = 0; j < NOMUL_VECTOR_MAX_OUT; j++)
            out[j] = buf + (size_t)(NOMUL_VECTOR_MAX_IN + j) * m;
        for (size_t t = 0; t < m; t++)
            for (int j = 0; j < nin; j++)
                memcpy(&in[j][t], &l.cases[idx[t]].in[j], sizeof(float));
        for (int p = 0; p < npaths; p++) {
            if (p > 0)
                nomul_vector_eval_array((nomul_isa)(p - 1), op, m, (const float *const *)in, out);
            for (size_t t = 0; t < m; t++) {
                const nomul_vector_case *c = &l.cases[idx[t]];
                uint32_t got[NOMUL_VECTOR_MAX_OUT] = {0};
                if (p == 0) {
                    nomul_vector_eval_scalar(op, c->in, got);
                } else {
                    for (int j = 0; j < nout; j++)
                        memcpy(&got[j], &out[j][t], sizeof(float));
                }
                int ok = 1;
                for (int j = 0; j < nout; j++)
                    ok &= got[j] == c->out[j];
                if (!ok) {
                    fails[op * N_PATHS + p]++;
                    bad[idx[t]] = 1;
                    if (shown < max_show) {
                        if (shown == 0)
                            printf("mismatches (expected -> ..., got ...):\n");
                        print_mismatch(&l, idx[t], p, got);
                        shown++;
                    }
                }
            }
        }
    }
    printf("%-18s %8s", "op", "cases");
    for (int p = 0; p < npaths; p++)
        printf(" %10s", path_name(p));
    printf("\n");
    for (int op = 0; op < nops; op++) {
        if (!count[op])
            continue;
        printf("%-18s %8zu", nomul_vector_op_name(op), count[op]);
        for (int p = 0; p < npaths; p++) {
            size_t f = fails[op * N_PATHS + p];
            if (f)
                printf(" %4zu FAIL ", f);
            else
                printf(" %10s", "ok");
        }
        printf("\n");
    }
    size_t nbad = 0;
    for (size_t i = 0; i < l.n; i++)
        nbad += bad[i];
    printf("%zu passed, %zu failed\n", l.n - nbad, nbad);
    free(count);
    free(fails);
    free(bad);
    free(buf);
    free(idx);
    free(l.cases);
    free(l.lines);
    if (l.n == 0) {
        cli_error("vectors check: %s holds no cases", path);
        return CLI_USAGE;
    }
    return nbad ? CLI_FAILED : CLI_OK;
}

static int vectors_check(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "vectors check");
    const char *arg, *file = NULL;
    uint64_t max_show = 10;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(check_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "max-mismatches")) {
            const char *v = cli_value(&a, "max-mismatches");
            if (!v || !cli_parse_u64("max-mismatches", v, 0, 1000000000, &max_show))
                return CLI_USAGE;
        } else if ((arg[0] != '-' || strcmp(arg, "-") == 0) && !file) {
            file = arg;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    if (!file) {
        cli_error("vectors check: missing FILE (see 'nomul vectors check --help')");
        return CLI_USAGE;
    }
    return run_check(file, max_show);
}

/* ---- gen ----------------------------------------------------------------- */

static const char gen_usage[] =
    "usage: nomul vectors gen [--seed S] [--count N] [--ops OP,OP,...] [--specials]\n"
    "                         [--output FILE]\n"
    "\n"
    "Writes N cases of each operation (default 1000; default operations: all of\n"
    "PAM_SPEC.md's, 'all' adds nomul's derivative extensions) in the golden\n"
    "format, computed with nomul's scalar arithmetic from inputs drawn with seed S\n"
    "(default 1). Like the golden file, only cases whose inputs and outputs are\n"
    "normal numbers or zeros are written, unless --specials also draws\n"
    "subnormals, infinities, NaNs and values at the overflow and underflow edges.\n"
    "Output goes to stdout or FILE.\n";

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t rng_u32(uint64_t *s) { return (uint32_t)(rng_next(s) >> 32); }
static int rng_int(uint64_t *s, int lo, int hi) /* inclusive */
{
    return lo + (int)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* A float with exponent in [elo, ehi]: random sign (if `sign`), often a
 * power of two or a mantissa of exactly 0.5, sometimes zero. */
static uint32_t draw(uint64_t *s, int elo, int ehi, int sign, int specials)
{
    uint32_t r = rng_u32(s) % 100;
    uint32_t sbit = sign && (rng_u32(s) & 1) ? 0x80000000u : 0;
    if (specials && r < 12) {
        static const uint32_t edge[] = {0x7F800000u, 0x7FC00000u, 0x7F800001u, 0x00000001u,
                                        0x007FFFFFu, 0x00800000u, 0x7F7FFFFFu, 0x00000000u,
                                        0x3F800000u, 0x3F7FFFFFu, 0x4B000000u, 0x33800000u};
        return sbit | edge[rng_u32(s) % (sizeof edge / sizeof edge[0])];
    }
    if (r < 3)
        return sbit;
    uint32_t e = (uint32_t)(rng_int(s, elo, ehi) + 127);
    uint32_t m = rng_u32(s) & 0x7FFFFFu;
    if (r < 13)
        m = 0;
    else if (r < 16)
        m = 0x400000u;
    return sbit | (e << 23) | m;
}

static int normal_or_zero(uint32_t u)
{
    uint32_t m = u & 0x7FFFFFFFu;
    return m == 0 || (m >= 0x00800000u && m < 0x7F800000u);
}

static void gen_inputs(uint64_t *s, const char *op, uint32_t *in, int nin, int specials)
{
    if (!strcmp(op, "exp2") || !strcmp(op, "exp2_grad")) {
        in[0] = draw(s, -12, 7, 1, specials);
    } else if (!strncmp(op, "exp", 3)) {
        in[0] = draw(s, -12, 6, 1, specials);
    } else if (!strncmp(op, "log", 3) || !strncmp(op, "sqrt", 4)) {
        in[0] = draw(s, -126, 127, 0, specials);
    } else if (!strncmp(op, "pow", 3)) {
        in[0] = draw(s, -40, 40, 0, specials);
        in[1] = draw(s, -3, 2, 1, specials);
    } else if (!strcmp(op, "mul_off") || !strcmp(op, "mul_off_grad")) {
        in[0] = draw(s, -60, 60, 1, specials);
        in[1] = draw(s, -60, 60, 1, specials);
        in[2] = 0x3F8710CBu; /* 1.0552 */
    } else {
        in[0] = draw(s, -60, 60, 1, specials);
        in[1] = draw(s, -60, 60, 1, specials);
    }
    for (int j = 0; j < nin; j++) /* upstream gradients: the last input */
        if (j == nin - 1 && strstr(op, "grad"))
            in[j] = draw(s, -30, 30, 1, specials);
}

static int vectors_gen(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "vectors gen");
    const char *arg, *ops = NULL, *output = NULL;
    uint64_t seed = 1, count = 1000;
    int specials = 0;
    while ((arg = cli_next(&a))) {
        const char *v;
        if (cli_is_help(arg)) {
            fputs(gen_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "seed")) {
            if (!(v = cli_value(&a, "seed")) || !cli_parse_u64("seed", v, 0, UINT64_MAX, &seed))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "count")) {
            if (!(v = cli_value(&a, "count")) ||
                !cli_parse_u64("count", v, 1, 100000000, &count))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "ops")) {
            if (!(ops = cli_value(&a, "ops")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "output")) {
            if (!(output = cli_value(&a, "output")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "specials")) {
            specials = 1;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    int nops = nomul_vector_op_count();
    int *want = calloc((size_t)nops, sizeof *want);
    if (!want)
        return CLI_USAGE;
    if (!ops) {
        for (int op = 0; op < nops; op++)
            want[op] = nomul_vector_op_in_spec(op);
    } else if (strcmp(ops, "all") == 0) {
        for (int op = 0; op < nops; op++)
            want[op] = 1;
    } else {
        char *list = strdup(ops), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int op = nomul_vector_op_find(t);
            if (op < 0) {
                cli_error("vectors gen: --ops: unknown operation '%s'; known:", t);
                for (int k = 0; k < nops; k++)
                    fprintf(stderr, "%s%s", k ? "," : "  ", nomul_vector_op_name(k));
                fprintf(stderr, "\n");
                free(list);
                free(want);
                return CLI_USAGE;
            }
            want[op] = 1;
        }
        free(list);
    }
    FILE *f = output ? fopen(output, "w") : stdout;
    if (!f) {
        cli_error("vectors gen: cannot write '%s': %s", output, strerror(errno));
        free(want);
        return CLI_USAGE;
    }
    fprintf(f, "# piecewise affine arithmetic vectors from nomul %s, seed %" PRIu64 "%s\n",
            nomul_version(), seed, specials ? ", with special values" : "");
    uint64_t s = seed;
    for (int op = 0; op < nops; op++) {
        if (!want[op])
            continue;
        int nin = nomul_vector_op_inputs(op), nout = nomul_vector_op_outputs(op);
        for (uint64_t k = 0; k < count;) {
            nomul_vector_case c = {op, {0}, {0}};
            gen_inputs(&s, nomul_vector_op_name(op), c.in, nin, specials);
            nomul_vector_eval_scalar(op, c.in, c.out);
            int keep = 1;
            for (int j = 0; j < nin && !specials; j++)
                keep &= normal_or_zero(c.in[j]);
            for (int j = 0; j < nout && !specials; j++)
                keep &= normal_or_zero(c.out[j]);
            if (!keep)
                continue;
            char buf[256];
            nomul_vector_format(buf, sizeof buf, &c);
            fprintf(f, "%s\n", buf);
            k++;
        }
    }
    free(want);
    int bad = ferror(f);
    if (f != stdout)
        bad |= fclose(f) != 0;
    else
        bad |= fflush(f) != 0;
    if (bad) {
        cli_error("vectors gen: error writing %s", output ? output : "stdout");
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* ---- stats ----------------------------------------------------------------- */

static const char stats_usage[] =
    "usage: nomul vectors stats [--offset C] [--samples N] [--seed S] [--grid-bits B]\n"
    "\n"
    "PAM's relative error against the true product a·b, for a and b in [1, 2)\n"
    "(the error depends on the mantissas alone): over an exhaustive grid of 2^B\n"
    "mantissas per operand (default B = 11) and over N uniformly random float32\n"
    "mantissa pairs (default 1000000, seed S), without an offset and with the\n"
    "offset C (default 1.0552). Analytically: mean about -3.85%, worst -1/9 at\n"
    "mantissas 0.5 and 0.5, exact (0) when either mantissa is 0.\n";

typedef struct {
    double sum, min, max;
    double min_ma, min_mb, max_ma, max_mb;
    uint64_t n;
} err_stats;

static void stats_add(err_stats *st, double ma, double mb, float pam)
{
    double a = 1.0 + ma, b = 1.0 + mb;
    double rel = (double)pam / (a * b) - 1.0;
    if (st->n == 0 || rel < st->min) {
        st->min = rel;
        st->min_ma = ma;
        st->min_mb = mb;
    }
    if (st->n == 0 || rel > st->max) {
        st->max = rel;
        st->max_ma = ma;
        st->max_mb = mb;
    }
    st->sum += rel;
    st->n++;
}

static void stats_print(const char *label, const err_stats *st)
{
    printf("  %-22s mean %+8.4f%%   min %+8.4f%% at (%.4f, %.4f)   max %+8.4f%% at (%.4f, "
           "%.4f)\n",
           label, 100.0 * st->sum / (double)st->n, 100.0 * st->min, st->min_ma, st->min_mb,
           100.0 * st->max, st->max_ma, st->max_mb);
}

static int vectors_stats(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "vectors stats");
    const char *arg, *v;
    double offset = 1.0552;
    uint64_t samples = 1000000, seed = 1, grid_bits = 11;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(stats_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "offset")) {
            if (!(v = cli_value(&a, "offset")) || !cli_parse_double("offset", v, &offset))
                return CLI_USAGE;
            if (!(offset >= 0.5 && offset <= 2.0)) {
                cli_error("vectors stats: --offset %g is outside [0.5, 2]", offset);
                return CLI_USAGE;
            }
        } else if (cli_is(&a, arg, "samples")) {
            if (!(v = cli_value(&a, "samples")) ||
                !cli_parse_u64("samples", v, 1, 1000000000, &samples))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "seed")) {
            if (!(v = cli_value(&a, "seed")) || !cli_parse_u64("seed", v, 0, UINT64_MAX, &seed))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "grid-bits")) {
            if (!(v = cli_value(&a, "grid-bits")) ||
                !cli_parse_u64("grid-bits", v, 1, 14, &grid_bits))
                return CLI_USAGE;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    float c = (float)offset;
    err_stats g = {0}, go = {0}, r = {0}, ro = {0};
    uint32_t steps = 1u << grid_bits;
    for (uint32_t i = 0; i < steps; i++) {
        for (uint32_t j = 0; j < steps; j++) {
            uint32_t ua = 0x3F800000u | (i << (23 - grid_bits));
            uint32_t ub = 0x3F800000u | (j << (23 - grid_bits));
            float fa, fb;
            memcpy(&fa, &ua, 4);
            memcpy(&fb, &ub, 4);
            double ma = (double)fa - 1.0, mb = (double)fb - 1.0;
            stats_add(&g, ma, mb, nomul_pa_mul(fa, fb));
            stats_add(&go, ma, mb, nomul_pa_mul_off(fa, fb, c));
        }
    }
    uint64_t s = seed;
    for (uint64_t k = 0; k < samples; k++) {
        uint32_t ua = 0x3F800000u | (rng_u32(&s) & 0x7FFFFFu);
        uint32_t ub = 0x3F800000u | (rng_u32(&s) & 0x7FFFFFu);
        float fa, fb;
        memcpy(&fa, &ua, 4);
        memcpy(&fb, &ub, 4);
        double ma = (double)fa - 1.0, mb = (double)fb - 1.0;
        stats_add(&r, ma, mb, nomul_pa_mul(fa, fb));
        stats_add(&ro, ma, mb, nomul_pa_mul_off(fa, fb, c));
    }
    char label[64];
    printf("PAM relative error against a*b, over mantissas (ma, mb) of a and b\n");
    printf("grid of %u x %u mantissas:\n", steps, steps);
    stats_print("no offset", &g);
    snprintf(label, sizeof label, "offset %.4f", (double)c);
    stats_print(label, &go);
    printf("%" PRIu64 " random mantissa pairs (seed %" PRIu64 "):\n", samples, seed);
    stats_print("no offset", &r);
    stats_print(label, &ro);
    printf("analytic: mean -3.85%%, worst -1/9 = %+.4f%% at (0.5, 0.5), 0 when a mantissa is 0\n",
           -100.0 / 9.0);
    return CLI_OK;
}

/* ---- dispatch ---------------------------------------------------------------- */

static const char vectors_usage[] =
    "usage: nomul vectors check|gen|stats [OPTIONS]\n"
    "\n"
    "  check FILE   check the arithmetic against golden vectors\n"
    "  gen          write vectors computed with nomul's arithmetic\n"
    "  stats        PAM's relative error against the true product\n"
    "\n"
    "'nomul vectors SUBCOMMAND --help' for each.\n";

int cmd_vectors(int argc, char **argv)
{
    if (argc < 2) {
        fputs(vectors_usage, stderr);
        return CLI_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(vectors_usage, stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "check") == 0)
        return vectors_check(argc - 1, argv + 1);
    if (strcmp(argv[1], "gen") == 0)
        return vectors_gen(argc - 1, argv + 1);
    if (strcmp(argv[1], "stats") == 0)
        return vectors_stats(argc - 1, argv + 1);
    cli_error("vectors: unknown subcommand '%s' (check, gen or stats)", argv[1]);
    return CLI_USAGE;
}
