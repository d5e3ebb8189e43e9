/*
 * opcfg.c — the per-family operation configuration (nomul/opcfg.h), read
 * from JSON with cJSON (text, or a value the caller already parsed:
 * opcfg_internal.h) and from --set overrides, with errors that name the key
 * and the accepted values, reported through nomul_report.
 */
#include "nomul/opcfg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "internal.h"
#include "opcfg_internal.h"

static const char *const family_keys[NOMUL_CFG_COUNT] = {
    "linear_cfg", "conv_cfg", "bmm_cfg", "norm_cfg",
    "functional_cfg", "loss_functional_cfg", "opt_functional_cfg",
};

const char *nomul_op_family_key(nomul_op_family f)
{
    return (unsigned)f < NOMUL_CFG_COUNT ? family_keys[f] : NULL;
}

int nomul_op_family_find(const char *key)
{
    for (int f = 0; f < NOMUL_CFG_COUNT; f++)
        if (key && strcmp(key, family_keys[f]) == 0)
            return f;
    return -1;
}

static const nomul_op_cfg standard = {NOMUL_OP_STANDARD, 0, 1.0f};

void nomul_op_cfgs_default(nomul_op_cfgs *c)
{
    for (int f = 0; f < NOMUL_CFG_COUNT; f++)
        c->family[f] = standard;
}

void nomul_op_cfgs_all_pam(nomul_op_cfgs *c)
{
    for (int f = 0; f < NOMUL_CFG_COUNT; f++) {
        c->family[f] = standard;
        c->family[f].subtype = NOMUL_OP_PAM;
    }
}

static const char *subtype_names[] = {"standard", "pam"};

static const char *accepted(nomul_op_family f)
{
    return f == NOMUL_CFG_NORM ? "\"standard\", \"pam\", \"pam_ln\" or an object {\"subtype\": ..., "
                                 "\"dkwargs\": {\"approx_bwd\": bool, \"offset\": number}}"
                               : "\"standard\", \"pam\" or an object {\"subtype\": ..., "
                                 "\"dkwargs\": {\"approx_bwd\": bool, \"offset\": number}}";
}

/* Reports a bad configuration value; returns -1 for the caller to pass on. */
#define BAD(...) (nomul_report(NOMUL_EINVAL, __VA_ARGS__), -1)

static int parse_subtype(nomul_op_family f, const char *word, nomul_op_subtype *out,
                         const char *where)
{
    for (int s = 0; s < 2; s++) {
        if (strcmp(word, subtype_names[s]) == 0) {
            *out = (nomul_op_subtype)s;
            return 0;
        }
    }
    if (f == NOMUL_CFG_NORM && strcmp(word, "pam_ln") == 0) { /* the reference's PA layer norm */
        *out = NOMUL_OP_PAM;
        return 0;
    }
    return BAD("%s: unknown value \"%s\"; accepted: %s", where, word, accepted(f));
}

static int parse_offset(double v, const char *where, float *out)
{
    float o = (float)v;
    if (!isfinite(v) || !isnormal(o) || o <= 0.0f)
        return BAD("%s: offset %g must be a positive normal number (1 for none)", where, v);
    *out = o;
    return 0;
}

/* One family's value as a cJSON item; *out is written only on success. */
static int parse_item(nomul_op_family f, const cJSON *v, nomul_op_cfg *out)
{
    const char *key = family_keys[f];
    nomul_op_cfg cfg = standard;
    char where[96];
    if (cJSON_IsString(v)) {
        if (parse_subtype(f, v->valuestring, &cfg.subtype, key))
            return -1;
        *out = cfg;
        return 0;
    }
    if (!cJSON_IsObject(v))
        return BAD("%s: expected %s", key, accepted(f));
    int have_subtype = 0;
    for (const cJSON *m = v->child; m; m = m->next) {
        if (strcmp(m->string, "subtype") == 0) {
            snprintf(where, sizeof where, "%s.subtype", key);
            if (!cJSON_IsString(m))
                return BAD("%s: expected a string (%s)", where, accepted(f));
            if (parse_subtype(f, m->valuestring, &cfg.subtype, where))
                return -1;
            have_subtype = 1;
        } else if (strcmp(m->string, "dkwargs") == 0) {
            if (!cJSON_IsObject(m))
                return BAD("%s.dkwargs: expected an object with approx_bwd and/or offset", key);
            for (const cJSON *k = m->child; k; k = k->next) {
                snprintf(where, sizeof where, "%s.dkwargs.%s", key, k->string);
                if (strcmp(k->string, "approx_bwd") == 0) {
                    if (!cJSON_IsBool(k))
                        return BAD("%s: expected true or false", where);
                    cfg.approx_bwd = cJSON_IsTrue(k);
                } else if (strcmp(k->string, "offset") == 0) {
                    if (!cJSON_IsNumber(k))
                        return BAD("%s: expected a number", where);
                    if (parse_offset(k->valuedouble, where, &cfg.offset))
                        return -1;
                } else {
                    return BAD("%s: unknown key; accepted: approx_bwd, offset", where);
                }
            }
        } else {
            return BAD("%s.%s: unknown key; accepted: subtype, dkwargs", key, m->string);
        }
    }
    if (!have_subtype)
        return BAD("%s: the object needs a \"subtype\" (%s)", key, accepted(f));
    *out = cfg;
    return 0;
}

int nomul_op_cfgs_set_cjson(nomul_op_cfgs *c, const char *key, const cJSON *value)
{
    int f = nomul_op_family_find(key);
    if (f < 0)
        return 0;
    return parse_item((nomul_op_family)f, value, &c->family[f]) ? -1 : 1;
}

int nomul_op_cfgs_parse_json(nomul_op_cfgs *c, const char *json)
{
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        return BAD("malformed JSON near '%.20s'", at ? at : "");
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return BAD("the configuration must be a JSON object");
    }
    nomul_op_cfgs tmp = *c; /* all or nothing */
    int rc = 0;
    for (const cJSON *m = root->child; m && rc >= 0; m = m->next)
        rc = nomul_op_cfgs_set_cjson(&tmp, m->string, m);
    if (rc >= 0)
        *c = tmp;
    cJSON_Delete(root);
    return rc >= 0 ? 0 : -1;
}

int nomul_op_cfgs_set(nomul_op_cfgs *c, const char *key, const char *value)
{
    char fam[64];
    const char *dot = strchr(key, '.');
    size_t n = dot ? (size_t)(dot - key) : strlen(key);
    if (n >= sizeof fam)
        return 0;
    memcpy(fam, key, n);
    fam[n] = 0;
    int f = nomul_op_family_find(fam);
    if (f < 0)
        return 0;
    nomul_op_cfg *cfg = &c->family[f];
    if (!dot) {
        cJSON *v = cJSON_Parse(value);
        if (!v) /* a bare word: linear_cfg=pam */
            v = cJSON_CreateString(value);
        int rc = v ? nomul_op_cfgs_set_cjson(c, fam, v)
                   : (nomul_report(NOMUL_ENOMEM, "%s: out of memory", key), -1);
        cJSON_Delete(v);
        return rc;
    }
    const char *field = dot + 1;
    if (strncmp(field, "dkwargs.", 8) == 0)
        field += 8;
    if (strcmp(field, "subtype") == 0) {
        const char *word = value;
        char buf[32];
        size_t len = strlen(value);
        if (len >= 2 && value[0] == '"' && value[len - 1] == '"' && len - 2 < sizeof buf) {
            memcpy(buf, value + 1, len - 2);
            buf[len - 2] = 0;
            word = buf;
        }
        return parse_subtype((nomul_op_family)f, word, &cfg->subtype, key) ? -1 : 1;
    }
    if (strcmp(field, "approx_bwd") == 0) {
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
            cfg->approx_bwd = 1;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
            cfg->approx_bwd = 0;
        else
            return BAD("%s: '%s' is not true or false", key, value);
        return 1;
    }
    if (strcmp(field, "offset") == 0) {
        char *end;
        double v = strtod(value, &end);
        if (end == value || *end)
            return BAD("%s: '%s' is not a number", key, value);
        return parse_offset(v, key, &cfg->offset) ? -1 : 1;
    }
    return BAD("%s: unknown field '%s'; accepted: subtype, approx_bwd, offset", key, dot + 1);
}

int nomul_op_cfg_format(const nomul_op_cfg *cfg, char *buf, size_t len)
{
    const char *name = subtype_names[cfg->subtype];
    if (!cfg->approx_bwd && cfg->offset == 1.0f)
        return snprintf(buf, len, "\"%s\"", name);
    return snprintf(buf, len, "{\"subtype\": \"%s\", \"dkwargs\": {\"approx_bwd\": %s, "
                    "\"offset\": %.9g}}", name, cfg->approx_bwd ? "true" : "false",
                    (double)cfg->offset);
}
