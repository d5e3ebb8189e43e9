/*
 * safetensors.c — checkpoints in the safetensors format, written atomically
 * (temporary file, fsync, rename, fsync of the folder) and read with every
 * promise of the format checked. The JSON header is made and parsed by
 * cJSON; x86-64 is little-endian, as the format is, so tensor bytes are
 * copied as they are.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../core/internal.h"
#include "nomul/safetensors.h"
#include "trainer_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies tensor bytes as they are: it needs a little-endian host"
#endif

enum { HEADER_MAX = 100000000 }; /* what the reference implementation accepts */

static int numel_of(int ndim, const int64_t *shape, int64_t *out)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && n > (INT64_MAX / 4) / shape[d]))
            return -1;
        n *= shape[d];
    }
    *out = n;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that occurs twice among n names, or NULL: sorted, then
 * neighbours compared, so a header of many tensors costs O(n log n). */
static const char *twice_named(const char **names, int n)
{
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i]))
            return names[i];
    return NULL;
}

void (*nomul_st_write_hook)(int written, int n);

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int nomul_safetensors_write(const char *path, const nomul_st_tensor *t, int n,
                            const char *const *meta, int nmeta)
{
    if (!path || n < 0 || (n && !t) || nmeta < 0 || (nmeta && !meta)) {
        nomul_report(NOMUL_EINVAL, "nomul_safetensors_write: bad arguments");
        return -1;
    }
    cJSON *root = cJSON_CreateObject();
    char *json = NULL, *tmp = NULL;
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    int fd = -1, rc = -1;
    if (!root || !names)
        goto oom;
    if (nmeta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m)
            goto oom;
        for (int i = 0; i < nmeta; i++) {
            if (!meta[2 * i] || !meta[2 * i + 1]) {
                nomul_report(NOMUL_EINVAL, "%s: metadata pair %d has a NULL key or value", path, i);
                goto done;
            }
            if (!cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1]))
                goto oom;
        }
    }
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        int64_t numel;
        if (!t[i].name || !*t[i].name || !strcmp(t[i].name, "__metadata__") || t[i].ndim < 0 ||
            t[i].ndim > NOMUL_ST_MAX_DIMS || (t[i].ndim && !t[i].shape) ||
            numel_of(t[i].ndim, t[i].shape, &numel) || (numel && !t[i].data)) {
            nomul_report(NOMUL_EINVAL, "%s: tensor %d (%s): bad name, shape or data", path, i,
                         t[i].name ? t[i].name : "no name");
            goto done;
        }
        names[i] = t[i].name;
    }
    const char *dup = twice_named(names, n);
    if (dup) {
        nomul_report(NOMUL_EINVAL, "%s: two tensors are named %s", path, dup);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int64_t numel = 0;
        numel_of(t[i].ndim, t[i].shape, &numel);
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = shape && cJSON_AddStringToObject(e, "dtype", "F32")
                          ? cJSON_AddArrayToObject(e, "data_offsets")
                          : NULL;
        if (!offs)
            goto oom;
        for (int d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += 4 * numel;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
    }
    json = cJSON_PrintUnformatted(root);
    if (!json)
        goto oom;
    size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
    unsigned char len8[8];
    for (int b = 0; b < 8; b++)
        len8[b] = (unsigned char)((uint64_t)padded >> (8 * b));

    size_t pl = strlen(path);
    tmp = malloc(pl + 16);
    if (!tmp)
        goto oom;
    snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        nomul_report(NOMUL_EINVAL, "%s: cannot create a file beside it: %s", path,
                     strerror(errno));
        free(tmp);
        tmp = NULL;
        goto done;
    }
    static const char spaces[8] = "        ";
    int ok = !write_all(fd, len8, 8) && !write_all(fd, json, jl) &&
             !write_all(fd, spaces, padded - jl);
    for (int i = 0; ok && i < n; i++) {
        int64_t numel = 0;
        numel_of(t[i].ndim, t[i].shape, &numel);
        ok = !write_all(fd, t[i].data, (size_t)numel * 4);
        if (ok && nomul_st_write_hook)
            nomul_st_write_hook(i + 1, n);
    }
    if (!ok || fsync(fd) != 0) {
        nomul_report(NOMUL_EINVAL, "%s: writing failed (%s); the previous file is untouched",
                     path, strerror(errno));
        goto done;
    }
    (void)fchmod(fd, 0644);
    if (close(fd) != 0) {
        fd = -1;
        nomul_report(NOMUL_EINVAL, "%s: writing failed (%s); the previous file is untouched",
                     path, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        nomul_report(NOMUL_EINVAL, "%s: cannot put the new file in place: %s", path,
                     strerror(errno));
        goto done;
    }
    free(tmp);
    tmp = NULL;
    /* the rename itself reaches the disk with the folder's entry */
    char *copy = strdup(path);
    if (copy) {
        int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(copy);
    }
    rc = 0;
    goto done;
oom:
    nomul_report(NOMUL_ENOMEM, "%s: out of memory", path);
done:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(json);
    free(names);
    cJSON_Delete(root);
    return rc;
}

typedef struct {
    char *name;
    int ndim;
    int64_t shape[NOMUL_ST_MAX_DIMS];
    int64_t begin, end;
} entry;

struct nomul_safetensors {
    int n;
    entry *e;
    entry **byname; /* e sorted by name, for the duplicate check and lookups */
    unsigned char *bytes;
    cJSON *meta; /* the "__metadata__" object, detached */
};

static int as_index(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || (double)(int64_t)d != d)
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int by_begin(const void *a, const void *b)
{
    const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int entry_by_name(const void *a, const void *b)
{
    return strcmp((*(entry *const *)a)->name, (*(entry *const *)b)->name);
}

nomul_safetensors *nomul_safetensors_read(const char *path)
{
    FILE *fp = path ? fopen(path, "rb") : NULL;
    if (!fp) {
        nomul_report(NOMUL_EINVAL, "%s: cannot open: %s", path ? path : "(no path)",
                     strerror(errno));
        return NULL;
    }
    nomul_safetensors *f = calloc(1, sizeof *f);
    char *hdr = NULL;
    cJSON *root = NULL;
    entry **order = NULL;
    struct stat st;
    unsigned char len8[8];
    if (!f)
        goto oom;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        nomul_report(NOMUL_EINVAL, "%s: not a regular file", path);
        goto fail;
    }
    if (fread(len8, 1, 8, fp) != 8) {
        nomul_report(NOMUL_EINVAL, "%s: truncated: no 8-byte header length", path);
        goto fail;
    }
    uint64_t hl = 0;
    for (int b = 7; b >= 0; b--)
        hl = hl << 8 | len8[b];
    if (hl > HEADER_MAX || hl > (uint64_t)st.st_size - 8) {
        nomul_report(NOMUL_EINVAL,
                     "%s: not a safetensors file: header length %llu, the file has %lld bytes",
                     path, (unsigned long long)hl, (long long)st.st_size);
        goto fail;
    }
    hdr = malloc(hl + 1);
    if (!hdr)
        goto oom;
    if (fread(hdr, 1, hl, fp) != hl) {
        nomul_report(NOMUL_EINVAL, "%s: truncated header", path);
        goto fail;
    }
    hdr[hl] = 0;
    root = cJSON_ParseWithLength(hdr, hl);
    if (!cJSON_IsObject(root)) {
        nomul_report(NOMUL_EINVAL, "%s: the header is not a JSON object", path);
        goto fail;
    }
    f->meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
    if (f->meta) {
        int ok = cJSON_IsObject(f->meta);
        for (cJSON *m = ok ? f->meta->child : NULL; m; m = m->next)
            ok &= cJSON_IsString(m);
        if (!ok) {
            nomul_report(NOMUL_EINVAL, "%s: __metadata__ must map strings to strings", path);
            goto fail;
        }
    }
    int count = cJSON_GetArraySize(root);
    f->e = calloc((size_t)(count ? count : 1), sizeof *f->e);
    order = malloc((size_t)(count ? count : 1) * sizeof *order);
    f->byname = malloc((size_t)(count ? count : 1) * sizeof *f->byname);
    if (!f->e || !order || !f->byname)
        goto oom;
    for (cJSON *it = root->child; it; it = it->next) {
        entry *e = &f->e[f->n];
        const char *name = it->string;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
            cJSON_GetArraySize(of) != 2 || cJSON_GetArraySize(sh) > NOMUL_ST_MAX_DIMS) {
            nomul_report(NOMUL_EINVAL,
                         "%s: tensor %s: want dtype, shape (up to %d dimensions) and two "
                         "data_offsets",
                         path, name, NOMUL_ST_MAX_DIMS);
            goto fail;
        }
        if (strcmp(dt->valuestring, "F32")) {
            nomul_report(NOMUL_EINVAL, "%s: tensor %s is %s; nomul reads F32 tensors", path,
                         name, dt->valuestring);
            goto fail;
        }
        e->ndim = cJSON_GetArraySize(sh);
        int d = 0, bad = 0;
        for (const cJSON *x = sh->child; x; x = x->next)
            bad |= as_index(x, &e->shape[d++]);
        bad |= as_index(of->child, &e->begin) | as_index(of->child->next, &e->end);
        int64_t numel;
        if (bad || numel_of(e->ndim, e->shape, &numel) || e->end < e->begin ||
            e->end - e->begin != 4 * numel) {
            nomul_report(NOMUL_EINVAL, "%s: tensor %s: its shape and byte range disagree", path,
                         name);
            goto fail;
        }
        if (!(e->name = strdup(name)))
            goto oom;
        order[f->n] = f->byname[f->n] = e;
        f->n++;
    }
    qsort(f->byname, (size_t)f->n, sizeof *f->byname, entry_by_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->byname[i - 1]->name, f->byname[i]->name)) {
            nomul_report(NOMUL_EINVAL, "%s: two tensors are named %s", path, f->byname[i]->name);
            goto fail;
        }
    int64_t data = (int64_t)st.st_size - 8 - (int64_t)hl, at = 0;
    qsort(order, (size_t)f->n, sizeof *order, by_begin);
    for (int i = 0; i < f->n; i++) {
        if (order[i]->begin != at) {
            nomul_report(NOMUL_EINVAL,
                         "%s: tensor %s starts at byte %lld of the data, want %lld (ranges "
                         "must tile the data without gaps or overlaps)",
                         path, order[i]->name, (long long)order[i]->begin, (long long)at);
            goto fail;
        }
        at = order[i]->end;
    }
    if (at != data) {
        nomul_report(NOMUL_EINVAL, "%s: the tensors hold %lld bytes, the file %lld after its "
                                   "header (truncated or padded)",
                     path, (long long)at, (long long)data);
        goto fail;
    }
    f->bytes = nomul_aligned_alloc((size_t)(data ? data : 1));
    if (!f->bytes)
        goto oom;
    if (fread(f->bytes, 1, (size_t)data, fp) != (size_t)data) {
        nomul_report(NOMUL_EINVAL, "%s: read error in the tensor data", path);
        goto fail;
    }
    fclose(fp);
    free(hdr);
    free(order);
    cJSON_Delete(root);
    return f;
oom:
    nomul_report(NOMUL_ENOMEM, "%s: out of memory", path);
fail:
    fclose(fp);
    free(hdr);
    free(order);
    cJSON_Delete(root);
    nomul_safetensors_free(f);
    return NULL;
}

void nomul_safetensors_free(nomul_safetensors *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->e[i].name);
    free(f->e);
    free(f->byname);
    nomul_aligned_free(f->bytes);
    cJSON_Delete(f->meta);
    free(f);
}

int nomul_safetensors_count(const nomul_safetensors *f)
{
    return f->n;
}

const char *nomul_safetensors_name(const nomul_safetensors *f, int i)
{
    return i >= 0 && i < f->n ? f->e[i].name : NULL;
}

const float *nomul_safetensors_get(const nomul_safetensors *f, const char *name, int *ndim,
                                   const int64_t **shape)
{
    entry key = {.name = (char *)name}, *kp = &key;
    entry **hit = name ? bsearch(&kp, f->byname, (size_t)f->n, sizeof *f->byname, entry_by_name)
                       : NULL;
    if (!hit)
        return NULL;
    if (ndim)
        *ndim = (*hit)->ndim;
    if (shape)
        *shape = (*hit)->shape;
    return (const float *)(f->bytes + (*hit)->begin);
}

const char *nomul_safetensors_meta(const nomul_safetensors *f, const char *key)
{
    const cJSON *v = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
