/*
 * batch.c — vocabularies in fairseq's dict.txt format and batches by a
 * token budget, as fairseq's --max-tokens makes them (nomul/text.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/text.h"
#include "text_internal.h"

struct nomul_vocab {
    char **tok;
    int n;
    int *slot; /* open addressing: id + 1 */
    size_t cap;
};

static uint64_t fnv(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Adds s as the next id: 0, 1 if s is there already (unless overwrite:
 * then, as fairseq's "#fairseq:overwrite", the new id is added and s looks
 * up to it from now on), -1 out of memory. */
static int vocab_add(nomul_vocab *v, const char *s, int overwrite)
{
    if (2 * ((size_t)v->n + 1) > v->cap) {
        size_t nc = v->cap ? 2 * v->cap : 1024;
        int *ns = calloc(nc, sizeof *ns);
        if (!ns)
            return -1;
        for (int i = 0; i < v->n; i++) { /* a later id of the same token wins */
            size_t j = fnv(v->tok[i]) & (nc - 1);
            while (ns[j] && strcmp(v->tok[ns[j] - 1], v->tok[i]))
                j = (j + 1) & (nc - 1);
            ns[j] = i + 1;
        }
        free(v->slot);
        v->slot = ns;
        v->cap = nc;
    }
    const int old = nomul_vocab_id(v, s);
    if (old >= 0 && !overwrite)
        return 1; /* a duplicate */
    if ((v->n & (v->n - 1)) == 0) {
        char **nt = realloc(v->tok, sizeof *nt * (size_t)(v->n ? 2 * v->n : 8));
        if (!nt)
            return -1;
        v->tok = nt;
    }
    if (!(v->tok[v->n] = strdup(s)))
        return -1;
    size_t j = fnv(s) & (v->cap - 1);
    while (v->slot[j] && v->slot[j] - 1 != old)
        j = (j + 1) & (v->cap - 1);
    v->slot[j] = ++v->n;
    return 0;
}

int nomul_vocab_id(const nomul_vocab *v, const char *s)
{
    if (!v->cap)
        return -1;
    size_t j = fnv(s) & (v->cap - 1);
    while (v->slot[j]) {
        if (!strcmp(v->tok[v->slot[j] - 1], s))
            return v->slot[j] - 1;
        j = (j + 1) & (v->cap - 1);
    }
    return -1;
}

void nomul_vocab_free(nomul_vocab *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->slot);
    free(v);
}

nomul_vocab *nomul_vocab_load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        nomul_report(NOMUL_EIO, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    nomul_vocab *v = calloc(1, sizeof *v);
    static const char *const specials[4] = {"<s>", "<pad>", "</s>", "<unk>"};
    for (int i = 0; v && i < 4; i++)
        if (vocab_add(v, specials[i], 0)) {
            nomul_vocab_free(v);
            v = NULL;
        }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0;
    while (v && (len = getline(&line, &cap, f)) >= 0) {
        no++;
        const char *why = NULL;
        long bad = nomul_utf8_invalid_at((const unsigned char *)line, (size_t)len);
        if (memchr(line, 0, (size_t)len))
            why = "a NUL byte in the line";
        else if (bad >= 0) {
            nomul_report(NOMUL_EFORMAT, "%s:%ld: invalid UTF-8 at byte %ld of the line", path, no,
                         bad + 1);
            goto fail;
        }
        /* as fairseq: trailing white space (a CRLF's CR too) stripped, then
         * "TOKEN COUNT", or "TOKEN COUNT #fairseq:overwrite" */
        while (len > 0 && strchr(" \t\r\n\v\f", line[len - 1]))
            line[--len] = 0;
        char *sp = strrchr(line, ' '), *end = NULL;
        int overwrite = 0;
        if (!why && sp && !strcmp(sp + 1, "#fairseq:overwrite")) {
            overwrite = 1;
            *sp = 0;
            sp = strrchr(line, ' ');
        }
        errno = 0;
        long count = sp ? strtol(sp + 1, &end, 10) : -1;
        if (why)
            ;
        else if (!sp || sp == line || !sp[1] || *end || count < 0)
            why = "not 'TOKEN COUNT' (fairseq's dict.txt)";
        else if (errno == ERANGE)
            why = "the count is out of range";
        if (why) {
            nomul_report(NOMUL_EFORMAT, "%s:%ld: %s", path, no, why);
            goto fail;
        }
        *sp = 0;
        int r = vocab_add(v, line, overwrite);
        if (r < 0) {
            nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", path);
            goto fail;
        } else if (r == 1) {
            nomul_report(NOMUL_EFORMAT,
                         "%s:%ld: the token '%s' again (fairseq's '#fairseq:overwrite' after the "
                         "count allows it)",
                         path, no, line);
            goto fail;
        }
    }
    if (v && ferror(f)) {
        nomul_report(NOMUL_EIO, "cannot read '%s': %s", path, strerror(errno));
        goto fail;
    }
    free(line);
    fclose(f);
    return v;
fail:
    free(line);
    fclose(f);
    nomul_vocab_free(v);
    return NULL;
}

int nomul_vocab_size(const nomul_vocab *v) { return v->n; }
const char *nomul_vocab_token(const nomul_vocab *v, int id)
{
    return id >= 0 && id < v->n ? v->tok[id] : "<unk>";
}

int nomul_vocab_encode(const nomul_vocab *v, const char *line, int *ids, int max)
{
    int n = 0;
    char *copy = strdup(line);
    if (!copy) {
        nomul_report(NOMUL_ENOMEM, "nomul_vocab_encode: out of memory");
        return -1;
    }
    for (char *save = NULL, *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (n + 1 >= max) { /* room for eos */
            free(copy);
            nomul_report(NOMUL_EINVAL, "nomul_vocab_encode: more than %d tokens", max - 1);
            return -1;
        }
        int id = nomul_vocab_id(v, w);
        ids[n++] = id >= 0 ? id : NOMUL_UNK;
    }
    free(copy);
    ids[n++] = NOMUL_EOS;
    return n;
}

/* ---- batches by tokens --------------------------------------------------------- */

static const long *sort_src, *sort_tgt;
static int by_lengths(const void *a, const void *b)
{
    long i = *(const long *)a, j = *(const long *)b;
    if (sort_tgt[i] != sort_tgt[j])
        return sort_tgt[i] < sort_tgt[j] ? -1 : 1;
    if (sort_src[i] != sort_src[j])
        return sort_src[i] < sort_src[j] ? -1 : 1;
    return i < j ? -1 : i > j; /* stable */
}

long nomul_token_batches(const long *src_len, const long *tgt_len, long n, long max_tokens,
                         long **starts, long **order)
{
    long *idx = malloc(sizeof *idx * (size_t)(n ? n : 1));
    long *st = malloc(sizeof *st * (size_t)(n + 1));
    if (!idx || !st) {
        free(idx);
        free(st);
        nomul_report(NOMUL_ENOMEM, "nomul_token_batches: out of memory");
        return -1;
    }
    for (long i = 0; i < n; i++) {
        idx[i] = i;
        long longest = src_len[i] > tgt_len[i] ? src_len[i] : tgt_len[i];
        if (longest > max_tokens) {
            nomul_report(NOMUL_EINVAL, "sentence pair %ld has %ld tokens, more than the budget "
                         "of %ld per batch (raise max_tokens or filter long pairs)", i + 1,
                         longest, max_tokens);
            free(idx);
            free(st);
            return -1;
        }
    }
    /* fairseq orders by target, then source length (a stable sort), then fills
     * batches while (count + 1) · longest stays within the budget */
    sort_src = src_len;
    sort_tgt = tgt_len;
    qsort(idx, (size_t)n, sizeof *idx, by_lengths);
    long nb = 0, longest = 0, count = 0;
    for (long k = 0; k < n; k++) {
        long i = idx[k], l = src_len[i] > tgt_len[i] ? src_len[i] : tgt_len[i];
        long nl = l > longest ? l : longest;
        if (count > 0 && nl * (count + 1) > max_tokens) {
            count = 0;
            nl = l;
        }
        if (count == 0)
            st[nb++] = k;
        longest = nl;
        count++;
    }
    st[nb] = n;
    *starts = st;
    *order = idx;
    return nb;
}

void nomul_shuffle_batches(long nb, uint64_t seed, long epoch, long *perm)
{
    for (long i = 0; i < nb; i++)
        perm[i] = i;
    uint64_t s = nomul_mix64(seed ^ nomul_mix64((uint64_t)epoch));
    for (long i = nb - 1; i > 0; i--) { /* Fisher–Yates */
        long j = (long)(nomul_splitmix64(&s) % (uint64_t)(i + 1));
        long t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
