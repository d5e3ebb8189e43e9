/*
 * test_opcfg.c — the per-family operation configuration: the reference's
 * key names and values ("pam_ln" read as "pam"), the object form with
 * dkwargs, --set overrides, and an error (on the library's error channel)
 * naming the key and the accepted values for every bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nomul/nomul.h"

static void test_words_and_objects(void **state)
{
    (void)state;
    nomul_op_cfgs c;
    nomul_op_cfgs_default(&c);
    const char *json =
        "{\"model\": \"vit\", \"linear_cfg\": \"pam\", \"norm_cfg\": \"pam_ln\","
        " \"bmm_cfg\": {\"subtype\": \"pam\", \"dkwargs\": {\"approx_bwd\": true, \"offset\": 1.0552}},"
        " \"opt_functional_cfg\": {\"subtype\": \"standard\"}, \"epochs\": 3}";
    assert_int_equal(nomul_op_cfgs_parse_json(&c, json), 0);
    assert_int_equal(c.family[NOMUL_CFG_LINEAR].subtype, NOMUL_OP_PAM);
    assert_int_equal(c.family[NOMUL_CFG_LINEAR].approx_bwd, 0);
    assert_true(c.family[NOMUL_CFG_LINEAR].offset == 1.0f);
    assert_int_equal(c.family[NOMUL_CFG_NORM].subtype, NOMUL_OP_PAM);
    assert_int_equal(c.family[NOMUL_CFG_BMM].subtype, NOMUL_OP_PAM);
    assert_int_equal(c.family[NOMUL_CFG_BMM].approx_bwd, 1);
    assert_true(c.family[NOMUL_CFG_BMM].offset == 1.0552f);
    assert_int_equal(c.family[NOMUL_CFG_OPT_FUNCTIONAL].subtype, NOMUL_OP_STANDARD);
    assert_int_equal(c.family[NOMUL_CFG_CONV].subtype, NOMUL_OP_STANDARD);
    char buf[256];
    nomul_op_cfg_format(&c.family[NOMUL_CFG_LINEAR], buf, sizeof buf);
    assert_string_equal(buf, "\"pam\"");
    nomul_op_cfg_format(&c.family[NOMUL_CFG_BMM], buf, sizeof buf);
    /* the formatted object parses back to the same configuration */
    char again[400];
    snprintf(again, sizeof again, "{\"conv_cfg\": %s}", buf);
    assert_int_equal(nomul_op_cfgs_parse_json(&c, again), 0);
    assert_memory_equal(&c.family[NOMUL_CFG_CONV], &c.family[NOMUL_CFG_BMM], sizeof(nomul_op_cfg));
    nomul_op_cfgs_all_pam(&c);
    for (int f = 0; f < NOMUL_CFG_COUNT; f++) {
        assert_int_equal(c.family[f].subtype, NOMUL_OP_PAM);
        assert_true(nomul_op_is_pa(&c.family[f]));
    }
    nomul_op_cfgs_default(&c);
    for (int f = 0; f < NOMUL_CFG_COUNT; f++)
        assert_false(nomul_op_is_pa(&c.family[f]));
    for (int f = 0; f < NOMUL_CFG_COUNT; f++)
        assert_int_equal(nomul_op_family_find(nomul_op_family_key((nomul_op_family)f)), f);
    assert_int_equal(nomul_op_family_find("attention_cfg"), -1);
}

static void test_set_overrides(void **state)
{
    (void)state;
    nomul_op_cfgs c;
    nomul_op_cfgs_default(&c);
    assert_int_equal(nomul_op_cfgs_set(&c, "linear_cfg", "pam"), 1);
    assert_int_equal(c.family[NOMUL_CFG_LINEAR].subtype, NOMUL_OP_PAM);
    assert_int_equal(nomul_op_cfgs_set(&c, "linear_cfg.offset", "1.0552"), 1);
    assert_true(c.family[NOMUL_CFG_LINEAR].offset == 1.0552f);
    assert_int_equal(nomul_op_cfgs_set(&c, "linear_cfg.dkwargs.approx_bwd", "true"), 1);
    assert_int_equal(c.family[NOMUL_CFG_LINEAR].approx_bwd, 1);
    assert_int_equal(nomul_op_cfgs_set(&c, "conv_cfg",
                                       "{\"subtype\": \"pam\", \"dkwargs\": {\"offset\": 2}}"), 1);
    assert_true(c.family[NOMUL_CFG_CONV].offset == 2.0f);
    assert_int_equal(nomul_op_cfgs_set(&c, "norm_cfg.subtype", "\"pam_ln\""), 1);
    assert_int_equal(c.family[NOMUL_CFG_NORM].subtype, NOMUL_OP_PAM);
    /* keys that are not op configs are someone else's */
    assert_int_equal(nomul_op_cfgs_set(&c, "lr", "0.1"), 0);
    assert_int_equal(nomul_op_cfgs_set(&c, "linear", "pam"), 0);
}

static void test_errors_name_the_key(void **state)
{
    (void)state;
    static const struct {
        const char *json, *needle1, *needle2;
    } bad[] = {
        {"{\"linear_cfg\": \"pamm\"}", "linear_cfg: unknown value \"pamm\"", "\"standard\", \"pam\""},
        {"{\"conv_cfg\": \"pam_ln\"}", "conv_cfg: unknown value \"pam_ln\"", "accepted"},
        {"{\"norm_cfg\": \"bogus\"}", "norm_cfg", "\"pam_ln\""},
        {"{\"bmm_cfg\": 3}", "bmm_cfg: expected", "\"standard\""},
        {"{\"bmm_cfg\": {\"dkwargs\": {}}}", "bmm_cfg: the object needs a \"subtype\"", ""},
        {"{\"bmm_cfg\": {\"subtype\": \"pam\", \"kwargs\": {}}}", "bmm_cfg.kwargs: unknown key",
         "subtype, dkwargs"},
        {"{\"functional_cfg\": {\"subtype\": \"pam\", \"dkwargs\": {\"approx\": true}}}",
         "functional_cfg.dkwargs.approx: unknown key", "approx_bwd, offset"},
        {"{\"loss_functional_cfg\": {\"subtype\": \"pam\", \"dkwargs\": {\"approx_bwd\": 1}}}",
         "loss_functional_cfg.dkwargs.approx_bwd: expected true or false", ""},
        {"{\"opt_functional_cfg\": {\"subtype\": \"pam\", \"dkwargs\": {\"offset\": -1}}}",
         "opt_functional_cfg.dkwargs.offset: offset -1 must be a positive normal", ""},
        {"{\"linear_cfg\": \"pam\",", "malformed JSON", ""},
        {"[1, 2]", "must be a JSON object", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nomul_op_cfgs c, before;
        nomul_op_cfgs_default(&c);
        c.family[NOMUL_CFG_LINEAR].subtype = NOMUL_OP_PAM;
        before = c;
        nomul_clear_error();
        if (nomul_op_cfgs_parse_json(&c, bad[i].json) != -1 ||
            nomul_last_error() != NOMUL_EINVAL ||
            !strstr(nomul_last_error_message(), bad[i].needle1) ||
            !strstr(nomul_last_error_message(), bad[i].needle2))
            fail_msg("case %zu: '%s' gave '%s'", i, bad[i].json, nomul_last_error_message());
        assert_memory_equal(&c, &before, sizeof c); /* all or nothing */
    }
    nomul_op_cfgs c;
    nomul_op_cfgs_default(&c);
    assert_int_equal(nomul_op_cfgs_set(&c, "linear_cfg.offset", "abc"), -1);
    assert_non_null(strstr(nomul_last_error_message(), "linear_cfg.offset: 'abc' is not a number"));
    assert_int_equal(nomul_op_cfgs_set(&c, "linear_cfg.approx_bwd", "maybe"), -1);
    assert_non_null(strstr(nomul_last_error_message(), "not true or false"));
    assert_int_equal(nomul_op_cfgs_set(&c, "linear_cfg.speed", "1"), -1);
    assert_non_null(strstr(nomul_last_error_message(), "unknown field 'speed'"));
    assert_int_equal(nomul_op_cfgs_set(&c, "conv_cfg", "pam_ln"), -1);
    assert_non_null(strstr(nomul_last_error_message(), "conv_cfg: unknown value \"pam_ln\""));
}

/* The errors are read back from the error channel; none is printed. */
static void quiet(nomul_status status, const char *message) { (void)status, (void)message; }

int main(void)
{
    nomul_set_error_handler(quiet);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words_and_objects),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_errors_name_the_key),
    };
    return cmocka_run_group_tests_name("opcfg", tests, NULL, NULL);
}
