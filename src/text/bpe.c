/*
 * bpe.c — byte-pair encoding as subword-nmt learns and applies it
 * (nomul/text.h): words are split into characters (UTF-8 code points), the
 * last one marked with "</w>"; each merge joins the most frequent adjacent
 * pair (ties: the pair whose symbols compare greatest, as Python's max over
 * (count, pair) picks); merges files carry subword-nmt's "#version: 0.2"
 * header and one "A B" line per merge. Applying merges the lowest-ranked
 * pair present until none is, and marks every subword but a word's last
 * with "@@".
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

/* ---- interned symbols ------------------------------------------------------- */

typedef struct {
    char **str;
    int n, cap;
    int *slot; /* open addressing: index + 1, 0 empty */
    size_t scap;
} symtab;

static uint64_t hash_str(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static int sym_find(symtab *t, const char *s, size_t n, int add)
{
    if (add && 2 * ((size_t)t->n + 1) > t->scap) {
        size_t nc = t->scap ? 2 * t->scap : 1024;
        int *ns = calloc(nc, sizeof *ns);
        if (!ns)
            return -1;
        for (int i = 0; i < t->n; i++) {
            size_t j = hash_str(t->str[i], strlen(t->str[i])) & (nc - 1);
            while (ns[j])
                j = (j + 1) & (nc - 1);
            ns[j] = i + 1;
        }
        free(t->slot);
        t->slot = ns;
        t->scap = nc;
    }
    if (!t->scap)
        return -1;
    size_t j = hash_str(s, n) & (t->scap - 1);
    while (t->slot[j]) {
        const char *c = t->str[t->slot[j] - 1];
        if (strlen(c) == n && !memcmp(c, s, n))
            return t->slot[j] - 1;
        j = (j + 1) & (t->scap - 1);
    }
    if (!add)
        return -1;
    if (t->n == t->cap) {
        int nc = t->cap ? 2 * t->cap : 1024;
        char **ns = realloc(t->str, sizeof *ns * (size_t)nc);
        if (!ns)
            return -1;
        t->str = ns;
        t->cap = nc;
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, n);
    copy[n] = 0;
    t->str[t->n] = copy;
    t->slot[j] = t->n + 1;
    return t->n++;
}

static void sym_free(symtab *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->str[i]);
    free(t->str);
    free(t->slot);
}

/* ---- pair → value maps --------------------------------------------------------- */

typedef struct {
    uint64_t *key; /* (a + 1) << 32 | (b + 1); 0 empty */
    long *val;
    size_t cap, n;
} pairmap;

static long *pair_at(pairmap *m, int a, int b, int add)
{
    uint64_t k = (uint64_t)(a + 1) << 32 | (uint32_t)(b + 1);
    if (add && 2 * (m->n + 1) > m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 4096;
        uint64_t *nk = calloc(nc, sizeof *nk);
        long *nv = calloc(nc, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return NULL;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i]) {
                size_t j = nomul_mix64(m->key[i]) & (nc - 1);
                while (nk[j])
                    j = (j + 1) & (nc - 1);
                nk[j] = m->key[i];
                nv[j] = m->val[i];
            }
        free(m->key);
        free(m->val);
        m->key = nk;
        m->val = nv;
        m->cap = nc;
    }
    if (!m->cap)
        return NULL;
    size_t j = nomul_mix64(k) & (m->cap - 1);
    while (m->key[j]) {
        if (m->key[j] == k)
            return &m->val[j];
        j = (j + 1) & (m->cap - 1);
    }
    if (!add)
        return NULL;
    m->key[j] = k;
    m->val[j] = 0;
    m->n++;
    return &m->val[j];
}

static void pairmap_free(pairmap *m)
{
    free(m->key);
    free(m->val);
}

struct nomul_bpe {
    symtab sym;
    int nmerges;
    int *left, *right, *joined; /* merge r joins left[r] right[r] into joined[r] */
    pairmap rank;               /* pair → rank */
};

void nomul_bpe_free(nomul_bpe *b)
{
    if (!b)
        return;
    sym_free(&b->sym);
    free(b->left);
    free(b->right);
    free(b->joined);
    pairmap_free(&b->rank);
    free(b);
}

int nomul_bpe_merges(const nomul_bpe *b) { return b->nmerges; }

/* A word as symbols: its code points, the last with "</w>". */
static int word_symbols(symtab *t, const char *w, size_t n, int *out)
{
    int k = 0;
    char buf[16];
    for (size_t i = 0; i < n;) {
        size_t len = 1;
        unsigned char c = (unsigned char)w[i];
        if (c >= 0xF0)
            len = 4;
        else if (c >= 0xE0)
            len = 3;
        else if (c >= 0xC0)
            len = 2;
        if (i + len > n)
            len = n - i;
        int last = i + len == n;
        memcpy(buf, w + i, len);
        if (last)
            memcpy(buf + len, "</w>", 4);
        int id = sym_find(t, buf, len + (last ? 4 : 0), 1);
        if (id < 0)
            return -1;
        out[k++] = id;
        i += len;
    }
    return k;
}

static int add_merge(nomul_bpe *b, int l, int r)
{
    if ((b->nmerges & (b->nmerges - 1)) == 0) { /* grow at powers of two */
        int cap = b->nmerges ? 2 * b->nmerges : 256;
        int *nl = realloc(b->left, sizeof *nl * (size_t)cap);
        if (nl)
            b->left = nl;
        int *nr = realloc(b->right, sizeof *nr * (size_t)cap);
        if (nr)
            b->right = nr;
        int *nj = realloc(b->joined, sizeof *nj * (size_t)cap);
        if (nj)
            b->joined = nj;
        if (!nl || !nr || !nj)
            return -1;
    }
    const char *ls = b->sym.str[l], *rs = b->sym.str[r];
    size_t ln = strlen(ls), rn = strlen(rs);
    char *j = malloc(ln + rn + 1);
    if (!j)
        return -1;
    memcpy(j, ls, ln);
    memcpy(j + ln, rs, rn + 1);
    int id = sym_find(&b->sym, j, ln + rn, 1);
    free(j);
    long *rank = pair_at(&b->rank, l, r, 1);
    if (id < 0 || !rank)
        return -1;
    *rank = b->nmerges;
    b->left[b->nmerges] = l;
    b->right[b->nmerges] = r;
    b->joined[b->nmerges] = id;
    b->nmerges++;
    return 0;
}

typedef struct {
    int *s, n; /* symbols */
    long count;
} bword;

/* Adds sign · count for every adjacent pair of w. */
static int count_pairs(pairmap *stats, const bword *w, long sign)
{
    for (int i = 0; i + 1 < w->n; i++) {
        long *v = pair_at(stats, w->s[i], w->s[i + 1], 1);
        if (!v)
            return -1;
        *v += sign * w->count;
    }
    return 0;
}

nomul_bpe *nomul_bpe_learn(const char *const *lines, long n, int merges, int min_freq)
{
    nomul_bpe *b = calloc(1, sizeof *b);
    symtab words = {0};
    long *wcount = NULL;
    long wcap = 0;
    bword *w = NULL;
    pairmap stats = {0};
    if (!b)
        goto oom;
    /* word frequencies */
    for (long i = 0; i < n; i++) {
        const char *p = lines[i];
        long bad = nomul_utf8_invalid_at((const unsigned char *)p, strlen(p));
        if (bad >= 0) { /* merges of broken characters would make an unreadable file */
            nomul_report(NOMUL_EFORMAT, "nomul_bpe_learn: line %ld: invalid UTF-8 at byte %ld",
                         i + 1, bad + 1);
            goto fail;
        }
        while (*p) {
            while (*p == ' ' || *p == '\t')
                p++;
            const char *e = p;
            while (*e && *e != ' ' && *e != '\t')
                e++;
            if (e > p) {
                int id = sym_find(&words, p, (size_t)(e - p), 1);
                if (id < 0)
                    goto oom;
                if (id >= wcap) {
                    long nc = wcap ? 2 * wcap : 4096;
                    long *nw = realloc(wcount, sizeof *nw * (size_t)nc);
                    if (!nw)
                        goto oom;
                    memset(nw + wcap, 0, sizeof *nw * (size_t)(nc - wcap));
                    wcount = nw;
                    wcap = nc;
                }
                wcount[id]++;
            }
            p = e;
        }
    }
    w = calloc((size_t)words.n + 1, sizeof *w);
    if (!w)
        goto oom;
    for (int i = 0; i < words.n; i++) {
        size_t len = strlen(words.str[i]);
        if (!(w[i].s = malloc(sizeof(int) * (len + 1))))
            goto oom;
        w[i].n = word_symbols(&b->sym, words.str[i], len, w[i].s);
        w[i].count = wcount[i];
        if (w[i].n < 0 || count_pairs(&stats, &w[i], 1))
            goto oom;
    }
    for (int m = 0; m < merges; m++) {
        /* the most frequent pair; ties to the greatest (left, right) strings */
        long best = 0;
        int bl = -1, br = -1;
        for (size_t j = 0; j < stats.cap; j++) {
            if (!stats.key[j] || stats.val[j] <= 0 || stats.val[j] < best)
                continue;
            int l = (int)(stats.key[j] >> 32) - 1, r = (int)(uint32_t)stats.key[j] - 1;
            if (stats.val[j] > best) {
                best = stats.val[j];
                bl = l;
                br = r;
                continue;
            }
            int c = strcmp(b->sym.str[l], b->sym.str[bl]);
            if (c > 0 || (c == 0 && strcmp(b->sym.str[r], b->sym.str[br]) > 0)) {
                bl = l;
                br = r;
            }
        }
        if (bl < 0 || best < min_freq)
            break;
        if (add_merge(b, bl, br))
            goto oom;
        const int joined = b->joined[b->nmerges - 1];
        for (int i = 0; i < words.n; i++) {
            bword *x = &w[i];
            int has = 0;
            for (int k = 0; k + 1 < x->n && !has; k++)
                has = x->s[k] == bl && x->s[k + 1] == br;
            if (!has)
                continue;
            if (count_pairs(&stats, x, -1))
                goto oom;
            int o = 0;
            for (int k = 0; k < x->n; k++) {
                if (k + 1 < x->n && x->s[k] == bl && x->s[k + 1] == br) {
                    x->s[o++] = joined;
                    k++;
                } else
                    x->s[o++] = x->s[k];
            }
            x->n = o;
            if (count_pairs(&stats, x, 1))
                goto oom;
        }
    }
    for (int i = 0; i < words.n; i++)
        free(w[i].s);
    free(w);
    free(wcount);
    sym_free(&words);
    pairmap_free(&stats);
    return b;
oom:
    nomul_report(NOMUL_ENOMEM, "nomul_bpe_learn: out of memory");
fail:
    for (int i = 0; w && i < words.n; i++)
        free(w[i].s);
    free(w);
    free(wcount);
    sym_free(&words);
    pairmap_free(&stats);
    nomul_bpe_free(b);
    return NULL;
}

int nomul_bpe_save(const nomul_bpe *b, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        nomul_report(NOMUL_EIO, "cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "#version: 0.2\n");
    for (int m = 0; m < b->nmerges; m++)
        fprintf(f, "%s %s\n", b->sym.str[b->left[m]], b->sym.str[b->right[m]]);
    if (ferror(f) | fclose(f)) {
        nomul_report(NOMUL_EIO, "writing '%s' failed", path);
        return -1;
    }
    return 0;
}

nomul_bpe *nomul_bpe_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        nomul_report(NOMUL_EIO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        nomul_report(NOMUL_EIO, "'%s' is a folder, not a merges file", path);
        fclose(f);
        return NULL;
    }
    nomul_bpe *b = calloc(1, sizeof *b);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0;
    int crlf = 0;
    while (b && (len = getline(&line, &cap, f)) >= 0) {
        no++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        /* a CRLF file (told by its first line) loses its CRs, as subword-nmt
         * strips them; in an LF file a CR ends a symbol that was learnt */
        if (no == 1)
            crlf = len > 0 && line[len - 1] == '\r';
        if (crlf && len > 0 && line[len - 1] == '\r')
            line[--len] = 0;
        if (memchr(line, 0, (size_t)len)) {
            nomul_report(NOMUL_EFORMAT, "%s:%ld: a NUL byte in the line", path, no);
            goto fail;
        }
        long bad = nomul_utf8_invalid_at((const unsigned char *)line, (size_t)len);
        if (bad >= 0) {
            nomul_report(NOMUL_EFORMAT, "%s:%ld: invalid UTF-8 at byte %ld of the line", path, no,
                         bad + 1);
            goto fail;
        }
        if (no == 1 && !strncmp(line, "#version", 8)) {
            /* subword-nmt writes "#version: 0.2"; 0.1 marks word ends otherwise */
            if (strcmp(line, "#version: 0.2")) {
                nomul_report(NOMUL_EFORMAT, "%s:1: '%.40s': nomul reads subword-nmt's "
                                            "\"#version: 0.2\" merges only",
                             path, line);
                goto fail;
            }
            continue;
        }
        char *sp = strchr(line, ' ');
        if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' ')) {
            nomul_report(NOMUL_EFORMAT, "%s:%ld: not a merge 'A B'", path, no);
            goto fail;
        }
        int l = sym_find(&b->sym, line, (size_t)(sp - line), 1);
        int r = sym_find(&b->sym, sp + 1, strlen(sp + 1), 1);
        if (l < 0 || r < 0 || add_merge(b, l, r)) {
            nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", path);
            goto fail;
        }
    }
    if (!b) {
        nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", path);
        goto fail;
    }
    if (ferror(f)) {
        nomul_report(NOMUL_EIO, "cannot read '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (b->nmerges == 0) {
        nomul_report(NOMUL_EFORMAT, "%s: no merges (an empty file?)", path);
        goto fail;
    }
    free(line);
    fclose(f);
    return b;
fail:
    free(line);
    fclose(f);
    nomul_bpe_free(b);
    return NULL;
}

char *nomul_bpe_apply(nomul_bpe *b, const char *line)
{
    size_t n = strlen(line), cap = 2 * n + 16, o = 0;
    long bad = nomul_utf8_invalid_at((const unsigned char *)line, n);
    if (bad >= 0) {
        nomul_report(NOMUL_EFORMAT, "invalid UTF-8 at byte %ld of the line", bad + 1);
        return NULL;
    }
    char *out = malloc(cap);
    int *s = malloc(sizeof(int) * (n + 1));
    if (!out || !s) {
        free(out);
        free(s);
        nomul_report(NOMUL_ENOMEM, "nomul_bpe_apply: out of memory");
        return NULL;
    }
    const char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\t')
            e++;
        if (e == p)
            break;
        int k = word_symbols(&b->sym, p, (size_t)(e - p), s);
        if (k < 0) {
            free(out);
            free(s);
            nomul_report(NOMUL_ENOMEM, "nomul_bpe_apply: out of memory");
            return NULL;
        }
        for (;;) { /* merge the lowest-ranked pair everywhere, left to right */
            long best = -1;
            for (int i = 0; i + 1 < k; i++) {
                long *r = pair_at(&b->rank, s[i], s[i + 1], 0);
                if (r && (best < 0 || *r < best))
                    best = *r;
            }
            if (best < 0)
                break;
            int l = b->left[best], r = b->right[best], j = 0;
            for (int i = 0; i < k; i++) {
                if (i + 1 < k && s[i] == l && s[i + 1] == r) {
                    s[j++] = b->joined[best];
                    i++;
                } else
                    s[j++] = s[i];
            }
            k = j;
        }
        for (int i = 0; i < k; i++) {
            const char *sym = b->sym.str[s[i]];
            size_t sl = strlen(sym);
            if (sl >= 4 && !strcmp(sym + sl - 4, "</w>"))
                sl -= 4;
            if (o + sl + 4 >= cap) {
                char *no = realloc(out, cap = 2 * cap + sl + 8);
                if (!no) {
                    free(out);
                    free(s);
                    nomul_report(NOMUL_ENOMEM, "nomul_bpe_apply: out of memory");
                    return NULL;
                }
                out = no;
            }
            if (o > 0)
                out[o++] = ' ';
            memcpy(out + o, sym, sl);
            o += sl;
            if (i + 1 < k) {
                memcpy(out + o, "@@", 2);
                o += 2;
            }
        }
        p = e;
    }
    out[o] = 0;
    free(s);
    return out;
}

void nomul_bpe_remove(char *line)
{
    char *o = line;
    for (char *p = line; *p;) {
        if (p[0] == '@' && p[1] == '@' && (p[2] == ' ' || p[2] == 0)) {
            p += p[2] ? 3 : 2;
            continue;
        }
        *o++ = *p++;
    }
    *o = 0;
}
