/* model.c — models by name (nomul/models.h): each family is asked in turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "models_internal.h"

struct nomul_model {
    char name[64];
    void *impl;
    const model_vtable *vt;
};

const char *nomul_model_names(void)
{
    static char names[512];
    if (!names[0])
        snprintf(names, sizeof names, "%s, %s", vit_model_names, cnn_model_names);
    return names;
}

nomul_model *nomul_model_new(const char *name, int image, int channels, int classes,
                             uint64_t seed)
{
    if (!name || image < 1 || channels < 1 || classes < 2) {
        nomul_report(NOMUL_EINVAL, "nomul_model_new: want a name, an image size, channels "
                     "and at least 2 classes");
        return NULL;
    }
    nomul_model *m = calloc(1, sizeof *m);
    if (!m) {
        nomul_report(NOMUL_ENOMEM, "nomul_model_new: out of memory");
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    int r = vit_model_new(name, image, channels, classes, seed, &m->impl, &m->vt);
    if (r == 0)
        r = cnn_model_new(name, image, channels, classes, seed, &m->impl, &m->vt);
    if (r != 1) {
        if (r == 0)
            nomul_report(NOMUL_EINVAL, "model '%s' is not one of %s", name, nomul_model_names());
        free(m);
        return NULL;
    }
    return m;
}

void nomul_model_free(nomul_model *m)
{
    if (!m)
        return;
    m->vt->free(m->impl);
    free(m);
}

const char *nomul_model_name(const nomul_model *m) { return m->name; }

int nomul_model_params(nomul_model *m, nomul_param **params)
{
    return m->vt->params(m->impl, params);
}

long nomul_model_param_count(nomul_model *m)
{
    nomul_param *p;
    int n = nomul_model_params(m, &p);
    long total = 0;
    for (int i = 0; i < n; i++)
        total += p[i].t->n;
    return total;
}

nomul_tensor *nomul_model_forward(nomul_model *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                  nomul_tensor *x, const nomul_forward_opts *o)
{
    static const nomul_forward_opts eval = {0, 0.0f, 0};
    return m->vt->forward(m->impl, g, cfgs, x, o ? o : &eval);
}
