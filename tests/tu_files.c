/* tu_files.c — see tu_files.h. */
#include "tu_files.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nomul/data.h"
#include "nomul/error.h"
#include "testutil.h"

char tu_last_error[1024];
static char dir[256];

static void capture(nomul_status s, const char *msg)
{
    (void)s;
    snprintf(tu_last_error, sizeof tu_last_error, "%s", msg);
}

int tu_tmpdir_setup(const char *tag)
{
    const char *root = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/nomul-%s-XXXXXX", root, tag);
    if (!mkdtemp(dir))
        return -1;
    nomul_set_error_handler(capture);
    return 0;
}

int tu_tmpdir_teardown(void)
{
    if (getenv("NOMUL_TEST_KEEP") && *getenv("NOMUL_TEST_KEEP")) {
        fprintf(stderr, "  kept the test's files: %s\n", dir);
        return 0;
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

const char *tu_tmpdir(void)
{
    return dir;
}

const char *tu_path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

int tu_write_quadrant_set(const char *images, const char *labels, long n,
                          unsigned long long seed, int gzip)
{
    enum { SIDE = TU_SET_SIDE };
    uint8_t *px = malloc((size_t)n * SIDE * SIDE + 1), *lb = malloc((size_t)n + 1);
    int rc = -1;
    if (px && lb) {
        tu_rng s = {seed};
        for (long i = 0; i < n; i++) {
            int k = (int)(tu_next(&s) % TU_SET_CLASSES);
            lb[i] = (uint8_t)k;
            for (int y = 0; y < SIDE; y++)
                for (int x = 0; x < SIDE; x++) {
                    int q = (y >= SIDE / 2) * 2 + (x >= SIDE / 2);
                    px[(i * SIDE + y) * SIDE + x] =
                        (uint8_t)((q == k ? 160 : 40) + tu_next(&s) % 64);
                }
        }
        nomul_idx a = {NOMUL_IDX_U8, 3, {n, SIDE, SIDE}, n * SIDE * SIDE, 1, px};
        nomul_idx b = {NOMUL_IDX_U8, 1, {n}, n, 1, lb};
        rc = nomul_idx_write(images, &a, gzip) || nomul_idx_write(labels, &b, 0) ? -1 : 0;
    }
    free(px);
    free(lb);
    return rc;
}

char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = 0;
    if (len)
        *len = (size_t)n;
    return buf;
}

void tu_write_reversal_set(unsigned long long seed)
{
    tu_rng r = {seed};
    static const char *const split[3] = {"train", "valid", "test"};
    const int count[3] = {120, 16, 12};
    for (int k = 0; k < 3; k++) {
        char sp[64], tp[64];
        snprintf(sp, sizeof sp, "%s.src", split[k]);
        snprintf(tp, sizeof tp, "%s.tgt", split[k]);
        FILE *fs = fopen(tu_path(sp), "w"), *ft = fopen(tu_path(tp), "w");
        assert_non_null(fs);
        assert_non_null(ft);
        for (int i = 0; i < count[k]; i++) {
            int n = 3 + (int)(tu_next(&r) % 4), w[8];
            for (int j = 0; j < n; j++)
                w[j] = (int)(tu_next(&r) % 12);
            for (int j = 0; j < n; j++)
                fprintf(fs, "%sw%d", j ? " " : "", w[j]);
            for (int j = 0; j < n; j++)
                fprintf(ft, "%sw%d", j ? " " : "", w[n - 1 - j]);
            fputc('\n', fs);
            fputc('\n', ft);
        }
        fclose(fs);
        fclose(ft);
    }
    FILE *d = fopen(tu_path("dict.txt"), "w");
    assert_non_null(d);
    for (int j = 0; j < 12; j++)
        fprintf(d, "w%d %d\n", j, 100 - j);
    fclose(d);
}

/* NOMUL_TEST_FILTER=pattern runs only the matching tests of a program, and
 * NOMUL_TEST_SKIP=pattern skips the matching ones (cmocka's patterns: * and ?
 * wildcards), e.g. one slow test under valgrind */
__attribute__((constructor)) static void tu_test_filter(void)
{
    const char *f = getenv("NOMUL_TEST_FILTER"), *k = getenv("NOMUL_TEST_SKIP");
    if (f && *f)
        cmocka_set_test_filter(f);
    if (k && *k)
        cmocka_set_skip_filter(k);
}
