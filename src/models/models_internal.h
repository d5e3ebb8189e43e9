/* models_internal.h — what the model registry (model.c) needs of each
 * architecture: one constructor per family that takes a name it knows. */
#ifndef NOMUL_MODELS_INTERNAL_H
#define NOMUL_MODELS_INTERNAL_H

#include "nomul/models.h"

typedef struct model_vtable {
    void (*free)(void *impl);
    int (*params)(void *impl, nomul_param **params);
    nomul_tensor *(*forward)(void *impl, nomul_graph *g, const nomul_op_cfgs *cfgs,
                             nomul_tensor *x, const nomul_forward_opts *o);
} model_vtable;

/* Each family: 1 and the model in *impl if it knows the name, 0 if not (no
 * report), -1 after a report if it knows the name but cannot build it. */
int vit_model_new(const char *name, int image, int channels, int classes, uint64_t seed,
                  void **impl, const model_vtable **vt);
int cnn_model_new(const char *name, int image, int channels, int classes, uint64_t seed,
                  void **impl, const model_vtable **vt);
/* The names each family knows, comma separated. */
extern const char vit_model_names[];
extern const char cnn_model_names[];

#endif
