/*
 * test_checkpoint.c — safetensors: random tensors and metadata round-tripped
 * bit for bit (NaNs and infinities included); the bytes on disk checked
 * against the format as published, parsed by the test itself (length
 * prefix, JSON header, 8-byte alignment, data offsets); every kind of broken
 * file refused with its name; atomic replacement (no temporary file left,
 * a failed write leaves the old file). The progress bar (terminal and plain
 * lines, rate, ETA, interval) and JSON-lines metrics.
 */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "nomul/nomul.h"
#include "testutil.h"
#include "tu_files.h"

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void spill(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

enum { NT = 5 };

static void test_round_trip_and_layout(void **state)
{
    (void)state;
    tu_rng r = {tu_seed() ^ 0x5A};
    int64_t shapes[NT][3];
    int ndims[NT];
    float *data[NT];
    char names[NT][32];
    nomul_st_tensor t[NT];
    for (int i = 0; i < NT; i++) {
        ndims[i] = (int)(tu_u32(&r) % 4); /* 0: a scalar */
        int64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++)
            numel *= shapes[i][d] = (int64_t)(tu_u32(&r) % 7);
        data[i] = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        for (int64_t q = 0; q < numel; q++)
            data[i][q] = tu_float(tu_u32(&r)); /* any bit pattern */
        snprintf(names[i], sizeof names[i], "block.%d.w%u", i, tu_u32(&r) % 100);
        t[i] = (nomul_st_tensor){names[i], ndims[i], shapes[i], data[i]};
    }
    const char *meta[4] = {"step", "1234", "config", "{\"linear_cfg\": \"pam\"}"};
    const char *p = tu_path("a.safetensors");
    assert_int_equal(nomul_safetensors_write(p, t, NT, meta, 2), 0);

    /* the bytes, read as the format defines them */
    size_t n;
    unsigned char *b = slurp(p, &n);
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--)
        hl = hl << 8 | b[k];
    assert_true(hl % 8 == 0 && 8 + hl <= n);
    cJSON *h = cJSON_ParseWithLength((const char *)b + 8, hl);
    assert_non_null(h);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(h, "__metadata__"), "step")->valuestring,
                        "1234");
    size_t total = 0;
    for (int i = 0; i < NT; i++) {
        cJSON *e = cJSON_GetObjectItem(h, names[i]);
        assert_non_null(e);
        assert_string_equal(cJSON_GetObjectItem(e, "dtype")->valuestring, "F32");
        cJSON *sh = cJSON_GetObjectItem(e, "shape");
        assert_int_equal(cJSON_GetArraySize(sh), ndims[i]);
        int64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) {
            assert_int_equal((int64_t)cJSON_GetArrayItem(sh, d)->valuedouble, shapes[i][d]);
            numel *= shapes[i][d];
        }
        cJSON *of = cJSON_GetObjectItem(e, "data_offsets");
        size_t lo = (size_t)cJSON_GetArrayItem(of, 0)->valuedouble;
        size_t hi = (size_t)cJSON_GetArrayItem(of, 1)->valuedouble;
        assert_int_equal(hi - lo, 4 * (size_t)numel);
        if (numel)
            assert_memory_equal(b + 8 + hl + lo, data[i], 4 * (size_t)numel);
        total += hi - lo;
    }
    assert_int_equal(8 + hl + total, n);
    cJSON_Delete(h);
    free(b);

    /* and through the reader */
    nomul_safetensors *f = nomul_safetensors_read(p);
    if (!f)
        FAIL_SEED("%s", nomul_last_error_message());
    assert_int_equal(nomul_safetensors_count(f), NT);
    assert_string_equal(nomul_safetensors_meta(f, "config"), meta[3]);
    assert_null(nomul_safetensors_meta(f, "absent"));
    assert_null(nomul_safetensors_get(f, "absent", NULL, NULL));
    for (int i = 0; i < NT; i++) {
        int nd;
        const int64_t *sh;
        const float *x = nomul_safetensors_get(f, names[i], &nd, &sh);
        assert_non_null(x);
        assert_int_equal(nd, ndims[i]);
        int64_t numel = 1;
        for (int d = 0; d < nd; d++)
            assert_int_equal(sh[d], shapes[i][d]), numel *= sh[d];
        if (numel && memcmp(x, data[i], 4 * (size_t)numel))
            FAIL_SEED("tensor %s changed in the round trip", names[i]);
    }
    nomul_safetensors_free(f);

    /* no temporary file is left beside it */
    DIR *d = opendir(tu_tmpdir());
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp."))
            fail_msg("temporary file %s left behind", de->d_name);
    closedir(d);

    /* a write that fails leaves the old file as it was */
    size_t before_n;
    unsigned char *before = slurp(p, &before_n);
    int64_t neg = -1;
    nomul_st_tensor bad = {"x", 1, &neg, data[0]};
    assert_int_equal(nomul_safetensors_write(p, &bad, 1, NULL, 0), -1);
    nomul_st_tensor dup[2] = {t[0], t[0]};
    assert_int_equal(nomul_safetensors_write(p, dup, 2, NULL, 0), -1);
    if (!strstr(tu_last_error, "two tensors are named"))
        fail_msg("message: %s", tu_last_error);
    size_t after_n;
    unsigned char *after = slurp(p, &after_n);
    assert_int_equal(before_n, after_n);
    assert_memory_equal(before, after, before_n);
    free(before);
    free(after);
    assert_int_equal(nomul_safetensors_write(tu_path("no/such/dir/x.safetensors"), t, 1, NULL, 0),
                     -1);
    if (!strstr(tu_last_error, "no/such/dir/x.safetensors"))
        fail_msg("message: %s", tu_last_error);
    for (int i = 0; i < NT; i++)
        free(data[i]);
    nomul_clear_error();
}

/* A file built by hand: header text, then `data` bytes of payload. */
static const char *handmade(const char *name, const char *json, size_t data)
{
    size_t jl = strlen(json);
    unsigned char *b = calloc(1, 8 + jl + data);
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)((uint64_t)jl >> (8 * k));
    memcpy(b + 8, json, jl);
    const char *p = tu_path(name);
    spill(p, b, 8 + jl + data);
    free(b);
    return p;
}

static void expect_refused(const char *p, const char *words)
{
    nomul_safetensors *f = nomul_safetensors_read(p);
    if (f) {
        nomul_safetensors_free(f);
        fail_msg("%s was read although broken", p);
    }
    if (!strstr(tu_last_error, p) || !strstr(tu_last_error, words))
        fail_msg("message \"%s\" should name %s and say \"%s\"", tu_last_error, p, words);
    nomul_clear_error();
}

static void test_broken_files(void **state)
{
    (void)state;
    const char *ok = handmade("ok.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    nomul_safetensors *f = nomul_safetensors_read(ok);
    assert_non_null(f);
    nomul_safetensors_free(f);

    expect_refused(tu_path("missing.st"), "cannot open");
    spill(tu_path("short.st"), "\x05\0\0", 3);
    expect_refused(tu_path("short.st"), "truncated");
    spill(tu_path("huge.st"), "\xff\xff\xff\xff\0\0\0\0{}", 10);
    expect_refused(tu_path("huge.st"), "header length");
    expect_refused(handmade("json.st", "{\"w\": [", 0), "not a JSON object");
    expect_refused(handmade("dtype.st", "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4),
                   "is F16");
    expect_refused(handmade("shape.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
                   "disagree");
    expect_refused(handmade("negative.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8),
                   "disagree");
    expect_refused(handmade("fields.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8),
                   "data_offsets");
    expect_refused(handmade("overlap.st",
                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                            12),
                   "tile the data");
    expect_refused(handmade("gap.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
                   "tile the data");
    expect_refused(handmade("trunc.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 6),
                   "truncated or padded");
    expect_refused(handmade("extra.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12),
                   "truncated or padded");
    expect_refused(handmade("dup.st",
                            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                            8),
                   "two tensors are named a");
    expect_refused(handmade("meta.st", "{\"__metadata__\":{\"step\":3}}", 0), "__metadata__");
}

static char *read_stream(FILE *f)
{
    static char buf[8192];
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    return buf;
}

static void test_progress_and_metrics(void **state)
{
    (void)state;
    char d[32];
    nomul_format_duration(0, d, sizeof d);
    assert_string_equal(d, "00:00");
    nomul_format_duration(125.4, d, sizeof d);
    assert_string_equal(d, "02:05");
    nomul_format_duration(3723, d, sizeof d);
    assert_string_equal(d, "1:02:03");
    nomul_format_duration(-1, d, sizeof d);
    assert_string_equal(d, "--:--");

    /* a terminal: redrawn in place; half done after 10 s leaves 10 s */
    FILE *f = tmpfile();
    nomul_progress *p = nomul_progress_new(f, "epoch 1/3", 100, 1, 0);
    nomul_progress_update_at(p, 50, 3200, "loss 0.5", 10.0);
    nomul_progress_finish(p, "loss 0.25");
    char *t = read_stream(f);
    if (!strstr(t, "\repoch 1/3 [############............]  50% 50/100 00:10<00:10 320.0/s loss 0.5"))
        fail_msg("terminal line: %s", t);
    if (!strstr(t, " 50% 50/100 00:10<00:10 320.0/s loss 0.25\033[K\n"))
        fail_msg("final line: %s", t);
    fclose(f);

    /* a file: plain lines, at most one per interval */
    f = tmpfile();
    p = nomul_progress_new(f, "train", 1000, 0, 5.0);
    for (int s = 1; s <= 12; s++)
        nomul_progress_update_at(p, 80 * s, 80 * s, NULL, (double)s);
    nomul_progress_finish(p, "done");
    t = read_stream(f);
    int lines = 0;
    for (char *c = t; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 3); /* at 5 s, 10 s, and the end */
    assert_null(strchr(t, '\r'));
    if (!strstr(t, "train  40% 400/1000 elapsed 00:05 eta 00:08 80.0/s\n"))
        fail_msg("plain lines: %s", t);
    if (!strstr(t, "train  96% 960/1000 elapsed 00:12 eta 00:01 80.0/s done\n"))
        fail_msg("last line: %s", t);
    fclose(f);

    /* metric lines: valid JSON, non-finite as null, keys escaped */
    const char *mp = tu_path("metrics.jsonl");
    const char *keys[3] = {"epoch", "test \"acc\"", "loss"};
    double v1[3] = {1, 0.8125, 0.5}, v2[3] = {2, 0.875, NAN};
    assert_int_equal(nomul_metrics_append(mp, 3, keys, v1), 0);
    assert_int_equal(nomul_metrics_append(mp, 3, keys, v2), 0);
    size_t n;
    char *txt = (char *)slurp(mp, &n);
    txt[n] = 0;
    char *second = strchr(txt, '\n') + 1;
    second[-1] = 0;
    cJSON *a = cJSON_Parse(txt), *b = cJSON_Parse(second);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(cJSON_GetObjectItem(a, "test \"acc\"")->valuedouble == 0.8125);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(b, "loss")));
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(txt);
    assert_int_equal(nomul_metrics_append(tu_path("no/dir/m.jsonl"), 3, keys, v1), -1);
    if (!strstr(tu_last_error, "no/dir/m.jsonl"))
        fail_msg("message: %s", tu_last_error);
    nomul_clear_error();
}

static int setup(void **state)
{
    (void)state;
    return tu_tmpdir_setup("ckpt");
}

static int teardown(void **state)
{
    (void)state;
    return tu_tmpdir_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_layout),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_progress_and_metrics),
    };
    printf("test_checkpoint: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("checkpoint", tests, setup, teardown);
}
