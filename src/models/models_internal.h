/* models_internal.h — what the model families share: the parameter list
 * every model fills in declaration order (params.c), and what the registry
 * (model.c) needs of each family: a constructor per kind of name it knows
 * and the operations of the built model. */
#ifndef NOMUL_MODELS_INTERNAL_H
#define NOMUL_MODELS_INTERNAL_H

#include "nomul/models.h"

/* ---- the parameter list (params.c) ------------------------------------------ */

/* A model's parameters in the order they are declared, which is the order
 * of the checkpoint's tensors and of the initialisation's random draws. */
typedef struct model_params {
    nomul_param *p;
    int n, cap;
} model_params;

/* Room for cap parameters, allocated once (0 or -1 when out of memory); a
 * model that cannot count them first passes 0 and lets model_param_add grow
 * the list. */
int model_params_init(model_params *ps, int cap);
/* The next parameter: a zeroed tensor of the shape, with a gradient unless
 * it is a buffer (state the optimizer skips, as batch norm's running
 * statistics). NULL when out of memory. */
nomul_tensor *model_param_add(model_params *ps, const char *name, int ndim, const int *shape,
                              int decay, int buffer);
/* Frees every tensor and the list (an empty list is fine). */
void model_params_free(model_params *ps);

/* t = v everywhere. */
void model_fill_const(nomul_tensor *t, float v);
/* U(±bound) in element order from the stream, as PyTorch's kaiming-uniform
 * default (bound 1/√fan_in) and Xavier uniform (bound √(6/(fan_in+fan_out))). */
void model_fill_uniform(nomul_tensor *t, uint64_t *rng, double bound);

/* ---- the registry's view of a family (model.c) ---------------------------------- */

typedef struct model_vtable {
    void (*free)(void *impl);
    int (*params)(void *impl, nomul_param **params);
    /* an image classifier's logits; NULL for a seq2seq model */
    nomul_tensor *(*forward)(void *impl, nomul_graph *g, const nomul_op_cfgs *cfgs,
                             nomul_tensor *x, const nomul_forward_opts *o);
} model_vtable;

/* A family's constructor for a name the registry gave it: 0 and the model
 * in *impl, or -1 after a report (a size the architecture cannot take, out
 * of memory). */
typedef int model_ctor(const char *name, const nomul_model_data *d, uint64_t seed, void **impl,
                       const model_vtable **vt);
model_ctor vit_model_new, cnn_model_new, seq2seq_model_new;

#endif
