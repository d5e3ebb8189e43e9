/*
 * idx.c — IDX arrays (MNIST, Fashion-MNIST), plain or gzip, through zlib.
 *
 * A gzip file (by its magic 1f 8b) is inflated with zlib, a plain one read as
 * it is. The header is magic 0x00 0x00 TYPE NDIM, then NDIM big-endian
 * 32-bit dimensions, then the elements, big-endian. Sizes are checked
 * against overflow, a plain file's size against the header before anything
 * is allocated, a gzip file's data buffer grows with what arrives (a short
 * file that declares gigabytes costs what it holds), and the data must end
 * exactly where the header says: no byte after it, gzip or not.
 */
#include <errno.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "../core/internal.h"
#include "nomul/data.h"

static int elem_size(int type)
{
    switch (type) {
    case NOMUL_IDX_U8:
    case NOMUL_IDX_I8:
        return 1;
    case NOMUL_IDX_I16:
        return 2;
    case NOMUL_IDX_I32:
    case NOMUL_IDX_F32:
        return 4;
    case NOMUL_IDX_F64:
        return 8;
    default:
        return 0;
    }
}

/* The bytes of a plain or gzip file (several gzip members in a row, as gzip
 * itself writes them with -c >>, are one stream). Anything after the last
 * gzip member that is not another member is an error, not ignored: a file
 * with trailing garbage is not the file its header describes. */
typedef struct idx_in {
    FILE *f;
    const char *path;
    int gz;      /* 1: inflate; 0: plain */
    int eof;     /* the data ended (plain: end of file; gzip: after the last member) */
    z_stream z;
    unsigned char buf[1 << 16];
} idx_in;

static int in_open(idx_in *in, const char *path)
{
    memset(in, 0, sizeof *in);
    in->path = path;
    in->f = fopen(path, "rb");
    if (!in->f) {
        nomul_report(NOMUL_EINVAL, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int c0 = getc(in->f), c1 = c0 == EOF ? EOF : getc(in->f);
    rewind(in->f);
    in->gz = c0 == 0x1f && c1 == 0x8b;
    if (in->gz && inflateInit2(&in->z, 15 + 16) != Z_OK) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for zlib", path);
        fclose(in->f);
        in->f = NULL;
        return -1;
    }
    return 0;
}

static void in_close(idx_in *in)
{
    if (in->gz)
        inflateEnd(&in->z);
    if (in->f)
        fclose(in->f);
    in->f = NULL;
}

/* The size of a plain file in bytes, or -1 (gzip, or unknown). */
static long in_plain_size(idx_in *in)
{
    if (in->gz || fseek(in->f, 0, SEEK_END))
        return -1;
    long size = ftell(in->f);
    rewind(in->f);
    return size;
}

/* Reads up to n bytes into dst; returns how many came (fewer only at the
 * end of the data), or -1 after a report. */
static long in_read(idx_in *in, void *dst, size_t n)
{
    if (!in->gz) {
        size_t got = fread(dst, 1, n, in->f);
        if (got < n && ferror(in->f)) {
            nomul_report(NOMUL_EINVAL, "%s: cannot read: %s", in->path, strerror(errno));
            return -1;
        }
        return (long)got;
    }
    size_t got = 0;
    while (got < n && !in->eof) {
        if (in->z.avail_in == 0) {
            in->z.next_in = in->buf;
            in->z.avail_in = (uInt)fread(in->buf, 1, sizeof in->buf, in->f);
            if (ferror(in->f)) {
                nomul_report(NOMUL_EINVAL, "%s: cannot read: %s", in->path, strerror(errno));
                return -1;
            }
            if (in->z.avail_in == 0) {
                nomul_report(NOMUL_EINVAL, "%s: truncated gzip data", in->path);
                return -1;
            }
        }
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        in->z.next_out = (unsigned char *)dst + got;
        in->z.avail_out = (uInt)want;
        int r = inflate(&in->z, Z_NO_FLUSH);
        got += want - in->z.avail_out;
        if (r == Z_STREAM_END) {
            /* another member, or the end of the file; anything else is garbage */
            if (in->z.avail_in == 0) {
                in->z.next_in = in->buf;
                in->z.avail_in = (uInt)fread(in->buf, 1, sizeof in->buf, in->f);
            }
            if (in->z.avail_in == 0) {
                in->eof = 1;
            } else if (in->z.avail_in >= 2 && in->z.next_in[0] == 0x1f &&
                       in->z.next_in[1] == 0x8b) {
                inflateReset(&in->z);
            } else {
                nomul_report(NOMUL_EINVAL, "%s: bytes after the end of the gzip data", in->path);
                return -1;
            }
        } else if (r != Z_OK && r != Z_BUF_ERROR) {
            nomul_report(NOMUL_EINVAL, "%s: corrupt gzip data: %s", in->path,
                         in->z.msg ? in->z.msg : "inflate failed");
            return -1;
        }
    }
    return (long)got;
}

/* Reads exactly n bytes; 0 when all came, else reports what went wrong. */
static int read_exact(idx_in *in, void *dst, size_t n, const char *what)
{
    long got = in_read(in, dst, n);
    if (got < 0)
        return -1;
    if ((size_t)got < n) {
        nomul_report(NOMUL_EINVAL, "%s: truncated: the %s needs %zu bytes, the file ends after %ld",
                     in->path, what, n, got);
        return -1;
    }
    return 0;
}

/* Reads the n data bytes the header declares into a buffer that grows with
 * what actually arrives (doubling from 1 MiB), so a short file that declares
 * gigabytes costs what it holds, not what it claims. */
static unsigned char *read_data(idx_in *in, size_t n)
{
    size_t cap = n < (1u << 20) ? n : (1u << 20), got = 0;
    unsigned char *d = malloc(cap ? cap : 1);
    while (d && got < n) {
        if (got == cap) {
            size_t ncap = cap > n / 2 ? n : 2 * cap;
            unsigned char *nd = realloc(d, ncap);
            if (!nd) {
                free(d);
                nomul_report(NOMUL_ENOMEM, "%s: out of memory for %zu bytes of data", in->path, n);
                return NULL;
            }
            d = nd;
            cap = ncap;
        }
        long r = in_read(in, d + got, cap - got);
        if (r < 0) {
            free(d);
            return NULL;
        }
        if (r == 0) {
            nomul_report(NOMUL_EINVAL,
                         "%s: truncated: the header declares %zu bytes of data, the file holds %zu",
                         in->path, n, got);
            free(d);
            return NULL;
        }
        got += (size_t)r;
    }
    if (!d)
        nomul_report(NOMUL_ENOMEM, "%s: out of memory for %zu bytes of data", in->path, n);
    return d;
}

static void to_host(void *data, long count, int size)
{
    unsigned char *p = data;
    if (size == 1)
        return;
    for (long i = 0; i < count; i++, p += size)
        for (int a = 0, b = size - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

nomul_idx *nomul_idx_read(const char *path)
{
    if (!path) {
        nomul_report(NOMUL_EINVAL, "nomul_idx_read: no path");
        return NULL;
    }
    idx_in *in = malloc(sizeof *in);
    nomul_idx *a = calloc(1, sizeof *a);
    if (!in || !a) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory", path);
        free(in);
        free(a);
        return NULL;
    }
    if (in_open(in, path)) {
        free(in);
        free(a);
        return NULL;
    }
    unsigned char h[4];
    if (read_exact(in, h, 4, "header"))
        goto fail;
    if (h[0] || h[1] || !elem_size(h[2]) || h[3] < 1 || h[3] > NOMUL_IDX_MAX_DIMS) {
        nomul_report(NOMUL_EINVAL,
                     "%s: not an IDX file: magic %02x %02x %02x %02x (want 00 00, a type of "
                     "08/09/0b/0c/0d/0e and 1..%d dimensions)",
                     path, h[0], h[1], h[2], h[3], NOMUL_IDX_MAX_DIMS);
        goto fail;
    }
    a->type = (nomul_idx_type)h[2];
    a->ndim = h[3];
    a->elem_bytes = elem_size(h[2]);
    a->count = 1;
    for (int d = 0; d < a->ndim; d++) {
        unsigned char b[4];
        if (read_exact(in, b, 4, "dimensions"))
            goto fail;
        unsigned long v = (unsigned long)b[0] << 24 | (unsigned long)b[1] << 16 |
                          (unsigned long)b[2] << 8 | b[3];
        if (v > INT_MAX) {
            nomul_report(NOMUL_EINVAL, "%s: dimension %d is %lu, beyond any real dataset", path,
                         d, v);
            goto fail;
        }
        a->dims[d] = (long)v;
        if (v && a->count > (LONG_MAX / 8) / (long)v) {
            nomul_report(NOMUL_EINVAL, "%s: the dimensions multiply past any addressable size",
                         path);
            goto fail;
        }
        a->count *= (long)v;
    }
    size_t bytes = (size_t)a->count * (size_t)a->elem_bytes;
    long file_size = in_plain_size(in);
    if (file_size >= 0) { /* a plain file: its size must be the header's exactly */
        size_t header = 4 + 4 * (size_t)a->ndim;
        if ((size_t)file_size != header + bytes) {
            nomul_report(NOMUL_EINVAL,
                         "%s: %s: the header declares %ld elements of %d bytes (%zu bytes of "
                         "data) but the file holds %ld bytes after its %zu-byte header",
                         path, (size_t)file_size < header + bytes ? "truncated" : "bytes after the data",
                         a->count, a->elem_bytes, bytes, file_size - (long)header, header);
            goto fail;
        }
        if (fseek(in->f, (long)header, SEEK_SET)) {
            nomul_report(NOMUL_EINVAL, "%s: cannot seek: %s", path, strerror(errno));
            goto fail;
        }
    }
    a->data = read_data(in, bytes);
    if (!a->data)
        goto fail;
    unsigned char extra;
    long r = in_read(in, &extra, 1);
    if (r != 0) {
        if (r > 0)
            nomul_report(NOMUL_EINVAL,
                         "%s: bytes after the data: the header says %ld elements of %d bytes",
                         path, a->count, a->elem_bytes);
        goto fail;
    }
    to_host(a->data, a->count, a->elem_bytes);
    in_close(in);
    free(in);
    return a;
fail:
    in_close(in);
    free(in);
    nomul_idx_free(a);
    return NULL;
}

void nomul_idx_free(nomul_idx *a)
{
    if (!a)
        return;
    free(a->data);
    free(a);
}

int nomul_idx_write(const char *path, const nomul_idx *a, int gzip)
{
    if (!path || !a || a->ndim < 1 || a->ndim > NOMUL_IDX_MAX_DIMS || !elem_size(a->type) ||
        (a->count && !a->data)) {
        nomul_report(NOMUL_EINVAL, "nomul_idx_write: %s: bad array", path ? path : "(no path)");
        return -1;
    }
    long count = 1;
    for (int d = 0; d < a->ndim; d++) {
        if (a->dims[d] < 0 || a->dims[d] > INT_MAX) {
            nomul_report(NOMUL_EINVAL, "nomul_idx_write: %s: dimension %d is %ld", path, d,
                         a->dims[d]);
            return -1;
        }
        count *= a->dims[d];
    }
    if (count != a->count) {
        nomul_report(NOMUL_EINVAL, "nomul_idx_write: %s: count %ld, dimensions give %ld", path,
                     a->count, count);
        return -1;
    }
    gzFile f = gzopen(path, gzip ? "wb6" : "wbT");
    if (!f) {
        nomul_report(NOMUL_EINVAL, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    int size = elem_size(a->type), ok = 1;
    unsigned char h[4] = {0, 0, (unsigned char)a->type, (unsigned char)a->ndim};
    ok &= gzwrite(f, h, 4) == 4;
    for (int d = 0; d < a->ndim; d++) {
        unsigned long v = (unsigned long)a->dims[d];
        unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                              (unsigned char)(v >> 8), (unsigned char)v};
        ok &= gzwrite(f, b, 4) == 4;
    }
    const unsigned char *p = a->data;
    unsigned char buf[4096];
    for (long i = 0; ok && i < a->count;) {
        long m = 0;
        for (; i < a->count && m + size <= (long)sizeof buf; i++, m += size)
            for (int j = 0; j < size; j++)
                buf[m + j] = p[i * size + (size - 1 - j)];
        ok &= gzwrite(f, buf, (unsigned)m) == (int)m;
    }
    ok &= gzclose(f) == Z_OK;
    if (!ok) {
        nomul_report(NOMUL_EINVAL, "%s: write failed", path);
        return -1;
    }
    return 0;
}

nomul_image_set *nomul_image_set_from_idx(const char *images_path, const char *labels_path,
                                          int classes)
{
    nomul_idx *im = nomul_idx_read(images_path);
    nomul_idx *lb = im ? nomul_idx_read(labels_path) : NULL;
    nomul_image_set *s = NULL;
    if (!lb)
        goto done;
    if (im->type != NOMUL_IDX_U8 || (im->ndim != 3 && im->ndim != 4)) {
        nomul_report(NOMUL_EINVAL,
                     "%s: images must be unsigned bytes of N×H×W or N×H×W×C (type %#x, %d "
                     "dimensions)",
                     images_path, im->type, im->ndim);
        goto done;
    }
    if (lb->type != NOMUL_IDX_U8 || lb->ndim != 1) {
        nomul_report(NOMUL_EINVAL, "%s: labels must be unsigned bytes of N (type %#x, %d dimensions)",
                     labels_path, lb->type, lb->ndim);
        goto done;
    }
    if (im->dims[0] != lb->dims[0]) {
        nomul_report(NOMUL_EINVAL, "%s holds %ld images but %s holds %ld labels", images_path,
                     im->dims[0], labels_path, lb->dims[0]);
        goto done;
    }
    if (classes < 0 || classes > 256) {
        nomul_report(NOMUL_EINVAL, "nomul_image_set_from_idx: classes is %d (want 0..256)",
                     classes);
        goto done;
    }
    const uint8_t *l = lb->data;
    int top = -1;
    for (long i = 0; i < lb->dims[0]; i++) {
        if (classes && l[i] >= classes) {
            nomul_report(NOMUL_EINVAL, "%s: label %d of item %ld is not below the %d classes",
                         labels_path, l[i], i, classes);
            goto done;
        }
        top = l[i] > top ? l[i] : top;
    }
    s = calloc(1, sizeof *s);
    int32_t *labels = malloc((size_t)(lb->dims[0] ? lb->dims[0] : 1) * sizeof *labels);
    if (!s || !labels) {
        free(s);
        free(labels);
        s = NULL;
        nomul_report(NOMUL_ENOMEM, "%s: out of memory", labels_path);
        goto done;
    }
    for (long i = 0; i < lb->dims[0]; i++)
        labels[i] = l[i];
    s->n = im->dims[0];
    s->h = (int)im->dims[1];
    s->w = (int)im->dims[2];
    s->c = im->ndim == 4 ? (int)im->dims[3] : 1;
    s->classes = classes ? classes : top + 1;
    s->pixels = im->data; /* the set takes the image bytes */
    im->data = NULL;
    s->labels = labels;
done:
    nomul_idx_free(im);
    nomul_idx_free(lb);
    return s;
}

void nomul_image_set_free(nomul_image_set *s)
{
    if (!s)
        return;
    free(s->pixels);
    free(s->labels);
    free(s);
}
