/*
 * test_no_multiply.c — the arithmetic's and the matrix engine's object code
 * contains no float multiply, divide, square root, reciprocal, dot product or
 * FMA instruction: every object of src/arith and src/gemm is disassembled
 * (objdump, binutils) and each mnemonic matched against the forbidden
 * families, and the same for the PA optimizer's object and the PA composite
 * operations' object (softmax, layer norm, cross-entropy, GELU, ...). (The
 * float baseline calls OpenBLAS, or its own fused multiply-add kernels in
 * src/gemm/float, outside these objects: the scan takes the objects directly
 * in src/gemm only.) The matcher itself is checked on known mnemonics first, so
 * the test can fail.
 */
#include <glob.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* float multiply/divide/sqrt/reciprocal/dot product (SSE, AVX, AVX-512,
 * half precision), every FMA form, x87 multiply/divide, and AVX-512's
 * scale-by-power-of-two (a multiplication too, by name) */
static const char *const forbidden =
    "^(v?(mul|div|sqrt|rcp|rsqrt|rcp14|rsqrt14|rcp28|rsqrt28|dp)(ss|sd|ps|pd|sh|ph)"
    "|vf(n)?m(add|sub|addsub|subadd)(132|213|231)?(ss|sd|ps|pd|sh|ph)"
    "|v4?fn?madd(ps|ss)|vfc?maddc?(sh|ph)|vfc?mulc?(sh|ph)|vdpbf16ps"
    "|f(i)?(mul|div|divr)p?|fsqrt|vscalef(ss|sd|ps|pd|sh|ph))$";

static regex_t re;

static int is_forbidden(const char *mnemonic) { return regexec(&re, mnemonic, 0, NULL, 0) == 0; }

static void test_matcher_catches_multiplies(void **state)
{
    (void)state;
    const char *bad[] = {"mulss", "mulps", "vmulps", "vmulsd", "divss", "vdivps", "vfmadd231ps",
                         "vfnmsub132sd", "vfmadd213ss", "fmul", "fmulp", "fdivrp", "sqrtss",
                         "vrcp14ps", "vrsqrtps", "dpps", "vscalefps", "fimul"};
    const char *good[] = {"vpaddd", "vaddps", "addss", "vcvtdq2ps", "vpsllvd", "vpmulld",
                          "imul", "vpternlogd", "vblendvps", "cvtsi2ss", "vpcmpgtd", "vpsubd"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!is_forbidden(bad[i]))
            fail_msg("the matcher misses %s", bad[i]);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (is_forbidden(good[i]))
            fail_msg("the matcher flags %s", good[i]);
}

/* Disassembles one object; returns the count of instructions read, and
 * fails on a forbidden one. */
static long scan_object(const char *path, long *simd512)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "objdump -d --no-show-raw-insn '%s' 2>&1", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        fail_msg("cannot run objdump on %s", path);
    char line[1024], func[256] = "?";
    long n = 0, bad = 0;
    while (fgets(line, sizeof line, p)) {
        char *lt = strchr(line, '<');
        if (line[0] != ' ' && lt && strstr(line, ">:")) {
            snprintf(func, sizeof func, "%s", lt + 1);
            func[strcspn(func, ">")] = 0;
            continue;
        }
        /* instruction lines: "  addr:\tmnemonic operands" */
        char *tab = strchr(line, '\t');
        if (line[0] != ' ' || !tab || !strchr(line, ':'))
            continue;
        char mnem[64];
        if (sscanf(tab + 1, "%63s", mnem) != 1)
            continue;
        n++;
        if (strstr(line, "zmm"))
            (*simd512)++;
        if (is_forbidden(mnem)) {
            if (bad++ < 10)
                print_error("%s: %s uses %s", path, func, line);
        }
    }
    int rc = pclose(p);
    if (rc != 0)
        fail_msg("objdump failed on %s (is binutils installed?)", path);
    if (bad)
        fail_msg("%s: %ld float multiply/divide/FMA instructions", path, bad);
    return n;
}

/* Scans every object matching pattern; returns the instruction count, and
 * sets *saw_avx512 when an avx512 object used zmm registers. */
static long scan_glob(const char *pattern, int min_objects, int *saw_avx512)
{
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0 || (int)g.gl_pathc < min_objects)
        fail_msg("fewer than %d objects at %s (build first)", min_objects, pattern);
    long total = 0, simd512 = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long before = simd512;
        long n = scan_object(g.gl_pathv[i], &simd512);
        print_message("  %-40s %6ld instructions\n", g.gl_pathv[i], n);
        total += n;
        if (strstr(g.gl_pathv[i], "avx512") && simd512 > before)
            *saw_avx512 = 1;
    }
    globfree(&g);
    return total;
}

static const char *build_dir(void)
{
    const char *build = getenv("BUILD");
    return build && *build ? build : "build";
}

static void test_arith_objects_have_no_float_multiply(void **state)
{
    (void)state;
    char pattern[512];
    int saw = 0;
    snprintf(pattern, sizeof pattern, "%s/src/arith/*.o", build_dir());
    assert_true(scan_glob(pattern, 4, &saw) > 2000);
    assert_true(saw); /* the AVX-512 kernels were really scanned */
}

static void test_gemm_objects_have_no_float_multiply(void **state)
{
    (void)state;
    char pattern[512];
    int saw = 0;
    snprintf(pattern, sizeof pattern, "%s/src/gemm/*.o", build_dir());
    assert_true(scan_glob(pattern, 4, &saw) > 1000);
    assert_true(saw);
}

/* The PA optimizer (AdamW, SGD, clipping in PA mode) has an object of its own. */
static void test_pa_optimizer_has_no_float_multiply(void **state)
{
    (void)state;
    char pattern[512];
    int saw = 0;
    snprintf(pattern, sizeof pattern, "%s/src/train/optim_pa.o", build_dir());
    assert_true(scan_glob(pattern, 1, &saw) > 100);
}

/* The PA forms of the composite operations have an object of their own
 * (the float forms and the dispatch live in the others of src/functional). */
static void test_pa_composites_have_no_float_multiply(void **state)
{
    (void)state;
    char pattern[512];
    int saw = 0;
    snprintf(pattern, sizeof pattern, "%s/src/functional/functional_pa.o", build_dir());
    assert_true(scan_glob(pattern, 1, &saw) > 1000);
}

int main(void)
{
    if (regcomp(&re, forbidden, REG_EXTENDED | REG_NOSUB) != 0) {
        fprintf(stderr, "bad regex\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matcher_catches_multiplies),
        cmocka_unit_test(test_arith_objects_have_no_float_multiply),
        cmocka_unit_test(test_gemm_objects_have_no_float_multiply),
        cmocka_unit_test(test_pa_optimizer_has_no_float_multiply),
        cmocka_unit_test(test_pa_composites_have_no_float_multiply),
    };
    int rc = cmocka_run_group_tests_name("no_multiply", tests, NULL, NULL);
    regfree(&re);
    return rc;
}
