/*
 * test_readers.c — the readers of outside bytes under hostile input: a
 * safetensors header of 200,000 tensors (read in O(n log n), duplicates
 * found), configuration files and --set values that must be refused with
 * the key named, BPE codes, dict.txt and the text readers refusing what
 * they cannot represent with the file and line named.
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

#include "nomul/nomul.h"
#include "testutil.h"
#include "tu_files.h"

static void spill(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void expect_error(const char *words)
{
    if (!strstr(tu_last_error, words))
        FAIL_SEED("wanted an error with \"%s\", got \"%.300s\"", words, tu_last_error);
}

enum { MANY = 200000 };

/* MANY tensors in a random order, each 0 to 2 floats: written, read back and
 * every one found by name. Before the names were sorted this took minutes
 * (a linear search per tensor when writing, reading and looking up). */
static void test_safetensors_many_tensors(void **state)
{
    (void)state;
    tu_rng r = {tu_seed()};
    nomul_st_tensor *t = calloc(MANY, sizeof *t);
    char (*names)[16] = calloc(MANY, sizeof *names);
    int64_t *shape = calloc(MANY, sizeof *shape);
    float *data = calloc(2 * MANY, sizeof *data);
    int *perm = calloc(MANY, sizeof *perm);
    assert_true(t && names && shape && data && perm);
    for (int i = 0; i < MANY; i++)
        perm[i] = i;
    for (int i = MANY - 1; i > 0; i--) {
        int j = (int)(tu_next(&r) % (uint64_t)(i + 1)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (int i = 0; i < MANY; i++) {
        snprintf(names[i], sizeof names[i], "w.%d", perm[i]);
        shape[i] = (int64_t)(tu_next(&r) % 3);
        data[2 * i] = (float)perm[i];
        data[2 * i + 1] = -(float)perm[i];
        t[i] = (nomul_st_tensor){.name = names[i], .ndim = 1, .shape = &shape[i],
                                 .data = &data[2 * i]};
    }
    const char *p = tu_path("many.safetensors");
    if (nomul_safetensors_write(p, t, MANY, NULL, 0))
        FAIL_SEED("writing %d tensors: %.300s", MANY, tu_last_error);
    nomul_safetensors *f = nomul_safetensors_read(p);
    if (!f)
        FAIL_SEED("reading %d tensors: %.300s", MANY, tu_last_error);
    assert_int_equal(nomul_safetensors_count(f), MANY);
    for (int i = 0; i < MANY; i++) {
        int nd;
        const int64_t *sh;
        const float *x = nomul_safetensors_get(f, names[i], &nd, &sh);
        if (!x || nd != 1 || sh[0] != shape[i] ||
            (shape[i] > 0 && x[0] != (float)perm[i]) || (shape[i] > 1 && x[1] != -(float)perm[i]))
            FAIL_SEED("tensor %s read back wrong", names[i]);
    }
    assert_null(nomul_safetensors_get(f, "w.-1", NULL, NULL));
    nomul_safetensors_free(f);

    /* a duplicate among them, given to the writer and in a header */
    int a = (int)(tu_next(&r) % MANY), b = (a + 1 + (int)(tu_next(&r) % (MANY - 1))) % MANY;
    t[b].name = names[a];
    assert_int_not_equal(nomul_safetensors_write(tu_path("dup.safetensors"), t, MANY, NULL, 0), 0);
    expect_error("two tensors are named");
    expect_error(names[a]);

    size_t cap = (size_t)MANY * 64 + 64, n = 0;
    char *h = malloc(cap + 8);
    assert_non_null(h);
    n += (size_t)snprintf(h + 8 + n, cap - n, "{");
    for (int i = 0; i < MANY; i++)
        n += (size_t)snprintf(h + 8 + n, cap - n,
                              "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                              i ? "," : "", i == b ? names[a] : names[i]);
    n += (size_t)snprintf(h + 8 + n, cap - n, "}");
    for (int k = 0; k < 8; k++)
        h[k] = (char)((uint64_t)n >> (8 * k));
    spill(p, h, n + 8);
    assert_null(nomul_safetensors_read(p));
    expect_error("two tensors are named");
    expect_error(names[a]);
    free(h);
    free(t);
    free(names);
    free(shape);
    free(data);
    free(perm);
}

/* The configuration: trailing text, NULs in strings, floats that would
 * round to 0, and limits refused with the key named. */
static void test_config_refusals(void **state)
{
    (void)state;
    tu_rng r = {tu_seed()};
    nomul_train_config c;
    nomul_train_config_default(&c);
    assert_int_equal(nomul_train_config_parse_json(&c, "{\"lr\":0.001} \n\t\r\n"), 0);
    assert_true(c.lr == 0.001f);
    assert_int_not_equal(nomul_train_config_parse_json(&c, "{\"lr\":0.001} xyz"), 0);
    expect_error("more after its JSON object");
    assert_int_not_equal(nomul_train_config_parse_json(&c, "{\"lr\":0.001}{}"), 0);
    assert_int_not_equal(nomul_train_config_parse_json(&c, "{\"out_dir\":\"runs\\u0000x\"}"), 0);
    expect_error("u0000");
    assert_int_not_equal(nomul_train_config_set(&c, "out_dir", "\"runs\\u0000x\""), 0);
    expect_error("out_dir");
    /* an escaped backslash before u0000 is no NUL */
    assert_int_equal(nomul_train_config_parse_json(&c, "{\"out_dir\":\"r\\\\u0000\"}"), 0);
    assert_string_equal(c.out_dir, "r\\u0000");

    /* a float key: nonzero values below FLT_MIN refused, normal ones kept */
    const char *fkeys[] = {"lr", "min_lr", "eps", "weight_decay", "aug.std"};
    for (int i = 0; i < 50; i++) {
        const char *k = fkeys[tu_next(&r) % 5];
        char v[64];
        snprintf(v, sizeof v, "%.3fe-%d", 1 + (double)(tu_next(&r) % 8000) / 1000,
                 39 + (int)(tu_next(&r) % 270));
        nomul_train_config_default(&c);
        if (!nomul_train_config_set(&c, k, v))
            FAIL_SEED("%s=%s accepted", k, v);
        expect_error(k);
        char json[128];
        snprintf(json, sizeof json, "{\"%s\": %s}", k, v);
        if (!nomul_train_config_parse_json(&c, json))
            FAIL_SEED("%s accepted", json);
        snprintf(v, sizeof v, "%.3fe-%d", 1 + (double)(tu_next(&r) % 8000) / 1000,
                 1 + (int)(tu_next(&r) % 36));
        if (nomul_train_config_set(&c, k, v))
            FAIL_SEED("%s=%s refused: %.300s", k, v, tu_last_error);
    }
    assert_int_equal(nomul_train_config_set(&c, "lr", "0"), 0);
    assert_true(c.lr == 0);

    /* limits, each refused naming its key */
    const char *bad[][2] = {{"steps", "1e10"}, {"steps", "100000001"}, {"warmup_steps", "1e12"},
                            {"beam", "1000"}, {"max_len_b", "10000"}, {"data.classes", "70000"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nomul_train_config_default(&c);
        if (!nomul_train_config_set(&c, bad[i][0], bad[i][1]))
            FAIL_SEED("%s=%s accepted", bad[i][0], bad[i][1]);
        expect_error(bad[i][0]);
    }
    nomul_train_config_default(&c);
    assert_int_equal(nomul_train_config_set(&c, "steps", "1e8"), 0);
    assert_int_equal(nomul_train_config_set(&c, "beam", "100"), 0);
    assert_int_equal(nomul_train_config_check(&c), 0);
    assert_int_equal(nomul_train_config_set(&c, "data.classes", "300"), 0);
    assert_int_not_equal(nomul_train_config_check(&c), 0); /* IDX labels are bytes */
    expect_error("data.classes");
    assert_int_equal(nomul_train_config_set(&c, "data.format", "folder"), 0);
    assert_int_equal(nomul_train_config_check(&c), 0);
    nomul_train_config_default(&c);
    assert_int_equal(nomul_train_config_set(&c, "aug.crop_pad", "28"), 0);
    assert_int_equal(nomul_train_config_check(&c), 0);
    assert_int_equal(nomul_train_config_set(&c, "aug.crop_pad", "29"), 0);
    assert_int_not_equal(nomul_train_config_check(&c), 0);
    expect_error("aug.crop_pad");
}

/* A merges file: refusals naming the file and line; CRLF accepted. */
static void test_bpe_codes(void **state)
{
    (void)state;
    const char *p = tu_path("codes");
    assert_null(nomul_bpe_load(tu_tmpdir())); /* a folder */
    expect_error("folder");
    spill(p, "", 0);
    assert_null(nomul_bpe_load(p));
    expect_error("no merges");
    spill(p, "#version: 0.2\n", 14);
    assert_null(nomul_bpe_load(p));
    expect_error("no merges");
    const char v99[] = "#version: 9.9\na b\n";
    spill(p, v99, sizeof v99 - 1);
    assert_null(nomul_bpe_load(p));
    expect_error("codes:1:");
    const char badu[] = "#version: 0.2\na b\nab \xe2\x82\n";
    spill(p, badu, sizeof badu - 1);
    assert_null(nomul_bpe_load(p));
    expect_error("codes:3: invalid UTF-8");
    const char nul[] = "a b\nab\0 c\n";
    spill(p, nul, sizeof nul - 1);
    assert_null(nomul_bpe_load(p));
    expect_error("codes:2: a NUL");
    const char crlf[] = "#version: 0.2\r\na b\r\nab c</w>\r\n";
    spill(p, crlf, sizeof crlf - 1);
    nomul_bpe *b = nomul_bpe_load(p);
    if (!b)
        FAIL_SEED("CRLF codes refused: %.300s", tu_last_error);
    assert_int_equal(nomul_bpe_merges(b), 2);
    char *o = nomul_bpe_apply(b, "abc abd");
    assert_string_equal(o, "abc ab@@ d");
    free(o);
    assert_null(nomul_bpe_apply(b, "ab \xc3"));
    expect_error("invalid UTF-8 at byte 4");
    assert_null(nomul_bpe_apply(b, "\xed\xa0\x80")); /* a surrogate */
    nomul_bpe_free(b);
    /* learning from a line of broken UTF-8 would write a file no one reads */
    const char *lines[] = {"low lower", "ab\xc3 x"};
    assert_null(nomul_bpe_learn(lines, 2, 4, 1));
    expect_error("line 2: invalid UTF-8");
    /* a symbol ending in a CR survives save and load (an LF file) */
    const char *cr[] = {">\rJ x\rJ", ">\r"};
    nomul_bpe *l = nomul_bpe_learn(cr, 2, 8, 1);
    assert_non_null(l);
    assert_int_equal(nomul_bpe_save(l, p), 0);
    nomul_bpe *again = nomul_bpe_load(p);
    if (!again)
        FAIL_SEED("learnt merges refused: %.300s", tu_last_error);
    assert_int_equal(nomul_bpe_merges(again), nomul_bpe_merges(l));
    nomul_bpe_free(again);
    nomul_bpe_free(l);
}

/* fairseq's dict.txt: invalid UTF-8, NULs and huge counts refused naming
 * the line; CRLF, trailing spaces and "#fairseq:overwrite" read as fairseq
 * reads them (the overwriting line gets a new id, which the token then
 * looks up to; the old id keeps its token). */
static void test_dict(void **state)
{
    (void)state;
    tu_rng r = {tu_seed()};
    const char *p = tu_path("dict.txt");
    const char *bad[][2] = {
        {"the 10\nh\xc3\x28 3\n", "dict.txt:2: invalid UTF-8"},
        {"the 10\nx 100000000000000000000000\n", "dict.txt:2: the count is out of range"},
        {"the 10\nx 5\nthe 3\n", "dict.txt:3: the token 'the' again"},
        {"the 10\nx 5 #fairseq:overwrit\n", "dict.txt:2: not 'TOKEN COUNT'"},
        {"the 10\n#fairseq:overwrite\n", "dict.txt:2: not 'TOKEN COUNT'"},
        {"the 10\nx -5\n", "dict.txt:2: not 'TOKEN COUNT'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spill(p, bad[i][0], strlen(bad[i][0]));
        assert_null(nomul_vocab_load(p));
        expect_error(bad[i][1]);
    }
    const char nul[] = "the 10\nx\0y 5\n";
    spill(p, nul, sizeof nul - 1);
    assert_null(nomul_vocab_load(p));
    expect_error("dict.txt:2: a NUL");
    assert_null(nomul_vocab_load(tu_tmpdir()));

    /* many tokens, CRLF and trailing blanks, some overwriting earlier ones */
    enum { NT = 3000 };
    size_t cap = NT * 48, n = 0;
    char *text = malloc(cap);
    int *want = malloc(sizeof(int) * NT); /* the id token t should look up to */
    assert_true(text && want);
    int ids = 4;
    for (int t = 0; t < NT; t++) {
        int again = t > 0 && tu_next(&r) % 4 == 0;
        int tok = again ? (int)(tu_next(&r) % (uint64_t)t) : t;
        n += (size_t)snprintf(text + n, cap - n, "tok%d %d%s%s%s", tok, (int)(tu_next(&r) % 1000),
                              again || tu_next(&r) % 8 == 0 ? " #fairseq:overwrite" : "",
                              tu_next(&r) % 3 == 0 ? " \t" : "",
                              tu_next(&r) % 2 ? "\r\n" : "\n");
        want[tok] = ids++;
        if (again)
            want[t] = -1;
    }
    spill(p, text, n);
    nomul_vocab *v = nomul_vocab_load(p);
    if (!v)
        FAIL_SEED("refused: %.300s", tu_last_error);
    assert_int_equal(nomul_vocab_size(v), ids);
    for (int t = 0; t < NT; t++) {
        char name[32];
        snprintf(name, sizeof name, "tok%d", t);
        int id = nomul_vocab_id(v, name);
        if (want[t] >= 0 && (id != want[t] || strcmp(nomul_vocab_token(v, id), name)))
            FAIL_SEED("%s: id %d, want %d", name, id, want[t]);
    }
    nomul_vocab_free(v);
    free(text);
    free(want);
}

static int setup(void **state)
{
    (void)state;
    return tu_tmpdir_setup("readers");
}

static int teardown(void **state)
{
    (void)state;
    return tu_tmpdir_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_many_tensors),
        cmocka_unit_test(test_config_refusals),
        cmocka_unit_test(test_bpe_codes),
        cmocka_unit_test(test_dict),
    };
    printf("test_readers: seed %llu\n", (unsigned long long)tu_seed());
    return cmocka_run_group_tests_name("readers", tests, setup, teardown);
}
