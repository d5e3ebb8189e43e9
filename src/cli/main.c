/*
 * main.c — the nomul command line: dispatch to the subcommands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char usage[] =
    "usage: nomul COMMAND [ARGS...]\n"
    "\n"
    "Neural-network training with piecewise affine operations (PAM) instead of\n"
    "float multiplication.\n"
    "\n"
    "commands:\n"
    "  vectors check FILE    check the arithmetic against golden vectors\n"
    "  vectors gen           write test vectors from nomul's arithmetic\n"
    "  vectors stats         PAM's relative error against the true product\n"
    "  bench arith           throughput of the elementwise arithmetic\n"
    "  audit                 operations and energy of a training step, by class\n"
    "  train                 train a model (default: the fully piecewise affine ViT\n"
    "                        on Fashion-MNIST); --keys lists the configuration\n"
    "  eval --checkpoint F   evaluate a checkpoint on its test set\n"
    "  translate --checkpoint F   translate stdin with a translation checkpoint\n"
    "  plot RUN.jsonl...     curves of metric logs as SVG or PNG\n"
    "  corpus ding           German-English sentence pairs from Debian's trans-de-en\n"
    "  corpus lohelp         sentence pairs from LibreOffice's help (any two languages)\n"
    "  bleu --ref R HYP      corpus BLEU as sacreBLEU computes it\n"
    "  bpe learn|apply|dict  byte-pair encoding as subword-nmt, fairseq's dict.txt\n"
    "  tokenize --lang L     Moses-style word tokenization of stdin (before BPE)\n"
    "  detokenize --lang L   its inverse (after decoding, before BLEU)\n"
    "  info                  version and instruction sets\n"
    "\n"
    "options:\n"
    "  -h, --help            this text; 'nomul COMMAND --help' for a command\n"
    "  --version             the version\n"
    "\n"
    "environment:\n"
    "  NOMUL_ISA=scalar|avx2|avx512   cap the instruction set of the kernels\n";

/* libgomp's spin count nomul sets (omp_spin_default, below) */
#define NOMUL_SPINCOUNT "30000"

/* Under valgrind, /proc/self/exe is valgrind's tool, and a restarted nomul
 * would run outside valgrind: nomul does not restart itself there. Valgrind
 * preloads its vgpreload libraries into the program it runs. */
static int under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
}

static int cmd_info(int argc, char **argv)
{
    if (argc > 1) {
        if (cli_is_help(argv[1])) {
            printf("usage: nomul info\n\nPrints the version, the CPU, the instruction set "
                   "it supports and the one in use,\nwhether 512-bit FMAs run at full width "
                   "(some kernel choices follow it), the\nthread count and how long idle "
                   "OpenMP threads spin before they sleep.\n");
            return CLI_OK;
        }
        cli_error("info: unexpected argument '%s'", argv[1]);
        return CLI_USAGE;
    }
    printf("nomul %s\n", nomul_version());
    char cpu[192];
    printf("cpu:                 %s\n", cli_cpu(cpu, sizeof cpu));
    printf("cpu instruction set: %s\n", nomul_isa_name(nomul_isa_detect()));
    printf("in use:              %s\n", nomul_isa_name(nomul_isa_active()));
    printf("512-bit FMA:         %s\n",
           nomul_isa_detect() != NOMUL_ISA_AVX512 ? "none"
           : nomul_cpu_fma512_full()             ? "full width (two a cycle)"
                                                  : "in 256-bit halves, or unknown (Intel)");
    printf("threads:             %d\n", nomul_get_num_threads());
    const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    if (spin && getenv(NOMUL_SPIN_MARK) && !strcmp(spin, NOMUL_SPINCOUNT))
        printf("idle OpenMP threads: spin %s rounds, then sleep (nomul's default)\n", spin);
    else if (policy || spin)
        printf("idle OpenMP threads: OMP_WAIT_POLICY=%s GOMP_SPINCOUNT=%s (from the "
               "environment)\n", policy ? policy : "(unset)", spin ? spin : "(unset)");
    else if (under_valgrind())
        printf("idle OpenMP threads: libgomp's default (under valgrind nomul does not restart "
               "itself)\n");
    else
        printf("idle OpenMP threads: libgomp's default (nomul could not restart itself)\n");
    return CLI_OK;
}

/* How long libgomp's idle threads spin before they sleep. libgomp's default
 * (300,000 rounds, milliseconds) is fast on a quiet machine and ruinous on a
 * shared one: a thread spinning at a barrier holds a core that the thread it
 * waits for needs, and the ViT's 2-thread training ran at 300-450 images/s
 * beside two other processes, against 1,000-1,150 with 30,000 rounds; on a
 * quiet machine 30,000 rounds are within 2% of the default, 10,000 cost the
 * translation transformer 3-5% (README, Threads). libgomp reads
 * the setting once, when it is loaded, before main: so nomul sets it and
 * starts itself again (the same process, argv and everything else), unless
 * the user chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT) or this is the
 * second start, or valgrind runs it. If the restart fails, nomul runs with
 * libgomp's default. */
static void omp_spin_default(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv(NOMUL_SPIN_MARK) ||
        under_valgrind())
        return;
    if (setenv("GOMP_SPINCOUNT", NOMUL_SPINCOUNT, 1) || setenv(NOMUL_SPIN_MARK, "1", 1))
        return;
    execv("/proc/self/exe", argv);
    unsetenv("GOMP_SPINCOUNT"); /* not applied: do not pass it on to children either */
}

int main(int argc, char **argv)
{
    omp_spin_default(argv);
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (cli_is_help(cmd)) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("nomul %s\n", nomul_version());
        return CLI_OK;
    }
    if (strcmp(cmd, "vectors") == 0)
        return cmd_vectors(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "audit") == 0)
        return cmd_audit(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "corpus") == 0)
        return cmd_corpus(argc - 1, argv + 1);
    if (strcmp(cmd, "translate") == 0)
        return cmd_translate(argc - 1, argv + 1);
    if (strcmp(cmd, "bpe") == 0)
        return cmd_bpe(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0 || strcmp(cmd, "detokenize") == 0)
        return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "bleu") == 0)
        return cmd_bleu(argc - 1, argv + 1);
    if (strcmp(cmd, "plot") == 0)
        return cmd_plot(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0)
        return cmd_info(argc - 1, argv + 1);
    cli_error("unknown command '%s' (see 'nomul --help')", cmd);
    return CLI_USAGE;
}
