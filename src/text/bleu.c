/*
 * bleu.c — corpus BLEU as sacreBLEU computes it by default (nomul/text.h):
 * the 13a tokenizer of mteval-v13a.pl, n-grams up to 4 clipped by the
 * largest count in any reference, the closest reference length (the
 * shorter on a tie) for the brevity penalty, and "exp" smoothing of
 * n-gram orders without a match (a score of 0 when no order matches) —
 * sacreBLEU 2.x's semantics (2.0 to 2.4) — and its options -lc and
 * --tokenize none|char. Tokens are split on whitespace as Python's
 * str.split() splits them.
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

/* Replaces every occurrence of from in s by to (not longer), left to right. */
static void replace_all(char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), o = 0;
    for (size_t i = 0; s[i];) {
        if (!strncmp(s + i, from, fl)) {
            memcpy(s + o, to, tl);
            o += tl;
            i += fl;
        } else
            s[o++] = s[i++];
    }
    s[o] = 0;
}

/* The length in bytes of the whitespace character at s as Python's
 * str.isspace() sees it (ASCII \t-\r, U+001C-U+001F, space, U+0085,
 * U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000),
 * or 0 when s does not start with one. */
static size_t space_len(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    if ((s[0] >= 0x09 && s[0] <= 0x0d) || (s[0] >= 0x1c && s[0] <= 0x20))
        return 1;
    if (s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2;
    if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80)
        return 3;
    if (s[0] == 0xe2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3;
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f)
        return 3;
    if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80)
        return 3;
    return 0;
}

/* Python's " ".join(s.split()) in place: runs of whitespace become one
 * space, none at the ends. */
static void collapse_spaces(char *s)
{
    size_t o = 0, w;
    int gap = 0;
    for (size_t i = 0; s[i];) {
        if ((w = space_len(s + i))) {
            gap = 1;
            i += w;
            continue;
        }
        if (gap && o > 0)
            s[o++] = ' ';
        gap = 0;
        s[o++] = s[i++];
    }
    s[o] = 0;
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
    /* as sacreBLEU's 13a: each replacement over the whole line in turn, so
     * "&amp;lt;" becomes "&lt;" and then "<" */
    static const char *const pass[][2] = {{"<skipped>", ""}, {"-\n", ""},   {"\n", " "},
                                          {"&quot;", "\""},   {"&amp;", "&"}, {"&lt;", "<"},
                                          {"&gt;", ">"}};
    a[0] = ' ';
    memcpy(a + 1, line, n + 1);
    for (size_t e = 0; e < sizeof pass / sizeof *pass; e++)
        replace_all(a + 1, pass[e][0], pass[e][1]);
    size_t k = strlen(a);
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
    memcpy(out, b, q);
    out[q] = 0;
    collapse_spaces(out);
    free(a);
    free(b);
    return out;
}

/* ---- lowercasing and the other tokenizers -------------------------------------- */

/* Python's str.lower() of one code point for Latin (Basic, Latin-1,
 * Extended-A, Extended Additional), Greek and Cyrillic (U+0400-U+052F);
 * other code points are kept. U+0130 and the final sigma are handled by
 * the caller. */
static unsigned lower_cp(unsigned c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7))
        return c + 32;
    if (c == 0x178)
        return 0xff;
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14a && c <= 0x177))
        return c | 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
        return c & 1 ? c + 1 : c;
    if (c == 0x386)
        return 0x3ac;
    if (c >= 0x388 && c <= 0x38a)
        return c + 37;
    if (c == 0x38c)
        return 0x3cc;
    if (c == 0x38e || c == 0x38f)
        return c + 63;
    if ((c >= 0x391 && c <= 0x3ab && c != 0x3a2) || (c >= 0x410 && c <= 0x42f))
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f) ||
        (c >= 0x1e00 && c <= 0x1e95) || (c >= 0x1ea0 && c <= 0x1eff))
        return c & ~1u;
    if (c == 0x4c0)
        return 0x4cf;
    if (c >= 0x4c1 && c <= 0x4ce)
        return c & 1 ? c + 1 : c;
    if (c == 0x1e9e)
        return 0xdf;
    return c;
}

/* One code point from s (UTF-8; a stray byte stands for itself): its
 * length in *len. */
static unsigned decode(const unsigned char *s, size_t *len)
{
    if (s[0] >= 0xc0 && s[0] < 0xe0 && (s[1] & 0xc0) == 0x80) {
        *len = 2;
        return (unsigned)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    }
    if ((s[0] & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
        *len = 3;
        return (unsigned)(s[0] & 0x0f) << 12 | (unsigned)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    }
    if ((s[0] & 0xf8) == 0xf0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 &&
        (s[3] & 0xc0) == 0x80) {
        *len = 4;
        return (unsigned)(s[0] & 0x07) << 18 | (unsigned)(s[1] & 0x3f) << 12 |
               (unsigned)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
    }
    *len = 1;
    return s[0];
}

static size_t encode(unsigned c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

static int is_letter_cp(unsigned c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= 0xc0 && c <= 0x24f && c != 0xd7 && c != 0xf7) || (c >= 0x386 && c <= 0x3ff) ||
           (c >= 0x400 && c <= 0x52f) || (c >= 0x1e00 && c <= 0x1eff);
}

/* str.lower() as described at lower_cp, plus U+0130 → "i" U+0307 and Σ
 * → ς at the end of a word (after a letter, not before one). malloc'd. */
static char *lowercase(const char *line)
{
    size_t n = strlen(line), o = 0, w, w2;
    char *out = malloc(2 * n + 1);
    if (!out)
        return NULL;
    unsigned prev = 0;
    for (size_t i = 0; i < n; i += w) {
        unsigned c = decode((const unsigned char *)line + i, &w);
        if (c == 0x130) {
            out[o++] = 'i';
            o += encode(0x307, out + o);
        } else if (c == 0x3a3) {
            int after = i + w < n && is_letter_cp(decode((const unsigned char *)line + i + w, &w2));
            o += encode(is_letter_cp(prev) && !after ? 0x3c2 : 0x3c3, out + o);
        } else if (w > 1 || c < 0x80)
            o += encode(lower_cp(c), out + o);
        else
            out[o++] = (char)c; /* a stray byte */
        prev = c;
    }
    out[o] = 0;
    return out;
}

/* sacreBLEU's "char": every character a token. */
static char *tokenize_char(const char *line)
{
    size_t n = strlen(line), o = 0, w;
    char *out = malloc(2 * n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += w) {
        decode((const unsigned char *)line + i, &w);
        memcpy(out + o, line + i, w);
        o += w;
        out[o++] = ' ';
    }
    out[o] = 0;
    collapse_spaces(out);
    return out;
}

/* One segment as sacreBLEU prepares it: lowercased if asked, tokenized. */
static char *prepare(const char *line, const nomul_bleu_opts *o)
{
    char *low = NULL, *t;
    if (o && o->lowercase && !(line = low = lowercase(line)))
        return NULL;
    switch (o ? o->tokenize : NOMUL_BLEU_TOK_13A) {
    case NOMUL_BLEU_TOK_NONE:
        if ((t = malloc(strlen(line) + 1))) {
            strcpy(t, line);
            collapse_spaces(t);
        }
        break;
    case NOMUL_BLEU_TOK_CHAR:
        t = tokenize_char(line);
        break;
    default:
        t = nomul_tokenize_13a(line);
    }
    free(low);
    return t;
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
    return nomul_bleu_opt(hyps, refs, nrefs, n, NULL, r);
}

int nomul_bleu_opt(const char *const *hyps, const char *const *const *refs, int nrefs, long n,
                   const nomul_bleu_opts *o, nomul_bleu_result *r)
{
    memset(r, 0, sizeof *r);
    for (long s = 0; s < n; s++) {
        char *h = prepare(hyps[s], o);
        char *rt[16];
        const char **ht = NULL, **rtok[16] = {0};
        int hn, rn[16] = {0}, ok = h != NULL && nrefs >= 1 && nrefs <= 16;
        for (int j = 0; j < nrefs && j < 16; j++)
            ok &= (rt[j] = prepare(refs[j][s], o)) != NULL;
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
    r->bp = r->hyp_len >= r->ref_len ? 1.0
            : r->hyp_len > 0         ? exp(1.0 - (double)r->ref_len / (double)r->hyp_len)
                                     : 0.0;
    /* no match of any order: 0, precisions 0 (sacreBLEU's early stop, #141) */
    if (!r->matches[0] && !r->matches[1] && !r->matches[2] && !r->matches[3])
        return 0;
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
    r->score = r->bp * exp(logsum / 4.0);
    return 0;
}
