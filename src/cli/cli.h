/*
 * cli.h — what the subcommands of the nomul command line share: error
 * reporting, option parsing helpers and the exit codes.
 *
 * Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input.
 */
#ifndef NOMUL_CLI_H
#define NOMUL_CLI_H

#include <stddef.h>
#include <stdint.h>

#define CLI_OK 0
#define CLI_FAILED 1
#define CLI_USAGE 2

/* Set (to 1) in the environment when nomul chose libgomp's spin count
 * itself (main.c): the PyTorch twin of `bench train` is then run with
 * libgomp's default, as a user would run it. */
#define NOMUL_SPIN_MARK "NOMUL_SET_GOMP_SPINCOUNT"

/* Prints "nomul: <message>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Option parsing over argv[1..argc-1] in the style `--name value` or
 * `--name=value`. */
typedef struct cli_args {
    int argc;
    char **argv;
    int i;               /* next argument */
    const char *command; /* "vectors check" etc., for messages */
    const char *inline_value;
} cli_args;

void cli_args_init(cli_args *a, int argc, char **argv, const char *command);
/* The next argument, or NULL at the end. */
const char *cli_next(cli_args *a);
/* 1 if arg is the option `name` (as --name or --name=value). */
int cli_is(cli_args *a, const char *arg, const char *name);
/* The value of the option just matched by cli_is; NULL (and an error
 * printed) if it is missing. */
const char *cli_value(cli_args *a, const char *name);
/* Parsers that print an error naming the option and return 0 on failure. */
int cli_parse_u64(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *out);
int cli_parse_double(const char *name, const char *s, double *out);
/* "unknown option" or "unexpected argument" for arg, with a pointer to --help. */
void cli_unknown(cli_args *a, const char *arg);
int cli_is_help(const char *arg);
/* Seconds on the monotonic clock, for the benchmarks' timings. */
double cli_now_s(void);
/* OpenBLAS's kernel set, for the benchmarks' headers, written into buf:
 * e.g. "Haswell (OPENBLAS_CORETYPE set)" when that variable overrides
 * OpenBLAS's own choice (some machines set it for old OpenBLAS builds;
 * README, "Performance"). Returns buf. */
const char *cli_blas_core(char *buf, size_t n);
/* The instruction set in use, for the benchmarks' headers: "avx512 (512-bit
 * FMA full width)" where nomul_cpu_fma512_full, else its name. */
const char *cli_isa(void);
/* The CPU as /proc/cpuinfo names its first one, for `nomul info` and the
 * benchmarks' headers (records compared across machines): e.g. "AMD EPYC,
 * family 26 model 2"; "unknown CPU" where the file or its fields are
 * missing. Written into buf; returns buf. */
const char *cli_cpu(char *buf, size_t n);
/* Reads a whole file into a malloc'd, NUL-terminated string; 0 after an
 * error naming the command and the file. */
int cli_read_file(const char *command, const char *path, char **out);
/* Splits a --set KEY=VALUE: the key into key (keylen bytes with its NUL),
 * *value at the text after the first '='; 0 after an error when there is no
 * '=', the key is empty or does not fit. */
int cli_split_set(const char *command, const char *arg, char *key, size_t keylen,
                  const char **value);
/* A training configuration from train's sources (cmd_train.c): the default,
 * a --checkpoint's (commands other than train), each --config, then --set;
 * checked. *help is set for --help (nothing else done then). */
struct nomul_train_config;
int cli_train_config(const char *command, int argc, char **argv, struct nomul_train_config *c,
                     int *help);

int cmd_vectors(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* cmd_bench_train.c: nomul bench train */
int bench_train(int argc, char **argv);
/* nomul bench optim (cmd_bench_optim.c) */
int bench_optim(int argc, char **argv);
/* nomul bench linear (cmd_bench_linear.c) */
int bench_linear(int argc, char **argv);
/* nomul bench allreduce (cmd_bench_allreduce.c) */
int bench_allreduce(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_corpus(int argc, char **argv);
int cmd_bleu(int argc, char **argv);
int cmd_bpe(int argc, char **argv);
int cmd_tokenize(int argc, char **argv); /* argv[0]: tokenize or detokenize */
int cmd_translate(int argc, char **argv);

#endif
