/*
 * progress.c — the progress bar and the metric log.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/internal.h"
#include "nomul/progress.h"

struct nomul_progress {
    FILE *out;
    char label[64];
    long total, done, items;
    int tty;
    double interval, start, last_line, now;
    char extra[128];
};

static double monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void nomul_format_duration(double s, char *buf, int size)
{
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, (size_t)size, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, (size_t)size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, (size_t)size, "%02ld:%02ld", t / 60, t % 60);
}

nomul_progress *nomul_progress_new(FILE *out, const char *label, long total, int tty,
                                   double interval)
{
    if (!out || total < 0) {
        nomul_report(NOMUL_EINVAL, "nomul_progress_new: no output or a negative total");
        return NULL;
    }
    nomul_progress *p = calloc(1, sizeof *p);
    if (!p) {
        nomul_report(NOMUL_ENOMEM, "nomul_progress_new: out of memory");
        return NULL;
    }
    p->out = out;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->tty = tty >= 0 ? tty : isatty(fileno(out));
    p->interval = interval > 0 ? interval : 10.0;
    p->start = monotonic();
    return p;
}

static void draw(nomul_progress *p, int final)
{
    const double el = p->now;
    char eta[32], elapsed[32], rate[48] = "";
    nomul_format_duration(p->done > 0 && p->done < p->total
                              ? el / (double)p->done * (double)(p->total - p->done)
                              : (p->done >= p->total ? 0 : -1),
                          eta, sizeof eta);
    nomul_format_duration(el, elapsed, sizeof elapsed);
    if (el > 0 && p->items > 0)
        snprintf(rate, sizeof rate, " %.1f/s", (double)p->items / el);
    const int pct = p->total ? (int)(100 * p->done / p->total) : 100;
    if (p->tty) {
        enum { WIDTH = 24 };
        char bar[WIDTH + 1];
        int fill = p->total ? (int)(WIDTH * p->done / p->total) : WIDTH;
        for (int i = 0; i < WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = 0;
        fprintf(p->out, "\r%s [%s] %3d%% %ld/%ld %s<%s%s%s%s\033[K%s", p->label, bar, pct, p->done,
                p->total, elapsed, eta, rate, p->extra[0] ? " " : "", p->extra, final ? "\n" : "");
    } else {
        fprintf(p->out, "%s %3d%% %ld/%ld elapsed %s eta %s%s%s%s\n", p->label, pct, p->done,
                p->total, elapsed, eta, rate, p->extra[0] ? " " : "", p->extra);
    }
    fflush(p->out);
}

void nomul_progress_update_at(nomul_progress *p, long done, long items, const char *extra,
                              double now)
{
    if (!p)
        return;
    p->done = done < 0 ? 0 : done > p->total ? p->total : done;
    p->items = items;
    p->now = now;
    snprintf(p->extra, sizeof p->extra, "%s", extra ? extra : "");
    if (p->tty)
        draw(p, 0);
    else if (now - p->last_line >= p->interval) {
        draw(p, 0);
        p->last_line = now;
    }
}

void nomul_progress_update(nomul_progress *p, long done, long items, const char *extra)
{
    if (p)
        nomul_progress_update_at(p, done, items, extra, monotonic() - p->start);
}

void nomul_progress_finish(nomul_progress *p, const char *extra)
{
    if (!p)
        return;
    if (extra)
        snprintf(p->extra, sizeof p->extra, "%s", extra);
    if (p->now == 0)
        p->now = monotonic() - p->start;
    draw(p, 1);
    free(p);
}

int nomul_metrics_append(const char *path, int n, const char *const *keys, const double *values)
{
    if (!path || n < 0 || (n && (!keys || !values))) {
        nomul_report(NOMUL_EINVAL, "nomul_metrics_append: bad arguments");
        return -1;
    }
    FILE *f = fopen(path, "a");
    if (!f) {
        nomul_report(NOMUL_EINVAL, "%s: cannot append metrics: %s", path, strerror(errno));
        return -1;
    }
    fputc('{', f);
    for (int i = 0; i < n; i++) {
        fputs(i ? ", \"" : "\"", f);
        for (const char *c = keys[i]; *c; c++) {
            if ((unsigned char)*c < 0x20)
                fprintf(f, "\\u%04x", (unsigned char)*c);
            else {
                if (*c == '"' || *c == '\\')
                    fputc('\\', f);
                fputc(*c, f);
            }
        }
        if (isfinite(values[i]))
            fprintf(f, "\": %.9g", values[i]);
        else
            fputs("\": null", f);
    }
    fputs("}\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        nomul_report(NOMUL_EINVAL, "%s: writing metrics failed", path);
        return -1;
    }
    return 0;
}
