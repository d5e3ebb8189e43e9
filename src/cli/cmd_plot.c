/*
 * cmd_plot.c — `nomul plot`: curves of one or several runs' metric logs
 * (JSON lines, one object per evaluation or logging step) as an SVG file,
 * one panel per metric, one coloured line per run, so a baseline and its
 * piecewise affine variants compare at a glance. A PNG is the same SVG
 * rasterized by librsvg (cairo writes the PNG).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librsvg/rsvg.h>

#include "cli.h"

static const char plot_usage[] =
    "usage: nomul plot [options] RUN.jsonl [RUN.jsonl ...]\n"
    "\n"
    "Draws the metrics that training appended to each RUN.jsonl (one JSON object\n"
    "per line, e.g. {\"epoch\": 3, \"step\": 1200, \"train_loss\": 0.41, \"test_acc\": 0.86};\n"
    "NaN and Infinity as Python writes them are accepted and not drawn)\n"
    "as an SVG or PNG file: one panel per metric, one line per run, named after its\n"
    "file.\n"
    "\n"
    "options:\n"
    "  --x KEY          the horizontal axis (default: step if the logs have it, else epoch)\n"
    "  --y KEY,KEY...   the metrics to draw (default: every numeric key but the axes)\n"
    "  -o, --output F   the file to write: F.png is a PNG, anything else SVG\n"
    "                   (default: plot.svg)\n"
    "  --title TEXT     a title above the panels\n";

enum { MAX_KEYS = 32, MAX_RUNS = 16 };

typedef struct {
    double *x, *y;
    int n, cap;
} series;

typedef struct {
    const char *path;
    char label[128];
    cJSON **lines;
    int n;
} run;

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* Python's json module writes NaN, Infinity and -Infinity, which JSON lacks:
 * outside strings they become null (a point not drawn). */
static char *python_json(const char *line)
{
    size_t n = strlen(line);
    char *o = malloc(2 * n + 1), *w = o;
    int in_str = 0;
    if (!o)
        return NULL;
    for (const char *c = line; *c;) {
        if (in_str) {
            if (*c == '\\' && c[1])
                *w++ = *c++;
            else if (*c == '"')
                in_str = 0;
            *w++ = *c++;
        } else if (*c == '"') {
            in_str = 1;
            *w++ = *c++;
        } else if (!strncmp(c, "NaN", 3) || !strncmp(c, "Infinity", 8) ||
                   !strncmp(c, "-Infinity", 9)) {
            c += *c == 'N' ? 3 : *c == 'I' ? 8 : 9;
            memcpy(w, "null", 4);
            w += 4;
        } else
            *w++ = *c++;
    }
    *w = 0;
    return o;
}

static int load(run *r)
{
    FILE *f = fopen(r->path, "r");
    if (!f) {
        cli_error("plot: cannot open '%s': %s", r->path, strerror(errno));
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, cap_lines = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = 0;
        if (len == 0)
            continue;
        char *clean = python_json(line);
        cJSON *o = clean ? cJSON_Parse(clean) : NULL;
        free(clean);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            cli_error("plot: %s:%d: not a JSON object", r->path, lineno);
            free(line);
            fclose(f);
            return 0;
        }
        if (r->n == cap_lines) {
            cap_lines = cap_lines ? 2 * cap_lines : 256;
            cJSON **nl = realloc(r->lines, (size_t)cap_lines * sizeof *nl);
            if (!nl) {
                cJSON_Delete(o);
                cli_error("plot: out of memory reading '%s'", r->path);
                free(line);
                fclose(f);
                return 0;
            }
            r->lines = nl;
        }
        r->lines[r->n++] = o;
    }
    free(line);
    fclose(f);
    const char *base = strrchr(r->path, '/');
    base = base ? base + 1 : r->path;
    if (!strcmp(base, "metrics.jsonl") && base > r->path) {
        /* a trainer's run folder: name the run by its last two folders */
        const char *from = base - 1; /* the slash */
        for (int up = 0; up < 2 && from > r->path;) {
            from--;
            if (*from == '/')
                up++;
        }
        if (*from == '/')
            from++;
        snprintf(r->label, sizeof r->label, "%.*s", (int)(base - 1 - from), from);
        return 1;
    }
    snprintf(r->label, sizeof r->label, "%s", base);
    char *dot = strrchr(r->label, '.');
    if (dot && dot != r->label)
        *dot = 0;
    return 1;
}

static int has_numeric(const run *runs, int nr, const char *key)
{
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < runs[i].n; j++)
            if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(runs[i].lines[j], key)))
                return 1;
    return 0;
}

/* A 1-2-5 step giving about `want` ticks over [lo, hi]. */
static double tick_step(double lo, double hi, int want)
{
    double raw = (hi - lo) / want, p = pow(10.0, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++)
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

static void panel(FILE *f, double ox, double oy, double w, double h, const char *xkey,
                  const char *ykey, const run *runs, int nr)
{
    const double ml = 60, mr = 15, mt = 28, mb = 40;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < runs[i].n; j++) {
            const cJSON *xv = cJSON_GetObjectItemCaseSensitive(runs[i].lines[j], xkey);
            const cJSON *yv = cJSON_GetObjectItemCaseSensitive(runs[i].lines[j], ykey);
            if (!cJSON_IsNumber(xv) || !cJSON_IsNumber(yv) || !isfinite(xv->valuedouble) ||
                !isfinite(yv->valuedouble))
                continue;
            x0 = fmin(x0, xv->valuedouble), x1 = fmax(x1, xv->valuedouble);
            y0 = fmin(y0, yv->valuedouble), y1 = fmax(y1, yv->valuedouble);
        }
    fprintf(f, "<g transform=\"translate(%.1f,%.1f)\">\n", ox, oy);
    fprintf(f, "<text x=\"%.1f\" y=\"18\" text-anchor=\"middle\" font-weight=\"bold\">", w / 2);
    xml_text(f, ykey);
    fputs("</text>\n", f);
    if (!(x0 <= x1)) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no finite points</text></g>\n",
                w / 2, h / 2);
        return;
    }
    /* a single value gets a range around it on its own scale */
    double dx = x0 != 0 ? fabs(x0) * 0.1 : 0.5, dy = y0 != 0 ? fabs(y0) * 0.1 : 0.5;
    if (x1 == x0)
        x0 -= dx, x1 += dx;
    if (y1 == y0)
        y0 -= dy, y1 += dy;
    double pad = (y1 - y0) * 0.05;
    y0 -= pad, y1 += pad;
    const double pw = w - ml - mr, ph = h - mt - mb;
#define PX(v) (ml + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (mt + (y1 - (v)) / (y1 - y0) * ph)
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\"/>\n", ml, mt, pw, ph);
    double st = tick_step(y0, y1, 5);
    for (double t = ceil(y0 / st) * st; t <= y1 + 1e-9 * st; t += st) {
        double v = fabs(t) < 1e-12 * st ? 0 : t;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%g</text>\n",
                ml, ml + pw, PY(v), PY(v), ml - 4, PY(v) + 4, v);
    }
    st = tick_step(x0, x1, 6);
    for (double t = ceil(x0 / st) * st; t <= x1 + 1e-9 * st; t += st) {
        double v = fabs(t) < 1e-12 * st ? 0 : t;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%g</text>\n",
                PX(v), PX(v), mt, mt + ph, PX(v), mt + ph + 14, v);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">", ml + pw / 2,
            h - 6);
    xml_text(f, xkey);
    fputs("</text>\n", f);
    for (int i = 0; i < nr; i++) {
        fprintf(f, "<polyline class=\"run\" fill=\"none\" stroke-width=\"1.8\" stroke=\"%s\" points=\"",
                palette[i % 10]);
        for (int j = 0; j < runs[i].n; j++) {
            const cJSON *xv = cJSON_GetObjectItemCaseSensitive(runs[i].lines[j], xkey);
            const cJSON *yv = cJSON_GetObjectItemCaseSensitive(runs[i].lines[j], ykey);
            if (cJSON_IsNumber(xv) && cJSON_IsNumber(yv) && isfinite(xv->valuedouble) &&
                isfinite(yv->valuedouble))
                fprintf(f, "%.2f,%.2f ", PX(xv->valuedouble), PY(yv->valuedouble));
        }
        fputs("\"/>\n", f);
    }
#undef PX
#undef PY
    fputs("</g>\n", f);
}

static int ends_with_png(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && (!strcmp(path + n - 4, ".png") || !strcmp(path + n - 4, ".PNG"));
}

/* Rasterizes an SVG document of w×h into a PNG file; 0 or -1 after a message. */
static int svg_to_png(const char *svg, size_t len, double w, double h, const char *png)
{
    GError *err = NULL;
    RsvgHandle *hd = rsvg_handle_new_from_data((const guint8 *)svg, len, &err);
    if (!hd) {
        cli_error("plot: the SVG did not parse for rasterizing: %s", err ? err->message : "?");
        g_clear_error(&err);
        return -1;
    }
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)w, (int)h);
    cairo_t *cr = cairo_create(surf);
    RsvgRectangle vp = {0, 0, w, h};
    int rc = 0;
    if (!rsvg_handle_render_document(hd, cr, &vp, &err)) {
        cli_error("plot: rasterizing failed: %s", err ? err->message : "?");
        g_clear_error(&err);
        rc = -1;
    } else if (cairo_surface_write_to_png(surf, png) != CAIRO_STATUS_SUCCESS) {
        cli_error("plot: cannot write '%s'", png);
        rc = -1;
    }
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
    g_object_unref(hd);
    return rc;
}

int cmd_plot(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "plot");
    const char *xkey = NULL, *ykeys = NULL, *out = "plot.svg", *title = NULL, *arg;
    run runs[MAX_RUNS];
    int nr = 0, rc = CLI_USAGE;
    memset(runs, 0, sizeof runs);
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(plot_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "x")) {
            if (!(xkey = cli_value(&a, "x")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "y")) {
            if (!(ykeys = cli_value(&a, "y")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "output") || !strcmp(arg, "-o")) {
            if (!strcmp(arg, "-o")) {
                if (!(out = cli_next(&a))) {
                    cli_error("plot: option -o needs a value");
                    return CLI_USAGE;
                }
            } else if (!(out = cli_value(&a, "output")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "title")) {
            if (!(title = cli_value(&a, "title")))
                return CLI_USAGE;
        } else if (arg[0] == '-' && arg[1]) {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        } else {
            if (nr == MAX_RUNS) {
                cli_error("plot: at most %d runs in one plot", MAX_RUNS);
                return CLI_USAGE;
            }
            runs[nr++].path = arg;
        }
    }
    if (nr == 0) {
        cli_error("plot: no metric logs given (see 'nomul plot --help')");
        return CLI_USAGE;
    }
    char *keys[MAX_KEYS];
    int nk = 0;
    char *ylist = NULL;
    FILE *f = NULL;
    char tmp[4200] = "";
    for (int i = 0; i < nr; i++)
        if (!load(&runs[i]))
            goto done;
    if (!xkey)
        xkey = has_numeric(runs, nr, "step") ? "step" : "epoch";
    if (!has_numeric(runs, nr, xkey)) {
        cli_error("plot: no run has a numeric '%s' for the horizontal axis", xkey);
        goto done;
    }
    if (ykeys) {
        ylist = strdup(ykeys);
        for (char *save = NULL, *k = strtok_r(ylist, ",", &save); k && nk < MAX_KEYS;
             k = strtok_r(NULL, ",", &save)) {
            if (!has_numeric(runs, nr, k)) {
                cli_error("plot: no run has a numeric '%s'", k);
                goto done;
            }
            keys[nk++] = k;
        }
    } else {
        for (int i = 0; i < nr; i++)
            for (int j = 0; j < runs[i].n; j++)
                for (cJSON *it = runs[i].lines[j]->child; it; it = it->next) {
                    if (!cJSON_IsNumber(it) || !strcmp(it->string, xkey) ||
                        !strcmp(it->string, "step") || !strcmp(it->string, "epoch"))
                        continue;
                    int seen = 0;
                    for (int q = 0; q < nk; q++)
                        seen |= !strcmp(keys[q], it->string);
                    if (!seen && nk < MAX_KEYS)
                        keys[nk++] = it->string;
                }
    }
    if (nk == 0) {
        cli_error("plot: the logs hold no numeric metric besides '%s'", xkey);
        goto done;
    }
    const int cols = nk == 1 ? 1 : 2, rows = (nk + cols - 1) / cols;
    const double pw = 460, ph = 300, top = title ? 40 : 10;
    const double W = cols * pw;
    /* legend columns as wide as the longest label (13 px sans-serif: under
     * 8 px a character), at most 3 */
    size_t longest = 1;
    for (int i = 0; i < nr; i++) {
        size_t chars = 0; /* code points, not bytes */
        for (const unsigned char *q = (const unsigned char *)runs[i].label; *q; q++)
            chars += (*q & 0xC0) != 0x80;
        longest = chars > longest ? chars : longest;
    }
    int lcols = (int)((W - 40) / (30.0 + 8.0 * (double)longest + 16.0));
    lcols = lcols < 1 ? 1 : lcols > 3 ? 3 : lcols;
    const double legend = 24.0 * ((nr + lcols - 1) / lcols) + 10;
    const double H = top + rows * ph + legend;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    const int png = ends_with_png(out);
    char *mem = NULL;
    size_t memlen = 0;
    f = png ? open_memstream(&mem, &memlen) : fopen(tmp, "w");
    if (!f) {
        cli_error("plot: cannot write '%s': %s", out, strerror(errno));
        tmp[0] = 0;
        goto done;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"13\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    if (title) {
        fprintf(f, "<text x=\"%.1f\" y=\"26\" text-anchor=\"middle\" font-size=\"17\">", W / 2);
        xml_text(f, title);
        fputs("</text>\n", f);
    }
    for (int k = 0; k < nk; k++)
        panel(f, (k % cols) * pw, top + (k / cols) * ph, pw, ph, xkey, keys[k], runs, nr);
    for (int i = 0; i < nr; i++) {
        double lx = 20 + (i % lcols) * (W - 40) / lcols;
        double ly = top + rows * ph + 20 + 24 * (i / lcols);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"3\"/><text class=\"legend\" x=\"%.1f\" y=\"%.1f\">",
                lx, lx + 24, ly - 4, ly - 4, palette[i % 10], lx + 30, ly);
        xml_text(f, runs[i].label);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
    if (ferror(f) | fclose(f)) {
        f = NULL;
        free(mem);
        cli_error("plot: writing '%s' failed", out);
        goto done;
    }
    f = NULL;
    if (png) {
        int bad = svg_to_png(mem, memlen, W, H, tmp);
        free(mem);
        if (bad)
            goto done;
    }
    if (rename(tmp, out) != 0) {
        cli_error("plot: cannot write '%s': %s", out, strerror(errno));
        goto done;
    }
    tmp[0] = 0;
    printf("%s: %d metric%s of %d run%s against %s\n", out, nk, nk == 1 ? "" : "s", nr,
           nr == 1 ? "" : "s", xkey);
    rc = CLI_OK;
done:
    if (f)
        fclose(f);
    if (tmp[0])
        unlink(tmp);
    free(ylist);
    for (int i = 0; i < nr; i++) {
        for (int j = 0; j < runs[i].n; j++)
            cJSON_Delete(runs[i].lines[j]);
        free(runs[i].lines);
    }
    return rc;
}
