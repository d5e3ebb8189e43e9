/* opcfg_internal.h — reading the operation configuration from a JSON value
 * already parsed with cJSON (for the trainer's configuration reader), so
 * cJSON stays out of the public headers (private). */
#ifndef NOMUL_OPCFG_INTERNAL_H
#define NOMUL_OPCFG_INTERNAL_H

#include "nomul/opcfg.h"

struct cJSON;

/* key = value of a JSON object: 1 if key is a family key ("linear_cfg") and
 * the value was applied, -1 (after reporting NOMUL_EINVAL, *c unchanged) if
 * the value was bad, 0 if key is not an op config key. */
int nomul_op_cfgs_set_cjson(nomul_op_cfgs *c, const char *key, const struct cJSON *value);

#endif
