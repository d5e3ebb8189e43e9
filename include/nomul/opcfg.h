/*
 * nomul/opcfg.h — which implementation each family of operations uses,
 * configured with the reference implementation's own names:
 *
 *   linear_cfg, conv_cfg, bmm_cfg, norm_cfg, functional_cfg,
 *   loss_functional_cfg, opt_functional_cfg
 *
 * each set to "standard" (float), "pam" (piecewise affine), "pam_ln" (norm_cfg
 * only: the reference's name for its piecewise affine layer norm, read as
 * "pam") or an object
 *   {"subtype": "pam", "dkwargs": {"approx_bwd": true, "offset": 1.0552}}
 * dkwargs default to approx_bwd false (the exact piecewise constant
 * derivative) and offset 1 (none). Unknown keys and values are errors that
 * name the key and list what it accepts, reported through the library's
 * error channel (nomul/error.h: nomul_last_error_message).
 *
 * A nomul_op_cfg is the one description of how an operation family
 * computes, from the command line down to every kernel entry point.
 */
#ifndef NOMUL_OPCFG_H
#define NOMUL_OPCFG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nomul_op_family {
    NOMUL_CFG_LINEAR,
    NOMUL_CFG_CONV,
    NOMUL_CFG_BMM,
    NOMUL_CFG_NORM,
    NOMUL_CFG_FUNCTIONAL,
    NOMUL_CFG_LOSS_FUNCTIONAL,
    NOMUL_CFG_OPT_FUNCTIONAL,
    NOMUL_CFG_COUNT
} nomul_op_family;

typedef enum nomul_op_subtype {
    NOMUL_OP_STANDARD = 0,
    NOMUL_OP_PAM = 1
} nomul_op_subtype;

typedef struct nomul_op_cfg {
    nomul_op_subtype subtype;
    int approx_bwd; /* 1: the derivative of the exact function, in PA arithmetic */
    float offset;   /* PAM's offset, 1 for none */
} nomul_op_cfg;

/* 1 when the family computes in piecewise affine arithmetic. */
static inline int nomul_op_is_pa(const nomul_op_cfg *c) { return c->subtype != NOMUL_OP_STANDARD; }

typedef struct nomul_op_cfgs {
    nomul_op_cfg family[NOMUL_CFG_COUNT];
} nomul_op_cfgs;

/* The configuration key of a family ("linear_cfg", ...), or NULL. */
const char *nomul_op_family_key(nomul_op_family f);
/* The family of a key, or -1. */
int nomul_op_family_find(const char *key);

/* Every family "standard". */
void nomul_op_cfgs_default(nomul_op_cfgs *c);
/* Every family piecewise affine ("pam"), exact derivatives, no offset:
 * fully multiplication-free. */
void nomul_op_cfgs_all_pam(nomul_op_cfgs *c);

/* Reads the *_cfg keys of a JSON object (text); other keys are left for
 * other readers and ignored here. Returns 0 on success; -1 after reporting
 * NOMUL_EINVAL (the message names the key) on a bad value or malformed JSON,
 * with *c unchanged. */
int nomul_op_cfgs_parse_json(nomul_op_cfgs *c, const char *json);

/* One override as given to --set: key is a family key ("linear_cfg") or a
 * family key and a field ("linear_cfg.offset", ".approx_bwd", ".subtype");
 * value is a word ("pam"), a JSON object, or for fields a number or boolean.
 * Returns 1 if key names a family and the value was applied, -1 (after
 * reporting NOMUL_EINVAL) if it names one and the value was bad, 0 if key is
 * not an op config key at all. */
int nomul_op_cfgs_set(nomul_op_cfgs *c, const char *key, const char *value);

/* The family's configuration as JSON ("pam" or an object when dkwargs differ
 * from their defaults); returns snprintf's count. */
int nomul_op_cfg_format(const nomul_op_cfg *cfg, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
