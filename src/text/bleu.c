/*
 * bleu.c — corpus BLEU as sacreBLEU computes it by default (nomul/text.h):
 * the 13a tokenizer of mteval-v13a.pl, n-grams up to 4 clipped by the
 * largest count in any reference, the closest reference length (the
 * shorter on a tie) for the brevity penalty, and "exp" smoothing of
 * n-gram orders without a match.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/text.h"

/* ---- the 13a tokenizer ------------------------------------------------------ */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The ASCII punctuation mteval-v13a splits off: {-~ [-` space-& (-+ :-@ / */
static int is_split(unsigned char c)
{
    return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
           (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

/* Makes *buf hold at least n bytes (its content is not kept). On failure
 * frees *buf and the two other buffers of the tokenizer and reports. */
static int grow(char **buf, size_t n, char *other1, char *other2)
{
    char *nb = realloc(*buf, n);
    if (!nb) {
        free(*buf);
        *buf = NULL;
        free(other1);
        free(other2);
        nomul_report(NOMUL_ENOMEM, "nomul_tokenize_13a: out of memory");
        return -1;
    }
    *buf = nb;
    return 0;
}

char *nomul_tokenize_13a(const char *line)
{
    size_t n = strlen(line);
    /* unescape the four entities, join "-\n", turn newlines into spaces
     * (a: at most n + 2 bytes); then the punctuation step, which turns one
     * character into at most three (out: 3 (n + 2) + 1) */
    char *a = malloc(n + 3), *out = malloc(3 * n + 8);
    if (!a || !out) {
        free(a);
        free(out);
        nomul_report(NOMUL_ENOMEM, "nomul_tokenize_13a: out of memory");
        return NULL;
    }
    size_t k = 0;
    a[k++] = ' ';
    for (size_t i = 0; i < n;) {
        static const struct {
            const char *from;
            char to;
        } ent[] = {{"&quot;", '"'}, {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}};
        int done = 0;
        for (size_t e = 0; e < 4 && !done; e++) {
            size_t el = strlen(ent[e].from);
            if (!strncmp(line + i, ent[e].from, el)) {
                a[k++] = ent[e].to;
                i += el;
                done = 1;
            }
        }
        if (done)
            continue;
        if (!strncmp(line + i, "<skipped>", 9)) {
            i += 9;
            continue;
        }
        if (line[i] == '-' && line[i + 1] == '\n') {
            i += 2;
            continue;
        }
        a[k++] = line[i] == '\n' ? ' ' : line[i];
        i++;
    }
    a[k++] = ' ';
    a[k] = 0;
    /* the three substitutions, each over the whole line in turn, as the regexes do */
    size_t o = 0;
    for (size_t i = 0; i < k; i++) { /* punctuation */
        unsigned char c = (unsigned char)a[i];
        if (is_split(c) && c != ' ') {
            out[o++] = ' ';
            out[o++] = (char)c;
            out[o++] = ' ';
        } else
            out[o++] = (char)c;
    }
    out[o] = 0;
    /* Each of the next three substitutions turns two characters into at
     * most four, so its output needs twice its input: every destination is
     * sized from the length of the step before it. */
    char *b = NULL;
    size_t q = 0;
    if (grow(&b, 2 * o + 8, a, out))
        return NULL;
    /* periods and commas unless preceded by a digit: ([^0-9])([\.,]) → "\1 \2 " */
    for (size_t i = 0; i < o; i++) {
        char c = out[i];
        if (i + 1 < o && !is_digit((unsigned char)c) && (out[i + 1] == '.' || out[i + 1] == ',')) {
            b[q++] = c;
            b[q++] = ' ';
            b[q++] = out[i + 1];
            b[q++] = ' ';
            i++; /* the match consumed both characters */
        } else
            b[q++] = c;
    }
    /* ... unless followed by a digit: ([\.,])([^0-9]) → " \1 \2" */
    if (grow(&out, 2 * q + 8, a, b))
        return NULL;
    o = 0;
    for (size_t i = 0; i < q; i++) {
        char c = b[i];
        if ((c == '.' || c == ',') && i + 1 < q && !is_digit((unsigned char)b[i + 1])) {
            out[o++] = ' ';
            out[o++] = c;
            out[o++] = ' ';
            out[o++] = b[i + 1];
            i++;
        } else
            out[o++] = c;
    }
    /* dashes after a digit: ([0-9])(-) → "\1 \2 " */
    if (grow(&b, 2 * o + 8, a, out))
        return NULL;
    q = 0;
    for (size_t i = 0; i < o; i++) {
        char c = out[i];
        if (is_digit((unsigned char)c) && i + 1 < o && out[i + 1] == '-') {
            b[q++] = c;
            b[q++] = ' ';
            b[q++] = '-';
            b[q++] = ' ';
            i++;
        } else
            b[q++] = c;
    }
    if (grow(&out, q + 1, a, b))
        return NULL;
    /* collapse runs of spaces, strip the ends */
    o = 0;
    for (size_t i = 0; i < q; i++) {
        if (b[i] == ' ' && (o == 0 || out[o - 1] == ' '))
            continue;
        out[o++] = b[i];
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = 0;
    free(a);
    free(b);
    return out;
}

/* ---- n-gram statistics ------------------------------------------------------- */

typedef struct {
    const char *const *tok;
    int n;
} tokens;

/* Splits a tokenized line on spaces, in place. */
static int split(char *s, const char ***out)
{
    int cap = 16, n = 0;
    const char **t = malloc(sizeof *t * (size_t)cap);
    for (char *save = NULL, *w = t ? strtok_r(s, " ", &save) : NULL; w;
         w = strtok_r(NULL, " ", &save)) {
        if (n == cap) {
            const char **nt = realloc(t, sizeof *t * (size_t)(cap *= 2));
            if (!nt) {
                free(t);
                return -1;
            }
            t = nt;
        }
        t[n++] = w;
    }
    *out = t;
    return t ? n : -1;
}

static int ngram_eq(const char *const *a, const char *const *b, int k)
{
    for (int i = 0; i < k; i++)
        if (strcmp(a[i], b[i]))
            return 0;
    return 1;
}

/* Occurrences of the k-gram at g in t (n tokens). Quadratic, which sentence
 * lengths make cheap. */
static int count_in(const char *const *g, int k, const char *const *t, int n)
{
    int c = 0;
    for (int i = 0; i + k <= n; i++)
        c += ngram_eq(g, t + i, k);
    return c;
}

int nomul_bleu(const char *const *hyps, const char *const *const *refs, int nrefs, long n,
               nomul_bleu_result *r)
{
    memset(r, 0, sizeof *r);
    for (long s = 0; s < n; s++) {
        char *h = nomul_tokenize_13a(hyps[s]);
        char *rt[16];
        const char **ht = NULL, **rtok[16] = {0};
        int hn, rn[16] = {0}, ok = h != NULL && nrefs >= 1 && nrefs <= 16;
        for (int j = 0; j < nrefs && j < 16; j++)
            ok &= (rt[j] = nomul_tokenize_13a(refs[j][s])) != NULL;
        if (!ok) {
            free(h);
            nomul_report(NOMUL_EINVAL, "nomul_bleu: want 1 to 16 references (or out of memory)");
            return -1;
        }
        hn = split(h, &ht);
        for (int j = 0; j < nrefs; j++)
            rn[j] = split(rt[j], &rtok[j]);
        /* the closest reference length; the shorter on a tie */
        int best = rn[0];
        for (int j = 1; j < nrefs; j++)
            if (abs(rn[j] - hn) < abs(best - hn) || (abs(rn[j] - hn) == abs(best - hn) && rn[j] < best))
                best = rn[j];
        r->hyp_len += hn;
        r->ref_len += best;
        for (int k = 1; k <= 4; k++) {
            r->totals[k - 1] += hn >= k ? hn - k + 1 : 0;
            for (int i = 0; i + k <= hn; i++) {
                int first = 1; /* count each distinct n-gram once, at its first place */
                for (int p = 0; p < i && first; p++)
                    first = !ngram_eq(ht + p, ht + i, k);
                if (!first)
                    continue;
                int mine = count_in(ht + i, k, ht, hn), most = 0;
                for (int j = 0; j < nrefs; j++) {
                    int c = count_in(ht + i, k, rtok[j], rn[j]);
                    most = c > most ? c : most;
                }
                r->matches[k - 1] += mine < most ? mine : most;
            }
        }
        free(ht);
        free(h);
        for (int j = 0; j < nrefs; j++) {
            free(rtok[j]);
            free(rt[j]);
        }
    }
    double smooth = 1.0, logsum = 0.0;
    for (int k = 0; k < 4; k++) {
        if (r->totals[k] == 0) {
            r->precision[k] = 0.0;
            logsum += -9999999999.0;
            continue;
        }
        if (r->matches[k] == 0) {
            smooth *= 2.0;
            r->precision[k] = 100.0 / (smooth * (double)r->totals[k]);
        } else
            r->precision[k] = 100.0 * (double)r->matches[k] / (double)r->totals[k];
        logsum += log(r->precision[k]);
    }
    r->bp = r->hyp_len >= r->ref_len ? 1.0
            : r->hyp_len > 0         ? exp(1.0 - (double)r->ref_len / (double)r->hyp_len)
                                     : 0.0;
    r->score = r->bp * exp(logsum / 4.0);
    return 0;
}
