/*
 * imagefolder.c — root/CLASS/IMAGE datasets, decoded by libpng and libjpeg.
 *
 * Classes are the subfolders of root in byte order of their names (as
 * torchvision's ImageFolder numbers them); within each, the .png, .jpg and
 * .jpeg files in name order. The file list is gathered first, so the pixel
 * store is allocated once and each image is decoded straight into its slot.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

#include "../core/internal.h"
#include "nomul/data.h"

typedef struct {
    char **v;
    int n, cap;
} strlist;

static int push(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        return -1;
    l->n++;
    return 0;
}

static void strlist_free(strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 PNG, 2 JPEG, 0 neither (by extension, any case). */
static int kind_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    char ext[8] = {0};
    if (!dot || strlen(dot) > 6)
        return 0;
    for (int i = 0; dot[i]; i++)
        ext[i] = (char)tolower((unsigned char)dot[i]);
    if (!strcmp(ext, ".png"))
        return 1;
    if (!strcmp(ext, ".jpg") || !strcmp(ext, ".jpeg"))
        return 2;
    return 0;
}

/* The sorted entries of a folder: subfolders (want_dirs) or image files. */
static int list_dir(const char *dir, int want_dirs, strlist *out)
{
    DIR *d = opendir(dir);
    if (!d) {
        nomul_report(NOMUL_EINVAL, "%s: cannot open the folder: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue; /* ., .. and hidden entries */
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        int ok = want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode) && kind_of(e->d_name);
        if (ok && push(out, e->d_name)) {
            closedir(d);
            nomul_report(NOMUL_ENOMEM, "%s: out of memory listing the folder", dir);
            return -1;
        }
    }
    closedir(d);
    if (out->n > 1)
        qsort(out->v, (size_t)out->n, sizeof *out->v, by_bytes);
    return 0;
}

/* Decodes a PNG into dst (h×w×c bytes) when its size is h×w; with *h == 0
 * (and dst NULL) only reports the size. */
static int read_png(const char *path, int *h, int *w, int c, unsigned char *dst)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) {
        nomul_report(NOMUL_EINVAL, "%s: not a readable PNG: %s", path, im.message);
        return -1;
    }
    if (!dst) {
        *h = (int)im.height;
        *w = (int)im.width;
        png_image_free(&im);
        return 0;
    }
    if ((int)im.height != *h || (int)im.width != *w) {
        nomul_report(NOMUL_EINVAL, "%s: %u×%u pixels, the dataset's images are %d×%d", path,
                     im.height, im.width, *h, *w);
        png_image_free(&im);
        return -1;
    }
    im.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&im, &black, dst, 0, NULL)) {
        nomul_report(NOMUL_EINVAL, "%s: corrupt PNG: %s", path, im.message);
        png_image_free(&im);
        return -1;
    }
    return 0;
}

struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf back;
    char message[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr ci)
{
    struct jpeg_err *e = (struct jpeg_err *)ci->err;
    ci->err->format_message(ci, e->message);
    longjmp(e->back, 1);
}

static void jpeg_quiet(j_common_ptr ci)
{
    (void)ci; /* warnings are counted (num_warnings) and reported after decoding */
}

/* As read_png, for JPEG. Nothing that changes after setjmp is read after
 * a longjmp but the decompressor and the file, set before it. */
static int read_jpeg(const char *path, int *h, int *w, int c, unsigned char *dst)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        nomul_report(NOMUL_EINVAL, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct jpeg_decompress_struct ci;
    struct jpeg_err e;
    ci.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_fail;
    e.mgr.output_message = jpeg_quiet;
    if (setjmp(e.back)) {
        jpeg_destroy_decompress(&ci);
        fclose(f);
        nomul_report(NOMUL_EINVAL, "%s: not a readable JPEG: %s", path, e.message);
        return -1;
    }
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, f);
    jpeg_read_header(&ci, TRUE);
    int rc = 0;
    if (!dst) {
        *h = (int)ci.image_height;
        *w = (int)ci.image_width;
    } else if ((int)ci.image_height != *h || (int)ci.image_width != *w) {
        nomul_report(NOMUL_EINVAL, "%s: %u×%u pixels, the dataset's images are %d×%d", path,
                     ci.image_height, ci.image_width, *h, *w);
        rc = -1;
    } else {
        ci.out_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
        jpeg_start_decompress(&ci);
        while (ci.output_scanline < ci.output_height) {
            JSAMPROW row = dst + (size_t)ci.output_scanline * (size_t)*w * (size_t)c;
            jpeg_read_scanlines(&ci, &row, 1);
        }
        jpeg_finish_decompress(&ci);
        if (e.mgr.num_warnings) { /* e.g. premature end: the rest was filled in, not read */
            e.mgr.format_message((j_common_ptr)&ci, e.message);
            nomul_report(NOMUL_EINVAL, "%s: damaged JPEG: %s", path, e.message);
            rc = -1;
        }
    }
    jpeg_destroy_decompress(&ci);
    fclose(f);
    return rc;
}

static int read_image(const char *path, int *h, int *w, int c, unsigned char *dst)
{
    return kind_of(path) == 1 ? read_png(path, h, w, c, dst) : read_jpeg(path, h, w, c, dst);
}

nomul_image_set *nomul_image_set_from_folder(const char *root, int h, int w, int c,
                                             char ***class_names)
{
    if (class_names)
        *class_names = NULL;
    if (!root || (c != 1 && c != 3) || h < 0 || w < 0 || (h == 0) != (w == 0) ||
        h > NOMUL_IMAGE_MAX_SIDE || w > NOMUL_IMAGE_MAX_SIDE) {
        nomul_report(NOMUL_EINVAL,
                     "nomul_image_set_from_folder: %s: want 1 or 3 channels and a size of h×w "
                     "up to %d×%d (both 0: the first image's)",
                     root ? root : "(no folder)", NOMUL_IMAGE_MAX_SIDE, NOMUL_IMAGE_MAX_SIDE);
        return NULL;
    }
    strlist classes = {0}, files = {0};
    int *label_of = NULL, nlabel = 0;
    nomul_image_set *s = NULL;
    char path[4096];
    if (list_dir(root, 1, &classes))
        goto fail;
    if (classes.n == 0) {
        nomul_report(NOMUL_EINVAL, "%s: no class folders (want ROOT/CLASS/IMAGE.png|jpg)", root);
        goto fail;
    }
    if (classes.n > 65536) {
        nomul_report(NOMUL_EINVAL, "%s: %d class folders, more than any label holds", root,
                     classes.n);
        goto fail;
    }
    for (int k = 0; k < classes.n; k++) {
        snprintf(path, sizeof path, "%s/%s", root, classes.v[k]);
        strlist in = {0};
        if (list_dir(path, 0, &in)) {
            strlist_free(&in);
            goto fail;
        }
        if (in.n == 0) {
            nomul_report(NOMUL_EINVAL, "%s: class folder without .png or .jpg images", path);
            strlist_free(&in);
            goto fail;
        }
        int *grown = realloc(label_of, (size_t)(nlabel + in.n) * sizeof *grown);
        if (!grown) {
            strlist_free(&in);
            nomul_report(NOMUL_ENOMEM, "%s: out of memory", root);
            goto fail;
        }
        label_of = grown;
        for (int i = 0; i < in.n; i++) {
            snprintf(path, sizeof path, "%s/%s/%s", root, classes.v[k], in.v[i]);
            if (push(&files, path)) {
                strlist_free(&in);
                nomul_report(NOMUL_ENOMEM, "%s: out of memory", root);
                goto fail;
            }
            label_of[nlabel++] = k;
        }
        strlist_free(&in);
    }
    if (h == 0) {
        if (read_image(files.v[0], &h, &w, c, NULL))
            goto fail;
        /* a header may declare any size: check it before anything is allocated */
        if (h < 1 || w < 1 || h > NOMUL_IMAGE_MAX_SIDE || w > NOMUL_IMAGE_MAX_SIDE) {
            nomul_report(NOMUL_EINVAL, "%s: %d×%d pixels, beyond the %d×%d images a dataset may hold",
                         files.v[0], h, w, NOMUL_IMAGE_MAX_SIDE, NOMUL_IMAGE_MAX_SIDE);
            goto fail;
        }
    }
    size_t per = (size_t)h * (size_t)w * (size_t)c;
    s = calloc(1, sizeof *s);
    if (s)
        s->labels = malloc((size_t)files.n * sizeof *s->labels);
    if (!s || !s->labels) {
        nomul_report(NOMUL_ENOMEM, "%s: out of memory", root);
        goto fail;
    }
    /* the pixels grow with the images decoded (doubling from 64 MiB), so files
     * that claim a size they do not hold cost what they hold */
    size_t cap = 0;
    for (int i = 0; i < files.n; i++) {
        if ((size_t)i == cap) {
            size_t first = ((size_t)64 << 20) / per ? ((size_t)64 << 20) / per : 1;
            size_t ncap = cap ? 2 * cap : first;
            ncap = ncap < (size_t)files.n ? ncap : (size_t)files.n;
            unsigned char *np = realloc(s->pixels, per * ncap);
            if (!np) {
                nomul_report(NOMUL_ENOMEM, "%s: out of memory for %zu images of %d×%d×%d", root,
                             ncap, h, w, c);
                goto fail;
            }
            s->pixels = np;
            cap = ncap;
        }
        if (read_image(files.v[i], &h, &w, c, s->pixels + per * (size_t)i))
            goto fail;
        s->labels[i] = label_of[i];
    }
    s->n = files.n;
    s->h = h;
    s->w = w;
    s->c = c;
    s->classes = classes.n;
    if (class_names) {
        *class_names = classes.v; /* the caller takes the names */
        classes.v = NULL;
        classes.n = 0;
    }
    strlist_free(&classes);
    strlist_free(&files);
    free(label_of);
    return s;
fail:
    nomul_image_set_free(s);
    strlist_free(&classes);
    strlist_free(&files);
    free(label_of);
    return NULL;
}
