/*
 * cifar.c — CIFAR-10 / CIFAR-100 binary batches into an image set.
 *
 * A record is the label byte(s) and then 3072 pixel bytes: the 1024 red
 * values of the 32×32 image in row order, then green, then blue. The set
 * keeps pixels in height, width, channel order, like IDX and image files,
 * so each record is transposed once while reading.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/internal.h"
#include "nomul/data.h"

enum { SIDE = 32, CH = 3, PIX = SIDE * SIDE * CH };

nomul_image_set *nomul_image_set_from_cifar(const char *const *paths, int npaths,
                                            int label_bytes)
{
    if (!paths || npaths < 1 || (label_bytes != 1 && label_bytes != 2)) {
        nomul_report(NOMUL_EINVAL, "nomul_image_set_from_cifar: want at least one file and "
                                   "1 (CIFAR-10) or 2 (CIFAR-100) label bytes");
        return NULL;
    }
    const long rec = label_bytes + PIX;
    const int classes = label_bytes == 1 ? 10 : 100;
    long total = 0;
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        if (!paths[i] || stat(paths[i], &st) != 0) {
            nomul_report(NOMUL_EINVAL, "%s: cannot open: %s", paths[i] ? paths[i] : "(null)",
                         strerror(errno));
            return NULL;
        }
        if (!S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size % rec != 0) {
            nomul_report(NOMUL_EINVAL,
                         "%s: not a CIFAR-%d batch: %lld bytes is not a whole number of "
                         "%ld-byte records",
                         paths[i], classes, (long long)st.st_size, rec);
            return NULL;
        }
        total += (long)(st.st_size / rec);
    }
    nomul_image_set *s = calloc(1, sizeof *s);
    unsigned char *buf = malloc((size_t)rec);
    if (s) {
        s->pixels = malloc((size_t)total * PIX);
        s->labels = malloc((size_t)total * sizeof *s->labels);
    }
    if (!s || !buf || !s->pixels || !s->labels) {
        nomul_report(NOMUL_ENOMEM, "CIFAR: out of memory for %ld images", total);
        goto fail;
    }
    s->h = s->w = SIDE;
    s->c = CH;
    s->classes = classes;
    long at = 0;
    for (int i = 0; i < npaths; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            nomul_report(NOMUL_EINVAL, "%s: cannot open: %s", paths[i], strerror(errno));
            goto fail;
        }
        size_t got;
        long in_file = 0;
        while ((got = fread(buf, 1, (size_t)rec, f)) == (size_t)rec && at < total) {
            int label = buf[label_bytes - 1];
            if (label >= classes) {
                nomul_report(NOMUL_EINVAL, "%s: record %ld has label %d, not below %d classes",
                             paths[i], in_file, label, classes);
                fclose(f);
                goto fail;
            }
            s->labels[at] = label;
            const unsigned char *p = buf + label_bytes;
            unsigned char *o = s->pixels + (size_t)at * PIX;
            for (int c = 0; c < CH; c++)
                for (int q = 0; q < SIDE * SIDE; q++)
                    o[q * CH + c] = p[c * SIDE * SIDE + q];
            at++;
            in_file++;
        }
        int err = ferror(f);
        fclose(f);
        if (err || got != 0) {
            nomul_report(NOMUL_EINVAL, "%s: %s", paths[i],
                         err ? "read error" : "changed size while being read");
            goto fail;
        }
    }
    if (at != total) {
        nomul_report(NOMUL_EINVAL, "CIFAR: the files changed size while being read");
        goto fail;
    }
    s->n = total;
    free(buf);
    return s;
fail:
    free(buf);
    nomul_image_set_free(s);
    return NULL;
}
