/*
 * test_data.c — IDX files: random arrays of every element type written
 * plain and gzip-compressed and read back (byte order included); fixtures
 * written byte by byte as the format defines them (independent of the
 * writer); every broken file (missing, bad magic, truncated header, dims or
 * data, corrupt gzip, trailing bytes, image/label mismatch, label out of
 * range) is an error naming the file; CIFAR-10/100 batches from fixtures in
 * the published record layout; image folders of PNG and JPEG files written
 * with libpng and libjpeg, and their broken forms; batches (normalization,
 * crop and flip against a plain twin, determinism) and the prefetching
 * loader (every image once per epoch, seeded order, resume mid-epoch); and the real Fashion-MNIST files when
 * Debian's dataset-fashion-mnist is installed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jpeglib.h>
#include <png.h>
#include <sys/stat.h>
#include <zlib.h>

#include "nomul/nomul.h"
#include "testutil.h"
#include "tu_files.h"

/* Writes raw bytes, plain or gzip, with no help from the library. */
static void put(const char *path, const void *bytes, size_t n, int gzip)
{
    if (gzip) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        if (n)
            assert_int_equal(gzwrite(f, bytes, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(bytes, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
    }
}

/* An IDX file of unsigned bytes, as the format defines it. */
static size_t idx_u8(unsigned char *buf, int ndim, const long *dims, const unsigned char *data)
{
    size_t n = 0;
    long count = 1;
    buf[n++] = 0, buf[n++] = 0, buf[n++] = 0x08, buf[n++] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++) {
        buf[n++] = (unsigned char)(dims[d] >> 24), buf[n++] = (unsigned char)(dims[d] >> 16);
        buf[n++] = (unsigned char)(dims[d] >> 8), buf[n++] = (unsigned char)dims[d];
        count *= dims[d];
    }
    memcpy(buf + n, data, (size_t)count);
    return n + (size_t)count;
}

static void expect_error(nomul_idx *a, const char *path, const char *words)
{
    if (a) {
        nomul_idx_free(a);
        fail_msg("%s: read although broken", path);
    }
    assert_int_not_equal(nomul_last_error(), NOMUL_OK);
    if (!strstr(tu_last_error, path) || !strstr(tu_last_error, words))
        fail_msg("message \"%s\" should name %s and say \"%s\"", tu_last_error, path, words);
    nomul_clear_error();
}

static void test_round_trip_every_type(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x1D};
    static const nomul_idx_type types[] = {NOMUL_IDX_U8,  NOMUL_IDX_I8,  NOMUL_IDX_I16,
                                           NOMUL_IDX_I32, NOMUL_IDX_F32, NOMUL_IDX_F64};
    static const int sizes[] = {1, 1, 2, 4, 4, 8};
    for (int t = 0; t < 6; t++)
        for (int gz = 0; gz < 2; gz++) {
            nomul_idx a = {.type = types[t], .ndim = 1 + (int)(tu_u32(&r) % 4)};
            a.count = 1;
            for (int d = 0; d < a.ndim; d++)
                a.count *= a.dims[d] = 1 + (long)(tu_u32(&r) % 9);
            a.elem_bytes = sizes[t];
            unsigned char *data = malloc((size_t)a.count * sizes[t]);
            for (long i = 0; i < a.count * sizes[t]; i++)
                data[i] = (unsigned char)tu_u32(&r);
            a.data = data;
            const char *p = tu_path(gz ? "rt.idx.gz" : "rt.idx");
            assert_int_equal(nomul_idx_write(p, &a, gz), 0);
            /* the file holds the elements big-endian, after the header */
            if (!gz && sizes[t] > 1) {
                FILE *f = fopen(p, "rb");
                unsigned char first[8];
                fseek(f, 4 + 4 * a.ndim, SEEK_SET);
                assert_int_equal(fread(first, 1, (size_t)sizes[t], f), (size_t)sizes[t]);
                fclose(f);
                for (int j = 0; j < sizes[t]; j++)
                    assert_int_equal(first[j], data[sizes[t] - 1 - j]);
            }
            nomul_idx *b = nomul_idx_read(p);
            if (!b)
                FAIL_SEED("type %#x gzip %d: %s", types[t], gz, nomul_last_error_message());
            assert_int_equal(b->type, a.type);
            assert_int_equal(b->ndim, a.ndim);
            assert_int_equal(b->count, a.count);
            for (int d = 0; d < a.ndim; d++)
                assert_int_equal(b->dims[d], a.dims[d]);
            if (memcmp(b->data, data, (size_t)a.count * sizes[t]))
                FAIL_SEED("type %#x gzip %d: data differ after the round trip", types[t], gz);
            nomul_idx_free(b);
            free(data);
        }
}

static void test_image_set_from_fixture(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x2E};
    enum { N = 7, H = 5, W = 3 };
    unsigned char pix[N * H * W], lab[N], buf[4096];
    for (int i = 0; i < N * H * W; i++)
        pix[i] = (unsigned char)tu_u32(&r);
    for (int i = 0; i < N; i++)
        lab[i] = (unsigned char)(tu_u32(&r) % 10);
    lab[3] = 9;
    long di[3] = {N, H, W}, dl[1] = {N};
    for (int gz = 0; gz < 2; gz++) {
        put(tu_path("img"), buf, idx_u8(buf, 3, di, pix), gz);
        put(tu_path("lab"), buf, idx_u8(buf, 1, dl, lab), !gz);
        nomul_image_set *s = nomul_image_set_from_idx(tu_path("img"), tu_path("lab"), 0);
        if (!s)
            FAIL_SEED("%s", nomul_last_error_message());
        assert_int_equal(s->n, N);
        assert_int_equal(s->h, H);
        assert_int_equal(s->w, W);
        assert_int_equal(s->c, 1);
        assert_int_equal(s->classes, 10);
        assert_memory_equal(s->pixels, pix, sizeof pix);
        for (int i = 0; i < N; i++)
            assert_int_equal(s->labels[i], lab[i]);
        nomul_image_set_free(s);
    }
    /* labels beyond the stated classes; counts that disagree */
    assert_null(nomul_image_set_from_idx(tu_path("img"), tu_path("lab"), 5));
    if (!strstr(tu_last_error, "lab") || !strstr(tu_last_error, "not below the 5 classes"))
        fail_msg("message: %s", tu_last_error);
    long dl2[1] = {N - 1};
    put(tu_path("lab2"), buf, idx_u8(buf, 1, dl2, lab), 0);
    assert_null(nomul_image_set_from_idx(tu_path("img"), tu_path("lab2"), 10));
    if (!strstr(tu_last_error, "holds 7 images") || !strstr(tu_last_error, "holds 6 labels"))
        fail_msg("message: %s", tu_last_error);
    /* labels given where images are expected */
    assert_null(nomul_image_set_from_idx(tu_path("lab"), tu_path("lab"), 10));
    if (!strstr(tu_last_error, "images must be"))
        fail_msg("message: %s", tu_last_error);
    nomul_clear_error();
}

static void test_broken_files_are_named(void **state)
{
    (void)state;
    unsigned char buf[4096], data[60];
    memset(data, 7, sizeof data);
    long dims[2] = {3, 20};
    size_t n = idx_u8(buf, 2, dims, data);

    expect_error(nomul_idx_read(tu_path("missing.idx")), tu_path("missing.idx"), "cannot open");

    for (int gz = 0; gz < 2; gz++) {
        const char *p = tu_path(gz ? "b.gz" : "b.idx");
        unsigned char bad[4096];
        memcpy(bad, buf, n);
        bad[0] = 0x1f;
        put(p, bad, n, gz);
        expect_error(nomul_idx_read(p), p, "not an IDX file");
        memcpy(bad, buf, n);
        bad[2] = 0x07; /* no such type */
        put(p, bad, n, gz);
        expect_error(nomul_idx_read(p), p, "not an IDX file");
        put(p, buf, 2, gz);
        expect_error(nomul_idx_read(p), p, "truncated");
        put(p, buf, 9, gz);
        expect_error(nomul_idx_read(p), p, "dimensions");
        put(p, buf, n - 1, gz);
        expect_error(nomul_idx_read(p), p, "truncated");
        memcpy(bad, buf, n);
        bad[n] = 1;
        put(p, bad, n + 1, gz);
        expect_error(nomul_idx_read(p), p, "bytes after the data");
        put(p, buf, 0, gz);
        expect_error(nomul_idx_read(p), p, "truncated");
    }
    /* a 4 GiB array declared by a 20-byte file: refused from the file's size
     * (plain) or when the data runs out (gzip), before that much is allocated */
    unsigned char hh[16];
    hh[0] = 0, hh[1] = 0, hh[2] = 0x08, hh[3] = 2;
    for (int d = 0; d < 2; d++)
        hh[4 + 4 * d] = 0, hh[5 + 4 * d] = 0, hh[6 + 4 * d] = 0xFF, hh[7 + 4 * d] = 0xFF;
    memcpy(hh + 12, data, 4);
    for (int gz = 0; gz < 2; gz++) {
        const char *p = tu_path(gz ? "huge.gz" : "huge.idx");
        put(p, hh, 16, gz);
        expect_error(nomul_idx_read(p), p, "truncated");
    }
    /* gzip: two members in a row are one stream (gzip -c a b > c); anything
     * else after the last member is an error, not ignored */
    {
        const char *one = tu_path("one.gz"), *two = tu_path("two.gz");
        put(one, buf, 20, 1);
        put(two, buf + 20, n - 20, 1);
        FILE *f1 = fopen(one, "rb"), *f2 = fopen(two, "rb");
        unsigned char cat[8192];
        size_t c1 = fread(cat, 1, 4096, f1), c2 = fread(cat + c1, 1, 4096, f2);
        fclose(f1);
        fclose(f2);
        const char *p = tu_path("members.gz");
        put(p, cat, c1 + c2, 0);
        nomul_idx *a = nomul_idx_read(p);
        if (!a)
            fail_msg("two gzip members: %s", nomul_last_error_message());
        assert_int_equal(a->count, 60);
        assert_memory_equal(a->data, data, 60);
        nomul_idx_free(a);
        memcpy(cat + c1 + c2, "garbage!", 8);
        put(p, cat, c1 + c2 + 8, 0);
        expect_error(nomul_idx_read(p), p, "after the end of the gzip data");
    }
    /* a gzip stream cut short, and one with a damaged body */
    put(tu_path("full.gz"), buf, n, 1);
    FILE *f = fopen(tu_path("full.gz"), "rb");
    unsigned char z[4096];
    size_t zn = fread(z, 1, sizeof z, f);
    fclose(f);
    put(tu_path("cut.gz"), z, zn - 12, 0);
    expect_error(nomul_idx_read(tu_path("cut.gz")), tu_path("cut.gz"), "");
    z[zn / 2] ^= 0xFF;
    z[zn / 2 + 1] ^= 0x55;
    put(tu_path("bent.gz"), z, zn, 0);
    expect_error(nomul_idx_read(tu_path("bent.gz")), tu_path("bent.gz"), "corrupt");
}

/* CIFAR batches written by the test in the published layout: label byte(s),
 * then the red plane, green plane, blue plane of a 32×32 image. */
static void test_cifar_batches(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x3F};
    for (int lb = 1; lb <= 2; lb++) {
        const int classes = lb == 1 ? 10 : 100, rec = lb + 3072, counts[2] = {3, 2};
        unsigned char *file[2];
        const char *paths[2] = {tu_path("c1.bin"), tu_path("c2.bin")};
        for (int f = 0; f < 2; f++) {
            file[f] = malloc((size_t)counts[f] * rec);
            for (long i = 0; i < (long)counts[f] * rec; i++)
                file[f][i] = (unsigned char)tu_u32(&r);
            for (int k = 0; k < counts[f]; k++) {
                file[f][k * rec] = (unsigned char)(tu_u32(&r) % 20); /* coarse label */
                file[f][k * rec + lb - 1] = (unsigned char)(tu_u32(&r) % classes);
            }
            put(paths[f], file[f], (size_t)counts[f] * rec, 0);
        }
        nomul_image_set *s = nomul_image_set_from_cifar(paths, 2, lb);
        if (!s)
            FAIL_SEED("%s", nomul_last_error_message());
        assert_int_equal(s->n, 5);
        assert_int_equal(s->h, 32);
        assert_int_equal(s->w, 32);
        assert_int_equal(s->c, 3);
        assert_int_equal(s->classes, classes);
        for (long i = 0; i < 5; i++) {
            const unsigned char *rp = i < 3 ? file[0] + i * rec : file[1] + (i - 3) * rec;
            assert_int_equal(s->labels[i], rp[lb - 1]);
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    for (int c = 0; c < 3; c++)
                        if (s->pixels[((i * 32 + y) * 32 + x) * 3 + c] !=
                            rp[lb + c * 1024 + y * 32 + x])
                            FAIL_SEED("image %ld pixel (%d,%d,%d) misplaced", i, y, x, c);
        }
        nomul_image_set_free(s);
        /* a label out of range; a file cut mid-record; a missing file */
        file[1][rec + lb - 1] = (unsigned char)classes;
        put(paths[1], file[1], (size_t)2 * rec, 0);
        assert_null(nomul_image_set_from_cifar(paths, 2, lb));
        if (!strstr(tu_last_error, paths[1]) || !strstr(tu_last_error, "record 1 has label"))
            fail_msg("message: %s", tu_last_error);
        put(paths[1], file[1], (size_t)2 * rec - 5, 0);
        assert_null(nomul_image_set_from_cifar(paths, 2, lb));
        if (!strstr(tu_last_error, paths[1]) || !strstr(tu_last_error, "whole number"))
            fail_msg("message: %s", tu_last_error);
        const char *missing[1] = {tu_path("nope.bin")};
        assert_null(nomul_image_set_from_cifar(missing, 1, lb));
        if (!strstr(tu_last_error, "nope.bin") || !strstr(tu_last_error, "cannot open"))
            fail_msg("message: %s", tu_last_error);
        free(file[0]);
        free(file[1]);
    }
    assert_null(nomul_image_set_from_cifar(NULL, 0, 1));
    nomul_clear_error();
}

static void write_png(const char *path, int h, int w, int c, const unsigned char *px)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = c == 1 ? PNG_FORMAT_GRAY : c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    if (!png_image_write_to_file(&im, path, 0, px, 0, NULL))
        fail_msg("writing %s: %s", path, im.message);
}

static void write_jpeg(const char *path, int h, int w, int c, const unsigned char *px)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 100, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)px + (size_t)ci.next_scanline * (size_t)(w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

static void make_dir(const char *p)
{
    if (mkdir(p, 0755) != 0)
        fail_msg("mkdir %s", p);
}

/* root/CLASS/IMAGE trees written by the test with libpng and libjpeg */
static void test_image_folder(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x40};
    enum { H = 6, W = 5 };
    unsigned char grey[3][H * W], rgb[2][H * W * 3], smooth[H * W], rgba[H * W * 4];
    for (int i = 0; i < 3; i++)
        for (int q = 0; q < H * W; q++)
            grey[i][q] = (unsigned char)tu_u32(&r);
    for (int i = 0; i < 2; i++)
        for (int q = 0; q < H * W * 3; q++)
            rgb[i][q] = (unsigned char)tu_u32(&r);
    for (int q = 0; q < H * W; q++)
        smooth[q] = (unsigned char)(40 + 4 * (q / W) + 3 * (q % W));
    for (int q = 0; q < H * W * 4; q++)
        rgba[q] = (unsigned char)tu_u32(&r);
    for (int q = 0; q < H * W; q++)
        rgba[q * 4 + 3] = 255; /* opaque: compositing leaves the colours */

    /* grey: classes "B" (2 PNGs, a text file, a hidden file) and "a" (PNG, JPEG) */
    make_dir(tu_path("g"));
    make_dir(tu_path("g/B"));
    make_dir(tu_path("g/a"));
    write_png(tu_path("g/B/2.png"), H, W, 1, grey[1]);
    write_png(tu_path("g/B/1.PNG"), H, W, 1, grey[0]);
    put(tu_path("g/B/notes.txt"), "x", 1, 0);
    put(tu_path("g/B/.hidden.png"), "x", 1, 0);
    write_png(tu_path("g/a/x.png"), H, W, 1, grey[2]);
    write_jpeg(tu_path("g/a/y.jpeg"), H, W, 1, smooth);
    char **names = NULL;
    nomul_image_set *s = nomul_image_set_from_folder(tu_path("g"), 0, 0, 1, &names);
    if (!s)
        fail_msg("%s", nomul_last_error_message());
    assert_int_equal(s->n, 4);
    assert_int_equal(s->classes, 2);
    assert_int_equal(s->h, H);
    assert_int_equal(s->w, W);
    assert_int_equal(s->c, 1);
    assert_string_equal(names[0], "B"); /* byte order: upper case first */
    assert_string_equal(names[1], "a");
    int want_label[4] = {0, 0, 1, 1};
    for (int i = 0; i < 4; i++)
        assert_int_equal(s->labels[i], want_label[i]);
    assert_memory_equal(s->pixels, grey[0], H * W);
    assert_memory_equal(s->pixels + H * W, grey[1], H * W);
    assert_memory_equal(s->pixels + 2 * H * W, grey[2], H * W);
    for (int q = 0; q < H * W; q++) {
        int d = (int)s->pixels[3 * H * W + q] - smooth[q];
        if (d < -4 || d > 4)
            fail_msg("JPEG pixel %d: %d, written %d", q, s->pixels[3 * H * W + q], smooth[q]);
    }
    nomul_image_set_free(s);
    for (int k = 0; k < 2; k++)
        free(names[k]);
    free(names);

    /* the same tree as RGB: grey replicated in every channel */
    s = nomul_image_set_from_folder(tu_path("g"), H, W, 3, NULL);
    if (!s)
        fail_msg("%s", nomul_last_error_message());
    for (int q = 0; q < H * W; q++)
        for (int c = 0; c < 3; c++)
            assert_int_equal(s->pixels[q * 3 + c], grey[0][q]);
    nomul_image_set_free(s);

    /* colour: RGB and opaque RGBA PNGs, exact */
    make_dir(tu_path("c"));
    make_dir(tu_path("c/k"));
    write_png(tu_path("c/k/0.png"), H, W, 3, rgb[0]);
    write_png(tu_path("c/k/1.png"), H, W, 4, rgba);
    s = nomul_image_set_from_folder(tu_path("c"), 0, 0, 3, NULL);
    if (!s)
        fail_msg("%s", nomul_last_error_message());
    assert_memory_equal(s->pixels, rgb[0], H * W * 3);
    for (int q = 0; q < H * W; q++)
        for (int c = 0; c < 3; c++)
            assert_int_equal(s->pixels[H * W * 3 + q * 3 + c], rgba[q * 4 + c]);
    nomul_image_set_free(s);

    /* broken trees, each named */
    assert_null(nomul_image_set_from_folder(tu_path("c"), H + 1, W, 3, NULL));
    if (!strstr(tu_last_error, "c/k/0.png") || !strstr(tu_last_error, "the dataset's images are"))
        fail_msg("message: %s", tu_last_error);
    write_png(tu_path("c/k/2.png"), H, W + 1, 3, rgba);
    assert_null(nomul_image_set_from_folder(tu_path("c"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "c/k/2.png"))
        fail_msg("message: %s", tu_last_error);
    unlink(tu_path("c/k/2.png"));
    put(tu_path("c/k/3.jpg"), "not a jpeg at all", 17, 0);
    assert_null(nomul_image_set_from_folder(tu_path("c"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "c/k/3.jpg") || !strstr(tu_last_error, "not a readable JPEG"))
        fail_msg("message: %s", tu_last_error);
    unlink(tu_path("c/k/3.jpg"));
    FILE *f = fopen(tu_path("c/k/0.png"), "rb");
    unsigned char png[4096];
    size_t pn = fread(png, 1, sizeof png, f);
    fclose(f);
    put(tu_path("c/k/4.png"), png, pn / 2, 0);
    assert_null(nomul_image_set_from_folder(tu_path("c"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "c/k/4.png"))
        fail_msg("message: %s", tu_last_error);
    unlink(tu_path("c/k/4.png"));
    write_jpeg(tu_path("c/k/5.jpg"), H, W, 3, rgb[1]);
    f = fopen(tu_path("c/k/5.jpg"), "rb");
    pn = fread(png, 1, sizeof png, f);
    fclose(f);
    put(tu_path("c/k/5.jpg"), png, pn - 40, 0); /* cut before its end */
    assert_null(nomul_image_set_from_folder(tu_path("c"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "c/k/5.jpg") || !strstr(tu_last_error, "damaged JPEG"))
        fail_msg("message: %s", tu_last_error);
    unlink(tu_path("c/k/5.jpg"));
    /* a small JPEG whose header declares 55091×25952 pixels, as the first
     * image of a folder whose size comes from the files: refused from the
     * header, before 4 GiB are allocated */
    write_jpeg(tu_path("c/k/6.jpg"), H, W, 3, rgb[1]);
    f = fopen(tu_path("c/k/6.jpg"), "rb");
    pn = fread(png, 1, sizeof png, f);
    fclose(f);
    size_t sof = 0;
    for (size_t i = 0; i + 8 < pn && !sof; i++)
        if (png[i] == 0xFF && (png[i + 1] == 0xC0 || png[i + 1] == 0xC2))
            sof = i;
    assert_true(sof > 0);
    png[sof + 5] = 55091 >> 8, png[sof + 6] = 55091 & 0xFF;
    png[sof + 7] = 25952 >> 8, png[sof + 8] = 25952 & 0xFF;
    make_dir(tu_path("big"));
    make_dir(tu_path("big/k"));
    put(tu_path("big/k/0.jpg"), png, pn, 0);
    unlink(tu_path("c/k/6.jpg"));
    assert_null(nomul_image_set_from_folder(tu_path("big"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "big/k/0.jpg") || !strstr(tu_last_error, "55091"))
        fail_msg("message: %s", tu_last_error);
    assert_null(nomul_image_set_from_folder(tu_path("big"), 5000, 5000, 3, NULL));
    if (!strstr(tu_last_error, "4096"))
        fail_msg("message: %s", tu_last_error);
    make_dir(tu_path("c/empty"));
    assert_null(nomul_image_set_from_folder(tu_path("c"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "c/empty") || !strstr(tu_last_error, "class folder without"))
        fail_msg("message: %s", tu_last_error);
    assert_null(nomul_image_set_from_folder(tu_path("c/empty"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "no class folders"))
        fail_msg("message: %s", tu_last_error);
    assert_null(nomul_image_set_from_folder(tu_path("nowhere"), 0, 0, 3, NULL));
    if (!strstr(tu_last_error, "nowhere") || !strstr(tu_last_error, "cannot open"))
        fail_msg("message: %s", tu_last_error);
    assert_null(nomul_image_set_from_folder(tu_path("c"), 0, 0, 2, NULL));
    nomul_clear_error();
}

/* A set whose first two pixels spell the image's index (0..65535). */
static nomul_image_set *index_set(tu_rng *r, long n, int h, int w, int c)
{
    nomul_image_set *s = calloc(1, sizeof *s);
    s->n = n, s->h = h, s->w = w, s->c = c, s->classes = 7;
    s->pixels = malloc((size_t)(n * h * w * c));
    s->labels = malloc((size_t)n * sizeof *s->labels);
    for (long i = 0; i < n * h * w * c; i++)
        s->pixels[i] = (uint8_t)tu_u32(r);
    for (long i = 0; i < n; i++) {
        s->pixels[i * h * w * c] = (uint8_t)(i & 255);
        s->pixels[i * h * w * c + 1] = (uint8_t)(i >> 8);
        s->labels[i] = (int32_t)(tu_u32(r) % 7);
    }
    return s;
}

/* The plain twin of one augmented image: crop offset (oy, ox), then flip. */
static float twin_pixel(const nomul_image_set *s, const nomul_augment *a, long id, int c, int y,
                        int x, int oy, int ox, int flip)
{
    int sy = y + oy, sx = (flip ? s->w - 1 - x : x) + ox;
    int v = sy < 0 || sy >= s->h || sx < 0 || sx >= s->w
                ? 0
                : s->pixels[((id * s->h + sy) * s->w + sx) * s->c + c];
    float sd = a->std[c] != 0.0f ? a->std[c] : 1.0f;
    return ((float)v / 255.0f - a->mean[c]) / sd;
}

static void test_batches_and_augmentation(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x51};
    enum { N = 64, H = 9, W = 7, C = 3, P = 2 };
    nomul_image_set *s = index_set(&r, N, H, W, C);
    nomul_augment plain = {.mean = {0.5f, 0.25f, 0.125f}, .std = {0.5f, 2.0f, 0}};
    nomul_augment aug = plain;
    aug.crop_pad = P;
    aug.hflip = 1;
    long idx[N];
    for (int i = 0; i < N; i++)
        idx[i] = (i * 37 + 5) % N;
    float *x = malloc(sizeof(float) * N * C * H * W), *x2 = malloc(sizeof(float) * N * C * H * W);
    int32_t y[N];
    uint64_t seed = tu_next(&r);
    /* no augmentation: normalization only, channel planes in N×C×H×W order */
    nomul_make_batch(s, idx, N, &plain, seed, 0, x, y);
    for (int i = 0; i < N; i++) {
        assert_int_equal(y[i], s->labels[idx[i]]);
        for (int c = 0; c < C; c++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++)
                    assert_true(x[((i * C + c) * H + yy) * W + xx] ==
                                twin_pixel(s, &plain, idx[i], c, yy, xx, 0, 0, 0));
    }
    /* augmented: every image is one crop-and-flip of the twin, and the choices vary */
    nomul_make_batch(s, idx, N, &aug, seed, 3, x, y);
    int seen_flip[2] = {0}, seen_off[2 * P + 1][2 * P + 1] = {{0}}, distinct = 0;
    for (int i = 0; i < N; i++) {
        int found = 0;
        for (int oy = -P; oy <= P && !found; oy++)
            for (int ox = -P; ox <= P && !found; ox++)
                for (int f = 0; f < 2 && !found; f++) {
                    int ok = 1;
                    for (int c = 0; c < C && ok; c++)
                        for (int yy = 0; yy < H && ok; yy++)
                            for (int xx = 0; xx < W && ok; xx++)
                                ok = x[((i * C + c) * H + yy) * W + xx] ==
                                     twin_pixel(s, &aug, idx[i], c, yy, xx, oy, ox, f);
                    if (ok) {
                        found = 1;
                        seen_flip[f] = 1;
                        distinct += !seen_off[oy + P][ox + P]++;
                    }
                }
        if (!found)
            FAIL_SEED("image %d is no crop and flip of its source", i);
    }
    if (!seen_flip[0] || !seen_flip[1] || distinct < 5)
        FAIL_SEED("64 images used %d crop offsets and flips %d/%d", distinct, seen_flip[0],
                  seen_flip[1]);
    /* a pure function of (seed, epoch, index): the same again, another epoch differs */
    nomul_make_batch(s, idx, N, &aug, seed, 3, x2, y);
    assert_memory_equal(x, x2, sizeof(float) * N * C * H * W);
    nomul_make_batch(s, idx, N, &aug, seed, 4, x2, y);
    assert_true(memcmp(x, x2, sizeof(float) * N * C * H * W) != 0);
    free(x);
    free(x2);
    nomul_image_set_free(s);
}

static long decode_index(const float *img)
{
    /* v/255 with mean 0 and std 1: the bytes come back exactly */
    long lo = lroundf(img[0] * 255.0f), hi = lroundf(img[1] * 255.0f);
    return lo + 256 * hi;
}

static void test_loader(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x62};
    enum { H = 4, W = 5 };
    const long n = 1000 + (long)(tu_u32(&r) % 300);
    const int batch = 1 + (int)(tu_u32(&r) % 97);
    nomul_image_set *s = index_set(&r, n, H, W, 1);
    nomul_augment a = {.std = {1}};
    uint64_t seed = tu_next(&r);
    for (int drop = 0; drop < 2; drop++) {
        nomul_loader *l = nomul_loader_new(s, batch, 1, drop, &a, seed);
        nomul_loader *same = nomul_loader_new(s, batch, 1, drop, &a, seed);
        assert_non_null(l);
        assert_non_null(same);
        long nb = drop ? n / batch : (n + batch - 1) / batch;
        assert_int_equal(nomul_loader_batches(l), nb);
        long *order[2] = {malloc(sizeof(long) * n), malloc(sizeof(long) * n)};
        for (int epoch = 0; epoch < 2; epoch++) {
            nomul_loader_start(l, epoch, 0);
            nomul_loader_start(same, epoch, 0);
            char *seen = calloc((size_t)n, 1);
            long got = 0, batches = 0;
            const float *x, *x2;
            const int32_t *y, *y2;
            int b;
            while ((b = nomul_loader_next(l, &x, &y)) > 0) {
                assert_int_equal(nomul_loader_next(same, &x2, &y2), b);
                assert_memory_equal(x, x2, sizeof(float) * b * H * W);
                assert_true(b == batch || (!drop && batches == nb - 1));
                for (int i = 0; i < b; i++) {
                    long id = decode_index(x + (long)i * H * W);
                    if (id < 0 || id >= n || seen[id]++)
                        FAIL_SEED("epoch %d: image %ld twice or unknown", epoch, id);
                    assert_int_equal(y[i], s->labels[id]);
                    order[epoch][got++] = id;
                }
                batches++;
            }
            assert_int_equal(batches, nb);
            assert_int_equal(got, drop ? nb * batch : n);
            assert_int_equal(nomul_loader_next(l, &x, &y), 0); /* stays at the end */
            assert_int_equal(nomul_loader_next(same, &x2, &y2), 0);
            free(seen);
            /* resuming at batch k gives the batches k.. of the epoch */
            long k = nb / 2;
            nomul_loader_start(same, epoch, k);
            for (long j = k; j < nb; j++) {
                b = nomul_loader_next(same, &x2, &y2);
                for (int i = 0; i < b; i++)
                    assert_int_equal(decode_index(x2 + (long)i * H * W), order[epoch][j * batch + i]);
            }
            assert_int_equal(nomul_loader_next(same, &x2, &y2), 0);
        }
        assert_true(memcmp(order[0], order[1], sizeof(long) * (drop ? nb * batch : n)) != 0);
        free(order[0]);
        free(order[1]);
        nomul_loader_free(l);
        nomul_loader_free(same);
    }
    /* batches prepared by the thread equal the plain function's, with augmentation */
    nomul_augment aug = {.crop_pad = 1, .hflip = 1, .mean = {0.3f}, .std = {0.7f}};
    nomul_loader *l = nomul_loader_new(s, batch, 0, 0, &aug, seed);
    nomul_loader_start(l, 5, 0);
    const float *x;
    const int32_t *y;
    int b;
    long at = 0;
    float *want = malloc(sizeof(float) * batch * H * W);
    int32_t *wy = malloc(sizeof(int32_t) * batch);
    long *ids = malloc(sizeof(long) * batch);
    while ((b = nomul_loader_next(l, &x, &y)) > 0) {
        for (int i = 0; i < b; i++)
            ids[i] = at + i; /* no shuffle: in order */
        nomul_make_batch(s, ids, b, &aug, seed, 5, want, wy);
        assert_memory_equal(x, want, sizeof(float) * b * H * W);
        assert_memory_equal(y, wy, sizeof(int32_t) * b);
        at += b;
    }
    assert_int_equal(at, n);
    free(want);
    free(wy);
    free(ids);
    nomul_loader_free(l);
    /* bad requests */
    assert_null(nomul_loader_new(s, 0, 1, 0, &a, 1));
    assert_null(nomul_loader_new(s, (int)n + 1, 1, 1, &a, 1));
    if (!strstr(tu_last_error, "no full batch"))
        fail_msg("message: %s", tu_last_error);
    nomul_clear_error();
    nomul_image_set_free(s);
}

static void test_fashion_mnist_if_installed(void **state)
{
    (void)state;
    const char *root = "/usr/share/datasets/fashion-mnist";
    char im[512], lb[512];
    snprintf(im, sizeof im, "%s/t10k-images-idx3-ubyte.gz", root);
    snprintf(lb, sizeof lb, "%s/t10k-labels-idx1-ubyte.gz", root);
    if (access(im, R_OK) || access(lb, R_OK)) {
        printf("  (dataset-fashion-mnist is not installed: the real-file check is skipped)\n");
        return;
    }
    nomul_image_set *s = nomul_image_set_from_idx(im, lb, 10);
    if (!s)
        fail_msg("%s", nomul_last_error_message());
    assert_int_equal(s->n, 10000);
    assert_int_equal(s->h, 28);
    assert_int_equal(s->w, 28);
    long per[10] = {0};
    for (long i = 0; i < s->n; i++)
        per[s->labels[i]]++;
    for (int k = 0; k < 10; k++)
        assert_int_equal(per[k], 1000); /* the test set is balanced */
    nomul_image_set_free(s);
}

static int setup(void **state)
{
    (void)state;
    return tu_tmpdir_setup("data");
}

static int teardown(void **state)
{
    (void)state;
    return tu_tmpdir_teardown();
}

/* ---- RandAugment operations and random erasing ------------------------------ */

static int same(const uint8_t *a, const uint8_t *b, size_t n) { return !memcmp(a, b, n); }

static void test_augment_operations(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA6};
    enum { H = 9, W = 9, C = 1, N = H * W * C };
    uint8_t img[N], orig[N];
    for (int i = 0; i < N; i++)
        orig[i] = (uint8_t)(50 + tu_u32(&r) % 51); /* 50..100 */
    /* identities at level 0 (and the colour blend on a grey image at any level) */
    static const char *const id0[] = {"Rotate", "Color", "Contrast", "Brightness", "Sharpness",
                                      "ShearX", "ShearY", "TranslateX", "TranslateY",
                                      "Solarize", "SolarizeAdd"};
    for (size_t k = 0; k < sizeof id0 / sizeof id0[0]; k++) {
        memcpy(img, orig, N);
        assert_int_equal(nomul_augment_op(id0[k], img, H, W, C, 0.0f, 0), 0);
        if (!same(img, orig, N))
            FAIL_SEED("%s at level 0 changed the image", id0[k]);
    }
    memcpy(img, orig, N);
    nomul_augment_op("Color", img, H, W, C, 0.7f, 0);
    assert_true(same(img, orig, N));
    /* Invert: 255 − v, twice the identity */
    memcpy(img, orig, N);
    nomul_augment_op("Invert", img, H, W, C, 0.0f, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(img[i], 255 - orig[i]);
    nomul_augment_op("Invert", img, H, W, C, 0.0f, 0);
    assert_true(same(img, orig, N));
    /* Solarize at full level inverts everything; Posterize at full level keeps 1 bit */
    memcpy(img, orig, N);
    nomul_augment_op("Solarize", img, H, W, C, -1.0f, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(img[i], 255 - orig[i]);
    memcpy(img, orig, N);
    nomul_augment_op("Posterize", img, H, W, C, 1.0f, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(img[i], orig[i] & 0x80);
    /* SolarizeAdd at full level adds 110 below 128 */
    memcpy(img, orig, N);
    nomul_augment_op("SolarizeAdd", img, H, W, C, 1.0f, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(img[i], orig[i] + 110);
    /* AutoContrast stretches the range to 0..255 */
    memcpy(img, orig, N);
    nomul_augment_op("AutoContrast", img, H, W, C, 0.0f, 0);
    int lo = 255, hi = 0, olo = 255;
    for (int i = 0; i < N; i++) {
        lo = img[i] < lo ? img[i] : lo;
        hi = img[i] > hi ? img[i] : hi;
        olo = orig[i] < olo ? orig[i] : olo;
    }
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 255);
    /* Equalize keeps the order of values and spreads them */
    memcpy(img, orig, N);
    nomul_augment_op("Equalize", img, H, W, C, 0.0f, 0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (orig[i] < orig[j] && img[i] > img[j])
                FAIL_SEED("Equalize reordered values %d < %d", orig[i], orig[j]);
    /* TranslateX by exactly one pixel: 0.45 · l · 9 = 1 */
    memcpy(img, orig, N);
    nomul_augment_op("TranslateX", img, H, W, C, (float)(1.0 / (0.45 * 9)), 7);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            assert_int_equal(img[y * W + x], x + 1 < W ? orig[y * W + x + 1] : 7);
    /* Brightness at level −1 scales by 0.1 */
    memcpy(img, orig, N);
    nomul_augment_op("Brightness", img, H, W, C, -1.0f, 0);
    for (int i = 0; i < N; i++) /* ±1: halves may round either way */
        assert_true(abs(img[i] - (int)lrint(0.1 * orig[i])) <= 1);
    nomul_set_error_handler(NULL);
    assert_int_equal(nomul_augment_op("Blur", img, H, W, C, 0.0f, 0), -1);
    assert_non_null(strstr(nomul_last_error_message(), "'Blur'"));
    nomul_clear_error();
}

static void test_randaugment_and_erasing_in_batches(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0xA7};
    enum { N = 16, H = 12, W = 12, C = 1 };
    nomul_image_set s = {N, H, W, C, 3, NULL, NULL};
    s.pixels = malloc(N * H * W * C);
    s.labels = malloc(N * sizeof(int32_t));
    for (int i = 0; i < N * H * W * C; i++)
        s.pixels[i] = (uint8_t)tu_u32(&r);
    for (int i = 0; i < N; i++)
        s.labels[i] = i % 3;
    long idx[N];
    for (int i = 0; i < N; i++)
        idx[i] = i;
    const uint64_t seed = tu_next(&r);
    nomul_augment plain = {0, 0, {0.5f}, {0.25f}, 0, 0, 0, 0};
    nomul_augment ra = plain, er = plain;
    ra.randaugment_n = 2;
    ra.randaugment_m = 9;
    ra.randaugment_mstd = 0.5f;
    er.erase_prob = 1.0f;
    const size_t n = N * H * W * C;
    float *x0 = malloc(n * sizeof(float)), *x1 = malloc(n * sizeof(float)),
          *x2 = malloc(n * sizeof(float));
    int32_t y[N];
    nomul_make_batch(&s, idx, N, &plain, seed, 0, x0, y);
    nomul_make_batch(&s, idx, N, &ra, seed, 0, x1, y);
    nomul_make_batch(&s, idx, N, &ra, seed, 0, x2, y);
    assert_memory_equal(x1, x2, n * sizeof(float)); /* deterministic */
    int changed = 0;
    for (int i = 0; i < N; i++)
        changed += memcmp(x0 + i * H * W, x1 + i * H * W, H * W * sizeof(float)) != 0;
    /* each of 2 operations applies with probability 1/2 (a few are identities
     * at some magnitudes): most images change */
    if (changed < N / 4)
        FAIL_SEED("RandAugment changed only %d of %d images", changed, N);
    nomul_make_batch(&s, idx, N, &ra, seed, 1, x2, y);
    assert_true(memcmp(x1, x2, n * sizeof(float)) != 0); /* another epoch, other draws */
    /* erasing: every image gets one box of noise; everything else untouched */
    nomul_make_batch(&s, idx, N, &er, seed, 0, x1, y);
    for (int i = 0; i < N; i++) {
        int diff = 0;
        for (int p = 0; p < H * W; p++)
            diff += x0[i * H * W + p] != x1[i * H * W + p];
        if (diff < 2 || diff > H * W / 2)
            FAIL_SEED("image %d: %d of %d pixels erased, want a box of 2%%..33%%", i, diff,
                      H * W);
    }
    free(x0);
    free(x1);
    free(x2);
    free(s.pixels);
    free(s.labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_image_set_from_fixture),
        cmocka_unit_test(test_broken_files_are_named),
        cmocka_unit_test(test_cifar_batches),
        cmocka_unit_test(test_image_folder),
        cmocka_unit_test(test_batches_and_augmentation),
        cmocka_unit_test(test_loader),
        cmocka_unit_test(test_fashion_mnist_if_installed),
        cmocka_unit_test(test_augment_operations),
        cmocka_unit_test(test_randaugment_and_erasing_in_batches),
    };
    printf("test_data: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("data", tests, setup, teardown);
}
