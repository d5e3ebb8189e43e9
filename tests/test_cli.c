/*
 * test_cli.c — the nomul command line as a user runs it: the golden check,
 * malformed and mismatching vector files, gen → check round trips, the
 * error statistics, the benchmark, clear errors with exit status 2 for
 * bad arguments, and the LibreOffice-help translation pipeline at toy size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h" /* NOMUL_SPIN_MARK */
#include "nomul/nomul.h"

static char nomul[512];
static char tmpdir[256];

/* Runs `nomul ARGS` through the shell; returns the exit status and the
 * output (stdout and stderr) in a malloc'd string. */
static int run(char **out, const char *fmt, ...)
{
    char args[2048], cmd[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", nomul, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[n] = 0;
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *last_line(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '\n')
        n--;
    while (n > 0 && s[n - 1] != '\n')
        n--;
    return s + n;
}

static void expect(int rc, int want_rc, const char *out, const char *needle)
{
    if (rc != want_rc || (needle && !strstr(out, needle)))
        fail_msg("exit %d (want %d), output lacks '%s':\n%s", rc, want_rc, needle ? needle : "",
                 out);
}

static void test_golden_check_passes(void **state)
{
    (void)state;
    char *out;
    const char *golden = getenv("NOMUL_GOLDEN");
    if (!golden)
        golden = "../shared/vectors/pam_golden.txt";
    int rc = run(&out, "vectors check %s", golden);
    expect(rc, 0, out, " passed, 0 failed");
    assert_true(strstr(last_line(out), " passed, 0 failed") != NULL);
    free(out);
}

static void test_check_reports_malformed_line(void **state)
{
    (void)state;
    char path[512], *out;
    snprintf(path, sizeof path, "%s/bad.txt", tmpdir);
    write_file(path, "# comment\nmul 3f800000 3f800000 -> 3f800000\nmul 3f800000 zz -> 0\n");
    int rc = run(&out, "vectors check %s", path);
    expect(rc, 2, out, "bad.txt:3:");
    free(out);
    write_file(path, "frobnicate 3f800000 -> 3f800000\n");
    rc = run(&out, "vectors check %s", path);
    expect(rc, 2, out, "unknown operation 'frobnicate'");
    free(out);
    write_file(path, "mul 3f800000 3f800000 3f800000\n");
    rc = run(&out, "vectors check %s", path);
    expect(rc, 2, out, "expected '->'");
    free(out);
    write_file(path, "mul 3f800000 3f800000 -> 3f800000 00000000\n");
    rc = run(&out, "vectors check %s", path);
    expect(rc, 2, out, "unexpected text");
    free(out);
    write_file(path, "# nothing\n");
    rc = run(&out, "vectors check %s", path);
    expect(rc, 2, out, "no cases");
    free(out);
    rc = run(&out, "vectors check %s/does-not-exist.txt", tmpdir);
    expect(rc, 2, out, "cannot open");
    free(out);
}

static void test_check_reports_mismatch(void **state)
{
    (void)state;
    char path[512], *out;
    snprintf(path, sizeof path, "%s/wrong.txt", tmpdir);
    /* PAM(1.5, 1.5) is 2.0 (0x40000000), not 2.25 */
    write_file(path, "mul 3fc00000 3fc00000 -> 40100000\nmul 3f800000 40000000 -> 40000000\n");
    int rc = run(&out, "vectors check %s", path);
    expect(rc, 1, out, "1 passed, 1 failed");
    expect(rc, 1, out, "got 40000000");
    expect(rc, 1, out, "line 1");
    assert_true(strstr(last_line(out), "1 passed, 1 failed") != NULL);
    free(out);
}

static void test_gen_round_trip(void **state)
{
    (void)state;
    char p1[512], p2[512], *out;
    snprintf(p1, sizeof p1, "%s/gen1.txt", tmpdir);
    snprintf(p2, sizeof p2, "%s/gen2.txt", tmpdir);
    int rc = run(&out, "vectors gen --seed 7 --count 200 --ops all --output %s", p1);
    expect(rc, 0, out, NULL);
    free(out);
    rc = run(&out, "vectors check %s", p1);
    expect(rc, 0, out, " passed, 0 failed");
    free(out);
    /* the same seed gives the same file; the default ops are the spec's 12 */
    rc = run(&out, "vectors gen --seed 7 --count 200 --ops all --output %s", p2);
    expect(rc, 0, out, NULL);
    free(out);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", p1, p2);
    assert_int_equal(system(cmd), 0);
    rc = run(&out, "vectors gen --count 3");
    expect(rc, 0, out, "pow ");
    int lines = 0;
    for (char *s = out; *s; s++)
        lines += *s == '\n';
    assert_int_equal(lines, 1 + 12 * 3);
    free(out);
    /* special values round-trip too */
    rc = run(&out, "vectors gen --seed 9 --count 300 --ops all --specials --output %s", p1);
    expect(rc, 0, out, NULL);
    free(out);
    rc = run(&out, "vectors check %s", p1);
    expect(rc, 0, out, " passed, 0 failed");
    free(out);
}

static void test_stats_reproduce_analytic_figures(void **state)
{
    (void)state;
    char *out;
    int rc = run(&out, "vectors stats --samples 200000");
    /* the first "no offset" line is the exhaustive grid */
    const char *line = strstr(out, "no offset");
    assert_non_null(line);
    double mean = 0;
    assert_int_equal(sscanf(strstr(line, "mean") + 4, "%lf", &mean), 1);
    if (mean > -3.84 || mean < -3.86)
        fail_msg("grid mean %g%%, expected about -3.85%%:\n%s", mean, out);
    expect(rc, 0, out, "min -11.1111% at (0.5000, 0.5000)");
    expect(rc, 0, out, "max  +0.0000%");
    expect(rc, 0, out, "offset 1.0552");
    free(out);
}

static void test_bench_runs(void **state)
{
    (void)state;
    char *out;
    int rc = run(&out, "bench arith --n 1000 --min-time 0.001 --ops mul,exp2");
    expect(rc, 0, out, "memcpy");
    expect(rc, 0, out, "exp2");
    expect(rc, 0, out, "scalar");
    free(out);
    rc = run(&out, "bench gemm --sizes 64,1024x3x5 --threads 1 --min-time 0.001");
    expect(rc, 0, out, "1024x3x5");
    expect(rc, 0, out, "pam/sg");
    free(out);
    rc = run(&out, "bench gemm --sizes 1024 --threads 1 --min-time 0.001");
    expect(rc, 0, out, "summary 1024^3, 1 threads: exact dB / sgemm");
    free(out);
    rc = run(&out, "bench linear --shapes 70x9x33,3x600x5 --min-time 0.001");
    expect(rc, 0, out, "70x9x33");
    expect(rc, 0, out, "dW");
    expect(rc, 0, out, "summary: a linear layer's three products over these shapes");
    free(out);
    rc = run(&out, "bench conv --batch 1 --min-time 0.001");
    expect(rc, 0, out, "convmixer dw 5x5 256");
    expect(rc, 0, out, "summary: conv2d forward");
    expect(rc, 0, out, "x zeros 0%");
    free(out);
    rc = run(&out, "bench conv --batch 1 --min-time 0.001 --zeros 0.5 --approx");
    expect(rc, 0, out, "approximate backward, x zeros 50%");
    expect(rc, 0, out, "summary: conv2d approximate backward weight");
    free(out);
    /* bench train: a row per configuration, each a process of its own, on
     * Debian's Fashion-MNIST (dataset-fashion-mnist) */
    rc = run(&out, "bench train --models vit_fmnist_tiny --configs float,pa_approx --steps 2 "
                   "--torch off --rounds 2");
    expect(rc, 0, out, "best of 2 rounds; no PyTorch rows\n  on "); /* the CPU */
    expect(rc, 0, out, "OpenBLAS core ");
    expect(rc, 0, out, "vit_fmnist_tiny    float");
    expect(rc, 0, out, "1.00x");
    expect(rc, 0, out, "vit_fmnist_tiny    pa_approx");
    expect(rc, 0, out, "images/s");
    /* each row's ratios to the same round's float row, least and greatest
     * (the float row's own: to its best, so its greatest is 1) */
    {
        const char *fl = strstr(out, "vit_fmnist_tiny    float"),
                   *pa = strstr(out, "vit_fmnist_tiny    pa_approx");
        const char *fr = fl ? strstr(fl, "per round ") : NULL,
                   *pr = pa ? strstr(pa, "per round ") : NULL;
        double flo = 0, fhi = 0, plo = 0, phi = 0;
        if (!fr || !pr || sscanf(fr, "per round %lf-%lfx", &flo, &fhi) != 2 ||
            sscanf(pr, "per round %lf-%lfx", &plo, &phi) != 2 || fhi != 1.0 || flo > fhi ||
            flo <= 0.0 || plo > phi || plo <= 0.0)
            fail_msg("bench train --rounds 2: no per-round ratios, or out of order:\n%s", out);
    }
    free(out);
    /* the PyTorch rows (a stand-in script with fixed rates): a convolutional
     * model's also in channels_last, the best of them the reference */
    rc = run(&out, "bench train --models resnet20 --configs float --steps 1 --torch on "
                   "--torch-threads 1 --torch-script tests/fake_torch_twin.py --rounds 2");
    expect(rc, 0, out, "resnet20           pytorch 1 thr           100.0");
    expect(rc, 0, out, "resnet20           pytorch 1 thr cl        150.0");
    expect(rc, 0, out, "resnet20           nomul float / best PyTorch: ");
    {
        /* per round, against that round's best PyTorch row (the fake's 150) */
        const char *s = strstr(out, "best PyTorch: ");
        const char *fl = strstr(out, "resnet20           float");
        double best = 0, lo = 0, hi = 0, frate = 0;
        if (!s || !fl || sscanf(s, "best PyTorch: %lfx the speed (per round %lf-%lfx)", &best,
                                &lo, &hi) != 3 ||
            sscanf(fl, "resnet20           float %lf", &frate) != 1 || lo > hi ||
            fabs(hi - frate / 150.0) > 0.006 || fabs(best - hi) > 0.006)
            fail_msg("bench train: the PyTorch comparison's per-round range is wrong:\n%s", out);
    }
    free(out);
    rc = run(&out, "bench train --models vit_fmnist_tiny --configs float --steps 1 --torch on "
                   "--torch-threads 1 --torch-script tests/fake_torch_twin.py");
    expect(rc, 0, out, "vit_fmnist_tiny    pytorch 1 thr           100.0");
    if (strstr(out, " cl "))
        fail_msg("a channels_last row for a model without convolutions:\n%s", out);
    free(out);
    rc = run(&out, "bench train --rounds 0");
    expect(rc, 2, out, "rounds");
    free(out);
    rc = run(&out, "bench train --models no_such_model");
    expect(rc, 2, out, "unknown model 'no_such_model'");
    free(out);
    rc = run(&out, "bench train --models vit_fmnist_tiny --configs float,fp16");
    expect(rc, 2, out, "unknown configuration 'fp16'");
    free(out);
    rc = run(&out, "bench optim --model vit_fmnist_tiny --min-time 0.001");
    expect(rc, 0, out, "trainable tensors");
    expect(rc, 0, out, "adamw      pa");
    expect(rc, 0, out, "sgd        float");
    free(out);
    rc = run(&out, "bench optim --model no_such_model");
    expect(rc, 2, out, "'no_such_model' is not one of");
    free(out);
}

static void test_audit(void **state)
{
    (void)state;
    char *out, path[512];
    /* train's default model and families (vit_fmnist, all PA), a small batch */
    int rc = run(&out, "audit --set batch_size=4");
    expect(rc, 0, out, "of vit_fmnist,");
    expect(rc, 0, out, "batch 4 random images of 1x28x28, 10 classes");
    expect(rc, 0, out, "float multiplications per step: 0 (divisions 0, exp/log/sqrt 0)");
    expect(rc, 0, out, "energy per step");
    free(out);
    /* a file states some choices; the rest keep train's defaults (PA) */
    snprintf(path, sizeof path, "%s/cfg.json", tmpdir);
    write_file(path, "{\"linear_cfg\": {\"subtype\": \"pam\", \"dkwargs\": {\"approx_bwd\": true}},"
                     " \"norm_cfg\": \"standard\", \"model\": \"vit_fmnist_tiny\", \"batch_size\": 2,"
                     " \"epochs\": 3}");
    rc = run(&out, "audit --config %s", path);
    expect(rc, 0, out, "of vit_fmnist_tiny,");
    expect(rc, 0, out, "linear_cfg           {\"subtype\": \"pam\"");
    expect(rc, 0, out, "norm_cfg             \"standard\"");
    expect(rc, 0, out, "functional_cfg       {\"subtype\": \"pam\", \"dkwargs\": {\"approx_bwd\": true");
    assert_null(strstr(out, "float multiplications per step: 0 "));
    free(out);
    rc = run(&out, "audit --config %s --set norm_cfg=pam_ln", path);
    expect(rc, 0, out, "float multiplications per step: 0 ");
    free(out);
    write_file(path, "{\"norm_cfg\": \"layernorm\"}");
    rc = run(&out, "audit --config %s", path);
    expect(rc, 2, out, "norm_cfg: unknown value \"layernorm\"");
    free(out);
    rc = run(&out, "audit --set nonsense=3");
    expect(rc, 2, out, "unknown config key 'nonsense'");
    free(out);
    rc = run(&out, "audit --set model=resnet21");
    expect(rc, 1, out, "is not one of vit_fmnist");
    free(out);
    rc = run(&out, "audit --config %s/missing.json", tmpdir);
    expect(rc, 2, out, "cannot open");
    free(out);
}

static void test_bad_arguments_are_clear_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args, *needle;
    } cases[] = {
        {"", "usage"},
        {"frob", "unknown command 'frob'"},
        {"vectors", "usage"},
        {"vectors frob", "unknown subcommand 'frob'"},
        {"vectors check", "missing FILE"},
        {"vectors check --bogus x", "unknown option '--bogus'"},
        {"vectors gen --count abc", "--count: 'abc' is not a whole number"},
        {"vectors gen --count 0", "--count"},
        {"vectors gen --count", "needs a value"},
        {"vectors gen --ops mul,nope", "unknown operation 'nope'"},
        {"vectors gen extra", "unexpected argument 'extra'"},
        {"vectors stats --offset x", "--offset: 'x' is not a finite number"},
        {"vectors stats --offset 7", "outside"},
        {"bench", "usage"},
        {"bench gemmm", "unknown benchmark"},
        {"bench gemm --sizes 12x", "is not MxNxK"},
        {"bench gemm --threads 0", "--threads"},
        {"bench linear --shapes 4x5", "is not TxINxOUT"},
        {"bench linear --shapes 0x5x5", "is not TxINxOUT"},
        {"bench linear --shapes ,", "no shape in ','"},
        {"bench linear --min-time -1", "--min-time"},
        {"bench conv --batch 0", "--batch"},
        {"bench conv --zeros 1.5", "--zeros must be a fraction in [0, 1]"},
        {"bench conv --zeros nan", "--zeros"},
        {"bench arith --n -5", "--n"},
        {"bench arith --min-time 0", "--min-time"},
        {"bench arith --ops zzz", "unknown operation 'zzz'"},
        {"bench optim --min-time 0", "--min-time"},
        {"bench optim --modell x", "modell"},
        {"info extra", "unexpected argument"},
        {"train --set epochs", "--set 'epochs' is not KEY=VALUE"},
        {"train --set epoch=3", "unknown config key 'epoch'"},
        {"train --set lr=x", "'lr' wants a number"},
        {"train --config /nonexistent/c.json", "cannot open '/nonexistent/c.json'"},
        {"train --progress fancy", "--progress wants auto, bar or lines"},
        {"train --resume /nonexistent/c.safetensors", "/nonexistent/c.safetensors"},
        {"train --set data.train=/nonexistent/i.gz --set out_dir=/tmp/nomul-cli-x",
         "/nonexistent/i.gz"},
        {"train --bogus", "unknown option '--bogus'"},
        {"eval", "--checkpoint FILE is required"},
        {"bleu", "want --ref REF and a hypothesis file"},
        {"bleu --ref /nonexistent/r README.md", "/nonexistent/r"},
        {"corpus", "usage"},
        {"bpe", "usage"},
        {"bpe shrink", "unknown subcommand 'shrink'"},
        {"bpe learn -o x README.md", "want --merges N"},
        {"bpe learn --merges 0 -o x README.md", "--merges"},
        {"bpe apply", "want --codes CODES"},
        {"bpe apply --codes /nonexistent/codes", "/nonexistent/codes"},
        {"corpus wmt", "unknown corpus 'wmt'"},
        {"corpus ding --dict /nonexistent/de-en", "/nonexistent/de-en"},
        {"corpus lohelp --src de", "want --src LANG and --tgt LANG"},
        {"tokenize", "want --lang LANG"},
        {"detokenize --lang", "--lang"},
        {"corpus lohelp --src de --tgt en --help-root /nonexistent/help", "/nonexistent/help"},
        {"corpus lohelp --src de --tgt en --bogus", "unknown option '--bogus'"},
        {"eval --checkpoint /nonexistent/c.safetensors", "/nonexistent/c.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        int rc = run(&out, "%s", cases[i].args);
        if (rc != 2 || !strstr(out, cases[i].needle))
            fail_msg("'nomul %s': exit %d (want 2), output lacks '%s':\n%s", cases[i].args, rc,
                     cases[i].needle, out);
        free(out);
    }
}

/* built with -fsanitize=address (as nomul is, the Makefile builds both alike) */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* `PREFIX nomul info` (PREFIX: environment settings or a wrapper; the
 * binary's path in saved) must succeed and print needle */
static void info_with(const char *saved, const char *prefix, const char *needle)
{
    char *out;
    snprintf(nomul, sizeof nomul, "%s %s", prefix, saved);
    int rc = run(&out, "info");
    snprintf(nomul, sizeof nomul, "%s", saved); /* before expect: a failure must not
                                                 * leave the prefix to later tests */
    expect(rc, 0, out, needle);
    free(out);
}

static void test_help_and_info(void **state)
{
    (void)state;
    const char *helps[] = {"--help", "vectors --help", "vectors check --help",
                           "vectors gen --help", "vectors stats --help", "bench arith --help",
                           "bench gemm --help", "bench conv --help", "bench optim --help", "audit --help",
                           "info --help"};
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        char *out;
        int rc = run(&out, "%s", helps[i]);
        expect(rc, 0, out, "usage: nomul");
        free(out);
    }
    char *out;
    int rc = run(&out, "--version");
    expect(rc, 0, out, "nomul 0.");
    free(out);
    /* NOMUL_ISA caps the instruction set */
    char saved[sizeof nomul - 96]; /* room for the prefixes of info_with */
    if (strlen(nomul) >= sizeof saved)
        fail_msg("build path too long: %s", nomul);
    memcpy(saved, nomul, strlen(nomul) + 1);
    info_with(saved, "NOMUL_ISA=scalar", "in use:              scalar");
    info_with(saved, "NOMUL_ISA=bogus", "NOMUL_ISA='bogus' is not one of");
    info_with(saved, "env", "512-bit FMA:         ");
    info_with(saved, "env", "cpu:                 "); /* /proc/cpuinfo's name, or unknown */
    /* idle OpenMP threads: nomul's spin count (set by restarting itself,
     * main.c) unless the user chose one */
    info_with(saved, "env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY -u " NOMUL_SPIN_MARK,
              "idle OpenMP threads: spin 30000 rounds, then sleep (nomul's default)");
    info_with(saved, "env -u GOMP_SPINCOUNT -u " NOMUL_SPIN_MARK " OMP_WAIT_POLICY=passive",
              "OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=(unset) (from the environment)");
    info_with(saved, "env -u OMP_WAIT_POLICY -u " NOMUL_SPIN_MARK " GOMP_SPINCOUNT=5",
              "GOMP_SPINCOUNT=5 (from the environment)");
    /* under valgrind nomul runs as it is (a restart would leave valgrind);
     * a sanitizer build cannot run under valgrind at all */
    if (!SANITIZED && system("valgrind --version >/dev/null 2>&1") == 0)
        info_with(saved,
                  "env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY -u " NOMUL_SPIN_MARK " valgrind -q",
                  "libgomp's default (under valgrind nomul does not restart itself)");
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* nomul plot: two runs' logs (one with Python's NaN) into an SVG with one
 * polyline per run and metric, points only where both values are finite. */
static void test_plot(void **state)
{
    (void)state;
    char a[512], b[512], svg[512], *out;
    snprintf(a, sizeof a, "%s/base.jsonl", tmpdir);
    snprintf(b, sizeof b, "%s/pam&co.jsonl", tmpdir);
    snprintf(svg, sizeof svg, "%s/curves.svg", tmpdir);
    FILE *f = fopen(a, "w");
    for (int e = 1; e <= 4; e++)
        fprintf(f, "{\"epoch\": %d, \"step\": %d, \"train_loss\": %g, \"test_acc\": %g}\n", e,
                100 * e, 1.0 / e, 0.7 + 0.05 * e);
    fclose(f);
    f = fopen(b, "w");
    for (int e = 1; e <= 3; e++)
        fprintf(f, "{\"epoch\": %d, \"step\": %d, \"train_loss\": %g}\n\n", e, 100 * e, 1.1 / e);
    fprintf(f, "{\"epoch\": 4, \"step\": 400, \"train_loss\": NaN, \"test_acc\": 0.9}\n");
    fclose(f);
    int rc = run(&out, "plot '%s' '%s' -o '%s' --title 'a <title>'", a, b, svg);
    expect(rc, 0, out, "2 metrics of 2 runs against step");
    free(out);
    f = fopen(svg, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    assert_non_null(strstr(text, "<svg"));
    assert_non_null(strstr(text, "</svg>"));
    assert_non_null(strstr(text, "a &lt;title&gt;"));
    assert_non_null(strstr(text, ">pam&amp;co</text>"));
    assert_int_equal(count_of(text, "<polyline"), 4);
    /* points: loss 4 + 3 (NaN skipped), accuracy 4 + 1 */
    int points = 0;
    for (const char *p = text; (p = strstr(p, "points=\"")); p++) {
        const char *end = strchr(p + 8, '"');
        for (const char *q = p + 8; q < end; q++)
            points += *q == ',';
    }
    assert_int_equal(points, 12);

    rc = run(&out, "plot '%s' --y test_acc --x epoch -o '%s'", a, svg);
    expect(rc, 0, out, "1 metric of 1 run against epoch");
    free(out);
    /* PNG: the same drawing rasterized; a real PNG of the SVG's size */
    char png[512];
    snprintf(png, sizeof png, "%s/curves.png", tmpdir);
    rc = run(&out, "plot '%s' '%s' -o '%s'", a, b, png);
    expect(rc, 0, out, "2 metrics of 2 runs against step");
    free(out);
    f = fopen(png, "rb");
    assert_non_null(f);
    unsigned char head[24];
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    assert_memory_equal(head, "\x89PNG\r\n\x1a\n", 8);
    const unsigned width = (unsigned)head[16] << 24 | head[17] << 16 | head[18] << 8 | head[19];
    assert_int_equal(width, 920); /* two panels of 460 */
    /* a trainer's run folder is named by its folders */
    char dir[512], cmd[1600];
    snprintf(dir, sizeof dir, "%s/runs/pam/seed1", tmpdir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/metrics.jsonl'", dir, a, dir);
    assert_int_equal(system(cmd), 0);
    rc = run(&out, "plot '%s/metrics.jsonl' -o '%s'", dir, svg);
    expect(rc, 0, out, NULL);
    free(out);
    f = fopen(svg, "r");
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    assert_non_null(strstr(text, ">pam/seed1</text>"));
    rc = run(&out, "plot '%s' --y nope -o '%s'", a, svg);
    expect(rc, 2, out, "no run has a numeric 'nope'");
    free(out);
    rc = run(&out, "plot '%s' --x wall -o '%s'", a, svg);
    expect(rc, 2, out, "no run has a numeric 'wall'");
    free(out);
    f = fopen(b, "a");
    fprintf(f, "{\"epoch\": 5, oops}\n");
    fclose(f);
    rc = run(&out, "plot '%s' -o '%s'", b, svg);
    expect(rc, 2, out, "pam&co.jsonl:8: not a JSON object");
    free(out);
    rc = run(&out, "plot '%s/none.jsonl'", tmpdir);
    expect(rc, 2, out, "cannot open");
    free(out);
    rc = run(&out, "plot");
    expect(rc, 2, out, "no metric logs given");
    free(out);
    rc = run(&out, "plot '%s' -o '%s/no/dir/x.svg'", a, tmpdir);
    expect(rc, 2, out, "cannot write");
    free(out);
}

/* A 4-class quadrant task in IDX files, trained, evaluated and resumed
 * through the command line. */
static void test_train_eval_resume(void **state)
{
    (void)state;
    enum { N = 64, S = 8 };
    uint8_t px[N * S * S], lb[N];
    for (int i = 0; i < N; i++) {
        lb[i] = (uint8_t)(i % 4);
        for (int p = 0; p < S * S; p++)
            px[i * S * S + p] = (uint8_t)((((p / S) >= S / 2) * 2 + ((p % S) >= S / 2)) == i % 4
                                              ? 200 : 30 + (i * 7 + p) % 40);
    }
    char img[512], lab[512], out_dir[512];
    snprintf(img, sizeof img, "%s/img.gz", tmpdir);
    snprintf(lab, sizeof lab, "%s/lab", tmpdir);
    snprintf(out_dir, sizeof out_dir, "%s/run", tmpdir);
    nomul_idx a = {NOMUL_IDX_U8, 3, {N, S, S}, N * S * S, 1, px};
    nomul_idx b = {NOMUL_IDX_U8, 1, {N}, N, 1, lb};
    assert_int_equal(nomul_idx_write(img, &a, 1), 0);
    assert_int_equal(nomul_idx_write(lab, &b, 0), 0);
    char common[4096];
    snprintf(common, sizeof common,
             "--set model=vit_fmnist_tiny --set data.train=%s --set data.train_labels=%s "
             "--set data.test=%s --set data.test_labels=%s --set data.image=8 "
             "--set data.classes=4 --set batch_size=16 --set warmup_steps=2 --set arena_mb=64 "
             "--set out_dir=%s --set checkpoint_every=4 --set checkpoint_keep=true",
             img, lab, img, lab, out_dir);
    char *out;
    int rc = run(&out, "train %s --set steps=8 --progress lines", common);
    expect(rc, 0, out, "float multiplications per training step: 0");
    if (!strstr(out, "epoch 2/2 100%") || !strstr(out, "steps 8  train_loss"))
        fail_msg("train output:\n%s", out);
    free(out);

    rc = run(&out, "eval --checkpoint %s/checkpoint_last.safetensors", out_dir);
    expect(rc, 0, out, "test accuracy");
    free(out);
    /* the trained weights evaluated in float */
    rc = run(&out, "eval --checkpoint %s/checkpoint_last.safetensors --set linear_cfg=standard",
             out_dir);
    expect(rc, 0, out, "vit_fmnist_tiny");
    free(out);

    /* resume the 4-step checkpoint for a longer run: the configuration comes
     * from the checkpoint, --set extends it */
    rc = run(&out, "train --resume %s/checkpoint_4.safetensors --set steps=12 --progress lines",
             out_dir);
    expect(rc, 0, out, "resuming at step 4");
    expect(rc, 0, out, "steps 12  train_loss");
    free(out);

    rc = run(&out, "train %s --keys", common);
    expect(rc, 0, out, "data.train_labels");
    expect(rc, 0, out, "opt_functional_cfg");
    free(out);
    rc = run(&out, "train %s --set linear_cfg=standard --print-config", common);
    expect(rc, 0, out, "\"linear_cfg\": \"standard\"");
    free(out);
    rc = run(&out, "plot %s/metrics.jsonl -o %s/curves.svg", out_dir, tmpdir);
    expect(rc, 0, out, NULL);
    free(out);
}

/* sacreBLEU's published example through the command line, in its format */
static void test_bleu(void **state)
{
    (void)state;
    char h[512], r1[512], r2[512], *out;
    snprintf(h, sizeof h, "%s/hyp.txt", tmpdir);
    snprintf(r1, sizeof r1, "%s/ref1.txt", tmpdir);
    snprintf(r2, sizeof r2, "%s/ref2.txt", tmpdir);
    write_file(h, "The dog bit the man.\nIt wasn't surprising.\nThe man had just bitten him.\n");
    write_file(r1, "The dog bit the man.\nIt was not unexpected.\nThe man bit him first.\n");
    write_file(r2, "The dog had bit the man.\nNo one was surprised.\nThe man had bitten the dog.\n");
    int rc = run(&out, "bleu --ref '%s' --ref '%s' '%s'", r1, r2, h);
    expect(rc, 0, out, "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 "
                       "ref_len = 18)");
    expect(rc, 0, out, "\nnrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.x-nomul\n");
    free(out);
    rc = run(&out, "bleu -lc --tokenize char --ref '%s' '%s'", r1, h);
    expect(rc, 0, out, "nrefs:1|case:lc|eff:no|tok:char|smooth:exp|");
    free(out);
    /* intl splits "wasn't" into "wasn ' t": 6 + 6 + 7 hypothesis tokens
     * against 6 + 5 + 6 (unigrams 6 + 2 + 4 of them match: 63.2); the line
     * sacreBLEU 2.x's BLEU(tokenize='intl') prints for these files */
    rc = run(&out, "bleu --tokenize intl --ref '%s' '%s'", r1, h);
    expect(rc, 0, out, "BLEU = 38.45 63.2/37.5/30.8/30.0 (BP = 1.000 ratio = 1.118 hyp_len = 19 "
                       "ref_len = 17)\n");
    expect(rc, 0, out, "\nnrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:2.x-nomul\n");
    free(out);
    rc = run(&out, "bleu --tokenize zh --ref '%s' '%s'", r1, h);
    expect(rc, 2, out, "--tokenize 'zh': want 13a, none, char or intl");
    free(out);
    write_file(r2, "The dog bit the man.\nIt was \xe2\x82 not.\nThe man bit him first.\n");
    rc = run(&out, "bleu --tokenize intl --ref '%s' '%s'", r2, h);
    expect(rc, 2, out, "ref2.txt:2: invalid UTF-8 at byte 8 of the line");
    free(out);
    write_file(r2, "only one line\n");
    rc = run(&out, "bleu --ref '%s' --ref '%s' '%s'", r1, r2, h);
    expect(rc, 2, out, "has 3 lines but");
    free(out);
}

/* BPE through the command line: learn, apply, undo, and fairseq's dict */
static void test_bpe(void **state)
{
    (void)state;
    char txt[512], codes[512], seg[512], dict[512], *out;
    snprintf(txt, sizeof txt, "%s/words.txt", tmpdir);
    snprintf(codes, sizeof codes, "%s/codes", tmpdir);
    snprintf(seg, sizeof seg, "%s/seg.txt", tmpdir);
    snprintf(dict, sizeof dict, "%s/dict.txt", tmpdir);
    write_file(txt, "low low low low low\nlower lower\nnewest newest newest newest newest "
                    "newest\nwidest widest widest\n");
    int rc = run(&out, "bpe learn --merges 100 -o '%s' '%s'", codes, txt);
    expect(rc, 0, out, "13 merges from 4 lines");
    free(out);
    rc = run(&out, "bpe apply --codes '%s' < '%s' > '%s'", codes, txt, seg);
    expect(rc, 0, out, NULL);
    free(out);
    write_file(txt, "lowest wider\n");
    rc = run(&out, "bpe apply --codes '%s' < '%s'", codes, txt);
    expect(rc, 0, out, "lo@@ west wid@@ e@@ r");
    free(out);
    rc = run(&out, "bpe dict -o '%s' '%s'", dict, seg);
    expect(rc, 0, out, "4 tokens");
    free(out);
    FILE *f = fopen(dict, "r");
    char text[256];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    /* count descending, ties by bytes */
    assert_string_equal(text, "newest 6\nlow 5\nwidest 3\nlower 2\n");
}

/* Runs a shell command line; the exit status, and stdout and stderr in a
 * malloc'd string. */
static int sh(char **out, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    assert_non_null(buf);
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
    }
    buf[n] = 0;
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The LibreOffice-help pipeline end to end at toy size, as
 * experiments/lohelp runs it: help pages written here → prepare.sh (corpus
 * lohelp, tokenize, BPE, dictionaries) → a few training steps of
 * transformer_tiny on experiments/lohelp's configuration → test BLEU on
 * detokenized text against the raw references → nomul translate on raw
 * sentences, from arguments and from a file. */
static void test_lohelp_pipeline(void **state)
{
    (void)state;
    char repo[1024], bin[1600], dir[600], path[800], *out;
    assert_non_null(getcwd(repo, sizeof repo));
    snprintf(bin, sizeof bin, "%s%s%s", nomul[0] == '/' ? "" : repo, nomul[0] == '/' ? "" : "/",
             nomul);
    snprintf(dir, sizeof dir, "%s/lohelp", tmpdir);
    static const char *const sub[] = {"", "/help", "/help/de", "/help/de/text", "/help/en-US",
                                      "/help/en-US/text"};
    for (size_t k = 0; k < sizeof sub / sizeof sub[0]; k++) {
        snprintf(path, sizeof path, "%s%s", dir, sub[k]);
        assert_int_equal(mkdir(path, 0777), 0);
    }
    static const char *const de_obj[] = {"die Datei", "den Ordner", "die Tabelle", "das Bild",
                                         "die Zelle", "den Rahmen"};
    static const char *const en_obj[] = {"the file", "the folder", "the table", "the image",
                                         "the cell", "the frame"};
    for (int page = 0; page < 12; page++)
        for (int l = 0; l < 2; l++) {
            snprintf(path, sizeof path, "%s/help/%s/text/p%02d.html", dir, l ? "en-US" : "de", page);
            FILE *f = fopen(path, "w");
            assert_non_null(f);
            fprintf(f, "<html><body><div id=\"DisplayArea\">\n<h1 id=\"hd_id%d\">%s %d</h1>\n",
                    page, l ? "Chapter" : "Kapitel", page);
            for (int u = 0; u < 30; u++) {
                int o = (page + u) % 6, n = page * 30 + u;
                if (l)
                    fprintf(f, "<p id=\"par_id%d\">Select <span class=\"emph\">%s</span> %d, "
                               "then click &quot;OK&quot;.</p>\n", u, en_obj[o], n);
                else
                    fprintf(f, "<p id=\"par_id%d\">W&auml;hlen Sie <span class=\"emph\">%s</span> "
                               "%d und klicken Sie auf \xe2\x80\x9eOK\xe2\x80\x9c.</p>\n",
                            u, de_obj[o], n);
            }
            fprintf(f, "</div></body></html>\n");
            fclose(f);
        }
    int rc = sh(&out, "cd '%s' && NOMUL='%s' HELP_ROOT='%s/help' MERGES=100 sh '%s/experiments/"
                      "lohelp/prepare.sh'", dir, bin, dir, repo);
    expect(rc, 0, out, "sentence pairs (de-en)");
    free(out);
    snprintf(path, sizeof path, "%s/data/lohelp-de-en/train.tok.en", dir);
    assert_int_equal(access(path, R_OK), 0);
    rc = sh(&out, "cd '%s' && '%s' train --config '%s/experiments/lohelp/transformer.json' "
                  "--config '%s/experiments/lohelp/1_float.json' --set model=transformer_tiny "
                  "--set steps=6 --set warmup_steps=2 --set max_tokens=400 --set beam=2 "
                  "--set out_dir=run --progress lines",
            dir, bin, repo, repo);
    expect(rc, 0, out, "test_bleu");
    double bleu = -1;
    const char *b = strstr(out, "test_bleu ");
    assert_non_null(b);
    bleu = atof(b + 10);
    free(out);
    /* the hypotheses are detokenized text: no space before a comma or a final
     * period, no BPE marks; nomul bleu on them against the raw references
     * gives the trainer's score */
    snprintf(path, sizeof path, "%s/run/test.hyp", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        if (strstr(line, " ,") || strstr(line, " .\n") || strstr(line, "@@"))
            fail_msg("test.hyp line %d is not detokenized: %s", lines, line);
    }
    fclose(f);
    assert_true(lines > 0);
    rc = sh(&out, "cd '%s' && '%s' bleu --ref data/lohelp-de-en/test.en run/test.hyp", dir, bin);
    expect(rc, 0, out, "BLEU = ");
    char want[64];
    snprintf(want, sizeof want, "BLEU = %.2f ", bleu);
    expect(rc, 0, out, want);
    free(out);
    /* raw sentences: arguments (speed on stdout), a file (speed on stderr) */
    rc = sh(&out, "cd '%s' && '%s' translate --checkpoint run/checkpoint_last.safetensors "
                  "'W\xc3\xa4hlen Sie die Datei 7, dann \xe2\x80\x9eOK\xe2\x80\x9c.' 'Kapitel 3' "
                  "2>/dev/null",
            dir, bin);
    expect(rc, 0, out, "2 sentences in ");
    if (!strstr(out, "sentences/s"))
        fail_msg("translate output:\n%s", out);
    free(out);
    rc = sh(&out, "cd '%s' && { '%s' translate --checkpoint run/checkpoint_last.safetensors "
                  "--input data/lohelp-de-en/valid.de 2>&1 >/dev/null; }",
            dir, bin);
    expect(rc, 0, out, " sentences/s");
    free(out);
    /* the ablation script: a row at toy size, its record (the finished run's
     * small files, kept in the repository) and the table made from it; a row
     * in the record is not run again; an interrupted run (a checkpoint, no
     * summary) is refused without --resume and continued with it */
    const char *abl = "cd '%s' && NOMUL='%s' TABLE=table.md RECORD=rec ROWS=1_float SEEDS=0 "
                      "WHERE=test SETS='--set model=transformer_tiny --set steps=4 "
                      "--set warmup_steps=2 --set max_tokens=400 --set beam=1 "
                      "--set checkpoint_every=2' sh '%s/experiments/lohelp/run_ablation.sh' %s abl";
    rc = sh(&out, abl, dir, bin, repo, "");
    expect(rc, 0, out, "| 1_float | ");
    free(out);
    const char *kept[] = {"summary.txt", "where.txt", "config.json", "metrics.jsonl", "test.hyp"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        snprintf(path, sizeof path, "%s/rec/1_float/seed0/%s", dir, kept[i]);
        if (access(path, R_OK) != 0)
            fail_msg("the record lacks %s", path);
    }
    rc = sh(&out, abl, dir, bin, repo, "");
    expect(rc, 0, out, "1_float seed 0: done (in rec/1_float/seed0)");
    expect(rc, 0, out, "| 1_float | ");
    free(out);
    rc = sh(&out, "cd '%s' && rm -r rec", dir);
    assert_int_equal(rc, 0);
    free(out);
    snprintf(path, sizeof path, "%s/abl/1_float/seed0/summary.txt", dir);
    assert_int_equal(unlink(path), 0);
    rc = sh(&out, abl, dir, bin, repo, "");
    expect(rc, 2, out, "--resume continues it");
    free(out);
    rc = sh(&out, abl, dir, bin, repo, "--resume");
    expect(rc, 0, out, "1_float seed 0: resumed");
    free(out);
    snprintf(path, sizeof path, "%s/rec/1_float/seed0/summary.txt", dir);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof path, "%s/table.md", dir);
    assert_int_equal(access(path, R_OK), 0);
    rc = sh(&out, "cd '%s' && '%s' translate --checkpoint run/checkpoint_last.safetensors "
                  "--input nothere.txt x",
            dir, bin);
    expect(rc, 2, out, "not both");
    free(out);
    rc = sh(&out, "cd '%s' && '%s' translate --checkpoint run/checkpoint_last.safetensors "
                  "--input nothere.txt",
            dir, bin);
    expect(rc, 2, out, "nothere.txt");
    free(out);
}

/* experiments/lohelp/lr_choice.sh on a made-up record: each row takes the
 * rate with the lower mean validation loss over the seeds run at both rates
 * (unfinished runs ignored), BLEU means round halves away from zero (30.025
 * is 30.03, which awk's %.2f of the binary value prints as 30.02), and the
 * gap to float is the difference of the printed means. */
static void test_lr_choice_table(void **state)
{
    (void)state;
    static const struct {
        const char *lr, *row;
        int seed;
        const char *valid, *bleu; /* NULL: an unfinished run */
    } runs[] = {
        {"a", "1_float", 0, "2.400", "30.15"},  {"a", "1_float", 1, "2.420", "29.90"},
        {"b", "1_float", 0, "2.500", "28.00"},  {"b", "1_float", 1, "2.520", "28.50"},
        {"b", "2b_pam_exact", 0, "2.440", "29.16"}, {"b", "2b_pam_exact", 1, "2.370", "30.17"},
        {"a", "2b_pam_exact", 0, "2.490", "29.21"}, {"a", "2b_pam_exact", 1, NULL, NULL},
    };
    char path[600], cmd[1400];
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        snprintf(cmd, sizeof cmd, "mkdir -p '%s/lr_%s/%s/seed%d'", tmpdir, runs[i].lr,
                 runs[i].row, runs[i].seed);
        assert_int_equal(system(cmd), 0);
        snprintf(path, sizeof path, "%s/lr_%s/%s/seed%d/summary.txt", tmpdir, runs[i].lr,
                 runs[i].row, runs[i].seed);
        char text[300] = "";
        if (runs[i].valid)
            snprintf(text, sizeof text,
                     "steps 8796  train_loss 3.1  valid_loss %s  test_bleu %s  seconds 9.0\n",
                     runs[i].valid, runs[i].bleu);
        write_file(path, text);
    }
    snprintf(cmd, sizeof cmd, "sh experiments/lohelp/lr_choice.sh 0.001='%s/lr_a' 0.0015='%s/lr_b' 2>&1",
             tmpdir, tmpdir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    assert_int_equal(pclose(p), 0);
    static const char *want[] = {
        "| 1_float | 0.001 | 30.03 | +0.00 | 2.410 | 30.15, 29.90 | 0.001: 2.410; 0.0015: 2.510 (2 shared seeds) |",
        "| 2b_pam_exact | 0.0015 | 29.67 | -0.36 | 2.405 | 29.16, 30.17 | 0.001: 2.490; 0.0015: 2.440 (1 shared seed) |",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i]))
            fail_msg("lr_choice.sh: no line starting\n%s\nin its output:\n%s", want[i], out);
}

static int setup(void **state)
{
    (void)state;
    const char *build = getenv("BUILD");
    snprintf(nomul, sizeof nomul, "%s/nomul", build && *build ? build : "build");
    if (access(nomul, X_OK) != 0) {
        fprintf(stderr, "no executable at %s (build it first)\n", nomul);
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nomul-test-cli-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_check_passes),
        cmocka_unit_test(test_check_reports_malformed_line),
        cmocka_unit_test(test_check_reports_mismatch),
        cmocka_unit_test(test_gen_round_trip),
        cmocka_unit_test(test_stats_reproduce_analytic_figures),
        cmocka_unit_test(test_bench_runs),
        cmocka_unit_test(test_audit),
        cmocka_unit_test(test_bad_arguments_are_clear_errors),
        cmocka_unit_test(test_help_and_info),
        cmocka_unit_test(test_plot),
        cmocka_unit_test(test_train_eval_resume),
        cmocka_unit_test(test_bleu),
        cmocka_unit_test(test_bpe),
        cmocka_unit_test(test_lohelp_pipeline),
        cmocka_unit_test(test_lr_choice_table),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
