/* params.c — the parameter list every model family fills (models_internal.h):
 * adding a named tensor, the fills its initialisation shares, freeing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "models_internal.h"

int model_params_init(model_params *ps, int cap)
{
    memset(ps, 0, sizeof *ps);
    if (cap > 0 && !(ps->p = calloc((size_t)cap, sizeof *ps->p)))
        return -1;
    ps->cap = cap;
    return 0;
}

nomul_tensor *model_param_add(model_params *ps, const char *name, int ndim, const int *shape,
                              int decay, int buffer)
{
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 64;
        nomul_param *p = realloc(ps->p, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        ps->p = p;
        ps->cap = cap;
    }
    nomul_param *p = &ps->p[ps->n];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    if (!(p->t = nomul_tensor_alloc(ndim, shape, !buffer)))
        return NULL;
    p->decay = decay;
    p->buffer = buffer;
    ps->n++;
    return p->t;
}

void model_params_free(model_params *ps)
{
    for (int i = 0; i < ps->n; i++)
        nomul_tensor_free(ps->p[i].t);
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

void model_fill_const(nomul_tensor *t, float v)
{
    for (long i = 0; i < t->n; i++)
        t->data[i] = v;
}

void model_fill_uniform(nomul_tensor *t, uint64_t *rng, double bound)
{
    for (long i = 0; i < t->n; i++)
        t->data[i] = (float)((2.0 * nomul_uniform01(rng) - 1.0) * bound);
}
