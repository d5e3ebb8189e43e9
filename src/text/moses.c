/*
 * moses.c — word tokenization before BPE and the matching detokenization
 * after decoding, in the style of the Moses tokenizer (tokenizer.perl,
 * detokenizer.perl) that fairseq's IWSLT14 preparation runs: rules written
 * here from Moses' documented behaviour, with nomul's own short
 * nonbreaking-prefix lists for English and German (nomul/text.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "nomul/text.h"
#include "text_internal.h"

/* ---- code points ---------------------------------------------------------------- */

/* The code points of valid UTF-8 (checked by the caller); their count. */
static size_t decode(const char *s, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;
    while (*u) {
        uint32_t c = *u++;
        int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
        c &= more == 3 ? 0x07 : more == 2 ? 0x0F : more == 1 ? 0x1F : 0x7F;
        while (more--)
            c = c << 6 | (*u++ & 0x3F);
        cp[n++] = c;
    }
    return n;
}

static char *encode(char *o, uint32_t c)
{
    if (c < 0x80) {
        *o++ = (char)c;
    } else if (c < 0x800) {
        *o++ = (char)(0xC0 | c >> 6);
        *o++ = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        *o++ = (char)(0xE0 | c >> 12);
        *o++ = (char)(0x80 | (c >> 6 & 0x3F));
        *o++ = (char)(0x80 | (c & 0x3F));
    } else {
        *o++ = (char)(0xF0 | c >> 18);
        *o++ = (char)(0x80 | (c >> 12 & 0x3F));
        *o++ = (char)(0x80 | (c >> 6 & 0x3F));
        *o++ = (char)(0x80 | (c & 0x3F));
    }
    return o;
}

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

static int is_space(uint32_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xA0 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x202F || c == 0x205F || c == 0x3000 || c == 0x2028 || c == 0x2029;
}

/* Letters: ASCII, Latin-1's and the alphabets' letters; above U+024F every code
 * point outside the punctuation and symbol blocks counts as one. */
static int is_alpha(uint32_t c)
{
    if (c < 0x80)
        return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    if (c < 0xC0)
        return c == 0xAA || c == 0xB5 || c == 0xBA;
    if (c <= 0x24F)
        return c != 0xD7 && c != 0xF7;
    if ((c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) ||
        (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF0F) || c >= 0x1F000 ||
        (c >= 0x2E00 && c <= 0x2E7F) || c == 0xFEFF)
        return 0;
    return 1;
}

static int is_alnum(uint32_t c) { return is_digit(c) || is_alpha(c); }

static int is_lower(uint32_t c)
{
    if (c < 0x80)
        return c >= 'a' && c <= 'z';
    if (c >= 0xDF && c <= 0xFF)
        return c != 0xF7;
    if (c >= 0x100 && c <= 0x17F)
        return c & 1;
    return (c >= 0x3B1 && c <= 0x3C9) || (c >= 0x430 && c <= 0x45F);
}

static int is_apostrophe(uint32_t c) { return c == '\'' || c == 0x2019; }

static int is_bracket_or_quote(uint32_t c)
{
    return (c < 0x80 && strchr("()[]{}<>\"`", (int)c)) || (c >= 0x2018 && c <= 0x201F) ||
           c == 0xAB || c == 0xBB || c == 0x2039 || c == 0x203A;
}

/* ---- languages ------------------------------------------------------------------- */

typedef enum { LANG_OTHER, LANG_EN, LANG_DE } lang_id;

static lang_id lang_of(const char *lang)
{
    if (lang && (lang[0] | 0x20) == 'e' && (lang[1] | 0x20) == 'n' && (!lang[2] || lang[2] == '-' || lang[2] == '_'))
        return LANG_EN;
    if (lang && (lang[0] | 0x20) == 'd' && (lang[1] | 0x20) == 'e' && (!lang[2] || lang[2] == '-' || lang[2] == '_'))
        return LANG_DE;
    return LANG_OTHER;
}

/* Words after which a period belongs to the word (1), or does when a number
 * follows (2). Written for nomul: titles, months, common abbreviations; single
 * letters (initials, "z. B.") are nonbreaking in every language. */
static const char *const prefixes_en[] = {
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "Gen", "Gov", "Rev", "Capt", "Lt",
    "Col", "Sgt", "vs", "etc", "approx", "Inc", "Ltd", "Co", "Corp", "Jan", "Feb", "Mar", "Apr",
    "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "Dept", "Univ", "cf", "al", NULL};
static const char *const numeric_en[] = {"No", "Nos", "Art", "Nr", "pp", "p", "Fig", "fig",
                                          "Vol", "vol", "Ch", "ch", "Sec", NULL};
static const char *const prefixes_de[] = {
    "Dr", "Prof", "Hr", "Fr", "bzw", "ca", "ggf", "usw", "vgl", "evtl", "Abb", "Bd", "Kap",
    "Str", "Tel", "inkl", "exkl", "bspw", "sog", "zzgl", "Jh", "Mio", "Mrd", "Nr", "Dipl",
    "Ing", "geb", "gest", "od", "Std", "Min", "Sek", "Jan", "Feb", "Aug", "Sept", "Okt", "Nov",
    "Dez", "etc", "u", "z", "d", "o", "s", "v", "Anm", "Hrsg", "allg", "eigtl", "einschl",
    NULL};
static const char *const numeric_de[] = {"Art", "S", "Abs", "Nr", "Bd", "Kap", NULL};

static int listed(const char *const *list, const uint32_t *w, size_t n)
{
    for (; *list; list++) {
        size_t k = 0;
        const unsigned char *p = (const unsigned char *)*list;
        while (k < n && p[k] && p[k] == w[k])
            k++;
        if (k == n && !p[k])
            return 1;
    }
    return 0;
}

/* 1: a nonbreaking prefix, 2: nonbreaking before a number, 0: neither. */
static int prefix_kind(lang_id l, const uint32_t *w, size_t n)
{
    if (n == 1 && is_alpha(w[0]))
        return 1;
    if (l == LANG_EN)
        return listed(prefixes_en, w, n) ? 1 : listed(numeric_en, w, n) ? 2 : 0;
    if (l == LANG_DE)
        return listed(prefixes_de, w, n) ? 1 : listed(numeric_de, w, n) ? 2 : 0;
    return 0;
}

/* ---- tokenization ---------------------------------------------------------------- */

char *nomul_moses_tokenize(const char *line, const char *lang)
{
    size_t len = strlen(line);
    long bad = nomul_utf8_invalid_at((const unsigned char *)line, len);
    if (bad >= 0) {
        nomul_report(NOMUL_EFORMAT, "tokenize: invalid UTF-8 at byte %ld", bad + 1);
        return NULL;
    }
    lang_id l = lang_of(lang);
    /* every code point becomes at most three (" c "); the period rule adds one
     * space per word */
    uint32_t *cp = malloc(sizeof *cp * (len + 1)), *t = malloc(sizeof *t * (4 * len + 2));
    char *out = malloc(4 * (4 * len + 2) + 1);
    if (!cp || !t || !out) {
        free(cp);
        free(t);
        free(out);
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return NULL;
    }
    size_t n = decode(line, cp), m = 0;
#define SPLIT(c) (t[m++] = ' ', t[m++] = (c), t[m++] = ' ')
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i], prev = i ? cp[i - 1] : ' ', next = i + 1 < n ? cp[i + 1] : ' ';
        if (is_space(c)) {
            t[m++] = ' ';
        } else if (c < 0x20 || c == 0x7F) {
            continue; /* control characters: dropped */
        } else if (c == '.' && next == '.') { /* "..." a token of its own */
            t[m++] = ' ';
            while (i < n && cp[i] == '.')
                t[m++] = cp[i++];
            i--;
            t[m++] = ' ';
        } else if (c == '.' || c == '-' || is_alnum(c)) {
            t[m++] = c; /* periods wait for the word rule, hyphens stay */
        } else if (c == ',') { /* kept inside numbers: 1,000 */
            if (is_digit(prev) && is_digit(next))
                t[m++] = c;
            else
                SPLIT(c);
        } else if (is_apostrophe(c)) {
            int pa = is_alpha(prev), na = is_alpha(next);
            if (l == LANG_EN && ((pa && na) || (is_digit(prev) && next == 's' &&
                                                 !(i + 2 < n && is_alpha(cp[i + 2]))))) {
                t[m++] = ' '; /* don't → don 't, 1990's → 1990 's */
                t[m++] = c;
            } else if (l == LANG_DE && pa && na) {
                t[m++] = c; /* geht's stays a word */
            } else
                SPLIT(c);
        } else if (is_alnum(prev) && is_alnum(next) && !is_bracket_or_quote(c)) {
            t[m++] = c; /* technical joins stay words: and/or, in_out, B2:E5, Ctrl+C */
        } else
            SPLIT(c); /* every other symbol a token */
    }
#undef SPLIT
    /* words ending in a period: the period splits off unless the word is an
     * abbreviation (a period and a letter inside, a nonbreaking prefix, or a
     * lowercase word next) or a numeric prefix before a number */
    char *o = out;
    size_t i = 0;
    while (i < m) {
        while (i < m && t[i] == ' ')
            i++;
        if (i == m)
            break;
        size_t s = i;
        while (i < m && t[i] != ' ')
            i++;
        size_t e = i, ns = i;
        while (ns < m && t[ns] == ' ')
            ns++;
        int split = 0;
        if (e - s > 1 && t[e - 1] == '.') {
            size_t pl = e - s - 1;
            int dot = 0, alpha = 0, alldots = 1;
            for (size_t k = s; k < e - 1; k++) {
                dot |= t[k] == '.';
                alpha |= is_alpha(t[k]);
                alldots &= t[k] == '.';
            }
            int kind = prefix_kind(l, t + s, pl);
            split = !alldots && !(dot && alpha) && kind != 1 && !(ns < m && is_lower(t[ns])) &&
                    !(kind == 2 && ns < m && is_digit(t[ns]));
        }
        if (o > out)
            *o++ = ' ';
        for (size_t k = s; k < e - (size_t)split; k++)
            o = encode(o, t[k]);
        if (split) {
            *o++ = ' ';
            *o++ = '.';
        }
    }
    *o = 0;
    free(cp);
    free(t);
    return out;
}

/* ---- detokenization --------------------------------------------------------------- */

static int all_in(const uint32_t *w, size_t n, const char *set_ascii, const uint32_t *set_u)
{
    for (size_t k = 0; k < n; k++) {
        int in = w[k] < 0x80 && w[k] && strchr(set_ascii, (int)w[k]);
        for (const uint32_t *u = set_u; !in && *u; u++)
            in = w[k] == *u;
        if (!in)
            return 0;
    }
    return n > 0;
}

char *nomul_moses_detokenize(const char *line, const char *lang)
{
    size_t len = strlen(line);
    long bad = nomul_utf8_invalid_at((const unsigned char *)line, len);
    if (bad >= 0) {
        nomul_report(NOMUL_EFORMAT, "detokenize: invalid UTF-8 at byte %ld", bad + 1);
        return NULL;
    }
    lang_id l = lang_of(lang);
    uint32_t *cp = malloc(sizeof *cp * (len + 1));
    char *out = malloc(len + 1);
    if (!cp || !out) {
        free(cp);
        free(out);
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return NULL;
    }
    size_t n = decode(line, cp), i = 0;
    static const uint32_t close_u[] = {0x2026, 0}, open_u[] = {0xBF, 0xA1, 0},
                          currency[] = {'$', 0xA2, 0xA3, 0xA5, 0x20AC, 0};
    /* the typographic quotes that open and close, per language */
    static const uint32_t open_en[] = {0x201C, 0x2018, 0xAB, 0}, close_en[] = {0x201D, 0xBB, 0},
                          open_de[] = {0x201E, 0x201A, 0xBB, 0},
                          close_de[] = {0x201C, 0x2018, 0xAB, 0}, none[] = {0};
    const uint32_t *qopen = l == LANG_DE ? open_de : l == LANG_EN ? open_en : none;
    const uint32_t *qclose = l == LANG_DE ? close_de : l == LANG_EN ? close_en : none;
    int dq = 0, sq = 0, attach = 1;
    uint32_t last = 0; /* the previous token's last code point */
    char *o = out;
    while (i < n) {
        while (i < n && cp[i] == ' ')
            i++;
        if (i == n)
            break;
        size_t s = i;
        while (i < n && cp[i] != ' ')
            i++;
        size_t w = i - s, ns = i;
        while (ns < n && cp[ns] == ' ')
            ns++;
        const uint32_t *t = cp + s;
        enum { NORMAL, LEFT, RIGHT } kind = NORMAL; /* LEFT: joins the previous token */
        if (all_in(t, w, ",.?!:;%)]}", close_u))
            kind = LEFT;
        else if (all_in(t, w, "([{", open_u))
            kind = RIGHT;
        else if (w == 1 && all_in(t, 1, "", currency) && ns < n && is_digit(cp[ns]) &&
                 (l == LANG_EN || !is_digit(last)))
            kind = RIGHT; /* $ 5 → $5; German 5 € 3 keeps its spaces */
        else if (w > 1 && is_apostrophe(t[0]) && is_alpha(t[1]) && l == LANG_EN && is_alnum(last))
            kind = LEFT; /* don 't → don't */
        else if (w == 1 && t[0] == '"')
            kind = dq++ % 2 ? LEFT : RIGHT;
        else if (w == 1 && is_apostrophe(t[0])) {
            if (sq)
                kind = LEFT, sq = 0;
            else if (l == LANG_EN && (last == 's' || last == 'S'))
                kind = LEFT; /* the dogs ' bowls → the dogs' bowls */
            else
                kind = RIGHT, sq = 1;
        } else if (w == 1 && all_in(t, 1, "", qopen))
            kind = RIGHT;
        else if (w == 1 && all_in(t, 1, "", qclose))
            kind = LEFT;
        if (!attach && kind != LEFT)
            *o++ = ' ';
        for (size_t k = 0; k < w; k++)
            o = encode(o, t[k]);
        attach = kind == RIGHT;
        last = t[w - 1];
    }
    *o = 0;
    free(cp);
    return out;
}
