/* model.c — the model registry (nomul/models.h): one table of every model
 * nomul builds (name, kind, family constructor), the one lookup and the one
 * list of names that messages quote.
 *
 * To add a model: a row here; for a new size of an existing architecture,
 * also a row of its family's size table (vit.c, cnn.c, transformer.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "models_internal.h"

static const struct model_entry {
    nomul_model_info info;
    model_ctor *make;
} registry[] = {
    {{"vit_fmnist", NOMUL_MODEL_IMAGE_CLASSIFIER}, vit_model_new},
    {{"vit_fmnist_p4", NOMUL_MODEL_IMAGE_CLASSIFIER}, vit_model_new},
    {{"vit_fmnist_tiny", NOMUL_MODEL_IMAGE_CLASSIFIER}, vit_model_new},
    {{"deit_tiny_patch16_224", NOMUL_MODEL_IMAGE_CLASSIFIER}, vit_model_new},
    {{"resnet20", NOMUL_MODEL_IMAGE_CLASSIFIER}, cnn_model_new},
    {{"resnet110", NOMUL_MODEL_IMAGE_CLASSIFIER}, cnn_model_new},
    {{"resnext20_4x16", NOMUL_MODEL_IMAGE_CLASSIFIER}, cnn_model_new},
    {{"vgg13", NOMUL_MODEL_IMAGE_CLASSIFIER}, cnn_model_new},
    {{"convmixer_256_8", NOMUL_MODEL_IMAGE_CLASSIFIER}, cnn_model_new},
    {{"transformer_iwslt_de_en", NOMUL_MODEL_SEQ2SEQ}, seq2seq_model_new},
    {{"transformer_small", NOMUL_MODEL_SEQ2SEQ}, seq2seq_model_new},
    {{"transformer_mini", NOMUL_MODEL_SEQ2SEQ}, seq2seq_model_new},
    {{"transformer_tiny", NOMUL_MODEL_SEQ2SEQ}, seq2seq_model_new},
};
enum { NMODELS = sizeof registry / sizeof registry[0] };

struct nomul_model {
    const struct model_entry *entry;
    void *impl;
    const model_vtable *vt;
};

const char *nomul_model_names(void)
{
    static char names[512];
    if (!names[0]) {
        size_t at = 0;
        for (int i = 0; i < NMODELS; i++)
            at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "",
                                   registry[i].info.name);
    }
    return names;
}

const char *nomul_model_kind_name(nomul_model_kind kind)
{
    return kind == NOMUL_MODEL_SEQ2SEQ ? "seq2seq model" : "image classifier";
}

static const struct model_entry *find(const char *name)
{
    for (int i = 0; name && i < NMODELS; i++)
        if (!strcmp(name, registry[i].info.name))
            return &registry[i];
    nomul_report(NOMUL_EINVAL, "model '%s' is not one of %s", name ? name : "(none)",
                 nomul_model_names());
    return NULL;
}

const nomul_model_info *nomul_model_find(const char *name)
{
    const struct model_entry *e = find(name);
    return e ? &e->info : NULL;
}

nomul_model *nomul_model_create(const char *name, const nomul_model_data *d, uint64_t seed)
{
    const struct model_entry *e = find(name);
    if (!e)
        return NULL;
    if (!d) {
        nomul_report(NOMUL_EINVAL, "nomul_model_create: want the data's sizes");
        return NULL;
    }
    nomul_model *m = calloc(1, sizeof *m);
    if (!m) {
        nomul_report(NOMUL_ENOMEM, "nomul_model_create: out of memory");
        return NULL;
    }
    m->entry = e;
    if (e->make(e->info.name, d, seed, &m->impl, &m->vt)) {
        free(m);
        return NULL;
    }
    return m;
}

nomul_model *nomul_model_new(const char *name, int image, int channels, int classes,
                             uint64_t seed)
{
    if (!name || image < 1 || channels < 1 || classes < 2) {
        nomul_report(NOMUL_EINVAL, "nomul_model_new: want a name, an image size, channels "
                     "and at least 2 classes");
        return NULL;
    }
    const struct model_entry *e = find(name);
    if (!e)
        return NULL;
    if (e->info.kind != NOMUL_MODEL_IMAGE_CLASSIFIER) {
        nomul_report(NOMUL_EINVAL, "model '%s' is a %s, not an image classifier (task "
                     "translation trains it)", name, nomul_model_kind_name(e->info.kind));
        return NULL;
    }
    nomul_model_data d = {image, channels, classes, 0, 0};
    return nomul_model_create(name, &d, seed);
}

void nomul_model_free(nomul_model *m)
{
    if (!m)
        return;
    m->vt->free(m->impl);
    free(m);
}

const char *nomul_model_name(const nomul_model *m) { return m->entry->info.name; }

nomul_model_kind nomul_model_get_kind(const nomul_model *m) { return m->entry->info.kind; }

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
    static const nomul_forward_opts eval = {0, 0.0f, 0, 0, 0};
    if (!m->vt->forward) {
        nomul_report(NOMUL_EINVAL, "nomul_model_forward: model '%s' is a %s, not an image "
                     "classifier", nomul_model_name(m), nomul_model_kind_name(nomul_model_get_kind(m)));
        return NULL;
    }
    return m->vt->forward(m->impl, g, cfgs, x, o ? o : &eval);
}

nomul_seq2seq *nomul_model_seq2seq(nomul_model *m)
{
    return nomul_model_get_kind(m) == NOMUL_MODEL_SEQ2SEQ ? m->impl : NULL;
}
