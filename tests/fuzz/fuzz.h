/*
 * fuzz.h — what the libFuzzer harnesses share: errors silenced (a harness
 * looks for crashes, leaks, undefined behaviour and slowness, not for
 * messages), a private temporary folder removed at exit, the fuzzer's bytes
 * written where a reader wants a path, and the bytes cut into parts and
 * lines. Each harness is tests/fuzz/fuzz_READER.c; `make fuzz` builds and
 * runs them (tests/fuzz/run.sh).
 */
#ifndef NOMUL_FUZZ_H
#define NOMUL_FUZZ_H

#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nomul/nomul.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fz_root[64];

static inline void fz_quiet(nomul_status status, const char *message)
{
    (void)status;
    (void)message;
}

static inline int fz_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Empties (or removes, with keep_root 0) a folder tree. */
static inline void fz_rm_tree(const char *dir)
{
    nftw(dir, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fz_cleanup(void)
{
    if (fz_root[0])
        fz_rm_tree(fz_root);
}

/* The private folder, made on first use. */
static inline const char *fz_dir(void)
{
    if (!fz_root[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fz_root, sizeof fz_root, "%.40s/nomul-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_root))
            abort();
        atexit(fz_cleanup);
        nomul_set_error_handler(fz_quiet);
    }
    return fz_root;
}

/* NAME inside the private folder (eight results stay valid at a time). */
static inline const char *fz_path(const char *name)
{
    static char buf[8][256];
    static int at;
    char *b = buf[at++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", fz_dir(), name);
    return b;
}

static inline void fz_write(const char *path, const uint8_t *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(d, 1, n, f) != n))
        abort();
    fclose(f);
}

/* A NUL-terminated copy (malloc'd). */
static inline char *fz_string(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, d, n);
    s[n] = 0;
    return s;
}

/* Cuts d at the first "\n\n" (or the end): *n1 bytes, then the rest after
 * the separator. */
static inline void fz_split(const uint8_t *d, size_t n, size_t *n1, const uint8_t **rest, size_t *n2)
{
    const uint8_t *p = d;
    while (p + 1 < d + n && !(p[0] == '\n' && p[1] == '\n'))
        p++;
    if (p + 1 < d + n) {
        *n1 = (size_t)(p - d);
        *rest = p + 2;
        *n2 = n - *n1 - 2;
    } else {
        *n1 = n;
        *rest = d + n;
        *n2 = 0;
    }
}

/* The lines of s (split in place at '\n'); their count, at most max. */
static inline int fz_lines(char *s, char **lines, int max)
{
    int k = 0;
    for (char *p = s; k < max;) {
        lines[k++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = 0;
        p = nl + 1;
    }
    return k;
}

#endif
