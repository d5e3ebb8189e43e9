/* cli.c — error reporting and option parsing shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "nomul/isa.h"

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("nomul: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_args_init(cli_args *a, int argc, char **argv, const char *command)
{
    a->argc = argc;
    a->argv = argv;
    a->i = 1;
    a->command = command;
    a->inline_value = NULL;
}

const char *cli_next(cli_args *a)
{
    a->inline_value = NULL;
    return a->i < a->argc ? a->argv[a->i++] : NULL;
}

int cli_is(cli_args *a, const char *arg, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, n) != 0)
        return 0;
    if (arg[2 + n] == 0) {
        a->inline_value = NULL;
        return 1;
    }
    if (arg[2 + n] == '=') {
        a->inline_value = arg + 3 + n;
        return 1;
    }
    return 0;
}

const char *cli_value(cli_args *a, const char *name)
{
    if (a->inline_value)
        return a->inline_value;
    if (a->i < a->argc)
        return a->argv[a->i++];
    cli_error("%s: option --%s needs a value", a->command, name);
    return NULL;
}

int cli_parse_u64(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') {
        cli_error("--%s: '%s' is not a whole number from %llu to %llu", name, s ? s : "",
                  (unsigned long long)min, (unsigned long long)max);
        return 0;
    }
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || v < min || v > max) {
        cli_error("--%s: '%s' is not a whole number from %llu to %llu", name, s,
                  (unsigned long long)min, (unsigned long long)max);
        return 0;
    }
    *out = v;
    return 1;
}

int cli_parse_double(const char *name, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = s && *s ? strtod(s, &end) : 0;
    if (!s || !*s || errno || *end || !isfinite(v)) {
        cli_error("--%s: '%s' is not a finite number", name, s ? s : "");
        return 0;
    }
    *out = v;
    return 1;
}

void cli_unknown(cli_args *a, const char *arg)
{
    if (arg[0] == '-')
        cli_error("%s: unknown option '%s' (see 'nomul %s --help')", a->command, arg, a->command);
    else
        cli_error("%s: unexpected argument '%s' (see 'nomul %s --help')", a->command, arg,
                  a->command);
}

int cli_is_help(const char *arg) { return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0; }

double cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *cli_blas_core(char *buf, size_t n)
{
    snprintf(buf, n, "%s%s", openblas_get_corename(),
             getenv("OPENBLAS_CORETYPE") ? " (OPENBLAS_CORETYPE set)" : "");
    return buf;
}

const char *cli_isa(void)
{
    nomul_isa isa = nomul_isa_active();
    return isa == NOMUL_ISA_AVX512 && nomul_cpu_fma512_full() ? "avx512 (512-bit FMA full width)"
                                                              : nomul_isa_name(isa);
}

/* the value of /proc/cpuinfo's line "key<tabs>: value", trimmed, into v */
static int cpuinfo_field(const char *line, const char *key, char *v, size_t n)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0)
        return 0;
    const char *c = line + k + strspn(line + k, " \t"); /* "model" is not "model name" */
    if (*c != ':')
        return 0;
    c++;
    while (*c == ' ' || *c == '\t')
        c++;
    size_t len = strcspn(c, "\n");
    while (len > 0 && (c[len - 1] == ' ' || c[len - 1] == '\t'))
        len--;
    snprintf(v, n, "%.*s", (int)len, c);
    return 1;
}

const char *cli_cpu(char *buf, size_t n)
{
    char name[128] = "", family[16] = "", model[16] = "", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (line[0] == '\n' && name[0]) /* the end of the first CPU's block */
            break;
        if (!name[0])
            cpuinfo_field(line, "model name", name, sizeof name);
        if (!family[0])
            cpuinfo_field(line, "cpu family", family, sizeof family);
        if (!model[0])
            cpuinfo_field(line, "model", model, sizeof model);
    }
    if (f)
        fclose(f);
    if (!name[0])
        snprintf(buf, n, "unknown CPU");
    else if (family[0] && model[0])
        snprintf(buf, n, "%s, family %s model %s", name, family, model);
    else
        snprintf(buf, n, "%s", name);
    return buf;
}

int cli_split_set(const char *command, const char *arg, char *key, size_t keylen,
                  const char **value)
{
    const char *eq = strchr(arg, '=');
    size_t kl = eq ? (size_t)(eq - arg) : 0;
    if (!eq || kl == 0 || kl >= keylen) {
        cli_error("%s: --set '%s' is not KEY=VALUE", command, arg);
        return 0;
    }
    memcpy(key, arg, kl);
    key[kl] = 0;
    *value = eq + 1;
    return 1;
}

int cli_read_file(const char *command, const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: cannot open '%s': %s", command, path, strerror(errno));
        return 0;
    }
    size_t cap = 4096, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) {
        cli_error("%s: out of memory reading '%s'", command, path);
        return 0;
    }
    buf[n] = 0;
    *out = buf;
    return 1;
}
