/*
 * bleu.c — corpus BLEU as sacreBLEU computes it by default (nomul/text.h):
 * the 13a tokenizer of mteval-v13a.pl, n-grams up to 4 clipped by the
 * largest count in any reference, the closest reference length (the
 * shorter on a tie) for the brevity penalty, and "exp" smoothing of
 * n-gram orders without a match (a score of 0 when no order matches) —
 * sacreBLEU 2.x's semantics (2.0 to 2.4) — and its options -lc and
 * --tokenize none|char|intl (intl: mteval-v14's international
 * tokenization, on ICU's Unicode general categories). Tokens are split on
 * whitespace as Python's str.split() splits them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicode/uchar.h>

#include "../core/internal.h"
#include "nomul/text.h"
#include "text_internal.h"

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

/* ---- the intl tokenizer ------------------------------------------------------ */

/* sacreBLEU's "intl" (TokenizerV14International, after mteval-v14's
 * international tokenization) is three regex substitutions over the code
 * points, in turn, then whitespace collapsed:
 *   1. (\P{N})(\p{P}) → "\1 \2 "  punctuation after a non-number
 *   2. (\p{P})(\P{N}) → " \1 \2"  punctuation before a non-number
 *   3. (\p{S})        → " \1 "    symbols
 * N, P and S are Unicode's general categories (Nd Nl No; Pc Pd Ps Pe Pi Pf
 * Po; Sm Sc Sk So), read from ICU. A substitution takes its matches left to
 * right without overlap, each consuming both of its code points: in "a.,5"
 * rule 1 takes "a." and cannot then take ".,", so "," stays on "5". */

static int is_number(uint32_t c) { return (U_GET_GC_MASK((UChar32)c) & U_GC_N_MASK) != 0; }
static int is_punct(uint32_t c) { return (U_GET_GC_MASK((UChar32)c) & U_GC_P_MASK) != 0; }
static int is_symbol(uint32_t c) { return (U_GET_GC_MASK((UChar32)c) & U_GC_S_MASK) != 0; }

/* Rule 1 (after = 1) or rule 2 (after = 0) from in (n code points) into out
 * (room for 2n): each match AB becomes "A B " or " A B". The count out. */
static size_t intl_punct_rule(const uint32_t *in, size_t n, uint32_t *out, int after)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int match = i + 1 < n && (after ? !is_number(in[i]) && is_punct(in[i + 1])
                                        : is_punct(in[i]) && !is_number(in[i + 1]));
        if (!match) {
            out[o++] = in[i];
            continue;
        }
        if (!after)
            out[o++] = ' ';
        out[o++] = in[i];
        out[o++] = ' ';
        out[o++] = in[i + 1];
        if (after)
            out[o++] = ' ';
        i++; /* the match consumed both code points */
    }
    return o;
}

/* The intl tokenization of valid UTF-8 (checked by the caller); malloc'd,
 * NULL out of memory (not reported). */
static char *tokenize_intl(const char *line)
{
    size_t n = strlen(line), m = 0, w;
    /* m ≤ n code points; each of rules 1 and 2 at most doubles the count */
    uint32_t *cp = malloc(sizeof *cp * (n + 1)), *r1 = malloc(sizeof *r1 * (2 * n + 1)), *r2 = NULL;
    char *out = NULL;
    if (!cp || !r1)
        goto out;
    for (size_t i = 0; i < n; i += w)
        cp[m++] = decode((const unsigned char *)line + i, &w);
    size_t n1 = intl_punct_rule(cp, m, r1, 1);
    if (!(r2 = malloc(sizeof *r2 * (2 * n1 + 1))))
        goto out;
    size_t n2 = intl_punct_rule(r1, n1, r2, 0), bytes = 1, o = 0;
    char enc[4];
    for (size_t i = 0; i < n2; i++) /* rule 3's output, sized exactly */
        bytes += encode(r2[i], enc) + (is_symbol(r2[i]) ? 2 : 0);
    if (!(out = malloc(bytes)))
        goto out;
    for (size_t i = 0; i < n2; i++) {
        int sym = is_symbol(r2[i]);
        if (sym)
            out[o++] = ' ';
        o += encode(r2[i], out + o);
        if (sym)
            out[o++] = ' ';
    }
    out[o] = 0;
    collapse_spaces(out);
out:
    free(cp);
    free(r1);
    free(r2);
    return out;
}

char *nomul_tokenize_intl(const char *line)
{
    long bad = nomul_utf8_invalid_at((const unsigned char *)line, strlen(line));
    if (bad >= 0) {
        nomul_report(NOMUL_EFORMAT, "nomul_tokenize_intl: invalid UTF-8 at byte %ld of the line",
                     bad + 1);
        return NULL;
    }
    char *t = tokenize_intl(line);
    if (!t)
        nomul_report(NOMUL_ENOMEM, "nomul_tokenize_intl: out of memory");
    return t;
}

/* The length of s without its trailing whitespace (Python's str.rstrip()). */
static size_t rstrip_len(const char *s)
{
    size_t keep = 0, w;
    for (size_t i = 0; s[i];) {
        if ((w = space_len(s + i))) {
            i += w;
            continue;
        }
        i++;
        keep = i;
    }
    return keep;
}

/* One segment as sacreBLEU's BLEU prepares it: lowercased if asked, its
 * trailing whitespace cut (rstrip: intl splits the period off "1990. " but
 * not off "1990."), tokenized. what and seg name it in a report (every
 * failure is reported once); NULL then. */
static char *prepare(const char *line, const nomul_bleu_opts *o, const char *what, long seg)
{
    nomul_bleu_tok tok = o ? o->tokenize : NOMUL_BLEU_TOK_13A;
    if (tok == NOMUL_BLEU_TOK_INTL) { /* intl reads code points: before lowercasing moves bytes */
        long bad = nomul_utf8_invalid_at((const unsigned char *)line, strlen(line));
        if (bad >= 0) {
            nomul_report(NOMUL_EFORMAT,
                         "nomul_bleu: %s, line %ld: invalid UTF-8 at byte %ld of the line", what,
                         seg + 1, bad + 1);
            return NULL;
        }
    }
    char *s = o && o->lowercase ? lowercase(line) : NULL, *t = NULL;
    size_t keep = rstrip_len(s ? s : line);
    if (!s && (s = malloc(keep + 1)))
        memcpy(s, line, keep);
    if (!s) {
        nomul_report(NOMUL_ENOMEM, "nomul_bleu: out of memory");
        return NULL;
    }
    s[keep] = 0;
    switch (tok) {
    case NOMUL_BLEU_TOK_NONE:
        collapse_spaces(s);
        return s;
    case NOMUL_BLEU_TOK_CHAR:
        t = tokenize_char(s);
        break;
    case NOMUL_BLEU_TOK_INTL:
        t = tokenize_intl(s);
        break;
    default:
        t = nomul_tokenize_13a(s); /* reports its own failure */
        free(s);
        return t;
    }
    if (!t)
        nomul_report(NOMUL_ENOMEM, "nomul_bleu: out of memory");
    free(s);
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
    if (nrefs < 1 || nrefs > 16) {
        nomul_report(NOMUL_EINVAL, "nomul_bleu: want 1 to 16 references, not %d", nrefs);
        return -1;
    }
    for (long s = 0; s < n; s++) {
        char *h = prepare(hyps[s], o, "the hypotheses", s);
        char *rt[16] = {0}, what[32];
        const char **ht = NULL, **rtok[16] = {0};
        int hn, rn[16] = {0}, ok = h != NULL;
        for (int j = 0; j < nrefs && ok; j++) {
            snprintf(what, sizeof what, "reference %d", j + 1);
            ok = (rt[j] = prepare(refs[j][s], o, what, s)) != NULL;
        }
        if (!ok) { /* prepare reported */
            free(h);
            for (int j = 0; j < nrefs; j++)
                free(rt[j]);
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
