/*
 * test_text.c — text for translation: sacreBLEU's 13a tokenizer on cases
 * worked out by hand from mteval-v13a's rules, and corpus BLEU against
 * scores sacreBLEU publishes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nomul/nomul.h"
#include "testutil.h"

static void test_tokenize_13a(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"The dog bit the man.", "The dog bit the man ."},
        {"It wasn't surprising.", "It wasn't surprising ."},
        {"Pi is 3.14, not 3,15.", "Pi is 3.14 , not 3,15 ."},
        {"pages 10-12 (see \"notes\")", "pages 10 - 12 ( see \" notes \" )"},
        {"a&amp;b &lt;tag&gt; &quot;q&quot;", "a & b < tag > \" q \""},
        {"well-known; e.g. this", "well-known ; e . g . this"},
        {"Hello...world!", "Hello . . . world !"},
        {"  spaces   everywhere  ", "spaces everywhere"},
        {"$5.00/hour", "$ 5.00 / hour"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t = nomul_tokenize_13a(cases[i][0]);
        assert_non_null(t);
        if (strcmp(t, cases[i][1]))
            fail_msg("13a('%s') = '%s', want '%s'", cases[i][0], t, cases[i][1]);
        free(t);
    }
}

static void test_bleu_published_example(void **state)
{
    (void)state;
    /* sacreBLEU's README: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944
     * hyp_len = 17 ref_len = 18) */
    const char *sys[] = {"The dog bit the man.", "It wasn't surprising.",
                         "The man had just bitten him."};
    const char *r1[] = {"The dog bit the man.", "It was not unexpected.",
                        "The man bit him first."};
    const char *r2[] = {"The dog had bit the man.", "No one was surprised.",
                        "The man had bitten the dog."};
    const char *const *refs[] = {r1, r2};
    nomul_bleu_result r;
    assert_int_equal(nomul_bleu(sys, refs, 2, 3, &r), 0);
    printf("  BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f hyp_len = %ld ref_len = %ld)\n",
           r.score, r.precision[0], r.precision[1], r.precision[2], r.precision[3], r.bp,
           r.hyp_len, r.ref_len);
    assert_int_equal(r.hyp_len, 17);
    assert_int_equal(r.ref_len, 18);
    assert_true(fabs(r.score - 48.53) < 0.005);
    assert_true(fabs(r.precision[0] - 82.4) < 0.05);
    assert_true(fabs(r.precision[1] - 50.0) < 0.05);
    assert_true(fabs(r.precision[2] - 45.5) < 0.05);
    assert_true(fabs(r.precision[3] - 37.5) < 0.05);
    assert_true(fabs(r.bp - 0.943) < 0.0005);
}

static void test_bleu_edges(void **state)
{
    (void)state;
    const char *same[] = {"a b c d e f", "the cat sat on the mat ."};
    const char *const *refs[] = {same};
    nomul_bleu_result r;
    assert_int_equal(nomul_bleu(same, refs, 1, 2, &r), 0);
    assert_true(fabs(r.score - 100.0) < 1e-9);
    assert_true(r.bp == 1.0);
    /* clipping: "the the the" against "the cat" matches one "the" */
    const char *hyp[] = {"the the the the"}, *ref[] = {"the cat is here"};
    const char *const *refs2[] = {ref};
    assert_int_equal(nomul_bleu(hyp, refs2, 1, 1, &r), 0);
    assert_int_equal(r.matches[0], 1);
    assert_int_equal(r.totals[0], 4);
    /* no 4-gram match: exp smoothing gives 100 / (2 · 1) for the 4-grams */
    const char *h3[] = {"a b c d x"}, *r3[] = {"a b c y d"};
    const char *const *refs3[] = {r3};
    assert_int_equal(nomul_bleu(h3, refs3, 1, 1, &r), 0);
    assert_int_equal(r.matches[3], 0);
    assert_true(fabs(r.precision[3] - 100.0 / (2.0 * 2.0)) < 1e-9);
    /* a short hypothesis pays the brevity penalty exp(1 − 6/3) */
    const char *h4[] = {"a b c"}, *r4[] = {"a b c d e f"};
    const char *const *refs4[] = {r4};
    assert_int_equal(nomul_bleu(h4, refs4, 1, 1, &r), 0);
    assert_true(fabs(r.bp - exp(1.0 - 2.0)) < 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_13a),
        cmocka_unit_test(test_bleu_published_example),
        cmocka_unit_test(test_bleu_edges),
    };
    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
