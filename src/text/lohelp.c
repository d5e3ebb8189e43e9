/*
 * lohelp.c — a parallel corpus from LibreOffice's help (nomul/text.h):
 * Debian's libreoffice-help-LANG packages install the same HTML pages under
 * ROOT/LANG/... for every language, and the paragraphs and headings carry the
 * same id attributes (par_id…, hd_id…) in each. libxml2's HTML parser reads
 * the pages; the text of each id'd block is paired by (page, id).
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include "../core/internal.h"
#include "nomul/text.h"
#include "text_internal.h"

/* ---- a growable string ----------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 256;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* ---- the text of one block ------------------------------------------------------- */

static const char *attr(xmlNodePtr n, const char *name)
{
    for (xmlAttrPtr a = n->properties; a; a = a->next)
        if (!strcasecmp((const char *)a->name, name))
            return a->children && a->children->content ? (const char *)a->children->content : "";
    return NULL;
}

static int is(xmlNodePtr n, const char *name) { return !strcasecmp((const char *)n->name, name); }

/* Blocks whose id makes a unit: paragraphs, headings, table cells, list items. */
static int unit_element(xmlNodePtr n)
{
    static const char *const names[] = {"p", "h1", "h2", "h3", "h4", "h5", "h6",
                                        "td", "th", "li", "dt", "dd"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (is(n, names[k]))
            return 1;
    return 0;
}

/* The help's system and module switches (<span class="switchinline">) hold one
 * hidden span per case (MAC…, WIN…, CALC…, …) and a hidden default…; the page's
 * script shows one. The text keeps the default and drops the other cases. */
static int shown(xmlNodePtr n)
{
    if (!attr(n, "hidden"))
        return 1;
    const char *id = attr(n, "id");
    return id && !strncmp(id, "default", 7);
}

/* Inline markup flattened: text nodes (entities decoded by libxml2) in document
 * order, a space for <br> and around nested blocks; scripts, styles and hidden
 * cases left out. */
static void flatten(xmlNodePtr n, sbuf *b)
{
    for (xmlNodePtr c = n->children; c; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            if (c->content)
                sb_put(b, (const char *)c->content, strlen((const char *)c->content));
        } else if (c->type == XML_ELEMENT_NODE) {
            if (is(c, "script") || is(c, "style") || !shown(c))
                continue;
            int block = !is(c, "span") && !is(c, "a") && !is(c, "sup") && !is(c, "sub") &&
                        !is(c, "b") && !is(c, "i") && !is(c, "em") && !is(c, "strong") &&
                        !is(c, "code") && !is(c, "kbd") && !is(c, "var") && !is(c, "u") &&
                        !is(c, "small") && !is(c, "big") && !is(c, "tt");
            if (block)
                sb_put(b, " ", 1);
            flatten(c, b);
            if (block)
                sb_put(b, " ", 1);
        }
    }
}

/* The length of a space character at s (ASCII white space, U+00A0, U+2000–U+200A,
 * U+202F, U+205F, U+3000), or 0. */
static int space_at(const unsigned char *s)
{
    if (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        return 1;
    if (s[0] == 0xC2 && s[1] == 0xA0)
        return 2;
    if (s[0] == 0xE2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xAF))
        return 3;
    if ((s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) ||
        (s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80))
        return 3;
    return 0;
}

/* The length of an invisible character at s (U+00AD soft hyphen, U+200B zero
 * width space, U+FEFF), or 0. */
static int invisible_at(const unsigned char *s)
{
    if (s[0] == 0xC2 && s[1] == 0xAD)
        return 2;
    if ((s[0] == 0xE2 && s[1] == 0x80 && s[2] == 0x8B) ||
        (s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF))
        return 3;
    return 0;
}

void nomul_lohelp_normalize(char *text)
{
    /* the help's product-name variables, as the help viewer fills them in */
    static const char *const var[] = {"$[officename]", "%PRODUCTNAME"};
    static const char product[] = "LibreOffice";
    for (size_t k = 0; k < 2; k++) {
        size_t lv = strlen(var[k]);
        for (char *p = strstr(text, var[k]); p; p = strstr(p, var[k])) {
            /* product is no longer than either variable: in place */
            memcpy(p, product, sizeof product - 1);
            memmove(p + sizeof product - 1, p + lv, strlen(p + lv) + 1);
            p += sizeof product - 1;
        }
    }
    unsigned char *r = (unsigned char *)text, *w = r;
    int pending = 0;
    while (*r) {
        int k = space_at(r);
        if (k) {
            pending = w > (unsigned char *)text;
            r += k;
            continue;
        }
        if ((k = invisible_at(r))) {
            r += k;
            continue;
        }
        if (*r < 0x20 || *r == 0x7F) { /* other control characters: dropped */
            r++;
            continue;
        }
        if (pending)
            *w++ = ' ';
        pending = 0;
        *w++ = *r++;
    }
    *w = 0;
}

/* ---- a page's units ---------------------------------------------------------------- */

typedef struct {
    char *id, *text;
} unit;

typedef struct {
    unit *u;
    long n, cap;
    int oom;
} units;

static void units_free(units *us)
{
    for (long i = 0; i < us->n; i++) {
        free(us->u[i].id);
        free(us->u[i].text);
    }
    free(us->u);
    us->u = NULL;
    us->n = us->cap = 0;
}

static const char *units_find(const units *us, const char *id)
{
    for (long i = 0; i < us->n; i++)
        if (!strcmp(us->u[i].id, id))
            return us->u[i].text;
    return NULL;
}

static int units_push(units *us, char *id, char *text)
{
    if (us->n == us->cap) {
        long nc = us->cap ? 2 * us->cap : 64;
        unit *nu = realloc(us->u, sizeof *nu * (size_t)nc);
        if (!nu)
            return -1;
        us->u = nu;
        us->cap = nc;
    }
    us->u[us->n].id = id;
    us->u[us->n++].text = text;
    return 0;
}

static void collect(xmlNodePtr n, units *us)
{
    for (xmlNodePtr c = n->children; c && !us->oom; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || is(c, "script") || is(c, "style") || !shown(c))
            continue;
        const char *id = attr(c, "id");
        if (!id || !*id || !unit_element(c)) {
            collect(c, us);
            continue;
        }
        if (units_find(us, id))
            continue; /* an id repeated in a page: its first block counts */
        sbuf b = {NULL, 0, 0, 0};
        sb_put(&b, "", 0);
        flatten(c, &b);
        char *idc = strdup(id);
        if (b.oom || !idc || units_push(us, idc, b.s)) {
            free(b.s);
            free(idc);
            us->oom = 1;
            return;
        }
        nomul_lohelp_normalize(b.s);
    }
}

static xmlNodePtr find_id(xmlNodePtr n, const char *id)
{
    for (xmlNodePtr c = n; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *v = attr(c, "id");
        if (v && !strcmp(v, id))
            return c;
        xmlNodePtr f = find_id(c->children, id);
        if (f)
            return f;
    }
    return NULL;
}

/* The units of one page (those inside <div id="DisplayArea"> when the page has
 * one: outside are the viewer's menus). -1 after a report. */
static int read_page(const char *path, units *us)
{
    htmlDocPtr doc = htmlReadFile(path, "UTF-8",
                                  HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                      HTML_PARSE_RECOVER | HTML_PARSE_NONET);
    if (!doc) {
        nomul_report(NOMUL_EFORMAT, "'%s': libxml2 cannot read it as HTML", path);
        return -1;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root) {
        xmlNodePtr area = find_id(root, "DisplayArea");
        collect(area ? area : root, us);
    }
    xmlFreeDoc(doc);
    if (us->oom) {
        nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", path);
        return -1;
    }
    return 0;
}

/* ---- the pages ----------------------------------------------------------------------- */

static int is_dir(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The .html files under dir/rel, recursively, as paths relative to dir. */
static int walk(const char *dir, const char *rel, char ***v, long *n, long *cap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        nomul_report(NOMUL_EIO, "cannot read the folder '%s': %s", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096], full[4096];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= (int)sizeof sub ||
            snprintf(full, sizeof full, "%s/%s", dir, sub) >= (int)sizeof full)
            continue;
        struct stat st;
        if (stat(full, &st))
            continue;
        if (S_ISDIR(st.st_mode)) {
            rc = walk(dir, sub, v, n, cap);
        } else if (S_ISREG(st.st_mode) && strlen(sub) > 5 &&
                   !strcasecmp(sub + strlen(sub) - 5, ".html")) {
            char *c = strdup(sub);
            if (c && *n == *cap) {
                long nc = *cap ? 2 * *cap : 1024;
                char **nv = realloc(*v, sizeof **v * (size_t)nc);
                if (nv) {
                    *v = nv;
                    *cap = nc;
                }
            }
            if (!c || *n == *cap) {
                free(c);
                nomul_report(NOMUL_ENOMEM, "out of memory listing '%s'", dir);
                rc = -1;
                break;
            }
            (*v)[(*n)++] = c;
        }
    }
    closedir(d);
    return rc;
}

/* The languages under the help root: its folders that hold a text/ folder. */
static void list_languages(const char *root, char *out, size_t cap)
{
    out[0] = 0;
    char **names = NULL;
    long n = 0, c = 0;
    DIR *d = opendir(root);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[4096];
        if (e->d_name[0] == '.' ||
            snprintf(p, sizeof p, "%s/%s/text", root, e->d_name) >= (int)sizeof p || !is_dir(p))
            continue;
        if (n == c) {
            char **nv = realloc(names, sizeof *nv * (size_t)(c = c ? 2 * c : 16));
            if (!nv)
                break;
            names = nv;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    if (d)
        closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_string);
    for (long i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", i ? ", " : "", names[i]);
        free(names[i]);
    }
    free(names);
}

/* ROOT/lang when it is a folder, else the one ROOT/lang-* (en: en-US). */
static int language_dir(const char *root, const char *lang, char *out, size_t cap)
{
    if (!is_dir(root)) {
        nomul_report(NOMUL_EIO, "no help folder '%s' (Debian's libreoffice-help-* packages "
                     "install /usr/share/libreoffice/help)", root);
        return -1;
    }
    if (!*lang || strchr(lang, '/') || !strcmp(lang, ".") || !strcmp(lang, "..")) {
        nomul_report(NOMUL_EINVAL, "'%s' is not a language code", lang);
        return -1;
    }
    snprintf(out, cap, "%s/%s", root, lang);
    if (is_dir(out))
        return 0;
    char found[4096] = "", langs[4096];
    int nfound = 0;
    DIR *d = opendir(root);
    struct dirent *e;
    size_t ll = strlen(lang);
    while (d && (e = readdir(d))) {
        char p[4096];
        if (strncmp(e->d_name, lang, ll) || e->d_name[ll] != '-' ||
            snprintf(p, sizeof p, "%s/%s", root, e->d_name) >= (int)sizeof p || !is_dir(p))
            continue;
        size_t l = strlen(found);
        snprintf(found + l, sizeof found - l, "%s%s", nfound++ ? ", " : "", e->d_name);
        snprintf(out, cap, "%s", p);
    }
    if (d)
        closedir(d);
    if (nfound == 1)
        return 0;
    if (nfound > 1) {
        nomul_report(NOMUL_EINVAL, "language '%s' is ambiguous under '%s': %s (name one)", lang,
                     root, found);
        return -1;
    }
    list_languages(root, langs, sizeof langs);
    nomul_report(NOMUL_EIO, "no help pages for language '%s' under '%s' (there: %s; Debian's "
                 "libreoffice-help-%s installs them)", lang, root, *langs ? langs : "none", lang);
    return -1;
}

/* ---- filters and the split -------------------------------------------------------------- */

static long count_words(const char *s)
{
    long n = 0;
    for (const char *p = s; *p; p++)
        n += *p != ' ' && (p == s || p[-1] == ' ');
    return n;
}

/* Which filter drops a pair (an index into the counts), or -1 to keep it. */
enum { DROP_EMPTY, DROP_IDENTICAL, DROP_LONG, DROP_RATIO };

static int drop_reason(const char *s, const char *t)
{
    if (!*s || !*t)
        return DROP_EMPTY;
    if (!strcmp(s, t))
        return DROP_IDENTICAL;
    long ws = count_words(s), wt = count_words(t);
    if (ws > NOMUL_LOHELP_MAX_WORDS || wt > NOMUL_LOHELP_MAX_WORDS)
        return DROP_LONG;
    long lo = ws < wt ? ws : wt, hi = ws < wt ? wt : ws;
    if (hi > NOMUL_LOHELP_MAX_RATIO * lo + NOMUL_LOHELP_RATIO_SLACK)
        return DROP_RATIO;
    return -1;
}

int nomul_lohelp_corpus(const char *help_root, const char *src_lang, const char *tgt_lang,
                        const char *out_dir, nomul_lohelp_counts *c)
{
    static const char *const part[3] = {"train", "valid", "test"};
    char sdir[4096], tdir[4096], path[8448];
    char **pages = NULL, **keep = NULL;
    long npages = 0, cpages = 0, nkeep = 0;
    FILE *f[3][2] = {{NULL}};
    nomul_strset seen = {NULL, 0, 0};
    units su = {NULL, 0, 0, 0}, tu = {NULL, 0, 0, 0};
    int rc = -1;
    memset(c, 0, sizeof *c);
    if (!strcmp(src_lang, tgt_lang)) {
        nomul_report(NOMUL_EINVAL, "the source and target languages are both '%s'", src_lang);
        return -1;
    }
    if (language_dir(help_root, src_lang, sdir, sizeof sdir) ||
        language_dir(help_root, tgt_lang, tdir, sizeof tdir))
        return -1;
    if (walk(sdir, "", &pages, &npages, &cpages))
        goto out;
    if (npages == 0) {
        nomul_report(NOMUL_EFORMAT, "no .html pages under '%s'", sdir);
        goto out;
    }
    qsort(pages, (size_t)npages, sizeof *pages, by_string);
    if (nomul_text_mkdirs(out_dir))
        goto out;
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 2; l++) {
            snprintf(path, sizeof path, "%s/%s.%s", out_dir, part[k], l ? tgt_lang : src_lang);
            if (!(f[k][l] = fopen(path, "w"))) {
                nomul_report(NOMUL_EIO, "cannot write '%s': %s", path, strerror(errno));
                goto out;
            }
        }
    size_t cap_keep = 0;
    for (long p = 0; p < npages; p++) {
        c->pages++;
        snprintf(path, sizeof path, "%s/%s", tdir, pages[p]);
        struct stat st;
        if (stat(path, &st) || !S_ISREG(st.st_mode))
            continue; /* a page in one language only */
        c->pages_paired++;
        if (read_page(path, &tu))
            goto out;
        snprintf(path, sizeof path, "%s/%s", sdir, pages[p]);
        if (read_page(path, &su))
            goto out;
        c->units += su.n;
        for (long i = 0; i < su.n; i++) {
            const char *t = units_find(&tu, su.u[i].id);
            if (!t)
                continue; /* an id in one language only */
            c->paired++;
            char *s = su.u[i].text;
            int why = drop_reason(s, t);
            if (why >= 0) {
                c->dropped[why]++;
                continue;
            }
            int fresh = nomul_strset_add(&seen, s);
            if (fresh < 0)
                goto oom;
            if (!fresh) {
                c->duplicates++;
                continue;
            }
            if ((size_t)nkeep == cap_keep) { /* the set points into these */
                cap_keep = cap_keep ? 2 * cap_keep : 4096;
                char **nk = realloc(keep, sizeof *nk * cap_keep);
                if (!nk)
                    goto oom;
                keep = nk;
            }
            keep[nkeep++] = s;
            su.u[i].text = NULL;
            /* the split: a hash of the source text, mod 1000: 0–28 test, 29–57 valid */
            int h = (int)(nomul_text_hash(s) % 1000);
            int which = h < 29 ? 2 : h < 58 ? 1 : 0;
            fprintf(f[which][0], "%s\n", s);
            fprintf(f[which][1], "%s\n", t);
            c->split[which]++;
        }
        units_free(&su);
        units_free(&tu);
    }
    rc = 0;
    goto out;
oom:
    nomul_report(NOMUL_ENOMEM, "out of memory");
out:
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 2; l++)
            if (f[k][l] && fclose(f[k][l]) && rc == 0) {
                nomul_report(NOMUL_EIO, "writing into '%s' failed", out_dir);
                rc = -1;
            }
    units_free(&su);
    units_free(&tu);
    free(seen.slot);
    nomul_text_free_lines(keep, nkeep);
    nomul_text_free_lines(pages, npages);
    return rc;
}
