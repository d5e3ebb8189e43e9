/*
 * corpus.c — parallel text (nomul/text.h): reading a source and a target
 * file of one UTF-8 sentence per line, and building a German–English
 * corpus from Debian's trans-de-en dictionary (Ding format).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/internal.h"
#include "nomul/text.h"
#include "text_internal.h"

/* ---- UTF-8 --------------------------------------------------------------------- */

long nomul_utf8_invalid_at(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else
            return (long)i;
        if (i + len > n)
            return (long)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return (long)i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return (long)i;
        i += len;
    }
    return -1;
}

/* ---- a list of lines ------------------------------------------------------------ */

static int push(char ***v, long *n, long *cap, char *s)
{
    if (*n == *cap) {
        long nc = *cap ? 2 * *cap : 1024;
        char **nv = realloc(*v, sizeof **v * (size_t)nc);
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = s;
    return 0;
}

long nomul_text_read_lines(FILE *f, const char *name, char ***out)
{
    char **v = NULL, *line = NULL;
    long n = 0, cap = 0;
    size_t lcap = 0;
    ssize_t len;
    *out = NULL;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = 0;
        long bad = nomul_utf8_invalid_at((const unsigned char *)line, (size_t)len);
        if (bad >= 0) {
            nomul_report(NOMUL_EFORMAT, "%s:%ld: invalid UTF-8 at byte %ld of the line", name,
                         n + 1, bad + 1);
            goto fail;
        }
        if (memchr(line, 0, (size_t)len)) {
            nomul_report(NOMUL_EFORMAT, "%s:%ld: a NUL byte in the line", name, n + 1);
            goto fail;
        }
        char *copy = strdup(line);
        if (!copy || push(&v, &n, &cap, copy)) {
            free(copy);
            nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", name);
            goto fail;
        }
    }
    if (ferror(f)) {
        nomul_report(NOMUL_EIO, "cannot read '%s': %s", name, strerror(errno));
        goto fail;
    }
    free(line);
    *out = v;
    return n;
fail:
    free(line);
    nomul_text_free_lines(v, n);
    return -1;
}

void nomul_text_free_lines(char **lines, long n)
{
    for (long i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

/* Every line of a UTF-8 text file; -1 after a report naming the file. */
static long read_lines(const char *path, char ***out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        nomul_report(NOMUL_EIO, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    long n = nomul_text_read_lines(f, path, out);
    fclose(f);
    return n;
}

nomul_parallel *nomul_parallel_read(const char *src_path, const char *tgt_path)
{
    char **s = NULL, **t = NULL;
    long ns = read_lines(src_path, &s);
    if (ns < 0)
        return NULL;
    long nt = read_lines(tgt_path, &t);
    if (nt < 0) {
        nomul_text_free_lines(s, ns);
        return NULL;
    }
    if (ns != nt) {
        nomul_report(NOMUL_EFORMAT, "'%s' has %ld lines but '%s' has %ld: a parallel corpus "
                     "pairs line i with line i", src_path, ns, tgt_path, nt);
        nomul_text_free_lines(s, ns);
        nomul_text_free_lines(t, nt);
        return NULL;
    }
    nomul_parallel *p = calloc(1, sizeof *p);
    if (!p) {
        nomul_text_free_lines(s, ns);
        nomul_text_free_lines(t, nt);
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return NULL;
    }
    p->n = ns;
    p->src = s;
    p->tgt = t;
    return p;
}

void nomul_parallel_free(nomul_parallel *p)
{
    if (!p)
        return;
    nomul_text_free_lines(p->src, p->n);
    nomul_text_free_lines(p->tgt, p->n);
    free(p);
}

/* ---- the Ding dictionary ----------------------------------------------------------- */

/* Removes {…}, […], (…) and <…> annotations, collapses spaces, trims, and
 * drops a space left before . , ! or ?. */
static void strip_annotations(char *s)
{
    char *o = s;
    int depth = 0;
    for (char *p = s; *p; p++) {
        if (*p == '{' || *p == '[' || *p == '(' || *p == '<') {
            depth++;
            continue;
        }
        if (depth && (*p == '}' || *p == ']' || *p == ')' || *p == '>')) {
            depth--;
            continue;
        }
        if (depth)
            continue;
        if (*p == ' ' && (o == s || o[-1] == ' '))
            continue;
        if ((*p == '.' || *p == ',' || *p == '!' || *p == '?') && o > s && o[-1] == ' ')
            o--; /* "Test {m}." → "Test." */
        *o++ = *p;
    }
    while (o > s && o[-1] == ' ')
        o--;
    *o = 0;
}

static int words(const char *s)
{
    int n = 0;
    for (const char *p = s; *p; p++)
        n += *p != ' ' && (p == s || p[-1] == ' ');
    return n;
}

/* An uppercase first letter: ASCII, or Latin-1's À–Þ (not ×) in UTF-8. */
static int upper_start(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] >= 'A' && u[0] <= 'Z')
        return 1;
    return u[0] == 0xC3 && u[1] >= 0x80 && u[1] <= 0x9E && u[1] != 0x97;
}

/* The dictionary's placeholders for objects (etw., jdm., sth., sb., ...):
 * phrase patterns, not sentences. */
static int has_placeholder(const char *s)
{
    static const char *const ph[] = {"etw.", "jdm.", "jdn.", "jds.", "sth.", "sb.", "sb's", "jd."};
    for (size_t k = 0; k < sizeof ph / sizeof ph[0]; k++)
        for (const char *p = strstr(s, ph[k]); p; p = strstr(p + 1, ph[k]))
            if (p == s || p[-1] == ' ' || p[-1] == '(' || p[-1] == '/')
                return 1;
    return 0;
}

static int ends_sentence(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && (s[n - 1] == '.' || s[n - 1] == '!' || s[n - 1] == '?');
}

uint64_t nomul_text_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

int nomul_strset_add(nomul_strset *t, const char *s)
{
    if (2 * (t->n + 1) > t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 1 << 14;
        const char **ns = calloc(nc, sizeof *ns);
        if (!ns)
            return -1;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slot[i]) {
                size_t j = nomul_text_hash(t->slot[i]) & (nc - 1);
                while (ns[j])
                    j = (j + 1) & (nc - 1);
                ns[j] = t->slot[i];
            }
        free(t->slot);
        t->slot = ns;
        t->cap = nc;
    }
    size_t j = nomul_text_hash(s) & (t->cap - 1);
    while (t->slot[j]) {
        if (!strcmp(t->slot[j], s))
            return 0; /* present */
        j = (j + 1) & (t->cap - 1);
    }
    t->slot[j] = s;
    t->n++;
    return 1;
}

int nomul_text_mkdirs(const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        nomul_report(NOMUL_EINVAL, "folder name too long: '%s'", dir);
        return -1;
    }
    for (char *q = path + 1;; q++)
        if (*q == '/' || !*q) {
            char was = *q;
            *q = 0;
            if (mkdir(path, 0777) && errno != EEXIST) {
                nomul_report(NOMUL_EIO, "cannot create '%s': %s", path, strerror(errno));
                return -1;
            }
            *q = was;
            if (!was)
                break;
        }
    return 0;
}

static char *split_first(char *s, const char *sep)
{
    char *p = strstr(s, sep);
    if (p)
        *p = 0;
    return s;
}

int nomul_ding_corpus(const char *dict_path, const char *out_dir, long counts[3])
{
    char **lines = NULL;
    long n = read_lines(dict_path, &lines);
    if (n < 0)
        return -1;
    static const char *const part[3] = {"train", "valid", "test"};
    FILE *f[3][2] = {{NULL}};
    char path[4096];
    int rc = -1;
    nomul_strset seen = {NULL, 0, 0};
    char **keep = NULL;
    long nkeep = 0, capkeep = 0;
    counts[0] = counts[1] = counts[2] = 0;
    if (nomul_text_mkdirs(out_dir))
        goto out;
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 2; l++) {
            snprintf(path, sizeof path, "%s/%s.%s", out_dir, part[k], l ? "en" : "de");
            if (!(f[k][l] = fopen(path, "w"))) {
                nomul_report(NOMUL_EIO, "cannot write '%s': %s", path, strerror(errno));
                goto out;
            }
        }
    for (long i = 0; i < n; i++) {
        char *line = lines[i], *sep = strstr(line, " :: ");
        if (line[0] == '#' || !sep)
            continue;
        *sep = 0;
        char *de = line, *en = sep + 4;
        /* alternatives " | " pair up in order; count them on both sides */
        int pd = 1, pe = 1;
        for (char *p = strstr(de, " | "); p; p = strstr(p + 3, " | "))
            pd++;
        for (char *p = strstr(en, " | "); p; p = strstr(p + 3, " | "))
            pe++;
        if (pd != pe)
            continue;
        for (int k = 0; k < pd; k++) {
            char *dn = strstr(de, " | "), *enx = strstr(en, " | ");
            if (dn)
                *dn = 0;
            if (enx)
                *enx = 0;
            char *d = strdup(de), *e = strdup(en);
            if (!d || !e) {
                free(d);
                free(e);
                nomul_report(NOMUL_ENOMEM, "out of memory");
                goto out;
            }
            split_first(d, "; "); /* synonyms are not aligned: the first of each */
            split_first(e, "; ");
            strip_annotations(d);
            strip_annotations(e);
            int ok = upper_start(d) && upper_start(e) && ends_sentence(d) && ends_sentence(e) &&
                     words(d) >= 4 && words(e) >= 4 && words(d) <= 50 && words(e) <= 50 &&
                     !has_placeholder(d) && !has_placeholder(e);
            int fresh = ok ? nomul_strset_add(&seen, d) : 0;
            if (fresh < 0 || (fresh && (push(&keep, &nkeep, &capkeep, d) ||
                                         push(&keep, &nkeep, &capkeep, e)))) {
                nomul_report(NOMUL_ENOMEM, "out of memory");
                goto out;
            }
            if (fresh) {
                /* the split: a hash of the German sentence, 2% test, 2% valid */
                int k3 = (int)(nomul_text_hash(d) % 100);
                int which = k3 < 2 ? 2 : k3 < 4 ? 1 : 0;
                fprintf(f[which][0], "%s\n", d);
                fprintf(f[which][1], "%s\n", e);
                counts[which]++;
            } else {
                free(d);
                free(e);
            }
            if (dn)
                de = dn + 3;
            if (enx)
                en = enx + 3;
        }
    }
    rc = 0;
out:
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 2; l++)
            if (f[k][l] && fclose(f[k][l]) && rc == 0) {
                nomul_report(NOMUL_EIO, "writing into '%s' failed", out_dir);
                rc = -1;
            }
    free(seen.slot);
    nomul_text_free_lines(keep, nkeep);
    nomul_text_free_lines(lines, n);
    return rc;
}
